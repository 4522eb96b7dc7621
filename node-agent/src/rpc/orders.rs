//! Work orders: the agent runs a destage, rebuild, scrub or rehydrate as coordinator and
//! streams its progress. An order keeps running if the caller goes away (a destage saves
//! its watermark as it goes, so the caller can reconnect by sending the order again); only
//! one order per volume runs at a time on one agent.

use std::collections::HashSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tonic::transport::ClientTlsConfig;

use super::pb;
use crate::archive::{
    self, DestageOptions, Manifest, Placement, Progress, ProgressFn, WorkError, WorkReport,
};
use crate::codec::Backend;

/// The stream a work order answers with.
pub type WorkStream = ReceiverStream<Result<pb::WorkProgress, Status>>;

/// What an agent needs to coordinate work orders.
#[derive(Debug)]
pub struct Orders {
    tls: ClientTlsConfig,
    state_dir: PathBuf,
    backend: Backend,
    running: Mutex<HashSet<String>>,
}

/// The one mapping from work errors to gRPC statuses.
fn status_of(e: &WorkError) -> Status {
    let message = e.to_string();
    match e {
        WorkError::Manifest(_) => Status::invalid_argument(message),
        WorkError::Refused(_) | WorkError::Device(_) => Status::failed_precondition(message),
        WorkError::Column(_) | WorkError::Agent { .. } => Status::unavailable(message),
        WorkError::Read(_) | WorkError::Verify { .. } => Status::data_loss(message),
        WorkError::Encode(_) | WorkError::Task(_) => Status::internal(message),
    }
}

fn progress_pb(p: &Progress) -> pb::WorkProgress {
    pb::WorkProgress {
        phase: p.phase.into(),
        stripes_done: p.stripes_done,
        stripes_total: p.stripes_total,
        bytes_done: p.bytes_done,
        bytes_total: p.bytes_total,
        report: None,
        manifest: None,
    }
}

fn report_pb(r: &WorkReport) -> pb::WorkReport {
    pb::WorkReport {
        bytes: r.bytes,
        stripes: r.stripes,
        resumed_from: r.resumed_from,
        shards_checked: r.shards_checked,
        shards_repaired: r.shards_repaired,
        shard_bytes_written: r.shard_bytes_written,
        findings: r.findings.clone(),
        seconds: r.elapsed.as_secs_f64(),
    }
}

/// The caller's side of [`report_pb`].
pub fn report_from_pb(r: pb::WorkReport) -> WorkReport {
    WorkReport {
        bytes: r.bytes,
        stripes: r.stripes,
        resumed_from: r.resumed_from,
        shards_checked: r.shards_checked,
        shards_repaired: r.shards_repaired,
        shard_bytes_written: r.shard_bytes_written,
        findings: r.findings,
        elapsed: std::time::Duration::from_secs_f64(r.seconds.max(0.0)),
    }
}

fn manifest_of(m: Option<&pb::ArchiveManifest>) -> Result<Manifest, Status> {
    Manifest::from_pb(m).map_err(|e| Status::invalid_argument(e.to_string()))
}

/// Releases a volume's claim when the order ends, however it ends.
struct Claim {
    orders: Arc<Orders>,
    volume: String,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.orders
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.volume);
    }
}

impl Orders {
    /// Orders coordinated with `tls` as the client identity towards other agents; destage
    /// state (manifests with their watermark) kept under `state_dir/archives/`.
    pub fn new(tls: ClientTlsConfig, state_dir: PathBuf, backend: Backend) -> Self {
        Self {
            tls,
            state_dir,
            backend,
            running: Mutex::new(HashSet::new()),
        }
    }

    fn state_path(&self, volume: &str) -> PathBuf {
        self.state_dir
            .join("archives")
            .join(format!("{volume}.json"))
    }

    /// Runs `op` in its own task, streaming its progress and then its result.
    fn start<F, Fut>(self: &Arc<Self>, volume: &str, op: F) -> Result<WorkStream, Status>
    where
        F: FnOnce(Arc<Self>, ProgressFn) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(WorkReport, Manifest), WorkError>> + Send + 'static,
    {
        if !self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(volume.to_owned())
        {
            return Err(Status::aborted(format!(
                "volume {volume}: another work order is running on this agent"
            )));
        }
        let claim = Claim {
            orders: Arc::clone(self),
            volume: volume.to_owned(),
        };
        let (tx, rx) = mpsc::channel(256);
        let progress: ProgressFn = {
            let tx = tx.clone();
            // A slow caller misses progress messages, never the result.
            Arc::new(move |p| {
                let _ = tx.try_send(Ok(progress_pb(&p)));
            })
        };
        let orders = Arc::clone(self);
        tokio::spawn(async move {
            let _claim = claim;
            let last = match op(orders, progress).await {
                Ok((report, manifest)) => Ok(pb::WorkProgress {
                    phase: "done".into(),
                    stripes_done: report.stripes,
                    stripes_total: report.stripes,
                    bytes_done: report.bytes,
                    bytes_total: report.bytes,
                    report: Some(report_pb(&report)),
                    manifest: Some(manifest.to_pb()),
                }),
                Err(e) => {
                    tracing::warn!(error = %e, "work order failed");
                    Err(status_of(&e))
                }
            };
            let _ = tx.send(last).await;
        });
        Ok(ReceiverStream::new(rx))
    }

