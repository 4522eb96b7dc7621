//! Publishing the node's inventory in its `StorageNode` (issue #6).
//!
//! API calls (also in README.md, for RBAC):
//!
//! | call | verb | when |
//! |---|---|---|
//! | `GET storagenodes/<node>` | get | before each publish: the spec (`includeVirtualDevices`) and generation |
//! | `POST storagenodes` | create | when the node has no StorageNode yet |
//! | `PATCH storagenodes/<node>/status` (server-side apply, field manager `couchestor-node-agent`, forced) | patch | each publish |
//!
//! The loop rescans every `rescan` interval and publishes when the devices changed or
//! the heartbeat is due ([`publish_reason`]). An API error is logged and retried at the
//! next rescan; it never stops the agent serving shards.

use std::future::Future;
use std::time::Duration;

use couchestor_core::api::{Device, StorageNodeSpec, StorageNodeStatus, Time};
use couchestor_core::{StorageNode, Timestamp, condition, names};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::time::Instant;

use crate::discovery::{self, Inventory, Options};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("{action} StorageNode {node}: {source}")]
    Api {
        action: &'static str,
        node: String,
        #[source]
        source: Box<kube::Error>,
    },
}

/// Reads, creates and patches one node's `StorageNode`.
#[derive(Clone)]
pub struct Publisher {
    api: Api<StorageNode>,
    node_name: String,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("node_name", &self.node_name)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    pub fn new(client: Client, node_name: impl Into<String>) -> Self {
        Publisher {
            api: Api::all(client),
            node_name: node_name.into(),
        }
    }

    fn error(&self, action: &'static str) -> impl FnOnce(kube::Error) -> PublishError + '_ {
        move |source| PublishError::Api {
            action,
            node: self.node_name.clone(),
            source: Box::new(source),
        }
    }

    /// The node's StorageNode, created (spec `nodeName` only) when missing.
    pub async fn ensure(&self) -> Result<StorageNode, PublishError> {
        if let Some(node) = self
            .api
            .get_opt(&self.node_name)
            .await
            .map_err(self.error("reading"))?
        {
            return Ok(node);
        }
        let node = StorageNode::new(
            &self.node_name,
            StorageNodeSpec {
                node_name: self.node_name.clone(),
                include_virtual_devices: false,
            },
        );
        let params = PostParams {
            field_manager: Some(names::MANAGER_NODE_AGENT.to_owned()),
            ..PostParams::default()
        };
        match self.api.create(&params, &node).await {
            Ok(created) => {
                tracing::info!(node = self.node_name, "created StorageNode");
                Ok(created)
            }
            // Created by someone else between our read and our create: read theirs.
            Err(kube::Error::Api(status)) if status.code == 409 => self
                .api
                .get(&self.node_name)
                .await
                .map_err(self.error("reading")),
            Err(e) => Err(self.error("creating")(e)),
        }
    }

    /// Server-side-applies `status` (the agent owns every field it sets, forced so a
    /// previous owner cannot block it).
    pub async fn publish(&self, status: &StorageNodeStatus) -> Result<(), PublishError> {
        let patch = json!({
            "apiVersion": names::API_VERSION,
            "kind": "StorageNode",
            "metadata": {"name": self.node_name},
            "status": status,
        });
        self.api
            .patch_status(
                &self.node_name,
                &PatchParams::apply(names::MANAGER_NODE_AGENT).force(),
                &Patch::Apply(&patch),
            )
            .await
            .map_err(self.error("patching the status of"))?;
        Ok(())
    }
}

/// The status to publish: the devices, the endpoint, a heartbeat at `now`, and `Ready`
/// (kept from `previous` so its transition time moves only when it changes).
pub fn status(
    devices: Vec<Device>,
    endpoint: &str,
    generation: Option<i64>,
    previous: &[couchestor_core::api::Condition],
    now: Timestamp,
) -> StorageNodeStatus {
    let mut conditions = previous.to_vec();
    condition::set(
        &mut conditions,
        condition::READY,
        condition::Status::True,
        "InventoryPublished",
        format!("{} devices discovered", devices.len()),
        generation,
        now,
    );
    StorageNodeStatus {
        device_count: u32::try_from(devices.len()).unwrap_or(u32::MAX),
        devices,
        agent_endpoint: Some(endpoint.to_owned()),
        last_heartbeat: Some(Time(now)),
        observed_generation: generation,
        conditions,
    }
}

/// What was last published successfully.
#[derive(Debug, Clone)]
pub struct Published {
    pub devices: Vec<Device>,
    pub generation: Option<i64>,
    pub at: Instant,
}

/// Why to publish now, or `None` to wait: nothing published yet, the devices or the
/// spec generation changed, or the heartbeat is due.
pub fn publish_reason(
    last: Option<&Published>,
    devices: &[Device],
    generation: Option<i64>,
    now: Instant,
    heartbeat: Duration,
) -> Option<&'static str> {
    let Some(last) = last else {
        return Some("first publish");
    };
    if last.devices != devices {
        Some("inventory changed")
    } else if last.generation != generation {
        Some("spec changed")
    } else if now.duration_since(last.at) >= heartbeat {
        Some("heartbeat")
    } else {
        None
    }
}

