//! The [`Jar`]: saving, loading, history, branches, tags, gc and verify.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::chunks::{self, ChunkRef, ChunkStore, Layout, Put, Stream};
use crate::error::{Error, IoContext, Result};
use crate::fsio::{self, encode_name};
use crate::manifest::{self, Manifest, StoredManifest, FORMAT};
use crate::pickle;
use crate::sign::{Key, SignatureStatus};

const JAR_FILE: &str = "jar.json";
/// The folders of a jar.
const JAR_DIRS: [&str; 6] = ["chunks", "manifests", "log", "branches", "tags", "tmp"];
const LOCK_FILE: &str = "lock";
const MAIN: &str = "main";
const MAX_BRANCH_DEPTH: usize = 256;

/// Which version to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionSpec {
    /// The newest version (an error if the name was deleted).
    Latest,
    /// A 1-based version number; negative counts from the end (-1 is the newest).
    Number(i64),
    /// A tag given with [`Jar::tag`].
    Tag(String),
}

impl VersionSpec {
    /// Parse what a user typed after `NAME@`: a number, else a tag; empty is the latest.
    pub fn parse(s: &str) -> VersionSpec {
        if s.is_empty() {
            VersionSpec::Latest
        } else if let Ok(n) = s.parse::<i64>() {
            VersionSpec::Number(n)
        } else {
            VersionSpec::Tag(s.to_string())
        }
    }
}

/// What to save.
#[derive(Debug, Clone)]
pub struct SaveInput<'a> {
    /// The pickle stream (protocol 5 when there are buffers).
    pub pickle: &'a [u8],
    /// The out-of-band buffers, in `buffer_callback` order.
    pub buffers: Vec<&'a [u8]>,
    /// What the saver records about the object (a JSON object; `null` for nothing).
    pub meta: serde_json::Value,
    /// A note.
    pub note: Option<String>,
}

impl<'a> SaveInput<'a> {
    /// A pickle without buffers, meta or note.
    pub fn new(pickle: &'a [u8]) -> Self {
        SaveInput {
            pickle,
            buffers: Vec::new(),
            meta: serde_json::Value::Null,
            note: None,
        }
    }
}

/// One entry of a name's history as seen from a branch.
#[derive(Debug, Clone)]
pub struct VersionInfo {
    /// The object name.
    pub name: String,
    /// The branch whose log holds the entry (an ancestor for inherited history).
    pub branch: String,
    /// The 1-based version number on the asked branch (`None` for a deletion).
    pub version: Option<usize>,
    /// The entry's sequence number in its branch's log.
    pub seq: u64,
    /// When the entry was made, RFC 3339 UTC.
    pub time: String,
    /// Whether this entry is a deletion.
    pub deleted: bool,
    /// The manifest id (`None` for a deletion).
    pub id: Option<String>,
    /// The manifest (`None` for a deletion).
    pub manifest: Option<Manifest>,
    /// The signature's status under the current key.
    pub signature: SignatureStatus,
    /// The id of the key that signed, if signed.
    pub key_id: Option<String>,
    /// Tags pointing at this version.
    pub tags: Vec<String>,
    /// Why this version's manifest cannot be read (a damaged version, listed by
    /// [`Jar::log`] rather than failing the whole history); `None` when it reads.
    pub problem: Option<String>,
}

impl VersionInfo {
    /// The info as a JSON object (the shape the CLI's `--json` and the Python binding use):
    /// `name, branch, version, seq, id, time, deleted, note, size, stored, meta, globals,
    /// buffers` (sizes), `tags, signature, key_id`.
    pub fn to_json(&self) -> serde_json::Value {
        let m = self.manifest.as_ref();
        json!({
            "name": self.name,
            "branch": self.branch,
            "version": self.version,
            "seq": self.seq,
            "id": self.id,
            "time": self.time,
            "deleted": self.deleted,
            "note": m.and_then(|m| m.note.clone()),
            "size": m.map(|m| m.size),
            "stored": m.map(|m| m.stored),
            "meta": m.map(|m| m.meta.clone()).unwrap_or(serde_json::Value::Null),
            "globals": m.map(|m| m.globals.clone()).unwrap_or_default(),
            "buffers": m.map(|m| m.buffers.iter().map(|b| b.size).collect::<Vec<_>>()).unwrap_or_default(),
            "tags": self.tags,
            "signature": self.signature.as_str(),
            "key_id": self.key_id,
            "problem": self.problem,
        })
    }

    /// `branch:name@N` (the asked branch is not known here: the entry's branch is used).
    pub fn label(&self) -> String {
        match self.version {
            Some(v) => format!("{}:{}@{}", self.branch, self.name, v),
            None => format!("{}:{} (deletion #{})", self.branch, self.name, self.seq),
        }
    }
}

/// Options for [`Jar::load`].
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// Describe raw chunks of large buffers as file pieces to map instead of reading them.
    pub map: bool,
}

/// A loaded version.
#[derive(Debug)]
pub struct Loaded {
    /// What was loaded.
    pub info: VersionInfo,
    /// The pickle stream.
    pub pickle: Vec<u8>,
    /// The out-of-band buffers.
    pub buffers: Vec<Buffer>,
}

/// One out-of-band buffer of a loaded version.
#[derive(Debug)]
pub enum Buffer {
    /// Read into memory.
    Bytes(Vec<u8>),
    /// To be assembled by mapping files (zero-copy layout, [`LoadOptions::map`]).
    Mapped(MappedBuffer),
}

impl Buffer {
    /// The buffer's length.
    pub fn len(&self) -> u64 {
        match self {
            Buffer::Bytes(b) => b.len() as u64,
            Buffer::Mapped(m) => m.len,
        }
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes, reading mapped pieces from their files.
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        match self {
            Buffer::Bytes(b) => Ok(b.clone()),
            Buffer::Mapped(m) => {
                let mut out = Vec::with_capacity(m.len as usize);
                for p in &m.pieces {
                    match &p.source {
                        PieceSource::Bytes(b) => out.extend_from_slice(b),
                        PieceSource::File(path) => {
                            out.extend_from_slice(&fs::read(path).ctx("read chunk", path)?)
                        }
                    }
                }
                Ok(out)
            }
        }
    }
}

/// A large buffer as a list of pieces, each at a page-aligned offset.
#[derive(Debug)]
pub struct MappedBuffer {
    /// Total length.
    pub len: u64,
    /// The pieces in order; they tile `0..len`.
    pub pieces: Vec<Piece>,
}

/// One piece of a [`MappedBuffer`].
#[derive(Debug)]
pub struct Piece {
    /// Offset in the buffer (a multiple of [`crate::FIXED_CHUNK`]).
    pub offset: u64,
    /// Length.
    pub len: u64,
    /// Where the bytes come from.
    pub source: PieceSource,
}

/// Where a piece's bytes are.
#[derive(Debug)]
pub enum PieceSource {
    /// The whole of this raw chunk file (its size was checked, its content is not re-hashed:
    /// [`Jar::verify`] does that).
    File(PathBuf),
    /// Decompressed (and hash-checked) bytes of a compressed chunk.
    Bytes(Vec<u8>),
}

/// What [`Jar::gc`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Chunk files removed.
    pub chunks: u64,
    /// Manifest files removed.
    pub manifests: u64,
    /// Log entries removed (history of deleted names, torn records).
    pub entries: u64,
    /// Temporary files of interrupted writes removed.
    pub temporary: u64,
    /// Bytes freed.
    pub bytes: u64,
}

/// One problem found by [`Jar::verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The damaged or missing file.
    pub path: String,
    /// What is wrong.
    pub problem: String,
    /// The versions affected, as `branch:name@N` (and `name#tag`).
    pub versions: Vec<String>,
}

/// The outcome of [`Jar::verify`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Whether nothing is wrong.
    pub ok: bool,
    /// Chunks re-hashed.
    pub chunks: u64,
    /// Manifests checked.
    pub manifests: u64,
    /// Log entries checked.
    pub entries: u64,
    /// What is wrong.
    pub problems: Vec<Problem>,
    /// Leftovers of interrupted writes (not problems; gc removes them).
    pub temporary: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Op {
    Save,
    Delete,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct EntryRec {
    format: u64,
    branch: String,
    name: String,
    seq: u64,
    op: Op,
    manifest: Option<String>,
    time: String,
    /// On a delete: the number of the last version before it, so that version numbers go on
    /// from there after gc has removed those versions (absent in older jars, whose numbers
    /// start again at 1 after a gc).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    versions_before: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct BranchRec {
    format: u64,
    name: String,
    parent: String,
    /// For each name, the highest sequence number of the parent's own log at fork time.
    fork: BTreeMap<String, u64>,
    time: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TagRec {
    format: u64,
    name: String,
    tag: String,
    manifest: String,
    branch: String,
    seq: u64,
    version: usize,
    time: String,
}

/// Damaged log entries of a history: each with its place in the visible order (`(depth,
/// seq)`, ancestors first) and its file.
type Damage = Vec<((usize, u64), PathBuf)>;

/// A log entry with where it came from.
#[derive(Debug, Clone)]
struct Entry {
    rec: EntryRec,
}

/// A file of the log that could not be read as a record.
struct BadFile {
    path: PathBuf,
    problem: String,
}

/// `bytes` for a person: `512 B`, `3.4 KB`, `96.0 MB`, `1.2 GB` (decimal units, as the Python
/// API writes them too: the CLI, the error messages and the notebook tables all agree).
///
/// ```
/// assert_eq!(brinery_jar::human_bytes(999), "999 B");
/// assert_eq!(brinery_jar::human_bytes(48_000_000), "48.0 MB");
/// ```
pub fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b < 1_000 => format!("{b} B"),
        b if b < 1_000_000 => format!("{:.1} KB", b as f64 / 1e3),
        b if b < 1_000_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b => format!("{:.1} GB", b as f64 / 1e9),
    }
}

