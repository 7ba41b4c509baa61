//! The rules a scan reports, each with a stable code.

use std::fmt;

/// Why a finding was reported. Every rule has a stable code (`BRS001`...) that tools and
/// allow-lists may rely on, and a short kebab-case name. A pickle is safe to load under a policy
/// only when its scan reports no finding at all.
///
/// | code | name | what it means | example |
/// |---|---|---|---|
/// | BRS001 | `disallowed-global` | a global the policy does not list | `GLOBAL mypkg.models Model` with the default profiles |
/// | BRS002 | `ref-only-called` | a global the policy lists as reference-only is called | `builtins.object` called by REDUCE |
/// | BRS003 | `dangerous-global` | a global on the built-in deny-list (runs code, touches files, imports, network), whatever the policy says | `GLOBAL posix system`, `GLOBAL pathlib os.system`, `numpy.load` |
/// | BRS004 | `computed-global` | a STACK_GLOBAL whose module or name is not a constant string pushed by the pickle | `_codecs.encode(...)` result used as a module name |
/// | BRS005 | `call-of-computed` | a call of something that is not a global: the result of another call, a memo value that came from one, a string | `importlib.import_module('os')` then REDUCE on the result |
/// | BRS006 | `unsafe-getattr` | `builtins.getattr` used in any way but a direct call with a constant name on an allowed global, or on an instance of a class the policy lets call (a bound method, whose `Class.name` the policy must list) | `getattr(builtins.__import__('os'), 'system')` |
/// | BRS007 | `global-mutation` | BUILD, APPEND(S), SETITEM(S) or ADDITEMS applied to a global (a class, a function, a module) | BUILD on `GLOBAL sys modules` |
/// | BRS008 | `unsafe-arguments` | an allowed call whose arguments make it unsafe: a constructor helper given a class that may not be called, `_codecs.encode` with non-constant arguments | `copyreg._reconstructor(os.system_wrapper, ...)` |
/// | BRS009 | `extension-code` | EXT1/EXT2/EXT4: a global looked up in the copyreg extension registry, which a static scan cannot resolve | `EXT1 0x01` |
/// | BRS010 | `persistent-id` | PERSID/BINPERSID: an object supplied by the loader's `persistent_load` (PyTorch storages) | `BINPERSID` in `archive/data.pkl` |
/// | BRS011 | `malformed` | the stream is not a valid pickle: truncated, an unknown opcode, a bad argument, no STOP | `\x80\x04K` (ends inside BININT1) |
/// | BRS012 | `trailing-data` | bytes after the STOP opcode, e.g. a second (stacked) pickle | `N.cos\nsystem\n...` |
/// | BRS013 | `frame-mismatch` | a FRAME whose length does not match the opcodes inside it | an opcode straddling the end of a frame |
/// | BRS014 | `memo-missing` | a GET of a memo slot never stored | `h\x07` before any PUT 7 |
/// | BRS015 | `stack-error` | stack underflow, a missing MARK, a MARK where a value is needed, STOP with a stack of other than one value | `R` on an empty stack |
/// | BRS016 | `bad-protocol` | a PROTO that is repeated, not at the start, or of an unknown version | `\x80\x02\x80\x04` |
/// | BRS017 | `limit-exceeded` | a depth, memo, input-size or decompression limit was reached: the rest was not scanned | a gzip bomb |
/// | BRS018 | `bad-container` | a container (zip, gzip, bz2, xz, zlib, npy, joblib) that cannot be read | a zip member with an unknown compression method |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Rule {
    /// BRS001: a global the policy does not list.
    DisallowedGlobal,
    /// BRS002: a reference-only global is called.
    RefOnlyCalled,
    /// BRS003: a global on the built-in deny-list.
    DangerousGlobal,
    /// BRS004: a STACK_GLOBAL operand that is not a constant string.
    ComputedGlobal,
    /// BRS005: a call of something that is not a global.
    CallOfComputed,
    /// BRS006: `getattr` used other than on an allowed global or an instance of an allowed
    /// class, with a constant name.
    UnsafeGetattr,
    /// BRS007: BUILD/APPEND/SETITEM/ADDITEMS on a global.
    GlobalMutation,
    /// BRS008: an allowed call with arguments that make it unsafe.
    UnsafeArguments,
    /// BRS009: an EXT opcode.
    ExtensionCode,
    /// BRS010: a persistent id.
    PersistentId,
    /// BRS011: not a valid pickle stream.
    Malformed,
    /// BRS012: bytes after STOP.
    TrailingData,
    /// BRS013: a FRAME that does not match its opcodes.
    FrameMismatch,
    /// BRS014: a GET of a memo slot never stored.
    MemoMissing,
    /// BRS015: stack underflow, missing MARK, bad STOP.
    StackError,
    /// BRS016: a repeated, misplaced or unknown PROTO.
    BadProtocol,
    /// BRS017: a limit was reached.
    LimitExceeded,
    /// BRS018: an unreadable container.
    BadContainer,
}

