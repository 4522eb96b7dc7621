//! Model-based property test: random sequences of put / get / remove / contains / reopen against
//! a `HashMap` model. Every `get` must return exactly the bytes last put, or (without an L3) a
//! miss — never other bytes. With an L3 every key put and not removed must hit, across reopens.
//!
//! Tiers are tiny (L1 of a few KiB, L2 of four 4 KiB regions) so sequences constantly evict,
//! demote, wrap the L2 file and promote.

use std::collections::HashMap;
use std::path::Path;

use bytes::Bytes;
use couchestor_cache::{Cache, CacheEntry, CacheKey, Compression, DirectoryStore, Durability};
use prometheus_client::registry::Registry;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Put {
        key: u8,
        len: usize,
        seed: u8,
        random: bool,
    },
    Get(u8),
    Remove(u8),
    Contains(u8),
    Reopen,
}

#[derive(Clone, Debug)]
struct Setup {
    with_l3: bool,
    l1_capacity: u64,
    l1_compression: bool,
    l2_compression: bool,
    buffered: bool,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0u8..8, 0usize..3000, any::<u8>(), any::<bool>())
            .prop_map(|(key, len, seed, random)| Op::Put { key, len, seed, random }),
        5 => (0u8..8).prop_map(Op::Get),
        1 => (0u8..8).prop_map(Op::Remove),
        1 => (0u8..8).prop_map(Op::Contains),
        1 => Just(Op::Reopen),
    ]
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        any::<bool>(),
        512u64..8192,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(with_l3, l1_capacity, l1_compression, l2_compression, buffered)| Setup {
                with_l3,
                l1_capacity,
                l1_compression,
                l2_compression,
                buffered,
            },
        )
}

/// Bytes that differ by key, seed and length; `random` ones defeat LZ4, the others compress.
fn value(key: u8, len: usize, seed: u8, random: bool) -> Bytes {
    let mut x = (u64::from(key) << 40 | u64::from(seed) << 16 | len as u64) | 1;
    (0..len)
        .map(|i| {
            if random {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            } else {
                (i / 7) as u8 ^ seed ^ key
            }
        })
        .collect::<Vec<u8>>()
        .into()
}

fn key(k: u8) -> CacheKey {
    CacheKey::new(format!("bucket-{}", k % 2), format!("object/{k}"))
}

async fn open(dir: &Path, s: &Setup) -> Cache {
    let compression = |on| {
        if on {
            Compression::Lz4
        } else {
            Compression::None
        }
    };
    let builder = Cache::builder()
        .l1_capacity(s.l1_capacity)
        .l1_compression(compression(s.l1_compression))
        .l2_dir(dir.join("l2"))
        .l2_capacity(16 << 10)
        .l2_region_size(4 << 10)
        .l2_compression(compression(s.l2_compression))
        .l2_durability(if s.buffered {
            Durability::Buffered
        } else {
            Durability::Sync
        });
    let builder = if s.with_l3 {
        builder.backend(DirectoryStore::new(dir.join("l3")))
    } else {
        // Same type as with an L3, but none configured.
        builder
    };
    builder
        .open(&mut Registry::default())
        .await
        .expect("open cache")
}

fn scratch_dir() -> tempfile::TempDir {
    // tmpfs keeps fsync cheap, so 10,000 sequences fit in CI time; the code path is the same.
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).expect("tempdir")
    } else {
        tempfile::tempdir().expect("tempdir")
    }
}

