//! The CustomResourceDefinitions, generated from the Rust types.
//!
//! `cargo xtask crds` writes them to `deploy/crds/`; a test fails when the committed
//! YAML drifts from these values. The schemas carry the defaults and the CEL
//! `x-kubernetes-validations` declared on the types, so the API server applies defaults
//! and rejects objects breaking the cross-field rules even without the webhook.
//!
//! Rules only the webhook/operator enforce (CEL cannot express them here): duration
//! bounds and `cooldownPeriod ≥ samplingWindow` (CEL's `duration()` has no `d`/`w`),
//! label-selector key and value syntax, and cross-object checks.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::api::{EcVolume, ErasureCodingPolicy, StorageNode, StoragePolicy, VolumeMigration};

/// Every CRD with the file stem it is written under (`deploy/crds/<stem>.yaml`).
pub fn all() -> Vec<(&'static str, CustomResourceDefinition)> {
    vec![
        ("storagepolicies", StoragePolicy::crd()),
        ("erasurecodingpolicies", ErasureCodingPolicy::crd()),
        ("ecvolumes", EcVolume::crd()),
        ("volumemigrations", VolumeMigration::crd()),
        ("storagenodes", StorageNode::crd()),
    ]
}
