//! What the long archive operations (destage, rebuild, scrub, rehydrate) share: their error
//! type, progress reports and result summary.

use std::sync::Arc;
use std::time::Duration;

use super::device::DeviceError;
use super::encode::EncodeError;
use super::manifest::ManifestError;
use super::writer::ColumnWriteError;

/// Why an archive operation stopped.
#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error(transparent)]
    Read(#[from] super::Error),
    #[error("writing {0}")]
    Column(#[from] ColumnWriteError),
    #[error("agent {endpoint}: {message}")]
    Agent { endpoint: String, message: String },
    #[error("{0}")]
    Refused(String),
    #[error("verify found {count} bad stripes, first: {first}")]
    Verify { count: u64, first: String },
    #[error("operation task failed: {0}")]
    Task(String),
}

/// How far an operation is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// `destage`, `verify`, `rebuild`, `scrub`, `repair`, `rehydrate`.
    pub phase: &'static str,
    pub stripes_done: u64,
    pub stripes_total: u64,
    pub bytes_done: u64,
    pub bytes_total: u64,
}

/// Receives progress reports; called often, must not block.
pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// A progress sink that drops every report.
pub fn no_progress() -> ProgressFn {
    Arc::new(|_| {})
}

/// What an operation did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkReport {
    /// Volume bytes moved (read, written or checked).
    pub bytes: u64,
    pub stripes: u64,
    /// Destage: the stripe it resumed from (0 for a fresh start).
    pub resumed_from: u64,
    /// Shards whose checksum was verified.
    pub shards_checked: u64,
    /// Shards rewritten from parity.
    pub shards_repaired: u64,
    /// Bytes written to agents (shards, parity included).
    pub shard_bytes_written: u64,
    /// Problems found, one line each (corrupt shards, unreachable columns).
    pub findings: Vec<String>,
    pub elapsed: Duration,
}

impl WorkReport {
    /// Volume throughput in MiB/s.
    pub fn mib_per_s(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        self.bytes as f64 / secs / f64::from(1u32 << 20)
    }
}