fn run(s: &Setup, ops: &[Op]) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = scratch_dir();
        let mut cache = open(dir.path(), s).await;
        let mut model: HashMap<u8, Bytes> = HashMap::new();
        for (step, op) in ops.iter().enumerate() {
            match *op {
                Op::Put {
                    key: k,
                    len,
                    seed,
                    random,
                } => {
                    let v = value(k, len, seed, random);
                    cache
                        .put(key(k), CacheEntry::new(v.clone()))
                        .await
                        .expect("put");
                    model.insert(k, v);
                }
                Op::Get(k) => {
                    let got = cache.get(&key(k)).await.expect("get");
                    match (model.get(&k), got) {
                        (_, Some(e)) => {
                            let expected = model.get(&k);
                            prop_assert_eq!(
                                Some(e.data()),
                                expected,
                                "step {}: get({}) returned bytes that were not the last put",
                                step,
                                k
                            );
                            prop_assert!(e.verify());
                            prop_assert_eq!(e.meta().size, e.data().len() as u64);
                        }
                        (Some(_), None) => prop_assert!(
                            !s.with_l3,
                            "step {}: get({}) missed although L3 holds it",
                            step,
                            k
                        ),
                        (None, None) => {}
                    }
                }
                Op::Remove(k) => {
                    cache.remove(&key(k)).await.expect("remove");
                    model.remove(&k);
                }
                Op::Contains(k) => {
                    let c = cache.contains(&key(k)).await.expect("contains");
                    if !model.contains_key(&k) {
                        prop_assert!(!c, "step {}: contains({}) for an absent key", step, k);
                    } else if s.with_l3 {
                        prop_assert!(c, "step {}: contains({}) false with L3", step, k);
                    }
                }
                Op::Reopen => {
                    drop(cache);
                    cache = open(dir.path(), s).await;
                }
            }
        }
        // Final sweep: every key, after one more reopen.
        drop(cache);
        let cache = open(dir.path(), s).await;
        for k in 0..8u8 {
            let got = cache.get(&key(k)).await.expect("get");
            match (model.get(&k), got) {
                (expected, Some(e)) => {
                    prop_assert_eq!(Some(e.data()), expected, "final get({})", k)
                }
                (Some(_), None) => prop_assert!(!s.with_l3, "final get({}) missed with L3", k),
                (None, None) => {}
            }
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn every_get_returns_the_last_put_bytes_or_a_miss_across_evictions_and_reopens(
        s in setup(),
        ops in prop::collection::vec(op(), 1..24),
    ) {
        run(&s, &ops)?;
    }
}

/// One writer's sequential ops on its own keys; returns its final model.
async fn writer(
    cache: Cache,
    with_l3: bool,
    offset: u8,
    ops: Vec<Op>,
) -> Result<HashMap<u8, Bytes>, TestCaseError> {
    let mut model: HashMap<u8, Bytes> = HashMap::new();
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Put {
                key: k,
                len,
                seed,
                random,
            } => {
                let k = k + offset;
                let v = value(k, len, seed, random);
                cache
                    .put(key(k), CacheEntry::new(v.clone()))
                    .await
                    .expect("put");
                model.insert(k, v);
            }
            Op::Get(k) => {
                let k = k + offset;
                match (model.get(&k), cache.get(&key(k)).await.expect("get")) {
                    (expected, Some(e)) => prop_assert_eq!(
                        Some(e.data()),
                        expected,
                        "writer {} step {}: key {} returned other bytes",
                        offset,
                        step,
                        k
                    ),
                    (Some(_), None) => prop_assert!(!with_l3, "key {} missed with L3", k),
                    (None, None) => {}
                }
            }
            Op::Remove(k) => {
                let k = k + offset;
                cache.remove(&key(k)).await.expect("remove");
                model.remove(&k);
            }
            // A reopen needs every writer stopped; contains adds nothing to the race.
            Op::Contains(_) | Op::Reopen => {}
        }
    }
    Ok(model)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Two writers on two worker threads, each on its own keys (so each key's model is exact),
    /// share the tiny tiers: one writer's inserts evict and demote the other's entries while it
    /// is overwriting and removing them. No get may return stale bytes, then or after a reopen.
    #[test]
    fn concurrent_writers_on_disjoint_keys_never_see_stale_bytes(
        s in setup(),
        a in prop::collection::vec(op(), 1..40),
        b in prop::collection::vec(op(), 1..40),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let dir = scratch_dir();
            let cache = open(dir.path(), &s).await;
            let ta = tokio::spawn(writer(cache.clone(), s.with_l3, 0, a));
            let tb = tokio::spawn(writer(cache.clone(), s.with_l3, 8, b));
            let mut model = ta.await.expect("writer a")?;
            model.extend(tb.await.expect("writer b")?);
            drop(cache);
            let cache = open(dir.path(), &s).await;
            for k in 0..16u8 {
                match (model.get(&k), cache.get(&key(k)).await.expect("get")) {
                    (expected, Some(e)) => {
                        prop_assert_eq!(Some(e.data()), expected, "after reopen: key {}", k)
                    }
                    (Some(_), None) => prop_assert!(!s.with_l3, "key {} missed with L3", k),
                    (None, None) => {}
                }
            }
            Ok(())
        })?;
    }
}
