//! The scan machine: runs the opcode stream over a symbolic stack and memo.
//!
//! Nothing is imported and nothing runs. Each stack slot holds a [`Sym`]: what the real
//! unpickler would have there, as far as safety is concerned: inert data, a constant string
//! pushed by a literal opcode, a global (with its policy verdict), the result of a call, a small
//! tuple or dict whose items matter, or "unknown" after a structural error. Taint follows values
//! through the memo, DUP and containers, so a call result stored with PUT and fetched with GET is
//! still a call result.
//!
//! The rule families live next door: [`super::structure`] (the stream is well formed),
//! [`super::globals`] (what a global may be) and [`super::calls`] (what a call may be).

use std::collections::HashMap;
use std::sync::Arc;

use super::policy::{Access, Policy};
use super::report::{CallSite, Finding, GlobalRef, Report};
use super::rule::Rule;
use crate::decode::{Arg, Decoder, Op};
use crate::opcode::Opcode;
use crate::Limits;

mod fast;

/// Findings per stream beyond which the scan stops adding (the verdict is settled).
const MAX_FINDINGS: usize = 1000;
/// How deeply pickles nested in bytes constants are scanned.
const MAX_NESTING: u32 = 4;
use super::MAX_CALL_DEPTH;
/// Items recorded per tuple / entries per dict (larger ones are plain data).
const SMALL_TUPLE: usize = 8;
const SMALL_DICT: usize = 16;

/// The length bits of `Sym::Str`'s `len`.
const STR_LEN: u32 = 0x7fff_ffff;
/// The flag bit of `Sym::Str`'s `len`: the loader decodes the string as ASCII.
const STR_ASCII: u32 = 0x8000_0000;

/// `Sym::Dict` of a dict whose entries are not recorded (see `Machine::new_dict`).
pub(crate) const NO_DICT_TABLE: u32 = u32::MAX;

/// Whether `name` is a special attribute name (`__x__`) that a BUILD state may not set: all
/// but the descriptive ones objects keep as data ([`crate::scan::DATA_SPECIAL_NAMES`]).
fn is_special_name(name: &[u8]) -> bool {
    name.len() > 4
        && name.starts_with(b"__")
        && name.ends_with(b"__")
        && !super::DATA_SPECIAL_NAMES
            .iter()
            .any(|n| n.as_bytes() == name)
}

/// `Sym::Ints` of a tuple whose product overflows or has a negative item.
pub(crate) const NO_PRODUCT: u64 = u64::MAX;

// The machine copies symbols all the time: keep them two words.
const _: () = assert!(std::mem::size_of::<Sym>() == 16);
const _: () = assert!(std::mem::size_of::<Option<Sym>>() == 16);

/// The value of a LONG1/LONG4 argument (little-endian two's complement), if it fits an i64.
fn long_le_i64(b: &[u8]) -> Option<i64> {
    if b.is_empty() {
        return Some(0);
    }
    let negative = b[b.len() - 1] & 0x80 != 0;
    let fill = if negative { 0xff } else { 0 };
    let (low, high) = b.split_at(b.len().min(8));
    if high.iter().any(|&x| x != fill) {
        return None;
    }
    let mut raw = [fill; 8];
    raw[..low.len()].copy_from_slice(low);
    let v = i64::from_le_bytes(raw);
    // the sign of the value must be the sign of the whole number
    ((v < 0) == negative).then_some(v)
}

/// A symbolic stack value.
///
/// A word-sized tag and one word of payload: with a byte tag and payload bytes right after it,
/// the compiler copies a symbol as a byte and two overlapping words through the native stack,
/// which stalls the CPU's store forwarding (a third of the scan's time on memo-heavy input).
#[derive(Debug, Clone, Copy)]
#[repr(u64)]
pub(crate) enum Sym {
    /// Inert data: numbers, bytes, containers, None.
    Data,
    /// A small integer (kept for shapes and counts).
    Int(i64),
    /// A constant string pushed by a literal opcode: `len & STR_LEN` bytes at `start` in the
    /// input; [`STR_ASCII`] set in `len` when the loader decodes it as ASCII (Python 2 strings)
    /// rather than UTF-8. Strings at offsets past 4 GiB or longer than 2 GiB are [`Sym::Text`].
    Str { start: u32, len: u32 },
    /// A tuple of small non-negative integers (a shape), by the product of its items
    /// ([`NO_PRODUCT`] on overflow or a negative item). Not an `Option<u64>`, which would make
    /// every `Sym` 24 bytes instead of 16.
    Ints(u64),
    /// A constant string whose text the scan does not decode (an escaped UNICODE line, a quoted
    /// STRING): data, but never a global's name.
    Text,
    /// A global: index into the machine's global table.
    Global(u32),
    /// The result of a call: index into the machine's call table.
    Result(u32),
    /// A small tuple: a span of the tuple arena.
    Tuple(u32, u32),
    /// A small dict with constant string keys: index into the dict table.
    Dict(u32),
    /// What the scan cannot know (after a structural error, an EXT or a persistent id).
    Unknown,
    /// Inert data (a large tuple) holding call results nested this deep.
    Deep(u32),
}

/// What a global is, beyond its policy verdict: the few that the call rules treat specially.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Special {
    None,
    /// `builtins.getattr`: only `getattr(<allowed global>, <constant str>)` and a listed method
    /// bound to an instance (`getattr(<instance of an allowed class>, <constant str>)`).
    Getattr,
    /// `_codecs.encode`: how protocol 0–2 pickles write bytes; only with constant strings.
    CodecsEncode,
    /// Unpickle helpers that call their class arguments or attributes of them
    /// (`copyreg._reconstructor`, numpy's `_reconstruct`, pandas' `_new_*Index`, ...): see
    /// `calls::helper_arguments`.
    Helper,
    /// `numpy.dtype`: its first argument names the item type (for joblib arrays).
    NumpyDtype,
    /// `joblib.numpy_pickle.NumpyArrayWrapper`: raw array bytes follow its BUILD in joblib files.
    JoblibWrapper,
}

#[derive(Debug)]
pub(crate) struct GlobalInfo {
    /// `module:name`, shared with the policy's verdict cache for a name it lets through (no
    /// copy of the names per global), split at byte `split`.
    names: Arc<str>,
    split: u32,
    access: Option<Access>,
    /// A finding was already reported for this reference (do not report the call too).
    flagged: bool,
    special: Special,
}

impl GlobalInfo {
    fn module(&self) -> &str {
        self.names.get(..self.split as usize).unwrap_or("")
    }
    fn name(&self) -> &str {
        self.names.get(self.split as usize + 1..).unwrap_or("")
    }
}

#[derive(Debug)]
struct CallInfo<'a> {
    callee: Option<u32>,
    /// How deeply call results nest in this one (1 + the deepest in its arguments).
    depth: u32,
    /// The first argument, when it is a constant string (a dtype code).
    first_str: Option<&'a [u8]>,
    /// The class the result is an instance of, as far as the scan can tell: the callee itself
    /// (a class called or given to NEWOBJ), or the class `copyreg._reconstructor` is given
    /// (protocols 0 and 1). Only a bound method's lookup uses it (`getattr(<instance>, name)`),
    /// and the load-time guard checks the object's actual type.
    class: Option<u32>,
}

/// Options of one run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunOptions {
    /// Read joblib's raw array data after each `NumpyArrayWrapper` BUILD, as `joblib.load` does.
    pub joblib: bool,
    /// Nesting level of pickles found inside bytes constants.
    pub nesting: u32,
    /// Record every global reference and call in the report. Without it (the verdict of
    /// [`super::scan_verdict`]) only findings, the opcode count and references to joblib's
    /// `NumpyArrayWrapper` are recorded.
    pub record: bool,
}

pub(crate) struct Machine<'a, 'r> {
    data: &'a [u8],
    policy: &'r Policy,
    limits: &'r Limits,
    options: RunOptions,
    member: Option<&'r str>,
    report: &'r mut Report,
    stack: Vec<Sym>,
    marks: Vec<usize>,
    memo: Vec<Option<Sym>>,
    memo_far: HashMap<u64, Sym>,
    /// Entries in the memo (MEMOIZE stores at this index, as CPython's `len(memo)`).
    memo_count: u64,
    tuples: Vec<Sym>,
    dicts: Vec<Vec<(&'a [u8], Sym)>>,
    globals: Vec<GlobalInfo>,
    /// Clean globals already resolved, by (module, name): a name referenced again reuses its
    /// entry instead of another copy (red-team F9: memo GETs of one long name, referenced
    /// thousands of times).
    /// Keyed by [`name_key`] of the raw names; a hit is checked against the entry's names.
    interned: Interned,
    calls: Vec<CallInfo<'a>>,
    proto: u8,
    seen_proto: bool,
    pickle_start: usize,
    frame_end: Option<usize>,
    findings_here: usize,
    stopped: bool,
    /// A dict this scan does not follow got a key that is a special attribute name
    /// (`note_special_keys`): any such dict may then be one.
    special_key_seen: bool,
    /// A string constant of this pickle is a special attribute name (`str_sym`).
    special_str_seen: bool,
}

/// The intern table of globals (see [`Machine::interned`]).
type Interned = HashMap<u64, u32, std::hash::BuildHasherDefault<super::policy::KeyHasher>>;

/// The tables of a finished scan, emptied, kept per thread for the next scan: allocating them
/// (and freeing them afterwards) cost a small pickle's scan more than a tenth of its work.
/// Only tables that stayed small are kept (see [`Spare::KEEP`]), so a large scan's memory is
/// not held on to.
struct Spare {
    stack: Vec<Sym>,
    marks: Vec<usize>,
    memo: Vec<Option<Sym>>,
    tuples: Vec<Sym>,
    globals: Vec<GlobalInfo>,
    interned: Interned,
    /// The calls' table, for any lifetime of the scanned bytes (it is always empty here).
    calls: Vec<CallInfo<'static>>,
}

impl Spare {
    /// The most entries a kept table may have room for.
    const KEEP: usize = 4096;

