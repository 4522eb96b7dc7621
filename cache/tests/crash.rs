//! Crash test: a child process writes to L2 in a loop and prints every acknowledged operation;
//! the parent kills it with SIGKILL mid-way, reopens the cache and checks every key against the
//! model built from the acknowledged operations. Repeated over several kill rounds on the same
//! files.
//!
//! - "roomy" L2 (never evicts): every acknowledged put must come back with exactly its bytes,
//!   every acknowledged remove must be a miss.
//! - "tight" L2 (wraps many times): an acknowledged put may be a miss (evicted), never other bytes.
//! - "roomy-buffered": as "roomy" with `Durability::Buffered` (no fdatasync per value record),
//!   which promises the same for a process crash.
//!
//! The one operation in flight at the kill may or may not have happened: its key may show the
//! old or the new state, nothing else.
//!
//! Run: `cargo test -p couchestor-cache --test crash`. The same binary is the child when
//! `COUCHESTOR_CACHE_CRASH_CHILD` is set.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use bytes::Bytes;
use couchestor_cache::{Cache, CacheEntry, CacheKey, Durability};
use prometheus_client::registry::Registry;

const KEYS: u64 = 48;
const CHILD_ENV: &str = "COUCHESTOR_CACHE_CRASH_CHILD";

#[derive(Clone, Copy, Debug)]
struct Scenario {
    name: &'static str,
    l2_capacity: u64,
    region: u64,
    max_len: u64,
    strict: bool,
    durability: Durability,
}

const SCENARIOS: [Scenario; 3] = [
    Scenario {
        name: "roomy",
        l2_capacity: 256 << 20,
        region: 1 << 20,
        max_len: 96 << 10,
        strict: true,
        durability: Durability::Sync,
    },
    Scenario {
        name: "tight",
        l2_capacity: 1 << 20,
        region: 128 << 10,
        max_len: 48 << 10,
        strict: false,
        durability: Durability::Sync,
    },
    // `Buffered` promises the same as `Sync` for a process crash (the page cache survives it).
    Scenario {
        name: "roomy-buffered",
        l2_capacity: 256 << 20,
        region: 1 << 20,
        max_len: 96 << 10,
        strict: true,
        durability: Durability::Buffered,
    },
];

fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Operation `i`: `(key, Some(value))` for a put, `(key, None)` for a remove.
fn op(i: u64, max_len: u64) -> (u64, Option<Bytes>) {
    let r = mix(i + 1);
    let key = r % KEYS;
    if (r >> 8).is_multiple_of(10) {
        return (key, None);
    }
    let len = (mix(r) % max_len) as usize;
    let compressible = (r >> 16).is_multiple_of(2);
    let mut x = mix(r ^ 0xabcdef) | 1;
    let v: Vec<u8> = (0..len)
        .map(|j| {
            if compressible {
                (j / 13) as u8 ^ (i as u8)
            } else {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            }
        })
        .collect();
    (key, Some(Bytes::from(v)))
}

fn key(k: u64) -> CacheKey {
    CacheKey::new("crash", format!("key-{k}"))
}

