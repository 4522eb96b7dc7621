//! Reed-Solomon erasure coding over GF(2^8): k data shards + m parity shards per stripe.
//!
//! Two implementations of [`ErasureCodec`] produce byte-identical parity, so they share one
//! codec id ([`CODEC_ID`]) and a stripe written by one is read back by the other:
//! - [`IsalCodec`] (cargo feature `isal`, on by default) calls Intel ISA-L (Debian `libisal`)
//!   through `erasure-isa-l`, with SIMD kernels chosen at run time;
//! - [`PureRustCodec`] is portable safe Rust with one 256-entry multiplication table per
//!   coefficient, for machines without libisal and as an independent check of ISA-L.
//!
//! Both use ISA-L's Cauchy matrix (`gf_gen_cauchy1_matrix`) rather than its Vandermonde-derived
//! `gf_gen_rs_matrix`: every square submatrix of a Cauchy matrix is invertible, so any k
//! surviving shards decode for every k + m ≤ 255, whereas ISA-L documents (k, m) pairs for
//! which its RS matrix has singular submatrices.

mod gf;
#[cfg(feature = "isal")]
mod isal;
mod pure;

use std::fmt;

#[cfg(feature = "isal")]
pub use isal::IsalCodec;
pub use pure::PureRustCodec;

/// The codec id recorded in every shard header and in `EcLayout.codec_id`: Reed-Solomon,
/// GF(2^8) with polynomial 0x11d, ISA-L's Cauchy matrix, systematic (data shards unchanged).
pub const CODEC_ID: &str = "rs-gf8-cauchy-v1";

/// Most shards (k + m) per stripe; mirrors `couchestor_core::api::MAX_TOTAL_SHARDS`.
/// (Not imported, to keep this crate's build free of kube/k8s-openapi; see README.)
pub const MAX_TOTAL_SHARDS: usize = 255;

/// Shard length must be a multiple of this; mirrors `couchestor_core::api::CODEC_ALIGNMENT_BYTES`.
pub const ALIGNMENT_BYTES: usize = 64;

/// What went wrong while encoding or reconstructing a stripe.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("invalid erasure-code geometry k={k} m={m}: {reason}")]
    Geometry {
        k: usize,
        m: usize,
        reason: &'static str,
    },
    #[error("expected {expected} {role} shards, got {got}")]
    ShardCount {
        role: &'static str,
        expected: usize,
        got: usize,
    },
    #[error(
        "shard {column} is {len} bytes; shard length must be a non-zero multiple of {ALIGNMENT_BYTES}"
    )]
    Misaligned { column: usize, len: usize },
    #[error(
        "shard {column} is {len} bytes but shard {first_column} is {expected}; all shards of a stripe have one length"
    )]
    LengthMismatch {
        column: usize,
        len: usize,
        first_column: usize,
        expected: usize,
    },
    #[error(
        "cannot reconstruct: {present} of {total} shards present, at least {needed} (k) are needed"
    )]
    TooFewShards {
        present: usize,
        total: usize,
        needed: usize,
    },
    #[error("the decoding matrix for surviving columns {columns:?} is singular")]
    Singular { columns: Vec<usize> },
    #[error("ISA-L failed: {0}")]
    Isal(String),
}

/// A systematic k + m erasure code: columns `0..k` are the data shards unchanged,
/// columns `k..k+m` parity.
pub trait ErasureCodec: Send + Sync + fmt::Debug {
    /// Which encoding this is; stored with every shard, since different codecs produce
    /// different parity.
    fn codec_id(&self) -> &'static str;
    /// k.
    fn data_shards(&self) -> usize;
    /// m.
    fn parity_shards(&self) -> usize;
    /// Computes the m parity shards of k data shards. All shards have one length, a
    /// non-zero multiple of [`ALIGNMENT_BYTES`].
    fn encode(&self, data: &[&[u8]], parity: &mut [&mut [u8]]) -> Result<(), Error>;
    /// Given all k + m columns with the lost ones `None`, fills in every missing column
    /// (data and parity). Fails with [`Error::TooFewShards`] when fewer than k are present;
    /// on error `shards` is left as it was.
    fn reconstruct(&self, shards: &mut [Option<Vec<u8>>]) -> Result<(), Error>;
}

/// Which implementation [`new_codec`] builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// ISA-L when compiled in (feature `isal`), otherwise pure Rust.
    Best,
    /// Always the pure-Rust implementation.
    PureRust,
}

/// A codec for k + m with the requested backend.
pub fn new_codec(backend: Backend, k: usize, m: usize) -> Result<Box<dyn ErasureCodec>, Error> {
    match backend {
        #[cfg(feature = "isal")]
        Backend::Best => Ok(Box::new(IsalCodec::new(k, m)?)),
        #[cfg(not(feature = "isal"))]
        Backend::Best => Ok(Box::new(PureRustCodec::new(k, m)?)),
        Backend::PureRust => Ok(Box::new(PureRustCodec::new(k, m)?)),
    }
}

