//! The jar's error type: what went wrong, and where (a path, a name, a version).

use std::path::{Path, PathBuf};

/// Result alias of the jar crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a jar operation. Messages are lowercase and end with where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system error while touching a file or folder.
    #[error("{op} failed: {error} at {}", path.display())]
    Io {
        /// What was being done (`read`, `create`, `link`, ...).
        op: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The OS error (part of the message, so not repeated as a cause).
        error: std::io::Error,
    },
    /// The folder is not a jar (no valid `jar.json`).
    #[error("not a jar (no valid jar.json) at {}", .0.display())]
    NotAJar(PathBuf),
    /// A new jar was asked for in a folder that already holds other things: a jar owns its
    /// folder (gc clears its `tmp/`), so it is made only in a new or empty one.
    #[error("not a jar and not empty (a new jar needs a new or empty folder; a project's jar is its .brinery folder): {what} at {}", path.display())]
    NotEmpty {
        /// The folder.
        path: PathBuf,
        /// The first entry that is not part of a jar.
        what: String,
    },
    /// The jar was written in a format this version cannot read.
    #[error("jar format {found} is not supported (this brinery reads format {supported}) at {}", path.display())]
    Format {
        /// The format found in `jar.json`.
        found: u64,
        /// The format this crate reads and writes.
        supported: u64,
        /// The `jar.json` file.
        path: PathBuf,
    },
    /// No object of that name exists on the branch (never saved).
    #[error("no object named {name:?} on branch {branch:?}")]
    NotFound {
        /// The object name.
        name: String,
        /// The branch.
        branch: String,
    },
    /// The object was deleted on the branch.
    #[error("{name:?} was deleted on branch {branch:?} (its history is kept until gc; load an older version explicitly)")]
    Deleted {
        /// The object name.
        name: String,
        /// The branch.
        branch: String,
    },
    /// A damaged log entry lies between the newest version and the one asked for by number:
    /// what it held (a save, a delete) is unknown, so the number would point at the wrong
    /// version.
    #[error("{name:?} version {version} on branch {branch:?} cannot be told apart: a damaged log entry comes before it ({}); run `brinery jar verify`, then remove the damaged entry by hand to renumber the versions after it, or load by tag or as the latest", path.display())]
    Renumbered {
        /// The object name.
        name: String,
        /// The branch.
        branch: String,
        /// The version asked for.
        version: i64,
        /// The damaged entry file.
        path: PathBuf,
    },
    /// The object exists but has no such version.
    #[error("{name:?} has no version {version} on branch {branch:?} (it has {count})")]
    NoVersion {
        /// The object name.
        name: String,
        /// The branch.
        branch: String,
        /// The version asked for.
        version: i64,
        /// How many versions exist.
        count: usize,
    },
    /// No tag of that name for the object.
    #[error("{name:?} has no tag {tag:?}")]
    NoTag {
        /// The object name.
        name: String,
        /// The tag.
        tag: String,
    },
    /// The tag names a version the branch does not see (saved on another branch after the
    /// fork, or on a branch that is not an ancestor).
    #[error("tag {tag:?} of {name:?} names a version saved on branch {tag_branch:?}, which branch {branch:?} does not see (tags are shared by all branches of a name; switch to {tag_branch:?} to load it)")]
    TagElsewhere {
        /// The object name.
        name: String,
        /// The tag.
        tag: String,
        /// The branch the tagged version was saved on.
        tag_branch: String,
        /// The branch asked from.
        branch: String,
    },
    /// The tag already exists (tags never move).
    #[error("tag {tag:?} already exists for {name:?} (tags never move; pick another tag)")]
    TagExists {
        /// The object name.
        name: String,
        /// The tag.
        tag: String,
    },
    /// The branch does not exist.
    #[error("branch {0:?} does not exist (create it first: `jar.branch(name)` in Python, `%jar branch NAME` in a notebook, `brinery jar branch NAME` in a shell)")]
    NoBranch(String),
    /// The branch already exists.
    #[error("branch {0:?} already exists")]
    BranchExists(String),
    /// A name, branch or tag that cannot be used.
    #[error("invalid {what} {value:?}: {why}")]
    InvalidName {
        /// `name`, `branch` or `tag`.
        what: &'static str,
        /// The rejected value.
        value: String,
        /// Why.
        why: &'static str,
    },
    /// A file of the jar is damaged (bad checksum, bad hash, bad JSON, wrong size).
    #[error("corrupt {what}: {detail} at {}", path.display())]
    Corrupt {
        /// Which kind of file (`chunk`, `manifest`, `log entry`, ...).
        what: &'static str,
        /// What is wrong with it.
        detail: String,
        /// The file.
        path: PathBuf,
    },
    /// The pickle stream could not be decoded or rewritten.
    #[error("bad pickle: {error} in {context}")]
    Pickle {
        /// The core crate's error (names the byte offset and opcode; part of the message).
        error: brinery::Error,
        /// Which pickle (a version label or a file).
        context: String,
    },
    /// A structural problem with the pickle that the core decoder does not see.
    #[error("{detail} in {context}")]
    PickleShape {
        /// What is wrong, with the byte offset.
        detail: String,
        /// Which pickle.
        context: String,
    },
    /// A save failed before recording its version: the object's history is unchanged. Says
    /// what became of the files the save had written (removed, or left for gc).
    #[error("saving {branch}:{name} failed, nothing was saved ({leftover}): {error}")]
    SaveFailed {
        /// The object name.
        name: String,
        /// The branch.
        branch: String,
        /// What became of the chunks and manifest the save had written.
        leftover: String,
        /// Why it failed (part of the message).
        error: Box<Error>,
    },
    /// A save recorded its version, then failed to make it durable (syncing the log folder):
    /// the version is there and loads, but a power loss before the system writes it back could
    /// still lose it. Earlier versions are not affected.
    #[error("saving {branch}:{name} recorded the new version but could not make it durable (it loads now; a power loss could still lose it; earlier versions are safe): {error}")]
    SavedNotDurable {
        /// The object name.
        name: String,
        /// The branch.
        branch: String,
        /// Why (part of the message).
        error: Box<Error>,
    },
    /// gc refused to run because it could not read something it must keep.
    #[error("gc refused: {0}")]
    GcRefused(String),
}

impl Error {
    /// An I/O error while doing `op` on `path`.
    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.to_path_buf(),
            error: source,
        }
    }

    /// A corrupt file.
    pub(crate) fn corrupt(what: &'static str, detail: impl Into<String>, path: &Path) -> Self {
        Error::Corrupt {
            what,
            detail: detail.into(),
            path: path.to_path_buf(),
        }
    }

    /// Whether this error means "the asked object/version/tag/branch does not exist".
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Error::NotFound { .. }
                | Error::Deleted { .. }
                | Error::NoVersion { .. }
                | Error::NoTag { .. }
                | Error::TagElsewhere { .. }
                | Error::NoBranch(_)
        )
    }
}

/// Attach a path and an operation to an I/O result.
pub(crate) trait IoContext<T> {
    /// `Err(e)` becomes `Error::Io { op, path, e }`.
    fn ctx(self, op: &'static str, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, op: &'static str, path: &Path) -> Result<T> {
        self.map_err(|e| Error::io(op, path, e))
    }
}
