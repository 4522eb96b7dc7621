//! The `NodeAgent` service over the shard store. The store is synchronous (it fsyncs), so
//! every call into it runs on the blocking pool.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::orders::{Orders, WorkStream};
use super::pb::{self, node_agent_server::NodeAgent};
use super::{CHUNK_BYTES, MAX_STRIPES_PER_GET};
use crate::store::{self, ShardState, ShardStore, VolumeInfo, VolumeLayout};

/// Who this agent is, as `Health` reports it.
#[derive(Debug, Clone)]
pub struct AgentIdentity {
    pub agent_id: String,
    pub node_name: String,
}

/// The `NodeAgent` gRPC service of one agent.
#[derive(Debug, Clone)]
pub struct AgentService {
    store: Arc<ShardStore>,
    identity: AgentIdentity,
    orders: Option<Arc<Orders>>,
}

impl AgentService {
    pub fn new(store: Arc<ShardStore>, identity: AgentIdentity) -> Self {
        Self {
            store,
            identity,
            orders: None,
        }
    }

    /// Accepts work orders (destage, rebuild, scrub, rehydrate); without this they are
    /// `UNIMPLEMENTED`.
    pub fn with_orders(mut self, orders: Orders) -> Self {
        self.orders = Some(Arc::new(orders));
        self
    }

    fn orders(&self) -> Result<&Arc<Orders>, Status> {
        self.orders
            .as_ref()
            .ok_or_else(|| Status::unimplemented("this agent was started without work orders"))
    }

    /// The tonic server for this service, with the message size limit the API promises.
    pub fn into_server(self) -> pb::node_agent_server::NodeAgentServer<Self> {
        pb::node_agent_server::NodeAgentServer::new(self)
            .max_decoding_message_size(super::MAX_MESSAGE_BYTES)
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&ShardStore) -> Result<T, store::Error> + Send + 'static,
    {
        blocking(&self.store, f).await
    }

    /// The volume's record, NOT_FOUND when unknown.
    async fn volume(&self, volume: &str) -> Result<VolumeInfo, Status> {
        let id = volume.to_owned();
        self.blocking(move |s| s.volume(&id)).await?.ok_or_else(|| {
            Status::from(store::Error::UnknownVolume {
                volume: volume.into(),
            })
        })
    }
}

async fn blocking<T, F>(store: &Arc<ShardStore>, f: F) -> Result<T, Status>
where
    T: Send + 'static,
    F: FnOnce(&ShardStore) -> Result<T, store::Error> + Send + 'static,
{
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| Status::internal(format!("shard store task failed: {e}")))?
        .map_err(Status::from)
}

/// INVALID_ARGUMENT unless `column` is one of the layout's k + m columns.
fn check_column(volume: &str, layout: &VolumeLayout, column: u32) -> Result<(), Status> {
    let columns = u32::from(layout.data_shards) + u32::from(layout.parity_shards);
    if column >= columns {
        return Err(store::Error::ColumnOutOfRange {
            volume: volume.to_owned(),
            column,
            columns,
        }
        .into());
    }
    Ok(())
}

/// FAILED_PRECONDITION unless `CreateVolume` gave this agent `column`.
fn check_held(volume: &str, info: &VolumeInfo, column: u32) -> Result<(), Status> {
    check_column(volume, &info.layout, column)?;
    if !info.columns.contains_key(&column) {
        return Err(Status::failed_precondition(format!(
            "volume {volume} column {column}: not held by this agent (CreateVolume assigns columns)"
        )));
    }
    Ok(())
}

fn layout_to_pb(l: &VolumeLayout) -> pb::VolumeLayout {
    pb::VolumeLayout {
        data_shards: u32::from(l.data_shards),
        parity_shards: u32::from(l.parity_shards),
        stripe_size_bytes: l.stripe_size_bytes,
        codec_id: l.codec_id.clone(),
    }
}

