//! The value machine: runs a pickle's opcodes symbolically and builds a [`Pickle`].
//!
//! It follows CPython's C unpickler (`Modules/_pickle.c`) rather than the pure-Python one where
//! they differ, because that is what `pickle.loads` runs: the stack is split into values and
//! marks, an opcode may only consume values above the topmost mark (the "fence"), `POP` on an
//! empty fence pops the mark instead, `MEMOIZE` stores at the number of entries already stored,
//! `STOP` returns the top value and ignores what is below it, and bytes after `STOP` are ignored.
//!
//! Cost is bounded by the input: every value costs at least one opcode byte, payloads are checked
//! against the remaining input before they are copied, the memo grows only with the entries stored
//! (a `LONG_BINPUT 4000000000` does not allocate four billion slots), and shared references are
//! ids, not copies, so a "billion laughs" built through the memo stays as small as its input.

use std::collections::HashMap;

use num_bigint::BigInt;

use super::{
    CallKind, Global, Mutated, Mutation, Object, Pickle, SharedBits, ThinVec, Value, ValueId,
};
use crate::decode::{Arg, Decoder, Op};
use crate::error::{Error, ErrorKind, Result};
use crate::limits::Limits;
use crate::opcode::Opcode;
use crate::pystr::PyString;
use crate::text::{self, IntLine, ParsedInt};

/// The highest protocol this library reads and writes.
pub const HIGHEST_PROTOCOL: u8 = 5;

/// Approximate bytes of bookkeeping charged per value against [`Limits::max_alloc`].
const VALUE_COST: u64 = 32;

/// Read one pickle from the start of `data`; returns it and the offset just past its `STOP`.
///
/// ```
/// let (p, end) = brinery::value::read_one(b"K\x01.K\x02.", &Default::default()).unwrap();
/// assert_eq!(p[p.root()], brinery::Value::Int(1));
/// assert_eq!(end, 3);
/// ```
pub fn read_one(data: &[u8], limits: &Limits) -> Result<(Pickle, usize)> {
    let mut reader = Reader::new(data, limits);
    let pickle = reader.read()?;
    Ok((pickle, reader.offset()))
}

/// The memo: dense indices in a vector, sparse ones in a map, so that its size follows the
/// number of entries stored and never an index the stream claims.
#[derive(Default)]
struct Memo {
    dense: Vec<Option<ValueId>>,
    sparse: HashMap<u64, ValueId>,
    count: u64,
}

impl Memo {
    #[inline]
    fn get(&self, idx: u64) -> Option<ValueId> {
        match self.dense.get(idx as usize) {
            Some(slot) => *slot,
            None => self.sparse.get(&idx).copied(),
        }
    }

    /// Store; returns whether the entry is new.
    #[inline]
    fn put(&mut self, idx: u64, id: ValueId) -> bool {
        let new = if let Some(slot) = self.dense.get_mut(idx as usize) {
            slot.replace(id).is_none()
        } else if idx <= 2 * self.count + 64 && self.sparse.is_empty() {
            self.dense.resize(idx as usize + 1, None);
            self.dense[idx as usize] = Some(id);
            true
        } else {
            self.sparse.insert(idx, id).is_none()
        };
        self.count += new as u64;
        new
    }
}

/// The value machine over one input. Use [`read_one`] or [`Pickle::from_slice`] unless you need
/// to read several pickles stacked in one buffer (call [`Reader::read`] repeatedly).
pub struct Reader<'a, 'l> {
    decoder: Decoder<'a>,
    limits: &'l Limits,
}

impl<'a, 'l> Reader<'a, 'l> {
    /// A reader at the start of `data`.
    pub fn new(data: &'a [u8], limits: &'l Limits) -> Self {
        Reader {
            decoder: Decoder::new(data),
            limits,
        }
    }

    /// The offset of the next byte to read: after [`Reader::read`], just past the `STOP`.
    pub fn offset(&self) -> usize {
        self.decoder.offset()
    }

    /// True if all input has been consumed.
    pub fn at_end(&self) -> bool {
        self.decoder.remaining().is_empty()
    }

    /// Read the next pickle.
    pub fn read(&mut self) -> Result<Pickle> {
        let data = self.decoder.data();
        if data.len() as u64 > self.limits.max_input() {
            return Err(Error::new(ErrorKind::LimitExceeded {
                what: "input size",
                limit: self.limits.max_input(),
            }));
        }
        if self.decoder.remaining().is_empty() {
            return Err(Error::at(
                ErrorKind::Truncated("empty input"),
                self.decoder.offset() as u64,
                None,
            ));
        }
        let start = self.decoder.offset();
        // The arena grows as values come (doubling, so a value is moved once on average) and is
        // trimmed at STOP. Counting the values first in a pre-pass over the input, to size it
        // once, cost more than the moves: a serial walk of every opcode, ~3 ns each.
        let mut machine = Machine {
            values: Vec::with_capacity(16),
            stack: Vec::new(),
            marks: Vec::new(),
            memo: Memo::default(),
            protocol: 0,
            next_buffer: 0,
            alloc: 0,
            limits: self.limits,
            any_discard: false,
            discarded: Vec::new(),
            shared: SharedBits::default(),
        };
        loop {
            // Runs of scalars (a list of floats or ints between MARK and APPENDS) take a
            // tight loop that skips building an `Op` and the general dispatch.
            let at = self.decoder.offset();
            if data.get(at).is_some_and(|&b| is_run_scalar(b)) {
                let end = machine.scalar_run(data, at);
                self.decoder.set_offset(end);
            }
            let op = match self.decoder.next_op()? {
                Some(op) => op,
                None => {
                    return Err(Error::at(
                        ErrorKind::MissingStop,
                        self.decoder.offset() as u64,
                        None,
                    ))
                }
            };
            match machine.step(&op, &self.decoder) {
                Ok(Step::Continue) => {}
                Ok(Step::Stop(root)) => {
                    // `_pickle.c` returns the top value and drops whatever is below it; those
                    // values were built all the same.
                    let below = std::mem::take(&mut machine.stack);
                    machine.discard_below(below);
                    if machine.any_discard {
                        machine.prune_discards(root);
                    }
                    let discarded = machine.discarded;
                    machine.values.shrink_to_fit();
                    let read_len = self.decoder.offset().saturating_sub(start);
                    return Ok(Pickle::from_parts(
                        machine.values,
                        root,
                        machine.protocol,
                        discarded,
                        read_len,
                        machine.shared,
                    ));
                }
                Err(e) => return Err(e.with_position(op.offset as u64, Some(op.opcode))),
            }
        }
    }
}

