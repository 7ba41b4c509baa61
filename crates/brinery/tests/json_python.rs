//! The JSON export against real parsers: every document parses with `serde_json`, and CPython
//! rebuilds from it exactly what `pickle.loads` returns (`scripts/check_json.py`).
//!
//! Needs the project's venv (`scripts/setup.sh`); point `BRINERY_PYTHON` elsewhere to use another
//! interpreter. The shared corpus (`BRINERY_CORPUS`, default `<workspace>/target/corpus`, made by
//! `scripts/gen_corpus.py`) is checked too when it exists.

use std::path::{Path, PathBuf};
use std::process::Command;

use brinery::json::{to_json, to_json_pretty, to_writer, Options};
use brinery::Pickle;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

fn python() -> PathBuf {
    let python = std::env::var_os("BRINERY_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".venv/bin/python"));
    assert!(
        python.exists(),
        "no Python at {} (set BRINERY_PYTHON, or create the venv with scripts/setup.sh)",
        python.display()
    );
    python
}

fn run_python(args: &[&str]) -> String {
    let script = workspace().join("scripts/check_json.py");
    let out = Command::new(python())
        .arg(&script)
        .args(args)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} {args:?} failed:\n{stdout}\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Check `json` against the JSON grammar (RFC 8259) without recursion; returns the deepest
/// nesting. serde_json stops at 128 levels, so deeper documents need this.
fn validate(json: &str) -> Result<usize, String> {
    let b = json.as_bytes();
    let mut i = 0;
    let mut stack: Vec<u8> = Vec::new();
    let mut max_depth = 0;
    let ws = |i: &mut usize| {
        while *i < b.len() && matches!(b[*i], b' ' | b'\t' | b'\n' | b'\r') {
            *i += 1;
        }
    };
    let err = |i: usize, what: &str| Err(format!("{what} at byte {i}"));
    loop {
        // A value is expected at `i`.
        ws(&mut i);
        match b.get(i) {
            Some(b'[') | Some(b'{') => {
                let open = b[i];
                stack.push(open);
                max_depth = max_depth.max(stack.len());
                i += 1;
                ws(&mut i);
                let close = if open == b'[' { b']' } else { b'}' };
                if b.get(i) == Some(&close) {
                    i += 1;
                    stack.pop();
                } else {
                    if open == b'{' {
                        i = string(b, i)?;
                        ws(&mut i);
                        if b.get(i) != Some(&b':') {
                            return err(i, "expected ':'");
                        }
                        i += 1;
                    }
                    continue;
                }
            }
            Some(b'"') => i = string(b, i)?,
            Some(b't') if b[i..].starts_with(b"true") => i += 4,
            Some(b'f') if b[i..].starts_with(b"false") => i += 5,
            Some(b'n') if b[i..].starts_with(b"null") => i += 4,
            Some(b'-' | b'0'..=b'9') => i = number(b, i)?,
            _ => return err(i, "expected a value"),
        }
        // After a value: close containers or move to the next item.
        loop {
            ws(&mut i);
            let Some(&open) = stack.last() else {
                return if i == b.len() {
                    Ok(max_depth)
                } else {
                    err(i, "trailing data")
                };
            };
            let close = if open == b'[' { b']' } else { b'}' };
            match b.get(i) {
                Some(&c) if c == close => {
                    i += 1;
                    stack.pop();
                }
                Some(b',') => {
                    i += 1;
                    if open == b'{' {
                        ws(&mut i);
                        i = string(b, i)?;
                        ws(&mut i);
                        if b.get(i) != Some(&b':') {
                            return err(i, "expected ':'");
                        }
                        i += 1;
                    }
                    break;
                }
                _ => return err(i, "expected ',' or a closing bracket"),
            }
        }
    }
}

fn string(b: &[u8], mut i: usize) -> Result<usize, String> {
    if b.get(i) != Some(&b'"') {
        return Err(format!("expected a string at byte {i}"));
    }
    i += 1;
    loop {
        match b.get(i) {
            None => return Err("unterminated string".into()),
            Some(b'"') => return Ok(i + 1),
            Some(b'\\') => match b.get(i + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => i += 2,
                Some(b'u')
                    if b.len() >= i + 6 && b[i + 2..i + 6].iter().all(u8::is_ascii_hexdigit) =>
                {
                    i += 6
                }
                _ => return Err(format!("bad escape at byte {i}")),
            },
            Some(&c) if c < 0x20 => return Err(format!("control character in string at byte {i}")),
            Some(_) => i += 1,
        }
    }
}

fn number(b: &[u8], mut i: usize) -> Result<usize, String> {
    let start = i;
    let digits = |i: &mut usize| {
        let s = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > s
    };
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    if b.get(i) == Some(&b'0') {
        i += 1;
    } else if !digits(&mut i) {
        return Err(format!("bad number at byte {start}"));
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return Err(format!("bad fraction at byte {start}"));
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return Err(format!("bad exponent at byte {start}"));
        }
    }
    Ok(i)
}

