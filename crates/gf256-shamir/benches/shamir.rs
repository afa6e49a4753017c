//! Split and reconstruct throughput: one series per backend of this crate, and the peers a user
//! could pick instead (`blahaj`, `vsss-rs`, `shamirsecretsharing`), in the same groups.
//!
//! ```text
//! cargo bench -p gf256-shamir --bench shamir -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! Cases: 32-byte secrets (a data encryption key) 2-of-3 and 3-of-5, split and reconstruct;
//! 1 MiB secrets 2-of-3, split and reconstruct, reported as secret bytes per second.
//!
//! The per-backend series use the allocation-free forms (`split_into`, `combine_into`), which
//! measure the arithmetic; `split()`, `Splitter::split`, `combine()` and the `soft` variants
//! return owned shares or secrets, as the peers do, so those compare like with like. The
//! coefficient generator is each library's default where it has no parameter
//! (`shamirsecretsharing`), and this crate's `FastRng` where one is passed (`blahaj`,
//! `vsss-rs`), so that the peers are not slowed down by a worse generator than ours. The
//! `split()` series is the one-call API (thread-local `FastRng`, detected backend).
//! `shamirsecretsharing` only splits 32-byte keys: its 1 MiB case loops over 32-byte chunks.

// Benchmarks are not tests, so clippy.toml's test allowances do not reach them: a failed
// unwrap here aborts a benchmark run, which is the right outcome, and the sizes cast are tiny.
#![allow(clippy::unwrap_used, clippy::cast_possible_truncation, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gf256_shamir::{Backend, Combiner, FastRng, Share, Splitter, Threshold, combine, split};
use rand_core::Rng;

const MIB: usize = 1 << 20;

fn secret(len: usize) -> Vec<u8> {
    let mut rng = FastRng::new().unwrap();
    let mut secret = vec![0u8; len];
    rng.fill_bytes(&mut secret);
    secret
}

fn backends() -> Vec<Backend> {
    Backend::ALL
        .into_iter()
        .filter(|b| b.is_supported())
        .rev()
        .collect()
}

fn ours_split(c: &mut Criterion, group_name: &str, len: usize, t: u8, n: u8) {
    let secret = secret(len);
    let threshold = Threshold::try_from(t).unwrap();
    let mut group = c.benchmark_group(group_name);
    if len >= MIB {
        group.throughput(Throughput::Bytes(len as u64));
        group.sample_size(20);
    }
    // One series per backend: the allocation-free form, which measures the backend itself
    // (with owned outputs, 1 MiB shares are dominated by fresh pages from the OS).
    // The list of output slices is built once, outside the timed loop: building it is the
    // caller's bookkeeping (a `Vec` allocation and free per call), not part of the split.
    let mut buffers = vec![vec![0u8; len]; usize::from(n)];
    let mut outputs: Vec<&mut [u8]> = buffers.iter_mut().map(Vec::as_mut_slice).collect();
    for backend in backends() {
        let splitter = Splitter::new(threshold, n)
            .unwrap()
            .with_backend(backend)
            .unwrap();
        group.bench_function(BenchmarkId::new("gf256-shamir split_into", backend), |b| {
            b.iter(|| {
                splitter
                    .split_into(black_box(&secret), black_box(&mut outputs))
                    .unwrap();
            });
        });
    }
    // Owned shares, as the peers return them: the one-call API and a reused splitter.
    group.bench_function(BenchmarkId::new("gf256-shamir", "split()"), |b| {
        b.iter(|| split(black_box(&secret), t, n).unwrap());
    });
    let splitter = Splitter::new(threshold, n).unwrap();
    group.bench_function(BenchmarkId::new("gf256-shamir", "Splitter::split"), |b| {
        b.iter(|| splitter.split(black_box(&secret)).unwrap());
    });
    let soft = Splitter::new(threshold, n)
        .unwrap()
        .with_backend(Backend::Soft)
        .unwrap();
    group.bench_function(
        BenchmarkId::new("gf256-shamir", "Splitter::split soft"),
        |b| {
            b.iter(|| soft.split(black_box(&secret)).unwrap());
        },
    );

    let sharks = blahaj::Sharks(t);
    let mut rng = FastRng::new().unwrap();
    group.bench_function("blahaj", |b| {
        b.iter(|| {
            sharks
                .dealer_rng(black_box(&secret), &mut rng)
                .take(usize::from(n))
                .collect::<Vec<blahaj::Share>>()
        });
    });
    group.bench_function("vsss-rs", |b| {
        b.iter(|| {
            vsss_rs::Gf256::split_array(
                usize::from(t),
                usize::from(n),
                black_box(&secret),
                &mut rng,
            )
            .unwrap()
        });
    });
    group.bench_function("shamirsecretsharing", |b| {
        b.iter(|| {
            black_box(&secret)
                .chunks(32)
                .map(|chunk| {
                    let mut key = [0u8; 32];
                    key[..chunk.len()].copy_from_slice(chunk);
                    shamirsecretsharing::hazmat::create_keyshares(&key, n, t).unwrap()
                })
                .collect::<Vec<_>>()
        });
    });
    group.finish();
}

