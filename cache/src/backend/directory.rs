//! The default L3: one file per object under a root directory.
//!
//! Object file = 32-byte header + payload:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `CSOB` |
//! | 4 | 1 | format version (1) |
//! | 5 | 1 | codec (0 raw, 1 LZ4 block) |
//! | 6 | 2 | reserved (0) |
//! | 8 | 8 | raw length (LE) |
//! | 16 | 8 | payload length (LE) |
//! | 24 | 4 | CRC-32C of the raw value |
//! | 28 | 4 | CRC-32C of bytes 0..28 |
//!
//! Writes are atomic: temp file in the bucket directory, `fsync`, `rename`, `fsync` of the
//! directory. A reader therefore sees the old object or the new one, never a mix; after a crash
//! a temp file (name starting with `.tmp.`) may be left behind and is never read.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::Backend;
use crate::compression::{Codec, Compression, Compressor};
use crate::error::Error;
use crate::key::CacheKey;

const MAGIC: &[u8; 4] = b"CSOB";
const VERSION: u8 = 1;
const HEADER: usize = 32;
/// Path segments are cut at this many bytes so that no file name exceeds NAME_MAX (255).
const SEGMENT: usize = 200;

/// A checksummed object store in a directory (the default L3).
#[derive(Clone, Debug)]
pub struct DirectoryStore {
    root: Arc<PathBuf>,
    compressor: Compressor,
    temp_counter: Arc<AtomicU64>,
}

impl DirectoryStore {
    /// A store rooted at `root` (created on first write), compressing with LZ4 behind the ratio
    /// guard.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: Arc::new(root.into()),
            compressor: Compressor::new(Compression::Lz4),
            temp_counter: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Sets the compression of stored objects. Default: [`Compression::Lz4`].
    pub fn with_compression(mut self, compression: Compression) -> Self {
        self.compressor = Compressor::new(compression);
        self
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Deletes temp files left by writes that a crash interrupted, returning how many. Call it at
    /// startup, before any `put`: it would also delete the temp file of a write in flight.
    pub async fn remove_temp_files(&self) -> Result<u64, Error> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            let mut removed = 0;
            let mut dirs = vec![(*root).clone()];
            while let Some(dir) = dirs.pop() {
                let entries = match fs::read_dir(&dir) {
                    Ok(e) => e,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_err("listing directory", &dir, e)),
                };
                for entry in entries {
                    let entry = entry.map_err(|e| io_err("listing directory", &dir, e))?;
                    let path = entry.path();
                    let kind = entry
                        .file_type()
                        .map_err(|e| io_err("reading file type", &path, e))?;
                    if kind.is_dir() {
                        dirs.push(path);
                    } else if entry.file_name().to_string_lossy().starts_with(".tmp.") {
                        fs::remove_file(&path)
                            .map_err(|e| io_err("removing temp file", &path, e))?;
                        removed += 1;
                    }
                }
            }
            Ok(removed)
        })
        .await?
    }

    /// Where `key` is stored. Bucket and key are escaped separately (`[A-Za-z0-9_-]` and
    /// non-leading `.` kept, every other byte `%XX`, the empty string `%`) and cut into segments of
    /// at most 200 bytes; every segment but the last ends in `+`, which escaping never produces.
    pub fn object_path(&self, key: &CacheKey) -> PathBuf {
        let mut path = (*self.root).clone();
        for part in [key.bucket(), key.key()] {
            let escaped = escape(part);
            let mut rest = escaped.as_str();
            while rest.len() > SEGMENT {
                // Escaped text is ASCII, so any byte index is a char boundary.
                let (head, tail) = rest.split_at(SEGMENT);
                path.push(format!("{head}+"));
                rest = tail;
            }
            path.push(rest);
        }
        path
    }

    fn read_object(path: &Path) -> Result<Option<Bytes>, Error> {
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("opening object", path, e)),
        };
        let mut buf = Vec::new();
        file.read_to_end(&mut buf)
            .map_err(|e| io_err("reading object", path, e))?;
        decode_object(&buf)
            .map(Some)
            .map_err(|reason| Error::CorruptObject {
                path: path.to_path_buf(),
                reason,
            })
    }

    fn write_object(&self, path: &Path, value: &Bytes) -> Result<(), Error> {
        let dir = path.parent().unwrap_or(&self.root);
        self.create_dirs(dir)?;
        let enc = self.compressor.encode(value);
        let mut header = [0u8; HEADER];
        header[0..4].copy_from_slice(MAGIC);
        header[4] = VERSION;
        header[5] = enc.codec as u8;
        header[8..16].copy_from_slice(&(value.len() as u64).to_le_bytes());
        header[16..24].copy_from_slice(&(enc.payload.len() as u64).to_le_bytes());
        header[24..28].copy_from_slice(&crc32c::crc32c(value).to_le_bytes());
        let hcrc = crc32c::crc32c(&header[..28]);
        header[28..32].copy_from_slice(&hcrc.to_le_bytes());

        let n = self.temp_counter.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".tmp.{}.{n}", std::process::id()));
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(|e| io_err("creating temp object", &tmp, e))?;
            f.write_all(&header)
                .and_then(|()| f.write_all(&enc.payload))
                .map_err(|e| io_err("writing temp object", &tmp, e))?;
            f.sync_all()
                .map_err(|e| io_err("syncing temp object", &tmp, e))?;
            fs::rename(&tmp, path).map_err(|e| io_err("renaming object into place", path, e))?;
            sync_dir(dir)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn delete_object(path: &Path) -> Result<(), Error> {
        match fs::remove_file(path) {
            Ok(()) => sync_dir(path.parent().unwrap_or(Path::new("."))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("deleting object", path, e)),
        }
    }

    /// Creates `dir` and every missing parent, fsyncing each parent whose entry list changed so
    /// the new directories survive power loss.
    fn create_dirs(&self, dir: &Path) -> Result<(), Error> {
        if dir.is_dir() {
            return Ok(());
        }
        let mut missing = Vec::new();
        let mut cur = dir;
        while !cur.is_dir() {
            missing.push(cur.to_path_buf());
            match cur.parent() {
                Some(p) => cur = p,
                None => break,
            }
        }
        fs::create_dir_all(dir).map_err(|e| io_err("creating directory", dir, e))?;
        for created in missing.iter().rev() {
            if let Some(parent) = created.parent() {
                sync_dir(parent)?;
            }
        }
        Ok(())
    }
}

