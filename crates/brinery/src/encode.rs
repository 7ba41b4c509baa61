//! The opcode writer: protocol-aware primitives, framing and memo opcodes.
//!
//! [`Encoder`] produces exactly the bytes CPython 3.11's C pickler (`Modules/_pickle.c`) produces
//! for the same sequence of calls, so that a writer built on it (the value writer in
//! [`crate::value`], the Python `Pickler`) can be byte-identical to `pickle.dumps`. It knows how
//! each scalar is spelled at each protocol (`save_long`, `save_float`, `save_unicode`, ...), how
//! memo indices are written (`memo_put`/`memo_get`), how protocol 4+ frames are laid out and when
//! they are committed, and how CPython batches `APPENDS`/`SETITEMS`/`ADDITEMS`. It does *not* know
//! about objects: deciding what to memoize and in which order to visit values is the caller's job.
//!
//! ```
//! use brinery::encode::Encoder;
//! // pickle.dumps([1, "a"], protocol=4)
//! let mut e = Encoder::new(4).unwrap();
//! e.start();
//! e.opcode_boundary().unwrap();
//! e.empty_list();
//! e.put(0).unwrap();
//! e.mark();
//! e.opcode_boundary().unwrap();
//! e.int(1);
//! e.opcode_boundary().unwrap();
//! e.str(&"a".into()).unwrap();
//! e.put(1).unwrap();
//! e.opcode(brinery::Opcode::APPENDS);
//! let bytes = e.finish().unwrap();
//! assert_eq!(bytes, b"\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00]\x94(K\x01\x8c\x01a\x94e.");
//! ```
//!
//! # Framing (protocol 4+)
//! Exactly as `_pickle.c`: the first write after a commit opens a frame by reserving a 9-byte
//! `FRAME` header; [`Encoder::opcode_boundary`] (which the caller invokes where C's `save()`
//! starts) commits the frame once it holds at least [`FRAME_SIZE_TARGET`] bytes; a committed
//! frame shorter than [`FRAME_SIZE_MIN`] loses its header; and [`Encoder::write_bytes`] writes a
//! payload of [`FRAME_SIZE_TARGET`] bytes or more outside any frame, after committing the current
//! one. With a sink ([`Encoder::with_sink`]) committed frames are flushed to it at each commit
//! and large payloads go straight to it without being copied into the buffer, as C does for
//! `pickle.dump`.

mod compat;

use std::io::Write;

use num_bigint::{BigInt, Sign};

use crate::error::{Error, ErrorKind, Result};
use crate::opcode::Opcode;
use crate::pystr::PyString;

/// Frames are committed once they hold this many bytes (`_pickle.c`'s `FRAME_SIZE_TARGET`).
pub const FRAME_SIZE_TARGET: usize = 64 * 1024;
/// A committed frame shorter than this drops its header (`FRAME_SIZE_MIN`).
pub const FRAME_SIZE_MIN: usize = 4;
/// The size of a `FRAME` opcode with its 8-byte length.
pub const FRAME_HEADER_SIZE: usize = 9;
/// How many items one `APPENDS`/`SETITEMS`/`ADDITEMS` carries at most (`_BATCHSIZE`).
pub const BATCH_SIZE: usize = 1000;

/// Without a sink, flush the unframed buffer (protocols 0-3) once it is this large.
const UNFRAMED_FLUSH: usize = 1 << 20;

/// The opcode header of a `str` of `size` UTF-8 bytes at binary protocol `proto` (`save_unicode`):
/// `SHORT_BINUNICODE` (protocol 4+, up to 255 bytes), `BINUNICODE`, or `BINUNICODE8` (protocol
/// 4+, over 4 GiB). Returns the header buffer and how many of its bytes are used, or `None` when
/// no opcode of `proto` can carry that size. Shared by [`Encoder::str`] and the Python `Pickler`,
/// which writes the payload from the `str` object itself.
pub fn unicode_header(proto: u8, size: usize) -> Option<([u8; 9], usize)> {
    let mut header = [0u8; 9];
    let len = if size <= 0xff && proto >= 4 {
        header[0] = Opcode::SHORT_BINUNICODE.byte();
        header[1] = size as u8;
        2
    } else if let Ok(n) = u32::try_from(size) {
        header[0] = Opcode::BINUNICODE.byte();
        header[1..5].copy_from_slice(&n.to_le_bytes());
        5
    } else if proto >= 4 {
        header[0] = Opcode::BINUNICODE8.byte();
        header[1..9].copy_from_slice(&(size as u64).to_le_bytes());
        9
    } else {
        return None;
    };
    Some((header, len))
}

fn unsupported(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Unsupported(msg.into()))
}

/// Append a `str` of fewer than [`FRAME_SIZE_TARGET`] bytes at a binary protocol, then the memo
/// opcode storing it at `idx`: `SHORT_BINUNICODE` and `MEMOIZE` if `short` (protocol 4+),
/// else `BINUNICODE` and `BINPUT` / `LONG_BINPUT`.
///
/// The opcode heads are built in a `u64` and stored whole (8 bytes, then the length is cut
/// back): a head spelled byte by byte into a small array and copied reloaded those bytes before
/// their stores completed (a store-forwarding stall per string).
#[inline(always)]
fn push_str_put(buf: &mut Vec<u8>, data: &[u8], short: bool, idx: u32) {
    let n = data.len();
    buf.reserve(n + 16);
    let (head, head_len) = if short && n <= 0xff {
        (Opcode::SHORT_BINUNICODE.byte() as u64 | (n as u64) << 8, 2)
    } else {
        (Opcode::BINUNICODE.byte() as u64 | (n as u64) << 8, 5)
    };
    push_word(buf, head, head_len);
    push_short(buf, data);
    let (put, put_len) = if short {
        (Opcode::MEMOIZE.byte() as u64, 1)
    } else if idx < 256 {
        (Opcode::BINPUT.byte() as u64 | (idx as u64) << 8, 2)
    } else {
        (Opcode::LONG_BINPUT.byte() as u64 | (idx as u64) << 8, 5)
    };
    push_word(buf, put, put_len);
}

/// Append the first `len` (at most 8) little-endian bytes of `word`.
#[inline(always)]
fn push_word(buf: &mut Vec<u8>, word: u64, len: usize) {
    let at = buf.len();
    buf.extend_from_slice(&word.to_le_bytes());
    buf.truncate(at + len);
}

/// Append `data` to `buf`. A text of 8 to 16 bytes (most dict keys and short strings) is
/// copied as two 8-byte words that overlap in the middle, without a call to `memcpy`, whose
/// call and size dispatch cost more than the copy itself at that size.
#[inline(always)]
fn push_short(buf: &mut Vec<u8>, data: &[u8]) {
    let n = data.len();
    if (8..=16).contains(&n) {
        let at = buf.len();
        buf.extend_from_slice(&data[..8]);
        buf.truncate(at + n - 8);
        buf.extend_from_slice(&data[n - 8..]);
    } else {
        buf.extend_from_slice(data);
    }
}

/// The protocol-aware opcode writer. See the [module documentation](self).
pub struct Encoder<'w> {
    buf: Vec<u8>,
    proto: u8,
    framing: bool,
    frame_start: Option<usize>,
    sink: Option<&'w mut dyn Write>,
    /// `opcode_boundary` has work to do only once `buf.len()` reaches this (see
    /// `refresh_boundary`): one comparison on the hot path instead of C's three.
    boundary_at: usize,
    /// `framing && frame_start.is_none()`: the next write opens a frame (kept by
    /// `refresh_boundary`, so [`write_raw`](Self::write_raw) tests one flag).
    needs_frame: bool,
}

