//! The VolumeMigration executor: moves one volume between pool tiers on Mayastor 2.x
//! (DESIGN §5, reference §1.6), as a write-ahead step machine over
//! `VolumeMigration.status`.
//!
//! Mayastor has no "move replica" call, so a move is: steer placement so that only
//! target-tier pools are eligible, `replica_count` + 1, undo the steering, wait until
//! the new replica is in sync, make the source replica the preferred victim,
//! `replica_count` − 1, check which replica actually went, undo the steering; once per
//! source replica. What to do next is decided by [`decision::next`] from the persisted
//! status and Mayastor's observed state only, so a fresh executor after a crash
//! decides exactly what the old one would have: a +1 that was sent is seen as a new
//! replica, not sent again.
//!
//! Every step is written to the store (and acknowledged) *before* it is taken, and
//! every steering change is recorded with the value it replaces before it is made.
//! Invariants, the crash/resume rules and what is not verified here: `operator/README.md`
//! ("Migration executor").

pub mod decision;
pub mod ports;
pub mod steering;
pub mod tiers;
mod window;

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use tracing::Instrument;

use couchestor_core::{
    Timestamp,
    api::{
        MigrationPhase, MigrationStep, ReplicaRef, Time, VolumeMigration, VolumeMigrationStatus,
    },
    duration::format_duration,
    validation::validate_volume_migration,
};

use crate::mayastor::{self, Mayastor, Pool, Volume};
use decision::{Action, Finish, ReplicaView, Role, View};
pub use ports::{
    Clock, EventSink, EventType, InMemoryStore, MigrationStore, RecordedEvent, RecordingEvents,
    StoreError, SystemClock, holds_finalizer,
};
use steering::SteeringLock;
pub use tiers::TierPools;

/// Tuning of the executor; the defaults suit a real cluster.
#[derive(Debug, Clone)]
pub struct Config {
    /// Between two looks at a rebuilding replica.
    pub poll_interval: Duration,
    /// First wait after a failed Mayastor call; doubles up to `max_backoff`.
    pub retry_backoff: Duration,
    pub max_backoff: Duration,
    /// Consecutive failed Mayastor calls before `drive` gives up for now (the status
    /// keeps everything needed to resume; the caller requeues).
    pub max_consecutive_errors: u32,
    /// Added replicas lost (wrong scale-down victim, failed rebuild) before the move
    /// rolls back.
    pub max_repairs: u32,
    /// Scale-ups refused for lack of an eligible target pool before the move rolls back.
    pub max_no_pool: u32,
    /// After a replica-count change whose answer was lost (timeout, 5xx), polls with
    /// the steering still applied, waiting to see whether it was carried out, before
    /// the window closes; a change landing after the window would ignore the steering.
    pub unconfirmed_polls: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(2),
            retry_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            max_consecutive_errors: 10,
            max_repairs: 3,
            max_no_pool: 3,
            unconfirmed_polls: 3,
        }
    }
}

/// How a move ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `Succeeded`, `Failed` or `RolledBack`.
    pub phase: MigrationPhase,
    pub message: String,
}

impl Outcome {
    /// The `result` label of `couchestor_migrations_total`.
    pub fn result(&self) -> &'static str {
        match self.phase {
            MigrationPhase::Succeeded => "succeeded",
            MigrationPhase::RolledBack => "rolled_back",
            _ => "failed",
        }
    }
}

/// Why `drive` stopped before a terminal phase. The status written so far is enough
/// to resume: call `drive` again.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("VolumeMigration {0} not found")]
    NotFound(String),
    /// Another `drive` of the same move is running in this process; two would race.
    #[error("VolumeMigration {0} is already being driven")]
    AlreadyRunning(String),
    /// The journal could not be written, so nothing more may be done.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Mayastor kept failing (`Config::max_consecutive_errors` in a row).
    #[error("Mayastor kept failing: {0}")]
    Mayastor(#[source] mayastor::Error),
}

