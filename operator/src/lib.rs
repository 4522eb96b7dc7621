//! # couchestor-operator
//!
//! The operator of CoucheStor (DESIGN §2, issue #3):
//!
//! - [`prometheus`]: the Prometheus client — one batched instant query per policy per
//!   cycle giving each volume's IOPS and how much history backs it; any failure makes
//!   the loads *unknown*, never idle.
//! - [`mayastor`]: the Mayastor REST v0 client — lenient types for volumes, pools,
//!   nodes and replicas; replica count, pool labels, pool and node cordons; errors
//!   carrying the server's `kind`/`message`. With the `sim` feature,
//!   [`mayastor::sim`] is a stateful simulator of the same API for tests (no real
//!   Mayastor runs here).
//!
//! - [`executor`]: the VolumeMigration executor — a write-ahead step machine that moves
//!   a volume between pool tiers with Mayastor's replica count and steered placement,
//!   resuming or rolling back after a crash from the persisted status alone.
//! - [`runner`]: drives every VolumeMigration in flight with the executor (leader only).
//! - [`controller`]: the StoragePolicy controller (plan → VolumeMigrations, status by
//!   server-side apply, Events).
//! - [`kube_store`]: the Kubernetes implementations of the executor's ports (migration
//!   status, Events).
//! - [`lease`]: leader election over a `coordination.k8s.io/v1` Lease.
//! - [`admin`] + [`metrics`]: `/healthz`, `/readyz`, `/metrics`.
//! - [`run`]: the process (the `couchestor-operator` binary is a thin `main`).

pub mod admin;
pub mod config;
pub mod controller;
pub mod executor;
pub mod kube_store;
pub mod lease;
pub mod mayastor;
pub mod metrics;
pub mod prometheus;
pub mod runner;

use std::{future::Future, sync::Arc, time::Duration};

use anyhow::Context as _;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::{
    admin::{Health, Peer},
    config::Config,
    controller::{Parts, Settings},
    executor::{Executor, SystemClock},
    kube_store::{KubeEventSink, KubeMigrationStore},
    lease::{Elector, LeaseConfig},
    mayastor::Mayastor,
    metrics::Metrics,
    prometheus::{MetricNames, Prometheus},
    runner::Runner,
};

/// How often the prober asks Prometheus and Mayastor whether they answer (so `/readyz`
/// means something on a standby replica too).
const PROBE_INTERVAL: Duration = Duration::from_secs(15);

/// Longest time between two looks for VolumeMigrations to drive (sooner when the
/// controller's requeue interval is shorter).
const MIGRATION_PASS_INTERVAL: Duration = Duration::from_secs(10);

/// Runs the operator with the in-cluster (or kubeconfig) client until `shutdown`.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API (in-cluster config or kubeconfig)")?;
    run_with_client(client, config, shutdown).await
}

/// Runs the operator: the admin server and the prober on every replica; the lease
/// elector; the controller only while this replica holds the lease. Returns `Ok` after
/// `shutdown` (the controller stopped first, then the lease released), or an error if
/// the lease was lost (the process exits and restarts as a standby).
pub async fn run_with_client(
    client: kube::Client,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let prometheus = Prometheus::new(&config.prometheus_url, config.prometheus_timeout)
        .with_context(|| format!("--prometheus-url {}", config.prometheus_url))?;
    let mut mayastor_config = mayastor::Config::new(config.mayastor_url.clone());
    mayastor_config.timeout = config.mayastor_timeout;
    let mayastor = Mayastor::new(mayastor_config)
        .with_context(|| format!("--mayastor-url {}", config.mayastor_url))?;

    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::register(&mut registry));
    let registry = Arc::new(registry);
    let health = Arc::new(Health::new(config.ready_max_age));

    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        stop_tx.send_replace(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("listening on --http-addr {}", config.http_addr))?;
    tracing::info!(addr = %config.http_addr, "admin server: /healthz /readyz /metrics");
    let admin = tokio::spawn(admin::serve(
        listener,
        health.clone(),
        registry,
        stopped(stop.clone()),
    ));
    tokio::spawn(probe(
        prometheus.clone(),
        mayastor.clone(),
        health.clone(),
        stop.clone(),
    ));

    let (leader_tx, mut leader) = watch::channel(false);
    let (release_tx, release) = watch::channel(false);
    let elector = Elector::new(
        client.clone(),
        LeaseConfig {
            name: config.lease_name.clone(),
            namespace: config.lease_namespace.clone(),
            identity: config.identity.clone(),
            duration: config.lease_duration,
        },
    );
    let elector_task = tokio::spawn(lease::run(
        elector,
        config.lease_duration / 3,
        config.lease_duration * 2 / 3,
        leader_tx,
        release,
    ));

    let mut stop_wait = stop.clone();
    tokio::select! {
        _ = leader.wait_for(|l| *l) => {}
        _ = stop_wait.wait_for(|s| *s) => {}
    }
    let mut outcome = Ok(());
    if !*stop.borrow() {
        health.set_leader(true);
        let until = |mut lost: watch::Receiver<bool>, mut stop: watch::Receiver<bool>| async move {
            tokio::select! {
                _ = lost.wait_for(|l| !*l) => {}
                _ = stop.wait_for(|s| *s) => {}
            }
        };
        // The leader carries out the migrations the controller creates.
        let executor = Arc::new(Executor::new(
            mayastor.clone(),
            KubeMigrationStore::new(client.clone()),
            KubeEventSink::new(client.clone(), Some(config.identity.clone())),
            SystemClock,
            executor::Config::default(),
        ));
        let runner = Runner::new(client.clone(), executor).run(
            config.requeue_interval.min(MIGRATION_PASS_INTERVAL),
            until(leader.clone(), stop.clone()),
        );
        let controller = controller::run(
            Parts {
                client,
                prometheus,
                mayastor,
                metrics,
                health: health.clone(),
                settings: Settings {
                    metric_names: MetricNames {
                        read_ops: config.metric_read_ops.clone(),
                        write_ops: config.metric_write_ops.clone(),
                        volume_label: config.metric_volume_label.clone(),
                    },
                    requeue: config.requeue_interval,
                    ..Settings::default()
                },
                identity: config.identity.clone(),
            },
            until(leader.clone(), stop.clone()),
        );
        tokio::join!(controller, runner);
        health.set_leader(false);
        if !*stop.borrow() {
            outcome = Err(anyhow::anyhow!(
                "lost the lease {}/{}: exiting so that a restart rejoins as a standby",
                config.lease_namespace,
                config.lease_name
            ));
        }
    }
    // The controller has stopped: only now give the lease away.
    release_tx.send_replace(true);
    let _ = elector_task.await;
    if outcome.is_ok() {
        admin
            .await
            .context("admin server task")?
            .context("admin server")?;
    }
    outcome
}

/// Asks Prometheus and Mayastor every [`PROBE_INTERVAL`] whether they answer.
async fn probe(
    prometheus: Prometheus,
    mayastor: Mayastor,
    health: Arc<Health>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        match prometheus.instant("vector(1)").await {
            Ok(_) => health.answered(Peer::Prometheus),
            Err(e) => tracing::debug!(error = %e, "Prometheus probe"),
        }
        match mayastor.nodes().await {
            Ok(_) => health.answered(Peer::Mayastor),
            Err(e) => tracing::debug!(error = %e, "Mayastor probe"),
        }
        tokio::select! {
            _ = tokio::time::sleep(PROBE_INTERVAL) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
