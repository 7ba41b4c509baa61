//! `bytes` and `bytearray` payloads, created once at their final size and filled in place.
//!
//! Large payloads (a NumPy array pickled in-band at protocol 5 is one `BYTEARRAY8`) are the one
//! place where a load moves gigabytes: the object's memory is fresh, so the copy into it runs at
//! the page-fault rate, not at memory speed. Their pages are populated in one system call
//! (`MADV_POPULATE_WRITE`, Linux 5.14+; elsewhere nothing happens) before the first byte is
//! written: one kernel walk instead of a fault per 4 KiB page. Measured on this project's VM with
//! 256 MiB arrays: 0.47-0.56 GB/s without, 0.72-0.95 GB/s with it; with 64 arrays of 64 KiB per
//! load, 300 loads: 1.2-1.4 s of CPU without, 0.8-1.0 s with it. Memory the allocator hands out
//! again (a freed heap block) is resident already, and walking it would only cost time (8 MB
//! payloads in reused memory: +0.2 ms per load), so one `mincore` probe of the last page decides.
//! Fresh payloads of 4 MiB and more also ask for transparent huge pages (`MADV_HUGEPAGE`, on the
//! 2 MiB-aligned interior only, so no page reaches outside the object): a 256 MiB array loads in
//! 75-89 ms instead of 109-131 ms (21 loads in 3 processes, THP `enabled=madvise`,
//! `defrag=madvise`; 640 faults instead of 65,537), a 1 GB array in 295-370 ms instead of
//! 490-650 ms of CPU (the stdlib: 740-910 ms). Only for copies from memory: payloads read from a
//! file are left to the kernel (see [`new_uninit`]). An earlier session saw them erratic with
//! 256 MiB arrays (0.14-0.99 GB/s, synchronous compaction); on a host whose memory is too
//! fragmented for 2 MiB pages the kernel may compact first, or falls back to 4 KiB pages. The advice changes no content and no ownership; the memory is still the one
//! CPython's allocator gave the object.

use std::ffi::c_void;

use pyo3::ffi;
use pyo3::prelude::*;

/// Payloads from this size up are populated up front (when their memory is fresh).
const POPULATE_MIN: usize = 64 << 10;
const PAGE: usize = 4096;

#[cfg(target_os = "linux")]
extern "C" {
    fn madvise(addr: *mut c_void, len: usize, advice: i32) -> i32;
    fn mincore(addr: *mut c_void, len: usize, vec: *mut u8) -> i32;
}

#[cfg(target_os = "linux")]
const MADV_POPULATE_WRITE: i32 = 23;
#[cfg(target_os = "linux")]
const MADV_HUGEPAGE: i32 = 14;
/// The size of a transparent huge page on x86-64 and (4 KiB-page) aarch64.
const HUGE: usize = 2 << 20;
/// Fresh payloads from this size up ask for huge pages.
const HUGE_MIN: usize = 4 << 20;

