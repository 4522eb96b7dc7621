//! The durable shard store: shard columns of archived volumes on local disk directories.
//!
//! Layout: `<disk>/couchestor-shards/<volume>/col-<column>.shards`, one file per (volume,
//! column) made of fixed slots, slot `s` holding stripe `s` (see `docs/shard-format.md`).
//! The index (redb, one file per node) maps (volume, column, stripe) to the slot's
//! generation and checksum and holds each volume's layout and destage watermark.
//!
//! Write protocol of [`ShardStore::put`]: header + payload are written in one `pwrite` and
//! `fdatasync`ed (the file and its directories were fsynced when created), and only then is
//! the index entry committed (redb fsyncs on commit); `put` returns after that commit. A crash
//! before the commit leaves an unindexed slot, which recovery discards; a crash after it
//! leaves a shard that reads back byte-exact.
//!
//! The API is synchronous; async callers use `spawn_blocking`. `ShardStore` is `Send + Sync`
//! and methods take `&self`; writers of the same shard are serialised internally.

mod batch;
mod file;
mod index;
mod recovery;

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use redb::{Database, ReadableDatabase, ReadableTable};

use crate::shard::{self, BLOCK_BYTES, ShardHeader};
use index::{DIRTY, SHARDS, STATE, VOLUMES, VolumeMeta};

pub use index::{IndexEntry, ShardState, VolumeLayout};
pub use recovery::{RecoveryReport, ShardId};

/// Directory created under each configured disk path.
const STORE_DIR: &str = "couchestor-shards";
/// Number of striped locks serialising writers of the same shard.
const LOCK_STRIPES: usize = 64;

/// Everything that can go wrong in the shard store, with the shard or path it concerns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no disk directories configured")]
    NoDisks,
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("shard index: {op}: {source}")]
    Index {
        op: &'static str,
        #[source]
        source: redb::Error,
    },
    #[error("shard index schema version {found} is not {expected}")]
    Schema { found: u64, expected: u64 },
    #[error(transparent)]
    Id(#[from] shard::Error),
    #[error("volume {volume}: not in this store")]
    UnknownVolume { volume: String },
    #[error("volume {volume}: already created with layout {existing:?}, not {requested:?}")]
    LayoutConflict {
        volume: String,
        existing: VolumeLayout,
        requested: VolumeLayout,
    },
    #[error("volume {volume}: invalid layout: {reason}")]
    InvalidLayout {
        volume: String,
        reason: &'static str,
    },
    #[error("volume {volume}: unreadable index record: {reason}")]
    Metadata { volume: String, reason: String },
    #[error("volume {volume} column {column}: its disk {disk} is not configured")]
    DiskMissing {
        volume: String,
        column: u32,
        disk: String,
    },
    #[error("volume {volume} column {column}: out of range, the layout has {columns} columns")]
    ColumnOutOfRange {
        volume: String,
        column: u32,
        columns: u32,
    },
    #[error("volume {volume} column {column} stripe {stripe}: stripe index too large")]
    StripeOutOfRange {
        volume: String,
        column: u32,
        stripe: u64,
    },
    #[error(
        "volume {volume} column {column} stripe {stripe}: {len} bytes exceed the shard size {capacity}"
    )]
    PayloadTooLarge {
        volume: String,
        column: u32,
        stripe: u64,
        len: usize,
        capacity: u64,
    },
    #[error("volume {volume} column {column} stripe {stripe}: not stored")]
    NotFound {
        volume: String,
        column: u32,
        stripe: u64,
    },
    #[error("volume {volume} column {column} stripe {stripe}: marked for repair")]
    NeedsRepair {
        volume: String,
        column: u32,
        stripe: u64,
    },
    #[error("volume {volume} column {column} stripe {stripe} in {path}: corrupt: {reason}")]
    Corrupt {
        volume: String,
        column: u32,
        stripe: u64,
        path: PathBuf,
        reason: String,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

fn index_err<E: Into<redb::Error>>(op: &'static str) -> impl FnOnce(E) -> Error {
    move |e| Error::Index {
        op,
        source: e.into(),
    }
}

/// Where the store keeps its index and shards.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The redb index file (on the node's most reliable device).
    pub index_path: PathBuf,
    /// Disk directories holding shard files, one per physical disk.
    pub disks: Vec<PathBuf>,
    /// Try O_DIRECT (falls back to buffered I/O per disk when refused).
    pub direct_io: bool,
}

