//! Parsing the text arguments of protocol-0 opcodes.
//!
//! Protocol 0 writes numbers and strings as lines of text: `I42\n`, `L12345678901234567890L\n`,
//! `F1.5\n`, `S'it\'s'\n`, `Vcaf\u00e9\n`. These functions turn such lines into values with the
//! semantics of CPython's C unpickler (`Modules/_pickle.c`), which is what `pickle.loads` runs. They
//! accept exactly what CPython accepts, including its quirks (`I017\n` is octal 15 because `_pickle`
//! parses `INT` with `strtol(s, NULL, 0)`), so that the value model means what Python would load.

use num_bigint::BigInt;
use num_traits::{Num, ToPrimitive};

use crate::pystr::{push_code_point, PyString};

/// An integer parsed from text: small ones stay machine integers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParsedInt {
    /// Fits in 64 bits.
    Small(i64),
    /// Does not.
    Big(BigInt),
}

impl ParsedInt {
    fn from_big(b: BigInt) -> ParsedInt {
        match b.to_i64() {
            Some(v) => ParsedInt::Small(v),
            None => ParsedInt::Big(b),
        }
    }
}

/// What an `INT` line means: `I00`/`I01` are the booleans of protocol 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntLine {
    /// `True` or `False`.
    Bool(bool),
    /// An integer.
    Int(ParsedInt),
}

/// The part of a text argument that `_pickle.c`'s C parsers (`strtol`, `PyLong_FromString`,
/// `PyOS_string_to_double`) read: up to the first NUL byte, where a C string ends. `I7\0junk`
/// loads as 7 in CPython.
fn c_string(line: &[u8]) -> &[u8] {
    match line.iter().position(|&b| b == 0) {
        Some(end) => &line[..end],
        None => line,
    }
}

/// Parse the argument of `INT` as `_pickle.c`'s `load_int` does.
pub fn parse_int_line(line: &[u8]) -> Result<IntLine, String> {
    if line.is_empty() {
        return Err("pickle data was truncated: empty INT argument".into());
    }
    let s = c_string(line);
    // `strtol` that finds no digit leaves its end at the start: a NUL there counts as the end
    // of the line, so `I\0` is 0.
    let small = if s.is_empty() {
        Some(0)
    } else {
        c_strtol_base0(s)
    };
    if let Some(x) = small {
        // the booleans are the 2-byte lines `00` and `01` (a NUL counts toward the length)
        if line.len() == 2 && (x == 0 || x == 1) {
            return Ok(IntLine::Bool(x == 1));
        }
        return Ok(IntLine::Int(ParsedInt::Small(x)));
    }
    py_int(s, 0).map(IntLine::Int).ok_or_else(|| {
        format!(
            "invalid literal for int() with base 0: {}",
            bytes_repr_short(line)
        )
    })
}

/// Parse the argument of `LONG` (`123L`) as `_pickle.c`'s `load_long` does: the last byte is
/// dropped if it is `L`, then the text is read up to its first NUL.
pub fn parse_long_line(line: &[u8]) -> Result<ParsedInt, String> {
    let digits = c_string(line.strip_suffix(b"L").unwrap_or(line));
    py_int(digits, 0).ok_or_else(|| {
        format!(
            "invalid literal for int() with base 0: {}",
            crate::text::bytes_repr_short(digits)
        )
    })
}

/// Parse a memo index of `GET`/`PUT`, base 10 as `_pickle.c` does. Negative indices are refused.
pub fn parse_memo_index(line: &[u8], opname: &str) -> Result<u64, String> {
    let line = c_string(line);
    match py_int(line, 10) {
        Some(ParsedInt::Small(v)) if v >= 0 => Ok(v as u64),
        Some(ParsedInt::Small(_)) => Err(format!("negative {opname} argument")),
        Some(ParsedInt::Big(_)) => Err(format!("{opname} argument is too large")),
        None => Err(format!(
            "invalid literal for int() with base 10: {}",
            bytes_repr_short(line)
        )),
    }
}

