//! Splitting a pickle stream into operations.
//!
//! [`Decoder`] walks a byte slice one opcode at a time and yields an [`Op`]: the opcode, its byte
//! offset and its argument, borrowed from the input (no copies, no allocation). It knows only the
//! *layout* of the stream, not what the opcodes mean, so every consumer (the value machine, the
//! disassembler, the scanner) shares it and interprets the arguments its own way. Text arguments
//! (`INT`, `LONG`, `STRING`, `FLOAT`, ...) are returned as raw lines for the same reason: CPython's
//! `pickletools` and its unpickler parse them slightly differently, and each consumer must match
//! its own reference.
//!
//! Every length is checked against the bytes that are left *before* anything is sliced, so a lying
//! length field costs nothing.

use crate::error::{Error, ErrorKind, Result};
use crate::opcode::{ArgKind, Opcode};

/// The argument of one operation, borrowed from the input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arg<'a> {
    /// The opcode takes no argument.
    None,
    /// A fixed-width integer (`uint1`, `uint2`, `uint4`, `int4`, `uint8`).
    Int(i64),
    /// An eight-byte unsigned integer (`FRAME`'s length).
    U64(u64),
    /// The two's-complement little-endian bytes of a `LONG1`/`LONG4`.
    Long(&'a [u8]),
    /// The payload of a counted string, bytes, bytearray or UTF-8 text opcode.
    Bytes(&'a [u8]),
    /// A line of text, without its trailing `\n`.
    Line(&'a [u8]),
    /// Two lines of text (module and name), without their trailing `\n`s.
    TwoLines(&'a [u8], &'a [u8]),
    /// A big-endian double.
    Float(f64),
}

/// One decoded operation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Op<'a> {
    /// Byte offset of the opcode in the input.
    pub offset: usize,
    /// The opcode.
    pub opcode: Opcode,
    /// Its argument.
    pub arg: Arg<'a>,
}

impl Op<'_> {
    /// The argument as an integer, for the fixed-width integer kinds. Panics never; returns 0 for
    /// other kinds (callers match on the opcode's [`ArgKind`] first).
    #[inline]
    pub fn int(&self) -> i64 {
        match self.arg {
            Arg::Int(v) => v,
            Arg::U64(v) => v as i64,
            _ => 0,
        }
    }
}

