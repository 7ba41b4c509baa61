//! Containers, detected by content: zip (PyTorch archives and `.npz` included; CRCs are never
//! checked, PyTorch writes some wrong), tar, gzip, bz2, xz, zlib, `.npy` with object arrays, and
//! joblib files (plain or compressed). Every embedded pickle is scanned and every finding names
//! its member. Decompression is bounded by [`ContainerOptions::max_decompressed`] in total, so a
//! decompression bomb costs at most that much memory and is a finding.

use std::io::{self, Read, Write};

use super::machine::{Machine, RunOptions};
use super::policy::Policy;
use super::report::{Finding, Report};
use super::rule::Rule;
use crate::Limits;

/// Bounds on reading containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerOptions {
    /// The most bytes all decompressed members of one input may add up to.
    pub max_decompressed: u64,
    /// How deeply containers may nest (a gzip inside a zip inside a zip...).
    pub max_nesting: u32,
    /// Skip content that holds no pickle ([`may_hold_pickle`] is false) instead of scanning it
    /// as one, and list it in [`Report::skipped`]: for files met walking a directory, where a
    /// CSV or a JSON file is not a finding. Off by default: an input someone asked to scan is
    /// scanned, and what is not a pickle is reported as malformed.
    pub pickles_only: bool,
}

impl Default for ContainerOptions {
    fn default() -> Self {
        ContainerOptions {
            max_decompressed: 1 << 30,
            max_nesting: 8,
            pickles_only: false,
        }
    }
}

/// Whether content without a container signature may be a pickle that does something when
/// loaded: the test for content of any name (zip members, and the files `brinery scan` meets
/// in a directory; red-team F16: containers and pickles are detected by content, not by file
/// name). True for a stream that starts with a PROTO of protocol 0 to 5; for one that scans as
/// a well-formed pickle; and for one whose scan finds a global Python could import (dotted
/// identifiers), an extension code (which names a global through `copyreg`) or a computed
/// global name, even when the stream breaks after it, since `pickle.load` runs what comes
/// before the break. Text such as CSV or JSON is none of these: it fails on an invalid opcode
/// within its first bytes, and the "globals" its lines spell (`INST` reads `id,name` as a
/// module) are not identifiers. (A persistent id in a broken stream does not count: what
/// stops at one without a `persistent_load` runs nothing, and text spells one easily: `P`.)
pub fn may_hold_pickle(data: &[u8], policy: &Policy, limits: &Limits) -> bool {
    if data.len() >= 2 && data[0] == crate::Opcode::PROTO.byte() && data[1] <= 5 {
        return true;
    }
    if data.is_empty() || crate::Opcode::from_byte(data[0]).is_none() {
        return false; // `pickle.load` fails on the first byte
    }
    let report = super::scan(data, policy, limits);
    let structural = report.findings.iter().any(|f| f.rule.is_structural());
    !structural
        || report
            .globals
            .iter()
            .any(|g| is_dotted_identifier(&g.module) && is_dotted_identifier(&g.name))
        || report.findings.iter().any(|f| {
            // a limit stops the scan before the end: what lies beyond it is unknown (10,000
            // MARKs, then a payload `pickle.load` reaches: CPython has no such limit)
            matches!(
                f.rule,
                Rule::ExtensionCode | Rule::ComputedGlobal | Rule::LimitExceeded
            )
        })
}

/// `a.b_c.D`: identifiers (letters, digits, `_`, not starting with a digit) joined by dots.
fn is_dotted_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|part| {
            part.chars()
                .next()
                .is_some_and(|c| c == '_' || c.is_alphabetic())
                && part.chars().all(|c| c == '_' || c.is_alphanumeric())
        })
}

