//! Migration planning: `plan(policy, observed volumes, in-flight moves, now) -> Plan`.
//!
//! Pure: the operator gathers the observed state (Prometheus, Mayastor, Kubernetes),
//! calls [`plan`], and executes the result. The plan explains every volume's outcome,
//! which feeds dry-run output (`status.plannedMigrations`) and Events.
//!
//! Rules, in order: an invalid policy plans nothing (the error says why); a volume with
//! a move in flight is left alone; unknown load never moves; `enabled: false` starts no
//! move; cooldown and the sampling window are respected ([`crate::tier`]); at most
//! `maxConcurrentMigrations − in-flight` moves start, the most misplaced first (ties by
//! name, so the order is deterministic); `dryRun` marks the plan so nothing is executed.

use std::{cmp::Ordering, collections::BTreeMap};

use crate::{
    Tier, Timestamp,
    api::{PlannedMigration, StoragePolicySpec, TierCounts},
    selector,
    tier::{self, Classification, ClassifyInput, Load, Timing, Watermarks},
    validation::{ValidationErrors, validate_storage_policy},
};

/// One watched volume as the operator observed it.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedVolume {
    /// PersistentVolume name.
    pub name: String,
    /// Labels of the Mayastor pools holding the volume's healthy replicas.
    pub replica_pools: Vec<BTreeMap<String, String>>,
    /// IOPS over the sampling window, or unknown.
    pub load: Load,
    /// When the volume's last move finished.
    pub last_moved: Option<Timestamp>,
    /// The tier recorded by the volume's last successful move; decides the tier when
    /// `preserveSourceReplica` left replicas on several tiers.
    pub recorded_tier: Option<Tier>,
}

/// A move already running (a `VolumeMigration` that is not finished).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlightMove {
    pub volume: String,
    pub from: Tier,
    pub to: Tier,
}

/// Where a volume's replicas are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Every replica is on pools of this tier (or the recorded tier breaks a tie).
    On(Tier),
    /// Replicas on pools of no tier, on pools of several tiers, or no replica at all.
    Unplaced { reason: String },
}

/// What the plan decided for one volume.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Start this move now (or, in a dry run, would start it).
    Move { from: Tier, to: Tier, iops: f64 },
    /// Should move, but `maxConcurrentMigrations` is reached.
    Deferred { from: Tier, to: Tier },
    /// A move of this volume is already in flight.
    InFlight { to: Tier },
    /// Stays where it is (inside its keep band).
    Stay,
    /// Would move but its cooldown has not passed.
    CoolingDown { to: Tier, until: Timestamp },
    /// Not enough data to decide (never a move).
    Unknown,
    /// Tier unknown from its replicas.
    Unplaced,
    /// The policy is disabled; `wanted` is what it would otherwise do.
    Disabled { wanted: Option<Tier> },
}

/// One volume's decision with its explanation.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub volume: String,
    pub placement: Placement,
    pub outcome: Outcome,
    /// Human-readable reason, for dry-run status and Events.
    pub reason: String,
}

/// A move the executor should start.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedMove {
    pub volume: String,
    pub from: Tier,
    pub to: Tier,
    pub iops: f64,
    /// How far outside its keep band the volume is (natural-log ratio to the crossed
    /// watermark); moves are ordered by this, largest first.
    pub misplacement: f64,
    pub reason: String,
}

impl From<&PlannedMove> for PlannedMigration {
    fn from(m: &PlannedMove) -> Self {
        PlannedMigration {
            volume: m.volume.clone(),
            from_tier: m.from,
            to_tier: m.to,
            observed_iops: m.iops,
            reason: m.reason.clone(),
        }
    }
}

/// The result of one planning cycle for one policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// `dryRun`: the executor must start nothing; `moves` are what it would start.
    pub dry_run: bool,
    /// Moves to start now, most misplaced first.
    pub moves: Vec<PlannedMove>,
    /// One decision per observed volume, in input order.
    pub decisions: Vec<Decision>,
    /// Volumes per tier as observed.
    pub counts: TierCounts,
}

