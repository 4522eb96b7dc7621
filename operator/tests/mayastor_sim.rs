//! The simulator's Mayastor semantics, driven through the real client over HTTP on
//! 127.0.0.1: where `replica_count` +1 may place a replica, how it rebuilds over
//! virtual time, which replica −1 removes (documented order, 2024 order, adversarial),
//! failed rebuilds and faulted pools.

#[path = "support/mayastor.rs"]
mod support;

use std::{collections::BTreeMap, time::Duration};

use couchestor_operator::mayastor::{
    ChildState, PoolCordon, ReplicaState, VolumeStatus,
    sim::{Behaviour, VictimPolicy, VolumeSetup},
};
use support::*;

#[tokio::test]
async fn adding_a_replica_places_it_only_on_a_pool_with_the_volumes_inclusion_labels() {
    let mut cluster = two_tier(Behaviour::default());
    // The emptiest pool of all, but without `tier`: it fails the inclusion labels.
    cluster
        .add_node("n5")
        .add_pool("n5-plain", "n5", 1000 * GIB, &[CREATED_BY]);
    let (sim, client) = start(cluster).await;
    // Make n4-cold the emptier of the two cold pools.
    sim.with(|c| {
        c.add_volume(VolumeSetup {
            uuid: "other".to_owned(),
            size: 5 * GIB,
            thin: false,
            inclusion: BTreeMap::new(),
            target: None,
            pools: vec!["n3-cold".to_owned()],
        })
        .map(|_| ())
    })
    .expect("other volume");

    let v = client.set_replica_count(VOL, 3).await.expect("+1");
    assert_eq!(v.spec.num_replicas, 3);
    assert_eq!(pools_of(&v), ["n1-hot", "n2-hot", "n4-cold"]);
    assert_eq!(
        sim.with(|c| c.replica_pools(VOL)),
        ["n1-hot", "n2-hot", "n4-cold"]
    );
    let put = sim.mutations();
    assert_eq!(put.len(), 1);
    assert_eq!(put[0].method, "PUT");
    assert_eq!(put[0].path, format!("/v0/volumes/{VOL}/replica_count/3"));
    assert_eq!(put[0].status, 200);
}

#[tokio::test]
async fn cordoned_pools_cordoned_nodes_full_pools_and_used_nodes_take_no_new_replica() {
    let mut cluster = two_tier(Behaviour::default());
    // n1 already holds a replica: its empty cold pool is out.
    cluster.add_pool("n1-cold", "n1", 1000 * GIB, &[CREATED_BY, ("tier", "cold")]);
    // Too small for a 10 GiB replica.
    cluster
        .add_node("n5")
        .add_pool("n5-tiny", "n5", 5 * GIB, &[CREATED_BY, ("tier", "cold")]);
    let (sim, client) = start(cluster).await;
    client
        .cordon_pool("n3-cold", PoolCordon::REPLICAS)
        .await
        .expect("cordon pool");
    client
        .cordon_node("n4", "couchestor")
        .await
        .expect("cordon node");

    let err = client
        .set_replica_count(VOL, 3)
        .await
        .expect_err("no pool is eligible");
    assert_eq!(err.status(), Some(507));
    assert_eq!(err.kind(), Some("ResourceExhausted"));
    assert!(
        err.to_string().contains("Not enough suitable pools"),
        "{err}"
    );
    assert_eq!(
        sim.with(|c| c.num_replicas(VOL)),
        Some(2),
        "nothing changed"
    );

    // Lifting the node cordon makes exactly n4-cold eligible.
    client
        .uncordon_node("n4", "couchestor")
        .await
        .expect("uncordon");
    let v = client.set_replica_count(VOL, 3).await.expect("+1");
    assert_eq!(pools_of(&v), ["n1-hot", "n2-hot", "n4-cold"]);
}

