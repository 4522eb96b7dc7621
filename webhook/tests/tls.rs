//! The webhook over real TLS: a rustls client and `curl` trusting a test CA, against
//! the server on loopback. Allow, deny with field paths, JSONPatch applied, malformed
//! and oversized bodies, and certificate rotation while serving.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use base64::Engine;
use couchestor_webhook::{
    certs::Authority,
    index::{Change, ClassInfo, Index},
    server::{self, Options, TlsFiles},
};
use http_body_util::{BodyExt, Full};
use hyper::{Request, body::Bytes};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio_rustls::{TlsConnector, rustls};

struct Webhook {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    ca: Authority,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Webhook {
    async fn start(index: Index) -> Self {
        server::install_crypto_provider();
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = Authority::generate("test-ca-one").expect("CA");
        write_serving(&ca, dir.path());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let files = TlsFiles {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
        };
        let options = Options {
            reload_interval: Duration::from_millis(100),
            max_body_bytes: 1 << 20,
            ..Options::default()
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) = server::serve(listener, files, index, options, shutdown).await {
                panic!("webhook server failed: {e:#}");
            }
        });
        Self {
            addr,
            dir,
            ca,
            _stop: stop,
        }
    }

    fn ca_file(&self, name: &str, ca: &Authority) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, &ca.cert_pem).expect("write CA");
        path
    }
}

fn write_serving(ca: &Authority, dir: &Path) {
    let serving = ca.issue(&["localhost".to_owned()]).expect("serving cert");
    // Write the key first and the certificate last, as a rotation by hand might; the
    // server must keep serving the old pair until both match.
    std::fs::write(dir.join("tls.key"), &serving.key_pem).expect("key");
    std::fs::write(dir.join("tls.crt"), &serving.cert_pem).expect("cert");
}

/// POSTs `body` over TLS trusting only `ca_pem`; returns (status, body).
async fn post(
    addr: SocketAddr,
    ca_pem: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<(u16, Vec<u8>), String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from("localhost").map_err(|e| e.to_string())?;
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let request = Request::post(path)
        .header("host", "localhost")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, bytes.to_vec()))
}

use rustls::pki_types::pem::PemObject;

fn review(group: &str, version: &str, kind: &str, object: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "e2e-uid-42",
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": "x"},
            "operation": "CREATE",
            "name": object["metadata"]["name"],
            "object": object,
            "userInfo": {"username": "e2e"},
        }
    }))
    .expect("serialize")
}

fn policy(low: u32) -> Value {
    json!({
        "apiVersion": "couchestor.io/v1alpha1", "kind": "StoragePolicy", "metadata": {"name": "p"},
        "spec": {
            "storageClassName": "tiered",
            "hotPoolSelector": {"matchLabels": {"tier": "hot"}},
            "coldPoolSelector": {"matchLabels": {"tier": "cold"}},
            "lowWatermarkIOPS": low,
        }
    })
}

