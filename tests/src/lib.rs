//! Cross-component tests against real peer programs (Prometheus, qemu NBD tools, several node agents, the Mayastor REST simulator).
//!
//! This crate is a placeholder in the workspace; issue #3, #4 and #5 builds it. It holds no code
//! yet, so nothing can mistake it for a working component.
