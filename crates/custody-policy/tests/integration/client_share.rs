//! The client share: missing, malformed, foreign and wrong shares are four distinct errors, in
//! every mode that has a client slot.

use custody_policy::{ClientShare, ClientShareDefect, CustodyMode, Error, SecretContext};

use crate::support::{Lab, all_modes, assert_opens, ctx};

const SECRET: &[u8] = b"treasury signing key";

fn client_modes() -> Vec<CustodyMode> {
    all_modes()
        .into_iter()
        .filter(|m| m.client_slot().is_some())
        .collect()
}

/// Re-encodes a client share's bytes after `edit`, as a client mangling it would.
fn edited(share: &ClientShare, edit: impl FnOnce(&mut Vec<u8>)) -> ClientShare {
    let mut bytes = share.to_bytes().to_vec();
    edit(&mut bytes);
    ClientShare::from_bytes(&bytes).unwrap()
}

#[tokio::test]
async fn the_right_share_opens_in_either_alphabet_with_or_without_padding() {
    let lab = Lab::new();
    for mode in client_modes() {
        let rig = lab.rig(&mode);
        let ctx = ctx(&mode, "treasury/key", 1);
        let (stored, client) = rig.seal(&ctx, SECRET).await.into_parts();
        let text = client.unwrap().to_base64();
        let standard = text.expose_secret().to_owned();
        assert_eq!(standard.len(), 56);
        let url_safe = standard.replace('+', "-").replace('/', "_");
        // 42 bytes encode to 56 characters with no padding; padded and unpadded inputs of
        // other lengths are covered by the codec's own tests.
        for form in [standard.clone(), url_safe] {
            let share = ClientShare::from_base64(&form).unwrap();
            assert_eq!(Some(share.slot()), mode.client_slot());
            assert_opens(rig.open(&ctx, &stored, Some(&share)).await, SECRET);
        }
    }
}

#[tokio::test]
async fn missing_share() {
    let lab = Lab::new();
    for mode in client_modes() {
        let rig = lab.rig(&mode);
        let ctx = ctx(&mode, "p", 1);
        let (stored, _) = rig.seal(&ctx, SECRET).await.into_parts();
        let before: u64 = rig.calls().values().sum();
        let err = rig.open(&ctx, &stored, None).await.unwrap_err();
        let Error::ClientShareMissing { slot } = err else {
            panic!("{mode}: {err:?}");
        };
        assert_eq!(Some(slot), mode.client_slot());
        // Refused before any provider was asked, even where the providers alone could reach
        // the threshold (2of3_client_custody has two provider shares): the server never opens
        // a client-custody secret on its own.
        assert_eq!(rig.calls().values().sum::<u64>(), before);
    }
}

#[test]
fn malformed_shares() {
    let share = {
        let mut bytes = vec![1u8, 2];
        bytes.extend_from_slice(&[0xAA; 8]);
        bytes.extend_from_slice(&[0x55; 32]);
        ClientShare::from_bytes(&bytes).unwrap()
    };
    let text = share.to_base64().expose_secret().to_owned();
    let cases: Vec<(String, ClientShareDefect)> = vec![
        (String::new(), ClientShareDefect::Length { len: 0 }),
        ("%%%%".to_owned(), ClientShareDefect::NotBase64),
        (format!("{text} "), ClientShareDefect::NotBase64),
        (format!(" {text}"), ClientShareDefect::NotBase64),
        (text[..52].to_owned(), ClientShareDefect::Length { len: 39 }),
        (format!("{text}AAAA"), ClientShareDefect::Length { len: 45 }),
        // 53 characters leave a 1-character group, which encodes no whole byte.
        (text[..53].to_owned(), ClientShareDefect::NotBase64),
        (format!("*{}", &text[1..]), ClientShareDefect::NotBase64),
    ];
    for (input, expected) in cases {
        match ClientShare::from_base64(&input) {
            Err(Error::ClientShareMalformed { defect }) => {
                assert_eq!(defect, expected, "{input:?}")
            }
            other => panic!("{input:?}: {other:?}"),
        }
    }
    let version = {
        let mut bytes = share.to_bytes().to_vec();
        bytes[0] = 2;
        bytes
    };
    assert!(matches!(
        ClientShare::from_bytes(&version),
        Err(Error::ClientShareMalformed {
            defect: ClientShareDefect::Version { version: 2 }
        })
    ));
    assert_eq!(
        ClientShare::from_bytes(&version).unwrap_err().to_string(),
        "malformed client share: unsupported format version 2: this build reads version 1"
    );
}

#[tokio::test]
async fn a_share_claiming_another_slot_is_malformed() {
    let lab = Lab::new();
    for mode in client_modes() {
        let rig = lab.rig(&mode);
        let ctx = ctx(&mode, "p", 1);
        let (stored, client) = rig.seal(&ctx, SECRET).await.into_parts();
        let client = client.unwrap();
        let moved = edited(&client, |b| b[1] = 1);
        let err = rig.open(&ctx, &stored, Some(&moved)).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::ClientShareMalformed {
                    defect: ClientShareDefect::NotClientSlot { index: 1, .. }
                }
            ),
            "{mode}: {err:?}"
        );
    }
}

