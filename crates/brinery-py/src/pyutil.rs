//! Small helpers over CPython objects, shared by the pickler and the unpickler, that behave as
//! `_pickle.c` does where PyO3's conveniences would not: PyO3's dict iterator panics when the
//! dict changes size during the walk (Python code run between two items, such as a
//! `__setattr__` during BUILD, can do that), and C formats type names with `%.200s`.

use std::ffi::CStr;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyDict;

/// `Py_TYPE(obj)->tp_name` as C's error messages print it (`%.200s`): at most 200 bytes, a
/// character cut in two by the limit shown as U+FFFD (`decimal.Decimal`, `NoneType`).
pub(crate) fn type_name(obj: &Bound<'_, PyAny>) -> String {
    // SAFETY: `obj` is alive, so its type object is alive, and `tp_name` of every type object
    // is a NUL-terminated C string owned by the type (checked for NULL all the same).
    let name = unsafe {
        let tp = ffi::Py_TYPE(obj.as_ptr());
        let name = (*tp).tp_name;
        if name.is_null() {
            return String::new();
        }
        CStr::from_ptr(name).to_bytes()
    };
    String::from_utf8_lossy(&name[..name.len().min(200)]).into_owned()
}

/// The next `(key, value)` of `dict` from `*pos` (`PyDict_Next`), each as a new reference,
/// taken before anything can run. Python code run between two calls may change the dict: as
/// with C's walks, an item may then be skipped or met twice, and nothing fails.
#[inline]
pub(crate) fn dict_next<'py>(
    dict: &Bound<'py, PyDict>,
    pos: &mut ffi::Py_ssize_t,
) -> Option<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let mut key = std::ptr::null_mut();
    let mut value = std::ptr::null_mut();
    // SAFETY: GIL held; `dict` is a live dict; `PyDict_Next` only reads it (bounds-checking
    // `pos` against the current table) and returns borrowed references, which become owned
    // ones before any Python code runs.
    unsafe {
        if ffi::PyDict_Next(dict.as_ptr(), pos, &mut key, &mut value) == 0 {
            return None;
        }
        Some((
            Bound::from_borrowed_ptr(dict.py(), key),
            Bound::from_borrowed_ptr(dict.py(), value),
        ))
    }
}

/// Every `(key, value)` of `dict`, walked with [`dict_next`]: never panics if the dict changes
/// during the walk.
pub(crate) fn dict_items<'a, 'py>(
    dict: &'a Bound<'py, PyDict>,
) -> impl Iterator<Item = (Bound<'py, PyAny>, Bound<'py, PyAny>)> + 'a {
    let mut pos = 0;
    std::iter::from_fn(move || dict_next(dict, &mut pos))
}
