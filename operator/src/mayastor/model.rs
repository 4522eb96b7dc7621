//! The REST v0 payloads the operator reads, as lenient serde types.
//!
//! Field names and enum values follow Mayastor's published OpenAPI document
//! (`control-plane/rest/openapi-specs/v0_api_spec.yaml`, see
//! `../shared/reference/mayastor-csi.md` §1.3). Every field is optional on the wire:
//! a missing field *or an explicit `null`* becomes its default, unknown fields are
//! ignored and an enum value this code does not know becomes `Unknown`. The spec
//! itself is not reliable here (`VolumeSpec` lists required fields it never defines),
//! and versions add fields, so a strict parser would break on the next upgrade.

use std::collections::BTreeMap;

use couchestor_core::{plan::ObservedVolume, tier::Load};
use serde::{Deserialize, Deserializer, Serialize};

/// `null` or missing ⇒ `T::default()`.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Labels as the API carries them (`{key: value}`).
pub type Labels = BTreeMap<String, String>;

macro_rules! lenient_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
        pub enum $name {
            $($variant,)*
            /// Also what an unrecognised value becomes.
            #[default]
            #[serde(other)]
            Unknown,
        }
    };
}

lenient_enum!(
    /// `VolumeStatus`.
    VolumeStatus { Online, Degraded, Faulted, Shutdown }
);
lenient_enum!(
    /// `ChildState`: a nexus child (and a replica topology's `child-status`).
    ChildState { Online, Degraded, Faulted }
);
lenient_enum!(
    /// `ReplicaState`.
    ReplicaState { Online, Degraded, Faulted }
);
lenient_enum!(
    /// `NexusState`.
    NexusState { Online, Degraded, Faulted, ShuttingDown, Shutdown }
);
lenient_enum!(
    /// `PoolStatus` (newer servers add `Offline` and `Suspected`).
    PoolStatus { Online, Degraded, Faulted, Offline, Suspected }
);
lenient_enum!(
    /// `NodeStatus`.
    NodeStatus { Online, Offline }
);

/// `Volume`: what the user asked for and what the data plane reports.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Volume {
    #[serde(default, deserialize_with = "nullable")]
    pub spec: VolumeSpec,
    #[serde(default, deserialize_with = "nullable")]
    pub state: VolumeState,
}

/// `Volumes`: one page of `GET /volumes`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Volumes {
    #[serde(default, deserialize_with = "nullable")]
    pub entries: Vec<Volume>,
    #[serde(default)]
    pub next_token: Option<u64>,
}

/// `VolumeSpec`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct VolumeSpec {
    #[serde(default, deserialize_with = "nullable")]
    pub uuid: String,
    #[serde(default, deserialize_with = "nullable")]
    pub size: u64,
    #[serde(default, deserialize_with = "nullable")]
    pub num_replicas: u8,
    /// `Creating|Created|Deleting|Deleted`, kept as text.
    #[serde(default, deserialize_with = "nullable")]
    pub status: String,
    #[serde(default, deserialize_with = "nullable")]
    pub thin: bool,
    #[serde(default)]
    pub topology: Option<Topology>,
    #[serde(default)]
    pub target: Option<VolumeTarget>,
    /// An operation the control plane has in flight on this volume.
    #[serde(default)]
    pub operation: Option<SpecOperation>,
    #[serde(default, deserialize_with = "nullable")]
    pub labels: Labels,
}

/// `Topology`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Topology {
    /// Node topology is not interpreted by the operator; kept raw.
    #[serde(default)]
    pub node_topology: Option<serde_json::Value>,
    #[serde(default)]
    pub pool_topology: Option<PoolTopology>,
}

/// `PoolTopology`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct PoolTopology {
    #[serde(default)]
    pub labelled: Option<LabelledTopology>,
}

/// `LabelledTopology`: `inclusion` keys must be on a pool (an empty value means
/// "any value"), `exclusion` spreads, `affinitykey` groups.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct LabelledTopology {
    #[serde(default, deserialize_with = "nullable")]
    pub inclusion: Labels,
    #[serde(default, deserialize_with = "nullable")]
    pub exclusion: Labels,
    /// Spelled `affinitykey` in the spec; `affinity_key` accepted too.
    #[serde(default, alias = "affinity_key", deserialize_with = "nullable")]
    pub affinitykey: Vec<String>,
}

/// `VolumeTarget`: where the nexus is (or should be) published.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct VolumeTarget {
    #[serde(default, deserialize_with = "nullable")]
    pub node: String,
    #[serde(default)]
    pub protocol: Option<String>,
}

