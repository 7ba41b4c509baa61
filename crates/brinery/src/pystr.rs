//! Python text that Rust's `str` cannot always hold.
//!
//! A Python `str` is a sequence of code points, and lone surrogates (U+D800–U+DFFF) are allowed:
//! `'\ud800'` is a valid Python string and pickles as the bytes `ED A0 80` (CPython encodes with
//! `surrogatepass`). Rust's `str` forbids surrogates, so [`PyString`] stores the text in the same
//! "UTF-8 with surrogates passed through" form the pickle uses, remembers whether that happens to
//! be valid UTF-8 (almost always), and hands out a `&str` when it is.

use std::borrow::Cow;
use std::fmt;

use thin_vec::ThinVec;

/// A Python `str`: code points, lone surrogates included.
///
/// ```
/// use brinery::PyString;
/// let s = PyString::from("héllo");
/// assert_eq!(s.as_str(), Some("héllo"));
/// let lone = PyString::from_utf8_surrogatepass(b"a\xed\xa0\x80").unwrap();
/// assert_eq!(lone.as_str(), None);
/// assert_eq!(lone.code_points().collect::<Vec<_>>(), vec![0x61, 0xD800]);
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PyString {
    /// One flag byte (1 if the rest is valid UTF-8, 0 if it holds surrogates), then the text's
    /// bytes. One pointer wide, so that a [`Value`](crate::Value) is 16 bytes. The flag is a
    /// function of the bytes, so comparing and hashing the whole vector is comparing the text.
    repr: ThinVec<u8>,
}

impl PyString {
    #[inline]
    fn with_flag(utf8: bool, bytes: &[u8]) -> PyString {
        let mut repr = ThinVec::with_capacity(bytes.len() + 1);
        repr.push(utf8 as u8);
        repr.extend_from_slice(bytes);
        PyString { repr }
    }
}

impl PartialOrd for PyString {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PyString {
    /// By bytes (the flag is left out).
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl PyString {
    /// Validate `bytes` as UTF-8 in which surrogate code points may appear encoded as three
    /// bytes (Python's `surrogatepass`). Returns a description of the first bad byte otherwise.
    pub fn from_utf8_surrogatepass(bytes: &[u8]) -> Result<PyString, String> {
        let utf8 = validate_surrogatepass(bytes)?;
        Ok(PyString::with_flag(utf8, bytes))
    }

    /// Build from code points (each at most U+10FFFF; surrogates allowed).
    ///
    /// Returns `None` if a code point is above U+10FFFF.
    pub fn from_code_points<I: IntoIterator<Item = u32>>(points: I) -> Option<PyString> {
        let mut out = Vec::new();
        let mut utf8 = true;
        for cp in points {
            if (0xD800..0xE000).contains(&cp) {
                utf8 = false;
            }
            push_code_point(&mut out, cp)?;
        }
        Some(PyString::with_flag(utf8, &out))
    }

    /// The text as `&str`, unless it holds lone surrogates.
    #[inline]
    pub fn as_str(&self) -> Option<&str> {
        if self.is_utf8() {
            // Validated at construction; from_utf8 on valid input cannot fail.
            std::str::from_utf8(self.as_bytes()).ok()
        } else {
            None
        }
    }

    /// The bytes a `BINUNICODE` opcode carries for this text (UTF-8, surrogates passed through).
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        self.repr.get(1..).unwrap_or_default()
    }

    /// Whether the text is valid UTF-8 (has no surrogates).
    #[inline]
    pub fn is_utf8(&self) -> bool {
        self.repr.first() == Some(&1)
    }

    /// The code points, surrogates included.
    pub fn code_points(&self) -> CodePoints<'_> {
        CodePoints {
            bytes: self.as_bytes(),
        }
    }

    /// The text with each surrogate replaced by U+FFFD.
    pub fn to_string_lossy(&self) -> Cow<'_, str> {
        match self.as_str() {
            Some(s) => Cow::Borrowed(s),
            None => Cow::Owned(
                self.code_points()
                    .map(|c| char::from_u32(c).unwrap_or('\u{FFFD}'))
                    .collect(),
            ),
        }
    }

    /// True for the empty string.
    pub fn is_empty(&self) -> bool {
        self.as_bytes().is_empty()
    }
}

impl From<&str> for PyString {
    fn from(s: &str) -> Self {
        PyString::with_flag(true, s.as_bytes())
    }
}

