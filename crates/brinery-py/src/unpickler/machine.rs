//! The PyObject machine: runs decoded operations and builds real Python objects, with the
//! semantics of CPython 3.11's `Modules/_pickle.c` (`load_*` functions): a value stack split
//! from a mark stack, opcodes consuming only values above the topmost mark (the fence), `POP`
//! popping a mark when the fence is empty, `MEMOIZE` storing at the number of memo entries, the
//! same checks in the same order and the same exception types and messages.
//!
//! The machine is iterative: nesting costs heap (the stack vectors), never native stack. Native
//! recursion only happens inside Python code the pickle calls (`find_class`, `__setstate__`, ...).

use std::ffi::{c_char, c_int, c_long};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

use brinery::decode::{Arg, Op};
use brinery::opcode::Opcode;
use pyo3::exceptions::{PyAttributeError, PyEOFError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyBytes, PyDict, PyFloat, PyFrozenSet, PyIterator, PyList, PyMemoryView, PySet,
    PyString, PyTuple, PyType,
};

use super::input::{Fetched, FileInput, InputError, MemoryInput};
use super::memo::Memo;

mod fast;
use crate::errors::unpickling_error;
use crate::pyutil::{dict_items, type_name};

extern "C" {
    /// C's `strtol`, which `load_int` uses before falling back to `PyLong_FromString`.
    fn strtol(s: *const c_char, end: *mut *mut c_char, base: c_int) -> c_long;
    /// CPython's audit hook entry point (what `sys.audit` and `_pickle.c` call).
    fn PySys_Audit(event: *const c_char, format: *const c_char, ...) -> c_int;
}

/// Everything a load needs besides the input.
pub(crate) struct Config<'py, 'm> {
    /// The `Unpickler` object, when loading through one (`find_class` and `persistent_load` may
    /// be overridden); `None` for the module-level `load`/`loads`.
    pub(crate) unpickler: Option<Bound<'py, PyAny>>,
    /// Call `find_class` through Python (the object is a subclass instance).
    pub(crate) find_class_via_python: bool,
    pub(crate) fix_imports: bool,
    pub(crate) encoding: CText,
    pub(crate) errors: CText,
    /// `persistent_load`, and whether it is a function to call with the unpickler first.
    pub(crate) pers_func: Option<(Bound<'py, PyAny>, bool)>,
    /// The iterator over out-of-band buffers, if `buffers` was given.
    pub(crate) buffers: Option<Bound<'py, PyIterator>>,
    /// The Unpickler object's memo, shared with Python code (`unpickler.memo`) and locked per
    /// access; `None` for the module-level `load`/`loads`, whose memo is private to the load
    /// and owned by the machine (no locking).
    pub(crate) memo: Option<&'m Mutex<Memo>>,
    /// Where the Unpickler object keeps the protocol of the current load (read by its
    /// `find_class`).
    pub(crate) proto_cell: Option<&'m AtomicU8>,
    /// `Unpickler(..., policy=...)`: the safe-load rules, checked around every opcode.
    pub(crate) guard: Option<&'m super::policy::Guard>,
    /// The memo indices the stream ever fetches, as a bitmap from the scan before a safe load
    /// ([`brinery::scan::MemoUse::fetch_filter`]): stores to other indices are skipped (a
    /// MEMOIZE still counts its entry). Only for a load with its own memo, which nothing
    /// can read afterwards.
    pub(crate) memo_filter: Option<&'m [u64]>,
}

/// A C string option (`encoding`, `errors`): the defaults are static, so a load with default
/// options allocates nothing for them.
pub(crate) type CText = std::borrow::Cow<'static, std::ffi::CStr>;

/// The input of one load.
pub(crate) enum Input<'a, 'f> {
    Memory(MemoryInput<'a>),
    File(&'f mut FileInput),
}

struct Machine<'py, 'c, 'm> {
    py: Python<'py>,
    cfg: &'c Config<'py, 'm>,
    stack: Vec<Bound<'py, PyAny>>,
    marks: Vec<usize>,
    proto: u8,
    /// The memo of a module-level load (see [`Config::memo`]).
    own_memo: Memo,
    /// The bitmap of fetched memo indices of a large in-memory load with its own memo, when the
    /// configuration has none ([`super::memo::fetch_filter`]).
    own_filter: Option<Vec<u64>>,
    /// Stores go to `own_memo` unfiltered (no shared memo, no filter of either kind), so the
    /// fast loop may store `MEMOIZE`'s value directly ([`Memo::push_next`]).
    plain_memo: bool,
}

/// In-memory inputs from this size up get a memo filter of their own (one pass over the
/// opcodes before the load); smaller ones rarely hold anything big enough to be worth it.
const OWN_FILTER_MIN: usize = 64 << 10;

impl Drop for Machine<'_, '_, '_> {
    fn drop(&mut self) {
        self.own_memo.release(self.py);
        // Hand the (now empty) vectors back for the thread's next load.
        let mut marks = std::mem::take(&mut self.marks);
        marks.clear();
        let dense = self.own_memo.take_dense();
        SPARE.with(|spare| {
            if let Ok(mut spare) = spare.try_borrow_mut() {
                spare.put(marks, dense);
            }
        });
    }
}

/// The empty vectors of the thread's last load (its memo slots and its MARK positions), reused
/// by the next one: a small load otherwise spends a tenth of its instructions allocating and
/// growing them (the memo goes 64, 128, 256 slots for a dict of 100 entries). A load started
/// while another runs on the thread (from `find_class`, `persistent_load`, a `__setstate__`)
/// finds the spares taken and allocates its own.
#[derive(Default)]
struct Spare {
    marks: Vec<usize>,
    dense: Vec<Option<Py<PyAny>>>,
}

impl Spare {
    /// Memo slots kept between loads at most (32 KiB); a bigger vector is freed, so that one huge
    /// load does not pin its memory for the life of the thread.
    const MAX_DENSE: usize = 4096;
    /// MARK positions kept between loads at most.
    const MAX_MARKS: usize = 1024;

    fn take(&mut self) -> (Vec<usize>, Vec<Option<Py<PyAny>>>) {
        (
            std::mem::take(&mut self.marks),
            std::mem::take(&mut self.dense),
        )
    }

