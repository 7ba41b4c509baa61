//! The serializer: serde's data model written as pickle opcodes with [`Encoder`].
//!
//! It makes the calls CPython's C pickler makes for the equivalent Python value, so plain data
//! comes out byte-identical to `pickle.dumps`: every `str`, `bytes`, list, dict and non-empty
//! tuple is memoized right after it is built (Rust values are trees, so the memo is only read
//! back for the few objects Python would share, see below), lists and dicts are filled in
//! batches of 1000 exactly as `batch_list_exact`/`batch_dict_exact` do, and [`opcode_boundary`]
//! is called where C's `save()` starts so frames are cut at the same places.
//!
//! What Python would share is shared: struct field names and enum variant names are Rust
//! `&'static str`s, the analogue of Python's interned identifiers, so each is written once and
//! fetched from the memo afterwards (as `pickle.dumps([{"x": 1}, {"x": 2}])` does); so are the
//! `_codecs.encode` global and its `'latin1'` argument used for bytes below protocol 3.
//!
//! [`opcode_boundary`]: Encoder::opcode_boundary

use std::collections::HashMap;

use ::serde::ser::{self, Serialize};
use num_bigint::BigInt;

use crate::encode::{batches, BatchRule, Batches, Encoder};
use crate::error::{Error, ErrorKind, Result};
use crate::opcode::Opcode;
use crate::pystr::PyString;

/// Writes serde values as one pickle. Use [`to_vec`](super::to_vec) or
/// [`to_writer`](super::to_writer).
pub(crate) struct Serializer<'w> {
    enc: Encoder<'w>,
    /// Memo entries written so far (the next index).
    memo: u64,
    /// Memo index of each static name (field, variant, `'latin1'`) already written.
    names: HashMap<&'static str, u64>,
    /// Memo indices of the globals used for bytes below protocol 3.
    codecs_encode: Option<u64>,
    bytes_type: Option<u64>,
    /// While > 0, a dict key is being written: sequences become tuples (Python must hash them)
    /// and dicts are refused.
    in_key: u32,
}

impl<'w> Serializer<'w> {
    pub(crate) fn new(enc: Encoder<'w>) -> Self {
        Serializer {
            enc,
            memo: 0,
            names: HashMap::new(),
            codecs_encode: None,
            bytes_type: None,
            in_key: 0,
        }
    }

