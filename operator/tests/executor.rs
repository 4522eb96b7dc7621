//! The VolumeMigration executor against the Mayastor simulator over HTTP on 127.0.0.1:
//! moves in both directions, `preserveSourceReplica`, adversarial scale-down victims,
//! pools faulting mid-rebuild, 5xx / lost / slow answers, timeouts, the label fallback
//! for servers without pool cordon, write-ahead ordering checked against the
//! simulator's request log, serialised steering windows, and a crash-point campaign.
//!
//! Time is the simulator's virtual clock: the executor's `sleep` advances it, so a
//! 10 s rebuild or a 5 min timeout costs no wall-clock time.

#[path = "support/executor.rs"]
mod harness;
#[path = "support/mayastor.rs"]
mod support;

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use couchestor_core::{
    GoDuration, Tier,
    api::{MigrationPhase, MigrationStep},
};
use couchestor_operator::{
    executor::{Clock, EventType, ExecError, holds_finalizer},
    mayastor::{
        self, Mayastor,
        sim::{Behaviour, Fault, FaultAction, VictimPolicy, VolumeSetup},
    },
};
use harness::*;
use hyper::Method;
use support::GIB;

// --- Moves ---------------------------------------------------------------------------

#[tokio::test]
async fn a_hot_volume_moves_to_cold_pools_one_replica_at_a_time_and_steering_is_restored() {
    let h = Harness::new(lab(Behaviour::default(), false)).await;
    h.store
        .insert(migration("m", HOT_VOL, Tier::Hot, Tier::Cold, false));
    let exec = h.executor(None, None);

    let outcome = exec.drive("m", &tiers()).await.expect("drive");

    assert_eq!(outcome.phase, MigrationPhase::Succeeded, "{outcome:?}");
    assert_eq!(outcome.result(), "succeeded");
    let pools = h.pools(HOT_VOL);
    assert_eq!(pools.len(), 2, "{pools:?}");
    assert!(pools.iter().all(|p| pool_tier(p) == "cold"), "{pools:?}");
    assert_eq!(h.sim.with(|c| c.num_replicas(HOT_VOL)), Some(2));
    assert!(h.low_water(HOT_VOL) >= 2, "went below 2 healthy replicas");
    h.assert_steering_restored();
    // +1, −1, +1, −1: never more than one replica above the start.
    assert_eq!(h.replica_counts(HOT_VOL), [3, 2, 3, 2]);
    // n5-hot, the emptiest pool, was kept out of both scale-ups by a cordon.
    let cordons: Vec<String> = h
        .sim
        .mutations()
        .iter()
        .filter(|r| r.method == "PUT" && r.path.ends_with("/cordon"))
        .map(|r| r.path.clone())
        .collect();
    assert!(
        cordons.contains(&"/v0/pools/n5-hot/cordon".to_owned()),
        "{cordons:?}"
    );
    let status = h.status("m");
    assert_eq!(status.phase, Some(MigrationPhase::Succeeded));
    assert_eq!(status.starting_healthy_replicas, Some(2));
    assert_eq!(status.source_replicas.len(), 2);
    assert_eq!(status.target_replicas.len(), 2);
    assert!(status.steering.is_empty());
    assert!(status.completion_time.is_some());
    assert_eq!(status.step, Some(MigrationStep::Finished));
    let journal = steps(&status);
    for step in [
        MigrationStep::Pending,
        MigrationStep::Steering,
        MigrationStep::ScalingUp,
        MigrationStep::WaitingForSync,
        MigrationStep::MarkingVictim,
        MigrationStep::ScalingDown,
        MigrationStep::Verifying,
        MigrationStep::RestoringSteering,
        MigrationStep::Finished,
    ] {
        assert!(journal.contains(&step), "{step:?} missing from {journal:?}");
    }
    // An Event for every step (the Finished step's is the outcome), and a final Normal
    // one.
    let events = exec.events().recorded.events();
    for step in journal.iter().filter(|s| **s != MigrationStep::Finished) {
        let reason = format!("{step:?}");
        assert!(
            events.iter().any(|e| e.reason == reason),
            "no Event for {reason}"
        );
    }
    let last = events.last().expect("events");
    assert_eq!(
        (last.kind, last.reason.as_str()),
        (EventType::Normal, "Succeeded")
    );
}

#[tokio::test]
async fn a_cold_volume_moves_to_hot_pools() {
    let h = Harness::new(lab(Behaviour::default(), true)).await;
    h.store
        .insert(migration("up", COLD_VOL, Tier::Cold, Tier::Hot, false));
    let outcome = h
        .executor(None, None)
        .drive("up", &tiers())
        .await
        .expect("drive");
    assert_eq!(outcome.phase, MigrationPhase::Succeeded, "{outcome:?}");
    let pools = h.pools(COLD_VOL);
    assert_eq!(pools.len(), 2);
    assert!(pools.iter().all(|p| pool_tier(p) == "hot"), "{pools:?}");
    assert!(h.low_water(COLD_VOL) >= 2);
    h.assert_steering_restored();
}

