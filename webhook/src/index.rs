//! The webhook's view of other objects, for cross-object rules: StoragePolicies,
//! ErasureCodingPolicies, EcVolumes and StorageClasses. Filled by watchers in
//! production ([`watch`]) and directly in tests ([`Index::apply`]).
//!
//! Until every watcher has listed once, the index is not *synced*: cross-object checks
//! could miss a conflict, so changes to our resources are refused with a retryable
//! message and `/readyz` answers 503 (the Service routes nothing to us yet).

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc, RwLock,
        atomic::{AtomicUsize, Ordering},
    },
};

use couchestor_core::{
    EcVolume, ErasureCodingPolicy, StoragePolicy, api::StoragePolicySpec, names,
    validation::cross::Cluster,
};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::{
    Api, Client, Resource, ResourceExt,
    runtime::{WatchStreamExt, watcher},
};

/// What the webhook knows of a StorageClass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassInfo {
    /// Annotated `couchestor.io/tiering: enabled`.
    pub tiered: bool,
    /// The class parameter `couchestor.io/tier` (default initial tier), if any.
    pub default_tier: Option<String>,
}

impl ClassInfo {
    /// Reads the tiering marks of a StorageClass.
    pub fn of(class: &StorageClass) -> Self {
        let tiered = class
            .annotations()
            .get(names::TIERING)
            .is_some_and(|v| v == names::TIERING_ENABLED);
        let default_tier = class
            .parameters
            .as_ref()
            .and_then(|p| p.get(names::TIER))
            .cloned();
        Self {
            tiered,
            default_tier,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    storage_policies: BTreeMap<String, StoragePolicySpec>,
    ec_policies: BTreeSet<String>,
    ec_volumes: BTreeMap<String, String>,
    classes: BTreeMap<String, ClassInfo>,
}

impl State {
    fn apply(&mut self, change: Change) {
        let s = self;
        match change {
            Change::StoragePolicy(name, Some(spec)) => {
                s.storage_policies.insert(name, *spec);
            }
            Change::StoragePolicy(name, None) => {
                s.storage_policies.remove(&name);
            }
            Change::EcPolicy(name, true) => {
                s.ec_policies.insert(name);
            }
            Change::EcPolicy(name, false) => {
                s.ec_policies.remove(&name);
            }
            Change::EcVolume(name, Some(policy)) => {
                s.ec_volumes.insert(name, policy);
            }
            Change::EcVolume(name, None) => {
                s.ec_volumes.remove(&name);
            }
            Change::Class(name, Some(info)) => {
                s.classes.insert(name, info);
            }
            Change::Class(name, None) => {
                s.classes.remove(&name);
            }
        }
    }
}

/// An owned copy of the index for one admission decision.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub storage_policies: Vec<(String, StoragePolicySpec)>,
    pub ec_policies: Vec<String>,
    pub ec_volume_policies: Vec<String>,
    pub classes: BTreeMap<String, ClassInfo>,
    pub synced: bool,
}

impl Snapshot {
    /// The view `couchestor_core::validation::cross` takes.
    pub fn cluster(&self) -> Cluster<'_> {
        Cluster {
            storage_policies: &self.storage_policies,
            ec_policies: &self.ec_policies,
            ec_volume_policies: &self.ec_volume_policies,
        }
    }
}

/// One event for the index.
#[derive(Debug, Clone)]
pub enum Change {
    StoragePolicy(String, Option<Box<StoragePolicySpec>>),
    EcPolicy(String, bool),
    EcVolume(String, Option<String>),
    Class(String, Option<ClassInfo>),
}

/// The shared index.
#[derive(Debug, Clone, Default)]
pub struct Index {
    state: Arc<RwLock<State>>,
    /// Watchers that have not finished their first list.
    pending: Arc<AtomicUsize>,
}

/// The kinds the index watches.
pub const WATCHED_KINDS: usize = 4;

impl Index {
    /// An index that is synced and empty (tests, and `--no-watch` local runs).
    pub fn synced() -> Self {
        Self::default()
    }

