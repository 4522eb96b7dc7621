//! The read path of an archived (erasure-coded) volume: byte ranges are served from the
//! k data columns when they are healthy, and reconstructed from any k healthy columns when
//! up to m are missing or corrupt. More than m bad columns for a stripe is an error that
//! names the stripe and the columns — never zeros.
//!
//! Stripe geometry (shared with [`encode`], which writes archives):
//! - stripe `s` holds volume bytes `[s × stripe, (s + 1) × stripe)`, split into k data shards
//!   of `stripe / k` bytes each, followed by m parity shards of the same length;
//! - the last stripe may be short: it holds `L = size − s × stripe` bytes and its shards are
//!   `round_up(ceil(L / k), 64)` bytes (the codec's alignment), the data zero-padded to
//!   `k × shard` before encoding. Bytes beyond the volume size are never returned.

mod cache;
mod destage;
mod device;
pub mod encode;
pub mod manifest;
mod rehydrate;
pub mod remote;
mod repair;
mod source;
mod stripes;
mod tiered;
mod work;
mod writer;

use std::fmt;
use std::sync::Arc;

use futures::stream::{self, StreamExt, TryStreamExt};

use crate::codec::{self, ALIGNMENT_BYTES, ErasureCodec};
use crate::store::VolumeLayout;

use cache::StripeCache;
pub use destage::{DestageOptions, codec_for, destage};
pub use device::{Device, DeviceError};
pub use encode::{StripeEncoder, archive_into_stores};
pub use manifest::{ArchiveState, Layout, Manifest, ManifestError, Placement};
pub use rehydrate::rehydrate;
pub use remote::{RemoteColumns, remote_reader};
pub use repair::{rebuild, scrub};
pub use source::{ColumnSource, ShardFault, ShardFuture, StoreColumns};
use stripes::Stripes;
pub use tiered::{EcBackend, TieredCache, TieredStripes};
pub use work::{Progress, ProgressFn, WorkError, WorkReport, no_progress};
pub use writer::ColumnWriteError;

/// What went wrong reading an archived volume.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid archive layout: {reason}")]
    Layout { reason: String },
    #[error("read of {len} bytes at offset {offset} lies beyond the volume size {size}")]
    OutOfRange { offset: u64, len: u64, size: u64 },
    #[error(
        "volume {volume} stripe {stripe}: only {healthy} of {total} columns healthy, {needed} needed; bad columns: {}",
        fmt_faults(.bad)
    )]
    StripeLost {
        volume: String,
        stripe: u64,
        healthy: usize,
        total: usize,
        needed: usize,
        bad: Vec<(u32, ShardFault)>,
    },
    #[error("volume {volume} stripe {stripe}: {source}")]
    Codec {
        volume: String,
        stripe: u64,
        #[source]
        source: codec::Error,
    },
    #[error("volume {volume} stripe {stripe}: decode task failed: {reason}")]
    Task {
        volume: String,
        stripe: u64,
        reason: String,
    },
}