    pub(crate) fn into_encoder(self) -> Encoder<'w> {
        self.enc
    }

    /// Memoize the top of the stack (`memo_put`).
    #[inline]
    fn put(&mut self) -> Result<u64> {
        let idx = self.memo;
        self.enc.put(idx)?;
        self.memo += 1;
        Ok(idx)
    }

    /// Where C's `save()` starts.
    #[inline]
    fn boundary(&mut self) -> Result<()> {
        self.enc.opcode_boundary()
    }

    fn str(&mut self, s: &str) -> Result<()> {
        self.boundary()?;
        self.enc.str(&PyString::from(s))?;
        self.put()?;
        Ok(())
    }

    /// A name Python would intern: written once, then fetched from the memo.
    fn name(&mut self, s: &'static str) -> Result<()> {
        self.boundary()?;
        if let Some(&idx) = self.names.get(s) {
            return self.enc.get(idx);
        }
        self.enc.str(&PyString::from(s))?;
        let idx = self.put()?;
        self.names.insert(s, idx);
        Ok(())
    }

    /// `GLOBAL module\nname\n` + memo, or a memo get if `slot` already holds it (`save_global`
    /// below protocol 4, the only place it is used).
    fn global(
        &mut self,
        module: &str,
        name: &str,
        slot: fn(&mut Self) -> &mut Option<u64>,
    ) -> Result<()> {
        self.boundary()?;
        if let Some(idx) = *slot(self) {
            return self.enc.get(idx);
        }
        self.enc.global(module.as_bytes(), name.as_bytes())?;
        let idx = self.put()?;
        *slot(self) = Some(idx);
        Ok(())
    }

    fn bytes(&mut self, data: &[u8]) -> Result<()> {
        self.boundary()?;
        if self.enc.protocol() >= 3 {
            self.enc.bytes(data)?;
            self.put()?;
            return Ok(());
        }
        // `save_bytes` below protocol 3: a reduction Python 2 and 3 both load as bytes.
        if data.is_empty() {
            self.global("__builtin__", "bytes", |s| &mut s.bytes_type)?;
            self.boundary()?;
            self.enc.empty_tuple();
        } else {
            self.global("_codecs", "encode", |s| &mut s.codecs_encode)?;
            self.boundary()?;
            self.enc.tuple_start(2);
            let text = PyString::from_code_points(data.iter().map(|&b| u32::from(b)))
                .ok_or_else(|| Error::new(ErrorKind::Message("latin-1 text".into())))?;
            self.boundary()?;
            self.enc.str(&text)?;
            self.put()?;
            self.name("latin1")?;
            self.enc.tuple_end(2);
            self.put()?;
        }
        self.enc.opcode(Opcode::REDUCE);
        self.put()?;
        Ok(())
    }

    fn int128(&mut self, v: i128) -> Result<()> {
        self.boundary()?;
        match i64::try_from(v) {
            Ok(v) => {
                self.enc.int(v);
                Ok(())
            }
            Err(_) => self.enc.big_int(&BigInt::from(v)),
        }
    }

    fn no_dict_key(&self, what: &str) -> Result<()> {
        if self.in_key > 0 {
            return Err(Error::new(ErrorKind::Message(format!(
                "{what} cannot be a dict key: Python cannot hash a dict"
            ))));
        }
        Ok(())
    }

    /// Start a dict holding one `{variant: ...}` entry; the caller writes the value and then
    /// `SETITEM`.
    fn variant_dict(&mut self, variant: &'static str) -> Result<()> {
        self.no_dict_key("an enum variant with data")?;
        self.boundary()?;
        self.enc.empty_dict();
        self.put()?;
        self.name(variant)
    }

    fn list(&mut self, len: Option<usize>, then: Close) -> Result<Compound<'_, 'w>> {
        if self.in_key > 0 {
            return self.tuple(len, then);
        }
        self.boundary()?;
        self.enc.empty_list();
        self.put()?;
        let batch = Batcher::new(self.enc.protocol(), len, BatchRule::list);
        Ok(Compound {
            ser: self,
            kind: Kind::List,
            batch,
            then,
        })
    }

    fn dict(&mut self, len: Option<usize>, then: Close) -> Result<Compound<'_, 'w>> {
        self.no_dict_key("a map or struct")?;
        self.boundary()?;
        self.enc.empty_dict();
        self.put()?;
        let batch = Batcher::new(self.enc.protocol(), len, BatchRule::dict);
        Ok(Compound {
            ser: self,
            kind: Kind::Dict,
            batch,
            then,
        })
    }

    fn tuple(&mut self, len: Option<usize>, then: Close) -> Result<Compound<'_, 'w>> {
        self.boundary()?;
        let marked = match len {
            Some(0) => {
                self.enc.empty_tuple();
                true
            }
            Some(n) => {
                self.enc.tuple_start(n);
                self.enc.tuple_uses_mark(n)
            }
            None => {
                self.enc.mark();
                true
            }
        };
        Ok(Compound {
            ser: self,
            kind: Kind::Tuple {
                len,
                marked,
                count: 0,
            },
            batch: Batcher::none(),
            then,
        })
    }
}

/// Follows CPython's batching for a list or dict whose length serde may or may not announce.
struct Batcher {
    /// The planned batches when the length is known; `None`: marked chunks of 1000 (or single
    /// items at protocol 0) decided as items come.
    plan: Option<Batches>,
    one_by_one: bool,
    current: Option<(usize, bool)>,
    in_batch: usize,
    promised: Option<usize>,
    count: usize,
}

impl Batcher {
    fn new(protocol: u8, len: Option<usize>, rule: fn(u8) -> BatchRule) -> Batcher {
        Batcher {
            plan: len.map(|n| batches(n, rule(protocol))),
            one_by_one: protocol == 0,
            current: None,
            in_batch: 0,
            promised: len,
            count: 0,
        }
    }