enum Step {
    Continue,
    Stop(ValueId),
}

struct Machine<'l> {
    values: Vec<Value>,
    stack: Vec<ValueId>,
    marks: Vec<usize>,
    memo: Memo,
    protocol: u8,
    next_buffer: u32,
    alloc: u64,
    limits: &'l Limits,
    /// Whether any value was recorded as discarded (then `prune_discards` runs at STOP).
    any_discard: bool,
    /// Values thrown away with nothing below them (see [`Pickle::discarded`]).
    discarded: Vec<ValueId>,
    /// Values pushed a second time, by `GET` or `DUP` (see [`Pickle::referenced_once`]).
    shared: SharedBits,
}

fn bad(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::BadArgument(msg.into()))
}

impl Machine<'_> {
    #[inline(always)]
    fn charge(&mut self, bytes: u64) -> Result<()> {
        self.alloc = self.alloc.saturating_add(bytes);
        if self.alloc > self.limits.max_alloc() {
            return Err(Error::new(ErrorKind::LimitExceeded {
                what: "allocation",
                limit: self.limits.max_alloc(),
            }));
        }
        Ok(())
    }

    #[inline(always)]
    fn new_value(&mut self, value: Value, payload: usize) -> Result<ValueId> {
        self.charge(VALUE_COST + payload as u64)?;
        let id = u32::try_from(self.values.len()).map_err(|_| {
            Error::new(ErrorKind::LimitExceeded {
                what: "value count",
                limit: u32::MAX as u64,
            })
        })?;
        self.values.push(value);
        Ok(ValueId(id))
    }

    #[inline(always)]
    fn push_new(&mut self, value: Value, payload: usize) -> Result<()> {
        let id = self.new_value(value, payload)?;
        self.stack.push(id);
        Ok(())
    }

    #[inline]
    fn fence(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    #[inline]
    fn underflow(&self, needed: usize) -> Error {
        Error::new(ErrorKind::StackUnderflow {
            needed,
            found: self.stack.len() - self.fence(),
            above_mark: !self.marks.is_empty(),
        })
    }

    /// Fail unless at least `n` values are above the fence, so that an opcode consuming several
    /// values reports how many it needs rather than failing on the first missing one.
    #[inline]
    fn need(&self, n: usize) -> Result<()> {
        if self.stack.len() - self.fence() < n {
            return Err(self.underflow(n));
        }
        Ok(())
    }

    #[inline]
    fn pop(&mut self) -> Result<ValueId> {
        if self.stack.len() <= self.fence() {
            return Err(self.underflow(1));
        }
        // Non-empty above the fence.
        self.stack.pop().ok_or_else(|| self.underflow(1))
    }

    #[inline]
    fn top(&self) -> Result<ValueId> {
        if self.stack.len() <= self.fence() {
            return Err(self.underflow(1));
        }
        Ok(self.stack[self.stack.len() - 1])
    }

    /// Pop the topmost mark and return the items above it.
    #[inline]
    fn pop_mark(&mut self) -> Result<ThinVec<ValueId>> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| Error::new(ErrorKind::MissingMark))?;
        let items = ThinVec::from(self.stack.get(mark..).unwrap_or_default());
        self.stack.truncate(mark);
        Ok(items)
    }

    /// The value just below the topmost mark, if there is a mark and a value below it (the mark
    /// is left in place).
    #[inline(always)]
    fn target_below_mark(&self) -> Option<ValueId> {
        let mark = *self.marks.last()?;
        let fence = self.marks.len().checked_sub(2).map_or(0, |i| self.marks[i]);
        if mark > fence {
            Some(self.stack[mark - 1])
        } else {
            None
        }
    }

    /// The value just below the topmost mark (the container of `APPENDS`, `SETITEMS`, ...),
    /// after popping the mark and the items above it.
    fn pop_mark_with_target(
        &mut self,
        needed_what: &'static str,
    ) -> Result<(ValueId, ThinVec<ValueId>)> {
        let items = self.pop_mark()?;
        if self.stack.len() <= self.fence() {
            return Err(Error::new(ErrorKind::WrongType(format!(
                "{needed_what} without a target below the MARK"
            ))));
        }
        Ok((self.stack[self.stack.len() - 1], items))
    }

    fn int_value(&mut self, v: ParsedInt) -> Result<()> {
        match v {
            ParsedInt::Small(i) => self.push_new(Value::Int(i), 0),
            ParsedInt::Big(b) => {
                let size = (b.bits() / 8) as usize;
                self.push_new(Value::BigInt(Box::new(b)), size)
            }
        }
    }

    /// Whether throwing `id` away may lose something: it is not a plain scalar (building it may
    /// have been a call). Whether the rest of the graph reaches it anyway is settled at `STOP`.
    fn worth_keeping(&self, id: ValueId) -> bool {
        !matches!(
            self.values[id.index()],
            Value::None
                | Value::Bool(_)
                | Value::Int(_)
                | Value::BigInt(_)
                | Value::Float(_)
                | Value::Str(_)
                | Value::Bytes(_)
                | Value::ByteArray(_)
                | Value::LegacyStr(_)
                | Value::Buffer { .. }
        )
    }

    /// `POP`/`POP_MARK` threw `id` away: keep it on the value now on top of the stack (so it is
    /// rewritten at the same point), or on the pickle if the stack is empty.
    fn discard(&mut self, id: ValueId) -> Result<()> {
        if !self.worth_keeping(id) {
            return Ok(());
        }
        self.any_discard = true;
        match self.stack.last() {
            Some(&anchor) => self.mutate(anchor, Mutation::Discard(id)),
            None => {
                self.discarded.push(id);
                Ok(())
            }
        }
    }

    /// The values left below the root at `STOP`, each recorded once (a value can be on the
    /// stack many times, through the memo). Linear: a stream of a million values left on
    /// the stack must not take a million look-ups in the list of the ones recorded.
    fn discard_below(&mut self, below: Vec<ValueId>) {
        let mut recorded = vec![false; self.values.len()];
        for id in &self.discarded {
            if let Some(r) = recorded.get_mut(id.index()) {
                *r = true;
            }
        }
        for id in below {
            if !self.worth_keeping(id) {
                continue;
            }
            if let Some(r) = recorded.get_mut(id.index()) {
                if std::mem::replace(r, true) {
                    continue;
                }
            }
            self.any_discard = true;
            self.discarded.push(id);
        }
    }

    /// Forget discarded values that the root reaches anyway (CPython's recursive tuples are
    /// written as items, `POP`s, then a memo `GET` of the finished tuple): only values nothing
    /// else builds stay recorded. A `Mutated` wrapper left with no mutations is unwrapped.
    fn prune_discards(&mut self, root: ValueId) {
        let values = &self.values;
        let mut reached = vec![false; values.len()];
        let mut stack = vec![root];
        while let Some(id) = stack.pop() {
            let Some(seen) = reached.get_mut(id.index()) else {
                continue;
            };
            if std::mem::replace(seen, true) {
                continue;
            }
            let mut visit = |child: ValueId| stack.push(child);
            match &values[id.index()] {
                Value::Object(obj) => {
                    visit(obj.callable);
                    visit(obj.args);
                    obj.kwargs.into_iter().for_each(&mut visit);
                    obj.mutations
                        .iter()
                        .filter(|m| !matches!(m, Mutation::Discard(_)))
                        .for_each(|m| m.for_each_child(&mut visit));
                }
                Value::Mutated(m) => {
                    visit(m.base);
                    m.mutations
                        .iter()
                        .filter(|m| !matches!(m, Mutation::Discard(_)))
                        .for_each(|m| m.for_each_child(&mut visit));
                }
                other => other.for_each_child(visit),
            }
        }
        let kept = |m: &Mutation| !matches!(*m, Mutation::Discard(v) if reached[v.index()]);
        let mut unwrap = Vec::new();
        for (i, value) in self.values.iter_mut().enumerate() {
            match value {
                Value::Object(obj) => obj.mutations.retain(kept),
                Value::Mutated(m) => {
                    m.mutations.retain(kept);
                    if m.mutations.is_empty() {
                        unwrap.push((i, m.base));
                    }
                }
                _ => {}
            }
        }
        for (wrapper, base) in unwrap {
            self.values[wrapper] = std::mem::replace(&mut self.values[base.index()], Value::None);
        }
        self.discarded.retain(|id| !reached[id.index()]);
    }

    /// Push the scalars (`BINFLOAT`, `BININT*`, `NONE`, `NEWTRUE`, `NEWFALSE`) that start at
    /// `pos` in `data`, up to the first other opcode, a truncated argument, or the number of
    /// values the limits still allow; returns the offset after the last one. Whatever stops the
    /// run is left to [`Machine::step`], which reports it with its offset as usual.
    ///
    /// A list of numbers is a run of one opcode at a fixed stride (`G` + 8 bytes, `K` + 1, ...):
    /// the length of such a run is found by looking at every stride-th byte, and its values are
    /// then appended with `extend` over exact-size chunks, which the compiler turns into direct
    /// stores into the arena (pushing values one by one built each `Value` in a stack temporary
    /// and copied it, and that reload stalled on store forwarding: 10 ns per float).
    #[inline(never)]
    fn scalar_run(&mut self, data: &[u8], mut pos: usize) -> usize {
        // Values this run may create: within the allocation limit and the u32 id space.
        let by_alloc = (self.limits.max_alloc().saturating_sub(self.alloc) / VALUE_COST)
            .try_into()
            .unwrap_or(usize::MAX);
        let by_ids = (u32::MAX as usize).saturating_sub(self.values.len());
        let budget = by_alloc.min(by_ids);
        let start = self.values.len();
        let values = &mut self.values;
        loop {
            let rest = data.get(pos..).unwrap_or_default();
            let Some(&op) = rest.first() else { break };
            let stride = match op {
                b'G' => 9,
                b'J' => 5,
                b'M' => 3,
                b'K' => 2,
                b'N' | 0x88 | 0x89 => 1,
                _ => break,
            };
            // Only whole arguments: a truncated last one is left to `step` to report.
            let max = (rest.len() / stride).min(budget - (values.len() - start));
            let k = rest
                .iter()
                .step_by(stride)
                .take(max)
                .take_while(|&&b| b == op)
                .count();
            if k == 0 {
                break;
            }
            let run = rest.get(..k * stride).unwrap_or_default();
            match op {
                b'G' => values.extend(run.chunks_exact(9).map(|c| {
                    Value::Float(f64::from_be_bytes([
                        c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8],
                    ]))
                })),
                b'J' => values.extend(
                    run.chunks_exact(5)
                        .map(|c| Value::Int(i32::from_le_bytes([c[1], c[2], c[3], c[4]]) as i64)),
                ),
                b'M' => values.extend(
                    run.chunks_exact(3)
                        .map(|c| Value::Int(u16::from_le_bytes([c[1], c[2]]) as i64)),
                ),
                b'K' => values.extend(run.chunks_exact(2).map(|c| Value::Int(c[1] as i64))),
                b'N' => values.extend(run.iter().map(|_| Value::None)),
                _ => values.extend(run.iter().map(|&b| Value::Bool(b == 0x88))),
            }
            pos += k * stride;
        }
        let end = self.values.len();
        // Ids fit in u32 by the budget.
        self.stack.extend((start..end).map(|i| ValueId(i as u32)));
        self.alloc = self.alloc.saturating_add((end - start) as u64 * VALUE_COST);
        pos
    }

    fn memo_put(&mut self, idx: u64) -> Result<()> {
        let top = self.top()?;
        if self.memo.get(idx).is_none() && self.memo.count >= self.limits.max_memo() {
            return Err(Error::new(ErrorKind::LimitExceeded {
                what: "memo",
                limit: self.limits.max_memo(),
            }));
        }
        if self.memo.put(idx, top) {
            self.charge(16)?;
        }
        Ok(())
    }

    fn memo_get(&mut self, idx: u64) -> Result<()> {
        let id = self
            .memo
            .get(idx)
            .ok_or_else(|| Error::new(ErrorKind::MemoMissing(idx)))?;
        self.shared.set(id);
        self.stack.push(id);
        Ok(())
    }

    fn str_value(&mut self, bytes: &[u8]) -> Result<()> {
        let s = PyString::from_utf8_surrogatepass(bytes).map_err(bad)?;
        self.push_new(Value::Str(s), bytes.len())
    }

    /// Record `mutation` on `target`, absorbing it natively where the value's kind allows.
    fn mutate(&mut self, target: ValueId, mutation: Mutation) -> Result<()> {
        self.charge(16)?;
        let slot = &mut self.values[target.index()];
        match (slot, mutation) {
            (Value::List(items), Mutation::Append(v)) => items.push(v),
            (Value::Dict(pairs), Mutation::SetItem(k, v)) => pairs.push((k, v)),
            (Value::Set(items), Mutation::Add(v)) => items.push(v),
            (Value::Object(obj), m) => obj.mutations.push(m),
            (Value::Mutated(m), mu) => m.mutations.push(mu),
            (slot, mu) => {
                // Keep the identity of `target` (memo entries point at it): move the original value
                // to a new slot and turn `target` into a wrapper around it.
                let original = std::mem::replace(slot, Value::None);
                let base = self.new_value(original, 0)?;
                self.values[target.index()] = Value::Mutated(Box::new(Mutated {
                    base,
                    mutations: vec![mu],
                }));
            }
        }
        Ok(())
    }

    #[inline(always)]
    fn step(&mut self, op: &Op<'_>, decoder: &Decoder<'_>) -> Result<Step> {
        use Opcode::*;
        match op.opcode {
            // --- scalars ---
            NONE => self.push_new(Value::None, 0)?,
            NEWTRUE => self.push_new(Value::Bool(true), 0)?,
            NEWFALSE => self.push_new(Value::Bool(false), 0)?,
            BININT | BININT1 | BININT2 => self.push_new(Value::Int(op.int()), 0)?,
            INT => {
                let Arg::Line(line) = op.arg else {
                    unreachable_arg()?
                };
                match text::parse_int_line(line).map_err(bad)? {
                    IntLine::Bool(b) => self.push_new(Value::Bool(b), 0)?,
                    IntLine::Int(v) => self.int_value(v)?,
                }
            }
            LONG => {
                let Arg::Line(line) = op.arg else {
                    unreachable_arg()?
                };
                let v = text::parse_long_line(line).map_err(bad)?;
                self.int_value(v)?
            }
            LONG1 | LONG4 => {
                let Arg::Long(bytes) = op.arg else {
                    unreachable_arg()?
                };
                self.charge(bytes.len() as u64)?;
                self.int_value(decode_long(bytes))?
            }
            FLOAT => {
                let Arg::Line(line) = op.arg else {
                    unreachable_arg()?
                };
                let f = text::parse_float_line(line).map_err(bad)?;
                self.push_new(Value::Float(f), 0)?
            }
            BINFLOAT => {
                let Arg::Float(f) = op.arg else {
                    unreachable_arg()?
                };
                self.push_new(Value::Float(f), 0)?
            }
            STRING => {
                let Arg::Line(line) = op.arg else {
                    unreachable_arg()?
                };
                let bytes = text::parse_string_line(line).map_err(bad)?;
                let n = bytes.len();
                self.push_new(Value::LegacyStr(Box::new(bytes)), n)?
            }
            BINSTRING | SHORT_BINSTRING => {
                let Arg::Bytes(b) = op.arg else {
                    unreachable_arg()?
                };
                self.push_new(Value::LegacyStr(Box::new(b.to_vec())), b.len())?
            }
            BINBYTES | SHORT_BINBYTES | BINBYTES8 => {
                let Arg::Bytes(b) = op.arg else {
                    unreachable_arg()?
                };
                self.push_new(Value::Bytes(Box::new(b.to_vec())), b.len())?
            }
            BYTEARRAY8 => {
                let Arg::Bytes(b) = op.arg else {
                    unreachable_arg()?
                };
                self.push_new(Value::ByteArray(Box::new(b.to_vec())), b.len())?
            }
            UNICODE => {
                let Arg::Line(line) = op.arg else {
                    unreachable_arg()?
                };
                let s = text::raw_unicode_escape_decode(line).map_err(bad)?;
                let n = s.as_bytes().len();
                self.push_new(Value::Str(s), n)?
            }
            BINUNICODE | SHORT_BINUNICODE | BINUNICODE8 => {
                let Arg::Bytes(b) = op.arg else {
                    unreachable_arg()?
                };
                self.str_value(b)?
            }

            // --- containers ---
            EMPTY_LIST => self.push_new(Value::List(ThinVec::new()), 0)?,
            EMPTY_TUPLE => self.push_new(Value::Tuple(ThinVec::new()), 0)?,
            EMPTY_DICT => self.push_new(Value::Dict(ThinVec::new()), 0)?,
            EMPTY_SET => self.push_new(Value::Set(ThinVec::new()), 0)?,
            LIST => {
                let items = self.pop_mark()?;
                let n = items.len() * 4;
                self.push_new(Value::List(items), n)?
            }
            TUPLE => {
                let items = self.pop_mark()?;
                let n = items.len() * 4;
                self.push_new(Value::Tuple(items), n)?
            }
            FROZENSET => {
                let items = self.pop_mark()?;
                let n = items.len() * 4;
                self.push_new(Value::FrozenSet(items), n)?
            }
            TUPLE1 | TUPLE2 | TUPLE3 => {
                let n = match op.opcode {
                    TUPLE1 => 1,
                    TUPLE2 => 2,
                    _ => 3,
                };
                if self.stack.len() - self.fence() < n {
                    return Err(self.underflow(n));
                }
                let items = ThinVec::from(&self.stack[self.stack.len() - n..]);
                self.stack.truncate(self.stack.len() - n);
                self.push_new(Value::Tuple(items), n * 4)?
            }
            DICT => {
                let items = self.pop_mark()?;
                if items.len() % 2 != 0 {
                    return Err(Error::new(ErrorKind::WrongType(
                        "odd number of items for DICT".into(),
                    )));
                }
                let pairs: ThinVec<_> = items.chunks_exact(2).map(|kv| (kv[0], kv[1])).collect();
                let n = pairs.len() * 8;
                self.push_new(Value::Dict(pairs), n)?
            }
            APPEND => {
                self.need(2)?;
                let item = self.pop()?;
                let target = self.top()?;
                self.mutate(target, Mutation::Append(item))?
            }
            APPENDS => {
                // Fast path: extend a list straight from the stack, no temporary vector.
                if let Some(target) = self.target_below_mark() {
                    if let Value::List(list) = &mut self.values[target.index()] {
                        let mark = self.marks.pop().unwrap_or_default();
                        list.extend_from_slice(&self.stack[mark..]);
                        let added = self.stack.len() - mark;
                        self.stack.truncate(mark);
                        self.charge(added as u64 * 4)?;
                        return Ok(Step::Continue);
                    }
                }
                let (target, items) = self.pop_mark_with_target("APPENDS")?;
                self.charge(items.len() as u64 * 4)?;
                {
                    for item in items {
                        self.mutate(target, Mutation::Append(item))?;
                    }
                }
            }
            SETITEM => {
                self.need(3)?;
                let value = self.pop()?;
                let key = self.pop()?;
                let target = self.top()?;
                self.mutate(target, Mutation::SetItem(key, value))?
            }
            SETITEMS => {
                if let Some(target) = self.target_below_mark() {
                    let mark = self.marks.last().copied().unwrap_or_default();
                    let n = self.stack.len() - mark;
                    if let (Value::Dict(pairs), true) =
                        (&mut self.values[target.index()], n % 2 == 0)
                    {
                        pairs.extend(self.stack[mark..].chunks_exact(2).map(|kv| (kv[0], kv[1])));
                        self.marks.pop();
                        self.stack.truncate(mark);
                        self.charge(n as u64 * 4)?;
                        return Ok(Step::Continue);
                    }
                }
                let (target, items) = self.pop_mark_with_target("SETITEMS")?;
                if items.len() % 2 != 0 {
                    return Err(Error::new(ErrorKind::WrongType(
                        "odd number of items for SETITEMS".into(),
                    )));
                }
                self.charge(items.len() as u64 * 4)?;
                if let Value::Dict(pairs) = &mut self.values[target.index()] {
                    pairs.extend(items.chunks_exact(2).map(|kv| (kv[0], kv[1])));
                } else {
                    for kv in items.chunks_exact(2) {
                        self.mutate(target, Mutation::SetItem(kv[0], kv[1]))?;
                    }
                }
            }
            ADDITEMS => {
                let (target, items) = self.pop_mark_with_target("ADDITEMS")?;
                self.charge(items.len() as u64 * 4)?;
                if let Value::Set(set) = &mut self.values[target.index()] {
                    set.extend_from_slice(&items);
                } else {
                    for item in items {
                        self.mutate(target, Mutation::Add(item))?;
                    }
                }
            }

            // --- stack and memo ---
            POP => {
                if self.stack.len() > self.fence() {
                    if let Some(id) = self.stack.pop() {
                        self.discard(id)?;
                    }
                } else if self.marks.pop().is_none() {
                    return Err(self.underflow(1));
                }
            }
            DUP => {
                let top = self.top()?;
                self.shared.set(top);
                self.stack.push(top);
            }
            MARK => {
                if self.marks.len() >= self.limits.max_depth() {
                    return Err(Error::new(ErrorKind::LimitExceeded {
                        what: "depth",
                        limit: self.limits.max_depth() as u64,
                    }));
                }
                self.marks.push(self.stack.len());
            }
            POP_MARK => {
                for id in self.pop_mark()? {
                    self.discard(id)?;
                }
            }
            GET => {
                let Arg::Line(line) = op.arg else {
                    unreachable_arg()?
                };
                let idx = text::parse_memo_index(line, "GET").map_err(bad)?;
                self.memo_get(idx)?
            }
            BINGET | LONG_BINGET => self.memo_get(op.int() as u64)?,
            PUT => {
                let Arg::Line(line) = op.arg else {
                    unreachable_arg()?
                };
                let idx = text::parse_memo_index(line, "PUT").map_err(bad)?;
                self.memo_put(idx)?
            }
            BINPUT | LONG_BINPUT => self.memo_put(op.int() as u64)?,
            MEMOIZE => self.memo_put(self.memo.count)?,

            // --- globals, calls, state ---
            GLOBAL | INST => {
                let Arg::TwoLines(module, name) = op.arg else {
                    unreachable_arg()?
                };
                let utf8 = |b: &[u8], what: &str| {
                    std::str::from_utf8(b).map(PyString::from).map_err(|e| {
                        let at = e.valid_up_to();
                        let byte = b.get(at).copied().unwrap_or_default();
                        bad(format!(
                            "{what} is not valid UTF-8: 'utf-8' codec can't decode byte \
                             {byte:#04x} in position {at}"
                        ))
                    })
                };
                let global = Global {
                    module: utf8(module, "module name")?,
                    name: utf8(name, "global name")?,
                };
                let size = module.len() + name.len();
                let callable = self.new_value(Value::Global(Box::new(global)), size)?;
                if op.opcode == GLOBAL {
                    self.stack.push(callable);
                } else {
                    let items = self.pop_mark()?;
                    let n = items.len() * 4;
                    let args = self.new_value(Value::Tuple(items), n)?;
                    self.push_object(CallKind::Inst, callable, args, None)?;
                }
            }
            STACK_GLOBAL => {
                self.need(2)?;
                let name = self.pop()?;
                let module = self.pop()?;
                let value = match (&self.values[module.index()], &self.values[name.index()]) {
                    (Value::Str(m), Value::Str(n)) => Value::Global(Box::new(Global {
                        module: m.clone(),
                        name: n.clone(),
                    })),
                    (m, n) if is_opaque(m) || is_opaque(n) => Value::DynamicGlobal { module, name },
                    _ => {
                        return Err(Error::new(ErrorKind::WrongType(
                            "STACK_GLOBAL requires str".into(),
                        )))
                    }
                };
                self.push_new(value, 0)?
            }
            REDUCE => {
                self.need(2)?;
                let args = self.pop()?;
                let callable = self.pop()?;
                self.push_object(CallKind::Reduce, callable, args, None)?
            }
            NEWOBJ => {
                self.need(2)?;
                let args = self.pop()?;
                let cls = self.pop()?;
                self.push_object(CallKind::NewObj, cls, args, None)?
            }
            NEWOBJ_EX => {
                self.need(3)?;
                let kwargs = self.pop()?;
                let args = self.pop()?;
                let cls = self.pop()?;
                self.push_object(CallKind::NewObjEx, cls, args, Some(kwargs))?
            }
            OBJ => {
                let mut items = self.pop_mark()?;
                if items.is_empty() {
                    return Err(Error::new(ErrorKind::StackUnderflow {
                        needed: 1,
                        found: 0,
                        above_mark: true,
                    }));
                }
                let cls = items.remove(0);
                let n = items.len() * 4;
                let args = self.new_value(Value::Tuple(items), n)?;
                self.push_object(CallKind::Obj, cls, args, None)?
            }
            BUILD => {
                self.need(2)?;
                let state = self.pop()?;
                let target = self.top()?;
                self.mutate(target, Mutation::Build(state))?
            }
            EXT1 | EXT2 | EXT4 => {
                // EXT4's code is four unsigned bytes to the unpickler (signed only in pickletools).
                let code = op.int() as u32;
                if code == 0 {
                    return Err(bad("EXT specifies code <= 0"));
                }
                self.push_new(Value::Ext(code), 0)?
            }
            PERSID => {
                let Arg::Line(line) = op.arg else {
                    unreachable_arg()?
                };
                if !line.is_ascii() {
                    return Err(bad("persistent IDs in protocol 0 must be ASCII strings"));
                }
                let pid = self.new_value(
                    Value::Str(PyString::from_utf8_surrogatepass(line).map_err(bad)?),
                    line.len(),
                )?;
                self.push_new(Value::PersistentId(pid), 0)?
            }
            BINPERSID => {
                let pid = self.pop()?;
                self.push_new(Value::PersistentId(pid), 0)?
            }
            NEXT_BUFFER => {
                let index = self.next_buffer;
                self.next_buffer = self.next_buffer.saturating_add(1);
                self.push_new(
                    Value::Buffer {
                        index,
                        readonly: false,
                    },
                    0,
                )?
            }
            READONLY_BUFFER => {
                let top = self.top()?;
                let replacement = match self.values[top.index()] {
                    Value::Buffer {
                        index,
                        readonly: false,
                    } => Some(Value::Buffer {
                        index,
                        readonly: true,
                    }),
                    // memoryview(bytes) is already read-only: the stack is left as it is.
                    Value::Bytes(_) | Value::Buffer { readonly: true, .. } => None,
                    _ => Some(Value::ReadOnly(top)),
                };
                if let Some(value) = replacement {
                    let id = self.new_value(value, 0)?;
                    let last = self.stack.len() - 1;
                    self.stack[last] = id;
                }
            }

            // --- framing and control ---
            PROTO => {
                let proto = op.int() as u8;
                if proto > HIGHEST_PROTOCOL {
                    return Err(Error::new(ErrorKind::UnsupportedProtocol(proto)));
                }
                self.protocol = proto;
            }
            FRAME => {
                let len = match op.arg {
                    Arg::U64(n) => n,
                    _ => 0,
                };
                let remaining = decoder.remaining().len() as u64;
                if len > remaining {
                    return Err(Error::new(ErrorKind::LengthBeyondInput {
                        claimed: len,
                        remaining,
                    }));
                }
            }
            STOP => return Ok(Step::Stop(self.pop()?)),
        }
        Ok(Step::Continue)
    }

    fn push_object(
        &mut self,
        kind: CallKind,
        callable: ValueId,
        args: ValueId,
        kwargs: Option<ValueId>,
    ) -> Result<()> {
        let obj = Object {
            kind,
            callable,
            args,
            kwargs,
            mutations: Vec::new(),
        };
        self.push_new(Value::Object(Box::new(obj)), 24)
    }
}

