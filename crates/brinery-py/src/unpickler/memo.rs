//! The unpickler's memo: index → object.
//!
//! Dense indices live in a vector, far-away ones in an ordered map, so that a stream claiming
//! `LONG_BINPUT 4000000000` costs one entry, not four billion slots (C would try to allocate them).
//! `len` counts stored entries: `MEMOIZE` stores at that index, as in `_pickle.c`.

use std::collections::BTreeMap;

use pyo3::prelude::*;

#[derive(Default)]
pub(crate) struct Memo {
    dense: Vec<Option<Py<PyAny>>>,
    sparse: BTreeMap<usize, Py<PyAny>>,
    len: usize,
    /// Entries actually held (`len` also counts the MEMOIZEs a memo filter skipped): what the
    /// dense range may grow to, so that a late fetched index after a million skipped ones
    /// costs one entry, not a million empty slots.
    held: usize,
}

impl Memo {
    /// Number of stored entries (C's `memo_len`).
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub(crate) fn get<'py>(&self, py: Python<'py>, idx: usize) -> Option<Bound<'py, PyAny>> {
        let slot = match self.dense.get(idx) {
            Some(slot) => slot.as_ref(),
            None => self.sparse.get(&idx),
        };
        slot.map(|o| o.bind(py).clone())
    }

    /// Count a MEMOIZE whose value is not stored (nothing fetches its index): the next
    /// MEMOIZE stores at the index after it, as it would have.
    #[inline]
    pub(crate) fn count_skipped(&mut self) {
        self.len += 1;
    }

    /// Store `value` at `idx`; returns the value it replaces, which the caller must drop only
    /// after releasing any lock on the memo (dropping may run Python code).
    #[inline]
    pub(crate) fn put(&mut self, idx: usize, value: Py<PyAny>) -> Option<Py<PyAny>> {
        if let Some(slot) = self.dense.get_mut(idx) {
            let old = slot.replace(value);
            if old.is_none() {
                self.len += 1;
                self.held += 1;
            }
            return old;
        }
        self.put_outside(idx, value)
    }

    /// `MEMOIZE`'s store when its slot (index [`Memo::len`]) is a free dense one, as it is in
    /// every stream that does not also use explicit `PUT`s; otherwise `value` comes back for
    /// [`Memo::put`].
    #[inline(always)]
    pub(crate) fn push_next(&mut self, value: Py<PyAny>) -> Result<(), Py<PyAny>> {
        match self.dense.get_mut(self.len) {
            Some(slot @ None) => {
                *slot = Some(value);
                self.len += 1;
                self.held += 1;
                Ok(())
            }
            _ => Err(value),
        }
    }

    /// `put` beyond the dense range: grow it (geometrically, from a first block big enough for
    /// small pickles) or, for a far-away index, store it in the sparse map.
    #[inline(never)]
    fn put_outside(&mut self, idx: usize, value: Py<PyAny>) -> Option<Py<PyAny>> {
        let old = if idx <= 2 * self.held + 1024 {
            let new_len = (idx + 1).max(self.dense.len() * 2).max(64);
            self.dense.resize_with(new_len, || None);
            // Move sparse entries that now fall inside the dense range.
            if !self.sparse.is_empty() {
                let rest = self.sparse.split_off(&new_len);
                let inside = std::mem::replace(&mut self.sparse, rest);
                for (i, v) in inside {
                    self.dense[i] = Some(v);
                }
            }
            self.dense[idx].replace(value)
        } else {
            self.sparse.insert(idx, value)
        };
        if old.is_none() {
            self.len += 1;
            self.held += 1;
        }
        old
    }

    /// All entries in index order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &Py<PyAny>)> {
        self.dense
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.as_ref().map(|v| (i, v)))
            .chain(self.sparse.iter().map(|(i, v)| (*i, v)))
    }

    /// Release every entry while the GIL is held (a `Bound` is released directly; a `Py` dropped
    /// on its own first checks whether this thread holds the GIL), leaving an empty memo.
    pub(crate) fn release(&mut self, py: Python<'_>) {
        for obj in self.dense.drain(..).flatten() {
            drop(obj.into_bound(py));
        }
        if !self.sparse.is_empty() {
            for (_, obj) in std::mem::take(&mut self.sparse) {
                drop(obj.into_bound(py));
            }
        }
        self.len = 0;
        self.held = 0;
    }

    /// An empty memo whose dense slots reuse `dense`'s allocation (which must be empty).
    pub(crate) fn with_dense(dense: Vec<Option<Py<PyAny>>>) -> Memo {
        debug_assert!(dense.is_empty());
        Memo {
            dense,
            ..Memo::default()
        }
    }

    /// The dense slots' vector, emptied (its allocation kept), for [`Memo::with_dense`]. Call
    /// after [`Memo::release`].
    pub(crate) fn take_dense(&mut self) -> Vec<Option<Py<PyAny>>> {
        let mut dense = std::mem::take(&mut self.dense);
        dense.clear();
        dense
    }

    /// Take everything out (for `clear`), leaving an empty memo.
    pub(crate) fn take(&mut self) -> Memo {
        std::mem::take(self)
    }

    /// A copy sharing the objects.
    pub(crate) fn clone_ref(&self, py: Python<'_>) -> Memo {
        Memo {
            dense: self
                .dense
                .iter()
                .map(|v| v.as_ref().map(|o| o.clone_ref(py)))
                .collect(),
            sparse: self
                .sparse
                .iter()
                .map(|(i, o)| (*i, o.clone_ref(py)))
                .collect(),
            len: self.len,
            held: self.held,
        }
    }
}

