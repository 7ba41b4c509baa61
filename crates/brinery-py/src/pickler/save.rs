//! The `save()` dispatch of `_pickle.c`, writing through [`brinery::encode::Encoder`].
//!
//! Every function here mirrors its namesake in CPython 3.11's `Modules/_pickle.c` (same checks,
//! same order of side effects, same error types and messages) so that the bytes, the memo
//! indices and the Python callbacks are exactly those of `pickle.dumps`.

use std::collections::HashSet;
use std::ffi::CStr;
use std::io;

use brinery::encode::{
    binfloat_bytes, binint_word, Encoder, BATCH_SIZE, FRAME_SIZE_TARGET, SCALAR_MAX,
};
use brinery::Opcode;
use pyo3::exceptions::{
    PyAttributeError, PyKeyError, PyOverflowError, PyRecursionError, PyRuntimeError, PyTypeError,
    PyValueError,
};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDate, PyDateAccess, PyDateTime, PyDict, PyFloat, PyFrozenSet,
    PyFunction, PyInt, PyIterator, PyList, PySet, PyString, PyTimeAccess, PyTuple, PyType,
    PyTzInfoAccess,
};
use pyo3::{ffi, intern, PyTypeInfo};

use super::global_names;
use super::memo::Memo;
use super::stack;
use crate::buffer::BufferView;
use crate::errors::pickling_error;
use crate::pyutil::{dict_next, type_name};

/// `FAST_NESTING_LIMIT`: in fast mode, start checking for cycles at this nesting depth.
const FAST_NESTING_LIMIT: i64 = 50;

/// Module-level objects `_pickle.c` keeps in its module state.
pub(crate) struct Globals {
    /// `copyreg.dispatch_table` (the dict object; its contents are read live).
    dispatch_table: Py<PyDict>,
    /// `copyreg._extension_registry`.
    extension_registry: Py<PyDict>,
    /// `codecs.encode`, for bytes below protocol 3.
    codecs_encode: Py<PyAny>,
    /// `functools.partial`, for `__newobj_ex__` below protocol 4.
    partial: Py<PyAny>,
    /// `builtins.getattr`, for nested names below protocol 4.
    getattr: Py<PyAny>,
    /// `pickle.PickleBuffer` (held so that `Types::picklebuffer` stays valid).
    #[expect(dead_code, reason = "only keeps the type object alive")]
    pickle_buffer: Py<PyType>,
    /// `types.MethodType`.
    pub(crate) method_type: Py<PyType>,
    /// The exact-type pointers `save()` dispatches on.
    types: Types,
}

static GLOBALS: PyOnceLock<Globals> = PyOnceLock::new();

/// The cached module-level objects (imported on first use).
pub(crate) fn globals(py: Python<'_>) -> PyResult<&'static Globals> {
    GLOBALS.get_or_try_init(py, || {
        let copyreg = py.import("copyreg")?;
        let pickle_buffer = py
            .import("pickle")?
            .getattr("PickleBuffer")?
            .cast_into::<PyType>()?
            .unbind();
        let dict = |name: &str| -> PyResult<Py<PyDict>> {
            let obj = copyreg.getattr(name)?;
            match obj.cast_exact::<PyDict>() {
                Ok(d) => Ok(d.clone().unbind()),
                Err(_) => Err(PyRuntimeError::new_err(format!(
                    "copyreg.{name} should be a dict, not {}",
                    type_name(&obj)
                ))),
            }
        };
        Ok(Globals {
            dispatch_table: dict("dispatch_table")?,
            extension_registry: dict("_extension_registry")?,
            codecs_encode: py.import("codecs")?.getattr("encode")?.unbind(),
            partial: py.import("functools")?.getattr("partial")?.unbind(),
            getattr: py.import("builtins")?.getattr("getattr")?.unbind(),
            types: Types::new(py, pickle_buffer.as_ptr().cast()),
            pickle_buffer,
            method_type: py
                .import("types")?
                .getattr("MethodType")?
                .cast_into::<PyType>()?
                .unbind(),
        })
    })
}

/// The exact-type pointers `save()` dispatches on.
struct Types {
    bool_: *mut ffi::PyTypeObject,
    int: *mut ffi::PyTypeObject,
    float: *mut ffi::PyTypeObject,
    bytes: *mut ffi::PyTypeObject,
    str_: *mut ffi::PyTypeObject,
    dict: *mut ffi::PyTypeObject,
    set: *mut ffi::PyTypeObject,
    frozenset: *mut ffi::PyTypeObject,
    list: *mut ffi::PyTypeObject,
    tuple: *mut ffi::PyTypeObject,
    bytearray: *mut ffi::PyTypeObject,
    picklebuffer: *mut ffi::PyTypeObject,
    type_: *mut ffi::PyTypeObject,
    function: *mut ffi::PyTypeObject,
    date: *mut ffi::PyTypeObject,
    datetime: *mut ffi::PyTypeObject,
    /// Whether ints can be read from their digits in place (CPython 3.11's layout with
    /// 30-bit digits: a signed digit count in `ob_size`, then the digits).
    long_digits: bool,
}

// SAFETY: the pointers are to type objects that live as long as the interpreter (the builtin
// types and `datetime`'s are static; `PickleBuffer` is kept alive by `Globals::pickle_buffer`); they are only
// compared, never dereferenced, so sharing them between threads is sound.
unsafe impl Send for Types {}
// SAFETY: as for `Send`: immutable after construction and only compared.
unsafe impl Sync for Types {}

impl Types {
    fn new(py: Python<'_>, picklebuffer: *mut ffi::PyTypeObject) -> Types {
        Types {
            bool_: PyBool::type_object_raw(py),
            int: PyInt::type_object_raw(py),
            float: PyFloat::type_object_raw(py),
            bytes: PyBytes::type_object_raw(py),
            str_: PyString::type_object_raw(py),
            dict: PyDict::type_object_raw(py),
            set: PySet::type_object_raw(py),
            frozenset: PyFrozenSet::type_object_raw(py),
            list: PyList::type_object_raw(py),
            tuple: PyTuple::type_object_raw(py),
            bytearray: PyByteArray::type_object_raw(py),
            picklebuffer,
            type_: PyType::type_object_raw(py),
            function: PyFunction::type_object_raw(py),
            date: PyDate::type_object_raw(py),
            datetime: PyDateTime::type_object_raw(py),
            long_digits: {
                let v = py.version_info();
                (v.major, v.minor) == (3, 11)
                    && py
                        .import("sys")
                        .and_then(|sys| sys.getattr("int_info")?.getattr("bits_per_digit"))
                        .and_then(|b| b.extract::<u32>())
                        .is_ok_and(|b| b == 30)
            },
        }
    }
}

/// Fast-mode cycle detection state (`fast_nesting`, `fast_memo`), kept on the Pickler between
/// dumps like C does.
#[derive(Default)]
pub(crate) struct FastState {
    pub(crate) nesting: i64,
    pub(crate) memo: Option<HashSet<usize>>,
}

/// The hooks a `Pickler` object provides (none for the module-level `dump`/`dumps`).
#[derive(Default)]
pub(crate) struct Hooks<'py> {
    /// `persistent_id`: the function, and the pickler to pass as `self` when it was a bound
    /// method of the pickler (stored apart to avoid a reference cycle, as C does).
    pub(crate) pers_func: Option<Bound<'py, PyAny>>,
    pub(crate) pers_self: Option<Bound<'py, PyAny>>,
    pub(crate) dispatch_table: Option<Bound<'py, PyAny>>,
    pub(crate) reducer_override: Option<Bound<'py, PyAny>>,
    pub(crate) buffer_callback: Option<Bound<'py, PyAny>>,
    /// Set by the `Pickler`'s `clear_memo()` while this dump runs (a callback called it): the
    /// dump's memo is cleared before its next memo operation, as `_pickle` clears at once.
    pub(crate) memo_cleared: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

/// Options of one dump.
pub(crate) struct Options {
    /// This thread's stack bounds, if the caller has them at hand (else looked up).
    pub(crate) stack_limit: Option<stack::Limit>,
    pub(crate) proto: u8,
    pub(crate) fast: bool,
    pub(crate) fix_imports: bool,
}

/// `file.write` as an `io::Write` sink for the encoder. A Python exception raised by `write` is
/// left set in the interpreter and reported to the encoder as an `io::Error`; [`enc_err`]
/// fetches it back.
pub(crate) struct PyWriter<'py> {
    pub(crate) write: Bound<'py, PyAny>,
}

impl io::Write for PyWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let py = self.write.py();
        match self.write.call1((PyBytes::new(py, buf),)) {
            Ok(_) => Ok(buf.len()),
            Err(e) => {
                e.restore(py);
                Err(io::Error::other("file.write() raised"))
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// An encoder error as a Python exception: the one `file.write` raised, if any.
fn enc_err(py: Python<'_>, e: brinery::Error) -> PyErr {
    PyErr::take(py).unwrap_or_else(|| pickling_error(py, e.to_string()))
}

/// `Py_EnterRecursiveCall(" while pickling an object")`, left on drop.
struct RecursionGuard<'py>(Python<'py>);

impl<'py> RecursionGuard<'py> {
    #[inline]
    fn enter(py: Python<'py>) -> PyResult<Self> {
        // SAFETY: the GIL is held (we have a `Python` token) and the argument is a static
        // NUL-terminated string.
        let r = unsafe { ffi::Py_EnterRecursiveCall(c" while pickling an object".as_ptr()) };
        if r != 0 {
            return Err(PyErr::fetch(py));
        }
        Ok(RecursionGuard(py))
    }
}

impl Drop for RecursionGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        let _py = self.0;
        // SAFETY: paired with the successful `Py_EnterRecursiveCall` in `enter`; the GIL is
        // still held since the guard carries the `Python` token's lifetime.
        unsafe { ffi::Py_LeaveRecursiveCall() };
    }
}

/// `dumps` copies payloads at least this large into the result once, at the end, instead of
/// into the encoder's buffer and then into the result.
const DEFER_MIN: usize = FRAME_SIZE_TARGET;

/// A result at least this large is advised to use transparent huge pages.
const HUGE_MIN: usize = 4 << 20;

/// A large payload of a `dumps`, copied into the result after the encoder's bytes up to `at`.
struct Segment<'py> {
    at: usize,
    data: *const u8,
    len: usize,
    /// Keeps `data` alive: the immutable `bytes` it belongs to, or the object whose buffer
    /// export `view` holds (an export also keeps the exporter from resizing).
    _owner: Bound<'py, PyAny>,
    _view: Option<BufferView>,
}

