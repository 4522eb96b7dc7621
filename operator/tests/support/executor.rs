//! The executor tests' doubles and fixtures: a clock on the simulator's virtual time,
//! a store that can crash at a chosen write and notes the request log at each write,
//! Events with a hook, a six-node two-tier cluster, and a harness around them.

// Each test uses a different subset of these.
#![allow(dead_code)]

use std::{
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use couchestor_core::{
    GoDuration, Tier, Timestamp,
    api::{MigrationStep, VolumeMigration, VolumeMigrationSpec, VolumeMigrationStatus},
    names,
};
use couchestor_operator::{
    executor::{
        Clock, Config, EventSink, EventType, Executor, InMemoryStore, MigrationStore,
        RecordingEvents, StoreError, TierPools,
    },
    mayastor::{
        self, Mayastor,
        sim::{Behaviour, Cluster, Sim, VolumeSetup},
    },
};

use crate::support::{CREATED_BY, GIB, tiered_inclusion};

pub const HOT_VOL: &str = "11111111-0000-4000-8000-000000000001";
pub const COLD_VOL: &str = "22222222-0000-4000-8000-000000000002";

// --- Test doubles --------------------------------------------------------------------

/// The simulator's virtual clock: `sleep` advances it (rebuilds progress), `now` reads it.
#[derive(Clone)]
pub struct SimClock(pub Arc<Sim>);

impl Clock for SimClock {
    fn now(&self) -> Timestamp {
        let base = Timestamp::from_second(1_767_225_600).expect("2026-01-01");
        let offset = i128::try_from(self.0.with(|c| c.now()).as_nanos()).expect("offset");
        Timestamp::from_nanosecond(base.as_nanosecond() + offset).expect("timestamp")
    }

    fn sleep(&self, by: Duration) -> impl Future<Output = ()> + Send {
        self.0.advance(by);
        tokio::task::yield_now()
    }
}

/// Where a crash happens relative to the chosen status write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// The write never reaches the store.
    BeforeWrite,
    /// The write is durable but the process dies before acting on it.
    AfterWrite,
}

/// A store over a shared [`InMemoryStore`] that notes, for every write, how many
/// requests the simulator had seen (to check write-ahead ordering), and can "crash":
/// from write `n` on, every write fails and nothing more may be done.
pub struct TestStore {
    pub inner: Arc<InMemoryStore>,
    pub sim: Arc<Sim>,
    pub crash: Option<(usize, CrashMode)>,
    pub writes: AtomicUsize,
    pub dead: AtomicBool,
    pub timeline: Mutex<Vec<(usize, String, VolumeMigrationStatus)>>,
}

impl TestStore {
    pub fn new(
        inner: Arc<InMemoryStore>,
        sim: Arc<Sim>,
        crash: Option<(usize, CrashMode)>,
    ) -> Self {
        Self {
            inner,
            sim,
            crash,
            writes: AtomicUsize::new(0),
            dead: AtomicBool::new(false),
            timeline: Mutex::new(Vec::new()),
        }
    }

    pub fn crashed(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }

    pub fn timeline(&self) -> Vec<(usize, String, VolumeMigrationStatus)> {
        self.timeline.lock().expect("timeline").clone()
    }

    pub fn write(&self, name: &str, status: &VolumeMigrationStatus) -> Result<(), StoreError> {
        let dead = || Err(StoreError::Unavailable("crashed".to_owned()));
        if self.crashed() {
            return dead();
        }
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        match self.crash {
            Some((at, CrashMode::BeforeWrite)) if n >= at => {
                self.dead.store(true, Ordering::SeqCst);
                return dead();
            }
            _ => {}
        }
        let requests = self.sim.log().len();
        // The in-memory store answers synchronously: poll its future once.
        futures_now(self.inner.put_status(name, status))?;
        self.timeline
            .lock()
            .expect("timeline")
            .push((requests, name.to_owned(), status.clone()));
        if matches!(self.crash, Some((at, CrashMode::AfterWrite)) if n >= at) {
            self.dead.store(true, Ordering::SeqCst);
            return dead();
        }
        Ok(())
    }
}

/// Polls a future that is ready at once (the in-memory store's).
pub fn futures_now<T>(f: impl Future<Output = T>) -> T {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("the in-memory store never waits"),
    }
}

