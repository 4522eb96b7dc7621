//! The crate's one error type.

use std::io;
use std::path::PathBuf;

/// Everything that can fail in the cache.
///
/// A checksum mismatch in L2 is *not* an error: the entry is dropped and the lookup is a miss.
/// A corrupt object in the L3 directory store *is* an error ([`Error::CorruptObject`]), because L3
/// is the copy of record and a human has to look at it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value is out of range.
    #[error("invalid cache configuration: {0}")]
    InvalidConfig(String),

    /// A key part is longer than the record format allows.
    #[error("cache key {part} is {len} bytes; the limit is {max}")]
    KeyTooLong {
        /// `"bucket"` or `"key"`.
        part: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// The L2 directory or file could not be created, sized, locked or mapped.
    #[error("opening L2 cache file {path}")]
    OpenL2 {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },

    /// Another process (or another `Cache` in this one) holds the L2 file.
    #[error("L2 cache file {path} is locked by another cache instance")]
    L2Locked {
        /// The file.
        path: PathBuf,
    },

    /// Writing or syncing an L2 record failed.
    #[error("writing L2 cache file {path}")]
    WriteL2 {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },

    /// An I/O operation of the directory object store failed.
    #[error("{op} {path}")]
    StoreIo {
        /// What was being done (`"writing object"`, `"syncing directory"`, …).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },

    /// An object in the directory store failed its checksum or header validation.
    #[error("object {path} is corrupt: {reason}")]
    CorruptObject {
        /// The object file.
        path: PathBuf,
        /// What did not match.
        reason: String,
    },

    /// An error from another [`Backend`](crate::Backend) implementation (for example the EC archive).
    #[error("{backend} backend failed")]
    Backend {
        /// The backend's name.
        backend: &'static str,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The backend does not accept writes (a read-only archive).
    #[error("the {backend} backend is read-only")]
    ReadOnlyBackend {
        /// The backend's name.
        backend: &'static str,
    },

    /// A blocking I/O task panicked or was cancelled.
    #[error("cache I/O task failed")]
    Task(#[from] tokio::task::JoinError),
}
