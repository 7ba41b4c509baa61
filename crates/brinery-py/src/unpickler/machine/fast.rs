//! The fast loop: the operations that make up nearly every pickle (scalars, strings, containers,
//! the memo, marks, frames), run straight from the input bytes without building an [`Op`].
//!
//! It is an optimisation of the general path and nothing else: every operation it runs has the
//! same effect as [`Machine::step`] would have, and it hands over (returns without consuming the
//! operation) whenever anything is unusual: an opcode it does not know, an argument not complete
//! in the bytes at hand, a missing mark or memo entry, a container that is not an exact
//! `list`/`dict`. The general path then decodes the operation again and raises exactly what
//! `_pickle.c` raises.
//!
//! Under a policy (`Unpickler(..., policy=)`, `brinery.safe_loads`) it runs too: none of its
//! operations resolves or calls anything, and the machine runs it only while the guard has
//! nothing to check in them (`Guard::fast_loop_ok`: no `getattr` on the stack, no global or
//! shared object that is an exact `list`/`dict`). A repeated PROTO, and a BINGET fetching a
//! `getattr`, are then handed over, for the guard to see (the first PROTO is noted with the
//! guard, `Guard::first_proto`).
//!
//! [`Op`]: brinery::decode::Op

use std::cell::UnsafeCell;
use std::ptr;

use brinery::opcode::Opcode;
use pyo3::ffi;
use pyo3::prelude::*;

use super::super::strcache;
use super::{long_from_le, Machine};

// The stack is moved into tuples and lists as raw object pointers.
const _: () = assert!(
    std::mem::size_of::<Bound<'static, PyAny>>() == std::mem::size_of::<*mut ffi::PyObject>()
);

const MARK: u8 = Opcode::MARK.byte();
const STOP: u8 = Opcode::STOP.byte();
const NONE: u8 = Opcode::NONE.byte();
const NEWTRUE: u8 = Opcode::NEWTRUE.byte();
const NEWFALSE: u8 = Opcode::NEWFALSE.byte();
const BININT: u8 = Opcode::BININT.byte();
const BININT1: u8 = Opcode::BININT1.byte();
const BININT2: u8 = Opcode::BININT2.byte();
const LONG1: u8 = Opcode::LONG1.byte();
const BINFLOAT: u8 = Opcode::BINFLOAT.byte();
const SHORT_BINUNICODE: u8 = Opcode::SHORT_BINUNICODE.byte();
const BINUNICODE: u8 = Opcode::BINUNICODE.byte();
const SHORT_BINBYTES: u8 = Opcode::SHORT_BINBYTES.byte();
const BINBYTES: u8 = Opcode::BINBYTES.byte();
const EMPTY_TUPLE: u8 = Opcode::EMPTY_TUPLE.byte();
const EMPTY_LIST: u8 = Opcode::EMPTY_LIST.byte();
const EMPTY_DICT: u8 = Opcode::EMPTY_DICT.byte();
const TUPLE: u8 = Opcode::TUPLE.byte();
const TUPLE1: u8 = Opcode::TUPLE1.byte();
const TUPLE2: u8 = Opcode::TUPLE2.byte();
const TUPLE3: u8 = Opcode::TUPLE3.byte();
const APPEND: u8 = Opcode::APPEND.byte();
const APPENDS: u8 = Opcode::APPENDS.byte();
const SETITEM: u8 = Opcode::SETITEM.byte();
const SETITEMS: u8 = Opcode::SETITEMS.byte();
const MEMOIZE: u8 = Opcode::MEMOIZE.byte();
const BINPUT: u8 = Opcode::BINPUT.byte();
const LONG_BINPUT: u8 = Opcode::LONG_BINPUT.byte();
const BINGET: u8 = Opcode::BINGET.byte();
const LONG_BINGET: u8 = Opcode::LONG_BINGET.byte();
const FRAME: u8 = Opcode::FRAME.byte();
const PROTO: u8 = Opcode::PROTO.byte();

/// The ints 0..=255 as `PyLong_FromLong` returns them (CPython's cached small ints), so that
/// `BININT1` takes a reference instead of calling into the interpreter.
struct SmallInts(UnsafeCell<[*mut ffi::PyObject; 256]>);

