use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use bytes::Bytes;
use prometheus_client::registry::Registry;

use super::*;
use crate::compression::Compression;
use crate::metrics::Metrics;

fn config(dir: &Path, capacity: u64, region: u64) -> L2Config {
    L2Config {
        dir: dir.to_path_buf(),
        capacity_bytes: capacity,
        region_bytes: region,
        compression: Compression::Lz4,
        durability: Durability::Sync,
    }
}

fn open(c: &L2Config) -> L2 {
    L2::open(c, Metrics::register(&mut Registry::default()).l2).expect("open L2")
}

fn put(l2: &L2, key: &CacheKey, data: &[u8]) -> u64 {
    let data = Bytes::copy_from_slice(data);
    l2.put(
        key,
        ValueRecord {
            data: &data,
            checksum: crc32c::crc32c(&data),
            created_ms: 1,
            access_count: 5,
        },
    )
    .expect("put")
    .expect("admitted")
}

fn value(i: u32, len: usize) -> Vec<u8> {
    // Half compressible, half not, and different for every i.
    let mut v: Vec<u8> = (0..len / 2).map(|j| (j as u32 ^ i) as u8).collect();
    let mut x = u64::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(x as u8);
    }
    v
}

fn key(i: u32) -> CacheKey {
    CacheKey::new("b", format!("k{i}"))
}

#[test]
fn values_written_to_l2_are_read_back_byte_for_byte_after_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = config(dir.path(), 1 << 20, 64 << 10);
    {
        let l2 = open(&c);
        for i in 0..50 {
            put(&l2, &key(i), &value(i, 3000));
        }
    }
    let l2 = open(&c);
    for i in 0..50 {
        let v = l2.read(&key(i), true).expect("present after reopen");
        assert_eq!(&v.data[..], &value(i, 3000)[..]);
        assert_eq!(v.access_count, 5, "access count survives the restart");
    }
}

#[test]
fn the_newest_record_of_a_key_wins_and_tombstones_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = config(dir.path(), 1 << 20, 64 << 10);
    {
        let l2 = open(&c);
        put(&l2, &key(1), b"old value");
        put(&l2, &key(1), b"new value");
        put(&l2, &key(2), b"doomed");
        l2.remove(&key(2)).expect("remove");
        assert!(l2.read(&key(2), true).is_none());
    }
    let l2 = open(&c);
    assert_eq!(&l2.read(&key(1), true).expect("hit").data[..], b"new value");
    assert!(
        l2.read(&key(2), true).is_none(),
        "tombstone kept the key absent"
    );
}

#[test]
fn a_flipped_payload_bit_is_a_miss_and_the_entry_is_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = config(dir.path(), 1 << 20, 64 << 10);
    let l2 = open(&c);
    put(&l2, &key(1), &value(1, 2000));
    put(&l2, &key(2), &value(2, 2000));
    let loc = *read(&l2.index).get(&key(1)).expect("indexed");
    let other = OpenOptions::new()
        .write(true)
        .open(dir.path().join(DATA_FILE))
        .expect("open for damage");
    let at = loc.offset + loc.len as u64 - 100;
    let mut b = [0u8; 1];
    l2.file.read_exact_at(&mut b, at).expect("read");
    other.write_all_at(&[b[0] ^ 0x01], at).expect("damage");
    assert!(l2.read(&key(1), true).is_none(), "corrupt entry is a miss");
    assert!(!l2.contains_key(&key(1)), "and is dropped from the index");
    assert_eq!(
        &l2.read(&key(2), true).expect("neighbour").data[..],
        &value(2, 2000)[..]
    );
    assert_eq!(l2.metrics.corrupt.get(), 1);
}

