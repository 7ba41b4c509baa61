//! # brinery: Python pickles in pure Rust
//!
//! brinery reads and writes every pickle protocol (0–5) without Python and without running any of
//! the code a pickle can name. It is the engine under the `brinery` Python module, the `brinery`
//! command and the jar; this crate is the part that knows the format.
//!
//! ```
//! use brinery::{Pickle, Value};
//! // pickle.dumps({"a": [1, 2]}, protocol=2)
//! let data = b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01]q\x02(K\x01K\x02es.";
//! let p = Pickle::from_slice(data).unwrap();
//! let Value::Dict(pairs) = &p[p.root()] else { unreachable!() };
//! let (key, value) = pairs[0];
//! assert_eq!(p[key].as_str(), Some("a"));
//! assert!(matches!(&p[value], Value::List(items) if items.len() == 2));
//! ```
//!
//! The pieces, from the bytes up:
//! - [`decode`]: splits a stream into [`Op`](decode::Op)s with byte offsets, borrowing the input.
//! - [`value`]: the value model ([`Pickle`], [`Value`]) and the machine that builds it.
//! - [`Limits`]: bounds for untrusted input.
//! - [`Error`]: what went wrong and where.
//! - [`scan`]: static safety analysis of a pickle (or a container of pickles) against a
//!   [`Policy`](scan::Policy), without running anything.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod decode;
pub mod disasm;
pub mod encode;
mod error;
pub mod json;
mod limits;
pub mod opcode;
mod pyrepr;
mod pystr;
pub mod scan;
pub mod serde;
pub mod text;
mod unicode_printable;
pub mod value;

pub use crate::serde::{from_reader, from_slice, to_vec, to_writer};
pub use error::{Error, ErrorKind, Result};
pub use limits::{Limits, LimitsBuilder};
pub use opcode::Opcode;
pub use pystr::{CodePoints, PyString};
pub use value::{
    thin_vec, BigInt, CallKind, Global, Mutated, Mutation, Object, Pickle, ThinVec, Value, ValueId,
};

/// The highest protocol brinery reads and writes (CPython's `pickle.HIGHEST_PROTOCOL`).
pub const HIGHEST_PROTOCOL: u8 = 5;
/// The protocol CPython 3.8+ writes by default (`pickle.DEFAULT_PROTOCOL`).
pub const DEFAULT_PROTOCOL: u8 = 4;
