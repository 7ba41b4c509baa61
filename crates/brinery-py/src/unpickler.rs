//! `Unpickler`, `load` and `loads`: a drop-in for CPython 3.11's `_pickle.Unpickler`.
//!
//! The core's [`brinery::decode::Decoder`] splits the stream ([`input`] serves it from memory or
//! from a file object exactly as `_pickle.c` reads files), and [`machine`] turns each operation
//! into Python objects with `_pickle.c`'s semantics and error messages.

mod input;
mod machine;
mod memo;
mod payload;
mod policy;
mod strcache;

use std::ffi::CString;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyInt, PyIterator, PyTuple};
use pyo3::PyTraverseError;

use crate::args::Truthy;
use crate::errors::unpickling_error;
use crate::pyutil::type_name;
use input::{FileInput, MemoryInput};
use machine::{CText, Config, Input};
use memo::Memo;

/// Add this module's classes and functions to `brinery._native`.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Unpickler>()?;
    m.add_class::<UnpicklerMemoProxy>()?;
    m.add_function(wrap_pyfunction!(load, m)?)?;
    m.add_function(wrap_pyfunction!(loads, m)?)?;
    m.add_function(wrap_pyfunction!(loads_with_policy, m)?)?;
    m.add_function(wrap_pyfunction!(safe_loads_clean, m)?)?;
    m.add_function(wrap_pyfunction!(safe_loads, m)?)?;
    m.add_function(wrap_pyfunction!(set_safe_loads_fallback, m)?)?;
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The options shared by the three entry points.
struct Options {
    fix_imports: bool,
    encoding: CText,
    errors: CText,
    /// An iterator over `buffers`, or `None` if the argument was not given (or was None).
    buffers: Option<Py<PyAny>>,
}

fn c_string(s: &str) -> PyResult<CText> {
    Ok(match s {
        "ASCII" => CText::Borrowed(c"ASCII"),
        "strict" => CText::Borrowed(c"strict"),
        _ => CText::Owned(
            CString::new(s).map_err(|_| PyValueError::new_err("embedded null character"))?,
        ),
    })
}