    fn none() -> Batcher {
        Batcher {
            plan: None,
            one_by_one: false,
            current: None,
            in_batch: 0,
            promised: None,
            count: 0,
        }
    }

    fn before_item(&mut self, enc: &mut Encoder<'_>) {
        if self.current.is_none() {
            let planned = self.plan.as_mut().and_then(Iterator::next);
            let batch = match planned {
                Some(b) if b.len > 0 => (b.len, b.marked),
                // More items than serde announced, or no announcement.
                _ if self.one_by_one => (1, false),
                _ if self.plan.is_some() => (1, false),
                _ => (crate::encode::BATCH_SIZE, true),
            };
            self.current = Some(batch);
            self.in_batch = 0;
            if batch.1 {
                enc.mark();
            }
        }
    }

    fn after_item(&mut self, enc: &mut Encoder<'_>, single: Opcode, multi: Opcode) {
        self.count += 1;
        self.in_batch += 1;
        if let Some((len, marked)) = self.current {
            if self.in_batch >= len {
                enc.opcode(if marked { multi } else { single });
                self.current = None;
            }
        }
    }

    fn finish(&mut self, enc: &mut Encoder<'_>, single: Opcode, multi: Opcode) {
        if let Some((_, marked)) = self.current.take() {
            if self.in_batch > 0 {
                enc.opcode(if marked { multi } else { single });
            }
        }
        // `batch_dict_exact`'s trailing empty `MARK SETITEMS` after a multiple of 1000 pairs.
        if self.promised == Some(self.count) {
            if let Some(plan) = self.plan.as_mut() {
                for b in plan {
                    if b.len == 0 && b.marked {
                        enc.mark();
                        enc.opcode(multi);
                    }
                }
            }
        }
    }
}

/// What to write after a compound value ends.
#[derive(Clone, Copy)]
enum Close {
    Nothing,
    /// The compound is the value of a `{variant: value}` dict: `SETITEM`.
    SetItem,
}

enum Kind {
    List,
    Dict,
    Tuple {
        len: Option<usize>,
        marked: bool,
        count: usize,
    },
}

/// A list, tuple or dict being written.
pub(crate) struct Compound<'a, 'w> {
    ser: &'a mut Serializer<'w>,
    kind: Kind,
    batch: Batcher,
    then: Close,
}

impl Compound<'_, '_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        match &mut self.kind {
            Kind::Tuple { count, .. } => {
                *count += 1;
                value.serialize(&mut *self.ser)
            }
            _ => {
                self.batch.before_item(&mut self.ser.enc);
                value.serialize(&mut *self.ser)?;
                self.batch
                    .after_item(&mut self.ser.enc, Opcode::APPEND, Opcode::APPENDS);
                Ok(())
            }
        }
    }

    fn key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<()> {
        self.batch.before_item(&mut self.ser.enc);
        self.ser.in_key += 1;
        let result = key.serialize(&mut *self.ser);
        self.ser.in_key -= 1;
        result
    }

    fn value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        value.serialize(&mut *self.ser)?;
        self.batch
            .after_item(&mut self.ser.enc, Opcode::SETITEM, Opcode::SETITEMS);
        Ok(())
    }

    fn field<T: Serialize + ?Sized>(&mut self, name: &'static str, value: &T) -> Result<()> {
        self.batch.before_item(&mut self.ser.enc);
        self.ser.name(name)?;
        self.value(value)
    }

    fn end(mut self) -> Result<()> {
        match self.kind {
            Kind::List => self
                .batch
                .finish(&mut self.ser.enc, Opcode::APPEND, Opcode::APPENDS),
            Kind::Dict => self
                .batch
                .finish(&mut self.ser.enc, Opcode::SETITEM, Opcode::SETITEMS),
            Kind::Tuple { len, marked, count } => {
                if let Some(n) = len {
                    if n != count {
                        return Err(Error::new(ErrorKind::Message(format!(
                            "a tuple announced {n} elements but serialized {count}"
                        ))));
                    }
                }
                if len != Some(0) {
                    if marked {
                        self.ser.enc.opcode(Opcode::TUPLE);
                    } else {
                        self.ser.enc.tuple_end(count);
                    }
                    // The empty tuple is a singleton CPython never memoizes.
                    self.ser.put()?;
                }
            }
        }
        if let Close::SetItem = self.then {
            self.ser.enc.opcode(Opcode::SETITEM);
        }
        Ok(())
    }
}