    fn put(&mut self, marks: Vec<usize>, dense: Vec<Option<Py<PyAny>>>) {
        debug_assert!(marks.is_empty() && dense.is_empty());
        if marks.capacity() <= Self::MAX_MARKS && marks.capacity() > self.marks.capacity() {
            self.marks = marks;
        }
        if dense.capacity() <= Self::MAX_DENSE && dense.capacity() > self.dense.capacity() {
            self.dense = dense;
        }
    }
}

thread_local! {
    static SPARE: std::cell::RefCell<Spare> = std::cell::RefCell::default();
}

/// Pauses the cyclic garbage collector for one load and restores it as found, also on errors
/// and in nested loads (a load started by `find_class`, `persistent_load` or `__setstate__`
/// finds it paused and leaves it paused). Millions of new containers would otherwise trigger
/// full collections during the load; what the load postponed is one generation-0 collection
/// over the new objects. A callback that turns the collector on keeps it on, as with `_pickle`;
/// one that turns it off during a load that found it on cannot be told from the pause, and the
/// collector is turned back on.
struct GcPause {
    was_enabled: bool,
}

impl GcPause {
    fn new(_py: Python<'_>) -> GcPause {
        // SAFETY: the GIL is held (`_py`); PyGC_Disable only flips the collector's flag and
        // returns its previous value.
        let was_enabled = unsafe { ffi::PyGC_Disable() } != 0;
        GcPause { was_enabled }
    }
}

impl Drop for GcPause {
    fn drop(&mut self) {
        // Found off: the load changed nothing, and whatever a callback chose stands.
        if self.was_enabled {
            // SAFETY: dropped on the thread that created it, inside the same `load` call, so
            // the GIL is still held; this only sets the collector's flag.
            unsafe { ffi::PyGC_Enable() };
        }
    }
}

/// Lock the memo; a poisoned lock (a panic elsewhere) still holds a usable memo.
fn lock(memo: &Mutex<Memo>) -> std::sync::MutexGuard<'_, Memo> {
    memo.lock().unwrap_or_else(|e| e.into_inner())
}

/// Run one pickle from `input` and return the object at STOP.
pub(crate) fn load<'py>(
    py: Python<'py>,
    cfg: &Config<'py, '_>,
    input: &mut Input<'_, '_>,
) -> PyResult<Bound<'py, PyAny>> {
    let _gc = GcPause::new(py);
    super::strcache::new_load(py);
    let (marks, dense) = SPARE.with(|spare| match spare.try_borrow_mut() {
        Ok(mut spare) => spare.take(),
        Err(_) => Default::default(),
    });
    let mut m = Machine {
        py,
        cfg,
        // 1 KiB: most pickles never grow it (the stack holds a container's items between a
        // MARK and the APPENDS/SETITEMS that consume them, up to 2,000 for a batch of pairs).
        stack: Vec::with_capacity(128),
        marks,
        proto: 0,
        own_memo: Memo::with_dense(dense),
        own_filter: None,
        plain_memo: false,
    };
    if cfg.memo.is_none() && cfg.memo_filter.is_none() {
        // The filter comes from a scan of the bytes before the load: only for bytes that
        // Python code run by the load cannot rewrite.
        if let Input::Memory(mem) = &mut *input {
            let fixed = mem.fixed();
            let (data, pos) = mem.parts();
            if fixed && *pos == 0 && data.len() >= OWN_FILTER_MIN {
                m.own_filter = super::memo::fetch_filter(data);
            }
        }
    }
    m.plain_memo = cfg.memo.is_none() && cfg.memo_filter.is_none() && m.own_filter.is_none();
    m.set_proto(0);
    loop {
        // The common operations run in the fast loop, straight from the bytes at hand; it
        // stops before anything else (and before anything incomplete), which then goes through
        // the general path below. Under a policy it runs only while the guard has nothing to
        // check in the operations it handles (`Guard::fast_loop_ok`); a repeated PROTO goes to the guard.
        let stop = match &mut *input {
            _ if cfg.guard.is_some_and(|g| !g.fast_loop_ok(&m.stack)) => false,
            Input::Memory(mem) => {
                let (data, pos) = mem.parts();
                m.run_fast(data, pos)?
            }
            Input::File(file) => {
                let (data, pos) = file.parts(py);
                m.run_fast(data, pos)?
            }
        };
        if stop {
            break;
        }
        let fetched = match &mut *input {
            Input::Memory(mem) => mem.next(py),
            Input::File(file) => file.next(py),
        };
        let fetched = match fetched {
            Ok(Some(f)) => f,
            Ok(None) => return Err(PyEOFError::new_err("Ran out of input")),
            Err(InputError::Py(e)) => return Err(e),
            Err(InputError::Truncated(op)) => return Err(m.truncated(op)),
            Err(InputError::TruncatedAfterLine(op, first)) => {
                return Err(m.truncated_after_line(op, &first))
            }
        };
        let done = match fetched {
            Fetched::Op(op) => {
                if op.opcode == Opcode::STOP {
                    true
                } else if let Some(guard) = cfg.guard {
                    guard.before(py, &op, &m.stack, &m.marks, m.proto, cfg.fix_imports)?;
                    m.step(&op)?;
                    guard.after(py, &op, &m.stack)?;
                    false
                } else {
                    m.step(&op)?;
                    false
                }
            }
            Fetched::Built(obj) => {
                m.stack.push(obj);
                false
            }
        };
        if done {
            break;
        }
    }
    if let Input::File(file) = &mut *input {
        file.skip_consumed(py)?;
    }
    m.pop()
}

fn cstr_line(line: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(line.len() + 2);
    v.extend_from_slice(line);
    v.extend_from_slice(b"\n\0");
    v
}

impl<'py> Machine<'py, '_, '_> {
    fn set_proto(&mut self, proto: u8) {
        self.proto = proto;
        if let Some(cell) = self.cfg.proto_cell {
            cell.store(proto, Ordering::Relaxed);
        }
    }

    /// The error C raises when the input ends inside `opcode`'s argument. A few opcodes check
    /// state before reading their argument.
    #[cold]
    fn truncated(&self, opcode: Opcode) -> PyErr {
        match opcode {
            Opcode::INST if self.marks.is_empty() => {
                unpickling_error(self.py, "could not find MARK")
            }
            Opcode::PERSID if self.cfg.pers_func.is_none() => no_persistent_load(self.py),
            _ => unpickling_error(self.py, "pickle data was truncated"),
        }
    }

