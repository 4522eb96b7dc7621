//! The StoragePolicy controller end to end, with everything real that exists here: a
//! real Prometheus (Debian package) scraping a test exporter, the Mayastor simulator
//! over HTTP, and the Kubernetes API at the wire level (a kube `Client` over
//! `tower_test::mock`, every request captured and asserted: method, path, field
//! manager, content type, body).
//!
//! - losing Prometheus ⇒ `MetricsAvailable=False`, a Warning Event, zero migrations;
//! - UC-006 dry run ⇒ `plannedMigrations`, no migration created;
//! - UC-010 disabling mid-way ⇒ phase `Disabled`, nothing started, nothing deleted,
//!   the move in flight finishes into the history.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use couchestor_core::{StoragePolicy, names};
use couchestor_operator::{
    admin::Health,
    controller::{Context, Settings, Written, reconcile},
    kube_store::reporter,
    mayastor::{
        Config as MayastorConfig, Mayastor,
        sim::{Behaviour, Cluster, Sim, VolumeSetup},
    },
    metrics::Metrics,
    prometheus::{MetricNames, Prometheus},
};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::runtime::{events::Recorder, reflector, watcher};
use serde_json::{Value, json};

#[path = "support/kube.rs"]
mod kube_mock;
#[path = "support/mayastor.rs"]
mod ms;
#[path = "support/prometheus.rs"]
mod prom;

use kube_mock::Seen;

const BUSY: &str = "0b4a2c9e-1111-4c6a-9d7e-2f9a1b0c4d11";
const IDLE: &str = "0b4a2c9e-2222-4c6a-9d7e-2f9a1b0c4d11";
const STEADY: &str = "0b4a2c9e-3333-4c6a-9d7e-2f9a1b0c4d11";
const OTHER_CLASS: &str = "0b4a2c9e-4444-4c6a-9d7e-2f9a1b0c4d11";
/// The shortest `samplingWindow` validation accepts.
const WINDOW: Duration = Duration::from_secs(60);
const VMS: &str = "/apis/couchestor.io/v1alpha1/volumemigrations";
const STATUS: &str = "/apis/couchestor.io/v1alpha1/storagepolicies/gold/status";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/default/events";

fn pv(uuid: &str) -> String {
    format!("pvc-{uuid}")
}

/// Two hot pools, two cold pools. BUSY sits on cold at 6000 IOPS (must go hot), IDLE
/// on hot at 0 IOPS (must go cold), STEADY on hot at 3000 IOPS (stays).
fn cluster() -> Cluster {
    let mut c = Cluster::new(Behaviour::default());
    for n in ["n1", "n2", "n3", "n4"] {
        c.add_node(n);
    }
    let tier = |t| [ms::CREATED_BY, ("tier", t)];
    c.add_pool("n1-hot", "n1", 100 * ms::GIB, &tier("hot"))
        .add_pool("n2-hot", "n2", 100 * ms::GIB, &tier("hot"))
        .add_pool("n3-cold", "n3", 100 * ms::GIB, &tier("cold"))
        .add_pool("n4-cold", "n4", 100 * ms::GIB, &tier("cold"));
    for (uuid, pools) in [
        (BUSY, ["n3-cold", "n4-cold"]),
        (IDLE, ["n1-hot", "n2-hot"]),
        (STEADY, ["n1-hot", "n2-hot"]),
        (OTHER_CLASS, ["n3-cold", "n4-cold"]),
    ] {
        c.add_volume(VolumeSetup {
            uuid: uuid.to_owned(),
            size: ms::GIB,
            thin: false,
            inclusion: ms::tiered_inclusion(),
            target: None,
            pools: pools.iter().map(|p| (*p).to_owned()).collect(),
        })
        .expect("volume");
    }
    c
}

fn rates() -> Vec<prom::Rate> {
    vec![
        (pv(BUSY), 4000.0, 2000.0),
        (pv(IDLE), 0.0, 0.0),
        (pv(STEADY), 2000.0, 1000.0),
        (pv(OTHER_CLASS), 9000.0, 0.0),
    ]
}

fn persistent_volume(uuid: &str, class: &str) -> PersistentVolume {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": pv(uuid)},
        "spec": {
            "storageClassName": class,
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "csi": {"driver": "io.openebs.csi-mayastor", "volumeHandle": uuid},
            "claimRef": {"namespace": "shop", "name": format!("data-{}", &uuid[9..13])}
        },
        "status": {"phase": "Bound"}
    }))
    .expect("pv")
}

