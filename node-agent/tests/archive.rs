//! The archive life cycle across real processes: node agents on 127.0.0.x (mTLS), work orders
//! sent over gRPC, sources and targets exported by `qemu-nbd`, reads through the agents' NBD
//! export with `qemu-img`, `qemu-io` and `nbdcopy`. Every check is on bytes read back.
//! Scenarios: docs/archive.md.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use couchestor_node_agent::archive::{ArchiveState, Layout, Manifest};
use couchestor_node_agent::codec::CODEC_ID;
use couchestor_node_agent::lab::cluster::{AgentProcess, Cluster, ExportProcess, free_port};
use couchestor_node_agent::lab::{compare_files, require};
use couchestor_node_agent::order::follow_quietly as follow;
use couchestor_node_agent::rpc::AgentClient;
use couchestor_node_agent::shard;
use tonic::Code;

const BIN: &str = env!("CARGO_BIN_EXE_couchestor-node-agent");
/// Shard size; a stripe is k of them.
const SHARD: u64 = 64 << 10;

/// Agents for a k + m volume, a sample image, and a manifest placing column c on agent c.
struct Setup {
    _dir: tempfile::TempDir,
    cluster: Cluster,
    agents: Vec<AgentProcess>,
    image: PathBuf,
    size: u64,
    k: u32,
    m: u32,
}

/// Deterministic mixed content; the size is deliberately not a multiple of the stripe.
fn write_image(path: &Path, size: u64) {
    let mut bytes = vec![0u8; size as usize];
    let mut x: u64 = 0x1234_5678_9abc_def1;
    for (i, chunk) in bytes.chunks_mut(4096).enumerate() {
        match i % 3 {
            0 => {}
            1 => chunk.iter_mut().for_each(|b| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }),
            _ => chunk
                .iter_mut()
                .enumerate()
                .for_each(|(j, b)| *b = (i + j) as u8),
        }
    }
    std::fs::write(path, bytes).expect("write image");
}

impl Setup {
    async fn new(agents: usize, k: u32, m: u32, size: u64) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let cluster = Cluster::new(dir.path(), Path::new(BIN)).expect("cluster");
        let mut list = Vec::new();
        for i in 0..agents {
            list.push(
                cluster
                    .start_agent(&format!("node-{i}"), &format!("127.0.0.{}", 20 + i))
                    .await
                    .expect("start agent"),
            );
        }
        let image = dir.path().join("source.img");
        write_image(&image, size);
        Self {
            _dir: dir,
            cluster,
            agents: list,
            image,
            size,
            k,
            m,
        }
    }

    fn dir(&self) -> &Path {
        &self.cluster.dir
    }

    fn manifest(&self, volume: &str, source: &str) -> Manifest {
        let placement = (0..self.k + self.m)
            .map(|c| self.agents[c as usize].placement(c))
            .collect();
        Manifest::new(
            volume,
            source,
            self.size,
            Layout {
                data_shards: self.k,
                parity_shards: self.m,
                stripe_size_bytes: SHARD * u64::from(self.k),
                codec_id: CODEC_ID.into(),
            },
            placement,
        )
        .expect("manifest")
    }

    async fn client(&self, agent: usize) -> AgentClient {
        self.cluster
            .client(&self.agents[agent])
            .await
            .expect("client")
    }

    async fn destage(&self, manifest: &Manifest) -> Manifest {
        let client = self.client(0).await;
        let (report, manifest) = follow(
            client.destage(manifest, true).await.expect("destage"),
            "destage",
        )
        .await
        .expect("destage succeeds");
        assert_eq!(manifest.status.state, ArchiveState::Ready);
        assert_eq!(
            report.shards_checked,
            manifest.status.stripe_count * u64::from(self.k + self.m),
            "the verify pass read every shard"
        );
        manifest
    }

    fn save(&self, manifest: &Manifest) -> PathBuf {
        let path = self.dir().join(format!("{}.json", manifest.volume()));
        manifest.save(&path).expect("save manifest");
        path
    }

    /// Flips a payload byte of shard (`column`, `stripe`) in its file on disk.
    fn flip(&self, manifest: &Manifest, column: u32, stripe: u64) {
        let p = manifest.placement(column).expect("placement");
        let agent = self
            .agents
            .iter()
            .find(|a| a.addr == p.endpoint)
            .expect("agent");
        let file = find(&agent.disk(), &format!("col-{column}.shards")).expect("shard file");
        let layout = manifest.archive_layout().expect("layout");
        let slot = shard::slot_bytes(layout.shard_len(0) as u32);
        let offset = stripe * slot + shard::BLOCK_BYTES as u64 + 5;
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&file)
            .expect("open shard file");
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, offset).expect("read byte");
        b[0] ^= 0x01;
        f.write_all_at(&b, offset).expect("write byte");
        f.sync_all().expect("sync");
    }
}

