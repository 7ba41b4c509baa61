//! What a pickle means, held as data, without running anything.
//!
//! A pickle is a program for a small stack machine; running it in Python calls constructors,
//! imports modules and may do anything. The *value machine* in this module runs the same program
//! symbolically: containers and scalars become [`Value`]s, and everything that would execute code
//! (looking up a global, calling it, applying state) is recorded as data — [`Global`], [`Object`],
//! [`Mutation`] — to be inspected, converted to JSON, or written back out.
//!
//! # Why an arena
//! Pickles share and cycle: the memo lets one object appear in many places, or inside itself.
//! [`Pickle`] therefore stores values in one vector and containers refer to their items by
//! [`ValueId`]. A shared object is simply the same id in two places; a cycle is an id that points
//! back up. There is no reference counting, nothing leaks, dropping a million-deep nest is a flat
//! loop, and the whole graph is `Send + Sync`.
//!
//! ```
//! use brinery::{Pickle, Value};
//! // l = []; l.append(l); pickle.dumps(l, 2)
//! let p = Pickle::from_slice(b"\x80\x02]q\x00h\x00a.").unwrap();
//! let Value::List(items) = &p[p.root()] else { panic!() };
//! assert_eq!(items, &[p.root()]); // the list contains itself
//! ```

mod read;
mod write;

use std::ops::{Index, IndexMut};

pub use num_bigint::BigInt;
pub use read::{read_one, Reader};
pub use thin_vec::{thin_vec, ThinVec};

use crate::error::Result;
use crate::limits::Limits;
use crate::pystr::PyString;

/// Refers to one value in a [`Pickle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub(crate) u32);

impl ValueId {
    /// The position of the value in [`Pickle::values`].
    #[inline]
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// One value of the graph. Containers refer to their items by [`ValueId`].
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `None`.
    None,
    /// `True` or `False`.
    Bool(bool),
    /// An `int` that fits in 64 bits.
    Int(i64),
    /// An `int` that does not fit in 64 bits.
    BigInt(Box<BigInt>),
    /// A `float`.
    Float(f64),
    /// A `str`.
    Str(PyString),
    /// A `bytes`.
    Bytes(Box<Vec<u8>>),
    /// A `bytearray`.
    ByteArray(Box<Vec<u8>>),
    /// A Python 2 `str` (`STRING`, `BINSTRING`, `SHORT_BINSTRING`): raw bytes whose meaning
    /// depends on the `encoding` given when loading (`'ASCII'` by default, `'bytes'`, `'latin1'`).
    LegacyStr(Box<Vec<u8>>),
    /// A `list`.
    List(ThinVec<ValueId>),
    /// A `tuple`.
    Tuple(ThinVec<ValueId>),
    /// A `dict`, as key/value pairs in stream order (a repeated key is kept; the last one wins
    /// when Python loads it).
    Dict(ThinVec<(ValueId, ValueId)>),
    /// A `set`.
    Set(ThinVec<ValueId>),
    /// A `frozenset`.
    FrozenSet(ThinVec<ValueId>),
    /// A reference to a module-level name, e.g. `collections.OrderedDict`.
    Global(Box<Global>),
    /// A `STACK_GLOBAL` whose module or name is computed while loading (not a constant string).
    DynamicGlobal {
        /// The value that would become the module name.
        module: ValueId,
        /// The value that would become the qualified name.
        name: ValueId,
    },
    /// The result of a call (`REDUCE`, `NEWOBJ`, `NEWOBJ_EX`, `INST`, `OBJ`) and what was done to
    /// it afterwards.
    Object(Box<Object>),
    /// An object the unpickler's `persistent_load` resolves from this id.
    PersistentId(ValueId),
    /// An object from the `copyreg` extension registry, by code.
    Ext(u32),
    /// The `index`-th out-of-band buffer (`NEXT_BUFFER`), made read-only by `READONLY_BUFFER`.
    Buffer {
        /// Position among the out-of-band buffers of this pickle, from 0.
        index: u32,
        /// Whether `READONLY_BUFFER` followed.
        readonly: bool,
    },
    /// `READONLY_BUFFER` applied to something other than a fresh out-of-band buffer.
    ReadOnly(ValueId),
    /// A value that received operations a plain value of its kind cannot absorb, e.g. `BUILD` on
    /// a list or on a global. The original value is `base`.
    Mutated(Box<Mutated>),
}

