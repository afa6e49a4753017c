//! The conformance suite and provider-specific behaviour of `aws`: the real `aws-sdk-kms`
//! against moto in server mode on 127.0.0.1, and against tiny local servers that fail on
//! purpose (refused connections, silence, HTTP 500, throttling).
//!
//! Every SDK client here is built from an explicit configuration (static test credentials, a
//! region, an `http://127.0.0.1` endpoint): no default credential chain, no instance metadata.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_sdk_kms::Client;
use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kms::primitives::Blob;
use kms_providers::testkit::{self, Subject};
use kms_providers::{
    AwsKmsProvider, Error, KeyProvider, LayerStack, ProviderKind, RetryPolicy, WrappedShare,
    aws_https_client,
};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::ctx;

/// Runs moto's threaded server on an OS-chosen port and stops it when its standard input
/// closes, which happens when the test binary exits however it exits: the server never
/// outlives the tests, even though the fixture lives in a static that is never dropped.
const MOTO_WRAPPER: &str = r#"
import logging, sys
# One log line per request would bury the test output.
logging.getLogger("werkzeug").setLevel(logging.ERROR)
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
print("PORT", server.get_host_and_port()[1], flush=True)
sys.stdin.read()
server.stop()
"#;

/// A moto server on 127.0.0.1, killed on drop.
struct Moto {
    child: Mutex<Child>,
    // Held open for the server's lifetime: closing it stops the wrapper.
    _stdin: ChildStdin,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        if let Ok(mut child) = self.child.lock() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn venv_python() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".tools/venv/bin/python");
    let moto_server = root.join(".tools/venv/bin/moto_server");
    assert!(
        python.exists() && moto_server.exists(),
        "moto is not installed in {}: run scripts/setup/20-moto.sh (the AWS KMS tests need \
         `moto[server]` in the project virtualenv)",
        root.join(".tools/venv").display()
    );
    python
}

impl Moto {
    fn start() -> Self {
        let mut child = Command::new(venv_python())
            .arg("-c")
            .arg(MOTO_WRAPPER)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start moto (scripts/setup/20-moto.sh): {e}"));
        let stdin = child.stdin.take().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line
            .strip_prefix("PORT ")
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| {
                panic!("moto did not report its port (scripts/setup/20-moto.sh): {line:?}")
            });
        let moto = Self {
            child: Mutex::new(child),
            _stdin: stdin,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        moto.wait_until_it_answers(port);
        moto
    }

    /// Polls moto's own API until it answers HTTP, for at most 30 s.
    fn wait_until_it_answers(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let req = "GET /moto-api/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
                if s.write_all(req.as_bytes()).is_ok() {
                    let mut status = String::new();
                    if BufReader::new(s).read_line(&mut status).is_ok()
                        && status.starts_with("HTTP/1.")
                    {
                        return;
                    }
                }
            }
            if let Ok(Some(exit)) = self.child.lock().unwrap().try_wait() {
                panic!("moto exited with {exit} before answering (scripts/setup/20-moto.sh)");
            }
            assert!(Instant::now() < deadline, "moto did not answer within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The moto server of this test binary, started on first use.
fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(Moto::start)
}

/// An SDK client for `endpoint` built from an explicit configuration only.
fn sdk_client(endpoint: &str) -> Client {
    let conf = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(
            "AKIDMPCVAULTTESTS",
            "mpc-vault-test-secret",
            None,
            None,
            "mpc-vault-tests",
        ))
        .endpoint_url(endpoint)
        .http_client(aws_https_client())
        .build();
    Client::from_conf(conf)
}

/// Creates a symmetric encryption key in moto; returns its ARN.
async fn create_key(client: &Client) -> String {
    let out = client
        .create_key()
        .description("mpc-vault kms-providers test")
        .send()
        .await
        .unwrap();
    out.key_metadata().unwrap().arn().unwrap().to_owned()
}

fn provider(name: &str, key_id: &str, endpoint: &str) -> AwsKmsProvider {
    AwsKmsProvider::builder(name)
        .key_id(key_id)
        .client(sdk_client(endpoint))
        .build()
        .unwrap()
}