impl Options {
    fn new(
        fix_imports: bool,
        encoding: &str,
        errors: &str,
        buffers: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Options> {
        let encoding = c_string(encoding)?;
        let errors = c_string(errors)?;
        let buffers = match buffers {
            Some(b) if !b.is_none() => Some(PyIterator::from_object(b)?.into_any().unbind()),
            _ => None,
        };
        Ok(Options {
            fix_imports,
            encoding,
            errors,
            buffers,
        })
    }

    fn config<'py, 'm>(&self, py: Python<'py>) -> PyResult<Config<'py, 'm>> {
        Ok(Config {
            unpickler: None,
            find_class_via_python: false,
            fix_imports: self.fix_imports,
            encoding: self.encoding.clone(),
            errors: self.errors.clone(),
            pers_func: None,
            buffers: match &self.buffers {
                Some(b) => Some(b.bind(py).clone().cast_into::<PyIterator>()?),
                None => None,
            },
            memo: None,
            proto_cell: None,
            guard: None,
            memo_filter: None,
        })
    }
}

/// Hold the bytes of `data` for a load: bytes and read-only buffers are used in place; writable
/// buffers are copied, so Python code run by the pickle cannot change them under the decoder.
enum Data<'py> {
    Bytes(Bound<'py, PyBytes>),
    ReadOnly(pyo3::buffer::PyBuffer<u8>),
    Copied(Vec<u8>),
}

impl<'py> Data<'py> {
    fn new(data: &Bound<'py, PyAny>) -> PyResult<Data<'py>> {
        if let Ok(b) = data.cast::<PyBytes>() {
            return Ok(Data::Bytes(b.clone()));
        }
        if let Ok(buf) = pyo3::buffer::PyBuffer::<u8>::get(data) {
            if buf.is_c_contiguous() {
                return Ok(if buf.readonly() {
                    Data::ReadOnly(buf)
                } else {
                    // writable: Python code run by the load could rewrite it
                    Data::Copied(buf.to_vec(data.py())?)
                });
            }
        }
        Self::copy_of_contiguous(data)
    }

    /// The bytes of any other buffer, copied, exported as `pickle.loads` asks for it
    /// (`PyBUF_CONTIG_RO`): any item format (`array.array('d')`, a ctypes array, ...) loads
    /// as its bytes, and a strided buffer is refused with the exporter's own error
    /// (`BufferError` from a `memoryview`, `ValueError` from a numpy array); an object without
    /// the buffer protocol gets `TypeError: a bytes-like object is required, not '...'`.
    #[cold]
    fn copy_of_contiguous(data: &Bound<'py, PyAny>) -> PyResult<Data<'py>> {
        let view = crate::buffer::BufferView::get_c_contiguous(data)?;
        Ok(Data::Copied(view.data().to_vec()))
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Data::Bytes(b) => b.as_bytes(),
            Data::ReadOnly(buf) => {
                // SAFETY: the buffer is a read-only, C-contiguous export of `len_bytes` bytes,
                // held (and so kept alive and unmovable) by `buf` for as long as `self` lives.
                // The export is read-only, but the memory may be writable elsewhere (a
                // `bytearray` behind `memoryview.toreadonly()`), so Python code run by the load
                // may change the bytes, never their length or place: the load reads them as
                // `_pickle` does, checking every length against the fixed end, and keeps no
                // scan of them ([`Data::input`]).
                unsafe { std::slice::from_raw_parts(buf.buf_ptr() as *const u8, buf.len_bytes()) }
            }
            Data::Copied(v) => v,
        }
    }

    /// The bytes as a load's input: a read-only export is [`MemoryInput::shared`].
    fn input(&self) -> MemoryInput<'_> {
        match self {
            Data::ReadOnly(_) => MemoryInput::shared(self.as_slice()),
            Data::Bytes(_) | Data::Copied(_) => MemoryInput::new(self.as_slice()),
        }
    }
}

/// `loads(data, /, *, fix_imports=True, encoding='ASCII', errors='strict', buffers=())`
///
/// Read and return an object from the given pickle data.
#[pyfunction]
#[pyo3(
    signature = (data, /, *, fix_imports = Truthy(true), encoding = "ASCII", errors = "strict", buffers = None),
    text_signature = "(data, /, *, fix_imports=True, encoding='ASCII', errors='strict', buffers=())"
)]
fn loads<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    fix_imports: Truthy,
    encoding: &str,
    errors: &str,
    buffers: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let data = Data::new(data)?;
    let opts = Options::new(fix_imports.0, encoding, errors, buffers)?;
    load_with_fresh_memo(py, &opts, Input::Memory(data.input()))
}

/// `_loads_with_policy(data, policy, /, *, fix_imports=True, encoding='ASCII', errors='strict', buffers=())`
///
/// `loads` with `policy` enforced during the load, as `Unpickler(..., policy=policy)` does:
/// the in-memory load behind `brinery.safe_loads`, which scans the whole stream first.
#[pyfunction]
#[pyo3(
    name = "_loads_with_policy",
    signature = (data, policy, /, *, fix_imports = Truthy(true), encoding = "ASCII", errors = "strict", buffers = None),
    text_signature = "(data, policy, /, *, fix_imports=True, encoding='ASCII', errors='strict', buffers=())"
)]
fn loads_with_policy<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    policy: &Bound<'py, crate::scan::Policy>,
    fix_imports: Truthy,
    encoding: &str,
    errors: &str,
    buffers: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let data = Data::new(data)?;
    let opts = Options::new(fix_imports.0, encoding, errors, buffers)?;
    let guard = policy::Guard::new(policy.get().inner.clone(), true);
    let mut cfg = opts.config(py)?;
    cfg.guard = Some(&guard);
    machine::load(py, &cfg, &mut Input::Memory(data.input()))
}

