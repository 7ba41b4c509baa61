//! `brinery.Pickler`, `brinery.dump` and `brinery.dumps`: a drop-in for CPython 3.11's
//! `_pickle.Pickler` whose output is byte-identical to `pickle.dumps`.
//!
//! The object walk (`save()` and friends) lives in [`save`]; it writes through the core crate's
//! [`brinery::encode::Encoder`], which owns opcode spelling, framing and memo opcodes. This file
//! holds the Python-facing classes: the `Pickler` (subclassable, with `persistent_id`,
//! `reducer_override`, `dispatch_table`, `memo`, `fast`, `bin`), its memo proxy and the
//! module-level functions.
//!
//! The pickler's memo is taken out of the object for the duration of a `dump()` and put back
//! afterwards, so that Python callbacks run during pickling never meet a borrowed pickler.

mod global_names;
mod memo;
mod save;
mod stack;

use std::sync::atomic::Ordering;

use brinery::encode::Encoder;
use pyo3::exceptions::{PyAttributeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};
use pyo3::{intern, PyTraverseError, PyVisit};

use crate::errors::pickling_error;
use memo::Memo;
use save::{FastState, Hooks, Options, PyWriter, Saver};

use crate::args::Truthy;
use crate::pyutil::type_name;

/// `_Pickler_SetProtocol`: `None` → `DEFAULT_PROTOCOL`, negative → `HIGHEST_PROTOCOL`.
fn parse_protocol(protocol: Option<&Bound<'_, PyAny>>) -> PyResult<u8> {
    let Some(p) = protocol.filter(|p| !p.is_none()) else {
        return Ok(brinery::DEFAULT_PROTOCOL);
    };
    let p: std::os::raw::c_long = p.extract()?;
    if p < 0 {
        Ok(brinery::HIGHEST_PROTOCOL)
    } else if p > brinery::HIGHEST_PROTOCOL.into() {
        Err(PyValueError::new_err(format!(
            "pickle protocol must be <= {}",
            brinery::HIGHEST_PROTOCOL
        )))
    } else {
        Ok(p as u8)
    }
}

/// `_Pickler_SetBufferCallback`.
fn parse_buffer_callback<'py>(
    cb: Option<&Bound<'py, PyAny>>,
    proto: u8,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let cb = cb.filter(|c| !c.is_none()).cloned();
    if cb.is_some() && proto < 5 {
        return Err(PyValueError::new_err("buffer_callback needs protocol >= 5"));
    }
    Ok(cb)
}

/// `_Pickler_SetOutputStream`.
fn file_write<'py>(file: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let py = file.py();
    file.getattr_opt(intern!(py, "write"))?
        .ok_or_else(|| PyTypeError::new_err("file must have a 'write' attribute"))
}

/// Pickle `obj` with `write` as the output (`None`: in memory) and return what is left buffered.
#[allow(clippy::too_many_arguments)]
fn run<'py>(
    py: Python<'py>,
    obj: &Bound<'py, PyAny>,
    opts: &Options,
    write: Option<Bound<'py, PyAny>>,
    memo: &mut Memo,
    fast_state: &mut FastState,
    hooks: Hooks<'py>,
) -> PyResult<Vec<u8>> {
    let to_err = |e: brinery::Error| pickling_error(py, e.to_string());
    match write {
        Some(write) => {
            let mut sink = PyWriter {
                write: write.clone(),
            };
            let enc = Encoder::with_sink(opts.proto, &mut sink).map_err(to_err)?;
            Saver::new(py, enc, opts, memo, fast_state, hooks, Some(write))?.run(obj)
        }
        None => {
            let enc = Encoder::new(opts.proto).map_err(to_err)?;
            Saver::new(py, enc, opts, memo, fast_state, hooks, None)?.run(obj)
        }
    }
}