/// Parse the argument of `FLOAT` as `_pickle.c`'s `load_float` does with
/// `PyOS_string_to_double`: the text up to its first NUL must be a whole float literal; one
/// too large for a float (`1e400`) is an overflow error, not infinity.
pub fn parse_float_line(line: &[u8]) -> Result<f64, String> {
    let text = c_string(line);
    let v = std::str::from_utf8(text)
        .ok()
        .filter(|s| !s.starts_with(|c: char| c.is_ascii_whitespace()) && !s.contains('_'))
        .and_then(|s| s.parse::<f64>().ok())
        .ok_or_else(|| {
            format!(
                "could not convert string to float: {}",
                bytes_repr_short(text)
            )
        })?;
    let spelled_infinite = || {
        let unsigned = text
            .strip_prefix(b"-")
            .or(text.strip_prefix(b"+"))
            .unwrap_or(text);
        unsigned.eq_ignore_ascii_case(b"inf") || unsigned.eq_ignore_ascii_case(b"infinity")
    };
    if v.is_infinite() && !spelled_infinite() {
        return Err(format!(
            "value too large to convert to float: {}",
            bytes_repr_short(text)
        ));
    }
    Ok(v)
}

/// Decode the argument of `STRING`: strip the quotes, then undo `repr`-style escapes
/// (`PyBytes_DecodeEscape`).
pub fn parse_string_line(line: &[u8]) -> Result<Vec<u8>, String> {
    let inner = match line {
        [q, inner @ .., last] if (*q == b'\'' || *q == b'"') && q == last => inner,
        _ => return Err("the STRING opcode argument must be quoted".into()),
    };
    escape_decode(inner)
}

/// `codecs.escape_decode`: undo the backslash escapes of a bytes literal.
pub fn escape_decode(s: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let Some(&e) = s.get(i) else {
            return Err("Trailing \\ in string".into());
        };
        i += 1;
        match e {
            b'\n' => {}
            b'\\' | b'\'' | b'"' => out.push(e),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b't' => out.push(b'\t'),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b'v' => out.push(0x0b),
            b'a' => out.push(0x07),
            b'0'..=b'7' => {
                let mut v = (e - b'0') as u32;
                for _ in 0..2 {
                    match s.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + (d - b'0') as u32;
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(v as u8);
            }
            b'x' => {
                let hex = s.get(i..i + 2).and_then(|h| {
                    let h = std::str::from_utf8(h).ok()?;
                    u8::from_str_radix(h, 16)
                        .ok()
                        .filter(|_| h.bytes().all(|b| b.is_ascii_hexdigit()))
                });
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => return Err(format!("invalid \\x escape at position {}", i - 2)),
                }
            }
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    Ok(out)
}

/// Decode the argument of `UNICODE` (`raw-unicode-escape`): bytes are Latin-1 code points, except
/// `\uXXXX` and `\UXXXXXXXX`.
pub fn raw_unicode_escape_decode(s: &[u8]) -> Result<PyString, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut utf8 = true;
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        i += 1;
        if c != b'\\' || i >= s.len() {
            push_code_point(&mut out, c as u32);
            continue;
        }
        let e = s[i];
        let count = match e {
            b'u' => 4,
            b'U' => 8,
            _ => {
                out.push(b'\\');
                push_code_point(&mut out, e as u32);
                i += 1;
                continue;
            }
        };
        i += 1;
        let digits = s
            .get(i..i + count)
            .filter(|d| d.iter().all(u8::is_ascii_hexdigit));
        let Some(digits) = digits else {
            return Err(format!(
                "'rawunicodeescape' codec can't decode bytes in position {}-{}: truncated \\{}{} escape",
                i - 2,
                (i + count).min(s.len()) - 1,
                e as char,
                "X".repeat(count)
            ));
        };
        // All hex digits, at most 8: cannot fail or overflow u32.
        let cp = digits.iter().fold(0u32, |acc, &d| {
            (acc << 4) | (d as char).to_digit(16).unwrap_or(0)
        });
        if (0xD800..0xE000).contains(&cp) {
            utf8 = false;
        }
        if push_code_point(&mut out, cp).is_none() {
            return Err(format!(
                "'rawunicodeescape' codec can't decode bytes in position {}-{}: \\Uxxxxxxxx out of range",
                i - 2,
                i + count - 1
            ));
        }
        i += count;
    }
    let _ = utf8;
    PyString::from_utf8_surrogatepass(&out)
}

