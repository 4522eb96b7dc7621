//! # couchestor-operator
//!
//! The operator of CoucheStor (DESIGN §2, issue #3). Built so far:
//!
//! - [`prometheus`]: the Prometheus client — one batched instant query per policy per
//!   cycle giving each volume's IOPS and how much history backs it; any failure makes
//!   the loads *unknown*, never idle.
//!
//! The controllers, the Mayastor client and simulator, the migration executor, leader
//! election and the admin server are not built yet.

pub mod prometheus;
