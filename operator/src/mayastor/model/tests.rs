//! The types against JSON shaped like the real API's answers (written from the v0
//! OpenAPI document and the upstream examples: hyphenated replica-topology keys,
//! `rebuildProgress`, `deviceUri`, nulls, fields of newer releases).

use super::*;

const VOLUME: &str = include_str!("../../../tests/fixtures/mayastor/volume_rebuilding.json");
const POOLS: &str = include_str!("../../../tests/fixtures/mayastor/pools.json");
const NODES: &str = include_str!("../../../tests/fixtures/mayastor/nodes.json");
const ERROR: &str = include_str!("../../../tests/fixtures/mayastor/error_resource_exhausted.json");

#[test]
fn a_rebuilding_volume_reads_with_its_topology_children_and_progress() {
    let v: Volume = serde_json::from_str(VOLUME).expect("parses");
    assert_eq!(v.uuid(), "9f2c1e3a-52f4-4c6a-9d7e-2f9a1b0c4d11");
    assert_eq!(v.pv_name(), "pvc-9f2c1e3a-52f4-4c6a-9d7e-2f9a1b0c4d11");
    assert_eq!(v.spec.num_replicas, 3);
    assert!(v.spec.labels.is_empty(), "labels: null is empty");
    assert_eq!(
        v.spec.operation.as_ref().map(|o| o.operation.as_str()),
        Some("SetReplica")
    );
    assert_eq!(
        v.pool_inclusion(),
        Labels::from([
            (
                "openebs.io/created-by".to_owned(),
                "operator-diskpool".to_owned()
            ),
            ("tier".to_owned(), String::new()),
        ])
    );
    assert_eq!(v.state.status, VolumeStatus::Degraded);
    let nexus = v.state.target.as_ref().expect("published");
    assert_eq!(nexus.node, "io-engine-1");
    assert_eq!(nexus.rebuilds, 1);
    assert_eq!(nexus.children.len(), 3);
    assert_eq!(nexus.children[0].rebuild_progress, None, "null progress");
    assert_eq!(nexus.children[2].state, ChildState::Degraded);
    assert_eq!(nexus.children[2].rebuild_progress, Some(42));
    assert_eq!(
        nexus.children[1].replica_uuid(),
        Some("7c1d2e3f-0a1b-4c2d-8e3f-4a5b6c7d8e02")
    );
    let rebuilding = &v.state.replica_topology["e4f5a6b7-c8d9-4e0f-9a1b-2c3d4e5f6a03"];
    assert_eq!(rebuilding.pool.as_deref(), Some("pool-hdd-3"));
    assert_eq!(rebuilding.child_status, Some(ChildState::Degraded));
    assert_eq!(rebuilding.rebuild_progress, Some(42));
    assert!(rebuilding.is_rebuilding() && !rebuilding.is_healthy());
    assert_eq!(v.healthy_replicas().count(), 2);
    assert!(!v.is_settled(), "an operation and a rebuild are in flight");
}

#[test]
fn pools_read_with_labels_cordon_capacity_and_without_state() {
    let pools: Vec<Pool> = serde_json::from_str(POOLS).expect("parses");
    assert_eq!(pools.len(), 3);
    let nvme = &pools[0];
    assert_eq!(nvme.labels()["tier"], "hot");
    assert_eq!(nvme.node(), "io-engine-1");
    assert_eq!(nvme.status(), PoolStatus::Online);
    assert_eq!(nvme.free(), 1000204886016 - 200040977203);
    assert!(!nvme.is_cordoned_for_replicas());
    let hdd = &pools[1];
    assert!(hdd.is_cordoned_for_replicas());
    assert_eq!(hdd.status(), PoolStatus::Suspected, "newer status value");
    let lost = &pools[2];
    assert!(lost.labels().is_empty());
    assert_eq!(lost.status(), PoolStatus::Unknown, "no state: unknown");
    assert_eq!(lost.node(), "io-engine-4", "node from the spec");
    assert_eq!(lost.free(), 0);
}

