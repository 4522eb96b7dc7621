//! An in-process backend CSI driver on a real Unix socket. It is tonic's generated
//! Identity + Controller server (so requests are decoded by prost, independently of the
//! sidecar), behind a layer that records the raw gRPC message bytes and the headers of
//! every request before they are decoded. Answers are canned (and can be made to fail,
//! be slow, or be raw bytes).

#![allow(dead_code)]

use std::{
    any::Any,
    collections::HashMap,
    convert::Infallible,
    path::{Path, PathBuf},
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use bytes::{BufMut, Bytes, BytesMut};
use couchestor_proto::csi::v1::{
    controller_server::{Controller, ControllerServer},
    identity_server::{Identity, IdentityServer},
    *,
};
use http_body_util::BodyExt;
use tokio::{net::UnixListener, sync::oneshot, task::JoinHandle};
use tonic::{Request, Response, Status, codegen::http, transport::Server};

/// One request as it arrived on the backend's socket.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: http::HeaderMap,
    /// The protobuf message bytes (gRPC frame header removed).
    pub message: Bytes,
}

#[derive(Default)]
pub struct State {
    pub received: Mutex<Vec<Received>>,
    /// Every decoded request, by method name.
    pub decoded: Mutex<Vec<(String, Box<dyn Any + Send>)>>,
    /// Method name → the status to answer instead of the canned response.
    pub fail: Mutex<HashMap<String, Status>>,
    /// Sleep this long before answering.
    pub delay: Mutex<Option<Duration>>,
    /// Method name → raw message bytes to answer with (bypasses the typed server).
    pub raw_reply: Mutex<HashMap<String, Bytes>>,
}

impl State {
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    pub fn received_for(&self, method: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path.rsplit('/').next() == Some(method))
            .collect()
    }

    /// The decoded requests of `method`, in arrival order.
    pub fn decoded<T: Clone + 'static>(&self, method: &str) -> Vec<T> {
        self.decoded
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, _)| m == method)
            .map(|(_, d)| d.downcast_ref::<T>().expect("decoded type").clone())
            .collect()
    }

    fn record<T: Send + 'static>(&self, method: &str, request: T) {
        self.decoded
            .lock()
            .unwrap()
            .push((method.to_owned(), Box::new(request)));
    }

    async fn answer<T>(&self, method: &str, response: T) -> Result<Response<T>, Status> {
        let delay = *self.delay.lock().unwrap();
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        if let Some(status) = self.fail.lock().unwrap().get(method) {
            return Err(status.clone());
        }
        let mut response = Response::new(response);
        response
            .metadata_mut()
            .insert("x-backend-answered", method.parse().unwrap());
        Ok(response)
    }
}

/// The canned answers (functions of the request where a real driver's would be).
pub mod canned {
    use super::*;

    pub fn plugin_info() -> GetPluginInfoResponse {
        GetPluginInfoResponse {
            name: "io.openebs.csi-mayastor".into(),
            vendor_version: "2.9.0".into(),
            manifest: HashMap::from([("build".into(), "test".into())]),
        }
    }

