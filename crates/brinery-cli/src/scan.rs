//! `brinery scan PATH...`: is it safe to load these pickles? Exit 0 when every file is clean,
//! 1 when any has findings, 2 on errors (an unreadable file).
//!
//! A file named on the command line is scanned whatever it holds: what is not a pickle is a
//! finding. Inside a directory, where data files live next to pickles, a file that holds no
//! pickle by content ([`brinery::scan::may_hold_pickle`]: a CSV, a JSON file, a picture) and is
//! not named like one is skipped and counted instead (`--all-files` scans them all).

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use brinery::scan::{has_pickle_name, scan_container, ContainerOptions, Policy, Report};
use clap::Args;

/// Arguments of `brinery scan`.
#[derive(Debug, Args)]
pub(crate) struct ScanArgs {
    /// Files or directories (scanned recursively), or `-` for standard input.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Write one JSON object per file instead of the readable report.
    #[arg(long)]
    json: bool,
    /// Built-in profiles to allow, comma-separated or repeated: stdlib-data, numpy, pandas,
    /// sklearn, or `none` (default: all four).
    #[arg(long, value_name = "PROFILES", value_delimiter = ',')]
    policy: Vec<String>,
    /// Also allow this global to be called, e.g. `mypkg.models.Model` or `mypkg:Outer.Inner`.
    #[arg(long, value_name = "NAME")]
    allow: Vec<String>,
    /// Print only files with findings.
    #[arg(short, long)]
    quiet: bool,
    /// In directories, scan every file; by default a file that holds no pickle by content and
    /// is not named like one (`.pkl`, `.joblib`, `.pt`, ...) is skipped and counted.
    #[arg(long)]
    all_files: bool,
}

/// What the scan of all paths came to.
pub(crate) enum Outcome {
    Clean,
    Findings,
    Errors,
}

fn policy(args: &ScanArgs) -> Result<Policy> {
    let mut b = Policy::builder();
    if args.policy.is_empty() {
        b = b.all_profiles();
    }
    for name in &args.policy {
        if name != "none" {
            b = b.profile_name(name)?;
        }
    }
    for name in &args.allow {
        if let Ok((module, qual)) = brinery::scan::split_global_name(name) {
            if let Some(why) = brinery::scan::denied(&module, &qual) {
                eprintln!(
                    "brinery scan: --allow {name} has no effect: {module}.{qual} is never allowed ({why})"
                );
            }
        }
        b = b.allow_dotted(name)?;
    }
    Ok(b.build())
}