fn layout_from_pb(volume: &str, l: Option<pb::VolumeLayout>) -> Result<VolumeLayout, Status> {
    let l = l.ok_or_else(|| Status::invalid_argument(format!("volume {volume}: no layout")))?;
    let narrow = |name: &str, v: u32| {
        u16::try_from(v).map_err(|_| {
            Status::invalid_argument(format!("volume {volume}: {name} = {v} is out of range"))
        })
    };
    Ok(VolumeLayout {
        data_shards: narrow("data_shards", l.data_shards)?,
        parity_shards: narrow("parity_shards", l.parity_shards)?,
        stripe_size_bytes: l.stripe_size_bytes,
        codec_id: l.codec_id,
    })
}

/// A shard whose chunks are arriving.
struct Pending {
    volume: String,
    column: u32,
    stripe: u64,
    data: Vec<u8>,
}

/// Adds how much of the stream was durable to an error, since the caller gets no response.
fn with_progress(status: Status, ack: &pb::PutShardsResponse) -> Status {
    Status::new(
        status.code(),
        format!(
            "{} ({} shards of this stream were written durably before this)",
            status.message(),
            ack.shards_written
        ),
    )
}

#[tonic::async_trait]
impl NodeAgent for AgentService {
    type DestageStream = WorkStream;
    type RebuildStream = WorkStream;
    type ScrubStream = WorkStream;
    type RehydrateStream = WorkStream;

    async fn destage(
        &self,
        request: Request<pb::DestageRequest>,
    ) -> Result<Response<WorkStream>, Status> {
        self.orders()?
            .destage(request.into_inner())
            .map(Response::new)
    }

    async fn rebuild(
        &self,
        request: Request<pb::RebuildRequest>,
    ) -> Result<Response<WorkStream>, Status> {
        self.orders()?
            .rebuild(request.into_inner())
            .map(Response::new)
    }

    async fn scrub(
        &self,
        request: Request<pb::ScrubRequest>,
    ) -> Result<Response<WorkStream>, Status> {
        self.orders()?
            .scrub(request.into_inner())
            .map(Response::new)
    }

    async fn rehydrate(
        &self,
        request: Request<pb::RehydrateRequest>,
    ) -> Result<Response<WorkStream>, Status> {
        self.orders()?
            .rehydrate(request.into_inner())
            .map(Response::new)
    }

    async fn create_volume(
        &self,
        request: Request<pb::CreateVolumeRequest>,
    ) -> Result<Response<pb::CreateVolumeResponse>, Status> {
        let r = request.into_inner();
        let layout = layout_from_pb(&r.volume_id, r.layout)?;
        let (volume, column) = (r.volume_id, r.column);
        check_column(&volume, &layout, column)?;
        let id = volume.clone();
        self.blocking(move |s| {
            s.create_volume(&id, &layout)?;
            s.assign_column(&id, column)
        })
        .await?;
        tracing::info!(volume, column, "volume column registered");
        Ok(Response::new(pb::CreateVolumeResponse {}))
    }