/// `_safe_loads(data, policy, fallback, /, *, fix_imports=True, encoding='ASCII', errors='strict', buffers=())`
///
/// The clean path of `brinery.safe_loads` in one call: scan the whole stream (a bare pickle)
/// for a verdict under `policy`, then, only if it is clean, load it with `policy` enforced.
/// Returns `fallback` itself, having imported and run nothing, whenever `safe_loads` has more
/// to do than this: a finding (the refusal and its report, class rules), a container
/// (compressed streams), a reference to joblib's `NumpyArrayWrapper`. Input that is not a
/// `bytes` object is copied first, so that the load reads exactly the bytes that were scanned.
#[pyfunction]
#[pyo3(
    name = "_safe_loads",
    signature = (data, policy, fallback, /, *, fix_imports = Truthy(true), encoding = "ASCII", errors = "strict", buffers = None),
    text_signature = "(data, policy, fallback, /, *, fix_imports=True, encoding='ASCII', errors='strict', buffers=())"
)]
#[allow(clippy::too_many_arguments)]
fn safe_loads_clean<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    policy: &Bound<'py, crate::scan::Policy>,
    fallback: &Bound<'py, PyAny>,
    fix_imports: Truthy,
    encoding: &str,
    errors: &str,
    buffers: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let opts = LoadArgs {
        fix_imports: fix_imports.0,
        encoding,
        errors,
        buffers,
    };
    match clean_load(py, data, policy, &opts)? {
        Some(obj) => Ok(obj),
        None => Ok(fallback.clone()),
    }
}

/// In-memory inputs from this size up are scanned with the GIL released (other threads run
/// meanwhile); below it the scan takes a few microseconds at most, less than handing the GIL
/// over and taking it back costs the caller (and every other thread).
pub(crate) const SCAN_DETACH_MIN: usize = 64 << 10;

/// The load arguments of `safe_loads`, as given.
struct LoadArgs<'a, 'py> {
    fix_imports: bool,
    encoding: &'a str,
    errors: &'a str,
    buffers: Option<&'a Bound<'py, PyAny>>,
}

/// The clean path of `safe_loads` (see `_safe_loads`): `None`, having imported and run
/// nothing, whenever the stream is not a bare pickle that scans clean under `policy`.
fn clean_load<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    policy: &Bound<'py, crate::scan::Policy>,
    args: &LoadArgs<'_, 'py>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let data = match Data::new(data)? {
        Data::ReadOnly(buf) => Data::Copied(buf.to_vec(py)?),
        d => d,
    };
    let bytes = data.as_slice();
    if brinery::scan::ContainerKind::detect(bytes).is_some() {
        return Ok(None);
    }
    let pol = &policy.get().inner;
    let limits = brinery::Limits::default();
    let report = if bytes.len() >= SCAN_DETACH_MIN {
        py.detach(|| brinery::scan::scan_verdict(bytes, pol, &limits))
    } else {
        brinery::scan::scan_verdict(bytes, pol, &limits)
    };
    if !report.is_ok() || !report.members.is_empty() || !report.globals.is_empty() {
        // findings, or names that `safe_loads` checks (joblib's NumpyArrayWrapper)
        return Ok(None);
    }
    let opts = Options::new(args.fix_imports, args.encoding, args.errors, args.buffers)?;
    let guard = policy::Guard::new(pol.clone(), true);
    let mut cfg = opts.config(py)?;
    cfg.guard = Some(&guard);
    // The load's memo is its own and gone after it: stores nothing fetches are skipped.
    cfg.memo_filter = report.memo.fetch_filter();
    machine::load(py, &cfg, &mut Input::Memory(MemoryInput::new(bytes))).map(Some)
}

/// The Python side of `safe_loads` (`brinery._safety._safe_loads_py`), for everything but
/// the clean path with the default or a given `Policy`.
static SAFE_LOADS_PY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// `_set_safe_loads_fallback(func)`: what `safe_loads` calls when it has more to do than the
/// clean path (set once by `brinery/_safety.py`): `func(data, allow, policy, buffers,
/// fix_imports, encoding, errors, clean_path_tried)`.
#[pyfunction(name = "_set_safe_loads_fallback", signature = (func, /))]
fn set_safe_loads_fallback(py: Python<'_>, func: Bound<'_, PyAny>) {
    let _ = SAFE_LOADS_PY.set(py, func.unbind());
}

