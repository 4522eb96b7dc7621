//! The simulated control plane's state and its rules: where a new replica may go,
//! which replica a scale-down removes, how a rebuild progresses. No HTTP here.
//!
//! Rules and their sources (`../shared/reference/mayastor-csi.md`):
//! - replica count changes (`SetReplica` validation in the control plane): same count
//!   ⇒ `FailedPrecondition`; a change by more than one ⇒ `FailedPrecondition`; an
//!   increase while the volume is not `Online` ⇒ `FailedPrecondition`; no eligible
//!   pool ⇒ `ResourceExhausted` (HTTP 507, "Not enough suitable pools available");
//! - placement filters (§1.5): node online and not cordoned, node not already used by
//!   the volume, pool usable (not Faulted/Unknown/Offline), pool not cordoned for
//!   replicas, live pool labels satisfy the volume's inclusion labels (empty value ⇒
//!   key present), enough capacity and free space;
//! - scale-down victim (§1.5 `ChildSorters`): unhealthy first, then non-children, then
//!   replicas failing the pool topology, then replicas on cordoned nodes (and cordoned
//!   pools, per the pool-cordon OEP), then remote before local to the nexus; the
//!   last healthy replica is never removed.
//!
//! Simplified: candidate pools are ranked by free space only (Mayastor weighs free
//! space, replica count and over-commit); equal victims are told apart by replica
//! UUID (Mayastor's order is unspecified there); a new replica allocates its whole
//! size at once; a failed rebuild leaves a Faulted child (Mayastor would replace it
//! itself when `self_heal` is on); no node topology, affinity groups or snapshots.

use std::{collections::BTreeMap, time::Duration};

use serde_json::{Value, json};

mod render;
#[cfg(test)]
mod tests;

/// Labels.
pub type Labels = BTreeMap<String, String>;

/// Thin replicas need this much free space on a pool (the scheduler's margin).
const THIN_FREE_MARGIN: u64 = 16 * 1024 * 1024;

/// An error as the REST service reports it: HTTP status + `RestJsonError.kind`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimError {
    pub status: u16,
    pub kind: &'static str,
    pub message: String,
}

impl SimError {
    fn new(status: u16, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
        }
    }
    pub(crate) fn not_found(what: &str, id: &str) -> Self {
        Self::new(404, "NotFound", format!("{what} '{id}' not found"))
    }
    fn precondition(message: impl Into<String>) -> Self {
        Self::new(412, "FailedPrecondition", message)
    }
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "InvalidArgument", message)
    }
    /// The `RestJsonError` body.
    pub fn body(&self) -> Value {
        json!({"details": self.message, "message": format!("SvcError: {}", self.kind), "kind": self.kind})
    }
}

/// Which replica a scale-down removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VictimPolicy {
    /// Mayastor's documented preference order (see the module docs).
    #[default]
    Documented,
    /// The worst replica the control plane is allowed to remove: the healthiest,
    /// best-placed one (fits the topology, not cordoned), newest first — typically
    /// the replica a move just built on the target tier. The API promises nothing
    /// more than that the last healthy replica stays, so neither does this.
    Adversarial,
}

/// Behaviour switches.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Virtual time a full rebuild takes.
    pub rebuild_time: Duration,
    pub victims: VictimPolicy,
    /// The ≥ 2025 scale-down prefers replicas failing the volume topology or on
    /// cordoned nodes/pools (control-plane PRs #906/#916); `false` is the 2024 order.
    pub topology_aware_scale_down: bool,
    /// Serve `PUT/DELETE /pools/{id}/cordon` (OpenEBS ≥ 4.4); `false` answers 404 as
    /// an older server does.
    pub pool_cordon_endpoint: bool,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            rebuild_time: Duration::from_secs(10),
            victims: VictimPolicy::Documented,
            topology_aware_scale_down: true,
            pool_cordon_endpoint: true,
        }
    }
}

#[derive(Debug, Clone)]
struct SimNode {
    online: bool,
    cordons: Vec<String>,
    address: String,
}

