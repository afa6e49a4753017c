//! Degraded writes, repair, and reads that depend on the repaired shares.

use custody_policy::{
    CustodyMode, Error, SlotFailureCause, SplitScheme, StoredSecret, StoredSlot, WriteQuorum,
};
use kms_providers::{FaultConfig, KeyProvider, WrappedShare};

use crate::support::{
    Lab, all_modes, assert_opens, ctx, provider_names, providers_needed, slot_of,
};

const SECRET: &[u8] = b"wire transfer approval key";

fn shamir_modes() -> Vec<CustodyMode> {
    all_modes()
        .into_iter()
        .filter(|m| m.scheme() == SplitScheme::Shamir)
        .collect()
}

/// How many provider slots a threshold-quorum write may leave pending.
fn max_pending(mode: &CustodyMode) -> usize {
    provider_names(mode).len() + usize::from(mode.client_slot().is_some())
        - usize::from(mode.threshold())
}

#[tokio::test]
async fn degraded_write_then_repair_then_read_with_the_repaired_shares() {
    let lab = Lab::new();
    for mode in shamir_modes() {
        let names = provider_names(&mode);
        let r = max_pending(&mode);
        assert!(r >= 1, "{mode}");
        for down in [names[names.len() - r..].to_vec(), names[..r].to_vec()] {
            let rig = lab.rig_with(&mode, WriteQuorum::Threshold, |_| FaultConfig::new(2));
            let ctx = ctx(&mode, "payments/approval", 1);
            for name in &down {
                rig.down(name);
            }
            let sealed = rig.seal(&ctx, SECRET).await;
            let pending: Vec<String> = sealed
                .pending()
                .slots()
                .as_slice()
                .iter()
                .map(|s| s.holder().to_string())
                .collect();
            assert_eq!(pending, down, "{mode}");
            let (stored, client) = sealed.into_parts();
            assert!(stored.is_degraded());
            for name in &down {
                assert!(stored.slot(slot_of(&mode, name)).unwrap().is_pending());
            }

            // The degraded secret reads with what was stored, reporting the pending slots.
            let opened = assert_opens(rig.open(&ctx, &stored, client.as_ref()).await, SECRET);
            if mode.client_slot().is_none() {
                for name in &down {
                    let failure = opened
                        .report()
                        .failures()
                        .get(slot_of(&mode, name))
                        .unwrap();
                    assert!(matches!(failure.cause(), SlotFailureCause::Pending));
                }
            }

            // Repair fails cleanly while the providers are still down.
            let err = rig
                .custodian
                .repair(&ctx, &stored, client.as_ref())
                .await
                .unwrap_err();
            assert!(matches!(err, Error::RepairFailed { .. }), "{mode}: {err:?}");
            assert!(err.is_transient());

            for name in &down {
                rig.up(name);
            }
            let repaired = rig
                .custodian
                .repair(&ctx, &stored, client.as_ref())
                .await
                .unwrap();
            let repaired_names: Vec<String> = repaired
                .repaired()
                .as_slice()
                .iter()
                .map(|s| s.holder().to_string())
                .collect();
            assert_eq!(repaired_names, down);
            assert!(repaired.still_pending().is_empty());
            let stored = repaired.into_stored();
            assert!(!stored.is_degraded());

            // Now read with as few of the originally stored shares as possible: the repaired
            // ones must carry the read (with a client share, they alone do).
            let keep = providers_needed(&mode).saturating_sub(r);
            let originals: Vec<&String> = names.iter().filter(|n| !down.contains(n)).collect();
            for name in originals.iter().skip(keep) {
                rig.down(name);
            }
            let opened = assert_opens(rig.open(&ctx, &stored, client.as_ref()).await, SECRET);
            for name in &down {
                assert!(
                    opened.report().used().contains(slot_of(&mode, name)),
                    "{mode}: repaired {name} not used"
                );
            }
            rig.all_up();
        }
    }
}

