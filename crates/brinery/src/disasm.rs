//! Disassembly identical to `python -m pickletools`.
//!
//! [`disassemble`] writes, byte for byte, what CPython 3.11's `pickletools.dis()` prints for the
//! same input: one line per opcode with its offset, its code, its name indented by MARK depth and
//! its argument as Python's `repr` shows it, then `highest protocol among opcodes = N`. It also
//! runs the same sanity checks as `pickletools` (a symbolic stack of object kinds, the MARK stack
//! and the memo) and fails where `pickletools` raises `ValueError`, after having written exactly
//! the text `pickletools` prints before raising.
//!
//! ```
//! use brinery::disasm::{disassemble, Options};
//! // pickle.dumps([1, 'a'], protocol=2)
//! let data = b"\x80\x02]q\x00(K\x01X\x01\x00\x00\x00aq\x01e.";
//! let mut out = Vec::new();
//! let end = disassemble(data, &mut out, &Options::default()).unwrap();
//! assert_eq!(end, data.len());
//! assert_eq!(
//!     String::from_utf8(out).unwrap(),
//!     "    0: \\x80 PROTO      2
//!     2: ]    EMPTY_LIST
//!     3: q    BINPUT     0
//!     5: (    MARK
//!     6: K        BININT1    1
//!     8: X        BINUNICODE 'a'
//!    14: q        BINPUT     1
//!    16: e        APPENDS    (MARK at 5)
//!    17: .    STOP
//! highest protocol among opcodes = 2
//! "
//! );
//! ```
//!
//! Text arguments are interpreted the way `pickletools`' argument readers do, which differs in
//! places from what the unpickler does (see [`crate::text`]): `INT` and `LONG` are parsed with
//! `int(s)` in base 10, `STRING`, `GLOBAL`, `INST` and `PERSID` are escape-decoded and must be
//! ASCII, `UNICODE` is `raw-unicode-escape`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write;

use num_bigint::BigInt;
use num_traits::ToPrimitive;

use crate::decode::{Arg, Decoder, Op};
use crate::error::{Error, ErrorKind, Result};
use crate::opcode::{ArgKind, Opcode};
use crate::pyrepr;
use crate::pystr::PyString;

/// How to lay out the disassembly (the `indentlevel` and `annotate` parameters of
/// `pickletools.dis`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// When nonzero, append the first line of each opcode's description, starting at this column
    /// when the line is shorter (`pickletools` realigns after long lines the same way; its
    /// command line `-a` uses 30). 0 turns annotations off.
    pub annotate: usize,
    /// How many blanks each MARK level indents by. `pickletools` defaults to 4.
    pub indentlevel: usize,
    /// How many MARKs may be open at once ([`Options::DEFAULT_MAX_MARKS`] by default). Each
    /// line is indented by its MARK depth, so without a bound the text grows with the square
    /// of the input: 200 KB of `MARK` opcodes is 80 GB of blanks (`pickletools` writes them
    /// all). A MARK beyond the bound is an error, after the lines before it are written.
    pub max_marks: usize,
}

impl Options {
    /// The default bound on open MARKs: CPython's pickler nests one level per recursive call,
    /// so a pickle it makes under the default recursion limit (1,000) never comes close.
    pub const DEFAULT_MAX_MARKS: usize = 1_000;
}

impl Default for Options {
    fn default() -> Self {
        Options {
            annotate: 0,
            indentlevel: 4,
            max_marks: Options::DEFAULT_MAX_MARKS,
        }
    }
}

/// The symbolic stack entry `pickletools` calls `markobject`.
const MARK_OBJ: &str = "mark";
/// Flush the output buffer once it holds this much.
const FLUSH_AT: usize = 64 * 1024;
/// How many stack entries the "stack not empty after STOP" message lists at most.
const STACK_SHOWN: usize = 100;

/// Disassemble the first pickle in `data` into `out`, exactly as
/// `pickletools.dis(data, out, indentlevel=options.indentlevel, annotate=options.annotate)`.
///
/// Returns the offset just past the STOP opcode (bytes after it are not read). Where `pickletools`
/// raises `ValueError` (an unknown opcode, a truncated or malformed argument, a memo key used
/// before it is stored or stored twice, a pop from a too-short stack, a missing MARK_OBJ, a stack that
/// is not empty after STOP, an `int` too long to print), the text it would have printed first is
/// written and an [`Error`] carrying the offset and opcode is returned; its message is
/// `pickletools`' where that is meaningful, e.g.
/// `memo key 3 has never been stored into at byte 17 (BINGET)`.
pub fn disassemble<W: Write>(data: &[u8], out: &mut W, options: &Options) -> Result<usize> {
    disassemble_shared(data, out, options, &mut SharedMemo::default())
}

/// The memo `pickletools.dis(..., memo=...)` keeps across pickles (`python -m pickletools -m`
/// with several files): a later pickle may fetch what an earlier one stored, storing a key
/// again is an error, and `MEMOIZE` numbers on from the entries already there.
#[derive(Debug, Default, Clone)]
pub struct SharedMemo {
    entries: HashMap<MemoKey, &'static str>,
}

impl SharedMemo {
    /// How many entries the pickles disassembled with this memo have stored.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing has been stored.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// [`disassemble`] with a memo shared with the pickles disassembled before (and after) it, as
/// `pickletools.dis(data, out, memo, ...)`. What this pickle stores stays in `memo`, also
/// when it fails part-way.
pub fn disassemble_shared<W: Write>(
    data: &[u8],
    out: &mut W,
    options: &Options,
    memo: &mut SharedMemo,
) -> Result<usize> {
    let mut buf = Vec::with_capacity(FLUSH_AT.min(data.len().saturating_mul(8)) + 256);
    let result = run(data, out, &mut buf, options, &mut memo.entries);
    out.write_all(&buf)?;
    out.flush()?;
    result
}

/// Everything `dis()` keeps between opcodes.
struct Machine<'m> {
    stack: Vec<&'static str>,
    memo: &'m mut HashMap<MemoKey, &'static str>,
    markstack: Vec<usize>,
}