/// The kind of container a byte string is, by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerKind {
    /// A zip archive (PyTorch checkpoints, `.npz`).
    Zip,
    /// A gzip stream.
    Gzip,
    /// A bzip2 stream.
    Bzip2,
    /// An xz stream.
    Xz,
    /// A legacy `.lzma` ("lzma alone") stream, as joblib's `compress='lzma'` writes.
    Lzma,
    /// A zlib stream (joblib's default compression).
    Zlib,
    /// A numpy `.npy` array file.
    Npy,
    /// A POSIX (ustar) or GNU tar archive, as pandas' `to_pickle("x.pkl.tar")` writes.
    Tar,
}

impl ContainerKind {
    /// A short name: `zip`, `gzip`, `bz2`, `xz`, `lzma`, `zlib`, `npy`, `tar`.
    pub fn name(self) -> &'static str {
        match self {
            ContainerKind::Zip => "zip",
            ContainerKind::Gzip => "gzip",
            ContainerKind::Bzip2 => "bz2",
            ContainerKind::Xz => "xz",
            ContainerKind::Lzma => "lzma",
            ContainerKind::Zlib => "zlib",
            ContainerKind::Npy => "npy",
            ContainerKind::Tar => "tar",
        }
    }

    /// The container `data` is, or `None` for anything else (a bare pickle). None of these
    /// magic numbers starts a valid pickle.
    pub fn detect(data: &[u8]) -> Option<ContainerKind> {
        if data.starts_with(b"PK\x03\x04") || data.starts_with(b"PK\x05\x06") {
            Some(ContainerKind::Zip)
        } else if data.starts_with(b"\x1f\x8b") {
            Some(ContainerKind::Gzip)
        } else if data.starts_with(b"BZh") && data.get(3).is_some_and(|b| (b'1'..=b'9').contains(b))
        {
            Some(ContainerKind::Bzip2)
        } else if data.starts_with(b"\xfd7zXZ\x00") {
            Some(ContainerKind::Xz)
        } else if data.len() >= 13 && data[0] == 0x5d && data[1] == 0x00 {
            // lzma alone: properties 0x5d, then the dictionary size; `]` followed by a NUL byte
            // is never a pickle (0x00 is not an opcode).
            Some(ContainerKind::Lzma)
        } else if data.starts_with(b"\x93NUMPY") {
            Some(ContainerKind::Npy)
        } else if is_tar_header(data) {
            Some(ContainerKind::Tar)
        } else if data.len() >= 2 && data[0] == 0x78 && matches!(data[1], 0x01 | 0x5e | 0x9c | 0xda)
        {
            // 0x78 ('x') is not a pickle opcode, so this never shadows a pickle (the other
            // window sizes start with '(', 'X', 'h', ..., which are).
            Some(ContainerKind::Zlib)
        } else {
            None
        }
    }
}

pub(crate) struct Walker<'p> {
    pub policy: &'p Policy,
    pub limits: &'p Limits,
    pub options: ContainerOptions,
    pub budget: u64,
    pub report: Report,
}

