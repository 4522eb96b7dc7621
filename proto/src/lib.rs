//! # couchestor-proto
//!
//! Generated gRPC code for CoucheStor's wire contracts. Each `.proto` file under this
//! crate's `csi/` and `couchestor/` directories is compiled by `build.rs`; each package
//! is exposed as a module below.

/// CSI v1.12 (`proto/csi/v1/csi.proto`): the Identity, Controller and Node services.
pub mod csi {
    pub mod v1 {
        tonic::include_proto!("csi.v1");
    }
}

/// The node-agent API (`proto/couchestor/agent/v1/agent.proto`).
pub mod agent {
    pub mod v1 {
        tonic::include_proto!("couchestor.agent.v1");
    }
}
