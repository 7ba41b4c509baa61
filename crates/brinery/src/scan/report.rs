//! What a scan reports.

use std::fmt;

use super::rule::Rule;
use crate::opcode::Opcode;

/// One reason a pickle is not safe to load under the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Which rule.
    pub rule: Rule,
    /// Byte offset of the opcode (within the member, for containers).
    pub offset: u64,
    /// The opcode, when the finding is about one.
    pub opcode: Option<Opcode>,
    /// The global `(module, qualname)` involved, if any.
    pub global: Option<(String, String)>,
    /// The container member the pickle came from (`archive/data.pkl`, `gzip`, ...), if any.
    pub member: Option<String>,
    /// What is wrong, ending with where: `global os.system is never allowed: it runs commands
    /// and touches files at byte 2 (GLOBAL)`.
    pub message: String,
}

impl Finding {
    /// The global as a dotted name, if any.
    pub fn global_name(&self) -> Option<String> {
        self.global.as_ref().map(|(m, n)| format!("{m}.{n}"))
    }

    /// The global as `allow=` / `--allow` accept it: `module.name`, or `module:qual.name` when
    /// the name is itself dotted (an attribute reached by getattr), which a dotted form would
    /// split at the wrong dot.
    pub fn allow_name(&self) -> Option<String> {
        self.global.as_ref().map(|(m, n)| {
            if n.contains('.') {
                format!("{m}:{n}")
            } else {
                format!("{m}.{n}")
            }
        })
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(member) = &self.member {
            write!(f, "{member}: ")?;
        }
        write!(f, "{} {}", self.rule.code(), self.message)
    }
}

/// A global the pickle references (each occurrence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalRef {
    /// Byte offset of the opcode that names it.
    pub offset: u64,
    /// GLOBAL, STACK_GLOBAL, INST, or REDUCE for a `getattr` result.
    pub opcode: Opcode,
    /// The module, after Python 2 name mapping below protocol 3.
    pub module: String,
    /// The qualified name.
    pub name: String,
    /// The container member, if any.
    pub member: Option<String>,
}

/// A call the pickle makes when loaded (REDUCE, INST, OBJ, NEWOBJ, NEWOBJ_EX, and BUILD on an
/// object, which may call its `__setstate__`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSite {
    /// Byte offset of the opcode.
    pub offset: u64,
    /// The opcode.
    pub opcode: Opcode,
    /// The global called (for BUILD: the callable that made the object), when known.
    pub callee: Option<(String, String)>,
    /// The container member, if any.
    pub member: Option<String>,
}

/// The result of a scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Every reason the input is not safe under the policy; empty when it is.
    pub findings: Vec<Finding>,
    /// Every global referenced, in stream order (at most [`Report::MAX_RECORDED`] per pickle,
    /// so that a small stream cannot make the report huge).
    pub globals: Vec<GlobalRef>,
    /// Every call made, in stream order (at most [`Report::MAX_RECORDED`] per pickle).
    pub calls: Vec<CallSite>,
    /// How many opcodes were scanned.
    pub opcodes: u64,
    /// The container members that were scanned as pickles (empty for a bare pickle).
    pub members: Vec<String>,
    /// Content not scanned because it holds no pickle: zip members that are neither named nor
    /// shaped like one, and with [`ContainerOptions::pickles_only`](super::ContainerOptions)
    /// any other content ([`may_hold_pickle`](super::may_hold_pickle)). Member names, `""` for
    /// the input itself.
    pub skipped: Vec<String>,
    /// How a bare pickle uses its memo (see [`MemoUse`]); meaningless for containers.
    pub memo: MemoUse,
}

