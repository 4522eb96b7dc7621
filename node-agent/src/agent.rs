//! The agent process: open the store, serve the API over mTLS, stop on shutdown.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use crate::config::{CertsConfig, ServeConfig};
use crate::rpc::{AgentIdentity, AgentService, Orders};
use crate::store::{ShardStore, StoreConfig};
use crate::{certs, storage_node, tls};

/// Serves until `shutdown` completes, then lets in-flight calls finish and closes the store.
pub async fn serve(
    config: &ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    tls::install_crypto_provider();
    // Both the gRPC server and the StorageNode publisher stop on the same signal.
    let shutdown = futures::FutureExt::shared(shutdown);
    let material = tls::TlsMaterial::read(&config.tls_files())?;
    let store_config = StoreConfig {
        index_path: config.index.clone(),
        disks: config.disks.clone(),
        direct_io: !config.no_direct_io,
    };
    let store = tokio::task::spawn_blocking(move || ShardStore::open(&store_config))
        .await
        .context("shard store open task")?
        .context("open the shard store")?;
    let report = store.recovery_report();
    tracing::info!(
        unclean_shutdown = report.unclean_shutdown,
        slots_checked = report.slots_checked,
        discarded = report.discarded_unindexed.len(),
        marked_for_repair = report.marked_for_repair.len(),
        "shard store open"
    );
    let store = Arc::new(store);
    let orders = Orders::new(
        material.client_config(),
        config.state_dir(),
        crate::codec::Backend::Best,
    );
    let service = AgentService::new(
        Arc::clone(&store),
        AgentIdentity {
            agent_id: config.agent_id.clone(),
            node_name: config.node_name.clone(),
        },
    )
    .with_orders(orders);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listen on {}", config.listen))?;
    let local = listener.local_addr().context("listening address")?;
    tracing::info!(addr = %local, agent_id = config.agent_id, "serving the node-agent API (mTLS)");
    let publisher = if config.publish.publish_storage_node {
        Some(tokio::spawn(
            publish_storage_node(config, local, shutdown.clone()).await?,
        ))
    } else {
        None
    };
    Server::builder()
        .tls_config(material.server_config())
        .context("TLS configuration (certificate, key, CA)")?
        .add_service(service.into_server())
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        .await
        .context("gRPC server")?;
    if let Some(publisher) = publisher {
        publisher.await.context("StorageNode publisher task")?;
    }
    tracing::info!("shut down");
    // Streams still reading hold clones of the store; its Drop marks it clean once the last
    // one ends.
    drop(store);
    Ok(())
}

/// The StorageNode publisher of `serve --publish-storage-node`, ready to spawn. Fails on
/// wiring errors (no Kubernetes configuration, no dialable endpoint), not on API errors.
async fn publish_storage_node(
    config: &ServeConfig,
    local: std::net::SocketAddr,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    let args = &config.publish;
    let endpoint = args
        .endpoint(local)
        .map_err(anyhow::Error::msg)
        .context("--publish-storage-node")?;
    let client = kube::Client::try_default().await.context(
        "--publish-storage-node needs a Kubernetes API (in-cluster config or KUBECONFIG)",
    )?;
    let publisher = storage_node::Publisher::new(client, config.node_name.clone());
    let schedule = storage_node::Schedule {
        rescan: args.rescan_interval,
        heartbeat: args.heartbeat_interval,
    };
    tracing::info!(
        node = config.node_name,
        endpoint,
        "publishing the StorageNode inventory"
    );
    Ok(storage_node::run(
        publisher,
        args.discovery.options(false),
        endpoint,
        schedule,
        shutdown,
    ))
}

/// `certs`: a CA, one certificate per host (server + client) and one client certificate.
pub fn write_certs(config: &CertsConfig) -> anyhow::Result<()> {
    let ca = certs::Authority::generate("couchestor-node-agent-ca").context("generate the CA")?;
    std::fs::create_dir_all(&config.out_dir)
        .with_context(|| format!("create {}", config.out_dir.display()))?;
    let ca_path = config.out_dir.join("ca.pem");
    std::fs::write(&ca_path, &ca.cert_pem)
        .with_context(|| format!("write {}", ca_path.display()))?;
    for host in &config.hosts {
        let issued = ca
            .issue_agent(host, std::slice::from_ref(host))
            .with_context(|| format!("issue a certificate for {host}"))?;
        let dir = certs::host_dir(&config.out_dir, host);
        certs::write_files(&dir, &issued, &ca.cert_pem)
            .with_context(|| format!("write {}", dir.display()))?;
    }
    let client = ca
        .issue_client("couchestor-client")
        .context("issue the client certificate")?;
    let dir = config.out_dir.join("client");
    certs::write_files(&dir, &client, &ca.cert_pem)
        .with_context(|| format!("write {}", dir.display()))?;
    // The CA key is not kept: re-run to add hosts (a lab CA, not a cluster CA).
    println!("{}", config.out_dir.display());
    Ok(())
}
