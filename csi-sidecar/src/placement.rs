//! CreateVolume: which tier a new volume starts on, where Mayastor may place it, and the
//! bytes appended to the request and the response to say so.
//!
//! **Is the volume tiered?** Only the request's parameters tell (the StorageClass's
//! annotations do not reach CSI): it is when the parameters carry `couchestor.io/tier`
//! (the class's default tier), or `poolHasTopologyKey` lists `couchestor.io/tier` (what
//! the admission webhook adds to every tiered class). Any other volume is not ours and
//! its CreateVolume is forwarded untouched, without reading the PVC.
//!
//! **Tier resolution** (the same order as the webhook's PVC mutation, DESIGN §4: the
//! PVC annotation is the volume's request, the class parameter its default):
//! 1. the PVC's `couchestor.io/tier` annotation (PVC named by the external-provisioner's
//!    `csi.storage.k8s.io/pvc/name` and `/pvc/namespace` parameters);
//! 2. the StorageClass parameter `couchestor.io/tier`;
//! 3. [`DEFAULT_INITIAL_TIER`] (hot).
//!
//! A value that is not a tier is `INVALID_ARGUMENT` wherever it comes from (the class
//! parameter is checked even when the PVC overrides it: it is a misconfiguration). A
//! PVC that cannot be read is `UNAVAILABLE`: the provisioner retries, and no volume is
//! created on a guessed tier.
//!
//! **Placement.** Mayastor filters pools by the volume's pool-label *inclusion*, built
//! from `poolAffinityTopologyLabel` (exact `key: value`) and `poolHasTopologyKey` (key
//! present, any value), and keeps it for the volume's life (reference notes §3.1–3.2).
//! A tiered volume must be able to move between tiers later, so the sidecar ensures
//! `poolHasTopologyKey` lists the pool tier label key `couchestor.io/tier`: every
//! tier's pools stay eligible, unlabelled pools are not. Pinning the initial tier with
//! `poolAffinityTopologyLabel: "couchestor.io/tier: hot"` would lock the volume to hot
//! pools forever, so the initial tier is instead recorded in `volume_context` (the PV's
//! `volumeAttributes`), where the operator reads it and moves the volume if Mayastor
//! placed it on another tier. Mayastor accepts only one topology parameter, so a tiered
//! request that also sets `poolAffinityTopologyLabel`, `nodeAffinityTopologyLabel`,
//! `nodeHasTopologyKey` or `nodeSpreadTopologyKey` is `INVALID_ARGUMENT`.

use std::collections::{BTreeMap, HashMap};

use couchestor_core::{Tier, names};
use couchestor_proto::csi::v1::{CreateVolumeRequest, CreateVolumeResponse, Volume};
use prost::Message;

use crate::{cluster::Cluster, error::Error};

/// The initial tier when neither the PVC nor the class names one; the webhook's
/// `DEFAULT_INITIAL_TIER` (a volume being created is about to be written).
pub const DEFAULT_INITIAL_TIER: Tier = Tier::Hot;

/// External-provisioner parameters (`--extra-create-metadata`).
pub const PVC_NAME: &str = "csi.storage.k8s.io/pvc/name";
pub const PVC_NAMESPACE: &str = "csi.storage.k8s.io/pvc/namespace";
pub const PV_NAME: &str = "csi.storage.k8s.io/pv/name";

/// Mayastor topology parameters of which at most one may be set; a tiered volume uses
/// `poolHasTopologyKey`, so any of these is a conflict.
pub const CONFLICTING_TOPOLOGY_PARAMS: [&str; 4] = [
    names::MAYASTOR_POOL_AFFINITY_TOPOLOGY_LABEL,
    "nodeAffinityTopologyLabel",
    "nodeHasTopologyKey",
    "nodeSpreadTopologyKey",
];

/// Where the tier came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TierSource {
    PvcAnnotation,
    StorageClass,
    Default,
}

impl TierSource {
    pub fn as_str(self) -> &'static str {
        match self {
            TierSource::PvcAnnotation => "pvc-annotation",
            TierSource::StorageClass => "storageclass-parameter",
            TierSource::Default => "default",
        }
    }
}

/// The decision for one tiered CreateVolume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub tier: Tier,
    pub source: TierSource,
    /// The new `poolHasTopologyKey` value, or `None` when the request already lists
    /// the tier key.
    pub pool_has_topology_key: Option<String>,
}

fn keys(value: &str) -> impl Iterator<Item = &str> {
    value.lines().map(str::trim).filter(|k| !k.is_empty())
}

fn parse_tier(origin: &'static str, value: &str) -> Result<Tier, Error> {
    Tier::parse(value).ok_or_else(|| Error::InvalidTier {
        origin,
        value: value.to_owned(),
    })
}

