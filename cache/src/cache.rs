//! The three tiers together: lookups fall through L1 → L2 → L3 and promote on the way back,
//! L1 evictions are demoted to L2, and writes go through to L3.
//!
//! Concurrency: every operation that changes what a key maps to (`put`, `remove`, a promotion,
//! a demotion) runs under that key's lock (one of 256 striped async mutexes) and never holds two
//! key locks at once. L1 hits take no key lock. Mutating work runs in a spawned task, so a caller
//! that drops its future cannot stop an operation half way (for example after the L3 write but
//! before L1 is updated) and leave tiers disagreeing.

use std::hash::BuildHasher;
use std::sync::Arc;

use bytes::Bytes;
use prometheus_client::registry::Registry;
use tokio::sync::{Mutex, MutexGuard};

use crate::backend::{Backend, DirectoryStore};
use crate::compression::Compressor;
use crate::config::{CacheBuilder, CacheConfig};
use crate::entry::{CacheEntry, Slot, now_millis};
use crate::error::Error;
use crate::key::CacheKey;
use crate::l1::L1;
use crate::l2::{L2, ValueRecord};
use crate::metrics::Metrics;

const KEY_LOCKS: usize = 256;

/// A three-tier cache. Cheap to clone (all clones share the tiers).
///
/// See the crate docs for the tier semantics.
#[derive(Debug)]
pub struct Cache<B = DirectoryStore> {
    inner: Arc<Inner<B>>,
}

/// The seed API's name for [`Cache`].
pub type CacheManager<B = DirectoryStore> = Cache<B>;

impl<B> Clone for Cache<B> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

#[derive(Debug)]
struct Inner<B> {
    l1: L1,
    l1_compressor: Compressor,
    l2: Option<Arc<L2>>,
    l3: Option<B>,
    admit_l3_hits_to_l2: bool,
    locks: Box<[Mutex<()>]>,
    /// quick_cache's seeded foldhash: much cheaper than SipHash for picking a key lock.
    hasher: quick_cache::DefaultHashBuilder,
    metrics: Metrics,
}

impl Cache<DirectoryStore> {
    /// A builder with the defaults (64 MiB L1, no L2, no L3).
    pub fn builder() -> CacheBuilder<DirectoryStore> {
        CacheBuilder::new()
    }
}

