//! A stateful simulator of Mayastor's REST v0 API, for tests. No real Mayastor runs
//! here: it needs SPDK and hugepages (DESIGN §9).
//!
//! [`Sim::start`] serves a [`Cluster`] over HTTP on 127.0.0.1 at the same paths as
//! the real service, with the same JSON shapes, HTTP statuses and `RestJsonError`
//! kinds. Tests drive it through the real client, change it through [`Sim::with`]
//! (advance the virtual clock, fault a pool, flip the victim policy…), inject
//! request faults ([`Fault`]) and read the request log ([`Sim::log`]).
//!
//! Time is virtual: rebuilds progress only when the test calls [`Sim::advance`], or
//! by `auto_advance` on every request (so a polling executor makes progress without
//! a second task). Nothing depends on wall-clock time except [`FaultAction::Delay`].
//!
//! Routes (all under `/v0`): `GET /volumes?max_entries=&starting_token=`,
//! `GET /volumes/{id}`, `GET /volumes/{id}/rebuild-history`,
//! `PUT /volumes/{id}/replica_count/{n}`, `GET /pools`,
//! `GET /pools/{id}`, `PUT /pools/{id}/label/{key}={value}?overwrite=`,
//! `DELETE /pools/{id}/label/{key}`, `PUT|DELETE /pools/{id}/cordon` (body
//! `PoolCordonReq`; 404 when [`Behaviour::pool_cordon_endpoint`] is off), `GET /nodes`,
//! `GET /nodes/{id}`, `PUT|DELETE /nodes/{id}/cordon/{label}`, `GET /replicas`,
//! `GET /replicas/{id}`. An unknown path answers 404 and a known path with another
//! method 405, both without a body, as an actix server does.
//!
//! Compiled only with the `sim` cargo feature: test code stays out of the operator
//! binary, while this crate's tests (through a dev-dependency on the crate itself with
//! `sim`) and other crates' tests (`couchestor-operator = { features = ["sim"] }`) get
//! it without extra flags. What is faithful and what is simplified: `operator/README.md`.

mod cluster;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use axum::{
    Router,
    body::{Body, to_bytes},
    extract::{Request, State},
    http::{Method, StatusCode, header},
    response::Response,
};
use serde_json::Value;

pub use cluster::{Behaviour, Cluster, SimError, VictimPolicy, VolumeSetup};

/// One request as the simulator received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    pub method: String,
    /// Path and query, as sent (percent-encoded).
    pub path: String,
    pub body: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The status answered (after faults).
    pub status: u16,
}

/// What an injected fault does.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultAction {
    /// Answer `status` with a `RestJsonError` of `kind`. With `after_apply`, the
    /// request is carried out first and only the answer is lost.
    Fail {
        status: u16,
        kind: String,
        after_apply: bool,
    },
    /// Wait (wall-clock) before handling; the request is still carried out, even if
    /// the client gave up meanwhile — as a slow real server would.
    Delay(Duration),
}

/// A request fault: which requests it hits, how many times, and what it does.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// Only requests with this method (any when `None`).
    pub method: Option<Method>,
    /// Only requests whose path starts with this (any when `None`).
    pub path_prefix: Option<String>,
    /// How many matching requests it hits; `None`: all of them.
    pub times: Option<u32>,
    pub action: FaultAction,
}

impl Fault {
    /// The next `n` requests answer `status` (kind `Internal` for 500, `Unavailable`
    /// otherwise).
    pub fn fail_next(n: u32, status: u16) -> Self {
        let kind = if status == 500 {
            "Internal"
        } else {
            "Unavailable"
        };
        Self {
            method: None,
            path_prefix: None,
            times: Some(n),
            action: FaultAction::Fail {
                status,
                kind: kind.to_owned(),
                after_apply: false,
            },
        }
    }

    /// Every request (of `method`, when given) under `prefix` is delayed by `delay`.
    pub fn slow(method: Option<Method>, prefix: &str, delay: Duration) -> Self {
        Self {
            method,
            path_prefix: Some(prefix.to_owned()),
            times: None,
            action: FaultAction::Delay(delay),
        }
    }

    /// Restricts the fault to `method` requests under `prefix`.
    pub fn on(mut self, method: Method, prefix: &str) -> Self {
        self.method = Some(method);
        self.path_prefix = Some(prefix.to_owned());
        self
    }

    /// Carries the request out before failing the answer (a lost reply).
    pub fn after_apply(mut self) -> Self {
        if let FaultAction::Fail { after_apply, .. } = &mut self.action {
            *after_apply = true;
        }
        self
    }

