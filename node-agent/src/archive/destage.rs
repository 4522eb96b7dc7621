//! Destage: read a volume (file, block device or NBD export), cut it into stripes, encode
//! each into k + m shards and write every column to its agent — three stages running at once:
//!
//! ```text
//! reader ──stripes──▶ encoder ──shard c──▶ writer of column c (one per column, in parallel)
//!                                               │ acks after each durable batch
//!                                               ▼
//!                              watermark = min over columns ──▶ manifest saved
//! ```
//!
//! The watermark (`status.destagedStripes`) only moves past stripes every column has
//! acknowledged as fsynced, and the manifest is saved atomically each time it moves, so a
//! destage stopped at any point (kill -9 of the coordinator or of an agent) resumes from the
//! saved watermark: stripes after it are simply written again.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::mpsc;
use tonic::transport::ClientTlsConfig;

use super::device::Device;
use super::manifest::{ArchiveState, Manifest};
use super::remote::RemoteColumns;
use super::repair;
use super::work::{Progress, ProgressFn, WorkError, WorkReport};
use super::writer::{self, ColumnAck, QUEUE_SHARDS};
use super::{ArchiveLayout, StripeEncoder};
use crate::codec::{self, Backend, ErasureCodec};

/// How a destage runs.
#[derive(Debug, Clone, Copy)]
pub struct DestageOptions {
    /// Read every stripe back afterwards and check checksums and parity.
    pub verify: bool,
    /// Shards per `PutShards` call, and how often the watermark may move.
    pub batch_stripes: usize,
    pub codec: Backend,
}

impl Default for DestageOptions {
    fn default() -> Self {
        Self {
            verify: true,
            batch_stripes: 32,
            codec: Backend::Best,
        }
    }
}

/// The codec a manifest's layout names, or a refusal when this build cannot produce it.
pub fn codec_for(
    manifest: &Manifest,
    backend: Backend,
) -> Result<Arc<dyn ErasureCodec>, WorkError> {
    let l = &manifest.spec.layout;
    let codec: Arc<dyn ErasureCodec> =
        codec::new_codec(backend, l.data_shards as usize, l.parity_shards as usize)
            .map_err(|e| WorkError::Refused(e.to_string()))?
            .into();
    if codec.codec_id() != l.codec_id {
        return Err(WorkError::Refused(format!(
            "volume {} uses codec {:?}; this agent implements {:?}",
            manifest.volume(),
            l.codec_id,
            codec.codec_id()
        )));
    }
    Ok(codec)
}

