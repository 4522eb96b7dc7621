//! The custom resources of `couchestor.io/v1alpha1` (DESIGN §4).
//!
//! Wire names are exactly the design's (`highWatermarkIOPS`, not `highWatermarkIops`).
//! Defaults live on the types (and so in the generated CRD schema, where the API server
//! applies them). CEL rules mirroring the cross-field checks of [`crate::validation`] are
//! attached with `#[x_kube(validation = ...)]` so the API server rejects bad objects even
//! when the webhook is not running.

mod ec_volume;
mod erasure_coding_policy;
mod storage_node;
mod storage_policy;
mod volume_migration;

pub use ec_volume::*;
pub use erasure_coding_policy::*;
pub use storage_node::*;
pub use storage_policy::*;
pub use volume_migration::*;

/// `metav1.Condition`, reused so conditions follow the Kubernetes API conventions
/// (type, status, reason, message, lastTransitionTime, observedGeneration).
pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
/// `metav1.LabelSelector` (`matchLabels` and `matchExpressions`).
pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
/// `metav1.Time` (RFC 3339 on the wire).
pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