    pub fn plugin_capabilities() -> GetPluginCapabilitiesResponse {
        use plugin_capability::{Service, Type, service};
        GetPluginCapabilitiesResponse {
            capabilities: vec![
                PluginCapability {
                    r#type: Some(Type::Service(Service {
                        r#type: service::Type::ControllerService as i32,
                    })),
                },
                PluginCapability {
                    r#type: Some(Type::Service(Service {
                        r#type: service::Type::VolumeAccessibilityConstraints as i32,
                    })),
                },
            ],
        }
    }

    pub fn probe() -> ProbeResponse {
        ProbeResponse { ready: Some(true) }
    }

    /// Like Mayastor: the volume id is the uuid of `pvc-<uuid>` and the volume context
    /// is every request parameter.
    pub fn create_volume(r: &CreateVolumeRequest) -> CreateVolumeResponse {
        CreateVolumeResponse {
            volume: Some(Volume {
                capacity_bytes: r.capacity_range.map(|c| c.required_bytes).unwrap_or(0),
                volume_id: r.name.strip_prefix("pvc-").unwrap_or(&r.name).to_owned(),
                volume_context: r.parameters.clone(),
                content_source: None,
                accessible_topology: vec![Topology {
                    segments: HashMap::from([("openebs.io/csi-node".into(), "mayastor".into())]),
                }],
            }),
        }
    }

    pub fn controller_publish(
        r: &ControllerPublishVolumeRequest,
    ) -> ControllerPublishVolumeResponse {
        ControllerPublishVolumeResponse {
            publish_context: HashMap::from([
                (
                    "uri".into(),
                    format!("nvmf://10.0.0.1:8420/{}", r.volume_id),
                ),
                ("node".into(), r.node_id.clone()),
            ]),
        }
    }

    pub fn validate(r: &ValidateVolumeCapabilitiesRequest) -> ValidateVolumeCapabilitiesResponse {
        ValidateVolumeCapabilitiesResponse {
            confirmed: Some(validate_volume_capabilities_response::Confirmed {
                volume_context: r.volume_context.clone(),
                volume_capabilities: r.volume_capabilities.clone(),
                parameters: r.parameters.clone(),
                mutable_parameters: HashMap::new(),
            }),
            message: String::new(),
        }
    }

    pub fn volume(id: &str) -> Volume {
        Volume {
            capacity_bytes: 1 << 30,
            volume_id: id.into(),
            volume_context: HashMap::from([("repl".into(), "3".into())]),
            content_source: None,
            accessible_topology: vec![],
        }
    }

    pub fn list_volumes() -> ListVolumesResponse {
        ListVolumesResponse {
            entries: vec![list_volumes_response::Entry {
                volume: Some(volume("v-1")),
                status: Some(list_volumes_response::VolumeStatus {
                    published_node_ids: vec!["node-a".into()],
                    volume_condition: Some(VolumeCondition {
                        abnormal: false,
                        message: "ok".into(),
                    }),
                }),
            }],
            next_token: "t-2".into(),
        }
    }

    pub fn capacity() -> GetCapacityResponse {
        GetCapacityResponse {
            available_capacity: 7 << 40,
            maximum_volume_size: Some(1 << 40),
            minimum_volume_size: Some(1 << 20),
        }
    }

    pub fn controller_capabilities() -> ControllerGetCapabilitiesResponse {
        use controller_service_capability::{Rpc, Type, rpc};
        ControllerGetCapabilitiesResponse {
            capabilities: [
                rpc::Type::CreateDeleteVolume,
                rpc::Type::PublishUnpublishVolume,
                rpc::Type::ListVolumes,
                rpc::Type::GetCapacity,
                rpc::Type::CreateDeleteSnapshot,
                rpc::Type::ListSnapshots,
                rpc::Type::ExpandVolume,
            ]
            .into_iter()
            .map(|t| ControllerServiceCapability {
                r#type: Some(Type::Rpc(Rpc { r#type: t as i32 })),
            })
            .collect(),
        }
    }

    pub fn snapshot(id: &str) -> Snapshot {
        Snapshot {
            size_bytes: 1 << 30,
            snapshot_id: id.into(),
            source_volume_id: "v-1".into(),
            creation_time: Some(prost_types_timestamp()),
            ready_to_use: true,
            group_snapshot_id: String::new(),
        }
    }

    fn prost_types_timestamp() -> ::prost_types::Timestamp {
        ::prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 5,
        }
    }

    pub fn list_snapshots() -> ListSnapshotsResponse {
        ListSnapshotsResponse {
            entries: vec![list_snapshots_response::Entry {
                snapshot: Some(snapshot("s-1")),
            }],
            next_token: String::new(),
        }
    }

    pub fn expand(r: &ControllerExpandVolumeRequest) -> ControllerExpandVolumeResponse {
        ControllerExpandVolumeResponse {
            capacity_bytes: r.capacity_range.map(|c| c.required_bytes).unwrap_or(0),
            node_expansion_required: true,
        }
    }

    pub fn get_volume(r: &ControllerGetVolumeRequest) -> ControllerGetVolumeResponse {
        ControllerGetVolumeResponse {
            volume: Some(volume(&r.volume_id)),
            status: Some(controller_get_volume_response::VolumeStatus {
                published_node_ids: vec!["node-b".into()],
                volume_condition: None,
            }),
        }
    }
}

