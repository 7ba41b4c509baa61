//! The pickler's memo: object identity → memo index, holding a strong reference to every key
//! (as `_pickle.c`'s `PyMemoTable` does) so that an id cannot be reused while it is memoized.
//!
//! Two parts:
//! - the table: open addressing over object addresses (linear then perturbed probing,
//!   power-of-two capacity, at most two thirds full, as `PyMemoTable`), each key a strong
//!   reference. A large table hashes by the address itself, which keeps the table's accesses in
//!   the order of the objects' addresses: objects allocated one after another (a million strings
//!   of a column) land in neighbouring slots, so a big memo is walked nearly sequentially instead
//!   of missing the cache (and the TLB) on every object as a scrambling hash would;
//! - the *pending* entries: objects the pickler proved can be met only once in the graph being
//!   pickled (see `Saver::save_obj`), recorded in a plain vector instead of the table. Their
//!   `PUT`/`MEMOIZE` is written all the same, so the output does not change; they only move into
//!   the table ([`Memo::flush_pending`]) when Python code is about to run (which could make them
//!   reachable again) or when the memo outlives the dump (`Pickler.memo`). Pending entries hold
//!   no reference: the pickler guarantees they stay alive until they are flushed or discarded.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

/// One slot of the table; `key == 0` marks an empty slot.
#[derive(Clone, Copy, Default)]
struct Slot {
    key: usize,
    idx: isize,
}

/// The smallest table allocated.
const MIN_CAPACITY: usize = 64;
/// A table at least this large is freed (not kept for reuse) when the memo is cleared.
const KEEP_CAPACITY: usize = 1 << 14;

/// `id(obj)` → memo index, plus the pending entries.
pub(crate) struct Memo {
    slots: Vec<Slot>,
    /// Entries in `slots`.
    used: usize,
    /// Unique objects memoized without a table entry: (address, index).
    pending: Vec<(usize, isize)>,
    /// The same, each holding a reference (objects that may be temporaries).
    pending_owned: Vec<(usize, isize)>,
    /// The index the next `memo_put` assigns: how many puts there were (table and pending
    /// entries), counted apart from them so that two entries for one address, which the
    /// pickler must never make, could only cost a lookup, never give two objects one index.
    next: usize,
    /// The slots filled since the last clear while there are at most [`TRACK_MAX`] of them, so
    /// that clearing a small memo (every small `dumps`) visits only those; `None` once there
    /// are more (clearing then scans the table).
    filled: Option<Vec<u32>>,
}

/// See `Memo::filled`.
const TRACK_MAX: usize = 256;

/// Slots tried one after another before probing jumps around the table.
const LINEAR: usize = 8;
/// Tables of at least this many slots (512 KiB) hash by address; smaller ones scramble it.
const LOCAL_MIN: usize = 1 << 15;

