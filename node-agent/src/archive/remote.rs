//! Columns of an archived volume held by node agents elsewhere, read over gRPC (mTLS).
//!
//! An agent that fails a call (refused, reset, timed out) is left alone for a short back-off,
//! so a read of a degraded volume does not pay a connection attempt per stripe for every dead
//! column: parity stands in at once, and the agent is tried again when the back-off ends.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use tonic::Code;
use tonic::transport::ClientTlsConfig;

use super::manifest::Manifest;
use super::source::{ColumnSource, ShardFault, ShardFuture};
use crate::rpc::{AgentClient, ShardRead};

/// How long a failed agent is skipped.
const BACKOFF: Duration = Duration::from_secs(2);
/// Longest wait for one shard.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// One remote column: its agent and when it may be tried again.
#[derive(Debug)]
struct Column {
    endpoint: String,
    client: AgentClient,
    down_until: Mutex<Option<Instant>>,
}

/// Every column of one volume, each on its agent.
#[derive(Debug)]
pub struct RemoteColumns {
    volume: String,
    columns: Vec<Column>,
}

impl RemoteColumns {
    /// Clients (connected lazily) for every column of `manifest`, with `tls` as the client
    /// identity.
    pub fn new(manifest: &Manifest, tls: &ClientTlsConfig) -> Result<Self, ShardFault> {
        let total = manifest
            .archive_layout()
            .map_err(|e| ShardFault::Unavailable(e.to_string()))?
            .columns();
        let mut columns = Vec::with_capacity(total);
        for c in 0..total as u32 {
            let p = manifest
                .placement(c)
                .ok_or_else(|| ShardFault::Missing(format!("column {c} has no placement")))?;
            let client = AgentClient::connect_lazy(&p.endpoint, tls.clone())
                .map_err(|e| ShardFault::Unavailable(e.to_string()))?;
            columns.push(Column {
                endpoint: p.endpoint.clone(),
                client,
                down_until: Mutex::new(None),
            });
        }
        Ok(Self {
            volume: manifest.volume().to_owned(),
            columns,
        })
    }

    /// The client of column `c`'s agent.
    pub fn client(&self, column: u32) -> Option<&AgentClient> {
        self.columns.get(column as usize).map(|c| &c.client)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ColumnSource for RemoteColumns {
    fn get_shard(&self, column: u32, stripe: u64) -> ShardFuture<'_> {
        Box::pin(async move {
            let col = self
                .columns
                .get(column as usize)
                .ok_or_else(|| ShardFault::Missing(format!("no column {column}")))?;
            if let Some(until) = *lock(&col.down_until)
                && Instant::now() < until
            {
                return Err(ShardFault::Unavailable(format!(
                    "agent {} failed recently",
                    col.endpoint
                )));
            }
            let call = col.client.get_shards(&self.volume, column, stripe, 1);
            let result = match tokio::time::timeout(CALL_TIMEOUT, call).await {
                Ok(r) => r,
                Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                    "no answer in {CALL_TIMEOUT:?}"
                ))),
            };
            match result {
                Ok(mut reads) if reads.len() == 1 => match reads.remove(0).shard {
                    ShardRead::Data(bytes) => Ok(bytes),
                    ShardRead::Missing(d) => Err(ShardFault::Missing(d)),
                    ShardRead::Corrupt(d) | ShardRead::NeedsRepair(d) => {
                        Err(ShardFault::Corrupt(d))
                    }
                },
                Ok(reads) => Err(ShardFault::Unavailable(format!(
                    "agent {} answered {} stripes for one",
                    col.endpoint,
                    reads.len()
                ))),
                Err(status) => {
                    let fault = format!("agent {}: {}", col.endpoint, status.message());
                    match status.code() {
                        Code::NotFound => Err(ShardFault::Missing(fault)),
                        Code::DataLoss => Err(ShardFault::Corrupt(fault)),
                        _ => {
                            *lock(&col.down_until) = Some(Instant::now() + BACKOFF);
                            Err(ShardFault::Unavailable(fault))
                        }
                    }
                }
            }
        })
    }
}

/// A reader of the volume of `manifest` whose columns come from its agents, with `tls` as
/// the client identity; also returns the columns (for writing repaired shards back).
pub fn remote_reader(
    manifest: &Manifest,
    tls: &ClientTlsConfig,
    backend: crate::codec::Backend,
    config: super::ReaderConfig,
) -> Result<(super::ArchiveReader, std::sync::Arc<RemoteColumns>), super::WorkError> {
    let layout = manifest.archive_layout()?;
    let codec = super::codec_for(manifest, backend)?;
    let remote = std::sync::Arc::new(
        RemoteColumns::new(manifest, tls).map_err(|f| super::WorkError::Refused(f.to_string()))?,
    );
    let source: std::sync::Arc<dyn ColumnSource> = remote.clone();
    let reader = super::ArchiveReader::new(
        manifest.volume(),
        layout,
        codec,
        vec![source; layout.columns()],
        config,
    )?;
    Ok((reader, remote))
}

/// For operations that read each stripe once: no decoded-stripe cache beyond in-flight ones.
pub const ONE_PASS: super::ReaderConfig = super::ReaderConfig {
    window: 1,
    cache_stripes: 1,
};