fn run<W: Write>(
    data: &[u8],
    out: &mut W,
    buf: &mut Vec<u8>,
    options: &Options,
    memo: &mut HashMap<MemoKey, &'static str>,
) -> Result<usize> {
    let indent = " ".repeat(options.indentlevel);
    let mut m = Machine {
        stack: Vec::new(),
        memo,
        markstack: Vec::new(),
    };
    let mut maxproto: i32 = -1;
    let mut annocol = options.annotate;
    let mut decoder = Decoder::new(data);
    let mut line = String::new();
    loop {
        if buf.len() >= FLUSH_AT {
            out.write_all(buf)?;
            buf.clear();
        }
        let op = match decoder.next_op() {
            Ok(Some(op)) => op,
            Ok(None) => return Err(Error::at(ErrorKind::MissingStop, data.len() as u64, None)),
            Err(e) => return Err(read_error(e, data)),
        };
        let fail = |kind: ErrorKind| Error::at(kind, op.offset as u64, Some(op.opcode));
        let arg = parse_arg(&op).map_err(|msg| fail(ErrorKind::BadArgument(msg)))?;

        if op.opcode == Opcode::MARK && m.markstack.len() >= options.max_marks {
            return Err(fail(ErrorKind::LimitExceeded {
                what: "open MARK",
                limit: options.max_marks as u64,
            }));
        }
        // `print("%5d:" % pos, end=' ')` happens before anything below can raise.
        let _ = write!(line_prefix(buf), "{:5}: ", op.offset);
        line.clear();
        push_code(&mut line, op.opcode);
        for _ in 0..m.markstack.len() {
            line.push_str(&indent);
        }
        let name = op.opcode.name();
        line.push_str(name);
        maxproto = maxproto.max(i32::from(op.opcode.protocol()));

        let (before, after) = stack_effect(op.opcode);
        let mut after: &[&'static str] = after;
        let memo_value: [&'static str; 1];
        let mut numtopop = before.len();
        let mut markmsg: Option<String> = None;
        let mut errormsg: Option<String> = None;

        // See whether a MARK should be popped.
        if before.contains(&MARK_OBJ)
            || (op.opcode == Opcode::POP && m.stack.last() == Some(&MARK_OBJ))
        {
            match m.markstack.pop() {
                Some(markpos) => {
                    markmsg = Some(format!("(MARK at {markpos})"));
                    // `while stack[-1] is not markobject: stack.pop()`, then pop the mark.
                    loop {
                        match m.stack.pop() {
                            Some(MARK_OBJ) => break,
                            Some(_) => {}
                            None => {
                                return Err(fail(ErrorKind::Message(
                                    "list index out of range (the MARK was popped as an \
                                     ordinary stack item)"
                                        .into(),
                                )))
                            }
                        }
                    }
                    numtopop = before.iter().position(|&s| s == MARK_OBJ).unwrap_or(0);
                }
                None => {
                    let msg = "no MARK exists on stack".to_string();
                    markmsg = Some(msg.clone());
                    errormsg = Some(msg);
                }
            }
        }

        // Check for correct memo usage.
        match op.opcode {
            Opcode::PUT | Opcode::BINPUT | Opcode::LONG_BINPUT | Opcode::MEMOIZE => {
                let (key, shown) = if op.opcode == Opcode::MEMOIZE {
                    let idx = m.memo.len();
                    markmsg = Some(format!("(as {idx})"));
                    (MemoKey::Int(idx as i128), "None".to_string())
                } else {
                    (arg.memo_key(), arg.repr_string().map_err(&fail)?)
                };
                if m.memo.contains_key(&key) {
                    errormsg = Some(format!("memo key {shown} already defined"));
                } else {
                    match m.stack.last() {
                        None => errormsg = Some("stack is empty -- can't store into memo".into()),
                        Some(&MARK_OBJ) => {
                            errormsg = Some("can't store markobject in the memo".into())
                        }
                        Some(&top) => {
                            m.memo.insert(key, top);
                        }
                    }
                }
            }
            Opcode::GET | Opcode::BINGET | Opcode::LONG_BINGET => {
                match m.memo.get(&arg.memo_key()) {
                    Some(&kind) => {
                        memo_value = [kind];
                        after = &memo_value;
                    }
                    None => {
                        let shown = arg.repr_string().map_err(&fail)?;
                        errormsg = Some(format!("memo key {shown} has never been stored into"));
                    }
                }
            }
            _ => {}
        }

        if !arg.is_none() || markmsg.is_some() {
            // Make a mild effort to align arguments.
            for _ in name.len()..10 {
                line.push(' ');
            }
            if !arg.is_none() {
                line.push(' ');
                arg.repr(&mut line).map_err(&fail)?;
            }
            if let Some(msg) = &markmsg {
                line.push(' ');
                line.push_str(msg);
            }
        }
        if options.annotate != 0 {
            let len = line.chars().count();
            for _ in len..annocol {
                line.push(' ');
            }
            // Make a mild effort to align annotations.
            annocol = len.max(annocol);
            if annocol > 50 {
                annocol = options.annotate;
            }
            line.push(' ');
            line.push_str(doc(op.opcode));
        }
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');

        if let Some(msg) = errormsg {
            // pickletools delays complaining until the offending opcode was printed.
            return Err(fail(ErrorKind::Message(msg)));
        }

        // Emulate the stack effects.
        if m.stack.len() < numtopop {
            return Err(fail(ErrorKind::Message(format!(
                "tries to pop {numtopop} items from stack with only {} items",
                m.stack.len()
            ))));
        }
        m.stack.truncate(m.stack.len() - numtopop);
        if after.contains(&MARK_OBJ) {
            m.markstack.push(op.offset);
        }
        m.stack.extend_from_slice(after);

        if op.opcode == Opcode::STOP {
            let _ = writeln!(
                line_prefix(buf),
                "highest protocol among opcodes = {maxproto}"
            );
            if !m.stack.is_empty() {
                return Err(fail(ErrorKind::Message(stack_not_empty(&m.stack))));
            }
            return Ok(decoder.offset());
        }
    }
}

/// A `fmt::Write` view of the byte buffer (everything written is UTF-8).
fn line_prefix(buf: &mut Vec<u8>) -> ByteSink<'_> {
    ByteSink(buf)
}

struct ByteSink<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for ByteSink<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

fn stack_not_empty(stack: &[&str]) -> String {
    let mut msg = String::from("stack not empty after STOP: [");
    for (i, kind) in stack.iter().take(STACK_SHOWN).enumerate() {
        if i > 0 {
            msg.push_str(", ");
        }
        msg.push_str(kind);
    }
    if stack.len() > STACK_SHOWN {
        let _ = write!(msg, ", ... ({} items in all)", stack.len());
    }
    msg.push(']');
    msg
}

/// `"%-4s " % repr(opcode.code)[1:-1]`: the code character, or `\xNN` for bytes >= 0x80.
fn push_code(line: &mut String, opcode: Opcode) {
    let b = opcode.byte();
    if b >= 0x80 {
        let _ = write!(line, "\\x{b:02x} ");
    } else {
        line.push(b as char);
        line.push_str("    ");
    }
}

/// A memo key as Python compares them (`False == 0`, `True == 1`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum MemoKey {
    Int(i128),
    Big(BigInt),
}