impl Walker<'_> {
    fn finding(&mut self, rule: Rule, member: Option<&str>, message: String) {
        self.report.findings.push(Finding {
            rule,
            offset: 0,
            opcode: None,
            global: None,
            member: member.map(str::to_owned),
            message,
        });
    }

    /// Scan `data`, named `member` (None for the top level), whatever it is.
    pub(crate) fn walk(&mut self, data: &[u8], member: Option<&str>, depth: u32) {
        let Some(kind) = ContainerKind::detect(data) else {
            if self.options.pickles_only && !may_hold_pickle(data, self.policy, self.limits) {
                self.report
                    .skipped
                    .push(member.unwrap_or_default().to_owned());
            } else {
                self.pickle(data, member);
            }
            return;
        };
        if depth >= self.options.max_nesting {
            let msg = format!(
                "containers nested more than {} deep: not scanned",
                self.options.max_nesting
            );
            self.finding(Rule::LimitExceeded, member, msg);
            return;
        }
        let label = |what: &str| match member {
            Some(m) => format!("{m}/({what})"),
            None => format!("({what})"),
        };
        match kind {
            ContainerKind::Zip => self.zip(data, member, depth),
            ContainerKind::Npy => self.npy(data, member),
            ContainerKind::Tar => {
                self.tar(data, member, depth);
                // its first header (a name field) can hold a whole pickle that `pickle.load`
                // would run: a tar that may also be a pickle is scanned as one too
                if may_hold_pickle(data, self.policy, self.limits) {
                    let name = match member {
                        Some(m) => format!("{m}/(read as a pickle)"),
                        None => "(tar read as a pickle)".to_owned(),
                    };
                    self.pickle(data, Some(&name));
                }
            }
            ContainerKind::Gzip
            | ContainerKind::Bzip2
            | ContainerKind::Xz
            | ContainerKind::Lzma
            | ContainerKind::Zlib => {
                let name = label(kind.name());
                if let Some(inner) = self.decompress(kind, data, &name) {
                    self.walk(&inner, Some(&name), depth + 1);
                }
            }
        }
    }

    fn pickle(&mut self, data: &[u8], member: Option<&str>) {
        if let Some(m) = member {
            self.report.members.push(m.to_owned());
        }
        let options = RunOptions {
            joblib: true,
            nesting: 0,
            record: true,
        };
        Machine::new(
            data,
            self.policy,
            self.limits,
            options,
            member,
            &mut self.report,
        )
        .run_all();
    }

    fn decompress(&mut self, kind: ContainerKind, data: &[u8], name: &str) -> Option<Vec<u8>> {
        let budget = self.budget;
        let mut out = LimitedWriter {
            buf: Vec::new(),
            left: budget,
            over: false,
        };
        let result: io::Result<()> = match kind {
            ContainerKind::Gzip => copy(flate2::read::MultiGzDecoder::new(data), &mut out),
            ContainerKind::Zlib => copy(flate2::read::ZlibDecoder::new(data), &mut out),
            ContainerKind::Bzip2 => copy(bzip2::read::MultiBzDecoder::new(data), &mut out),
            ContainerKind::Xz => {
                let mut input = io::BufReader::new(data);
                lzma_rs::xz_decompress(&mut input, &mut out)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
            }
            ContainerKind::Lzma => {
                let mut input = io::BufReader::new(data);
                let options = lzma_rs::decompress::Options {
                    memlimit: usize::try_from(budget).ok(),
                    ..Default::default()
                };
                lzma_rs::lzma_decompress_with_options(&mut input, &mut out, &options)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
            }
            ContainerKind::Zip | ContainerKind::Npy | ContainerKind::Tar => Ok(()),
        };
        self.finish_decompress(out, result, kind.name(), name)
    }

    fn finish_decompress(
        &mut self,
        out: LimitedWriter,
        result: io::Result<()>,
        what: &str,
        name: &str,
    ) -> Option<Vec<u8>> {
        if out.over {
            let msg = format!(
                "decompressed data exceeds the limit of {} bytes (a decompression bomb?): not scanned",
                self.options.max_decompressed
            );
            self.finding(Rule::LimitExceeded, Some(name), msg);
            self.budget = 0;
            return None;
        }
        self.budget -= out.buf.len() as u64;
        if let Err(e) = result {
            let msg = format!("cannot decompress the {what} data: {e}");
            self.finding(Rule::BadContainer, Some(name), msg);
            return None;
        }
        Some(out.buf)
    }

    fn npy(&mut self, data: &[u8], member: Option<&str>) {
        let name = member.map_or_else(|| "(npy)".to_owned(), str::to_owned);
        let major = data.get(6).copied().unwrap_or(0);
        let (len_at, header_at, width): (usize, usize, usize) = match major {
            1 => (8, 10, 2),
            2 | 3 => (8, 12, 4),
            _ => {
                let msg = format!("unsupported .npy format version {major}");
                self.finding(Rule::BadContainer, Some(&name), msg);
                return;
            }
        };
        let header_len = data
            .get(len_at..len_at + width)
            .map(|b| b.iter().rev().fold(0usize, |acc, &x| acc << 8 | x as usize));
        let header = header_len.and_then(|n| data.get(header_at..header_at.checked_add(n)?));
        let Some(header) = header else {
            self.finding(
                Rule::BadContainer,
                Some(&name),
                "truncated .npy header".to_owned(),
            );
            return;
        };
        let text = String::from_utf8_lossy(header);
        if !text.contains("descr") {
            self.finding(
                Rule::BadContainer,
                Some(&name),
                ".npy header has no descr".to_owned(),
            );
            return;
        }
        // Object arrays (`|O`, also as a field of a structured dtype) are stored as a pickle.
        if text.contains("|O'") || text.contains("|O\"") || text.contains("'O'") {
            let body = &data[header_at + header.len()..];
            self.pickle(body, Some(&name));
        } else {
            self.report.members.push(name);
        }
    }

    /// The members of a tar archive: regular files are scanned like zip members (containers,
    /// files named like pickles, content that may be one); a GNU long name (`L` entry) names the
    /// next member; directories, links and pax headers hold no data to scan.
    fn tar(&mut self, data: &[u8], member: Option<&str>, depth: u32) {
        let prefix = member.map(|m| format!("{m}/")).unwrap_or_default();
        let label = member.map_or_else(|| "(tar)".to_owned(), str::to_owned);
        let mut at = 0usize;
        let mut long_name: Option<String> = None;
        // a pax extended header's `size` and `path` for the next member (Python's tarfile
        // honours them)
        let mut pax_size: Option<u64> = None;
        let mut pax_path: Option<String> = None;
        while let Some(header) = data.get(at..at + 512) {
            if header.iter().all(|&b| b == 0) {
                return; // the end-of-archive blocks
            }
            if !is_tar_header(&data[at..]) {
                let msg = format!("tar header at byte {at} is damaged: the rest is not scanned");
                self.finding(Rule::BadContainer, Some(&label), msg);
                return;
            }
            // a size that is not plain octal (Python's tarfile reads `0_1000` as 512) is not
            // guessed at: what the archive holds after it is unknown
            let Some(size) = pax_size.take().or_else(|| tar_octal(&header[124..136])) else {
                let msg = format!(
                    "tar header at byte {at} has a size that is not plain octal: the rest is not scanned"
                );
                self.finding(Rule::BadContainer, Some(&label), msg);
                return;
            };
            let start = at + 512;
            let end = usize::try_from(size)
                .ok()
                .and_then(|n| start.checked_add(n))
                .filter(|&e| e <= data.len());
            let Some(end) = end else {
                let msg = format!("tar member at byte {at} runs past the end of the archive");
                self.finding(Rule::BadContainer, Some(&label), msg);
                return;
            };
            let field = |r: std::ops::Range<usize>| {
                let f = &header[r];
                let n = f.iter().position(|&b| b == 0).unwrap_or(f.len());
                String::from_utf8_lossy(&f[..n]).into_owned()
            };
            let content = &data[start..end];
            match header[156] {
                // GNU long name of the next member
                b'L' => {
                    let n = content
                        .iter()
                        .position(|&b| b == 0)
                        .unwrap_or(content.len());
                    long_name = Some(String::from_utf8_lossy(&content[..n]).into_owned());
                }
                // pax extended header of the next member
                b'x' => match pax_records(content) {
                    Some((size, path)) => {
                        pax_size = size;
                        pax_path = path;
                    }
                    None => {
                        let msg = format!(
                            "tar pax header at byte {at} cannot be read: the rest is not scanned"
                        );
                        self.finding(Rule::BadContainer, Some(&label), msg);
                        return;
                    }
                },
                // links, devices, directories, FIFOs, a GNU long link name, global pax headers:
                // no data of a file
                b'1' | b'2' | b'3' | b'4' | b'5' | b'6' | b'K' | b'g' => {
                    long_name = None;
                    pax_path = None;
                }
                // regular files, and every type Python's tarfile reads as one (unknown types
                // included): scanned like a zip member
                _ => {
                    let name = pax_path.take().or(long_name.take()).unwrap_or_else(|| {
                        let (pre, base) = (field(345..500), field(0..100));
                        if pre.is_empty() {
                            base
                        } else {
                            format!("{pre}/{base}")
                        }
                    });
                    let full = format!("{prefix}{name}");
                    if ContainerKind::detect(content).is_some() {
                        self.walk(content, Some(&full), depth + 1);
                    } else if has_pickle_name(&name)
                        || may_hold_pickle(content, self.policy, self.limits)
                    {
                        self.pickle(content, Some(&full));
                    } else {
                        self.report.skipped.push(full);
                    }
                }
            }
            at = start + (end - start).div_ceil(512) * 512;
        }
    }

    fn zip(&mut self, data: &[u8], member: Option<&str>, depth: u32) {
        let prefix = member.map(|m| format!("{m}/")).unwrap_or_default();
        let entries = match zip_entries(data) {
            Ok(entries) => entries,
            Err(e) => {
                let name = member.map_or_else(|| "(zip)".to_owned(), str::to_owned);
                self.finding(
                    Rule::BadContainer,
                    Some(&name),
                    format!("cannot read the zip archive: {e}"),
                );
                return;
            }
        };
        for entry in entries {
            let name = format!("{prefix}{}", entry.name);
            if entry.name.ends_with('/') {
                continue;
            }
            let Some(raw) =
                data.get(entry.data_start..entry.data_start.saturating_add(entry.compressed))
            else {
                self.finding(
                    Rule::BadContainer,
                    Some(&name),
                    "zip member data runs past the end of the archive".to_owned(),
                );
                continue;
            };
            let content: Vec<u8>;
            let bytes: &[u8] = match entry.method {
                0 => raw,
                8 | 12 => {
                    let mut out = LimitedWriter {
                        buf: Vec::new(),
                        left: self.budget,
                        over: false,
                    };
                    let result = if entry.method == 8 {
                        copy(flate2::read::DeflateDecoder::new(raw), &mut out)
                    } else {
                        copy(bzip2::read::BzDecoder::new(raw), &mut out)
                    };
                    match self.finish_decompress(out, result, "zip member", &name) {
                        Some(v) => {
                            content = v;
                            &content
                        }
                        None => continue,
                    }
                }
                other => {
                    let msg =
                        format!("zip compression method {other} is not supported: not scanned");
                    self.finding(Rule::BadContainer, Some(&name), msg);
                    continue;
                }
            };
            // Scan what can hold a pickle: containers, members named like pickles, and any
            // content that may be one (`may_hold_pickle`: protocol 0/1 streams have no PROTO).
            if ContainerKind::detect(bytes).is_some() {
                self.walk(bytes, Some(&name), depth + 1);
            } else if has_pickle_name(&entry.name)
                || may_hold_pickle(bytes, self.policy, self.limits)
            {
                self.pickle(bytes, Some(&name));
            } else {
                self.report.skipped.push(name);
            }
        }
    }
}

