//! Well-known names, defined once (DESIGN §4). Every crate refers to these constants
//! instead of spelling the strings again.

/// API group of every CoucheStor custom resource.
pub const GROUP: &str = "couchestor.io";
/// API version of the custom resources.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` as written in manifests.
pub const API_VERSION: &str = "couchestor.io/v1alpha1";

/// Prefix of every label and annotation the suite owns.
pub const PREFIX: &str = "couchestor.io/";

/// PVC annotation: requested initial tier. CSI `volume_context` key: tier placed at
/// creation. StorageClass parameter: default initial tier.
pub const TIER: &str = "couchestor.io/tier";
/// StorageClass annotation marking a tiered class; its value must be [`TIERING_ENABLED`].
pub const TIERING: &str = "couchestor.io/tiering";
/// The value of [`TIERING`] that turns tiering on for a StorageClass.
pub const TIERING_ENABLED: &str = "enabled";
/// PV annotation present while the volume lives only in the EC archive; the value is the
/// name of its `EcVolume`.
pub const ARCHIVED: &str = "couchestor.io/archived";
/// EcVolume annotation set by the CSI sidecar when a pod needs an archived volume back.
pub const REHYDRATE_REQUESTED: &str = "couchestor.io/rehydrate-requested";

/// Finalizer the operator puts on every `VolumeMigration` it creates and removes once
/// the move is in a terminal phase: deleting a migration mid-move (or its policy) first
/// rolls the move back or undoes its steering, so no pool stays cordoned or unlabelled.
pub const MIGRATION_FINALIZER: &str = "couchestor.io/migration";

/// Server-side-apply field manager of the operator.
pub const MANAGER_OPERATOR: &str = "couchestor-operator";
/// Server-side-apply field manager of the admission webhook.
pub const MANAGER_WEBHOOK: &str = "couchestor-webhook";
/// Server-side-apply field manager of the CSI sidecar.
pub const MANAGER_CSI_SIDECAR: &str = "couchestor-csi-sidecar";
/// Server-side-apply field manager of the node agent.
pub const MANAGER_NODE_AGENT: &str = "couchestor-node-agent";

/// Mayastor StorageClass parameter that keeps every pool of the volume's node topology
/// eligible, so a volume can later move between tiers (reference §3.1).
pub const MAYASTOR_POOL_HAS_TOPOLOGY_KEY: &str = "poolHasTopologyKey";
/// Mayastor StorageClass parameter that pins a volume to pools carrying one label
/// value; a tiered class must not set it (its volumes could never move).
pub const MAYASTOR_POOL_AFFINITY_TOPOLOGY_LABEL: &str = "poolAffinityTopologyLabel";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_owned_name_carries_the_prefix() {
        for name in [TIER, TIERING, ARCHIVED, REHYDRATE_REQUESTED] {
            assert!(name.starts_with(PREFIX), "{name}");
        }
        assert_eq!(API_VERSION, format!("{GROUP}/{VERSION}"));
    }
}
