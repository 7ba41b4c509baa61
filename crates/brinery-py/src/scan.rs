//! `brinery._native.Policy`, `scan_bytes`, `ScanReport` and `Finding`: the core's static scanner
//! ([`brinery::scan`]) for Python, and the exception class that policy enforcement raises.

use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyTuple, PyType};

use brinery::scan::{self as core, Access, Profile};

/// Add the scan classes and functions to `brinery._native`.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Policy>()?;
    m.add_class::<Finding>()?;
    m.add_class::<ScanReport>()?;
    m.add_function(wrap_pyfunction!(scan_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(pickle_extent, m)?)?;
    m.add_function(wrap_pyfunction!(set_error_class, m)?)?;
    let names: Vec<&str> = Profile::ALL.iter().map(|p| p.name()).collect();
    m.add("SCAN_PROFILES", PyTuple::new(m.py(), names)?)?;
    Ok(())
}

static UNSAFE_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// `_set_unsafe_error(cls)`: the exception class policy enforcement raises (set once by
/// `brinery/__init__.py`; until then `pickle.UnpicklingError`).
#[pyfunction(name = "_set_unsafe_error")]
fn set_error_class(py: Python<'_>, cls: Bound<'_, PyType>) -> PyResult<()> {
    let _ = UNSAFE_ERROR.set(py, cls.unbind());
    Ok(())
}

/// `UnsafePickleError(message)` with `.findings = [finding]`.
pub(crate) fn unsafe_error(py: Python<'_>, finding: core::Finding) -> PyErr {
    let message = finding.message.clone();
    let hint = match (finding.allow_name(), finding.rule) {
        (Some(name), core::Rule::DisallowedGlobal | core::Rule::RefOnlyCalled) => {
            format!("; if you trust this file, allow it with allow=[\"{name}\"]")
        }
        _ => String::new(),
    };
    let text = format!("refusing to load: {}: {message}{hint}", finding.rule.code());
    let err = match UNSAFE_ERROR.get(py) {
        Some(cls) => PyErr::from_type(cls.bind(py).clone(), text),
        None => return crate::errors::unpickling_error(py, text),
    };
    let value = err.value(py);
    if let Ok(f) = Py::new(py, Finding { inner: finding }) {
        let _ = value.setattr("findings", vec![f]);
    }
    err
}

/// The policy of `Policy()` (every profile, nothing allowed by name), built once: what
/// `safe_loads(data)` enforces when given no policy.
pub(crate) fn default_policy(py: Python<'_>) -> PyResult<Bound<'_, Policy>> {
    static DEFAULT: PyOnceLock<Py<Policy>> = PyOnceLock::new();
    DEFAULT
        .get_or_try_init(py, || {
            Py::new(
                py,
                Policy {
                    inner: Arc::new(core::Policy::builder().all_profiles().build()),
                },
            )
        })
        .map(|p| p.bind(py).clone())
}

/// What a pickle may reference and call.
#[pyclass(frozen, module = "brinery._native", name = "Policy")]
pub(crate) struct Policy {
    pub(crate) inner: Arc<core::Policy>,
}

#[pymethods]
impl Policy {
    #[new]
    #[pyo3(signature = (profiles = None, allow = None, allow_refs = None))]
    fn new(
        profiles: Option<Vec<String>>,
        allow: Option<Vec<String>>,
        allow_refs: Option<Vec<String>>,
    ) -> PyResult<Self> {
        let err = |e: core::PolicyError| PyValueError::new_err(e.to_string());
        let mut b = core::Policy::builder();
        match profiles {
            None => b = b.all_profiles(),
            Some(names) => {
                for n in names {
                    b = b.profile_name(&n).map_err(err)?;
                }
            }
        }
        for name in allow.unwrap_or_default() {
            b = b.allow_dotted(&name).map_err(err)?;
        }
        for name in allow_refs.unwrap_or_default() {
            b = b.allow_dotted_ref(&name).map_err(err)?;
        }
        Ok(Policy {
            inner: Arc::new(b.build()),
        })
    }

    #[getter]
    fn profiles(&self) -> Vec<&'static str> {
        self.inner.profiles().iter().map(|p| p.name()).collect()
    }

    #[pyo3(signature = (module, qualname, /, call = true))]
    fn allows(&self, module: &str, qualname: &str, call: bool) -> bool {
        match self.inner.allows(module, qualname) {
            Some(Access::Call) => true,
            Some(Access::Ref) => !call,
            None => false,
        }
    }

    fn __repr__(&self) -> String {
        let extra: Vec<String> = self
            .inner
            .extra_entries()
            .iter()
            .map(|(m, n, a)| format!("{m}:{n}{}", if *a == Access::Ref { " (ref)" } else { "" }))
            .collect();
        format!("Policy(profiles={:?}, allow={:?})", self.profiles(), extra)
    }
}

/// One finding of a scan.
#[pyclass(frozen, module = "brinery._native", name = "Finding")]
pub(crate) struct Finding {
    inner: core::Finding,
}

