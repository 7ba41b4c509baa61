//! Python 3.11's `repr()` of `str`, `bytes`, `bytearray`, `int` and `float`, byte for byte.
//!
//! The disassembler prints opcode arguments the way `pickletools` does, which is with `repr`, so
//! these functions reproduce CPython's `unicode_repr`, `bytes_repr`, `long_to_decimal_string` and
//! `float_repr` (short-repr mode), including their choice of quotes and escapes. Which characters
//! `repr` leaves unescaped is decided by `str.isprintable()`; the table behind it is generated
//! from CPython by `scripts/gen_printable_table.py` (`unicode_printable.rs`).

use std::fmt::Write as _;

use num_bigint::BigInt;

use crate::pystr::PyString;
use crate::unicode_printable::is_printable;

/// CPython 3.11's default `sys.get_int_max_str_digits()`: `repr` of an `int` with more decimal
/// digits than this raises `ValueError`.
pub const INT_MAX_STR_DIGITS: usize = 4300;

/// The message of the `ValueError` CPython raises when converting a too-large `int` to text.
pub const INT_TO_STR_LIMIT_MESSAGE: &str = "Exceeds the limit (4300 digits) for integer string \
     conversion; use sys.set_int_max_str_digits() to increase the limit";

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Python's `repr(float)`: the shortest digits that round-trip, in positional notation when the
/// decimal exponent is in `-4..16` and in exponent notation (`1e+16`, `1.5e-07`) otherwise.
pub fn float_repr(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    let mut buf = ryu::Buffer::new();
    let shortest = buf.format_finite(v);
    let (negative, digits, decpt) = split_ryu(shortest);
    let mut out = String::with_capacity(digits.len() + 8);
    if negative {
        out.push('-');
    }
    // Value is 0.DIGITS * 10^decpt; CPython switches to exponent form when decpt <= -4 or > 16.
    if decpt <= -4 || decpt > 16 {
        let exp = decpt - 1;
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let sign = if exp < 0 { '-' } else { '+' };
        let _ = write!(out, "e{sign}{:02}", exp.unsigned_abs());
    } else if decpt <= 0 {
        out.push_str("0.");
        for _ in 0..decpt.unsigned_abs() {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let point = decpt as usize;
        if point >= digits.len() {
            out.push_str(&digits);
            for _ in digits.len()..point {
                out.push('0');
            }
            out.push_str(".0");
        } else {
            out.push_str(&digits[..point]);
            out.push('.');
            out.push_str(&digits[point..]);
        }
    }
    out
}

/// Split ryu's shortest output (`-1.5e-7`, `123.0`, `0.001`, `1e16`) into the sign, the
/// significant digits without leading or trailing zeros, and the position of the decimal point
/// relative to them (the value is `0.DIGITS × 10^decpt`).
fn split_ryu(s: &str) -> (bool, String, i32) {
    let (negative, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (mantissa, exp) = match s.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (s, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits: String = int_part.chars().chain(frac_part.chars()).collect();
    let mut decpt = int_part.len() as i32 + exp;
    let leading = digits.bytes().take_while(|&b| b == b'0').count();
    digits.drain(..leading);
    decpt -= leading as i32;
    let kept = digits.trim_end_matches('0').len();
    digits.truncate(kept);
    if digits.is_empty() {
        digits.push('0');
    }
    (negative, digits, decpt)
}

/// Python's `repr(str)` of `s`, appended to `out`.
pub fn str_repr(s: &PyString, out: &mut String) {
    match s.as_str() {
        Some(text) => code_points_repr(text.chars().map(u32::from), out),
        None => code_points_repr(s.code_points(), out),
    }
}

/// Python's `repr(str)` of the string made of the code points `cps` (surrogates allowed),
/// appended to `out`. The iterator is walked twice: once to choose the quote, once to write.
pub fn code_points_repr<I: Iterator<Item = u32> + Clone>(cps: I, out: &mut String) {
    let quote = choose_quote(cps.clone().map(|c| (c == '\'' as u32, c == '"' as u32)));
    out.push(quote as char);
    for cp in cps {
        match cp {
            _ if cp == quote as u32 || cp == '\\' as u32 => {
                out.push('\\');
                out.push(cp as u8 as char);
            }
            0x09 => out.push_str("\\t"),
            0x0a => out.push_str("\\n"),
            0x0d => out.push_str("\\r"),
            0x20..=0x7e => out.push(cp as u8 as char),
            _ if cp < 0x80 => push_hex(out, 'x', cp, 2),
            _ => match char::from_u32(cp).filter(|_| is_printable(cp)) {
                Some(c) => out.push(c),
                None if cp <= 0xff => push_hex(out, 'x', cp, 2),
                None if cp <= 0xffff => push_hex(out, 'u', cp, 4),
                None => push_hex(out, 'U', cp, 8),
            },
        }
    }
    out.push(quote as char);
}

/// Python's `repr(bytes)` of `b`, appended to `out`.
pub fn bytes_repr(b: &[u8], out: &mut String) {
    let quote = choose_quote(b.iter().map(|&c| (c == b'\'', c == b'"')));
    out.reserve(b.len() + 3);
    out.push('b');
    push_bytes_body(b, quote, quote, out);
}

/// Python's `repr(bytearray)` of `b` (`bytearray(b'...')`), appended to `out`.
///
/// Same quote choice as `bytes`, but CPython's `bytearray_repr` escapes a single quote even when
/// the text is delimited by double quotes: `bytearray(b"\'")`.
pub fn bytearray_repr(b: &[u8], out: &mut String) {
    let quote = choose_quote(b.iter().map(|&c| (c == b'\'', c == b'"')));
    out.reserve(b.len() + 14);
    out.push_str("bytearray(b");
    push_bytes_body(b, quote, b'\'', out);
    out.push(')');
}

/// The quoted body of a bytes literal: delimited by `quote`, escaping `escaped` and `\\`.
fn push_bytes_body(b: &[u8], quote: u8, escaped: u8, out: &mut String) {
    out.push(quote as char);
    for &c in b {
        match c {
            _ if c == escaped || c == b'\\' => {
                out.push('\\');
                out.push(c as char);
            }
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            0x20..=0x7e => out.push(c as char),
            _ => push_hex(out, 'x', c as u32, 2),
        }
    }
    out.push(quote as char);
}

/// Python's `repr(int)` of a big integer, appended to `out`, or the `ValueError` message CPython
/// raises when it has more than [`INT_MAX_STR_DIGITS`] digits.
pub fn int_repr(v: &BigInt, out: &mut String) -> Result<(), &'static str> {
    // Cheap bound first: bits * log10(2) decimal digits, give or take one.
    let bits = v.bits();
    if bits > (INT_MAX_STR_DIGITS as u64 + 2) * 10_000 / 3010 {
        return Err(INT_TO_STR_LIMIT_MESSAGE);
    }
    let text = v.to_string();
    let digits = text.strip_prefix('-').unwrap_or(&text).len();
    if digits > INT_MAX_STR_DIGITS {
        return Err(INT_TO_STR_LIMIT_MESSAGE);
    }
    out.push_str(&text);
    Ok(())
}

/// Single quotes unless the text has a single quote and no double quote (CPython's rule).
fn choose_quote<I: Iterator<Item = (bool, bool)>>(flags: I) -> u8 {
    let mut single = false;
    for (is_single, is_double) in flags {
        if is_double {
            return b'\'';
        }
        single |= is_single;
    }
    if single {
        b'"'
    } else {
        b'\''
    }
}

fn push_hex(out: &mut String, kind: char, cp: u32, width: u32) {
    out.push('\\');
    out.push(kind);
    for i in (0..width).rev() {
        out.push(HEX[((cp >> (4 * i)) & 0xf) as usize] as char);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_match_python() {
        // Expected strings are `repr(v)` from CPython 3.11.7.
        let cases: &[(f64, &str)] = &[
            (0.1, "0.1"),
            (1e16, "1e+16"),
            (1e22, "1e+22"),
            (5e-324, "5e-324"),
            (123456789012345680.0, "1.2345678901234568e+17"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (1.0, "1.0"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
            (1e-5, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (0.0001, "0.0001"),
            (1e15, "1000000000000000.0"),
            (9999999999999998.0, "9999999999999998.0"),
            (f64::MAX, "1.7976931348623157e+308"),
            (2.2250738585072014e-308, "2.2250738585072014e-308"),
            (-1.5, "-1.5"),
            (std::f64::consts::PI, "3.141592653589793"),
            (1e300, "1e+300"),
            (1e-300, "1e-300"),
            (123.456, "123.456"),
            (0.3, "0.3"),
            (9007199254740992.0, "9007199254740992.0"),
            (1e100, "1e+100"),
            (12345678.9, "12345678.9"),
        ];
        for &(v, want) in cases {
            assert_eq!(float_repr(v), want, "repr of {v:?}");
        }
    }

    fn s(cps: &[u32]) -> String {
        let mut out = String::new();
        str_repr(
            &PyString::from_code_points(cps.iter().copied()).unwrap(),
            &mut out,
        );
        out
    }

    fn t(text: &str) -> String {
        let mut out = String::new();
        str_repr(&PyString::from(text), &mut out);
        out
    }

    #[test]
    fn strings_match_python() {
        assert_eq!(t(""), "''");
        assert_eq!(t("abc"), "'abc'");
        assert_eq!(t("it's"), "\"it's\"");
        assert_eq!(t("say \"hi\""), "'say \"hi\"'");
        assert_eq!(t("both ' and \""), "'both \\' and \"'");
        assert_eq!(t("tab\tnl\ncr\r"), "'tab\\tnl\\ncr\\r'");
        assert_eq!(t("\\"), "'\\\\'");
        assert_eq!(
            t("\x00\x1f\x7f\u{80}\u{85}\u{a0}\u{a1}\u{ad}\u{ff}"),
            "'\\x00\\x1f\\x7f\\x80\\x85\\xa0\u{a1}\\xad\u{ff}'"
        );
        assert_eq!(
            t("\u{200b}\u{2028}\u{e000}\u{ffff}\u{378}"),
            "'\\u200b\\u2028\\ue000\\uffff\\u0378'"
        );
        assert_eq!(
            t("\u{1f600}\u{e0001}\u{10ffff}\u{1fffe}"),
            "'\u{1f600}\\U000e0001\\U0010ffff\\U0001fffe'"
        );
        assert_eq!(s(&[0xd800, 0xdfff]), "'\\ud800\\udfff'");
        assert_eq!(t("caf\u{e9} \u{20ac}"), "'caf\u{e9} \u{20ac}'");
        assert_eq!(t("x\u{3000}y"), "'x\\u3000y'");
    }

    #[test]
    fn bytes_match_python() {
        let r = |b: &[u8]| {
            let mut out = String::new();
            bytes_repr(b, &mut out);
            out
        };
        assert_eq!(r(b""), "b''");
        assert_eq!(r(b"abc"), "b'abc'");
        assert_eq!(r(b"it's"), "b\"it's\"");
        assert_eq!(r(b"say \"hi\""), "b'say \"hi\"'");
        assert_eq!(r(b"'\""), "b'\\'\"'");
        assert_eq!(
            r(b"\t\n\r\x00\x7f\x80\xff\\"),
            "b'\\t\\n\\r\\x00\\x7f\\x80\\xff\\\\'"
        );
        let ba = |b: &[u8]| {
            let mut out = String::new();
            bytearray_repr(b, &mut out);
            out
        };
        assert_eq!(ba(b"ab"), "bytearray(b'ab')");
        assert_eq!(ba(b"'"), "bytearray(b\"\\'\")");
        assert_eq!(ba(b"'\"\\"), "bytearray(b'\\'\"\\\\')");
        assert_eq!(ba(b"\t\n\r\x7f"), "bytearray(b'\\t\\n\\r\\x7f')");
    }

    #[test]
    fn ints_and_the_digit_limit() {
        let mut out = String::new();
        let nines: BigInt = "9".repeat(4300).parse().unwrap();
        int_repr(&-nines.clone(), &mut out).unwrap();
        assert_eq!(out.len(), 4301);
        let too_big = nines * 10 + 9;
        assert_eq!(
            int_repr(&too_big, &mut String::new()),
            Err(INT_TO_STR_LIMIT_MESSAGE)
        );
        let huge = BigInt::from(1) << 100_000u32;
        assert_eq!(
            int_repr(&huge, &mut String::new()),
            Err(INT_TO_STR_LIMIT_MESSAGE)
        );
    }

    #[test]
    fn printable_table_edges() {
        assert!(is_printable(0x20));
        assert!(!is_printable(0x7f));
        assert!(!is_printable(0xa0));
        assert!(is_printable(0xa1));
        assert!(!is_printable(0xad));
        assert!(is_printable(0x1f600));
        assert!(!is_printable(0xd800));
        assert!(!is_printable(0x10ffff));
    }
}
