//! Wire-level test of `KubeCluster`, the production `Cluster`: a kube `Client` over
//! `tower_test::mock`, asserting each request's method, path, field manager, content
//! type and body, and how API answers (found, 404, 500) become results.

use couchestor_core::names;
use couchestor_csi_sidecar::cluster::{Cluster, ClusterError, Deleted, KubeCluster};
use http::{Request, Response};
use http_body_util::BodyExt;
use kube::client::Body;
use serde_json::{Value, json};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;
type Send = tower_test::mock::SendResponse<Response<Body>>;

fn cluster() -> (KubeCluster, Handle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (
        KubeCluster::new(kube::Client::new(service, "default")),
        handle,
    )
}

async fn next(handle: &mut Handle) -> (Request<Value>, Send) {
    let (request, send) = handle.next_request().await.expect("a request");
    let (parts, body) = request.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("JSON body")
    };
    (Request::from_parts(parts, value), send)
}

fn respond(send: Send, code: u16, body: Value) {
    send.send_response(
        Response::builder()
            .status(code)
            .body(Body::from(serde_json::to_vec(&body).expect("json")))
            .expect("response"),
    );
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "reason": reason, "code": code, "message": format!("{reason} (test)")})
}

fn ec_volume(name: &str, volume_id: &str, annotations: Value) -> Value {
    json!({
        "apiVersion": "couchestor.io/v1alpha1", "kind": "EcVolume",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "sourcePersistentVolume": format!("pvc-{volume_id}"),
            "sourceVolumeId": volume_id,
            "sizeBytes": 1073741824u64,
            "ecPolicyRef": "k4m2",
            "layout": {"dataShards": 4, "parityShards": 2, "stripeSizeBytes": 1048576, "codecId": "rs-gf8-isal-v1"}
        }
    })
}

#[tokio::test]
async fn pvc_annotations_are_read_from_the_pvc_and_a_missing_pvc_is_not_found() {
    let (cluster, mut handle) = cluster();
    let server = tokio::spawn(async move {
        let (req, send) = next(&mut handle).await;
        assert_eq!(req.method(), "GET");
        assert_eq!(
            req.uri().path(),
            "/api/v1/namespaces/shop/persistentvolumeclaims/data"
        );
        respond(
            send,
            200,
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data", "namespace": "shop", "annotations": {names::TIER: "cold"}}}),
        );
        let (req, send) = next(&mut handle).await;
        assert_eq!(
            req.uri().path(),
            "/api/v1/namespaces/shop/persistentvolumeclaims/gone"
        );
        respond(send, 404, status(404, "NotFound"));
        let (_, send) = next(&mut handle).await;
        respond(send, 500, status(500, "InternalError"));
    });
    let annotations = cluster.pvc_annotations("shop", "data").await.expect("read");
    assert_eq!(annotations[names::TIER], "cold");
    let e = cluster
        .pvc_annotations("shop", "gone")
        .await
        .expect_err("missing");
    assert!(matches!(e, ClusterError::NotFound { .. }), "{e}");
    assert!(e.to_string().contains("shop/gone"), "{e}");
    let e = cluster
        .pvc_annotations("shop", "data")
        .await
        .expect_err("500");
    assert!(matches!(e, ClusterError::Api { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("reading PersistentVolumeClaim shop/data"),
        "{e}"
    );
    server.await.expect("server");
}

#[tokio::test]
async fn the_archive_is_the_pv_annotation_or_without_a_pv_the_ec_volume_of_that_source() {
    let (cluster, mut handle) = cluster();
    let server = tokio::spawn(async move {
        let (req, send) = next(&mut handle).await;
        assert_eq!(req.method(), "GET");
        assert_eq!(req.uri().path(), "/api/v1/persistentvolumes/pvc-u1");
        respond(
            send,
            200,
            json!({"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": "pvc-u1", "annotations": {names::ARCHIVED: "ecv-u1"}}}),
        );
        let (req, send) = next(&mut handle).await;
        assert_eq!(req.uri().path(), "/api/v1/persistentvolumes/pvc-u2");
        respond(
            send,
            200,
            json!({"apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": "pvc-u2"}}),
        );
        let (req, send) = next(&mut handle).await;
        assert_eq!(req.uri().path(), "/api/v1/persistentvolumes/pvc-u3");
        respond(send, 404, status(404, "NotFound"));
        let (req, send) = next(&mut handle).await;
        assert_eq!(req.method(), "GET");
        assert_eq!(req.uri().path(), "/apis/couchestor.io/v1alpha1/ecvolumes");
        respond(
            send,
            200,
            json!({"apiVersion": "couchestor.io/v1alpha1", "kind": "EcVolumeList",
            "metadata": {}, "items": [ec_volume("other", "u9", json!({})), ec_volume("ecv-u3", "u3", json!({}))]}),
        );
    });
    assert_eq!(
        cluster.archive_of("u1", "pvc-u1").await.expect("read"),
        Some("ecv-u1".into())
    );
    assert_eq!(
        cluster.archive_of("u2", "pvc-u2").await.expect("read"),
        None
    );
    assert_eq!(
        cluster.archive_of("u3", "pvc-u3").await.expect("read"),
        Some("ecv-u3".into())
    );
    server.await.expect("server");
}

