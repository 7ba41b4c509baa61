//! serde support: Rust types to and from pickles.
//!
//! [`from_slice`] reads a Rust type from what `pickle.dumps` wrote, [`to_vec`] writes what
//! `pickle.loads` reads.
//!
//! ```
//! use std::collections::BTreeMap;
//! // pickle.dumps({"a": [1, 2], "b": []}, protocol=2)
//! let data = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01K\x02eX\x01\x00\x00\x00bq\x03]q\x04u.";
//! let map: BTreeMap<String, Vec<i64>> = brinery::serde::from_slice(data).unwrap();
//! assert_eq!(map["a"], [1, 2]);
//! assert_eq!(brinery::to_vec(&map, 2).unwrap(), data);
//! ```
//!
//! # How Python values map to serde's data model (reading)
//! | Python | serde |
//! |---|---|
//! | `None` | unit, `Option::None` |
//! | `bool` | bool |
//! | `int` | every integer type, with a range check (`integer 300 does not fit in u8`); `i128`/`u128` for big ints; also floats |
//! | `float` | `f32`, `f64` |
//! | `str` | `String`, `char`, identifiers; as bytes: its UTF-8 (lone surrogates, which a Rust `String` cannot hold, only this way) |
//! | `bytes`, `bytearray` | bytes (`deserialize_bytes`), and sequences of `u8` (`Vec<u8>`, `[u8; N]`) |
//! | Python 2 `str` | `String` when it is UTF-8, otherwise bytes; `deserialize_any` gives text when it is ASCII (as Python 3 loads it) |
//! | `list`, `tuple`, `set`, `frozenset` | sequences, tuples, tuple structs |
//! | `dict`, `collections.OrderedDict` | maps and structs (field names from `str` keys); int keys also read as strings (`serde_json::Value`) |
//! | `"Variant"`, `{"Variant": value}` | enums, externally tagged like serde_json |
//!
//! The forms CPython uses for plain data at old protocols read as that data: `builtins.set([...])`
//! and `frozenset` calls (`__builtin__` at protocols 0–2), `_codecs.encode('...', 'latin1')` and
//! `bytes()` for `bytes` below protocol 3, `bytearray(...)` calls below protocol 5, and
//! `OrderedDict()` followed by `SETITEMS`. Any other call or global is an error naming it:
//! `cannot deserialize a datetime.date object into struct Event`.
//!
//! Shared references are followed (an object referenced twice is deserialized twice). A value
//! containing itself is an error (`value graph has a cycle: a list contains itself`), nesting
//! is capped at [`DEFAULT_SERDE_DEPTH`] levels unless [`Limits::max_depth`] is set to something
//! other than its default, and the number of values visited is capped at [`EXPANSION_FACTOR`]
//! times the number of values in the pickle plus [`EXPANSION_FLOOR`] (and at
//! [`Limits::max_alloc`] / 32; raising `max_alloc` above its default lifts the first bound), so
//! a "billion laughs" made of shared references fails fast:
//! `value graph expands beyond N values (shared references or a cycle)`.
//!
//! # How serde's data model maps to Python values (writing)
//! | serde | Python |
//! |---|---|
//! | unit, unit struct, `None` | `None` (`Some(x)` is `x`) |
//! | bool, integers (any width), `f32`, `f64` | `bool`, `int`, `float` |
//! | `char`, `str` | `str` |
//! | bytes (`serialize_bytes`) | `bytes` (below protocol 3 as CPython writes it, `_codecs.encode('…', 'latin1')`, so Python 3 loads real `bytes`) |
//! | sequences (`Vec`, sets, ...) | `list` (a `tuple` inside a dict key, so Python can hash it) |
//! | tuples, tuple structs, arrays | `tuple` |
//! | maps | `dict` (a map inside a dict key is an error: Python cannot hash it) |
//! | structs | `dict` with `str` keys |
//! | newtype structs | the inner value |
//! | unit variants | `"Variant"` |
//! | newtype, tuple and struct variants | `{"Variant": value}`, `{"Variant": (…)}`, `{"Variant": {…}}` |
//!
//! For such data [`to_vec`] writes the bytes `pickle.dumps` writes for the equivalent Python
//! value at the same protocol, with two caveats that come from object identity, which Rust
//! values do not have: equal strings are written once each (Python shares the memo entry when it
//! is the *same* object, e.g. a repeated literal), except field and variant names, which are
//! written once and then fetched from the memo as Python does for interned names; and a
//! sequence or map whose length serde does not announce is batched without knowing it (a lone
//! item gets `MARK … APPENDS` instead of `APPEND`).
//!
//! Errors are [`crate::Error`]s; serde's own messages have [`ErrorKind::Message`].

mod de;
mod ser;

use std::fmt::Display;

use ::serde::de::DeserializeOwned;
use ::serde::{Deserialize, Serialize};

use crate::encode::Encoder;
use crate::error::{Error, ErrorKind, Result};
use crate::limits::Limits;
use crate::value::Pickle;

pub use de::{DEFAULT_SERDE_DEPTH, EXPANSION_FACTOR, EXPANSION_FLOOR};

