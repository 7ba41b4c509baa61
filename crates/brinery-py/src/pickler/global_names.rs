//! A per-thread cache of how classes pickle by reference (`save_global`).
//!
//! `save_global` answers the same question for the same class on every call: read
//! `__qualname__` and `__module__`, import the module, walk the dotted path, check that the walk
//! ends at the class, look the pair up in the extension registry. For a class with a C
//! `__module__` (such as `datetime.date`) that is about 5,000 instructions, two fresh strings and
//! an import; pyperformance's `pickle` workload spends a third of its time there. The answer is
//! kept here, keyed by the type object, and reused only while everything it was derived from is
//! provably unchanged:
//!
//! - the class's names: its **type version tag** (`tp_version_tag`). CPython gives every type a
//!   tag, and assigning any attribute of the type (`__qualname__`, `__module__`, ...) or of a base
//!   class invalidates it (`PyType_Modified`). A type without a valid tag is never cached, and
//!   a new type at a reused address carries a different tag;
//! - the import and the lookup: [`crate::imports`] still finds the same module object for the
//!   module name without running the import machinery, and that module's `__dict__` still holds
//!   the class under its name.
//!
//! Only the simplest and commonest shape is cached: a class (metaclass exactly `type`) whose
//! qualified name has no dot and does not start with `__`, found directly in its module, with
//! no extension code. The cached strings are the very objects the uncached path would save, so
//! memo hits, and therefore the bytes, are the same.

use std::cell::RefCell;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::imports;

/// Slots in the direct-mapped table (a power of two). Programs pickle a few dozen classes.
const SLOTS: usize = 64;

/// What `save_global` found for one class.
struct GlobalName {
    /// The type object's address (not a reference: the cache does not keep classes alive).
    tp: usize,
    /// Its version tag when the entry was made.
    tag: u32,
    /// The module the class was found in.
    module: Py<PyAny>,
    /// `__module__`, the very object `save_global` saves.
    module_name: Py<PyString>,
    /// `__qualname__` (dotless), the very object `save_global` saves.
    name: Py<PyString>,
}

struct Cache {
    slots: Vec<Option<GlobalName>>,
}

thread_local! {
    static CACHE: RefCell<Cache> = const { RefCell::new(Cache { slots: Vec::new() }) };
}

fn slot_of(tp: usize) -> usize {
    (tp >> 4) & (SLOTS - 1)
}

/// The version tag of `obj` if it is a class whose metaclass is exactly `type` and whose tag is
/// valid.
fn class_tag(obj: &Bound<'_, PyAny>) -> Option<(usize, u32)> {
    // SAFETY: `obj` is alive; reading the type pointer of a live object and, once it is known
    // to be a type object, its flags and version tag fields, is reading plain struct fields.
    unsafe {
        let o = obj.as_ptr();
        if ffi::Py_TYPE(o) != std::ptr::addr_of_mut!(ffi::PyType_Type) {
            return None;
        }
        let tp = o.cast::<ffi::PyTypeObject>();
        if (*tp).tp_flags & ffi::Py_TPFLAGS_VALID_VERSION_TAG == 0 || (*tp).tp_version_tag == 0 {
            return None;
        }
        Some((o as usize, (*tp).tp_version_tag))
    }
}

/// The module `obj` pickles from and the names to write, if an entry for `obj` is still valid.
pub(crate) fn lookup<'py>(
    obj: &Bound<'py, PyAny>,
) -> Option<(Bound<'py, PyString>, Bound<'py, PyString>)> {
    let py = obj.py();
    let (tp, tag) = class_tag(obj)?;
    let (module, module_name, name) = CACHE.with(|cache| {
        let cache = cache.try_borrow().ok()?;
        let e = cache.slots.get(slot_of(tp))?.as_ref()?;
        (e.tp == tp && e.tag == tag).then(|| {
            (
                e.module.as_ptr(),
                e.module_name.bind(py).clone(),
                e.name.bind(py).clone(),
            )
        })
    })?;
    let found = imports::imported_module(py, &module_name)?;
    if found.as_ptr() != module || !imports::plain_attribute(&found, &name)?.is(obj) {
        return None;
    }
    Some((module_name, name))
}

/// Remember how `obj` pickled: found as `module.name`, where `module_name` and `name` are the
/// objects `save_global` saved. Shapes outside the cached one are ignored.
pub(crate) fn remember(
    obj: &Bound<'_, PyAny>,
    module: &Bound<'_, PyAny>,
    module_name: &Bound<'_, PyAny>,
    name: &Bound<'_, PyAny>,
) {
    let py = obj.py();
    // The shape first: a class outside it is never cached, so it never pays for a tag probe.
    let (Ok(module_name), Ok(name)) = (
        module_name.cast_exact::<PyString>(),
        name.cast_exact::<PyString>(),
    ) else {
        return;
    };
    // SAFETY: reading the type pointer of a live object.
    let exact_module =
        unsafe { ffi::Py_TYPE(module.as_ptr()) == std::ptr::addr_of_mut!(ffi::PyModule_Type) };
    if !imports::is_plain_name(name) || !exact_module {
        return;
    }
    let tag = class_tag(obj).or_else(|| {
        // Reading `__qualname__` and `__module__` (data descriptors of `type`) does not give a
        // class a version tag; a failed lookup through the class's own MRO does, and runs no
        // Python code for a class whose metaclass is exactly `type`.
        // SAFETY: reading the type pointer of a live object.
        if unsafe { ffi::Py_TYPE(obj.as_ptr()) } != std::ptr::addr_of_mut!(ffi::PyType_Type) {
            return None;
        }
        let _ = obj.getattr_opt(pyo3::intern!(py, "__brinery_version_tag_probe__"));
        class_tag(obj)
    });
    let Some((tp, tag)) = tag else {
        return;
    };
    CACHE.with(|cache| {
        let Ok(mut cache) = cache.try_borrow_mut() else {
            return;
        };
        if cache.slots.is_empty() {
            cache.slots.resize_with(SLOTS, || None);
        }
        cache.slots[slot_of(tp)] = Some(GlobalName {
            tp,
            tag,
            module: module.clone().unbind(),
            module_name: module_name.clone().unbind(),
            name: name.clone().unbind(),
        });
    });
}
