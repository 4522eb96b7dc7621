//! The CoucheStor node agent's data plane (issue 4, first part).
//!
//! - [`codec`]: Reed-Solomon erasure coding over GF(2^8) (ISA-L and a pure-Rust fallback that
//!   produce byte-identical parity, codec id [`codec::CODEC_ID`]).
//! - [`shard`]: the on-disk format of one shard (a checksummed 4 KiB header + payload).
//! - [`store`]: the durable shard store on local disk directories, indexed in redb, with
//!   crash recovery from the shard headers.
//! - [`rpc`]: the gRPC API (`couchestor.agent.v1.NodeAgent`): server over the store and a
//!   typed client; [`tls`]: mutual TLS; [`certs`]: a CA and certificates for tests and the lab.
//! - [`discovery`]: block devices from sysfs, udev and `smartctl --json`, with a
//!   suggested tier; [`scan`]: the `scan` command; [`storage_node`]: publishing the
//!   inventory in the node's `StorageNode` status.
//! - [`run`]: the `couchestor-node-agent` process (`serve`, `certs`, `scan`, ...).
//!
//! Still to come (issue 4): work orders (destage/rebuild/scrub/rehydrate) over gRPC, the NBD
//! export and the local lab. See `README.md`.

mod agent;
pub mod archive;
pub mod certs;
pub mod codec;
pub mod config;
pub mod discovery;
mod export;
pub mod lab;
pub mod nbd;
pub mod order;
pub mod progress;
pub mod rpc;
pub mod scan;
pub mod shard;
pub mod storage_node;
pub mod store;
pub mod tls;

pub use config::Config;
pub use export::reader_of;

/// Runs the command in `config` until it is done or `shutdown` completes.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    match &config.command {
        config::Command::Serve(serve) => agent::serve(serve, shutdown).await,
        config::Command::Certs(certs) => agent::write_certs(certs),
        config::Command::Archive(command) => order::run(command).await,
        config::Command::Export(export) => export::serve(export, shutdown).await,
        config::Command::Scan(scan) => scan::run(scan).await,
    }
}
