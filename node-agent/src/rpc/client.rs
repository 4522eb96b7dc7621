//! A typed client for one agent: mTLS connection, shard chunking and reassembly.

use std::time::Duration;

use futures::{Stream, StreamExt};
use tonic::Status;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use super::CHUNK_BYTES;
use super::pb::{self, node_agent_client::NodeAgentClient};
use crate::archive::{Manifest, Placement};
use crate::store::VolumeLayout;

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("agent address {addr}: {source}")]
    Address {
        addr: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("connect to agent {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: tonic::transport::Error,
    },
}

/// What a `PutShards` call made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutAck {
    pub shards_written: u64,
    pub bytes_written: u64,
    pub highest_stripe: Option<u64>,
}

/// One stripe's answer from `GetShards`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeRead {
    pub stripe: u64,
    pub shard: ShardRead,
}

/// A shard's bytes, or why there are none. Corruption is never data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardRead {
    Data(Vec<u8>),
    Missing(String),
    Corrupt(String),
    NeedsRepair(String),
}

/// A client of one agent's `NodeAgent` service.
#[derive(Debug, Clone)]
pub struct AgentClient {
    inner: NodeAgentClient<Channel>,
}

impl AgentClient {
    /// Connects to `https://{addr}` (e.g. `127.0.0.2:7400`) with `tls` (see
    /// [`TlsMaterial::client_config`](crate::tls::TlsMaterial::client_config)).
    pub async fn connect(addr: &str, tls: ClientTlsConfig) -> Result<Self, ClientError> {
        let url = format!("https://{addr}");
        let endpoint = Endpoint::from_shared(url)
            .and_then(|e| e.tls_config(tls))
            .map_err(|source| ClientError::Address {
                addr: addr.to_owned(),
                source,
            })?
            .connect_timeout(Duration::from_secs(5));
        let channel = endpoint
            .connect()
            .await
            .map_err(|source| ClientError::Connect {
                addr: addr.to_owned(),
                source,
            })?;
        Ok(Self {
            inner: NodeAgentClient::new(channel),
        })
    }

    /// A client that connects on first use and reconnects after failures, so an agent that
    /// is down now is used again once it is back. Calls to an unreachable agent fail with
    /// `UNAVAILABLE` after the connect timeout.
    pub fn connect_lazy(addr: &str, tls: ClientTlsConfig) -> Result<Self, ClientError> {
        let endpoint = Endpoint::from_shared(format!("https://{addr}"))
            .and_then(|e| e.tls_config(tls))
            .map_err(|source| ClientError::Address {
                addr: addr.to_owned(),
                source,
            })?
            .connect_timeout(Duration::from_secs(3))
            .tcp_nodelay(true);
        Ok(Self {
            inner: NodeAgentClient::new(endpoint.connect_lazy())
                .max_decoding_message_size(super::MAX_MESSAGE_BYTES),
        })
    }

    /// The generated client, for calls this wrapper does not shape (and tests of the wire).
    pub fn raw(&self) -> NodeAgentClient<Channel> {
        self.inner.clone()
    }

    pub async fn create_volume(
        &self,
        volume: &str,
        layout: &VolumeLayout,
        column: u32,
    ) -> Result<(), Status> {
        self.raw()
            .create_volume(pb::CreateVolumeRequest {
                volume_id: volume.to_owned(),
                layout: Some(pb::VolumeLayout {
                    data_shards: u32::from(layout.data_shards),
                    parity_shards: u32::from(layout.parity_shards),
                    stripe_size_bytes: layout.stripe_size_bytes,
                    codec_id: layout.codec_id.clone(),
                }),
                column,
            })
            .await?;
        Ok(())
    }

    /// Streams `(stripe, bytes)` shards of one column, each split into ≤ [`CHUNK_BYTES`]
    /// chunks; returns when the agent has written all of them durably.
    pub async fn put_shards<S>(
        &self,
        volume: &str,
        column: u32,
        shards: S,
    ) -> Result<PutAck, Status>
    where
        S: Stream<Item = (u64, Vec<u8>)> + Send + 'static,
    {
        let volume = volume.to_owned();
        let messages = shards.flat_map(move |(stripe, data)| {
            futures::stream::iter(chunks(&volume, column, stripe, &data))
        });
        let r = self.raw().put_shards(messages).await?.into_inner();
        Ok(PutAck {
            shards_written: r.shards_written,
            bytes_written: r.bytes_written,
            highest_stripe: r.highest_stripe,
        })
    }

