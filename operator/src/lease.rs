//! Leader election over a `coordination.k8s.io/v1` Lease, written here over the kube
//! API (no election crate): only the holder reconciles and executes.
//!
//! - **Acquire**: no Lease ⇒ create it naming us (a 409 means another replica created
//!   it first: we follow).
//! - **Renew**: we hold it ⇒ replace it with a fresh `renewTime`, guarded by the
//!   `resourceVersion` we read (a 409 means someone else wrote it: we follow).
//! - **Take over**: another holder whose record has not changed for a whole
//!   `leaseDurationSeconds` *of our own clock* (we time how long we have seen the same
//!   `resourceVersion`, as client-go does, so skewed clocks cannot steal a live lease),
//!   or no holder at all (a released lease) ⇒ replace it naming us,
//!   `leaseTransitions + 1`, guarded by `resourceVersion`.
//! - **Release** on shutdown: clear `holderIdentity` so a standby takes over at once.

use std::time::Duration;

use couchestor_core::{Timestamp, names};
use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
};
use kube::{Api, Client, api::PostParams};

/// Who the elector is and how long a lease lasts.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    /// `leaseDurationSeconds` written into the Lease.
    pub duration: Duration,
}

/// The outcome of one election round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Leader,
    /// Someone else holds the lease (or won a race against us).
    Follower {
        holder: Option<String>,
    },
}

/// One replica's side of the election.
#[derive(Debug)]
pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    /// The `resourceVersion` of the Lease as last read, and when (our clock) it was
    /// first seen with that version.
    observed: Option<(String, Timestamp)>,
}

impl Elector {
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
        }
    }

    pub fn config(&self) -> &LeaseConfig {
        &self.config
    }

    /// One round: acquire, renew or take over if possible. `now` is injected so
    /// expiry can be tested without waiting.
    pub async fn try_acquire_or_renew(&mut self, now: Timestamp) -> Result<Role, kube::Error> {
        let Some(current) = self.api.get_opt(&self.config.name).await? else {
            return self.create(now).await;
        };
        let version = current
            .metadata
            .resource_version
            .clone()
            .unwrap_or_default();
        let seen_since = match &self.observed {
            Some((v, since)) if *v == version => *since,
            _ => {
                self.observed = Some((version, now));
                now
            }
        };
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        if holder.as_deref() == Some(self.config.identity.as_str()) {
            return self.replace(current, spec, now, false).await;
        }
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs)
            .unwrap_or(self.config.duration);
        let unchanged_for = now.duration_since(seen_since).unsigned_abs();
        if holder.is_none() || unchanged_for >= duration {
            tracing::info!(previous = ?holder, "taking over the lease");
            return self.replace(current, spec, now, true).await;
        }
        Ok(Role::Follower { holder })
    }

    /// Gives the lease up if we hold it, so a standby need not wait for it to expire.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut current) = self.api.get_opt(&self.config.name).await? else {
            return Ok(());
        };
        let mut spec = current.spec.take().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        current.spec = Some(spec);
        match self.api.replace(&self.config.name, &post(), &current).await {
            Ok(_) => Ok(()),
            // Someone else wrote it meanwhile: it is not ours to release any more.
            Err(e) if is_conflict(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn create(&mut self, now: Timestamp) -> Result<Role, kube::Error> {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.config.name.clone()),
                namespace: Some(self.config.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.config.identity.clone()),
                lease_duration_seconds: Some(self.duration_seconds()),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        match self.api.create(&post(), &lease).await {
            Ok(created) => {
                self.remember(&created, now);
                tracing::info!(lease = %self.config.name, "acquired a new lease");
                Ok(Role::Leader)
            }
            Err(e) if is_conflict(&e) => Ok(Role::Follower { holder: None }),
            Err(e) => Err(e),
        }
    }

    /// Writes `current` back naming us; `takeover` starts a new term.
    async fn replace(
        &mut self,
        mut current: Lease,
        mut spec: LeaseSpec,
        now: Timestamp,
        takeover: bool,
    ) -> Result<Role, kube::Error> {
        let previous = spec.holder_identity.clone();
        if takeover {
            spec.holder_identity = Some(self.config.identity.clone());
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.lease_duration_seconds = Some(self.duration_seconds());
        spec.renew_time = Some(MicroTime(now));
        current.spec = Some(spec);
        // `current.metadata.resourceVersion` is what we read: the API server refuses
        // the write with 409 if anybody wrote in between.
        match self.api.replace(&self.config.name, &post(), &current).await {
            Ok(written) => {
                self.remember(&written, now);
                Ok(Role::Leader)
            }
            Err(e) if is_conflict(&e) => Ok(Role::Follower { holder: previous }),
            Err(e) => Err(e),
        }
    }

    fn remember(&mut self, lease: &Lease, now: Timestamp) {
        self.observed = lease.metadata.resource_version.clone().map(|v| (v, now));
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.config.duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }
}

fn post() -> PostParams {
    PostParams {
        dry_run: false,
        field_manager: Some(names::MANAGER_OPERATOR.to_owned()),
    }
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// Runs election rounds every `retry` until `shutdown`, publishing leadership on
/// `leader`. A leader that cannot renew for `renew_deadline` steps down. On shutdown a
/// held lease is released.
pub async fn run(
    mut elector: Elector,
    retry: Duration,
    renew_deadline: Duration,
    leader: tokio::sync::watch::Sender<bool>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut last_renewed: Option<std::time::Instant> = None;
    loop {
        let was_leader = *leader.borrow();
        match elector.try_acquire_or_renew(Timestamp::now()).await {
            Ok(Role::Leader) => {
                last_renewed = Some(std::time::Instant::now());
                if !was_leader {
                    tracing::info!(identity = %elector.config().identity, "became the leader");
                    leader.send_replace(true);
                }
            }
            Ok(Role::Follower { holder }) => {
                if was_leader {
                    tracing::warn!(?holder, "lost the lease");
                    leader.send_replace(false);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "lease round failed");
                if was_leader && last_renewed.is_none_or(|t| t.elapsed() > renew_deadline) {
                    tracing::warn!("could not renew the lease in time: stepping down");
                    leader.send_replace(false);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(retry) => {}
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
    if *leader.borrow() {
        leader.send_replace(false);
        match elector.release().await {
            Ok(()) => tracing::info!("released the lease"),
            Err(e) => tracing::warn!(error = %e, "could not release the lease"),
        }
    }
}