/// Walks a pickle held in memory, one operation at a time.
///
/// ```
/// use brinery::decode::{Arg, Decoder};
/// use brinery::Opcode;
/// let ops: Vec<_> = Decoder::new(b"\x80\x02K\x2a.").collect::<Result<_, _>>().unwrap();
/// assert_eq!(ops[1].opcode, Opcode::BININT1);
/// assert_eq!(ops[1].offset, 2);
/// assert_eq!(ops[1].arg, Arg::Int(42));
/// ```
#[derive(Debug, Clone)]
pub struct Decoder<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    /// A decoder positioned at the start of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Decoder { data, pos: 0 }
    }

    /// A decoder positioned at `offset` in `data`.
    pub fn at(data: &'a [u8], offset: usize) -> Self {
        Decoder {
            data,
            pos: offset.min(data.len()),
        }
    }

    /// The offset of the next opcode.
    #[inline]
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// Move to `offset` (at most the end of the input): for a consumer that decoded a run of
    /// operations itself.
    #[inline]
    pub(crate) fn set_offset(&mut self, offset: usize) {
        self.pos = offset.min(self.data.len());
    }

    /// The whole input.
    #[inline]
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// The bytes not decoded yet.
    #[inline]
    pub fn remaining(&self) -> &'a [u8] {
        &self.data[self.pos..]
    }

    /// Decode the next operation, or `Ok(None)` at the end of the input.
    #[inline(always)]
    pub fn next_op(&mut self) -> Result<Option<Op<'a>>> {
        let offset = self.pos;
        let Some(&byte) = self.data.get(offset) else {
            return Ok(None);
        };
        let Some(opcode) = Opcode::from_byte(byte) else {
            return Err(Error::at(
                ErrorKind::UnknownOpcode(byte),
                offset as u64,
                None,
            ));
        };
        self.pos += 1;
        match self.arg(opcode) {
            Ok(arg) => Ok(Some(Op {
                offset,
                opcode,
                arg,
            })),
            Err(kind) => {
                self.pos = offset;
                Err(Error::at(kind, offset as u64, Some(opcode)))
            }
        }
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], ErrorKind> {
        let rest = &self.data[self.pos..];
        if rest.len() < n {
            return Err(ErrorKind::Truncated(
                "argument runs past the end of the input",
            ));
        }
        self.pos += n;
        Ok(&rest[..n])
    }

    #[inline]
    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], ErrorKind> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    #[inline]
    fn counted(&mut self, len: u64) -> Result<&'a [u8], ErrorKind> {
        let remaining = (self.data.len() - self.pos) as u64;
        if len > remaining {
            return Err(ErrorKind::LengthBeyondInput {
                claimed: len,
                remaining,
            });
        }
        self.take(len as usize)
    }

    fn line(&mut self) -> Result<&'a [u8], ErrorKind> {
        let rest = &self.data[self.pos..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(end) => {
                self.pos += end + 1;
                Ok(&rest[..end])
            }
            None => Err(ErrorKind::Truncated(
                "no newline at the end of a text argument",
            )),
        }
    }

    #[inline(always)]
    fn arg(&mut self, opcode: Opcode) -> Result<Arg<'a>, ErrorKind> {
        Ok(match opcode.arg_kind() {
            ArgKind::None => Arg::None,
            ArgKind::U1 => Arg::Int(self.fixed::<1>()?[0] as i64),
            ArgKind::U2 => Arg::Int(u16::from_le_bytes(self.fixed()?) as i64),
            ArgKind::U4 => Arg::Int(u32::from_le_bytes(self.fixed()?) as i64),
            ArgKind::I4 => Arg::Int(i32::from_le_bytes(self.fixed()?) as i64),
            ArgKind::U8 => Arg::U64(u64::from_le_bytes(self.fixed()?)),
            ArgKind::F8 => Arg::Float(f64::from_be_bytes(self.fixed()?)),
            ArgKind::Long1 => {
                let n = self.fixed::<1>()?[0];
                Arg::Long(self.counted(n as u64)?)
            }
            ArgKind::Long4 => {
                let n = i32::from_le_bytes(self.fixed()?);
                if n < 0 {
                    return Err(ErrorKind::BadArgument(format!(
                        "LONG pickle has negative byte count {n}"
                    )));
                }
                Arg::Long(self.counted(n as u64)?)
            }
            ArgKind::Counted1 => {
                let n = self.fixed::<1>()?[0];
                Arg::Bytes(self.counted(n as u64)?)
            }
            ArgKind::Counted4 => {
                let raw = self.fixed::<4>()?;
                let n = if opcode == Opcode::BINSTRING {
                    let n = i32::from_le_bytes(raw);
                    if n < 0 {
                        return Err(ErrorKind::BadArgument(format!(
                            "BINSTRING pickle has negative byte count {n}"
                        )));
                    }
                    n as u64
                } else {
                    u32::from_le_bytes(raw) as u64
                };
                Arg::Bytes(self.counted(n)?)
            }
            ArgKind::Counted8 => {
                let n = u64::from_le_bytes(self.fixed()?);
                Arg::Bytes(self.counted(n)?)
            }
            ArgKind::Line => Arg::Line(self.line()?),
            ArgKind::TwoLines => {
                let first = self.line()?;
                let second = self.line()?;
                Arg::TwoLines(first, second)
            }
        })
    }
}

impl<'a> Iterator for Decoder<'a> {
    type Item = Result<Op<'a>>;

    /// Yields operations until the end of the input or the first error (after which it yields
    /// nothing). Note that it does not stop at STOP: a stream may hold several pickles.
    fn next(&mut self) -> Option<Self::Item> {
        match self.next_op() {
            Ok(Some(op)) => Some(Ok(op)),
            Ok(None) => None,
            Err(e) => {
                self.pos = self.data.len();
                Some(Err(e))
            }
        }
    }
}

/// How much of a byte string the first pickle in it takes: see [`pickle_extent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent {
    /// The first pickle ends (after its STOP) at this offset.
    Complete(usize),
    /// The input ends inside the first pickle: at least this many bytes in all are needed to
    /// get past the operation it ends in (the exact end of that operation when its length is
    /// known, one more byte otherwise).
    Incomplete(usize),
    /// Not a pickle from this offset on (an unknown opcode, a negative length): only a full
    /// load or scan can say what is wrong.
    Invalid(usize),
}

