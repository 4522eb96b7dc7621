//! The read path of an archived volume through the NBD export, checked with real NBD clients
//! (qemu-img, qemu-io from qemu-utils; nbdcopy, nbdinfo from libnbd-bin), a raw TCP client
//! for malformed input, and a property test of `ArchiveReader` with lost columns.
//! Scenarios: `docs/nbd.md`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use couchestor_node_agent::archive::{
    ArchiveLayout, ArchiveReader, ColumnSource, ReaderConfig, ShardFault, ShardFuture,
    StoreColumns, archive_into_stores,
};
use couchestor_node_agent::codec::{Backend, ErasureCodec, new_codec};
use couchestor_node_agent::nbd::NbdServer;
use couchestor_node_agent::shard::{BLOCK_BYTES, slot_bytes};
use couchestor_node_agent::store::{ShardStore, StoreConfig};
use proptest::prelude::*;
use tempfile::TempDir;
use tokio::sync::oneshot;

const VOL: &str = "pvc-nbd";
const EXPORT: &str = "archive";
const K: usize = 4;
const M: usize = 2;
/// 64 KiB shards: the test image spans 41 stripes.
const STRIPE: u64 = 256 << 10;
/// Not a multiple of the stripe size, so the last stripe is short.
const IMAGE_LEN: usize = (10 << 20) + 12345;
/// Where the image holds a run of 0xab that qemu-io checks.
const PATTERN_AT: usize = (3 << 20) + 777;
const PATTERN_LEN: usize = 70_000;

// ---------------------------------------------------------------- fixtures

/// Mixed content: pseudo-random blocks, zero runs, text, and a run of 0xab.
fn source_image(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let text = b"CoucheStor archives cold volumes as k+m erasure-coded stripes. ";
    let mut block = 0u64;
    while out.len() < len {
        let n = (64 << 10).min(len - out.len());
        match block % 4 {
            0 | 3 => out.extend((0..n).map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })),
            1 => out.resize(out.len() + n, 0),
            _ => out.extend(text.iter().cycle().take(n)),
        }
        block += 1;
    }
    if len > PATTERN_AT + PATTERN_LEN {
        out[PATTERN_AT..PATTERN_AT + PATTERN_LEN].fill(0xab);
    }
    out
}

fn codec() -> Arc<dyn ErasureCodec> {
    Arc::from(new_codec(Backend::Best, K, M).expect("k4m2 codec"))
}

fn layout(size: usize) -> ArchiveLayout {
    ArchiveLayout {
        volume_size: size as u64,
        data_shards: K,
        parity_shards: M,
        stripe_size: STRIPE,
    }
}

/// An image archived k4m2 into six shard stores, one per column, each in its own directory.
struct Archive {
    _dir: TempDir,
    image: Vec<u8>,
    stores: Vec<Arc<ShardStore>>,
}

impl Archive {
    fn new(len: usize) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let stores: Vec<Arc<ShardStore>> = (0..K + M)
            .map(|c| {
                let root = dir.path().join(format!("node{c}"));
                let config = StoreConfig {
                    index_path: root.join("index.redb"),
                    disks: vec![root.join("disk0")],
                    direct_io: true,
                };
                std::fs::create_dir_all(&root).expect("node dir");
                Arc::new(ShardStore::open(&config).expect("open store"))
            })
            .collect();
        let image = source_image(len);
        let stripes = archive_into_stores(&image[..], VOL, layout(len), codec(), &stores)
            .expect("archive the image");
        assert_eq!(stripes, (len as u64).div_ceil(STRIPE));
        Self {
            _dir: dir,
            image,
            stores,
        }
    }

    fn column_file(&self, column: usize) -> PathBuf {
        let info = self.stores[column]
            .volume(VOL)
            .expect("index")
            .expect("volume");
        info.columns[&(column as u32)]
            .join(VOL)
            .join(format!("col-{column}.shards"))
    }

    /// The column's shards are gone (its file deleted, as when a disk is replaced).
    fn delete_column(&self, column: usize) {
        std::fs::remove_file(self.column_file(column)).expect("delete column file");
    }

    /// One payload byte flipped in every shard of the column (bit rot).
    fn corrupt_column(&self, column: usize) {
        let path = self.column_file(column);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .expect("open column file");
        let slot = slot_bytes((STRIPE / K as u64) as u32);
        use std::os::unix::fs::FileExt;
        for stripe in 0..(self.image.len() as u64).div_ceil(STRIPE) {
            let at = stripe * slot + BLOCK_BYTES as u64 + 100;
            let mut b = [0u8; 1];
            file.read_exact_at(&mut b, at).expect("read payload byte");
            file.write_all_at(&[b[0] ^ 0x5a], at).expect("flip");
        }
        file.sync_all().expect("sync");
    }

    fn reader(&self) -> Arc<ArchiveReader> {
        let columns: Vec<Arc<dyn ColumnSource>> = self
            .stores
            .iter()
            .map(|s| Arc::new(StoreColumns::new(Arc::clone(s), VOL)) as Arc<dyn ColumnSource>)
            .collect();
        Arc::new(
            ArchiveReader::new(
                VOL,
                layout(self.image.len()),
                codec(),
                columns,
                ReaderConfig::default(),
            )
            .expect("reader"),
        )
    }
}

