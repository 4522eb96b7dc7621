//! Which volumes a policy watches, and the planner's view of them. Pure: the inputs
//! are objects already read from Kubernetes, Mayastor and Prometheus.

use std::collections::BTreeMap;

use couchestor_core::{api::StoragePolicySpec, names, plan::ObservedVolume, selector, tier::Load};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};

use super::ledger::Ledger;
use crate::mayastor::{Pool, Volume};

/// A PersistentVolume the policy tiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedVolume {
    /// PersistentVolume name (the `pv_name` label of the IOPS counters).
    pub pv: String,
    /// Mayastor volume UUID (the CSI volume handle).
    pub volume_id: String,
    /// Lives only in the EC archive (`couchestor.io/archived`): counted, not moved.
    pub archived: bool,
}

/// The volumes of `policy`: PVs of its StorageClass with a CSI volume handle, not
/// released, and — with a `volumeSelector` — bound to a PVC whose labels match.
/// Sorted by PV name.
pub fn watched_volumes<'a>(
    policy: &StoragePolicySpec,
    pvs: impl IntoIterator<Item = &'a PersistentVolume>,
    pvcs: impl IntoIterator<Item = &'a PersistentVolumeClaim>,
) -> Vec<WatchedVolume> {
    let claim_labels: BTreeMap<(&str, &str), &BTreeMap<String, String>> = pvcs
        .into_iter()
        .filter_map(|c| {
            Some((
                (
                    c.metadata.namespace.as_deref()?,
                    c.metadata.name.as_deref()?,
                ),
                c.metadata.labels.as_ref()?,
            ))
        })
        .collect();
    let empty = BTreeMap::new();
    let mut out: Vec<WatchedVolume> = pvs
        .into_iter()
        .filter_map(|pv| {
            let name = pv.metadata.name.clone()?;
            let spec = pv.spec.as_ref()?;
            if spec.storage_class_name.as_deref() != Some(policy.storage_class_name.as_str()) {
                return None;
            }
            let phase = pv.status.as_ref().and_then(|s| s.phase.as_deref());
            if matches!(phase, Some("Released" | "Failed")) {
                return None;
            }
            let volume_id = spec.csi.as_ref()?.volume_handle.clone();
            if let Some(sel) = &policy.volume_selector {
                let claim = spec.claim_ref.as_ref()?;
                let key = (claim.namespace.as_deref()?, claim.name.as_deref()?);
                let labels = claim_labels.get(&key).copied().unwrap_or(&empty);
                if !selector::matches(sel, labels) {
                    return None;
                }
            }
            let archived = pv
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(names::ARCHIVED));
            Some(WatchedVolume {
                pv: name,
                volume_id,
                archived,
            })
        })
        .collect();
    out.sort_by(|a, b| a.pv.cmp(&b.pv));
    out
}

/// The planner's view of the live (not archived) watched volumes. A volume Mayastor
/// does not report has no healthy replica (unplaced, never moved); a volume without a
/// load is unknown (never moved). `last_moved` / `recorded_tier` come from the
/// policy's finished migrations.
pub fn observed_volumes(
    watched: &[WatchedVolume],
    mayastor_volumes: &[Volume],
    pools: &[Pool],
    loads: &BTreeMap<String, Load>,
    ledger: &Ledger,
) -> Vec<ObservedVolume> {
    let by_id: BTreeMap<&str, &Volume> = mayastor_volumes.iter().map(|v| (v.uuid(), v)).collect();
    watched
        .iter()
        .filter(|w| !w.archived)
        .map(|w| {
            let load = loads.get(&w.pv).copied().unwrap_or(Load::Unknown);
            let replica_pools = by_id
                .get(w.volume_id.as_str())
                .map(|v| v.healthy_replica_pool_labels(pools))
                .unwrap_or_default();
            let last = ledger.last_move(&w.pv);
            ObservedVolume {
                name: w.pv.clone(),
                replica_pools,
                load,
                last_moved: last.and_then(|l| l.finished_at),
                recorded_tier: last.and_then(|l| l.settled_tier),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pv(name: &str, class: &str, claim: &str, extra: serde_json::Value) -> PersistentVolume {
        let mut v = serde_json::json!({
            "metadata": {"name": name},
            "spec": {"storageClassName": class,
                     "csi": {"driver": "io.openebs.csi-mayastor", "volumeHandle": format!("id-{name}")},
                     "claimRef": {"namespace": "shop", "name": claim}},
            "status": {"phase": "Bound"}
        });
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            for (k, val) in e {
                o.insert(k.clone(), val.clone());
            }
        }
        serde_json::from_value(v).expect("pv")
    }

    fn pvc(name: &str, labels: serde_json::Value) -> PersistentVolumeClaim {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "shop", "labels": labels}
        }))
        .expect("pvc")
    }

    fn policy(selector: Option<serde_json::Value>) -> StoragePolicySpec {
        let mut v = serde_json::json!({
            "storageClassName": "tiered",
            "hotPoolSelector": {"matchLabels": {"tier": "hot"}},
            "coldPoolSelector": {"matchLabels": {"tier": "cold"}},
        });
        if let Some(s) = selector {
            v["volumeSelector"] = s;
        }
        serde_json::from_value(v).expect("policy")
    }

    #[test]
    fn only_live_csi_volumes_of_the_class_are_watched_and_archived_ones_are_marked() {
        let pvs = [
            pv("b", "tiered", "c-b", serde_json::json!({})),
            pv("a", "tiered", "c-a", serde_json::json!({})),
            pv("other", "plain", "c-o", serde_json::json!({})),
            pv(
                "gone",
                "tiered",
                "c-g",
                serde_json::json!({"status": {"phase": "Released"}}),
            ),
            pv(
                "arch",
                "tiered",
                "c-x",
                serde_json::json!({"metadata": {"name": "arch", "annotations": {names::ARCHIVED: "ecv-arch"}}}),
            ),
        ];
        let w = watched_volumes(&policy(None), &pvs, &[] as &[PersistentVolumeClaim]);
        let names: Vec<(&str, bool)> = w.iter().map(|v| (v.pv.as_str(), v.archived)).collect();
        assert_eq!(names, [("a", false), ("arch", true), ("b", false)]);
        assert_eq!(w[0].volume_id, "id-a");
    }

    #[test]
    fn a_volume_selector_keeps_only_volumes_whose_claim_matches() {
        let pvs = [
            pv("a", "tiered", "db", serde_json::json!({})),
            pv("b", "tiered", "cache", serde_json::json!({})),
            pv("c", "tiered", "no-such-claim", serde_json::json!({})),
        ];
        let pvcs = [
            pvc("db", serde_json::json!({"tiering": "on"})),
            pvc("cache", serde_json::json!({"tiering": "off"})),
        ];
        let sel = serde_json::json!({"matchLabels": {"tiering": "on"}});
        let w = watched_volumes(&policy(Some(sel)), &pvs, &pvcs);
        let names: Vec<&str> = w.iter().map(|v| v.pv.as_str()).collect();
        assert_eq!(names, ["a"]);
    }

    #[test]
    fn a_volume_mayastor_does_not_report_is_unplaced_and_one_without_load_unknown() {
        let watched = [WatchedVolume {
            pv: "a".into(),
            volume_id: "id-a".into(),
            archived: false,
        }];
        let obs = observed_volumes(&watched, &[], &[], &BTreeMap::new(), &Ledger::default());
        assert_eq!(obs.len(), 1);
        assert!(obs[0].replica_pools.is_empty());
        assert_eq!(obs[0].load, Load::Unknown);
    }
}