/// This takes a binary file for writing a pickle data stream.
///
/// Same constructor, attributes and behaviour as the standard library's `pickle.Pickler`;
/// the bytes written are identical to CPython's.
#[pyclass(subclass, module = "brinery", name = "Pickler")]
pub struct Pickler {
    write: Option<Py<PyAny>>,
    proto: u8,
    bin: i32,
    fast: i32,
    fix_imports: bool,
    buffer_callback: Option<Py<PyAny>>,
    /// `persistent_id`: the function, and whether to pass the pickler as `self`
    /// (a bound method of the pickler is stored apart so as not to create a cycle).
    pers_func: Option<Py<PyAny>>,
    pers_func_is_method: bool,
    dispatch_table: Option<Py<PyAny>>,
    memo: Memo,
    fast_state: FastState,
    /// Set by `clear_memo()`; a running `dump()` (which holds the memo) clears it at its next
    /// memo operation and, at the latest, when it ends.
    memo_cleared: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// `slf` borrowed for changing, or a `RuntimeError` when it is borrowed already: Python code
/// run while this very pickler is being changed (a protocol's `__index__` during `__init__`, a
/// finalizer run by a memo assignment) called it again. PyO3's `borrow_mut` would panic.
fn state_mut<'py>(slf: &Bound<'py, Pickler>) -> PyResult<PyRefMut<'py, Pickler>> {
    slf.try_borrow_mut().map_err(|_| busy())
}

/// `slf` borrowed for reading, or a `RuntimeError` (see [`state_mut`]).
fn state<'py>(slf: &Bound<'py, Pickler>) -> PyResult<PyRef<'py, Pickler>> {
    slf.try_borrow().map_err(|_| busy())
}

fn busy() -> PyErr {
    pyo3::exceptions::PyRuntimeError::new_err(
        "the Pickler is being changed by a call still running (its __init__ or a memo \
         assignment ran Python code that used it again)",
    )
}

impl Pickler {
    /// `Pickler_clear`.
    fn clear_all(&mut self) {
        self.write = None;
        self.pers_func = None;
        self.pers_func_is_method = false;
        self.dispatch_table = None;
        self.fast_state = FastState::default();
        self.buffer_callback = None;
        self.memo.clear();
    }
}

