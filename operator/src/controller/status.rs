//! What a reconcile writes into `StoragePolicy.status`. Pure: the previous status and
//! what the reconcile found in, the next status out.

use couchestor_core::{
    StoragePolicy, Timestamp,
    api::{PlannedMigration, PolicyPhase, StoragePolicyStatus, Time},
    condition::{self, MAYASTOR_AVAILABLE, METRICS_AVAILABLE, READY, Status, VALID},
    plan::Plan,
};
use kube::Resource;

use super::ledger::Ledger;

/// Whether the policy's metrics could be used this cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Metrics {
    Available,
    /// The query failed (unreachable, timeout, error, malformed answer).
    QueryFailed(String),
    /// Prometheus answered but had no sample for any watched volume (stale exporter,
    /// wrong metric names).
    NoData(String),
}

impl Metrics {
    fn condition(&self) -> (Status, &'static str, String) {
        match self {
            Metrics::Available => (
                Status::True,
                "Fresh",
                "Prometheus answered with data for the watched volumes".to_owned(),
            ),
            Metrics::QueryFailed(why) => (Status::False, "QueryFailed", why.clone()),
            Metrics::NoData(why) => (Status::False, "NoData", why.clone()),
        }
    }
}

/// What a reconcile found.
#[derive(Debug)]
pub enum Evaluation<'a> {
    /// `enabled: false`: nothing observed, nothing started.
    Disabled,
    /// The spec failed validation (message lists every field error).
    Invalid(String),
    /// Mayastor did not answer: no placement, so no plan.
    MayastorUnavailable(String),
    /// A plan was made.
    Evaluated {
        plan: &'a Plan,
        metrics: Metrics,
        /// Watched volumes living only in the EC archive.
        archived: u32,
    },
}

/// Everything [`next_status`] needs besides the previous status.
#[derive(Debug)]
pub struct Inputs<'a> {
    pub generation: Option<i64>,
    pub now: Timestamp,
    pub ledger: &'a Ledger,
    /// Migrations this reconcile created.
    pub started: u32,
    pub evaluation: Evaluation<'a>,
}

/// The next status: phase, conditions, counts, counters (monotonic), history (bounded,
/// newest first) and, in a dry run, the planned moves.
pub fn next_status(previous: &StoragePolicyStatus, input: &Inputs<'_>) -> StoragePolicyStatus {
    let mut s = previous.clone();
    let gen_ = input.generation;
    let now = input.now;
    let set = |s: &mut StoragePolicyStatus, t: &str, st: Status, reason: &str, msg: String| {
        condition::set(&mut s.conditions, t, st, reason, msg, gen_, now);
    };

    s.observed_generation = gen_;
    s.last_evaluated = Some(Time(now));
    s.planned_migrations.clear();

    let unrecorded = input.ledger.unrecorded(&previous.migration_history);
    for record in Ledger::records(&unrecorded) {
        if record.result != "Succeeded" {
            s.failed_migrations += 1;
        }
        s.record(record);
    }
    s.total_migrations += u64::from(input.started);
    s.active_migrations =
        u32::try_from(input.ledger.in_flight().len()).unwrap_or(u32::MAX) + input.started;

    match &input.evaluation {
        Evaluation::Disabled => {
            s.phase = Some(PolicyPhase::Disabled);
            set(
                &mut s,
                READY,
                Status::False,
                "Disabled",
                "enabled is false: no new moves; moves in flight finish".to_owned(),
            );
        }
        Evaluation::Invalid(why) => {
            s.phase = Some(PolicyPhase::Error);
            set(&mut s, VALID, Status::False, "Invalid", why.clone());
            set(
                &mut s,
                READY,
                Status::False,
                "Invalid",
                "the spec is invalid; see the Valid condition".to_owned(),
            );
        }
        Evaluation::MayastorUnavailable(why) => {
            if s.phase != Some(PolicyPhase::Active) {
                s.phase = Some(PolicyPhase::Pending);
            }
            set(&mut s, VALID, Status::True, "Valid", String::new());
            set(
                &mut s,
                MAYASTOR_AVAILABLE,
                Status::False,
                "Unreachable",
                why.clone(),
            );
            set(
                &mut s,
                READY,
                Status::False,
                "MayastorUnavailable",
                "no moves while Mayastor does not answer".to_owned(),
            );
        }
        Evaluation::Evaluated {
            plan,
            metrics,
            archived,
        } => {
            s.phase = Some(PolicyPhase::Active);
            s.volumes = plan.counts.clone();
            s.volumes.archived = *archived;
            set(&mut s, VALID, Status::True, "Valid", String::new());
            set(
                &mut s,
                MAYASTOR_AVAILABLE,
                Status::True,
                "Answered",
                String::new(),
            );
            let (st, reason, msg) = metrics.condition();
            set(&mut s, METRICS_AVAILABLE, st, reason, msg);
            if *metrics == Metrics::Available {
                if plan.dry_run {
                    s.planned_migrations = plan.moves.iter().map(PlannedMigration::from).collect();
                }
                let ready = if plan.dry_run {
                    "dry run: moves are planned, not started"
                } else {
                    "evaluated"
                };
                set(&mut s, READY, Status::True, "Evaluated", ready.to_owned());
            } else {
                set(
                    &mut s,
                    READY,
                    Status::False,
                    "MetricsUnavailable",
                    "no moves while metrics are unknown".to_owned(),
                );
            }
        }
    }
    s
}

/// The server-side-apply body for the status subresource: only `status` (with the
/// type's apiVersion and kind), so the operator's field manager owns nothing else.
pub fn apply_body(status: &StoragePolicyStatus) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": StoragePolicy::api_version(&()),
        "kind": StoragePolicy::kind(&()),
        "status": status,
    })
}

#[cfg(test)]
mod tests;
