//! Split and combine throughput for a 32-byte data key and a 1 MiB secret, with 2 and 3
//! shares.
//!
//! Run with `cargo bench -p xor-split`. Series:
//! - `split/os`: [`xor_split::split`], randomness from the operating system (`getrandom`);
//! - `split/chacha20`: [`xor_split::split_with_rng`] with a user-space ChaCha20 CSPRNG;
//! - `split_into/chacha20`: [`xor_split::split_into_with_rng`], the allocation-free form;
//! - `combine/alloc` and `combine/into`: [`xor_split::combine`] and
//!   [`xor_split::combine_into`];
//! - `baseline/copy`, `baseline/getrandom`, `baseline/chacha20` and `baseline/zeroize`: a plain
//!   `copy_from_slice`, a plain `getrandom::fill` (in the same 64 KiB requests as `split`), a
//!   ChaCha20 `fill_bytes` and a `zeroize` of the same size: the memory-bandwidth, generator
//!   and wiping costs the series above are made of.
//!
//! Throughput is reported in bytes of *secret* per second. The allocating series include
//! dropping their result, and so the wipe of every share or secret buffer: that is what a
//! caller pays.

// A benchmark is not a test, so clippy.toml's test exemptions do not cover it; a failed split
// here is a broken benchmark that should stop loudly, exactly as in a test.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Duration;

use chacha20::ChaCha20Rng;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand_core::SeedableRng;
use zeroize::Zeroize;

const SIZES: [(usize, &str); 2] = [(32, "32B"), (1 << 20, "1MiB")];
const SHARE_COUNTS: [usize; 2] = [2, 3];

fn bench_split(c: &mut Criterion) {
    let mut group = c.benchmark_group("split");
    for (size, label) in SIZES {
        let secret = vec![0x5Au8; size];
        group.throughput(Throughput::Bytes(size as u64));
        for n in SHARE_COUNTS {
            let id = format!("{label}/n={n}");
            group.bench_function(BenchmarkId::new("os", &id), |b| {
                b.iter(|| xor_split::split(black_box(&secret), n).unwrap());
            });
            let mut rng = ChaCha20Rng::from_seed([7; 32]);
            group.bench_function(BenchmarkId::new("chacha20", &id), |b| {
                b.iter(|| xor_split::split_with_rng(black_box(&secret), n, &mut rng).unwrap());
            });
        }
    }
    group.finish();

    let mut group = c.benchmark_group("split_into");
    for (size, label) in SIZES {
        let secret = vec![0x5Au8; size];
        group.throughput(Throughput::Bytes(size as u64));
        for n in SHARE_COUNTS {
            let id = format!("{label}/n={n}");
            let mut flat = vec![0u8; size * n];
            let mut rng = ChaCha20Rng::from_seed([7; 32]);
            group.bench_function(BenchmarkId::new("chacha20", &id), |b| {
                b.iter(|| {
                    let mut shares: Vec<&mut [u8]> = flat.chunks_mut(size).collect();
                    xor_split::split_into_with_rng(black_box(&secret), &mut shares, &mut rng)
                        .unwrap();
                });
            });
        }
    }
    group.finish();
}

fn bench_combine(c: &mut Criterion) {
    let mut group = c.benchmark_group("combine");
    for (size, label) in SIZES {
        let secret = vec![0x5Au8; size];
        group.throughput(Throughput::Bytes(size as u64));
        for n in SHARE_COUNTS {
            let id = format!("{label}/n={n}");
            let mut rng = ChaCha20Rng::from_seed([7; 32]);
            let shares = xor_split::split_with_rng(&secret, n, &mut rng).unwrap();
            group.bench_function(BenchmarkId::new("alloc", &id), |b| {
                b.iter(|| xor_split::combine(black_box(&shares)).unwrap());
            });
            let views: Vec<&[u8]> = shares
                .iter()
                .map(xor_split::XorShare::expose_secret)
                .collect();
            let mut out = vec![0u8; size];
            group.bench_function(BenchmarkId::new("into", &id), |b| {
                b.iter(|| xor_split::combine_into(black_box(&views), &mut out).unwrap());
            });
        }
    }
    group.finish();
}

fn bench_baselines(c: &mut Criterion) {
    let mut group = c.benchmark_group("baseline");
    for (size, label) in SIZES {
        let src = vec![0x5Au8; size];
        let mut dst = vec![0u8; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::new("copy", label), |b| {
            b.iter(|| dst.copy_from_slice(black_box(&src)));
        });
        group.bench_function(BenchmarkId::new("getrandom", label), |b| {
            b.iter(|| {
                for chunk in dst.chunks_mut(64 * 1024) {
                    getrandom::fill(chunk).unwrap();
                }
            });
        });
        let mut rng = ChaCha20Rng::from_seed([7; 32]);
        group.bench_function(BenchmarkId::new("chacha20", label), |b| {
            b.iter(|| rand_core::Rng::fill_bytes(&mut rng, black_box(&mut dst[..])));
        });
        group.bench_function(BenchmarkId::new("zeroize", label), |b| {
            b.iter(|| black_box(&mut dst[..]).zeroize());
        });
    }
    group.finish();
}

// Short runs (30 samples of 2 s after a 0.5 s warm-up): the whole suite measures in about
// five minutes on 2 cores, dominated by the slow 1 MiB splits.
fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_split, bench_combine, bench_baselines
}
criterion_main!(benches);
