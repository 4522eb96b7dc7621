//! Wire-level tests of the StorageNode publisher: a kube `Client` over
//! `tower_test::mock`, asserting each request's method, path, field manager, content type
//! and body, with discovery running on a sysfs fixture tree.

use std::path::Path;
use std::time::{Duration, Instant};

use clap::Parser;
use couchestor_core::{Timestamp, names};
use couchestor_node_agent::config::{Command, Config};
use couchestor_node_agent::discovery::{Options, SmartSource};
use couchestor_node_agent::storage_node::{self, Publisher, Schedule};
use http::{Request, Response};
use http_body_util::BodyExt;
use kube::client::Body;
use serde_json::{Value, json};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;
type Send = tower_test::mock::SendResponse<Response<Body>>;

const NODE: &str = "worker-1";
const OBJECT: &str = "/apis/couchestor.io/v1alpha1/storagenodes/worker-1";
const ENDPOINT: &str = "https://10.0.0.7:7400";

async fn next(handle: &mut Handle) -> (Request<Value>, Send) {
    let (request, send) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
        .await
        .expect("a request within 10 s")
        .expect("a request");
    let (parts, body) = request.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("JSON body")
    };
    (Request::from_parts(parts, value), send)
}

fn respond(send: Send, code: u16, body: &Value) {
    send.send_response(
        Response::builder()
            .status(code)
            .body(Body::from(serde_json::to_vec(body).expect("json")))
            .expect("response"),
    );
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "reason": "NotFound", "code": 404, "message": "storagenodes \"worker-1\" not found"})
}

fn storage_node(generation: i64, include_virtual: bool) -> Value {
    json!({
        "apiVersion": "couchestor.io/v1alpha1", "kind": "StorageNode",
        "metadata": {"name": NODE, "generation": generation, "resourceVersion": "7"},
        "spec": {"nodeName": NODE, "includeVirtualDevices": include_virtual}
    })
}

/// A sysfs tree with one virtio disk (and, on demand, a loop device and an NVMe one).
struct Sysfs(tempfile::TempDir);

impl Sysfs {
    fn new() -> Self {
        let s = Sysfs(tempfile::tempdir().expect("tempdir"));
        s.disk(
            "devices/pci0000:00/0000:00:02.0/virtio1/block/vda",
            "254:0",
            "0",
        );
        s.disk("devices/virtual/block/loop0", "7:0", "1");
        s
    }

    fn root(&self) -> &Path {
        self.0.path()
    }

    fn disk(&self, devpath: &str, dev: &str, rotational: &str) {
        let dir = self.root().join(devpath);
        std::fs::create_dir_all(dir.join("queue")).expect("mkdir");
        std::fs::write(dir.join("dev"), dev).expect("dev");
        std::fs::write(dir.join("size"), "2097152").expect("size");
        std::fs::write(dir.join("queue/rotational"), rotational).expect("rotational");
        std::fs::create_dir_all(self.root().join("block")).expect("mkdir");
        let name = devpath.rsplit('/').next().expect("name");
        std::os::unix::fs::symlink(
            format!("../{devpath}"),
            self.root().join("block").join(name),
        )
        .expect("link");
    }

    fn options(&self) -> Options {
        Options {
            sysfs_root: self.root().to_path_buf(),
            udev_root: self.root().join("run/udev"),
            include_virtual: false,
            smart: SmartSource::Off,
        }
    }
}

fn start(
    sysfs: &Sysfs,
    schedule: Schedule,
) -> (
    Handle,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let publisher = Publisher::new(kube::Client::new(service, "default"), NODE);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(storage_node::run(
        publisher,
        sysfs.options(),
        ENDPOINT.into(),
        schedule,
        async move {
            let _ = stopped.await;
        },
    ));
    (handle, stop, task)
}

fn query(req: &Request<Value>) -> String {
    req.uri().query().unwrap_or_default().to_owned()
}