    /// `GLOBAL`/`INST` whose second line is missing: C has already checked the mark (INST) and
    /// decoded the first line.
    #[cold]
    fn truncated_after_line(&self, opcode: Opcode, first: &[u8]) -> PyErr {
        if opcode == Opcode::INST && self.marks.is_empty() {
            return unpickling_error(self.py, "could not find MARK");
        }
        if !first.is_empty() {
            let decoded = if opcode == Opcode::INST {
                decode_ascii(self.py, first)
            } else {
                decode_utf8(self.py, first, c"strict")
            };
            if let Err(e) = decoded {
                return e;
            }
        }
        unpickling_error(self.py, "pickle data was truncated")
    }

    #[inline]
    fn fence(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    #[cold]
    fn underflow(&self) -> PyErr {
        if self.marks.is_empty() {
            unpickling_error(self.py, "unpickling stack underflow")
        } else {
            unpickling_error(self.py, "unexpected MARK found")
        }
    }

    #[inline]
    fn pop(&mut self) -> PyResult<Bound<'py, PyAny>> {
        if self.stack.len() <= self.fence() {
            return Err(self.underflow());
        }
        self.stack.pop().ok_or_else(|| self.underflow())
    }

    #[inline]
    fn top(&self) -> PyResult<&Bound<'py, PyAny>> {
        if self.stack.len() <= self.fence() {
            return Err(self.underflow());
        }
        self.stack.last().ok_or_else(|| self.underflow())
    }

    /// C's `marker()`: pop the topmost mark.
    #[inline]
    fn marker(&mut self) -> PyResult<usize> {
        self.marks
            .pop()
            .ok_or_else(|| unpickling_error(self.py, "could not find MARK"))
    }

    /// C's `Pdata_poptuple(start)`.
    fn pop_tuple(&mut self, start: usize) -> PyResult<Bound<'py, PyTuple>> {
        if start < self.fence() || start > self.stack.len() {
            return Err(self.underflow());
        }
        let items = self.stack.split_off(start);
        PyTuple::new(self.py, items)
    }

    /// The memo entry at `idx`.
    #[inline]
    fn memo_lookup(&self, idx: usize) -> Option<Bound<'py, PyAny>> {
        match self.cfg.memo {
            None => self.own_memo.get(self.py, idx),
            Some(shared) => lock(shared).get(self.py, idx),
        }
    }

    /// Whether a store at `idx` (`None`: MEMOIZE's) is skipped under [`Config::memo_filter`]:
    /// nothing ever fetches that index. A skipped MEMOIZE still counts its entry, so later
    /// MEMOIZE indices stay the stream's. Inlined: the fast loop asks this after every `str`
    /// of a filtered load (a million times for a column of labels).
    #[inline(always)]
    pub(super) fn memo_skips(&mut self, idx: Option<usize>) -> bool {
        let Some(fetched) = self.cfg.memo_filter.or(self.own_filter.as_deref()) else {
            return false;
        };
        if self.cfg.memo.is_some() {
            return false;
        }
        let i = idx.unwrap_or(self.own_memo.len());
        if fetched
            .get(i / 64)
            .is_some_and(|w| (w >> (i % 64)) & 1 == 1)
        {
            return false;
        }
        if idx.is_none() {
            self.own_memo.count_skipped();
        }
        true
    }

    /// Store `value` at `idx` (`None`: at the number of entries, as `MEMOIZE` does).
    #[inline]
    fn memo_store(&mut self, idx: Option<usize>, value: Py<PyAny>) {
        if self.memo_skips(idx) {
            return;
        }
        let old = match self.cfg.memo {
            None => {
                let idx = idx.unwrap_or(self.own_memo.len());
                self.own_memo.put(idx, value)
            }
            Some(shared) => {
                let mut memo = lock(shared);
                let idx = idx.unwrap_or(memo.len());
                memo.put(idx, value)
            }
        };
        // Dropped after the lock is released: dropping may run Python code.
        drop(old);
    }

    fn memo_get(&mut self, idx: usize) -> PyResult<()> {
        let value = self.memo_lookup(idx);
        match value {
            Some(v) => {
                self.stack.push(v);
                Ok(())
            }
            None => Err(unpickling_error(
                self.py,
                format!("Memo value not found at index {}", idx as isize),
            )),
        }
    }

    fn memo_put(&mut self, idx: usize, value: Py<PyAny>) {
        self.memo_store(Some(idx), value);
    }

    fn top_for_put(&self) -> PyResult<Py<PyAny>> {
        Ok(self.top()?.clone().unbind())
    }

    fn find_class(
        &self,
        module: &Bound<'py, PyAny>,
        name: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        match (&self.cfg.unpickler, self.cfg.find_class_via_python) {
            (Some(obj), true) => obj.call_method1(intern!(self.py, "find_class"), (module, name)),
            _ => find_class_impl(self.py, module, name, self.proto, self.cfg.fix_imports),
        }
    }

    fn persistent_load(&self, pid: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        match &self.cfg.pers_func {
            Some((func, true)) => match &self.cfg.unpickler {
                Some(obj) => func.call1((obj, pid)),
                None => func.call1((pid,)),
            },
            Some((func, false)) => func.call1((pid,)),
            None => Err(no_persistent_load(self.py)),
        }
    }

    /// Decode bytes of a Python 2 `str` with the configured encoding.
    fn py2_str(&self, data: &[u8]) -> PyResult<Bound<'py, PyAny>> {
        if self.cfg.encoding.to_bytes() == b"bytes" {
            return Ok(PyBytes::new(self.py, data).into_any());
        }
        // SAFETY: `data` is a valid slice for the call; encoding and errors are NUL-terminated;
        // the result is a new reference or NULL with an exception set.
        unsafe {
            Bound::from_owned_ptr_or_err(
                self.py,
                ffi::PyUnicode_Decode(
                    data.as_ptr().cast(),
                    data.len() as ffi::Py_ssize_t,
                    self.cfg.encoding.as_ptr(),
                    self.cfg.errors.as_ptr(),
                ),
            )
        }
    }

    fn step(&mut self, op: &Op<'_>) -> PyResult<()> {
        use Opcode::*;
        let py = self.py;
        match op.opcode {
            NONE => self.stack.push(py.None().into_bound(py)),
            NEWTRUE => self.stack.push(PyBool::new(py, true).to_owned().into_any()),
            NEWFALSE => self
                .stack
                .push(PyBool::new(py, false).to_owned().into_any()),
            BININT | BININT1 | BININT2 => {
                self.stack.push(op.int().into_pyobject(py)?.into_any());
            }
            INT => {
                let line = line_arg(op);
                if line.is_empty() {
                    return Err(unpickling_error(py, "pickle data was truncated"));
                }
                let s = cstr_line(line);
                let mut end: *mut c_char = std::ptr::null_mut();
                // SAFETY: `s` is NUL-terminated; strtol reads up to the NUL and sets `end` into it.
                let x = unsafe { strtol(s.as_ptr().cast(), &mut end, 0) };
                // SAFETY: `end` points into `s` (at worst at its NUL).
                let stop = unsafe { *end } as u8;
                let value = if x == c_long::MAX || x == c_long::MIN || (stop != b'\n' && stop != 0)
                {
                    // Maybe something long (or an overflow: same value either way).
                    // SAFETY: `s` is NUL-terminated; returns a new reference or NULL.
                    let v = unsafe {
                        Bound::from_owned_ptr_or_err(
                            py,
                            ffi::PyLong_FromString(s.as_ptr().cast(), std::ptr::null_mut(), 0),
                        )
                    };
                    v.map_err(|_| PyValueError::new_err("could not convert string to int"))?
                } else if line.len() == 2 && (x == 0 || x == 1) {
                    PyBool::new(py, x == 1).to_owned().into_any()
                } else {
                    (x as i64).into_pyobject(py)?.into_any()
                };
                self.stack.push(value);
            }
            LONG => {
                let line = line_arg(op);
                if line.is_empty() {
                    return Err(unpickling_error(py, "pickle data was truncated"));
                }
                let mut s = cstr_line(line);
                if line.last() == Some(&b'L') {
                    s[line.len() - 1] = 0;
                }
                // SAFETY: `s` is NUL-terminated; returns a new reference or NULL.
                let v = unsafe {
                    Bound::from_owned_ptr_or_err(
                        py,
                        ffi::PyLong_FromString(s.as_ptr().cast(), std::ptr::null_mut(), 0),
                    )
                }?;
                self.stack.push(v);
            }
            LONG1 | LONG4 => {
                let Arg::Long(bytes) = op.arg else {
                    return Ok(());
                };
                self.stack.push(long_from_le(py, bytes)?);
            }
            FLOAT => {
                let line = line_arg(op);
                if line.is_empty() {
                    return Err(unpickling_error(py, "pickle data was truncated"));
                }
                let s = cstr_line(line);
                let mut end: *mut c_char = std::ptr::null_mut();
                // SAFETY: `s` is NUL-terminated; the overflow exception type is a valid object.
                let d = unsafe {
                    ffi::PyOS_string_to_double(
                        s.as_ptr().cast(),
                        &mut end,
                        ffi::PyExc_OverflowError,
                    )
                };
                if d == -1.0 {
                    if let Some(err) = PyErr::take(py) {
                        return Err(err);
                    }
                }
                // SAFETY: `end` points into `s`.
                let stop = unsafe { *end } as u8;
                if stop != b'\n' && stop != 0 {
                    return Err(PyValueError::new_err("could not convert string to float"));
                }
                self.stack.push(PyFloat::new(py, d).into_any());
            }
            BINFLOAT => {
                let Arg::Float(f) = op.arg else { return Ok(()) };
                self.stack.push(PyFloat::new(py, f).into_any());
            }
            STRING => {
                let line = line_arg(op);
                let n = line.len();
                if !(n >= 2 && line[0] == line[n - 1] && (line[0] == b'\'' || line[0] == b'"')) {
                    return Err(unpickling_error(
                        py,
                        "the STRING opcode argument must be quoted",
                    ));
                }
                let inner = &line[1..n - 1];
                // SAFETY: `inner` is valid for its length; a new reference or NULL is returned.
                let bytes = unsafe {
                    Bound::from_owned_ptr_or_err(
                        py,
                        ffi::PyBytes_DecodeEscape(
                            inner.as_ptr().cast(),
                            inner.len() as ffi::Py_ssize_t,
                            std::ptr::null(),
                            0,
                            std::ptr::null(),
                        ),
                    )
                }?;
                let obj = if self.cfg.encoding.to_bytes() == b"bytes" {
                    bytes
                } else {
                    // SAFETY: `bytes` is a live bytes object; C strings are NUL-terminated.
                    unsafe {
                        Bound::from_owned_ptr_or_err(
                            py,
                            ffi::PyUnicode_FromEncodedObject(
                                bytes.as_ptr(),
                                self.cfg.encoding.as_ptr(),
                                self.cfg.errors.as_ptr(),
                            ),
                        )
                    }?
                };
                self.stack.push(obj);
            }
            BINSTRING | SHORT_BINSTRING => {
                let data = bytes_arg(op);
                let obj = self.py2_str(data)?;
                self.stack.push(obj);
            }
            BINBYTES | SHORT_BINBYTES | BINBYTES8 => {
                self.stack
                    .push(super::payload::copy_of(py, bytes_arg(op), false)?);
            }
            BYTEARRAY8 => {
                self.stack
                    .push(super::payload::copy_of(py, bytes_arg(op), true)?);
            }
            UNICODE => {
                let line = line_arg(op);
                // SAFETY: `line` is valid for its length; a new reference or NULL is returned.
                let s = unsafe {
                    Bound::from_owned_ptr_or_err(
                        py,
                        ffi::PyUnicode_DecodeRawUnicodeEscape(
                            line.as_ptr().cast(),
                            line.len() as ffi::Py_ssize_t,
                            std::ptr::null(),
                        ),
                    )
                }?;
                self.stack.push(s);
            }
            BINUNICODE | SHORT_BINUNICODE | BINUNICODE8 => {
                self.stack.push(fast::unicode_from_utf8(py, bytes_arg(op))?);
            }

            // --- tuples, lists, dicts, sets ---
            EMPTY_TUPLE => self.stack.push(PyTuple::empty(py).into_any()),
            TUPLE1 | TUPLE2 | TUPLE3 => {
                let n = match op.opcode {
                    TUPLE1 => 1,
                    TUPLE2 => 2,
                    _ => 3,
                };
                if self.stack.len() < n {
                    return Err(self.underflow());
                }
                let t = self.pop_tuple(self.stack.len() - n)?;
                self.stack.push(t.into_any());
            }
            TUPLE => {
                let i = self.marker()?;
                let t = self.pop_tuple(i)?;
                self.stack.push(t.into_any());
            }
            EMPTY_LIST => self.stack.push(PyList::empty(py).into_any()),
            EMPTY_DICT => self.stack.push(PyDict::new(py).into_any()),
            EMPTY_SET => self.stack.push(PySet::empty(py)?.into_any()),
            LIST => {
                let i = self.marker()?;
                let items = self.stack.split_off(i.min(self.stack.len()));
                self.stack.push(PyList::new(py, items)?.into_any());
            }
            DICT => {
                let i = self.marker()?.min(self.stack.len());
                let dict = PyDict::new(py);
                if (self.stack.len() - i) % 2 != 0 {
                    return Err(unpickling_error(py, "odd number of items for DICT"));
                }
                for kv in self.stack[i..].chunks_exact(2) {
                    dict.set_item(&kv[0], &kv[1])?;
                }
                self.stack.truncate(i);
                self.stack.push(dict.into_any());
            }
            FROZENSET => {
                let i = self.marker()?;
                let items = self.pop_tuple(i)?;
                self.stack
                    .push(PyFrozenSet::new(py, items.iter())?.into_any());
            }
            APPEND => {
                if self.stack.len() as isize - 1 <= self.fence() as isize {
                    return Err(self.underflow());
                }
                self.do_append(self.stack.len() - 1)?;
            }
            APPENDS => {
                let i = self.marker()?;
                self.do_append(i)?;
            }
            SETITEM => {
                let x = self.stack.len() as isize - 2;
                self.do_setitems(x)?;
            }
            SETITEMS => {
                let i = self.marker()?;
                self.do_setitems(i as isize)?;
            }
            ADDITEMS => {
                let mark = self.marker()?;
                let len = self.stack.len();
                if mark > len || mark <= self.fence() {
                    return Err(self.underflow());
                }
                if len == mark {
                    return Ok(());
                }
                let target = self.stack[mark - 1].clone();
                if let Ok(set) = target.cast::<PySet>() {
                    let items = self.stack.split_off(mark);
                    for item in items {
                        set.add(item)?;
                    }
                } else {
                    let add = target.getattr(intern!(py, "add"))?;
                    let items = self.stack.split_off(mark);
                    for item in items {
                        add.call1((item,))?;
                    }
                }
            }

            // --- stack and memo ---
            POP => {
                let len = self.stack.len();
                if self.marks.last() == Some(&len) {
                    self.marks.pop();
                } else if len <= self.fence() {
                    return Err(self.underflow());
                } else {
                    self.stack.pop();
                }
            }
            POP_MARK => {
                let i = self.marker()?;
                self.stack.truncate(i);
            }
            DUP => {
                let top = self.top()?.clone();
                self.stack.push(top);
            }
            MARK => self.marks.push(self.stack.len()),
            GET => {
                let line = line_arg(op);
                if line.is_empty() {
                    return Err(unpickling_error(py, "pickle data was truncated"));
                }
                let idx = parse_index(py, line)?;
                self.memo_get(idx as usize)?;
            }
            BINGET | LONG_BINGET => self.memo_get(op.int() as usize)?,
            PUT => {
                let line = line_arg(op);
                if line.is_empty() {
                    return Err(unpickling_error(py, "pickle data was truncated"));
                }
                let value = self.top_for_put()?;
                let idx = parse_index(py, line)?;
                if idx < 0 {
                    return Err(PyValueError::new_err("negative PUT argument"));
                }
                self.memo_put(idx as usize, value);
            }
            BINPUT | LONG_BINPUT => {
                let value = self.top_for_put()?;
                self.memo_put(op.int() as usize, value);
            }
            MEMOIZE => {
                let value = self.top_for_put()?;
                self.memo_store(None, value);
            }

            // --- globals, calls, state ---
            GLOBAL => {
                let Arg::TwoLines(module, name) = op.arg else {
                    return Ok(());
                };
                if module.is_empty() {
                    return Err(unpickling_error(py, "pickle data was truncated"));
                }
                let module = decode_utf8(py, module, c"strict")?;
                if name.is_empty() {
                    return Err(unpickling_error(py, "pickle data was truncated"));
                }
                let name = decode_utf8(py, name, c"strict")?;
                let global = self.find_class(&module, &name)?;
                self.stack.push(global);
            }
            STACK_GLOBAL => {
                let name = self.pop()?;
                let module = self.pop()?;
                if !module.is_exact_instance_of::<PyString>()
                    || !name.is_exact_instance_of::<PyString>()
                {
                    return Err(unpickling_error(py, "STACK_GLOBAL requires str"));
                }
                let global = self.find_class(&module, &name)?;
                self.stack.push(global);
            }
            INST => {
                let i = self.marker()?;
                let Arg::TwoLines(module, name) = op.arg else {
                    return Ok(());
                };
                if module.is_empty() {
                    return Err(unpickling_error(py, "pickle data was truncated"));
                }
                let module = decode_ascii(py, module)?;
                if name.is_empty() {
                    return Err(unpickling_error(py, "pickle data was truncated"));
                }
                let name = decode_ascii(py, name)?;
                let cls = self.find_class(&module, &name)?;
                let args = self.pop_tuple(i)?;
                let obj = instantiate(py, &cls, &args)?;
                self.stack.push(obj);
            }
            OBJ => {
                let i = self.marker()?;
                if self.stack.len() < i + 1 {
                    return Err(self.underflow());
                }
                let args = self.pop_tuple(i + 1)?;
                let cls = self.pop()?;
                let obj = instantiate(py, &cls, &args)?;
                self.stack.push(obj);
            }
            REDUCE => {
                let args = self.pop()?;
                let callable = self.pop()?;
                // SAFETY: both are live objects; PyObject_CallObject raises TypeError for a
                // non-tuple argument list and returns a new reference or NULL.
                let obj = unsafe {
                    Bound::from_owned_ptr_or_err(
                        py,
                        ffi::PyObject_CallObject(callable.as_ptr(), args.as_ptr()),
                    )
                }?;
                self.stack.push(obj);
            }
            NEWOBJ | NEWOBJ_EX => {
                let ex = op.opcode == NEWOBJ_EX;
                let kwargs = if ex { Some(self.pop()?) } else { None };
                let args = self.pop()?;
                let cls = self.pop()?;
                let obj = newobj(py, ex, &cls, &args, kwargs.as_ref())?;
                self.stack.push(obj);
            }
            BUILD => {
                if (self.stack.len() as isize) - 2 < self.fence() as isize {
                    return Err(self.underflow());
                }
                let state = self.pop()?;
                let inst = self.top()?.clone();
                build(py, &inst, state)?;
            }
            EXT1 | EXT2 | EXT4 => {
                let code = op.int();
                if code <= 0 {
                    return Err(unpickling_error(py, "EXT specifies code <= 0"));
                }
                let obj = self.extension(code)?;
                self.stack.push(obj);
            }
            PERSID => {
                if self.cfg.pers_func.is_none() {
                    return Err(no_persistent_load(py));
                }
                let line = line_arg(op);
                let pid = match decode_ascii(py, line) {
                    Ok(pid) => pid,
                    Err(e) if e.is_instance_of::<pyo3::exceptions::PyUnicodeDecodeError>(py) => {
                        return Err(unpickling_error(
                            py,
                            "persistent IDs in protocol 0 must be ASCII strings",
                        ))
                    }
                    Err(e) => return Err(e),
                };
                let obj = self.persistent_load(pid)?;
                self.stack.push(obj);
            }
            BINPERSID => {
                if self.cfg.pers_func.is_none() {
                    return Err(no_persistent_load(py));
                }
                let pid = self.pop()?;
                let obj = self.persistent_load(pid)?;
                self.stack.push(obj);
            }
            NEXT_BUFFER => {
                let Some(buffers) = &self.cfg.buffers else {
                    return Err(unpickling_error(
                        py,
                        "pickle stream refers to out-of-band data but no *buffers* argument was given",
                    ));
                };
                let mut it = buffers.clone();
                match it.next() {
                    Some(buf) => self.stack.push(buf?),
                    None => return Err(unpickling_error(py, "not enough out-of-band buffers")),
                }
            }
            READONLY_BUFFER => {
                let obj = self.top()?.clone();
                let view = PyMemoryView::from(&obj)?;
                let readonly: bool = view.getattr(intern!(py, "readonly"))?.is_truthy()?;
                if !readonly {
                    let ro = view.call_method0(intern!(py, "toreadonly"))?;
                    if let Some(last) = self.stack.last_mut() {
                        *last = ro;
                    }
                }
            }

            // --- control ---
            PROTO => {
                let proto = op.int();
                if proto > brinery::HIGHEST_PROTOCOL as i64 {
                    return Err(PyValueError::new_err(format!(
                        "unsupported pickle protocol: {proto}"
                    )));
                }
                self.set_proto(proto as u8);
            }
            FRAME | STOP => {}
        }
        Ok(())
    }

    /// C's `do_append(x)`: extend the list below position `x` with the items from `x` up.
    fn do_append(&mut self, x: usize) -> PyResult<()> {
        let py = self.py;
        let len = self.stack.len();
        if x > len || x <= self.fence() {
            return Err(self.underflow());
        }
        if len == x {
            return Ok(());
        }
        let target = self.stack[x - 1].clone();
        if let Ok(list) = target.cast_exact::<PyList>() {
            let items = self.stack.split_off(x);
            if items.len() == 1 {
                list.append(&items[0])?;
            } else {
                let slice = PyList::new(py, items)?;
                let n = list.len();
                list.set_slice(n, n, &slice)?;
            }
            return Ok(());
        }
        match target.getattr_opt(intern!(py, "extend"))? {
            Some(extend) => {
                let slice = PyList::new(py, self.stack.split_off(x))?;
                extend.call1((slice,))?;
            }
            None => {
                let append = target.getattr(intern!(py, "append"))?;
                let items = self.stack.split_off(x);
                for item in items {
                    append.call1((item,))?;
                }
            }
        }
        Ok(())
    }

    /// C's `do_setitems(x)`.
    fn do_setitems(&mut self, x: isize) -> PyResult<()> {
        let len = self.stack.len() as isize;
        if x > len || x <= self.fence() as isize {
            return Err(self.underflow());
        }
        if len == x {
            return Ok(());
        }
        if (len - x) % 2 != 0 {
            return Err(unpickling_error(
                self.py,
                "odd number of items for SETITEMS",
            ));
        }
        let x = x as usize;
        let target = self.stack[x - 1].clone();
        let items = self.stack.split_off(x);
        if let Ok(dict) = target.cast_exact::<PyDict>() {
            for kv in items.chunks_exact(2) {
                dict.set_item(&kv[0], &kv[1])?;
            }
        } else {
            for kv in items.chunks_exact(2) {
                target.set_item(&kv[0], &kv[1])?;
            }
        }
        Ok(())
    }

    /// C's `load_extension` after the code is read.
    fn extension(&self, code: i64) -> PyResult<Bound<'py, PyAny>> {
        let py = self.py;
        let copyreg = py.import(intern!(py, "copyreg"))?;
        let cache = copyreg.getattr(intern!(py, "_extension_cache"))?;
        let key = code.into_pyobject(py)?;
        let cache = cache.cast_into::<PyDict>()?;
        if let Some(obj) = cache.get_item(&key)? {
            return Ok(obj);
        }
        let registry = copyreg
            .getattr(intern!(py, "_inverted_registry"))?
            .cast_into::<PyDict>()?;
        let Some(pair) = registry.get_item(&key)? else {
            return Err(PyValueError::new_err(format!(
                "unregistered extension code {code}"
            )));
        };
        let bad = || {
            PyValueError::new_err(format!(
                "_inverted_registry[{code}] isn't a 2-tuple of strings"
            ))
        };
        let pair = pair.cast_into::<PyTuple>().map_err(|_| bad())?;
        if pair.len() != 2 {
            return Err(bad());
        }
        let module = pair.get_item(0)?;
        let name = pair.get_item(1)?;
        if !module.is_instance_of::<PyString>() || !name.is_instance_of::<PyString>() {
            return Err(bad());
        }
        let obj = self.find_class(&module, &name)?;
        cache.set_item(&key, &obj)?;
        Ok(obj)
    }
}

