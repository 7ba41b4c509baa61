//! `brinery jar ...`: look at and manage a jar without Python (format: docs/jar-format.md).
//!
//! Exit codes as everywhere in the CLI: 0 ok, 1 problems found (`verify`), 2 error.

use std::io::{self, Read, Write};
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use brinery_jar::{human_bytes, Jar, VersionInfo, VersionSpec};
use clap::{Args, Subcommand};

/// Objects saved by name, with history, branches and tags.
#[derive(Debug, Args)]
pub(crate) struct JarArgs {
    /// The jar folder (default: $BRINERY_JAR, else the nearest `.brinery` folder at or above the
    /// current directory).
    #[arg(long, global = true, value_name = "PATH")]
    jar: Option<PathBuf>,
    /// The branch (default: $BRINERY_BRANCH, else `main`).
    #[arg(long, global = true, value_name = "B")]
    branch: Option<String>,
    #[command(subcommand)]
    command: JarCommand,
}

#[derive(Debug, Subcommand)]
enum JarCommand {
    /// List the objects on the branch with their newest version.
    Ls {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Show the history of an object (oldest first).
    Log {
        /// The object name.
        name: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Show one version: type, size, saved by, library versions, globals, signature.
    Show {
        /// `NAME`, `NAME@N` (1-based; negative from the end) or `NAME@TAG`.
        spec: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Write a version as a plain pickle file that `pickle.load` reads without brinery.
    Export {
        /// `NAME`, `NAME@N` or `NAME@TAG`.
        spec: String,
        /// The pickle file to write, or `-` for standard output.
        file: PathBuf,
    },
    /// Save a pickle file as a new version of NAME.
    Import {
        /// The object name.
        name: String,
        /// The pickle file to read, or `-` for standard input.
        file: PathBuf,
        /// A note for the new version.
        #[arg(long)]
        note: Option<String>,
    },
    /// Tag a version (tags never move).
    Tag {
        /// The object name.
        name: String,
        /// The version: a number (1-based; negative from the end) or an existing tag.
        #[arg(value_name = "VERSION", allow_negative_numbers = true)]
        at: String,
        /// The new tag.
        tag: String,
    },
    /// Delete an object on the branch (its history is kept until gc).
    Rm {
        /// The object name.
        name: String,
    },
    /// List the branches.
    Branches,
    /// Make branch NAME from the branch's current state (`--branch`, default main).
    Branch {
        /// The new branch.
        name: String,
    },
    /// Remove what no branch, tag or undeleted history needs.
    Gc {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Re-hash every chunk and check every file; exit 1 if anything is damaged.
    Verify {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

fn locate(args: &JarArgs, create: bool) -> Result<Jar> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let path = match &args.jar {
        Some(p) => p.clone(),
        None if create => brinery_jar::default_jar_dir(&cwd),
        None => brinery_jar::find_jar(&cwd).ok_or_else(|| {
            anyhow!(
                "no jar found (no .brinery folder at or above {}; pass --jar or set BRINERY_JAR)",
                cwd.display()
            )
        })?,
    };
    let jar = if create {
        Jar::init(&path)
    } else {
        if !path.exists() {
            bail!("no jar at {}", path.display());
        }
        Jar::open(&path)
    };
    jar.with_context(|| format!("cannot open the jar at {}", path.display()))
}

fn branch(args: &JarArgs) -> String {
    args.branch
        .clone()
        .or_else(|| {
            std::env::var("BRINERY_BRANCH")
                .ok()
                .filter(|b| !b.is_empty())
        })
        .unwrap_or_else(|| "main".to_string())
}

/// `NAME`, `NAME@N` or `NAME@TAG`; an empty name or version is an error that says so (it was
/// a confusing "Is a directory" from the jar, or silently the latest version).
fn split_spec(spec: &str) -> Result<(&str, VersionSpec)> {
    let (name, version) = match spec.rsplit_once('@') {
        Some((name, v)) => (name, Some(v)),
        None => (spec, None),
    };
    if name.is_empty() {
        bail!("no name in {spec:?}: expected NAME, NAME@VERSION or NAME@TAG");
    }
    match version {
        Some("") => bail!("no version after '@' in {spec:?}: expected NAME@VERSION or NAME@TAG"),
        Some(v) => Ok((name, VersionSpec::parse(v))),
        None => Ok((name, VersionSpec::Latest)),
    }
}

fn meta_str(v: &VersionInfo, key: &str) -> String {
    v.manifest
        .as_ref()
        .and_then(|m| m.meta.get(key))
        .map(|x| match x {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => String::new(),
            other => other.to_string(),
        })
        .unwrap_or_default()
}

fn short_time(t: &str) -> String {
    // 2026-11-26T09:40:00.123Z -> 2026-11-26 09:40:00
    t.get(..19).unwrap_or(t).replace('T', " ")
}

fn print_json(out: &mut dyn Write, v: &serde_json::Value) -> Result<()> {
    serde_json::to_writer_pretty(&mut *out, v).context("cannot write JSON")?;
    writeln!(out)?;
    Ok(())
}

/// Print rows as aligned columns.
/// `s` with every control character (newlines, carriage returns, escape sequences, NUL, C1)
/// written as an escape (`\n`, `\u{1b}`): what a jar's metadata says (a note, a column name,
/// an exception message, a global of an imported pickle) must not add lines to the output or
/// drive the terminal.
fn clean(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// `s` as one shell word: as it is when it holds only characters no shell treats specially,
/// else in single quotes (a quote inside written `'\''`).
fn shell_word(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-.,:/@%+=".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_string()
    } else {
        format!("'{}'", clean(s).replace('\'', "'\\''"))
    }
}

/// [`clean`] applied to every string, key and value, of a JSON value.
fn clean_json(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::String(s) => Value::String(clean(s).into_owned()),
        Value::Array(items) => Value::Array(items.iter().map(clean_json).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (clean(k).into_owned(), clean_json(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn table(out: &mut dyn Write, rows: &[Vec<String>]) -> Result<()> {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| clean(c).into_owned()).collect())
        .collect();
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in &rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[c]));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// Run `brinery jar ...`; `Ok(false)` when `verify` found problems (exit 1).
pub(crate) fn run(args: &JarArgs) -> Result<bool> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let b = branch(args);
    let code = match &args.command {
        JarCommand::Ls { json } => {
            let jar = locate(args, false)?;
            let mut infos = Vec::new();
            for name in jar.names(&b)? {
                // the history lists a damaged version (its `problem`) instead of failing
                let mut log = jar.log(&b, &name)?;
                let versions = log.iter().filter(|v| !v.deleted).count();
                let Some(latest) = log.pop().filter(|v| !v.deleted) else {
                    continue;
                };
                infos.push((latest, versions));
            }
            if *json {
                let list = infos
                    .iter()
                    .map(|(v, n)| {
                        let mut j = v.to_json();
                        j["versions"] = (*n).into();
                        j
                    })
                    .collect();
                print_json(&mut out, &serde_json::Value::Array(list))?;
            } else if infos.is_empty() {
                writeln!(out, "no objects on branch {b} in {}", jar.root().display())?;
            } else {
                let mut rows = vec![vec![
                    "NAME".into(),
                    "VERSION".into(),
                    "SAVED".into(),
                    "SIZE".into(),
                    "TYPE".into(),
                    "NOTE".into(),
                ]];
                for (v, n) in &infos {
                    rows.push(vec![
                        v.name.clone(),
                        n.to_string(),
                        short_time(&v.time),
                        human_bytes(v.manifest.as_ref().map_or(0, |m| m.size)),
                        match &v.problem {
                            Some(_) => "(damaged: see verify)".to_owned(),
                            None => meta_str(v, "type"),
                        },
                        v.manifest
                            .as_ref()
                            .and_then(|m| m.note.clone())
                            .unwrap_or_default(),
                    ]);
                }
                table(&mut out, &rows)?;
            }
            0
        }
        JarCommand::Log { name, json } => {
            let jar = locate(args, false)?;
            let log = jar.log(&b, name)?;
            if *json {
                let list = log.iter().map(VersionInfo::to_json).collect();
                print_json(&mut out, &serde_json::Value::Array(list))?;
            } else {
                let mut rows = vec![vec![
                    "VERSION".into(),
                    "SAVED".into(),
                    "SIZE".into(),
                    "STORED".into(),
                    "TYPE".into(),
                    "BY".into(),
                    "TAGS".into(),
                    "NOTE".into(),
                ]];
                for v in &log {
                    if v.deleted {
                        rows.push(vec![
                            "-".into(),
                            short_time(&v.time),
                            String::new(),
                            String::new(),
                            "(deleted)".into(),
                        ]);
                        continue;
                    }
                    let m = v.manifest.as_ref();
                    rows.push(vec![
                        v.version.map_or(String::new(), |n| n.to_string()),
                        short_time(&v.time),
                        human_bytes(m.map_or(0, |m| m.size)),
                        human_bytes(m.map_or(0, |m| m.stored)),
                        match &v.problem {
                            Some(_) => "(damaged: see verify)".to_owned(),
                            None => meta_str(v, "type"),
                        },
                        meta_str(v, "saved_by"),
                        v.tags.join(","),
                        m.and_then(|m| m.note.clone()).unwrap_or_default(),
                    ]);
                }
                table(&mut out, &rows)?;
            }
            0
        }
        JarCommand::Show { spec, json } => {
            let jar = locate(args, false)?;
            let (name, vs) = split_spec(spec)?;
            let v = jar.info(&b, name, &vs)?;
            if *json {
                print_json(&mut out, &v.to_json())?;
            } else {
                show(&mut out, &v)?;
            }
            0
        }
        JarCommand::Export { spec, file } => {
            let jar = locate(args, false)?;
            let (name, vs) = split_spec(spec)?;
            let info = jar.info(&b, name, &vs)?;
            if file.as_os_str() == "-" {
                // the pickle itself is the output (`brinery jar export df - | brinery dis -`)
                jar.export_pickle_to(&b, name, &vs, &mut out)
                    .with_context(|| format!("cannot export {spec} to standard output"))?;
            } else {
                let n = jar
                    .export_pickle(&b, name, &vs, file)
                    .with_context(|| format!("cannot export {spec} to {}", file.display()))?;
                writeln!(
                    out,
                    "exported {name}@{} to {} ({})",
                    info.version.unwrap_or(0),
                    file.display(),
                    human_bytes(n)
                )?;
            }
            0
        }
        JarCommand::Import { name, file, note } => {
            let jar = locate(args, true)?;
            let v = if file.as_os_str() == "-" {
                let mut data = Vec::new();
                std::io::stdin()
                    .lock()
                    .read_to_end(&mut data)
                    .context("cannot read standard input")?;
                jar.import_pickle_bytes(&b, name, &data, Some("<stdin>".into()), note.clone())
                    .context("cannot import standard input")?
            } else {
                jar.import_pickle(&b, name, file, note.clone())
                    .with_context(|| format!("cannot import {}", file.display()))?
            };
            writeln!(
                out,
                "saved {name}@{} on branch {b} ({}, {} stored)",
                v.version.unwrap_or(0),
                human_bytes(v.manifest.as_ref().map_or(0, |m| m.size)),
                human_bytes(v.manifest.as_ref().map_or(0, |m| m.stored))
            )?;
            0
        }
        JarCommand::Tag { name, at, tag } => {
            let jar = locate(args, false)?;
            let v = jar.tag(&b, name, &VersionSpec::parse(at), tag)?;
            writeln!(out, "tagged {name}@{} as {tag}", v.version.unwrap_or(0))?;
            0
        }
        JarCommand::Rm { name } => {
            let jar = locate(args, false)?;
            jar.delete(&b, name)?;
            writeln!(
                out,
                "deleted {name} on branch {b} (history kept until `brinery jar gc`)"
            )?;
            0
        }
        JarCommand::Branches => {
            let jar = locate(args, false)?;
            for br in jar.branches()? {
                let mark = if br == b { "* " } else { "  " };
                writeln!(out, "{mark}{br}")?;
            }
            0
        }
        JarCommand::Branch { name } => {
            let jar = locate(args, false)?;
            jar.create_branch(name, &b)?;
            let word = shell_word(name);
            writeln!(
                out,
                "created branch {} from {} (use it with `--branch={word}` or BRINERY_BRANCH={word})",
                clean(name),
                clean(&b)
            )?;
            0
        }
        JarCommand::Gc { json } => {
            let jar = locate(args, false)?;
            let r = jar.gc()?;
            if *json {
                print_json(&mut out, &serde_json::to_value(&r)?)?;
            } else {
                writeln!(
                    out,
                    "removed {} chunks, {} manifests, {} log entries, {} temporary files ({} freed)",
                    r.chunks,
                    r.manifests,
                    r.entries,
                    r.temporary,
                    human_bytes(r.bytes)
                )?;
            }
            0
        }
        JarCommand::Verify { json } => {
            let jar = locate(args, false)?;
            let r = jar.verify()?;
            if *json {
                print_json(&mut out, &serde_json::to_value(&r)?)?;
            } else {
                for p in &r.problems {
                    writeln!(out, "{}: {}", p.path, p.problem)?;
                    if !p.versions.is_empty() {
                        writeln!(out, "  affects: {}", p.versions.join(", "))?;
                    }
                }
                let status = if r.ok {
                    "ok".to_string()
                } else {
                    format!("{} problems", r.problems.len())
                };
                writeln!(
                    out,
                    "{status}: {} chunks re-hashed, {} manifests, {} log entries checked",
                    r.chunks, r.manifests, r.entries
                )?;
            }
            i32::from(!r.ok)
        }
    };
    out.flush().context("cannot write to standard output")?;
    Ok(code == 0)
}

fn show(out: &mut dyn Write, v: &VersionInfo) -> Result<()> {
    let Some(m) = &v.manifest else {
        writeln!(out, "{} (deleted at {})", v.name, v.time)?;
        return Ok(());
    };
    writeln!(
        out,
        "{}@{}  (branch {}, id {})",
        v.name,
        v.version.unwrap_or(0),
        v.branch,
        v.id.as_deref().unwrap_or("?").get(..16).unwrap_or("?")
    )?;
    let meta = clean_json(&m.meta).as_object().cloned().unwrap_or_default();
    let text = |key: &str| match meta.get(key) {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Null) | None => None,
        Some(other) => Some(other.to_string()),
    };
    let summary = meta.get("summary").and_then(|s| s.as_object());
    if let Some(t) = text("type") {
        let what = summary.map(summary_line).unwrap_or_default();
        writeln!(out, "type       {t}{what}")?;
    }
    if let Some(sm) = summary {
        for line in summary_details(sm) {
            writeln!(out, "{line}")?;
        }
    }
    let mut saved = v.time.clone();
    if let Some(user) = text("user") {
        saved += &format!(" by {user}");
    }
    match (
        text("saved_by"),
        meta.get("source").and_then(|s| s.get("kind")),
    ) {
        (Some(path), Some(serde_json::Value::String(kind))) => {
            saved += &format!(", from {path} ({kind})")
        }
        (Some(path), _) => saved += &format!(", from {path}"),
        _ => {}
    }
    writeln!(out, "saved      {saved}")?;
    if let Some(n) = &m.note {
        writeln!(out, "note       {}", clean(n))?;
    }
    let buffers = m.buffers.len();
    writeln!(
        out,
        "size       {} (pickle {}{}), {} stored by this version",
        human_bytes(m.size),
        human_bytes(m.pickle.size),
        match buffers {
            0 => String::new(),
            1 => " + 1 buffer".to_string(),
            n => format!(" + {n} buffers"),
        },
        human_bytes(m.stored)
    )?;
    if !v.tags.is_empty() {
        writeln!(out, "tags       {}", v.tags.join(", "))?;
    }
    writeln!(
        out,
        "signature  {}{}",
        v.signature.as_str(),
        v.key_id
            .as_deref()
            .map(|k| format!(" (key {k})"))
            .unwrap_or_default()
    )?;
    let mut made = Vec::new();
    if let Some(py) = text("python") {
        made.push(format!("Python {py}"));
    }
    if let Some(b) = text("brinery") {
        made.push(format!("brinery {b}"));
    }
    if let Some(libs) = meta.get("libraries").and_then(|l| l.as_object()) {
        for (lib, ver) in libs {
            made.push(format!("{lib} {}", ver.as_str().unwrap_or("?")));
        }
    }
    if !made.is_empty() {
        let proto = text("protocol")
            .map(|p| format!(" (pickle protocol {p})"))
            .unwrap_or_default();
        writeln!(out, "made with  {}{proto}", made.join(", "))?;
    }
    if !m.globals.is_empty() {
        let globals: Vec<String> = m.globals.iter().map(|g| clean(g).into_owned()).collect();
        write_wrapped(out, "globals", &globals)?;
    }
    // Anything else the saver recorded (an import's source file, keys of newer versions).
    const SHOWN: [&str; 14] = [
        "type",
        "summary",
        "user",
        "saved_by",
        "source",
        "time",
        "note",
        "size",
        "pickle_size",
        "buffers",
        "python",
        "brinery",
        "libraries",
        "protocol",
    ];
    for (k, val) in &meta {
        if SHOWN.contains(&k.as_str()) || val.is_null() {
            continue;
        }
        let text = match val {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        writeln!(out, "{:<10} {text}", k.replace('_', " "))?;
    }
    Ok(())
}

/// The summary's headline after the type: `, 1000 x 2`, `, shape 3 x 4, float64`, `, fitted`,
/// `, 12 items`.
fn summary_line(sm: &serde_json::Map<String, serde_json::Value>) -> String {
    let mut parts = Vec::new();
    if let Some(shape) = sm.get("shape").and_then(|s| s.as_array()) {
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        parts.push(match dims.len() {
            0 => "shape () (a scalar)".to_string(),
            _ => format!("shape {}", dims.join(" x ")),
        });
    }
    if let Some(dt) = sm.get("dtype").and_then(|d| d.as_str()) {
        parts.push(dt.to_string());
    }
    if let Some(name) = sm.get("name").and_then(|d| d.as_str()) {
        parts.push(format!("name {name:?}"));
    }
    match sm.get("fitted").and_then(|f| f.as_bool()) {
        Some(true) => parts.push("fitted".to_string()),
        Some(false) => parts.push("not fitted".to_string()),
        None => {}
    }
    if let Some(n) = sm.get("len") {
        parts.push(format!("length {n}"));
    }
    parts.iter().map(|p| format!(", {p}")).collect()
}

/// The summary's detail lines: a DataFrame's columns with their dtypes, an estimator's
/// parameters, a summary that failed.
fn summary_details(sm: &serde_json::Map<String, serde_json::Value>) -> Vec<String> {
    let mut lines = Vec::new();
    let mut push = |label: &str, items: Vec<String>| {
        let mut buf = Vec::new();
        // a Vec<u8> never fails to write
        let _ = write_wrapped(&mut buf, label, &items);
        lines.extend(String::from_utf8_lossy(&buf).lines().map(str::to_string));
    };
    if let Some(cols) = sm.get("columns").and_then(|c| c.as_array()) {
        let dtypes = sm.get("dtypes").and_then(|d| d.as_object());
        let mut items: Vec<String> = cols
            .iter()
            .map(|c| {
                let c = c.as_str().unwrap_or("?");
                match dtypes.and_then(|d| d.get(c)).and_then(|t| t.as_str()) {
                    Some(t) => format!("{c} ({t})"),
                    None => c.to_string(),
                }
            })
            .collect();
        if let Some(more) = sm.get("more_columns") {
            items.push(format!("and {more} more"));
        }
        push("columns", items);
    }
    if let Some(params) = sm.get("params").and_then(|p| p.as_object()) {
        let items = params
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().map_or(v.to_string(), str::to_string)))
            .collect();
        push("params", items);
    }
    if let Some(e) = sm.get("summary_error").and_then(|e| e.as_str()) {
        push("summary", vec![format!("(could not be made: {e})")]);
    }
    lines
}

/// `label     a, b, c,` wrapped at 100 columns, continuation lines indented under the first.
fn write_wrapped(out: &mut dyn Write, label: &str, items: &[String]) -> std::io::Result<()> {
    const WIDTH: usize = 100;
    let indent = " ".repeat(11);
    let mut line = format!("{label:<10} ");
    let mut first = true;
    for (i, item) in items.iter().enumerate() {
        let sep = if i + 1 < items.len() { "," } else { "" };
        if !first && line.len() + 1 + item.len() + sep.len() > WIDTH {
            writeln!(out, "{}", line.trim_end())?;
            line = indent.clone();
            first = true;
        }
        if !first {
            line.push(' ');
        }
        line.push_str(item);
        line.push_str(sep);
        first = false;
    }
    writeln!(out, "{line}")
}
