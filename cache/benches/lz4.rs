//! LZ4 block compression and decompression: `lz4_flex` (what the cache uses, with the
//! workspace's default safe features) against the C library through the `lz4` crate, on the
//! same inputs and into preallocated buffers; plus the cache's own `Compressor` (which adds the
//! ratio guard and an allocation).
//!
//! `cargo bench -p couchestor-cache --bench lz4 -- --measurement-time 3`

use std::hint::black_box;

use bytes::Bytes;
use couchestor_cache::{Codec, Compression, Compressor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// 64 KiB resembling block-device data: runs of text-like records, zero pages and random bytes.
fn mixed(len: usize) -> Vec<u8> {
    let words = [
        "volume", "stripe", "shard", "pool", "nvme", "tier", "cold", "hot", "archive", "replica",
    ];
    let mut out = Vec::with_capacity(len);
    let mut x = 0x1234_5678_9abc_def1u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    while out.len() < len {
        match next() % 4 {
            0 | 1 => {
                for _ in 0..32 {
                    let r = next();
                    out.extend_from_slice(words[(r % 10) as usize].as_bytes());
                    out.extend_from_slice(format!("={} ", r % 1000).as_bytes());
                }
            }
            2 => out.extend(std::iter::repeat_n(0u8, 512)),
            _ => (0..256).for_each(|_| out.push(next() as u8)),
        }
    }
    out.truncate(len);
    out
}

/// A text log: highly compressible.
fn text(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(
            format!(
                "2026-11-22T04:{:02}:{:02}Z INFO node-agent shard={} state=ok\n",
                i / 60 % 60,
                i % 60,
                i * 7 % 1013
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    out
}

fn bench(c: &mut Criterion) {
    let len = 64 << 10;
    for (name, data) in [("mixed", mixed(len)), ("text", text(len))] {
        let bound = lz4_flex::block::get_maximum_output_size(len)
            .max(lz4::block::compress_bound(len).expect("bound"));
        let mut out = vec![0u8; bound];
        let compressed_flex = lz4_flex::block::compress(&data);
        let compressed_c =
            lz4::block::compress(&data, Some(lz4::block::CompressionMode::DEFAULT), false)
                .expect("c compress");
        println!(
            "{name}: ratio lz4_flex {:.3}, C lz4 {:.3}",
            compressed_flex.len() as f64 / len as f64,
            compressed_c.len() as f64 / len as f64
        );

        let mut g = c.benchmark_group(format!("lz4/{name}"));
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function("compress/lz4_flex", |b| {
            b.iter(|| lz4_flex::block::compress_into(black_box(&data), &mut out).expect("fits"))
        });
        g.bench_function("compress/c_lz4", |b| {
            b.iter(|| {
                lz4::block::compress_to_buffer(
                    black_box(&data),
                    Some(lz4::block::CompressionMode::DEFAULT),
                    false,
                    &mut out,
                )
                .expect("fits")
            })
        });
        let mut raw = vec![0u8; len];
        g.bench_function("decompress/lz4_flex", |b| {
            b.iter(|| {
                lz4_flex::block::decompress_into(black_box(&compressed_flex), &mut raw)
                    .expect("decodes")
            })
        });
        g.bench_function("decompress/c_lz4", |b| {
            b.iter(|| {
                lz4::block::decompress_to_buffer(
                    black_box(&compressed_c),
                    Some(len as i32),
                    &mut raw,
                )
                .expect("decodes")
            })
        });
        let compressor = Compressor::new(Compression::Lz4);
        let bytes = Bytes::from(data.clone());
        g.bench_function("compress/cache_compressor", |b| {
            b.iter(|| compressor.encode(black_box(&bytes)))
        });
        let enc = compressor.encode(&bytes);
        assert_eq!(enc.codec, Codec::Lz4);
        g.bench_function("decompress/cache_compressor", |b| {
            b.iter(|| Compressor::decode_bytes(enc.codec, black_box(&enc.payload), len))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