    async fn put_shards(
        &self,
        request: Request<Streaming<pb::PutShardsRequest>>,
    ) -> Result<Response<pb::PutShardsResponse>, Status> {
        let mut stream = request.into_inner();
        let mut ack = pb::PutShardsResponse::default();
        let mut pending: Option<Pending> = None;
        // Layouts are frozen, so one lookup per volume per stream is enough.
        let mut volumes: HashMap<String, VolumeInfo> = HashMap::new();
        // Shards are written in groups (one fdatasync and one index commit per group, see
        // `ShardStore::put_batch`) while the next ones are received: shards that arrive while
        // a group is being written form the next group. Groups become durable one after the
        // other, in stream order, and `ack` counts only shards that are.
        let mut writing: Option<Write> = None;
        let mut queue: Vec<Pending> = Vec::new();
        let result: Result<(), Status> = async {
            loop {
                let Some(msg) = stream.message().await? else {
                    break;
                };
                let Some(shard) = self
                    .accept_chunk(msg, &mut pending, &mut volumes)
                    .await?
                else {
                    continue;
                };
                queue.push(shard);
                let busy = writing.as_ref().is_some_and(|w| !w.task.is_finished());
                if busy && queue.len() < MAX_GROUP_SHARDS {
                    continue;
                }
                if let Some(previous) = writing.take() {
                    finish(previous, &mut ack).await?;
                }
                writing = Some(self.start_write(std::mem::take(&mut queue)));
            }
            if let Some(previous) = writing.take() {
                finish(previous, &mut ack).await?;
            }
            if !queue.is_empty() {
                finish(self.start_write(std::mem::take(&mut queue)), &mut ack).await?;
            }
            if let Some(p) = pending.take() {
                return Err(Status::invalid_argument(format!(
                    "volume {} column {} stripe {}: stream ended after {} bytes without the last chunk",
                    p.volume,
                    p.column,
                    p.stripe,
                    p.data.len()
                )));
            }
            Ok(())
        }
        .await;
        if let Err(status) = result {
            // A write still in flight finishes (or fails) before the error is reported, so
            // the count in the message is exact.
            if let Some(previous) = writing.take() {
                let _ = finish(previous, &mut ack).await;
            }
            return Err(with_progress(status, &ack));
        }
        Ok(Response::new(ack))
    }

    type GetShardsStream = ReceiverStream<Result<pb::GetShardsResponse, Status>>;

