//! `Unpickler(..., policy=...)`: the scan rules enforced during the load itself (defence in
//! depth behind `brinery.safe_load`'s scan).
//!
//! The machine calls [`Guard::before`] before each opcode and [`Guard::after`] after it. Globals
//! are checked against the deny-list and the policy *before* anything is imported; each global
//! object the policy let through is remembered (by identity, kept alive) with its access, so
//! REDUCE, NEWOBJ, NEWOBJ_EX, INST and OBJ may call only globals the policy marks callable, never
//! the result of another call; BUILD and the container opcodes may not touch a global;
//! `getattr` only as `getattr(<allowed global>, '<constant>')` whose result is itself listed, and
//! `getattr` itself never as a value (an item, an argument, a state); unpickle helpers that call
//! their arguments get exactly the classes their rules name (`brinery::scan::helper_arguments`);
//! BUILD applies only to objects this load created (a call result nothing else referenced), never
//! to a cached or singleton object a factory returned; EXT codes and persistent ids are refused,
//! and so is a repeated PROTO. Each Arrow array `pyarrow.lib._restore_array` rebuilds has its
//! layout checked before the call and is validated (`validate(full=True)`) right after it,
//! before anything else can use it. A refusal raises `brinery.UnsafePickleError`.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple, PyType};

use brinery::decode::{Arg, Op};
use brinery::scan::{self as core, Access, ArgRule, Rule};
use brinery::Opcode;

/// `sys.modules` (the same dict for the interpreter's life): looking a module up there costs a
/// dict lookup, where `import` goes through `builtins.__import__` (the guard's main cost when it
/// did that at every BUILD).
fn sys_modules(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static MODULES: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();
    MODULES
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(
                py.import("sys")?
                    .getattr(pyo3::intern!(py, "modules"))?
                    .unbind(),
            )
        })
        .map(|m| m.bind(py))
}

/// Whether `obj`'s type is `ty` or a subtype of it (the real type hierarchy, which decides
/// which `__setstate__` runs; no `__instancecheck__` call, which made `isinstance` the guard's
/// cost at every BUILD).
fn is_subtype(obj: &Bound<'_, PyAny>, ty: &Bound<'_, PyAny>) -> bool {
    let Ok(ty) = ty.cast::<PyType>() else {
        return false;
    };
    // SAFETY: both are live type objects (the type of a live object, and a checked type);
    // PyType_IsSubtype only reads their MRO.
    unsafe { pyo3::ffi::PyType_IsSubtype(obj.get_type().as_type_ptr(), ty.as_type_ptr()) != 0 }
}

/// `obj`'s own `__dict__`, if it has one already. Unlike the `__dict__` getter this never
/// creates one (an empty dict would show: a `functools.partial` pickles its `__dict__` when it
/// has one), and runs no Python code.
fn own_dict<'py>(obj: &Bound<'py, PyAny>) -> Option<Bound<'py, pyo3::types::PyDict>> {
    let dict = own_dict_ptr(obj)?;
    // SAFETY: `dict` is the live dict in `obj`'s slot (borrowed; `obj` keeps it alive while the
    // GIL is held); the `Bound` takes a new reference of its own.
    let dict = unsafe { Bound::from_borrowed_ptr(obj.py(), dict) };
    dict.cast_into::<pyo3::types::PyDict>().ok()
}

/// The object in `obj`'s `__dict__` slot, borrowed (no reference taken), if there is one: what
/// [`own_dict`] returns, for a comparison of identity that needs no reference.
fn own_dict_ptr(obj: &Bound<'_, PyAny>) -> Option<*mut pyo3::ffi::PyObject> {
    extern "C" {
        /// CPython's pointer to an object's `__dict__` slot (NULL when its type has none; a
        /// slot that holds NULL when no dict was made yet). Exported by every 3.x build.
        fn _PyObject_GetDictPtr(obj: *mut pyo3::ffi::PyObject) -> *mut *mut pyo3::ffi::PyObject;
    }
    // SAFETY: `obj` is a live object; its type's `tp_dictoffset` is a plain field.
    if unsafe { (*obj.get_type().as_type_ptr()).tp_dictoffset } == 0 {
        return None;
    }
    // SAFETY: `obj` is a live object and the GIL is held (the `Bound`'s token); the slot is read,
    // not written.
    unsafe {
        let slot = _PyObject_GetDictPtr(obj.as_ptr());
        if slot.is_null() || (*slot).is_null() {
            return None;
        }
        Some(*slot)
    }
}

/// The first key of `d` that is a special attribute name (`__x__`, `str` keys only) other than
/// the descriptive ones (`core::DATA_SPECIAL_NAMES`). Walks the dict without taking references
/// and reads each key's UTF-8 (cached by CPython for ASCII text): a BUILD state of a fitted
/// estimator has a few dozen keys, and this runs at every BUILD of a guarded load.
fn special_name_key(d: &Bound<'_, pyo3::types::PyDict>) -> Option<String> {
    let mut pos: pyo3::ffi::Py_ssize_t = 0;
    let (mut key, mut value) = (std::ptr::null_mut(), std::ptr::null_mut());
    // SAFETY: `d` is a live dict and the GIL is held; `special_name_of` runs no Python code
    // (no hashing, comparison or callback), so the borrowed key pointers `PyDict_Next` gives
    // stay valid and the dict unchanged while they are read.
    unsafe {
        while pyo3::ffi::PyDict_Next(d.as_ptr(), &mut pos, &mut key, &mut value) != 0 {
            if let Some(name) = special_name_of(key) {
                return Some(name);
            }
        }
    }
    None
}

/// `key` as a special attribute name (`__x__`, a `str` or a `str` subclass) other than the
/// descriptive ones (`core::DATA_SPECIAL_NAMES`), or `None`.
///
/// # Safety
/// `key` must be a live object and the GIL held. A str's length, ASCII flag and first byte (of
/// an ASCII str, at least 5 characters long here) are plain reads of the object;
/// `PyUnicode_AsUTF8AndSize` on an exact or subclassed str returns its UTF-8 (owned by the str)
/// or NULL with an exception, which is cleared (a key that cannot be encoded is not a special
/// name). No Python code runs.
unsafe fn special_name_of(key: *mut pyo3::ffi::PyObject) -> Option<String> {
    // SAFETY: the caller's contract above (a live object, the GIL held); only reads follow.
    unsafe {
        if pyo3::ffi::PyUnicode_Check(key) == 0 || pyo3::ffi::PyUnicode_GET_LENGTH(key) <= 4 {
            return None;
        }
        // most keys end here: an ASCII name whose first byte is not `_`
        if pyo3::ffi::PyUnicode_IS_ASCII(key) != 0 && *pyo3::ffi::PyUnicode_1BYTE_DATA(key) != b'_'
        {
            return None;
        }
        let mut n: pyo3::ffi::Py_ssize_t = 0;
        let p = pyo3::ffi::PyUnicode_AsUTF8AndSize(key, &mut n);
        if p.is_null() {
            pyo3::ffi::PyErr_Clear();
            return None;
        }
        let name = std::slice::from_raw_parts(p.cast::<u8>(), n as usize);
        let special = name.len() > 4
            && name.starts_with(b"__")
            && name.ends_with(b"__")
            && !core::DATA_SPECIAL_NAMES
                .iter()
                .any(|k| k.as_bytes() == name);
        special.then(|| String::from_utf8_lossy(name).into_owned())
    }
}

extern "C" {
    /// CPython's lookup of a name along a type's MRO (a borrowed reference, or NULL with no
    /// exception set): what the generic attribute lookup does first. Exported by 3.x.
    fn _PyType_Lookup(
        ty: *mut pyo3::ffi::PyTypeObject,
        name: *mut pyo3::ffi::PyObject,
    ) -> *mut pyo3::ffi::PyObject;
    /// The type of bound methods (`types.MethodType`).
    static mut PyMethod_Type: pyo3::ffi::PyTypeObject;
    /// A bound method's `__self__` (borrowed; the argument must be a method).
    fn PyMethod_Self(method: *mut pyo3::ffi::PyObject) -> *mut pyo3::ffi::PyObject;
    /// A bound method's `__func__` (borrowed; the argument must be a method).
    fn PyMethod_Function(method: *mut pyo3::ffi::PyObject) -> *mut pyo3::ffi::PyObject;
}

/// Whether `obj`'s type uses the generic attribute lookup (no `__getattribute__` or
/// `__getattr__` of its own). Compared as addresses: the slot of such a class holds the
/// interpreter's one definition (as CPython's own checks compare it).
fn uses_generic_getattr(obj: &Bound<'_, PyAny>) -> bool {
    // SAFETY: `obj` is live, so is its type; `tp_getattro` is a plain field.
    let getattro = unsafe { (*obj.get_type().as_type_ptr()).tp_getattro };
    getattro.map(|f| f as usize)
        == Some(pyo3::ffi::PyObject_GenericGetAttr as pyo3::ffi::getattrofunc as usize)
}

/// The refusal of a `getattr` the policy cannot allow.
const GETATTR_REFUSAL: &str = "getattr is called on something other than an allowed global or an instance of an allowed class, and a constant name";

/// Whether `getattr(obj, attr)` is a plain method lookup that runs no Python code: `obj`'s
/// type uses the generic attribute lookup, the first class of its MRO that defines `attr`
/// holds a Python function, and `obj`'s own `__dict__` has only exact `str` keys, none equal
/// to `attr` (a key of another type, or of a str subclass, could compare equal through its own
/// `__hash__` and `__eq__`, which the lookup would run).
fn plain_method_lookup(obj: &Bound<'_, PyAny>, attr: &Bound<'_, PyString>) -> bool {
    let ty = obj.get_type();
    if !uses_generic_getattr(obj) {
        return false;
    }
    // SAFETY: `_PyType_Lookup` gets a live type and an exact str with the GIL held (the
    // `Bound`s' token) and returns a borrowed pointer, only compared with the function type
    // while `ty` (which keeps it alive) is held.
    let function = unsafe {
        let found = _PyType_Lookup(ty.as_type_ptr(), attr.as_ptr());
        !found.is_null()
            && pyo3::ffi::Py_TYPE(found) == std::ptr::addr_of_mut!(pyo3::ffi::PyFunction_Type)
    };
    if !function {
        return false;
    }
    let Some(d) = own_dict(obj) else { return true };
    let mut pos: pyo3::ffi::Py_ssize_t = 0;
    let (mut key, mut value) = (std::ptr::null_mut(), std::ptr::null_mut());
    // SAFETY: `d` is a live dict and the GIL is held; nothing in the loop runs Python code
    // (`PyUnicode_Compare` of two exact str objects compares their data), so the borrowed keys stay
    // valid and the dict unchanged while they are read.
    unsafe {
        while pyo3::ffi::PyDict_Next(d.as_ptr(), &mut pos, &mut key, &mut value) != 0 {
            if pyo3::ffi::PyUnicode_CheckExact(key) == 0
                || pyo3::ffi::PyUnicode_Compare(key, attr.as_ptr()) == 0
            {
                return false;
            }
        }
    }
    true
}

/// A hasher for object addresses (the keys of the guard's tables): a multiply by an odd
/// constant mixes the aligned low bits up; SipHash cost more than the lookups it keys.
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(26);
    }
}

type AddrMap<V> = HashMap<usize, V, BuildHasherDefault<AddrHasher>>;
type AddrSet = HashSet<usize, BuildHasherDefault<AddrHasher>>;

/// A 256-bit summary of a set of object addresses (one bit per hash of the address): a clear
/// bit means the address is not in the set, so most lookups of objects that are not in it
/// (a BUILD target that is not a global, a call argument that is not a call result) end
/// without hashing into the table. The guard's tables never remove an entry, so the bits
/// never have to be cleared.
#[derive(Default)]
struct AddrBits([u64; 4]);

impl AddrBits {
    #[inline(always)]
    fn slot(addr: usize) -> (usize, u64) {
        let h = ((addr as u64) >> 4).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56;
        ((h >> 6) as usize, 1u64 << (h & 63))
    }

    #[inline(always)]
    fn add(&mut self, addr: usize) {
        let (w, b) = Self::slot(addr);
        self.0[w] |= b;
    }

