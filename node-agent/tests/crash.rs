//! A real crash test: a child process (this binary, re-executed with
//! `COUCHESTOR_CRASH_CHILD=<dir>`) writes and overwrites shards in a loop, printing each
//! acknowledged (column, stripe, generation) after `put` returns; the parent SIGKILLs it
//! mid-way, reopens the store and checks that every acknowledged shard reads back
//! byte-exact, and that nothing else is served unless it is complete and checksum-correct.
//!
//! `harness = false`: `main` is the test, so the child role needs no test filtering.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use couchestor_node_agent::codec::CODEC_ID;
use couchestor_node_agent::store::{Error, ShardStore, StoreConfig, VolumeLayout};

const CHILD_ENV: &str = "COUCHESTOR_CRASH_CHILD";
const VOL: &str = "pvc-crash";
const COLUMNS: u32 = 3;
const SHARD_BYTES: usize = 64 << 10;
/// Acknowledgements the parent waits for before killing, per round (varied so the kill
/// lands at different points of the write/commit sequence).
const KILL_AFTER: [usize; 4] = [37, 101, 160, 233];

fn config(dir: &Path) -> StoreConfig {
    StoreConfig {
        index_path: dir.join("index.redb"),
        disks: vec![dir.join("disk0"), dir.join("disk1")],
        direct_io: true,
    }
}

/// The bytes of a shard at a generation: the parent recomputes them to check reads.
fn payload(column: u32, stripe: u64, generation: u64) -> Vec<u8> {
    let mut x = (u64::from(column) << 48) ^ (stripe << 8) ^ generation ^ 0x9e37_79b9_7f4a_7c15;
    (0..SHARD_BYTES)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Child: write stripes 0.. on every column; every 5th stripe, overwrite an earlier one.
fn child(dir: &Path) -> ! {
    let store = ShardStore::open(&config(dir)).expect("child: open");
    store
        .create_volume(
            VOL,
            &VolumeLayout {
                data_shards: 2,
                parity_shards: 1,
                stripe_size_bytes: 2 * SHARD_BYTES as u64,
                codec_id: CODEC_ID.into(),
            },
        )
        .expect("child: create volume");
    let start = store
        .volume(VOL)
        .expect("child: index")
        .map_or(0, |v| v.destaged_stripes);
    let mut out = std::io::stdout().lock();
    for stripe in start.. {
        for column in 0..COLUMNS {
            // Every 5th stripe overwrites an earlier one: exercises the in-place
            // `Rewriting` path. A restarted child also rewrites the stripe it was killed in.
            let s = if stripe % 5 == 4 { stripe / 2 } else { stripe };
            let generation = store
                .entry(VOL, column, s)
                .expect("child: index")
                .map_or(1, |e| e.generation + 1);
            let acked = store
                .put(VOL, column, s, &payload(column, s, generation))
                .expect("child: put");
            assert_eq!(acked, generation);
            writeln!(out, "{column} {s} {generation}").expect("child: stdout");
            out.flush().expect("child: flush");
        }
        store
            .set_destaged_stripes(VOL, stripe + 1)
            .expect("child: watermark");
    }
    unreachable!("the stripe loop only ends when the parent kills the child")
}

fn main() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child(Path::new(&dir));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("current_exe");
    // (column, stripe) → last acknowledged generation, across all rounds.
    let mut acked: BTreeMap<(u32, u64), u64> = BTreeMap::new();
    for (round, kill_after) in KILL_AFTER.into_iter().enumerate() {
        let mut child = Command::new(&exe)
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = 0;
        for line in lines.by_ref() {
            record(&mut acked, &line.expect("read child output"));
            seen += 1;
            if seen == kill_after {
                break;
            }
        }
        assert_eq!(seen, kill_after, "round {round}: child exited early");
        child.kill().expect("SIGKILL child"); // std sends SIGKILL on Unix
        // Acknowledgements printed before the kill landed still count.
        for line in lines {
            record(&mut acked, &line.expect("read child output"));
        }
        let status = child.wait().expect("wait child");
        assert!(
            !status.success(),
            "round {round}: child was not killed: {status}"
        );

        let store = ShardStore::open(&config(dir.path())).expect("reopen after kill");
        let report = store.recovery_report().clone();
        assert!(
            report.unclean_shutdown,
            "round {round}: kill -9 must look unclean"
        );
        let mut verified = 0;
        for (&(column, stripe), &generation) in &acked {
            match store.get(VOL, column, stripe) {
                Ok(bytes) => {
                    // A newer, unacknowledged generation may have been committed just
                    // before the kill; it must then be exactly that generation's bytes.
                    let entry = store
                        .entry(VOL, column, stripe)
                        .expect("index")
                        .expect("entry");
                    assert!(entry.generation == generation || entry.generation == generation + 1);
                    assert!(
                        bytes == payload(column, stripe, entry.generation),
                        "round {round}: column {column} stripe {stripe} read back wrong bytes"
                    );
                    verified += 1;
                }
                // Only an interrupted *overwrite* may cost an acknowledged shard, and then
                // it is reported for repair (parity rebuilds it), never served.
                Err(Error::NeedsRepair { .. }) => assert!(
                    report
                        .marked_for_repair
                        .iter()
                        .any(|id| id.column == column && id.stripe == stripe),
                    "round {round}: column {column} stripe {stripe} lost without a recovery report"
                ),
                Err(e) => {
                    panic!("round {round}: acknowledged column {column} stripe {stripe}: {e}")
                }
            }
        }
        // Nothing unacknowledged is served unless complete and checksum-correct.
        let info = store.volume(VOL).expect("index").expect("volume");
        for column in 0..COLUMNS {
            for stripe in 0..info.destaged_stripes + 4 {
                if acked.contains_key(&(column, stripe)) {
                    continue;
                }
                if let Ok(bytes) = store.get(VOL, column, stripe) {
                    let generation = store
                        .entry(VOL, column, stripe)
                        .expect("index")
                        .expect("entry")
                        .generation;
                    assert!(
                        bytes == payload(column, stripe, generation),
                        "round {round}: garbage served"
                    );
                }
            }
        }
        // Repair what recovery flagged, as a rebuild would, so later rounds start healthy.
        for id in store.shards_needing_repair(VOL).expect("repair list") {
            let generation = store
                .entry(VOL, id.column, id.stripe)
                .expect("index")
                .expect("entry")
                .generation
                + 1;
            store
                .put(
                    VOL,
                    id.column,
                    id.stripe,
                    &payload(id.column, id.stripe, generation),
                )
                .expect("repair");
            acked.insert((id.column, id.stripe), generation);
        }
        println!(
            "round {round}: killed after {kill_after} acks; {} acknowledged shards, {verified} verified; \
             recovery checked {} slots, discarded {} unindexed, marked {} for repair",
            acked.len(),
            report.slots_checked,
            report.discarded_unindexed.len(),
            report.marked_for_repair.len()
        );
        drop(store);
    }
    println!("crash recovery: ok");
}

fn record(acked: &mut BTreeMap<(u32, u64), u64>, line: &str) {
    let v: Vec<u64> = line
        .split(' ')
        .map(|x| x.parse().expect("child line"))
        .collect();
    let [column, stripe, generation] = v[..] else {
        panic!("malformed child line {line:?}");
    };
    acked.insert((column as u32, stripe), generation);
}