#[tokio::test]
async fn preserving_the_source_replica_adds_target_replicas_and_removes_none() {
    let h = Harness::new(lab(Behaviour::default(), false)).await;
    h.store
        .insert(migration("keep", HOT_VOL, Tier::Hot, Tier::Cold, true));
    let outcome = h
        .executor(None, None)
        .drive("keep", &tiers())
        .await
        .expect("drive");
    assert_eq!(outcome.phase, MigrationPhase::Succeeded, "{outcome:?}");
    let pools = h.pools(HOT_VOL);
    assert_eq!(
        pools.iter().filter(|p| pool_tier(p) == "hot").count(),
        2,
        "{pools:?}"
    );
    assert_eq!(
        pools.iter().filter(|p| pool_tier(p) == "cold").count(),
        2,
        "{pools:?}"
    );
    // Only increases were ever sent.
    assert_eq!(h.replica_counts(HOT_VOL), [3, 4]);
    assert!(!steps(&h.status("keep")).contains(&MigrationStep::ScalingDown));
    h.assert_steering_restored();
}

#[tokio::test]
async fn a_wrong_scale_down_victim_is_repaired_and_the_move_still_ends_on_the_target_tier() {
    let adversarial = Behaviour {
        victims: VictimPolicy::Adversarial,
        ..Behaviour::default()
    };
    let h = Harness::new(lab(adversarial, false)).await;
    h.store
        .insert(migration("m", HOT_VOL, Tier::Hot, Tier::Cold, false));
    // The control plane removes the new cold replica once, then behaves.
    let hook: Hook = Box::new(|sim, reason, _| {
        if reason == "TargetReplicaLost" {
            sim.with(|c| c.behaviour.victims = VictimPolicy::Documented);
        }
    });
    let exec = h.executor(None, Some(hook));
    let outcome = exec.drive("m", &tiers()).await.expect("drive");

    assert_eq!(outcome.phase, MigrationPhase::Succeeded, "{outcome:?}");
    let pools = h.pools(HOT_VOL);
    assert!(pools.iter().all(|p| pool_tier(p) == "cold"), "{pools:?}");
    assert!(
        h.low_water(HOT_VOL) >= 2,
        "the wrong victim cost a healthy replica"
    );
    let status = h.status("m");
    assert_eq!(status.repairs, 1);
    assert!(steps(&status).contains(&MigrationStep::Repairing));
    let verifying: Vec<&str> = status
        .steps
        .iter()
        .filter(|s| s.step == MigrationStep::Verifying)
        .map(|s| s.message.as_str())
        .collect();
    assert!(
        verifying[0].contains("NOT the intended victim"),
        "{verifying:?}"
    );
    let lost = exec
        .events()
        .recorded
        .events()
        .into_iter()
        .find(|e| e.reason == "TargetReplicaLost")
        .expect("a Warning about the lost replica");
    assert_eq!(lost.kind, EventType::Warning);
    // The repair went back up to 3, never to 4.
    assert_eq!(h.replica_counts(HOT_VOL), [3, 2, 3, 2, 3, 2]);
    h.assert_steering_restored();
}

#[tokio::test]
async fn a_control_plane_that_always_removes_the_new_replica_makes_the_move_roll_back_intact() {
    let adversarial = Behaviour {
        victims: VictimPolicy::Adversarial,
        ..Behaviour::default()
    };
    let h = Harness::new(lab(adversarial, false)).await;
    h.store
        .insert(migration("m", HOT_VOL, Tier::Hot, Tier::Cold, false));
    let outcome = h
        .executor(None, None)
        .drive("m", &tiers())
        .await
        .expect("drive");

    assert_eq!(outcome.phase, MigrationPhase::RolledBack, "{outcome:?}");
    assert_eq!(outcome.result(), "rolled_back");
    assert!(outcome.message.contains("lost 4 times"), "{outcome:?}");
    assert_eq!(h.pools(HOT_VOL), ["n1-hot", "n2-hot"]);
    assert!(h.low_water(HOT_VOL) >= 2);
    assert_eq!(h.status("m").repairs, 4);
    h.assert_steering_restored();
}

#[tokio::test]
async fn a_target_pool_faulting_mid_rebuild_is_retried_on_another_target_pool() {
    let h = Harness::new(lab(Behaviour::default(), false)).await;
    h.store
        .insert(migration("m", HOT_VOL, Tier::Hot, Tier::Cold, false));
    // The first replica goes to n6-cold (emptiest); fault that pool as soon as the
    // executor starts waiting for its rebuild.
    let faulted = Arc::new(AtomicBool::new(false));
    let once = faulted.clone();
    let hook: Hook = Box::new(move |sim, reason, _| {
        if reason == "WaitingForSync" && !once.swap(true, Ordering::SeqCst) {
            sim.with(|c| c.fault_pool("n6-cold"));
        }
    });
    let outcome = h
        .executor(None, Some(hook))
        .drive("m", &tiers())
        .await
        .expect("drive");

    assert!(faulted.load(Ordering::SeqCst));
    assert_eq!(outcome.phase, MigrationPhase::Succeeded, "{outcome:?}");
    assert_eq!(h.pools(HOT_VOL), ["n3-cold", "n4-cold"]);
    assert!(h.low_water(HOT_VOL) >= 2);
    assert_eq!(h.status("m").repairs, 1);
    h.assert_steering_restored();
}