    fn new() -> Self {
        // room for a small pickle's needs: growing from nothing costs more than its scan
        Spare {
            stack: Vec::with_capacity(64),
            marks: Vec::with_capacity(16),
            memo: Vec::with_capacity(256),
            tuples: Vec::with_capacity(64),
            globals: Vec::with_capacity(16),
            interned: HashMap::with_capacity_and_hasher(16, Default::default()),
            calls: Vec::with_capacity(16),
        }
    }
}

thread_local! {
    /// The tables of this thread's last scan (taken by the next one; a scan inside a scan, of
    /// a nested pickle, finds none and allocates its own).
    static SPARE: std::cell::RefCell<Option<Spare>> = const { std::cell::RefCell::new(None) };
}

/// An empty `Vec` of another element type with the same layout, keeping the allocation
/// (collecting from an emptied `into_iter` reuses its buffer; at worst it allocates nothing).
fn relabel<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}

/// How one run ended.
pub(crate) enum End {
    /// STOP was reached at this offset (the byte after STOP).
    Stop(usize),
    /// The input ended, or the scan had to stop (a finding says why).
    Abort,
}

impl<'a, 'r> Machine<'a, 'r> {
    pub(crate) fn new(
        data: &'a [u8],
        policy: &'r Policy,
        limits: &'r Limits,
        options: RunOptions,
        member: Option<&'r str>,
        report: &'r mut Report,
    ) -> Self {
        let spare = SPARE
            .try_with(|s| s.try_borrow_mut().ok().and_then(|mut slot| slot.take()))
            .ok()
            .flatten()
            .unwrap_or_else(Spare::new);
        Machine {
            data,
            policy,
            limits,
            options,
            member,
            report,
            stack: spare.stack,
            marks: spare.marks,
            memo: spare.memo,
            memo_far: HashMap::new(),
            memo_count: 0,
            tuples: spare.tuples,
            dicts: Vec::new(),
            globals: spare.globals,
            interned: spare.interned,
            calls: relabel(spare.calls),
            proto: 0,
            seen_proto: false,
            pickle_start: 0,
            frame_end: None,
            findings_here: 0,
            stopped: false,
            special_key_seen: false,
            special_str_seen: false,
        }
    }

    /// Scan the whole input: the first pickle, then anything after its STOP (a finding) as
    /// further pickles.
    pub(crate) fn run_all(mut self) {
        self.run_pickles();
        self.recycle();
    }

    /// Keep this scan's tables, emptied, for the next scan on this thread (if they stayed
    /// small and no other scan's are kept).
    fn recycle(self) {
        let small = self.stack.capacity() <= Spare::KEEP
            && self.marks.capacity() <= Spare::KEEP
            && self.memo.capacity() <= Spare::KEEP
            && self.tuples.capacity() <= Spare::KEEP
            && self.globals.capacity() <= Spare::KEEP
            && self.interned.capacity() <= Spare::KEEP
            && self.calls.capacity() <= Spare::KEEP;
        if !small {
            return;
        }
        let mut spare = Spare {
            stack: self.stack,
            marks: self.marks,
            memo: self.memo,
            tuples: self.tuples,
            globals: self.globals,
            interned: self.interned,
            calls: relabel(self.calls),
        };
        spare.stack.clear();
        spare.marks.clear();
        spare.memo.clear();
        spare.tuples.clear();
        spare.globals.clear();
        spare.interned.clear();
        let _ = SPARE.try_with(|s| {
            if let Ok(mut slot) = s.try_borrow_mut() {
                if slot.is_none() {
                    *slot = Some(spare);
                }
            }
        });
    }

    fn run_pickles(&mut self) {
        if self.data.len() as u64 > self.limits.max_input() {
            self.finding(
                Rule::LimitExceeded,
                0,
                None,
                None,
                format!(
                    "input of {} bytes exceeds the input size limit of {}",
                    self.data.len(),
                    self.limits.max_input()
                ),
            );
            return;
        }
        if self.data.is_empty() {
            self.finding(
                Rule::Malformed,
                0,
                None,
                None,
                "empty input: no pickle at byte 0".into(),
            );
            return;
        }
        let mut start = 0;
        loop {
            match self.run_one(start) {
                End::Stop(end) if end < self.data.len() && !self.stopped => {
                    let rest = self.data.len() - end;
                    self.finding(
                        Rule::TrailingData,
                        end as u64,
                        None,
                        None,
                        format!(
                            "{rest} byte(s) of trailing data after STOP (a loader reading on would run them as another pickle) at byte {end}"
                        ),
                    );
                    start = end;
                }
                _ => break,
            }
        }
    }

    fn reset(&mut self, start: usize) {
        self.stack.clear();
        self.marks.clear();
        self.memo.clear();
        self.memo_far.clear();
        self.memo_count = 0;
        self.tuples.clear();
        self.dicts.clear();
        self.special_key_seen = false;
        self.special_str_seen = false;
        self.globals.clear();
        self.interned.clear();
        self.calls.clear();
        self.proto = 0;
        self.seen_proto = false;
        self.pickle_start = start;
        self.frame_end = None;
    }

