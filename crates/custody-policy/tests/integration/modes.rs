//! Custody modes as types: API strings, defaults, validation, immutability, billing tiers.

use custody_policy::{
    BillingTier, Custodian, CustodyMode, Error, ModeKind, SlotHolder, SplitScheme, VaultCustody,
};
use kms_providers::LocalProvider;

use crate::support::{all_modes, ctx};

#[test]
fn named_modes_parse_print_and_have_their_defaults() {
    let cases = [
        ("standard", ModeKind::Standard, 1, "gcp", SplitScheme::Whole),
        (
            "2of2_client_custody",
            ModeKind::TwoOfTwoClientCustody,
            2,
            "gcp,client",
            SplitScheme::Xor,
        ),
        (
            "2of3_multi_hsm",
            ModeKind::TwoOfThreeMultiHsm,
            2,
            "gcp,aws,azure",
            SplitScheme::Shamir,
        ),
        (
            "2of3_client_custody",
            ModeKind::TwoOfThreeClientCustody,
            2,
            "gcp,aws,client",
            SplitScheme::Shamir,
        ),
    ];
    for (text, kind, threshold, slots, scheme) in cases {
        let mode: CustodyMode = text.parse().unwrap();
        assert_eq!(mode.kind(), kind);
        assert_eq!(mode.threshold(), threshold);
        assert_eq!(mode.scheme(), scheme);
        let holders: Vec<String> = mode.slots().map(|s| s.holder().to_string()).collect();
        assert_eq!(holders.join(","), slots);
        assert_eq!(mode.to_string(), text);
        // Spelling the default slots out gives the same mode, printed canonically.
        let explicit: CustodyMode = format!("{text}:{slots}").parse().unwrap();
        assert_eq!(explicit, mode);
        assert_eq!(explicit.to_string(), text);
    }
}

#[test]
fn constructors_match_the_api_strings() {
    assert_eq!(CustodyMode::standard().to_string(), "standard");
    assert_eq!(
        CustodyMode::two_of_two_client_custody().to_string(),
        "2of2_client_custody"
    );
    assert_eq!(
        CustodyMode::two_of_three_multi_hsm().to_string(),
        "2of3_multi_hsm"
    );
    assert_eq!(
        CustodyMode::two_of_three_client_custody().to_string(),
        "2of3_client_custody"
    );
}

#[test]
fn every_mode_round_trips_through_its_string() {
    for mode in all_modes() {
        let text = mode.to_string();
        assert_eq!(text.parse::<CustodyMode>().unwrap(), mode, "{text}");
        assert_eq!(format!("{mode:?}"), format!("CustodyMode({text})"));
    }
}

#[test]
fn custom_layouts_with_a_pkcs11_slot() {
    let mode: CustodyMode = "3of5:gcp,aws,azure,pkcs11,client".parse().unwrap();
    assert_eq!(mode.kind(), ModeKind::Custom);
    assert_eq!((mode.threshold(), mode.share_count()), (3, 5));
    assert_eq!(mode.client_slot().map(|s| s.get()), Some(5));
    assert_eq!(mode.scheme(), SplitScheme::Shamir);
    let built = CustodyMode::custom(
        3,
        [
            SlotHolder::provider("gcp").unwrap(),
            SlotHolder::provider("aws").unwrap(),
            SlotHolder::provider("azure").unwrap(),
            SlotHolder::provider("pkcs11").unwrap(),
            SlotHolder::Client,
        ],
    )
    .unwrap();
    assert_eq!(built, mode);
    // The client slot may be anywhere in a custom layout.
    let first: CustodyMode = "2of3:client,gcp,aws".parse().unwrap();
    assert_eq!(first.client_slot().map(|s| s.get()), Some(1));
    // n-of-n custom layouts split with XOR.
    let all: CustodyMode = "3of3:gcp,aws,azure".parse().unwrap();
    assert_eq!(all.scheme(), SplitScheme::Xor);
}

