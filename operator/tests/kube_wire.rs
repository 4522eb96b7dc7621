//! Wire-level tests of the operator's own Kubernetes writes outside the controller: the
//! Lease (acquire, renew, follow, take over, 409 conflicts, release) and the
//! executor's ports (`VolumeMigration` status by server-side apply, Events). A kube
//! `Client` over `tower_test::mock`; each request's method, path, query, content type
//! and body are asserted.

use std::time::Duration;

use couchestor_core::{
    Timestamp, VolumeMigration,
    api::{MigrationPhase, MigrationStep, VolumeMigrationStatus},
};
use couchestor_operator::{
    kube_store::{
        EventSink, EventType, KubeEventSink, KubeMigrationStore, MigrationStore, StoreError,
    },
    lease::{Elector, LeaseConfig, Role},
};
use serde_json::{Value, json};

#[path = "support/kube.rs"]
mod kube_mock;

use kube_mock::{next, respond, status};

const LEASE: &str =
    "/apis/coordination.k8s.io/v1/namespaces/couchestor-system/leases/couchestor-operator";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/couchestor-system/leases";

fn at(s: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + s).expect("time")
}

fn elector(client: kube::Client) -> Elector {
    Elector::new(
        client,
        LeaseConfig {
            name: "couchestor-operator".into(),
            namespace: "couchestor-system".into(),
            identity: "op-0".into(),
            duration: Duration::from_secs(15),
        },
    )
}

fn lease(holder: Option<&str>, version: &str, transitions: i32) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "couchestor-operator", "namespace": "couchestor-system", "resourceVersion": version},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                 "acquireTime": "2027-01-15T08:00:00.000000Z", "renewTime": "2027-01-15T08:00:00.000000Z",
                 "leaseTransitions": transitions}
    })
}

fn with_version(mut body: Value, version: &str) -> Value {
    body["metadata"]["resourceVersion"] = json!(version);
    body
}

#[tokio::test]
async fn a_missing_lease_is_created_naming_us_and_then_renewed_with_its_resource_version() {
    let (client, mut handle) = kube_mock::client();
    let server = tokio::spawn(async move {
        let (r, send) = next(&mut handle).await.expect("get");
        assert!(r.is("GET", LEASE), "{r:?}");
        respond(send, 404, &status(404, "NotFound"));
        let (r, send) = next(&mut handle).await.expect("create");
        assert!(r.is("POST", LEASES), "{r:?}");
        assert!(
            r.query.contains("fieldManager=couchestor-operator"),
            "{}",
            r.query
        );
        let spec = &r.body["spec"];
        assert_eq!(spec["holderIdentity"], "op-0");
        assert_eq!(spec["leaseDurationSeconds"], 15);
        assert_eq!(spec["leaseTransitions"], 0);
        assert!(spec["acquireTime"].is_string() && spec["renewTime"].is_string());
        let created = with_version(r.body.clone(), "10");
        respond(send, 201, &created);
        // Renew.
        let (r, send) = next(&mut handle).await.expect("get");
        assert!(r.is("GET", LEASE));
        respond(send, 200, &created);
        let (r, send) = next(&mut handle).await.expect("renew");
        assert!(r.is("PUT", LEASE), "{r:?}");
        assert_eq!(
            r.body["metadata"]["resourceVersion"], "10",
            "guarded update"
        );
        assert_eq!(r.body["spec"]["holderIdentity"], "op-0");
        assert_eq!(
            r.body["spec"]["leaseTransitions"], 0,
            "a renewal is not a new term"
        );
        assert_ne!(r.body["spec"]["renewTime"], created["spec"]["renewTime"]);
        respond(send, 200, &with_version(r.body.clone(), "11"));
    });
    let mut e = elector(client);
    assert_eq!(
        e.try_acquire_or_renew(at(0)).await.expect("round"),
        Role::Leader
    );
    assert_eq!(
        e.try_acquire_or_renew(at(5)).await.expect("round"),
        Role::Leader
    );
    server.await.expect("server");
}