/// One configured disk directory.
#[derive(Debug)]
struct Disk {
    root: PathBuf,
    direct: bool,
}

/// Space on one disk directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskUsage {
    pub path: PathBuf,
    /// Whether shard I/O on this disk uses O_DIRECT.
    pub direct_io: bool,
    /// Bytes allocated to shard files (blocks actually used, so sparse slots count as 0).
    pub used_bytes: u64,
    /// Bytes available to this process (statvfs `f_bavail × f_frsize`).
    pub free_bytes: u64,
    pub total_bytes: u64,
}

/// A volume as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    pub layout: VolumeLayout,
    pub destaged_stripes: u64,
    /// Column → directory of its file.
    pub columns: BTreeMap<u32, PathBuf>,
}

/// The shard store of one node. See the module docs for the durability protocol.
pub struct ShardStore {
    db: Database,
    disks: Vec<Disk>,
    /// Striped by (volume, column, stripe): one writer per shard at a time.
    shard_locks: Vec<Mutex<()>>,
    /// Serialises column-to-disk assignment and file creation.
    assign_lock: Mutex<()>,
    report: RecoveryReport,
}

impl fmt::Debug for ShardStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardStore")
            .field("disks", &self.disks)
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

fn lock(m: &Mutex<()>) -> MutexGuard<'_, ()> {
    // The guarded data is `()`: a panic elsewhere cannot leave it inconsistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Checks a shard against the volume's layout; returns the slot's payload capacity and the
/// shard's byte offset in its column file.
fn slot_of(
    volume: &str,
    layout: &VolumeLayout,
    column: u32,
    stripe: u64,
    len: usize,
) -> Result<(u32, u64), Error> {
    let columns = u32::from(layout.data_shards) + u32::from(layout.parity_shards);
    if column >= columns {
        return Err(Error::ColumnOutOfRange {
            volume: volume.to_owned(),
            column,
            columns,
        });
    }
    let capacity = layout.shard_bytes();
    if len as u64 > capacity {
        return Err(Error::PayloadTooLarge {
            volume: volume.to_owned(),
            column,
            stripe,
            len,
            capacity,
        });
    }
    // `create_volume` bounds the shard size to u32.
    let slot_payload_bytes = capacity as u32;
    let offset = stripe
        .checked_mul(shard::slot_bytes(slot_payload_bytes))
        .filter(|o| *o <= i64::MAX as u64)
        .ok_or_else(|| Error::StripeOutOfRange {
            volume: volume.to_owned(),
            column,
            stripe,
        })?;
    Ok((slot_payload_bytes, offset))
}

fn column_path(root: &Path, volume: &str, column: u32) -> PathBuf {
    root.join(volume).join(format!("col-{column}.shards"))
}

impl ShardStore {
    /// Opens (or creates) the store, then runs crash recovery: after an unclean shutdown
    /// every column file's slot headers are checked against the index (see [`RecoveryReport`]).
    pub fn open(config: &StoreConfig) -> Result<Self, Error> {
        if config.disks.is_empty() {
            return Err(Error::NoDisks);
        }
        let mut disks = Vec::with_capacity(config.disks.len());
        for path in &config.disks {
            let root = path.join(STORE_DIR);
            std::fs::create_dir_all(&root).map_err(io_err("create", &root))?;
            file::sync_dir(path).map_err(io_err("fsync", path))?;
            let direct = config.direct_io
                && file::supports_direct(&root).map_err(io_err("probe O_DIRECT in", &root))?;
            tracing::info!(disk = %root.display(), direct, "shard disk ready");
            disks.push(Disk { root, direct });
        }
        let db = Database::create(&config.index_path).map_err(index_err("open"))?;
        let mut store = Self {
            db,
            disks,
            shard_locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            assign_lock: Mutex::new(()),
            report: RecoveryReport::default(),
        };
        store.report = recovery::run(&store)?;
        store.set_dirty(1)?;
        Ok(store)
    }

