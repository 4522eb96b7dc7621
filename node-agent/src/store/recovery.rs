//! Crash recovery on open: reconcile the index with what the shard headers say.
//!
//! Only two kinds of damage can follow a crash under the write protocol of `put`:
//! - a slot written (maybe partly) but never indexed: `put` had not returned, so nothing
//!   was acknowledged; the slot is discarded (its header block zeroed and synced);
//! - an in-place overwrite cut short: the entry is still `Rewriting`, the old bytes may be
//!   torn, so it is marked `NeedsRepair` (rebuilt from the other columns).
//!
//! After an unclean shutdown every slot header of every column file is also checked against
//! its index entry (a mismatch is marked for repair) — the cost is one 4 KiB read per slot.

use std::collections::{BTreeMap, BTreeSet};
use std::io;

use redb::{ReadableDatabase, ReadableTable};

use super::index::{DIRTY, IndexEntry, SCHEMA, SCHEMA_VERSION, SHARDS, STATE, VOLUMES, VolumeMeta};
use super::{Error, ShardState, ShardStore, column_path, file, index_err, io_err};
use crate::shard::{self, BLOCK_BYTES, ShardHeader};

/// One shard's address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardId {
    pub volume: String,
    pub column: u32,
    pub stripe: u64,
}

/// What recovery did when the store was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The previous process did not close the store, so every header was checked.
    pub unclean_shutdown: bool,
    /// Slot headers read and compared with the index.
    pub slots_checked: u64,
    /// Slots with data but no index entry (never acknowledged), now discarded.
    pub discarded_unindexed: Vec<ShardId>,
    /// Indexed shards whose slot no longer matches, or whose overwrite was interrupted;
    /// they read as `NeedsRepair` until rewritten.
    pub marked_for_repair: Vec<ShardId>,
    /// Volume directories or column files with no index record (an interrupted delete or
    /// first write), removed.
    pub removed_unreferenced: Vec<std::path::PathBuf>,
}

/// Every index entry of a volume, in (column, stripe) order.
pub(super) fn entries_of(
    store: &ShardStore,
    volume: &str,
) -> Result<Vec<(ShardId, IndexEntry)>, Error> {
    let txn = store.db.begin_read().map_err(index_err("begin read"))?;
    let table = match txn.open_table(SHARDS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(index_err("open shards")(e)),
    };
    let mut out = Vec::new();
    let range = table
        .range((volume, 0u32, 0u64)..=(volume, u32::MAX, u64::MAX))
        .map_err(index_err("scan shards"))?;
    for item in range {
        let (k, v) = item.map_err(index_err("scan shards"))?;
        let (_, column, stripe) = k.value();
        let entry = IndexEntry::decode(v.value()).ok_or_else(|| Error::Metadata {
            volume: volume.to_owned(),
            reason: format!("index entry of column {column} stripe {stripe} is malformed"),
        })?;
        out.push((
            ShardId {
                volume: volume.to_owned(),
                column,
                stripe,
            },
            entry,
        ));
    }
    Ok(out)
}

fn all_volumes(store: &ShardStore) -> Result<BTreeMap<String, VolumeMeta>, Error> {
    let mut out = BTreeMap::new();
    for volume in store.volumes()? {
        let meta = store.meta(&volume)?;
        out.insert(volume, meta);
    }
    Ok(out)
}

fn check_schema(store: &ShardStore) -> Result<bool, Error> {
    let txn = store.db.begin_write().map_err(index_err("begin write"))?;
    let dirty;
    {
        let mut state = txn.open_table(STATE).map_err(index_err("open state"))?;
        let schema = state
            .get(SCHEMA)
            .map_err(index_err("read schema"))?
            .map(|v| v.value());
        match schema {
            None => {
                state
                    .insert(SCHEMA, SCHEMA_VERSION)
                    .map_err(index_err("write schema"))?;
            }
            Some(found) if found != SCHEMA_VERSION => {
                return Err(Error::Schema {
                    found,
                    expected: SCHEMA_VERSION,
                });
            }
            Some(_) => {}
        }
        dirty = state
            .get(DIRTY)
            .map_err(index_err("read dirty flag"))?
            .map(|v| v.value())
            == Some(1);
        // Create the other tables so readers never meet a missing one.
        txn.open_table(SHARDS).map_err(index_err("open shards"))?;
        txn.open_table(VOLUMES).map_err(index_err("open volumes"))?;
    }
    txn.commit().map_err(index_err("commit schema"))?;
    Ok(dirty)
}

/// Runs recovery; see the module docs.
pub(super) fn run(store: &ShardStore) -> Result<RecoveryReport, Error> {
    let unclean_shutdown = check_schema(store)?;
    let mut report = RecoveryReport {
        unclean_shutdown,
        ..RecoveryReport::default()
    };
    let volumes = all_volumes(store)?;
    remove_unreferenced(store, &volumes, &mut report)?;
    for (volume, meta) in &volumes {
        let entries = entries_of(store, volume)?;
        for (id, entry) in &entries {
            if entry.state == ShardState::Rewriting {
                store.mark_for_repair(id, *entry)?;
                report.marked_for_repair.push(id.clone());
            }
        }
        if unclean_shutdown {
            scan_volume(store, volume, meta, entries, &mut report)?;
        }
    }
    if !report.discarded_unindexed.is_empty() || !report.marked_for_repair.is_empty() {
        tracing::warn!(
            discarded = report.discarded_unindexed.len(),
            marked_for_repair = report.marked_for_repair.len(),
            "shard store recovered from an unclean shutdown"
        );
    }
    Ok(report)
}