/// Check `json` with the validator above and with serde_json. Lone surrogates (`"\ud800"`) are
/// valid JSON but cannot become a Rust `String`, so such documents go through `IgnoredAny`;
/// documents nested deeper than serde_json's recursion limit (128) rely on the validator alone.
fn assert_parses(json: &str, what: &str) {
    let depth = validate(json).unwrap_or_else(|e| panic!("{what}: {e}\n{json:.500}"));
    if depth >= 127 {
        return;
    }
    let surrogates = json
        .as_bytes()
        .windows(4)
        .any(|w| w[..3] == *b"\\ud" && matches!(w[3], b'8'..=b'9' | b'a'..=b'f'));
    if surrogates {
        serde_json::from_str::<serde::de::IgnoredAny>(json)
            .unwrap_or_else(|e| panic!("{what}: {e}\n{json:.500}"));
    } else {
        serde_json::from_str::<serde_json::Value>(json)
            .unwrap_or_else(|e| panic!("{what}: {e}\n{json:.500}"));
    }
}

#[test]
fn the_validator_rejects_what_serde_json_rejects() {
    for bad in [
        "",
        "[",
        "[1,]",
        "{\"a\"}",
        "{1:2}",
        "01",
        "1.",
        "\"\\x\"",
        "nul",
        "[1] 2",
        "\"\u{1}\"",
    ] {
        assert!(validate(bad).is_err(), "{bad:?}");
        assert!(
            serde_json::from_str::<serde::de::IgnoredAny>(bad).is_err(),
            "{bad:?}"
        );
    }
    for good in [
        "0",
        "-0.5e+3",
        "[]",
        "{}",
        "[[1,{\"a\":[true,false,null]}]]",
        " \"\\ud800\" ",
    ] {
        assert!(validate(good).is_ok(), "{good:?}");
        assert!(
            serde_json::from_str::<serde::de::IgnoredAny>(good).is_ok(),
            "{good:?}"
        );
    }
}

/// Write `X.json` and `X.pretty.json` next to every `X.pkl` in `dir` that brinery reads; returns
/// how many were converted and how many could not be read.
fn convert_dir(dir: &Path) -> (usize, usize) {
    let mut converted = 0;
    let mut unreadable = 0;
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pkl"))
        .collect();
    files.sort();
    for path in files {
        let data = std::fs::read(&path).unwrap();
        let Ok(pickle) = Pickle::from_slice(&data) else {
            unreadable += 1;
            continue;
        };
        let name = path.display().to_string();
        let compact = to_json(&pickle);
        let pretty = to_json_pretty(&pickle);
        assert_parses(&compact, &name);
        assert_parses(&pretty, &name);
        let mut written = Vec::new();
        to_writer(&pickle, &mut written, &Options { pretty: true }).unwrap();
        assert_eq!(
            written,
            pretty.as_bytes(),
            "{name}: to_writer != to_json_pretty"
        );
        std::fs::write(path.with_extension("json"), &compact).unwrap();
        std::fs::write(path.with_extension("pretty.json"), &pretty).unwrap();
        converted += 1;
    }
    (converted, unreadable)
}

#[test]
fn python_rebuilds_what_pickle_loads_returns() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("json_python");
    let _ = std::fs::remove_dir_all(&dir);
    run_python(&["gen", dir.to_str().unwrap()]);
    let (converted, unreadable) = convert_dir(&dir);
    assert_eq!(unreadable, 0);
    assert!(converted >= 100, "only {converted} pickles");
    let report = run_python(&["check", dir.to_str().unwrap()]);
    println!("{report}");
    assert!(
        report.contains(&format!("{} documents equal", 2 * converted)),
        "{report}"
    );
}

#[test]
fn every_corpus_file_converts_to_valid_json() {
    let dir = std::env::var_os("BRINERY_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/corpus"));
    if !dir.join("manifest.json").exists() {
        eprintln!(
            "no corpus at {} (scripts/gen_corpus.py): skipped",
            dir.display()
        );
        return;
    }
    // Work on a copy: the corpus directory belongs to its generator.
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("json_corpus");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let keep = path.extension().is_some_and(|e| e == "pkl" || e == "json");
        if keep {
            std::fs::copy(&path, work.join(path.file_name().unwrap())).unwrap();
        }
    }
    let (converted, unreadable) = convert_dir(&work);
    println!("corpus: {converted} converted, {unreadable} not readable by the value machine");
    assert!(converted > 0);
    // Where the decoder can rebuild the value (plain data), it must equal pickle.loads.
    let report = run_python(&["check", work.to_str().unwrap(), "--allow-unsupported"]);
    println!("{report}");
}