impl std::fmt::Debug for Encoder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("protocol", &self.proto)
            .field("buffered", &self.buf.len())
            .field("framing", &self.framing)
            .field("frame_start", &self.frame_start)
            .field("sink", &self.sink.is_some())
            .finish()
    }
}

impl Encoder<'static> {
    /// An encoder for `protocol` (0–5) writing into an in-memory buffer (`pickle.dumps`).
    pub fn new(protocol: u8) -> Result<Self> {
        Encoder::build(protocol, None)
    }
}

impl<'w> Encoder<'w> {
    /// An encoder for `protocol` that flushes committed output to `sink` (`pickle.dump`):
    /// committed frames at each [`opcode_boundary`](Self::opcode_boundary), large payloads
    /// directly, everything else at [`finish`](Self::finish).
    pub fn with_sink(protocol: u8, sink: &'w mut dyn Write) -> Result<Self> {
        Encoder::build(protocol, Some(sink))
    }

    /// [`Encoder::new`] writing into `buf` (cleared first), e.g. a buffer kept from an earlier
    /// encoder's [`finish`](Self::finish) to save its allocation.
    pub fn with_buffer(protocol: u8, mut buf: Vec<u8>) -> Result<Self> {
        buf.clear();
        Encoder::build_with(protocol, None, buf)
    }

    fn build(protocol: u8, sink: Option<&'w mut dyn Write>) -> Result<Self> {
        Encoder::build_with(protocol, sink, Vec::with_capacity(4096))
    }

    fn build_with(protocol: u8, sink: Option<&'w mut dyn Write>, buf: Vec<u8>) -> Result<Self> {
        if protocol > crate::HIGHEST_PROTOCOL {
            return Err(Error::new(ErrorKind::UnsupportedProtocol(protocol)));
        }
        let mut encoder = Encoder {
            buf,
            proto: protocol,
            framing: false,
            frame_start: None,
            sink,
            boundary_at: usize::MAX,
            needs_frame: false,
        };
        encoder.refresh_boundary();
        Ok(encoder)
    }

    /// Recompute `boundary_at` after `framing`, `frame_start` or `sink` changed: the buffer
    /// length from which [`opcode_boundary`](Self::opcode_boundary) must look closer.
    #[inline]
    fn refresh_boundary(&mut self) {
        self.boundary_at = match self.frame_start {
            Some(start) if self.framing => start + FRAME_HEADER_SIZE + FRAME_SIZE_TARGET,
            None if !self.framing && self.sink.is_some() => UNFRAMED_FLUSH,
            _ => usize::MAX,
        };
        self.needs_frame = self.framing && self.frame_start.is_none();
    }

    /// The protocol being written.
    #[inline]
    pub fn protocol(&self) -> u8 {
        self.proto
    }

    /// Whether this is a binary protocol (1+), C's `self->bin`.
    #[inline]
    pub fn is_binary(&self) -> bool {
        self.proto > 0
    }

    /// The bytes buffered so far (everything, without a sink). An open frame's header is not
    /// filled in until the frame is committed.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    // ---------------------------------------------------------------------------------------
    // Stream structure
    // ---------------------------------------------------------------------------------------

    /// Write the header: `PROTO n` at protocol 2+, and turn framing on at protocol 4+ (so the
    /// first frame starts after `PROTO`, as in C's `dump()`).
    pub fn start(&mut self) {
        if self.proto >= 2 {
            self.write_raw(&[Opcode::PROTO.byte(), self.proto]);
            if self.proto >= 4 {
                self.framing = true;
            }
        }
        self.refresh_boundary();
    }

    /// Write `STOP`, commit the last frame, flush to the sink if there is one, and return what
    /// remains buffered (the whole pickle without a sink, nothing with one).
    pub fn finish(mut self) -> Result<Vec<u8>> {
        self.write_raw(&[Opcode::STOP.byte()]);
        self.commit_frame();
        self.framing = false;
        self.refresh_boundary();
        if self.sink.is_some() {
            self.flush()?;
        }
        Ok(std::mem::take(&mut self.buf))
    }

    /// Append raw bytes, opening a frame first if framing is on and none is open
    /// (`_Pickler_Write`).
    #[inline(always)]
    pub fn write_raw(&mut self, data: &[u8]) {
        if self.needs_frame {
            self.open_frame();
        }
        self.buf.extend_from_slice(data);
    }

    /// `write_raw(head)` then `write_raw(data)` with one capacity check.
    #[inline(always)]
    fn write_head_data<const H: usize>(&mut self, head: &[u8; H], data: &[u8]) {
        if self.needs_frame {
            self.open_frame();
        }
        self.buf.reserve(H + data.len());
        self.buf.extend_from_slice(head);
        self.buf.extend_from_slice(data);
    }

    /// Write a run of scalars without an opcode boundary check per scalar: `fill` receives
    /// scratch space for `k` scalars of at most [`SCALAR_MAX`] bytes each, where `k <= max` is
    /// chosen so that none of the boundaries the run passes could commit a frame or flush, and
    /// returns how many scalars it wrote and their length in bytes. Returns that count (0 when
    /// a boundary is due: the caller then writes the next scalar the ordinary way).
    ///
    /// The bytes are those of [`opcode_boundary`](Self::opcode_boundary) followed by the
    /// scalar's own writer, for each scalar in turn, as long as `fill` spells each scalar as that
    /// writer does (it must use [`binfloat_bytes`] and [`binint_bytes`] or [`binint_word`]).
    #[inline(always)]
    pub fn scalar_run(
        &mut self,
        max: usize,
        fill: impl FnOnce(&mut [u8], usize) -> (usize, usize),
    ) -> usize {
        if self.needs_frame {
            // The first scalar's boundary check happens before its frame opens, when there is
            // nothing to commit; opening the frame first writes the same bytes.
            self.open_frame();
        }
        let start = self.buf.len();
        let Some(room) = self.boundary_at.checked_sub(start) else {
            return 0;
        };
        // Scalar `i` starts at most `SCALAR_MAX * i` bytes after `start`: its boundary check is a
        // no-op while that is below `boundary_at`.
        let k = max.min(room.div_ceil(SCALAR_MAX));
        if k == 0 {
            return 0;
        }
        self.buf.resize(start + k * SCALAR_MAX, 0);
        let (n, bytes) = fill(&mut self.buf[start..], k);
        self.buf.truncate(start + bytes);
        n
    }

    #[cold]
    fn open_frame(&mut self) {
        self.frame_start = Some(self.buf.len());
        self.buf.extend_from_slice(&[0xFE; FRAME_HEADER_SIZE]);
        self.refresh_boundary();
    }

    /// Close the open frame, if any: fill in its header, or remove the header if the frame is
    /// shorter than [`FRAME_SIZE_MIN`] (`_Pickler_CommitFrame`).
    pub fn commit_frame(&mut self) {
        let Some(start) = self.frame_start.take() else {
            return;
        };
        self.refresh_boundary();
        let frame_len = self.buf.len() - start - FRAME_HEADER_SIZE;
        if frame_len >= FRAME_SIZE_MIN {
            self.buf[start] = Opcode::FRAME.byte();
            self.buf[start + 1..start + FRAME_HEADER_SIZE]
                .copy_from_slice(&(frame_len as u64).to_le_bytes());
        } else {
            self.buf.drain(start..start + FRAME_HEADER_SIZE);
        }
    }