impl Plan {
    /// The moves to execute: none in a dry run.
    pub fn executable(&self) -> &[PlannedMove] {
        if self.dry_run { &[] } else { &self.moves }
    }

    /// Decisions with the given outcome kind, for tests and summaries.
    pub fn decision(&self, volume: &str) -> Option<&Decision> {
        self.decisions.iter().find(|d| d.volume == volume)
    }
}

/// Which tier a pool with `labels` belongs to under `policy`; `Err` lists the tiers
/// when several selectors match (an ambiguous pool).
pub fn pool_tier(
    policy: &StoragePolicySpec,
    labels: &BTreeMap<String, String>,
) -> Result<Option<Tier>, Vec<Tier>> {
    let matching: Vec<Tier> = policy
        .tiers()
        .into_iter()
        .filter(|t| {
            policy
                .pool_selector(*t)
                .is_some_and(|s| selector::matches(s, labels))
        })
        .collect();
    match matching.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        _ => Err(matching),
    }
}

/// Where a volume is, from the pools of its replicas.
pub fn placement(policy: &StoragePolicySpec, volume: &ObservedVolume) -> Placement {
    if volume.replica_pools.is_empty() {
        return Placement::Unplaced {
            reason: "no healthy replica".to_owned(),
        };
    }
    let mut tiers = Vec::new();
    for labels in &volume.replica_pools {
        match pool_tier(policy, labels) {
            Ok(Some(t)) => tiers.push(t),
            Ok(None) => {
                return Placement::Unplaced {
                    reason: format!(
                        "a replica is on a pool (labels {labels:?}) that no tier selector matches"
                    ),
                };
            }
            Err(several) => {
                let names: Vec<&str> = several.iter().map(|t| t.as_str()).collect();
                return Placement::Unplaced {
                    reason: format!(
                        "a replica is on a pool (labels {labels:?}) matched by several tiers: {}",
                        names.join(", ")
                    ),
                };
            }
        }
    }
    tiers.sort();
    tiers.dedup();
    match (tiers.as_slice(), volume.recorded_tier) {
        ([one], _) => Placement::On(*one),
        (several, Some(recorded)) if several.contains(&recorded) => Placement::On(recorded),
        (several, _) => {
            let names: Vec<&str> = several.iter().rev().map(|t| t.as_str()).collect();
            Placement::Unplaced {
                reason: format!("replicas span tiers {}", names.join(", ")),
            }
        }
    }
}