#[test]
fn filling_l2_evicts_whole_regions_oldest_first_and_never_serves_wrong_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 4 regions of 16 KiB; ~3 KiB records: ~5 per region, 200 writes wrap the file many times.
    let c = config(dir.path(), 64 << 10, 16 << 10);
    let l2 = open(&c);
    for i in 0..200 {
        put(&l2, &key(i), &value(i, 3000));
    }
    let mut present = 0;
    for i in 0..200 {
        if let Some(v) = l2.read(&key(i), true) {
            assert_eq!(&v.data[..], &value(i, 3000)[..], "key {i}");
            present += 1;
        }
    }
    assert!(present >= 10, "recent entries are kept ({present})");
    assert!(l2.read(&key(0), true).is_none(), "the oldest were evicted");
    assert!(l2.read(&key(199), true).is_some(), "the newest is there");
    assert!(l2.metrics.evictions.get() > 0);
    drop(l2);
    let l2 = open(&c);
    for i in 0..200 {
        if let Some(v) = l2.read(&key(i), true) {
            assert_eq!(&v.data[..], &value(i, 3000)[..], "key {i} after reopen");
        }
    }
}

#[test]
fn a_torn_last_record_is_ignored_after_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = config(dir.path(), 1 << 20, 64 << 10);
    let loc;
    {
        let l2 = open(&c);
        put(&l2, &key(1), &value(1, 1000));
        put(&l2, &key(2), b"first version");
        put(&l2, &key(2), &value(2, 5000));
        loc = *read(&l2.index).get(&key(2)).expect("indexed");
    }
    // Simulate a crash half way through the last write: its second half never reached the disk.
    let f = OpenOptions::new()
        .write(true)
        .open(dir.path().join(DATA_FILE))
        .expect("open");
    let half = loc.len as u64 / 2;
    f.write_all_at(
        &vec![0u8; (loc.len as u64 - half) as usize],
        loc.offset + half,
    )
    .expect("tear");
    let l2 = open(&c);
    assert_eq!(
        &l2.read(&key(1), true).expect("intact").data[..],
        &value(1, 1000)[..]
    );
    // The torn record's header is intact, so recovery indexes it; the read must reject it.
    assert!(l2.read(&key(2), true).is_none(), "torn record is a miss");
}

#[test]
fn a_second_open_of_the_same_l2_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = config(dir.path(), 1 << 20, 64 << 10);
    let _first = open(&c);
    let second = L2::open(&c, Metrics::register(&mut Registry::default()).l2);
    assert!(matches!(second, Err(Error::L2Locked { .. })));
}

#[test]
fn reopening_with_a_different_geometry_starts_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let l2 = open(&config(dir.path(), 1 << 20, 64 << 10));
        put(&l2, &key(1), b"v");
    }
    let l2 = open(&config(dir.path(), 1 << 20, 128 << 10));
    assert_eq!(l2.len(), 0);
    assert!(l2.read(&key(1), true).is_none());
}

#[test]
fn a_value_larger_than_a_region_is_not_admitted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let l2 = open(&config(dir.path(), 64 << 10, 16 << 10));
    let big = Bytes::from(value(9, 40_000));
    let admitted = l2
        .put(
            &key(9),
            ValueRecord {
                data: &big,
                checksum: crc32c::crc32c(&big),
                created_ms: 0,
                access_count: 0,
            },
        )
        .expect("put");
    assert_eq!(admitted, None);
    assert!(l2.read(&key(9), true).is_none());
}

#[test]
fn a_damaged_newer_record_does_not_bring_back_the_older_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = config(dir.path(), 1 << 20, 64 << 10);
    let newer;
    {
        let l2 = open(&c);
        put(&l2, &key(1), b"version one");
        put(&l2, &key(1), b"version two");
        newer = *read(&l2.index).get(&key(1)).expect("indexed");
    }
    // Bit rot in the newer record's header: recovery stops scanning its region there.
    let f = OpenOptions::new()
        .write(true)
        .open(dir.path().join(DATA_FILE))
        .expect("open");
    f.write_all_at(&[0xFF], newer.offset + 17).expect("damage");
    let l2 = open(&c);
    assert!(
        l2.read(&key(1), true).is_none(),
        "the superseded version one must stay dead"
    );
}
