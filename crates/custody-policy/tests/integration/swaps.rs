//! Wrapped shares and envelopes moved between secrets, versions, slots and modes are rejected.

use custody_policy::{
    CustodyMode, Error, Opened, ProviderName, SecretContext, StoredSecret, StoredSlot,
};

use crate::support::{Lab, all_modes, assert_opens, ctx, provider_names, slot_of, survives};

const SECRET: &[u8] = b"payroll api key";

/// `target` with the rows of the named providers taken from `source`.
fn with_rows_from(target: &StoredSecret, source: &StoredSecret, names: &[&str]) -> StoredSecret {
    let rows = target
        .slots()
        .iter()
        .map(|row| {
            if names.contains(&row.provider().as_str()) {
                source
                    .slots()
                    .iter()
                    .find(|r| r.provider() == row.provider())
                    .unwrap()
                    .clone()
            } else {
                row.clone()
            }
        })
        .collect();
    StoredSecret::new(target.envelope().to_vec(), rows)
}

fn assert_auth_failures(err: &Error, mode: &CustodyMode) {
    let Error::NotEnoughShares { failures, .. } = err else {
        panic!("{mode}: {err:?}");
    };
    assert!(!failures.is_empty());
    for failure in failures {
        assert!(
            matches!(
                failure.provider_error(),
                Some(kms_providers::Error::AuthenticationFailed { .. })
            ),
            "{mode}: {failure}"
        );
    }
    assert!(!err.is_transient());
}

/// Seals `SECRET` under `a` and `b` and checks that `b`'s secret, with every wrapped share
/// taken from `a`'s, does not open, and with one share taken from `a`'s opens only where the
/// mode tolerates a missing share, never using the moved one.
async fn check_moved_between(mode: &CustodyMode, a: &SecretContext, b: &SecretContext) {
    let lab = Lab::new();
    let rig = lab.rig(mode);
    let (stored_a, _) = rig.seal(a, SECRET).await.into_parts();
    let (stored_b, client_b) = rig.seal(b, SECRET).await.into_parts();
    let names = provider_names(mode);
    let all: Vec<&str> = names.iter().map(String::as_str).collect();

    let every = with_rows_from(&stored_b, &stored_a, &all);
    let err = rig.open(b, &every, client_b.as_ref()).await.unwrap_err();
    assert_auth_failures(&err, mode);

    let moved = names[0].as_str();
    let one = with_rows_from(&stored_b, &stored_a, &[moved]);
    let result = rig.open(b, &one, client_b.as_ref()).await;
    if survives(mode, 1) {
        let opened: Opened = assert_opens(result, SECRET);
        assert!(!opened.report().used().contains(slot_of(mode, moved)));
    } else {
        assert_auth_failures(&result.unwrap_err(), mode);
    }
}

#[tokio::test]
async fn wrapped_shares_moved_between_secrets() {
    for mode in all_modes() {
        check_moved_between(
            &mode,
            &ctx(&mode, "payroll/a", 1),
            &ctx(&mode, "payroll/b", 1),
        )
        .await;
    }
}

#[tokio::test]
async fn wrapped_shares_moved_between_versions() {
    for mode in all_modes() {
        check_moved_between(&mode, &ctx(&mode, "payroll", 1), &ctx(&mode, "payroll", 2)).await;
    }
}

#[tokio::test]
async fn wrapped_shares_moved_between_vaults() {
    for mode in all_modes() {
        let other = SecretContext::new("vault-8", "payroll", 1, "password", mode.clone()).unwrap();
        check_moved_between(&mode, &other, &ctx(&mode, "payroll", 1)).await;
    }
}