/// Plans one cycle for one policy. An invalid policy yields its validation errors and
/// no plan.
pub fn plan(
    policy: &StoragePolicySpec,
    volumes: &[ObservedVolume],
    in_flight: &[InFlightMove],
    now: Timestamp,
) -> Result<Plan, ValidationErrors> {
    validate_storage_policy(policy)?;
    // Validation guarantees the durations parse.
    let timing = Timing {
        sampling_window: policy.sampling_window.parse().unwrap_or_default(),
        cooldown: policy.cooldown_period.parse().unwrap_or_default(),
    };
    let marks = Watermarks {
        low: f64::from(policy.low_watermark_iops),
        warm: policy.effective_warm_watermark_iops().map(f64::from),
        high: f64::from(policy.high_watermark_iops),
    };

    let mut counts = TierCounts::default();
    let mut decisions = Vec::with_capacity(volumes.len());
    let mut candidates: Vec<(usize, PlannedMove)> = Vec::new();

    for volume in volumes {
        let placement = placement(policy, volume);
        match &placement {
            Placement::On(Tier::Hot) => counts.hot += 1,
            Placement::On(Tier::Warm) => counts.warm += 1,
            Placement::On(Tier::Cold) => counts.cold += 1,
            Placement::Unplaced { .. } => counts.unplaced += 1,
        }
        let decide = |outcome, reason: String| Decision {
            volume: volume.name.clone(),
            placement: placement.clone(),
            outcome,
            reason,
        };
        if let Some(m) = in_flight.iter().find(|m| m.volume == volume.name) {
            decisions.push(decide(
                Outcome::InFlight { to: m.to },
                format!("move {} → {} in flight", m.from, m.to),
            ));
            continue;
        }
        let current = match &placement {
            Placement::On(t) => *t,
            Placement::Unplaced { reason } => {
                decisions.push(decide(Outcome::Unplaced, format!("{reason}; not moved")));
                continue;
            }
        };
        let input = ClassifyInput {
            current,
            load: volume.load,
            last_moved: volume.last_moved,
            now,
        };
        let decision = match tier::classify(&input, &marks, &timing) {
            _ if !policy.enabled => {
                let wanted = match volume.load {
                    Load::Known { iops, .. } => tier::target_tier(current, iops, &marks),
                    Load::Unknown => None,
                };
                let would = wanted
                    .map(|t| format!("; would move {current} → {t}"))
                    .unwrap_or_default();
                decide(
                    Outcome::Disabled { wanted },
                    format!("policy disabled, no new moves{would}"),
                )
            }
            Classification::Stay { reason } => decide(Outcome::Stay, reason),
            Classification::Unknown { reason } => decide(Outcome::Unknown, reason),
            Classification::CoolingDown {
                wanted,
                until,
                reason,
            } => decide(Outcome::CoolingDown { to: wanted, until }, reason),
            Classification::Move { to, iops, reason } => {
                candidates.push((
                    decisions.len(),
                    PlannedMove {
                        volume: volume.name.clone(),
                        from: current,
                        to,
                        iops,
                        misplacement: misplacement(current, to, iops, &marks),
                        reason: reason.clone(),
                    },
                ));
                decide(
                    Outcome::Move {
                        from: current,
                        to,
                        iops,
                    },
                    reason,
                )
            }
        };
        decisions.push(decision);
    }

    candidates.sort_by(|(_, a), (_, b)| {
        b.misplacement
            .partial_cmp(&a.misplacement)
            .unwrap_or(Ordering::Equal)
            .then_with(|| a.volume.cmp(&b.volume))
    });
    let slots = usize::try_from(policy.max_concurrent_migrations)
        .unwrap_or(usize::MAX)
        .saturating_sub(in_flight.len());
    let mut moves = Vec::new();
    for (rank, (index, candidate)) in candidates.into_iter().enumerate() {
        let decision = &mut decisions[index];
        if rank < slots {
            if policy.dry_run {
                decision.reason = format!("dry run: {}", decision.reason);
            }
            moves.push(candidate);
        } else {
            decision.outcome = Outcome::Deferred {
                from: candidate.from,
                to: candidate.to,
            };
            decision.reason = format!(
                "{}; deferred: maxConcurrentMigrations ({}) reached",
                decision.reason, policy.max_concurrent_migrations
            );
        }
    }

    Ok(Plan {
        dry_run: policy.dry_run,
        moves,
        decisions,
        counts,
    })
}

/// How far outside its keep band a volume is: the log ratio between its IOPS and the
/// watermark it crossed. Comparable across directions, so a volume at 10× the high
/// watermark outranks one just over it, and an idle volume outranks a lukewarm one.
fn misplacement(from: Tier, to: Tier, iops: f64, w: &Watermarks) -> f64 {
    let crossed = match (from, to > from) {
        (Tier::Cold, true) => w.warm.unwrap_or(w.high),
        (Tier::Warm, true) => w.high,
        (Tier::Hot, false) => w.warm.unwrap_or(w.low),
        (Tier::Warm, false) => w.low,
        // Impossible directions (hot cannot go hotter, cold colder); rank them last.
        _ => return 0.0,
    };
    ((iops + 1.0).ln() - (crossed + 1.0).ln()).abs()
}

#[cfg(test)]
mod tests;