/// How [`fetch_filter`] steps over one opcode's argument.
#[derive(Clone, Copy)]
enum Skip {
    /// Not an opcode: no filter.
    Bad,
    /// A fixed number of argument bytes.
    Fixed(u8),
    /// A little-endian length of 1, 4 (unsigned), 4 (signed) or 8 bytes, then that many bytes.
    Counted1,
    Counted4,
    Signed4,
    Counted8,
    /// One or two lines of text.
    Lines(u8),
}

/// The argument layout of every byte, from the shared opcode table.
const SKIP: [Skip; 256] = {
    use brinery::opcode::{ArgKind, Opcode};
    let mut t = [Skip::Bad; 256];
    let mut b = 0;
    while b < 256 {
        if let Some(op) = Opcode::from_byte(b as u8) {
            t[b] = match op.arg_kind() {
                ArgKind::None => Skip::Fixed(0),
                ArgKind::U1 => Skip::Fixed(1),
                ArgKind::U2 => Skip::Fixed(2),
                ArgKind::U4 | ArgKind::I4 => Skip::Fixed(4),
                ArgKind::U8 | ArgKind::F8 => Skip::Fixed(8),
                ArgKind::Long1 | ArgKind::Counted1 => Skip::Counted1,
                ArgKind::Long4 => Skip::Signed4,
                ArgKind::Counted4 if b == Opcode::BINSTRING.byte() as usize => Skip::Signed4,
                ArgKind::Counted4 => Skip::Counted4,
                ArgKind::Counted8 => Skip::Counted8,
                ArgKind::Line => Skip::Lines(1),
                ArgKind::TwoLines => Skip::Lines(2),
                _ => Skip::Bad,
            };
        }
        b += 1;
    }
    t
};

/// The largest memo index the filter records (a 2 MiB bitmap at most); a fetch beyond it turns
/// the filter off.
const MAX_FILTERED_INDEX: usize = (1 << 24) - 1;

