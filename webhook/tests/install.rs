//! Wire-level test of the in-cluster certificate install: a kube `Client` over
//! `tower_test::mock`, asserting every request's method, path, field manager,
//! content type and body.

use base64::Engine;
use couchestor_webhook::{
    certs::Authority,
    install::{Target, install},
};
use http::{Request, Response};
use http_body_util::BodyExt;
use kube::client::Body;
use serde_json::{Value, json};

async fn next_request(
    handle: &mut tower_test::mock::Handle<Request<Body>, Response<Body>>,
) -> (
    Request<Value>,
    tower_test::mock::SendResponse<Response<Body>>,
) {
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

fn respond(send: tower_test::mock::SendResponse<Response<Body>>, body: Value) {
    send.send_response(
        Response::builder()
            .status(200)
            .body(Body::from(serde_json::to_vec(&body).expect("json")))
            .expect("response"),
    );
}

fn webhook_config(kind: &str, name: &str, hooks: usize) -> Value {
    let webhooks: Vec<Value> = (0..hooks)
        .map(|i| json!({"name": format!("h{i}.couchestor.io"), "admissionReviewVersions": ["v1"], "sideEffects": "None", "clientConfig": {"service": {"name": "s", "namespace": "n"}}}))
        .collect();
    json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind, "metadata": {"name": name}, "webhooks": webhooks})
}

#[tokio::test]
async fn install_applies_the_secret_and_patches_every_ca_bundle() {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let ca = Authority::generate("wire-ca").expect("CA");
    let serving = ca
        .issue(&["couchestor-webhook.couchestor-system.svc".to_owned()])
        .expect("cert");
    let target = Target {
        namespace: "couchestor-system".into(),
        secret: "couchestor-webhook-tls".into(),
        validating: "couchestor-validating".into(),
        mutating: "couchestor-mutating".into(),
    };
    let expected_bundle = base64::engine::general_purpose::STANDARD.encode(&ca.cert_pem);
    let cert_pem = serving.cert_pem.clone();

    let server = tokio::spawn(async move {
        // 1. Server-side apply of the Secret under our field manager.
        let (req, send) = next_request(&mut handle).await;
        assert_eq!(req.method(), "PATCH");
        assert_eq!(
            req.uri().path(),
            "/api/v1/namespaces/couchestor-system/secrets/couchestor-webhook-tls"
        );
        let query = req.uri().query().unwrap_or_default();
        assert!(
            query.contains("fieldManager=couchestor-webhook") && query.contains("force=true"),
            "{query}"
        );
        assert_eq!(
            req.headers()["content-type"],
            "application/apply-patch+yaml"
        );
        let body = req.body();
        assert_eq!(body["type"], "kubernetes.io/tls");
        let tls_crt = base64::engine::general_purpose::STANDARD
            .decode(body["data"]["tls.crt"].as_str().expect("tls.crt"))
            .expect("b64");
        assert_eq!(String::from_utf8(tls_crt).expect("utf8"), cert_pem);
        assert!(body["data"]["tls.key"].is_string() && body["data"]["ca.crt"].is_string());
        respond(send, body.clone());

        // 2–3. Validating configuration: read, then one JSON-patch op per webhook.
        for (kind, plural, name, hooks) in [
            (
                "ValidatingWebhookConfiguration",
                "validatingwebhookconfigurations",
                "couchestor-validating",
                1usize,
            ),
            (
                "MutatingWebhookConfiguration",
                "mutatingwebhookconfigurations",
                "couchestor-mutating",
                2,
            ),
        ] {
            let (req, send) = next_request(&mut handle).await;
            assert_eq!(req.method(), "GET");
            assert_eq!(
                req.uri().path(),
                format!("/apis/admissionregistration.k8s.io/v1/{plural}/{name}")
            );
            respond(send, webhook_config(kind, name, hooks));

            let (req, send) = next_request(&mut handle).await;
            assert_eq!(req.method(), "PATCH");
            assert_eq!(
                req.uri().path(),
                format!("/apis/admissionregistration.k8s.io/v1/{plural}/{name}")
            );
            assert_eq!(req.headers()["content-type"], "application/json-patch+json");
            let ops = req.body().as_array().expect("a JSON patch").clone();
            assert_eq!(ops.len(), hooks);
            for (i, op) in ops.iter().enumerate() {
                assert_eq!(op["op"], "add");
                assert_eq!(op["path"], format!("/webhooks/{i}/clientConfig/caBundle"));
                assert_eq!(op["value"], expected_bundle);
            }
            respond(send, webhook_config(kind, name, hooks));
        }
    });

    install(client, &target, &ca, &serving)
        .await
        .expect("install succeeds");
    server.await.expect("every request was as expected");
}