fn find(root: &Path, name: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(root).ok()? {
        let path = entry.ok()?.path();
        if path.is_dir() {
            if let Some(f) = find(&path, name) {
                return Some(f);
            }
        } else if path.file_name().is_some_and(|n| n == name) {
            return Some(path);
        }
    }
    None
}

/// Waits until the coordinator (agent 0) has saved a destage watermark for `volume` that is
/// past 0 and short of the end (the destage is really in the middle); returns it.
async fn wait_for_watermark(setup: &Setup, volume: &str) -> u64 {
    let path = setup.agents[0]
        .root
        .join("archives")
        .join(format!("{volume}.json"));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(saved) = Manifest::load(&path) {
            let w = saved.status.destaged_stripes;
            assert!(
                w < saved.status.stripe_count,
                "the destage finished before it could be interrupted"
            );
            if w > 0 {
                return w;
            }
        }
        assert!(Instant::now() < deadline, "no watermark saved in 60 s");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A new export process (an empty stripe cache) serving the manifest at `path`.
async fn fresh_export(cluster: &Cluster, path: &Path, volume: &str) -> (ExportProcess, String) {
    let (process, base) = cluster.start_export(&[path]).await.expect("export");
    (process, format!("{base}/{volume}"))
}

fn need(program: &str, package: &str) {
    require(program, package).unwrap_or_else(|e| panic!("{e}"));
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"))
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn assert_same(a: &Path, b: &Path) {
    assert_eq!(
        compare_files(a, b).expect("compare"),
        None,
        "{} and {} differ",
        a.display(),
        b.display()
    );
}

/// `qemu-nbd` serving a raw file on a Unix socket; killed on drop.
struct QemuNbd {
    child: Child,
    uri: String,
}

impl QemuNbd {
    fn start(image: &Path, socket: &Path, export: &str, read_only: bool) -> Self {
        need("qemu-nbd", "qemu-utils");
        let mut cmd = Command::new("qemu-nbd");
        cmd.args(["--format=raw", "--persistent", "--shared=8", "--cache=none"])
            .arg(format!("--export-name={export}"))
            .arg(format!("--socket={}", socket.display()));
        if read_only {
            cmd.arg("--read-only");
        }
        let child = cmd
            .arg(image)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn qemu-nbd");
        let deadline = Instant::now() + Duration::from_secs(20);
        // The socket file appears at bind(); connections succeed only after listen().
        while std::os::unix::net::UnixStream::connect(socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "qemu-nbd did not listen on its socket"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            uri: format!("nbd+unix:///{export}?socket={}", socket.display()),
        }
    }
}

impl Drop for QemuNbd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_destaged_from_qemu_nbd_reads_back_exactly_with_up_to_m_agents_down_and_fails_clearly_beyond()
 {
    need("nbdcopy", "libnbd-bin");
    need("qemu-img", "qemu-utils");
    need("qemu-io", "qemu-utils");
    // 10 MiB + 1000 bytes: a short last stripe with a tail that is not sector-aligned.
    let mut setup = Setup::new(6, 4, 2, (10 << 20) + 1000).await;
    let source = QemuNbd::start(
        &setup.image,
        &setup.dir().join("source.sock"),
        "source",
        true,
    );
    let manifest = setup.destage(&setup.manifest("vol-a", &source.uri)).await;
    drop(source);
    let path = setup.save(&manifest);
    let out = setup.dir().join("out.img");
    // Each round reads through a new export process: the export caches decoded stripes, and
    // every round must reach the agents.

    // Healthy, then one more agent down each round, up to m: columns 1 (data) and 5 (parity).
    for (round, victim) in [None, Some(1usize), Some(5)].into_iter().enumerate() {
        if let Some(v) = victim {
            setup.agents[v].kill();
        }
        let (_export, uri) = fresh_export(&setup.cluster, &path, "vol-a").await;
        let copy = run("nbdcopy", &[&uri, &out.display().to_string()]);
        assert_ok(&copy, &format!("nbdcopy in round {round}"));
        assert_same(&setup.image, &out);
        std::fs::remove_file(&out).expect("remove copy");
    }
    // qemu reads with m agents down too (qemu pads the unaligned tail to a sector itself).
    let (_export, uri) = fresh_export(&setup.cluster, &path, "vol-a").await;
    let convert = run(
        "qemu-img",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "raw",
            &uri,
            &out.display().to_string(),
        ],
    );
    assert_ok(&convert, "qemu-img convert with 2 agents down");
    let got = std::fs::read(&out).expect("read copy");
    let want = std::fs::read(&setup.image).expect("read image");
    assert_eq!(&got[..want.len()], &want[..], "qemu-img copy differs");

    // m + 1 down: an I/O error naming no zeros, never data.
    setup.agents[2].kill();
    let (_export, uri) = fresh_export(&setup.cluster, &path, "vol-a").await;
    let io = run("qemu-io", &["-r", "-f", "raw", &uri, "-c", "read 0 64k"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&io.stdout),
        String::from_utf8_lossy(&io.stderr)
    );
    assert!(
        text.contains("Input/output error"),
        "qemu-io must report EIO with 3 of 6 columns gone: {text}"
    );
    let copy = run("nbdcopy", &[&uri, "null:"]);
    assert!(
        !copy.status.success(),
        "nbdcopy must fail with 3 of 6 columns gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_mid_destage_is_restarted_and_the_resent_order_resumes_to_an_exact_archive()
{
    let mut setup = Setup::new(6, 4, 2, 64 << 20).await;
    let manifest = setup.manifest("vol-b", &setup.image.display().to_string());
    let client = setup.client(0).await;
    let mut stream = client.destage(&manifest, true).await.expect("destage");
    // Kill -9 the agent of column 3 once the coordinator has saved a watermark.
    wait_for_watermark(&setup, "vol-b").await;
    setup.agents[3].kill();
    let error = loop {
        match stream.message().await {
            Ok(Some(p)) => assert_ne!(
                p.phase, "done",
                "the destage cannot finish without column 3"
            ),
            Ok(None) => panic!("stream ended without a result"),
            Err(status) => break status,
        }
    };
    assert_eq!(error.code(), Code::Unavailable, "{error:?}");
    assert!(error.message().contains("column 3"), "{}", error.message());

    let cluster = &setup.cluster;
    cluster
        .restart(&mut setup.agents[3])
        .await
        .expect("restart agent 3");
    let (report, manifest) = follow(
        client
            .destage(&manifest, true)
            .await
            .expect("resend destage"),
        "destage",
    )
    .await
    .expect("the resent destage completes");
    assert!(
        report.resumed_from > 0,
        "the destage resumed from its watermark, not from 0"
    );
    assert_eq!(
        report.shards_checked,
        manifest.status.stripe_count * 6,
        "every shard verifies after the crash"
    );
    let target = setup.dir().join("back.img");
    let (_, _) = follow(
        client
            .rehydrate(&manifest, &target.display().to_string())
            .await
            .expect("rehydrate"),
        "rehydrate",
    )
    .await
    .expect("rehydrate succeeds");
    assert_same(&setup.image, &target);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinator_killed_mid_destage_resumes_from_its_saved_watermark() {
    let mut setup = Setup::new(6, 4, 2, 64 << 20).await;
    let manifest = setup.manifest("vol-c", &setup.image.display().to_string());
    let client = setup.client(0).await;
    let _stream = client.destage(&manifest, false).await.expect("destage");
    wait_for_watermark(&setup, "vol-c").await;
    setup.agents[0].kill();
    let cluster = &setup.cluster;
    cluster
        .restart(&mut setup.agents[0])
        .await
        .expect("restart coordinator");
    let client = setup.client(0).await;
    let (report, manifest) = follow(
        client.destage(&manifest, true).await.expect("resend"),
        "destage",
    )
    .await
    .expect("resumed destage completes");
    assert!(report.resumed_from > 0, "resumed from the saved watermark");
    assert!(report.resumed_from < manifest.status.stripe_count);
    let path = setup.save(&manifest);
    let (_export, base) = setup.cluster.start_export(&[&path]).await.expect("export");
    need("nbdcopy", "libnbd-bin");
    let out = setup.dir().join("out.img");
    assert_ok(
        &run(
            "nbdcopy",
            &[&format!("{base}/vol-c"), &out.display().to_string()],
        ),
        "nbdcopy",
    );
    assert_same(&setup.image, &out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_bits_in_shard_files_are_read_around_then_found_and_repaired_by_scrub() {
    need("nbdcopy", "libnbd-bin");
    let setup = Setup::new(6, 4, 2, 6 << 20).await;
    let manifest = setup
        .destage(&setup.manifest("vol-d", &setup.image.display().to_string()))
        .await;
    // Two columns of one stripe (as many as parity covers) and one more shard elsewhere.
    setup.flip(&manifest, 0, 3);
    setup.flip(&manifest, 4, 3);
    setup.flip(&manifest, 2, 10);
    let path = setup.save(&manifest);
    {
        let (_export, base) = setup.cluster.start_export(&[&path]).await.expect("export");
        let out = setup.dir().join("out.img");
        assert_ok(
            &run(
                "nbdcopy",
                &[&format!("{base}/vol-d"), &out.display().to_string()],
            ),
            "nbdcopy over corrupt shards",
        );
        assert_same(&setup.image, &out);
    }
    let client = setup.client(1).await;
    let (report, checked) = follow(
        client.scrub(&manifest, false).await.expect("scrub"),
        "verify",
    )
    .await
    .expect("report-only scrub");
    assert_eq!(report.findings.len(), 3, "{:?}", report.findings);
    assert_eq!(report.shards_repaired, 0, "report-only repairs nothing");
    assert_eq!(checked.status.state, ArchiveState::Degraded);
    let (report, repaired) = follow(client.scrub(&manifest, true).await.expect("scrub"), "scrub")
        .await
        .expect("scrub");
    assert_eq!(report.shards_repaired, 3, "{:?}", report.findings);
    assert_eq!(repaired.status.state, ArchiveState::Ready);
    let (report, _) = follow(
        client.scrub(&repaired, false).await.expect("scrub"),
        "verify",
    )
    .await
    .expect("second scrub");
    assert!(report.findings.is_empty(), "{:?}", report.findings);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_column_is_rebuilt_on_another_agent_and_rehydrates_into_a_qemu_nbd_export() {
    need("qemu-img", "qemu-utils");
    let mut setup = Setup::new(7, 3, 2, (5 << 20) + 4096 * 3).await;
    let manifest = setup
        .destage(&setup.manifest("vol-e", &setup.image.display().to_string()))
        .await;
    setup.agents[2].kill();
    let client = setup.client(0).await;
    let spare = setup.agents[6].placement(2);
    // Onto a node that already holds a column: refused.
    let holder = setup.agents[1].placement(2);
    let refused = client.rebuild(&manifest, 2, &holder).await.expect("call");
    let err = follow(refused, "rebuild").await.expect_err("must refuse");
    assert!(err.to_string().contains("already holds column 1"), "{err}");
    let (report, manifest) = follow(
        client.rebuild(&manifest, 2, &spare).await.expect("rebuild"),
        "rebuild",
    )
    .await
    .expect("rebuild succeeds");
    assert_eq!(report.stripes, manifest.status.stripe_count);
    assert_eq!(
        manifest.placement(2).expect("column 2").endpoint,
        setup.agents[6].addr
    );
    // With the original agent still down, the rebuilt column serves reads: a scrub finds
    // every shard healthy.
    let (report, _) = follow(
        client.scrub(&manifest, false).await.expect("scrub"),
        "verify",
    )
    .await
    .expect("scrub");
    assert!(report.findings.is_empty(), "{:?}", report.findings);

    // Rehydrate into a writable qemu-nbd export of an empty raw image.
    let target = setup.dir().join("target.img");
    assert_ok(
        &run(
            "qemu-img",
            &[
                "create",
                "-f",
                "raw",
                &target.display().to_string(),
                &setup.size.to_string(),
            ],
        ),
        "qemu-img create",
    );
    {
        let nbd = QemuNbd::start(&target, &setup.dir().join("target.sock"), "target", false);
        let (report, _) = follow(
            client
                .rehydrate(&manifest, &nbd.uri)
                .await
                .expect("rehydrate"),
            "rehydrate",
        )
        .await
        .expect("rehydrate into NBD");
        assert_eq!(report.bytes, setup.size);
    }
    assert_same(&setup.image, &target);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_work_orders_get_clear_errors_and_change_nothing() {
    let setup = Setup::new(6, 4, 2, 1 << 20).await;
    let client = setup.client(0).await;
    // Not a manifest at all.
    let err = client
        .raw()
        .destage(couchestor_node_agent::rpc::pb::DestageRequest {
            manifest: Some(couchestor_node_agent::rpc::pb::ArchiveManifest {
                json: "{\"kind\": 3}".into(),
            }),
            verify: true,
        })
        .await
        .expect_err("garbage manifest");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    // Two columns on one node.
    let mut bad = setup.manifest("vol-f", &setup.image.display().to_string());
    bad.status.placement[1].node = bad.status.placement[0].node.clone();
    let err = client.destage(&bad, true).await.expect_err("shared node");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("holds two columns"),
        "{}",
        err.message()
    );
    // A source that does not exist.
    let missing = setup.manifest("vol-g", "/nonexistent/volume.img");
    let err = follow(
        client.destage(&missing, true).await.expect("call"),
        "destage",
    )
    .await
    .expect_err("missing source");
    assert!(err.to_string().contains("/nonexistent/volume.img"), "{err}");
    // A finished archive, then the same volume id with another layout.
    let good = setup
        .destage(&setup.manifest("vol-h", &setup.image.display().to_string()))
        .await;
    let mut other = setup.manifest("vol-h", &setup.image.display().to_string());
    other.spec.layout.stripe_size_bytes *= 2;
    let err = client.destage(&other, true).await.expect_err("conflict");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    // The first archive is untouched: it still verifies.
    let (report, _) = follow(client.scrub(&good, false).await.expect("scrub"), "verify")
        .await
        .expect("scrub");
    assert!(report.findings.is_empty());
    // An unused port: the agent is unreachable, the order says which.
    let mut gone = setup.manifest("vol-i", &setup.image.display().to_string());
    gone.status.placement[5].endpoint =
        format!("127.0.0.25:{}", free_port("127.0.0.25").expect("port"));
    let err = follow(client.destage(&gone, true).await.expect("call"), "destage")
        .await
        .expect_err("unreachable agent");
    assert!(err.to_string().contains("127.0.0.25"), "{err}");
}