fn device_names(status: &Value) -> Vec<String> {
    status["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .map(|d| d["name"].as_str().expect("name").to_owned())
        .collect()
}

/// Asserts an SSA status patch and returns its `status`.
fn assert_status_apply(req: &Request<Value>) -> Value {
    assert_eq!(req.method(), "PATCH");
    assert_eq!(req.uri().path(), format!("{OBJECT}/status"));
    let q = query(req);
    assert!(
        q.contains(&format!("fieldManager={}", names::MANAGER_NODE_AGENT)),
        "{q}"
    );
    assert!(q.contains("force=true"), "{q}");
    assert_eq!(
        req.headers()["content-type"],
        "application/apply-patch+yaml"
    );
    let body = req.body();
    assert_eq!(body["apiVersion"], "couchestor.io/v1alpha1");
    assert_eq!(body["kind"], "StorageNode");
    assert_eq!(body["metadata"]["name"], NODE);
    assert!(
        body.get("spec").is_none(),
        "the status patch must not carry a spec: {body}"
    );
    body["status"].clone()
}

#[tokio::test]
async fn a_missing_storage_node_is_created_then_its_status_applied_and_a_new_disk_republished() {
    let sysfs = Sysfs::new();
    let (mut handle, stop, task) = start(
        &sysfs,
        Schedule {
            rescan: Duration::from_millis(50),
            heartbeat: Duration::from_secs(3600),
        },
    );

    let (req, send) = next(&mut handle).await;
    assert_eq!(req.method(), "GET");
    assert_eq!(req.uri().path(), OBJECT);
    respond(send, 404, &not_found());

    let (req, send) = next(&mut handle).await;
    assert_eq!(req.method(), "POST");
    assert_eq!(
        req.uri().path(),
        "/apis/couchestor.io/v1alpha1/storagenodes"
    );
    assert!(
        query(&req).contains(&format!("fieldManager={}", names::MANAGER_NODE_AGENT)),
        "{}",
        query(&req)
    );
    assert_eq!(req.body()["metadata"]["name"], NODE);
    assert_eq!(req.body()["spec"]["nodeName"], NODE);
    assert!(req.body().get("status").is_none());
    respond(send, 201, &storage_node(1, false));

    let (req, send) = next(&mut handle).await;
    let status = assert_status_apply(&req);
    assert_eq!(device_names(&status), ["vda"], "loop0 is virtual: skipped");
    assert_eq!(status["deviceCount"], 1);
    assert_eq!(status["agentEndpoint"], ENDPOINT);
    assert_eq!(status["observedGeneration"], 1);
    let vda = &status["devices"][0];
    assert_eq!(vda["kind"], "virtio");
    assert_eq!(vda["rotational"], false);
    assert_eq!(vda["sizeBytes"], 1u64 << 30);
    assert_eq!(vda["suggestedTier"], "warm");
    assert_eq!(vda["smartAbsentReason"], "SMART not requested");
    let heartbeat: Timestamp = status["lastHeartbeat"]
        .as_str()
        .expect("heartbeat")
        .parse()
        .expect("RFC 3339");
    assert!(Timestamp::now().duration_since(heartbeat).as_secs_f64() < 60.0);
    assert_eq!(status["conditions"][0]["type"], "Ready");
    assert_eq!(status["conditions"][0]["status"], "True");
    assert_eq!(status["conditions"][0]["reason"], "InventoryPublished");
    respond(send, 200, &storage_node(1, false));

    // A disk appears: published at the next rescan, long before the heartbeat.
    sysfs.disk(
        "devices/pci0000:00/0000:00:01.1/0000:01:00.0/nvme/nvme0/nvme0n1",
        "259:0",
        "0",
    );
    let (req, send) = next(&mut handle).await;
    assert_eq!(req.method(), "GET");
    assert_eq!(req.uri().path(), OBJECT);
    respond(send, 200, &storage_node(1, false));
    let (req, send) = next(&mut handle).await;
    let status = assert_status_apply(&req);
    assert_eq!(device_names(&status), ["nvme0n1", "vda"]);
    assert_eq!(status["devices"][0]["suggestedTier"], "hot");
    respond(send, 200, &storage_node(1, false));

    stop.send(()).expect("stop");
    task.await.expect("publisher ends on shutdown");
    assert!(
        handle.next_request().await.is_none(),
        "no request after shutdown"
    );
}

#[tokio::test]
async fn an_unchanged_inventory_is_republished_at_the_heartbeat_and_the_spec_can_ask_for_virtual_devices()
 {
    let sysfs = Sysfs::new();
    // More than a second: lastHeartbeat has one-second precision (RFC 3339 without
    // fractions), so a shorter interval could publish the same time twice.
    let heartbeat = Duration::from_millis(1100);
    let (mut handle, stop, task) = start(
        &sysfs,
        Schedule {
            rescan: Duration::from_millis(20),
            heartbeat,
        },
    );
    let (req, send) = next(&mut handle).await;
    assert_eq!(req.method(), "GET");
    respond(send, 200, &storage_node(4, true));
    // includeVirtualDevices in the spec: loop0 is published too.
    let (req, send) = next(&mut handle).await;
    let first = assert_status_apply(&req);
    let first_at = Instant::now();
    assert_eq!(device_names(&first), ["loop0", "vda"]);
    assert_eq!(first["observedGeneration"], 4);
    respond(send, 200, &storage_node(4, true));

    let (req, send) = next(&mut handle).await;
    assert_eq!(req.method(), "GET");
    assert!(
        first_at.elapsed() >= heartbeat - Duration::from_millis(50),
        "republished after {:?}, before the heartbeat interval",
        first_at.elapsed()
    );
    respond(send, 200, &storage_node(4, true));
    let (req, send) = next(&mut handle).await;
    let second = assert_status_apply(&req);
    assert_eq!(device_names(&second), ["loop0", "vda"]);
    let t1: Timestamp = first["lastHeartbeat"]
        .as_str()
        .expect("t")
        .parse()
        .expect("t");
    let t2: Timestamp = second["lastHeartbeat"]
        .as_str()
        .expect("t")
        .parse()
        .expect("t");
    assert!(t2 > t1, "{t1} then {t2}");
    // Ready did not change status, so its transition time stays.
    assert_eq!(
        first["conditions"][0]["lastTransitionTime"],
        second["conditions"][0]["lastTransitionTime"]
    );
    respond(send, 200, &storage_node(4, true));
    stop.send(()).expect("stop");
    task.await.expect("publisher ends");
}

#[tokio::test]
async fn an_api_error_is_retried_at_the_next_rescan_without_stopping_the_publisher() {
    let sysfs = Sysfs::new();
    let (mut handle, stop, task) = start(
        &sysfs,
        Schedule {
            rescan: Duration::from_millis(30),
            heartbeat: Duration::from_secs(3600),
        },
    );
    let error = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                       "reason": "InternalError", "code": 500, "message": "etcd unavailable"});
    let (req, send) = next(&mut handle).await;
    assert_eq!(req.method(), "GET");
    respond(send, 500, &error);
    let (req, send) = next(&mut handle).await;
    assert_eq!(req.method(), "GET", "the read is retried");
    respond(send, 200, &storage_node(1, false));
    let (req, send) = next(&mut handle).await;
    assert_status_apply(&req);
    respond(send, 500, &error);
    let (req, send) = next(&mut handle).await;
    assert_eq!(req.method(), "GET");
    respond(send, 200, &storage_node(1, false));
    let (req, send) = next(&mut handle).await;
    let status = assert_status_apply(&req);
    assert_eq!(device_names(&status), ["vda"]);
    respond(send, 200, &storage_node(1, false));
    stop.send(()).expect("stop");
    task.await.expect("publisher ends");
}

