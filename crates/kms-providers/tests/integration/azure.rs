//! The Azure provider through the official SDK against the wire-compatible Key Vault / Managed
//! HSM on 127.0.0.1: TLS with a test CA, the 401 challenge, real RSA-OAEP-256 and A256KW.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kms_providers::testkit::{self, AzureKeyVaultServer, Subject};
use kms_providers::{
    Algorithm, AzureKeyVaultProvider, AzureKeyVaultProviderBuilder, Error, KeyProvider,
    WrapContext, WrappedShare,
};

fn ctx(version: u64) -> WrapContext {
    WrapContext::new("vault-az", "azure/secret", version, 1, "shamir-2-of-3").unwrap()
}

/// The conformance and concurrency runs fire 1,000–3,000 calls at once at one in-process server
/// on a small, often busy CI machine (the other providers' conformance runs share it), and
/// every call waits for the whole batch: generous deadlines, because these tests check
/// behaviour, not speed. The timeout tests set their own.
fn roomy(builder: AzureKeyVaultProviderBuilder) -> AzureKeyVaultProviderBuilder {
    builder
        .attempt_timeout(Duration::from_secs(120))
        .operation_timeout(Duration::from_secs(240))
}

async fn key_vault() -> (AzureKeyVaultServer, AzureKeyVaultProvider) {
    let server = AzureKeyVaultServer::start_key_vault().await.unwrap();
    server.create_rsa_key("kek").unwrap();
    let p = server.provider_builder("azure", "kek").build().unwrap();
    (server, p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_rsa_oaep_256_key_vault() {
    let server = AzureKeyVaultServer::start_key_vault().await.unwrap();
    server.create_rsa_key("kek").unwrap();
    server.create_rsa_key("other-kek").unwrap();
    let subject = Subject::without_rotation(
        Arc::new(
            roomy(server.provider_builder("azure", "kek"))
                .build()
                .unwrap(),
        ),
        Arc::new(
            server
                .provider_builder("azure", "other-kek")
                .build()
                .unwrap(),
        ),
    );
    let report = testkit::run_all(&subject).await.unwrap();
    assert_eq!(report.not_applicable(), &["rotation"]);
    assert_eq!(report.checks().len(), 9, "{report}");
    // Every provider met the challenge before its first authorized request.
    assert!(server.challenges() >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_a256kw_managed_hsm() {
    let server = AzureKeyVaultServer::start_managed_hsm().await.unwrap();
    server.create_oct_key("kek").unwrap();
    server.create_oct_key("other-kek").unwrap();
    let p = roomy(server.provider_builder("azure-hsm", "kek"))
        .build()
        .unwrap();
    let subject = Subject::without_rotation(
        Arc::new(p.clone()),
        Arc::new(
            server
                .provider_builder("azure-hsm", "other-kek")
                .build()
                .unwrap(),
        ),
    );
    let report = testkit::run_all(&subject).await.unwrap();
    assert_eq!(report.checks().len(), 9, "{report}");
    let w = p.wrap(&[1; 32], &ctx(1)).await.unwrap();
    assert_eq!(w.algorithm(), Algorithm::A256Kw);
    // u16 length, 72-byte A256KW ciphertext of CEK and digest, 32 sealed bytes, GCM tag.
    assert_eq!(w.blob().len(), 2 + 72 + 32 + 16);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_on_the_vault_side() {
    let (server, p) = key_vault().await;
    let before = p.wrap(&[7; 32], &ctx(1)).await.unwrap();
    let new_version = server.rotate("kek").unwrap();
    let after = p.wrap(&[7; 32], &ctx(1)).await.unwrap();
    assert_eq!(after.key_version().as_str(), new_version);
    assert_ne!(before.key_version(), after.key_version());
    assert_eq!(
        p.health().await.unwrap().key_version().as_str(),
        new_version
    );
    for w in [&before, &after] {
        assert_eq!(
            p.unwrap(w, &ctx(1)).await.unwrap().expose_secret(),
            &[7; 32]
        );
    }
    // A provider pinned to the old version keeps wrapping with it.
    let pinned = server
        .provider_builder("azure", "kek")
        .key_version(before.key_version().as_str())
        .build()
        .unwrap();
    let w = pinned.wrap(&[7; 32], &ctx(1)).await.unwrap();
    assert_eq!(w.key_version(), before.key_version());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_context_is_a_permanent_authentication_failure() {
    let (_server, p) = key_vault().await;
    let w = p.wrap(&[3; 32], &ctx(1)).await.unwrap();
    let e = p.unwrap(&w, &ctx(2)).await.unwrap_err();
    assert!(matches!(e, Error::AuthenticationFailed { .. }), "{e}");
    assert!(!e.is_transient());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_then_transient() {
    let (server, p) = key_vault().await;
    // Prime the challenge so the counts below are of authorized attempts only.
    p.health().await.unwrap();

    // Two 503s, then success: the SDK's retry policy absorbs them.
    let before = server.requests();
    server.fail_next(2, 503);
    let w = p.wrap(&[5; 32], &ctx(1)).await.unwrap();
    assert_eq!(server.requests() - before, 3);

    // More failures than retries: a transient error after 1 + 3 attempts.
    let before = server.requests();
    server.fail_next(100, 500);
    let e = p.unwrap(&w, &ctx(1)).await.unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e}");
    assert!(e.is_transient());
    assert_eq!(server.requests() - before, 4);
    server.fail_next(0, 500);

    // 429 is retried by the SDK too, then reported as throttling.
    server.fail_next(100, 429);
    let e = p.wrap(&[5; 32], &ctx(1)).await.unwrap_err();
    assert!(matches!(e, Error::Throttled { .. }), "{e}");
    server.fail_next(0, 429);

    // 403 is permanent and not retried.
    let before = server.requests();
    server.fail_next(1, 403);
    let e = p.wrap(&[5; 32], &ctx(1)).await.unwrap_err();
    assert!(matches!(e, Error::PermissionDenied { .. }), "{e}");
    assert!(e.to_string().contains("Crypto User"), "{e}");
    assert_eq!(server.requests() - before, 1);
    assert_eq!(
        p.unwrap(&w, &ctx(1)).await.unwrap().expose_secret(),
        &[5; 32]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_down_is_transient_within_the_deadline() {
    let server = AzureKeyVaultServer::start_key_vault().await.unwrap();
    server.create_rsa_key("kek").unwrap();
    let builder = server
        .provider_builder("azure", "kek")
        .operation_timeout(Duration::from_secs(3));
    drop(server);
    let p = builder.build().unwrap();
    let start = Instant::now();
    let e = p.wrap(&[1; 32], &ctx(1)).await.unwrap_err();
    let took = start.elapsed();
    assert!(e.is_transient(), "{e}");
    assert!(
        matches!(e, Error::Unavailable { .. } | Error::Timeout { .. }),
        "{e}"
    );
    assert!(took < Duration::from_secs(4), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_server_times_out() {
    let server = AzureKeyVaultServer::start_key_vault().await.unwrap();
    server.create_rsa_key("kek").unwrap();
    let p = server
        .provider_builder("azure", "kek")
        .attempt_timeout(Duration::from_secs(30))
        .operation_timeout(Duration::from_millis(800))
        .build()
        .unwrap();
    server.hang_next(1);
    let start = Instant::now();
    let e = p.wrap(&[1; 32], &ctx(1)).await.unwrap_err();
    assert!(
        matches!(e, Error::Timeout { after, .. } if after == Duration::from_millis(800)),
        "{e}"
    );
    assert!(start.elapsed() < Duration::from_secs(3));
    // Per-attempt timeouts are retried: one hung attempt, then success.
    let p = server
        .provider_builder("azure", "kek")
        .attempt_timeout(Duration::from_millis(500))
        .operation_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    p.health().await.unwrap();
    server.hang_next(1);
    p.wrap(&[1; 32], &ctx(1)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_tls_host_name_is_refused() {
    let server = AzureKeyVaultServer::start_key_vault().await.unwrap();
    server.create_rsa_key("kek").unwrap();
    // Same server, same CA, but a host name its certificate does not cover.
    let other = format!(
        "https://othervault.vault.localtest:{}",
        server.addr().port()
    );
    let p = server
        .provider_builder("azure", "kek")
        .vault_url(other)
        .resolve("othervault.vault.localtest", server.addr())
        .retries(0, Duration::from_millis(10))
        .build()
        .unwrap();
    let e = p.wrap(&[1; 32], &ctx(1)).await.unwrap_err();
    assert!(matches!(e, Error::Misconfigured { .. }), "{e}");
    assert!(e.to_string().contains("certificate"), "{e}");
    assert_eq!(server.requests(), 0);

    // A CA the client does not trust is refused the same way.
    let stranger = AzureKeyVaultServer::start_key_vault().await.unwrap();
    let p = AzureKeyVaultProvider::builder("azure")
        .vault_url(server.vault_url())
        .resolve(server.host(), server.addr())
        .root_certificate_der(stranger.ca_certificate_der())
        .credential(kms_providers::AzureCredential::from_token_credential(
            server.credential(),
        ))
        .key_name("kek")
        .retries(0, Duration::from_millis(10))
        .build()
        .unwrap();
    let e = p.wrap(&[1; 32], &ctx(1)).await.unwrap_err();
    assert!(matches!(e, Error::Misconfigured { .. }), "{e}");
    assert_eq!(server.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenge_for_another_resource_gets_no_token() {
    // The vault's challenge names a resource outside its domain: the SDK's check refuses it
    // before asking the credential for a token, and nothing is retried.
    let server = AzureKeyVaultServer::start_with_challenge_resource("https://attacker.localtest")
        .await
        .unwrap();
    server.create_rsa_key("kek").unwrap();
    let p = server.provider_builder("azure", "kek").build().unwrap();
    let e = p.wrap(&[1; 32], &ctx(1)).await.unwrap_err();
    assert!(matches!(e, Error::Misconfigured { .. }), "{e}");
    assert!(e.to_string().contains("doesn't match"), "{e}");
    assert_eq!(server.requests(), 1);
    assert_eq!(server.challenges(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_for_another_resource_is_refused_a_token() {
    // A Managed HSM challenge (resource managedhsm.localtest) with a credential that only has
    // tokens for vault.localtest: the token request fails, which is reported as transient (an
    // Entra ID outage looks the same), and no authorized request is ever sent.
    let hsm = AzureKeyVaultServer::start_managed_hsm().await.unwrap();
    hsm.create_oct_key("kek").unwrap();
    let kv = AzureKeyVaultServer::start_key_vault().await.unwrap();
    let p = hsm
        .provider_builder("azure", "kek")
        .credential(kms_providers::AzureCredential::from_token_credential(
            kv.credential(),
        ))
        .retries(0, Duration::from_millis(10))
        .build()
        .unwrap();
    let e = p.wrap(&[1; 32], &ctx(1)).await.unwrap_err();
    assert!(matches!(e, Error::Unavailable { .. }), "{e}");
    assert!(e.to_string().contains("Entra ID token"), "{e}");
    assert_eq!(hsm.requests(), 1);
    assert_eq!(hsm.challenges(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_keys_and_hostile_versions_never_reach_the_path() {
    let (server, p) = key_vault().await;
    let w = p.wrap(&[9; 32], &ctx(1)).await.unwrap();
    let before = server.requests();
    for version in ["..", "a/b", "x?y=1", "a#b", "%2e%2e"] {
        let Ok(v) = kms_providers::KeyVersion::new(version) else {
            continue;
        };
        let bad = WrappedShare::new(
            w.kind(),
            w.key_id().clone(),
            v,
            w.algorithm(),
            w.nonce().to_vec(),
            w.blob().to_vec(),
        )
        .unwrap();
        let e = p.unwrap(&bad, &ctx(1)).await.unwrap_err();
        assert!(matches!(e, Error::UnknownKey { .. }), "{version}: {e}");
    }
    assert_eq!(server.requests(), before, "a hostile version was sent");
    // A well-formed version the vault does not have is its 404.
    let bad = WrappedShare::new(
        w.kind(),
        w.key_id().clone(),
        kms_providers::KeyVersion::new("0123456789abcdef0123456789abcdef").unwrap(),
        w.algorithm(),
        w.nonce().to_vec(),
        w.blob().to_vec(),
    )
    .unwrap();
    let e = p.unwrap(&bad, &ctx(1)).await.unwrap_err();
    assert!(matches!(e, Error::UnknownKey { .. }), "{e}");
    assert_eq!(server.requests(), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrap_key_of_the_wrong_type_is_a_configuration_error() {
    // An RSA key used as if it were oct-HSM: Key Vault refuses the algorithm with a 400.
    let server = AzureKeyVaultServer::start_key_vault().await.unwrap();
    server.create_rsa_key("kek").unwrap();
    let p = server
        .provider_builder("azure", "kek")
        .algorithm(kms_providers::AzureWrapAlgorithm::A256Kw)
        .build()
        .unwrap();
    let e = p.wrap(&[1; 32], &ctx(1)).await.unwrap_err();
    assert!(matches!(e, Error::Misconfigured { .. }), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_calls() {
    // The conformance runs already do 1,000 concurrent wraps and unwraps on each key type;
    // here 3,000 against one Managed HSM key, through one provider (one connection pool, one
    // cached challenge scope).
    let server = AzureKeyVaultServer::start_managed_hsm().await.unwrap();
    server.create_oct_key("kek").unwrap();
    let p = roomy(server.provider_builder("azure-hsm", "kek"))
        .build()
        .unwrap();
    testkit::check_concurrency(Arc::new(p), 3_000)
        .await
        .unwrap();
    assert!(server.requests() >= 6_000);
}

#[test]
fn builder_refuses_bad_configuration() {
    use kms_providers::AzureCredential;
    let base = || {
        AzureKeyVaultProvider::builder("azure")
            .vault_url("https://myvault.vault.azure.net")
            .key_name("kek")
            .credential(AzureCredential::managed_identity())
    };
    assert!(base().build().is_ok());
    let cases = [
        base().vault_url("http://myvault.vault.azure.net"),
        base().vault_url("https://myvault.vault.azure.net/keys"),
        base().vault_url("https://myvault.vault.azure.net/?x=1"),
        base().vault_url("https://user:pw@myvault.vault.azure.net"),
        base().vault_url("not a url"),
        base().key_name("a/b"),
        base().key_name(""),
        base().key_version("../x"),
        base().operation_timeout(Duration::ZERO),
        base().attempt_timeout(Duration::ZERO),
        base().max_in_flight(0),
        base().root_certificate_der(vec![1, 2, 3]),
        AzureKeyVaultProvider::builder("azure")
            .vault_url("https://myvault.vault.azure.net")
            .key_name("kek"),
        AzureKeyVaultProvider::builder("")
            .vault_url("https://myvault.vault.azure.net")
            .key_name("kek")
            .credential(AzureCredential::managed_identity()),
    ];
    for (i, b) in cases.into_iter().enumerate() {
        let e = b.build().unwrap_err();
        assert!(matches!(e, Error::Misconfigured { .. }), "case {i}: {e}");
    }
    let ok = base()
        .credential(AzureCredential::client_secret(
            "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "client",
            "a-secret-value",
        ))
        .build()
        .unwrap();
    let text = format!("{ok:?}");
    assert!(!text.contains("a-secret-value"), "{text}");
}
