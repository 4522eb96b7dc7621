//! `VolumeMigration`: one in-flight move of a volume between tiers. It makes the move
//! visible (`kubectl get vm`) and resumable: every step is recorded here *before* it is
//! taken, so an operator that restarts resumes or rolls back from this object alone.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, Time};
use crate::{GoDuration, Tier};

/// How many entries `status.steps` keeps.
pub const STEP_HISTORY_LIMIT: usize = 32;

/// A requested move of one volume from one tier to another.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "couchestor.io",
    version = "v1alpha1",
    kind = "VolumeMigration",
    doc = "One in-flight move of a volume between tiers, journaled step by step.",
    shortname = "vm",
    status = "VolumeMigrationStatus",
    printcolumn = r#"{"name":"Volume","type":"string","jsonPath":".spec.volumeName"}"#,
    printcolumn = r#"{"name":"From","type":"string","jsonPath":".spec.fromTier"}"#,
    printcolumn = r#"{"name":"To","type":"string","jsonPath":".spec.toTier"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Step","type":"string","jsonPath":".status.step"}"#,
    printcolumn = r#"{"name":"Error","type":"string","jsonPath":".status.lastError","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self == oldSelf")
        .message("a VolumeMigration's spec is immutable; delete it and create a new one"),
    validation = Rule::new("self.fromTier != self.toTier")
        .message("fromTier and toTier are the same")
        .field_path(".toTier"),
)]
pub struct VolumeMigrationSpec {
    /// StoragePolicy that planned the move.
    #[schemars(length(min = 1, max = 253))]
    pub policy_ref: String,
    /// PersistentVolume name.
    #[schemars(length(min = 1, max = 253))]
    pub volume_name: String,
    /// Mayastor volume UUID.
    #[schemars(length(min = 1, max = 64))]
    pub volume_id: String,
    pub from_tier: Tier,
    pub to_tier: Tier,
    /// Keep the source replica after the move.
    #[serde(default)]
    pub preserve_source_replica: bool,
    /// Abort and roll back when the move takes longer (copied from the policy).
    #[serde(default = "default_timeout")]
    pub timeout: GoDuration,
}

fn default_timeout() -> GoDuration {
    GoDuration::new("30m")
}

/// Overall outcome of a move.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum MigrationPhase {
    Pending,
    Running,
    Succeeded,
    /// Gave up; the volume keeps at least its starting healthy replicas.
    Failed,
    /// Aborted (timeout, policy deleted) and undone.
    RolledBack,
}

impl MigrationPhase {
    /// Whether the move is over.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::RolledBack)
    }
}

/// The steps of a move on Mayastor 2.x (DESIGN §5), in order.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
pub enum MigrationStep {
    /// Nothing done yet.
    Pending,
    /// Making only target-tier pools eligible (cordon / temporary label).
    Steering,
    /// `replica_count` + 1.
    ScalingUp,
    /// Waiting for the new child to be Online with no rebuild in progress.
    WaitingForSync,
    /// Making the source replica the preferred victim of the scale-down.
    MarkingVictim,
    /// `replica_count` − 1.
    ScalingDown,
    /// Checking which replica went.
    Verifying,
    /// The wrong replica went: adding one back on the target tier.
    Repairing,
    /// Undoing every cordon and label this move applied.
    RestoringSteering,
    /// Done (see phase).
    Finished,
}

/// A Mayastor replica as the move saw it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaRef {
    pub uuid: String,
    pub pool: String,
    pub node: String,
}

/// One change to cluster-wide pool steering, recorded so it can always be undone.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SteeringChange {
    pub pool: String,
    /// `Cordon` or `Label`.
    pub kind: String,
    /// Label key or cordon label.
    pub key: String,
    /// The value before the change (`None`: absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_value: Option<String>,
}

/// One step as it was taken.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepRecord {
    pub step: MigrationStep,
    pub at: Time,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// Observed state and journal of a move.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMigrationStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<MigrationPhase>,
    /// The step about to be taken or in progress (written before it is taken).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<MigrationStep>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Healthy replicas when the move started; never gone below.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_healthy_replicas: Option<u32>,
    /// Replicas on source-tier pools at the start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_replicas: Vec<ReplicaRef>,
    /// The replica added on the target tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub added_replica: Option<ReplicaRef>,
    /// Replicas this move added on the target tier and still counts on; one that
    /// disappears was removed by mistake (or lost) and is replaced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_replicas: Vec<ReplicaRef>,
    /// How many times a replica this move added was lost (the wrong scale-down victim,
    /// a failed rebuild) and had to be replaced; past the executor's limit it rolls back.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub repairs: u32,
    /// Why the move is being rolled back; set (and persisted) before the rollback
    /// starts, so a restarted operator keeps rolling back instead of resuming.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_reason: Option<String>,
    /// Steering applied and not yet undone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steering: Vec<SteeringChange>,
    /// Journal of steps taken, oldest first, at most [`STEP_HISTORY_LIMIT`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl VolumeMigrationStatus {
    /// Records that `step` is about to be taken (journal bounded, oldest dropped).
    pub fn enter(&mut self, step: MigrationStep, at: Time, message: impl Into<String>) {
        self.step = Some(step);
        self.steps.push(StepRecord {
            step,
            at,
            message: message.into(),
        });
        if self.steps.len() > STEP_HISTORY_LIMIT {
            let excess = self.steps.len() - STEP_HISTORY_LIMIT;
            self.steps.drain(..excess);
        }
    }
}