#[tokio::test]
async fn a_storage_node_created_concurrently_is_read_back_instead_of_failing() {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let publisher = Publisher::new(kube::Client::new(service, "default"), NODE);
    let server = tokio::spawn(async move {
        let (_, send) = next(&mut handle).await;
        respond(send, 404, &not_found());
        let (req, send) = next(&mut handle).await;
        assert_eq!(req.method(), "POST");
        respond(
            send,
            409,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "reason": "AlreadyExists", "code": 409, "message": "already exists"}),
        );
        let (req, send) = next(&mut handle).await;
        assert_eq!(req.method(), "GET");
        respond(send, 200, &storage_node(9, false));
    });
    let node = publisher.ensure().await.expect("read back");
    assert_eq!(node.metadata.generation, Some(9));
    server.await.expect("server");
}

#[test]
fn publishing_from_a_wildcard_listen_address_needs_an_advertised_endpoint() {
    let parse = |extra: &[&str]| {
        let mut args = vec![
            "couchestor-node-agent",
            "serve",
            "--listen",
            "0.0.0.0:7400",
            "--node-name",
            NODE,
            "--agent-id",
            "a1",
            "--disk",
            "/d",
            "--index",
            "/i",
            "--tls-cert",
            "c",
            "--tls-key",
            "k",
            "--tls-ca",
            "ca",
            "--publish-storage-node",
        ];
        args.extend_from_slice(extra);
        let Command::Serve(serve) = Config::try_parse_from(args).expect("parse").command else {
            panic!("not serve");
        };
        serve
    };
    let serve = parse(&[]);
    assert!(serve.publish.publish_storage_node);
    assert_eq!(serve.publish.rescan_interval, Duration::from_secs(30));
    assert_eq!(serve.publish.heartbeat_interval, Duration::from_secs(60));
    let e = serve.publish.endpoint(serve.listen).expect_err("wildcard");
    assert!(e.contains("--advertise"), "{e}");
    let serve = parse(&["--advertise", "10.0.0.7:7400", "--heartbeat-interval", "2m"]);
    assert_eq!(
        serve.publish.endpoint(serve.listen).as_deref(),
        Ok(ENDPOINT)
    );
    assert_eq!(serve.publish.heartbeat_interval, Duration::from_secs(120));
    let bad = Config::try_parse_from(["couchestor-node-agent", "scan", "--smart-timeout", "soon"])
        .expect_err("bad duration");
    assert!(bad.to_string().contains("soon"), "{bad}");
}