/// Ask the kernel to back `len` bytes at `ptr` (fresh, untouched memory) with huge pages, so
/// that filling them faults once per 2 MiB instead of once per 4 KiB. Advisory: failures are
/// ignored.
#[cfg(target_os = "linux")]
fn advise_huge_pages(ptr: *mut u8, len: usize) {
    extern "C" {
        fn madvise(
            addr: *mut std::os::raw::c_void,
            len: usize,
            advice: std::os::raw::c_int,
        ) -> std::os::raw::c_int;
    }
    const MADV_HUGEPAGE: std::os::raw::c_int = 14;
    const HUGE: usize = 2 << 20;
    let start = (ptr as usize).next_multiple_of(HUGE);
    let end = (ptr as usize + len) & !(HUGE - 1);
    if end > start {
        // SAFETY: `[start, end)` lies inside the caller's allocation and is page aligned;
        // `madvise(MADV_HUGEPAGE)` only changes how the kernel backs those pages, never their
        // contents or validity.
        unsafe { madvise(start as *mut _, end - start, MADV_HUGEPAGE) };
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_ptr: *mut u8, _len: usize) {}

/// One pickling run: the encoder plus the pickler's state.
pub(crate) struct Saver<'py, 'a, 'w> {
    py: Python<'py>,
    enc: Encoder<'w>,
    proto: u8,
    fast: bool,
    fix_imports: bool,
    memo: &'a mut Memo,
    fast_state: &'a mut FastState,
    hooks: Hooks<'py>,
    /// `file.write` when dumping to a file (large payloads are written to it directly).
    file: Option<Bound<'py, PyAny>>,
    /// `dumps`' large payloads, copied into the result at the end.
    segments: Vec<Segment<'py>>,
    g: &'static Globals,
    types: &'static Types,
    stack_limit: stack::Limit,
    /// Container items that are `None`, bools, ints or floats are written inline (protocol 1+,
    /// no `persistent_id`).
    scalars_inline: bool,
    /// Whether objects proven to be met only once may be memoized without a table entry (see
    /// [`Saver::save_obj`]): no `persistent_id` or `reducer_override` hook, not fast mode, no
    /// file, and not inside a step that can run Python code (see [`Saver::generic`]).
    unique_ok: bool,
    /// How many steps that ran Python code ([`Saver::generic`]) enclose the current object:
    /// inside one, objects may be temporaries of that step (a reduction's result), so their
    /// pending memo entries hold a reference, keeping them alive and their addresses unused.
    generic_depth: usize,
    /// How many times Python code may have run during this dump (each [`generic`] and
    /// [`without_unique`] step counts one). Python code can change the graph being walked: drop
    /// the last reference to a container on the walk's path (our own reference then keeps it
    /// alive, and with it whatever was memoized under it without a reference), or give a
    /// second reference to an object we took for unique. Comparing the count before and after
    /// a step tells whether such a change may have happened (see `save_tuple` and
    /// `save_dict_item`).
    ///
    /// [`generic`]: Self::generic
    /// [`without_unique`]: Self::without_unique
    python_runs: u64,
}

