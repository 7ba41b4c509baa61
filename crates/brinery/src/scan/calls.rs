//! The call rules: the few callables whose arguments decide whether a call is safe, and
//! joblib's array data.

use super::machine::{Machine, Special, Sym, NO_PRODUCT};
use super::policy::Access;
use super::rule::Rule;
use crate::decode::Op;

/// What an unpickle helper requires of one of its arguments (see [`helper_arguments`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgRule {
    /// A class the policy allows to call, given as that global itself: never an instance, a call
    /// result or a reference-only name (the helper calls it, or attributes of it).
    AllowedClass,
    /// `copyreg._reconstructor`'s `base`: `builtins.object` or one of the builtin types CPython's
    /// pickler writes there (a base of `cls`; the load-time guard checks that too).
    BuiltinBase,
    /// `dateutil.tz._tzfile._unpickle`'s `cls`: `dateutil`'s `tzfile` class and nothing else.
    TzfileClass,
    /// Exactly `numpy.random._pickle.__bit_generator_ctor` (the helper calls it).
    BitGeneratorCtor,
    /// Data, or (when it is a global) a class the policy allows to call: the helper calls a
    /// class it is given.
    DataOrAllowedClass,
    /// `functools.partial`'s function: a global the policy allows to call, given as that global
    /// itself, with no role of its own (not `getattr`, `_codecs.encode` or a helper with
    /// argument rules): calling the partial later calls it with the stored arguments, which is
    /// no more than the pickle may do with that global directly. Never a call result or a
    /// reference-only name.
    AllowedFunction,
    /// `collections.defaultdict`'s `default_factory`: None (or data, which `defaultdict`
    /// refuses), a global the policy allows to call with no role of its own, or one of the
    /// builtin types whose call makes an empty value ([`BUILTIN_FACTORIES`], listed as
    /// references). A missing key calls it with no arguments, which an allowed `__setstate__`
    /// may do during the load (session 13's red team reached a value-only function, a bound
    /// method and `tzfile` that way). Never a call result or another reference-only name.
    Factory,
    /// A byte count the callable allocates (`bytearray(N)`, `bytes(N)`): at most
    /// [`Limits::max_call_alloc`](crate::Limits::max_call_alloc) (red-team F7). Data that is
    /// not an integer (the bytes or text to copy) is fine; a value the scan cannot see (a call
    /// result other than `_codecs.encode`'s) is refused.
    Size,
    /// An array shape the callable allocates, with the dtype at argument `dtype` (numpy's
    /// `ndarray`, `_reconstruct`, `_mareconstruct`): an empty shape is fine, any other must be
    /// constant integers whose product times the dtype's item size (8 when the dtype is not
    /// given) is at most [`Limits::max_call_alloc`](crate::Limits::max_call_alloc).
    Shape {
        /// The position of the dtype argument.
        dtype: usize,
    },
    /// `numpy.random._pickle.__bit_generator_ctor`'s argument, which it calls when it is a
    /// class: one of numpy's bit generator names ([`BIT_GENERATORS`]) as a constant string, or
    /// the global of one of those classes.
    BitGeneratorName,
    /// The first argument of numpy's `__generator_ctor`/`__randomstate_ctor`: as
    /// [`ArgRule::BitGeneratorName`], or a bit generator instance (a call result; the load-time
    /// guard checks that it is one).
    BitGeneratorOrName,
    /// `pyarrow.lib.type_for_alias`'s name: a constant string of at most 64 bytes of
    /// lowercase ASCII letters, digits and `_[], ` (an alias such as `large_string`).
    ArrowTypeAlias,
    /// `pyarrow.lib.py_buffer`'s data: bytes, a bytearray or an out-of-band buffer (inert data
    /// to the scan; the load-time guard checks the exact type).
    ArrowBufferData,
    /// `pyarrow.lib._restore_array`'s argument: the tuple `(type, length, null_count, offset,
    /// buffers, children, dictionary)` pyarrow writes, whose type is the result of one of
    /// [`ARROW_TYPE_HELPERS`], with constant integers, inert lists of buffers and children, and
    /// a dictionary that is `None` or such a tuple. The scan cannot validate the buffers: the
    /// load-time guard checks the layout before the call and validates the array it returns.
    ArrowArrayData,
}

