//! The call rules: the few callables whose arguments decide whether a call is safe, and
//! joblib's array data.

use super::machine::{Machine, Special, Sym};
use super::policy::Access;
use super::rule::Rule;
use crate::decode::Op;

/// The special role of `module.name`, if any.
pub(crate) fn special(module: &str, name: &str) -> Special {
    match (module, name) {
        ("builtins", "getattr") => Special::Getattr,
        ("_codecs", "encode") => Special::CodecsEncode,
        ("copyreg", "_reconstructor" | "__newobj__" | "__newobj_ex__")
        | ("numpy.core.multiarray" | "numpy._core.multiarray", "_reconstruct") => {
            Special::CallsFirstArgument
        }
        ("numpy", "dtype") => Special::NumpyDtype,
        ("joblib.numpy_pickle" | "sklearn.externals.joblib.numpy_pickle", "NumpyArrayWrapper") => {
            Special::JoblibWrapper
        }
        _ => Special::None,
    }
}

/// Why the arguments make an allowed call unsafe, or `None`.
pub(crate) fn check_arguments(m: &Machine<'_, '_>, special: Special, args: Sym) -> Option<String> {
    match special {
        Special::CodecsEncode => {
            // `_codecs.encode('text', 'latin1')`: how protocols 0–2 write bytes. Anything else
            // could encode with a codec that imports a module.
            let plain = |s: &Sym| {
                matches!(
                    m.str_bytes(*s),
                    Some(b"latin1" | b"latin-1" | b"utf-8" | b"utf8" | b"ascii")
                )
            };
            let ok = match m.items_of(args) {
                Some([Sym::Str { .. } | Sym::Text]) => true,
                Some([Sym::Str { .. } | Sym::Text, enc]) => plain(enc),
                _ => false,
            };
            (!ok).then(|| {
                "is called with other than a constant string and a plain text encoding".to_owned()
            })
        }
        Special::CallsFirstArgument => {
            let first = m.items_of(args).and_then(|items| items.first().copied());
            match first {
                Some(Sym::Global(g)) => {
                    let (access, flagged) = m.global_info(g);
                    // A flagged global already has its own finding.
                    (!flagged && access != Some(Access::Call)).then(|| {
                        "is given a class the policy allows only as a reference: it would call it".to_owned()
                    })
                }
                _ => Some(
                    "is given a first argument that is not a global class: it would call it"
                        .to_owned(),
                ),
            }
        }
        _ => None,
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
        Some(Sym::Ints(product)) => product,
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
