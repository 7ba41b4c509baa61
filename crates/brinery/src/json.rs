//! JSON export of the value model: plain JSON for plain data, tagged objects for the rest.
//!
//! Dicts with `str` keys, lists, `str`, ints that fit in 64 bits, floats, bools and `None` become
//! the JSON you would write by hand. Everything JSON has no word for — tuples, sets, bytes, big
//! ints, non-finite floats, non-`str` keys, globals, calls, shared references and cycles — becomes
//! a *tagged object*: a JSON object with one key starting with `$` that names what it is, e.g.
//! `{"$tuple": [1, 2]}`. A plain dict never has a key starting with `$` (such dicts are written in
//! the tagged `{"$dict": [[key, value], ...]}` form), so the two can never be confused.
//!
//! ```
//! use brinery::Pickle;
//! // pickle.dumps({"a": (1, 2.0), "b": b"hi"}, protocol=4)
//! let data = b"\x80\x04\x95\x1f\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01a\x94K\x01\
//!              G@\x00\x00\x00\x00\x00\x00\x00\x86\x94\x8c\x01b\x94C\x02hi\x94u.";
//! let p = Pickle::from_slice(data).unwrap();
//! assert_eq!(
//!     brinery::json::to_json(&p),
//!     r#"{"a":{"$tuple":[1,2.0]},"b":{"$bytes":"aGk="}}"#
//! );
//! assert_eq!(p.to_json(), brinery::json::to_json(&p)); // the same, as a method
//! assert!(brinery::json::to_json_pretty(&p).starts_with("{\n  \"a\": {\n    \"$tuple\": [\n"));
//! ```
//!
//! The full mapping, with a Python example for every row, is in `docs/json-mapping.md`. In short:
//!
//! | Python | JSON |
//! |---|---|
//! | `None`, `True`, `1`, `1.5`, `"s"`, `[...]`, `{"k": ...}` | `null`, `true`, `1`, `1.5`, `"s"`, `[...]`, `{"k": ...}` |
//! | `2**64`, `float("nan")` | `{"$int": "18446744073709551616"}`, `{"$float": "nan"}` |
//! | `(1,)`, `{1}`, `frozenset()` | `{"$tuple": [1]}`, `{"$set": [1]}`, `{"$frozenset": []}` |
//! | `b"hi"`, `bytearray(b"hi")` | `{"$bytes": "aGk="}`, `{"$bytearray": "aGk="}` (base64) |
//! | Python 2 `str` | `{"$str2": "ascii text"}` or `{"$bytes2": "<base64>"}` |
//! | `{1: 2}`, `{"$x": 1}` | `{"$dict": [[1, 2]]}`, `{"$dict": [["$x", 1]]}` |
//! | `collections.OrderedDict` (the class) | `{"$global": ["collections", "OrderedDict"]}` |
//! | an object | `{"$object": "reduce", "callable": ..., "args": [...], "state": ...}` |
//! | `a = [1]; [a, a]` | `[{"$id": 0, "$list": [1]}, {"$ref": 0}]` |
//!
//! # Sharing and cycles
//! A value reachable more than once (through the pickle's memo) is written in full the first time,
//! with an extra `"$id": n` member, and as `{"$ref": n}` everywhere after; ids count from 0 in
//! document order. A list or a plain dict that needs an id is written in its tagged form
//! (`{"$id": 0, "$list": [...]}`, `{"$id": 0, "$dict": [...]}`). A cycle is a `$ref` to an
//! ancestor. Scalars whose identity carries no meaning are repeated instead: `None`, bools, ints
//! and floats, extension codes, buffers, and `str`/`bytes`/big ints/globals of at most
//! [`REPEAT_MAX_BYTES`] bytes. Longer ones get ids too, so the output is always linear in the size
//! of the value graph (a "billion laughs" pickle stays small) and never in the number of paths.
//!
//! # Cost
//! The writer is iterative (an explicit stack: a list nested a million deep is fine), visits every
//! reachable value exactly once, and writes straight into a `String` or a buffered writer.
#![forbid(unsafe_code)]

use std::collections::{HashMap, HashSet};
use std::io;

use crate::error::Result;
use crate::pystr::PyString;
use crate::value::{CallKind, Mutation, Pickle, Value, ValueId};

/// Shared `str`, `bytes`, Python 2 `str`, big ints and globals up to this many bytes (UTF-8 text,
/// raw bytes, two's-complement size, module plus name) are repeated; longer ones get an id.
pub const REPEAT_MAX_BYTES: usize = 64;

/// Big ints up to this many bits are written in decimal; larger ones in hexadecimal
/// (`"0x..."`/`"-0x..."`), which is linear to produce and to parse, and which Python reads with
/// `int(s, 0)` without hitting `sys.get_int_max_str_digits()` (4300 digits by default).
pub const DECIMAL_MAX_BITS: u64 = 14_000;

/// Past this nesting depth, pretty output stops indenting further, so that deeply nested data
/// does not produce output quadratic in its depth.
const MAX_INDENT_LEVELS: usize = 100;

/// [`to_writer`] hands its buffer to the writer whenever it grows past this size.
const FLUSH_AT: usize = 1 << 16;

/// How [`to_writer`] formats its output.
///
/// ```
/// let opts = brinery::json::Options { pretty: true };
/// assert_eq!(brinery::json::Options::default(), brinery::json::Options { pretty: false });
/// # let _ = opts;
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Options {
    /// `false` (the default): compact, no whitespace at all. `true`: two-space indentation, one
    /// item per line, like Python's `json.dumps(obj, indent=2)`; small tagged objects that hold
    /// no nested values (`{"$int": "..."}`, `{"$ref": 3}`, `{"$global": [...]}`, ...) stay on one
    /// line.
    pub pretty: bool,
}

/// The JSON for `p`, compact.
///
/// ```
/// // pickle.dumps([1, (2, None)], protocol=2)
/// let p = brinery::Pickle::from_slice(b"\x80\x02]q\x00(K\x01K\x02N\x86q\x01e.").unwrap();
/// assert_eq!(brinery::json::to_json(&p), r#"[1,{"$tuple":[2,null]}]"#);
/// ```
pub fn to_json(p: &Pickle) -> String {
    let mut e = Emitter::new(p, false, None);
    // Without a sink nothing can fail.
    let _ = e.run();
    e.out.buf
}

/// The JSON for `p`, indented with two spaces.
///
/// ```
/// // pickle.dumps({"a": [1]}, protocol=2)
/// let p = brinery::Pickle::from_slice(b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01]q\x02K\x01as.").unwrap();
/// assert_eq!(brinery::json::to_json_pretty(&p), "{\n  \"a\": [\n    1\n  ]\n}");
/// ```
pub fn to_json_pretty(p: &Pickle) -> String {
    let mut e = Emitter::new(p, true, None);
    let _ = e.run();
    e.out.buf
}

/// Write the JSON for `p` to `w`, formatted as `options` say. The output is buffered internally
/// (in chunks of 64 KiB), so `w` need not be a `BufWriter`; it is not flushed.
///
/// # Errors
/// Only the errors of `w`, as [`ErrorKind::Io`](crate::ErrorKind::Io).
///
/// ```
/// let p = brinery::Pickle::from_slice(b"\x80\x04N.").unwrap();
/// let mut out = Vec::new();
/// brinery::json::to_writer(&p, &mut out, &brinery::json::Options::default()).unwrap();
/// assert_eq!(out, b"null");
/// ```
pub fn to_writer<W: io::Write>(p: &Pickle, mut w: W, options: &Options) -> Result<()> {
    let mut e = Emitter::new(p, options.pretty, Some(&mut w));
    e.run()?;
    e.flush()?;
    Ok(())
}

impl Pickle {
    /// The JSON for this pickle, compact; see [`json`](crate::json) for the mapping.
    ///
    /// ```
    /// // pickle.dumps({1, 2}, protocol=4)
    /// let p = brinery::Pickle::from_slice(b"\x80\x04\x95\x09\x00\x00\x00\x00\x00\x00\x00\x8f\x94(K\x01K\x02\x90.").unwrap();
    /// assert_eq!(p.to_json(), r#"{"$set":[1,2]}"#);
    /// ```
    pub fn to_json(&self) -> String {
        to_json(self)
    }
}

// ---------------------------------------------------------------------------------------------
// Output with optional indentation
// ---------------------------------------------------------------------------------------------

const SPACES: &str = match std::str::from_utf8(&[b' '; 2 * MAX_INDENT_LEVELS]) {
    Ok(s) => s,
    Err(_) => "",
};

struct Out {
    buf: String,
    pretty: bool,
    depth: usize,
    /// Nothing written yet in the innermost open array or object.
    first: bool,
}

