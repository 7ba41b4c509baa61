//! Shared helpers for the integration tests that read the CPython-generated corpus.
//!
//! The corpus is produced by `scripts/gen_corpus.py` (see its docstring for the layout). Tests find
//! it through the `BRINERY_CORPUS` environment variable, or at `<workspace>/target/corpus`. A
//! missing corpus is a test *failure*, never a silent pass: use [`corpus_dir`] (or [`manifest`]),
//! which panics with the command that generates it.
//!
//! Use from a test file with `mod common;`.
#![allow(
    dead_code,
    reason = "each test binary that includes this module uses a different subset of it"
)]

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The message a test fails with when the corpus has not been generated.
pub const MISSING: &str =
    "corpus missing: run .venv/bin/python scripts/gen_corpus.py target/corpus";

/// One pickle of the corpus, as listed in `manifest.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct Entry {
    /// The `.pkl` file name, relative to the corpus directory, e.g. `int_0.p2.pkl`.
    pub file: String,
    /// The case name, e.g. `int_0` (hand-written pickles start with `hand_`).
    pub case: String,
    /// The protocol it was pickled with (hand-written: the highest protocol among its opcodes).
    pub protocol: u8,
    /// Whether a `.dis` file (the exact output of `python -m pickletools`) exists next to it.
    pub dis: bool,
    /// How many out-of-band buffers (protocol 5) the pickle was written with.
    pub oob_buffers: usize,
    /// The out-of-band buffer files, in order.
    #[serde(default)]
    pub buffers: Vec<String>,
    /// Whether it was written by hand rather than by CPython's pickler.
    #[serde(default)]
    pub hand: bool,
    /// Why pickletools could not disassemble it, if it could not.
    #[serde(default)]
    pub dis_error: Option<String>,
    /// How CPython loads it (`loads`, `persistent`, `latin1`, `buffers`, `int_max_str_digits=0`).
    #[serde(default)]
    pub load: String,
}

impl Entry {
    /// The path of the `.pkl` file.
    pub fn path(&self) -> PathBuf {
        corpus_dir().join(&self.file)
    }

    /// The path of the `.dis` file (it exists only if [`Entry::dis`] is true).
    pub fn dis_path(&self) -> PathBuf {
        corpus_dir().join(self.file.replace(".pkl", ".dis"))
    }

    /// The pickle's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        let path = self.path();
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}; {MISSING}", path.display()))
    }

    /// The expected disassembly, if pickletools could produce one.
    pub fn dis_text(&self) -> Option<String> {
        if !self.dis {
            return None;
        }
        let path = self.dis_path();
        Some(
            std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}; {MISSING}", path.display())),
        )
    }
}

/// The workspace root (two levels above this crate's manifest).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The corpus directory: `$BRINERY_CORPUS`, or `<workspace>/target/corpus`. Panics (failing the
/// test) with [`MISSING`] if it has no `manifest.json`.
pub fn corpus_dir() -> PathBuf {
    let dir = match std::env::var_os("BRINERY_CORPUS") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace_root().join("target").join("corpus"),
    };
    if !dir.join("manifest.json").is_file() {
        panic!("{MISSING} (looked in {})", dir.display());
    }
    dir
}

/// Every entry of `manifest.json`, in file order. Panics if the corpus is missing or empty.
pub fn manifest() -> Vec<Entry> {
    let path = corpus_dir().join("manifest.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; {MISSING}", path.display()));
    let entries: Vec<Entry> = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{}: bad manifest: {e}", path.display()));
    assert!(!entries.is_empty(), "{MISSING} (the manifest is empty)");
    entries
}

/// The entry for `case` at `protocol`. Panics if there is none.
pub fn entry(case: &str, protocol: u8) -> Entry {
    manifest()
        .into_iter()
        .find(|e| e.case == case && e.protocol == protocol)
        .unwrap_or_else(|| panic!("no corpus entry for {case} at protocol {protocol}"))
}

/// Every entry of `case`, one per protocol it was generated at. Panics if there is none.
pub fn entries(case: &str) -> Vec<Entry> {
    let found: Vec<Entry> = manifest().into_iter().filter(|e| e.case == case).collect();
    assert!(!found.is_empty(), "no corpus entries for case {case}");
    found
}
