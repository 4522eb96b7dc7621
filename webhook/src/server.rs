//! HTTPS server: `/validate`, `/mutate`, `/healthz`, `/readyz`, with a body size limit,
//! a request timeout, and certificate hot reload (new connections use the new
//! certificate; no restart).

use std::{
    future::Future,
    hash::{DefaultHasher, Hash, Hasher},
    path::PathBuf,
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::{DefaultBodyLimit, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use axum_server::tls_rustls::RustlsConfig;
use tower_http::timeout::TimeoutLayer;

use crate::{admit, index::Index, review};

/// Where the serving certificate and key live (PEM). Kubernetes updates a mounted
/// Secret by swapping a symlink, so the files are re-read, not watched by inode.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Limits and intervals of the server.
#[derive(Debug, Clone)]
pub struct Options {
    /// Larger bodies get 413. The API server sends at most ~3 MiB objects.
    pub max_body_bytes: usize,
    /// A request taking longer gets 408 (the API server's own timeout is 10 s at most).
    pub request_timeout: Duration,
    /// How often the certificate files are checked for a change.
    pub reload_interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 << 20,
            request_timeout: Duration::from_secs(8),
            reload_interval: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Endpoint {
    Validate,
    Mutate,
}

/// The routes, for serving and for in-process tests.
pub fn router(index: Index, options: &Options) -> Router {
    Router::new()
        .route(
            "/validate",
            post(|s: State<Index>, body: Bytes| handle(s, body, Endpoint::Validate)),
        )
        .route(
            "/mutate",
            post(|s: State<Index>, body: Bytes| handle(s, body, Endpoint::Mutate)),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(index): State<Index>| async move {
                if index.is_synced() {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "cluster not listed yet")
                }
            }),
        )
        .layer(DefaultBodyLimit::max(options.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            options.request_timeout,
        ))
        .with_state(index)
}

async fn handle(State(index): State<Index>, body: Bytes, endpoint: Endpoint) -> Response {
    let request = match review::parse(&body) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, bytes = body.len(), "rejected a malformed AdmissionReview");
            return (
                StatusCode::BAD_REQUEST,
                format!("couchestor-webhook: {e}\n"),
            )
                .into_response();
        }
    };
    let span = tracing::info_span!("admission", uid = %request.uid, kind = %request.kind.kind, name = %request.name, op = ?request.operation);
    let _guard = span.enter();
    let snapshot = index.snapshot();
    let response = match endpoint {
        Endpoint::Validate => admit::validate(&request, &snapshot),
        Endpoint::Mutate => admit::mutate(&request, &snapshot),
    };
    match &response.status {
        Some(s) if !response.allowed => {
            tracing::warn!(code = s.code, message = %s.message, "denied")
        }
        _ => tracing::debug!(patched = response.patch.is_some(), "allowed"),
    }
    axum::Json(response.into_review()).into_response()
}

/// Loads the certificate and key, failing with the file names when they are unusable.
/// Returns the digest of the bytes loaded, so the reloader compares against exactly
/// what is being served (a change between loading and the first check is not missed).
pub async fn load_tls(files: &TlsFiles) -> anyhow::Result<(RustlsConfig, u64)> {
    use anyhow::Context;
    let (cert, key) = read_pair(files).await?;
    let loaded = digest(&cert, &key);
    let config = RustlsConfig::from_pem(cert, key).await.with_context(|| {
        format!(
            "loading TLS certificate {} and key {}",
            files.cert.display(),
            files.key.display()
        )
    })?;
    Ok((config, loaded))
}

fn digest(cert: &[u8], key: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    (cert, key).hash(&mut h);
    h.finish()
}

async fn read_pair(files: &TlsFiles) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    use anyhow::Context;
    let cert = tokio::fs::read(&files.cert)
        .await
        .with_context(|| format!("reading {}", files.cert.display()))?;
    let key = tokio::fs::read(&files.key)
        .await
        .with_context(|| format!("reading {}", files.key.display()))?;
    Ok((cert, key))
}

/// Re-reads the files every `interval` and swaps the certificate when their content
/// differs from `current` (the digest of what is served). A broken pair (half-written
/// during rotation) is logged and retried; the old certificate keeps serving meanwhile.
pub async fn reload_tls(
    config: RustlsConfig,
    files: TlsFiles,
    interval: Duration,
    mut current: u64,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let (cert, key) = match read_pair(&files).await {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the TLS files; keeping the current certificate");
                continue;
            }
        };
        let seen = digest(&cert, &key);
        if seen == current {
            continue;
        }
        match config.reload_from_pem(cert, key).await {
            Ok(()) => {
                current = seen;
                tracing::info!(cert = %files.cert.display(), "TLS certificate reloaded");
            }
            Err(e) => {
                tracing::warn!(error = %e, "new TLS files do not load yet; keeping the current certificate")
            }
        }
    }
}

/// Serves HTTPS on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: std::net::TcpListener,
    files: TlsFiles,
    index: Index,
    options: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    install_crypto_provider();
    let (config, loaded) = load_tls(&files).await?;
    let reloader = tokio::spawn(reload_tls(
        config.clone(),
        files,
        options.reload_interval,
        loaded,
    ));
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(Some(Duration::from_secs(5)));
    });
    listener.set_nonblocking(true)?;
    let app = router(index, &options);
    let result = axum_server::from_tcp_rustls(listener, config)?
        .handle(handle)
        .serve(app.into_make_service())
        .await;
    reloader.abort();
    Ok(result?)
}

/// Installs ring as the process's rustls provider (shared with kube); idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
