//! Admission decisions: pure functions from a request and an index snapshot to a
//! response. The HTTP layer ([`crate::server`]) only parses and serialises.
//!
//! `/validate` — CoucheStor resources: the one `couchestor_core` validation of the kind
//! (every error with its field path, all at once), then the cross-object rules
//! (overlapping enabled policies, dangling `ecPolicyRef`, layout changes or deletion of
//! an ErasureCodingPolicy in use).
//!
//! `/mutate` — PVCs of tiered StorageClasses get the initial-tier annotation; tiered
//! StorageClasses get `poolHasTopologyKey` at creation and are denied when they pin
//! pools with `poolAffinityTopologyLabel` (their volumes could never move).

use couchestor_core::{
    EcVolume, ErasureCodingPolicy, StorageNode, StoragePolicy, Tier, Validate, VolumeMigration,
    names,
    validation::{ValidationErrors, cross},
};
use serde_json::{Value, json};

use crate::{
    index::Snapshot,
    review::{AdmissionRequest, AdmissionResponse, Operation},
};

/// Mayastor StorageClass parameters of which at most one may be set
/// (`validate_single_topology_param` in its CSI driver).
pub const SINGLE_TOPOLOGY_PARAMS: [&str; 5] = [
    names::MAYASTOR_POOL_AFFINITY_TOPOLOGY_LABEL,
    names::MAYASTOR_POOL_HAS_TOPOLOGY_KEY,
    "nodeAffinityTopologyLabel",
    "nodeHasTopologyKey",
    "nodeSpreadTopologyKey",
];

/// The initial tier when neither the PVC nor the StorageClass names one: new volumes
/// start hot, since a volume being created is about to be written.
pub const DEFAULT_INITIAL_TIER: Tier = Tier::Hot;

/// Answers a `/validate` request.
pub fn validate(req: &AdmissionRequest, snap: &Snapshot) -> AdmissionResponse {
    let uid = req.uid.as_str();
    if req.kind.group != names::GROUP {
        return wrong_kind(req, "/validate", "CoucheStor resources (couchestor.io)");
    }
    if req.operation == Operation::Delete {
        return validate_delete(req, snap);
    }
    let Some(object) = &req.object else {
        return AdmissionResponse::deny(
            uid,
            400,
            format!(
                "{:?} request for {} has no object",
                req.operation, req.kind.kind
            ),
        );
    };
    let result = match req.kind.kind.as_str() {
        "StoragePolicy" => typed::<StoragePolicy>(object).and_then(|p| {
            p.validate().map_err(Denial::Invalid)?;
            require_synced(snap)?;
            cross::check_storage_policy(&req.name, &p.spec, snap.cluster()).map_err(Denial::Invalid)
        }),
        "ErasureCodingPolicy" => typed::<ErasureCodingPolicy>(object).and_then(|p| {
            p.validate().map_err(Denial::Invalid)?;
            if req.operation == Operation::Update {
                let old = req
                    .old_object
                    .as_ref()
                    .ok_or_else(|| Denial::BadRequest("UPDATE without oldObject".into()))?;
                let old = typed::<ErasureCodingPolicy>(old)?;
                require_synced(snap)?;
                cross::check_ec_policy_update(&req.name, &old.spec, &p.spec, snap.cluster())
                    .map_err(Denial::Invalid)?;
            }
            Ok(())
        }),
        "EcVolume" => typed::<EcVolume>(object).and_then(|v| v.validate().map_err(Denial::Invalid)),
        "VolumeMigration" => {
            typed::<VolumeMigration>(object).and_then(|m| m.validate().map_err(Denial::Invalid))
        }
        "StorageNode" => {
            typed::<StorageNode>(object).and_then(|n| n.validate().map_err(Denial::Invalid))
        }
        _ => return wrong_kind(req, "/validate", "CoucheStor resources (couchestor.io)"),
    };
    match result {
        Ok(()) => AdmissionResponse::allow(uid),
        Err(denial) => denial.into_response(uid, &req.kind.kind),
    }
}

fn validate_delete(req: &AdmissionRequest, snap: &Snapshot) -> AdmissionResponse {
    if req.kind.kind != "ErasureCodingPolicy" {
        return AdmissionResponse::allow(&req.uid);
    }
    let result = require_synced(snap).and_then(|()| {
        cross::check_ec_policy_delete(&req.name, snap.cluster()).map_err(Denial::Invalid)
    });
    match result {
        Ok(()) => AdmissionResponse::allow(&req.uid),
        Err(denial) => denial.into_response(&req.uid, &req.kind.kind),
    }
}

/// Answers a `/mutate` request.
pub fn mutate(req: &AdmissionRequest, snap: &Snapshot) -> AdmissionResponse {
    let uid = req.uid.as_str();
    let Some(object) = &req.object else {
        return AdmissionResponse::deny(
            uid,
            400,
            format!(
                "{:?} request for {} has no object",
                req.operation, req.kind.kind
            ),
        );
    };
    match (req.kind.group.as_str(), req.kind.kind.as_str()) {
        ("", "PersistentVolumeClaim") if req.operation == Operation::Create => {
            mutate_pvc(uid, object, snap)
        }
        ("storage.k8s.io", "StorageClass") if req.operation == Operation::Create => {
            mutate_class(uid, object)
        }
        ("", "PersistentVolumeClaim") | ("storage.k8s.io", "StorageClass") => {
            AdmissionResponse::allow(uid)
        }
        _ => wrong_kind(req, "/mutate", "PersistentVolumeClaims and StorageClasses"),
    }
}

