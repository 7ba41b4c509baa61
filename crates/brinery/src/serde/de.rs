//! The deserializer: a walk over the [`Pickle`] value graph that feeds serde visitors.
//!
//! Reading happens in two steps. The value machine turns the bytes into a [`Pickle`] (an arena
//! in which shared references are ids), then [`ValueDeserializer`] walks that graph on demand.
//! Before a value is handed to a visitor it is *resolved*: a plain value is used as it is, and the
//! calls CPython writes for plain data at old protocols (`builtins.set([...])`,
//! `_codecs.encode('...', 'latin1')`, `collections.OrderedDict()` + `SETITEMS`, ...) are
//! recognised and read as the data they stand for. Anything else that would run code is an error
//! naming the global.
//!
//! Walking a graph can revisit values: a list referenced twice is deserialized twice, as Python
//! would hand out the same object twice. Three guards keep that bounded: a recursion cap, a cycle
//! check (a value may not contain itself) and an expansion budget on the number of values visited.

use std::borrow::Cow;
use std::fmt;

use ::serde::de::{
    self, DeserializeSeed, EnumAccess, Expected, IntoDeserializer, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};
use num_bigint::BigInt;
use num_traits::ToPrimitive;

use crate::error::{Error, ErrorKind, Result};
use crate::limits::Limits;
use crate::pystr::PyString;
use crate::value::{CallKind, Mutation, Object, Pickle, Value, ValueId};

/// How deeply serde may recurse when the caller keeps [`Limits::DEFAULT_MAX_DEPTH`] (serde_json
/// uses the same bound). A caller who sets another `max_depth` gets exactly that.
pub const DEFAULT_SERDE_DEPTH: usize = 128;

/// How many values a walk may visit per value in the arena, unless the caller raised
/// [`Limits::max_alloc`] above its default.
pub const EXPANSION_FACTOR: u64 = 64;

/// Visits every walk may make regardless of the arena size (sharing in small pickles is normal).
pub const EXPANSION_FLOOR: u64 = 1 << 20;

/// How deeply the recognisers of old-protocol encodings may look through nested calls
/// (`bytearray(_codecs.encode(...))` needs two levels).
const MAX_RESOLVE_NESTING: u8 = 8;

/// Bookkeeping shared by all deserializers of one walk.
pub(crate) struct State {
    depth: usize,
    max_depth: usize,
    visits: u64,
    budget: u64,
    /// One bit per arena slot: set while the value is being deserialized (on the current path).
    on_path: Vec<u64>,
}

impl State {
    pub(crate) fn new(pickle: &Pickle, limits: &Limits) -> State {
        let max_depth = if limits.max_depth() == Limits::DEFAULT_MAX_DEPTH {
            DEFAULT_SERDE_DEPTH
        } else {
            limits.max_depth()
        };
        // Each visited value may become an allocation in the output; charge it like the value
        // machine charges a value (32 bytes) against the allocation limit.
        let by_alloc = limits.max_alloc() / 32;
        let budget = if limits.max_alloc() > Limits::DEFAULT_MAX_ALLOC {
            by_alloc
        } else {
            let by_arena = (pickle.len() as u64)
                .saturating_mul(EXPANSION_FACTOR)
                .saturating_add(EXPANSION_FLOOR);
            by_arena.min(by_alloc)
        };
        State {
            depth: 0,
            max_depth,
            visits: 0,
            budget,
            on_path: vec![0; pickle.len().div_ceil(64)],
        }
    }

    /// Count one value about to be deserialized.
    #[inline]
    fn visit(&mut self) -> Result<()> {
        self.visits += 1;
        if self.visits > self.budget {
            return Err(Error::new(ErrorKind::Message(format!(
                "value graph expands beyond {} values (shared references or a cycle)",
                self.budget
            ))));
        }
        Ok(())
    }

    /// Enter container `id`: check the depth and that `id` is not already on the path.
    #[inline]
    fn enter(&mut self, id: ValueId, kind: &str) -> Result<()> {
        if self.depth >= self.max_depth {
            return Err(Error::new(ErrorKind::LimitExceeded {
                what: "depth",
                limit: self.max_depth as u64,
            }));
        }
        let (word, bit) = (id.index() / 64, 1u64 << (id.index() % 64));
        if let Some(w) = self.on_path.get_mut(word) {
            if *w & bit != 0 {
                return Err(Error::new(ErrorKind::Message(format!(
                    "value graph has a cycle: a {kind} contains itself"
                ))));
            }
            *w |= bit;
        }
        self.depth += 1;
        Ok(())
    }

