//! Component tests of the tier behaviour on real temp directories: promotion, demotion,
//! write-through, removal from every tier, restart, corruption and metrics.

use std::os::unix::fs::FileExt;
use std::path::Path;

use bytes::Bytes;
use couchestor_cache::{Backend, Cache, CacheEntry, CacheKey, DirectoryStore, Error, L2_DATA_FILE};
use prometheus_client::registry::Registry;

fn metric(registry: &Registry, name: &str, tier: &str) -> u64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("encode");
    let prefix = format!("couchestor_cache_{name}{{tier=\"{tier}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.trim().parse().expect("number"))
}

fn bytes(seed: u8, len: usize) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(seed) ^ (i >> 9) as u8)
        .collect::<Vec<u8>>()
        .into()
}

async fn three_tier(dir: &Path, l1: u64, registry: &mut Registry) -> Cache {
    Cache::builder()
        .l1_capacity(l1)
        .l2_dir(dir.join("l2"))
        .l2_capacity(4 << 20)
        .l2_region_size(256 << 10)
        .backend(DirectoryStore::new(dir.join("l3")))
        .open(registry)
        .await
        .expect("open")
}

#[tokio::test]
async fn a_put_is_read_back_from_l1_with_its_metadata() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut reg = Registry::default();
    let cache = three_tier(dir.path(), 1 << 20, &mut reg).await;
    let k = CacheKey::new("b", "k");
    let entry = CacheEntry::new(bytes(3, 10_000));
    cache.put(k.clone(), entry.clone()).await.expect("put");
    let got = cache.get(&k).await.expect("get").expect("hit");
    assert_eq!(got.data(), entry.data());
    assert_eq!(got.meta().checksum, entry.meta().checksum);
    assert_eq!(got.meta().created, entry.meta().created);
    assert_eq!(got.meta().access_count, 1);
    assert_eq!(metric(&reg, "hits_total", "l1"), 1);
    assert_eq!(metric(&reg, "hits_total", "l2"), 0);
}

#[tokio::test]
async fn entries_evicted_from_l1_are_demoted_to_l2_and_promoted_back_on_a_hit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut reg = Registry::default();
    // ~16 KiB of L1 for 40 entries of 4 KiB: most are evicted.
    let cache = three_tier(dir.path(), 16 << 10, &mut reg).await;
    for i in 0..40u8 {
        cache
            .put(
                CacheKey::new("b", format!("{i}")),
                CacheEntry::new(bytes(i, 4096)),
            )
            .await
            .expect("put");
    }
    assert!(metric(&reg, "evictions_total", "l1") > 0);
    assert!(cache.l2_len() > 0, "evicted entries were demoted to L2");
    let k0 = CacheKey::new("b", "0");
    let got = cache.get(&k0).await.expect("get").expect("hit");
    assert_eq!(got.data(), &bytes(0, 4096));
    assert_eq!(metric(&reg, "hits_total", "l2"), 1, "served by L2");
    assert_eq!(metric(&reg, "hits_total", "l3"), 0);
    let again = cache.get(&k0).await.expect("get").expect("hit");
    assert_eq!(again.data(), &bytes(0, 4096));
    assert_eq!(
        metric(&reg, "hits_total", "l2"),
        1,
        "second hit came from L1"
    );
    assert_eq!(again.meta().access_count, 2);
}

#[tokio::test]
async fn a_restart_serves_from_l2_and_keeps_access_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let k = CacheKey::new("b", "counted");
    {
        let mut reg = Registry::default();
        let cache = three_tier(dir.path(), 8 << 10, &mut reg).await;
        cache
            .put(k.clone(), CacheEntry::new(bytes(7, 3000)))
            .await
            .expect("put");
        for _ in 0..3 {
            cache.get(&k).await.expect("get").expect("hit");
        }
        // Push it out of L1 so it is demoted with its count.
        for i in 0..20u8 {
            cache
                .put(
                    CacheKey::new("b", format!("f{i}")),
                    CacheEntry::new(bytes(i, 3000)),
                )
                .await
                .expect("put");
        }
    }
    let mut reg = Registry::default();
    let cache = three_tier(dir.path(), 8 << 10, &mut reg).await;
    let got = cache.get(&k).await.expect("get").expect("hit");
    assert_eq!(got.data(), &bytes(7, 3000));
    assert_eq!(
        metric(&reg, "hits_total", "l2"),
        1,
        "L1 was empty after restart"
    );
    assert_eq!(
        got.meta().access_count,
        4,
        "three hits before the restart, one after"
    );
}