fn fmt_faults(bad: &[(u32, ShardFault)]) -> String {
    bad.iter()
        .map(|(column, fault)| format!("column {column} ({fault})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Geometry of an archived volume: its logical size and the k + m stripe layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveLayout {
    /// Logical size of the volume in bytes (what NBD exports).
    pub volume_size: u64,
    pub data_shards: usize,
    pub parity_shards: usize,
    /// Data bytes per full stripe; a multiple of `k × 64`.
    pub stripe_size: u64,
}

impl ArchiveLayout {
    /// The archive layout of a volume registered in a shard store with `layout`.
    pub fn from_store(layout: &VolumeLayout, volume_size: u64) -> Result<Self, Error> {
        let this = Self {
            volume_size,
            data_shards: usize::from(layout.data_shards),
            parity_shards: usize::from(layout.parity_shards),
            stripe_size: layout.stripe_size_bytes,
        };
        this.validate()?;
        Ok(this)
    }

    /// Checks k, m and the stripe size against what the codec and store accept.
    pub fn validate(&self) -> Result<(), Error> {
        let (k, m) = (self.data_shards, self.parity_shards);
        let bad = |reason: String| Err(Error::Layout { reason });
        if k == 0 || m == 0 || k + m > codec::MAX_TOTAL_SHARDS {
            return bad(format!("k={k} m={m}: need k ≥ 1, m ≥ 1, k + m ≤ 255"));
        }
        let unit = (k * ALIGNMENT_BYTES) as u64;
        if self.stripe_size == 0 || !self.stripe_size.is_multiple_of(unit) {
            return bad(format!(
                "stripe size {} is not a non-zero multiple of k × {ALIGNMENT_BYTES} = {unit}",
                self.stripe_size
            ));
        }
        if self.stripe_size / k as u64 > u64::from(u32::MAX) {
            return bad(format!(
                "stripe size {} gives shards over 4 GiB",
                self.stripe_size
            ));
        }
        Ok(())
    }

    /// k + m.
    pub fn columns(&self) -> usize {
        self.data_shards + self.parity_shards
    }

    /// Number of stripes (the last one possibly short).
    pub fn stripes(&self) -> u64 {
        self.volume_size.div_ceil(self.stripe_size)
    }

    /// Volume bytes held by `stripe` (`stripe_size` except for a short last stripe).
    pub fn stripe_data_len(&self, stripe: u64) -> u64 {
        let start = stripe.saturating_mul(self.stripe_size);
        self.volume_size.saturating_sub(start).min(self.stripe_size)
    }

    /// Length of every shard (data and parity) of `stripe`.
    pub fn shard_len(&self, stripe: u64) -> usize {
        let data = self.stripe_data_len(stripe) as usize;
        let per_shard = data.div_ceil(self.data_shards).max(1);
        per_shard.next_multiple_of(ALIGNMENT_BYTES)
    }
}

/// Tuning of an [`ArchiveReader`].
#[derive(Debug, Clone, Copy)]
pub struct ReaderConfig {
    /// Stripes fetched (and decoded) concurrently for one large read.
    pub window: usize,
    /// Decoded stripes kept, so that sequential small reads do not fetch and decode the same
    /// stripe again.
    pub cache_stripes: usize,
}

impl Default for ReaderConfig {
    fn default() -> Self {
        Self {
            window: 8,
            cache_stripes: 16,
        }
    }
}

/// Reads byte ranges of one archived volume from its k + m columns.
pub struct ArchiveReader {
    stripes: Arc<Stripes>,
    window: usize,
    /// In-flight and recently decoded stripes (always on: it also makes concurrent readers of
    /// one stripe share a fetch).
    cache: StripeCache,
    /// The node's tiered cache (L1 RAM, L2 disk, L3 = these columns), when attached.
    tiered: Option<TieredStripes>,
}

impl fmt::Debug for ArchiveReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArchiveReader")
            .field("stripes", &self.stripes)
            .field("tiered", &self.tiered.is_some())
            .finish_non_exhaustive()
    }
}

/// A decoded stripe: its volume bytes (the padding cut off).
pub type Stripe = Arc<Vec<u8>>;

impl ArchiveReader {
    /// A reader of `volume` with `columns[c]` serving column `c` (k + m entries).
    pub fn new(
        volume: impl Into<String>,
        layout: ArchiveLayout,
        codec: Arc<dyn ErasureCodec>,
        columns: Vec<Arc<dyn ColumnSource>>,
        config: ReaderConfig,
    ) -> Result<Self, Error> {
        layout.validate()?;
        if codec.data_shards() != layout.data_shards
            || codec.parity_shards() != layout.parity_shards
        {
            return Err(Error::Layout {
                reason: format!(
                    "codec is k={} m={}, layout k={} m={}",
                    codec.data_shards(),
                    codec.parity_shards(),
                    layout.data_shards,
                    layout.parity_shards
                ),
            });
        }
        if columns.len() != layout.columns() {
            return Err(Error::Layout {
                reason: format!(
                    "{} column sources for {} columns",
                    columns.len(),
                    layout.columns()
                ),
            });
        }
        Ok(Self {
            stripes: Arc::new(Stripes {
                volume: volume.into(),
                layout,
                codec,
                columns,
            }),
            window: config.window.max(1),
            cache: StripeCache::new(config.cache_stripes),
            tiered: None,
        })
    }

