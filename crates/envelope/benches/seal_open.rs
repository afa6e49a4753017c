//! Seal and open throughput over plaintext sizes, and the cost of `verify_key`.
//!
//! ```sh
//! cargo bench -p envelope --bench seal_open
//! ```
//!
//! `seal` includes drawing the 32-byte salt from the operating system (one `getrandom` call),
//! as in production; `seal_with_rng` draws it from a user-space ChaCha20 instead, so the
//! difference between the two series is the system call.

// Criterion's `criterion_group!`/`criterion_main!` generate undocumented public items, and a
// benchmark that cannot seal has nothing to measure, so it may unwrap.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use chacha20::ChaCha20Rng;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use envelope::rand_core::SeedableRng;
use envelope::{Context, Dek, Envelope, open, seal, seal_with_rng};

const SIZES: [(usize, &str); 4] = [
    (32, "32 B"),
    (1024, "1 KiB"),
    (64 * 1024, "64 KiB"),
    (1024 * 1024, "1 MiB"),
];

fn context() -> Context {
    Context::builder()
        .vault_id("vault-7f3a")
        .path("payments/stripe/api-key")
        .version(3)
        .secret_type("api_key")
        .custody_mode("2of3_multi_hsm")
        .build()
        .unwrap()
}

fn seal_open(c: &mut Criterion) {
    let dek = Dek::generate().unwrap();
    let context = context();
    let mut rng = ChaCha20Rng::from_seed([1; 32]);

    let mut group = c.benchmark_group("seal");
    for (size, label) in SIZES {
        let plaintext = vec![0x5a; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(label), &plaintext, |b, pt| {
            b.iter(|| seal(&dek, &context, black_box(pt)).unwrap());
        });
    }
    group.finish();

    let mut group = c.benchmark_group("seal_with_rng");
    for (size, label) in SIZES {
        let plaintext = vec![0x5a; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(label), &plaintext, |b, pt| {
            b.iter(|| seal_with_rng(&dek, &context, black_box(pt), &mut rng).unwrap());
        });
    }
    group.finish();

    let mut group = c.benchmark_group("open");
    for (size, label) in SIZES {
        let envelope = seal(&dek, &context, &vec![0x5a; size]).unwrap();
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(label), &envelope, |b, env| {
            b.iter(|| open(&dek, &context, black_box(env)).unwrap());
        });
    }
    group.finish();

    // Parsing alone (framing checks and one copy), which every stored envelope goes through.
    let mut group = c.benchmark_group("from_bytes");
    for (size, label) in SIZES {
        let bytes = seal(&dek, &context, &vec![0x5a; size]).unwrap().to_bytes();
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(label), &bytes, |b, bytes| {
            b.iter(|| Envelope::from_bytes(black_box(bytes)).unwrap());
        });
    }
    group.finish();
}

fn verify_key(c: &mut Criterion) {
    // Independent of the plaintext size: one HKDF extract and one expand. This is the cost of
    // each candidate DEK a custody layer tries when rebuilding from shares.
    let dek = Dek::generate().unwrap();
    let wrong = Dek::generate().unwrap();
    let context = context();
    let envelope = seal(&dek, &context, &[0x5a; 1024]).unwrap();
    let mut group = c.benchmark_group("verify_key");
    group.bench_function("right key", |b| {
        b.iter(|| envelope.verify_key(black_box(&dek), &context).unwrap());
    });
    group.bench_function("wrong key", |b| {
        b.iter(|| {
            envelope
                .verify_key(black_box(&wrong), &context)
                .unwrap_err()
        });
    });
    group.finish();
}

criterion_group!(benches, seal_open, verify_key);
criterion_main!(benches);