#[pymethods]
impl Finding {
    #[getter]
    fn rule(&self) -> &'static str {
        self.inner.rule.code()
    }
    #[getter]
    fn name(&self) -> &'static str {
        self.inner.rule.name()
    }
    #[getter]
    fn offset(&self) -> u64 {
        self.inner.offset
    }
    #[getter]
    fn opcode(&self) -> Option<&'static str> {
        self.inner.opcode.map(|o| o.name())
    }
    #[getter]
    fn global_name(&self) -> Option<String> {
        self.inner.global_name()
    }
    /// The global as `allow=` accepts it: `module.name`, or `module:Outer.Inner` for a nested
    /// name (which the dotted form would split at the wrong dot).
    #[getter]
    fn allow_name(&self) -> Option<String> {
        self.inner.allow_name()
    }
    #[getter]
    fn member(&self) -> Option<String> {
        self.inner.member.clone()
    }
    #[getter]
    fn message(&self) -> String {
        self.inner.message.clone()
    }
    fn __repr__(&self) -> String {
        format!(
            "<Finding {} {}{}: {}>",
            self.inner.rule.code(),
            self.inner.rule.name(),
            self.inner
                .member
                .as_ref()
                .map(|m| format!(" in {m}"))
                .unwrap_or_default(),
            self.inner.message
        )
    }
    fn __str__(&self) -> String {
        self.inner.to_string()
    }
}

/// The result of `scan_bytes`.
#[pyclass(frozen, module = "brinery._native", name = "ScanReport")]
pub(crate) struct ScanReport {
    inner: core::Report,
}

#[pymethods]
impl ScanReport {
    #[getter]
    fn ok(&self) -> bool {
        self.inner.is_ok()
    }
    #[getter]
    fn findings(&self, py: Python<'_>) -> PyResult<Vec<Py<Finding>>> {
        self.inner
            .findings
            .iter()
            .map(|f| Py::new(py, Finding { inner: f.clone() }))
            .collect()
    }
    #[getter]
    fn globals(&self) -> Vec<String> {
        self.inner.global_names()
    }
    #[getter]
    fn opcodes(&self) -> u64 {
        self.inner.opcodes
    }
    #[getter]
    fn members(&self) -> Vec<String> {
        self.inner.members.clone()
    }
    fn __bool__(&self) -> bool {
        self.inner.is_ok()
    }
    fn __repr__(&self) -> String {
        if self.inner.is_ok() {
            format!(
                "<ScanReport ok: {} globals, {} opcodes>",
                self.inner.global_names().len(),
                self.inner.opcodes
            )
        } else {
            let first = &self.inner.findings[0];
            format!(
                "<ScanReport NOT ok: {} finding(s), first: {}>",
                self.inner.findings.len(),
                first
            )
        }
    }
}

/// `_pickle_extent(data) -> (status, n)`: where the first pickle in `data` ends, by its
/// opcodes' lengths alone (`brinery::decode::pickle_extent`): `("complete", end)`,
/// `("incomplete", bytes_needed_in_all)` or `("invalid", offset)`. `safe_load` uses it to take
/// exactly one pickle from a file, as `pickle.load` does.
#[pyfunction(name = "_pickle_extent")]
fn pickle_extent(data: &Bound<'_, PyBytes>) -> (&'static str, usize) {
    match brinery::decode::pickle_extent(data.as_bytes()) {
        brinery::decode::Extent::Complete(n) => ("complete", n),
        brinery::decode::Extent::Incomplete(n) => ("incomplete", n),
        brinery::decode::Extent::Invalid(n) => ("invalid", n),
    }
}

/// `scan_bytes(data, policy=None)`: scan a pickle or a container of pickles without running
/// anything.
#[pyfunction]
#[pyo3(signature = (data, policy = None))]
fn scan_bytes(
    py: Python<'_>,
    data: &Bound<'_, PyAny>,
    policy: Option<&Bound<'_, Policy>>,
) -> PyResult<ScanReport> {
    let policy = match policy {
        Some(p) => p.get().inner.clone(),
        None => Arc::new(core::Policy::default()),
    };
    let owned: Vec<u8>;
    let bytes: &[u8] = if let Ok(b) = data.cast::<PyBytes>() {
        b.as_bytes()
    } else {
        let buf = pyo3::buffer::PyBuffer::<u8>::get(data).map_err(|_| {
            pyo3::exceptions::PyTypeError::new_err(format!(
                "a bytes-like object is required, not '{}'",
                data.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })?;
        owned = buf.to_vec(py)?;
        &owned
    };
    let limits = brinery::Limits::default();
    // as `safe_loads`: the GIL is handed over only when the scan may take a while (a big
    // input, or a container: a small compressed stream may decompress to a large one)
    let report = if bytes.len() >= crate::unpickler::SCAN_DETACH_MIN
        || core::ContainerKind::detect(bytes).is_some()
    {
        py.detach(|| core::scan_file_bytes(bytes, &policy, &limits))
    } else {
        core::scan_file_bytes(bytes, &policy, &limits)
    };
    Ok(ScanReport { inner: report })
}