/// The `pyarrow.lib` functions whose result `_restore_array` accepts as an array's type (only
/// those the policy allows to call are reached; the `pandas` profile allows `type_for_alias`).
pub const ARROW_TYPE_HELPERS: &[&str] = &[
    "type_for_alias",
    "timestamp",
    "time32",
    "time64",
    "duration",
    "decimal128",
    "decimal256",
    "list_",
    "large_list",
    "dictionary",
    "struct",
];

/// Whether `text` may name a pyarrow type alias (see [`ArgRule::ArrowTypeAlias`]).
pub fn is_arrow_alias(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_[], ".contains(&b))
}

/// The bit generators `numpy.random._pickle.__bit_generator_ctor` knows by name.
pub const BIT_GENERATORS: &[&str] = &["MT19937", "PCG64", "PCG64DXSM", "Philox", "SFC64"];

/// Whether `module.name` names one of numpy's bit generator classes.
pub fn is_bit_generator_class(module: &str, name: &str) -> bool {
    (module == "numpy.random" || module.starts_with("numpy.random._"))
        && BIT_GENERATORS.contains(&name)
}

/// The modules numpy's `ndarray` is pickled from (current and older layouts).
const NDARRAY_MODULES: &[&str] = &[
    "numpy",
    "numpy._core.multiarray",
    "numpy._core.numeric",
    "numpy.core.multiarray",
    "numpy.core.numeric",
    "numpy.ma.core",
    "numpy.ma.extras",
];

/// An upper bound of the item size of the numpy dtype a type code like `f8`, `<U10`, `V1000`
/// or `b` describes (`U<n>` counts 4-byte characters; codes without a size are at most 16).
pub fn dtype_code_itemsize(code: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(code).ok()?;
    let body = text.trim_start_matches(['<', '>', '|', '=']);
    let digits = body.trim_start_matches(|ch: char| ch.is_ascii_alphabetic());
    let letters = &body[..body.len() - digits.len()];
    if letters.is_empty() {
        return None;
    }
    if digits.is_empty() {
        return Some(16);
    }
    let n = digits.parse::<u64>().ok()?;
    Some(if letters == "U" {
        n.saturating_mul(4)
    } else {
        n
    })
}

/// The builtin types `copyreg._reconstructor` may be given as `base`.
pub const BUILTIN_BASES: &[&str] = &[
    "object",
    "int",
    "float",
    "complex",
    "str",
    "bytes",
    "bytearray",
    "list",
    "tuple",
    "dict",
    "set",
    "frozenset",
    "bool",
];

/// The modules where `dateutil`'s `tzfile` class lives (and may be named from).
pub const TZFILE_MODULES: &[&str] = &["dateutil.tz", "dateutil.tz.tz", "dateutil.tz._tzfile"];

