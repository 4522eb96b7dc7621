//! The Unix socket side: binding (stale socket removal), the HTTP/2 accept loop with
//! graceful shutdown, and the lazily connected channel to the backend driver.
//!
//! The server is hyper's HTTP/2 connection driver rather than tonic's `Server`, because
//! tonic's server enforces the caller's `grpc-timeout` itself and answers `CANCELLED`
//! when it passes; the proxy enforces it and answers `DEADLINE_EXCEEDED`, as gRPC
//! specifies.

use std::{
    future::Future,
    io,
    os::unix::fs::FileTypeExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, bail};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::graceful::GracefulShutdown,
    service::TowerToHyperService,
};
use tokio::net::{UnixListener, UnixStream};
use tonic::transport::{Channel, Endpoint, Uri};

use crate::{
    cluster::Cluster,
    proxy::{CsiService, Proxy},
};

/// How long in-flight calls may take to finish after shutdown was asked for.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Binds `path`, first removing a socket file left by an earlier run. Anything else at
/// that path (a regular file, a directory) is an error, never deleted.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            std::fs::remove_file(path)
                .with_context(|| format!("removing the stale socket {}", path.display()))?;
            tracing::info!(path = %path.display(), "removed a stale socket file");
        }
        Ok(_) => bail!(
            "{} exists and is not a socket; refusing to replace it",
            path.display()
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("inspecting {}", path.display())),
    }
    UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))
}

/// A channel to the backend's socket. It connects on first use and reconnects after the
/// backend restarts; while the backend is down, calls fail with `UNAVAILABLE`.
pub fn backend_channel(path: PathBuf) -> Channel {
    // The URI is required by the HTTP/2 layer (`:authority`) but never resolved.
    Endpoint::from_static("http://csi-backend.invalid").connect_with_connector_lazy(
        tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }),
    )
}

/// Serves `proxy` on `listener` until `shutdown` resolves, then stops accepting and
/// lets calls in flight finish (at most [`SHUTDOWN_GRACE`]).
pub async fn serve<C: Cluster>(
    listener: UnixListener,
    proxy: Arc<Proxy<C>>,
    shutdown: impl Future<Output = ()>,
) {
    let service = CsiService::new(proxy);
    let http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let connection = http2.serve_connection(
                        TokioIo::new(stream),
                        TowerToHyperService::new(service.clone()),
                    );
                    let connection = graceful.watch(connection);
                    tokio::spawn(async move {
                        if let Err(e) = connection.await {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: do not spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::warn!(grace = ?SHUTDOWN_GRACE, "calls still in flight after the grace period; stopping anyway");
        }
    }
}
