//! The conformance suite and provider-specific behaviour of `local`.

use std::sync::Arc;

use kms_providers::testkit::{self, Subject};
use kms_providers::{
    Error, KeyProvider, KeyVersion, LayerStack, LocalProvider, StaticKek, WrappedShare,
};
use zeroize::Zeroizing;

use crate::support::{ctx, local};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_key_directory() {
    let dir = tempfile::tempdir().unwrap();
    let subject = Subject::new(
        Arc::new(local(dir.path(), "kek-main")),
        Arc::new(local(dir.path(), "kek-other")),
    );
    let report = testkit::run_all(&subject).await.unwrap();
    assert_eq!(report.checks().len(), 10, "{report}");
    assert!(report.tamper_cases() > 500, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_through_the_layer_stack() {
    // The layers are providers too and must not weaken any guarantee.
    let dir = tempfile::tempdir().unwrap();
    let stack = LayerStack::new().jitter_seed(1);
    let subject = Subject::new(
        Arc::new(stack.build(local(dir.path(), "kek-main")).unwrap()),
        Arc::new(stack.build(local(dir.path(), "kek-other")).unwrap()),
    );
    testkit::run_all(&subject).await.unwrap();
}

#[tokio::test]
async fn static_keys_pass_every_check_but_rotation() {
    let p = LocalProvider::builder("static")
        .static_kek(StaticKek::new(1, Zeroizing::new([0x11; 32])))
        .static_kek(StaticKek::new(2, Zeroizing::new([0x22; 32])))
        .build()
        .unwrap();
    let other = LocalProvider::builder("static")
        .key_name("static-other")
        .static_kek(StaticKek::new(1, Zeroizing::new([0x33; 32])))
        .build()
        .unwrap();
    testkit::check_health(&p).await.unwrap();
    testkit::check_round_trip(&p).await.unwrap();
    testkit::check_input_bounds(&p).await.unwrap();
    testkit::check_wrong_context(&p).await.unwrap();
    testkit::check_tampered(&p).await.unwrap();
    testkit::check_other_key(&p, &other).await.unwrap();
    testkit::check_unknown_key(&p).await.unwrap();
    testkit::check_errors_name_provider(&p).await.unwrap();
    testkit::check_concurrency(Arc::new(p), 1_000)
        .await
        .unwrap();
}

#[tokio::test]
async fn version_one_still_unwraps_after_two_rotations_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let p = local(dir.path(), "kek");
    let c = ctx(1, 1);
    let w1 = p.wrap(b"first", &c).await.unwrap();
    kms_providers::KeyRotation::rotate(&p).await.unwrap();
    let v3 = kms_providers::KeyRotation::rotate(&p).await.unwrap();
    assert_eq!(v3, KeyVersion::from_number(3));
    let w3 = p.wrap(b"third", &c).await.unwrap();
    drop(p);
    let p = local(dir.path(), "kek");
    assert_eq!(p.current_version(), KeyVersion::from_number(3));
    assert_eq!(p.unwrap(&w1, &c).await.unwrap().expose_secret(), b"first");
    assert_eq!(p.unwrap(&w3, &c).await.unwrap().expose_secret(), b"third");
    // Stored bytes survive the round trip through the database column format.
    let stored = w1.to_bytes();
    let w1 = WrappedShare::from_bytes(&stored).unwrap();
    assert_eq!(p.unwrap(&w1, &c).await.unwrap().expose_secret(), b"first");
}

#[tokio::test]
async fn embedded_defaults_are_three_independent_keys() {
    let dir = tempfile::tempdir().unwrap();
    let providers = LocalProvider::embedded_defaults(dir.path()).unwrap();
    let names: Vec<_> = providers.iter().map(|p| p.name().to_owned()).collect();
    assert_eq!(names, ["gcp", "aws", "azure"]);
    let c = ctx(1, 1);
    let w = providers[0].wrap(b"share", &c).await.unwrap();
    for other in &providers[1..] {
        let err = other.unwrap(&w, &c).await.unwrap_err();
        assert!(matches!(err, Error::UnknownKey { .. }), "{err}");
        assert_eq!(err.provider(), other.name());
    }
    let warning = kms_providers::single_machine_warning(dir.path());
    assert!(warning.contains("\"gcp\", \"aws\" and \"azure\""));
    assert!(warning.contains(&dir.path().display().to_string()));
}

#[tokio::test]
async fn key_files_never_appear_in_debug_or_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = local(dir.path(), "kek");
    let file = dir.path().join("kek/v0000000001.kek");
    let bytes = std::fs::read(&file).unwrap();
    // The 32 key bytes sit after magic (8), format (1), version (4), name length (1), name (3).
    let key = &bytes[17..49];
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let c = ctx(1, 1);
    let w = p.wrap(&[1; 32], &c).await.unwrap();
    let err = p.unwrap(&w, &ctx(2, 1)).await.unwrap_err();
    let text = format!("{p:?} {err} {err:?} {w:?}");
    assert!(!text.contains(&hex), "{text}");
    assert!(!text.contains(&format!("{key:?}")[1..20]), "{text}");
}