#[tokio::test]
async fn rebuilds_that_keep_failing_make_the_move_roll_back_after_the_repair_limit() {
    let h = Harness::new(lab(Behaviour::default(), false)).await;
    h.store
        .insert(migration("m", HOT_VOL, Tier::Hot, Tier::Cold, false));
    // Every new replica's rebuild fails at 40 %, wherever it lands.
    let hook: Hook = Box::new(|sim, reason, _| {
        if reason == "ScalingUp" {
            sim.with(|c| {
                for p in ["n3-cold", "n4-cold", "n6-cold"] {
                    c.fail_next_rebuild_on(p, 40);
                }
            });
        }
    });
    let exec = h.executor(None, Some(hook));
    let outcome = exec.drive("m", &tiers()).await.expect("drive");

    assert_eq!(outcome.phase, MigrationPhase::RolledBack, "{outcome:?}");
    assert_eq!(h.pools(HOT_VOL), ["n1-hot", "n2-hot"]);
    assert_eq!(h.sim.with(|c| c.num_replicas(HOT_VOL)), Some(2));
    assert!(h.low_water(HOT_VOL) >= 2);
    let status = h.status("m");
    assert_eq!(status.repairs, 4);
    assert!(status.abort_reason.is_some());
    assert!(status.last_error.is_some());
    // Each failed replica was removed before the next was added: never above 3.
    assert_eq!(h.replica_counts(HOT_VOL).into_iter().max(), Some(3));
    h.assert_steering_restored();
}

#[tokio::test]
async fn no_eligible_target_pool_rolls_back_without_changing_the_volume() {
    let h = Harness::new(lab(Behaviour::default(), false)).await;
    // Someone else has every cold pool cordoned; the executor leaves their cordons be.
    h.sim.with(|c| {
        for p in ["n3-cold", "n4-cold", "n6-cold"] {
            c.cordon_pool(p, [true, false, false, false], true)
                .expect("cordon");
        }
    });
    let before = steering_state(&h.sim);
    h.store
        .insert(migration("m", HOT_VOL, Tier::Hot, Tier::Cold, false));
    let exec = h.executor(None, None);
    let outcome = exec.drive("m", &tiers()).await.expect("drive");

    assert_eq!(outcome.phase, MigrationPhase::RolledBack, "{outcome:?}");
    assert!(outcome.message.contains("no cold pool"), "{outcome:?}");
    assert_eq!(h.pools(HOT_VOL), ["n1-hot", "n2-hot"]);
    assert_eq!(steering_state(&h.sim), before);
    let refused = exec
        .events()
        .recorded
        .reasons()
        .iter()
        .filter(|r| *r == "NoEligiblePool")
        .count();
    assert_eq!(refused, 3);
}

#[tokio::test]
async fn server_errors_and_lost_replies_never_add_a_replica_twice() {
    let h = Harness::new(lab(Behaviour::default(), false)).await;
    h.store
        .insert(migration("m", HOT_VOL, Tier::Hot, Tier::Cold, false));
    let counts = format!("/v0/volumes/{HOT_VOL}/replica_count");
    // The first +1 is carried out but its answer is lost; the next two replica-count
    // requests get a 503; one pool cordon gets a 500.
    h.sim.inject(
        Fault::fail_next(1, 500)
            .on(Method::PUT, &counts)
            .after_apply(),
    );
    h.sim
        .inject(Fault::fail_next(2, 503).on(Method::PUT, &counts));
    h.sim
        .inject(Fault::fail_next(1, 500).on(Method::PUT, "/v0/pools/n5-hot/cordon"));
    let exec = h.executor(None, None);
    let outcome = exec.drive("m", &tiers()).await.expect("drive");

    assert_eq!(outcome.phase, MigrationPhase::Succeeded, "{outcome:?}");
    assert!(h.pools(HOT_VOL).iter().all(|p| pool_tier(p) == "cold"));
    assert!(h.low_water(HOT_VOL) >= 2);
    let max = h.replica_counts(HOT_VOL).into_iter().max();
    assert_eq!(max, Some(3), "a replica was added twice");
    let warnings: Vec<String> = exec
        .events()
        .recorded
        .events()
        .into_iter()
        .filter(|e| e.kind == EventType::Warning)
        .map(|e| e.reason)
        .collect();
    assert!(
        warnings.contains(&"MayastorError".to_owned()),
        "{warnings:?}"
    );
    h.assert_steering_restored();
}

#[tokio::test]
async fn slow_answers_within_the_client_timeout_only_slow_the_move_down() {
    let h = Harness::new(lab(Behaviour::default(), false)).await;
    h.store
        .insert(migration("m", HOT_VOL, Tier::Hot, Tier::Cold, false));
    h.sim
        .inject(Fault::slow(None, "/v0/", Duration::from_millis(20)));
    let outcome = h
        .executor(None, None)
        .drive("m", &tiers())
        .await
        .expect("drive");
    assert_eq!(outcome.phase, MigrationPhase::Succeeded, "{outcome:?}");
    assert!(h.pools(HOT_VOL).iter().all(|p| pool_tier(p) == "cold"));
    h.assert_steering_restored();
}

