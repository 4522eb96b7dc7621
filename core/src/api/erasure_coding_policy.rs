//! `ErasureCodingPolicy`: the k+m layout used to archive cold volumes.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Condition;
use crate::GoDuration;

/// The only algorithm implemented: Reed-Solomon over GF(2^8).
pub const ALGORITHM_REED_SOLOMON: &str = "ReedSolomon";
/// Algorithms accepted by validation (others are rejected until implemented).
pub const ALGORITHMS: [&str; 1] = [ALGORITHM_REED_SOLOMON];
/// Most shards (k + m) a GF(2^8) Reed-Solomon code can have: the field has 256
/// elements and ISA-L's and our pure-Rust encoding matrices need one distinct
/// non-zero element per shard, so 255.
pub const MAX_TOTAL_SHARDS: u32 = 255;
/// Shard length must be a multiple of this many bytes: the SIMD width of the ISA-L
/// kernels (AVX-512, 64 B) and a cache line, so no shard needs a tail pass.
pub const CODEC_ALIGNMENT_BYTES: u64 = 64;
/// Smallest stripe (data bytes per stripe, all k data shards together).
pub const MIN_STRIPE_SIZE_BYTES: u64 = 64 << 10;
/// Largest stripe.
pub const MAX_STRIPE_SIZE_BYTES: u64 = 64 << 20;
/// Default stripe size (1 MiB).
pub const DEFAULT_STRIPE_SIZE_BYTES: u64 = 1 << 20;

/// How cold volumes are erasure coded: k data shards + m parity shards per stripe,
/// placed on k+m distinct nodes.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "couchestor.io",
    version = "v1alpha1",
    kind = "ErasureCodingPolicy",
    doc = "The k+m erasure-coding layout used to archive cold volumes.",
    shortname = "ecp",
    status = "ErasureCodingPolicyStatus",
    printcolumn = r#"{"name":"K","type":"integer","jsonPath":".spec.dataShards"}"#,
    printcolumn = r#"{"name":"M","type":"integer","jsonPath":".spec.parityShards"}"#,
    printcolumn = r#"{"name":"Stripe","type":"integer","jsonPath":".spec.stripeSizeBytes"}"#,
    printcolumn = r#"{"name":"Algorithm","type":"string","jsonPath":".spec.algorithm"}"#,
    printcolumn = r#"{"name":"Volumes","type":"integer","jsonPath":".status.volumesUsing"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.dataShards + self.parityShards <= 255")
        .message("dataShards + parityShards must be at most 255 (GF(2^8) Reed-Solomon)")
        .field_path(".parityShards"),
    validation = Rule::new("self.stripeSizeBytes % (self.dataShards * 64) == 0")
        .message("stripeSizeBytes must be a multiple of dataShards × 64 (the codec alignment)")
        .field_path(".stripeSizeBytes"),
    validation = Rule::new("!has(self.minHealthyShards) || (self.minHealthyShards >= self.dataShards && self.minHealthyShards <= self.dataShards + self.parityShards)")
        .message("minHealthyShards must be between dataShards and dataShards + parityShards")
        .field_path(".minHealthyShards"),
)]
pub struct ErasureCodingPolicySpec {
    /// k: data shards per stripe.
    #[serde(default = "default_data_shards")]
    #[schemars(range(min = 1, max = 254))]
    pub data_shards: u32,
    /// m: parity shards per stripe; up to m lost shards are tolerated.
    #[serde(default = "default_parity_shards")]
    #[schemars(range(min = 1, max = 254))]
    pub parity_shards: u32,
    /// Data bytes per stripe (64 KiB..=64 MiB, a multiple of k × 64).
    #[serde(default = "default_stripe_size")]
    #[schemars(range(min = 65536, max = 67108864))]
    pub stripe_size_bytes: u64,
    /// Coding algorithm; only `ReedSolomon` is implemented.
    #[serde(default = "default_algorithm")]
    #[schemars(extend("enum" = ["ReedSolomon"]))]
    pub algorithm: String,
    /// Fewest healthy shards of a stripe before the archive is reported `Degraded` and
    /// repaired (k..=k+m); k + m when absent, so any lost shard triggers a rebuild.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_healthy_shards: Option<u32>,
    /// Periodically re-read every shard, check its checksum and repair from parity.
    #[serde(default = "default_true")]
    pub scrubbing_enabled: bool,
    /// Time between two scrubs of an archived volume.
    #[serde(default = "default_scrub_interval")]
    pub scrub_interval: GoDuration,
}

fn default_data_shards() -> u32 {
    4
}
fn default_parity_shards() -> u32 {
    2
}
fn default_stripe_size() -> u64 {
    DEFAULT_STRIPE_SIZE_BYTES
}
fn default_algorithm() -> String {
    ALGORITHM_REED_SOLOMON.to_owned()
}
fn default_true() -> bool {
    true
}
fn default_scrub_interval() -> GoDuration {
    GoDuration::new("7d")
}

impl ErasureCodingPolicySpec {
    /// Bytes of each shard of a stripe (`stripeSizeBytes / k`).
    pub fn shard_size_bytes(&self) -> u64 {
        self.stripe_size_bytes / u64::from(self.data_shards.max(1))
    }

    /// The healthy-shard threshold in force.
    pub fn effective_min_healthy_shards(&self) -> u32 {
        self.min_healthy_shards
            .unwrap_or(self.data_shards + self.parity_shards)
    }

    /// Storage used per byte of data: (k + m) / k (1.5 for 4+2).
    pub fn overhead(&self) -> f64 {
        f64::from(self.data_shards + self.parity_shards) / f64::from(self.data_shards.max(1))
    }
}

/// Observed state of an ErasureCodingPolicy.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErasureCodingPolicyStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// EcVolumes archived with this policy; while non-zero the layout is frozen.
    #[serde(default)]
    pub volumes_using: u32,
}