impl<'py, 'a, 'w> Saver<'py, 'a, 'w> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        py: Python<'py>,
        enc: Encoder<'w>,
        opts: &Options,
        memo: &'a mut Memo,
        fast_state: &'a mut FastState,
        hooks: Hooks<'py>,
        file: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Self> {
        let g = globals(py)?;
        let hooks_pers_none = hooks.pers_func.is_none();
        let unique_ok = !opts.fast
            && file.is_none()
            && hooks.pers_func.is_none()
            && hooks.reducer_override.is_none();
        Ok(Saver {
            py,
            enc,
            proto: opts.proto,
            fast: opts.fast,
            fix_imports: opts.fix_imports,
            memo,
            fast_state,
            hooks,
            file,
            segments: Vec::new(),
            g,
            types: &g.types,
            stack_limit: opts.stack_limit.unwrap_or_else(stack::limit),
            unique_ok,
            generic_depth: 0,
            python_runs: 0,
            scalars_inline: opts.proto >= 1 && hooks_pers_none,
        })
    }

    /// C's `dump()`: header, the object, `STOP`, last frame; returns what is left buffered
    /// (everything for `dumps`, nothing when writing to a file).
    pub(crate) fn run(mut self, obj: &Bound<'py, PyAny>) -> PyResult<Vec<u8>> {
        self.enc.start();
        self.save(obj, false)?;
        let py = self.py;
        self.enc.finish().map_err(|e| enc_err(py, e))
    }

    /// `dumps`: the whole pickle as a `bytes` object, allocated once at its final size (huge
    /// pages advised when large) and filled with one copy of every byte. Also returns the
    /// encoder's buffer for reuse.
    pub(crate) fn run_to_bytes(
        mut self,
        obj: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyBytes>, Vec<u8>)> {
        debug_assert!(self.file.is_none());
        self.enc.start();
        self.save(obj, false)?;
        let py = self.py;
        let buf = self.enc.finish().map_err(|e| enc_err(py, e))?;
        let total = buf.len() + self.segments.iter().map(|s| s.len).sum::<usize>();
        let Ok(size) = ffi::Py_ssize_t::try_from(total) else {
            return Err(PyOverflowError::new_err("pickle too large"));
        };
        // SAFETY: GIL held; a NULL source asks CPython for an uninitialised bytes object of
        // `size` bytes (a new reference, or NULL with MemoryError set).
        let bytes = unsafe {
            Bound::from_owned_ptr_or_err(
                py,
                ffi::PyBytes_FromStringAndSize(std::ptr::null(), size),
            )?
        };
        // SAFETY: `bytes` is a fresh bytes object of `total` bytes that nothing else has seen
        // yet, so writing its contents is allowed; the pieces copied are `buf` and the
        // segments' payloads, each kept alive by its owner (held in `self.segments`), and
        // they add up to exactly `total` bytes, written in order without overlap.
        unsafe {
            let dst = ffi::PyBytes_AS_STRING(bytes.as_ptr()) as *mut u8;
            if total >= HUGE_MIN {
                advise_huge_pages(dst, total);
            }
            let mut out = 0usize;
            let mut from = 0usize;
            for seg in &self.segments {
                let head = &buf[from..seg.at];
                std::ptr::copy_nonoverlapping(head.as_ptr(), dst.add(out), head.len());
                out += head.len();
                std::ptr::copy_nonoverlapping(seg.data, dst.add(out), seg.len);
                out += seg.len;
                from = seg.at;
            }
            let tail = &buf[from..];
            std::ptr::copy_nonoverlapping(tail.as_ptr(), dst.add(out), tail.len());
            debug_assert_eq!(out + tail.len(), total);
        }
        // SAFETY: made by `PyBytes_FromStringAndSize` just above.
        Ok((unsafe { bytes.cast_into_unchecked::<PyBytes>() }, buf))
    }

    /// Write `header` now and the payload `data` (kept alive by `owner`, or by `view`, an
    /// export of `owner`) at the end of a `dumps`; `false` when the payload is too small to be
    /// worth it or this is not a `dumps` (the caller writes it then).
    fn defer_payload(
        &mut self,
        header: &[u8],
        data: &[u8],
        owner: &Bound<'py, PyAny>,
        view: &mut Option<BufferView>,
    ) -> bool {
        if self.file.is_some() || data.len() < DEFER_MIN {
            return false;
        }
        self.enc.write_large_header(header);
        self.segments.push(Segment {
            at: self.enc.buffered().len(),
            data: data.as_ptr(),
            len: data.len(),
            _owner: owner.clone(),
            _view: view.take(),
        });
        true
    }

    // -----------------------------------------------------------------------------------
    // save()
    // -----------------------------------------------------------------------------------

    #[inline]
    fn save(&mut self, obj: &Bound<'py, PyAny>, pers_save: bool) -> PyResult<()> {
        self.save_obj(obj, pers_save, false)
    }

    /// Run `body`, a step that may run Python code (a reduction, a hook, an import, a buffer
    /// export): pending memo entries move to the table first, since Python code could make
    /// them reachable again, and objects met inside are memoized in the table (temporaries
    /// made by the step die with it, so their addresses must not be remembered unreferenced).
    #[inline]
    fn generic<R>(&mut self, body: impl FnOnce(&mut Self) -> R) -> R {
        if !self.unique_ok {
            return body(self);
        }
        self.memo.flush_pending();
        self.python_runs += 1;
        self.generic_depth += 1;
        let r = body(self);
        self.generic_depth -= 1;
        // Python code run late in the step (a finalizer of the reduce value, an iterator's
        // `__del__`) may have given what the step memoized another reference: later lookups
        // must find it in the table.
        self.memo.flush_pending();
        r
    }

    /// Run `body`, which calls Python code between the objects it saves (an iterator's
    /// `__next__`), with every object memoized in the table.
    fn without_unique<R>(&mut self, body: impl FnOnce(&mut Self) -> R) -> R {
        if !self.unique_ok {
            return body(self);
        }
        self.memo.flush_pending();
        self.python_runs += 1;
        self.unique_ok = false;
        let r = body(self);
        self.unique_ok = true;
        r
    }

    /// `save()`. `unique` says that `obj` can be met only once in this dump: its reference
    /// count was 1, the one reference being the slot of the container being walked (read
    /// before any reference of ours), that container is walked only once (a list or dict, which
    /// is memoized before its items, or a tuple that is itself unique), and no Python code can
    /// run before the pending entries move to the table ([`generic`](Self::generic)). Such an
    /// object skips the memo lookup and gets a pending entry instead of a table entry; its
    /// `PUT`/`MEMOIZE` is written as usual, so the bytes do not change.
    #[inline]
    fn save_obj(&mut self, obj: &Bound<'py, PyAny>, pers_save: bool, unique: bool) -> PyResult<()> {
        let py = self.py;
        self.enc.opcode_boundary().map_err(|e| enc_err(py, e))?;

        if !pers_save && self.hooks.pers_func.is_some() && self.generic(|s| s.save_pers(obj))? {
            return Ok(());
        }

        let tp = obj.get_type_ptr();
        if obj.is_none() {
            self.enc.none();
            return Ok(());
        }
        if tp == self.types.bool_ {
            // SAFETY: exact type checked just above.
            let b = unsafe { obj.cast_unchecked::<PyBool>() };
            self.enc.bool(b.is_true());
            return Ok(());
        }
        if tp == self.types.int {
            return self.save_long(obj);
        }
        if tp == self.types.float {
            // SAFETY: exact type checked just above.
            let f = unsafe { obj.cast_unchecked::<PyFloat>() };
            self.enc.float(f.value());
            return Ok(());
        }

        if !unique {
            self.sync_memo_clear();
            if let Some(idx) = self.memo.get(obj) {
                return self.write_get(idx);
            }
        }

        if tp == self.types.bytes {
            return self.save_bytes(obj, unique);
        }
        if tp == self.types.str_ {
            return self.save_unicode(obj, unique);
        }
        self.save_nonatomic(obj, tp, unique)
    }

    #[inline(never)]
    fn save_nonatomic(
        &mut self,
        obj: &Bound<'py, PyAny>,
        tp: *mut ffi::PyTypeObject,
        unique: bool,
    ) -> PyResult<()> {
        if stack::exhausted(self.stack_limit) {
            return Err(PyRecursionError::new_err(
                "maximum recursion depth exceeded while pickling an object",
            ));
        }
        let _guard = RecursionGuard::enter(self.py)?;
        let t = &self.types;
        if tp == t.dict {
            // SAFETY: exact type checked.
            self.save_dict(unsafe { obj.cast_unchecked::<PyDict>() }, unique)
        } else if tp == t.list {
            // SAFETY: exact type checked.
            self.save_list(unsafe { obj.cast_unchecked::<PyList>() }, unique)
        } else if tp == t.tuple {
            // SAFETY: exact type checked.
            self.save_tuple(unsafe { obj.cast_unchecked::<PyTuple>() }, unique)
        } else if tp == t.set {
            self.generic(|s| s.save_set(obj))
        } else if tp == t.frozenset {
            self.generic(|s| s.save_frozenset(obj))
        } else if tp == t.bytearray {
            self.generic(|s| s.save_bytearray(obj))
        } else if tp == t.picklebuffer {
            self.generic(|s| s.save_picklebuffer(obj))
        } else {
            self.generic(|s| s.save_other(obj, tp))
        }
    }

    /// The end of `save()`: `reducer_override`, types and functions, `dispatch_table`,
    /// `copyreg.dispatch_table`, `__reduce_ex__`, `__reduce__`.
    #[inline(never)]
    fn save_other(&mut self, obj: &Bound<'py, PyAny>, tp: *mut ffi::PyTypeObject) -> PyResult<()> {
        let py = self.py;
        if let Some(ro) = &self.hooks.reducer_override {
            let rv = ro.call1((obj,))?;
            if !rv.is(py.NotImplemented().bind(py)) {
                return self.save_reduce_value(obj, &rv);
            }
        }
        if tp == self.types.type_ {
            return self.save_type(obj);
        }
        if tp == self.types.function {
            return self.save_global(obj, None);
        }

        let ty = obj.get_type();
        let reduce_func = match &self.hooks.dispatch_table {
            None => self.g.dispatch_table.bind(py).get_item(&ty)?,
            Some(dt) => match dt.get_item(&ty) {
                Ok(f) => Some(f),
                Err(e) if e.is_instance_of::<PyKeyError>(py) => None,
                Err(e) => return Err(e),
            },
        };
        let rv = if let Some(f) = reduce_func {
            f.call1((obj,))?
        } else if tp == self.types.date || tp == self.types.datetime {
            self.datetime_reduce(obj, tp)?.into_any()
        } else if obj.is_instance_of::<PyType>() {
            return self.save_global(obj, None);
        } else if let Some(f) = obj.getattr_opt(intern!(py, "__reduce_ex__"))? {
            f.call1((self.proto,))?
        } else if let Some(f) = obj.getattr_opt(intern!(py, "__reduce__"))? {
            f.call0()?
        } else {
            return Err(pickling_error(
                py,
                format!("can't pickle '{}' object: {}", type_name(obj), obj.repr()?),
            ));
        };
        self.save_reduce_value(obj, &rv)
    }

    /// What `obj.__reduce_ex__(proto)` returns for an exact `datetime.date` or
    /// `datetime.datetime`, built here as `_datetimemodule.c` builds it (`date_reduce`,
    /// `datetime_reduce_ex`): `(type, (state,))` or `(type, (state, tzinfo))`, where the state
    /// is the object's packed fields and a `datetime`'s fold is bit 7 of byte 2 above protocol
    /// 3. Both types are static and immutable, so their reductions cannot be replaced; this
    /// saves the attribute lookup and the call through `object.__reduce_ex__`.
    fn datetime_reduce(
        &self,
        obj: &Bound<'py, PyAny>,
        tp: *mut ffi::PyTypeObject,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let py = self.py;
        let args = if tp == self.types.date {
            // SAFETY: exact type checked by the caller.
            let d = unsafe { obj.cast_unchecked::<PyDate>() };
            let y = d.get_year();
            let state = [(y >> 8) as u8, y as u8, d.get_month(), d.get_day()];
            PyTuple::new(py, [PyBytes::new(py, &state)])?
        } else {
            // SAFETY: exact type checked by the caller.
            let d = unsafe { obj.cast_unchecked::<PyDateTime>() };
            let (y, us) = (d.get_year(), d.get_microsecond());
            let fold = if self.proto > 3 && d.get_fold() {
                0x80
            } else {
                0
            };
            let state = [
                (y >> 8) as u8,
                y as u8,
                d.get_month() | fold,
                d.get_day(),
                d.get_hour(),
                d.get_minute(),
                d.get_second(),
                (us >> 16) as u8,
                (us >> 8) as u8,
                us as u8,
            ];
            let state = PyBytes::new(py, &state).into_any();
            match d.get_tzinfo() {
                Some(tz) => PyTuple::new(py, [state, tz.into_any()])?,
                None => PyTuple::new(py, [state])?,
            }
        };
        // SAFETY: `tp` is the live type object of `obj`; a new strong reference to it.
        let ty = unsafe { Bound::from_borrowed_ptr(py, tp.cast::<ffi::PyObject>()) };
        PyTuple::new(py, [ty, args.into_any()])
    }

    /// `reduce:` in `save()`: a string names a global, a tuple is a reduction.
    fn save_reduce_value(
        &mut self,
        obj: &Bound<'py, PyAny>,
        rv: &Bound<'py, PyAny>,
    ) -> PyResult<()> {
        if rv.is_instance_of::<PyString>() {
            return self.save_global(obj, Some(rv));
        }
        match rv.cast::<PyTuple>() {
            Ok(t) => self.save_reduce(t, Some(obj)),
            Err(_) => Err(pickling_error(
                self.py,
                "__reduce__ must return a string or tuple",
            )),
        }
    }

    // -----------------------------------------------------------------------------------
    // Memo
    // -----------------------------------------------------------------------------------

    /// `memo_put`.
    #[inline]
    fn memo_put(&mut self, obj: &Bound<'py, PyAny>) -> PyResult<()> {
        self.memo_put_unique(obj, false)
    }

    /// Apply a `clear_memo()` that a callback of the running `Pickler` made (see
    /// [`Hooks::memo_cleared`]); called before memo operations.
    #[inline(always)]
    fn sync_memo_clear(&mut self) {
        if let Some(flag) = &self.hooks.memo_cleared {
            if flag.load(std::sync::atomic::Ordering::Relaxed) {
                self.apply_memo_clear();
            }
        }
    }

    #[cold]
    fn apply_memo_clear(&mut self) {
        if let Some(flag) = &self.hooks.memo_cleared {
            flag.store(false, std::sync::atomic::Ordering::Relaxed);
        }
        self.memo.clear();
    }

    /// `memo_put`, with a pending entry instead of a table entry for a unique object (see
    /// [`save_obj`](Self::save_obj)).
    #[inline]
    fn memo_put_unique(&mut self, obj: &Bound<'py, PyAny>, unique: bool) -> PyResult<()> {
        self.sync_memo_clear();
        if self.fast {
            return Ok(());
        }
        let idx = self.memo.len();
        if unique && self.generic_depth == 0 {
            self.memo.push_pending(obj.as_ptr(), idx as isize);
        } else if unique {
            self.memo.push_pending_owned(obj.as_ptr(), idx as isize);
        } else {
            self.memo.set(obj, idx as isize);
        }
        let py = self.py;
        self.enc.put(idx as u64).map_err(|e| enc_err(py, e))
    }

    /// `memo_get` for an object known to be memoized at `idx`.
    fn write_get(&mut self, idx: isize) -> PyResult<()> {
        if idx >= 0 {
            let py = self.py;
            return self.enc.get(idx as u64).map_err(|e| enc_err(py, e));
        }
        // A negative index can only come from a primed memo; write what C writes.
        if self.proto == 0 {
            self.enc.write_raw(format!("g{idx}\n").as_bytes());
        } else {
            self.enc
                .write_raw(&[Opcode::BINGET.byte(), (idx & 0xff) as u8]);
        }
        Ok(())
    }

    /// `memo_get` (raises `KeyError` if `obj` is not memoized).
    fn memo_get(&mut self, obj: &Bound<'py, PyAny>) -> PyResult<()> {
        match self.memo.get(obj) {
            Some(idx) => self.write_get(idx),
            None => Err(PyKeyError::new_err(obj.clone().unbind())),
        }
    }

    // -----------------------------------------------------------------------------------
    // Fast mode
    // -----------------------------------------------------------------------------------

    fn fast_save_enter(&mut self, obj: &Bound<'py, PyAny>) -> PyResult<()> {
        self.fast_state.nesting += 1;
        if self.fast_state.nesting >= FAST_NESTING_LIMIT {
            let key = obj.as_ptr() as usize;
            let set = self.fast_state.memo.get_or_insert_with(HashSet::new);
            if !set.insert(key) {
                self.fast_state.nesting = -1;
                return Err(PyValueError::new_err(format!(
                    "fast mode: can't pickle cyclic objects including object type {} at {:#x}",
                    type_name(obj),
                    key
                )));
            }
        }
        Ok(())
    }

    fn fast_save_leave(&mut self, obj: &Bound<'py, PyAny>) -> PyResult<()> {
        let was = self.fast_state.nesting;
        self.fast_state.nesting -= 1;
        if was >= FAST_NESTING_LIMIT {
            let key = obj.as_ptr() as usize;
            let removed = self
                .fast_state
                .memo
                .as_mut()
                .is_some_and(|set| set.remove(&key));
            if !removed {
                return Err(PyKeyError::new_err(key));
            }
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------
    // Scalars
    // -----------------------------------------------------------------------------------

    fn save_long(&mut self, obj: &Bound<'py, PyAny>) -> PyResult<()> {
        let mut overflow: std::os::raw::c_int = 0;
        // SAFETY: GIL held; `obj` is an exact int, for which `PyLong_AsLongLongAndOverflow`
        // cannot fail other than by reporting overflow.
        let v = unsafe { ffi::PyLong_AsLongLongAndOverflow(obj.as_ptr(), &mut overflow) };
        if overflow == 0 {
            if v == -1 {
                if let Some(e) = PyErr::take(self.py) {
                    return Err(e);
                }
            }
            self.enc.int(v);
            return Ok(());
        }
        self.generic(|s| s.save_big_long(obj))
    }

    #[inline(never)]
    fn save_big_long(&mut self, obj: &Bound<'py, PyAny>) -> PyResult<()> {
        let py = self.py;
        if self.proto >= 2 {
            let nbits: u64 = obj.call_method0(intern!(py, "bit_length"))?.extract()?;
            let mut nbytes = (nbits >> 3) + 1;
            if nbytes > 0x7fff_ffff {
                return Err(PyOverflowError::new_err("int too large to pickle"));
            }
            let negative = obj.lt(0)?;
            let kwargs = PyDict::new(py);
            kwargs.set_item(intern!(py, "signed"), true)?;
            let raw = obj.call_method(
                intern!(py, "to_bytes"),
                (nbytes, intern!(py, "little")),
                Some(&kwargs),
            )?;
            let raw = raw.cast::<PyBytes>()?.as_bytes();
            let n = nbytes as usize;
            if negative && n > 1 && raw[n - 1] == 0xff && raw[n - 2] & 0x80 != 0 {
                nbytes -= 1;
            }
            let n = nbytes as usize;
            if n < 256 {
                self.enc.write_raw(&[Opcode::LONG1.byte(), n as u8]);
            } else {
                let mut h = [Opcode::LONG4.byte(), 0, 0, 0, 0];
                h[1..].copy_from_slice(&(n as u32).to_le_bytes());
                self.enc.write_raw(&h);
            }
            self.enc.write_raw(&raw[..n]);
        } else {
            let repr = obj.repr()?;
            self.enc.write_raw(b"L");
            self.enc.write_raw(repr.to_str()?.as_bytes());
            self.enc.write_raw(b"L\n");
        }
        Ok(())
    }

    /// Whether a payload of `len` bytes is written straight to the file (`_Pickler_write_bytes`
    /// with `bypass_buffer` and a file).
    #[inline]
    fn bypass(&self, len: usize) -> bool {
        len >= FRAME_SIZE_TARGET && self.file.is_some()
    }

    /// Header in the buffer (outside any frame), buffer flushed, then `file.write(payload)`.
    fn write_direct(&mut self, header: &[u8], payload: &Bound<'py, PyAny>) -> PyResult<()> {
        let py = self.py;
        self.enc.write_large_header(header);
        self.enc.flush().map_err(|e| enc_err(py, e))?;
        if let Some(write) = &self.file {
            write.call1((payload,))?;
        }
        Ok(())
    }

    fn bytes_header(&self, size: usize, header: &mut [u8; 9]) -> PyResult<usize> {
        if size <= 0xff {
            header[0] = Opcode::SHORT_BINBYTES.byte();
            header[1] = size as u8;
            Ok(2)
        } else if let Ok(n) = u32::try_from(size) {
            header[0] = Opcode::BINBYTES.byte();
            header[1..5].copy_from_slice(&n.to_le_bytes());
            Ok(5)
        } else if self.proto >= 4 {
            header[0] = Opcode::BINBYTES8.byte();
            header[1..9].copy_from_slice(&(size as u64).to_le_bytes());
            Ok(9)
        } else {
            Err(PyOverflowError::new_err(
                "serializing a bytes object larger than 4 GiB requires pickle protocol 4 or higher",
            ))
        }
    }

    fn save_bytes(&mut self, obj: &Bound<'py, PyAny>, unique: bool) -> PyResult<()> {
        if self.proto < 3 {
            return self.generic(|s| s.save_bytes_reduce(obj));
        }
        // SAFETY: only called for exact `bytes`.
        let b = unsafe { obj.cast_unchecked::<PyBytes>() };
        let data = b.as_bytes();
        let mut header = [0u8; 9];
        let hlen = self.bytes_header(data.len(), &mut header)?;
        self.write_payload(&header[..hlen], data, obj)?;
        self.memo_put_unique(obj, unique)
    }

    /// `bytes` below protocol 3: `_codecs.encode(text, 'latin1')` or `bytes()`.
    #[inline(never)]
    fn save_bytes_reduce(&mut self, obj: &Bound<'py, PyAny>) -> PyResult<()> {
        let py = self.py;
        // SAFETY: only called for exact `bytes`.
        let b = unsafe { obj.cast_unchecked::<PyBytes>() };
        {
            let data = b.as_bytes();
            let rv = if data.is_empty() {
                PyTuple::new(
                    py,
                    [
                        PyBytes::type_object(py).into_any(),
                        PyTuple::empty(py).into_any(),
                    ],
                )?
            } else {
                // SAFETY: GIL held; `data` is the live bytes object's buffer, only read by
                // `PyUnicode_DecodeLatin1`, which returns a new reference or NULL with an
                // exception set.
                let text = unsafe {
                    Bound::from_owned_ptr_or_err(
                        py,
                        ffi::PyUnicode_DecodeLatin1(
                            data.as_ptr().cast(),
                            data.len() as ffi::Py_ssize_t,
                            c"strict".as_ptr(),
                        ),
                    )?
                };
                let args = PyTuple::new(py, [text, intern!(py, "latin1").clone().into_any()])?;
                PyTuple::new(py, [self.g.codecs_encode.bind(py).clone(), args.into_any()])?
            };
            self.save_reduce(&rv, Some(obj))
        }
    }

    /// Write an immutable payload (`bytes`, `str`'s UTF-8, a read-only export held open).
    fn write_payload(
        &mut self,
        header: &[u8],
        data: &[u8],
        obj: &Bound<'py, PyAny>,
    ) -> PyResult<()> {
        self.write_payload_view(header, data, obj, &mut None)
    }

    /// [`write_payload`](Self::write_payload) where `data` belongs to the export `view` of
    /// `obj` (moved into a deferred segment if the payload is deferred).
    fn write_payload_view(
        &mut self,
        header: &[u8],
        data: &[u8],
        obj: &Bound<'py, PyAny>,
        view: &mut Option<BufferView>,
    ) -> PyResult<()> {
        if self.bypass(data.len()) {
            return self.write_direct(header, obj);
        }
        if self.defer_payload(header, data, obj, view) {
            return Ok(());
        }
        let py = self.py;
        self.enc
            .write_bytes(header, data)
            .map_err(|e| enc_err(py, e))
    }

    fn save_bytearray(&mut self, obj: &Bound<'py, PyAny>) -> PyResult<()> {
        let py = self.py;
        // SAFETY: only called for exact `bytearray`.
        let ba = unsafe { obj.cast_unchecked::<PyByteArray>() };
        if self.proto < 5 {
            let ty = PyByteArray::type_object(py).into_any();
            let rv = if ba.len() == 0 {
                PyTuple::new(py, [ty, PyTuple::empty(py).into_any()])?
            } else {
                // A fresh bytes object, as C's PyBytes_FromObject makes: `PyBytes::new` would
                // return CPython's cached one-byte singleton, which the memo would then share
                // with an equal `bytes` elsewhere in the data (a GET where C writes the bytes).
                let data = ba.to_vec();
                let bytes = PyBytes::new_with(py, data.len(), |buf| {
                    buf.copy_from_slice(&data);
                    Ok(())
                })?;
                PyTuple::new(py, [ty, PyTuple::new(py, [bytes])?.into_any()])?
            };
            return self.save_reduce(&rv, Some(obj));
        }
        let len = ba.len();
        let mut header = [0u8; 9];
        header[0] = Opcode::BYTEARRAY8.byte();
        header[1..].copy_from_slice(&(len as u64).to_le_bytes());
        if self.bypass(len) {
            self.write_direct(&header, obj)?;
        } else if len >= DEFER_MIN && self.file.is_none() {
            // Held exported until the end, so it cannot be resized under the deferred copy.
            let view = BufferView::get(obj)?;
            let data = view.data();
            // SAFETY: as in `save_picklebuffer`: the slice borrows the export's memory, which
            // the segment keeps alive.
            let data = unsafe { std::slice::from_raw_parts(data.as_ptr(), data.len()) };
            let mut view = Some(view);
            self.defer_payload(&header, data, obj, &mut view);
        } else {
            // SAFETY: no Python code runs while the slice is alive (`write_bytes` only calls
            // into the sink for payloads that `bypass` routes to `write_direct` instead), so
            // the bytearray cannot be resized or freed under it.
            let data = unsafe { ba.as_bytes() };
            self.enc
                .write_bytes(&header, data)
                .map_err(|e| enc_err(py, e))?;
        }
        self.memo_put(obj)
    }

    fn save_picklebuffer(&mut self, obj: &Bound<'py, PyAny>) -> PyResult<()> {
        let py = self.py;
        if self.proto < 5 {
            return Err(pickling_error(
                py,
                "PickleBuffer can only pickled with protocol >= 5",
            ));
        }
        let view = BufferView::get(obj)?;
        if !view.is_contiguous() {
            return Err(pickling_error(
                py,
                "PickleBuffer can not be pickled when pointing to a non-contiguous buffer",
            ));
        }
        let in_band = match &self.hooks.buffer_callback {
            Some(cb) => cb.call1((obj,))?.is_truthy()?,
            None => true,
        };
        if in_band {
            let mut header = [0u8; 9];
            let hlen = if view.readonly() {
                self.bytes_header(view.len(), &mut header)?
            } else {
                header[0] = Opcode::BYTEARRAY8.byte();
                header[1..].copy_from_slice(&(view.len() as u64).to_le_bytes());
                9
            };
            let data = view.data();
            // SAFETY: the slice borrows the export's memory, not `view` itself: it stays valid
            // while the export is held, by `view` here or, once moved, by the deferred segment
            // (which outlives the encoder's use of it).
            let data = unsafe { std::slice::from_raw_parts(data.as_ptr(), data.len()) };
            let mut view = Some(view);
            self.write_payload_view(&header[..hlen], data, obj, &mut view)?;
            drop(view);
            self.memo_put(obj)
        } else {
            self.enc.opcode(Opcode::NEXT_BUFFER);
            if view.readonly() {
                self.enc.opcode(Opcode::READONLY_BUFFER);
            }
            Ok(())
        }
    }

    fn save_unicode(&mut self, obj: &Bound<'py, PyAny>, unique: bool) -> PyResult<()> {
        if self.proto == 0 {
            return self.generic(|s| s.save_unicode_slow(obj));
        }
        let p = obj.as_ptr();
        // SAFETY: `obj` is an exact, live `str` (checked by the caller), so reading its
        // header is sound; a compact ASCII string's characters are its UTF-8 bytes, stored
        // inline after the header, `GET_LENGTH` of them, alive as long as `obj` (immutable).
        let data = unsafe {
            if ffi::PyUnicode_IS_COMPACT_ASCII(p) != 0 {
                Some(std::slice::from_raw_parts(
                    ffi::PyUnicode_DATA(p) as *const u8,
                    ffi::PyUnicode_GET_LENGTH(p) as usize,
                ))
            } else {
                let mut size: ffi::Py_ssize_t = 0;
                let u = ffi::PyUnicode_AsUTF8AndSize(p, &mut size);
                if u.is_null() {
                    // Lone surrogates: encoded with `surrogatepass` below.
                    ffi::PyErr_Clear();
                    None
                } else {
                    // The UTF-8 form is cached in the string object and lives as long as it.
                    Some(std::slice::from_raw_parts(u as *const u8, size as usize))
                }
            }
        };
        match data {
            Some(data) => {
                let py = self.py;
                if data.len() < FRAME_SIZE_TARGET {
                    self.enc.unicode_utf8(data).map_err(|e| enc_err(py, e))?;
                } else {
                    self.write_unicode_binary(data)?;
                }
                self.memo_put_unique(obj, unique)
            }
            None => self.generic(|s| s.save_unicode_slow(obj)),
        }
    }

    /// `str` at protocol 0, or with lone surrogates.
    #[inline(never)]
    fn save_unicode_slow(&mut self, obj: &Bound<'py, PyAny>) -> PyResult<()> {
        let py = self.py;
        // SAFETY: only called for exact `str`.
        let s = unsafe { obj.cast_unchecked::<PyString>() };
        if self.proto == 0 {
            let encoded = utf8_surrogatepass(s)?;
            let text = brinery::PyString::from_utf8_surrogatepass(encoded.as_bytes())
                .map_err(PyValueError::new_err)?;
            self.enc.str(&text).map_err(|e| enc_err(py, e))?;
        } else {
            match s.to_str() {
                Ok(text) => self.write_unicode_binary(text.as_bytes())?,
                Err(_) => {
                    let encoded = utf8_surrogatepass(s)?;
                    self.write_unicode_binary(encoded.as_bytes())?;
                }
            }
        }
        self.memo_put(obj)
    }

    fn write_unicode_binary(&mut self, data: &[u8]) -> PyResult<()> {
        let py = self.py;
        let Some((header, hlen)) = brinery::encode::unicode_header(self.proto, data.len()) else {
            return Err(PyOverflowError::new_err(
                "serializing a string larger than 4 GiB requires pickle protocol 4 or higher",
            ));
        };
        // The data lives in an immutable str (or bytes) that we hold: writing it through the
        // sink, which runs Python code, cannot invalidate it.
        self.enc
            .write_bytes(&header[..hlen], data)
            .map_err(|e| enc_err(py, e))
    }

    // -----------------------------------------------------------------------------------
    // Containers
    // -----------------------------------------------------------------------------------

    fn save_tuple(&mut self, t: &Bound<'py, PyTuple>, unique: bool) -> PyResult<()> {
        let len = t.len();
        if len == 0 {
            self.enc.empty_tuple();
            return Ok(());
        }
        self.enc.tuple_start(len);
        // A tuple's items are saved before the tuple is memoized, so a tuple inside a cycle is
        // walked twice: only a unique tuple's items may be unique. Python code run by an item
        // may give the tuple another reference (even one walked from inside this walk), or
        // take away its container's, leaving ours the last one: from then on neither the tuple
        // nor its items count as unique, and the tuple's memo entry holds a reference, which
        // keeps it (and whatever was memoized under it without one) alive and its address
        // unused. (A list or dict is memoized before its items: Python code run by them finds
        // its entry pending and moves it to the table first, see `generic`.)
        let runs = self.python_runs;
        for item in t.iter_borrowed() {
            // `item` is live: the tuple holds it, and tuples are immutable.
            self.save_item(item.as_ptr(), unique && self.python_runs == runs, 0)?;
        }
        let unique = unique && self.python_runs == runs;
        let obj = t.as_any();
        self.sync_memo_clear();
        if !unique && self.memo.contains(obj) {
            self.enc.tuple_pop_recursive(len);
            return self.memo_get(obj);
        }
        self.enc.tuple_end(len);
        self.memo_put_unique(obj, unique && self.unique_ok)
    }

    /// Run `body` between C's `fast_save_enter`/`fast_save_leave` when in fast mode (cycle
    /// detection without a memo); the leave runs even if `body` failed.
    fn with_fast_guard(
        &mut self,
        obj: &Bound<'py, PyAny>,
        body: impl FnOnce(&mut Self) -> PyResult<()>,
    ) -> PyResult<()> {
        if !self.fast {
            return body(self);
        }
        let status = self.fast_save_enter(obj).and_then(|()| body(self));
        let left = self.fast_save_leave(obj);
        status.and(left)
    }

    fn save_list(&mut self, list: &Bound<'py, PyList>, unique: bool) -> PyResult<()> {
        self.with_fast_guard(list.as_any(), |s| s.save_list_body(list, unique))
    }

    fn save_list_body(&mut self, list: &Bound<'py, PyList>, unique: bool) -> PyResult<()> {
        self.enc.empty_list();
        let len = list.len();
        self.memo_put_unique(list.as_any(), unique)?;
        if len != 0 {
            if self.proto > 0 {
                let _guard = RecursionGuard::enter(self.py)?;
                self.batch_list_exact(list)?;
            } else {
                let iter = list.try_iter()?;
                let _guard = RecursionGuard::enter(self.py)?;
                self.batch_list(&iter)?;
            }
        }
        Ok(())
    }

    /// Save a container's item, given as a borrowed pointer `p` that is valid now (read from
    /// the container with no Python code run since). `None`, bools, ints and floats are
    /// written inline, their value read before the opcode boundary (which may call
    /// `file.write`); anything else gets a new reference first, as C does. The item is unique
    /// (see [`save_obj`](Self::save_obj)) if `allow_unique` and its reference count is
    /// `1 + extra_refs` (`extra_refs`: references the caller holds).
    #[inline(always)]
    fn save_item(
        &mut self,
        p: *mut ffi::PyObject,
        allow_unique: bool,
        extra_refs: ffi::Py_ssize_t,
    ) -> PyResult<()> {
        let py = self.py;
        // SAFETY: `p` is a live object (the caller's contract); its type and value are read
        // before anything can run; past the boundary only the copied value is used.
        unsafe {
            if self.scalars_inline {
                let tp = ffi::Py_TYPE(p);
                if tp == self.types.int {
                    if let Some(v) = self.small_int(p) {
                        self.enc.opcode_boundary().map_err(|e| enc_err(py, e))?;
                        self.enc.int(v);
                        return Ok(());
                    }
                } else if tp == self.types.float {
                    let v = ffi::PyFloat_AS_DOUBLE(p);
                    self.enc.opcode_boundary().map_err(|e| enc_err(py, e))?;
                    self.enc.float(v);
                    return Ok(());
                } else if p == ffi::Py_None() {
                    self.enc.opcode_boundary().map_err(|e| enc_err(py, e))?;
                    self.enc.none();
                    return Ok(());
                } else if tp == self.types.bool_ {
                    let v = p == ffi::Py_True();
                    self.enc.opcode_boundary().map_err(|e| enc_err(py, e))?;
                    self.enc.bool(v);
                    return Ok(());
                }
            }
            let unique = allow_unique && self.unique_ok && ffi::Py_REFCNT(p) == 1 + extra_refs;
            let item = Bound::from_borrowed_ptr(py, p);
            self.save_obj(&item, false, unique)
        }
    }

    /// Write the list items from `start` on, at most `max` of them, for as long as they are
    /// scalars of at most [`SCALAR_MAX`] bytes (`None`, bools, ints of 32 bits, floats) and no
    /// opcode boundary is due: what [`save_item`](Self::save_item) writes for each, without
    /// its per-item checks. Returns how many items were written.
    #[inline(never)]
    fn list_scalar_run(&mut self, lp: *mut ffi::PyObject, start: usize, max: usize) -> usize {
        // SAFETY: `lp` is a live list; no Python code runs during the run, so its length and
        // items stay as read.
        let len = unsafe { ffi::PyList_GET_SIZE(lp) } as usize;
        let avail = max.min(len.saturating_sub(start));
        if avail == 0 {
            return 0;
        }
        let (types, proto) = (self.types, self.proto);
        self.enc.scalar_run(avail, |buf, k| {
            let (mut n, mut off) = (0, 0);
            while n < k {
                // SAFETY: `start + n` is below the length read above.
                let p = unsafe { ffi::PyList_GET_ITEM(lp, (start + n) as ffi::Py_ssize_t) };
                // SAFETY: `p` is a live item of the list.
                match unsafe { scalar_bytes(types, proto, p, &mut buf[off..off + SCALAR_MAX]) } {
                    Some(w) => off += w,
                    None => break,
                }
                n += 1;
            }
            (n, off)
        })
    }

    /// Whether `p` is `None`, a bool, an int or a float (exactly).
    ///
    /// # Safety
    /// `p` must be a live object.
    #[inline(always)]
    unsafe fn is_scalar(&self, p: *mut ffi::PyObject) -> bool {
        // SAFETY: the caller's contract; `Py_None` only takes the address of the singleton.
        let (tp, none) = unsafe { (ffi::Py_TYPE(p), ffi::Py_None()) };
        let t = self.types;
        tp == t.int || tp == t.float || tp == t.bool_ || p == none
    }

    /// See [`small_int`].
    ///
    /// # Safety
    /// `p` must be a live object of exact type `int`.
    #[inline(always)]
    unsafe fn small_int(&self, p: *mut ffi::PyObject) -> Option<i64> {
        // SAFETY: the caller's contract.
        unsafe { small_int(self.types, p) }
    }

    fn batch_list_exact(&mut self, list: &Bound<'py, PyList>) -> PyResult<()> {
        let lp = list.as_ptr();
        if list.len() == 1 {
            // SAFETY: index 0 of a list of length 1; nothing has run since the length check.
            let p = unsafe { ffi::PyList_GET_ITEM(lp, 0) };
            self.save_item(p, true, 0)?;
            self.enc.opcode(Opcode::APPEND);
            return Ok(());
        }
        let mut total = 0;
        loop {
            let mut this_batch = 0;
            self.enc.mark();
            while total < list.len() {
                // SAFETY: `total` is below the current length, just checked.
                let p = unsafe { ffi::PyList_GET_ITEM(lp, total as ffi::Py_ssize_t) };
                // SAFETY: `p` is a live item.
                if self.scalars_inline && unsafe { self.is_scalar(p) } {
                    let n = self.list_scalar_run(lp, total, BATCH_SIZE - this_batch);
                    total += n;
                    this_batch += n;
                    if this_batch == BATCH_SIZE || total >= list.len() {
                        break;
                    }
                    if n != 0 {
                        continue;
                    }
                }
                self.save_item(p, true, 0)?;
                total += 1;
                this_batch += 1;
                if this_batch == BATCH_SIZE {
                    break;
                }
            }
            self.enc.opcode(Opcode::APPENDS);
            if total >= list.len() {
                return Ok(());
            }
        }
    }

    /// `batch_list` over an iterator.
    fn batch_list(&mut self, iter: &Bound<'py, PyIterator>) -> PyResult<()> {
        self.without_unique(|s| s.batch_list_body(iter))
    }

    fn batch_list_body(&mut self, iter: &Bound<'py, PyIterator>) -> PyResult<()> {
        let mut iter = iter.clone();
        if self.proto == 0 {
            for item in iter.by_ref() {
                self.save(&item?, false)?;
                self.enc.opcode(Opcode::APPEND);
            }
            return Ok(());
        }
        loop {
            let Some(first) = iter.next().transpose()? else {
                return Ok(());
            };
            let Some(mut obj) = iter.next().transpose()? else {
                self.save(&first, false)?;
                self.enc.opcode(Opcode::APPEND);
                return Ok(());
            };
            self.enc.mark();
            self.save(&first, false)?;
            drop(first);
            let mut n = 1;
            loop {
                self.save(&obj, false)?;
                n += 1;
                if n == BATCH_SIZE {
                    break;
                }
                match iter.next().transpose()? {
                    Some(o) => obj = o,
                    None => break,
                }
            }
            self.enc.opcode(Opcode::APPENDS);
            if n != BATCH_SIZE {
                return Ok(());
            }
        }
    }

    fn save_dict(&mut self, dict: &Bound<'py, PyDict>, unique: bool) -> PyResult<()> {
        self.with_fast_guard(dict.as_any(), |s| s.save_dict_body(dict, unique))
    }

    fn save_dict_body(&mut self, dict: &Bound<'py, PyDict>, unique: bool) -> PyResult<()> {
        let py = self.py;
        self.enc.empty_dict();
        self.memo_put_unique(dict.as_any(), unique)?;
        if dict.len() != 0 {
            if self.proto > 0 {
                let _guard = RecursionGuard::enter(py)?;
                self.batch_dict_exact(dict)?;
            } else {
                let items = dict.call_method0(intern!(py, "items"))?;
                let iter = items.try_iter()?;
                let _guard = RecursionGuard::enter(py)?;
                self.batch_dict(&iter)?;
            }
        }
        Ok(())
    }

    fn batch_dict_exact(&mut self, dict: &Bound<'py, PyDict>) -> PyResult<()> {
        let size = dict.len();
        let mut pos: ffi::Py_ssize_t = 0;
        if size == 1 {
            if let Some((k, v)) = dict_next(dict, &mut pos) {
                self.save_dict_item(k, v)?;
            }
            self.enc.opcode(Opcode::SETITEM);
            return Ok(());
        }
        // Runs of scalar pairs are tried until one writes nothing (a dict keyed by strings
        // stops after its first pair).
        let mut runs = self.scalars_inline;
        let mut consumed = 0;
        loop {
            let mut i = 0;
            self.enc.mark();
            while i < BATCH_SIZE {
                if runs {
                    let n = self.dict_scalar_run(dict.as_ptr(), &mut pos, consumed, BATCH_SIZE - i);
                    runs = n != 0;
                    i += n;
                    consumed += n;
                    if i == BATCH_SIZE {
                        break;
                    }
                }
                let Some((k, v)) = dict_next(dict, &mut pos) else {
                    break;
                };
                self.save_dict_item(k, v)?;
                i += 1;
                consumed += 1;
            }
            self.enc.opcode(Opcode::SETITEMS);
            if dict.len() != size {
                return Err(PyRuntimeError::new_err(
                    "dictionary changed size during iteration",
                ));
            }
            if i != BATCH_SIZE {
                return Ok(());
            }
        }
    }

    /// Write the dict's pairs from `pos` on, at most `max` of them, for as long as key and
    /// value are both scalars of at most [`SCALAR_MAX`] bytes and no opcode boundary is due
    /// (see [`list_scalar_run`](Self::list_scalar_run)); `pos` is left after the last pair
    /// written. Returns how many pairs were written.
    #[inline(never)]
    fn dict_scalar_run(
        &mut self,
        dp: *mut ffi::PyObject,
        pos: &mut ffi::Py_ssize_t,
        consumed: usize,
        max: usize,
    ) -> usize {
        let (types, proto) = (self.types, self.proto);
        // SAFETY: `dp` is a live dict, only read; the peeked pair is borrowed and only its
        // type is looked at.
        let first_is_scalar = unsafe {
            let (mut key, mut value) = (std::ptr::null_mut(), std::ptr::null_mut());
            let mut next = *pos;
            ffi::PyDict_Next(dp, &mut next, &mut key, &mut value) != 0
                && self.is_scalar(key)
                && self.is_scalar(value)
        };
        if !first_is_scalar {
            return 0;
        }
        // SAFETY: `dp` is a live dict.
        let left = unsafe { ffi::PyDict_Size(dp) } as usize;
        let max = max.min(left.saturating_sub(consumed));
        let written = self.enc.scalar_run(max * 2, |buf, k| {
            let (mut n, mut off) = (0, 0);
            while n + 2 <= k {
                let (mut key, mut value) = (std::ptr::null_mut(), std::ptr::null_mut());
                let mut next = *pos;
                // SAFETY: `dp` is a live dict; `PyDict_Next` only reads it and returns
                // borrowed references, valid while no Python code runs (none does here).
                unsafe {
                    if ffi::PyDict_Next(dp, &mut next, &mut key, &mut value) == 0 {
                        break;
                    }
                    let Some(a) = scalar_bytes(types, proto, key, &mut buf[off..off + SCALAR_MAX])
                    else {
                        break;
                    };
                    let Some(b) =
                        scalar_bytes(types, proto, value, &mut buf[off + a..off + a + SCALAR_MAX])
                    else {
                        break;
                    };
                    off += a + b;
                }
                *pos = next;
                n += 2;
            }
            (n, off)
        });
        written / 2
    }

    /// A key and value as `dict_next` returned them, each holding a reference taken before
    /// anything ran, as C does (saving the key may run Python code that changes the dict).
    #[inline(always)]
    fn save_dict_item(&mut self, k: Bound<'py, PyAny>, v: Bound<'py, PyAny>) -> PyResult<()> {
        let runs = self.python_runs;
        // A key is never taken for met once: the dicts that share a keys table (the instance
        // `__dict__`s of one class and their copies) hold one reference to it between them.
        self.save_item(k.as_ptr(), false, 1)?;
        drop(k);
        // Python code run while saving the key may have moved the value out of the dict into
        // another container: then its reference count no longer says it is met once.
        self.save_item(v.as_ptr(), self.python_runs == runs, 1)
    }

    /// A `(key, value)` item of `batch_dict`.
    fn dict_item(item: &Bound<'py, PyAny>) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        match item.cast::<PyTuple>() {
            Ok(t) if t.len() == 2 => Ok((t.get_item(0)?, t.get_item(1)?)),
            _ => Err(PyTypeError::new_err(
                "dict items iterator must return 2-tuples",
            )),
        }
    }

    /// `batch_dict` over an iterator of pairs.
    fn batch_dict(&mut self, iter: &Bound<'py, PyIterator>) -> PyResult<()> {
        self.without_unique(|s| s.batch_dict_body(iter))
    }

    fn batch_dict_body(&mut self, iter: &Bound<'py, PyIterator>) -> PyResult<()> {
        let mut iter = iter.clone();
        if self.proto == 0 {
            for item in iter.by_ref() {
                let (k, v) = Self::dict_item(&item?)?;
                self.save(&k, false)?;
                self.save(&v, false)?;
                self.enc.opcode(Opcode::SETITEM);
            }
            return Ok(());
        }
        loop {
            let Some(first) = iter.next().transpose()? else {
                return Ok(());
            };
            let (k0, v0) = Self::dict_item(&first)?;
            let Some(mut obj) = iter.next().transpose()? else {
                self.save(&k0, false)?;
                self.save(&v0, false)?;
                self.enc.opcode(Opcode::SETITEM);
                return Ok(());
            };
            self.enc.mark();
            self.save(&k0, false)?;
            self.save(&v0, false)?;
            let mut n = 1;
            loop {
                let (k, v) = Self::dict_item(&obj)?;
                self.save(&k, false)?;
                self.save(&v, false)?;
                n += 1;
                if n == BATCH_SIZE {
                    break;
                }
                match iter.next().transpose()? {
                    Some(o) => obj = o,
                    None => break,
                }
            }
            self.enc.opcode(Opcode::SETITEMS);
            if n != BATCH_SIZE {
                return Ok(());
            }
        }
    }

    /// `(set_or_frozenset_type, (list(obj),))` for protocols below 4.
    fn reduce_as_list(&mut self, ty: Bound<'py, PyAny>, obj: &Bound<'py, PyAny>) -> PyResult<()> {
        let py = self.py;
        let items = PyList::type_object(py).call1((obj,))?;
        let rv = PyTuple::new(py, [ty, PyTuple::new(py, [items])?.into_any()])?;
        self.save_reduce(&rv, Some(obj))
    }

    fn save_set(&mut self, obj: &Bound<'py, PyAny>) -> PyResult<()> {
        let py = self.py;
        if self.proto < 4 {
            return self.reduce_as_list(PySet::type_object(py).into_any(), obj);
        }
        self.enc.opcode(Opcode::EMPTY_SET);
        self.memo_put(obj)?;
        // SAFETY: only called for exact `set`.
        let set = unsafe { obj.cast_unchecked::<PySet>() };
        let size = set.len();
        if size == 0 {
            return Ok(());
        }
        let mut iter = obj.try_iter()?;
        loop {
            let mut i = 0;
            self.enc.mark();
            for item in iter.by_ref() {
                self.save(&item?, false)?;
                i += 1;
                if i == BATCH_SIZE {
                    break;
                }
            }
            self.enc.opcode(Opcode::ADDITEMS);
            if set.len() != size {
                return Err(PyRuntimeError::new_err("set changed size during iteration"));
            }
            if i != BATCH_SIZE {
                return Ok(());
            }
        }
    }

    fn save_frozenset(&mut self, obj: &Bound<'py, PyAny>) -> PyResult<()> {
        let py = self.py;
        // C enters fast mode's nesting here and never leaves it (CPython 3.11 behaviour).
        if self.fast {
            self.fast_save_enter(obj)?;
        }
        if self.proto < 4 {
            return self.reduce_as_list(PyFrozenSet::type_object(py).into_any(), obj);
        }
        self.enc.mark();
        for item in obj.try_iter()? {
            self.save(&item?, false)?;
        }
        if self.memo.contains(obj) {
            self.enc.opcode(Opcode::POP_MARK);
            return self.memo_get(obj);
        }
        self.enc.opcode(Opcode::FROZENSET);
        self.memo_put(obj)
    }

    // -----------------------------------------------------------------------------------
    // Globals
    // -----------------------------------------------------------------------------------

    fn save_type(&mut self, obj: &Bound<'py, PyAny>) -> PyResult<()> {
        let py = self.py;
        let none = py.None().into_bound(py);
        let ellipsis = py.Ellipsis().into_bound(py);
        let not_impl = py.NotImplemented().into_bound(py);
        for singleton in [none, ellipsis, not_impl] {
            if obj.is(singleton.get_type().as_any()) {
                let rv = PyTuple::new(
                    py,
                    [
                        PyType::type_object(py).into_any(),
                        PyTuple::new(py, [singleton])?.into_any(),
                    ],
                )?;
                return self.save_reduce(&rv, Some(obj));
            }
        }
        self.save_global(obj, None)
    }

    fn save_global(
        &mut self,
        obj: &Bound<'py, PyAny>,
        name: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<()> {
        let py = self.py;
        if name.is_none() && self.g.extension_registry.bind(py).is_empty() {
            if let Some((module_name, name)) = global_names::lookup(obj) {
                self.write_global(module_name.into_any(), name.into_any())?;
                return self.memo_put(obj);
            }
        }
        let mut global_name = match name {
            Some(n) => n.clone(),
            None => match obj.getattr_opt(intern!(py, "__qualname__"))? {
                Some(n) => n,
                None => obj.getattr(intern!(py, "__name__"))?,
            },
        };

        let dotted_path = get_dotted_path(&global_name)?;
        let module_name = whichmodule(obj, &dotted_path)?;

        let module = match module_name.cast::<PyString>() {
            Ok(m) => PyModule::import(py, m).ok(),
            Err(_) => None,
        };
        let Some(module) = module else {
            return Err(pickling_error(
                py,
                format!(
                    "Can't pickle {}: import of module {} failed",
                    obj.repr()?,
                    module_name.repr()?
                ),
            ));
        };
        let module = module.into_any();
        let lastname = dotted_path.get_item(dotted_path.len() - 1)?;
        // C discards any lookup error here in favour of the PicklingError below.
        let found = get_deep_attribute(&module, &dotted_path).ok().flatten();
        let Some((cls, parent)) = found else {
            return Err(pickling_error(
                py,
                format!(
                    "Can't pickle {}: attribute lookup {} on {} failed",
                    obj.repr()?,
                    global_name.str()?,
                    module_name.str()?
                ),
            ));
        };
        if !cls.is(obj) {
            return Err(pickling_error(
                py,
                format!(
                    "Can't pickle {}: it's not the same object as {}.{}",
                    obj.repr()?,
                    module_name.str()?,
                    global_name.str()?
                ),
            ));
        }
        drop(cls);

        if self.proto >= 2 {
            let key = PyTuple::new(py, [module_name.clone(), global_name.clone()])?;
            if let Some(code_obj) = self.g.extension_registry.bind(py).get_item(&key)? {
                if !code_obj.is_instance_of::<PyInt>() {
                    return Err(pickling_error(
                        py,
                        format!(
                            "Can't pickle {}: extension code {} isn't an integer",
                            obj.repr()?,
                            code_obj.repr()?
                        ),
                    ));
                }
                let code: i64 = code_obj.extract()?;
                if code <= 0 || code > 0x7fff_ffff {
                    return Err(pickling_error(
                        py,
                        format!(
                            "Can't pickle {}: extension code {} is out of range",
                            obj.repr()?,
                            code
                        ),
                    ));
                }
                return self.enc.ext(code as u32).map_err(|e| enc_err(py, e));
            }
        }

        let parent_is_module = parent.is(&module);
        if parent_is_module {
            global_name = lastname.clone();
            if name.is_none() {
                global_names::remember(obj, &module, &module_name, &global_name);
            }
        }
        if parent_is_module {
            self.write_global(module_name, global_name)?;
        } else if self.proto >= 4 {
            self.save(&module_name, false)?;
            self.save(&global_name, false)?;
            self.enc.opcode(Opcode::STACK_GLOBAL);
        } else {
            let rv = PyTuple::new(
                py,
                [
                    self.g.getattr.bind(py).clone(),
                    PyTuple::new(py, [parent, lastname])?.into_any(),
                ],
            )?;
            self.save_reduce(&rv, None)?;
        }
        self.memo_put(obj)
    }

    /// The reference to `module_name.global_name` (a name found directly in its module):
    /// `STACK_GLOBAL` at protocol 4+, else `GLOBAL`.
    fn write_global(
        &mut self,
        module_name: Bound<'py, PyAny>,
        global_name: Bound<'py, PyAny>,
    ) -> PyResult<()> {
        if self.proto >= 4 {
            self.save(&module_name, false)?;
            self.save(&global_name, false)?;
            self.enc.opcode(Opcode::STACK_GLOBAL);
            Ok(())
        } else {
            self.write_global_opcode(module_name, global_name)
        }
    }

    /// `GLOBAL module\nname\n`, with the Python 2 names at protocols below 3 (`fix_imports`).
    fn write_global_opcode(
        &mut self,
        module_name: Bound<'py, PyAny>,
        global_name: Bound<'py, PyAny>,
    ) -> PyResult<()> {
        let py = self.py;
        let mut module_name = module_name.cast_into::<PyString>()?;
        let mut global_name = global_name.cast_into::<PyString>()?;
        if self.proto < 3 && self.fix_imports {
            if let (Ok(m), Ok(n)) = (module_name.to_str(), global_name.to_str()) {
                if let Some((m2, n2)) = brinery::encode::python2_name(m, n) {
                    let new_module = PyString::new(py, m2);
                    if let Some(n2) = n2 {
                        global_name = PyString::new(py, n2);
                    }
                    module_name = new_module;
                }
            }
        }
        let encode = |s: &Bound<'py, PyString>, what: &str, proto: u8| -> PyResult<Vec<u8>> {
            let encoded = if proto == 3 {
                s.to_str().map(|t| t.as_bytes().to_vec()).ok()
            } else {
                s.to_str()
                    .ok()
                    .filter(|t| t.is_ascii())
                    .map(|t| t.as_bytes().to_vec())
            };
            encoded.ok_or_else(|| {
                pickling_error(
                    py,
                    format!("can't pickle {what} identifier '{s}' using pickle protocol {proto}"),
                )
            })
        };
        let m = encode(&module_name, "module", self.proto)?;
        let n = encode(&global_name, "global", self.proto)?;
        let mut line = Vec::with_capacity(m.len() + n.len() + 3);
        line.push(Opcode::GLOBAL.byte());
        line.extend_from_slice(&m);
        line.push(b'\n');
        line.extend_from_slice(&n);
        line.push(b'\n');
        self.enc.write_raw(&line);
        Ok(())
    }

    // -----------------------------------------------------------------------------------
    // Persistent ids
    // -----------------------------------------------------------------------------------

    /// `save_pers`: whether a persistent id was written.
    fn save_pers(&mut self, obj: &Bound<'py, PyAny>) -> PyResult<bool> {
        let py = self.py;
        let Some(func) = &self.hooks.pers_func else {
            return Ok(false);
        };
        let pid = match &self.hooks.pers_self {
            Some(me) => func.call1((me, obj))?,
            None => func.call1((obj,))?,
        };
        if pid.is_none() {
            return Ok(false);
        }
        if self.proto > 0 {
            self.save(&pid, true)?;
            self.enc.opcode(Opcode::BINPERSID);
        } else {
            let s = pid.str()?;
            let text = s.to_str().ok().filter(|t| t.is_ascii()).ok_or_else(|| {
                pickling_error(py, "persistent IDs in protocol 0 must be ASCII strings")
            })?;
            let mut line = Vec::with_capacity(text.len() + 2);
            line.push(Opcode::PERSID.byte());
            line.extend_from_slice(text.as_bytes());
            line.push(b'\n');
            self.enc.write_raw(&line);
        }
        Ok(true)
    }

    // -----------------------------------------------------------------------------------
    // Reductions
    // -----------------------------------------------------------------------------------

    fn save_reduce(
        &mut self,
        args: &Bound<'py, PyTuple>,
        obj: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<()> {
        let py = self.py;
        let size = args.len();
        if !(2..=6).contains(&size) {
            return Err(pickling_error(
                py,
                "tuple returned by __reduce__ must contain 2 through 6 elements",
            ));
        }
        let item = |i: usize| -> PyResult<Option<Bound<'py, PyAny>>> {
            if i < size {
                Ok(Some(args.get_item(i)?))
            } else {
                Ok(None)
            }
        };
        let callable = args.get_item(0)?;
        let argtup = args.get_item(1)?;
        let not_none = |o: Option<Bound<'py, PyAny>>| o.filter(|o| !o.is_none());
        let state = not_none(item(2)?);
        let listitems = not_none(item(3)?);
        let dictitems = not_none(item(4)?);
        let state_setter = not_none(item(5)?);

        if !callable.is_callable() {
            return Err(pickling_error(
                py,
                "first item of the tuple returned by __reduce__ must be callable",
            ));
        }
        let Ok(argtup) = argtup.cast_into::<PyTuple>() else {
            return Err(pickling_error(
                py,
                "second item of the tuple returned by __reduce__ must be a tuple",
            ));
        };
        let as_iter = |o: Option<Bound<'py, PyAny>>,
                       which: &str|
         -> PyResult<Option<Bound<'py, PyIterator>>> {
            match o {
                None => Ok(None),
                Some(o) => match o.cast::<PyIterator>() {
                    Ok(it) => Ok(Some(it.clone())),
                    Err(_) => Err(pickling_error(
                        py,
                        format!(
                            "{which} element of the tuple returned by __reduce__ must be an iterator, not {}",
                            type_name(&o)
                        ),
                    )),
                },
            }
        };
        let listitems = as_iter(listitems, "fourth")?;
        let dictitems = as_iter(dictitems, "fifth")?;
        if let Some(s) = &state_setter {
            if !s.is_callable() {
                return Err(pickling_error(
                    py,
                    format!(
                        "sixth element of the tuple returned by __reduce__ must be a function, not {}",
                        type_name(s)
                    ),
                ));
            }
        }

        let (mut use_newobj, mut use_newobj_ex) = (false, false);
        if self.proto >= 2 {
            let check = |name: &str| (name == "__newobj_ex__", name == "__newobj__");
            if let Some(found) = plain_class_name(&callable, check) {
                (use_newobj_ex, use_newobj) = found;
            } else if let Some(name) = callable.getattr_opt(intern!(py, "__name__"))? {
                if let Ok(name) = name.cast::<PyString>() {
                    use_newobj_ex = name.to_str().is_ok_and(|n| n == "__newobj_ex__");
                    if !use_newobj_ex {
                        use_newobj = name.to_str().is_ok_and(|n| n == "__newobj__");
                    }
                }
            }
        }

        if use_newobj_ex {
            self.save_newobj_ex(&argtup)?;
        } else if use_newobj {
            if argtup.is_empty() {
                return Err(pickling_error(py, "__newobj__ arglist is empty"));
            }
            let cls = argtup.get_item(0)?;
            if !cls.is_instance_of::<PyType>() {
                return Err(pickling_error(
                    py,
                    "args[0] from __newobj__ args is not a type",
                ));
            }
            if let Some(obj) = obj {
                let obj_class = match obj.getattr_opt(intern!(py, "__class__"))? {
                    Some(c) => c,
                    None => obj.get_type().into_any(),
                };
                if !obj_class.is(&cls) {
                    return Err(pickling_error(
                        py,
                        "args[0] from __newobj__ args has the wrong class",
                    ));
                }
            }
            self.save(&cls, false)?;
            let newargtup = argtup.get_slice(1, argtup.len());
            self.save(newargtup.as_any(), false)?;
            self.enc.opcode(Opcode::NEWOBJ);
        } else {
            self.save(&callable, false)?;
            self.save(argtup.as_any(), false)?;
            self.enc.opcode(Opcode::REDUCE);
        }

        if let Some(obj) = obj {
            if self.memo.contains(obj) {
                self.enc.opcode(Opcode::POP);
                return self.memo_get(obj);
            }
            self.memo_put(obj)?;
        }

        if let Some(it) = &listitems {
            self.batch_list(it)?;
        }
        if let Some(it) = &dictitems {
            self.batch_dict(it)?;
        }
        if let Some(state) = state {
            match state_setter {
                None => {
                    self.save(&state, false)?;
                    self.enc.opcode(Opcode::BUILD);
                }
                Some(setter) => {
                    self.save(&setter, false)?;
                    // `obj` is NULL only for save_global's getattr reduction, which has no state.
                    let obj = obj.cloned().unwrap_or_else(|| py.None().into_bound(py));
                    self.save(&obj, false)?;
                    self.save(&state, false)?;
                    self.enc.opcode(Opcode::TUPLE2);
                    self.enc.opcode(Opcode::REDUCE);
                    self.enc.opcode(Opcode::POP);
                }
            }
        }
        Ok(())
    }

    #[inline(never)]
    fn save_newobj_ex(&mut self, argtup: &Bound<'py, PyTuple>) -> PyResult<()> {
        let py = self.py;
        if argtup.len() != 3 {
            return Err(pickling_error(
                py,
                format!(
                    "length of the NEWOBJ_EX argument tuple must be exactly 3, not {}",
                    argtup.len()
                ),
            ));
        }
        let cls = argtup.get_item(0)?;
        if !cls.is_instance_of::<PyType>() {
            return Err(pickling_error(
                py,
                format!(
                    "first item from NEWOBJ_EX argument tuple must be a class, not {}",
                    type_name(&cls)
                ),
            ));
        }
        let args = argtup.get_item(1)?;
        let Ok(args) = args.cast_into::<PyTuple>() else {
            return Err(pickling_error(
                py,
                format!(
                    "second item from NEWOBJ_EX argument tuple must be a tuple, not {}",
                    type_name(&argtup.get_item(1)?)
                ),
            ));
        };
        let kwargs = argtup.get_item(2)?;
        let Ok(kwargs) = kwargs.cast_into::<PyDict>() else {
            return Err(pickling_error(
                py,
                format!(
                    "third item from NEWOBJ_EX argument tuple must be a dict, not {}",
                    type_name(&argtup.get_item(2)?)
                ),
            ));
        };
        if self.proto >= 4 {
            self.save(&cls, false)?;
            self.save(args.as_any(), false)?;
            self.save(kwargs.as_any(), false)?;
            self.enc.opcode(Opcode::NEWOBJ_EX);
        } else {
            let cls_new = cls.getattr(intern!(py, "__new__"))?;
            let mut newargs = Vec::with_capacity(args.len() + 2);
            newargs.push(cls_new);
            newargs.push(cls.clone());
            newargs.extend(args.iter());
            let newargs = PyTuple::new(py, newargs)?;
            let callable = self.g.partial.bind(py).call(newargs, Some(&kwargs))?;
            self.save(&callable, false)?;
            self.save(PyTuple::empty(py).as_any(), false)?;
            self.enc.opcode(Opcode::REDUCE);
        }
        Ok(())
    }
}