#[pymethods]
impl Pickler {
    #[new]
    #[pyo3(
        signature = (*_args, **_kwargs),
        text_signature = "(file, protocol=None, fix_imports=True, buffer_callback=None)"
    )]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        Pickler {
            write: None,
            proto: 0,
            bin: 0,
            fast: 0,
            fix_imports: false,
            buffer_callback: None,
            pers_func: None,
            pers_func_is_method: false,
            dispatch_table: None,
            memo: Memo::default(),
            fast_state: FastState::default(),
            memo_cleared: Default::default(),
        }
    }

    // As `_pickle.Pickler`: `fix_imports` and `buffer_callback` may be passed by position.
    #[pyo3(signature = (file, protocol=None, fix_imports=Truthy(true), buffer_callback=None))]
    fn __init__(
        slf: &Bound<'_, Self>,
        file: &Bound<'_, PyAny>,
        protocol: Option<&Bound<'_, PyAny>>,
        fix_imports: Truthy,
        buffer_callback: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        // before any borrow: the protocol's `__index__` is Python code, which may use `slf`
        let proto = parse_protocol(protocol)?;
        {
            let mut me = state_mut(slf)?;
            if me.write.is_some() {
                me.clear_all();
            }
            me.proto = proto;
            me.bin = i32::from(proto > 0);
            me.fix_imports = fix_imports.0 && proto < 3;
        }
        let write = file_write(file)?;
        state_mut(slf)?.write = Some(write.unbind());
        let cb = parse_buffer_callback(buffer_callback, proto)?;
        {
            let mut me = state_mut(slf)?;
            me.buffer_callback = cb.map(Bound::unbind);
            me.fast = 0;
            me.fast_state = FastState::default();
        }

        // init_method_ref(self, "persistent_id"): a bound method of this very pickler is
        // stored as its function, with `self` passed at call time.
        let pers = slf.as_any().getattr_opt(intern!(py, "persistent_id"))?;
        let (func, is_method) = match pers {
            None => (None, false),
            Some(f) => {
                let method_type = save::globals(py)?.method_type.bind(py);
                if f.is_instance(method_type)?
                    && f.getattr(intern!(py, "__self__"))?.is(slf.as_any())
                {
                    (Some(f.getattr(intern!(py, "__func__"))?), true)
                } else {
                    (Some(f), false)
                }
            }
        };
        {
            let mut me = state_mut(slf)?;
            me.pers_func = func.map(Bound::unbind);
            me.pers_func_is_method = is_method;
            if me.dispatch_table.is_some() {
                return Ok(());
            }
        }
        let dt = slf.as_any().getattr_opt(intern!(py, "dispatch_table"))?;
        state_mut(slf)?.dispatch_table = dt.map(Bound::unbind);
        Ok(())
    }

    /// Write a pickled representation of the given object to the open file.
    #[pyo3(signature = (obj, /), text_signature = "($self, obj, /)")]
    fn dump(slf: &Bound<'_, Self>, obj: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let (write, opts, cb, pers_func, pers_is_method, dt, mut memo, mut fast_state) = {
            let mut me = state_mut(slf)?;
            let Some(write) = me.write.as_ref().map(|w| w.clone_ref(py)) else {
                let name = slf.get_type().name()?;
                return Err(pickling_error(
                    py,
                    format!("Pickler.__init__() was not called by {name}.__init__()"),
                ));
            };
            let opts = Options {
                stack_limit: None,
                proto: me.proto,
                fast: me.fast != 0,
                fix_imports: me.fix_imports,
            };
            (
                write,
                opts,
                me.buffer_callback.as_ref().map(|c| c.clone_ref(py)),
                me.pers_func.as_ref().map(|c| c.clone_ref(py)),
                me.pers_func_is_method,
                me.dispatch_table.as_ref().map(|c| c.clone_ref(py)),
                std::mem::take(&mut me.memo),
                std::mem::take(&mut me.fast_state),
            )
        };
        // `clear_memo()` from now on is this dump's (see `Hooks::memo_cleared`).
        let memo_cleared = {
            let me = state(slf)?;
            me.memo_cleared.store(false, Ordering::Relaxed);
            me.memo_cleared.clone()
        };
        let result = (|| {
            // Looked up at each dump and dropped after it: a bound method of the pickler would
            // otherwise keep the pickler (and its memo) alive in a cycle.
            let reducer_override = slf.as_any().getattr_opt(intern!(py, "reducer_override"))?;
            let hooks = Hooks {
                pers_self: if pers_is_method && pers_func.is_some() {
                    Some(slf.as_any().clone())
                } else {
                    None
                },
                pers_func: pers_func.map(|f| f.into_bound(py)),
                dispatch_table: dt.map(|d| d.into_bound(py)),
                reducer_override,
                buffer_callback: cb.map(|c| c.into_bound(py)),
                memo_cleared: Some(memo_cleared.clone()),
            };
            run(
                py,
                obj,
                &opts,
                Some(write.into_bound(py)),
                &mut memo,
                &mut fast_state,
                hooks,
            )
        })();
        // The memo outlives the dump: entries kept out of the table go into it. A
        // `clear_memo()` after the dump's last memo operation (from `file.write`) clears it now.
        memo.flush_pending();
        if memo_cleared.swap(false, Ordering::Relaxed) {
            memo.clear();
        }
        // (Borrowed by nobody else now: a call that holds a borrow across Python code is
        // refused at its start. Were it borrowed, the memo would be dropped, not a panic.)
        if let Ok(mut me) = slf.try_borrow_mut() {
            me.memo = memo;
            me.fast_state = fast_state;
        }
        result.map(|_| ())
    }

    /// Clears the pickler's "memo".
    fn clear_memo(&mut self) {
        self.memo.clear();
        // A dump running now (a callback of it called this) holds the real memo.
        self.memo_cleared.store(true, Ordering::Relaxed);
    }

    /// Returns size in memory, in bytes.
    fn __sizeof__(&self) -> usize {
        std::mem::size_of::<Self>() + self.memo.len() * 3 * std::mem::size_of::<usize>()
    }

    #[getter]
    fn get_memo(slf: &Bound<'_, Self>) -> PicklerMemoProxy {
        PicklerMemoProxy {
            pickler: slf.clone().unbind(),
        }
    }

    #[setter]
    fn set_memo(&mut self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = value.py();
        let new_memo = if let Ok(proxy) = value.cast_exact::<PicklerMemoProxy>() {
            let other = proxy.borrow().pickler.clone_ref(py);
            match other.bind(py).try_borrow() {
                Ok(o) => o.memo.clone_ref(py),
                // Only this pickler can be borrowed right now: `p.memo = p.memo` is a no-op.
                Err(_) => return Ok(()),
            }
        } else if let Ok(d) = value.cast::<PyDict>() {
            Memo::from_dict(d)?
        } else {
            return Err(PyTypeError::new_err(format!(
                "'memo' attribute must be a PicklerMemoProxy object or dict, not {}",
                type_name(value)
            )));
        };
        self.memo = new_memo;
        Ok(())
    }

    #[getter]
    fn get_persistent_id(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let me = state(slf)?;
        let Some(func) = me.pers_func.as_ref() else {
            return Err(PyAttributeError::new_err("persistent_id"));
        };
        if me.pers_func_is_method {
            let method_type = save::globals(py)?.method_type.bind(py);
            Ok(method_type.call1((func, slf))?.unbind())
        } else {
            Ok(func.clone_ref(py))
        }
    }

    #[setter]
    fn set_persistent_id(&mut self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        if !value.is_callable() {
            return Err(PyTypeError::new_err(
                "persistent_id must be a callable taking one argument",
            ));
        }
        self.pers_func = Some(value.clone().unbind());
        self.pers_func_is_method = false;
        Ok(())
    }

    #[getter]
    fn get_dispatch_table(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        match state(slf)?.dispatch_table.as_ref() {
            Some(d) => Ok(d.clone_ref(py)),
            None => Err(PyAttributeError::new_err(format!(
                "'{}' object has no attribute 'dispatch_table'",
                type_name(slf.as_any())
            ))),
        }
    }

    #[setter]
    fn set_dispatch_table(&mut self, value: &Bound<'_, PyAny>) {
        self.dispatch_table = Some(value.clone().unbind());
    }

    #[deleter]
    fn delete_dispatch_table(&mut self) -> PyResult<()> {
        match self.dispatch_table.take() {
            Some(_) => Ok(()),
            None => Err(PyAttributeError::new_err("dispatch_table")),
        }
    }

    #[deleter]
    fn delete_memo(&mut self) -> PyResult<()> {
        Err(PyTypeError::new_err("attribute deletion is not supported"))
    }

    #[deleter]
    fn delete_persistent_id(&mut self) -> PyResult<()> {
        Err(PyTypeError::new_err("attribute deletion is not supported"))
    }

    #[deleter]
    fn delete_bin(&mut self) -> PyResult<()> {
        Err(PyTypeError::new_err("can't delete numeric/char attribute"))
    }

    #[deleter]
    fn delete_fast(&mut self) -> PyResult<()> {
        Err(PyTypeError::new_err("can't delete numeric/char attribute"))
    }

    #[getter]
    fn get_bin(&self) -> i32 {
        self.bin
    }

    #[setter]
    fn set_bin(&mut self, value: i32) {
        self.bin = value;
    }

    #[getter]
    fn get_fast(&self) -> i32 {
        self.fast
    }

    #[setter]
    fn set_fast(&mut self, value: i32) {
        self.fast = value;
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        for o in [
            &self.write,
            &self.pers_func,
            &self.dispatch_table,
            &self.buffer_callback,
        ]
        .into_iter()
        .flatten()
        {
            visit.call(o)?;
        }
        self.memo.traverse(&visit)
    }

    fn __clear__(&mut self) {
        self.clear_all();
    }
}

