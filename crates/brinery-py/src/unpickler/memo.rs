//! The unpickler's memo: index → object.
//!
//! Dense indices live in a vector, far-away ones in an ordered map, so that a stream claiming
//! `LONG_BINPUT 4000000000` costs one entry, not four billion slots (C would try to allocate them).
//! `len` counts stored entries: `MEMOIZE` stores at that index, as in `_pickle.c`.

use std::collections::BTreeMap;

use pyo3::prelude::*;

#[derive(Default)]
pub(crate) struct Memo {
    dense: Vec<Option<Py<PyAny>>>,
    sparse: BTreeMap<usize, Py<PyAny>>,
    len: usize,
}

impl Memo {
    /// Number of stored entries (C's `memo_len`).
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub(crate) fn get<'py>(&self, py: Python<'py>, idx: usize) -> Option<Bound<'py, PyAny>> {
        let slot = match self.dense.get(idx) {
            Some(slot) => slot.as_ref(),
            None => self.sparse.get(&idx),
        };
        slot.map(|o| o.bind(py).clone())
    }

    /// Count a MEMOIZE whose value is not stored (nothing fetches its index): the next
    /// MEMOIZE stores at the index after it, as it would have.
    #[inline]
    pub(crate) fn count_skipped(&mut self) {
        self.len += 1;
    }

    /// Store `value` at `idx`; returns the value it replaces, which the caller must drop only
    /// after releasing any lock on the memo (dropping may run Python code).
    #[inline]
    pub(crate) fn put(&mut self, idx: usize, value: Py<PyAny>) -> Option<Py<PyAny>> {
        if let Some(slot) = self.dense.get_mut(idx) {
            let old = slot.replace(value);
            if old.is_none() {
                self.len += 1;
            }
            return old;
        }
        self.put_outside(idx, value)
    }

    /// `put` beyond the dense range: grow it (geometrically, from a first block big enough for
    /// small pickles) or, for a far-away index, store it in the sparse map.
    #[inline(never)]
    fn put_outside(&mut self, idx: usize, value: Py<PyAny>) -> Option<Py<PyAny>> {
        let old = if idx <= 2 * self.len + 1024 {
            let new_len = (idx + 1).max(self.dense.len() * 2).max(64);
            self.dense.resize_with(new_len, || None);
            // Move sparse entries that now fall inside the dense range.
            if !self.sparse.is_empty() {
                let rest = self.sparse.split_off(&new_len);
                let inside = std::mem::replace(&mut self.sparse, rest);
                for (i, v) in inside {
                    self.dense[i] = Some(v);
                }
            }
            self.dense[idx].replace(value)
        } else {
            self.sparse.insert(idx, value)
        };
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// All entries in index order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &Py<PyAny>)> {
        self.dense
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.as_ref().map(|v| (i, v)))
            .chain(self.sparse.iter().map(|(i, v)| (*i, v)))
    }

    /// Release every entry while the GIL is held (a `Bound` is released directly; a `Py` dropped
    /// on its own first checks whether this thread holds the GIL), leaving an empty memo.
    pub(crate) fn release(&mut self, py: Python<'_>) {
        for obj in self.dense.drain(..).flatten() {
            drop(obj.into_bound(py));
        }
        if !self.sparse.is_empty() {
            for (_, obj) in std::mem::take(&mut self.sparse) {
                drop(obj.into_bound(py));
            }
        }
        self.len = 0;
    }

    /// Take everything out (for `clear`), leaving an empty memo.
    pub(crate) fn take(&mut self) -> Memo {
        std::mem::take(self)
    }

    /// A copy sharing the objects.
    pub(crate) fn clone_ref(&self, py: Python<'_>) -> Memo {
        Memo {
            dense: self
                .dense
                .iter()
                .map(|v| v.as_ref().map(|o| o.clone_ref(py)))
                .collect(),
            sparse: self
                .sparse
                .iter()
                .map(|(i, o)| (*i, o.clone_ref(py)))
                .collect(),
            len: self.len,
        }
    }
}
