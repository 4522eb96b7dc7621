//! Component tests of the shard store on real temporary directories (ext4 here, so the
//! O_DIRECT path; one test runs on /dev/shm, tmpfs, for the buffered fallback).

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use couchestor_node_agent::codec::CODEC_ID;
use couchestor_node_agent::shard::BLOCK_BYTES;
use couchestor_node_agent::store::{Error, ShardStore, StoreConfig, VolumeLayout};

const VOL: &str = "pvc-3f2a";

fn layout() -> VolumeLayout {
    VolumeLayout {
        data_shards: 4,
        parity_shards: 2,
        stripe_size_bytes: 64 << 10, // 16 KiB shards
        codec_id: CODEC_ID.into(),
    }
}

fn config(dir: &Path, disks: usize) -> StoreConfig {
    StoreConfig {
        index_path: dir.join("index.redb"),
        disks: (0..disks).map(|i| dir.join(format!("disk{i}"))).collect(),
        direct_io: true,
    }
}

fn payload(column: u32, stripe: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64 * 31 + stripe * 7 + u64::from(column) * 131 + 1) as u8)
        .collect()
}

fn column_file(store: &ShardStore, column: u32) -> PathBuf {
    let info = store.volume(VOL).expect("index").expect("volume exists");
    info.columns[&column]
        .join(VOL)
        .join(format!("col-{column}.shards"))
}

fn flip_byte(path: &Path, offset: u64) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open");
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).expect("read");
    b[0] ^= 0x40;
    f.write_all_at(&b, offset).expect("write");
    f.sync_all().expect("sync");
}

#[test]
fn shards_read_back_byte_exact_across_columns_stripes_and_disks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ShardStore::open(&config(dir.path(), 2)).expect("open");
    store.create_volume(VOL, &layout()).expect("create");
    for column in 0..6 {
        for stripe in [0u64, 1, 2, 9] {
            let generation = store
                .put(VOL, column, stripe, &payload(column, stripe, 16 << 10))
                .expect("put");
            assert_eq!(generation, 1);
        }
    }
    // A short last shard keeps its own length.
    store
        .put(VOL, 0, 10, &payload(0, 10, 4160))
        .expect("short put");
    for column in 0..6 {
        for stripe in [0u64, 1, 2, 9] {
            assert_eq!(
                store.get(VOL, column, stripe).expect("get"),
                payload(column, stripe, 16 << 10)
            );
        }
    }
    assert_eq!(
        store.get(VOL, 0, 10).expect("get short"),
        payload(0, 10, 4160)
    );
    assert!(matches!(
        store.get(VOL, 1, 3),
        Err(Error::NotFound {
            column: 1,
            stripe: 3,
            ..
        })
    ));
    let usage = store.usage().expect("usage");
    assert_eq!(usage.len(), 2);
    // 24 full slots (4 KiB header + 16 KiB) and one short one (4 KiB + 8 KiB).
    assert!(usage.iter().map(|u| u.used_bytes).sum::<u64>() >= 24 * (20 << 10) + (12 << 10));
    assert!(
        usage
            .iter()
            .all(|u| u.free_bytes > 0 && u.total_bytes >= u.free_bytes)
    );
}

#[test]
fn a_flipped_payload_byte_is_reported_corrupt_and_never_returned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ShardStore::open(&config(dir.path(), 1)).expect("open");
    store.create_volume(VOL, &layout()).expect("create");
    store.put(VOL, 2, 5, &payload(2, 5, 16 << 10)).expect("put");
    let offset = store
        .entry(VOL, 2, 5)
        .expect("index")
        .expect("entry")
        .offset;
    flip_byte(&column_file(&store, 2), offset + BLOCK_BYTES as u64 + 1000);
    let err = store.get(VOL, 2, 5).expect_err("corrupt payload");
    assert!(
        matches!(&err, Error::Corrupt { volume, column: 2, stripe: 5, reason, .. } if volume == VOL && reason.contains("payload checksum")),
        "{err}"
    );
    // A scrub marks it for repair; from then on it reads as NeedsRepair.
    let bad = store.verify_volume(VOL).expect("verify");
    assert_eq!(bad.len(), 1);
    assert!(matches!(
        store.get(VOL, 2, 5),
        Err(Error::NeedsRepair { .. })
    ));
    // Rewriting the shard (a repair) makes it readable again with a new generation.
    assert_eq!(
        store
            .put(VOL, 2, 5, &payload(2, 5, 16 << 10))
            .expect("repair"),
        2
    );
    assert_eq!(store.get(VOL, 2, 5).expect("get"), payload(2, 5, 16 << 10));
    assert!(store.shards_needing_repair(VOL).expect("list").is_empty());
}