impl Out {
    #[inline]
    fn newline(&mut self) {
        self.buf.push('\n');
        let n = 2 * self.depth.min(MAX_INDENT_LEVELS);
        self.buf.push_str(SPACES.get(..n).unwrap_or(SPACES));
    }

    #[inline]
    fn open(&mut self, c: char) {
        self.buf.push(c);
        self.depth += 1;
        self.first = true;
    }

    #[inline]
    fn close(&mut self, c: char) {
        self.depth = self.depth.saturating_sub(1);
        if self.pretty && !self.first {
            self.newline();
        }
        self.buf.push(c);
        self.first = false;
    }

    /// Before an array element or an object member.
    #[inline]
    fn sep(&mut self) {
        if !self.first {
            self.buf.push(',');
        }
        self.first = false;
        if self.pretty {
            self.newline();
        }
    }

    #[inline]
    fn colon(&mut self) {
        self.buf.push_str(if self.pretty { ": " } else { ":" });
    }

    /// The separator inside one-line tagged objects.
    #[inline]
    fn comma_inline(&mut self) {
        self.buf.push_str(if self.pretty { ", " } else { "," });
    }

    /// An object member with a fixed key that needs no escaping.
    #[inline]
    fn key(&mut self, k: &str) {
        self.sep();
        self.buf.push('"');
        self.buf.push_str(k);
        self.buf.push('"');
        self.colon();
    }

    /// Start a one-line tagged object: `{"$id": n, "$tag": ` (the id only if given).
    fn inline_open(&mut self, id: Option<u64>, tag: &str) {
        self.buf.push('{');
        if let Some(n) = id {
            self.buf.push_str("\"$id\"");
            self.colon();
            push_u64(&mut self.buf, n);
            self.comma_inline();
        }
        self.buf.push('"');
        self.buf.push_str(tag);
        self.buf.push('"');
        self.colon();
    }

    /// Start a multi-line tagged object: `{"$id": n, "$tag": ` with members on their own lines.
    fn tag_open(&mut self, id: Option<u64>, tag: &str) {
        self.open('{');
        if let Some(n) = id {
            self.key("$id");
            push_u64(&mut self.buf, n);
        }
        self.key(tag);
    }
}

// ---------------------------------------------------------------------------------------------
// The emitter
// ---------------------------------------------------------------------------------------------

/// What remains to be written, innermost last. Every frame that writes several items returns to
/// the loop after each one, so nesting lives on this stack and never on the call stack.
enum Frame<'p> {
    /// Close the innermost array (`]`) or object (`}`).
    Close(char),
    /// Array elements, then `]`.
    Elems { items: &'p [ValueId], pos: usize },
    /// Members of a plain object (keys are known to be plain strings), then `}`.
    Members {
        pairs: &'p [(ValueId, ValueId)],
        pos: usize,
    },
    /// `[key, value]` elements, then `]`.
    Pairs {
        pairs: &'p [(ValueId, ValueId)],
        pos: usize,
    },
    /// One array element.
    Elem(ValueId),
    /// One object member with a fixed key.
    Field(&'static str, ValueId),
    /// The `args` member of an object: a tuple is written as a plain array.
    Args(ValueId),
    /// The key and opening bracket of a run of mutations, then the run.
    MutsStart {
        key: &'static str,
        muts: &'p [Mutation],
        mode: MutMode,
    },
    /// A run of mutations, then its closing bracket.
    Muts {
        muts: &'p [Mutation],
        pos: usize,
        mode: MutMode,
    },
}

/// How a run of mutations is written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum MutMode {
    /// `APPEND`s as array elements (`"listitems"`).
    ListItems,
    /// `SETITEM`s as plain object members (`"dictitems"`).
    DictMembers,
    /// `SETITEM`s as `[key, value]` elements of a `$dict` (`"dictitems"`).
    DictPairs,
    /// Any mutations as `["append", v]`, `["setitem", k, v]`, `["add", v]`, `["build", v]`.
    General,
}

struct Emitter<'p, 'w> {
    values: &'p [Value],
    root: ValueId,
    /// Values built and thrown away before the root (`Pickle::discarded`).
    discarded: &'p [ValueId],
    /// Incoming references per value, saturated at 2.
    counts: Vec<u8>,
    /// Ids of the shared values written so far.
    ids: HashMap<u32, u64>,
    next_id: u64,
    out: Out,
    stack: Vec<Frame<'p>>,
    sink: Option<&'w mut dyn io::Write>,
}

impl<'p, 'w> Emitter<'p, 'w> {
    fn new(p: &'p Pickle, pretty: bool, sink: Option<&'w mut dyn io::Write>) -> Self {
        let values = p.values();
        Emitter {
            values,
            root: p.root(),
            discarded: p.discarded(),
            counts: count_references(values, p.discarded(), p.root()),
            ids: HashMap::new(),
            next_id: 0,
            out: Out {
                buf: String::with_capacity(if sink.is_some() {
                    FLUSH_AT + FLUSH_AT / 4
                } else {
                    values.len().saturating_mul(4).min(1 << 26)
                }),
                pretty,
                depth: 0,
                first: true,
            },
            stack: Vec::new(),
            sink,
        }
    }

    fn flush(&mut self) -> Result<()> {
        if let Some(w) = self.sink.as_mut() {
            w.write_all(self.out.buf.as_bytes())?;
            self.out.buf.clear();
        }
        Ok(())
    }

    fn run(&mut self) -> Result<()> {
        if self.discarded.is_empty() {
            self.value(self.root);
        } else {
            // {"$discarded": [...], "$value": root}: what loading builds and throws away first.
            self.out.tag_open(None, "$discarded");
            self.stack.push(Frame::Close('}'));
            self.stack.push(Frame::Field("$value", self.root));
            self.out.open('[');
            self.stack.push(Frame::Elems {
                items: self.discarded,
                pos: 0,
            });
        }
        while let Some(frame) = self.stack.last_mut() {
            if self.sink.is_some() && self.out.buf.len() >= FLUSH_AT {
                self.flush()?;
                continue;
            }
            match frame {
                Frame::Elems { items, pos } => match items.get(*pos) {
                    Some(&v) => {
                        *pos += 1;
                        self.out.sep();
                        self.value(v);
                    }
                    None => {
                        self.stack.pop();
                        self.out.close(']');
                    }
                },
                Frame::Members { pairs, pos } => match pairs.get(*pos) {
                    Some(&(k, v)) => {
                        *pos += 1;
                        self.out.sep();
                        if let Some(Value::Str(s)) = self.values.get(k.index()) {
                            write_pystr(&mut self.out.buf, s);
                        }
                        self.out.colon();
                        self.value(v);
                    }
                    None => {
                        self.stack.pop();
                        self.out.close('}');
                    }
                },
                Frame::Pairs { pairs, pos } => match pairs.get(*pos) {
                    Some(&(k, v)) => {
                        *pos += 1;
                        self.pair(k, v);
                    }
                    None => {
                        self.stack.pop();
                        self.out.close(']');
                    }
                },
                Frame::Muts { muts, pos, mode } => match muts.get(*pos) {
                    Some(&m) => {
                        *pos += 1;
                        let mode = *mode;
                        self.mutation(m, mode);
                    }
                    None => {
                        let mode = *mode;
                        self.stack.pop();
                        self.out.close(if mode == MutMode::DictMembers {
                            '}'
                        } else {
                            ']'
                        });
                    }
                },
                &mut Frame::Close(c) => {
                    self.stack.pop();
                    self.out.close(c);
                }
                &mut Frame::Elem(v) => {
                    self.stack.pop();
                    self.out.sep();
                    self.value(v);
                }
                &mut Frame::Field(key, v) => {
                    self.stack.pop();
                    self.out.key(key);
                    self.value(v);
                }
                &mut Frame::Args(v) => {
                    self.stack.pop();
                    self.args(v);
                }
                &mut Frame::MutsStart { key, muts, mode } => {
                    self.stack.pop();
                    self.out.key(key);
                    match mode {
                        MutMode::DictMembers => self.out.open('{'),
                        MutMode::DictPairs => {
                            self.out.tag_open(None, "$dict");
                            self.stack.push(Frame::Close('}'));
                            self.out.open('[');
                        }
                        MutMode::ListItems | MutMode::General => self.out.open('['),
                    }
                    self.stack.push(Frame::Muts { muts, pos: 0, mode });
                }
            }
        }
        Ok(())
    }

    /// One `[key, value]` element.
    fn pair(&mut self, k: ValueId, v: ValueId) {
        self.out.sep();
        self.out.open('[');
        self.stack.push(Frame::Close(']'));
        self.stack.push(Frame::Elem(v));
        self.stack.push(Frame::Elem(k));
    }

