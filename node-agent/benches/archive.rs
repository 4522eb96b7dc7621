//! The distributed archive path with real processes: six node agents on 127.0.0.x (mTLS),
//! one coordinating the destage; the NBD export reading columns over gRPC.
//!
//! 1. Destage throughput (verify off) vs the baseline: `dd oflag=direct conv=fsync` writing
//!    the same bytes sequentially to the same disk. Goal: destage ≥ 0.8 × (dd / 1.5), since a
//!    k4m2 destage writes 1.5 bytes per volume byte.
//! 2. NBD read throughput through `couchestor-node-agent export` with `nbdcopy URI null:`,
//!    healthy and with two agents killed (a data column and a parity column). Goal:
//!    degraded ≥ 0.7 × healthy.
//!
//! Run: `cargo bench -p couchestor-node-agent --bench archive` (needs libnbd-bin).
//! Size: `COUCHESTOR_BENCH_MIB` (default 256). Rounds alternate so noise hits both sides.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use couchestor_node_agent::archive::{Layout, Manifest};
use couchestor_node_agent::codec::CODEC_ID;
use couchestor_node_agent::lab::cluster::Cluster;
use couchestor_node_agent::lab::require;
use couchestor_node_agent::order::follow_quietly;

const BIN: &str = env!("CARGO_BIN_EXE_couchestor-node-agent");
const ROUNDS: usize = 3;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn mib_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / f64::from(1u32 << 20) / d.as_secs_f64()
}

fn write_image(path: &Path, size: u64) {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(size as usize);
    while (out.len() as u64) < size {
        let block = out.len() >> 20;
        for _ in 0..(1 << 17) {
            if block % 4 == 3 {
                out.extend_from_slice(&[0u8; 8]);
            } else {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
    }
    out.truncate(size as usize);
    std::fs::write(path, out).expect("write image");
}

fn dd_direct(image: &Path, out: &Path) -> Duration {
    let started = Instant::now();
    let status = Command::new("dd")
        .arg(format!("if={}", image.display()))
        .arg(format!("of={}", out.display()))
        .args(["bs=1M", "oflag=direct", "conv=fsync", "status=none"])
        .status()
        .expect("run dd");
    assert!(status.success(), "dd failed");
    let elapsed = started.elapsed();
    let _ = std::fs::remove_file(out);
    elapsed
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    require("nbdcopy", "libnbd-bin").unwrap_or_else(|e| panic!("{e}"));
    let size: u64 = std::env::var("COUCHESTOR_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
        << 20;
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster = Cluster::new(dir.path(), Path::new(BIN)).expect("cluster");
    let mut agents = Vec::new();
    for i in 0..6 {
        agents.push(
            cluster
                .start_agent(&format!("node-{i}"), &format!("127.0.0.{}", 40 + i))
                .await
                .expect("agent"),
        );
    }
    let image = dir.path().join("image.raw");
    write_image(&image, size);
    let placement: Vec<_> = (0..6).map(|c| agents[c].placement(c as u32)).collect();
    let client = cluster.client(&agents[0]).await.expect("client");

    // 1. Destage vs dd O_DIRECT, alternating.
    let (mut destage, mut dd) = (Vec::new(), Vec::new());
    let mut manifest = None;
    for round in 0..ROUNDS {
        dd.push(dd_direct(&image, &dir.path().join("dd.out")));
        let m = Manifest::new(
            &format!("bench-{round}"),
            &image.display().to_string(),
            size,
            Layout {
                data_shards: 4,
                parity_shards: 2,
                stripe_size_bytes: 1 << 20,
                codec_id: CODEC_ID.into(),
            },
            placement.clone(),
        )
        .expect("manifest");
        let started = Instant::now();
        let (_, done) =
            follow_quietly(client.destage(&m, false).await.expect("destage"), "destage")
                .await
                .expect("destage");
        destage.push(started.elapsed());
        if let Some(old) = manifest.replace(done) {
            let old: Manifest = old;
            for a in &agents {
                let c = cluster.client(a).await.expect("client");
                c.delete_volume(old.volume()).await.expect("delete");
            }
        }
    }
    let manifest = manifest.expect("a manifest");
    let (d, b) = (median(destage), median(dd));
    let (d_rate, b_rate) = (mib_s(size, d), mib_s(size, b));
    println!(
        "archive bench: {} MiB volume, k4m2, 1 MiB stripes, 6 agent processes, median of {ROUNDS}",
        size >> 20
    );
    println!("| Path | MiB/s (volume bytes) | median s |");
    println!("|---|---|---|");
    println!(
        "| destage, 6 agents | {d_rate:.0} | {:.2} |",
        d.as_secs_f64()
    );
    println!(
        "| dd oflag=direct conv=fsync, same bytes (baseline) | {b_rate:.0} | {:.2} |",
        b.as_secs_f64()
    );
    println!(
        "destage / (dd / 1.5) = {:.2} (goal ≥ 0.8)",
        d_rate / (b_rate / 1.5)
    );

    // 2. NBD read healthy vs degraded.
    let path = dir.path().join("manifest.json");
    manifest.save(&path).expect("save");
    // The export's stripe cache is off: this measures the erasure-coded read path itself.
    let (_export, base) = cluster
        .start_export_with(&[&path], &["--cache-ram", "0"])
        .await
        .expect("export");
    let uri = format!("{base}/{}", manifest.volume());
    let read = |uri: &str| {
        let started = Instant::now();
        let out = Command::new("nbdcopy")
            .args([uri, "null:"])
            .output()
            .expect("nbdcopy");
        assert!(
            out.status.success(),
            "nbdcopy: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        started.elapsed()
    };
    read(&uri); // warm-up
    let healthy: Vec<_> = (0..ROUNDS).map(|_| read(&uri)).collect();
    agents[1].kill();
    agents[5].kill();
    read(&uri); // warm-up: the export learns which agents are gone
    let degraded: Vec<_> = (0..ROUNDS).map(|_| read(&uri)).collect();
    let (h, g) = (median(healthy), median(degraded));
    println!(
        "| NBD read via export, healthy | {:.0} | {:.2} |",
        mib_s(size, h),
        h.as_secs_f64()
    );
    println!(
        "| NBD read via export, 2 agents down | {:.0} | {:.2} |",
        mib_s(size, g),
        g.as_secs_f64()
    );
    println!(
        "degraded / healthy = {:.2} (goal ≥ 0.7)",
        h.as_secs_f64() / g.as_secs_f64()
    );
}