fn line_arg<'a>(op: &Op<'a>) -> &'a [u8] {
    match op.arg {
        Arg::Line(l) => l,
        _ => &[],
    }
}

fn bytes_arg<'a>(op: &Op<'a>) -> &'a [u8] {
    match op.arg {
        Arg::Bytes(b) => b,
        _ => &[],
    }
}

#[cold]
fn no_persistent_load(py: Python<'_>) -> PyErr {
    unpickling_error(
        py,
        "A load persistent id instruction was encountered,\nbut no persistent_load function was specified.",
    )
}

/// `PyLong_FromString(line, NULL, 10)` then `PyLong_AsSsize_t`, as `load_get`/`load_put` do.
fn parse_index(py: Python<'_>, line: &[u8]) -> PyResult<isize> {
    let s = cstr_line(line);
    // SAFETY: `s` is NUL-terminated; returns a new reference or NULL.
    let key = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyLong_FromString(s.as_ptr().cast(), std::ptr::null_mut(), 10),
        )
    }?;
    key.extract::<isize>()
}

fn decode_utf8<'py>(
    py: Python<'py>,
    data: &[u8],
    errors: &std::ffi::CStr,
) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: `data` is valid for its length, `errors` is NUL-terminated; returns a new
    // reference or NULL with an exception set.
    unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyUnicode_DecodeUTF8(
                data.as_ptr().cast(),
                data.len() as ffi::Py_ssize_t,
                errors.as_ptr(),
            ),
        )
    }
}

