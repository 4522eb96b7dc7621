//! A backend driver and the sidecar (via `couchestor_csi_sidecar::run`) on two Unix
//! sockets in a temporary directory, and real tonic clients for the sidecar's socket.

#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use bytes::{Buf, BufMut, Bytes};
use couchestor_csi_sidecar::config::{Config, LogFormat};
use couchestor_proto::csi::v1::{
    controller_client::ControllerClient, identity_client::IdentityClient,
};
use hyper_util::rt::TokioIo;
use tokio::{net::UnixStream, sync::oneshot, task::JoinHandle};
use tonic::{
    Status,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    transport::{Channel, Endpoint, Uri},
};

use super::{backend::Backend, fake::FakeCluster};

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub backend: Backend,
    pub cluster: FakeCluster,
    pub socket: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

pub fn config(listen: &Path, backend: &Path) -> Config {
    Config {
        listen: listen.to_owned(),
        backend: backend.to_owned(),
        max_message_bytes: 16 << 20,
        log_format: LogFormat::Plain,
    }
}

/// A channel to a Unix socket, as a CSI sidecar container would open it.
pub async fn connect(path: &Path) -> Channel {
    let path = path.to_owned();
    for _ in 0..500 {
        if UnixStream::connect(&path).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Endpoint::from_static("http://test.invalid")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .expect("connect")
}

impl Harness {
    pub async fn start() -> Harness {
        Self::start_with(FakeCluster::default()).await
    }

    pub async fn start_with(cluster: FakeCluster) -> Harness {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().expect("tempdir");
        let backend = Backend::start(&dir.path().join("backend.sock")).await;
        let socket = dir.path().join("csi.sock");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(couchestor_csi_sidecar::run(
            config(&socket, &backend.socket),
            cluster.clone(),
            async {
                let _ = stopped.await;
            },
        ));
        Harness {
            dir,
            backend,
            cluster,
            socket,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub async fn channel(&self) -> Channel {
        connect(&self.socket).await
    }

    pub async fn controller(&self) -> ControllerClient<Channel> {
        ControllerClient::new(self.channel().await)
    }

    pub async fn identity(&self) -> IdentityClient<Channel> {
        IdentityClient::new(self.channel().await)
    }

    /// Sends `message` as the raw request bytes of `path` and returns the raw answer.
    pub async fn raw(&self, path: &'static str, message: Bytes) -> Result<Bytes, Status> {
        raw_call(self.channel().await, path, message).await
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("sidecar task").expect("sidecar run");
        }
        self.backend.stop().await;
    }
}

pub async fn raw_call(
    channel: Channel,
    path: &'static str,
    message: Bytes,
) -> Result<Bytes, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    grpc.unary(
        tonic::Request::new(message),
        tonic::codegen::http::uri::PathAndQuery::from_static(path),
        Raw,
    )
    .await
    .map(|r| r.into_inner())
}

/// The test's own bytes codec (independent of the sidecar's).
#[derive(Clone, Copy)]
pub struct Raw;

impl Codec for Raw {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// One unary call over a bare HTTP/2 connection, returning `grpc-status` and the raw
/// `grpc-message`. Unlike a tonic channel, it does not enforce `grpc-timeout` itself,
/// so what comes back is what the server answered.
pub async fn bare_call(
    socket: &Path,
    path: &str,
    message: Bytes,
    grpc_timeout: &str,
) -> (String, String) {
    use http_body_util::BodyExt;
    use hyper_util::rt::TokioExecutor;
    let stream = UnixStream::connect(socket).await.expect("connect");
    let (mut send, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(connection);
    let mut framed = bytes::BytesMut::new();
    framed.put_u8(0);
    framed.put_u32(message.len() as u32);
    framed.put(message);
    let request = tonic::codegen::http::Request::post(format!("http://test.invalid{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", grpc_timeout)
        .body(http_body_util::Full::new(framed.freeze()))
        .expect("request");
    let response = send.send_request(request).await.expect("response");
    let (parts, body) = response.into_parts();
    let text = |h: &tonic::codegen::http::HeaderMap, k: &str| {
        h.get(k)
            .map(|v| v.to_str().unwrap_or_default().to_owned())
            .unwrap_or_default()
    };
    if parts.headers.contains_key("grpc-status") {
        return (
            text(&parts.headers, "grpc-status"),
            text(&parts.headers, "grpc-message"),
        );
    }
    let trailers = body
        .collect()
        .await
        .expect("body")
        .trailers()
        .cloned()
        .unwrap_or_default();
    (
        text(&trailers, "grpc-status"),
        text(&trailers, "grpc-message"),
    )
}