/// What the walk found under one path argument.
#[derive(Default)]
struct Walk {
    /// The files to scan, each with whether it was met inside a directory.
    files: Vec<(PathBuf, bool)>,
    /// Entries that are not scanned, with why (symlinks met while walking, devices, FIFOs,
    /// sockets, directories already visited).
    skipped: Vec<(PathBuf, &'static str)>,
    /// Directories visited, by (device, inode) where the platform has them.
    visited: std::collections::HashSet<(u64, u64)>,
    /// Entries that could not be read (a folder without permission): reported as errors,
    /// while the rest of the walk goes on.
    unreadable: Vec<(PathBuf, io::Error)>,
}

#[cfg(unix)]
fn file_id(meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    Some((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn file_id(_meta: &std::fs::Metadata) -> Option<(u64, u64)> {
    None
}

/// Collect the regular files under `path`. A path named on the command line is followed if it
/// is a symlink; inside a directory, a symlink is read only when it leads to a regular file
/// (a model cache links its snapshots to blobs), never followed into a directory or to a
/// device or FIFO (a link to `..` or to `/dev/zero` in an untrusted tree must not loop or
/// read forever); each directory is visited once, and anything but regular files and
/// directories is skipped. A folder inside the walk that cannot be read is noted in
/// `walk.unreadable` and the walk goes on.
fn collect(path: &Path, top: bool, walk: &mut Walk) -> io::Result<()> {
    let meta = if top {
        std::fs::metadata(path)?
    } else {
        std::fs::symlink_metadata(path)?
    };
    let kind = meta.file_type();
    if kind.is_dir() {
        if let Some(id) = file_id(&meta) {
            if !walk.visited.insert(id) {
                walk.skipped
                    .push((path.to_owned(), "directory already scanned"));
                return Ok(());
            }
        }
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.path()))
            .collect::<io::Result<_>>()?;
        entries.sort();
        for e in entries {
            if let Err(err) = collect(&e, false, walk) {
                walk.unreadable.push((e, err));
            }
        }
    } else if kind.is_file() {
        walk.files.push((path.to_owned(), !top));
    } else if kind.is_symlink() {
        if std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
            walk.files.push((path.to_owned(), true));
        } else {
            walk.skipped.push((
                path.to_owned(),
                "symbolic link to something other than a regular file (not followed)",
            ));
        }
    } else if top {
        return Err(io::Error::other(
            "not a regular file (a device, FIFO or socket is never read)",
        ));
    } else {
        walk.skipped.push((
            path.to_owned(),
            "not a regular file (a device, FIFO or socket is never read)",
        ));
    }
    Ok(())
}

pub(crate) fn run(args: &ScanArgs) -> Result<Outcome> {
    let policy = policy(args)?;
    let limits = brinery::Limits::default();
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let (mut findings, mut errors) = (false, false);
    for root in &args.paths {
        let mut walk = Walk::default();
        if root.as_os_str() == "-" {
            walk.files.push((root.clone(), false));
        } else if let Err(e) = collect(root, true, &mut walk) {
            errors = true;
            crate::report(
                &anyhow::Error::new(e).context(format!("cannot read {}", root.display())),
            );
            continue;
        }
        for (path, why) in &walk.skipped {
            eprintln!("brinery scan: skipped {}: {why}", path.display());
        }
        for (path, err) in walk.unreadable.drain(..) {
            errors = true;
            crate::report(
                &anyhow::Error::new(err).context(format!("cannot read {}", path.display())),
            );
        }
        let mut not_pickles = 0usize;
        for (file, in_dir) in walk.files {
            let data = match crate::read_input(&file) {
                Ok(d) => d,
                Err(e) => {
                    errors = true;
                    crate::report(&e);
                    if args.json {
                        // a script reading the lines learns about the file too
                        let line = serde_json::json!({
                            "path": crate::display_name(&file),
                            "ok": false,
                            "error": format!("{e:#}"),
                        });
                        serde_json::to_writer(&mut out, &line)?;
                        writeln!(out)?;
                    }
                    continue;
                }
            };
            let options = ContainerOptions {
                pickles_only: in_dir
                    && !args.all_files
                    && !file
                        .file_name()
                        .is_some_and(|n| has_pickle_name(&n.to_string_lossy())),
                ..ContainerOptions::default()
            };
            let report = scan_container(&data, &policy, &limits, &options);
            if options.pickles_only && holds_no_pickle(&report) {
                not_pickles += 1;
                continue;
            }
            findings |= !report.is_ok();
            let name = crate::display_name(&file);
            if args.quiet && report.is_ok() {
                // -q: only files with findings, in both forms
            } else if args.json {
                serde_json::to_writer(&mut out, &json(&name, &report))?;
                writeln!(out)?;
            } else {
                text(&mut out, &name, &report)?;
            }
        }
        if not_pickles > 0 {
            out.flush().context("cannot write to standard output")?;
            eprintln!(
                "brinery scan: {not_pickles} file(s) under {} hold no pickle by content or name \
                 and were not scanned (--all-files scans them)",
                root.display()
            );
        }
    }
    out.flush().context("cannot write to standard output")?;
    Ok(if errors {
        Outcome::Errors
    } else if findings {
        Outcome::Findings
    } else {
        Outcome::Clean
    })
}

/// Whether nothing in a file was scanned because nothing in it holds a pickle.
fn holds_no_pickle(report: &Report) -> bool {
    report.findings.is_empty()
        && report.opcodes == 0
        && report.members.is_empty()
        && !report.skipped.is_empty()
}

fn text(out: &mut impl Write, name: &str, report: &Report) -> Result<()> {
    if report.is_ok() {
        writeln!(
            out,
            "{name}: ok ({} global(s), {} opcode(s))",
            report.global_names().len(),
            report.opcodes
        )?;
        return Ok(());
    }
    writeln!(out, "{name}: {} finding(s)", report.findings.len())?;
    for f in &report.findings {
        let member = f
            .member
            .as_deref()
            .map(|m| format!("[{m}] "))
            .unwrap_or_default();
        let global = f.global_name().map(|g| format!(" {g}")).unwrap_or_default();
        let opcode = f.opcode.map(|o| format!(" {o}")).unwrap_or_default();
        writeln!(
            out,
            "  {member}byte {}{opcode}{global}: {} {}: {}",
            f.offset,
            f.rule.code(),
            f.rule.name(),
            f.message
        )?;
    }
    let fixable: Vec<String> = report
        .findings
        .iter()
        .filter(|f| {
            matches!(
                f.rule,
                brinery::scan::Rule::DisallowedGlobal | brinery::scan::Rule::RefOnlyCalled
            )
        })
        .filter_map(|f| f.allow_name())
        .collect();
    if !fixable.is_empty() {
        let mut names = fixable;
        names.sort();
        names.dedup();
        let allows: Vec<String> = names.iter().map(|n| format!("--allow {n}")).collect();
        writeln!(
            out,
            "  hint: if you trust this file, allow its globals with {}",
            allows.join(" ")
        )?;
    }
    Ok(())
}

fn json(name: &str, report: &Report) -> serde_json::Value {
    let findings: Vec<serde_json::Value> = report
        .findings
        .iter()
        .map(|f| {
            serde_json::json!({
                "rule": f.rule.code(),
                "name": f.rule.name(),
                "offset": f.offset,
                "opcode": f.opcode.map(|o| o.name()),
                "global": f.global_name(),
                "member": f.member,
                "message": f.message,
            })
        })
        .collect();
    serde_json::json!({
        "path": name,
        "ok": report.is_ok(),
        "findings": findings,
        "globals": report.global_names(),
        "members": report.members,
        "opcodes": report.opcodes,
    })
}
