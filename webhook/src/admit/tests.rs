use base64::Engine;

use super::*;
use crate::index::{Change, ClassInfo, Index};
use crate::review::parse;

fn request(
    group: &str,
    version: &str,
    kind: &str,
    op: &str,
    name: &str,
    object: Option<Value>,
    old: Option<Value>,
) -> AdmissionRequest {
    let body = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "7d9b6c1e-uid",
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": "x"},
            "operation": op,
            "name": name,
            "object": object,
            "oldObject": old,
            "userInfo": {"username": "alice"},
        }
    });
    parse(&serde_json::to_vec(&body).expect("serialize")).expect("a well-formed review")
}

fn policy(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "couchestor.io/v1alpha1", "kind": "StoragePolicy", "metadata": {"name": name}, "spec": spec})
}

fn good_spec() -> Value {
    json!({
        "storageClassName": "tiered",
        "hotPoolSelector": {"matchLabels": {"tier": "hot"}},
        "coldPoolSelector": {"matchLabels": {"tier": "cold"}},
    })
}

/// Applies the response's base64 JSONPatch to `object`, as the API server does.
fn patched(response: &AdmissionResponse, object: &Value) -> Value {
    assert!(response.allowed, "{response:?}");
    let Some(b64) = &response.patch else {
        return object.clone();
    };
    assert_eq!(response.patch_type.as_deref(), Some("JSONPatch"));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("a JSONPatch");
    let mut out = object.clone();
    json_patch::patch(&mut out, &patch).expect("the patch applies");
    out
}

fn tiered_index(default_tier: Option<&str>) -> Snapshot {
    let index = Index::synced();
    index.apply(Change::Class(
        "tiered".into(),
        Some(ClassInfo {
            tiered: true,
            default_tier: default_tier.map(Into::into),
        }),
    ));
    index.apply(Change::Class(
        "plain".into(),
        Some(ClassInfo {
            tiered: false,
            default_tier: None,
        }),
    ));
    index.snapshot()
}

#[test]
fn a_valid_policy_is_allowed_and_the_uid_echoed() {
    let req = request(
        "couchestor.io",
        "v1alpha1",
        "StoragePolicy",
        "CREATE",
        "p",
        Some(policy("p", good_spec())),
        None,
    );
    let r = validate(&req, &Index::synced().snapshot());
    assert!(r.allowed, "{r:?}");
    assert_eq!(r.uid, "7d9b6c1e-uid");
}

#[test]
fn an_invalid_policy_is_denied_with_every_field_path() {
    let mut spec = good_spec();
    spec["lowWatermarkIOPS"] = json!(800);
    spec["warmPoolSelector"] = json!({"matchLabels": {"tier": "warm"}});
    spec["warmWatermarkIOPS"] = json!(600);
    spec["samplingWindow"] = json!("soon");
    let req = request(
        "couchestor.io",
        "v1alpha1",
        "StoragePolicy",
        "CREATE",
        "p",
        Some(policy("p", spec)),
        None,
    );
    let r = validate(&req, &Index::synced().snapshot());
    assert!(!r.allowed);
    let status = r.status.expect("status");
    assert_eq!(status.code, 422);
    for path in [
        "spec.lowWatermarkIOPS: 800 must be below spec.warmWatermarkIOPS (600)",
        "spec.samplingWindow",
    ] {
        assert!(
            status.message.contains(path),
            "{path} missing from {}",
            status.message
        );
    }
}

#[test]
fn overlapping_policies_and_dangling_ec_refs_are_denied_once_synced() {
    let index = Index::unsynced();
    let mut spec = good_spec();
    spec["ecPolicyRef"] = json!("nope");
    let req = request(
        "couchestor.io",
        "v1alpha1",
        "StoragePolicy",
        "CREATE",
        "b",
        Some(policy("b", spec)),
        None,
    );
    let r = validate(&req, &index.snapshot());
    assert_eq!(
        r.status.as_ref().map(|s| s.code),
        Some(503),
        "unsynced: retryable refusal"
    );

    let index = Index::synced();
    index.apply(Change::StoragePolicy(
        "a".into(),
        Some(serde_json::from_value(good_spec()).expect("spec")),
    ));
    let r = validate(&req, &index.snapshot());
    let message = r.status.expect("denied").message;
    assert!(
        message.contains("spec.volumeSelector: overlaps enabled StoragePolicy \"a\""),
        "{message}"
    );
    assert!(
        message.contains("spec.ecPolicyRef: ErasureCodingPolicy \"nope\" does not exist"),
        "{message}"
    );
}

#[test]
fn changing_the_layout_of_an_ec_policy_in_use_is_denied() {
    let ecp = |m: u32| json!({"apiVersion": "couchestor.io/v1alpha1", "kind": "ErasureCodingPolicy", "metadata": {"name": "ec"}, "spec": {"parityShards": m}});
    let index = Index::synced();
    index.apply(Change::EcVolume("v1".into(), Some("ec".into())));
    let req = request(
        "couchestor.io",
        "v1alpha1",
        "ErasureCodingPolicy",
        "UPDATE",
        "ec",
        Some(ecp(3)),
        Some(ecp(2)),
    );
    let r = validate(&req, &index.snapshot());
    assert!(
        r.status
            .expect("denied")
            .message
            .contains("spec.parityShards: cannot change from 2 to 3")
    );
    let delete = request(
        "couchestor.io",
        "v1alpha1",
        "ErasureCodingPolicy",
        "DELETE",
        "ec",
        None,
        Some(ecp(2)),
    );
    assert!(!validate(&delete, &index.snapshot()).allowed);
    let unrelated_delete = request(
        "couchestor.io",
        "v1alpha1",
        "StoragePolicy",
        "DELETE",
        "p",
        None,
        None,
    );
    assert!(validate(&unrelated_delete, &index.snapshot()).allowed);
}

