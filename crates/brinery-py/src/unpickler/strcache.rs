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
//!
//! The cache adapts: a stream of strings that never repeat (a column of unique labels) would pay
//! a lookup that misses, and so touches the evicted string's cold header, for every string. The
//! hit rate is measured over windows of [`WINDOW`] lookups; a window with almost no hits turns the
//! cache off for the next strings (longer after each further poor window), and every load starts
//! with it on again ([`new_load`]).

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

/// Lookups per measurement window.
const WINDOW: u32 = 64;
/// A window with fewer hits than this turns the cache off for a while.
const MIN_HITS: u32 = WINDOW / 8;
/// Strings created without the cache after the first poor window; doubled after each further
/// poor window in a row, up to [`MAX_SKIP`].
const FIRST_SKIP: u32 = 1024;
const MAX_SKIP: u32 = 1 << 16;

/// The hit-rate measurement (see the module docs).
struct Adapt {
    /// Strings still to be created without the cache.
    skip: u32,
    /// Lookups and hits in the current window.
    lookups: u32,
    hits: u32,
    /// The next `skip` after a poor window.
    backoff: u32,
}

struct AdaptCell(UnsafeCell<Adapt>);

// SAFETY: as for `Slots`: only touched with the GIL held (`get_or_create`, `new_load`, both
// taking a `Python` token), which serializes every access.
unsafe impl Sync for AdaptCell {}

static ADAPT: AdaptCell = AdaptCell(UnsafeCell::new(Adapt {
    skip: 0,
    lookups: 0,
    hits: 0,
    backoff: FIRST_SKIP,
}));

/// Start of a load: the cache is on again and the measurement starts afresh.
#[inline]
pub(crate) fn new_load(_py: Python<'_>) {
    // SAFETY: the GIL is held (`_py`), which serializes access (see `AdaptCell`); no reference
    // to the state outlives this statement.
    unsafe {
        *ADAPT.0.get() = Adapt {
            skip: 0,
            lookups: 0,
            hits: 0,
            backoff: FIRST_SKIP,
        };
    }
}

/// The bytes of `[p, p + n)`, 2 <= n <= 32, as up to four words that cover every byte (the
/// last word overlaps the previous one), so that equal words mean equal bytes for equal `n`.
///
/// # Safety
/// `p` must be valid for reading `n` bytes.
#[inline(always)]
unsafe fn words(p: *const u8, n: usize) -> [u64; 4] {
    // SAFETY: every read lies inside `[p, p + n)` (the caller's contract), unaligned reads
    // are allowed by `read_unaligned`.
    unsafe {
        let mut w = [0u64; 4];
        if n >= 8 {
            let full = (n - 1) / 8;
            for (i, slot) in w.iter_mut().enumerate().take(full) {
                *slot = ptr::read_unaligned(p.add(8 * i).cast::<u64>());
            }
            w[full] = ptr::read_unaligned(p.add(n - 8).cast::<u64>());
        } else if n >= 4 {
            w[0] = ptr::read_unaligned(p.cast::<u32>()) as u64
                | (ptr::read_unaligned(p.add(n - 4).cast::<u32>()) as u64) << 32;
        } else {
            w[0] = ptr::read_unaligned(p.cast::<u16>()) as u64
                | (ptr::read_unaligned(p.add(n - 2).cast::<u16>()) as u64) << 16;
        }
        w
    }
}

/// The `str` of `data` (2..=[`MAX_LEN`] bytes) if it is ASCII, else `None`.
#[inline]
pub(crate) fn get_or_create<'py>(
    py: Python<'py>,
    data: &[u8],
) -> Option<PyResult<Bound<'py, PyAny>>> {
    let n = data.len();
    debug_assert!((2..=MAX_LEN).contains(&n));
    // SAFETY: `data` is valid for `n` bytes.
    let w = unsafe { words(data.as_ptr(), n) };
    if (w[0] | w[1] | w[2] | w[3]) & 0x8080_8080_8080_8080 != 0 {
        return None;
    }
    // SAFETY: the GIL is held (`py`), which serializes access (see `AdaptCell`); the reference
    // is not kept past this function, which calls nothing that reaches the state.
    let adapt = unsafe { &mut *ADAPT.0.get() };
    if adapt.skip > 0 {
        adapt.skip -= 1;
        return Some(new_ascii(py, data));
    }
    adapt.lookups += 1;
    if adapt.lookups == WINDOW {
        if adapt.hits < MIN_HITS {
            adapt.skip = adapt.backoff;
            adapt.backoff = (adapt.backoff * 2).min(MAX_SKIP);
        } else {
            adapt.backoff = FIRST_SKIP;
        }
        adapt.lookups = 0;
        adapt.hits = 0;
    }
    let mut h = n as u64;
    for x in w {
        h = (h.rotate_left(5) ^ x).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    let i = (h >> 52) as usize & (SLOTS - 1);
    // SAFETY: the GIL is held (`py`), which serializes access to the slots (see `Slots`); the
    // slot index is in bounds (masked).
    let slot = unsafe { (*CACHE.0.get()).as_mut_ptr().add(i) };
    // SAFETY: a non-null slot holds a strong reference to an exact compact ASCII `str` made by
    // this function, so its header, length and data (`n` bytes when the lengths match) can be
    // read directly. (Someone may have interned it meanwhile: an interned string is never
    // handed out again.)
    unsafe {
        let cached = *slot;
        if !cached.is_null()
            && ffi::Py_REFCNT(cached) == 1
            && ffi::PyUnicode_GET_LENGTH(cached) as usize == n
            && (*cached.cast::<ffi::PyASCIIObject>()).interned() == 0
            && words(ffi::PyUnicode_DATA(cached).cast::<u8>(), n) == w
        {
            adapt.hits += 1;
            return Some(Ok(Bound::from_borrowed_ptr(py, cached)));
        }
    }
    Some(create(py, data, slot))
}

/// A new compact ASCII `str` of `data`, which must be ASCII.
#[inline]
pub(crate) fn new_ascii<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    debug_assert!(data.is_ascii());
    // SAFETY: PyUnicode_New(n, 127) returns a new compact ASCII string of `n` characters (NUL
    // terminator written) or NULL; its data area is filled from `data` (ASCII, the caller's
    // contract) before anyone can see it.
    unsafe {
        let s = ffi::PyUnicode_New(data.len() as ffi::Py_ssize_t, 127);
        if s.is_null() {
            return Err(PyErr::fetch(py));
        }
        ptr::copy_nonoverlapping(
            data.as_ptr(),
            ffi::PyUnicode_DATA(s).cast::<u8>(),
            data.len(),
        );
        Ok(Bound::from_owned_ptr(py, s))
    }
}

#[inline(never)]
fn create<'py>(
    py: Python<'py>,
    data: &[u8],
    slot: *mut *mut ffi::PyObject,
) -> PyResult<Bound<'py, PyAny>> {
    let s = new_ascii(py, data)?.into_ptr();
    // SAFETY: `slot` is in bounds and owned by the cache (GIL held: `create` is only called by
    // `get_or_create`). The new string gets one
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
