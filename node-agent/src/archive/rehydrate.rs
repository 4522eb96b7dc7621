//! Rehydrate: write an archived volume back, byte for byte, to a file, a block device or an
//! NBD export, reading through the same degraded-capable path as the NBD server. The target
//! is synced (fsync / NBD_CMD_FLUSH) before success is reported.

use std::time::Instant;

use futures::StreamExt;
use tonic::transport::ClientTlsConfig;

use super::destage::progress_at;
use super::device::Device;
use super::manifest::{ArchiveState, Manifest};
use super::remote::{ONE_PASS, remote_reader};
use super::work::{ProgressFn, WorkError, WorkReport};
use crate::codec::Backend;

/// Stripes read ahead of the write.
const WINDOW: usize = 8;

/// Writes the volume of `manifest` to `target`.
pub async fn rehydrate(
    manifest: &mut Manifest,
    target: &str,
    tls: &ClientTlsConfig,
    backend: Backend,
    progress: ProgressFn,
) -> Result<WorkReport, WorkError> {
    let started = Instant::now();
    manifest.check()?;
    let layout = manifest.archive_layout()?;
    let (reader, _) = remote_reader(manifest, tls, backend, ONE_PASS)?;
    let mut device = Device::open_write(target, layout.volume_size).await?;
    let previous = manifest.status.state;
    manifest.status.state = ArchiveState::Rehydrating;
    tracing::info!(volume = manifest.volume(), target, "rehydrate started");
    let reader = &reader;
    let mut stripes = futures::stream::iter(0..layout.stripes())
        .map(|s| async move { (s, reader.stripe(s).await) })
        .buffered(WINDOW);
    while let Some((s, data)) = stripes.next().await {
        let data = data?;
        device
            .write_at(s * layout.stripe_size, data.as_ref().clone())
            .await?;
        progress(progress_at(&layout, "rehydrate", s + 1));
    }
    device.sync().await?;
    manifest.status.state = previous;
    let report = WorkReport {
        bytes: layout.volume_size,
        stripes: layout.stripes(),
        elapsed: started.elapsed(),
        ..WorkReport::default()
    };
    tracing::info!(
        volume = manifest.volume(),
        target,
        mib_per_s = report.mib_per_s(),
        "rehydrate done"
    );
    Ok(report)
}
