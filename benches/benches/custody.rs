//! Seal and open per custody mode, on real `local` providers in a temporary key directory.
//!
//! Run: `cargo bench -p mpc-vault-benches --bench custody`
//! (short: `-- --warm-up-time 1 --measurement-time 3`).
//!
//! Every provider call is a real AES-256-GCM wrap or unwrap under a KEK loaded from disk; the
//! providers add no latency, so these figures are the custody layer's own cost: DEK generation,
//! the envelope, the split, the concurrent wraps, the combination search and key check.

// A benchmark is not a test, so clippy.toml's test allowances do not reach it; a failed setup
// step here should stop the run loudly, which is what `expect` does.
#![allow(clippy::expect_used)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use custody_policy::{Custodian, CustodyMode, SecretContext};
use kms_providers::LocalProvider;
use tokio::runtime::Runtime;

/// The modes measured: the four named ones and a custom 3-of-5 layout with a client slot.
fn modes() -> Vec<CustodyMode> {
    vec![
        CustodyMode::standard(),
        CustodyMode::two_of_two_client_custody(),
        CustodyMode::two_of_three_multi_hsm(),
        CustodyMode::two_of_three_client_custody(),
        "3of5:gcp,aws,azure,pkcs11,client"
            .parse()
            .expect("a valid mode string"),
    ]
}

/// The mode string, with the characters criterion's report paths handle badly replaced.
fn mode_id(mode: &CustodyMode) -> String {
    mode.to_string().replace([':', ','], "_")
}

fn custodian(keys: &std::path::Path) -> Custodian {
    ["gcp", "aws", "azure", "pkcs11"]
        .into_iter()
        .map(|name| {
            LocalProvider::builder(name)
                .key_dir(keys)
                .build()
                .expect("local provider")
        })
        .fold(Custodian::builder(), |b, p| b.provider(p))
        .build()
        .expect("custodian")
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime")
}

fn seal_open(c: &mut Criterion) {
    let keys = tempfile::tempdir().expect("temporary key directory");
    let custodian = custodian(keys.path());
    let rt = runtime();
    for size in [32usize, 4096] {
        let plaintext = vec![0x5a_u8; size];
        let mut seal = c.benchmark_group(format!("seal/{size}B"));
        seal.throughput(Throughput::Elements(1));
        for mode in modes() {
            let ctx = SecretContext::new("bench", "secret", 1, "password", mode.clone())
                .expect("context");
            seal.bench_function(BenchmarkId::from_parameter(mode_id(&mode)), |b| {
                b.to_async(&rt)
                    .iter(|| async { custodian.seal(&ctx, &plaintext).await.expect("seal") });
            });
        }
        seal.finish();

        let mut open = c.benchmark_group(format!("open/{size}B"));
        open.throughput(Throughput::Elements(1));
        for mode in modes() {
            let ctx = SecretContext::new("bench", "secret", 1, "password", mode.clone())
                .expect("context");
            let (stored, client) = rt
                .block_on(custodian.seal(&ctx, &plaintext))
                .expect("seal")
                .into_parts();
            open.bench_function(BenchmarkId::from_parameter(mode_id(&mode)), |b| {
                b.to_async(&rt).iter(|| async {
                    custodian
                        .open(&ctx, &stored, client.as_ref())
                        .await
                        .expect("open")
                });
            });
        }
        open.finish();
    }
}

criterion_group!(benches, seal_open);
criterion_main!(benches);
