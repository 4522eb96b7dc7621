//! Shared by the Mayastor test files: a two-tier cluster and small helpers.

// Each test file uses a different subset of these helpers.
#![allow(dead_code)]

use std::{collections::BTreeMap, time::Duration};

use couchestor_operator::mayastor::{
    Config, Mayastor, Volume,
    sim::{Behaviour, Cluster, Sim, VolumeSetup},
};

pub const GIB: u64 = 1024 * 1024 * 1024;
pub const VOL: &str = "9f2c1e3a-52f4-4c6a-9d7e-2f9a1b0c4d11";
pub const CREATED_BY: (&str, &str) = ("openebs.io/created-by", "operator-diskpool");

/// Inclusion labels of a volume created with `poolHasTopologyKey: tier`.
pub fn tiered_inclusion() -> BTreeMap<String, String> {
    BTreeMap::from([
        (CREATED_BY.0.to_owned(), CREATED_BY.1.to_owned()),
        ("tier".to_owned(), String::new()),
    ])
}

/// Four nodes, two hot pools (n1, n2) and two cold pools (n3, n4), 100 GiB each;
/// the volume `VOL` (10 GiB) has replicas on n1-hot and n2-hot, nexus on n1.
pub fn two_tier(behaviour: Behaviour) -> Cluster {
    let mut c = Cluster::new(behaviour);
    for n in ["n1", "n2", "n3", "n4"] {
        c.add_node(n);
    }
    c.add_pool("n1-hot", "n1", 100 * GIB, &[CREATED_BY, ("tier", "hot")])
        .add_pool("n2-hot", "n2", 100 * GIB, &[CREATED_BY, ("tier", "hot")])
        .add_pool("n3-cold", "n3", 100 * GIB, &[CREATED_BY, ("tier", "cold")])
        .add_pool("n4-cold", "n4", 100 * GIB, &[CREATED_BY, ("tier", "cold")]);
    c.add_volume(VolumeSetup {
        uuid: VOL.to_owned(),
        size: 10 * GIB,
        thin: false,
        inclusion: tiered_inclusion(),
        target: Some("n1".to_owned()),
        pools: vec!["n1-hot".to_owned(), "n2-hot".to_owned()],
    })
    .expect("volume");
    c
}

pub async fn start(cluster: Cluster) -> (Sim, Mayastor) {
    let sim = Sim::start(cluster).await.expect("simulator");
    let client = Mayastor::new(Config::new(sim.url())).expect("client");
    (sim, client)
}

pub fn pools_of(v: &Volume) -> Vec<String> {
    let mut pools: Vec<String> = v
        .state
        .replica_topology
        .values()
        .filter_map(|r| r.pool.clone())
        .collect();
    pools.sort();
    pools
}

/// Scales `VOL` up by one and lets the rebuild finish.
pub async fn add_and_rebuild(sim: &Sim, client: &Mayastor) -> Volume {
    client.set_replica_count(VOL, 3).await.expect("+1");
    sim.advance(Duration::from_secs(10));
    let v = client.volume(VOL).await.expect("volume");
    assert!(v.is_settled(), "rebuilt: {v:?}");
    v
}