// SAFETY: only touched by `small_int`, which requires the GIL (a `Python` token); this crate is
// built for the GIL-enabled CPython 3.11 ABI, where holding the GIL serializes every access.
unsafe impl Sync for SmallInts {}

static SMALL_INTS: SmallInts = SmallInts(UnsafeCell::new([ptr::null_mut(); 256]));

/// A new reference to the int `v` (NULL with an exception set if it could not be made).
#[inline(always)]
fn small_int(_py: Python<'_>, v: u8) -> *mut ffi::PyObject {
    // SAFETY: the GIL is held (`_py`), which serializes access to the table; the index is in
    // bounds (a `u8`). A filled entry holds a reference of the table's own to the int
    // `PyLong_FromLong(v)` returned (CPython's small-int singleton: the same object it would
    // return now), so it is alive; the caller gets a new reference.
    unsafe {
        let slot = (*SMALL_INTS.0.get()).as_mut_ptr().add(v as usize);
        let cached = *slot;
        if !cached.is_null() {
            ffi::Py_INCREF(cached);
            return cached;
        }
        let obj = ffi::PyLong_FromLong(v as _);
        if !obj.is_null() {
            ffi::Py_INCREF(obj);
            *slot = obj;
        }
        obj
    }
}

#[inline(always)]
fn u32_at(data: &[u8], at: usize) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&data[at..at + 4]);
    u32::from_le_bytes(raw)
}

impl<'py> Machine<'py, '_, '_> {
    /// Push a new reference returned by the C API (NULL: raise its exception).
    #[inline(always)]
    fn push_new(&mut self, obj: *mut ffi::PyObject) -> PyResult<()> {
        // SAFETY: `obj` is a new reference or NULL with an exception set, as returned by the C
        // API function the caller just called with the GIL held.
        let obj = unsafe { Bound::from_owned_ptr_or_err(self.py, obj) }?;
        self.stack.push(obj);
        Ok(())
    }

    /// Push a borrowed reference to an immortal-for-our-purposes singleton.
    #[inline(always)]
    fn push_borrowed(&mut self, obj: *mut ffi::PyObject) {
        // SAFETY: `obj` is a live object (None, True, False); a new strong reference is taken.
        self.stack
            .push(unsafe { Bound::from_borrowed_ptr(self.py, obj) });
    }

    /// The fence after popping the topmost mark (C's fence once `marker()` has run).
    #[inline(always)]
    fn fence_below_top_mark(&self) -> usize {
        let n = self.marks.len();
        if n >= 2 {
            self.marks[n - 2]
        } else {
            0
        }
    }

    /// Move `stack[start..]` into a new tuple.
    #[inline]
    fn tuple_from_tail(&mut self, start: usize) -> PyResult<()> {
        let n = self.stack.len() - start;
        // SAFETY: PyTuple_New returns a new tuple of `n` NULL slots or NULL with an exception.
        let tuple = unsafe { ffi::PyTuple_New(n as ffi::Py_ssize_t) };
        if tuple.is_null() {
            return Err(PyErr::fetch(self.py));
        }
        // SAFETY: the stack holds `n` owned references from `start`; each is moved into the
        // fresh tuple (PyTuple_SET_ITEM steals), and the stack forgets them with `set_len`, so
        // every reference keeps exactly one owner. `Bound` has the layout of an object pointer
        // (asserted above). No Python code runs in between.
        unsafe {
            let src = self.stack.as_ptr().add(start) as *const *mut ffi::PyObject;
            for k in 0..n {
                ffi::PyTuple_SET_ITEM(tuple, k as ffi::Py_ssize_t, *src.add(k));
            }
            self.stack.set_len(start);
        }
        self.push_new(tuple)
    }

