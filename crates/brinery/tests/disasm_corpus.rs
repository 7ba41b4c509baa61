//! The disassembler against `python -m pickletools`, file by file.
//!
//! Every `*.pkl` in the corpus directory has a sibling `*.dis` holding the stdout of
//! `python -m pickletools FILE` (written by `scripts/gen_corpus.py`). The corpus lives in
//! `$BRINERY_CORPUS`, or `<workspace>/target/corpus` by default; the test fails, rather than
//! passing vacuously, when it is missing.

use std::path::{Path, PathBuf};

use brinery::disasm::{disassemble, Options};

fn corpus_dir() -> PathBuf {
    match std::env::var_os("BRINERY_CORPUS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/corpus"),
    }
}

fn pickles_under(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            pickles_under(&path, found);
        } else if path.extension().is_some_and(|e| e == "pkl") {
            found.push(path);
        }
    }
}

/// Where two texts first differ, as a short report.
fn first_difference(want: &[u8], got: &[u8]) -> String {
    let at = want
        .iter()
        .zip(got)
        .position(|(a, b)| a != b)
        .unwrap_or(want.len().min(got.len()));
    let line_start = want[..at]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let show = |s: &[u8]| {
        let end = s[line_start.min(s.len())..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(s.len(), |p| line_start + p);
        String::from_utf8_lossy(
            &s[line_start.min(s.len())..end.min(s.len()).max(line_start.min(s.len()))],
        )
        .chars()
        .take(200)
        .collect::<String>()
    };
    format!(
        "first difference at byte {at}\n  pickletools: {:?}\n  brinery:     {:?}",
        show(want),
        show(got)
    )
}

#[test]
fn disassembly_matches_pickletools() {
    let dir = corpus_dir();
    assert!(
        dir.is_dir(),
        "corpus missing: run .venv/bin/python scripts/gen_corpus.py target/corpus (looked in {})",
        dir.display()
    );
    let mut pickles = Vec::new();
    pickles_under(&dir, &mut pickles);
    pickles.sort();
    let mut compared = 0;
    let mut failures = Vec::new();
    for pkl in &pickles {
        let dis = pkl.with_extension("dis");
        let Ok(want) = std::fs::read(&dis) else {
            continue;
        };
        let data = std::fs::read(pkl).expect("read pickle");
        let mut got = Vec::new();
        // pickletools may raise after printing part of the text; the text must match either way.
        let _ = disassemble(&data, &mut got, &Options::default());
        compared += 1;
        if got != want {
            failures.push(format!(
                "{}: {}",
                pkl.display(),
                first_difference(&want, &got)
            ));
        }
    }
    assert!(
        compared > 0,
        "corpus missing: no *.pkl with a sibling *.dis in {}; run .venv/bin/python scripts/gen_corpus.py target/corpus",
        dir.display()
    );
    assert!(
        failures.is_empty(),
        "{} of {compared} disassemblies differ from pickletools:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{compared} disassemblies match pickletools");
}