impl Value {
    /// A short name of the variant, for messages: `"list"`, `"global"`, ...
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::ByteArray(_) => "bytearray",
            Value::LegacyStr(_) => "legacy str",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Dict(_) => "dict",
            Value::Set(_) => "set",
            Value::FrozenSet(_) => "frozenset",
            Value::Global(_) | Value::DynamicGlobal { .. } => "global",
            Value::Object(_) => "object",
            Value::PersistentId(_) => "persistent id",
            Value::Ext(_) => "extension",
            Value::Buffer { .. } | Value::ReadOnly(_) => "buffer",
            Value::Mutated(_) => "mutated value",
        }
    }

    /// The text of a `str` value that is valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => s.as_str(),
            _ => None,
        }
    }

    /// Calls `f` with the id of every value this one refers to directly, in stream order.
    pub fn for_each_child(&self, mut f: impl FnMut(ValueId)) {
        match self {
            Value::List(items)
            | Value::Tuple(items)
            | Value::Set(items)
            | Value::FrozenSet(items) => items.iter().copied().for_each(f),
            Value::Dict(pairs) => pairs.iter().for_each(|&(k, v)| {
                f(k);
                f(v)
            }),
            Value::DynamicGlobal { module, name } => {
                f(*module);
                f(*name)
            }
            Value::Object(obj) => {
                f(obj.callable);
                f(obj.args);
                if let Some(kw) = obj.kwargs {
                    f(kw)
                }
                obj.mutations.iter().for_each(|m| m.for_each_child(&mut f));
            }
            Value::PersistentId(id) | Value::ReadOnly(id) => f(*id),
            Value::Mutated(m) => {
                f(m.base);
                m.mutations.iter().for_each(|mu| mu.for_each_child(&mut f));
            }
            _ => {}
        }
    }
}

/// A reference to a module-level name: what `GLOBAL`, `STACK_GLOBAL` and `INST` look up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Global {
    /// The module, e.g. `"collections"`.
    pub module: PyString,
    /// The (possibly dotted) qualified name, e.g. `"OrderedDict"`.
    pub name: PyString,
}

/// How an object was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallKind {
    /// `REDUCE`: `callable(*args)`.
    Reduce,
    /// `NEWOBJ`: `cls.__new__(cls, *args)`.
    NewObj,
    /// `NEWOBJ_EX`: `cls.__new__(cls, *args, **kwargs)`.
    NewObjEx,
    /// `INST`: the protocol-0 instance opcode, `callable` is the class named in the stream.
    Inst,
    /// `OBJ`: the protocol-1 instance opcode.
    Obj,
}

/// The result of a call, and the operations applied to it afterwards.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// How it was created.
    pub kind: CallKind,
    /// What is called: a class or function, usually a [`Value::Global`].
    pub callable: ValueId,
    /// The positional arguments, usually a [`Value::Tuple`].
    pub args: ValueId,
    /// The keyword arguments of `NEWOBJ_EX`, usually a [`Value::Dict`].
    pub kwargs: Option<ValueId>,
    /// `APPEND`/`SETITEM`/`ADDITEMS`/`BUILD` applied to the object, in stream order.
    pub mutations: Vec<Mutation>,
}

impl Object {
    /// The state of the last `BUILD`, which is what `__setstate__` receives.
    pub fn state(&self) -> Option<ValueId> {
        self.mutations.iter().rev().find_map(|m| match m {
            Mutation::Build(state) => Some(*state),
            _ => None,
        })
    }
}

/// A value plus operations applied to it that its kind cannot absorb (see [`Value::Mutated`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Mutated {
    /// The value as first created.
    pub base: ValueId,
    /// The operations, in stream order.
    pub mutations: Vec<Mutation>,
}

