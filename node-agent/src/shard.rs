//! The on-disk format of one shard: a 4 KiB header block followed by the payload, padded to
//! 4 KiB (see `docs/shard-format.md`). Every field a reader needs to trust the payload is in
//! the header, and the header carries its own checksum, so a torn, misdirected or stale
//! write is detected from the slot alone.

/// Size of the header block and the alignment of every slot (O_DIRECT needs 4 KiB here).
pub const BLOCK_BYTES: usize = 4096;
/// First bytes of every shard header.
pub const MAGIC: [u8; 8] = *b"CSSHARD\0";
/// Format version written by this code.
pub const FORMAT_VERSION: u16 = 1;
/// Bytes of the header covered by its checksum (the rest of the block is zero).
pub const HEADER_BYTES: usize = 256;
/// Longest volume id (also a directory name, so `[A-Za-z0-9._-]` only).
pub const MAX_VOLUME_ID_BYTES: usize = 128;
/// Longest codec id (as `EcLayout.codecId`).
pub const MAX_CODEC_ID_BYTES: usize = 63;

const CRC_OFFSET: usize = HEADER_BYTES - 4;

/// Why a header block is not a valid shard header.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("no shard header (block is all zeros)")]
    Empty,
    #[error("bad magic {found:02x?}")]
    BadMagic { found: [u8; 8] },
    #[error("unsupported shard format version {0}")]
    Version(u16),
    #[error("header checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    HeaderChecksum { stored: u32, computed: u32 },
    #[error("malformed header field {field}")]
    Field { field: &'static str },
    #[error("volume id {0:?} must be 1..=128 bytes of [A-Za-z0-9._-] and not start with '.'")]
    VolumeId(String),
    #[error("codec id {0:?} must be 1..=63 bytes")]
    CodecId(String),
}

/// Identity and integrity data of one shard, as stored in its header block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardHeader {
    pub volume_id: String,
    pub column: u32,
    pub stripe: u64,
    /// Incremented each time the same (volume, column, stripe) is written again, so a
    /// stale slot is told apart from the current one.
    pub generation: u64,
    pub codec_id: String,
    pub k: u16,
    pub m: u16,
    /// Payload bytes that follow the header (≤ `slot_payload_bytes`).
    pub payload_len: u32,
    /// crc32c (Castagnoli) of the `payload_len` payload bytes.
    pub payload_crc32c: u32,
    /// Payload capacity of every slot of this file, so a file can be scanned without the index.
    pub slot_payload_bytes: u32,
}

/// Checks a volume id: it names a directory, so it is restricted to a safe alphabet.
pub fn check_volume_id(id: &str) -> Result<(), Error> {
    let ok = !id.is_empty()
        && id.len() <= MAX_VOLUME_ID_BYTES
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::VolumeId(id.to_owned()))
    }
}

/// Checks a codec id fits its header field.
pub fn check_codec_id(id: &str) -> Result<(), Error> {
    if id.is_empty() || id.len() > MAX_CODEC_ID_BYTES {
        return Err(Error::CodecId(id.to_owned()));
    }
    Ok(())
}

/// Bytes a slot occupies on disk for a payload capacity: header block + payload rounded up
/// to whole 4 KiB blocks.
pub fn slot_bytes(slot_payload_bytes: u32) -> u64 {
    let payload = u64::from(slot_payload_bytes).div_ceil(BLOCK_BYTES as u64) * BLOCK_BYTES as u64;
    BLOCK_BYTES as u64 + payload
}

