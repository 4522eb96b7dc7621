//! The shard index in redb: (volume, column, stripe) → entry, volume id → metadata.
//!
//! redb commits are durable when `commit()` returns (`Durability::Immediate`, its default),
//! which is what lets `put` acknowledge right after the index commit.

use std::collections::BTreeMap;

use redb::TableDefinition;
use serde::{Deserialize, Serialize};

/// (volume, column, stripe) → [`IndexEntry`] (fixed 25-byte little-endian encoding).
pub(super) const SHARDS: TableDefinition<(&str, u32, u64), &[u8]> = TableDefinition::new("shards");
/// volume id → [`VolumeMeta`] as JSON (small, rarely written, easy to evolve).
pub(super) const VOLUMES: TableDefinition<&str, &str> = TableDefinition::new("volumes");
/// Store-wide state: `dirty` is 1 while a process has the store open.
pub(super) const STATE: TableDefinition<&str, u64> = TableDefinition::new("state");
/// Key of the dirty flag in [`STATE`].
pub(super) const DIRTY: &str = "dirty";
/// Key of the index schema version in [`STATE`].
pub(super) const SCHEMA: &str = "schema";
/// Version of the tables' layout; bumped when an encoding changes.
pub(super) const SCHEMA_VERSION: u64 = 1;

/// Whether a shard's bytes can be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardState {
    /// Written, fsynced and verified by its checksum when read.
    Ok,
    /// Being overwritten in place; if a crash finds it so, the old bytes may be gone.
    Rewriting,
    /// Lost or corrupt; must be rebuilt from the other columns.
    NeedsRepair,
}

/// Where a shard lives and what it must hash to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub generation: u64,
    /// Byte offset of the slot (header block) in the column file.
    pub offset: u64,
    pub payload_len: u32,
    pub payload_crc32c: u32,
    pub state: ShardState,
}

const ENTRY_BYTES: usize = 25;

impl IndexEntry {
    pub(super) fn encode(&self) -> [u8; ENTRY_BYTES] {
        let mut b = [0u8; ENTRY_BYTES];
        b[0..8].copy_from_slice(&self.generation.to_le_bytes());
        b[8..16].copy_from_slice(&self.offset.to_le_bytes());
        b[16..20].copy_from_slice(&self.payload_len.to_le_bytes());
        b[20..24].copy_from_slice(&self.payload_crc32c.to_le_bytes());
        b[24] = match self.state {
            ShardState::Ok => 0,
            ShardState::Rewriting => 1,
            ShardState::NeedsRepair => 2,
        };
        b
    }

    /// `None` for bytes this version did not write (the caller reports it as corruption).
    pub(super) fn decode(b: &[u8]) -> Option<Self> {
        let b: &[u8; ENTRY_BYTES] = b.try_into().ok()?;
        let u64_at = |i: usize| b[i..i + 8].try_into().ok().map(u64::from_le_bytes);
        let u32_at = |i: usize| b[i..i + 4].try_into().ok().map(u32::from_le_bytes);
        Some(Self {
            generation: u64_at(0)?,
            offset: u64_at(8)?,
            payload_len: u32_at(16)?,
            payload_crc32c: u32_at(20)?,
            state: match b[24] {
                0 => ShardState::Ok,
                1 => ShardState::Rewriting,
                2 => ShardState::NeedsRepair,
                _ => return None,
            },
        })
    }
}

/// The erasure-coding layout of a volume, frozen when the volume is created in the store
/// (the node-agent view of `EcVolume.spec.layout`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeLayout {
    pub data_shards: u16,
    pub parity_shards: u16,
    pub stripe_size_bytes: u64,
    pub codec_id: String,
}

impl VolumeLayout {
    /// Bytes of each shard: `stripe_size_bytes / k`.
    pub fn shard_bytes(&self) -> u64 {
        self.stripe_size_bytes / u64::from(self.data_shards.max(1))
    }
}

/// Per-volume record in the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct VolumeMeta {
    pub layout: VolumeLayout,
    /// Stripes written on every column of this node (destage resumes here).
    pub destaged_stripes: u64,
    /// Column → the disk directory (store root on that disk) holding its file.
    pub columns: BTreeMap<u32, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_entry_round_trips_and_unknown_states_are_refused() {
        let e = IndexEntry {
            generation: 7,
            offset: 1 << 33,
            payload_len: 262_144,
            payload_crc32c: 0x1234_5678,
            state: ShardState::Rewriting,
        };
        assert_eq!(IndexEntry::decode(&e.encode()), Some(e));
        let mut bad = e.encode();
        bad[24] = 9;
        assert_eq!(IndexEntry::decode(&bad), None);
        assert_eq!(IndexEntry::decode(&bad[..10]), None);
    }
}
