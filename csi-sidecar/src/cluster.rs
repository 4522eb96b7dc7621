//! What the sidecar reads from and writes to the cluster: PVC annotations, the archive
//! marker of PVs, rehydration requests and EcVolume deletion.
//!
//! [`Cluster`] is a trait because the sidecar's tests cannot reach a real API server:
//! they run an in-process fake, production runs [`KubeCluster`] (a kube `Client`, itself
//! tested at the wire level in `tests/kube_cluster.rs`).

use std::{collections::BTreeMap, future::Future};

use couchestor_core::{EcVolume, Timestamp, names};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, Patch, PatchParams},
};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{kind} {name} not found")]
    NotFound { kind: &'static str, name: String },
    #[error("{action}: {source}")]
    Api {
        action: String,
        #[source]
        source: Box<kube::Error>,
    },
    /// Any other reason the cluster could not answer (used by non-kube implementations).
    #[error("{0}")]
    Unavailable(String),
}

/// What deleting an EcVolume found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// The EcVolume existed and its deletion was accepted.
    Now,
    /// It was already gone (an earlier attempt succeeded): still a success.
    AlreadyGone,
}

/// The cluster as the sidecar sees it.
pub trait Cluster: Send + Sync + 'static {
    /// The annotations of PVC `namespace/name`; [`ClusterError::NotFound`] if it does
    /// not exist.
    fn pvc_annotations(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<BTreeMap<String, String>, ClusterError>> + Send;

    /// The EcVolume holding volume `volume_id` (PV `pv`) when the volume lives only in
    /// the EC archive (the PV's [`names::ARCHIVED`] annotation); `None` when it is a
    /// live Mayastor volume.
    fn archive_of(
        &self,
        volume_id: &str,
        pv: &str,
    ) -> impl Future<Output = Result<Option<String>, ClusterError>> + Send;

    /// Records that `node` needs EcVolume `ec_volume` back: sets
    /// [`names::REHYDRATE_REQUESTED`] on it (first request wins; idempotent).
    fn request_rehydration(
        &self,
        ec_volume: &str,
        node: &str,
    ) -> impl Future<Output = Result<(), ClusterError>> + Send;

    /// Deletes EcVolume `ec_volume`; already gone is a success.
    fn delete_ec_volume(
        &self,
        ec_volume: &str,
    ) -> impl Future<Output = Result<Deleted, ClusterError>> + Send;
}

/// [`Cluster`] backed by the Kubernetes API.
#[derive(Clone)]
pub struct KubeCluster {
    client: Client,
}

impl std::fmt::Debug for KubeCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeCluster").finish_non_exhaustive()
    }
}

impl KubeCluster {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

fn api_error(action: impl Into<String>) -> impl FnOnce(kube::Error) -> ClusterError {
    let action = action.into();
    move |source| ClusterError::Api {
        action,
        source: Box::new(source),
    }
}

impl Cluster for KubeCluster {
    async fn pvc_annotations(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<BTreeMap<String, String>, ClusterError> {
        let pvc = Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(api_error(format!(
                "reading PersistentVolumeClaim {namespace}/{name}"
            )))?
            .ok_or_else(|| ClusterError::NotFound {
                kind: "PersistentVolumeClaim",
                name: format!("{namespace}/{name}"),
            })?;
        Ok(pvc.metadata.annotations.unwrap_or_default())
    }

    async fn archive_of(&self, volume_id: &str, pv: &str) -> Result<Option<String>, ClusterError> {
        let found = Api::<PersistentVolume>::all(self.client.clone())
            .get_opt(pv)
            .await
            .map_err(api_error(format!("reading PersistentVolume {pv}")))?;
        if let Some(found) = found {
            return Ok(found
                .metadata
                .annotations
                .and_then(|mut a| a.remove(names::ARCHIVED)));
        }
        // No PV (it may already be gone when DeleteVolume is retried): an EcVolume
        // that still names this volume as its source is its archive.
        let archives = Api::<EcVolume>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .map_err(api_error("listing EcVolumes"))?;
        Ok(archives
            .items
            .into_iter()
            .find(|e| e.spec.source_volume_id == volume_id)
            .and_then(|e| e.metadata.name))
    }

    async fn request_rehydration(&self, ec_volume: &str, node: &str) -> Result<(), ClusterError> {
        let api = Api::<EcVolume>::all(self.client.clone());
        let current = api
            .get_opt(ec_volume)
            .await
            .map_err(api_error(format!("reading EcVolume {ec_volume}")))?
            .ok_or_else(|| ClusterError::NotFound {
                kind: "EcVolume",
                name: ec_volume.to_owned(),
            })?;
        let already = current
            .metadata
            .annotations
            .is_some_and(|a| a.contains_key(names::REHYDRATE_REQUESTED));
        if already {
            return Ok(());
        }
        // The value is when the first request came; the operator only needs the key.
        let patch = json!({"metadata": {"annotations": {
            names::REHYDRATE_REQUESTED: Timestamp::now().to_string(),
        }}});
        tracing::info!(ec_volume, node, "requesting rehydration");
        api.patch(
            ec_volume,
            &PatchParams {
                field_manager: Some(names::MANAGER_CSI_SIDECAR.to_owned()),
                ..PatchParams::default()
            },
            &Patch::Merge(&patch),
        )
        .await
        .map_err(api_error(format!("annotating EcVolume {ec_volume}")))?;
        Ok(())
    }

    async fn delete_ec_volume(&self, ec_volume: &str) -> Result<Deleted, ClusterError> {
        match Api::<EcVolume>::all(self.client.clone())
            .delete(ec_volume, &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(Deleted::Now),
            Err(kube::Error::Api(status)) if status.is_not_found() => Ok(Deleted::AlreadyGone),
            Err(e) => Err(api_error(format!("deleting EcVolume {ec_volume}"))(e)),
        }
    }
}
