//! Per-tier metrics registered into the caller's `prometheus-client` registry.
//!
//! All series are named `couchestor_cache_*` and carry a `tier` label (`l1`, `l2`, `l3`).
//! Counters on the hit path are striped over cache lines so that two threads hitting L1 do not
//! bounce one atomic between their cores.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

/// A tier, as the `tier` label spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tier {
    /// RAM.
    L1,
    /// Local disk.
    L2,
    /// Cold backend.
    L3,
}

impl Tier {
    fn label(self) -> &'static str {
        match self {
            Tier::L1 => "l1",
            Tier::L2 => "l2",
            Tier::L3 => "l3",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TierLabel {
    tier: &'static str,
}

const STRIPES: usize = 16;

#[repr(align(128))]
#[derive(Default)]
struct Padded(AtomicU64);

/// A monotonically increasing counter spread over [`STRIPES`] cache lines; reads sum them.
#[derive(Default)]
pub(crate) struct StripedCounter {
    cells: [Padded; STRIPES],
}

impl fmt::Debug for StripedCounter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StripedCounter").field(&self.get()).finish()
    }
}

fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    STRIPE.with(|s| *s)
}

impl StripedCounter {
    pub(crate) fn inc_by(&self, n: u64) {
        self.cells[stripe()].0.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn inc(&self) {
        self.inc_by(1);
    }

    pub(crate) fn get(&self) -> u64 {
        self.cells.iter().map(|c| c.0.load(Ordering::Relaxed)).sum()
    }
}

impl TypedMetric for StripedCounter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for StripedCounter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.get(), None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

type Source = Box<dyn Fn() -> i64 + Send + Sync>;

/// A byte gauge that is either set by the tier (L2 knows its live bytes) or computed when scraped
/// (L1 asks quick_cache, whose total weight costs a read lock per shard: too much per insert).
#[derive(Clone, Default)]
pub(crate) struct BytesGauge {
    value: Gauge,
    source: Arc<OnceLock<Source>>,
}

impl fmt::Debug for BytesGauge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BytesGauge").field(&self.get()).finish()
    }
}

impl BytesGauge {
    pub(crate) fn set(&self, v: i64) {
        self.value.set(v);
    }

    /// Computes the value with `source` at every scrape from now on.
    pub(crate) fn compute_with(&self, source: impl Fn() -> i64 + Send + Sync + 'static) {
        let _ = self.source.set(Box::new(source));
    }

    pub(crate) fn get(&self) -> i64 {
        match self.source.get() {
            Some(source) => source(),
            None => self.value.get(),
        }
    }
}

impl TypedMetric for BytesGauge {
    const TYPE: MetricType = MetricType::Gauge;
}

impl EncodeMetric for BytesGauge {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), fmt::Error> {
        encoder.encode_gauge(&self.get())
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// The counters and gauges of one tier. Cheap to clone (the families are `Arc`s inside).
#[derive(Clone, Debug)]
pub(crate) struct TierMetrics {
    pub(crate) hits: std::sync::Arc<StripedCounter>,
    pub(crate) misses: std::sync::Arc<StripedCounter>,
    pub(crate) evictions: std::sync::Arc<StripedCounter>,
    pub(crate) inserts: std::sync::Arc<StripedCounter>,
    pub(crate) corrupt: std::sync::Arc<StripedCounter>,
    pub(crate) bytes: BytesGauge,
}

/// All metrics of one cache.
#[derive(Clone, Debug)]
pub(crate) struct Metrics {
    pub(crate) l1: TierMetrics,
    pub(crate) l2: TierMetrics,
    pub(crate) l3: TierMetrics,
}

/// `Family` only hands out clones of its metrics for types that are `Clone`; an `Arc` wrapper
/// lets the striped counter live in one.
#[derive(Default, Debug)]
struct SharedCounter(std::sync::Arc<StripedCounter>);

impl Clone for SharedCounter {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl TypedMetric for SharedCounter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for SharedCounter {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

impl Metrics {
    /// Registers the families into `registry` (prefixed `couchestor_cache_`).
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let registry = registry.sub_registry_with_prefix("couchestor_cache");
        let mut counter = |name: &str, help: &str| {
            let family = Family::<TierLabel, SharedCounter>::default();
            registry.register(name, help, family.clone());
            family
        };
        let hits = counter("hits", "Lookups answered by this tier");
        let misses = counter("misses", "Lookups this tier could not answer");
        let evictions = counter(
            "evictions",
            "Entries this tier dropped to make room (L1 evictions are demoted to L2)",
        );
        let inserts = counter("inserts", "Entries written into this tier");
        let corrupt = counter(
            "corrupt",
            "Entries that failed checksum or header validation and were dropped",
        );
        let bytes = Family::<TierLabel, BytesGauge>::default();
        registry.register(
            "bytes",
            "Bytes held by this tier (payload plus per-entry overhead; L3 is not measured)",
            bytes.clone(),
        );
        let tier = |t: Tier| {
            let label = TierLabel { tier: t.label() };
            TierMetrics {
                hits: hits.get_or_create(&label).0.clone(),
                misses: misses.get_or_create(&label).0.clone(),
                evictions: evictions.get_or_create(&label).0.clone(),
                inserts: inserts.get_or_create(&label).0.clone(),
                corrupt: corrupt.get_or_create(&label).0.clone(),
                bytes: bytes.get_or_create(&label).clone(),
            }
        };
        Self {
            l1: tier(Tier::L1),
            l2: tier(Tier::L2),
            l3: tier(Tier::L3),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tier_counters_appear_in_the_callers_registry_with_a_tier_label() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        m.l1.hits.inc_by(3);
        m.l2.misses.inc();
        m.l2.bytes.set(4096);
        m.l1.bytes.compute_with(|| 77);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("encodes");
        assert!(
            out.contains("couchestor_cache_hits_total{tier=\"l1\"} 3"),
            "{out}"
        );
        assert!(
            out.contains("couchestor_cache_misses_total{tier=\"l2\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("couchestor_cache_bytes{tier=\"l1\"} 77"),
            "{out}"
        );
        assert!(
            out.contains("couchestor_cache_bytes{tier=\"l2\"} 4096"),
            "{out}"
        );
    }

    #[test]
    fn a_striped_counter_sums_increments_from_many_threads() {
        let c = std::sync::Arc::new(StripedCounter::default());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || (0..1000).for_each(|_| c.inc()))
            })
            .collect();
        for h in handles {
            h.join().expect("thread");
        }
        assert_eq!(c.get(), 4000);
    }
}
