//! Property: whatever bytes of the L2 file are damaged — while the cache is open or between
//! runs — every `get` returns the last bytes put for the key, or a miss. Never other bytes.

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::Path;

use bytes::Bytes;
use couchestor_cache::{Cache, CacheEntry, CacheKey, L2_DATA_FILE};
use prometheus_client::registry::Registry;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Damage {
    /// XOR one byte at a fraction of the file length.
    Flip { at: f64, mask: u8 },
    /// Zero a run of bytes (a torn or lost write).
    Zero { at: f64, len: usize },
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (0.0..1.0f64, 1u8..=255).prop_map(|(at, mask)| Damage::Flip { at, mask }),
        (0.0..1.0f64, 1usize..600).prop_map(|(at, len)| Damage::Zero { at, len }),
    ]
}

/// (key, Some(len, seed)) = put, (key, None) = remove.
fn ops() -> impl Strategy<Value = Vec<(u8, Option<(usize, u8)>)>> {
    prop::collection::vec(
        (
            0u8..10,
            prop::option::weighted(0.85, (0usize..2500, any::<u8>())),
        ),
        1..40,
    )
}

fn value(key: u8, len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(seed | 1) ^ key ^ (i >> 8) as u8)
        .collect::<Vec<u8>>()
        .into()
}

fn key(k: u8) -> CacheKey {
    CacheKey::new("rot", format!("{k}"))
}

async fn open(dir: &Path) -> Cache {
    Cache::builder()
        .l1_capacity(1) // every entry goes straight to L2
        .l2_dir(dir)
        .l2_capacity(64 << 10)
        .l2_region_size(16 << 10)
        .open(&mut Registry::default())
        .await
        .expect("open")
}

fn apply(path: &Path, damages: &[Damage]) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open data file");
    let len = f.metadata().expect("metadata").len();
    for d in damages {
        match *d {
            Damage::Flip { at, mask } => {
                let off = ((len as f64 * at) as u64).min(len - 1);
                let mut b = [0u8];
                f.read_exact_at(&mut b, off).expect("read");
                f.write_all_at(&[b[0] ^ mask], off).expect("write");
            }
            Damage::Zero { at, len: n } => {
                let off = ((len as f64 * at) as u64).min(len - 1);
                let n = n.min((len - off) as usize);
                f.write_all_at(&vec![0u8; n], off).expect("write");
            }
        }
    }
}

async fn check(cache: &Cache, model: &HashMap<u8, Bytes>, when: &str) -> Result<(), TestCaseError> {
    for k in 0..10u8 {
        if let Some(e) = cache.get(&key(k)).await.expect("get") {
            prop_assert_eq!(
                Some(e.data()),
                model.get(&k),
                "{}: key {} returned wrong bytes",
                when,
                k
            );
        }
    }
    Ok(())
}

fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        tempfile::tempdir_in(shm).expect("tempdir")
    } else {
        tempfile::tempdir().expect("tempdir")
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn damaged_l2_bytes_are_never_returned_while_open_or_after_reopen(
        ops in ops(),
        live_damage in prop::collection::vec(damage(), 1..6),
        cold_damage in prop::collection::vec(damage(), 1..6),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        rt.block_on(async {
            let dir = scratch();
            let data = dir.path().join(L2_DATA_FILE);
            let mut model = HashMap::new();
            let cache = open(dir.path()).await;
            for (k, op) in &ops {
                match op {
                    Some((len, seed)) => {
                        let v = value(*k, *len, *seed);
                        cache.put(key(*k), CacheEntry::new(v.clone())).await.expect("put");
                        model.insert(*k, v);
                    }
                    None => {
                        cache.remove(&key(*k)).await.expect("remove");
                        model.remove(k);
                    }
                }
            }
            apply(&data, &live_damage);
            check(&cache, &model, "while open").await?;
            drop(cache);
            apply(&data, &cold_damage);
            let cache = open(dir.path()).await;
            check(&cache, &model, "after reopen").await
        })?;
    }
}