#[test]
fn named_modes_take_other_providers() {
    let mode = CustodyMode::two_of_three_multi_hsm()
        .with_providers(["gcp", "aws", "hsm-eu"])
        .unwrap();
    assert_eq!(mode.to_string(), "2of3_multi_hsm:gcp,aws,hsm-eu");
    assert_eq!(mode.kind(), ModeKind::TwoOfThreeMultiHsm);
    assert_eq!(mode.to_string().parse::<CustodyMode>().unwrap(), mode);
    let standard = CustodyMode::standard().with_providers(["pkcs11"]).unwrap();
    assert_eq!(standard.to_string(), "standard:pkcs11");
    // Wrong number of names, repeated names.
    assert!(
        CustodyMode::two_of_three_multi_hsm()
            .with_providers(["a", "b"])
            .is_err()
    );
    assert!(
        CustodyMode::two_of_three_multi_hsm()
            .with_providers(["a", "b", "c", "d"])
            .is_err()
    );
    assert!(
        CustodyMode::two_of_three_multi_hsm()
            .with_providers(["a", "a", "b"])
            .is_err()
    );
    assert!(matches!(
        CustodyMode::standard().with_providers(["client"]),
        Err(Error::InvalidProviderName { .. })
    ));
}

#[test]
fn invalid_mode_strings_are_typed_errors_with_reasons() {
    let cases = [
        ("", "unknown custody mode"),
        ("STANDARD", "unknown custody mode"),
        ("2of3-multi-hsm", "unknown custody mode"),
        (" standard", "unknown custody mode"),
        ("3of5", "lists its 5 slots"),
        ("3of5:gcp,aws", "lists 2 slot(s), expected 5"),
        ("1of2:gcp,aws", "threshold 1 is too low"),
        ("3of2:gcp,aws", "threshold 3 is above the 2 slots"),
        ("2of3:gcp,gcp,aws", "holds more than one slot"),
        (
            "2of3:client,client,gcp",
            "at most one slot can be the client's",
        ),
        ("2of3:gcp,,aws", "bad slot list"),
        ("2of3:gcp,a b,aws", "bad slot list"),
        (
            "2of3_multi_hsm:gcp,aws,client",
            "2of3_multi_hsm has the slots",
        ),
        ("2of3_multi_hsm:gcp,aws", "2of3_multi_hsm has the slots"),
        (
            "2of2_client_custody:client,gcp",
            "2of2_client_custody has the slots",
        ),
        ("standard:", "bad slot list"),
        ("02of3:a,b,c", "unknown custody mode"),
    ];
    for (input, reason) in cases {
        match input.parse::<CustodyMode>() {
            Err(Error::InvalidMode {
                input: quoted,
                reason: why,
            }) => {
                assert_eq!(quoted, input);
                assert!(why.contains(reason), "{input:?}: {why}");
            }
            other => panic!("{input:?}: {other:?}"),
        }
    }
    let many: Vec<String> = (0..17).map(|i| format!("p{i}")).collect();
    let err = format!("2of17:{}", many.join(","))
        .parse::<CustodyMode>()
        .unwrap_err();
    assert!(err.to_string().contains("at most 16 are allowed"), "{err}");
    // Input quoted in errors is cut short.
    let long = "x".repeat(10_000);
    let Err(Error::InvalidMode { input, .. }) = long.parse::<CustodyMode>() else {
        panic!("a 10 kB mode string must be refused");
    };
    assert!(input.len() < 200);
}

#[test]
fn missing_providers_are_named() {
    let mode: CustodyMode = "3of5:gcp,aws,azure,pkcs11,client".parse().unwrap();
    let err = mode.check_providers(["aws", "gcp"]).unwrap_err();
    let Error::MissingProviders { missing, .. } = &err else {
        panic!("{err:?}");
    };
    let missing: Vec<&str> = missing.iter().map(|n| n.as_str()).collect();
    assert_eq!(missing, ["azure", "pkcs11"]);
    assert_eq!(
        err.to_string(),
        "custody mode 3of5:gcp,aws,azure,pkcs11,client needs key providers that are not \
         configured: azure, pkcs11; configure them or choose a mode that uses only the \
         configured providers"
    );
    assert!(
        mode.check_providers(["gcp", "aws", "azure", "pkcs11"])
            .is_ok()
    );
}

