//! The scan's fast loop: the opcodes that make up nearly every pickle's bulk (scalars, strings,
//! bytes that cannot hold a nested pickle, empty containers, marks, the memo, tuples, APPEND(S)/SETITEM(S) of plain values) run
//! straight from the input bytes, without building an [`Op`](crate::decode::Op).
//!
//! It is an optimisation of [`Machine::step`] and nothing else: every opcode it runs has exactly
//! the effect `step` would have, and it hands over (returns without consuming the opcode)
//! whenever anything could need a finding: an opcode it does not know, an argument not complete
//! in the input or crossing the end of the current frame, a missing mark, a stack underflow, a
//! memo slot never stored or a memo limit, a global among the values an opcode consumes or
//! modifies. `run_one` then decodes the opcode and runs it through `step`.

use super::{Machine, Sym, NO_DICT_TABLE};
use crate::opcode::Opcode;

const MARK: u8 = Opcode::MARK.byte();
const NONE: u8 = Opcode::NONE.byte();
const NEWTRUE: u8 = Opcode::NEWTRUE.byte();
const NEWFALSE: u8 = Opcode::NEWFALSE.byte();
const BININT: u8 = Opcode::BININT.byte();
const BININT1: u8 = Opcode::BININT1.byte();
const BININT2: u8 = Opcode::BININT2.byte();
const BINFLOAT: u8 = Opcode::BINFLOAT.byte();
const SHORT_BINUNICODE: u8 = Opcode::SHORT_BINUNICODE.byte();
const BINUNICODE: u8 = Opcode::BINUNICODE.byte();
const SHORT_BINBYTES: u8 = Opcode::SHORT_BINBYTES.byte();
const BINBYTES: u8 = Opcode::BINBYTES.byte();
const BINBYTES8: u8 = Opcode::BINBYTES8.byte();
const BYTEARRAY8: u8 = Opcode::BYTEARRAY8.byte();
const STOP: u8 = Opcode::STOP.byte();
const EMPTY_TUPLE: u8 = Opcode::EMPTY_TUPLE.byte();
const EMPTY_LIST: u8 = Opcode::EMPTY_LIST.byte();
const EMPTY_DICT: u8 = Opcode::EMPTY_DICT.byte();
const TUPLE: u8 = Opcode::TUPLE.byte();
const TUPLE1: u8 = Opcode::TUPLE1.byte();
const TUPLE2: u8 = Opcode::TUPLE2.byte();
const TUPLE3: u8 = Opcode::TUPLE3.byte();
const APPEND: u8 = Opcode::APPEND.byte();
const APPENDS: u8 = Opcode::APPENDS.byte();
const SETITEM: u8 = Opcode::SETITEM.byte();
const SETITEMS: u8 = Opcode::SETITEMS.byte();
const MEMOIZE: u8 = Opcode::MEMOIZE.byte();
const BINPUT: u8 = Opcode::BINPUT.byte();
const LONG_BINPUT: u8 = Opcode::LONG_BINPUT.byte();
const BINGET: u8 = Opcode::BINGET.byte();
const LONG_BINGET: u8 = Opcode::LONG_BINGET.byte();

#[inline(always)]
fn u32_at(data: &[u8], at: usize) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&data[at..at + 4]);
    u32::from_le_bytes(raw)
}

#[inline(always)]
fn u64_at(data: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&data[at..at + 8]);
    u64::from_le_bytes(raw)
}

impl Machine<'_, '_> {
    /// Whether any of `stack[start..]` is a global (whose use as a value `consume` checks).
    #[inline(always)]
    fn any_global(&self, start: usize) -> bool {
        self.stack[start..]
            .iter()
            .any(|s| matches!(s, Sym::Global(_)))
    }

    /// Store the top of the stack at memo index `idx` as `memo_put` does, if that needs no
    /// finding; `false` hands the opcode over.
    #[inline(always)]
    fn memo_put_fast(&mut self, idx: u64) -> bool {
        if self.stack.len() <= self.fence() {
            return false;
        }
        let value = self.stack[self.stack.len() - 1];
        self.memo_store_fast(idx, value)
    }

