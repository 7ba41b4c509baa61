//! Content-addressed chunks: splitting streams, deciding on compression, storing, reading back.

use std::fs;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::fsio;

/// Out-of-band buffers of at least this many bytes use the zero-copy layout (fixed-size,
/// page-aligned raw chunks that a loader can memory-map).
pub const LARGE_BUFFER: usize = 1 << 20;
/// The chunk size of the zero-copy layout (a multiple of every common page size).
pub const FIXED_CHUNK: usize = 1 << 20;
/// FastCDC minimum chunk size for the pickle stream and small buffers.
pub const CDC_MIN: u32 = 64 * 1024;
/// FastCDC average chunk size.
pub const CDC_AVG: u32 = 256 * 1024;
/// FastCDC maximum chunk size.
pub const CDC_MAX: u32 = 1024 * 1024;

/// zstd level for chunks.
const ZSTD_LEVEL: i32 = 3;
/// Probe this many bytes of a zero-copy chunk before compressing all of it.
const PROBE: usize = 64 * 1024;

/// How a stream is cut into chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Content-defined chunks (FastCDC 2020): boundaries follow the content, so an insertion only
    /// changes the chunks around it.
    Cdc,
    /// Fixed-size chunks of [`FIXED_CHUNK`] bytes (the last may be shorter), stored raw unless
    /// compression saves at least a third: the zero-copy layout.
    Fixed,
}

/// One chunk of a stream, as recorded in a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    /// BLAKE3 of the chunk's uncompressed bytes, hex.
    pub hash: String,
    /// Uncompressed size in bytes.
    pub size: u64,
    /// Whether the chunk file is zstd-compressed (`<hash>.zst`) rather than raw (`<hash>`).
    pub zstd: bool,
}

/// A stream (the pickle or one buffer) as a list of chunks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stream {
    /// Total size in bytes.
    pub size: u64,
    /// How it was cut.
    pub layout: Layout,
    /// The chunks, in order.
    pub chunks: Vec<ChunkRef>,
}

/// Cut `data` into chunk ranges according to `layout`.
pub(crate) fn cut(data: &[u8], layout: Layout) -> Vec<std::ops::Range<usize>> {
    match layout {
        Layout::Fixed => (0..data.len())
            .step_by(FIXED_CHUNK)
            .map(|s| s..(s + FIXED_CHUNK).min(data.len()))
            .collect(),
        Layout::Cdc => {
            if data.is_empty() {
                return Vec::new();
            }
            fastcdc::v2020::FastCDC::new(data, CDC_MIN, CDC_AVG, CDC_MAX)
                .map(|c| c.offset..c.offset + c.length)
                .collect()
        }
    }
}

/// The layout used for a buffer of `len` bytes.
pub(crate) fn layout_for_buffer(len: usize) -> Layout {
    if len >= LARGE_BUFFER {
        Layout::Fixed
    } else {
        Layout::Cdc
    }
}

/// The chunk folder of a jar.
#[derive(Debug, Clone)]
pub(crate) struct ChunkStore {
    pub(crate) dir: PathBuf,
    pub(crate) tmp: PathBuf,
}

/// The outcome of storing one chunk.
pub(crate) struct Put {
    pub(crate) chunk: ChunkRef,
    /// Bytes written to disk (0 when the chunk already existed).
    pub(crate) written: u64,
    /// A written but not yet durable chunk: finish it with [`ChunkStore::commit`].
    pub(crate) pending: Option<Pending>,
}

/// A chunk written to a temporary file, neither fsynced nor linked into place yet. Writing all
/// chunks first and syncing them afterwards lets the kernel write back in large batches.
pub(crate) struct Pending {
    tmp: PathBuf,
    dest: PathBuf,
}

/// zstd-compress `data` if that pays: at least `min_saving_pct` percent smaller.
fn compress_if_pays(data: &[u8], min_saving_pct: usize) -> Option<Vec<u8>> {
    let c = zstd::bulk::compress(data, ZSTD_LEVEL).ok()?;
    (c.len() * 100 <= data.len() * (100 - min_saving_pct)).then_some(c)
}

impl ChunkStore {
    /// The path of a chunk file.
    pub(crate) fn path(&self, hash: &str, zstd: bool) -> PathBuf {
        let shard = hash.get(..2).unwrap_or("00");
        let file = if zstd {
            format!("{hash}.zst")
        } else {
            hash.to_string()
        };
        self.dir.join(shard).join(file)
    }