#[tokio::test]
async fn a_live_lease_is_followed_and_taken_over_only_after_it_stayed_unchanged_for_its_duration() {
    let (client, mut handle) = kube_mock::client();
    let server = tokio::spawn(async move {
        // Two reads of the same record, 10 s apart: still live (15 s), no write.
        for _ in 0..2 {
            let (r, send) = next(&mut handle).await.expect("get");
            assert!(r.is("GET", LEASE), "{r:?}");
            respond(send, 200, &lease(Some("op-1"), "7", 3));
        }
        // 16 s after first seeing version 7: expired, take over.
        let (r, send) = next(&mut handle).await.expect("get");
        respond(send, 200, &lease(Some("op-1"), "7", 3));
        let (r2, send2) = next(&mut handle).await.expect("takeover");
        assert!(r2.is("PUT", LEASE), "{r2:?} after {r:?}");
        assert_eq!(r2.body["metadata"]["resourceVersion"], "7");
        assert_eq!(r2.body["spec"]["holderIdentity"], "op-0");
        assert_eq!(r2.body["spec"]["leaseTransitions"], 4);
        assert_ne!(
            r2.body["spec"]["acquireTime"],
            "2027-01-15T08:00:00.000000Z"
        );
        respond(send2, 200, &with_version(r2.body.clone(), "8"));
    });
    let mut e = elector(client);
    assert_eq!(
        e.try_acquire_or_renew(at(0)).await.expect("round"),
        Role::Follower {
            holder: Some("op-1".into())
        }
    );
    assert_eq!(
        e.try_acquire_or_renew(at(10)).await.expect("round"),
        Role::Follower {
            holder: Some("op-1".into())
        }
    );
    assert_eq!(
        e.try_acquire_or_renew(at(16)).await.expect("round"),
        Role::Leader
    );
    server.await.expect("server");
}

#[tokio::test]
async fn a_renewed_lease_resets_the_expiry_clock() {
    let (client, mut handle) = kube_mock::client();
    let server = tokio::spawn(async move {
        for version in ["7", "8"] {
            let (_, send) = next(&mut handle).await.expect("get");
            respond(send, 200, &lease(Some("op-1"), version, 3));
        }
    });
    let mut e = elector(client);
    e.try_acquire_or_renew(at(0)).await.expect("round");
    // 20 s later, but the holder renewed in between (new resourceVersion): live.
    assert_eq!(
        e.try_acquire_or_renew(at(20)).await.expect("round"),
        Role::Follower {
            holder: Some("op-1".into())
        }
    );
    server.await.expect("server");
}

#[tokio::test]
async fn conflicts_make_us_follow_never_fail() {
    let (client, mut handle) = kube_mock::client();
    let server = tokio::spawn(async move {
        // Create race: another replica created it first.
        let (_, send) = next(&mut handle).await.expect("get");
        respond(send, 404, &status(404, "NotFound"));
        let (r, send) = next(&mut handle).await.expect("create");
        assert!(r.is("POST", LEASES));
        respond(send, 409, &status(409, "AlreadyExists"));
        // A released lease (no holder) is taken at once, but someone wrote first.
        let (_, send) = next(&mut handle).await.expect("get");
        respond(send, 200, &lease(None, "20", 5));
        let (r, send) = next(&mut handle).await.expect("takeover");
        assert!(r.is("PUT", LEASE));
        assert_eq!(r.body["metadata"]["resourceVersion"], "20");
        respond(send, 409, &status(409, "Conflict"));
    });
    let mut e = elector(client);
    assert_eq!(
        e.try_acquire_or_renew(at(0)).await.expect("round"),
        Role::Follower { holder: None }
    );
    assert!(matches!(
        e.try_acquire_or_renew(at(1)).await.expect("round"),
        Role::Follower { .. }
    ));
    server.await.expect("server");
}

#[tokio::test]
async fn an_api_failure_is_an_error_not_leadership() {
    let (client, mut handle) = kube_mock::client();
    let server = tokio::spawn(async move {
        let (_, send) = next(&mut handle).await.expect("get");
        respond(send, 500, &status(500, "InternalError"));
    });
    let mut e = elector(client);
    assert!(e.try_acquire_or_renew(at(0)).await.is_err());
    server.await.expect("server");
}

