//! Several real `couchestor-node-agent serve` processes on 127.0.0.x, talking mTLS: shard
//! round trips, corruption reporting, kill -9 mid-stream, certificate refusal, bad requests.
//! Scenarios: docs/node-agent-api.md.

use std::fs::File;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use couchestor_node_agent::certs::{self, Authority};
use couchestor_node_agent::codec::{self, Backend, CODEC_ID};
use couchestor_node_agent::rpc::{AgentClient, ShardRead, chunks};
use couchestor_node_agent::store::VolumeLayout;
use couchestor_node_agent::tls::{self, TlsFiles, TlsMaterial};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

const BIN: &str = env!("CARGO_BIN_EXE_couchestor-node-agent");

/// A cluster: temp dir, CA, and a client identity issued by it.
struct Lab {
    dir: tempfile::TempDir,
    ca: Authority,
    client: TlsMaterial,
}

/// One agent process; killed (SIGKILL) and reaped when dropped, so a failing test leaves
/// no process behind.
struct Agent {
    child: Option<Child>,
    host: String,
    addr: String,
    root: PathBuf,
    tls: TlsFiles,
    log: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port(host: &str) -> u16 {
    let l = TcpListener::bind((host, 0)).expect("bind a probe socket");
    l.local_addr().expect("probe address").port()
}

impl Lab {
    fn new() -> Self {
        tls::install_crypto_provider();
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = Authority::generate("test-cluster-ca").expect("CA");
        let issued = ca.issue_client("test-client").expect("client cert");
        let client = TlsMaterial {
            cert_pem: issued.cert_pem,
            key_pem: issued.key_pem,
            ca_pem: ca.cert_pem.clone(),
        };
        Self { dir, ca, client }
    }

    /// Mints certificates for `host` and starts an agent there with fresh disk dirs.
    async fn agent(&self, host: &str) -> Agent {
        let root = self.dir.path().join(host);
        let issued = self
            .ca
            .issue_agent(&format!("agent-{host}"), &[host.to_owned()])
            .expect("agent cert");
        let tls =
            certs::write_files(&root.join("tls"), &issued, &self.ca.cert_pem).expect("write certs");
        let mut agent = Agent {
            child: None,
            host: host.to_owned(),
            addr: String::new(),
            root,
            tls,
            log: PathBuf::new(),
        };
        self.start(&mut agent).await;
        agent
    }