/// Spell the scalar `p` into `out` as the encoder would (`none`, `bool`, `int` of 32 bits,
/// `float`, protocol 1+) and return its length, or `None` if it is not such a scalar.
///
/// # Safety
/// `p` must be a live object.
#[inline(always)]
unsafe fn scalar_bytes(
    types: &Types,
    proto: u8,
    p: *mut ffi::PyObject,
    out: &mut [u8],
) -> Option<usize> {
    // SAFETY: `p` is live (the caller's contract); `small_int` is given an exact int.
    unsafe {
        let tp = ffi::Py_TYPE(p);
        if tp == types.int {
            let v = small_int(types, p)?;
            let v = i32::try_from(v).ok()?;
            let (word, n) = binint_word(v);
            // All eight bytes (`out` has room for any scalar): one store, where copying `n`
            // bytes would call `memcpy` for every int.
            out[..8].copy_from_slice(&word.to_le_bytes());
            Some(n)
        } else if tp == types.float {
            out[..9].copy_from_slice(&binfloat_bytes(ffi::PyFloat_AS_DOUBLE(p)));
            Some(9)
        } else if p == ffi::Py_None() {
            out[0] = Opcode::NONE.byte();
            Some(1)
        } else if tp == types.bool_ {
            let v = p == ffi::Py_True();
            if proto >= 2 {
                out[0] = if v { Opcode::NEWTRUE } else { Opcode::NEWFALSE }.byte();
                Some(1)
            } else {
                out[..4].copy_from_slice(if v { b"I01\n" } else { b"I00\n" });
                Some(4)
            }
        } else {
            None
        }
    }
}