// Two worker threads: the hook blocks one while the simulator finishes the slow
// request on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_up_whose_answer_times_out_is_re_observed_not_sent_again() {
    let h = Harness::new(lab(Behaviour::default(), false)).await;
    h.store
        .insert(migration("m", HOT_VOL, Tier::Hot, Tier::Cold, false));
    // The first replica-count change is carried out after 3 s; the client gives up
    // after 1 s (generous for every other request, even on a loaded machine).
    h.sim.inject(Fault {
        method: Some(Method::PUT),
        path_prefix: Some(format!("/v0/volumes/{HOT_VOL}/replica_count")),
        times: Some(1),
        action: FaultAction::Delay(Duration::from_secs(3)),
    });
    let mut cfg = mayastor::Config::new(h.sim.url());
    cfg.timeout = Duration::from_secs(1);
    let client = Mayastor::new(cfg).expect("client");
    // When the executor reports the unconfirmed change, wait until the slow request
    // has landed (the simulator runs on the other worker thread).
    let hook: Hook = Box::new(|sim, reason, _| {
        if reason == "ScaleUpUnconfirmed" {
            let end = std::time::Instant::now() + Duration::from_secs(30);
            while sim.with(|c| c.num_replicas(HOT_VOL)) != Some(3) {
                assert!(std::time::Instant::now() < end, "the slow +1 never landed");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    });
    let exec = h.executor_with(client, None, Some(hook));
    let outcome = exec.drive("m", &tiers()).await.expect("drive");

    assert_eq!(outcome.phase, MigrationPhase::Succeeded, "{outcome:?}");
    let pools = h.pools(HOT_VOL);
    assert!(pools.iter().all(|p| pool_tier(p) == "cold"), "{pools:?}");
    assert!(h.low_water(HOT_VOL) >= 2);
    let timeout = exec
        .events()
        .recorded
        .events()
        .into_iter()
        .find(|e| e.reason == "ScaleUpUnconfirmed")
        .expect("the timeout was reported");
    assert!(timeout.message.contains("no answer within"), "{timeout:?}");
    // The +1 that timed out was not sent again: the next count sent is the −1.
    assert_eq!(h.replica_counts(HOT_VOL), [3, 2, 3, 2]);
    h.assert_steering_restored();
}

#[tokio::test]
async fn a_move_past_its_timeout_rolls_back_with_steering_restored() {
    let slow_rebuilds = Behaviour {
        rebuild_time: Duration::from_secs(3600),
        ..Behaviour::default()
    };
    let h = Harness::new(lab(slow_rebuilds, false)).await;
    let mut m = migration("m", HOT_VOL, Tier::Hot, Tier::Cold, false);
    m.spec.timeout = GoDuration::new("5m");
    h.store.insert(m);
    let exec = h.executor(None, None);
    let outcome = exec.drive("m", &tiers()).await.expect("drive");

    assert_eq!(outcome.phase, MigrationPhase::RolledBack, "{outcome:?}");
    assert!(outcome.message.contains("timed out"), "{outcome:?}");
    assert_eq!(h.pools(HOT_VOL), ["n1-hot", "n2-hot"]);
    assert_eq!(h.sim.with(|c| c.num_replicas(HOT_VOL)), Some(2));
    assert!(h.low_water(HOT_VOL) >= 2);
    // Aborted within a poll of the timeout, not after the hour-long rebuild.
    let elapsed = h.sim.with(|c| c.now());
    assert!(elapsed < Duration::from_secs(400), "{elapsed:?}");
    let status = h.status("m");
    assert!(
        status
            .abort_reason
            .as_deref()
            .is_some_and(|r| r.contains("timed out"))
    );
    assert!(
        exec.events()
            .recorded
            .reasons()
            .contains(&"RollingBack".to_owned())
    );
    h.assert_steering_restored();
}

#[tokio::test]
async fn without_pool_cordon_the_steering_falls_back_to_labels_and_puts_them_back() {
    let old_server = Behaviour {
        pool_cordon_endpoint: false,
        ..Behaviour::default()
    };
    let h = Harness::new(lab(old_server, false)).await;
    h.store
        .insert(migration("m", HOT_VOL, Tier::Hot, Tier::Cold, false));
    let outcome = h
        .executor(None, None)
        .drive("m", &tiers())
        .await
        .expect("drive");
    assert_eq!(outcome.phase, MigrationPhase::Succeeded, "{outcome:?}");
    assert!(h.pools(HOT_VOL).iter().all(|p| pool_tier(p) == "cold"));
    assert!(h.low_water(HOT_VOL) >= 2);
    let mutations = h.sim.mutations();
    assert!(
        mutations
            .iter()
            .any(|r| r.method == "DELETE" && r.path == "/v0/pools/n5-hot/label/tier"),
        "{mutations:?}"
    );
    assert!(
        mutations
            .iter()
            .any(|r| r.method == "PUT" && r.path.starts_with("/v0/pools/n5-hot/label/tier=hot")),
        "{mutations:?}"
    );
    h.assert_steering_restored();
}

// --- Write-ahead and serialised windows ---------------------------------------------

/// For every change sent to the simulator, the status durable just before it already
/// said what was about to happen. Returns how many changes were checked.
async fn assert_journaled_before_sent(behaviour: Behaviour) -> usize {
    let h = Harness::new(lab(behaviour, false)).await;
    h.store
        .insert(migration("m", HOT_VOL, Tier::Hot, Tier::Cold, false));
    let exec = h.executor(None, None);
    let outcome = exec.drive("m", &tiers()).await.expect("drive");
    assert_eq!(outcome.phase, MigrationPhase::Succeeded, "{outcome:?}");
    let timeline = exec.store().timeline();
    let mut checked = 0;
    for (i, request) in h.sim.log().iter().enumerate() {
        if request.method == "GET" {
            continue;
        }
        // The last status written before request `i` was sent.
        let before = timeline
            .iter()
            .rev()
            .find(|(seen, _, _)| *seen <= i)
            .map(|(_, _, s)| s)
            .unwrap_or_else(|| {
                panic!(
                    "{} {} sent before any journal",
                    request.method, request.path
                )
            });
        let step = before.step;
        let path = &request.path;
        let pool = path.split('/').nth(3).unwrap_or_default();
        let recorded = |kind: &str| {
            before
                .steering
                .iter()
                .any(|c| c.pool == pool && c.kind == kind)
        };
        match (request.method.as_str(), path) {
            ("PUT", p) if p.contains("/replica_count/") => {
                let n: u8 = p
                    .rsplit('/')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("count");
                let want = if n == 3 {
                    MigrationStep::ScalingUp
                } else {
                    MigrationStep::ScalingDown
                };
                assert_eq!(step, Some(want), "{p}");
            }
            ("PUT", p) if p.ends_with("/cordon") => {
                assert!(recorded("Cordon"), "cordon of {pool} not recorded first");
            }
            ("DELETE", p) if p.contains("/label/") => {
                // The label's value is recorded before it goes.
                assert!(
                    recorded("Label"),
                    "label removal on {pool} not recorded first"
                );
                let value = before
                    .steering
                    .iter()
                    .find(|c| c.pool == pool)
                    .and_then(|c| c.previous_value.clone());
                assert!(value.is_some(), "{:?}", before.steering);
            }
            ("DELETE", p) if p.ends_with("/cordon") => {
                assert_eq!(step, Some(MigrationStep::RestoringSteering), "{p}");
            }
            ("PUT", p) if p.contains("/label/") => {
                assert_eq!(step, Some(MigrationStep::RestoringSteering), "{p}");
            }
            (method, p) => panic!("unexpected change {method} {p}"),
        }
        checked += 1;
    }
    checked
}

#[tokio::test]
async fn every_change_is_journaled_before_it_is_sent() {
    let checked = assert_journaled_before_sent(Behaviour::default()).await;
    assert!(checked >= 8, "only {checked} changes checked");
}

#[tokio::test]
async fn every_label_removal_is_journaled_with_its_value_before_it_is_sent() {
    let old_server = Behaviour {
        pool_cordon_endpoint: false,
        ..Behaviour::default()
    };
    let checked = assert_journaled_before_sent(old_server).await;
    assert!(checked >= 8, "only {checked} changes checked");
}

#[tokio::test]
async fn a_volume_that_cannot_be_steered_rolls_back_with_a_clear_reason() {
    // An old server (no pool cordon) and a volume without pool inclusion labels: no
    // label can be removed to keep n5-hot out.
    let old_server = Behaviour {
        pool_cordon_endpoint: false,
        ..Behaviour::default()
    };
    let mut c = lab(old_server, false);
    c.add_volume(VolumeSetup {
        uuid: COLD_VOL.to_owned(),
        size: GIB,
        thin: true,
        inclusion: BTreeMap::new(),
        target: None,
        pools: vec!["n1-hot".to_owned()],
    })
    .expect("volume");
    let h = Harness::new(c).await;
    h.store
        .insert(migration("m", COLD_VOL, Tier::Hot, Tier::Cold, false));
    let outcome = h
        .executor(None, None)
        .drive("m", &tiers())
        .await
        .expect("drive");
    assert_eq!(outcome.phase, MigrationPhase::RolledBack, "{outcome:?}");
    assert!(outcome.message.contains("cannot steer"), "{outcome:?}");
    assert_eq!(h.pools(COLD_VOL), ["n1-hot"]);
    assert!(h.replica_counts(COLD_VOL).is_empty());
    h.assert_steering_restored();
}

#[tokio::test]
async fn two_moves_at_once_never_have_steering_windows_open_together() {
    let h = Harness::new(lab(Behaviour::default(), true)).await;
    h.store
        .insert(migration("down", HOT_VOL, Tier::Hot, Tier::Cold, false));
    h.store
        .insert(migration("up", COLD_VOL, Tier::Cold, Tier::Hot, false));
    let exec = h.executor(None, None);
    let t = tiers();
    let (a, b) = tokio::join!(exec.drive("down", &t), exec.drive("up", &t));
    assert_eq!(a.expect("down").phase, MigrationPhase::Succeeded);
    assert_eq!(b.expect("up").phase, MigrationPhase::Succeeded);
    assert!(h.pools(HOT_VOL).iter().all(|p| pool_tier(p) == "cold"));
    assert!(h.pools(COLD_VOL).iter().all(|p| pool_tier(p) == "hot"));
    // Replay the cordons: "down" only ever cordons hot pools and "up" only cold ones,
    // so hot and cold pools cordoned at the same time would mean two open windows.
    let mut cordoned: BTreeMap<String, bool> = BTreeMap::new();
    let mut windows_seen = 0;
    for r in h
        .sim
        .log()
        .iter()
        .filter(|r| r.path.ends_with("/cordon") && r.status == 200)
    {
        let pool = r.path.split('/').nth(3).expect("pool").to_owned();
        cordoned.insert(pool, r.method == "PUT");
        let hot = cordoned.iter().any(|(p, on)| *on && pool_tier(p) == "hot");
        let cold = cordoned.iter().any(|(p, on)| *on && pool_tier(p) == "cold");
        assert!(!(hot && cold), "overlapping steering windows: {cordoned:?}");
        windows_seen += 1;
    }
    assert!(windows_seen >= 8);
    h.assert_steering_restored();
}

// --- Bad input -----------------------------------------------------------------------

#[tokio::test]
async fn an_invalid_spec_fails_at_once_without_touching_mayastor() {
    let h = Harness::new(lab(Behaviour::default(), false)).await;
    let mut m = migration("bad", HOT_VOL, Tier::Hot, Tier::Hot, false);
    m.spec.timeout = GoDuration::new("soon");
    h.store.insert(m);
    let outcome = h
        .executor(None, None)
        .drive("bad", &tiers())
        .await
        .expect("drive");
    assert_eq!(outcome.phase, MigrationPhase::Failed);
    assert_eq!(outcome.result(), "failed");
    assert!(outcome.message.contains("spec.toTier"), "{outcome:?}");
    assert!(outcome.message.contains("spec.timeout"), "{outcome:?}");
    assert!(h.sim.mutations().is_empty());
}

#[tokio::test]
async fn a_volume_mayastor_does_not_know_or_that_is_not_settled_is_refused() {
    let h = Harness::new(lab(Behaviour::default(), false)).await;
    h.store.insert(migration(
        "ghost",
        "99999999-0000-4000-8000-000000000009",
        Tier::Hot,
        Tier::Cold,
        false,
    ));
    let exec = h.executor(None, None);
    let outcome = exec.drive("ghost", &tiers()).await.expect("drive");
    assert_eq!(outcome.phase, MigrationPhase::Failed);
    assert!(outcome.message.contains("no volume"), "{outcome:?}");

    h.sim.with(|c| c.fault_pool("n2-hot"));
    h.store
        .insert(migration("m", HOT_VOL, Tier::Hot, Tier::Cold, false));
    let outcome = exec.drive("m", &tiers()).await.expect("drive");
    assert_eq!(outcome.phase, MigrationPhase::Failed);
    assert!(outcome.message.contains("not settled"), "{outcome:?}");
    assert!(h.sim.mutations().is_empty());

    // Replicas on the target tier already: not "wholly on the source tier".
    let fresh = Harness::new(lab(Behaviour::default(), false)).await;
    fresh.store.insert(migration(
        "wrong-way",
        HOT_VOL,
        Tier::Cold,
        Tier::Hot,
        false,
    ));
    let outcome = fresh
        .executor(None, None)
        .drive("wrong-way", &tiers())
        .await
        .expect("drive");
    assert_eq!(outcome.phase, MigrationPhase::Failed);
    assert!(
        outcome.message.contains("not on the source tier"),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn the_same_move_driven_twice_at_once_runs_only_once() {
    let h = Harness::new(lab(Behaviour::default(), false)).await;
    h.store
        .insert(migration("m", HOT_VOL, Tier::Hot, Tier::Cold, false));
    let exec = h.executor(None, None);
    let t = tiers();
    let (first, second) = tokio::join!(exec.drive("m", &t), exec.drive("m", &t));
    assert_eq!(first.expect("first").phase, MigrationPhase::Succeeded);
    assert!(
        matches!(&second, Err(ExecError::AlreadyRunning(n)) if n == "m"),
        "{second:?}"
    );
    assert_eq!(h.replica_counts(HOT_VOL), [3, 2, 3, 2]);
    // Once it is over, it may be driven again (and returns the outcome).
    let again = exec.drive("m", &t).await.expect("again");
    assert_eq!(again.phase, MigrationPhase::Succeeded);
}

// --- Deletion (the operator's finalizer) ----------------------------------------------

#[tokio::test]
async fn a_migration_deleted_before_it_started_ends_without_touching_mayastor_and_goes_away() {
    let h = Harness::new(lab(Behaviour::default(), false)).await;
    h.store
        .insert(finalized("m", HOT_VOL, Tier::Hot, Tier::Cold));
    h.store.request_deletion("m", SimClock(h.sim.clone()).now());
    assert!(h.store.object("m").is_some(), "held by the finalizer");
    let exec = h.executor(None, None);

    let outcome = exec.drive("m", &tiers()).await.expect("drive");

    assert_eq!(outcome.phase, MigrationPhase::RolledBack, "{outcome:?}");
    assert!(
        outcome.message.contains("nothing was changed")
            && outcome.message.contains("being deleted"),
        "{outcome:?}"
    );
    assert!(h.sim.mutations().is_empty(), "Mayastor was not touched");
    assert!(h.store.object("m").is_none(), "the finalizer was released");
    let last = h.store.writes("m").pop().expect("a terminal status");
    assert_eq!(last.phase, Some(MigrationPhase::RolledBack));
}

#[tokio::test]
async fn cancelling_a_move_while_its_replica_rebuilds_rolls_it_back_intact() {
    // An hour-long rebuild and a ten-hour timeout: only the cancel can end this move
    // early.
    let slow_rebuilds = Behaviour {
        rebuild_time: Duration::from_secs(3600),
        ..Behaviour::default()
    };
    let h = Harness::new(lab(slow_rebuilds, false)).await;
    let mut m = finalized("m", HOT_VOL, Tier::Hot, Tier::Cold);
    m.spec.timeout = GoDuration::new("10h");
    h.store.insert(m);
    let exec = Arc::new(h.executor(None, None));
    let driving = {
        let exec = exec.clone();
        tokio::spawn(async move { exec.drive("m", &tiers()).await })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while h.status("m").step != Some(MigrationStep::WaitingForSync) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            h.status("m")
        );
        tokio::task::yield_now().await;
    }
    assert_eq!(
        h.sim.with(|c| c.num_replicas(HOT_VOL)),
        Some(3),
        "a replica was added"
    );
    // What the runner does when it sees the deletionTimestamp of a move it drives.
    h.store.request_deletion("m", SimClock(h.sim.clone()).now());
    exec.cancel("m", couchestor_operator::executor::DELETED);

    let outcome = driving.await.expect("task").expect("drive");

    assert_eq!(outcome.phase, MigrationPhase::RolledBack, "{outcome:?}");
    assert!(outcome.message.contains("cancelled"), "{outcome:?}");
    assert_eq!(h.pools(HOT_VOL), ["n1-hot", "n2-hot"]);
    assert_eq!(h.sim.with(|c| c.num_replicas(HOT_VOL)), Some(2));
    assert!(
        h.low_water(HOT_VOL) >= 2,
        "never below the starting replicas"
    );
    let elapsed = h.sim.with(|c| c.now());
    assert!(
        elapsed < Duration::from_secs(3600),
        "did not wait for the rebuild: {elapsed:?}"
    );
    h.assert_steering_restored();
    assert!(h.store.object("m").is_none(), "the finalizer was released");
}

#[tokio::test]
async fn a_migration_deleted_while_its_operator_was_down_is_rolled_back_by_the_next_one() {
    let h = crashed_with_a_window_open().await;

    h.store.request_deletion("m", SimClock(h.sim.clone()).now());
    let next = h.executor(None, None);
    let outcome = next.drive("m", &tiers()).await.expect("drive");

    assert_eq!(outcome.phase, MigrationPhase::RolledBack, "{outcome:?}");
    assert_eq!(h.pools(HOT_VOL), ["n1-hot", "n2-hot"]);
    assert!(h.low_water(HOT_VOL) >= 2);
    h.assert_steering_restored();
    assert!(h.store.object("m").is_none(), "the finalizer was released");
}

#[tokio::test]
async fn abandoning_a_move_whose_policy_is_gone_undoes_its_steering_and_releases_it() {
    let h = crashed_with_a_window_open().await;

    let next = h.executor(None, None);
    let outcome = next
        .abandon("m", "policy tiering was deleted")
        .await
        .expect("abandon");

    assert_eq!(outcome.phase, MigrationPhase::Failed, "{outcome:?}");
    assert!(
        outcome.message.contains("policy tiering was deleted")
            && outcome.message.contains("steering undone"),
        "{outcome:?}"
    );
    h.assert_steering_restored();
    assert!(h.low_water(HOT_VOL) >= 2, "no replica was removed");
    let vm = h.store.object("m").expect("not being deleted: kept");
    assert!(!holds_finalizer(&vm), "{:?}", vm.metadata.finalizers);
    assert_eq!(h.status("m").phase, Some(MigrationPhase::Failed));
    // Abandoning again only reports the outcome.
    let again = next.abandon("m", "again").await.expect("again");
    assert_eq!(again.phase, MigrationPhase::Failed);
}

#[tokio::test]
async fn a_missing_migration_is_an_error_and_a_finished_one_is_left_alone() {
    let h = Harness::new(lab(Behaviour::default(), false)).await;
    let exec = h.executor(None, None);
    assert!(matches!(
        exec.drive("nope", &tiers()).await,
        Err(ExecError::NotFound(n)) if n == "nope"
    ));
    h.store
        .insert(migration("m", HOT_VOL, Tier::Hot, Tier::Cold, false));
    exec.drive("m", &tiers()).await.expect("drive");
    let requests = h.sim.log().len();
    let writes = h.store.write_count();
    let again = exec.drive("m", &tiers()).await.expect("again");
    assert_eq!(again.phase, MigrationPhase::Succeeded);
    assert_eq!(
        h.sim.log().len(),
        requests,
        "a finished move touched Mayastor"
    );
    assert_eq!(h.store.write_count(), writes);
}

// --- Crash-point campaign --------------------------------------------------------------

/// SplitMix64: a small deterministic generator, so a failing case can be replayed
/// from its printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Debug, Clone, Copy)]
struct Case {
    seed: u64,
    both_moves: bool,
    preserve: bool,
    cordon_endpoint: bool,
    /// The control plane removes the wrong replica once, then behaves.
    adversarial_once: bool,
    /// Some replica-count requests answer 503, and one pool cordon is carried out but
    /// answers 500.
    flaky: bool,
    crashes: [Option<(usize, CrashMode)>; 2],
}

const MOVES: [(&str, &str, Tier, Tier); 2] = [
    ("down", HOT_VOL, Tier::Hot, Tier::Cold),
    ("up", COLD_VOL, Tier::Cold, Tier::Hot),
];

/// Runs every move of `case` to the end, crashing (dropping the executor and starting
/// a fresh one from the persisted objects) at the case's crash points. Returns the
/// number of status writes the whole run made and how many crashes really happened.
async fn run_case(case: &Case) -> (usize, Vec<String>) {
    let behaviour = Behaviour {
        pool_cordon_endpoint: case.cordon_endpoint,
        victims: if case.adversarial_once {
            VictimPolicy::Adversarial
        } else {
            VictimPolicy::Documented
        },
        ..Behaviour::default()
    };
    let h = Harness::new(lab(behaviour, case.both_moves)).await;
    if case.flaky {
        h.sim
            .inject(Fault::fail_next(2, 503).on(Method::PUT, "/v0/volumes/"));
        h.sim.inject(
            Fault::fail_next(1, 500)
                .on(Method::PUT, "/v0/pools/")
                .after_apply(),
        );
    }
    let moves = if case.both_moves {
        &MOVES[..]
    } else {
        &MOVES[..1]
    };
    for (name, volume, from, to) in moves {
        h.store
            .insert(migration(name, volume, *from, *to, case.preserve));
    }
    let t = tiers();
    let mut lives = case.crashes.to_vec();
    lives.push(None);
    let mut writes = 0;
    let mut crashed = Vec::new();
    for crash in lives {
        let hook: Hook = Box::new(|sim, reason, _| {
            if reason == "TargetReplicaLost" {
                sim.with(|c| c.behaviour.victims = VictimPolicy::Documented);
            }
        });
        let exec = h.executor(crash, Some(hook));
        let results = if case.both_moves {
            let (a, b) = tokio::join!(exec.drive("down", &t), exec.drive("up", &t));
            vec![a, b]
        } else {
            vec![exec.drive("down", &t).await]
        };
        writes += exec.store().writes.load(Ordering::SeqCst);
        if exec.store().crashed() {
            // Where it crashed: the last durable step of the move that wrote last.
            let last = exec
                .store()
                .timeline()
                .last()
                .map(|(_, n, s)| (n.clone(), s.step));
            crashed.push(match last {
                Some((name, step)) => format!("{name}@{step:?}"),
                None => "before any write".to_owned(),
            });
            // A crash: every drive stopped on a failed write, and nothing else.
            for r in &results {
                assert!(
                    matches!(r, Err(ExecError::Store(_)) | Ok(_)),
                    "case {case:?}: {r:?}"
                );
            }
            continue;
        }
        for r in results {
            let outcome = r.unwrap_or_else(|e| panic!("case {case:?}: {e}"));
            assert_eq!(
                outcome.phase,
                MigrationPhase::Succeeded,
                "case {case:?}: {outcome:?}"
            );
        }
        break;
    }
    // Invariants after the last life.
    for (name, volume, from, to) in moves {
        let status = h.status(name);
        assert_eq!(
            status.phase,
            Some(MigrationPhase::Succeeded),
            "case {case:?}: {name} {status:?}"
        );
        assert!(status.steering.is_empty(), "case {case:?}: {name}");
        let pools = h.pools(volume);
        let on = |t: Tier| pools.iter().filter(|p| pool_tier(p) == t.as_str()).count();
        if case.preserve {
            assert_eq!(
                (on(*from), on(*to)),
                (2, 2),
                "case {case:?}: {name} {pools:?}"
            );
        } else {
            assert_eq!(
                (on(*from), on(*to)),
                (0, 2),
                "case {case:?}: {name} {pools:?}"
            );
        }
        assert_eq!(
            h.sim.with(|c| c.num_replicas(volume)),
            Some(u8::try_from(pools.len()).expect("count")),
            "case {case:?}"
        );
        assert!(
            h.low_water(volume) >= 2,
            "case {case:?}: {name} went below its 2 starting healthy replicas"
        );
    }
    assert_eq!(
        steering_state(&h.sim),
        h.start_steering,
        "case {case:?}: steering left behind"
    );
    (writes, crashed)
}

#[tokio::test]
async fn crash_point_campaign_every_move_finishes_on_its_target_tier_without_leftovers() {
    let master: u64 = std::env::var("EXECUTOR_CAMPAIGN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x00C0_FFEE);
    let cases: u64 = std::env::var("EXECUTOR_CAMPAIGN_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let started = std::time::Instant::now();
    // Baseline write counts per shape, to aim crash points inside the run.
    let mut baseline = BTreeMap::new();
    for both_moves in [false, true] {
        for preserve in [false, true] {
            for cordon_endpoint in [false, true] {
                let case = Case {
                    seed: 0,
                    both_moves,
                    preserve,
                    cordon_endpoint,
                    adversarial_once: false,
                    flaky: false,
                    crashes: [None, None],
                };
                let (writes, _) = run_case(&case).await;
                baseline.insert((both_moves, preserve, cordon_endpoint), writes);
            }
        }
    }
    let mut crash_points = 0;
    let mut at_steps: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..cases {
        let seed = master.wrapping_add(i);
        let mut rng = Rng(seed);
        let both_moves = rng.chance(50);
        let preserve = rng.chance(25);
        let cordon_endpoint = rng.chance(70);
        let adversarial_once = rng.chance(20);
        let flaky = rng.chance(20);
        let total = baseline[&(both_moves, preserve, cordon_endpoint)];
        let mut point = || {
            let at = 1 + usize::try_from(rng.below(total as u64)).expect("index");
            let mode = if rng.chance(50) {
                CrashMode::BeforeWrite
            } else {
                CrashMode::AfterWrite
            };
            (at, mode)
        };
        let first = point();
        let second = point();
        let second = if rng.chance(40) { Some(second) } else { None };
        let case = Case {
            seed,
            both_moves,
            preserve,
            cordon_endpoint,
            adversarial_once,
            flaky,
            crashes: [Some(first), second],
        };
        let outcome = tokio::spawn(async move { run_case(&case).await }).await;
        match outcome {
            Ok((_, crashed)) => {
                crash_points += crashed.len();
                for at in crashed {
                    *at_steps.entry(at).or_default() += 1;
                }
            }
            Err(e) => panic!(
                "crash campaign case {i} failed; replay with EXECUTOR_CAMPAIGN_SEED={} \
                 EXECUTOR_CAMPAIGN_CASES=1: {e}",
                case.seed
            ),
        }
    }
    eprintln!(
        "crash campaign: {cases} cases, {crash_points} crash points, master seed {master}, {:?}",
        started.elapsed()
    );
    eprintln!("crash points by (move, last durable step): {at_steps:?}");
    if std::env::var("EXECUTOR_CAMPAIGN_CASES").is_err() {
        assert!(crash_points >= 100, "only {crash_points} crash points");
    }
}