    #[inline]
    fn leave(&mut self, id: ValueId) {
        self.depth = self.depth.saturating_sub(1);
        if let Some(w) = self.on_path.get_mut(id.index() / 64) {
            *w &= !(1u64 << (id.index() % 64));
        }
    }
}

/// A Python value as serde sees it, after looking through the encodings of old protocols.
enum Node<'de> {
    None,
    Bool(bool),
    Int(i64),
    Big(&'de BigInt),
    Float(f64),
    Str(&'de PyString),
    /// `bytes` or `bytearray` (possibly rebuilt from an old-protocol call).
    Bytes(Cow<'de, [u8]>),
    /// A Python 2 `str`.
    Legacy(&'de [u8]),
    /// list, tuple, set, frozenset; the `&str` names the kind for messages.
    Seq(Cow<'de, [ValueId]>, &'static str),
    /// dict or OrderedDict.
    Map(Cow<'de, [(ValueId, ValueId)]>),
    /// Something that is not plain data, described for messages ("datetime.date object").
    Opaque(String),
}

fn opaque<'de>(what: impl Into<String>) -> Node<'de> {
    Node::Opaque(what.into())
}

/// Resolve the value `id` of `p` to a [`Node`].
fn resolve(p: &Pickle, id: ValueId, nest: u8) -> Node<'_> {
    let Some(value) = p.get(id) else {
        return opaque("dangling value reference");
    };
    match value {
        Value::None => Node::None,
        Value::Bool(b) => Node::Bool(*b),
        Value::Int(i) => Node::Int(*i),
        Value::BigInt(b) => Node::Big(b),
        Value::Float(f) => Node::Float(*f),
        Value::Str(s) => Node::Str(s),
        Value::Bytes(b) | Value::ByteArray(b) => Node::Bytes(Cow::Borrowed(b)),
        Value::LegacyStr(b) => Node::Legacy(b),
        Value::List(items) => Node::Seq(Cow::Borrowed(items), "list"),
        Value::Tuple(items) => Node::Seq(Cow::Borrowed(items), "tuple"),
        Value::Set(items) => Node::Seq(Cow::Borrowed(items), "set"),
        Value::FrozenSet(items) => Node::Seq(Cow::Borrowed(items), "frozenset"),
        Value::Dict(pairs) => Node::Map(Cow::Borrowed(pairs)),
        Value::Object(obj) => resolve_object(p, obj, nest),
        Value::Global(g) => opaque(format!("global {}.{}", g.module, g.name)),
        Value::DynamicGlobal { .. } => opaque("dynamically named global"),
        Value::PersistentId(_) => opaque("persistent id"),
        Value::Ext(code) => opaque(format!("extension registry object (code {code})")),
        Value::Buffer { .. } => opaque("out-of-band buffer"),
        Value::ReadOnly(_) => opaque("read-only buffer"),
        Value::Mutated(m) => {
            let base = p.get(m.base).map_or("value", Value::kind_name);
            opaque(format!("{base} modified after creation (BUILD or SETITEM)"))
        }
    }
}

/// Whether `name` is a builtin: `builtins.<name>` (protocol 3+) or `__builtin__.<name>` (what
/// `fix_imports` writes at protocols 0–2).
fn is_builtin(module: &str, name: &str, want: &str) -> bool {
    (module == "builtins" || module == "__builtin__") && name == want
}

/// Recognise the calls CPython writes for plain data; anything else is opaque.
fn resolve_object<'de>(p: &'de Pickle, obj: &'de Object, nest: u8) -> Node<'de> {
    let Some(Value::Global(g)) = p.get(obj.callable) else {
        return opaque("object built by calling a computed value");
    };
    let (Some(module), Some(name)) = (g.module.as_str(), g.name.as_str()) else {
        return opaque(format!("{}.{} object", g.module, g.name));
    };
    let not_plain = || opaque(format!("{module}.{name} object"));
    if obj.kind != CallKind::Reduce || nest >= MAX_RESOLVE_NESTING || obj.kwargs.is_some() {
        return not_plain();
    }
    let Some(Value::Tuple(args)) = p.get(obj.args) else {
        return not_plain();
    };
    let no_mutations = obj.mutations.is_empty();
    if is_builtin(module, name, "set") || is_builtin(module, name, "frozenset") {
        let kind = if name == "set" { "set" } else { "frozenset" };
        let mut items = match args.as_slice() {
            [] => Cow::Borrowed(&[][..]),
            [x] => match resolve(p, *x, nest + 1) {
                Node::Seq(items, _) => items,
                _ => return not_plain(),
            },
            _ => return not_plain(),
        };
        for m in &obj.mutations {
            match m {
                Mutation::Add(v) if kind == "set" => items.to_mut().push(*v),
                _ => return not_plain(),
            }
        }
        return Node::Seq(items, kind);
    }
    if module == "_codecs" && name == "encode" && no_mutations {
        return match encode_call(p, args) {
            Some(bytes) => Node::Bytes(Cow::Owned(bytes)),
            None => not_plain(),
        };
    }
    if (is_builtin(module, name, "bytes") || is_builtin(module, name, "bytearray")) && no_mutations
    {
        return match args.as_slice() {
            [] => Node::Bytes(Cow::Borrowed(&[])),
            [x] => match resolve(p, *x, nest + 1) {
                Node::Bytes(b) => Node::Bytes(b),
                Node::Legacy(b) => Node::Bytes(Cow::Borrowed(b)),
                _ => not_plain(),
            },
            // Python 2's bytearray.__reduce__: bytearray(u'...', 'latin-1').
            [_, _] => match encode_call(p, args) {
                Some(bytes) => Node::Bytes(Cow::Owned(bytes)),
                None => not_plain(),
            },
            _ => not_plain(),
        };
    }
    if module == "collections" && name == "OrderedDict" {
        let mut pairs: Cow<'de, [(ValueId, ValueId)]> = match args.as_slice() {
            [] => Cow::Borrowed(&[]),
            // Python 2's OrderedDict.__reduce__: OrderedDict([[k, v], ...]).
            [x] => {
                let Node::Seq(items, _) = resolve(p, *x, nest + 1) else {
                    return not_plain();
                };
                let mut pairs = Vec::with_capacity(items.len());
                for item in items.iter() {
                    match p.get(*item) {
                        Some(Value::List(kv) | Value::Tuple(kv)) if kv.len() == 2 => {
                            pairs.push((kv[0], kv[1]))
                        }
                        _ => return not_plain(),
                    }
                }
                Cow::Owned(pairs)
            }
            _ => return not_plain(),
        };
        for m in &obj.mutations {
            match *m {
                Mutation::SetItem(k, v) => pairs.to_mut().push((k, v)),
                // An OrderedDict without instance attributes has no state, or an empty one.
                Mutation::Build(state) => match p.get(state) {
                    Some(Value::None) => {}
                    Some(Value::Dict(d)) if d.is_empty() => {}
                    _ => return not_plain(),
                },
                _ => return not_plain(),
            }
        }
        return Node::Map(pairs);
    }
    not_plain()
}

/// `_codecs.encode(text, encoding)` for the encodings pickles use; `None` if it is not that.
fn encode_call(p: &Pickle, args: &[ValueId]) -> Option<Vec<u8>> {
    let [text, encoding] = args else {
        return None;
    };
    let (Some(Value::Str(text)), Some(Value::Str(encoding))) = (p.get(*text), p.get(*encoding))
    else {
        return None;
    };
    let encoding = encoding.as_str()?.to_ascii_lowercase().replace('_', "-");
    match encoding.as_str() {
        "latin1" | "latin-1" | "iso-8859-1" | "iso8859-1" | "l1" => {
            text.code_points().map(|cp| u8::try_from(cp).ok()).collect()
        }
        "utf-8" | "utf8" => text.as_str().map(|s| s.as_bytes().to_vec()),
        _ => None,
    }
}

/// Deserializes one value of a [`Pickle`] graph.
///
/// Created by [`from_pickle`](super::from_pickle) and friends for the root, and by the sequence
/// and map accessors for each item.
pub(crate) struct ValueDeserializer<'de, 's> {
    pickle: &'de Pickle,
    state: &'s mut State,
    id: ValueId,
    /// In the key position of a dict: integers may be read as strings (as JSON would).
    key: bool,
}

impl<'de, 's> ValueDeserializer<'de, 's> {
    pub(crate) fn new(pickle: &'de Pickle, state: &'s mut State, id: ValueId) -> Result<Self> {
        state.visit()?;
        Ok(ValueDeserializer {
            pickle,
            state,
            id,
            key: false,
        })
    }

    fn node(&self) -> Node<'de> {
        resolve(self.pickle, self.id, 0)
    }

    /// Dispatch on what the value is, ignoring what the caller asked for.
    fn any_node<V: Visitor<'de>>(self, node: Node<'de>, visitor: V) -> Result<V::Value> {
        match node {
            Node::None => visitor.visit_unit(),
            Node::Bool(b) => visitor.visit_bool(b),
            Node::Int(i) => visitor.visit_i64(i),
            Node::Big(b) => {
                if let Ok(v) = u64::try_from(b) {
                    visitor.visit_u64(v)
                } else if let Ok(v) = i128::try_from(b) {
                    visitor.visit_i128(v)
                } else if let Ok(v) = u128::try_from(b) {
                    visitor.visit_u128(v)
                } else {
                    Err(Error::new(ErrorKind::Message(format!(
                        "integer {} does not fit in 128 bits",
                        short_int(b)
                    ))))
                }
            }
            Node::Float(f) => visitor.visit_f64(f),
            Node::Str(s) => match s.as_str() {
                Some(s) => visitor.visit_borrowed_str(s),
                None => Err(surrogate_error(s)),
            },
            Node::Bytes(Cow::Borrowed(b)) => visitor.visit_borrowed_bytes(b),
            Node::Bytes(Cow::Owned(b)) => visitor.visit_byte_buf(b),
            // Python 3 loads a Python 2 str as ASCII text by default; other bytes stay bytes.
            Node::Legacy(b) => match std::str::from_utf8(b) {
                Ok(s) if b.is_ascii() => visitor.visit_borrowed_str(s),
                _ => visitor.visit_borrowed_bytes(b),
            },
            Node::Seq(items, kind) => self.visit_items(&items, kind, visitor),
            Node::Map(pairs) => {
                let id = self.id;
                self.state.enter(id, "dict")?;
                let mut access = PairAccess {
                    pickle: self.pickle,
                    state: &mut *self.state,
                    pairs: &pairs,
                    pos: 0,
                };
                let result = visitor.visit_map(&mut access);
                let rest = pairs.len() - access.pos;
                self.state.leave(id);
                let value = result?;
                if rest > 0 {
                    return Err(de::Error::invalid_length(
                        pairs.len(),
                        &ExpectedCount(pairs.len() - rest, "map"),
                    ));
                }
                Ok(value)
            }
            Node::Opaque(what) => Err(opaque_error(&what, &visitor)),
        }
    }

    /// [`Self::any_node`] for a caller that asked for a type: `None` is reported as `None`
    /// (serde's unit visitor method would say "unit value").
    fn typed_node<V: Visitor<'de>>(self, node: Node<'de>, visitor: V) -> Result<V::Value> {
        match node {
            Node::None => Err(de::Error::invalid_type(
                de::Unexpected::Other("None"),
                &visitor,
            )),
            node => self.any_node(node, visitor),
        }
    }

    fn visit_items<V: Visitor<'de>>(
        self,
        items: &[ValueId],
        kind: &str,
        visitor: V,
    ) -> Result<V::Value> {
        let id = self.id;
        self.state.enter(id, kind)?;
        let mut access = ItemAccess {
            pickle: self.pickle,
            state: &mut *self.state,
            items,
            pos: 0,
        };
        let result = visitor.visit_seq(&mut access);
        let rest = items.len() - access.pos;
        self.state.leave(id);
        let value = result?;
        if rest > 0 {
            return Err(de::Error::invalid_length(
                items.len(),
                &ExpectedCount(items.len() - rest, "sequence"),
            ));
        }
        Ok(value)
    }

    fn int<T, V>(
        self,
        visitor: V,
        target: &str,
        visit: impl FnOnce(V, T) -> Result<V::Value>,
    ) -> Result<V::Value>
    where
        T: TryFrom<i64> + for<'a> TryFrom<&'a BigInt>,
        V: Visitor<'de>,
    {
        match self.node() {
            Node::Int(i) => match T::try_from(i) {
                Ok(v) => visit(visitor, v),
                Err(_) => Err(range_error(&i.to_string(), target)),
            },
            Node::Big(b) => match T::try_from(b) {
                Ok(v) => visit(visitor, v),
                Err(_) => Err(range_error(&short_int(b), target)),
            },
            node => self.typed_node(node, visitor),
        }
    }
}