    /// Store one chunk (dedup by hash). `fixed` chunks stay raw unless compression saves a third
    /// (so they can be mapped); other chunks are compressed when that saves a tenth.
    ///
    /// A chunk file that exists already is reused only if it holds exactly `data` (read back
    /// and compared): a damaged one (cut short, bytes changed on disk) is replaced, so a save
    /// never records a version that loads wrong; re-saving is how a user repairs one.
    pub(crate) fn put(&self, data: &[u8], fixed: bool) -> Result<Put> {
        let hash = blake3::hash(data).to_hex().to_string();
        let size = data.len() as u64;
        for zstd in [false, true] {
            let p = self.path(&hash, zstd);
            match fs::read(&p) {
                Ok(raw) => {
                    let same = if zstd {
                        zstd::bulk::decompress(&raw, data.len()).is_ok_and(|d| d == data)
                    } else {
                        raw == data
                    };
                    if same {
                        return Ok(Put {
                            chunk: ChunkRef { hash, size, zstd },
                            written: 0,
                            pending: None,
                        });
                    }
                    fs::remove_file(&p).ctx("remove damaged chunk", &p)?;
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("read chunk", &p, e)),
            }
        }
        let compressed = if fixed {
            let probe = &data[..data.len().min(PROBE)];
            match compress_if_pays(probe, 33) {
                Some(_) => compress_if_pays(data, 33),
                None => None,
            }
        } else {
            compress_if_pays(data, 10)
        };
        let zstd = compressed.is_some();
        let bytes: &[u8] = compressed.as_deref().unwrap_or(data);
        let p = self.path(&hash, zstd);
        let shard = p.parent().map(Path::to_path_buf).unwrap_or_default();
        fsio::ensure_dir(&shard)?;
        let tmp = fsio::tmp_path(&self.tmp);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .ctx("create temporary file", &tmp)?;
        // One write for the whole chunk.
        if let Err(e) = f.write_all(bytes) {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io("write", &tmp, e));
        }
        Ok(Put {
            chunk: ChunkRef { hash, size, zstd },
            written: bytes.len() as u64,
            pending: Some(Pending { tmp, dest: p }),
        })
    }

    /// Make a pending chunk durable and visible: fsync its temporary file, then hard-link it to
    /// its final name (create-only; a concurrent saver may have linked the same content first).
    /// Returns whether this call created the chunk file.
    pub(crate) fn commit(p: &Pending) -> Result<bool> {
        let result = (|| {
            fs::File::open(&p.tmp)
                .and_then(|f| f.sync_all())
                .ctx("fsync", &p.tmp)?;
            match fs::hard_link(&p.tmp, &p.dest) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(Error::io("link", &p.dest, e)),
            }
        })();
        let _ = fs::remove_file(&p.tmp);
        result
    }

    /// The chunk file this pending chunk becomes when committed.
    pub(crate) fn dest(p: &Pending) -> &Path {
        &p.dest
    }

    /// Remove a pending chunk's temporary file (after an error elsewhere).
    pub(crate) fn abandon(p: &Pending) {
        let _ = fs::remove_file(&p.tmp);
    }

    /// Read and check one chunk: decompressed, re-hashed, size-checked.
    pub(crate) fn read(&self, c: &ChunkRef) -> Result<Vec<u8>> {
        let p = self.path(&c.hash, c.zstd);
        let raw = fs::read(&p).ctx("read chunk", &p)?;
        let data = if c.zstd {
            zstd::bulk::decompress(&raw, c.size as usize)
                .map_err(|e| Error::corrupt("chunk", format!("zstd: {e}"), &p))?
        } else {
            raw
        };
        if data.len() as u64 != c.size {
            return Err(Error::corrupt(
                "chunk",
                format!("{} bytes, the manifest says {}", data.len(), c.size),
                &p,
            ));
        }
        if blake3::hash(&data).to_hex().as_str() != c.hash {
            return Err(Error::corrupt(
                "chunk",
                "content does not match its hash",
                &p,
            ));
        }
        Ok(data)
    }

    /// Check a raw chunk's size without reading it (what a mapping loader can afford).
    pub(crate) fn check_size(&self, c: &ChunkRef) -> Result<PathBuf> {
        let p = self.path(&c.hash, false);
        let m = fs::metadata(&p).ctx("stat chunk", &p)?;
        if m.len() != c.size {
            return Err(Error::corrupt(
                "chunk",
                format!("{} bytes, the manifest says {}", m.len(), c.size),
                &p,
            ));
        }
        Ok(p)
    }

    /// Re-hash a chunk file by its name: `Ok(None)` when sound, `Ok(Some(problem))` when not.
    pub(crate) fn verify_file(path: &Path, file_name: &str) -> Result<Option<String>> {
        let (hash, zstd) = match file_name.strip_suffix(".zst") {
            Some(h) => (h, true),
            None => (file_name, false),
        };
        let raw = fs::read(path).ctx("read chunk", path)?;
        let data = if zstd {
            match zstd::stream::decode_all(&raw[..]) {
                Ok(d) => d,
                Err(e) => return Ok(Some(format!("zstd: {e}"))),
            }
        } else {
            raw
        };
        if blake3::hash(&data).to_hex().as_str() != hash {
            return Ok(Some("content does not match its hash".into()));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_cuts_are_page_aligned_and_cover_everything() {
        let data = vec![1u8; FIXED_CHUNK * 2 + 5];
        let cuts = cut(&data, Layout::Fixed);
        assert_eq!(cuts.len(), 3);
        assert!(cuts.iter().all(|r| r.start % 4096 == 0));
        assert_eq!(cuts[2], FIXED_CHUNK * 2..FIXED_CHUNK * 2 + 5);
    }

    #[test]
    fn cdc_cuts_cover_everything_within_bounds() {
        let data: Vec<u8> = (0..1_000_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let cuts = cut(&data, Layout::Cdc);
        assert_eq!(cuts.first().unwrap().start, 0);
        assert_eq!(cuts.last().unwrap().end, data.len());
        for w in cuts.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
        assert!(cuts.iter().all(|r| r.len() <= CDC_MAX as usize));
        assert!(cut(&[], Layout::Cdc).is_empty());
    }

    #[test]
    fn compression_only_when_it_pays() {
        assert!(compress_if_pays(&vec![0u8; 100_000], 10).is_some());
        let noise: Vec<u8> = (0..100_000u32)
            .map(|i| blake3::hash(&i.to_le_bytes()).as_bytes()[0])
            .collect();
        assert!(compress_if_pays(&noise, 10).is_none());
    }
}
