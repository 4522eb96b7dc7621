//! Why the sidecar itself answers a call instead of the backend, and the one conversion
//! of that answer to a gRPC status. Statuses from the backend never pass through here:
//! they are returned to the caller as they came.

use couchestor_core::names;
use tonic::{Code, Status};

use crate::cluster::ClusterError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request we must read does not decode as its CSI message.
    #[error("{what} does not decode as protobuf: {source}")]
    DecodeRequest {
        what: &'static str,
        #[source]
        source: prost::DecodeError,
    },
    /// The backend answered with bytes that do not decode as the CSI response.
    #[error("the backend driver's {what} does not decode as protobuf: {source}")]
    DecodeResponse {
        what: &'static str,
        #[source]
        source: prost::DecodeError,
    },
    /// A tier value that is not one of hot, warm, cold.
    #[error("{origin} {key:?} is {value:?}, which is not a tier; use hot, warm or cold", key = names::TIER)]
    InvalidTier { origin: &'static str, value: String },
    /// A tiered StorageClass also sets a Mayastor topology parameter that excludes
    /// `poolHasTopologyKey` (Mayastor allows only one of them).
    #[error(
        "parameter {param:?} cannot be combined with tiering: Mayastor accepts only one topology parameter and a tiered volume needs {has:?} (a pinned pool label would also keep the volume from ever moving between tiers)",
        has = names::MAYASTOR_POOL_HAS_TOPOLOGY_KEY
    )]
    TopologyConflict { param: String },
    /// The PVC could not be read, so its requested tier is unknown.
    #[error("cannot read PersistentVolumeClaim {namespace}/{name} for its {key:?} annotation: {source}; retrying", key = names::TIER)]
    PvcLookup {
        namespace: String,
        name: String,
        #[source]
        source: ClusterError,
    },
    /// Whether a volume is archived could not be determined.
    #[error("cannot tell whether volume {volume_id} (PV {pv}) is archived: {source}; retrying")]
    ArchiveLookup {
        volume_id: String,
        pv: String,
        #[source]
        source: ClusterError,
    },
    /// The volume lives only in the EC archive; rehydration has been requested.
    #[error(
        "volume {volume_id} (PV {pv}) is archived as EcVolume {ec_volume}; rehydration has been requested and the volume can be published once it is back in Mayastor; retry later"
    )]
    Rehydrating {
        volume_id: String,
        pv: String,
        ec_volume: String,
    },
    /// Recording the rehydration request failed.
    #[error(
        "volume {volume_id} is archived as EcVolume {ec_volume}, and requesting its rehydration failed: {source}; retrying"
    )]
    RehydrationRequest {
        volume_id: String,
        ec_volume: String,
        #[source]
        source: ClusterError,
    },
    /// Deleting the EcVolume of an archived volume failed.
    #[error(
        "deleting EcVolume {ec_volume} of archived volume {volume_id} failed: {source}; retrying"
    )]
    ArchiveDelete {
        volume_id: String,
        ec_volume: String,
        #[source]
        source: ClusterError,
    },
}

impl Error {
    /// The gRPC code of this answer (CSI "Error Scheme" and per-RPC error tables).
    ///
    /// - bad input ⇒ `INVALID_ARGUMENT`: the caller must fix the request;
    /// - anything that may succeed later (API server unreachable, volume being
    ///   rehydrated) ⇒ `UNAVAILABLE`: gRPC's "transient, retry with backoff". The
    ///   external-provisioner and -attacher retry it and treat it as non-final (the
    ///   operation may still be in progress), which is what rehydration is. `ABORTED`
    ///   is not used: CSI reserves it for "another operation on this volume is in
    ///   flight", which tells the CO to look for its own concurrent call;
    /// - a backend answer we cannot read ⇒ `INTERNAL`.
    pub fn code(&self) -> Code {
        match self {
            Error::DecodeRequest { .. }
            | Error::InvalidTier { .. }
            | Error::TopologyConflict { .. } => Code::InvalidArgument,
            Error::DecodeResponse { .. } => Code::Internal,
            Error::PvcLookup { .. }
            | Error::ArchiveLookup { .. }
            | Error::Rehydrating { .. }
            | Error::RehydrationRequest { .. }
            | Error::ArchiveDelete { .. } => Code::Unavailable,
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        Status::new(e.code(), e.to_string())
    }
}