#[derive(Debug, Clone)]
struct SimPool {
    node: String,
    capacity: u64,
    used: u64,
    labels: Labels,
    faulted: bool,
    /// `PoolCordonReq` flags: replicas, snapshots, restores, import.
    cordon: [bool; 4],
    /// The next rebuild onto this pool fails when it reaches this percentage.
    fail_next_rebuild_at: Option<u8>,
}

/// A nexus child's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChildSim {
    Online,
    Rebuilding {
        started: Duration,
        fail_at: Option<u8>,
    },
    Faulted,
}

#[derive(Debug, Clone)]
struct SimReplica {
    uuid: String,
    pool: String,
    node: String,
    /// Creation order, for "newest first".
    seq: u64,
    child: ChildSim,
}

#[derive(Debug, Clone)]
struct SimVolume {
    size: u64,
    thin: bool,
    num_replicas: u8,
    inclusion: Labels,
    target: Option<String>,
    replicas: Vec<SimReplica>,
    /// The fewest healthy replicas this volume has had since it was added.
    low_water: usize,
    /// Finished rebuilds, oldest first.
    history: Vec<RebuildRecord>,
}

/// A finished (completed or failed) rebuild.
#[derive(Debug, Clone)]
struct RebuildRecord {
    child_uri: String,
    src_uri: String,
    completed: bool,
    percent: u8,
    start: Duration,
    end: Duration,
}

/// A volume to add to the cluster, with its replicas already in sync.
#[derive(Debug, Clone)]
pub struct VolumeSetup {
    pub uuid: String,
    pub size: u64,
    pub thin: bool,
    /// The pool topology's inclusion labels (fixed at creation, as in Mayastor).
    pub inclusion: Labels,
    /// Where the nexus is published; `None`: unpublished (no target, no children).
    pub target: Option<String>,
    /// One replica on each of these pools (on distinct nodes).
    pub pools: Vec<String>,
}

/// The simulated cluster. Tests build it, hand it to [`super::Sim::start`], and may
/// keep changing it through [`super::Sim::with`].
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    pub behaviour: Behaviour,
    now: Duration,
    next_id: u64,
    nodes: BTreeMap<String, SimNode>,
    pools: BTreeMap<String, SimPool>,
    volumes: BTreeMap<String, SimVolume>,
}

fn healthy(r: &SimReplica, pools: &BTreeMap<String, SimPool>) -> bool {
    r.child == ChildSim::Online && !pools.get(&r.pool).is_some_and(|p| p.faulted)
}

fn matches_inclusion(inclusion: &Labels, labels: &Labels) -> bool {
    inclusion
        .iter()
        .all(|(k, v)| labels.get(k).is_some_and(|have| v.is_empty() || have == v))
}

impl Cluster {
    pub fn new(behaviour: Behaviour) -> Self {
        Self {
            behaviour,
            ..Self::default()
        }
    }

    /// Adds an online, uncordoned node.
    pub fn add_node(&mut self, id: &str) -> &mut Self {
        let address = format!("10.0.0.{}", self.nodes.len() + 1);
        self.nodes.insert(
            id.to_owned(),
            SimNode {
                online: true,
                cordons: Vec::new(),
                address,
            },
        );
        self
    }

    /// Adds an Online pool on `node` (which must exist).
    pub fn add_pool(
        &mut self,
        id: &str,
        node: &str,
        capacity: u64,
        labels: &[(&str, &str)],
    ) -> &mut Self {
        assert!(
            self.nodes.contains_key(node),
            "add node {node} before its pools"
        );
        self.pools.insert(
            id.to_owned(),
            SimPool {
                node: node.to_owned(),
                capacity,
                used: 0,
                labels: labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                faulted: false,
                cordon: [false; 4],
                fail_next_rebuild_at: None,
            },
        );
        self
    }