/// The value of an exact int of at most two digits, read in place; `None` for larger ones or
/// when the layout is not known.
///
/// # Safety
/// `p` must be a live object of exact type `int`.
#[inline(always)]
unsafe fn small_int(types: &Types, p: *mut ffi::PyObject) -> Option<i64> {
    if !types.long_digits {
        return None;
    }
    // SAFETY: CPython 3.11 with 30-bit digits (checked at start-up): an int is a
    // `PyVarObject` whose `ob_size` is its signed digit count, followed by that many `u32`
    // digits; we read at most `|ob_size|` of them.
    unsafe {
        let size = (*(p as *mut ffi::PyVarObject)).ob_size;
        let digits = (p as *const u8).add(std::mem::size_of::<ffi::PyVarObject>()) as *const u32;
        match size {
            0 => Some(0),
            1 => Some(i64::from(*digits)),
            -1 => Some(-i64::from(*digits)),
            2 | -2 => {
                let v = i64::from(*digits) | (i64::from(*digits.add(1)) << 30);
                Some(if size < 0 { -v } else { v })
            }
            _ => None,
        }
    }
}

/// `str.encode('utf-8', 'surrogatepass')`.
fn utf8_surrogatepass<'py>(s: &Bound<'py, PyString>) -> PyResult<Bound<'py, PyBytes>> {
    let py = s.py();
    Ok(s.call_method1(
        intern!(py, "encode"),
        (intern!(py, "utf-8"), intern!(py, "surrogatepass")),
    )?
    .cast_into::<PyBytes>()?)
}