impl<'a, 'w> ser::Serializer for &'a mut Serializer<'w> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'a, 'w>;
    type SerializeTuple = Compound<'a, 'w>;
    type SerializeTupleStruct = Compound<'a, 'w>;
    type SerializeTupleVariant = Compound<'a, 'w>;
    type SerializeMap = Compound<'a, 'w>;
    type SerializeStruct = Compound<'a, 'w>;
    type SerializeStructVariant = Compound<'a, 'w>;

    fn serialize_bool(self, v: bool) -> Result<()> {
        self.boundary()?;
        self.enc.bool(v);
        Ok(())
    }

    fn serialize_i8(self, v: i8) -> Result<()> {
        self.serialize_i64(v.into())
    }

    fn serialize_i16(self, v: i16) -> Result<()> {
        self.serialize_i64(v.into())
    }

    fn serialize_i32(self, v: i32) -> Result<()> {
        self.serialize_i64(v.into())
    }

    fn serialize_i64(self, v: i64) -> Result<()> {
        self.boundary()?;
        self.enc.int(v);
        Ok(())
    }

    fn serialize_i128(self, v: i128) -> Result<()> {
        self.int128(v)
    }

    fn serialize_u8(self, v: u8) -> Result<()> {
        self.serialize_i64(v.into())
    }

    fn serialize_u16(self, v: u16) -> Result<()> {
        self.serialize_i64(v.into())
    }

    fn serialize_u32(self, v: u32) -> Result<()> {
        self.serialize_i64(v.into())
    }

    fn serialize_u64(self, v: u64) -> Result<()> {
        self.int128(v.into())
    }

    fn serialize_u128(self, v: u128) -> Result<()> {
        match i128::try_from(v) {
            Ok(v) => self.int128(v),
            Err(_) => {
                self.boundary()?;
                self.enc.big_int(&BigInt::from(v))
            }
        }
    }

    fn serialize_f32(self, v: f32) -> Result<()> {
        self.serialize_f64(v.into())
    }

    fn serialize_f64(self, v: f64) -> Result<()> {
        self.boundary()?;
        self.enc.float(v);
        Ok(())
    }

    fn serialize_char(self, v: char) -> Result<()> {
        self.str(v.encode_utf8(&mut [0; 4]))
    }

    fn serialize_str(self, v: &str) -> Result<()> {
        self.str(v)
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<()> {
        self.bytes(v)
    }

    fn serialize_none(self) -> Result<()> {
        self.serialize_unit()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<()> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<()> {
        self.boundary()?;
        self.enc.none();
        Ok(())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<()> {
        self.serialize_unit()
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<()> {
        self.name(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<()> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<()> {
        self.variant_dict(variant)?;
        value.serialize(&mut *self)?;
        self.enc.opcode(Opcode::SETITEM);
        Ok(())
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Compound<'a, 'w>> {
        self.list(len, Close::Nothing)
    }

    fn serialize_tuple(self, len: usize) -> Result<Compound<'a, 'w>> {
        self.tuple(Some(len), Close::Nothing)
    }

    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<Compound<'a, 'w>> {
        self.tuple(Some(len), Close::Nothing)
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'a, 'w>> {
        self.variant_dict(variant)?;
        self.tuple(Some(len), Close::SetItem)
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Compound<'a, 'w>> {
        self.dict(len, Close::Nothing)
    }

    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<Compound<'a, 'w>> {
        self.dict(Some(len), Close::Nothing)
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'a, 'w>> {
        self.variant_dict(variant)?;
        self.dict(Some(len), Close::SetItem)
    }
}

impl ser::SerializeSeq for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.element(value)
    }

    fn end(self) -> Result<()> {
        Compound::end(self)
    }
}

impl ser::SerializeTuple for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.element(value)
    }

    fn end(self) -> Result<()> {
        Compound::end(self)
    }
}

impl ser::SerializeTupleStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.element(value)
    }

    fn end(self) -> Result<()> {
        Compound::end(self)
    }
}

impl ser::SerializeTupleVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.element(value)
    }

    fn end(self) -> Result<()> {
        Compound::end(self)
    }
}

impl ser::SerializeMap for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<()> {
        self.key(key)
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.value(value)
    }

    fn end(self) -> Result<()> {
        Compound::end(self)
    }
}