    /// Reads stripes through `cache` (L3 = this reader's columns) under `bucket`, which must
    /// name this archive uniquely (see [`Manifest::cache_bucket`]): a cache may outlive a
    /// process, and must never serve one archive's bytes for another's.
    pub fn attach_cache(&mut self, cache: TieredCache, bucket: impl Into<String>) {
        let bucket = bucket.into();
        cache.backend_register(&bucket, Arc::clone(&self.stripes));
        self.tiered = Some(TieredStripes { cache, bucket });
    }

    pub fn volume(&self) -> &str {
        &self.stripes.volume
    }

    pub fn layout(&self) -> &ArchiveLayout {
        &self.stripes.layout
    }

    /// Logical size in bytes.
    pub fn size(&self) -> u64 {
        self.stripes.layout.volume_size
    }

    /// Reads `len` bytes at `offset`. The range must lie within the volume.
    pub async fn read(&self, offset: u64, len: u64) -> Result<Vec<u8>, Error> {
        let size = self.stripes.layout.volume_size;
        let end = offset
            .checked_add(len)
            .filter(|end| *end <= size)
            .ok_or(Error::OutOfRange { offset, len, size })?;
        let mut out = Vec::with_capacity(len as usize);
        if len == 0 {
            return Ok(out);
        }
        let stripe_size = self.stripes.layout.stripe_size;
        let (first, last) = (offset / stripe_size, (end - 1) / stripe_size);
        // `buffered` keeps up to `window` stripes in flight but yields them in order, so the
        // copy below is sequential while fetches and decodes overlap.
        let mut stripes = stream::iter(first..=last)
            .map(|s| async move { self.stripe(s).await.map(|data| (s, data)) })
            .buffered(self.window);
        while let Some((s, data)) = stripes.try_next().await? {
            let start = s * stripe_size;
            let from = offset.saturating_sub(start) as usize;
            let to = (end - start).min(data.len() as u64) as usize;
            out.extend_from_slice(&data[from..to]);
        }
        Ok(out)
    }

    /// The volume bytes of one stripe, from the cache or the columns.
    pub async fn stripe(&self, stripe: u64) -> Result<Stripe, Error> {
        let slot = self.cache.slot(stripe);
        // Concurrent readers of one stripe share a single fetch and decode; a failure is not
        // kept, so the next read tries the columns again.
        slot.get_or_try_init(|| async {
            match &self.tiered {
                Some(t) => t.stripe(stripe).await,
                None => self.stripes.fetch_stripe(stripe).await,
            }
        })
        .await
        .cloned()
    }

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
        self.stripes.stripe_shards(stripe, skip, read_all).await
    }
}

/// All k + m shards of one stripe, with the columns that had to be reconstructed.
#[derive(Debug, Clone)]
pub struct StripeShards {
    pub shards: Vec<Vec<u8>>,
    pub bad: Vec<(u32, ShardFault)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: u64) -> ArchiveLayout {
        ArchiveLayout {
            volume_size: size,
            data_shards: 4,
            parity_shards: 2,
            stripe_size: 4 * 1024,
        }
    }

    #[test]
    fn a_short_last_stripe_has_aligned_shards_covering_its_bytes() {
        let l = layout(3 * 4096 + 1000);
        assert_eq!(l.stripes(), 4);
        assert_eq!(l.stripe_data_len(2), 4096);
        assert_eq!(l.shard_len(2), 1024);
        assert_eq!(l.stripe_data_len(3), 1000);
        // ceil(1000 / 4) = 250 → 256.
        assert_eq!(l.shard_len(3), 256);
        assert_eq!(layout(1).shard_len(0), 64);
    }

    #[test]
    fn a_stripe_size_not_a_multiple_of_k_times_64_is_refused() {
        let mut l = layout(10);
        l.stripe_size = 4 * 64 + 4;
        assert!(matches!(l.validate(), Err(Error::Layout { .. })));
        l.stripe_size = 0;
        assert!(matches!(l.validate(), Err(Error::Layout { .. })));
    }
}