/// The argument rules of an unpickle helper: the helpers in the profiles that call (or call
/// attributes of) some of their arguments, with the positions (0-based) that must be an allowed
/// class or an exact helper. Allowed library code like `_new_IntervalIndex(cls, d)` does
/// `cls.from_arrays(**d)`: given any object with attributes (a `SimpleNamespace`, an estimator
/// whose state set `from_arrays`), it would call whatever that object holds.
pub fn helper_arguments(module: &str, name: &str) -> &'static [(usize, ArgRule)] {
    use ArgRule::*;
    match (module, name) {
        ("copyreg", "_reconstructor") => &[(0, AllowedClass), (1, BuiltinBase)],
        ("copyreg", "__newobj__" | "__newobj_ex__") => &[(0, AllowedClass)],
        ("numpy.core.multiarray" | "numpy._core.multiarray", "_reconstruct") => {
            &[(0, AllowedClass), (1, Shape { dtype: 2 })]
        }
        ("numpy.ma.core", "_mareconstruct") => &[
            (0, AllowedClass),
            (1, AllowedClass),
            (2, Shape { dtype: 3 }),
        ],
        ("numpy.random._pickle", "__generator_ctor" | "__randomstate_ctor") => {
            &[(0, BitGeneratorOrName), (1, BitGeneratorCtor)]
        }
        ("numpy.random._pickle", "__bit_generator_ctor") => &[(0, BitGeneratorName)],
        // sklearn's Cython trees and distance metrics: `newObj(obj)` is `obj.__new__(obj)`
        (m, "newObj") if m.starts_with("sklearn.") => &[(0, AllowedClass)],
        ("builtins" | "__builtin__", "bytearray" | "bytes") => &[(0, Size)],
        (m, "ndarray" | "recarray") if NDARRAY_MODULES.contains(&m) || m == "numpy.rec" => {
            &[(0, Shape { dtype: 1 })]
        }
        ("dateutil.tz._tzfile" | "dateutil.tz.tz" | "dateutil.tz", "_unpickle") => {
            &[(0, TzfileClass)]
        }
        // its BUILD state names the function again: checked by the scan's and the guard's BUILD
        ("functools", "partial") => &[(0, AllowedFunction)],
        ("collections", "defaultdict") => &[(0, Factory)],
        ("pyarrow.lib", "type_for_alias") => &[(0, ArrowTypeAlias)],
        ("pyarrow.lib", "py_buffer") => &[(0, ArrowBufferData)],
        ("pyarrow.lib", "_restore_array") => &[(0, ArrowArrayData)],
        (m, n) if m.starts_with("pandas.") && n.starts_with("_new_") && n.ends_with("Index") => {
            &[(0, AllowedClass)]
        }
        _ => &[],
    }
}

/// Allowed callables that return an object which already exists (a cached instance, a singleton,
/// an enum member): BUILD on their result would change it for the whole process (red-team F4).
/// The load-time guard catches every such case by reference count; the scan names the known ones.
/// (`dateutil.tz.tzlocal()` is not one: each call makes a new instance, which its pickle
/// BUILDs.)
pub(crate) fn returns_shared(module: &str, name: &str) -> bool {
    matches!(
        (module, name),
        (
            "dateutil.tz" | "dateutil.tz.tz",
            "tzoffset" | "tzutc" | "tzstr"
        ) | ("pytz", "_p" | "timezone" | "utc" | "UTC")
            | ("uuid", "SafeUUID")
            | ("pandas._libs.lib", "_NoDefault")
            | ("datetime", "timezone")
    )
}

/// The special role of `module.name`, if any.
pub(crate) fn special(module: &str, name: &str) -> Special {
    match (module, name) {
        ("builtins", "getattr") => Special::Getattr,
        ("_codecs", "encode") => Special::CodecsEncode,
        ("numpy", "dtype") => Special::NumpyDtype,
        ("joblib.numpy_pickle" | "sklearn.externals.joblib.numpy_pickle", "NumpyArrayWrapper") => {
            Special::JoblibWrapper
        }
        _ if !helper_arguments(module, name).is_empty() => Special::Helper,
        _ => Special::None,
    }
}

/// Whether `_codecs.encode(text, encoding)` with this encoding is how protocols 0–2 spell bytes
/// (latin1; the UTF-8 and ASCII spellings are as inert): any other codec name would import its
/// `encodings.*` module and run it. The scan and the load-time guard both ask this.
pub fn is_plain_text_encoding(name: &[u8]) -> bool {
    matches!(name, b"latin1" | b"latin-1" | b"utf-8" | b"utf8" | b"ascii")
}

