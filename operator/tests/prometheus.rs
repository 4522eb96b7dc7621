//! Against a real Prometheus server (Debian package `prometheus`) scraping a test
//! exporter whose `volume_num_*_ops{pv_name}` counters grow at known rates: the IOPS
//! computed by the operator's query are within ±10% of the truth; once Prometheus is
//! gone, every volume is unknown and the planner moves nothing.

use std::{
    collections::BTreeMap,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use couchestor_core::{
    Timestamp,
    plan::{ObservedVolume, plan},
    tier::Load,
};
use couchestor_operator::prometheus::{MetricNames, Prometheus, loads_or_unknown};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// (volume, reads/s, writes/s)
const VOLUMES: [(&str, f64, f64); 3] = [
    ("pvc-busy", 4000.0, 2000.0),
    ("pvc-warm", 100.0, 50.0),
    ("pvc-idle", 0.0, 0.0),
];

/// Serves the counters in the Prometheus text format, growing linearly with time.
async fn exporter() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind exporter");
    let port = listener.local_addr().expect("addr").port();
    let start = Instant::now();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let t = start.elapsed().as_secs_f64();
                let mut body = String::from(
                    "# TYPE volume_num_read_ops counter\n# TYPE volume_num_write_ops counter\n",
                );
                for (pv, r, w) in VOLUMES {
                    // A starting offset, as a long-running exporter has.
                    body.push_str(&format!(
                        "volume_num_read_ops{{pv_name=\"{pv}\"}} {}\n",
                        1_000_000.0 + r * t
                    ));
                    body.push_str(&format!(
                        "volume_num_write_ops{{pv_name=\"{pv}\"}} {}\n",
                        500_000.0 + w * t
                    ));
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    port
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port()
}

fn start_prometheus(dir: &std::path::Path, exporter_port: u16, port: u16) -> Server {
    let found = Command::new("prometheus")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    assert!(
        found.is_ok_and(|s| s.success()),
        "the prometheus server is needed: apt-get install prometheus (./scripts/test installs it)"
    );
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: mayastor\n    static_configs:\n      - targets: ['127.0.0.1:{exporter_port}']\n"
        ),
    )
    .expect("config");
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    Server(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iops_from_a_real_prometheus_are_within_ten_percent_and_vanish_to_unknown() {
    let dir = tempfile::tempdir().expect("temp dir");
    let exporter_port = exporter().await;
    let port = free_port();
    let server = start_prometheus(dir.path(), exporter_port, port);
    let prom = Prometheus::new(&format!("http://127.0.0.1:{port}"), Duration::from_secs(5))
        .expect("client");
    let names = MetricNames::default();
    let window = Duration::from_secs(10);

    // Wait for a full window of scrapes: every volume known, with full history.
    let deadline = Instant::now() + Duration::from_secs(60);
    let loads = loop {
        if let Ok(loads) = prom.volume_loads(&names, window).await
            && loads.len() == VOLUMES.len()
            && loads
                .values()
                .all(|l| matches!(l, Load::Known { history, .. } if *history >= window))
        {
            break loads;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never had a full window of data"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for (pv, r, w) in VOLUMES {
        let Load::Known { iops, .. } = loads[pv] else {
            panic!("{pv} unknown")
        };
        let truth = r + w;
        assert!(
            (iops - truth).abs() <= truth * 0.10 + 0.5,
            "{pv}: measured {iops:.1} IOPS, truth {truth}"
        );
    }

    // Prometheus goes away: every volume becomes unknown, and nothing moves.
    drop(server);
    let answer = prom.volume_loads(&names, window).await;
    assert!(answer.is_err(), "a stopped Prometheus must not answer");
    let volumes: Vec<String> = VOLUMES.iter().map(|(pv, ..)| (*pv).to_owned()).collect();
    let (loads, why) = loads_or_unknown(answer, &volumes);
    let why = why.expect("a reason for MetricsAvailable=False");
    assert!(
        why.contains("unreachable") || why.contains("did not answer"),
        "{why}"
    );
    assert!(loads.values().all(|l| *l == Load::Unknown));

    let policy = serde_json::from_value(serde_json::json!({
        "storageClassName": "tiered",
        "hotPoolSelector": {"matchLabels": {"tier": "hot"}},
        "coldPoolSelector": {"matchLabels": {"tier": "cold"}},
    }))
    .expect("policy");
    let observed: Vec<ObservedVolume> = volumes
        .iter()
        .map(|v| ObservedVolume {
            name: v.clone(),
            replica_pools: vec![BTreeMap::from([("tier".to_owned(), "hot".to_owned())])],
            load: loads[v],
            last_moved: None,
            recorded_tier: None,
        })
        .collect();
    let p = plan(&policy, &observed, &[], Timestamp::now()).expect("valid policy");
    assert!(
        p.moves.is_empty(),
        "unknown metrics must never move a volume: {:?}",
        p.moves
    );
}
