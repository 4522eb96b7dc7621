//! The StoragePolicy controller (kube-rs runtime).
//!
//! Triggers: a policy's spec changing (its `metadata.generation`; status-only changes
//! — including the operator's own status writes — are filtered out, so there is no
//! hot loop), PersistentVolumes and PersistentVolumeClaims of the policy's
//! StorageClass, the VolumeMigrations it owns, and a periodic requeue (loads change
//! without any object changing).
//!
//! One reconcile: list the policy's VolumeMigrations; unless disabled, validate the
//! spec, read Mayastor (volumes, pools) and ask Prometheus once; plan with
//! `couchestor_core::plan`; create one VolumeMigration per planned move (none in a dry
//! run, none while metrics are unknown); write the status by server-side apply; publish
//! Events. The decisions are pure functions in the submodules ([`observe`], [`ledger`],
//! [`migration`], [`status`]); this file only carries them out.

pub mod ledger;
pub mod migration;
pub mod observe;
pub mod status;

use std::{collections::BTreeMap, future::Future, sync::Arc, time::Duration};

use couchestor_core::{
    StoragePolicy, Timestamp, VolumeMigration,
    api::StoragePolicyStatus,
    names,
    plan::{Plan, plan},
    tier::Load,
    validation::validate_storage_policy,
};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ListParams, Patch, PatchParams, PostParams},
    runtime::{
        Controller, WatchStreamExt,
        controller::{Action, Config as ControllerConfig},
        events::{Event, EventType, Recorder},
        predicates,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use tracing::Instrument;

use self::{
    ledger::Ledger,
    status::{Evaluation, Inputs, Metrics as MetricsState},
};
use crate::{
    admin::{Health, Peer},
    mayastor::Mayastor,
    metrics::Metrics,
    prometheus::{MetricNames, Prometheus, loads_or_unknown},
};

/// Wiring of the controller (flags, not policy).
#[derive(Debug, Clone)]
pub struct Settings {
    pub metric_names: MetricNames,
    /// How often a policy is re-evaluated without any object changing.
    pub requeue: Duration,
    /// How soon a failed reconcile is retried.
    pub error_requeue: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            metric_names: MetricNames::default(),
            requeue: Duration::from_secs(60),
            error_requeue: Duration::from_secs(15),
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub prometheus: Prometheus,
    pub mayastor: Mayastor,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// PersistentVolumes (watch cache).
    pub pvs: Store<PersistentVolume>,
    /// PersistentVolumeClaims (watch cache), for `volumeSelector`.
    pub pvcs: Store<PersistentVolumeClaim>,
    pub settings: Settings,
    /// The status this process last wrote per policy.
    pub written: Written,
}

/// The status this process last wrote, per policy UID. The leader is the only writer
/// of a policy's status, so this is the newest status even when the watch cache has
/// not caught up with the write yet — without it, a reconcile right after a write
/// would start from the older status and a monotonic counter could go back.
#[derive(Debug, Default)]
pub struct Written(std::sync::Mutex<BTreeMap<String, StoragePolicyStatus>>);

impl Written {
    fn get(&self, uid: &str) -> Option<StoragePolicyStatus> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(uid)
            .cloned()
    }

    fn put(&self, uid: &str, status: StoragePolicyStatus) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(uid.to_owned(), status);
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// A reconcile that could not finish (the Kubernetes API refused or failed).
/// Unavailable metrics or Mayastor are not errors: they are conditions.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("listing VolumeMigrations: {0}")]
    ListMigrations(#[source] kube::Error),
    #[error("creating VolumeMigration {name}: {source}")]
    CreateMigration {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing the status of StoragePolicy {name}: {source}")]
    WriteStatus {
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// What the observation of an enabled policy found (owned; borrowed by
/// [`Evaluation`]).
enum Found {
    Disabled,
    Invalid(String),
    MayastorDown(String),
    Planned {
        plan: Plan,
        metrics: MetricsState,
        archived: u32,
        /// PV name → Mayastor volume UUID.
        ids: BTreeMap<String, String>,
    },
}

/// Reconciles one policy (see the module documentation).
pub async fn reconcile(policy: Arc<StoragePolicy>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = std::time::Instant::now();
    let span = tracing::info_span!("reconcile", policy = %policy.name_any());
    let result = reconcile_policy(&policy, &ctx).instrument(span).await;
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    result
}

/// Retries a failed reconcile after `error_requeue`.
pub fn error_policy(policy: Arc<StoragePolicy>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(policy = %policy.name_any(), %error, "reconcile failed");
    ctx.metrics.reconcile_error("kube");
    Action::requeue(ctx.settings.error_requeue)
}

async fn reconcile_policy(policy: &StoragePolicy, ctx: &Context) -> Result<Action, Error> {
    let name = policy.name_any();
    if policy.meta().deletion_timestamp.is_some() {
        ctx.metrics.forget_policy(&name);
        return Ok(Action::await_change());
    }
    let now = Timestamp::now();
    let vms: Api<VolumeMigration> = Api::all(ctx.client.clone());
    // Our migrations carry the policy label when the name fits a label value; the
    // ledger filters on `spec.policyRef` either way.
    let mut params = ListParams::default();
    if name.len() <= 63 {
        params = params.labels(&format!("{}={name}", migration::POLICY_LABEL));
    }
    let migrations = vms
        .list(&params)
        .await
        .map_err(Error::ListMigrations)?
        .items;
    let ledger = Ledger::of(&name, &migrations);
    let uid = policy.uid().unwrap_or_else(|| name.clone());
    let previous = ctx
        .written
        .get(&uid)
        .or_else(|| policy.status.clone())
        .unwrap_or_default();
    let mut events: Vec<(EventType, &'static str, String)> = Vec::new();

    let found = if policy.spec.enabled {
        observe(policy, ctx, &ledger, now).await
    } else {
        Found::Disabled
    };

    // Start the planned moves: not in a dry run, never while metrics are unknown.
    let mut created = 0u32;
    let mut create_error = None;
    if let Found::Planned {
        plan,
        metrics: MetricsState::Available,
        ids,
        ..
    } = &found
    {
        for mv in plan.executable() {
            let Some(volume_id) = ids.get(&mv.volume) else {
                continue;
            };
            let vm = migration::build(policy, mv, volume_id, ledger.migrations_of(&mv.volume));
            let vm_name = vm.name_any();
            match vms.create(&post(), &vm).await {
                Ok(_) => {
                    created += 1;
                    tracing::info!(migration = %vm_name, volume = %mv.volume, from = %mv.from, to = %mv.to, "migration created");
                    events.push((
                        EventType::Normal,
                        "MigrationCreated",
                        format!(
                            "{}: {} → {} ({:.0} IOPS; {}) as VolumeMigration {vm_name}",
                            mv.volume, mv.from, mv.to, mv.iops, mv.reason
                        ),
                    ));
                }
                // Created by an earlier attempt whose answer was lost: it is in flight.
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    tracing::debug!(migration = %vm_name, "already exists");
                }
                Err(source) => {
                    create_error = Some(Error::CreateMigration {
                        name: vm_name,
                        source,
                    });
                    break;
                }
            }
        }
    }

    match &found {
        Found::Disabled if previous.phase != Some(couchestor_core::api::PolicyPhase::Disabled) => {
            events.push((
                EventType::Normal,
                "Disabled",
                format!(
                    "enabled is false: no new moves; {} in flight will finish",
                    ledger.in_flight().len()
                ),
            ));
        }
        Found::Invalid(why) => {
            ctx.metrics.reconcile_error("invalid_policy");
            events.push((EventType::Warning, "InvalidPolicy", why.clone()));
        }
        Found::MayastorDown(why) => {
            ctx.metrics.reconcile_error("mayastor");
            events.push((
                EventType::Warning,
                "MayastorUnavailable",
                format!("no moves: {why}"),
            ));
        }
        Found::Planned {
            metrics: MetricsState::QueryFailed(why) | MetricsState::NoData(why),
            ..
        } => {
            ctx.metrics.reconcile_error("prometheus");
            events.push((
                EventType::Warning,
                "MetricsUnavailable",
                format!("no moves while metrics are unknown: {why}"),
            ));
        }
        _ => {}
    }

    for f in ledger.unrecorded(&previous.migration_history) {
        ctx.metrics.migration_finished(f.result(), f.from, f.to);
    }
    let evaluation = match &found {
        Found::Disabled => Evaluation::Disabled,
        Found::Invalid(why) => Evaluation::Invalid(why.clone()),
        Found::MayastorDown(why) => Evaluation::MayastorUnavailable(why.clone()),
        Found::Planned {
            plan,
            metrics,
            archived,
            ..
        } => {
            let mut counts = plan.counts.clone();
            counts.archived = *archived;
            ctx.metrics.set_volumes(&name, &counts);
            Evaluation::Evaluated {
                plan,
                metrics: metrics.clone(),
                archived: *archived,
            }
        }
    };
    let next = status::next_status(
        &previous,
        &Inputs {
            generation: policy.meta().generation,
            now,
            ledger: &ledger,
            started: created,
            evaluation,
        },
    );
    ctx.metrics.set_active(&name, Some(next.active_migrations));
    let policies: Api<StoragePolicy> = Api::all(ctx.client.clone());
    policies
        .patch_status(
            &name,
            &PatchParams::apply(names::MANAGER_OPERATOR).force(),
            &Patch::Apply(status::apply_body(&next)),
        )
        .await
        .map_err(|source| Error::WriteStatus {
            name: name.clone(),
            source,
        })?;
    ctx.written.put(&uid, next);

    let reference = policy.object_ref(&());
    for (type_, reason, note) in events {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, &reference).await {
            tracing::warn!(reason, error = %e, "could not publish an Event");
        }
    }
    match create_error {
        Some(e) => Err(e),
        None => Ok(Action::requeue(ctx.settings.requeue)),
    }
}

/// Observes an enabled policy: validation, Mayastor, Prometheus (once), the plan.
async fn observe(policy: &StoragePolicy, ctx: &Context, ledger: &Ledger, now: Timestamp) -> Found {
    let spec = &policy.spec;
    if let Err(e) = validate_storage_policy(spec) {
        return Found::Invalid(e.to_string());
    }
    let window = spec.sampling_window.parse().unwrap_or_default();
    let (pvs, pvcs) = (ctx.pvs.state(), ctx.pvcs.state());
    let watched = observe::watched_volumes(
        spec,
        pvs.iter().map(AsRef::as_ref),
        pvcs.iter().map(AsRef::as_ref),
    );
    let (volumes, pools) = match tokio::try_join!(ctx.mayastor.volumes(), ctx.mayastor.pools()) {
        Ok(answer) => {
            ctx.health.answered(Peer::Mayastor);
            answer
        }
        Err(e) => return Found::MayastorDown(e.to_string()),
    };

    let live: Vec<String> = watched
        .iter()
        .filter(|w| !w.archived)
        .map(|w| w.pv.clone())
        .collect();
    let asked = std::time::Instant::now();
    let answer = ctx
        .prometheus
        .volume_loads(&ctx.settings.metric_names, window)
        .await;
    ctx.metrics
        .prometheus_query_duration
        .observe(asked.elapsed().as_secs_f64());
    if answer.is_ok() {
        ctx.health.answered(Peer::Prometheus);
    }
    let (loads, failed) = loads_or_unknown(answer, &live);
    let metrics = match failed {
        Some(why) => MetricsState::QueryFailed(why),
        None if !live.is_empty() && loads.values().all(|l| *l == Load::Unknown) => {
            MetricsState::NoData(format!(
                "Prometheus has no samples of {} / {} for any of the {} watched volumes",
                ctx.settings.metric_names.read_ops,
                ctx.settings.metric_names.write_ops,
                live.len()
            ))
        }
        None => MetricsState::Available,
    };
    let observed = observe::observed_volumes(&watched, &volumes, &pools, &loads, ledger);
    let plan = match plan(spec, &observed, ledger.in_flight(), now) {
        Ok(p) => p,
        Err(e) => return Found::Invalid(e.to_string()),
    };
    let archived = u32::try_from(watched.iter().filter(|w| w.archived).count()).unwrap_or(u32::MAX);
    Found::Planned {
        plan,
        metrics,
        archived,
        ids: watched.into_iter().map(|w| (w.pv, w.volume_id)).collect(),
    }
}

fn post() -> PostParams {
    PostParams {
        dry_run: false,
        field_manager: Some(names::MANAGER_OPERATOR.to_owned()),
    }
}

/// The policy trigger: only spec changes (a new `metadata.generation`) pass, so a
/// status write — ours or anyone's — never starts a reconcile.
pub fn spec_changes<S>(policies: S) -> impl Stream<Item = Result<StoragePolicy, watcher::Error>>
where
    S: Stream<Item = Result<StoragePolicy, watcher::Error>>,
{
    policies.predicate_filter(predicates::generation, Default::default())
}

/// The policies tiering `storage_class` (from the policy cache).
fn policies_of_class(
    policies: &Store<StoragePolicy>,
    storage_class: Option<&str>,
) -> Vec<ObjectRef<StoragePolicy>> {
    let Some(class) = storage_class else {
        return Vec::new();
    };
    policies
        .state()
        .iter()
        .filter(|p| p.spec.storage_class_name == class)
        .map(|p| ObjectRef::from_obj(p.as_ref()))
        .collect()
}

/// Counts the watches that have not listed once yet; `/readyz` waits for zero.
struct Synced {
    health: Arc<Health>,
    pending: Arc<std::sync::atomic::AtomicUsize>,
}

impl Synced {
    fn new(health: Arc<Health>, watches: usize) -> Self {
        health.set_watches_synced(false);
        Self {
            health,
            pending: Arc::new(std::sync::atomic::AtomicUsize::new(watches)),
        }
    }

    /// An `inspect` callback for one watch stream: its first `InitDone` counts.
    fn marker<K>(&self) -> impl FnMut(&Result<watcher::Event<K>, watcher::Error>) + use<K> {
        let (health, pending) = (self.health.clone(), self.pending.clone());
        let mut seen = false;
        move |event| {
            if !seen && matches!(event, Ok(watcher::Event::InitDone)) {
                seen = true;
                if pending.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
                    tracing::info!("watches synced");
                    health.set_watches_synced(true);
                }
            }
        }
    }
}

/// An `inspect` callback for the policy watch: a deleted policy's metric series go
/// (also those of policies that vanished while the watch was re-listing).
fn forget_deleted(
    metrics: Arc<Metrics>,
    policies: Store<StoragePolicy>,
) -> impl FnMut(&Result<watcher::Event<StoragePolicy>, watcher::Error>) {
    move |event| match event {
        Ok(watcher::Event::Delete(policy)) => metrics.forget_policy(&policy.name_any()),
        Ok(watcher::Event::InitDone) => {
            let existing = policies.state().iter().map(|p| p.name_any()).collect();
            metrics.retain_policies(&existing);
        }
        _ => {}
    }
}

/// The peers and wiring the controller needs.
pub struct Parts {
    pub client: Client,
    pub prometheus: Prometheus,
    pub mayastor: Mayastor,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub settings: Settings,
    /// `reportingInstance` of Events (the pod name).
    pub identity: String,
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts")
            .field("identity", &self.identity)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Runs the controller until `shutdown` completes (in-flight reconciles finish).
pub async fn run(parts: Parts, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let client = parts.client.clone();
    let (policy_reader, policy_writer) = reflector::store::<StoragePolicy>();
    let (pv_reader, pv_writer) = reflector::store::<PersistentVolume>();
    let (pvc_reader, pvc_writer) = reflector::store::<PersistentVolumeClaim>();
    let synced = Synced::new(parts.health.clone(), 3);
    let policies = spec_changes(
        watcher(
            Api::<StoragePolicy>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff()
        .reflect(policy_writer)
        .inspect(synced.marker())
        .inspect(forget_deleted(parts.metrics.clone(), policy_reader.clone()))
        .applied_objects(),
    );
    let pvs = watcher(
        Api::<PersistentVolume>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(pv_writer)
    .inspect(synced.marker())
    .touched_objects();
    let pvcs = watcher(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(pvc_writer)
    .inspect(synced.marker())
    .touched_objects();

    let ctx = Arc::new(Context {
        recorder: Recorder::new(
            client.clone(),
            crate::kube_store::reporter(Some(parts.identity.clone())),
        ),
        client: client.clone(),
        prometheus: parts.prometheus,
        mayastor: parts.mayastor,
        metrics: parts.metrics,
        health: parts.health,
        pvs: pv_reader,
        pvcs: pvc_reader,
        settings: parts.settings,
        written: Written::default(),
    });
    let for_pv = policy_reader.clone();
    let for_pvc = policy_reader.clone();
    Controller::for_stream(policies, policy_reader)
        .watches_stream(pvs, move |pv: PersistentVolume| {
            policies_of_class(
                &for_pv,
                pv.spec
                    .as_ref()
                    .and_then(|s| s.storage_class_name.as_deref()),
            )
        })
        .watches_stream(pvcs, move |pvc: PersistentVolumeClaim| {
            policies_of_class(
                &for_pvc,
                pvc.spec
                    .as_ref()
                    .and_then(|s| s.storage_class_name.as_deref()),
            )
        })
        .owns(
            Api::<VolumeMigration>::all(client),
            watcher::Config::default(),
        )
        .with_config(ControllerConfig::default().debounce(Duration::from_secs(1)))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((policy, _)) => tracing::debug!(policy = %policy.name, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "controller"),
            }
        })
        .await;
}

#[cfg(test)]
mod tests;
