//! A wire-compatible local stand-in for the Cloud KMS REST API, for tests.
//!
//! **Not a KMS.** Keys live in process memory, are generated from the OS RNG when a test asks,
//! and vanish with the server. It exists so that the real `google-cloud-kms-v1` client can be
//! tested end to end on 127.0.0.1: it speaks the same JSON (camelCase fields, base64 bytes,
//! `int64` as strings, Google error bodies), checks the same CRC32C fields, binds the additional
//! authenticated data, and encrypts for real with AES-256-GCM.

use core::fmt;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, KeyInit};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Extensions, HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use google_cloud_auth::credentials::{CacheableResource, CredentialsProvider, EntityTag};
use google_cloud_auth::errors::CredentialsError;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tokio::net::TcpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use zeroize::Zeroizing;

use crate::GcpCredentials;

/// Largest plaintext and additional authenticated data Cloud KMS accepts (64 KiB each).
const MAX_INPUT_LEN: usize = 64 * 1024;
/// Ciphertext layout of this server: version (u32 BE) ‖ nonce (12) ‖ AES-GCM ciphertext ‖ tag.
const VERSION_LEN: usize = 4;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Domain tag of the server's own AES-GCM associated data.
const SERVER_AAD_TAG: &[u8] = b"mpc-vault/testkit/gcp-kms-server/v1";
/// The message Cloud KMS gives for every failed decryption, whatever the cause.
const DECRYPTION_FAILED: &str =
    "Decryption failed: verify that 'name' refers to the correct CryptoKey.";

/// Accept queue length of the listening socket (the kernel caps it at `somaxconn`).
const LISTEN_BACKLOG: u32 = 4096;

const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

fn crc32c(bytes: &[u8]) -> i64 {
    i64::from(CRC32C.checksum(bytes))
}

/// Why a [`GcpKmsServer`] administrative call failed.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use kms_providers::testkit::{GcpKmsServer, GcpServerError};
///
/// let server = GcpKmsServer::start().await?;
/// assert!(matches!(server.create_key("not-a-key"), Err(GcpServerError::InvalidKeyName(_))));
/// # Ok(()) }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GcpServerError {
    /// The name is not `projects/*/locations/*/keyRings/*/cryptoKeys/*`.
    #[error("{0:?} is not a CryptoKey resource name")]
    InvalidKeyName(String),
    /// [`GcpKmsServer::create_key`] for a key that exists.
    #[error("CryptoKey {0:?} already exists")]
    KeyExists(String),
    /// The key does not exist.
    #[error("no CryptoKey {0:?}")]
    NoSuchKey(String),
    /// The key has no such version.
    #[error("CryptoKey {key:?} has no version {version}")]
    NoSuchVersion {
        /// The CryptoKey resource name.
        key: String,
        /// The version asked for.
        version: u32,
    },
    /// The OS random number generator failed.
    #[error("the OS random number generator failed: {0}")]
    Rng(getrandom::Error),
}

/// One CryptoKeyVersion: an AES-256 key (its schedule zeroized on drop by `aes-gcm`).
struct ServerVersion {
    cipher: Aes256Gcm,
    enabled: bool,
}

struct ServerKey {
    /// `versions[i]` is version `i + 1`.
    versions: Vec<ServerVersion>,
    primary: u32,
}

impl ServerKey {
    fn generate() -> Result<Self, GcpServerError> {
        Ok(Self {
            versions: vec![new_version()?],
            primary: 1,
        })
    }

    fn version(&self, v: u32) -> Option<&ServerVersion> {
        self.versions.get(usize::try_from(v).ok()?.checked_sub(1)?)
    }
}

fn new_version() -> Result<ServerVersion, GcpServerError> {
    let mut key = Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut *key).map_err(GcpServerError::Rng)?;
    Ok(ServerVersion {
        cipher: Aes256Gcm::new((&*key).into()),
        enabled: true,
    })
}

struct ServerState {
    keys: Mutex<HashMap<String, ServerKey>>,
    bearer: Option<String>,
    fail_next: AtomicUsize,
    hang_next: AtomicUsize,
    corrupt_next: AtomicUsize,
    requests: AtomicU64,
    stop: watch::Receiver<bool>,
}

