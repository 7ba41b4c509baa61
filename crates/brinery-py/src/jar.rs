//! `_native.JarStore`: the binding of the jar (`crates/brinery-jar`).
//!
//! The Python `brinery.Jar` builds the user-facing API on top of it. Every jar operation runs
//! with the GIL released. Large buffers of a loaded version are assembled zero-copy: one address
//! range is reserved, each raw chunk file is memory-mapped into its place (`MAP_FIXED`) and the
//! few compressed chunks are decompressed into theirs; the range is exposed writable through the
//! buffer protocol by a [`MappedRegion`] that unmaps it when the last view is gone. Every mapping
//! is private (copy-on-write): a write lands in a private copy of that page, never in the chunk
//! file, so a loaded array or DataFrame can be modified like one read any other way while the
//! pages nobody writes stay shared with the page cache (as `numpy.load(mmap_mode='c')`).

use std::path::PathBuf;

use brinery_jar::{Buffer, Jar, LoadOptions, SaveInput, VersionInfo, VersionSpec};
use pyo3::exceptions::{PyException, PyKeyError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList, PyMemoryView, PyString, PyTuple};

use crate::buffer::BufferView;

pyo3::create_exception!(
    _native,
    JarError,
    PyException,
    "A jar operation failed: corrupt or unreadable jar, bad name, bad pickle."
);

/// A jar error as a Python exception: `KeyError` when the name, version, tag or branch does not
/// exist, `JarError` otherwise.
fn jar_err(e: brinery_jar::Error) -> PyErr {
    if e.is_not_found() {
        PyKeyError::new_err(e.to_string())
    } else {
        JarError::new_err(e.to_string())
    }
}

/// A contiguous export of `obj`, or a `TypeError` for a strided buffer.
fn contiguous_view(obj: &Bound<'_, PyAny>) -> PyResult<BufferView> {
    let view = BufferView::get(obj)?;
    if !view.is_contiguous() {
        return Err(PyTypeError::new_err(
            "jar buffers must be contiguous (got a strided buffer)",
        ));
    }
    Ok(view)
}

/// Memory assembled from memory-mapped chunk files (private, copy-on-write); unmapped on drop.
#[pyclass(module = "brinery._native", frozen)]
pub(crate) struct MappedRegion {
    /// Start address (`usize` so the object is `Send + Sync`; Rust never reads or writes the
    /// memory after construction, Python code writes it through buffer views).
    addr: usize,
    /// Bytes exposed.
    len: usize,
    /// Bytes mapped (`len` rounded up to a page).
    map_len: usize,
}

#[pymethods]
impl MappedRegion {
    fn __len__(&self) -> usize {
        self.len
    }

    /// # Safety
    /// Called by CPython with a valid `view` to fill.
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: std::os::raw::c_int,
    ) -> PyResult<()> {
        let (addr, len) = {
            let r = slf.get();
            (r.addr, r.len)
        };
        // SAFETY: `view` is the caller's struct to fill; `addr..addr+len` stays mapped, readable
        // and writable (private copy-on-write pages) while the view holds a reference to `slf`
        // (FillInfo stores and increfs it).
        let r = unsafe {
            ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                addr as *mut std::os::raw::c_void,
                len as ffi::Py_ssize_t,
                0,
                flags,
            )
        };
        if r != 0 {
            return Err(PyErr::fetch(slf.py()));
        }
        Ok(())
    }

    /// # Safety
    /// Nothing to release: the region lives as long as the object.
    unsafe fn __releasebuffer__(&self, _view: *mut ffi::Py_buffer) {}
}

impl Drop for MappedRegion {
    fn drop(&mut self) {
        #[cfg(unix)]
        if self.map_len > 0 {
            // SAFETY: `addr..addr+map_len` is the mapping made in `map_buffer`, owned by this
            // object alone; no buffer view can outlive the object (each view holds a reference).
            unsafe { libc::munmap(self.addr as *mut libc::c_void, self.map_len) };
        }
    }
}

