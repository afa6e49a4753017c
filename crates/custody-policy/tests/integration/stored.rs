//! Stored rows that do not fit the mode, and damaged stored bytes: typed errors, never panics.

use custody_policy::{
    CustodyMode, Error, ProviderName, SlotFailureCause, SlotIndex, StoredSecret, StoredSlot,
};

use crate::support::{Lab, assert_opens, ctx, slot_of};

const SECRET: &[u8] = b"stored";

fn slot(n: u8) -> SlotIndex {
    SlotIndex::new(n).unwrap()
}

fn name(n: &str) -> ProviderName {
    ProviderName::new(n).unwrap()
}

#[tokio::test]
async fn rows_that_do_not_fit_the_mode_are_refused() {
    let lab = Lab::new();
    let mode = CustodyMode::two_of_three_client_custody();
    let rig = lab.rig(&mode);
    let ctx = ctx(&mode, "p", 1);
    let (stored, client) = rig.seal(&ctx, SECRET).await.into_parts();
    let envelope = stored.envelope().to_vec();
    let gcp = stored.slot(slot(1)).unwrap().clone();
    let aws = stored.slot(slot(2)).unwrap().clone();
    let cases: Vec<(Vec<StoredSlot>, &str)> = vec![
        (vec![gcp.clone()], "slot 2 (aws) has no row"),
        (
            vec![gcp.clone(), aws.clone(), aws.clone()],
            "slot 2 (aws) has more than one row",
        ),
        (
            vec![
                gcp.clone(),
                aws.clone(),
                StoredSlot::pending(slot(3), name("azure")),
            ],
            "there is a row for slot 3, the client's, whose share is never stored",
        ),
        (
            vec![
                gcp.clone(),
                aws.clone(),
                StoredSlot::pending(slot(4), name("azure")),
            ],
            "there is a row for slot 4, which the mode does not have",
        ),
        (
            vec![
                gcp.clone(),
                StoredSlot::stored(slot(2), name("azure"), aws.wrapped().unwrap().to_vec()),
            ],
            "the row for slot 2 names provider azure, but the mode puts aws there",
        ),
    ];
    for (rows, reason) in cases {
        let bad = StoredSecret::new(envelope.clone(), rows);
        for result in [
            rig.open(&ctx, &bad, client.as_ref()).await.map(|_| ()),
            rig.custodian
                .repair(&ctx, &bad, client.as_ref())
                .await
                .map(|_| ()),
        ] {
            match result {
                Err(Error::StoredSecretMismatch { reason: why, .. }) => {
                    assert_eq!(why, reason);
                }
                other => panic!("{reason}: {other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn damaged_wrapped_shares_are_slot_failures() {
    let lab = Lab::new();
    let mode = CustodyMode::two_of_three_multi_hsm();
    let rig = lab.rig(&mode);
    let ctx = ctx(&mode, "p", 1);
    let (stored, _) = rig.seal(&ctx, SECRET).await.into_parts();
    let garbage = StoredSecret::new(
        stored.envelope().to_vec(),
        stored
            .slots()
            .iter()
            .map(|row| {
                if row.provider().as_str() == "aws" {
                    StoredSlot::stored(row.index(), row.provider().clone(), b"not a share".to_vec())
                } else {
                    row.clone()
                }
            })
            .collect(),
    );
    let opened = assert_opens(rig.open(&ctx, &garbage, None).await, SECRET);
    let failure = opened
        .report()
        .failures()
        .get(slot_of(&mode, "aws"))
        .unwrap();
    assert!(matches!(failure.cause(), SlotFailureCause::Unreadable(_)));
    assert!(
        failure
            .to_string()
            .starts_with("slot 2 (aws): the stored wrapped share cannot be read")
    );

    // Every single-bit flip of a stored wrapped share: the read still succeeds (the other
    // two shares suffice) and the damaged slot is a failure, never a wrong key.
    let aws_bytes = stored
        .slot(slot_of(&mode, "aws"))
        .unwrap()
        .wrapped()
        .unwrap()
        .to_vec();
    for bit in 0..aws_bytes.len() * 8 {
        let mut flipped = aws_bytes.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        let tampered = StoredSecret::new(
            stored.envelope().to_vec(),
            stored
                .slots()
                .iter()
                .map(|row| {
                    if row.provider().as_str() == "aws" {
                        StoredSlot::stored(row.index(), row.provider().clone(), flipped.clone())
                    } else {
                        row.clone()
                    }
                })
                .collect(),
        );
        let opened = assert_opens(rig.open(&ctx, &tampered, None).await, SECRET);
        assert!(opened.report().liars().is_empty());
    }
}

#[tokio::test]
async fn damaged_envelopes_are_envelope_errors() {
    let lab = Lab::new();
    let mode = CustodyMode::two_of_three_multi_hsm();
    let rig = lab.rig(&mode);
    let ctx = ctx(&mode, "p", 1);
    let (stored, _) = rig
        .seal(&ctx, b"a secret long enough to have a body")
        .await
        .into_parts();
    let with_envelope = |envelope: Vec<u8>| StoredSecret::new(envelope, stored.slots().to_vec());

    let err = rig
        .open(&ctx, &with_envelope(b"junk".to_vec()), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Envelope(envelope::Error::BadMagic)),
        "{err:?}"
    );

    // A flipped ciphertext byte: the key verifies (the commitment is intact) but the tag
    // does not, and no plaintext comes out.
    let mut bytes = stored.envelope().to_vec();
    let last = bytes.len() - 20;
    bytes[last] ^= 0x80;
    let err = rig
        .open(&ctx, &with_envelope(bytes), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Envelope(envelope::Error::AuthenticationFailed)),
        "{err:?}"
    );

    // Every single-byte change anywhere in the envelope is refused with a typed error.
    for i in 0..stored.envelope().len() {
        let mut bytes = stored.envelope().to_vec();
        bytes[i] ^= 0x01;
        let err = rig
            .open(&ctx, &with_envelope(bytes), None)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Envelope(_) | Error::KeyVerificationFailed { .. }
            ),
            "byte {i}: {err:?}"
        );
    }
}
