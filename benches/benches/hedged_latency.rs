//! Hedged reads against slow providers: open's latency follows the second-fastest provider.
//!
//! Run: `cargo bench -p mpc-vault-benches --bench hedged_latency`
//! (short: `-- --warm-up-time 1 --measurement-time 5`).
//!
//! Three real `local` providers sit behind the seeded fault injector, which delays every call
//! by 18–22 ms, 36–44 ms and 72–88 ms (means 20, 40 and 80 ms: uniform jitter around each).
//! A `2of3_multi_hsm` read asks all three at once and rebuilds the key from the first two
//! shares that arrive, so its latency should be the second-fastest provider's (≈ 40 ms): not
//! the slowest's (80 ms) and not the sum (140 ms). A `2of3_client_custody` read with the client
//! share calls only the provider with the best latency estimate (≈ 20 ms once measured).
//!
//! Besides criterion's report, the bench prints p50/p90/max of every scenario, measured per
//! call, and the ratio of the hedged p50 to the second-fastest provider's own p50.

// A benchmark is not a test, so clippy.toml's test allowances do not reach it: a failed setup
// step should stop the run loudly (`expect`), and the percentile summary is the point of the
// run (`println!`).
#![allow(clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use custody_policy::{Custodian, CustodyMode, SecretContext};
use kms_providers::{
    FaultConfig, FaultInjector, KeyProvider, Latency, LocalProvider, WrappedShare,
};
use tokio::runtime::Runtime;

/// (name, base, jitter) in milliseconds: means 20, 40 and 80 ms.
const PROVIDERS: [(&str, u64, u64); 3] = [("gcp", 18, 4), ("aws", 36, 8), ("azure", 72, 16)];

fn provider(
    keys: &std::path::Path,
    name: &str,
    base: u64,
    jitter: u64,
    seed: u64,
) -> Arc<FaultInjector<LocalProvider>> {
    let local = LocalProvider::builder(name)
        .key_dir(keys)
        .build()
        .expect("local provider");
    let faults = FaultConfig::new(seed).latency(Latency::Jittered {
        base: Duration::from_millis(base),
        jitter: Duration::from_millis(jitter),
    });
    Arc::new(FaultInjector::new(local, faults).expect("fault injector"))
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime")
}

/// p50, p90 and max of the samples, in milliseconds.
fn summary(samples: &mut [Duration]) -> (f64, f64, f64) {
    samples.sort();
    let at = |q: usize| {
        let i = (samples.len().saturating_sub(1)) * q / 100;
        samples
            .get(i)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    };
    (at(50), at(90), at(100))
}

fn hedged_latency(c: &mut Criterion) {
    let keys = tempfile::tempdir().expect("temporary key directory");
    let rt = runtime();
    let providers: Vec<_> = PROVIDERS
        .iter()
        .zip(1u64..)
        .map(|(&(name, base, jitter), seed)| provider(keys.path(), name, base, jitter, seed))
        .collect();
    let custodian = providers
        .iter()
        .fold(Custodian::builder(), |b, p| b.shared_provider(p.clone()))
        .build()
        .expect("custodian");

    let mut group = c.benchmark_group("hedged_latency");
    group.sample_size(30);

    // Each provider on its own: the latencies the hedged read is compared with.
    let probe = SecretContext::new(
        "bench",
        "probe",
        1,
        "password",
        CustodyMode::two_of_three_multi_hsm(),
    )
    .expect("context");
    let mut alone = Vec::new();
    for (provider, &(name, _, _)) in providers.iter().zip(PROVIDERS.iter()) {
        let slot = custody_policy::SlotIndex::FIRST;
        let wrap_context = probe.wrap_context(slot);
        let wrapped: WrappedShare = rt
            .block_on(provider.wrap(&[7u8; 32], &wrap_context))
            .expect("wrap");
        let mut samples = Vec::new();
        group.bench_function(format!("unwrap_alone/{name}"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let start = Instant::now();
                        provider
                            .unwrap(&wrapped, &wrap_context)
                            .await
                            .expect("unwrap");
                        let elapsed = start.elapsed();
                        samples.push(elapsed);
                        total += elapsed;
                    }
                    total
                })
            });
        });
        alone.push((name, summary(&mut samples)));
    }

    let scenarios = [
        (
            "open/2of3_multi_hsm (hedged, no client share)",
            CustodyMode::two_of_three_multi_hsm(),
        ),
        (
            "open/2of3_client_custody (client share + 1 provider)",
            CustodyMode::two_of_three_client_custody(),
        ),
    ];
    let mut results = Vec::new();
    for (label, mode) in scenarios {
        let ctx = SecretContext::new("bench", "secret", 1, "password", mode).expect("context");
        let (stored, client) = rt
            .block_on(custodian.seal(&ctx, b"a 32-byte secret for the bench."))
            .expect("seal")
            .into_parts();
        let mut samples = Vec::new();
        group.bench_function(label, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let start = Instant::now();
                        custodian
                            .open(&ctx, &stored, client.as_ref())
                            .await
                            .expect("open");
                        let elapsed = start.elapsed();
                        samples.push(elapsed);
                        total += elapsed;
                    }
                    total
                })
            });
        });
        results.push((label, summary(&mut samples)));
    }
    group.finish();

    println!("\nper-call latency (ms)              p50      p90      max");
    for (name, (p50, p90, max)) in &alone {
        println!("  unwrap alone: {name:<19} {p50:8.2} {p90:8.2} {max:8.2}");
    }
    for (label, (p50, p90, max)) in &results {
        println!("  {label}\n  {:<33} {p50:8.2} {p90:8.2} {max:8.2}", "");
    }
    let second_fastest = alone.get(1).map_or(f64::NAN, |(_, (p50, _, _))| *p50);
    if let Some((_, (hedged, _, _))) = results.first() {
        println!(
            "  hedged p50 / second-fastest provider p50 = {hedged:.2} / {second_fastest:.2} = {:.3} \
             (target: within 10%, i.e. below 1.10)",
            hedged / second_fastest
        );
    }
}

criterion_group!(benches, hedged_latency);
criterion_main!(benches);
