//! A small recycler of short ASCII strings: dict keys, attribute names and other short texts
//! repeat from one pickle to the next, and a hit costs neither a new object nor (since the
//! recycled object keeps its hash) a new hash when the string becomes a dict key.
//!
//! Direct-mapped: the bytes pick one slot; a miss creates the string and puts it in the slot.
//! A hit hands out the slot's string only when the cache holds its only reference: nobody else
//! can see it, so handing it out is indistinguishable from creating an equal new string (object
//! identities, and so what `pickle.dumps` memoizes, stay exactly as with the stdlib; sharing one
//! object between two places would not). Strings are exact, compact, ASCII and immutable; the
//! cache keeps a reference to each, so CPython never treats a handed-out string as modifiable in
//! place (that needs a reference count of 1). At most `SLOTS` strings of at most `MAX_LEN`
//! characters are kept alive.

use std::cell::UnsafeCell;
use std::ptr;

use pyo3::ffi;
use pyo3::prelude::*;

const SLOTS: usize = 4096;
/// Longer strings are rarely repeated keys; they are created afresh.
pub(crate) const MAX_LEN: usize = 32;

struct Slots(UnsafeCell<[*mut ffi::PyObject; SLOTS]>);

// SAFETY: the slots are only touched by `get_or_create`, which requires the GIL (a `Python`
// token); this crate is built for the GIL-enabled CPython 3.11 ABI, where holding the GIL
// serializes every access. No Python code runs while the slots are borrowed (only object
// creation and the release of an evicted exact `str`, whose deallocation runs no Python code).
unsafe impl Sync for Slots {}

static CACHE: Slots = Slots(UnsafeCell::new([ptr::null_mut(); SLOTS]));

#[inline(always)]
fn slot_of(data: &[u8]) -> usize {
    // FxHash-style mixing of up to 32 bytes, 8 at a time.
    let mut h: u64 = data.len() as u64;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(c);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(raw)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut raw = [0u8; 8];
        raw[..rest.len()].copy_from_slice(rest);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(raw)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    (h >> 52) as usize & (SLOTS - 1)
}

/// The `str` of `data`, which must be ASCII and 2..=[`MAX_LEN`] bytes long.
#[inline]
pub(crate) fn get_or_create<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    debug_assert!(data.is_ascii() && data.len() <= MAX_LEN);
    let i = slot_of(data);
    // SAFETY: the GIL is held (`py`), which serializes access to the slots (see `Slots`); the
    // slot pointer is in bounds (`slot_of` masks it).
    let slot = unsafe { &mut *CACHE.0.get() }.as_mut_ptr().wrapping_add(i);
    // SAFETY: a non-null slot holds a strong reference to an exact compact ASCII `str` made by
    // this function, so its header, length and data can be read directly. (Someone may have
    // interned it meanwhile: an interned string is never handed out again.)
    unsafe {
        let cached = *slot;
        if !cached.is_null()
            && ffi::Py_REFCNT(cached) == 1
            && (*cached.cast::<ffi::PyASCIIObject>()).interned() == 0
            && ffi::PyUnicode_GET_LENGTH(cached) as usize == data.len()
            && std::slice::from_raw_parts(ffi::PyUnicode_DATA(cached).cast::<u8>(), data.len())
                == data
        {
            return Ok(Bound::from_borrowed_ptr(py, cached));
        }
    }
    // SAFETY: PyUnicode_New(n, 127) returns a new compact ASCII string of `n` characters (NUL
    // terminator written) or NULL; its data area is filled from `data` (ASCII) before anyone can
    // see it.
    let s = unsafe {
        let s = ffi::PyUnicode_New(data.len() as ffi::Py_ssize_t, 127);
        if s.is_null() {
            return Err(PyErr::fetch(py));
        }
        ptr::copy_nonoverlapping(
            data.as_ptr(),
            ffi::PyUnicode_DATA(s).cast::<u8>(),
            data.len(),
        );
        s
    };
    // SAFETY: the slot is in bounds and owned by the cache (GIL held). The new string gets one
    // extra reference for the slot; the evicted string's reference is released, which frees at
    // most an exact `str` (no Python code runs).
    unsafe {
        ffi::Py_INCREF(s);
        let old = std::mem::replace(&mut *slot, s);
        if !old.is_null() {
            ffi::Py_DECREF(old);
        }
        Ok(Bound::from_owned_ptr(py, s))
    }
}
