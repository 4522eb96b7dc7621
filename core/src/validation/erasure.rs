//! ErasureCodingPolicy and EcVolume validation: the codec's limits.

use std::time::Duration;

use super::{FieldErrors, ValidationErrors};
use crate::api::{
    ALGORITHMS, CODEC_ALIGNMENT_BYTES, EcLayout, EcVolumeSpec, ErasureCodingPolicySpec,
    MAX_STRIPE_SIZE_BYTES, MAX_TOTAL_SHARDS, MIN_STRIPE_SIZE_BYTES,
};

/// Bounds of `scrubInterval`.
pub const SCRUB_INTERVAL_BOUNDS: (Duration, Duration) =
    (Duration::from_secs(3600), Duration::from_secs(365 * 86_400));

/// Every problem of an ErasureCodingPolicy spec.
pub fn validate_erasure_coding_policy(
    spec: &ErasureCodingPolicySpec,
) -> Result<(), ValidationErrors> {
    let mut errors = FieldErrors::default();
    check_shape(
        &mut errors,
        "spec",
        spec.data_shards,
        spec.parity_shards,
        spec.stripe_size_bytes,
    );
    if !ALGORITHMS.contains(&spec.algorithm.as_str()) {
        errors.push(
            "spec.algorithm",
            format!(
                "{:?} is not implemented; use one of {ALGORITHMS:?}",
                spec.algorithm
            ),
        );
    }
    if let Some(min) = spec.min_healthy_shards {
        let (k, total) = (
            spec.data_shards,
            spec.data_shards.saturating_add(spec.parity_shards),
        );
        if min < k || min > total {
            errors.push(
                "spec.minHealthyShards",
                format!("{min} must be between spec.dataShards ({k}) and dataShards + parityShards ({total})"),
            );
        }
    }
    errors.duration(
        "spec.scrubInterval",
        &spec.scrub_interval,
        SCRUB_INTERVAL_BOUNDS.0,
        SCRUB_INTERVAL_BOUNDS.1,
    );
    errors.into_result()
}

/// Every problem of an EcVolume spec.
pub fn validate_ec_volume(spec: &EcVolumeSpec) -> Result<(), ValidationErrors> {
    let mut errors = FieldErrors::default();
    errors.object_name(
        "spec.sourcePersistentVolume",
        &spec.source_persistent_volume,
    );
    if spec.source_volume_id.is_empty() {
        errors.push("spec.sourceVolumeId", "must be the Mayastor volume UUID");
    }
    if spec.size_bytes == 0 {
        errors.push("spec.sizeBytes", "must be positive");
    }
    errors.object_name("spec.ecPolicyRef", &spec.ec_policy_ref);
    let EcLayout {
        data_shards,
        parity_shards,
        stripe_size_bytes,
        codec_id,
    } = &spec.layout;
    check_shape(
        &mut errors,
        "spec.layout",
        *data_shards,
        *parity_shards,
        *stripe_size_bytes,
    );
    if codec_id.is_empty() {
        errors.push(
            "spec.layout.codecId",
            "must name the codec that produced the parity",
        );
    }
    errors.into_result()
}

/// k, m and stripe size against the GF(2^8) Reed-Solomon codec's limits.
fn check_shape(errors: &mut FieldErrors, at: &str, k: u32, m: u32, stripe: u64) {
    if k < 1 {
        errors.push(
            format!("{at}.dataShards"),
            format!("{k} must be at least 1"),
        );
    }
    if m < 1 {
        errors.push(
            format!("{at}.parityShards"),
            format!("{m} must be at least 1 (no parity means no redundancy)"),
        );
    }
    let total = u64::from(k) + u64::from(m);
    if total > u64::from(MAX_TOTAL_SHARDS) {
        errors.push(
            format!("{at}.parityShards"),
            format!("dataShards + parityShards = {total} exceeds {MAX_TOTAL_SHARDS}, the limit of Reed-Solomon over GF(2^8)"),
        );
    }
    if !(MIN_STRIPE_SIZE_BYTES..=MAX_STRIPE_SIZE_BYTES).contains(&stripe) {
        errors.push(
            format!("{at}.stripeSizeBytes"),
            format!("{stripe} is outside {MIN_STRIPE_SIZE_BYTES}..={MAX_STRIPE_SIZE_BYTES} (64 KiB..64 MiB)"),
        );
    } else if k >= 1 {
        let unit = u64::from(k) * CODEC_ALIGNMENT_BYTES;
        if !stripe.is_multiple_of(unit) {
            let below = stripe / unit * unit;
            let above = below + unit;
            errors.push(
                format!("{at}.stripeSizeBytes"),
                format!(
                    "{stripe} is not a multiple of dataShards × {CODEC_ALIGNMENT_BYTES} = {unit} (each shard must be a whole number of {CODEC_ALIGNMENT_BYTES}-byte codec blocks); nearest valid sizes are {below} and {above}"
                ),
            );
        }
    }
}