// ---- the serve process ----

/// One HTTP request as the fake API server saw it.
#[derive(Debug)]
struct Seen {
    method: String,
    target: String,
    content_type: String,
    body: Value,
}

/// A minimal HTTP/1.1 API server on 127.0.0.1: every GET is 404 (so the agent creates
/// its StorageNode each time), POST is 201, PATCH is 200; each request is reported.
fn fake_api_server() -> (u16, std::sync::mpsc::Receiver<Seen>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().expect("clone");
                let mut reader = BufReader::new(stream);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut parts = line.split_whitespace();
                    let method = parts.next().unwrap_or_default().to_owned();
                    let target = parts.next().unwrap_or_default().to_owned();
                    let (mut length, mut content_type) = (0usize, String::new());
                    loop {
                        let mut header = String::new();
                        reader.read_line(&mut header).expect("header");
                        let header = header.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        if let Some((name, value)) = header.split_once(':') {
                            match name.to_ascii_lowercase().as_str() {
                                "content-length" => length = value.trim().parse().expect("len"),
                                "content-type" => content_type = value.trim().to_owned(),
                                _ => {}
                            }
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).expect("body");
                    let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let (code, answer) = match method.as_str() {
                        "GET" => (404, not_found()),
                        "POST" => (201, storage_node(1, false)),
                        _ => (200, storage_node(1, false)),
                    };
                    let answer = serde_json::to_vec(&answer).expect("json");
                    let head = format!(
                        "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                        answer.len()
                    );
                    if writer.write_all(head.as_bytes()).is_err()
                        || writer.write_all(&answer).is_err()
                    {
                        return;
                    }
                    let _ = tx.send(Seen {
                        method,
                        target,
                        content_type,
                        body,
                    });
                }
            });
        }
    });
    (port, rx)
}

