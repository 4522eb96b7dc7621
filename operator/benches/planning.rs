//! One planning cycle for 10,000 synthetic volumes: the PV filter of the controller,
//! `couchestor_core::plan`, the migration ledger, the next status and the
//! VolumeMigration objects for the planned moves — everything a reconcile computes
//! between reading its inputs and writing. Reports CPU time (getrusage) and the peak
//! RSS of the whole process (ru_maxrss). Not a timed test: a figure with its command.
//!
//! `cargo bench -p couchestor-operator --bench planning`

use std::{collections::BTreeMap, time::Duration};

use couchestor_core::{
    StoragePolicy, Tier, Timestamp, VolumeMigration,
    api::{MigrationPhase, StoragePolicyStatus, Time, VolumeMigrationSpec, VolumeMigrationStatus},
    plan::{ObservedVolume, plan},
    tier::Load,
};
use couchestor_operator::controller::{
    ledger::Ledger,
    migration,
    observe::watched_volumes,
    status::{Evaluation, Inputs, Metrics, next_status},
};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};

const VOLUMES: usize = 10_000;

/// (user + system CPU seconds, peak RSS in KiB) of this process so far.
fn usage() -> (f64, i64) {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a `rusage` into the pointer it is given; the pointer is
    // to a zeroed, properly aligned `rusage` that lives for the call.
    #[allow(unsafe_code)]
    let ru = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr());
        ru.assume_init()
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(ru.ru_utime) + secs(ru.ru_stime), ru.ru_maxrss)
}

/// A deterministic spread of loads: most volumes in their band, some far outside.
fn iops(i: usize) -> f64 {
    let x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
    match x % 10 {
        0 => 9_000.0 + (x % 5_000) as f64,
        1 => (x % 300) as f64,
        _ => 600.0 + (x % 4_000) as f64,
    }
}

fn main() {
    let policy: StoragePolicy = serde_json::from_value(serde_json::json!({
        "apiVersion": "couchestor.io/v1alpha1", "kind": "StoragePolicy",
        "metadata": {"name": "bench", "uid": "bench-uid", "generation": 1},
        "spec": {
            "storageClassName": "tiered",
            "hotPoolSelector": {"matchLabels": {"tier": "hot"}},
            "warmPoolSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["warm"]}]},
            "coldPoolSelector": {"matchLabels": {"tier": "cold"}},
            "maxConcurrentMigrations": 50,
            "cooldownPeriod": "1h",
        }
    }))
    .expect("policy");
    let now = Timestamp::now();
    let tiers = ["hot", "warm", "cold"];
    let pvs: Vec<PersistentVolume> = (0..VOLUMES)
        .map(|i| {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": format!("pvc-{i:08}")},
                "spec": {"storageClassName": if i % 20 == 0 { "other" } else { "tiered" },
                         "csi": {"driver": "io.openebs.csi-mayastor", "volumeHandle": format!("uuid-{i:08}")}},
                "status": {"phase": "Bound"}
            }))
            .expect("pv")
        })
        .collect();
    let migrations: Vec<VolumeMigration> = (0..VOLUMES / 20)
        .map(|i| {
            let mut m = VolumeMigration::new(
                &format!("bench.pvc-{:08}.cold.0", i * 7),
                VolumeMigrationSpec {
                    policy_ref: "bench".into(),
                    volume_name: format!("pvc-{:08}", i * 7),
                    volume_id: format!("uuid-{:08}", i * 7),
                    from_tier: Tier::Hot,
                    to_tier: Tier::Cold,
                    preserve_source_replica: false,
                    timeout: "30m".into(),
                },
            );
            m.status = Some(VolumeMigrationStatus {
                phase: Some(if i % 50 == 0 {
                    MigrationPhase::Running
                } else {
                    MigrationPhase::Succeeded
                }),
                completion_time: Some(Time(now - Duration::from_secs(7200 + i as u64))),
                ..VolumeMigrationStatus::default()
            });
            m
        })
        .collect();
    let (cpu0, rss0) = usage();

    let watched = watched_volumes(&policy.spec, &pvs, &[] as &[PersistentVolumeClaim]);
    let ledger = Ledger::of("bench", &migrations);
    let observed: Vec<ObservedVolume> = watched
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let last = ledger.last_move(&w.pv);
            ObservedVolume {
                name: w.pv.clone(),
                replica_pools: (0..3)
                    .map(|_| BTreeMap::from([("tier".to_owned(), tiers[i % 3].to_owned())]))
                    .collect(),
                load: Load::Known {
                    iops: iops(i),
                    history: Duration::from_secs(3600),
                },
                last_moved: last.and_then(|l| l.finished_at),
                recorded_tier: last.and_then(|l| l.settled_tier),
            }
        })
        .collect();
    let p = plan(&policy.spec, &observed, ledger.in_flight(), now).expect("plan");
    let vms: Vec<VolumeMigration> = p
        .executable()
        .iter()
        .map(|mv| migration::build(&policy, mv, "uuid", ledger.migrations_of(&mv.volume)))
        .collect();
    let status = next_status(
        &StoragePolicyStatus::default(),
        &Inputs {
            generation: Some(1),
            now,
            ledger: &ledger,
            started: u32::try_from(vms.len()).unwrap_or(u32::MAX),
            evaluation: Evaluation::Evaluated {
                plan: &p,
                metrics: Metrics::Available,
                archived: 0,
            },
        },
    );
    let body = serde_json::to_vec(&couchestor_operator::controller::status::apply_body(
        &status,
    ))
    .expect("body");

    let (cpu1, rss1) = usage();
    println!("command: cargo bench -p couchestor-operator --bench planning");
    println!(
        "volumes: {} watched of {VOLUMES} PVs, {} decisions, {} moves started, {} in flight, status body {} bytes",
        watched.len(),
        p.decisions.len(),
        vms.len(),
        ledger.in_flight().len(),
        body.len()
    );
    println!(
        "counts: hot {} warm {} cold {} unplaced {}",
        status.volumes.hot, status.volumes.warm, status.volumes.cold, status.volumes.unplaced
    );
    println!("cpu time of the cycle: {:.3} s", cpu1 - cpu0);
    println!(
        "peak RSS of the process: {:.1} MiB (before the cycle: {:.1} MiB)",
        rss1 as f64 / 1024.0,
        rss0 as f64 / 1024.0
    );
}