#[tokio::test]
async fn foreign_shares_name_both_tags() {
    let lab = Lab::new();
    for mode in client_modes() {
        let rig = lab.rig(&mode);
        let v1 = ctx(&mode, "treasury/key", 1);
        let v2 = ctx(&mode, "treasury/key", 2);
        let other_path = ctx(&mode, "treasury/other", 1);
        let other_vault =
            SecretContext::new("vault-8", "treasury/key", 1, "password", mode.clone()).unwrap();
        let (stored_v1, client_v1) = rig.seal(&v1, SECRET).await.into_parts();
        let client_v1 = client_v1.unwrap();
        for (other, label) in [
            (&v2, "version"),
            (&other_path, "path"),
            (&other_vault, "vault"),
        ] {
            let (stored, _) = rig.seal(other, SECRET).await.into_parts();
            let before: u64 = rig.calls().values().sum();
            let err = rig
                .open(other, &stored, Some(&client_v1))
                .await
                .unwrap_err();
            let Error::ClientShareForeign { found, expected } = &err else {
                panic!("{mode} {label}: {err:?}");
            };
            assert_eq!(*found, client_v1.context_tag());
            assert_eq!(Some(*expected), other.client_share_tag());
            assert!(err.to_string().contains(&found.to_string()));
            assert_eq!(
                rig.calls().values().sum::<u64>(),
                before,
                "no provider call"
            );
        }
        // And the share still opens its own version.
        assert_opens(rig.open(&v1, &stored_v1, Some(&client_v1)).await, SECRET);
    }
}

#[tokio::test]
async fn wrong_shares_are_refused_without_plaintext() {
    let lab = Lab::new();
    for mode in client_modes() {
        let rig = lab.rig(&mode);
        let ctx = ctx(&mode, "p", 1);
        // An earlier, abandoned seal of the same version: its client share is tagged for this
        // version but belongs to another key.
        let (_, abandoned) = rig.seal(&ctx, b"first attempt").await.into_parts();
        let (stored, client) = rig.seal(&ctx, SECRET).await.into_parts();
        let flipped = edited(client.as_ref().unwrap(), |b| b[20] ^= 0x01);
        for wrong in [abandoned.unwrap(), flipped] {
            let err = rig.open(&ctx, &stored, Some(&wrong)).await.unwrap_err();
            let Error::WrongClientShare {
                confirmed,
                unverified,
            } = &err
            else {
                panic!("{mode}: {err:?}");
            };
            let providers = mode.provider_slots().count();
            let needed = usize::from(mode.threshold());
            if providers >= needed {
                // The providers alone rebuild the key, which proves the client share wrong.
                assert!(*confirmed, "{mode}");
                assert!(unverified.is_empty());
            } else {
                // 2-of-2: nothing to cross-check with.
                assert!(!confirmed, "{mode}");
                assert_eq!(unverified.len(), providers);
            }
            assert!(!err.is_transient());
        }
    }
}

#[tokio::test]
async fn a_client_share_for_a_mode_without_a_client_slot_is_unexpected() {
    let lab = Lab::new();
    let with_client = CustodyMode::two_of_two_client_custody();
    let (_, client) = lab
        .rig(&with_client)
        .seal(&ctx(&with_client, "p", 1), SECRET)
        .await
        .into_parts();
    for mode in all_modes()
        .into_iter()
        .filter(|m| m.client_slot().is_none())
    {
        let rig = lab.rig(&mode);
        let ctx = ctx(&mode, "p", 1);
        let (stored, none) = rig.seal(&ctx, SECRET).await.into_parts();
        assert!(none.is_none());
        let err = rig.open(&ctx, &stored, client.as_ref()).await.unwrap_err();
        assert!(
            matches!(err, Error::UnexpectedClientShare { .. }),
            "{mode}: {err:?}"
        );
    }
}

#[tokio::test]
async fn the_four_errors_are_distinct() {
    let lab = Lab::new();
    let mode = CustodyMode::two_of_three_client_custody();
    let rig = lab.rig(&mode);
    let ctx = ctx(&mode, "p", 1);
    let (_, other) = rig
        .seal(&crate::support::ctx(&mode, "p", 2), SECRET)
        .await
        .into_parts();
    let (_, abandoned) = rig.seal(&ctx, SECRET).await.into_parts();
    let (stored, _) = rig.seal(&ctx, SECRET).await.into_parts();

    let missing = rig.open(&ctx, &stored, None).await.unwrap_err();
    let malformed = ClientShare::from_base64("definitely not a share").unwrap_err();
    let foreign = rig.open(&ctx, &stored, other.as_ref()).await.unwrap_err();
    let wrong = rig
        .open(&ctx, &stored, abandoned.as_ref())
        .await
        .unwrap_err();
    assert!(matches!(missing, Error::ClientShareMissing { .. }));
    assert!(matches!(malformed, Error::ClientShareMalformed { .. }));
    assert!(matches!(foreign, Error::ClientShareForeign { .. }));
    assert!(matches!(
        wrong,
        Error::WrongClientShare {
            confirmed: true,
            ..
        }
    ));
    let messages = [
        missing.to_string(),
        malformed.to_string(),
        foreign.to_string(),
        wrong.to_string(),
    ];
    assert_eq!(
        messages[0],
        "this custody mode needs the client share of slot 3 to open or repair a secret"
    );
    assert_eq!(
        messages[1],
        "malformed client share: not base64: use the standard or URL-safe alphabet, with or \
         without '=' padding"
    );
    assert!(messages[2].starts_with("the client share belongs to another secret"));
    assert!(messages[3].starts_with("wrong client share"));
}
