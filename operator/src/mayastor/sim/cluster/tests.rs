//! Invariants of the simulated control plane under random sequences of operations:
//! whatever the order of scale-ups, scale-downs, cordons, relabels, faults and time,
//! the simulator never does what Mayastor cannot (two replicas of a volume on one node,
//! a replica on an ineligible pool, losing the last healthy replica to a scale-down) and
//! its bookkeeping (pool usage, replica count, low-water mark) stays consistent.

use proptest::prelude::*;

use super::*;

const GIB: u64 = 1024 * 1024 * 1024;
const POOLS: [&str; 5] = ["p1", "p2", "p3", "p4", "p5"];

#[derive(Debug, Clone)]
enum Op {
    Up(usize),
    Down(usize),
    Advance(u64),
    CordonPool(usize, bool),
    CordonNode(usize, bool),
    Relabel(usize, bool),
    Fault(usize),
    FailNextRebuild(usize, u8),
    Adversary(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..2usize).prop_map(Op::Up),
        4 => (0..2usize).prop_map(Op::Down),
        4 => (0..15u64).prop_map(Op::Advance),
        2 => (0..5usize, any::<bool>()).prop_map(|(p, on)| Op::CordonPool(p, on)),
        2 => (0..5usize, any::<bool>()).prop_map(|(n, on)| Op::CordonNode(n, on)),
        2 => (0..5usize, any::<bool>()).prop_map(|(p, on)| Op::Relabel(p, on)),
        1 => (0..5usize).prop_map(Op::Fault),
        1 => (0..5usize, 0..100u8).prop_map(|(p, at)| Op::FailNextRebuild(p, at)),
        1 => any::<bool>().prop_map(Op::Adversary),
    ]
}

fn cluster() -> Cluster {
    let mut c = Cluster::new(Behaviour::default());
    for (i, p) in POOLS.iter().enumerate() {
        let node = format!("n{}", i + 1);
        let tier = if i < 2 { "hot" } else { "cold" };
        c.add_node(&node)
            .add_pool(p, &node, 40 * GIB, &[("tier", tier)]);
    }
    let inclusion = Labels::from([("tier".to_owned(), String::new())]);
    for (v, pools) in [("v0", ["p1", "p2"]), ("v1", ["p2", "p3"])] {
        c.add_volume(VolumeSetup {
            uuid: v.to_owned(),
            size: 10 * GIB,
            thin: false,
            inclusion: inclusion.clone(),
            target: Some(if v == "v0" { "n1" } else { "n2" }.to_owned()),
            pools: pools.iter().map(|p| (*p).to_owned()).collect(),
        })
        .expect("volume");
    }
    c
}

fn healthy_count(c: &Cluster, v: &str) -> usize {
    c.volumes[v]
        .replicas
        .iter()
        .filter(|r| healthy(r, &c.pools))
        .count()
}

fn check(c: &Cluster) -> Result<(), TestCaseError> {
    for (id, v) in &c.volumes {
        let mut nodes: Vec<&str> = v.replicas.iter().map(|r| r.node.as_str()).collect();
        nodes.sort();
        nodes.dedup();
        prop_assert_eq!(
            nodes.len(),
            v.replicas.len(),
            "{} has two replicas on a node",
            id
        );
        prop_assert_eq!(
            v.replicas.len(),
            usize::from(v.num_replicas),
            "{} count",
            id
        );
        prop_assert!(v.num_replicas >= 1);
        prop_assert!(v.low_water <= healthy_count(c, id), "{} low water", id);
    }
    for (id, p) in &c.pools {
        let used: u64 = c
            .volumes
            .values()
            .flat_map(|v| v.replicas.iter().filter(|r| &r.pool == id).map(|_| v.size))
            .sum();
        prop_assert_eq!(p.used, used, "pool {} usage", id);
        prop_assert!(p.used <= p.capacity, "pool {} over capacity", id);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_never_break_mayastors_rules(ops in proptest::collection::vec(op(), 1..60)) {
        let mut c = cluster();
        for op in ops {
            match op {
                Op::Up(v) => {
                    let id = format!("v{v}");
                    let before: Vec<String> = c.volumes[&id].replicas.iter().map(|r| r.uuid.clone()).collect();
                    let eligible = c.eligible_pools(&id);
                    let n = c.volumes[&id].num_replicas;
                    match c.set_replica_count(&id, n + 1) {
                        Ok(_) => {
                            let new = c.volumes[&id].replicas.iter().find(|r| !before.contains(&r.uuid)).expect("a new replica");
                            // It went to the best eligible pool, as computed before the call.
                            prop_assert_eq!(Some(&new.pool), eligible.first());
                            let pool = &c.pools[&new.pool];
                            prop_assert!(!pool.faulted && !pool.cordon[0]);
                            prop_assert!(pool.labels.contains_key("tier"));
                            prop_assert!(c.nodes[&pool.node].cordons.is_empty());
                        }
                        Err(e) => prop_assert!(
                            e.status == 412 || (e.status == 507 && eligible.is_empty()),
                            "{:?} with eligible {:?}", e, eligible
                        ),
                    }
                }
                Op::Down(v) => {
                    let id = format!("v{v}");
                    let healthy_before = healthy_count(&c, &id);
                    let n = c.volumes[&id].num_replicas;
                    if n > 1 && c.set_replica_count(&id, n - 1).is_ok() {
                        prop_assert!(
                            healthy_count(&c, &id) >= healthy_before.min(1),
                            "a scale-down removed the last healthy replica"
                        );
                    }
                }
                Op::Advance(s) => c.advance(Duration::from_secs(s)),
                Op::CordonPool(p, on) => {
                    let _ = c.cordon_pool(POOLS[p], [true, false, false, false], on);
                }
                Op::CordonNode(n, on) => {
                    let _ = c.cordon_node(&format!("n{}", n + 1), "x", on);
                }
                Op::Relabel(p, on) => {
                    let tier = if p < 2 { "hot" } else { "cold" };
                    let _ = if on {
                        c.put_pool_label(POOLS[p], "tier", tier, true)
                    } else {
                        c.delete_pool_label(POOLS[p], "tier")
                    };
                }
                Op::Fault(p) => c.fault_pool(POOLS[p]),
                Op::FailNextRebuild(p, at) => c.fail_next_rebuild_on(POOLS[p], at),
                Op::Adversary(on) => {
                    c.behaviour.victims = if on { VictimPolicy::Adversarial } else { VictimPolicy::Documented };
                }
            }
            check(&c)?;
        }
    }
}
