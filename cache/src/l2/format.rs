//! The on-disk format of the L2 data file. All integers are little-endian.
//!
//! ```text
//! file   = superblock (4096 B) , region * region_count
//! region = region header (64 B) , record* , (stale bytes of an older epoch)
//! record = record header (64 B) , bucket , key , payload , zero padding to 8 B
//! ```
//!
//! Superblock: magic `CSL2DATA` (8), version u32 = 1, reserved u32, region size u64, region count
//! u64, CRC-32C of bytes 0..32 at 32.
//!
//! Region header: magic `CSRG` (4), reserved u32, epoch u64, CRC-32C of bytes 0..16 at 16.
//! The epoch grows every time a region is (re)started; records carry their region's epoch, so a
//! record left over from a previous use of the region is never mistaken for a current one.
//!
//! Record header:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `CSRE` |
//! | 4 | 1 | kind: 1 value, 2 tombstone, 3 superseded value |
//! | 5 | 1 | codec: 0 raw, 1 LZ4 block |
//! | 6 | 2 | reserved (0) |
//! | 8 | 8 | epoch of the region it was written in |
//! | 16 | 8 | sequence number (global, grows with every record; the highest wins per key) |
//! | 24 | 2 | bucket length |
//! | 26 | 2 | key length |
//! | 28 | 4 | payload length (stored) |
//! | 32 | 8 | raw length (value length after decoding) |
//! | 40 | 8 | created, ms since the Unix epoch |
//! | 48 | 8 | access count |
//! | 56 | 4 | CRC-32C of the raw value |
//! | 60 | 4 | CRC-32C of header bytes 0..60, then bucket, then key |

use crate::compression::Codec;

pub(crate) const SUPERBLOCK_LEN: u64 = 4096;
pub(crate) const REGION_HEADER_LEN: u64 = 64;
pub(crate) const RECORD_HEADER_LEN: usize = 64;
const SUPER_MAGIC: &[u8; 8] = b"CSL2DATA";
const FORMAT_VERSION: u32 = 1;
const REGION_MAGIC: &[u8; 4] = b"CSRG";
const RECORD_MAGIC: &[u8; 4] = b"CSRE";

/// Geometry of the data file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub(crate) region_size: u64,
    pub(crate) region_count: u64,
}

impl Geometry {
    pub(crate) fn file_len(&self) -> u64 {
        SUPERBLOCK_LEN + self.region_size * self.region_count
    }

    pub(crate) fn region_start(&self, region: usize) -> u64 {
        SUPERBLOCK_LEN + self.region_size * region as u64
    }

    /// The largest record a region can hold.
    pub(crate) fn max_record_len(&self) -> u64 {
        self.region_size - REGION_HEADER_LEN
    }
}

pub(crate) fn encode_superblock(g: Geometry) -> [u8; SUPERBLOCK_LEN as usize] {
    let mut b = [0u8; SUPERBLOCK_LEN as usize];
    b[0..8].copy_from_slice(SUPER_MAGIC);
    b[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    b[16..24].copy_from_slice(&g.region_size.to_le_bytes());
    b[24..32].copy_from_slice(&g.region_count.to_le_bytes());
    let crc = crc32c::crc32c(&b[..32]);
    b[32..36].copy_from_slice(&crc.to_le_bytes());
    b
}

/// The geometry recorded in a superblock, if the superblock is intact and of our version.
pub(crate) fn decode_superblock(b: &[u8]) -> Option<Geometry> {
    if b.len() < 36 || &b[0..8] != SUPER_MAGIC || u32_at(b, 8) != FORMAT_VERSION {
        return None;
    }
    if crc32c::crc32c(&b[..32]) != u32_at(b, 32) {
        return None;
    }
    Some(Geometry {
        region_size: u64_at(b, 16),
        region_count: u64_at(b, 24),
    })
}

pub(crate) fn encode_region_header(epoch: u64) -> [u8; REGION_HEADER_LEN as usize] {
    let mut b = [0u8; REGION_HEADER_LEN as usize];
    b[0..4].copy_from_slice(REGION_MAGIC);
    b[8..16].copy_from_slice(&epoch.to_le_bytes());
    let crc = crc32c::crc32c(&b[..16]);
    b[16..20].copy_from_slice(&crc.to_le_bytes());
    b
}

/// The epoch in a region header, if it is intact.
pub(crate) fn decode_region_header(b: &[u8]) -> Option<u64> {
    if b.len() < 20 || &b[0..4] != REGION_MAGIC || crc32c::crc32c(&b[..16]) != u32_at(b, 16) {
        return None;
    }
    Some(u64_at(b, 8))
}

/// What a record says about its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Value = 1,
    Tombstone = 2,
    /// A value record rewritten in place when a newer record (or tombstone) of its key was
    /// written: still skippable by length, never a candidate.
    Superseded = 3,
}