fn decode_ascii<'py>(py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: as `decode_utf8`.
    unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyUnicode_DecodeASCII(
                data.as_ptr().cast(),
                data.len() as ffi::Py_ssize_t,
                c"strict".as_ptr(),
            ),
        )
    }
}

/// Two's-complement little-endian bytes to an int (`_PyLong_FromByteArray(.., 1, 1)`).
fn long_from_le<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    if bytes.len() <= 8 {
        if bytes.is_empty() {
            return Ok(0i64.into_pyobject(py)?.into_any());
        }
        let mut buf = if bytes[bytes.len() - 1] & 0x80 != 0 {
            [0xFF; 8]
        } else {
            [0; 8]
        };
        buf[..bytes.len()].copy_from_slice(bytes);
        return Ok(i64::from_le_bytes(buf).into_pyobject(py)?.into_any());
    }
    // SAFETY: `bytes` is valid for its length; returns a new reference or NULL.
    unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::_PyLong_FromByteArray(bytes.as_ptr(), bytes.len(), 1, 1),
        )
    }
}

/// C's `instantiate` for OBJ and INST.
fn instantiate<'py>(
    py: Python<'py>,
    cls: &Bound<'py, PyAny>,
    args: &Bound<'py, PyTuple>,
) -> PyResult<Bound<'py, PyAny>> {
    if args.is_empty()
        && cls.is_instance_of::<PyType>()
        && cls.getattr_opt(intern!(py, "__getinitargs__"))?.is_none()
    {
        return cls.call_method1(intern!(py, "__new__"), (cls,));
    }
    // SAFETY: both are live objects; returns a new reference or NULL.
    unsafe {
        Bound::from_owned_ptr_or_err(py, ffi::PyObject_CallObject(cls.as_ptr(), args.as_ptr()))
    }
}

