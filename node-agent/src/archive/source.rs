//! Where the columns of an archived volume come from: a local [`ShardStore`] here, a remote
//! node agent over gRPC elsewhere. The reader treats every failure of one column the same —
//! the column is unusable for that stripe and parity stands in — but keeps the reason so an
//! unreadable stripe names what went wrong with each column.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::store::{self, ShardStore};

/// Why one shard could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardFault {
    /// Never written, deleted, or on a node/disk that is gone.
    #[error("missing: {0}")]
    Missing(String),
    /// Present but failed its checksum or identity check (or is marked for repair).
    #[error("corrupt: {0}")]
    Corrupt(String),
    /// Could not be asked: I/O error, unreachable agent, timeout.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// The boxed future of [`ColumnSource::get_shard`]; boxed so sources of different kinds (local
/// store, remote agent) can serve the columns of one volume behind `dyn ColumnSource`.
pub type ShardFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<u8>, ShardFault>> + Send + 'a>>;

/// Serves shards of one archived volume, for one or more of its columns.
pub trait ColumnSource: Send + Sync + fmt::Debug {
    /// The verified payload of shard (`column`, `stripe`), exactly as it was written.
    fn get_shard(&self, column: u32, stripe: u64) -> ShardFuture<'_>;
}

/// The columns of `volume` held by a local shard store.
#[derive(Debug, Clone)]
pub struct StoreColumns {
    store: Arc<ShardStore>,
    volume: String,
}

impl StoreColumns {
    pub fn new(store: Arc<ShardStore>, volume: impl Into<String>) -> Self {
        Self {
            store,
            volume: volume.into(),
        }
    }
}

impl ColumnSource for StoreColumns {
    fn get_shard(&self, column: u32, stripe: u64) -> ShardFuture<'_> {
        let store = Arc::clone(&self.store);
        let volume = self.volume.clone();
        Box::pin(async move {
            // The store's API is blocking file I/O (O_DIRECT pread + redb).
            tokio::task::spawn_blocking(move || store.get(&volume, column, stripe))
                .await
                .map_err(|e| ShardFault::Unavailable(format!("store task failed: {e}")))?
                .map_err(fault_of)
        })
    }
}

fn fault_of(err: store::Error) -> ShardFault {
    let text = err.to_string();
    match err {
        store::Error::NotFound { .. }
        | store::Error::UnknownVolume { .. }
        | store::Error::DiskMissing { .. } => ShardFault::Missing(text),
        store::Error::Corrupt { .. } | store::Error::NeedsRepair { .. } => {
            ShardFault::Corrupt(text)
        }
        _ => ShardFault::Unavailable(text),
    }
}