    /// Store `value` (the top of the stack) at memo index `idx`, as [`Self::memo_put_fast`].
    #[inline(always)]
    fn memo_store_fast(&mut self, idx: u64, value: Sym) -> bool {
        if let Some(slot) = self.memo.get_mut(idx as usize) {
            if slot.replace(value).is_none() {
                self.memo_count += 1;
            }
            return true;
        }
        if !self.memo_far.is_empty()
            || idx > 2 * self.memo_count + 4096
            || self.memo_count >= self.limits.max_memo()
        {
            return false;
        }
        if idx as usize == self.memo.len() {
            // the common case: the next index (MEMOIZE, or PUTs in order)
            self.memo.push(Some(value));
        } else {
            self.memo.resize(idx as usize + 1, None);
            self.memo[idx as usize] = Some(value);
        }
        self.memo_count += 1;
        true
    }

    /// Run opcodes from `*pos` until one needs `step` (or the input or the current frame
    /// ends). `*pos` is always the offset of the next opcode to run.
    pub(super) fn run_fast(&mut self, pos: &mut usize) {
        let data = self.data;
        // Opcodes must end within the current frame (`run_one` checks the others).
        let end = match self.frame_end {
            Some(fe) => fe.min(data.len()),
            None => data.len(),
        };
        let mut ops = 0u64;
        loop {
            let p = *pos;
            if p >= end {
                break;
            }
            let byte = data[p];
            let a = p + 1;
            macro_rules! need {
                ($n:expr) => {
                    if a + $n > end {
                        break;
                    }
                };
            }
            // Push `sym` and go on at `next`; a MEMOIZE right after it is run here, from the
            // value at hand (reading it back from the stack right after writing it stalls).
            macro_rules! push {
                ($sym:expr, $next:expr) => {{
                    let sym = $sym;
                    let next = $next;
                    self.stack.push(sym);
                    *pos = next;
                    if next < end
                        && data[next] == MEMOIZE
                        && self.memo_store_fast(self.memo_count, sym)
                    {
                        self.report.memo.memoizes = true;
                        *pos = next + 1;
                        ops += 1;
                    }
                }};
            }
            match byte {
                BININT1 => {
                    need!(1);
                    push!(Sym::Int(data[a] as i64), a + 1);
                }
                BININT2 => {
                    need!(2);
                    push!(
                        Sym::Int(u16::from_le_bytes([data[a], data[a + 1]]) as i64),
                        a + 2
                    );
                }
                BININT => {
                    need!(4);
                    push!(Sym::Int(u32_at(data, a) as i32 as i64), a + 4);
                }
                BINFLOAT => {
                    need!(8);
                    push!(Sym::Data, a + 8);
                }
                NONE | NEWTRUE | NEWFALSE | EMPTY_LIST | EMPTY_TUPLE => push!(Sym::Data, a),
                EMPTY_DICT => {
                    let sym = self.new_dict();
                    push!(sym, a);
                }
                SHORT_BINUNICODE | BINUNICODE => {
                    let (n, start) = if byte == SHORT_BINUNICODE {
                        need!(1);
                        (data[a] as usize, a + 1)
                    } else {
                        need!(4);
                        (u32_at(data, a) as usize, a + 4)
                    };
                    if n > end - start {
                        break;
                    }
                    push!(self.str_sym(&data[start..start + n], false), start + n);
                }
                SHORT_BINBYTES | BINBYTES | BINBYTES8 | BYTEARRAY8 => {
                    let (n, start) = match byte {
                        SHORT_BINBYTES => {
                            need!(1);
                            (data[a] as u64, a + 1)
                        }
                        BINBYTES => {
                            need!(4);
                            (u32_at(data, a) as u64, a + 4)
                        }
                        _ => {
                            need!(8);
                            (u64_at(data, a), a + 8)
                        }
                    };
                    if n > (end - start) as u64 {
                        break;
                    }
                    let n = n as usize;
                    // Bytes that end like a pickle may hold one: `step` scans them
                    // (`maybe_nested`, which looks closer).
                    if n >= 4 && data[start + n - 1] == STOP {
                        break;
                    }
                    push!(Sym::Data, start + n);
                }
                MARK => {
                    if self.marks.len() >= self.limits.max_depth() {
                        break;
                    }
                    self.marks.push(self.stack.len());
                    *pos = a;
                }
                MEMOIZE => {
                    if !self.memo_put_fast(self.memo_count) {
                        break;
                    }
                    self.report.memo.memoizes = true;
                    *pos = a;
                }
                BINPUT | LONG_BINPUT => {
                    let (idx, next) = if byte == BINPUT {
                        need!(1);
                        (data[a] as u64, a + 1)
                    } else {
                        need!(4);
                        (u32_at(data, a) as u64, a + 4)
                    };
                    if !self.memo_put_fast(idx) {
                        break;
                    }
                    self.report.memo.puts = true;
                    *pos = next;
                }
                BINGET | LONG_BINGET => {
                    let (idx, next) = if byte == BINGET {
                        need!(1);
                        (data[a] as u64, a + 1)
                    } else {
                        need!(4);
                        (u32_at(data, a) as u64, a + 4)
                    };
                    let Some(v) = self.memo_slot(idx) else {
                        break;
                    };
                    self.report.memo.fetch(idx);
                    push!(v, next);
                }
                TUPLE1 | TUPLE2 | TUPLE3 | TUPLE => {
                    let start = if byte == TUPLE {
                        match self.marks.last() {
                            Some(&m) if m <= self.stack.len() => m,
                            _ => break,
                        }
                    } else {
                        let n = (byte - TUPLE1 + 1) as usize;
                        if self.stack.len() < self.fence() + n {
                            break;
                        }
                        self.stack.len() - n
                    };
                    if self.any_global(start) {
                        break;
                    }
                    if byte == TUPLE {
                        self.marks.pop();
                    }
                    let t = self.small_tuple(start);
                    self.stack.truncate(start);
                    push!(t, a);
                }
                APPEND | SETITEM => {
                    let n = if byte == APPEND { 1 } else { 2 };
                    let len = self.stack.len();
                    if len < self.fence() + n + 1 {
                        break;
                    }
                    let start = len - n;
                    let target = self.stack[start - 1];
                    if matches!(target, Sym::Global(_))
                        || (matches!(target, Sym::Result(_)) && self.is_bound_method(target))
                        || self.any_global(start)
                    {
                        break;
                    }
                    if byte == SETITEM {
                        if matches!(target, Sym::Dict(NO_DICT_TABLE)) {
                            self.note_special_keys(start);
                        } else {
                            self.record_pairs(Some(target), start);
                        }
                    }
                    self.stack.truncate(start);
                    *pos = a;
                }
                APPENDS | SETITEMS => {
                    let Some(&start) = self.marks.last() else {
                        break;
                    };
                    let len = self.stack.len();
                    // the target sits below the mark, above the next fence
                    let fence = match self.marks.len() {
                        n if n >= 2 => self.marks[n - 2],
                        _ => 0,
                    };
                    if start > len || start <= fence || (byte == SETITEMS && (len - start) % 2 == 1)
                    {
                        break;
                    }
                    let target = self.stack[start - 1];
                    if matches!(target, Sym::Global(_))
                        || (matches!(target, Sym::Result(_)) && self.is_bound_method(target))
                        || self.any_global(start)
                    {
                        break;
                    }
                    self.marks.pop();
                    if byte == SETITEMS {
                        if matches!(target, Sym::Dict(NO_DICT_TABLE)) {
                            self.note_special_keys(start);
                        } else {
                            self.record_pairs(Some(target), start);
                        }
                    }
                    self.stack.truncate(start);
                    *pos = a;
                }
                _ => break,
            }
            ops += 1;
        }
        self.report.opcodes += ops;
    }
}
