//! `_native.JarStore`: the low-level binding of the jar (`crates/brinery-jar`).
//!
//! The Python `brinery.Jar` (python/brinery/_jar.py) builds the user-facing API on top of it.
//! Work in progress: every method raises `NotImplementedError` until its body is real.

use pyo3::exceptions::{PyException, PyNotImplementedError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

pyo3::create_exception!(
    _native,
    JarError,
    PyException,
    "A jar operation failed: unreadable or corrupt jar, missing version, bad name."
);

fn todo<T>() -> PyResult<T> {
    Err(PyNotImplementedError::new_err("JarStore is not implemented yet"))
}

/// A jar on disk, opened by path. See `python/brinery/_native.pyi` for the method contracts.
#[pyclass(module = "brinery._native", frozen)]
pub(crate) struct JarStore {}

#[pymethods]
#[allow(unused_variables, reason = "signatures committed before the bodies")]
impl JarStore {
    #[new]
    #[pyo3(signature = (path, *, create = true))]
    fn new(path: std::path::PathBuf, create: bool) -> PyResult<Self> {
        todo()
    }

    #[pyo3(signature = (branch, name, pickle, buffers = None, meta = None, note = None))]
    fn save(
        &self,
        branch: &str,
        name: &str,
        pickle: &Bound<'_, PyAny>,
        buffers: Option<&Bound<'_, PyAny>>,
        meta: Option<&Bound<'_, PyDict>>,
        note: Option<&str>,
    ) -> PyResult<Py<PyDict>> {
        todo()
    }

    /// The jar's root folder (the `.brinery` directory).
    #[getter]
    fn path(&self) -> PyResult<String> {
        todo()
    }

    #[pyo3(signature = (branch, name, version = None, *, copy = false))]
    fn load(
        &self,
        branch: &str,
        name: &str,
        version: Option<&Bound<'_, PyAny>>,
        copy: bool,
    ) -> PyResult<Py<PyAny>> {
        todo()
    }

    #[pyo3(signature = (branch, name, version = None))]
    fn info(
        &self,
        branch: &str,
        name: &str,
        version: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyDict>> {
        todo()
    }

    fn log(&self, branch: &str, name: &str) -> PyResult<Py<PyList>> {
        todo()
    }

    fn names(&self, branch: &str) -> PyResult<Vec<String>> {
        todo()
    }

    fn contains(&self, branch: &str, name: &str) -> PyResult<bool> {
        todo()
    }

    fn tag(
        &self,
        branch: &str,
        name: &str,
        version: Option<&Bound<'_, PyAny>>,
        tag: &str,
    ) -> PyResult<Py<PyDict>> {
        todo()
    }

    fn delete(&self, branch: &str, name: &str) -> PyResult<()> {
        todo()
    }

    fn branches(&self) -> PyResult<Vec<String>> {
        todo()
    }

    fn create_branch(&self, name: &str, from_branch: &str) -> PyResult<()> {
        todo()
    }

    fn gc(&self) -> PyResult<Py<PyDict>> {
        todo()
    }

    fn verify(&self) -> PyResult<Py<PyDict>> {
        todo()
    }

    fn export_pickle(
        &self,
        branch: &str,
        name: &str,
        version: Option<&Bound<'_, PyAny>>,
        path: std::path::PathBuf,
    ) -> PyResult<u64> {
        todo()
    }

    #[pyo3(signature = (branch, name, path, note = None))]
    fn import_pickle(
        &self,
        branch: &str,
        name: &str,
        path: std::path::PathBuf,
        note: Option<&str>,
    ) -> PyResult<Py<PyDict>> {
        todo()
    }

    #[staticmethod]
    #[pyo3(signature = (start = None))]
    fn find(start: Option<std::path::PathBuf>) -> PyResult<Option<String>> {
        todo()
    }

    #[staticmethod]
    fn key_id() -> PyResult<String> {
        todo()
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<JarStore>()?;
    m.add("JarError", m.py().get_type::<JarError>())?;
    let _ = PyList::empty(m.py());
    Ok(())
}
