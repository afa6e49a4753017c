//! The conformance suite and provider-specific behaviour of `pkcs11`, on SoftHSM2.

use std::sync::Arc;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use kms_providers::testkit::{self, Subject};
use kms_providers::{
    Error, KeyProvider, KeyRotation, KeyVersion, LayerStack, Pkcs11Pin, Pkcs11Provider,
};

use crate::support::{PIN_TOKEN, TOKEN, ctx, hsm};

async fn provider(name: &str, label: &str) -> Pkcs11Provider {
    hsm()
        .token
        .provider_builder(name)
        .key_label(label)
        .build()
        .await
        .unwrap()
}

/// A raw cryptoki session on the shared token, to inspect or plant key objects the way an HSM
/// administrator would. The module is already initialized by the providers (or is initialized
/// here first, which the providers then share).
fn admin_session() -> cryptoki::session::Session {
    let h = hsm();
    let ctx = Pkcs11::new(h.token.module_path()).unwrap();
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(())
        | Err(cryptoki::error::Error::Pkcs11(
            cryptoki::error::RvError::CryptokiAlreadyInitialized,
            _,
        )) => {}
        Err(e) => panic!("{e}"),
    }
    let slot = ctx
        .get_slots_with_initialized_token()
        .unwrap()
        .into_iter()
        .find(|s| ctx.get_token_info(*s).unwrap().label() == TOKEN)
        .unwrap();
    let session = ctx.open_rw_session(slot).unwrap();
    let pin = AuthPin::new(h.token.user_pin().expose_secret().into());
    match session.login(UserType::User, Some(&pin)) {
        Ok(())
        | Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::UserAlreadyLoggedIn, _)) => {
        }
        Err(e) => panic!("{e}"),
    }
    session
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_softhsm2() {
    let subject = Subject::new(
        Arc::new(provider("hsm", "conformance-kek").await),
        Arc::new(provider("hsm", "conformance-other").await),
    );
    let report = testkit::run_all(&subject).await.unwrap();
    assert_eq!(report.checks().len(), 10, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_through_the_layer_stack() {
    let stack = LayerStack::new().jitter_seed(2).max_concurrency(8);
    let subject = Subject::new(
        Arc::new(
            stack
                .build(provider("hsm-layered", "layered-kek").await)
                .unwrap(),
        ),
        Arc::new(
            stack
                .build(provider("hsm-layered", "layered-other").await)
                .unwrap(),
        ),
    );
    testkit::run_all(&subject).await.unwrap();
}

#[tokio::test]
async fn generated_key_is_sensitive_non_extractable_aes_256() {
    let p = provider("hsm", "attrs-kek").await;
    p.health().await.unwrap();
    let session = admin_session();
    let handles = session
        .find_objects(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::Label(b"attrs-kek".to_vec()),
        ])
        .unwrap();
    assert_eq!(handles.len(), 1);
    let attrs = session
        .get_attributes(
            handles[0],
            &[
                AttributeType::KeyType,
                AttributeType::ValueLen,
                AttributeType::Sensitive,
                AttributeType::Extractable,
                AttributeType::Token,
                AttributeType::Encrypt,
                AttributeType::Decrypt,
                AttributeType::Wrap,
                AttributeType::Id,
            ],
        )
        .unwrap();
    let expected = [
        Attribute::KeyType(KeyType::AES),
        Attribute::ValueLen(32.into()),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Token(true),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Wrap(false),
        Attribute::Id(1u32.to_be_bytes().to_vec()),
    ];
    for e in expected {
        assert!(attrs.contains(&e), "missing {e:?} in {attrs:?}");
    }
}

#[tokio::test]
async fn refuses_an_extractable_key() {
    let session = admin_session();
    session
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(32.into()),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(false),
                Attribute::Extractable(true),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::Label(b"weak-kek".to_vec()),
                Attribute::Id(vec![1]),
            ],
        )
        .unwrap();
    let err = hsm()
        .token
        .provider_builder("hsm")
        .key_label("weak-kek")
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Misconfigured { .. }), "{err}");
    assert!(err.to_string().contains("extractable"), "{err}");
}

#[tokio::test]
async fn refuses_a_missing_key_when_creation_is_off() {
    let err = hsm()
        .token
        .provider_builder("hsm")
        .key_label("never-created")
        .create_key_if_missing(false)
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Misconfigured { .. }), "{err}");
    assert!(err.to_string().contains("never-created"), "{err}");
}

