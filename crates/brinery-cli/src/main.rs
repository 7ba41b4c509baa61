//! The `brinery` command: look inside Python pickles without Python and without running them.
//!
//! Conventions (shared with ruff and uv): exit 0 on success, 2 on error; errors go to stderr as
//! `error: ...` followed by `cause: ...` lines; `-` reads standard input; a closed pipe (`brinery
//! dis big.pkl | head`) ends the command quietly; nothing ever panics with a backtrace.

#![forbid(unsafe_code)]

use std::io::{self, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

mod jar;
mod scan;

/// Fast, safe pickling: inspect Python pickles without running them.
#[derive(Debug, Parser)]
#[command(name = "brinery", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Disassemble a pickle; the output is identical to `python -m pickletools FILE`.
    Dis(DisArgs),
    /// Convert a pickle to JSON (see docs/json-mapping.md), without running anything.
    Json(JsonArgs),
    /// The jar: objects saved by name, with history, branches and tags (docs/jar-format.md).
    Jar(jar::JarArgs),
    /// Check whether pickles (or zip/gzip/bz2/xz/zlib/npy/joblib files of them) can run code;
    /// exit 0 when all are clean, 1 on findings, 2 on errors.
    Scan(scan::ScanArgs),
}

#[derive(Debug, Args)]
struct DisArgs {
    /// The pickle files (`-` for standard input); with more than one, each disassembly comes
    /// after a preamble line (`-p`), as in pickletools.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Write the disassembly to this file instead of standard output (pickletools' `-o`).
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// With several files: keep the memo from one pickle to the next (pickletools' `-m`).
    #[arg(short, long)]
    memo: bool,
    /// With several files: the line written before each disassembly; `{name}` is the file
    /// name (pickletools' `-p`).
    #[arg(
        short,
        long,
        default_value = "==> {name} <==",
        value_name = "TEXT",
        allow_hyphen_values = true
    )]
    preamble: String,
    /// Annotate each line with a short description of its opcode (pickletools' `-a`).
    #[arg(short, long)]
    annotate: bool,
    /// Spaces of indentation per MARK level (pickletools' `-l`).
    #[arg(short = 'l', long, default_value_t = 4, value_name = "N")]
    indentlevel: usize,
    /// Stop with an error at a MARK nested deeper than N (each line is indented by its MARK
    /// depth, so hostile nesting would otherwise print gigabytes of blanks; pickletools has no
    /// bound).
    #[arg(long, default_value_t = brinery::disasm::Options::DEFAULT_MAX_MARKS, value_name = "N")]
    max_marks: usize,
}

#[derive(Debug, Args)]
struct JsonArgs {
    /// The pickle file, or `-` for standard input.
    file: PathBuf,
    /// Write everything on one line instead of indenting.
    #[arg(long)]
    compact: bool,
}

fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        // A panic is a bug, but the user still gets a one-line error and exit code 2.
        eprintln!("error: internal error (please report it): {info}");
    }));
    let cli = Cli::parse();
    let outcome = std::panic::catch_unwind(|| run(cli)).unwrap_or_else(|_| Err(Failure::Panicked));
    match outcome {
        Ok(Done::Ok) => ExitCode::SUCCESS,
        Ok(Done::Findings) => ExitCode::from(1),
        Ok(Done::Errors) => ExitCode::from(2),
        Err(Failure::Error(err)) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(Failure::Error(err)) => {
            report(&err);
            ExitCode::from(2)
        }
        Err(Failure::Panicked) => ExitCode::from(2),
    }
}

enum Done {
    Ok,
    Findings,
    Errors,
}

enum Failure {
    Error(anyhow::Error),
    Panicked,
}

impl From<anyhow::Error> for Failure {
    fn from(err: anyhow::Error) -> Self {
        Failure::Error(err)
    }
}

fn run(cli: Cli) -> Result<Done, Failure> {
    match cli.command {
        Command::Dis(args) => dis(&args)?,
        Command::Json(args) => json(&args)?,
        Command::Jar(args) => {
            if !jar::run(&args)? {
                return Ok(Done::Findings);
            }
        }
        Command::Scan(args) => {
            return Ok(match scan::run(&args)? {
                scan::Outcome::Clean => Done::Ok,
                scan::Outcome::Findings => Done::Findings,
                scan::Outcome::Errors => Done::Errors,
            })
        }
    }
    Ok(Done::Ok)
}