    fn mutation(&mut self, m: Mutation, mode: MutMode) {
        match (mode, m) {
            (MutMode::ListItems, Mutation::Append(v)) => {
                self.out.sep();
                self.value(v);
            }
            (MutMode::DictMembers, Mutation::SetItem(k, v)) => {
                self.out.sep();
                if let Some(Value::Str(s)) = self.values.get(k.index()) {
                    write_pystr(&mut self.out.buf, s);
                }
                self.out.colon();
                self.value(v);
            }
            (MutMode::DictPairs, Mutation::SetItem(k, v)) => self.pair(k, v),
            (_, m) => {
                self.out.sep();
                self.out.open('[');
                self.out.sep();
                let name = match m {
                    Mutation::Append(_) => "\"append\"",
                    Mutation::SetItem(..) => "\"setitem\"",
                    Mutation::Add(_) => "\"add\"",
                    Mutation::Build(_) => "\"build\"",
                    Mutation::Discard(_) => "\"discard\"",
                };
                self.out.buf.push_str(name);
                self.stack.push(Frame::Close(']'));
                match m {
                    Mutation::SetItem(k, v) => {
                        self.stack.push(Frame::Elem(v));
                        self.stack.push(Frame::Elem(k));
                    }
                    Mutation::Append(v)
                    | Mutation::Add(v)
                    | Mutation::Build(v)
                    | Mutation::Discard(v) => self.stack.push(Frame::Elem(v)),
                }
            }
        }
    }

    /// Whether `id` is reached more than once and must be written once and referenced after.
    #[inline]
    fn needs_id(&self, id: ValueId, value: &Value) -> bool {
        self.counts.get(id.index()).is_some_and(|&c| c >= 2) && !repeatable(value)
    }

    /// Whether `key` can be written as the key of a plain JSON object.
    #[inline]
    fn plain_key(&self, key: ValueId) -> bool {
        match self.values.get(key.index()) {
            Some(v @ Value::Str(s)) => {
                s.as_bytes().first() != Some(&b'$') && !needs_split(s) && !self.needs_id(key, v)
            }
            _ => false,
        }
    }

    /// Whether a dict with these keys can be a plain JSON object: all keys are plain strings
    /// and no two are equal.
    fn plain_keys(&self, keys: impl Iterator<Item = ValueId> + Clone) -> bool {
        let mut n = 0usize;
        for k in keys.clone() {
            if !self.plain_key(k) {
                return false;
            }
            n += 1;
        }
        let text = |k: ValueId| match self.values.get(k.index()) {
            Some(Value::Str(s)) => s.as_bytes(),
            _ => &[],
        };
        if n <= 8 {
            let mut seen: [&[u8]; 8] = [&[]; 8];
            for (i, k) in keys.enumerate() {
                let t = text(k);
                if seen[..i].contains(&t) {
                    return false;
                }
                seen[i] = t;
            }
            true
        } else {
            let mut seen = HashSet::with_capacity(n);
            keys.map(text).all(|t| seen.insert(t))
        }
    }

    /// Write `id` at the current position (separators and keys already written). Containers
    /// push frames; everything else is written at once.
    fn value(&mut self, id: ValueId) {
        let Some(value) = self.values.get(id.index()) else {
            // Only possible in a hand-built Pickle holding another arena's ids.
            self.out.buf.push_str("null");
            return;
        };
        let vid = if self.needs_id(id, value) {
            if let Some(&n) = self.ids.get(&id.0) {
                self.out.inline_open(None, "$ref");
                push_u64(&mut self.out.buf, n);
                self.out.buf.push('}');
                return;
            }
            let n = self.next_id;
            self.next_id += 1;
            self.ids.insert(id.0, n);
            Some(n)
        } else {
            None
        };
        let buf = &mut self.out.buf;
        match value {
            Value::None => buf.push_str("null"),
            Value::Bool(true) => buf.push_str("true"),
            Value::Bool(false) => buf.push_str("false"),
            Value::Int(i) => push_i64(buf, *i),
            Value::Float(f) => {
                if f.is_finite() {
                    buf.push_str(ryu::Buffer::new().format_finite(*f));
                } else {
                    self.out.inline_open(None, "$float");
                    self.out
                        .buf
                        .push_str(match (f.is_nan(), f.is_sign_negative()) {
                            (true, false) => "\"nan\"",
                            (true, true) => "\"-nan\"",
                            (false, false) => "\"inf\"",
                            (false, true) => "\"-inf\"",
                        });
                    self.out.buf.push('}');
                }
            }
            Value::BigInt(b) => {
                self.out.inline_open(vid, "$int");
                let text = if b.bits() <= DECIMAL_MAX_BITS {
                    b.to_string()
                } else {
                    format!("{:#x}", &**b)
                };
                self.out.buf.push('"');
                self.out.buf.push_str(&text);
                self.out.buf.push_str("\"}");
            }
            Value::Str(s) => {
                if vid.is_none() && !needs_split(s) {
                    write_pystr(buf, s);
                } else {
                    self.out.inline_open(vid, "$str");
                    if needs_split(s) {
                        write_split_pystr(&mut self.out.buf, s, self.out.pretty);
                    } else {
                        write_pystr(&mut self.out.buf, s);
                    }
                    self.out.buf.push('}');
                }
            }
            Value::Bytes(b) => self.inline_base64(vid, "$bytes", b),
            Value::ByteArray(b) => self.inline_base64(vid, "$bytearray", b),
            Value::LegacyStr(b) => {
                if b.is_ascii() {
                    self.out.inline_open(vid, "$str2");
                    // ASCII is valid UTF-8.
                    write_str(&mut self.out.buf, std::str::from_utf8(b).unwrap_or(""));
                    self.out.buf.push('}');
                } else {
                    self.inline_base64(vid, "$bytes2", b);
                }
            }
            Value::List(items) => {
                if vid.is_some() {
                    self.out.tag_open(vid, "$list");
                    self.stack.push(Frame::Close('}'));
                }
                self.out.open('[');
                self.stack.push(Frame::Elems { items, pos: 0 });
            }
            Value::Tuple(items) => self.tagged_seq(vid, "$tuple", items),
            Value::Set(items) => self.tagged_seq(vid, "$set", items),
            Value::FrozenSet(items) => self.tagged_seq(vid, "$frozenset", items),
            Value::Dict(pairs) => {
                if vid.is_none() && self.plain_keys(pairs.iter().map(|&(k, _)| k)) {
                    self.out.open('{');
                    self.stack.push(Frame::Members { pairs, pos: 0 });
                } else {
                    self.out.tag_open(vid, "$dict");
                    self.stack.push(Frame::Close('}'));
                    self.out.open('[');
                    self.stack.push(Frame::Pairs { pairs, pos: 0 });
                }
            }
            Value::Global(g) => {
                self.out.inline_open(vid, "$global");
                self.out.buf.push('[');
                write_pystr(&mut self.out.buf, &g.module);
                self.out.comma_inline();
                write_pystr(&mut self.out.buf, &g.name);
                self.out.buf.push_str("]}");
            }
            &Value::DynamicGlobal { module, name } => {
                self.out.tag_open(vid, "$dynamic_global");
                self.out.open('[');
                self.stack.push(Frame::Close('}'));
                self.stack.push(Frame::Close(']'));
                self.stack.push(Frame::Elem(name));
                self.stack.push(Frame::Elem(module));
            }
            Value::Object(obj) => {
                self.out.tag_open(vid, "$object");
                self.out.buf.push_str(match obj.kind {
                    CallKind::Reduce => "\"reduce\"",
                    CallKind::NewObj => "\"newobj\"",
                    CallKind::NewObjEx => "\"newobj_ex\"",
                    CallKind::Inst => "\"inst\"",
                    CallKind::Obj => "\"obj\"",
                });
                self.stack.push(Frame::Close('}'));
                self.push_mutations(&obj.mutations);
                if let Some(kw) = obj.kwargs {
                    self.stack.push(Frame::Field("kwargs", kw));
                }
                self.stack.push(Frame::Args(obj.args));
                self.stack.push(Frame::Field("callable", obj.callable));
            }
            Value::Mutated(m) => {
                self.out.tag_open(vid, "$mutated");
                self.stack.push(Frame::Close('}'));
                self.push_mutations(&m.mutations);
                self.value(m.base);
            }
            &Value::PersistentId(inner) => {
                self.out.tag_open(vid, "$persid");
                self.stack.push(Frame::Close('}'));
                self.value(inner);
            }
            &Value::ReadOnly(inner) => {
                self.out.tag_open(vid, "$readonly");
                self.stack.push(Frame::Close('}'));
                self.value(inner);
            }
            &Value::Ext(code) => {
                self.out.inline_open(vid, "$ext");
                push_u64(&mut self.out.buf, code as u64);
                self.out.buf.push('}');
            }
            &Value::Buffer { index, readonly } => {
                self.out.inline_open(vid, "$buffer");
                push_u64(&mut self.out.buf, index as u64);
                if readonly {
                    self.out.comma_inline();
                    self.out.buf.push_str("\"readonly\"");
                    self.out.colon();
                    self.out.buf.push_str("true");
                }
                self.out.buf.push('}');
            }
        }
    }