/// Where the first pickle in `data` ends, by its opcodes' lengths alone (nothing is checked
/// but the framing of each operation): what a reader of a stream needs to take exactly one
/// pickle from a file, as `pickle.load` does, and leave the rest for the next read. Never
/// panics, runs in one pass, and allocates nothing.
///
/// ```
/// use brinery::decode::{pickle_extent, Extent};
/// assert_eq!(pickle_extent(b"\x80\x04N.\x80\x04N."), Extent::Complete(4));
/// assert_eq!(pickle_extent(b"\x80\x04\x8e\x10\x00\x00\x00\x00\x00\x00\x00ab"), Extent::Incomplete(27));
/// assert_eq!(pickle_extent(b"\x80\x04\xff."), Extent::Invalid(2));
/// ```
pub fn pickle_extent(data: &[u8]) -> Extent {
    use crate::opcode::ArgKind;
    let len = data.len();
    let mut pos = 0usize;
    // the end of a length-prefixed argument of `n` bytes after a `w`-byte length field, or the
    // total the caller must read first
    let counted = |pos: usize, w: usize, n: u64| -> Result<usize, Extent> {
        let end = (pos as u64).saturating_add(1 + w as u64).saturating_add(n);
        let end = usize::try_from(end).unwrap_or(usize::MAX);
        if end > len {
            Err(Extent::Incomplete(end))
        } else {
            Ok(end)
        }
    };
    let le = |at: usize, w: usize| -> Option<u64> {
        let bytes = data.get(at..at + w)?;
        let mut v = 0u64;
        for (i, &b) in bytes.iter().enumerate() {
            v |= u64::from(b) << (8 * i);
        }
        Some(v)
    };
    let line_end = |from: usize| -> Option<usize> {
        data.get(from..)?
            .iter()
            .position(|&b| b == b'\n')
            .map(|i| from + i + 1)
    };
    loop {
        let Some(&byte) = data.get(pos) else {
            return Extent::Incomplete(len + 1);
        };
        let Some(opcode) = Opcode::from_byte(byte) else {
            return Extent::Invalid(pos);
        };
        if opcode == Opcode::STOP {
            return Extent::Complete(pos + 1);
        }
        let fixed = |w: usize| -> Result<usize, Extent> {
            if pos + 1 + w > len {
                Err(Extent::Incomplete(pos + 1 + w))
            } else {
                Ok(pos + 1 + w)
            }
        };
        let next = match opcode.arg_kind() {
            ArgKind::None => Ok(pos + 1),
            ArgKind::U1 => fixed(1),
            ArgKind::U2 => fixed(2),
            ArgKind::U4 | ArgKind::I4 => fixed(4),
            ArgKind::U8 | ArgKind::F8 => fixed(8),
            ArgKind::Long1 | ArgKind::Counted1 => match le(pos + 1, 1) {
                Some(n) => counted(pos, 1, n),
                None => Err(Extent::Incomplete(pos + 2)),
            },
            ArgKind::Long4 | ArgKind::Counted4 => match le(pos + 1, 4) {
                // LONG4 and BINSTRING lengths are signed: a negative one is not a pickle
                Some(n)
                    if n > i32::MAX as u64
                        && matches!(opcode, Opcode::LONG4 | Opcode::BINSTRING) =>
                {
                    return Extent::Invalid(pos);
                }
                Some(n) => counted(pos, 4, n),
                None => Err(Extent::Incomplete(pos + 5)),
            },
            ArgKind::Counted8 => match le(pos + 1, 8) {
                Some(n) => counted(pos, 8, n),
                None => Err(Extent::Incomplete(pos + 9)),
            },
            ArgKind::Line => line_end(pos + 1).ok_or(Extent::Incomplete(len + 1)),
            ArgKind::TwoLines => line_end(pos + 1)
                .and_then(line_end)
                .ok_or(Extent::Incomplete(len + 1)),
        };
        match next {
            Ok(n) => pos = n,
            Err(e) => return e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(data: &[u8]) -> Vec<Op<'_>> {
        Decoder::new(data).collect::<Result<_>>().unwrap()
    }

    #[test]
    fn decodes_every_argument_kind() {
        let data = b"\x80\x05\x95\x05\x00\x00\x00\x00\x00\x00\x00J\xff\xff\xff\xffM\x01\x02\
            \x8a\x02\x00\x80Ifoo\n\x8c\x03abcG@\x00\x00\x00\x00\x00\x00\x00cmod\nname\nT\x01\x00\x00\x00z.";
        let ops = ops(data);
        let got: Vec<_> = ops.iter().map(|o| (o.opcode, o.arg)).collect();
        assert_eq!(
            got,
            vec![
                (Opcode::PROTO, Arg::Int(5)),
                (Opcode::FRAME, Arg::U64(5)),
                (Opcode::BININT, Arg::Int(-1)),
                (Opcode::BININT2, Arg::Int(0x0201)),
                (Opcode::LONG1, Arg::Long(&[0x00, 0x80])),
                (Opcode::INT, Arg::Line(b"foo")),
                (Opcode::SHORT_BINUNICODE, Arg::Bytes(b"abc")),
                (Opcode::BINFLOAT, Arg::Float(2.0)),
                (Opcode::GLOBAL, Arg::TwoLines(b"mod", b"name")),
                (Opcode::BINSTRING, Arg::Bytes(b"z")),
                (Opcode::STOP, Arg::None),
            ]
        );
        assert_eq!(ops[2].offset, 11);
    }

    #[test]
    fn lying_lengths_are_refused_without_allocating() {
        let err = Decoder::new(b"\x8e\xff\xff\xff\xff\xff\xff\xff\x7fab")
            .next_op()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "length 9223372036854775807 exceeds the 2 bytes left in the input at byte 0 (BINBYTES8)"
        );
        let err = Decoder::new(b"\x8b\x00\x00\x00\x80").next_op().unwrap_err();
        assert_eq!(
            err.to_string(),
            "LONG pickle has negative byte count -2147483648 at byte 0 (LONG4)"
        );
    }

    #[test]
    fn unknown_and_truncated() {
        let err = Decoder::new(b"K\x01\xff").nth(1).unwrap().unwrap_err();
        assert_eq!(err.to_string(), "invalid opcode byte 0xff at byte 2");
        let err = Decoder::new(b"Ifoo").next_op().unwrap_err();
        assert_eq!(
            err.to_string(),
            "pickle data was truncated: no newline at the end of a text argument at byte 0 (INT)"
        );
        let err = Decoder::new(b"J\x01\x02").next_op().unwrap_err();
        assert_eq!(
            err.to_string(),
            "pickle data was truncated: argument runs past the end of the input at byte 0 (BININT)"
        );
    }

    #[test]
    fn extent_of_the_first_pickle() {
        use super::{pickle_extent, Extent};
        // two pickles: the first ends after its STOP, whatever follows
        let two = [
            &b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00K\x01K\x02."[..],
            b"\x80\x02N.",
        ]
        .concat();
        assert_eq!(pickle_extent(&two), Extent::Complete(16));
        // a STOP byte inside an argument is not the end
        assert_eq!(pickle_extent(b"C\x01..N."), Extent::Complete(4));
        assert_eq!(pickle_extent(b"S'a.b'\np0\n.rest"), Extent::Complete(11));
        assert_eq!(pickle_extent(b"cos\nsystem\n."), Extent::Complete(12));
        // cut inside: how much is needed
        assert_eq!(pickle_extent(b""), Extent::Incomplete(1));
        assert_eq!(pickle_extent(b"\x80"), Extent::Incomplete(2));
        assert_eq!(pickle_extent(b"\x80\x04N"), Extent::Incomplete(4));
        assert_eq!(
            pickle_extent(b"\x8e\x00\x00\x00\x40"),
            Extent::Incomplete(9)
        );
        assert_eq!(
            pickle_extent(b"\x8e\x00\x00\x00\x40\x00\x00\x00\x00ab"),
            Extent::Incomplete(9 + (1 << 30))
        );
        assert_eq!(pickle_extent(b"Vabc"), Extent::Incomplete(5));
        assert_eq!(pickle_extent(b"cos\nsys"), Extent::Incomplete(8));
        assert_eq!(
            pickle_extent(b"\x8e\xff\xff\xff\xff\xff\xff\xff\xff"),
            Extent::Incomplete(usize::MAX)
        );
        // not a pickle
        assert_eq!(pickle_extent(b"{\"a\": 1}"), Extent::Invalid(0));
        // a CSV line reads as INST's two lines: its end is not known yet
        assert_eq!(pickle_extent(b"id,name\n"), Extent::Incomplete(9));
        assert_eq!(
            pickle_extent(b"\x8a\x01\x00\x8b\xff\xff\xff\xff"),
            Extent::Invalid(3)
        );
    }
}
