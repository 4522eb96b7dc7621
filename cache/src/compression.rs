//! LZ4 compression with a ratio guard: data that does not shrink enough is stored raw.

use bytes::Bytes;

/// Which compression a tier applies to the values it stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Compression {
    /// Store values as given.
    None,
    /// LZ4 block compression (`lz4_flex`), kept only when it pays (see [`Compressor`]).
    #[default]
    Lz4,
}

/// How a stored payload is encoded. The numeric value is written to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Codec {
    /// The payload is the value itself.
    Raw = 0,
    /// The payload is one LZ4 block; the raw length is stored beside it.
    Lz4 = 1,
}

impl Codec {
    pub(crate) fn from_u8(value: u8) -> Option<Self> {
        match value {
            0 => Some(Self::Raw),
            1 => Some(Self::Lz4),
            _ => None,
        }
    }
}

/// A value as a tier stores it.
#[derive(Clone, Debug)]
pub struct Encoded {
    /// How `payload` is encoded.
    pub codec: Codec,
    /// The stored bytes.
    pub payload: Bytes,
}

/// Compresses values for one tier and undoes it.
///
/// The ratio guard keeps LZ4 output only when it is at most `max_ratio` of the input (default
/// 0.875, i.e. it saves at least one eighth) and the input is at least `min_len` bytes (default
/// 64): below that the 2–3 bytes of LZ4 framing and the decode call cost more than they save.
/// Incompressible data (random, already compressed) is therefore stored raw and costs one failed
/// compression attempt on write and nothing on read.
#[derive(Clone, Copy, Debug)]
pub struct Compressor {
    compression: Compression,
    max_ratio: f64,
    min_len: usize,
}

impl Default for Compressor {
    fn default() -> Self {
        Self::new(Compression::Lz4)
    }
}

/// The seed API's name for [`Compressor`].
pub type CompressionManager = Compressor;

impl Compressor {
    /// A compressor with the default guard (`max_ratio` 0.875, `min_len` 64).
    pub fn new(compression: Compression) -> Self {
        Self {
            compression,
            max_ratio: 0.875,
            min_len: 64,
        }
    }

    /// Keep compressed output only if `compressed / raw <= max_ratio` (clamped to 0.0..=1.0).
    pub fn with_max_ratio(mut self, max_ratio: f64) -> Self {
        self.max_ratio = max_ratio.clamp(0.0, 1.0);
        self
    }

    /// Do not try to compress values shorter than `min_len` bytes.
    pub fn with_min_len(mut self, min_len: usize) -> Self {
        self.min_len = min_len;
        self
    }

    /// The configured compression.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Encodes `data` for storage. Never fails: the fallback is [`Codec::Raw`].
    pub fn encode(&self, data: &Bytes) -> Encoded {
        if self.compression == Compression::Lz4 && data.len() >= self.min_len {
            let compressed = lz4_flex::block::compress(data);
            // Ratio guard; the comparison is done in f64 to avoid overflow on huge values.
            if (compressed.len() as f64) <= (data.len() as f64) * self.max_ratio {
                return Encoded {
                    codec: Codec::Lz4,
                    payload: Bytes::from(compressed),
                };
            }
        }
        Encoded {
            codec: Codec::Raw,
            payload: data.clone(),
        }
    }

    /// Decodes a stored payload whose raw length is `raw_len`.
    ///
    /// Returns `None` if the payload does not decode to exactly `raw_len` bytes; callers treat that
    /// like a checksum mismatch.
    pub fn decode(codec: Codec, payload: &[u8], raw_len: usize) -> Option<Bytes> {
        match codec {
            Codec::Raw => (payload.len() == raw_len).then(|| Bytes::copy_from_slice(payload)),
            Codec::Lz4 => Self::decode_lz4(payload, raw_len).map(Bytes::from),
        }
    }

    /// Like [`Compressor::decode`] for a payload already held in `Bytes` (no copy when raw).
    pub fn decode_bytes(codec: Codec, payload: &Bytes, raw_len: usize) -> Option<Bytes> {
        match codec {
            Codec::Raw => (payload.len() == raw_len).then(|| payload.clone()),
            Codec::Lz4 => Self::decode_lz4(payload, raw_len).map(Bytes::from),
        }
    }

    fn decode_lz4(payload: &[u8], raw_len: usize) -> Option<Vec<u8>> {
        let mut out = vec![0u8; raw_len];
        match lz4_flex::block::decompress_into(payload, &mut out) {
            Ok(n) if n == raw_len => Some(out),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(len: usize, mut state: u64) -> Bytes {
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            // xorshift64*: incompressible enough for LZ4.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        out.truncate(len);
        Bytes::from(out)
    }

    #[test]
    fn compressible_data_is_stored_as_lz4_and_round_trips() {
        let data = Bytes::from("couchestor ".repeat(1000));
        let enc = Compressor::default().encode(&data);
        assert_eq!(enc.codec, Codec::Lz4);
        assert!(enc.payload.len() < data.len() / 4);
        let back = Compressor::decode(enc.codec, &enc.payload, data.len()).expect("decodes");
        assert_eq!(back, data);
    }

    #[test]
    fn incompressible_data_is_stored_raw_and_round_trips() {
        let data = pseudo_random(64 * 1024, 0x1234_5678);
        let enc = Compressor::default().encode(&data);
        assert_eq!(enc.codec, Codec::Raw);
        assert_eq!(enc.payload, data);
        assert_eq!(
            Compressor::decode(enc.codec, &enc.payload, data.len()).expect("decodes"),
            data
        );
    }

    #[test]
    fn mixed_data_round_trips_whatever_codec_the_guard_picks() {
        for seed in 1..50u64 {
            let mut mixed = Vec::new();
            mixed.extend_from_slice(&pseudo_random((seed as usize * 997) % 5000, seed));
            mixed.extend(std::iter::repeat_n(b'z', (seed as usize * 131) % 7000));
            mixed.extend_from_slice(&pseudo_random(seed as usize * 31, seed + 7));
            let data = Bytes::from(mixed);
            let enc = Compressor::default().encode(&data);
            let back = Compressor::decode(enc.codec, &enc.payload, data.len()).expect("decodes");
            assert_eq!(back, data, "seed {seed} codec {:?}", enc.codec);
        }
    }

    #[test]
    fn a_truncated_lz4_payload_or_wrong_length_decodes_to_nothing() {
        let data = Bytes::from("abcabcabc".repeat(100));
        let enc = Compressor::default().encode(&data);
        assert_eq!(enc.codec, Codec::Lz4);
        assert!(
            Compressor::decode(
                Codec::Lz4,
                &enc.payload[..enc.payload.len() / 2],
                data.len()
            )
            .is_none()
        );
        assert!(Compressor::decode(Codec::Lz4, &enc.payload, data.len() + 1).is_none());
        assert!(Compressor::decode(Codec::Raw, &data, data.len() - 1).is_none());
    }

    #[test]
    fn compression_none_never_compresses() {
        let data = Bytes::from("a".repeat(4096));
        assert_eq!(
            Compressor::new(Compression::None).encode(&data).codec,
            Codec::Raw
        );
    }
}
