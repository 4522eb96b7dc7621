//! Keeping an archive whole: **scrub** reads every shard of every column (each agent checks
//! the shard's checksum as it serves it), checks that parity still matches the data, and
//! rewrites corrupt or missing shards from the others; **rebuild** recreates a whole lost
//! column on another agent and moves the column's placement there.

use std::time::Instant;

use futures::StreamExt;
use tokio::sync::mpsc;
use tonic::transport::ClientTlsConfig;

use super::StripeEncoder;
use super::destage::{codec_for, progress_at};
use super::manifest::{ArchiveState, Manifest, Placement};
use super::remote::{ONE_PASS, remote_reader};
use super::source::ShardFault;
use super::work::{ProgressFn, WorkError, WorkReport};
use super::writer::{self, ColumnAck, QUEUE_SHARDS};
use crate::codec::Backend;
use crate::rpc::AgentClient;

/// Stripes fetched concurrently by scrub and rebuild.
const WINDOW: usize = 8;

/// Scrubs the whole archive: every shard read and checked, parity compared with the data,
/// and — when `repair` — every corrupt or missing shard rewritten from the other columns on
/// its own agent. Columns whose agent cannot be reached are reported, not repaired. The
/// manifest's health (placement `healthy`, state Ready/Degraded/Failed) is updated.
pub async fn scrub(
    manifest: &mut Manifest,
    tls: &ClientTlsConfig,
    repair: bool,
    backend: Backend,
    progress: ProgressFn,
) -> Result<WorkReport, WorkError> {
    let started = Instant::now();
    manifest.check()?;
    let layout = manifest.archive_layout()?;
    let encoder = StripeEncoder::new(layout, codec_for(manifest, backend)?)?;
    let (reader, remote) = remote_reader(manifest, tls, backend, ONE_PASS)?;
    let volume = manifest.volume().to_owned();
    let phase = if repair { "scrub" } else { "verify" };
    let columns = layout.columns();
    let mut report = WorkReport::default();
    let mut unreachable = vec![false; columns];
    let mut unrepaired = vec![false; columns];
    let mut lost_stripes = 0u64;

    let reader = &reader;
    let mut stripes = futures::stream::iter(0..layout.stripes())
        .map(|s| async move { (s, reader.stripe_shards(s, &[], true).await) })
        .buffered(WINDOW);
    while let Some((s, result)) = stripes.next().await {
        progress(progress_at(&layout, phase, s + 1));
        let shards = match result {
            Ok(shards) => shards,
            Err(e) => {
                lost_stripes += 1;
                report.findings.push(e.to_string());
                continue;
            }
        };
        report.shards_checked += (columns - shards.bad.len()) as u64;
        if shards.bad.is_empty() {
            // Every checksum passed; the parity must still be the parity of the data.
            let data_len = layout.stripe_data_len(s) as usize;
            let mut data: Vec<u8> = shards.shards[..layout.data_shards].concat();
            data.truncate(data_len);
            let enc = encoder.clone();
            let expected = tokio::task::spawn_blocking(move || enc.encode(s, &data))
                .await
                .map_err(|e| WorkError::Task(e.to_string()))??;
            if expected != shards.shards {
                report.findings.push(format!(
                    "stripe {s}: parity does not match the data (not repaired)"
                ));
            }
            continue;
        }
        for (column, fault) in &shards.bad {
            let c = *column as usize;
            if matches!(fault, ShardFault::Unavailable(_)) {
                if !std::mem::replace(&mut unreachable[c], true) {
                    report
                        .findings
                        .push(format!("column {column}: agent unreachable ({fault})"));
                }
                continue;
            }
            report
                .findings
                .push(format!("column {column} stripe {s}: {fault}"));
            if !repair {
                unrepaired[c] = true;
                continue;
            }
            let client = remote
                .client(*column)
                .ok_or_else(|| WorkError::Refused(format!("no client for column {column}")))?;
            let shard = shards.shards[c].clone();
            match put_one(client, &volume, *column, s, shard).await {
                Ok(()) => {
                    report.shards_repaired += 1;
                    tracing::info!(volume, column, stripe = s, "shard repaired from parity");
                }
                Err(message) => {
                    unrepaired[c] = true;
                    report.findings.push(format!(
                        "column {column} stripe {s}: repair failed: {message}"
                    ));
                }
            }
        }
    }
    for p in &mut manifest.status.placement {
        let c = p.column as usize;
        p.healthy = !unreachable[c] && !unrepaired[c];
    }
    manifest.status.state = if lost_stripes > 0 {
        ArchiveState::Failed
    } else if manifest.status.placement.iter().all(|p| p.healthy) {
        ArchiveState::Ready
    } else {
        ArchiveState::Degraded
    };
    report.bytes = layout.volume_size;
    report.stripes = layout.stripes();
    report.elapsed = started.elapsed();
    tracing::info!(
        volume,
        checked = report.shards_checked,
        repaired = report.shards_repaired,
        findings = report.findings.len(),
        "{phase} done"
    );
    Ok(report)
}

