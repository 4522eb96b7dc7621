//! The process over real HTTP: `/healthz`, `/readyz` and `/metrics` served by the
//! admin server (metric names and label sets asserted in the text exposition); the
//! whole operator (`run_with_client`) against a real Prometheus, the Mayastor
//! simulator and a mocked Kubernetes API — it takes the Lease, becomes ready once its
//! watches have listed, and on shutdown releases the Lease; the binary's command line.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use couchestor_core::{Tier, api::TierCounts};
use couchestor_operator::{
    admin::{self, Health, Peer},
    config::{Config, LogFormat},
    mayastor::sim::{Behaviour, Cluster, Sim},
    metrics::Metrics,
};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "support/kube.rs"]
mod kube_mock;
#[path = "support/prometheus.rs"]
mod prom;

/// A plain HTTP/1.1 GET; (status, body).
async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("write");
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.expect("read");
    let code = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

#[tokio::test]
async fn the_admin_endpoints_answer_over_http_with_the_documented_metrics() {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    metrics.migration_finished("Succeeded", Tier::Hot, Tier::Cold);
    metrics.set_active("gold", Some(2));
    metrics.set_volumes(
        "gold",
        &TierCounts {
            hot: 3,
            cold: 1,
            ..Default::default()
        },
    );
    metrics.reconcile_duration.observe(0.02);
    metrics.reconcile_error("prometheus");
    metrics.prometheus_query_duration.observe(0.005);
    let health = Arc::new(Health::new(Duration::from_secs(60)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(admin::serve(
        listener,
        health.clone(),
        Arc::new(registry),
        async {
            let _ = stopped.await;
        },
    ));

    assert_eq!(get(addr, "/healthz").await.0, 200);
    let (code, body) = get(addr, "/readyz").await;
    assert_eq!(code, 503);
    assert!(body.contains("prometheus has not answered"), "{body}");
    health.answered(Peer::Prometheus);
    health.answered(Peer::Mayastor);
    assert_eq!(get(addr, "/readyz").await.0, 200);
    health.set_leader(true);
    let (code, body) = get(addr, "/readyz").await;
    assert_eq!(code, 503, "a leader waits for its watches");
    assert!(body.contains("watches"), "{body}");

    let (code, text) = get(addr, "/metrics").await;
    assert_eq!(code, 200);
    for line in [
        r#"couchestor_migrations_total{result="Succeeded",from_tier="hot",to_tier="cold"} 1"#,
        "couchestor_active_migrations 2",
        r#"couchestor_volumes{policy="gold",tier="hot"} 3"#,
        r#"couchestor_volumes{policy="gold",tier="cold"} 1"#,
        "couchestor_reconcile_duration_seconds_count 1",
        r#"couchestor_reconcile_errors_total{error="prometheus"} 1"#,
        "couchestor_prometheus_query_duration_seconds_count 1",
        "# TYPE couchestor_reconcile_duration_seconds histogram",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert_eq!(get(addr, "/nothing").await.0, 404);
    let _ = stop.send(());
    server.await.expect("task").expect("server");
}

const LEASE: &str =
    "/apis/coordination.k8s.io/v1/namespaces/couchestor-system/leases/couchestor-operator";

fn empty_list(kind: &str) -> Value {
    json!({"apiVersion": "v1", "kind": format!("{kind}List"), "metadata": {"resourceVersion": "1"}, "items": []})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_leads_becomes_ready_and_releases_its_lease_on_shutdown() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = prom::free_port();
    let _prometheus = prom::start_prometheus(dir.path(), prom::free_port(), port);
    prom::wait_until_up(&format!("http://127.0.0.1:{port}")).await;
    let mut cluster = Cluster::new(Behaviour::default());
    cluster.add_node("n1");
    let sim = Sim::start(cluster).await.expect("simulator");

    let lease: Arc<Mutex<Option<Value>>> = Arc::default();
    let held = lease.clone();
    let (client, handle) = kube_mock::client();
    let (log, server) = kube_mock::serve(handle, move |seen| {
        let mut lease = held.lock().expect("lease");
        match (seen.method.as_str(), seen.path.as_str()) {
            ("GET", LEASE) => match &*lease {
                Some(l) => (200, l.clone()),
                None => (404, kube_mock::status(404, "NotFound")),
            },
            ("POST", p) if p.ends_with("/leases") || p == LEASE => {
                let mut l = seen.body.clone();
                l["metadata"]["resourceVersion"] = json!("1");
                *lease = Some(l.clone());
                (201, l)
            }
            ("PUT", LEASE) => {
                let mut l = seen.body.clone();
                let v: u64 = l["metadata"]["resourceVersion"]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                l["metadata"]["resourceVersion"] = json!((v + 1).to_string());
                *lease = Some(l.clone());
                (200, l)
            }
            // Watches: an empty list, then a watch that stays open without events.
            ("GET", _) if seen.query.contains("watch=true") => (0, Value::Null),
            ("GET", p) if p.ends_with("persistentvolumes") => (200, empty_list("PersistentVolume")),
            ("GET", p) if p.ends_with("persistentvolumeclaims") => {
                (200, empty_list("PersistentVolumeClaim"))
            }
            ("GET", p) if p.ends_with("storagepolicies") => (200, empty_list("StoragePolicy")),
            ("GET", p) if p.ends_with("volumemigrations") => (200, empty_list("VolumeMigration")),
            _ => (404, kube_mock::status(404, "NotFound")),
        }
    });

    let http_port = prom::free_port();
    let config = Config {
        prometheus_url: format!("http://127.0.0.1:{port}"),
        mayastor_url: sim.url(),
        http_addr: format!("127.0.0.1:{http_port}").parse().expect("addr"),
        lease_name: "couchestor-operator".into(),
        lease_namespace: "couchestor-system".into(),
        identity: "op-0".into(),
        log_format: LogFormat::Plain,
        lease_duration: Duration::from_secs(3),
        requeue_interval: Duration::from_secs(60),
        prometheus_timeout: Duration::from_secs(2),
        mayastor_timeout: Duration::from_secs(2),
        ready_max_age: Duration::from_secs(60),
        metric_read_ops: "volume_num_read_ops".into(),
        metric_write_ops: "volume_num_write_ops".into(),
        metric_volume_label: "pv_name".into(),
    };
    let addr = config.http_addr;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let operator = tokio::spawn(couchestor_operator::run_with_client(
        client,
        config,
        async {
            let _ = stopped.await;
        },
    ));

    // Ready: the lease taken, every watch listed, Prometheus and Mayastor answered.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = tokio::net::TcpStream::connect(addr).await;
        if answer.is_ok() && get(addr, "/readyz").await.0 == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never ready: {:?}\n{:#?}",
            get(addr, "/readyz").await,
            kube_mock::take(&log)
                .iter()
                .map(|r| format!("{} {}?{}", r.method, r.path, r.query))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        lease.lock().expect("lease").as_ref().expect("lease")["spec"]["holderIdentity"],
        "op-0"
    );
    assert_eq!(get(addr, "/healthz").await.0, 200);

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(20), operator)
        .await
        .expect("stops in time")
        .expect("task")
        .expect("a clean shutdown");
    let l = lease.lock().expect("lease").clone().expect("lease");
    assert!(
        l["spec"]["holderIdentity"].is_null(),
        "released on shutdown: {l:#}"
    );
    assert!(
        kube_mock::take(&log)
            .iter()
            .any(|r| r.is("PUT", LEASE) && r.body["spec"]["holderIdentity"].is_null()),
        "the release went over the wire"
    );
    server.abort();
}

#[test]
fn the_binary_names_the_missing_flags_and_documents_its_contract() {
    let bin = env!("CARGO_BIN_EXE_couchestor-operator");
    let out = std::process::Command::new(bin)
        .env_clear()
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for flag in [
        "--prometheus-url",
        "--mayastor-url",
        "--lease-namespace",
        "--identity",
    ] {
        assert!(err.contains(flag), "{flag} not named in:\n{err}");
    }
    let help = std::process::Command::new(bin)
        .arg("--help")
        .output()
        .expect("help");
    let help = String::from_utf8_lossy(&help.stdout);
    for (flag, env) in [
        ("--prometheus-url", "COUCHESTOR_PROMETHEUS_URL"),
        ("--mayastor-url", "COUCHESTOR_MAYASTOR_URL"),
        ("--http-addr", "COUCHESTOR_HTTP_ADDR"),
        ("--lease-name", "COUCHESTOR_LEASE_NAME"),
        ("--lease-namespace", "POD_NAMESPACE"),
        ("--identity", "POD_NAME"),
        ("--log-format", "COUCHESTOR_LOG_FORMAT"),
    ] {
        assert!(
            help.contains(flag) && help.contains(env),
            "{flag} / {env} in:\n{help}"
        );
    }
    assert!(help.contains("0.0.0.0:8080"));
}