#[tokio::test]
async fn wrapped_shares_swapped_between_slots() {
    let lab = Lab::new();
    for mode in all_modes() {
        let names = provider_names(&mode);
        if names.len() < 2 {
            continue;
        }
        let rig = lab.rig(&mode);
        let ctx = ctx(&mode, "p", 1);
        let (stored, client) = rig.seal(&ctx, SECRET).await.into_parts();
        // The rows of slots 1 and 2 keep their index and provider but trade wrapped shares.
        let (first, second) = (&stored.slots()[0], &stored.slots()[1]);
        let swapped = StoredSecret::new(
            stored.envelope().to_vec(),
            stored
                .slots()
                .iter()
                .map(|row| {
                    let take = if row.index() == first.index() {
                        second
                    } else if row.index() == second.index() {
                        first
                    } else {
                        return row.clone();
                    };
                    StoredSlot::stored(
                        row.index(),
                        row.provider().clone(),
                        take.wrapped().unwrap().to_vec(),
                    )
                })
                .collect(),
        );
        let result = rig.open(&ctx, &swapped, client.as_ref()).await;
        let failures_of = |failures: &custody_policy::SlotFailures| {
            for failure in failures {
                // Each provider sees a share wrapped under another provider's key.
                assert!(
                    matches!(
                        failure.provider_error(),
                        Some(kms_providers::Error::UnknownKey { .. })
                    ),
                    "{mode}: {failure}"
                );
            }
        };
        if survives(&mode, 2) {
            let opened = assert_opens(result, SECRET);
            failures_of(opened.report().failures());
        } else {
            let err = result.unwrap_err();
            let Error::NotEnoughShares { failures, .. } = &err else {
                panic!("{mode}: {err:?}");
            };
            assert!(!failures.is_empty());
            failures_of(failures);
        }
    }
}

#[tokio::test]
async fn the_slot_index_is_bound_even_for_the_same_provider() {
    // The same three providers in two orders, under the same mode label (2of3_multi_hsm): gcp
    // holds slot 1 in one and slot 2 in the other. A share gcp wrapped for slot 1 does not
    // unwrap as slot 2, although the key, vault, path, version and label are the same.
    let lab = Lab::new();
    let original = CustodyMode::two_of_three_multi_hsm();
    let reordered = original.with_providers(["aws", "gcp", "azure"]).unwrap();
    let rig = lab.rig(&original);
    let (stored, _) = rig.seal(&ctx(&original, "p", 1), SECRET).await.into_parts();
    let relabelled = StoredSecret::new(
        stored.envelope().to_vec(),
        vec![
            StoredSlot::stored(
                slot_of(&reordered, "aws"),
                ProviderName::new("aws").unwrap(),
                stored
                    .slot(slot_of(&original, "aws"))
                    .unwrap()
                    .wrapped()
                    .unwrap()
                    .to_vec(),
            ),
            StoredSlot::stored(
                slot_of(&reordered, "gcp"),
                ProviderName::new("gcp").unwrap(),
                stored
                    .slot(slot_of(&original, "gcp"))
                    .unwrap()
                    .wrapped()
                    .unwrap()
                    .to_vec(),
            ),
            stored.slot(slot_of(&original, "azure")).unwrap().clone(),
        ],
    );
    let err = rig
        .open(&ctx(&reordered, "p", 1), &relabelled, None)
        .await
        .unwrap_err();
    let Error::NotEnoughShares { failures, .. } = &err else {
        panic!("{err:?}");
    };
    let failed: Vec<String> = failures
        .slots()
        .as_slice()
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(failed, ["slot 1 (aws)", "slot 2 (gcp)"]);
    assert_auth_failures(&err, &reordered);
}

#[tokio::test]
async fn a_secret_opened_under_another_mode_label_is_refused() {
    // The same layout as a custom mode: its wrap label is `2of3`, not `2of3_multi_hsm`.
    let lab = Lab::new();
    let named = CustodyMode::two_of_three_multi_hsm();
    let custom: CustodyMode = "2of3:gcp,aws,azure".parse().unwrap();
    let rig = lab.rig(&named);
    let (stored, _) = rig.seal(&ctx(&named, "p", 1), SECRET).await.into_parts();
    let err = rig
        .open(&ctx(&custom, "p", 1), &stored, None)
        .await
        .unwrap_err();
    assert_auth_failures(&err, &custom);
}

#[tokio::test]
async fn envelopes_moved_between_versions() {
    let lab = Lab::new();
    for mode in all_modes() {
        let rig = lab.rig(&mode);
        let v1 = ctx(&mode, "p", 1);
        let v2 = ctx(&mode, "p", 2);
        let (stored_v1, _) = rig.seal(&v1, SECRET).await.into_parts();
        let (stored_v2, client_v2) = rig.seal(&v2, b"newer").await.into_parts();
        let mixed = StoredSecret::new(stored_v1.envelope().to_vec(), stored_v2.slots().to_vec());
        let err = rig.open(&v2, &mixed, client_v2.as_ref()).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::KeyVerificationFailed { .. }
                    | Error::WrongClientShare {
                        confirmed: false,
                        ..
                    }
            ),
            "{mode}: {err:?}"
        );
        assert!(!matches!(err, Error::NotEnoughShares { .. }));
    }
}
