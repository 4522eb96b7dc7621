//! Cache entries: the bytes plus their metadata, and the form tiers keep them in.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::compression::{Codec, Compressor, Encoded};

/// A value and its metadata, as given to `put` and returned by `get`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheEntry {
    data: Bytes,
    meta: EntryMeta,
}

/// Metadata of an entry.
///
/// `size`, `created` and `checksum` are fixed when the entry is created with [`CacheEntry::new`]
/// and travel with it through every tier (they are part of the L2 record). The access statistics
/// are kept per entry while it is in L1 or L2 and written into the L2 record on demotion, so they
/// survive a round trip through L2 and a restart (they restart from zero after an L3 read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryMeta {
    /// Length of the value in bytes (uncompressed).
    pub size: u64,
    /// When the entry was created (millisecond precision).
    pub created: SystemTime,
    /// CRC-32C of the value.
    pub checksum: u32,
    /// Number of `get` hits, including the one that returned this snapshot.
    ///
    /// (There is deliberately no "last access" time: reading the clock was 18% of an L1 hit.)
    pub access_count: u64,
}

impl CacheEntry {
    /// An entry holding `data`, created now.
    pub fn new(data: impl Into<Bytes>) -> Self {
        let data = data.into();
        let meta = EntryMeta {
            size: data.len() as u64,
            created: from_millis(now_millis()),
            checksum: crc32c::crc32c(&data),
            access_count: 0,
        };
        Self { data, meta }
    }

    /// The value.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// The value, consuming the entry.
    pub fn into_data(self) -> Bytes {
        self.data
    }

    /// The metadata.
    pub fn meta(&self) -> &EntryMeta {
        &self.meta
    }

    /// Whether the value still matches its checksum.
    pub fn verify(&self) -> bool {
        crc32c::crc32c(&self.data) == self.meta.checksum
    }
}

pub(crate) fn now_millis() -> u64 {
    to_millis(SystemTime::now())
}

pub(crate) fn from_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// An entry as L1 holds it (and as it waits for demotion to L2).
///
/// Shared by `Arc` between the L1 map and readers; the access statistics are atomics so a hit
/// does not need a write lock.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) codec: Codec,
    pub(crate) payload: Bytes,
    pub(crate) raw_len: u64,
    pub(crate) checksum: u32,
    pub(crate) created_ms: u64,
    pub(crate) access_count: AtomicU64,
    /// Sequence number of the L2 record holding this same version, if the slot came from L2
    /// (or was written to it on promotion). Demotion skips the write when L2 still holds it.
    pub(crate) l2_seq: Option<u64>,
    /// What the slot costs in L1, fixed at creation (quick_cache calls the weighter often).
    pub(crate) weight: u64,
}

impl Slot {
    pub(crate) fn new(
        encoded: Encoded,
        raw_len: u64,
        checksum: u32,
        created_ms: u64,
        access_count: u64,
        l2_seq: Option<u64>,
        key_len: usize,
    ) -> Self {
        // 96 bytes approximates the Arc, the slot and the map entry around the payload.
        let weight = encoded.payload.len() as u64 + key_len as u64 + 96;
        Self {
            codec: encoded.codec,
            payload: encoded.payload,
            raw_len,
            checksum,
            created_ms,
            access_count: AtomicU64::new(access_count),
            l2_seq,
            weight,
        }
    }

    /// Builds the slot for a caller's entry.
    pub(crate) fn from_entry(entry: &CacheEntry, compressor: &Compressor, key_len: usize) -> Self {
        let meta = entry.meta();
        Self::new(
            compressor.encode(entry.data()),
            meta.size,
            meta.checksum,
            to_millis(meta.created),
            meta.access_count,
            None,
            key_len,
        )
    }

    /// Records a hit and returns the caller's snapshot, or `None` if an LZ4 payload does not
    /// decode to its recorded length (a codec bug; the caller drops the slot).
    ///
    /// L1 does not re-checksum on every hit: it is process memory, trusted like the rest of the
    /// process. Every byte read from a file (L2, L3) is verified against its CRC-32C.
    pub(crate) fn hit(&self) -> Option<CacheEntry> {
        let data = Compressor::decode_bytes(self.codec, &self.payload, self.raw_len as usize)?;
        let count = self.access_count.fetch_add(1, Ordering::Relaxed) + 1;
        Some(CacheEntry {
            data,
            meta: EntryMeta {
                size: self.raw_len,
                created: from_millis(self.created_ms),
                checksum: self.checksum,
                access_count: count,
            },
        })
    }
}

fn to_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_entry_carries_its_size_and_checksum() {
        let e = CacheEntry::new(&b"hello"[..]);
        assert_eq!(e.meta().size, 5);
        assert_eq!(e.meta().checksum, crc32c::crc32c(b"hello"));
        assert!(e.verify());
        assert_eq!(e.meta().access_count, 0);
    }

    #[test]
    fn every_hit_on_a_slot_increments_its_access_count() {
        let e = CacheEntry::new(Bytes::from("x".repeat(500)));
        let slot = Slot::from_entry(&e, &Compressor::default(), 3);
        assert_eq!(slot.codec, Codec::Lz4);
        let first = slot.hit().expect("hit");
        let second = slot.hit().expect("hit");
        assert_eq!(first.data(), e.data());
        assert_eq!(first.meta().access_count, 1);
        assert_eq!(second.meta().access_count, 2);
    }
}
