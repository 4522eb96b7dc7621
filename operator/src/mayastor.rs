//! A client for Mayastor's control-plane REST API (`/v0`), and — behind the `sim`
//! feature — a stateful simulator of it for tests.
//!
//! Only what a tiering operator needs (`../shared/reference/mayastor-csi.md` §1):
//! reading volumes (spec, state, `replica_topology`, nexus children, rebuild progress
//! and history),
//! pools (labels, cordon, capacity, status), nodes and replicas; setting a volume's
//! replica count (the only supported way to add or remove a replica: the control plane
//! chooses the pool and the victim); putting and deleting pool labels; cordoning pools
//! where the server has the endpoint (OpenEBS ≥ 4.4) and nodes.
//!
//! Every call goes over the wire and every non-2xx answer is an [`Error`] carrying the
//! request, the HTTP status and the server's `RestJsonError {kind, message, details}`.
//! Nothing answers success without the server having said so.

pub mod model;
#[cfg(feature = "sim")]
pub mod sim;

use std::{fmt, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Uri, header};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde::de::DeserializeOwned;

pub use model::*;

/// Characters kept as they are in a path segment (RFC 3986 unreserved); everything
/// else, `/` included, is percent-encoded, as the spec's generated clients do.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One path segment, percent-encoded.
pub fn segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

/// The request an error is about (`PUT /v0/volumes/…/replica_count/3`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// Path and query, as sent.
    pub path: String,
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

/// An error answer. `kind`, `message` and `details` come from the server's
/// `RestJsonError` body; they are empty when the body was not one (`body` then keeps
/// its start).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{request}: HTTP {status} {kind}: {message} {details}{}", if body.is_empty() { String::new() } else { format!(" (body: {body})") })]
pub struct ApiError {
    pub request: Request,
    pub status: u16,
    pub kind: String,
    pub message: String,
    pub details: String,
    pub body: String,
}

/// What went wrong talking to Mayastor.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid Mayastor REST URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("{request}: Mayastor REST is unreachable: {source}")]
    Unreachable {
        request: Request,
        source: hyper_util::client::legacy::Error,
    },
    #[error("{request}: no answer within {timeout:?}")]
    Timeout { request: Request, timeout: Duration },
    /// The server answered an error.
    #[error("{0}")]
    Api(Box<ApiError>),
    /// The server does not have this endpoint (404 without a `RestJsonError`, 405 or
    /// 501): an older Mayastor, e.g. pool cordon before OpenEBS 4.4.
    #[error("{request}: this Mayastor does not serve the endpoint (HTTP {status})")]
    Unsupported { request: Request, status: u16 },
    #[error("{request}: malformed answer: {reason}")]
    Malformed { request: Request, reason: String },
    /// Steering by label was needed (no pool cordon on this server) but the pool does
    /// not carry the label: nothing was changed.
    #[error("pool {pool} has no label {key:?} to remove for steering; nothing was changed")]
    NoSteeringLabel { pool: String, key: String },
}

impl Error {
    /// The server's error kind (`NotFound`, `ResourceExhausted`, `FailedPrecondition`…).
    pub fn kind(&self) -> Option<&str> {
        match self {
            Error::Api(e) if !e.kind.is_empty() => Some(&e.kind),
            _ => None,
        }
    }

    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api(e) => Some(e.status),
            Error::Unsupported { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The request that failed, when one was sent.
    pub fn request(&self) -> Option<&Request> {
        match self {
            Error::Url { .. } | Error::NoSteeringLabel { .. } => None,
            Error::Unreachable { request, .. }
            | Error::Timeout { request, .. }
            | Error::Unsupported { request, .. }
            | Error::Malformed { request, .. } => Some(request),
            Error::Api(e) => Some(&e.request),
        }
    }

    /// Worth retrying later: no answer, or a 5xx other than 501/507.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unreachable { .. } | Error::Timeout { .. } => true,
            Error::Api(e) => e.status >= 500 && e.status != 501 && e.status != 507,
            _ => false,
        }
    }
}

/// How to reach the REST service.
#[derive(Clone)]
pub struct Config {
    /// `http://<release>-api-rest:8081` (the `/v0` prefix is added by the client).
    pub base_url: String,
    /// Sent as `Authorization: Bearer …` when set. The Helm chart runs the REST
    /// service with `--no-auth`, so usually `None`.
    pub bearer_token: Option<String>,
    /// Per request, including reading the body.
    pub timeout: Duration,
    /// `max_entries` for `GET /volumes`; 0 asks for everything in one page.
    pub page_size: u32,
}

// By hand, so that the token never reaches a log line.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("base_url", &self.base_url)
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "<redacted>"),
            )
            .field("timeout", &self.timeout)
            .field("page_size", &self.page_size)
            .finish()
    }
}

impl Config {
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            bearer_token: None,
            timeout: Duration::from_secs(10),
            page_size: 0,
        }
    }
}