/// C's `load_newobj` after popping.
fn newobj<'py>(
    py: Python<'py>,
    ex: bool,
    cls: &Bound<'py, PyAny>,
    args: &Bound<'py, PyAny>,
    kwargs: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let name = if ex { "NEWOBJ_EX" } else { "NEWOBJ" };
    let Ok(ty) = cls.cast::<PyType>() else {
        return Err(unpickling_error(
            py,
            format!(
                "{name} class argument must be a type, not {}",
                type_name(cls)
            ),
        ));
    };
    // SAFETY: `ty` is a live type object; reading its `tp_new` slot is a plain field read.
    let tp_new = unsafe { (*ty.as_type_ptr()).tp_new };
    let Some(tp_new) = tp_new else {
        return Err(unpickling_error(
            py,
            format!(
                "{name} class argument '{}' doesn't have __new__",
                type_name(cls)
            ),
        ));
    };
    if !args.is_instance_of::<PyTuple>() {
        return Err(unpickling_error(
            py,
            format!(
                "{name} args argument must be a tuple, not {}",
                type_name(args)
            ),
        ));
    }
    if let Some(kw) = kwargs {
        if !kw.is_instance_of::<PyDict>() {
            return Err(unpickling_error(
                py,
                format!(
                    "{name} kwargs argument must be a dict, not {}",
                    type_name(kw)
                ),
            ));
        }
    }
    let kw_ptr = kwargs.map_or(std::ptr::null_mut(), |k| k.as_ptr());
    // SAFETY: `tp_new` is the type's own slot, called with the type, a tuple and a dict (or
    // NULL), as CPython does; it returns a new reference or NULL with an exception set.
    unsafe { Bound::from_owned_ptr_or_err(py, tp_new(ty.as_type_ptr(), args.as_ptr(), kw_ptr)) }
}

