//! A real Prometheus server (Debian package `prometheus`) on 127.0.0.1 scraping a test
//! exporter whose `volume_num_*_ops{pv_name}` counters grow at known rates.

// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use couchestor_core::tier::Load;
use couchestor_operator::prometheus::{MetricNames, Prometheus};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// (volume, reads/s, writes/s)
pub type Rate = (String, f64, f64);

/// Serves the counters in the Prometheus text format, growing linearly with time.
/// Returns the port.
pub async fn exporter(volumes: Vec<Rate>) -> u16 {
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
            let volumes = volumes.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let t = start.elapsed().as_secs_f64();
                let mut body = String::from(
                    "# TYPE volume_num_read_ops counter\n# TYPE volume_num_write_ops counter\n",
                );
                for (pv, r, w) in &volumes {
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

/// A running Prometheus, killed on drop.
pub struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port()
}

/// Starts Prometheus on `port` scraping the exporter every second. Fails with the
/// install step when the program is missing.
pub fn start_prometheus(dir: &Path, exporter_port: u16, port: u16) -> Server {
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

/// Waits (up to a minute longer than `window`) until every one of `expected` volumes
/// is known with a full `window` of history.
pub async fn wait_for_full_window(
    prom: &Prometheus,
    names: &MetricNames,
    window: Duration,
    expected: usize,
) -> BTreeMap<String, Load> {
    let deadline = Instant::now() + window + Duration::from_secs(60);
    loop {
        if let Ok(loads) = prom.volume_loads(names, window).await
            && loads.len() == expected
            && loads
                .values()
                .all(|l| matches!(l, Load::Known { history, .. } if *history >= window))
        {
            return loads;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never had a full window of data"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits (up to 30 s) until the Prometheus at `url` answers a query.
pub async fn wait_until_up(url: &str) {
    let client = Prometheus::new(url, Duration::from_secs(2)).expect("client");
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.instant("vector(1)").await.is_err() {
        assert!(
            Instant::now() < deadline,
            "Prometheus at {url} never answered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
