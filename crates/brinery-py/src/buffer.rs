//! A buffer-protocol export held for as long as Rust reads the memory: the pickler's in-band
//! `PickleBuffer`s and deferred payloads, and the buffers the jar saves.

use pyo3::ffi;
use pyo3::prelude::*;

/// A `Py_buffer` export of an object (`PyBUF_FULL_RO`), released on drop. Boxed: exporters may
/// point `shape` into the struct itself.
pub(crate) struct BufferView {
    view: Box<ffi::Py_buffer>,
}

impl BufferView {
    pub(crate) fn get(obj: &Bound<'_, PyAny>) -> PyResult<BufferView> {
        Self::get_with(obj, ffi::PyBUF_FULL_RO)
    }

    /// A C-contiguous export (`PyBUF_CONTIG_RO`, what `pickle.loads` asks for): the exporter
    /// refuses a strided one with its own error (`BufferError` from a `memoryview`,
    /// `ValueError` from a numpy array), and an object without the buffer protocol gets
    /// `TypeError: a bytes-like object is required, not '...'`.
    pub(crate) fn get_c_contiguous(obj: &Bound<'_, PyAny>) -> PyResult<BufferView> {
        Self::get_with(obj, ffi::PyBUF_CONTIG_RO)
    }

    fn get_with(obj: &Bound<'_, PyAny>, flags: std::os::raw::c_int) -> PyResult<BufferView> {
        // SAFETY: `Py_buffer` is a plain C struct for which all-zero is a valid "empty" value.
        let mut view: Box<ffi::Py_buffer> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: GIL held; `obj` is a live object and `view` points to writable, boxed memory
        // that stays put until `PyBuffer_Release` in `drop`.
        let r = unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), &mut *view, flags) };
        if r != 0 {
            return Err(PyErr::fetch(obj.py()));
        }
        Ok(BufferView { view })
    }

    pub(crate) fn readonly(&self) -> bool {
        self.view.readonly != 0
    }

    pub(crate) fn len(&self) -> usize {
        self.view.len as usize
    }

    pub(crate) fn is_contiguous(&self) -> bool {
        // SAFETY: `view` was filled by a successful `PyObject_GetBuffer` and not released.
        self.view.suboffsets.is_null()
            && unsafe { ffi::PyBuffer_IsContiguous(&*self.view, b'A' as std::os::raw::c_char) } != 0
    }

    pub(crate) fn data(&self) -> &[u8] {
        if self.view.len <= 0 || self.view.buf.is_null() {
            return &[];
        }
        // SAFETY: a contiguous buffer (every caller checks `is_contiguous` first, or asked for
        // a C-contiguous export, `get_c_contiguous`) of `len` bytes
        // at `buf`, kept alive and unresizable by the export we hold until `drop`. Another Python
        // thread may still write into a writable buffer while the GIL is released (the jar): as
        // with numpy, the caller must not mutate an object while it is being saved.
        unsafe { std::slice::from_raw_parts(self.view.buf as *const u8, self.view.len as usize) }
    }
}

impl Drop for BufferView {
    fn drop(&mut self) {
        // SAFETY: releases the export obtained in `get`, exactly once, with the GIL held: a
        // `BufferView` never outlives the call that made it (a `dumps`, whose deferred segments
        // are dropped before it returns, or a `JarStore` method, which holds the GIL when it
        // returns).
        unsafe { ffi::PyBuffer_Release(&mut *self.view) };
    }
}