/// A running NBD server exporting the archive as `EXPORT`; stopped on drop.
struct Server {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl Server {
    async fn start(reader: Arc<ArchiveReader>) -> Self {
        // Server logs (stripe and columns of a failed read) appear with a failing test.
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("couchestor_node_agent=info")
            .try_init();
        let mut server = NbdServer::new();
        server.add_export(EXPORT, reader);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(Arc::new(server).serve_tcp(listener, async move {
            let _ = stopped.await;
        }));
        Self { addr, _stop: stop }
    }

    fn uri(&self) -> String {
        format!("nbd://{}/{EXPORT}", self.addr)
    }
}

/// Fails (never skips) when a client program is not installed.
fn require(program: &str, package: &str) {
    let found = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{program} not found: apt-get install {package} (./scripts/test installs it)"
    );
}

async fn run(program: &str, args: &[&str]) -> Output {
    let child = tokio::process::Command::new(program)
        .args(args)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(120), child)
        .await
        .unwrap_or_else(|_| panic!("{program} {args:?} hung"))
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The whole export copied with `qemu-img convert`.
async fn qemu_img_convert(server: &Server, out: &Path) -> Output {
    require("qemu-img", "qemu-utils");
    let (uri, dst) = (server.uri(), out.display().to_string());
    run(
        "qemu-img",
        &["convert", "-f", "raw", "-O", "raw", &uri, &dst],
    )
    .await
}

/// qemu sizes every image in 512-byte sectors (qemu-nbd itself exports a file rounded up),
/// so `qemu-img convert` writes the unaligned tail as zeros of its own; the server never sends
/// bytes beyond the export size (see `reads_beyond_the_end_get_einval...`).
fn assert_qemu_copy(path: &Path, image: &[u8]) {
    let got = std::fs::read(path).expect("read copy");
    assert_eq!(got.len(), image.len().next_multiple_of(512), "copy length");
    assert!(
        got[image.len()..].iter().all(|b| *b == 0),
        "qemu's sector padding"
    );
    assert_same_prefix(&got[..image.len()], image);
}

fn assert_same_prefix(got: &[u8], image: &[u8]) {
    if let Some(i) = got.iter().zip(image).position(|(a, b)| a != b) {
        panic!("copy differs from the source first at byte {i}");
    }
}

fn assert_same_bytes(path: &Path, image: &[u8]) {
    let got = std::fs::read(path).expect("read copy");
    assert_eq!(got.len(), image.len(), "copy length");
    if let Some(i) = got.iter().zip(image).position(|(a, b)| a != b) {
        panic!("copy differs from the source first at byte {i}");
    }
}