/// `serve --publish-storage-node` as a process: the flag wiring, the kubeconfig client,
/// discovery on `--sysfs-root`, and the three API calls on the wire.
#[test]
fn the_serve_process_publishes_its_inventory_when_asked_and_fails_fast_when_it_cannot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = couchestor_node_agent::certs::Authority::generate("test-ca").expect("ca");
    let issued = ca
        .issue_agent("agent", &["127.0.0.1".to_owned()])
        .expect("cert");
    let tls =
        couchestor_node_agent::certs::write_files(&dir.path().join("tls"), &issued, &ca.cert_pem)
            .expect("certs");
    let sysfs = Sysfs::new();
    let (port, seen) = fake_api_server();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: t\n\
             clusters: [{{name: c, cluster: {{server: \"http://127.0.0.1:{port}\"}}}}]\n\
             users: [{{name: u, user: {{}}}}]\n\
             contexts: [{{name: t, context: {{cluster: c, user: u}}}}]\n"
        ),
    )
    .expect("kubeconfig");
    let serve = |listen: &str, kubeconfig: &Path, extra: &[&str]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_couchestor-node-agent"));
        command
            .args([
                "serve",
                "--listen",
                listen,
                "--node-name",
                NODE,
                "--agent-id",
                "a1",
            ])
            .arg("--disk")
            .arg(dir.path().join("disk"))
            .arg("--index")
            .arg(dir.path().join("index.redb"))
            .arg("--tls-cert")
            .arg(&tls.cert)
            .arg("--tls-key")
            .arg(&tls.key)
            .arg("--tls-ca")
            .arg(&tls.ca)
            .args([
                "--publish-storage-node",
                "--rescan-interval",
                "100ms",
                "--no-smart",
            ])
            .arg("--sysfs-root")
            .arg(sysfs.root())
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBERNETES_SERVICE_PORT")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        command
    };

    // A wildcard address without --advertise: refused at start.
    let out = serve("0.0.0.0:0", &kubeconfig, &[]).output().expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("give --advertise"), "{stderr}");
    // No Kubernetes configuration at all: refused at start, naming what is missing.
    let out = serve("127.0.0.1:0", &dir.path().join("no-such-kubeconfig"), &[])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("needs a Kubernetes API"), "{stderr}");

    let mut child = serve(
        "127.0.0.1:0",
        &kubeconfig,
        &["--advertise", "10.0.0.7:7400"],
    )
    .spawn()
    .expect("spawn serve");
    let next = || {
        seen.recv_timeout(Duration::from_secs(30))
            .expect("a request to the API server within 30 s")
    };
    let get = next();
    let post = next();
    let patch = next();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!((get.method.as_str(), get.target.as_str()), ("GET", OBJECT));
    assert_eq!(post.method, "POST");
    assert!(
        post.target
            .starts_with("/apis/couchestor.io/v1alpha1/storagenodes?"),
        "{}",
        post.target
    );
    assert_eq!(patch.method, "PATCH");
    assert!(
        patch.target.starts_with(&format!("{OBJECT}/status?"))
            && patch.target.contains("fieldManager=couchestor-node-agent"),
        "{}",
        patch.target
    );
    assert_eq!(patch.content_type, "application/apply-patch+yaml");
    assert_eq!(device_names(&patch.body["status"]), ["vda"]);
    assert_eq!(patch.body["status"]["agentEndpoint"], ENDPOINT);
}
