use std::collections::BTreeMap;

use couchestor_core::{
    Tier, Timestamp, VolumeMigration,
    api::{
        MIGRATION_HISTORY_LIMIT, MigrationPhase, MigrationRecord, PolicyPhase, StoragePolicySpec,
        Time, VolumeMigrationSpec, VolumeMigrationStatus,
    },
    condition::{self, METRICS_AVAILABLE, READY},
    plan::{ObservedVolume, plan},
    tier::Load,
};

use super::*;

fn at(s: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + s).expect("time")
}

fn policy(extra: serde_json::Value) -> StoragePolicySpec {
    let mut v = serde_json::json!({
        "storageClassName": "tiered",
        "hotPoolSelector": {"matchLabels": {"tier": "hot"}},
        "coldPoolSelector": {"matchLabels": {"tier": "cold"}},
        "samplingWindow": "10m",
        "cooldownPeriod": "1h",
    });
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    serde_json::from_value(v).expect("policy")
}

fn volume(name: &str, tier: &str, iops: f64) -> ObservedVolume {
    ObservedVolume {
        name: name.to_owned(),
        replica_pools: vec![BTreeMap::from([("tier".to_owned(), tier.to_owned())])],
        load: Load::Known {
            iops,
            history: std::time::Duration::from_secs(3600),
        },
        last_moved: None,
        recorded_tier: None,
    }
}

fn vm(volume: &str, phase: Option<MigrationPhase>, finished: Option<i64>) -> VolumeMigration {
    let mut m = VolumeMigration::new(
        &format!("gold.{volume}"),
        VolumeMigrationSpec {
            policy_ref: "gold".into(),
            volume_name: volume.into(),
            volume_id: "u".into(),
            from_tier: Tier::Hot,
            to_tier: Tier::Cold,
            preserve_source_replica: false,
            timeout: "30m".into(),
        },
    );
    m.status = Some(VolumeMigrationStatus {
        phase,
        start_time: finished.map(|f| Time(at(f - 60))),
        completion_time: finished.map(|f| Time(at(f))),
        ..VolumeMigrationStatus::default()
    });
    m
}

#[test]
fn a_dry_run_publishes_the_plan_and_counts_nothing_started() {
    let spec = policy(serde_json::json!({"dryRun": true}));
    let vols = [volume("pvc-a", "cold", 9000.0), volume("pvc-b", "hot", 1.0)];
    let p = plan(&spec, &vols, &[], at(0)).expect("plan");
    let ledger = Ledger::default();
    let s = next_status(
        &StoragePolicyStatus::default(),
        &Inputs {
            generation: Some(3),
            now: at(0),
            ledger: &ledger,
            started: 0,
            evaluation: Evaluation::Evaluated {
                plan: &p,
                metrics: Metrics::Available,
                archived: 0,
            },
        },
    );
    assert_eq!(s.phase, Some(PolicyPhase::Active));
    assert_eq!(s.observed_generation, Some(3));
    let planned: Vec<(&str, Tier, Tier)> = s
        .planned_migrations
        .iter()
        .map(|m| (m.volume.as_str(), m.from_tier, m.to_tier))
        .collect();
    // Most misplaced first: 1 IOPS is further below 500 than 9000 is above 5000.
    assert_eq!(
        planned,
        [
            ("pvc-b", Tier::Hot, Tier::Cold),
            ("pvc-a", Tier::Cold, Tier::Hot)
        ]
    );
    assert_eq!((s.volumes.hot, s.volumes.cold), (1, 1));
    assert_eq!((s.total_migrations, s.active_migrations), (0, 0));
    assert!(condition::is_true(&s.conditions, READY));
}

#[test]
fn unknown_metrics_give_metrics_available_false_and_no_planned_moves() {
    let spec = policy(serde_json::json!({"dryRun": true}));
    let p = plan(&spec, &[volume("pvc-a", "cold", 9000.0)], &[], at(0)).expect("plan");
    let s = next_status(
        &StoragePolicyStatus::default(),
        &Inputs {
            generation: Some(1),
            now: at(0),
            ledger: &Ledger::default(),
            started: 0,
            evaluation: Evaluation::Evaluated {
                plan: &p,
                metrics: Metrics::QueryFailed("Prometheus unreachable".into()),
                archived: 0,
            },
        },
    );
    let c = condition::get(&s.conditions, METRICS_AVAILABLE).expect("condition");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "QueryFailed")
    );
    assert!(c.message.contains("unreachable"));
    assert!(s.planned_migrations.is_empty());
    assert!(!condition::is_true(&s.conditions, READY));
}

