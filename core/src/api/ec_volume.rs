//! `EcVolume`: one archived volume (never one object per stripe).

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, Time};

/// The layout a volume was archived with, frozen at archive time: reading it back
/// needs exactly these parameters and the same codec.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EcLayout {
    #[schemars(range(min = 1, max = 254))]
    pub data_shards: u32,
    #[schemars(range(min = 1, max = 254))]
    pub parity_shards: u32,
    #[schemars(range(min = 65536, max = 67108864))]
    pub stripe_size_bytes: u64,
    /// Which encoder produced the parity (different codecs produce different parity),
    /// e.g. `rs-gf8-cauchy-v1`.
    #[schemars(length(min = 1, max = 63))]
    pub codec_id: String,
}

/// An archived volume: its source, its frozen layout and where its shards live.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "couchestor.io",
    version = "v1alpha1",
    kind = "EcVolume",
    doc = "One volume archived as erasure-coded shards on node agents.",
    shortname = "ecv",
    status = "EcVolumeStatus",
    printcolumn = r#"{"name":"Volume","type":"string","jsonPath":".spec.sourcePersistentVolume"}"#,
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".status.state"}"#,
    printcolumn = r#"{"name":"K","type":"integer","jsonPath":".spec.layout.dataShards","priority":1}"#,
    printcolumn = r#"{"name":"M","type":"integer","jsonPath":".spec.layout.parityShards","priority":1}"#,
    printcolumn = r#"{"name":"Healthy","type":"integer","jsonPath":".status.health.healthyColumns"}"#,
    printcolumn = r#"{"name":"Progress","type":"string","jsonPath":".status.progress.percent"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.layout == oldSelf.layout")
        .message("layout is frozen once a volume is archived")
        .field_path(".layout"),
    validation = Rule::new("self.layout.stripeSizeBytes % (self.layout.dataShards * 64) == 0")
        .message("layout.stripeSizeBytes must be a multiple of layout.dataShards × 64")
        .field_path(".layout.stripeSizeBytes"),
    validation = Rule::new("self.layout.dataShards + self.layout.parityShards <= 255")
        .message("layout.dataShards + layout.parityShards must be at most 255")
        .field_path(".layout.parityShards"),
)]
pub struct EcVolumeSpec {
    /// The PersistentVolume that was archived.
    #[schemars(length(min = 1, max = 253))]
    pub source_persistent_volume: String,
    /// Mayastor volume UUID of the source (reused when rehydrating).
    #[schemars(length(min = 1, max = 64))]
    pub source_volume_id: String,
    /// Logical size of the volume in bytes.
    #[schemars(range(min = 1))]
    pub size_bytes: u64,
    /// ErasureCodingPolicy the layout was taken from.
    #[schemars(length(min = 1, max = 253))]
    pub ec_policy_ref: String,
    /// The layout snapshot (immutable).
    pub layout: EcLayout,
}

/// State of an archived volume.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum EcVolumeState {
    /// Being read from its Mayastor volume and written as shards.
    Destaging,
    /// Every column healthy and verified.
    Ready,
    /// Readable (≥ k healthy columns) but some columns are missing or corrupt.
    Degraded,
    /// A lost column is being rebuilt on another node.
    Rebuilding,
    /// Being written back into a Mayastor volume.
    Rehydrating,
    /// More than m columns lost: data cannot be reconstructed.
    Failed,
}

/// Where one shard column lives.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ColumnPlacement {
    /// Column index: 0..k are data, k..k+m parity.
    pub column: u32,
    /// Kubernetes node holding the column.
    pub node: String,
    /// Node agent gRPC endpoint (`https://host:port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Whether the column was healthy at the last check.
    #[serde(default = "default_true")]
    pub healthy: bool,
}

fn default_true() -> bool {
    true
}

/// Progress of the current long-running operation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EcProgress {
    /// `Destage`, `Rebuild`, `Scrub` or `Rehydrate`.
    pub operation: String,
    pub stripes_done: u64,
    pub stripes_total: u64,
    /// `stripes_done / stripes_total` as text for `kubectl get` (`42%`).
    pub percent: String,
}

impl EcProgress {
    /// Progress with its percentage text filled in.
    pub fn new(operation: impl Into<String>, stripes_done: u64, stripes_total: u64) -> Self {
        let percent = stripes_done
            .saturating_mul(100)
            .checked_div(stripes_total)
            .unwrap_or(100);
        Self {
            operation: operation.into(),
            stripes_done,
            stripes_total,
            percent: format!("{percent}%"),
        }
    }
}

/// Health summary of an archived volume.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EcHealth {
    pub healthy_columns: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_columns: Vec<u32>,
    /// Shards found corrupt (checksum mismatch) and repaired, over the volume's life.
    #[serde(default)]
    pub repaired_shards: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scrub: Option<Time>,
}

/// Observed state of an archived volume.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EcVolumeStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<EcVolumeState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Column → node placement.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub placement: Vec<ColumnPlacement>,
    /// Stripes in the archive (the last one may be short).
    #[serde(default)]
    pub stripe_count: u64,
    /// Stripes durably written and indexed on every column (destage resumes here).
    #[serde(default)]
    pub destaged_stripes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<EcProgress>,
    #[serde(default)]
    pub health: EcHealth,
}
