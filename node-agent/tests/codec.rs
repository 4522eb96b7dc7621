//! Property tests of the erasure codecs: round trips through losses, the > m failure, and
//! byte-identical parity between ISA-L and the pure-Rust implementation.

use couchestor_node_agent::codec::{ErasureCodec, Error, PureRustCodec};
use proptest::prelude::*;

/// k (1..=12), m (1..=4), a shard length (64..=1024, multiple of 64) and the data.
fn stripe() -> impl Strategy<Value = (usize, usize, Vec<Vec<u8>>)> {
    (1usize..=12, 1usize..=4, 1usize..=16).prop_flat_map(|(k, m, blocks)| {
        let shard = proptest::collection::vec(any::<u8>(), blocks * 64);
        (Just(k), Just(m), proptest::collection::vec(shard, k))
    })
}

fn codecs(k: usize, m: usize) -> Vec<Box<dyn ErasureCodec>> {
    #[cfg_attr(not(feature = "isal"), allow(unused_mut))]
    let mut v: Vec<Box<dyn ErasureCodec>> =
        vec![Box::new(PureRustCodec::new(k, m).expect("valid geometry"))];
    #[cfg(feature = "isal")]
    v.push(Box::new(
        couchestor_node_agent::codec::IsalCodec::new(k, m).expect("valid geometry"),
    ));
    v
}

fn encode_all(codec: &dyn ErasureCodec, data: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let len = data[0].len();
    let mut parity = vec![vec![0u8; len]; codec.parity_shards()];
    let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
    let mut outs: Vec<&mut [u8]> = parity.iter_mut().map(Vec::as_mut_slice).collect();
    codec.encode(&refs, &mut outs).expect("encode");
    data.iter().cloned().chain(parity).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn dropping_at_most_m_shards_reconstructs_the_original_bytes(
        (k, m, data) in stripe(),
        drop_seed in any::<u64>(),
        drop_count_seed in any::<usize>(),
    ) {
        for codec in codecs(k, m) {
            let full = encode_all(codec.as_ref(), &data);
            let n = k + m;
            let drop = drop_count_seed % (m + 1);
            let lost = pick_distinct(n, drop, drop_seed);
            let mut shards: Vec<Option<Vec<u8>>> = full.iter().cloned().map(Some).collect();
            for &c in &lost {
                shards[c] = None;
            }
            codec.reconstruct(&mut shards).expect("≤ m lost shards are recoverable");
            let got: Vec<Vec<u8>> = shards.into_iter().map(|s| s.expect("filled in")).collect();
            prop_assert_eq!(&got, &full, "{:?} lost {:?}", codec, lost);
        }
    }

    #[test]
    fn dropping_more_than_m_shards_is_an_error_and_leaves_the_shards_untouched(
        (k, m, data) in stripe(),
        drop_seed in any::<u64>(),
        extra in 1usize..=4,
    ) {
        for codec in codecs(k, m) {
            let full = encode_all(codec.as_ref(), &data);
            let n = k + m;
            let lost = pick_distinct(n, (m + extra).min(n), drop_seed);
            let mut shards: Vec<Option<Vec<u8>>> = full.iter().cloned().map(Some).collect();
            for &c in &lost {
                shards[c] = None;
            }
            let before = shards.clone();
            let err = codec.reconstruct(&mut shards).expect_err("more than m lost");
            prop_assert_eq!(err, Error::TooFewShards { present: n - lost.len(), total: n, needed: k });
            prop_assert_eq!(shards, before);
        }
    }
}

#[cfg(feature = "isal")]
proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn isal_and_pure_rust_produce_byte_identical_parity((k, m, data) in stripe()) {
        let pure = PureRustCodec::new(k, m).expect("valid geometry");
        let isal = couchestor_node_agent::codec::IsalCodec::new(k, m).expect("valid geometry");
        prop_assert_eq!(encode_all(&pure, &data), encode_all(&isal, &data));
    }
}

/// Large geometries (beyond the proptest range) agree too, including the 255-shard maximum.
#[cfg(feature = "isal")]
#[test]
fn isal_and_pure_rust_agree_for_wide_stripes_up_to_255_shards() {
    for (k, m) in [(10, 4), (17, 3), (32, 8), (200, 55)] {
        let data: Vec<Vec<u8>> = (0..k)
            .map(|c| (0..128).map(|i| (c * 131 + i * 7 + 1) as u8).collect())
            .collect();
        let pure = PureRustCodec::new(k, m).expect("valid geometry");
        let isal = couchestor_node_agent::codec::IsalCodec::new(k, m).expect("valid geometry");
        let full = encode_all(&pure, &data);
        assert_eq!(full, encode_all(&isal, &data), "k={k} m={m}");
        // Lose the first m columns (all data): both decode from the rest.
        for codec in [&pure as &dyn ErasureCodec, &isal] {
            let mut shards: Vec<Option<Vec<u8>>> = full.iter().cloned().map(Some).collect();
            for s in shards.iter_mut().take(m) {
                *s = None;
            }
            codec.reconstruct(&mut shards).expect("m lost");
            assert!(shards.iter().zip(&full).all(|(s, f)| s.as_ref() == Some(f)));
        }
    }
}

/// `count` distinct column indices below `n`, chosen from `seed` (a partial Fisher–Yates).
fn pick_distinct(n: usize, count: usize, mut seed: u64) -> Vec<usize> {
    let mut cols: Vec<usize> = (0..n).collect();
    for i in 0..count {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let j = i + (seed >> 33) as usize % (n - i);
        cols.swap(i, j);
    }
    cols.truncate(count);
    cols
}
