//! Steering windows of a move: one observation's worth of cordons or label removals
//! around a single replica-count change, recorded before they are applied and undone
//! before the window closes. The caller holds the steering lock for the whole window.

use couchestor_core::api::MigrationStep;

use super::{Clock, EventSink, EventType, Failure, MigrationStore, Run, steering};
use crate::mayastor::{self, Pool, Volume};

impl<S: MigrationStore, E: EventSink, C: Clock> Run<'_, S, E, C> {
    /// Records `intents`, then applies them one by one (a label removal replaces its
    /// cordon intent, recorded with the label's value, before the label goes).
    async fn apply_steering(
        &mut self,
        step: MigrationStep,
        pools: &[Pool],
        volume: &Volume,
        targets: Vec<String>,
        message: String,
    ) -> Result<(), Failure> {
        self.status.steering = targets.iter().map(|p| steering::cordon_intent(p)).collect();
        self.enter(step, message).await?;
        let inclusion = volume.pool_inclusion();
        for (i, pool_id) in targets.iter().enumerate() {
            if steering::cordon(self.mayastor(), pool_id).await? {
                continue;
            }
            let pool = pools.iter().find(|p| &p.id == pool_id);
            let Some((key, value)) = pool.and_then(|p| steering::fallback_key(&inclusion, p))
            else {
                return Err(Failure::Mayastor(mayastor::Error::NoSteeringLabel {
                    pool: pool_id.clone(),
                    key: inclusion.keys().next().cloned().unwrap_or_default(),
                }));
            };
            self.status.steering[i] = steering::label_removal(pool_id, &key, &value);
            self.persist().await?;
            self.mayastor().delete_pool_label(pool_id, &key).await?;
        }
        Ok(())
    }

    /// Undoes every recorded steering change, then clears the record.
    pub(super) async fn restore_steering(&mut self, why: &str) -> Result<(), Failure> {
        if self.status.steering.is_empty() {
            return Ok(());
        }
        let pools: Vec<&str> = self
            .status
            .steering
            .iter()
            .map(|c| c.pool.as_str())
            .collect();
        let message = format!("{why}: {}", pools.join(", "));
        self.enter(MigrationStep::RestoringSteering, message)
            .await?;
        for change in self.status.steering.clone() {
            steering::restore(self.mayastor(), &change).await?;
        }
        self.status.steering.clear();
        self.persist().await?;
        Ok(())
    }

    /// One steering window around `replica_count` + 1 (the caller holds the lock).
    pub(super) async fn add_replica(
        &mut self,
        volume: &Volume,
        pools: &[Pool],
    ) -> Result<(), Failure> {
        let to = self.vm.spec.to_tier;
        let used_nodes: Vec<String> = volume
            .state
            .replica_topology
            .values()
            .filter_map(|r| r.node.clone())
            .collect();
        let exclude = steering::pools_to_exclude(
            pools,
            &used_nodes,
            &volume.pool_inclusion(),
            self.tiers,
            to,
        );
        let message = if exclude.is_empty() {
            format!("only {to} pools are eligible already")
        } else {
            format!(
                "excluding {} so that only {to} pools are eligible",
                exclude.join(", ")
            )
        };
        let steered = self
            .apply_steering(MigrationStep::Steering, pools, volume, exclude, message)
            .await;
        let count = volume.spec.num_replicas;
        let scaled = match steered {
            Ok(()) => {
                self.enter(
                    MigrationStep::ScalingUp,
                    format!("replica_count {count} → {}", count.saturating_add(1)),
                )
                .await?;
                self.mayastor()
                    .set_replica_count(self.volume_id(), count.saturating_add(1))
                    .await
                    .map(|_| ())
                    .map_err(Failure::from)
            }
            Err(e) => Err(e),
        };
        if let Err(Failure::Store(e)) = scaled {
            return Err(Failure::Store(e));
        }
        if let Err(Failure::Mayastor(e)) = &scaled {
            self.await_unconfirmed(e, count, "ScaleUpUnconfirmed").await;
        }
        self.restore_steering("scale-up sent").await?;
        match scaled {
            Err(Failure::Mayastor(e)) if e.kind() == Some("ResourceExhausted") => {
                self.no_pool += 1;
                let message = format!(
                    "no {to} pool can take a replica ({e}); attempt {} of {}",
                    self.no_pool, self.exec.config.max_no_pool
                );
                self.event(EventType::Warning, "NoEligiblePool", message.clone())
                    .await;
                if self.no_pool >= self.exec.config.max_no_pool {
                    self.abort(message).await?;
                }
                Ok(())
            }
            other => other,
        }
    }

    /// One steering window around `replica_count` − 1, with `victims` preferred (the
    /// caller holds the lock).
    pub(super) async fn remove_replica(
        &mut self,
        volume: &Volume,
        pools: &[Pool],
        victims: &[String],
    ) -> Result<(), Failure> {
        let topology = &volume.state.replica_topology;
        let mut victim_pools: Vec<String> = victims
            .iter()
            .filter_map(|v| topology.get(v).and_then(|r| r.pool.clone()))
            .filter(|p| {
                !pools
                    .iter()
                    .any(|pool| &pool.id == p && pool.is_cordoned_for_replicas())
            })
            .collect();
        victim_pools.sort();
        victim_pools.dedup();
        let message = format!(
            "making {} the preferred scale-down victim (pools {})",
            victims.join(", "),
            victim_pools.join(", ")
        );
        let marked = self
            .apply_steering(
                MigrationStep::MarkingVictim,
                pools,
                volume,
                victim_pools,
                message,
            )
            .await;
        let count = volume.spec.num_replicas;
        let scaled = match marked {
            Ok(()) => {
                self.enter(
                    MigrationStep::ScalingDown,
                    format!(
                        "replica_count {count} → {}; intended victim {}",
                        count.saturating_sub(1),
                        victims.join(" or ")
                    ),
                )
                .await?;
                match self
                    .mayastor()
                    .set_replica_count(self.volume_id(), count.saturating_sub(1))
                    .await
                {
                    Ok(after) => {
                        let gone: Vec<&String> = topology
                            .keys()
                            .filter(|u| !after.state.replica_topology.contains_key(*u))
                            .collect();
                        let as_intended = gone.iter().all(|u| victims.contains(u));
                        let message = format!(
                            "removed {}{}",
                            gone.iter()
                                .map(|u| u.as_str())
                                .collect::<Vec<_>>()
                                .join(", "),
                            if as_intended {
                                " as intended"
                            } else {
                                "; NOT the intended victim"
                            }
                        );
                        self.enter(MigrationStep::Verifying, message).await?;
                        Ok(())
                    }
                    Err(e) => Err(Failure::Mayastor(e)),
                }
            }
            Err(e) => Err(e),
        };
        if let Err(Failure::Store(e)) = scaled {
            return Err(Failure::Store(e));
        }
        if let Err(Failure::Mayastor(e)) = &scaled {
            self.await_unconfirmed(e, count, "ScaleDownUnconfirmed")
                .await;
        }
        self.restore_steering("scale-down sent").await?;
        scaled
    }

    /// After a replica-count change that may or may not have been carried out (no
    /// answer, or a 5xx), keeps the window open for a few polls until Mayastor's count
    /// moves away from `sent_from`.
    async fn await_unconfirmed(&self, error: &mayastor::Error, sent_from: u8, reason: &str) {
        if !error.is_transient() {
            return;
        }
        self.event(
            EventType::Warning,
            reason,
            format!("{error}; keeping the steering while checking whether it was carried out"),
        )
        .await;
        for _ in 0..self.exec.config.unconfirmed_polls {
            self.exec.clock.sleep(self.exec.config.poll_interval).await;
            if let Ok(Some(v)) = self.observe_volume().await
                && v.spec.num_replicas != sent_from
            {
                return;
            }
        }
    }
}
