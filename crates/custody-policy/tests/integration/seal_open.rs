//! Sealing and opening in every mode, with healthy providers.

use std::time::Duration;

use custody_policy::{Error, SlotState, SplitScheme, WriteQuorum};
use kms_providers::{FaultConfig, WrappedShare};
use tokio::time::Instant;

use crate::support::{Lab, all_modes, assert_opens, ctx, latency, provider_names};

#[tokio::test]
async fn every_mode_round_trips_every_size() {
    let lab = Lab::new();
    for mode in all_modes() {
        let rig = lab.rig(&mode);
        for (version, len) in [0usize, 1, 31, 32, 1024, 100_000].into_iter().enumerate() {
            let plaintext: Vec<u8> = (0..len).map(|i| u8::try_from(i % 251).unwrap()).collect();
            let ctx = ctx(&mode, "db/password", u64::try_from(version).unwrap() + 1);
            let sealed = rig.seal(&ctx, &plaintext).await;
            assert!(sealed.pending().is_empty());
            let (stored, client) = sealed.into_parts();
            assert_eq!(client.is_some(), mode.client_slot().is_some(), "{mode}");
            assert_eq!(stored.slots().len(), provider_names(&mode).len());
            assert!(!stored.is_degraded());
            for (row, (slot, name)) in stored.slots().iter().zip(mode.provider_slots()) {
                assert_eq!((row.index(), row.provider()), (slot, name));
                let SlotState::Stored { wrapped } = row.state() else {
                    panic!("{mode}: slot {slot} is not stored");
                };
                // The stored bytes are a wrapped share made by the slot's provider.
                let wrapped = WrappedShare::from_bytes(wrapped).unwrap();
                assert_eq!(wrapped.key_id().as_str(), name.as_str());
            }
            let opened = assert_opens(rig.open(&ctx, &stored, client.as_ref()).await, &plaintext);
            let report = opened.report();
            assert_eq!(report.used().len(), usize::from(mode.threshold()), "{mode}");
            assert!(report.liars().is_empty());
            assert!(report.failures().is_empty());
        }
    }
}

#[tokio::test]
async fn every_version_gets_a_fresh_key_and_fresh_shares() {
    let lab = Lab::new();
    let mode = all_modes().remove(2);
    let rig = lab.rig(&mode);
    let a = rig.seal(&ctx(&mode, "p", 1), b"same").await;
    let b = rig.seal(&ctx(&mode, "p", 1), b"same").await;
    assert_ne!(a.stored().envelope(), b.stored().envelope());
    for (x, y) in a.stored().slots().iter().zip(b.stored().slots()) {
        assert_ne!(x.wrapped(), y.wrapped());
    }
}

#[tokio::test]
async fn the_envelope_is_bound_to_the_whole_context() {
    let lab = Lab::new();
    for mode in all_modes() {
        let rig = lab.rig(&mode);
        let sealed_ctx = ctx(&mode, "db/password", 3);
        let (stored, client) = rig.seal(&sealed_ctx, b"secret").await.into_parts();
        // Another secret type: same vault, path, version and mode, so the wrapped shares (which
        // do not bind the type) unwrap, and the envelope's commitment refuses every key.
        let other_type = custody_policy::SecretContext::new(
            "vault-7",
            "db/password",
            3,
            "api_key",
            mode.clone(),
        )
        .unwrap();
        let err = rig
            .open(&other_type, &stored, client.as_ref())
            .await
            .unwrap_err();
        match (&err, mode.client_slot()) {
            // The client share's tag covers the type too.
            (Error::ClientShareForeign { .. }, Some(_)) => {}
            (Error::KeyVerificationFailed { .. }, None) => {}
            _ => panic!("{mode}: {err:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn provider_shares_are_wrapped_concurrently() {
    let lab = Lab::new();
    for mode in all_modes() {
        let rig = lab.rig_with(&mode, WriteQuorum::All, |_| latency(50));
        let start = Instant::now();
        rig.seal(&ctx(&mode, "p", 1), b"secret").await;
        // Each wrap takes 50 ms: one at a time, a 4-provider mode would take 200 ms.
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(50) && elapsed < Duration::from_millis(60),
            "{mode}: {elapsed:?}"
        );
    }
}

#[tokio::test]
async fn client_share_reads_call_one_provider() {
    let lab = Lab::new();
    for mode in all_modes()
        .into_iter()
        .filter(|m| m.client_slot().is_some())
    {
        let rig = lab.rig(&mode);
        let ctx = ctx(&mode, "p", 1);
        let (stored, client) = rig.seal(&ctx, b"secret").await.into_parts();
        for _ in 0..3 {
            let before: u64 = rig.calls().values().sum();
            let opened = assert_opens(rig.open(&ctx, &stored, client.as_ref()).await, b"secret");
            let after: u64 = rig.calls().values().sum();
            let needed = usize::from(mode.threshold()) - 1;
            assert_eq!(opened.report().provider_calls(), needed, "{mode}");
            assert_eq!(after - before, u64::try_from(needed).unwrap(), "{mode}");
            assert!(opened.report().used().contains(mode.client_slot().unwrap()));
        }
    }
}

#[tokio::test]
async fn hedged_reads_ask_every_stored_share() {
    let lab = Lab::new();
    for mode in all_modes()
        .into_iter()
        .filter(|m| m.client_slot().is_none())
    {
        let rig = lab.rig(&mode);
        let ctx = ctx(&mode, "p", 1);
        let (stored, _) = rig.seal(&ctx, b"secret").await.into_parts();
        let opened = assert_opens(rig.open(&ctx, &stored, None).await, b"secret");
        assert_eq!(
            opened.report().provider_calls(),
            provider_names(&mode).len(),
            "{mode}"
        );
    }
}

#[tokio::test]
async fn xor_and_standard_modes_need_every_share_to_write() {
    let lab = Lab::new();
    for mode in all_modes()
        .into_iter()
        .filter(|m| m.scheme() != SplitScheme::Shamir)
    {
        // Even with the lowest quorum, n-of-n modes store every share or nothing.
        let rig = lab.rig_with(&mode, WriteQuorum::Threshold, |_| FaultConfig::new(1));
        let down = provider_names(&mode).remove(0);
        rig.down(&down);
        let err = rig
            .custodian
            .seal(&ctx(&mode, "p", 1), b"secret")
            .await
            .unwrap_err();
        let Error::WriteQuorumNotMet {
            required,
            available,
            failures,
        } = &err
        else {
            panic!("{mode}: {err:?}");
        };
        assert_eq!(*required, mode.share_count());
        assert_eq!(*available, mode.share_count() - 1);
        assert_eq!(failures.len(), 1);
        assert!(err.is_transient());
    }
}
