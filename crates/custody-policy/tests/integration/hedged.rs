//! Hedged reads finish with the t-th fastest provider; client-share reads pick the fastest
//! provider by its latency estimate and fall back on failure. Tokio's paused clock makes the
//! simulated latencies exact, so these are properties of the algorithm, not timing tests.

use std::time::Duration;

use custody_policy::{CustodyMode, WriteQuorum};
use kms_providers::{FaultConfig, Latency};
use tokio::time::Instant;

use crate::support::{Lab, assert_opens, ctx, latency, slot_of};

const SECRET: &[u8] = b"hedged";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[tokio::test(start_paused = true)]
async fn a_hedged_read_takes_the_second_fastest_latency() {
    let lab = Lab::new();
    let mode = CustodyMode::two_of_three_multi_hsm();
    let rig = lab.rig_with(&mode, WriteQuorum::All, |name| match name {
        "gcp" => latency(20),
        "aws" => latency(40),
        _ => latency(80),
    });
    let ctx = ctx(&mode, "p", 1);
    let (stored, _) = rig.seal(&ctx, SECRET).await.into_parts();
    for _ in 0..5 {
        let start = Instant::now();
        let opened = assert_opens(rig.open(&ctx, &stored, None).await, SECRET);
        let elapsed = start.elapsed();
        // Not the slowest (80 ms), not the sum (140 ms): the second fastest.
        assert!(elapsed >= ms(40) && elapsed < ms(41), "{elapsed:?}");
        let used: Vec<String> = opened
            .report()
            .used()
            .as_slice()
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(used, ["slot 1 (gcp)", "slot 2 (aws)"]);
        assert_eq!(opened.report().provider_calls(), 3);
    }
    // azure's call was cancelled after 40 ms: its estimate records at least that.
    assert!(rig.custodian.latency_estimate("azure").unwrap() >= ms(40));
    assert_eq!(rig.custodian.latency_estimate("gcp"), Some(ms(20)));
}

#[tokio::test(start_paused = true)]
async fn hedged_reads_with_jitter_stay_within_ten_percent_of_the_second_fastest() {
    let lab = Lab::new();
    let mode = CustodyMode::two_of_three_multi_hsm();
    let jittered = |base: u64, jitter: u64, seed: u64| {
        FaultConfig::new(seed).latency(Latency::Jittered {
            base: ms(base),
            jitter: ms(jitter),
        })
    };
    // Means 20, 40 and 80 ms.
    let rig = lab.rig_with(&mode, WriteQuorum::All, |name| match name {
        "gcp" => jittered(18, 4, 1),
        "aws" => jittered(36, 8, 2),
        _ => jittered(72, 16, 3),
    });
    let ctx = ctx(&mode, "p", 1);
    let (stored, _) = rig.seal(&ctx, SECRET).await.into_parts();
    let mut samples = Vec::new();
    for _ in 0..101 {
        let start = Instant::now();
        assert_opens(rig.open(&ctx, &stored, None).await, SECRET);
        samples.push(start.elapsed());
    }
    samples.sort();
    let p50 = samples[50];
    assert!(p50 >= ms(36) && p50 <= ms(44), "p50 {p50:?}");
    assert!(samples[100] <= ms(44), "max {:?}", samples[100]);
}

