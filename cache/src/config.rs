//! Configuration: capacities, compression and admission per tier, and the builder that opens a
//! [`Cache`](crate::Cache).

use std::path::PathBuf;

use prometheus_client::registry::Registry;

use crate::backend::{Backend, DirectoryStore};
use crate::cache::Cache;
use crate::compression::Compression;
use crate::error::Error;

/// When an L2 write is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Durability {
    /// `fdatasync` after every record: an acknowledged L2 write survives power loss.
    #[default]
    Sync,
    /// No `fdatasync` for value records: acknowledged writes survive a process crash (the page
    /// cache keeps them) but not power loss. Tombstones and region reuse are synced in both modes.
    Buffered,
}

/// Settings of the local-disk tier.
#[derive(Clone, Debug)]
pub struct L2Config {
    /// Directory holding `l2.data`. Created if missing.
    pub dir: PathBuf,
    /// Size of the data file (rounded down to whole regions, plus one 4 KiB superblock).
    pub capacity_bytes: u64,
    /// Unit of FIFO eviction. An entry larger than a region (minus headers) is not admitted to L2.
    pub region_bytes: u64,
    /// Compression of values written to L2.
    pub compression: Compression,
    /// When an L2 write is acknowledged.
    pub durability: Durability,
}

impl L2Config {
    /// L2 in `dir` with the defaults: 1 GiB, 16 MiB regions, LZ4, [`Durability::Sync`].
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            capacity_bytes: 1 << 30,
            region_bytes: 16 << 20,
            compression: Compression::Lz4,
            durability: Durability::Sync,
        }
    }
}

/// Settings of a cache. Build one through [`CacheBuilder`], whose setters document the defaults.
#[derive(Clone, Debug)]
pub struct CacheConfig {
    /// Byte capacity of L1 (payload after compression plus ~100 bytes per entry).
    pub l1_capacity_bytes: u64,
    /// Compression of values held in L1.
    pub l1_compression: Compression,
    /// The disk tier; `None` disables L2.
    pub l2: Option<L2Config>,
    /// Whether an L3 hit is also written into L2 (besides L1).
    pub admit_l3_hits_to_l2: bool,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            l1_capacity_bytes: 64 << 20,
            l1_compression: Compression::None,
            l2: None,
            admit_l3_hits_to_l2: true,
        }
    }
}

impl CacheConfig {
    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.l1_capacity_bytes == 0 {
            return Err(Error::InvalidConfig("l1 capacity must be > 0".into()));
        }
        if let Some(l2) = &self.l2 {
            if l2.region_bytes < 4096 || l2.region_bytes % 4096 != 0 {
                return Err(Error::InvalidConfig(format!(
                    "l2 region size {} must be a multiple of 4096",
                    l2.region_bytes
                )));
            }
            if l2.region_bytes > u32::MAX as u64 {
                return Err(Error::InvalidConfig(format!(
                    "l2 region size {} exceeds 4 GiB",
                    l2.region_bytes
                )));
            }
            if l2.capacity_bytes / l2.region_bytes < 2 {
                return Err(Error::InvalidConfig(format!(
                    "l2 capacity {} must hold at least two regions of {}",
                    l2.capacity_bytes, l2.region_bytes
                )));
            }
        }
        Ok(())
    }
}

/// Builds a [`Cache`]. Every setter names its default. The L2 setters may be called in any
/// order; they take effect when [`CacheBuilder::l2_dir`] enables L2.
#[derive(Debug)]
pub struct CacheBuilder<B = DirectoryStore> {
    config: CacheConfig,
    /// L2 settings, used if L2 is enabled (`config.l2` holds the result at `open`).
    l2: L2Config,
    l2_enabled: bool,
    backend: Option<B>,
}

impl Default for CacheBuilder<DirectoryStore> {
    fn default() -> Self {
        Self::new()
    }
}

impl CacheBuilder<DirectoryStore> {
    /// A builder with every default: 64 MiB L1, no L2, no L3.
    pub fn new() -> Self {
        Self::from_config(CacheConfig::default())
    }
}

