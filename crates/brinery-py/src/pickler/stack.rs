//! How much native stack is left, so that pickling a deeply nested object raises
//! `RecursionError` instead of overflowing the thread's stack when the interpreter's recursion
//! limit was raised far above what the stack can hold.

use std::cell::Cell;

/// Raise `RecursionError` once fewer than this many bytes of stack remain (or a quarter of the
/// stack, for threads with small stacks: one nesting level plus a Python `__reduce__` call must
/// fit in the red zone, and the rest must stay usable).
const RED_ZONE: usize = 256 * 1024;

/// The red zone of a stack of `size` bytes.
fn red_zone(size: usize) -> usize {
    (size / 4).min(RED_ZONE)
}

/// Without a way to ask the OS, assume this much stack is usable below the first call.
const FALLBACK_STACK: usize = 1024 * 1024;

/// The usable stack of the current thread: `(lowest address + red zone, highest address)`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limit {
    low: usize,
    high: usize,
    red: usize,
}

thread_local! {
    /// This thread's [`Limit`] (`None`: not computed yet).
    static LIMIT: Cell<Option<Limit>> = const { Cell::new(None) };
}

/// The approximate current stack pointer.
#[inline(always)]
fn stack_pointer() -> usize {
    let marker = 0u8;
    std::hint::black_box(&marker) as *const u8 as usize
}

/// The bounds of this thread's stack, computed once per thread.
pub(crate) fn limit() -> Limit {
    LIMIT.with(|cell| {
        if let Some(v) = cell.get() {
            return v;
        }
        let v = match stack_bounds() {
            Some((low, high)) => {
                let red = red_zone(high - low);
                Limit {
                    low: low.saturating_add(red),
                    high,
                    red,
                }
            }
            None => {
                let sp = stack_pointer();
                Limit {
                    low: sp.saturating_sub(FALLBACK_STACK),
                    high: usize::MAX,
                    red: RED_ZONE,
                }
            }
        };
        cell.set(Some(v));
        v
    })
}

/// Whether the stack is nearly exhausted: the stack pointer is in the red zone at the bottom of
/// this thread's stack. A stack pointer outside the thread's stack (code running on a stack of
/// its own, e.g. a coroutine library's) is not checked.
#[inline(always)]
pub(crate) fn exhausted(limit: Limit) -> bool {
    let sp = stack_pointer();
    sp < limit.low && sp >= limit.low - limit.red.min(limit.low) && sp <= limit.high
}

#[cfg(target_os = "linux")]
fn stack_bounds() -> Option<(usize, usize)> {
    use std::os::raw::{c_int, c_void};

    /// Room for glibc's and musl's `pthread_attr_t` (56 and 36-64 bytes).
    #[repr(C, align(16))]
    struct Attr([u8; 256]);

    extern "C" {
        fn pthread_self() -> usize;
        fn pthread_getattr_np(thread: usize, attr: *mut Attr) -> c_int;
        fn pthread_attr_getstack(
            attr: *const Attr,
            stackaddr: *mut *mut c_void,
            stacksize: *mut usize,
        ) -> c_int;
        fn pthread_attr_destroy(attr: *mut Attr) -> c_int;
    }

    let mut attr = Attr([0; 256]);
    let mut addr: *mut c_void = std::ptr::null_mut();
    let mut size = 0usize;
    // SAFETY: `pthread_t` is `unsigned long` on Linux (glibc and musl), which is `usize`;
    // `attr` is a zeroed, suitably aligned buffer larger than `pthread_attr_t`, initialised by
    // `pthread_getattr_np` before `pthread_attr_getstack` reads it and destroyed exactly once
    // after; the out-pointers point to live locals.
    let ok = unsafe {
        if pthread_getattr_np(pthread_self(), &mut attr) != 0 {
            return None;
        }
        let r = pthread_attr_getstack(&attr, &mut addr, &mut size);
        pthread_attr_destroy(&mut attr);
        r == 0
    };
    (ok && !addr.is_null() && size > 0).then(|| (addr as usize, addr as usize + size))
}

#[cfg(target_os = "macos")]
fn stack_bounds() -> Option<(usize, usize)> {
    use std::os::raw::c_void;
    extern "C" {
        fn pthread_self() -> *mut c_void;
        fn pthread_get_stackaddr_np(thread: *mut c_void) -> *mut c_void;
        fn pthread_get_stacksize_np(thread: *mut c_void) -> usize;
    }
    // SAFETY: both functions only read the calling thread's own descriptor.
    let (top, size) = unsafe {
        let t = pthread_self();
        (
            pthread_get_stackaddr_np(t) as usize,
            pthread_get_stacksize_np(t),
        )
    };
    (top != 0 && size > 0 && size <= top).then(|| (top - size, top))
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn stack_bounds() -> Option<(usize, usize)> {
    None
}