/// Why the arguments make an allowed call unsafe, or `None`.
pub(crate) fn check_arguments(
    m: &Machine<'_, '_>,
    gid: u32,
    special: Special,
    args: Sym,
) -> Option<String> {
    match special {
        Special::CodecsEncode => {
            // `_codecs.encode('text', 'latin1')`: how protocols 0–2 write bytes. Anything else
            // could encode with a codec that imports a module.
            let plain = |s: &Sym| m.str_bytes(*s).is_some_and(is_plain_text_encoding);
            let ok = match m.items_of(args) {
                Some([Sym::Str { .. } | Sym::Text]) => true,
                Some([Sym::Str { .. } | Sym::Text, enc]) => plain(enc),
                _ => false,
            };
            (!ok).then(|| {
                "is called with other than a constant string and a plain text encoding".to_owned()
            })
        }
        Special::Helper => {
            let (module, name) = m.global_names(gid);
            let items = m.items_of(args);
            for &(pos, rule) in helper_arguments(module, name) {
                let arg = match items {
                    Some(items) => items.get(pos).copied(),
                    // a tuple of inert data only (or one too large to record)
                    None if matches!(args, Sym::Data | Sym::Ints(_) | Sym::Deep(_)) => {
                        Some(Sym::Data)
                    }
                    None => Some(Sym::Unknown),
                };
                let arg = match (arg, rule) {
                    // `bytearray(N)`, `ndarray(N)`: a tuple of integers only is recorded as
                    // their product, a bound of each
                    (_, ArgRule::Size | ArgRule::Shape { .. }) if items.is_none() => match args {
                        Sym::Ints(p) => Some(Sym::Ints(p)),
                        _ => arg,
                    },
                    _ => arg,
                };
                let Some(arg) = arg else { continue }; // the helper's default
                let arg = match rule {
                    ArgRule::Shape { dtype } => {
                        let dt = items.and_then(|items| items.get(dtype).copied());
                        return check_shape(m, arg, dt)
                            .map(|problem| format!("is given {problem} as argument {pos}"));
                    }
                    _ => arg,
                };
                if let Some(problem) = check_helper_argument(m, rule, arg) {
                    return Some(format!("is given {problem} as argument {pos}"));
                }
            }
            None
        }
        _ => None,
    }
}

/// Why the shape `shape` (with the dtype argument `dtype`, `None` when not given) makes the
/// call allocate more than the limit, or `None`.
fn check_shape(m: &Machine<'_, '_>, shape: Sym, dtype: Option<Sym>) -> Option<String> {
    let count = match shape {
        Sym::Int(n) => u64::try_from(n).ok(),
        Sym::Ints(p) if p != NO_PRODUCT => Some(p),
        Sym::Data => None, // a list, a large integer, an empty tuple: checked below
        _ => None,
    };
    // `(0,)` (what numpy's own pickles pass) allocates nothing
    if count == Some(0) {
        return None;
    }
    let limit = m.limits().max_call_alloc();
    let Some(count) = count else {
        return Some(
            "an array shape the scan cannot size (only constant integers are allowed)".to_owned(),
        );
    };
    let itemsize = match dtype {
        None => Some(8),
        Some(d) => m
            .str_bytes(d)
            .or_else(|| m.call_first_str(d, Special::NumpyDtype))
            .and_then(dtype_code_itemsize),
    };
    let Some(itemsize) = itemsize else {
        return Some(format!(
            "an array shape of {count} elements with a dtype the scan cannot size"
        ));
    };
    match count.checked_mul(itemsize) {
        Some(bytes) if bytes <= limit => None,
        _ => Some(format!(
            "an array shape of {count} elements of {itemsize} bytes, more than the limit of {limit} bytes one call may allocate"
        )),
    }
}

