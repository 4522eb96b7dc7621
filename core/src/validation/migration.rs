//! VolumeMigration validation.

use super::{FieldErrors, ValidationErrors};
use crate::api::VolumeMigrationSpec;

/// Every problem of a VolumeMigration spec.
pub fn validate_volume_migration(spec: &VolumeMigrationSpec) -> Result<(), ValidationErrors> {
    let mut errors = FieldErrors::default();
    errors.object_name("spec.policyRef", &spec.policy_ref);
    errors.object_name("spec.volumeName", &spec.volume_name);
    if spec.volume_id.is_empty() {
        errors.push("spec.volumeId", "must be the Mayastor volume UUID");
    }
    if spec.from_tier == spec.to_tier {
        errors.push(
            "spec.toTier",
            format!("{} is the same as spec.fromTier", spec.to_tier),
        );
    }
    let (min, max) = super::policy::MIGRATION_TIMEOUT_BOUNDS;
    errors.duration("spec.timeout", &spec.timeout, min, max);
    errors.into_result()
}
