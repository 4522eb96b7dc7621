//! The `VolumeMigration` object for a planned move. Pure.
//!
//! The name is deterministic — policy, volume, target tier and the volume's migration
//! sequence number — so a create retried after a lost answer meets `409 AlreadyExists`
//! instead of starting the same move twice.

use couchestor_core::{
    StoragePolicy, VolumeMigration, api::VolumeMigrationSpec, names, plan::PlannedMove,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};

/// Longest object name the API server accepts (DNS subdomain).
const MAX_NAME: usize = 253;

/// Label on every migration naming its policy (when the name fits a label value).
pub const POLICY_LABEL: &str = "couchestor.io/policy";

/// `<policy>.<volume>.<to>.<seq>`; when longer than 253 characters, cut and suffixed
/// with a hash of the whole, so distinct moves keep distinct names.
pub fn name(policy: &str, volume: &str, to: &str, seq: usize) -> String {
    let full = format!("{policy}.{volume}.{to}.{seq}");
    if full.len() <= MAX_NAME {
        return full;
    }
    let hash = format!("{:016x}", fnv1a(full.as_bytes()));
    let keep = MAX_NAME - hash.len() - 1;
    let mut cut = full[..keep].trim_end_matches(['.', '-']).to_owned();
    cut.push('-');
    cut.push_str(&hash);
    cut
}

/// FNV-1a, 64 bits: stable across releases and platforms (unlike `DefaultHasher`).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The migration for `mv` of `policy`, owned by the policy (garbage-collected with
/// it) and holding [`names::MIGRATION_FINALIZER`] until the executor has finished it.
/// `volume_id` is the Mayastor volume UUID; `seq` how many migrations of this
/// volume exist already.
pub fn build(
    policy: &StoragePolicy,
    mv: &PlannedMove,
    volume_id: &str,
    seq: usize,
) -> VolumeMigration {
    let policy_name = policy.name_any();
    let mut metadata = ObjectMeta {
        name: Some(name(&policy_name, &mv.volume, mv.to.as_str(), seq)),
        owner_references: policy.controller_owner_ref(&()).map(|o| vec![o]),
        finalizers: Some(vec![names::MIGRATION_FINALIZER.to_owned()]),
        ..ObjectMeta::default()
    };
    if policy_name.len() <= 63 {
        metadata.labels = Some([(POLICY_LABEL.to_owned(), policy_name.clone())].into());
    }
    let mut vm = VolumeMigration::new(
        "",
        VolumeMigrationSpec {
            policy_ref: policy_name,
            volume_name: mv.volume.clone(),
            volume_id: volume_id.to_owned(),
            from_tier: mv.from,
            to_tier: mv.to,
            preserve_source_replica: policy.spec.preserve_source_replica,
            timeout: policy.spec.migration_timeout.clone(),
        },
    );
    *vm.meta_mut() = metadata;
    vm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_deterministic_and_bounded() {
        assert_eq!(name("gold", "pvc-1", "cold", 0), "gold.pvc-1.cold.0");
        let long = "p".repeat(200);
        let a = name(&long, &"v".repeat(100), "hot", 3);
        let b = name(&long, &"v".repeat(100), "hot", 4);
        assert!(a.len() <= MAX_NAME && b.len() <= MAX_NAME);
        assert_ne!(a, b, "distinct moves keep distinct names");
        assert_eq!(a, name(&long, &"v".repeat(100), "hot", 3));
    }
}