#[test]
fn nodes_read_with_cordon_labels_from_every_cordon_state() {
    let nodes: Vec<Node> = serde_json::from_str(NODES).expect("parses");
    assert!(nodes[0].cordon_labels().is_empty());
    assert_eq!(nodes[0].status(), NodeStatus::Online);
    assert_eq!(nodes[1].cordon_labels(), ["upgrade", "couchestor"]);
    assert_eq!(nodes[2].cordon_labels(), ["maint"], "draining is cordoned");
    assert_eq!(nodes[2].status(), NodeStatus::Offline);
    assert_eq!(
        nodes[3].status(),
        NodeStatus::Unknown,
        "a node with only an id"
    );
}

#[test]
fn unknown_enum_values_and_nulls_become_defaults_instead_of_errors() {
    let v: Volume = serde_json::from_str(
        r#"{"spec": {"uuid": "u", "num_replicas": null, "thin": null},
            "state": {"status": "Rebalancing", "target": null,
                      "replica_topology": {"r": {"state": "Evacuating", "child-status": "Closed"}}}}"#,
    )
    .expect("parses");
    assert_eq!(v.spec.num_replicas, 0);
    assert_eq!(v.state.status, VolumeStatus::Unknown);
    assert_eq!(v.state.replica_topology["r"].state, ReplicaState::Unknown);
    assert_eq!(
        v.state.replica_topology["r"].child_status,
        Some(ChildState::Unknown)
    );
    assert!(!v.state.replica_topology["r"].is_healthy());
    let empty: Volume = serde_json::from_str("{}").expect("parses");
    assert_eq!(empty, Volume::default());
}

#[test]
fn the_planner_view_has_the_labels_of_pools_with_healthy_replicas_only() {
    let v: Volume = serde_json::from_str(VOLUME).expect("parses");
    let pools: Vec<Pool> = serde_json::from_str(POOLS).expect("parses");
    let observed = v.observed(&pools, couchestor_core::tier::Load::Unknown);
    assert_eq!(observed.name, v.pv_name());
    // pool-nvme-1 is known; pool-nvme-2 is not in the list (empty labels: unplaced);
    // the rebuilding replica on pool-hdd-3 is not counted.
    assert_eq!(observed.replica_pools.len(), 2);
    assert!(
        observed
            .replica_pools
            .iter()
            .any(|l| l.get("tier").map(String::as_str) == Some("hot"))
    );
    assert!(observed.replica_pools.iter().any(|l| l.is_empty()));
    assert!(
        !observed
            .replica_pools
            .iter()
            .any(|l| l.get("tier").map(String::as_str) == Some("cold"))
    );
}

#[test]
fn a_rest_error_body_reads_kind_message_and_details() {
    let e: RestJsonError = serde_json::from_str(ERROR).expect("parses");
    assert_eq!(e.kind, "ResourceExhausted");
    assert!(e.details.contains("0/1"));
    assert!(!e.message.is_empty());
}

#[test]
fn a_rebuild_history_reads_with_the_specs_key_and_its_examples_key() {
    let h: RebuildHistory = serde_json::from_str(
        r#"{"targetUuid": "61d6afc8-15c6-4127-b0aa-15a570198880", "records": [
            {"childUri": "nvmf://10.1.0.5:8420/nqn.2019-05.io.openebs:r1?uuid=r1", "srcUri": "bdev:///r0?uuid=r0",
             "rebuildJobState": "Completed", "blocksTotal": 13452, "blocksRecovered": 13452,
             "blocksTransferred": 12343, "blocksRemaining": 0, "blockSize": 512, "isPartial": true,
             "startTime": "2023-06-20T07:25:25.974218428Z", "endTime": "2023-06-20T07:25:25.975338717Z"},
            {"childUri": "nvmf://x?uuid=r2", "srcUri": "bdev:///r0?uuid=r0", "state": "Failed"}]}"#,
    )
    .expect("parses");
    assert_eq!(h.records.len(), 2);
    assert!(h.records[0].completed() && h.records[0].is_partial);
    assert_eq!(h.records[0].replica_uuid(), Some("r1"));
    assert_eq!(h.records[0].blocks_total, 13452);
    assert_eq!(
        h.records[1].job_state, "Failed",
        "the example's `state` key"
    );
    assert!(!h.records[1].completed());
}