impl ServerState {
    /// The key table. A panic while it is held cannot leave it half-updated (every update is a
    /// single insert or field store), so a poisoned lock is still consistent.
    fn keys(&self) -> MutexGuard<'_, HashMap<String, ServerKey>> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Takes one unit from a fault counter if it is positive.
fn take(counter: &AtomicUsize) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

/// A local, in-process server implementing Cloud KMS's REST `encrypt` and `decrypt` (test
/// support; **not a KMS**: keys are random, in memory, and gone when it stops).
///
/// * `POST /v1/{projects/*/locations/*/keyRings/*/cryptoKeys/*}:encrypt` (also on a
///   `…/cryptoKeyVersions/N` name) and `…:decrypt`, JSON per the public REST reference.
/// * Request CRC32C fields are checked (`400 INVALID_ARGUMENT` on a mismatch, naming the field
///   as Google does) and confirmed in the response; responses carry their own checksums.
/// * Real AES-256-GCM with a random key per version; the ciphertext starts with the version
///   number, so decrypt keeps working after [`rotate`](Self::rotate); the key name, the version
///   and the request's additional authenticated data are authenticated.
/// * Optional bearer-token check ([`start_with_bearer`](Self::start_with_bearer)):
///   `401 UNAUTHENTICATED` otherwise.
/// * Fault switches: [`fail_next`](Self::fail_next) (503 `UNAVAILABLE`),
///   [`hang_next`](Self::hang_next) (never answers), [`corrupt_next`](Self::corrupt_next) (flips
///   a bit of the returned ciphertext or plaintext after its checksum was computed).
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use kms_providers::testkit::GcpKmsServer;
/// use kms_providers::{GcpKmsProvider, KeyProvider, WrapContext};
///
/// let server = GcpKmsServer::start().await?;
/// let key = "projects/test/locations/global/keyRings/ring/cryptoKeys/key";
/// server.create_key(key)?;
/// let gcp = GcpKmsProvider::builder("gcp")
///     .key(key)
///     .endpoint(server.endpoint())
///     .credentials(google_cloud_auth::credentials::anonymous::Builder::new().build())
///     .build()
///     .await?;
/// let ctx = WrapContext::new("v", "p", 1, 1, "shamir-2-of-3")?;
/// let wrapped = gcp.wrap(b"share", &ctx).await?;
/// assert_eq!(gcp.unwrap(&wrapped, &ctx).await?.expose_secret(), b"share");
/// # Ok(()) }
/// ```
pub struct GcpKmsServer {
    addr: SocketAddr,
    state: Arc<ServerState>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl fmt::Debug for GcpKmsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcpKmsServer")
            .field("addr", &self.addr)
            .field("bearer_check", &self.state.bearer.is_some())
            .finish_non_exhaustive()
    }
}

impl GcpKmsServer {
    /// Starts a server on `127.0.0.1`, port chosen by the OS, accepting any caller.
    ///
    /// # Errors
    ///
    /// The error binding the socket.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let server = kms_providers::testkit::GcpKmsServer::start().await?;
    /// assert!(server.endpoint().starts_with("http://127.0.0.1:"));
    /// # Ok(()) }
    /// ```
    pub async fn start() -> std::io::Result<Self> {
        Self::spawn(None).await
    }

    /// Starts a server that requires `Authorization: Bearer <token>` on every request.
    ///
    /// # Errors
    ///
    /// The error binding the socket.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let server = kms_providers::testkit::GcpKmsServer::start_with_bearer("test-token").await?;
    /// # Ok(()) }
    /// ```
    pub async fn start_with_bearer(token: &str) -> std::io::Result<Self> {
        Self::spawn(Some(token.to_owned())).await
    }

