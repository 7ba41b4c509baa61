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

/// The bytes of `[p, p + n)`, 2 <= n <= 32, as four words that cover every byte (the last
/// one overlapping the others), so that equal words mean equal bytes for equal `n`; unused
/// words are 0.
#[derive(Clone, Copy)]
struct Words(u64, u64, u64, u64);

impl Words {
    /// # Safety
    /// `p` must be valid for reading `n` bytes, 2 <= n <= 32.
    #[inline(always)]
    unsafe fn read(p: *const u8, n: usize) -> Words {
        // SAFETY: every read lies inside `[p, p + n)` (the caller's contract), unaligned reads
        // are allowed by `read_unaligned`.
        unsafe {
            let rd8 = |at: usize| ptr::read_unaligned(p.add(at).cast::<u64>());
            if n >= 8 {
                let w1 = if n > 16 { rd8(8) } else { 0 };
                let w2 = if n > 24 { rd8(16) } else { 0 };
                Words(rd8(0), w1, w2, rd8(n - 8))
            } else if n >= 4 {
                let lo = ptr::read_unaligned(p.cast::<u32>()) as u64;
                let hi = ptr::read_unaligned(p.add(n - 4).cast::<u32>()) as u64;
                Words(lo | hi << 32, 0, 0, 0)
            } else {
                let lo = ptr::read_unaligned(p.cast::<u16>()) as u64;
                let hi = ptr::read_unaligned(p.add(n - 2).cast::<u16>()) as u64;
                Words(lo | hi << 16, 0, 0, 0)
            }
        }
    }

    /// Write the `n` bytes the words were read from to `p` (the inverse of [`read`]).
    ///
    /// # Safety
    /// `p` must be valid for writing `n` bytes; `self` was read with the same `n`.
    #[inline(always)]
    unsafe fn write(self, p: *mut u8, n: usize) {
        // SAFETY: every write lies inside `[p, p + n)` (the caller's contract); overlapping
        // writes store the same bytes.
        unsafe {
            if n >= 8 {
                ptr::write_unaligned(p.cast::<u64>(), self.0);
                if n > 16 {
                    ptr::write_unaligned(p.add(8).cast::<u64>(), self.1);
                }
                if n > 24 {
                    ptr::write_unaligned(p.add(16).cast::<u64>(), self.2);
                }
                ptr::write_unaligned(p.add(n - 8).cast::<u64>(), self.3);
            } else if n >= 4 {
                ptr::write_unaligned(p.cast::<u32>(), self.0 as u32);
                ptr::write_unaligned(p.add(n - 4).cast::<u32>(), (self.0 >> 32) as u32);
            } else {
                ptr::write_unaligned(p.cast::<u16>(), self.0 as u16);
                ptr::write_unaligned(p.add(n - 2).cast::<u16>(), (self.0 >> 16) as u16);
            }
        }
    }

    #[inline(always)]
    fn is_ascii(self) -> bool {
        (self.0 | self.1 | self.2 | self.3) & 0x8080_8080_8080_8080 == 0
    }

    #[inline(always)]
    fn same(self, o: Words) -> bool {
        ((self.0 ^ o.0) | (self.1 ^ o.1) | (self.2 ^ o.2) | (self.3 ^ o.3)) == 0
    }

    /// The slot of these bytes.
    #[inline(always)]
    fn slot(self, n: usize) -> usize {
        let h = (self.0 ^ self.1.rotate_left(17) ^ self.2.rotate_left(34) ^ self.3.rotate_left(51))
            .wrapping_add(n as u64)
            .wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        (h >> 52) as usize & (SLOTS - 1)
    }
}

/// What [`get_or_create`] found.
pub(crate) enum Got {
    /// The bytes are not ASCII: decode them otherwise.
    NotAscii,
    /// A new reference to the string, or NULL with an exception set.
    Str(*mut ffi::PyObject),
}

/// The `str` of `data` (2..=[`MAX_LEN`] bytes) if it is ASCII.
#[inline(always)]
pub(crate) fn get_or_create(_py: Python<'_>, data: &[u8]) -> Got {
    let n = data.len();
    debug_assert!((2..=MAX_LEN).contains(&n));
    // SAFETY: `data` is valid for `n` bytes, 2 <= n <= 32.
    let w = unsafe { Words::read(data.as_ptr(), n) };
    if !w.is_ascii() {
        return Got::NotAscii;
    }
    // SAFETY: the GIL is held (`_py`), which serializes access (see `AdaptCell`); the reference
    // is not kept past this function, which calls nothing that reaches the state.
    let adapt = unsafe { &mut *ADAPT.0.get() };
    if adapt.skip > 0 {
        adapt.skip -= 1;
        // SAFETY: `w` was read from `n` ASCII bytes.
        return Got::Str(unsafe { new_from_words(w, n) });
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
    // SAFETY: the GIL is held (`_py`), which serializes access to the slots (see `Slots`); the
    // slot index is in bounds (masked).
    let slot = unsafe { (*CACHE.0.get()).as_mut_ptr().add(w.slot(n)) };
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
            && Words::read(ffi::PyUnicode_DATA(cached).cast::<u8>(), n).same(w)
        {
            adapt.hits += 1;
            ffi::Py_INCREF(cached);
            return Got::Str(cached);
        }
        Got::Str(create(w, n, slot))
    }
}

/// A new compact ASCII `str` of `n` bytes read as `w`, or NULL with an exception set.
///
/// # Safety
/// The GIL is held; `w` was read from `n` ASCII bytes, 2 <= n <= 32.
#[inline(always)]
unsafe fn new_from_words(w: Words, n: usize) -> *mut ffi::PyObject {
    // SAFETY: PyUnicode_New(n, 127) returns a new compact ASCII string of `n` characters (NUL
    // terminator written) or NULL. The data of a compact ASCII string starts right after its
    // `PyASCIIObject` header (what `PyUnicode_DATA` computes after testing the compact and
    // ASCII flags, which this string is known to have); its `n` bytes are filled with the
    // ASCII bytes of `w` before anyone can see it.
    unsafe {
        let s = ffi::PyUnicode_New(n as ffi::Py_ssize_t, 127);
        if !s.is_null() {
            let data = s.cast::<ffi::PyASCIIObject>().add(1).cast::<u8>();
            debug_assert_eq!(data, ffi::PyUnicode_DATA(s).cast::<u8>());
            w.write(data, n);
        }
        s
    }
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

/// A miss: a new string, which also takes the slot (releasing the string it held).
///
/// # Safety
/// As [`new_from_words`]; `slot` is a slot of the cache.
#[inline(never)]
unsafe fn create(w: Words, n: usize, slot: *mut *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: the caller's contract.
    let s = unsafe { new_from_words(w, n) };
    if s.is_null() {
        return s;
    }
    // SAFETY: `slot` is in bounds and owned by the cache (GIL held: `create` is only called by
    // `get_or_create`). The new string gets one extra reference for the slot; the evicted
    // string's reference is released, which frees at most an exact `str` (no Python code runs).
    unsafe {
        ffi::Py_INCREF(s);
        let old = std::mem::replace(&mut *slot, s);
        if !old.is_null() {
            ffi::Py_DECREF(old);
        }
    }
    s
}