/// `$BRINERY_JAR` if set, else the nearest `.brinery` folder at or above `start`.
pub fn find_jar(start: &Path) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BRINERY_JAR").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    start
        .ancestors()
        .map(|a| a.join(".brinery"))
        .find(|p| p.is_dir())
}

/// Where the jar for `start` is or would be created: [`find_jar`], else `.brinery` at the top of
/// the enclosing git repository, else in `start`.
pub fn default_jar_dir(start: &Path) -> PathBuf {
    if let Some(p) = find_jar(start) {
        return p;
    }
    let top = start
        .ancestors()
        .find(|a| a.join(".git").exists())
        .unwrap_or(start);
    top.join(".brinery")
}

/// A jar folder. Cheap to share between threads (`&Jar` is enough for every operation).
#[derive(Debug)]
pub struct Jar {
    root: PathBuf,
    chunks: ChunkStore,
    /// The signing key, looked up (and created) on first use: reading a jar's list of names
    /// needs no key.
    key: std::sync::OnceLock<Option<Key>>,
}

fn shard_of(id: &str) -> &str {
    id.get(..2).unwrap_or("00")
}

impl Jar {
    /// Open the jar at `path`, creating it if it does not exist. A folder that is not a jar is
    /// made one only when it is new or empty (or holds only the empty folders of an interrupted
    /// `init`): a jar owns everything in its folder, and gc deletes what it does not know.
    pub fn init(path: impl AsRef<Path>) -> Result<Jar> {
        let root = path.as_ref().to_path_buf();
        let jar_file = root.join(JAR_FILE);
        if !jar_file.exists() {
            Jar::check_new_root(&root)?;
        }
        for d in JAR_DIRS {
            fsio::ensure_dir(&root.join(d))?;
        }
        if !jar_file.exists() {
            let rec = fsio::seal_record(&json!({
                "format": FORMAT,
                "kind": "brinery-jar",
                "created": fsio::now_rfc3339(),
            }));
            fsio::write_new(&root.join("tmp"), &jar_file, &[&rec], true)?;
        }
        let lock = root.join(LOCK_FILE);
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&lock)
            .ctx("create", &lock)?;
        Jar::open(root)
    }

    /// Refuse to make a jar in `root` when it holds anything but what an interrupted `init`
    /// leaves (the jar's empty folders, its lock file, the temporary file of a `jar.json` not
    /// yet linked).
    fn check_new_root(root: &Path) -> Result<()> {
        let entries = match fs::read_dir(root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("list", root, e)),
        };
        for entry in entries {
            let entry = entry.ctx("list", root)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let own = if name == LOCK_FILE {
                path.is_file()
            } else if name == "tmp" && path.is_dir() {
                let mut all_ours = true;
                for e in fs::read_dir(&path).ctx("list", &path)? {
                    let e = e.ctx("list", &path)?;
                    all_ours &=
                        e.path().is_file() && fsio::is_tmp_name(&e.file_name().to_string_lossy());
                }
                all_ours
            } else {
                JAR_DIRS.contains(&name.as_str())
                    && path.is_dir()
                    && fs::read_dir(&path).ctx("list", &path)?.next().is_none()
            };
            if !own {
                return Err(Error::NotEmpty {
                    path: root.to_path_buf(),
                    what: name,
                });
            }
        }
        Ok(())
    }

    /// Open an existing jar. The current user's key ([`Key::user`]) signs saves and decides
    /// which versions are trusted; without a usable key, saves are unsigned.
    pub fn open(path: impl AsRef<Path>) -> Result<Jar> {
        let root = path.as_ref().to_path_buf();
        let jar_file = root.join(JAR_FILE);
        let bytes = fsio::read_opt(&jar_file)?.ok_or_else(|| Error::NotAJar(root.clone()))?;
        let rec = fsio::open_record(&bytes).map_err(|_| Error::NotAJar(root.clone()))?;
        let format = rec["format"].as_u64().unwrap_or(0);
        if format != FORMAT {
            return Err(Error::Format {
                found: format,
                supported: FORMAT,
                path: jar_file,
            });
        }
        Ok(Jar {
            chunks: ChunkStore {
                dir: root.join("chunks"),
                tmp: root.join("tmp"),
            },
            root,
            key: std::sync::OnceLock::new(),
        })
    }

    /// Use `key` (or no key) instead of the current user's.
    pub fn with_key(mut self, key: Option<Key>) -> Jar {
        self.key = std::sync::OnceLock::from(key);
        self
    }

    /// The signing key in use (the current user's unless [`Jar::with_key`] chose one; created on
    /// first use).
    pub fn key(&self) -> Option<&Key> {
        self.key.get_or_init(|| Key::user().ok()).as_ref()
    }

    /// The jar's root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn lock(&self, exclusive: bool) -> Result<File> {
        let p = self.root.join(LOCK_FILE);
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .ctx("open lock", &p)?;
        if exclusive {
            f.lock().ctx("lock", &p)?;
        } else {
            f.lock_shared().ctx("lock", &p)?;
        }
        Ok(f)
    }

    /// The exclusive lock if no one else holds the lock now (`None` if someone does).
    fn try_lock_exclusive(&self) -> Option<File> {
        let p = self.root.join(LOCK_FILE);
        let f = OpenOptions::new().append(true).open(&p).ok()?;
        f.try_lock().ok()?;
        Some(f)
    }

    fn log_dir(&self, branch: &str, name: &str) -> PathBuf {
        self.root
            .join("log")
            .join(encode_name(branch))
            .join(encode_name(name))
    }

    fn manifest_path(&self, id: &str) -> PathBuf {
        self.root
            .join("manifests")
            .join(shard_of(id))
            .join(format!("{id}.json"))
    }

    // -----------------------------------------------------------------------------------------
    // Branches
    // -----------------------------------------------------------------------------------------

    fn branch_path(&self, branch: &str) -> PathBuf {
        self.root
            .join("branches")
            .join(format!("{}.json", encode_name(branch)))
    }

    fn branch_rec(&self, branch: &str) -> Result<Option<BranchRec>> {
        if branch == MAIN {
            return Ok(None);
        }
        let p = self.branch_path(branch);
        let bytes = fsio::read_opt(&p)?.ok_or_else(|| Error::NoBranch(branch.to_string()))?;
        let v =
            fsio::open_record(&bytes).map_err(|why| Error::corrupt("branch record", why, &p))?;
        let rec: BranchRec = serde_json::from_value(v)
            .map_err(|e| Error::corrupt("branch record", e.to_string(), &p))?;
        Ok(Some(rec))
    }

    /// The branch and its ancestors, nearest first.
    fn ancestry(&self, branch: &str) -> Result<Vec<String>> {
        let mut out = vec![branch.to_string()];
        let mut cur = branch.to_string();
        while let Some(rec) = self.branch_rec(&cur)? {
            if out.len() > MAX_BRANCH_DEPTH || out.contains(&rec.parent) {
                return Err(Error::corrupt(
                    "branch record",
                    "branch ancestry loops or is too deep",
                    &self.branch_path(&cur),
                ));
            }
            out.push(rec.parent.clone());
            cur = rec.parent;
        }
        Ok(out)
    }

    /// Every branch, `main` included, sorted.
    pub fn branches(&self) -> Result<Vec<String>> {
        let mut out = vec![MAIN.to_string()];
        for f in fsio::list_dir(&self.root.join("branches"))? {
            if let Some(name) = f.strip_suffix(".json").and_then(fsio::decode_name) {
                if self.branch_rec(&name).is_ok() && name != MAIN {
                    out.push(name);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Create branch `new` starting from `from`'s current state.
    pub fn create_branch(&self, new: &str, from: &str) -> Result<()> {
        fsio::check_name("branch", new)?;
        if new == MAIN || self.branch_path(new).exists() {
            return Err(Error::BranchExists(new.to_string()));
        }
        self.ancestry(from)?;
        let _lock = self.lock(false)?;
        let mut fork = BTreeMap::new();
        let from_dir = self.root.join("log").join(encode_name(from));
        for f in fsio::list_dir(&from_dir)? {
            if let Some(name) = fsio::decode_name(&f) {
                let max = self.max_seq(&from_dir.join(&f))?;
                if max > 0 {
                    fork.insert(name, max);
                }
            }
        }
        let rec = BranchRec {
            format: FORMAT,
            name: new.to_string(),
            parent: from.to_string(),
            fork,
            time: fsio::now_rfc3339(),
        };
        let bytes = fsio::seal_record(&serde_json::to_value(&rec).unwrap_or_default());
        if !fsio::write_new(&self.tmp(), &self.branch_path(new), &[&bytes], true)? {
            return Err(Error::BranchExists(new.to_string()));
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Logs
    // -----------------------------------------------------------------------------------------

    /// The file name of the log entry with sequence number `seq`.
    fn entry_file_name(seq: u64) -> String {
        format!("{seq:020}.json")
    }

    fn seq_of(file: &str) -> Option<u64> {
        let digits = file.strip_suffix(".json")?;
        (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| digits.parse().ok())
            .flatten()
    }

    /// The highest sequence number used in a log folder (valid or not).
    fn max_seq(&self, dir: &Path) -> Result<u64> {
        Ok(fsio::list_dir(dir)?
            .iter()
            .filter_map(|f| Jar::seq_of(f))
            .max()
            .unwrap_or(0))
    }

    /// The valid entries of one branch's own log for `name`, by sequence, and the bad files.
    fn own_entries(&self, branch: &str, name: &str) -> Result<(Vec<Entry>, Vec<BadFile>)> {
        let dir = self.log_dir(branch, name);
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for f in fsio::list_dir(&dir)? {
            let path = dir.join(&f);
            let Some(seq) = Jar::seq_of(&f) else {
                bad.push(BadFile {
                    path,
                    problem: "not a log entry file name".into(),
                });
                continue;
            };
            let Some(bytes) = fsio::read_opt(&path)? else {
                continue;
            };
            let rec = fsio::open_record(&bytes)
                .map_err(|why| why.to_string())
                .and_then(|v| serde_json::from_value::<EntryRec>(v).map_err(|e| e.to_string()));
            match rec {
                Ok(r) if r.seq == seq && r.branch == branch && r.name == name => {
                    good.push(Entry { rec: r })
                }
                Ok(_) => bad.push(BadFile {
                    path,
                    problem: "entry does not match its file name".into(),
                }),
                Err(problem) => bad.push(BadFile { path, problem }),
            }
        }
        good.sort_by_key(|e| e.rec.seq);
        Ok((good, bad))
    }

    /// The history of `name` as seen from `branch`: inherited entries (up to each fork point),
    /// then the branch's own.
    fn visible(&self, branch: &str, name: &str) -> Result<Vec<Entry>> {
        // every read by name comes here: a name no save accepts (empty, `@`, control
        // characters) is refused by name, not met as a folder path (`log/main/` for "")
        fsio::check_name("name", name)?;
        let chain = self.ancestry(branch)?;
        self.visible_in(&chain, name)
    }

    fn visible_in(&self, chain: &[String], name: &str) -> Result<Vec<Entry>> {
        Ok(self.history_in(chain, name)?.0)
    }

    /// [`Jar::visible_in`] with the damaged entries of the same history, read in the same pass
    /// (one read of each log folder): each with its place in the visible order (`(depth, seq)`,
    /// ancestors first, the order entries come in) and its file. An entry file whose name is
    /// not a sequence number has no place and is left to `verify`.
    fn history_in(&self, chain: &[String], name: &str) -> Result<(Vec<Entry>, Damage)> {
        let Some((branch, parents)) = chain.split_first() else {
            return Ok((Vec::new(), Vec::new()));
        };
        let (mut entries, mut damaged) = (Vec::new(), Vec::new());
        if let Some(rec) = self.branch_rec(branch)? {
            let cutoff = rec.fork.get(name).copied().unwrap_or(0);
            let parent_depth = parents.len().saturating_sub(1);
            let (inherited, inherited_damage) = self.history_in(parents, name)?;
            entries = inherited
                .into_iter()
                .filter(|e| e.rec.branch != rec.parent || e.rec.seq <= cutoff)
                .collect();
            damaged = inherited_damage
                .into_iter()
                .filter(|((depth, seq), _)| *depth != parent_depth || *seq <= cutoff)
                .collect();
        }
        let (good, bad) = self.own_entries(branch, name)?;
        entries.extend(good);
        for b in bad {
            let file = b.path.file_name().and_then(|f| f.to_str()).unwrap_or("");
            if let Some(seq) = Jar::seq_of(file) {
                damaged.push(((parents.len(), seq), b.path));
            }
        }
        Ok((entries, damaged))
    }

    /// Whether `branch` sees (or saw, before a delete and gc) the entry `seq` of `name` saved on
    /// `on`: `on` is `branch` itself, or an ancestor whose entry came before the fork of the
    /// branch below it in the chain (the cut [`Jar::visible_in`] applies).
    fn reaches(&self, branch: &str, name: &str, on: &str, seq: u64) -> Result<bool> {
        let chain = self.ancestry(branch)?;
        let Some(j) = chain.iter().position(|b| b == on) else {
            return Ok(false);
        };
        if j == 0 {
            return Ok(true);
        }
        let child = self.branch_rec(&chain[j - 1])?;
        Ok(child.is_some_and(|rec| seq <= rec.fork.get(name).copied().unwrap_or(0)))
    }

    /// Append an entry to `branch`'s log of `name` at the next free sequence number. The
    /// record is created with a create-only link: if another saver took the number first, the
    /// link fails and we try the next one, so no update is lost.
    fn append(&self, branch: &str, name: &str, op: Op, manifest: Option<&str>) -> Result<u64> {
        self.append_entry(branch, name, op, manifest, None)
    }

    /// [`Jar::append`] with a delete's [`EntryRec::versions_before`].
    fn append_entry(
        &self,
        branch: &str,
        name: &str,
        op: Op,
        manifest: Option<&str>,
        versions_before: Option<usize>,
    ) -> Result<u64> {
        let dir = self.log_dir(branch, name);
        fsio::ensure_dir(&dir)?;
        for _ in 0..100_000 {
            let seq = self.max_seq(&dir)? + 1;
            let rec = EntryRec {
                format: FORMAT,
                branch: branch.to_string(),
                name: name.to_string(),
                seq,
                op,
                manifest: manifest.map(str::to_string),
                time: fsio::now_rfc3339(),
                versions_before,
            };
            let bytes = fsio::seal_record(&serde_json::to_value(&rec).unwrap_or_default());
            let path = dir.join(Jar::entry_file_name(seq));
            if fsio::write_new(&self.tmp(), &path, &[&bytes], true)? {
                return Ok(seq);
            }
        }
        Err(Error::io(
            "append log entry",
            &dir,
            std::io::Error::other("too much contention"),
        ))
    }

    // -----------------------------------------------------------------------------------------
    // Manifests and version info
    // -----------------------------------------------------------------------------------------

    /// Read and check a manifest by id.
    pub fn read_manifest(&self, id: &str) -> Result<StoredManifest> {
        let p = self.manifest_path(id);
        let bytes = fs::read(&p).ctx("read manifest", &p)?;
        manifest::decode(id, &bytes, &p)
    }

    fn tags_of(&self, name: &str) -> Result<Vec<TagRec>> {
        let dir = self.root.join("tags").join(encode_name(name));
        let mut out = Vec::new();
        for f in fsio::list_dir(&dir)? {
            if let Some(bytes) = fsio::read_opt(&dir.join(&f))? {
                if let Ok(v) = fsio::open_record(&bytes) {
                    if let Ok(t) = serde_json::from_value::<TagRec>(v) {
                        out.push(t);
                    }
                }
            }
        }
        Ok(out)
    }

    fn info_of(&self, e: &Entry, version: Option<usize>, tags: &[TagRec]) -> Result<VersionInfo> {
        let mut info = Jar::entry_info(e, version);
        if let Some(id) = e.rec.manifest.as_ref().filter(|_| e.rec.op == Op::Save) {
            let m = self.read_manifest(id)?;
            info.signature = SignatureStatus::of(self.key(), &m.body, m.signature.as_ref());
            info.key_id = m.signature.map(|s| s.key_id);
            info.manifest = Some(m.manifest);
        }
        info.tags = tags
            .iter()
            .filter(|t| Some(&t.manifest) == e.rec.manifest.as_ref())
            .map(|t| t.tag.clone())
            .collect();
        Ok(info)
    }

    /// What the log entry alone says (no manifest read yet).
    fn entry_info(e: &Entry, version: Option<usize>) -> VersionInfo {
        VersionInfo {
            name: e.rec.name.clone(),
            branch: e.rec.branch.clone(),
            version,
            seq: e.rec.seq,
            time: e.rec.time.clone(),
            deleted: e.rec.op == Op::Delete,
            id: e.rec.manifest.clone(),
            manifest: None,
            signature: SignatureStatus::Unsigned,
            key_id: None,
            tags: Vec::new(),
            problem: None,
        }
    }

    /// [`Jar::info_of`] for a listing: a version whose manifest is damaged is described (no
    /// manifest, its [`VersionInfo::problem`]) instead of failing the list, so one damaged
    /// version does not hide the others (loading it still fails, naming the file).
    fn listed_info(
        &self,
        e: &Entry,
        version: Option<usize>,
        tags: &[TagRec],
    ) -> Result<VersionInfo> {
        match self.info_of(e, version, tags) {
            Err(err @ (Error::Corrupt { .. } | Error::Io { .. })) => Ok(VersionInfo {
                problem: Some(err.to_string()),
                ..Jar::entry_info(e, version)
            }),
            other => other,
        }
    }

    /// The history of `name` on `branch`, oldest first (deletions included).
    pub fn log(&self, branch: &str, name: &str) -> Result<Vec<VersionInfo>> {
        let entries = self.visible(branch, name)?;
        if entries.is_empty() {
            return Err(Error::NotFound {
                name: name.to_string(),
                branch: branch.to_string(),
            });
        }
        let tags = self.tags_of(name)?;
        Jar::numbered(&entries)
            .into_iter()
            .map(|(v, e)| self.listed_info(e, v, &tags))
            .collect()
    }

    /// Each entry of a history with its version number (`None` for a delete): saves count up
    /// from 1, and a delete that recorded how many versions came before it
    /// ([`EntryRec::versions_before`]) carries the count past versions gc has removed.
    fn numbered(entries: &[Entry]) -> Vec<(Option<usize>, &Entry)> {
        let mut n = 0usize;
        entries
            .iter()
            .map(|e| match e.rec.op {
                Op::Save => {
                    n += 1;
                    (Some(n), e)
                }
                Op::Delete => {
                    n = n.max(e.rec.versions_before.unwrap_or(0));
                    (None, e)
                }
            })
            .collect()
    }

    /// Find the entry for `spec`; returns it with its version number on `branch`.
    fn resolve(&self, branch: &str, name: &str, spec: &VersionSpec) -> Result<VersionInfo> {
        let tags = self.tags_of(name)?;
        if let VersionSpec::Tag(tag) = spec {
            let t = tags
                .iter()
                .find(|t| &t.tag == tag)
                .ok_or_else(|| Error::NoTag {
                    name: name.to_string(),
                    tag: tag.clone(),
                })?;
            if !self.reaches(branch, name, &t.branch, t.seq)? {
                return Err(Error::TagElsewhere {
                    name: name.to_string(),
                    tag: tag.clone(),
                    tag_branch: t.branch.clone(),
                    branch: branch.to_string(),
                });
            }
            let entry = Entry {
                rec: EntryRec {
                    format: FORMAT,
                    branch: t.branch.clone(),
                    name: name.to_string(),
                    seq: t.seq,
                    op: Op::Save,
                    manifest: Some(t.manifest.clone()),
                    time: t.time.clone(),
                    versions_before: None,
                },
            };
            // Its number on the asked branch when the branch sees it, else the tagged number.
            let visible = self.visible(branch, name).unwrap_or_default();
            let number = Jar::numbered(&visible)
                .into_iter()
                .find(|(v, e)| v.is_some() && e.rec.manifest.as_ref() == Some(&t.manifest))
                .and_then(|(v, _)| v)
                .unwrap_or(t.version);
            let mut info = self.info_of(&entry, Some(number), &tags)?;
            if let Some(e) = visible
                .iter()
                .find(|e| e.rec.manifest.as_ref() == Some(&t.manifest))
            {
                info.time = e.rec.time.clone();
            }
            return Ok(info);
        }
        // the history and its damaged entries in one pass (`visible`, plus the damage)
        fsio::check_name("name", name)?;
        let chain = self.ancestry(branch)?;
        let (entries, damaged) = self.history_in(&chain, name)?;
        let not_found = || Error::NotFound {
            name: name.to_string(),
            branch: branch.to_string(),
        };
        let last = entries.last().ok_or_else(not_found)?;
        let saves: Vec<(usize, &Entry)> = Jar::numbered(&entries)
            .into_iter()
            .filter_map(|(v, e)| v.map(|v| (v, e)))
            .collect();
        let no_version = |n: i64| Error::NoVersion {
            name: name.to_string(),
            branch: branch.to_string(),
            version: n,
            count: saves.len(),
        };
        let index = match spec {
            VersionSpec::Latest => {
                if last.rec.op == Op::Delete {
                    return Err(Error::Deleted {
                        name: name.to_string(),
                        branch: branch.to_string(),
                    });
                }
                saves.len() - 1
            }
            VersionSpec::Number(n) if *n > 0 => saves
                .iter()
                .position(|(v, _)| *v as i64 == *n)
                .ok_or_else(|| no_version(*n))?,
            VersionSpec::Number(n) => {
                let i = saves.len() as i64 + n;
                if *n == 0 || i < 0 {
                    return Err(no_version(*n));
                }
                i as usize
            }
            VersionSpec::Tag(_) => unreachable!("handled above"),
        };
        if let VersionSpec::Number(n) = spec {
            // a damaged entry between the newest version and this one (before it for a number
            // counted from the first, after it for one counted from the newest) may have been a
            // save: the number could name another version than the user's
            let depth_of = |b: &str| {
                chain
                    .iter()
                    .position(|c| c == b)
                    .map_or(0, |i| chain.len() - 1 - i)
            };
            let e = &saves[index].1.rec;
            let at = (depth_of(&e.branch), e.seq);
            if let Some((_, path)) =
                damaged
                    .into_iter()
                    .find(|(place, _)| if *n > 0 { *place < at } else { *place > at })
            {
                return Err(Error::Renumbered {
                    name: name.to_string(),
                    branch: branch.to_string(),
                    version: *n,
                    path,
                });
            }
        }
        let (number, entry) = saves[index];
        self.info_of(entry, Some(number), &tags)
    }

    /// The info of one version, without reading its data.
    pub fn info(&self, branch: &str, name: &str, spec: &VersionSpec) -> Result<VersionInfo> {
        self.resolve(branch, name, spec)
    }

    /// Whether `name` exists (saved and not deleted) on `branch`.
    pub fn contains(&self, branch: &str, name: &str) -> Result<bool> {
        if fsio::check_name("name", name).is_err() {
            return Ok(false); // no save accepts it, so nothing has it
        }
        Ok(self
            .visible(branch, name)?
            .last()
            .is_some_and(|e| e.rec.op == Op::Save))
    }

    /// The names that exist (not deleted) on `branch`, sorted.
    pub fn names(&self, branch: &str) -> Result<Vec<String>> {
        let chain = self.ancestry(branch)?;
        let mut candidates = BTreeSet::new();
        for b in &chain {
            for f in fsio::list_dir(&self.root.join("log").join(encode_name(b)))? {
                if let Some(n) = fsio::decode_name(&f) {
                    candidates.insert(n);
                }
            }
        }
        let mut out = Vec::new();
        for n in candidates {
            if self
                .visible_in(&chain, &n)?
                .last()
                .is_some_and(|e| e.rec.op == Op::Save)
            {
                out.push(n);
            }
        }
        Ok(out)
    }

    // -----------------------------------------------------------------------------------------
    // Save
    // -----------------------------------------------------------------------------------------

    /// Store every stream's chunks, in parallel, and return the streams and bytes written.
    /// Every chunk file this call creates is added to `created`, also when it fails part-way
    /// (so that a failed save can remove what it wrote).
    fn store_streams(
        &self,
        streams: &[(&[u8], Layout)],
        created: &mut Vec<PathBuf>,
    ) -> Result<(Vec<Stream>, u64)> {
        struct Job<'a> {
            stream: usize,
            data: &'a [u8],
            fixed: bool,
        }
        let mut jobs = Vec::new();
        for (i, (data, layout)) in streams.iter().enumerate() {
            for r in chunks::cut(data, *layout) {
                jobs.push(Job {
                    stream: i,
                    data: &data[r],
                    fixed: *layout == Layout::Fixed,
                });
            }
        }
        let total: usize = jobs.iter().map(|j| j.data.len()).sum();
        let threads = if total < 4 << 20 {
            1
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .clamp(1, 4)
        };
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let results: Mutex<Vec<(usize, Put)>> = Mutex::new(Vec::with_capacity(jobs.len()));
        let first_err: Mutex<Option<Error>> = Mutex::new(None);
        let fail = |e: Error| {
            failed.store(true, Ordering::Relaxed);
            first_err
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_or_insert(e);
        };
        // Workers hash, decide compression and write each new chunk to a temporary file; one
        // committer fsyncs and links them as they come, so the disk is busy while the workers
        // hash (and the kernel writes back in large batches).
        let work = |tx: std::sync::mpsc::Sender<crate::chunks::Pending>| loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= jobs.len() || failed.load(Ordering::Relaxed) {
                break;
            }
            match self.chunks.put(jobs[i].data, jobs[i].fixed) {
                Ok(mut put) => {
                    if let Some(p) = put.pending.take() {
                        if let Err(back) = tx.send(p) {
                            ChunkStore::abandon(&back.0);
                        }
                    }
                    results
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((i, put));
                }
                Err(e) => fail(e),
            }
        };
        let commit = |rx: std::sync::mpsc::Receiver<crate::chunks::Pending>| {
            let mut linked = Vec::new();
            for p in rx {
                if failed.load(Ordering::Relaxed) {
                    ChunkStore::abandon(&p);
                } else {
                    match ChunkStore::commit(&p) {
                        Ok(true) => linked.push(ChunkStore::dest(&p).to_path_buf()),
                        Ok(false) => {}
                        Err(e) => fail(e),
                    }
                }
            }
            linked
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            let (work, commit) = (&work, &commit);
            let committer = s.spawn(move || commit(rx));
            for _ in 1..threads {
                let tx = tx.clone();
                s.spawn(move || work(tx));
            }
            work(tx);
            match committer.join() {
                Ok(linked) => created.extend(linked),
                // A panic cannot say what it linked: count nothing (gc still finds it).
                Err(_) => fail(Error::io(
                    "commit chunks",
                    &self.chunks.dir,
                    std::io::Error::other("the committing thread panicked"),
                )),
            }
        });
        let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = first_err.into_inner().unwrap_or_else(|e| e.into_inner()) {
            return Err(e);
        }
        let mut results = results;
        results.sort_by_key(|(i, _)| *i);
        let mut out: Vec<Stream> = streams
            .iter()
            .map(|(d, layout)| Stream {
                size: d.len() as u64,
                layout: *layout,
                chunks: Vec::new(),
            })
            .collect();
        let mut written = 0;
        let mut dirs = BTreeSet::new();
        for (i, put) in results {
            written += put.written;
            dirs.insert(
                self.chunks
                    .path(&put.chunk.hash, put.chunk.zstd)
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_default(),
            );
            out[jobs[i].stream].chunks.push(put.chunk);
        }
        // Make the new (and reused) chunks' directory entries durable before anything points
        // at them.
        for d in dirs {
            fsio::sync_dir(&d)?;
        }
        Ok((out, written))
    }

    /// Save a new version of `name` on `branch`, signed with the jar's key (if it has one).
    pub fn save(&self, branch: &str, name: &str, input: &SaveInput<'_>) -> Result<VersionInfo> {
        self.save_version(branch, name, input, true)
    }

    /// [`Jar::save`]; `sign`: sign the manifest with the jar's key. A version written unsigned
    /// loads through the safe loader only (see the Python layer), whoever holds the key.
    fn save_version(
        &self,
        branch: &str,
        name: &str,
        input: &SaveInput<'_>,
        sign: bool,
    ) -> Result<VersionInfo> {
        fsio::check_name("name", name)?;
        self.ancestry(branch)?;
        let context = format!("{branch}:{name} (new version)");
        let (nbuf, globals) = pickle::inspect(input.pickle, &context)?;
        if nbuf != input.buffers.len() {
            return Err(Error::PickleShape {
                detail: format!(
                    "the pickle has {nbuf} out-of-band buffers but {} were given",
                    input.buffers.len()
                ),
                context,
            });
        }
        let lock = self.lock(false)?;
        let mut created = Vec::new();
        let mut manifest_id = None;
        let recorded = self.record_version(
            branch,
            name,
            input,
            sign,
            globals,
            &mut created,
            &mut manifest_id,
        );
        drop(lock);
        let id = match recorded {
            Ok(id) => id,
            Err(e) => return Err(self.failed_save(branch, name, e, created, manifest_id)),
        };
        self.resolve(branch, name, &VersionSpec::Latest)
            .and_then(|info| {
                // A concurrent saver may have landed after us: return our own version.
                if info.id.as_deref() == Some(id.as_str()) {
                    Ok(info)
                } else {
                    let log = self.log(branch, name)?;
                    log.into_iter()
                        .rev()
                        .find(|v| v.id.as_deref() == Some(id.as_str()))
                        .ok_or_else(|| Error::NotFound {
                            name: name.to_string(),
                            branch: branch.to_string(),
                        })
                }
            })
    }

    /// The writing part of [`Jar::save_version`], under the shared lock: the chunks, the
    /// manifest, the log entry. Returns the manifest id; records the chunk files it created
    /// and the manifest it wrote as it goes, for [`Jar::failed_save`].
    #[allow(clippy::too_many_arguments)]
    fn record_version(
        &self,
        branch: &str,
        name: &str,
        input: &SaveInput<'_>,
        sign: bool,
        globals: Vec<String>,
        created: &mut Vec<PathBuf>,
        manifest_id: &mut Option<String>,
    ) -> Result<String> {
        let mut streams: Vec<(&[u8], Layout)> = vec![(input.pickle, Layout::Cdc)];
        for b in &input.buffers {
            streams.push((b, chunks::layout_for_buffer(b.len())));
        }
        let (mut stored_streams, written) = self.store_streams(&streams, created)?;
        let buffers = stored_streams.split_off(1);
        let pickle_stream = stored_streams.pop().unwrap_or(Stream {
            size: 0,
            layout: Layout::Cdc,
            chunks: Vec::new(),
        });
        let size =
            input.pickle.len() as u64 + input.buffers.iter().map(|b| b.len() as u64).sum::<u64>();
        let m = Manifest {
            format: FORMAT,
            name: name.to_string(),
            branch: branch.to_string(),
            time: fsio::now_rfc3339(),
            note: input.note.clone(),
            size,
            stored: 0,
            pickle: pickle_stream,
            buffers,
            globals,
            meta: input.meta.clone(),
        };
        let id = self.write_manifest(m, written, sign, manifest_id)?;
        self.append(branch, name, Op::Save, Some(&id))?;
        Ok(id)
    }

    /// After a save failed with `error`: if the failure came before its log entry, nothing
    /// was recorded, so remove what the save wrote (its manifest, and the chunk files it
    /// created that no other manifest uses), then say so in the error. Removing needs the
    /// exclusive lock, taken only if free now (a concurrent saver may be using those chunks);
    /// otherwise the error says that gc removes them. A disk that filled up mid-save is left
    /// as full as it was before, not fuller.
    fn failed_save(
        &self,
        branch: &str,
        name: &str,
        error: Error,
        created: Vec<PathBuf>,
        manifest_id: Option<String>,
    ) -> Error {
        // A log entry naming our manifest means the version is recorded (the failure came
        // after, e.g. syncing the log folder): nothing is ours to remove.
        if let Some(id) = &manifest_id {
            if self.records_manifest(branch, name, id) {
                return Error::SavedNotDurable {
                    name: name.to_string(),
                    branch: branch.to_string(),
                    error: Box::new(error),
                };
            }
        }
        // (set before its write: it may have failed before the file existed)
        let manifest_id = manifest_id.filter(|id| self.manifest_path(id).exists());
        if created.is_empty() && manifest_id.is_none() {
            return Error::SaveFailed {
                name: name.to_string(),
                branch: branch.to_string(),
                leftover: "it wrote nothing".to_string(),
                error: Box::new(error),
            };
        }
        let bytes: u64 = created
            .iter()
            .map(|p| fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .sum();
        let what = match (created.len(), &manifest_id) {
            (0, _) => "the manifest".to_string(),
            (n, m) => format!(
                "the {} ({}){}",
                if n == 1 {
                    "chunk file".to_string()
                } else {
                    format!("{n} chunk files")
                },
                human_bytes(bytes),
                if m.is_some() { " and the manifest" } else { "" }
            ),
        };
        let one = created.len() + usize::from(manifest_id.is_some()) == 1;
        let (were, are) = if one { ("was", "is") } else { ("were", "are") };
        let removed = match self.try_lock_exclusive() {
            None => Err("another process was using the jar"),
            Some(_lock) => self.remove_unrecorded(branch, name, &created, manifest_id.as_deref()),
        };
        let leftover = match removed {
            Ok((0, 0)) => format!("{what} it had written {were} removed"),
            Ok((shared, 0)) => format!(
                "{what} it had written {were} removed, but for {shared} another version saved meanwhile uses"
            ),
            Ok((_, kept)) => format!(
                "of {what} it had written, {kept} chunk file{} could not be removed; `brinery jar gc` or `jar.gc()` removes them",
                if kept == 1 { "" } else { "s" }
            ),
            Err(why) => format!(
                "{what} it had written {are} left in the jar ({why}); `brinery jar gc` or `jar.gc()` removes {}",
                if one { "it" } else { "them" }
            ),
        };
        Error::SaveFailed {
            name: name.to_string(),
            branch: branch.to_string(),
            leftover,
            error: Box::new(error),
        }
    }

    /// Whether a log entry of `name` on `branch` names manifest `id` (`true` when the log
    /// cannot be read: then it might).
    fn records_manifest(&self, branch: &str, name: &str, id: &str) -> bool {
        self.own_entries(branch, name)
            .map(|(good, _)| good.iter().any(|e| e.rec.manifest.as_deref() == Some(id)))
            .unwrap_or(true)
    }

    /// For [`Jar::failed_save`], under the exclusive lock: remove the failed save's manifest,
    /// then those of its `created` chunk files that no manifest in the jar uses (a concurrent
    /// save may have reused them before the lock was taken). Returns how many chunk files
    /// stayed because another version uses them, and how many could not be removed; or why
    /// nothing was removed.
    fn remove_unrecorded(
        &self,
        branch: &str,
        name: &str,
        created: &[PathBuf],
        manifest_id: Option<&str>,
    ) -> std::result::Result<(usize, usize), &'static str> {
        if let Some(id) = manifest_id {
            // Checked again under the lock: a concurrent save of the same content in the same
            // instant finds our manifest file and records it as its own.
            if self.records_manifest(branch, name, id) {
                return Err("another save recorded the same manifest");
            }
            match fs::remove_file(self.manifest_path(id)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err("its manifest could not be removed")
                }
                _ => {}
            }
        }
        // A manifest that cannot be read might use them: then nothing is removed.
        let unreadable = "a manifest of the jar could not be read; run verify";
        let mut used: HashSet<String> = HashSet::new();
        for (_, f) in Jar::sharded_files(&self.root.join("manifests")).map_err(|_| unreadable)? {
            let id = f.strip_suffix(".json").ok_or(unreadable)?;
            let m = self.read_manifest(id).map_err(|_| unreadable)?;
            used.extend(m.manifest.chunks().map(|c| c.hash.clone()));
        }
        let (mut shared, mut kept) = (0, 0);
        for p in created {
            let file = p.file_name().and_then(|f| f.to_str()).unwrap_or_default();
            if used.contains(file.strip_suffix(".zst").unwrap_or(file)) {
                shared += 1;
            } else if fs::remove_file(p).is_err() {
                kept += 1;
            }
        }
        Ok((shared, kept))
    }

    /// Write `m` (signed if `sign` and the jar has a key); sets `written_id` once the manifest
    /// file may exist.
    fn write_manifest(
        &self,
        mut m: Manifest,
        chunk_bytes: u64,
        sign: bool,
        written_id: &mut Option<String>,
    ) -> Result<String> {
        // `stored` counts the manifest too; its own size barely depends on the digits.
        let draft = serde_json::to_vec(&m).unwrap_or_default();
        m.stored = chunk_bytes + draft.len() as u64 + 120;
        let body = serde_json::to_vec(&m).unwrap_or_default();
        let sig = self.key().filter(|_| sign).map(|k| k.sign(&body));
        let bytes = manifest::encode(&body, sig.as_ref());
        let id = blake3::hash(&bytes).to_hex().to_string();
        let p = self.manifest_path(&id);
        if let Some(parent) = p.parent() {
            fsio::ensure_dir(parent)?;
        }
        *written_id = Some(id.clone());
        if !fsio::write_new(&self.tmp(), &p, &[&bytes], true)? {
            // The same bytes are there already (another save of the same content in the same
            // second): that manifest is not ours to remove.
            *written_id = None;
        }
        Ok(id)
    }

    /// Mark `name` deleted on `branch` (its history stays until [`Jar::gc`]).
    pub fn delete(&self, branch: &str, name: &str) -> Result<()> {
        let entries = self.visible(branch, name)?;
        match entries.last() {
            None => {
                return Err(Error::NotFound {
                    name: name.to_string(),
                    branch: branch.to_string(),
                })
            }
            Some(e) if e.rec.op == Op::Delete => {
                return Err(Error::Deleted {
                    name: name.to_string(),
                    branch: branch.to_string(),
                })
            }
            Some(_) => {}
        }
        let before = Jar::numbered(&entries)
            .into_iter()
            .rev()
            .find_map(|(v, _)| v);
        let _lock = self.lock(false)?;
        self.append_entry(branch, name, Op::Delete, None, before)?;
        Ok(())
    }

    /// Tag a version (tags are per object name, create-only: they never move).
    pub fn tag(
        &self,
        branch: &str,
        name: &str,
        spec: &VersionSpec,
        tag: &str,
    ) -> Result<VersionInfo> {
        fsio::check_name("tag", tag)?;
        // Held from the lookup to the tag record: a gc between the two would remove the
        // version (a deleted name's history) the record is about to keep.
        let _lock = self.lock(false)?;
        let info = self.resolve(branch, name, spec)?;
        let id = info.id.clone().unwrap_or_default();
        let rec = TagRec {
            format: FORMAT,
            name: name.to_string(),
            tag: tag.to_string(),
            manifest: id.clone(),
            branch: info.branch.clone(),
            seq: info.seq,
            version: info.version.unwrap_or(0),
            time: fsio::now_rfc3339(),
        };
        let dir = self.root.join("tags").join(encode_name(name));
        fsio::ensure_dir(&dir)?;
        let bytes = fsio::seal_record(&serde_json::to_value(&rec).unwrap_or_default());
        let path = dir.join(format!("{}.json", encode_name(tag)));
        if !fsio::write_new(&self.tmp(), &path, &[&bytes], true)? {
            let same = self
                .tags_of(name)?
                .iter()
                .any(|t| t.tag == tag && t.manifest == id);
            if !same {
                return Err(Error::TagExists {
                    name: name.to_string(),
                    tag: tag.to_string(),
                });
            }
        }
        self.resolve(branch, name, &VersionSpec::Tag(tag.to_string()))
    }

    // -----------------------------------------------------------------------------------------
    // Load
    // -----------------------------------------------------------------------------------------

    fn read_stream(&self, s: &Stream) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(s.size as usize);
        for c in &s.chunks {
            out.extend_from_slice(&self.chunks.read(c)?);
        }
        Ok(out)
    }

    /// Load a version: the pickle and its buffers (large raw buffers as file pieces when
    /// `opts.map`).
    pub fn load(
        &self,
        branch: &str,
        name: &str,
        spec: &VersionSpec,
        opts: LoadOptions,
    ) -> Result<Loaded> {
        let info = self.resolve(branch, name, spec)?;
        let m = info.manifest.as_ref().ok_or_else(|| Error::Deleted {
            name: name.to_string(),
            branch: branch.to_string(),
        })?;
        let pickle = self.read_stream(&m.pickle)?;
        let mut buffers = Vec::with_capacity(m.buffers.len());
        for s in &m.buffers {
            if opts.map && s.layout == Layout::Fixed {
                let mut pieces = Vec::with_capacity(s.chunks.len());
                let mut offset = 0u64;
                for c in &s.chunks {
                    let source = if c.zstd {
                        PieceSource::Bytes(self.chunks.read(c)?)
                    } else {
                        PieceSource::File(self.chunks.check_size(c)?)
                    };
                    pieces.push(Piece {
                        offset,
                        len: c.size,
                        source,
                    });
                    offset += c.size;
                }
                buffers.push(Buffer::Mapped(MappedBuffer {
                    len: s.size,
                    pieces,
                }));
            } else {
                buffers.push(Buffer::Bytes(self.read_stream(s)?));
            }
        }
        Ok(Loaded {
            info,
            pickle,
            buffers,
        })
    }

    // -----------------------------------------------------------------------------------------
    // Export / import
    // -----------------------------------------------------------------------------------------

    /// Write a version as a plain pickle file that the stock `pickle.load` reads (out-of-band
    /// buffers rewritten in-band). The file is written atomically. Returns its size.
    pub fn export_pickle(
        &self,
        branch: &str,
        name: &str,
        spec: &VersionSpec,
        out: &Path,
    ) -> Result<u64> {
        let loaded = self.load(branch, name, spec, LoadOptions { map: true })?;
        let label = loaded.info.label();
        // A symbolic link is written through (its target is replaced, the link stays); what is
        // not a regular file (`/dev/null`, a FIFO, a device) is written into, never replaced:
        // renaming over it would destroy it (as root, `/dev/null` became a plain file).
        let resolved;
        let out = match fs::symlink_metadata(out) {
            Ok(m) if m.file_type().is_symlink() => {
                resolved = fs::canonicalize(out).ctx("resolve", out)?;
                resolved.as_path()
            }
            _ => out,
        };
        let existing = match fs::metadata(out) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io("stat", out, e)),
        };
        if existing.as_ref().is_some_and(|m| !m.is_file()) {
            let f = fs::OpenOptions::new()
                .write(true)
                .open(out)
                .ctx("open", out)?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
            let n = Self::write_inline(&loaded, &mut w, &label)?;
            std::io::Write::flush(&mut w).ctx("write", out)?;
            return Ok(n);
        }
        let dir = out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = dir.join(format!(
            ".{}.{}.tmp",
            out.file_name().and_then(|f| f.to_str()).unwrap_or("export"),
            fsio::random_hex(4)
        ));
        let result = (|| {
            let f = File::create(&tmp).ctx("create", &tmp)?;
            let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
            let n_written = Self::write_inline(&loaded, &mut w, &label)?;
            let f = w
                .into_inner()
                .map_err(|e| Error::io("write", &tmp, e.into_error()))?;
            f.sync_all().ctx("fsync", &tmp)?;
            // a file replaced keeps its permissions (a 0600 export stays private)
            if let Some(m) = &existing {
                fs::set_permissions(&tmp, m.permissions()).ctx("set permissions", &tmp)?;
            }
            fs::rename(&tmp, out).ctx("rename", out)?;
            fsio::sync_dir(dir)?;
            Ok(n_written)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// [`Jar::export_pickle`] to any writer (the command line's standard output): the same
    /// bytes, written as they are made. Returns how many.
    pub fn export_pickle_to(
        &self,
        branch: &str,
        name: &str,
        spec: &VersionSpec,
        out: &mut dyn std::io::Write,
    ) -> Result<u64> {
        let loaded = self.load(branch, name, spec, LoadOptions { map: true })?;
        let label = loaded.info.label();
        Self::write_inline(&loaded, out, &label)
    }

    /// Write `loaded` as one pickle with its out-of-band buffers rewritten in-band.
    fn write_inline(loaded: &Loaded, out: &mut dyn std::io::Write, label: &str) -> Result<u64> {
        let n = loaded.buffers.len();
        pickle::inline_buffers(
            &loaded.pickle,
            &mut |i| match loaded.buffers.get(i) {
                Some(b) => b.to_vec(),
                None => Err(Error::PickleShape {
                    detail: format!(
                        "the pickle asks for buffer {} but the version has {n}",
                        i + 1
                    ),
                    context: label.to_string(),
                }),
            },
            out,
            label,
        )
    }

    /// Save a pickle file as a new version of `name` (buffers stay in-band).
    ///
    /// The version is **not signed**: a file from outside the jar (a download, a colleague's
    /// pickle) is not one of your own saves, so the Python layer loads it through the safe loader
    /// like any other unsigned version (`allow=`/`trust=True` to go further), instead of with
    /// full pickle semantics.
    pub fn import_pickle(
        &self,
        branch: &str,
        name: &str,
        file: &Path,
        note: Option<String>,
    ) -> Result<VersionInfo> {
        let data = fs::read(file).ctx("read", file)?;
        let from = file.file_name().map(|f| f.to_string_lossy().into_owned());
        self.import_pickle_bytes(branch, name, &data, from, note)
    }

    /// [`Jar::import_pickle`] of bytes already read (the command line's standard input);
    /// `from`: what to record as where they came from (`imported_from`). Unsigned, as there.
    pub fn import_pickle_bytes(
        &self,
        branch: &str,
        name: &str,
        data: &[u8],
        from: Option<String>,
        note: Option<String>,
    ) -> Result<VersionInfo> {
        let context = from.clone().unwrap_or_else(|| "standard input".to_string());
        // one pickle per version: bytes after the first STOP (a second pickle written after
        // it) would be stored and then refused at every load as trailing data
        if let brinery::decode::Extent::Complete(end) = brinery::decode::pickle_extent(data) {
            if end < data.len() {
                return Err(Error::PickleShape {
                    detail: format!(
                        "{} byte(s) follow the pickle's STOP at byte {} (a second pickle?): import one pickle per file",
                        data.len() - end,
                        end - 1
                    ),
                    context,
                });
            }
        }
        let (nbuf, _) = pickle::inspect(data, &context)?;
        if nbuf > 0 {
            return Err(Error::PickleShape {
                detail: format!("the pickle has {nbuf} out-of-band buffers (NEXT_BUFFER) that the file does not contain"),
                context,
            });
        }
        let meta = json!({ "imported_from": from });
        self.save_version(
            branch,
            name,
            &SaveInput {
                pickle: data,
                buffers: Vec::new(),
                meta,
                note,
            },
            false,
        )
    }

    // -----------------------------------------------------------------------------------------
    // gc and verify
    // -----------------------------------------------------------------------------------------

    /// Every (branch, name) log folder: (branch, name, path).
    fn all_logs(&self) -> Result<Vec<(String, String, PathBuf)>> {
        let mut out = Vec::new();
        let log = self.root.join("log");
        for b in fsio::list_dir(&log)? {
            let Some(branch) = fsio::decode_name(&b) else {
                continue;
            };
            for n in fsio::list_dir(&log.join(&b))? {
                if let Some(name) = fsio::decode_name(&n) {
                    out.push((branch.clone(), name, log.join(&b).join(&n)));
                }
            }
        }
        Ok(out)
    }

    /// All names that appear in any log.
    fn all_names(&self) -> Result<BTreeSet<String>> {
        Ok(self.all_logs()?.into_iter().map(|(_, n, _)| n).collect())
    }

    /// Files under a two-level sharded folder: (path, file name).
    fn sharded_files(dir: &Path) -> Result<Vec<(PathBuf, String)>> {
        let mut out = Vec::new();
        for shard in fsio::list_dir(dir)? {
            let sd = dir.join(&shard);
            if !sd.is_dir() {
                continue;
            }
            for f in fsio::list_dir(&sd)? {
                out.push((sd.join(&f), f));
            }
        }
        Ok(out)
    }

    /// Remove what nothing needs: the history of names deleted on every branch that sees it,
    /// manifests no kept entry or tag references, chunks no kept manifest references, and the
    /// temporary files of interrupted writes. Holds the jar's exclusive lock, so it waits for
    /// running saves and saves wait for it.
    pub fn gc(&self) -> Result<GcReport> {
        self.gc_until(u64::MAX)
    }

    /// [`Jar::gc`], stopping (as if killed) once `removals` files are removed: the tests'
    /// way to look at every state a gc killed part-way leaves.
    fn gc_until(&self, removals: u64) -> Result<GcReport> {
        let _lock = self.lock(true)?;
        // A branch whose record cannot be read would look like no branch at all, and the history
        // only it sees would be dropped: refuse instead.
        for f in fsio::list_dir(&self.root.join("branches"))? {
            if let Some(b) = f.strip_suffix(".json").and_then(fsio::decode_name) {
                self.branch_rec(&b).map_err(|e| {
                    Error::GcRefused(format!("a branch record is unreadable ({e}); run verify"))
                })?;
            }
        }
        // Plan everything first, refuse before anything is removed: a gc that stops half-way
        // must not have dropped history (the entries of deleted names, the evidence `verify`
        // reports).
        let mut report = GcReport::default();
        let mut live_entries: HashSet<(String, String, u64)> = HashSet::new();
        let mut live_manifests: HashSet<String> = HashSet::new();
        let names = self.all_names()?;
        // How deep each branch is (main 1): entries go children first (below).
        let mut depth: HashMap<String, usize> = HashMap::new();
        for branch in self.branches()? {
            let chain = self.ancestry(&branch)?;
            depth.insert(branch.clone(), chain.len());
            for name in &names {
                let vis = self.visible_in(&chain, name)?;
                match vis.last() {
                    Some(e) if e.rec.op == Op::Save => {
                        for e in vis {
                            live_entries.insert((e.rec.branch.clone(), name.clone(), e.rec.seq));
                            if let Some(m) = e.rec.manifest {
                                live_manifests.insert(m);
                            }
                        }
                    }
                    // The delete that ends a branch's history stays, also when it lies in an
                    // ancestor's log: it carries how many versions came before, so that the
                    // branch's next save does not take the number of a removed version.
                    Some(e) => {
                        live_entries.insert((e.rec.branch.clone(), name.clone(), e.rec.seq));
                    }
                    None => {}
                }
            }
        }
        for name in &names {
            for t in self.tags_of(name)? {
                live_manifests.insert(t.manifest);
            }
        }
        // Entries: the dead ones go, but each log keeps its highest sequence number so that
        // numbering never goes back. A damaged entry is never removed: what it held is unknown
        // (a save: removing it would renumber the versions after it for good), and `verify`
        // keeps reporting it until someone removes it by hand.
        let mut dead_entries: Vec<(usize, u64, PathBuf)> = Vec::new();
        for (branch, name, dir) in self.all_logs()? {
            let (good, bad) = self.own_entries(&branch, &name)?;
            let max_bad = bad
                .iter()
                .filter_map(|b| b.path.file_name()?.to_str().and_then(Jar::seq_of))
                .max()
                .unwrap_or(0);
            let max = good
                .iter()
                .map(|e| e.rec.seq)
                .max()
                .unwrap_or(0)
                .max(max_bad);
            for e in &good {
                if e.rec.seq == max {
                    if let Some(m) = &e.rec.manifest {
                        live_manifests.insert(m.clone());
                    }
                } else if !live_entries.contains(&(branch.clone(), name.clone(), e.rec.seq)) {
                    let d = depth.get(&branch).copied().unwrap_or(usize::MAX);
                    dead_entries.push((d, e.rec.seq, dir.join(Jar::entry_file_name(e.rec.seq))));
                }
            }
        }
        // Live chunks, from live manifests (refuse if one cannot be read).
        let mut live_chunks: HashSet<String> = HashSet::new();
        for id in &live_manifests {
            let m = self.read_manifest(id).map_err(|e| {
                Error::GcRefused(format!(
                    "a kept version's manifest is unreadable ({e}); run verify"
                ))
            })?;
            for c in m.manifest.chunks() {
                live_chunks.insert(c.hash.clone());
            }
        }
        // Now remove.
        // Newest first in every history: a branch's entries before its ancestors', each log's
        // from the highest number down. Versions are numbered by counting saves from the
        // oldest, so a gc killed part-way has removed only the newest of the dead versions:
        // an older number still names its own version, a removed one is "no such version",
        // never another version's object.
        dead_entries.sort_by_key(|e| std::cmp::Reverse((e.0, e.1)));
        for (_, _, p) in dead_entries {
            if report.entries >= removals {
                return Ok(report);
            }
            report.bytes += fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            fs::remove_file(&p).ctx("remove", &p)?;
            report.entries += 1;
        }
        for (p, f) in Jar::sharded_files(&self.root.join("manifests"))? {
            let id = f.strip_suffix(".json").unwrap_or(&f);
            if !live_manifests.contains(id) {
                report.bytes += fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
                fs::remove_file(&p).ctx("remove", &p)?;
                report.manifests += 1;
            }
        }
        for (p, f) in Jar::sharded_files(&self.root.join("chunks"))? {
            let hash = f.strip_suffix(".zst").unwrap_or(&f);
            if !live_chunks.contains(hash) {
                report.bytes += fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
                fs::remove_file(&p).ctx("remove", &p)?;
                report.chunks += 1;
            }
        }
        for f in fsio::list_dir(&self.tmp())? {
            let p = self.tmp().join(f);
            report.bytes += fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            if fs::remove_file(&p).is_ok() {
                report.temporary += 1;
            }
        }
        Ok(report)
    }

    /// Check everything: re-hash every chunk, check every manifest, log entry, branch and tag
    /// record, and that every version's chunks exist; name the versions each problem affects.
    pub fn verify(&self) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        let mut problems: Vec<Problem> = Vec::new();
        // Which versions use which manifest.
        let mut versions_of: HashMap<String, Vec<String>> = HashMap::new();
        let names = self.all_names()?;
        for branch in self.branches()? {
            let chain = match self.ancestry(&branch) {
                Ok(c) => c,
                Err(e) => {
                    problems.push(Problem {
                        path: self.branch_path(&branch).display().to_string(),
                        problem: e.to_string(),
                        versions: vec![],
                    });
                    continue;
                }
            };
            for name in &names {
                let entries = self.visible_in(&chain, name)?;
                for (v, e) in Jar::numbered(&entries) {
                    if let (Some(n), Some(m)) = (v, &e.rec.manifest) {
                        versions_of
                            .entry(m.clone())
                            .or_default()
                            .push(format!("{branch}:{name}@{n}"));
                    }
                }
            }
        }
        for name in &names {
            for t in self.tags_of(name)? {
                versions_of
                    .entry(t.manifest)
                    .or_default()
                    .push(format!("{name}#{}", t.tag));
            }
        }
        for v in versions_of.values_mut() {
            v.sort();
            v.dedup();
        }
        // Log entries.
        for (branch, name, _) in self.all_logs()? {
            let (good, bad) = self.own_entries(&branch, &name)?;
            report.entries += (good.len() + bad.len()) as u64;
            for b in bad {
                problems.push(Problem {
                    path: b.path.display().to_string(),
                    problem: format!("log entry ignored: {}", b.problem),
                    versions: vec![format!("{branch}:{name} (one entry lost)")],
                });
            }
        }
        // Branch records.
        for f in fsio::list_dir(&self.root.join("branches"))? {
            if let Some(b) = f.strip_suffix(".json").and_then(fsio::decode_name) {
                if let Err(e) = self.branch_rec(&b) {
                    problems.push(Problem {
                        path: self.branch_path(&b).display().to_string(),
                        problem: e.to_string(),
                        versions: vec![format!("branch {b}")],
                    });
                }
            }
        }
        // Tag records.
        for name in &names {
            let dir = self.root.join("tags").join(encode_name(name));
            for f in fsio::list_dir(&dir)? {
                let p = dir.join(&f);
                let Some(bytes) = fsio::read_opt(&p)? else {
                    continue;
                };
                let problem = match fsio::open_record(&bytes) {
                    Ok(v) => serde_json::from_value::<TagRec>(v)
                        .err()
                        .map(|e| e.to_string()),
                    Err(why) => Some(why.to_string()),
                };
                if let Some(problem) = problem {
                    problems.push(Problem {
                        path: p.display().to_string(),
                        problem: format!("tag record ignored: {problem}"),
                        versions: vec![format!("{name}#{}", f.trim_end_matches(".json"))],
                    });
                }
            }
        }
        // Manifests: hash, parse; chunk users.
        let mut chunk_users: HashMap<String, Vec<String>> = HashMap::new();
        let mut seen_manifests = HashSet::new();
        for (p, f) in Jar::sharded_files(&self.root.join("manifests"))? {
            report.manifests += 1;
            let id = f.strip_suffix(".json").unwrap_or(&f).to_string();
            seen_manifests.insert(id.clone());
            match self.read_manifest(&id) {
                Ok(m) => {
                    for c in m.manifest.chunks() {
                        chunk_users
                            .entry(c.hash.clone())
                            .or_default()
                            .push(id.clone());
                        let path = self.chunks.path(&c.hash, c.zstd);
                        if !path.exists() {
                            problems.push(Problem {
                                path: path.display().to_string(),
                                problem: "chunk missing".into(),
                                versions: versions_of.get(&id).cloned().unwrap_or_default(),
                            });
                        }
                    }
                }
                Err(e) => problems.push(Problem {
                    path: p.display().to_string(),
                    problem: e.to_string(),
                    versions: versions_of.get(&id).cloned().unwrap_or_default(),
                }),
            }
        }
        for (id, versions) in &versions_of {
            if !seen_manifests.contains(id) {
                problems.push(Problem {
                    path: self.manifest_path(id).display().to_string(),
                    problem: "manifest missing".into(),
                    versions: versions.clone(),
                });
            }
        }
        // Chunks: re-hash every one (in parallel).
        let files = Jar::sharded_files(&self.root.join("chunks"))?;
        report.chunks = files.len() as u64;
        let next = AtomicUsize::new(0);
        let bad_chunks: Mutex<Vec<(usize, String)>> = Mutex::new(Vec::new());
        let io_err: Mutex<Option<Error>> = Mutex::new(None);
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 4);
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((p, f)) = files.get(i) else { break };
                    match ChunkStore::verify_file(p, f) {
                        Ok(None) => {}
                        Ok(Some(problem)) => bad_chunks
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push((i, problem)),
                        Err(e) => {
                            io_err
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .get_or_insert(e);
                        }
                    }
                });
            }
        });
        if let Some(e) = io_err.into_inner().unwrap_or_else(|e| e.into_inner()) {
            return Err(e);
        }
        let mut bad_chunks = bad_chunks.into_inner().unwrap_or_else(|e| e.into_inner());
        bad_chunks.sort();
        for (i, problem) in bad_chunks {
            let (p, f) = &files[i];
            let hash = f.strip_suffix(".zst").unwrap_or(f);
            let mut versions: Vec<String> = chunk_users
                .get(hash)
                .into_iter()
                .flatten()
                .flat_map(|id| versions_of.get(id).cloned().unwrap_or_default())
                .collect();
            versions.sort();
            versions.dedup();
            problems.push(Problem {
                path: p.display().to_string(),
                problem: format!("corrupt chunk: {problem}"),
                versions,
            });
        }
        report.temporary = fsio::list_dir(&self.tmp())?.len() as u64;
        report.ok = problems.is_empty();
        report.problems = problems;
        Ok(report)
    }
}

