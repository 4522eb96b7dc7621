//! The sidecar between a real tonic client and an in-process backend CSI driver, each on
//! its own Unix socket.

// Test support code outside `#[test]` functions: a poisoned lock or a malformed fixture
// is a test failure, which is what unwrap gives.
#![allow(clippy::unwrap_used)]

mod sidecar {
    pub mod backend;
    pub mod fake;
    pub mod harness;
}

use std::{collections::HashMap, time::Duration};

use bytes::Bytes;
use couchestor_core::names;
use couchestor_csi_sidecar::cluster::Deleted;
use couchestor_proto::csi::v1::*;
use prost::{
    Message,
    encoding::{WireType, encode_key, encode_varint},
};
use sidecar::{backend::canned, fake::FakeCluster, harness::Harness};
use tonic::{Code, Request, Status};

const PVC: &str = "data-db-0";
const NS: &str = "shop";
const UUID: &str = "5b0e6a4c-3d2f-4c39-9a55-0b8d3f9c1e42";

fn pv() -> String {
    format!("pvc-{UUID}")
}

/// Parameters as the external-provisioner sends them for a class the webhook marked
/// tiered (`poolHasTopologyKey: couchestor.io/tier`), plus `extra`.
fn tiered(extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut p: HashMap<String, String> = [
        ("repl", "2"),
        ("protocol", "nvmf"),
        (names::MAYASTOR_POOL_HAS_TOPOLOGY_KEY, names::TIER),
        ("csi.storage.k8s.io/pvc/name", PVC),
        ("csi.storage.k8s.io/pvc/namespace", NS),
        ("csi.storage.k8s.io/pv/name", &pv()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (k, v) in extra {
        p.insert((*k).to_owned(), (*v).to_owned());
    }
    p
}

fn untiered() -> HashMap<String, String> {
    let mut p = tiered(&[]);
    p.remove(names::MAYASTOR_POOL_HAS_TOPOLOGY_KEY);
    p
}

fn create_request(parameters: HashMap<String, String>) -> CreateVolumeRequest {
    CreateVolumeRequest {
        name: pv(),
        capacity_range: Some(CapacityRange {
            required_bytes: 10 << 30,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![VolumeCapability {
            access_type: Some(volume_capability::AccessType::Mount(
                volume_capability::MountVolume {
                    fs_type: "ext4".into(),
                    mount_flags: vec!["noatime".into()],
                    volume_mount_group: String::new(),
                },
            )),
            access_mode: Some(volume_capability::AccessMode {
                mode: volume_capability::access_mode::Mode::SingleNodeWriter as i32,
            }),
        }],
        parameters,
        secrets: HashMap::from([("token".into(), "s3cr3t".into())]),
        volume_content_source: None,
        accessibility_requirements: Some(TopologyRequirement {
            requisite: vec![],
            preferred: vec![Topology {
                segments: HashMap::from([("kubernetes.io/hostname".into(), "node-a".into())]),
            }],
        }),
        mutable_parameters: HashMap::new(),
    }
}

fn publish_request() -> ControllerPublishVolumeRequest {
    ControllerPublishVolumeRequest {
        volume_id: UUID.into(),
        node_id: "node-a".into(),
        volume_capability: create_request(HashMap::new()).volume_capabilities.pop(),
        readonly: false,
        secrets: HashMap::new(),
        volume_context: tiered(&[]),
    }
}

/// `field` as an unknown varint field and `text` as an unknown length-delimited one.
fn unknown_fields(field: u32, text: &str) -> Vec<u8> {
    let mut b = Vec::new();
    encode_key(field, WireType::Varint, &mut b);
    encode_varint(4242, &mut b);
    encode_key(field + 1, WireType::LengthDelimited, &mut b);
    encode_varint(text.len() as u64, &mut b);
    b.extend_from_slice(text.as_bytes());
    b
}

/// Sends `request` through the sidecar with the generated client, checks the backend
/// decoded the same request from the same bytes, and returns the answer.
macro_rules! round_trip {
    ($h:expr, $client:expr, $method:ident, $name:literal, $request:expr) => {{
        let request = $request;
        let answer = $client
            .$method(Request::new(request.clone()))
            .await
            .unwrap_or_else(|s| panic!("{}: {s:?}", $name));
        let seen = $h.backend.state.decoded($name);
        assert_eq!(
            seen.last(),
            Some(&request),
            "{} decoded by the backend",
            $name
        );
        let raw = $h.backend.state.received_for($name);
        assert_eq!(
            raw.last().map(|r| r.message.clone()),
            Some(Bytes::from(request.encode_to_vec())),
            "{} bytes at the backend",
            $name
        );
        assert_eq!(
            answer
                .metadata()
                .get("x-backend-answered")
                .map(|v| v.to_str().unwrap()),
            Some($name),
            "{} response metadata",
            $name
        );
        answer.into_inner()
    }};
}

#[tokio::test]
async fn every_identity_and_controller_rpc_is_forwarded_with_request_and_response_intact() {
    let h = Harness::start().await;
    let mut identity = h.identity().await;
    let mut c = h.controller().await;

    let got = round_trip!(
        h,
        identity,
        get_plugin_info,
        "GetPluginInfo",
        GetPluginInfoRequest {}
    );
    assert_eq!(got, canned::plugin_info());
    let got = round_trip!(
        h,
        identity,
        get_plugin_capabilities,
        "GetPluginCapabilities",
        GetPluginCapabilitiesRequest {}
    );
    assert_eq!(got, canned::plugin_capabilities());
    let got = round_trip!(h, identity, probe, "Probe", ProbeRequest {});
    assert_eq!(got, canned::probe());

    // An untiered CreateVolume and a publish/delete of live volumes are plain forwards.
    let create = create_request(untiered());
    let got = round_trip!(h, c, create_volume, "CreateVolume", create.clone());
    assert_eq!(got, canned::create_volume(&create));
    let got = round_trip!(
        h,
        c,
        delete_volume,
        "DeleteVolume",
        DeleteVolumeRequest {
            volume_id: UUID.into(),
            secrets: HashMap::from([("k".into(), "v".into())]),
        }
    );
    assert_eq!(got, DeleteVolumeResponse {});
    let publish = publish_request();
    let got = round_trip!(
        h,
        c,
        controller_publish_volume,
        "ControllerPublishVolume",
        publish.clone()
    );
    assert_eq!(got, canned::controller_publish(&publish));
    let got = round_trip!(
        h,
        c,
        controller_unpublish_volume,
        "ControllerUnpublishVolume",
        ControllerUnpublishVolumeRequest {
            volume_id: UUID.into(),
            node_id: "node-a".into(),
            secrets: HashMap::new(),
        }
    );
    assert_eq!(got, ControllerUnpublishVolumeResponse {});
    let validate = ValidateVolumeCapabilitiesRequest {
        volume_id: UUID.into(),
        volume_context: tiered(&[]),
        volume_capabilities: create.volume_capabilities.clone(),
        parameters: untiered(),
        secrets: HashMap::new(),
        mutable_parameters: HashMap::from([("iops".into(), "100".into())]),
    };
    let got = round_trip!(
        h,
        c,
        validate_volume_capabilities,
        "ValidateVolumeCapabilities",
        validate.clone()
    );
    assert_eq!(got, canned::validate(&validate));
    let got = round_trip!(
        h,
        c,
        list_volumes,
        "ListVolumes",
        ListVolumesRequest {
            max_entries: 10,
            starting_token: "t-1".into(),
        }
    );
    assert_eq!(got, canned::list_volumes());
    let got = round_trip!(
        h,
        c,
        get_capacity,
        "GetCapacity",
        GetCapacityRequest {
            volume_capabilities: create.volume_capabilities.clone(),
            parameters: untiered(),
            accessible_topology: Some(Topology {
                segments: HashMap::from([("zone".into(), "a".into())]),
            }),
        }
    );
    assert_eq!(got, canned::capacity());
    let got = round_trip!(
        h,
        c,
        controller_get_capabilities,
        "ControllerGetCapabilities",
        ControllerGetCapabilitiesRequest {}
    );
    assert_eq!(got, canned::controller_capabilities());
    let got = round_trip!(
        h,
        c,
        create_snapshot,
        "CreateSnapshot",
        CreateSnapshotRequest {
            source_volume_id: UUID.into(),
            name: "snap-1".into(),
            secrets: HashMap::new(),
            parameters: HashMap::from([("quiesceFs".into(), "freeze".into())]),
        }
    );
    assert_eq!(got.snapshot, Some(canned::snapshot("snap-1")));
    let got = round_trip!(
        h,
        c,
        delete_snapshot,
        "DeleteSnapshot",
        DeleteSnapshotRequest {
            snapshot_id: "snap-1".into(),
            secrets: HashMap::new(),
        }
    );
    assert_eq!(got, DeleteSnapshotResponse {});
    let got = round_trip!(
        h,
        c,
        list_snapshots,
        "ListSnapshots",
        ListSnapshotsRequest {
            max_entries: 5,
            starting_token: String::new(),
            source_volume_id: UUID.into(),
            snapshot_id: String::new(),
            secrets: HashMap::new(),
        }
    );
    assert_eq!(got, canned::list_snapshots());
    let got = round_trip!(
        h,
        c,
        get_snapshot,
        "GetSnapshot",
        GetSnapshotRequest {
            snapshot_id: "snap-9".into(),
            secrets: HashMap::new(),
        }
    );
    assert_eq!(got.snapshot, Some(canned::snapshot("snap-9")));
    let expand = ControllerExpandVolumeRequest {
        volume_id: UUID.into(),
        capacity_range: Some(CapacityRange {
            required_bytes: 20 << 30,
            limit_bytes: 0,
        }),
        secrets: HashMap::new(),
        volume_capability: create.volume_capabilities.first().cloned(),
    };
    let got = round_trip!(
        h,
        c,
        controller_expand_volume,
        "ControllerExpandVolume",
        expand.clone()
    );
    assert_eq!(got, canned::expand(&expand));
    let get = ControllerGetVolumeRequest {
        volume_id: UUID.into(),
    };
    let got = round_trip!(
        h,
        c,
        controller_get_volume,
        "ControllerGetVolume",
        get.clone()
    );
    assert_eq!(got, canned::get_volume(&get));
    let got = round_trip!(
        h,
        c,
        controller_modify_volume,
        "ControllerModifyVolume",
        ControllerModifyVolumeRequest {
            volume_id: UUID.into(),
            secrets: HashMap::new(),
            mutable_parameters: HashMap::from([("iops".into(), "500".into())]),
        }
    );
    assert_eq!(got, ControllerModifyVolumeResponse {});

    // 18 calls, each reaching the backend exactly once.
    assert_eq!(h.backend.state.received().len(), 18);
    assert!(h.cluster.world.lock().unwrap().pvc_reads.is_empty());
    h.stop().await;
}

#[tokio::test]
async fn request_metadata_reaches_the_backend_and_response_metadata_the_caller() {
    let h = Harness::start().await;
    let mut c = h.controller().await;
    let mut request = Request::new(ControllerGetCapabilitiesRequest {});
    request
        .metadata_mut()
        .insert("x-request-id", "abc-123".parse().unwrap());
    request.metadata_mut().insert_bin(
        "trace-bin",
        tonic::metadata::MetadataValue::from_bytes(&[0, 1, 2, 255]),
    );
    let answer = c
        .controller_get_capabilities(request)
        .await
        .expect("answer");
    assert_eq!(
        answer.metadata().get("x-backend-answered").unwrap(),
        "ControllerGetCapabilities"
    );
    let seen = h.backend.state.received_for("ControllerGetCapabilities");
    let headers = &seen[0].headers;
    assert_eq!(headers.get("x-request-id").unwrap(), "abc-123");
    assert_eq!(headers.get("trace-bin").unwrap(), "AAEC/w");
    assert!(
        headers
            .get("user-agent")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("tonic"),
        "{headers:?}"
    );
    h.stop().await;
}

#[tokio::test]
async fn unknown_fields_in_a_forwarded_request_reach_the_backend_byte_for_byte() {
    let h = Harness::start().await;
    let mut bytes = ListVolumesRequest {
        max_entries: 3,
        starting_token: "t".into(),
    }
    .encode_to_vec();
    bytes.extend(unknown_fields(99, "from a newer CSI"));
    // Unknown fields before known ones too: order must be kept.
    let mut sent = unknown_fields(50, "first");
    sent.extend(bytes);
    let answer = h
        .raw("/csi.v1.Controller/ListVolumes", Bytes::from(sent.clone()))
        .await
        .expect("answer");
    assert_eq!(
        ListVolumesResponse::decode(answer).unwrap(),
        canned::list_volumes()
    );
    let seen = h.backend.state.received_for("ListVolumes");
    assert_eq!(seen[0].message, Bytes::from(sent));
    h.stop().await;
}

#[tokio::test]
async fn unknown_fields_in_an_intercepted_create_volume_reach_the_backend_intact() {
    let cluster = FakeCluster::default().with_pvc(NS, PVC, &[(names::TIER, "warm")]);
    let h = Harness::start_with(cluster).await;
    // A class with a default tier whose poolHasTopologyKey lists another key: the
    // sidecar must add the tier key to it.
    let request = create_request(tiered(&[
        (names::MAYASTOR_POOL_HAS_TOPOLOGY_KEY, "zone"),
        (names::TIER, "cold"),
    ]));
    let mut sent = request.encode_to_vec();
    sent.extend(unknown_fields(40, "future field"));
    let answer = h
        .raw("/csi.v1.Controller/CreateVolume", Bytes::from(sent.clone()))
        .await
        .expect("answer");
    let seen = h.backend.state.received_for("CreateVolume");
    let received = &seen[0].message;
    assert!(
        received.starts_with(&sent),
        "the original bytes, unknown fields included, come first and unchanged"
    );
    let appended = CreateVolumeRequest::decode(&received[sent.len()..]).expect("suffix decodes");
    assert_eq!(
        appended,
        CreateVolumeRequest {
            parameters: HashMap::from([(
                names::MAYASTOR_POOL_HAS_TOPOLOGY_KEY.to_owned(),
                format!("zone\n{}", names::TIER)
            )]),
            ..CreateVolumeRequest::default()
        },
        "only the changed parameter is appended"
    );
    let decoded = h
        .backend
        .state
        .decoded::<CreateVolumeRequest>("CreateVolume");
    assert_eq!(
        decoded[0].parameters[names::MAYASTOR_POOL_HAS_TOPOLOGY_KEY],
        format!("zone\n{}", names::TIER)
    );
    let answer = CreateVolumeResponse::decode(answer).unwrap();
    assert_eq!(answer.volume.unwrap().volume_context[names::TIER], "warm");
    h.stop().await;
}

async fn create_through(
    h: &Harness,
    parameters: HashMap<String, String>,
) -> Result<Volume, Status> {
    send_create(h, &create_request(parameters)).await
}

/// Sends `request` (whose encoding a test may compare: a clone encodes its maps in the
/// same order, a rebuilt request may not).
async fn send_create(h: &Harness, request: &CreateVolumeRequest) -> Result<Volume, Status> {
    let mut c = h.controller().await;
    c.create_volume(request.clone())
        .await
        .map(|r| r.into_inner().volume.expect("volume"))
}

#[tokio::test]
async fn the_pvc_annotation_sets_the_tier_over_the_storage_class_parameter() {
    let cluster = FakeCluster::default().with_pvc(NS, PVC, &[(names::TIER, "cold")]);
    let h = Harness::start_with(cluster).await;
    let request = create_request(tiered(&[(names::TIER, "hot")]));
    let volume = send_create(&h, &request).await.expect("created");
    assert_eq!(volume.volume_context[names::TIER], "cold");
    assert_eq!(volume.volume_id, UUID);
    assert_eq!(volume.capacity_bytes, 10 << 30);
    assert_eq!(
        volume.volume_context["repl"], "2",
        "the backend's context is kept"
    );
    assert_eq!(
        h.cluster.world.lock().unwrap().pvc_reads,
        vec![format!("{NS}/{PVC}")]
    );
    let sent = h
        .backend
        .state
        .decoded::<CreateVolumeRequest>("CreateVolume");
    assert_eq!(
        sent[0].parameters[names::MAYASTOR_POOL_HAS_TOPOLOGY_KEY],
        names::TIER
    );
    // Already listed: nothing appended, the backend got the caller's bytes.
    assert_eq!(
        h.backend.state.received_for("CreateVolume")[0].message,
        Bytes::from(request.encode_to_vec())
    );
    h.stop().await;
}

#[tokio::test]
async fn the_storage_class_parameter_sets_the_tier_when_the_pvc_has_no_annotation() {
    let cluster = FakeCluster::default().with_pvc(NS, PVC, &[("other", "x")]);
    let h = Harness::start_with(cluster).await;
    // A class with only the tier parameter: the sidecar adds poolHasTopologyKey.
    let mut parameters = tiered(&[(names::TIER, "warm")]);
    parameters.remove(names::MAYASTOR_POOL_HAS_TOPOLOGY_KEY);
    let volume = create_through(&h, parameters).await.expect("created");
    assert_eq!(volume.volume_context[names::TIER], "warm");
    let sent = h
        .backend
        .state
        .decoded::<CreateVolumeRequest>("CreateVolume");
    assert_eq!(
        sent[0].parameters[names::MAYASTOR_POOL_HAS_TOPOLOGY_KEY],
        names::TIER
    );
    h.stop().await;
}

#[tokio::test]
async fn a_tiered_class_without_any_tier_starts_volumes_hot() {
    let cluster = FakeCluster::default().with_pvc(NS, PVC, &[]);
    let h = Harness::start_with(cluster).await;
    let volume = create_through(&h, tiered(&[])).await.expect("created");
    assert_eq!(volume.volume_context[names::TIER], "hot");
    h.stop().await;
}

#[tokio::test]
async fn a_volume_of_an_untiered_class_is_forwarded_untouched_without_reading_its_pvc() {
    let cluster = FakeCluster::default().with_pvc(NS, PVC, &[(names::TIER, "cold")]);
    let h = Harness::start_with(cluster).await;
    let request = create_request(untiered());
    let volume = send_create(&h, &request).await.expect("created");
    assert!(!volume.volume_context.contains_key(names::TIER));
    assert_eq!(
        h.backend.state.received_for("CreateVolume")[0].message,
        Bytes::from(request.encode_to_vec())
    );
    assert!(h.cluster.world.lock().unwrap().pvc_reads.is_empty());
    h.stop().await;
}

#[tokio::test]
async fn an_invalid_tier_is_invalid_argument_and_never_reaches_the_backend() {
    let cluster = FakeCluster::default().with_pvc(NS, PVC, &[(names::TIER, "lukewarm")]);
    let h = Harness::start_with(cluster).await;
    let e = create_through(&h, tiered(&[])).await.expect_err("refused");
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("\"lukewarm\""), "{}", e.message());
    assert!(
        e.message().contains("PersistentVolumeClaim annotation"),
        "{}",
        e.message()
    );
    let e = create_through(&h, tiered(&[(names::TIER, "HOT")]))
        .await
        .expect_err("refused");
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("StorageClass parameter"),
        "{}",
        e.message()
    );
    assert!(
        e.message().contains("use hot, warm or cold"),
        "{}",
        e.message()
    );
    assert!(h.backend.state.received().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn a_pvc_that_cannot_be_read_is_unavailable_and_never_reaches_the_backend() {
    let h = Harness::start().await;
    // No such PVC.
    let e = create_through(&h, tiered(&[])).await.expect_err("refused");
    assert_eq!(e.code(), Code::Unavailable);
    assert!(
        e.message().contains(&format!("{NS}/{PVC}")),
        "{}",
        e.message()
    );
    assert!(e.message().contains("not found"), "{}", e.message());
    // API server down.
    h.cluster.unreachable("connection refused (10.96.0.1:443)");
    let e = create_through(&h, tiered(&[(names::TIER, "hot")]))
        .await
        .expect_err("refused");
    assert_eq!(e.code(), Code::Unavailable);
    assert!(
        e.message().contains("connection refused"),
        "{}",
        e.message()
    );
    assert!(h.backend.state.received().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn a_tiered_class_that_pins_a_topology_is_invalid_argument() {
    let cluster = FakeCluster::default().with_pvc(NS, PVC, &[]);
    let h = Harness::start_with(cluster).await;
    let e = create_through(
        &h,
        tiered(&[(names::MAYASTOR_POOL_AFFINITY_TOPOLOGY_LABEL, "tier: hot")]),
    )
    .await
    .expect_err("refused");
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("poolAffinityTopologyLabel"),
        "{}",
        e.message()
    );
    assert!(h.backend.state.received().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn backend_errors_reach_the_caller_with_code_message_and_metadata() {
    let h = Harness::start().await;
    let mut c = h.controller().await;
    for (code, message) in [
        (
            Code::AlreadyExists,
            "volume pvc-x exists with a different size",
        ),
        (Code::ResourceExhausted, "no pool has 10 GiB free"),
        (Code::Aborted, "an operation is pending for volume x"),
        (Code::NotFound, "volume x not found"),
        (Code::Internal, "io-engine said: ENOSPC é ✓"),
    ] {
        let mut status = Status::new(code, message);
        status
            .metadata_mut()
            .insert("x-mayastor-reason", "testing".parse().unwrap());
        h.backend
            .state
            .fail
            .lock()
            .unwrap()
            .insert("CreateVolume".into(), status);
        let e = c
            .create_volume(create_request(untiered()))
            .await
            .expect_err("the backend failed it");
        assert_eq!(e.code(), code);
        assert_eq!(e.message(), message);
        assert_eq!(e.metadata().get("x-mayastor-reason").unwrap(), "testing");
    }
    // Intercepted or not, the backend's answer wins once forwarded.
    h.backend.state.fail.lock().unwrap().insert(
        "ControllerPublishVolume".into(),
        Status::failed_precondition("node node-a is not a Mayastor node"),
    );
    let e = c
        .controller_publish_volume(publish_request())
        .await
        .expect_err("failed");
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert_eq!(e.message(), "node node-a is not a Mayastor node");
    h.stop().await;
}

#[tokio::test]
async fn the_callers_deadline_reaches_the_backend() {
    let h = Harness::start().await;
    let mut c = h.controller().await;
    let mut request = Request::new(ListVolumesRequest::default());
    request.set_timeout(Duration::from_secs(30));
    c.list_volumes(request).await.expect("answer");
    let seen = h.backend.state.received_for("ListVolumes");
    let header = seen[0]
        .headers
        .get("grpc-timeout")
        .expect("a deadline")
        .to_str()
        .unwrap()
        .to_owned();
    let left = couchestor_csi_sidecar::proxy::parse_grpc_timeout(&header).expect("valid");
    assert!(
        // Forwarding takes milliseconds; the slack is for a loaded CI machine.
        left <= Duration::from_secs(30) && left > Duration::from_secs(20),
        "{header}"
    );
    // Without a deadline, none is invented.
    c.list_volumes(ListVolumesRequest::default())
        .await
        .expect("answer");
    let seen = h.backend.state.received_for("ListVolumes");
    assert!(seen[1].headers.get("grpc-timeout").is_none());
    h.stop().await;
}

#[tokio::test]
async fn a_backend_slower_than_the_deadline_gives_deadline_exceeded_on_time() {
    let h = Harness::start().await;
    *h.backend.state.delay.lock().unwrap() = Some(Duration::from_secs(5));
    let h_socket = h.socket.clone();
    let _ = h.channel().await; // wait until serving
    let message = Bytes::from(create_request(untiered()).encode_to_vec());
    let started = std::time::Instant::now();
    let (status, message) = sidecar::harness::bare_call(
        &h_socket,
        "/csi.v1.Controller/CreateVolume",
        message,
        "300m",
    )
    .await;
    let took = started.elapsed();
    assert_eq!(
        status,
        (Code::DeadlineExceeded as i32).to_string(),
        "{message}"
    );
    assert!(message.contains("deadline"), "{message}");
    assert!(
        // Cut short well before the backend's 5 s (slack for a loaded machine).
        took >= Duration::from_millis(290) && took < Duration::from_secs(4),
        "{took:?}"
    );
    let seen = h.backend.state.received_for("CreateVolume");
    let left = couchestor_csi_sidecar::proxy::parse_grpc_timeout(
        seen[0]
            .headers
            .get("grpc-timeout")
            .unwrap()
            .to_str()
            .unwrap(),
    )
    .unwrap();
    assert!(left <= Duration::from_millis(300), "{left:?}");
    // A tonic client gives up on its own at the deadline; either way it is not a success.
    let mut c = h.controller().await;
    let mut request = Request::new(ControllerGetCapabilitiesRequest {});
    request.set_timeout(Duration::from_millis(200));
    let e = c
        .controller_get_capabilities(request)
        .await
        .expect_err("too slow");
    assert!(
        matches!(e.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{e:?}"
    );
    *h.backend.state.delay.lock().unwrap() = None;
    h.stop().await;
}

#[tokio::test]
async fn publishing_an_archived_volume_requests_rehydration_and_is_retryable_until_it_is_back() {
    let cluster = FakeCluster::default().with_archived(&pv(), "ecv-db-0");
    let h = Harness::start_with(cluster).await;
    let mut c = h.controller().await;
    for _ in 0..2 {
        let e = c
            .controller_publish_volume(publish_request())
            .await
            .expect_err("archived");
        assert_eq!(e.code(), Code::Unavailable);
        assert!(
            e.message().contains("archived as EcVolume ecv-db-0"),
            "{}",
            e.message()
        );
        assert!(
            e.message().contains("rehydration has been requested"),
            "{}",
            e.message()
        );
    }
    {
        let world = h.cluster.world.lock().unwrap();
        assert_eq!(
            world.rehydration_requests,
            vec![("ecv-db-0".into(), "node-a".into()); 2]
        );
        assert_eq!(
            world.ec_volumes["ecv-db-0"][names::REHYDRATE_REQUESTED],
            "request-1",
            "the first request is kept"
        );
    }
    assert!(
        h.backend
            .state
            .received_for("ControllerPublishVolume")
            .is_empty()
    );
    // The operator brings the volume back and removes the marker: publish goes through.
    h.cluster.world.lock().unwrap().pvs.remove(&pv());
    let answer = c
        .controller_publish_volume(publish_request())
        .await
        .expect("published")
        .into_inner();
    assert_eq!(answer, canned::controller_publish(&publish_request()));
    h.stop().await;
}

#[tokio::test]
async fn a_publish_whose_archive_state_cannot_be_read_is_unavailable() {
    let h = Harness::start().await;
    h.cluster.unreachable("apiserver timeout");
    let mut c = h.controller().await;
    let e = c
        .controller_publish_volume(publish_request())
        .await
        .expect_err("unknown");
    assert_eq!(e.code(), Code::Unavailable);
    assert!(e.message().contains("apiserver timeout"), "{}", e.message());
    assert!(h.backend.state.received().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn deleting_an_archived_volume_deletes_its_ec_volume_then_forwards_and_is_idempotent() {
    let cluster = FakeCluster::default().with_archived(&pv(), "ecv-db-0");
    let h = Harness::start_with(cluster).await;
    let mut c = h.controller().await;
    let request = DeleteVolumeRequest {
        volume_id: UUID.into(),
        secrets: HashMap::new(),
    };
    for _ in 0..2 {
        c.delete_volume(request.clone()).await.expect("deleted");
    }
    {
        let world = h.cluster.world.lock().unwrap();
        assert_eq!(
            world.deletions,
            vec![
                ("ecv-db-0".to_owned(), Deleted::Now),
                ("ecv-db-0".to_owned(), Deleted::AlreadyGone)
            ]
        );
        assert!(world.ec_volumes.is_empty());
    }
    assert_eq!(
        h.backend
            .state
            .decoded::<DeleteVolumeRequest>("DeleteVolume"),
        vec![request.clone(), request]
    );
    h.stop().await;
}

#[tokio::test]
async fn a_failed_archive_deletion_is_unavailable_and_the_volume_is_not_deleted() {
    let cluster = FakeCluster::default().with_archived(&pv(), "ecv-db-0");
    let h = Harness::start_with(cluster).await;
    h.cluster.unreachable("etcdserver: request timed out");
    let mut c = h.controller().await;
    let e = c
        .delete_volume(DeleteVolumeRequest {
            volume_id: UUID.into(),
            secrets: HashMap::new(),
        })
        .await
        .expect_err("failed");
    assert_eq!(e.code(), Code::Unavailable);
    assert!(e.message().contains("request timed out"), "{}", e.message());
    assert!(h.backend.state.received().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn malformed_request_bytes_are_invalid_argument_when_intercepted_and_forwarded_otherwise() {
    let h = Harness::start().await;
    // A length-delimited field whose length runs past the end.
    let garbage = Bytes::from_static(&[0x0a, 0xff, 0x01, b'x']);
    for path in [
        "/csi.v1.Controller/CreateVolume",
        "/csi.v1.Controller/ControllerPublishVolume",
        "/csi.v1.Controller/DeleteVolume",
    ] {
        let e = h.raw(path, garbage.clone()).await.expect_err("malformed");
        assert_eq!(e.code(), Code::InvalidArgument, "{path}");
        assert!(
            e.message().contains("does not decode"),
            "{path}: {}",
            e.message()
        );
    }
    assert!(h.backend.state.received().is_empty());
    // Not ours to judge: forwarded as is, and the backend's verdict comes back.
    let e = h
        .raw("/csi.v1.Controller/ListVolumes", garbage.clone())
        .await
        .expect_err("the backend refuses it");
    assert_eq!(
        h.backend.state.received_for("ListVolumes")[0].message,
        garbage
    );
    assert_ne!(e.code(), Code::Ok);
    // And the sidecar still serves.
    let mut c = h.controller().await;
    c.controller_get_capabilities(ControllerGetCapabilitiesRequest {})
        .await
        .expect("still serving");
    h.stop().await;
}

#[tokio::test]
async fn a_create_volume_answer_that_does_not_decode_is_internal() {
    let cluster = FakeCluster::default().with_pvc(NS, PVC, &[]);
    let h = Harness::start_with(cluster).await;
    h.backend.state.raw_reply.lock().unwrap().insert(
        "CreateVolume".into(),
        Bytes::from_static(&[0x0a, 0x7f, 0x00]),
    );
    let e = create_through(&h, tiered(&[]))
        .await
        .expect_err("bad answer");
    assert_eq!(e.code(), Code::Internal);
    assert!(
        e.message().contains("CreateVolumeResponse"),
        "{}",
        e.message()
    );
    h.stop().await;
}

#[tokio::test]
async fn calls_to_other_services_are_unimplemented() {
    let h = Harness::start().await;
    let e = h
        .raw("/csi.v1.Node/NodeGetInfo", Bytes::new())
        .await
        .expect_err("not served");
    assert_eq!(e.code(), Code::Unimplemented);
    assert!(h.backend.state.received().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn an_unreachable_backend_is_unavailable() {
    let h = Harness::start().await;
    let Harness { backend, .. } = &h;
    std::fs::remove_file(&backend.socket).expect("remove backend socket");
    let mut c = h.controller().await;
    let e = c
        .controller_get_capabilities(ControllerGetCapabilitiesRequest {})
        .await
        .expect_err("no backend");
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    h.stop().await;
}

#[tokio::test]
async fn a_stale_socket_file_is_replaced_at_start_and_removed_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let backend = sidecar::backend::Backend::start(&dir.path().join("backend.sock")).await;
    let socket = dir.path().join("csi.sock");
    // What a killed process leaves behind: a socket file nobody listens on.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(couchestor_csi_sidecar::run(
        sidecar::harness::config(&socket, &backend.socket),
        FakeCluster::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let mut identity =
        identity_client::IdentityClient::new(sidecar::harness::connect(&socket).await);
    identity
        .probe(ProbeRequest {})
        .await
        .expect("serving on the old path");
    stop.send(()).unwrap();
    task.await.unwrap().expect("clean shutdown");
    assert!(!socket.exists());
    // A regular file is not ours to delete.
    std::fs::write(&socket, b"not a socket").unwrap();
    let e = couchestor_csi_sidecar::run(
        sidecar::harness::config(&socket, &backend.socket),
        FakeCluster::default(),
        async {},
    )
    .await
    .expect_err("refused");
    assert!(e.to_string().contains("is not a socket"), "{e}");
    backend.stop().await;
}
