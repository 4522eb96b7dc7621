//! `StoragePolicy`: which volumes are tiered, between which pools, at which load.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, LabelSelector, Time};
use crate::{GoDuration, Tier};

/// Default `highWatermarkIOPS`.
pub const DEFAULT_HIGH_WATERMARK_IOPS: u32 = 5000;
/// `warmWatermarkIOPS` used when a warm tier is configured and the field is omitted.
pub const DEFAULT_WARM_WATERMARK_IOPS: u32 = 2000;
/// Default `lowWatermarkIOPS`.
pub const DEFAULT_LOW_WATERMARK_IOPS: u32 = 500;
/// Default `maxConcurrentMigrations`.
pub const DEFAULT_MAX_CONCURRENT_MIGRATIONS: u32 = 2;
/// Bounds of `maxConcurrentMigrations`.
pub const MAX_CONCURRENT_MIGRATIONS_RANGE: std::ops::RangeInclusive<u32> = 1..=50;
/// Default `ecMinVolumeSizeBytes` (10 GiB).
pub const DEFAULT_EC_MIN_VOLUME_SIZE_BYTES: u64 = 10 << 30;
/// How many entries `status.migrationHistory` keeps (oldest dropped first).
pub const MIGRATION_HISTORY_LIMIT: usize = 20;

/// Policy-driven tiering of the volumes of one StorageClass across Mayastor pools.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "couchestor.io",
    version = "v1alpha1",
    kind = "StoragePolicy",
    doc = "Tiers the volumes of one StorageClass between Mayastor pools by their IOPS.",
    shortname = "sp",
    status = "StoragePolicyStatus",
    printcolumn = r#"{"name":"StorageClass","type":"string","jsonPath":".spec.storageClassName"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Hot","type":"integer","jsonPath":".status.volumes.hot"}"#,
    printcolumn = r#"{"name":"Warm","type":"integer","jsonPath":".status.volumes.warm","priority":1}"#,
    printcolumn = r#"{"name":"Cold","type":"integer","jsonPath":".status.volumes.cold"}"#,
    printcolumn = r#"{"name":"Moving","type":"integer","jsonPath":".status.activeMigrations"}"#,
    printcolumn = r#"{"name":"DryRun","type":"boolean","jsonPath":".spec.dryRun"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.lowWatermarkIOPS < self.highWatermarkIOPS")
        .message("lowWatermarkIOPS must be below highWatermarkIOPS")
        .field_path(".lowWatermarkIOPS"),
    validation = Rule::new("!has(self.warmWatermarkIOPS) || has(self.warmPoolSelector)")
        .message("warmWatermarkIOPS is set but warmPoolSelector is absent: there is no warm tier")
        .field_path(".warmWatermarkIOPS"),
    validation = Rule::new("!has(self.warmPoolSelector) || (self.lowWatermarkIOPS < (has(self.warmWatermarkIOPS) ? self.warmWatermarkIOPS : 2000) && (has(self.warmWatermarkIOPS) ? self.warmWatermarkIOPS : 2000) < self.highWatermarkIOPS)")
        .message("with a warm tier, lowWatermarkIOPS < warmWatermarkIOPS < highWatermarkIOPS must hold (warmWatermarkIOPS defaults to 2000)")
        .field_path(".warmWatermarkIOPS"),
    validation = Rule::new("self.hotPoolSelector != self.coldPoolSelector")
        .message("hotPoolSelector and coldPoolSelector are identical: a volume could never change tier")
        .field_path(".coldPoolSelector"),
    validation = Rule::new("!has(self.warmPoolSelector) || (self.warmPoolSelector != self.hotPoolSelector && self.warmPoolSelector != self.coldPoolSelector)")
        .message("warmPoolSelector is identical to hotPoolSelector or coldPoolSelector")
        .field_path(".warmPoolSelector"),
)]
pub struct StoragePolicySpec {
    /// The StorageClass whose volumes this policy tiers.
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: String,
    /// Only PVCs with these labels are tiered; all volumes of the class when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_selector: Option<LabelSelector>,
    /// Mayastor pools of the hot tier (pool labels).
    #[x_kube(validation = Rule::new("(has(self.matchLabels) && size(self.matchLabels) > 0) || (has(self.matchExpressions) && size(self.matchExpressions) > 0)").message("an empty selector would select every pool; give matchLabels or matchExpressions"))]
    pub hot_pool_selector: LabelSelector,
    /// Mayastor pools of the optional warm tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("(has(self.matchLabels) && size(self.matchLabels) > 0) || (has(self.matchExpressions) && size(self.matchExpressions) > 0)").message("an empty selector would select every pool; give matchLabels or matchExpressions"))]
    pub warm_pool_selector: Option<LabelSelector>,
    /// Mayastor pools of the cold tier.
    #[x_kube(validation = Rule::new("(has(self.matchLabels) && size(self.matchLabels) > 0) || (has(self.matchExpressions) && size(self.matchExpressions) > 0)").message("an empty selector would select every pool; give matchLabels or matchExpressions"))]
    pub cold_pool_selector: LabelSelector,
    /// At or above this many IOPS a volume belongs on the hot tier.
    #[serde(rename = "highWatermarkIOPS", default = "default_high")]
    pub high_watermark_iops: u32,
    /// At or above this many IOPS a cold volume goes warm, and below it a hot volume
    /// leaves hot. Only with a warm tier; 2000 when omitted there.
    #[serde(
        rename = "warmWatermarkIOPS",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub warm_watermark_iops: Option<u32>,
    /// At or below this many IOPS a volume belongs on the cold tier.
    #[serde(rename = "lowWatermarkIOPS", default = "default_low")]
    pub low_watermark_iops: u32,
    /// Window over which IOPS are averaged; no decision before a full window of data.
    #[serde(default = "default_sampling_window")]
    pub sampling_window: GoDuration,
    /// Minimum time between two moves of the same volume.
    #[serde(default = "default_cooldown_period")]
    pub cooldown_period: GoDuration,
    /// A move taking longer than this is aborted and rolled back.
    #[serde(default = "default_migration_timeout")]
    pub migration_timeout: GoDuration,
    /// At most this many moves of this policy run at once (1..=50).
    #[serde(default = "default_max_concurrent")]
    #[schemars(range(min = 1, max = 50))]
    pub max_concurrent_migrations: u32,
    /// Keep the source replica after a move (the volume gains a replica).
    #[serde(default)]
    pub preserve_source_replica: bool,
    /// `false` stops new moves at once; moves in flight finish.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Compute and publish the plan (`status.plannedMigrations`) without moving anything.
    #[serde(default)]
    pub dry_run: bool,
    /// ErasureCodingPolicy used to archive long-cold, detached volumes; no archiving
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ec_policy_ref: Option<String>,
    /// Volumes smaller than this are never archived.
    #[serde(default = "default_ec_min_volume_size")]
    pub ec_min_volume_size_bytes: u64,
    /// A cold volume detached this long is archived.
    #[serde(default = "default_archive_after")]
    pub archive_after: GoDuration,
}