/// C's `strtol(s, &end, 0)` over the whole line: leading whitespace, a sign, then `0x` hex,
/// `0` octal, or decimal, and nothing after. `None` if it does not parse or overflows.
fn c_strtol_base0(s: &[u8]) -> Option<i64> {
    let mut i = 0;
    while i < s.len() && matches!(s[i], b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
        i += 1;
    }
    let neg = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let rest = &s[i..];
    let (radix, digits) = match rest {
        [b'0', b'x' | b'X', d @ ..] if d.first().is_some_and(u8::is_ascii_hexdigit) => (16, d),
        [b'0', d @ ..] if !d.is_empty() => (8, d),
        d => (10, d),
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: i128 = 0;
    for &d in digits {
        let dv = (d as char).to_digit(radix)? as i128;
        v = v * radix as i128 + dv;
        if v > i64::MAX as i128 + 1 {
            return None;
        }
    }
    let v = if neg { -v } else { v };
    i64::try_from(v).ok()
}

/// Python's `int(s, base)` for `base` 0 or 10, on bytes: surrounding whitespace, a sign, base
/// prefixes (base 0), underscores between digits.
pub(crate) fn py_int(s: &[u8], base: u32) -> Option<ParsedInt> {
    // `Py_ISSPACE`: C's six blanks, the vertical tab among them (Rust's `is_ascii_whitespace`
    // leaves it out).
    let s = std::str::from_utf8(s)
        .ok()?
        .trim_matches(|c: char| matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r'));
    let (neg, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, body, prefixed) = if base == 0 {
        let lower = s.get(..2).map(str::to_ascii_lowercase);
        match lower.as_deref() {
            Some("0x") => (16, &s[2..], true),
            Some("0o") => (8, &s[2..], true),
            Some("0b") => (2, &s[2..], true),
            _ => (10, s, false),
        }
    } else {
        (base, s, false)
    };
    // Underscores: single, between digits (or right after a base prefix).
    let body = if prefixed {
        body.strip_prefix('_').unwrap_or(body)
    } else {
        body
    };
    if body.is_empty() || body.starts_with('_') || body.ends_with('_') || body.contains("__") {
        return None;
    }
    let digits: String = body.chars().filter(|&c| c != '_').collect();
    if !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    // Base 0 forbids leading zeros in a nonzero decimal ("010").
    if base == 0
        && radix == 10
        && digits.len() > 1
        && digits.starts_with('0')
        && digits.bytes().any(|b| b != b'0')
    {
        return None;
    }
    let magnitude = if digits.len() <= 18 && radix == 10 {
        BigInt::from(digits.parse::<i64>().ok()?)
    } else {
        BigInt::from_str_radix(&digits, radix).ok()?
    };
    Some(ParsedInt::from_big(if neg {
        -magnitude
    } else {
        magnitude
    }))
}

/// A short `repr`-like rendering of bytes for error messages.
pub(crate) fn bytes_repr_short(b: &[u8]) -> String {
    let shown: String = b
        .iter()
        .take(40)
        .flat_map(|&c| std::ascii::escape_default(c))
        .map(char::from)
        .collect();
    if b.len() > 40 {
        format!("'{shown}...'")
    } else {
        format!("'{shown}'")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_lines_follow_pickle_c() {
        assert_eq!(parse_int_line(b"00"), Ok(IntLine::Bool(false)));
        assert_eq!(parse_int_line(b"01"), Ok(IntLine::Bool(true)));
        assert_eq!(parse_int_line(b"1"), Ok(IntLine::Int(ParsedInt::Small(1))));
        assert_eq!(
            parse_int_line(b"-42"),
            Ok(IntLine::Int(ParsedInt::Small(-42)))
        );
        assert_eq!(
            parse_int_line(b"017"),
            Ok(IntLine::Int(ParsedInt::Small(15)))
        );
        assert_eq!(
            parse_int_line(b"0x10"),
            Ok(IntLine::Int(ParsedInt::Small(16)))
        );
        assert_eq!(
            parse_int_line(b"99999999999999999999"),
            Ok(IntLine::Int(ParsedInt::Big(
                "99999999999999999999".parse().unwrap()
            )))
        );
        assert_eq!(
            parse_int_line(b"-9223372036854775808"),
            Ok(IntLine::Int(ParsedInt::Small(i64::MIN)))
        );
        assert!(parse_int_line(b"abc").is_err());
    }

    /// CPython's C parsers read a text argument as a C string: up to its first NUL. Each case
    /// is what `pickle.loads` (the C unpickler) of Python 3.11 gives for the same line.
    #[test]
    fn text_arguments_end_at_a_nul_as_in_pickle_c() {
        let small = |v| Ok(IntLine::Int(ParsedInt::Small(v)));
        assert_eq!(parse_int_line(b"\0"), small(0));
        assert_eq!(parse_int_line(b"\0\0"), Ok(IntLine::Bool(false)));
        assert_eq!(parse_int_line(b"1\0"), Ok(IntLine::Bool(true)));
        assert_eq!(parse_int_line(b"7\0junk"), small(7));
        assert_eq!(parse_int_line(b" 7\0"), small(7));
        assert_eq!(parse_int_line(b"7 \0"), small(7));
        assert_eq!(
            parse_int_line(b"99999999999999999999\0x"),
            Ok(IntLine::Int(ParsedInt::Big(
                "99999999999999999999".parse().unwrap()
            )))
        );
        for bad in [&b" \0"[..], b"-\0", b"0x\0"] {
            assert!(parse_int_line(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_long_line(b"12\0L"), Ok(ParsedInt::Small(12)));
        assert_eq!(parse_long_line(b"7 \0L"), Ok(ParsedInt::Small(7)));
        for bad in [&b"\0L"[..], b"L", b"\0", b"LL"] {
            assert!(parse_long_line(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_memo_index(b"1\0x", "PUT"), Ok(1));
        // the vertical tab is a blank to `PyLong_FromString` as to `strtol`
        assert_eq!(
            parse_int_line(b"\x0b99999999999999999999"),
            Ok(IntLine::Int(ParsedInt::Big(
                "99999999999999999999".parse().unwrap()
            )))
        );
        assert_eq!(parse_int_line(b"7\x0b"), small(7));
        assert_eq!(parse_long_line(b"\x0b7L"), Ok(ParsedInt::Small(7)));
        assert_eq!(parse_memo_index(b"0\x0b", "PUT"), Ok(0));
        assert!(parse_memo_index(b"\0", "PUT").is_err());
        assert_eq!(parse_float_line(b"1.5\0x"), Ok(1.5));
        assert_eq!(parse_float_line(b"inf\0"), Ok(f64::INFINITY));
        assert!(parse_float_line(b"\0").is_err());
    }

    /// A float literal too large for a float is CPython's `OverflowError`, not infinity;
    /// one too small is 0.0; spelled infinities and NaN are what they say.
    #[test]
    fn float_lines_overflow_as_in_pickle_c() {
        for big in [&b"1e400"[..], b"-2e308", b"1e400\0"] {
            let e = parse_float_line(big).unwrap_err();
            assert!(
                e.starts_with("value too large to convert to float: "),
                "{e}"
            );
        }
        assert_eq!(parse_float_line(b"1e-400"), Ok(0.0));
        assert_eq!(parse_float_line(b"-Infinity"), Ok(f64::NEG_INFINITY));
        assert_eq!(parse_float_line(b"+inf"), Ok(f64::INFINITY));
        assert!(parse_float_line(b"nan").unwrap().is_nan());
        assert!(parse_float_line(b"1.5x").is_err());
    }

    #[test]
    fn long_lines() {
        assert_eq!(parse_long_line(b"123L"), Ok(ParsedInt::Small(123)));
        assert_eq!(parse_long_line(b"-5"), Ok(ParsedInt::Small(-5)));
        assert_eq!(parse_long_line(b"1_000L"), Ok(ParsedInt::Small(1000)));
        assert!(parse_long_line(b"010L").is_err());
        assert!(parse_long_line(b"L").is_err());
    }

    #[test]
    fn string_escapes() {
        assert_eq!(
            parse_string_line(b"'a\\'b\\n\\x41\\101\\q'"),
            Ok(b"a'b\nAA\\q".to_vec())
        );
        assert_eq!(parse_string_line(b"\"x\""), Ok(b"x".to_vec()));
        assert!(parse_string_line(b"'x\"").is_err());
        assert!(parse_string_line(b"'\\x4'").is_err());
    }

    #[test]
    fn raw_unicode_escape() {
        let s = raw_unicode_escape_decode(b"caf\xe9 \\u20ac \\U0001f600 \\\\u").unwrap();
        assert_eq!(s.as_str(), Some("café € 😀 \\\\u"));
        let s = raw_unicode_escape_decode(b"\\ud800").unwrap();
        assert_eq!(s.code_points().collect::<Vec<_>>(), vec![0xD800]);
        assert!(raw_unicode_escape_decode(b"\\u12").is_err());
        assert!(raw_unicode_escape_decode(b"\\U00110000").is_err());
    }

    #[test]
    fn memo_indices() {
        assert_eq!(parse_memo_index(b"12", "GET"), Ok(12));
        assert_eq!(
            parse_memo_index(b"-1", "PUT"),
            Err("negative PUT argument".into())
        );
    }
}