/// Load a pickle from bytes only if it is safe under the policy; else raise UnsafePickleError.
///
/// The whole stream is scanned first: nothing is imported or run unless the scan is clean. The
/// load then runs with the native policy enforcement (every global resolved through the policy,
/// calls checked at REDUCE/NEWOBJ/NEWOBJ_EX/INST/OBJ/BUILD). ``allow`` and ``policy`` are as in
/// :func:`scan`; ``buffers`` are the out-of-band buffers of a protocol-5 pickle.
#[pyfunction]
#[pyo3(
    signature = (data, /, *, allow = None, policy = None, buffers = None, fix_imports = Truthy(true), encoding = "ASCII", errors = "strict"),
    text_signature = "(data, /, *, allow=None, policy=None, buffers=None, fix_imports=True, encoding='ASCII', errors='strict')"
)]
#[allow(clippy::too_many_arguments)]
fn safe_loads<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    allow: Option<&Bound<'py, PyAny>>,
    policy: Option<&Bound<'py, PyAny>>,
    buffers: Option<&Bound<'py, PyAny>>,
    fix_imports: Truthy,
    encoding: &str,
    errors: &str,
) -> PyResult<Bound<'py, PyAny>> {
    // The clean path, in native code for the default policy or a `Policy` object and nothing
    // allowed by name (the common call, `safe_loads(data)`, pays no Python frame); anything
    // else, and anything the clean path declines, is `_safe_loads_py`'s.
    let bytes_like = data.is_instance_of::<PyBytes>()
        || data.is_instance_of::<pyo3::types::PyByteArray>()
        || data.is_instance_of::<pyo3::types::PyMemoryView>();
    let pol = match (bytes_like, allow, policy) {
        (true, None, None) => Some(crate::scan::default_policy(py)?),
        (true, None, Some(p)) => p.cast::<crate::scan::Policy>().ok().cloned(),
        _ => None,
    };
    let tried = match &pol {
        Some(pol) => {
            let args = LoadArgs {
                fix_imports: fix_imports.0,
                encoding,
                errors,
                buffers,
            };
            if let Some(obj) = clean_load(py, data, pol, &args)? {
                return Ok(obj);
            }
            true
        }
        None => false,
    };
    let Some(func) = SAFE_LOADS_PY.get(py) else {
        return Err(pyo3::exceptions::PyRuntimeError::new_err(
            "brinery._safety is not initialised (import brinery)",
        ));
    };
    func.bind(py).call1((
        data,
        allow,
        policy,
        buffers,
        fix_imports.0,
        encoding,
        errors,
        tried,
    ))
}

/// One load of the module-level `load`/`loads`, with a memo of its own.
fn load_with_fresh_memo<'py>(
    py: Python<'py>,
    opts: &Options,
    mut input: Input<'_, '_>,
) -> PyResult<Bound<'py, PyAny>> {
    let cfg = opts.config(py)?;
    machine::load(py, &cfg, &mut input)
}

/// `load(file, *, fix_imports=True, encoding='ASCII', errors='strict', buffers=())`
///
/// Read and return an object from the pickle data stored in a file.
#[pyfunction]
#[pyo3(
    signature = (file, *, fix_imports = Truthy(true), encoding = "ASCII", errors = "strict", buffers = None),
    text_signature = "(file, *, fix_imports=True, encoding='ASCII', errors='strict', buffers=())"
)]
fn load<'py>(
    py: Python<'py>,
    file: &Bound<'py, PyAny>,
    fix_imports: Truthy,
    encoding: &str,
    errors: &str,
    buffers: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let mut file_input = FileInput::new(file)?;
    let opts = Options::new(fix_imports.0, encoding, errors, buffers)?;
    load_with_fresh_memo(py, &opts, Input::File(&mut file_input))
}

