//! The executor's next move, decided from the persisted journal and Mayastor's observed
//! state alone. Pure: no I/O, so every rule is tested by feeding values, and a fresh
//! executor after a crash decides exactly what the old one would have.
//!
//! Invariant kept by every rule: a scale-down is only asked for when the volume has
//! more healthy replicas than when the move started, or when an unhealthy replica is
//! there for Mayastor to remove first (its scale-down removes unhealthy replicas
//! before healthy ones); so, as long as the control plane honours that, the healthy
//! count never drops below the start.

/// Where a replica stands with respect to this move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// One of the replicas the volume had when the move started (source tier).
    Original,
    /// Added by this move on the target tier (`status.targetReplicas`).
    Added,
    /// Neither: on a pool outside the target tier (a misplaced scale-up, or a
    /// replica someone else created).
    Stray,
}

/// One replica as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaView {
    pub uuid: String,
    pub pool: String,
    pub role: Role,
    /// In sync (Online, child Online, no rebuild).
    pub healthy: bool,
    /// A rebuild is running.
    pub rebuilding: bool,
}

/// What the decision is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    /// Healthy replicas at the start (`status.startingHealthyReplicas`).
    pub starting: usize,
    /// `spec.num_replicas` as Mayastor has it now.
    pub num_replicas: usize,
    pub replicas: Vec<ReplicaView>,
    pub preserve_source: bool,
    /// A rollback is under way (`status.abortReason`).
    pub aborting: bool,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing to do until Mayastor makes progress (a rebuild, a replica appearing).
    Wait { reason: String },
    /// `replica_count` + 1 with only target-tier pools eligible.
    AddReplica,
    /// `replica_count` − 1 with these replicas made the preferred victims.
    RemoveReplica { victims: Vec<String> },
    /// The move is over.
    Finish { outcome: Finish, message: String },
}

/// How a move ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    Succeeded,
    Failed,
    RolledBack,
}

impl View {
    fn healthy(&self) -> usize {
        self.replicas.iter().filter(|r| r.healthy).count()
    }

    fn uuids(&self, f: impl Fn(&ReplicaView) -> bool) -> Vec<String> {
        self.replicas
            .iter()
            .filter(|r| f(r))
            .map(|r| r.uuid.clone())
            .collect()
    }
}

/// The next action for `view`.
pub fn next(view: &View) -> Action {
    if view.aborting {
        rollback(view)
    } else {
        forward(view)
    }
}

fn forward(v: &View) -> Action {
    let n = v.starting;
    let healthy = v.healthy();
    if v.replicas.len() != v.num_replicas {
        return Action::Wait {
            reason: format!(
                "Mayastor shows {} replicas for a replica count of {}",
                v.replicas.len(),
                v.num_replicas
            ),
        };
    }
    if v.replicas.iter().any(|r| r.rebuilding) {
        return Action::Wait {
            reason: "a replica is rebuilding".to_owned(),
        };
    }
    let unhealthy = v.uuids(|r| !r.healthy);
    if !unhealthy.is_empty() {
        if healthy >= n {
            // Mayastor removes an unhealthy replica before any healthy one.
            return Action::RemoveReplica { victims: unhealthy };
        }
        return Action::Finish {
            outcome: Finish::Failed,
            message: format!(
                "the volume has {healthy} healthy replicas, fewer than the {n} it started \
                 with, because of a fault outside this move; left for Mayastor to heal"
            ),
        };
    }
    let on_target = v.replicas.iter().filter(|r| r.role == Role::Added).count();
    let removable = v.uuids(|r| match r.role {
        Role::Stray => true,
        Role::Original => !v.preserve_source,
        Role::Added => false,
    });
    if !removable.is_empty() && healthy > n {
        return Action::RemoveReplica { victims: removable };
    }
    if on_target < n {
        return Action::AddReplica;
    }
    if removable.is_empty() {
        let message = if v.preserve_source {
            format!("{on_target} replicas on the target tier; source replicas kept")
        } else {
            format!("{on_target} replicas on the target tier")
        };
        return Action::Finish {
            outcome: Finish::Succeeded,
            message,
        };
    }
    // Enough target replicas, something to remove, and no spare healthy replica: only
    // possible if replicas are missing from the count; wait for Mayastor.
    Action::Wait {
        reason: "waiting for a spare healthy replica before scaling down".to_owned(),
    }
}

fn rollback(v: &View) -> Action {
    let n = v.starting;
    let healthy = v.healthy();
    let extras = v.uuids(|r| r.role != Role::Original);
    if v.num_replicas > n {
        if extras.is_empty() {
            return Action::Wait {
                reason: "the replica count is above the start but no added replica is visible"
                    .to_owned(),
            };
        }
        let unhealthy_extras = v.uuids(|r| r.role != Role::Original && !r.healthy);
        if !unhealthy_extras.is_empty() && healthy >= n {
            return Action::RemoveReplica {
                victims: unhealthy_extras,
            };
        }
        if healthy > n {
            return Action::RemoveReplica { victims: extras };
        }
        return Action::Finish {
            outcome: Finish::Failed,
            message: format!(
                "rollback stopped with {} replicas: removing one would leave fewer than the \
                 {n} healthy replicas the volume started with",
                v.num_replicas
            ),
        };
    }
    let originals = v
        .replicas
        .iter()
        .filter(|r| r.role == Role::Original)
        .count();
    if originals == n && v.replicas.len() == n {
        Action::Finish {
            outcome: Finish::RolledBack,
            message: "the volume is back on its source replicas".to_owned(),
        }
    } else {
        Action::Finish {
            outcome: Finish::Failed,
            message: format!(
                "rolled back part way: {originals} of {n} source replicas remain, {} replicas \
                 on other pools ({healthy} healthy)",
                v.replicas.len() - originals.min(v.replicas.len())
            ),
        }
    }
}

#[cfg(test)]
mod tests;