    fn inline_base64(&mut self, id: Option<u64>, tag: &str, bytes: &[u8]) {
        self.out.inline_open(id, tag);
        self.out.buf.push('"');
        push_base64(&mut self.out.buf, bytes);
        self.out.buf.push_str("\"}");
    }

    fn tagged_seq(&mut self, id: Option<u64>, tag: &str, items: &'p [ValueId]) {
        if items.is_empty() && id.is_none() {
            self.out.inline_open(None, tag);
            self.out.buf.push_str("[]}");
            return;
        }
        self.out.tag_open(id, tag);
        self.stack.push(Frame::Close('}'));
        self.out.open('[');
        self.stack.push(Frame::Elems { items, pos: 0 });
    }

    /// The `args` member: a tuple that needs no id is a plain array, a list is always tagged
    /// (`{"$list": [...]}`) to keep it apart, anything else is written as usual.
    fn args(&mut self, id: ValueId) {
        self.out.key("args");
        match self.values.get(id.index()) {
            Some(v @ Value::Tuple(items)) if !self.needs_id(id, v) => {
                self.out.open('[');
                self.stack.push(Frame::Elems { items, pos: 0 });
            }
            Some(v @ Value::List(items)) if !self.needs_id(id, v) => {
                self.out.tag_open(None, "$list");
                self.stack.push(Frame::Close('}'));
                self.out.open('[');
                self.stack.push(Frame::Elems { items, pos: 0 });
            }
            _ => self.value(id),
        }
    }

    /// Push the frames that write `muts` after the members already pushed: `listitems`,
    /// `dictitems` and `state` when they come in the order CPython's `save_reduce` writes them
    /// (appends, then setitems, then at most one build), a general `mutations` list otherwise.
    fn push_mutations(&mut self, muts: &'p [Mutation]) {
        if muts.is_empty() {
            return;
        }
        let appends = muts
            .iter()
            .take_while(|m| matches!(m, Mutation::Append(_)))
            .count();
        let setitems = muts[appends..]
            .iter()
            .take_while(|m| matches!(m, Mutation::SetItem(..)))
            .count();
        let rest = &muts[appends + setitems..];
        let state = match rest {
            [] => None,
            [Mutation::Build(state)] => Some(*state),
            _ => {
                self.stack.push(Frame::MutsStart {
                    key: "mutations",
                    muts,
                    mode: MutMode::General,
                });
                return;
            }
        };
        // Frames run innermost (last pushed) first: push in reverse order.
        if let Some(state) = state {
            self.stack.push(Frame::Field("state", state));
        }
        if setitems > 0 {
            let items = &muts[appends..appends + setitems];
            let keys = items.iter().map(|m| match *m {
                Mutation::SetItem(k, _) => k,
                Mutation::Append(v)
                | Mutation::Add(v)
                | Mutation::Build(v)
                | Mutation::Discard(v) => v,
            });
            let mode = if self.plain_keys(keys) {
                MutMode::DictMembers
            } else {
                MutMode::DictPairs
            };
            self.stack.push(Frame::MutsStart {
                key: "dictitems",
                muts: items,
                mode,
            });
        }
        if appends > 0 {
            self.stack.push(Frame::MutsStart {
                key: "listitems",
                muts: &muts[..appends],
                mode: MutMode::ListItems,
            });
        }
    }
}

/// Values written again at every reference rather than given an id.
#[inline]
fn repeatable(value: &Value) -> bool {
    match value {
        Value::None
        | Value::Bool(_)
        | Value::Int(_)
        | Value::Float(_)
        | Value::Ext(_)
        | Value::Buffer { .. } => true,
        Value::BigInt(b) => b.bits() <= 8 * REPEAT_MAX_BYTES as u64,
        Value::Str(s) => s.as_bytes().len() <= REPEAT_MAX_BYTES,
        Value::Bytes(b) | Value::LegacyStr(b) => b.len() <= REPEAT_MAX_BYTES,
        Value::Global(g) => g.module.as_bytes().len() + g.name.as_bytes().len() <= REPEAT_MAX_BYTES,
        _ => false,
    }
}

/// Incoming references of every value reachable from `root`, saturated at 2 (the root counts
/// one for being the root). Iterative; every reachable value is visited once.
fn count_references(values: &[Value], discarded: &[ValueId], root: ValueId) -> Vec<u8> {
    let mut counts = vec![0u8; values.len()];
    let mut stack = Vec::new();
    for &top in discarded.iter().chain([&root]) {
        if let Some(c) = counts.get_mut(top.index()) {
            if *c == 0 {
                *c = 1;
                stack.push(top);
            } else {
                *c = 2;
            }
        }
    }
    while let Some(id) = stack.pop() {
        let Some(value) = values.get(id.index()) else {
            continue;
        };
        value.for_each_child(|child| {
            if let Some(c) = counts.get_mut(child.index()) {
                if *c == 0 {
                    *c = 1;
                    stack.push(child);
                } else {
                    *c = 2;
                }
            }
        });
    }
    counts
}

// ---------------------------------------------------------------------------------------------
// Scalars
// ---------------------------------------------------------------------------------------------

fn push_u64(buf: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // ASCII digits are valid UTF-8.
    buf.push_str(std::str::from_utf8(&digits[i..]).unwrap_or("0"));
}

fn push_i64(buf: &mut String, n: i64) {
    if n < 0 {
        buf.push('-');
    }
    push_u64(buf, n.unsigned_abs());
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 (RFC 4648 §4) with padding, what Python's `base64.b64encode` writes.
fn push_base64(buf: &mut String, bytes: &[u8]) {
    buf.reserve(bytes.len().div_ceil(3) * 4);
    let sym = |v: u32, shift: u32| BASE64[((v >> shift) & 63) as usize] as char;
    let mut chunks = bytes.chunks_exact(3);
    for c in &mut chunks {
        let v = (c[0] as u32) << 16 | (c[1] as u32) << 8 | c[2] as u32;
        buf.push(sym(v, 18));
        buf.push(sym(v, 12));
        buf.push(sym(v, 6));
        buf.push(sym(v, 0));
    }
    match *chunks.remainder() {
        [a] => {
            let v = (a as u32) << 16;
            buf.push(sym(v, 18));
            buf.push(sym(v, 12));
            buf.push_str("==");
        }
        [a, b] => {
            let v = (a as u32) << 16 | (b as u32) << 8;
            buf.push(sym(v, 18));
            buf.push(sym(v, 12));
            buf.push(sym(v, 6));
            buf.push('=');
        }
        _ => {}
    }
}

/// For each ASCII byte: 0 = copy, b'u' = `\u00XX`, anything else = backslash + that byte.
static ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0A] = b'n';
    t[0x0C] = b'f';
    t[0x0D] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

const HEX: &[u8; 16] = b"0123456789abcdef";

#[inline]
fn push_u_escape(buf: &mut String, cp: u32) {
    buf.push_str("\\u");
    for shift in [12, 8, 4, 0] {
        buf.push(HEX[((cp >> shift) & 0xF) as usize] as char);
    }
}

/// A JSON string literal for `s`.
fn write_str(buf: &mut String, s: &str) {
    buf.reserve(s.len() + 2);
    buf.push('"');
    write_str_body(buf, s);
    buf.push('"');
}

#[inline]
fn write_str_body(buf: &mut String, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc = ESCAPE[b as usize];
        if esc == 0 {
            continue;
        }
        // Escaped bytes are ASCII, so `start..i` falls on character boundaries.
        buf.push_str(s.get(start..i).unwrap_or(""));
        if esc == b'u' {
            push_u_escape(buf, b as u32);
        } else {
            buf.push('\\');
            buf.push(esc as char);
        }
        start = i + 1;
    }
    buf.push_str(s.get(start..).unwrap_or(""));
}

/// A JSON string literal for a Python `str`; lone surrogates become `\udXXX` escapes.
fn write_pystr(buf: &mut String, s: &PyString) {
    match s.as_str() {
        Some(text) => write_str(buf, text),
        None => {
            buf.push('"');
            write_code_points(buf, s.code_points());
            buf.push('"');
        }
    }
}

fn write_code_points(buf: &mut String, cps: impl Iterator<Item = u32>) {
    let mut tmp = [0u8; 4];
    for cp in cps {
        match char::from_u32(cp) {
            Some(c) if c.is_ascii() => write_str_body(buf, c.encode_utf8(&mut tmp)),
            Some(c) => buf.push(c),
            None => push_u_escape(buf, cp),
        }
    }
}

#[inline]
fn is_high(cp: u32) -> bool {
    (0xD800..0xDC00).contains(&cp)
}