    /// Adds a volume whose replicas are on `setup.pools`, all in sync.
    pub fn add_volume(&mut self, setup: VolumeSetup) -> Result<&mut Self, SimError> {
        let mut replicas: Vec<SimReplica> = Vec::new();
        for pool_id in &setup.pools {
            let pool = self
                .pools
                .get_mut(pool_id)
                .ok_or_else(|| SimError::not_found("pool", pool_id))?;
            if replicas.iter().any(|r| r.node == pool.node) {
                return Err(SimError::invalid(format!(
                    "two replicas of {} on node {}",
                    setup.uuid, pool.node
                )));
            }
            pool.used += setup.size;
            self.next_id += 1;
            replicas.push(SimReplica {
                uuid: replica_uuid(self.next_id),
                pool: pool_id.clone(),
                node: pool.node.clone(),
                seq: self.next_id,
                child: ChildSim::Online,
            });
        }
        let count =
            u8::try_from(replicas.len()).map_err(|_| SimError::invalid("too many replicas"))?;
        self.volumes.insert(
            setup.uuid.clone(),
            SimVolume {
                size: setup.size,
                thin: setup.thin,
                num_replicas: count,
                inclusion: setup.inclusion,
                target: setup.target,
                low_water: replicas.len(),
                replicas,
                history: Vec::new(),
            },
        );
        Ok(self)
    }