/// Checks k and m against what a GF(2^8) Cauchy code supports.
fn check_geometry(k: usize, m: usize) -> Result<(), Error> {
    let reason = if k == 0 {
        "k must be at least 1"
    } else if m == 0 {
        "m must be at least 1"
    } else if k + m > MAX_TOTAL_SHARDS {
        "k + m must be at most 255 in GF(2^8)"
    } else {
        return Ok(());
    };
    Err(Error::Geometry { k, m, reason })
}

/// The common shard length of `lens` (column, length) pairs, checked for alignment and
/// equality.
fn common_len(lens: impl IntoIterator<Item = (usize, usize)>) -> Result<usize, Error> {
    let mut first: Option<(usize, usize)> = None;
    for (column, len) in lens {
        if len == 0 || !len.is_multiple_of(ALIGNMENT_BYTES) {
            return Err(Error::Misaligned { column, len });
        }
        match first {
            None => first = Some((column, len)),
            Some((first_column, expected)) if expected != len => {
                return Err(Error::LengthMismatch {
                    column,
                    len,
                    first_column,
                    expected,
                });
            }
            Some(_) => {}
        }
    }
    // Callers pass at least one shard (k ≥ 1 is checked first), so `first` is set.
    Ok(first.map_or(0, |(_, len)| len))
}

/// Validates encode arguments; returns the shard length.
fn check_encode(k: usize, m: usize, data: &[&[u8]], parity: &[&mut [u8]]) -> Result<usize, Error> {
    if data.len() != k {
        return Err(Error::ShardCount {
            role: "data",
            expected: k,
            got: data.len(),
        });
    }
    if parity.len() != m {
        return Err(Error::ShardCount {
            role: "parity",
            expected: m,
            got: parity.len(),
        });
    }
    let lens = data
        .iter()
        .map(|s| s.len())
        .chain(parity.iter().map(|s| s.len()))
        .enumerate();
    common_len(lens)
}

/// Validates reconstruct arguments; returns the shard length and the missing columns
/// (empty when nothing is missing).
fn check_reconstruct(
    k: usize,
    m: usize,
    shards: &[Option<Vec<u8>>],
) -> Result<(usize, Vec<usize>), Error> {
    if shards.len() != k + m {
        return Err(Error::ShardCount {
            role: "total",
            expected: k + m,
            got: shards.len(),
        });
    }
    let present = shards.iter().filter(|s| s.is_some()).count();
    if present < k {
        return Err(Error::TooFewShards {
            present,
            total: k + m,
            needed: k,
        });
    }
    let len = common_len(
        shards
            .iter()
            .enumerate()
            .filter_map(|(c, s)| s.as_ref().map(|s| (c, s.len()))),
    )?;
    let missing = (0..k + m).filter(|&c| shards[c].is_none()).collect();
    Ok((len, missing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_than_255_shards_is_rejected_with_the_field_limit() {
        let err = PureRustCodec::new(200, 56).expect_err("256 shards exceed GF(2^8)");
        assert!(matches!(err, Error::Geometry { k: 200, m: 56, .. }));
        assert!(PureRustCodec::new(200, 55).is_ok());
    }

    #[test]
    fn a_shard_length_that_is_not_a_multiple_of_64_is_rejected() {
        let codec = PureRustCodec::new(2, 1).expect("valid geometry");
        let a = vec![0u8; 100];
        let b = vec![0u8; 100];
        let mut p = vec![0u8; 100];
        let err = codec
            .encode(&[&a, &b], &mut [&mut p])
            .expect_err("100 is not a multiple of 64");
        assert_eq!(
            err,
            Error::Misaligned {
                column: 0,
                len: 100
            }
        );
    }

    #[test]
    fn shards_of_different_lengths_are_rejected() {
        let codec = PureRustCodec::new(2, 1).expect("valid geometry");
        let a = vec![0u8; 64];
        let b = vec![0u8; 128];
        let mut p = vec![0u8; 64];
        let err = codec
            .encode(&[&a, &b], &mut [&mut p])
            .expect_err("lengths differ");
        assert!(matches!(
            err,
            Error::LengthMismatch {
                column: 1,
                len: 128,
                ..
            }
        ));
    }

    #[test]
    fn new_codec_reports_the_shared_codec_id() {
        for backend in [Backend::Best, Backend::PureRust] {
            let codec = new_codec(backend, 4, 2).expect("valid geometry");
            assert_eq!(codec.codec_id(), CODEC_ID);
            assert_eq!((codec.data_shards(), codec.parity_shards()), (4, 2));
        }
    }
}
