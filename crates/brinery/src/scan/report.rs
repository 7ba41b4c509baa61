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