/// An argument as `pickletools`' reader returns it.
enum ArgValue<'a> {
    None,
    Int(i128),
    Big(BigInt),
    Bool(bool),
    Float(f64),
    /// A `str` of ASCII text (escape-decoded `STRING`, `PERSID`, `GLOBAL`, `INST`).
    Ascii(String),
    /// A `str` decoded from Latin-1 (`BINSTRING`, `SHORT_BINSTRING`).
    Latin1(&'a [u8]),
    /// A `str` from UTF-8 (`BINUNICODE` and friends).
    Text(PyString),
    /// A `str` from `raw-unicode-escape` (`UNICODE`).
    Points(Vec<u32>),
    Bytes(&'a [u8]),
    ByteArray(&'a [u8]),
}

impl ArgValue<'_> {
    fn is_none(&self) -> bool {
        matches!(self, ArgValue::None)
    }

    fn memo_key(&self) -> MemoKey {
        match self {
            ArgValue::Int(v) => MemoKey::Int(*v),
            ArgValue::Big(b) => MemoKey::Big(b.clone()),
            ArgValue::Bool(b) => MemoKey::Int(i128::from(*b)),
            // Memo opcodes only carry integers.
            _ => MemoKey::Int(-1),
        }
    }

    /// Append `repr(arg)`; fails only for an `int` with more than 4300 digits.
    fn repr(&self, out: &mut String) -> Result<(), ErrorKind> {
        match self {
            ArgValue::None => out.push_str("None"),
            ArgValue::Int(v) => {
                let _ = write!(out, "{v}");
            }
            ArgValue::Big(b) => {
                pyrepr::int_repr(b, out).map_err(|msg| ErrorKind::Message(msg.to_string()))?
            }
            ArgValue::Bool(b) => out.push_str(if *b { "True" } else { "False" }),
            ArgValue::Float(v) => out.push_str(&pyrepr::float_repr(*v)),
            ArgValue::Ascii(s) => pyrepr::code_points_repr(s.bytes().map(u32::from), out),
            ArgValue::Latin1(b) => pyrepr::code_points_repr(b.iter().map(|&c| u32::from(c)), out),
            ArgValue::Text(s) => pyrepr::str_repr(s, out),
            ArgValue::Points(p) => pyrepr::code_points_repr(p.iter().copied(), out),
            ArgValue::Bytes(b) => pyrepr::bytes_repr(b, out),
            ArgValue::ByteArray(b) => pyrepr::bytearray_repr(b, out),
        }
        Ok(())
    }

    fn repr_string(&self) -> Result<String, ErrorKind> {
        let mut s = String::new();
        self.repr(&mut s)?;
        Ok(s)
    }
}

fn int_value(v: BigInt) -> ArgValue<'static> {
    match v.to_i128() {
        Some(small) => ArgValue::Int(small),
        None => ArgValue::Big(v),
    }
}

/// Interpret the argument the way `pickletools`' `ArgumentDescriptor` reader does.
fn parse_arg<'a>(op: &Op<'a>) -> Result<ArgValue<'a>, String> {
    use Opcode::*;
    Ok(match (op.opcode, op.arg) {
        (_, Arg::None) => ArgValue::None,
        (_, Arg::Int(v)) => ArgValue::Int(i128::from(v)),
        (_, Arg::U64(v)) => ArgValue::Int(i128::from(v)),
        (_, Arg::Float(v)) => ArgValue::Float(v),
        (_, Arg::Long(bytes)) => int_value(BigInt::from_signed_bytes_le(bytes)),
        (SHORT_BINSTRING | BINSTRING, Arg::Bytes(b)) => ArgValue::Latin1(b),
        (BYTEARRAY8, Arg::Bytes(b)) => ArgValue::ByteArray(b),
        (SHORT_BINUNICODE | BINUNICODE | BINUNICODE8, Arg::Bytes(b)) => {
            ArgValue::Text(PyString::from_utf8_surrogatepass(b).map_err(|e| utf8_error(b, e))?)
        }
        (_, Arg::Bytes(b)) => ArgValue::Bytes(b),
        (INT | GET | PUT, Arg::Line(line)) => match line {
            b"00" => ArgValue::Bool(false),
            b"01" => ArgValue::Bool(true),
            _ => int_value(py_int10(line)?),
        },
        (LONG, Arg::Line(line)) => {
            let digits = line.strip_suffix(b"L").unwrap_or(line);
            int_value(py_int10(digits)?)
        }
        (FLOAT, Arg::Line(line)) => ArgValue::Float(py_float(line)?),
        (STRING, Arg::Line(line)) => ArgValue::Ascii(read_stringnl(line, true)?),
        (UNICODE, Arg::Line(line)) => ArgValue::Points(raw_unicode_escape(line)?),
        (_, Arg::Line(line)) => ArgValue::Ascii(read_stringnl(line, false)?),
        (_, Arg::TwoLines(first, second)) => {
            let mut s = read_stringnl(first, false)?;
            s.push(' ');
            s.push_str(&read_stringnl(second, false)?);
            ArgValue::Ascii(s)
        }
    })
}