#[tokio::test]
async fn a_new_replica_rebuilds_over_virtual_time_before_it_counts_as_healthy() {
    let (sim, client) = start(two_tier(Behaviour::default())).await;
    let v = client.set_replica_count(VOL, 3).await.expect("+1");
    let (new_id, new) = v
        .state
        .replica_topology
        .iter()
        .find(|(_, r)| r.pool.as_deref() == Some("n3-cold"))
        .expect("new replica on n3-cold");
    assert_eq!(new.child_status, Some(ChildState::Degraded));
    assert_eq!(new.rebuild_progress, Some(0));
    assert_eq!(v.state.status, VolumeStatus::Degraded);
    assert!(!v.is_settled());
    let pools = client.pools().await.expect("pools");
    assert_eq!(
        v.observed(&pools, couchestor_core::tier::Load::Unknown)
            .replica_pools
            .len(),
        2
    );

    sim.advance(Duration::from_secs(4));
    let v = client.volume(VOL).await.expect("volume");
    let r = &v.state.replica_topology[new_id];
    assert_eq!(r.rebuild_progress, Some(40));
    let nexus = v.state.target.as_ref().expect("nexus");
    let child = nexus
        .children
        .iter()
        .find(|c| c.replica_uuid() == Some(new_id.as_str()))
        .expect("child of the new replica");
    assert_eq!(
        (child.state, child.rebuild_progress),
        (ChildState::Degraded, Some(40))
    );
    assert_eq!(nexus.rebuilds, 1);

    sim.advance(Duration::from_secs(6));
    let v = client.volume(VOL).await.expect("volume");
    let r = &v.state.replica_topology[new_id];
    assert_eq!(
        (r.child_status, r.rebuild_progress),
        (Some(ChildState::Online), None)
    );
    assert_eq!(v.state.status, VolumeStatus::Online);
    assert!(v.is_settled());
    assert_eq!(
        v.observed(&pools, couchestor_core::tier::Load::Unknown)
            .replica_pools
            .len(),
        3
    );
}

#[tokio::test]
async fn scale_down_by_the_documented_order_keeps_the_local_replica_when_nothing_steers() {
    let (sim, client) = start(two_tier(Behaviour::default())).await;
    add_and_rebuild(&sim, &client).await;
    let v = client.set_replica_count(VOL, 2).await.expect("-1");
    // All healthy, all children, all fit and uncordoned: remote before local, so the
    // local n1-hot replica stays; between the two remote ones the order is arbitrary.
    assert!(
        pools_of(&v).contains(&"n1-hot".to_owned()),
        "{:?}",
        pools_of(&v)
    );
    assert_eq!(v.state.replica_topology.len(), 2);
}

#[tokio::test]
async fn scale_down_by_the_documented_order_removes_the_replica_on_the_cordoned_source_pool() {
    let (sim, client) = start(two_tier(Behaviour::default())).await;
    add_and_rebuild(&sim, &client).await;
    client
        .cordon_pool("n1-hot", PoolCordon::REPLICAS)
        .await
        .expect("cordon");
    let v = client.set_replica_count(VOL, 2).await.expect("-1");
    assert_eq!(pools_of(&v), ["n2-hot", "n3-cold"]);
}

#[tokio::test]
async fn scale_down_by_the_documented_order_removes_a_replica_whose_pool_no_longer_fits_the_topology()
 {
    let (sim, client) = start(two_tier(Behaviour::default())).await;
    add_and_rebuild(&sim, &client).await;
    client
        .delete_pool_label("n1-hot", "tier")
        .await
        .expect("unlabel");
    let v = client.set_replica_count(VOL, 2).await.expect("-1");
    assert_eq!(pools_of(&v), ["n2-hot", "n3-cold"]);
}

#[tokio::test]
async fn the_2024_scale_down_order_ignores_cordons_and_keeps_the_local_replica() {
    let behaviour = Behaviour {
        topology_aware_scale_down: false,
        ..Behaviour::default()
    };
    let (sim, client) = start(two_tier(behaviour)).await;
    add_and_rebuild(&sim, &client).await;
    client
        .cordon_pool("n1-hot", PoolCordon::REPLICAS)
        .await
        .expect("cordon");
    let v = client.set_replica_count(VOL, 2).await.expect("-1");
    assert!(
        pools_of(&v).contains(&"n1-hot".to_owned()),
        "{:?}",
        pools_of(&v)
    );
}