fn default_high() -> u32 {
    DEFAULT_HIGH_WATERMARK_IOPS
}
fn default_low() -> u32 {
    DEFAULT_LOW_WATERMARK_IOPS
}
fn default_sampling_window() -> GoDuration {
    GoDuration::new("1h")
}
fn default_cooldown_period() -> GoDuration {
    GoDuration::new("24h")
}
fn default_migration_timeout() -> GoDuration {
    GoDuration::new("30m")
}
fn default_max_concurrent() -> u32 {
    DEFAULT_MAX_CONCURRENT_MIGRATIONS
}
fn default_true() -> bool {
    true
}
fn default_ec_min_volume_size() -> u64 {
    DEFAULT_EC_MIN_VOLUME_SIZE_BYTES
}
fn default_archive_after() -> GoDuration {
    GoDuration::new("7d")
}

impl StoragePolicySpec {
    /// The warm watermark in force: `Some` only with a warm tier.
    pub fn effective_warm_watermark_iops(&self) -> Option<u32> {
        self.warm_pool_selector.as_ref().map(|_| {
            self.warm_watermark_iops
                .unwrap_or(DEFAULT_WARM_WATERMARK_IOPS)
        })
    }

    /// The tiers this policy uses, hottest first.
    pub fn tiers(&self) -> Vec<Tier> {
        Tier::ALL
            .into_iter()
            .filter(|t| *t != Tier::Warm || self.warm_pool_selector.is_some())
            .collect()
    }

    /// The pool selector of `tier`, if the policy has that tier.
    pub fn pool_selector(&self, tier: Tier) -> Option<&LabelSelector> {
        match tier {
            Tier::Hot => Some(&self.hot_pool_selector),
            Tier::Warm => self.warm_pool_selector.as_ref(),
            Tier::Cold => Some(&self.cold_pool_selector),
        }
    }
}

/// Lifecycle phase of a policy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PolicyPhase {
    /// Accepted, first evaluation not done yet.
    Pending,
    /// Evaluating and moving volumes.
    Active,
    /// `enabled: false`: no new moves; moves in flight finish.
    Disabled,
    /// The policy cannot be applied (see conditions).
    Error,
}

/// Number of watched volumes per tier.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct TierCounts {
    #[serde(default)]
    pub hot: u32,
    #[serde(default)]
    pub warm: u32,
    #[serde(default)]
    pub cold: u32,
    /// Volumes whose replicas are on no tier's pools, or on several tiers' pools.
    #[serde(default)]
    pub unplaced: u32,
    /// Volumes whose data lives only in the EC archive.
    #[serde(default)]
    pub archived: u32,
}

/// A move the policy would start (dry run) or has planned.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlannedMigration {
    /// PersistentVolume name.
    pub volume: String,
    pub from_tier: Tier,
    pub to_tier: Tier,
    /// IOPS the decision was based on.
    #[serde(rename = "observedIOPS")]
    pub observed_iops: f64,
    /// Why the volume moves.
    pub reason: String,
}

/// One finished move, newest first in `migrationHistory`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationRecord {
    pub volume: String,
    pub from_tier: Tier,
    pub to_tier: Tier,
    /// `Succeeded`, `Failed` or `RolledBack`.
    pub result: String,
    pub started_at: Time,
    pub finished_at: Time,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Observed state of a StoragePolicy, written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoragePolicyStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<PolicyPhase>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `MetricsAvailable`, `MayastorAvailable`, …
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Watched volumes per tier.
    #[serde(default)]
    pub volumes: TierCounts,
    /// Moves of this policy in flight.
    #[serde(default)]
    pub active_migrations: u32,
    /// Moves ever started (monotonic).
    #[serde(default)]
    pub total_migrations: u64,
    /// Moves that failed or were rolled back (monotonic).
    #[serde(default)]
    pub failed_migrations: u64,
    /// In dry run: the moves the policy would start now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub planned_migrations: Vec<PlannedMigration>,
    /// The last finished moves, newest first, at most [`MIGRATION_HISTORY_LIMIT`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub migration_history: Vec<MigrationRecord>,
    /// When the policy was last evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_evaluated: Option<Time>,
}

impl StoragePolicyStatus {
    /// Adds a finished move at the front of the history, dropping the oldest past the
    /// limit.
    pub fn record(&mut self, record: MigrationRecord) {
        self.migration_history.insert(0, record);
        self.migration_history.truncate(MIGRATION_HISTORY_LIMIT);
    }
}