/// C's `load_build` after the stack checks.
fn build<'py>(py: Python<'py>, inst: &Bound<'py, PyAny>, state: Bound<'py, PyAny>) -> PyResult<()> {
    if let Some(setstate) = inst.getattr_opt(intern!(py, "__setstate__"))? {
        setstate.call1((state,))?;
        return Ok(());
    }
    let (state, slotstate) = match state.cast::<PyTuple>() {
        Ok(t) if t.len() == 2 => (t.get_item(0)?, Some(t.get_item(1)?)),
        _ => (state, None),
    };
    if !state.is_none() {
        let Ok(state) = state.cast::<PyDict>() else {
            return Err(unpickling_error(py, "state is not a dictionary"));
        };
        let dict = inst.getattr(intern!(py, "__dict__"))?;
        // walked as C walks it: a `__setattr__` or `__hash__` run by the stores may change the
        // state dict, which must not panic
        for (key, value) in dict_items(state) {
            let key = if key.is_exact_instance_of::<PyString>() {
                let mut ptr = key.into_ptr();
                // SAFETY: `ptr` is an owned reference to an exact str; InternInPlace may replace
                // it with the interned string, transferring ownership back to `ptr`.
                unsafe {
                    ffi::PyUnicode_InternInPlace(&mut ptr);
                    Bound::from_owned_ptr(py, ptr)
                }
            } else {
                key
            };
            dict.set_item(key, value)?;
        }
    }
    if let Some(slotstate) = slotstate {
        let Ok(slotstate) = slotstate.cast::<PyDict>() else {
            return Err(unpickling_error(py, "slot state is not a dictionary"));
        };
        for (key, value) in dict_items(slotstate) {
            // SAFETY: both are live objects; PyObject_SetAttr returns -1 with an exception set
            // on failure (any key type: a non-str key raises TypeError, as in C).
            let rc = unsafe { ffi::PyObject_SetAttr(inst.as_ptr(), key.as_ptr(), value.as_ptr()) };
            if rc < 0 {
                return Err(PyErr::fetch(py));
            }
        }
    }
    Ok(())
}

