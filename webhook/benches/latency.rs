//! Webhook latency under a steady 500 requests/s over TLS, with the webhook in its own
//! process (`couchestor-webhook serve --no-watch`) and this process as the load
//! generator (open loop: requests are sent on schedule whether or not earlier ones
//! finished, so queueing shows up in the tail).
//!
//! Run: `cargo bench -p couchestor-webhook --bench latency`
//! Env: `RATE` (default 500), `SECONDS` (default 10), `CONNECTIONS` (default 8).
//!
//! Baseline in the same run: `/healthz` over the same TLS connections at the same rate,
//! so the admission work is separated from TLS + HTTP cost on this noisy machine.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use couchestor_webhook::certs::Authority;
use http_body_util::{BodyExt, Full};
use hyper::{Request, body::Bytes};
use hyper_util::rt::TokioIo;
use tokio_rustls::{TlsConnector, rustls};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(port: u16, ca_pem: &str) -> Sender {
    use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("CA");
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    tcp.set_nodelay(true).expect("nodelay");
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("TLS");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .expect("HTTP/1.1");
    tokio::spawn(conn);
    sender
}

async fn run(
    label: &str,
    method: hyper::Method,
    path: &'static str,
    body: Bytes,
    port: u16,
    ca: &str,
) -> (f64, f64, f64) {
    let rate = env_or("RATE", 500);
    let seconds = env_or("SECONDS", 10);
    let connections = env_or("CONNECTIONS", 8) as usize;
    let mut senders = Vec::new();
    for _ in 0..connections {
        senders.push(Arc::new(tokio::sync::Mutex::new(connect(port, ca).await)));
    }
    let total = rate * seconds;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = start + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let sender = senders[i as usize % connections].clone();
        let body = body.clone();
        let method = method.clone();
        tasks.push(tokio::spawn(async move {
            let mut sender = sender.lock().await;
            sender.ready().await.expect("connection usable");
            let request = Request::builder()
                .method(method)
                .uri(path)
                .header("host", "localhost")
                .header("content-type", "application/json")
                .body(Full::new(body))
                .expect("request");
            let response = sender.send_request(request).await.expect("response");
            assert_eq!(response.status(), 200);
            response.into_body().collect().await.expect("body");
            // Latency from when the request was due, so waiting for a busy
            // connection counts (no coordinated omission).
            due.elapsed()
        }));
    }
    let mut latencies = Vec::with_capacity(tasks.len());
    for t in tasks {
        latencies.push(t.await.expect("task"));
    }
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p) as usize].as_secs_f64() * 1e3;
    let (p50, p99, max) = (pct(0.50), pct(0.99), pct(1.0));
    println!(
        "{label:<34} {total:>6} requests at {rate}/s: p50 {p50:.3} ms  p99 {p99:.3} ms  max {max:.3} ms"
    );
    (p50, p99, max)
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list; there is nothing to list.
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Authority::generate("bench-ca").expect("CA");
    let serving = ca.issue(&["localhost".to_owned()]).expect("cert");
    std::fs::write(dir.path().join("tls.crt"), &serving.cert_pem).expect("cert");
    std::fs::write(dir.path().join("tls.key"), &serving.key_pem).expect("key");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_couchestor-webhook"))
        .args([
            "serve",
            "--no-watch",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--tls-cert")
        .arg(dir.path().join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.path().join("tls.key"))
        .env("RUST_LOG", "error")
        .spawn()
        .expect("start couchestor-webhook");
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "webhook did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let review = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "bench", "kind": {"group": "couchestor.io", "version": "v1alpha1", "kind": "StoragePolicy"},
            "operation": "CREATE", "name": "p",
            "object": {"apiVersion": "couchestor.io/v1alpha1", "kind": "StoragePolicy", "metadata": {"name": "p"},
                "spec": {"storageClassName": "tiered",
                         "hotPoolSelector": {"matchLabels": {"tier": "hot"}},
                         "warmPoolSelector": {"matchLabels": {"tier": "warm"}},
                         "coldPoolSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["cold"]}]}}}
        }
    });
    let body = Bytes::from(serde_json::to_vec(&review).expect("JSON"));
    println!(
        "webhook latency, server in a separate process, TLS 1.3, {} keep-alive connections",
        env_or("CONNECTIONS", 8)
    );
    let (_, base_p99, _) = run(
        "baseline: GET /healthz",
        hyper::Method::GET,
        "/healthz",
        Bytes::new(),
        port,
        &ca.cert_pem,
    )
    .await;
    let (_, p99, _) = run(
        "POST /validate StoragePolicy",
        hyper::Method::POST,
        "/validate",
        body,
        port,
        &ca.cert_pem,
    )
    .await;
    println!(
        "p99 ratio /validate : /healthz = {:.2}",
        p99 / base_p99.max(1e-9)
    );
    server.kill().ok();
    server.wait().ok();
}
