use couchestor_core::api::{PolicyPhase, StoragePolicyStatus};
use futures::StreamExt;

use super::*;

fn policy(generation: i64, enabled: bool, phase: Option<PolicyPhase>) -> StoragePolicy {
    let mut p: StoragePolicy = serde_json::from_value(serde_json::json!({
        "apiVersion": "couchestor.io/v1alpha1",
        "kind": "StoragePolicy",
        "metadata": {"name": "gold", "uid": "u-1", "generation": generation},
        "spec": {
            "storageClassName": "tiered",
            "hotPoolSelector": {"matchLabels": {"tier": "hot"}},
            "coldPoolSelector": {"matchLabels": {"tier": "cold"}},
            "enabled": enabled,
        }
    }))
    .expect("policy");
    p.status = phase.map(|phase| StoragePolicyStatus {
        phase: Some(phase),
        ..StoragePolicyStatus::default()
    });
    p
}

#[tokio::test]
async fn a_status_only_change_does_not_trigger_a_reconcile() {
    let events = vec![
        Ok(policy(1, true, None)),
        // The operator's own status write: same generation.
        Ok(policy(1, true, Some(PolicyPhase::Active))),
        Ok(policy(1, true, Some(PolicyPhase::Active))),
        // A spec change (the API server bumps the generation).
        Ok(policy(2, false, Some(PolicyPhase::Active))),
        Ok(policy(2, false, Some(PolicyPhase::Disabled))),
    ];
    let passed: Vec<i64> = spec_changes(futures::stream::iter(events))
        .map(|p| p.expect("ok").metadata.generation.expect("generation"))
        .collect()
        .await;
    assert_eq!(passed, [1, 2]);
}

#[test]
fn pvs_and_pvcs_map_to_the_policies_of_their_storage_class() {
    let (reader, mut writer) = reflector::store::<StoragePolicy>();
    let mut other = policy(1, true, None);
    other.metadata.name = Some("silver".into());
    other.spec.storage_class_name = "plain".into();
    writer.apply_watcher_event(&watcher::Event::Apply(policy(1, true, None)));
    writer.apply_watcher_event(&watcher::Event::Apply(other));
    let refs = policies_of_class(&reader, Some("tiered"));
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].name, "gold");
    assert!(policies_of_class(&reader, Some("none")).is_empty());
    assert!(policies_of_class(&reader, None).is_empty());
}
