//! `couchestor-node-agent export`: serve archived volumes over NBD, each read from its
//! columns on the agents named in its manifest (degraded reads when columns are gone).

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;

use crate::archive::{ArchiveReader, ColumnSource, Manifest, ReaderConfig, RemoteColumns};
use crate::codec::Backend;
use crate::config::ExportConfig;
use crate::nbd::NbdServer;
use crate::tls::{self, TlsMaterial};

/// A reader of the volume of `manifest`, its columns read with `tls` as the client identity.
pub fn reader_of(
    manifest: &Manifest,
    tls: &tonic::transport::ClientTlsConfig,
    config: ReaderConfig,
) -> anyhow::Result<ArchiveReader> {
    let layout = manifest.archive_layout()?;
    let codec = crate::archive::codec_for(manifest, Backend::Best)?;
    let remote: Arc<dyn ColumnSource> =
        Arc::new(RemoteColumns::new(manifest, tls).map_err(|f| anyhow::anyhow!("{f}"))?);
    Ok(ArchiveReader::new(
        manifest.volume(),
        layout,
        codec,
        vec![remote; layout.columns()],
        config,
    )?)
}

/// Serves until `shutdown` completes.
pub async fn serve(
    config: &ExportConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    tls::install_crypto_provider();
    let material = TlsMaterial::read(&config.tls.tls_files())?;
    let tls = material.client_config();
    let mut server = NbdServer::new();
    for path in &config.manifests {
        let manifest = Manifest::load(path)?;
        let reader = reader_of(&manifest, &tls, ReaderConfig::default())
            .with_context(|| format!("volume of {}", path.display()))?;
        tracing::info!(
            export = manifest.volume(),
            size = manifest.spec.size_bytes,
            "exporting"
        );
        server.add_export(manifest.volume(), Arc::new(reader));
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listen on {}", config.listen))?;
    Arc::new(server)
        .serve_tcp(listener, shutdown)
        .await
        .context("NBD server")
}
