//! Property test over arbitrary bodies: the webhook never panics, answers only 200, 400
//! or 413, and every 200 is an AdmissionReview echoing the request's uid.

use axum::{body::Body, http::Request};
use couchestor_webhook::{
    index::Index,
    server::{Options, router},
};
use http_body_util::BodyExt;
use proptest::prelude::*;
use serde_json::{Value, json};
use tower::ServiceExt;

fn valid_review(uid: &str, kind: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "couchestor.io", "version": "v1alpha1", "kind": kind},
            "operation": "CREATE",
            "name": "x",
            "object": {"apiVersion": "couchestor.io/v1alpha1", "kind": kind, "metadata": {"name": "x"}, "spec": spec},
        }
    })
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("storageClassName".to_owned()),
                    Just("dataShards".to_owned()),
                    Just("lowWatermarkIOPS".to_owned()),
                    "[a-zA-Z]{1,8}"
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

async fn call(path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    let app = router(Index::synced(), &Options::default());
    let response = app
        .oneshot(
            Request::post(path)
                .header("content-type", "application/json")
                .body(Body::from(body))
                .expect("request"),
        )
        .await
        .expect("infallible");
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    (status, bytes)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn arbitrary_bytes_never_crash_the_webhook(body in proptest::collection::vec(any::<u8>(), 0..512), mutate in any::<bool>()) {
        let path = if mutate { "/mutate" } else { "/validate" };
        let (status, _) = runtime().block_on(call(path, body));
        prop_assert!(status == 200 || status == 400, "status {}", status);
    }

    #[test]
    fn arbitrary_specs_are_answered_with_the_uid_echoed(
        uid in "[a-z0-9-]{1,36}",
        kind in prop_oneof![Just("StoragePolicy"), Just("ErasureCodingPolicy"), Just("EcVolume"), Just("VolumeMigration"), Just("StorageNode"), Just("Other")],
        spec in arbitrary_json(),
    ) {
        let body = serde_json::to_vec(&valid_review(&uid, kind, spec)).expect("serialize");
        let (status, bytes) = runtime().block_on(call("/validate", body));
        prop_assert_eq!(status, 200);
        let v: Value = serde_json::from_slice(&bytes).expect("JSON");
        prop_assert_eq!(v["response"]["uid"].as_str(), Some(uid.as_str()));
        let allowed = v["response"]["allowed"].as_bool().expect("allowed is a bool");
        if !allowed {
            let message = v["response"]["status"]["message"].as_str().unwrap_or_default();
            prop_assert!(message.len() > 10, "terse denial: {:?}", message);
        }
    }
}
