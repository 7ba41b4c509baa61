//! Static safety analysis: what would loading this pickle reference and call?
//!
//! [`scan`] runs the opcode stream on a symbolic stack and memo (see `machine.rs`): nothing is
//! imported and nothing runs. It reports every global referenced and every call made with its
//! byte offset, opcode and resolved `module.name`, checks each against a [`Policy`] and a hard
//! deny-list, and validates the whole stream (truncation, trailing or stacked pickles, FRAME
//! lengths, memo GETs, stack underflow, duplicate PROTO) before any verdict: a malformed stream
//! is a finding, never a crash. [`scan_file_bytes`] also opens containers by their content.
//!
//! ```
//! use brinery::scan::{scan, Policy, Rule};
//! use brinery::Limits;
//! // pickle.dumps of something whose __reduce__ returns (os.system, ("echo hi",)), protocol 0
//! let evil = b"cposix\nsystem\n(Vecho hi\ntR.";
//! let report = scan(evil, &Policy::default(), &Limits::default());
//! assert!(!report.is_ok());
//! assert_eq!(report.findings[0].rule, Rule::DangerousGlobal);
//! assert_eq!(report.findings[0].rule.code(), "BRS003");
//! assert_eq!(
//!     report.findings[0].message,
//!     "global posix.system is never allowed: it runs commands and touches files at byte 0 (GLOBAL)"
//! );
//!
//! // pickle.dumps({"a": [1, 2]}, protocol=4)
//! let data = b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01a\x94]\x94(K\x01K\x02es.";
//! assert!(scan(data, &Policy::default(), &Limits::default()).is_ok());
//! ```

mod calls;
mod container;
pub(crate) mod deny;
mod machine;
mod policy;
mod report;
mod rule;

pub use calls::{
    dtype_code_itemsize, helper_arguments, is_arrow_alias, is_bit_generator_class,
    is_plain_text_encoding, ArgRule, ARROW_TYPE_HELPERS, BIT_GENERATORS, BUILTIN_BASES,
    BUILTIN_FACTORIES, TZFILE_MODULES,
};
pub use container::{has_pickle_name, may_hold_pickle, ContainerKind, ContainerOptions};
pub use deny::denied;
pub use policy::{
    parse_profile, split_global_name, Access, Policy, PolicyBuilder, PolicyError, Profile,
    ProfileLineError,
};
pub use report::{CallSite, Finding, GlobalRef, MemoUse, Report};
pub use rule::Rule;

use crate::Limits;

/// The longest global name (module or qualified name, in bytes) a scan or a safe load accepts:
/// CPython never writes names near this long, and checking longer ones costs time and memory
/// (red-team F8/F9).
pub const MAX_NAME_LEN: usize = 1024;
/// How deeply call results may nest inside each other's arguments (red-team F14: a million
/// nested `slice(slice(...))` crash CPython when freed, whose `slice_dealloc` recurses). Real
/// pickles nest a few dozen levels at most; `Limits::max_depth` applies when smaller. The scan
/// counts a call's depth as one more than the deepest call result among its arguments and the
/// items of its tuple arguments; the load-time guard counts the same way.
pub const MAX_CALL_DEPTH: usize = 2000;
/// The most dotted parts a global's qualified name may have.
pub const MAX_NAME_PARTS: usize = 64;

/// The special attribute names (`__x__`) a BUILD state or keyword arguments may hold: the
/// descriptive ones objects keep as plain data (scipy's distributions set `__doc__`). Any other
/// is refused (`BRS008`, by the scan and by the load-time guard): stored on an instance it is
/// what code looks up there instead of on the type, numpy's `__array_interface__` (the address
/// of the data: any memory of the process), `__array__`, `__setstate__` (run by the next BUILD),
/// `__class__` (set through the slot state), `__deepcopy__`, `__reduce_ex__`, ...
pub const DATA_SPECIAL_NAMES: &[&str] = &[
    "__doc__",
    "__module__",
    "__name__",
    "__qualname__",
    "__annotations__",
    "__version__",
];

/// Why a global's name is out of bounds ([`MAX_NAME_LEN`], [`MAX_NAME_PARTS`]), or `None`.
pub fn name_out_of_bounds(module: &str, name: &str) -> Option<String> {
    if module.len() > MAX_NAME_LEN || name.len() > MAX_NAME_LEN {
        return Some(format!(
            "global name of {} bytes is longer than the limit of {MAX_NAME_LEN}",
            module.len().max(name.len())
        ));
    }
    let parts = name.bytes().filter(|&b| b == b'.').count() + 1;
    let mparts = module.bytes().filter(|&b| b == b'.').count() + 1;
    if parts > MAX_NAME_PARTS || mparts > MAX_NAME_PARTS {
        return Some(format!(
            "global name of {} dotted parts exceeds the limit of {MAX_NAME_PARTS}",
            parts.max(mparts)
        ));
    }
    None
}

/// Scan one pickle stream (and anything after its STOP, which is itself a finding).
pub fn scan(data: &[u8], policy: &Policy, limits: &Limits) -> Report {
    let mut report = Report::default();
    let options = machine::RunOptions {
        joblib: false,
        nesting: 0,
        record: true,
    };
    machine::Machine::new(data, policy, limits, options, None, &mut report).run_all();
    report
}

/// [`scan`] for a verdict only, as a safe load needs it: the same findings and opcode count
/// over the whole stream, but [`Report::globals`] holds only the references to joblib's
/// `NumpyArrayWrapper` (whose raw array data a loader must never read as opcodes) and
/// [`Report::calls`] stays empty, which saves recording every global and call of a clean
/// pickle. `data` is one bare pickle stream (containers are not opened: see [`scan_file_bytes`]).
pub fn scan_verdict(data: &[u8], policy: &Policy, limits: &Limits) -> Report {
    let mut report = Report::default();
    let options = machine::RunOptions {
        joblib: false,
        nesting: 0,
        record: false,
    };
    machine::Machine::new(data, policy, limits, options, None, &mut report).run_all();
    report
}

/// Scan a file's bytes, whatever they hold: a pickle, a joblib file, or a container detected by
/// content (zip incl. PyTorch and `.npz`, gzip, bz2, xz, zlib, `.npy`), with every embedded
/// pickle scanned and named in [`Finding::member`]. Uses [`ContainerOptions::default`].
///
/// joblib files are read as `joblib.load` reads them: the raw array data that follows each
/// `NumpyArrayWrapper` is skipped and object arrays are scanned as the nested pickles they are.
pub fn scan_file_bytes(data: &[u8], policy: &Policy, limits: &Limits) -> Report {
    scan_container(data, policy, limits, &ContainerOptions::default())
}

/// [`scan_file_bytes`] with explicit container bounds.
pub fn scan_container(
    data: &[u8],
    policy: &Policy,
    limits: &Limits,
    options: &ContainerOptions,
) -> Report {
    let mut walker = container::Walker {
        policy,
        limits,
        options: *options,
        budget: options.max_decompressed,
        report: Report::default(),
    };
    walker.walk(data, None, 0);
    walker.report
}