fn policy(extra: Value) -> StoragePolicy {
    let mut spec = json!({
        "storageClassName": "tiered",
        "hotPoolSelector": {"matchLabels": {"tier": "hot"}},
        "coldPoolSelector": {"matchLabels": {"tier": "cold"}},
        "samplingWindow": "1m",
        "cooldownPeriod": "1m",
    });
    if let (Some(o), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "couchestor.io/v1alpha1", "kind": "StoragePolicy",
        "metadata": {"name": "gold", "uid": "9d1c-policy-uid", "generation": 1},
        "spec": spec,
    }))
    .expect("policy")
}

/// A running migration as the executor leaves it, or a finished one.
fn migration(volume_uuid: &str, from: &str, to: &str, phase: &str) -> Value {
    let mut status = json!({"phase": phase, "startTime": "2026-01-01T00:00:00Z"});
    if phase == "Succeeded" {
        status["completionTime"] = json!("2026-01-01T00:05:00Z");
    }
    json!({
        "apiVersion": "couchestor.io/v1alpha1", "kind": "VolumeMigration",
        "metadata": {"name": format!("gold.{}.{to}.0", pv(volume_uuid)), "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"policyRef": "gold", "volumeName": pv(volume_uuid), "volumeId": volume_uuid,
                 "fromTier": from, "toTier": to, "timeout": "30m"},
        "status": status,
    })
}

struct Lab {
    ctx: Arc<Context>,
    log: Arc<std::sync::Mutex<Vec<Seen>>>,
    /// The VolumeMigrations the mock API server lists.
    migrations: Arc<std::sync::Mutex<Vec<Value>>>,
    sim: Sim,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The controller's context over the mock API server, the simulator and `prometheus`.
async fn lab(prometheus_url: &str) -> Lab {
    let (client, handle) = kube_mock::client();
    let migrations: Arc<std::sync::Mutex<Vec<Value>>> = Arc::default();
    let listed = migrations.clone();
    let (log, server) = kube_mock::serve(handle, move |seen| match seen.method.as_str() {
        "GET" if seen.path == VMS => (
            200,
            json!({"apiVersion": "couchestor.io/v1alpha1", "kind": "VolumeMigrationList",
                   "metadata": {"resourceVersion": "1"}, "items": *listed.lock().expect("list")}),
        ),
        "POST" => {
            let mut created = seen.body.clone();
            created["metadata"]["resourceVersion"] = json!("2");
            if seen.path == VMS {
                // Like an API server: listed from now on.
                listed.lock().expect("list").push(created.clone());
            }
            (201, created)
        }
        "PATCH" if seen.path == STATUS => {
            let mut p = serde_json::to_value(policy(json!({}))).expect("policy");
            p["status"] = seen.body["status"].clone();
            (200, p)
        }
        "PATCH" => (200, seen.body.clone()),
        _ => (404, kube_mock::status(404, "NotFound")),
    });
    let sim = Sim::start(cluster()).await.expect("simulator");
    let (pvs, mut pv_writer) = reflector::store::<PersistentVolume>();
    let (pvcs, mut pvc_writer) = reflector::store::<PersistentVolumeClaim>();
    for uuid in [BUSY, IDLE, STEADY] {
        pv_writer.apply_watcher_event(&watcher::Event::Apply(persistent_volume(uuid, "tiered")));
    }
    pv_writer.apply_watcher_event(&watcher::Event::Apply(persistent_volume(
        OTHER_CLASS,
        "plain",
    )));
    pvc_writer.apply_watcher_event(&watcher::Event::InitDone);
    let mut registry = prometheus_client::registry::Registry::default();
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter(Some("op-0".into()))),
        client,
        prometheus: Prometheus::new(prometheus_url, Duration::from_secs(3)).expect("prometheus"),
        mayastor: Mayastor::new(MayastorConfig::new(sim.url())).expect("mayastor"),
        metrics: Arc::new(Metrics::register(&mut registry)),
        health: Arc::new(Health::new(Duration::from_secs(60))),
        pvs,
        pvcs,
        settings: Settings {
            metric_names: MetricNames::default(),
            ..Settings::default()
        },
        written: Written::default(),
    });
    Lab {
        ctx,
        log,
        migrations,
        sim,
        server,
    }
}

