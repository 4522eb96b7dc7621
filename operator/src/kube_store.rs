//! The Kubernetes side of the migration executor: where a `VolumeMigration` is read
//! and its journal (status) written, and where its Events go.
//!
//! The executor ([`crate::executor`]) defines the two ports [`MigrationStore`] and
//! [`EventSink`]; these are their implementations on the kube API.

use couchestor_core::{VolumeMigration, api::VolumeMigrationStatus, names};
use kube::{
    Api, Client, Resource,
    api::{Patch, PatchParams},
    runtime::events::{Event, EventType as KubeEventType, Recorder, Reporter},
};

pub use crate::executor::{EventSink, EventType, MigrationStore, StoreError, holds_finalizer};

/// A kube error as the executor's store error: 404 means the object is gone; anything
/// else leaves the write unknown, so the executor stops and resumes later.
fn store_error(action: &str, name: &str, e: kube::Error) -> StoreError {
    match e {
        kube::Error::Api(status) if status.code == 404 => StoreError::NotFound(name.to_owned()),
        e => StoreError::Unavailable(format!("{action} VolumeMigration {name}: {e}")),
    }
}

/// `VolumeMigration`s in the API server. Status is written by server-side apply on the
/// `status` subresource under the operator's field manager, forcing ownership: the
/// operator is the only writer of a migration's status, and the whole status is sent
/// each time, so fields left out are removed.
#[derive(Clone)]
pub struct KubeMigrationStore {
    api: Api<VolumeMigration>,
}

impl std::fmt::Debug for KubeMigrationStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeMigrationStore").finish_non_exhaustive()
    }
}

impl KubeMigrationStore {
    pub fn new(client: Client) -> Self {
        Self {
            api: Api::all(client),
        }
    }
}

impl MigrationStore for KubeMigrationStore {
    async fn get(&self, name: &str) -> Result<Option<VolumeMigration>, StoreError> {
        self.api
            .get_opt(name)
            .await
            .map_err(|e| store_error("reading", name, e))
    }

    async fn put_status(
        &self,
        name: &str,
        status: &VolumeMigrationStatus,
    ) -> Result<(), StoreError> {
        let body = serde_json::json!({
            "apiVersion": VolumeMigration::api_version(&()),
            "kind": VolumeMigration::kind(&()),
            "status": status,
        });
        self.api
            .patch_status(
                name,
                &PatchParams::apply(names::MANAGER_OPERATOR).force(),
                &Patch::Apply(&body),
            )
            .await
            .map(|_| ())
            .map_err(|e| store_error("writing the status of", name, e))
    }

    /// A JSON merge patch of `metadata.finalizers` without ours, guarded by the
    /// `resourceVersion` just read: a concurrent change to the list (another
    /// controller's finalizer) makes it fail with 409 instead of being overwritten,
    /// and the next pass tries again.
    async fn release(&self, name: &str) -> Result<(), StoreError> {
        let Some(vm) = self.get(name).await? else {
            return Ok(());
        };
        if !holds_finalizer(&vm) {
            return Ok(());
        }
        let rest: Vec<&String> = vm
            .metadata
            .finalizers
            .iter()
            .flatten()
            .filter(|f| *f != names::MIGRATION_FINALIZER)
            .collect();
        let body = serde_json::json!({
            "metadata": {
                "finalizers": rest,
                "resourceVersion": vm.metadata.resource_version,
            }
        });
        match self
            .api
            .patch(name, &PatchParams::default(), &Patch::Merge(&body))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(e) => Err(store_error("removing the finalizer of", name, e)),
        }
    }
}

/// Events (`events.k8s.io/v1`) about migrations, through kube's [`Recorder`] (which
/// folds repeats into a series). A failure to publish is logged, never fatal: an Event
/// is a report, not part of the journal.
#[derive(Clone)]
pub struct KubeEventSink {
    recorder: Recorder,
}

impl std::fmt::Debug for KubeEventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeEventSink").finish_non_exhaustive()
    }
}

impl KubeEventSink {
    /// `instance` names this replica (the pod name) in `reportingInstance`.
    pub fn new(client: Client, instance: Option<String>) -> Self {
        Self {
            recorder: Recorder::new(client, reporter(instance)),
        }
    }
}

/// The `reportingController` / `reportingInstance` of every Event the operator writes.
pub fn reporter(instance: Option<String>) -> Reporter {
    Reporter {
        controller: names::MANAGER_OPERATOR.to_owned(),
        instance,
    }
}

/// Converts our severity to kube's.
pub fn kube_event_type(kind: EventType) -> KubeEventType {
    match kind {
        EventType::Normal => KubeEventType::Normal,
        EventType::Warning => KubeEventType::Warning,
    }
}

impl EventSink for KubeEventSink {
    async fn emit(
        &self,
        migration: &VolumeMigration,
        kind: EventType,
        reason: &str,
        message: String,
    ) {
        let event = Event {
            type_: kube_event_type(kind),
            reason: reason.to_owned(),
            note: Some(message),
            action: "Migrate".to_owned(),
            secondary: None,
        };
        if let Err(e) = self
            .recorder
            .publish(&event, &migration.object_ref(&()))
            .await
        {
            tracing::warn!(migration = ?migration.metadata.name, reason, error = %e, "could not publish an Event");
        }
    }
}