/// `{operation, result?}`: the record of an operation in progress.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct SpecOperation {
    #[serde(default, deserialize_with = "nullable")]
    pub operation: String,
    #[serde(default)]
    pub result: Option<bool>,
}

/// `VolumeState`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct VolumeState {
    #[serde(default, deserialize_with = "nullable")]
    pub uuid: String,
    #[serde(default, deserialize_with = "nullable")]
    pub size: u64,
    #[serde(default, deserialize_with = "nullable")]
    pub status: VolumeStatus,
    /// The nexus, when the volume is published.
    #[serde(default)]
    pub target: Option<Nexus>,
    /// Replica UUID → where it is and how it is.
    #[serde(default, deserialize_with = "nullable")]
    pub replica_topology: BTreeMap<String, ReplicaTopology>,
}

/// `Nexus`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Nexus {
    #[serde(default, deserialize_with = "nullable")]
    pub uuid: String,
    #[serde(default, deserialize_with = "nullable")]
    pub node: String,
    #[serde(default, rename = "deviceUri", deserialize_with = "nullable")]
    pub device_uri: String,
    #[serde(default, deserialize_with = "nullable")]
    pub state: NexusState,
    #[serde(default, deserialize_with = "nullable")]
    pub rebuilds: u32,
    #[serde(default, deserialize_with = "nullable")]
    pub children: Vec<Child>,
}

/// `Child`: one nexus child.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Child {
    #[serde(default, deserialize_with = "nullable")]
    pub uri: String,
    #[serde(default, deserialize_with = "nullable")]
    pub state: ChildState,
    #[serde(default)]
    pub state_reason: Option<String>,
    /// 0..=100 while rebuilding.
    #[serde(default, rename = "rebuildProgress")]
    pub rebuild_progress: Option<u8>,
}

impl Child {
    /// The replica UUID in the child URI's `uuid=` query parameter, if any.
    pub fn replica_uuid(&self) -> Option<&str> {
        uuid_param(&self.uri)
    }
}

/// `ReplicaTopology`; the wire keys are hyphenated.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct ReplicaTopology {
    #[serde(default)]
    pub node: Option<String>,
    #[serde(default)]
    pub pool: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub state: ReplicaState,
    #[serde(default, rename = "child-status")]
    pub child_status: Option<ChildState>,
    #[serde(default, rename = "child-status-reason")]
    pub child_status_reason: Option<String>,
    #[serde(default, rename = "rebuild-progress")]
    pub rebuild_progress: Option<u8>,
}

impl ReplicaTopology {
    /// In sync: the replica is Online, its nexus child (if published) is Online, and
    /// no rebuild is running (reference §1.3).
    pub fn is_healthy(&self) -> bool {
        self.state == ReplicaState::Online
            && matches!(self.child_status, None | Some(ChildState::Online))
            && self.rebuild_progress.is_none()
    }

    /// A rebuild of this replica's child is running.
    pub fn is_rebuilding(&self) -> bool {
        self.rebuild_progress.is_some()
    }
}

impl Volume {
    /// The Mayastor volume UUID.
    pub fn uuid(&self) -> &str {
        if self.spec.uuid.is_empty() {
            &self.state.uuid
        } else {
            &self.spec.uuid
        }
    }

    /// The PersistentVolume name the CSI driver gives this volume (`pvc-<uuid>`).
    pub fn pv_name(&self) -> String {
        format!("pvc-{}", self.uuid())
    }

    /// The pool inclusion labels fixed at creation (empty: any pool).
    pub fn pool_inclusion(&self) -> Labels {
        self.spec
            .topology
            .as_ref()
            .and_then(|t| t.pool_topology.as_ref())
            .and_then(|p| p.labelled.as_ref())
            .map(|l| l.inclusion.clone())
            .unwrap_or_default()
    }

    /// Replicas that are in sync.
    pub fn healthy_replicas(&self) -> impl Iterator<Item = (&String, &ReplicaTopology)> {
        self.state
            .replica_topology
            .iter()
            .filter(|(_, r)| r.is_healthy())
    }

    /// Nothing in flight: Online, no operation, as many replicas as asked, all in sync.
    pub fn is_settled(&self) -> bool {
        self.state.status == VolumeStatus::Online
            && self.spec.operation.is_none()
            && self.state.replica_topology.len() == usize::from(self.spec.num_replicas)
            && self.state.replica_topology.values().all(|r| r.is_healthy())
    }

    /// Labels of the pools holding this volume's healthy replicas, as the planner's
    /// [`ObservedVolume::replica_pools`] wants them. A replica on a pool missing from
    /// `pools` yields empty labels (a pool no tier selector matches: unplaced).
    pub fn healthy_replica_pool_labels(&self, pools: &[Pool]) -> Vec<Labels> {
        self.healthy_replicas()
            .map(|(_, r)| {
                r.pool
                    .as_deref()
                    .and_then(|id| pools.iter().find(|p| p.id == id))
                    .map(|p| p.labels().clone())
                    .unwrap_or_default()
            })
            .collect()
    }

