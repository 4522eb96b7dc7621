//! Steering windows: making pools ineligible for a new replica (or preferred victims
//! of a scale-down) for a short while, and undoing exactly that afterwards.
//!
//! Pool cordons and labels are cluster-wide: while one move has pools cordoned, every
//! other volume's placement sees them too. So windows are serialised by
//! [`SteeringLock`] and kept short (one scale-up or one scale-down each; the rebuild
//! in between runs with no steering applied). An in-process async mutex is enough
//! because only the elected leader runs the executor; a restarted leader first undoes
//! whatever the journals of in-flight moves say is still applied.
//!
//! Each change is recorded in `status.steering` (with the value it replaces) before it
//! is made, and undoing is idempotent: it reads the pool and changes it only if it
//! still differs from the recorded previous state. A change recorded but never made
//! (a crash in between) is therefore undone as a no-op.

use std::collections::BTreeMap;

use couchestor_core::{Tier, api::SteeringChange};

use super::tiers::TierPools;
use crate::mayastor::{Error, Mayastor, Pool, PoolCordon};

/// `SteeringChange.kind` of a pool cordon for replicas.
pub const CORDON: &str = "Cordon";
/// `SteeringChange.kind` of a removed pool label (servers without pool cordon).
pub const LABEL: &str = "Label";
/// `SteeringChange.key` of a pool cordon.
pub const CORDON_KEY: &str = "replicas";

/// Serialises steering windows in this process (the leader).
pub type SteeringLock = tokio::sync::Mutex<()>;

/// A pool cordon intent, recorded before the cordon is tried.
pub fn cordon_intent(pool: &str) -> SteeringChange {
    SteeringChange {
        pool: pool.to_owned(),
        kind: CORDON.to_owned(),
        key: CORDON_KEY.to_owned(),
        previous_value: None,
    }
}

/// A label removal, recorded with the value it removes before it is removed.
pub fn label_removal(pool: &str, key: &str, value: &str) -> SteeringChange {
    SteeringChange {
        pool: pool.to_owned(),
        kind: LABEL.to_owned(),
        key: key.to_owned(),
        previous_value: Some(value.to_owned()),
    }
}

/// A pool's labels as they are without this move's own label removals: what decides
/// its tier and its eligibility while a window is open or was left open by a crash.
pub fn effective_labels(pool: &Pool, steering: &[SteeringChange]) -> BTreeMap<String, String> {
    let mut labels = pool.labels().clone();
    for change in steering
        .iter()
        .filter(|c| c.pool == pool.id && c.kind == LABEL)
    {
        match &change.previous_value {
            Some(v) => labels.insert(change.key.clone(), v.clone()),
            None => labels.remove(&change.key),
        };
    }
    labels
}

fn matches_inclusion(
    inclusion: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    inclusion
        .iter()
        .all(|(k, v)| labels.get(k).is_some_and(|have| v.is_empty() || have == v))
}

/// Pools to exclude so that a new replica of a volume can land only on `target` pools:
/// every pool the volume's topology accepts, on a node the volume does not use yet,
/// not of the target tier and not already cordoned.
pub fn pools_to_exclude(
    pools: &[Pool],
    used_nodes: &[String],
    inclusion: &BTreeMap<String, String>,
    tiers: &TierPools,
    target: Tier,
) -> Vec<String> {
    pools
        .iter()
        .filter(|p| !used_nodes.iter().any(|n| n == p.node()))
        .filter(|p| !p.is_cordoned_for_replicas())
        .filter(|p| matches_inclusion(inclusion, p.labels()))
        .filter(|p| tiers.tier_of(p.labels()) != Some(target))
        .map(|p| p.id.clone())
        .collect()
}

/// The inclusion label to remove from `pool` when the server has no pool cordon: a
/// key-only inclusion (`poolHasTopologyKey`) first, since that is the one tiering
/// relies on, else any inclusion key the pool carries.
pub fn fallback_key(inclusion: &BTreeMap<String, String>, pool: &Pool) -> Option<(String, String)> {
    let labels = pool.labels();
    let carried = |k: &String| labels.get(k).map(|v| (k.clone(), v.clone()));
    inclusion
        .iter()
        .filter(|(_, v)| v.is_empty())
        .find_map(|(k, _)| carried(k))
        .or_else(|| inclusion.keys().find_map(carried))
}

