//! A wire-compatible Azure Key Vault / Managed HSM for tests (features `testkit` + `azure`).
//!
//! It serves `POST /keys/{name}/{version}/wrapkey`, `.../unwrapkey` and the latest-version
//! form `/keys/{name}//wrapkey` (what the SDK sends without a version) as the public REST
//! reference describes them: `?api-version=` required, JSON with base64url `value`, `alg` and
//! `kid`, `{"error":{"code","message"}}` on failure. It answers an unauthenticated request with
//! the 401 challenge (`WWW-Authenticate: Bearer authorization=…, resource=…`), checks the bearer
//! token, performs real RSA-OAEP-256 (the `rsa` crate) and real RFC 3394 AES key wrap
//! (`aes-kw`), and is served over TLS with a CA made at start-up under a realistic host name
//! (`myvault.vault.localtest`, `myhsm.managedhsm.localtest`) that clients resolve to 127.0.0.1.
//! The SDK's TLS verification and challenge-resource check therefore stay on, as in
//! production.
//!
//! `rsa` is used here only. RUSTSEC-2023-0071 (the Marvin attack: RSA decryption timing
//! observable by a co-located attacker) does not matter for throw-away keys on a test server;
//! production RSA decryption happens inside Key Vault.

use core::fmt;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use aes_kw::KeyInit as _;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::traits::PublicKeyParts as _;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use zeroize::Zeroizing;

use crate::AzureKeyVaultProvider;
use crate::azure::{AzureCredential, AzureKeyVaultProviderBuilder, AzureWrapAlgorithm};

/// The API version the server requires callers to name (any non-empty value is accepted, as
/// the SDK's default changes between releases).
const API_VERSION_PARAM: &str = "api-version";

