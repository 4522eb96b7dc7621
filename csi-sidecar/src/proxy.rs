//! The CSI proxy: routes every call to the backend driver, byte for byte, and intercepts
//! CreateVolume, ControllerPublishVolume and DeleteVolume.
//!
//! Per call: the request arrives as bytes ([`RawCodec`]); its metadata is forwarded
//! except the transport-negotiation headers (`grpc-timeout` is replaced by what is left
//! of the caller's deadline, `grpc-encoding`/`grpc-accept-encoding` are dropped because
//! compression is negotiated per hop); the backend's answer — message bytes, status
//! code, message, details and metadata — is returned as it came. When the caller's
//! deadline passes first, the caller gets `DEADLINE_EXCEEDED`.

use std::{
    convert::Infallible,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use couchestor_proto::csi::v1::{
    ControllerPublishVolumeRequest, CreateVolumeRequest, CreateVolumeResponse, DeleteVolumeRequest,
};
use futures::future::BoxFuture;
use prost::Message;
use tokio::time::Instant;
use tonic::{
    Request, Response, Status,
    codegen::http,
    metadata::MetadataMap,
    server::{Grpc, UnaryService},
    transport::Channel,
};
use tracing::Instrument;

use crate::{
    cluster::{Cluster, Deleted},
    codec::RawCodec,
    error::Error,
    placement::{self, PV_NAME},
};

/// The services forwarded (every method, including ones our proto does not know).
pub const FORWARDED_SERVICES: [&str; 3] = [
    "/csi.v1.Identity/",
    "/csi.v1.Controller/",
    "/csi.v1.GroupController/",
];

const CREATE_VOLUME: &str = "/csi.v1.Controller/CreateVolume";
const DELETE_VOLUME: &str = "/csi.v1.Controller/DeleteVolume";
const CONTROLLER_PUBLISH_VOLUME: &str = "/csi.v1.Controller/ControllerPublishVolume";

/// Request headers that belong to one hop and are not forwarded. (`user-agent` is
/// forwarded; tonic appends its own to it, as a proxy should.)
const HOP_HEADERS: [&str; 3] = ["grpc-timeout", "grpc-encoding", "grpc-accept-encoding"];

/// The forwarding core, shared by every connection.
#[derive(Debug)]
pub struct Proxy<C> {
    backend: Channel,
    cluster: C,
    max_message_bytes: usize,
}

impl<C: Cluster> Proxy<C> {
    pub fn new(backend: Channel, cluster: C, max_message_bytes: usize) -> Self {
        Self {
            backend,
            cluster,
            max_message_bytes,
        }
    }

    /// Handles one call to `path`.
    pub async fn call(
        &self,
        path: &str,
        request: Request<Bytes>,
    ) -> Result<Response<Bytes>, Status> {
        let (mut metadata, _, message) = request.into_parts();
        let deadline = metadata
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let parsed = parse_grpc_timeout(v);
                if parsed.is_none() {
                    tracing::warn!(value = v, "ignoring a malformed grpc-timeout");
                }
                parsed
            })
            .map(|d| Instant::now() + d);
        for h in HOP_HEADERS {
            metadata.remove(h);
        }
        let call = Call {
            path,
            metadata,
            message,
            deadline,
        };
        let work = async {
            match path {
                CREATE_VOLUME => self.create_volume(call).await,
                CONTROLLER_PUBLISH_VOLUME => self.controller_publish_volume(call).await,
                DELETE_VOLUME => self.delete_volume(call).await,
                _ => self.forward(call).await,
            }
        };
        match deadline {
            Some(at) => tokio::time::timeout_at(at, work).await.unwrap_or_else(|_| {
                Err(Status::deadline_exceeded(format!(
                    "{path}: the caller's deadline passed before the backend driver answered"
                )))
            }),
            None => work.await,
        }
    }

    /// Sends `call` to the backend as it is and returns the backend's answer as it is.
    async fn forward(&self, call: Call<'_>) -> Result<Response<Bytes>, Status> {
        let path = http::uri::PathAndQuery::try_from(call.path)
            .map_err(|e| Status::internal(format!("{}: not a request path: {e}", call.path)))?;
        let mut request = Request::from_parts(call.metadata, Default::default(), call.message);
        if let Some(at) = call.deadline {
            request.set_timeout(at.saturating_duration_since(Instant::now()));
        }
        let mut grpc = tonic::client::Grpc::new(self.backend.clone())
            .max_decoding_message_size(self.max_message_bytes)
            .max_encoding_message_size(self.max_message_bytes);
        grpc.ready()
            .await
            .map_err(|e| Status::unavailable(format!("backend driver not reachable: {e}")))?;
        let started = std::time::Instant::now();
        let answer = grpc
            .unary(request, path, RawCodec)
            .await
            .map_err(|s| local_deadline(s, call.path));
        match &answer {
            Ok(_) => tracing::debug!(
                elapsed_us = started.elapsed().as_micros() as u64,
                "backend answered"
            ),
            Err(s) => {
                tracing::debug!(code = ?s.code(), message = s.message(), "backend answered with an error")
            }
        }
        answer
    }

    async fn create_volume(&self, mut call: Call<'_>) -> Result<Response<Bytes>, Status> {
        let request = CreateVolumeRequest::decode(call.message.clone()).map_err(|source| {
            Error::DecodeRequest {
                what: "CreateVolumeRequest",
                source,
            }
        })?;
        tracing::Span::current().record("volume", request.name.as_str());
        let placement = match placement::resolve(&request.parameters, &self.cluster).await {
            Ok(Some(p)) => p,
            Ok(None) => {
                tracing::debug!("not a tiered volume: forwarded untouched");
                return self.forward(call).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "CreateVolume refused");
                return Err(e.into());
            }
        };
        tracing::info!(
            tier = %placement.tier,
            source = placement.source.as_str(),
            pool_has_topology_key = placement.pool_has_topology_key.as_deref(),
            "placing a tiered volume"
        );
        let suffix = placement.request_suffix();
        if !suffix.is_empty() {
            let mut bytes = Vec::with_capacity(call.message.len() + suffix.len());
            bytes.extend_from_slice(&call.message);
            bytes.extend_from_slice(&suffix);
            call.message = Bytes::from(bytes);
        }
        let (metadata, message, extensions) = self.forward(call).await?.into_parts();
        let answer = CreateVolumeResponse::decode(message.clone()).map_err(|source| {
            Error::DecodeResponse {
                what: "CreateVolumeResponse",
                source,
            }
        })?;
        if answer.volume.is_none() {
            // Not a valid answer (`volume` is required); the CO will reject it, we
            // do not invent a volume around the tier.
            tracing::warn!("the backend's CreateVolumeResponse has no volume; returned unchanged");
            return Ok(Response::from_parts(metadata, message, extensions));
        }
        let mut bytes = Vec::from(message.as_ref());
        bytes.extend(placement.response_suffix());
        Ok(Response::from_parts(
            metadata,
            Bytes::from(bytes),
            extensions,
        ))
    }

    async fn controller_publish_volume(&self, call: Call<'_>) -> Result<Response<Bytes>, Status> {
        let request =
            ControllerPublishVolumeRequest::decode(call.message.clone()).map_err(|source| {
                Error::DecodeRequest {
                    what: "ControllerPublishVolumeRequest",
                    source,
                }
            })?;
        tracing::Span::current().record("volume", request.volume_id.as_str());
        if request.volume_id.is_empty() {
            // The backend answers INVALID_ARGUMENT as the spec requires.
            return self.forward(call).await;
        }
        let pv = pv_name(&request.volume_id, request.volume_context.get(PV_NAME));
        let archive = self
            .cluster
            .archive_of(&request.volume_id, &pv)
            .await
            .map_err(|source| Error::ArchiveLookup {
                volume_id: request.volume_id.clone(),
                pv: pv.clone(),
                source,
            })?;
        let Some(ec_volume) = archive else {
            return self.forward(call).await;
        };
        self.cluster
            .request_rehydration(&ec_volume, &request.node_id)
            .await
            .map_err(|source| Error::RehydrationRequest {
                volume_id: request.volume_id.clone(),
                ec_volume: ec_volume.clone(),
                source,
            })?;
        let e = Error::Rehydrating {
            volume_id: request.volume_id,
            pv,
            ec_volume,
        };
        tracing::info!(node = request.node_id, "{e}");
        Err(e.into())
    }

    async fn delete_volume(&self, call: Call<'_>) -> Result<Response<Bytes>, Status> {
        let request = DeleteVolumeRequest::decode(call.message.clone()).map_err(|source| {
            Error::DecodeRequest {
                what: "DeleteVolumeRequest",
                source,
            }
        })?;
        tracing::Span::current().record("volume", request.volume_id.as_str());
        if request.volume_id.is_empty() {
            return self.forward(call).await;
        }
        let pv = pv_name(&request.volume_id, None);
        let archive = self
            .cluster
            .archive_of(&request.volume_id, &pv)
            .await
            .map_err(|source| Error::ArchiveLookup {
                volume_id: request.volume_id.clone(),
                pv,
                source,
            })?;
        if let Some(ec_volume) = archive {
            let outcome = self
                .cluster
                .delete_ec_volume(&ec_volume)
                .await
                .map_err(|source| Error::ArchiveDelete {
                    volume_id: request.volume_id.clone(),
                    ec_volume: ec_volume.clone(),
                    source,
                })?;
            match outcome {
                Deleted::Now => tracing::info!(ec_volume, "deleted the archive of the volume"),
                Deleted::AlreadyGone => {
                    tracing::info!(ec_volume, "the archive was already deleted")
                }
            }
        }
        // Mayastor answers OK for a volume it no longer has (DeleteVolume is idempotent).
        self.forward(call).await
    }
}