/// Removes volume directories and column files the index does not reference.
fn remove_unreferenced(
    store: &ShardStore,
    volumes: &BTreeMap<String, VolumeMeta>,
    report: &mut RecoveryReport,
) -> Result<(), Error> {
    for disk in &store.disks {
        let root_str = disk.root.to_string_lossy();
        for item in std::fs::read_dir(&disk.root).map_err(io_err("list", &disk.root))? {
            let item = item.map_err(io_err("list", &disk.root))?;
            let name = item.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let path = item.path();
            let Some(meta) = volumes.get(&name) else {
                std::fs::remove_dir_all(&path).map_err(io_err("remove", &path))?;
                file::sync_dir(&disk.root).map_err(io_err("fsync", &disk.root))?;
                report.removed_unreferenced.push(path);
                continue;
            };
            let expected: BTreeSet<_> = meta
                .columns
                .iter()
                .filter(|(_, root)| root.as_str() == root_str)
                .map(|(c, _)| column_path(&disk.root, &name, *c))
                .collect();
            let mut removed = false;
            for f in std::fs::read_dir(&path).map_err(io_err("list", &path))? {
                let f = f.map_err(io_err("list", &path))?.path();
                if !expected.contains(&f) {
                    std::fs::remove_file(&f).map_err(io_err("remove", &f))?;
                    report.removed_unreferenced.push(f);
                    removed = true;
                }
            }
            if removed {
                file::sync_dir(&path).map_err(io_err("fsync", &path))?;
            }
        }
    }
    Ok(())
}

/// Checks every slot header of a volume's column files against the index.
fn scan_volume(
    store: &ShardStore,
    volume: &str,
    meta: &VolumeMeta,
    entries: Vec<(ShardId, IndexEntry)>,
    report: &mut RecoveryReport,
) -> Result<(), Error> {
    let slot = shard::slot_bytes(meta.layout.shard_bytes() as u32);
    let mut by_column: BTreeMap<u32, BTreeMap<u64, IndexEntry>> = BTreeMap::new();
    for (id, entry) in entries {
        by_column
            .entry(id.column)
            .or_default()
            .insert(id.stripe, entry);
    }
    for &column in meta.columns.keys() {
        let disk = store.disk_of(meta, volume, column)?;
        let path = column_path(&disk.root, volume, column);
        let mut indexed = by_column.remove(&column).unwrap_or_default();
        let f = match file::open(&path, disk.direct, false) {
            Ok(f) => Some(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err("open", &path)(e)),
        };
        let len = match &f {
            Some(f) => f.metadata().map_err(io_err("stat", &path))?.len(),
            None => 0,
        };
        let mut zeroed_any = false;
        for stripe in 0..len.div_ceil(slot) {
            let Some(f) = &f else { break };
            report.slots_checked += 1;
            let id = ShardId {
                volume: volume.to_owned(),
                column,
                stripe,
            };
            let block =
                file::read_at(f, stripe * slot, BLOCK_BYTES).map_err(io_err("read", &path))?;
            let header = block.as_ref().map(|b| ShardHeader::decode(b.as_slice()));
            match (indexed.remove(&stripe), header) {
                (Some(entry), Some(Ok(h)))
                    if h.volume_id == volume
                        && h.column == column
                        && h.stripe == stripe
                        && h.generation == entry.generation
                        && h.payload_len == entry.payload_len
                        && h.payload_crc32c == entry.payload_crc32c => {}
                (Some(entry), _) => {
                    if entry.state == ShardState::Ok {
                        store.mark_for_repair(&id, entry)?;
                        report.marked_for_repair.push(id);
                    }
                }
                (None, None | Some(Err(shard::Error::Empty))) => {}
                (None, Some(_)) => {
                    // Never acknowledged: zero the header so no later scan can adopt it.
                    let zeros = file::AlignedBuf::zeroed(BLOCK_BYTES);
                    use std::os::unix::fs::FileExt;
                    f.write_all_at(zeros.as_slice(), stripe * slot)
                        .map_err(io_err("discard slot in", &path))?;
                    zeroed_any = true;
                    report.discarded_unindexed.push(id);
                }
            }
        }
        if zeroed_any && let Some(f) = &f {
            f.sync_data().map_err(io_err("fdatasync", &path))?;
        }
        // Indexed shards past the end of the file (or in a missing file) are lost.
        for (stripe, entry) in indexed {
            if entry.state == ShardState::Ok {
                let id = ShardId {
                    volume: volume.to_owned(),
                    column,
                    stripe,
                };
                store.mark_for_repair(&id, entry)?;
                report.marked_for_repair.push(id);
            }
        }
    }
    // Entries of columns with no disk assigned cannot have been written by `put`.
    for (column, rest) in by_column {
        for (stripe, entry) in rest {
            if entry.state == ShardState::Ok {
                let id = ShardId {
                    volume: volume.to_owned(),
                    column,
                    stripe,
                };
                store.mark_for_repair(&id, entry)?;
                report.marked_for_repair.push(id);
            }
        }
    }
    Ok(())
}
