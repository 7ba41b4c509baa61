//! `PyImport_Import` and `getattr(module, name)` without their cost when their answer is known.
//!
//! Pickling a class and unpickling a global both import a module by name and read one of its
//! attributes (`save_global`, `find_class`). `PyImport_Import` goes through `builtins.__import__`
//! and the import machinery even when the module is long imported: about 1,800 instructions, a
//! third of loading a small pickle that holds one `datetime.date`. When `__import__` is the
//! interpreter's own, the module is in `sys.modules` and is not being initialized, the import
//! returns exactly `sys.modules[name]` and runs no Python code; and when that module is a plain
//! `module`, reading a plain name (no dot, no leading `__`) that its `__dict__` holds returns
//! that entry. [`module_attribute`] answers in those cases only and leaves every other case
//! (a hooked `__import__`, a missing or `None` entry, a module subclass, a name found by a
//! module `__getattr__`, dotted names) to the caller's general path.

use std::ffi::CStr;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyString;

/// The interpreter's own `builtins.__import__`, once seen.
static BUILTIN_IMPORT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Whether `f` is the `__import__` function of the `builtins` module (a C function named
/// `__import__` bound to the module named `builtins`).
fn is_builtin_import(f: *mut ffi::PyObject) -> bool {
    // SAFETY: `f` is a live object (borrowed by the caller). Once it is checked to be exactly a
    // `builtin_function_or_method`, its `PyCFunctionObject` fields are valid: `m_ml` points to
    // the static method definition, whose `ml_name` is a NUL-terminated C string; `m_self` is
    // the bound module or NULL. `PyModule_GetNameObject` returns a new reference or NULL with
    // an exception set, which is cleared.
    unsafe {
        if ffi::PyCFunction_CheckExact(f) == 0 {
            return false;
        }
        let func = f.cast::<ffi::PyCFunctionObject>();
        let def = (*func).m_ml;
        if def.is_null() || CStr::from_ptr((*def).ml_name) != c"__import__" {
            return false;
        }
        let module = (*func).m_self;
        if module.is_null() || ffi::PyModule_Check(module) == 0 {
            return false;
        }
        let name = ffi::PyModule_GetNameObject(module);
        if name.is_null() {
            ffi::PyErr_Clear();
            return false;
        }
        let is_builtins = ffi::PyUnicode_CompareWithASCIIString(name, c"builtins".as_ptr()) == 0;
        ffi::Py_DECREF(name);
        is_builtins
    }
}

/// Whether `__import__`, as the running code's builtins hold it, is the interpreter's own.
fn import_is_builtin(py: Python<'_>) -> bool {
    // SAFETY: the GIL is held. `PyEval_GetBuiltins` returns the current builtins dict
    // (borrowed); `PyDict_GetItem` returns a borrowed reference or NULL and sets no exception
    // for a str key.
    let f = unsafe {
        let builtins = ffi::PyEval_GetBuiltins();
        if builtins.is_null() {
            return false;
        }
        ffi::PyDict_GetItem(builtins, pyo3::intern!(py, "__import__").as_ptr())
    };
    if f.is_null() {
        return false;
    }
    if let Some(known) = BUILTIN_IMPORT.get(py) {
        return known.as_ptr() == f;
    }
    if !is_builtin_import(f) {
        return false;
    }
    // SAFETY: `f` is a live borrowed reference; a new strong reference is taken.
    let candidate = unsafe { Bound::from_borrowed_ptr(py, f) }.unbind();
    BUILTIN_IMPORT.get_or_init(py, || candidate).as_ptr() == f
}

/// `sys.modules[name]` if `PyImport_Import(name)` would return exactly it without running any
/// Python code, and it is a plain `module` (its attributes are its `__dict__`'s entries).
pub(crate) fn imported_module<'py>(
    py: Python<'py>,
    name: &Bound<'py, PyString>,
) -> Option<Bound<'py, PyAny>> {
    if !import_is_builtin(py) {
        return None;
    }
    // SAFETY: the GIL is held. `PyImport_GetModuleDict` returns the interpreter's module dict
    // (borrowed); `PyDict_GetItem` returns a borrowed reference or NULL and sets no exception
    // for a str key; the module's type is read from a live object.
    let module = unsafe {
        let m = ffi::PyDict_GetItem(ffi::PyImport_GetModuleDict(), name.as_ptr());
        if m.is_null() || ffi::Py_TYPE(m) != std::ptr::addr_of_mut!(ffi::PyModule_Type) {
            return None;
        }
        Bound::from_borrowed_ptr(py, m)
    };
    // The import machinery waits for a module another thread is still initializing
    // (`__spec__._initializing`); leave that case to it.
    // SAFETY: `module` is an exact module; `PyModule_GetDict` returns its dict (borrowed), and
    // `PyDict_GetItem` a borrowed reference or NULL without an exception for a str key.
    let spec = unsafe {
        ffi::PyDict_GetItem(
            ffi::PyModule_GetDict(module.as_ptr()),
            pyo3::intern!(py, "__spec__").as_ptr(),
        )
    };
    if !spec.is_null() {
        // SAFETY: a live borrowed reference.
        let spec = unsafe { Bound::from_borrowed_ptr(py, spec) };
        if !spec.is_none() {
            match spec.getattr_opt(pyo3::intern!(py, "_initializing")) {
                Ok(None) => {}
                Ok(Some(flag)) if !flag.is_truthy().unwrap_or(true) => {}
                _ => return None,
            }
        }
    }
    Some(module)
}

/// `getattr(module, name)` for a module from [`imported_module`] and a plain `name`, when the
/// module's `__dict__` holds it; `None` when the general lookup must decide.
pub(crate) fn plain_attribute<'py>(
    module: &Bound<'py, PyAny>,
    name: &Bound<'py, PyString>,
) -> Option<Bound<'py, PyAny>> {
    if !is_plain_name(name) {
        return None;
    }
    // SAFETY: `module` is an exact module (see `imported_module`); `PyModule_GetDict` returns
    // its dict (borrowed); `PyDict_GetItem` returns a borrowed reference or NULL without an
    // exception for a str key.
    unsafe {
        let v = ffi::PyDict_GetItem(ffi::PyModule_GetDict(module.as_ptr()), name.as_ptr());
        (!v.is_null()).then(|| Bound::from_borrowed_ptr(module.py(), v))
    }
}

/// `getattr(PyImport_Import(module_name), name)` when both are known without running code
/// (see the module docs); `None` otherwise.
pub(crate) fn module_attribute<'py>(
    module_name: &Bound<'py, PyAny>,
    name: &Bound<'py, PyAny>,
) -> Option<Bound<'py, PyAny>> {
    let module_name = module_name.cast_exact::<PyString>().ok()?;
    let name = name.cast_exact::<PyString>().ok()?;
    let module = imported_module(module_name.py(), module_name)?;
    plain_attribute(&module, name)
}

/// A name the generic attribute lookup of a plain module resolves from the module's `__dict__`
/// alone: no dot (not a path) and no leading `__` (`module` defines `__dict__`, `__class__`,
/// `__annotations__`, ... as descriptors).
pub(crate) fn is_plain_name(name: &Bound<'_, PyString>) -> bool {
    name.to_str()
        .is_ok_and(|n| !n.is_empty() && !n.contains('.') && !n.starts_with("__"))
}
