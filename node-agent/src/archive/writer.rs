//! Streams the shards of one column to its agent, in batches: each batch is one `PutShards`
//! call, and the agent's answer means every shard of the batch is fsynced and indexed. The
//! writer reports after each batch how far the column is durable, which is what a destage
//! watermark may advance to.

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::rpc::AgentClient;

/// A column that could not be written.
#[derive(Debug, Clone, thiserror::Error)]
#[error("column {column} on {endpoint}: {message}")]
pub struct ColumnWriteError {
    pub column: u32,
    pub endpoint: String,
    pub message: String,
}

/// Durable progress of one column: stripes below `durable_to` (of this writer's stream)
/// are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnAck {
    pub column: u32,
    pub durable_to: u64,
    pub bytes: u64,
}

/// Shards queued ahead of a column's writer; bounds the memory a slow agent can hold up.
pub const QUEUE_SHARDS: usize = 16;

/// Writes `(stripe, shard)` pairs from `shards` (in increasing stripe order) to `column` on
/// `client`, `batch` shards per call, sending a [`ColumnAck`] after each call. Returns when
/// `shards` is closed and drained, or on the first failed call.
pub async fn write_column(
    client: AgentClient,
    endpoint: String,
    volume: String,
    column: u32,
    batch: usize,
    mut shards: mpsc::Receiver<(u64, Vec<u8>)>,
    acks: mpsc::UnboundedSender<ColumnAck>,
) -> Result<(), ColumnWriteError> {
    let fail = |message: String| ColumnWriteError {
        column,
        endpoint: endpoint.clone(),
        message,
    };
    loop {
        let Some(first) = shards.recv().await else {
            return Ok(());
        };
        let (tx, rx) = mpsc::channel(QUEUE_SHARDS);
        let mut last = first.0;
        let mut bytes = first.1.len() as u64;
        let call = client.put_shards(&volume, column, ReceiverStream::new(rx));
        let feed = async {
            let _ = tx.send(first).await;
            for _ in 1..batch {
                let Some(next) = shards.recv().await else {
                    break;
                };
                last = next.0;
                bytes += next.1.len() as u64;
                if tx.send(next).await.is_err() {
                    break;
                }
            }
            drop(tx);
        };
        let (ack, ()) = tokio::join!(call, feed);
        let ack = ack.map_err(|s| fail(format!("{}: {}", s.code(), s.message())))?;
        if ack.highest_stripe != Some(last) {
            return Err(fail(format!(
                "agent acknowledged up to stripe {:?}, expected {last}",
                ack.highest_stripe
            )));
        }
        let _ = acks.send(ColumnAck {
            column,
            durable_to: last + 1,
            bytes,
        });
    }
}