fn dis(args: &DisArgs) -> Result<()> {
    let options = brinery::disasm::Options {
        annotate: if args.annotate { 30 } else { 0 },
        indentlevel: args.indentlevel,
        max_marks: args.max_marks,
    };
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot write {}", path.display()))?,
        )),
        None => Box::new(BufWriter::new(io::stdout().lock())),
    };
    let several = args.files.len() > 1;
    // As pickletools: one memo for all files with `-m` and several files, else one per file.
    let mut shared = brinery::disasm::SharedMemo::default();
    for file in &args.files {
        let data = read_input(file)?;
        if several {
            let name = if file.as_os_str() == "-" {
                "<stdin>".to_owned()
            } else {
                file.display().to_string()
            };
            writeln!(out, "{}", preamble(&args.preamble, &name)?)?;
        }
        let mut own = brinery::disasm::SharedMemo::default();
        let memo = if several && args.memo {
            &mut shared
        } else {
            &mut own
        };
        let result = brinery::disasm::disassemble_shared(&data, &mut out, &options, memo);
        // Whatever was disassembled before an error is still shown, as pickletools does.
        out.flush().context("cannot write the disassembly")?;
        result
            .map_err(|e| container_hint(e.into(), &data))
            .with_context(|| format!("cannot disassemble {}", display_name(file)))?;
    }
    Ok(())
}

/// pickletools' `args.preamble.format(name=...)`: `{name}` is the file name, `{{` and `}}` are
/// braces; any other field is an error, as it is for `str.format`.
fn preamble(template: &str, name: &str) -> Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("{{") {
            out.push('{');
            rest = after;
        } else if let Some(after) = tail.strip_prefix("}}") {
            out.push('}');
            rest = after;
        } else if let Some(after) = tail.strip_prefix("{name}") {
            out.push_str(name);
            rest = after;
        } else {
            bail!("the preamble {template:?} has a field other than {{name}} (write {{{{ and }}}} for braces)");
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// An error on input that is a container (gzip, zip, `.npy`, tar, ...), not a bare pickle, says
/// so: its first bytes are no opcodes, and the bare error ("invalid opcode byte 0x1f") does
/// not tell a user what to do.
fn container_hint(err: anyhow::Error, data: &[u8]) -> anyhow::Error {
    match brinery::scan::ContainerKind::detect(data) {
        Some(kind) => err.context(format!(
            "the input is a {} file, not a bare pickle: `brinery scan` reads inside it; extract or decompress the pickle first",
            kind.name()
        )),
        None => err,
    }
}

fn json(args: &JsonArgs) -> Result<()> {
    let data = read_input(&args.file)?;
    let pickle = brinery::Pickle::from_slice(&data)
        .map_err(|e| container_hint(e.into(), &data))
        .with_context(|| format!("cannot read {}", display_name(&args.file)))?;
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let options = brinery::json::Options {
        pretty: !args.compact,
    };
    brinery::json::to_writer(&pickle, &mut out, &options).context("cannot write JSON")?;
    out.write_all(b"\n")
        .and_then(|()| out.flush())
        .context("cannot write to standard output")?;
    Ok(())
}

fn read_input(path: &Path) -> Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut data = Vec::new();
        io::stdin()
            .lock()
            .read_to_end(&mut data)
            .context("cannot read standard input")?;
        Ok(data)
    } else {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    }
}

fn display_name(path: &Path) -> String {
    if path.as_os_str() == "-" {
        "standard input".to_owned()
    } else {
        path.display().to_string()
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
            || matches!(
                cause.downcast_ref::<brinery::Error>().map(brinery::Error::kind),
                Some(brinery::ErrorKind::Io(msg)) if msg.contains("Broken pipe")
            )
            || matches!(
                cause.downcast_ref::<brinery_jar::Error>(),
                Some(brinery_jar::Error::Io { error, .. }) if error.kind() == io::ErrorKind::BrokenPipe
            )
    })
}

fn report(err: &anyhow::Error) {
    let stderr = io::stderr();
    let mut e = stderr.lock();
    let (red, bold, reset) = if stderr.is_terminal() && std::env::var_os("NO_COLOR").is_none() {
        ("\x1b[31m", "\x1b[1m", "\x1b[0m")
    } else {
        ("", "", "")
    };
    let _ = writeln!(e, "{red}{bold}error{reset}: {err}");
    for cause in err.chain().skip(1) {
        let _ = writeln!(e, "  {bold}cause{reset}: {cause}");
    }
}
