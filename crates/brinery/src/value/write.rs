//! Writing a [`Pickle`] back to bytes, at any protocol.
//!
//! The writer visits the value graph the way CPython's C pickler (`save()` in `_pickle.c`)
//! visits objects, so that writing a pickle CPython made from plain data, at the protocol it was
//! made with, gives back the same bytes: the same opcodes, the same memo entries in the same
//! order, the same batches and frames. Every `str`, `bytes`, container, global and object is
//! memoized the first time it is written (ints, floats, `None`, bools and empty tuples are not);
//! later references become `GET`s, which also keeps "billion laughs" graphs linear.
//!
//! Writing at another protocol translates what the target lacks the way CPython does (sets,
//! `bytes` and `bytearray` become reductions, `NEWOBJ`/`NEWOBJ_EX` become `copyreg.__newobj__` /
//! `copyreg.__newobj_ex__` calls, globals are renamed for Python 2 below protocol 3 exactly when
//! the unpickler will rename them back, dotted names become `getattr` calls below protocol 4).
//! What cannot be expressed (out-of-band buffers below 5, extension codes below 2, computed
//! globals below 4, a non-ASCII persistent id at 0) is an [`ErrorKind::Unsupported`] error.
//!
//! The walk uses an explicit work stack: a value nested a million levels deep is written without
//! recursion.
//!
//! ```
//! use brinery::Pickle;
//! // t = ([],); t[0].append(t); pickle.dumps(t, 2)
//! let data = b"\x80\x02]q\x00h\x00\x85q\x01a0h\x01.";
//! let p = Pickle::from_slice(data).unwrap();
//! assert_eq!(p.to_vec(2).unwrap(), data);
//! let p0 = p.to_vec(0).unwrap();
//! assert_eq!(p0, b"((lp0\n(g0\ntp1\na00g1\n.");
//! ```

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::rc::Rc;

use super::{CallKind, Global, Mutation, Pickle, Value, ValueId};
use crate::encode::{
    batches, binfloat_bytes, binint_word, python2_name, python3_name, BatchRule, Batches, Encoder,
    SCALAR_MAX,
};
use crate::error::{Error, ErrorKind, Result};
use crate::opcode::Opcode;
use crate::pystr::PyString;

impl Pickle {
    /// Write the pickle at `protocol` (0–5) into a new vector, as `pickle.dumps` would.
    ///
    /// ```
    /// let p = brinery::Pickle::from_slice(b"\x80\x04\x95\x06\x00\x00\x00\x00\x00\x00\x00]\x94K\x01a.").unwrap();
    /// assert_eq!(p.to_vec(4).unwrap(), b"\x80\x04\x95\x06\x00\x00\x00\x00\x00\x00\x00]\x94K\x01a.");
    /// assert_eq!(p.to_vec(0).unwrap(), b"(lp0\nI1\na.");
    /// ```
    pub fn to_vec(&self, protocol: u8) -> Result<Vec<u8>> {
        let buf = Vec::with_capacity(self.output_capacity(protocol));
        let mut enc = Encoder::with_buffer(protocol, buf)?;
        enc.start();
        Writer::new(self, &mut enc).run()?;
        enc.finish()
    }

    /// Write the pickle at `protocol` to `w`, as `pickle.dump` would: committed frames are
    /// written as they fill up and large payloads go to `w` directly.
    pub fn write_to<W: Write>(&self, mut w: W, protocol: u8) -> Result<()> {
        {
            let mut enc = Encoder::with_sink(protocol, &mut w)?;
            enc.start();
            Writer::new(self, &mut enc).run()?;
            enc.finish()?;
        }
        w.flush()?;
        Ok(())
    }
}

/// How many container levels the writer handles by native recursion before it falls back to its
/// explicit work stack (so any depth is fine, and plain trees run without task bookkeeping).
const INLINE_DEPTH: u32 = 24;

/// Memo slots per page of [`MemoTable`].
const MEMO_PAGE: usize = 1024;

/// The memo index of each value, by value id, in pages of [`MEMO_PAGE`] slots allocated on first
/// use: a big list of floats memoizes one value and must not pay for a slot per float. A slot
/// holds the index plus one; 0 means "not memoized".
struct MemoTable {
    pages: Vec<Option<Box<[u32; MEMO_PAGE]>>>,
}

impl MemoTable {
    fn new(values: usize) -> Self {
        let mut pages = Vec::new();
        pages.resize_with(values.div_ceil(MEMO_PAGE), || None);
        MemoTable { pages }
    }

    #[inline(always)]
    fn get(&self, id: ValueId) -> Option<u32> {
        let i = id.index();
        let page = self.pages.get(i / MEMO_PAGE)?.as_deref()?;
        page[i % MEMO_PAGE].checked_sub(1)
    }

    /// Record `idx` for `id` (ids outside the arena are ignored).
    #[inline(always)]
    fn set(&mut self, id: ValueId, idx: u32) {
        let i = id.index();
        if let Some(slot) = self.pages.get_mut(i / MEMO_PAGE) {
            let page = match slot {
                Some(page) => page,
                None => slot.insert(Self::new_page()),
            };
            page[i % MEMO_PAGE] = idx.wrapping_add(1);
        }
    }

    #[cold]
    fn new_page() -> Box<[u32; MEMO_PAGE]> {
        Box::new([0; MEMO_PAGE])
    }
}

fn unsupported(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Unsupported(msg.into()))
}

/// A global to write: from the arena (its meaning depends on the source protocol), a Python 3
/// name the writer introduces, or a final name that is written as is.
enum GlobalRef<'a> {
    Arena(&'a Global),
    Py3(&'static str, &'static str),
    Final(PyString, PyString),
}

/// A run of items to save: borrowed from the arena, or collected from a run of mutations.
#[derive(Clone)]
enum Items<'a> {
    Arena(&'a [ValueId]),
    Owned(Rc<[ValueId]>),
}

impl Items<'_> {
    #[inline]
    fn as_slice(&self) -> &[ValueId] {
        match self {
            Items::Arena(items) => items,
            Items::Owned(items) => items,
        }
    }
}

/// A run of key/value pairs to save, borrowed or collected like [`Items`].
#[derive(Clone)]
enum Pairs<'a> {
    Arena(&'a [(ValueId, ValueId)]),
    Owned(Rc<[(ValueId, ValueId)]>),
}

impl Pairs<'_> {
    #[inline]
    fn as_slice(&self) -> &[(ValueId, ValueId)] {
        match self {
            Pairs::Arena(pairs) => pairs,
            Pairs::Owned(pairs) => pairs,
        }
    }
}