impl Rule {
    /// Every rule, in code order.
    pub const ALL: &'static [Rule] = &[
        Rule::DisallowedGlobal,
        Rule::RefOnlyCalled,
        Rule::DangerousGlobal,
        Rule::ComputedGlobal,
        Rule::CallOfComputed,
        Rule::UnsafeGetattr,
        Rule::GlobalMutation,
        Rule::UnsafeArguments,
        Rule::ExtensionCode,
        Rule::PersistentId,
        Rule::Malformed,
        Rule::TrailingData,
        Rule::FrameMismatch,
        Rule::MemoMissing,
        Rule::StackError,
        Rule::BadProtocol,
        Rule::LimitExceeded,
        Rule::BadContainer,
    ];

    /// The stable code, e.g. `"BRS003"`.
    pub const fn code(self) -> &'static str {
        match self {
            Rule::DisallowedGlobal => "BRS001",
            Rule::RefOnlyCalled => "BRS002",
            Rule::DangerousGlobal => "BRS003",
            Rule::ComputedGlobal => "BRS004",
            Rule::CallOfComputed => "BRS005",
            Rule::UnsafeGetattr => "BRS006",
            Rule::GlobalMutation => "BRS007",
            Rule::UnsafeArguments => "BRS008",
            Rule::ExtensionCode => "BRS009",
            Rule::PersistentId => "BRS010",
            Rule::Malformed => "BRS011",
            Rule::TrailingData => "BRS012",
            Rule::FrameMismatch => "BRS013",
            Rule::MemoMissing => "BRS014",
            Rule::StackError => "BRS015",
            Rule::BadProtocol => "BRS016",
            Rule::LimitExceeded => "BRS017",
            Rule::BadContainer => "BRS018",
        }
    }

    /// The short name, e.g. `"dangerous-global"`.
    pub const fn name(self) -> &'static str {
        match self {
            Rule::DisallowedGlobal => "disallowed-global",
            Rule::RefOnlyCalled => "ref-only-called",
            Rule::DangerousGlobal => "dangerous-global",
            Rule::ComputedGlobal => "computed-global",
            Rule::CallOfComputed => "call-of-computed",
            Rule::UnsafeGetattr => "unsafe-getattr",
            Rule::GlobalMutation => "global-mutation",
            Rule::UnsafeArguments => "unsafe-arguments",
            Rule::ExtensionCode => "extension-code",
            Rule::PersistentId => "persistent-id",
            Rule::Malformed => "malformed",
            Rule::TrailingData => "trailing-data",
            Rule::FrameMismatch => "frame-mismatch",
            Rule::MemoMissing => "memo-missing",
            Rule::StackError => "stack-error",
            Rule::BadProtocol => "bad-protocol",
            Rule::LimitExceeded => "limit-exceeded",
            Rule::BadContainer => "bad-container",
        }
    }

    /// Whether the rule is about the structure of the stream (the stream is not a well-formed
    /// pickle) rather than about what it would run.
    pub const fn is_structural(self) -> bool {
        matches!(
            self,
            Rule::Malformed
                | Rule::TrailingData
                | Rule::FrameMismatch
                | Rule::MemoMissing
                | Rule::StackError
                | Rule::BadProtocol
                | Rule::LimitExceeded
                | Rule::BadContainer
        )
    }

    /// The rule with this code or name, if any.
    pub fn from_code(code: &str) -> Option<Rule> {
        Rule::ALL
            .iter()
            .copied()
            .find(|r| r.code().eq_ignore_ascii_case(code) || r.name() == code)
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code(), self.name())
    }
}