/// Why the test server could not start or a key could not be made.
///
/// # Example
///
/// ```
/// use kms_providers::testkit::AzureServerError;
/// let e = AzureServerError::UnknownKey("kek".into());
/// assert!(e.to_string().contains("kek"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AzureServerError {
    /// Binding 127.0.0.1 failed.
    #[error("cannot listen on 127.0.0.1: {0}")]
    Io(#[from] std::io::Error),
    /// Making the test CA or server certificate failed.
    #[error("cannot make the test certificates: {0}")]
    Certificate(#[from] rcgen::Error),
    /// The TLS configuration was refused.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// Generating an RSA key failed.
    #[error("RSA key generation: {0}")]
    Rsa(#[from] rsa::Error),
    /// The OS random number generator failed.
    #[error("random number generator: {0}")]
    Rng(#[from] getrandom::Error),
    /// A key name was not 1 to 127 letters, digits and dashes, or already exists.
    #[error("cannot create key {0:?}: invalid or existing name")]
    BadKeyName(String),
    /// No key of that name exists.
    #[error("no key {0:?} on the test server")]
    UnknownKey(String),
}

/// One version of a key.
enum Material {
    Rsa(Box<rsa::RsaPrivateKey>),
    Oct(Zeroizing<[u8; 32]>),
}

struct Version {
    id: String,
    material: Arc<Material>,
}

#[derive(Default)]
struct Faults {
    fail_next: u32,
    fail_status: u16,
    hang_next: u32,
}

struct Shared {
    host: String,
    vault_url: String,
    token: String,
    resource: String,
    keys: Mutex<HashMap<String, Vec<Version>>>,
    faults: Mutex<Faults>,
    requests: AtomicU64,
    challenges: AtomicU64,
}

impl Shared {
    fn keys(&self) -> MutexGuard<'_, HashMap<String, Vec<Version>>> {
        // A poisoned lock only means a test thread panicked; the map itself is consistent.
        self.keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn faults(&self) -> MutexGuard<'_, Faults> {
        self.faults
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The running test server; dropping it stops it and closes every connection.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use kms_providers::testkit::AzureKeyVaultServer;
///
/// let server = AzureKeyVaultServer::start_key_vault().await?;
/// let version = server.create_rsa_key("kek")?;
/// assert_eq!(version.len(), 32);
/// assert!(server.vault_url().starts_with("https://myvault.vault.localtest:"));
/// # Ok(()) }
/// ```
pub struct AzureKeyVaultServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    ca_der: Vec<u8>,
    task: JoinHandle<()>,
}

impl AzureKeyVaultServer {
    /// A Key Vault at `https://myvault.vault.localtest:PORT` whose challenge names the
    /// resource `https://vault.localtest`.
    ///
    /// # Errors
    ///
    /// [`AzureServerError`] if the port, certificates or TLS set-up fail.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let s = kms_providers::testkit::AzureKeyVaultServer::start_key_vault().await?;
    /// assert_eq!(s.host(), "myvault.vault.localtest");
    /// # Ok(()) }
    /// ```
    pub async fn start_key_vault() -> Result<Self, AzureServerError> {
        Self::start("myvault.vault.localtest", "https://vault.localtest").await
    }

    /// A Managed HSM at `https://myhsm.managedhsm.localtest:PORT` whose challenge names the
    /// resource `https://managedhsm.localtest`.
    ///
    /// # Errors
    ///
    /// [`AzureServerError`] if the port, certificates or TLS set-up fail.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let s = kms_providers::testkit::AzureKeyVaultServer::start_managed_hsm().await?;
    /// assert_eq!(s.host(), "myhsm.managedhsm.localtest");
    /// # Ok(()) }
    /// ```
    pub async fn start_managed_hsm() -> Result<Self, AzureServerError> {
        Self::start("myhsm.managedhsm.localtest", "https://managedhsm.localtest").await
    }

    /// A Key Vault like [`start_key_vault`](Self::start_key_vault) whose challenge names
    /// another `resource`, as a spoofed or misdirected endpoint would: a client that checks the
    /// challenge (the SDK does) must refuse to request a token for it.
    ///
    /// # Errors
    ///
    /// [`AzureServerError`] if the port, certificates or TLS set-up fail.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use kms_providers::testkit::AzureKeyVaultServer;
    /// let s = AzureKeyVaultServer::start_with_challenge_resource("https://login.example").await?;
    /// assert_eq!(s.host(), "myvault.vault.localtest");
    /// # Ok(()) }
    /// ```
    pub async fn start_with_challenge_resource(resource: &str) -> Result<Self, AzureServerError> {
        Self::start("myvault.vault.localtest", resource).await
    }

    async fn start(host: &str, resource: &str) -> Result<Self, AzureServerError> {
        let Certificates {
            ca: ca_der,
            cert: cert_der,
            key: key_der,
        } = certificates(host)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![rustls::pki_types::CertificateDer::from(cert_der)],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key_der.into()),
            )?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let mut token = [0u8; 24];
        getrandom::fill(&mut token)?;
        let shared = Arc::new(Shared {
            host: host.to_owned(),
            vault_url: format!("https://{host}:{}", addr.port()),
            token: URL_SAFE_NO_PAD.encode(token),
            resource: resource.to_owned(),
            keys: Mutex::new(HashMap::new()),
            faults: Mutex::new(Faults::default()),
            requests: AtomicU64::new(0),
            challenges: AtomicU64::new(0),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let task = tokio::spawn(serve(listener, acceptor, app));
        Ok(Self {
            shared,
            addr,
            ca_der,
            task,
        })
    }

    /// The vault URL a client configures, `https://HOST:PORT`.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let s = kms_providers::testkit::AzureKeyVaultServer::start_key_vault().await?;
    /// assert!(s.vault_url().ends_with(&s.addr().port().to_string()));
    /// # Ok(()) }
    /// ```
    pub fn vault_url(&self) -> &str {
        &self.shared.vault_url
    }

    /// The host name the certificate is for (resolve it to [`addr`](Self::addr)).
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let s = kms_providers::testkit::AzureKeyVaultServer::start_key_vault().await?;
    /// assert!(s.host().ends_with(".localtest"));
    /// # Ok(()) }
    /// ```
    pub fn host(&self) -> &str {
        &self.shared.host
    }

    /// The 127.0.0.1 address the server listens on.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let s = kms_providers::testkit::AzureKeyVaultServer::start_key_vault().await?;
    /// assert!(s.addr().ip().is_loopback());
    /// # Ok(()) }
    /// ```
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The DER of the test CA that issued the server certificate.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let s = kms_providers::testkit::AzureKeyVaultServer::start_key_vault().await?;
    /// assert_eq!(s.ca_certificate_der()[0], 0x30); // a DER SEQUENCE
    /// # Ok(()) }
    /// ```
    pub fn ca_certificate_der(&self) -> Vec<u8> {
        self.ca_der.clone()
    }

    /// A test-only credential: it hands out this server's bearer token, and only for the scope
    /// the server's challenge names (`RESOURCE/.default`); any other scope is an error.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let s = kms_providers::testkit::AzureKeyVaultServer::start_key_vault().await?;
    /// let c = s.credential();
    /// assert!(c.get_token(&["https://vault.localtest/.default"], None).await.is_ok());
    /// assert!(c.get_token(&["https://vault.azure.net/.default"], None).await.is_err());
    /// # Ok(()) }
    /// ```
    pub fn credential(&self) -> Arc<dyn TokenCredential> {
        Arc::new(StaticTokenCredential {
            scope: format!("{}/.default", self.shared.resource),
            token: self.shared.token.clone(),
        })
    }

    /// A provider builder for key `key_name` on this server: vault URL, host resolved to
    /// 127.0.0.1, the test CA as the only root, the test credential, the key's algorithm, and
    /// short timeouts and backoff suited to tests.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let s = kms_providers::testkit::AzureKeyVaultServer::start_managed_hsm().await?;
    /// s.create_oct_key("kek")?;
    /// let p = s.provider_builder("azure-hsm", "kek").build()?;
    /// assert_eq!(p.key_id().as_str(), "kek");
    /// # Ok(()) }
    /// ```
    pub fn provider_builder(&self, name: &str, key_name: &str) -> AzureKeyVaultProviderBuilder {
        let algorithm = match self.shared.keys().get(key_name).and_then(|v| v.last()) {
            Some(v) if matches!(*v.material, Material::Oct(_)) => AzureWrapAlgorithm::A256Kw,
            _ => AzureWrapAlgorithm::RsaOaep256,
        };
        AzureKeyVaultProvider::builder(name)
            .vault_url(self.vault_url())
            .resolve(self.host(), self.addr)
            .root_certificate_der(self.ca_der.clone())
            .credential(AzureCredential::from_token_credential(self.credential()))
            .key_name(key_name)
            .algorithm(algorithm)
            .attempt_timeout(Duration::from_secs(10))
            .operation_timeout(Duration::from_secs(30))
            .retries(3, Duration::from_millis(20))
    }

    /// Creates a 2048-bit RSA key (Key Vault `RSA`) and returns its version.
    ///
    /// # Errors
    ///
    /// [`AzureServerError::BadKeyName`] for an invalid or existing name; RSA or RNG failures.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let s = kms_providers::testkit::AzureKeyVaultServer::start_key_vault().await?;
    /// s.create_rsa_key("kek")?;
    /// assert!(s.create_rsa_key("kek").is_err());
    /// # Ok(()) }
    /// ```
    pub fn create_rsa_key(&self, name: &str) -> Result<String, AzureServerError> {
        self.create(name, Material::Rsa(Box::new(rsa_key()?)))
    }

    /// Creates a 256-bit AES key (Managed HSM `oct-HSM`) and returns its version.
    ///
    /// # Errors
    ///
    /// [`AzureServerError::BadKeyName`] for an invalid or existing name; RNG failures.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let s = kms_providers::testkit::AzureKeyVaultServer::start_managed_hsm().await?;
    /// let v = s.create_oct_key("kek")?;
    /// assert!(v.bytes().all(|b| b.is_ascii_hexdigit()));
    /// # Ok(()) }
    /// ```
    pub fn create_oct_key(&self, name: &str) -> Result<String, AzureServerError> {
        self.create(name, oct_key()?)
    }

    /// Adds a new version of key `name` (of the same type), which becomes the latest, as Key
    /// Vault's rotation does. Older versions keep unwrapping.
    ///
    /// # Errors
    ///
    /// [`AzureServerError::UnknownKey`] if there is no such key; RSA or RNG failures.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let s = kms_providers::testkit::AzureKeyVaultServer::start_managed_hsm().await?;
    /// let v1 = s.create_oct_key("kek")?;
    /// let v2 = s.rotate("kek")?;
    /// assert_ne!(v1, v2);
    /// # Ok(()) }
    /// ```
    pub fn rotate(&self, name: &str) -> Result<String, AzureServerError> {
        let is_rsa = match self.shared.keys().get(name).and_then(|v| v.last()) {
            Some(v) => matches!(*v.material, Material::Rsa(_)),
            None => return Err(AzureServerError::UnknownKey(name.to_owned())),
        };
        let material = if is_rsa {
            Material::Rsa(Box::new(rsa_key()?))
        } else {
            oct_key()?
        };
        let id = version_id()?;
        let mut keys = self.shared.keys();
        let versions = keys
            .get_mut(name)
            .ok_or_else(|| AzureServerError::UnknownKey(name.to_owned()))?;
        versions.push(Version {
            id: id.clone(),
            material: Arc::new(material),
        });
        Ok(id)
    }

    /// The next `n` requests (challenges included) fail with HTTP `status` before any other
    /// processing, as a throttling or failing front end would.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let s = kms_providers::testkit::AzureKeyVaultServer::start_key_vault().await?;
    /// s.fail_next(2, 503);
    /// # Ok(()) }
    /// ```
    pub fn fail_next(&self, n: u32, status: u16) {
        let mut f = self.shared.faults();
        f.fail_next = n;
        f.fail_status = status;
    }

    /// The next `n` requests never get an answer (the connection stays open).
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let s = kms_providers::testkit::AzureKeyVaultServer::start_key_vault().await?;
    /// s.hang_next(1);
    /// # Ok(()) }
    /// ```
    pub fn hang_next(&self, n: u32) {
        self.shared.faults().hang_next = n;
    }

    /// Requests received so far (every attempt, challenges included).
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let s = kms_providers::testkit::AzureKeyVaultServer::start_key_vault().await?;
    /// assert_eq!(s.requests(), 0);
    /// # Ok(()) }
    /// ```
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Requests answered with the 401 challenge so far.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let s = kms_providers::testkit::AzureKeyVaultServer::start_key_vault().await?;
    /// assert_eq!(s.challenges(), 0);
    /// # Ok(()) }
    /// ```
    pub fn challenges(&self) -> u64 {
        self.shared.challenges.load(Ordering::Relaxed)
    }

    fn create(&self, name: &str, material: Material) -> Result<String, AzureServerError> {
        let valid = (1..=127).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        let id = version_id()?;
        let mut keys = self.shared.keys();
        if !valid || keys.contains_key(name) {
            return Err(AzureServerError::BadKeyName(name.to_owned()));
        }
        keys.insert(
            name.to_owned(),
            vec![Version {
                id: id.clone(),
                material: Arc::new(material),
            }],
        );
        Ok(id)
    }
}

impl Drop for AzureKeyVaultServer {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection task.
        self.task.abort();
    }
}

impl fmt::Debug for AzureKeyVaultServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureKeyVaultServer")
            .field("vault_url", &self.shared.vault_url)
            .field("addr", &self.addr)
            .field("keys", &self.shared.keys().len())
            .finish_non_exhaustive()
    }
}