/// Decides the placement of a CreateVolume from its parameters, reading the PVC when
/// the volume is tiered; `None` when the volume is not tiered.
pub async fn resolve(
    parameters: &HashMap<String, String>,
    cluster: &impl Cluster,
) -> Result<Option<Placement>, Error> {
    let class_tier = parameters
        .get(names::TIER)
        .map(|v| parse_tier("StorageClass parameter", v))
        .transpose()?;
    let has_key = parameters.get(names::MAYASTOR_POOL_HAS_TOPOLOGY_KEY);
    let lists_tier_key = has_key.is_some_and(|v| keys(v).any(|k| k == names::TIER));
    if class_tier.is_none() && !lists_tier_key {
        return Ok(None);
    }
    if let Some(param) = CONFLICTING_TOPOLOGY_PARAMS
        .iter()
        .find(|p| parameters.contains_key(**p))
    {
        return Err(Error::TopologyConflict {
            param: (*param).to_owned(),
        });
    }
    let requested = match (parameters.get(PVC_NAMESPACE), parameters.get(PVC_NAME)) {
        (Some(namespace), Some(name)) => {
            let annotations: BTreeMap<String, String> = cluster
                .pvc_annotations(namespace, name)
                .await
                .map_err(|source| Error::PvcLookup {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    source,
                })?;
            annotations
                .get(names::TIER)
                .map(|v| parse_tier("PersistentVolumeClaim annotation", v))
                .transpose()?
        }
        _ => {
            tracing::warn!(
                "no {PVC_NAME}/{PVC_NAMESPACE} parameters (is the external-provisioner run with --extra-create-metadata?): the PVC's tier annotation cannot be read"
            );
            None
        }
    };
    let (tier, source) = match (requested, class_tier) {
        (Some(t), _) => (t, TierSource::PvcAnnotation),
        (None, Some(t)) => (t, TierSource::StorageClass),
        (None, None) => (DEFAULT_INITIAL_TIER, TierSource::Default),
    };
    let pool_has_topology_key = match has_key {
        Some(_) if lists_tier_key => None,
        Some(v) if keys(v).next().is_some() => Some(format!("{}\n{}", v.trim_end(), names::TIER)),
        _ => Some(names::TIER.to_owned()),
    };
    Ok(Some(Placement {
        tier,
        source,
        pool_has_topology_key,
    }))
}

impl Placement {
    /// Bytes to append to the CreateVolumeRequest: a `parameters` map entry (field 4)
    /// for `poolHasTopologyKey`, or nothing. A map entry parsed later replaces an
    /// earlier one with the same key, so appending overrides without touching (or
    /// re-encoding) anything else in the request.
    pub fn request_suffix(&self) -> Vec<u8> {
        match &self.pool_has_topology_key {
            Some(value) => CreateVolumeRequest {
                parameters: HashMap::from([(
                    names::MAYASTOR_POOL_HAS_TOPOLOGY_KEY.to_owned(),
                    value.clone(),
                )]),
                ..CreateVolumeRequest::default()
            }
            .encode_to_vec(),
            None => Vec::new(),
        }
    }

    /// Bytes to append to the CreateVolumeResponse: a `volume` (field 1) holding only a
    /// `volume_context` entry `couchestor.io/tier`. A repeated embedded message is
    /// merged into the earlier one, so the backend's volume keeps all its fields and
    /// gains (or has replaced) the tier entry.
    pub fn response_suffix(&self) -> Vec<u8> {
        CreateVolumeResponse {
            volume: Some(Volume {
                volume_context: HashMap::from([(
                    names::TIER.to_owned(),
                    self.tier.as_str().to_owned(),
                )]),
                ..Volume::default()
            }),
        }
        .encode_to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use couchestor_proto::csi::v1::{CapacityRange, VolumeCapability};

    #[test]
    fn the_request_suffix_overrides_the_topology_key_and_keeps_every_other_field() {
        let original = CreateVolumeRequest {
            name: "pvc-1".into(),
            capacity_range: Some(CapacityRange {
                required_bytes: 1 << 30,
                limit_bytes: 0,
            }),
            volume_capabilities: vec![VolumeCapability::default()],
            parameters: HashMap::from([
                ("repl".into(), "3".into()),
                (names::MAYASTOR_POOL_HAS_TOPOLOGY_KEY.into(), "zone".into()),
            ]),
            ..CreateVolumeRequest::default()
        };
        let placement = Placement {
            tier: Tier::Warm,
            source: TierSource::StorageClass,
            pool_has_topology_key: Some("zone\ncouchestor.io/tier".into()),
        };
        let mut bytes = original.encode_to_vec();
        bytes.extend(placement.request_suffix());
        let seen = CreateVolumeRequest::decode(bytes.as_slice()).expect("decodes");
        let mut want = original.clone();
        want.parameters.insert(
            names::MAYASTOR_POOL_HAS_TOPOLOGY_KEY.into(),
            "zone\ncouchestor.io/tier".into(),
        );
        assert_eq!(seen, want);
    }

    #[test]
    fn the_response_suffix_adds_the_tier_and_keeps_the_volume() {
        let original = CreateVolumeResponse {
            volume: Some(Volume {
                capacity_bytes: 42,
                volume_id: "v".into(),
                volume_context: HashMap::from([
                    ("repl".into(), "2".into()),
                    (names::TIER.into(), "cold".into()),
                ]),
                ..Volume::default()
            }),
        };
        let placement = Placement {
            tier: Tier::Hot,
            source: TierSource::PvcAnnotation,
            pool_has_topology_key: None,
        };
        let mut bytes = original.encode_to_vec();
        bytes.extend(placement.response_suffix());
        let seen = CreateVolumeResponse::decode(bytes.as_slice()).expect("decodes");
        let volume = seen.volume.expect("volume");
        assert_eq!(volume.capacity_bytes, 42);
        assert_eq!(volume.volume_id, "v");
        assert_eq!(volume.volume_context["repl"], "2");
        assert_eq!(volume.volume_context[names::TIER], "hot");
        assert!(placement.request_suffix().is_empty());
    }
}