#[test]
fn a_pvc_of_a_tiered_class_gets_the_initial_tier_annotation() {
    let pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": "db"}, "spec": {"storageClassName": "tiered"}});
    let req = request(
        "",
        "v1",
        "PersistentVolumeClaim",
        "CREATE",
        "data",
        Some(pvc.clone()),
        None,
    );
    let out = patched(&mutate(&req, &tiered_index(None)), &pvc);
    assert_eq!(out["metadata"]["annotations"]["couchestor.io/tier"], "hot");
    let out = patched(&mutate(&req, &tiered_index(Some("cold"))), &pvc);
    assert_eq!(
        out["metadata"]["annotations"]["couchestor.io/tier"], "cold",
        "the class parameter decides"
    );

    let mut annotated = pvc.clone();
    annotated["metadata"]["annotations"] = json!({"team": "x"});
    let req = request(
        "",
        "v1",
        "PersistentVolumeClaim",
        "CREATE",
        "data",
        Some(annotated.clone()),
        None,
    );
    let out = patched(&mutate(&req, &tiered_index(None)), &annotated);
    assert_eq!(
        out["metadata"]["annotations"],
        json!({"team": "x", "couchestor.io/tier": "hot"})
    );
}

#[test]
fn a_pvc_keeps_its_own_tier_and_an_invalid_one_is_denied() {
    let pvc = |tier: &str| json!({"metadata": {"name": "d", "annotations": {"couchestor.io/tier": tier}}, "spec": {"storageClassName": "tiered"}});
    let req = request(
        "",
        "v1",
        "PersistentVolumeClaim",
        "CREATE",
        "d",
        Some(pvc("warm")),
        None,
    );
    let r = mutate(&req, &tiered_index(None));
    assert!(r.allowed && r.patch.is_none(), "{r:?}");
    let req = request(
        "",
        "v1",
        "PersistentVolumeClaim",
        "CREATE",
        "d",
        Some(pvc("lukewarm")),
        None,
    );
    assert!(
        mutate(&req, &tiered_index(None))
            .status
            .expect("denied")
            .message
            .contains("not a tier")
    );
}

#[test]
fn pvcs_of_other_classes_are_left_alone() {
    for class in ["plain", "unknown"] {
        let pvc = json!({"metadata": {"name": "d"}, "spec": {"storageClassName": class}});
        let req = request(
            "",
            "v1",
            "PersistentVolumeClaim",
            "CREATE",
            "d",
            Some(pvc),
            None,
        );
        let r = mutate(&req, &tiered_index(None));
        assert!(r.allowed && r.patch.is_none(), "{class}: {r:?}");
    }
}

#[test]
fn a_tiered_class_gets_pool_has_topology_key_and_a_pinned_one_is_denied() {
    let class = |params: Value| json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "t", "annotations": {"couchestor.io/tiering": "enabled"}}, "provisioner": "io.openebs.csi-mayastor", "parameters": params});
    let plain = class(json!({"repl": "2"}));
    let req = request(
        "storage.k8s.io",
        "v1",
        "StorageClass",
        "CREATE",
        "t",
        Some(plain.clone()),
        None,
    );
    let out = patched(&mutate(&req, &Index::synced().snapshot()), &plain);
    assert_eq!(
        out["parameters"],
        json!({"repl": "2", "poolHasTopologyKey": "couchestor.io/tier"})
    );

    let pinned = class(json!({"poolAffinityTopologyLabel": "tier: hot"}));
    let req = request(
        "storage.k8s.io",
        "v1",
        "StorageClass",
        "CREATE",
        "t",
        Some(pinned),
        None,
    );
    let message = mutate(&req, &Index::synced().snapshot())
        .status
        .expect("denied")
        .message;
    assert!(message.contains("could never move"), "{message}");

    let mut untiered = plain.clone();
    untiered["metadata"]["annotations"] = json!({});
    let req = request(
        "storage.k8s.io",
        "v1",
        "StorageClass",
        "CREATE",
        "t",
        Some(untiered),
        None,
    );
    assert!(mutate(&req, &Index::synced().snapshot()).patch.is_none());
}

#[test]
fn wrong_kinds_and_missing_objects_get_a_clear_error() {
    let req = request(
        "apps",
        "v1",
        "Deployment",
        "CREATE",
        "d",
        Some(json!({})),
        None,
    );
    let r = validate(&req, &Index::synced().snapshot());
    assert!(
        r.status
            .expect("denied")
            .message
            .contains("not apps/v1 Deployment")
    );
    let req = request(
        "couchestor.io",
        "v1alpha1",
        "StoragePolicy",
        "CREATE",
        "p",
        None,
        None,
    );
    assert_eq!(
        validate(&req, &Index::synced().snapshot())
            .status
            .map(|s| s.code),
        Some(400)
    );
    let req = request(
        "couchestor.io",
        "v1alpha1",
        "StoragePolicy",
        "CREATE",
        "p",
        Some(json!({"spec": 5})),
        None,
    );
    let r = validate(&req, &Index::synced().snapshot());
    assert!(
        r.status
            .expect("denied")
            .message
            .contains("does not match the schema")
    );
}
