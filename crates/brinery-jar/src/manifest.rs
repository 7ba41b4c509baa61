//! Manifests: the immutable description of one saved version.
//!
//! A manifest file is two lines: the body (compact JSON of [`Manifest`]) and the signature
//! (JSON of [`Signature`], or `null`). The file is named by the BLAKE3 of its bytes, so it checks
//! itself; the signature is a keyed BLAKE3 of the body line, so it covers every chunk hash.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::chunks::Stream;
use crate::error::{Error, Result};

/// The format version written in manifests, records and `jar.json`.
pub const FORMAT: u64 = 1;

/// What a saved version is: its data (as chunk lists) and what was recorded about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version ([`FORMAT`]).
    pub format: u64,
    /// The object name it was saved under.
    pub name: String,
    /// The branch it was saved on.
    pub branch: String,
    /// When, RFC 3339 UTC.
    pub time: String,
    /// The note given at save time.
    pub note: Option<String>,
    /// Logical size: the pickle plus all buffers, in bytes.
    pub size: u64,
    /// Bytes this save added to the jar (after dedup and compression).
    pub stored: u64,
    /// The pickle stream (protocol 5; buffers out-of-band).
    pub pickle: Stream,
    /// The out-of-band buffers, in `buffer_callback` order.
    pub buffers: Vec<Stream>,
    /// The globals (`module.qualname`) the pickle references, read without unpickling.
    pub globals: Vec<String>,
    /// What the saver recorded: type, shape/dtypes/columns, notebook or script, Python and
    /// library versions, ... (free-form JSON object).
    pub meta: serde_json::Value,
}

/// A manifest's signature: keyed BLAKE3 of the body line under a user's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// The id of the key that signed (see [`crate::Key::id`]).
    pub key_id: String,
    /// The MAC, hex.
    pub mac: String,
}

/// A manifest as read from disk, with its id and the exact body bytes that were signed.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    /// The manifest id: BLAKE3 of the file, hex.
    pub id: String,
    /// The parsed body.
    pub manifest: Manifest,
    /// The signature, if the version was signed.
    pub signature: Option<Signature>,
    /// The body line as stored (what the signature covers).
    pub body: Vec<u8>,
}

/// Serialize a manifest with its signature into file bytes.
pub(crate) fn encode(body: &[u8], signature: Option<&Signature>) -> Vec<u8> {
    let sig = serde_json::to_vec(&signature).unwrap_or_else(|_| b"null".to_vec());
    let mut out = Vec::with_capacity(body.len() + sig.len() + 2);
    out.extend_from_slice(body);
    out.push(b'\n');
    out.extend_from_slice(&sig);
    out.push(b'\n');
    out
}

/// Parse and check manifest file bytes against their id.
pub(crate) fn decode(id: &str, bytes: &[u8], path: &Path) -> Result<StoredManifest> {
    if blake3::hash(bytes).to_hex().as_str() != id {
        return Err(Error::corrupt(
            "manifest",
            "content does not match its hash",
            path,
        ));
    }
    let text = bytes
        .strip_suffix(b"\n")
        .ok_or_else(|| Error::corrupt("manifest", "no final newline", path))?;
    let split = text
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| Error::corrupt("manifest", "no signature line", path))?;
    let (body, sig) = (&text[..split], &text[split + 1..]);
    let manifest: Manifest = serde_json::from_slice(body)
        .map_err(|e| Error::corrupt("manifest", format!("bad body: {e}"), path))?;
    if manifest.format != FORMAT {
        return Err(Error::Format {
            found: manifest.format,
            supported: FORMAT,
            path: path.to_path_buf(),
        });
    }
    let signature: Option<Signature> = serde_json::from_slice(sig)
        .map_err(|e| Error::corrupt("manifest", format!("bad signature line: {e}"), path))?;
    Ok(StoredManifest {
        id: id.to_string(),
        manifest,
        signature,
        body: body.to_vec(),
    })
}

impl Manifest {
    /// Every chunk of the version (pickle first, then buffers).
    pub fn chunks(&self) -> impl Iterator<Item = &crate::chunks::ChunkRef> {
        self.pickle
            .chunks
            .iter()
            .chain(self.buffers.iter().flat_map(|b| b.chunks.iter()))
    }
}