/// An operation applied to an existing object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mutation {
    /// `APPEND`/`APPENDS`: `obj.append(item)` (or `extend`).
    Append(ValueId),
    /// `SETITEM`/`SETITEMS`: `obj[key] = value`.
    SetItem(ValueId, ValueId),
    /// `ADDITEMS`: `obj.add(item)`.
    Add(ValueId),
    /// `BUILD`: `obj.__setstate__(state)` or an update of `obj.__dict__`.
    Build(ValueId),
    /// A value built while this object was on top of the stack and then thrown away by `POP`
    /// or `POP_MARK`, e.g. the `state_setter(obj, state)` call of a 6-item `__reduce__`. Building
    /// it may have effects (it can be a call), so the model keeps it, in stream order.
    Discard(ValueId),
}

impl Mutation {
    /// Calls `f` with each value the operation refers to.
    pub fn for_each_child(&self, mut f: impl FnMut(ValueId)) {
        match *self {
            Mutation::Append(v) | Mutation::Add(v) | Mutation::Build(v) | Mutation::Discard(v) => {
                f(v)
            }
            Mutation::SetItem(k, v) => {
                f(k);
                f(v)
            }
        }
    }
}

/// A decoded pickle: an arena of [`Value`]s and the id of the root.
#[derive(Debug, Clone)]
pub struct Pickle {
    values: Vec<Value>,
    root: ValueId,
    protocol: u8,
    discarded: Vec<ValueId>,
    /// The length of the pickle this one was read from (0 if built by hand): the writer sizes
    /// its output from it. Not part of the value, so not compared.
    read_len: usize,
    /// Which values the stream this pickle was read from referenced more than once, as a bit
    /// per id (see [`Pickle::referenced_once`]); `None` for a pickle built or changed by hand.
    /// Not part of the value, so not compared.
    shared: Option<SharedBits>,
}

/// A bit per value id; ids past the end have their bit clear.
#[derive(Debug, Clone, Default)]
pub(crate) struct SharedBits(Vec<u64>);

impl SharedBits {
    #[inline]
    pub(crate) fn set(&mut self, id: ValueId) {
        let (word, bit) = (id.index() / 64, id.index() % 64);
        if word >= self.0.len() {
            self.0.resize(word + 1, 0);
        }
        self.0[word] |= 1 << bit;
    }

    #[inline]
    pub(crate) fn get(&self, id: ValueId) -> bool {
        self.0
            .get(id.index() / 64)
            .is_some_and(|w| w >> (id.index() % 64) & 1 != 0)
    }
}

impl PartialEq for Pickle {
    fn eq(&self, other: &Self) -> bool {
        self.values == other.values
            && self.root == other.root
            && self.protocol == other.protocol
            && self.discarded == other.discarded
    }
}

impl Pickle {
    /// A pickle holding only `None`. Add values with [`Pickle::push`] and pick the root with
    /// [`Pickle::set_root`] to build one by hand.
    pub fn new() -> Self {
        Pickle {
            values: vec![Value::None],
            root: ValueId(0),
            protocol: 0,
            discarded: Vec::new(),
            read_len: 0,
            shared: None,
        }
    }

    /// Read one pickle from `data` with the default [`Limits`]. Bytes after `STOP` are ignored,
    /// as `pickle.loads` ignores them; use [`read_one`] to learn where the pickle ended.
    pub fn from_slice(data: &[u8]) -> Result<Pickle> {
        Self::from_slice_with(data, &Limits::default())
    }

    /// Read one pickle from `data` with the given limits.
    pub fn from_slice_with(data: &[u8], limits: &Limits) -> Result<Pickle> {
        read_one(data, limits).map(|(pickle, _end)| pickle)
    }

    /// Read one pickle from a reader (the input is read up to [`Limits::max_input`] bytes).
    pub fn from_reader<R: std::io::Read>(reader: R, limits: &Limits) -> Result<Pickle> {
        let mut data = Vec::new();
        let read = std::io::Read::read_to_end(
            &mut std::io::Read::take(reader, limits.max_input().saturating_add(1)),
            &mut data,
        )?;
        if read as u64 > limits.max_input() {
            return Err(crate::ErrorKind::LimitExceeded {
                what: "input size",
                limit: limits.max_input(),
            }
            .into());
        }
        Self::from_slice_with(&data, limits)
    }

    /// The root value: what `pickle.loads` returns.
    #[inline]
    pub fn root(&self) -> ValueId {
        self.root
    }

    /// Make `id` the root.
    pub fn set_root(&mut self, id: ValueId) {
        assert!(
            id.index() < self.values.len(),
            "ValueId from another Pickle"
        );
        self.shared = None;
        self.root = id;
    }