    /// Whether `addr` may be in the set (false: it is not).
    #[inline(always)]
    fn may_hold(&self, addr: usize) -> bool {
        let (w, b) = Self::slot(addr);
        self.0[w] & b != 0
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Special {
    None,
    Getattr,
    CodecsEncode,
    /// An unpickle helper with argument rules (`core::helper_arguments`).
    Helper,
}

fn special(module: &str, name: &str) -> Special {
    match (module, name) {
        ("builtins", "getattr") => Special::Getattr,
        ("_codecs", "encode") => Special::CodecsEncode,
        _ if !core::helper_arguments(module, name).is_empty() => Special::Helper,
        _ => Special::None,
    }
}

#[derive(Default)]
struct State {
    /// Global objects the policy let through, by address, with their access and dotted name.
    globals: AddrMap<(Access, Special, Arc<str>)>,
    /// The addresses in `globals`.
    global_bits: AddrBits,
    /// Keeps those objects alive so that no address is reused during the load.
    keep: Vec<Py<PyAny>>,
    /// What the opcode being executed pushes, registered by `after`.
    pending: Option<(Access, Special, Arc<str>)>,
    /// Addresses of the `builtins.getattr` objects loaded (checked wherever a value is used).
    getattrs: Vec<usize>,
    /// Call results that already existed (a cached or singleton object a factory returned,
    /// which something else referenced when the call returned), kept alive so that no address
    /// is reused: BUILD and the container opcodes may not modify them. Results nothing else
    /// referenced were created by this load and are not tracked (no cost for the common case).
    shared: AddrSet,
    /// The addresses in `shared`.
    shared_bits: AddrBits,
    results: Vec<Py<PyAny>>,
    /// How deeply call results nest (red-team F14), by the address of each call result alive
    /// in the load; a result nests one deeper than the deepest result among its call's
    /// arguments and the items of its tuple arguments, as the scan counts.
    depths: AddrMap<u32>,
    /// The addresses in `depths`.
    depth_bits: AddrBits,
    /// The depth of the result of the call being executed, registered by `after`.
    pending_depth: Option<u32>,
    /// The call being executed is `pyarrow.lib._restore_array`: `after` validates its result.
    pending_arrow: bool,
    /// The call being executed binds a method to an instance ([`Guard::bound_method`]): `after`
    /// registers its result as shared, so that no BUILD or container opcode reaches the
    /// method's function through it (a method forwards attribute lookups to its function).
    pending_bound: bool,
    /// The address of the dict state of the BUILD being executed (the whole state, or the dict
    /// half of a `(dict, slots)` pair), for `after` to compare with the object's own `__dict__`
    /// (only an address: it is dereferenced only when that live dict is at it).
    pending_state: Option<usize>,
    /// Whether the tables were set up ([`State::adopt_spare`]): they go back to the thread's
    /// spare when the load ends.
    adopted: bool,
}

/// The tables of a guarded load that allocate (see [`State`]), kept empty between loads.
#[derive(Default)]
struct Tables {
    globals: AddrMap<(Access, Special, Arc<str>)>,
    keep: Vec<Py<PyAny>>,
    shared: AddrSet,
    results: Vec<Py<PyAny>>,
    depths: AddrMap<u32>,
}

thread_local! {
    /// The emptied tables of the thread's last guarded load that had globals or calls, taken
    /// by the next one at its first global or call: allocating and freeing them cost a small
    /// load more than all its lookups. A load started while another runs on the thread (from
    /// a `__setstate__`, say) finds them taken and makes its own.
    static SPARE_TABLES: RefCell<Option<Tables>> = const { RefCell::new(None) };
}

impl State {
    /// Entries a table may have room for and still be kept for the next load (a big load's
    /// tables are freed, so that one load does not pin their memory for the thread's life).
    const MAX_SPARE: usize = 256;

    /// Before the first entry of any table: take the thread's spare tables (if free) for the
    /// ones that have no room yet. Then (for the table about to get an entry) `reserve`.
    #[cold]
    fn adopt_spare(&mut self) {
        self.adopted = true;
        let Some(spare) = SPARE_TABLES.with(|s| s.try_borrow_mut().ok().and_then(|mut s| s.take()))
        else {
            return;
        };
        macro_rules! adopt {
            ($($field:ident),*) => {$(
                if self.$field.capacity() == 0 {
                    self.$field = spare.$field;
                }
            )*};
        }
        adopt!(globals, keep, shared, results, depths);
    }

    /// Empty the tables (dropping what they hold) and keep them for the thread's next load.
    fn recycle(&mut self) {
        let mut tables = Tables {
            globals: std::mem::take(&mut self.globals),
            keep: std::mem::take(&mut self.keep),
            shared: std::mem::take(&mut self.shared),
            results: std::mem::take(&mut self.results),
            depths: std::mem::take(&mut self.depths),
        };
        // everything is released first: a reference dropped here may run Python code (a
        // `__del__`), which may start and end a load of its own
        macro_rules! empty {
            ($($field:ident),*) => {$(
                if !tables.$field.is_empty() {
                    tables.$field.clear();
                }
            )*};
        }
        empty!(globals, keep, shared, results, depths);
        let small = tables.globals.capacity() <= Self::MAX_SPARE
            && tables.keep.capacity() <= Self::MAX_SPARE
            && tables.shared.capacity() <= Self::MAX_SPARE
            && tables.results.capacity() <= Self::MAX_SPARE
            && tables.depths.capacity() <= Self::MAX_SPARE;
        if small {
            SPARE_TABLES.with(|spare| {
                if let Ok(mut spare) = spare.try_borrow_mut() {
                    if spare.is_none() {
                        *spare = Some(tables);
                    }
                }
            });
        }
    }

    /// The access and role of `obj` if it is a global the policy let through.
    #[inline]
    fn global_of(&self, obj: &Bound<'_, PyAny>) -> Option<&(Access, Special, Arc<str>)> {
        let id = obj.as_ptr() as usize;
        if !self.global_bits.may_hold(id) {
            return None;
        }
        self.globals.get(&id)
    }

    /// The call depth of `obj` if it is a call result of this load.
    #[inline]
    fn depth_of(&self, obj: &Bound<'_, PyAny>) -> Option<u32> {
        let id = obj.as_ptr() as usize;
        if !self.depth_bits.may_hold(id) {
            return None;
        }
        self.depths.get(&id).copied()
    }
}

/// The policy of one load.
pub(crate) struct Guard {
    policy: Arc<core::Policy>,
    state: RefCell<State>,
    /// Whether the machine's fast loop may run: it skips the guard, which is sound only while
    /// nothing it does needs a check (see [`Guard::fast_loop_ok`]).
    fast_ok: Cell<bool>,
    /// Whether a `builtins.getattr` was resolved ([`State::getattrs`] is not empty).
    has_getattr: Cell<bool>,
    /// Whether a PROTO was run (a repeated one is refused).
    seen_proto: Cell<bool>,
    /// Whether opcode offsets are positions in the whole input (an in-memory load), so that a
    /// refusal may name the byte offset.
    exact_offsets: Cell<bool>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let st = self.state.get_mut();
        if st.adopted {
            st.recycle();
        }
    }
}

/// The set bits of `bits` in `[start, end)` (Arrow's bit order: least significant first), or
/// `None` when the range is not all in `bits`.
fn count_set_bits(bits: &[u8], start: usize, end: usize) -> Option<usize> {
    if start >= end {
        return Some(0);
    }
    let bytes = bits.get(start / 8..end.div_ceil(8))?;
    // eight bytes at a time (a byte at a time was ~15 instructions per byte without popcnt)
    let words = bytes.chunks_exact(8);
    let tail: usize = words
        .remainder()
        .iter()
        .map(|b| b.count_ones() as usize)
        .sum();
    let total: usize = tail
        + words
            .map(|w| u64::from_le_bytes(w.try_into().unwrap_or([0; 8])).count_ones() as usize)
            .sum::<usize>();
    // minus the bits of the first byte below `start` and of the last byte from `end` on
    let below = (bytes[0] & ((1u16 << (start % 8)) - 1) as u8).count_ones() as usize;
    let above = match end % 8 {
        0 => 0,
        e => (bytes[bytes.len() - 1] & !(((1u16 << e) - 1) as u8)).count_ones() as usize,
    };
    Some(total - below - above)
}

/// Whether `array` is a pyarrow `StringArray` or `LargeStringArray` that Arrow's full validation
/// (`validate(full=True)`) accepts, checked here on its buffers: pyarrow's cheap layout check
/// (`validate()`), then the validity bitmap covering the slots and agreeing with the null count,
/// an offsets buffer covering `offset + length + 1` offsets that start at 0 or more, never
/// decrease and end within the data buffer, and the text between the first and last offsets
/// valid UTF-8 with every offset on a character boundary (so every value is valid UTF-8).
/// Every check is at least as strict as Arrow's: `false` (any other array, or any check
/// failing) makes the caller run `validate(full=True)`, which accepts or names the problem.
/// Arrow's full validation of a 2.5 MB string column was most of what a safe load of a
/// pyarrow-backed DataFrame paid over a plain one.
fn arrow_strings_valid(py: Python<'_>, array: &Bound<'_, PyAny>) -> PyResult<bool> {
    let Ok(lib) = sys_modules(py)?.get_item(pyo3::intern!(py, "pyarrow.lib")) else {
        return Ok(false);
    };
    let cls = array.get_type();
    let width = if cls.is(&lib.getattr(pyo3::intern!(py, "StringArray"))?) {
        4
    } else if cls.is(&lib.getattr(pyo3::intern!(py, "LargeStringArray"))?) {
        8
    } else {
        return Ok(false);
    };
    if array.call_method0(pyo3::intern!(py, "validate")).is_err() {
        return Ok(false);
    }
    let int = |name: &Bound<'_, PyString>| -> PyResult<Option<usize>> {
        Ok(array.getattr(name)?.extract::<usize>().ok())
    };
    let (Some(length), Some(offset), Some(null_count)) = (
        array.len().ok(),
        int(pyo3::intern!(py, "offset"))?,
        int(pyo3::intern!(py, "null_count"))?,
    ) else {
        return Ok(false);
    };
    let Ok(buffers) = array
        .call_method0(pyo3::intern!(py, "buffers"))?
        .extract::<Vec<Bound<'_, PyAny>>>()
    else {
        return Ok(false);
    };
    let [validity, offsets, data] = buffers.as_slice() else {
        return Ok(false);
    };
    let Some(end) = offset.checked_add(length) else {
        return Ok(false);
    };
    // A C-contiguous byte export of a pyarrow Buffer (pyarrow exports format `b`), or `None`.
    enum Held {
        Unsigned(pyo3::buffer::PyBuffer<u8>),
        Signed(pyo3::buffer::PyBuffer<i8>),
    }
    let bytes = |b: &Bound<'_, PyAny>| -> Option<Held> {
        match pyo3::buffer::PyBuffer::<u8>::get(b) {
            Ok(buf) => buf.is_c_contiguous().then_some(Held::Unsigned(buf)),
            Err(_) => pyo3::buffer::PyBuffer::<i8>::get(b)
                .ok()
                .filter(|buf| buf.is_c_contiguous())
                .map(Held::Signed),
        }
    };
    fn view(held: &Held) -> &[u8] {
        let (ptr, len) = match held {
            Held::Unsigned(buf) => (buf.buf_ptr() as *const u8, buf.len_bytes()),
            Held::Signed(buf) => (buf.buf_ptr() as *const u8, buf.len_bytes()),
        };
        if len == 0 || ptr.is_null() {
            return &[];
        }
        // SAFETY: `held` is a C-contiguous export of `len` bytes at `ptr`, kept alive and
        // unmoved for as long as the returned slice borrows it; no Python code runs while the
        // slices are read (only Rust arithmetic on them), so nothing can release or resize it.
        unsafe { std::slice::from_raw_parts(ptr, len) }
    }
    // validity: covers the slots and agrees with the null count
    if validity.is_none() {
        if null_count != 0 {
            return Ok(false);
        }
    } else {
        let Some(vbuf) = bytes(validity) else {
            return Ok(false);
        };
        match count_set_bits(view(&vbuf), offset, end) {
            Some(set) if length - set == null_count => {}
            _ => return Ok(false),
        }
    }
    let Some(obuf) = bytes(offsets) else {
        return Ok(false);
    };
    let Some(dbuf) = (if data.is_none() { None } else { bytes(data) }) else {
        // a missing data buffer: only Arrow's own validation decides
        return Ok(false);
    };
    let (obytes, text) = (view(&obuf), view(&dbuf));
    let Some(need) = end.checked_add(1).and_then(|n| n.checked_mul(width)) else {
        return Ok(false);
    };
    let Some(slots) = obytes.get(offset * width..need) else {
        return Ok(false);
    };
    Ok(if width == 4 {
        string_offsets_valid::<4>(slots, text)
    } else {
        string_offsets_valid::<8>(slots, text)
    })
}