/// Hands out one bearer token for one scope.
struct StaticTokenCredential {
    scope: String,
    token: String,
}

impl fmt::Debug for StaticTokenCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticTokenCredential")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl TokenCredential for StaticTokenCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        if scopes != [self.scope.as_str()] {
            return Err(azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                format!("test credential: no token for scopes {scopes:?}"),
            ));
        }
        Ok(AccessToken::new(
            self.token.clone(),
            azure_core::time::OffsetDateTime::now_utc() + azure_core::time::Duration::hours(1),
        ))
    }
}

/// The test CA's certificate, and the server's certificate and PKCS#8 key, all DER.
struct Certificates {
    ca: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
}

fn certificates(host: &str) -> Result<Certificates, AzureServerError> {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "mpc-vault Azure test CA");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca_key = rcgen::KeyPair::generate()?;
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key)?;
    let mut params = rcgen::CertificateParams::new(vec![host.to_owned()])?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, host);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca)?;
    Ok(Certificates {
        ca: ca.der().to_vec(),
        cert: cert.der().to_vec(),
        key: key.serialize_der(),
    })
}

fn rsa_key() -> Result<rsa::RsaPrivateKey, AzureServerError> {
    Ok(rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)?)
}

fn oct_key() -> Result<Material, AzureServerError> {
    let mut k = Zeroizing::new([0u8; 32]);
    getrandom::fill(k.as_mut_slice())?;
    Ok(Material::Oct(k))
}