#[tokio::test]
async fn the_adversarial_victim_is_the_healthy_replica_just_built_on_the_target_tier() {
    let behaviour = Behaviour {
        victims: VictimPolicy::Adversarial,
        ..Behaviour::default()
    };
    let (sim, client) = start(two_tier(behaviour)).await;
    add_and_rebuild(&sim, &client).await;
    // The operator steers the source replica to be the victim…
    client
        .cordon_pool("n1-hot", PoolCordon::REPLICAS)
        .await
        .expect("cordon");
    let v = client.set_replica_count(VOL, 2).await.expect("-1");
    // …and the adversary removes the new cold replica instead.
    assert_eq!(pools_of(&v), ["n1-hot", "n2-hot"]);
    assert_eq!(v.healthy_replicas().count(), 2);
}

#[tokio::test]
async fn an_unhealthy_replica_goes_first_and_the_last_healthy_one_is_never_removed() {
    let (sim, client) = start(two_tier(Behaviour::default())).await;
    add_and_rebuild(&sim, &client).await;
    sim.with(|c| c.fault_pool("n2-hot"));
    let v = client.set_replica_count(VOL, 2).await.expect("-1");
    assert_eq!(
        pools_of(&v),
        ["n1-hot", "n3-cold"],
        "the faulted replica went"
    );

    // Even the adversary, with one healthy replica left, removes only the faulted one.
    sim.with(|c| {
        c.behaviour.victims = VictimPolicy::Adversarial;
        c.fault_pool("n3-cold");
    });
    let v = client.set_replica_count(VOL, 1).await.expect("-1");
    assert_eq!(pools_of(&v), ["n1-hot"]);
    assert_eq!(v.healthy_replicas().count(), 1);
    assert_eq!(sim.with(|c| c.healthy_low_water(VOL)), Some(1));
}

#[tokio::test]
async fn a_rebuild_that_fails_leaves_a_faulted_child_and_a_degraded_volume() {
    let (sim, client) = start(two_tier(Behaviour::default())).await;
    sim.with(|c| c.fail_next_rebuild_on("n3-cold", 60));
    client.set_replica_count(VOL, 3).await.expect("+1");
    sim.advance(Duration::from_secs(5));
    let v = client.volume(VOL).await.expect("volume");
    assert_eq!(
        v.state
            .replica_topology
            .values()
            .filter(|r| r.is_rebuilding())
            .count(),
        1
    );
    sim.advance(Duration::from_secs(5));
    let v = client.volume(VOL).await.expect("volume");
    let r = v
        .state
        .replica_topology
        .values()
        .find(|r| r.pool.as_deref() == Some("n3-cold"))
        .expect("replica");
    assert_eq!(
        (r.child_status, r.rebuild_progress),
        (Some(ChildState::Faulted), None)
    );
    assert_eq!(v.state.status, VolumeStatus::Degraded);
    assert_eq!(v.healthy_replicas().count(), 2);
    assert!(!v.is_settled());
}

#[tokio::test]
async fn a_faulted_pool_faults_its_replicas_and_takes_no_new_replica() {
    let (sim, client) = start(two_tier(Behaviour::default())).await;
    sim.with(|c| {
        c.fault_pool("n3-cold");
        c.fault_pool("n2-hot");
    });
    let v = client.volume(VOL).await.expect("volume");
    assert_eq!(v.state.status, VolumeStatus::Degraded);
    let on_n2 = v
        .state
        .replica_topology
        .values()
        .find(|r| r.pool.as_deref() == Some("n2-hot"))
        .expect("replica");
    assert_eq!(on_n2.state, ReplicaState::Faulted);
    assert_eq!(on_n2.child_status, Some(ChildState::Faulted));
    let pool = client.pool("n3-cold").await.expect("pool");
    assert_eq!(
        pool.status(),
        couchestor_operator::mayastor::PoolStatus::Faulted
    );
    assert!(
        sim.with(|c| c.eligible_pools(VOL))
            .iter()
            .all(|p| p != "n3-cold")
    );
    let err = client
        .set_replica_count(VOL, 3)
        .await
        .expect_err("degraded");
    assert_eq!(err.kind(), Some("FailedPrecondition"));
}