    /// What recovery found when this store was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// Registers a volume with its frozen layout. Idempotent for the same layout; a different
    /// layout for an existing volume is refused.
    pub fn create_volume(&self, volume: &str, layout: &VolumeLayout) -> Result<(), Error> {
        shard::check_volume_id(volume)?;
        shard::check_codec_id(&layout.codec_id)?;
        let invalid = |reason| Error::InvalidLayout {
            volume: volume.to_owned(),
            reason,
        };
        let (k, m) = (
            usize::from(layout.data_shards),
            usize::from(layout.parity_shards),
        );
        if k == 0 || m == 0 || k + m > crate::codec::MAX_TOTAL_SHARDS {
            return Err(invalid("need k ≥ 1, m ≥ 1, k + m ≤ 255"));
        }
        let shard_bytes = layout.shard_bytes();
        if !layout
            .stripe_size_bytes
            .is_multiple_of(u64::from(layout.data_shards))
            || !shard_bytes.is_multiple_of(crate::codec::ALIGNMENT_BYTES as u64)
            || shard_bytes == 0
            || shard_bytes > u64::from(u32::MAX)
        {
            return Err(invalid(
                "stripe size must be a multiple of k × 64 with shards under 4 GiB",
            ));
        }
        let _guard = lock(&self.assign_lock);
        if let Some(existing) = self.meta_opt(volume)? {
            if existing.layout == *layout {
                return Ok(());
            }
            return Err(Error::LayoutConflict {
                volume: volume.to_owned(),
                existing: existing.layout,
                requested: layout.clone(),
            });
        }
        self.write_meta(
            volume,
            &VolumeMeta {
                layout: layout.clone(),
                destaged_stripes: 0,
                columns: BTreeMap::new(),
            },
        )
    }

    /// The volume's layout, watermark and column placement, if known.
    pub fn volume(&self, volume: &str) -> Result<Option<VolumeInfo>, Error> {
        Ok(self.meta_opt(volume)?.map(|meta| VolumeInfo {
            layout: meta.layout,
            destaged_stripes: meta.destaged_stripes,
            columns: meta
                .columns
                .into_iter()
                .map(|(c, root)| (c, PathBuf::from(root)))
                .collect(),
        }))
    }