#[tokio::test]
async fn release_clears_the_holder_only_when_we_hold_it() {
    let (client, mut handle) = kube_mock::client();
    let server = tokio::spawn(async move {
        let (_, send) = next(&mut handle).await.expect("get");
        respond(send, 200, &lease(Some("op-0"), "30", 1));
        let (r, send) = next(&mut handle).await.expect("release");
        assert!(r.is("PUT", LEASE), "{r:?}");
        assert_eq!(r.body["metadata"]["resourceVersion"], "30");
        assert!(r.body["spec"]["holderIdentity"].is_null(), "{:#}", r.body);
        assert_eq!(r.body["spec"]["leaseDurationSeconds"], 1);
        respond(send, 200, &with_version(r.body.clone(), "31"));
        // Someone else's lease: only read.
        let (_, send) = next(&mut handle).await.expect("get");
        respond(send, 200, &lease(Some("op-1"), "40", 2));
    });
    let e = elector(client);
    e.release().await.expect("release");
    e.release().await.expect("not ours: nothing to do");
    server.await.expect("server");
}

fn volume_migration() -> VolumeMigration {
    serde_json::from_value(json!({
        "apiVersion": "couchestor.io/v1alpha1", "kind": "VolumeMigration",
        "metadata": {"name": "gold.pvc-1.cold.0", "uid": "vm-uid"},
        "spec": {"policyRef": "gold", "volumeName": "pvc-1", "volumeId": "u1",
                 "fromTier": "hot", "toTier": "cold", "timeout": "30m"}
    }))
    .expect("vm")
}

#[tokio::test]
async fn migration_status_is_server_side_applied_on_the_status_subresource() {
    let (client, mut handle) = kube_mock::client();
    let path = "/apis/couchestor.io/v1alpha1/volumemigrations/gold.pvc-1.cold.0";
    let server = tokio::spawn(async move {
        let (r, send) = next(&mut handle).await.expect("patch");
        assert!(r.is("PATCH", &format!("{path}/status")), "{r:?}");
        assert!(
            r.query.contains("fieldManager=couchestor-operator"),
            "{}",
            r.query
        );
        assert!(r.query.contains("force=true"), "{}", r.query);
        assert_eq!(r.content_type, "application/apply-patch+yaml");
        assert_eq!(r.body["apiVersion"], "couchestor.io/v1alpha1");
        assert_eq!(r.body["kind"], "VolumeMigration");
        assert_eq!(r.body["status"]["phase"], "Running");
        assert_eq!(r.body["status"]["step"], "ScalingUp");
        assert_eq!(r.body["status"]["startingHealthyReplicas"], 2);
        assert!(r.body.get("spec").is_none());
        let mut answer = serde_json::to_value(volume_migration()).expect("vm");
        answer["status"] = r.body["status"].clone();
        respond(send, 200, &answer);
        let (r, send) = next(&mut handle).await.expect("get");
        assert!(r.is("GET", path));
        respond(send, 404, &status(404, "NotFound"));
        let (_, send) = next(&mut handle).await.expect("patch");
        respond(send, 403, &status(403, "Forbidden"));
    });
    let store = KubeMigrationStore::new(client);
    let st = VolumeMigrationStatus {
        phase: Some(MigrationPhase::Running),
        step: Some(MigrationStep::ScalingUp),
        starting_healthy_replicas: Some(2),
        ..VolumeMigrationStatus::default()
    };
    store
        .put_status("gold.pvc-1.cold.0", &st)
        .await
        .expect("written");
    assert!(
        store
            .get("gold.pvc-1.cold.0")
            .await
            .expect("read")
            .is_none()
    );
    let e = store
        .put_status("gold.pvc-1.cold.0", &st)
        .await
        .expect_err("forbidden");
    assert!(matches!(&e, StoreError::Unavailable(_)), "{e:?}");
    assert!(
        e.to_string()
            .contains("writing the status of VolumeMigration gold.pvc-1.cold.0"),
        "{e}"
    );
    server.await.expect("server");
}

