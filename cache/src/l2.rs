//! L2: a log-structured cache file on local disk (NVMe), with its own in-memory index.
//!
//! The file is cut into fixed-size regions (see [`format`]). Records are appended to the active
//! region with one `pwrite` each; when it is full the next region is taken, and when none is
//! free the oldest one is evicted whole (FIFO by region, like a ring). Reads go through a
//! read-only `mmap` of the file, so an L2 hit is an index lookup, a copy and a CRC check, with no
//! system call.
//!
//! Correctness rests on four rules:
//! 1. A record is written (and, under [`Durability::Sync`], `fdatasync`ed) before the index
//!    points at it. Tombstones and region restarts are always synced.
//! 2. Every read checks the header CRC, the key, the epoch, the sequence number and the CRC of the
//!    decoded value. Any mismatch is a miss and drops the index entry.
//! 3. A region is restarted (new epoch) only under its write lock, and readers copy a record only
//!    under its read lock after checking the epoch, so a reader never sees a region being reused.
//! 4. Regions are reused oldest first, so a record never outlives a newer record (or tombstone) of
//!    the same key; on recovery the highest sequence number per key is the latest state.
//! 5. Before a newer record (or tombstone) of a key is written, the key's current record is
//!    rewritten in place as "superseded" (same length, new header CRC), in the same `fdatasync`.
//!    So an older value cannot come back even if the newer record is later lost to damage.

mod format;
mod recovery;

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock};

use bytes::Bytes;
use memmap2::Mmap;

use crate::compression::{Codec, Compressor};
use crate::config::{Durability, L2Config};
use crate::error::Error;
use crate::key::CacheKey;
use crate::metrics::TierMetrics;
use format::{Geometry, Kind, RecordHeader};

/// Name of the data file inside the L2 directory.
pub const DATA_FILE: &str = "l2.data";

/// Where a record lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Loc {
    pub(crate) region: u32,
    pub(crate) offset: u64,
    pub(crate) len: u32,
    pub(crate) epoch: u64,
    pub(crate) seq: u64,
}

/// A value read from L2, verified.
#[derive(Debug)]
pub(crate) struct L2Value {
    pub(crate) data: Bytes,
    pub(crate) checksum: u32,
    pub(crate) created_ms: u64,
    pub(crate) access_count: u64,
    pub(crate) seq: u64,
}

/// What to write for a value.
#[derive(Debug)]
pub(crate) struct ValueRecord<'a> {
    pub(crate) data: &'a Bytes,
    pub(crate) checksum: u32,
    pub(crate) created_ms: u64,
    pub(crate) access_count: u64,
}

#[derive(Debug)]
struct Region {
    /// Held shared while copying a record out, exclusively while changing the epoch.
    guard: RwLock<()>,
    /// Current epoch; 0 while the region is free.
    epoch: AtomicU64,
}

#[derive(Debug)]
struct Writer {
    region_keys: Vec<Vec<CacheKey>>,
    /// Full regions, oldest first.
    sealed: VecDeque<usize>,
    free: Vec<usize>,
    active: usize,
    /// Absolute file offset of the next record.
    write_off: u64,
    next_seq: u64,
    next_epoch: u64,
}

