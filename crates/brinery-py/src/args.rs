//! Argument conversions shared by the Pickler and the Unpickler.

use pyo3::prelude::*;

/// An argument converted with `PyObject_IsTrue`, like Argument Clinic's `bool` (`fix_imports`):
/// an explicit `None` means false, as in `_pickle`.
pub(crate) struct Truthy(pub(crate) bool);

impl<'a, 'py> FromPyObject<'a, 'py> for Truthy {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        Ok(Truthy(obj.is_truthy()?))
    }
}
