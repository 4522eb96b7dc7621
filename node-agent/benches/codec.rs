//! Encode and reconstruct (2 shards lost) throughput of a 1 MiB stripe for k4m2 and k8m3:
//! our ISA-L codec vs **raw ISA-L** (the same `erasure-isa-l` calls without our checks and
//! trait dispatch — the overhead goal is ≥ 1.0×), the pure-Rust codec, and
//! `reed-solomon-simd` (GF(2^16), a different code) as an outside baseline. Throughput counts
//! the stripe's data bytes.
//!
//! `cargo bench -p couchestor-node-agent --bench codec -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::num::NonZeroUsize;

use couchestor_node_agent::codec::{ErasureCodec, IsalCodec, PureRustCodec};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use erasure_isa_l::erasure::ErasureCode;

const STRIPE: usize = 1 << 20;

fn data(k: usize) -> Vec<Vec<u8>> {
    let len = STRIPE / k / 64 * 64;
    (0..k)
        .map(|c| {
            (0..len)
                .map(|i| (i * 7 + c * 13 + (i >> 9)) as u8)
                .collect()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    for (k, m) in [(4usize, 2usize), (8, 3)] {
        let data = data(k);
        let len = data[0].len();
        let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let codecs: [(&str, Box<dyn ErasureCodec>); 2] = [
            ("isa-l", Box::new(IsalCodec::new(k, m).expect("geometry"))),
            (
                "pure-rust",
                Box::new(PureRustCodec::new(k, m).expect("geometry")),
            ),
        ];
        let mut group = c.benchmark_group(format!("encode/k{k}m{m}"));
        group.throughput(Throughput::Bytes((len * k) as u64));
        for (name, codec) in &codecs {
            let mut parity = vec![vec![0u8; len]; m];
            group.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter(|| {
                    let mut outs: Vec<&mut [u8]> =
                        parity.iter_mut().map(Vec::as_mut_slice).collect();
                    codec.encode(black_box(&refs), &mut outs).expect("encode");
                });
            });
        }
        let raw = ErasureCode::with_cauchy(
            NonZeroUsize::new(k).expect("k"),
            NonZeroUsize::new(m).expect("m"),
        )
        .expect("raw ISA-L");
        let mut raw_parity = vec![vec![0u8; len]; m];
        group.bench_function(BenchmarkId::from_parameter("raw-isa-l"), |b| {
            b.iter(|| {
                let mut outs: Vec<&mut [u8]> =
                    raw_parity.iter_mut().map(Vec::as_mut_slice).collect();
                raw.encode(black_box(&refs), &mut outs).expect("encode");
            });
        });
        group.bench_function(BenchmarkId::from_parameter("reed-solomon-simd"), |b| {
            b.iter(|| reed_solomon_simd::encode(k, m, black_box(&refs)).expect("encode"));
        });
        group.finish();

        // Lose data shard 0 and the first parity shard: the costly case (data to rebuild).
        let mut parity = vec![vec![0u8; len]; m];
        {
            let mut outs: Vec<&mut [u8]> = parity.iter_mut().map(Vec::as_mut_slice).collect();
            codecs[0].1.encode(&refs, &mut outs).expect("encode");
        }
        let full: Vec<Vec<u8>> = data.iter().cloned().chain(parity).collect();
        let mut group = c.benchmark_group(format!("reconstruct-2-lost/k{k}m{m}"));
        group.throughput(Throughput::Bytes((len * k) as u64));
        for (name, codec) in &codecs {
            group.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter_batched(
                    || {
                        let mut s: Vec<Option<Vec<u8>>> = full.iter().cloned().map(Some).collect();
                        s[0] = None;
                        s[k] = None;
                        s
                    },
                    // Hand the shards back so their drop (six frees) is not timed, as
                    // for the raw baseline below, which returns its buffers.
                    |mut s| {
                        codec.reconstruct(black_box(&mut s)).expect("reconstruct");
                        s
                    },
                    criterion::BatchSize::LargeInput,
                );
            });
        }
        // Raw ISA-L decode over the same buffers our codec builds (lost ones zeroed).
        group.bench_function(BenchmarkId::from_parameter("raw-isa-l"), |b| {
            b.iter_batched(
                || {
                    let mut d: Vec<Vec<u8>> = full[..k].to_vec();
                    let mut p: Vec<Vec<u8>> = full[k..].to_vec();
                    d[0] = vec![0u8; len];
                    p[0] = vec![0u8; len];
                    (d, p)
                },
                |(mut d, mut p)| {
                    raw.decode(black_box(&mut d), &mut p, vec![0, k])
                        .expect("decode");
                    (d, p)
                },
                criterion::BatchSize::LargeInput,
            );
        });
        let rs_parity = reed_solomon_simd::encode(k, m, &refs).expect("encode");
        group.bench_function(BenchmarkId::from_parameter("reed-solomon-simd"), |b| {
            b.iter(|| {
                let originals = (1..k).map(|i| (i, data[i].as_slice()));
                let recovery = (1..m).map(|i| (i, rs_parity[i].as_slice()));
                reed_solomon_simd::decode(k, m, originals, recovery).expect("decode")
            });
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
