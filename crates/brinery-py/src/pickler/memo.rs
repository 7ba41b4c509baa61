//! The pickler's memo: object identity → memo index, holding a strong reference to every key
//! (as `_pickle.c`'s `PyMemoTable` does) so that an id cannot be reused while it is memoized.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

/// A hasher for object addresses: they are unique, so a multiply-shift mix is enough.
#[derive(Default)]
pub(crate) struct PtrHasher(u64);

impl Hasher for PtrHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        // Addresses are 16-byte aligned: drop the low bits, then spread the rest.
        self.0 = ((n as u64) >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type PtrMap<V> = HashMap<usize, V, BuildHasherDefault<PtrHasher>>;

/// `id(obj)` → (memo index, obj).
#[derive(Default)]
pub(crate) struct Memo {
    map: PtrMap<(isize, Py<PyAny>)>,
}

impl Memo {
    /// Number of entries (the index the next `memo_put` assigns).
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// The index stored for `obj`, if it is memoized.
    #[inline]
    pub(crate) fn get(&self, obj: &Bound<'_, PyAny>) -> Option<isize> {
        if self.map.is_empty() {
            return None;
        }
        self.map.get(&(obj.as_ptr() as usize)).map(|e| e.0)
    }

    /// Whether `obj` is memoized.
    #[inline]
    pub(crate) fn contains(&self, obj: &Bound<'_, PyAny>) -> bool {
        self.get(obj).is_some()
    }

    /// Store `obj` at `idx` (`PyMemoTable_Set`: an existing entry only gets its index updated).
    pub(crate) fn set(&mut self, obj: &Bound<'_, PyAny>, idx: isize) {
        self.map
            .entry(obj.as_ptr() as usize)
            .and_modify(|e| e.0 = idx)
            .or_insert_with(|| (idx, obj.clone().unbind()));
    }

    /// Drop every entry.
    pub(crate) fn clear(&mut self) {
        self.map.clear();
    }

    /// A copy holding new references to the same objects.
    pub(crate) fn clone_ref(&self, py: Python<'_>) -> Memo {
        let map = self
            .map
            .iter()
            .map(|(k, (i, o))| (*k, (*i, o.clone_ref(py))))
            .collect();
        Memo { map }
    }

    /// `PicklerMemoProxy.copy()`: `{id(obj): (index, obj)}`.
    pub(crate) fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, (i, o)) in &self.map {
            d.set_item(
                *k,
                PyTuple::new(py, [i.into_pyobject(py)?.into_any(), o.bind(py).clone()])?,
            )?;
        }
        Ok(d)
    }

    /// A memo built from a `{key: (index, obj)}` dict (`Pickler.memo = {...}`).
    pub(crate) fn from_dict(d: &Bound<'_, PyDict>) -> PyResult<Memo> {
        let mut memo = Memo::default();
        for (_, value) in d.iter() {
            let t = match value.cast::<PyTuple>() {
                Ok(t) if t.len() == 2 => t,
                _ => {
                    return Err(pyo3::exceptions::PyTypeError::new_err(
                        "'memo' values must be 2-item tuples",
                    ))
                }
            };
            let idx: isize = t.get_item(0)?.extract()?;
            memo.set(&t.get_item(1)?, idx);
        }
        Ok(memo)
    }

    /// Visit every memoized object (GC support).
    pub(crate) fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        for (_, o) in self.map.values() {
            visit.call(o)?;
        }
        Ok(())
    }
}