impl Lab {
    /// One reconcile; the requests it made.
    async fn reconcile(&self, policy: &StoragePolicy) -> Vec<Seen> {
        reconcile(Arc::new(policy.clone()), self.ctx.clone())
            .await
            .expect("reconcile");
        kube_mock::take(&self.log)
    }
}

/// The single status apply among `requests`, checked for the wire contract.
fn status_apply(requests: &[Seen]) -> Value {
    let applies: Vec<&Seen> = requests.iter().filter(|r| r.is("PATCH", STATUS)).collect();
    assert_eq!(
        applies.len(),
        1,
        "one status write per reconcile: {requests:#?}"
    );
    let a = applies[0];
    assert!(
        a.query
            .contains(&format!("fieldManager={}", names::MANAGER_OPERATOR)),
        "{}",
        a.query
    );
    assert!(a.query.contains("force=true"), "{}", a.query);
    assert_eq!(a.content_type, "application/apply-patch+yaml");
    assert_eq!(a.body["apiVersion"], "couchestor.io/v1alpha1");
    assert_eq!(a.body["kind"], "StoragePolicy");
    assert!(a.body.get("spec").is_none(), "only status is applied");
    a.body["status"].clone()
}

fn created(requests: &[Seen]) -> Vec<&Seen> {
    requests.iter().filter(|r| r.is("POST", VMS)).collect()
}