    pub fn destage(self: &Arc<Self>, r: pb::DestageRequest) -> Result<WorkStream, Status> {
        let requested = manifest_of(r.manifest.as_ref())?;
        let path = self.state_path(requested.volume());
        let mut manifest = resume_point(&path, requested)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Status::internal(format!("create {}: {e}", dir.display())))?;
        }
        let volume = manifest.volume().to_owned();
        self.start(&volume, move |orders, progress| async move {
            let options = DestageOptions {
                verify: r.verify,
                codec: orders.backend,
                ..DestageOptions::default()
            };
            let report =
                archive::destage(&mut manifest, Some(&path), &orders.tls, options, progress)
                    .await?;
            Ok((report, manifest))
        })
    }

    pub fn rebuild(self: &Arc<Self>, r: pb::RebuildRequest) -> Result<WorkStream, Status> {
        let mut manifest = manifest_of(r.manifest.as_ref())?;
        let target = Placement {
            column: r.column,
            node: r.node,
            endpoint: r.endpoint,
            healthy: true,
        };
        let volume = manifest.volume().to_owned();
        self.start(&volume, move |orders, progress| async move {
            let report = archive::rebuild(
                &mut manifest,
                r.column,
                target,
                &orders.tls,
                orders.backend,
                progress,
            )
            .await?;
            orders.remember(&manifest);
            Ok((report, manifest))
        })
    }

    pub fn scrub(self: &Arc<Self>, r: pb::ScrubRequest) -> Result<WorkStream, Status> {
        let mut manifest = manifest_of(r.manifest.as_ref())?;
        let volume = manifest.volume().to_owned();
        self.start(&volume, move |orders, progress| async move {
            let report = archive::scrub(
                &mut manifest,
                &orders.tls,
                r.repair,
                orders.backend,
                progress,
            )
            .await?;
            orders.remember(&manifest);
            Ok((report, manifest))
        })
    }

    pub fn rehydrate(self: &Arc<Self>, r: pb::RehydrateRequest) -> Result<WorkStream, Status> {
        let mut manifest = manifest_of(r.manifest.as_ref())?;
        let volume = manifest.volume().to_owned();
        self.start(&volume, move |orders, progress| async move {
            let report = archive::rehydrate(
                &mut manifest,
                &r.target,
                &orders.tls,
                orders.backend,
                progress,
            )
            .await?;
            Ok((report, manifest))
        })
    }

    /// Keeps this agent's copy of a destaged volume's manifest current after a rebuild or
    /// scrub changed it, so a later Destage of the same placement is recognised.
    fn remember(&self, manifest: &Manifest) {
        let path = self.state_path(manifest.volume());
        if path.exists()
            && let Err(e) = manifest.save(&path)
        {
            tracing::warn!(error = %e, "could not update the saved manifest");
        }
    }
}

/// The manifest a destage starts from: the saved one (with its watermark) when it describes
/// the same archive, the requested one when nothing is saved.
fn resume_point(path: &Path, requested: Manifest) -> Result<Manifest, Status> {
    if !path.exists() {
        return Ok(requested);
    }
    let saved = Manifest::load(path).map_err(|e| Status::internal(e.to_string()))?;
    if saved.spec == requested.spec && same_placement(&saved, &requested) {
        tracing::info!(
            volume = saved.volume(),
            watermark = saved.status.destaged_stripes,
            "resuming destage"
        );
        return Ok(saved);
    }
    Err(Status::failed_precondition(format!(
        "volume {} was already destaged (or started) from {:?} with another size, layout or \
         placement; delete it first",
        saved.volume(),
        saved.spec.source_volume_id
    )))
}

fn same_placement(a: &Manifest, b: &Manifest) -> bool {
    let key = |m: &Manifest| {
        let mut v: Vec<_> = m
            .status
            .placement
            .iter()
            .map(|p| (p.column, p.node.clone(), p.endpoint.clone()))
            .collect();
        v.sort();
        v
    };
    key(a) == key(b)
}
