//! A few recently decoded stripes, shared by all readers of one archived volume.
//!
//! NBD clients read sequentially in requests far smaller than a stripe (qemu and nbdcopy use
//! 64 KiB – 2 MiB) and several at once; without this each request would fetch k shards and,
//! when degraded, decode the whole stripe again.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OnceCell;

use super::Stripe;

/// One stripe's slot: empty until its first successful fetch; concurrent callers wait on the
/// same initialisation.
pub(super) type Slot = Arc<OnceCell<Stripe>>;

#[derive(Debug)]
pub(super) struct StripeCache {
    capacity: usize,
    /// Most recently used at the back.
    slots: Mutex<VecDeque<(u64, Slot)>>,
}

impl StripeCache {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            slots: Mutex::new(VecDeque::new()),
        }
    }

    /// The slot of `stripe`, created (evicting the least recently used) when absent. An
    /// evicted slot that is still being filled stays valid for the callers holding it.
    pub(super) fn slot(&self, stripe: u64) -> Slot {
        // The deque is always consistent between statements, so a poisoned lock is usable.
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = slots.iter().position(|(s, _)| *s == stripe)
            && let Some(entry) = slots.remove(i)
        {
            let slot = Arc::clone(&entry.1);
            slots.push_back(entry);
            return slot;
        }
        while slots.len() >= self.capacity {
            slots.pop_front();
        }
        let slot = Slot::default();
        slots.push_back((stripe, Arc::clone(&slot)));
        slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_stripe_is_evicted() {
        let cache = StripeCache::new(2);
        let a = cache.slot(1);
        let _b = cache.slot(2);
        assert!(Arc::ptr_eq(&a, &cache.slot(1)), "hit refreshes stripe 1");
        let _c = cache.slot(3); // evicts 2
        assert!(Arc::ptr_eq(&a, &cache.slot(1)));
        assert!(!Arc::ptr_eq(&_b, &cache.slot(2)), "stripe 2 was evicted");
    }
}
