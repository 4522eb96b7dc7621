//! Checks that need other objects (the webhook feeds them from its watch cache).
//! Pure functions over snapshots, so they are tested without a cluster.

use super::{FieldErrors, ValidationErrors};
use crate::{
    api::{ErasureCodingPolicySpec, LabelSelector, StoragePolicySpec},
    selector,
};

/// What the cluster holds, as far as cross-object rules care.
#[derive(Debug, Default, Clone, Copy)]
pub struct Cluster<'a> {
    /// Every StoragePolicy (name, spec).
    pub storage_policies: &'a [(String, StoragePolicySpec)],
    /// Names of every ErasureCodingPolicy.
    pub ec_policies: &'a [String],
    /// For every EcVolume: the ErasureCodingPolicy it was archived with.
    pub ec_volume_policies: &'a [String],
}

/// A StoragePolicy being created or updated as `name`, against the others.
pub fn check_storage_policy(
    name: &str,
    spec: &StoragePolicySpec,
    cluster: Cluster<'_>,
) -> Result<(), ValidationErrors> {
    let mut errors = FieldErrors::default();
    if spec.enabled {
        let everything = LabelSelector::default();
        let mine = spec.volume_selector.as_ref().unwrap_or(&everything);
        for (other_name, other) in cluster.storage_policies {
            if other_name == name
                || !other.enabled
                || other.storage_class_name != spec.storage_class_name
            {
                continue;
            }
            let theirs = other.volume_selector.as_ref().unwrap_or(&everything);
            if selector::may_overlap(mine, theirs) {
                errors.push(
                    "spec.volumeSelector",
                    format!(
                        "overlaps enabled StoragePolicy {other_name:?} on StorageClass {:?}: a volume must be tiered by one policy; make the volume selectors disjoint or disable one policy",
                        spec.storage_class_name
                    ),
                );
            }
        }
    }
    if let Some(ec) = &spec.ec_policy_ref
        && !cluster.ec_policies.iter().any(|n| n == ec)
    {
        errors.push(
            "spec.ecPolicyRef",
            format!("ErasureCodingPolicy {ec:?} does not exist; create it first"),
        );
    }
    errors.into_result()
}

/// An update of ErasureCodingPolicy `name` from `old` to `new`: the layout is frozen
/// while archived volumes use it (they can only be read with the layout they were
/// written with).
pub fn check_ec_policy_update(
    name: &str,
    old: &ErasureCodingPolicySpec,
    new: &ErasureCodingPolicySpec,
    cluster: Cluster<'_>,
) -> Result<(), ValidationErrors> {
    let mut errors = FieldErrors::default();
    let using = cluster
        .ec_volume_policies
        .iter()
        .filter(|p| *p == name)
        .count();
    if using > 0 {
        // The fields that decide how archived bytes are laid out, as (path, value).
        let layout = |p: &ErasureCodingPolicySpec| {
            [
                ("spec.dataShards", p.data_shards.to_string()),
                ("spec.parityShards", p.parity_shards.to_string()),
                ("spec.stripeSizeBytes", p.stripe_size_bytes.to_string()),
                ("spec.algorithm", p.algorithm.clone()),
            ]
        };
        for ((path, before), (_, after)) in layout(old).into_iter().zip(layout(new)) {
            if before != after {
                errors.push(
                    path,
                    format!("cannot change from {before} to {after}: {using} archived volume(s) use this layout; create a new ErasureCodingPolicy instead"),
                );
            }
        }
    }
    errors.into_result()
}

