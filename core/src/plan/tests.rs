use std::time::Duration;

use proptest::prelude::*;

use super::*;
use k8s_openapi::jiff::SignedDuration;

const HOUR: Duration = Duration::from_secs(3600);

fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).expect("valid timestamp")
}

fn policy(extra: serde_json::Value) -> StoragePolicySpec {
    let mut spec = serde_json::json!({
        "storageClassName": "mayastor-tiered",
        "hotPoolSelector": {"matchLabels": {"tier": "hot"}},
        "warmPoolSelector": {"matchLabels": {"tier": "warm"}},
        "coldPoolSelector": {"matchLabels": {"tier": "cold"}},
    });
    if let (Some(base), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        base.extend(extra.clone());
    }
    serde_json::from_value(spec).expect("test policy deserializes")
}

fn pool(tier: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("tier".to_owned(), tier.to_owned())])
}

fn volume(name: &str, tier: &str, iops: f64) -> ObservedVolume {
    ObservedVolume {
        name: name.to_owned(),
        replica_pools: vec![pool(tier)],
        load: Load::Known {
            iops,
            history: HOUR,
        },
        last_moved: None,
        recorded_tier: None,
    }
}

#[test]
fn misplaced_volumes_are_planned_most_misplaced_first() {
    let volumes = [
        volume("pv-lukewarm", "hot", 1500.0), // hot → warm, just under W
        volume("pv-idle", "hot", 0.0),        // hot → cold, far under
        volume("pv-busy", "cold", 50_000.0),  // cold → hot, 10× over H
        volume("pv-steady", "warm", 3000.0),  // stays
    ];
    let plan = plan(
        &policy(serde_json::json!({"maxConcurrentMigrations": 10})),
        &volumes,
        &[],
        now(),
    )
    .expect("valid");
    let order: Vec<(&str, Tier)> = plan
        .moves
        .iter()
        .map(|m| (m.volume.as_str(), m.to))
        .collect();
    assert_eq!(
        order,
        vec![
            ("pv-idle", Tier::Cold),
            ("pv-busy", Tier::Hot),
            ("pv-lukewarm", Tier::Warm)
        ]
    );
    assert_eq!(
        plan.decision("pv-steady").map(|d| &d.outcome),
        Some(&Outcome::Stay)
    );
    assert_eq!(
        plan.counts,
        TierCounts {
            hot: 2,
            warm: 1,
            cold: 1,
            ..Default::default()
        }
    );
}

#[test]
fn dry_run_plans_and_explains_but_executes_nothing() {
    let volumes = [volume("pv-a", "hot", 0.0)];
    let plan = plan(
        &policy(serde_json::json!({"dryRun": true})),
        &volumes,
        &[],
        now(),
    )
    .expect("valid");
    assert!(plan.dry_run);
    assert_eq!(plan.moves.len(), 1, "the plan shows what would happen");
    assert!(plan.executable().is_empty(), "nothing is executed");
    let d = plan.decision("pv-a").expect("decided");
    assert!(d.reason.starts_with("dry run: "), "{}", d.reason);
    assert!(d.reason.contains("hot → cold"), "{}", d.reason);
    let shown = PlannedMigration::from(&plan.moves[0]);
    assert_eq!((shown.from_tier, shown.to_tier), (Tier::Hot, Tier::Cold));
}

#[test]
fn disabled_policy_starts_nothing_and_says_what_it_would_do() {
    let volumes = [volume("pv-a", "hot", 0.0), volume("pv-b", "cold", 10.0)];
    let plan = plan(
        &policy(serde_json::json!({"enabled": false})),
        &volumes,
        &[],
        now(),
    )
    .expect("valid");
    assert!(plan.moves.is_empty());
    let d = plan.decision("pv-a").expect("decided");
    assert_eq!(
        d.outcome,
        Outcome::Disabled {
            wanted: Some(Tier::Cold)
        }
    );
    assert!(d.reason.contains("would move hot → cold"), "{}", d.reason);
    assert_eq!(
        plan.decision("pv-b").map(|d| &d.outcome),
        Some(&Outcome::Disabled { wanted: None })
    );
}

#[test]
fn in_flight_moves_use_up_concurrency_and_their_volumes_are_left_alone() {
    let volumes = [
        volume("pv-a", "hot", 0.0),
        volume("pv-b", "hot", 0.0),
        volume("pv-c", "hot", 0.0),
    ];
    let in_flight = [InFlightMove {
        volume: "pv-a".into(),
        from: Tier::Hot,
        to: Tier::Cold,
    }];
    let plan = plan(
        &policy(serde_json::json!({"maxConcurrentMigrations": 2})),
        &volumes,
        &in_flight,
        now(),
    )
    .expect("valid");
    assert_eq!(
        plan.moves
            .iter()
            .map(|m| m.volume.as_str())
            .collect::<Vec<_>>(),
        vec!["pv-b"]
    );
    assert_eq!(
        plan.decision("pv-a").map(|d| &d.outcome),
        Some(&Outcome::InFlight { to: Tier::Cold })
    );
    let c = plan.decision("pv-c").expect("decided");
    assert_eq!(
        c.outcome,
        Outcome::Deferred {
            from: Tier::Hot,
            to: Tier::Cold
        }
    );
    assert!(
        c.reason.contains("maxConcurrentMigrations (2) reached"),
        "{}",
        c.reason
    );
}

#[test]
fn unknown_metrics_move_nothing_even_when_everything_looks_idle() {
    let mut volumes: Vec<ObservedVolume> = (0..20)
        .map(|i| volume(&format!("pv-{i}"), "hot", 0.0))
        .collect();
    for v in &mut volumes {
        v.load = Load::Unknown;
    }
    let plan = plan(&policy(serde_json::json!({})), &volumes, &[], now()).expect("valid");
    assert!(plan.moves.is_empty());
    assert!(plan.decisions.iter().all(|d| d.outcome == Outcome::Unknown));
}

