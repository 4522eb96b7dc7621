//! Checks over the deployable bundle (`deploy/`): manifests parsed strictly into typed
//! Kubernetes objects, rendered with the real `kubectl kustomize` and Helm's engine
//! (`scripts/helm-template`), compared, and tied back to the binaries (Dockerfile
//! entrypoints, flags, environment variables). Used by `tests/deploy.rs`.

pub mod dockerfile;
pub mod manifest;
pub mod rbac;
pub mod strict;
pub mod tools;

use std::path::{Path, PathBuf};

/// The repository root (the parent of this crate's directory).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// `deploy/` under the repository root.
pub fn deploy() -> PathBuf {
    repo().join("deploy")
}