/// Map a large buffer's pieces into one contiguous region, private and copy-on-write.
#[cfg(unix)]
fn map_buffer(m: &brinery_jar::MappedBuffer) -> std::io::Result<MappedRegion> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
    let len = m.len as usize;
    let map_len = len.div_ceil(page) * page;
    if map_len == 0 {
        return Ok(MappedRegion {
            addr: 0,
            len: 0,
            map_len: 0,
        });
    }
    // Reserve the whole range as private anonymous memory.
    // SAFETY: a fresh anonymous mapping at an address of the kernel's choosing; checked below.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            map_len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    // From here on, dropping `region` unmaps everything (the anonymous reservation and any file
    // mappings placed over it).
    let region = MappedRegion {
        addr: base as usize,
        len,
        map_len,
    };
    for p in &m.pieces {
        let offset = p.offset as usize;
        let plen = p.len as usize;
        if offset.checked_add(plen).map_or(true, |end| end > len) {
            return Err(std::io::Error::other("piece outside the buffer"));
        }
        // SAFETY: `offset < len <= map_len`, so the address is inside our reservation.
        let at = unsafe { (base as *mut u8).add(offset) };
        match &p.source {
            brinery_jar::PieceSource::File(path) if offset % page == 0 && plen > 0 => {
                let f = std::fs::File::open(path)?;
                // SAFETY: replaces pages of our own reservation (page-aligned `at`, `plen` bytes
                // rounded up by the kernel: the next piece starts at a later page because
                // pieces are FIXED_CHUNK-aligned) with a private copy-on-write view of the chunk
                // file, whose size the jar checked equals `plen`: writes go to private pages,
                // never to the file (opened read-only). Chunk files are immutable.
                let r = unsafe {
                    libc::mmap(
                        at as *mut libc::c_void,
                        plen,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_PRIVATE | libc::MAP_FIXED,
                        f.as_raw_fd(),
                        0,
                    )
                };
                if r == libc::MAP_FAILED || !std::ptr::eq(r as *const u8, at) {
                    return Err(std::io::Error::last_os_error());
                }
            }
            brinery_jar::PieceSource::File(path) => {
                let data = std::fs::read(path)?;
                if data.len() != plen {
                    return Err(std::io::Error::other("chunk size changed"));
                }
                // SAFETY: `at..at+plen` lies in the writable anonymous reservation, which does
                // not overlap `data`.
                unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), at, plen) };
            }
            brinery_jar::PieceSource::Bytes(data) => {
                if data.len() != plen {
                    return Err(std::io::Error::other("piece size mismatch"));
                }
                // SAFETY: as above.
                unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), at, plen) };
            }
        }
    }
    Ok(region)
}

/// Python value ↔ JSON through the `json` module (meta is free-form).
fn to_json(py: Python<'_>, obj: &Bound<'_, PyAny>) -> PyResult<serde_json::Value> {
    let json = py.import("json")?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("default", py.import("builtins")?.getattr("repr")?)?;
    let text: String = json
        .call_method("dumps", (obj,), Some(&kwargs))?
        .extract()?;
    serde_json::from_str(&text).map_err(|e| PyTypeError::new_err(format!("meta: {e}")))
}

fn from_json<'py>(py: Python<'py>, v: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    let text = serde_json::to_string(v).map_err(|e| JarError::new_err(e.to_string()))?;
    py.import("json")?.call_method1("loads", (text,))
}

fn info_json(v: &VersionInfo) -> serde_json::Value {
    v.to_json()
}

fn info_dict<'py>(py: Python<'py>, v: &VersionInfo) -> PyResult<Bound<'py, PyAny>> {
    from_json(py, &info_json(v))
}

fn spec_of(version: Option<&Bound<'_, PyAny>>) -> PyResult<VersionSpec> {
    let Some(v) = version else {
        return Ok(VersionSpec::Latest);
    };
    if v.is_none() {
        return Ok(VersionSpec::Latest);
    }
    if let Ok(s) = v.cast::<PyString>() {
        return Ok(VersionSpec::parse(&s.to_cow()?));
    }
    if v.is_instance_of::<pyo3::types::PyBool>() {
        return Err(PyTypeError::new_err(
            "version must be an int, a tag (str) or None",
        ));
    }
    match v.extract::<i64>() {
        Ok(n) => Ok(VersionSpec::Number(n)),
        Err(_) => Err(PyTypeError::new_err(
            "version must be an int, a tag (str) or None",
        )),
    }
}

/// A jar on disk, opened by path. See `python/brinery/_native.pyi` for the method contracts.
#[pyclass(module = "brinery._native", frozen)]
pub(crate) struct JarStore {
    jar: Jar,
}