    /// Virtual time since the start.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Moves the clock: rebuilds progress, complete or fail.
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        let now = self.now;
        let total = self.behaviour.rebuild_time.max(Duration::from_millis(1));
        let mut finished = Vec::new();
        for (id, volume) in &mut self.volumes {
            for (i, r) in volume.replicas.iter_mut().enumerate() {
                if let ChildSim::Rebuilding { started, fail_at } = r.child {
                    let progress = progress(now.saturating_sub(started), total);
                    if let Some(f) = fail_at.filter(|f| progress >= *f) {
                        r.child = ChildSim::Faulted;
                        finished.push((id.clone(), i, false, f, started));
                    } else if progress >= 100 {
                        r.child = ChildSim::Online;
                        finished.push((id.clone(), i, true, 100, started));
                    }
                }
            }
        }
        for (id, i, completed, percent, start) in finished {
            self.record_rebuild(&id, i, completed, percent, start);
        }
        self.note_health();
    }

    fn record_rebuild(
        &mut self,
        id: &str,
        i: usize,
        completed: bool,
        percent: u8,
        start: Duration,
    ) {
        let Some(v) = self.volumes.get(id) else {
            return;
        };
        let target = v.target.as_deref();
        let r = &v.replicas[i];
        // The source: the first other healthy replica (Mayastor picks one healthy child).
        let src = v
            .replicas
            .iter()
            .find(|o| o.uuid != r.uuid && healthy(o, &self.pools))
            .map(|o| self.child_uri(target, &o.node, &o.uuid))
            .unwrap_or_default();
        let record = RebuildRecord {
            child_uri: self.child_uri(target, &r.node, &r.uuid),
            src_uri: src,
            completed,
            percent,
            start,
            end: self.now,
        };
        if let Some(v) = self.volumes.get_mut(id) {
            v.history.push(record);
        }
    }

    /// The pool goes Faulted: it takes no new replica and its replicas' children fault.
    pub fn fault_pool(&mut self, id: &str) {
        if let Some(p) = self.pools.get_mut(id) {
            p.faulted = true;
        }
        for v in self.volumes.values_mut() {
            for r in v.replicas.iter_mut().filter(|r| r.pool == id) {
                r.child = ChildSim::Faulted;
            }
        }
        self.note_health();
    }

    /// The next rebuild of a replica created on `pool` fails at `percent`.
    pub fn fail_next_rebuild_on(&mut self, pool: &str, percent: u8) {
        if let Some(p) = self.pools.get_mut(pool) {
            p.fail_next_rebuild_at = Some(percent.min(100));
        }
    }

    /// Takes a node offline (or back): its pools take no new replica.
    pub fn set_node_online(&mut self, node: &str, online: bool) {
        if let Some(n) = self.nodes.get_mut(node) {
            n.online = online;
        }
    }

    /// Live labels of a pool.
    pub fn pool_labels(&self, pool: &str) -> Option<&Labels> {
        self.pools.get(pool).map(|p| &p.labels)
    }

    /// Used bytes of a pool.
    pub fn pool_used(&self, pool: &str) -> Option<u64> {
        self.pools.get(pool).map(|p| p.used)
    }

    /// Whether new replicas are blocked by a pool cordon.
    pub fn pool_cordoned(&self, pool: &str) -> bool {
        self.pools.get(pool).is_some_and(|p| p.cordon[0])
    }

    /// Cordon labels of a node.
    pub fn node_cordons(&self, node: &str) -> Vec<String> {
        self.nodes
            .get(node)
            .map(|n| n.cordons.clone())
            .unwrap_or_default()
    }

    /// Pools holding the volume's replicas, sorted.
    pub fn replica_pools(&self, volume: &str) -> Vec<String> {
        let mut pools: Vec<String> = self
            .volumes
            .get(volume)
            .map(|v| v.replicas.iter().map(|r| r.pool.clone()).collect())
            .unwrap_or_default();
        pools.sort();
        pools
    }

    /// Pools holding the volume's healthy replicas, sorted.
    pub fn healthy_replica_pools(&self, volume: &str) -> Vec<String> {
        let mut pools: Vec<String> = self
            .volumes
            .get(volume)
            .map(|v| {
                v.replicas
                    .iter()
                    .filter(|r| healthy(r, &self.pools))
                    .map(|r| r.pool.clone())
                    .collect()
            })
            .unwrap_or_default();
        pools.sort();
        pools
    }

    /// The fewest healthy replicas the volume has had since it was added.
    pub fn healthy_low_water(&self, volume: &str) -> Option<usize> {
        self.volumes.get(volume).map(|v| v.low_water)
    }

    /// `spec.num_replicas` of a volume.
    pub fn num_replicas(&self, volume: &str) -> Option<u8> {
        self.volumes.get(volume).map(|v| v.num_replicas)
    }

    fn note_health(&mut self) {
        let pools = &self.pools;
        for v in self.volumes.values_mut() {
            let n = v.replicas.iter().filter(|r| healthy(r, pools)).count();
            v.low_water = v.low_water.min(n);
        }
    }

    fn status(&self, v: &SimVolume) -> &'static str {
        let healthy_count = v
            .replicas
            .iter()
            .filter(|r| healthy(r, &self.pools))
            .count();
        if healthy_count == 0 {
            "Faulted"
        } else if healthy_count < v.replicas.len() || v.replicas.len() < usize::from(v.num_replicas)
        {
            "Degraded"
        } else {
            "Online"
        }
    }

    // --- REST operations -----------------------------------------------------------

    /// `PUT /volumes/{id}/replica_count/{n}`.
    pub fn set_replica_count(&mut self, uuid: &str, count: u8) -> Result<Value, SimError> {
        let volume = self
            .volumes
            .get(uuid)
            .ok_or_else(|| SimError::not_found("volume", uuid))?;
        let current = volume.num_replicas;
        if count == 0 {
            return Err(SimError::invalid("replica_count must be between 1 and 255"));
        }
        if count == current {
            return Err(SimError::precondition(format!(
                "volume {uuid} already has {current} replicas (ReplicaCountAchieved)"
            )));
        }
        if count.abs_diff(current) > 1 {
            return Err(SimError::precondition(
                "the replica count can only change by one at a time (ReplicaChangeCount)",
            ));
        }
        if count > current {
            let status = self.status(volume);
            if status != "Online" {
                return Err(SimError::precondition(format!(
                    "cannot add a replica to volume {uuid} while it is {status} (ReplicaIncrease)"
                )));
            }
            let pool_id = self
                .eligible_pools(uuid)
                .into_iter()
                .next()
                .ok_or_else(|| {
                    SimError::new(
                        507,
                        "ResourceExhausted",
                        "Not enough suitable pools available, 0/1",
                    )
                })?;
            self.add_replica(uuid, &pool_id, count);
        } else {
            let victim = self.victim(uuid)?;
            self.remove_replica(uuid, &victim, count);
        }
        self.note_health();
        self.volume_json(uuid)
    }

    /// Pools where a new replica of `uuid` may go, best first.
    pub fn eligible_pools(&self, uuid: &str) -> Vec<String> {
        let Some(v) = self.volumes.get(uuid) else {
            return Vec::new();
        };
        let used_nodes: Vec<&str> = v.replicas.iter().map(|r| r.node.as_str()).collect();
        let mut candidates: Vec<(&String, &SimPool)> = self
            .pools
            .iter()
            .filter(|(_, p)| {
                let node_ok = self
                    .nodes
                    .get(&p.node)
                    .is_some_and(|n| n.online && n.cordons.is_empty());
                let free = p.capacity.saturating_sub(p.used);
                let needed = if v.thin {
                    THIN_FREE_MARGIN.min(v.size)
                } else {
                    v.size
                };
                node_ok
                    && !used_nodes.contains(&p.node.as_str())
                    && !p.faulted
                    && !p.cordon[0]
                    && matches_inclusion(&v.inclusion, &p.labels)
                    && p.capacity > v.size
                    && free >= needed
            })
            .collect();
        candidates.sort_by(|(a_id, a), (b_id, b)| {
            let free = |p: &SimPool| p.capacity.saturating_sub(p.used);
            free(b).cmp(&free(a)).then_with(|| a_id.cmp(b_id))
        });
        candidates.into_iter().map(|(id, _)| id.clone()).collect()
    }

    fn add_replica(&mut self, uuid: &str, pool_id: &str, count: u8) {
        self.next_id += 1;
        let seq = self.next_id;
        let now = self.now;
        let Some(pool) = self.pools.get_mut(pool_id) else {
            return;
        };
        let fail_at = pool.fail_next_rebuild_at.take();
        let Some(v) = self.volumes.get_mut(uuid) else {
            return;
        };
        pool.used += v.size;
        v.replicas.push(SimReplica {
            uuid: replica_uuid(seq),
            pool: pool_id.to_owned(),
            node: pool.node.clone(),
            seq,
            child: ChildSim::Rebuilding {
                started: now,
                fail_at,
            },
        });
        v.num_replicas = count;
    }

    /// The replica a scale-down removes, by the configured [`VictimPolicy`].
    pub fn victim(&self, uuid: &str) -> Result<String, SimError> {
        let v = self
            .volumes
            .get(uuid)
            .ok_or_else(|| SimError::not_found("volume", uuid))?;
        let healthy_count = v
            .replicas
            .iter()
            .filter(|r| healthy(r, &self.pools))
            .count();
        // The last healthy replica is never removed.
        let allowed: Vec<&SimReplica> = v
            .replicas
            .iter()
            .filter(|r| !(healthy(r, &self.pools) && healthy_count <= 1))
            .collect();
        let aware = self.behaviour.topology_aware_scale_down;
        // Sorted ascending: the first is what Mayastor removes first.
        let key = |r: &SimReplica| {
            let pool = self.pools.get(&r.pool);
            let is_healthy = healthy(r, &self.pools);
            let is_child = v.target.is_some();
            let fits_topology =
                !aware || pool.is_some_and(|p| matches_inclusion(&v.inclusion, &p.labels));
            let uncordoned = !aware
                || (self
                    .nodes
                    .get(&r.node)
                    .is_some_and(|n| n.cordons.is_empty())
                    && !pool.is_some_and(|p| p.cordon[0]));
            let local = v.target.as_deref() == Some(r.node.as_str());
            (is_healthy, is_child, fits_topology, uncordoned, local)
        };
        let chosen = match self.behaviour.victims {
            VictimPolicy::Documented => allowed
                .iter()
                .min_by(|a, b| key(a).cmp(&key(b)).then_with(|| a.uuid.cmp(&b.uuid))),
            // Locality is ignored here so that, among well-placed healthy replicas,
            // the newest goes: the one a move has just built on its target tier.
            VictimPolicy::Adversarial => allowed.iter().max_by_key(|r| {
                let (h, c, f, u, _local) = key(r);
                (h, c, f, u, r.seq)
            }),
        };
        chosen.map(|r| r.uuid.clone()).ok_or_else(|| {
            SimError::precondition(format!(
                "no replica of volume {uuid} can be removed without losing its last healthy replica"
            ))
        })
    }

    fn remove_replica(&mut self, uuid: &str, replica: &str, count: u8) {
        let Some(v) = self.volumes.get_mut(uuid) else {
            return;
        };
        if let Some(i) = v.replicas.iter().position(|r| r.uuid == replica) {
            let r = v.replicas.remove(i);
            if let Some(p) = self.pools.get_mut(&r.pool) {
                p.used = p.used.saturating_sub(v.size);
            }
        }
        v.num_replicas = count;
    }

    /// `PUT /pools/{id}/label/{key}={value}?overwrite=`.
    pub fn put_pool_label(
        &mut self,
        id: &str,
        key: &str,
        value: &str,
        overwrite: bool,
    ) -> Result<Value, SimError> {
        if key.is_empty() {
            return Err(SimError::invalid("empty label key"));
        }
        let pool = self
            .pools
            .get_mut(id)
            .ok_or_else(|| SimError::not_found("pool", id))?;
        match pool.labels.get(key) {
            Some(have) if have != value && !overwrite => {
                return Err(SimError::precondition(format!(
                    "pool {id} already has label {key}={have}; use overwrite"
                )));
            }
            _ => {}
        }
        pool.labels.insert(key.to_owned(), value.to_owned());
        self.pool_json(id)
    }

    /// `DELETE /pools/{id}/label/{key}`.
    pub fn delete_pool_label(&mut self, id: &str, key: &str) -> Result<Value, SimError> {
        let pool = self
            .pools
            .get_mut(id)
            .ok_or_else(|| SimError::not_found("pool", id))?;
        if pool.labels.remove(key).is_none() {
            return Err(SimError::precondition(format!(
                "pool {id} has no label {key}"
            )));
        }
        self.pool_json(id)
    }

    /// `PUT` (`on`) or `DELETE` `/pools/{id}/cordon` with `PoolCordonReq` flags.
    pub fn cordon_pool(&mut self, id: &str, flags: [bool; 4], on: bool) -> Result<Value, SimError> {
        let pool = self
            .pools
            .get_mut(id)
            .ok_or_else(|| SimError::not_found("pool", id))?;
        if !on && !pool.cordon.iter().any(|c| *c) {
            return Err(SimError::precondition(format!("pool {id} is not cordoned")));
        }
        for (have, flag) in pool.cordon.iter_mut().zip(flags) {
            if flag {
                *have = on;
            }
        }
        self.pool_json(id)
    }

    /// `PUT` (`on`) or `DELETE` `/nodes/{id}/cordon/{label}`.
    pub fn cordon_node(&mut self, id: &str, label: &str, on: bool) -> Result<Value, SimError> {
        let node = self
            .nodes
            .get_mut(id)
            .ok_or_else(|| SimError::not_found("node", id))?;
        let at = node.cordons.iter().position(|l| l == label);
        match (on, at) {
            (true, None) => node.cordons.push(label.to_owned()),
            (true, Some(_)) => {}
            (false, Some(i)) => {
                node.cordons.remove(i);
            }
            (false, None) => {
                return Err(SimError::precondition(format!(
                    "node {id} has no cordon labelled {label}"
                )));
            }
        }
        self.node_json(id)
    }
}

fn progress(elapsed: Duration, total: Duration) -> u8 {
    let p = elapsed.as_nanos().saturating_mul(100) / total.as_nanos().max(1);
    u8::try_from(p.min(100)).unwrap_or(100)
}

/// RFC 3339 time of a virtual instant, counted from 2026-01-01T00:00:00Z.
fn timestamp(at: Duration) -> String {
    let secs = at.as_secs();
    // Days since 2026-01-01 to a civil date (H. Hinnant's days_from_civil inverse).
    let z = 20454 + secs / 86_400 + 719_468; // 20454 = days from 1970-01-01 to 2026-01-01
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        at.subsec_nanos()
    )
}

fn replica_uuid(n: u64) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}