/// What stopped one iteration.
enum Failure {
    Store(StoreError),
    Mayastor(mayastor::Error),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

impl From<mayastor::Error> for Failure {
    fn from(e: mayastor::Error) -> Self {
        Failure::Mayastor(e)
    }
}

/// Runs moves. One per leader process; [`Executor::drive`] may run for several moves
/// at once (their steering windows take turns).
pub struct Executor<S, E, C> {
    mayastor: Mayastor,
    store: S,
    events: E,
    clock: C,
    config: Config,
    steering: SteeringLock,
    /// Moves being driven now.
    running: std::sync::Mutex<BTreeSet<String>>,
    /// Moves asked to stop and roll back ([`Executor::cancel`]), with the reason.
    cancels: std::sync::Mutex<BTreeMap<String, String>>,
}

/// Why a move is cancelled when its `VolumeMigration` is deleted.
pub const DELETED: &str = "the VolumeMigration is being deleted";

/// Marks a move as being driven until dropped (also when a `drive` future is dropped).
struct Running<'a> {
    set: &'a std::sync::Mutex<BTreeSet<String>>,
    name: String,
}

impl<'a> Running<'a> {
    fn claim(set: &'a std::sync::Mutex<BTreeSet<String>>, name: &str) -> Option<Self> {
        let mut names = set.lock().unwrap_or_else(|e| e.into_inner());
        names.insert(name.to_owned()).then(|| Running {
            set,
            name: name.to_owned(),
        })
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut names = self.set.lock().unwrap_or_else(|e| e.into_inner());
        names.remove(&self.name);
    }
}

impl<S, E, C> std::fmt::Debug for Executor<S, E, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("mayastor", &self.mayastor)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<S: MigrationStore, E: EventSink, C: Clock> Executor<S, E, C> {
    pub fn new(mayastor: Mayastor, store: S, events: E, clock: C, config: Config) -> Self {
        Self {
            mayastor,
            store,
            events,
            clock,
            config,
            steering: SteeringLock::new(()),
            running: std::sync::Mutex::default(),
            cancels: std::sync::Mutex::default(),
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn events(&self) -> &E {
        &self.events
    }

    /// Whether a `drive` of `name` is running in this process now.
    pub fn is_running(&self, name: &str) -> bool {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(name)
    }

    /// Asks the move `name` to stop and roll back (its `VolumeMigration` is being
    /// deleted): a `drive` running now notices before its next look at Mayastor, and
    /// a later `drive` at its start. A move not started yet finishes without touching
    /// anything; a move in flight rolls back exactly as on a timeout.
    pub fn cancel(&self, name: &str, reason: &str) {
        self.cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_owned())
            .or_insert_with(|| reason.to_owned());
    }

    fn cancel_reason(&self, name: &str) -> Option<String> {
        self.cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    fn forget_cancel(&self, name: &str) {
        self.cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }

    /// Runs the move `name` to a terminal phase, resuming from its persisted status.
    /// `tiers` maps the policy's tiers to pools. A move already finished returns its
    /// outcome without touching Mayastor. A `VolumeMigration` being deleted is
    /// cancelled ([`Executor::cancel`]). Once terminal, the operator's finalizer is
    /// removed.
    ///
    /// The same move must not be driven twice at once: a second call while one runs
    /// returns [`ExecError::AlreadyRunning`] without doing anything.
    pub async fn drive(&self, name: &str, tiers: &TierPools) -> Result<Outcome, ExecError> {
        let _running = Running::claim(&self.running, name)
            .ok_or_else(|| ExecError::AlreadyRunning(name.to_owned()))?;
        let mut run = self.run(name, tiers).await?;
        if run.vm.metadata.deletion_timestamp.is_some() {
            self.cancel(name, DELETED);
        }
        let span = run.span();
        let outcome = run.go().instrument(span).await?;
        self.finished(name, &run.vm).await?;
        Ok(outcome)
    }

    /// Finishes the move `name` without its policy (deleted while the move was in
    /// flight, so its tiers are unknown): undoes the steering its journal records,
    /// marks it `Failed` with `reason`, and removes the finalizer. Replicas are left as
    /// they are — an extra replica is safe, and which one to remove cannot be decided
    /// without the tiers. A move already finished only loses its finalizer.
    pub async fn abandon(&self, name: &str, reason: &str) -> Result<Outcome, ExecError> {
        let _running = Running::claim(&self.running, name)
            .ok_or_else(|| ExecError::AlreadyRunning(name.to_owned()))?;
        let no_tiers = TierPools::none();
        let mut run = self.run(name, &no_tiers).await?;
        let span = run.span();
        let outcome = run.abandon(reason).instrument(span).await?;
        self.finished(name, &run.vm).await?;
        Ok(outcome)
    }

    async fn run<'a>(
        &'a self,
        name: &'a str,
        tiers: &'a TierPools,
    ) -> Result<Run<'a, S, E, C>, ExecError> {
        let vm = self
            .store
            .get(name)
            .await?
            .ok_or_else(|| ExecError::NotFound(name.to_owned()))?;
        let status = vm.status.clone().unwrap_or_default();
        Ok(Run {
            exec: self,
            name,
            tiers,
            vm,
            status,
            no_pool: 0,
        })
    }