/// The object behind `Pickler.memo`: `clear()`, `copy()` (a `{id: (index, obj)}` dict) and
/// assignment to another pickler's `memo`.
#[pyclass(module = "brinery", name = "PicklerMemoProxy")]
pub struct PicklerMemoProxy {
    pickler: Py<Pickler>,
}

#[pymethods]
impl PicklerMemoProxy {
    /// Remove all items from memo.
    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        state_mut(self.pickler.bind(py))?.memo.clear();
        Ok(())
    }

    /// Copy the memo to a new object.
    fn copy<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        state(self.pickler.bind(py))?.memo.to_dict(py)
    }

    /// Implement pickle support.
    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let contents = self.copy(py)?;
        PyTuple::new(
            py,
            [
                py.get_type::<PyDict>().into_any(),
                PyTuple::new(py, [contents])?.into_any(),
            ],
        )
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.pickler)
    }
}

/// Write a pickled representation of obj to the open file object file.
#[pyfunction]
#[pyo3(
    signature = (obj, file, protocol=None, *, fix_imports=Truthy(true), buffer_callback=None),
    text_signature = "(obj, file, protocol=None, *, fix_imports=True, buffer_callback=None)"
)]
fn dump(
    obj: &Bound<'_, PyAny>,
    file: &Bound<'_, PyAny>,
    protocol: Option<&Bound<'_, PyAny>>,
    fix_imports: Truthy,
    buffer_callback: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let py = obj.py();
    let proto = parse_protocol(protocol)?;
    let write = file_write(file)?;
    let hooks = Hooks {
        buffer_callback: parse_buffer_callback(buffer_callback, proto)?,
        ..Hooks::default()
    };
    let opts = Options {
        stack_limit: None,
        proto,
        fast: false,
        fix_imports: fix_imports.0 && proto < 3,
    };
    run(
        py,
        obj,
        &opts,
        Some(write),
        &mut Memo::default(),
        &mut FastState::default(),
        hooks,
    )?;
    Ok(())
}