    async fn spawn(bearer: Option<String>) -> std::io::Result<Self> {
        // A deep accept queue: the conformance suite opens a thousand connections at once, and
        // a SYN dropped from a full queue costs the client a one-second-plus retransmission.
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0)))?;
        let listener = socket.listen(LISTEN_BACKLOG)?;
        let addr = listener.local_addr()?;
        let (stop, stop_rx) = watch::channel(false);
        let state = Arc::new(ServerState {
            keys: Mutex::new(HashMap::new()),
            bearer,
            fail_next: AtomicUsize::new(0),
            hang_next: AtomicUsize::new(0),
            corrupt_next: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            stop: stop_rx.clone(),
        });
        let app = Router::new().fallback(handle).with_state(state.clone());
        let mut shutdown = stop_rx;
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                // An error means the sender is gone, which is a stop too.
                let _ = shutdown.wait_for(|stopped| *stopped).await;
            });
            // The server only ends on shutdown; an accept error has nobody to report to in a
            // test server, and the test then fails on its own requests.
            let _ = serve.await;
        });
        Ok(Self {
            addr,
            state,
            stop,
            task,
        })
    }

    /// The endpoint to give the client: `http://127.0.0.1:PORT`.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let server = kms_providers::testkit::GcpKmsServer::start().await?;
    /// println!("{}", server.endpoint());
    /// # Ok(()) }
    /// ```
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Creates a CryptoKey (purpose `ENCRYPT_DECRYPT`) with one enabled, primary version 1.
    ///
    /// # Errors
    ///
    /// [`GcpServerError::InvalidKeyName`], [`GcpServerError::KeyExists`], or an RNG failure.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = kms_providers::testkit::GcpKmsServer::start().await?;
    /// server.create_key("projects/p/locations/global/keyRings/r/cryptoKeys/k")?;
    /// # Ok(()) }
    /// ```
    pub fn create_key(&self, name: &str) -> Result<(), GcpServerError> {
        if parse_name(name) != Some((name, None)) {
            return Err(GcpServerError::InvalidKeyName(name.to_owned()));
        }
        let key = ServerKey::generate()?;
        let mut keys = self.state.keys();
        if keys.contains_key(name) {
            return Err(GcpServerError::KeyExists(name.to_owned()));
        }
        keys.insert(name.to_owned(), key);
        Ok(())
    }

    /// Rotates a key: creates the next version and makes it primary; returns its number.
    ///
    /// # Errors
    ///
    /// [`GcpServerError::NoSuchKey`] or an RNG failure.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = kms_providers::testkit::GcpKmsServer::start().await?;
    /// let key = "projects/p/locations/global/keyRings/r/cryptoKeys/k";
    /// server.create_key(key)?;
    /// assert_eq!(server.rotate(key)?, 2);
    /// # Ok(()) }
    /// ```
    pub fn rotate(&self, name: &str) -> Result<u32, GcpServerError> {
        let version = new_version()?;
        let mut keys = self.state.keys();
        let key = keys
            .get_mut(name)
            .ok_or_else(|| GcpServerError::NoSuchKey(name.to_owned()))?;
        key.versions.push(version);
        let n = u32::try_from(key.versions.len())
            .map_err(|_| GcpServerError::NoSuchKey(name.to_owned()))?;
        key.primary = n;
        Ok(n)
    }

    /// Enables or disables a version: a disabled version answers `FAILED_PRECONDITION`.
    ///
    /// # Errors
    ///
    /// [`GcpServerError::NoSuchKey`] or [`GcpServerError::NoSuchVersion`].
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = kms_providers::testkit::GcpKmsServer::start().await?;
    /// let key = "projects/p/locations/global/keyRings/r/cryptoKeys/k";
    /// server.create_key(key)?;
    /// server.set_version_enabled(key, 1, false)?;
    /// # Ok(()) }
    /// ```
    pub fn set_version_enabled(
        &self,
        name: &str,
        version: u32,
        enabled: bool,
    ) -> Result<(), GcpServerError> {
        let mut keys = self.state.keys();
        let key = keys
            .get_mut(name)
            .ok_or_else(|| GcpServerError::NoSuchKey(name.to_owned()))?;
        let v = usize::try_from(version)
            .ok()
            .and_then(|v| v.checked_sub(1))
            .and_then(|i| key.versions.get_mut(i))
            .ok_or_else(|| GcpServerError::NoSuchVersion {
                key: name.to_owned(),
                version,
            })?;
        v.enabled = enabled;
        Ok(())
    }

    /// The next `n` requests are answered `503 UNAVAILABLE`.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let server = kms_providers::testkit::GcpKmsServer::start().await?;
    /// server.fail_next(2);
    /// # Ok(()) }
    /// ```
    pub fn fail_next(&self, n: usize) {
        self.state.fail_next.store(n, Ordering::SeqCst);
    }

    /// The next `n` requests are never answered (until the server stops).
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let server = kms_providers::testkit::GcpKmsServer::start().await?;
    /// server.hang_next(1);
    /// # Ok(()) }
    /// ```
    pub fn hang_next(&self, n: usize) {
        self.state.hang_next.store(n, Ordering::SeqCst);
    }

    /// In the next `n` successful responses one bit of the returned ciphertext (encrypt) or
    /// plaintext (decrypt) is flipped after its CRC32C was computed, as corruption in transit
    /// would do.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let server = kms_providers::testkit::GcpKmsServer::start().await?;
    /// server.corrupt_next(1);
    /// # Ok(()) }
    /// ```
    pub fn corrupt_next(&self, n: usize) {
        self.state.corrupt_next.store(n, Ordering::SeqCst);
    }

    /// Requests received so far (including failed and hanging ones).
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> std::io::Result<()> {
    /// let server = kms_providers::testkit::GcpKmsServer::start().await?;
    /// assert_eq!(server.requests(), 0);
    /// # Ok(()) }
    /// ```
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }
}