static NAME_MAPPING: PyOnceLock<Py<PyDict>> = PyOnceLock::new();
static IMPORT_MAPPING: PyOnceLock<Py<PyDict>> = PyOnceLock::new();

fn compat_dict<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyDict>>,
    name: &str,
) -> PyResult<Bound<'py, PyDict>> {
    let d = cell.get_or_try_init(py, || -> PyResult<Py<PyDict>> {
        Ok(py
            .import("_compat_pickle")?
            .getattr(name)?
            .cast_into::<PyDict>()?
            .unbind())
    })?;
    Ok(d.bind(py).clone())
}

/// `Unpickler.find_class` of `_pickle.c`: audit, Python 2 name mapping, import, attribute
/// look-up (dotted at protocol 4 and up).
pub(crate) fn find_class_impl<'py>(
    py: Python<'py>,
    module_name: &Bound<'py, PyAny>,
    global_name: &Bound<'py, PyAny>,
    proto: u8,
    fix_imports: bool,
) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: the event and format are NUL-terminated; "OO" takes the two live objects, as
    // `_pickle.c` passes them; returns -1 with an exception set when a hook raised.
    let rc = unsafe {
        PySys_Audit(
            c"pickle.find_class".as_ptr(),
            c"OO".as_ptr(),
            module_name.as_ptr(),
            global_name.as_ptr(),
        )
    };
    if rc < 0 {
        return Err(PyErr::fetch(py));
    }
    let mut module_name = module_name.clone();
    let mut global_name = global_name.clone();
    if proto < 3 && fix_imports {
        let key = PyTuple::new(py, [&module_name, &global_name])?;
        if let Some(item) = compat_dict(py, &NAME_MAPPING, "NAME_MAPPING")?.get_item(&key)? {
            let pair = item
                .cast::<PyTuple>()
                .ok()
                .filter(|t| t.len() == 2)
                .ok_or_else(|| {
                    pyo3::exceptions::PyRuntimeError::new_err(format!(
                        "_compat_pickle.NAME_MAPPING values should be 2-tuples, not {}",
                        type_name(&item)
                    ))
                })?;
            module_name = pair.get_item(0)?;
            global_name = pair.get_item(1)?;
            if !module_name.is_instance_of::<PyString>()
                || !global_name.is_instance_of::<PyString>()
            {
                return Err(pyo3::exceptions::PyRuntimeError::new_err(
                    "_compat_pickle.NAME_MAPPING values should be pairs of str",
                ));
            }
        } else if let Some(item) =
            compat_dict(py, &IMPORT_MAPPING, "IMPORT_MAPPING")?.get_item(&module_name)?
        {
            if !item.is_instance_of::<PyString>() {
                return Err(pyo3::exceptions::PyRuntimeError::new_err(format!(
                    "_compat_pickle.IMPORT_MAPPING values should be strings, not {}",
                    type_name(&item)
                )));
            }
            module_name = item;
        }
    }
    if let Some(found) = crate::imports::module_attribute(&module_name, &global_name) {
        return Ok(found);
    }
    // SAFETY: `module_name` is a live object; PyImport_Import returns a new reference or NULL.
    let module =
        unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyImport_Import(module_name.as_ptr())) }?;
    getattribute(py, &module, &global_name, proto >= 4)
}

/// C's `getattribute(module, name, allow_qualname)`.
fn getattribute<'py>(
    py: Python<'py>,
    obj: &Bound<'py, PyAny>,
    name: &Bound<'py, PyAny>,
    allow_qualname: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let attr = if allow_qualname {
        // The common case, a plain name: one look-up (what the loop below does for one part).
        if let Ok(plain) = name.cast_exact::<PyString>() {
            if let Ok(text) = plain.to_str() {
                if !text.contains('.') && text != "<locals>" {
                    return obj.getattr_opt(plain)?.ok_or_else(|| cant_get(obj, name));
                }
            }
        }
        let parts = name
            .call_method1(intern!(py, "split"), (".",))?
            .cast_into::<PyList>()?;
        for part in parts.iter() {
            if part.eq("<locals>")? {
                return Err(PyAttributeError::new_err(format!(
                    "Can't pickle local attribute {} on {}",
                    name.repr()?,
                    obj.repr()?
                )));
            }
        }
        let mut cur = obj.clone();
        let mut found = true;
        for part in parts.iter() {
            let part = part.cast_into::<PyString>()?;
            match cur.getattr_opt(&part)? {
                Some(next) => cur = next,
                None => {
                    found = false;
                    break;
                }
            }
        }
        found.then_some(cur)
    } else {
        let name = name.cast::<PyString>().map_err(|_| {
            PyTypeError::new_err(format!(
                "attribute name must be string, not '{}'",
                type_name(name)
            ))
        })?;
        obj.getattr_opt(name)?
    };
    attr.ok_or_else(|| cant_get(obj, name))
}

/// `Can't get attribute 'name' on <module ...>`.
#[cold]
fn cant_get(obj: &Bound<'_, PyAny>, name: &Bound<'_, PyAny>) -> PyErr {
    let msg = match (name.repr(), obj.repr()) {
        (Ok(n), Ok(o)) => format!("Can't get attribute {n} on {o}"),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    PyAttributeError::new_err(msg)
}