/// The provider the direct conformance run uses. Its concurrency check sends 1,000 wraps and
/// 1,000 unwraps at once, with no concurrency limit in front, to one Python process on a
/// two-core machine: the calls queue inside moto for many seconds, which is moto's throughput,
/// not a KMS latency, so the per-attempt and per-call limits are raised for this run only.
fn conformance_provider(name: &str, key_id: &str, endpoint: &str) -> AwsKmsProvider {
    AwsKmsProvider::builder(name)
        .key_id(key_id)
        .client(sdk_client(endpoint))
        // 2,000 connections at once queue in moto's accept backlog too.
        .connect_timeout(Duration::from_secs(60))
        .attempt_timeout(Duration::from_secs(60))
        .operation_timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

/// The two conformance runs each flood moto with 2,000 concurrent calls; run one at a time so
/// that each measures its own provider rather than the other's load.
static FLOOD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_moto() {
    let _alone = FLOOD.lock().await;
    let endpoint = &moto().endpoint;
    let admin = sdk_client(endpoint);
    let (key, other) = (create_key(&admin).await, create_key(&admin).await);
    let subject = Subject::without_rotation(
        Arc::new(conformance_provider("aws-it", &key, endpoint)),
        Arc::new(conformance_provider("aws-it", &other, endpoint)),
    );
    let started = Instant::now();
    let report = testkit::run_all(&subject).await.unwrap();
    eprintln!("aws on moto: {report} in {:?}", started.elapsed());
    assert_eq!(report.not_applicable(), &["rotation"]);
    assert_eq!(report.checks().len(), 9);
}

/// The recommended stack for a provider whose SDK retries: one attempt in `Retry`, so that
/// retries do not multiply, and a `Timeout` above the SDK's own operation timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_moto_behind_the_layer_stack() {
    let _alone = FLOOD.lock().await;
    let endpoint = &moto().endpoint;
    let admin = sdk_client(endpoint);
    let (key, other) = (create_key(&admin).await, create_key(&admin).await);
    let layered = LayerStack::new()
        .retry(RetryPolicy::default().max_attempts(1))
        .timeout(Duration::from_secs(12))
        .max_concurrency(64)
        .build(provider("aws-layered", &key, endpoint))
        .unwrap();
    let subject = Subject::without_rotation(
        Arc::new(layered),
        Arc::new(provider("aws-layered", &other, endpoint)),
    );
    let started = Instant::now();
    let report = testkit::run_all(&subject).await.unwrap();
    eprintln!(
        "aws on moto behind the layer stack: {report} in {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn alias_resolves_to_the_key_arn() {
    let endpoint = &moto().endpoint;
    let admin = sdk_client(endpoint);
    let key = create_key(&admin).await;
    let alias = format!("alias/mpc-vault-it-{}", key.rsplit('/').next().unwrap());
    admin
        .create_alias()
        .alias_name(&alias)
        .target_key_id(&key)
        .send()
        .await
        .unwrap();

    let by_alias = provider("aws", &alias, endpoint);
    let health = by_alias.health().await.unwrap();
    assert_eq!(health.key_id().as_str(), key);
    assert_eq!(health.key_version().as_str(), "kms-managed");
    assert_eq!(health.kind(), ProviderKind::AwsKms);

    let c = ctx(1, 1);
    let wrapped = by_alias.wrap(&[7; 32], &c).await.unwrap();
    assert_eq!(wrapped.key_id().as_str(), key);
    // A provider configured with the key ARN reads what the alias-configured one wrote, and
    // the other way round.
    let by_arn = provider("aws", &key, endpoint);
    assert_eq!(
        by_arn.unwrap(&wrapped, &c).await.unwrap().expose_secret(),
        &[7; 32]
    );
    let back = by_arn.wrap(&[8; 16], &c).await.unwrap();
    assert_eq!(
        by_alias.unwrap(&back, &c).await.unwrap().expose_secret(),
        &[8; 16]
    );
}

#[tokio::test]
async fn unknown_alias_is_an_unknown_key() {
    let endpoint = &moto().endpoint;
    let p = provider("aws", "alias/mpc-vault-no-such-alias", endpoint);
    match p.wrap(&[1; 32], &ctx(1, 1)).await {
        Err(Error::UnknownKey {
            provider, key_id, ..
        }) => {
            assert_eq!(provider, "aws");
            assert_eq!(key_id, "alias/mpc-vault-no-such-alias");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn previous_keys_unwrap_but_never_wrap() {
    let endpoint = &moto().endpoint;
    let admin = sdk_client(endpoint);
    let (old, new) = (create_key(&admin).await, create_key(&admin).await);
    let c = ctx(2, 1);
    let wrapped_old = provider("aws", &old, endpoint)
        .wrap(&[3; 32], &c)
        .await
        .unwrap();

    let without = provider("aws", &new, endpoint);
    assert!(matches!(
        without.unwrap(&wrapped_old, &c).await,
        Err(Error::UnknownKey { .. })
    ));

    let with = AwsKmsProvider::builder("aws")
        .key_id(&new)
        .previous_key(&old)
        .client(sdk_client(endpoint))
        .build()
        .unwrap();
    assert_eq!(
        with.unwrap(&wrapped_old, &c).await.unwrap().expose_secret(),
        &[3; 32]
    );
    assert_eq!(
        with.wrap(&[3; 32], &c).await.unwrap().key_id().as_str(),
        new
    );
}

/// The encryption context is the documented map: a key policy or CloudTrail sees these keys,
/// and any KMS client that sends the same map decrypts the blob.
#[tokio::test]
async fn encryption_context_is_the_documented_map() {
    let endpoint = &moto().endpoint;
    let admin = sdk_client(endpoint);
    let key = create_key(&admin).await;
    let p = provider("aws", &key, endpoint);
    let c = kms_providers::WrapContext::new("vault-9", "db/prod/password", 42, 3, "shamir-2-of-3")
        .unwrap();
    let wrapped = p.wrap(&[0xab; 32], &c).await.unwrap();

    let digest: String = Sha256::digest(c.canonical_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let map: HashMap<String, String> = [
        ("mpc-vault:vault", "vault-9"),
        ("mpc-vault:path", "db/prod/password"),
        ("mpc-vault:version", "42"),
        ("mpc-vault:share", "3"),
        ("mpc-vault:mode", "shamir-2-of-3"),
        ("mpc-vault:context-sha256", digest.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let out = admin
        .decrypt()
        .key_id(&key)
        .ciphertext_blob(Blob::new(wrapped.blob().to_vec()))
        .set_encryption_context(Some(map.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(out.plaintext().unwrap().as_ref(), &[0xab; 32]);

    // Without the digest, or with any field changed, KMS refuses.
    let mut missing = map.clone();
    missing.remove("mpc-vault:context-sha256");
    let mut changed = map;
    changed.insert("mpc-vault:share".into(), "2".into());
    for bad in [missing, changed] {
        let err = admin
            .decrypt()
            .key_id(&key)
            .ciphertext_blob(Blob::new(wrapped.blob().to_vec()))
            .set_encryption_context(Some(bad))
            .send()
            .await
            .unwrap_err();
        assert!(
            err.as_service_error()
                .is_some_and(|e| e.is_invalid_ciphertext_exception()),
            "{err:?}"
        );
    }
}

#[tokio::test]
async fn wrong_context_is_a_permanent_authentication_failure() {
    let endpoint = &moto().endpoint;
    let admin = sdk_client(endpoint);
    let key = create_key(&admin).await;
    let p = provider("aws", &key, endpoint);
    let wrapped = p.wrap(&[5; 32], &ctx(3, 1)).await.unwrap();
    let stored = WrappedShare::from_bytes(&wrapped.to_bytes()).unwrap();
    let err = p.unwrap(&stored, &ctx(3, 2)).await.unwrap_err();
    assert!(matches!(err, Error::AuthenticationFailed { .. }), "{err}");
    assert!(!err.is_transient());
    assert_eq!(
        p.unwrap(&stored, &ctx(3, 1)).await.unwrap().expose_secret(),
        &[5; 32]
    );
}

const KEY_ARN: &str = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000";

/// A provider with short, explicit SDK limits, for the failure tests.
/// As [`fast_failing`], with per-attempt limits a loaded CI machine cannot trip: for the tests
/// that count the SDK's attempts against a server that answers at once (a timed-out attempt
/// would be retried or abandoned and change the count), not for the timeout tests.
fn counting(endpoint: &str) -> AwsKmsProvider {
    AwsKmsProvider::builder("aws-down")
        .key_id(KEY_ARN)
        .client(sdk_client(endpoint))
        .max_attempts(3)
        .initial_backoff(Duration::from_millis(20))
        .connect_timeout(Duration::from_secs(10))
        .attempt_timeout(Duration::from_secs(10))
        .operation_timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn fast_failing(endpoint: &str) -> AwsKmsProvider {
    AwsKmsProvider::builder("aws-down")
        .key_id(KEY_ARN)
        .client(sdk_client(endpoint))
        .max_attempts(3)
        .initial_backoff(Duration::from_millis(20))
        .connect_timeout(Duration::from_millis(300))
        .attempt_timeout(Duration::from_millis(300))
        .operation_timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

#[tokio::test]
async fn server_down_is_a_transient_error_within_the_timeout() {
    // A port that was just free: nothing listens there.
    let addr = StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let p = fast_failing(&format!("http://{addr}"));
    let started = Instant::now();
    let err = p.wrap(&[1; 32], &ctx(1, 1)).await.unwrap_err();
    let took = started.elapsed();
    assert!(err.is_transient(), "{err}");
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    assert_eq!(err.provider(), "aws-down");
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[tokio::test]
async fn silent_server_times_out_within_the_operation_timeout() {
    // Accepts connections (the kernel completes the handshake) and never answers.
    let listener = StdListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let p = fast_failing(&format!("http://{addr}"));
    let started = Instant::now();
    let err = p.wrap(&[1; 32], &ctx(1, 1)).await.unwrap_err();
    let took = started.elapsed();
    assert!(err.is_transient(), "{err}");
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    drop(listener);
}

/// A local HTTP/1.1 server that answers every request with the same status and JSON body,
/// and counts the requests.
async fn always_failing_server(
    status: &'static str,
    body: &'static str,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&count);
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    // Read one request: headers, then Content-Length bytes of body.
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        match conn.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..head_end + len);
                    counter.fetch_add(1, Ordering::SeqCst);
                    let response = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/x-amz-json-1.1\r\n\
                         content-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if conn.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, count)
}

#[tokio::test]
async fn http_500_is_retried_by_the_sdk_then_transient() {
    let (addr, count) = always_failing_server(
        "500 Internal Server Error",
        r#"{"__type":"KMSInternalException","message":"injected"}"#,
    )
    .await;
    let p = counting(&format!("http://{addr}"));
    let started = Instant::now();
    let err = p.unwrap(&fake_share(), &ctx(1, 1)).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    assert!(err.is_transient());
    assert_eq!(
        count.load(Ordering::SeqCst),
        3,
        "one call, three SDK attempts"
    );
    // Three quick answers and two 20 ms back-offs: well within seconds, even on a loaded box.
    assert!(started.elapsed() < Duration::from_secs(10));

    // Behind the recommended stack (one attempt in `Retry`), still three requests, not nine.
    let layered = LayerStack::new()
        .retry(RetryPolicy::default().max_attempts(1))
        .timeout(Duration::from_secs(5))
        .build(counting(&format!("http://{addr}")))
        .unwrap();
    count.store(0, Ordering::SeqCst);
    let err = layered.wrap(&[1; 32], &ctx(1, 1)).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn throttling_is_retried_by_the_sdk_then_throttled() {
    let (addr, count) = always_failing_server(
        "400 Bad Request",
        r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#,
    )
    .await;
    let p = counting(&format!("http://{addr}"));
    let err = p.wrap(&[1; 32], &ctx(1, 1)).await.unwrap_err();
    assert!(matches!(err, Error::Throttled { .. }), "{err}");
    assert!(err.is_transient());
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn access_denied_is_permanent_and_not_retried() {
    let (addr, count) = always_failing_server(
        "400 Bad Request",
        r#"{"__type":"AccessDeniedException","message":"User is not authorized to perform: kms:Encrypt"}"#,
    )
    .await;
    let p = counting(&format!("http://{addr}"));
    let err = p.wrap(&[1; 32], &ctx(1, 1)).await.unwrap_err();
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err}");
    assert!(!err.is_transient());
    assert!(err.to_string().contains("kms:Encrypt"), "{err}");
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

/// A well-formed AWS wrapped share under [`KEY_ARN`], for calls that must reach the server.
fn fake_share() -> WrappedShare {
    WrappedShare::new(
        ProviderKind::AwsKms,
        kms_providers::KeyId::new(KEY_ARN).unwrap(),
        kms_providers::KeyVersion::new("kms-managed").unwrap(),
        kms_providers::Algorithm::AwsSymmetricDefault,
        Vec::new(),
        vec![1; 64],
    )
    .unwrap()
}

/// A client without credentials fails with a typed, permanent error and sends nothing: the
/// provider never falls back to a default chain or the instance metadata service.
#[tokio::test]
async fn no_credentials_is_misconfigured_and_sends_nothing() {
    let (addr, count) = always_failing_server(
        "500 Internal Server Error",
        r#"{"__type":"KMSInternalException","message":"must not be reached"}"#,
    )
    .await;
    let conf = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(format!("http://{addr}"))
        .build();
    let p = AwsKmsProvider::builder("aws-nocreds")
        .key_id(KEY_ARN)
        .client(Client::from_conf(conf))
        .build()
        .unwrap();
    let err = p.wrap(&[1; 32], &ctx(1, 1)).await.unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert!(matches!(err, Error::Misconfigured { .. }), "{err}");
    assert_eq!(count.load(Ordering::SeqCst), 0);
}