fn ours_combine(c: &mut Criterion, group_name: &str, len: usize, t: u8, n: u8) {
    let secret = secret(len);
    let threshold = Threshold::try_from(t).unwrap();
    let k = usize::from(t);
    let mut group = c.benchmark_group(group_name);
    if len >= MIB {
        group.throughput(Throughput::Bytes(len as u64));
        group.sample_size(20);
    }
    let shares: Vec<Share> = Splitter::new(threshold, n).unwrap().split(&secret).unwrap();
    // Reconstruct from the last `t` shares (x = n - t + 1, ..., n), as after losing the first.
    let basis = &shares[shares.len() - k..];
    let mut out = vec![0u8; len];
    for backend in backends() {
        let combiner = Combiner::new(threshold).with_backend(backend).unwrap();
        assert_eq!(combiner.combine(basis).unwrap().as_slice(), secret);
        group.bench_function(
            BenchmarkId::new("gf256-shamir combine_into", backend),
            |b| {
                b.iter(|| combiner.combine_into(black_box(basis), &mut out).unwrap());
            },
        );
    }
    group.bench_function(BenchmarkId::new("gf256-shamir", "combine()"), |b| {
        b.iter(|| combine(black_box(basis), t).unwrap());
    });
    let soft = Combiner::new(threshold)
        .with_backend(Backend::Soft)
        .unwrap();
    group.bench_function(
        BenchmarkId::new("gf256-shamir", "Combiner::combine soft"),
        |b| {
            b.iter(|| soft.combine(black_box(basis)).unwrap());
        },
    );

    let sharks = blahaj::Sharks(t);
    let mut rng = FastRng::new().unwrap();
    let blahaj_shares: Vec<blahaj::Share> = sharks
        .dealer_rng(&secret, &mut rng)
        .take(usize::from(n))
        .collect();
    let blahaj_basis = &blahaj_shares[blahaj_shares.len() - k..];
    assert_eq!(sharks.recover(blahaj_basis).unwrap(), secret);
    group.bench_function("blahaj", |b| {
        b.iter(|| sharks.recover(black_box(blahaj_basis)).unwrap());
    });

    let vsss_shares = vsss_rs::Gf256::split_array(k, usize::from(n), &secret, &mut rng).unwrap();
    let vsss_basis = vsss_shares[vsss_shares.len() - k..].to_vec();
    assert_eq!(vsss_rs::Gf256::combine_array(&vsss_basis).unwrap(), secret);
    group.bench_function("vsss-rs", |b| {
        b.iter(|| vsss_rs::Gf256::combine_array(black_box(&vsss_basis)).unwrap());
    });

    let sss_shares: Vec<Vec<Vec<u8>>> = secret
        .chunks(32)
        .map(|chunk| {
            let mut key = [0u8; 32];
            key[..chunk.len()].copy_from_slice(chunk);
            let shares = shamirsecretsharing::hazmat::create_keyshares(&key, n, t).unwrap();
            shares[shares.len() - k..].to_vec()
        })
        .collect();
    group.bench_function("shamirsecretsharing", |b| {
        b.iter(|| {
            black_box(&sss_shares)
                .iter()
                .map(|basis| shamirsecretsharing::hazmat::combine_keyshares(basis).unwrap())
                .collect::<Vec<_>>()
        });
    });
    group.finish();
}

fn small(c: &mut Criterion) {
    ours_split(c, "split 32 B 2-of-3", 32, 2, 3);
    ours_combine(c, "reconstruct 32 B 2-of-3", 32, 2, 3);
    ours_split(c, "split 32 B 3-of-5", 32, 3, 5);
    ours_combine(c, "reconstruct 32 B 3-of-5", 32, 3, 5);
}

fn large(c: &mut Criterion) {
    ours_split(c, "split 1 MiB 2-of-3", MIB, 2, 3);
    ours_combine(c, "reconstruct 1 MiB 2-of-3", MIB, 2, 3);
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = small, large
}
criterion_main!(benches);
