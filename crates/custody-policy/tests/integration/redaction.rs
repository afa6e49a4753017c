//! No secret reaches `Debug` or an error message: not the plaintext, not a share, not the
//! client share's text.

use custody_policy::{ClientShare, CustodyMode, Error};

use crate::support::{Lab, ctx};

/// Distinctive bytes: any leak of them in any common rendering would be found.
const SECRET: &[u8] = b"Zq9-UNIQUE-PLAINTEXT-7Xv";

/// Renderings of `bytes` that a leaky `Debug` could produce.
fn renderings(bytes: &[u8]) -> Vec<String> {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let list = format!("{:?}", &bytes[..8]);
    let lossy = String::from_utf8_lossy(bytes).into_owned();
    vec![hex[..16].to_owned(), list, lossy]
}

fn assert_clean(shown: &str, secrets: &[Vec<String>]) {
    for rendering in secrets.iter().flatten() {
        assert!(
            !shown.contains(rendering.as_str()),
            "{rendering:?} leaked in: {shown}"
        );
    }
}

#[tokio::test]
async fn nothing_secret_in_debug_output() {
    let lab = Lab::new();
    for mode in [
        CustodyMode::two_of_two_client_custody(),
        CustodyMode::two_of_three_client_custody(),
        "3of5:gcp,aws,azure,pkcs11,client".parse().unwrap(),
    ] {
        let rig = lab.rig(&mode);
        let ctx = ctx(&mode, "p", 1);
        let sealed = rig.seal(&ctx, SECRET).await;
        let client = sealed.client_share().unwrap();
        let text = client.to_base64();
        let secrets = vec![
            renderings(SECRET),
            renderings(client.expose_secret()),
            vec![text.expose_secret()[10..30].to_owned()],
        ];

        for shown in [format!("{sealed:?}"), format!("{sealed:#?}")] {
            assert_clean(&shown, &secrets);
            assert!(shown.contains("ClientShare"), "{shown}");
        }
        for shown in [
            format!("{client:?}"),
            format!("{text:?}"),
            format!("{text:#?}"),
        ] {
            assert_clean(&shown, &secrets);
        }
        let (stored, client) = sealed.into_parts();
        let client = client.unwrap();
        let opened = rig.open(&ctx, &stored, Some(&client)).await.unwrap();
        for shown in [format!("{opened:?}"), format!("{opened:#?}")] {
            assert_clean(&shown, &secrets);
            assert!(shown.contains("REDACTED"), "{shown}");
        }
        for shown in [
            format!("{:?}", rig.custodian),
            format!("{stored:?}"),
            format!("{ctx:?}"),
        ] {
            assert_clean(&shown, &secrets);
        }
        // Errors about the client share name tags and slots, never its bytes.
        let mut flipped = client.to_bytes().to_vec();
        flipped[30] ^= 0x10;
        let wrong = ClientShare::from_bytes(&flipped).unwrap();
        let err = rig.open(&ctx, &stored, Some(&wrong)).await.unwrap_err();
        assert!(matches!(err, Error::WrongClientShare { .. }));
        let mut wrong_secrets = secrets.clone();
        wrong_secrets.push(renderings(wrong.expose_secret()));
        for shown in [format!("{err}"), format!("{err:?}"), format!("{wrong:?}")] {
            assert_clean(&shown, &wrong_secrets);
        }
        let mut bad_text = text.expose_secret().to_owned();
        bad_text.push('!');
        let err = ClientShare::from_base64(&bad_text).unwrap_err();
        for shown in [format!("{err}"), format!("{err:?}")] {
            assert_clean(&shown, &secrets);
        }
    }
}

#[tokio::test]
async fn repair_reports_hold_no_secret() {
    let lab = Lab::new();
    let mode = CustodyMode::two_of_three_multi_hsm();
    let rig = lab.rig_with(&mode, custody_policy::WriteQuorum::Threshold, |_| {
        kms_providers::FaultConfig::new(8)
    });
    let ctx = ctx(&mode, "p", 1);
    rig.down("azure");
    let sealed = rig.seal(&ctx, SECRET).await;
    rig.up("azure");
    let repaired = rig
        .custodian
        .repair(&ctx, sealed.stored(), None)
        .await
        .unwrap();
    let shown = format!("{repaired:?} {sealed:?}");
    assert_clean(&shown, &[renderings(SECRET)]);
    assert!(shown.contains("azure"));
}
