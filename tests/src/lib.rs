//! Cross-component tests against real peer programs (Prometheus, qemu NBD tools, several node agents, the Mayastor REST simulator).
//!
//! Built so far: [`deploy`], the checks over the deployable bundle (issue #6), used by
//! `tests/deploy.rs`. The cross-component tests of issue #3, #4 and #5 are not here yet.

pub mod deploy;