/// Return the pickled representation of the object as a bytes object.
#[pyfunction]
#[pyo3(
    signature = (obj, protocol=None, *, fix_imports=Truthy(true), buffer_callback=None),
    text_signature = "(obj, protocol=None, *, fix_imports=True, buffer_callback=None)"
)]
fn dumps<'py>(
    obj: &Bound<'py, PyAny>,
    protocol: Option<&Bound<'py, PyAny>>,
    fix_imports: Truthy,
    buffer_callback: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyBytes>> {
    let py = obj.py();
    let proto = parse_protocol(protocol)?;
    let hooks = Hooks {
        buffer_callback: parse_buffer_callback(buffer_callback, proto)?,
        ..Hooks::default()
    };
    let opts = Options {
        stack_limit: None,
        proto,
        fast: false,
        fix_imports: fix_imports.0 && proto < 3,
    };
    let to_err = |e: brinery::Error| pickling_error(py, e.to_string());
    // The encoder's buffer and the memo's table are kept per thread between calls; a nested
    // `dumps` (from a `__reduce__`) finds them in use and starts afresh.
    SCRATCH.with(|scratch| {
        let Ok(mut scratch) = scratch.try_borrow_mut() else {
            let enc = Encoder::new(opts.proto).map_err(to_err)?;
            let (mut memo, mut fast_state) = (Memo::default(), FastState::default());
            let saver = Saver::new(py, enc, &opts, &mut memo, &mut fast_state, hooks, None)?;
            return saver.run_to_bytes(obj).map(|(bytes, _)| bytes);
        };
        let scratch = &mut *scratch;
        let opts = Options {
            stack_limit: Some(*scratch.stack_limit.get_or_insert_with(stack::limit)),
            ..opts
        };
        let enc =
            Encoder::with_buffer(opts.proto, std::mem::take(&mut scratch.buf)).map_err(to_err)?;
        let mut fast_state = FastState::default();
        let result = Saver::new(
            py,
            enc,
            &opts,
            &mut scratch.memo,
            &mut fast_state,
            hooks,
            None,
        )
        .and_then(|saver| saver.run_to_bytes(obj));
        scratch.memo.clear();
        let (bytes, buf) = result?;
        if buf.capacity() <= KEEP_BUFFER {
            scratch.buf = buf;
        }
        Ok(bytes)
    })
}

/// `dumps` keeps its encoder buffer for the next call on the same thread if it is no larger
/// than this.
const KEEP_BUFFER: usize = 1 << 20;

/// What `dumps` keeps per thread between calls.
struct Scratch {
    /// The encoder's buffer (emptied).
    buf: Vec<u8>,
    /// The memo, empty, keeping a small table's allocation.
    memo: Memo,
    /// This thread's stack bounds.
    stack_limit: Option<stack::Limit>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = const {
        std::cell::RefCell::new(Scratch { buf: Vec::new(), memo: Memo::new(), stack_limit: None })
    };
}

/// Add this module's classes and functions to `brinery._native`.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Pickler>()?;
    m.add_class::<PicklerMemoProxy>()?;
    m.add_function(wrap_pyfunction!(dump, m)?)?;
    m.add_function(wrap_pyfunction!(dumps, m)?)?;
    Ok(())
}