    /// Move `stack[start..]` to the end of the exact list at `stack[start - 1]`.
    #[inline]
    fn extend_list_from_tail(&mut self, start: usize) -> PyResult<()> {
        let k = self.stack.len() - start;
        let list = self.stack[start - 1].as_ptr();
        // SAFETY: `list` is an exact `list` (checked by the caller), so its layout is
        // PyListObject and its item array is managed with PyMem_Realloc/PyMem_Free, exactly as
        // list_resize does. The array grows (with list_resize's over-allocation rule) before the
        // `k` owned references of the stack tail are moved into it; the stack then forgets them
        // (`set_len`). A list that `list.sort` is sorting (its key function may be running this
        // load) has its array detached: NULL items, size 0 and `allocated == -1`, which is
        // negative and so always takes the grow branch, as in list_resize (the sort then finds
        // `allocated != -1`, raises "list modified during sort" and frees the new array). No
        // Python code runs and no object is allocated in between, so nothing can observe the
        // list in an intermediate state.
        unsafe {
            let l = list as *mut ffi::PyListObject;
            let n = (*l).ob_base.ob_size as usize;
            let size = n + k;
            let allocated = (*l).allocated;
            if allocated < 0 || size > allocated as usize {
                let mut alloc = (size + (size >> 3) + 6) & !3;
                if k > alloc - size {
                    alloc = (size + 3) & !3;
                }
                let Some(bytes) = alloc
                    .checked_mul(std::mem::size_of::<*mut ffi::PyObject>())
                    .filter(|&b| b <= isize::MAX as usize)
                else {
                    return Err(pyo3::exceptions::PyMemoryError::new_err(()));
                };
                let items = ffi::PyMem_Realloc((*l).ob_item.cast(), bytes);
                if items.is_null() {
                    return Err(pyo3::exceptions::PyMemoryError::new_err(()));
                }
                (*l).ob_item = items.cast();
                (*l).allocated = alloc as ffi::Py_ssize_t;
            }
            let src = self.stack.as_ptr().add(start) as *const *mut ffi::PyObject;
            ptr::copy_nonoverlapping(src, (*l).ob_item.add(n), k);
            (*l).ob_base.ob_size = size as ffi::Py_ssize_t;
            self.stack.set_len(start);
        }
        Ok(())
    }

    /// Set `stack[start..]` (key, value pairs) into the exact dict at `stack[start - 1]`.
    #[inline]
    fn set_dict_items_from_tail(&mut self, start: usize) -> PyResult<()> {
        let dict = self.stack[start - 1].as_ptr();
        let mut i = start;
        let len = self.stack.len();
        while i < len {
            // SAFETY: `dict` is an exact dict kept alive by the stack; key and value are live
            // objects owned by the stack; PyDict_SetItem takes its own references.
            let rc = unsafe {
                ffi::PyDict_SetItem(dict, self.stack[i].as_ptr(), self.stack[i + 1].as_ptr())
            };
            if rc < 0 {
                return Err(PyErr::fetch(self.py));
            }
            i += 2;
        }
        self.stack.truncate(start);
        Ok(())
    }

    /// `MEMOIZE` of the top of the stack, which lies above the fence.
    #[inline(always)]
    fn memoize_top(&mut self) {
        if self.plain_memo {
            let value = self.stack[self.stack.len() - 1].clone().unbind();
            if let Err(value) = self.own_memo.push_next(value) {
                self.memo_store(None, value);
            }
        } else if !self.memo_skips(None) {
            let value = self.stack[self.stack.len() - 1].clone().unbind();
            self.memo_store(None, value);
        }
    }

    /// The `MEMOIZE` that CPython writes after every `str`, run right after the string was
    /// pushed (`data[*pos]`), without going round the loop; anything else is left to it.
    #[inline(always)]
    fn memoize_next(&mut self, data: &[u8], pos: &mut usize) {
        if data.get(*pos) == Some(&MEMOIZE) && self.stack.len() > self.fence() {
            *pos += 1;
            self.memoize_top();
        }
    }