/// Populate the whole pages inside `[ptr, ptr + len)`; failures are ignored (advice only: an
/// older kernel answers EINVAL and the pages fault in one by one as before).
fn populate(ptr: *mut u8, len: usize) {
    #[cfg(target_os = "linux")]
    {
        if len < POPULATE_MIN {
            return;
        }
        let start = (ptr as usize).div_ceil(PAGE) * PAGE;
        let end = (ptr as usize + len) / PAGE * PAGE;
        if end > start {
            // Memory the allocator hands out again (a freed heap block) is usually resident
            // already: then the walk would only cost time. Probe the last whole page.
            let mut resident = 0u8;
            // SAFETY: `end - PAGE` is a page-aligned address inside the caller's allocation;
            // mincore writes one byte (one page) into `resident`.
            let probed = unsafe { mincore((end - PAGE) as *mut c_void, PAGE, &mut resident) };
            if probed == 0 && resident & 1 == 1 {
                return;
            }
            if len >= HUGE_MIN {
                let hs = (ptr as usize).div_ceil(HUGE) * HUGE;
                let he = (ptr as usize + len) / HUGE * HUGE;
                if he > hs {
                    // SAFETY: `[hs, he)` lies inside the caller's allocation; the advice only
                    // lets the kernel back it with 2 MiB pages.
                    unsafe {
                        madvise(hs as *mut c_void, he - hs, MADV_HUGEPAGE);
                    }
                }
            }
            // SAFETY: `[start, end)` lies inside the allocation of `len` bytes at `ptr`, which
            // the caller owns; MADV_POPULATE_WRITE only faults those pages in (as writing them
            // would), it changes neither their contents nor their ownership.
            unsafe {
                madvise(start as *mut c_void, end - start, MADV_POPULATE_WRITE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (ptr, len);
}

/// A new `bytes` (or `bytearray`) of `n` bytes whose content the caller must write, through
/// the returned pointer, before the object is shared with any Python code. No advice: a file's
/// `readinto` fills it, and the kernel's copy faults the pages in as it goes; populating first
/// measured slower there (1 GB array from an evicted file: median 1.55 s with populate, 2.09 s
/// and erratic, 1.0-3.4 s, with huge pages too, 1.40 s without either; the stdlib 1.24-1.47 s).
pub(crate) fn new_uninit<'py>(
    py: Python<'py>,
    n: usize,
    bytearray: bool,
) -> PyResult<(Bound<'py, PyAny>, *mut u8)> {
    // SAFETY: both constructors accept NULL for "uninitialized", return a new reference or NULL
    // with an exception set; the data pointer of the new object is valid for `n` bytes.
    unsafe {
        let (obj, data) = if bytearray {
            let o = ffi::PyByteArray_FromStringAndSize(std::ptr::null(), n as ffi::Py_ssize_t);
            if o.is_null() {
                return Err(PyErr::fetch(py));
            }
            (o, ffi::PyByteArray_AS_STRING(o).cast::<u8>())
        } else {
            let o = ffi::PyBytes_FromStringAndSize(std::ptr::null(), n as ffi::Py_ssize_t);
            if o.is_null() {
                return Err(PyErr::fetch(py));
            }
            (o, ffi::PyBytes_AS_STRING(o).cast::<u8>().cast_mut())
        };
        Ok((Bound::from_owned_ptr(py, obj), data))
    }
}

/// A new `bytes` object holding a copy of `data`, as `_pickle` makes one for `BINBYTES` and
/// `SHORT_BINBYTES`: allocated first, then filled. `PyBytes_FromStringAndSize` with data would
/// hand out CPython's cached object for a single byte, so two one-byte payloads the pickle
/// stores separately would load as one object (and dump again with a memo reference where the
/// stdlib's load dumps two payloads). New reference, or NULL with an exception set.
///
/// # Safety
/// Needs the GIL (the caller's `Python` token).
#[inline]
pub(crate) unsafe fn new_bytes(data: &[u8]) -> *mut ffi::PyObject {
    if data.len() != 1 {
        // SAFETY: `data` is valid for its length (the caller holds the GIL).
        return unsafe { ffi::PyBytes_FromStringAndSize(data.as_ptr().cast(), data.len() as _) };
    }
    // SAFETY: NULL asks for an uninitialized object of one byte, which is written before the
    // object is returned to anyone.
    unsafe {
        let o = ffi::PyBytes_FromStringAndSize(std::ptr::null(), 1);
        if !o.is_null() {
            *ffi::PyBytes_AS_STRING(o).cast::<u8>().cast_mut() = data[0];
        }
        o
    }
}

/// A new `bytes` (or `bytearray`) holding a copy of `data`.
#[inline]
pub(crate) fn copy_of<'py>(
    py: Python<'py>,
    data: &[u8],
    bytearray: bool,
) -> PyResult<Bound<'py, PyAny>> {
    if data.len() < POPULATE_MIN {
        // SAFETY: `data` is valid for its length; new reference or NULL with an exception.
        return unsafe {
            Bound::from_owned_ptr_or_err(
                py,
                if bytearray {
                    ffi::PyByteArray_FromStringAndSize(data.as_ptr().cast(), data.len() as _)
                } else {
                    new_bytes(data)
                },
            )
        };
    }
    let (obj, dst) = new_uninit(py, data.len(), bytearray)?;
    populate(dst, data.len());
    // SAFETY: `dst` is the fresh object's data area of `data.len()` bytes, not shared yet and
    // not overlapping `data`.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) };
    Ok(obj)
}