/// 32 lowercase hex digits, like Key Vault's versions.
fn version_id() -> Result<String, AzureServerError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Accepts TLS connections and serves HTTP/1.1 on each until aborted.
async fn serve(listener: TcpListener, acceptor: TlsAcceptor, app: axum::Router) {
    let mut connections = JoinSet::new();
    loop {
        // Reap finished connections so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        connections.spawn(async move {
            // A client that fails the handshake (say, rejecting our certificate) is simply
            // dropped, as a real front end would.
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            // Connection errors (a client hanging up mid-request) end this connection only.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
        });
    }
}

#[derive(Deserialize)]
struct OpRequest {
    alg: Option<String>,
    value: Option<String>,
}

#[derive(Serialize)]
struct OpResponse {
    kid: String,
    value: String,
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [("x-ms-error-code", code.to_owned())],
        Json(serde_json::json!({ "error": { "code": code, "message": message } })),
    )
        .into_response()
}

/// `POST /keys/{name}[/{version}]/{wrapkey|unwrapkey}?api-version=…`.
async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.requests.fetch_add(1, Ordering::Relaxed);
    let (fail, hang) = {
        let mut f = shared.faults();
        if f.fail_next > 0 {
            f.fail_next -= 1;
            (Some(f.fail_status), false)
        } else if f.hang_next > 0 {
            f.hang_next -= 1;
            (None, true)
        } else {
            (None, false)
        }
    };
    if hang {
        // Longer than any test's deadline; the server's drop aborts it.
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    if let Some(status) = fail {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return error(status, "ServiceUnavailable", "injected fault");
    }
    if query.get(API_VERSION_PARAM).is_none_or(String::is_empty) {
        return error(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        );
    }
    let expected = format!("Bearer {}", shared.token);
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == expected);
    if !authorized {
        shared.challenges.fetch_add(1, Ordering::Relaxed);
        let challenge = format!(
            "Bearer authorization=\"https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47\", resource=\"{}\"",
            shared.resource
        );
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "AKV10000: Request is missing a Bearer or PoP token.",
        );
        if let Ok(v) = header::HeaderValue::from_str(&challenge) {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        return r;
    }
    if method != Method::POST {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "only POST is served",
        );
    }
    let segments: Vec<&str> = uri.path().trim_start_matches('/').split('/').collect();
    let (name, version, op) = match segments.as_slice() {
        ["keys", name, op] => (*name, "", *op),
        ["keys", name, version, op] => (*name, *version, *op),
        _ => return error(StatusCode::NOT_FOUND, "NotFound", "no such operation"),
    };
    let wrap = match op {
        "wrapkey" => true,
        "unwrapkey" if !version.is_empty() => false,
        _ => return error(StatusCode::NOT_FOUND, "NotFound", "no such operation"),
    };
    let Ok(request) = serde_json::from_slice::<OpRequest>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            "The request body is not valid JSON.",
        );
    };
    let Some(value) = request
        .value
        .as_deref()
        .and_then(|v| URL_SAFE_NO_PAD.decode(v.trim_end_matches('=')).ok())
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            "Property 'value' is missing or not base64url.",
        );
    };
    let value = Zeroizing::new(value);
    let (kid, material) = {
        let keys = shared.keys();
        let found = keys.get(name).and_then(|versions| {
            if version.is_empty() {
                versions.last()
            } else {
                versions.iter().find(|v| v.id == version)
            }
        });
        match found {
            Some(v) => (
                format!("{}/keys/{name}/{}", shared.vault_url, v.id),
                Arc::clone(&v.material),
            ),
            None => {
                return error(
                    StatusCode::NOT_FOUND,
                    "KeyNotFound",
                    &format!(
                        "A key with (name/id) {name}/{version} was not found in this key vault."
                    ),
                );
            }
        }
    };
    let alg = request.alg.unwrap_or_default();
    // RSA is slow enough to stall the runtime's workers under 1,000 concurrent calls.
    let outcome = tokio::task::spawn_blocking(move || operate(&material, &alg, wrap, &value)).await;
    match outcome {
        Ok(Ok(out)) => {
            let out = Zeroizing::new(out);
            Json(OpResponse {
                kid,
                value: URL_SAFE_NO_PAD.encode(out.as_slice()),
            })
            .into_response()
        }
        Ok(Err(message)) => error(StatusCode::BAD_REQUEST, "BadParameter", message),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "worker failed",
        ),
    }
}