/// `get_dotted_path(NULL, name)`: `name.split('.')`, refusing `<locals>`.
fn get_dotted_path<'py>(name: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
    let py = name.py();
    let Ok(s) = name.cast::<PyString>() else {
        return Err(PyTypeError::new_err(format!(
            "must be str, not {}",
            type_name(name)
        )));
    };
    // A name without a dot (nearly every class) is its own one-part path, the list `str.split`
    // returns for an exact `str` (holding the same object), without the method call.
    let parts = match s.to_str() {
        Ok(text) if !text.contains('.') && s.is_exact_instance_of::<PyString>() => {
            PyList::new(py, [s])?
        }
        _ => s
            .call_method1(intern!(py, "split"), (intern!(py, "."),))?
            .cast_into::<PyList>()?,
    };
    for part in parts.iter() {
        if part
            .cast::<PyString>()
            .is_ok_and(|p| p.to_str().is_ok_and(|p| p == "<locals>"))
        {
            return Err(PyAttributeError::new_err(format!(
                "Can't pickle local object {}",
                name.repr()?
            )));
        }
    }
    Ok(parts)
}

/// `get_deep_attribute`: follow `names` from `obj`; `None` if an attribute is missing.
/// Returns the attribute and its parent.
#[allow(clippy::type_complexity)]
fn get_deep_attribute<'py>(
    obj: &Bound<'py, PyAny>,
    names: &Bound<'py, PyList>,
) -> PyResult<Option<(Bound<'py, PyAny>, Bound<'py, PyAny>)>> {
    let mut cur = obj.clone();
    let mut parent = obj.clone();
    for name in names.iter() {
        let name = name.cast_into::<PyString>()?;
        match cur.getattr_opt(&name)? {
            Some(next) => {
                parent = cur;
                cur = next;
            }
            None => return Ok(None),
        }
    }
    Ok(Some((cur, parent)))
}

