//! # couchestor-operator
//!
//! The operator of CoucheStor (DESIGN §2, issue #3). Built so far:
//!
//! - [`prometheus`]: the Prometheus client — one batched instant query per policy per
//!   cycle giving each volume's IOPS and how much history backs it; any failure makes
//!   the loads *unknown*, never idle.
//!
//! - [`mayastor`]: the Mayastor REST v0 client — lenient types for volumes, pools,
//!   nodes and replicas; replica count, pool labels, pool and node cordons; errors
//!   carrying the server's `kind`/`message`. With the `sim` feature,
//!   [`mayastor::sim`] is a stateful simulator of the same API for tests (no real
//!   Mayastor runs here).
//!
//! - [`executor`]: the VolumeMigration executor — a write-ahead step machine that moves
//!   a volume between pool tiers with Mayastor's replica count and steered placement,
//!   resuming or rolling back after a crash from the persisted status alone.
//!
//! The controllers, leader election and the admin server are not built yet.

pub mod executor;
pub mod mayastor;
pub mod prometheus;