/// Whether `byte` is an opcode [`Machine::scalar_run`] handles.
#[inline(always)]
fn is_run_scalar(byte: u8) -> bool {
    matches!(byte, b'G' | b'K' | b'M' | b'J' | b'N' | 0x88 | 0x89)
}

/// Values whose Python type is only known at load time (results of calls and look-ups).
fn is_opaque(v: &Value) -> bool {
    matches!(
        v,
        Value::Object(_)
            | Value::Mutated(_)
            | Value::Global(_)
            | Value::DynamicGlobal { .. }
            | Value::PersistentId(_)
            | Value::Ext(_)
    )
}

/// The argument did not have the layout the opcode table promises; cannot happen with
/// [`Decoder`], reported rather than panicking.
#[cold]
fn unreachable_arg<T>() -> Result<T> {
    Err(Error::new(ErrorKind::BadArgument(
        "internal error: argument layout mismatch".into(),
    )))
}

/// Two's-complement little-endian bytes to an integer (`pickle.decode_long`).
pub(crate) fn decode_long(bytes: &[u8]) -> ParsedInt {
    if bytes.len() <= 8 {
        if bytes.is_empty() {
            return ParsedInt::Small(0);
        }
        let mut buf = if bytes[bytes.len() - 1] & 0x80 != 0 {
            [0xFF; 8]
        } else {
            [0; 8]
        };
        buf[..bytes.len()].copy_from_slice(bytes);
        return ParsedInt::Small(i64::from_le_bytes(buf));
    }
    let big = BigInt::from_signed_bytes_le(bytes);
    match i64::try_from(&big) {
        Ok(v) => ParsedInt::Small(v),
        Err(_) => ParsedInt::Big(big),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(data: &[u8]) -> Pickle {
        Pickle::from_slice(data).unwrap()
    }

    fn err(data: &[u8]) -> String {
        Pickle::from_slice(data).unwrap_err().to_string()
    }

    /// Values left on the stack below the root at STOP are recorded once each (a list fetched
    /// twice from the memo is one value), in linear time: 200,000 of them used to take
    /// 200,000 searches of the list recorded so far (seconds; a 1 MB file took minutes).
    #[test]
    fn values_left_below_the_root_are_recorded_once_each() {
        let n = 200_000;
        let mut data = b"\x80\x04]\x94h\x00".to_vec();
        data.extend(std::iter::repeat_n(b']', n));
        data.extend_from_slice(b"N.");
        let p = read(&data);
        assert_eq!(p[p.root()], Value::None);
        assert_eq!(p.discarded().len(), n + 1);
        let first = p.discarded()[0];
        assert!(p.discarded()[1..].iter().all(|&id| id != first));
    }

    #[test]
    fn scalars() {
        let p = read(b"\x80\x02\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01.");
        assert_eq!(
            p[p.root()],
            Value::BigInt(Box::new(BigInt::from(1u128 << 64)))
        );
        let p = read(b"\x8a\x02\xff\x7f.");
        assert_eq!(p[p.root()], Value::Int(0x7fff));
        let p = read(b"\x8a\x01\xff.");
        assert_eq!(p[p.root()], Value::Int(-1));
        let p = read(b"I01\n.");
        assert_eq!(p[p.root()], Value::Bool(true));
        let p = read(b"Finf\n.");
        assert_eq!(p[p.root()], Value::Float(f64::INFINITY));
    }

    #[test]
    fn shared_and_cyclic_values_are_ids() {
        // a = []; [a, a] at protocol 2
        let p = read(b"\x80\x02]q\x00(]q\x01h\x01e.");
        let Value::List(outer) = &p[p.root()] else {
            panic!()
        };
        assert_eq!(outer.len(), 2);
        assert_eq!(outer[0], outer[1]);
    }

    #[test]
    fn build_on_a_list_keeps_identity() {
        // l = []; memo it; BUILD {} on it; return [l, l-from-memo]
        let p = read(b"]q\x00}bh\x00\x86.");
        let Value::Tuple(items) = &p[p.root()] else {
            panic!()
        };
        assert_eq!(items[0], items[1]);
        let Value::Mutated(m) = &p[items[0]] else {
            panic!("{:?}", p[items[0]])
        };
        assert_eq!(p[m.base], Value::List(thin_vec::thin_vec![]));
        assert!(matches!(m.mutations[..], [Mutation::Build(_)]));
    }

    #[test]
    fn malformed_inputs_name_what_and_where() {
        assert_eq!(
            err(b"\x80\x04h\x07."),
            "memo index 7 was never stored at byte 2 (BINGET)"
        );
        assert_eq!(err(b""), "pickle data was truncated: empty input at byte 0");
        assert_eq!(
            err(b"K\x01"),
            "pickle data was truncated: no STOP opcode at byte 2"
        );
        assert_eq!(
            err(b"\x80\x06."),
            "unsupported pickle protocol 6 at byte 0 (PROTO)"
        );
        assert_eq!(
            err(b"a."),
            "stack underflow: needs 2 item(s), found 0 at byte 0 (APPEND)"
        );
        assert_eq!(
            err(b"K\x01(a."),
            "stack underflow: needs 2 item(s) above the MARK, found 0 at byte 3 (APPEND)"
        );
        assert_eq!(err(b"t."), "no MARK on the stack at byte 0 (TUPLE)");
        assert_eq!(
            err(b"(K\x01d."),
            "odd number of items for DICT at byte 3 (DICT)"
        );
        assert_eq!(
            err(b"K\x01K\x02\x93."),
            "STACK_GLOBAL requires str at byte 4 (STACK_GLOBAL)"
        );
        assert_eq!(
            err(b"S'abc\n."),
            "the STRING opcode argument must be quoted at byte 0 (STRING)"
        );
        assert_eq!(
            err(b"\x82\x00."),
            "EXT specifies code <= 0 at byte 0 (EXT1)"
        );
    }

    #[test]
    fn a_call_thrown_away_by_pop_is_kept_on_the_object_below() {
        // obj = Reduce6('x'); setter(obj, {}) ; POP  (a 6-item __reduce__ with a state setter)
        let p = read(b"\x80\x02cm\nK\nX\x01\x00\x00\x00x\x85Rq\x00cm\nsetter\nh\x00}\x86R0.");
        let Value::Object(obj) = &p[p.root()] else {
            panic!("{:?}", p[p.root()])
        };
        let [Mutation::Discard(call)] = obj.mutations[..] else {
            panic!("{:?}", obj.mutations)
        };
        let Value::Object(setter) = &p[call] else {
            panic!()
        };
        assert!(
            matches!(&p[setter.callable], Value::Global(g) if g.name.as_str() == Some("setter"))
        );
        assert!(p.discarded().is_empty());
    }

    #[test]
    fn calls_thrown_away_before_the_root_are_kept_on_the_pickle() {
        // os.system('echo hi'); POP; then the harmless-looking root None.
        let p = read(b"cos\nsystem\n(S'echo hi'\ntR0N.");
        assert_eq!(p[p.root()], Value::None);
        let [call] = p.discarded()[..] else {
            panic!("{:?}", p.discarded())
        };
        assert!(matches!(&p[call], Value::Object(o) if o.kind == CallKind::Reduce));
        // Left below the root at STOP: built all the same.
        let p = read(b"cbuiltins\nprint\n)RK\x02.");
        assert_eq!(p[p.root()], Value::Int(2));
        assert_eq!(p.discarded().len(), 1);
    }

    #[test]
    fn memoized_or_plain_values_popped_are_not_recorded() {
        // CPython's recursive tuple: t = ([],); t[0].append(t) -> items popped, then GET.
        let p = read(b"\x80\x02]q\x00h\x00\x85q\x01a0h\x01.");
        assert!(p.discarded().is_empty());
        let Value::Tuple(items) = &p[p.root()] else {
            panic!()
        };
        assert!(matches!(&p[items[0]], Value::List(l) if l == &[p.root()]));
        // A popped int is just gone.
        let p = read(b"]K\x010.");
        assert_eq!(p[p.root()], Value::List(thin_vec::thin_vec![]));
    }

    #[test]
    fn scalar_runs_read_every_kind() {
        // [1.5, 7, 0x1234, -2, None, True, False, 2.5, 300] at protocol 2, one APPENDS batch.
        let mut data = b"\x80\x02](G\x3f\xf8\0\0\0\0\0\0K\x07M\x34\x12J\xfe\xff\xff\xff".to_vec();
        data.extend_from_slice(b"N\x88\x89G\x40\x04\0\0\0\0\0\0M\x2c\x01e.");
        let p = read(&data);
        let Value::List(items) = &p[p.root()] else {
            panic!()
        };
        let got: Vec<_> = items.iter().map(|&id| p[id].clone()).collect();
        assert_eq!(
            got,
            vec![
                Value::Float(1.5),
                Value::Int(7),
                Value::Int(0x1234),
                Value::Int(-2),
                Value::None,
                Value::Bool(true),
                Value::Bool(false),
                Value::Float(2.5),
                Value::Int(300),
            ]
        );
        // Ids follow stream order, as the general path assigns them.
        assert_eq!(
            items.iter().map(|id| id.index()).collect::<Vec<_>>(),
            (1..10).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_run_stops_where_the_general_path_reports() {
        // A BINFLOAT cut short after two whole ones: reported at its own offset.
        let e = err(b"(G\0\0\0\0\0\0\0\0G\0\0\0\0\0\0\0\0G\0\0");
        assert_eq!(
            e,
            "pickle data was truncated: argument runs past the end of the input at byte 19 \
             (BINFLOAT)"
        );
        // Reaching the allocation limit inside a run: the value over the limit is named, as
        // when values were charged one by one (32 bytes each).
        let limits = Limits::builder().max_alloc(32 * 3).build();
        let e = Pickle::from_slice_with(b"(K\x01K\x02K\x03K\x04K\x05l.", &limits).unwrap_err();
        assert_eq!(
            e.to_string(),
            "allocation limit of 96 exceeded at byte 7 (BININT1)"
        );
        let limits = Limits::builder().max_alloc(32 * 6 + 20).build(); // 5 ints, the list and its 5 ids
        let p = Pickle::from_slice_with(b"(K\x01K\x02K\x03K\x04K\x05l.", &limits).unwrap();
        assert!(matches!(&p[p.root()], Value::List(l) if l.len() == 5));
    }

    #[test]
    fn pop_on_an_empty_fence_pops_the_mark() {
        let p = read(b"K\x01(0.");
        assert_eq!(p[p.root()], Value::Int(1));
    }

    #[test]
    fn memoize_uses_entry_count() {
        // PUT 5, then MEMOIZE stores at index 1 (one entry so far), GET 1 fetches it
        let p = read(b"K\x01p5\nK\x02\x94h\x01.");
        assert_eq!(p[p.root()], Value::Int(2));
    }

    #[test]
    fn huge_memo_index_does_not_allocate() {
        let p = read(b"K\x01r\x00\x00\x00\xf0j\x00\x00\x00\xf0.");
        assert_eq!(p[p.root()], Value::Int(1));
    }

    #[test]
    fn depth_and_memo_limits() {
        let limits = Limits::builder().max_memo(2).build();
        let e = Pickle::from_slice_with(b"K\x01\x94\x94\x94.", &limits).unwrap_err();
        assert_eq!(
            e.to_string(),
            "memo limit of 2 exceeded at byte 4 (MEMOIZE)"
        );
        let limits = Limits::builder().max_alloc(1000).build();
        let mut data = vec![b'('];
        data.extend(std::iter::repeat(b"N").take(100).flatten());
        data.extend_from_slice(b"l.");
        let e = Pickle::from_slice_with(&data, &limits).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("allocation limit of 1000 exceeded at byte"),
            "{e}"
        );
    }
}