impl ::serde::de::Error for Error {
    #[cold]
    fn custom<T: Display>(msg: T) -> Self {
        Error::new(ErrorKind::Message(msg.to_string()))
    }
}

impl ::serde::ser::Error for Error {
    #[cold]
    fn custom<T: Display>(msg: T) -> Self {
        Error::new(ErrorKind::Message(msg.to_string()))
    }
}

/// Deserialize a `T` from pickle bytes, with the default [`Limits`].
///
/// The pickle is first read into a [`Pickle`] (nothing it names is run), then `T` is built from
/// that graph. `T` owns its data; to borrow strings and bytes, read the [`Pickle`] yourself and
/// use [`from_pickle`].
///
/// ```
/// use std::collections::HashMap;
/// #[derive(serde::Deserialize)]
/// struct Point { x: f64, y: f64 }
/// // pickle.dumps({"x": 1.5, "y": 2}, protocol=4): an int is accepted for an f64
/// let data = b"\x80\x04\x95\x14\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01x\x94G?\xf8\x00\x00\x00\x00\x00\x00\x8c\x01y\x94K\x02u.";
/// let p: Point = brinery::from_slice(data).unwrap();
/// assert_eq!((p.x, p.y), (1.5, 2.0));
/// let err = brinery::from_slice::<HashMap<String, u8>>(b"}X\x01\x00\x00\x00aM,\x01s.").unwrap_err();
/// assert_eq!(err.to_string(), "integer 300 does not fit in u8");
/// ```
pub fn from_slice<T: DeserializeOwned>(data: &[u8]) -> Result<T> {
    from_slice_with(data, &Limits::default())
}

/// Deserialize a `T` from pickle bytes with the given limits (see the [module docs](self) for
/// how they bound the walk).
pub fn from_slice_with<T: DeserializeOwned>(data: &[u8], limits: &Limits) -> Result<T> {
    let pickle = Pickle::from_slice_with(data, limits)?;
    from_pickle_with(&pickle, limits)
}

/// Deserialize a `T` from a reader, with the default [`Limits`] (the input is read whole first).
pub fn from_reader<R: std::io::Read, T: DeserializeOwned>(reader: R) -> Result<T> {
    let limits = Limits::default();
    let pickle = Pickle::from_reader(reader, &limits)?;
    from_pickle_with(&pickle, &limits)
}

/// Deserialize a `T` from an already read [`Pickle`]; `T` may borrow `str` and `bytes` from it.
///
/// ```
/// let pickle = brinery::Pickle::from_slice(b"\x80\x03X\x02\x00\x00\x00hiq\x00.").unwrap();
/// let s: &str = brinery::serde::from_pickle(&pickle).unwrap();
/// assert_eq!(s, "hi");
/// ```
pub fn from_pickle<'de, T: Deserialize<'de>>(pickle: &'de Pickle) -> Result<T> {
    from_pickle_with(pickle, &Limits::default())
}

/// [`from_pickle`] with the given limits.
pub fn from_pickle_with<'de, T: Deserialize<'de>>(
    pickle: &'de Pickle,
    limits: &Limits,
) -> Result<T> {
    let mut state = de::State::new(pickle, limits);
    T::deserialize(de::ValueDeserializer::new(
        pickle,
        &mut state,
        pickle.root(),
    )?)
}

/// Serialize `value` as a pickle of the given protocol (0–5), loadable with `pickle.loads`.
///
/// For plain data the bytes are those `pickle.dumps` writes for the equivalent Python value.
/// See the [module docs](self) for the mapping.
///
/// ```
/// use std::collections::BTreeMap;
/// let map = BTreeMap::from([("a", vec![1, 2])]);
/// let data = brinery::to_vec(&map, 2).unwrap();
/// // pickle.dumps({"a": [1, 2]}, protocol=2)
/// assert_eq!(data, b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01]q\x02(K\x01K\x02es.");
/// let back: BTreeMap<String, Vec<i32>> = brinery::from_slice(&data).unwrap();
/// assert_eq!(back["a"], [1, 2]);
/// ```
pub fn to_vec<T: Serialize + ?Sized>(value: &T, protocol: u8) -> Result<Vec<u8>> {
    let mut enc = Encoder::new(protocol)?;
    enc.start();
    let mut ser = ser::Serializer::new(enc);
    value.serialize(&mut ser)?;
    ser.into_encoder().finish()
}

/// Serialize `value` as a pickle of the given protocol into `writer` (`pickle.dump`): at
/// protocol 4+ each 64 KiB frame is written as soon as it is complete.
pub fn to_writer<W: std::io::Write, T: Serialize + ?Sized>(
    mut writer: W,
    value: &T,
    protocol: u8,
) -> Result<()> {
    let mut enc = Encoder::with_sink(protocol, &mut writer)?;
    enc.start();
    let mut ser = ser::Serializer::new(enc);
    value.serialize(&mut ser)?;
    let rest = ser.into_encoder().finish()?;
    writer.write_all(&rest)?;
    Ok(())
}