#[pymethods]
impl JarStore {
    #[new]
    #[pyo3(signature = (path, *, create = true))]
    fn new(py: Python<'_>, path: PathBuf, create: bool) -> PyResult<Self> {
        let jar = py
            .detach(|| {
                if create {
                    Jar::init(&path)
                } else {
                    Jar::open(&path)
                }
            })
            .map_err(jar_err)?;
        Ok(JarStore { jar })
    }

    /// The jar's root folder (the `.brinery` directory).
    #[getter]
    fn path(&self) -> String {
        self.jar.root().display().to_string()
    }

    #[pyo3(signature = (branch, name, pickle, buffers = None, meta = None, note = None))]
    #[expect(clippy::too_many_arguments, reason = "mirrors the Python signature")]
    fn save<'py>(
        &self,
        py: Python<'py>,
        branch: &str,
        name: &str,
        pickle: &Bound<'py, PyAny>,
        buffers: Option<&Bound<'py, PyAny>>,
        meta: Option<&Bound<'py, PyAny>>,
        note: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let pickle_view = contiguous_view(pickle)?;
        let mut views = Vec::new();
        if let Some(bufs) = buffers {
            for b in bufs.try_iter()? {
                views.push(contiguous_view(&b?)?);
            }
        }
        let meta = match meta {
            Some(m) if !m.is_none() => to_json(py, m)?,
            _ => serde_json::Value::Null,
        };
        let input = SaveInput {
            pickle: pickle_view.data(),
            buffers: views.iter().map(BufferView::data).collect(),
            meta,
            note,
        };
        let info = py
            .detach(|| self.jar.save(branch, name, &input))
            .map_err(jar_err)?;
        drop(input);
        drop(views);
        drop(pickle_view);
        info_dict(py, &info)
    }

    #[pyo3(signature = (branch, name, version = None, *, copy = false))]
    fn load<'py>(
        &self,
        py: Python<'py>,
        branch: &str,
        name: &str,
        version: Option<&Bound<'py, PyAny>>,
        copy: bool,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let spec = spec_of(version)?;
        let loaded = py
            .detach(|| {
                self.jar
                    .load(branch, name, &spec, LoadOptions { map: true })
            })
            .map_err(jar_err)?;
        let pickle = PyBytes::new(py, &loaded.pickle);
        let list = PyList::empty(py);
        for b in loaded.buffers {
            let obj: Bound<'py, PyAny> = match b {
                // A small buffer is read into memory anyway: writable, like a mapped one (the
                // pickle's READONLY_BUFFER makes read-only what was read-only when saved).
                Buffer::Bytes(v) => PyByteArray::new(py, &v).into_any(),
                Buffer::Mapped(m) if copy => {
                    let ba = PyByteArray::new_with(py, m.len as usize, |_| Ok(()))?;
                    // SAFETY: `ba` was just created and no other code holds it, so nothing can
                    // resize or read it while we fill it without the GIL.
                    let dest = unsafe { ba.as_bytes_mut() };
                    py.detach(|| fill(dest, &m)).map_err(jar_err)?;
                    ba.into_any()
                }
                Buffer::Mapped(m) => {
                    #[cfg(unix)]
                    {
                        let region = py.detach(|| map_buffer(&m)).map_err(|e| {
                            JarError::new_err(format!("mapping a buffer of {name:?} failed: {e}"))
                        })?;
                        Bound::new(py, region)?.into_any()
                    }
                    #[cfg(not(unix))]
                    {
                        let v = py.detach(|| Buffer::Mapped(m).to_vec()).map_err(jar_err)?;
                        PyByteArray::new(py, &v).into_any()
                    }
                }
            };
            list.append(PyMemoryView::from(&obj)?)?;
        }
        let info = info_dict(py, &loaded.info)?;
        PyTuple::new(py, [pickle.into_any(), list.into_any(), info])
    }

    #[pyo3(signature = (branch, name, version = None))]
    fn info<'py>(
        &self,
        py: Python<'py>,
        branch: &str,
        name: &str,
        version: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let spec = spec_of(version)?;
        let info = py
            .detach(|| self.jar.info(branch, name, &spec))
            .map_err(jar_err)?;
        info_dict(py, &info)
    }

    fn log<'py>(&self, py: Python<'py>, branch: &str, name: &str) -> PyResult<Bound<'py, PyAny>> {
        let log = py.detach(|| self.jar.log(branch, name)).map_err(jar_err)?;
        from_json(
            py,
            &serde_json::Value::Array(log.iter().map(info_json).collect()),
        )
    }

    fn names(&self, py: Python<'_>, branch: &str) -> PyResult<Vec<String>> {
        py.detach(|| self.jar.names(branch)).map_err(jar_err)
    }

    fn contains(&self, py: Python<'_>, branch: &str, name: &str) -> PyResult<bool> {
        py.detach(|| self.jar.contains(branch, name))
            .map_err(jar_err)
    }

    fn tag<'py>(
        &self,
        py: Python<'py>,
        branch: &str,
        name: &str,
        version: Option<&Bound<'py, PyAny>>,
        tag: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        let spec = spec_of(version)?;
        let info = py
            .detach(|| self.jar.tag(branch, name, &spec, tag))
            .map_err(jar_err)?;
        info_dict(py, &info)
    }

    fn delete(&self, py: Python<'_>, branch: &str, name: &str) -> PyResult<()> {
        py.detach(|| self.jar.delete(branch, name)).map_err(jar_err)
    }

    fn branches(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        py.detach(|| self.jar.branches()).map_err(jar_err)
    }

    fn create_branch(&self, py: Python<'_>, name: &str, from_branch: &str) -> PyResult<()> {
        py.detach(|| self.jar.create_branch(name, from_branch))
            .map_err(jar_err)
    }

    fn gc<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let r = py.detach(|| self.jar.gc()).map_err(jar_err)?;
        from_json(py, &serde_json::to_value(&r).unwrap_or_default())
    }

    fn verify<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let r = py.detach(|| self.jar.verify()).map_err(jar_err)?;
        from_json(py, &serde_json::to_value(&r).unwrap_or_default())
    }

    fn export_pickle(
        &self,
        py: Python<'_>,
        branch: &str,
        name: &str,
        version: Option<&Bound<'_, PyAny>>,
        path: PathBuf,
    ) -> PyResult<u64> {
        let spec = spec_of(version)?;
        py.detach(|| self.jar.export_pickle(branch, name, &spec, &path))
            .map_err(jar_err)
    }

    #[pyo3(signature = (branch, name, path, note = None))]
    fn import_pickle<'py>(
        &self,
        py: Python<'py>,
        branch: &str,
        name: &str,
        path: PathBuf,
        note: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let info = py
            .detach(|| self.jar.import_pickle(branch, name, &path, note))
            .map_err(jar_err)?;
        info_dict(py, &info)
    }

    #[staticmethod]
    #[pyo3(signature = (start = None))]
    fn find(start: Option<PathBuf>) -> PyResult<Option<String>> {
        let start = match start {
            Some(s) => s,
            None => std::env::current_dir()
                .map_err(|e| JarError::new_err(format!("current directory: {e}")))?,
        };
        Ok(brinery_jar::find_jar(&start).map(|p| p.display().to_string()))
    }

    #[staticmethod]
    fn key_id(py: Python<'_>) -> PyResult<String> {
        py.detach(brinery_jar::Key::user)
            .map(|k| k.id().to_string())
            .map_err(jar_err)
    }
}

