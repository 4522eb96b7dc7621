//! The data plane: disk discovery (StorageNode), the erasure-coded shard store, destage/rebuild/scrub/rehydrate, the NBD export of archived volumes, and the local lab.
//!
//! This crate is a placeholder in the workspace; issue #4 and #6 builds it. It holds no code
//! yet, so nothing can mistake it for a working component.