/// The offset at `chunk` (`W` bytes, little-endian, signed).
#[inline(always)]
fn offset_at<const W: usize>(chunk: &[u8]) -> i64 {
    let mut w = [0u8; 8];
    w[..W].copy_from_slice(&chunk[..W]);
    if W == 4 {
        i64::from(i32::from_le_bytes([w[0], w[1], w[2], w[3]]))
    } else {
        i64::from_le_bytes(w)
    }
}

/// Whether the offsets in `slots` (`W` bytes each, at least one) start at 0 or more, never
/// decrease and end within `text`, the text between the first and the last is UTF-8 and every
/// offset falls on a character boundary of it (see [`arrow_strings_valid`]).
fn string_offsets_valid<const W: usize>(slots: &[u8], text: &[u8]) -> bool {
    if slots.len() < W || slots.len() % W != 0 {
        return false;
    }
    let first = offset_at::<W>(slots);
    let last = offset_at::<W>(&slots[slots.len() - W..]);
    let (Ok(first_u), Ok(last_u)) = (usize::try_from(first), usize::try_from(last)) else {
        return false;
    };
    if last_u > text.len() || first_u > last_u {
        return false;
    }
    let values = &text[first_u..last_u];
    // ASCII text is valid UTF-8 and every one of its positions is a character boundary;
    // `is_ascii` reads it a word at a time, `from_utf8` only runs on other text
    let ascii = values.is_ascii();
    if !ascii && std::str::from_utf8(values).is_err() {
        return false;
    }
    // every offset at least the one before it: with the first at 0 or more and the last
    // within `text` (above), every offset lies between them, in `text`
    let nondecreasing = if W == 4 {
        offsets_nondecreasing_32(slots)
    } else {
        offsets_nondecreasing_64(slots)
    };
    if !nondecreasing {
        return false;
    }
    if ascii {
        return true;
    }
    // multi-byte text: every offset on a character boundary of valid UTF-8, the end or a
    // byte that is not a continuation byte (0b10xxxxxx); one pass without early exits (the
    // bounds test is implied by the pass above and kept: it is what makes the index sound)
    let mut bad = false;
    for chunk in slots.chunks_exact(W) {
        let rel = offset_at::<W>(chunk).wrapping_sub(first) as u64;
        bad |= rel > values.len() as u64;
        let byte = values.get(rel as usize).copied().unwrap_or(0);
        bad |= (byte as i8) < -0x40;
    }
    !bad
}

/// Offsets checked per block by the `offsets_nondecreasing_*` functions: the comparisons of a
/// block have no branch and no dependency from one to the next, so the compiler makes them
/// vector compares (about 3 instructions per offset instead of 16 for the one-at-a-time loop).
const OFFSET_BLOCK: usize = 16;

macro_rules! offsets_nondecreasing {
    ($name:ident, $int:ty, $width:expr) => {
        /// Whether the little-endian signed offsets in `slots` (a whole number of them, at
        /// least one) never decrease.
        fn $name(slots: &[u8]) -> bool {
            const W: usize = $width;
            let at = |c: &[u8]| <$int>::from_le_bytes(c[..W].try_into().unwrap_or([0; W]));
            let mut prev = at(slots);
            let mut blocks = slots.chunks_exact(W * OFFSET_BLOCK);
            for block in &mut blocks {
                let mut v = [0 as $int; OFFSET_BLOCK];
                for (slot, c) in v.iter_mut().zip(block.chunks_exact(W)) {
                    *slot = at(c);
                }
                let mut down = v[0] < prev;
                for k in 1..OFFSET_BLOCK {
                    down |= v[k] < v[k - 1];
                }
                if down {
                    return false;
                }
                prev = v[OFFSET_BLOCK - 1];
            }
            let mut down = false;
            for c in blocks.remainder().chunks_exact(W) {
                let o = at(c);
                down |= o < prev;
                prev = o;
            }
            !down
        }
    };
}
offsets_nondecreasing!(offsets_nondecreasing_32, i32, 4);
offsets_nondecreasing!(offsets_nondecreasing_64, i64, 8);

/// How deeply an Arrow array description may nest (children and dictionaries).
const MAX_ARROW_DEPTH: u32 = 32;

impl Guard {
    /// The guard of a load under `policy`; `exact_offsets`: a load from memory, whose opcode
    /// offsets are positions in the whole input. The tables are the thread's spare ones, taken
    /// at the first global or call ([`State::adopt_spare`]), else they allocate then (a pickle
    /// of plain data allocates nothing for them and touches no spare).
    pub(crate) fn new(policy: Arc<core::Policy>, exact_offsets: bool) -> Self {
        Guard {
            policy,
            state: RefCell::new(State::default()),
            fast_ok: Cell::new(true),
            has_getattr: Cell::new(false),
            seen_proto: Cell::new(false),
            exact_offsets: Cell::new(exact_offsets),
        }
    }

