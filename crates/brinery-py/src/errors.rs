//! The exceptions brinery raises are the standard library's own `pickle.PickleError`,
//! `pickle.PicklingError` and `pickle.UnpicklingError`, so existing `except pickle.UnpicklingError:`
//! clauses catch them unchanged.

use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

static PICKLING_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static UNPICKLING_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();

fn stdlib_exception(
    py: Python<'_>,
    cell: &'static PyOnceLock<Py<PyType>>,
    name: &str,
) -> Py<PyType> {
    cell.get_or_try_init(py, || -> PyResult<Py<PyType>> {
        Ok(py
            .import("pickle")?
            .getattr(name)?
            .cast_into::<PyType>()?
            .unbind())
    })
    .map(|t| t.clone_ref(py))
    // `pickle` is part of the standard library; if it cannot be imported, fall back to Exception.
    .unwrap_or_else(|_| py.get_type::<PyException>().unbind())
}

/// `pickle.PicklingError(msg)`.
pub(crate) fn pickling_error(py: Python<'_>, msg: impl Into<String>) -> PyErr {
    PyErr::from_type(
        stdlib_exception(py, &PICKLING_ERROR, "PicklingError").into_bound(py),
        msg.into(),
    )
}

/// `pickle.UnpicklingError(msg)`.
pub(crate) fn unpickling_error(py: Python<'_>, msg: impl Into<String>) -> PyErr {
    PyErr::from_type(
        stdlib_exception(py, &UNPICKLING_ERROR, "UnpicklingError").into_bound(py),
        msg.into(),
    )
}

/// A core-crate error (which names what and where) as `pickle.UnpicklingError`.
#[allow(dead_code, reason = "used by the unpickler as it grows")]
pub(crate) fn from_core(py: Python<'_>, err: &brinery::Error) -> PyErr {
    unpickling_error(py, err.to_string())
}