/// The memo indices a whole in-memory pickle fetches (`GET`, `BINGET`, `LONG_BINGET` up to its
/// `STOP`), as a bitmap (`bits[i / 64] >> (i % 64) & 1`) for [`Config::memo_filter`]: a load
/// with a memo of its own can skip every store nothing fetches, so that an object the pickle
/// refers to once is freed as soon as its consumer lets go of it (the `bytearray` of a NumPy
/// array that `__setstate__` copies, the state dict of each of a forest's trees), not at the
/// end of the load. That is memory, and page faults, the load no longer needs.
///
/// One pass over the opcodes, without decoding anything. `None` (no filter: every store is
/// kept, as in C) for anything unusual: an unknown opcode, no `STOP`, a `GET` whose line is
/// not plain decimal digits, an index beyond [`MAX_FILTERED_INDEX`], or a stream that mixes
/// `MEMOIZE` with explicit `PUT`s (a skipped `PUT` would shift the index of a later `MEMOIZE`).
///
/// [`Config::memo_filter`]: super::machine::Config::memo_filter
pub(crate) fn fetch_filter(data: &[u8]) -> Option<Vec<u64>> {
    use brinery::opcode::Opcode;
    const GET: u8 = Opcode::GET.byte();
    const BINGET: u8 = Opcode::BINGET.byte();
    const LONG_BINGET: u8 = Opcode::LONG_BINGET.byte();
    const PUT: u8 = Opcode::PUT.byte();
    const BINPUT: u8 = Opcode::BINPUT.byte();
    const LONG_BINPUT: u8 = Opcode::LONG_BINPUT.byte();
    const MEMOIZE: u8 = Opcode::MEMOIZE.byte();
    const STOP: u8 = Opcode::STOP.byte();
    const SHORT_BINUNICODE: u8 = Opcode::SHORT_BINUNICODE.byte();
    const SHORT_BINBYTES: u8 = Opcode::SHORT_BINBYTES.byte();
    const BINUNICODE: u8 = Opcode::BINUNICODE.byte();
    const BINFLOAT: u8 = Opcode::BINFLOAT.byte();
    const BININT: u8 = Opcode::BININT.byte();
    const BININT1: u8 = Opcode::BININT1.byte();
    const BININT2: u8 = Opcode::BININT2.byte();

    let mut bits: Vec<u64> = Vec::new();
    let mut mark = |i: usize| -> Option<()> {
        if i > MAX_FILTERED_INDEX {
            return None;
        }
        if i / 64 >= bits.len() {
            bits.resize(i / 64 + 1, 0);
        }
        bits[i / 64] |= 1 << (i % 64);
        Some(())
    };
    let (mut puts, mut memoizes) = (false, false);
    let n = data.len();
    let mut p = 0usize;
    loop {
        let &byte = data.get(p)?;
        p += 1;
        // The opcodes that make up most of a data-heavy pickle (a column of strings, a list of
        // floats) take arms whose argument size is a constant: with the opcode predicted, the
        // next position depends only on the length bytes, not on a second table dispatch. A
        // `MEMOIZE` right after one is stepped over here too, not by another trip round the
        // loop (a million strings are two million opcodes).
        let fixed = match byte {
            SHORT_BINUNICODE | SHORT_BINBYTES => Some(1 + *data.get(p)? as usize),
            BINUNICODE => {
                let raw = data.get(p..p + 4)?;
                Some(4 + u32::from_le_bytes(raw.try_into().ok()?) as usize)
            }
            BINFLOAT => Some(8),
            BININT => Some(4),
            BININT2 => Some(2),
            BININT1 => Some(1),
            _ => None,
        };
        if let Some(len) = fixed {
            p = p.checked_add(len).filter(|&e| e <= n)?;
            if data.get(p) == Some(&MEMOIZE) {
                memoizes = true;
                p += 1;
                // The next string has the same length (a column of fixed-width labels): step
                // over the whole run of them at once.
                if byte == SHORT_BINUNICODE
                    && data.get(p..p + 2) == Some(&[SHORT_BINUNICODE, (len - 1) as u8])
                {
                    p = skip_same_length_strings(data, p, len + 2);
                }
            }
            continue;
        }
        match byte {
            MEMOIZE => memoizes = true,
            BINGET => {
                mark(*data.get(p)? as usize)?;
                p += 1;
            }
            LONG_BINGET => {
                let raw = data.get(p..p + 4)?;
                mark(u32::from_le_bytes(raw.try_into().ok()?) as usize)?;
                p += 4;
            }
            GET => {
                let line = &data[p..];
                let nl = line.iter().position(|&c| c == b'\n')?;
                let digits = &line[..nl];
                if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
                    return None;
                }
                let idx = digits
                    .iter()
                    .fold(0usize, |a, &d| a * 10 + (d - b'0') as usize);
                mark(idx)?;
                p += nl + 1;
            }
            STOP => break,
            _ => {
                if matches!(byte, PUT | BINPUT | LONG_BINPUT) {
                    puts = true;
                }
                let len = match SKIP[byte as usize] {
                    Skip::Bad => return None,
                    Skip::Fixed(k) => k as usize,
                    Skip::Counted1 => 1 + *data.get(p)? as usize,
                    Skip::Counted4 => {
                        let raw = data.get(p..p + 4)?;
                        4 + u32::from_le_bytes(raw.try_into().ok()?) as usize
                    }
                    Skip::Signed4 => {
                        let raw = data.get(p..p + 4)?;
                        4 + usize::try_from(i32::from_le_bytes(raw.try_into().ok()?)).ok()?
                    }
                    Skip::Counted8 => {
                        let raw = data.get(p..p + 8)?;
                        let k = u64::from_le_bytes(raw.try_into().ok()?);
                        8 + usize::try_from(k).ok().filter(|&k| k <= n)?
                    }
                    Skip::Lines(k) => {
                        let mut q = p;
                        for _ in 0..k {
                            q += data[q.min(n)..].iter().position(|&c| c == b'\n')? + 1;
                        }
                        q - p
                    }
                };
                p = p.checked_add(len).filter(|&e| e <= n)?;
            }
        }
    }
    if puts && memoizes {
        return None;
    }
    Some(bits)
}

/// The end of the run of memoized short strings of `stride` bytes each (`SHORT_BINUNICODE`,
/// its length `stride - 3`, the text, `MEMOIZE`) that starts at `p`, for [`fetch_filter`].
///
/// Out of line, and only entered when the next string has the same length, so that the main
/// loop's code stays as it was for pickles without such runs. Inside, the next position is
/// known without waiting for a length byte to load, so the checks of consecutive strings
/// overlap: a column of a million labels is stepped over in less than half the time.
#[inline(never)]
fn skip_same_length_strings(data: &[u8], mut p: usize, stride: usize) -> usize {
    use brinery::opcode::Opcode;
    const SHORT_BINUNICODE: u8 = Opcode::SHORT_BINUNICODE.byte();
    const MEMOIZE: u8 = Opcode::MEMOIZE.byte();
    debug_assert!((3..=258).contains(&stride));
    let size = (stride - 3) as u8;
    while p + stride <= data.len()
        && data[p] == SHORT_BINUNICODE
        && data[p + 1] == size
        && data[p + stride - 1] == MEMOIZE
    {
        p += stride;
    }
    p
}
