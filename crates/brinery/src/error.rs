//! The one error type of the core crate.
//!
//! Modelled on serde_json's: [`Error`] is a single pointer wide (the details live in a box), so
//! `Result<T, Error>` stays cheap on the hot path, and it always carries *where* things went
//! wrong: the byte offset of the opcode being processed and the opcode itself. Messages are
//! lowercase, without a trailing period, and end with the position, e.g.
//! `memo index 7 was never stored at byte 1042 (BINGET)`.

use std::fmt;

use crate::opcode::Opcode;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, without where. See [`Error::kind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input ended in the middle of an opcode or before STOP.
    #[error("pickle data was truncated: {0}")]
    Truncated(&'static str),
    /// A byte that is not an opcode appeared where an opcode was expected.
    #[error("invalid opcode byte {0:#04x}")]
    UnknownOpcode(u8),
    /// The input had no STOP opcode.
    #[error("pickle data was truncated: no STOP opcode")]
    MissingStop,
    /// An opcode's argument is malformed (bad digits, bad quoting, bad UTF-8, negative length, ...).
    #[error("{0}")]
    BadArgument(String),
    /// A length field claims more bytes than the input has left.
    #[error("length {claimed} exceeds the {remaining} bytes left in the input")]
    LengthBeyondInput {
        /// The length the stream claimed.
        claimed: u64,
        /// How many bytes were actually left.
        remaining: u64,
    },
    /// A GET referred to a memo slot that no PUT filled.
    #[error("memo index {0} was never stored")]
    MemoMissing(u64),
    /// An opcode needed more items on the stack than there were (counting only the items above
    /// the topmost MARK, if there is one: an opcode never consumes a MARK).
    #[error(
        "stack underflow: needs {needed} item(s){}, found {found}",
        if *.above_mark { " above the MARK" } else { "" }
    )]
    StackUnderflow {
        /// How many items the opcode consumes.
        needed: usize,
        /// How many were there.
        found: usize,
        /// Whether a MARK fenced off the items below it.
        above_mark: bool,
    },
    /// An opcode that collects items up to a MARK found no MARK.
    #[error("no MARK on the stack")]
    MissingMark,
    /// The stack held a MARK where the opcode needed a value.
    #[error("unexpected MARK where a value was expected")]
    UnexpectedMark,
    /// An opcode found a value of the wrong type on the stack.
    #[error("{0}")]
    WrongType(String),
    /// The stack did not hold exactly one value at STOP.
    #[error("STOP with {0} items on the stack (expected exactly 1)")]
    BadStop(usize),
    /// PROTO declared a protocol this library does not know.
    #[error("unsupported pickle protocol {0}")]
    UnsupportedProtocol(u8),
    /// A [`Limits`](crate::Limits) bound was exceeded.
    #[error("{what} limit of {limit} exceeded")]
    LimitExceeded {
        /// Which limit: `"depth"`, `"memo"`, `"allocation"`, `"input size"`.
        what: &'static str,
        /// The configured bound.
        limit: u64,
    },
    /// The value graph cannot be written at the requested protocol or in the requested form.
    #[error("{0}")]
    Unsupported(String),
    /// An I/O error from a reader or writer.
    #[error("i/o error: {0}")]
    Io(String),
    /// A free-form message, used by serde.
    #[error("{0}")]
    Message(String),
}

/// An error from reading or writing pickle data, with the position it refers to.
///
/// ```
/// let err = brinery::Pickle::from_slice(b"\x80\x04h\x07.").unwrap_err();
/// assert_eq!(err.to_string(), "memo index 7 was never stored at byte 2 (BINGET)");
/// assert_eq!(err.offset(), Some(2));
/// ```
pub struct Error {
    inner: Box<Inner>,
}

struct Inner {
    kind: ErrorKind,
    offset: Option<u64>,
    opcode: Option<Opcode>,
}

impl Error {
    /// An error of `kind` with no position attached yet.
    #[cold]
    pub fn new(kind: ErrorKind) -> Self {
        Error {
            inner: Box::new(Inner {
                kind,
                offset: None,
                opcode: None,
            }),
        }
    }

    /// An error of `kind` at byte `offset` while processing `opcode`.
    #[cold]
    pub fn at(kind: ErrorKind, offset: u64, opcode: Option<Opcode>) -> Self {
        Error {
            inner: Box::new(Inner {
                kind,
                offset: Some(offset),
                opcode,
            }),
        }
    }

    /// Attach a position if the error does not carry one yet.
    #[cold]
    pub fn with_position(mut self, offset: u64, opcode: Option<Opcode>) -> Self {
        if self.inner.offset.is_none() {
            self.inner.offset = Some(offset);
            self.inner.opcode = opcode;
        }
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.inner.kind
    }

    /// The byte offset of the opcode being processed, if known.
    pub fn offset(&self) -> Option<u64> {
        self.inner.offset
    }

    /// The opcode being processed, if known.
    pub fn opcode(&self) -> Option<Opcode> {
        self.inner.opcode
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner.kind, f)?;
        if let Some(offset) = self.inner.offset {
            write!(f, " at byte {offset}")?;
            if let Some(op) = self.inner.opcode {
                write!(f, " ({op})")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({:?}, \"{}\")", self.inner.kind, self)
    }
}

impl std::error::Error for Error {}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Self {
        Error::new(kind)
    }
}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        Error::new(ErrorKind::Io(err.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_one_pointer_wide() {
        assert_eq!(std::mem::size_of::<Error>(), std::mem::size_of::<usize>());
    }

    #[test]
    fn display_ends_with_position() {
        let e = Error::at(ErrorKind::MemoMissing(7), 1042, Some(Opcode::BINGET));
        assert_eq!(
            e.to_string(),
            "memo index 7 was never stored at byte 1042 (BINGET)"
        );
        let e = Error::new(ErrorKind::MissingStop);
        assert_eq!(e.to_string(), "pickle data was truncated: no STOP opcode");
    }
}