/// `read_stringnl` without the newline: optional quote stripping, then
/// `codecs.escape_decode(data)[0].decode("ascii")`.
fn read_stringnl(line: &[u8], stripquotes: bool) -> Result<String, String> {
    let mut data = line;
    if stripquotes {
        let quote = [b'"', b'\'']
            .into_iter()
            .find(|&q| data.first() == Some(&q));
        match quote {
            Some(q) => {
                if data.last() != Some(&q) {
                    return Err(format!(
                        "strinq quote {} not found at both ends of {}",
                        bytes_repr([q].as_slice()),
                        bytes_repr(data)
                    ));
                }
                // A lone quote both starts and ends the data: `data[1:-1]` is empty.
                data = data.get(1..data.len() - 1).unwrap_or(b"");
            }
            None => return Err(format!("no string quotes around {}", bytes_repr(data))),
        }
    }
    let decoded = crate::text::escape_decode(data)?;
    match decoded.iter().position(|&b| b >= 0x80) {
        Some(pos) => Err(format!(
            "'ascii' codec can't decode byte {:#04x} in position {pos}: ordinal not in range(128)",
            decoded[pos]
        )),
        // All ASCII, so this is the identity.
        None => Ok(decoded.iter().map(|&b| b as char).collect()),
    }
}

/// CPython's message for UTF-8 that does not decode (with `surrogatepass`), from the offset
/// [`PyString`] reports.
fn utf8_error(bytes: &[u8], msg: String) -> String {
    let at = msg
        .rsplit(' ')
        .next()
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(0);
    let rest = bytes.get(at..).unwrap_or(b"");
    let Some(&first) = rest.first() else {
        return msg;
    };
    let (need, second) = match first {
        0xC2..=0xDF => (2, 0x80..=0xBF),
        0xE0 => (3, 0xA0..=0xBF),
        0xE1..=0xEC | 0xEE..=0xEF => (3, 0x80..=0xBF),
        0xED => (3, 0x80..=0x9F),
        0xF0 => (4, 0x90..=0xBF),
        0xF1..=0xF3 => (4, 0x80..=0xBF),
        0xF4 => (4, 0x80..=0x8F),
        _ => return format!("{msg}: invalid start byte"),
    };
    // How many continuation bytes are valid before the first bad one or the end of the data.
    let mut valid = 0;
    let mut ended = false;
    for i in 1..need {
        match rest.get(i) {
            None => {
                ended = true;
                break;
            }
            Some(b) if i == 1 && second.contains(b) => valid += 1,
            Some(0x80..=0xBF) if i > 1 => valid += 1,
            Some(_) => break,
        }
    }
    let (last, reason) = if ended {
        (bytes.len() - 1, "unexpected end of data")
    } else {
        (at + valid, "invalid continuation byte")
    };
    if last > at {
        format!("'utf-8' codec can't decode bytes in position {at}-{last}: {reason}")
    } else {
        format!("{msg}: {reason}")
    }
}

fn bytes_repr(b: &[u8]) -> String {
    let mut s = String::new();
    pyrepr::bytes_repr(b, &mut s);
    s
}

/// The whitespace `int()` and `float()` strip from bytes (C `isspace`).
fn is_py_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn strip_py_space(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_py_space(b)).unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|&b| !is_py_space(b))
        .map_or(start, |e| e + 1);
    s.get(start..end).unwrap_or(b"")
}

/// Python's `int(s)` on bytes, base 10: surrounding whitespace, a sign, digits with single
/// underscores between them, and the 4300-digit limit of CPython 3.11.
fn py_int10(s: &[u8]) -> Result<BigInt, String> {
    let invalid = || {
        format!(
            "invalid literal for int() with base 10: {}",
            bytes_repr(s.get(..200).unwrap_or(s))
        )
    };
    let t = strip_py_space(s);
    let (negative, body) = match t.first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    // Scan the digit run the way CPython does: a digit, then (optionally '_') digits.
    let mut digits = Vec::with_capacity(body.len());
    let mut i = 0;
    let mut run_ok = true;
    while i < body.len() {
        match body[i] {
            c @ b'0'..=b'9' => digits.push(c),
            b'_' if !digits.is_empty() && body.get(i + 1).is_some_and(u8::is_ascii_digit) => {}
            b'_' => {
                run_ok = false;
                break;
            }
            _ => break,
        }
        i += 1;
    }
    if digits.is_empty() {
        return Err(invalid());
    }
    if run_ok && digits.len() > pyrepr::INT_MAX_STR_DIGITS {
        return Err(format!(
            "Exceeds the limit ({} digits) for integer string conversion: value has {} digits; \
             use sys.set_int_max_str_digits() to increase the limit",
            pyrepr::INT_MAX_STR_DIGITS,
            digits.len()
        ));
    }
    if !run_ok || i != body.len() {
        return Err(invalid());
    }
    let magnitude = BigInt::parse_bytes(&digits, 10).ok_or_else(invalid)?;
    Ok(if negative { -magnitude } else { magnitude })
}

/// Python's `float(s)` on bytes.
fn py_float(s: &[u8]) -> Result<f64, String> {
    let invalid = || format!("could not convert string to float: {}", bytes_repr(s));
    let t = strip_py_space(s);
    // Underscores are allowed only between two digits, and are then dropped.
    let mut text = String::with_capacity(t.len());
    for (i, &c) in t.iter().enumerate() {
        if c == b'_' {
            let prev = i.checked_sub(1).and_then(|p| t.get(p));
            let next = t.get(i + 1);
            if !(prev.is_some_and(u8::is_ascii_digit) && next.is_some_and(u8::is_ascii_digit)) {
                return Err(invalid());
            }
            continue;
        }
        // Python's grammar is ASCII only: digits, sign, '.', 'e', and inf/nan letters.
        if !c.is_ascii() {
            return Err(invalid());
        }
        text.push(c as char);
    }
    let body = text.trim_start_matches(['+', '-']);
    if text.len() - body.len() > 1 {
        return Err(invalid());
    }
    let lower = body.to_ascii_lowercase();
    let special = matches!(lower.as_str(), "inf" | "infinity" | "nan");
    let numeric = !body.is_empty()
        && body
            .bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'.' | b'e' | b'E' | b'+' | b'-'));
    if !special && !numeric {
        return Err(invalid());
    }
    text.parse::<f64>().map_err(|_| invalid())
}

