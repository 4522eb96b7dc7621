//! An in-process [`Cluster`]: PVC and PV annotations and EcVolumes held in memory, with
//! every write recorded.

#![allow(dead_code)]

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
};

use couchestor_core::names;
use couchestor_csi_sidecar::cluster::{Cluster, ClusterError, Deleted};

#[derive(Debug, Default)]
pub struct World {
    /// (namespace, name) → annotations.
    pub pvcs: HashMap<(String, String), BTreeMap<String, String>>,
    /// PV name → annotations.
    pub pvs: HashMap<String, BTreeMap<String, String>>,
    /// EcVolume name → annotations.
    pub ec_volumes: HashMap<String, BTreeMap<String, String>>,
    /// When set, every call fails with this reason.
    pub unreachable: Option<String>,
    pub pvc_reads: Vec<String>,
    pub rehydration_requests: Vec<(String, String)>,
    pub deletions: Vec<(String, Deleted)>,
}

#[derive(Debug, Clone, Default)]
pub struct FakeCluster {
    pub world: Arc<Mutex<World>>,
}

impl FakeCluster {
    pub fn with_pvc(self, namespace: &str, name: &str, annotations: &[(&str, &str)]) -> Self {
        self.world.lock().unwrap().pvcs.insert(
            (namespace.into(), name.into()),
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        self
    }

    /// PV `pv` archived as EcVolume `ec_volume`.
    pub fn with_archived(self, pv: &str, ec_volume: &str) -> Self {
        {
            let mut world = self.world.lock().unwrap();
            world.pvs.insert(
                pv.into(),
                BTreeMap::from([(names::ARCHIVED.to_owned(), ec_volume.to_owned())]),
            );
            world.ec_volumes.insert(ec_volume.into(), BTreeMap::new());
        }
        self
    }

    pub fn unreachable(&self, reason: &str) {
        self.world.lock().unwrap().unreachable = Some(reason.into());
    }

    fn check(&self) -> Result<std::sync::MutexGuard<'_, World>, ClusterError> {
        let world = self.world.lock().unwrap();
        match &world.unreachable {
            Some(reason) => Err(ClusterError::Unavailable(reason.clone())),
            None => Ok(world),
        }
    }
}

impl Cluster for FakeCluster {
    async fn pvc_annotations(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<BTreeMap<String, String>, ClusterError> {
        let mut world = self.check()?;
        world.pvc_reads.push(format!("{namespace}/{name}"));
        world
            .pvcs
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
            .ok_or(ClusterError::NotFound {
                kind: "PersistentVolumeClaim",
                name: format!("{namespace}/{name}"),
            })
    }

    async fn archive_of(&self, _volume_id: &str, pv: &str) -> Result<Option<String>, ClusterError> {
        let world = self.check()?;
        Ok(world
            .pvs
            .get(pv)
            .and_then(|a| a.get(names::ARCHIVED))
            .cloned())
    }

    async fn request_rehydration(&self, ec_volume: &str, node: &str) -> Result<(), ClusterError> {
        let mut world = self.check()?;
        world
            .rehydration_requests
            .push((ec_volume.to_owned(), node.to_owned()));
        let count = world.rehydration_requests.len();
        let annotations = world
            .ec_volumes
            .get_mut(ec_volume)
            .ok_or(ClusterError::NotFound {
                kind: "EcVolume",
                name: ec_volume.to_owned(),
            })?;
        annotations
            .entry(names::REHYDRATE_REQUESTED.to_owned())
            .or_insert_with(|| format!("request-{count}"));
        Ok(())
    }

    async fn delete_ec_volume(&self, ec_volume: &str) -> Result<Deleted, ClusterError> {
        let mut world = self.check()?;
        let outcome = match world.ec_volumes.remove(ec_volume) {
            Some(_) => Deleted::Now,
            None => Deleted::AlreadyGone,
        };
        world.deletions.push((ec_volume.to_owned(), outcome));
        Ok(outcome)
    }
}
