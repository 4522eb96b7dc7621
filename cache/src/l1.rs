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
//! newer value (see `Inner::demote_pending` in `cache.rs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// The demotion buffer, with a lock-free "is it empty" hint so that inserts need not take the
/// mutex in the common case where demotion keeps up.
#[derive(Debug, Default)]
struct Buffer {
    map: Mutex<HashMap<CacheKey, Arc<Slot>>>,
    /// `map.len()`, written under the mutex. An eviction that matters to an insert happened
    /// under the same quick_cache shard lock before it, so the insert sees its update.
    len: AtomicUsize,
}

type Pending = Arc<Buffer>;

struct Guard<'a> {
    map: MutexGuard<'a, HashMap<CacheKey, Arc<Slot>>>,
    len: &'a AtomicUsize,
}

impl std::ops::Deref for Guard<'_> {
    type Target = HashMap<CacheKey, Arc<Slot>>;
    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl std::ops::DerefMut for Guard<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.map
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.len.store(self.map.len(), Ordering::Release);
    }
}

fn lock(p: &Pending) -> Guard<'_> {
    Guard {
        map: p.map.lock().unwrap_or_else(|e| e.into_inner()),
        len: &p.len,
    }
}

fn is_empty(p: &Pending) -> bool {
    p.len.load(Ordering::Acquire) == 0
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

type Map = QuickCache<CacheKey, Arc<Slot>, SlotWeighter, DefaultHashBuilder, DemoteOnEvict>;

/// The RAM tier plus its demotion buffer.
#[derive(Debug)]
pub(crate) struct L1 {
    map: Arc<Map>,
    /// Whether evictions are buffered for demotion (there is an L2).
    buffered: bool,
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
            buffered: buffer_evictions,
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
        self.map.contains_key(key)
            || (!is_empty(&self.pending) && lock(&self.pending).contains_key(key))
    }

    /// Inserts `slot` and clears any older demotion-buffer entry of the key. Call with the key's
    /// lock held. Evictions caused by the insert land in the buffer.
    pub(crate) fn insert(&self, key: CacheKey, slot: Arc<Slot>) {
        self.metrics.inserts.inc();
        if !self.buffered {
            self.map.insert(key, slot);
            return;
        }
        self.map.insert(key.clone(), slot.clone());
        if is_empty(&self.pending) {
            return;
        }
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
        if is_empty(&self.pending) {
            return None;
        }
        lock(&self.pending).remove(key)
    }

    /// Whether any entry waits for demotion.
    pub(crate) fn has_pending(&self) -> bool {
        !is_empty(&self.pending)
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
