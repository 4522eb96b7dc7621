//! The ISA-L codec: Intel's SIMD kernels from Debian `libisal`, via `erasure-isa-l`.

use std::fmt;
use std::num::NonZeroUsize;

use erasure_isa_l::erasure::ErasureCode;

use super::{CODEC_ID, ErasureCodec, Error, check_encode, check_geometry, check_reconstruct};

/// Reed-Solomon with ISA-L's Cauchy matrix (`ErasureCode::with_cauchy`).
pub struct IsalCodec {
    k: usize,
    m: usize,
    inner: ErasureCode,
}

impl fmt::Debug for IsalCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IsalCodec")
            .field("k", &self.k)
            .field("m", &self.m)
            .finish_non_exhaustive()
    }
}

impl IsalCodec {
    /// A codec for k data + m parity shards (k ≥ 1, m ≥ 1, k + m ≤ 255).
    pub fn new(k: usize, m: usize) -> Result<Self, Error> {
        check_geometry(k, m)?;
        let (Some(nk), Some(nm)) = (NonZeroUsize::new(k), NonZeroUsize::new(m)) else {
            return Err(Error::Geometry {
                k,
                m,
                reason: "k and m must be at least 1",
            });
        };
        let inner = ErasureCode::with_cauchy(nk, nm).map_err(|e| Error::Isal(e.to_string()))?;
        Ok(Self { k, m, inner })
    }
}

impl ErasureCodec for IsalCodec {
    fn codec_id(&self) -> &'static str {
        CODEC_ID
    }

    fn data_shards(&self) -> usize {
        self.k
    }

    fn parity_shards(&self) -> usize {
        self.m
    }

    fn encode(&self, data: &[&[u8]], parity: &mut [&mut [u8]]) -> Result<(), Error> {
        check_encode(self.k, self.m, data, parity)?;
        self.inner
            .encode(data, parity)
            .map_err(|e| Error::Isal(e.to_string()))
    }

    fn reconstruct(&self, shards: &mut [Option<Vec<u8>>]) -> Result<(), Error> {
        let (len, missing) = check_reconstruct(self.k, self.m, shards)?;
        if missing.is_empty() {
            return Ok(());
        }
        // ISA-L decodes in place over all k + m buffers; lost ones get zeroed buffers.
        let mut data: Vec<Vec<u8>> = Vec::with_capacity(self.k);
        let mut code: Vec<Vec<u8>> = Vec::with_capacity(self.m);
        for (c, s) in shards.iter_mut().enumerate() {
            let buf = s.take().unwrap_or_else(|| vec![0u8; len]);
            if c < self.k {
                data.push(buf);
            } else {
                code.push(buf);
            }
        }
        let result = self.inner.decode(&mut data, &mut code, missing.clone());
        for (c, buf) in data.into_iter().chain(code).enumerate() {
            // On failure, hand back exactly what the caller gave us.
            if result.is_ok() || !missing.contains(&c) {
                shards[c] = Some(buf);
            }
        }
        result.map_err(|e| Error::Isal(e.to_string()))
    }
}