async fn put_one(
    client: &AgentClient,
    volume: &str,
    column: u32,
    stripe: u64,
    shard: Vec<u8>,
) -> Result<(), String> {
    let ack = client
        .put_shards(volume, column, futures::stream::iter([(stripe, shard)]))
        .await
        .map_err(|s| format!("{}: {}", s.code(), s.message()))?;
    if ack.shards_written != 1 {
        return Err(format!("agent wrote {} shards, not 1", ack.shards_written));
    }
    Ok(())
}

/// Rebuilds `column` on `target` (a node holding no other column of the volume) from the
/// other columns, then points the column's placement at `target`.
pub async fn rebuild(
    manifest: &mut Manifest,
    column: u32,
    target: Placement,
    tls: &ClientTlsConfig,
    backend: Backend,
    progress: ProgressFn,
) -> Result<WorkReport, WorkError> {
    let started = Instant::now();
    manifest.check()?;
    let layout = manifest.archive_layout()?;
    if column as usize >= layout.columns() {
        return Err(WorkError::Refused(format!(
            "column {column} ≥ k + m = {}",
            layout.columns()
        )));
    }
    if let Some(other) = manifest
        .status
        .placement
        .iter()
        .find(|p| p.node == target.node && p.column != column)
    {
        return Err(WorkError::Refused(format!(
            "node {} already holds column {}; two columns on one node would be lost together",
            target.node, other.column
        )));
    }
    let volume = manifest.volume().to_owned();
    let (reader, _) = remote_reader(manifest, tls, backend, ONE_PASS)?;
    let client =
        AgentClient::connect_lazy(&target.endpoint, tls.clone()).map_err(|e| WorkError::Agent {
            endpoint: target.endpoint.clone(),
            message: e.to_string(),
        })?;
    client
        .create_volume(&volume, &manifest.store_layout(), column)
        .await
        .map_err(|s| WorkError::Agent {
            endpoint: target.endpoint.clone(),
            message: format!("CreateVolume: {}: {}", s.code(), s.message()),
        })?;
    manifest.status.state = ArchiveState::Rebuilding;
    tracing::info!(volume, column, target = %target.endpoint, "rebuild started");

    let (tx, rx) = mpsc::channel(QUEUE_SHARDS);
    let (ack_tx, mut acks) = mpsc::unbounded_channel::<ColumnAck>();
    let writer = tokio::spawn(writer::write_column(
        client,
        target.endpoint.clone(),
        volume.clone(),
        column,
        32,
        rx,
        ack_tx,
    ));
    let reader = &reader;
    let feed = async move {
        let mut stripes = futures::stream::iter(0..layout.stripes())
            .map(|s| async move { (s, reader.stripe_shards(s, &[column], false).await) })
            .buffered(WINDOW);
        while let Some((s, result)) = stripes.next().await {
            let mut shards = result?;
            let shard = std::mem::take(&mut shards.shards[column as usize]);
            if tx.send((s, shard)).await.is_err() {
                break;
            }
        }
        Ok::<(), WorkError>(())
    };
    let track = async {
        let mut durable = 0;
        let mut bytes = 0;
        while let Some(ack) = acks.recv().await {
            durable = ack.durable_to;
            bytes += ack.bytes;
            progress(progress_at(&layout, "rebuild", durable));
        }
        (durable, bytes)
    };
    let (fed, (durable, bytes)) = tokio::join!(feed, track);
    let written = writer.await.map_err(|e| WorkError::Task(e.to_string()))?;
    fed?;
    written?;
    if durable != layout.stripes() {
        return Err(WorkError::Task(format!(
            "rebuild of column {column} ended at stripe {durable} of {}",
            layout.stripes()
        )));
    }
    if let Some(p) = manifest
        .status
        .placement
        .iter_mut()
        .find(|p| p.column == column)
    {
        *p = Placement {
            column,
            healthy: true,
            ..target
        };
    }
    manifest.status.state = if manifest.status.placement.iter().all(|p| p.healthy) {
        ArchiveState::Ready
    } else {
        ArchiveState::Degraded
    };
    let report = WorkReport {
        bytes: layout.volume_size,
        stripes: layout.stripes(),
        shard_bytes_written: bytes,
        elapsed: started.elapsed(),
        ..WorkReport::default()
    };
    tracing::info!(
        volume,
        column,
        mib_per_s = report.mib_per_s(),
        "rebuild done"
    );
    Ok(report)
}