    /// The `MEMOIZE` at `data[p]` of the string just pushed, then the run of memoized short
    /// ASCII strings of `n` bytes each that follows it (a column of fixed-width labels:
    /// `SHORT_BINUNICODE n <text> MEMOIZE`, again and again).
    /// Each is created and memoized exactly as the `SHORT_BINUNICODE` and `MEMOIZE` arms would,
    /// without a turn of the loop (and its dispatch and checks) per opcode. Stops at anything
    /// else: another length, a string without `MEMOIZE`, a text that is not ASCII, the end of
    /// the bytes at hand. Returns the position of the next operation (after a failed one: it is
    /// consumed, as in C) and the outcome.
    ///
    /// Out of line, and given the position by value, so that it costs the fast loop little for
    /// pickles without such runs (pyperformance's `unpickle`: 2% more instructions; taking
    /// `pos` by reference, or testing the opcode of the string before, cost 4-5%).
    #[inline(never)]
    fn same_length_strings(
        &mut self,
        data: &[u8],
        mut p: usize,
        n: usize,
    ) -> (usize, PyResult<()>) {
        debug_assert!((2..=strcache::MAX_LEN).contains(&n));
        debug_assert_eq!(data[p], MEMOIZE);
        // The MEMOIZE of the string before the run, which was pushed last.
        p += 1;
        self.memoize_top();
        let stride = n + 3;
        loop {
            let Some(op) = data.get(p..p + stride) else {
                return (p, Ok(()));
            };
            if op[0] != SHORT_BINUNICODE || op[1] as usize != n || op[stride - 1] != MEMOIZE {
                return (p, Ok(()));
            }
            let strcache::Got::Str(s) = strcache::get_or_create(self.py, &op[2..2 + n]) else {
                return (p, Ok(()));
            };
            if let Err(e) = self.push_new(s) {
                // The string's operation is consumed, its MEMOIZE not.
                return (p + stride - 1, Err(e));
            }
            // Its MEMOIZE: the string just pushed lies above the fence.
            p += stride;
            self.memoize_top();
        }
    }