#[tokio::test]
async fn the_finalizer_is_removed_by_a_version_guarded_merge_patch_keeping_the_others() {
    let (client, mut handle) = kube_mock::client();
    let path = "/apis/couchestor.io/v1alpha1/volumemigrations/gold.pvc-1.cold.0";
    let mut held = serde_json::to_value(volume_migration()).expect("vm");
    held["metadata"]["resourceVersion"] = json!("7");
    held["metadata"]["finalizers"] = json!(["example.com/audit", "couchestor.io/migration"]);
    let mut free = held.clone();
    free["metadata"]["finalizers"] = json!(["example.com/audit"]);
    let server = tokio::spawn(async move {
        // 1: read, then patch away ours only, guarded by the version read.
        let (r, send) = next(&mut handle).await.expect("get");
        assert!(r.is("GET", path), "{r:?}");
        respond(send, 200, &held);
        let (r, send) = next(&mut handle).await.expect("patch");
        assert!(r.is("PATCH", path), "{r:?}");
        assert_eq!(r.content_type, "application/merge-patch+json");
        assert_eq!(
            r.body,
            json!({"metadata": {"finalizers": ["example.com/audit"], "resourceVersion": "7"}})
        );
        respond(send, 200, &free);
        // 2: already released: no patch.
        let (r, send) = next(&mut handle).await.expect("get");
        assert!(r.is("GET", path), "{r:?}");
        respond(send, 200, &free);
        // 3: gone: nothing to do.
        let (r, send) = next(&mut handle).await.expect("get");
        assert!(r.is("GET", path), "{r:?}");
        respond(send, 404, &status(404, "NotFound"));
        // 4: changed meanwhile: the conflict is an error, retried later.
        let (_, send) = next(&mut handle).await.expect("get");
        respond(send, 200, &held);
        let (_, send) = next(&mut handle).await.expect("patch");
        respond(send, 409, &status(409, "Conflict"));
    });
    let store = KubeMigrationStore::new(client);
    let name = "gold.pvc-1.cold.0";
    store.release(name).await.expect("released");
    store.release(name).await.expect("no-op");
    store.release(name).await.expect("gone");
    let e = store.release(name).await.expect_err("conflict");
    assert!(matches!(&e, StoreError::Unavailable(_)), "{e:?}");
    assert!(e.to_string().contains("removing the finalizer"), "{e}");
    server.await.expect("server");
}

#[tokio::test]
async fn migration_events_name_the_migration_and_the_operator() {
    let (client, mut handle) = kube_mock::client();
    let server = tokio::spawn(async move {
        let (r, send) = next(&mut handle).await.expect("event");
        assert!(
            r.is("POST", "/apis/events.k8s.io/v1/namespaces/default/events"),
            "{r:?}"
        );
        assert_eq!(r.body["type"], "Warning");
        assert_eq!(r.body["reason"], "WrongVictim");
        assert_eq!(
            r.body["note"],
            "Mayastor removed the new replica; repairing"
        );
        assert_eq!(r.body["reportingController"], "couchestor-operator");
        assert_eq!(r.body["reportingInstance"], "op-0");
        assert_eq!(r.body["regarding"]["kind"], "VolumeMigration");
        assert_eq!(r.body["regarding"]["name"], "gold.pvc-1.cold.0");
        assert_eq!(r.body["regarding"]["uid"], "vm-uid");
        respond(send, 201, &r.body);
        // A failure to publish is not the executor's problem.
        let (_, send) = next(&mut handle).await.expect("event");
        respond(send, 500, &status(500, "InternalError"));
    });
    let sink = KubeEventSink::new(client, Some("op-0".into()));
    let vm = volume_migration();
    sink.emit(
        &vm,
        EventType::Warning,
        "WrongVictim",
        "Mayastor removed the new replica; repairing".into(),
    )
    .await;
    sink.emit(&vm, EventType::Normal, "Finished", "done".into())
        .await;
    server.await.expect("server");
}
