//! Rebuilding the L2 index from the data file on open.
//!
//! Every region whose header is intact is scanned from its start; the scan of a region stops at
//! the first record that is not intact (bad magic or header CRC, a length running past the
//! region, non-UTF-8 key) or that carries a different epoch (left over from the region's previous
//! use). For every key the record with the highest sequence number wins; a winning tombstone
//! means "absent". Payloads are not read here: they are verified on every read.

use std::collections::HashMap;

use super::Loc;
use super::format::{self, Geometry, Kind, RECORD_HEADER_LEN, REGION_HEADER_LEN};
use crate::key::CacheKey;

/// What a scan found.
#[derive(Debug, Default)]
pub(crate) struct Recovered {
    pub(crate) index: HashMap<CacheKey, Loc>,
    /// Epoch of each region; 0 when its header is not intact (the region is free).
    pub(crate) epochs: Vec<u64>,
    /// Keys with a record in each region (superseded ones included).
    pub(crate) region_keys: Vec<Vec<CacheKey>>,
    /// Regions with an intact header, oldest epoch first.
    pub(crate) sealed: Vec<usize>,
    /// Regions without an intact header.
    pub(crate) free: Vec<usize>,
    pub(crate) max_seq: u64,
    pub(crate) max_epoch: u64,
    /// Records accepted, tombstones included.
    pub(crate) records: u64,
}

/// Scans the mapped data file.
pub(crate) fn scan(file: &[u8], g: Geometry) -> Recovered {
    let count = g.region_count as usize;
    let mut r = Recovered {
        epochs: vec![0; count],
        region_keys: vec![Vec::new(); count],
        ..Recovered::default()
    };
    // key -> (seq, Some(loc) for a value, None for a tombstone)
    let mut latest: HashMap<CacheKey, (u64, Option<Loc>)> = HashMap::new();
    let mut sealed = Vec::new();
    for region in 0..count {
        let start = g.region_start(region) as usize;
        let bytes = &file[start..start + g.region_size as usize];
        let Some(epoch) = format::decode_region_header(bytes) else {
            r.free.push(region);
            continue;
        };
        r.epochs[region] = epoch;
        r.max_epoch = r.max_epoch.max(epoch);
        sealed.push((epoch, region));
        let mut off = REGION_HEADER_LEN as usize;
        while off + RECORD_HEADER_LEN <= bytes.len() {
            let Some((h, bucket, name)) = format::decode_record_header(&bytes[off..]) else {
                break;
            };
            if h.epoch != epoch {
                break;
            }
            let (Ok(bucket), Ok(name)) = (std::str::from_utf8(bucket), std::str::from_utf8(name))
            else {
                break;
            };
            let key = CacheKey::new(bucket, name);
            let len = h.record_len();
            // Tombstones and superseded values are candidates too, meaning "absent".
            let loc = (h.kind == Kind::Value).then_some(Loc {
                region: region as u32,
                offset: start as u64 + off as u64,
                len: len as u32,
                epoch,
                seq: h.seq,
            });
            r.max_seq = r.max_seq.max(h.seq);
            r.records += 1;
            match latest.get(&key) {
                Some((seq, _)) if *seq >= h.seq => {}
                _ => {
                    latest.insert(key.clone(), (h.seq, loc));
                }
            }
            r.region_keys[region].push(key);
            off += len as usize;
        }
    }
    sealed.sort_unstable();
    r.sealed = sealed.into_iter().map(|(_, region)| region).collect();
    r.index = latest
        .into_iter()
        .filter_map(|(k, (_, loc))| loc.map(|l| (k, l)))
        .collect();
    r
}
