//! The CustomResourceDefinitions, generated from the Rust types.
//!
//! `cargo xtask crds` writes them to `deploy/crds/`; a test fails when the committed
//! YAML drifts from these values. The schemas carry the defaults and the CEL
//! `x-kubernetes-validations` declared on the types, so the API server applies defaults
//! and rejects objects breaking the cross-field rules even without the webhook.
//!
//! On top of what the derive produces, every embedded `LabelSelector` is hardened here:
//! its operator is an enum, `In`/`NotIn` need values and `Exists`/`DoesNotExist` take
//! none (CEL), and lists, maps and strings get bounds. The bounds also keep the CEL cost
//! estimate of rules comparing selectors (`hotPoolSelector != coldPoolSelector`) under
//! the API server's limit.
//!
//! Rules only the webhook/operator enforce (CEL cannot express them here): duration
//! bounds and `cooldownPeriod ≥ samplingWindow` (CEL's `duration()` has no `d`/`w`),
//! label key and value syntax, and cross-object checks.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::{Value, json};

use crate::{
    api::{EcVolume, ErasureCodingPolicy, StorageNode, StoragePolicy, VolumeMigration},
    selector::OPERATORS,
};

/// Most `matchExpressions` entries a selector may have.
pub const MAX_SELECTOR_EXPRESSIONS: u32 = 32;
/// Most `matchLabels` entries, and most values of one expression.
pub const MAX_SELECTOR_LABELS: u32 = 64;

/// Every CRD with the file stem it is written under (`deploy/crds/<stem>.yaml`).
pub fn all() -> Vec<(&'static str, CustomResourceDefinition)> {
    vec![
        ("storagepolicies", harden(StoragePolicy::crd())),
        ("erasurecodingpolicies", harden(ErasureCodingPolicy::crd())),
        ("ecvolumes", harden(EcVolume::crd())),
        ("volumemigrations", harden(VolumeMigration::crd())),
        ("storagenodes", harden(StorageNode::crd())),
    ]
}

/// The `openAPIV3Schema` of a CRD's first version, as JSON.
pub fn schema_of(crd: &CustomResourceDefinition) -> Value {
    crd.spec
        .versions
        .first()
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or(Value::Null)
}

fn harden(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    let Ok(mut value) = serde_json::to_value(&crd) else {
        return crd;
    };
    if let Some(versions) = value
        .pointer_mut("/spec/versions")
        .and_then(Value::as_array_mut)
    {
        for version in versions {
            if let Some(schema) = version.pointer_mut("/schema/openAPIV3Schema") {
                harden_selectors(schema);
            }
        }
    }
    serde_json::from_value(value).unwrap_or(crd)
}

/// Walks a schema and bounds every object that looks like a `metav1.LabelSelector`.
fn harden_selectors(schema: &mut Value) {
    let is_selector = schema
        .get("properties")
        .and_then(Value::as_object)
        .is_some_and(|p| p.contains_key("matchLabels") && p.contains_key("matchExpressions"));
    if is_selector {
        if let Some(labels) = schema
            .pointer_mut("/properties/matchLabels")
            .and_then(Value::as_object_mut)
        {
            labels.insert("maxProperties".into(), json!(MAX_SELECTOR_LABELS));
            labels.insert(
                "additionalProperties".into(),
                json!({"type": "string", "maxLength": 63}),
            );
        }
        if let Some(exprs) = schema
            .pointer_mut("/properties/matchExpressions")
            .and_then(Value::as_object_mut)
        {
            exprs.insert("maxItems".into(), json!(MAX_SELECTOR_EXPRESSIONS));
            if let Some(item) = exprs.get_mut("items").and_then(Value::as_object_mut) {
                item.insert(
                    "x-kubernetes-validations".into(),
                    json!([{
                        "rule": "self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0) : (!has(self.values) || size(self.values) == 0)",
                        "message": "operators In and NotIn need at least one value; Exists and DoesNotExist take none",
                        "fieldPath": ".values"
                    }]),
                );
                if let Some(props) = item.get_mut("properties").and_then(Value::as_object_mut) {
                    if let Some(key) = props.get_mut("key").and_then(Value::as_object_mut) {
                        key.insert("maxLength".into(), json!(317));
                    }
                    if let Some(op) = props.get_mut("operator").and_then(Value::as_object_mut) {
                        op.insert("enum".into(), json!(OPERATORS));
                    }
                    if let Some(values) = props.get_mut("values").and_then(Value::as_object_mut) {
                        values.insert("maxItems".into(), json!(MAX_SELECTOR_LABELS));
                        values.insert("items".into(), json!({"type": "string", "maxLength": 63}));
                    }
                }
            }
        }
    }
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    for (_, child) in object.iter_mut() {
        match child {
            Value::Object(_) => harden_selectors(child),
            Value::Array(items) => items.iter_mut().for_each(harden_selectors),
            _ => {}
        }
    }
}