/// Visitor expectation "N elements in sequence", as serde's own value deserializers word it.
struct ExpectedCount(usize, &'static str);

impl Expected for ExpectedCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 1 {
            write!(f, "1 element in {}", self.1)
        } else {
            write!(f, "{} elements in {}", self.0, self.1)
        }
    }
}

fn opaque_error(what: &str, expected: &dyn Expected) -> Error {
    let article = if what.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    Error::new(ErrorKind::Message(format!(
        "cannot deserialize {article} {what} into {expected}"
    )))
}

fn range_error(int: &str, target: &str) -> Error {
    Error::new(ErrorKind::Message(format!(
        "integer {int} does not fit in {target}"
    )))
}

/// The decimal digits of `b`, shortened in the middle when very long.
fn short_int(b: &BigInt) -> String {
    let s = b.to_string();
    if s.len() > 60 {
        format!(
            "{}...{} ({} digits)",
            &s[..20],
            &s[s.len() - 20..],
            s.trim_start_matches('-').len()
        )
    } else {
        s
    }
}

fn surrogate_error(s: &PyString) -> Error {
    let cp = s
        .code_points()
        .find(|cp| (0xD800..0xE000).contains(cp))
        .unwrap_or(0xD800);
    Error::new(ErrorKind::Message(format!(
        "str contains the lone surrogate U+{cp:04X}, which a Rust string cannot hold \
         (deserialize it as bytes to get its surrogatepass UTF-8)"
    )))
}

