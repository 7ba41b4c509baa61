//! The Unpickler (being written).

use pyo3::prelude::*;

/// Add this module's classes and functions to `brinery._native`.
pub(crate) fn register(_m: &Bound<'_, PyModule>) -> PyResult<()> {
    Ok(())
}
