//! The pure-Rust codec: ISA-L's Cauchy matrix with table-driven GF(2^8) arithmetic.

use super::gf::{self, MUL_TABLE};
use super::{CODEC_ID, ErasureCodec, Error, check_encode, check_geometry, check_reconstruct};

/// Output is produced in blocks of this many bytes so the destination block stays in L1
/// while every source streams through it once (a multiple of the 64-byte alignment).
const BLOCK_BYTES: usize = 4096;

/// Reed-Solomon (Cauchy, GF(2^8)/0x11d) in safe Rust; parity byte-identical to [`super::IsalCodec`].
#[derive(Debug, Clone)]
pub struct PureRustCodec {
    k: usize,
    m: usize,
    /// (k + m) × k, row-major; rows `0..k` are the identity.
    matrix: Vec<u8>,
}

impl PureRustCodec {
    /// A codec for k data + m parity shards (k ≥ 1, m ≥ 1, k + m ≤ 255).
    pub fn new(k: usize, m: usize) -> Result<Self, Error> {
        check_geometry(k, m)?;
        Ok(Self {
            k,
            m,
            matrix: gf::cauchy_matrix(k, m),
        })
    }

    fn row(&self, r: usize) -> &[u8] {
        &self.matrix[r * self.k..(r + 1) * self.k]
    }
}

/// `dest = Σ coeffs[i] · sources[i]` over GF(2^8), byte by byte.
fn dot_product(coeffs: &[u8], sources: &[&[u8]], dest: &mut [u8]) {
    let len = dest.len();
    let mut start = 0;
    while start < len {
        let end = (start + BLOCK_BYTES).min(len);
        let out = &mut dest[start..end];
        let mut first = true;
        for (&c, src) in coeffs.iter().zip(sources) {
            let table = &MUL_TABLE[usize::from(c)];
            let src = &src[start..end];
            if first {
                for (o, &x) in out.iter_mut().zip(src) {
                    *o = table[usize::from(x)];
                }
                first = false;
            } else {
                for (o, &x) in out.iter_mut().zip(src) {
                    *o ^= table[usize::from(x)];
                }
            }
        }
        start = end;
    }
}

impl ErasureCodec for PureRustCodec {
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
        for (p, out) in parity.iter_mut().enumerate() {
            dot_product(self.row(self.k + p), data, out);
        }
        Ok(())
    }

    fn reconstruct(&self, shards: &mut [Option<Vec<u8>>]) -> Result<(), Error> {
        let (len, missing) = check_reconstruct(self.k, self.m, shards)?;
        if missing.is_empty() {
            return Ok(());
        }
        let k = self.k;
        // Decode from the first k surviving columns: their rows of the encoding matrix
        // form an invertible k × k matrix whose inverse maps them back to the data.
        let survivors: Vec<usize> = (0..shards.len())
            .filter(|&c| shards[c].is_some())
            .take(k)
            .collect();
        let missing_data: Vec<usize> = missing.iter().copied().filter(|&c| c < k).collect();
        if !missing_data.is_empty() {
            let sub: Vec<u8> = survivors
                .iter()
                .flat_map(|&r| self.row(r).to_vec())
                .collect();
            let inverse = gf::invert(sub, k).ok_or_else(|| Error::Singular {
                columns: survivors.clone(),
            })?;
            let sources: Vec<&[u8]> = survivors
                .iter()
                .filter_map(|&c| shards[c].as_deref())
                .collect();
            let rebuilt: Vec<(usize, Vec<u8>)> = missing_data
                .iter()
                .map(|&c| {
                    let mut out = vec![0u8; len];
                    dot_product(&inverse[c * k..(c + 1) * k], &sources, &mut out);
                    (c, out)
                })
                .collect();
            for (c, out) in rebuilt {
                shards[c] = Some(out);
            }
        }
        // Every data shard is present now; lost parity is simply encoded again.
        let rebuilt: Vec<(usize, Vec<u8>)> = {
            let data: Vec<&[u8]> = shards[..k].iter().filter_map(|s| s.as_deref()).collect();
            missing
                .iter()
                .filter(|&&c| c >= k)
                .map(|&c| {
                    let mut out = vec![0u8; len];
                    dot_product(self.row(c), &data, &mut out);
                    (c, out)
                })
                .collect()
        };
        for (c, out) in rebuilt {
            shards[c] = Some(out);
        }
        Ok(())
    }
}
