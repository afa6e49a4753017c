//! The conformance suite and provider-specific behaviour of `gcp`: the official
//! `google-cloud-kms-v1` client against the local Cloud KMS server on 127.0.0.1, with explicit
//! endpoints and explicit test credentials (never application default credentials).

use std::sync::Arc;
use std::time::{Duration, Instant};

use kms_providers::testkit::{self, GcpKmsServer, Subject, static_bearer_credentials};
use kms_providers::{
    Error, GcpCredentials, GcpIntegrityError, GcpKmsProvider, GcpKmsProviderBuilder, KeyProvider,
    LayerStack, RetryPolicy, WrappedShare,
};
use tokio::task::JoinSet;

use crate::support::ctx;

const KEY: &str =
    "projects/mpc-vault-test/locations/europe-west1/keyRings/vault/cryptoKeys/share-gcp";
const OTHER_KEY: &str =
    "projects/mpc-vault-test/locations/europe-west1/keyRings/vault/cryptoKeys/share-gcp-other";
const TOKEN: &str = "test-bearer-token-not-a-google-token";

fn anonymous() -> GcpCredentials {
    google_cloud_auth::credentials::anonymous::Builder::new().build()
}

/// A builder pointed at `server` with a small backoff. A thousand calls issued at once all wait
/// for the whole batch, so each call's latency is the batch's: on a loaded two-core machine
/// (debug build, load average above 10 measured while writing this) that exceeded 20 s. The
/// attempt timeout is therefore generous; these tests check behaviour, not speed, and the
/// timeout tests set their own.
fn builder(server: &GcpKmsServer, key: &str) -> GcpKmsProviderBuilder {
    GcpKmsProvider::builder("gcp")
        .key(key)
        .endpoint(server.endpoint())
        .credentials(anonymous())
        .attempt_timeout(Duration::from_secs(120))
        .retry_time_limit(Duration::from_secs(240))
        .backoff(Duration::from_millis(5), Duration::from_millis(20))
}

async fn server_with_keys() -> GcpKmsServer {
    let server = GcpKmsServer::start().await.unwrap();
    server.create_key(KEY).unwrap();
    server.create_key(OTHER_KEY).unwrap();
    server
}

