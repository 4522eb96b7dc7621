//! The cluster as the REST service renders it: the JSON shapes of the v0 spec,
//! written out by hand (not through the client's types) so that a wrong field name
//! on either side shows up as a test failure rather than agreeing with itself.

use std::time::Duration;

use serde_json::{Value, json};

use super::{ChildSim, Cluster, SimError, progress, timestamp};

impl Cluster {
    /// `GET /volumes/{id}`: `Volume {spec, state}`.
    pub fn volume_json(&self, uuid: &str) -> Result<Value, SimError> {
        let v = self
            .volumes
            .get(uuid)
            .ok_or_else(|| SimError::not_found("volume", uuid))?;
        let total = self.behaviour.rebuild_time.max(Duration::from_millis(1));
        let mut topology = serde_json::Map::new();
        let mut children = Vec::new();
        let mut rebuilds = 0;
        for r in &v.replicas {
            let pool_faulted = self.pools.get(&r.pool).is_some_and(|p| p.faulted);
            let (child_state, percent) = match r.child {
                ChildSim::Online => ("Online", None),
                ChildSim::Faulted => ("Faulted", None),
                ChildSim::Rebuilding { started, .. } => {
                    rebuilds += 1;
                    (
                        "Degraded",
                        Some(progress(self.now.saturating_sub(started), total)),
                    )
                }
            };
            let child_state = if pool_faulted { "Faulted" } else { child_state };
            let mut t = json!({
                "node": r.node,
                "pool": r.pool,
                "state": if pool_faulted { "Faulted" } else { "Online" },
                "usage": {"capacity": v.size, "allocated": v.size, "allocated_snapshots": 0, "allocated_all_snapshots": 0},
            });
            if v.target.is_some() {
                t["child-status"] = json!(child_state);
                let uri = self.child_uri(v.target.as_deref(), &r.node, &r.uuid);
                let mut child = json!({"uri": uri, "state": child_state});
                if let Some(p) = percent {
                    child["rebuildProgress"] = json!(p);
                }
                children.push(child);
            }
            if let Some(p) = percent {
                t["rebuild-progress"] = json!(p);
            }
            topology.insert(r.uuid.clone(), t);
        }
        let status = self.status(v);
        let mut spec = json!({
            "uuid": uuid,
            "size": v.size,
            "num_replicas": v.num_replicas,
            "status": "Created",
            "policy": {"self_heal": true},
            "thin": v.thin,
            "num_snapshots": 0,
            "topology": {"pool_topology": {"labelled": {"inclusion": v.inclusion, "exclusion": {}, "affinitykey": []}}},
        });
        let mut state =
            json!({"uuid": uuid, "size": v.size, "status": status, "replica_topology": topology});
        if let Some(node) = &v.target {
            spec["target"] = json!({"node": node, "protocol": "nvmf"});
            state["target"] = json!({
                "uuid": uuid,
                "node": node,
                "deviceUri": format!("nvmf://{}:8420/nqn.2019-05.io.openebs:{uuid}", self.nodes.get(node).map(|n| n.address.as_str()).unwrap_or("0.0.0.0")),
                "protocol": "nvmf",
                "size": v.size,
                "rebuilds": rebuilds,
                "state": status,
                "children": children,
            });
        }
        Ok(json!({"spec": spec, "state": state}))
    }

    /// `GET /volumes`: `{entries, next_token?}`, `max_entries = 0` ⇒ everything.
    pub fn volumes_json(
        &self,
        max_entries: usize,
        starting_token: usize,
    ) -> Result<Value, SimError> {
        let ids: Vec<&String> = self.volumes.keys().collect();
        let start = starting_token.min(ids.len());
        let end = if max_entries == 0 {
            ids.len()
        } else {
            (start + max_entries).min(ids.len())
        };
        let entries = ids[start..end]
            .iter()
            .map(|id| self.volume_json(id))
            .collect::<Result<Vec<_>, _>>()?;
        let mut page = json!({"entries": entries});
        if end < ids.len() {
            page["next_token"] = json!(end);
        }
        Ok(page)
    }

    /// `GET /pools/{id}`: `Pool {id, spec, state?}`.
    pub fn pool_json(&self, id: &str) -> Result<Value, SimError> {
        let p = self
            .pools
            .get(id)
            .ok_or_else(|| SimError::not_found("pool", id))?;
        let disk = format!("aio:///dev/disk/by-id/sim-{id}");
        let mut spec = json!({"id": id, "node": p.node, "disks": [disk], "labels": p.labels, "status": "Created"});
        if p.cordon.iter().any(|c| *c) {
            let [replicas, snapshots, restores, import] = p.cordon;
            spec["cordon_drain"] = json!({"cordoned": {"replicas": replicas, "snapshots": snapshots, "restores": restores, "import": import}});
        }
        let node_online = self.nodes.get(&p.node).is_some_and(|n| n.online);
        let mut pool = json!({"id": id, "spec": spec});
        // A pool whose node is offline has no state, as in Mayastor.
        if node_online {
            let status = if p.faulted { "Faulted" } else { "Online" };
            pool["state"] = json!({"id": id, "node": p.node, "disks": [disk], "capacity": p.capacity, "used": p.used, "committed": p.used, "status": status});
        }
        Ok(pool)
    }