/// The channel enforces the `grpc-timeout` it sends and reports its own expiry as
/// `CANCELLED` (tonic's choice); the caller's deadline passed, so say so. A status that
/// came over the wire has no local source and is left alone.
fn local_deadline(status: Status, path: &str) -> Status {
    let mut source = std::error::Error::source(&status);
    while let Some(e) = source {
        if e.is::<tonic::TimeoutExpired>() {
            return Status::deadline_exceeded(format!(
                "{path}: the caller's deadline passed before the backend driver answered"
            ));
        }
        source = e.source();
    }
    status
}

/// The PV of a volume: the external-provisioner's `csi.storage.k8s.io/pv/name` when the
/// volume context carries it (Mayastor copies every CreateVolume parameter into it),
/// else `pvc-<volume id>` (Mayastor requires PV names of that form and uses the uuid as
/// the volume id, reference notes §3.2).
pub fn pv_name(volume_id: &str, from_context: Option<&String>) -> String {
    match from_context {
        Some(pv) if !pv.is_empty() => pv.clone(),
        _ => format!("pvc-{volume_id}"),
    }
}

/// Parses a `grpc-timeout` header value: 1 to 8 ASCII digits and a unit
/// (`H`, `M`, `S`, `m`, `u`, `n`), per gRPC over HTTP/2.
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// One call in flight.
struct Call<'a> {
    path: &'a str,
    metadata: MetadataMap,
    message: Bytes,
    deadline: Option<Instant>,
}