/// Why `arg` cannot be a `functools.partial`'s function ([`ArgRule::AllowedFunction`]), or
/// `None`. A flagged global has its own finding already, and so has a reference-only one
/// (`BRS002`, naming it, from [`Machine::partial_of_reference`]: the user may allow it).
pub(crate) fn partial_function_problem(m: &Machine<'_, '_>, arg: Sym) -> Option<&'static str> {
    match arg {
        Sym::Global(g) => {
            let (access, flagged) = m.global_info(g);
            if flagged || access == Some(Access::Ref) {
                None
            } else if access != Some(Access::Call) {
                Some("a global the policy allows only as a reference (the partial would call it)")
            } else if m.global_special(g) != Special::None {
                Some("a global with call rules of its own, which a partial would bypass")
            } else {
                None
            }
        }
        _ => Some(
            "something other than a global the policy allows to call (the partial would call it)",
        ),
    }
}

/// The builtin types a `collections.defaultdict` may take as its `default_factory` although
/// the policy lists them as references only: called with no arguments, each makes an empty value.
pub const BUILTIN_FACTORIES: &[&str] = &[
    "bool",
    "bytearray",
    "bytes",
    "complex",
    "dict",
    "float",
    "frozenset",
    "int",
    "list",
    "object",
    "set",
    "str",
    "tuple",
];

/// Why `arg` cannot be a `collections.defaultdict`'s `default_factory` ([`ArgRule::Factory`]),
/// or `None`. A flagged global has its own finding already.
pub(crate) fn factory_problem(m: &Machine<'_, '_>, arg: Sym) -> Option<&'static str> {
    match arg {
        Sym::Global(g) => {
            let (access, flagged) = m.global_info(g);
            let (module, name) = m.global_names(g);
            let builtin_type =
                matches!(module, "builtins" | "__builtin__") && BUILTIN_FACTORIES.contains(&name);
            if flagged
                || builtin_type
                || (access == Some(Access::Call) && m.global_special(g) == Special::None)
            {
                None
            } else {
                Some("a global the policy allows only as a reference or with call rules of its own (a missing key would call it)")
            }
        }
        Sym::Result(_) | Sym::Unknown => Some(
            "a value that is not None, a global the policy allows to call or a builtin type (a missing key would call it)",
        ),
        _ => None,
    }
}