/// `str(data, 'raw-unicode-escape')` as CPython 3.11 decodes it.
fn raw_unicode_escape(s: &[u8]) -> Result<Vec<u32>, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        i += 1;
        if c != b'\\' || i >= s.len() {
            out.push(u32::from(c));
            continue;
        }
        let e = s[i];
        i += 1;
        let (count, message) = match e {
            b'u' => (4, "truncated \\uXXXX escape"),
            b'U' => (8, "truncated \\UXXXXXXXX escape"),
            _ => {
                out.push(u32::from(b'\\'));
                out.push(u32::from(e));
                continue;
            }
        };
        let start = i - 2;
        let mut ch: u32 = 0;
        for _ in 0..count {
            let digit = s.get(i).and_then(|&d| (d as char).to_digit(16));
            let Some(digit) = digit else {
                return Err(format!(
                    "'rawunicodeescape' codec can't decode bytes in position {start}-{}: {message}",
                    i.saturating_sub(1)
                ));
            };
            ch = (ch << 4) | digit;
            i += 1;
        }
        if ch > 0x10FFFF {
            return Err(format!(
                "'rawunicodeescape' codec can't decode bytes in position {start}-{}: \\Uxxxxxxxx \
                 out of range",
                i - 1
            ));
        }
        out.push(ch);
    }
    Ok(out)
}

/// Turn a decoder error into what `pickletools`' argument reader says about the same bytes.
fn read_error(e: Error, data: &[u8]) -> Error {
    let (Some(offset), Some(opcode)) = (e.offset(), e.opcode()) else {
        return e;
    };
    let rest = usize::try_from(offset)
        .ok()
        .and_then(|o| data.get(o + 1..))
        .unwrap_or(b"");
    let mut message = reader_message(opcode, rest);
    if opcode.arg_kind() == ArgKind::TwoLines {
        // pickletools decodes the first line before it looks for the second.
        if let Some(end) = rest.iter().position(|&b| b == b'\n') {
            if let Err(first) = read_stringnl(&rest[..end], false) {
                message = first;
            }
        }
    }
    Error::at(ErrorKind::BadArgument(message), offset, Some(opcode))
}

fn reader_message(opcode: Opcode, rest: &[u8]) -> String {
    use Opcode::*;
    let short = |what: &str| format!("not enough data in stream to read {what}");
    let expected = |n: u64, what: &str, have: usize| {
        format!("expected {n} bytes in a {what}, but only {have} remain")
    };
    let le = |n: usize| -> Option<u64> {
        let b = rest.get(..n)?;
        Some(
            b.iter()
                .rev()
                .fold(0u64, |acc, &x| (acc << 8) | u64::from(x)),
        )
    };
    match opcode.arg_kind() {
        ArgKind::U1 => short("uint1"),
        ArgKind::U2 => short("uint2"),
        ArgKind::U4 => short("uint4"),
        ArgKind::I4 => short("int4"),
        ArgKind::U8 => short("uint8"),
        ArgKind::F8 => short("float8"),
        ArgKind::Long1 => match rest.is_empty() {
            true => short("uint1"),
            false => short("long1"),
        },
        ArgKind::Long4 => match le(4) {
            None => short("int4"),
            Some(n) if n as u32 as i32 >= 0 => short("long4"),
            Some(n) => format!("long4 byte count < 0: {}", n as u32 as i32),
        },
        ArgKind::Counted1 => {
            let what = match opcode {
                SHORT_BINSTRING => "string1",
                SHORT_BINUNICODE => "unicodestring1",
                _ => "bytes1",
            };
            match le(1) {
                None => short("uint1"),
                Some(n) => expected(n, what, rest.len() - 1),
            }
        }
        ArgKind::Counted4 => {
            let (what, signed) = match opcode {
                BINSTRING => ("string4", true),
                BINUNICODE => ("unicodestring4", false),
                _ => ("bytes4", false),
            };
            match le(4) {
                None if signed => short("int4"),
                None => short("uint4"),
                Some(n) if signed && (n as u32 as i32) < 0 => {
                    format!("{what} byte count < 0: {}", n as u32 as i32)
                }
                Some(n) => expected(n, what, rest.len() - 4),
            }
        }
        ArgKind::Counted8 => {
            let what = match opcode {
                BYTEARRAY8 => "bytearray8",
                BINUNICODE8 => "unicodestring8",
                _ => "bytes8",
            };
            match le(8) {
                None => short("uint8"),
                Some(n) if n > i64::MAX as u64 => format!("{what} byte count > sys.maxsize: {n}"),
                Some(n) => expected(n, what, rest.len() - 8),
            }
        }
        ArgKind::Line | ArgKind::TwoLines => {
            let what = if opcode == UNICODE {
                "unicodestringnl"
            } else {
                "stringnl"
            };
            format!("no newline found when trying to read {what}")
        }
        _ => short("argument"),
    }
}