    /// The planner's view of this volume, named by its PV name. `last_moved` and
    /// `recorded_tier` come from the operator's own records, not from Mayastor.
    pub fn observed(&self, pools: &[Pool], load: Load) -> ObservedVolume {
        ObservedVolume {
            name: self.pv_name(),
            replica_pools: self.healthy_replica_pool_labels(pools),
            load,
            last_moved: None,
            recorded_tier: None,
        }
    }
}

/// `Pool`: `spec` and `state` may each be missing (e.g. a pool whose node is down
/// has no state).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Pool {
    #[serde(default, deserialize_with = "nullable")]
    pub id: String,
    #[serde(default)]
    pub spec: Option<PoolSpec>,
    #[serde(default)]
    pub state: Option<PoolState>,
}

/// `PoolSpec`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct PoolSpec {
    #[serde(default, deserialize_with = "nullable")]
    pub id: String,
    #[serde(default, deserialize_with = "nullable")]
    pub node: String,
    #[serde(default, deserialize_with = "nullable")]
    pub disks: Vec<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub labels: Labels,
    #[serde(default, deserialize_with = "nullable")]
    pub status: String,
    /// Pool cordon (OpenEBS ≥ 4.4). The shape is read from the pool-cordon OEP and
    /// the upstream tests (`spec.cordon_drain.cordoned`), not from a released spec.
    #[serde(default)]
    pub cordon_drain: Option<PoolCordonDrain>,
}

/// `cordon_drain` of a pool spec.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct PoolCordonDrain {
    #[serde(default)]
    pub cordoned: Option<PoolCordon>,
}

/// Which resources a pool cordon blocks; also the `PoolCordonReq` body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolCordon {
    #[serde(default, deserialize_with = "nullable")]
    pub replicas: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub snapshots: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub restores: bool,
    #[serde(default, alias = "imports", deserialize_with = "nullable")]
    pub import: bool,
}

impl PoolCordon {
    /// Blocks new replicas only: what steering a move needs.
    pub const REPLICAS: Self = Self {
        replicas: true,
        snapshots: false,
        restores: false,
        import: false,
    };
}

/// `PoolState`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct PoolState {
    #[serde(default, deserialize_with = "nullable")]
    pub id: String,
    #[serde(default, deserialize_with = "nullable")]
    pub node: String,
    #[serde(default, deserialize_with = "nullable")]
    pub capacity: u64,
    #[serde(default, deserialize_with = "nullable")]
    pub used: u64,
    #[serde(default)]
    pub committed: Option<u64>,
    #[serde(default, deserialize_with = "nullable")]
    pub status: PoolStatus,
}

static NO_LABELS: Labels = BTreeMap::new();

impl Pool {
    /// Live labels (the scheduler reads these on every placement).
    pub fn labels(&self) -> &Labels {
        self.spec.as_ref().map(|s| &s.labels).unwrap_or(&NO_LABELS)
    }

    /// The node, from the state or else the spec.
    pub fn node(&self) -> &str {
        match (&self.state, &self.spec) {
            (Some(s), _) if !s.node.is_empty() => &s.node,
            (_, Some(s)) => &s.node,
            _ => "",
        }
    }

    /// `Unknown` when the pool has no state.
    pub fn status(&self) -> PoolStatus {
        self.state.as_ref().map(|s| s.status).unwrap_or_default()
    }

    /// Free bytes (`capacity − used`), 0 without state.
    pub fn free(&self) -> u64 {
        self.state
            .as_ref()
            .map(|s| s.capacity.saturating_sub(s.used))
            .unwrap_or(0)
    }

    /// New replicas may not be placed here because of a pool cordon.
    pub fn is_cordoned_for_replicas(&self) -> bool {
        self.spec
            .as_ref()
            .and_then(|s| s.cordon_drain.as_ref())
            .and_then(|c| c.cordoned)
            .is_some_and(|c| c.replicas)
    }
}

/// `Node`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Node {
    #[serde(default, deserialize_with = "nullable")]
    pub id: String,
    #[serde(default)]
    pub spec: Option<NodeSpec>,
    #[serde(default)]
    pub state: Option<NodeState>,
}

/// `NodeSpec`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct NodeSpec {
    #[serde(default, deserialize_with = "nullable")]
    pub id: String,
    #[serde(default, rename = "grpcEndpoint", deserialize_with = "nullable")]
    pub grpc_endpoint: String,
    #[serde(default, deserialize_with = "nullable")]
    pub labels: Labels,
    #[serde(default)]
    pub cordondrainstate: Option<CordonDrainState>,
}