#[tokio::test]
async fn a_repaired_share_is_the_share_the_split_made() {
    // Seal with every share stored, forget one row, repair it, and compare what the provider
    // unwraps from the old and the new wrapped share: the same bytes (same DEK, same share).
    let lab = Lab::new();
    for mode in shamir_modes() {
        let rig = lab.rig(&mode);
        let ctx = ctx(&mode, "p", 1);
        let (stored, client) = rig.seal(&ctx, SECRET).await.into_parts();
        let victim = provider_names(&mode).pop().unwrap();
        let slot = slot_of(&mode, &victim);
        let original = stored.slot(slot).unwrap().clone();
        let forgotten = StoredSecret::new(
            stored.envelope().to_vec(),
            stored
                .slots()
                .iter()
                .map(|row| {
                    if row.index() == slot {
                        StoredSlot::pending(slot, row.provider().clone())
                    } else {
                        row.clone()
                    }
                })
                .collect(),
        );
        let repaired = rig
            .custodian
            .repair(&ctx, &forgotten, client.as_ref())
            .await
            .unwrap();
        assert_eq!(
            repaired.stored().envelope(),
            stored.envelope(),
            "no re-encryption"
        );
        let new_row = repaired.stored().slot(slot).unwrap();
        assert_ne!(new_row.wrapped(), original.wrapped(), "a fresh wrap");
        let provider = rig.provider(&victim);
        let unwrap = |row: &StoredSlot| {
            let wrapped = WrappedShare::from_bytes(row.wrapped().unwrap()).unwrap();
            let wrap_context = ctx.wrap_context(slot);
            async move { provider.unwrap(&wrapped, &wrap_context).await.unwrap() }
        };
        let before = unwrap(&original).await;
        let after = unwrap(new_row).await;
        assert_eq!(before.expose_secret(), after.expose_secret(), "{mode}");
    }
}

#[tokio::test]
async fn repair_refuses_when_there_is_nothing_to_do_or_no_client_share() {
    let lab = Lab::new();
    for mode in shamir_modes() {
        let rig = lab.rig_with(&mode, WriteQuorum::Threshold, |_| FaultConfig::new(4));
        let ctx = ctx(&mode, "p", 1);
        let (healthy, client) = rig.seal(&ctx, SECRET).await.into_parts();
        assert!(matches!(
            rig.custodian.repair(&ctx, &healthy, client.as_ref()).await,
            Err(Error::NothingToRepair)
        ));
        if mode.client_slot().is_some() {
            let last = provider_names(&mode).pop().unwrap();
            rig.down(&last);
            let (degraded, _) = rig.seal(&ctx, SECRET).await.into_parts();
            rig.up(&last);
            assert!(matches!(
                rig.custodian.repair(&ctx, &degraded, None).await,
                Err(Error::ClientShareMissing { .. })
            ));
        }
    }
}

#[tokio::test]
async fn repair_never_rebuilds_from_a_lying_provider() {
    // azure's share is pending and gcp lies: gcp and aws are the only shares, they do not
    // verify, and nothing is repaired (a share recomputed from them would poison azure's slot).
    let lab = Lab::new();
    let mode = CustodyMode::two_of_three_multi_hsm();
    let writer = lab.rig_with(&mode, WriteQuorum::Threshold, |_| FaultConfig::new(6));
    writer.down("azure");
    let ctx = ctx(&mode, "p", 1);
    let (stored, _) = writer.seal(&ctx, SECRET).await.into_parts();
    let liar = lab.rig_with(&mode, WriteQuorum::Threshold, |name| {
        FaultConfig::new(6).corrupt_rate(if name == "gcp" { 1.0 } else { 0.0 })
    });
    let err = liar
        .custodian
        .repair(&ctx, &stored, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::KeyVerificationFailed { .. }),
        "{err:?}"
    );
    assert_eq!(
        liar.provider("azure").stats().calls,
        0,
        "nothing was wrapped"
    );
}

#[tokio::test]
async fn xor_and_standard_secrets_cannot_be_repaired() {
    // Their writes never degrade; a pending row (a damaged database) leaves too few shares.
    let lab = Lab::new();
    for mode in all_modes()
        .into_iter()
        .filter(|m| m.scheme() != SplitScheme::Shamir)
    {
        let rig = lab.rig(&mode);
        let ctx = ctx(&mode, "p", 1);
        let (stored, client) = rig.seal(&ctx, SECRET).await.into_parts();
        let first = &stored.slots()[0];
        let damaged = StoredSecret::new(
            stored.envelope().to_vec(),
            stored
                .slots()
                .iter()
                .map(|row| {
                    if row.index() == first.index() {
                        StoredSlot::pending(row.index(), row.provider().clone())
                    } else {
                        row.clone()
                    }
                })
                .collect(),
        );
        let err = rig
            .custodian
            .repair(&ctx, &damaged, client.as_ref())
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::NotEnoughShares { .. }),
            "{mode}: {err:?}"
        );
    }
}