    async fn get_shards(
        &self,
        request: Request<pb::GetShardsRequest>,
    ) -> Result<Response<Self::GetShardsStream>, Status> {
        let r = request.into_inner();
        if r.stripe_count == 0 || r.stripe_count > MAX_STRIPES_PER_GET {
            return Err(Status::invalid_argument(format!(
                "stripe_count {} is not in 1..={MAX_STRIPES_PER_GET}",
                r.stripe_count
            )));
        }
        let last = r
            .first_stripe
            .checked_add(r.stripe_count - 1)
            .ok_or_else(|| {
                Status::invalid_argument("first_stripe + stripe_count overflows".to_owned())
            })?;
        let info = self.volume(&r.volume_id).await?;
        check_held(&r.volume_id, &info, r.column)?;
        // A small buffer: the reader runs at most a few shards ahead of the network.
        let (tx, rx) = mpsc::channel(4);
        let store = Arc::clone(&self.store);
        tokio::spawn(async move {
            for stripe in r.first_stripe..=last {
                let id = r.volume_id.clone();
                let read = blocking(&store, move |s| match s.get(&id, r.column, stripe) {
                    Ok(data) => Ok(Ok(data)),
                    Err(
                        e @ (store::Error::NotFound { .. }
                        | store::Error::NeedsRepair { .. }
                        | store::Error::Corrupt { .. }),
                    ) => Ok(Err(e)),
                    Err(e) => Err(e),
                })
                .await;
                let messages = match read {
                    Ok(Ok(data)) => data_messages(stripe, data),
                    Ok(Err(e)) => vec![status_message(stripe, &e)],
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                };
                for m in messages {
                    if tx.send(Ok(m)).await.is_err() {
                        return; // the client went away
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn stat(
        &self,
        request: Request<pb::StatRequest>,
    ) -> Result<Response<pb::StatResponse>, Status> {
        let r = request.into_inner();
        let info = self.volume(&r.volume_id).await?;
        check_column(&r.volume_id, &info.layout, r.column)?;
        let (id, column, scrub) = (r.volume_id.clone(), r.column, r.scrub);
        let entries = self
            .blocking(move |s| {
                if scrub {
                    let bad = s.verify_volume(&id)?;
                    tracing::info!(volume = id, marked = bad.len(), "scrub pass done");
                }
                s.column_entries(&id, column)
            })
            .await?;
        Ok(Response::new(pb::StatResponse {
            layout: Some(layout_to_pb(&info.layout)),
            columns_held: info.columns.keys().copied().collect(),
            stripe_count: entries.len() as u64,
            bytes: entries.iter().map(|(_, e)| u64::from(e.payload_len)).sum(),
            needs_repair: entries
                .iter()
                .filter(|(_, e)| e.state != ShardState::Ok)
                .map(|(stripe, _)| *stripe)
                .collect(),
            destaged_stripes: info.destaged_stripes,
        }))
    }

    async fn health(
        &self,
        _request: Request<pb::HealthRequest>,
    ) -> Result<Response<pb::HealthResponse>, Status> {
        let (usage, volumes) = self
            .blocking(|s| Ok((s.usage()?, s.volumes()?.len())))
            .await?;
        Ok(Response::new(pb::HealthResponse {
            agent_id: self.identity.agent_id.clone(),
            node_name: self.identity.node_name.clone(),
            disks: usage
                .into_iter()
                .map(|d| pb::Disk {
                    path: d.path.display().to_string(),
                    used_bytes: d.used_bytes,
                    free_bytes: d.free_bytes,
                    total_bytes: d.total_bytes,
                    direct_io: d.direct_io,
                })
                .collect(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            volumes: volumes as u64,
        }))
    }

    async fn delete_volume(
        &self,
        request: Request<pb::DeleteVolumeRequest>,
    ) -> Result<Response<pb::DeleteVolumeResponse>, Status> {
        let volume = request.into_inner().volume_id;
        let id = volume.clone();
        let existed = self.blocking(move |s| s.delete_volume(&id)).await?;
        tracing::info!(volume, existed, "volume deleted");
        Ok(Response::new(pb::DeleteVolumeResponse { existed }))
    }
}

impl AgentService {
    /// Takes one chunk: starts, extends or completes (writes) a shard.
    async fn accept_chunk(
        &self,
        msg: pb::PutShardsRequest,
        pending: &mut Option<Pending>,
        volumes: &mut HashMap<String, VolumeInfo>,
    ) -> Result<Option<Pending>, Status> {
        let mut shard = match pending.take() {
            Some(p) => {
                if (p.volume.as_str(), p.column, p.stripe)
                    != (msg.volume_id.as_str(), msg.column, msg.stripe)
                    || msg.offset != p.data.len() as u64
                {
                    return Err(Status::invalid_argument(format!(
                        "volume {} column {} stripe {}: expected its chunk at offset {}, got volume {} column {} stripe {} offset {}",
                        p.volume,
                        p.column,
                        p.stripe,
                        p.data.len(),
                        msg.volume_id,
                        msg.column,
                        msg.stripe,
                        msg.offset
                    )));
                }
                p
            }
            None => {
                if msg.offset != 0 {
                    return Err(Status::invalid_argument(format!(
                        "volume {} column {} stripe {}: first chunk at offset {}, not 0",
                        msg.volume_id, msg.column, msg.stripe, msg.offset
                    )));
                }
                let held = volumes
                    .get(&msg.volume_id)
                    .is_some_and(|i| i.columns.contains_key(&msg.column));
                if !held {
                    // Unknown here or the column was assigned after the first lookup.
                    let info = self.volume(&msg.volume_id).await?;
                    volumes.insert(msg.volume_id.clone(), info);
                }
                let info = &volumes[&msg.volume_id];
                check_held(&msg.volume_id, info, msg.column)?;
                Pending {
                    volume: msg.volume_id,
                    column: msg.column,
                    stripe: msg.stripe,
                    data: Vec::new(),
                }
            }
        };
        let capacity = volumes[&shard.volume].layout.shard_bytes();
        let len = shard.data.len() + msg.data.len();
        if len as u64 > capacity {
            return Err(store::Error::PayloadTooLarge {
                volume: shard.volume,
                column: shard.column,
                stripe: shard.stripe,
                len,
                capacity,
            }
            .into());
        }
        shard.data.extend_from_slice(&msg.data);
        if !msg.last {
            *pending = Some(shard);
            return Ok(None);
        }
        Ok(Some(shard))
    }

    /// Starts writing complete shards through the store on the blocking pool: each run of
    /// consecutive shards of one (volume, column) is one group commit.
    fn start_write(&self, shards: Vec<Pending>) -> Write {
        let store = Arc::clone(&self.store);
        let summary: Vec<(u64, u64)> = shards
            .iter()
            .map(|s| (s.stripe, s.data.len() as u64))
            .collect();
        let task = tokio::task::spawn_blocking(move || {
            let mut done = 0;
            // A group is a run of one (volume, column) without a repeated stripe.
            let mut start = 0;
            while start < shards.len() {
                let first = &shards[start];
                let mut seen = std::collections::HashSet::new();
                let end = shards[start..]
                    .iter()
                    .position(|s| {
                        s.volume != first.volume
                            || s.column != first.column
                            || !seen.insert(s.stripe)
                    })
                    .map_or(shards.len(), |i| start + i);
                let group: Vec<(u64, &[u8])> = shards[start..end]
                    .iter()
                    .map(|s| (s.stripe, s.data.as_slice()))
                    .collect();
                if let Err(e) = store.put_batch(&first.volume, first.column, &group) {
                    return (done, Err(e));
                }
                done += end - start;
                start = end;
            }
            (done, Ok(()))
        });
        Write { task, summary }
    }
}

/// Shards written as one group at most (and while a group is written, the next waits until
/// it has this many or the write is done).
const MAX_GROUP_SHARDS: usize = 16;

/// Shards being written.
struct Write {
    /// How many shards (in order) became durable, and whether all did.
    task: tokio::task::JoinHandle<(usize, Result<(), store::Error>)>,
    /// (stripe, bytes) of each shard, in order.
    summary: Vec<(u64, u64)>,
}

/// Waits for a write and counts in `ack` the shards that became durable.
async fn finish(write: Write, ack: &mut pb::PutShardsResponse) -> Result<(), Status> {
    let (done, result) = write
        .task
        .await
        .map_err(|e| Status::internal(format!("shard store task failed: {e}")))?;
    for &(stripe, bytes) in &write.summary[..done] {
        ack.shards_written += 1;
        ack.bytes_written += bytes;
        ack.highest_stripe = Some(ack.highest_stripe.map_or(stripe, |h| h.max(stripe)));
    }
    result.map_err(Status::from)
}

/// The messages carrying one healthy shard, in chunks.
fn data_messages(stripe: u64, data: Vec<u8>) -> Vec<pb::GetShardsResponse> {
    if data.is_empty() {
        return vec![pb::GetShardsResponse {
            stripe,
            status: pb::ShardStatus::Ok.into(),
            last: true,
            ..Default::default()
        }];
    }
    let count = data.len().div_ceil(CHUNK_BYTES);
    data.chunks(CHUNK_BYTES)
        .enumerate()
        .map(|(i, chunk)| pb::GetShardsResponse {
            stripe,
            status: pb::ShardStatus::Ok.into(),
            offset: (i * CHUNK_BYTES) as u64,
            data: chunk.to_vec(),
            last: i + 1 == count,
            detail: String::new(),
        })
        .collect()
}

/// The single message answering a shard that cannot be served.
fn status_message(stripe: u64, e: &store::Error) -> pb::GetShardsResponse {
    let status = match e {
        store::Error::NotFound { .. } => pb::ShardStatus::Missing,
        store::Error::NeedsRepair { .. } => pb::ShardStatus::NeedsRepair,
        _ => {
            tracing::warn!(error = %e, "corrupt shard not served");
            pb::ShardStatus::Corrupt
        }
    };
    pb::GetShardsResponse {
        stripe,
        status: status.into(),
        last: true,
        detail: e.to_string(),
        ..Default::default()
    }
}