/// Why `arg` breaks `rule`, or `None`.
fn check_helper_argument(m: &Machine<'_, '_>, rule: ArgRule, arg: Sym) -> Option<String> {
    let global = |s: Sym| match s {
        Sym::Global(g) => Some(g),
        _ => None,
    };
    match rule {
        ArgRule::AllowedClass | ArgRule::DataOrAllowedClass => match arg {
            Sym::Global(g) => {
                let (access, flagged) = m.global_info(g);
                // A flagged global already has its own finding.
                (!flagged && access != Some(Access::Call)).then(|| {
                    "a class the policy allows only as a reference (the helper would call it)"
                        .to_owned()
                })
            }
            Sym::Data | Sym::Int(_) | Sym::Ints(_) | Sym::Str { .. } | Sym::Text
                if rule == ArgRule::DataOrAllowedClass =>
            {
                None
            }
            Sym::Result(_) | Sym::Dict(_) | Sym::Tuple(..) | Sym::Deep(_)
                if rule == ArgRule::DataOrAllowedClass =>
            {
                None
            }
            _ => Some(
                "something other than an allowed class global (the helper would call it or its attributes)"
                    .to_owned(),
            ),
        },
        ArgRule::AllowedFunction => partial_function_problem(m, arg).map(str::to_owned),
        ArgRule::Factory => factory_problem(m, arg).map(str::to_owned),
        ArgRule::BuiltinBase => {
            let ok = global(arg).is_some_and(|g| {
                let (module, name) = m.global_names(g);
                module == "builtins" && BUILTIN_BASES.contains(&name)
            });
            (!ok).then(|| {
                "a base other than builtins.object or a builtin type (it would call base.__new__ and base.__init__)".to_owned()
            })
        }
        ArgRule::TzfileClass => {
            let ok = global(arg).is_some_and(|g| {
                let (module, name) = m.global_names(g);
                TZFILE_MODULES.contains(&module) && name == "tzfile"
            });
            (!ok).then(|| "a class other than dateutil.tz.tzfile".to_owned())
        }
        ArgRule::Size => {
            let limit = m.limits().max_call_alloc();
            match arg {
                Sym::Int(n) if n > 0 && n as u64 > limit => Some(format!(
                    "a size of {n} bytes, more than the limit of {limit} bytes one call may allocate"
                )),
                Sym::Ints(p) if p != NO_PRODUCT && p > limit => Some(format!(
                    "a size of {p} bytes, more than the limit of {limit} bytes one call may allocate"
                )),
                Sym::Result(_) if m.call_first_str(arg, Special::CodecsEncode).is_some() => None,
                Sym::Global(_) | Sym::Result(_) | Sym::Unknown => Some(
                    "a value the scan cannot size (it could be an integer asking for any number of bytes)"
                        .to_owned(),
                ),
                _ => None,
            }
        }
        ArgRule::Shape { .. } => None, // checked by `check_shape`
        ArgRule::BitGeneratorName | ArgRule::BitGeneratorOrName => {
            let ok = match arg {
                Sym::Str { .. } => m
                    .text(arg)
                    .is_some_and(|t| BIT_GENERATORS.contains(&t)),
                Sym::Global(g) => {
                    let (module, name) = m.global_names(g);
                    is_bit_generator_class(module, name)
                }
                Sym::Result(_) => rule == ArgRule::BitGeneratorOrName,
                _ => false,
            };
            (!ok).then(|| {
                format!(
                    "something other than one of numpy's bit generators ({}) by name or class (the helper would call a class it is given)",
                    BIT_GENERATORS.join(", ")
                )
            })
        }
        ArgRule::BitGeneratorCtor => {
            let ok = global(arg).is_some_and(|g| {
                m.global_names(g) == ("numpy.random._pickle", "__bit_generator_ctor")
            });
            (!ok).then(|| {
                "a constructor other than numpy.random._pickle.__bit_generator_ctor (the helper calls it)".to_owned()
            })
        }
        ArgRule::ArrowTypeAlias => {
            let ok = matches!(arg, Sym::Str { .. }) && m.text(arg).is_some_and(is_arrow_alias);
            (!ok).then(|| {
                "something other than a constant type alias string (such as 'large_string')"
                    .to_owned()
            })
        }
        ArgRule::ArrowBufferData => {
            // bytes, a bytearray, an out-of-band buffer: inert data (a list or a number is
            // inert too, and pyarrow refuses it); protocols 0-2 write bytes and bytearrays as
            // calls of `_codecs.encode`, `bytes` and `bytearray`
            let made = m.call_callee(arg).is_some_and(|(module, name)| {
                matches!(
                    (module, name),
                    ("builtins" | "__builtin__", "bytes" | "bytearray") | ("_codecs", "encode")
                )
            });
            (!matches!(arg, Sym::Data) && !made).then(|| {
                "something other than bytes, a bytearray or an out-of-band buffer".to_owned()
            })
        }
        ArgRule::ArrowArrayData => check_arrow_array(m, arg, 0).map(|problem| {
            format!("an array description that is not pyarrow's (type, length, null_count, offset, buffers, children, dictionary) tuple: {problem}")
        }),
    }
}