#[derive(Clone)]
struct Driver {
    state: Arc<State>,
}

macro_rules! handle {
    ($self:ident, $request:ident, $method:literal, |$r:ident| $response:expr) => {{
        let $r = $request.into_inner();
        let response = $response;
        $self.state.record($method, $r);
        $self.state.answer($method, response).await
    }};
}

#[tonic::async_trait]
impl Identity for Driver {
    async fn get_plugin_info(
        &self,
        request: Request<GetPluginInfoRequest>,
    ) -> Result<Response<GetPluginInfoResponse>, Status> {
        handle!(self, request, "GetPluginInfo", |r| canned::plugin_info())
    }
    async fn get_plugin_capabilities(
        &self,
        request: Request<GetPluginCapabilitiesRequest>,
    ) -> Result<Response<GetPluginCapabilitiesResponse>, Status> {
        handle!(self, request, "GetPluginCapabilities", |r| {
            canned::plugin_capabilities()
        })
    }
    async fn probe(
        &self,
        request: Request<ProbeRequest>,
    ) -> Result<Response<ProbeResponse>, Status> {
        handle!(self, request, "Probe", |r| canned::probe())
    }
}

#[tonic::async_trait]
impl Controller for Driver {
    async fn create_volume(
        &self,
        request: Request<CreateVolumeRequest>,
    ) -> Result<Response<CreateVolumeResponse>, Status> {
        handle!(self, request, "CreateVolume", |r| canned::create_volume(&r))
    }
    async fn delete_volume(
        &self,
        request: Request<DeleteVolumeRequest>,
    ) -> Result<Response<DeleteVolumeResponse>, Status> {
        handle!(self, request, "DeleteVolume", |r| DeleteVolumeResponse {})
    }
    async fn controller_publish_volume(
        &self,
        request: Request<ControllerPublishVolumeRequest>,
    ) -> Result<Response<ControllerPublishVolumeResponse>, Status> {
        handle!(self, request, "ControllerPublishVolume", |r| {
            canned::controller_publish(&r)
        })
    }
    async fn controller_unpublish_volume(
        &self,
        request: Request<ControllerUnpublishVolumeRequest>,
    ) -> Result<Response<ControllerUnpublishVolumeResponse>, Status> {
        handle!(self, request, "ControllerUnpublishVolume", |r| {
            ControllerUnpublishVolumeResponse {}
        })
    }
    async fn validate_volume_capabilities(
        &self,
        request: Request<ValidateVolumeCapabilitiesRequest>,
    ) -> Result<Response<ValidateVolumeCapabilitiesResponse>, Status> {
        handle!(self, request, "ValidateVolumeCapabilities", |r| {
            canned::validate(&r)
        })
    }
    async fn list_volumes(
        &self,
        request: Request<ListVolumesRequest>,
    ) -> Result<Response<ListVolumesResponse>, Status> {
        handle!(self, request, "ListVolumes", |r| canned::list_volumes())
    }
    async fn get_capacity(
        &self,
        request: Request<GetCapacityRequest>,
    ) -> Result<Response<GetCapacityResponse>, Status> {
        handle!(self, request, "GetCapacity", |r| canned::capacity())
    }
    async fn controller_get_capabilities(
        &self,
        request: Request<ControllerGetCapabilitiesRequest>,
    ) -> Result<Response<ControllerGetCapabilitiesResponse>, Status> {
        handle!(self, request, "ControllerGetCapabilities", |r| {
            canned::controller_capabilities()
        })
    }
    async fn create_snapshot(
        &self,
        request: Request<CreateSnapshotRequest>,
    ) -> Result<Response<CreateSnapshotResponse>, Status> {
        handle!(self, request, "CreateSnapshot", |r| {
            CreateSnapshotResponse {
                snapshot: Some(canned::snapshot(&r.name)),
            }
        })
    }
    async fn delete_snapshot(
        &self,
        request: Request<DeleteSnapshotRequest>,
    ) -> Result<Response<DeleteSnapshotResponse>, Status> {
        handle!(self, request, "DeleteSnapshot", |r| {
            DeleteSnapshotResponse {}
        })
    }
    async fn list_snapshots(
        &self,
        request: Request<ListSnapshotsRequest>,
    ) -> Result<Response<ListSnapshotsResponse>, Status> {
        handle!(self, request, "ListSnapshots", |r| canned::list_snapshots())
    }
    async fn get_snapshot(
        &self,
        request: Request<GetSnapshotRequest>,
    ) -> Result<Response<GetSnapshotResponse>, Status> {
        handle!(self, request, "GetSnapshot", |r| GetSnapshotResponse {
            snapshot: Some(canned::snapshot(&r.snapshot_id)),
        })
    }
    async fn controller_expand_volume(
        &self,
        request: Request<ControllerExpandVolumeRequest>,
    ) -> Result<Response<ControllerExpandVolumeResponse>, Status> {
        handle!(self, request, "ControllerExpandVolume", |r| canned::expand(
            &r
        ))
    }
    async fn controller_get_volume(
        &self,
        request: Request<ControllerGetVolumeRequest>,
    ) -> Result<Response<ControllerGetVolumeResponse>, Status> {
        handle!(
            self,
            request,
            "ControllerGetVolume",
            |r| canned::get_volume(&r)
        )
    }
    async fn controller_modify_volume(
        &self,
        request: Request<ControllerModifyVolumeRequest>,
    ) -> Result<Response<ControllerModifyVolumeResponse>, Status> {
        handle!(self, request, "ControllerModifyVolume", |r| {
            ControllerModifyVolumeResponse {}
        })
    }
}