#[tokio::test]
async fn wrong_pin_is_permission_denied_and_never_printed() {
    let h = hsm();
    let err = Pkcs11Provider::builder("hsm-pin")
        .module(h.token.module_path())
        .token_label(PIN_TOKEN)
        .pin(Pkcs11Pin::new("not-the-pin-0000"))
        .create_key_if_missing(true)
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err}");
    assert_eq!(err.provider(), "hsm-pin");
    let text = format!("{err} {err:?}");
    assert!(!text.contains("not-the-pin-0000"), "{text}");

    let builder = Pkcs11Provider::builder("hsm-pin")
        .module(h.token.module_path())
        .token_label(PIN_TOKEN)
        .pin(Pkcs11Pin::new(h.pin_token_pin.expose_secret()))
        .create_key_if_missing(true);
    let builder_text = format!("{builder:?}");
    let p = builder.build().await.unwrap();
    let text = format!("{builder_text} {p:?} {:?}", h.token);
    assert!(!text.contains(h.pin_token_pin.expose_secret()), "{text}");
    assert!(text.contains("[REDACTED]"), "{text}");
    p.health().await.unwrap();
}

#[tokio::test]
async fn pin_from_a_missing_environment_variable_is_misconfiguration() {
    let err = hsm()
        .token
        .provider_builder("hsm")
        .pin_from_env("KMS_PROVIDERS_TEST_PIN_THAT_IS_NOT_SET")
        .key_label("env-kek")
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Misconfigured { .. }), "{err}");
}

#[tokio::test]
async fn unknown_token_and_module_are_misconfiguration() {
    let err = Pkcs11Provider::builder("hsm")
        .module(hsm().token.module_path())
        .token_label("no-such-token")
        .pin(Pkcs11Pin::new("1234"))
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Misconfigured { .. }), "{err}");
    let err = Pkcs11Provider::builder("hsm")
        .module("/nonexistent/libpkcs11.so")
        .token_label(TOKEN)
        .pin(Pkcs11Pin::new("1234"))
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Misconfigured { .. }), "{err}");
}

#[tokio::test]
async fn rotation_by_another_instance_is_picked_up() {
    let a = provider("hsm-a", "shared-kek").await;
    let b = provider("hsm-b", "shared-kek").await;
    assert_eq!(b.rotate().await.unwrap(), KeyVersion::from_number(2));
    let c = ctx(1, 1);
    let w = b.wrap(b"after rotation", &c).await.unwrap();
    assert_eq!(w.key_version(), &KeyVersion::from_number(2));
    // `a` loaded version 1 only; it re-reads the token for the newer version.
    assert_eq!(
        a.unwrap(&w, &c).await.unwrap().expose_secret(),
        b"after rotation"
    );
    // A version older than any that exists is unknown without a token round trip.
    assert_eq!(a.current_version(), KeyVersion::from_number(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_session_pool_serves_many_concurrent_calls() {
    let p = hsm()
        .token
        .provider_builder("hsm-pool")
        .key_label("pool-kek")
        .max_sessions(2)
        .build()
        .await
        .unwrap();
    testkit::check_concurrency(Arc::new(p), 200).await.unwrap();
}

#[tokio::test]
async fn wrapped_share_from_local_is_the_wrong_kind() {
    let p = provider("hsm", "kind-kek").await;
    let dir = tempfile::tempdir().unwrap();
    let local = crate::support::local(dir.path(), "kind-kek");
    let c = ctx(1, 1);
    let w = local.wrap(b"share", &c).await.unwrap();
    let err = p.unwrap(&w, &c).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::WrongProviderKind {
                expected: kms_providers::ProviderKind::Pkcs11,
                found: kms_providers::ProviderKind::Local,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn softhsm_reports_a_bad_tag_as_general_error_which_maps_to_authentication_failed() {
    use std::error::Error as _;
    let p = provider("hsm", "tag-kek").await;
    let w = p.wrap(&[5; 32], &ctx(1, 1)).await.unwrap();
    let err = p.unwrap(&w, &ctx(2, 1)).await.unwrap_err();
    assert!(matches!(err, Error::AuthenticationFailed { .. }), "{err}");
    // The PKCS#11 error is kept as the source, and it is SoftHSM2's CKR_GENERAL_ERROR from
    // C_Decrypt: the quirk the mapping documents.
    let source = err.source().expect("source kept");
    let ck = source
        .downcast_ref::<cryptoki::error::Error>()
        .expect("a cryptoki error");
    assert!(
        matches!(
            ck,
            cryptoki::error::Error::Pkcs11(
                cryptoki::error::RvError::GeneralError,
                cryptoki::context::Function::Decrypt
            )
        ),
        "{ck:?}"
    );
}