/// `pickletools`' `stack_before` and `stack_after` of each opcode, as stack-object names.
fn stack_effect(op: Opcode) -> (&'static [&'static str], &'static [&'static str]) {
    use Opcode::*;
    match op {
        INT => (&[], &["int_or_bool"]),
        BININT | BININT1 | BININT2 | LONG | LONG1 | LONG4 => (&[], &["int"]),
        STRING | BINSTRING | SHORT_BINSTRING => (&[], &["bytes_or_str"]),
        BINBYTES | SHORT_BINBYTES | BINBYTES8 => (&[], &["bytes"]),
        BYTEARRAY8 => (&[], &["bytearray"]),
        NEXT_BUFFER => (&[], &["buffer"]),
        READONLY_BUFFER => (&["buffer"], &["buffer"]),
        NONE => (&[], &["None"]),
        NEWTRUE | NEWFALSE => (&[], &["bool"]),
        UNICODE | SHORT_BINUNICODE | BINUNICODE | BINUNICODE8 => (&[], &["str"]),
        FLOAT | BINFLOAT => (&[], &["float"]),
        EMPTY_LIST => (&[], &["list"]),
        APPEND => (&["list", "any"], &["list"]),
        APPENDS => (&["list", MARK_OBJ, "stackslice"], &["list"]),
        LIST => (&[MARK_OBJ, "stackslice"], &["list"]),
        EMPTY_TUPLE => (&[], &["tuple"]),
        TUPLE => (&[MARK_OBJ, "stackslice"], &["tuple"]),
        TUPLE1 => (&["any"], &["tuple"]),
        TUPLE2 => (&["any", "any"], &["tuple"]),
        TUPLE3 => (&["any", "any", "any"], &["tuple"]),
        EMPTY_DICT => (&[], &["dict"]),
        DICT => (&[MARK_OBJ, "stackslice"], &["dict"]),
        SETITEM => (&["dict", "any", "any"], &["dict"]),
        SETITEMS => (&["dict", MARK_OBJ, "stackslice"], &["dict"]),
        EMPTY_SET => (&[], &["set"]),
        ADDITEMS => (&["set", MARK_OBJ, "stackslice"], &["set"]),
        FROZENSET => (&[MARK_OBJ, "stackslice"], &["frozenset"]),
        POP => (&["any"], &[]),
        DUP => (&["any"], &["any", "any"]),
        MARK => (&[], &[MARK_OBJ]),
        POP_MARK => (&[MARK_OBJ, "stackslice"], &[]),
        GET | BINGET | LONG_BINGET => (&[], &["any"]),
        PUT | BINPUT | LONG_BINPUT => (&[], &[]),
        MEMOIZE => (&["any"], &["any"]),
        EXT1 | EXT2 | EXT4 => (&[], &["any"]),
        GLOBAL => (&[], &["any"]),
        STACK_GLOBAL => (&["str", "str"], &["any"]),
        REDUCE | BUILD | NEWOBJ => (&["any", "any"], &["any"]),
        INST => (&[MARK_OBJ, "stackslice"], &["any"]),
        OBJ => (&[MARK_OBJ, "any", "stackslice"], &["any"]),
        NEWOBJ_EX => (&["any", "any", "any"], &["any"]),
        PROTO | FRAME => (&[], &[]),
        STOP => (&["any"], &[]),
        PERSID => (&[], &["any"]),
        BINPERSID => (&["any"], &["any"]),
    }
}