#[inline]
fn is_low(cp: u32) -> bool {
    (0xDC00..0xE000).contains(&cp)
}

/// Whether `s` holds a high surrogate directly followed by a low one. Written as one JSON
/// string, the two escapes would be read back as a single astral character, so such a string is
/// written as a list of parts split between the two.
fn needs_split(s: &PyString) -> bool {
    if s.is_utf8() {
        return false;
    }
    let mut prev_high = false;
    for cp in s.code_points() {
        if prev_high && is_low(cp) {
            return true;
        }
        prev_high = is_high(cp);
    }
    false
}

/// `["part", "part", ...]`, split between every high surrogate and a low one after it.
fn write_split_pystr(buf: &mut String, s: &PyString, pretty: bool) {
    buf.push_str("[\"");
    let mut prev_high = false;
    let mut tmp = [0u32; 1];
    for cp in s.code_points() {
        if prev_high && is_low(cp) {
            buf.push_str(if pretty { "\", \"" } else { "\",\"" });
        }
        prev_high = is_high(cp);
        tmp[0] = cp;
        write_code_points(buf, tmp.iter().copied());
    }
    buf.push_str("\"]");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_thrown_away_are_shown() {
        // os.system('echo hi'); POP; None: what loading builds before the root.
        let p = Pickle::from_slice(b"cos\nsystem\n(S'echo hi'\ntR0N.").unwrap();
        assert_eq!(
            to_json(&p),
            r#"{"$discarded":[{"$object":"reduce","callable":{"$global":["os","system"]},"args":[{"$str2":"echo hi"}]}],"$value":null}"#
        );
        // A state setter's call, kept on the object it was thrown away after.
        let data = b"\x80\x02cm\nK\nX\x01\x00\x00\x00x\x85Rq\x00cm\nsetter\nh\x00}\x86R0.";
        let p = Pickle::from_slice(data).unwrap();
        assert_eq!(
            to_json(&p),
            r#"{"$id":0,"$object":"reduce","callable":{"$global":["m","K"]},"args":["x"],"mutations":[["discard",{"$object":"reduce","callable":{"$global":["m","setter"]},"args":[{"$ref":0},{}]}]]}"#
        );
    }
    use crate::Global;

    fn read(data: &[u8]) -> Pickle {
        Pickle::from_slice(data).unwrap()
    }

    fn json(data: &[u8]) -> String {
        to_json(&read(data))
    }

    fn pretty(data: &[u8]) -> String {
        to_json_pretty(&read(data))
    }

    /// One row per line of the table in docs/json-mapping.md: `pickle.dumps(<comment>)` and the
    /// exact JSON.
    const ROWS: &[(&[u8], &str)] = &[
        // None, 2
        (
            b"\x80\x02N.",
            r#"null"#,
        ),
        // [True, False], 2
        (
            b"\x80\x02]q\x00(\x88\x89e.",
            r#"[true,false]"#,
        ),
        // [0, -1, 2**63-1, -2**63], 2
        (
            b"\x80\x02]q\x00(K\x00J\xff\xff\xff\xff\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x7f\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x80e.",
            r#"[0,-1,9223372036854775807,-9223372036854775808]"#,
        ),
        // [2**64, -(2**64)-1], 2
        (
            b"\x80\x02]q\x00(\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01\x8a\x09\xff\xff\xff\xff\xff\xff\xff\xff\xfee.",
            r#"[{"$int":"18446744073709551616"},{"$int":"-18446744073709551617"}]"#,
        ),
        // [1.0, -0.0, 0.1, 1e100, 5e-324, 1e16, 123.456], 2
        (
            b"\x80\x02]q\x00(G?\xf0\x00\x00\x00\x00\x00\x00G\x80\x00\x00\x00\x00\x00\x00\x00G?\xb9\x99\x99\x99\x99\x99\x9aGT\xb2I\xad%\x94\xc3}G\x00\x00\x00\x00\x00\x00\x00\x01GCA\xc3y7\xe0\x80\x00G@^\xdd/\x1a\x9f\xbewe.",
            r#"[1.0,-0.0,0.1,1e100,5e-324,1e16,123.456]"#,
        ),
        // [nan, inf, -inf, -nan], 2
        (
            b"\x80\x02]q\x00(G\x7f\xf8\x00\x00\x00\x00\x00\x00G\x7f\xf0\x00\x00\x00\x00\x00\x00G\xff\xf0\x00\x00\x00\x00\x00\x00G\xff\xf8\x00\x00\x00\x00\x00\x00e.",
            r#"[{"$float":"nan"},{"$float":"inf"},{"$float":"-inf"},{"$float":"-nan"}]"#,
        ),
        // 'h\u00e9llo\n"\\\x01\x7f\u20ac\U0001F600', 4
        (
            b"\x80\x04\x95\x16\x00\x00\x00\x00\x00\x00\x00\x8c\x12h\xc3\xa9llo\n\"\\\x01\x7f\xe2\x82\xac\xf0\x9f\x98\x80\x94.",
            r#""héllo\n\"\\\u0001€😀""#,
        ),
        // '\ud800x\udfff', 4
        (
            b"\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00\x8c\x07\xed\xa0\x80x\xed\xbf\xbf\x94.",
            r#""\ud800x\udfff""#,
        ),
        // 'a\ud83d\ude00b', 4 (two code points, not one)
        (
            b"\x80\x04\x95\x0c\x00\x00\x00\x00\x00\x00\x00\x8c\x08a\xed\xa0\xbd\xed\xb8\x80b\x94.",
            r#"{"$str":["a\ud83d","\ude00b"]}"#,
        ),
        // [1, [2, []]], 2
        (
            b"\x80\x02]q\x00(K\x01]q\x01(K\x02]q\x02ee.",
            r#"[1,[2,[]]]"#,
        ),
        // {'a': 1, 'b': [2], 'c': {}}, 2
        (
            b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x01X\x01\x00\x00\x00bq\x02]q\x03K\x02aX\x01\x00\x00\x00cq\x04}q\x05u.",
            r#"{"a":1,"b":[2],"c":{}}"#,
        ),
        // {1: 'a', (1, 2): None}, 4
        (
            b"\x80\x04\x95\x12\x00\x00\x00\x00\x00\x00\x00}\x94(K\x01\x8c\x01a\x94K\x01K\x02\x86\x94Nu.",
            r#"{"$dict":[[1,"a"],[{"$tuple":[1,2]},null]]}"#,
        ),
        // {'$ref': 1, 'x': 2}, 4
        (
            b"\x80\x04\x95\x14\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x04$ref\x94K\x01\x8c\x01x\x94K\x02u.",
            r#"{"$dict":[["$ref",1],["x",2]]}"#,
        ),
        // (1, 'a', ()), 4
        (
            b"\x80\x04\x95\n\x00\x00\x00\x00\x00\x00\x00K\x01\x8c\x01a\x94)\x87\x94.",
            r#"{"$tuple":[1,"a",{"$tuple":[]}]}"#,
        ),
        // [{1}, frozenset([2]), set()], 4
        (
            b"\x80\x04\x95\x12\x00\x00\x00\x00\x00\x00\x00]\x94(\x8f\x94(K\x01\x90(K\x02\x91\x94\x8f\x94e.",
            r#"[{"$set":[1]},{"$frozenset":[2]},{"$set":[]}]"#,
        ),
        // [b'hello', b'', b'\xff\x00'], 4
        (
            b"\x80\x04\x95\x15\x00\x00\x00\x00\x00\x00\x00]\x94(C\x05hello\x94C\x00\x94C\x02\xff\x00\x94e.",
            r#"[{"$bytes":"aGVsbG8="},{"$bytes":""},{"$bytes":"/wA="}]"#,
        ),
        // bytearray(b'hi'), 5
        (
            b"\x80\x05\x95\x0d\x00\x00\x00\x00\x00\x00\x00\x96\x02\x00\x00\x00\x00\x00\x00\x00hi\x94.",
            r#"{"$bytearray":"aGk="}"#,
        ),
        // collections.OrderedDict, 4
        (
            b"\x80\x04\x95\x1f\x00\x00\x00\x00\x00\x00\x00\x8c\x0bcollections\x94\x8c\x0bOrderedDict\x94\x93\x94.",
            r#"{"$global":["collections","OrderedDict"]}"#,
        ),
        // datetime.date(2020, 1, 2), 4
        (
            b"\x80\x04\x95 \x00\x00\x00\x00\x00\x00\x00\x8c\x08datetime\x94\x8c\x04date\x94\x93\x94C\x04\x07\xe4\x01\x02\x94\x85\x94R\x94.",
            r#"{"$object":"reduce","callable":{"$global":["datetime","date"]},"args":[{"$bytes":"B+QBAg=="}]}"#,
        ),
        // p (p = P(); p.x = 1), 2
        (
            b"\x80\x02c__main__\nP\nq\x00)\x81q\x01}q\x02X\x01\x00\x00\x00xq\x03K\x01sb.",
            r#"{"$object":"newobj","callable":{"$global":["__main__","P"]},"args":[],"state":{"x":1}}"#,
        ),
        // Q(1) (__getnewargs_ex__ -> ((1,), {'k': 2})), 4
        (
            b"\x80\x04\x95+\x00\x00\x00\x00\x00\x00\x00\x8c\x08__main__\x94\x8c\x01Q\x94\x93\x94K\x01\x85\x94}\x94\x8c\x01k\x94K\x02s\x92\x94}\x94\x8c\x01a\x94K\x01sb.",
            r#"{"$object":"newobj_ex","callable":{"$global":["__main__","Q"]},"args":[1],"kwargs":{"k":2},"state":{"a":1}}"#,
        ),
        // hand-written: INST __main__.P, BUILD {'x': 1}
        (
            b"ccopy_reg\n_reconstructor\np0\n(c__main__\nP\np1\nc__builtin__\nobject\np2\nNtp3\nRp4\n(dp5\nVx\np6\nI1\nsb.",
            r#"{"$object":"reduce","callable":{"$global":["copy_reg","_reconstructor"]},"args":[{"$global":["__main__","P"]},{"$global":["__builtin__","object"]},null],"state":{"x":1}}"#,
        ),
        // hand-written: OBJ __main__.P(1), BUILD {'x': 1}
        (
            b"ccopy_reg\n_reconstructor\nq\x00(c__main__\nP\nq\x01c__builtin__\nobject\nq\x02Ntq\x03Rq\x04}q\x05X\x01\x00\x00\x00xq\x06K\x01sb.",
            r#"{"$object":"reduce","callable":{"$global":["copy_reg","_reconstructor"]},"args":[{"$global":["__main__","P"]},{"$global":["__builtin__","object"]},null],"state":{"x":1}}"#,
        ),
        // OrderedDict([('a', 1), (2, 3)]), 2
        (
            b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01(X\x01\x00\x00\x00aq\x02K\x01K\x02K\x03u.",
            r#"{"$object":"reduce","callable":{"$global":["collections","OrderedDict"]},"args":[],"dictitems":{"$dict":[["a",1],[2,3]]}}"#,
        ),
        // L([1, 2]) (class L(list)), 2
        (
            b"\x80\x02c__main__\nL\nq\x00)\x81q\x01(K\x01K\x02e.",
            r#"{"$object":"newobj","callable":{"$global":["__main__","L"]},"args":[],"listitems":[1,2]}"#,
        ),
        // S() (__reduce__ -> (S, (), {'x': 1}, iter([1]), iter([('k', 2)]))), 4
        (
            b"\x80\x04\x95)\x00\x00\x00\x00\x00\x00\x00\x8c\x08__main__\x94\x8c\x01S\x94\x93\x94)R\x94K\x01a\x8c\x01k\x94K\x02s}\x94\x8c\x01x\x94K\x01sb.",
            r#"{"$object":"reduce","callable":{"$global":["__main__","S"]},"args":[],"listitems":[1],"dictitems":{"k":2},"state":{"x":1}}"#,
        ),
        // [a, a] (a = [1]), 2
        (
            b"\x80\x02]q\x00(]q\x01K\x01ah\x01e.",
            r#"[{"$id":0,"$list":[1]},{"$ref":0}]"#,
        ),
        // l (l = []; l.append(l)), 2
        (
            b"\x80\x02]q\x00h\x00a.",
            r#"{"$id":0,"$list":[{"$ref":0}]}"#,
        ),
        // d (d = {}; d['self'] = d), 2
        (
            b"\x80\x02}q\x00X\x04\x00\x00\x00selfq\x01h\x00s.",
            r#"{"$id":0,"$dict":[["self",{"$ref":0}]]}"#,
        ),
        // [s, s] (s = 'abc' * 2), 4
        (
            b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00]\x94(\x8c\x06abcabc\x94h\x01e.",
            r#"["abcabc","abcabc"]"#,
        ),
        // [s, s] (s = 'x' * 100), 4
        (
            b"\x80\x04\x95n\x00\x00\x00\x00\x00\x00\x00]\x94(\x8cdxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\x94h\x01e.",
            r#"[{"$id":0,"$str":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"},{"$ref":0}]"#,
        ),
        // [(), ()], 4
        (
            b"\x80\x04\x95\x07\x00\x00\x00\x00\x00\x00\x00]\x94())e.",
            r#"[{"$tuple":[]},{"$tuple":[]}]"#,
        ),
        // {'\ud800': 1}, 4
        (
            b"\x80\x04\x95\x0c\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x03\xed\xa0\x80\x94K\x01s.",
            r#"{"\ud800":1}"#,
        ),
        // {'\ud83d\ude00': 1}, 4
        (
            b"\x80\x04\x95\x0f\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x06\xed\xa0\xbd\xed\xb8\x80\x94K\x01s.",
            r#"{"$dict":[[{"$str":["\ud83d","\ude00"]},1]]}"#,
        ),
        // [b, b] (b = b'\0' * 65), 4
        (
            b"\x80\x04\x95K\x00\x00\x00\x00\x00\x00\x00]\x94(CA\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x94h\x01e.",
            r#"[{"$id":0,"$bytes":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="},{"$ref":0}]"#,
        ),
        // [2**70, 2**70], 4 (ints are never memoized)
        (
            b"\x80\x04\x95\x1b\x00\x00\x00\x00\x00\x00\x00]\x94(\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00@\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00@e.",
            r#"[{"$int":"1180591620717411303424"},{"$int":"1180591620717411303424"}]"#,
        ),
        // [OrderedDict, OrderedDict], 4
        (
            b"\x80\x04\x95%\x00\x00\x00\x00\x00\x00\x00]\x94(\x8c\x0bcollections\x94\x8c\x0bOrderedDict\x94\x93\x94h\x03e.",
            r#"[{"$global":["collections","OrderedDict"]},{"$global":["collections","OrderedDict"]}]"#,
        ),
        // hand-written: a dict with key 'a' twice
        (
            b"}(X\x01\x00\x00\x00aK\x01X\x01\x00\x00\x00aK\x02u.",
            r#"{"$dict":[["a",1],["a",2]]}"#,
        ),
        // hand-written: Python 2 str 'abc' (STRING)
        (
            b"S'abc'\n.",
            r#"{"$str2":"abc"}"#,
        ),
        // hand-written: Python 2 str '\xff\x00' (SHORT_BINSTRING)
        (
            b"U\x02\xff\x00.",
            r#"{"$bytes2":"/wA="}"#,
        ),
        // hand-written: BUILD {} on a list that is shared
        (
            b"]q\x00}bh\x00\x86.",
            r#"{"$tuple":[{"$id":0,"$mutated":[],"state":{}},{"$ref":0}]}"#,
        ),
        // hand-written: BUILD then APPEND on an object
        (
            b"c__main__\nP\n)\x81}bK\x01a.",
            r#"{"$object":"newobj","callable":{"$global":["__main__","P"]},"args":[],"mutations":[["build",{}],["append",1]]}"#,
        ),
        // hand-written: ADDITEMS on an object
        (
            b"c__main__\nP\n)\x81(K\x01\x90.",
            r#"{"$object":"newobj","callable":{"$global":["__main__","P"]},"args":[],"mutations":[["add",1]]}"#,
        ),
        // hand-written: SETITEM 1 -> 2 on an object
        (
            b"c__main__\nP\n)\x81K\x01K\x02s.",
            r#"{"$object":"newobj","callable":{"$global":["__main__","P"]},"args":[],"dictitems":{"$dict":[[1,2]]}}"#,
        ),
        // hand-written: STACK_GLOBAL with a computed module name
        (
            b"cbuiltins\nstr\n)RX\x01\x00\x00\x00a\x93.",
            r#"{"$dynamic_global":[{"$object":"reduce","callable":{"$global":["builtins","str"]},"args":[]},"a"]}"#,
        ),
        // hand-written: BINPERSID 'abc'
        (
            b"X\x03\x00\x00\x00abcQ.",
            r#"{"$persid":"abc"}"#,
        ),
        // hand-written: PERSID abc
        (
            b"Pabc\n.",
            r#"{"$persid":"abc"}"#,
        ),
        // hand-written: EXT1 5
        (
            b"\x82\x05.",
            r#"{"$ext":5}"#,
        ),
        // hand-written: NEXT_BUFFER
        (
            b"\x80\x05\x97.",
            r#"{"$buffer":0}"#,
        ),
        // hand-written: [NEXT_BUFFER, NEXT_BUFFER READONLY_BUFFER]
        (
            b"\x80\x05(\x97\x97\x98l.",
            r#"[{"$buffer":0},{"$buffer":1,"readonly":true}]"#,
        ),
        // hand-written: READONLY_BUFFER on a list
        (
            b"]\x98.",
            r#"{"$readonly":[]}"#,
        ),
        // hand-written: READONLY_BUFFER on bytes (memoryview(bytes) is read-only already)
        (
            b"C\x02hi\x98.",
            r#"{"$bytes":"aGk="}"#,
        ),
        // hand-written: REDUCE builtins.print with a list as args
        (
            b"cbuiltins\nprint\n](K\x01eR.",
            r#"{"$object":"reduce","callable":{"$global":["builtins","print"]},"args":{"$list":[1]}}"#,
        ),
        // hand-written: (obj, args) where obj = REDUCE(P, args)
        (
            b"cbuiltins\nP\n(K\x01tq\x00Rh\x00\x86.",
            r#"{"$tuple":[{"$object":"reduce","callable":{"$global":["builtins","P"]},"args":{"$id":0,"$tuple":[1]}},{"$ref":0}]}"#,
        ),
    ];

    #[test]
    fn every_row_of_the_mapping() {
        for (data, expected) in ROWS {
            assert_eq!(json(data), *expected, "pickle {}", data.escape_ascii());
        }
    }

    #[test]
    fn every_row_parses_and_pretty_is_the_same_document() {
        for (data, expected) in ROWS {
            let compact = json(data);
            let p = pretty(data);
            let surrogates = compact.contains("\\ud");
            if !surrogates {
                let a: serde_json::Value = serde_json::from_str(&compact).unwrap();
                let b: serde_json::Value = serde_json::from_str(&p).unwrap();
                assert_eq!(a, b, "{expected}");
            }
            // Removing the layout of the pretty form gives the compact form back.
            let mut squeezed = String::new();
            let mut in_str = false;
            let mut escaped = false;
            for c in p.chars() {
                if in_str {
                    escaped = !escaped && c == '\\';
                    in_str = escaped || c != '"';
                } else if c == '"' {
                    in_str = true;
                } else if c == ' ' || c == '\n' {
                    continue;
                }
                squeezed.push(c);
            }
            assert_eq!(squeezed, compact);
        }
    }

    #[test]
    fn pretty_layout() {
        // pickle.dumps({"a": [1, (2, b"x")], "b": {}, "c": [], "d": [a, a]}, 4) with a = [2**64]
        let data = b"\x80\x04\x95C\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01a\x94]\x94(K\x01K\x02C\x01x\x94\x86\x94e\x8c\x01b\x94}\x94\x8c\x01c\x94]\x94\x8c\x01d\x94]\x94(]\x94\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01ah\x0be\x8c\x01e\x94\x8c\x01z\x94u.";
        let expected = r#"{
  "a": [
    1,
    {
      "$tuple": [
        2,
        {"$bytes": "eA=="}
      ]
    }
  ],
  "b": {},
  "c": [],
  "d": [
    {
      "$id": 0,
      "$list": [
        {"$int": "18446744073709551616"}
      ]
    },
    {"$ref": 0}
  ],
  "e": "z"
}"#;
        assert_eq!(pretty(data), expected);
        assert_eq!(
            json(data),
            r#"{"a":[1,{"$tuple":[2,{"$bytes":"eA=="}]}],"b":{},"c":[],"d":[{"$id":0,"$list":[{"$int":"18446744073709551616"}]},{"$ref":0}],"e":"z"}"#
        );
    }

    #[test]
    fn pretty_objects_and_one_line_tags() {
        // pickle.dumps(p, 2) with p = P(); p.x = 1
        let data = b"\x80\x02c__main__\nP\nq\x00)\x81q\x01}q\x02X\x01\x00\x00\x00xq\x03K\x01sb.";
        let expected = r#"{
  "$object": "newobj",
  "callable": {"$global": ["__main__", "P"]},
  "args": [],
  "state": {
    "x": 1
  }
}"#;
        assert_eq!(pretty(data), expected);
        // hand-written: [NEXT_BUFFER, NEXT_BUFFER READONLY_BUFFER, set()] and a split str
        assert_eq!(
            pretty(b"\x80\x05(\x97\x97\x98\x8f\x8c\x06\xed\xa0\xbd\xed\xb8\x80l."),
            "[\n  {\"$buffer\": 0},\n  {\"$buffer\": 1, \"readonly\": true},\n  {\"$set\": []},\n  {\"$str\": [\"\\ud83d\", \"\\ude00\"]}\n]"
        );
    }

    #[test]
    fn huge_ints_are_hexadecimal() {
        // LONG4 with 2**20000 (2501 bytes, the last one 0x01)
        let mut data = b"\x80\x02\x8b\xc5\x09\x00\x00".to_vec();
        data.extend(std::iter::repeat(0).take(2500));
        data.extend_from_slice(b"\x01.");
        let out = json(&data);
        assert!(out.starts_with(r#"{"$int":"0x1000"#), "{:.40}", out);
        assert_eq!(out.len(), r#"{"$int":"0x"}"#.len() + 1 + 20000 / 4);
        // -(2**20000) + 1 keeps its sign
        let mut data = b"\x80\x02\x8b\xc5\x09\x00\x00\x01".to_vec();
        data.extend(std::iter::repeat(0).take(2499));
        data.extend_from_slice(b"\xff.");
        assert!(json(&data).starts_with(r#"{"$int":"-0xfff"#));
        // 2**13999 (at the limit) is still decimal
        let mut data = b"\x80\x02\x8b\xd7\x06\x00\x00".to_vec();
        data.extend(std::iter::repeat(0).take(1749));
        data.extend_from_slice(b"\x80\x00.");
        let out = json(&data);
        assert!(
            out.starts_with(r#"{"$int":"1"#) && out.len() > 4000,
            "{:.40}",
            out
        );
    }

    #[test]
    fn long_shared_big_ints_get_an_id() {
        // [n, n] with n = 2**512 (65 bytes): LONG1, MEMOIZE, BINGET 0, LIST
        let mut data = b"(\x8a\x41".to_vec();
        data.extend(std::iter::repeat(0).take(64));
        data.extend_from_slice(b"\x01\x94h\x00l.");
        assert_eq!(
            json(&data),
            r#"[{"$id":0,"$int":"13407807929942597099574024998205846127479365820592393377723561443721764030073546976801874298166903427690031858186486050853753882811946569946433649006084096"},{"$ref":0}]"#
        );
    }

    #[test]
    fn shared_keys_and_values() {
        // [d1, d2] where both dicts use the same long key object k = "k" * 70 and the same list:
        // the dicts fall back to the $dict form so that the key can carry an id.
        let mut data = b"\x80\x04(}\x94\x8cF".to_vec();
        data.extend(std::iter::repeat(b'k').take(70));
        data.extend_from_slice(b"\x94]\x94s}\x94h\x01h\x02sl.");
        let k = "k".repeat(70);
        assert_eq!(
            json(&data),
            format!(
                r#"[{{"$dict":[[{{"$id":0,"$str":"{k}"}},{{"$id":1,"$list":[]}}]]}},{{"$dict":[[{{"$ref":0}},{{"$ref":1}}]]}}]"#
            )
        );
        // The root referring to itself through an object's state.
        let data = b"\x80\x02c__main__\nP\n)\x81q\x00}X\x01\x00\x00\x00mh\x00sb.";
        assert_eq!(
            json(data),
            r#"{"$id":0,"$object":"newobj","callable":{"$global":["__main__","P"]},"args":[],"state":{"m":{"$ref":0}}}"#
        );
    }

    #[test]
    fn string_escapes() {
        let mut p = Pickle::new();
        let all: String = (0u8..0x80).map(char::from).collect();
        let id = p.push(Value::Str(PyString::from(all.as_str())));
        p.set_root(id);
        let out = to_json(&p);
        let back: String = serde_json::from_str(&out).unwrap();
        assert_eq!(back, all);
        assert!(out.starts_with(r#""\u0000\u0001"#));
        assert!(out.contains(r#"\b\t\n\u000b\f\r\u000e"#));
        assert!(out.contains(r##" !\"#$"##));
        assert!(out.contains(r#"Z[\\]^"#));
        assert!(out.ends_with("}~\u{7f}\""));
        // U+2028, astral characters and every surrogate form
        let s = PyString::from_code_points([0x2028, 0x1F600, 0xDBFF, 0x41, 0xDC00, 0xDC00, 0xD800]);
        let id = p.push(Value::Str(s.unwrap()));
        p.set_root(id);
        assert_eq!(
            to_json(&p),
            "\"\u{2028}\u{1F600}\\udbffA\\udc00\\udc00\\ud800\""
        );
        let s = PyString::from_code_points([0xD800, 0xD800, 0xDC00, 0xDBFF, 0xDFFF]);
        let id = p.push(Value::Str(s.unwrap()));
        p.set_root(id);
        assert_eq!(
            to_json(&p),
            r#"{"$str":["\ud800\ud800","\udc00\udbff","\udfff"]}"#
        );
    }

    #[test]
    fn floats_round_trip_and_stay_floats() {
        let mut p = Pickle::new();
        let samples = [
            0.0,
            -0.0,
            1.0,
            -1.5,
            0.1,
            1e16,
            1e-7,
            1e300,
            5e-324,
            f64::MAX,
            f64::MIN_POSITIVE,
            2.0f64.powi(53),
            123456789.0,
            1.0 / 3.0,
        ];
        for f in samples {
            let id = p.push(Value::Float(f));
            p.set_root(id);
            let out = to_json(&p);
            assert!(out.contains(['.', 'e']), "{out} would read back as an int");
            let back: f64 = out.parse().unwrap();
            assert_eq!(back.to_bits(), f.to_bits(), "{out}");
        }
    }

    #[test]
    fn base64_matches_rfc_4648() {
        for (raw, b64) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            let mut out = String::new();
            push_base64(&mut out, raw.as_bytes());
            assert_eq!(out, b64);
        }
        let mut out = String::new();
        push_base64(&mut out, &[0xfb, 0xff, 0xbf]);
        assert_eq!(out, "+/+/");
    }

    #[test]
    fn ints_at_the_edges() {
        let mut p = Pickle::new();
        for (i, s) in [
            (0, "0"),
            (9, "9"),
            (10, "10"),
            (-7, "-7"),
            (i64::MAX, "9223372036854775807"),
            (i64::MIN, "-9223372036854775808"),
        ] {
            let id = p.push(Value::Int(i));
            p.set_root(id);
            assert_eq!(to_json(&p), s);
        }
    }

    #[test]
    fn deep_nesting_is_iterative() {
        const DEPTH: usize = 100_000;
        // ] * DEPTH, APPEND * (DEPTH - 1): a list nested DEPTH deep
        let mut data = vec![b']'; DEPTH];
        data.extend(std::iter::repeat(b'a').take(DEPTH - 1));
        data.push(b'.');
        let p = read(&data);
        let out = to_json(&p);
        assert_eq!(out.len(), 2 * DEPTH);
        assert!(out.starts_with("[[[[") && out.ends_with("]]]]"));
        // Pretty output stops indenting at MAX_INDENT_LEVELS, so it stays linear in the depth.
        let out = to_json_pretty(&p);
        assert!(out.len() < 2 * DEPTH * (2 * MAX_INDENT_LEVELS + 2));
        assert!(out.starts_with("[\n  [\n    [\n"));
        // Deep objects, tuples and dicts too: ((((...),),),) and {"a": {"a": ...}}
        let mut data = vec![b')'];
        data.extend(std::iter::repeat(b'\x85').take(DEPTH));
        data.push(b'.');
        let out = json(&data);
        assert_eq!(
            out.len(),
            DEPTH * r#"{"$tuple":[]}"#.len() + r#"{"$tuple":[]}"#.len()
        );
        let mut data: Vec<u8> = std::iter::repeat(b"}\x8c\x01a")
            .take(DEPTH)
            .flatten()
            .copied()
            .collect();
        data.push(b'}');
        data.extend(std::iter::repeat(b's').take(DEPTH));
        data.push(b'.');
        let out = json(&data);
        assert_eq!(out.len(), DEPTH * r#"{"a":}"#.len() + 2);
        assert!(out.starts_with(r#"{"a":{"a":{"#) && out.contains(r#""a":{}}}"#));
    }

    #[test]
    fn deep_hand_built_graph_is_iterative() {
        const DEPTH: usize = 1_000_000;
        let mut p = Pickle::new();
        let mut inner = p.push(Value::List(thin_vec::thin_vec![]));
        for i in 0..DEPTH {
            let v = match i % 4 {
                0 => Value::List(thin_vec::thin_vec![inner]),
                1 => Value::Tuple(thin_vec::thin_vec![inner]),
                2 => {
                    let k = p.push(Value::Str(PyString::from("k")));
                    Value::Dict(thin_vec::thin_vec![(k, inner)])
                }
                _ => {
                    let g = p.push(Value::Global(Box::new(Global {
                        module: PyString::from("m"),
                        name: PyString::from("f"),
                    })));
                    let args = p.push(Value::Tuple(thin_vec::thin_vec![inner]));
                    Value::Object(Box::new(crate::Object {
                        kind: CallKind::Reduce,
                        callable: g,
                        args,
                        kwargs: None,
                        mutations: vec![Mutation::Build(inner)],
                    }))
                }
            };
            inner = p.push(v);
        }
        p.set_root(inner);
        let out = to_json(&p);
        assert!(out.starts_with(
            r#"{"$object":"reduce","callable":{"$global":["m","f"]},"args":[{"$id":0,"#
        ));
        assert!(out.len() < 100 * DEPTH);
    }

    #[test]
    fn billion_laughs_stays_linear() {
        // level 0 = []; level i = [level i-1] * 10, each level memoized; root = level 30
        let mut data = b"\x80\x04]\x94".to_vec();
        for level in 1..=30u8 {
            data.push(b'(');
            for _ in 0..10 {
                data.extend_from_slice(&[b'h', level - 1]);
            }
            data.extend_from_slice(b"l\x94");
        }
        data.push(b'.');
        let p = read(&data);
        let out = to_json(&p);
        assert!(out.len() < 10_000, "{} bytes", out.len());
        assert!(out.starts_with(r#"[{"$id":0,"$list":[{"$id":1,"$list":[{"$id":2,"$list":["#));
        assert!(out.ends_with(r#"{"$ref":0},{"$ref":0},{"$ref":0}]"#));
        assert_eq!(out.matches("\"$id\"").count(), 30);
        assert_eq!(out.matches("\"$ref\"").count(), 30 * 9);
        assert!(to_json_pretty(&p).len() < 100_000);
        // The same with a long string at the bottom: it is written once.
        let mut data = b"\x80\x04\x8c\xc8".to_vec();
        data.extend(std::iter::repeat(b'z').take(200));
        data.push(b'\x94');
        for level in 1..=30u8 {
            data.push(b'(');
            for _ in 0..10 {
                data.extend_from_slice(&[b'h', level - 1]);
            }
            data.extend_from_slice(b"l\x94");
        }
        data.push(b'.');
        let out = json(&data);
        assert_eq!(out.matches(&"z".repeat(200)).count(), 1);
        assert!(out.len() < 10_000, "{} bytes", out.len());
    }

    #[test]
    fn writer_gets_the_same_bytes_in_chunks() {
        // [{"id": i, "v": [i, "s"]} for i in 0..20_000], built by hand: several flushes
        let mut p = Pickle::new();
        let (kid, kv, s) = (
            p.push(Value::Str(PyString::from("id"))),
            p.push(Value::Str(PyString::from("v"))),
            p.push(Value::Str(PyString::from("s"))),
        );
        let mut items = Vec::new();
        for i in 0..20_000 {
            let n = p.push(Value::Int(i));
            let l = p.push(Value::List(thin_vec::thin_vec![n, s]));
            items.push(p.push(Value::Dict(thin_vec::thin_vec![(kid, n), (kv, l)])));
        }
        let root = p.push(Value::List(items.into()));
        p.set_root(root);
        for pretty in [false, true] {
            let mut out = Vec::new();
            to_writer(&p, &mut out, &Options { pretty }).unwrap();
            let expected = if pretty {
                to_json_pretty(&p)
            } else {
                to_json(&p)
            };
            assert!(expected.len() > 4 * FLUSH_AT);
            assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
        assert!(to_json(&p).starts_with(r#"[{"id":0,"v":[0,"s"]},{"id":1,"v":[1,"s"]}"#));
        assert_eq!(p.to_json(), to_json(&p));
    }

    #[test]
    fn writer_errors_are_reported() {
        struct Broken;
        impl io::Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::BrokenPipe, "pipe closed"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let p = read(b"\x80\x02N.");
        let err = to_writer(&p, Broken, &Options::default()).unwrap_err();
        assert_eq!(err.to_string(), "i/o error: pipe closed");
    }

    #[test]
    fn foreign_ids_do_not_panic() {
        let mut p = Pickle::new();
        let root = p.push(Value::List(thin_vec::thin_vec![ValueId(999), ValueId(0)]));
        p.set_root(root);
        assert_eq!(to_json(&p), "[null,null]");
        let root = p.push(Value::Dict(thin_vec::thin_vec![(
            ValueId(999),
            ValueId(998)
        )]));
        p.set_root(root);
        assert_eq!(to_json(&p), r#"{"$dict":[[null,null]]}"#);
    }
}
