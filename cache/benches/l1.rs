//! L1 throughput with two threads: `get` hits and `insert`s under eviction, against
//! `quick_cache` (which L1 is built on) and `moka`, with the same keys, values and access order.
//!
//! `cargo bench -p couchestor-cache --bench l1 -- --measurement-time 3`
//!
//! Each criterion iteration is one operation on each of the two threads (throughput = 2
//! elements per iteration), so the reported elem/s is the aggregate rate.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use bytes::Bytes;
use couchestor_cache::{Cache, CacheEntry, CacheKey};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prometheus_client::registry::Registry;

const KEYS: usize = 50_000;
const VALUE: usize = 1024;
const THREADS: usize = 2;

fn keys(n: usize) -> Vec<CacheKey> {
    (0..n)
        .map(|i| CacheKey::new("bench", format!("object-{i:08}")))
        .collect()
}

/// A per-thread pseudo-random walk over `n` indices (skewed: half the draws hit 10% of keys).
fn order(thread: usize, n: usize, len: usize) -> Vec<usize> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ (thread as u64 + 1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x & 1 == 0 {
                (x >> 1) as usize % (n / 10)
            } else {
                (x >> 1) as usize % n
            }
        })
        .collect()
}

/// Runs `op(thread, i)` for `iters` operations on each of `THREADS` threads; returns wall time.
fn two_threads(iters: u64, op: &(dyn Fn(usize, usize) + Sync)) -> Duration {
    let barrier = Barrier::new(THREADS + 1);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let barrier = &barrier;
            s.spawn(move || {
                barrier.wait();
                for i in 0..iters as usize {
                    op(t, i);
                }
            });
        }
        barrier.wait();
        let start = Instant::now();
        // Scope end joins the threads.
        start
    })
    .elapsed()
}

fn bench(c: &mut Criterion) {
    let keys = keys(KEYS);
    // One allocation per entry (a shared `Bytes` would make every clone hit one refcount line).
    let values: Vec<Bytes> = (0..KEYS)
        .map(|i| Bytes::from(vec![i as u8; VALUE]))
        .collect();
    let orders: Vec<Vec<usize>> = (0..THREADS).map(|t| order(t, KEYS, 1 << 20)).collect();
    let at = |t: usize, i: usize| orders[t][i & ((1 << 20) - 1)];

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(THREADS)
        .enable_all()
        .build()
        .expect("runtime");

    // --- gets: everything fits, every get is a hit ---
    let ours = rt.block_on(async {
        let cache = Cache::builder()
            .l1_capacity(256 << 20)
            .open(&mut Registry::default())
            .await
            .expect("open");
        for (k, v) in keys.iter().zip(&values) {
            cache
                .put(k.clone(), CacheEntry::new(v.clone()))
                .await
                .expect("put");
        }
        cache
    });
    let qc: quick_cache::sync::Cache<CacheKey, Bytes> = quick_cache::sync::Cache::new(KEYS * 2);
    let mc: moka::sync::Cache<CacheKey, Bytes> = moka::sync::Cache::new(KEYS as u64 * 2);
    let qc_values: Vec<Bytes> = values.iter().map(|v| Bytes::copy_from_slice(v)).collect();
    let mc_values: Vec<Bytes> = values.iter().map(|v| Bytes::copy_from_slice(v)).collect();
    for (i, k) in keys.iter().enumerate() {
        qc.insert(k.clone(), qc_values[i].clone());
        mc.insert(k.clone(), mc_values[i].clone());
    }
    mc.run_pending_tasks();
    assert!(
        keys.iter().all(|k| ours.get_in_memory(k).is_some()),
        "all in L1"
    );
    assert!(keys.iter().all(|k| qc.get(k).is_some()));
    let moka_hits = keys.iter().filter(|k| mc.get(*k).is_some()).count();
    assert_eq!(moka_hits, KEYS, "moka holds every key");

    let mut g = c.benchmark_group("l1_get_2_threads");
    g.throughput(Throughput::Elements(THREADS as u64));
    g.bench_function("couchestor_l1", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, &|t, i| {
                black_box(ours.get_in_memory(&keys[at(t, i)]));
            })
        })
    });
    g.bench_function("quick_cache", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, &|t, i| {
                black_box(qc.get(&keys[at(t, i)]));
            })
        })
    });
    g.bench_function("moka", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, &|t, i| {
                black_box(mc.get(&keys[at(t, i)]));
            })
        })
    });
    g.finish();
    drop((ours, qc, mc, qc_values, mc_values));

    // --- inserts: capacity is a fifth of the key space, so most inserts evict ---
    let cap = KEYS / 5;
    let ours = rt.block_on(async {
        Cache::builder()
            .l1_capacity((cap * (VALUE + 128)) as u64)
            .open(&mut Registry::default())
            .await
            .expect("open")
    });
    let qc: quick_cache::sync::Cache<CacheKey, Bytes> = quick_cache::sync::Cache::new(cap);
    let mc: moka::sync::Cache<CacheKey, Bytes> = moka::sync::Cache::new(cap as u64);
    let mut g = c.benchmark_group("l1_insert_2_threads");
    g.throughput(Throughput::Elements(THREADS as u64));
    g.bench_function("couchestor_put_async", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, &|t, i| {
                let j = at(t, i);
                rt.block_on(ours.put(keys[j].clone(), CacheEntry::new(values[j].clone())))
                    .expect("put");
            })
        })
    });
    g.bench_function("quick_cache", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, &|t, i| {
                let j = at(t, i);
                qc.insert(keys[j].clone(), values[j].clone());
            })
        })
    });
    g.bench_function("moka", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, &|t, i| {
                let j = at(t, i);
                mc.insert(keys[j].clone(), values[j].clone());
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