impl MigrationStore for TestStore {
    fn get(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<VolumeMigration>, StoreError>> + Send {
        let found = self.inner.object(name);
        async move { Ok(found) }
    }

    fn put_status(
        &self,
        name: &str,
        status: &VolumeMigrationStatus,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let result = self.write(name, status);
        async move { result }
    }

    fn release(&self, name: &str) -> impl Future<Output = Result<(), StoreError>> + Send {
        let result = if self.crashed() {
            Err(StoreError::Unavailable("crashed".to_owned()))
        } else {
            futures_now(self.inner.release(name))
        };
        async move { result }
    }
}

pub type Hook = Box<dyn Fn(&Sim, &str, &str) + Send + Sync>;

/// Records Events and lets a test act on the simulator when one is emitted.
pub struct TestEvents {
    pub recorded: RecordingEvents,
    pub sim: Arc<Sim>,
    pub hook: Option<Hook>,
}

impl EventSink for TestEvents {
    fn emit(
        &self,
        migration: &VolumeMigration,
        kind: EventType,
        reason: &str,
        message: String,
    ) -> impl Future<Output = ()> + Send {
        if let Some(hook) = &self.hook {
            hook(&self.sim, reason, &message);
        }
        self.recorded.emit(migration, kind, reason, message)
    }
}

// --- Fixtures ------------------------------------------------------------------------

/// Six nodes, one pool each: n1-hot, n2-hot, n3-cold, n4-cold (100 GiB) and the much
/// emptier n5-hot and n6-cold (1000 GiB), so that without steering a new replica
/// would land on the wrong tier. HOT_VOL has replicas on n1-hot and n2-hot (nexus on
/// n1); COLD_VOL (when asked for) on n3-cold and n4-cold (nexus on n3).
pub fn lab(behaviour: Behaviour, cold_volume: bool) -> Cluster {
    let mut c = Cluster::new(behaviour);
    for n in ["n1", "n2", "n3", "n4", "n5", "n6"] {
        c.add_node(n);
    }
    c.add_pool("n1-hot", "n1", 100 * GIB, &[CREATED_BY, ("tier", "hot")])
        .add_pool("n2-hot", "n2", 100 * GIB, &[CREATED_BY, ("tier", "hot")])
        .add_pool("n3-cold", "n3", 100 * GIB, &[CREATED_BY, ("tier", "cold")])
        .add_pool("n4-cold", "n4", 100 * GIB, &[CREATED_BY, ("tier", "cold")])
        .add_pool("n5-hot", "n5", 1000 * GIB, &[CREATED_BY, ("tier", "hot")])
        .add_pool("n6-cold", "n6", 1000 * GIB, &[CREATED_BY, ("tier", "cold")]);
    c.add_volume(VolumeSetup {
        uuid: HOT_VOL.to_owned(),
        size: 10 * GIB,
        thin: false,
        inclusion: tiered_inclusion(),
        target: Some("n1".to_owned()),
        pools: vec!["n1-hot".to_owned(), "n2-hot".to_owned()],
    })
    .expect("hot volume");
    if cold_volume {
        c.add_volume(VolumeSetup {
            uuid: COLD_VOL.to_owned(),
            size: 10 * GIB,
            thin: true,
            inclusion: tiered_inclusion(),
            target: Some("n3".to_owned()),
            pools: vec!["n3-cold".to_owned(), "n4-cold".to_owned()],
        })
        .expect("cold volume");
    }
    c
}

pub const POOLS: [&str; 6] = [
    "n1-hot", "n2-hot", "n3-cold", "n4-cold", "n5-hot", "n6-cold",
];
pub const NODES: [&str; 6] = ["n1", "n2", "n3", "n4", "n5", "n6"];

pub fn tiers() -> TierPools {
    TierPools::by_label("tier", &[(Tier::Hot, "hot"), (Tier::Cold, "cold")])
}

pub fn migration(
    name: &str,
    volume: &str,
    from: Tier,
    to: Tier,
    preserve: bool,
) -> VolumeMigration {
    VolumeMigration::new(
        name,
        VolumeMigrationSpec {
            policy_ref: "tiering".to_owned(),
            volume_name: format!("pvc-{volume}"),
            volume_id: volume.to_owned(),
            from_tier: from,
            to_tier: to,
            preserve_source_replica: preserve,
            timeout: GoDuration::new("30m"),
        },
    )
}

/// `migration`, holding the operator's finalizer as the controller creates it.
pub fn finalized(name: &str, volume: &str, from: Tier, to: Tier) -> VolumeMigration {
    let mut vm = migration(name, volume, from, to, false);
    vm.metadata.finalizers = Some(vec![names::MIGRATION_FINALIZER.to_owned()]);
    vm
}

pub fn config() -> Config {
    Config {
        poll_interval: Duration::from_secs(2),
        retry_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(8),
        ..Config::default()
    }
}

/// Cordons, labels and node cordons of the whole cluster, to compare before/after.
pub fn steering_state(sim: &Sim) -> Vec<String> {
    sim.with(|c| {
        let mut out = Vec::new();
        for p in POOLS {
            out.push(format!(
                "{p} cordoned={} labels={:?}",
                c.pool_cordoned(p),
                c.pool_labels(p)
            ));
        }
        for n in NODES {
            out.push(format!("{n} cordons={:?}", c.node_cordons(n)));
        }
        out
    })
}

pub fn pool_tier(pool: &str) -> &'static str {
    if pool.ends_with("-hot") {
        "hot"
    } else {
        "cold"
    }
}