#[tokio::test]
async fn a_rehydration_request_is_a_merge_patch_under_our_field_manager_and_only_once() {
    let (cluster, mut handle) = cluster();
    let server = tokio::spawn(async move {
        let (req, send) = next(&mut handle).await;
        assert_eq!(req.method(), "GET");
        assert_eq!(
            req.uri().path(),
            "/apis/couchestor.io/v1alpha1/ecvolumes/ecv-1"
        );
        respond(send, 200, ec_volume("ecv-1", "u1", json!({})));
        let (req, send) = next(&mut handle).await;
        assert_eq!(req.method(), "PATCH");
        assert_eq!(
            req.uri().path(),
            "/apis/couchestor.io/v1alpha1/ecvolumes/ecv-1"
        );
        let query = req.uri().query().unwrap_or_default();
        assert!(
            query.contains("fieldManager=couchestor-csi-sidecar"),
            "{query}"
        );
        assert_eq!(
            req.headers()["content-type"],
            "application/merge-patch+json"
        );
        let annotations = req.body()["metadata"]["annotations"]
            .as_object()
            .expect("annotations");
        assert_eq!(annotations.len(), 1);
        let when = annotations[names::REHYDRATE_REQUESTED]
            .as_str()
            .expect("a time");
        assert!(when.parse::<couchestor_core::Timestamp>().is_ok(), "{when}");
        respond(
            send,
            200,
            ec_volume("ecv-1", "u1", json!({names::REHYDRATE_REQUESTED: when})),
        );
        // Second request: already annotated, so only a read.
        let (req, send) = next(&mut handle).await;
        assert_eq!(req.method(), "GET");
        respond(
            send,
            200,
            ec_volume(
                "ecv-1",
                "u1",
                json!({names::REHYDRATE_REQUESTED: "earlier"}),
            ),
        );
        // Missing EcVolume.
        let (_, send) = next(&mut handle).await;
        respond(send, 404, status(404, "NotFound"));
    });
    cluster
        .request_rehydration("ecv-1", "node-a")
        .await
        .expect("requested");
    cluster
        .request_rehydration("ecv-1", "node-b")
        .await
        .expect("already requested");
    let e = cluster
        .request_rehydration("ecv-1", "node-a")
        .await
        .expect_err("gone");
    assert!(
        matches!(
            e,
            ClusterError::NotFound {
                kind: "EcVolume",
                ..
            }
        ),
        "{e}"
    );
    server.await.expect("server");
}

#[tokio::test]
async fn deleting_an_ec_volume_treats_not_found_as_done_and_reports_other_errors() {
    let (cluster, mut handle) = cluster();
    let server = tokio::spawn(async move {
        let (req, send) = next(&mut handle).await;
        assert_eq!(req.method(), "DELETE");
        assert_eq!(
            req.uri().path(),
            "/apis/couchestor.io/v1alpha1/ecvolumes/ecv-1"
        );
        respond(send, 200, ec_volume("ecv-1", "u1", json!({})));
        let (_, send) = next(&mut handle).await;
        respond(send, 404, status(404, "NotFound"));
        let (_, send) = next(&mut handle).await;
        respond(send, 403, status(403, "Forbidden"));
    });
    assert_eq!(
        cluster.delete_ec_volume("ecv-1").await.expect("deleted"),
        Deleted::Now
    );
    assert_eq!(
        cluster.delete_ec_volume("ecv-1").await.expect("gone"),
        Deleted::AlreadyGone
    );
    let e = cluster
        .delete_ec_volume("ecv-1")
        .await
        .expect_err("forbidden");
    assert!(e.to_string().contains("deleting EcVolume ecv-1"), "{e}");
    server.await.expect("server");
}