#[test]
fn a_volume_moved_within_the_cooldown_waits() {
    let mut v = volume("pv-a", "cold", 9000.0);
    v.last_moved = Some(
        now()
            .checked_sub(SignedDuration::from_hours(2))
            .expect("in range"),
    );
    let plan = plan(&policy(serde_json::json!({})), &[v], &[], now()).expect("valid");
    assert!(plan.moves.is_empty());
    assert!(matches!(
        plan.decisions[0].outcome,
        Outcome::CoolingDown { to: Tier::Hot, .. }
    ));
}

#[test]
fn volumes_on_untiered_ambiguous_or_mixed_pools_are_not_moved() {
    let mut ambiguous_policy = policy(serde_json::json!({}));
    ambiguous_policy.cold_pool_selector =
        LabelSelectorBuilder::expr("tier", "In", &["cold", "hot"]);
    let mut mixed = volume("pv-mixed", "warm", 0.0);
    mixed.replica_pools.push(pool("cold"));
    let volumes = [
        volume("pv-nowhere", "archive", 0.0),
        volume("pv-ambiguous", "hot", 0.0),
        mixed,
    ];
    let plan = plan(&ambiguous_policy, &volumes, &[], now()).expect("valid");
    assert!(plan.moves.is_empty(), "{:?}", plan.moves);
    assert!(
        plan.decisions
            .iter()
            .all(|d| d.outcome == Outcome::Unplaced)
    );
    assert!(
        plan.decisions[0]
            .reason
            .contains("no tier selector matches"),
        "{}",
        plan.decisions[0].reason
    );
    assert!(
        plan.decisions[1].reason.contains("several tiers"),
        "{}",
        plan.decisions[1].reason
    );
    assert!(
        plan.decisions[2].reason.contains("span tiers"),
        "{}",
        plan.decisions[2].reason
    );
    assert_eq!(plan.counts.unplaced, 3);
}

#[test]
fn a_preserved_source_replica_does_not_hide_the_recorded_tier() {
    let mut v = volume("pv-a", "hot", 0.0);
    v.replica_pools.push(pool("cold"));
    v.recorded_tier = Some(Tier::Hot);
    let plan = plan(&policy(serde_json::json!({})), &[v], &[], now()).expect("valid");
    assert_eq!(plan.decisions[0].placement, Placement::On(Tier::Hot));
    assert_eq!(plan.moves[0].to, Tier::Cold);
}

#[test]
fn an_invalid_policy_plans_nothing_and_says_why() {
    let bad = policy(serde_json::json!({"lowWatermarkIOPS": 9000}));
    let err = plan(&bad, &[volume("pv-a", "hot", 0.0)], &[], now()).expect_err("invalid");
    assert!(err.paths().contains(&"spec.lowWatermarkIOPS"), "{err}");
}

/// Builds selectors in tests without spelling out k8s-openapi structs.
struct LabelSelectorBuilder;

impl LabelSelectorBuilder {
    fn expr(key: &str, op: &str, values: &[&str]) -> crate::api::LabelSelector {
        serde_json::from_value(serde_json::json!({
            "matchExpressions": [{"key": key, "operator": op, "values": values}]
        }))
        .expect("selector deserializes")
    }
}

fn any_volume() -> impl Strategy<Value = ObservedVolume> {
    (
        "[a-z]{1,6}",
        prop_oneof![Just("hot"), Just("warm"), Just("cold")],
        proptest::option::weighted(0.9, 0.0f64..20_000.0),
        proptest::option::of(0i64..200_000),
    )
        .prop_map(|(name, tier, iops, moved_ago)| ObservedVolume {
            name,
            replica_pools: vec![pool(tier)],
            load: iops.map_or(Load::Unknown, |iops| Load::Known {
                iops,
                history: HOUR,
            }),
            last_moved: moved_ago.map(|s| {
                now()
                    .checked_sub(SignedDuration::from_secs(s))
                    .expect("in range")
            }),
            recorded_tier: None,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn the_plan_respects_concurrency_and_does_not_depend_on_input_order(
        volumes in proptest::collection::vec(any_volume(), 0..30),
        max in 1u32..6,
        in_flight in 0usize..4,
        seed in any::<u64>(),
    ) {
        // Unique names, as PV names are.
        let mut volumes = volumes;
        for (i, v) in volumes.iter_mut().enumerate() {
            v.name = format!("{}-{i}", v.name);
        }
        let flying: Vec<InFlightMove> = volumes.iter().take(in_flight)
            .map(|v| InFlightMove { volume: v.name.clone(), from: Tier::Hot, to: Tier::Cold }).collect();
        let spec = policy(serde_json::json!({"maxConcurrentMigrations": max}));
        let a = plan(&spec, &volumes, &flying, now()).expect("valid");
        prop_assert!(a.moves.len() + flying.len() <= max as usize || a.moves.is_empty());
        prop_assert!(a.moves.iter().all(|m| !flying.iter().any(|f| f.volume == m.volume)));
        prop_assert!(a.moves.iter().all(|m| m.from != m.to));
        prop_assert!(a.moves.windows(2).all(|w| w[0].misplacement >= w[1].misplacement));
        // Same volumes in another order: same moves in the same order.
        let mut shuffled = volumes.clone();
        let n = shuffled.len();
        if n > 1 {
            shuffled.rotate_left((seed as usize) % n);
            shuffled.swap(0, (seed as usize / 7) % n);
        }
        let b = plan(&spec, &shuffled, &flying, now()).expect("valid");
        prop_assert_eq!(a.moves, b.moves);
    }
}