/// Timing of the publish loop.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub rescan: Duration,
    pub heartbeat: Duration,
}

/// Rescans and publishes until `shutdown` completes.
pub async fn run(
    publisher: Publisher,
    options: Options,
    endpoint: String,
    schedule: Schedule,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut ticker = tokio::time::interval(schedule.rescan);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<Published> = None;
    let mut spec: Option<(bool, Option<i64>)> = None;
    let mut conditions = Vec::new();
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = ticker.tick() => {}
        }
        let include_virtual = options.include_virtual || spec.is_some_and(|(v, _)| v);
        let Some(inventory) = scan(&options, include_virtual).await else {
            continue;
        };
        let generation = spec.and_then(|(_, g)| g);
        let Some(reason) = publish_reason(
            last.as_ref(),
            &inventory.devices,
            generation,
            Instant::now(),
            schedule.heartbeat,
        ) else {
            continue;
        };
        let node = match publisher.ensure().await {
            Ok(node) => node,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the StorageNode; retrying at the next rescan");
                continue;
            }
        };
        if last.is_none()
            && let Some(status) = &node.status
        {
            conditions = status.conditions.clone();
        }
        let wanted = options.include_virtual || node.spec.include_virtual_devices;
        spec = Some((node.spec.include_virtual_devices, node.metadata.generation));
        let inventory = if wanted == include_virtual {
            inventory
        } else {
            match scan(&options, wanted).await {
                Some(i) => i,
                None => continue,
            }
        };
        let status = status(
            inventory.devices.clone(),
            &endpoint,
            node.metadata.generation,
            &conditions,
            Timestamp::now(),
        );
        match publisher.publish(&status).await {
            Ok(()) => {
                tracing::debug!(
                    reason,
                    devices = status.device_count,
                    "published StorageNode status"
                );
                conditions = status.conditions;
                last = Some(Published {
                    devices: inventory.devices,
                    generation: node.metadata.generation,
                    at: Instant::now(),
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot publish the StorageNode status; retrying at the next rescan");
            }
        }
    }
}

async fn scan(options: &Options, include_virtual: bool) -> Option<Inventory> {
    let mut options = options.clone();
    options.include_virtual = include_virtual;
    match tokio::task::spawn_blocking(move || discovery::discover(&options)).await {
        Ok(Ok(inventory)) => Some(inventory),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "discovery failed");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "discovery task failed");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use couchestor_core::api::DeviceKind;

    fn disk(name: &str) -> Device {
        Device {
            name: name.into(),
            path: format!("/dev/{name}"),
            kind: DeviceKind::Sata,
            kind_reason: String::new(),
            controller: None,
            namespace_id: None,
            rotational: Some(true),
            size_bytes: Some(1 << 40),
            logical_block_size: None,
            physical_block_size: None,
            model: None,
            serial: None,
            wwid: None,
            links: Vec::new(),
            smart: None,
            smart_absent_reason: None,
            suggested_tier: None,
            tier_reason: String::new(),
            unknown_attributes: Vec::new(),
        }
    }

    #[test]
    fn a_change_publishes_at_once_and_an_unchanged_inventory_waits_for_the_heartbeat() {
        let t0 = Instant::now();
        let heartbeat = Duration::from_secs(60);
        let devices = vec![disk("sda")];
        assert_eq!(
            publish_reason(None, &devices, Some(1), t0, heartbeat),
            Some("first publish")
        );
        let last = Published {
            devices: devices.clone(),
            generation: Some(1),
            at: t0,
        };
        let soon = t0 + Duration::from_secs(10);
        assert_eq!(
            publish_reason(Some(&last), &devices, Some(1), soon, heartbeat),
            None
        );
        let more = vec![disk("sda"), disk("sdb")];
        assert_eq!(
            publish_reason(Some(&last), &more, Some(1), soon, heartbeat),
            Some("inventory changed")
        );
        assert_eq!(
            publish_reason(Some(&last), &devices, Some(2), soon, heartbeat),
            Some("spec changed")
        );
        assert_eq!(
            publish_reason(Some(&last), &devices, Some(1), t0 + heartbeat, heartbeat),
            Some("heartbeat")
        );
    }

    #[test]
    fn the_status_counts_devices_and_keeps_the_ready_transition_time() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().expect("time");
        let t1: Timestamp = "2026-01-01T00:01:00Z".parse().expect("time");
        let first = status(vec![disk("sda")], "https://10.0.0.1:7400", Some(3), &[], t0);
        assert_eq!(first.device_count, 1);
        assert_eq!(
            first.agent_endpoint.as_deref(),
            Some("https://10.0.0.1:7400")
        );
        assert_eq!(first.observed_generation, Some(3));
        let second = status(
            Vec::new(),
            "https://10.0.0.1:7400",
            Some(3),
            &first.conditions,
            t1,
        );
        assert_eq!(second.device_count, 0);
        assert_eq!(second.last_heartbeat, Some(Time(t1)));
        let ready = condition::get(&second.conditions, condition::READY).expect("Ready");
        assert_eq!(ready.last_transition_time, Time(t0));
        assert_eq!(ready.message, "0 devices discovered");
    }
}