#[tokio::test]
async fn with_auto_advance_a_polling_client_sees_the_rebuild_finish_without_a_ticker() {
    let (sim, client) = start(two_tier(Behaviour::default())).await;
    sim.auto_advance(Duration::from_secs(3));
    client.set_replica_count(VOL, 3).await.expect("+1");
    let mut progress = Vec::new();
    let settled = loop {
        let v = client.volume(VOL).await.expect("volume");
        if v.is_settled() {
            break v;
        }
        let p = v
            .state
            .replica_topology
            .values()
            .find_map(|r| r.rebuild_progress);
        progress.push(p.expect("rebuilding until settled"));
        assert!(progress.len() < 10, "never settled: {progress:?}");
    };
    // 3 s of virtual time per request, 10 s per rebuild: 30 %, 60 %, 90 %, done.
    assert_eq!(progress, [30, 60, 90]);
    assert_eq!(pools_of(&settled), ["n1-hot", "n2-hot", "n3-cold"]);
    assert_eq!(sim.with(|c| c.now()), Duration::from_secs(15));
}

#[tokio::test]
async fn the_rebuild_history_records_completed_and_failed_rebuilds_of_the_new_child() {
    let (sim, client) = start(two_tier(Behaviour::default())).await;
    let empty = client.rebuild_history(VOL).await.expect("history");
    assert_eq!((empty.target_uuid.as_str(), empty.records.len()), (VOL, 0));

    let v = add_and_rebuild(&sim, &client).await;
    let cold = v
        .state
        .replica_topology
        .iter()
        .find(|(_, r)| r.pool.as_deref() == Some("n3-cold"))
        .map(|(id, _)| id.clone())
        .expect("cold replica");
    let history = client.rebuild_history(VOL).await.expect("history");
    assert_eq!(history.records.len(), 1);
    let record = &history.records[0];
    assert!(record.completed(), "{record:?}");
    assert_eq!(record.replica_uuid(), Some(cold.as_str()));
    assert!(
        record.child_uri.starts_with("nvmf://"),
        "{}",
        record.child_uri
    );
    assert!(!record.src_uri.is_empty() && record.src_uri != record.child_uri);
    assert_eq!(record.blocks_recovered, record.blocks_total);
    assert!(!record.is_partial);
    assert_eq!(
        (record.start_time.as_str(), record.end_time.as_str()),
        (
            "2026-01-01T00:00:00.000000000Z",
            "2026-01-01T00:00:10.000000000Z"
        )
    );

    // Drop the cold replica, then rebuild onto n4-cold (the only eligible pool), failing.
    client
        .cordon_pool("n3-cold", PoolCordon::REPLICAS)
        .await
        .expect("cordon");
    let v = client.set_replica_count(VOL, 2).await.expect("-1");
    assert_eq!(pools_of(&v), ["n1-hot", "n2-hot"]);
    sim.with(|c| c.fail_next_rebuild_on("n4-cold", 30));
    let v = client.set_replica_count(VOL, 3).await.expect("+1");
    assert_eq!(pools_of(&v), ["n1-hot", "n2-hot", "n4-cold"]);
    sim.advance(Duration::from_secs(5));
    let history = client.rebuild_history(VOL).await.expect("history");
    assert_eq!(history.records.len(), 2);
    let failed = &history.records[1];
    assert_eq!(failed.job_state, "Failed");
    assert!(failed.blocks_recovered < failed.blocks_total);
}