#[test]
fn a_flipped_header_byte_is_detected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ShardStore::open(&config(dir.path(), 1)).expect("open");
    store.create_volume(VOL, &layout()).expect("create");
    store.put(VOL, 0, 0, &payload(0, 0, 16 << 10)).expect("put");
    flip_byte(&column_file(&store, 0), 20); // inside the stripe field
    let err = store.get(VOL, 0, 0).expect_err("corrupt header");
    assert!(
        matches!(&err, Error::Corrupt { reason, .. } if reason.contains("header")),
        "{err}"
    );
}

#[test]
fn a_shard_written_to_the_wrong_slot_is_not_served() {
    // Simulates a misdirected write: slot 1's bytes copied over slot 0.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ShardStore::open(&config(dir.path(), 1)).expect("open");
    store.create_volume(VOL, &layout()).expect("create");
    store.put(VOL, 0, 0, &payload(0, 0, 16 << 10)).expect("put");
    store.put(VOL, 0, 1, &payload(0, 1, 16 << 10)).expect("put");
    let path = column_file(&store, 0);
    let slot1 = store
        .entry(VOL, 0, 1)
        .expect("index")
        .expect("entry")
        .offset;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .expect("open");
    let mut buf = vec![0u8; BLOCK_BYTES + (16 << 10)];
    f.read_exact_at(&mut buf, slot1).expect("read");
    f.write_all_at(&buf, 0).expect("write");
    let err = store.get(VOL, 0, 0).expect_err("misdirected");
    assert!(
        matches!(&err, Error::Corrupt { reason, .. } if reason.contains("stripe 1")),
        "{err}"
    );
}

#[test]
fn shards_and_the_watermark_survive_a_clean_close_and_reopen_without_a_scan() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = ShardStore::open(&config(dir.path(), 2)).expect("open");
        store.create_volume(VOL, &layout()).expect("create");
        for stripe in 0..8 {
            store
                .put(VOL, 3, stripe, &payload(3, stripe, 16 << 10))
                .expect("put");
        }
        store.set_destaged_stripes(VOL, 8).expect("watermark");
    }
    let store = ShardStore::open(&config(dir.path(), 2)).expect("reopen");
    let report = store.recovery_report();
    assert!(!report.unclean_shutdown);
    assert_eq!(report.slots_checked, 0);
    let info = store.volume(VOL).expect("index").expect("volume");
    assert_eq!(info.destaged_stripes, 8);
    assert_eq!(info.layout, layout());
    for stripe in 0..8 {
        assert_eq!(
            store.get(VOL, 3, stripe).expect("get"),
            payload(3, stripe, 16 << 10)
        );
    }
}

#[test]
fn recreating_a_volume_with_another_layout_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ShardStore::open(&config(dir.path(), 1)).expect("open");
    store.create_volume(VOL, &layout()).expect("create");
    store
        .create_volume(VOL, &layout())
        .expect("same layout is idempotent");
    let other = VolumeLayout {
        parity_shards: 3,
        ..layout()
    };
    assert!(matches!(
        store.create_volume(VOL, &other),
        Err(Error::LayoutConflict { .. })
    ));
    let misaligned = VolumeLayout {
        stripe_size_bytes: 4 * 100,
        ..layout()
    };
    assert!(matches!(
        store.create_volume("pvc-x", &misaligned),
        Err(Error::InvalidLayout { .. })
    ));
    assert!(store.create_volume("../escape", &layout()).is_err());
}

#[test]
fn oversized_payloads_and_out_of_range_columns_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ShardStore::open(&config(dir.path(), 1)).expect("open");
    store.create_volume(VOL, &layout()).expect("create");
    assert!(matches!(
        store.put(VOL, 0, 0, &vec![0u8; (16 << 10) + 1]),
        Err(Error::PayloadTooLarge { .. })
    ));
    assert!(matches!(
        store.put(VOL, 6, 0, &[1; 64]),
        Err(Error::ColumnOutOfRange { columns: 6, .. })
    ));
    assert!(matches!(
        store.put("pvc-none", 0, 0, &[1; 64]),
        Err(Error::UnknownVolume { .. })
    ));
}

#[test]
fn deleting_a_volume_removes_its_index_records_and_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ShardStore::open(&config(dir.path(), 2)).expect("open");
    store.create_volume(VOL, &layout()).expect("create");
    for column in 0..6 {
        store
            .put(VOL, column, 0, &payload(column, 0, 16 << 10))
            .expect("put");
    }
    let used_before: u64 = store
        .usage()
        .expect("usage")
        .iter()
        .map(|u| u.used_bytes)
        .sum();
    assert!(used_before > 0);
    assert!(store.delete_volume(VOL).expect("delete"));
    assert!(store.volume(VOL).expect("index").is_none());
    assert!(store.entry(VOL, 0, 0).expect("index").is_none());
    assert_eq!(
        store
            .usage()
            .expect("usage")
            .iter()
            .map(|u| u.used_bytes)
            .sum::<u64>(),
        0
    );
    assert!(!store.delete_volume(VOL).expect("second delete is a no-op"));
}