    /// The protocol declared by the stream's `PROTO` opcode (0 if there was none).
    pub fn protocol(&self) -> u8 {
        self.protocol
    }

    /// Values built and then thrown away with nothing below them on the stack (a `POP` of the
    /// only value), or left below the root at `STOP`, in stream order. `pickle.loads` builds them
    /// (which may have effects: they can be calls) before it returns the root. Values thrown away
    /// while another value was on the stack are [`Mutation::Discard`]s of that value instead.
    pub fn discarded(&self) -> &[ValueId] {
        &self.discarded
    }

    /// Record a value to be built and thrown away before the root (see [`Pickle::discarded`]).
    pub fn push_discarded(&mut self, id: ValueId) {
        assert!(
            id.index() < self.values.len(),
            "ValueId from another Pickle"
        );
        self.shared = None;
        self.discarded.push(id);
    }

    /// Add a value to the arena and return its id.
    ///
    /// # Panics
    /// If the arena already holds `u32::MAX` values.
    pub fn push(&mut self, value: Value) -> ValueId {
        let id = ValueId(u32::try_from(self.values.len()).expect("more than u32::MAX values"));
        self.shared = None;
        self.values.push(value);
        id
    }

    /// The value with id `id`, or `None` if the id is out of range.
    #[inline]
    pub fn get(&self, id: ValueId) -> Option<&Value> {
        self.values.get(id.index())
    }

    /// All values, indexed by [`ValueId::index`].
    #[inline]
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// How many values the arena holds.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True if the arena holds no values (never the case for a decoded pickle).
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub(crate) fn from_parts(
        values: Vec<Value>,
        root: ValueId,
        protocol: u8,
        discarded: Vec<ValueId>,
        read_len: usize,
        shared: SharedBits,
    ) -> Self {
        Pickle {
            values,
            root,
            protocol,
            discarded,
            read_len,
            shared: Some(shared),
        }
    }

    /// True if `id` is known to be referenced exactly once in the graph (by one container slot,
    /// one argument, the root or one discarded entry): the pickle was read from a stream that
    /// never fetched it from the memo (`GET`) nor duplicated it (`DUP`), and has not been changed
    /// since. Every other way a stream places a value moves it off the stack into one place.
    /// The writer keeps no memo record for such values: nothing will look them up.
    #[inline]
    pub(crate) fn referenced_once(&self, id: ValueId) -> bool {
        self.shared.as_ref().is_some_and(|bits| !bits.get(id))
    }

    /// The values the stream referenced more than once (see
    /// [`referenced_once`](Self::referenced_once)); `None` when that is unknown.
    #[inline]
    pub(crate) fn shared_bits(&self) -> Option<&SharedBits> {
        self.shared.as_ref()
    }

    /// How many bytes to reserve for writing at `protocol`: about the size of the pickle this
    /// one was read from, so that writing it back allocates the output once (no regrowth, no
    /// copies, no capacity left at twice the size). Going from a protocol with short opcodes
    /// (`SHORT_BINUNICODE`, `MEMOIZE`) to one without can make the output longer, hence the
    /// larger margin there. A hint only: the output grows past it if it must.
    pub(crate) fn output_capacity(&self, protocol: u8) -> usize {
        let n = self.read_len;
        if n == 0 {
            return 4096;
        }
        let margin = if protocol < self.protocol || protocol == 0 {
            n / 2
        } else {
            n / 16
        };
        n.saturating_add(margin).saturating_add(64)
    }
}

impl Default for Pickle {
    fn default() -> Self {
        Pickle::new()
    }
}

impl Index<ValueId> for Pickle {
    type Output = Value;

    #[inline]
    fn index(&self, id: ValueId) -> &Value {
        &self.values[id.index()]
    }
}

impl IndexMut<ValueId> for Pickle {
    #[inline]
    fn index_mut(&mut self, id: ValueId) -> &mut Value {
        // An edit may add references to any value.
        self.shared = None;
        &mut self.values[id.index()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_stays_small() {
        assert!(
            std::mem::size_of::<Value>() <= 16,
            "{}",
            std::mem::size_of::<Value>()
        );
    }

    #[test]
    fn pickle_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Pickle>();
    }
}