/// Used by the CLI and binding: the data of a chunk reference, checked.
impl Jar {
    /// Read one chunk (decompressed and hash-checked).
    pub fn read_chunk(&self, c: &ChunkRef) -> Result<Vec<u8>> {
        self.chunks.read(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jar() -> (tempfile::TempDir, Jar) {
        let dir = tempfile::tempdir().unwrap();
        let jar = Jar::init(dir.path().join(".brinery")).unwrap();
        (dir, jar)
    }

    /// A pickle of the string `s` (protocol 4, no buffers).
    fn pickled(s: &str) -> Vec<u8> {
        let mut e = brinery::encode::Encoder::new(4).unwrap();
        e.start();
        e.unicode_utf8(s.as_bytes()).unwrap();
        e.finish().unwrap()
    }

    fn save(jar: &Jar, branch: &str, name: &str, s: &str) {
        jar.save(branch, name, &SaveInput::new(&pickled(s)))
            .unwrap();
    }

    /// What version `n` of `name` on `branch` loads: the string, or `None` if there is none.
    fn load(jar: &Jar, branch: &str, name: &str, n: i64) -> Option<Vec<u8>> {
        jar.load(
            branch,
            name,
            &VersionSpec::Number(n),
            LoadOptions { map: false },
        )
        .ok()
        .map(|l| l.pickle)
    }

    /// A gc killed after any number of removals leaves every version number naming its own
    /// version or none: the dead entries go newest first, the branch's before its parent's.
    #[test]
    fn a_gc_killed_part_way_never_renumbers() {
        for stop in 0..8u64 {
            let (_dir, jar) = jar();
            for s in ["first", "second", "third"] {
                save(&jar, MAIN, "x", s);
            }
            jar.create_branch("b", MAIN).unwrap();
            for s in ["b4", "b5"] {
                save(&jar, "b", "x", s);
            }
            jar.delete("b", "x").unwrap();
            jar.delete(MAIN, "x").unwrap();
            let expect = |branch: &str| {
                (1..=6)
                    .map(|n| load(&jar, branch, "x", n))
                    .collect::<Vec<_>>()
            };
            let (main_before, b_before) = (expect(MAIN), expect("b"));
            assert!(b_before[4].is_some() && b_before[5].is_none());
            let r = jar.gc_until(stop).unwrap();
            assert_eq!(r.entries, stop.min(5), "stop {stop}");
            for (branch, before) in [(MAIN, &main_before), ("b", &b_before)] {
                for (n, was) in before.iter().enumerate() {
                    let now = load(&jar, branch, "x", n as i64 + 1);
                    assert!(
                        now.is_none() || &now == was,
                        "stop {stop}: {branch}:x@{} changed",
                        n + 1
                    );
                }
            }
            // the next saves take the next numbers on both branches
            save(&jar, MAIN, "x", "new main");
            save(&jar, "b", "x", "new b");
            assert_eq!(
                load(&jar, MAIN, "x", 4),
                Some(pickled("new main")),
                "stop {stop}"
            );
            assert_eq!(
                load(&jar, "b", "x", 6),
                Some(pickled("new b")),
                "stop {stop}"
            );
        }
    }

    /// A branch that inherited a deleted name keeps the count of its versions through gc,
    /// although the delete lies in its parent's log and the parent deleted again since.
    #[test]
    fn an_inherited_delete_keeps_the_numbering_through_gc() {
        let (_dir, jar) = jar();
        save(&jar, MAIN, "x", "first");
        jar.delete(MAIN, "x").unwrap();
        jar.create_branch("b", MAIN).unwrap();
        save(&jar, MAIN, "x", "second");
        jar.delete(MAIN, "x").unwrap();
        assert_eq!(load(&jar, "b", "x", 1), Some(pickled("first")));
        jar.gc().unwrap();
        save(&jar, "b", "x", "new");
        assert_eq!(load(&jar, "b", "x", 1), None);
        assert_eq!(load(&jar, "b", "x", 2), Some(pickled("new")));
        save(&jar, MAIN, "x", "third");
        assert_eq!(load(&jar, MAIN, "x", 3), Some(pickled("third")));
        assert!(jar.verify().unwrap().ok);
    }

    /// A save whose log entry is linked but whose log folder cannot be synced is recorded: its
    /// error says so (not "failed"), nothing is removed, and the version loads.
    #[test]
    fn a_recorded_save_that_could_not_be_synced_says_so() {
        let (_dir, jar) = jar();
        save(&jar, MAIN, "x", "first");
        fsio::faults::fail_next("fsync directory", "/log/main/x");
        let e = jar
            .save(MAIN, "x", &SaveInput::new(&pickled("second")))
            .unwrap_err();
        assert!(matches!(e, Error::SavedNotDurable { .. }), "{e}");
        assert!(
            e.to_string().starts_with(
                "saving main:x recorded the new version but could not make it durable"
            ),
            "{e}"
        );
        assert_eq!(load(&jar, MAIN, "x", 2), Some(pickled("second")));
        assert!(jar.verify().unwrap().ok);
    }

    /// A manifest whose write failed was never there: the failed save's message names only
    /// the chunk files it removed.
    #[test]
    fn a_manifest_never_written_is_not_named() {
        let (_dir, jar) = jar();
        save(&jar, MAIN, "x", "first");
        let before = jar.verify().unwrap();
        fsio::faults::fail_next("write", "/manifests/");
        let big: String = (0..100_000)
            .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
            .collect();
        let e = jar
            .save(MAIN, "x", &SaveInput::new(&pickled(&big)))
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.starts_with("saving main:x failed, nothing was saved (the chunk file (")
                && msg.contains(") it had written was removed): write failed: "),
            "{msg}"
        );
        assert_eq!(load(&jar, MAIN, "x", 1), Some(pickled("first")));
        let after = jar.verify().unwrap();
        assert!(after.ok && after.chunks == before.chunks, "{after:?}");
    }

    /// The temporary file of a `jar.json` never linked (a first save killed) does not make
    /// the folder "not empty": the next save makes the jar. Anything else in `tmp/` does.
    #[test]
    fn an_interrupted_init_is_finished_by_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join(".brinery");
        fs::create_dir_all(root.join("tmp")).unwrap();
        let leftover = fsio::tmp_path(&root.join("tmp"));
        fs::write(&leftover, b"half a jar.json").unwrap();
        let jar = Jar::init(&root).unwrap();
        save(&jar, MAIN, "x", "first");
        let r = jar.gc().unwrap();
        assert_eq!(r.temporary, 1);
        assert!(!leftover.exists());

        let other = dir.path().join("other");
        fs::create_dir_all(other.join("tmp")).unwrap();
        fs::write(other.join("tmp").join("notes.tmp"), b"mine").unwrap();
        let e = Jar::init(&other).unwrap_err();
        assert!(matches!(e, Error::NotEmpty { .. }), "{e}");
    }
}
