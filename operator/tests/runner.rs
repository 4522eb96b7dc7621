//! The migration runner: what the leader does with the VolumeMigrations the controller
//! creates. The API server is a `tower_test` mock (the requests are checked); the
//! executor runs against the Mayastor simulator over HTTP, so a migration the runner
//! starts really moves the volume.

#[path = "support/executor.rs"]
mod harness;
#[path = "support/kube.rs"]
mod kube_mock;
#[path = "support/mayastor.rs"]
mod support;

use std::{sync::Arc, time::Duration};

use couchestor_core::{
    StoragePolicy, Tier,
    api::{MigrationPhase, StoragePolicySpec},
};
use couchestor_operator::{
    executor::{Clock, holds_finalizer},
    mayastor::sim::Behaviour,
    runner::Runner,
};
use harness::*;
use serde_json::{Value, json};

fn policy() -> Value {
    let spec: StoragePolicySpec = serde_json::from_value(json!({
        "storageClassName": "mayastor-tiered",
        "hotPoolSelector": {"matchLabels": {"tier": "hot"}},
        "coldPoolSelector": {"matchLabels": {"tier": "cold"}},
        "highWatermarkIops": 5000,
        "lowWatermarkIops": 100,
    }))
    .expect("policy spec");
    serde_json::to_value(StoragePolicy::new("tiering", spec)).expect("policy json")
}

fn list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "couchestor.io/v1alpha1", "kind": "VolumeMigrationList",
           "metadata": {"resourceVersion": "1"}, "items": items})
}

#[tokio::test]
async fn a_pass_drives_migrations_in_flight_to_their_target_tier_and_skips_finished_ones() {
    let h = Harness::new(lab(Behaviour::default(), false)).await;
    let todo = migration("todo", HOT_VOL, Tier::Hot, Tier::Cold, false);
    let mut done = migration("done", HOT_VOL, Tier::Cold, Tier::Hot, false);
    done.status = Some(couchestor_core::api::VolumeMigrationStatus {
        phase: Some(MigrationPhase::Succeeded),
        ..Default::default()
    });
    h.store.insert(todo.clone());
    let items = vec![
        serde_json::to_value(&done).expect("json"),
        serde_json::to_value(&todo).expect("json"),
    ];
    let (client, handle) = kube_mock::client();
    let (seen, _server) = kube_mock::serve(handle, move |r| {
        if r.is("GET", "/apis/couchestor.io/v1alpha1/volumemigrations") {
            (200, list(items.clone()))
        } else if r.is(
            "GET",
            "/apis/couchestor.io/v1alpha1/storagepolicies/tiering",
        ) {
            (200, policy())
        } else {
            (404, kube_mock::status(404, "NotFound"))
        }
    });
    let mut runner = Runner::new(client, Arc::new(h.executor(None, None)));

    let pass = runner.pass().await.expect("pass");

    assert_eq!(pass.started, ["todo"], "{pass:?}");
    assert!(pass.without_policy.is_empty());
    // The policy was read once, for the one migration in flight.
    let requests: Vec<String> = seen
        .lock()
        .expect("log")
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        requests,
        [
            "GET /apis/couchestor.io/v1alpha1/volumemigrations",
            "GET /apis/couchestor.io/v1alpha1/storagepolicies/tiering"
        ]
    );
    // The started move runs to completion on the simulator.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while h.status("todo").phase != Some(MigrationPhase::Succeeded) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not finished: {:?}",
            h.status("todo")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pools = h.pools(HOT_VOL);
    assert!(pools.iter().all(|p| pool_tier(p) == "cold"), "{pools:?}");
    h.assert_steering_restored();
}

#[tokio::test]
async fn a_migration_whose_policy_is_gone_is_left_alone_with_a_reason() {
    let h = Harness::new(lab(Behaviour::default(), false)).await;
    let todo = migration("orphan", HOT_VOL, Tier::Hot, Tier::Cold, false);
    h.store.insert(todo.clone());
    let items = vec![serde_json::to_value(&todo).expect("json")];
    let (client, handle) = kube_mock::client();
    let (_seen, _server) = kube_mock::serve(handle, move |r| {
        if r.is("GET", "/apis/couchestor.io/v1alpha1/volumemigrations") {
            (200, list(items.clone()))
        } else {
            (404, kube_mock::status(404, "NotFound"))
        }
    });
    let mut runner = Runner::new(client, Arc::new(h.executor(None, None)));

    let pass = runner.pass().await.expect("pass");

    assert!(pass.started.is_empty(), "{pass:?}");
    assert_eq!(pass.without_policy, ["orphan"]);
    assert_eq!(h.status("orphan").phase, None, "nothing was written");
    assert!(h.sim.mutations().is_empty(), "Mayastor was not touched");
}

/// `vm` as the API server lists it while a deletion waits for the finalizer.
fn deleting(vm: &couchestor_core::VolumeMigration) -> Value {
    let mut value = serde_json::to_value(vm).expect("json");
    value["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    value
}

#[tokio::test]
async fn a_deleted_migration_whose_policy_is_gone_is_closed_and_its_finalizer_released() {
    let h = Harness::new(lab(Behaviour::default(), false)).await;
    let orphan = finalized("orphan", HOT_VOL, Tier::Hot, Tier::Cold);
    h.store.insert(orphan.clone());
    h.store
        .request_deletion("orphan", SimClock(h.sim.clone()).now());
    let mut done = finalized("done", HOT_VOL, Tier::Cold, Tier::Hot);
    done.status = Some(couchestor_core::api::VolumeMigrationStatus {
        phase: Some(MigrationPhase::Succeeded),
        ..Default::default()
    });
    h.store.insert(done.clone());
    let items = vec![
        deleting(&orphan),
        serde_json::to_value(&done).expect("json"),
    ];
    let (client, handle) = kube_mock::client();
    let (seen, _server) = kube_mock::serve(handle, move |r| {
        if r.is("GET", "/apis/couchestor.io/v1alpha1/volumemigrations") {
            (200, list(items.clone()))
        } else {
            (404, kube_mock::status(404, "NotFound"))
        }
    });
    let mut runner = Runner::new(client, Arc::new(h.executor(None, None)));

    let pass = runner.pass().await.expect("pass");

    assert!(pass.started.is_empty(), "{pass:?}");
    assert_eq!(pass.abandoned, ["orphan", "done"], "{pass:?}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while h.store.object("orphan").is_some()
        || h.store
            .object("done")
            .is_some_and(|vm| holds_finalizer(&vm))
    {
        assert!(tokio::time::Instant::now() < deadline, "finalizers kept");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let last = h.store.writes("orphan").pop().expect("closed");
    assert_eq!(last.phase, Some(MigrationPhase::Failed));
    assert!(
        last.last_error
            .as_deref()
            .is_some_and(|e| e.contains("policy tiering was deleted")),
        "{last:?}"
    );
    assert_eq!(
        h.status("done").phase,
        Some(MigrationPhase::Succeeded),
        "a finished move is only released"
    );
    assert!(h.sim.mutations().is_empty(), "Mayastor was not touched");
    // Only the one policy lookup, for the migration in flight.
    let policy_reads = seen
        .lock()
        .expect("log")
        .iter()
        .filter(|r| r.path.contains("/storagepolicies/"))
        .count();
    assert_eq!(policy_reads, 1);
}