impl<B: Backend> CacheBuilder<B> {
    /// Starts from a complete configuration.
    pub fn from_config(config: CacheConfig) -> Self {
        let l2_enabled = config.l2.is_some();
        let l2 = config.l2.clone().unwrap_or_else(|| L2Config::new(""));
        Self {
            config,
            l2,
            l2_enabled,
            backend: None,
        }
    }

    /// L1 byte capacity. Default: 64 MiB.
    pub fn l1_capacity(mut self, bytes: u64) -> Self {
        self.config.l1_capacity_bytes = bytes;
        self
    }

    /// L1 compression. Default: [`Compression::None`] (L1 trades RAM for hit latency).
    pub fn l1_compression(mut self, compression: Compression) -> Self {
        self.config.l1_compression = compression;
        self
    }

    /// Enables L2, keeping its data file in `dir` (created if missing). Default: no L2.
    pub fn l2_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.l2.dir = dir.into();
        self.l2_enabled = true;
        self
    }

    /// L2 file size in bytes. Default: 1 GiB.
    pub fn l2_capacity(mut self, bytes: u64) -> Self {
        self.l2.capacity_bytes = bytes;
        self
    }

    /// L2 region size (eviction unit, largest entry). Default: 16 MiB, a multiple of 4096.
    pub fn l2_region_size(mut self, bytes: u64) -> Self {
        self.l2.region_bytes = bytes;
        self
    }

    /// L2 compression. Default: [`Compression::Lz4`] with the ratio guard.
    pub fn l2_compression(mut self, compression: Compression) -> Self {
        self.l2.compression = compression;
        self
    }

    /// L2 write acknowledgement. Default: [`Durability::Sync`].
    pub fn l2_durability(mut self, durability: Durability) -> Self {
        self.l2.durability = durability;
        self
    }

    /// Admission: write L3 hits into L2 as well as L1. Default: `true`.
    pub fn admit_l3_hits_to_l2(mut self, admit: bool) -> Self {
        self.config.admit_l3_hits_to_l2 = admit;
        self
    }

    /// Sets the cold tier. `put` writes through to it and `remove` deletes from it.
    /// Default: none (the cache is L1 + L2 only).
    pub fn backend<B2: Backend>(self, backend: B2) -> CacheBuilder<B2> {
        CacheBuilder {
            config: self.config,
            l2: self.l2,
            l2_enabled: self.l2_enabled,
            backend: Some(backend),
        }
    }

    /// The configuration the builder would open.
    pub fn config(&self) -> CacheConfig {
        let mut config = self.config.clone();
        config.l2 = self.l2_enabled.then(|| self.l2.clone());
        config
    }

    /// Opens the cache, recovering L2 from disk, and registers its metrics into `registry`.
    pub async fn open(self, registry: &mut Registry) -> Result<Cache<B>, Error> {
        let config = self.config();
        Cache::open(config, self.backend, registry).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn l2_setters_apply_whatever_their_order_relative_to_l2_dir() {
        let config = CacheBuilder::new()
            .l2_capacity(8 << 20)
            .l2_durability(Durability::Buffered)
            .l2_dir("/x")
            .l2_region_size(1 << 20)
            .config();
        let l2 = config.l2.expect("enabled by l2_dir");
        assert_eq!(l2.dir, PathBuf::from("/x"));
        assert_eq!(
            (l2.capacity_bytes, l2.region_bytes, l2.durability),
            (8 << 20, 1 << 20, Durability::Buffered)
        );
        assert!(CacheBuilder::new().l2_capacity(1).config().l2.is_none());
    }

    #[test]
    fn an_l2_smaller_than_two_regions_is_rejected() {
        let config = CacheBuilder::new()
            .l2_dir("/x")
            .l2_capacity(16 << 20)
            .l2_region_size(16 << 20)
            .config();
        assert!(matches!(config.validate(), Err(Error::InvalidConfig(_))));
    }
}