impl ser::SerializeStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<()> {
        self.field(key, value)
    }

    fn end(self) -> Result<()> {
        Compound::end(self)
    }
}

impl ser::SerializeStructVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<()> {
        self.field(key, value)
    }

    fn end(self) -> Result<()> {
        Compound::end(self)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ::serde::{Deserialize, Serialize};

    use crate::serde::{from_slice, to_vec, to_writer};

    #[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
    enum Kind {
        A,
        B(i8),
        C(u16, String),
        D { x: Option<u128> },
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Row {
        kinds: Vec<Kind>,
        by_pair: BTreeMap<(i32, i32), f32>,
        by_vec: BTreeMap<Vec<u8>, bool>,
        nested: Vec<Vec<Option<i64>>>,
        text: String,
        big: i128,
    }

    fn row() -> Row {
        Row {
            kinds: vec![
                Kind::A,
                Kind::B(-3),
                Kind::C(9, "nine".into()),
                Kind::D { x: None },
                Kind::D { x: Some(u128::MAX) },
            ],
            by_pair: BTreeMap::from([((1, 2), 0.5), ((-1, 0), 2.0)]),
            by_vec: BTreeMap::from([(vec![], true), (vec![1, 2], false)]),
            nested: vec![vec![Some(1), None], vec![]],
            text: "ünï".repeat(30_000),
            big: i128::MIN,
        }
    }

    #[test]
    fn round_trips_at_every_protocol() {
        let value = row();
        for p in 0..=5 {
            let data = to_vec(&value, p).unwrap();
            let back: Row = from_slice(&data).unwrap_or_else(|e| panic!("protocol {p}: {e}"));
            assert_eq!(back, value, "protocol {p}");
        }
    }

    #[test]
    fn to_writer_writes_what_to_vec_returns() {
        let value = (row(), vec!["x".repeat(100); 2000], vec![0u8; 1 << 17]);
        for p in 0..=5 {
            let mut out = Vec::new();
            to_writer(&mut out, &value, p).unwrap();
            assert_eq!(out, to_vec(&value, p).unwrap(), "protocol {p}");
        }
    }

    #[test]
    fn errors() {
        let e = to_vec(&1, 6).unwrap_err();
        assert_eq!(e.to_string(), "unsupported pickle protocol 6");
        let map_key = BTreeMap::from([(BTreeMap::from([(1, 2)]), 3)]);
        assert_eq!(
            to_vec(&map_key, 2).unwrap_err().to_string(),
            "a map or struct cannot be a dict key: Python cannot hash a dict"
        );
        let variant_key = BTreeMap::from([(Kind::B(1), 3)]);
        assert_eq!(
            to_vec(&variant_key, 2).unwrap_err().to_string(),
            "an enum variant with data cannot be a dict key: Python cannot hash a dict"
        );
        // A unit variant is a str and may be a key.
        let unit_key = BTreeMap::from([(Kind::A, 3)]);
        let back: BTreeMap<String, i32> = from_slice(&to_vec(&unit_key, 2).unwrap()).unwrap();
        assert_eq!(back["A"], 3);
    }

    #[test]
    fn names_are_written_once() {
        #[derive(Serialize)]
        struct P {
            x: i32,
        }
        // pickle.dumps([{"x": 1}, {"x": 2}], 2): the second "x" is a BINGET
        let data = to_vec(&vec![P { x: 1 }, P { x: 2 }], 2).unwrap();
        assert_eq!(
            data,
            b"\x80\x02]q\x00(}q\x01X\x01\x00\x00\x00xq\x02K\x01s}q\x03h\x02K\x02se."
        );
    }
}