    /// Ids of every volume in the store.
    pub fn volumes(&self) -> Result<Vec<String>, Error> {
        let txn = self.db.begin_read().map_err(index_err("begin read"))?;
        let table = match txn.open_table(VOLUMES) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(index_err("open volumes")(e)),
        };
        let mut out = Vec::new();
        for item in table.iter().map_err(index_err("scan volumes"))? {
            let (k, _) = item.map_err(index_err("scan volumes"))?;
            out.push(k.value().to_owned());
        }
        Ok(out)
    }

    /// Records that stripes `0..stripes` are durably stored (destage resumes from here).
    pub fn set_destaged_stripes(&self, volume: &str, stripes: u64) -> Result<(), Error> {
        let _guard = lock(&self.assign_lock);
        let mut meta = self.meta(volume)?;
        meta.destaged_stripes = stripes;
        self.write_meta(volume, &meta)
    }

    /// Stores one shard durably; returns its generation (1 for a first write). When this
    /// returns `Ok`, the shard survives a crash or power loss.
    pub fn put(
        &self,
        volume: &str,
        column: u32,
        stripe: u64,
        payload: &[u8],
    ) -> Result<u64, Error> {
        let generations = self.put_batch(volume, column, &[(stripe, payload)])?;
        Ok(generations.first().copied().unwrap_or(1))
    }

    /// Reads one shard, verifying its header and payload checksum. Corruption is an error,
    /// never data.
    pub fn get(&self, volume: &str, column: u32, stripe: u64) -> Result<Vec<u8>, Error> {
        let meta = self.meta(volume)?;
        let entry = self
            .entry(volume, column, stripe)?
            .ok_or_else(|| Error::NotFound {
                volume: volume.to_owned(),
                column,
                stripe,
            })?;
        if entry.state != ShardState::Ok {
            return Err(Error::NeedsRepair {
                volume: volume.to_owned(),
                column,
                stripe,
            });
        }
        let disk = self.disk_of(&meta, volume, column)?;
        let path = column_path(&disk.root, volume, column);
        let corrupt = |reason: String| Error::Corrupt {
            volume: volume.to_owned(),
            column,
            stripe,
            path: path.clone(),
            reason,
        };
        let f = match file::open(&path, disk.direct, false) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(corrupt("column file is missing".into()));
            }
            Err(e) => return Err(io_err("open", &path)(e)),
        };
        let len = BLOCK_BYTES + entry.payload_len as usize;
        let buf = file::read_at(&f, entry.offset, len)
            .map_err(io_err("read", &path))?
            .ok_or_else(|| corrupt("slot lies beyond the end of the file".into()))?;
        check_slot(volume, column, stripe, &entry, buf.as_slice()).map_err(corrupt)?;
        Ok(buf.as_slice()[BLOCK_BYTES..len].to_vec())
    }

    /// The index entry of a shard, if any (for scrub, repair and tests).
    pub fn entry(
        &self,
        volume: &str,
        column: u32,
        stripe: u64,
    ) -> Result<Option<IndexEntry>, Error> {
        let txn = self.db.begin_read().map_err(index_err("begin read"))?;
        let table = match txn.open_table(SHARDS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(index_err("open shards")(e)),
        };
        let Some(v) = table
            .get((volume, column, stripe))
            .map_err(index_err("get shard"))?
        else {
            return Ok(None);
        };
        IndexEntry::decode(v.value())
            .map(Some)
            .ok_or_else(|| Error::Metadata {
                volume: volume.to_owned(),
                reason: format!("index entry of column {column} stripe {stripe} is malformed"),
            })
    }

    /// Reads every healthy shard of a volume and marks those that fail verification for
    /// repair (a scrub pass). Returns the shards newly marked.
    pub fn verify_volume(&self, volume: &str) -> Result<Vec<ShardId>, Error> {
        let mut bad = Vec::new();
        for (id, entry) in recovery::entries_of(self, volume)? {
            if entry.state != ShardState::Ok {
                continue;
            }
            match self.get(volume, id.column, id.stripe) {
                Ok(_) => {}
                Err(Error::Corrupt { reason, .. }) => {
                    tracing::warn!(volume, column = id.column, stripe = id.stripe, %reason, "corrupt shard marked for repair");
                    self.mark_for_repair(&id, entry)?;
                    bad.push(id);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(bad)
    }

    /// Index entries of one column of a volume, by stripe (for `Stat` and scrub).
    pub fn column_entries(
        &self,
        volume: &str,
        column: u32,
    ) -> Result<Vec<(u64, IndexEntry)>, Error> {
        Ok(recovery::entries_of(self, volume)?
            .into_iter()
            .filter(|(id, _)| id.column == column)
            .map(|(id, e)| (id.stripe, e))
            .collect())
    }

    /// Gives a column of a volume a disk and creates its (empty) file now rather than on the
    /// first `put`, so the volume records which columns this node holds.
    pub fn assign_column(&self, volume: &str, column: u32) -> Result<(), Error> {
        let layout = self.meta(volume)?.layout;
        let columns = u32::from(layout.data_shards) + u32::from(layout.parity_shards);
        if column >= columns {
            return Err(Error::ColumnOutOfRange {
                volume: volume.to_owned(),
                column,
                columns,
            });
        }
        self.column_disk(volume, column).map(|_| ())
    }

    /// Shards of a volume that must be rebuilt from the other columns.
    pub fn shards_needing_repair(&self, volume: &str) -> Result<Vec<ShardId>, Error> {
        Ok(recovery::entries_of(self, volume)?
            .into_iter()
            .filter(|(_, e)| e.state != ShardState::Ok)
            .map(|(id, _)| id)
            .collect())
    }

    /// Deletes a volume: its index records first (so nothing points at the files any more),
    /// then its directories. A crash in between leaves unreferenced directories, which the
    /// next open removes. Returns whether the volume existed.
    pub fn delete_volume(&self, volume: &str) -> Result<bool, Error> {
        shard::check_volume_id(volume)?;
        let _guard = lock(&self.assign_lock);
        let existed = self.meta_opt(volume)?.is_some();
        let txn = self.db.begin_write().map_err(index_err("begin write"))?;
        {
            let mut shards = txn.open_table(SHARDS).map_err(index_err("open shards"))?;
            shards
                .retain_in(
                    (volume, 0u32, 0u64)..=(volume, u32::MAX, u64::MAX),
                    |_, _| false,
                )
                .map_err(index_err("delete shards"))?;
            let mut volumes = txn.open_table(VOLUMES).map_err(index_err("open volumes"))?;
            volumes.remove(volume).map_err(index_err("delete volume"))?;
        }
        txn.commit().map_err(index_err("commit delete"))?;
        for disk in &self.disks {
            let dir = disk.root.join(volume);
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => file::sync_dir(&disk.root).map_err(io_err("fsync", &disk.root))?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove", &dir)(e)),
            }
        }
        Ok(existed)
    }

    /// Space used by shard files and free on each disk.
    pub fn usage(&self) -> Result<Vec<DiskUsage>, Error> {
        self.disks
            .iter()
            .map(|disk| {
                let vfs = rustix::fs::statvfs(&disk.root)
                    .map_err(|e| io_err("statvfs", &disk.root)(e.into()))?;
                Ok(DiskUsage {
                    path: disk.root.clone(),
                    direct_io: disk.direct,
                    used_bytes: allocated_bytes(&disk.root)?,
                    free_bytes: vfs.f_bavail.saturating_mul(vfs.f_frsize),
                    total_bytes: vfs.f_blocks.saturating_mul(vfs.f_frsize),
                })
            })
            .collect()
    }

    /// Which of the striped shard locks guards (volume, column, stripe). Code that needs
    /// several takes each index once, in increasing order, so it cannot deadlock.
    fn shard_lock_index(&self, volume: &str, column: u32, stripe: u64) -> usize {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (volume, column, stripe).hash(&mut h);
        (h.finish() % LOCK_STRIPES as u64) as usize
    }

    fn mark_for_repair(&self, id: &ShardId, entry: IndexEntry) -> Result<(), Error> {
        self.commit_entry(
            &id.volume,
            id.column,
            id.stripe,
            &IndexEntry {
                state: ShardState::NeedsRepair,
                ..entry
            },
        )
    }

    fn commit_entry(
        &self,
        volume: &str,
        column: u32,
        stripe: u64,
        entry: &IndexEntry,
    ) -> Result<(), Error> {
        self.commit_entries(volume, column, &[(stripe, *entry)])
    }

    /// Records several shards of one column in one index transaction.
    fn commit_entries(
        &self,
        volume: &str,
        column: u32,
        entries: &[(u64, IndexEntry)],
    ) -> Result<(), Error> {
        let txn = self.db.begin_write().map_err(index_err("begin write"))?;
        {
            let mut table = txn.open_table(SHARDS).map_err(index_err("open shards"))?;
            for (stripe, entry) in entries {
                table
                    .insert((volume, column, *stripe), entry.encode().as_slice())
                    .map_err(index_err("insert shard"))?;
            }
        }
        txn.commit().map_err(index_err("commit shard"))
    }

    fn meta_opt(&self, volume: &str) -> Result<Option<VolumeMeta>, Error> {
        let txn = self.db.begin_read().map_err(index_err("begin read"))?;
        let table = match txn.open_table(VOLUMES) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(index_err("open volumes")(e)),
        };
        let Some(v) = table.get(volume).map_err(index_err("get volume"))? else {
            return Ok(None);
        };
        serde_json::from_str(v.value())
            .map(Some)
            .map_err(|e| Error::Metadata {
                volume: volume.to_owned(),
                reason: e.to_string(),
            })
    }

    fn meta(&self, volume: &str) -> Result<VolumeMeta, Error> {
        self.meta_opt(volume)?.ok_or_else(|| Error::UnknownVolume {
            volume: volume.to_owned(),
        })
    }

    fn write_meta(&self, volume: &str, meta: &VolumeMeta) -> Result<(), Error> {
        let json = serde_json::to_string(meta).map_err(|e| Error::Metadata {
            volume: volume.to_owned(),
            reason: e.to_string(),
        })?;
        let txn = self.db.begin_write().map_err(index_err("begin write"))?;
        {
            let mut table = txn.open_table(VOLUMES).map_err(index_err("open volumes"))?;
            table
                .insert(volume, json.as_str())
                .map_err(index_err("insert volume"))?;
        }
        txn.commit().map_err(index_err("commit volume"))
    }

    fn set_dirty(&self, value: u64) -> Result<(), Error> {
        let txn = self.db.begin_write().map_err(index_err("begin write"))?;
        {
            let mut table = txn.open_table(STATE).map_err(index_err("open state"))?;
            table
                .insert(DIRTY, value)
                .map_err(index_err("set dirty flag"))?;
        }
        txn.commit().map_err(index_err("commit dirty flag"))
    }

    fn disk_of(&self, meta: &VolumeMeta, volume: &str, column: u32) -> Result<&Disk, Error> {
        let Some(root) = meta.columns.get(&column) else {
            return Err(Error::Corrupt {
                volume: volume.to_owned(),
                column,
                stripe: 0,
                path: PathBuf::new(),
                reason: "indexed shard of a column with no disk assigned".into(),
            });
        };
        self.disks
            .iter()
            .find(|d| d.root.as_os_str() == root.as_str())
            .ok_or_else(|| Error::DiskMissing {
                volume: volume.to_owned(),
                column,
                disk: root.clone(),
            })
    }

    /// The disk of a column, assigning one (most free space) and creating the column file
    /// (fsyncing it and its directories) on first use.
    fn column_disk(&self, volume: &str, column: u32) -> Result<&Disk, Error> {
        let meta = self.meta(volume)?;
        if meta.columns.contains_key(&column) {
            return self.disk_of(&meta, volume, column);
        }
        let _guard = lock(&self.assign_lock);
        let mut meta = self.meta(volume)?;
        if meta.columns.contains_key(&column) {
            return self.disk_of(&meta, volume, column);
        }
        let mut best: Option<(u64, &Disk)> = None;
        for disk in &self.disks {
            let free = rustix::fs::statvfs(&disk.root)
                .map(|v| v.f_bavail.saturating_mul(v.f_frsize))
                .map_err(|e| io_err("statvfs", &disk.root)(e.into()))?;
            if best.is_none_or(|(f, _)| free > f) {
                best = Some((free, disk));
            }
        }
        let Some((_, disk)) = best else {
            return Err(Error::NoDisks);
        };
        let dir = disk.root.join(volume);
        if !dir.is_dir() {
            std::fs::create_dir(&dir).map_err(io_err("create", &dir))?;
            file::sync_dir(&disk.root).map_err(io_err("fsync", &disk.root))?;
        }
        let path = column_path(&disk.root, volume, column);
        let f = file::open(&path, disk.direct, true).map_err(io_err("create", &path))?;
        f.sync_all().map_err(io_err("fsync", &path))?;
        file::sync_dir(&dir).map_err(io_err("fsync", &dir))?;
        let root = disk.root.to_str().ok_or_else(|| Error::Io {
            op: "use (path is not UTF-8)",
            path: disk.root.clone(),
            source: io::Error::from(io::ErrorKind::InvalidInput),
        })?;
        meta.columns.insert(column, root.to_owned());
        self.write_meta(volume, &meta)?;
        Ok(disk)
    }
}