#[tokio::test]
async fn a_custodian_refuses_modes_it_cannot_serve() {
    let keys = tempfile::tempdir().unwrap();
    let custodian = Custodian::builder()
        .provider(
            LocalProvider::builder("gcp")
                .key_dir(keys.path())
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    assert!(custodian.check_mode(&CustodyMode::standard()).is_ok());
    assert!(
        custodian
            .check_mode(&CustodyMode::two_of_two_client_custody())
            .is_ok()
    );
    let mode = CustodyMode::two_of_three_multi_hsm();
    assert!(matches!(
        custodian.check_mode(&mode),
        Err(Error::MissingProviders { .. })
    ));
    let err = custodian
        .seal(&ctx(&mode, "p", 1), b"secret")
        .await
        .unwrap_err();
    let Error::MissingProviders { missing, .. } = err else {
        panic!("{err:?}");
    };
    assert_eq!(missing.len(), 2);
}

#[test]
fn provider_names_must_fit_mode_strings() {
    let keys = tempfile::tempdir().unwrap();
    // A provider whose name cannot appear in a mode string cannot be configured either.
    let odd = LocalProvider::builder("hsm.eu")
        .key_dir(keys.path())
        .build()
        .unwrap();
    assert!(Custodian::builder().provider(odd).build().is_ok());
    let long = LocalProvider::builder("x".repeat(40))
        .key_dir(keys.path())
        .build()
        .unwrap();
    assert!(matches!(
        Custodian::builder().provider(long).build(),
        Err(Error::InvalidProviderName { .. })
    ));
}

#[test]
fn a_vault_mode_is_set_once() {
    let mut vault = VaultCustody::new();
    assert_eq!(vault.mode(), None);
    vault
        .set_mode(CustodyMode::two_of_three_client_custody())
        .unwrap();
    for again in [
        CustodyMode::standard(),
        CustodyMode::two_of_three_client_custody(),
    ] {
        let err = vault.set_mode(again.clone()).unwrap_err();
        let Error::ModeAlreadySet { current, requested } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(current, &CustodyMode::two_of_three_client_custody());
        assert_eq!(requested, &again);
    }
    assert_eq!(
        vault
            .set_mode(CustodyMode::standard())
            .unwrap_err()
            .to_string(),
        "the vault's custody mode is already 2of3_client_custody and cannot be changed to \
         standard: secrets sealed under a mode stay bound to it"
    );
    // A vault loaded from storage is just as fixed.
    let mut loaded = VaultCustody::with_mode("2of3_multi_hsm".parse().unwrap());
    assert!(loaded.set_mode(CustodyMode::standard()).is_err());
    assert_eq!(loaded.mode(), Some(&CustodyMode::two_of_three_multi_hsm()));
}

#[test]
fn billing_tiers_map_to_treasury_custody() {
    let cases = [
        ("free", CustodyMode::standard()),
        ("pro", CustodyMode::two_of_two_client_custody()),
        ("team", CustodyMode::two_of_two_client_custody()),
        ("business", CustodyMode::two_of_three_multi_hsm()),
        ("enterprise", CustodyMode::two_of_three_multi_hsm()),
    ];
    for (text, mode) in cases {
        let tier: BillingTier = text.parse().unwrap();
        assert_eq!(tier.to_string(), text);
        assert_eq!(tier.treasury_custody(), mode, "{text}");
    }
    for bad in ["Pro", "gold", "", "free "] {
        assert!(matches!(
            bad.parse::<BillingTier>(),
            Err(Error::UnknownBillingTier { .. })
        ));
    }
}