impl From<String> for PyString {
    fn from(s: String) -> Self {
        PyString::with_flag(true, s.as_bytes())
    }
}

impl fmt::Debug for PyString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_string_lossy(), f)
    }
}

impl fmt::Display for PyString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_string_lossy())
    }
}

/// Iterator over the code points of a [`PyString`].
#[derive(Debug, Clone)]
pub struct CodePoints<'a> {
    bytes: &'a [u8],
}

impl Iterator for CodePoints<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        let (&b0, rest) = self.bytes.split_first()?;
        let (len, init) = match b0 {
            0x00..=0x7F => (1, b0 as u32),
            0xC0..=0xDF => (2, (b0 & 0x1F) as u32),
            0xE0..=0xEF => (3, (b0 & 0x0F) as u32),
            _ => (4, (b0 & 0x07) as u32),
        };
        // Validated at construction, so the continuation bytes are there; stay total anyway.
        let take = (len - 1).min(rest.len());
        let cp = rest[..take]
            .iter()
            .fold(init, |acc, &b| (acc << 6) | (b & 0x3F) as u32);
        self.bytes = &rest[take..];
        Some(cp)
    }
}

/// Append the surrogatepass UTF-8 encoding of `cp`; `None` above U+10FFFF.
pub(crate) fn push_code_point(out: &mut Vec<u8>, cp: u32) -> Option<()> {
    match cp {
        0..=0x7F => out.push(cp as u8),
        0x80..=0x7FF => out.extend_from_slice(&[0xC0 | (cp >> 6) as u8, 0x80 | (cp & 0x3F) as u8]),
        0x800..=0xFFFF => out.extend_from_slice(&[
            0xE0 | (cp >> 12) as u8,
            0x80 | ((cp >> 6) & 0x3F) as u8,
            0x80 | (cp & 0x3F) as u8,
        ]),
        0x10000..=0x10FFFF => out.extend_from_slice(&[
            0xF0 | (cp >> 18) as u8,
            0x80 | ((cp >> 12) & 0x3F) as u8,
            0x80 | ((cp >> 6) & 0x3F) as u8,
            0x80 | (cp & 0x3F) as u8,
        ]),
        _ => return None,
    }
    Some(())
}

/// Returns whether `bytes` is plain UTF-8 (`true`) or UTF-8 with encoded surrogates (`false`).
fn validate_surrogatepass(bytes: &[u8]) -> Result<bool, String> {
    let mut rest = bytes;
    let mut plain = true;
    loop {
        match std::str::from_utf8(rest) {
            Ok(_) => return Ok(plain),
            Err(e) => {
                let at = e.valid_up_to();
                let tail = &rest[at..];
                if tail.len() >= 3
                    && tail[0] == 0xED
                    && (0xA0..=0xBF).contains(&tail[1])
                    && (0x80..=0xBF).contains(&tail[2])
                {
                    plain = false;
                    rest = &tail[3..];
                } else {
                    let pos = bytes.len() - tail.len();
                    return Err(format!(
                        "'utf-8' codec can't decode byte {:#04x} in position {pos}",
                        tail.first().copied().unwrap_or(0)
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surrogate_pairs_stay_two_code_points() {
        let s = PyString::from_code_points([0xD83D, 0xDE00]).unwrap();
        assert_eq!(s.as_bytes(), b"\xed\xa0\xbd\xed\xb8\x80");
        assert_eq!(s.code_points().collect::<Vec<_>>(), vec![0xD83D, 0xDE00]);
        assert_eq!(PyString::from_utf8_surrogatepass(s.as_bytes()).unwrap(), s);
    }

    #[test]
    fn rejects_invalid_utf8() {
        let err = PyString::from_utf8_surrogatepass(b"ab\xff").unwrap_err();
        assert_eq!(err, "'utf-8' codec can't decode byte 0xff in position 2");
        assert!(
            PyString::from_utf8_surrogatepass(b"\xc0\x80").is_err(),
            "overlong"
        );
        assert!(PyString::from_code_points([0x110000]).is_none());
    }

    #[test]
    fn round_trips_all_planes() {
        let cps = [0x41, 0xE9, 0x20AC, 0x1F600, 0xDFFF, 0x10FFFF];
        let s = PyString::from_code_points(cps).unwrap();
        assert_eq!(s.code_points().collect::<Vec<_>>(), cps);
    }
}