/// `whichmodule`: `obj.__module__`, or the first module in `sys.modules` holding `obj` under
/// its dotted path, or `'__main__'`.
/// `check(callable.__name__)` without the attribute lookup, when `callable` is a class whose
/// metaclass is exactly `type`: its `__name__` is then `type.__name__`'s value, the heap type's
/// `ht_name` or a static type's `tp_name` after the last dot (`type_name` in CPython). `None`
/// for anything else (or a name that is not valid UTF-8), so the caller does the lookup.
fn plain_class_name<R>(callable: &Bound<'_, PyAny>, check: impl FnOnce(&str) -> R) -> Option<R> {
    let o = callable.as_ptr();
    // SAFETY: `o` is alive (borrowed from `callable`). Once its type is exactly `type`, `o` is a
    // type object: a heap type's `ht_name` is a live `str` it owns, and a static type's
    // `tp_name` is a NUL-terminated C string it owns; both outlive this call.
    unsafe {
        if ffi::Py_TYPE(o) != std::ptr::addr_of_mut!(ffi::PyType_Type) {
            return None;
        }
        let tp = o.cast::<ffi::PyTypeObject>();
        if (*tp).tp_flags & ffi::Py_TPFLAGS_HEAPTYPE != 0 {
            let name = (*o.cast::<ffi::PyHeapTypeObject>()).ht_name;
            let name = Bound::from_borrowed_ptr(callable.py(), name);
            let name = name.cast::<PyString>().ok()?;
            Some(check(name.to_str().ok()?))
        } else {
            let full = CStr::from_ptr((*tp).tp_name).to_str().ok()?;
            Some(check(full.rsplit('.').next().unwrap_or(full)))
        }
    }
}

