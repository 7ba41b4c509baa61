//! The jar: save Python objects (as protocol-5 pickles with out-of-band buffers) under a name,
//! with history, branches, tags, dedup, crash safety and zero-copy loading of large buffers.
//!
//! The on-disk format is specified in `docs/jar-format.md` (format 1). In short: immutable
//! content-addressed chunks (BLAKE3; FastCDC for the pickle stream and small buffers, fixed
//! page-aligned chunks for large buffers; zstd when it pays), one immutable manifest per version,
//! and a log of small create-only records per (branch, name). No file is ever overwritten: a save
//! creates new files only, each through an fsynced temporary file hard-linked into place, and the
//! log record that makes a version visible is created last, at the next free sequence number
//! (two savers of one name both land, one after the other).
//!
//! ```
//! use brinery_jar::{Jar, Key, SaveInput, VersionSpec, LoadOptions};
//! let dir = tempfile::tempdir().unwrap();
//! let jar = Jar::init(dir.path().join(".brinery")).unwrap().with_key(Some(Key::from_bytes([1; 32])));
//! let pickle = b"\x80\x05\x95\x06\x00\x00\x00\x00\x00\x00\x00K*\x94.";
//! let v = jar.save("main", "answer", &SaveInput::new(pickle)).unwrap();
//! assert_eq!(v.version, Some(1));
//! let loaded = jar.load("main", "answer", &VersionSpec::Latest, LoadOptions::default()).unwrap();
//! assert_eq!(loaded.pickle, pickle);
//! assert_eq!(jar.names("main").unwrap(), vec!["answer".to_string()]);
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod chunks;
mod error;
mod fsio;
mod manifest;
mod pickle;
mod sign;
mod store;

pub use chunks::{ChunkRef, Layout, Stream, CDC_AVG, CDC_MAX, CDC_MIN, FIXED_CHUNK, LARGE_BUFFER};
pub use error::{Error, Result};
pub use manifest::{Manifest, Signature, StoredManifest, FORMAT};
pub use pickle::inline_buffers;
pub use sign::{default_key_path, Key, SignatureStatus};
pub use store::{
    default_jar_dir, find_jar, human_bytes, Buffer, GcReport, Jar, LoadOptions, Loaded,
    MappedBuffer, Piece, PieceSource, Problem, SaveInput, VerifyReport, VersionInfo, VersionSpec,
};

/// BLAKE3 of `data` as lowercase hex: the name of a raw chunk file holding `data`.
pub fn hash_hex(data: &[u8]) -> String {
    blake3::hash(data).to_hex().to_string()
}
