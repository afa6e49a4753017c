//! Wrap and unwrap of a 32-byte share (one DEK share) with `local` and with `pkcs11` on SoftHSM2.
//!
//! Run: `cargo bench -p kms-providers --bench wrap_unwrap` (needs SoftHSM2:
//! scripts/setup/10-softhsm2.sh).
// Benchmarks are programs, not library code: failing set-up should stop them loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use criterion::{Criterion, Throughput};
use kms_providers::testkit::{SOFTHSM2_CONF, SoftHsmToken};
use kms_providers::{KeyProvider, LocalProvider, WrapContext};

/// Sets `SOFTHSM2_CONF` for the module this process is about to load.
#[allow(unsafe_code)] // The one way to give SoftHSM2 its configuration; see the SAFETY note.
fn export_softhsm_conf(token: &SoftHsmToken) {
    // SAFETY: called first thing in `main`, before any other thread exists (no runtime, no
    // criterion worker), so nothing can read the environment concurrently.
    unsafe {
        std::env::set_var(SOFTHSM2_CONF, token.conf_path());
    }
}

fn main() {
    // SoftHSM2 reads its configuration from the environment when its module is initialized.
    // The token is created and the variable set here, first thing in `main`, before any other
    // thread exists.
    let token = SoftHsmToken::create("kms-providers-bench").unwrap_or_else(|e| panic!("{e}"));
    export_softhsm_conf(&token);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let local = LocalProvider::builder("local")
        .key_dir(dir.path())
        .build()
        .unwrap();
    let hsm = rt
        .block_on(
            token
                .provider_builder("pkcs11")
                .key_label("bench-kek")
                .build(),
        )
        .unwrap();

    let mut c = Criterion::default().configure_from_args();
    let ctx = WrapContext::new("vault-bench", "bench/secret", 1, 1, "shamir-2-of-3").unwrap();
    let share = [0x42u8; 32];
    let providers: [(&str, &dyn KeyProvider); 2] = [("local", &local), ("pkcs11-softhsm2", &hsm)];
    for (name, p) in providers {
        let mut group = c.benchmark_group(format!("{name}/32-byte-share"));
        group.throughput(Throughput::Elements(1));
        group.bench_function("wrap", |b| {
            b.to_async(&rt)
                .iter(|| async { p.wrap(black_box(&share), &ctx).await.unwrap() });
        });
        let wrapped = rt.block_on(p.wrap(&share, &ctx)).unwrap();
        group.bench_function("unwrap", |b| {
            b.to_async(&rt)
                .iter(|| async { p.unwrap(black_box(&wrapped), &ctx).await.unwrap() });
        });
        group.finish();
    }
    c.final_summary();
}
