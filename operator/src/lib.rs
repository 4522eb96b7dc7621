//! The operator: StoragePolicy and VolumeMigration controllers on Mayastor 2.x, Prometheus client, leader election, /healthz /readyz /metrics.
//!
//! This crate is a placeholder in the workspace; issue #3 builds it. It holds no code
//! yet, so nothing can mistake it for a working component.