fn whichmodule<'py>(
    obj: &Bound<'py, PyAny>,
    dotted_path: &Bound<'py, PyList>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = obj.py();
    if let Some(m) = obj.getattr_opt(intern!(py, "__module__"))? {
        if !m.is_none() {
            return Ok(m);
        }
    }
    let modules = py
        .import("sys")?
        .getattr(intern!(py, "modules"))
        .map_err(|_| PyRuntimeError::new_err("unable to get sys.modules"))?;
    let check = |name: &Bound<'py, PyAny>, module: &Bound<'py, PyAny>| -> PyResult<bool> {
        if module.is_none() {
            return Ok(false);
        }
        if name
            .cast::<PyString>()
            .is_ok_and(|n| n.to_str().is_ok_and(|n| n == "__main__"))
        {
            return Ok(false);
        }
        Ok(matches!(get_deep_attribute(module, dotted_path)?, Some((c, _)) if c.is(obj)))
    };
    if let Ok(d) = modules.cast_exact::<PyDict>() {
        let mut pos: ffi::Py_ssize_t = 0;
        while let Some((name, module)) = dict_next(d, &mut pos) {
            if check(&name, &module)? {
                return Ok(name);
            }
        }
    } else {
        for name in modules.try_iter()? {
            let name = name?;
            let module = modules.get_item(&name)?;
            if check(&name, &module)? {
                return Ok(name);
            }
        }
    }
    Ok(intern!(py, "__main__").clone().into_any())
}