/// The HTTP/2 service: gRPC framing via tonic's server codec, routing by path.
#[derive(Debug)]
pub struct CsiService<C> {
    proxy: Arc<Proxy<C>>,
}

impl<C> Clone for CsiService<C> {
    fn clone(&self) -> Self {
        Self {
            proxy: self.proxy.clone(),
        }
    }
}

impl<C: Cluster> CsiService<C> {
    pub fn new(proxy: Arc<Proxy<C>>) -> Self {
        Self { proxy }
    }
}

impl<C, B> tower::Service<http::Request<B>> for CsiService<C>
where
    C: Cluster,
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let proxy = self.proxy.clone();
        Box::pin(async move {
            if !FORWARDED_SERVICES.iter().any(|s| path.starts_with(s)) {
                tracing::warn!(path, "call to a service this proxy does not serve");
                return Ok(Status::unimplemented(format!(
                    "{path}: this socket serves the CSI Identity and Controller services only"
                ))
                .into_http());
            }
            let method = path.rsplit('/').next().unwrap_or_default().to_owned();
            let span = tracing::info_span!("rpc", method, volume = tracing::field::Empty);
            let limit = proxy.max_message_bytes;
            let mut grpc = Grpc::new(RawCodec)
                .max_decoding_message_size(limit)
                .max_encoding_message_size(limit);
            Ok(grpc
                .unary(Unary { proxy, path }, request)
                .instrument(span)
                .await)
        })
    }
}

struct Unary<C> {
    proxy: Arc<Proxy<C>>,
    path: String,
}

impl<C: Cluster> UnaryService<Bytes> for Unary<C> {
    type Response = Bytes;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Bytes>, Status>> + Send>>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        let proxy = self.proxy.clone();
        let path = self.path.clone();
        Box::pin(
            async move {
                let answer = proxy.call(&path, request).await;
                if let Err(s) = &answer {
                    tracing::debug!(code = ?s.code(), message = s.message(), "answered with an error");
                }
                answer
            }
            .in_current_span(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_in_every_unit_and_junk_is_refused() {
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_grpc_timeout("36S"), Some(Duration::from_secs(36)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(
            parse_grpc_timeout("99999999u"),
            Some(Duration::from_micros(99_999_999))
        );
        assert_eq!(parse_grpc_timeout("5n"), Some(Duration::from_nanos(5)));
        for junk in ["", "m", "123456789m", "12x", "-1S", "1.5S", "S1"] {
            assert_eq!(parse_grpc_timeout(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn the_pv_name_comes_from_the_volume_context_or_the_mayastor_convention() {
        assert_eq!(pv_name("u-1", None), "pvc-u-1");
        assert_eq!(pv_name("u-1", Some(&"custom".to_owned())), "custom");
        assert_eq!(pv_name("u-1", Some(&String::new())), "pvc-u-1");
    }
}