    /// Whether the machine may run its fast loop (plain scalars, strings, tuples, the memo,
    /// marks, frames, and APPEND(S)/SETITEM(S) on exact lists and dicts) without calling the
    /// guard. None of those resolves or calls anything; the checks the guard makes on them are
    /// that no `builtins.getattr` is used as a value and that no global or shared (already
    /// existing) object is modified, so the fast loop does not run while a `getattr` is on
    /// `stack`, and stops for good once a global or shared object is an exact list or dict
    /// (which the fast loop could fill).
    pub(crate) fn fast_loop_ok(&self, stack: &[Bound<'_, PyAny>]) -> bool {
        if !self.fast_ok.get() {
            return false;
        }
        if !self.has_getattr.get() {
            return true;
        }
        // `getattr` loaded (a pickled method: `getattr(cls, name)`): the fast loop may run
        // while no `getattr` is on the stack (it would build it into a container); it hands
        // over a BINGET that fetches one (`is_getattr`).
        let st = self.state.borrow();
        !stack
            .iter()
            .any(|v| st.getattrs.contains(&(v.as_ptr() as usize)))
    }

    /// Whether `obj` is a `builtins.getattr` this load resolved (the fast loop hands over a
    /// BINGET fetching one, for the guard to see where it is used).
    pub(crate) fn is_getattr(&self, obj: *mut pyo3::ffi::PyObject) -> bool {
        self.has_getattr.get() && self.state.borrow().getattrs.contains(&(obj as usize))
    }

    /// Note a PROTO the fast loop is about to run: whether it is the load's first (a repeated
    /// one is handed over to the general path, where [`Guard::before`] refuses it).
    pub(crate) fn first_proto(&self) -> bool {
        !self.seen_proto.replace(true)
    }

    /// Note an object the fast loop must never modify.
    fn protect(&self, obj: &Bound<'_, PyAny>) {
        use pyo3::types::{PyDict, PyList};
        if obj.is_exact_instance_of::<PyList>() || obj.is_exact_instance_of::<PyDict>() {
            self.fast_ok.set(false);
        }
    }

    fn refuse(
        py: Python<'_>,
        rule: Rule,
        op: &Op<'_>,
        global: Option<(String, String)>,
        what: String,
    ) -> PyErr {
        // The input serves file streams in chunks, so `op.offset` is not a position in the
        // file: name the opcode only (the scan that precedes a safe load gives exact offsets).
        let message = format!("{what} ({} during the load)", op.opcode);
        crate::scan::unsafe_error(
            py,
            core::Finding {
                rule,
                offset: 0,
                opcode: Some(op.opcode),
                global,
                member: None,
                message,
            },
        )
    }

    /// Check a global before it is imported; returns its access, role and `module:qualname`
    /// for `after` to register.
    fn global(
        &self,
        py: Python<'_>,
        op: &Op<'_>,
        module: &str,
        name: &str,
        proto: u8,
        fix: bool,
    ) -> PyResult<(Access, Special, Arc<str>)> {
        let mapped = (fix && proto < 3)
            .then(|| brinery::encode::python3_name(module, name))
            .flatten();
        if mapped.is_none() {
            // The policy's verdict on a name it lets through is cached with the policy (the
            // same checks as below, a pure function of the policy and the names); anything
            // else takes the full path, which names the refusal.
            if let Some(r) = self.policy.resolve(module, name) {
                let sp = if (module, name) == ("_codecs", "encode") {
                    Special::CodecsEncode
                } else if r.has_argument_rules {
                    Special::Helper
                } else {
                    Special::None
                };
                return Ok((r.access, sp, r.dotted));
            }
        }
        let (module, name) = match mapped {
            Some((m, n)) => (m.to_owned(), n.unwrap_or(name).to_owned()),
            None => (module.to_owned(), name.to_owned()),
        };
        let sp = special(&module, &name);
        let pair = || Some((module.clone(), name.clone()));
        if let Some(why) = core::name_out_of_bounds(&module, &name) {
            return Err(Self::refuse(py, Rule::Malformed, op, None, why));
        }
        let access = if sp == Special::Getattr {
            Access::Ref
        } else if let Some(why) = core::denied(&module, &name) {
            return Err(Self::refuse(
                py,
                Rule::DangerousGlobal,
                op,
                pair(),
                format!("global {module}.{name} is never allowed: it {why}"),
            ));
        } else {
            let step = name
                .match_indices('.')
                .map(|(i, _)| &name[..i])
                .find(|step| self.policy.lookup(&module, step).is_none());
            if let Some(step) = step {
                return Err(Self::refuse(
                    py,
                    Rule::DisallowedGlobal,
                    op,
                    pair(),
                    format!("global {module}.{name} is reached through {module}.{step}, which the policy does not allow"),
                ));
            }
            match self.policy.lookup(&module, &name) {
                Some(a) => a,
                None => {
                    return Err(Self::refuse(
                        py,
                        Rule::DisallowedGlobal,
                        op,
                        pair(),
                        format!("global {module}.{name} is not allowed by the policy"),
                    ))
                }
            }
        };
        Ok((access, sp, format!("{module}:{name}").into()))
    }

    fn lookup(&self, obj: &Bound<'_, PyAny>) -> Option<(Access, Special, Arc<str>)> {
        self.state.borrow().global_of(obj).cloned()
    }

    /// Check a call of `callee` with `args` (a tuple, or None when not known yet).
    fn call(
        &self,
        py: Python<'_>,
        op: &Op<'_>,
        callee: &Bound<'_, PyAny>,
        args: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let found = self.state.borrow().global_of(callee).map(|g| (g.0, g.1));
        match found {
            // a global the policy lets call, with no rules on its arguments: nothing more to
            // check (`call_checked` would find nothing), and no name to fetch
            Some((Access::Call, Special::None)) => Ok(()),
            Some(_) => {
                let (access, sp, name) = self.lookup(callee).expect("found above");
                self.call_checked(py, op, access, sp, &name, args)
            }
            None => Err(Self::refuse(
                py,
                Rule::CallOfComputed,
                op,
                None,
                format!("{} calls a value that is not an allowed global", op.opcode),
            )),
        }
    }

    /// Check a call of the allowed global `name` (`module:qualname`) with `args`.
    fn call_checked(
        &self,
        py: Python<'_>,
        op: &Op<'_>,
        access: Access,
        sp: Special,
        name: &str,
        args: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let split = || {
            name.split_once(':')
                .map(|(m, n)| (m.to_owned(), n.to_owned()))
        };
        let args = args.and_then(|a| a.cast::<PyTuple>().ok().cloned());
        match sp {
            Special::Getattr => {
                let ok = args.as_ref().is_some_and(|t| {
                    t.len() == 2
                        && t.get_item(1)
                            .is_ok_and(|s| s.is_exact_instance_of::<PyString>())
                });
                let on_global = ok
                    && args.as_ref().is_some_and(|t| {
                        t.get_item(0)
                            .is_ok_and(|o| self.lookup(&o).is_some_and(|g| g.1 != Special::Getattr))
                    });
                if ok && !on_global {
                    let t = args.expect("checked above");
                    let attr = t.get_item(1)?;
                    return self.bound_method(py, op, &t.get_item(0)?, attr.cast::<PyString>()?);
                }
                if !ok {
                    return Err(Self::refuse(
                        py,
                        Rule::UnsafeGetattr,
                        op,
                        split(),
                        GETATTR_REFUSAL.into(),
                    ));
                }
                let t = args.expect("checked above");
                let base = self
                    .lookup(&t.get_item(0)?)
                    .map(|g| g.2)
                    .unwrap_or_default();
                let attr: String = t.get_item(1)?.extract()?;
                let (m, q) = base
                    .split_once(':')
                    .map(|(m, q)| (m.to_owned(), q.to_owned()))
                    .unwrap_or_default();
                let q = format!("{q}.{attr}");
                if let Some(why) = core::denied(&m, &q) {
                    return Err(Self::refuse(
                        py,
                        Rule::DangerousGlobal,
                        op,
                        Some((m.clone(), q.clone())),
                        format!("getattr reaches {m}.{q}, which is never allowed: it {why}"),
                    ));
                }
                // The result must itself be listed: any other attribute of an allowed class
                // (`DataFrame.query`, ...) could be handed to library code that calls it.
                let Some(access) = self.policy.lookup(&m, &q) else {
                    return Err(Self::refuse(
                        py,
                        Rule::DisallowedGlobal,
                        op,
                        Some((m.clone(), q.clone())),
                        format!("getattr reaches {m}.{q}, which the policy does not allow"),
                    ));
                };
                let sp = special(&m, &q);
                self.state.borrow_mut().pending = Some((access, sp, format!("{m}:{q}").into()));
                return Ok(());
            }
            _ if access != Access::Call => {
                return Err(Self::refuse(
                    py,
                    Rule::RefOnlyCalled,
                    op,
                    split(),
                    format!(
                        "global {} is called but the policy allows it only as a reference",
                        name.replace(':', ".")
                    ),
                ));
            }
            Special::CodecsEncode => {
                // As the scan: a string and, if given, a plain text encoding (`latin1`, how
                // protocols 0-2 write bytes). Any other codec name would have `_codecs.encode`
                // import its `encodings.*` module and run it.
                let plain = |a: &Bound<'_, PyAny>| {
                    a.cast::<PyString>()
                        .ok()
                        .and_then(|s| s.to_str().ok().map(str::as_bytes))
                        .is_some_and(core::is_plain_text_encoding)
                };
                let ok = args.as_ref().is_some_and(|t| {
                    (1..=2).contains(&t.len())
                        && t.iter().all(|a| a.is_exact_instance_of::<PyString>())
                        && t.get_item(1).map_or(true, |enc| plain(&enc))
                });
                if !ok {
                    return Err(Self::refuse(
                        py,
                        Rule::UnsafeArguments,
                        op,
                        split(),
                        "_codecs.encode is called with other than a constant string and a plain text encoding (latin1, utf-8, ascii)".into(),
                    ));
                }
            }
            Special::Helper => {
                let (m, n) = split().unwrap_or_default();
                for &(pos, rule) in core::helper_arguments(&m, &n) {
                    let arg = match args.as_ref() {
                        Some(t) if pos < t.len() => t.get_item(pos)?,
                        Some(_) => continue, // the helper's default
                        None => {
                            return Err(Self::refuse(
                                py,
                                Rule::UnsafeArguments,
                                op,
                                split(),
                                format!("{m}.{n} is called with arguments that are not a tuple"),
                            ))
                        }
                    };
                    let first = args.as_ref().and_then(|t| t.get_item(0).ok());
                    let problem = match self.value_argument(py, rule, &arg, args.as_ref())? {
                        Some(p) => Some(p),
                        None => self
                            .helper_argument(py, rule, &arg, first.as_ref())?
                            .map(str::to_owned),
                    };
                    if let Some(problem) = problem {
                        return Err(Self::refuse(
                            py,
                            Rule::UnsafeArguments,
                            op,
                            split(),
                            format!("{m}.{n} is given {problem} as argument {pos}"),
                        ));
                    }
                }
                if (m.as_str(), n.as_str()) == ("pyarrow.lib", "_restore_array") {
                    self.state.borrow_mut().pending_arrow = true;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// `getattr(obj, attr)` on an instance: allowed when `obj`'s type is a class this load
    /// resolved with `call` access, `Class.attr` is listed by the policy (and not denied), and
    /// the lookup runs no Python code and gives a bound method of a plain function of the
    /// class: the type uses the generic attribute lookup, the first class in its MRO that has
    /// `attr` holds a Python function there, and the instance's own `__dict__` (if any) has only
    /// `str` keys, none of them `attr`. The result is a call result (a value the load may not
    /// call), not a global: `pending` stays empty.
    fn bound_method(
        &self,
        py: Python<'_>,
        op: &Op<'_>,
        obj: &Bound<'_, PyAny>,
        attr: &Bound<'_, PyString>,
    ) -> PyResult<()> {
        let ty = obj.get_type();
        let class = self
            .lookup(ty.as_any())
            .filter(|g| g.0 == Access::Call && g.1 == Special::None);
        let name = attr
            .to_str()
            .ok()
            .filter(|n| !n.starts_with("__") && !n.contains('.'));
        let (Some((_, _, dotted)), Some(name)) = (class, name) else {
            return Err(Self::refuse(
                py,
                Rule::UnsafeGetattr,
                op,
                None,
                GETATTR_REFUSAL.into(),
            ));
        };
        let (m, q) = dotted.split_once(':').unwrap_or_default();
        let (m, q) = (m.to_owned(), format!("{q}.{name}"));
        if let Some(why) = core::denied(&m, &q) {
            return Err(Self::refuse(
                py,
                Rule::DangerousGlobal,
                op,
                Some((m.clone(), q.clone())),
                format!("getattr reaches {m}.{q}, which is never allowed: it {why}"),
            ));
        }
        if self.policy.lookup(&m, &q).is_none() {
            return Err(Self::refuse(
                py,
                Rule::DisallowedGlobal,
                op,
                Some((m.clone(), q.clone())),
                format!("getattr reaches {m}.{q} (a method bound to an instance), which the policy does not allow"),
            ));
        }
        if !plain_method_lookup(obj, attr) {
            return Err(Self::refuse(
                py,
                Rule::UnsafeGetattr,
                op,
                Some((m.clone(), q.clone())),
                format!("getattr of {name} on an instance of {m}.{} would not be a plain method lookup (the class customises attribute access, the attribute is not a function of the class, or the instance shadows it)", &q[..q.len() - name.len() - 1]),
            ));
        }
        self.state.borrow_mut().pending_bound = true;
        Ok(())
    }

    /// Why `arg` breaks one of the rules on values (sizes, shapes, bit generator names), or
    /// `None`; `args` is the whole argument tuple (a shape's dtype is another argument).
    fn value_argument(
        &self,
        py: Python<'_>,
        rule: ArgRule,
        arg: &Bound<'_, PyAny>,
        args: Option<&Bound<'_, PyTuple>>,
    ) -> PyResult<Option<String>> {
        let limit = brinery::Limits::default().max_call_alloc();
        let too_big = |what: String| {
            Some(format!(
                "{what}, more than the limit of {limit} bytes one call may allocate"
            ))
        };
        // an integer (or anything with __index__, like a numpy integer), if `v` is one
        let as_int = |v: &Bound<'_, PyAny>| -> Option<Result<i64, ()>> {
            if v.is_instance_of::<PyString>() || v.is_instance_of::<pyo3::types::PyBytes>() {
                return None;
            }
            if !v.is_instance_of::<pyo3::types::PyInt>()
                && !v.hasattr(pyo3::intern!(py, "__index__")).unwrap_or(false)
            {
                return None;
            }
            Some(v.extract::<i64>().map_err(|_| ()))
        };
        Ok(match rule {
            ArgRule::Size => match as_int(arg) {
                Some(Ok(n)) if n > 0 && n as u64 > limit => too_big(format!("a size of {n} bytes")),
                Some(Err(())) => too_big("a size that does not fit 64 bits".into()),
                _ => None,
            },
            ArgRule::Shape { dtype } => {
                let count: Option<u64> = match as_int(arg) {
                    Some(Ok(n)) => Some(n.max(0) as u64),
                    Some(Err(())) => None,
                    None => match arg.try_iter() {
                        Ok(items) if !arg.is_instance_of::<PyString>() => {
                            let mut product: Option<u64> = Some(1);
                            for item in items {
                                let n = match as_int(&item?) {
                                    Some(Ok(n)) => n.max(0) as u64,
                                    _ => {
                                        product = None;
                                        break;
                                    }
                                };
                                product = product.and_then(|p| p.checked_mul(n));
                            }
                            product
                        }
                        _ => None,
                    },
                };
                if count == Some(0) {
                    return Ok(None);
                }
                let Some(count) = count else {
                    return Ok(Some(
                        "an array shape that is not integers (or too large)".into(),
                    ));
                };
                let dt = args.and_then(|t| t.get_item(dtype).ok());
                let itemsize = match dt {
                    None => Some(8u64),
                    Some(d) if d.is_none() => Some(8),
                    Some(d) => {
                        let np = sys_modules(py)?.get_item(pyo3::intern!(py, "numpy")).ok();
                        match np {
                            Some(np)
                                if d.is_instance_of::<PyString>()
                                    || d.is_instance_of::<pyo3::types::PyBytes>()
                                    || d.is_instance_of::<PyType>()
                                    || is_subtype(&d, &np.getattr(pyo3::intern!(py, "dtype"))?) =>
                            {
                                np.getattr(pyo3::intern!(py, "dtype"))?
                                    .call1((d,))
                                    .and_then(|t| t.getattr(pyo3::intern!(py, "itemsize")))
                                    .and_then(|i| i.extract::<u64>())
                                    .ok()
                            }
                            _ => None,
                        }
                    }
                };
                match itemsize {
                    Some(size) => match count.checked_mul(size) {
                        Some(bytes) if bytes <= limit => None,
                        _ => too_big(format!(
                            "an array shape of {count} elements of {size} bytes"
                        )),
                    },
                    None => Some(format!(
                        "an array shape of {count} elements with a dtype that cannot be sized"
                    )),
                }
            }
            ArgRule::BitGeneratorName | ArgRule::BitGeneratorOrName => {
                let name_ok = arg.is_exact_instance_of::<PyString>()
                    && arg
                        .extract::<String>()
                        .is_ok_and(|t| core::BIT_GENERATORS.contains(&t.as_str()));
                let class_ok = arg.is_instance_of::<PyType>()
                    && self.lookup(arg).is_some_and(|g| {
                        g.2.split_once(':')
                            .is_some_and(|(m, n)| core::is_bit_generator_class(m, n))
                    });
                let instance_ok = rule == ArgRule::BitGeneratorOrName
                    && !arg.is_instance_of::<PyType>()
                    && match sys_modules(py)?.get_item(pyo3::intern!(py, "numpy.random.bit_generator")) {
                        Ok(m) => is_subtype(arg, &m.getattr(pyo3::intern!(py, "BitGenerator"))?),
                        Err(_) => false,
                    };
                (!(name_ok || class_ok || instance_ok)).then(|| {
                    format!(
                        "something other than one of numpy's bit generators ({}) by name, class or instance",
                        core::BIT_GENERATORS.join(", ")
                    )
                })
            }
            ArgRule::ArrowTypeAlias => {
                let ok = arg.is_exact_instance_of::<PyString>()
                    && arg
                        .extract::<String>()
                        .is_ok_and(|t| core::is_arrow_alias(&t));
                (!ok).then(|| {
                    "something other than a constant type alias string (such as 'large_string')"
                        .to_owned()
                })
            }
            ArgRule::ArrowBufferData => {
                let pickle_buffer = sys_modules(py)?
                    .get_item(pyo3::intern!(py, "pickle"))
                    .and_then(|m| m.getattr(pyo3::intern!(py, "PickleBuffer")))
                    .is_ok_and(|t| arg.get_type().is(&t));
                let ok = arg.is_exact_instance_of::<pyo3::types::PyBytes>()
                    || arg.is_exact_instance_of::<pyo3::types::PyByteArray>()
                    || arg.is_exact_instance_of::<pyo3::types::PyMemoryView>()
                    || pickle_buffer;
                (!ok).then(|| {
                    "something other than bytes, a bytearray or an out-of-band buffer".to_owned()
                })
            }
            ArgRule::ArrowArrayData => self.arrow_layout(py, arg, None, 0)?.map(|problem| {
                format!("an array description that is not pyarrow's (type, length, null_count, offset, buffers, children, dictionary) tuple: {problem}")
            }),
            _ => None,
        })
    }

    /// Why `data` is not an array description `pyarrow.lib._restore_array` can rebuild without
    /// reading out of bounds before `after` validates the array, or `None`: a 7-tuple whose type
    /// is a pyarrow `DataType` (equal to `want` for a child or a dictionary), with integers, as
    /// many buffers (`None` or pyarrow `Buffer`s) as the type's layout has, one child per field
    /// of the type (each such a description), and a dictionary exactly when the type is a
    /// dictionary type. (pyarrow aborts the process on a nested array without its children.)
    fn arrow_layout(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        want: Option<&Bound<'_, PyAny>>,
        depth: u32,
    ) -> PyResult<Option<String>> {
        if depth > MAX_ARROW_DEPTH {
            return Ok(Some(format!(
                "children or dictionaries nested more than {MAX_ARROW_DEPTH} deep"
            )));
        }
        let Ok(lib) = sys_modules(py)?.get_item(pyo3::intern!(py, "pyarrow.lib")) else {
            return Ok(Some("pyarrow.lib is not loaded".into()));
        };
        let Ok(t) = data.cast_exact::<PyTuple>() else {
            return Ok(Some("not a tuple".into()));
        };
        if t.len() != 7 {
            return Ok(Some(format!("a tuple of {} items, not 7", t.len())));
        }
        let ty = t.get_item(0)?;
        if !ty.is_instance(&lib.getattr(pyo3::intern!(py, "DataType"))?)? {
            return Ok(Some("its type is not a pyarrow DataType".into()));
        }
        if let Some(want) = want {
            if !ty.call_method1("equals", (want,))?.is_truthy()? {
                return Ok(Some(
                    "the type of a child or dictionary is not the one its parent type names".into(),
                ));
            }
        }
        for (i, what) in [(1, "length"), (2, "null count"), (3, "offset")] {
            if !t.get_item(i)?.is_exact_instance_of::<pyo3::types::PyInt>() {
                return Ok(Some(format!("its {what} is not an integer")));
            }
        }
        let list = |v: &Bound<'_, PyAny>| {
            v.is_exact_instance_of::<pyo3::types::PyList>() || v.is_exact_instance_of::<PyTuple>()
        };
        let buffers = t.get_item(4)?;
        let children = t.get_item(5)?;
        if !list(&buffers) || !list(&children) {
            return Ok(Some("its buffers or children are not a list".into()));
        }
        let buffer_type = lib.getattr(pyo3::intern!(py, "Buffer"))?;
        let n_buffers: usize = ty.getattr(pyo3::intern!(py, "num_buffers"))?.extract()?;
        if buffers.len()? != n_buffers {
            return Ok(Some(format!(
                "{} buffers where its type has {n_buffers}",
                buffers.len()?
            )));
        }
        for b in buffers.try_iter()? {
            let b = b?;
            if !b.is_none() && !b.is_instance(&buffer_type)? {
                return Ok(Some(
                    "a buffer that is neither None nor a pyarrow Buffer".into(),
                ));
            }
        }
        let n_fields: usize = ty.getattr(pyo3::intern!(py, "num_fields"))?.extract()?;
        if children.len()? != n_fields {
            return Ok(Some(format!(
                "{} children where its type has {n_fields} fields",
                children.len()?
            )));
        }
        for (i, child) in children.try_iter()?.enumerate() {
            let field_type = ty
                .call_method1("field", (i,))?
                .getattr(pyo3::intern!(py, "type"))?;
            if let Some(p) = self.arrow_layout(py, &child?, Some(&field_type), depth + 1)? {
                return Ok(Some(format!("child {i}: {p}")));
            }
        }
        let dictionary = t.get_item(6)?;
        if ty.is_instance(&lib.getattr(pyo3::intern!(py, "DictionaryType"))?)? {
            let value_type = ty.getattr(pyo3::intern!(py, "value_type"))?;
            if dictionary.is_none() {
                return Ok(Some("a dictionary type without a dictionary".into()));
            }
            if let Some(p) = self.arrow_layout(py, &dictionary, Some(&value_type), depth + 1)? {
                return Ok(Some(format!("dictionary: {p}")));
            }
        } else if !dictionary.is_none() {
            return Ok(Some(
                "a dictionary for a type that is not a dictionary type".into(),
            ));
        }
        Ok(None)
    }

    /// Validate the array `pyarrow.lib._restore_array` returned (`validate(full=True)`: offsets,
    /// lengths and buffer sizes against each other, children and dictionary included) before
    /// anything else can use it.
    fn arrow_result(&self, py: Python<'_>, op: &Op<'_>, array: &Bound<'_, PyAny>) -> PyResult<()> {
        if arrow_strings_valid(py, array)? {
            return Ok(());
        }
        let kwargs = pyo3::types::PyDict::new(py);
        kwargs.set_item("full", true)?;
        let problem = match array.getattr(pyo3::intern!(py, "validate")) {
            Ok(validate) => match validate.call((), Some(&kwargs)) {
                Ok(_) => return Ok(()),
                Err(e) => e.value(py).str()?.to_string(),
            },
            Err(_) => "it is not an Arrow array".to_owned(),
        };
        let exact = self.exact_offsets.get();
        let message = if exact {
            format!(
                "pyarrow.lib._restore_array rebuilt an invalid Arrow array ({problem}) at byte {} ({})",
                op.offset, op.opcode
            )
        } else {
            format!(
                "pyarrow.lib._restore_array rebuilt an invalid Arrow array ({problem}) ({} during the load)",
                op.opcode
            )
        };
        Err(crate::scan::unsafe_error(
            py,
            core::Finding {
                rule: Rule::UnsafeArguments,
                offset: if exact { op.offset as u64 } else { 0 },
                opcode: Some(op.opcode),
                global: Some(("pyarrow.lib".into(), "_restore_array".into())),
                member: None,
                message,
            },
        ))
    }

    /// Why `arg` breaks `rule`, or `None`. `first` is the helper's first argument (the class
    /// `copyreg._reconstructor`'s `base` must be a base of).
    fn helper_argument(
        &self,
        py: Python<'_>,
        rule: ArgRule,
        arg: &Bound<'_, PyAny>,
        first: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Option<&'static str>> {
        let global = self.lookup(arg);
        let is_type = arg.is_instance_of::<PyType>();
        let name_is = |want: &dyn Fn(&str, &str) -> bool| {
            global
                .as_ref()
                .is_some_and(|g| g.2.split_once(':').is_some_and(|(m, n)| want(m, n)))
        };
        Ok(match rule {
            ArgRule::AllowedClass => {
                let ok = is_type && global.as_ref().is_some_and(|g| g.0 == Access::Call);
                (!ok).then_some("something other than a class the policy allows to call")
            }
            ArgRule::DataOrAllowedClass => match &global {
                Some(g) if g.0 == Access::Call => None,
                Some(_) => Some("a global the policy allows only as a reference"),
                None if is_type || arg.is_callable() => {
                    Some("a class or callable that is not an allowed global")
                }
                None => None,
            },
            ArgRule::BuiltinBase => {
                let builtins = sys_modules(py)?.get_item(pyo3::intern!(py, "builtins"))?;
                let mut ok = false;
                for name in core::BUILTIN_BASES {
                    if builtins.getattr(*name)?.is(arg) {
                        ok = true;
                        break;
                    }
                }
                let sub = match first {
                    Some(cls) if ok => cls
                        .cast::<PyType>()
                        .ok()
                        .and_then(|c| c.is_subclass(arg).ok())
                        .unwrap_or(false),
                    _ => false,
                };
                (!sub).then_some(
                    "a base other than builtins.object or a builtin type the class derives from",
                )
            }
            ArgRule::TzfileClass => {
                let ok =
                    is_type && name_is(&|m, n| core::TZFILE_MODULES.contains(&m) && n == "tzfile");
                (!ok).then_some("a class other than dateutil.tz.tzfile")
            }
            ArgRule::Size
            | ArgRule::Shape { .. }
            | ArgRule::BitGeneratorName
            | ArgRule::BitGeneratorOrName
            | ArgRule::ArrowTypeAlias
            | ArgRule::ArrowBufferData
            | ArgRule::ArrowArrayData => None, // `value_argument`
            ArgRule::AllowedFunction => {
                let ok = self.is_allowed_function(arg);
                (!ok).then_some(
                    "something other than a global the policy allows to call, without call rules of its own",
                )
            }
            ArgRule::Factory => {
                let builtin_type = is_type
                    && name_is(&|m, n| {
                        matches!(m, "builtins" | "__builtin__")
                            && core::BUILTIN_FACTORIES.contains(&n)
                    });
                // data other than None: defaultdict refuses it itself
                let data = !arg.is_none() && !is_type && !arg.is_callable();
                let ok = arg.is_none() || data || builtin_type || self.is_allowed_function(arg);
                (!ok).then_some(
                    "a default_factory other than None, a global the policy allows to call or a builtin type (a missing key would call it)",
                )
            }
            ArgRule::BitGeneratorCtor => {
                let ok =
                    name_is(&|m, n| m == "numpy.random._pickle" && n == "__bit_generator_ctor");
                (!ok)
                    .then_some("a constructor other than numpy.random._pickle.__bit_generator_ctor")
            }
        })
    }

    /// `builtins.getattr` may only be called directly (checked in `call`): used as a value (an
    /// item, an argument, a state) it would be called by code the guard cannot see.
    fn no_getattr_values(
        &self,
        py: Python<'_>,
        op: &Op<'_>,
        values: &[Bound<'_, PyAny>],
    ) -> PyResult<()> {
        let st = self.state.borrow();
        if st.getattrs.is_empty() {
            return Ok(());
        }
        if values
            .iter()
            .any(|v| st.getattrs.contains(&(v.as_ptr() as usize)))
        {
            drop(st);
            return Err(Self::refuse(
                py,
                Rule::UnsafeGetattr,
                op,
                Some(("builtins".into(), "getattr".into())),
                "builtins.getattr used as a value: getattr is allowed only as a direct call with a constant name".into(),
            ));
        }
        Ok(())
    }

    /// The nesting depth of the result of a call with `args` (see [`State::depths`]); refuses
    /// depths beyond [`core::MAX_CALL_DEPTH`], as the scan does.
    fn call_depth(
        &self,
        py: Python<'_>,
        op: &Op<'_>,
        args: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let mut st = self.state.borrow_mut();
        let mut deepest = 0u32;
        if !st.depths.is_empty() {
            if let Some(t) = args.and_then(|a| a.cast::<PyTuple>().ok()) {
                // the items in place (no reference taken per item)
                for item in t.as_slice() {
                    let d = match st.depth_of(item) {
                        Some(d) => d,
                        None => match item.cast::<PyTuple>() {
                            Ok(inner) => inner
                                .as_slice()
                                .iter()
                                .filter_map(|x| st.depth_of(x))
                                .max()
                                .unwrap_or(0),
                            Err(_) => 0,
                        },
                    };
                    deepest = deepest.max(d);
                }
            }
        }
        let depth = deepest.saturating_add(1);
        if depth as usize > core::MAX_CALL_DEPTH {
            drop(st);
            return Err(Self::refuse(
                py,
                Rule::LimitExceeded,
                op,
                None,
                format!(
                    "call results nested {depth} deep exceed the nesting limit of {} (freeing such an object can crash the interpreter)",
                    core::MAX_CALL_DEPTH
                ),
            ));
        }
        st.pending_depth = Some(depth);
        Ok(())
    }

    /// BUILD and the container opcodes may not modify an object a factory returned that
    /// already existed (a cached instance, a singleton, an enum member); BUILD applies only to
    /// objects this load created.
    fn not_shared(
        &self,
        py: Python<'_>,
        op: &Op<'_>,
        target: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let Some(t) = target else { return Ok(()) };
        let id = t.as_ptr() as usize;
        let st = self.state.borrow();
        let bad = st.shared_bits.may_hold(id) && st.shared.contains(&id);
        drop(st);
        if bad {
            let what = if op.opcode == Opcode::BUILD {
                "BUILD applied to an object this load did not create (a cached or shared object a call returned, or a method bound to an instance, whose attributes are its function's): it would change it for the whole process"
            } else {
                "container opcode applied to an object a call returned that already existed (a cached or shared object, or a method bound to an instance, whose attributes are its function's): it would change it for the whole process"
            };
            return Err(Self::refuse(
                py,
                Rule::GlobalMutation,
                op,
                None,
                what.into(),
            ));
        }
        Ok(())
    }

    /// BUILD on a numpy dtype or array: the state must have the shape numpy's own pickler
    /// writes (red-team F10/F10b/F10c: `arraydescr_setstate` trusts the pickled flags, and
    /// `array_setstate` an object array's item list, so other states crash the interpreter).
    /// `numpy.dtype` and `numpy.ndarray`, once numpy is imported: numpy's own C types, the
    /// same for the life of the process, so looked up once (until numpy is imported, each
    /// BUILD looks for it in `sys.modules`). `None` also when they are not types (nothing
    /// is then a subtype of them).
    fn numpy_types(py: Python<'_>) -> PyResult<Option<&'static (Py<PyType>, Py<PyType>)>> {
        static NUMPY: pyo3::sync::PyOnceLock<(Py<PyType>, Py<PyType>)> =
            pyo3::sync::PyOnceLock::new();
        if let Some(types) = NUMPY.get(py) {
            return Ok(Some(types));
        }
        let Ok(np) = sys_modules(py)?.get_item(pyo3::intern!(py, "numpy")) else {
            return Ok(None);
        };
        let (d, n) = (
            np.getattr(pyo3::intern!(py, "dtype"))?,
            np.getattr(pyo3::intern!(py, "ndarray"))?,
        );
        let (Ok(d), Ok(n)) = (d.cast_into::<PyType>(), n.cast_into::<PyType>()) else {
            return Ok(None);
        };
        let _ = NUMPY.set(py, (d.unbind(), n.unbind()));
        Ok(NUMPY.get(py))
    }

    /// BUILD on an object whose own `__dict__` holds `__setstate__`: the loader looks it up
    /// on the instance and would call it with the state, unchecked (put there by an earlier
    /// BUILD, a `SimpleNamespace` keyword, an estimator's `__dict__.update`). Objects without
    /// an instance dict (numpy arrays, most builtins) are skipped without a lookup.
    fn no_instance_setstate(
        &self,
        py: Python<'_>,
        op: &Op<'_>,
        target: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let Some(dict) = own_dict(target) else {
            return Ok(()); // no instance dict: nothing to look up there
        };
        if dict.contains(pyo3::intern!(py, "__setstate__"))? {
            return Err(Self::refuse(
                py,
                Rule::UnsafeArguments,
                op,
                None,
                "BUILD on an object whose own __dict__ holds __setstate__: the load would call it, unchecked"
                    .to_owned(),
            ));
        }
        Ok(())
    }

    /// Called for a BUILD whose state has a dict (the whole state, or the first half of a
    /// `(dict, slots)` pair). On an object without a `__dict__` of its own whose class has no
    /// `__setstate__`, the loader would look
    /// `__dict__` up on the object, and an object that forwards attribute lookups would hand
    /// over another object's dict, shared by the process (a bound method forwards them to its
    /// function: session 13's red team). On any other such object the BUILD fails anyway (no
    /// `__dict__`), so this refuses only what would fail or write elsewhere.
    fn dict_state_has_a_home(
        &self,
        py: Python<'_>,
        op: &Op<'_>,
        target: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let ty = target.get_type();
        // SAFETY: `ty` is a live type object; `tp_dictoffset` is a plain field.
        if unsafe { (*ty.as_type_ptr()).tp_dictoffset } != 0 {
            return Ok(()); // the object has a dict slot: `__dict__` is its own
        }
        // SAFETY: a live type and an exact str, with the GIL held; the borrowed result is only
        // compared with NULL.
        let own_setstate = unsafe {
            !_PyType_Lookup(ty.as_type_ptr(), pyo3::intern!(py, "__setstate__").as_ptr()).is_null()
        };
        if own_setstate {
            return Ok(());
        }
        Err(Self::refuse(
            py,
            Rule::GlobalMutation,
            op,
            None,
            format!(
                "BUILD with a dict state on a {} object, which has no __dict__ of its own: the state would land in another object's",
                crate::pyutil::type_name(target)
            ),
        ))
    }

    /// A dict that sets attributes by name (NEWOBJ_EX's keyword arguments, the slot state of a
    /// BUILD, which goes through `setattr`) may not name a special attribute (`__name__`, two
    /// underscores on each side) other than `core::DATA_SPECIAL_NAMES`. On an instance, such a
    /// name is what a later call reads there: numpy takes `__array_interface__` from the
    /// instance (a dict of the pickle's choosing made `np.positive(obj)` read, and
    /// `np.add(view, 1, view)` write, any address of the process: S12-1), `__array__` would be
    /// called, `__setstate__` (S10-1) would run at the next BUILD, `__class__` would change the
    /// object's type. What lands in an instance `__dict__` is checked after each BUILD
    /// ([`Self::no_special_instance_names`]). Anything but a dict is left to the load.
    fn no_special_keys(
        &self,
        py: Python<'_>,
        op: &Op<'_>,
        names: &Bound<'_, PyAny>,
        what: &str,
    ) -> PyResult<()> {
        let Ok(d) = names.cast::<pyo3::types::PyDict>() else {
            return Ok(());
        };
        match special_name_key(d) {
            Some(name) => Err(Self::special_name_refusal(py, op, &name, what)),
            None => Ok(()),
        }
    }

    /// A BUILD state (a dict, or the slots half of a `(dict, slots)` pair) may not give the
    /// instance an attribute that shadows a method of its class: an allowed `__setstate__` that
    /// updates `__dict__` and then calls `self.method(...)` (scikit-learn's
    /// `IsotonicRegression._build_f`) would call the pickle's value instead, with arguments of
    /// its choosing (session 13's red team: a value-only function, a bound method on a tampered
    /// tree, `tzfile` on any path). The one exception is the method itself, bound to this very
    /// object (what `HistGradientBoosting*` keeps as `_raw_predict`). Only callable values
    /// matter (the method's caller calls it), and only exact `str` keys can shadow an attribute
    /// without running code; the walk takes no references.
    fn no_method_shadowing(
        &self,
        py: Python<'_>,
        op: &Op<'_>,
        target: &Bound<'_, PyAny>,
        state: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let Ok(d) = state.cast::<pyo3::types::PyDict>() else {
            return Ok(());
        };
        let ty = target.get_type();
        let mut pos: pyo3::ffi::Py_ssize_t = 0;
        let (mut key, mut value) = (std::ptr::null_mut(), std::ptr::null_mut());
        let mut shadowed: Option<Bound<'_, PyAny>> = None;
        let mut not_str: Option<Bound<'_, PyAny>> = None;
        // SAFETY: `d` is a live dict and the GIL is held. Nothing in the loop runs Python code:
        // `_PyType_Lookup` with an exact str walks the MRO's dicts (str keys compare in C),
        // `PyCallable_Check` reads a type slot, and the bound-method test reads the method's
        // fields; so the borrowed keys and values stay valid and the dict unchanged.
        unsafe {
            while pyo3::ffi::PyDict_Next(d.as_ptr(), &mut pos, &mut key, &mut value) != 0 {
                // attribute names are exact str in every state pickle writes; a str subclass
                // (`numpy.str_`) is found by a lookup of the plain name all the same
                if pyo3::ffi::PyUnicode_CheckExact(key) == 0 {
                    not_str = Some(Bound::from_borrowed_ptr(py, key));
                    break;
                }
                // only a callable value can be called in the method's place (a value of any
                // other kind raises TypeError there); states hold few of them, so the MRO
                // lookup below (a cache miss for most names) runs for few keys
                if pyo3::ffi::PyCallable_Check(value) == 0 {
                    continue;
                }
                let found = _PyType_Lookup(ty.as_type_ptr(), key);
                if found.is_null() || pyo3::ffi::PyCallable_Check(found) == 0 {
                    continue;
                }
                let own_method = pyo3::ffi::Py_TYPE(value) == std::ptr::addr_of_mut!(PyMethod_Type)
                    && PyMethod_Self(value) == target.as_ptr()
                    && PyMethod_Function(value) == found;
                if !own_method {
                    shadowed = Some(Bound::from_borrowed_ptr(py, key));
                    break;
                }
            }
        }
        if let Some(key) = not_str {
            return Err(Self::refuse(
                py,
                Rule::UnsafeArguments,
                op,
                None,
                format!(
                    "the BUILD state gives a {} object an attribute whose name is a {}, not a plain str",
                    crate::pyutil::type_name(target),
                    crate::pyutil::type_name(&key)
                ),
            ));
        }
        let Some(name) = shadowed else { return Ok(()) };
        Err(Self::refuse(
            py,
            Rule::UnsafeArguments,
            op,
            None,
            format!(
                "the BUILD state gives a {} object an attribute {} that would replace a method of its class (its own code may call it with arguments of the pickle's choosing)",
                crate::pyutil::type_name(target),
                name.repr().map(|r| r.to_string()).unwrap_or_default()
            ),
        ))
    }

    /// A BUILD state (or its first half) that is a mapping but not a dict (`ChainMap`,
    /// `UserDict`): pickle writes dict states, and an allowed `__setstate__` that takes the
    /// items of any mapping (scikit-learn's `__dict__.update(state)`) would take these past the
    /// checks that walk dict states (session 13: a `ChainMap` state gave `IsotonicRegression` a
    /// `_build_f` of the pickle's choosing, which its `__setstate__` called). A mapping is what
    /// has `keys` (looked up on its type: no code runs).
    fn no_other_mapping(
        &self,
        py: Python<'_>,
        op: &Op<'_>,
        state: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        if state.is_none() || state.is_instance_of::<PyTuple>() {
            return Ok(());
        }
        // SAFETY: a live type and an exact str, with the GIL held; the borrowed result is only
        // compared with NULL.
        let mapping = unsafe {
            !_PyType_Lookup(
                state.get_type().as_type_ptr(),
                pyo3::intern!(py, "keys").as_ptr(),
            )
            .is_null()
        };
        if !mapping {
            return Ok(());
        }
        Err(Self::refuse(
            py,
            Rule::UnsafeArguments,
            op,
            None,
            format!(
                "the BUILD state is a {} mapping, not a dict: a __setstate__ would take its items past the checks on dict states",
                crate::pyutil::type_name(state)
            ),
        ))
    }

    /// SETITEM(S) on an object whose type does not use the generic attribute lookup (a
    /// `__getattr__` of its own): such a mapping may answer attribute lookups from its items
    /// (scikit-learn's `Bunch` returns `self[key]`), so a special name among the keys would be
    /// what numpy reads as the object's `__array_interface__` (session 13's third review: any
    /// address read and written). `items` alternate keys and values.
    fn no_special_item_keys(
        &self,
        py: Python<'_>,
        op: &Op<'_>,
        target: Option<&Bound<'_, PyAny>>,
        items: &[Bound<'_, PyAny>],
    ) -> PyResult<()> {
        let Some(target) = target else { return Ok(()) };
        if uses_generic_getattr(target) {
            return Ok(());
        }
        for key in items.iter().step_by(2) {
            // SAFETY: `key` is a live object (the stack holds it) and the GIL is held.
            if let Some(name) = unsafe { special_name_of(key.as_ptr()) } {
                return Err(Self::special_name_refusal(
                    py,
                    op,
                    &name,
                    "the keys given to an object that answers attribute lookups from its items",
                ));
            }
        }
        Ok(())
    }

    /// A BUILD slot state that sets `default_factory` (a `collections.defaultdict`'s factory,
    /// which pickle gives as the call's argument, never in a state): the value must pass the
    /// same rule as that argument ([`ArgRule::Factory`]).
    fn slot_factory(&self, py: Python<'_>, op: &Op<'_>, slots: &Bound<'_, PyAny>) -> PyResult<()> {
        let Ok(d) = slots.cast::<pyo3::types::PyDict>() else {
            return Ok(());
        };
        let Some(factory) = d.get_item(pyo3::intern!(py, "default_factory"))? else {
            return Ok(());
        };
        match self.helper_argument(py, ArgRule::Factory, &factory, None)? {
            None => Ok(()),
            Some(problem) => Err(Self::refuse(
                py,
                Rule::UnsafeArguments,
                op,
                Some(("collections".into(), "defaultdict".into())),
                format!("the BUILD slot state sets default_factory to {problem}"),
            )),
        }
    }

    /// After a BUILD: when the object's own `__dict__` is the dict state itself (numpy's
    /// `ABCPolyBase.__setstate__` does `self.__dict__ = state`), the state is registered as
    /// shared, so that no later container opcode fills it (a memoized state taken back by GET
    /// would otherwise add `__array_interface__` to the instance after the check above: session
    /// 13's red team read and wrote any memory that way). The fast loop stops for the rest of
    /// the load ([`Guard::protect`]).
    fn state_became_the_dict(&self, target: &Bound<'_, PyAny>, state: usize) {
        let Some(dict) = own_dict_ptr(target) else {
            return;
        };
        if dict as usize != state {
            return;
        }
        // SAFETY: the object at `state` is the live dict in `target`'s slot (compared above).
        let state = unsafe { Bound::from_borrowed_ptr(target.py(), dict) };
        let state = &state;
        let id = state.as_ptr() as usize;
        let mut st = self.state.borrow_mut();
        if !st.adopted {
            st.adopt_spare();
        }
        if st.shared.insert(id) {
            st.shared_bits.add(id);
            st.results.push(state.clone().unbind());
        }
        drop(st);
        self.protect(state);
    }

    /// After a BUILD: the object's own `__dict__` may not hold a special attribute name (see
    /// [`Self::no_special_keys`]), however the state got there: a `__setstate__` of an allowed
    /// class that updates `__dict__` from any mapping (scikit-learn's takes a `UserDict` or a
    /// `ChainMap` as well), an `OrderedDict` a call built. Checked before anything can use the
    /// object.
    fn no_special_instance_names(
        &self,
        py: Python<'_>,
        op: &Op<'_>,
        target: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let Some(dict) = own_dict(target) else {
            return Ok(());
        };
        match special_name_key(&dict) {
            Some(name) => Err(Self::special_name_refusal(
                py,
                op,
                &name,
                "the object's own __dict__ after the BUILD",
            )),
            None => Ok(()),
        }
    }

    /// The refusal of a special attribute name `name` found in `place` (S12-1).
    fn special_name_refusal(py: Python<'_>, op: &Op<'_>, name: &str, place: &str) -> PyErr {
        Self::refuse(
            py,
            Rule::UnsafeArguments,
            op,
            None,
            format!(
                "special attribute name {name:?} in {place}: on an instance, it is what numpy \
                 and the loader look up there (__array_interface__ points numpy at any memory)"
            ),
        )
    }

    /// Whether `obj` may be a `functools.partial`'s function (`ArgRule::AllowedFunction`): a
    /// global this load resolved, which the policy allows to call, with no call rules of its
    /// own.
    fn is_allowed_function(&self, obj: &Bound<'_, PyAny>) -> bool {
        self.lookup(obj)
            .is_some_and(|g| g.0 == Access::Call && g.1 == Special::None)
    }

    /// BUILD on a `functools.partial`: `partial.__setstate__` takes `(function, args, keywords,
    /// dict)` and replaces the function the call was checked with (`ArgRule::AllowedFunction`),
    /// so the state's function must pass the same rule: a global the policy allows to call, with
    /// no call rules of its own.
    fn partial_state(
        &self,
        py: Python<'_>,
        op: &Op<'_>,
        target: &Bound<'_, PyAny>,
        state: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        static PARTIAL: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();
        let partial = match PARTIAL.get(py) {
            Some(p) => p.bind(py),
            None => {
                // no partial object exists before functools is imported
                let Ok(functools) = sys_modules(py)?.get_item(pyo3::intern!(py, "functools"))
                else {
                    return Ok(());
                };
                let ty = functools.getattr(pyo3::intern!(py, "partial"))?.unbind();
                let _ = PARTIAL.set(py, ty);
                match PARTIAL.get(py) {
                    Some(p) => p.bind(py),
                    None => return Ok(()),
                }
            }
        };
        if !is_subtype(target, partial) {
            return Ok(());
        }
        let func = state
            .cast::<PyTuple>()
            .ok()
            .and_then(|t| t.get_item(0).ok());
        let ok = func.as_ref().is_some_and(|f| self.is_allowed_function(f));
        if ok {
            return Ok(());
        }
        Err(Self::refuse(
            py,
            Rule::UnsafeArguments,
            op,
            Some(("functools".into(), "partial".into())),
            "BUILD state of a functools.partial whose function is not a global the policy allows to call"
                .to_owned(),
        ))
    }

    fn numpy_state(
        &self,
        py: Python<'_>,
        op: &Op<'_>,
        target: &Bound<'_, PyAny>,
        state: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let Some((dtype_type, ndarray_type)) = Self::numpy_types(py)? else {
            return Ok(()); // not loaded: the target cannot be a numpy object
        };
        let (dtype_type, ndarray_type) = (dtype_type.bind(py), ndarray_type.bind(py));
        // SAFETY: both are live type objects (the type of a live object, and a type held by
        // the static above); PyType_IsSubtype only reads their MRO.
        let subtype = |ty: &Bound<'_, PyType>| unsafe {
            pyo3::ffi::PyType_IsSubtype(target.get_type().as_type_ptr(), ty.as_type_ptr()) != 0
        };
        let refuse = |what: &str| {
            Err(Self::refuse(
                py,
                Rule::UnsafeArguments,
                op,
                None,
                format!("BUILD state of a numpy {what} is not one numpy writes"),
            ))
        };
        if subtype(dtype_type) {
            let Ok(t) = state.cast::<PyTuple>() else {
                return refuse("dtype");
            };
            // the items in place (8 or 9 of them, checked first)
            let items = t.as_slice();
            let version = items.first().and_then(|v| v.extract::<i64>().ok());
            let shape_ok = matches!((items.len(), version), (8, Some(3)) | (9, Some(4)));
            if !shape_ok {
                return refuse("dtype");
            }
            // a `str`, or `bytes` from a Python 2 pickle loaded with `encoding="bytes"` (numpy
            // takes either)
            let order = &items[1];
            let order_ok = match order.cast::<PyString>() {
                Ok(o) => o.to_str().is_ok_and(|o| matches!(o, "<" | ">" | "|" | "=")),
                Err(_) => order
                    .cast::<pyo3::types::PyBytes>()
                    .is_ok_and(|b| matches!(b.as_bytes(), b"<" | b">" | b"|" | b"=")),
            };
            let sub = &items[2];
            let sub_ok = sub.is_none() || sub.cast::<PyTuple>().is_ok();
            let Ok(flags) = items[7].extract::<i64>() else {
                return refuse("dtype");
            };
            let fields = &items[4];
            let flags_ok = if fields.is_none() && sub.is_none() {
                flags
                    == target
                        .getattr(pyo3::intern!(py, "flags"))?
                        .extract::<i64>()?
            } else {
                // a structured or subarray dtype: the object-related flags must be those of
                // its parts, and never the pointer / getitem / setitem ones
                let mut ok = true;
                let mut dtypes = Vec::new();
                if let Ok(d) = fields.cast::<pyo3::types::PyDict>() {
                    for (_, v) in crate::pyutil::dict_items(d) {
                        match v.cast::<PyTuple>().ok().and_then(|t| t.get_item(0).ok()) {
                            Some(fd) => dtypes.push(fd),
                            None => ok = false,
                        }
                    }
                } else if !fields.is_none() {
                    ok = false;
                }
                if let Ok(st) = sub.cast::<PyTuple>() {
                    match st.get_item(0) {
                        Ok(sd) => dtypes.push(sd),
                        Err(_) => ok = false,
                    }
                }
                let mut parts = 0i64;
                for d in &dtypes {
                    if d.is_instance(dtype_type)? {
                        parts |= d.getattr(pyo3::intern!(py, "flags"))?.extract::<i64>()?;
                    } else {
                        ok = false;
                    }
                }
                ok && flags & 0x0b == parts & 0x0b && flags & 0x64 == 0
            };
            if !(order_ok && sub_ok && flags_ok) {
                return refuse("dtype");
            }
        } else if subtype(ndarray_type) {
            // an exact ndarray has ndarray's own __setstate__ (the common case: no lookups);
            // a subclass may have its own
            let cls = target.get_type();
            let (plain, setstate) = if cls.is(ndarray_type) {
                (true, None)
            } else {
                let setstate = cls.getattr(pyo3::intern!(py, "__setstate__"))?;
                let plain = setstate.is(&ndarray_type.getattr(pyo3::intern!(py, "__setstate__"))?);
                (plain, Some(setstate))
            };
            // numpy.ma's MaskedArray.__setstate__ takes (1, shape, dtype, fortran, data, mask,
            // fill) and passes the first five on to ndarray's (looked up only when the
            // target's __setstate__ is not ndarray's)
            let masked = match setstate {
                Some(setstate) if !plain => {
                    match sys_modules(py)?.get_item(pyo3::intern!(py, "numpy.ma.core")) {
                        Ok(ma) => setstate.is(&ma
                            .getattr(pyo3::intern!(py, "MaskedArray"))?
                            .getattr(pyo3::intern!(py, "__setstate__"))?),
                        Err(_) => false,
                    }
                }
                _ => false,
            };
            if !(plain || masked) {
                return Ok(()); // another subclass's own __setstate__
            }
            let Ok(t) = state.cast::<PyTuple>() else {
                return refuse("array");
            };
            let want = if plain { 5 } else { 7 };
            if t.len() != want || t.get_item(0)?.extract::<i64>().ok() != Some(1) {
                return refuse("array");
            }
            let dtype = t.get_item(2)?;
            if !dtype.is_instance(dtype_type)? {
                return refuse("array");
            }
            let Ok(shape) = t.get_item(1)?.extract::<Vec<i64>>() else {
                return refuse("array");
            };
            if shape.iter().any(|&n| n < 0) {
                return refuse("array");
            }
            let count = shape.iter().try_fold(1i64, |acc, &n| acc.checked_mul(n));
            let data = t.get_item(4)?;
            if dtype.getattr(pyo3::intern!(py, "hasobject"))?.is_truthy()? {
                let ok = data
                    .cast::<pyo3::types::PyList>()
                    .is_ok_and(|l| Some(l.len() as i64) == count);
                if !ok {
                    return refuse("object array");
                }
            } else if data.cast::<pyo3::types::PyList>().is_ok() {
                return refuse("array");
            }
        }
        Ok(())
    }

    /// A container opcode on an object that is not an exact list, dict or set runs that
    /// object's own `__setitem__`/`append`/`add`, which may call what it is given (pandas'
    /// `__setitem__` calls a callable key: red-team F11(c)): its keys and values must not be
    /// callable.
    fn plain_values(
        &self,
        py: Python<'_>,
        op: &Op<'_>,
        target: Option<&Bound<'_, PyAny>>,
        values: &[Bound<'_, PyAny>],
    ) -> PyResult<()> {
        use pyo3::types::{PyDict, PyList, PySet};
        let Some(t) = target else { return Ok(()) };
        if t.is_exact_instance_of::<PyList>()
            || t.is_exact_instance_of::<PyDict>()
            || t.is_exact_instance_of::<PySet>()
        {
            return Ok(());
        }
        if values.iter().any(|v| v.is_callable()) {
            return Err(Self::refuse(
                py,
                Rule::UnsafeArguments,
                op,
                None,
                format!(
                    "{} gives a callable key or value to a {} (its own __setitem__ or append may call it; only plain data may fill objects other than lists, dicts and sets)",
                    op.opcode,
                    t.get_type().name().map(|n| n.to_string()).unwrap_or_default()
                ),
            ));
        }
        Ok(())
    }

    fn not_global(
        &self,
        py: Python<'_>,
        op: &Op<'_>,
        target: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let Some(target) = target else { return Ok(()) };
        let Some(name) = self.state.borrow().global_of(target).map(|g| g.2.clone()) else {
            return Ok(());
        };
        Err(Self::refuse(
            py,
            Rule::GlobalMutation,
            op,
            None,
            format!(
                "{} applied to the global {}",
                op.opcode,
                name.replace(':', ".")
            ),
        ))
    }

    /// Called before the machine runs `op` on `stack` (`marks` are the MARK positions).
    pub(crate) fn before(
        &self,
        py: Python<'_>,
        op: &Op<'_>,
        stack: &[Bound<'_, PyAny>],
        marks: &[usize],
        proto: u8,
        fix_imports: bool,
    ) -> PyResult<()> {
        use Opcode::*;
        let at = |back: usize| stack.len().checked_sub(back).and_then(|i| stack.get(i));
        let below_mark = || {
            marks
                .last()
                .and_then(|&m| m.checked_sub(1))
                .and_then(|i| stack.get(i))
        };
        // Values used as data by this opcode: never builtins.getattr (none to look for until
        // a `getattr` was resolved).
        if self.has_getattr.get() {
            let consumed: &[Bound<'_, PyAny>] = {
                let n = stack.len();
                let mark = marks.last().copied().unwrap_or(0).min(n);
                let top = |k: usize| &stack[n.saturating_sub(k)..];
                match op.opcode {
                    TUPLE | LIST | FROZENSET | DICT | APPENDS | SETITEMS | ADDITEMS | INST => {
                        &stack[mark..]
                    }
                    OBJ => &stack[(mark + 1).min(n)..],
                    TUPLE1 | APPEND | BUILD | REDUCE | NEWOBJ => top(1),
                    TUPLE2 | SETITEM | NEWOBJ_EX => top(2),
                    TUPLE3 => top(3),
                    _ => &[],
                }
            };
            self.no_getattr_values(py, op, consumed)?;
        }
        match op.opcode {
            GLOBAL | INST => {
                let Arg::TwoLines(m, n) = op.arg else {
                    return Ok(());
                };
                let (m, n) = (String::from_utf8_lossy(m), String::from_utf8_lossy(n));
                let (access, sp, dotted) = self.global(py, op, &m, &n, proto, fix_imports)?;
                if op.opcode == INST {
                    let mark = marks.last().copied().unwrap_or(0).min(stack.len());
                    let args = PyTuple::new(py, &stack[mark..])?;
                    self.call_depth(py, op, Some(args.as_any()))?;
                    self.call_checked(py, op, access, sp, &dotted, Some(args.as_any()))?;
                }
                if op.opcode == GLOBAL {
                    self.state.borrow_mut().pending = Some((access, sp, dotted));
                }
            }
            STACK_GLOBAL => {
                let (Some(m), Some(n)) = (at(2), at(1)) else {
                    return Ok(());
                };
                let (Ok(m), Ok(n)) = (m.cast::<PyString>(), n.cast::<PyString>()) else {
                    return Ok(()); // the machine raises "STACK_GLOBAL requires str"
                };
                let (Ok(m), Ok(n)) = (m.to_cow(), n.to_cow()) else {
                    return Ok(()); // not encodable: the machine raises its error
                };
                let (access, sp, dotted) = self.global(py, op, &m, &n, proto, fix_imports)?;
                self.state.borrow_mut().pending = Some((access, sp, dotted));
            }
            REDUCE | NEWOBJ => {
                if let (Some(callee), Some(args)) = (at(2), at(1)) {
                    self.call_depth(py, op, Some(args))?;
                    self.call(py, op, callee, Some(args))?;
                }
            }
            NEWOBJ_EX => {
                if let Some(kwargs) = at(1) {
                    self.no_special_keys(py, op, kwargs, "NEWOBJ_EX's keyword arguments")?;
                }
                if let (Some(cls), Some(args)) = (at(3), at(2)) {
                    self.call_depth(py, op, Some(args))?;
                    self.call(py, op, cls, Some(args))?;
                }
            }
            OBJ => {
                if let Some(&mark) = marks.last() {
                    if let Some(cls) = stack.get(mark) {
                        let args = PyTuple::new(py, &stack[mark + 1..])?;
                        self.call_depth(py, op, Some(args.as_any()))?;
                        self.call(py, op, cls, Some(args.as_any()))?;
                    }
                }
            }
            BUILD | APPEND => {
                self.not_global(py, op, at(2))?;
                self.not_shared(py, op, at(2))?;
                if let (BUILD, Some(target), Some(state)) = (op.opcode, at(2), at(1)) {
                    self.no_instance_setstate(py, op, target)?;
                    // a state is `dict`, or `(dict or None, slots)` when it has slots
                    let (dict_part, slots) = match state.cast::<PyTuple>() {
                        Ok(t) if t.len() == 2 => (t.get_item(0)?, Some(t.get_item(1)?)),
                        _ => (state.clone(), None),
                    };
                    let dict_part = match dict_part.cast_into::<pyo3::types::PyDict>() {
                        Ok(d) => Some(d),
                        Err(e) => {
                            self.no_other_mapping(py, op, e.into_inner().as_any())?;
                            None
                        }
                    };
                    if dict_part.is_some() {
                        self.dict_state_has_a_home(py, op, target)?;
                    }
                    // the slot state goes through setattr (`__class__`); what lands in the
                    // instance `__dict__` is checked after the BUILD, whatever the state's type
                    if let Some(slots) = &slots {
                        self.no_special_keys(py, op, slots, "the BUILD slot state")?;
                    }
                    self.numpy_state(py, op, target, state)?;
                    self.partial_state(py, op, target, state)?;
                    if let Some(slots) = &slots {
                        self.no_method_shadowing(py, op, target, slots)?;
                        self.slot_factory(py, op, slots)?;
                    }
                    if let Some(d) = dict_part {
                        self.no_method_shadowing(py, op, target, d.as_any())?;
                        self.state.borrow_mut().pending_state = Some(d.as_ptr() as usize);
                    }
                }
                if op.opcode == APPEND {
                    self.plain_values(py, op, at(2), &stack[stack.len().saturating_sub(1)..])?;
                }
            }
            SETITEM => {
                self.not_global(py, op, at(3))?;
                self.not_shared(py, op, at(3))?;
                let items = &stack[stack.len().saturating_sub(2)..];
                self.plain_values(py, op, at(3), items)?;
                self.no_special_item_keys(py, op, at(3), items)?;
            }
            APPENDS | SETITEMS | ADDITEMS => {
                self.not_global(py, op, below_mark())?;
                self.not_shared(py, op, below_mark())?;
                let mark = marks.last().copied().unwrap_or(0).min(stack.len());
                self.plain_values(py, op, below_mark(), &stack[mark..])?;
                if op.opcode == SETITEMS {
                    self.no_special_item_keys(py, op, below_mark(), &stack[mark..])?;
                }
            }
            EXT1 | EXT2 | EXT4 => {
                return Err(Self::refuse(
                    py,
                    Rule::ExtensionCode,
                    op,
                    None,
                    "extension codes name globals through the copyreg registry and are not allowed"
                        .into(),
                ))
            }
            PERSID | BINPERSID => {
                return Err(Self::refuse(
                    py,
                    Rule::PersistentId,
                    op,
                    None,
                    "persistent ids are not allowed in a safe load".into(),
                ))
            }
            PROTO if self.seen_proto.replace(true) => {
                return Err(Self::refuse(
                    py,
                    Rule::BadProtocol,
                    op,
                    None,
                    "PROTO repeated".into(),
                ));
            }
            _ => {}
        }
        Ok(())
    }

    /// Called after the machine ran `op`: registers the global it pushed, and whether a call
    /// result is new (only the stack refers to it: this load created it) or shared (something
    /// else already held it: a cache, a singleton, an enum member).
    pub(crate) fn after(
        &self,
        py: Python<'_>,
        op: &Op<'_>,
        stack: &[Bound<'_, PyAny>],
    ) -> PyResult<()> {
        use Opcode::*;
        if op.opcode == BUILD {
            let state = self.state.borrow_mut().pending_state.take();
            if let Some(target) = stack.last() {
                self.no_special_instance_names(py, op, target)?;
                if let Some(state) = state {
                    self.state_became_the_dict(target, state);
                }
            }
            return Ok(());
        }
        if !matches!(
            op.opcode,
            GLOBAL | STACK_GLOBAL | INST | OBJ | REDUCE | NEWOBJ | NEWOBJ_EX
        ) {
            // `before` registers what to check afterwards (a global pushed, a call's result)
            // only for these opcodes: nothing pending
            return Ok(());
        }
        let mut st = self.state.borrow_mut();
        let depth = st.pending_depth.take();
        let bound = std::mem::take(&mut st.pending_bound);
        if std::mem::take(&mut st.pending_arrow) {
            if let (Some(array), REDUCE | NEWOBJ | NEWOBJ_EX | INST | OBJ) =
                (stack.last(), op.opcode)
            {
                drop(st);
                self.arrow_result(py, op, array)?;
                st = self.state.borrow_mut();
            }
        }
        let Some(top) = stack.last() else {
            st.pending = None;
            return Ok(());
        };
        if let Some((access, sp, name)) = st.pending.take() {
            // A callable entry must resolve to a callable: a module global rebound to data (a
            // string, a dict) is not what the policy allowed (red-team F6).
            if access == Access::Call && !top.is_callable() {
                drop(st);
                return Err(Self::refuse(
                    py,
                    Rule::DisallowedGlobal,
                    op,
                    name.split_once(':')
                        .map(|(m, n)| (m.to_owned(), n.to_owned())),
                    format!(
                        "global {} does not resolve to a callable, as the policy's entry does",
                        name.replace(':', ".")
                    ),
                ));
            }
            let id = top.as_ptr() as usize;
            if sp == Special::Getattr {
                st.getattrs.push(id);
                self.has_getattr.set(true);
            }
            self.protect(top);
            if st.globals.capacity() == 0 {
                if !st.adopted {
                    st.adopt_spare();
                }
                // room for a small pickle's globals: growing from nothing (a rehash at 4 and
                // 8 entries) costs more than the lookups
                st.globals.reserve(8);
                st.keep.reserve(8);
            }
            st.globals.insert(id, (access, sp, name));
            st.global_bits.add(id);
            st.keep.push(top.clone().unbind());
            return Ok(());
        }
        if matches!(op.opcode, REDUCE | NEWOBJ | NEWOBJ_EX | INST | OBJ) {
            // a mapping with its own attribute lookup made with items already in it
            // (`copyreg._reconstructor(Bunch, dict, {...})`): the same rule as for SETITEM(S)
            if let Ok(d) = top.cast::<pyo3::types::PyDict>() {
                if !uses_generic_getattr(top) {
                    if let Some(name) = special_name_key(d) {
                        drop(st);
                        return Err(Self::special_name_refusal(
                            py,
                            op,
                            &name,
                            "the items of an object that answers attribute lookups from them",
                        ));
                    }
                }
            }
            let id = top.as_ptr() as usize;
            if let Some(d) = depth {
                // A result's address is not reused while it is alive, and a freed result
                // cannot be an argument any more: a stale entry only ever meets a new object
                // at its address, and is overwritten when that object is a call result.
                if st.depths.capacity() == 0 {
                    if !st.adopted {
                        st.adopt_spare();
                    }
                    st.depths.reserve(16);
                }
                st.depths.insert(id, d);
                st.depth_bits.add(id);
            }
            // SAFETY: `top` is a live object (the stack holds it); reading its reference count
            // has no other effect.
            let refs = unsafe { pyo3::ffi::Py_REFCNT(top.as_ptr()) };
            // a bound method is new, but what BUILD or a container opcode would change through
            // it is its function's: it counts as shared
            let shared = refs > 1 || bound;
            if shared && !st.adopted {
                st.adopt_spare();
            }
            if shared && st.shared.insert(id) {
                st.shared_bits.add(id);
                st.results.push(top.clone().unbind());
                self.protect(top);
            }
        }
        Ok(())
    }
}