#[test]
fn unreferenced_volume_directories_are_removed_on_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), 1);
    drop(ShardStore::open(&cfg).expect("open"));
    // What an interrupted delete leaves behind: files with no index record.
    let orphan = cfg.disks[0].join("couchestor-shards").join("pvc-gone");
    std::fs::create_dir_all(&orphan).expect("mkdir");
    std::fs::write(orphan.join("col-0.shards"), [7u8; 8192]).expect("write");
    let store = ShardStore::open(&cfg).expect("reopen");
    assert_eq!(
        store.recovery_report().removed_unreferenced,
        vec![orphan.clone()]
    );
    assert!(!orphan.exists());
}

#[test]
fn the_buffered_path_round_trips_and_detects_corruption() {
    // Linux ≥ 6.6 tmpfs accepts O_DIRECT, so the fallback is forced through the config knob
    // that the probe result feeds.
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = StoreConfig {
        direct_io: false,
        ..config(dir.path(), 1)
    };
    let store = ShardStore::open(&cfg).expect("open");
    assert!(!store.usage().expect("usage")[0].direct_io);
    store.create_volume(VOL, &layout()).expect("create");
    store.put(VOL, 1, 4, &payload(1, 4, 16 << 10)).expect("put");
    assert_eq!(store.get(VOL, 1, 4).expect("get"), payload(1, 4, 16 << 10));
    let offset = store
        .entry(VOL, 1, 4)
        .expect("index")
        .expect("entry")
        .offset;
    flip_byte(&column_file(&store, 1), offset + BLOCK_BYTES as u64);
    assert!(matches!(store.get(VOL, 1, 4), Err(Error::Corrupt { .. })));
}

#[test]
fn a_disk_filesystem_takes_the_direct_io_path() {
    // Guards the README's claim that the component tests exercise O_DIRECT (temp dirs are
    // on ext4 here and in CI).
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ShardStore::open(&config(dir.path(), 1)).expect("open");
    assert!(store.usage().expect("usage")[0].direct_io);
}

#[test]
fn a_group_write_stores_every_shard_and_rewrites_bump_generations() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ShardStore::open(&config(dir.path(), 1)).expect("open");
    store.create_volume(VOL, &layout()).expect("create");
    let shards: Vec<(u64, Vec<u8>)> = (0..10).map(|s| (s, payload(3, s, 16 << 10))).collect();
    let group: Vec<(u64, &[u8])> = shards.iter().map(|(s, p)| (*s, p.as_slice())).collect();
    assert_eq!(store.put_batch(VOL, 3, &group).expect("group"), vec![1; 10]);
    // Rewrite half of them (with other bytes) in a second group.
    let again: Vec<(u64, Vec<u8>)> = (5..10).map(|s| (s, payload(4, s, 1000))).collect();
    let group: Vec<(u64, &[u8])> = again.iter().map(|(s, p)| (*s, p.as_slice())).collect();
    assert_eq!(
        store.put_batch(VOL, 3, &group).expect("rewrite"),
        vec![2; 5]
    );
    for s in 0..10u64 {
        let want = if s < 5 {
            &shards[s as usize].1
        } else {
            &again[s as usize - 5].1
        };
        assert_eq!(&store.get(VOL, 3, s).expect("get"), want, "stripe {s}");
    }
    // Reopen: everything is durable and indexed.
    drop(store);
    let store = ShardStore::open(&config(dir.path(), 1)).expect("reopen");
    assert_eq!(store.get(VOL, 3, 7).expect("get"), again[2].1);
}

#[test]
fn a_group_with_a_bad_shard_or_a_repeated_stripe_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = ShardStore::open(&config(dir.path(), 1)).expect("open");
    store.create_volume(VOL, &layout()).expect("create");
    let ok = payload(0, 0, 4096);
    let too_big = vec![0u8; (16 << 10) + 1];
    let err = store
        .put_batch(VOL, 0, &[(0, &ok), (1, &too_big)])
        .expect_err("oversized shard");
    assert!(matches!(err, Error::PayloadTooLarge { .. }), "{err}");
    let err = store
        .put_batch(VOL, 0, &[(2, &ok), (2, &ok)])
        .expect_err("repeated stripe");
    assert!(err.to_string().contains("twice"), "{err}");
    for s in 0..3 {
        assert!(
            matches!(store.get(VOL, 0, s), Err(Error::NotFound { .. })),
            "stripe {s} must not exist"
        );
    }
}