impl<B: Backend> Cache<B> {
    pub(crate) async fn open(
        config: CacheConfig,
        backend: Option<B>,
        registry: &mut Registry,
    ) -> Result<Self, Error> {
        config.validate()?;
        let metrics = Metrics::register(registry);
        let l1 = L1::new(
            config.l1_capacity_bytes,
            config.l2.is_some(),
            metrics.l1.clone(),
        )?;
        let l2 = match config.l2.clone() {
            Some(l2_config) => {
                let m = metrics.l2.clone();
                let l2 = tokio::task::spawn_blocking(move || L2::open(&l2_config, m)).await??;
                Some(Arc::new(l2))
            }
            None => None,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                l1,
                l1_compressor: Compressor::new(config.l1_compression),
                l2,
                l3: backend,
                admit_l3_hits_to_l2: config.admit_l3_hits_to_l2,
                locks: (0..KEY_LOCKS).map(|_| Mutex::new(())).collect(),
                hasher: quick_cache::DefaultHashBuilder::default(),
                metrics,
            }),
        })
    }

    /// Stores `entry` under `key`: drops the L1 and L2 copies, writes it through to L3 (if there
    /// is one, durably, before returning), and puts it in L1. On error nothing visible changed
    /// except that cached copies may have been dropped.
    pub async fn put(&self, key: CacheKey, entry: CacheEntry) -> Result<(), Error> {
        key.validate()?;
        // Fast path, no task hop: without L3, and when L2 has no copy to drop, the whole update
        // happens under the key lock with no await after acquiring it, so a cancelled caller
        // either did nothing (cancelled while waiting for the lock) or everything.
        if self.inner.l3.is_none() {
            let guard = self.inner.lock(&key).await;
            if self
                .inner
                .l2
                .as_ref()
                .is_none_or(|l2| !l2.contains_key(&key))
            {
                self.inner.insert_l1(key, &entry);
                drop(guard);
                return self.demote_in_task().await;
            }
        }
        let inner = self.inner.clone();
        tokio::spawn(async move { inner.put(key, entry).await }).await?
    }

    /// Runs pending demotions (if any) in a task of their own, for the same cancellation reason.
    async fn demote_in_task(&self) -> Result<(), Error> {
        if !self.inner.l1.has_pending() {
            return Ok(());
        }
        let inner = self.inner.clone();
        tokio::spawn(async move { inner.demote_pending().await }).await?;
        Ok(())
    }

    /// Convenience for `put(key, CacheEntry::new(data))`.
    pub async fn put_bytes(&self, key: CacheKey, data: impl Into<Bytes>) -> Result<(), Error> {
        self.put(key, CacheEntry::new(data)).await
    }

    /// The value of `key` from the fastest tier that has it, promoting it into the faster tiers;
    /// `Ok(None)` on a miss in every tier. Never returns bytes other than the ones last put.
    pub async fn get(&self, key: &CacheKey) -> Result<Option<CacheEntry>, Error> {
        if let Some(entry) = self.get_in_memory(key) {
            return Ok(Some(entry));
        }
        let inner = self.inner.clone();
        let key = key.clone();
        tokio::spawn(async move { inner.get_slow(key).await }).await?
    }

    /// The value of `key` if L1 holds it; never blocks, never touches disk. A `None` is not a
    /// miss of the cache (L2/L3 were not asked) and is not counted as one.
    #[inline]
    pub fn get_in_memory(&self, key: &CacheKey) -> Option<CacheEntry> {
        let entry = self.inner.l1.get(key)?.hit()?;
        self.inner.metrics.l1.hits.inc();
        Some(entry)
    }

    /// Removes `key` from every tier (L3 included). Removing a missing key succeeds.
    pub async fn remove(&self, key: &CacheKey) -> Result<(), Error> {
        let inner = self.inner.clone();
        let key = key.clone();
        tokio::spawn(async move { inner.remove(key).await }).await?
    }

    /// Whether some tier has a value for `key` (an L2 copy is verified, not just looked up).
    /// Does not promote or count hits.
    pub async fn contains(&self, key: &CacheKey) -> Result<bool, Error> {
        if self.inner.l1.contains(key) {
            return Ok(true);
        }
        if let Some(l2) = &self.inner.l2 {
            let (l2, k) = (l2.clone(), key.clone());
            if tokio::task::spawn_blocking(move || l2.read(&k, false).is_some()).await? {
                return Ok(true);
            }
        }
        match &self.inner.l3 {
            Some(b) => b.contains(key).await,
            None => Ok(false),
        }
    }

    /// Number of entries in the L2 index (0 without L2).
    pub fn l2_len(&self) -> usize {
        self.inner.l2.as_ref().map_or(0, |l2| l2.len())
    }

    /// The cold backend, if any.
    pub fn backend(&self) -> Option<&B> {
        self.inner.l3.as_ref()
    }
}