#[tokio::test(start_paused = true)]
async fn a_client_share_read_calls_the_fastest_provider_once_it_is_known() {
    let lab = Lab::new();
    let mode = CustodyMode::two_of_three_client_custody();
    let rig = lab.rig_with(&mode, WriteQuorum::All, |name| match name {
        "gcp" => latency(30),
        _ => latency(5),
    });
    let ctx = ctx(&mode, "p", 1);
    let (stored, client) = rig.seal(&ctx, SECRET).await.into_parts();
    // Unmeasured providers are tried first, in slot order: gcp, then aws.
    let first = assert_opens(rig.open(&ctx, &stored, client.as_ref()).await, SECRET);
    assert!(first.report().used().contains(slot_of(&mode, "gcp")));
    let second = assert_opens(rig.open(&ctx, &stored, client.as_ref()).await, SECRET);
    assert!(second.report().used().contains(slot_of(&mode, "aws")));
    assert_eq!(rig.custodian.latency_estimate("gcp"), Some(ms(30)));
    assert_eq!(rig.custodian.latency_estimate("aws"), Some(ms(5)));
    // From now on: aws only, one call per read.
    for _ in 0..5 {
        let calls = rig.calls();
        let start = Instant::now();
        let opened = assert_opens(rig.open(&ctx, &stored, client.as_ref()).await, SECRET);
        assert_eq!(start.elapsed(), ms(5));
        assert_eq!(opened.report().provider_calls(), 1);
        let after = rig.calls();
        assert_eq!(after["aws"] - calls["aws"], 1);
        assert_eq!(after["gcp"], calls["gcp"]);
    }
}

#[tokio::test(start_paused = true)]
async fn a_client_share_read_falls_back_when_its_provider_fails() {
    let lab = Lab::new();
    let mode = CustodyMode::two_of_three_client_custody();
    let rig = lab.rig_with(&mode, WriteQuorum::All, |name| match name {
        "gcp" => latency(30),
        _ => latency(5),
    });
    let ctx = ctx(&mode, "p", 1);
    let (stored, client) = rig.seal(&ctx, SECRET).await.into_parts();
    for _ in 0..2 {
        assert_opens(rig.open(&ctx, &stored, client.as_ref()).await, SECRET);
    }
    rig.down("aws");
    let start = Instant::now();
    let opened = assert_opens(rig.open(&ctx, &stored, client.as_ref()).await, SECRET);
    // aws fails after its 5 ms, then gcp answers in 30 ms.
    assert_eq!(start.elapsed(), ms(35));
    assert_eq!(opened.report().provider_calls(), 2);
    assert!(
        opened
            .report()
            .failures()
            .get(slot_of(&mode, "aws"))
            .is_some()
    );
    assert!(opened.report().used().contains(slot_of(&mode, "gcp")));
    // The failure pushed aws's estimate behind gcp's: the next read goes straight to gcp.
    assert!(rig.custodian.latency_estimate("aws").unwrap() >= Duration::from_secs(1));
    let start = Instant::now();
    let opened = assert_opens(rig.open(&ctx, &stored, client.as_ref()).await, SECRET);
    assert_eq!(start.elapsed(), ms(30));
    assert_eq!(opened.report().provider_calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_custom_layout_reads_with_its_t_fastest_providers() {
    let lab = Lab::new();
    let mode: CustodyMode = "3of5:a,b,c,d,e".parse().unwrap();
    let rig = lab.rig_with(&mode, WriteQuorum::All, |name| match name {
        "a" => latency(50),
        "b" => latency(10),
        "c" => latency(40),
        "d" => latency(20),
        _ => latency(30),
    });
    let ctx = ctx(&mode, "p", 1);
    let (stored, _) = rig.seal(&ctx, SECRET).await.into_parts();
    let start = Instant::now();
    let opened = assert_opens(rig.open(&ctx, &stored, None).await, SECRET);
    assert_eq!(start.elapsed(), ms(30), "the third fastest");
    let used: Vec<String> = opened
        .report()
        .used()
        .as_slice()
        .iter()
        .map(|s| s.holder().to_string())
        .collect();
    assert_eq!(used, ["b", "d", "e"]);
}

#[test]
fn custodian_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    let custodian = custody_policy::Custodian::builder().build().unwrap();
    let mode = CustodyMode::standard();
    let ctx = ctx(&mode, "p", 1);
    let stored = custody_policy::StoredSecret::new(Vec::new(), Vec::new());
    // Servers run these futures on multi-threaded executors.
    assert_send(&custodian.seal(&ctx, b""));
    assert_send(&custodian.open(&ctx, &stored, None));
    assert_send(&custodian.repair(&ctx, &stored, None));
}