/// Whether `data` starts with a tar header: the `ustar` magic at 257 and a header checksum
/// that adds up (the sum of the header's bytes, its checksum field counted as blanks), so that
/// a pickle that happens to hold "ustar" at that offset is not taken for one.
fn is_tar_header(data: &[u8]) -> bool {
    let Some(header) = data.get(..512) else {
        return false;
    };
    if &header[257..262] != b"ustar" {
        return false;
    }
    let Some(stored) = tar_octal(&header[148..156]) else {
        return false;
    };
    let sum: u64 = header
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(b)
            }
        })
        .sum();
    sum == stored
}

/// A tar header's octal number field, or its base-256 form (high bit set) for sizes of 8 GiB
/// and more. Plain octal only: leading blanks, octal digits, then NULs or blanks to the end;
/// anything else (`0_1000`, which Python reads as 512) is `None`, never a guess.
fn tar_octal(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|&b| b & 0x80 != 0) {
        let mut v = 0u64;
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(v);
    }
    let body = &field[field.iter().take_while(|&&b| b == b' ').count()..];
    let n = body
        .iter()
        .take_while(|&&b| (b'0'..=b'7').contains(&b))
        .count();
    if n == 0 || body[n..].iter().any(|&b| b != 0 && b != b' ') {
        return None;
    }
    body[..n].iter().try_fold(0u64, |v, &d| {
        v.checked_mul(8)?.checked_add(u64::from(d - b'0'))
    })
}

