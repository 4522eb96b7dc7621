//! Against a real Prometheus server (Debian package `prometheus`) scraping a test
//! exporter whose `volume_num_*_ops{pv_name}` counters grow at known rates: the IOPS
//! computed by the operator's query are within ±10% of the truth; once Prometheus is
//! gone, every volume is unknown and the planner moves nothing.

use std::{collections::BTreeMap, time::Duration};

use couchestor_core::{
    Timestamp,
    plan::{ObservedVolume, plan},
    tier::Load,
};
use couchestor_operator::prometheus::{MetricNames, Prometheus, loads_or_unknown};

#[path = "support/prometheus.rs"]
mod support;

use support::{exporter, free_port, start_prometheus, wait_for_full_window};

/// (volume, reads/s, writes/s)
const VOLUMES: [(&str, f64, f64); 3] = [
    ("pvc-busy", 4000.0, 2000.0),
    ("pvc-warm", 100.0, 50.0),
    ("pvc-idle", 0.0, 0.0),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iops_from_a_real_prometheus_are_within_ten_percent_and_vanish_to_unknown() {
    let dir = tempfile::tempdir().expect("temp dir");
    let exporter_port = exporter(
        VOLUMES
            .iter()
            .map(|(pv, r, w)| ((*pv).to_owned(), *r, *w))
            .collect(),
    )
    .await;
    let port = free_port();
    let server = start_prometheus(dir.path(), exporter_port, port);
    let prom = Prometheus::new(&format!("http://127.0.0.1:{port}"), Duration::from_secs(5))
        .expect("client");
    let names = MetricNames::default();
    // 20 scrapes: a late or missed scrape at either edge (Prometheus starved of CPU)
    // shifts rate()'s extrapolation by a few percent, well inside the ±10 %.
    let window = Duration::from_secs(20);

    // Wait for a full window of scrapes: every volume known, with full history.
    let loads = wait_for_full_window(&prom, &names, window, VOLUMES.len()).await;
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
