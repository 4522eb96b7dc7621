//! L1: the in-RAM tier, bounded in bytes.
//!
//! Built on `quick_cache` rather than a policy of our own: its sync cache is sharded, takes only a
//! shard *read* lock on a hit, weighs entries (so the bound is in bytes), and its policy is
//! CLOCK-Pro-like with a ghost queue, in the same family as S3-FIFO: new entries go to a small
//! probationary queue and are admitted to the main queue only when re-referenced, which keeps
//! one-hit scans from flushing the working set. Writing our own S3-FIFO would cost time and
//! risk for at best the same hit path; what we needed beyond a plain map is its eviction hook.
//!
//! Demotion: `quick_cache` calls [`Lifecycle::on_evict`] inside the insert that causes the
//! eviction, under the shard lock. The hook moves the entry into the `pending` map (the
//! "demotion buffer") at that instant, so an evicted entry is never invisible: until the cache
//! writes it to L2 it is served from `pending`. Every `put`, `remove` and promotion of a key
//! clears its `pending` entry under the key's lock, so a stale entry can never be demoted over a
//! newer value (see `Cache::demote`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use quick_cache::sync::Cache as QuickCache;
use quick_cache::{DefaultHashBuilder, Lifecycle, OptionsBuilder, Weighter};

use crate::entry::Slot;
use crate::error::Error;
use crate::key::CacheKey;
use crate::metrics::TierMetrics;

#[derive(Clone, Debug)]
struct SlotWeighter;

impl Weighter<CacheKey, Arc<Slot>> for SlotWeighter {
    fn weight(&self, _key: &CacheKey, slot: &Arc<Slot>) -> u64 {
        slot.weight
    }
}

type Pending = Arc<Mutex<HashMap<CacheKey, Arc<Slot>>>>;

fn lock(p: &Pending) -> MutexGuard<'_, HashMap<CacheKey, Arc<Slot>>> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Clone, Debug)]
struct DemoteOnEvict {
    /// Without L2 there is nowhere to demote to: evicted entries are dropped.
    buffer: bool,
    pending: Pending,
    metrics: TierMetrics,
}

impl Lifecycle<CacheKey, Arc<Slot>> for DemoteOnEvict {
    type RequestState = ();

    fn on_evict(&self, _state: &mut (), key: CacheKey, slot: Arc<Slot>) {
        self.metrics.evictions.inc();
        if self.buffer {
            lock(&self.pending).insert(key, slot);
        }
    }
}

/// The RAM tier plus its demotion buffer.
type Map = QuickCache<CacheKey, Arc<Slot>, SlotWeighter, DefaultHashBuilder, DemoteOnEvict>;

#[derive(Debug)]
pub(crate) struct L1 {
    map: Arc<Map>,
    pending: Pending,
    metrics: TierMetrics,
}

impl L1 {
    pub(crate) fn new(
        capacity_bytes: u64,
        buffer_evictions: bool,
        metrics: TierMetrics,
    ) -> Result<Self, Error> {
        // quick_cache splits the capacity evenly over its shards and rejects entries heavier than
        // one shard; keep shards at >= 256 KiB so small caches (tests) behave like one LRU-ish map.
        let default_shards = std::thread::available_parallelism().map_or(4, |n| n.get() * 4);
        let shards = ((capacity_bytes / (256 << 10)) as usize).clamp(1, default_shards);
        let options = OptionsBuilder::new()
            .weight_capacity(capacity_bytes)
            .estimated_items_capacity(((capacity_bytes / 4096) as usize).max(16))
            .shards(shards)
            .build()
            .map_err(|e| Error::InvalidConfig(format!("l1: {e}")))?;
        let pending: Pending = Arc::default();
        let lifecycle = DemoteOnEvict {
            buffer: buffer_evictions,
            pending: pending.clone(),
            metrics: metrics.clone(),
        };
        let map = Arc::new(QuickCache::with_options(
            options,
            SlotWeighter,
            DefaultHashBuilder::default(),
            lifecycle,
        ));
        // Weak: the caller's registry may outlive the cache.
        let weak = Arc::downgrade(&map);
        metrics
            .bytes
            .compute_with(move || weak.upgrade().map_or(0, |m| m.weight() as i64));
        Ok(Self {
            map,
            pending,
            metrics,
        })
    }

    /// The slot for `key` if L1 holds it (not the demotion buffer).
    #[inline]
    pub(crate) fn get(&self, key: &CacheKey) -> Option<Arc<Slot>> {
        self.map.get(key)
    }

    pub(crate) fn contains(&self, key: &CacheKey) -> bool {
        self.map.contains_key(key) || lock(&self.pending).contains_key(key)
    }

    /// Inserts `slot` and clears any older demotion-buffer entry of the key. Call with the key's
    /// lock held. Evictions caused by the insert land in the buffer.
    pub(crate) fn insert(&self, key: CacheKey, slot: Arc<Slot>) {
        self.metrics.inserts.inc();
        self.map.insert(key.clone(), slot.clone());
        // Drop a buffered older version; keep the new slot if it was evicted at once (larger
        // than a shard), so that it is demoted to L2 instead of lost.
        let mut pending = lock(&self.pending);
        if pending.get(&key).is_some_and(|p| !Arc::ptr_eq(p, &slot)) {
            pending.remove(&key);
        }
    }

    /// Removes `key` from L1 and the demotion buffer. Call with the key's lock held.
    pub(crate) fn remove(&self, key: &CacheKey) {
        self.map.remove(key);
        lock(&self.pending).remove(key);
    }

    /// Takes `key`'s entry out of the demotion buffer. Call with the key's lock held.
    pub(crate) fn take_pending(&self, key: &CacheKey) -> Option<Arc<Slot>> {
        lock(&self.pending).remove(key)
    }

    /// Whether any entry waits for demotion.
    pub(crate) fn has_pending(&self) -> bool {
        !lock(&self.pending).is_empty()
    }

    /// Keys waiting for demotion (a snapshot).
    pub(crate) fn pending_keys(&self) -> Vec<CacheKey> {
        let pending = lock(&self.pending);
        if pending.is_empty() {
            return Vec::new();
        }
        pending.keys().cloned().collect()
    }

    /// Whether L1 proper (not the buffer) holds `key`.
    pub(crate) fn holds(&self, key: &CacheKey) -> bool {
        self.map.contains_key(key)
    }
}