/// A record header, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    pub(crate) kind: Kind,
    pub(crate) codec: Codec,
    pub(crate) epoch: u64,
    pub(crate) seq: u64,
    pub(crate) bucket_len: u16,
    pub(crate) key_len: u16,
    pub(crate) payload_len: u32,
    pub(crate) raw_len: u64,
    pub(crate) created_ms: u64,
    pub(crate) access_count: u64,
    pub(crate) data_crc: u32,
}

impl RecordHeader {
    /// Header, key and payload, padded to 8 bytes.
    pub(crate) fn record_len(&self) -> u64 {
        let len = RECORD_HEADER_LEN as u64
            + self.bucket_len as u64
            + self.key_len as u64
            + self.payload_len as u64;
        len.div_ceil(8) * 8
    }

    fn key_range(&self) -> std::ops::Range<usize> {
        RECORD_HEADER_LEN..RECORD_HEADER_LEN + self.bucket_len as usize + self.key_len as usize
    }

    pub(crate) fn payload_range(&self) -> std::ops::Range<usize> {
        let start = self.key_range().end;
        start..start + self.payload_len as usize
    }
}

/// Serialises a whole record (header, key, payload, padding) into one buffer, so that it is
/// written with a single `pwrite`.
pub(crate) fn encode_record(
    h: &RecordHeader,
    bucket: &[u8],
    key: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    debug_assert_eq!(bucket.len(), h.bucket_len as usize);
    debug_assert_eq!(key.len(), h.key_len as usize);
    debug_assert_eq!(payload.len(), h.payload_len as usize);
    let mut b = vec![0u8; h.record_len() as usize];
    b[0..4].copy_from_slice(RECORD_MAGIC);
    b[4] = h.kind as u8;
    b[5] = h.codec as u8;
    b[8..16].copy_from_slice(&h.epoch.to_le_bytes());
    b[16..24].copy_from_slice(&h.seq.to_le_bytes());
    b[24..26].copy_from_slice(&h.bucket_len.to_le_bytes());
    b[26..28].copy_from_slice(&h.key_len.to_le_bytes());
    b[28..32].copy_from_slice(&h.payload_len.to_le_bytes());
    b[32..40].copy_from_slice(&h.raw_len.to_le_bytes());
    b[40..48].copy_from_slice(&h.created_ms.to_le_bytes());
    b[48..56].copy_from_slice(&h.access_count.to_le_bytes());
    b[56..60].copy_from_slice(&h.data_crc.to_le_bytes());
    let k = RECORD_HEADER_LEN;
    b[k..k + bucket.len()].copy_from_slice(bucket);
    b[k + bucket.len()..k + bucket.len() + key.len()].copy_from_slice(key);
    let crc = header_crc(&b[..60], &b[h.key_range()]);
    b[60..64].copy_from_slice(&crc.to_le_bytes());
    let p = h.payload_range();
    b[p].copy_from_slice(payload);
    b
}

/// Given an intact record's header and key (`rec` starts at the record), returns the 64-byte
/// header rewritten as [`Kind::Superseded`] with its CRC recomputed.
pub(crate) fn superseded_header(rec: &[u8]) -> Option<[u8; RECORD_HEADER_LEN]> {
    let (h, _, _) = decode_record_header(rec)?;
    let mut out = [0u8; RECORD_HEADER_LEN];
    out.copy_from_slice(&rec[..RECORD_HEADER_LEN]);
    out[4] = Kind::Superseded as u8;
    let crc = header_crc(&out[..60], &rec[h.key_range()]);
    out[60..64].copy_from_slice(&crc.to_le_bytes());
    Some(out)
}

fn header_crc(fixed: &[u8], key: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(fixed), key)
}