/// Deleting ErasureCodingPolicy `name`: refused while archived volumes or policies use it.
pub fn check_ec_policy_delete(name: &str, cluster: Cluster<'_>) -> Result<(), ValidationErrors> {
    let mut errors = FieldErrors::default();
    let using = cluster
        .ec_volume_policies
        .iter()
        .filter(|p| *p == name)
        .count();
    if using > 0 {
        errors.push(
            "metadata.name",
            format!(
                "{using} archived volume(s) use ErasureCodingPolicy {name:?}; it cannot be deleted"
            ),
        );
    }
    let referring: Vec<&str> = cluster
        .storage_policies
        .iter()
        .filter(|(_, p)| p.ec_policy_ref.as_deref() == Some(name))
        .map(|(n, _)| n.as_str())
        .collect();
    if !referring.is_empty() {
        errors.push(
            "metadata.name",
            format!("referenced by StoragePolicy {referring:?}; remove the ecPolicyRef first"),
        );
    }
    errors.into_result()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(
        class: &str,
        selector: Option<serde_json::Value>,
        enabled: bool,
    ) -> StoragePolicySpec {
        let mut v = serde_json::json!({
            "storageClassName": class,
            "hotPoolSelector": {"matchLabels": {"tier": "hot"}},
            "coldPoolSelector": {"matchLabels": {"tier": "cold"}},
            "enabled": enabled,
        });
        if let Some(sel) = selector {
            v["volumeSelector"] = sel;
        }
        serde_json::from_value(v).expect("policy")
    }

    fn ec() -> ErasureCodingPolicySpec {
        serde_json::from_value(serde_json::json!({})).expect("defaults")
    }

    #[test]
    fn two_enabled_policies_on_one_class_with_overlapping_selectors_are_refused() {
        let others = vec![("a".to_owned(), policy("sc", None, true))];
        let cluster = Cluster {
            storage_policies: &others,
            ..Default::default()
        };
        let err = check_storage_policy(
            "b",
            &policy(
                "sc",
                Some(serde_json::json!({"matchLabels": {"app": "db"}})),
                true,
            ),
            cluster,
        )
        .expect_err("overlap");
        assert_eq!(err.paths(), vec!["spec.volumeSelector"]);
        assert!(err.to_string().contains("\"a\""), "{err}");
        // Another class, a disabled newcomer, or the same policy updated: fine.
        assert!(check_storage_policy("b", &policy("other", None, true), cluster).is_ok());
        assert!(check_storage_policy("b", &policy("sc", None, false), cluster).is_ok());
        assert!(check_storage_policy("a", &policy("sc", None, true), cluster).is_ok());
    }

    #[test]
    fn disjoint_volume_selectors_may_share_a_class() {
        let others = vec![(
            "a".to_owned(),
            policy(
                "sc",
                Some(serde_json::json!({"matchLabels": {"app": "db"}})),
                true,
            ),
        )];
        let cluster = Cluster {
            storage_policies: &others,
            ..Default::default()
        };
        let mine = policy(
            "sc",
            Some(serde_json::json!({"matchLabels": {"app": "web"}})),
            true,
        );
        assert!(check_storage_policy("b", &mine, cluster).is_ok());
    }

    #[test]
    fn a_dangling_ec_policy_ref_is_refused() {
        let mut p = policy("sc", None, true);
        p.ec_policy_ref = Some("missing".into());
        let names = vec!["present".to_owned()];
        let cluster = Cluster {
            ec_policies: &names,
            ..Default::default()
        };
        let err = check_storage_policy("p", &p, cluster).expect_err("dangling");
        assert_eq!(err.paths(), vec!["spec.ecPolicyRef"]);
        p.ec_policy_ref = Some("present".into());
        assert!(check_storage_policy("p", &p, cluster).is_ok());
    }

    #[test]
    fn the_layout_of_an_ec_policy_in_use_is_frozen_but_scrubbing_is_not() {
        let used = vec!["ec".to_owned()];
        let cluster = Cluster {
            ec_volume_policies: &used,
            ..Default::default()
        };
        let mut new = ec();
        new.parity_shards = 3;
        new.stripe_size_bytes = 2 << 20;
        let err = check_ec_policy_update("ec", &ec(), &new, cluster).expect_err("frozen");
        assert_eq!(
            err.paths(),
            vec!["spec.parityShards", "spec.stripeSizeBytes"]
        );
        assert!(err.to_string().contains("1 archived volume(s)"), "{err}");
        let mut scrub_only = ec();
        scrub_only.scrubbing_enabled = false;
        assert!(check_ec_policy_update("ec", &ec(), &scrub_only, cluster).is_ok());
        assert!(check_ec_policy_update("unused", &ec(), &new, cluster).is_ok());
    }

    #[test]
    fn an_ec_policy_in_use_cannot_be_deleted() {
        let used = vec!["ec".to_owned()];
        let mut p = policy("sc", None, true);
        p.ec_policy_ref = Some("ec".into());
        let policies = vec![("tiering".to_owned(), p)];
        let cluster = Cluster {
            storage_policies: &policies,
            ec_volume_policies: &used,
            ..Default::default()
        };
        let err = check_ec_policy_delete("ec", cluster).expect_err("in use");
        assert_eq!(err.errors().len(), 2, "{err}");
        assert!(check_ec_policy_delete("other", cluster).is_ok());
    }
}