    /// (Re)starts `agent`'s process on its dirs and waits until `Health` answers.
    async fn start(&self, agent: &mut Agent) {
        let port = free_port(&agent.host);
        agent.addr = format!("{}:{port}", agent.host);
        agent.log = agent.root.join(format!("agent-{port}.log"));
        let log = File::create(&agent.log).expect("log file");
        let child = Command::new(BIN)
            .arg("serve")
            .args(["--listen", &agent.addr])
            .args(["--node-name", &format!("node-{}", agent.host)])
            .args(["--agent-id", &format!("agent-{}", agent.host)])
            .arg("--disk")
            .arg(agent.root.join("disk-a"))
            .arg("--disk")
            .arg(agent.root.join("disk-b"))
            .arg("--index")
            .arg(agent.root.join("index.redb"))
            .arg("--tls-cert")
            .arg(&agent.tls.cert)
            .arg("--tls-key")
            .arg(&agent.tls.key)
            .arg("--tls-ca")
            .arg(&agent.tls.ca)
            .args(["--log-format", "plain"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn couchestor-node-agent");
        agent.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = agent
                .child
                .as_mut()
                .and_then(|c| c.try_wait().expect("poll child"))
            {
                panic!(
                    "agent {} exited with {status}: {}",
                    agent.addr,
                    agent.log_text()
                );
            }
            if let Ok(c) = self.client(agent).await
                && c.health().await.is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "agent {} not ready: {}",
                agent.addr,
                agent.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn client(
        &self,
        agent: &Agent,
    ) -> Result<AgentClient, couchestor_node_agent::rpc::ClientError> {
        AgentClient::connect(&agent.addr, self.client.client_config()).await
    }
}

impl Agent {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill9(&mut self) {
        let mut child = self.child.take().expect("agent running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }

    /// The column file of (volume, column), on whichever disk the agent chose.
    fn column_file(&self, volume: &str, column: u32) -> PathBuf {
        ["disk-a", "disk-b"]
            .iter()
            .map(|d| {
                self.root
                    .join(d)
                    .join("couchestor-shards")
                    .join(volume)
                    .join(format!("col-{column}.shards"))
            })
            .find(|p| p.exists())
            .expect("column file on one of the disks")
    }
}

/// Deterministic, stripe-specific bytes.
fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn layout(k: u16, m: u16, shard_bytes: u64) -> VolumeLayout {
    VolumeLayout {
        data_shards: k,
        parity_shards: m,
        stripe_size_bytes: shard_bytes * u64::from(k),
        codec_id: CODEC_ID.to_owned(),
    }
}

fn data_of(read: &ShardRead) -> &[u8] {
    match read {
        ShardRead::Data(d) => d,
        other => panic!("expected data, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_encoded_across_three_agents_read_back_byte_exact_and_decode() {
    let lab = Lab::new();
    let hosts = ["127.0.0.1", "127.0.0.2", "127.0.0.3"];
    let mut agents = Vec::new();
    for h in hosts {
        agents.push(lab.agent(h).await);
    }
    // 3 MiB shards: larger than one message chunk, so chunking is on the path.
    let shard_bytes = 3 << 20;
    let (k, m, stripes) = (2usize, 1usize, 3u64);
    let layout = layout(k as u16, m as u16, shard_bytes as u64);
    let codec = codec::new_codec(Backend::Best, k, m).expect("codec");
    let mut columns: Vec<Vec<Vec<u8>>> = vec![Vec::new(); k + m];
    for s in 0..stripes {
        let data: Vec<Vec<u8>> = (0..k)
            .map(|c| payload(s * 10 + c as u64, shard_bytes))
            .collect();
        let mut parity = vec![vec![0u8; shard_bytes]; m];
        {
            let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
            let mut prefs: Vec<&mut [u8]> = parity.iter_mut().map(Vec::as_mut_slice).collect();
            codec.encode(&refs, &mut prefs).expect("encode");
        }
        for (c, shard) in data.into_iter().chain(parity).enumerate() {
            columns[c].push(shard);
        }
    }
    for (column, agent) in agents.iter().enumerate() {
        let client = lab.client(agent).await.expect("connect");
        client
            .create_volume("vol-a", &layout, column as u32)
            .await
            .expect("create");
        let shards: Vec<(u64, Vec<u8>)> = columns[column]
            .iter()
            .cloned()
            .enumerate()
            .map(|(s, d)| (s as u64, d))
            .collect();
        let ack = client
            .put_shards("vol-a", column as u32, futures::stream::iter(shards))
            .await
            .expect("put");
        assert_eq!(ack.shards_written, stripes);
        assert_eq!(ack.bytes_written, stripes * shard_bytes as u64);
        assert_eq!(ack.highest_stripe, Some(stripes - 1));
    }
    let mut read_back: Vec<Vec<Vec<u8>>> = Vec::new();
    for (column, agent) in agents.iter().enumerate() {
        let client = lab.client(agent).await.expect("connect");
        let reads = client
            .get_shards("vol-a", column as u32, 0, stripes)
            .await
            .expect("get");
        assert_eq!(
            reads.iter().map(|r| r.stripe).collect::<Vec<_>>(),
            (0..stripes).collect::<Vec<_>>()
        );
        let got: Vec<Vec<u8>> = reads.iter().map(|r| data_of(&r.shard).to_vec()).collect();
        assert!(
            got == columns[column],
            "column {column} differs after the round trip"
        );
        read_back.push(got);

        let stat = client
            .stat("vol-a", column as u32, false)
            .await
            .expect("stat");
        assert_eq!(stat.stripe_count, stripes);
        assert_eq!(stat.bytes, stripes * shard_bytes as u64);
        assert_eq!(stat.columns_held, vec![column as u32]);
        assert!(stat.needs_repair.is_empty());
        let health = client.health().await.expect("health");
        assert_eq!(health.agent_id, format!("agent-{}", agent.host));
        assert_eq!(health.node_name, format!("node-{}", agent.host));
        assert_eq!(health.disks.len(), 2);
        let used: u64 = health.disks.iter().map(|d| d.used_bytes).sum();
        assert!(used >= stripes * shard_bytes as u64, "used {used}");
        assert!(health.disks.iter().all(|d| d.free_bytes > 0));
        assert_eq!(health.volumes, 1);
    }
    // The shards from the agents decode: lose data column 0, rebuild it from the others.
    for s in 0..stripes as usize {
        let mut shards: Vec<Option<Vec<u8>>> =
            read_back.iter().map(|c| Some(c[s].clone())).collect();
        shards[0] = None;
        codec.reconstruct(&mut shards).expect("reconstruct");
        assert!(shards[0].as_deref() == Some(columns[0][s].as_slice()));
    }
    // DeleteVolume is idempotent and removes the shards.
    let client = lab.client(&agents[0]).await.expect("connect");
    assert!(client.delete_volume("vol-a").await.expect("delete"));
    assert!(!client.delete_volume("vol-a").await.expect("delete again"));
    let err = client
        .stat("vol-a", 0, false)
        .await
        .expect_err("volume gone");
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_shard_is_reported_as_corrupt_and_never_served_as_data() {
    let lab = Lab::new();
    let agent = lab.agent("127.0.0.2").await;
    let client = lab.client(&agent).await.expect("connect");
    let shard_bytes = 64 << 10;
    client
        .create_volume("vol-c", &layout(2, 1, shard_bytes), 1)
        .await
        .expect("create");
    let shards: Vec<(u64, Vec<u8>)> = (0..4)
        .map(|s| (s, payload(100 + s, shard_bytes as usize)))
        .collect();
    client
        .put_shards("vol-c", 1, futures::stream::iter(shards.clone()))
        .await
        .expect("put");

    // Flip one payload byte of stripe 2 (slot = 4 KiB header + payload, docs/shard-format.md).
    let slot_bytes = 4096 + shard_bytes.div_ceil(4096) * 4096;
    let at = 2 * slot_bytes + 4096 + 1000;
    let path = agent.column_file("vol-c", 1);
    let mut bytes = std::fs::read(&path).expect("read column file");
    bytes[at as usize] ^= 0x40;
    std::fs::write(&path, &bytes).expect("write column file");

    let reads = client.get_shards("vol-c", 1, 0, 4).await.expect("get");
    assert_eq!(reads.len(), 4);
    for r in &reads {
        match (&r.shard, r.stripe) {
            (ShardRead::Corrupt(detail), 2) => assert!(detail.contains("checksum"), "{detail}"),
            (ShardRead::Data(d), s) if s != 2 => assert!(*d == shards[s as usize].1),
            (other, s) => panic!("stripe {s}: unexpected {other:?}"),
        }
    }
    // A scrub pass records it for repair; from then on it is NEEDS_REPAIR.
    let stat = client
        .stat("vol-c", 1, true)
        .await
        .expect("stat with scrub");
    assert_eq!(stat.needs_repair, vec![2]);
    let reads = client.get_shards("vol-c", 1, 2, 1).await.expect("get");
    assert!(
        matches!(reads[0].shard, ShardRead::NeedsRepair(_)),
        "{:?}",
        reads[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_mid_stream_keeps_every_acknowledged_stripe() {
    let lab = Lab::new();
    let mut agent = lab.agent("127.0.0.3").await;
    let client = lab.client(&agent).await.expect("connect");
    let shard_bytes = 256 << 10;
    client
        .create_volume("vol-k", &layout(4, 2, shard_bytes), 5)
        .await
        .expect("create");
    let shard = move |s: u64| payload(7_000 + s, shard_bytes as usize);

    // A first stream, acknowledged in full.
    let ack = client
        .put_shards(
            "vol-k",
            5,
            futures::stream::iter((0..8).map(move |s| (s, shard(s)))),
        )
        .await
        .expect("put");
    assert_eq!((ack.shards_written, ack.highest_stripe), (8, Some(7)));

    // A second stream that never ends: the agent is killed while it is open.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    let streaming = client.clone();
    let put = tokio::spawn(async move {
        streaming
            .put_shards("vol-k", 5, ReceiverStream::new(rx))
            .await
    });
    let mut sent = 8;
    let deadline = Instant::now() + Duration::from_secs(30);
    // Until the index shows some of the second stream written (stripes are written in order).
    let written_before_kill = loop {
        tx.send((sent, shard(sent))).await.expect("stream open");
        sent += 1;
        let stat = client.stat("vol-k", 5, false).await.expect("stat");
        if stat.stripe_count >= 12 {
            break stat.stripe_count;
        }
        assert!(Instant::now() < deadline, "agent is not writing the stream");
    };
    agent.kill9();
    let err = put
        .await
        .expect("join")
        .expect_err("stream cut by the kill");
    assert_ne!(err.code(), Code::Ok);
    drop(tx);

    lab.start(&mut agent).await;
    assert!(
        agent.log_text().contains("unclean_shutdown=true"),
        "{}",
        agent.log_text()
    );
    let client = lab.client(&agent).await.expect("reconnect");
    let reads = client.get_shards("vol-k", 5, 0, sent).await.expect("get");
    assert_eq!(reads.len() as u64, sent);
    for r in &reads {
        match &r.shard {
            ShardRead::Data(d) => assert!(*d == shard(r.stripe), "stripe {} differs", r.stripe),
            // Sent but not acknowledged: may be lost, never damaged.
            ShardRead::Missing(_) if r.stripe >= written_before_kill => {}
            other => panic!(
                "stripe {}: {other:?} (written before kill: {written_before_kill})",
                r.stripe
            ),
        }
    }
    let stat = client.stat("vol-k", 5, false).await.expect("stat");
    assert!(stat.stripe_count >= written_before_kill);
    assert!(stat.needs_repair.is_empty(), "{:?}", stat.needs_repair);
}

/// Whether a call through `tls` to `agent` is refused (at connect or at the first call).
async fn refused(agent: &Agent, tls: ClientTlsConfig) -> bool {
    let attempt = async {
        match AgentClient::connect(&agent.addr, tls).await {
            Err(_) => true,
            Ok(c) => c.health().await.is_err(),
        }
    };
    tokio::time::timeout(Duration::from_secs(20), attempt)
        .await
        .expect("refusal does not hang")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_a_certificate_from_the_cluster_ca_are_refused() {
    let lab = Lab::new();
    let agent = lab.agent("127.0.0.1").await;
    let ca = Certificate::from_pem(&lab.ca.cert_pem);

    // The cluster client gets through, so the refusals below are about the certificates.
    assert!(!refused(&agent, lab.client.client_config()).await);

    let no_cert = ClientTlsConfig::new().ca_certificate(ca.clone());
    assert!(
        refused(&agent, no_cert).await,
        "client without a certificate"
    );

    let other_ca = Authority::generate("some-other-ca").expect("CA");
    let stranger = other_ca.issue_client("stranger").expect("cert");
    let foreign_cert = ClientTlsConfig::new()
        .ca_certificate(ca)
        .identity(Identity::from_pem(&stranger.cert_pem, &stranger.key_pem));
    assert!(
        refused(&agent, foreign_cert).await,
        "client certificate from another CA"
    );

    // And the client checks the server: trusting only another CA, it does not talk.
    let wrong_trust = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&other_ca.cert_pem))
        .identity(Identity::from_pem(
            &lab.client.cert_pem,
            &lab.client.key_pem,
        ));
    assert!(
        refused(&agent, wrong_trust).await,
        "server not issued by the trusted CA"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_clear_grpc_status() {
    let lab = Lab::new();
    let agent = lab.agent("127.0.0.2").await;
    let client = lab.client(&agent).await.expect("connect");
    let l = layout(2, 1, 64 << 10);

    let e = client
        .stat("no-such-volume", 0, false)
        .await
        .expect_err("unknown");
    assert_eq!(e.code(), Code::NotFound, "{e}");
    assert!(e.message().contains("no-such-volume"), "{e}");
    let e = client
        .get_shards("no-such-volume", 0, 0, 1)
        .await
        .expect_err("unknown");
    assert_eq!(e.code(), Code::NotFound, "{e}");

    let e = client
        .create_volume("vol-b", &l, 3)
        .await
        .expect_err("column 3 of 3");
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert!(e.message().contains("out of range"), "{e}");
    let e = client.create_volume("bad/id", &l, 0).await.expect_err("id");
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");

    client.create_volume("vol-b", &l, 0).await.expect("create");
    client
        .create_volume("vol-b", &l, 0)
        .await
        .expect("create is idempotent");
    let e = client
        .create_volume("vol-b", &layout(3, 1, 64 << 10), 0)
        .await
        .expect_err("other layout");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");

    let put = |column: u32, data: Vec<u8>| {
        client.put_shards("vol-b", column, futures::stream::iter([(0u64, data)]))
    };
    let e = put(1, vec![1; 64]).await.expect_err("column not held");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    let e = put(7, vec![1; 64]).await.expect_err("column out of range");
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    let e = put(0, vec![1; (64 << 10) + 1])
        .await
        .expect_err("payload over shard size");
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    let e = client
        .get_shards("vol-b", 0, 0, 0)
        .await
        .expect_err("empty range");
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");

    // One 5 MiB message: over the 4 MiB limit, refused by the agent before it is decoded.
    let mut big = chunks("vol-b", 0, 0, &[7; 16]);
    big[0].data = vec![7; 5 << 20];
    let e = client
        .raw()
        .put_shards(futures::stream::iter(big))
        .await
        .expect_err("oversized message");
    assert_eq!(e.code(), Code::OutOfRange, "{e}");
    assert!(e.message().contains("too large"), "{e}");

    // A shard whose stream ends before its last chunk is refused, not half-written.
    let mut torn = chunks("vol-b", 0, 1, &[9; 64]);
    torn[0].last = false;
    let e = client
        .raw()
        .put_shards(futures::stream::iter(torn))
        .await
        .expect_err("no last chunk");
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    let reads = client.get_shards("vol-b", 0, 0, 2).await.expect("get");
    assert!(
        reads
            .iter()
            .all(|r| matches!(r.shard, ShardRead::Missing(_))),
        "{reads:?}"
    );

    // The agent is still serving after all of that.
    client.health().await.expect("health");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_an_agent_cleanly_and_its_store_reopens_clean() {
    let lab = Lab::new();
    let mut agent = lab.agent("127.0.0.1").await;
    let client = lab.client(&agent).await.expect("connect");
    client
        .create_volume("vol-t", &layout(1, 1, 4096), 0)
        .await
        .expect("create");
    client
        .put_shards("vol-t", 0, futures::stream::iter([(0, vec![5u8; 4096])]))
        .await
        .expect("put");
    drop(client);
    let mut child = agent.child.take().expect("running");
    let pid = child.id().to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().expect("poll") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("agent ignored SIGTERM: {}", agent.log_text());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}: {}", agent.log_text());
    assert!(agent.log_text().contains("SIGTERM"), "{}", agent.log_text());

    lab.start(&mut agent).await;
    assert!(
        agent.log_text().contains("unclean_shutdown=false"),
        "{}",
        agent.log_text()
    );
    let client = lab.client(&agent).await.expect("connect");
    let reads = client.get_shards("vol-t", 0, 0, 1).await.expect("get");
    assert_eq!(data_of(&reads[0].shard), &[5u8; 4096][..]);
}

#[test]
fn the_certs_command_writes_a_ca_and_certificates_per_host() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("pki");
    let status = Command::new(BIN)
        .args([
            "certs",
            "--host",
            "127.0.0.1",
            "--host",
            "127.0.0.2",
            "--out-dir",
        ])
        .arg(&out)
        .stdout(Stdio::null())
        .status()
        .expect("run certs");
    assert!(status.success());
    for sub in ["127.0.0.1", "127.0.0.2", "client"] {
        let files = TlsFiles {
            cert: out.join(sub).join("cert.pem"),
            key: out.join(sub).join("key.pem"),
            ca: out.join(sub).join("ca.pem"),
        };
        TlsMaterial::read(&files).unwrap_or_else(|e| panic!("{sub}: {e}"));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&files.key).expect("key").permissions(),
        );
        assert_eq!(mode & 0o077, 0, "{sub} key readable by others");
    }
    assert_eq!(
        std::fs::read(out.join("ca.pem")).expect("ca"),
        std::fs::read(out.join("client/ca.pem")).expect("client ca")
    );
}
