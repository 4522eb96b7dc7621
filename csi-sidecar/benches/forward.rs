//! Latency the sidecar adds to a forwarded CSI call: each RPC is timed through the
//! sidecar and directly against the same in-process backend driver, interleaved call by
//! call in the same run (so machine noise hits both), over real Unix sockets with tonic
//! clients. The added latency is p(via sidecar) − p(direct).
//!
//! Run: `cargo bench -p couchestor-csi-sidecar --bench forward`
//! Env: `CALLS` (default 5000 per RPC and path), `WARMUP` (default 500).
//!
//! RPCs: ControllerGetCapabilities (pure forward) and CreateVolume of a tiered volume
//! (decode, PVC lookup in an in-process cluster, bytes appended to request and response).

// Bench support: a failed fixture is a failed run.
#![allow(clippy::unwrap_used)]

#[path = "../tests/sidecar/backend.rs"]
mod backend;
#[path = "../tests/sidecar/fake.rs"]
mod fake;

use std::{collections::HashMap, path::Path, time::Duration, time::Instant};

use couchestor_core::names;
use couchestor_csi_sidecar::config::{Config, LogFormat};
use couchestor_proto::csi::v1::{
    CapacityRange, ControllerGetCapabilitiesRequest, CreateVolumeRequest, VolumeCapability,
    controller_client::ControllerClient, volume_capability,
};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn connect(path: &Path) -> Channel {
    let path = path.to_owned();
    for _ in 0..500 {
        if UnixStream::connect(&path).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Endpoint::from_static("http://bench.invalid")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .unwrap()
}

fn create_request() -> CreateVolumeRequest {
    CreateVolumeRequest {
        name: "pvc-5b0e6a4c-3d2f-4c39-9a55-0b8d3f9c1e42".into(),
        capacity_range: Some(CapacityRange {
            required_bytes: 10 << 30,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![VolumeCapability {
            access_type: Some(volume_capability::AccessType::Mount(
                volume_capability::MountVolume {
                    fs_type: "ext4".into(),
                    mount_flags: vec![],
                    volume_mount_group: String::new(),
                },
            )),
            access_mode: Some(volume_capability::AccessMode {
                mode: volume_capability::access_mode::Mode::SingleNodeWriter as i32,
            }),
        }],
        parameters: HashMap::from([
            ("repl".into(), "3".into()),
            (
                names::MAYASTOR_POOL_HAS_TOPOLOGY_KEY.into(),
                names::TIER.into(),
            ),
            ("csi.storage.k8s.io/pvc/name".into(), "data".into()),
            ("csi.storage.k8s.io/pvc/namespace".into(), "shop".into()),
        ]),
        ..CreateVolumeRequest::default()
    }
}

#[derive(Clone, Copy)]
enum Rpc {
    GetCapabilities,
    CreateVolume,
}

async fn call(client: &mut ControllerClient<Channel>, rpc: Rpc) -> Duration {
    let started = Instant::now();
    match rpc {
        Rpc::GetCapabilities => {
            client
                .controller_get_capabilities(ControllerGetCapabilitiesRequest {})
                .await
                .unwrap();
        }
        Rpc::CreateVolume => {
            client.create_volume(create_request()).await.unwrap();
        }
    }
    started.elapsed()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let calls = env_or("CALLS", 5000);
    let warmup = env_or("WARMUP", 500);
    let dir = tempfile::tempdir().unwrap();
    let backend = backend::Backend::start(&dir.path().join("backend.sock")).await;
    let socket = dir.path().join("csi.sock");
    let cluster = fake::FakeCluster::default().with_pvc("shop", "data", &[(names::TIER, "warm")]);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let sidecar = tokio::spawn(couchestor_csi_sidecar::run(
        Config {
            listen: socket.clone(),
            backend: backend.socket.clone(),
            max_message_bytes: 16 << 20,
            log_format: LogFormat::Plain,
        },
        cluster,
        async {
            let _ = stopped.await;
        },
    ));
    let mut direct = ControllerClient::new(connect(&backend.socket).await);
    let mut via = ControllerClient::new(connect(&socket).await);

    println!("calls per RPC and path: {calls} (after {warmup} warm-up calls), interleaved");
    println!();
    println!(
        "| RPC | direct p50 | direct p99 | via sidecar p50 | via sidecar p99 | added p50 | added p99 |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, rpc) in [
        ("ControllerGetCapabilities", Rpc::GetCapabilities),
        ("CreateVolume (tiered)", Rpc::CreateVolume),
    ] {
        for _ in 0..warmup {
            call(&mut direct, rpc).await;
            call(&mut via, rpc).await;
        }
        let mut d = Vec::with_capacity(calls);
        let mut v = Vec::with_capacity(calls);
        for i in 0..calls {
            // Alternate which goes first so neither always runs on a warmer cache.
            if i % 2 == 0 {
                d.push(call(&mut direct, rpc).await);
                v.push(call(&mut via, rpc).await);
            } else {
                v.push(call(&mut via, rpc).await);
                d.push(call(&mut direct, rpc).await);
            }
        }
        d.sort();
        v.sort();
        let (d50, d99, v50, v99) = (
            percentile(&d, 0.50),
            percentile(&d, 0.99),
            percentile(&v, 0.50),
            percentile(&v, 0.99),
        );
        println!(
            "| {name} | {:.0} µs | {:.0} µs | {:.0} µs | {:.0} µs | {:+.0} µs | {:+.0} µs |",
            us(d50),
            us(d99),
            us(v50),
            us(v99),
            us(v50) - us(d50),
            us(v99) - us(d99),
        );
        // The backend records every request; keep memory flat between RPCs.
        backend.state.received.lock().unwrap().clear();
        backend.state.decoded.lock().unwrap().clear();
    }
    stop.send(()).unwrap();
    sidecar.await.unwrap().unwrap();
    backend.stop().await;
}