macro_rules! de_int {
    ($($method:ident => $ty:ty, $visit:ident;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            self.int::<$ty, V>(visitor, stringify!($ty), |v, n| v.$visit(n))
        }
    )*};
}

impl<'de> de::Deserializer<'de> for ValueDeserializer<'de, '_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let node = self.node();
        self.any_node(node, visitor)
    }

    de_int! {
        deserialize_i8 => i8, visit_i8;
        deserialize_i16 => i16, visit_i16;
        deserialize_i32 => i32, visit_i32;
        deserialize_i64 => i64, visit_i64;
        deserialize_i128 => i128, visit_i128;
        deserialize_u8 => u8, visit_u8;
        deserialize_u16 => u16, visit_u16;
        deserialize_u32 => u32, visit_u32;
        deserialize_u64 => u64, visit_u64;
        deserialize_u128 => u128, visit_u128;
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.node() {
            // Python code passes ints where floats are expected; accept them like `float(x)`.
            Node::Int(i) => visitor.visit_f64(i as f64),
            Node::Big(b) => match b.to_f64().filter(|f| f.is_finite()) {
                Some(f) => visitor.visit_f64(f),
                None => Err(Error::new(ErrorKind::Message(format!(
                    "integer {} is too large to convert to float",
                    short_int(b)
                )))),
            },
            node => self.typed_node(node, visitor),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let node = self.node();
        self.typed_node(node, visitor)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.node() {
            Node::Legacy(b) => match std::str::from_utf8(b) {
                Ok(s) => visitor.visit_borrowed_str(s),
                Err(_) => visitor.visit_borrowed_bytes(b),
            },
            Node::Int(i) if self.key => visitor.visit_string(i.to_string()),
            Node::Big(b) if self.key => visitor.visit_string(b.to_string()),
            node => self.typed_node(node, visitor),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.node() {
            // A str as bytes: its UTF-8, lone surrogates passed through.
            Node::Str(s) => visitor.visit_borrowed_bytes(s.as_bytes()),
            Node::Legacy(b) => visitor.visit_borrowed_bytes(b),
            node => self.typed_node(node, visitor),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.pickle.get(self.id) {
            Some(Value::None) => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_any(visitor)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_any(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.node() {
            // `Vec<u8>` and `[u8; N]` from bytes.
            Node::Bytes(b) => visitor.visit_seq(ByteAccess { bytes: &b, pos: 0 }),
            Node::Legacy(b) => visitor.visit_seq(ByteAccess { bytes: b, pos: 0 }),
            node => self.typed_node(node, visitor),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let node = self.node();
        self.typed_node(node, visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        let node = self.node();
        self.typed_node(node, visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        match self.node() {
            Node::Str(_) | Node::Legacy(_) => visitor.visit_enum(Variant {
                pickle: self.pickle,
                state: self.state,
                name: self.id,
                value: None,
            }),
            Node::Map(pairs) if pairs.len() == 1 => {
                let (name, value) = pairs[0];
                let id = self.id;
                self.state.enter(id, "dict")?;
                let result = visitor.visit_enum(Variant {
                    pickle: self.pickle,
                    state: &mut *self.state,
                    name,
                    value: Some(value),
                });
                self.state.leave(id);
                result
            }
            Node::Opaque(what) => Err(opaque_error(&what, &visitor)),
            node => Err(de::Error::invalid_type(
                unexpected(&node),
                &"a str or a dict with one entry (an enum)",
            )),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        // Nothing to look at: skipping never walks into the value.
        visitor.visit_unit()
    }
}

fn unexpected<'a>(node: &'a Node<'_>) -> de::Unexpected<'a> {
    use de::Unexpected as U;
    match node {
        Node::None => U::Other("None"),
        Node::Bool(b) => U::Bool(*b),
        Node::Int(i) => U::Signed(*i),
        Node::Big(_) => U::Other("int"),
        Node::Float(f) => U::Float(*f),
        Node::Str(s) => match s.as_str() {
            Some(s) => U::Str(s),
            None => U::Other("str"),
        },
        Node::Bytes(b) => U::Bytes(b),
        Node::Legacy(b) => U::Bytes(b),
        Node::Seq(_, kind) => U::Other(kind),
        Node::Map(_) => U::Map,
        Node::Opaque(_) => U::Other("object"),
    }
}

/// The items of a list, tuple, set or frozenset.
struct ItemAccess<'de, 's, 'i> {
    pickle: &'de Pickle,
    state: &'s mut State,
    items: &'i [ValueId],
    pos: usize,
}

impl<'de> SeqAccess<'de> for &mut ItemAccess<'de, '_, '_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        let Some(&id) = self.items.get(self.pos) else {
            return Ok(None);
        };
        self.pos += 1;
        seed.deserialize(ValueDeserializer::new(self.pickle, self.state, id)?)
            .map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len() - self.pos)
    }
}

/// The entries of a dict.
struct PairAccess<'de, 's, 'i> {
    pickle: &'de Pickle,
    state: &'s mut State,
    pairs: &'i [(ValueId, ValueId)],
    pos: usize,
}

impl<'de> MapAccess<'de> for &mut PairAccess<'de, '_, '_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        let Some(&(key, _)) = self.pairs.get(self.pos) else {
            return Ok(None);
        };
        let mut de = ValueDeserializer::new(self.pickle, self.state, key)?;
        de.key = true;
        seed.deserialize(de).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        let Some(&(_, value)) = self.pairs.get(self.pos) else {
            return Err(de::Error::custom("next_value called before next_key"));
        };
        self.pos += 1;
        seed.deserialize(ValueDeserializer::new(self.pickle, self.state, value)?)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.pairs.len() - self.pos)
    }
}

