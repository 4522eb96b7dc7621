//! L2 hit latency (p50/p99/p99.9) for 4 KiB entries, against foyer's hybrid cache, same run,
//! same workload: 16,384 entries of 4 KiB random bytes (64 MiB) on disk, RAM tiers of 64 KiB so
//! nearly every get is served from disk, 200,000 uniformly random gets from one task after
//! 20,000 warm-up gets. Both files are freshly written, so both read from the page cache.
//!
//! `cargo bench -p couchestor-cache --bench l2_hit`
//!
//! Our L2 is filled with `Durability::Buffered` only to keep the setup short; durability does
//! not change the read path.

use std::time::{Duration, Instant};

use couchestor_cache::{Cache, CacheEntry, CacheKey, Compression, Durability};
use foyer::{
    BlockEngineConfig, DeviceBuilder, FsDeviceBuilder, HybridCache, HybridCacheBuilder,
    HybridCachePolicy,
};
use prometheus_client::registry::Registry;

const ENTRIES: usize = 16_384;
const SIZE: usize = 4096;
const WARMUP: usize = 20_000;
const GETS: usize = 200_000;
const RAM: usize = 64 << 10;

fn value(i: usize) -> Vec<u8> {
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..SIZE)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn order(n: usize) -> Vec<usize> {
    let mut x = 0xDEAD_BEEF_CAFE_F00Du64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % ENTRIES as u64) as usize
        })
        .collect()
}

struct Stats {
    p50: Duration,
    p99: Duration,
    p999: Duration,
    mean: Duration,
    disk_hits: usize,
}

fn stats(mut lat: Vec<Duration>, disk_hits: usize) -> Stats {
    let mean = lat.iter().sum::<Duration>() / lat.len() as u32;
    lat.sort_unstable();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    Stats {
        p50: p(0.50),
        p99: p(0.99),
        p999: p(0.999),
        mean,
        disk_hits,
    }
}

async fn ours(dir: &std::path::Path, order: &[usize]) -> Stats {
    let mut registry = Registry::default();
    let cache = Cache::builder()
        .l1_capacity(RAM as u64)
        .l2_dir(dir)
        .l2_capacity(256 << 20)
        .l2_region_size(16 << 20)
        .l2_compression(Compression::Lz4)
        .l2_durability(Durability::Buffered)
        .open(&mut registry)
        .await
        .expect("open");
    let keys: Vec<CacheKey> = (0..ENTRIES)
        .map(|i| CacheKey::new("b", format!("{i}")))
        .collect();
    for (i, k) in keys.iter().enumerate() {
        cache
            .put(k.clone(), CacheEntry::new(value(i)))
            .await
            .expect("put");
    }
    assert!(
        cache.l2_len() >= ENTRIES - 64,
        "entries demoted to L2: {}",
        cache.l2_len()
    );
    let mut lat = Vec::with_capacity(GETS);
    let mut disk_hits = 0;
    for (n, &i) in order.iter().enumerate() {
        let in_ram = cache.get_in_memory(&keys[i]).is_some();
        let start = Instant::now();
        let got = cache.get(&keys[i]).await.expect("get").expect("hit");
        let t = start.elapsed();
        assert_eq!(got.data().len(), SIZE);
        if n >= WARMUP {
            lat.push(t);
            disk_hits += usize::from(!in_ram);
        }
    }
    stats(lat, disk_hits)
}

async fn foyer(dir: &std::path::Path, order: &[usize]) -> Stats {
    let device = FsDeviceBuilder::new(dir)
        .with_capacity(256 << 20)
        .build()
        .expect("device");
    let hybrid: HybridCache<u64, Vec<u8>> = HybridCacheBuilder::new()
        .with_policy(HybridCachePolicy::WriteOnInsertion)
        .memory(RAM)
        .with_weighter(|_k: &u64, v: &Vec<u8>| v.len())
        .storage()
        .with_engine_config(BlockEngineConfig::new(device).with_block_size(16 << 20))
        .build()
        .await
        .expect("foyer");
    for i in 0..ENTRIES {
        hybrid.insert(i as u64, value(i));
    }
    hybrid.storage().wait().await;
    let mut lat = Vec::with_capacity(GETS);
    let mut disk_hits = 0;
    let mut misses = 0;
    for (n, &i) in order.iter().enumerate() {
        let in_ram = hybrid.memory().contains(&(i as u64));
        let start = Instant::now();
        let got = hybrid.get(&(i as u64)).await.expect("get");
        let t = start.elapsed();
        match got {
            Some(e) => assert_eq!(e.value().len(), SIZE),
            None => misses += 1,
        }
        if n >= WARMUP {
            lat.push(t);
            disk_hits += usize::from(!in_ram);
        }
    }
    assert!(misses < order.len() / 100, "foyer lost {misses} entries");
    hybrid.close().await.expect("close");
    stats(lat, disk_hits)
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let order = order(WARMUP + GETS);
    let base = std::env::var_os("COUCHESTOR_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    println!("L2 hit latency, {ENTRIES} x {SIZE} B entries, {GETS} gets (after {WARMUP} warm-up)");
    println!(
        "{:<8} {:<22} {:>9} {:>9} {:>9} {:>9} {:>10}",
        "round", "system", "p50", "p99", "p99.9", "mean", "disk hits"
    );
    // Two rounds, alternating which system runs first, each on fresh directories.
    for round in 0..2 {
        let d1 = tempfile::tempdir_in(&base).expect("tempdir");
        let d2 = tempfile::tempdir_in(&base).expect("tempdir");
        let (a, b) = rt.block_on(async {
            if round == 0 {
                let f = foyer(d2.path(), &order).await;
                (ours(d1.path(), &order).await, f)
            } else {
                let o = ours(d1.path(), &order).await;
                (o, foyer(d2.path(), &order).await)
            }
        });
        for (name, s) in [("couchestor-cache L2", &a), ("foyer 0.22 hybrid", &b)] {
            println!(
                "{round:<8} {name:<22} {:>9.1?} {:>9.1?} {:>9.1?} {:>9.1?} {:>10}",
                s.p50, s.p99, s.p999, s.mean, s.disk_hits
            );
        }
        println!(
            "{round:<8} ratio ours/foyer: p50 {:.2}, p99 {:.2}, p99.9 {:.2}",
            a.p50.as_secs_f64() / b.p50.as_secs_f64(),
            a.p99.as_secs_f64() / b.p99.as_secs_f64(),
            a.p999.as_secs_f64() / b.p999.as_secs_f64()
        );
    }
}