impl Drop for GcpKmsServer {
    fn drop(&mut self) {
        // Wakes hanging handlers and starts the graceful shutdown; aborting the accept loop
        // closes the listening socket even if a connection lingers.
        self.stop.send_replace(true);
        self.task.abort();
    }
}

/// Test credentials that send a fixed `Authorization: Bearer` token (for [`GcpKmsServer`]
/// started with [`GcpKmsServer::start_with_bearer`]). Never use them against Google.
///
/// # Example
///
/// ```
/// let creds = kms_providers::testkit::static_bearer_credentials("test-token");
/// ```
pub fn static_bearer_credentials(token: &str) -> GcpCredentials {
    GcpCredentials::from(StaticBearer {
        token: token.to_owned(),
        tag: EntityTag::new(),
    })
}

struct StaticBearer {
    token: String,
    tag: EntityTag,
}

impl fmt::Debug for StaticBearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticBearer")
            .field("token", &"[REDACTED]")
            .finish()
    }
}

impl CredentialsProvider for StaticBearer {
    async fn headers(
        &self,
        extensions: Extensions,
    ) -> Result<CacheableResource<HeaderMap>, CredentialsError> {
        if extensions.get::<EntityTag>() == Some(&self.tag) {
            return Ok(CacheableResource::NotModified);
        }
        let mut value = HeaderValue::try_from(format!("Bearer {}", self.token))
            .map_err(|e| CredentialsError::from_source(false, e))?;
        value.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, value);
        Ok(CacheableResource::New {
            entity_tag: self.tag.clone(),
            data: headers,
        })
    }

    async fn universe_domain(&self) -> Option<String> {
        None
    }
}

/// Splits `projects/*/locations/*/keyRings/*/cryptoKeys/*[/cryptoKeyVersions/N]` into the key
/// name and the optional version.
fn parse_name(name: &str) -> Option<(&str, Option<u32>)> {
    let parts: Vec<&str> = name.split('/').collect();
    let labels = [
        "projects",
        "locations",
        "keyRings",
        "cryptoKeys",
        "cryptoKeyVersions",
    ];
    let segments_ok = |n: usize| {
        parts.len() == n
            && parts.chunks(2).zip(labels).all(|(pair, l)| {
                pair.first() == Some(&l) && pair.get(1).is_some_and(|v| !v.is_empty())
            })
    };
    if segments_ok(8) {
        return Some((name, None));
    }
    if segments_ok(10) {
        let version: u32 = parts.get(9)?.parse().ok()?;
        let key_len = name.len() - "/cryptoKeyVersions/".len() - parts.get(9)?.len();
        return Some((name.get(..key_len)?, Some(version)));
    }
    None
}

/// A Google API error, answered as `{"error": {"code", "message", "status"}}`.
struct ApiError {
    code: StatusCode,
    status: &'static str,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": { "code": self.code.as_u16(), "message": self.message, "status": self.status }
        });
        (self.code, axum::Json(body)).into_response()
    }
}

fn google_error(code: StatusCode, status: &'static str, message: &str) -> ApiError {
    ApiError {
        code,
        status,
        message: message.to_owned(),
    }
}

fn invalid(message: &str) -> ApiError {
    google_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message)
}

/// Reads a base64 `bytes` field (absent = empty, as proto3 JSON says).
fn bytes_field(body: &Value, field: &str) -> Result<Vec<u8>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => BASE64
            .decode(s)
            .map_err(|_| invalid(&format!("Invalid value at '{field}': not base64"))),
        Some(_) => Err(invalid(&format!(
            "Invalid value at '{field}': expected a string"
        ))),
    }
}

/// Reads an `int64` wrapper field: proto3 JSON writes it as a string; parsers accept numbers.
fn int64_field(body: &Value, field: &str) -> Result<Option<i64>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| invalid(&format!("Invalid value at '{field}': not an int64"))),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| invalid(&format!("Invalid value at '{field}': not an int64"))),
        Some(_) => Err(invalid(&format!(
            "Invalid value at '{field}': not an int64"
        ))),
    }
}