impl Drop for ShardStore {
    fn drop(&mut self) {
        // A clean close lets the next open skip the header scan; if this fails the next
        // open simply scans.
        if let Err(e) = self.set_dirty(0) {
            tracing::warn!(error = %e, "could not mark the shard store clean");
        }
    }
}

/// Checks a slot read from disk against its index entry; the reason on failure.
fn check_slot(
    volume: &str,
    column: u32,
    stripe: u64,
    entry: &IndexEntry,
    slot: &[u8],
) -> Result<(), String> {
    let header = ShardHeader::decode(&slot[..BLOCK_BYTES]).map_err(|e| format!("header: {e}"))?;
    if header.volume_id != volume || header.column != column || header.stripe != stripe {
        return Err(format!(
            "header belongs to volume {} column {} stripe {}",
            header.volume_id, header.column, header.stripe
        ));
    }
    if header.generation != entry.generation
        || header.payload_len != entry.payload_len
        || header.payload_crc32c != entry.payload_crc32c
    {
        return Err(format!(
            "header generation {} length {} crc {:#010x}, index generation {} length {} crc {:#010x}",
            header.generation,
            header.payload_len,
            header.payload_crc32c,
            entry.generation,
            entry.payload_len,
            entry.payload_crc32c
        ));
    }
    let payload = &slot[BLOCK_BYTES..BLOCK_BYTES + entry.payload_len as usize];
    let computed = crc32c::crc32c(payload);
    if computed != entry.payload_crc32c {
        return Err(format!(
            "payload checksum {computed:#010x}, expected {:#010x}",
            entry.payload_crc32c
        ));
    }
    Ok(())
}

/// Bytes allocated to files under `dir` (recursively).
fn allocated_bytes(dir: &Path) -> Result<u64, Error> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).map_err(io_err("list", dir))? {
        let entry = entry.map_err(io_err("list", dir))?;
        let path = entry.path();
        let meta = entry.metadata().map_err(io_err("stat", &path))?;
        total += if meta.is_dir() {
            allocated_bytes(&path)?
        } else {
            meta.blocks() * 512
        };
    }
    Ok(total)
}
