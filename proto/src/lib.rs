//! Protobuf contracts: the CSI v1 services (written from the CSI v1.12 specification) and the node-agent gRPC API, generated with tonic/prost.
//!
//! This crate is a placeholder in the workspace; issue #4 (node-agent API) and #5 (CSI) builds it. It holds no code
//! yet, so nothing can mistake it for a working component.