/// Checks an optional request checksum the way Cloud KMS does.
fn check_crc(
    data: &[u8],
    crc: Option<i64>,
    data_field: &str,
    crc_field: &str,
) -> Result<bool, ApiError> {
    match crc {
        None => Ok(false),
        Some(c) if c == crc32c(data) => Ok(true),
        Some(_) => Err(invalid(&format!(
            "The checksum in field {crc_field} did not match the data in field {data_field}."
        ))),
    }
}

fn server_aad(key: &str, version: u32, aad: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SERVER_AAD_TAG.len() + key.len() + aad.len() + 16);
    for part in [SERVER_AAD_TAG, key.as_bytes()] {
        out.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(part);
    }
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(aad);
    out
}

fn flip_a_bit(bytes: &mut [u8]) {
    if let Some(b) = bytes.last_mut() {
        *b ^= 0x01;
    }
}

async fn handle(
    State(state): State<Arc<ServerState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    state.requests.fetch_add(1, Ordering::SeqCst);
    if take(&state.hang_next) {
        let mut stop = state.stop.clone();
        // Returns once the server stops (or its stop sender is gone).
        let _ = stop.wait_for(|stopped| *stopped).await;
        return Err(google_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "server stopping",
        ));
    }
    if take(&state.fail_next) {
        return Err(google_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "The service is currently unavailable (injected by the test server).",
        ));
    }
    if let Some(expected) = &state.bearer {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
            return Err(google_error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials.",
            ));
        }
    }
    let Some((name, verb)) = uri
        .path()
        .strip_prefix("/v1/")
        .and_then(|rest| rest.rsplit_once(':'))
    else {
        return Err(google_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "No such method.",
        ));
    };
    if method != Method::POST {
        return Err(google_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "No such method.",
        ));
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return Err(invalid("Invalid JSON payload received."));
    };
    match verb {
        "encrypt" => encrypt(&state, name, &body),
        "decrypt" => decrypt(&state, name, &body),
        _ => Err(google_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "No such method.",
        )),
    }
}

fn encrypt(state: &ServerState, name: &str, body: &Value) -> Result<Response, ApiError> {
    let Some((key_name, version)) = parse_name(name) else {
        return Err(invalid(&format!("Resource name [{name}] is not valid.")));
    };
    let plaintext = Zeroizing::new(bytes_field(body, "plaintext")?);
    let aad = bytes_field(body, "additionalAuthenticatedData")?;
    if plaintext.is_empty() {
        return Err(invalid("Plaintext is required."));
    }
    if plaintext.len() > MAX_INPUT_LEN || aad.len() > MAX_INPUT_LEN {
        return Err(invalid(
            "Plaintext or additional authenticated data is too large.",
        ));
    }
    let verified_plaintext = check_crc(
        &plaintext,
        int64_field(body, "plaintextCrc32c")?,
        "plaintext",
        "plaintext_crc32c",
    )?;
    let verified_aad = check_crc(
        &aad,
        int64_field(body, "additionalAuthenticatedDataCrc32c")?,
        "additional_authenticated_data",
        "additional_authenticated_data_crc32c",
    )?;

    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|_| {
        google_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "RNG failure.",
        )
    })?;
    let (version, mut ciphertext) = {
        let keys = state.keys();
        let key = keys.get(key_name).ok_or_else(|| not_found(name))?;
        let v = version.unwrap_or(key.primary);
        let kv = key.version(v).ok_or_else(|| not_found(name))?;
        if !kv.enabled {
            return Err(failed_precondition(key_name, v));
        }
        let mut buf = Zeroizing::new(Vec::with_capacity(plaintext.len() + TAG_LEN));
        buf.extend_from_slice(&plaintext);
        kv.cipher
            .encrypt_in_place(&nonce.into(), &server_aad(key_name, v, &aad), &mut *buf)
            .map_err(|_| {
                google_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "INTERNAL",
                    "Encryption failed.",
                )
            })?;
        let mut out = Vec::with_capacity(VERSION_LEN + NONCE_LEN + buf.len());
        out.extend_from_slice(&v.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        (v, out)
    };
    let crc = crc32c(&ciphertext);
    if take(&state.corrupt_next) {
        flip_a_bit(&mut ciphertext);
    }
    Ok(axum::Json(json!({
        "name": format!("{key_name}/cryptoKeyVersions/{version}"),
        "ciphertext": BASE64.encode(&ciphertext),
        "ciphertextCrc32c": crc.to_string(),
        "verifiedPlaintextCrc32c": verified_plaintext,
        "verifiedAdditionalAuthenticatedDataCrc32c": verified_aad,
        "protectionLevel": "SOFTWARE",
    }))
    .into_response())
}