/// The disk tier.
#[derive(Debug)]
pub(crate) struct L2 {
    path: PathBuf,
    file: File,
    map: Mmap,
    geometry: Geometry,
    regions: Box<[Region]>,
    index: RwLock<HashMap<CacheKey, Loc>>,
    live_bytes: AtomicU64,
    writer: Mutex<Writer>,
    durability: Durability,
    compressor: Compressor,
    failed: AtomicBool,
    metrics: TierMetrics,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the writer lock leaves consistent state (the index is updated last),
    // so poisoning is not a reason to stop.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

impl L2 {
    /// Opens (creating or wiping as needed) the data file and recovers the index from it.
    /// Blocking: call from a blocking thread.
    pub(crate) fn open(config: &L2Config, metrics: TierMetrics) -> Result<Self, Error> {
        let geometry = Geometry {
            region_size: config.region_bytes,
            region_count: config.capacity_bytes / config.region_bytes,
        };
        std::fs::create_dir_all(&config.dir).map_err(|source| Error::OpenL2 {
            path: config.dir.clone(),
            source,
        })?;
        let path = config.dir.join(DATA_FILE);
        let open_err = |source| Error::OpenL2 {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(open_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(Error::L2Locked { path }),
            Err(std::fs::TryLockError::Error(e)) => return Err(open_err(e)),
        }
        if !Self::matches(&file, geometry) {
            Self::format(&file, &config.dir, geometry).map_err(open_err)?;
            tracing::info!(path = %path.display(), ?geometry, "formatted L2 cache file");
        }
        // SAFETY: the mapping is read-only and covers exactly the file length, which never changes
        // while mapped: this process holds an exclusive flock on the file, sized it above, and
        // never truncates it again. Bytes under the mapping are only ever changed through
        // `pwrite` on regions no reader is copying from (see the module docs, rule 3).
        #[allow(unsafe_code)]
        let map = unsafe { Mmap::map(&file) }.map_err(open_err)?;
        let rec = recovery::scan(&map, geometry);
        let regions: Box<[Region]> = rec
            .epochs
            .iter()
            .map(|&e| Region {
                guard: RwLock::new(()),
                epoch: AtomicU64::new(e),
            })
            .collect();
        let live: u64 = rec.index.values().map(|l| l.len as u64).sum();
        tracing::info!(
            path = %path.display(),
            entries = rec.index.len(),
            records = rec.records,
            live_bytes = live,
            "recovered L2 index"
        );
        metrics.bytes.set(live as i64);
        let writer = Writer {
            region_keys: rec.region_keys,
            sealed: rec.sealed.into_iter().collect(),
            free: rec.free.into_iter().rev().collect(),
            active: usize::MAX,
            write_off: 0,
            next_seq: rec.max_seq + 1,
            next_epoch: rec.max_epoch + 1,
        };
        let l2 = Self {
            path,
            file,
            map,
            geometry,
            regions,
            index: RwLock::new(rec.index),
            live_bytes: AtomicU64::new(live),
            writer: Mutex::new(writer),
            durability: config.durability,
            compressor: Compressor::new(config.compression),
            failed: AtomicBool::new(false),
            metrics,
        };
        // Always write into a fresh region after a restart: the tail of the previous active
        // region may hold a torn record followed by records of the same epoch that were never
        // acknowledged, and appending next to them could make them look valid.
        {
            let mut w = lock(&l2.writer);
            l2.next_region(&mut w)?;
        }
        Ok(l2)
    }

    fn matches(file: &File, g: Geometry) -> bool {
        let Ok(meta) = file.metadata() else {
            return false;
        };
        if meta.len() != g.file_len() {
            return false;
        }
        let mut sb = [0u8; 64];
        file.read_exact_at(&mut sb, 0).is_ok() && format::decode_superblock(&sb) == Some(g)
    }

    /// Wipes the file and writes a fresh superblock (every region free).
    fn format(file: &File, dir: &Path, g: Geometry) -> std::io::Result<()> {
        file.set_len(0)?;
        file.set_len(g.file_len())?;
        file.write_all_at(&format::encode_superblock(g), 0)?;
        file.sync_all()?;
        File::open(dir)?.sync_all()
    }

    /// Number of live entries.
    pub(crate) fn len(&self) -> usize {
        read(&self.index).len()
    }

    /// Whether the index has `key` (the record is verified only when read).
    pub(crate) fn contains_key(&self, key: &CacheKey) -> bool {
        read(&self.index).contains_key(key)
    }

    /// Sequence number of the record the index holds for `key`.
    pub(crate) fn seq_of(&self, key: &CacheKey) -> Option<u64> {
        read(&self.index).get(key).map(|l| l.seq)
    }

    /// Reads and verifies `key`. A failed verification is a miss and drops the entry.
    /// `count` says whether the lookup is counted as a hit or miss.
    pub(crate) fn read(&self, key: &CacheKey, count: bool) -> Option<L2Value> {
        let found = read(&self.index).get(key).copied();
        let Some(loc) = found else {
            if count {
                self.metrics.misses.inc();
            }
            return None;
        };
        let region = &self.regions[loc.region as usize];
        let verified = {
            let _shared = read(&region.guard);
            if region.epoch.load(Ordering::Acquire) != loc.epoch {
                // The region was reused after the lookup; the entry is gone (an eviction).
                None
            } else {
                let start = loc.offset as usize;
                match verify(&self.map[start..start + loc.len as usize], key, loc) {
                    Ok(value) => Some(value),
                    // Superseded by a write that is updating the index right now.
                    Err(Reject::Superseded) => None,
                    Err(Reject::Corrupt) => {
                        self.metrics.corrupt.inc();
                        tracing::warn!(
                            path = %self.path.display(),
                            %key,
                            offset = loc.offset,
                            "L2 record failed verification; dropped"
                        );
                        None
                    }
                }
            }
        };
        match verified {
            Some(v) => {
                if count {
                    self.metrics.hits.inc();
                }
                Some(v)
            }
            None => {
                self.forget(key, loc);
                if count {
                    self.metrics.misses.inc();
                }
                None
            }
        }
    }

    fn forget(&self, key: &CacheKey, loc: Loc) {
        let mut index = write(&self.index);
        if index.get(key) == Some(&loc) {
            index.remove(key);
            let live =
                self.live_bytes.fetch_sub(loc.len as u64, Ordering::Relaxed) - loc.len as u64;
            self.metrics.bytes.set(live as i64);
        }
    }

    /// Appends a value record. Returns `Ok(None)` when the value does not fit in a region (not
    /// admitted). Blocking.
    pub(crate) fn put(&self, key: &CacheKey, v: ValueRecord<'_>) -> Result<Option<u64>, Error> {
        if key.validate().is_err() {
            return Ok(None);
        }
        let enc = self.compressor.encode(v.data);
        let header = RecordHeader {
            kind: Kind::Value,
            codec: enc.codec,
            epoch: 0,
            seq: 0,
            bucket_len: key.bucket().len() as u16,
            key_len: key.key().len() as u16,
            payload_len: u32::try_from(enc.payload.len()).unwrap_or(u32::MAX),
            raw_len: v.data.len() as u64,
            created_ms: v.created_ms,
            access_count: v.access_count,
            data_crc: v.checksum,
        };
        if enc.payload.len() as u64 > u32::MAX as u64
            || header.record_len() > self.geometry.max_record_len()
        {
            return Ok(None);
        }
        let sync = self.durability == Durability::Sync;
        self.append(key, header, &enc.payload, sync).map(Some)
    }

    /// Makes `key` absent, durably, if L2 holds it. Blocking.
    pub(crate) fn remove(&self, key: &CacheKey) -> Result<(), Error> {
        if !self.contains_key(key) {
            // No record of this key is reachable: every older record was superseded by one the
            // index knew about, or its region was restarted (synced) since.
            return Ok(());
        }
        let header = RecordHeader {
            kind: Kind::Tombstone,
            codec: Codec::Raw,
            epoch: 0,
            seq: 0,
            bucket_len: key.bucket().len() as u16,
            key_len: key.key().len() as u16,
            payload_len: 0,
            raw_len: 0,
            created_ms: 0,
            access_count: 0,
            data_crc: 0,
        };
        self.append(key, header, &[], true).map(|_| ())
    }

    fn append(
        &self,
        key: &CacheKey,
        mut h: RecordHeader,
        payload: &[u8],
        sync: bool,
    ) -> Result<u64, Error> {
        let mut w = lock(&self.writer);
        if self.failed.load(Ordering::Relaxed) {
            return Err(self.write_err(std::io::Error::other(
                "L2 disabled after an earlier write error",
            )));
        }
        let len = h.record_len();
        let region_end = self.geometry.region_start(w.active) + self.geometry.region_size;
        if w.write_off + len > region_end {
            let full = w.active;
            w.sealed.push_back(full);
            self.next_region(&mut w)?;
        }
        // Rule 5: retire the key's current record first. If we crash between this and the new
        // record, the key is simply absent.
        let previous = read(&self.index).get(key).copied();
        if let Some(prev) = previous
            && let Err(e) = self.supersede(prev)
        {
            return Err(self.fail(e));
        }
        h.epoch = self.regions[w.active].epoch.load(Ordering::Relaxed);
        h.seq = w.next_seq;
        w.next_seq += 1;
        let buf = format::encode_record(&h, key.bucket().as_bytes(), key.key().as_bytes(), payload);
        let offset = w.write_off;
        let written = self
            .file
            .write_all_at(&buf, offset)
            .and_then(|()| if sync { self.file.sync_data() } else { Ok(()) });
        if let Err(e) = written {
            return Err(self.fail(e));
        }
        w.write_off += len;
        let active = w.active;
        w.region_keys[active].push(key.clone());
        let loc = Loc {
            region: active as u32,
            offset,
            len: len as u32,
            epoch: h.epoch,
            seq: h.seq,
        };
        let mut index = write(&self.index);
        let old = match h.kind {
            Kind::Value => {
                self.live_bytes.fetch_add(len, Ordering::Relaxed);
                self.metrics.inserts.inc();
                index.insert(key.clone(), loc)
            }
            // `append` never writes superseded records; they only arise from `supersede`.
            Kind::Tombstone | Kind::Superseded => index.remove(key),
        };
        if let Some(old) = old {
            self.live_bytes.fetch_sub(old.len as u64, Ordering::Relaxed);
        }
        self.metrics
            .bytes
            .set(self.live_bytes.load(Ordering::Relaxed) as i64);
        Ok(h.seq)
    }

    /// Rewrites the record at `loc` as superseded. Call with the writer lock held (so its region
    /// cannot be reused meanwhile). Holds the region's write lock so no reader sees a half
    /// rewritten header.
    fn supersede(&self, loc: Loc) -> std::io::Result<()> {
        let region = &self.regions[loc.region as usize];
        let _exclusive = write(&region.guard);
        if region.epoch.load(Ordering::Acquire) != loc.epoch {
            return Ok(());
        }
        let start = loc.offset as usize;
        let Some(header) = format::superseded_header(&self.map[start..start + loc.len as usize])
        else {
            // Already damaged: it cannot be mistaken for a value any more.
            return Ok(());
        };
        self.file.write_all_at(&header, loc.offset)
    }

    /// Makes a free region (evicting the oldest one if none is free) the active one.
    fn next_region(&self, w: &mut Writer) -> Result<(), Error> {
        let region = match w.free.pop() {
            Some(r) => r,
            None => {
                let oldest = w.sealed.pop_front().ok_or_else(|| {
                    self.write_err(std::io::Error::other("no L2 region to reuse"))
                })?;
                self.evict_region(w, oldest);
                oldest
            }
        };
        let epoch = w.next_epoch;
        w.next_epoch += 1;
        {
            let _exclusive = write(&self.regions[region].guard);
            self.regions[region].epoch.store(epoch, Ordering::Release);
        }
        let start = self.geometry.region_start(region);
        // The new header must be durable before any record of the region is acknowledged, or a
        // crash could bring back the region's old records (rule 4 in the module docs).
        let header = format::encode_region_header(epoch);
        if let Err(e) = self
            .file
            .write_all_at(&header, start)
            .and_then(|()| self.file.sync_data())
        {
            return Err(self.fail(e));
        }
        w.active = region;
        w.write_off = start + format::REGION_HEADER_LEN;
        Ok(())
    }

    fn evict_region(&self, w: &mut Writer, region: usize) {
        let keys = std::mem::take(&mut w.region_keys[region]);
        let mut index = write(&self.index);
        for key in keys {
            if index.get(&key).is_some_and(|l| l.region as usize == region)
                && let Some(l) = index.remove(&key)
            {
                self.live_bytes.fetch_sub(l.len as u64, Ordering::Relaxed);
                self.metrics.evictions.inc();
            }
        }
        self.metrics
            .bytes
            .set(self.live_bytes.load(Ordering::Relaxed) as i64);
    }

    /// After a write error the on-disk state is unknown: stop using L2 for this process and try
    /// to invalidate the superblock so the next open starts from an empty file.
    fn fail(&self, e: std::io::Error) -> Error {
        self.failed.store(true, Ordering::Relaxed);
        write(&self.index).clear();
        self.live_bytes.store(0, Ordering::Relaxed);
        self.metrics.bytes.set(0);
        let wiped = self
            .file
            .write_all_at(&[0u8; 64], 0)
            .and_then(|()| self.file.sync_data());
        tracing::error!(
            path = %self.path.display(),
            error = %e,
            superblock_wiped = wiped.is_ok(),
            "L2 write failed; L2 disabled until restart"
        );
        self.write_err(e)
    }

    fn write_err(&self, source: std::io::Error) -> Error {
        Error::WriteL2 {
            path: self.path.clone(),
            source,
        }
    }
}

/// Why a record was not returned.
#[derive(Debug, PartialEq, Eq)]
enum Reject {
    Superseded,
    Corrupt,
}

/// Checks a record copied from `loc` against the key and its CRCs, and decodes the value.
fn verify(rec: &[u8], key: &CacheKey, loc: Loc) -> Result<L2Value, Reject> {
    let (h, bucket, name) = format::decode_record_header(rec).ok_or(Reject::Corrupt)?;
    if h.kind == Kind::Superseded {
        return Err(Reject::Superseded);
    }
    if h.kind != Kind::Value
        || h.epoch != loc.epoch
        || h.seq != loc.seq
        || bucket != key.bucket().as_bytes()
        || name != key.key().as_bytes()
    {
        return Err(Reject::Corrupt);
    }
    let raw_len = usize::try_from(h.raw_len).map_err(|_| Reject::Corrupt)?;
    // LZ4 cannot expand more than 255:1; refuse to allocate for a length that cannot be real.
    if raw_len > (h.payload_len as usize).saturating_mul(256) + 64 {
        return Err(Reject::Corrupt);
    }
    let data =
        Compressor::decode(h.codec, &rec[h.payload_range()], raw_len).ok_or(Reject::Corrupt)?;
    if crc32c::crc32c(&data) != h.data_crc {
        return Err(Reject::Corrupt);
    }
    Ok(L2Value {
        data,
        checksum: h.data_crc,
        created_ms: h.created_ms,
        access_count: h.access_count,
        seq: h.seq,
    })
}

#[cfg(test)]
mod tests;