/// The slot holding `key`, or the empty slot where it would go. The table must have an empty
/// slot (it is at most two thirds full).
///
/// The hash of a large table is the address itself (objects are 16-byte aligned, so
/// `key >> 4`: see the module docs), that of a small one a multiplicative scramble; probed
/// linearly for [`LINEAR`] slots (the same cache line or the next), then with
/// `_PyMemoTable_Lookup`'s perturbed recurrence, so that a crowded neighbourhood (many small
/// objects, or addresses a multiple of the table size apart) does not degrade into long runs.
#[inline(always)]
fn lookup(slots: &[Slot], key: usize) -> usize {
    let mask = slots.len() - 1;
    let hash = if slots.len() >= LOCAL_MIN {
        key >> 4
    } else {
        // A small table stays in the cache anyway; scrambled addresses spread a few dozen
        // neighbouring objects (dict keys made together) over it without collisions.
        let h = ((key as u64) >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (h >> 32) as usize ^ (h as usize)
    };
    let i = hash & mask;
    let k = slots[i].key;
    if k == key || k == 0 {
        return i;
    }
    probe(slots, key, hash, i)
}

/// [`lookup`] after a collision in the first slot.
#[inline(never)]
fn probe(slots: &[Slot], key: usize, hash: usize, mut i: usize) -> usize {
    let mask = slots.len() - 1;
    for _ in 1..LINEAR {
        i = (i + 1) & mask;
        let k = slots[i].key;
        if k == key || k == 0 {
            return i;
        }
    }
    // The recurrence visits every slot once `perturb` is 0, so an empty slot is always found.
    let mut perturb = hash;
    loop {
        i = (i.wrapping_mul(5).wrapping_add(perturb).wrapping_add(1)) & mask;
        let k = slots[i].key;
        if k == key || k == 0 {
            return i;
        }
        perturb >>= 5;
    }
}

impl Default for Memo {
    fn default() -> Memo {
        Memo::new()
    }
}

impl Memo {
    /// An empty memo (allocates nothing).
    pub(crate) const fn new() -> Memo {
        Memo {
            slots: Vec::new(),
            used: 0,
            pending: Vec::new(),
            pending_owned: Vec::new(),
            next: 0,
            filled: Some(Vec::new()),
        }
    }

    /// Number of entries, pending ones included (the index the next `memo_put` assigns).
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.next
    }

    /// The index stored in the table for `obj` (pending entries are never looked up: they are
    /// met only once).
    #[inline]
    pub(crate) fn get(&self, obj: &Bound<'_, PyAny>) -> Option<isize> {
        if self.used == 0 {
            return None;
        }
        self.get_ptr(obj.as_ptr() as usize)
    }

    #[inline(always)]
    fn get_ptr(&self, key: usize) -> Option<isize> {
        let s = self.slots[lookup(&self.slots, key)];
        (s.key == key).then_some(s.idx)
    }

    /// Whether `obj` is memoized in the table.
    #[inline]
    pub(crate) fn contains(&self, obj: &Bound<'_, PyAny>) -> bool {
        self.get(obj).is_some()
    }

    /// Store `obj` at `idx` (`PyMemoTable_Set`: an existing entry only gets its index updated).
    pub(crate) fn set(&mut self, obj: &Bound<'_, PyAny>, idx: isize) {
        if self.set_ptr(obj.as_ptr(), idx) {
            self.next += 1;
        }
    }

    /// [`set`](Self::set) for a live object pointer, without counting a put; takes a new
    /// reference when inserting. Returns whether it inserted.
    fn set_ptr(&mut self, obj: *mut ffi::PyObject, idx: isize) -> bool {
        if (self.used + 1) * 3 > self.slots.len() * 2 {
            self.grow(self.used + 1);
        }
        let key = obj as usize;
        let i = lookup(&self.slots, key);
        let s = &mut self.slots[i];
        if s.key == key {
            s.idx = idx;
            return false;
        }
        // SAFETY: the caller guarantees `obj` is a live object and the GIL is held (every
        // `Memo` method runs under it); the table owns this new reference until `clear`.
        unsafe { ffi::Py_INCREF(obj) };
        *s = Slot { key, idx };
        self.used += 1;
        self.track(i);
        true
    }

    #[inline(always)]
    fn track(&mut self, i: usize) {
        if let Some(filled) = &mut self.filled {
            if filled.len() < TRACK_MAX {
                filled.push(i as u32);
            } else {
                self.filled = None;
            }
        }
    }

    /// Make room for `n` entries at most two thirds full (`_PyMemoTable_ResizeTable`'s sizes:
    /// twice the entries, rounded up to a power of two).
    #[cold]
    fn grow(&mut self, n: usize) {
        let mut cap = (n * 2).next_power_of_two().max(MIN_CAPACITY);
        if n * 3 > cap * 2 {
            cap *= 2;
        }
        if cap <= self.slots.len() {
            return;
        }
        let old = std::mem::replace(&mut self.slots, vec![Slot::default(); cap]);
        if let Some(filled) = &mut self.filled {
            filled.clear();
        }
        for s in old.into_iter().filter(|s| s.key != 0) {
            let i = lookup(&self.slots, s.key);
            self.slots[i] = s;
            self.track(i);
        }
    }

    /// Record a unique object memoized at `idx` without a table entry. The caller guarantees
    /// the object stays alive until [`flush_pending`](Self::flush_pending) or the memo is
    /// cleared.
    #[inline(always)]
    pub(crate) fn push_pending(&mut self, obj: *mut ffi::PyObject, idx: isize) {
        self.pending.push((obj as usize, idx));
        self.next += 1;
    }

    /// [`push_pending`](Self::push_pending) for an object that may die before the memo is
    /// done with it: the entry takes a reference (released by [`clear`](Self::clear), or
    /// handed to the table by [`flush_pending`](Self::flush_pending)).
    #[inline(always)]
    pub(crate) fn push_pending_owned(&mut self, obj: *mut ffi::PyObject, idx: isize) {
        // SAFETY: `obj` is a live object (the caller's contract) and the GIL is held.
        unsafe { ffi::Py_INCREF(obj) };
        self.pending_owned.push((obj as usize, idx));
        self.next += 1;
    }

    /// Move the pending entries into the table (each takes a reference).
    #[inline]
    pub(crate) fn flush_pending(&mut self) {
        if self.pending.is_empty() && self.pending_owned.is_empty() {
            return;
        }
        self.flush_pending_slow();
    }

    #[inline(never)]
    fn flush_pending_slow(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        let owned = std::mem::take(&mut self.pending_owned);
        self.grow(self.used + pending.len() + owned.len());
        for &(key, idx) in &pending {
            self.set_ptr(key as *mut ffi::PyObject, idx);
        }
        for &(key, idx) in &owned {
            let _ = self.set_ptr(key as *mut ffi::PyObject, idx);
            // SAFETY: the entry's own reference, released now that the table holds one.
            unsafe { ffi::Py_DECREF(key as *mut ffi::PyObject) };
        }
        self.pending = pending;
        self.pending.clear();
        self.pending_owned = owned;
        self.pending_owned.clear();
    }

    /// Drop every entry (releasing the table's references). Pending entries are forgotten.
    /// A small table keeps its allocation for reuse.
    pub(crate) fn clear(&mut self) {
        self.pending.clear();
        self.next = 0;
        if !self.pending_owned.is_empty() {
            let owned = std::mem::take(&mut self.pending_owned);
            Python::attach(|_py| {
                for &(key, _) in &owned {
                    // SAFETY: the GIL is held; each entry's reference, released once (the
                    // vector was taken out of the memo first).
                    unsafe { ffi::Py_DECREF(key as *mut ffi::PyObject) };
                }
            });
            self.pending_owned = owned;
            self.pending_owned.clear();
        }
        if self.used != 0 {
            self.used = 0;
            let release = |s: &mut Slot| {
                let key = std::mem::take(s).key;
                if key != 0 {
                    // SAFETY: the GIL is held (see below); `key` is a reference the table took
                    // in `set_ptr`, released exactly once (its slot is emptied first). A
                    // `__del__` run by the release cannot reach this memo: we hold it mutably.
                    unsafe { ffi::Py_DECREF(key as *mut ffi::PyObject) };
                }
            };
            Python::attach(|_py| match &mut self.filled {
                Some(filled) => {
                    for &i in filled.iter() {
                        release(&mut self.slots[i as usize]);
                    }
                }
                None => self.slots.iter_mut().for_each(release),
            });
        }
        match &mut self.filled {
            Some(filled) => filled.clear(),
            None => self.filled = Some(Vec::new()),
        }
        if self.slots.len() >= KEEP_CAPACITY {
            self.slots = Vec::new();
        }
    }

    /// The table's entries as (address, index).
    fn entries(&self) -> impl Iterator<Item = (usize, isize)> + '_ {
        self.slots
            .iter()
            .filter(|s| s.key != 0)
            .map(|s| (s.key, s.idx))
    }

    /// A copy holding new references to the same objects.
    pub(crate) fn clone_ref(&self, _py: Python<'_>) -> Memo {
        let mut m = Memo::default();
        m.grow(self.used);
        for (k, i) in self.entries() {
            m.set_ptr(k as *mut ffi::PyObject, i);
        }
        m.next = m.used;
        m
    }

    /// `PicklerMemoProxy.copy()`: `{id(obj): (index, obj)}`.
    pub(crate) fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        for (k, i) in self.entries() {
            // SAFETY: the table holds a reference to `k`, so it is a live object.
            let o = unsafe { Bound::from_borrowed_ptr(py, k as *mut ffi::PyObject) };
            d.set_item(k, PyTuple::new(py, [i.into_pyobject(py)?.into_any(), o])?)?;
        }
        Ok(d)
    }

    /// A memo built from a `{key: (index, obj)}` dict (`Pickler.memo = {...}`).
    pub(crate) fn from_dict(d: &Bound<'_, PyDict>) -> PyResult<Memo> {
        let mut memo = Memo::default();
        for (_, value) in crate::pyutil::dict_items(d) {
            let t = match value.cast::<PyTuple>() {
                Ok(t) if t.len() == 2 => t,
                _ => {
                    return Err(pyo3::exceptions::PyTypeError::new_err(
                        "'memo' values must be 2-item tuples",
                    ))
                }
            };
            // `PyLong_AsSsize_t`, as C reads it: an int, never `__index__` (Python code that
            // could change the dict being walked)
            let idx = t.get_item(0)?;
            if !idx.is_instance_of::<pyo3::types::PyInt>() {
                return Err(pyo3::exceptions::PyTypeError::new_err(
                    "an integer is required",
                ));
            }
            let idx: isize = idx.extract()?;
            memo.set(&t.get_item(1)?, idx);
        }
        Ok(memo)
    }

    /// Visit every memoized object (GC support).
    pub(crate) fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        for (k, _) in self.entries() {
            // SAFETY: the table holds a reference to `k`, so it is a live object. The `Py` is
            // built without taking a reference and never dropped (`ManuallyDrop`), so the
            // reference counts are untouched, as `tp_traverse` requires; the GC calls
            // `tp_traverse` with the GIL held.
            let o = std::mem::ManuallyDrop::new(unsafe {
                Bound::<PyAny>::from_owned_ptr(Python::assume_attached(), k as *mut ffi::PyObject)
                    .unbind()
            });
            visit.call(&*o)?;
        }
        Ok(())
    }
}

impl Drop for Memo {
    fn drop(&mut self) {
        self.clear();
    }
}
