//! Sequential read throughput of an archived 64 MiB volume through the NBD export, measured
//! with a real client (`nbdcopy URI null:`): healthy, and with two data columns lost (every
//! stripe reconstructed). Baseline: `qemu-nbd` exporting the same image as a raw file.
//!
//! Run: `cargo bench -p couchestor-node-agent --bench nbd_read` (needs qemu-utils and
//! libnbd-bin). Rounds alternate between the three servers so machine noise hits all alike.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use couchestor_node_agent::archive::{
    ArchiveLayout, ArchiveReader, ColumnSource, ReaderConfig, StoreColumns, archive_into_stores,
};
use couchestor_node_agent::codec::{Backend, ErasureCodec, new_codec};
use couchestor_node_agent::nbd::NbdServer;
use couchestor_node_agent::store::{ShardStore, StoreConfig};

const VOL: &str = "bench-vol";
const SIZE: usize = 64 << 20;
const STRIPE: u64 = 1 << 20;
const K: usize = 4;
const M: usize = 2;
const ROUNDS: usize = 7;

fn image() -> Vec<u8> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut out = Vec::with_capacity(SIZE);
    while out.len() < SIZE {
        // Compressible and incompressible regions alike: the path does not care, the disk might.
        if (out.len() >> 20) % 4 == 1 {
            out.resize(out.len() + (1 << 20), 0);
        } else {
            out.extend((0..1 << 20).map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            }));
        }
    }
    out
}

fn reader(stores: &[Arc<ShardStore>], codec: &Arc<dyn ErasureCodec>) -> Arc<ArchiveReader> {
    let columns = stores
        .iter()
        .map(|s| Arc::new(StoreColumns::new(Arc::clone(s), VOL)) as Arc<dyn ColumnSource>)
        .collect();
    let layout = ArchiveLayout {
        volume_size: SIZE as u64,
        data_shards: K,
        parity_shards: M,
        stripe_size: STRIPE,
    };
    Arc::new(
        ArchiveReader::new(
            VOL,
            layout,
            Arc::clone(codec),
            columns,
            ReaderConfig::default(),
        )
        .expect("reader"),
    )
}

/// Seconds for one full sequential copy to the null sink.
fn nbdcopy(uri: &str) -> f64 {
    let start = Instant::now();
    let status = Command::new("nbdcopy")
        .args([uri, "null:"])
        .status()
        .expect("nbdcopy not found: apt-get install libnbd-bin (./scripts/test installs it)");
    assert!(status.success(), "nbdcopy {uri} failed");
    start.elapsed().as_secs_f64()
}

struct QemuNbd(Child);

impl Drop for QemuNbd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let codec: Arc<dyn ErasureCodec> = Arc::from(new_codec(Backend::Best, K, M).expect("codec"));
    let stores: Vec<Arc<ShardStore>> = (0..K + M)
        .map(|c| {
            let root = dir.path().join(format!("node{c}"));
            std::fs::create_dir_all(&root).expect("dir");
            Arc::new(
                ShardStore::open(&StoreConfig {
                    index_path: root.join("index.redb"),
                    disks: vec![root.join("disk0")],
                    direct_io: true,
                })
                .expect("store"),
            )
        })
        .collect();
    let data = image();
    let layout = ArchiveLayout {
        volume_size: SIZE as u64,
        data_shards: K,
        parity_shards: M,
        stripe_size: STRIPE,
    };
    archive_into_stores(&data[..], VOL, layout, Arc::clone(&codec), &stores).expect("archive");
    let raw = dir.path().join("image.raw");
    std::fs::write(&raw, &data).expect("raw image");

    // The degraded export reads through stores whose columns 0 and 1 answer "missing": a
    // second set of stores holding only columns 2..6, as when two nodes are gone.
    let degraded_stores: Vec<Arc<ShardStore>> = (0..K + M)
        .map(|c| {
            if c < 2 {
                let root = dir.path().join(format!("empty{c}"));
                std::fs::create_dir_all(&root).expect("dir");
                Arc::new(
                    ShardStore::open(&StoreConfig {
                        index_path: root.join("index.redb"),
                        disks: vec![root.join("disk0")],
                        direct_io: true,
                    })
                    .expect("store"),
                )
            } else {
                Arc::clone(&stores[c])
            }
        })
        .collect();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut server = NbdServer::new();
    server.add_export("healthy", reader(&stores, &codec));
    server.add_export("degraded", reader(&degraded_stores, &codec));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    rt.spawn(Arc::new(server).serve_tcp(listener, std::future::pending()));

    let port = addr.port() + 1;
    let qemu = QemuNbd(
        Command::new("qemu-nbd")
            .args(["--read-only", "--persistent", "--port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "-f", "raw"])
            .arg(&raw)
            .stdout(Stdio::null())
            .spawn()
            .expect("qemu-nbd not found: apt-get install qemu-utils (./scripts/test installs it)"),
    );
    let baseline = format!("nbd://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "qemu-nbd did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }

    let uris = [
        (
            "CoucheStor NBD, healthy (k4m2)",
            format!("nbd://{addr}/healthy"),
        ),
        (
            "CoucheStor NBD, 2 data columns lost",
            format!("nbd://{addr}/degraded"),
        ),
        ("qemu-nbd, raw file (baseline)", baseline),
    ];
    for (_, uri) in &uris {
        nbdcopy(uri); // warm-up: page cache, connections
    }
    let mut times = vec![Vec::new(); uris.len()];
    for _ in 0..ROUNDS {
        for (i, (_, uri)) in uris.iter().enumerate() {
            times[i].push(nbdcopy(uri));
        }
    }
    let mib = SIZE as f64 / f64::from(1 << 20);
    println!("nbdcopy of a {mib} MiB volume to null:, median of {ROUNDS} rounds");
    println!("| Export | MiB/s | median s | best s |");
    println!("|---|---|---|---|");
    for ((name, _), t) in uris.iter().zip(times) {
        let best = t.iter().copied().fold(f64::INFINITY, f64::min);
        let med = median(t);
        println!("| {name} | {:.0} | {med:.3} | {best:.3} |", mib / med);
    }
    drop(qemu);
}
