//! The unpickler's input layer: serves the core's [`Decoder`] whole operations, from memory or
//! from a file object.
//!
//! In memory (`loads`) the decoder walks the caller's buffer directly, without a copy.
//!
//! From a file (`load`, `Unpickler(file).load()`) the layer reproduces the calls `_pickle.c` makes
//! on the file object, because they are observable: the opcode byte and each argument field are
//! read with `read(n)` (or served from a chunk prefetched with `peek(PREFETCH)` when the file has
//! `peek`, in which case the consumed bytes are skipped with `read` before any other call and at
//! STOP), text arguments with `readline()`, `bytes`/`bytearray` payloads with `readinto`, and a
//! whole `FRAME` with one read. The file is therefore left positioned exactly after STOP, so that
//! several pickles can be loaded from one file in a row.
//!
//! When an operation lies entirely in the current chunk (the common case inside a frame or a
//! prefetched chunk), the decoder runs on the chunk directly; otherwise the pieces are read one
//! field at a time, as C does, into a staging buffer that the decoder then splits. The layout of
//! each operation comes from the shared opcode table ([`Opcode::arg_kind`]).

use brinery::decode::{Arg, Decoder, Op};
use brinery::opcode::{ArgKind, Opcode};
use brinery::ErrorKind;
use pyo3::exceptions::{PyNotImplementedError, PyOverflowError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::unpickling_error;

/// `_pickle.c`'s prefetch size for peekable files.
const PREFETCH: usize = 8192 * 16;

/// Why an operation could not be fetched.
pub(crate) enum InputError {
    /// The input ended inside the operation whose opcode is given (C's "pickle data was
    /// truncated"; the machine decides on the exact error, as C checks some state first).
    Truncated(Opcode),
    /// The input ended in the second line of `GLOBAL`/`INST`; C decodes the first line (the
    /// module name, given here) before reading the second.
    TruncatedAfterLine(Opcode, Vec<u8>),
    /// Any other error, ready to raise.
    Py(PyErr),
}

impl From<PyErr> for InputError {
    fn from(e: PyErr) -> Self {
        InputError::Py(e)
    }
}

/// One fetched operation.
pub(crate) enum Fetched<'s, 'py> {
    /// An operation, with its argument borrowed from the input.
    Op(Op<'s>),
    /// A `bytes`/`bytearray` payload that was read straight into its final object (file input,
    /// payload not in the prefetched chunk).
    Built(Bound<'py, PyAny>),
}

/// The maximum of a Python `Py_ssize_t`.
const SSIZE_MAX: u64 = isize::MAX as u64;

fn overflow_message(opcode: Opcode) -> Option<String> {
    let what = match opcode {
        Opcode::BINBYTES8 => "BINBYTES",
        Opcode::BYTEARRAY8 => "BYTEARRAY8",
        Opcode::BINUNICODE8 => "BINUNICODE",
        Opcode::FRAME => {
            return Some(format!(
                "FRAME length exceeds system's maximum of {SSIZE_MAX} bytes"
            ))
        }
        _ => return None,
    };
    Some(format!(
        "{what} exceeds system's maximum size of {SSIZE_MAX} bytes"
    ))
}

/// Map a decoder error to what `_pickle.c` raises for the same bytes.
fn decode_error(py: Python<'_>, data: &[u8], err: &brinery::Error) -> InputError {
    let offset = err.offset().unwrap_or(0) as usize;
    let opcode = err
        .opcode()
        .or_else(|| data.get(offset).and_then(|&b| Opcode::from_byte(b)));
    match err.kind() {
        ErrorKind::UnknownOpcode(b) => InputError::Py(invalid_load_key(py, *b)),
        ErrorKind::LengthBeyondInput { claimed, .. } if *claimed > SSIZE_MAX => {
            match opcode.and_then(overflow_message) {
                Some(msg) => InputError::Py(PyOverflowError::new_err(msg)),
                None => InputError::Truncated(opcode.unwrap_or(Opcode::STOP)),
            }
        }
        ErrorKind::BadArgument(_) if opcode == Some(Opcode::LONG4) => {
            InputError::Py(unpickling_error(py, "LONG pickle has negative byte count"))
        }
        // Truncation, lying lengths, and BINSTRING's "negative" size (C reads it unsigned and
        // then runs out of input).
        _ => {
            let opcode = opcode.unwrap_or(Opcode::STOP);
            if matches!(opcode, Opcode::GLOBAL | Opcode::INST) {
                let rest = data.get(offset + 1..).unwrap_or_default();
                if let Some(end) = rest.iter().position(|&b| b == b'\n') {
                    return InputError::TruncatedAfterLine(opcode, rest[..end].to_vec());
                }
            }
            InputError::Truncated(opcode)
        }
    }
}

/// `invalid load key, 'x'.`
pub(crate) fn invalid_load_key(py: Python<'_>, c: u8) -> PyErr {
    if (0x20..=0x7e).contains(&c) && c != b'\'' && c != b'\\' {
        unpickling_error(py, format!("invalid load key, '{}'.", c as char))
    } else {
        unpickling_error(py, format!("invalid load key, '\\x{c:02x}'."))
    }
}

/// Input held in memory: the caller's buffer, walked in place.
pub(crate) struct MemoryInput<'a> {
    data: &'a [u8],
    pos: usize,
    /// Python code run by the load cannot change the bytes (a `bytes` object, or a copy).
    fixed: bool,
}

impl<'a> MemoryInput<'a> {
    /// Bytes nothing can change while they are loaded (a `bytes` object's, or a copy).
    pub(crate) fn new(data: &'a [u8]) -> Self {
        MemoryInput {
            data,
            pos: 0,
            fixed: true,
        }
    }

    /// Bytes read in place that Python code run by the load may rewrite (a read-only export
    /// of memory that is writable elsewhere, such as `memoryview(bytearray).toreadonly()`), as
    /// `_pickle` reads them: no step may rely on a scan made before the load.
    pub(crate) fn shared(data: &'a [u8]) -> Self {
        MemoryInput {
            fixed: false,
            ..MemoryInput::new(data)
        }
    }

    /// Whether the bytes stay as they are for the whole load (see [`MemoryInput::shared`]).
    pub(crate) fn fixed(&self) -> bool {
        self.fixed
    }

    /// The whole input and the position of the next operation, for the fast loop.
    #[inline]
    pub(crate) fn parts(&mut self) -> (&'a [u8], &mut usize) {
        (self.data, &mut self.pos)
    }

    #[inline]
    pub(crate) fn next<'py>(
        &mut self,
        py: Python<'py>,
    ) -> Result<Option<Fetched<'a, 'py>>, InputError> {
        loop {
            let mut dec = Decoder::at(self.data, self.pos);
            match dec.next_op() {
                Ok(Some(op)) => {
                    self.pos = dec.offset();
                    if self.pos == self.data.len() && is_empty_payload(&op) {
                        // C's `_Unpickler_ReadInto` of zero bytes at the very end of the input
                        // reports truncation.
                        return Err(InputError::Truncated(op.opcode));
                    }
                    if op.opcode == Opcode::FRAME {
                        let Arg::U64(len) = op.arg else { continue };
                        if len > SSIZE_MAX {
                            return Err(InputError::Py(PyOverflowError::new_err(
                                overflow_message(Opcode::FRAME).unwrap_or_default(),
                            )));
                        }
                        if len > (self.data.len() - self.pos) as u64 {
                            return Err(InputError::Truncated(Opcode::FRAME));
                        }
                        continue;
                    }
                    return Ok(Some(Fetched::Op(op)));
                }
                Ok(None) => return Ok(None),
                Err(e) => return Err(decode_error(py, self.data, &e)),
            }
        }
    }
}

/// The bytes of C's `input_buffer`: the last object returned by `read`/`peek`/`readline`.
enum Chunk {
    Bytes(Py<PyBytes>),
    Owned(Vec<u8>),
}

impl Chunk {
    fn as_slice<'s>(&'s self, py: Python<'_>) -> &'s [u8] {
        match self {
            Chunk::Bytes(b) => b.as_bytes(py),
            Chunk::Owned(v) => v,
        }
    }
}

/// A file object being read as `_pickle.c` reads it. Kept in the Unpickler between loads, like
/// C's input buffer.
pub(crate) struct FileInput {
    pub(crate) read: Py<PyAny>,
    pub(crate) readline: Py<PyAny>,
    pub(crate) readinto: Option<Py<PyAny>>,
    pub(crate) peek: Option<Py<PyAny>>,
    chunk: Chunk,
    /// C's `next_read_idx`.
    next: usize,
    /// C's `prefetched_idx`: bytes of the chunk before it are already consumed from the file.
    prefetched: usize,
    staging: Vec<u8>,
}

/// Result of a read step in the slow path.
type Step<T> = Result<T, InputError>;

impl FileInput {
    /// Look up the file methods as C does (`peek`, `readinto`, `read`, `readline`, in this order).
    pub(crate) fn new(file: &Bound<'_, PyAny>) -> PyResult<FileInput> {
        let peek = file.getattr_opt(pyo3::intern!(file.py(), "peek"))?;
        let readinto = file.getattr_opt(pyo3::intern!(file.py(), "readinto"))?;
        let read = file.getattr_opt(pyo3::intern!(file.py(), "read"))?;
        let readline = file.getattr_opt(pyo3::intern!(file.py(), "readline"))?;
        let (Some(read), Some(readline)) = (read, readline) else {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "file must have 'read' and 'readline' attributes",
            ));
        };
        Ok(FileInput {
            read: read.unbind(),
            readline: readline.unbind(),
            readinto: readinto.map(Bound::unbind),
            peek: peek.map(Bound::unbind),
            chunk: Chunk::Owned(Vec::new()),
            next: 0,
            prefetched: 0,
            staging: Vec::new(),
        })
    }

    /// The Python objects held, for the garbage collector.
    pub(crate) fn objects(&self) -> impl Iterator<Item = &Py<PyAny>> {
        [
            Some(&self.read),
            Some(&self.readline),
            self.readinto.as_ref(),
            self.peek.as_ref(),
        ]
        .into_iter()
        .flatten()
    }

    /// The current chunk and the position of the next operation in it, for the fast loop.
    #[inline]
    pub(crate) fn parts<'s>(&'s mut self, py: Python<'_>) -> (&'s [u8], &'s mut usize) {
        (self.chunk.as_slice(py), &mut self.next)
    }

    fn chunk_len(&self, py: Python<'_>) -> usize {
        self.chunk.as_slice(py).len()
    }

    /// C's `_Unpickler_SetStringInput` for a file result.
    fn set_chunk(&mut self, py: Python<'_>, data: Bound<'_, PyAny>) -> PyResult<usize> {
        let chunk = match data.cast_into::<PyBytes>() {
            Ok(b) => Chunk::Bytes(b.unbind()),
            Err(e) => {
                let obj = e.into_inner();
                let buf = pyo3::buffer::PyBuffer::<u8>::get(&obj)?;
                Chunk::Owned(buf.to_vec(py)?)
            }
        };
        self.chunk = chunk;
        let len = self.chunk_len(py);
        self.next = 0;
        self.prefetched = len;
        Ok(len)
    }

    /// C's `_Unpickler_SkipConsumed`: tell the file about bytes consumed from a peeked chunk.
    pub(crate) fn skip_consumed(&mut self, py: Python<'_>) -> PyResult<()> {
        if self.next > self.prefetched {
            let consumed = self.next - self.prefetched;
            self.read.call1(py, (consumed,))?;
            self.prefetched = self.next;
        }
        Ok(())
    }

    /// C's `_Unpickler_ReadFromFile(n)` (`None` = a whole line).
    fn read_from_file(&mut self, py: Python<'_>, n: Option<usize>) -> PyResult<usize> {
        self.skip_consumed(py)?;
        let data = match n {
            None => self.readline.bind(py).call0()?,
            Some(n) => {
                if n < PREFETCH {
                    if let Some(peek) = self.peek.as_ref().map(|p| p.clone_ref(py)) {
                        match peek.bind(py).call1((PREFETCH,)) {
                            Ok(data) => {
                                let got = self.set_chunk(py, data)?;
                                self.prefetched = 0;
                                if n <= got {
                                    return Ok(n);
                                }
                            }
                            Err(e) if e.is_instance_of::<PyNotImplementedError>(py) => {
                                self.peek = None;
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
                self.read.bind(py).call1((n,))?
            }
        };
        self.set_chunk(py, data)
    }

    /// C's `_Unpickler_Read(n)`: append the next `n` bytes to the staging buffer.
    fn read_n(&mut self, py: Python<'_>, n: usize, opcode: Opcode) -> Step<()> {
        let avail = self.chunk_len(py) - self.next;
        if n > avail {
            let got = self.read_from_file(py, Some(n))?;
            if got < n {
                return Err(InputError::Truncated(opcode));
            }
            self.next = 0;
        }
        let start = self.next;
        self.next += n;
        let chunk = self.chunk.as_slice(py);
        self.staging.extend_from_slice(&chunk[start..start + n]);
        Ok(())
    }

    /// C's `_Unpickler_Readline`: append the next line (with its `\n`) to the staging buffer.
    fn read_line(&mut self, py: Python<'_>, opcode: Opcode) -> Step<()> {
        let chunk = self.chunk.as_slice(py);
        if let Some(i) = chunk[self.next..].iter().position(|&b| b == b'\n') {
            let start = self.next;
            self.next += i + 1;
            self.staging.extend_from_slice(&chunk[start..start + i + 1]);
            return Ok(());
        }
        let got = self.read_from_file(py, None)?;
        let chunk = self.chunk.as_slice(py);
        if got == 0 || chunk[got - 1] != b'\n' {
            return Err(InputError::Truncated(opcode));
        }
        self.next = got;
        self.staging.extend_from_slice(&chunk[..got]);
        Ok(())
    }

    /// C's `_Unpickler_ReadInto` for a `bytes`/`bytearray` payload of `n` bytes, built straight
    /// into its final object: what the chunk holds is copied, the rest is read with `readinto`
    /// into a writable memoryview of the object's own memory (or with `read` and copied when the
    /// file has no `readinto`), exactly the calls C makes. No intermediate copy, so a payload
    /// costs its own size in memory once.
    fn read_payload<'py>(
        &mut self,
        py: Python<'py>,
        n: usize,
        opcode: Opcode,
    ) -> Step<Bound<'py, PyAny>> {
        let (obj, dst) = super::payload::new_uninit(py, n, opcode == Opcode::BYTEARRAY8)?;
        let in_buffer = self.chunk.as_slice(py).len() - self.next;
        let filled = in_buffer.min(n);
        if filled > 0 {
            let chunk = self.chunk.as_slice(py);
            // SAFETY: `dst` is the data area of the fresh object (`n >= filled` bytes), not
            // shared with any Python code yet; the chunk slice holds `filled` bytes from `next`.
            unsafe {
                std::ptr::copy_nonoverlapping(chunk[self.next..].as_ptr(), dst, filled);
            }
            self.next += filled;
        }
        // C goes to the file even for an empty payload when the chunk is exhausted.
        if filled < n || in_buffer == 0 {
            self.skip_consumed(py)?;
            let rest = n - filled;
            match self.readinto.as_ref().map(|r| r.clone_ref(py)) {
                None => {
                    let data = self.read.bind(py).call1((rest,))?;
                    let Ok(bytes) = data.cast::<PyBytes>() else {
                        return Err(PyValueError::new_err(format!(
                            "read() returned non-bytes object ({})",
                            data.get_type().repr()?
                        ))
                        .into());
                    };
                    let b = bytes.as_bytes();
                    if b.len() < rest {
                        return Err(InputError::Truncated(opcode));
                    }
                    // SAFETY: as above; the object is still private to this function and has
                    // `rest` bytes left from `filled`.
                    unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), dst.add(filled), rest) };
                }
                Some(readinto) => {
                    // SAFETY: `dst + filled` is valid for `rest` writable bytes for as long as
                    // `obj` lives; the view is released below (or `obj` is kept alive forever
                    // if the file kept an export of it).
                    let view = unsafe {
                        Bound::from_owned_ptr_or_err(
                            py,
                            ffi::PyMemoryView_FromMemory(
                                dst.add(filled).cast(),
                                rest as ffi::Py_ssize_t,
                                ffi::PyBUF_WRITE,
                            ),
                        )
                    }?;
                    let got = readinto.bind(py).call1((&view,));
                    if view.call_method0(pyo3::intern!(py, "release")).is_err() {
                        // The file kept an export of the view: the memory must outlive it.
                        std::mem::forget(obj.clone());
                    }
                    let got: isize = got?.extract()?;
                    if got < 0 {
                        return Err(
                            PyValueError::new_err("readinto() returned negative size").into()
                        );
                    }
                    if (got as usize) < rest {
                        return Err(InputError::Truncated(opcode));
                    }
                }
            }
        }
        Ok(obj)
    }

    /// Fetch the next operation (`Ok(None)`: the file had no byte for the opcode).
    pub(crate) fn next<'s, 'py>(
        &'s mut self,
        py: Python<'py>,
    ) -> Result<Option<Fetched<'s, 'py>>, InputError> {
        loop {
            // FRAME changes the chunk, so it is handled before anything borrows it.
            let frame_len = {
                let chunk = self.chunk.as_slice(py);
                match (
                    chunk.get(self.next),
                    chunk.get(self.next + 1..self.next + 9),
                ) {
                    (Some(&b), Some(len)) if b == Opcode::FRAME.byte() => {
                        let mut raw = [0u8; 8];
                        raw.copy_from_slice(len);
                        Some(u64::from_le_bytes(raw))
                    }
                    _ => None,
                }
            };
            if let Some(len) = frame_len {
                self.next += 9;
                self.frame(py, len)?;
                continue;
            }
            // Fast path: the whole operation is in the current chunk, so C would not call the
            // file either. Probe first, then borrow for the caller only on the returning branch.
            let probe = {
                let chunk = self.chunk.as_slice(py);
                let mut dec = Decoder::at(chunk, self.next);
                match dec.next_op() {
                    Ok(Some(_)) => Ok(Some(dec.offset())),
                    Ok(None) => Ok(None),
                    Err(e) => match e.kind() {
                        ErrorKind::UnknownOpcode(b) => Err(*b),
                        _ => Ok(None),
                    },
                }
            };
            match probe {
                Err(byte) => {
                    self.next += 1;
                    return Err(InputError::Py(invalid_load_key(py, byte)));
                }
                Ok(Some(end)) => {
                    let start = self.next;
                    self.next = end;
                    let chunk = self.chunk.as_slice(py);
                    return match Decoder::at(chunk, start).next_op() {
                        Ok(Some(op)) => Ok(Some(Fetched::Op(op))),
                        Ok(None) => Ok(None),
                        Err(e) => Err(decode_error(py, chunk, &e)),
                    };
                }
                Ok(None) => {}
            }
            // Slow path: read field by field like C, into the staging buffer.
            self.staging.clear();
            match self.read_n(py, 1, Opcode::STOP) {
                Ok(()) => {}
                Err(InputError::Truncated(_)) => return Ok(None),
                Err(e) => return Err(e),
            }
            let byte = self.staging[0];
            let Some(opcode) = Opcode::from_byte(byte) else {
                return Err(InputError::Py(invalid_load_key(py, byte)));
            };
            match opcode.arg_kind() {
                ArgKind::None => {}
                ArgKind::U1 => self.read_n(py, 1, opcode)?,
                ArgKind::U2 => self.read_n(py, 2, opcode)?,
                ArgKind::U4 | ArgKind::I4 => self.read_n(py, 4, opcode)?,
                ArgKind::U8 | ArgKind::F8 => self.read_n(py, 8, opcode)?,
                ArgKind::Long1 | ArgKind::Counted1 => {
                    self.read_n(py, 1, opcode)?;
                    let n = self.staging[1] as usize;
                    if is_payload(opcode) {
                        let obj = self.read_payload(py, n, opcode)?;
                        return Ok(Some(Fetched::Built(obj)));
                    }
                    self.read_n(py, n, opcode)?;
                }
                ArgKind::Long4 => {
                    self.read_n(py, 4, opcode)?;
                    let n = i32::from_le_bytes(self.le::<4>());
                    if n < 0 {
                        return Err(InputError::Py(unpickling_error(
                            py,
                            "LONG pickle has negative byte count",
                        )));
                    }
                    self.read_n(py, n as usize, opcode)?;
                }
                ArgKind::Counted4 => {
                    self.read_n(py, 4, opcode)?;
                    let n = u32::from_le_bytes(self.le::<4>()) as usize;
                    if is_payload(opcode) {
                        let obj = self.read_payload(py, n, opcode)?;
                        return Ok(Some(Fetched::Built(obj)));
                    }
                    if opcode == Opcode::BINSTRING && n > i32::MAX as usize {
                        // The decoder reads BINSTRING's size as signed; C reads it unsigned and
                        // runs out of input.
                        return Err(InputError::Truncated(opcode));
                    }
                    self.read_n(py, n, opcode)?;
                }
                ArgKind::Counted8 => {
                    self.read_n(py, 8, opcode)?;
                    let n = u64::from_le_bytes(self.le::<8>());
                    if n > SSIZE_MAX {
                        return Err(InputError::Py(PyOverflowError::new_err(
                            overflow_message(opcode).unwrap_or_default(),
                        )));
                    }
                    let n = usize::try_from(n).map_err(|_| InputError::Truncated(opcode))?;
                    if is_payload(opcode) {
                        let obj = self.read_payload(py, n, opcode)?;
                        return Ok(Some(Fetched::Built(obj)));
                    }
                    self.read_n(py, n, opcode)?;
                }
                ArgKind::Line => self.read_line(py, opcode)?,
                ArgKind::TwoLines => {
                    self.read_line(py, opcode)?;
                    match self.read_line(py, opcode) {
                        Err(InputError::Truncated(_)) => {
                            let first = self.staging[1..self.staging.len() - 1].to_vec();
                            return Err(InputError::TruncatedAfterLine(opcode, first));
                        }
                        other => other?,
                    }
                }
                _ => {}
            }
            if opcode == Opcode::FRAME {
                let len = u64::from_le_bytes(self.le::<8>());
                self.frame(py, len)?;
                continue;
            }
            let staging = &self.staging;
            return match Decoder::new(staging).next_op() {
                Ok(Some(op)) => Ok(Some(Fetched::Op(op))),
                Ok(None) => Ok(None),
                Err(e) => Err(decode_error(py, staging, &e)),
            };
        }
    }

    fn le<const N: usize>(&self) -> [u8; N] {
        let mut out = [0u8; N];
        out.copy_from_slice(&self.staging[1..1 + N]);
        out
    }

    /// C's `load_frame` after the length is known: read the whole frame, then rewind.
    fn frame(&mut self, py: Python<'_>, len: u64) -> Step<()> {
        if len > SSIZE_MAX {
            return Err(InputError::Py(PyOverflowError::new_err(
                overflow_message(Opcode::FRAME).unwrap_or_default(),
            )));
        }
        let len = usize::try_from(len).map_err(|_| InputError::Truncated(Opcode::FRAME))?;
        let avail = self.chunk_len(py) - self.next;
        if len > avail {
            let got = self.read_from_file(py, Some(len))?;
            if got < len {
                return Err(InputError::Truncated(Opcode::FRAME));
            }
            self.next = 0;
        }
        Ok(())
    }
}

fn is_payload(opcode: Opcode) -> bool {
    matches!(
        opcode,
        Opcode::SHORT_BINBYTES | Opcode::BINBYTES | Opcode::BINBYTES8 | Opcode::BYTEARRAY8
    )
}

fn is_empty_payload(op: &Op<'_>) -> bool {
    is_payload(op.opcode) && matches!(op.arg, Arg::Bytes(b) if b.is_empty())
}
