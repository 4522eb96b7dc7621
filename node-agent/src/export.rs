//! `couchestor-node-agent export`: serve archived volumes over NBD, each read from its
//! columns on the agents named in its manifest (degraded reads when columns are gone).

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;

use crate::archive::{
    ArchiveReader, EcBackend, Manifest, ReaderConfig, TieredCache, remote_reader,
};
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
    Ok(remote_reader(manifest, tls, Backend::Best, config)?.0)
}

/// The tiered stripe cache of `config` (L1 RAM, optional L2 disk, L3 the archives), or
/// `None` when `--cache-ram 0`.
async fn open_cache(config: &ExportConfig) -> anyhow::Result<Option<TieredCache>> {
    if config.cache_ram == 0 {
        return Ok(None);
    }
    // Not served anywhere yet: the export has no metrics endpoint (see README).
    let mut registry = prometheus_client::registry::Registry::default();
    let mut builder = couchestor_cache::Cache::builder()
        .l1_capacity(config.cache_ram)
        .backend(EcBackend::default());
    if let Some(dir) = &config.cache_dir {
        builder = builder.l2_dir(dir).l2_capacity(config.cache_disk);
    }
    let cache = builder
        .open(&mut registry)
        .await
        .context("open the stripe cache")?;
    Ok(Some(TieredCache::new(cache)))
}

/// Serves until `shutdown` completes.
pub async fn serve(
    config: &ExportConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    tls::install_crypto_provider();
    let material = TlsMaterial::read(&config.tls.tls_files())?;
    let tls = material.client_config();
    let cache = open_cache(config).await?;
    let mut server = NbdServer::new();
    for path in &config.manifests {
        let manifest = Manifest::load(path)?;
        let mut reader = reader_of(&manifest, &tls, ReaderConfig::default())
            .with_context(|| format!("volume of {}", path.display()))?;
        if let Some(cache) = &cache {
            reader.attach_cache(cache.clone(), manifest.cache_bucket());
        }
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