impl ShardHeader {
    /// Writes the header into the first [`HEADER_BYTES`] of `block` (which must be at least
    /// that long; the caller zeroes the rest of the 4 KiB block).
    pub fn encode_into(&self, block: &mut [u8]) -> Result<(), Error> {
        check_volume_id(&self.volume_id)?;
        check_codec_id(&self.codec_id)?;
        let h = &mut block[..HEADER_BYTES];
        h.fill(0);
        h[0..8].copy_from_slice(&MAGIC);
        h[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        h[10..12].copy_from_slice(&(HEADER_BYTES as u16).to_le_bytes());
        h[12..16].copy_from_slice(&self.column.to_le_bytes());
        h[16..24].copy_from_slice(&self.stripe.to_le_bytes());
        h[24..32].copy_from_slice(&self.generation.to_le_bytes());
        h[32..36].copy_from_slice(&self.payload_len.to_le_bytes());
        h[36..40].copy_from_slice(&self.payload_crc32c.to_le_bytes());
        h[40..42].copy_from_slice(&self.k.to_le_bytes());
        h[42..44].copy_from_slice(&self.m.to_le_bytes());
        h[44] = self.codec_id.len() as u8;
        h[45] = self.volume_id.len() as u8;
        h[48..48 + self.codec_id.len()].copy_from_slice(self.codec_id.as_bytes());
        h[112..112 + self.volume_id.len()].copy_from_slice(self.volume_id.as_bytes());
        h[240..244].copy_from_slice(&self.slot_payload_bytes.to_le_bytes());
        let crc = crc32c::crc32c(&h[..CRC_OFFSET]);
        h[CRC_OFFSET..HEADER_BYTES].copy_from_slice(&crc.to_le_bytes());
        Ok(())
    }

    /// Parses and verifies a header block (magic, version, header checksum, field ranges).
    pub fn decode(block: &[u8]) -> Result<Self, Error> {
        let h = block
            .get(..HEADER_BYTES)
            .ok_or(Error::Field { field: "length" })?;
        if h.iter().all(|&b| b == 0) {
            return Err(Error::Empty);
        }
        let magic: [u8; 8] = field(h, 0)?;
        if magic != MAGIC {
            return Err(Error::BadMagic { found: magic });
        }
        // Checksum before anything else is trusted: a torn header must not be half-parsed.
        let stored = u32::from_le_bytes(field(h, CRC_OFFSET)?);
        let computed = crc32c::crc32c(&h[..CRC_OFFSET]);
        if stored != computed {
            return Err(Error::HeaderChecksum { stored, computed });
        }
        let version = u16::from_le_bytes(field(h, 8)?);
        if version != FORMAT_VERSION {
            return Err(Error::Version(version));
        }
        let codec_len = usize::from(h[44]);
        let volume_len = usize::from(h[45]);
        if codec_len > MAX_CODEC_ID_BYTES {
            return Err(Error::Field {
                field: "codec_id_len",
            });
        }
        if volume_len > MAX_VOLUME_ID_BYTES {
            return Err(Error::Field {
                field: "volume_id_len",
            });
        }
        let codec_id = std::str::from_utf8(&h[48..48 + codec_len])
            .map_err(|_| Error::Field { field: "codec_id" })?
            .to_owned();
        let volume_id = std::str::from_utf8(&h[112..112 + volume_len])
            .map_err(|_| Error::Field { field: "volume_id" })?
            .to_owned();
        check_volume_id(&volume_id)?;
        check_codec_id(&codec_id)?;
        let header = Self {
            volume_id,
            column: u32::from_le_bytes(field(h, 12)?),
            stripe: u64::from_le_bytes(field(h, 16)?),
            generation: u64::from_le_bytes(field(h, 24)?),
            payload_len: u32::from_le_bytes(field(h, 32)?),
            payload_crc32c: u32::from_le_bytes(field(h, 36)?),
            k: u16::from_le_bytes(field(h, 40)?),
            m: u16::from_le_bytes(field(h, 42)?),
            codec_id,
            slot_payload_bytes: u32::from_le_bytes(field(h, 240)?),
        };
        if header.payload_len > header.slot_payload_bytes {
            return Err(Error::Field {
                field: "payload_len",
            });
        }
        Ok(header)
    }
}

fn field<const N: usize>(h: &[u8], at: usize) -> Result<[u8; N], Error> {
    h.get(at..at + N)
        .and_then(|s| s.try_into().ok())
        .ok_or(Error::Field { field: "offset" })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> ShardHeader {
        ShardHeader {
            volume_id: "pvc-0f1e2d3c".into(),
            column: 5,
            stripe: 1 << 40,
            generation: 3,
            codec_id: "rs-gf8-cauchy-v1".into(),
            k: 4,
            m: 2,
            payload_len: 65536,
            payload_crc32c: 0xdead_beef,
            slot_payload_bytes: 65536,
        }
    }

    #[test]
    fn a_header_round_trips_through_its_block() {
        let mut block = vec![0u8; BLOCK_BYTES];
        header().encode_into(&mut block).expect("valid header");
        assert_eq!(ShardHeader::decode(&block), Ok(header()));
    }

    #[test]
    fn flipping_any_header_byte_is_detected() {
        let mut block = vec![0u8; BLOCK_BYTES];
        header().encode_into(&mut block).expect("valid header");
        for i in 0..HEADER_BYTES {
            let mut bad = block.clone();
            bad[i] ^= 0x01;
            assert!(
                ShardHeader::decode(&bad).is_err(),
                "flip at byte {i} went unnoticed"
            );
        }
    }

    #[test]
    fn a_zeroed_block_is_reported_as_empty() {
        assert_eq!(ShardHeader::decode(&[0u8; BLOCK_BYTES]), Err(Error::Empty));
    }

    #[test]
    fn volume_ids_that_could_escape_the_store_directory_are_rejected() {
        for id in ["", "..", "../x", "a/b", ".hidden", &"x".repeat(129)] {
            assert!(check_volume_id(id).is_err(), "{id:?} accepted");
        }
        assert!(check_volume_id("pvc-1234_abc.v2").is_ok());
    }

    #[test]
    fn slots_are_a_header_block_plus_the_payload_rounded_up_to_4_kib() {
        assert_eq!(slot_bytes(4096), 8192);
        assert_eq!(slot_bytes(4160), 4096 + 8192);
        assert_eq!(slot_bytes(262_144), 4096 + 262_144);
    }
}