/// Why `arg` is not the tuple `pyarrow.lib._restore_array` takes (see
/// [`ArgRule::ArrowArrayData`]), or `None`; `depth` counts nested dictionaries.
fn check_arrow_array(m: &Machine<'_, '_>, arg: Sym, depth: u32) -> Option<String> {
    if depth > 4 {
        return Some("dictionaries nested more than 4 deep".to_owned());
    }
    let Some(items) = m.items_of(arg) else {
        return Some("not a 7-item tuple".to_owned());
    };
    let [ty, length, null_count, offset, buffers, children, dictionary] = items else {
        return Some(format!("a tuple of {} items, not 7", items.len()));
    };
    let helper = m
        .call_callee(*ty)
        .filter(|(module, name)| *module == "pyarrow.lib" && ARROW_TYPE_HELPERS.contains(name));
    if helper.is_none() {
        return Some(format!(
            "its type is not the result of a pyarrow type helper ({})",
            ARROW_TYPE_HELPERS.join(", ")
        ));
    }
    for (what, v) in [
        ("length", length),
        ("null count", null_count),
        ("offset", offset),
    ] {
        if !matches!(v, Sym::Int(n) if *n >= -1) {
            return Some(format!("its {what} is not a constant integer"));
        }
    }
    for (what, v) in [("buffers", buffers), ("children", children)] {
        if !matches!(v, Sym::Data) {
            return Some(format!("its {what} are not a list"));
        }
    }
    match dictionary {
        Sym::Data => None, // None (the guard checks it is)
        Sym::Tuple(..) => check_arrow_array(m, *dictionary, depth + 1),
        _ => Some("its dictionary is neither None nor an array description".to_owned()),
    }
}

/// joblib writes each numpy array's bytes into the stream right after the BUILD of its
/// `NumpyArrayWrapper` (an object array as a nested pickle); `joblib.load` reads them there.
/// Returns the offset where the opcodes resume.
pub(crate) fn joblib_array<'a>(
    m: &mut Machine<'a, '_>,
    op: &Op<'a>,
    state: Sym,
    end: usize,
) -> Option<usize> {
    let dtype = m
        .dict_get(state, "dtype")
        .and_then(|d| m.call_first_str(d, Special::NumpyDtype));
    let shape = m.dict_get(state, "shape");
    let Some(code) = dtype else {
        m.report_structural(
            Rule::BadContainer,
            op,
            "joblib array wrapper without a numpy.dtype(<constant code>) state: its data cannot be located",
        );
        return Some(m.data().len());
    };
    if code.first() == Some(&b'O') {
        let next = m.embedded(end);
        return Some(next.unwrap_or(m.data().len()));
    }
    let itemsize = std::str::from_utf8(code)
        .ok()
        .map(|c| c.trim_start_matches(|ch: char| ch.is_ascii_alphabetic()))
        .and_then(|digits| digits.parse::<u64>().ok())
        // `U<n>` counts UCS-4 characters; every other code counts bytes.
        .map(|n| {
            if code.first() == Some(&b'U') {
                n * 4
            } else {
                n
            }
        });
    let count = match shape {
        Some(Sym::Ints(product)) => Some(product).filter(|&p| p != NO_PRODUCT),
        Some(Sym::Data) => Some(1), // () is plain data
        _ => None,
    };
    let (Some(itemsize), Some(count)) = (itemsize, count) else {
        m.report_structural(
            Rule::BadContainer,
            op,
            "joblib array wrapper with a shape or dtype the scan cannot size: its data cannot be located",
        );
        return Some(m.data().len());
    };
    let mut pos = end;
    if matches!(
        m.dict_get(state, "numpy_array_alignment_bytes"),
        Some(Sym::Int(_))
    ) {
        let pad = *m.data().get(pos).unwrap_or(&0) as usize;
        pos = pos.saturating_add(1 + pad);
    }
    let size = count
        .checked_mul(itemsize)
        .and_then(|s| usize::try_from(s).ok());
    match size.and_then(|s| pos.checked_add(s)) {
        Some(next) if next <= m.data().len() => Some(next),
        _ => {
            m.report_structural(
                Rule::Malformed,
                op,
                "pickle data was truncated: joblib array data runs past the end of the input",
            );
            Some(m.data().len())
        }
    }
}