#[tokio::test]
async fn an_l3_hit_is_promoted_into_l2_and_l1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = DirectoryStore::new(dir.path().join("l3"));
    let k = CacheKey::new("cold", "object");
    store.put(&k, bytes(9, 20_000)).await.expect("seed L3");
    let mut reg = Registry::default();
    let cache = three_tier(dir.path(), 1 << 20, &mut reg).await;
    let got = cache.get(&k).await.expect("get").expect("hit");
    assert_eq!(got.data(), &bytes(9, 20_000));
    assert_eq!(metric(&reg, "hits_total", "l3"), 1);
    assert_eq!(cache.l2_len(), 1, "promoted into L2");
    cache.get(&k).await.expect("get").expect("hit");
    assert_eq!(metric(&reg, "hits_total", "l1"), 1, "and into L1");
    assert_eq!(metric(&reg, "hits_total", "l3"), 1);
}

#[tokio::test]
async fn remove_deletes_the_key_from_every_tier_including_l3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut reg = Registry::default();
    let cache = three_tier(dir.path(), 4 << 10, &mut reg).await;
    let k = CacheKey::new("b", "gone");
    cache
        .put(k.clone(), CacheEntry::new(bytes(1, 3000)))
        .await
        .expect("put");
    for i in 0..5u8 {
        cache
            .put(
                CacheKey::new("b", format!("x{i}")),
                CacheEntry::new(bytes(i, 3000)),
            )
            .await
            .expect("put");
    }
    cache.remove(&k).await.expect("remove");
    assert_eq!(cache.get(&k).await.expect("get"), None);
    assert!(!cache.contains(&k).await.expect("contains"));
    let store = DirectoryStore::new(dir.path().join("l3"));
    assert_eq!(store.get(&k).await.expect("l3 get"), None);
    assert!(!store.object_path(&k).exists());
}

#[tokio::test]
async fn a_corrupt_l2_record_is_never_returned_and_the_read_falls_through_to_l3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let k = CacheKey::new("b", "victim");
    let v = bytes(5, 8000);
    {
        let mut reg = Registry::default();
        let cache = three_tier(dir.path(), 1 << 20, &mut reg).await;
        cache
            .put(k.clone(), CacheEntry::new(v.clone()))
            .await
            .expect("put");
        // The put went to L1 and L3 only; after the restart below an L3 read fills L2.
    }
    {
        let mut reg = Registry::default();
        let cache = three_tier(dir.path(), 1 << 20, &mut reg).await;
        cache
            .get(&k)
            .await
            .expect("get")
            .expect("L3 hit, promoted into L2");
        assert_eq!(cache.l2_len(), 1);
    }
    // Damage 16 bytes of the record's payload: find the record by its key on disk (the payload
    // follows the key) and overwrite bytes 200..216 after it.
    let path = dir.path().join("l2").join(L2_DATA_FILE);
    let raw = std::fs::read(&path).expect("read l2");
    let at = raw
        .windows(6)
        .position(|w| w == b"victim")
        .expect("record key on disk");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open");
    f.write_all_at(&[0x55; 16], (at + 200) as u64)
        .expect("damage");
    drop(f);
    let mut reg = Registry::default();
    let cache = three_tier(dir.path(), 1 << 20, &mut reg).await;
    let got = cache.get(&k).await.expect("get").expect("served by L3");
    assert_eq!(got.data(), &v);
    assert_eq!(metric(&reg, "corrupt_total", "l2"), 1);
    assert_eq!(metric(&reg, "hits_total", "l3"), 1);
}