fn decode_object(buf: &[u8]) -> Result<Bytes, String> {
    if buf.len() < HEADER {
        return Err(format!("{} bytes is shorter than the header", buf.len()));
    }
    let (header, payload) = buf.split_at(HEADER);
    if &header[0..4] != MAGIC {
        return Err("bad magic".into());
    }
    let stored_hcrc = u32::from_le_bytes([header[28], header[29], header[30], header[31]]);
    if crc32c::crc32c(&header[..28]) != stored_hcrc {
        return Err("header checksum mismatch".into());
    }
    if header[4] != VERSION {
        return Err(format!("unknown format version {}", header[4]));
    }
    let codec = Codec::from_u8(header[5]).ok_or_else(|| format!("unknown codec {}", header[5]))?;
    let raw_len = u64_at(header, 8);
    let stored_len = u64_at(header, 16);
    let data_crc = u32::from_le_bytes([header[24], header[25], header[26], header[27]]);
    if stored_len != payload.len() as u64 {
        return Err(format!(
            "payload is {} bytes, header says {stored_len}",
            payload.len()
        ));
    }
    let raw_len = usize::try_from(raw_len).map_err(|_| "raw length overflows".to_string())?;
    let data = Compressor::decode(codec, payload, raw_len)
        .ok_or_else(|| "payload does not decode to the recorded length".to_string())?;
    if crc32c::crc32c(&data) != data_crc {
        return Err("data checksum mismatch".into());
    }
    Ok(data)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn escape(part: &str) -> String {
    if part.is_empty() {
        return "%".into();
    }
    let mut out = String::with_capacity(part.len());
    for (i, b) in part.bytes().enumerate() {
        let keep = b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("syncing directory", dir, e))
}

fn io_err(op: &'static str, path: &Path, source: io::Error) -> Error {
    Error::StoreIo {
        op,
        path: path.to_path_buf(),
        source,
    }
}

impl Backend for DirectoryStore {
    fn name(&self) -> &'static str {
        "directory"
    }

    async fn get(&self, key: &CacheKey) -> Result<Option<Bytes>, Error> {
        let path = self.object_path(key);
        tokio::task::spawn_blocking(move || Self::read_object(&path)).await?
    }

    async fn put(&self, key: &CacheKey, value: Bytes) -> Result<(), Error> {
        let path = self.object_path(key);
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.write_object(&path, &value)).await?
    }

    async fn delete(&self, key: &CacheKey) -> Result<(), Error> {
        let path = self.object_path(key);
        tokio::task::spawn_blocking(move || Self::delete_object(&path)).await?
    }

    async fn contains(&self, key: &CacheKey) -> Result<bool, Error> {
        // Presence of the file is enough: a corrupt object is reported by `get`.
        let path = self.object_path(key);
        tokio::task::spawn_blocking(move || path.is_file())
            .await
            .map_err(Error::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, DirectoryStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = DirectoryStore::new(dir.path().join("objects"));
        (dir, store)
    }

    #[tokio::test]
    async fn an_object_put_is_read_back_byte_for_byte_and_deleted() {
        let (_d, s) = store();
        let k = CacheKey::new("bucket", "a/b/../c");
        let v = Bytes::from("payload ".repeat(300));
        assert_eq!(s.get(&k).await.expect("get"), None);
        s.put(&k, v.clone()).await.expect("put");
        assert_eq!(s.get(&k).await.expect("get"), Some(v));
        assert!(s.contains(&k).await.expect("contains"));
        s.delete(&k).await.expect("delete");
        assert_eq!(s.get(&k).await.expect("get"), None);
        s.delete(&k).await.expect("deleting a missing key succeeds");
    }

    #[tokio::test]
    async fn a_flipped_bit_in_an_object_is_reported_as_corrupt_not_returned() {
        let (_d, s) = store();
        let k = CacheKey::new("b", "k");
        s.put(&k, Bytes::from(vec![7u8; 1000])).await.expect("put");
        let path = s.object_path(&k);
        let mut raw = fs::read(&path).expect("read");
        let last = raw.len() - 1;
        raw[last] ^= 0x10;
        fs::write(&path, raw).expect("write");
        assert!(matches!(s.get(&k).await, Err(Error::CorruptObject { .. })));
    }

    #[test]
    fn escaping_keeps_distinct_keys_on_distinct_paths() {
        let s = DirectoryStore::new("/r");
        let keys = [
            CacheKey::new("a", "b"),
            CacheKey::new("a", "%62"),
            CacheKey::new("a", ".b"),
            CacheKey::new("a", ""),
            CacheKey::new("", "a"),
            CacheKey::new("a/b", "c"),
            CacheKey::new("a", "b/c"),
            CacheKey::new("a", "x".repeat(200)),
            CacheKey::new("a", "x".repeat(201)),
            CacheKey::new("a", "x".repeat(600)),
        ];
        let mut paths: Vec<_> = keys.iter().map(|k| s.object_path(k)).collect();
        for p in &paths {
            for c in p.components().skip(2) {
                assert!(c.as_os_str().len() <= 255, "{p:?}");
                assert_ne!(c.as_os_str(), "..");
            }
        }
        paths.sort();
        paths.dedup();
        assert_eq!(paths.len(), keys.len());
    }

    #[tokio::test]
    async fn temp_files_left_by_a_crash_are_removed_and_objects_are_kept() {
        let (_d, s) = store();
        let k = CacheKey::new("b", "kept");
        s.put(&k, Bytes::from_static(b"v")).await.expect("put");
        let bucket_dir = s.object_path(&k).parent().expect("parent").to_path_buf();
        fs::write(bucket_dir.join(".tmp.1.0"), b"half").expect("leftover");
        fs::create_dir_all(bucket_dir.join("deeper")).expect("dir");
        fs::write(bucket_dir.join("deeper").join(".tmp.2.9"), b"x").expect("leftover");
        assert_eq!(s.remove_temp_files().await.expect("sweep"), 2);
        assert!(!bucket_dir.join(".tmp.1.0").exists());
        assert_eq!(
            s.get(&k).await.expect("get"),
            Some(Bytes::from_static(b"v"))
        );
    }

    #[tokio::test]
    async fn a_long_key_is_stored_and_read_back() {
        let (_d, s) = store();
        let k = CacheKey::new("b", "é/".repeat(300));
        s.put(&k, Bytes::from_static(b"v")).await.expect("put");
        assert_eq!(
            s.get(&k).await.expect("get"),
            Some(Bytes::from_static(b"v"))
        );
    }
}