fn blake3_hex(data: &[u8]) -> String {
    brinery_jar::hash_hex(data)
}

/// Fill `dest` with a mapped buffer's bytes, reading and re-hashing the chunk files (`copy=True`).
fn fill(dest: &mut [u8], m: &brinery_jar::MappedBuffer) -> brinery_jar::Result<()> {
    for p in &m.pieces {
        let at = p.offset as usize;
        let end = at + p.len as usize;
        let Some(slot) = dest.get_mut(at..end) else {
            continue;
        };
        match &p.source {
            brinery_jar::PieceSource::Bytes(b) => slot.copy_from_slice(b),
            brinery_jar::PieceSource::File(path) => {
                use std::io::Read;
                std::fs::File::open(path)
                    .and_then(|mut f| f.read_exact(slot))
                    .map_err(|e| brinery_jar::Error::Io {
                        op: "read chunk",
                        path: path.clone(),
                        error: e,
                    })?;
                // The file is named by the BLAKE3 of its content: check it.
                let name = path.file_name().and_then(|f| f.to_str()).unwrap_or("");
                if blake3_hex(slot) != name {
                    return Err(brinery_jar::Error::Corrupt {
                        what: "chunk",
                        detail: "content does not match its hash".into(),
                        path: path.clone(),
                    });
                }
            }
        }
    }
    Ok(())
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<JarStore>()?;
    m.add("JarError", m.py().get_type::<JarError>())?;
    Ok(())
}