async fn open(dir: &Path, s: &Scenario) -> Cache {
    Cache::builder()
        // Smaller than any entry: every put is demoted to L2 before it is acknowledged.
        .l1_capacity(1)
        .l2_dir(dir)
        .l2_capacity(s.l2_capacity)
        .l2_region_size(s.region)
        .l2_durability(s.durability)
        .open(&mut Registry::default())
        .await
        .expect("open cache")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn child(dir: PathBuf, scenario: usize, start: u64) {
    let s = SCENARIOS[scenario];
    runtime().block_on(async {
        let cache = open(&dir, &s).await;
        let mut out = std::io::stdout().lock();
        for i in start.. {
            let (k, v) = op(i, s.max_len);
            match v {
                Some(v) => cache.put(key(k), CacheEntry::new(v)).await.expect("put"),
                None => cache.remove(&key(k)).await.expect("remove"),
            }
            writeln!(out, "ACK {i}").expect("stdout");
            out.flush().expect("flush");
        }
    });
}

/// Runs one child from op `start`, kills it after `acks` acknowledgements, returns the index of
/// the last acknowledged op.
fn run_child(dir: &Path, scenario: usize, start: u64, acks: u64) -> u64 {
    let mut child = Command::new(std::env::current_exe().expect("current exe"))
        .env(CHILD_ENV, dir)
        .env("COUCHESTOR_CACHE_CRASH_SCENARIO", scenario.to_string())
        .env("COUCHESTOR_CACHE_CRASH_START", start.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let mut last = None;
    let mut killed = false;
    // Reads to the end: acknowledgements the child printed before the SIGKILL landed
    // (it keeps going until then) are acknowledged operations too.
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let Some(i) = line
            .strip_prefix("ACK ")
            .and_then(|n| n.parse::<u64>().ok())
        else {
            // A line cut short by the kill.
            assert!(killed, "unexpected child output {line:?}");
            break;
        };
        assert_eq!(i, last.map_or(start, |l| l + 1), "acks are in order");
        last = Some(i);
        if !killed && i + 1 - start >= acks {
            // Child::kill sends SIGKILL: no destructor, no flush, mid-write.
            child.kill().expect("kill -9");
            killed = true;
        }
    }
    assert!(killed, "the child stopped before it was killed");
    let status = child.wait().expect("wait");
    assert!(
        !status.success(),
        "child was killed, not finished: {status:?}"
    );
    last.expect("child acknowledged something")
}

fn scenario(index: usize) -> Result<(), String> {
    let s = SCENARIOS[index];
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let rt = runtime();
    let mut model: HashMap<u64, Bytes> = HashMap::new();
    let mut start = 0u64;
    let mut checked = 0;
    let mut hits = 0;
    for round in 0..4u64 {
        let acks = 60 + mix(round + 99) % 120;
        let last = run_child(dir.path(), index, start, acks);
        for i in start..=last {
            let (k, v) = op(i, s.max_len);
            match v {
                Some(v) => model.insert(k, v),
                None => model.remove(&k),
            };
        }
        // The op after the last ack may have been applied or not.
        let (maybe_key, maybe_val) = op(last + 1, s.max_len);
        rt.block_on(async {
            let cache = open(dir.path(), &s).await;
            for k in 0..KEYS {
                let got = cache.get(&key(k)).await.map_err(|e| e.to_string())?;
                let got = got.map(CacheEntry::into_data);
                let expected = model.get(&k);
                let ok = match &got {
                    None => !s.strict || expected.is_none() || k == maybe_key,
                    Some(bytes) => {
                        Some(bytes) == expected
                            || (k == maybe_key && maybe_val.as_ref() == Some(bytes))
                    }
                };
                if !ok {
                    return Err(format!(
                        "{} round {round}: key {k}: got {:?} bytes, model has {:?} bytes \
                         (in-flight op on key {maybe_key})",
                        s.name,
                        got.as_ref().map(Bytes::len),
                        expected.map(Bytes::len)
                    ));
                }
                checked += 1;
                hits += usize::from(got.is_some());
            }
            // Settle the ambiguous key so the model is exact for the next round.
            cache
                .remove(&key(maybe_key))
                .await
                .map_err(|e| e.to_string())?;
            model.remove(&maybe_key);
            Ok(())
        })?;
        start = last + 2;
    }
    println!(
        "crash/{}: 4 kill rounds, {checked} keys checked, {hits} returned their exact bytes",
        s.name
    );
    Ok(())
}

fn main() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        let scenario = std::env::var("COUCHESTOR_CACHE_CRASH_SCENARIO")
            .ok()
            .and_then(|s| s.parse().ok())
            .expect("scenario");
        let start = std::env::var("COUCHESTOR_CACHE_CRASH_START")
            .ok()
            .and_then(|s| s.parse().ok())
            .expect("start");
        child(PathBuf::from(dir), scenario, start);
        return;
    }
    let mut failed = 0;
    for (i, s) in SCENARIOS.iter().enumerate() {
        match scenario(i) {
            Ok(()) => println!(
                "test kill_9_during_l2_writes_never_yields_wrong_bytes/{} ... ok",
                s.name
            ),
            Err(e) => {
                println!(
                    "test kill_9_during_l2_writes_never_yields_wrong_bytes/{} ... FAILED: {e}",
                    s.name
                );
                failed += 1;
            }
        }
    }
    println!(
        "crash: {} passed, {failed} failed",
        SCENARIOS.len() - failed
    );
    if failed > 0 {
        std::process::exit(1);
    }
}