/// How a pool was made ineligible for new replicas, so it can be undone exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Steering {
    /// `PUT /pools/{id}/cordon` with `{replicas: true}`.
    Cordoned { pool: String },
    /// The server has no pool cordon: the label `key` (one of the volume's inclusion
    /// keys) was deleted; `value` is what it was.
    Unlabelled {
        pool: String,
        key: String,
        value: String,
    },
}

/// The Mayastor REST API.
#[derive(Clone)]
pub struct Mayastor {
    base: String,
    token: Option<String>,
    timeout: Duration,
    page_size: u32,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl fmt::Debug for Mayastor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mayastor")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Mayastor {
    /// A client for `config.base_url` (`http://host:port`, optionally with a path
    /// prefix; `https` is not supported: in-cluster REST serves HTTP on 8081).
    pub fn new(config: Config) -> Result<Self, Error> {
        let base = config.base_url.trim_end_matches('/').to_owned();
        let uri: Uri = base
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| Error::Url {
                url: base.clone(),
                reason: e.to_string(),
            })?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(Error::Url {
                url: base,
                reason: "expected http://host[:port]".to_owned(),
            });
        }
        let client = Client::builder(TokioExecutor::new()).build_http();
        Ok(Self {
            base,
            token: config.bearer_token,
            timeout: config.timeout,
            page_size: config.page_size,
            client,
        })
    }

    /// Every volume, following `next_token` across pages.
    pub async fn volumes(&self) -> Result<Vec<Volume>, Error> {
        let mut all = Vec::new();
        let mut token: Option<u64> = None;
        loop {
            let mut path = format!("/v0/volumes?max_entries={}", self.page_size);
            if let Some(t) = token {
                path.push_str(&format!("&starting_token={t}"));
            }
            let page: Volumes = self.json(Method::GET, &path, None).await?;
            let got = page.entries.len();
            all.extend(page.entries);
            match page.next_token {
                // A next token without progress would loop forever.
                Some(t) if got > 0 && Some(t) != token => token = Some(t),
                _ => return Ok(all),
            }
        }
    }

    /// One volume.
    pub async fn volume(&self, uuid: &str) -> Result<Volume, Error> {
        let path = format!("/v0/volumes/{}", segment(uuid));
        self.json(Method::GET, &path, None).await
    }

    /// The finished rebuilds of a volume's nexus (to cross-check that a new replica
    /// was fully rebuilt, reference §1.6 step 4).
    pub async fn rebuild_history(&self, uuid: &str) -> Result<RebuildHistory, Error> {
        let path = format!("/v0/volumes/{}/rebuild-history", segment(uuid));
        self.json(Method::GET, &path, None).await
    }

    /// Sets `num_replicas`; the control plane adds (on a pool it chooses) or removes
    /// (a replica it chooses) one replica. Returns the volume as the server left it.
    pub async fn set_replica_count(&self, uuid: &str, count: u8) -> Result<Volume, Error> {
        let path = format!("/v0/volumes/{}/replica_count/{count}", segment(uuid));
        self.json(Method::PUT, &path, None).await
    }

    /// Every pool.
    pub async fn pools(&self) -> Result<Vec<Pool>, Error> {
        self.json(Method::GET, "/v0/pools", None).await
    }

    /// One pool.
    pub async fn pool(&self, id: &str) -> Result<Pool, Error> {
        let path = format!("/v0/pools/{}", segment(id));
        self.json(Method::GET, &path, None).await
    }

    /// Adds the label `key=value` to a pool. Without `overwrite`, a different value
    /// already there is refused (`FailedPrecondition`).
    pub async fn put_pool_label(
        &self,
        id: &str,
        key: &str,
        value: &str,
        overwrite: bool,
    ) -> Result<Pool, Error> {
        let path = format!(
            "/v0/pools/{}/label/{}={}?overwrite={overwrite}",
            segment(id),
            segment(key),
            segment(value)
        );
        self.json(Method::PUT, &path, None).await
    }

    /// Removes the label `key` from a pool (absent key: `FailedPrecondition`).
    pub async fn delete_pool_label(&self, id: &str, key: &str) -> Result<Pool, Error> {
        let path = format!("/v0/pools/{}/label/{}", segment(id), segment(key));
        self.json(Method::DELETE, &path, None).await
    }

    /// Cordons a pool for `what`. [`Error::Unsupported`] on servers without pool
    /// cordon (before OpenEBS 4.4).
    pub async fn cordon_pool(&self, id: &str, what: PoolCordon) -> Result<Pool, Error> {
        let path = format!("/v0/pools/{}/cordon", segment(id));
        self.json(Method::PUT, &path, Some(body(&what))).await
    }

    /// Lifts the cordons `what` from a pool.
    pub async fn uncordon_pool(&self, id: &str, what: PoolCordon) -> Result<Pool, Error> {
        let path = format!("/v0/pools/{}/cordon", segment(id));
        self.json(Method::DELETE, &path, Some(body(&what))).await
    }

    /// Makes `pool` ineligible for new replicas: a pool cordon where the server has
    /// it, otherwise deleting the label `inclusion_key` (which the volume's pool
    /// topology requires, so a pool without it fails the topology filter). Undo with
    /// [`Mayastor::restore`].
    pub async fn exclude_pool(&self, pool: &str, inclusion_key: &str) -> Result<Steering, Error> {
        match self.cordon_pool(pool, PoolCordon::REPLICAS).await {
            Ok(_) => Ok(Steering::Cordoned {
                pool: pool.to_owned(),
            }),
            Err(Error::Unsupported { .. }) => {
                let current = self.pool(pool).await?;
                let value = current
                    .labels()
                    .get(inclusion_key)
                    .cloned()
                    .ok_or_else(|| Error::NoSteeringLabel {
                        pool: pool.to_owned(),
                        key: inclusion_key.to_owned(),
                    })?;
                self.delete_pool_label(pool, inclusion_key).await?;
                Ok(Steering::Unlabelled {
                    pool: pool.to_owned(),
                    key: inclusion_key.to_owned(),
                    value,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Undoes an [`exclude_pool`](Mayastor::exclude_pool).
    pub async fn restore(&self, steering: &Steering) -> Result<Pool, Error> {
        match steering {
            Steering::Cordoned { pool } => self.uncordon_pool(pool, PoolCordon::REPLICAS).await,
            Steering::Unlabelled { pool, key, value } => {
                self.put_pool_label(pool, key, value, true).await
            }
        }
    }

    /// Every node.
    pub async fn nodes(&self) -> Result<Vec<Node>, Error> {
        self.json(Method::GET, "/v0/nodes", None).await
    }

    /// One node.
    pub async fn node(&self, id: &str) -> Result<Node, Error> {
        let path = format!("/v0/nodes/{}", segment(id));
        self.json(Method::GET, &path, None).await
    }

    /// Cordons a node under `label` (new replicas avoid it until every cordon label
    /// is removed).
    pub async fn cordon_node(&self, id: &str, label: &str) -> Result<Node, Error> {
        let path = format!("/v0/nodes/{}/cordon/{}", segment(id), segment(label));
        self.json(Method::PUT, &path, None).await
    }

    /// Removes the cordon `label` from a node.
    pub async fn uncordon_node(&self, id: &str, label: &str) -> Result<Node, Error> {
        let path = format!("/v0/nodes/{}/cordon/{}", segment(id), segment(label));
        self.json(Method::DELETE, &path, None).await
    }

    /// Every replica.
    pub async fn replicas(&self) -> Result<Vec<Replica>, Error> {
        self.json(Method::GET, "/v0/replicas", None).await
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<T, Error> {
        let request = Request {
            method: method.clone(),
            path: path.to_owned(),
        };
        let (status, bytes) = self.send(&request, body).await?;
        tracing::debug!(method = %request.method, path = %request.path, status, "mayastor REST");
        decode(&request, status, &bytes)
    }

    async fn send(&self, request: &Request, body: Option<Bytes>) -> Result<(u16, Bytes), Error> {
        let url = format!("{}{}", self.base, request.path);
        let uri: Uri = url
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| Error::Url {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let mut builder = hyper::Request::builder()
            .method(request.method.clone())
            .uri(uri)
            .header(header::ACCEPT, "application/json");
        if body.is_some() {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
        }
        if let Some(token) = &self.token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = builder
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| Error::Url {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let call = async {
            let response = self
                .client
                .request(req)
                .await
                .map_err(|source| Error::Unreachable {
                    request: request.clone(),
                    source,
                })?;
            let status = response.status().as_u16();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| Error::Malformed {
                    request: request.clone(),
                    reason: format!("reading the body: {e}"),
                })?
                .to_bytes();
            Ok((status, bytes))
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| Error::Timeout {
                request: request.clone(),
                timeout: self.timeout,
            })?
    }
}

fn body<T: serde::Serialize>(value: &T) -> Bytes {
    // Serialising our own plain structs cannot fail.
    Bytes::from(serde_json::to_vec(value).unwrap_or_default())
}

/// Turns an answer into `T` or an [`Error`].
pub fn decode<T: DeserializeOwned>(
    request: &Request,
    status: u16,
    body: &[u8],
) -> Result<T, Error> {
    if (200..300).contains(&status) {
        return serde_json::from_slice(body).map_err(|e| Error::Malformed {
            request: request.clone(),
            reason: e.to_string(),
        });
    }
    let rest: Option<RestJsonError> = serde_json::from_slice::<RestJsonError>(body)
        .ok()
        .filter(|e| !e.kind.is_empty() || !e.message.is_empty() || !e.details.is_empty());
    match (status, rest) {
        (404, None) | (405, _) | (501, None) => Err(Error::Unsupported {
            request: request.clone(),
            status,
        }),
        (_, Some(e)) => Err(Error::Api(Box::new(ApiError {
            request: request.clone(),
            status,
            kind: e.kind,
            message: e.message,
            details: e.details,
            body: String::new(),
        }))),
        (_, None) => Err(Error::Api(Box::new(ApiError {
            request: request.clone(),
            status,
            kind: String::new(),
            message: String::new(),
            details: String::new(),
            body: String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned(),
        }))),
    }
}
