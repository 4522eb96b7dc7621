//! What a policy's `VolumeMigration`s say: moves in flight, the last move of each
//! volume (cooldown, recorded tier), and finished moves not yet in the status history.
//! Pure.

use std::collections::BTreeMap;

use couchestor_core::{
    Tier, Timestamp, VolumeMigration,
    api::{MigrationPhase, MigrationRecord, Time},
    plan::InFlightMove,
};

/// A finished move, as the history records it.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedMove {
    pub volume: String,
    pub from: Tier,
    pub to: Tier,
    pub phase: MigrationPhase,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub message: Option<String>,
}

impl FinishedMove {
    /// `Succeeded`, `Failed` or `RolledBack`.
    pub fn result(&self) -> &'static str {
        phase_name(self.phase)
    }

    fn record(&self) -> MigrationRecord {
        MigrationRecord {
            volume: self.volume.clone(),
            from_tier: self.from,
            to_tier: self.to,
            result: self.result().to_owned(),
            started_at: Time(self.started_at),
            finished_at: Time(self.finished_at),
            message: self.message.clone(),
        }
    }
}

/// The wire name of a phase.
pub fn phase_name(phase: MigrationPhase) -> &'static str {
    match phase {
        MigrationPhase::Pending => "Pending",
        MigrationPhase::Running => "Running",
        MigrationPhase::Succeeded => "Succeeded",
        MigrationPhase::Failed => "Failed",
        MigrationPhase::RolledBack => "RolledBack",
    }
}

/// The latest finished move of one volume.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LastMove {
    /// When the latest finished move (of any result) ended: the cooldown runs from
    /// here, so a failed move is not retried at once either.
    pub finished_at: Option<Timestamp>,
    /// The target of the latest *successful* move.
    pub settled_tier: Option<Tier>,
}

/// The migrations of one policy, sorted out.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    in_flight: Vec<InFlightMove>,
    finished: Vec<FinishedMove>,
    last: BTreeMap<String, LastMove>,
    per_volume: BTreeMap<String, usize>,
}

impl Ledger {
    /// Sorts out the migrations whose `spec.policyRef` is `policy`.
    pub fn of(policy: &str, migrations: &[VolumeMigration]) -> Self {
        let mut ledger = Ledger::default();
        for m in migrations.iter().filter(|m| m.spec.policy_ref == policy) {
            let s = &m.spec;
            *ledger.per_volume.entry(s.volume_name.clone()).or_default() += 1;
            let status = m.status.clone().unwrap_or_default();
            let phase = status.phase.unwrap_or(MigrationPhase::Pending);
            if !phase.is_terminal() {
                ledger.in_flight.push(InFlightMove {
                    volume: s.volume_name.clone(),
                    from: s.from_tier,
                    to: s.to_tier,
                });
                continue;
            }
            let created = m.metadata.creation_timestamp.as_ref().map(|t| t.0);
            let Some(finished_at) = status.completion_time.as_ref().map(|t| t.0).or(created) else {
                continue;
            };
            let started_at = status
                .start_time
                .as_ref()
                .map(|t| t.0)
                .or(created)
                .unwrap_or(finished_at);
            let last = ledger.last.entry(s.volume_name.clone()).or_default();
            if last.finished_at.is_none_or(|t| t < finished_at) {
                last.finished_at = Some(finished_at);
            }
            ledger.finished.push(FinishedMove {
                volume: s.volume_name.clone(),
                from: s.from_tier,
                to: s.to_tier,
                phase,
                started_at,
                finished_at,
                message: status.last_error.clone(),
            });
        }
        // The settled tier is the target of the latest successful move.
        let mut succeeded: Vec<&FinishedMove> = ledger
            .finished
            .iter()
            .filter(|f| f.phase == MigrationPhase::Succeeded)
            .collect();
        succeeded.sort_by_key(|f| f.finished_at);
        for f in succeeded {
            ledger
                .last
                .entry(f.volume.clone())
                .or_default()
                .settled_tier = Some(f.to);
        }
        ledger.in_flight.sort_by(|a, b| a.volume.cmp(&b.volume));
        ledger
            .finished
            .sort_by(|a, b| (a.finished_at, &a.volume).cmp(&(b.finished_at, &b.volume)));
        ledger
    }

    /// Moves not finished yet.
    pub fn in_flight(&self) -> &[InFlightMove] {
        &self.in_flight
    }

    /// The latest finished move of `volume`.
    pub fn last_move(&self, volume: &str) -> Option<&LastMove> {
        self.last.get(volume)
    }

    /// How many migrations of `volume` exist (any phase): the sequence number of the
    /// next one's name.
    pub fn migrations_of(&self, volume: &str) -> usize {
        self.per_volume.get(volume).copied().unwrap_or(0)
    }

    /// Finished moves the status history does not hold yet, oldest first: those that
    /// finished after the newest recorded one (or at the same instant and are absent).
    /// Keyed on time rather than on presence, so a move that has dropped out of the
    /// bounded history is not counted twice.
    pub fn unrecorded<'a>(&'a self, history: &[MigrationRecord]) -> Vec<&'a FinishedMove> {
        let newest = history.iter().map(|r| r.finished_at.0).max();
        self.finished
            .iter()
            .filter(|f| match newest {
                None => true,
                Some(n) if f.finished_at > n => true,
                Some(n) if f.finished_at == n => !history.iter().any(|r| {
                    r.volume == f.volume
                        && r.started_at.0 == f.started_at
                        && r.finished_at.0 == f.finished_at
                }),
                Some(_) => false,
            })
            .collect()
    }

    /// History records for `moves`.
    pub fn records(moves: &[&FinishedMove]) -> Vec<MigrationRecord> {
        moves.iter().map(|f| f.record()).collect()
    }
}
