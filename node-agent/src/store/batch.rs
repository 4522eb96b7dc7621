//! Writing shards: one or several of one column at a time, with group commit.
//!
//! The protocol, for a group of shards of one column file:
//! 1. shards that already exist are marked `Rewriting` in the index (one transaction), so a
//!    crash while their slots are overwritten is found and repaired, never served;
//! 2. every shard's header + payload is written to its slot;
//! 3. one `fdatasync` of the column file makes all of them durable;
//! 4. one index transaction points at all of them (`Ok`).
//!
//! Only after step 4 does the call return `Ok`, so "acknowledged ⇒ durable" holds for every
//! shard of the group; a crash before it loses the whole group (recovery discards slots the
//! index does not point at). Grouping turns N shards' 2N flushes into 2 (3 with rewrites).

use super::file::{self, AlignedBuf};
use super::{
    BLOCK_BYTES, Error, IndexEntry, ShardHeader, ShardState, ShardStore, column_path, io_err, lock,
    slot_of,
};

impl ShardStore {
    /// Stores `(stripe, payload)` shards of one column durably, as one group; returns each
    /// shard's generation (1 for a first write). When this returns `Ok`, every shard of the
    /// group survives a crash or power loss; on `Err`, none of them is newly acknowledged.
    /// A stripe may appear only once per call.
    pub fn put_batch(
        &self,
        volume: &str,
        column: u32,
        shards: &[(u64, &[u8])],
    ) -> Result<Vec<u64>, Error> {
        if shards.is_empty() {
            return Ok(Vec::new());
        }
        let meta = self.meta(volume)?;
        let layout = &meta.layout;
        let mut slots = Vec::with_capacity(shards.len());
        for (stripe, payload) in shards {
            slots.push(slot_of(volume, layout, column, *stripe, payload.len())?);
        }
        let mut stripes: Vec<u64> = shards.iter().map(|(s, _)| *s).collect();
        stripes.sort_unstable();
        if stripes.windows(2).any(|w| w[0] == w[1]) {
            return Err(Error::InvalidLayout {
                volume: volume.to_owned(),
                reason: "a stripe appears twice in one write group",
            });
        }
        // Each striped lock once, in increasing order (see `shard_lock_index`).
        let mut locks: Vec<usize> = shards
            .iter()
            .map(|(s, _)| self.shard_lock_index(volume, column, *s))
            .collect();
        locks.sort_unstable();
        locks.dedup();
        let _guards: Vec<_> = locks.iter().map(|&i| lock(&self.shard_locks[i])).collect();

        let disk = self.column_disk(volume, column)?;
        let path = column_path(&disk.root, volume, column);
        let mut previous = Vec::with_capacity(shards.len());
        for (stripe, _) in shards {
            previous.push(self.entry(volume, column, *stripe)?);
        }
        let rewrites: Vec<(u64, IndexEntry)> = shards
            .iter()
            .zip(&previous)
            .filter_map(|((stripe, _), prev)| {
                prev.map(|p| {
                    (
                        *stripe,
                        IndexEntry {
                            state: ShardState::Rewriting,
                            ..p
                        },
                    )
                })
            })
            .collect();
        if !rewrites.is_empty() {
            // Overwriting in place can tear the old bytes; say so first.
            self.commit_entries(volume, column, &rewrites)?;
        }

        let f = file::open(&path, disk.direct, false).map_err(io_err("open", &path))?;
        let mut entries = Vec::with_capacity(shards.len());
        for (((stripe, payload), (slot_payload_bytes, offset)), prev) in
            shards.iter().zip(&slots).zip(&previous)
        {
            let generation = prev.map_or(1, |e| e.generation + 1);
            let payload_crc32c = crc32c::crc32c(payload);
            let header = ShardHeader {
                volume_id: volume.to_owned(),
                column,
                stripe: *stripe,
                generation,
                codec_id: layout.codec_id.clone(),
                k: layout.data_shards,
                m: layout.parity_shards,
                payload_len: payload.len() as u32,
                payload_crc32c,
                slot_payload_bytes: *slot_payload_bytes,
            };
            let mut buf = AlignedBuf::zeroed(BLOCK_BYTES + payload.len());
            let bytes = buf.as_mut_slice();
            header.encode_into(&mut bytes[..BLOCK_BYTES])?;
            bytes[BLOCK_BYTES..BLOCK_BYTES + payload.len()].copy_from_slice(payload);
            file::write_at(&f, *offset, buf.as_slice()).map_err(io_err("write", &path))?;
            entries.push((
                *stripe,
                IndexEntry {
                    generation,
                    offset: *offset,
                    payload_len: payload.len() as u32,
                    payload_crc32c,
                    state: ShardState::Ok,
                },
            ));
        }
        f.sync_data().map_err(io_err("fdatasync", &path))?;
        // The data is on stable storage; now the index may point at it.
        self.commit_entries(volume, column, &entries)?;
        Ok(entries.iter().map(|(_, e)| e.generation).collect())
    }
}