/// The key operation itself; errors are the service's 400 messages.
fn operate(
    material: &Material,
    alg: &str,
    wrap: bool,
    value: &[u8],
) -> Result<Vec<u8>, &'static str> {
    match (material, alg) {
        (Material::Rsa(key), "RSA-OAEP-256") => {
            let padding = || rsa::Oaep::new::<rsa::sha2::Sha256>();
            if wrap {
                key.to_public_key()
                    .encrypt(&mut rsa::rand_core::OsRng, padding(), value)
                    .map_err(|_| "The value is too long for this key.")
            } else if value.len() != key.size() {
                Err("Invalid ciphertext length.")
            } else {
                key.decrypt_blinded(&mut rsa::rand_core::OsRng, padding(), value)
                    .map_err(|_| "Error decrypting the value.")
            }
        }
        (Material::Oct(k), "A256KW") => {
            let kw = aes_kw::KwAes256::new(&(**k).into());
            if wrap {
                if value.len() < 16 || !value.len().is_multiple_of(8) {
                    return Err("A256KW input must be a multiple of 8 bytes, at least 16.");
                }
                let mut out = vec![0u8; value.len() + 8];
                kw.wrap_key(value, &mut out)
                    .map(<[u8]>::to_vec)
                    .map_err(|_| "Key wrap failed.")
            } else {
                if value.len() < 24 || !value.len().is_multiple_of(8) {
                    return Err("Invalid A256KW ciphertext length.");
                }
                let mut out = Zeroizing::new(vec![0u8; value.len() - 8]);
                kw.unwrap_key(value, &mut out)
                    .map(<[u8]>::to_vec)
                    .map_err(|_| "Error unwrapping the value.")
            }
        }
        _ => Err("The algorithm is not supported for this key type."),
    }
}
