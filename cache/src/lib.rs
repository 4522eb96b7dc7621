//! A three-tier cache: **L1** in RAM, **L2** on a local disk, **L3** a cold backend — with LZ4
//! compression, a CRC-32C on every byte that touches a disk, and Prometheus metrics per tier.
//!
//! ```no_run
//! use couchestor_cache::{Cache, CacheEntry, CacheKey, DirectoryStore};
//! # async fn demo() -> Result<(), couchestor_cache::Error> {
//! let mut registry = prometheus_client::registry::Registry::default();
//! let cache = Cache::builder()
//!     .l1_capacity(256 << 20)
//!     .l2_dir("/var/lib/couchestor/cache")
//!     .l2_capacity(64 << 30)
//!     .backend(DirectoryStore::new("/mnt/cold/objects"))
//!     .open(&mut registry)
//!     .await?;
//! let key = CacheKey::new("volumes", "pvc-1234/stripe-0007");
//! cache.put(key.clone(), CacheEntry::new(vec![0u8; 4096])).await?;
//! let entry = cache.get(&key).await?.expect("just put");
//! assert_eq!(entry.data().len(), 4096);
//! # Ok(()) }
//! ```
//!
//! # Tier semantics
//! - `put` drops the L1 and L2 copies (L2 by a durable tombstone), writes through to L3 (durably,
//!   when there is an L3), then inserts into L1. The cache never holds a value L3 does not have.
//! - `get` looks in L1, then L2, then L3. An L2 hit is promoted into L1; an L3 hit into L2 (see
//!   [`CacheBuilder::admit_l3_hits_to_l2`]) and L1. It returns exactly the bytes last put, or
//!   `None` — with an L3, `None` only for keys never put or removed.
//! - An L1 eviction demotes the entry to L2 (skipped when L2 still holds that very version).
//! - `remove` removes from every tier.
//! - After a restart L1 is empty, L2 is recovered from its file, L3 is unchanged.
//!
//! # Durability and crash safety
//! L2 is a cache: it may lose entries, but it never returns wrong bytes. Each record carries a
//! CRC-32C of its header and key and of its value; any mismatch on read is a miss and drops the
//! entry. See the crate README for the on-disk format and the argument.

mod backend;
mod cache;
mod compression;
mod config;
mod entry;
mod error;
mod key;
mod l1;
mod l2;
mod metrics;

pub use backend::{Backend, DirectoryStore};
pub use cache::{Cache, CacheManager};
pub use compression::{Codec, Compression, CompressionManager, Compressor, Encoded};
pub use config::{CacheBuilder, CacheConfig, Durability, L2Config};
pub use entry::{CacheEntry, EntryMeta};
pub use error::Error;
pub use key::{CacheKey, MAX_KEY_PART_BYTES};
pub use l2::DATA_FILE as L2_DATA_FILE;