/// `CordonDrainState`: one of cordoned, draining or drained.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct CordonDrainState {
    #[serde(default)]
    pub cordonedstate: Option<CordonLabels>,
    #[serde(default)]
    pub drainingstate: Option<CordonLabels>,
    #[serde(default)]
    pub drainedstate: Option<CordonLabels>,
}

/// The cordon labels of a cordoned / draining / drained node.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct CordonLabels {
    #[serde(default, deserialize_with = "nullable")]
    pub cordonlabels: Vec<String>,
}

/// `NodeState`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct NodeState {
    #[serde(default, deserialize_with = "nullable")]
    pub id: String,
    #[serde(default, deserialize_with = "nullable")]
    pub status: NodeStatus,
}

impl Node {
    /// Labels of every cordon on this node (a draining or drained node is cordoned too).
    pub fn cordon_labels(&self) -> Vec<String> {
        let Some(state) = self.spec.as_ref().and_then(|s| s.cordondrainstate.as_ref()) else {
            return Vec::new();
        };
        [
            &state.cordonedstate,
            &state.drainingstate,
            &state.drainedstate,
        ]
        .into_iter()
        .flatten()
        .flat_map(|c| c.cordonlabels.iter().cloned())
        .collect()
    }

    /// `Unknown` when the node has no state.
    pub fn status(&self) -> NodeStatus {
        self.state.as_ref().map(|s| s.status).unwrap_or_default()
    }
}

/// `Replica` (from `GET /replicas`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Replica {
    #[serde(default, deserialize_with = "nullable")]
    pub uuid: String,
    #[serde(default, deserialize_with = "nullable")]
    pub node: String,
    #[serde(default, deserialize_with = "nullable")]
    pub pool: String,
    #[serde(default, rename = "poolUuid")]
    pub pool_uuid: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub size: u64,
    #[serde(default, deserialize_with = "nullable")]
    pub thin: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub state: ReplicaState,
    #[serde(default, deserialize_with = "nullable")]
    pub uri: String,
    #[serde(default, deserialize_with = "nullable")]
    pub share: String,
    #[serde(default, deserialize_with = "nullable")]
    pub kind: String,
}

/// `RebuildHistory` of a volume's nexus (`GET /volumes/{id}/rebuild-history`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct RebuildHistory {
    #[serde(default, rename = "targetUuid", deserialize_with = "nullable")]
    pub target_uuid: String,
    #[serde(default, deserialize_with = "nullable")]
    pub records: Vec<RebuildRecord>,
}

/// `RebuildRecord`: one finished rebuild job.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct RebuildRecord {
    #[serde(default, rename = "childUri", deserialize_with = "nullable")]
    pub child_uri: String,
    #[serde(default, rename = "srcUri", deserialize_with = "nullable")]
    pub src_uri: String,
    /// `Init|Rebuilding|Stopped|Paused|Failed|Completed`. The spec's own example
    /// spells the key `state`, so that is accepted too.
    #[serde(
        default,
        rename = "rebuildJobState",
        alias = "state",
        deserialize_with = "nullable"
    )]
    pub job_state: String,
    #[serde(default, rename = "blocksTotal", deserialize_with = "nullable")]
    pub blocks_total: u64,
    #[serde(default, rename = "blocksRecovered", deserialize_with = "nullable")]
    pub blocks_recovered: u64,
    #[serde(default, rename = "isPartial", deserialize_with = "nullable")]
    pub is_partial: bool,
    #[serde(default, rename = "startTime", deserialize_with = "nullable")]
    pub start_time: String,
    #[serde(default, rename = "endTime", deserialize_with = "nullable")]
    pub end_time: String,
}

impl RebuildRecord {
    /// The replica UUID in the child URI's `uuid=` parameter, if any.
    pub fn replica_uuid(&self) -> Option<&str> {
        uuid_param(&self.child_uri)
    }

    /// The job finished successfully.
    pub fn completed(&self) -> bool {
        self.job_state == "Completed"
    }
}

fn uuid_param(uri: &str) -> Option<&str> {
    let query = uri.split_once('?')?.1;
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("uuid="))
        .filter(|u| !u.is_empty())
}

/// `RestJsonError`: the body of every 4xx/5xx answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestJsonError {
    #[serde(default, deserialize_with = "nullable")]
    pub details: String,
    #[serde(default, deserialize_with = "nullable")]
    pub message: String,
    #[serde(default, deserialize_with = "nullable")]
    pub kind: String,
}

#[cfg(test)]
mod tests;