/// Decodes the record header at the start of `b` (which extends at least to the end of the
/// region), checking magic, lengths against `b`, and the header CRC (which covers the key).
/// Returns the header and the bucket and key bytes.
pub(crate) fn decode_record_header(b: &[u8]) -> Option<(RecordHeader, &[u8], &[u8])> {
    if b.len() < RECORD_HEADER_LEN || &b[0..4] != RECORD_MAGIC {
        return None;
    }
    let kind = match b[4] {
        1 => Kind::Value,
        2 => Kind::Tombstone,
        3 => Kind::Superseded,
        _ => return None,
    };
    let h = RecordHeader {
        kind,
        codec: Codec::from_u8(b[5])?,
        epoch: u64_at(b, 8),
        seq: u64_at(b, 16),
        bucket_len: u16::from_le_bytes([b[24], b[25]]),
        key_len: u16::from_le_bytes([b[26], b[27]]),
        payload_len: u32_at(b, 28),
        raw_len: u64_at(b, 32),
        created_ms: u64_at(b, 40),
        access_count: u64_at(b, 48),
        data_crc: u32_at(b, 56),
    };
    if h.record_len() > b.len() as u64 {
        return None;
    }
    let key = &b[h.key_range()];
    if header_crc(&b[..60], key) != u32_at(b, 60) {
        return None;
    }
    let (bucket, name) = key.split_at(h.bucket_len as usize);
    Some((h, bucket, name))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(payload_len: u32) -> RecordHeader {
        RecordHeader {
            kind: Kind::Value,
            codec: Codec::Raw,
            epoch: 3,
            seq: 42,
            bucket_len: 2,
            key_len: 5,
            payload_len,
            raw_len: payload_len as u64,
            created_ms: 1_700_000_000_000,
            access_count: 9,
            data_crc: 0xdead_beef,
        }
    }

    #[test]
    fn a_record_decodes_to_the_header_key_and_payload_it_was_encoded_from() {
        let h = header(11);
        let rec = encode_record(&h, b"bk", b"hello", b"hello world");
        assert_eq!(rec.len() % 8, 0);
        let (d, bucket, key) = decode_record_header(&rec).expect("decodes");
        assert_eq!(d, h);
        assert_eq!((bucket, key), (&b"bk"[..], &b"hello"[..]));
        assert_eq!(&rec[d.payload_range()], b"hello world");
    }

    #[test]
    fn any_single_flipped_bit_in_header_or_key_is_rejected() {
        let h = header(4);
        let rec = encode_record(&h, b"bk", b"hello", b"data");
        for byte in 0..RECORD_HEADER_LEN + 7 {
            for bit in 0..8 {
                let mut bad = rec.clone();
                bad[byte] ^= 1 << bit;
                assert!(
                    decode_record_header(&bad).is_none(),
                    "byte {byte} bit {bit}"
                );
            }
        }
    }

    #[test]
    fn a_superseded_header_still_decodes_with_the_same_length_and_key() {
        let h = header(10);
        let mut rec = encode_record(&h, b"bk", b"hello", &[3u8; 10]);
        let new = superseded_header(&rec).expect("intact");
        rec[..RECORD_HEADER_LEN].copy_from_slice(&new);
        let (d, bucket, key) = decode_record_header(&rec).expect("decodes");
        assert_eq!(d.kind, Kind::Superseded);
        assert_eq!(d.record_len(), h.record_len());
        assert_eq!((bucket, key), (&b"bk"[..], &b"hello"[..]));
    }

    #[test]
    fn a_record_running_past_the_buffer_is_rejected() {
        let h = header(100);
        let rec = encode_record(&h, b"bk", b"hello", &[1u8; 100]);
        assert!(decode_record_header(&rec[..rec.len() - 8]).is_none());
    }

    #[test]
    fn superblock_and_region_header_round_trip_and_reject_damage() {
        let g = Geometry {
            region_size: 1 << 20,
            region_count: 7,
        };
        let sb = encode_superblock(g);
        assert_eq!(decode_superblock(&sb), Some(g));
        let mut bad = sb;
        bad[20] ^= 1;
        assert_eq!(decode_superblock(&bad), None);
        let rh = encode_region_header(99);
        assert_eq!(decode_region_header(&rh), Some(99));
        let mut bad = rh;
        bad[9] ^= 4;
        assert_eq!(decode_region_header(&bad), None);
    }
}
