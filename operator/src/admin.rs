//! The admin server: `/healthz` (the process is alive), `/readyz` (watches synced and
//! Prometheus + Mayastor answered recently), `/metrics` (OpenMetrics text).

use std::{
    future::Future,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use prometheus_client::registry::Registry;

/// What `/readyz` looks at. Shared by the controller (which reports watch syncs and
/// peer answers), the prober and the leader elector.
#[derive(Debug)]
pub struct Health {
    /// A peer answer older than this no longer counts.
    max_age: Duration,
    prometheus_ok: Mutex<Option<Instant>>,
    mayastor_ok: Mutex<Option<Instant>>,
    watches_synced: AtomicBool,
    leader: AtomicBool,
}

/// The peers whose answers `/readyz` requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Prometheus,
    Mayastor,
}

impl Health {
    /// Answers older than `max_age` make the process unready.
    pub fn new(max_age: Duration) -> Self {
        Self {
            max_age,
            prometheus_ok: Mutex::new(None),
            mayastor_ok: Mutex::new(None),
            watches_synced: AtomicBool::new(false),
            leader: AtomicBool::new(false),
        }
    }

    /// Records that `peer` answered just now.
    pub fn answered(&self, peer: Peer) {
        let slot = match peer {
            Peer::Prometheus => &self.prometheus_ok,
            Peer::Mayastor => &self.mayastor_ok,
        };
        *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }

    /// Records whether every watch has listed once.
    pub fn set_watches_synced(&self, synced: bool) {
        self.watches_synced.store(synced, Ordering::SeqCst);
    }

    /// Records whether this process holds the lease (only a leader watches).
    pub fn set_leader(&self, leader: bool) {
        self.leader.store(leader, Ordering::SeqCst);
    }

    /// Whether this process holds the lease.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::SeqCst)
    }

    /// `Ok` when ready, else every reason it is not.
    pub fn readiness(&self) -> Result<(), Vec<String>> {
        let mut why = Vec::new();
        for (name, slot) in [
            ("prometheus", &self.prometheus_ok),
            ("mayastor", &self.mayastor_ok),
        ] {
            match *slot.lock().unwrap_or_else(PoisonError::into_inner) {
                None => why.push(format!("{name} has not answered yet")),
                Some(at) if at.elapsed() > self.max_age => why.push(format!(
                    "{name} has not answered for {}s",
                    at.elapsed().as_secs()
                )),
                Some(_) => {}
            }
        }
        if self.is_leader() && !self.watches_synced.load(Ordering::SeqCst) {
            why.push("watches have not listed yet".to_owned());
        }
        if why.is_empty() { Ok(()) } else { Err(why) }
    }
}

#[derive(Clone)]
struct AppState {
    health: Arc<Health>,
    registry: Arc<Registry>,
}

/// The admin routes.
pub fn router(health: Arc<Health>, registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(AppState { health, registry })
}

async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    match s.health.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", why.join("; ")),
        ),
    }
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &s.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("encoding metrics: {e}\n"),
        ),
    }
}

/// Serves the admin routes on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    health: Arc<Health>,
    registry: Arc<Registry>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(health, registry))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_is_ready_only_once_its_watches_have_listed() {
        let h = Health::new(Duration::from_secs(60));
        let why = h.readiness().expect_err("no peer answered");
        assert_eq!(why.len(), 2, "{why:?}");
        h.answered(Peer::Prometheus);
        h.answered(Peer::Mayastor);
        assert!(h.readiness().is_ok(), "a follower does not watch");
        h.set_leader(true);
        let why = h.readiness().expect_err("not synced");
        assert!(why[0].contains("watches"), "{why:?}");
        h.set_watches_synced(true);
        assert!(h.readiness().is_ok());
    }

    #[test]
    fn an_old_answer_no_longer_counts() {
        let h = Health::new(Duration::ZERO);
        h.answered(Peer::Prometheus);
        h.answered(Peer::Mayastor);
        std::thread::sleep(Duration::from_millis(5));
        let why = h.readiness().expect_err("stale");
        assert!(
            why.iter().all(|w| w.contains("has not answered for")),
            "{why:?}"
        );
    }
}
