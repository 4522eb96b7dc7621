//! StoragePolicy validation.

use std::time::Duration;

use super::{FieldErrors, ValidationErrors};
use crate::{
    api::{MAX_CONCURRENT_MIGRATIONS_RANGE, StoragePolicySpec},
    selector,
};

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// Bounds of each duration field: (min, max). Chosen so a typo (`1s` sampling, `900d`
/// cooldown) is caught while every sensible setting passes.
pub const SAMPLING_WINDOW_BOUNDS: (Duration, Duration) =
    (MINUTE, Duration::from_secs(7 * DAY.as_secs()));
pub const COOLDOWN_BOUNDS: (Duration, Duration) = (MINUTE, Duration::from_secs(90 * DAY.as_secs()));
pub const MIGRATION_TIMEOUT_BOUNDS: (Duration, Duration) =
    (MINUTE, Duration::from_secs(7 * DAY.as_secs()));
pub const ARCHIVE_AFTER_BOUNDS: (Duration, Duration) =
    (HOUR, Duration::from_secs(3650 * DAY.as_secs()));

/// Every problem of a StoragePolicy spec.
pub fn validate_storage_policy(spec: &StoragePolicySpec) -> Result<(), ValidationErrors> {
    let mut errors = FieldErrors::default();

    if spec.storage_class_name.is_empty() {
        errors.push(
            "spec.storageClassName",
            "must name the StorageClass whose volumes are tiered",
        );
    } else {
        errors.object_name("spec.storageClassName", &spec.storage_class_name);
    }

    // Watermarks: low < warm < high with a warm tier, low < high without.
    let (low, high) = (spec.low_watermark_iops, spec.high_watermark_iops);
    match (spec.warm_pool_selector.is_some(), spec.warm_watermark_iops) {
        (false, Some(warm)) => errors.push(
            "spec.warmWatermarkIOPS",
            format!(
                "{warm} is set but spec.warmPoolSelector is absent: there is no warm tier to use it"
            ),
        ),
        (true, _) => {
            let warm = spec.effective_warm_watermark_iops().unwrap_or_default();
            let defaulted = if spec.warm_watermark_iops.is_none() {
                ", the default"
            } else {
                ""
            };
            if low >= warm {
                errors.push(
                    "spec.lowWatermarkIOPS",
                    format!("{low} must be below spec.warmWatermarkIOPS ({warm}{defaulted})"),
                );
            }
            if warm >= high {
                errors.push(
                    "spec.warmWatermarkIOPS",
                    format!("{warm}{defaulted} must be below spec.highWatermarkIOPS ({high})"),
                );
            }
        }
        (false, None) => {}
    }
    if low >= high {
        errors.push(
            "spec.lowWatermarkIOPS",
            format!("{low} must be below spec.highWatermarkIOPS ({high})"),
        );
    }

    let window = errors.duration(
        "spec.samplingWindow",
        &spec.sampling_window,
        SAMPLING_WINDOW_BOUNDS.0,
        SAMPLING_WINDOW_BOUNDS.1,
    );
    let cooldown = errors.duration(
        "spec.cooldownPeriod",
        &spec.cooldown_period,
        COOLDOWN_BOUNDS.0,
        COOLDOWN_BOUNDS.1,
    );
    errors.duration(
        "spec.migrationTimeout",
        &spec.migration_timeout,
        MIGRATION_TIMEOUT_BOUNDS.0,
        MIGRATION_TIMEOUT_BOUNDS.1,
    );
    errors.duration(
        "spec.archiveAfter",
        &spec.archive_after,
        ARCHIVE_AFTER_BOUNDS.0,
        ARCHIVE_AFTER_BOUNDS.1,
    );
    if let (Some(window), Some(cooldown)) = (window, cooldown)
        && cooldown < window
    {
        errors.push(
            "spec.cooldownPeriod",
            format!(
                "{} is shorter than spec.samplingWindow ({}): a volume could move again before a window of data from its new tier exists",
                spec.cooldown_period, spec.sampling_window
            ),
        );
    }

    if !MAX_CONCURRENT_MIGRATIONS_RANGE.contains(&spec.max_concurrent_migrations) {
        errors.push(
            "spec.maxConcurrentMigrations",
            format!(
                "{} is outside {}..={}",
                spec.max_concurrent_migrations,
                MAX_CONCURRENT_MIGRATIONS_RANGE.start(),
                MAX_CONCURRENT_MIGRATIONS_RANGE.end()
            ),
        );
    }

    if let Some(sel) = &spec.volume_selector {
        selector::check(sel, "spec.volumeSelector", &mut errors);
    }
    let pools = [
        ("spec.hotPoolSelector", Some(&spec.hot_pool_selector)),
        ("spec.warmPoolSelector", spec.warm_pool_selector.as_ref()),
        ("spec.coldPoolSelector", Some(&spec.cold_pool_selector)),
    ];
    for (path, sel) in pools {
        let Some(sel) = sel else { continue };
        selector::check(sel, path, &mut errors);
        if selector::is_empty(sel) {
            errors.push(
                path,
                "is empty and would select every pool; give matchLabels or matchExpressions",
            );
        }
    }
    for (i, (path_a, a)) in pools.iter().enumerate() {
        for (path_b, b) in &pools[i + 1..] {
            if let (Some(a), Some(b)) = (a, b)
                && a == b
            {
                errors.push(
                    *path_b,
                    format!("is identical to {path_a}: a volume could never change tier"),
                );
            }
        }
    }

    if let Some(name) = &spec.ec_policy_ref {
        errors.object_name("spec.ecPolicyRef", name);
    }
    if spec.ec_min_volume_size_bytes == 0 {
        errors.push("spec.ecMinVolumeSizeBytes", "must be positive");
    }

    errors.into_result()
}
