//! Validating and mutating admission webhook over TLS; calls `couchestor_core::Validate` for every CoucheStor kind.
//!
//! This crate is a placeholder in the workspace; issue #5 builds it. It holds no code
//! yet, so nothing can mistake it for a working component.
