//! The Python face of brinery: `brinery._native`, re-exported by the `brinery` package as a
//! drop-in replacement for the standard library's `pickle`.
//!
//! This is the only crate of the workspace where `unsafe` is allowed, because the fast paths talk
//! to CPython's C API directly; every `unsafe` block carries a `// SAFETY:` comment
//! (`clippy::undocumented_unsafe_blocks` is denied). Everything that understands the pickle format
//! lives in the core crate: the `Pickler` writes through `brinery::encode::Encoder`, the
//! `Unpickler` reads through `brinery::decode::Decoder`; this crate owns only what is specific to
//! Python objects.

mod args;
mod buffer;
mod errors;
mod imports;
mod jar;
mod pickler;
mod pyutil;
mod scan;
mod unpickler;

use pyo3::prelude::*;

/// The native module. `brinery/__init__.py` re-exports what users see.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("HIGHEST_PROTOCOL", brinery::HIGHEST_PROTOCOL)?;
    m.add("DEFAULT_PROTOCOL", brinery::DEFAULT_PROTOCOL)?;
    pickler::register(m)?;
    unpickler::register(m)?;
    jar::register(m)?;
    scan::register(m)?;
    Ok(())
}