    /// After a terminal phase: nothing left to cancel, and the finalizer can go.
    async fn finished(&self, name: &str, vm: &VolumeMigration) -> Result<(), StoreError> {
        self.forget_cancel(name);
        if holds_finalizer(vm) {
            self.store.release(name).await?;
            tracing::debug!(migration = name, "finalizer removed");
        }
        Ok(())
    }
}

/// One `drive` call's working state; `status` is the journal, written through.
struct Run<'a, S, E, C> {
    exec: &'a Executor<S, E, C>,
    name: &'a str,
    tiers: &'a TierPools,
    vm: VolumeMigration,
    status: VolumeMigrationStatus,
    /// Scale-ups refused for lack of a pool in this call.
    no_pool: u32,
}

fn step_name(step: MigrationStep) -> String {
    format!("{step:?}")
}

fn elapsed(since: Timestamp, now: Timestamp) -> Duration {
    let nanos = now.as_nanosecond() - since.as_nanosecond();
    u64::try_from(nanos)
        .map(Duration::from_nanos)
        .unwrap_or(Duration::ZERO)
}

impl<S: MigrationStore, E: EventSink, C: Clock> Run<'_, S, E, C> {
    fn mayastor(&self) -> &Mayastor {
        &self.exec.mayastor
    }

    fn span(&self) -> tracing::Span {
        tracing::info_span!("migration", name = self.name, volume = %self.vm.spec.volume_id)
    }

    /// The outcome recorded, when the move is in a terminal phase.
    fn terminal_outcome(&self) -> Option<Outcome> {
        let phase = self.status.phase.filter(|p| p.is_terminal())?;
        Some(Outcome {
            phase,
            message: self
                .status
                .steps
                .last()
                .map(|s| s.message.clone())
                .unwrap_or_default(),
        })
    }

    /// Acts on a pending [`Executor::cancel`]: a move not started finishes at once; a
    /// move in flight switches to rolling back. `None` when there is nothing to do.
    async fn take_cancel(&mut self) -> Option<Result<Option<Outcome>, Failure>> {
        let reason = self.exec.cancel_reason(self.name)?;
        if self.status.start_time.is_none() {
            let message =
                format!("cancelled before the move started ({reason}); nothing was changed");
            return Some(self.finish(Finish::RolledBack, message).await);
        }
        if self.status.abort_reason.is_some() {
            return None;
        }
        Some(
            self.abort(format!("cancelled: {reason}"))
                .await
                .map(|()| None)
                .map_err(Failure::Store),
        )
    }

    /// See [`Executor::abandon`].
    async fn abandon(&mut self, reason: &str) -> Result<Outcome, ExecError> {
        if let Some(outcome) = self.terminal_outcome() {
            return Ok(outcome);
        }
        let exec = self.exec;
        let _window = exec.steering.lock().await;
        let message = match (&self.status.start_time, self.status.step) {
            (None, _) => format!("{reason} before the move started; nothing was changed"),
            (Some(_), step) => format!(
                "{reason} while the move was in flight (at step {}): steering undone, the \
                 volume's replicas left as they are for an operator to check",
                step.map_or("none".to_owned(), step_name)
            ),
        };
        match self.finish(Finish::Failed, message).await {
            Ok(Some(outcome)) => Ok(outcome),
            Ok(None) => unreachable!("finish always ends the move"),
            Err(Failure::Store(e)) => Err(e.into()),
            Err(Failure::Mayastor(e)) => Err(ExecError::Mayastor(e)),
        }
    }

    fn volume_id(&self) -> &str {
        &self.vm.spec.volume_id
    }

    async fn persist(&mut self) -> Result<(), StoreError> {
        self.exec.store.put_status(self.name, &self.status).await?;
        self.vm.status = Some(self.status.clone());
        Ok(())
    }

    async fn event(&self, kind: EventType, reason: &str, message: String) {
        match kind {
            EventType::Normal => tracing::info!(reason, %message, "migration"),
            EventType::Warning => tracing::warn!(reason, %message, "migration"),
        }
        self.exec.events.emit(&self.vm, kind, reason, message).await;
    }

    /// Records `step` as about to be taken, durably, then tells the world.
    async fn enter(&mut self, step: MigrationStep, message: String) -> Result<(), StoreError> {
        let now = self.exec.clock.now();
        self.status.enter(step, Time(now), message.clone());
        self.persist().await?;
        self.event(EventType::Normal, &step_name(step), message)
            .await;
        Ok(())
    }

    async fn go(&mut self) -> Result<Outcome, ExecError> {
        if let Some(outcome) = self.terminal_outcome() {
            return Ok(outcome);
        }
        let mut errors = 0u32;
        let mut backoff = self.exec.config.retry_backoff;
        loop {
            let result = if let Some(result) = self.take_cancel().await {
                result
            } else if self.status.start_time.is_none() {
                self.start().await
            } else {
                self.iteration().await
            };
            match result {
                Ok(Some(outcome)) => return Ok(outcome),
                Ok(None) => {
                    errors = 0;
                    backoff = self.exec.config.retry_backoff;
                }
                Err(Failure::Store(e)) => return Err(e.into()),
                Err(Failure::Mayastor(mayastor::Error::NoSteeringLabel { pool, key }))
                    if self.status.abort_reason.is_none() =>
                {
                    // Retrying cannot help: without a pool cordon and without the label,
                    // placement cannot be steered away from this pool.
                    let reason = format!(
                        "cannot steer placement away from pool {pool}: this Mayastor has no pool \
                         cordon and the pool has no inclusion label {key:?} to remove"
                    );
                    self.abort(reason).await?;
                }
                Err(Failure::Mayastor(e)) => {
                    errors += 1;
                    let message = e.to_string();
                    if self.status.last_error.as_deref() != Some(message.as_str()) {
                        self.status.last_error = Some(message.clone());
                        self.persist().await?;
                        self.event(EventType::Warning, "MayastorError", message)
                            .await;
                    }
                    if errors >= self.exec.config.max_consecutive_errors {
                        return Err(ExecError::Mayastor(e));
                    }
                    self.exec.clock.sleep(backoff).await;
                    backoff = (backoff * 2).min(self.exec.config.max_backoff);
                }
            }
        }
    }

    /// Checks the spec and the volume, and records the starting point. Nothing is
    /// changed in Mayastor before this record is durable.
    async fn start(&mut self) -> Result<Option<Outcome>, Failure> {
        // Pools are read below: no other move's window may be open meanwhile.
        let exec = self.exec;
        let _window = exec.steering.lock().await;
        if let Err(errors) = validate_volume_migration(&self.vm.spec) {
            return self
                .finish(Finish::Failed, format!("invalid spec: {errors}"))
                .await;
        }
        let from = self.vm.spec.from_tier;
        let to = self.vm.spec.to_tier;
        if !self.tiers.has(from) || !self.tiers.has(to) {
            return self
                .finish(
                    Finish::Failed,
                    format!("the policy has no {from} or no {to} tier"),
                )
                .await;
        }
        let Some(volume) = self.observe_volume().await? else {
            return self
                .finish(
                    Finish::Failed,
                    format!("Mayastor has no volume {}", self.volume_id()),
                )
                .await;
        };
        if !volume.is_settled() {
            return self
                .finish(
                    Finish::Failed,
                    format!(
                        "volume {} is not settled (status {:?}, {} of {} replicas in sync); a move \
                         starts only from a healthy volume",
                        self.volume_id(),
                        volume.state.status,
                        volume.healthy_replicas().count(),
                        volume.spec.num_replicas
                    ),
                )
                .await;
        }
        let pools = self.mayastor().pools().await?;
        let mut sources = Vec::new();
        for (uuid, r) in &volume.state.replica_topology {
            let pool_id = r.pool.clone().unwrap_or_default();
            let tier = pools
                .iter()
                .find(|p| p.id == pool_id)
                .and_then(|p| self.tiers.tier_of(p.labels()));
            if tier != Some(from) {
                let on = tier.map_or("no tier".to_owned(), |t| format!("tier {t}"));
                return self
                    .finish(
                        Finish::Failed,
                        format!(
                            "replica {uuid} is on pool {pool_id} ({on}), not on the source tier \
                             {from}; only volumes wholly on the source tier are moved"
                        ),
                    )
                    .await;
            }
            sources.push(ReplicaRef {
                uuid: uuid.clone(),
                pool: pool_id,
                node: r.node.clone().unwrap_or_default(),
            });
        }
        let now = self.exec.clock.now();
        self.status.phase = Some(MigrationPhase::Running);
        self.status.start_time = Some(Time(now));
        self.status.starting_healthy_replicas = u32::try_from(sources.len()).ok();
        let pools_list: Vec<&str> = sources.iter().map(|s| s.pool.as_str()).collect();
        let message = format!(
            "moving volume {} from {from} to {to}: {} healthy replicas on {}",
            self.volume_id(),
            sources.len(),
            pools_list.join(", ")
        );
        self.status.source_replicas = sources;
        self.enter(MigrationStep::Pending, message).await?;
        Ok(None)
    }

    /// The volume, or `None` when Mayastor says it does not exist.
    async fn observe_volume(&self) -> Result<Option<Volume>, mayastor::Error> {
        match self.mayastor().volume(self.volume_id()).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind() == Some("NotFound") => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn timeout(&self) -> Duration {
        // Validated at the start; the default applies if the text no longer parses.
        self.vm
            .spec
            .timeout
            .parse()
            .unwrap_or(Duration::from_secs(30 * 60))
    }

    /// One look at Mayastor and one action, holding the steering lock throughout
    /// (released only to wait): no other move's window is open while this one
    /// observes pools, so their labels and cordons are nobody's half-done steering.
    async fn iteration(&mut self) -> Result<Option<Outcome>, Failure> {
        let exec = self.exec;
        let window = exec.steering.lock().await;
        // Steering is applied only inside a window; anything recorded here was left by
        // a crash or a failed call and is undone before anything else.
        self.restore_steering("undoing steering left over from an interrupted step")
            .await?;
        if self.status.abort_reason.is_none() {
            let started = self.status.start_time.as_ref().map(|t| t.0);
            let now = self.exec.clock.now();
            if let Some(started) = started
                && elapsed(started, now) >= self.timeout()
            {
                let reason = format!(
                    "timed out after {} (spec.timeout {})",
                    format_duration(elapsed(started, now)),
                    self.vm.spec.timeout.as_str()
                );
                self.abort(reason).await?;
            }
        }
        let Some(volume) = self.observe_volume().await? else {
            return self
                .finish(
                    Finish::Failed,
                    format!("volume {} disappeared from Mayastor", self.volume_id()),
                )
                .await;
        };
        let pools = self.mayastor().pools().await?;
        self.account_target_replicas(&volume, &pools).await?;
        if self.status.abort_reason.is_none() && self.status.repairs > self.exec.config.max_repairs
        {
            let reason = format!(
                "replicas added on the target tier were lost {} times (limit {})",
                self.status.repairs, self.exec.config.max_repairs
            );
            self.abort(reason).await?;
        }
        let view = self.view(&volume);
        match decision::next(&view) {
            Action::Wait { reason } if self.rollback_overdue() => {
                // A rollback waits only for Mayastor to settle; if it never does, stop
                // rather than loop forever, and leave the volume as it is (extra
                // replicas are safe) for a human.
                let message = format!(
                    "the rollback has waited past twice spec.timeout and gives up: {reason}"
                );
                self.finish(Finish::Failed, message).await
            }
            Action::Wait { reason } => {
                if self.status.step != Some(MigrationStep::WaitingForSync) {
                    self.enter(MigrationStep::WaitingForSync, reason).await?;
                }
                drop(window);
                self.exec.clock.sleep(self.exec.config.poll_interval).await;
                Ok(None)
            }
            Action::AddReplica => {
                let refused = self.no_pool;
                self.add_replica(&volume, &pools).await?;
                if self.no_pool > refused && self.status.abort_reason.is_none() {
                    // No pool could take it: give the cluster time, without the lock.
                    drop(window);
                    self.exec.clock.sleep(self.exec.config.poll_interval).await;
                }
                Ok(None)
            }
            Action::RemoveReplica { victims } => {
                self.remove_replica(&volume, &pools, &victims).await?;
                Ok(None)
            }
            Action::Finish { outcome, message } => self.finish(outcome, message).await,
        }
    }

    /// Rolling back, and more than twice `spec.timeout` since the start.
    fn rollback_overdue(&self) -> bool {
        let started = self.status.start_time.as_ref().map(|t| t.0);
        self.status.abort_reason.is_some()
            && started.is_some_and(|s| {
                elapsed(s, self.exec.clock.now()) >= self.timeout().saturating_mul(2)
            })
    }

    fn pool_tier(&self, pools: &[Pool], pool_id: &str) -> Option<couchestor_core::Tier> {
        pools.iter().find(|p| p.id == pool_id).and_then(|p| {
            self.tiers
                .tier_of(&steering::effective_labels(p, &self.status.steering))
        })
    }

    /// Adopts new replicas on the target tier into `status.targetReplicas`, and
    /// notices added replicas that are gone (removed by a scale-down that should have
    /// taken another one, or lost): each counts as a repair, and the decision then
    /// adds a replacement.
    async fn account_target_replicas(
        &mut self,
        volume: &Volume,
        pools: &[Pool],
    ) -> Result<(), StoreError> {
        let present = &volume.state.replica_topology;
        let aborting = self.status.abort_reason.is_some();
        let (kept, lost): (Vec<ReplicaRef>, Vec<ReplicaRef>) = self
            .status
            .target_replicas
            .drain(..)
            .partition(|r| present.contains_key(&r.uuid));
        self.status.target_replicas = kept;
        let known: BTreeSet<String> = self
            .status
            .source_replicas
            .iter()
            .chain(&self.status.target_replicas)
            .map(|r| r.uuid.clone())
            .collect();
        let mut adopted = Vec::new();
        for (uuid, r) in present {
            let pool = r.pool.clone().unwrap_or_default();
            if !known.contains(uuid) && self.pool_tier(pools, &pool) == Some(self.vm.spec.to_tier) {
                adopted.push(ReplicaRef {
                    uuid: uuid.clone(),
                    pool,
                    node: r.node.clone().unwrap_or_default(),
                });
            }
        }
        if lost.is_empty() && adopted.is_empty() {
            return Ok(());
        }
        let adopted_names: Vec<String> = adopted
            .iter()
            .map(|r| format!("{} on {}", r.uuid, r.pool))
            .collect();
        if let Some(last) = adopted.last() {
            self.status.added_replica = Some(last.clone());
        }
        self.status.target_replicas.extend(adopted);
        if aborting || lost.is_empty() {
            self.persist().await?;
        } else {
            self.status.repairs += u32::try_from(lost.len()).unwrap_or(u32::MAX);
            let names: Vec<String> = lost
                .iter()
                .map(|r| format!("{} on {}", r.uuid, r.pool))
                .collect();
            let message = format!(
                "replica {} added on the target tier is gone; replacing it (repair {} of at most {})",
                names.join(", "),
                self.status.repairs,
                self.exec.config.max_repairs
            );
            self.event(EventType::Warning, "TargetReplicaLost", message.clone())
                .await;
            self.enter(MigrationStep::Repairing, message).await?;
        }
        if !adopted_names.is_empty() {
            self.event(
                EventType::Normal,
                "ReplicaAdded",
                format!(
                    "new replica on the target tier: {}",
                    adopted_names.join(", ")
                ),
            )
            .await;
        }
        Ok(())
    }

    fn view(&self, volume: &Volume) -> View {
        let role = |uuid: &str| {
            if self.status.source_replicas.iter().any(|r| r.uuid == uuid) {
                Role::Original
            } else if self.status.target_replicas.iter().any(|r| r.uuid == uuid) {
                Role::Added
            } else {
                Role::Stray
            }
        };
        View {
            starting: self.status.starting_healthy_replicas.unwrap_or(0) as usize,
            num_replicas: usize::from(volume.spec.num_replicas),
            replicas: volume
                .state
                .replica_topology
                .iter()
                .map(|(uuid, r)| ReplicaView {
                    uuid: uuid.clone(),
                    pool: r.pool.clone().unwrap_or_default(),
                    role: role(uuid),
                    healthy: r.is_healthy(),
                    rebuilding: r.is_rebuilding(),
                })
                .collect(),
            preserve_source: self.vm.spec.preserve_source_replica,
            aborting: self.status.abort_reason.is_some(),
        }
    }

    /// Switches to rolling back, durably, before anything is undone.
    async fn abort(&mut self, reason: String) -> Result<(), StoreError> {
        self.status.abort_reason = Some(reason.clone());
        self.status.last_error = Some(reason.clone());
        self.persist().await?;
        self.event(EventType::Warning, "RollingBack", reason).await;
        Ok(())
    }

    async fn finish(
        &mut self,
        outcome: Finish,
        message: String,
    ) -> Result<Option<Outcome>, Failure> {
        // Windows restore before they close, and iterations start by restoring, so
        // nothing is applied here; this is the last guard before a terminal phase.
        self.restore_steering("finishing").await?;
        let phase = match outcome {
            Finish::Succeeded => MigrationPhase::Succeeded,
            Finish::Failed => MigrationPhase::Failed,
            Finish::RolledBack => MigrationPhase::RolledBack,
        };
        let message = match (&self.status.abort_reason, outcome) {
            (Some(reason), Finish::RolledBack | Finish::Failed) => {
                format!("{message} (rolled back because {reason})")
            }
            _ => message,
        };
        if outcome != Finish::Succeeded {
            self.status.last_error = Some(message.clone());
        }
        self.status.phase = Some(phase);
        self.status.completion_time = Some(Time(self.exec.clock.now()));
        self.status.enter(
            MigrationStep::Finished,
            Time(self.exec.clock.now()),
            message.clone(),
        );
        self.persist().await?;
        let (kind, reason) = match outcome {
            Finish::Succeeded => (EventType::Normal, "Succeeded"),
            Finish::Failed => (EventType::Warning, "Failed"),
            Finish::RolledBack => (EventType::Warning, "RolledBack"),
        };
        self.event(kind, reason, message.clone()).await;
        Ok(Some(Outcome { phase, message }))
    }
}
