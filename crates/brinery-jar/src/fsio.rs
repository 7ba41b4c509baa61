//! File-system primitives: create-only atomic writes with fsync, checksummed records, file-name
//! encoding of user names, timestamps.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, IoContext, Result};

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Whether `name` is one [`tmp_path`] makes: `<pid>-<nanos>-<n>-<8 hex digits>.tmp`.
pub(crate) fn is_tmp_name(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".tmp") else {
        return false;
    };
    let parts: Vec<&str> = stem.split('-').collect();
    parts.len() == 4
        && parts[..3]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && parts[3].len() == 8
        && parts[3].bytes().all(|b| b.is_ascii_hexdigit())
}

/// A fresh, unique temporary path in `tmp_dir` (pid, time, counter and random bits).
pub(crate) fn tmp_path(tmp_dir: &Path) -> PathBuf {
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    tmp_dir.join(format!(
        "{}-{nanos}-{n}-{}.tmp",
        std::process::id(),
        random_hex(4)
    ))
}

/// `n` random bytes as hex (OS randomness; falls back to time-derived bits if unavailable).
pub(crate) fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    if getrandom::fill(&mut buf).is_err() {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let h = blake3::hash(&seed.to_le_bytes());
        for (b, s) in buf.iter_mut().zip(h.as_bytes().iter().cycle()) {
            *b = *s;
        }
    }
    hex(&buf)
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Decode lowercase/uppercase hex.
pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// fsync a directory so that entries created in it survive a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(test)]
    faults::check("fsync directory", dir)?;
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|f| f.sync_all())
            .ctx("fsync directory", dir)?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Create `dir` (and its parents) if missing; a newly created folder is made durable by
/// fsyncing its parent.
pub(crate) fn ensure_dir(dir: &Path) -> Result<()> {
    // `""` is the parent of a relative name (`j` of `brinery jar --jar j`): the current folder
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        ensure_dir(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {
            if let Some(parent) = dir.parent() {
                let parent = if parent.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    parent
                };
                sync_dir(parent)?;
            }
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(Error::io("create directory", dir, e)),
    }
}

/// Write `parts` (concatenated) to a new file at `dest`, atomically and create-only: the bytes go
/// to a temporary file in `tmp_dir` which is fsynced and then hard-linked to `dest`. A link never
/// replaces an existing file, so an existing `dest` is left untouched and `Ok(false)` returned;
/// `Ok(true)` means this call created it. Readers see either no `dest` or the complete file.
/// With `sync_parent`, `dest`'s folder is fsynced (otherwise the caller does it once for a batch).
pub(crate) fn write_new(
    tmp_dir: &Path,
    dest: &Path,
    parts: &[&[u8]],
    sync_parent: bool,
) -> Result<bool> {
    let tmp = tmp_path(tmp_dir);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .ctx("create temporary file", &tmp)?;
        #[cfg(test)]
        faults::check("write", dest)?;
        for part in parts {
            // One write_all per part: a large chunk goes to the kernel in one call.
            f.write_all(part).ctx("write", &tmp)?;
        }
        f.sync_all().ctx("fsync", &tmp)?;
        drop(f);
        match fs::hard_link(&tmp, dest) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(Error::io("link", dest, e)),
        }
    })();
    let _ = fs::remove_file(&tmp);
    let created = result?;
    if created && sync_parent {
        if let Some(parent) = dest.parent() {
            sync_dir(parent)?;
        }
    }
    Ok(created)
}

/// Read a whole file; `Ok(None)` when it does not exist.
pub(crate) fn read_opt(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", path, e)),
    }
}

/// File names in `dir` (not recursive); an absent folder is empty.
pub(crate) fn list_dir(dir: &Path) -> Result<Vec<String>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list", dir, e)),
    };
    let mut names = Vec::new();
    for entry in rd {
        let entry = entry.ctx("list", dir)?;
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

// ---------------------------------------------------------------------------------------------
// Checksummed records
// ---------------------------------------------------------------------------------------------

const CHECK_PREFIX: &str = "blake3:";

/// A small record file: one line of compact JSON, then `blake3:<hex of that line>` and a newline.
/// A torn or garbled record fails [`open_record`] and is ignored by readers.
pub(crate) fn seal_record(body: &serde_json::Value) -> Vec<u8> {
    let json = serde_json::to_string(body).unwrap_or_else(|_| "null".into());
    let check = blake3::hash(json.as_bytes()).to_hex();
    format!("{json}\n{CHECK_PREFIX}{check}\n").into_bytes()
}

/// Parse and check a record written by [`seal_record`].
pub(crate) fn open_record(bytes: &[u8]) -> std::result::Result<serde_json::Value, &'static str> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not utf-8")?;
    let text = text
        .strip_suffix('\n')
        .ok_or("truncated (no final newline)")?;
    let (json, check) = text
        .rsplit_once('\n')
        .ok_or("truncated (no checksum line)")?;
    let check = check
        .strip_prefix(CHECK_PREFIX)
        .ok_or("bad checksum line")?;
    if blake3::hash(json.as_bytes()).to_hex().as_str() != check {
        return Err("checksum mismatch (torn or garbled)");
    }
    serde_json::from_str(json).map_err(|_| "bad json")
}

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

