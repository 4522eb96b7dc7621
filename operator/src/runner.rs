//! Drives every `VolumeMigration` in flight with the [`Executor`], while this replica
//! holds the lease.
//!
//! The controller only *creates* migrations (bounded by `maxConcurrentMigrations`);
//! this loop carries them out. Every `interval` it lists the migrations, and for each
//! one not in a terminal phase and not already being driven it reads its policy (the
//! tier → pool mapping) and starts [`Executor::drive`] in a task. A `drive` that stops
//! early (store or Mayastor unavailable) is simply started again on a later pass: the
//! executor resumes from the journal in the status. On shutdown or loss of the lease
//! the tasks are dropped mid-move, which the executor is built for — the next leader
//! resumes from the same journal.
//!
//! Deletion: every migration the controller creates holds the operator's finalizer
//! until it is terminal. A migration being deleted mid-move is cancelled (rolled back;
//! [`Executor::cancel`]); one whose policy is gone too is abandoned (steering undone,
//! marked `Failed`; [`Executor::abandon`]); a terminal one still holding the finalizer
//! (a crash between the last status write and the release) just loses it.

use std::{future::Future, sync::Arc, time::Duration};

use couchestor_core::{StoragePolicy, VolumeMigration};
use kube::{Api, Client, api::ListParams};
use tokio::task::JoinSet;

use crate::executor::{
    Clock, DELETED, EventSink, ExecError, Executor, MigrationStore, TierPools, holds_finalizer,
};

/// What one pass found and did (for logs and tests).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pass {
    /// Migrations started by this pass.
    pub started: Vec<String>,
    /// Migrations in flight whose policy could not be read (left alone this pass).
    pub without_policy: Vec<String>,
    /// Migrations finished without their policy, or whose finalizer is released.
    pub abandoned: Vec<String>,
    /// Migrations being driven now that were asked to roll back (being deleted).
    pub cancelled: Vec<String>,
}

/// What a runner task does with one migration.
enum Job {
    /// [`Executor::drive`] with the policy's tiers.
    Drive(TierPools),
    /// [`Executor::abandon`] with the reason.
    Abandon(String),
}

/// The migrations to drive and the policies they belong to.
pub struct Runner<S, E, C> {
    client: Client,
    executor: Arc<Executor<S, E, C>>,
    tasks: JoinSet<()>,
}

impl<S, E, C> std::fmt::Debug for Runner<S, E, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("tasks", &self.tasks.len())
            .finish_non_exhaustive()
    }
}

impl<S, E, C> Runner<S, E, C>
where
    S: MigrationStore + 'static,
    E: EventSink + 'static,
    C: Clock + 'static,
{
    pub fn new(client: Client, executor: Arc<Executor<S, E, C>>) -> Self {
        Self {
            client,
            executor,
            tasks: JoinSet::new(),
        }
    }

    /// One pass: starts a `drive` for every migration in flight that is not running.
    pub async fn pass(&mut self) -> Result<Pass, kube::Error> {
        // Reap finished tasks so their panics (if any) surface in the log.
        while let Some(done) = self.tasks.try_join_next() {
            if let Err(e) = done {
                tracing::error!(error = %e, "a migration task ended abnormally");
            }
        }
        let migrations = Api::<VolumeMigration>::all(self.client.clone())
            .list(&ListParams::default())
            .await?;
        let policies = Api::<StoragePolicy>::all(self.client.clone());
        let mut pass = Pass::default();
        for vm in migrations.items {
            let Some(name) = vm.metadata.name.clone() else {
                continue;
            };
            let terminal = vm
                .status
                .as_ref()
                .and_then(|s| s.phase)
                .is_some_and(|p| p.is_terminal());
            let deleting = vm.metadata.deletion_timestamp.is_some();
            if terminal && !holds_finalizer(&vm) {
                continue;
            }
            if self.executor.is_running(&name) {
                if deleting && !terminal {
                    self.executor.cancel(&name, DELETED);
                    pass.cancelled.push(name);
                }
                continue;
            }
            if terminal {
                self.spawn(name.clone(), Job::Abandon("finished".to_owned()));
                pass.abandoned.push(name);
                continue;
            }
            let policy = match policies.get_opt(&vm.spec.policy_ref).await {
                Ok(Some(p)) => p,
                Ok(None) if deleting => {
                    let reason = format!("policy {} was deleted", vm.spec.policy_ref);
                    self.spawn(name.clone(), Job::Abandon(reason));
                    pass.abandoned.push(name);
                    continue;
                }
                Ok(None) => {
                    tracing::warn!(
                        migration = name,
                        policy = vm.spec.policy_ref,
                        "policy of an in-flight migration not found; not driving it"
                    );
                    pass.without_policy.push(name);
                    continue;
                }
                Err(e) => {
                    tracing::warn!(migration = name, policy = vm.spec.policy_ref, error = %e, "cannot read the policy of an in-flight migration");
                    pass.without_policy.push(name);
                    continue;
                }
            };
            let tiers = TierPools::from_policy(&policy.spec);
            pass.started.push(name.clone());
            self.spawn(name, Job::Drive(tiers));
        }
        Ok(pass)
    }

    /// Runs `job` on the move `name` in a task; a job that stops early is started
    /// again by a later pass.
    fn spawn(&mut self, name: String, job: Job) {
        let executor = self.executor.clone();
        self.tasks.spawn(async move {
            let result = match &job {
                Job::Drive(tiers) => executor.drive(&name, tiers).await,
                Job::Abandon(reason) => executor.abandon(&name, reason).await,
            };
            match result {
                Ok(outcome) => {
                    tracing::info!(migration = name, result = outcome.result(), message = outcome.message, "migration finished")
                }
                // Claimed by another task started between our look and this one.
                Err(ExecError::AlreadyRunning(_)) => {}
                Err(e) => {
                    tracing::warn!(migration = name, error = %e, "migration paused; resuming on a later pass")
                }
            }
        });
    }

    /// Passes every `interval` until `until` completes; then drops every move in
    /// flight (each resumes from its journal under the next leader).
    pub async fn run(mut self, interval: Duration, until: impl Future<Output = ()>) {
        tokio::pin!(until);
        loop {
            if let Err(e) = self.pass().await {
                tracing::warn!(error = %e, "listing VolumeMigrations");
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = &mut until => break,
            }
        }
        self.tasks.shutdown().await;
    }
}