/// Cordons `pool` for replicas. `Ok(false)`: this server has no pool cordon.
pub async fn cordon(mayastor: &Mayastor, pool: &str) -> Result<bool, Error> {
    match mayastor.cordon_pool(pool, PoolCordon::REPLICAS).await {
        Ok(_) => Ok(true),
        Err(Error::Unsupported { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Undoes one recorded change if (and only if) it is still in effect.
pub async fn restore(mayastor: &Mayastor, change: &SteeringChange) -> Result<(), Error> {
    let pool = match mayastor.pool(&change.pool).await {
        Ok(p) => p,
        // A pool that is gone has nothing left to restore.
        Err(e) if e.kind() == Some("NotFound") => return Ok(()),
        Err(e) => return Err(e),
    };
    if change.kind == CORDON {
        if pool.is_cordoned_for_replicas() {
            mayastor
                .uncordon_pool(&pool.id, PoolCordon::REPLICAS)
                .await?;
        }
        return Ok(());
    }
    match (&change.previous_value, pool.labels().get(&change.key)) {
        (Some(want), have) if have != Some(want) => {
            mayastor
                .put_pool_label(&pool.id, &change.key, want, true)
                .await?;
        }
        (None, Some(_)) => {
            mayastor.delete_pool_label(&pool.id, &change.key).await?;
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mayastor::{PoolCordonDrain, PoolSpec, PoolState};

    fn pool(id: &str, node: &str, labels: &[(&str, &str)], cordoned: bool) -> Pool {
        Pool {
            id: id.to_owned(),
            spec: Some(PoolSpec {
                id: id.to_owned(),
                node: node.to_owned(),
                labels: labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                cordon_drain: cordoned.then_some(PoolCordonDrain {
                    cordoned: Some(PoolCordon::REPLICAS),
                }),
                ..PoolSpec::default()
            }),
            state: Some(PoolState {
                node: node.to_owned(),
                ..PoolState::default()
            }),
        }
    }

    fn inclusion() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("created-by".to_owned(), "op".to_owned()),
            ("tier".to_owned(), String::new()),
        ])
    }

    #[test]
    fn only_eligible_non_target_pools_on_unused_nodes_are_excluded() {
        let tiers = TierPools::by_label("tier", &[(Tier::Hot, "hot"), (Tier::Cold, "cold")]);
        let pools = [
            // Holds the volume already: its node cannot take another replica anyway.
            pool(
                "n1-hot",
                "n1",
                &[("created-by", "op"), ("tier", "hot")],
                false,
            ),
            pool(
                "n2-hot",
                "n2",
                &[("created-by", "op"), ("tier", "hot")],
                false,
            ),
            pool(
                "n3-cold",
                "n3",
                &[("created-by", "op"), ("tier", "cold")],
                false,
            ),
            // Someone else's cordon is left alone.
            pool(
                "n4-hot",
                "n4",
                &[("created-by", "op"), ("tier", "hot")],
                true,
            ),
            // The volume's topology rejects it already.
            pool("n5-plain", "n5", &[("created-by", "op")], false),
        ];
        let excluded =
            pools_to_exclude(&pools, &["n1".to_owned()], &inclusion(), &tiers, Tier::Cold);
        assert_eq!(excluded, ["n2-hot"]);
    }

    #[test]
    fn a_removed_label_still_counts_for_the_pools_tier_while_it_is_recorded() {
        let p = pool("n1-hot", "n1", &[("created-by", "op")], false);
        let steering = [
            label_removal("n1-hot", "tier", "hot"),
            cordon_intent("n1-hot"),
        ];
        let labels = effective_labels(&p, &steering);
        assert_eq!(labels.get("tier").map(String::as_str), Some("hot"));
        assert_eq!(effective_labels(&p, &[]).get("tier"), None);
    }

    #[test]
    fn the_fallback_removes_the_key_only_inclusion_label_first() {
        let p = pool(
            "n1-hot",
            "n1",
            &[("created-by", "op"), ("tier", "hot")],
            false,
        );
        assert_eq!(
            fallback_key(&inclusion(), &p),
            Some(("tier".to_owned(), "hot".to_owned()))
        );
        let bare = pool("n9", "n9", &[], false);
        assert_eq!(fallback_key(&inclusion(), &bare), None);
        assert_eq!(fallback_key(&BTreeMap::new(), &p), None);
    }
}