#[tokio::test]
async fn without_l2_and_l3_evicted_entries_are_misses_not_wrong_bytes() {
    let mut reg = Registry::default();
    let cache = Cache::builder()
        .l1_capacity(8 << 10)
        .open(&mut reg)
        .await
        .expect("open");
    for i in 0..30u8 {
        cache
            .put(
                CacheKey::new("b", format!("{i}")),
                CacheEntry::new(bytes(i, 2000)),
            )
            .await
            .expect("put");
    }
    let mut hits = 0;
    for i in 0..30u8 {
        if let Some(e) = cache
            .get(&CacheKey::new("b", format!("{i}")))
            .await
            .expect("get")
        {
            assert_eq!(e.data(), &bytes(i, 2000));
            hits += 1;
        }
    }
    assert!(hits > 0 && hits < 30, "{hits} hits");
}

#[derive(Debug)]
struct ReadOnly(DirectoryStore);

impl Backend for ReadOnly {
    fn name(&self) -> &'static str {
        "read-only"
    }
    async fn get(&self, key: &CacheKey) -> Result<Option<Bytes>, Error> {
        self.0.get(key).await
    }
    async fn put(&self, _: &CacheKey, _: Bytes) -> Result<(), Error> {
        Err(Error::ReadOnlyBackend {
            backend: "read-only",
        })
    }
    async fn delete(&self, _: &CacheKey) -> Result<(), Error> {
        Err(Error::ReadOnlyBackend {
            backend: "read-only",
        })
    }
}

#[tokio::test]
async fn a_put_the_backend_refuses_fails_and_the_old_value_stays_visible() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = DirectoryStore::new(dir.path().join("l3"));
    let k = CacheKey::new("archive", "stripe");
    store
        .put(&k, Bytes::from_static(b"archived"))
        .await
        .expect("seed");
    let mut reg = Registry::default();
    let cache = Cache::builder()
        .l2_dir(dir.path().join("l2"))
        .l2_capacity(1 << 20)
        .l2_region_size(64 << 10)
        .backend(ReadOnly(store))
        .open(&mut reg)
        .await
        .expect("open");
    assert_eq!(
        cache.get(&k).await.expect("get").expect("hit").data(),
        &Bytes::from_static(b"archived")
    );
    let err = cache.put(k.clone(), CacheEntry::new(&b"new"[..])).await;
    assert!(matches!(err, Err(Error::ReadOnlyBackend { .. })), "{err:?}");
    assert_eq!(
        cache.get(&k).await.expect("get").expect("hit").data(),
        &Bytes::from_static(b"archived")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_puts_and_gets_on_shared_keys_only_ever_see_values_that_were_put() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut reg = Registry::default();
    let cache = three_tier(dir.path(), 32 << 10, &mut reg).await;
    // Each value encodes its key and a version; a reader checks the value is one of its key's.
    let value = |k: u8, version: u16| {
        let mut v = vec![k; 1500];
        v[..2].copy_from_slice(&version.to_le_bytes());
        Bytes::from(v)
    };
    let mut tasks = Vec::new();
    for t in 0..4u16 {
        let cache = cache.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..150u16 {
                let k = ((n * 7 + t * 3) % 12) as u8;
                let key = CacheKey::new("c", format!("{k}"));
                if n % 3 == 0 {
                    cache
                        .put(key, CacheEntry::new(value(k, t * 1000 + n)))
                        .await
                        .expect("put");
                } else if let Some(e) = cache.get(&key).await.expect("get") {
                    assert!(
                        e.data()[2..].iter().all(|&b| b == k),
                        "key {k} got another key's bytes"
                    );
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    // Quiesced: every key's value now agrees across a restart (L1 dropped, L2 + L3 reread).
    let mut before = Vec::new();
    for k in 0..12u8 {
        before.push(
            cache
                .get(&CacheKey::new("c", format!("{k}")))
                .await
                .expect("get")
                .map(CacheEntry::into_data),
        );
    }
    drop(cache);
    let cache = three_tier(dir.path(), 32 << 10, &mut Registry::default()).await;
    for k in 0..12u8 {
        let after = cache
            .get(&CacheKey::new("c", format!("{k}")))
            .await
            .expect("get")
            .map(CacheEntry::into_data);
        assert_eq!(after, before[k as usize], "key {k} changed across restart");
    }
}