fn events(requests: &[Seen]) -> Vec<(String, String)> {
    requests
        .iter()
        .filter(|r| r.path == EVENTS || r.path.starts_with(&format!("{EVENTS}/")))
        .map(|r| {
            (
                r.body["type"].as_str().unwrap_or_default().to_owned(),
                r.body["reason"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {status:#}"))
}

/// Starts the exporter and a real Prometheus, and waits for a full window.
async fn prometheus(dir: &std::path::Path) -> (prom::Server, String) {
    let exporter_port = prom::exporter(rates()).await;
    let port = prom::free_port();
    let server = prom::start_prometheus(dir, exporter_port, port);
    let url = format!("http://127.0.0.1:{port}");
    let client = Prometheus::new(&url, Duration::from_secs(5)).expect("client");
    prom::wait_for_full_window(&client, &MetricNames::default(), WINDOW, rates().len()).await;
    (server, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moves_follow_real_prometheus_loads_and_stop_with_metrics_available_false_when_it_goes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, url) = prometheus(dir.path()).await;
    let lab = lab(&url).await;
    let gold = policy(json!({}));

    let requests = lab.reconcile(&gold).await;
    assert_eq!(requests[0].method, "GET");
    assert_eq!(requests[0].path, VMS);
    assert!(
        requests[0]
            .query
            .contains("labelSelector=couchestor.io%2Fpolicy%3Dgold"),
        "{}",
        requests[0].query
    );
    let made = created(&requests);
    let mut moves: Vec<(String, String, String)> = made
        .iter()
        .map(|r| {
            let s = &r.body["spec"];
            (
                s["volumeName"].as_str().unwrap_or_default().to_owned(),
                s["fromTier"].as_str().unwrap_or_default().to_owned(),
                s["toTier"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    moves.sort();
    let mut want = vec![
        (pv(BUSY), "cold".to_owned(), "hot".to_owned()),
        (pv(IDLE), "hot".to_owned(), "cold".to_owned()),
    ];
    want.sort();
    assert_eq!(
        moves, want,
        "exactly the misplaced volumes of this class move"
    );
    let busy = made
        .iter()
        .find(|r| r.body["spec"]["volumeName"] == pv(BUSY))
        .expect("busy move");
    assert!(
        busy.query.contains("fieldManager=couchestor-operator"),
        "{}",
        busy.query
    );
    assert_eq!(busy.body["apiVersion"], "couchestor.io/v1alpha1");
    assert_eq!(busy.body["kind"], "VolumeMigration");
    assert_eq!(
        busy.body["metadata"]["name"],
        format!("gold.{}.hot.0", pv(BUSY))
    );
    assert_eq!(
        busy.body["metadata"]["labels"]["couchestor.io/policy"],
        "gold"
    );
    let owner = &busy.body["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "StoragePolicy");
    assert_eq!(owner["name"], "gold");
    assert_eq!(owner["uid"], "9d1c-policy-uid");
    assert_eq!(owner["controller"], true);
    assert_eq!(
        busy.body["metadata"]["finalizers"],
        json!(["couchestor.io/migration"]),
        "held until the executor has finished the move"
    );
    assert_eq!(busy.body["spec"]["volumeId"], BUSY);
    assert_eq!(busy.body["spec"]["policyRef"], "gold");
    assert_eq!(busy.body["spec"]["timeout"], "30m");

    let status = status_apply(&requests);
    assert_eq!(status["phase"], "Active");
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(condition(&status, "MetricsAvailable")["status"], "True");
    assert_eq!(condition(&status, "MayastorAvailable")["status"], "True");
    assert_eq!(status["activeMigrations"], 2);
    assert_eq!(status["totalMigrations"], 2);
    assert_eq!(status["volumes"]["hot"], 2, "IDLE and STEADY");
    assert_eq!(
        status["volumes"]["cold"], 1,
        "BUSY; OTHER_CLASS is not watched"
    );
    let evs = events(&requests);
    assert_eq!(
        evs.iter()
            .filter(|(t, r)| t == "Normal" && r == "MigrationCreated")
            .count(),
        2,
        "{evs:?}"
    );

    // Prometheus goes away: no move may start, even for volumes that are misplaced.
    // The policy is passed as the watch cache may still hold it: without the status
    // just written. The counters must not go back all the same.
    drop(server);
    let requests = lab.reconcile(&gold).await;
    assert!(
        created(&requests).is_empty(),
        "no migration without metrics"
    );
    let status = status_apply(&requests);
    let metrics = condition(&status, "MetricsAvailable");
    assert_eq!(metrics["status"], "False");
    assert_eq!(metrics["reason"], "QueryFailed");
    assert_eq!(condition(&status, "Ready")["reason"], "MetricsUnavailable");
    assert_eq!(
        status["totalMigrations"], 2,
        "counters never go back, even from a stale cache"
    );
    assert_eq!(status["activeMigrations"], 2);
    assert!(
        events(&requests).contains(&("Warning".to_owned(), "MetricsUnavailable".to_owned())),
        "{:?}",
        events(&requests)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uc006_a_dry_run_publishes_planned_migrations_and_creates_none() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_server, url) = prometheus(dir.path()).await;
    let lab = lab(&url).await;
    let requests = lab.reconcile(&policy(json!({"dryRun": true}))).await;
    assert!(created(&requests).is_empty(), "a dry run creates nothing");
    let status = status_apply(&requests);
    let planned: BTreeMap<String, (String, String)> = status["plannedMigrations"]
        .as_array()
        .expect("plannedMigrations")
        .iter()
        .map(|m| {
            (
                m["volume"].as_str().unwrap_or_default().to_owned(),
                (
                    m["fromTier"].as_str().unwrap_or_default().to_owned(),
                    m["toTier"].as_str().unwrap_or_default().to_owned(),
                ),
            )
        })
        .collect();
    assert_eq!(
        planned,
        BTreeMap::from([
            (pv(BUSY), ("cold".to_owned(), "hot".to_owned())),
            (pv(IDLE), ("hot".to_owned(), "cold".to_owned())),
        ])
    );
    let busy = status["plannedMigrations"]
        .as_array()
        .and_then(|a| a.iter().find(|m| m["volume"] == pv(BUSY)))
        .expect("busy");
    let iops = busy["observedIOPS"].as_f64().expect("iops");
    assert!((iops - 6000.0).abs() < 600.0, "{iops}");
    assert_eq!(status["totalMigrations"], 0);
    assert_eq!(status["activeMigrations"], 0);
    assert_eq!(condition(&status, "Ready")["status"], "True");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uc010_disabling_midway_starts_nothing_and_lets_the_move_in_flight_finish() {
    // A disabled policy must not need Prometheus: its address only counts connections.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let prometheus_url = format!("http://{}", listener.local_addr().expect("addr"));
    let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = asked.clone();
    tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let lab = lab(&prometheus_url).await;
    lab.migrations
        .lock()
        .expect("list")
        .push(migration(BUSY, "cold", "hot", "Running"));
    let mut disabled = policy(json!({"enabled": false}));
    disabled.metadata.generation = Some(2);
    disabled.status = Some(couchestor_core::api::StoragePolicyStatus {
        phase: Some(couchestor_core::api::PolicyPhase::Active),
        total_migrations: 1,
        active_migrations: 1,
        ..Default::default()
    });
    let mayastor_before = lab.sim.log().len();

    let requests = lab.reconcile(&disabled).await;
    assert!(created(&requests).is_empty(), "no new move while disabled");
    assert!(
        requests.iter().all(|r| r.method != "DELETE"),
        "the move in flight is left to finish: {requests:#?}"
    );
    let status = status_apply(&requests);
    assert_eq!(status["phase"], "Disabled");
    assert_eq!(status["observedGeneration"], 2);
    assert_eq!(status["activeMigrations"], 1);
    assert_eq!(condition(&status, "Ready")["reason"], "Disabled");
    assert!(events(&requests).contains(&("Normal".to_owned(), "Disabled".to_owned())));
    assert_eq!(
        lab.sim.log().len(),
        mayastor_before,
        "a disabled policy does not even ask Mayastor"
    );
    assert_eq!(
        asked.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "nor Prometheus"
    );

    // The executor finishes the move: it enters the history; still nothing starts.
    *lab.migrations.lock().expect("list") = vec![migration(BUSY, "cold", "hot", "Succeeded")];
    let mut later = disabled.clone();
    later.status = serde_json::from_value(status).expect("status");
    let requests = lab.reconcile(&later).await;
    assert!(created(&requests).is_empty());
    let status = status_apply(&requests);
    assert_eq!(status["phase"], "Disabled");
    assert_eq!(status["activeMigrations"], 0);
    assert_eq!(status["totalMigrations"], 1);
    assert_eq!(status["migrationHistory"][0]["volume"], pv(BUSY));
    assert_eq!(status["migrationHistory"][0]["result"], "Succeeded");
    assert!(
        !events(&requests).iter().any(|(_, r)| r == "Disabled"),
        "the Disabled event is sent on the transition only"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_without_samples_of_the_volumes_is_metrics_unavailable_with_no_data() {
    // A real Prometheus whose only target is down: it answers, with an empty vector.
    let dir = tempfile::tempdir().expect("temp dir");
    let port = prom::free_port();
    let _server = prom::start_prometheus(dir.path(), prom::free_port(), port);
    let url = format!("http://127.0.0.1:{port}");
    prom::wait_until_up(&url).await;
    let lab = lab(&url).await;
    let requests = lab.reconcile(&policy(json!({}))).await;
    assert!(
        created(&requests).is_empty(),
        "no data is not idle: nothing moves"
    );
    let status = status_apply(&requests);
    let metrics = condition(&status, "MetricsAvailable");
    assert_eq!(metrics["status"], "False");
    assert_eq!(metrics["reason"], "NoData");
    assert!(
        metrics["message"]
            .as_str()
            .unwrap_or_default()
            .contains("3 watched volumes"),
        "{metrics:#}"
    );
    assert_eq!(status["volumes"]["hot"], 2, "placement is still reported");
    assert!(events(&requests).contains(&("Warning".to_owned(), "MetricsUnavailable".to_owned())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mayastor_down_means_mayastor_available_false_and_no_move() {
    let lab = lab(&format!("http://127.0.0.1:{}", prom::free_port())).await;
    lab.sim
        .inject(couchestor_operator::mayastor::sim::Fault::fail_next(
            10, 503,
        ));
    let requests = lab.reconcile(&policy(json!({}))).await;
    assert!(created(&requests).is_empty());
    let status = status_apply(&requests);
    assert_eq!(condition(&status, "MayastorAvailable")["status"], "False");
    assert_eq!(status["phase"], "Pending");
    assert!(events(&requests).contains(&("Warning".to_owned(), "MayastorUnavailable".to_owned())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_policy_is_phase_error_with_the_field_named() {
    let lab = lab(&format!("http://127.0.0.1:{}", prom::free_port())).await;
    let requests = lab
        .reconcile(&policy(
            json!({"lowWatermarkIOPS": 9000, "samplingWindow": "soon"}),
        ))
        .await;
    assert!(created(&requests).is_empty());
    let status = status_apply(&requests);
    assert_eq!(status["phase"], "Error");
    let valid = condition(&status, "Valid");
    assert_eq!(valid["status"], "False");
    let message = valid["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("lowWatermarkIOPS") && message.contains("samplingWindow"),
        "every error with its field: {message}"
    );
}
