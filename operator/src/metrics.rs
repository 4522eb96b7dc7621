//! The operator's own metrics (served on `/metrics`), registered in a registry the
//! process owns and passes in — never a global one.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Mutex, PoisonError},
};

use couchestor_core::{Tier, api::TierCounts};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

/// Labels of `couchestor_migrations_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MigrationLabels {
    /// `Succeeded`, `Failed` or `RolledBack`.
    pub result: String,
    pub from_tier: String,
    pub to_tier: String,
}

/// Labels of `couchestor_volumes`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VolumeLabels {
    pub policy: String,
    /// `hot`, `warm`, `cold`, `unplaced` or `archived`.
    pub tier: String,
}

/// Labels of `couchestor_reconcile_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// A short kind: `kube`, `mayastor`, `prometheus`, `invalid_policy`.
    pub error: String,
}

/// Every metric of the operator.
#[derive(Debug)]
pub struct Metrics {
    pub migrations: Family<MigrationLabels, Counter>,
    pub active_migrations: Gauge,
    pub volumes: Family<VolumeLabels, Gauge>,
    pub reconcile_duration: Histogram,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub prometheus_query_duration: Histogram,
    /// Moves in flight per policy; `active_migrations` is their sum.
    active_by_policy: Mutex<BTreeMap<String, i64>>,
    /// Policies with `couchestor_volumes` series, so a deleted one's can be removed.
    volume_policies: Mutex<BTreeSet<String>>,
}

/// The `tier` label values of `couchestor_volumes`.
const VOLUME_TIERS: [&str; 5] = ["hot", "warm", "cold", "unplaced", "archived"];

impl Metrics {
    /// Creates the metrics and registers them (with the `couchestor` prefix).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            migrations: Family::default(),
            active_migrations: Gauge::default(),
            volumes: Family::default(),
            // 1 ms .. ~33 s
            reconcile_duration: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            reconcile_errors: Family::default(),
            // 1 ms .. ~16 s
            prometheus_query_duration: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            active_by_policy: Mutex::default(),
            volume_policies: Mutex::default(),
        };
        let r = registry.sub_registry_with_prefix("couchestor");
        r.register(
            "migrations",
            "Finished volume migrations by result and tiers",
            m.migrations.clone(),
        );
        r.register(
            "active_migrations",
            "Volume migrations in flight",
            m.active_migrations.clone(),
        );
        r.register(
            "volumes",
            "Watched volumes per policy and tier",
            m.volumes.clone(),
        );
        r.register(
            "reconcile_duration_seconds",
            "Duration of one StoragePolicy reconcile",
            m.reconcile_duration.clone(),
        );
        r.register(
            "reconcile_errors",
            "Reconciles that failed or could not decide, by error kind",
            m.reconcile_errors.clone(),
        );
        r.register(
            "prometheus_query_duration_seconds",
            "Duration of the per-policy Prometheus query",
            m.prometheus_query_duration.clone(),
        );
        m
    }

    /// Counts one finished migration.
    pub fn migration_finished(&self, result: &str, from: Tier, to: Tier) {
        self.migrations
            .get_or_create(&MigrationLabels {
                result: result.to_owned(),
                from_tier: from.as_str().to_owned(),
                to_tier: to.as_str().to_owned(),
            })
            .inc();
    }

    /// Sets the volumes per tier of `policy`.
    pub fn set_volumes(&self, policy: &str, counts: &TierCounts) {
        self.volume_policies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(policy.to_owned());
        let values = [
            counts.hot,
            counts.warm,
            counts.cold,
            counts.unplaced,
            counts.archived,
        ];
        for (tier, n) in VOLUME_TIERS.into_iter().zip(values) {
            self.volumes
                .get_or_create(&VolumeLabels {
                    policy: policy.to_owned(),
                    tier: tier.to_owned(),
                })
                .set(i64::from(n));
        }
    }

    /// Sets the moves in flight of `policy` (`None`: the policy is gone).
    pub fn set_active(&self, policy: &str, active: Option<u32>) {
        let mut by = self
            .active_by_policy
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match active {
            Some(n) => {
                by.insert(policy.to_owned(), i64::from(n));
            }
            None => {
                by.remove(policy);
            }
        }
        self.active_migrations.set(by.values().sum());
    }

    /// Removes every series of a deleted policy (its volumes and its moves in flight),
    /// so dashboards do not show a policy that no longer exists.
    pub fn forget_policy(&self, policy: &str) {
        self.volume_policies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(policy);
        for tier in VOLUME_TIERS {
            self.volumes.remove(&VolumeLabels {
                policy: policy.to_owned(),
                tier: tier.to_owned(),
            });
        }
        self.set_active(policy, None);
    }

    /// Forgets every policy not in `existing` (after a re-list, which reports no
    /// deletions that happened while the watch was down).
    pub fn retain_policies(&self, existing: &BTreeSet<String>) {
        let known: Vec<String> = {
            let volumes = self
                .volume_policies
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let active = self
                .active_by_policy
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            volumes
                .iter()
                .chain(active.keys())
                .filter(|p| !existing.contains(*p))
                .cloned()
                .collect()
        };
        for policy in known {
            self.forget_policy(&policy);
        }
    }

    /// Counts a reconcile that failed or could not decide.
    pub fn reconcile_error(&self, kind: &str) {
        self.reconcile_errors
            .get_or_create(&ErrorLabels {
                error: kind.to_owned(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_migrations_is_the_sum_over_policies() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        m.set_active("a", Some(2));
        m.set_active("b", Some(1));
        assert_eq!(m.active_migrations.get(), 3);
        m.set_active("a", None);
        assert_eq!(m.active_migrations.get(), 1);
    }

    fn exposition(registry: &Registry) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).expect("encode");
        text
    }

    #[test]
    fn a_deleted_policy_loses_its_series_and_its_moves_in_flight() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        let counts = TierCounts {
            hot: 3,
            cold: 2,
            ..TierCounts::default()
        };
        m.set_volumes("gold", &counts);
        m.set_volumes("silver", &counts);
        m.set_active("gold", Some(2));
        m.set_active("silver", Some(1));
        assert!(
            exposition(&registry).contains(r#"couchestor_volumes{policy="gold",tier="hot"} 3"#)
        );

        m.forget_policy("gold");

        let text = exposition(&registry);
        assert!(!text.contains(r#"policy="gold""#), "{text}");
        assert!(
            text.contains(r#"couchestor_volumes{policy="silver",tier="hot"} 3"#),
            "{text}"
        );
        assert_eq!(m.active_migrations.get(), 1);

        m.set_active("bronze", Some(4));
        m.retain_policies(&BTreeSet::from(["bronze".to_owned()]));
        let text = exposition(&registry);
        assert!(!text.contains(r#"policy="silver""#), "{text}");
        assert_eq!(m.active_migrations.get(), 4);
    }
}
