//! Error messages are pinned (operators read them), provider errors stay reachable as sources.

use std::error::Error as _;

use custody_policy::{CustodyMode, Error, WriteQuorum};
use kms_providers::FaultConfig;

use crate::support::{Lab, ctx};

#[tokio::test]
async fn write_quorum_errors_name_the_failed_slots_and_keep_the_provider_error() {
    let lab = Lab::new();
    let mode = CustodyMode::two_of_three_multi_hsm();
    let rig = lab.rig_with(&mode, WriteQuorum::Threshold, |_| FaultConfig::new(1));
    rig.down("aws");
    rig.down("azure");
    let err = rig
        .custodian
        .seal(&ctx(&mode, "p", 1), b"x")
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "write quorum not met: 2 share(s) must be stored (the client share counts), only 1 could \
         be; slot 2 (aws), slot 3 (azure) failed"
    );
    let failures = err.source().unwrap();
    assert_eq!(
        failures.to_string(),
        "slot 2 (aws): key provider \"aws\": unavailable: injected fault; slot 3 (azure): key \
         provider \"azure\": unavailable: injected fault"
    );
    let provider = failures.source().unwrap();
    let provider = provider.downcast_ref::<kms_providers::Error>().unwrap();
    assert_eq!(provider.provider(), "aws");
    assert!(err.is_transient());
}

#[tokio::test]
async fn read_errors_are_pinned() {
    let lab = Lab::new();
    let mode = CustodyMode::two_of_three_multi_hsm();
    let rig = lab.rig(&mode);
    let ctx = ctx(&mode, "p", 1);
    let (stored, _) = rig.seal(&ctx, b"x").await.into_parts();
    rig.down("gcp");
    rig.down("azure");
    let err = rig.open(&ctx, &stored, None).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "not enough shares to rebuild the key: 2 needed, 1 obtained; slot 1 (gcp), slot 3 \
         (azure) failed"
    );
    rig.all_up();

    let v2 = crate::support::ctx(&mode, "p", 2);
    let (stored_v2, _) = rig.seal(&v2, b"y").await.into_parts();
    let mixed =
        custody_policy::StoredSecret::new(stored.envelope().to_vec(), stored_v2.slots().to_vec());
    let err = rig.open(&v2, &mixed, None).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "no combination of the shares from slot 1 (gcp), slot 2 (aws), slot 3 (azure) rebuilds \
         the key of this envelope: more shares are wrong than the mode can tolerate, or the \
         envelope is corrupted"
    );
    assert!(!err.is_transient());
}

#[test]
fn configuration_errors_are_pinned() {
    let cases: Vec<(Error, &str)> = vec![
        (
            "2of3:gcp,aws,gcp".parse::<CustodyMode>().unwrap_err(),
            "invalid custody mode \"2of3:gcp,aws,gcp\": provider gcp holds more than one slot: \
             each slot needs its own provider",
        ),
        (
            "2of3:gcp,aws,Client!".parse::<CustodyMode>().unwrap_err(),
            "invalid custody mode \"2of3:gcp,aws,Client!\": bad slot list: invalid provider name \
             \"Client!\": a provider name uses only A-Z, a-z, 0-9, '.', '_' and '-'",
        ),
        (
            "gold".parse::<custody_policy::BillingTier>().unwrap_err(),
            "unknown billing tier \"gold\": use free, pro, team, business or enterprise",
        ),
        (
            custody_policy::SecretContext::new("", "p", 1, "t", CustodyMode::standard())
                .unwrap_err(),
            "invalid secret context: context field `vault_id` is 0 bytes long: it must be 1 to \
             1024 bytes",
        ),
        (
            Error::NothingToRepair,
            "nothing to repair: every provider share of this secret is stored",
        ),
    ];
    for (err, message) in cases {
        assert_eq!(err.to_string(), message);
        assert!(!err.is_transient());
    }
}