    fn matches(&self, method: &Method, path: &str) -> bool {
        self.times != Some(0)
            && self.method.as_ref().is_none_or(|m| m == method)
            && self
                .path_prefix
                .as_deref()
                .is_none_or(|p| path.starts_with(p))
    }
}

#[derive(Debug, Default)]
struct Shared {
    cluster: Cluster,
    faults: Vec<Fault>,
    log: Vec<LoggedRequest>,
    /// Virtual time added before every request.
    auto_advance: Duration,
}

/// The simulator, serving until dropped.
#[derive(Debug)]
pub struct Sim {
    shared: Arc<Mutex<Shared>>,
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A panic while holding the lock cannot leave the model half-changed in a way
    // tests care about more than the panic itself.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

impl Sim {
    /// Serves `cluster` on 127.0.0.1 (a free port).
    pub async fn start(cluster: Cluster) -> std::io::Result<Self> {
        let shared = Arc::new(Mutex::new(Shared {
            cluster,
            ..Shared::default()
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            shared,
            addr,
            server,
        })
    }

    /// `http://127.0.0.1:<port>`, the client's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Reads or changes the cluster.
    pub fn with<R>(&self, f: impl FnOnce(&mut Cluster) -> R) -> R {
        f(&mut lock(&self.shared).cluster)
    }

    /// Moves the virtual clock (rebuilds progress).
    pub fn advance(&self, by: Duration) {
        self.with(|c| c.advance(by));
    }

    /// Adds `by` of virtual time before every request from now on.
    pub fn auto_advance(&self, by: Duration) {
        lock(&self.shared).auto_advance = by;
    }

    /// Adds a request fault; faults are tried in the order added.
    pub fn inject(&self, fault: Fault) {
        lock(&self.shared).faults.push(fault);
    }

    /// Removes every request fault.
    pub fn clear_faults(&self) {
        lock(&self.shared).faults.clear();
    }

    /// Every request so far, oldest first.
    pub fn log(&self) -> Vec<LoggedRequest> {
        lock(&self.shared).log.clone()
    }

    /// Requests that changed something or tried to (not `GET`).
    pub fn mutations(&self) -> Vec<LoggedRequest> {
        self.log()
            .into_iter()
            .filter(|r| r.method != "GET")
            .collect()
    }
}

async fn handle(State(shared): State<Arc<Mutex<Shared>>>, request: Request) -> Response {
    let method = request.method().clone();
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let body = to_bytes(request.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let body = String::from_utf8_lossy(&body).into_owned();
    // The work runs in its own task: a client that gives up (timeout, closed
    // connection) does not cancel it, as it would not cancel Mayastor's core agent.
    let work = tokio::spawn(serve(shared, method, path, body, authorization));
    work.await.unwrap_or_else(|_| Response::new(Body::empty()))
}

async fn serve(
    shared: Arc<Mutex<Shared>>,
    method: Method,
    path: String,
    body: String,
    authorization: Option<String>,
) -> Response {
    let seen = LoggedRequest {
        method: method.to_string(),
        path,
        body,
        authorization,
        status: 0,
    };
    // Pick the fault (and use up one of its hits) before any wait.
    let fault = {
        let mut s = lock(&shared);
        let by = s.auto_advance;
        if !by.is_zero() {
            s.cluster.advance(by);
        }
        s.faults
            .iter_mut()
            .find(|f| f.matches(&method, &seen.path))
            .map(|f| {
                if let Some(n) = &mut f.times {
                    *n -= 1;
                }
                f.action.clone()
            })
    };
    let mut failure = None;
    match fault {
        Some(FaultAction::Delay(d)) => tokio::time::sleep(d).await,
        Some(FaultAction::Fail {
            status,
            kind,
            after_apply,
        }) => {
            if !after_apply {
                return finish(&shared, seen, failed(status, &kind));
            }
            failure = Some((status, kind));
        }
        None => {}
    }
    let answer = {
        let mut s = lock(&shared);
        route(&mut s.cluster, &method, &seen.path, &seen.body)
    };
    let answer = match failure {
        Some((status, kind)) => failed(status, &kind),
        None => answer,
    };
    finish(&shared, seen, answer)
}

/// A route's answer: status and JSON, or status without a body.
type Answer = (u16, Option<Value>);

fn failed(status: u16, kind: &str) -> Answer {
    let body = serde_json::json!({
        "details": format!("injected fault: HTTP {status}"),
        "message": format!("injected fault ({kind})"),
        "kind": kind,
    });
    (status, Some(body))
}

fn finish(shared: &Mutex<Shared>, mut seen: LoggedRequest, answer: Answer) -> Response {
    let (status, json) = answer;
    seen.status = status;
    lock(shared).log.push(seen);
    let builder = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    let response = match json {
        Some(v) => builder
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(v.to_string())),
        None => builder.body(Body::empty()),
    };
    response.unwrap_or_else(|_| Response::new(Body::empty()))
}

fn decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| {
        kv.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('='))
    })
}