/// Records each request's raw bytes before the generated server decodes it.
#[derive(Clone)]
struct Capture<S> {
    inner: S,
    state: Arc<State>,
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl<S> tower::Service<http::Request<tonic::body::Body>> for Capture<S>
where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let state = self.state.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let framed = body.collect().await.expect("request body").to_bytes();
            assert!(framed.len() >= 5, "a gRPC frame has a 5-byte header");
            assert_eq!(framed[0], 0, "uncompressed");
            let len = u32::from_be_bytes(framed[1..5].try_into().unwrap()) as usize;
            assert_eq!(framed.len(), 5 + len, "one message per unary request");
            let path = parts.uri.path().to_owned();
            state.received.lock().unwrap().push(Received {
                path: path.clone(),
                headers: parts.headers.clone(),
                message: framed.slice(5..),
            });
            let method = path.rsplit('/').next().unwrap_or_default().to_owned();
            let raw = state.raw_reply.lock().unwrap().get(&method).cloned();
            if let Some(raw) = raw {
                return Ok(raw_response(raw));
            }
            let request = http::Request::from_parts(
                parts,
                tonic::body::Body::new(http_body_util::Full::new(framed)),
            );
            inner.call(request).await
        })
    }
}

/// A successful gRPC response whose message is `message`, whatever it holds.
fn raw_response(message: Bytes) -> http::Response<tonic::body::Body> {
    let mut framed = BytesMut::new();
    framed.put_u8(0);
    framed.put_u32(message.len() as u32);
    framed.put(message);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", "0".parse().unwrap());
    let frames = futures::stream::iter([
        Ok::<_, Infallible>(http_body::Frame::data(framed.freeze())),
        Ok(http_body::Frame::trailers(trailers)),
    ]);
    http::Response::builder()
        .header("content-type", "application/grpc")
        .body(tonic::body::Body::new(http_body_util::StreamBody::new(
            frames,
        )))
        .unwrap()
}

/// A running backend driver.
pub struct Backend {
    pub socket: PathBuf,
    pub state: Arc<State>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Backend {
    pub async fn start(socket: &Path) -> Backend {
        let state = Arc::new(State::default());
        let listener = UnixListener::bind(socket).expect("bind backend socket");
        let (stop, stopped) = oneshot::channel::<()>();
        let driver = Driver {
            state: state.clone(),
        };
        let capture_state = state.clone();
        let task = tokio::spawn(async move {
            Server::builder()
                .layer(tower::layer::layer_fn(move |inner| Capture {
                    inner,
                    state: capture_state.clone(),
                }))
                .add_service(IdentityServer::new(driver.clone()))
                .add_service(ControllerServer::new(driver))
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::UnixListenerStream::new(listener),
                    async {
                        let _ = stopped.await;
                    },
                )
                .await
                .expect("backend server");
        });
        Backend {
            socket: socket.to_owned(),
            state,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}
