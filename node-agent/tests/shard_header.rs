//! The shard header parser on arbitrary bytes: never a panic, and nothing but a header that
//! was really encoded (and whose checksum matches) is accepted.

use couchestor_node_agent::shard::{BLOCK_BYTES, HEADER_BYTES, ShardHeader};
use proptest::prelude::*;

fn header(volume: String, column: u32, stripe: u64, payload_len: u32) -> ShardHeader {
    ShardHeader {
        volume_id: volume,
        column,
        stripe,
        generation: 1,
        codec_id: "rs-gf8-cauchy-v1".into(),
        k: 4,
        m: 2,
        payload_len,
        payload_crc32c: 0x1234_5678,
        slot_payload_bytes: payload_len.max(1),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_blocks_never_panic_the_parser(bytes in proptest::collection::vec(any::<u8>(), 0..BLOCK_BYTES + 64)) {
        let _ = ShardHeader::decode(&bytes);
    }

    #[test]
    fn a_valid_header_with_random_bytes_written_over_part_of_it_is_rejected(
        volume in "[a-z0-9][a-z0-9-]{0,40}",
        column in 0u32..6,
        stripe in any::<u64>(),
        payload_len in 1u32..(1 << 20),
        at in 0usize..256,
        noise in proptest::collection::vec(any::<u8>(), 1..32),
    ) {
        let h = header(volume, column, stripe, payload_len);
        let mut block = vec![0u8; BLOCK_BYTES];
        prop_assume!(h.encode_into(&mut block).is_ok());
        prop_assert_eq!(ShardHeader::decode(&block), Ok(h.clone()));
        // Only the checksummed header bytes; the rest of the block is padding.
        let end = (at + noise.len()).min(HEADER_BYTES);
        let before = block[at..end].to_vec();
        block[at..end].copy_from_slice(&noise[..end - at]);
        if block[at..end] != before[..] {
            match ShardHeader::decode(&block) {
                Err(_) => {}
                Ok(decoded) => prop_assert!(false, "damaged header accepted: {decoded:?}"),
            }
        }
    }
}
