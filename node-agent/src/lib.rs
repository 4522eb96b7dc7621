//! The CoucheStor node agent's data plane (issue 4, first part).
//!
//! - [`codec`]: Reed-Solomon erasure coding over GF(2^8) (ISA-L and a pure-Rust fallback that
//!   produce byte-identical parity, codec id [`codec::CODEC_ID`]).
//! - [`shard`]: the on-disk format of one shard (a checksummed 4 KiB header + payload).
//! - [`store`]: the durable shard store on local disk directories, indexed in redb, with
//!   crash recovery from the shard headers.
//!
//! Still to come (issue 4): gRPC between agents, destage/rebuild/scrub/rehydrate, the NBD
//! export and the local lab. See `README.md`.

pub mod codec;
pub mod shard;
pub mod store;