fn mutate_pvc(uid: &str, pvc: &Value, snap: &Snapshot) -> AdmissionResponse {
    let class = pvc
        .pointer("/spec/storageClassName")
        .or_else(|| pvc.pointer("/metadata/annotations/volume.beta.kubernetes.io~1storage-class"))
        .and_then(Value::as_str);
    let Some(info) = class.and_then(|c| snap.classes.get(c)) else {
        return AdmissionResponse::allow(uid);
    };
    if !info.tiered {
        return AdmissionResponse::allow(uid);
    }
    let annotations = pvc.pointer("/metadata/annotations");
    if let Some(asked) = annotations.and_then(|a| a.get(names::TIER)) {
        return match asked.as_str().and_then(Tier::parse) {
            Some(_) => AdmissionResponse::allow(uid),
            None => AdmissionResponse::deny(
                uid,
                422,
                format!(
                    "metadata.annotations[{:?}]: {asked} is not a tier; use hot, warm or cold",
                    names::TIER
                ),
            ),
        };
    }
    let tier = info
        .default_tier
        .as_deref()
        .and_then(Tier::parse)
        .unwrap_or(DEFAULT_INITIAL_TIER);
    let op = match annotations {
        Some(Value::Object(_)) => {
            json!({"op": "add", "path": format!("/metadata/annotations/{}", pointer_escape(names::TIER)), "value": tier.as_str()})
        }
        _ => {
            json!({"op": "add", "path": "/metadata/annotations", "value": {names::TIER: tier.as_str()}})
        }
    };
    AdmissionResponse::allow_with_patch(uid, vec![op])
}

fn mutate_class(uid: &str, class: &Value) -> AdmissionResponse {
    let tiered = class
        .pointer(&format!(
            "/metadata/annotations/{}",
            pointer_escape(names::TIERING)
        ))
        .and_then(Value::as_str)
        == Some(names::TIERING_ENABLED);
    if !tiered {
        return AdmissionResponse::allow(uid);
    }
    let params = class.get("parameters").and_then(Value::as_object);
    let has = |key: &str| params.is_some_and(|p| p.contains_key(key));
    let mut problems = Vec::new();
    if has(names::MAYASTOR_POOL_AFFINITY_TOPOLOGY_LABEL) {
        problems.push(format!(
            "parameters.{}: a tiered StorageClass must not pin pools by label: Mayastor keeps that pool filter for the volume's life, so its volumes could never move between tiers; remove it (CoucheStor sets {} instead)",
            names::MAYASTOR_POOL_AFFINITY_TOPOLOGY_LABEL,
            names::MAYASTOR_POOL_HAS_TOPOLOGY_KEY
        ));
    }
    for other in SINGLE_TOPOLOGY_PARAMS.iter().skip(2) {
        if has(other) {
            problems.push(format!(
                "parameters.{other}: Mayastor allows only one of {SINGLE_TOPOLOGY_PARAMS:?}, and a tiered StorageClass needs {}",
                names::MAYASTOR_POOL_HAS_TOPOLOGY_KEY
            ));
        }
    }
    if let Some(tier) = params.and_then(|p| p.get(names::TIER))
        && tier.as_str().and_then(Tier::parse).is_none()
    {
        problems.push(format!(
            "parameters[{:?}]: {tier} is not a tier; use hot, warm or cold",
            names::TIER
        ));
    }
    if !problems.is_empty() {
        return AdmissionResponse::deny(uid, 422, problems.join("; "));
    }
    if has(names::MAYASTOR_POOL_HAS_TOPOLOGY_KEY) {
        return AdmissionResponse::allow(uid);
    }
    let op = match params {
        Some(_) => {
            json!({"op": "add", "path": format!("/parameters/{}", names::MAYASTOR_POOL_HAS_TOPOLOGY_KEY), "value": names::TIER})
        }
        None => {
            json!({"op": "add", "path": "/parameters", "value": {names::MAYASTOR_POOL_HAS_TOPOLOGY_KEY: names::TIER}})
        }
    };
    AdmissionResponse::allow_with_patch(uid, vec![op])
}

/// Why a request is refused, before it becomes a response.
enum Denial {
    BadRequest(String),
    Invalid(ValidationErrors),
    NotReady,
}

impl Denial {
    fn into_response(self, uid: &str, kind: &str) -> AdmissionResponse {
        match self {
            Denial::BadRequest(m) => AdmissionResponse::deny(uid, 400, m),
            Denial::Invalid(errors) => {
                AdmissionResponse::deny(uid, 422, format!("{kind} is invalid: {errors}"))
            }
            Denial::NotReady => AdmissionResponse::deny(
                uid,
                503,
                "couchestor-webhook is starting and has not listed the cluster yet, so cross-object rules cannot be checked; retry in a few seconds",
            ),
        }
    }
}

fn require_synced(snap: &Snapshot) -> Result<(), Denial> {
    if snap.synced {
        Ok(())
    } else {
        Err(Denial::NotReady)
    }
}

fn typed<T: serde::de::DeserializeOwned>(object: &Value) -> Result<T, Denial> {
    serde_json::from_value(object.clone())
        .map_err(|e| Denial::BadRequest(format!("object does not match the schema: {e}")))
}

fn wrong_kind(req: &AdmissionRequest, endpoint: &str, handles: &str) -> AdmissionResponse {
    let k = &req.kind;
    AdmissionResponse::deny(
        &req.uid,
        400,
        format!(
            "{endpoint} handles {handles}, not {}/{} {}; check the webhook configuration's rules",
            if k.group.is_empty() { "core" } else { &k.group },
            k.version,
            k.kind
        ),
    )
}

/// Escapes a key for a JSON Pointer (RFC 6901).
pub fn pointer_escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests;