// ---------------------------------------------------------------- real clients

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_img_convert_reads_back_the_archived_image_byte_for_byte() {
    let archive = Archive::new(IMAGE_LEN);
    let server = Server::start(archive.reader()).await;
    let out = archive._dir.path().join("out.img");
    assert_success(&qemu_img_convert(&server, &out).await, "qemu-img convert");
    assert_qemu_copy(&out, &archive.image);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nbdcopy_reads_back_the_archived_image_byte_for_byte() {
    require("nbdcopy", "libnbd-bin");
    let archive = Archive::new(IMAGE_LEN);
    let server = Server::start(archive.reader()).await;
    let out = archive._dir.path().join("out2.img");
    let out_arg = out.display().to_string();
    let done = run("nbdcopy", &[&server.uri(), &out_arg]).await;
    assert_success(&done, "nbdcopy");
    assert_same_bytes(&out, &archive.image);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nbdinfo_reports_the_export_size_and_read_only() {
    require("nbdinfo", "libnbd-bin");
    let archive = Archive::new(IMAGE_LEN);
    let server = Server::start(archive.reader()).await;
    let out = run("nbdinfo", &["--json", &server.uri()]).await;
    assert_success(&out, "nbdinfo");
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).expect("nbdinfo json");
    let export = &info["exports"][0];
    assert_eq!(export["export-size"], serde_json::json!(IMAGE_LEN));
    assert_eq!(export["is_read_only"], serde_json::json!(true));
    assert_eq!(export["can_trim"], serde_json::json!(false));
    assert_eq!(export["export-name"], serde_json::json!(EXPORT));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_io_reads_a_known_pattern_at_an_unaligned_offset_and_rejects_a_wrong_one() {
    require("qemu-io", "qemu-utils");
    let archive = Archive::new(IMAGE_LEN);
    let server = Server::start(archive.reader()).await;
    // An unaligned range inside the 0xab run, crossing a stripe boundary (3 MiB + 1 MiB).
    let (off, len) = (PATTERN_AT + 1, PATTERN_LEN - 2);
    let read = |pattern: &str| format!("read -P {pattern} {off} {len}");
    let (good, bad) = (read("0xab"), read("0xac"));
    let uri = server.uri();
    let out = run("qemu-io", &["-r", "-f", "raw", &uri, "-c", &good]).await;
    assert_success(&out, "qemu-io read -P 0xab");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("Pattern verification failed"), "{text}");
    let out = run("qemu-io", &["-r", "-f", "raw", &uri, "-c", &bad]).await;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("Pattern verification failed"),
        "a wrong pattern must be reported: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_data_column_deleted_the_volume_still_reads_back_exactly() {
    let archive = Archive::new(IMAGE_LEN);
    archive.delete_column(1);
    let server = Server::start(archive.reader()).await;
    let out = archive._dir.path().join("degraded1.img");
    assert_success(&qemu_img_convert(&server, &out).await, "qemu-img convert");
    assert_qemu_copy(&out, &archive.image);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_column_deleted_and_one_corrupted_the_volume_still_reads_back_exactly() {
    require("nbdcopy", "libnbd-bin");
    let archive = Archive::new(IMAGE_LEN);
    archive.delete_column(0);
    archive.corrupt_column(2);
    let server = Server::start(archive.reader()).await;
    let out = archive._dir.path().join("degraded2.img");
    let out_arg = out.display().to_string();
    assert_success(&run("nbdcopy", &[&server.uri(), &out_arg]).await, "nbdcopy");
    assert_same_bytes(&out, &archive.image);
    let out = archive._dir.path().join("degraded2q.img");
    assert_success(&qemu_img_convert(&server, &out).await, "qemu-img convert");
    assert_qemu_copy(&out, &archive.image);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_three_columns_lost_qemu_img_fails_with_an_io_error_and_the_server_stays_up() {
    require("nbdinfo", "libnbd-bin");
    let archive = Archive::new(IMAGE_LEN);
    archive.delete_column(0);
    archive.delete_column(4);
    archive.corrupt_column(3);
    let server = Server::start(archive.reader()).await;
    let out = archive._dir.path().join("lost.img");
    let done = qemu_img_convert(&server, &out).await;
    assert!(!done.status.success(), "qemu-img must fail");
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(
        stderr.contains("Input/output error"),
        "expected EIO from the server, got: {stderr}"
    );
    let info = run("nbdinfo", &["--size", &server.uri()]).await;
    assert_success(&info, "nbdinfo after the failed copy");
    assert_eq!(
        String::from_utf8_lossy(&info.stdout).trim(),
        IMAGE_LEN.to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unix_socket_export_is_read_back_exactly_by_nbdcopy() {
    require("nbdcopy", "libnbd-bin");
    let archive = Archive::new(1 << 20);
    let socket = archive._dir.path().join("nbd.sock");
    let mut server = NbdServer::new();
    server.add_export(EXPORT, archive.reader());
    let listener = tokio::net::UnixListener::bind(&socket).expect("bind unix socket");
    let (_stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(Arc::new(server).serve_unix(listener, async move {
        let _ = stopped.await;
    }));
    let uri = format!("nbd+unix:///{EXPORT}?socket={}", socket.display());
    let out = archive._dir.path().join("unix.img");
    let out_arg = out.display().to_string();
    assert_success(
        &run("nbdcopy", &[&uri, &out_arg]).await,
        "nbdcopy over unix",
    );
    assert_same_bytes(&out, &archive.image);
}

// ---------------------------------------------------------------- raw protocol

const INIT_MAGIC: u64 = 0x4e42_444d_4147_4943;
const OPT_MAGIC: u64 = 0x4948_4156_454f_5054;
const REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;

/// A blocking client speaking the protocol by hand (std I/O, run off the async workers).
struct Raw(TcpStream);

impl Raw {
    fn connect(addr: SocketAddr) -> Self {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut raw = Self(s);
        assert_eq!(raw.u64(), INIT_MAGIC);
        assert_eq!(raw.u64(), OPT_MAGIC);
        assert_eq!(raw.u16() & 0b11, 0b11, "fixed newstyle and no zeroes");
        raw.send(&3u32.to_be_bytes()); // client: fixed newstyle + no zeroes
        raw
    }
    fn send(&mut self, b: &[u8]) {
        self.0.write_all(b).expect("send");
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut b = vec![0; n];
        self.0.read_exact(&mut b).expect("receive");
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.bytes(2).try_into().expect("2"))
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.bytes(4).try_into().expect("4"))
    }
    fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.bytes(8).try_into().expect("8"))
    }
    fn option(&mut self, option: u32, data: &[u8]) {
        let mut b = OPT_MAGIC.to_be_bytes().to_vec();
        b.extend_from_slice(&option.to_be_bytes());
        b.extend_from_slice(&(data.len() as u32).to_be_bytes());
        b.extend_from_slice(data);
        self.send(&b);
    }
    /// (option, reply type, data) of one option reply.
    fn reply(&mut self) -> (u32, u32, Vec<u8>) {
        assert_eq!(self.u64(), REPLY_MAGIC);
        let (option, kind, len) = (self.u32(), self.u32(), self.u32());
        (option, kind, self.bytes(len as usize))
    }
    /// NBD_OPT_GO on `name`; returns the export size.
    fn go(&mut self, name: &str) -> u64 {
        let mut data = (name.len() as u32).to_be_bytes().to_vec();
        data.extend_from_slice(name.as_bytes());
        data.extend_from_slice(&0u16.to_be_bytes());
        self.option(7, &data);
        let mut size = None;
        loop {
            let (_, kind, data) = self.reply();
            match kind {
                3 if data[..2] == [0, 0] => {
                    size = Some(u64::from_be_bytes(data[2..10].try_into().expect("8")));
                    assert_eq!(u16::from_be_bytes([data[10], data[11]]) & 0b11, 0b11);
                }
                3 => {}
                1 => break,
                other => panic!("NBD_OPT_GO answered {other:#x}"),
            }
        }
        size.expect("NBD_INFO_EXPORT")
    }
    fn request(&mut self, kind: u16, cookie: u64, offset: u64, len: u32) {
        let mut b = 0x2560_9513u32.to_be_bytes().to_vec();
        b.extend_from_slice(&0u16.to_be_bytes());
        b.extend_from_slice(&kind.to_be_bytes());
        b.extend_from_slice(&cookie.to_be_bytes());
        b.extend_from_slice(&offset.to_be_bytes());
        b.extend_from_slice(&len.to_be_bytes());
        self.send(&b);
    }
    /// (error, cookie) of a simple reply.
    fn simple_reply(&mut self) -> (u32, u64) {
        assert_eq!(self.u32(), 0x6744_6698);
        (self.u32(), self.u64())
    }
    fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.0.read(&mut b), Ok(0) | Err(_))
    }
}

