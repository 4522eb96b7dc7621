//! L1 throughput with two threads — `get` hits, and `insert`s under eviction — against
//! `quick_cache` (which L1 is built on) and `moka`, with the same keys, values and access order.
//!
//! `cargo bench -p couchestor-cache --bench l1`
//!
//! `harness = false` on purpose: the machines are shared and noisy, so instead of measuring each
//! system in its own time window (as criterion does), the systems are measured in alternating
//! short rounds (rotating which goes first), and the report gives each system's median and the
//! median of the per-round ratios. Optional argument: number of rounds (default 15).

use std::sync::Barrier;
use std::time::{Duration, Instant};

use bytes::Bytes;
use couchestor_cache::{Cache, CacheEntry, CacheKey};
use prometheus_client::registry::Registry;

const KEYS: usize = 50_000;
const VALUE: usize = 1024;
const THREADS: usize = 2;
const GETS_PER_ROUND: usize = 400_000;
const INSERTS_PER_ROUND: usize = 100_000;

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

/// Runs `op(thread, i)` for `ops` operations on each of `THREADS` threads; returns the aggregate
/// rate in operations per second.
fn two_threads(ops: usize, op: &(dyn Fn(usize, usize) + Sync)) -> f64 {
    let barrier = Barrier::new(THREADS + 1);
    let elapsed: Duration = std::thread::scope(|s| {
        for t in 0..THREADS {
            let barrier = &barrier;
            s.spawn(move || {
                barrier.wait();
                for i in 0..ops {
                    op(t, i);
                }
            });
        }
        barrier.wait();
        Instant::now()
    })
    .elapsed();
    (ops * THREADS) as f64 / elapsed.as_secs_f64()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

type Op<'a> = (&'static str, Box<dyn Fn(usize, usize) + Sync + 'a>);

/// Alternating rounds; returns per-system rates, in `systems` order.
fn rounds(name: &str, rounds: usize, ops: usize, systems: &[Op<'_>]) {
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); systems.len()];
    for r in 0..rounds {
        for j in 0..systems.len() {
            let s = (r + j) % systems.len();
            rates[s].push(two_threads(ops, &*systems[s].1));
        }
    }
    println!(
        "{name}: {rounds} alternating rounds, {THREADS} threads, {ops} ops per thread per round"
    );
    let medians: Vec<f64> = rates.iter().map(|r| median(&mut r.clone())).collect();
    for (s, (label, _)) in systems.iter().enumerate() {
        let mut ratio: Vec<f64> = (0..rounds).map(|r| rates[0][r] / rates[s][r]).collect();
        let lo = ratio.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = ratio.iter().copied().fold(0.0, f64::max);
        println!(
            "  {label:<26} median {:>7.2} M ops/s   {} / this: median {:.2}x (min {:.2}x, max {:.2}x)",
            medians[s] / 1e6,
            systems[0].0,
            median(&mut ratio),
            lo,
            hi
        );
    }
}

fn main() {
    let n_rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(15);
    let keys = keys(KEYS);
    // One allocation per value (a shared `Bytes` would make every clone hit one refcount line).
    let values: Vec<Bytes> = (0..KEYS)
        .map(|i| Bytes::from(vec![i as u8; VALUE]))
        .collect();
    let len = 1 << 20;
    let orders: Vec<Vec<usize>> = (0..THREADS).map(|t| order(t, KEYS, len)).collect();
    let at = |t: usize, i: usize| orders[t][i & (len - 1)];

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
    for (k, v) in keys.iter().zip(&values) {
        qc.insert(k.clone(), Bytes::copy_from_slice(v));
        mc.insert(k.clone(), Bytes::copy_from_slice(v));
    }
    mc.run_pending_tasks();
    assert!(
        keys.iter().all(|k| ours.get_in_memory(k).is_some()),
        "all in L1"
    );
    assert!(
        keys.iter().all(|k| qc.get(k).is_some()),
        "all in quick_cache"
    );
    assert!(keys.iter().all(|k| mc.get(k).is_some()), "all in moka");
    rounds(
        "l1 get (hits)",
        n_rounds,
        GETS_PER_ROUND,
        &[
            (
                "couchestor L1",
                Box::new(|t, i| {
                    std::hint::black_box(ours.get_in_memory(&keys[at(t, i)]));
                }),
            ),
            (
                "quick_cache 0.7",
                Box::new(|t, i| {
                    std::hint::black_box(qc.get(&keys[at(t, i)]));
                }),
            ),
            (
                "moka 0.12 sync",
                Box::new(|t, i| {
                    std::hint::black_box(mc.get(&keys[at(t, i)]));
                }),
            ),
        ],
    );
    drop((ours, qc, mc));

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
    rounds(
        "l1 insert (evicting)",
        n_rounds,
        INSERTS_PER_ROUND,
        &[
            (
                "couchestor put (async)",
                Box::new(|t, i| {
                    let j = at(t, i);
                    rt.block_on(ours.put(keys[j].clone(), CacheEntry::new(values[j].clone())))
                        .expect("put");
                }),
            ),
            (
                "quick_cache 0.7",
                Box::new(|t, i| {
                    let j = at(t, i);
                    qc.insert(keys[j].clone(), values[j].clone());
                }),
            ),
            (
                "moka 0.12 sync",
                Box::new(|t, i| {
                    let j = at(t, i);
                    mc.insert(keys[j].clone(), values[j].clone());
                }),
            ),
        ],
    );
}