#[test]
fn disabled_keeps_counts_and_reports_moves_still_in_flight() {
    let previous = StoragePolicyStatus {
        phase: Some(PolicyPhase::Active),
        volumes: couchestor_core::api::TierCounts {
            hot: 4,
            ..Default::default()
        },
        total_migrations: 7,
        ..StoragePolicyStatus::default()
    };
    let ledger = Ledger::of("gold", &[vm("pvc-a", Some(MigrationPhase::Running), None)]);
    let s = next_status(
        &previous,
        &Inputs {
            generation: Some(2),
            now: at(0),
            ledger: &ledger,
            started: 0,
            evaluation: Evaluation::Disabled,
        },
    );
    assert_eq!(s.phase, Some(PolicyPhase::Disabled));
    assert_eq!(s.active_migrations, 1);
    assert_eq!(s.total_migrations, 7);
    assert_eq!(s.volumes.hot, 4);
    let ready = condition::get(&s.conditions, READY).expect("Ready");
    assert_eq!(ready.reason, "Disabled");
}

#[test]
fn finished_moves_enter_the_history_once_and_failures_count() {
    let migrations = [
        vm("pvc-a", Some(MigrationPhase::Succeeded), Some(100)),
        vm("pvc-b", Some(MigrationPhase::RolledBack), Some(200)),
        vm("pvc-c", Some(MigrationPhase::Running), None),
    ];
    let ledger = Ledger::of("gold", &migrations);
    let inputs = |started| Inputs {
        generation: Some(1),
        now: at(300),
        ledger: &ledger,
        started,
        evaluation: Evaluation::Disabled,
    };
    let first = next_status(&StoragePolicyStatus::default(), &inputs(2));
    assert_eq!(first.migration_history.len(), 2);
    assert_eq!(first.migration_history[0].volume, "pvc-b", "newest first");
    assert_eq!(first.failed_migrations, 1);
    assert_eq!(first.total_migrations, 2);
    assert_eq!(first.active_migrations, 3);
    // The same migrations seen again: nothing recounted; counters only grow.
    let second = next_status(&first, &inputs(0));
    assert_eq!(second.migration_history, first.migration_history);
    assert_eq!(second.failed_migrations, 1);
    assert_eq!(second.total_migrations, 2);
}

#[test]
fn the_history_stays_bounded_and_old_records_are_not_recounted() {
    let migrations: Vec<VolumeMigration> = (0..30)
        .map(|i| {
            vm(
                &format!("pvc-{i:02}"),
                Some(MigrationPhase::Failed),
                Some(i),
            )
        })
        .collect();
    let ledger = Ledger::of("gold", &migrations);
    let inputs = Inputs {
        generation: Some(1),
        now: at(100),
        ledger: &ledger,
        started: 0,
        evaluation: Evaluation::Disabled,
    };
    let s = next_status(&StoragePolicyStatus::default(), &inputs);
    assert_eq!(s.migration_history.len(), MIGRATION_HISTORY_LIMIT);
    assert_eq!(s.migration_history[0].volume, "pvc-29");
    assert_eq!(s.failed_migrations, 30);
    let again = next_status(&s, &inputs);
    assert_eq!(
        again.failed_migrations, 30,
        "records that fell out are not recounted"
    );
}

#[test]
fn a_finished_move_sets_cooldown_and_the_recorded_tier() {
    let ledger = Ledger::of(
        "gold",
        &[vm("pvc-a", Some(MigrationPhase::Succeeded), Some(100)), {
            let mut m = vm("pvc-b", Some(MigrationPhase::Running), None);
            m.spec.policy_ref = "silver".into();
            m
        }],
    );
    assert!(
        ledger.in_flight().is_empty(),
        "another policy's move is not ours"
    );
    let last = ledger.last_move("pvc-a").expect("moved");
    assert_eq!(last.finished_at, Some(at(100)));
    assert_eq!(last.settled_tier, Some(Tier::Cold));
    assert_eq!(ledger.migrations_of("pvc-a"), 1);
    let records: Vec<MigrationRecord> = Ledger::records(&ledger.unrecorded(&[]));
    assert_eq!(records[0].result, "Succeeded");
}

#[test]
fn the_apply_body_carries_only_the_status_with_type_meta() {
    let body = apply_body(&StoragePolicyStatus {
        phase: Some(PolicyPhase::Disabled),
        ..StoragePolicyStatus::default()
    });
    assert_eq!(body["apiVersion"], "couchestor.io/v1alpha1");
    assert_eq!(body["kind"], "StoragePolicy");
    assert_eq!(body["status"]["phase"], "Disabled");
    assert!(body.get("spec").is_none() && body.get("metadata").is_none());
}
