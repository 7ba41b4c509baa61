//! Per-user signing keys: keyed BLAKE3 over a manifest's body.
//!
//! The key is 32 random bytes stored as hex in `$BRINERY_KEY_FILE`, else
//! `$XDG_CONFIG_HOME/brinery/key`, else `~/.config/brinery/key`, created (mode 0600, create-only)
//! on first use. A team shares a key by pointing `BRINERY_KEY_FILE` at the same file.

use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::fsio;
use crate::manifest::Signature;

/// A signing key.
#[derive(Clone)]
pub struct Key {
    bytes: [u8; 32],
    id: String,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key").field("id", &self.id).finish()
    }
}

/// Where the current user's key lives.
pub fn default_key_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BRINERY_KEY_FILE").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(config.join("brinery").join("key"))
}

impl Key {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Key {
        let id = blake3::derive_key("brinery jar key id v1", &bytes);
        Key {
            bytes,
            id: fsio::hex(&id[..8]),
        }
    }

    /// The key's public id (16 hex digits derived from it; reveals nothing about the key).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Read the key at `path`, creating it (0600, create-only) if missing.
    pub fn load_or_create(path: &Path) -> Result<Key> {
        if let Some(bytes) = fsio::read_opt(path)? {
            return Key::parse(&bytes, path);
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        fsio::ensure_dir(dir)?;
        let text = format!("{}\n", fsio::random_hex(32));
        // Create-only through a temporary file in the same folder, so that two processes
        // creating the key at once agree on one.
        let tmp = fsio::tmp_path(dir);
        {
            use std::io::Write;
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut f = opts.open(&tmp).ctx("create key file", &tmp)?;
            f.write_all(text.as_bytes()).ctx("write", &tmp)?;
            f.sync_all().ctx("fsync", &tmp)?;
        }
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => fsio::sync_dir(dir)?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("link", path, e)),
        }
        let bytes = std::fs::read(path).ctx("read key file", path)?;
        Key::parse(&bytes, path)
    }

    /// The current user's key ([`default_key_path`]), created on first use.
    pub fn user() -> Result<Key> {
        let path = default_key_path().ok_or_else(|| {
            Error::io(
                "find key",
                Path::new("$HOME"),
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no HOME, XDG_CONFIG_HOME or BRINERY_KEY_FILE",
                ),
            )
        })?;
        Key::load_or_create(&path)
    }

    fn parse(bytes: &[u8], path: &Path) -> Result<Key> {
        let text = std::str::from_utf8(bytes).unwrap_or("").trim();
        let raw = fsio::unhex(text)
            .filter(|b| b.len() == 32)
            .ok_or_else(|| Error::corrupt("key file", "expected 64 hex digits", path))?;
        let mut arr = [0u8; 32];
        arr.copy_from_slice(&raw);
        Ok(Key::from_bytes(arr))
    }

    /// Sign a manifest body.
    pub fn sign(&self, body: &[u8]) -> Signature {
        Signature {
            key_id: self.id.clone(),
            mac: blake3::keyed_hash(&self.bytes, body).to_hex().to_string(),
        }
    }

    /// Whether `sig` is this key's valid signature of `body` (constant-time comparison).
    pub fn verify(&self, body: &[u8], sig: &Signature) -> bool {
        let Some(mac) = fsio::unhex(&sig.mac).filter(|m| m.len() == 32) else {
            return false;
        };
        let mut arr = [0u8; 32];
        arr.copy_from_slice(&mac);
        sig.key_id == self.id && blake3::keyed_hash(&self.bytes, body) == blake3::Hash::from(arr)
    }
}

/// How a version's signature relates to the current key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureStatus {
    /// Signed with the current key and intact: trusted.
    Trusted,
    /// Signed with another key (another user or team).
    Untrusted,
    /// Claims the current key but the MAC does not match: tampered.
    Invalid,
    /// Not signed.
    Unsigned,
}

impl SignatureStatus {
    /// `trusted`, `untrusted`, `invalid` or `unsigned`.
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureStatus::Trusted => "trusted",
            SignatureStatus::Untrusted => "untrusted",
            SignatureStatus::Invalid => "invalid",
            SignatureStatus::Unsigned => "unsigned",
        }
    }

    /// The status of `sig` over `body` given the current key.
    pub fn of(key: Option<&Key>, body: &[u8], sig: Option<&Signature>) -> SignatureStatus {
        match (sig, key) {
            (None, _) => SignatureStatus::Unsigned,
            (Some(s), Some(k)) if s.key_id == k.id() => {
                if k.verify(body, s) {
                    SignatureStatus::Trusted
                } else {
                    SignatureStatus::Invalid
                }
            }
            (Some(_), _) => SignatureStatus::Untrusted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify() {
        let k = Key::from_bytes([7; 32]);
        let other = Key::from_bytes([8; 32]);
        let s = k.sign(b"body");
        assert!(k.verify(b"body", &s));
        assert!(!k.verify(b"bodY", &s));
        assert_eq!(
            SignatureStatus::of(Some(&k), b"body", Some(&s)),
            SignatureStatus::Trusted
        );
        assert_eq!(
            SignatureStatus::of(Some(&k), b"x", Some(&s)),
            SignatureStatus::Invalid
        );
        assert_eq!(
            SignatureStatus::of(Some(&other), b"body", Some(&s)),
            SignatureStatus::Untrusted
        );
        assert_eq!(
            SignatureStatus::of(Some(&k), b"body", None),
            SignatureStatus::Unsigned
        );
    }

    #[test]
    fn key_file_is_created_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cfg").join("key");
        let a = Key::load_or_create(&p).unwrap();
        let b = Key::load_or_create(&p).unwrap();
        assert_eq!(a.id(), b.id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&p, "zz").unwrap();
        let e = Key::load_or_create(&p).unwrap_err().to_string();
        assert!(
            e.starts_with("corrupt key file: expected 64 hex digits at "),
            "{e}"
        );
    }
}