/// One step of the walk. "Save-like" steps correspond to a `save()` call in `_pickle.c` and start
/// with an opcode boundary.
enum Task<'a> {
    /// Save the value `value` under the identity `ident` (they differ for a `Mutated` base).
    Save {
        value: ValueId,
        ident: ValueId,
    },
    /// Write one opcode.
    Op(Opcode),
    /// Save `items[pos..end]` in order. Sequences are expanded one item at a time, so the work
    /// stack grows with the nesting depth, never with the length of a list.
    Items {
        items: Items<'a>,
        pos: usize,
        end: usize,
    },
    /// Save `items` in batches, each closed by `single` (unmarked) or `multi` (marked); one batch
    /// is expanded at a time.
    Batched {
        items: Items<'a>,
        batches: Batches,
        single: Opcode,
        multi: Opcode,
    },
    /// Save key/value pairs in `SETITEM`/`SETITEMS` batches, one batch at a time.
    PairsBatched {
        pairs: Pairs<'a>,
        batches: Batches,
    },
    /// Save keys and values `pos..end` of `pairs`, counting two positions per pair.
    PairItems {
        pairs: Pairs<'a>,
        pos: usize,
        end: usize,
    },
    /// Memoize `ident` unless it already is.
    Memoize(ValueId),
    /// Memoize `ident` if it is a rarely-memoized kind that is referenced more than once.
    MaybeMemo(ValueId),
    /// Memoize a fresh object nobody refers to (an argument tuple the writer introduced).
    MemoFresh,
    /// The end of a non-empty tuple (the recursive case pops and fetches from the memo).
    TupleEnd {
        ident: ValueId,
        len: usize,
    },
    /// The end of a protocol-4 frozenset.
    FrozenSetEnd {
        ident: ValueId,
    },
    /// After the callable and arguments: the call opcode, the memo, then the object's mutations.
    CallEnd {
        value: ValueId,
        ident: ValueId,
        op: Opcode,
    },
    /// After the marked arguments of `INST` (`Some`) or `OBJ` (`None`).
    InstEnd {
        value: ValueId,
        ident: ValueId,
        inst: Option<&'a Global>,
    },
    /// After the base of a `Mutated` value.
    MutatedEnd {
        value: ValueId,
        ident: ValueId,
    },
    /// Restore the in-progress record of `ident`.
    Leave {
        ident: ValueId,
        prev: Option<u32>,
    },
    /// A global (memoized by identity and by name).
    Global(GlobalRef<'a>, Option<ValueId>),
    /// The module (`true`) or qualified name (`false`) string of a `STACK_GLOBAL`, memoized by
    /// content: CPython shares a class's `__module__` string between the classes of one module.
    NameStr(PyString, bool),
    /// The memo entry of a global whose opcodes were just written.
    GlobalDone(Option<ValueId>, (PyString, PyString)),
    /// Start / end of a tuple the writer introduced.
    SynthTupleStart(usize),
    SynthTupleEnd(usize),
    /// A list the writer introduced, holding `items` (the `[items]` of `set([items])`).
    SynthList(&'a [ValueId]),
    /// An interned string literal (`'latin1'`, `'add'`): memoized once.
    Lit(&'static str),
    /// A fresh string (memoized, never referenced again).
    FreshStr(PyString),
    /// `bytes` decoded as Latin-1 (the argument of `_codecs.encode`).
    LatinStr(&'a [u8]),
    /// A fresh `bytes` object (the argument of `bytearray(...)` below protocol 5).
    FreshBytes(&'a [u8]),
    /// `()`.
    EmptyTuple,
    /// A fresh empty dict (the kwargs of `copyreg.__newobj_ex__`).
    EmptyDict,
}

struct Writer<'a, 'e, 'w> {
    p: &'a Pickle,
    enc: &'e mut Encoder<'w>,
    proto: u8,
    memo: MemoTable,
    memo_len: u32,
    global_memo: HashMap<(PyString, PyString), u32>,
    name_memo: HashMap<(PyString, bool), u32>,
    lit_memo: HashMap<&'static str, u32>,
    /// Rarely-memoized values referenced more than once; computed on first need.
    shared: Option<HashSet<ValueId>>,
    in_progress: HashMap<ValueId, u32>,
    applied: HashSet<ValueId>,
    buffers: u32,
    tasks: Vec<Task<'a>>,
}

impl<'a, 'e, 'w> Writer<'a, 'e, 'w> {
    fn new(p: &'a Pickle, enc: &'e mut Encoder<'w>) -> Self {
        let proto = enc.protocol();
        Writer {
            p,
            enc,
            proto,
            memo: MemoTable::new(p.len()),
            memo_len: 0,
            global_memo: HashMap::new(),
            name_memo: HashMap::new(),
            lit_memo: HashMap::new(),
            shared: None,
            in_progress: HashMap::new(),
            applied: HashSet::new(),
            buffers: 0,
            tasks: Vec::new(),
        }
    }

    fn run(mut self) -> Result<()> {
        let root = self.p.root();
        self.tasks.push(Task::Save {
            value: root,
            ident: root,
        });
        // Values the original built and threw away before the root: build them, then POP.
        for &id in self.p.discarded().iter().rev() {
            self.tasks.push(Task::Op(Opcode::POP));
            self.tasks.push(Task::Save {
                value: id,
                ident: id,
            });
        }
        while let Some(task) = self.tasks.pop() {
            self.step(task)?;
        }
        Ok(())
    }

    fn value(&self, id: ValueId) -> Result<&'a Value> {
        let p: &'a Pickle = self.p;
        p.get(id)
            .ok_or_else(|| unsupported(format!("value id {} is out of range", id.index())))
    }

    #[inline(always)]
    fn memo_of(&self, id: ValueId) -> Option<u32> {
        self.memo.get(id)
    }

    #[inline(always)]
    fn next_memo(&mut self) -> Result<u32> {
        let idx = self.memo_len;
        if idx == u32::MAX {
            return Err(unsupported("too many memo entries"));
        }
        self.enc.put(idx as u64)?;
        self.memo_len += 1;
        Ok(idx)
    }

    fn memoize(&mut self, ident: ValueId) -> Result<()> {
        if self.memo_of(ident).is_none() {
            self.memoize_new(ident)?;
        }
        Ok(())
    }

    /// Memoize `ident`, which the caller knows is not memoized yet.
    #[inline(always)]
    fn memoize_new(&mut self, ident: ValueId) -> Result<()> {
        let idx = self.next_memo()?;
        self.memo.set(ident, idx);
        Ok(())
    }

    /// The memo index of `id`, a string, `bytes` or container saved under its own identity
    /// (the fast paths of [`save_simple`](Self::save_simple) and
    /// [`save_compound`](Self::save_compound)). A value referenced once cannot have been written
    /// before, so its memo record is not even looked up.
    #[inline(always)]
    fn item_memo(&self, id: ValueId) -> Option<u32> {
        if self.p.referenced_once(id) {
            return None;
        }
        self.memo.get(id)
    }

    /// Memoize `id` as [`item_memo`](Self::item_memo) looks it up: the memo opcode is always
    /// written (CPython writes it, and the output stays byte-identical), but a value referenced
    /// once gets no record, since nothing will fetch it (for a list of 200,000 strings, the
    /// records were a third of the time).
    #[inline(always)]
    fn memoize_item(&mut self, id: ValueId) -> Result<()> {
        let idx = self.next_memo()?;
        if !self.p.referenced_once(id) {
            self.memo.set(id, idx);
        }
        Ok(())
    }

    /// Record that `ident` (a value memoized only after its children) is being written; an
    /// identical record with no memo growth in between means the walk would never end.
    fn enter(&mut self, ident: ValueId) -> Result<()> {
        let now = self.memo_len;
        let prev = self.in_progress.insert(ident, now);
        if prev == Some(now) {
            return Err(unsupported(
                "the value contains itself only through tuples, frozensets or call arguments",
            ));
        }
        self.tasks.push(Task::Leave { ident, prev });
        Ok(())
    }

    fn push_items(&mut self, items: &'a [ValueId]) {
        if !items.is_empty() {
            self.tasks.push(Task::Items {
                items: Items::Arena(items),
                pos: 0,
                end: items.len(),
            });
        }
    }

    /// Push `items` in batches (`batch_list`/`save_set` style) closing each with `multi`, or
    /// `single` for an unmarked batch.
    fn push_batched(&mut self, items: Items<'a>, rule: BatchRule, single: Opcode, multi: Opcode) {
        let batches = batches(items.as_slice().len(), rule);
        self.tasks.push(Task::Batched {
            items,
            batches,
            single,
            multi,
        });
    }

    fn push_pairs_batched(&mut self, pairs: Pairs<'a>, rule: BatchRule) {
        let batches = batches(pairs.as_slice().len(), rule);
        self.tasks.push(Task::PairsBatched { pairs, batches });
    }

    /// Push `REDUCE(global, (items...))` ending in `CallEnd` for `ident` (tasks in execution
    /// order are: global, tuple start, `args`, tuple end, call end).
    fn push_reduce(
        &mut self,
        value: ValueId,
        ident: ValueId,
        global: GlobalRef<'a>,
        args: Vec<Task<'a>>,
    ) {
        self.tasks.push(Task::CallEnd {
            value,
            ident,
            op: Opcode::REDUCE,
        });
        if args.is_empty() {
            self.tasks.push(Task::EmptyTuple);
        } else {
            let n = args.len();
            self.tasks.push(Task::SynthTupleEnd(n));
            self.tasks.extend(args.into_iter().rev());
            self.tasks.push(Task::SynthTupleStart(n));
        }
        self.tasks.push(Task::Global(global, None));
    }

    fn step(&mut self, task: Task<'a>) -> Result<()> {
        match task {
            Task::Save { value, ident } => self.save(value, ident)?,
            Task::Op(op) => self.enc.opcode(op),
            Task::Items { items, pos, end } => {
                self.resume_items(items, pos, end, 0)?;
            }
            Task::Batched {
                items,
                mut batches,
                single,
                multi,
            } => {
                if let Some(b) = batches.next() {
                    // In execution order: MARK (if marked), the batch, its closing opcode, then
                    // the rest of the batches.
                    self.tasks.push(Task::Batched {
                        items: items.clone(),
                        batches,
                        single,
                        multi,
                    });
                    self.tasks
                        .push(Task::Op(if b.marked { multi } else { single }));
                    if b.len > 0 {
                        self.tasks.push(Task::Items {
                            items,
                            pos: b.start,
                            end: b.start + b.len,
                        });
                    }
                    if b.marked {
                        self.enc.opcode(Opcode::MARK);
                    }
                }
            }
            Task::PairsBatched { pairs, mut batches } => {
                if let Some(b) = batches.next() {
                    self.tasks.push(Task::PairsBatched {
                        pairs: pairs.clone(),
                        batches,
                    });
                    self.tasks.push(Task::Op(if b.marked {
                        Opcode::SETITEMS
                    } else {
                        Opcode::SETITEM
                    }));
                    if b.len > 0 {
                        self.tasks.push(Task::PairItems {
                            pairs,
                            pos: 2 * b.start,
                            end: 2 * (b.start + b.len),
                        });
                    }
                    if b.marked {
                        self.enc.opcode(Opcode::MARK);
                    }
                }
            }
            Task::PairItems { pairs, pos, end } => {
                self.resume_pairs(pairs, pos, end, 0)?;
            }
            Task::Memoize(ident) => self.memoize(ident)?,
            Task::MaybeMemo(ident) => {
                let p = self.p;
                if self
                    .shared
                    .get_or_insert_with(|| shared_rare_values(p))
                    .contains(&ident)
                {
                    self.memoize(ident)?;
                }
            }
            Task::MemoFresh => {
                self.next_memo()?;
            }
            Task::TupleEnd { ident, len } => {
                if let Some(idx) = self.memo_of(ident) {
                    self.enc.tuple_pop_recursive(len);
                    self.enc.get(idx as u64)?;
                } else {
                    self.enc.tuple_end(len);
                    self.memoize(ident)?;
                }
            }
            Task::FrozenSetEnd { ident } => {
                if let Some(idx) = self.memo_of(ident) {
                    self.enc.opcode(Opcode::POP_MARK);
                    self.enc.get(idx as u64)?;
                } else {
                    self.enc.opcode(Opcode::FROZENSET);
                    self.memoize(ident)?;
                }
            }
            Task::CallEnd { value, ident, op } => {
                self.enc.opcode(op);
                self.after_call(value, ident)?;
            }
            Task::InstEnd { value, ident, inst } => {
                match inst {
                    Some(g) => {
                        let (m, n) = self.resolve(&GlobalRef::Arena(g))?;
                        self.enc.inst(m.as_bytes(), n.as_bytes())?;
                    }
                    None => self.enc.opcode(Opcode::OBJ),
                }
                self.after_call(value, ident)?;
            }
            Task::MutatedEnd { value, ident } => {
                if self.applied.insert(ident) {
                    self.memoize(ident)?;
                    if let Value::Mutated(m) = self.value(value)? {
                        self.push_mutations(ident, &m.mutations);
                    }
                }
            }
            Task::Leave { ident, prev } => match prev {
                Some(p) => {
                    self.in_progress.insert(ident, p);
                }
                None => {
                    self.in_progress.remove(&ident);
                }
            },
            Task::Global(g, ident) => self.global(g, ident)?,
            Task::NameStr(s, is_module) => {
                self.enc.opcode_boundary()?;
                let key = (s, is_module);
                if let Some(&idx) = self.name_memo.get(&key) {
                    self.enc.get(idx as u64)?;
                } else {
                    self.enc.str(&key.0)?;
                    let idx = self.next_memo()?;
                    self.name_memo.insert(key, idx);
                }
            }
            Task::GlobalDone(ident, key) => {
                let idx = self.next_memo()?;
                if let Some(id) = ident {
                    self.memo.set(id, idx);
                }
                self.global_memo.insert(key, idx);
            }
            Task::SynthTupleStart(n) => {
                self.enc.opcode_boundary()?;
                self.enc.tuple_start(n);
            }
            Task::SynthTupleEnd(n) => {
                self.enc.tuple_end(n);
                self.next_memo()?;
            }
            Task::SynthList(items) => {
                self.enc.opcode_boundary()?;
                self.enc.empty_list();
                self.next_memo()?;
                self.push_batched(
                    Items::Arena(items),
                    BatchRule::list(self.proto),
                    Opcode::APPEND,
                    Opcode::APPENDS,
                );
            }
            Task::Lit(s) => {
                self.enc.opcode_boundary()?;
                if let Some(&idx) = self.lit_memo.get(s) {
                    self.enc.get(idx as u64)?;
                } else {
                    self.enc.str(&PyString::from(s))?;
                    let idx = self.next_memo()?;
                    self.lit_memo.insert(s, idx);
                }
            }
            Task::FreshStr(s) => {
                self.enc.opcode_boundary()?;
                self.enc.str(&s)?;
                self.next_memo()?;
            }
            Task::LatinStr(b) => {
                self.enc.opcode_boundary()?;
                let s = latin1(b);
                self.enc.str(&s)?;
                self.next_memo()?;
            }
            Task::FreshBytes(b) => {
                self.enc.opcode_boundary()?;
                if self.proto >= 3 {
                    self.enc.bytes(b)?;
                    self.next_memo()?;
                } else {
                    // _codecs.encode(b.decode('latin1'), 'latin1'), memoized like any reduction.
                    self.tasks.push(Task::MemoFresh);
                    self.tasks.push(Task::Op(Opcode::REDUCE));
                    self.tasks.push(Task::SynthTupleEnd(2));
                    self.tasks.push(Task::Lit("latin1"));
                    self.tasks.push(Task::LatinStr(b));
                    self.tasks.push(Task::SynthTupleStart(2));
                    self.tasks
                        .push(Task::Global(GlobalRef::Py3("_codecs", "encode"), None));
                }
            }
            Task::EmptyTuple => {
                self.enc.opcode_boundary()?;
                self.enc.empty_tuple();
            }
            Task::EmptyDict => {
                self.enc.opcode_boundary()?;
                self.enc.empty_dict();
                self.next_memo()?;
            }
        }
        Ok(())
    }

    /// After `REDUCE`/`NEWOBJ`/`INST`/...: a recursive object is already in the memo (throw the
    /// new one away and fetch it, skipping its state as `save_reduce` does); otherwise memoize
    /// it and write its mutations.
    fn after_call(&mut self, value: ValueId, ident: ValueId) -> Result<()> {
        if let Some(idx) = self.memo_of(ident) {
            self.enc.opcode(Opcode::POP);
            self.enc.get(idx as u64)?;
            return Ok(());
        }
        self.memoize(ident)?;
        if let Value::Object(obj) = self.value(value)? {
            self.push_mutations(ident, &obj.mutations);
        }
        Ok(())
    }

    /// Push the mutations of `ident` in order, batching runs of the same kind.
    fn push_mutations(&mut self, ident: ValueId, mutations: &'a [Mutation]) {
        // Split into runs, then push the runs in reverse.
        let mut runs: Vec<&'a [Mutation]> = Vec::new();
        let mut start = 0;
        for i in 1..=mutations.len() {
            if i == mutations.len()
                || std::mem::discriminant(&mutations[i])
                    != std::mem::discriminant(&mutations[start])
                || matches!(mutations[i], Mutation::Build(_))
            {
                runs.push(&mutations[start..i]);
                start = i;
            }
        }
        for run in runs.into_iter().rev() {
            match run.first() {
                Some(Mutation::Append(_)) => {
                    let items: Rc<[ValueId]> = run
                        .iter()
                        .filter_map(|m| match m {
                            Mutation::Append(v) => Some(*v),
                            _ => None,
                        })
                        .collect();
                    self.push_owned_batched(items, BatchRule::iter(self.proto), false);
                }
                Some(Mutation::SetItem(..)) => {
                    let pairs: Rc<[(ValueId, ValueId)]> = run
                        .iter()
                        .filter_map(|m| match m {
                            Mutation::SetItem(k, v) => Some((*k, *v)),
                            _ => None,
                        })
                        .collect();
                    self.push_pairs_batched(Pairs::Owned(pairs), BatchRule::iter(self.proto));
                }
                Some(Mutation::Add(_)) => {
                    let items: Rc<[ValueId]> = run
                        .iter()
                        .filter_map(|m| match m {
                            Mutation::Add(v) => Some(*v),
                            _ => None,
                        })
                        .collect();
                    if self.proto >= 4 {
                        self.push_owned_batched(items, BatchRule::SetExact, true);
                    } else {
                        // getattr(obj, 'add')(item), result discarded.
                        for &item in items.iter().rev() {
                            self.tasks.push(Task::Op(Opcode::POP));
                            self.tasks.push(Task::Op(Opcode::REDUCE));
                            self.tasks.push(Task::SynthTupleEnd(1));
                            self.tasks.push(Task::Save {
                                value: item,
                                ident: item,
                            });
                            self.tasks.push(Task::SynthTupleStart(1));
                            self.tasks.push(Task::Op(Opcode::REDUCE));
                            self.tasks.push(Task::SynthTupleEnd(2));
                            self.tasks.push(Task::Lit("add"));
                            self.tasks.push(Task::Save {
                                value: ident,
                                ident,
                            });
                            self.tasks.push(Task::SynthTupleStart(2));
                            self.tasks
                                .push(Task::Global(GlobalRef::Py3("builtins", "getattr"), None));
                        }
                    }
                }
                Some(Mutation::Discard(_)) => {
                    for m in run.iter().rev() {
                        if let Mutation::Discard(v) = *m {
                            self.tasks.push(Task::Op(Opcode::POP));
                            self.tasks.push(Task::Save { value: v, ident: v });
                        }
                    }
                }
                Some(Mutation::Build(state)) => {
                    self.tasks.push(Task::Op(Opcode::BUILD));
                    self.tasks.push(Task::Save {
                        value: *state,
                        ident: *state,
                    });
                }
                None => {}
            }
        }
    }

    fn push_owned_batched(&mut self, items: Rc<[ValueId]>, rule: BatchRule, add: bool) {
        let (single, multi) = if add {
            (Opcode::ADDITEMS, Opcode::ADDITEMS)
        } else {
            (Opcode::APPEND, Opcode::APPENDS)
        };
        self.push_batched(Items::Owned(items), rule, single, multi);
    }

    /// Save `items[pos..end]` in order (the items of one batch, or of a tuple). Scalars and
    /// strings are written inline and containers by native recursion up to [`INLINE_DEPTH`]; when
    /// an item schedules tasks of its own (a tuple, an object, a container too deep), the rest is
    /// put back on the work stack below those tasks. Returns whether all items were written.
    #[inline(always)]
    fn resume_items(
        &mut self,
        items: Items<'a>,
        mut pos: usize,
        end: usize,
        depth: u32,
    ) -> Result<bool> {
        while pos < end {
            pos = self.save_scalar_run(items.as_slice(), pos, end)?;
            if pos >= end {
                break;
            }
            let Some(&id) = items.as_slice().get(pos) else {
                break;
            };
            pos += 1;
            let before = self.tasks.len();
            self.enc.opcode_boundary()?;
            self.save_compound(id, depth)?;
            if self.tasks.len() != before {
                if pos < end {
                    self.tasks.insert(before, Task::Items { items, pos, end });
                }
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Like [`resume_items`](Self::resume_items) over keys and values interleaved: position `2i`
    /// is the key of pair `i`, `2i + 1` its value.
    #[inline(always)]
    fn resume_pairs(
        &mut self,
        pairs: Pairs<'a>,
        mut pos: usize,
        end: usize,
        depth: u32,
    ) -> Result<bool> {
        while pos < end {
            let Some(&(k, v)) = pairs.as_slice().get(pos / 2) else {
                break;
            };
            let id = if pos % 2 == 0 { k } else { v };
            pos += 1;
            let before = self.tasks.len();
            self.save_item(id, depth)?;
            if self.tasks.len() != before {
                if pos < end {
                    self.tasks
                        .insert(before, Task::PairItems { pairs, pos, end });
                }
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// `save()` of an item of a container (its own identity), at recursion depth `depth`.
    #[inline(always)]
    fn save_item(&mut self, id: ValueId, depth: u32) -> Result<()> {
        if self.save_simple(id)? {
            return Ok(());
        }
        self.enc.opcode_boundary()?;
        self.save_compound(id, depth)
    }

    /// The rest of `save()` (after the opcode boundary) for a value saved under its own identity:
    /// memo hits, strings, `bytes`, and lists, dicts and sets written by native recursion while
    /// `depth` allows; everything else goes to [`save_slow`](Self::save_slow), which may schedule
    /// tasks.
    fn save_compound(&mut self, id: ValueId, depth: u32) -> Result<()> {
        let Some(value) = self.p.values().get(id.index()) else {
            return self.save_slow(id, id);
        };
        let proto = self.proto;
        match value {
            Value::Str(s) => {
                if let Some(idx) = self.item_memo(id) {
                    return self.enc.get(idx as u64);
                }
                self.enc.str(s)?;
                self.memoize_item(id)
            }
            Value::Bytes(b) if proto >= 3 => {
                if let Some(idx) = self.item_memo(id) {
                    return self.enc.get(idx as u64);
                }
                self.enc.bytes(b)?;
                self.memoize_item(id)
            }
            Value::List(items) if depth < INLINE_DEPTH => {
                if let Some(idx) = self.item_memo(id) {
                    return self.enc.get(idx as u64);
                }
                self.enc.empty_list();
                self.memoize_item(id)?;
                self.inline_batched(
                    items,
                    batches(items.len(), BatchRule::list(proto)),
                    Opcode::APPEND,
                    Opcode::APPENDS,
                    depth + 1,
                )
            }
            Value::Dict(pairs) if depth < INLINE_DEPTH => {
                if let Some(idx) = self.item_memo(id) {
                    return self.enc.get(idx as u64);
                }
                self.enc.empty_dict();
                self.memoize_item(id)?;
                self.inline_pairs_batched(
                    pairs,
                    batches(pairs.len(), BatchRule::dict(proto)),
                    depth + 1,
                )
            }
            Value::Set(items) if proto >= 4 && depth < INLINE_DEPTH => {
                if let Some(idx) = self.item_memo(id) {
                    return self.enc.get(idx as u64);
                }
                self.enc.opcode(Opcode::EMPTY_SET);
                self.memoize_item(id)?;
                self.inline_batched(
                    items,
                    batches(items.len(), BatchRule::SetExact),
                    Opcode::ADDITEMS,
                    Opcode::ADDITEMS,
                    depth + 1,
                )
            }
            _ => self.save_slow(id, id),
        }
    }

    /// What `Task::Batched` does, by native recursion: each batch is `MARK`, the items, then
    /// `multi` (or the item, then `single`). If an item schedules tasks, the rest of this batch,
    /// its closing opcode and the remaining batches are put back on the work stack below them.
    fn inline_batched(
        &mut self,
        items: &'a [ValueId],
        mut batches: Batches,
        single: Opcode,
        multi: Opcode,
        depth: u32,
    ) -> Result<()> {
        while let Some(b) = batches.next() {
            if b.marked {
                self.enc.opcode(Opcode::MARK);
            }
            let close = if b.marked { multi } else { single };
            let before = self.tasks.len();
            if !self.resume_items(Items::Arena(items), b.start, b.start + b.len, depth)? {
                self.tasks.insert(before, Task::Op(close));
                self.tasks.insert(
                    before,
                    Task::Batched {
                        items: Items::Arena(items),
                        batches,
                        single,
                        multi,
                    },
                );
                return Ok(());
            }
            self.enc.opcode(close);
        }
        Ok(())
    }

    /// What `Task::PairsBatched` does, by native recursion (see
    /// [`inline_batched`](Self::inline_batched)).
    fn inline_pairs_batched(
        &mut self,
        pairs: &'a [(ValueId, ValueId)],
        mut batches: Batches,
        depth: u32,
    ) -> Result<()> {
        while let Some(b) = batches.next() {
            if b.marked {
                self.enc.opcode(Opcode::MARK);
            }
            let close = if b.marked {
                Opcode::SETITEMS
            } else {
                Opcode::SETITEM
            };
            let before = self.tasks.len();
            let (pos, end) = (2 * b.start, 2 * (b.start + b.len));
            if !self.resume_pairs(Pairs::Arena(pairs), pos, end, depth)? {
                self.tasks.insert(before, Task::Op(close));
                self.tasks.insert(
                    before,
                    Task::PairsBatched {
                        pairs: Pairs::Arena(pairs),
                        batches,
                    },
                );
                return Ok(());
            }
            self.enc.opcode(close);
        }
        Ok(())
    }

    /// Save the scalars (`None`, bools, ints, floats) and strings of `items[pos..end]` up to the
    /// first value that is neither, in a tight loop; returns the position of that value. Big
    /// lists of numbers or strings are the common case this serves.
    #[inline(always)]
    fn save_scalar_run(&mut self, items: &[ValueId], mut pos: usize, end: usize) -> Result<usize> {
        let values = self.p.values();
        let proto = self.proto;
        let end = end.min(items.len());
        while pos < end {
            let id = items[pos];
            match values.get(id.index()) {
                Some(v) if proto > 0 && run_scalar(v, proto) => {
                    let run = &items[pos..end.min(pos + SCALAR_RUN)];
                    let n = self.enc.scalar_run(run.len(), |out, k| {
                        fill_scalars(values, &run[..k], proto, out)
                    });
                    if n > 0 {
                        pos += n;
                        continue;
                    }
                }
                // A string written before (or to be fetched again) goes the ordinary way.
                Some(Value::Str(_)) if proto > 0 && self.p.referenced_once(id) => {
                    let next = self.save_str_run(&items[..end], pos);
                    if next > pos {
                        pos = next;
                        continue;
                    }
                }
                _ => {}
            }
            if !self.save_simple(id)? {
                break;
            }
            pos += 1;
        }
        Ok(pos)
    }

    /// Save the strings at `items[pos..]` that the stream referenced once, up to the first
    /// other value; returns the position after the last one written (`pos` if none was). A
    /// string referenced once cannot have been written before and will not be fetched again:
    /// no memo lookup, no memo record, only the `BINPUT` / `LONG_BINPUT` / `MEMOIZE` CPython
    /// writes. One loop without a dispatch per item: a list of short strings spends most of
    /// its time on the per-item overhead, not on the copy.
    #[inline(never)]
    fn save_str_run(&mut self, items: &[ValueId], pos: usize) -> usize {
        let p: &Pickle = self.p;
        let (Some(shared), Some(items)) = (p.shared_bits(), items.get(pos..)) else {
            return pos;
        };
        let values = p.values();
        let n = self.enc.fresh_str_run(self.memo_len, |k| {
            let id = *items.get(k)?;
            match values.get(id.index()) {
                Some(Value::Str(s)) if !shared.get(id) => Some(s.as_bytes()),
                _ => None,
            }
        });
        // At most `u32::MAX - memo_len` texts were written.
        self.memo_len += n as u32;
        pos + n
    }

    /// `save()` of `id` under its own identity if it is a scalar or a `str` (opcode boundary
    /// included); returns false, having written nothing, for anything else.
    #[inline(always)]
    fn save_simple(&mut self, id: ValueId) -> Result<bool> {
        let Some(value) = self.p.values().get(id.index()) else {
            return Ok(false);
        };
        match value {
            Value::Float(f) => {
                self.enc.opcode_boundary()?;
                self.enc.float(*f);
            }
            Value::Int(i) => {
                self.enc.opcode_boundary()?;
                self.enc.int(*i);
            }
            Value::None => {
                self.enc.opcode_boundary()?;
                self.enc.none();
            }
            Value::Bool(b) => {
                self.enc.opcode_boundary()?;
                self.enc.bool(*b);
            }
            Value::Str(s) => {
                self.enc.opcode_boundary()?;
                match self.item_memo(id) {
                    Some(idx) => self.enc.get(idx as u64)?,
                    None => {
                        let idx = self.memo_len;
                        if idx != u32::MAX && self.enc.str_put(s, idx) {
                            self.memo_len += 1;
                            if !self.p.referenced_once(id) {
                                self.memo.set(id, idx);
                            }
                        } else {
                            self.enc.str(s)?;
                            self.memoize_item(id)?;
                        }
                    }
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// `save()`: scalars inline (the bulk of big lists), everything else out of line.
    #[inline(always)]
    fn save(&mut self, value_id: ValueId, ident: ValueId) -> Result<()> {
        self.enc.opcode_boundary()?;
        match self.p.values().get(value_id.index()) {
            Some(Value::Float(f)) => {
                self.enc.float(*f);
                Ok(())
            }
            Some(Value::Int(i)) => {
                self.enc.int(*i);
                Ok(())
            }
            Some(Value::None) => {
                self.enc.none();
                Ok(())
            }
            Some(Value::Bool(b)) => {
                self.enc.bool(*b);
                Ok(())
            }
            _ => self.save_slow(value_id, ident),
        }
    }

    #[inline(never)]
    fn save_slow(&mut self, value_id: ValueId, ident: ValueId) -> Result<()> {
        let value = self.value(value_id)?;
        match value {
            Value::None => {
                self.enc.none();
                return Ok(());
            }
            Value::Bool(b) => {
                self.enc.bool(*b);
                return Ok(());
            }
            Value::Int(i) => {
                self.enc.int(*i);
                return Ok(());
            }
            Value::BigInt(b) => return self.enc.big_int(b),
            Value::Float(f) => {
                self.enc.float(*f);
                return Ok(());
            }
            _ => {}
        }
        if let Some(idx) = self.memo_of(ident) {
            return self.enc.get(idx as u64);
        }
        let proto = self.proto;
        match value {
            Value::None | Value::Bool(_) | Value::Int(_) | Value::BigInt(_) | Value::Float(_) => {}
            Value::Str(s) => {
                self.enc.str(s)?;
                self.memoize(ident)?;
            }
            Value::LegacyStr(b) => {
                self.enc.legacy_str(b)?;
                self.memoize(ident)?;
            }
            Value::Bytes(b) => {
                if proto >= 3 {
                    self.enc.bytes(b)?;
                    self.memoize(ident)?;
                } else if b.is_empty() {
                    self.push_reduce(value_id, ident, GlobalRef::Py3("builtins", "bytes"), vec![]);
                } else {
                    self.push_reduce(
                        value_id,
                        ident,
                        GlobalRef::Py3("_codecs", "encode"),
                        vec![Task::LatinStr(b), Task::Lit("latin1")],
                    );
                }
            }
            Value::ByteArray(b) => {
                if proto >= 5 {
                    self.enc.bytearray8(b)?;
                    self.memoize(ident)?;
                } else {
                    let args = if b.is_empty() {
                        vec![]
                    } else {
                        vec![Task::FreshBytes(b)]
                    };
                    self.push_reduce(
                        value_id,
                        ident,
                        GlobalRef::Py3("builtins", "bytearray"),
                        args,
                    );
                }
            }
            Value::List(items) => {
                self.enc.empty_list();
                self.memoize(ident)?;
                self.push_batched(
                    Items::Arena(items),
                    BatchRule::list(proto),
                    Opcode::APPEND,
                    Opcode::APPENDS,
                );
            }
            Value::Dict(pairs) => {
                self.enc.empty_dict();
                self.memoize(ident)?;
                self.push_pairs_batched(Pairs::Arena(pairs), BatchRule::dict(proto));
            }
            Value::Tuple(items) => {
                if items.is_empty() {
                    self.enc.empty_tuple();
                    return Ok(());
                }
                self.enter(ident)?;
                self.tasks.push(Task::TupleEnd {
                    ident,
                    len: items.len(),
                });
                self.push_items(items);
                self.enc.tuple_start(items.len());
            }
            Value::Set(items) => {
                if proto >= 4 {
                    self.enc.opcode(Opcode::EMPTY_SET);
                    self.memoize(ident)?;
                    self.push_batched(
                        Items::Arena(items),
                        BatchRule::SetExact,
                        Opcode::ADDITEMS,
                        Opcode::ADDITEMS,
                    );
                } else {
                    self.enter(ident)?;
                    self.push_reduce(
                        value_id,
                        ident,
                        GlobalRef::Py3("builtins", "set"),
                        vec![Task::SynthList(items)],
                    );
                }
            }
            Value::FrozenSet(items) => {
                self.enter(ident)?;
                if proto >= 4 {
                    self.tasks.push(Task::FrozenSetEnd { ident });
                    self.push_items(items);
                    self.enc.mark();
                } else {
                    self.push_reduce(
                        value_id,
                        ident,
                        GlobalRef::Py3("builtins", "frozenset"),
                        vec![Task::SynthList(items)],
                    );
                }
            }
            Value::Global(g) => self.global(GlobalRef::Arena(g), Some(ident))?,
            Value::DynamicGlobal { module, name } => {
                if proto < 4 {
                    return Err(unsupported(format!(
                        "a STACK_GLOBAL with a computed module or name cannot be written at protocol {proto}"
                    )));
                }
                self.tasks.push(Task::Memoize(ident));
                self.tasks.push(Task::Op(Opcode::STACK_GLOBAL));
                self.tasks.push(Task::Save {
                    value: *name,
                    ident: *name,
                });
                self.tasks.push(Task::Save {
                    value: *module,
                    ident: *module,
                });
            }
            Value::Object(obj) => self.object(value_id, ident, obj)?,
            Value::PersistentId(pid) => {
                if proto >= 1 {
                    self.tasks.push(Task::MaybeMemo(ident));
                    self.tasks.push(Task::Op(Opcode::BINPERSID));
                    self.tasks.push(Task::Save {
                        value: *pid,
                        ident: *pid,
                    });
                } else {
                    match self.value(*pid)? {
                        Value::Str(s) => self.enc.persid(s.as_bytes())?,
                        other => {
                            return Err(unsupported(format!(
                                "a persistent id that is a {} cannot be written at protocol 0",
                                other.kind_name()
                            )))
                        }
                    }
                    self.step(Task::MaybeMemo(ident))?;
                }
            }
            Value::Ext(code) => {
                self.enc.ext(*code)?;
                self.step(Task::MaybeMemo(ident))?;
            }
            Value::Buffer { index, readonly } => {
                if proto < 5 {
                    return Err(unsupported(format!(
                        "out-of-band buffers cannot be written at protocol {proto}"
                    )));
                }
                if *index != self.buffers {
                    return Err(unsupported(format!(
                        "out-of-band buffer {index} would be read as buffer {}",
                        self.buffers
                    )));
                }
                self.buffers += 1;
                self.enc.opcode(Opcode::NEXT_BUFFER);
                if *readonly {
                    self.enc.opcode(Opcode::READONLY_BUFFER);
                }
                self.step(Task::MaybeMemo(ident))?;
            }
            Value::ReadOnly(inner) => {
                if proto < 5 {
                    return Err(unsupported(format!(
                        "READONLY_BUFFER cannot be written at protocol {proto}"
                    )));
                }
                self.tasks.push(Task::MaybeMemo(ident));
                self.tasks.push(Task::Op(Opcode::READONLY_BUFFER));
                self.tasks.push(Task::Save {
                    value: *inner,
                    ident: *inner,
                });
            }
            Value::Mutated(m) => {
                self.tasks.push(Task::MutatedEnd {
                    value: value_id,
                    ident,
                });
                self.tasks.push(Task::Save {
                    value: m.base,
                    ident,
                });
            }
        }
        Ok(())
    }

    fn object(&mut self, value: ValueId, ident: ValueId, obj: &'a super::Object) -> Result<()> {
        let proto = self.proto;
        let save = |id: ValueId| Task::Save {
            value: id,
            ident: id,
        };
        match obj.kind {
            CallKind::Reduce => {
                self.enter(ident)?;
                self.tasks.push(Task::CallEnd {
                    value,
                    ident,
                    op: Opcode::REDUCE,
                });
                self.tasks.push(save(obj.args));
                self.tasks.push(save(obj.callable));
            }
            CallKind::NewObj if proto >= 2 => {
                self.enter(ident)?;
                self.tasks.push(Task::CallEnd {
                    value,
                    ident,
                    op: Opcode::NEWOBJ,
                });
                self.tasks.push(save(obj.args));
                self.tasks.push(save(obj.callable));
            }
            CallKind::NewObj => {
                self.enter(ident)?;
                if let Value::Tuple(items) = self.value(obj.args)? {
                    let mut args = vec![save(obj.callable)];
                    args.extend(items.iter().map(|&id| save(id)));
                    self.push_reduce(value, ident, GlobalRef::Py3("copyreg", "__newobj__"), args);
                } else {
                    let args = vec![save(obj.callable), save(obj.args), Task::EmptyDict];
                    self.push_reduce(
                        value,
                        ident,
                        GlobalRef::Py3("copyreg", "__newobj_ex__"),
                        args,
                    );
                }
            }
            CallKind::NewObjEx => {
                self.enter(ident)?;
                let kwargs = match obj.kwargs {
                    Some(k) => save(k),
                    None => Task::EmptyDict,
                };
                if proto >= 4 {
                    self.tasks.push(Task::CallEnd {
                        value,
                        ident,
                        op: Opcode::NEWOBJ_EX,
                    });
                    self.tasks.push(kwargs);
                    self.tasks.push(save(obj.args));
                    self.tasks.push(save(obj.callable));
                } else {
                    let args = vec![save(obj.callable), save(obj.args), kwargs];
                    self.push_reduce(
                        value,
                        ident,
                        GlobalRef::Py3("copyreg", "__newobj_ex__"),
                        args,
                    );
                }
            }
            CallKind::Inst | CallKind::Obj => {
                let Value::Tuple(items) = self.value(obj.args)? else {
                    return Err(unsupported(
                        "INST/OBJ arguments that are not a tuple cannot be written",
                    ));
                };
                // INST and OBJ both call `instantiate(cls, args)`; OBJ stays OBJ where it exists.
                let inst = match (obj.kind, self.value(obj.callable)?) {
                    (kind, Value::Global(g))
                        if (kind == CallKind::Inst || proto == 0)
                            && (proto >= 4 || !g.name.as_bytes().contains(&b'.')) =>
                    {
                        Some(&**g)
                    }
                    _ => None,
                };
                if inst.is_none() && proto == 0 {
                    return Err(unsupported(
                        "an OBJ instance (or INST of a nested class) cannot be written at protocol 0",
                    ));
                }
                self.enter(ident)?;
                self.tasks.push(Task::InstEnd { value, ident, inst });
                self.push_items(items);
                if inst.is_none() {
                    self.tasks.push(save(obj.callable));
                }
                self.enc.mark();
            }
        }
        Ok(())
    }

    /// The (module, name) to write for `g` at the target protocol.
    fn resolve(&self, g: &GlobalRef<'_>) -> Result<(PyString, PyString)> {
        let (module, name, from_py2) = match g {
            GlobalRef::Arena(g) => (g.module.clone(), g.name.clone(), self.p.protocol() < 3),
            GlobalRef::Py3(m, n) => (PyString::from(*m), PyString::from(*n), false),
            GlobalRef::Final(m, n) => return Ok((m.clone(), n.clone())),
        };
        let (Some(m), Some(n)) = (module.as_str(), name.as_str()) else {
            return Ok((module, name));
        };
        let to3 = |m: &str, n: &str| -> (String, String) {
            match python3_name(m, n) {
                Some((m3, n3)) => (m3.to_owned(), n3.unwrap_or(n).to_owned()),
                None => (m.to_owned(), n.to_owned()),
            }
        };
        // What the original stream means.
        let meaning = if from_py2 {
            to3(m, n)
        } else {
            (m.to_owned(), n.to_owned())
        };
        if self.proto >= 3 {
            return Ok((meaning.0.into(), meaning.1.into()));
        }
        // Below protocol 3 the unpickler renames Python 2 names: write a name it maps back to
        // `meaning`, preferring what the source had, then what CPython's pickler writes.
        let mut candidates = Vec::with_capacity(3);
        if from_py2 {
            candidates.push((m.to_owned(), n.to_owned()));
        }
        candidates.push(match python2_name(&meaning.0, &meaning.1) {
            Some((m2, n2)) => (m2.to_owned(), n2.unwrap_or(&meaning.1).to_owned()),
            None => meaning.clone(),
        });
        candidates.push(meaning.clone());
        for (cm, cn) in candidates {
            if to3(&cm, &cn) == meaning {
                return Ok((cm.into(), cn.into()));
            }
        }
        Err(unsupported(format!(
            "global {}.{} has no name the protocol {} unpickler maps back to it",
            meaning.0, meaning.1, self.proto
        )))
    }

    fn global(&mut self, g: GlobalRef<'a>, ident: Option<ValueId>) -> Result<()> {
        self.enc.opcode_boundary()?;
        if let Some(idx) = ident.and_then(|id| self.memo_of(id)) {
            return self.enc.get(idx as u64);
        }
        let key = self.resolve(&g)?;
        // Globals the writer introduces are one object per name in CPython (`set`, `getattr`);
        // globals of the arena are memoized by identity only: CPython writes the same name twice
        // when two different objects have it.
        let introduced = !matches!(g, GlobalRef::Arena(_));
        if let Some(&idx) = self.global_memo.get(&key).filter(|_| introduced) {
            if let Some(id) = ident {
                self.memo.set(id, idx);
            }
            return self.enc.get(idx as u64);
        }
        let (module, name) = key.clone();
        if self.proto >= 4 {
            self.tasks.push(Task::GlobalDone(ident, key));
            self.tasks.push(Task::Op(Opcode::STACK_GLOBAL));
            self.tasks.push(Task::NameStr(name, false));
            self.tasks.push(Task::NameStr(module, true));
            return Ok(());
        }
        let dotted = name
            .as_bytes()
            .iter()
            .rposition(|&b| b == b'.')
            .filter(|_| name.as_str().is_some());
        if let (Some(dot), Some(full)) = (dotted, name.as_str()) {
            // getattr(module.parent, last), as save_global does for nested names below 4.
            let parent = PyString::from(&full[..dot]);
            let last = PyString::from(&full[dot + 1..]);
            self.tasks.push(Task::GlobalDone(ident, key));
            self.tasks.push(Task::Op(Opcode::REDUCE));
            self.tasks.push(Task::SynthTupleEnd(2));
            self.tasks.push(Task::FreshStr(last));
            self.tasks
                .push(Task::Global(GlobalRef::Final(module, parent), None));
            self.tasks.push(Task::SynthTupleStart(2));
            self.tasks
                .push(Task::Global(GlobalRef::Py3("builtins", "getattr"), None));
            return Ok(());
        }
        self.enc.global(module.as_bytes(), name.as_bytes())?;
        self.step(Task::GlobalDone(ident, key))
    }
}

/// How many scalars [`Writer::save_scalar_run`] hands to [`Encoder::scalar_run`] at once.
const SCALAR_RUN: usize = 256;

/// Whether [`fill_scalars`] writes `v` at `proto` (1+).
#[inline(always)]
fn run_scalar(v: &Value, proto: u8) -> bool {
    match v {
        Value::Float(_) | Value::None => true,
        Value::Int(i) => i32::try_from(*i).is_ok(),
        Value::Bool(_) => proto >= 2,
        _ => false,
    }
}

/// Run `fill` over the values of `ids`: a slice of the arena when the ids are consecutive,
/// a lookup per id otherwise (two copies of the loop).
macro_rules! over_values {
    ($values:expr, $ids:expr, $out:expr, $fill:ident) => {{
        let (values, ids) = ($values, $ids);
        match consecutive(values, ids) {
            Some(run) => $fill(|i| run.get(i), run.len(), $out),
            None => $fill(
                |i| ids.get(i).and_then(|id| values.get(id.index())),
                ids.len(),
                $out,
            ),
        }
    }};
}

/// Spell the scalars `ids` at `proto` (1+) into `out` (at least [`SCALAR_MAX`] bytes per id)
/// as [`Encoder`] would, up to the first value [`run_scalar`] rejects; returns how many were
/// written and their length in bytes.
///
/// Runs of one kind (a column of ints, a list of floats: the common case) go through a loop
/// that expects that kind and tests one tag per value, instead of dispatching on every value's
/// kind through a jump table.
#[inline(always)]
fn fill_scalars(values: &[Value], ids: &[ValueId], proto: u8, out: &mut [u8]) -> (usize, usize) {
    let (mut n, mut o) = (0, 0);
    while let (Some(&id), Some(dst)) = (ids.get(n), out.get_mut(o..)) {
        let (k, len) = match values.get(id.index()) {
            Some(Value::Float(_)) => over_values!(values, &ids[n..], dst, fill_floats),
            Some(Value::Int(_)) => over_values!(values, &ids[n..], dst, fill_ints),
            Some(Value::None) if !dst.is_empty() => {
                dst[0] = Opcode::NONE.byte();
                (1, 1)
            }
            Some(Value::Bool(b)) if proto >= 2 && !dst.is_empty() => {
                dst[0] = if *b {
                    Opcode::NEWTRUE
                } else {
                    Opcode::NEWFALSE
                }
                .byte();
                (1, 1)
            }
            _ => (0, 0),
        };
        if k == 0 {
            break;
        }
        n += k;
        o += len;
    }
    (n, o)
}

/// The values of the first [`CONSECUTIVE_WINDOW`] ids (or all of them, if fewer) as one slice
/// of the arena, if those ids are consecutive (a list the reader built from a run of scalars
/// is): the loops below then read the values in order without loading and checking an id per
/// value. The check covers a bounded window, so that a mixed list, which dispatches once per
/// short run of one kind, does not compare the rest of its ids every time.
#[inline(always)]
fn consecutive<'v>(values: &'v [Value], ids: &[ValueId]) -> Option<&'v [Value]> {
    let ids = ids.get(..CONSECUTIVE_WINDOW).unwrap_or(ids);
    let first = ids.first()?.index();
    // No early exit, so that the comparison runs over whole vectors of ids.
    let all = ids
        .iter()
        .zip(first..)
        .fold(true, |ok, (id, want)| ok & (id.index() == want));
    if all && ids.len() > 1 {
        values.get(first..first + ids.len())
    } else {
        None
    }
}

/// How many ids [`consecutive`] compares at most.
const CONSECUTIVE_WINDOW: usize = 32;

/// The floats among the first `count` values `get` gives, up to the first other value, as
/// `BINFLOAT`s (see [`fill_scalars`]).
#[inline(always)]
fn fill_floats<'v>(
    get: impl Fn(usize) -> Option<&'v Value>,
    count: usize,
    out: &mut [u8],
) -> (usize, usize) {
    let mut n = 0;
    for (i, dst) in (0..count).zip(out.chunks_exact_mut(SCALAR_MAX)) {
        let Some(Value::Float(f)) = get(i) else {
            break;
        };
        dst.copy_from_slice(&binfloat_bytes(*f));
        n += 1;
    }
    (n, n * SCALAR_MAX)
}

/// The 32-bit ints among the first `count` values `get` gives, up to the first other value, as
/// `BININT1` / `BININT2` / `BININT` (see [`fill_scalars`]). Each is stored as one 8-byte word
/// and the length advanced by its size.
#[inline(always)]
fn fill_ints<'v>(
    get: impl Fn(usize) -> Option<&'v Value>,
    count: usize,
    out: &mut [u8],
) -> (usize, usize) {
    let mut o = 0;
    for i in 0..count {
        let (Some(Value::Int(v)), Some(dst)) = (get(i), out.get_mut(o..o + 8)) else {
            return (i, o);
        };
        let Ok(v) = i32::try_from(*v) else {
            return (i, o);
        };
        let (word, len) = binint_word(v);
        dst.copy_from_slice(&word.to_le_bytes());
        o += len;
    }
    (count, o)
}

/// `bytes.decode('latin1')`.
fn latin1(b: &[u8]) -> PyString {
    match std::str::from_utf8(b) {
        Ok(s) if s.is_ascii() => PyString::from(s),
        _ => PyString::from(b.iter().map(|&c| c as char).collect::<String>()),
    }
}

/// Values of kinds CPython never memoizes (persistent ids, extension objects, buffers) that are
/// referenced more than once: they must be memoized to keep their identity.
fn shared_rare_values(p: &Pickle) -> HashSet<ValueId> {
    let rare = |v: &Value| {
        matches!(
            v,
            Value::PersistentId(_) | Value::Ext(_) | Value::Buffer { .. } | Value::ReadOnly(_)
        )
    };
    if !p.values().iter().any(rare) {
        return HashSet::new();
    }
    let mut counts: HashMap<ValueId, u32> = HashMap::new();
    let mut count = |id: ValueId| {
        if p.get(id).is_some_and(rare) {
            *counts.entry(id).or_insert(0) += 1;
        }
    };
    count(p.root());
    for v in p.values() {
        v.for_each_child(&mut count);
    }
    counts
        .into_iter()
        .filter(|&(_, n)| n > 1)
        .map(|(id, _)| id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(data: &[u8], proto: u8) -> Vec<u8> {
        Pickle::from_slice(data).unwrap().to_vec(proto).unwrap()
    }

    #[test]
    fn values_referenced_once_keep_their_memo_opcode_and_shared_ones_their_get() {
        // ['x', 'y'] at protocol 2: each str is referenced once, its BINPUT is still written.
        let data = b"\x80\x02]q\x00(X\x01\x00\x00\x00xq\x01X\x01\x00\x00\x00yq\x02e.";
        let mut p = Pickle::from_slice(data).unwrap();
        assert_eq!(p.to_vec(2).unwrap(), data);
        let Value::List(items) = &p[p.root()] else {
            panic!()
        };
        assert!(p.referenced_once(items[0]) && p.referenced_once(p.root()));
        // Edited to [x, x]: the second reference must become a GET of the first.
        let x = items[0];
        let root = p.root();
        p[root] = Value::List(thin_vec::thin_vec![x, x]);
        assert!(!p.referenced_once(x));
        assert_eq!(
            p.to_vec(2).unwrap(),
            b"\x80\x02]q\x00(X\x01\x00\x00\x00xq\x01h\x01e."
        );
        // Shared in the stream through GET and through DUP.
        let data = b"\x80\x02]q\x00(X\x01\x00\x00\x00xq\x01h\x01e.";
        let p = Pickle::from_slice(data).unwrap();
        assert_eq!(p.to_vec(2).unwrap(), data);
        let p = Pickle::from_slice(b"\x80\x02X\x01\x00\x00\x00x2\x86.").unwrap();
        let Value::Tuple(items) = &p[p.root()] else {
            panic!()
        };
        assert!(!p.referenced_once(items[0]));
        assert_eq!(
            p.to_vec(2).unwrap(),
            b"\x80\x02X\x01\x00\x00\x00xq\x00h\x00\x86q\x01."
        );
    }

    #[test]
    fn discarded_calls_are_written_where_they_were() {
        // os.system('echo hi'); POP; None -- the call survives a rewrite at every protocol.
        let evil = Pickle::from_slice(b"cos\nsystem\n(S'echo hi'\ntR0N.").unwrap();
        for proto in 0..=5 {
            let again = Pickle::from_slice(&evil.to_vec(proto).unwrap()).unwrap();
            assert_eq!(again.discarded().len(), 1, "protocol {proto}");
            assert_eq!(again[again.root()], Value::None);
        }
        // The state setter of a 6-item __reduce__ stays after its object.
        let data = b"\x80\x02cm\nK\nX\x01\x00\x00\x00x\x85Rq\x00cm\nsetter\nh\x00}\x86R0.";
        let p = Pickle::from_slice(data).unwrap();
        let out = p.to_vec(2).unwrap();
        let again = Pickle::from_slice(&out).unwrap();
        let Value::Object(obj) = &again[again.root()] else {
            panic!()
        };
        assert!(matches!(obj.mutations[..], [Mutation::Discard(_)]));
        assert!(
            out.ends_with(b"0."),
            "the call is popped just before STOP: {out:?}"
        );
    }

    #[test]
    fn cpython_bytes_at_their_own_protocol() {
        // pickle.dumps({'a': [1, 2.5, None, True]}, 2)
        let d = b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01]q\x02(K\x01G@\x04\x00\x00\x00\x00\x00\x00N\x88es.";
        assert_eq!(roundtrip(d, 2), d);
        // pickle.dumps({1, 2}, 2) and pickle.dumps(b'ab', 2)
        let d = b"\x80\x02c__builtin__\nset\nq\x00]q\x01(K\x01K\x02e\x85q\x02Rq\x03.";
        assert_eq!(roundtrip(d, 2), d);
        let d = b"\x80\x02c_codecs\nencode\nq\x00X\x02\x00\x00\x00abq\x01X\x06\x00\x00\x00latin1q\x02\x86q\x03Rq\x04.";
        assert_eq!(roundtrip(d, 2), d);
    }

    #[test]
    fn translations_match_cpython() {
        // A set read at protocol 4, written at 2, is what pickle.dumps({1, 2}, 2) writes.
        let p4 = b"\x80\x04\x95\x09\x00\x00\x00\x00\x00\x00\x00\x8f\x94(K\x01K\x02\x90.";
        assert_eq!(
            roundtrip(p4, 2),
            b"\x80\x02c__builtin__\nset\nq\x00]q\x01(K\x01K\x02e\x85q\x02Rq\x03."
        );
        // bytearray(b'ab') at protocol 5 written at 2.
        let p5 = b"\x80\x05\x95\x0d\x00\x00\x00\x00\x00\x00\x00\x96\x02\x00\x00\x00\x00\x00\x00\x00ab\x94.";
        assert_eq!(
            roundtrip(p5, 2),
            &b"\x80\x02c__builtin__\nbytearray\nq\x00c_codecs\nencode\nq\x01X\x02\x00\x00\x00abq\x02X\x06\x00\x00\x00latin1q\x03\x86q\x04Rq\x05\x85q\x06Rq\x07."[..]
        );
    }

    #[test]
    fn unsupported_at_low_protocols() {
        let p = Pickle::from_slice(b"\x80\x05\x97.").unwrap();
        let e = p.to_vec(4).unwrap_err();
        assert_eq!(
            e.to_string(),
            "out-of-band buffers cannot be written at protocol 4"
        );
        let p = Pickle::from_slice(b"\x80\x02\x82\x01.").unwrap();
        assert!(p.to_vec(1).is_err());
        assert_eq!(p.to_vec(2).unwrap(), b"\x80\x02\x82\x01.");
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let depth = 200_000;
        let mut data = b"\x80\x02".to_vec();
        data.resize(2 + depth, b']');
        data.resize(2 + 2 * depth - 1, b'a');
        data.push(b'.');
        let limits = crate::Limits::builder().max_depth(usize::MAX).build();
        let p = Pickle::from_slice_with(&data, &limits).unwrap();
        for proto in 0..=5 {
            let out = p.to_vec(proto).unwrap();
            let back = Pickle::from_slice_with(&out, &limits).unwrap();
            assert_eq!(back.len(), p.len());
        }
    }

    #[test]
    fn scalar_runs_have_the_bytes_of_the_general_path_in_any_id_order() {
        // The same scalars laid out in the arena in reverse, shuffled and repeated: the writer
        // looks each id up (the ids are not consecutive) and must write what it writes for the
        // consecutive layout a reader builds.
        let scalars = [
            Value::Int(0),
            Value::Int(300),
            Value::Int(-5),
            Value::Int(70_000),
            Value::Int(1 << 40),
            Value::Float(2.5),
            Value::None,
            Value::Bool(true),
            Value::Float(-1e300),
            Value::Int(255),
        ];
        let mut p = Pickle::new();
        let ids: Vec<ValueId> = scalars.iter().rev().map(|v| p.push(v.clone())).collect();
        let order: Vec<ValueId> = (0..2_000)
            .map(|i| ids[(i * 7 + i / 3) % ids.len()])
            .collect();
        let root = p.push(Value::List(order.iter().copied().collect()));
        p.set_root(root);
        for proto in 1..=5 {
            let out = p.to_vec(proto).unwrap();
            let back = Pickle::from_slice(&out).unwrap();
            let Value::List(items) = &back[back.root()] else {
                panic!()
            };
            let got: Vec<&Value> = items.iter().map(|&id| &back[id]).collect();
            let want: Vec<&Value> = order.iter().map(|&id| &p[id]).collect();
            assert_eq!(got, want, "protocol {proto}");
            // Read back, the ids are consecutive: the same bytes again.
            assert_eq!(back.to_vec(proto).unwrap(), out, "protocol {proto}");
        }
    }

    #[test]
    fn billion_laughs_is_linear() {
        let mut p = Pickle::new();
        let mut prev = p.push(Value::Str("lol".into()));
        for _ in 0..30 {
            prev = p.push(Value::List(thin_vec::thin_vec![prev; 10]));
        }
        p.set_root(prev);
        for proto in 0..=5 {
            let out = p.to_vec(proto).unwrap();
            assert!(out.len() < 4000, "{proto}: {}", out.len());
        }
    }

    #[test]
    fn self_containing_tuple_is_an_error_not_a_hang() {
        let mut p = Pickle::new();
        let one = p.push(Value::Int(1));
        let t = p.push(Value::Tuple(thin_vec::thin_vec![one]));
        p[t] = Value::Tuple(thin_vec::thin_vec![one, t]);
        p.set_root(t);
        let e = p.to_vec(2).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Unsupported(_)), "{e}");
    }

    #[test]
    fn write_to_equals_to_vec() {
        let mut p = Pickle::new();
        let big = p.push(Value::Bytes(Box::new(vec![1; 100_000])));
        let s = p.push(Value::Str("x".repeat(70_000).into()));
        let ints: Vec<_> = (0..30_000).map(|i| p.push(Value::Int(i))).collect();
        let l = p.push(Value::List(ints.into()));
        let root = p.push(Value::Tuple(thin_vec::thin_vec![big, s, l, big]));
        p.set_root(root);
        for proto in 0..=5 {
            let mut sink = Vec::new();
            p.write_to(&mut sink, proto).unwrap();
            assert_eq!(sink, p.to_vec(proto).unwrap(), "protocol {proto}");
        }
    }
}
