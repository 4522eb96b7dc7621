//! What the executor needs from the outside world besides Mayastor: somewhere durable
//! to keep the `VolumeMigration` status (the write-ahead journal), somewhere to send
//! Kubernetes Events, and a clock.
//!
//! The Kubernetes implementations (status subresource, `events.k8s.io`) live with the
//! controller; the in-memory ones here serve tests, and [`SystemClock`] is the real
//! clock. Tests of moves against the simulator use a clock that advances the
//! simulator's virtual time instead of sleeping.

use std::{
    collections::BTreeMap,
    future::Future,
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use couchestor_core::{
    Timestamp,
    api::{Time, VolumeMigration, VolumeMigrationStatus},
    names,
};

/// Whether `vm` carries the operator's finalizer.
pub fn holds_finalizer(vm: &VolumeMigration) -> bool {
    vm.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == names::MIGRATION_FINALIZER)
}

/// The store could not answer or could not make a write durable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The object is gone (deleted while the move ran).
    #[error("VolumeMigration {0} not found")]
    NotFound(String),
    /// Anything else (API server unreachable, conflict, …): nothing is known to have
    /// been written.
    #[error("VolumeMigration store: {0}")]
    Unavailable(String),
}

/// Where `VolumeMigration` objects live (the Kubernetes API in production).
pub trait MigrationStore: Send + Sync {
    /// The current object (spec + status), or None if it was deleted.
    fn get(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<VolumeMigration>, StoreError>> + Send;
    /// Persist the whole status; returns only once the write is acknowledged (durable).
    fn put_status(
        &self,
        name: &str,
        status: &VolumeMigrationStatus,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Removes [`names::MIGRATION_FINALIZER`] from the object (the move is finished
    /// and its steering undone), letting a pending deletion complete. Idempotent: an
    /// object without the finalizer, or gone, is left as it is.
    fn release(&self, name: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Kubernetes Event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

/// Where Events about a move go (`events.k8s.io` in production). Emitting never
/// fails the move: an Event is information, not state.
pub trait EventSink: Send + Sync {
    fn emit(
        &self,
        migration: &VolumeMigration,
        kind: EventType,
        reason: &str,
        message: String,
    ) -> impl Future<Output = ()> + Send;
}

/// Time as the executor sees it: timestamps for the journal and the timeout, and
/// waiting between polls.
pub trait Clock: Send + Sync {
    fn now(&self) -> Timestamp;
    fn sleep(&self, by: Duration) -> impl Future<Output = ()> + Send;
}

/// Wall-clock time and `tokio::time::sleep`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    fn sleep(&self, by: Duration) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(by)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Test doubles: a panic elsewhere must not hide what was recorded.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A [`MigrationStore`] in memory that also keeps every status written, in order.
#[derive(Debug, Default)]
pub struct InMemoryStore {
    objects: Mutex<BTreeMap<String, VolumeMigration>>,
    writes: Mutex<Vec<(String, VolumeMigrationStatus)>>,
}

impl InMemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces an object, keyed by `metadata.name`.
    pub fn insert(&self, migration: VolumeMigration) {
        let name = migration.metadata.name.clone().unwrap_or_default();
        lock(&self.objects).insert(name, migration);
    }

    /// Deletes an object outright.
    pub fn remove(&self, name: &str) {
        lock(&self.objects).remove(name);
    }

    /// Deletes an object as the API server does: one with finalizers only gets a
    /// `deletionTimestamp` (at `at`) and stays until they are removed.
    pub fn request_deletion(&self, name: &str, at: Timestamp) {
        let mut objects = lock(&self.objects);
        let Some(object) = objects.get_mut(name) else {
            return;
        };
        if object.metadata.finalizers.iter().flatten().next().is_some() {
            object.metadata.deletion_timestamp.get_or_insert(Time(at));
        } else {
            objects.remove(name);
        }
    }

    /// The object as stored now.
    pub fn object(&self, name: &str) -> Option<VolumeMigration> {
        lock(&self.objects).get(name).cloned()
    }

    /// Every status written for `name`, oldest first.
    pub fn writes(&self, name: &str) -> Vec<VolumeMigrationStatus> {
        lock(&self.writes)
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, s)| s.clone())
            .collect()
    }

    /// How many statuses were written, all objects together.
    pub fn write_count(&self) -> usize {
        lock(&self.writes).len()
    }
}

impl MigrationStore for InMemoryStore {
    fn get(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<VolumeMigration>, StoreError>> + Send {
        let found = self.object(name);
        async move { Ok(found) }
    }

    fn put_status(
        &self,
        name: &str,
        status: &VolumeMigrationStatus,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let result = match lock(&self.objects).get_mut(name) {
            Some(object) => {
                object.status = Some(status.clone());
                lock(&self.writes).push((name.to_owned(), status.clone()));
                Ok(())
            }
            None => Err(StoreError::NotFound(name.to_owned())),
        };
        async move { result }
    }

    fn release(&self, name: &str) -> impl Future<Output = Result<(), StoreError>> + Send {
        let mut objects = lock(&self.objects);
        if let Some(object) = objects.get_mut(name) {
            if let Some(finalizers) = object.metadata.finalizers.as_mut() {
                finalizers.retain(|f| f != names::MIGRATION_FINALIZER);
            }
            let deleting = object.metadata.deletion_timestamp.is_some();
            if deleting && object.metadata.finalizers.iter().flatten().next().is_none() {
                objects.remove(name);
            }
        }
        async { Ok(()) }
    }
}

/// One Event as a [`RecordingEvents`] received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    /// The VolumeMigration's name.
    pub object: String,
    pub kind: EventType,
    pub reason: String,
    pub message: String,
}

/// An [`EventSink`] that keeps every Event, in order.
#[derive(Debug, Default)]
pub struct RecordingEvents {
    events: Mutex<Vec<RecordedEvent>>,
}

impl RecordingEvents {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every Event so far, oldest first.
    pub fn events(&self) -> Vec<RecordedEvent> {
        lock(&self.events).clone()
    }

    /// The reasons of every Event so far, oldest first.
    pub fn reasons(&self) -> Vec<String> {
        lock(&self.events)
            .iter()
            .map(|e| e.reason.clone())
            .collect()
    }
}

impl EventSink for RecordingEvents {
    fn emit(
        &self,
        migration: &VolumeMigration,
        kind: EventType,
        reason: &str,
        message: String,
    ) -> impl Future<Output = ()> + Send {
        lock(&self.events).push(RecordedEvent {
            object: migration.metadata.name.clone().unwrap_or_default(),
            kind,
            reason: reason.to_owned(),
            message,
        });
        async {}
    }
}
