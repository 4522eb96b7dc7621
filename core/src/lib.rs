//! # couchestor-core
//!
//! The part of CoucheStor every other crate agrees on, kept free of I/O so it can be
//! tested by feeding it values:
//!
//! - [`api`]: the custom resources of group `couchestor.io/v1alpha1` (StoragePolicy,
//!   ErasureCodingPolicy, EcVolume, VolumeMigration, StorageNode) and their status types;
//! - [`validation`]: one validation function per kind, returning *every* error with its
//!   JSON field path; the admission webhook and the operator both call it;
//! - [`duration`]: Kubernetes/Go duration syntax plus `d` and `w`;
//! - [`selector`]: label-selector checks and matching (pool selectors, volume selectors);
//! - [`tier`]: tier classification with hysteresis, cooldown and "unknown is not idle";
//! - [`device_tier`]: the tier a discovered disk suggests (NVMe → hot, SSD → warm, HDD → cold);
//! - [`plan`]: migration planning, `plan(policy, volumes, in_flight, now) -> Plan`;
//! - [`crd`]: the generated CustomResourceDefinitions (with CEL rules) as values;
//! - [`names`]: well-known labels, annotations and field managers.

pub mod api;
pub mod condition;
pub mod crd;
pub mod device_tier;
pub mod duration;
pub mod names;
pub mod plan;
pub mod selector;
pub mod tier;
pub mod validation;

pub use api::{EcVolume, ErasureCodingPolicy, StorageNode, StoragePolicy, VolumeMigration};
pub use duration::GoDuration;
pub use tier::Tier;
pub use validation::{FieldError, Validate, ValidationErrors};

/// Timestamps used across the API (`k8s_openapi`'s own `jiff` re-export, so
/// `metav1.Time` converts without loss).
pub use k8s_openapi::jiff::Timestamp;