/// The bytes of a `bytes` value as a sequence of `u8`.
struct ByteAccess<'b> {
    bytes: &'b [u8],
    pos: usize,
}

impl<'de> SeqAccess<'de> for ByteAccess<'_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        let Some(&b) = self.bytes.get(self.pos) else {
            return Ok(None);
        };
        self.pos += 1;
        seed.deserialize(b.into_deserializer()).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.bytes.len() - self.pos)
    }
}

/// An externally tagged enum: `"Variant"` or `{"Variant": value}`.
struct Variant<'de, 's> {
    pickle: &'de Pickle,
    state: &'s mut State,
    name: ValueId,
    value: Option<ValueId>,
}

impl<'de, 's> EnumAccess<'de> for Variant<'de, 's> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<(T::Value, Self)> {
        let mut de = ValueDeserializer::new(self.pickle, self.state, self.name)?;
        de.key = true;
        let tag = seed.deserialize(de)?;
        Ok((tag, self))
    }
}

impl<'de> VariantAccess<'de> for Variant<'de, '_> {
    type Error = Error;

    fn unit_variant(self) -> Result<()> {
        match self.value {
            None => Ok(()),
            Some(id) => match self.pickle.get(id) {
                Some(Value::None) => Ok(()),
                _ => Err(de::Error::invalid_type(
                    unexpected(&resolve(self.pickle, id, 0)),
                    &"unit variant",
                )),
            },
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value> {
        match self.value {
            Some(id) => seed.deserialize(ValueDeserializer::new(self.pickle, self.state, id)?),
            None => Err(de::Error::invalid_type(
                de::Unexpected::UnitVariant,
                &"newtype variant",
            )),
        }
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value> {
        match self.value {
            Some(id) => de::Deserializer::deserialize_seq(
                ValueDeserializer::new(self.pickle, self.state, id)?,
                visitor,
            ),
            None => Err(de::Error::invalid_type(
                de::Unexpected::UnitVariant,
                &"tuple variant",
            )),
        }
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        match self.value {
            Some(id) => de::Deserializer::deserialize_map(
                ValueDeserializer::new(self.pickle, self.state, id)?,
                visitor,
            ),
            None => Err(de::Error::invalid_type(
                de::Unexpected::UnitVariant,
                &"struct variant",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use ::serde::Deserialize;

    use crate::limits::Limits;
    use crate::serde::{from_pickle, from_slice, from_slice_with};
    use crate::value::Pickle;

    fn err<T: ::serde::de::DeserializeOwned + std::fmt::Debug>(data: &[u8]) -> String {
        from_slice::<T>(data).unwrap_err().to_string()
    }

    #[test]
    fn python2_reduce_forms_read_as_plain_data() {
        // bytearray(u'\xe9a', 'latin-1'), as Python 2's bytearray.__reduce__ writes it
        let data = b"\x80\x02c__builtin__\nbytearray\nq\x00X\x03\x00\x00\x00\xc3\xa9aq\x01X\x07\x00\x00\x00latin-1q\x02\x86q\x03Rq\x04.";
        assert_eq!(from_slice::<Vec<u8>>(data).unwrap(), b"\xe9a");
        // OrderedDict([['a', 1], ['b', 2]]), as Python 2's OrderedDict.__reduce__ writes it
        let data = b"\x80\x02ccollections\nOrderedDict\nq\x00]q\x01(]q\x02(X\x01\x00\x00\x00aq\x03K\x01e]q\x04(X\x01\x00\x00\x00bq\x05K\x02ee\x85q\x06Rq\x07.";
        let got: Vec<(String, i32)> = from_slice::<BTreeMap<String, i32>>(data)
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(got, [("a".into(), 1), ("b".into(), 2)]);
        // Python 2 str: text when it is UTF-8, bytes otherwise
        assert_eq!(from_slice::<String>(b"U\x02hi.").unwrap(), "hi");
        assert_eq!(
            from_slice::<Vec<u8>>(b"U\x02\xff\x00.").unwrap(),
            b"\xff\x00"
        );
        assert_eq!(
            from_slice::<serde_json::Value>(b"U\x02hi.").unwrap(),
            serde_json::json!("hi")
        );
    }

    #[test]
    fn near_miss_encodings_are_objects() {
        // _codecs.encode('\u0100', 'latin1') cannot be latin-1
        let data = b"\x80\x02c_codecs\nencode\nq\x00X\x02\x00\x00\x00\xc4\x80q\x01X\x06\x00\x00\x00latin1q\x02\x86q\x03Rq\x04.";
        assert_eq!(
            err::<Vec<u8>>(data),
            "cannot deserialize a _codecs.encode object into a sequence"
        );
        // builtins.set with two arguments
        let data = b"\x80\x03cbuiltins\nset\n)K\x01\x86R.";
        assert_eq!(
            err::<Vec<u8>>(data),
            "cannot deserialize a builtins.set object into a sequence"
        );
        assert_eq!(
            err::<String>(b"\x80\x03cos\nsystem\n."),
            "cannot deserialize a global os.system into a string"
        );
        assert_eq!(
            err::<i32>(b"\x80\x02K\x01\x88\x85\x81."),
            "cannot deserialize an object built by calling a computed value into i32"
        );
        // BUILD on a list
        assert_eq!(
            err::<Vec<i32>>(b"]}b."),
            "cannot deserialize a list modified after creation (BUILD or SETITEM) into a sequence"
        );
    }

    #[derive(Debug, PartialEq, Deserialize)]
    enum E {
        A,
        B(i32),
    }

    #[test]
    fn enums_tuples_and_lengths() {
        assert_eq!(from_slice::<E>(b"X\x01\x00\x00\x00A.").unwrap(), E::A);
        assert_eq!(
            from_slice::<E>(b"}X\x01\x00\x00\x00BK\x07s.").unwrap(),
            E::B(7)
        );
        assert_eq!(from_slice::<E>(b"}X\x01\x00\x00\x00ANs.").unwrap(), E::A);
        assert_eq!(
            err::<E>(b"K\x01."),
            "invalid type: integer `1`, expected a str or a dict with one entry (an enum)"
        );
        assert_eq!(
            err::<E>(b"X\x01\x00\x00\x00C."),
            "unknown variant `C`, expected `A` or `B`"
        );
        assert_eq!(
            err::<E>(b"X\x01\x00\x00\x00B."),
            "invalid type: unit variant, expected newtype variant"
        );
        // (1, 2, 3) into a pair
        assert_eq!(
            err::<(i32, i32)>(b"\x80\x02K\x01K\x02K\x03\x87q\x00."),
            "invalid length 3, expected 2 elements in sequence"
        );
        assert_eq!(from_slice::<[u8; 2]>(b"C\x02ab.").unwrap(), *b"ab");
    }

    #[test]
    fn borrows_from_a_pickle() {
        let p =
            Pickle::from_slice(b"\x80\x03(X\x02\x00\x00\x00hiq\x00C\x02\x00\x01q\x01t.").unwrap();
        let (s, b): (&str, &[u8]) = from_pickle(&p).unwrap();
        assert_eq!((s, b), ("hi", &b"\x00\x01"[..]));
    }

    /// 2**k references to one list of 8 ints, built with DUP+TUPLE2 k times.
    fn laughs(k: usize) -> Vec<u8> {
        let mut data = b"\x80\x02](K\x01K\x01K\x01K\x01K\x01K\x01K\x01K\x01e".to_vec();
        for _ in 0..k {
            data.extend_from_slice(b"2\x86");
        }
        data.push(b'.');
        data
    }

    #[test]
    fn expansion_is_bounded_and_skipping_does_not_walk() {
        let data = laughs(60);
        let e = err::<serde_json::Value>(&data);
        assert!(e.starts_with("value graph expands beyond 1052"), "{e}");
        // IgnoredAny never descends.
        from_slice::<::serde::de::IgnoredAny>(&data).unwrap();
        // Raising max_alloc lifts the arena-based bound: 2**12 * 9 values are fine.
        let small = laughs(12);
        let limits = Limits::builder()
            .max_alloc(Limits::DEFAULT_MAX_ALLOC * 2)
            .build();
        from_slice_with::<serde_json::Value>(&small, &limits).unwrap();
        // A small max_alloc lowers it.
        let limits = Limits::builder().max_alloc(32 * 100).build();
        assert_eq!(
            from_slice_with::<serde_json::Value>(&small, &limits)
                .unwrap_err()
                .to_string(),
            "value graph expands beyond 100 values (shared references or a cycle)"
        );
    }

    #[test]
    fn int_targets() {
        assert_eq!(
            from_slice::<u64>(b"\x8a\x09\xff\xff\xff\xff\xff\xff\xff\xff\x00.").unwrap(),
            u64::MAX
        );
        assert_eq!(
            err::<i8>(b"J\x7f\xff\xff\xff."),
            "integer -129 does not fit in i8"
        );
        assert_eq!(from_slice::<i8>(b"J\x80\xff\xff\xff.").unwrap(), -128);
        assert_eq!(
            err::<u8>(b"J\x00\x01\x00\x00."),
            "integer 256 does not fit in u8"
        );
        assert_eq!(from_slice::<f64>(b"K\x03.").unwrap(), 3.0);
        assert_eq!(
            err::<bool>(b"K\x03."),
            "invalid type: integer `3`, expected a boolean"
        );
        assert_eq!(err::<i32>(b"N."), "invalid type: None, expected i32");
    }
}