/// The `size` and `path` of a pax extended header's `<len> <key>=<value>\n` records, or
/// `None` when the records do not parse (or a size is not a plain decimal number).
fn pax_records(content: &[u8]) -> Option<(Option<u64>, Option<String>)> {
    let (mut size, mut path) = (None, None);
    let mut rest = content;
    while !rest.is_empty() && rest[0] != 0 {
        let sp = rest.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&rest[..sp]).ok()?.parse().ok()?;
        let record = rest.get(sp + 1..len)?;
        let record = record.strip_suffix(b"\n")?;
        let eq = record.iter().position(|&b| b == b'=')?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        match key {
            b"size" => {
                let v = std::str::from_utf8(value).ok()?;
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                size = Some(v.parse().ok()?);
            }
            b"path" => path = Some(String::from_utf8_lossy(value).into_owned()),
            _ => {}
        }
        rest = &rest[len..];
    }
    Some((size, path))
}

/// The file name endings of pickles: content under such a name is scanned whatever it holds
/// (a damaged `.pkl` is a finding, not "not a pickle").
pub fn has_pickle_name(name: &str) -> bool {
    const ENDINGS: [&str; 12] = [
        ".pkl", ".pickle", ".pckl", ".pk", ".p", ".joblib", ".jbl", ".dill", ".sav", ".pt", ".pth",
        ".npy",
    ];
    let lower = name.to_ascii_lowercase();
    ENDINGS.iter().any(|ext| lower.ends_with(ext))
}

