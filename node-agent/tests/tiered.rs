//! The archive read path through the three-tier cache (`couchestor-cache`) with the archive
//! as L3: bytes read back equal the image whether they come from the columns, from RAM or
//! from the L2 file, and a new archive under a reused volume id is never served from an
//! older archive's cached stripes.

use std::path::Path;
use std::sync::Arc;

use couchestor_cache::Cache;
use couchestor_node_agent::archive::{
    ArchiveLayout, ArchiveReader, ColumnSource, EcBackend, ReaderConfig, StoreColumns, TieredCache,
    archive_into_stores,
};
use couchestor_node_agent::codec::{Backend, ErasureCodec, new_codec};
use couchestor_node_agent::store::{ShardStore, StoreConfig};
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

const VOL: &str = "vol-t";
const STRIPE: u64 = 256 << 10;
/// 40 stripes: more than the reader's own 16-stripe window, so later reads really go to the
/// tiered cache.
const SIZE: usize = (10 << 20) - 777;

fn image(seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..SIZE)
        .map(|i| {
            if (i >> 16) % 3 == 0 {
                0
            } else {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            }
        })
        .collect()
}

fn codec() -> Arc<dyn ErasureCodec> {
    Arc::from(new_codec(Backend::Best, 4, 2).expect("codec"))
}

fn layout() -> ArchiveLayout {
    ArchiveLayout {
        volume_size: SIZE as u64,
        data_shards: 4,
        parity_shards: 2,
        stripe_size: STRIPE,
    }
}

/// Six stores under `root` holding `image` archived as `VOL`.
fn archive(root: &Path, image: &[u8]) -> Vec<Arc<ShardStore>> {
    let stores: Vec<Arc<ShardStore>> = (0..6)
        .map(|c| {
            let dir = root.join(format!("node{c}"));
            std::fs::create_dir_all(&dir).expect("dir");
            Arc::new(
                ShardStore::open(&StoreConfig {
                    index_path: dir.join("index.redb"),
                    disks: vec![dir.join("disk")],
                    direct_io: false,
                })
                .expect("store"),
            )
        })
        .collect();
    archive_into_stores(image, VOL, layout(), codec(), &stores).expect("archive");
    stores
}

fn reader(stores: &[Arc<ShardStore>], cache: &TieredCache, bucket: &str) -> ArchiveReader {
    let columns = stores
        .iter()
        .map(|s| Arc::new(StoreColumns::new(Arc::clone(s), VOL)) as Arc<dyn ColumnSource>)
        .collect();
    let mut r = ArchiveReader::new(VOL, layout(), codec(), columns, ReaderConfig::default())
        .expect("reader");
    r.attach_cache(cache.clone(), bucket);
    r
}

async fn open_cache(l1: u64, l2: Option<&Path>, registry: &mut Registry) -> TieredCache {
    let mut b = Cache::builder()
        .l1_capacity(l1)
        .backend(EcBackend::default());
    if let Some(dir) = l2 {
        b = b.l2_dir(dir).l2_capacity(64 << 20);
    }
    TieredCache::new(b.open(registry).await.expect("open cache"))
}

fn metric(registry: &Registry, line_start: &str) -> f64 {
    let mut text = String::new();
    encode(&mut text, registry).expect("encode metrics");
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripes_cached_in_ram_are_served_after_every_column_is_gone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let img = image(7);
    let stores = archive(dir.path(), &img);
    let mut registry = Registry::default();
    let cache = open_cache(64 << 20, None, &mut registry).await;
    let first = reader(&stores, &cache, "vol-t.a");
    assert_eq!(first.read(0, SIZE as u64).await.expect("read"), img);
    let misses = metric(&registry, "couchestor_cache_misses_total{tier=\"l1\"}");
    assert!(
        misses >= 40.0,
        "the first read fetched every stripe from L3: {misses}"
    );

    for s in &stores {
        s.delete_volume(VOL).expect("delete");
    }
    // A fresh reader (no stripes of its own) over the same cache: all from L1.
    let second = reader(&stores, &cache, "vol-t.a");
    assert_eq!(second.read(0, SIZE as u64).await.expect("cached read"), img);
    let hits = metric(&registry, "couchestor_cache_hits_total{tier=\"l1\"}");
    assert!(hits >= 40.0, "the second read came from RAM: {hits}");
    // Partial reads at odd offsets, too.
    let bytes = second.read(123_457, 700_001).await.expect("range");
    assert_eq!(bytes, img[123_457..123_457 + 700_001]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_cache_serves_from_its_disk_tier_and_never_serves_an_older_archive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let l2 = dir.path().join("l2");
    let old = image(1);
    let old_stores = archive(&dir.path().join("old"), &old);
    {
        let mut registry = Registry::default();
        // L1 smaller than one stripe: everything read lands in L2.
        let cache = open_cache(64 << 10, Some(&l2), &mut registry).await;
        let r = reader(&old_stores, &cache, "vol-t.old");
        assert_eq!(r.read(0, SIZE as u64).await.expect("read"), old);
    }
    for s in &old_stores {
        s.delete_volume(VOL).expect("delete");
    }
    // The same volume id archived again with other bytes (a new uid, so a new bucket).
    let new = image(2);
    let new_stores = archive(&dir.path().join("new"), &new);
    let mut registry = Registry::default();
    let cache = open_cache(64 << 10, Some(&l2), &mut registry).await;
    let r = reader(&new_stores, &cache, "vol-t.new");
    assert_eq!(
        r.read(0, SIZE as u64).await.expect("read new"),
        new,
        "the new archive's bytes, not the old cached ones"
    );
    // The old archive's stripes are still served, from the reopened L2 (its columns are gone).
    let r = reader(&old_stores, &cache, "vol-t.old");
    assert_eq!(r.read(0, SIZE as u64).await.expect("read old from L2"), old);
    let hits = metric(&registry, "couchestor_cache_hits_total{tier=\"l2\"}");
    assert!(hits >= 40.0, "served from the disk tier: {hits}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stripe_lost_beyond_parity_is_an_error_through_the_cache_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let img = image(3);
    let stores = archive(dir.path(), &img);
    for s in &stores[..3] {
        s.delete_volume(VOL).expect("delete");
    }
    let mut registry = Registry::default();
    let cache = open_cache(64 << 20, None, &mut registry).await;
    let r = reader(&stores, &cache, "vol-t.lost");
    let err = r.read(0, 4096).await.expect_err("3 of 6 columns gone");
    assert!(
        err.to_string().contains("only 3 of 6 columns healthy"),
        "the archive's own error comes through: {err}"
    );
}