/// Destages `manifest.spec.sourceVolumeId` onto the agents of `manifest.status.placement`,
/// resuming from `manifest.status.destagedStripes`. The manifest is updated in place and,
/// when `state` is given, saved there every time the watermark moves.
pub async fn destage(
    manifest: &mut Manifest,
    state: Option<&Path>,
    tls: &ClientTlsConfig,
    options: DestageOptions,
    progress: ProgressFn,
) -> Result<WorkReport, WorkError> {
    let started = Instant::now();
    manifest.check()?;
    let layout = manifest.archive_layout()?;
    let codec = codec_for(manifest, options.codec)?;
    let encoder = StripeEncoder::new(layout, Arc::clone(&codec))?;
    let volume = manifest.volume().to_owned();
    let stripes = layout.stripes();
    let resumed_from = manifest.status.destaged_stripes.min(stripes);

    let mut device = Device::open_read(&manifest.spec.source_volume_id).await?;
    let size = device.size().await?;
    if size < layout.volume_size {
        return Err(WorkError::Refused(format!(
            "source {} holds {size} bytes, the manifest says {}",
            manifest.spec.source_volume_id, layout.volume_size
        )));
    }

    let remote =
        RemoteColumns::new(manifest, tls).map_err(|f| WorkError::Refused(f.to_string()))?;
    let store_layout = manifest.store_layout();
    for p in &manifest.status.placement {
        let client = remote
            .client(p.column)
            .ok_or_else(|| WorkError::Refused(format!("no client for column {}", p.column)))?;
        client
            .create_volume(&volume, &store_layout, p.column)
            .await
            .map_err(|s| WorkError::Agent {
                endpoint: p.endpoint.clone(),
                message: format!("CreateVolume: {}: {}", s.code(), s.message()),
            })?;
    }
    manifest.status.state = ArchiveState::Destaging;
    save(manifest, state)?;
    tracing::info!(volume, stripes, resumed_from, "destage started");

    // Writers, one per column.
    let (ack_tx, mut acks) = mpsc::unbounded_channel::<ColumnAck>();
    let mut column_txs = Vec::new();
    let mut writers = tokio::task::JoinSet::new();
    for c in 0..layout.columns() as u32 {
        let (tx, rx) = mpsc::channel(QUEUE_SHARDS);
        column_txs.push(tx);
        let client = remote
            .client(c)
            .cloned()
            .ok_or_else(|| WorkError::Refused(format!("no client for column {c}")))?;
        let endpoint = manifest
            .placement(c)
            .map(|p| p.endpoint.clone())
            .unwrap_or_default();
        writers.spawn(writer::write_column(
            client,
            endpoint,
            volume.clone(),
            c,
            options.batch_stripes.max(1),
            rx,
            ack_tx.clone(),
        ));
    }
    drop(ack_tx);

    // Reader → encoder → writers.
    let (data_tx, mut data_rx) = mpsc::channel::<(u64, Vec<u8>)>(4);
    let reader = tokio::spawn(async move {
        for s in resumed_from..stripes {
            let len = layout.stripe_data_len(s) as usize;
            let data = device
                .read_at(s * layout.stripe_size, vec![0u8; len])
                .await?;
            if data_tx.send((s, data)).await.is_err() {
                break;
            }
        }
        Ok::<(), WorkError>(())
    });
    let encode_progress = Arc::clone(&progress);
    let encoder_task = tokio::spawn(async move {
        while let Some((s, data)) = data_rx.recv().await {
            let enc = encoder.clone();
            let shards = tokio::task::spawn_blocking(move || enc.encode(s, &data))
                .await
                .map_err(|e| WorkError::Task(e.to_string()))??;
            for (tx, shard) in column_txs.iter().zip(shards) {
                if tx.send((s, shard)).await.is_err() {
                    // That column's writer failed; its error is the one reported.
                    return Ok(());
                }
            }
            encode_progress(progress_at(&layout, "destage", s + 1));
        }
        Ok::<(), WorkError>(())
    });

    // Watermark: the lowest stripe every column has made durable.
    let columns = layout.columns();
    let mut durable = vec![resumed_from; columns];
    let mut shard_bytes = 0u64;
    let mut saved = resumed_from;
    while let Some(ack) = acks.recv().await {
        durable[ack.column as usize] = ack.durable_to;
        shard_bytes += ack.bytes;
        let watermark = durable.iter().copied().min().unwrap_or(resumed_from);
        if watermark > saved {
            manifest.status.destaged_stripes = watermark;
            save(manifest, state)?;
            saved = watermark;
        }
    }
    let mut first_error: Option<WorkError> = None;
    while let Some(joined) = writers.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_error.get_or_insert(e.into());
            }
            Err(e) => {
                first_error.get_or_insert(WorkError::Task(e.to_string()));
            }
        }
    }
    for task in [reader, encoder_task] {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(WorkError::Task(e.to_string()));
            }
        }
    }
    if let Some(e) = first_error {
        tracing::error!(volume, watermark = saved, error = %e, "destage stopped; it resumes from the watermark");
        return Err(e);
    }
    if saved != stripes {
        return Err(WorkError::Task(format!(
            "destage ended at stripe {saved} of {stripes} without an error"
        )));
    }
    let mut report = WorkReport {
        bytes: layout.volume_size - (resumed_from * layout.stripe_size).min(layout.volume_size),
        stripes: stripes - resumed_from,
        resumed_from,
        shard_bytes_written: shard_bytes,
        elapsed: started.elapsed(),
        ..WorkReport::default()
    };
    tracing::info!(
        volume,
        stripes,
        mib_per_s = report.mib_per_s(),
        "destage written"
    );
    if options.verify {
        let check = repair::scrub(manifest, tls, false, options.codec, progress).await?;
        if !check.findings.is_empty() {
            return Err(WorkError::Verify {
                count: check.findings.len() as u64,
                first: check.findings[0].clone(),
            });
        }
        report.shards_checked = check.shards_checked;
    }
    manifest.status.state = ArchiveState::Ready;
    save(manifest, state)?;
    Ok(report)
}

fn save(manifest: &Manifest, state: Option<&Path>) -> Result<(), WorkError> {
    if let Some(path) = state {
        manifest.save(path)?;
    }
    Ok(())
}

/// Progress after `done` stripes of `layout`.
pub(super) fn progress_at(layout: &ArchiveLayout, phase: &'static str, done: u64) -> Progress {
    Progress {
        phase,
        stripes_done: done,
        stripes_total: layout.stripes(),
        bytes_done: (done * layout.stripe_size).min(layout.volume_size),
        bytes_total: layout.volume_size,
    }
}