/// What `Unpickler.__init__` sets up.
struct Setup {
    opts: Options,
    /// `persistent_load` as found at `__init__` (or set later), and whether it is the function
    /// of a method bound to this unpickler (stored unbound to avoid a reference cycle).
    pers_func: Option<(Py<PyAny>, bool)>,
    /// `policy=`: enforce a `brinery._native.Policy` during every load.
    policy: Option<std::sync::Arc<brinery::scan::Policy>>,
    /// Made by `__init__` (not by a `persistent_load` assignment before it).
    initialized: bool,
}

/// Unpickler(file, *, fix_imports=True, encoding='ASCII', errors='strict', buffers=())
/// --
///
/// This takes a binary file for reading a pickle data stream.
///
/// The protocol version of the pickle is detected automatically, so no protocol argument is
/// needed. Bytes past the pickled object's representation are ignored.
#[pyclass(subclass, frozen, module = "brinery._native", name = "Unpickler")]
pub(crate) struct Unpickler {
    setup: Mutex<Option<Setup>>,
    /// The file, with C's input buffer state, kept between loads. Taken out during a load.
    input: Mutex<Option<FileInput>>,
    memo: Mutex<Memo>,
    proto: AtomicU8,
}

#[pymethods]
impl Unpickler {
    #[new]
    #[pyo3(
        signature = (*_args, **_kwargs),
        text_signature = "(file, *, fix_imports=True, encoding='ASCII', errors='strict', buffers=(), policy=None)"
    )]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        Unpickler {
            setup: Mutex::new(None),
            input: Mutex::new(None),
            memo: Mutex::new(Memo::default()),
            proto: AtomicU8::new(0),
        }
    }

    #[pyo3(signature = (file, *, fix_imports = Truthy(true), encoding = "ASCII", errors = "strict", buffers = None, policy = None))]
    fn __init__(
        slf: &Bound<'_, Self>,
        file: &Bound<'_, PyAny>,
        fix_imports: Truthy,
        encoding: &str,
        errors: &str,
        buffers: Option<&Bound<'_, PyAny>>,
        policy: Option<&Bound<'_, crate::scan::Policy>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        // In case of multiple __init__() calls, clear previous content. As in C, only what an
        // earlier `__init__` set up: a `persistent_load` assigned before the first one (a
        // subclass's `__init__` setting it before `super().__init__`) is looked up below.
        let old = {
            let mut setup = lock(&this.setup);
            let earlier = setup.as_ref().is_some_and(|s| s.initialized);
            (
                if earlier { setup.take() } else { None },
                lock(&this.input).take(),
                lock(&this.memo).take(),
            )
        };
        drop(old);
        let file_input = FileInput::new(file)?;
        let opts = Options::new(fix_imports.0, encoding, errors, buffers)?;
        // C's init_method_ref: a method bound to this very object is stored as its function.
        let pers_func = match slf
            .as_any()
            .getattr_opt(pyo3::intern!(py, "persistent_load"))
        {
            Ok(Some(f)) => {
                let bound_self = f
                    .getattr_opt(pyo3::intern!(py, "__self__"))
                    .ok()
                    .flatten()
                    .is_some_and(|s| s.is(slf))
                    && f.is_instance(&py.import("types")?.getattr("MethodType")?)?;
                if bound_self {
                    Some((f.getattr(pyo3::intern!(py, "__func__"))?.unbind(), true))
                } else {
                    Some((f.unbind(), false))
                }
            }
            Ok(None) => None,
            Err(e) => return Err(e),
        };
        *lock(&this.input) = Some(file_input);
        let policy = policy.map(|p| p.get().inner.clone());
        let old = lock(&this.setup).replace(Setup {
            opts,
            pers_func,
            policy,
            initialized: true,
        });
        drop(old);
        this.proto.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// Load a pickle.
    ///
    /// Read a pickled object representation from the open file object given in the
    /// constructor, and return the reconstituted object hierarchy specified therein.
    fn load<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.get();
        let not_initialized = || {
            unpickling_error(
                py,
                format!(
                    "Unpickler.__init__() was not called by {}.__init__()",
                    type_name(slf.as_any())
                ),
            )
        };
        let (opts_cfg, pers_func, policy) = {
            let setup = lock(&this.setup);
            let Some(setup) = setup.as_ref().filter(|s| s.initialized) else {
                return Err(not_initialized());
            };
            (
                (
                    setup.opts.fix_imports,
                    setup.opts.encoding.clone(),
                    setup.opts.errors.clone(),
                    setup.opts.buffers.as_ref().map(|b| b.clone_ref(py)),
                ),
                setup.pers_func.as_ref().map(|(f, b)| (f.clone_ref(py), *b)),
                setup.policy.clone(),
            )
        };
        let guard = policy.map(|p| policy::Guard::new(p, false));
        // `__init__` ran (the setup is there), so a missing input is one a running load holds
        let Some(mut file_input) = lock(&this.input).take() else {
            return Err(unpickling_error(
                py,
                "Unpickler.load() is already running on this Unpickler (called again from one \
                 of its callbacks or from another thread)",
            ));
        };
        let is_subclass = !slf.get_type().is(py.get_type::<Unpickler>());
        let (fix_imports, encoding, errors, buffers) = opts_cfg;
        let buffers = match buffers {
            Some(b) => Some(b.into_bound(py).cast_into::<PyIterator>()?),
            None => None,
        };
        let cfg = Config {
            unpickler: Some(slf.clone().into_any()),
            find_class_via_python: is_subclass,
            fix_imports,
            encoding,
            errors,
            pers_func: pers_func.map(|(f, b)| (f.into_bound(py), b)),
            buffers,
            memo: Some(&this.memo),
            proto_cell: Some(&this.proto),
            guard: guard.as_ref(),
            memo_filter: None,
        };
        let mut input = Input::File(&mut file_input);
        let result = machine::load(py, &cfg, &mut input);
        drop(cfg);
        let mut slot = lock(&this.input);
        if slot.is_none() {
            *slot = Some(file_input);
        }
        result
    }

    /// Return an object from a specified module.
    ///
    /// If necessary, the module will be imported. Subclasses may override this method (e.g. to
    /// restrict unpickling of arbitrary classes and functions).
    ///
    /// This method is called whenever a class or a function object is needed. Both arguments
    /// passed are str objects.
    #[pyo3(signature = (module_name, global_name, /))]
    fn find_class<'py>(
        slf: &Bound<'py, Self>,
        module_name: &Bound<'py, PyAny>,
        global_name: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let this = slf.get();
        let fix_imports = lock(&this.setup)
            .as_ref()
            .is_some_and(|s| s.opts.fix_imports);
        machine::find_class_impl(
            slf.py(),
            module_name,
            global_name,
            this.proto.load(Ordering::Relaxed),
            fix_imports,
        )
    }

    /// Returns size in memory, in bytes.
    fn __sizeof__(&self) -> usize {
        std::mem::size_of::<Self>() + 16
    }

    #[getter]
    fn get_memo(slf: &Bound<'_, Self>) -> UnpicklerMemoProxy {
        UnpicklerMemoProxy {
            unpickler: slf.clone().unbind(),
        }
    }

    #[setter]
    fn set_memo(&self, value: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let Some(value) = value else {
            return Err(PyTypeError::new_err("attribute deletion is not supported"));
        };
        let py = value.py();
        let new_memo = if let Ok(proxy) = value.cast_exact::<UnpicklerMemoProxy>() {
            let other = proxy.get().unpickler.bind(py).get();
            let copy = lock(&other.memo).clone_ref(py);
            copy
        } else if let Ok(dict) = value.cast::<PyDict>() {
            let mut memo = Memo::default();
            for (key, value) in crate::pyutil::dict_items(dict) {
                if !key.is_instance_of::<PyInt>() {
                    return Err(PyTypeError::new_err("memo key must be integers"));
                }
                let idx: isize = key.extract()?;
                if idx < 0 {
                    return Err(PyValueError::new_err("memo key must be positive integers."));
                }
                let _ = memo.put(idx as usize, value.unbind());
            }
            memo
        } else {
            return Err(PyTypeError::new_err(format!(
                "'memo' attribute must be an UnpicklerMemoProxy object or dict, not {}",
                type_name(value)
            )));
        };
        let old = std::mem::replace(&mut *lock(&self.memo), new_memo);
        drop(old);
        Ok(())
    }

    #[deleter]
    fn delete_memo(&self) -> PyResult<()> {
        Err(PyTypeError::new_err("attribute deletion is not supported"))
    }

    #[deleter]
    fn delete_persistent_load(&self) -> PyResult<()> {
        Err(PyTypeError::new_err("attribute deletion is not supported"))
    }

    #[getter]
    fn get_persistent_load(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let func = lock(&slf.get().setup)
            .as_ref()
            .and_then(|s| s.pers_func.as_ref().map(|(f, b)| (f.clone_ref(py), *b)));
        match func {
            None => Err(pyo3::exceptions::PyAttributeError::new_err(
                "persistent_load",
            )),
            Some((f, false)) => Ok(f),
            Some((f, true)) => {
                let method = py.import("types")?.getattr("MethodType")?;
                Ok(method.call1((f, slf))?.unbind())
            }
        }
    }

    #[setter]
    fn set_persistent_load(&self, value: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let Some(value) = value else {
            return Err(PyTypeError::new_err("attribute deletion is not supported"));
        };
        if !value.is_callable() {
            return Err(PyTypeError::new_err(
                "persistent_load must be a callable taking one argument",
            ));
        }
        let mut setup = lock(&self.setup);
        match setup.as_mut() {
            Some(s) => {
                let old = s.pers_func.replace((value.clone().unbind(), false));
                drop(setup);
                drop(old);
            }
            None => {
                // Not initialized yet: remember it anyway, with default options.
                *setup = Some(Setup {
                    opts: Options {
                        fix_imports: true,
                        encoding: CText::Borrowed(c"ASCII"),
                        errors: CText::Borrowed(c"strict"),
                        buffers: None,
                    },
                    pers_func: Some((value.clone().unbind(), false)),
                    policy: None,
                    initialized: false,
                });
            }
        }
        Ok(())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Ok(setup) = self.setup.try_lock() {
            if let Some(s) = setup.as_ref() {
                if let Some((f, _)) = &s.pers_func {
                    visit.call(f)?;
                }
                if let Some(b) = &s.opts.buffers {
                    visit.call(b)?;
                }
            }
        }
        if let Ok(input) = self.input.try_lock() {
            if let Some(f) = input.as_ref() {
                for o in f.objects() {
                    visit.call(o)?;
                }
            }
        }
        if let Ok(memo) = self.memo.try_lock() {
            for (_, o) in memo.iter() {
                visit.call(o)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        let setup = self.setup.try_lock().ok().and_then(|mut s| s.take());
        let input = self.input.try_lock().ok().and_then(|mut s| s.take());
        let memo = self.memo.try_lock().ok().map(|mut m| m.take());
        drop((setup, input, memo));
    }
}

/// A view of an Unpickler's memo (`unpickler.memo`): `copy()`, `clear()`, and it can be assigned
/// to another Unpickler's `memo`.
#[pyclass(frozen, module = "brinery._native", name = "UnpicklerMemoProxy")]
pub(crate) struct UnpicklerMemoProxy {
    unpickler: Py<Unpickler>,
}

#[pymethods]
impl UnpicklerMemoProxy {
    /// Copy the memo to a new object.
    fn copy<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let entries: Vec<(usize, Py<PyAny>)> = {
            let memo = lock(&self.unpickler.get().memo);
            memo.iter().map(|(i, o)| (i, o.clone_ref(py))).collect()
        };
        let dict = PyDict::new(py);
        for (i, o) in entries {
            dict.set_item(i, o)?;
        }
        Ok(dict)
    }

    /// Remove all items from memo.
    fn clear(&self) {
        let old = lock(&self.unpickler.get().memo).take();
        drop(old);
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
        visit.call(&self.unpickler)
    }
}