/// A small archive (two stripes, the second short) served on a fresh server.
async fn small_export() -> (Archive, Server) {
    let archive = Archive::new(300_000);
    let server = Server::start(archive.reader()).await;
    (archive, server)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("client thread")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_options_are_unsupported_and_negotiation_goes_on_to_structured_replies_list_and_go()
{
    let (archive, server) = small_export().await;
    let (addr, image) = (server.addr, archive.image.clone());
    blocking(move || {
        let mut c = Raw::connect(addr);
        c.option(4, &[]); // NBD_OPT_PEEK_EXPORT: not offered
        let (option, kind, _) = c.reply();
        assert_eq!((option, kind), (4, 0x8000_0001), "NBD_REP_ERR_UNSUP");
        c.option(10, &[0; 9]); // NBD_OPT_SET_META_CONTEXT with data: skipped, unsupported
        assert_eq!(c.reply().1, 0x8000_0001, "NBD_REP_ERR_UNSUP");
        c.option(8, &[]); // NBD_OPT_STRUCTURED_REPLY
        assert_eq!(c.reply(), (8, 1, Vec::new()), "NBD_REP_ACK");
        c.option(3, &[]); // NBD_OPT_LIST
        let (_, kind, data) = c.reply();
        assert_eq!(kind, 2, "NBD_REP_SERVER");
        assert_eq!(&data[4..], EXPORT.as_bytes());
        assert_eq!(c.reply().1, 1, "NBD_REP_ACK ends the list");
        let mut unknown = 4u32.to_be_bytes().to_vec();
        unknown.extend_from_slice(b"nope\0\0");
        c.option(6, &unknown); // NBD_OPT_INFO on an unknown export
        assert_eq!(c.reply().1, 0x8000_0006, "NBD_REP_ERR_UNKNOWN");
        assert_eq!(c.go(EXPORT), image.len() as u64);
        c.request(0, 42, 1000, 5000);
        // One OFFSET_DATA chunk flagged DONE: magic, flags, type, cookie, length, offset.
        assert_eq!(c.u32(), 0x668e_33ef);
        assert_eq!((c.u16(), c.u16(), c.u64(), c.u32()), (1, 1, 42, 5008));
        assert_eq!(c.u64(), 1000);
        assert_eq!(c.bytes(5000), image[1000..6000]);
        c.request(0, 44, image.len() as u64, 1);
        assert_eq!(c.u32(), 0x668e_33ef);
        // An ERROR chunk: EINVAL and a message.
        let (flags, kind, cookie, len) = (c.u16(), c.u16(), c.u64(), c.u32());
        assert_eq!((flags, kind, cookie), (1, 0x8001, 44));
        let payload = c.bytes(len as usize);
        assert_eq!(payload[..4], 22u32.to_be_bytes());
        c.request(2, 43, 0, 0); // NBD_CMD_DISC
        assert!(c.is_closed());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_beyond_the_end_get_einval_and_writes_get_eperm_on_a_live_connection() {
    let (archive, server) = small_export().await;
    let (addr, image) = (server.addr, archive.image.clone());
    blocking(move || {
        let mut c = Raw::connect(addr);
        let size = c.go(EXPORT);
        c.request(0, 1, size - 10, 11);
        assert_eq!(c.simple_reply(), (22, 1), "EINVAL past the end");
        c.request(0, 2, u64::MAX - 5, 10);
        assert_eq!(c.simple_reply(), (22, 2), "EINVAL on offset overflow");
        c.request(1, 3, 0, 4096);
        c.send(&[0xee; 4096]);
        assert_eq!(c.simple_reply(), (1, 3), "EPERM for a write");
        c.request(6, 4, 0, 4096);
        assert_eq!(c.simple_reply(), (1, 4), "EPERM for write zeroes");
        c.request(3, 5, 0, 0);
        assert_eq!(c.simple_reply(), (0, 5), "flush succeeds");
        // The tail of the short last stripe, up to the last byte.
        c.request(0, 6, size - 100, 100);
        assert_eq!(c.simple_reply(), (0, 6));
        assert_eq!(
            c.bytes(100),
            image[image.len() - 100..],
            "the write changed nothing"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_request_magic_or_unknown_command_closes_the_connection_and_not_the_server() {
    let (_archive, server) = small_export().await;
    let addr = server.addr;
    blocking(move || {
        let mut c = Raw::connect(addr);
        c.go(EXPORT);
        c.send(&[0x12; 28]);
        assert!(c.is_closed(), "bad request magic");
        let mut c = Raw::connect(addr);
        c.go(EXPORT);
        c.request(77, 9, 0, 0);
        assert!(c.is_closed(), "unknown command");
        let mut c = Raw::connect(addr);
        c.send(&0xdead_beef_u64.to_be_bytes());
        assert!(c.is_closed(), "bad option magic");
        let mut c = Raw::connect(addr);
        assert!(c.go(EXPORT) > 0, "the server still serves");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_export_name_option_enters_transmission_and_abort_is_acknowledged() {
    let (archive, server) = small_export().await;
    let (addr, image) = (server.addr, archive.image.clone());
    blocking(move || {
        let mut c = Raw::connect(addr);
        c.option(1, EXPORT.as_bytes());
        assert_eq!(c.u64(), image.len() as u64);
        assert_eq!(c.u16() & 0b11, 0b11, "has flags, read-only");
        // No 124 zero bytes: the client asked for NBD_FLAG_C_NO_ZEROES.
        c.request(0, 7, 0, 64);
        assert_eq!(c.simple_reply(), (0, 7));
        assert_eq!(c.bytes(64), image[..64]);
        let mut c = Raw::connect(addr);
        c.option(2, &[]);
        assert_eq!(c.reply().1, 1, "NBD_REP_ACK to NBD_OPT_ABORT");
        assert!(c.is_closed());
    })
    .await;
}

// ---------------------------------------------------------------- ArchiveReader

/// Serves a real store's columns but reports the chosen ones lost, as a failed node would.
#[derive(Debug)]
struct Lost {
    inner: StoreColumns,
    lost: Vec<u32>,
}

impl ColumnSource for Lost {
    fn get_shard(&self, column: u32, stripe: u64) -> ShardFuture<'_> {
        if self.lost.contains(&column) {
            return Box::pin(async move {
                Err(ShardFault::Unavailable(format!(
                    "node of column {column} is down"
                )))
            });
        }
        self.inner.get_shard(column, stripe)
    }
}

fn reader_with_lost(archive: &Archive, lost: &[u32]) -> ArchiveReader {
    let columns: Vec<Arc<dyn ColumnSource>> = archive
        .stores
        .iter()
        .map(|s| {
            Arc::new(Lost {
                inner: StoreColumns::new(Arc::clone(s), VOL),
                lost: lost.to_vec(),
            }) as Arc<dyn ColumnSource>
        })
        .collect();
    let config = ReaderConfig {
        window: 3,
        cache_stripes: 2,
    };
    ArchiveReader::new(VOL, layout(archive.image.len()), codec(), columns, config).expect("reader")
}

fn shared_archive() -> &'static Archive {
    static ARCHIVE: OnceLock<Archive> = OnceLock::new();
    ARCHIVE.get_or_init(|| Archive::new((1 << 20) + 4321))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stripe_with_more_than_m_bad_columns_is_an_error_naming_the_stripe_and_columns() {
    let archive = shared_archive();
    let reader = reader_with_lost(archive, &[1, 3, 5]);
    let err = reader.read(STRIPE + 10, 20).await.expect_err("3 of 6 lost");
    let text = err.to_string();
    for needle in ["stripe 1", "column 1", "column 3", "column 5", "4 needed"] {
        assert!(text.contains(needle), "{needle:?} missing from: {text}");
    }
    assert!(text.contains("node of column 5 is down"), "{text}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn random_reads_with_up_to_m_lost_columns_equal_the_source(
        lost in proptest::sample::subsequence((0..(K + M) as u32).collect::<Vec<_>>(), 0..=M),
        ranges in proptest::collection::vec((0.0f64..1.0, 0usize..600_000), 1..6),
    ) {
        let archive = shared_archive();
        let reader = reader_with_lost(archive, &lost);
        let size = archive.image.len();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        for (at, len) in ranges {
            let offset = ((size as f64) * at) as usize;
            let len = len.min(size - offset);
            let got = rt.block_on(reader.read(offset as u64, len as u64)).expect("read");
            prop_assert!(got == archive.image[offset..offset + len],
                "bytes differ at offset {} len {} with lost {:?}", offset, len, lost);
        }
    }
}