pub struct Harness {
    pub sim: Arc<Sim>,
    pub client: Mayastor,
    pub store: Arc<InMemoryStore>,
    pub start_steering: Vec<String>,
}

impl Harness {
    pub async fn new(cluster: Cluster) -> Self {
        let sim = Arc::new(Sim::start(cluster).await.expect("simulator"));
        let client = Mayastor::new(mayastor::Config::new(sim.url())).expect("client");
        let start_steering = steering_state(&sim);
        Self {
            sim,
            client,
            store: Arc::new(InMemoryStore::new()),
            start_steering,
        }
    }

    pub fn executor(
        &self,
        crash: Option<(usize, CrashMode)>,
        hook: Option<Hook>,
    ) -> Executor<TestStore, TestEvents, SimClock> {
        self.executor_with(self.client.clone(), crash, hook)
    }

    pub fn executor_with(
        &self,
        client: Mayastor,
        crash: Option<(usize, CrashMode)>,
        hook: Option<Hook>,
    ) -> Executor<TestStore, TestEvents, SimClock> {
        Executor::new(
            client,
            TestStore::new(self.store.clone(), self.sim.clone(), crash),
            TestEvents {
                recorded: RecordingEvents::new(),
                sim: self.sim.clone(),
                hook,
            },
            SimClock(self.sim.clone()),
            config(),
        )
    }

    pub fn status(&self, name: &str) -> VolumeMigrationStatus {
        self.store
            .object(name)
            .and_then(|o| o.status)
            .unwrap_or_default()
    }

    pub fn pools(&self, volume: &str) -> Vec<String> {
        self.sim.with(|c| c.replica_pools(volume))
    }

    pub fn low_water(&self, volume: &str) -> usize {
        self.sim
            .with(|c| c.healthy_low_water(volume))
            .expect("volume")
    }

    pub fn assert_steering_restored(&self) {
        assert_eq!(
            steering_state(&self.sim),
            self.start_steering,
            "steering left behind"
        );
    }

    /// `replica_count` values sent for `volume`, in order.
    pub fn replica_counts(&self, volume: &str) -> Vec<u8> {
        let prefix = format!("/v0/volumes/{volume}/replica_count/");
        self.sim
            .mutations()
            .iter()
            .filter_map(|r| r.path.strip_prefix(&prefix))
            .filter_map(|n| n.parse().ok())
            .collect()
    }
}

pub fn steps(status: &VolumeMigrationStatus) -> Vec<MigrationStep> {
    status.steps.iter().map(|s| s.step).collect()
}

/// The default lab with `finalized` move `m` (HOT_VOL to cold) interrupted by a
/// crash just after its first steering window opened (found by a probe run of the
/// same move on a twin cluster), so the window is still applied.
pub async fn crashed_with_a_window_open() -> Harness {
    let h = Harness::new(lab(Behaviour::default(), false)).await;
    let probe = Harness::new(lab(Behaviour::default(), false)).await;
    for harness in [&probe, &h] {
        harness
            .store
            .insert(finalized("m", HOT_VOL, Tier::Hot, Tier::Cold));
    }
    let probe_exec = probe.executor(None, None);
    probe_exec.drive("m", &tiers()).await.expect("probe drive");
    let window = probe_exec
        .store()
        .timeline()
        .iter()
        .position(|(_, _, s)| !s.steering.is_empty())
        .expect("a steering window was opened")
        + 1;
    let first = h.executor(Some((window + 1, CrashMode::BeforeWrite)), None);
    first.drive("m", &tiers()).await.expect_err("crashed");
    assert!(first.store().crashed());
    assert_ne!(
        steering_state(&h.sim),
        h.start_steering,
        "the crash left a window open"
    );
    h
}