/// Seals `mode` with `pending` down (threshold quorum), then returns a rig whose `liars`
/// corrupt every share, `seed_of` choosing each liar's fault seed.
async fn degraded_with_liars(
    lab: &Lab,
    mode: &CustodyMode,
    pending: &str,
    liars: &[&str],
    seed_of: impl Fn(&str) -> u64,
) -> (
    crate::support::Rig,
    custody_policy::SecretContext,
    StoredSecret,
) {
    let writer = lab.rig_with(mode, WriteQuorum::Threshold, |_| FaultConfig::new(1));
    writer.down(pending);
    let ctx = ctx(mode, "p", 1);
    let (stored, _) = writer.seal(&ctx, SECRET).await.into_parts();
    assert!(stored.slot(slot_of(mode, pending)).unwrap().is_pending());
    let rig = lab.rig_with(mode, WriteQuorum::Threshold, |name| {
        FaultConfig::new(seed_of(name)).corrupt_rate(if liars.contains(&name) { 1.0 } else { 0.0 })
    });
    (rig, ctx, stored)
}

#[tokio::test]
async fn repair_outvotes_a_liar_when_enough_shares_confirm() {
    // 2of5, e pending, a lies; b, c and d agree: one share beyond the two that define the
    // polynomial confirms it, so the repair goes ahead and names the liar.
    let lab = Lab::new();
    let mode: CustodyMode = "2of5:a,b,c,d,e".parse().unwrap();
    let (rig, ctx, stored) = degraded_with_liars(&lab, &mode, "e", &["a"], |_| 5).await;
    let repaired = rig.custodian.repair(&ctx, &stored, None).await.unwrap();
    assert_eq!(repaired.repaired().to_string(), "slot 5 (e)");
    assert_eq!(repaired.read().liars().to_string(), "slot 1 (a)");
    // The repaired share is right: it opens the secret together with one honest share.
    let stored = repaired.into_stored();
    for name in ["a", "b", "c"] {
        rig.down(name);
    }
    let opened = assert_opens(rig.open(&ctx, &stored, None).await, SECRET);
    assert!(opened.report().used().contains(slot_of(&mode, "e")));
}

#[tokio::test]
async fn repair_refuses_a_majority_of_exactly_t() {
    // 3of5, e pending, a lies; b, c, d are exactly the threshold. Reads still work (and name
    // a), but a repair cannot tell this from two colluding liars and refuses.
    let lab = Lab::new();
    let mode: CustodyMode = "3of5:a,b,c,d,e".parse().unwrap();
    let (rig, ctx, stored) = degraded_with_liars(&lab, &mode, "e", &["a"], |_| 5).await;
    let opened = assert_opens(rig.open(&ctx, &stored, None).await, SECRET);
    assert_eq!(opened.report().liars().to_string(), "slot 1 (a)");
    let err = rig.custodian.repair(&ctx, &stored, None).await.unwrap_err();
    let Error::DisputedShares { disputed } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(disputed.to_string(), "slot 1 (a)");
    assert_eq!(rig.provider("e").stats().calls, 0, "nothing was wrapped");
}

#[tokio::test]
async fn colluding_liars_cannot_poison_a_repair() {
    // 3of5, e pending; a and b flip the same bit (same fault seed). At x = 1, 2, 3 the
    // Lagrange weight of x = 3 is 1 in GF(2^8), so the two flips cancel at the secret: a, b and
    // c define a wrong polynomial that still opens the envelope, and d disagrees with it. A
    // share recomputed from it would be wrong; the repair refuses.
    let lab = Lab::new();
    let mode: CustodyMode = "3of5:a,b,c,d,e".parse().unwrap();
    let (rig, ctx, stored) = degraded_with_liars(&lab, &mode, "e", &["a", "b"], |_| 9).await;
    // The plaintext is right whatever the liars do.
    assert_opens(rig.open(&ctx, &stored, None).await, SECRET);
    let err = rig.custodian.repair(&ctx, &stored, None).await.unwrap_err();
    assert!(matches!(err, Error::DisputedShares { .. }), "{err:?}");
    assert_eq!(rig.provider("e").stats().calls, 0, "nothing was wrapped");
}