    /// Run operations from `data[*pos..]` until one needs the general path (`Ok(false)`) or
    /// `STOP` is consumed (`Ok(true)`). `*pos` always points after the last consumed operation;
    /// an operation that fails has been consumed, as in C.
    pub(super) fn run_fast(&mut self, data: &[u8], pos: &mut usize) -> PyResult<bool> {
        let end = data.len();
        loop {
            let p = *pos;
            let Some(&byte) = data.get(p) else {
                return Ok(false);
            };
            let a = p + 1;
            // A fixed-size argument: handed over unless it is all here.
            macro_rules! need {
                ($n:expr) => {
                    if a + $n > end {
                        return Ok(false);
                    }
                };
            }
            match byte {
                BININT1 => {
                    need!(1);
                    *pos = a + 1;
                    self.push_new(small_int(self.py, data[a]))?;
                }
                BININT2 => {
                    need!(2);
                    *pos = a + 2;
                    let v = u16::from_le_bytes([data[a], data[a + 1]]);
                    // SAFETY: as above.
                    self.push_new(unsafe { ffi::PyLong_FromLong(v as _) })?;
                }
                BININT => {
                    need!(4);
                    *pos = a + 4;
                    let v = u32_at(data, a) as i32;
                    // SAFETY: as above.
                    self.push_new(unsafe { ffi::PyLong_FromLong(v as _) })?;
                }
                BINFLOAT => {
                    need!(8);
                    *pos = a + 8;
                    let mut raw = [0u8; 8];
                    raw.copy_from_slice(&data[a..a + 8]);
                    // SAFETY: as above.
                    self.push_new(unsafe { ffi::PyFloat_FromDouble(f64::from_be_bytes(raw)) })?;
                }
                LONG1 => {
                    need!(1);
                    let n = data[a] as usize;
                    let start = a + 1;
                    if start + n > end {
                        return Ok(false);
                    }
                    *pos = start + n;
                    let v = long_from_le(self.py, &data[start..start + n])?;
                    self.stack.push(v);
                }
                SHORT_BINUNICODE | BINUNICODE => {
                    let (n, start) = if byte == SHORT_BINUNICODE {
                        need!(1);
                        (data[a] as usize, a + 1)
                    } else {
                        need!(4);
                        (u32_at(data, a) as usize, a + 4)
                    };
                    if n > end - start {
                        return Ok(false);
                    }
                    *pos = start + n;
                    let text = &data[start..start + n];
                    if (2..=strcache::MAX_LEN).contains(&n) {
                        // The common short key or value: straight from the recycler, as a raw
                        // pointer (no `PyResult` moved around per string).
                        if let strcache::Got::Str(s) = strcache::get_or_create(self.py, text) {
                            self.push_new(s)?;
                            let p = *pos;
                            if data.get(p..p + 3) == Some(&[MEMOIZE, SHORT_BINUNICODE, n as u8]) {
                                // A string of the same length follows this one's MEMOIZE.
                                let (next, result) = self.same_length_strings(data, p, n);
                                *pos = next;
                                result?;
                                continue;
                            }
                            self.memoize_next(data, pos);
                            continue;
                        }
                    }
                    let s = unicode_from_utf8(self.py, text)?;
                    self.stack.push(s);
                    self.memoize_next(data, pos);
                }
                SHORT_BINBYTES | BINBYTES => {
                    let (n, start) = if byte == SHORT_BINBYTES {
                        need!(1);
                        (data[a] as usize, a + 1)
                    } else {
                        need!(4);
                        (u32_at(data, a) as usize, a + 4)
                    };
                    // Strictly inside: an empty payload at the very end is C's truncation.
                    if n >= end - start {
                        return Ok(false);
                    }
                    *pos = start + n;
                    // SAFETY: the slice is valid for `n` bytes and the GIL is held; new
                    // reference or NULL.
                    self.push_new(unsafe {
                        crate::unpickler::payload::new_bytes(&data[start..start + n])
                    })?;
                }
                NONE => {
                    *pos = a;
                    // SAFETY: Py_None is a live singleton.
                    self.push_borrowed(unsafe { ffi::Py_None() });
                }
                NEWTRUE => {
                    *pos = a;
                    // SAFETY: Py_True is a live singleton.
                    self.push_borrowed(unsafe { ffi::Py_True() });
                }
                NEWFALSE => {
                    *pos = a;
                    // SAFETY: Py_False is a live singleton.
                    self.push_borrowed(unsafe { ffi::Py_False() });
                }
                EMPTY_LIST => {
                    *pos = a;
                    // SAFETY: plain constructor; new reference or NULL.
                    self.push_new(unsafe { ffi::PyList_New(0) })?;
                }
                EMPTY_DICT => {
                    *pos = a;
                    // SAFETY: plain constructor; new reference or NULL.
                    self.push_new(unsafe { ffi::PyDict_New() })?;
                }
                EMPTY_TUPLE => {
                    *pos = a;
                    // SAFETY: plain constructor (the empty tuple singleton); new reference.
                    self.push_new(unsafe { ffi::PyTuple_New(0) })?;
                }
                MARK => {
                    *pos = a;
                    self.marks.push(self.stack.len());
                }
                TUPLE1 | TUPLE2 | TUPLE3 => {
                    let n = (byte - TUPLE1 + 1) as usize;
                    let len = self.stack.len();
                    if len < n || len - n < self.fence() {
                        return Ok(false);
                    }
                    *pos = a;
                    self.tuple_from_tail(len - n)?;
                }
                TUPLE => {
                    let Some(&i) = self.marks.last() else {
                        return Ok(false);
                    };
                    if i > self.stack.len() || i < self.fence_below_top_mark() {
                        return Ok(false);
                    }
                    *pos = a;
                    self.marks.pop();
                    self.tuple_from_tail(i)?;
                }
                APPEND | APPENDS | SETITEM | SETITEMS => {
                    let len = self.stack.len();
                    let (x, fence) = match byte {
                        APPEND | SETITEM => {
                            let n = if byte == APPEND { 1 } else { 2 };
                            if len < n {
                                return Ok(false);
                            }
                            (len - n, self.fence())
                        }
                        _ => match self.marks.last() {
                            Some(&i) => (i, self.fence_below_top_mark()),
                            None => return Ok(false),
                        },
                    };
                    if x > len || x <= fence {
                        return Ok(false);
                    }
                    let target = self.stack[x - 1].as_ptr();
                    let is_list = byte == APPEND || byte == APPENDS;
                    // SAFETY: `target` is a live object on the stack; these read its type.
                    let exact = unsafe {
                        if is_list {
                            ffi::PyList_CheckExact(target)
                        } else {
                            ffi::PyDict_CheckExact(target)
                        }
                    } != 0;
                    if !exact || (!is_list && (len - x) % 2 != 0) {
                        return Ok(false);
                    }
                    *pos = a;
                    if byte == APPENDS || byte == SETITEMS {
                        self.marks.pop();
                    }
                    if len > x {
                        if is_list {
                            self.extend_list_from_tail(x)?;
                        } else {
                            self.set_dict_items_from_tail(x)?;
                        }
                    }
                }
                MEMOIZE if self.plain_memo => {
                    // The common case: a memo of the load's own, no filter, a free next slot.
                    if self.stack.is_empty() || self.stack.len() <= self.fence() {
                        return Ok(false);
                    }
                    *pos = a;
                    self.memoize_top();
                }
                MEMOIZE | BINPUT | LONG_BINPUT => {
                    need!(match byte {
                        MEMOIZE => 0,
                        BINPUT => 1,
                        _ => 4,
                    });
                    if self.stack.is_empty() || self.stack.len() <= self.fence() {
                        return Ok(false);
                    }
                    let idx = match byte {
                        MEMOIZE => {
                            *pos = a;
                            None
                        }
                        BINPUT => {
                            *pos = a + 1;
                            Some(data[a] as usize)
                        }
                        _ => {
                            *pos = a + 4;
                            Some(u32_at(data, a) as usize)
                        }
                    };
                    if !self.memo_skips(idx) {
                        let value = self.stack[self.stack.len() - 1].clone().unbind();
                        self.memo_store(idx, value);
                    }
                }
                BINGET | LONG_BINGET => {
                    let (idx, next) = if byte == BINGET {
                        need!(1);
                        (data[a] as usize, a + 1)
                    } else {
                        need!(4);
                        (u32_at(data, a) as usize, a + 4)
                    };
                    let Some(value) = self.memo_lookup(idx) else {
                        return Ok(false);
                    };
                    if self.cfg.guard.is_some_and(|g| g.is_getattr(value.as_ptr())) {
                        return Ok(false); // the guard follows where a `getattr` goes
                    }
                    *pos = next;
                    self.stack.push(value);
                }
                FRAME => {
                    need!(8);
                    let mut raw = [0u8; 8];
                    raw.copy_from_slice(&data[a..a + 8]);
                    let len = u64::from_le_bytes(raw);
                    if len > (end - (a + 8)) as u64 {
                        return Ok(false);
                    }
                    *pos = a + 8;
                }
                PROTO => {
                    need!(1);
                    let proto = data[a];
                    if proto as i64 > brinery::HIGHEST_PROTOCOL as i64 {
                        return Ok(false);
                    }
                    // a policy's guard refuses a repeated PROTO: the first is noted here, a
                    // repeated one is handed over (and refused)
                    if self.cfg.guard.is_some_and(|g| !g.first_proto()) {
                        return Ok(false);
                    }
                    *pos = a + 1;
                    self.set_proto(proto);
                }
                STOP => {
                    *pos = a;
                    return Ok(true);
                }
                _ => return Ok(false),
            }
        }
    }
}

/// A `str` from UTF-8 bytes, equal to what `PyUnicode_DecodeUTF8(data, "surrogatepass")`
/// returns: short ASCII text comes from the [`strcache`], longer ASCII text is copied straight
/// into a new compact string.
#[inline]
pub(super) fn unicode_from_utf8<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    if (2..=strcache::MAX_LEN).contains(&data.len()) {
        if let strcache::Got::Str(s) = strcache::get_or_create(py, data) {
            // SAFETY: a new reference, or NULL with an exception set.
            return unsafe { Bound::from_owned_ptr_or_err(py, s) };
        }
    } else if data.len() > strcache::MAX_LEN && data.is_ascii() {
        return strcache::new_ascii(py, data);
    }
    super::decode_utf8(py, data, c"surrogatepass")
}