    /// Call where C's `save()` begins: commits the frame if it reached [`FRAME_SIZE_TARGET`]
    /// and, with a sink, flushes it (`_Pickler_OpcodeBoundary`).
    #[inline(always)]
    pub fn opcode_boundary(&mut self) -> Result<()> {
        if self.buf.len() < self.boundary_at {
            return Ok(());
        }
        self.opcode_boundary_slow()
    }

    #[inline(never)]
    fn opcode_boundary_slow(&mut self) -> Result<()> {
        match self.frame_start {
            Some(start)
                if self.framing
                    && self.buf.len() - start - FRAME_HEADER_SIZE >= FRAME_SIZE_TARGET =>
            {
                self.commit_frame();
                if self.sink.is_some() {
                    self.flush()?;
                }
            }
            // Unframed protocols: C keeps everything in memory until the end; flushing earlier
            // produces the same bytes with bounded memory.
            None if !self.framing && self.sink.is_some() && self.buf.len() >= UNFRAMED_FLUSH => {
                self.flush()?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Commit the open frame and write everything buffered to the sink (no-op without one).
    pub fn flush(&mut self) -> Result<()> {
        self.commit_frame();
        if let Some(sink) = self.sink.as_mut() {
            sink.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Write an opcode header and its payload (`_Pickler_write_bytes`): a payload of
    /// [`FRAME_SIZE_TARGET`] bytes or more is written outside any frame (the current frame is
    /// committed first) and, with a sink, straight to the sink without copying.
    pub fn write_bytes(&mut self, header: &[u8], payload: &[u8]) -> Result<()> {
        if payload.len() >= FRAME_SIZE_TARGET {
            self.write_large_header(header);
            if self.sink.is_some() {
                self.flush()?;
                if let Some(sink) = self.sink.as_mut() {
                    sink.write_all(payload)?;
                }
            } else {
                self.buf.extend_from_slice(payload);
            }
        } else {
            self.write_raw(header);
            self.write_raw(payload);
        }
        Ok(())
    }

    /// The first half of [`write_bytes`](Self::write_bytes) for a payload of
    /// [`FRAME_SIZE_TARGET`] bytes or more that the caller writes itself: commits the frame and
    /// writes `header` unframed. The caller must then append the payload, e.g. with
    /// [`flush`](Self::flush) followed by a write to its own sink (the Python `Pickler` passes
    /// the original `bytes` object to `file.write`), or with [`write_unframed`](Self::write_unframed).
    pub fn write_large_header(&mut self, header: &[u8]) {
        self.commit_frame();
        self.buf.extend_from_slice(header);
    }

    /// Append bytes outside any frame (the payload after [`write_large_header`](Self::write_large_header)).
    pub fn write_unframed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    // ---------------------------------------------------------------------------------------
    // Opcodes without arguments, memo, marks
    // ---------------------------------------------------------------------------------------

    /// Write one opcode that takes no argument (`MARK`, `APPENDS`, `REDUCE`, `BUILD`, ...).
    #[inline(always)]
    pub fn opcode(&mut self, op: Opcode) {
        self.write_raw(&[op.byte()]);
    }

    /// `MARK`.
    #[inline(always)]
    pub fn mark(&mut self) {
        self.opcode(Opcode::MARK);
    }

    /// Store the top of the stack at memo index `idx` (`memo_put`): `MEMOIZE` at protocol 4+
    /// (which stores at the number of entries so far: `idx` must be that number), `BINPUT` /
    /// `LONG_BINPUT` at 1–3, `PUT idx\n` at 0.
    #[inline(always)]
    pub fn put(&mut self, idx: u64) -> Result<()> {
        if self.proto >= 4 {
            self.opcode(Opcode::MEMOIZE);
        } else if idx < 256 && self.proto > 0 {
            self.write_raw(&[Opcode::BINPUT.byte(), idx as u8]);
        } else if idx <= u32::MAX as u64 && self.proto > 0 {
            let b = (idx as u32).to_le_bytes();
            self.write_raw(&[Opcode::LONG_BINPUT.byte(), b[0], b[1], b[2], b[3]]);
        } else {
            return self.put_slow(idx);
        }
        Ok(())
    }

    #[cold]
    fn put_slow(&mut self, idx: u64) -> Result<()> {
        if self.proto == 0 {
            self.write_raw(format!("p{idx}\n").as_bytes());
        } else if let Ok(i) = u32::try_from(idx) {
            let mut b = [Opcode::LONG_BINPUT.byte(), 0, 0, 0, 0];
            b[1..].copy_from_slice(&i.to_le_bytes());
            self.write_raw(&b);
        } else {
            return Err(unsupported("memo id too large for LONG_BINPUT"));
        }
        Ok(())
    }

    /// Push memo entry `idx` (`memo_get`): `BINGET` / `LONG_BINGET`, or `GET idx\n` at 0.
    #[inline(always)]
    pub fn get(&mut self, idx: u64) -> Result<()> {
        if idx < 256 && self.proto > 0 {
            self.write_raw(&[Opcode::BINGET.byte(), idx as u8]);
            Ok(())
        } else if idx <= u32::MAX as u64 && self.proto > 0 {
            let b = (idx as u32).to_le_bytes();
            self.write_raw(&[Opcode::LONG_BINGET.byte(), b[0], b[1], b[2], b[3]]);
            Ok(())
        } else {
            self.get_slow(idx)
        }
    }

    #[cold]
    fn get_slow(&mut self, idx: u64) -> Result<()> {
        if self.proto == 0 {
            self.write_raw(format!("g{idx}\n").as_bytes());
        } else if let Ok(i) = u32::try_from(idx) {
            let mut b = [Opcode::LONG_BINGET.byte(), 0, 0, 0, 0];
            b[1..].copy_from_slice(&i.to_le_bytes());
            self.write_raw(&b);
        } else {
            return Err(unsupported("memo id too large for LONG_BINGET"));
        }
        Ok(())
    }

    // ---------------------------------------------------------------------------------------
    // Scalars
    // ---------------------------------------------------------------------------------------

    /// `None`.
    #[inline(always)]
    pub fn none(&mut self) {
        self.opcode(Opcode::NONE);
    }

    /// A bool: `NEWTRUE`/`NEWFALSE` at protocol 2+, `I01\n`/`I00\n` below (`save_bool`).
    #[inline(always)]
    pub fn bool(&mut self, v: bool) {
        if self.proto >= 2 {
            self.opcode(if v { Opcode::NEWTRUE } else { Opcode::NEWFALSE });
        } else {
            self.write_raw(if v { b"I01\n" } else { b"I00\n" });
        }
    }

    /// An int (`save_long`): `BININT1`/`BININT2`/`BININT` for 32-bit values at protocol 1+,
    /// `I<n>\n` at 0; larger values as `LONG1` at 2+ and as `L<n>L\n` below.
    #[inline(always)]
    pub fn int(&mut self, v: i64) {
        if let Ok(v32) = i32::try_from(v) {
            if self.proto > 0 {
                let (b, n) = binint_bytes(v32);
                self.write_raw(&b[..n]);
            } else {
                self.int_text(v);
            }
        } else {
            self.int_beyond_32_bits(v);
        }
    }

    /// `LONG1` with the minimal two's complement at protocol 2+, `L<n>L\n` below.
    #[cold]
    fn int_beyond_32_bits(&mut self, v: i64) {
        if self.proto >= 2 {
            let bytes = encode_long_i64(v);
            self.write_raw(&[Opcode::LONG1.byte(), bytes.len() as u8]);
            self.write_raw(&bytes);
        } else {
            self.write_raw(format!("L{v}L\n").as_bytes());
        }
    }

    /// `INT` as decimal text (protocol 0).
    #[cold]
    fn int_text(&mut self, v: i64) {
        self.write_raw(format!("I{v}\n").as_bytes());
    }

    /// An int of any size: as [`int`](Self::int) when it fits in 64 bits, else `LONG1`/`LONG4`
    /// with the minimal two's-complement bytes at protocol 2+ and `L<n>L\n` below.
    pub fn big_int(&mut self, v: &BigInt) -> Result<()> {
        if let Ok(small) = i64::try_from(v) {
            self.int(small);
            return Ok(());
        }
        if self.proto >= 2 {
            let bytes = encode_long(v);
            if bytes.len() < 256 {
                self.write_raw(&[Opcode::LONG1.byte(), bytes.len() as u8]);
            } else if bytes.len() <= 0x7fff_ffff {
                let mut h = [Opcode::LONG4.byte(), 0, 0, 0, 0];
                h[1..].copy_from_slice(&(bytes.len() as u32).to_le_bytes());
                self.write_raw(&h);
            } else {
                return Err(unsupported("int too large to pickle"));
            }
            self.write_raw(&bytes);
        } else {
            self.write_raw(b"L");
            self.write_raw(v.to_string().as_bytes());
            self.write_raw(b"L\n");
        }
        Ok(())
    }

    /// A float: `BINFLOAT` at protocol 1+, `F<repr>\n` at 0 (`save_float`).
    #[inline(always)]
    pub fn float(&mut self, v: f64) {
        if self.proto > 0 {
            self.write_raw(&binfloat_bytes(v));
        } else {
            self.float_text(v);
        }
    }

    /// `FLOAT` with Python's `repr` of the value (protocol 0).
    #[cold]
    fn float_text(&mut self, v: f64) {
        self.write_raw(b"F");
        self.write_raw(crate::pyrepr::float_repr(v).as_bytes());
        self.write_raw(b"\n");
    }

    /// A `str` (`save_unicode` without the memo): `SHORT_BINUNICODE` (protocol 4+, up to 255
    /// bytes), `BINUNICODE`, `BINUNICODE8` (protocol 4+, over 4 GiB) of its UTF-8 bytes
    /// (surrogates passed through), or at protocol 0 `UNICODE` in CPython's raw-unicode-escape
    /// variant that also escapes `\`, NUL, `\n`, `\r` and `\x1a`.
    #[inline]
    pub fn str(&mut self, s: &PyString) -> Result<()> {
        let data = s.as_bytes();
        let n = data.len();
        if n <= 0xff && self.proto >= 4 {
            self.write_head_data(&[Opcode::SHORT_BINUNICODE.byte(), n as u8], data);
            return Ok(());
        }
        if n < FRAME_SIZE_TARGET && self.proto >= 1 {
            let len = (n as u32).to_le_bytes();
            let head = [Opcode::BINUNICODE.byte(), len[0], len[1], len[2], len[3]];
            self.write_head_data(&head, data);
            return Ok(());
        }
        self.str_slow(s)
    }

    /// [`str`](Self::str) then [`put`](Self::put)`(idx)` with one capacity check, for the
    /// common case of a binary protocol and a text shorter than a frame; returns false, having
    /// written nothing, otherwise (the caller then writes them the ordinary way).
    #[inline(always)]
    pub fn str_put(&mut self, s: &PyString, idx: u32) -> bool {
        let data = s.as_bytes();
        if self.proto == 0 || data.len() >= FRAME_SIZE_TARGET {
            return false;
        }
        self.write_str_put(data, idx);
        true
    }

    /// `save()` of a run of `str`s that are not in the memo, at a binary protocol, opcode
    /// boundaries included: for each, the opcode, the text, then the memo opcode storing it at
    /// the next index, from `idx` on (the number of memo entries so far). `item(k)` gives the
    /// `k`-th text of the run, or `None` where the run ends. The run also stops before a text of
    /// a frame or more, at an opcode boundary with work to do, and at memo index `u32::MAX`;
    /// returns how many texts were written (0 at protocol 0): the caller writes the next value
    /// the ordinary way.
    ///
    /// The output vector is held in a local for the run, so that its length and capacity stay
    /// in registers instead of being stored and reloaded around every write through `self`.
    #[inline(always)]
    pub(crate) fn fresh_str_run<'v>(
        &mut self,
        mut idx: u32,
        item: impl Fn(usize) -> Option<&'v [u8]>,
    ) -> usize {
        if self.proto == 0 || self.buf.len() >= self.boundary_at {
            return 0;
        }
        if self.needs_frame {
            // As in `scalar_run`: the first text's boundary check comes before its frame opens,
            // when there is nothing to commit; opening the frame first writes the same bytes.
            self.open_frame();
        }
        let (limit, short) = (self.boundary_at, self.proto >= 4);
        let mut buf = std::mem::take(&mut self.buf);
        let mut k = 0;
        while buf.len() < limit && idx != u32::MAX {
            let Some(data) = item(k) else {
                break;
            };
            let n = data.len();
            if n >= FRAME_SIZE_TARGET {
                break;
            }
            push_str_put(&mut buf, data, short, idx);
            idx += 1;
            k += 1;
        }
        self.buf = buf;
        k
    }

    /// The bytes of [`str_put`](Self::str_put), whose checks the caller made.
    #[inline(always)]
    fn write_str_put(&mut self, data: &[u8], idx: u32) {
        if self.needs_frame {
            self.open_frame();
        }
        push_str_put(&mut self.buf, data, self.proto >= 4, idx);
    }

    /// A `str` given as its UTF-8 bytes (lone surrogates encoded as `surrogatepass` does) at a
    /// binary protocol: the bytes [`str`](Self::str) writes for it. Protocol 0 spells strings
    /// as text, which needs the [`PyString`]: this returns an error there.
    #[inline]
    pub fn unicode_utf8(&mut self, data: &[u8]) -> Result<()> {
        let n = data.len();
        if n <= 0xff && self.proto >= 4 {
            self.write_head_data(&[Opcode::SHORT_BINUNICODE.byte(), n as u8], data);
            return Ok(());
        }
        if n < FRAME_SIZE_TARGET && self.proto >= 1 {
            let len = (n as u32).to_le_bytes();
            let head = [Opcode::BINUNICODE.byte(), len[0], len[1], len[2], len[3]];
            self.write_head_data(&head, data);
            return Ok(());
        }
        self.unicode_utf8_slow(data)
    }

    #[inline(never)]
    fn unicode_utf8_slow(&mut self, data: &[u8]) -> Result<()> {
        if self.proto == 0 {
            return Err(unsupported(
                "a string given as UTF-8 needs a binary protocol (1+)",
            ));
        }
        let Some((header, hlen)) = unicode_header(self.proto, data.len()) else {
            return Err(unsupported(
                "serializing a string larger than 4 GiB requires pickle protocol 4 or higher",
            ));
        };
        self.write_bytes(&header[..hlen], data)
    }

    #[inline(never)]
    fn str_slow(&mut self, s: &PyString) -> Result<()> {
        if self.proto == 0 {
            let mut line = Vec::with_capacity(s.as_bytes().len() + 2);
            line.push(Opcode::UNICODE.byte());
            raw_unicode_escape(s, &mut line);
            line.push(b'\n');
            self.write_raw(&line);
            return Ok(());
        }
        let data = s.as_bytes();
        let Some((header, hlen)) = unicode_header(self.proto, data.len()) else {
            return Err(unsupported(
                "serializing a string larger than 4 GiB requires pickle protocol 4 or higher",
            ));
        };
        self.write_bytes(&header[..hlen], data)
    }

    /// A `bytes` object's opcode (`_save_bytes_data` without the memo): `SHORT_BINBYTES`,
    /// `BINBYTES` or `BINBYTES8` (4+). Protocols below 3 have no bytes opcode: the caller must
    /// fall back to a reduction (`_codecs.encode(text, 'latin1')`), this returns an error.
    pub fn bytes(&mut self, data: &[u8]) -> Result<()> {
        if self.proto < 3 {
            return Err(unsupported(format!(
                "bytes have no opcode at protocol {}",
                self.proto
            )));
        }
        let size = data.len();
        let mut header = [0u8; 9];
        let hlen = if size <= 0xff {
            header[0] = Opcode::SHORT_BINBYTES.byte();
            header[1] = size as u8;
            2
        } else if let Ok(n) = u32::try_from(size) {
            header[0] = Opcode::BINBYTES.byte();
            header[1..5].copy_from_slice(&n.to_le_bytes());
            5
        } else if self.proto >= 4 {
            header[0] = Opcode::BINBYTES8.byte();
            header[1..9].copy_from_slice(&(size as u64).to_le_bytes());
            9
        } else {
            return Err(unsupported(
                "serializing a bytes object larger than 4 GiB requires pickle protocol 4 or higher",
            ));
        };
        self.write_bytes(&header[..hlen], data)
    }

    /// `BYTEARRAY8` (protocol 5 only; below, the caller reduces to `bytearray(bytes)`).
    pub fn bytearray8(&mut self, data: &[u8]) -> Result<()> {
        if self.proto < 5 {
            return Err(unsupported(format!(
                "bytearray has no opcode at protocol {}",
                self.proto
            )));
        }
        let mut header = [0u8; 9];
        header[0] = Opcode::BYTEARRAY8.byte();
        header[1..].copy_from_slice(&(data.len() as u64).to_le_bytes());
        self.write_bytes(&header, data)
    }

    /// A Python 2 `str`: `STRING` with a Python 2 `repr()` at protocol 0, `SHORT_BINSTRING` /
    /// `BINSTRING` above.
    pub fn legacy_str(&mut self, data: &[u8]) -> Result<()> {
        if self.proto == 0 {
            let mut line = Vec::with_capacity(data.len() + 4);
            line.push(Opcode::STRING.byte());
            py2_str_repr(data, &mut line);
            line.push(b'\n');
            self.write_raw(&line);
            return Ok(());
        }
        if data.len() < 256 {
            self.write_bytes(&[Opcode::SHORT_BINSTRING.byte(), data.len() as u8], data)
        } else if let Ok(n) = i32::try_from(data.len()) {
            let mut h = [Opcode::BINSTRING.byte(), 0, 0, 0, 0];
            h[1..].copy_from_slice(&n.to_le_bytes());
            self.write_bytes(&h, data)
        } else {
            Err(unsupported(
                "a Python 2 str longer than 2 GiB cannot be pickled",
            ))
        }
    }

    // ---------------------------------------------------------------------------------------
    // Containers
    // ---------------------------------------------------------------------------------------

    /// An empty tuple: `EMPTY_TUPLE`, or `MARK TUPLE` at protocol 0.
    pub fn empty_tuple(&mut self) {
        if self.proto > 0 {
            self.opcode(Opcode::EMPTY_TUPLE);
        } else {
            self.write_raw(&[Opcode::MARK.byte(), Opcode::TUPLE.byte()]);
        }
    }

    /// An empty list: `EMPTY_LIST`, or `MARK LIST` at protocol 0.
    #[inline(always)]
    pub fn empty_list(&mut self) {
        if self.proto > 0 {
            self.opcode(Opcode::EMPTY_LIST);
        } else {
            self.write_raw(&[Opcode::MARK.byte(), Opcode::LIST.byte()]);
        }
    }

    /// An empty dict: `EMPTY_DICT`, or `MARK DICT` at protocol 0.
    #[inline(always)]
    pub fn empty_dict(&mut self) {
        if self.proto > 0 {
            self.opcode(Opcode::EMPTY_DICT);
        } else {
            self.write_raw(&[Opcode::MARK.byte(), Opcode::DICT.byte()]);
        }
    }

    /// Whether a non-empty tuple of `len` items is written as `MARK items TUPLE` (otherwise as
    /// `items TUPLE1/2/3`, at protocol 2+ for up to 3 items).
    #[inline]
    pub fn tuple_uses_mark(&self, len: usize) -> bool {
        !(len <= 3 && self.proto >= 2)
    }

    /// Start a non-empty tuple: `MARK` if [`tuple_uses_mark`](Self::tuple_uses_mark).
    pub fn tuple_start(&mut self, len: usize) {
        if self.tuple_uses_mark(len) {
            self.mark();
        }
    }

    /// End a non-empty tuple whose items were written: `TUPLE1/2/3` or `TUPLE`.
    pub fn tuple_end(&mut self, len: usize) {
        let op = match (len, self.tuple_uses_mark(len)) {
            (1, false) => Opcode::TUPLE1,
            (2, false) => Opcode::TUPLE2,
            (3, false) => Opcode::TUPLE3,
            _ => Opcode::TUPLE,
        };
        self.opcode(op);
    }

    /// Undo a tuple whose items turned out to contain the tuple itself (`save_tuple`'s
    /// recursive case): pop the items (and the `MARK`: `POP_MARK` when binary, one more `POP`
    /// at protocol 0). The caller then writes a `GET` of the tuple.
    pub fn tuple_pop_recursive(&mut self, len: usize) {
        if self.tuple_uses_mark(len) {
            if self.is_binary() {
                self.opcode(Opcode::POP_MARK);
            } else {
                for _ in 0..=len {
                    self.opcode(Opcode::POP);
                }
            }
        } else {
            for _ in 0..len {
                self.opcode(Opcode::POP);
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // Globals, persistence, extensions, buffers
    // ---------------------------------------------------------------------------------------

    /// `GLOBAL module\nname\n` (the text form; the caller chooses it below protocol 4 and has
    /// applied any `fix_imports` renaming, see [`python2_name`]).
    pub fn global(&mut self, module: &[u8], name: &[u8]) -> Result<()> {
        self.two_lines(Opcode::GLOBAL, module, name)
    }

    /// `INST module\nname\n`: build an instance from the items above the topmost `MARK`.
    pub fn inst(&mut self, module: &[u8], name: &[u8]) -> Result<()> {
        self.two_lines(Opcode::INST, module, name)
    }

    fn two_lines(&mut self, op: Opcode, module: &[u8], name: &[u8]) -> Result<()> {
        if module.contains(&b'\n') || name.contains(&b'\n') {
            return Err(unsupported(format!(
                "a module or name containing a newline cannot be written with {op}"
            )));
        }
        let mut line = Vec::with_capacity(module.len() + name.len() + 3);
        line.push(op.byte());
        line.extend_from_slice(module);
        line.push(b'\n');
        line.extend_from_slice(name);
        line.push(b'\n');
        self.write_raw(&line);
        Ok(())
    }

    /// `PERSID id\n`, protocol 0's persistent id (must be ASCII without a newline).
    pub fn persid(&mut self, pid: &[u8]) -> Result<()> {
        if !pid.is_ascii() || pid.contains(&b'\n') {
            return Err(unsupported(
                "persistent IDs in protocol 0 must be ASCII strings without a newline",
            ));
        }
        self.write_raw(b"P");
        self.write_raw(pid);
        self.write_raw(b"\n");
        Ok(())
    }

    /// `EXT1`/`EXT2`/`EXT4` for an extension-registry code in `1..=0x7fffffff` (protocol 2+).
    pub fn ext(&mut self, code: u32) -> Result<()> {
        if self.proto < 2 {
            return Err(unsupported(format!(
                "extension codes need protocol 2, not {}",
                self.proto
            )));
        }
        if code == 0 || code > 0x7fff_ffff {
            return Err(unsupported(format!(
                "extension code {code} is out of range"
            )));
        }
        let b = code.to_le_bytes();
        if code <= 0xff {
            self.write_raw(&[Opcode::EXT1.byte(), b[0]]);
        } else if code <= 0xffff {
            self.write_raw(&[Opcode::EXT2.byte(), b[0], b[1]]);
        } else {
            self.write_raw(&[Opcode::EXT4.byte(), b[0], b[1], b[2], b[3]]);
        }
        Ok(())
    }
}

// -------------------------------------------------------------------------------------------
// Batching
// -------------------------------------------------------------------------------------------

/// Which of CPython's batching loops to follow. They differ in small ways that show in the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BatchRule {
    /// `batch_list_exact` (a `list`, protocol 1+): one item alone uses `APPEND`; otherwise
    /// chunks of [`BATCH_SIZE`], each `MARK ... APPENDS`, even a last chunk of one item.
    ListExact,
    /// `batch_dict_exact` (a `dict`, protocol 1+): one pair alone uses `SETITEM`; otherwise
    /// marked chunks, plus an empty `MARK SETITEMS` when the length is a multiple of 1000.
    DictExact,
    /// `save_set` (protocol 4+): marked chunks only, plus an empty `MARK ADDITEMS` when the
    /// length is a multiple of 1000.
    SetExact,
    /// `batch_list`/`batch_dict` over an iterator (`__reduce__`'s list/dict items, protocol
    /// 1+): marked chunks, but a last chunk of one item uses `APPEND`/`SETITEM`.
    Iter,
    /// Protocol 0: every item on its own (`APPEND`/`SETITEM`).
    OneByOne,
}

impl BatchRule {
    /// The rule for a `list` at `protocol` (`save_list`).
    pub fn list(protocol: u8) -> BatchRule {
        if protocol == 0 {
            BatchRule::OneByOne
        } else {
            BatchRule::ListExact
        }
    }

    /// The rule for a `dict` at `protocol` (`save_dict`).
    pub fn dict(protocol: u8) -> BatchRule {
        if protocol == 0 {
            BatchRule::OneByOne
        } else {
            BatchRule::DictExact
        }
    }

    /// The rule for `__reduce__` list or dict items at `protocol` (`batch_list`/`batch_dict`).
    pub fn iter(protocol: u8) -> BatchRule {
        if protocol == 0 {
            BatchRule::OneByOne
        } else {
            BatchRule::Iter
        }
    }
}

/// One batch: items `start..start + len`, between `MARK` and the multi-item opcode when
/// `marked`, else followed by the single-item opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Batch {
    /// Index of the first item.
    pub start: usize,
    /// Number of items (0 only for the trailing empty batch of the dict/set rules).
    pub len: usize,
    /// `MARK items APPENDS` (true) or `item APPEND` (false).
    pub marked: bool,
}

/// How CPython splits `len` items into batches under `rule`; see [`BatchRule`].
///
/// ```
/// use brinery::encode::{batches, BatchRule};
/// let b: Vec<_> = batches(1000, BatchRule::DictExact).map(|b| (b.len, b.marked)).collect();
/// assert_eq!(b, [(1000, true), (0, true)]);
/// let b: Vec<_> = batches(1001, BatchRule::Iter).map(|b| (b.len, b.marked)).collect();
/// assert_eq!(b, [(1000, true), (1, false)]);
/// ```
pub fn batches(len: usize, rule: BatchRule) -> Batches {
    Batches {
        len,
        rule,
        pos: 0,
        done: len == 0,
    }
}

/// Iterator returned by [`batches`].
#[derive(Debug, Clone)]
pub struct Batches {
    len: usize,
    rule: BatchRule,
    pos: usize,
    done: bool,
}

impl Iterator for Batches {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.done {
            return None;
        }
        let remaining = self.len - self.pos;
        let start = self.pos;
        let batch = match self.rule {
            BatchRule::OneByOne => {
                self.done = remaining <= 1;
                Batch {
                    start,
                    len: 1,
                    marked: false,
                }
            }
            BatchRule::ListExact | BatchRule::DictExact if self.len == 1 => {
                self.done = true;
                Batch {
                    start,
                    len: 1,
                    marked: false,
                }
            }
            BatchRule::Iter if remaining == 1 => {
                self.done = true;
                Batch {
                    start,
                    len: 1,
                    marked: false,
                }
            }
            BatchRule::ListExact | BatchRule::Iter => {
                let n = remaining.min(BATCH_SIZE);
                self.done = remaining - n == 0;
                Batch {
                    start,
                    len: n,
                    marked: true,
                }
            }
            BatchRule::DictExact | BatchRule::SetExact => {
                let n = remaining.min(BATCH_SIZE);
                // `do { ... } while (i == BATCHSIZE)`: a full chunk is always followed by another.
                self.done = n < BATCH_SIZE;
                Batch {
                    start,
                    len: n,
                    marked: true,
                }
            }
        };
        self.pos += batch.len;
        Some(batch)
    }
}

// -------------------------------------------------------------------------------------------
// Scalar spellings shared by `Encoder` and fast paths that write runs of scalars
// -------------------------------------------------------------------------------------------

/// The most bytes a scalar written through [`Encoder::scalar_run`] may take.
pub const SCALAR_MAX: usize = 9;

/// `BININT1` / `BININT2` / `BININT` for `v` (protocol 1+), padded: the first `n` bytes count.
/// The bytes of [`binint_word`], as an array.
#[inline(always)]
pub fn binint_bytes(v: i32) -> ([u8; 5], usize) {
    let (word, n) = binint_word(v);
    let b = word.to_le_bytes();
    ([b[0], b[1], b[2], b[3], b[4]], n)
}

/// `BININT1` / `BININT2` / `BININT` for `v` (protocol 1+) as the low bytes of a little-endian
/// word, and how many count: the opcode, then `v`'s four bytes (the ones `BININT1` / `BININT2`
/// leave out are zero), as `save_long` in `_pickle.c` picks them.
///
/// Branch-free: the number of significant bytes of `v` (1 to 4, from its leading zeros) picks
/// the opcode and length out of a table, so a column of ints of mixed sizes costs the same per
/// int as one of a single size.
#[inline(always)]
pub fn binint_word(v: i32) -> (u64, usize) {
    /// `(opcode, length)` by significant bytes, as `opcode | length << 8`; index 0 is unused
    /// (`u | 1` has at least one), indices 5 to 7 only pad the table to a power of two.
    const BY_SIZE: [u16; 8] = {
        let k = Opcode::BININT1.byte() as u16 | 2 << 8;
        let m = Opcode::BININT2.byte() as u16 | 3 << 8;
        let j = Opcode::BININT.byte() as u16 | 5 << 8;
        [k, k, m, j, j, j, j, j]
    };
    let u = v as u32;
    let size = (39 - (u | 1).leading_zeros()) >> 3;
    let entry = BY_SIZE[(size & 7) as usize];
    (
        (entry & 0xff) as u64 | (u as u64) << 8,
        (entry >> 8) as usize,
    )
}

/// `BINFLOAT` for `v` (protocol 1+).
#[inline(always)]
pub fn binfloat_bytes(v: f64) -> [u8; 9] {
    let f = v.to_be_bytes();
    [
        Opcode::BINFLOAT.byte(),
        f[0],
        f[1],
        f[2],
        f[3],
        f[4],
        f[5],
        f[6],
        f[7],
    ]
}

// -------------------------------------------------------------------------------------------
// Python 2 names (`fix_imports`)
// -------------------------------------------------------------------------------------------

/// The name CPython's pickler writes at protocols 0–2 with `fix_imports` for the Python 3
/// global `module.name` (`_compat_pickle.REVERSE_NAME_MAPPING`, then `REVERSE_IMPORT_MAPPING`
/// for the module), or `None` when it is written unchanged.
pub fn python2_name(module: &str, name: &str) -> Option<(&'static str, Option<&'static str>)> {
    if let Ok(i) = compat::REVERSE_NAME_MAPPING.binary_search_by(|(k, _)| k.cmp(&(module, name))) {
        let (m, n) = compat::REVERSE_NAME_MAPPING[i].1;
        return Some((m, Some(n)));
    }
    compat::REVERSE_IMPORT_MAPPING
        .binary_search_by(|(k, _)| k.cmp(&module))
        .ok()
        .map(|i| (compat::REVERSE_IMPORT_MAPPING[i].1, None))
}

/// The Python 3 name CPython's unpickler looks up for `module.name` found in a protocol 0–2
/// stream with `fix_imports` (`_compat_pickle.NAME_MAPPING`, then `IMPORT_MAPPING`), or `None`
/// when it is used unchanged.
pub fn python3_name(module: &str, name: &str) -> Option<(&'static str, Option<&'static str>)> {
    if let Ok(i) = compat::NAME_MAPPING.binary_search_by(|(k, _)| k.cmp(&(module, name))) {
        let (m, n) = compat::NAME_MAPPING[i].1;
        return Some((m, Some(n)));
    }
    compat::IMPORT_MAPPING
        .binary_search_by(|(k, _)| k.cmp(&module))
        .ok()
        .map(|i| (compat::IMPORT_MAPPING[i].1, None))
}

// -------------------------------------------------------------------------------------------
// Helpers
// -------------------------------------------------------------------------------------------

/// Minimal little-endian two's complement of a non-zero `i64` outside the 32-bit range, as
/// `save_long` computes it.
fn encode_long_i64(v: i64) -> Vec<u8> {
    let mut bytes = v.to_le_bytes().to_vec();
    trim_twos_complement(&mut bytes);
    bytes
}

/// `save_long`'s bytes for a big int: empty for 0, else minimal two's complement.
fn encode_long(v: &BigInt) -> Vec<u8> {
    if v.sign() == Sign::NoSign {
        return Vec::new();
    }
    let mut bytes = v.to_signed_bytes_le();
    trim_twos_complement(&mut bytes);
    bytes
}

fn trim_twos_complement(bytes: &mut Vec<u8>) {
    while bytes.len() > 1 {
        let last = bytes[bytes.len() - 1];
        let next_sign = bytes[bytes.len() - 2] & 0x80;
        if (last == 0 && next_sign == 0) || (last == 0xff && next_sign != 0) {
            bytes.pop();
        } else {
            break;
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `_pickle.c`'s `raw_unicode_escape`: `\Uxxxxxxxx` above U+FFFF, `\uxxxx` for U+0100..U+FFFF
/// and for `\`, NUL, `\n`, `\r`, `\x1a`; other Latin-1 characters as their byte.
pub fn raw_unicode_escape(s: &PyString, out: &mut Vec<u8>) {
    if s.is_utf8()
        && s.as_bytes()
            .iter()
            .all(|&b| b.is_ascii() && !needs_escape(b))
    {
        out.extend_from_slice(s.as_bytes());
        return;
    }
    for ch in s.code_points() {
        if ch >= 0x10000 {
            out.extend_from_slice(b"\\U");
            for shift in (0..8).rev() {
                out.push(HEX[((ch >> (shift * 4)) & 0xf) as usize]);
            }
        } else if ch >= 256 || needs_escape(ch as u8) {
            out.extend_from_slice(b"\\u");
            for shift in (0..4).rev() {
                out.push(HEX[((ch >> (shift * 4)) & 0xf) as usize]);
            }
        } else {
            out.push(ch as u8);
        }
    }
}

#[inline]
fn needs_escape(b: u8) -> bool {
    matches!(b, b'\\' | 0 | b'\n' | b'\r' | 0x1a)
}

/// Python 2's `repr(str)`, which protocol 0's `STRING` carries.
fn py2_str_repr(data: &[u8], out: &mut Vec<u8>) {
    let quote = if data.contains(&b'\'') && !data.contains(&b'"') {
        b'"'
    } else {
        b'\''
    };
    out.push(quote);
    for &b in data {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ if b == quote => {
                out.push(b'\\');
                out.push(b);
            }
            0x20..=0x7e => out.push(b),
            _ => {
                out.extend_from_slice(b"\\x");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 0xf) as usize]);
            }
        }
    }
    out.push(quote);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(proto: u8, f: impl FnOnce(&mut Encoder<'static>)) -> Vec<u8> {
        let mut e = Encoder::new(proto).unwrap();
        e.start();
        f(&mut e);
        e.finish().unwrap()
    }

    #[test]
    fn binint_spellings_follow_save_long() {
        // Every size boundary, both sides, and the signs: the table is indexed by the count of
        // significant bytes, so an off-by-one shows at a power of 256.
        let mut values = vec![0, 1, i32::MAX, i32::MIN, -1];
        for shift in 1..32 {
            let p = 1i64 << shift;
            for v in [p - 1, p, p + 1, -p - 1, -p, -p + 1] {
                values.extend(i32::try_from(v));
            }
        }
        values.extend((-70_000..70_000).step_by(7));
        for v in values {
            // `save_long`'s choice, spelled out: one byte if it fits unsigned, two if it fits
            // unsigned, else the four bytes of the signed int.
            let le = v.to_le_bytes();
            let want: &[u8] = match v {
                0..=0xff => &[b'K', le[0]],
                0x100..=0xffff => &[b'M', le[0], le[1]],
                _ => &[b'J', le[0], le[1], le[2], le[3]],
            };
            let (word, len) = binint_word(v);
            assert_eq!(&word.to_le_bytes()[..len], want, "{v}");
            assert_eq!(
                word >> (8 * len),
                0,
                "{v}: bytes past the spelling must be zero"
            );
            let (bytes, n) = binint_bytes(v);
            assert_eq!(&bytes[..n], want, "{v}");
        }
    }

    #[test]
    fn ints_follow_save_long() {
        assert_eq!(enc(2, |e| e.int(0)), b"\x80\x02K\x00.");
        assert_eq!(enc(2, |e| e.int(255)), b"\x80\x02K\xff.");
        assert_eq!(enc(2, |e| e.int(256)), b"\x80\x02M\x00\x01.");
        assert_eq!(enc(2, |e| e.int(-1)), b"\x80\x02J\xff\xff\xff\xff.");
        assert_eq!(
            enc(2, |e| e.int(1 << 31)),
            b"\x80\x02\x8a\x05\x00\x00\x00\x80\x00."
        );
        assert_eq!(
            enc(2, |e| e.int(i64::MIN)),
            b"\x80\x02\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x80."
        );
        assert_eq!(
            enc(2, |e| e.int(-(1 << 31) - 1)),
            b"\x80\x02\x8a\x05\xff\xff\xff\x7f\xff."
        );
        assert_eq!(enc(0, |e| e.int(-5)), b"I-5\n.");
        assert_eq!(enc(1, |e| e.int(1 << 40)), b"L1099511627776L\n.");
        let big = BigInt::from(1u128 << 64);
        assert_eq!(
            enc(2, |e| e.big_int(&big).unwrap()),
            b"\x80\x02\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01."
        );
        let neg = -BigInt::from(1u128 << 71);
        assert_eq!(
            enc(2, |e| e.big_int(&neg).unwrap()),
            b"\x80\x02\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x80."
        );
        assert_eq!(
            enc(0, |e| e.big_int(&big).unwrap()),
            b"L18446744073709551616L\n."
        );
    }

    #[test]
    fn scalars_by_protocol() {
        assert_eq!(enc(0, |e| e.bool(true)), b"I01\n.");
        assert_eq!(enc(2, |e| e.bool(false)), b"\x80\x02\x89.");
        assert_eq!(enc(0, |e| e.float(-0.0)), b"F-0.0\n.");
        assert_eq!(enc(0, |e| e.float(1e16)), b"F1e+16\n.");
        assert_eq!(enc(1, |e| e.float(1.5)), b"G?\xf8\x00\x00\x00\x00\x00\x00.");
        let s =
            PyString::from_code_points([0x61, 0x5c, 0x0a, 0xe9, 0x20ac, 0x1f600, 0xd800]).unwrap();
        assert_eq!(
            enc(0, |e| e.str(&s).unwrap()),
            b"Va\\u005c\\u000a\xe9\\u20ac\\U0001f600\\ud800\n."
        );
        assert_eq!(
            enc(3, |e| e.str(&"ab".into()).unwrap()),
            b"\x80\x03X\x02\x00\x00\x00ab."
        );
        assert_eq!(
            enc(4, |e| e.str(&"ab".into()).unwrap()),
            b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00\x8c\x02ab."
        );
        assert!(enc(2, |e| assert!(e.bytes(b"x").is_err())).ends_with(b"."));
        assert_eq!(
            enc(0, |e| e.legacy_str(b"it's\n").unwrap()),
            b"S\"it's\\n\"\n."
        );
        assert_eq!(
            enc(0, |e| e.legacy_str(b"a\xff'\"").unwrap()),
            b"S'a\\xff\\'\"'\n."
        );
    }

    #[test]
    fn memo_opcodes() {
        assert_eq!(enc(0, |e| e.put(7).unwrap()), b"p7\n.");
        assert_eq!(enc(1, |e| e.put(300).unwrap()), b"r,\x01\x00\x00.");
        assert_eq!(enc(3, |e| e.get(3).unwrap()), b"\x80\x03h\x03.");
        assert_eq!(enc(0, |e| e.get(3).unwrap()), b"g3\n.");
    }

    #[test]
    fn short_frames_drop_their_header_and_big_payloads_leave_the_frame() {
        // Only `N.` in the frame: 2 < FRAME_SIZE_MIN, no FRAME opcode.
        assert_eq!(enc(4, |e| e.none()), b"\x80\x04N.");
        let big = vec![b'x'; FRAME_SIZE_TARGET];
        let out = enc(4, |e| {
            e.mark();
            e.int(1);
            e.int(2);
            e.bytes(&big).unwrap();
            e.opcode(Opcode::TUPLE);
        });
        // The frame with `(K\x01K\x02` is committed before the unframed BINBYTES; `t.` stays
        // unframed (a 2-byte frame).
        let mut want =
            b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00(K\x01K\x02B\x00\x00\x01\x00".to_vec();
        want.extend_from_slice(&big);
        want.extend_from_slice(b"t.");
        assert_eq!(out, want);
    }

    #[test]
    fn sink_output_equals_buffer_output() {
        let write = |e: &mut Encoder<'_>| {
            for i in 0..40_000 {
                e.opcode_boundary().unwrap();
                e.int(i);
            }
            e.opcode_boundary().unwrap();
            e.bytes(&vec![7; 100_000]).unwrap();
            e.opcode_boundary().unwrap();
            e.str(&"tail".into()).unwrap();
        };
        let mut e = Encoder::new(4).unwrap();
        e.start();
        write(&mut e);
        let in_memory = e.finish().unwrap();
        let mut sink = Vec::new();
        let mut e = Encoder::with_sink(4, &mut sink).unwrap();
        e.start();
        write(&mut e);
        assert!(e.finish().unwrap().is_empty());
        assert_eq!(sink, in_memory);
        // Two frames of ints around the 64 KiB commit, the unframed bytes, then a last frame.
        assert_eq!(frame_count(&in_memory), 3);
    }

    fn frame_count(data: &[u8]) -> usize {
        // Frame count sanity: parse through the decoder.
        let mut d = crate::decode::Decoder::new(data);
        let mut frames = 0;
        while let Some(op) = d.next_op().unwrap() {
            if op.opcode == Opcode::FRAME {
                frames += 1;
            }
        }
        frames
    }

    #[test]
    fn batch_rules_match_cpython() {
        let v = |n, r| batches(n, r).map(|b| (b.len, b.marked)).collect::<Vec<_>>();
        assert_eq!(v(1, BatchRule::ListExact), [(1, false)]);
        assert_eq!(v(1001, BatchRule::ListExact), [(1000, true), (1, true)]);
        assert_eq!(v(1000, BatchRule::ListExact), [(1000, true)]);
        assert_eq!(v(1, BatchRule::DictExact), [(1, false)]);
        assert_eq!(
            v(2000, BatchRule::SetExact),
            [(1000, true), (1000, true), (0, true)]
        );
        assert_eq!(v(1, BatchRule::SetExact), [(1, true)]);
        assert_eq!(v(2, BatchRule::Iter), [(2, true)]);
        assert_eq!(v(1, BatchRule::Iter), [(1, false)]);
        assert_eq!(
            v(3, BatchRule::OneByOne),
            [(1, false), (1, false), (1, false)]
        );
        assert_eq!(v(0, BatchRule::SetExact), []);
    }

    #[test]
    fn compat_names() {
        assert_eq!(python2_name("builtins", "set"), Some(("__builtin__", None)));
        assert_eq!(
            python2_name("copyreg", "_reconstructor"),
            Some(("copy_reg", None))
        );
        assert_eq!(
            python2_name("builtins", "range"),
            Some(("__builtin__", Some("xrange")))
        );
        assert_eq!(python3_name("__builtin__", "set"), Some(("builtins", None)));
        assert_eq!(python2_name("collections", "OrderedDict"), None);
    }
}