fn ok(result: Result<Value, SimError>) -> Answer {
    match result {
        Ok(v) => (200, Some(v)),
        Err(e) => (e.status, Some(e.body())),
    }
}

/// Routes one request to the cluster.
fn route(c: &mut Cluster, method: &Method, path_and_query: &str, body: &str) -> Answer {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    // Split before decoding: a `%2F` stays inside its segment.
    let raw: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let seg: Vec<String> = raw.iter().map(|s| decode(s)).collect();
    let seg: Vec<&str> = seg.iter().map(String::as_str).collect();
    let get = *method == Method::GET;
    let put = *method == Method::PUT;
    let delete = *method == Method::DELETE;
    let not_allowed: Answer = (405, None);
    match seg.as_slice() {
        ["v0", "volumes"] if get => {
            let Some(max) = query_param(query, "max_entries") else {
                return ok(Err(SimError::invalid(
                    "query parameter max_entries is required",
                )));
            };
            let parse = |s: &str| {
                s.parse::<usize>()
                    .map_err(|e| SimError::invalid(format!("{s:?}: {e}")))
            };
            let start = query_param(query, "starting_token").map(parse).transpose();
            ok(parse(max).and_then(|max| c.volumes_json(max, start?.unwrap_or(0))))
        }
        ["v0", "volumes", id] if get => ok(c.volume_json(id)),
        ["v0", "volumes", id, "rebuild-history"] if get => ok(c.rebuild_history_json(id)),
        ["v0", "volumes", id, "replica_count", n] if put => ok(n
            .parse::<u8>()
            .map_err(|_| SimError::invalid(format!("replica_count {n:?} is not in 1..=255")))
            .and_then(|n| c.set_replica_count(id, n))),
        ["v0", "pools"] if get => ok(c.pools_json()),
        ["v0", "pools", id] if get => ok(c.pool_json(id)),
        ["v0", "pools", id, "label", _] if put => {
            // `{key}={value}` is one segment: split it before decoding either half.
            let Some((key, value)) = raw[4].split_once('=') else {
                return ok(Err(SimError::invalid("expected {key}={value}")));
            };
            let overwrite = query_param(query, "overwrite") == Some("true");
            ok(c.put_pool_label(id, &decode(key), &decode(value), overwrite))
        }
        ["v0", "pools", id, "label", key] if delete => ok(c.delete_pool_label(id, key)),
        ["v0", "pools", _, "cordon"] if !c.behaviour.pool_cordon_endpoint => (404, None),
        ["v0", "pools", id, "cordon"] if put || delete => {
            let flags: Result<[bool; 4], SimError> = serde_json::from_str::<Value>(body)
                .map_err(|e| SimError::invalid(format!("PoolCordonReq: {e}")))
                .map(|v| {
                    let flag = |k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);
                    [
                        flag("replicas"),
                        flag("snapshots"),
                        flag("restores"),
                        flag("import") || flag("imports"),
                    ]
                });
            ok(flags.and_then(|f| c.cordon_pool(id, f, put)))
        }
        ["v0", "nodes"] if get => ok(c.nodes_json()),
        ["v0", "nodes", id] if get => ok(c.node_json(id)),
        ["v0", "nodes", id, "cordon", label] if put || delete => ok(c.cordon_node(id, label, put)),
        ["v0", "replicas"] if get => (200, Some(c.replicas_json())),
        ["v0", "replicas", id] if get => ok(c.replica_json(id)),
        ["v0", "volumes"]
        | ["v0", "volumes", _]
        | ["v0", "volumes", _, "replica_count", _]
        | ["v0", "volumes", _, "rebuild-history"]
        | ["v0", "pools"]
        | ["v0", "pools", _]
        | ["v0", "pools", _, "label", _]
        | ["v0", "pools", _, "cordon"]
        | ["v0", "nodes"]
        | ["v0", "nodes", _]
        | ["v0", "nodes", _, "cordon", _]
        | ["v0", "replicas"]
        | ["v0", "replicas", _] => not_allowed,
        _ => (404, None),
    }
}