fn decrypt(state: &ServerState, name: &str, body: &Value) -> Result<Response, ApiError> {
    if parse_name(name) != Some((name, None)) {
        return Err(invalid(&format!(
            "Resource name [{name}] is not a CryptoKey."
        )));
    }
    let ciphertext = bytes_field(body, "ciphertext")?;
    let aad = bytes_field(body, "additionalAuthenticatedData")?;
    if ciphertext.is_empty() {
        return Err(invalid("Ciphertext is required."));
    }
    check_crc(
        &ciphertext,
        int64_field(body, "ciphertextCrc32c")?,
        "ciphertext",
        "ciphertext_crc32c",
    )?;
    check_crc(
        &aad,
        int64_field(body, "additionalAuthenticatedDataCrc32c")?,
        "additional_authenticated_data",
        "additional_authenticated_data_crc32c",
    )?;
    let (Some(version), Some(nonce), Some(sealed)) = (
        ciphertext
            .get(..VERSION_LEN)
            .and_then(|b| <[u8; VERSION_LEN]>::try_from(b).ok()),
        ciphertext
            .get(VERSION_LEN..VERSION_LEN + NONCE_LEN)
            .and_then(|b| <[u8; NONCE_LEN]>::try_from(b).ok()),
        ciphertext.get(VERSION_LEN + NONCE_LEN..),
    ) else {
        return Err(invalid(DECRYPTION_FAILED));
    };
    if sealed.len() < TAG_LEN {
        return Err(invalid(DECRYPTION_FAILED));
    }
    let version = u32::from_be_bytes(version);
    let (mut plaintext, used_primary) = {
        let keys = state.keys();
        let key = keys.get(name).ok_or_else(|| not_found(name))?;
        let kv = key
            .version(version)
            .ok_or_else(|| invalid(DECRYPTION_FAILED))?;
        if !kv.enabled {
            return Err(failed_precondition(name, version));
        }
        let mut buf = Zeroizing::new(sealed.to_vec());
        kv.cipher
            .decrypt_in_place(&nonce.into(), &server_aad(name, version, &aad), &mut *buf)
            .map_err(|_| invalid(DECRYPTION_FAILED))?;
        (buf, version == key.primary)
    };
    let crc = crc32c(&plaintext);
    if take(&state.corrupt_next) {
        flip_a_bit(&mut plaintext);
    }
    let encoded = Zeroizing::new(BASE64.encode(&*plaintext));
    Ok(axum::Json(json!({
        "plaintext": encoded.as_str(),
        "plaintextCrc32c": crc.to_string(),
        "usedPrimary": used_primary,
        "protectionLevel": "SOFTWARE",
    }))
    .into_response())
}

fn not_found(name: &str) -> ApiError {
    google_error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        &format!("{name} not found."),
    )
}

fn failed_precondition(key: &str, version: u32) -> ApiError {
    google_error(
        StatusCode::BAD_REQUEST,
        "FAILED_PRECONDITION",
        &format!("{key}/cryptoKeyVersions/{version} is not enabled, current state is: DISABLED."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let k = "projects/p/locations/l/keyRings/r/cryptoKeys/k";
        assert_eq!(parse_name(k), Some((k, None)));
        assert_eq!(
            parse_name("projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/7"),
            Some((k, Some(7)))
        );
        for bad in [
            "",
            "projects/p",
            "projects/p/locations/l/keyRings/r/cryptoKeys/",
            "projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/x",
            "projects/p/locations/l/keyRings/r/keys/k",
        ] {
            assert_eq!(parse_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn int64_as_string_or_number() {
        let body = json!({"a": "42", "b": 7, "c": "x", "d": true});
        assert_eq!(int64_field(&body, "a").ok(), Some(Some(42)));
        assert_eq!(int64_field(&body, "b").ok(), Some(Some(7)));
        assert!(int64_field(&body, "c").is_err());
        assert!(int64_field(&body, "d").is_err());
        assert_eq!(int64_field(&body, "missing").ok(), Some(None));
    }
}