    /// `GET /pools`.
    pub fn pools_json(&self) -> Result<Value, SimError> {
        let pools = self
            .pools
            .keys()
            .map(|id| self.pool_json(id))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Value::Array(pools))
    }

    /// `GET /nodes/{id}`: `Node {id, spec, state}`.
    pub fn node_json(&self, id: &str) -> Result<Value, SimError> {
        let n = self
            .nodes
            .get(id)
            .ok_or_else(|| SimError::not_found("node", id))?;
        let endpoint = format!("{}:10124", n.address);
        let mut spec = json!({"id": id, "grpcEndpoint": endpoint, "labels": {}});
        if !n.cordons.is_empty() {
            spec["cordondrainstate"] = json!({"cordonedstate": {"cordonlabels": n.cordons}});
        }
        let status = if n.online { "Online" } else { "Offline" };
        Ok(
            json!({"id": id, "spec": spec, "state": {"id": id, "grpcEndpoint": endpoint, "status": status}}),
        )
    }

    /// `GET /nodes`.
    pub fn nodes_json(&self) -> Result<Value, SimError> {
        let nodes = self
            .nodes
            .keys()
            .map(|id| self.node_json(id))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Value::Array(nodes))
    }

    fn replica_entries(&self) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        for v in self.volumes.values() {
            for r in &v.replicas {
                let faulted = self.pools.get(&r.pool).is_some_and(|p| p.faulted);
                let addr = self
                    .nodes
                    .get(&r.node)
                    .map(|n| n.address.as_str())
                    .unwrap_or("0.0.0.0");
                out.push((
                    r.uuid.clone(),
                    json!({
                        "uuid": r.uuid, "node": r.node, "pool": r.pool, "size": v.size, "thin": v.thin,
                        "state": if faulted { "Faulted" } else { "Online" }, "share": "nvmf", "kind": "Regular",
                        "uri": format!("nvmf://{addr}:8420/nqn.2019-05.io.openebs:{0}?uuid={0}", r.uuid),
                    }),
                ));
            }
        }
        out
    }

    /// `GET /replicas`.
    pub fn replicas_json(&self) -> Value {
        Value::Array(self.replica_entries().into_iter().map(|(_, v)| v).collect())
    }

    /// `GET /replicas/{id}`.
    pub fn replica_json(&self, id: &str) -> Result<Value, SimError> {
        self.replica_entries()
            .into_iter()
            .find(|(uuid, _)| uuid == id)
            .map(|(_, v)| v)
            .ok_or_else(|| SimError::not_found("replica", id))
    }

    /// The nexus child URI of replica `uuid` on `node`: a local bdev on the nexus node,
    /// NVMe-oF otherwise; both carry `?uuid=`.
    pub(super) fn child_uri(&self, target: Option<&str>, node: &str, uuid: &str) -> String {
        if target == Some(node) {
            format!("bdev:///{uuid}?uuid={uuid}")
        } else {
            let addr = self
                .nodes
                .get(node)
                .map(|n| n.address.as_str())
                .unwrap_or("0.0.0.0");
            format!("nvmf://{addr}:8420/nqn.2019-05.io.openebs:{uuid}?uuid={uuid}")
        }
    }

    /// `GET /volumes/{id}/rebuild-history`: `RebuildHistory {targetUuid, records}`.
    pub fn rebuild_history_json(&self, uuid: &str) -> Result<Value, SimError> {
        let v = self
            .volumes
            .get(uuid)
            .ok_or_else(|| SimError::not_found("volume", uuid))?;
        const BLOCK: u64 = 512;
        let records: Vec<Value> = v
            .history
            .iter()
            .map(|h| {
                let total = v.size / BLOCK;
                let done = total * u64::from(h.percent) / 100;
                json!({
                    "childUri": h.child_uri,
                    "srcUri": h.src_uri,
                    "rebuildJobState": if h.completed { "Completed" } else { "Failed" },
                    "blocksTotal": total,
                    "blocksRecovered": done,
                    "blocksTransferred": done,
                    "blocksRemaining": total - done,
                    "blockSize": BLOCK,
                    "isPartial": false,
                    "startTime": timestamp(h.start),
                    "endTime": timestamp(h.end),
                })
            })
            .collect();
        Ok(json!({"targetUuid": uuid, "records": records}))
    }
}