    /// Scan one pickle starting at `start`, up to and including its STOP.
    pub(crate) fn run_one(&mut self, start: usize) -> End {
        self.reset(start);
        let mut dec = Decoder::at(self.data, start);
        loop {
            if self.stopped {
                return End::Abort;
            }
            let mut pos = dec.offset();
            self.run_fast(&mut pos);
            if pos != dec.offset() {
                dec = Decoder::at(self.data, pos);
            }
            let op = match dec.next_op() {
                Ok(Some(op)) => op,
                Ok(None) => {
                    let at = self.data.len() as u64;
                    self.finding(
                        Rule::Malformed,
                        at,
                        None,
                        None,
                        format!("pickle data was truncated: no STOP opcode at byte {at}"),
                    );
                    return End::Abort;
                }
                Err(err) => {
                    let at = err.offset().unwrap_or(dec.offset() as u64);
                    self.finding(Rule::Malformed, at, err.opcode(), None, err.to_string());
                    return End::Abort;
                }
            };
            self.report.opcodes += 1;
            let end = dec.offset();
            if let Some(fe) = self.frame_end {
                if op.offset >= fe {
                    self.frame_end = None;
                } else if end > fe && op.opcode != Opcode::FRAME {
                    self.finding(
                        Rule::FrameMismatch,
                        op.offset as u64,
                        Some(op.opcode),
                        None,
                        format!(
                            "opcode runs past the end of its frame at byte {fe} (the FRAME length does not match the opcodes inside it) at byte {} ({})",
                            op.offset, op.opcode
                        ),
                    );
                    self.frame_end = None;
                }
            }
            if op.opcode == Opcode::STOP {
                self.stop(&op);
                if let Some(fe) = self.frame_end {
                    if fe > end {
                        self.finding(
                            Rule::FrameMismatch,
                            op.offset as u64,
                            Some(op.opcode),
                            None,
                            format!(
                                "STOP inside a frame that ends at byte {fe} at byte {} (STOP)",
                                op.offset
                            ),
                        );
                    }
                }
                return End::Stop(end);
            }
            if let Some(skip_to) = self.step(&op, end) {
                dec = Decoder::at(self.data, skip_to);
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // Findings
    // ---------------------------------------------------------------------------------------

    #[cold]
    pub(crate) fn finding(
        &mut self,
        rule: Rule,
        offset: u64,
        opcode: Option<Opcode>,
        global: Option<(String, String)>,
        message: String,
    ) {
        if self.findings_here >= MAX_FINDINGS {
            return;
        }
        self.findings_here += 1;
        let (rule, message) = if self.findings_here == MAX_FINDINGS {
            self.stopped = true;
            (
                Rule::LimitExceeded,
                format!("{MAX_FINDINGS} findings: the rest of the stream was not scanned at byte {offset}"),
            )
        } else {
            (rule, message)
        };
        self.report.findings.push(Finding {
            rule,
            offset,
            opcode,
            global,
            member: self.member.map(str::to_owned),
            message,
        });
    }

    #[cold]
    fn structural(&mut self, rule: Rule, op: &Op<'_>, what: &str) {
        let msg = format!("{what} at byte {} ({})", op.offset, op.opcode);
        self.finding(rule, op.offset as u64, Some(op.opcode), None, msg);
    }

    fn global_pair(&self, gid: u32) -> (String, String) {
        let g = &self.globals[gid as usize];
        (g.module().to_owned(), g.name().to_owned())
    }

    // ---------------------------------------------------------------------------------------
    // Stack
    // ---------------------------------------------------------------------------------------

    #[inline]
    fn fence(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    #[inline]
    fn pop(&mut self, op: &Op<'_>) -> Sym {
        if self.stack.len() > self.fence() {
            // The length check above makes this pop succeed.
            self.stack.pop().unwrap_or(Sym::Unknown)
        } else {
            self.underflow(op);
            Sym::Unknown
        }
    }

    #[inline]
    fn top(&mut self, op: &Op<'_>) -> Sym {
        if self.stack.len() > self.fence() {
            self.stack.last().copied().unwrap_or(Sym::Unknown)
        } else {
            self.underflow(op);
            Sym::Unknown
        }
    }

    #[cold]
    fn underflow(&mut self, op: &Op<'_>) {
        let what = if !self.marks.is_empty() && self.stack.len() == self.fence() {
            "stack underflow: a MARK where a value was expected"
        } else {
            "stack underflow: the stack is empty"
        };
        self.structural(Rule::StackError, op, what);
    }

    /// The start of the items above the topmost MARK, which is removed.
    #[inline]
    fn pop_mark(&mut self, op: &Op<'_>) -> usize {
        match self.marks.pop() {
            Some(start) => start,
            None => {
                self.structural(Rule::StackError, op, "no MARK on the stack");
                self.stack.len()
            }
        }
    }

    /// A value used as data (an item, an argument, a state): a getattr that escapes this way
    /// could be called later by code the scan cannot see.
    #[inline]
    fn consume(&mut self, sym: Sym, op: &Op<'_>) {
        if let Sym::Global(gid) = sym {
            let g = &self.globals[gid as usize];
            if g.special == Special::Getattr && !g.flagged {
                let pair = self.global_pair(gid);
                let msg = format!(
                    "{}.{} used as a value: getattr is allowed only as a direct call with a constant name at byte {} ({})",
                    pair.0, pair.1, op.offset, op.opcode
                );
                self.finding(
                    Rule::UnsafeGetattr,
                    op.offset as u64,
                    Some(op.opcode),
                    Some(pair),
                    msg,
                );
            }
        }
    }

    fn consume_range(&mut self, start: usize, op: &Op<'_>) {
        for i in start..self.stack.len() {
            let s = self.stack[i];
            if matches!(s, Sym::Global(_)) {
                self.consume(s, op);
            }
        }
    }

    /// A constant string of the input as a `Sym` (offsets into `self.data`).
    #[inline]
    fn str_sym(&mut self, b: &'a [u8], ascii: bool) -> Sym {
        // a special attribute name anywhere in the pickle: a mapping a call builds from it
        // may become a BUILD state (`no_special_names`)
        if b.len() > 4 && b[0] == b'_' && is_special_name(b) {
            self.special_str_seen = true;
        }
        let start = b.as_ptr() as usize - self.data.as_ptr() as usize;
        match (u32::try_from(start), u32::try_from(b.len())) {
            (Ok(start), Ok(len)) if len <= STR_LEN => Sym::Str {
                start,
                len: if ascii { len | STR_ASCII } else { len },
            },
            _ => Sym::Text,
        }
    }

    /// The bytes of a constant string.
    pub(crate) fn str_bytes(&self, s: Sym) -> Option<&'a [u8]> {
        match s {
            Sym::Str { start, len } => {
                let start = start as usize;
                self.data.get(start..start + (len & STR_LEN) as usize)
            }
            _ => None,
        }
    }

    /// The text of a constant string as the loader decodes it, if the scan can read it exactly.
    pub(crate) fn text(&self, s: Sym) -> Option<&'a str> {
        let Sym::Str { len, .. } = s else {
            return None;
        };
        let ascii = len & STR_ASCII != 0;
        std::str::from_utf8(self.str_bytes(s)?)
            .ok()
            .filter(|t| !ascii || t.is_ascii())
    }

    #[inline]
    fn small_tuple(&mut self, start: usize) -> Sym {
        let items = &self.stack[start..];
        if items.iter().all(|s| matches!(s, Sym::Int(_))) && !items.is_empty() {
            let product = items.iter().try_fold(1u64, |acc, s| match s {
                Sym::Int(v) if *v >= 0 => acc.checked_mul(*v as u64),
                _ => None,
            });
            return Sym::Ints(product.unwrap_or(NO_PRODUCT));
        }
        if items.is_empty()
            || items.len() > SMALL_TUPLE
            || self.tuples.len() > u32::MAX as usize / 2
        {
            let depth = items.iter().map(|s| self.depth(*s)).max().unwrap_or(0);
            return if depth > 0 {
                Sym::Deep(depth)
            } else {
                Sym::Data
            };
        }
        if !items.iter().any(|s| !matches!(s, Sym::Data)) {
            return Sym::Data;
        }
        let at = self.tuples.len() as u32;
        self.tuples.extend_from_slice(items);
        Sym::Tuple(at, items.len() as u32)
    }

    /// How deeply call results nest in `sym` (a tuple's items are looked at one level down).
    fn depth(&self, sym: Sym) -> u32 {
        match sym {
            Sym::Result(cid) => self.calls[cid as usize].depth,
            Sym::Deep(d) => d,
            Sym::Tuple(..) => self
                .tuple_items(sym)
                .map(|items| {
                    items
                        .iter()
                        .map(|s| match s {
                            Sym::Result(c) => self.calls[*c as usize].depth,
                            Sym::Deep(d) => *d,
                            _ => 0,
                        })
                        .max()
                        .unwrap_or(0)
                })
                .unwrap_or(0),
            _ => 0,
        }
    }

    fn tuple_items(&self, sym: Sym) -> Option<&[Sym]> {
        match sym {
            Sym::Tuple(at, len) => self.tuples.get(at as usize..(at + len) as usize),
            _ => None,
        }
    }

    /// A container opcode filling `target` (an object a call built, not a plain list, dict or
    /// set) with `values`: a global among them is a finding, since the object's own
    /// `__setitem__`/`append` may call what it is given (pandas' `__setitem__` calls a callable
    /// key: red-team F11(c)).
    fn fill_values(&mut self, target: Sym, values: std::ops::Range<usize>, op: &Op<'_>) {
        if !matches!(target, Sym::Result(_)) {
            return;
        }
        let global = self.stack[values].iter().find_map(|s| match s {
            Sym::Global(g) => Some(*g),
            _ => None,
        });
        if let Some(gid) = global {
            let pair = self.global_pair(gid);
            let msg = format!(
                "{} gives the global {}.{} as a key or value to an object a call built (its __setitem__ or append may call it; only plain data may fill such objects) at byte {} ({})",
                op.opcode, pair.0, pair.1, op.offset, op.opcode
            );
            self.finding(
                Rule::UnsafeArguments,
                op.offset as u64,
                Some(op.opcode),
                Some(pair),
                msg,
            );
        }
    }

    /// Whether `sym` is a method bound to an instance (`getattr(<instance>, name)`): BUILD and
    /// the container opcodes reach its function through it (a method forwards attribute lookups
    /// to its function, so `__dict__`, `append`, `__setstate__` are the function's, shared by
    /// the whole process: session 13's red team).
    /// Out of line: the fast loop asks only for call results it fills.
    #[inline(never)]
    pub(crate) fn is_bound_method(&self, sym: Sym) -> bool {
        match sym {
            Sym::Result(cid) => self.calls[cid as usize]
                .callee
                .is_some_and(|g| self.globals[g as usize].special == Special::Getattr),
            _ => false,
        }
    }

    /// BUILD or a container opcode applied to `target`: mutating a global, or a bound method
    /// (its function), is a finding.
    #[inline]
    fn mutate(&mut self, target: Sym, op: &Op<'_>) {
        if self.is_bound_method(target) {
            let msg = format!(
                "{} applied to a method bound to an instance: it would write to the method's function, shared by the whole process at byte {} ({})",
                op.opcode, op.offset, op.opcode
            );
            self.finding(
                Rule::GlobalMutation,
                op.offset as u64,
                Some(op.opcode),
                None,
                msg,
            );
            return;
        }
        if let Sym::Global(gid) = target {
            let pair = self.global_pair(gid);
            let msg = format!(
                "{} applied to the global {}.{}: it would overwrite the state of a class, function or module at byte {} ({})",
                op.opcode, pair.0, pair.1, op.offset, op.opcode
            );
            self.finding(
                Rule::GlobalMutation,
                op.offset as u64,
                Some(op.opcode),
                Some(pair),
                msg,
            );
        }
    }

    // ---------------------------------------------------------------------------------------
    // Memo
    // ---------------------------------------------------------------------------------------

    /// The memo slot of `idx`, if stored. An index lives either in the dense vector or in
    /// `memo_far`, never both (see `memo_put`).
    #[inline]
    fn memo_slot(&self, idx: u64) -> Option<Sym> {
        match self.memo.get(idx as usize) {
            Some(slot) => *slot,
            None => self.memo_far.get(&idx).copied(),
        }
    }

    /// Store the top of the stack at `idx`, counting entries exactly as the loaders do
    /// (`_pickle.c`'s `memo_len`, which MEMOIZE uses as its index): a new index adds one, a
    /// replaced one does not. The dense vector grows only while no far entry exists, so an index
    /// is never stored in both places (which would count it twice and shift every later
    /// MEMOIZE away from the loader's).
    #[inline]
    fn memo_put(&mut self, idx: u64, op: &Op<'_>) {
        let value = self.top(op);
        if let Some(slot) = self.memo.get_mut(idx as usize) {
            if slot.replace(value).is_none() {
                self.memo_count += 1;
            }
            return;
        }
        let exists = self.memo_far.contains_key(&idx);
        if !exists && self.memo_count >= self.limits.max_memo() {
            let msg = format!(
                "memo limit of {} exceeded at byte {} ({})",
                self.limits.max_memo(),
                op.offset,
                op.opcode
            );
            self.finding(
                Rule::LimitExceeded,
                op.offset as u64,
                Some(op.opcode),
                None,
                msg,
            );
            self.stopped = true;
            return;
        }
        if self.memo_far.is_empty() && idx <= 2 * self.memo_count + 4096 {
            self.memo.resize(idx as usize + 1, None);
            self.memo[idx as usize] = Some(value);
        } else {
            self.memo_far.insert(idx, value);
        }
        self.memo_count += (!exists) as u64;
    }

    fn memo_get(&mut self, idx: u64, op: &Op<'_>) {
        self.report.memo.fetch(idx);
        match self.memo_slot(idx) {
            Some(v) => self.stack.push(v),
            None => {
                let msg = format!("memo index {idx} was never stored");
                self.structural(Rule::MemoMissing, op, &msg);
                self.stack.push(Sym::Unknown);
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // Opcodes
    // ---------------------------------------------------------------------------------------

    /// Apply one opcode. Returns where decoding continues when it is not right after `op`
    /// (joblib array data, nested object-array pickles).
    fn step(&mut self, op: &Op<'a>, end: usize) -> Option<usize> {
        use Opcode::*;
        match op.opcode {
            BININT | BININT1 | BININT2 => self.stack.push(Sym::Int(op.int())),
            INT | LONG => {
                // read as `_pickle.c` reads it (`I017` is 15, `I0x10` is 16, the text ends at a
                // NUL), so that a size given to an allocating call is the one the load sees
                use crate::text::{parse_int_line, parse_long_line, IntLine, ParsedInt};
                let small = |v: ParsedInt| match v {
                    ParsedInt::Small(v) => Some(v),
                    ParsedInt::Big(_) => None,
                };
                let parsed = match op.arg {
                    Arg::Line(line) if op.opcode == INT => parse_int_line(line).map(|v| match v {
                        IntLine::Bool(b) => Some(i64::from(b)),
                        IntLine::Int(v) => small(v),
                    }),
                    Arg::Line(line) => parse_long_line(line).map(small),
                    _ => Ok(None),
                };
                match parsed {
                    Ok(v) => self.stack.push(v.map_or(Sym::Data, Sym::Int)),
                    Err(why) => {
                        // `pickle.load` stops here, after running what came before
                        self.structural(Rule::Malformed, op, &why);
                        self.stack.push(Sym::Data);
                    }
                }
            }
            LONG1 | LONG4 => {
                // kept when it fits an i64: sizes given to allocating calls are checked
                let v = match op.arg {
                    Arg::Long(b) => long_le_i64(b),
                    _ => None,
                };
                self.stack.push(v.map_or(Sym::Data, Sym::Int));
            }
            SHORT_BINUNICODE | BINUNICODE | BINUNICODE8 => {
                if let Arg::Bytes(b) = op.arg {
                    let sym = self.str_sym(b, false);
                    self.stack.push(sym);
                }
            }
            BINSTRING | SHORT_BINSTRING => {
                if let Arg::Bytes(b) = op.arg {
                    let sym = self.str_sym(b, true);
                    self.stack.push(sym);
                    self.maybe_nested(b, op);
                }
            }
            UNICODE => {
                let sym = match op.arg {
                    // raw-unicode-escape: plain ASCII without backslashes is itself.
                    Arg::Line(l) if l.iter().all(|&b| b < 0x80 && b != b'\\') => {
                        self.str_sym(l, false)
                    }
                    _ => Sym::Text,
                };
                self.stack.push(sym);
            }
            STRING => self.stack.push(Sym::Text),
            BINBYTES | SHORT_BINBYTES | BINBYTES8 | BYTEARRAY8 => {
                if let Arg::Bytes(b) = op.arg {
                    self.maybe_nested(b, op);
                }
                self.stack.push(Sym::Data);
            }
            NONE | NEWTRUE | NEWFALSE | FLOAT | BINFLOAT | EMPTY_LIST | EMPTY_TUPLE | EMPTY_SET
            | NEXT_BUFFER => self.stack.push(Sym::Data),
            READONLY_BUFFER => {
                self.top(op);
            }
            EMPTY_DICT => {
                let d = self.new_dict();
                self.stack.push(d);
            }
            APPEND => {
                let v = self.pop(op);
                self.consume(v, op);
                let target = self.top(op);
                self.mutate(target, op);
                if matches!(v, Sym::Global(_)) {
                    self.stack.push(v);
                    let n = self.stack.len();
                    self.fill_values(target, n - 1..n, op);
                    self.stack.pop();
                }
            }
            APPENDS | ADDITEMS => {
                let start = self.pop_mark(op);
                self.consume_range(start, op);
                let values = start.min(self.stack.len())..self.stack.len();
                if start > self.fence() && start <= self.stack.len() {
                    let target = self.stack[start - 1];
                    self.fill_values(target, values, op);
                }
                self.stack.truncate(start);
                let target = self.top(op);
                self.mutate(target, op);
            }
            LIST | FROZENSET => {
                let start = self.pop_mark(op);
                self.consume_range(start, op);
                self.stack.truncate(start);
                self.stack.push(Sym::Data);
            }
            TUPLE => {
                let start = self.pop_mark(op);
                self.consume_range(start, op);
                let t = self.small_tuple(start);
                self.stack.truncate(start);
                self.stack.push(t);
            }
            TUPLE1 | TUPLE2 | TUPLE3 => {
                let n = match op.opcode {
                    TUPLE1 => 1,
                    TUPLE2 => 2,
                    _ => 3,
                };
                let fence = self.fence();
                if self.stack.len() < fence + n {
                    self.underflow(op);
                    while self.stack.len() < fence + n {
                        self.stack.push(Sym::Unknown);
                    }
                }
                let start = self.stack.len() - n;
                self.consume_range(start, op);
                let t = self.small_tuple(start);
                self.stack.truncate(start);
                self.stack.push(t);
            }
            DICT => {
                let start = self.pop_mark(op);
                self.consume_range(start, op);
                if (self.stack.len() - start) % 2 == 1 {
                    self.structural(Rule::StackError, op, "odd number of items for DICT");
                }
                let dict = self.record_pairs(None, start);
                self.stack.truncate(start);
                self.stack.push(dict);
            }
            SETITEM => {
                let fence = self.fence();
                if self.stack.len() < fence + 3 {
                    self.underflow(op);
                    self.stack.truncate(fence);
                    return None;
                }
                let start = self.stack.len() - 2;
                self.consume_range(start, op);
                let target = self.stack[start - 1];
                self.fill_values(target, start..self.stack.len(), op);
                self.record_pairs(Some(target), start);
                self.stack.truncate(start);
                self.mutate(target, op);
            }
            SETITEMS => {
                let start = self.pop_mark(op);
                self.consume_range(start, op);
                if (self.stack.len() - start) % 2 == 1 {
                    self.structural(Rule::StackError, op, "odd number of items for SETITEMS");
                }
                let target = if start > self.fence() {
                    self.stack[start - 1]
                } else {
                    self.underflow(op);
                    Sym::Unknown
                };
                if start <= self.stack.len() {
                    self.fill_values(target, start..self.stack.len(), op);
                }
                self.record_pairs(Some(target), start);
                self.stack.truncate(start);
                self.mutate(target, op);
            }
            POP => {
                if self.stack.len() > self.fence() {
                    self.stack.pop();
                } else if !self.marks.is_empty() && self.stack.len() == self.fence() {
                    self.marks.pop();
                } else {
                    self.underflow(op);
                }
            }
            DUP => {
                let top = self.top(op);
                self.stack.push(top);
            }
            MARK => {
                if self.marks.len() >= self.limits.max_depth() {
                    let msg = format!("depth limit of {} exceeded", self.limits.max_depth());
                    self.structural(Rule::LimitExceeded, op, &msg);
                    self.stopped = true;
                }
                self.marks.push(self.stack.len());
            }
            POP_MARK => {
                let start = self.pop_mark(op);
                self.stack.truncate(start);
            }
            GET | BINGET | LONG_BINGET => match self.index_arg(op, "GET") {
                Some(idx) => self.memo_get(idx, op),
                None => self.stack.push(Sym::Unknown),
            },
            PUT | BINPUT | LONG_BINPUT => {
                self.report.memo.puts = true;
                if let Some(idx) = self.index_arg(op, "PUT") {
                    self.memo_put(idx, op);
                }
            }
            MEMOIZE => {
                self.report.memo.memoizes = true;
                self.memo_put(self.memo_count, op);
            }
            PROTO => {
                let v = op.int();
                if self.seen_proto {
                    self.structural(Rule::BadProtocol, op, "PROTO repeated");
                } else if op.offset != self.pickle_start {
                    self.structural(
                        Rule::BadProtocol,
                        op,
                        "PROTO not at the start of the pickle",
                    );
                }
                if v > crate::HIGHEST_PROTOCOL as i64 {
                    let msg = format!("unsupported pickle protocol {v}");
                    self.structural(Rule::BadProtocol, op, &msg);
                }
                self.seen_proto = true;
                self.proto = v as u8;
            }
            FRAME => {
                let len = match op.arg {
                    Arg::U64(n) => n,
                    _ => 0,
                };
                if let Some(fe) = self.frame_end {
                    if op.offset < fe {
                        let msg = format!("FRAME inside a frame that ends at byte {fe}");
                        self.structural(Rule::FrameMismatch, op, &msg);
                    }
                }
                let left = (self.data.len() - end) as u64;
                if len > left {
                    let msg = format!(
                        "FRAME of {len} bytes runs past the end of the input ({left} bytes left)"
                    );
                    self.structural(Rule::FrameMismatch, op, &msg);
                    self.frame_end = None;
                } else {
                    self.frame_end = Some(end + len as usize);
                }
            }
            GLOBAL => {
                let sym = match op.arg {
                    Arg::TwoLines(m, n) => self.global_lines(op, m, n),
                    _ => Sym::Unknown,
                };
                self.stack.push(sym);
            }
            STACK_GLOBAL => {
                let name = self.pop(op);
                let module = self.pop(op);
                let sym = self.stack_global(op, module, name);
                self.stack.push(sym);
            }
            INST => {
                let cls = match op.arg {
                    Arg::TwoLines(m, n) => self.global_lines(op, m, n),
                    _ => Sym::Unknown,
                };
                let start = self.pop_mark(op);
                self.consume_range(start, op);
                let args = self.small_tuple(start);
                self.stack.truncate(start);
                let r = self.call(op, cls, args);
                self.stack.push(r);
            }
            OBJ => {
                let start = self.pop_mark(op);
                if self.stack.len() == start {
                    self.structural(Rule::StackError, op, "OBJ with no class above the MARK");
                    self.stack.push(Sym::Unknown);
                } else {
                    let cls = self.stack[start];
                    self.consume_range(start + 1, op);
                    let args = self.small_tuple(start + 1);
                    self.stack.truncate(start);
                    let r = self.call(op, cls, args);
                    self.stack.push(r);
                }
            }
            REDUCE => {
                let args = self.pop(op);
                let callee = self.pop(op);
                self.consume(args, op);
                let r = self.call(op, callee, args);
                self.stack.push(r);
            }
            NEWOBJ => {
                let args = self.pop(op);
                let cls = self.pop(op);
                self.consume(args, op);
                let r = self.call(op, cls, args);
                self.stack.push(r);
            }
            NEWOBJ_EX => {
                let kwargs = self.pop(op);
                let args = self.pop(op);
                let cls = self.pop(op);
                self.consume(args, op);
                self.consume(kwargs, op);
                self.no_special_names(op, kwargs, "NEWOBJ_EX's keyword arguments");
                let r = self.call(op, cls, args);
                self.stack.push(r);
            }
            BUILD => {
                let state = self.pop(op);
                self.consume(state, op);
                let target = self.top(op);
                return self.build(op, target, state, end);
            }
            EXT1 | EXT2 | EXT4 => {
                let code = op.int();
                let msg = format!(
                    "extension code {code} names a global through the copyreg registry, which a scan cannot see"
                );
                self.structural(Rule::ExtensionCode, op, &msg);
                self.stack.push(Sym::Unknown);
            }
            PERSID | BINPERSID => {
                if op.opcode == BINPERSID {
                    let pid = self.pop(op);
                    self.consume(pid, op);
                }
                self.structural(
                    Rule::PersistentId,
                    op,
                    "persistent id: the object comes from the loader's persistent_load, which a safe load does not have",
                );
                self.stack.push(Sym::Unknown);
            }
            STOP => {}
        }
        None
    }

    fn index_arg(&mut self, op: &Op<'_>, what: &str) -> Option<u64> {
        match op.arg {
            Arg::Int(v) if v >= 0 => Some(v as u64),
            // as `_pickle.c` reads it (base 10, blanks and underscores as `int()` takes them,
            // the text ends at a NUL)
            Arg::Line(l) => match crate::text::parse_memo_index(l, what) {
                Ok(v) => Some(v),
                Err(why) => {
                    self.structural(Rule::Malformed, op, &why);
                    None
                }
            },
            _ => None,
        }
    }

    /// A dict the scan does not follow (the verdict scan's) got the pairs of `stack[start..]`:
    /// remember whether a key is a special attribute name, so that a BUILD state or keyword
    /// arguments of an unfollowed dict are flagged from then on (see `no_special_names`).
    #[inline]
    pub(super) fn note_special_keys(&mut self, start: usize) {
        if self.special_key_seen {
            return;
        }
        let mut i = start;
        while i + 1 < self.stack.len() {
            if let Sym::Str { start: at, .. } = self.stack[i] {
                // two underscores first: most keys end the check at their first byte
                if self.data.get(at as usize) == Some(&b'_')
                    && self.str_bytes(self.stack[i]).is_some_and(is_special_name)
                {
                    self.special_key_seen = true;
                    return;
                }
            }
            i += 2;
        }
    }

    /// A new dict's symbol. Its entries are recorded (in the dict table) only for a joblib
    /// file's scan (`brinery.scan`, and `safe_loads` when the verdict scan is not clean); the
    /// verdict scan's dicts are all `Sym::Dict(NO_DICT_TABLE)`, without a table entry per dict
    /// or the key comparisons of every SETITEM(S) on an opcode-dense pickle (it only notes
    /// whether any key is a special attribute name, `note_special_keys`).
    #[inline]
    pub(super) fn new_dict(&mut self) -> Sym {
        if !self.options.joblib {
            Sym::Dict(NO_DICT_TABLE)
        } else if self.dicts.len() < (1 << 20) {
            self.dicts.push(Vec::new());
            Sym::Dict(self.dicts.len() as u32 - 1)
        } else {
            Sym::Data
        }
    }

    /// Record constant-string-keyed pairs of `stack[start..]` into the dict `target` (or a new
    /// one when `target` is `None`); returns the dict.
    fn record_pairs(&mut self, target: Option<Sym>, start: usize) -> Sym {
        let did = match target {
            Some(Sym::Dict(NO_DICT_TABLE)) => {
                self.note_special_keys(start);
                return Sym::Dict(NO_DICT_TABLE);
            }
            Some(Sym::Dict(d)) => d,
            Some(_) => return Sym::Data,
            None => match self.new_dict() {
                Sym::Dict(NO_DICT_TABLE) => {
                    self.note_special_keys(start);
                    return Sym::Dict(NO_DICT_TABLE);
                }
                Sym::Dict(d) => d,
                other => return other,
            },
        };
        let mut i = start;
        while i + 1 < self.stack.len() {
            // Only the keys a rule reads are kept: joblib's array wrapper state, and special
            // names (`__array_interface__`), which a BUILD state may not hold.
            if let (Some(k), v) = (self.str_bytes(self.stack[i]), self.stack[i + 1]) {
                if !matches!(k, b"dtype" | b"shape" | b"numpy_array_alignment_bytes")
                    && !is_special_name(k)
                {
                    i += 2;
                    continue;
                }
                let d = &mut self.dicts[did as usize];
                if d.len() < SMALL_DICT {
                    d.push((k, v));
                }
            }
            i += 2;
        }
        Sym::Dict(did)
    }

    fn stop(&mut self, op: &Op<'_>) {
        if !self.marks.is_empty() {
            self.structural(Rule::StackError, op, "STOP with a MARK still open");
        }
        if self.stack.len() != 1 {
            let msg = format!(
                "STOP with {} items on the stack (expected exactly 1)",
                self.stack.len()
            );
            self.structural(Rule::StackError, op, &msg);
        }
    }

    /// A pickle hidden in a bytes or string constant (passed to a call that may unpickle it):
    /// scanned with the same policy; what it would reference is reported when it is a
    /// well-formed pickle.
    fn maybe_nested(&mut self, b: &'a [u8], op: &Op<'_>) {
        // Protocol 2+ streams start with PROTO; protocol 0/1 ones with any opcode (`cos\n...`).
        let looks = b.len() >= 4
            && Opcode::from_byte(b[0]).is_some()
            && (b[0] != Opcode::PROTO.byte() || b[1] <= crate::HIGHEST_PROTOCOL)
            && b[b.len() - 1] == Opcode::STOP.byte();
        if !looks || self.options.nesting >= MAX_NESTING {
            return;
        }
        let mut inner = Report::default();
        let member = format!(
            "{}pickle in the constant at byte {}",
            self.member.map(|m| format!("{m}: ")).unwrap_or_default(),
            op.offset
        );
        let options = RunOptions {
            joblib: false,
            nesting: self.options.nesting + 1,
            record: self.options.record,
        };
        Machine::new(
            b,
            self.policy,
            self.limits,
            options,
            Some(&member),
            &mut inner,
        )
        .run_all();
        if inner.findings.iter().any(|f| f.rule.is_structural()) {
            return; // not a pickle after all: bytes that happen to look like one
        }
        self.report.opcodes += inner.opcodes;
        for mut f in inner.findings {
            if self.findings_here < MAX_FINDINGS {
                f.message = format!("nested pickle: {}", f.message);
                self.findings_here += 1;
                self.report.findings.push(f);
            }
        }
        let room = Report::MAX_RECORDED.saturating_sub(self.report.globals.len());
        self.report
            .globals
            .extend(inner.globals.into_iter().take(room));
        let room = Report::MAX_RECORDED.saturating_sub(self.report.calls.len());
        self.report.calls.extend(inner.calls.into_iter().take(room));
    }

    // ---------------------------------------------------------------------------------------
    // Globals
    // ---------------------------------------------------------------------------------------

    fn global_lines(&mut self, op: &Op<'_>, m: &[u8], n: &[u8]) -> Sym {
        match (std::str::from_utf8(m), std::str::from_utf8(n)) {
            (Ok(m), Ok(n)) => self.global(op, m, n),
            _ => {
                self.structural(Rule::Malformed, op, "global name is not valid UTF-8");
                Sym::Unknown
            }
        }
    }

    fn stack_global(&mut self, op: &Op<'_>, module: Sym, name: Sym) -> Sym {
        if let Some(sym) = self.stack_global_cached(op, module, name) {
            return sym;
        }
        let text = |s: Sym| self.text(s);
        match (text(module), text(name)) {
            (Some(m), Some(n)) => self.global(op, m, n),
            _ => {
                let describe = |s: Sym| match s {
                    Sym::Str { .. } | Sym::Text => "a string the scan cannot read exactly",
                    Sym::Result(_) => "the result of a call",
                    Sym::Global(_) => "a global",
                    Sym::Unknown => "an unknown value",
                    _ => "a value that is not a string",
                };
                let bad = if text(module).is_none() { module } else { name };
                let which = if text(module).is_none() {
                    "module"
                } else {
                    "name"
                };
                let msg = format!(
                    "STACK_GLOBAL {which} is {} rather than a constant string: the global it loads is computed at load time",
                    describe(bad)
                );
                self.structural(Rule::ComputedGlobal, op, &msg);
                Sym::Unknown
            }
        }
    }

    /// The global of these names that this scan already met (found by their [`names_key`]).
    ///
    /// [`names_key`]: super::policy::names_key
    #[inline]
    fn interned_global(&self, key: u64, module: &[u8], name: &[u8]) -> Option<u32> {
        let gid = *self.interned.get(&key)?;
        let g = &self.globals[gid as usize];
        (g.module().as_bytes() == module && g.name().as_bytes() == name).then_some(gid)
    }

    /// STACK_GLOBAL of two constant strings naming a global that this scan already met or
    /// that the policy has already let through (its verdict cached with the policy), found by
    /// the strings' bytes: no decoding and no bounds or deny-list checks again, since both
    /// tables hold only names that passed them. This is most globals of a small pickle, whose
    /// scan spent a fifth of its time on them. `None` sends the opcode the full way.
    #[inline]
    fn stack_global_cached(&mut self, op: &Op<'_>, module: Sym, name: Sym) -> Option<Sym> {
        // Python 2 names are mapped below protocol 3, and a string the loader decodes as
        // ASCII must be checked as such (`text`): both take the full way.
        let (Sym::Str { len: ml, .. }, Sym::Str { len: nl, .. }) = (module, name) else {
            return None;
        };
        if self.proto < 3 || (ml | nl) & STR_ASCII != 0 {
            return None;
        }
        let (mb, nb) = (self.str_bytes(module)?, self.str_bytes(name)?);
        let key = super::policy::names_key_bytes(mb, nb);
        if let Some(gid) = self.interned_global(key, mb, nb) {
            self.record_global_ref(op, gid);
            return Some(Sym::Global(gid));
        }
        let r = self.policy.resolved_cached(key, mb, nb)?;
        // `dotted` is `module:name`, the text of exactly these bytes
        let (m, n) = (r.dotted.get(..mb.len())?, r.dotted.get(mb.len() + 1..)?);
        self.push_global_ref(op, m, n);
        let sym = self.push_global_shared(r.dotted, mb.len(), Some(r.access), false, r.special);
        if let Sym::Global(gid) = sym {
            self.interned.insert(key, gid);
        }
        Some(sym)
    }

    /// Resolve a global as the loader would (Python 2 names mapped below protocol 3), check it
    /// against the deny-list and the policy, and record it.
    fn global(&mut self, op: &Op<'_>, module: &str, name: &str) -> Sym {
        if let Some(why) = super::name_out_of_bounds(module, name) {
            self.structural(Rule::Malformed, op, &why);
            return Sym::Unknown;
        }
        let key = super::policy::names_key(module, name);
        if let Some(gid) = self.interned_global(key, module.as_bytes(), name.as_bytes()) {
            self.record_global_ref(op, gid);
            return Sym::Global(gid);
        }
        let mapped = (self.proto < 3)
            .then(|| crate::encode::python3_name(module, name))
            .flatten();
        if mapped.is_none() {
            // A name the policy lets through as written: its verdict is cached with the policy.
            if let Some(r) = self.policy.resolve_keyed(key, module, name) {
                self.push_global_ref(op, module, name);
                let sym = self.push_global_shared(
                    r.dotted,
                    module.len(),
                    Some(r.access),
                    false,
                    r.special,
                );
                if let Sym::Global(gid) = sym {
                    self.interned.insert(key, gid);
                }
                return sym;
            }
        }
        let (module, name) = match mapped {
            Some((m, n)) => (m.to_owned(), n.unwrap_or(name).to_owned()),
            None => (module.to_owned(), name.to_owned()),
        };
        self.push_global_ref(op, &module, &name);
        let special = super::calls::special(&module, &name);
        let mut flagged = false;
        let mut access = None;
        if special == Special::Getattr {
            // checked where it is used
        } else if let Some(why) = super::deny::denied(&module, &name) {
            let msg = format!(
                "global {module}.{name} is never allowed: it {why} at byte {} ({})",
                op.offset, op.opcode
            );
            self.finding(
                Rule::DangerousGlobal,
                op.offset as u64,
                Some(op.opcode),
                Some((module.clone(), name.clone())),
                msg,
            );
            flagged = true;
        } else {
            access = self.policy.lookup(&module, &name);
            if access.is_none() {
                let msg = format!(
                    "global {module}.{name} is not allowed by the policy at byte {} ({})",
                    op.offset, op.opcode
                );
                self.finding(
                    Rule::DisallowedGlobal,
                    op.offset as u64,
                    Some(op.opcode),
                    Some((module.clone(), name.clone())),
                    msg,
                );
                flagged = true;
            } else if let Some(step) = self.unlisted_step(&module, &name) {
                // `module` + `A.b` is getattr(module.A, 'b'): every step must be allowed too.
                let msg = format!(
                    "global {module}.{name} is reached through {module}.{step}, which the policy does not allow at byte {} ({})",
                    op.offset, op.opcode
                );
                self.finding(
                    Rule::DisallowedGlobal,
                    op.offset as u64,
                    Some(op.opcode),
                    Some((module.clone(), name.clone())),
                    msg,
                );
                access = None;
                flagged = true;
            }
        }
        let raw = self.proto >= 3 || crate::encode::python3_name(&module, &name).is_none();
        let sym = self.push_global(module, name, access, flagged, special);
        if let (Sym::Global(gid), false, true) = (sym, flagged, raw) {
            self.interned.insert(key, gid);
        }
        sym
    }

    /// Whether a reference to a global of this name goes into the report (see
    /// [`RunOptions::record`]).
    fn keeps_ref(&self, name: &str) -> bool {
        self.options.record || name.ends_with("NumpyArrayWrapper")
    }

    fn push_global_ref(&mut self, op: &Op<'_>, module: &str, name: &str) {
        if self.keeps_ref(name) && self.report.globals.len() < Report::MAX_RECORDED {
            self.report.globals.push(GlobalRef {
                offset: op.offset as u64,
                opcode: op.opcode,
                module: module.to_owned(),
                name: name.to_owned(),
                member: self.member.map(str::to_owned),
            });
        }
    }

    fn record_global_ref(&mut self, op: &Op<'_>, gid: u32) {
        if self.keeps_ref(self.globals[gid as usize].name())
            && self.report.globals.len() < Report::MAX_RECORDED
        {
            let (module, name) = self.global_pair(gid);
            self.report.globals.push(GlobalRef {
                offset: op.offset as u64,
                opcode: op.opcode,
                module,
                name,
                member: self.member.map(str::to_owned),
            });
        }
    }

    /// The first step of a dotted name's attribute chain that the policy does not list.
    fn unlisted_step<'n>(&self, module: &str, name: &'n str) -> Option<&'n str> {
        name.match_indices('.')
            .map(|(i, _)| &name[..i])
            .find(|step| self.policy.lookup(module, step).is_none())
    }

    pub(crate) fn push_global(
        &mut self,
        module: String,
        name: String,
        access: Option<Access>,
        flagged: bool,
        special: Special,
    ) -> Sym {
        let split = module.len();
        let names: Arc<str> = format!("{module}:{name}").into();
        self.push_global_shared(names, split, access, flagged, special)
    }

    /// [`Self::push_global`] of `module:name` as one shared string, split after `split` bytes
    /// (the module's length: a module name may itself hold a colon).
    fn push_global_shared(
        &mut self,
        names: Arc<str>,
        split: usize,
        access: Option<Access>,
        flagged: bool,
        special: Special,
    ) -> Sym {
        self.globals.push(GlobalInfo {
            names,
            // both names are at most MAX_NAME_LEN bytes (checked before any global is pushed)
            split: split.min(u32::MAX as usize) as u32,
            access,
            flagged,
            special,
        });
        Sym::Global(self.globals.len() as u32 - 1)
    }

    // ---------------------------------------------------------------------------------------
    // Calls
    // ---------------------------------------------------------------------------------------

    fn record_call(&mut self, op: &Op<'_>, callee: Option<u32>) {
        if !self.options.record || self.report.calls.len() >= Report::MAX_RECORDED {
            return;
        }
        let callee_pair = callee.map(|g| self.global_pair(g));
        self.report.calls.push(CallSite {
            offset: op.offset as u64,
            opcode: op.opcode,
            callee: callee_pair,
            member: self.member.map(str::to_owned),
        });
    }

    /// A call of `callee` with `args` (REDUCE, NEWOBJ, NEWOBJ_EX, INST, OBJ): returns its result.
    fn call(&mut self, op: &Op<'_>, callee: Sym, args: Sym) -> Sym {
        let Sym::Global(gid) = callee else {
            self.record_call(op, None);
            let what = match callee {
                Sym::Result(_) => "the result of another call",
                Sym::Unknown => "a value the scan could not resolve",
                Sym::Str { .. } => "a string",
                _ => "a value that is not a global",
            };
            let msg = format!(
                "{} calls {what}: only globals the policy allows may be called at byte {} ({})",
                op.opcode, op.offset, op.opcode
            );
            self.finding(
                Rule::CallOfComputed,
                op.offset as u64,
                Some(op.opcode),
                None,
                msg,
            );
            return Sym::Unknown;
        };
        self.record_call(op, Some(gid));
        let g = &self.globals[gid as usize];
        let (special, flagged, access) = (g.special, g.flagged, g.access);
        if special == Special::Getattr {
            return self.getattr(op, gid, args);
        }
        if !flagged && access != Some(Access::Call) {
            self.ref_only_called(op, gid, "is called");
        }
        if special == Special::Helper && self.global_names(gid) == ("functools", "partial") {
            if let Some(&func) = self.tuple_items(args).and_then(<[Sym]>::first) {
                self.partial_of_reference(op, func);
            }
        }
        if let Some(problem) = super::calls::check_arguments(self, gid, special, args) {
            let pair = self.global_pair(gid);
            let msg = format!(
                "{}.{} {problem} at byte {} ({})",
                pair.0, pair.1, op.offset, op.opcode
            );
            self.finding(
                Rule::UnsafeArguments,
                op.offset as u64,
                Some(op.opcode),
                Some(pair),
                msg,
            );
        }
        let first = self
            .tuple_items(args)
            .and_then(|items| items.first().copied());
        let first_str = first.and_then(|s| self.str_bytes(s));
        let class = match first {
            Some(Sym::Global(c)) if special == Special::Helper && self.is_reconstructor(gid) => {
                Some(c)
            }
            _ => Some(gid),
        };
        self.call_result(op, Some(gid), args, first_str, class)
    }

    /// Whether global `gid` is `copyreg._reconstructor` (whose result is an instance of its
    /// first argument).
    fn is_reconstructor(&self, gid: u32) -> bool {
        let g = &self.globals[gid as usize];
        (g.module(), g.name()) == ("copyreg", "_reconstructor")
    }

    /// The result of a call of `callee` with `args` that passed its checks: one deeper than
    /// the deepest call result among the arguments, within the nesting limit.
    fn call_result(
        &mut self,
        op: &Op<'_>,
        callee: Option<u32>,
        args: Sym,
        first_str: Option<&'a [u8]>,
        class: Option<u32>,
    ) -> Sym {
        let depth = self.depth(args).saturating_add(1);
        if depth as usize > MAX_CALL_DEPTH.min(self.limits.max_depth()) {
            let msg = format!(
                "call results nested {depth} deep exceed the nesting limit of {} (freeing such an object can crash the interpreter) at byte {} ({})",
                MAX_CALL_DEPTH.min(self.limits.max_depth()),
                op.offset,
                op.opcode
            );
            self.finding(
                Rule::LimitExceeded,
                op.offset as u64,
                Some(op.opcode),
                None,
                msg,
            );
            self.stopped = true;
        }
        self.calls.push(CallInfo {
            callee,
            depth,
            first_str,
            class,
        });
        Sym::Result(self.calls.len() as u32 - 1)
    }

    /// `getattr(obj, name)`: allowed only with a constant name, on an allowed global (the result
    /// is the global `module.qualname.name`) or on an instance of a class the policy lets call
    /// (the result is a bound method `module.Class.name`: an object that keeps a method of
    /// itself, as scikit-learn's `HistGradientBoosting*` keeps `_raw_predict`). Either name
    /// must itself be listed by the policy and not denied. A bound method is a value: like any
    /// call result it may not be called by the load, and the load-time guard checks that the
    /// object's type is that class and that the attribute is a plain function of the class.
    fn getattr(&mut self, op: &Op<'_>, gid: u32, args: Sym) -> Sym {
        let items = self.tuple_items(args).map(<[Sym]>::to_vec);
        let attr_name = |m: &Self, attr: Sym| {
            m.text(attr)
                .filter(|a| a.len() <= super::MAX_NAME_LEN && !a.contains('.'))
        };
        let mut bound = false;
        let target = match items.as_deref() {
            Some([Sym::Global(obj), attr @ Sym::Str { .. }]) => {
                let attr = attr_name(self, *attr);
                let obj = &self.globals[*obj as usize];
                match attr {
                    Some(attr)
                        if !obj.flagged
                            && obj.access.is_some()
                            && obj.special != Special::Getattr =>
                    {
                        Some((obj.module().to_owned(), format!("{}.{attr}", obj.name())))
                    }
                    _ => None,
                }
            }
            Some([Sym::Result(cid), attr @ Sym::Str { .. }]) => {
                bound = true;
                let attr = attr_name(self, *attr).filter(|a| !a.starts_with("__"));
                let class = self.calls[*cid as usize]
                    .class
                    .map(|c| &self.globals[c as usize]);
                match (attr, class) {
                    (Some(attr), Some(class))
                        if !class.flagged
                            && class.access == Some(Access::Call)
                            && class.special == Special::None =>
                    {
                        Some((
                            class.module().to_owned(),
                            format!("{}.{attr}", class.name()),
                        ))
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        let Some((module, name)) = target else {
            let pair = self.global_pair(gid);
            let msg = format!(
                "getattr is called on something other than an allowed global or an instance of an allowed class, and a constant name at byte {} ({})",
                op.offset, op.opcode
            );
            self.finding(
                Rule::UnsafeGetattr,
                op.offset as u64,
                Some(op.opcode),
                Some(pair),
                msg,
            );
            return Sym::Unknown;
        };
        if let Some(why) = super::name_out_of_bounds(&module, &name) {
            self.structural(Rule::Malformed, op, &why);
            return Sym::Unknown;
        }
        self.push_global_ref(op, &module, &name);
        if let Some(why) = super::deny::denied(&module, &name) {
            let msg = format!(
                "getattr reaches {module}.{name}, which is never allowed: it {why} at byte {} ({})",
                op.offset, op.opcode
            );
            self.finding(
                Rule::DangerousGlobal,
                op.offset as u64,
                Some(op.opcode),
                Some((module.clone(), name.clone())),
                msg,
            );
            return self.push_global(module, name, None, true, Special::None);
        }
        // The attribute must itself be listed (an enum member as `ref`, a classmethod as `call`):
        // any other attribute of an allowed class (`DataFrame.query`, `to_clipboard`, ...) could
        // be handed to library code that calls it.
        let Some(access) = self.policy.lookup(&module, &name) else {
            let msg = format!(
                "getattr reaches {module}.{name}, which the policy does not allow at byte {} ({})",
                op.offset, op.opcode
            );
            self.finding(
                Rule::DisallowedGlobal,
                op.offset as u64,
                Some(op.opcode),
                Some((module.clone(), name.clone())),
                msg,
            );
            return self.push_global(module, name, None, true, Special::None);
        };
        if bound {
            // a bound method of the instance: a value holding it (one level deeper)
            return self.call_result(op, Some(gid), args, None, None);
        }
        let access = Some(access);
        let special = super::calls::special(&module, &name);
        self.push_global(module, name, access, false, special)
    }

    pub(crate) fn limits(&self) -> &Limits {
        self.limits
    }

    /// A finding when `state` (a dict, or a `(dict, slots dict)` pair) or keyword arguments
    /// name a special attribute (`__array_interface__`): stored on an instance, it is what
    /// numpy and the loader look up there (numpy takes `__array_interface__` as the address of
    /// the data: any memory of the process). The load-time guard checks every such dict; the
    /// scan sees the keys of the small dicts it follows.
    fn no_special_names(&mut self, op: &Op<'_>, state: Sym, what: &str) {
        // `Some(None)`: a dict the scan does not follow, in a pickle where such a dict got a
        // special key (the verdict scan's; `safe_loads` then takes the full scan, which follows
        // each dict, before it decides)
        let named = |m: &Self, s: Sym| match s {
            Sym::Dict(NO_DICT_TABLE) if m.special_key_seen => Some(None),
            // a mapping a call built (`OrderedDict([...])`, a `UserDict` an allowed
            // `__setstate__` takes), in a pickle that spells a special name somewhere
            Sym::Result(_) | Sym::Unknown if m.special_str_seen => Some(None),
            Sym::Dict(d) if d != NO_DICT_TABLE => m
                .dicts
                .get(d as usize)?
                .iter()
                .find(|(k, _)| is_special_name(k))
                .map(|(k, _)| Some(*k)),
            _ => None,
        };
        let mut found = named(self, state);
        if found.is_none() {
            if let Some(&[a, b]) = self.tuple_items(state) {
                found = named(self, a).or_else(|| named(self, b));
            }
        }
        let Some(name) = found else { return };
        let name = match name {
            Some(n) => format!(
                "special attribute name {:?} in {what}",
                String::from_utf8_lossy(n)
            ),
            None => {
                format!("{what} may hold a special attribute name (this pickle spells one)")
            }
        };
        let msg = format!(
            "{name}: stored on an instance, it is what numpy and the loader look up there \
             (__array_interface__ points numpy at any memory) at byte {} ({})",
            op.offset, op.opcode
        );
        self.finding(
            Rule::UnsafeArguments,
            op.offset as u64,
            Some(op.opcode),
            None,
            msg,
        );
    }

    pub(crate) fn items_of(&self, sym: Sym) -> Option<&[Sym]> {
        self.tuple_items(sym)
    }

    pub(crate) fn global_names(&self, gid: u32) -> (&str, &str) {
        let g = &self.globals[gid as usize];
        (g.module(), g.name())
    }

    pub(crate) fn global_info(&self, gid: u32) -> (Option<Access>, bool) {
        let g = &self.globals[gid as usize];
        (g.access, g.flagged)
    }

    pub(crate) fn global_special(&self, gid: u32) -> Special {
        self.globals[gid as usize].special
    }

    /// BUILD: state applied to `target`.
    fn build(&mut self, op: &Op<'a>, target: Sym, state: Sym, end: usize) -> Option<usize> {
        self.no_special_names(op, state, "the BUILD state");
        match target {
            Sym::Global(_) => {
                self.mutate(target, op);
                None
            }
            Sym::Result(cid) => {
                self.mutate(target, op);
                let callee = self.calls[cid as usize].callee;
                self.record_call(op, callee);
                if let Some(g) = callee {
                    let (module, name) = self.global_names(g);
                    if super::calls::returns_shared(module, name) {
                        let pair = self.global_pair(g);
                        let msg = format!(
                            "BUILD applied to what {}.{} returned, a cached or shared object: it would change it for the whole process at byte {} ({})",
                            pair.0, pair.1, op.offset, op.opcode
                        );
                        self.finding(
                            Rule::GlobalMutation,
                            op.offset as u64,
                            Some(op.opcode),
                            Some(pair),
                            msg,
                        );
                    }
                }
                if callee.is_some_and(|g| self.global_names(g) == ("collections", "defaultdict")) {
                    // pickle writes a defaultdict's factory as its argument and no state: a
                    // slot state would set `default_factory` past the argument rule
                    let msg = format!(
                        "BUILD on a collections.defaultdict, whose state could set its default_factory at byte {} ({})",
                        op.offset, op.opcode
                    );
                    self.finding(
                        Rule::UnsafeArguments,
                        op.offset as u64,
                        Some(op.opcode),
                        Some(("collections".into(), "defaultdict".into())),
                        msg,
                    );
                }
                if self.partial_callee(cid) {
                    if let Some(&func) = self.tuple_items(state).and_then(<[Sym]>::first) {
                        self.partial_of_reference(op, func);
                    }
                    if let Some(problem) = self.partial_state(state) {
                        let msg = format!(
                            "BUILD state of a functools.partial whose function is {problem} at byte {} ({})",
                            op.offset, op.opcode
                        );
                        self.finding(
                            Rule::UnsafeArguments,
                            op.offset as u64,
                            Some(op.opcode),
                            Some(("functools".into(), "partial".into())),
                            msg,
                        );
                    }
                }
                if let Some(problem) = self.numpy_dtype_state(cid, state) {
                    let msg = format!(
                        "BUILD state of a numpy.dtype {problem}: numpy's own pickler never writes it, and numpy trusts it (a crash) at byte {} ({})",
                        op.offset, op.opcode
                    );
                    self.finding(
                        Rule::UnsafeArguments,
                        op.offset as u64,
                        Some(op.opcode),
                        Some(("numpy".into(), "dtype".into())),
                        msg,
                    );
                }
                let wrapper = callee
                    .is_some_and(|g| self.globals[g as usize].special == Special::JoblibWrapper);
                if wrapper && self.options.joblib {
                    return super::calls::joblib_array(self, op, state, end);
                }
                None
            }
            _ => None,
        }
    }

    /// Whether call `cid` is `functools.partial(...)`.
    fn partial_callee(&self, cid: u32) -> bool {
        self.calls[cid as usize]
            .callee
            .is_some_and(|g| self.global_names(g) == ("functools", "partial"))
    }

    /// A `functools.partial` given (by its call or its BUILD state) a function the policy lists
    /// only as a value: the partial would call it. `BRS002`, naming the function, which a user
    /// who trusts the file may allow (`allow=` entries may be called).
    fn partial_of_reference(&mut self, op: &Op<'_>, func: Sym) {
        let Sym::Global(g) = func else { return };
        let (access, flagged) = self.global_info(g);
        if flagged || access != Some(Access::Ref) {
            return;
        }
        self.ref_only_called(op, g, "is given to functools.partial, which would call it,");
    }

    /// `BRS002` for global `gid`, which the policy lists only as a reference: `how` says how it
    /// would be called ("is called", ...).
    fn ref_only_called(&mut self, op: &Op<'_>, gid: u32, how: &str) {
        let pair = self.global_pair(gid);
        let msg = format!(
            "global {}.{} {how} but the policy allows it only as a reference at byte {} ({})",
            pair.0, pair.1, op.offset, op.opcode
        );
        self.finding(
            Rule::RefOnlyCalled,
            op.offset as u64,
            Some(op.opcode),
            Some(pair),
            msg,
        );
    }

    /// What is wrong with the BUILD state of a `functools.partial(...)` result, if anything:
    /// `partial.__setstate__` takes `(function, args, keywords, dict)` and replaces the function
    /// the call was checked with, so the state's function must pass the same rule
    /// ([`ArgRule::AllowedFunction`](super::calls::ArgRule)). A state the scan cannot see into
    /// (not a small tuple) is refused.
    fn partial_state(&self, state: Sym) -> Option<&'static str> {
        match self.tuple_items(state).and_then(|items| items.first()) {
            Some(&func) => super::calls::partial_function_problem(self, func),
            None => Some("not in a tuple the scan can read"),
        }
    }

    /// What is wrong with the BUILD state of a `numpy.dtype(...)` result, if anything the scan
    /// can see: numpy writes `(3, order, subarray, names, fields, elsize, alignment, flags)`
    /// (nine items with metadata, which the scan does not record), and an object dtype's flags
    /// are always 63 (red-team F10/F10c).
    fn numpy_dtype_state(&self, cid: u32, state: Sym) -> Option<&'static str> {
        let c = &self.calls[cid as usize];
        let g = c.callee?;
        if self.globals[g as usize].special != Special::NumpyDtype {
            return None;
        }
        match state {
            Sym::Data | Sym::Deep(_) => None,
            Sym::Tuple(..) => {
                let items = self.tuple_items(state)?;
                if items.len() != 8 || !matches!(items[0], Sym::Int(3)) {
                    return Some("is not an 8-item version-3 tuple");
                }
                let object = c.first_str.is_some_and(|code| code.first() == Some(&b'O'));
                match items[7] {
                    Sym::Int(63) => None,
                    Sym::Int(_) if object => Some("clears the flags of an object dtype"),
                    Sym::Int(_) => None,
                    _ => Some("has flags that are not an integer"),
                }
            }
            _ => Some("is not a tuple"),
        }
    }

    pub(crate) fn dict_get(&self, dict: Sym, key: &str) -> Option<Sym> {
        let Sym::Dict(did) = dict else { return None };
        self.dicts
            .get(did as usize)?
            .iter()
            .rev()
            .find(|(k, _)| *k == key.as_bytes())
            .map(|(_, v)| *v)
    }

    /// The module and name of the global `sym` is the result of a call of, if it is one.
    pub(crate) fn call_callee(&self, sym: Sym) -> Option<(&str, &str)> {
        let Sym::Result(cid) = sym else { return None };
        let g = self.calls.get(cid as usize)?.callee?;
        Some(self.global_names(g))
    }

    pub(crate) fn call_first_str(&self, sym: Sym, special: Special) -> Option<&'a [u8]> {
        let Sym::Result(cid) = sym else { return None };
        let c = &self.calls[cid as usize];
        let g = c.callee?;
        (self.globals[g as usize].special == special).then_some(c.first_str?)
    }

    pub(crate) fn data(&self) -> &'a [u8] {
        self.data
    }

    /// Scan a pickle embedded at `start` (joblib object arrays) with fresh state, then restore
    /// this pickle's state; returns the offset after its STOP.
    pub(crate) fn embedded(&mut self, start: usize) -> Option<usize> {
        let saved = (
            std::mem::take(&mut self.stack),
            std::mem::take(&mut self.marks),
            std::mem::take(&mut self.memo),
            std::mem::take(&mut self.memo_far),
            std::mem::take(&mut self.tuples),
            std::mem::take(&mut self.dicts),
            std::mem::take(&mut self.globals),
            std::mem::take(&mut self.calls),
            self.memo_count,
            std::mem::take(&mut self.interned),
        );
        let (proto, seen, pstart) = (self.proto, self.seen_proto, self.pickle_start);
        let end = match self.run_one(start) {
            End::Stop(end) => Some(end),
            End::Abort => None,
        };
        (
            self.stack,
            self.marks,
            self.memo,
            self.memo_far,
            self.tuples,
            self.dicts,
            self.globals,
            self.calls,
            self.memo_count,
            self.interned,
        ) = saved;
        self.proto = proto;
        self.seen_proto = seen;
        self.pickle_start = pstart;
        self.frame_end = None;
        end
    }

    pub(crate) fn report_structural(&mut self, rule: Rule, op: &Op<'_>, what: &str) {
        self.structural(rule, op, what);
    }
}