/// Check a user-given name (`what` = "name", "branch" or "tag").
pub(crate) fn check_name(what: &'static str, value: &str) -> Result<()> {
    let bad = |why| {
        Err(Error::InvalidName {
            what,
            value: value.to_string(),
            why,
        })
    };
    if value.is_empty() {
        return bad("it is empty");
    }
    if value.len() > 200 {
        return bad("it is longer than 200 bytes");
    }
    if value.chars().any(|c| c.is_control()) {
        return bad("it contains a control character");
    }
    if value.contains('@') {
        return bad("'@' separates a name from its version");
    }
    if what == "tag" && value.parse::<i64>().is_ok() {
        return bad("a tag cannot be a number (numbers are versions)");
    }
    // names are folders; tags and branches are `<name>.json` files
    let limit = if what == "name" {
        MAX_FILE_NAME
    } else {
        MAX_FILE_NAME - ".json".len()
    };
    if encode_name(value).len() > limit {
        // 200 bytes of text other than ASCII letters and digits take three bytes each on disk
        return bad("its file name in the jar would be longer than 255 bytes (each byte other than an ASCII letter, digit, '_', '-' or '.' takes three): use a shorter name");
    }
    Ok(())
}

/// The longest file name the usual file systems (ext4, APFS, NTFS) take.
const MAX_FILE_NAME: usize = 255;

/// A name as a file name: ASCII letters, digits, `_`, `-` and (not leading) `.` stay, every other
/// byte becomes `%XX`.
pub(crate) fn encode_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (i, b) in name.bytes().enumerate() {
        let keep = b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The inverse of [`encode_name`]; `None` for a file name it could not have produced.
pub(crate) fn decode_name(file: &str) -> Option<String> {
    let bytes = file.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let h = file.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let name = String::from_utf8(out).ok()?;
    (encode_name(&name) == file).then_some(name)
}

// ---------------------------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------------------------

/// Now, as RFC 3339 UTC with milliseconds (`2026-11-26T09:40:00.123Z`).
pub(crate) fn now_rfc3339() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(d.as_secs() as i64, d.subsec_millis())
}

/// Unix seconds and milliseconds as RFC 3339 UTC.
pub(crate) fn rfc3339(secs: i64, millis: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Failures the unit tests ask for: the next `op` on a path containing a given text fails
/// with ENOSPC, in this thread. How the tests reach states a full disk or a failing disk
/// leaves at one exact step (the log folder's fsync after the entry is linked, a manifest's
/// write) without a fault-injecting tracer.
#[cfg(test)]
pub(crate) mod faults {
    use std::cell::RefCell;
    use std::path::Path;

    use crate::error::{Error, Result};

    thread_local! {
        static PLANNED: RefCell<Vec<(&'static str, String)>> = const { RefCell::new(Vec::new()) };
    }

    /// Make the next `op` (`"write"`, `"fsync directory"`) on a path containing `part` fail.
    pub(crate) fn fail_next(op: &'static str, part: &str) {
        PLANNED.with(|p| p.borrow_mut().push((op, part.to_string())));
    }

    pub(super) fn check(op: &'static str, path: &Path) -> Result<()> {
        let text = path.to_string_lossy();
        let hit = PLANNED.with(|p| {
            let mut p = p.borrow_mut();
            let i = p
                .iter()
                .position(|(o, part)| *o == op && text.contains(part.as_str()));
            i.map(|i| p.remove(i))
        });
        match hit {
            Some(_) => Err(Error::io(
                op,
                path,
                std::io::Error::from_raw_os_error(28), // ENOSPC
            )),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_file_names() {
        for name in ["df", "my model", ".hidden", "a/b", "ünï", "x.y", "%41", "-"] {
            let enc = encode_name(name);
            assert!(!enc.contains('/') && !enc.starts_with('.'), "{enc}");
            assert_eq!(decode_name(&enc).as_deref(), Some(name));
        }
        assert_eq!(decode_name("%2x"), None);
        assert_eq!(decode_name("a b"), None);
    }

    #[test]
    fn records_detect_tears() {
        let rec = seal_record(&serde_json::json!({"seq": 3, "op": "save"}));
        assert_eq!(open_record(&rec).unwrap()["seq"], 3);
        for cut in 0..rec.len() {
            assert!(open_record(&rec[..cut]).is_err(), "cut at {cut}");
        }
        let mut garbled = rec.clone();
        garbled[3] ^= 1;
        assert!(open_record(&garbled).is_err());
    }

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(rfc3339(1_795_685_400, 123), "2026-11-26T09:30:00.123Z");
    }

    #[test]
    fn bad_names_are_rejected_with_the_reason() {
        assert!(check_name("name", "").is_err());
        assert!(check_name("name", "a@b").is_err());
        assert!(check_name("tag", "-1").is_err());
        assert!(check_name("tag", "best").is_ok());
        let e = check_name("name", "a\nb").unwrap_err().to_string();
        assert_eq!(e, "invalid name \"a\\nb\": it contains a control character");
        // 100 two-byte characters fit the 200-byte limit but would be a 600-byte file name
        let long = "é".repeat(100);
        let e = check_name("name", &long).unwrap_err().to_string();
        assert!(e.contains("longer than 255 bytes"), "{e}");
        assert!(check_name("name", &"é".repeat(42)).is_ok()); // 252 bytes on disk
        assert!(check_name("name", &"a".repeat(200)).is_ok());
        // a tag or branch is a file: 252 bytes and ".json" would not fit
        for what in ["tag", "branch"] {
            let e = check_name(what, &"é".repeat(42)).unwrap_err().to_string();
            assert!(e.contains("longer than 255 bytes"), "{e}");
            assert!(check_name(what, &"é".repeat(41)).is_ok()); // 246 + 5 bytes
        }
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(hex(&[0, 255, 16]), "00ff10");
        assert_eq!(unhex("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(unhex("0"), None);
    }
}