fn integrity_source(e: &Error) -> Option<GcpIntegrityError> {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<GcpIntegrityError>())
        .copied()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_against_the_local_server() {
    let server = server_with_keys().await;
    let subject = Subject::without_rotation(
        Arc::new(builder(&server, KEY).build().await.unwrap()),
        Arc::new(builder(&server, OTHER_KEY).build().await.unwrap()),
    );
    let report = testkit::run_all(&subject).await.unwrap();
    assert_eq!(report.checks().len(), 9, "{report}");
    assert_eq!(report.not_applicable(), &["rotation"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_through_the_layer_stack_with_a_bearer_token() {
    let server = GcpKmsServer::start_with_bearer(TOKEN).await.unwrap();
    server.create_key(KEY).unwrap();
    server.create_key(OTHER_KEY).unwrap();
    // One retry loop only: the client's retries are off, the layer stack retries.
    let stack = LayerStack::new()
        .jitter_seed(4)
        .max_concurrency(32)
        .timeout(Duration::from_secs(60));
    let build = |key: &'static str| {
        builder(&server, key)
            .credentials(static_bearer_credentials(TOKEN))
            .max_attempts(1)
            .build()
    };
    let subject = Subject::without_rotation(
        Arc::new(stack.build(build(KEY).await.unwrap()).unwrap()),
        Arc::new(stack.build(build(OTHER_KEY).await.unwrap()).unwrap()),
    );
    let report = testkit::run_all(&subject).await.unwrap();
    assert_eq!(report.checks().len(), 9, "{report}");
}

#[tokio::test]
async fn a_wrong_bearer_token_is_a_permanent_permission_error() {
    let server = GcpKmsServer::start_with_bearer(TOKEN).await.unwrap();
    server.create_key(KEY).unwrap();
    for creds in [static_bearer_credentials("wrong-token"), anonymous()] {
        let gcp = builder(&server, KEY)
            .credentials(creds)
            .build()
            .await
            .unwrap();
        let err = gcp.wrap(b"share", &ctx(1, 1)).await.unwrap_err();
        assert!(matches!(err, Error::PermissionDenied { .. }), "{err}");
        assert!(!err.is_transient());
        assert!(!err.to_string().contains("wrong-token"), "{err}");
    }
}

#[tokio::test]
async fn wrapped_shares_record_key_and_version_and_bind_the_context() {
    let server = server_with_keys().await;
    let gcp = builder(&server, KEY).build().await.unwrap();
    let c = ctx(1, 2);
    let w = gcp.wrap(&[7; 32], &c).await.unwrap();
    assert_eq!(w.key_id().as_str(), KEY);
    assert_eq!(w.key_version().as_str(), "1");
    assert_eq!(w.kind(), kms_providers::ProviderKind::GcpKms);
    assert_eq!(
        w.algorithm(),
        kms_providers::Algorithm::GcpSymmetricEncryption
    );
    assert!(w.nonce().is_empty());
    let parsed = WrappedShare::from_bytes(&w.to_bytes()).unwrap();
    assert_eq!(
        gcp.unwrap(&parsed, &c).await.unwrap().expose_secret(),
        &[7; 32]
    );

    for other in [ctx(2, 2), ctx(1, 3), c.with_share_index(1)] {
        let err = gcp.unwrap(&parsed, &other).await.unwrap_err();
        assert!(matches!(err, Error::AuthenticationFailed { .. }), "{err}");
        assert!(!err.is_transient());
    }
}

#[tokio::test]
async fn old_shares_unwrap_after_the_server_rotates_the_key() {
    let server = server_with_keys().await;
    let gcp = builder(&server, KEY).build().await.unwrap();
    let c = ctx(3, 1);
    let v1 = gcp.wrap(b"before rotation", &c).await.unwrap();
    assert_eq!(v1.key_version().as_str(), "1");
    let before = server.requests();

    assert_eq!(server.rotate(KEY).unwrap(), 2);
    let v2 = gcp.wrap(b"after rotation", &c).await.unwrap();
    assert_eq!(v2.key_version().as_str(), "2");
    // The first wrap after a rotation learns the new primary version and encrypts again so
    // that the version it records is the one bound into the AAD.
    assert_eq!(server.requests() - before, 2);
    let steady = server.requests();
    let v2b = gcp.wrap(b"again", &c).await.unwrap();
    assert_eq!(v2b.key_version().as_str(), "2");
    assert_eq!(server.requests() - steady, 1);

    assert_eq!(
        gcp.unwrap(&v1, &c).await.unwrap().expose_secret(),
        b"before rotation"
    );
    assert_eq!(
        gcp.unwrap(&v2, &c).await.unwrap().expose_secret(),
        b"after rotation"
    );
    assert_eq!(gcp.health().await.unwrap().key_version().as_str(), "2");

    // A share relabelled with the other version fails: the version is authenticated.
    let relabelled = WrappedShare::new(
        v1.kind(),
        v1.key_id().clone(),
        v2.key_version().clone(),
        v1.algorithm(),
        Vec::new(),
        v1.blob().to_vec(),
    )
    .unwrap();
    let err = gcp.unwrap(&relabelled, &c).await.unwrap_err();
    assert!(matches!(err, Error::AuthenticationFailed { .. }), "{err}");

    // A disabled version is a permanent error saying so.
    server.set_version_enabled(KEY, 1, false).unwrap();
    let err = gcp.unwrap(&v1, &c).await.unwrap_err();
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err}");
    assert!(err.to_string().contains("disabled"), "{err}");
}

#[tokio::test]
async fn unknown_keys() {
    let server = server_with_keys().await;
    let missing =
        "projects/mpc-vault-test/locations/europe-west1/keyRings/vault/cryptoKeys/missing";
    let gcp = builder(&server, missing).build().await.unwrap();
    let err = gcp.wrap(b"share", &ctx(1, 1)).await.unwrap_err();
    assert!(
        matches!(err, Error::UnknownKey { ref key_id, .. } if key_id == missing),
        "{err}"
    );
    assert!(!err.is_transient());
}

#[tokio::test]
async fn server_down_is_a_transient_error_within_the_timeout() {
    // A port that was just free: nothing listens on it.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let gcp = GcpKmsProvider::builder("gcp")
        .key(KEY)
        .endpoint(format!("http://127.0.0.1:{port}"))
        .credentials(anonymous())
        .attempt_timeout(Duration::from_secs(1))
        .backoff(Duration::from_millis(10), Duration::from_millis(50))
        .retry_time_limit(Duration::from_secs(2))
        .build()
        .await
        .unwrap();
    let start = Instant::now();
    let err = gcp.wrap(b"share", &ctx(1, 1)).await.unwrap_err();
    let took = start.elapsed();
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    assert!(err.is_transient());
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[tokio::test]
async fn a_hanging_server_times_out_with_a_transient_error() {
    let server = server_with_keys().await;
    let gcp = builder(&server, KEY)
        .attempt_timeout(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    server.hang_next(1);
    let start = Instant::now();
    let err = gcp.wrap(b"share", &ctx(1, 1)).await.unwrap_err();
    let took = start.elapsed();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(err.is_transient());
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

#[tokio::test]
async fn unavailable_is_retried_by_the_client_then_reported_transient() {
    let server = server_with_keys().await;
    let gcp = builder(&server, KEY).max_attempts(3).build().await.unwrap();
    let c = ctx(1, 1);
    let w = gcp.wrap(b"share", &c).await.unwrap();

    // Two failures, then success: the client's own retries absorb them.
    server.fail_next(2);
    let before = server.requests();
    assert_eq!(gcp.unwrap(&w, &c).await.unwrap().expose_secret(), b"share");
    assert_eq!(server.requests() - before, 3);

    // More failures than attempts: a transient error after exactly three requests.
    server.fail_next(10);
    let before = server.requests();
    let err = gcp.unwrap(&w, &c).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    assert!(err.is_transient());
    assert_eq!(server.requests() - before, 3);
}

#[tokio::test]
async fn with_client_retries_off_the_layer_stack_retries_alone() {
    let server = server_with_keys().await;
    let gcp = builder(&server, KEY).max_attempts(1).build().await.unwrap();
    let layered = LayerStack::new()
        .jitter_seed(1)
        .retry(
            RetryPolicy::default()
                .max_attempts(4)
                .base_delay(Duration::from_millis(1))
                .max_delay(Duration::from_millis(5)),
        )
        .build(gcp)
        .unwrap();
    let c = ctx(1, 1);
    let w = layered.wrap(b"share", &c).await.unwrap();
    server.fail_next(100);
    let before = server.requests();
    let err = layered.unwrap(&w, &c).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    // Four attempts in total, not four times the client's attempts.
    assert_eq!(server.requests() - before, 4);
    server.fail_next(0);
}

#[tokio::test]
async fn corruption_in_transit_is_detected_both_ways() {
    let server = server_with_keys().await;
    let gcp = builder(&server, KEY).build().await.unwrap();
    let c = ctx(1, 1);
    let w = gcp.wrap(b"share", &c).await.unwrap();

    // Encrypt response: ciphertext damaged after its checksum was computed.
    server.corrupt_next(1);
    let err = gcp.wrap(b"share", &c).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert_eq!(
        integrity_source(&err),
        Some(GcpIntegrityError::CiphertextChecksum),
        "{err}"
    );

    // Decrypt response: plaintext damaged after its checksum was computed.
    server.corrupt_next(1);
    let err = gcp.unwrap(&w, &c).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert_eq!(
        integrity_source(&err),
        Some(GcpIntegrityError::PlaintextChecksum),
        "{err}"
    );
    // Nothing of the share in the error.
    assert!(!format!("{err:?}").contains("share"), "{err:?}");

    // And the next calls work again.
    assert_eq!(gcp.unwrap(&w, &c).await.unwrap().expose_secret(), b"share");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_calls() {
    let server = server_with_keys().await;
    let gcp = Arc::new(builder(&server, KEY).build().await.unwrap());
    let mut set = JoinSet::new();
    for i in 0..500u32 {
        let gcp = gcp.clone();
        set.spawn(async move {
            let c = ctx(u64::from(i), 1);
            let share = i.to_be_bytes();
            let w = gcp.wrap(&share, &c).await.unwrap();
            let back = gcp.unwrap(&w, &c).await.unwrap();
            assert_eq!(back.expose_secret(), &share);
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
}

#[tokio::test]
async fn misconfiguration_fails_at_build_time() {
    let server = server_with_keys().await;
    for bad in [
        "",
        "projects/p/locations/l/keyRings/r",
        "projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1",
    ] {
        let err = builder(&server, bad).build().await.unwrap_err();
        assert!(matches!(err, Error::Misconfigured { .. }), "{bad:?}: {err}");
    }
    let err = GcpKmsProvider::builder("gcp")
        .endpoint(server.endpoint())
        .credentials(anonymous())
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Misconfigured { .. }), "{err}");
    let err = builder(&server, KEY)
        .max_attempts(0)
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Misconfigured { .. }), "{err}");
    let err = builder(&server, KEY)
        .attempt_timeout(Duration::ZERO)
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Misconfigured { .. }), "{err}");
}

#[tokio::test]
async fn debug_output_names_the_key_and_nothing_secret() {
    let server = server_with_keys().await;
    let b = builder(&server, KEY).credentials(static_bearer_credentials(TOKEN));
    let shown = format!("{b:?}");
    assert!(shown.contains(KEY), "{shown}");
    assert!(!shown.contains(TOKEN), "{shown}");
    let gcp = b.build().await.unwrap();
    let shown = format!("{gcp:?}");
    assert!(shown.contains(KEY), "{shown}");
    assert!(!shown.contains(TOKEN), "{shown}");
    let shown = format!("{:?}", static_bearer_credentials(TOKEN));
    assert!(!shown.contains(TOKEN), "{shown}");
}