fn response_of(body: &[u8]) -> Value {
    let v: Value = serde_json::from_slice(body).expect("JSON response");
    assert_eq!(v["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(v["kind"], "AdmissionReview");
    v["response"].clone()
}

#[tokio::test]
async fn policies_are_allowed_or_denied_with_field_paths_over_tls() {
    let hook = Webhook::start(Index::synced()).await;
    let (status, body) = post(
        hook.addr,
        &hook.ca.cert_pem,
        "/validate",
        review("couchestor.io", "v1alpha1", "StoragePolicy", policy(100)),
    )
    .await
    .expect("request");
    assert_eq!(status, 200);
    let r = response_of(&body);
    assert_eq!(
        (r["uid"].as_str(), r["allowed"].as_bool()),
        (Some("e2e-uid-42"), Some(true))
    );

    let (_, body) = post(
        hook.addr,
        &hook.ca.cert_pem,
        "/validate",
        review("couchestor.io", "v1alpha1", "StoragePolicy", policy(9000)),
    )
    .await
    .expect("request");
    let r = response_of(&body);
    assert_eq!(r["allowed"], false);
    let message = r["status"]["message"].as_str().expect("message");
    assert!(
        message.contains("spec.lowWatermarkIOPS: 9000 must be below spec.highWatermarkIOPS (5000)"),
        "{message}"
    );
}

#[tokio::test]
async fn a_pvc_patch_applied_by_the_client_gives_the_annotated_pvc() {
    let index = Index::synced();
    index.apply(Change::Class(
        "tiered".into(),
        Some(ClassInfo {
            tiered: true,
            default_tier: Some("warm".into()),
        }),
    ));
    let hook = Webhook::start(index).await;
    let pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": "db"}, "spec": {"storageClassName": "tiered", "resources": {"requests": {"storage": "1Gi"}}}});
    let (status, body) = post(
        hook.addr,
        &hook.ca.cert_pem,
        "/mutate",
        review("", "v1", "PersistentVolumeClaim", pvc.clone()),
    )
    .await
    .expect("request");
    assert_eq!(status, 200);
    let r = response_of(&body);
    assert_eq!(r["patchType"], "JSONPatch");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(r["patch"].as_str().expect("base64 string"))
        .expect("base64");
    let patch: json_patch::Patch = serde_json::from_slice(&raw).expect("JSONPatch");
    let mut out = pvc.clone();
    json_patch::patch(&mut out, &patch).expect("applies");
    let mut expected = pvc;
    expected["metadata"]["annotations"] = json!({"couchestor.io/tier": "warm"});
    assert_eq!(out, expected);
}

#[tokio::test]
async fn malformed_and_oversized_bodies_get_clear_errors_and_the_server_keeps_serving() {
    let hook = Webhook::start(Index::synced()).await;
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (b"{this is not json".to_vec(), 400, "not JSON"),
        (
            br#"{"apiVersion":"v1","kind":"Pod"}"#.to_vec(),
            400,
            "expected apiVersion",
        ),
        (
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(),
            400,
            "no request",
        ),
        (vec![b' '; 2 << 20], 413, ""),
    ];
    for (body, code, needle) in cases {
        let (status, text) = post(hook.addr, &hook.ca.cert_pem, "/validate", body)
            .await
            .expect("request");
        let text = String::from_utf8_lossy(&text);
        assert_eq!(status, code, "{text}");
        assert!(text.contains(needle), "{needle:?} not in {text:?}");
    }
    let (status, _) = post(
        hook.addr,
        &hook.ca.cert_pem,
        "/validate",
        review("couchestor.io", "v1alpha1", "StoragePolicy", policy(1)),
    )
    .await
    .expect("still serving");
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_rotated_certificate_is_served_to_new_connections_without_a_restart() {
    let hook = Webhook::start(Index::synced()).await;
    let body = || review("couchestor.io", "v1alpha1", "StoragePolicy", policy(1));
    post(hook.addr, &hook.ca.cert_pem, "/validate", body())
        .await
        .expect("first CA works");

    let second = Authority::generate("test-ca-two").expect("second CA");
    write_serving(&second, hook.dir.path());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match post(hook.addr, &second.cert_pem, "/validate", body()).await {
            Ok((200, _)) => break,
            other if Instant::now() > deadline => panic!("new certificate never served: {other:?}"),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let old = post(hook.addr, &hook.ca.cert_pem, "/validate", body()).await;
    assert!(
        old.as_ref().is_err_and(|e| e.contains("TLS handshake")),
        "old CA still trusted: {old:?}"
    );
}

#[tokio::test]
async fn curl_trusting_the_test_ca_gets_an_admission_review_back() {
    let curl = std::process::Command::new("curl").arg("--version").output();
    assert!(
        curl.is_ok_and(|o| o.status.success()),
        "curl is needed for this test: apt-get install curl (./scripts/test installs it)"
    );
    let hook = Webhook::start(Index::synced()).await;
    let ca = hook.ca_file("ca.crt", &hook.ca);
    let body_file = hook.dir.path().join("body.json");
    std::fs::write(
        &body_file,
        review("couchestor.io", "v1alpha1", "StoragePolicy", policy(9000)),
    )
    .expect("body");
    let port = hook.addr.port();
    let out = tokio::process::Command::new("curl")
        .args([
            "--silent",
            "--show-error",
            "--fail-with-body",
            "--max-time",
            "10",
            "--cacert",
        ])
        .arg(&ca)
        .args([
            "--resolve",
            &format!("localhost:{port}:127.0.0.1"),
            "-H",
            "Content-Type: application/json",
            "--data-binary",
        ])
        .arg(format!("@{}", body_file.display()))
        .arg(format!("https://localhost:{port}/validate"))
        .output()
        .await
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = response_of(&out.stdout);
    assert_eq!(r["allowed"], false);
    assert!(
        r["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("spec.lowWatermarkIOPS"))
    );
    let health = tokio::process::Command::new("curl")
        .args(["--silent", "--max-time", "10", "--cacert"])
        .arg(&ca)
        .args([
            "--resolve",
            &format!("localhost:{port}:127.0.0.1"),
            &format!("https://localhost:{port}/healthz"),
        ])
        .output()
        .await
        .expect("run curl");
    assert_eq!(String::from_utf8_lossy(&health.stdout), "ok");
}