/// How a pickle uses its memo: which slots it ever fetches (GET, BINGET, LONG_BINGET) and how
/// it stores (PUT-family opcodes or MEMOIZE). A loader whose memo nobody can see afterwards
/// may skip storing the slots never fetched ([`MemoUse::fetch_filter`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoUse {
    /// A bit per memo index (`fetched[i / 64] >> (i % 64) & 1`): set when some opcode fetches
    /// that index.
    pub fetched: Vec<u64>,
    /// A PUT, BINPUT or LONG_BINPUT was seen.
    pub puts: bool,
    /// A MEMOIZE was seen.
    pub memoizes: bool,
    /// A fetched index was beyond [`MemoUse::MAX_INDEX`] (the bitmap is incomplete).
    pub overflow: bool,
}

impl MemoUse {
    /// The largest index the bitmap records (2 MiB of bits at most).
    pub const MAX_INDEX: u64 = (1 << 24) - 1;

    /// Note a fetch of `idx`.
    #[inline]
    pub fn fetch(&mut self, idx: u64) {
        if idx > Self::MAX_INDEX {
            self.overflow = true;
            return;
        }
        let word = (idx / 64) as usize;
        if word >= self.fetched.len() {
            self.fetched.resize(word + 1, 0);
        }
        self.fetched[word] |= 1 << (idx % 64);
    }

    /// The bitmap of fetched indices, when a loader may store only those and stay exact:
    /// the bitmap is complete and the pickle stores either with PUT-family opcodes (explicit
    /// indices) or with MEMOIZE (at the number of entries, which a loader that skips a store
    /// still counts), never both (a MEMOIZE index would then depend on which PUTs stored).
    pub fn fetch_filter(&self) -> Option<&[u64]> {
        let mixed = self.puts && self.memoizes;
        if self.overflow || mixed {
            None
        } else {
            Some(&self.fetched)
        }
    }
}

impl Report {
    /// How many global references and calls a report records per pickle; the verdict covers
    /// the whole stream regardless.
    pub const MAX_RECORDED: usize = 100_000;

    /// Whether the input is safe to load under the policy: no finding at all.
    pub fn is_ok(&self) -> bool {
        self.findings.is_empty()
    }

    /// The distinct globals referenced, as sorted dotted names.
    pub fn global_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .globals
            .iter()
            .map(|g| format!("{}.{}", g.module, g.name))
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

#[cfg(test)]
mod tests {
    use crate::scan::{scan, scan_verdict, Policy};
    use crate::Limits;

    #[test]
    fn the_verdict_has_the_scans_findings_and_the_fetched_memo_slots() {
        let (p, l) = (Policy::default(), Limits::default());
        // protocol 0 os.system: the same findings, no report of globals or calls
        let evil = b"cposix\nsystem\n(Vecho hi\ntR.";
        let (full, verdict) = (scan(evil, &p, &l), scan_verdict(evil, &p, &l));
        assert_eq!(full.findings, verdict.findings);
        assert!(!full.globals.is_empty() && verdict.globals.is_empty() && verdict.calls.is_empty());
        // protocol 2, PUT only: index 0 fetched, index 1 and 2 not
        let put_only = b"\x80\x02(]q\x00]q\x01h\x00tq\x02.";
        let v = scan_verdict(put_only, &p, &l);
        assert!(v.is_ok());
        assert_eq!(v.memo.fetch_filter(), Some(&[1u64][..]));
        // MEMOIZE only, nothing fetched
        let memoize_only =
            b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01a\x94]\x94(K\x01K\x02es.";
        let v = scan_verdict(memoize_only, &p, &l);
        assert!(v.is_ok() && v.memo.memoizes && !v.memo.puts);
        assert_eq!(v.memo.fetch_filter(), Some(&[][..]));
        // both: no filter (a MEMOIZE index would depend on which PUTs stored)
        let mixed = b"\x80\x04]q\x000]\x94h\x01\x86.";
        let v = scan_verdict(mixed, &p, &l);
        assert!(v.is_ok());
        assert_eq!(v.memo.fetch_filter(), None);
        // a fetch beyond the bitmap's range turns the filter off
        let mut m = super::MemoUse::default();
        m.fetch(super::MemoUse::MAX_INDEX + 1);
        assert_eq!(m.fetch_filter(), None);
    }
}