/// The first line of each opcode's `doc` in `pickletools`, printed by `annotate`.
fn doc(op: Opcode) -> &'static str {
    use Opcode::*;
    match op {
        INT => "Push an integer or bool.",
        BININT => "Push a four-byte signed integer.",
        BININT1 => "Push a one-byte unsigned integer.",
        BININT2 => "Push a two-byte unsigned integer.",
        LONG => "Push a long integer.",
        LONG1 => "Long integer using one-byte length.",
        LONG4 => "Long integer using found-byte length.",
        STRING | BINSTRING | SHORT_BINSTRING => "Push a Python string object.",
        BINBYTES | SHORT_BINBYTES | BINBYTES8 => "Push a Python bytes object.",
        BYTEARRAY8 => "Push a Python bytearray object.",
        NEXT_BUFFER => "Push an out-of-band buffer object.",
        READONLY_BUFFER => "Make an out-of-band buffer object read-only.",
        NONE => "Push None on the stack.",
        NEWTRUE => "Push True onto the stack.",
        NEWFALSE => "Push False onto the stack.",
        UNICODE | SHORT_BINUNICODE | BINUNICODE | BINUNICODE8 => {
            "Push a Python Unicode string object."
        }
        FLOAT => "Newline-terminated decimal float literal.",
        BINFLOAT => "Float stored in binary form, with 8 bytes of data.",
        EMPTY_LIST => "Push an empty list.",
        APPEND => "Append an object to a list.",
        APPENDS => "Extend a list by a slice of stack objects.",
        LIST => "Build a list out of the topmost stack slice, after markobject.",
        EMPTY_TUPLE => "Push an empty tuple.",
        TUPLE => "Build a tuple out of the topmost stack slice, after markobject.",
        TUPLE1 => "Build a one-tuple out of the topmost item on the stack.",
        TUPLE2 => "Build a two-tuple out of the top two items on the stack.",
        TUPLE3 => "Build a three-tuple out of the top three items on the stack.",
        EMPTY_DICT => "Push an empty dict.",
        DICT => "Build a dict out of the topmost stack slice, after markobject.",
        SETITEM => "Add a key+value pair to an existing dict.",
        SETITEMS => "Add an arbitrary number of key+value pairs to an existing dict.",
        EMPTY_SET => "Push an empty set.",
        ADDITEMS => "Add an arbitrary number of items to an existing set.",
        FROZENSET => "Build a frozenset out of the topmost slice, after markobject.",
        POP => "Discard the top stack item, shrinking the stack by one item.",
        DUP => "Push the top stack item onto the stack again, duplicating it.",
        MARK => "Push markobject onto the stack.",
        POP_MARK => "Pop all the stack objects at and above the topmost markobject.",
        GET | BINGET | LONG_BINGET => "Read an object from the memo and push it on the stack.",
        PUT | BINPUT | LONG_BINPUT | MEMOIZE => {
            "Store the stack top into the memo.  The stack is not popped."
        }
        EXT1 | EXT2 | EXT4 => "Extension code.",
        GLOBAL | STACK_GLOBAL => "Push a global object (module.attr) on the stack.",
        REDUCE => "Push an object built from a callable and an argument tuple.",
        BUILD => "Finish building an object, via __setstate__ or dict update.",
        INST | OBJ => "Build a class instance.",
        NEWOBJ | NEWOBJ_EX => "Build an object instance.",
        PROTO => "Protocol version indicator.",
        STOP => "Stop the unpickling machine.",
        FRAME => "Indicate the beginning of a new frame.",
        PERSID | BINPERSID => "Push an object identified by a persistent ID.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Disassemble into a string, with the error message if any.
    fn dis(data: &[u8], options: &Options) -> (String, Option<String>) {
        let mut out = Vec::new();
        let err = disassemble(data, &mut out, options)
            .err()
            .map(|e| e.to_string());
        (String::from_utf8(out).expect("output is UTF-8"), err)
    }

    // Expected texts below are `pickletools.dis` output from CPython 3.11.7.

    #[test]
    fn protocol_0_with_annotations() {
        let data = b"(lp0\nI1\naI00\naF1.5\naS'a'\np1\nag1\na.";
        let options = Options {
            annotate: 30,
            indentlevel: 4,
            ..Options::default()
        };
        let (text, err) = dis(data, &options);
        assert_eq!(err, None);
        assert_eq!(
            text,
            "    0: (    MARK                      Push markobject onto the stack.
    1: l        LIST       (MARK at 0) Build a list out of the topmost stack slice, after markobject.
    2: p    PUT        0               Store the stack top into the memo.  The stack is not popped.
    5: I    INT        1               Push an integer or bool.
    8: a    APPEND                     Append an object to a list.
    9: I    INT        False           Push an integer or bool.
   13: a    APPEND                     Append an object to a list.
   14: F    FLOAT      1.5             Newline-terminated decimal float literal.
   19: a    APPEND                     Append an object to a list.
   20: S    STRING     'a'             Push a Python string object.
   25: p    PUT        1               Store the stack top into the memo.  The stack is not popped.
   28: a    APPEND                     Append an object to a list.
   29: g    GET        1               Read an object from the memo and push it on the stack.
   32: a    APPEND                     Append an object to a list.
   33: .    STOP                       Stop the unpickling machine.
highest protocol among opcodes = 0
"
        );
    }

    #[test]
    fn indentlevel_and_protocol_0_reduce() {
        // pickle.dumps([(1, 'x'), {'k': b'\xff'}], protocol=0)
        let data = b"(lp0\n(I1\nVx\np1\ntp2\na(dp3\nVk\np4\nc_codecs\nencode\np5\n(V\xff\np6\nVlatin1\np7\ntp8\nRp9\nsa.";
        let options = Options {
            annotate: 0,
            indentlevel: 2,
            ..Options::default()
        };
        let (text, err) = dis(data, &options);
        assert_eq!(err, None);
        assert_eq!(
            text,
            "    0: (    MARK
    1: l      LIST       (MARK at 0)
    2: p    PUT        0
    5: (    MARK
    6: I      INT        1
    9: V      UNICODE    'x'
   12: p      PUT        1
   15: t      TUPLE      (MARK at 5)
   16: p    PUT        2
   19: a    APPEND
   20: (    MARK
   21: d      DICT       (MARK at 20)
   22: p    PUT        3
   25: V    UNICODE    'k'
   28: p    PUT        4
   31: c    GLOBAL     '_codecs encode'
   47: p    PUT        5
   50: (    MARK
   51: V      UNICODE    '\u{ff}'
   54: p      PUT        6
   57: V      UNICODE    'latin1'
   65: p      PUT        7
   68: t      TUPLE      (MARK at 50)
   69: p    PUT        8
   72: R    REDUCE
   73: p    PUT        9
   76: s    SETITEM
   77: a    APPEND
   78: .    STOP
highest protocol among opcodes = 0
"
        );
    }

    #[test]
    fn protocol_5_buffers_and_surrogates() {
        let data = b"\x80\x05\x96\x01\x00\x00\x00\x00\x00\x00\x00a\x97\x98\x86\x8c\x05\xc3\xa9\xed\xa0\x80\x86.";
        let (text, err) = dis(data, &Options::default());
        assert_eq!(err, None);
        assert_eq!(
            text,
            "    0: \\x80 PROTO      5
    2: \\x96 BYTEARRAY8 bytearray(b'a')
   12: \\x97 NEXT_BUFFER
   13: \\x98 READONLY_BUFFER
   14: \\x86 TUPLE2
   15: \\x8c SHORT_BINUNICODE '\u{e9}\\ud800'
   22: \\x86 TUPLE2
   23: .    STOP
highest protocol among opcodes = 5
"
        );
    }

    #[test]
    fn errors_come_after_the_text_pickletools_prints() {
        let cases: &[(&[u8], &str, &str)] = &[
            (
                b"\x80\x02h\x07.",
                "    0: \\x80 PROTO      2\n    2: h    BINGET     7\n",
                "memo key 7 has never been stored into at byte 2 (BINGET)",
            ),
            (
                b"\x80\x04Nq\x01\x94.",
                "    0: \\x80 PROTO      4\n    2: N    NONE\n    3: q    BINPUT     1\n    5: \\x94 MEMOIZE    (as 1)\n",
                "memo key None already defined at byte 5 (MEMOIZE)",
            ),
            (
                b"\x80\x02K\x01K\x02.",
                "    0: \\x80 PROTO      2\n    2: K    BININT1    1\n    4: K    BININT1    2\n    6: .    STOP\nhighest protocol among opcodes = 2\n",
                "stack not empty after STOP: [int] at byte 6 (STOP)",
            ),
            (
                b"\x80\x02]N\x65.",
                "    0: \\x80 PROTO      2\n    2: ]    EMPTY_LIST\n    3: N    NONE\n    4: e    APPENDS    no MARK exists on stack\n",
                "no MARK exists on stack at byte 4 (APPENDS)",
            ),
            (
                b".",
                "    0: .    STOP\n",
                "tries to pop 1 items from stack with only 0 items at byte 0 (STOP)",
            ),
            // The MARK is eaten by APPEND, then APPENDS looks for it: pickletools prints the
            // offset and fails with IndexError before finishing the line.
            (
                b"(K\x01a0e.",
                "    0: (    MARK\n    1: K        BININT1    1\n    3: a        APPEND\n    4: 0        POP\n    5: ",
                "list index out of range (the MARK was popped as an ordinary stack item) at byte 5 (APPENDS)",
            ),
            (
                b"\x80\x02K\x01",
                "    0: \\x80 PROTO      2\n    2: K    BININT1    1\n",
                "pickle data was truncated: no STOP opcode at byte 4",
            ),
            (
                b"\x80\x03C\x05ab",
                "    0: \\x80 PROTO      3\n",
                "expected 5 bytes in a bytes1, but only 2 remain at byte 2 (SHORT_BINBYTES)",
            ),
            (
                b"S'abc\n.",
                "",
                "strinq quote b\"'\" not found at both ends of b\"'abc\" at byte 0 (STRING)",
            ),
            (
                b"\x80\x05\x8c\x04\xc3\xa9\xe2\x82.",
                "    0: \\x80 PROTO      5\n",
                "'utf-8' codec can't decode bytes in position 2-3: unexpected end of data at byte 2 (SHORT_BINUNICODE)",
            ),
        ];
        for &(data, text, err) in cases {
            let (got, got_err) = dis(data, &Options::default());
            assert_eq!(got, text, "{data:?}");
            assert_eq!(got_err.as_deref(), Some(err), "{data:?}");
        }
    }

    #[test]
    fn text_arguments_follow_pickletools_readers() {
        let data =
            b"I017\nI 0_1 \nL-12L\nF1_0.5\nFinf\nS'\nS\"it's\"\nV\\u20ac\\\\u0041\nPa\\x41\n(t.";
        let (text, err) = dis(data, &Options::default());
        assert_eq!(
            err.as_deref(),
            Some("stack not empty after STOP: [int_or_bool, int_or_bool, int, float, float, bytes_or_str, bytes_or_str, str, any] at byte 65 (STOP)")
        );
        assert_eq!(
            text,
            "    0: I    INT        17
    5: I    INT        1
   12: L    LONG       -12
   18: F    FLOAT      10.5
   25: F    FLOAT      inf
   30: S    STRING     ''
   33: S    STRING     \"it's\"
   41: V    UNICODE    '\u{20ac}\\\\\\\\u0041'
   56: P    PERSID     'aA'
   63: (    MARK
   64: t        TUPLE      (MARK at 63)
   65: .    STOP
highest protocol among opcodes = 0
"
        );
    }

    #[test]
    fn long_ints_beyond_4300_digits_fail_like_python() {
        let mut data = b"\x80\x02\x8b\xd0\x07\x00\x00".to_vec();
        data.extend(std::iter::repeat(1u8).take(2000));
        data.push(b'.');
        let (text, err) = dis(&data, &Options::default());
        assert_eq!(text, "    0: \\x80 PROTO      2\n    2: ");
        assert!(err.unwrap().starts_with("Exceeds the limit (4300 digits)"));
    }

    #[test]
    fn returns_the_offset_after_stop() {
        let mut out = Vec::new();
        assert_eq!(
            disassemble(b"N.trailing", &mut out, &Options::default()).unwrap(),
            2
        );
    }

    #[test]
    fn mark_depth_is_bounded() {
        // 200 KB of MARKs would be 80 GB of indentation; the bound stops it with the lines
        // before it written, naming the offending MARK's offset.
        let mut data = b"\x80\x02".to_vec();
        data.extend(std::iter::repeat_n(b'(', 200_000));
        data.push(b'.');
        let (text, err) = dis(&data, &Options::default());
        assert_eq!(
            err.as_deref(),
            Some("open MARK limit of 1000 exceeded at byte 1002 (MARK)")
        );
        assert_eq!(text.lines().count(), 1 + 1000);
        assert!(text.len() < 4 * 1000 * 1001 / 2 + 64 * 1001);
        // Exactly at the bound is fine, and pickletools' text is unchanged there.
        let mut ok = b"\x80\x02".to_vec();
        ok.extend(std::iter::repeat_n(b'(', 3));
        ok.extend_from_slice(b"ttt.");
        let tight = Options {
            max_marks: 3,
            ..Options::default()
        };
        assert_eq!(dis(&ok, &tight), dis(&ok, &Options::default()));
        assert_eq!(dis(&ok, &tight).1, None);
        let tighter = Options {
            max_marks: 2,
            ..Options::default()
        };
        assert_eq!(
            dis(&ok, &tighter).1.as_deref(),
            Some("open MARK limit of 2 exceeded at byte 4 (MARK)")
        );
    }

    #[test]
    fn megabyte_arguments_are_printed_whole() {
        // A 1 MiB BINBYTES8 holding every byte value 4,096 times: its repr is printed whole, as
        // `pickletools` does, escaped byte by byte. (Work quadratic in the argument's length
        // would make this test take minutes; it takes well under a second.)
        let n = 1 << 20;
        let mut data = b"\x80\x04\x8e".to_vec();
        data.extend_from_slice(&(n as u64).to_le_bytes());
        data.extend((0..n).map(|i| i as u8));
        data.push(b'.');
        let options = Options {
            annotate: 30,
            indentlevel: 4,
            ..Options::default()
        };
        let (text, err) = dis(&data, &options);
        assert_eq!(err, None);
        // Python's bytes repr, spelled out here independently of `pyrepr`: the payload holds
        // both quote characters, so Python picks single quotes and escapes them.
        let escape = |b: u8| match b {
            b'\t' => "\\t".to_string(),
            b'\n' => "\\n".to_string(),
            b'\r' => "\\r".to_string(),
            b'\\' => "\\\\".to_string(),
            b'\'' => "\\'".to_string(),
            0x20..=0x7e => (b as char).to_string(),
            _ => format!("\\x{b:02x}"),
        };
        let cycle: String = (0..=255u8).map(escape).collect();
        let expected = format!("b'{}'", cycle.repeat(n / 256));
        let line = format!("    2: \\x8e BINBYTES8  {expected} Push a Python bytes object.\n");
        assert!(
            text.contains(&line),
            "the 1 MiB argument is not printed whole"
        );
    }

    #[test]
    fn no_panics_on_truncated_or_mangled_input() {
        let sample: &[u8] = b"\x80\x04\x95\x30\x00\x00\x00\x00\x00\x00\x00]\x94(K\x01\x8c\x01a\x94G?\xf8\x00\x00\x00\x00\x00\x00\x8a\x02\x00\x80C\x02hi\x8f\x94(h\x01\x90\x93\x94h\x00\x85R\x94e.";
        for end in 0..=sample.len() {
            let _ = dis(&sample[..end], &Options::default());
        }
        let mut state: u32 = 12345;
        for _ in 0..2000 {
            let mut data = sample.to_vec();
            for _ in 0..3 {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                let at = (state >> 8) as usize % data.len();
                data[at] = (state >> 20) as u8;
            }
            let _ = dis(
                &data,
                &Options {
                    annotate: 30,
                    indentlevel: 1,
                    ..Options::default()
                },
            );
        }
    }
}