    /// An index waiting for `WATCHED_KINDS` watchers to list.
    pub fn unsynced() -> Self {
        Self {
            state: Arc::default(),
            pending: Arc::new(AtomicUsize::new(WATCHED_KINDS)),
        }
    }

    /// Whether every watcher has listed once.
    pub fn is_synced(&self) -> bool {
        self.pending.load(Ordering::Acquire) == 0
    }

    /// Applies one change.
    pub fn apply(&self, change: Change) {
        let mut s = self.state.write().unwrap_or_else(|e| e.into_inner());
        s.apply(change);
    }

    /// A consistent copy for one decision.
    pub fn snapshot(&self) -> Snapshot {
        let s = self.state.read().unwrap_or_else(|e| e.into_inner());
        Snapshot {
            storage_policies: s
                .storage_policies
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            ec_policies: s.ec_policies.iter().cloned().collect(),
            ec_volume_policies: s.ec_volumes.values().cloned().collect(),
            classes: s.classes.clone(),
            synced: self.is_synced(),
        }
    }

    /// Replaces everything known of `kind` at once (after a full list), so a relist
    /// never exposes a half-empty index.
    fn replace_all(&self, kind: Kind, changes: Vec<Change>) {
        let mut s = self.state.write().unwrap_or_else(|e| e.into_inner());
        match kind {
            Kind::StoragePolicy => s.storage_policies.clear(),
            Kind::EcPolicy => s.ec_policies.clear(),
            Kind::EcVolume => s.ec_volumes.clear(),
            Kind::Class => s.classes.clear(),
        }
        for change in changes {
            s.apply(change);
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    StoragePolicy,
    EcPolicy,
    EcVolume,
    Class,
}

/// Runs the four watchers until one fails for good; keeps `index` current. Watch errors
/// are retried with kube's default backoff.
pub async fn watch(client: Client, index: Index) -> anyhow::Result<()> {
    let policies = run_one(
        Api::<StoragePolicy>::all(client.clone()),
        index.clone(),
        Kind::StoragePolicy,
        |p, gone| Change::StoragePolicy(p.name_any(), (!gone).then(|| Box::new(p.spec.clone()))),
    );
    let ec_policies = run_one(
        Api::<ErasureCodingPolicy>::all(client.clone()),
        index.clone(),
        Kind::EcPolicy,
        |p, gone| Change::EcPolicy(p.name_any(), !gone),
    );
    let ec_volumes = run_one(
        Api::<EcVolume>::all(client.clone()),
        index.clone(),
        Kind::EcVolume,
        |v, gone| Change::EcVolume(v.name_any(), (!gone).then(|| v.spec.ec_policy_ref.clone())),
    );
    let classes = run_one(
        Api::<StorageClass>::all(client),
        index,
        Kind::Class,
        |c, gone| Change::Class(c.name_any(), (!gone).then(|| ClassInfo::of(c))),
    );
    tokio::try_join!(policies, ec_policies, ec_volumes, classes)?;
    Ok(())
}

async fn run_one<K>(
    api: Api<K>,
    index: Index,
    kind: Kind,
    change: impl Fn(&K, bool) -> Change,
) -> anyhow::Result<()>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let mut listed_once = false;
    let mut relist: Vec<Change> = Vec::new();
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = events.try_next().await? {
        match event {
            watcher::Event::Init => relist.clear(),
            watcher::Event::InitApply(obj) => relist.push(change(&obj, false)),
            watcher::Event::Apply(obj) => index.apply(change(&obj, false)),
            watcher::Event::Delete(obj) => index.apply(change(&obj, true)),
            watcher::Event::InitDone => {
                index.replace_all(kind, std::mem::take(&mut relist));
                if !listed_once {
                    listed_once = true;
                    index.pending.fetch_sub(1, Ordering::AcqRel);
                    tracing::info!(?kind, "initial list done");
                }
            }
        }
    }
    Ok(())
}
