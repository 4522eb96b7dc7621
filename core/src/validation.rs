//! One validation function per kind, returning *every* error at once, each with its
//! JSON field path and the offending values, e.g.
//! `spec.lowWatermarkIOPS: 800 must be below spec.warmWatermarkIOPS (600)`.
//!
//! The admission webhook and the operator call exactly these functions (through
//! [`Validate`]); the CRDs carry CEL rules mirroring the cross-field checks, so the API
//! server rejects the same objects when the webhook is down (see [`crate::crd`]).

pub mod cross;
mod erasure;
mod migration;
mod node;
mod policy;

use std::{fmt, time::Duration};

pub use erasure::{validate_ec_volume, validate_erasure_coding_policy};
pub use migration::validate_volume_migration;
pub use node::validate_storage_node;
pub use policy::validate_storage_policy;

use crate::GoDuration;

/// One problem, at one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// JSON path from the object root (`spec.hotPoolSelector.matchExpressions[0].values`).
    pub path: String,
    /// What is wrong, with the offending value.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every problem found in one object (never empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(Vec<FieldError>);

impl ValidationErrors {
    /// The errors, in the order the fields were checked.
    pub fn errors(&self) -> &[FieldError] {
        &self.0
    }

    /// The field paths, for assertions and `kubectl` output.
    pub fn paths(&self) -> Vec<&str> {
        self.0.iter().map(|e| e.path.as_str()).collect()
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Collects field errors while a validation function walks an object.
#[derive(Debug, Default)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    /// Records one problem.
    pub fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }

    /// `Ok` when nothing was recorded.
    pub fn into_result(self) -> Result<(), ValidationErrors> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(self.0))
        }
    }

    /// Checks a duration field: it parses, and lies within `min..=max`. Returns the
    /// parsed value when it is usable for further cross-field checks.
    pub fn duration(
        &mut self,
        path: &str,
        value: &GoDuration,
        min: Duration,
        max: Duration,
    ) -> Option<Duration> {
        use crate::duration::format_duration as fmt;
        match value.parse() {
            Err(e) => {
                self.push(path, format!("{:?} is not a duration: {e}", value.as_str()));
                None
            }
            Ok(d) if d < min || d.is_zero() => {
                self.push(
                    path,
                    format!(
                        "{value} must be positive and at least {}",
                        fmt(min.max(Duration::from_nanos(1)))
                    ),
                );
                None
            }
            Ok(d) if d > max => {
                self.push(
                    path,
                    format!("{value} is longer than the limit of {}", fmt(max)),
                );
                None
            }
            Ok(d) => Some(d),
        }
    }

    /// Checks that a name is a DNS subdomain (how Kubernetes names most objects).
    pub fn object_name(&mut self, path: &str, name: &str) {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if name.is_empty() {
            self.push(path, "must not be empty");
        } else if name.len() > 253 || !name.split('.').all(label_ok) {
            self.push(path, format!("{name:?} is not a valid object name (lowercase DNS subdomain, at most 253 characters)"));
        }
    }
}

/// Validation of a whole custom resource, as the webhook and operator see it.
pub trait Validate {
    /// Every problem of the object, or `Ok`.
    fn validate(&self) -> Result<(), ValidationErrors>;
}

impl Validate for crate::StoragePolicy {
    fn validate(&self) -> Result<(), ValidationErrors> {
        validate_storage_policy(&self.spec)
    }
}

impl Validate for crate::ErasureCodingPolicy {
    fn validate(&self) -> Result<(), ValidationErrors> {
        validate_erasure_coding_policy(&self.spec)
    }
}

impl Validate for crate::EcVolume {
    fn validate(&self) -> Result<(), ValidationErrors> {
        validate_ec_volume(&self.spec)
    }
}

impl Validate for crate::VolumeMigration {
    fn validate(&self) -> Result<(), ValidationErrors> {
        validate_volume_migration(&self.spec)
    }
}

impl Validate for crate::StorageNode {
    fn validate(&self) -> Result<(), ValidationErrors> {
        validate_storage_node(&self.spec)
    }
}