fn copy(mut reader: impl Read, out: &mut LimitedWriter) -> io::Result<()> {
    io::copy(&mut reader, out).map(|_| ())
}

/// A writer that refuses to grow past its budget.
struct LimitedWriter {
    buf: Vec<u8>,
    left: u64,
    over: bool,
}

impl Write for LimitedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.len() as u64 > self.left {
            self.over = true;
            return Err(io::Error::other("decompression limit reached"));
        }
        self.left -= data.len() as u64;
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct ZipEntry {
    name: String,
    method: u16,
    compressed: usize,
    data_start: usize,
}

fn le(data: &[u8], at: usize, n: usize) -> Option<u64> {
    let b = data.get(at..at.checked_add(n)?)?;
    Some(b.iter().rev().fold(0u64, |acc, &x| acc << 8 | x as u64))
}

/// The members of a zip archive, from its central directory (zip64 included), or from its local
/// headers when there is none. CRCs are ignored.
fn zip_entries(data: &[u8]) -> Result<Vec<ZipEntry>, String> {
    let search_from = data.len().saturating_sub(65_557);
    let eocd = (search_from..data.len().saturating_sub(21))
        .rev()
        .find(|&i| data[i..].starts_with(b"PK\x05\x06"));
    let Some(eocd) = eocd else {
        return local_entries(data);
    };
    let mut count = le(data, eocd + 10, 2).unwrap_or(0);
    let mut cd_offset = le(data, eocd + 16, 4).unwrap_or(0);
    if (count == 0xffff || cd_offset == 0xffff_ffff)
        && eocd >= 20
        && data[eocd - 20..].starts_with(b"PK\x06\x07")
    {
        let z64 = le(data, eocd - 12, 8).ok_or("truncated zip64 locator")? as usize;
        if !data
            .get(z64..)
            .is_some_and(|d| d.starts_with(b"PK\x06\x06"))
        {
            return Err("zip64 end of central directory not found".into());
        }
        count = le(data, z64 + 32, 8).ok_or("truncated zip64 record")?;
        cd_offset = le(data, z64 + 48, 8).ok_or("truncated zip64 record")?;
    }
    let mut pos =
        usize::try_from(cd_offset).map_err(|_| "central directory offset out of range")?;
    let mut entries = Vec::new();
    for _ in 0..count {
        if !data
            .get(pos..)
            .is_some_and(|d| d.starts_with(b"PK\x01\x02"))
        {
            return Err(format!("bad central directory entry at byte {pos}"));
        }
        let field =
            |off: usize, n: usize| le(data, pos + off, n).ok_or("truncated central directory");
        let method = field(10, 2)? as u16;
        let mut compressed = field(20, 4)?;
        let mut uncompressed = field(24, 4)?;
        let name_len = field(28, 2)? as usize;
        let extra_len = field(30, 2)? as usize;
        let comment_len = field(32, 2)? as usize;
        let mut local = field(42, 4)?;
        let name_bytes = data
            .get(pos + 46..pos + 46 + name_len)
            .ok_or("truncated central directory")?;
        let extra = data
            .get(pos + 46 + name_len..pos + 46 + name_len + extra_len)
            .ok_or("truncated central directory")?;
        // zip64 extended information: the 0xffffffff fields, in order.
        let mut e = 0;
        while e + 4 <= extra.len() {
            let id = le(extra, e, 2).unwrap_or(0);
            let size = le(extra, e + 2, 2).unwrap_or(0) as usize;
            if id == 1 {
                let mut at = e + 4;
                for v in [&mut uncompressed, &mut compressed, &mut local] {
                    if *v == 0xffff_ffff {
                        *v = le(extra, at, 8).ok_or("truncated zip64 extra field")?;
                        at += 8;
                    }
                }
            }
            e += 4 + size;
        }
        let _ = uncompressed;
        let local = usize::try_from(local).map_err(|_| "local header offset out of range")?;
        if !data
            .get(local..)
            .is_some_and(|d| d.starts_with(b"PK\x03\x04"))
        {
            return Err(format!("bad local header at byte {local}"));
        }
        let lname = le(data, local + 26, 2).ok_or("truncated local header")? as usize;
        let lextra = le(data, local + 28, 2).ok_or("truncated local header")? as usize;
        entries.push(ZipEntry {
            name: String::from_utf8_lossy(name_bytes).into_owned(),
            method,
            compressed: usize::try_from(compressed).map_err(|_| "member size out of range")?,
            data_start: local + 30 + lname + lextra,
        });
        pos += 46 + name_len + extra_len + comment_len;
    }
    Ok(entries)
}

fn local_entries(data: &[u8]) -> Result<Vec<ZipEntry>, String> {
    let mut pos = 0;
    let mut entries = Vec::new();
    while data
        .get(pos..)
        .is_some_and(|d| d.starts_with(b"PK\x03\x04"))
    {
        let field = |off: usize, n: usize| le(data, pos + off, n).ok_or("truncated local header");
        let flags = field(6, 2)?;
        let method = field(8, 2)? as u16;
        let compressed = field(18, 4)? as usize;
        let name_len = field(26, 2)? as usize;
        let extra_len = field(28, 2)? as usize;
        if flags & 8 != 0 && compressed == 0 {
            return Err("a member without sizes and no central directory".into());
        }
        let name = data
            .get(pos + 30..pos + 30 + name_len)
            .ok_or("truncated local header")?;
        let start = pos + 30 + name_len + extra_len;
        entries.push(ZipEntry {
            name: String::from_utf8_lossy(name).into_owned(),
            method,
            compressed,
            data_start: start,
        });
        pos = start.saturating_add(compressed);
    }
    if entries.is_empty() {
        return Err("no end of central directory and no local headers".into());
    }
    Ok(entries)
}