    /// Reads stripes `first..first + count` of one column, reassembling chunks.
    pub async fn get_shards(
        &self,
        volume: &str,
        column: u32,
        first: u64,
        count: u64,
    ) -> Result<Vec<StripeRead>, Status> {
        let mut stream = self
            .raw()
            .get_shards(pb::GetShardsRequest {
                volume_id: volume.to_owned(),
                column,
                first_stripe: first,
                stripe_count: count,
            })
            .await?
            .into_inner();
        let mut out = Vec::new();
        let mut data: Vec<u8> = Vec::new();
        while let Some(m) = stream.message().await? {
            let status = pb::ShardStatus::try_from(m.status).unwrap_or_default();
            let shard = match status {
                pb::ShardStatus::Ok => {
                    if m.offset != data.len() as u64 {
                        return Err(Status::internal(format!(
                            "stripe {}: chunk at offset {} after {} bytes",
                            m.stripe,
                            m.offset,
                            data.len()
                        )));
                    }
                    data.extend_from_slice(&m.data);
                    if !m.last {
                        continue;
                    }
                    ShardRead::Data(std::mem::take(&mut data))
                }
                pb::ShardStatus::Missing => ShardRead::Missing(m.detail),
                pb::ShardStatus::Corrupt => ShardRead::Corrupt(m.detail),
                pb::ShardStatus::NeedsRepair => ShardRead::NeedsRepair(m.detail),
                pb::ShardStatus::Unspecified => {
                    return Err(Status::internal(format!(
                        "stripe {}: shard status {} unknown to this client",
                        m.stripe, m.status
                    )));
                }
            };
            out.push(StripeRead {
                stripe: m.stripe,
                shard,
            });
        }
        Ok(out)
    }

    pub async fn stat(
        &self,
        volume: &str,
        column: u32,
        scrub: bool,
    ) -> Result<pb::StatResponse, Status> {
        Ok(self
            .raw()
            .stat(pb::StatRequest {
                volume_id: volume.to_owned(),
                column,
                scrub,
            })
            .await?
            .into_inner())
    }

    pub async fn health(&self) -> Result<pb::HealthResponse, Status> {
        Ok(self.raw().health(pb::HealthRequest {}).await?.into_inner())
    }

    /// Sends a destage work order; the stream ends with a `done` message (report and
    /// manifest) or an error status.
    pub async fn destage(
        &self,
        manifest: &Manifest,
        verify: bool,
    ) -> Result<tonic::Streaming<pb::WorkProgress>, Status> {
        let request = pb::DestageRequest {
            manifest: Some(manifest.to_pb()),
            verify,
        };
        Ok(self.raw().destage(request).await?.into_inner())
    }

    /// Sends a rebuild work order for `column` onto `target`.
    pub async fn rebuild(
        &self,
        manifest: &Manifest,
        column: u32,
        target: &Placement,
    ) -> Result<tonic::Streaming<pb::WorkProgress>, Status> {
        let request = pb::RebuildRequest {
            manifest: Some(manifest.to_pb()),
            column,
            node: target.node.clone(),
            endpoint: target.endpoint.clone(),
        };
        Ok(self.raw().rebuild(request).await?.into_inner())
    }

    /// Sends a scrub work order.
    pub async fn scrub(
        &self,
        manifest: &Manifest,
        repair: bool,
    ) -> Result<tonic::Streaming<pb::WorkProgress>, Status> {
        let request = pb::ScrubRequest {
            manifest: Some(manifest.to_pb()),
            repair,
        };
        Ok(self.raw().scrub(request).await?.into_inner())
    }

    /// Sends a rehydrate work order writing to `target`.
    pub async fn rehydrate(
        &self,
        manifest: &Manifest,
        target: &str,
    ) -> Result<tonic::Streaming<pb::WorkProgress>, Status> {
        let request = pb::RehydrateRequest {
            manifest: Some(manifest.to_pb()),
            target: target.to_owned(),
        };
        Ok(self.raw().rehydrate(request).await?.into_inner())
    }

    /// Whether the volume existed.
    pub async fn delete_volume(&self, volume: &str) -> Result<bool, Status> {
        Ok(self
            .raw()
            .delete_volume(pb::DeleteVolumeRequest {
                volume_id: volume.to_owned(),
            })
            .await?
            .into_inner()
            .existed)
    }
}

/// The `PutShards` messages of one shard.
pub fn chunks(volume: &str, column: u32, stripe: u64, data: &[u8]) -> Vec<pb::PutShardsRequest> {
    let message = |offset: usize, chunk: &[u8], last: bool| pb::PutShardsRequest {
        volume_id: volume.to_owned(),
        column,
        stripe,
        offset: offset as u64,
        data: chunk.to_vec(),
        last,
    };
    if data.is_empty() {
        return vec![message(0, &[], true)];
    }
    let count = data.len().div_ceil(CHUNK_BYTES);
    data.chunks(CHUNK_BYTES)
        .enumerate()
        .map(|(i, c)| message(i * CHUNK_BYTES, c, i + 1 == count))
        .collect()
}