impl<B: Backend> Inner<B> {
    async fn lock(&self, key: &CacheKey) -> MutexGuard<'_, ()> {
        let i = (self.hasher.hash_one(key) as usize) % self.locks.len();
        self.locks[i].lock().await
    }

    async fn put(self: Arc<Self>, key: CacheKey, entry: CacheEntry) -> Result<(), Error> {
        {
            let _key = self.lock(&key).await;
            // Order matters for failures: dropping the L2 copy first means a failed L3 write
            // leaves at worst a miss, never an old L2 copy beside a new L3 value.
            self.l1.remove(&key);
            if let Some(l2) = &self.l2
                && l2.contains_key(&key)
            {
                let (l2, k) = (l2.clone(), key.clone());
                tokio::task::spawn_blocking(move || l2.remove(&k)).await??;
            }
            if let Some(l3) = &self.l3 {
                l3.put(&key, entry.data().clone()).await?;
                self.metrics.l3.inserts.inc();
            }
            self.insert_l1(key, &entry);
        }
        self.demote_pending().await;
        Ok(())
    }

    fn insert_l1(&self, key: CacheKey, entry: &CacheEntry) {
        let slot = Slot::from_entry(entry, &self.l1_compressor, key.encoded_len());
        self.l1.insert(key, Arc::new(slot));
    }

    async fn remove(self: Arc<Self>, key: CacheKey) -> Result<(), Error> {
        let _key = self.lock(&key).await;
        self.l1.remove(&key);
        if let Some(l2) = &self.l2
            && l2.contains_key(&key)
        {
            let (l2, k) = (l2.clone(), key.clone());
            tokio::task::spawn_blocking(move || l2.remove(&k)).await??;
        }
        if let Some(l3) = &self.l3 {
            l3.delete(&key).await?;
        }
        Ok(())
    }

    async fn get_slow(self: Arc<Self>, key: CacheKey) -> Result<Option<CacheEntry>, Error> {
        let found = {
            let _key = self.lock(&key).await;
            self.lookup_locked(&key).await?
        };
        self.demote_pending().await;
        Ok(found)
    }

    /// L1 (again, under the lock), the demotion buffer, L2, L3 — promoting what is found.
    async fn lookup_locked(&self, key: &CacheKey) -> Result<Option<CacheEntry>, Error> {
        if let Some(slot) = self.l1.get(key) {
            if let Some(entry) = slot.hit() {
                self.metrics.l1.hits.inc();
                return Ok(Some(entry));
            }
            self.l1.remove(key);
        }
        if let Some(slot) = self.l1.take_pending(key) {
            // Evicted but not yet demoted: still the current value; put it back.
            if let Some(entry) = slot.hit() {
                self.l1.insert(key.clone(), slot);
                self.metrics.l1.hits.inc();
                return Ok(Some(entry));
            }
        }
        self.metrics.l1.misses.inc();
        if let Some(l2) = &self.l2
            && let Some(v) = l2.read(key, true)
        {
            let slot = Slot::new(
                self.l1_compressor.encode(&v.data),
                v.data.len() as u64,
                v.checksum,
                v.created_ms,
                v.access_count,
                Some(v.seq),
                key.encoded_len(),
            );
            let slot = Arc::new(slot);
            let entry = slot.hit();
            self.l1.insert(key.clone(), slot);
            return Ok(entry);
        }
        let Some(l3) = &self.l3 else {
            return Ok(None);
        };
        let Some(data) = l3.get(key).await? else {
            self.metrics.l3.misses.inc();
            return Ok(None);
        };
        self.metrics.l3.hits.inc();
        let checksum = crc32c::crc32c(&data);
        let created_ms = now_millis();
        let mut l2_seq = None;
        if let Some(l2) = &self.l2
            && self.admit_l3_hits_to_l2
            && key.validate().is_ok()
        {
            let (l2, k, d) = (l2.clone(), key.clone(), data.clone());
            let written = tokio::task::spawn_blocking(move || {
                l2.put(
                    &k,
                    ValueRecord {
                        data: &d,
                        checksum,
                        created_ms,
                        access_count: 0,
                    },
                )
            })
            .await?;
            match written {
                Ok(seq) => l2_seq = seq,
                // L2 is a cache: failing to fill it must not fail the read.
                Err(e) => tracing::warn!(%key, error = %e, "promotion of an L3 hit into L2 failed"),
            }
        }
        let slot = Slot::new(
            self.l1_compressor.encode(&data),
            data.len() as u64,
            checksum,
            created_ms,
            0,
            l2_seq,
            key.encoded_len(),
        );
        let slot = Arc::new(slot);
        let entry = slot.hit();
        self.l1.insert(key.clone(), slot);
        Ok(entry)
    }

    /// Writes entries evicted from L1 to L2. An entry is written only if it is still the key's
    /// current value (L1 does not hold a newer one; every newer put/remove cleared the buffer)
    /// and L2 does not already hold this very version.
    async fn demote_pending(&self) {
        let Some(l2) = &self.l2 else {
            return;
        };
        for key in self.l1.pending_keys() {
            let _key = self.lock(&key).await;
            let Some(slot) = self.l1.take_pending(&key) else {
                continue;
            };
            if self.l1.holds(&key) {
                continue;
            }
            if slot.l2_seq.is_some() && l2.seq_of(&key) == slot.l2_seq {
                continue;
            }
            let Some(data) =
                Compressor::decode_bytes(slot.codec, &slot.payload, slot.raw_len as usize)
            else {
                continue;
            };
            let l2 = l2.clone();
            let k = key.clone();
            let written = tokio::task::spawn_blocking(move || {
                l2.put(
                    &k,
                    ValueRecord {
                        data: &data,
                        checksum: slot.checksum,
                        created_ms: slot.created_ms,
                        access_count: slot.access_count.load(std::sync::atomic::Ordering::Relaxed),
                    },
                )
            })
            .await;
            match written {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(%key, error = %e, "demotion to L2 failed; entry dropped")
                }
                Err(e) => tracing::warn!(%key, error = %e, "demotion task failed; entry dropped"),
            }
        }
    }
}
