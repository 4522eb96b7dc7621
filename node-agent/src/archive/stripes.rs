//! Fetching whole stripes of one archived volume from its k + m columns: the data columns
//! when healthy, parity standing in for up to m bad ones. Shared by the reader and by the
//! tiered cache's L3 backend (`tiered`).

use std::sync::Arc;

use super::{ArchiveLayout, ColumnSource, Error, ShardFault, Stripe, StripeShards, fmt_faults};
use crate::codec::ErasureCodec;

/// The columns, codec and layout of one archived volume.
#[derive(Debug)]
pub struct Stripes {
    pub(super) volume: String,
    pub(super) layout: ArchiveLayout,
    pub(super) codec: Arc<dyn ErasureCodec>,
    /// One source per column (the same source may serve several columns).
    pub(super) columns: Vec<Arc<dyn ColumnSource>>,
}

impl Stripes {
    /// Every shard (k + m, in column order) of `stripe`. Columns other than `skip` are read
    /// and verified — all of them when `read_all` (scrub), else just enough for k healthy
    /// ones (rebuild) — and the rest are reconstructed. `bad` says which columns that were
    /// read failed and why.
    pub async fn stripe_shards(
        &self,
        stripe: u64,
        skip: &[u32],
        read_all: bool,
    ) -> Result<StripeShards, Error> {
        let order: Vec<usize> = (0..self.layout.columns())
            .filter(|c| !skip.contains(&(*c as u32)))
            .collect();
        let (mut shards, bad) = self.gather(stripe, &order, read_all).await?;
        if shards.iter().any(Option::is_none) {
            shards = self.reconstruct(stripe, shards).await?;
        }
        let shards = shards.into_iter().flatten().collect();
        Ok(StripeShards { shards, bad })
    }

    /// Reads the columns in `order`: all of them at once when `read_all`, otherwise just
    /// enough for k healthy ones (first k, then one more for each that failed).
    async fn gather(
        &self,
        stripe: u64,
        order: &[usize],
        read_all: bool,
    ) -> Result<(Vec<Option<Vec<u8>>>, Vec<(u32, ShardFault)>), Error> {
        let (k, total) = (self.layout.data_shards, self.layout.columns());
        let shard_len = self.layout.shard_len(stripe);
        let mut shards: Vec<Option<Vec<u8>>> = vec![None; total];
        let mut bad: Vec<(u32, ShardFault)> = Vec::new();
        let mut healthy = 0;
        let mut next = 0;
        while next < order.len() && (read_all || healthy < k) {
            let want = if read_all {
                order.len() - next
            } else {
                (k - healthy).min(order.len() - next)
            };
            let asked = &order[next..next + want];
            next += want;
            let results = futures::future::join_all(
                asked
                    .iter()
                    .map(|&c| self.columns[c].get_shard(c as u32, stripe)),
            )
            .await;
            for (&c, result) in asked.iter().zip(results) {
                match result {
                    Ok(bytes) if bytes.len() == shard_len => {
                        shards[c] = Some(bytes);
                        healthy += 1;
                    }
                    Ok(bytes) => bad.push((
                        c as u32,
                        ShardFault::Corrupt(format!("{} bytes, expected {shard_len}", bytes.len())),
                    )),
                    Err(fault) => bad.push((c as u32, fault)),
                }
            }
        }
        if healthy < k {
            let err = Error::StripeLost {
                volume: self.volume.clone(),
                stripe,
                healthy,
                total,
                needed: k,
                bad,
            };
            tracing::error!(volume = %self.volume, stripe, error = %err, "stripe unreadable");
            return Err(err);
        }
        Ok((shards, bad))
    }

    /// Fills in every missing column of a stripe that has at least k healthy ones.
    async fn reconstruct(
        &self,
        stripe: u64,
        mut shards: Vec<Option<Vec<u8>>>,
    ) -> Result<Vec<Option<Vec<u8>>>, Error> {
        let codec = Arc::clone(&self.codec);
        // Decoding is CPU work of up to a stripe; keep it off the async workers.
        tokio::task::spawn_blocking(move || codec.reconstruct(&mut shards).map(|()| shards))
            .await
            .map_err(|e| Error::Task {
                volume: self.volume.clone(),
                stripe,
                reason: e.to_string(),
            })?
            .map_err(|source| Error::Codec {
                volume: self.volume.clone(),
                stripe,
                source,
            })
    }

    pub(super) async fn fetch_stripe(&self, stripe: u64) -> Result<Stripe, Error> {
        let k = self.layout.data_shards;
        // Ask first for the data columns, then for just as many parity columns as there are
        // bad ones.
        let order: Vec<usize> = (0..self.layout.columns()).collect();
        let (mut shards, bad) = self.gather(stripe, &order, false).await?;
        if !bad.is_empty() {
            tracing::warn!(
                volume = %self.volume,
                stripe,
                bad = %fmt_faults(&bad),
                "degraded read: reconstructing from parity"
            );
            shards = self.reconstruct(stripe, shards).await?;
        }
        let data_len = self.layout.stripe_data_len(stripe) as usize;
        let shard_len = self.layout.shard_len(stripe);
        let mut data = Vec::with_capacity(k * shard_len);
        for shard in shards.iter().take(k) {
            match shard {
                Some(bytes) => data.extend_from_slice(bytes),
                None => {
                    return Err(Error::Task {
                        volume: self.volume.clone(),
                        stripe,
                        reason: "codec left a data shard missing".into(),
                    });
                }
            }
        }
        data.truncate(data_len);
        Ok(Arc::new(data))
    }
}
