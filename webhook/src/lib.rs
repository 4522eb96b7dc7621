//! # couchestor-webhook
//!
//! The admission webhook of CoucheStor (DESIGN §6): validating for the CoucheStor
//! resources (the one `couchestor_core` validation plus cross-object rules), mutating
//! for PVCs and StorageClasses of tiered classes. HTTPS only, with certificate hot
//! reload.
//!
//! - [`review`]: AdmissionReview v1 wire types (base64 JSONPatch as the API documents);
//! - [`admit`]: the decisions, pure functions of a request and an [`index::Snapshot`];
//! - [`index`]: the watched view of other objects;
//! - [`server`]: axum over rustls, body limit, timeout, `/healthz`, `/readyz`;
//! - [`certs`]: a self-signed CA for clusters without cert-manager;
//! - [`install`]: puts that certificate into a cluster (Secret + `caBundle`).

pub mod admit;
pub mod certs;
pub mod config;
pub mod index;
pub mod install;
pub mod review;
pub mod server;

use std::future::Future;

use anyhow::Context;

use crate::{
    config::{BootstrapConfig, ServeConfig},
    index::Index,
    server::{Options, TlsFiles},
};

/// Serves until `shutdown` resolves.
pub async fn run(
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    server::install_crypto_provider();
    let index = if config.no_watch {
        tracing::warn!("--no-watch: cross-object rules see an empty cluster");
        Index::synced()
    } else {
        let client = kube::Client::try_default()
            .await
            .context("connecting to the Kubernetes API")?;
        let index = Index::unsynced();
        let watched = index.clone();
        tokio::spawn(async move {
            if let Err(e) = index::watch(client, watched).await {
                tracing::error!(error = %e, "watching the cluster failed; cross-object checks are stale");
            }
        });
        index
    };
    let listener = std::net::TcpListener::bind(config.listen)
        .with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(listen = %config.listen, "serving admission reviews");
    let options = Options {
        max_body_bytes: config.max_body_bytes,
        request_timeout: config.request_timeout,
        reload_interval: config.cert_reload_interval,
    };
    let files = TlsFiles {
        cert: config.tls_cert,
        key: config.tls_key,
    };
    server::serve(listener, files, index, options, shutdown).await
}

/// Writes a CA and a serving certificate for the webhook Service into `out_dir`, and
/// with `--apply` also installs them in the cluster (Secret + `caBundle`).
pub async fn bootstrap_certs(config: &BootstrapConfig) -> anyhow::Result<()> {
    let ca = certs::Authority::generate("couchestor-webhook-ca").context("generating the CA")?;
    let serving = ca
        .issue(&certs::service_dns_names(
            &config.service,
            &config.namespace,
        ))
        .context("issuing the serving certificate")?;
    std::fs::create_dir_all(&config.out_dir)
        .with_context(|| format!("creating {}", config.out_dir.display()))?;
    for (name, pem) in [
        ("ca.crt", &ca.cert_pem),
        ("tls.crt", &serving.cert_pem),
        ("tls.key", &serving.key_pem),
    ] {
        let path = config.out_dir.join(name);
        std::fs::write(&path, pem).with_context(|| format!("writing {}", path.display()))?;
    }
    if config.apply {
        server::install_crypto_provider();
        let client = kube::Client::try_default()
            .await
            .context("connecting to the Kubernetes API")?;
        let target = install::Target {
            namespace: config.namespace.clone(),
            secret: config.secret.clone(),
            validating: config.validating_webhook.clone(),
            mutating: config.mutating_webhook.clone(),
        };
        install::install(client, &target, &ca, &serving).await?;
        tracing::info!(secret = %config.secret, "serving Secret applied and caBundle patched");
    }
    Ok(())
}
