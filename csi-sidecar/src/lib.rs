//! # couchestor-csi-sidecar
//!
//! A CSI proxy in the Mayastor CSI controller pod (DESIGN §7). The external-provisioner
//! and -attacher talk to it instead of to Mayastor's CSI controller; it forwards every
//! Identity and Controller call to Mayastor **as bytes** and intercepts three:
//!
//! - **CreateVolume** — resolves the initial tier (PVC annotation, else StorageClass
//!   parameter, else hot), makes the volume movable between tiers
//!   (`poolHasTopologyKey` lists `couchestor.io/tier`) and returns the tier in
//!   `volume_context` ([`placement`]);
//! - **ControllerPublishVolume** — an archived volume (PV annotation
//!   `couchestor.io/archived`) gets a rehydration request on its EcVolume and the
//!   caller gets `UNAVAILABLE` (retry) until the volume is back;
//! - **DeleteVolume** — an archived volume's EcVolume is deleted (already gone is
//!   fine), then the call is forwarded.
//!
//! Modules: [`config`] (flags), [`codec`] (bytes in, bytes out), [`proxy`] (routing,
//! forwarding, the three intercepts), [`placement`] (tier and placement decisions and
//! the bytes appended for them), [`cluster`] (what is read from and written to the
//! Kubernetes API), [`server`] (socket, HTTP/2, shutdown), [`error`] (the one
//! conversion to a gRPC status).

pub mod cluster;
pub mod codec;
pub mod config;
pub mod error;
pub mod placement;
pub mod proxy;
pub mod server;

use std::{future::Future, sync::Arc};

pub use crate::{
    cluster::{Cluster, KubeCluster},
    config::Config,
    proxy::Proxy,
};

/// Serves until `shutdown` resolves, then removes the socket file.
pub async fn run<C: Cluster>(
    config: Config,
    cluster: C,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let listener = server::bind(&config.listen)?;
    let proxy = Arc::new(Proxy::new(
        server::backend_channel(config.backend.clone()),
        cluster,
        config.max_message_bytes,
    ));
    tracing::info!(
        listen = %config.listen.display(),
        backend = %config.backend.display(),
        "serving CSI"
    );
    server::serve(listener, proxy, shutdown).await;
    if let Err(e) = std::fs::remove_file(&config.listen) {
        tracing::debug!(error = %e, "socket file not removed");
    }
    Ok(())
}
