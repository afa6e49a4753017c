//! Azure Key Vault and Managed HSM through the official Azure SDK for Rust (feature `azure`).
//!
//! The SDK does authentication (the challenge on the first request, token caching), retries
//! and the REST calls; this module adds the context binding Key Vault lacks (see `payload`),
//! the error classification and an overall deadline per operation.

mod credential;
mod payload;

use core::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::error::ErrorKind;
use azure_core::http::headers::RETRY_AFTER;
use azure_core::http::{
    ClientOptions, ExponentialRetryOptions, RequestContent, RetryOptions, StatusCode, Transport,
};
use azure_security_keyvault_keys::models::{
    EncryptionAlgorithm, KeyClientUnwrapKeyOptions, KeyClientWrapKeyOptions, KeyOperationParameters,
};
use azure_security_keyvault_keys::{KeyClient, KeyClientOptions, ResourceExt as _};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use crate::context::WrapContext;
use crate::error::{Error, check_share_len};
use crate::provider::{Health, KeyProvider, health_probe_context};
use crate::secret::UnwrappedShare;
use crate::wrapped::{Algorithm, GCM_NONCE_LEN, KeyId, KeyVersion, ProviderKind, WrappedShare};

pub use credential::AzureCredential;

/// The Key Vault key algorithm a provider wraps with.
///
/// # Example
///
/// ```
/// use kms_providers::{Algorithm, AzureWrapAlgorithm};
/// assert_eq!(AzureWrapAlgorithm::A256Kw.algorithm(), Algorithm::A256Kw);
/// assert_eq!(AzureWrapAlgorithm::default(), AzureWrapAlgorithm::RsaOaep256);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
#[non_exhaustive]
pub enum AzureWrapAlgorithm {
    /// `RSA-OAEP-256` with an `RSA` or `RSA-HSM` key of 2048 to 4096 bits (Key Vault, or
    /// Managed HSM).
    #[default]
    RsaOaep256,
    /// `A256KW` with a 256-bit `oct-HSM` key (Managed HSM only).
    A256Kw,
}

impl AzureWrapAlgorithm {
    /// The algorithm recorded in the wrapped share.
    ///
    /// # Example
    ///
    /// ```
    /// use kms_providers::{Algorithm, AzureWrapAlgorithm};
    /// assert_eq!(AzureWrapAlgorithm::RsaOaep256.algorithm(), Algorithm::RsaOaepSha256);
    /// ```
    pub const fn algorithm(self) -> Algorithm {
        match self {
            Self::RsaOaep256 => Algorithm::RsaOaepSha256,
            Self::A256Kw => Algorithm::A256Kw,
        }
    }

    fn sdk(self) -> EncryptionAlgorithm {
        match self {
            Self::RsaOaep256 => EncryptionAlgorithm::RsaOaep256,
            Self::A256Kw => EncryptionAlgorithm::A256Kw,
        }
    }
}

/// Default deadline of one HTTP attempt.
const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default deadline of one TCP + TLS connection set-up.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default deadline of one whole operation, retries included.
const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Default retries after the first attempt (the SDK's exponential policy).
const DEFAULT_MAX_RETRIES: u32 = 3;
/// Default first backoff delay.
const DEFAULT_INITIAL_DELAY: Duration = Duration::from_millis(200);
/// Default bound on requests in flight to Key Vault from one provider.
const DEFAULT_MAX_IN_FLIGHT: usize = 32;
/// Longest backoff delay between two attempts.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// Configures an [`AzureKeyVaultProvider`]; [`build`](Self::build) checks everything.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use kms_providers::{AzureCredential, AzureKeyVaultProvider, AzureWrapAlgorithm};
///
/// let provider = AzureKeyVaultProvider::builder("azure")
///     .vault_url("https://myvault.vault.azure.net")
///     .key_name("mpc-vault-kek")
///     .algorithm(AzureWrapAlgorithm::RsaOaep256)
///     .credential(AzureCredential::managed_identity())
///     .operation_timeout(Duration::from_secs(20))
///     .build()?;
/// assert_eq!(provider.vault_url(), "https://myvault.vault.azure.net/");
/// # Ok(()) }
/// ```
#[must_use]
pub struct AzureKeyVaultProviderBuilder {
    name: String,
    vault_url: Option<String>,
    key_name: Option<String>,
    key_version: Option<String>,
    algorithm: AzureWrapAlgorithm,
    credential: Option<AzureCredential>,
    roots: Vec<Vec<u8>>,
    resolve: Vec<(String, SocketAddr)>,
    attempt_timeout: Duration,
    connect_timeout: Duration,
    operation_timeout: Duration,
    max_retries: u32,
    initial_delay: Duration,
    max_in_flight: usize,
}

impl AzureKeyVaultProviderBuilder {
    /// The vault (`https://NAME.vault.azure.net`) or Managed HSM
    /// (`https://NAME.managedhsm.azure.net`) URL. Required; must be `https` with no path.
    ///
    /// # Example
    ///
    /// ```
    /// let b = kms_providers::AzureKeyVaultProvider::builder("azure")
    ///     .vault_url("https://myhsm.managedhsm.azure.net");
    /// ```
    pub fn vault_url(mut self, url: impl Into<String>) -> Self {
        self.vault_url = Some(url.into());
        self
    }

    /// The key's name in the vault (1 to 127 letters, digits and dashes). Required. It is the
    /// [`KeyId`] of every share this provider wraps.
    ///
    /// # Example
    ///
    /// ```
    /// let b = kms_providers::AzureKeyVaultProvider::builder("azure").key_name("mpc-kek");
    /// ```
    pub fn key_name(mut self, name: impl Into<String>) -> Self {
        self.key_name = Some(name.into());
        self
    }

    /// Wrap with this key version instead of the key's current version. Unwrap always uses
    /// the version recorded in the share.
    ///
    /// # Example
    ///
    /// ```
    /// let b = kms_providers::AzureKeyVaultProvider::builder("azure")
    ///     .key_version("78deebed173b48e48f55abf87ed4cf71");
    /// ```
    pub fn key_version(mut self, version: impl Into<String>) -> Self {
        self.key_version = Some(version.into());
        self
    }

    /// The key's algorithm; [`AzureWrapAlgorithm::RsaOaep256`] if not set.
    ///
    /// # Example
    ///
    /// ```
    /// use kms_providers::{AzureKeyVaultProvider, AzureWrapAlgorithm};
    /// let b = AzureKeyVaultProvider::builder("azure").algorithm(AzureWrapAlgorithm::A256Kw);
    /// ```
    pub fn algorithm(mut self, algorithm: AzureWrapAlgorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// The Entra ID identity to authenticate as. Required.
    ///
    /// # Example
    ///
    /// ```
    /// use kms_providers::{AzureCredential, AzureKeyVaultProvider};
    /// let b = AzureKeyVaultProvider::builder("azure")
    ///     .credential(AzureCredential::workload_identity());
    /// ```
    pub fn credential(mut self, credential: AzureCredential) -> Self {
        self.credential = Some(credential);
        self
    }

    /// Trust this DER-encoded root certificate instead of the operating system's trust store
    /// (may be called several times). For private endpoints behind a private CA, and tests.
    /// TLS verification itself cannot be turned off.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let server = kms_providers::testkit::AzureKeyVaultServer::start_key_vault().await?;
    /// let b = kms_providers::AzureKeyVaultProvider::builder("azure")
    ///     .root_certificate_der(server.ca_certificate_der());
    /// # Ok(()) }
    /// ```
    pub fn root_certificate_der(mut self, der: impl Into<Vec<u8>>) -> Self {
        self.roots.push(der.into());
        self
    }

    /// Connect to `addr` for `host` instead of resolving it through DNS; the TLS server name
    /// and the challenge check still use `host`. Setting any override also disables
    /// environment proxies. For private endpoints without DNS, and tests.
    ///
    /// # Example
    ///
    /// ```
    /// let b = kms_providers::AzureKeyVaultProvider::builder("azure")
    ///     .resolve("myvault.vault.azure.net", "10.0.0.4:443".parse().unwrap());
    /// ```
    pub fn resolve(mut self, host: impl Into<String>, addr: SocketAddr) -> Self {
        self.resolve.push((host.into(), addr));
        self
    }

    /// Deadline of one HTTP attempt (default 10 s); a timed-out attempt is retried.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = kms_providers::AzureKeyVaultProvider::builder("azure")
    ///     .attempt_timeout(Duration::from_secs(3));
    /// ```
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self.connect_timeout = self.connect_timeout.min(timeout);
        self
    }

    /// Deadline of a whole wrap, unwrap or health call, retries included (default 30 s). When
    /// it passes the call fails with [`Error::Timeout`].
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = kms_providers::AzureKeyVaultProvider::builder("azure")
    ///     .operation_timeout(Duration::from_secs(5));
    /// ```
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// Retries after a failed first attempt (default 3) and the first backoff delay
    /// (default 200 ms, doubling up to 5 s). The SDK retries connection errors, timeouts,
    /// 408, 429, 500, 502, 503 and 504, honouring `Retry-After`.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = kms_providers::AzureKeyVaultProvider::builder("azure")
    ///     .retries(5, Duration::from_millis(100));
    /// ```
    pub fn retries(mut self, max_retries: u32, initial_delay: Duration) -> Self {
        self.max_retries = max_retries;
        self.initial_delay = initial_delay;
        self
    }

    /// At most `n` Key Vault requests in flight from this provider (default 32); further
    /// calls wait their turn within their operation deadline. This bounds the connections
    /// and TLS handshakes a burst opens, and keeps bursts below Key Vault's throttling limits.
    ///
    /// # Example
    ///
    /// ```
    /// let b = kms_providers::AzureKeyVaultProvider::builder("azure").max_in_flight(8);
    /// ```
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n;
        self
    }

    /// Checks the configuration and builds the provider. No request is sent.
    ///
    /// # Errors
    ///
    /// [`Error::Misconfigured`] for a missing or invalid vault URL, key name, key version or
    /// credential, a zero timeout or in-flight bound, an unparsable root certificate, an empty OS trust store, or
    /// an SDK client or credential that cannot be created.
    ///
    /// # Example
    ///
    /// ```
    /// use kms_providers::{AzureCredential, AzureKeyVaultProvider, Error};
    /// let e = AzureKeyVaultProvider::builder("azure")
    ///     .vault_url("http://myvault.vault.azure.net")
    ///     .key_name("k")
    ///     .credential(AzureCredential::managed_identity())
    ///     .build()
    ///     .unwrap_err();
    /// assert!(matches!(e, Error::Misconfigured { .. }));
    /// ```
    pub fn build(self) -> Result<AzureKeyVaultProvider, Error> {
        let name = self.name;
        let bad = |reason: String| Error::misconfigured(&name, reason);
        if name.is_empty() {
            return Err(bad("the provider name is empty".into()));
        }
        let url = self
            .vault_url
            .ok_or_else(|| bad("no vault URL (vault_url)".into()))?;
        let parsed = azure_core::http::Url::parse(&url)
            .map_err(|e| bad(format!("vault URL {url:?} does not parse: {e}")))?;
        if parsed.scheme() != "https"
            || parsed.host_str().is_none_or(str::is_empty)
            || !matches!(parsed.path(), "" | "/")
            || parsed.query().is_some()
            || parsed.fragment().is_some()
            || !parsed.username().is_empty()
            || parsed.password().is_some()
        {
            return Err(bad(format!(
                "vault URL {url:?} must be https://HOST[:PORT] with no path, query or credentials"
            )));
        }
        let key_name = self
            .key_name
            .ok_or_else(|| bad("no key name (key_name)".into()))?;
        if !valid_key_name(&key_name) {
            return Err(bad(format!(
                "key name {key_name:?} is not 1 to 127 letters, digits and dashes"
            )));
        }
        let key_id = KeyId::new(key_name.clone()).map_err(|e| bad(e.to_string()))?;
        if let Some(v) = &self.key_version
            && !valid_key_version(v)
        {
            return Err(bad(format!(
                "key version {v:?} is not 1 to 64 letters and digits"
            )));
        }
        let credential = self.credential.ok_or_else(|| bad("no credential".into()))?;
        for (what, d) in [
            ("attempt", self.attempt_timeout),
            ("connect", self.connect_timeout),
            ("operation", self.operation_timeout),
        ] {
            if d.is_zero() {
                return Err(bad(format!("the {what} timeout is zero")));
            }
        }

        if self.max_in_flight == 0 {
            return Err(bad("max_in_flight is zero".into()));
        }
        let http = http_client(
            &name,
            &self.roots,
            &self.resolve,
            self.attempt_timeout,
            self.connect_timeout,
        )?;
        let transport = Transport::new(Arc::new(http));
        let credential = credential
            .build(&transport)
            .map_err(|e| sdk_misconfigured(&name, "cannot create the credential", e))?;
        let retry = RetryOptions::exponential(ExponentialRetryOptions {
            initial_delay: sdk_duration(self.initial_delay),
            max_retries: self.max_retries,
            max_total_elapsed: sdk_duration(self.operation_timeout),
            max_delay: sdk_duration(MAX_RETRY_DELAY),
        });
        let options = KeyClientOptions {
            client_options: ClientOptions {
                transport: Some(transport),
                retry,
                ..ClientOptions::default()
            },
            // Stays on: a challenge naming another resource than this vault's domain must
            // never receive a token.
            verify_challenge_resource: Some(true),
            ..KeyClientOptions::default()
        };
        let client = KeyClient::new(parsed.as_str(), credential, Some(options))
            .map_err(|e| sdk_misconfigured(&name, "cannot create the Key Vault client", e))?;
        Ok(AzureKeyVaultProvider {
            inner: Arc::new(Inner {
                name,
                vault_url: parsed.to_string(),
                key_id,
                key_version: self.key_version,
                algorithm: self.algorithm,
                operation_timeout: self.operation_timeout,
                in_flight: tokio::sync::Semaphore::new(self.max_in_flight),
                client,
            }),
        })
    }
}

impl fmt::Debug for AzureKeyVaultProviderBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureKeyVaultProviderBuilder")
            .field("name", &self.name)
            .field("vault_url", &self.vault_url)
            .field("key_name", &self.key_name)
            .field("key_version", &self.key_version)
            .field("algorithm", &self.algorithm)
            .field("credential", &self.credential)
            .field("roots", &self.roots.len())
            .field("resolve", &self.resolve)
            .field("operation_timeout", &self.operation_timeout)
            .finish_non_exhaustive()
    }
}

/// A [`KeyProvider`] whose KEK is an Azure Key Vault or Managed HSM key.
///
/// Wrapping draws a fresh 256-bit content key, has Key Vault wrap it together with a SHA-256
/// digest of the context (`wrapKey`), and seals the share under the content key with
/// AES-256-GCM bound to the key name, key version and context; the share itself never leaves
/// the process. Unwrapping has Key Vault unwrap the content key (`unwrapKey`), checks the
/// digest in constant time and opens the share. Key versions rotate on the Azure side; shares
/// record the version they were wrapped under.
///
/// Errors: 401/403 are [`Error::PermissionDenied`], 404 [`Error::UnknownKey`], 429
/// [`Error::Throttled`], 5xx and network failures [`Error::Unavailable`] (after the SDK's
/// retries), a passed deadline [`Error::Timeout`], a 400 on unwrap or any digest or tag
/// mismatch [`Error::AuthenticationFailed`].
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use kms_providers::{KeyProvider, WrapContext};
/// use kms_providers::testkit::AzureKeyVaultServer;
///
/// // A wire-compatible Key Vault on 127.0.0.1, over TLS, with the 401 challenge.
/// let server = AzureKeyVaultServer::start_key_vault().await?;
/// server.create_rsa_key("kek")?;
/// let provider = server.provider_builder("azure", "kek").build()?;
///
/// let ctx = WrapContext::new("vault-1", "app/db", 1, 1, "shamir-2-of-3")?;
/// let wrapped = provider.wrap(&[42u8; 32], &ctx).await?;
/// assert_eq!(provider.unwrap(&wrapped, &ctx).await?.expose_secret(), &[42u8; 32]);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AzureKeyVaultProvider {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    vault_url: String,
    key_id: KeyId,
    key_version: Option<String>,
    algorithm: AzureWrapAlgorithm,
    operation_timeout: Duration,
    in_flight: tokio::sync::Semaphore,
    client: KeyClient,
}

impl AzureKeyVaultProvider {
    /// Starts configuring a provider called `name` (the name errors and health report).
    ///
    /// # Example
    ///
    /// ```
    /// let b = kms_providers::AzureKeyVaultProvider::builder("azure-kv");
    /// ```
    pub fn builder(name: impl Into<String>) -> AzureKeyVaultProviderBuilder {
        AzureKeyVaultProviderBuilder {
            name: name.into(),
            vault_url: None,
            key_name: None,
            key_version: None,
            algorithm: AzureWrapAlgorithm::default(),
            credential: None,
            roots: Vec::new(),
            resolve: Vec::new(),
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            operation_timeout: DEFAULT_OPERATION_TIMEOUT,
            max_retries: DEFAULT_MAX_RETRIES,
            initial_delay: DEFAULT_INITIAL_DELAY,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
        }
    }

    /// The vault URL, normalised (with a trailing `/`).
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::{AzureCredential, AzureKeyVaultProvider};
    /// let p = AzureKeyVaultProvider::builder("azure")
    ///     .vault_url("https://myvault.vault.azure.net")
    ///     .key_name("k")
    ///     .credential(AzureCredential::managed_identity())
    ///     .build()?;
    /// assert_eq!(p.vault_url(), "https://myvault.vault.azure.net/");
    /// # Ok::<(), kms_providers::Error>(())
    /// ```
    pub fn vault_url(&self) -> &str {
        &self.inner.vault_url
    }

    /// The key name: the [`KeyId`] of every share this provider wraps.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::{AzureCredential, AzureKeyVaultProvider};
    /// let p = AzureKeyVaultProvider::builder("azure")
    ///     .vault_url("https://myvault.vault.azure.net")
    ///     .key_name("kek")
    ///     .credential(AzureCredential::managed_identity())
    ///     .build()?;
    /// assert_eq!(p.key_id().as_str(), "kek");
    /// # Ok::<(), kms_providers::Error>(())
    /// ```
    pub fn key_id(&self) -> &KeyId {
        &self.inner.key_id
    }

    /// Runs `op` under the operation deadline, holding an in-flight permit.
    async fn deadline<T>(&self, op: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
        let after = self.inner.operation_timeout;
        let limited = async {
            // The semaphore is never closed, so this cannot fail; a closed one would mean no
            // request may be sent at all.
            let _permit = self.inner.in_flight.acquire().await.map_err(|_| {
                Error::internal(&self.inner.name, "the in-flight limit was closed", None)
            })?;
            op.await
        };
        tokio::time::timeout(after, limited)
            .await
            .map_err(|_| Error::Timeout {
                provider: self.inner.name.clone(),
                after,
            })?
    }

    async fn wrap_inner(&self, share: &[u8], context: &WrapContext) -> Result<WrappedShare, Error> {
        let inner = &*self.inner;
        let name = &inner.name;
        let algorithm = inner.algorithm.algorithm();
        let sealer = payload::Sealer::new(algorithm, &inner.key_id, context)
            .map_err(|e| Error::rng(name, e))?;
        let mut params = KeyOperationParameters {
            algorithm: Some(inner.algorithm.sdk()),
            value: Some(sealer.kek_plaintext().to_vec()),
            ..KeyOperationParameters::default()
        };
        let body = azure_core::json::to_json(&params);
        // The SDK's own request buffer cannot be wiped; ours can.
        params.value.zeroize();
        let body =
            body.map_err(|e| Error::internal(name, "cannot encode wrapKey", Some(e.into())))?;
        let options = KeyClientWrapKeyOptions {
            key_version: inner.key_version.clone(),
            ..KeyClientWrapKeyOptions::default()
        };
        let result = inner
            .client
            .wrap_key(
                inner.key_id.as_str(),
                <RequestContent<KeyOperationParameters> as From<azure_core::Bytes>>::from(body),
                Some(options),
            )
            .await
            .map_err(|e| self.classify(e, Op::Wrap, inner.key_version.as_deref()))?
            .into_model()
            .map_err(|e| self.classify(e, Op::Wrap, inner.key_version.as_deref()))?;
        let version = self.version_from_kid(&result)?;
        let kek_ciphertext = result.result.unwrap_or_default();
        if !payload::kek_ciphertext_ok(algorithm, kek_ciphertext.len()) {
            return Err(Error::Misconfigured {
                provider: name.clone(),
                reason: format!(
                    "wrapKey returned {} bytes, not what a {} key produces; is key {:?} of the configured type?",
                    kek_ciphertext.len(),
                    algorithm,
                    inner.key_id.as_str()
                ),
                source: None,
            });
        }
        let mut nonce = [0u8; GCM_NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| Error::rng(name, e))?;
        let blob = sealer
            .seal(
                payload::Binding {
                    algorithm,
                    key_id: &inner.key_id,
                    key_version: &version,
                    context,
                },
                &nonce,
                &kek_ciphertext,
                share,
            )
            .ok_or_else(|| Error::internal(name, "sealing the share failed", None))?;
        WrappedShare::new(
            ProviderKind::AzureKeyVault,
            inner.key_id.clone(),
            version,
            algorithm,
            nonce.to_vec(),
            blob,
        )
        .map_err(|e| Error::internal(name, "wrapped share out of bounds", Some(Box::new(e))))
    }

    async fn unwrap_inner(
        &self,
        wrapped: &WrappedShare,
        context: &WrapContext,
    ) -> Result<UnwrappedShare, Error> {
        let inner = &*self.inner;
        let name = &inner.name;
        let algorithm = inner.algorithm.algorithm();
        if wrapped.kind() != ProviderKind::AzureKeyVault {
            return Err(Error::WrongProviderKind {
                provider: name.clone(),
                expected: ProviderKind::AzureKeyVault,
                found: wrapped.kind(),
            });
        }
        if wrapped.algorithm() != algorithm {
            return Err(Error::invalid_input(
                name,
                format!(
                    "this provider's key uses {algorithm}, the share {}",
                    wrapped.algorithm()
                ),
            ));
        }
        let version = wrapped.key_version().as_str();
        // The name must be exactly the one this provider writes (Key Vault would accept any
        // case). A version that could not be one is refused here, so no share can steer the
        // request path.
        if wrapped.key_id() != &inner.key_id || !valid_key_version(version) {
            return Err(Error::unknown_key(
                name,
                wrapped.key_id().as_str(),
                Some(version),
            ));
        }
        let framed = payload::split(algorithm, wrapped.blob())
            .map_err(|_| Error::auth_failed(name, None))?;
        let params = KeyOperationParameters {
            algorithm: Some(inner.algorithm.sdk()),
            value: Some(framed.kek_ciphertext.to_vec()),
            ..KeyOperationParameters::default()
        };
        let body = azure_core::json::to_json(&params)
            .map_err(|e| Error::internal(name, "cannot encode unwrapKey", Some(e.into())))?;
        let mut result = inner
            .client
            .unwrap_key(
                inner.key_id.as_str(),
                version,
                <RequestContent<KeyOperationParameters> as From<azure_core::Bytes>>::from(body),
                Some(KeyClientUnwrapKeyOptions::default()),
            )
            .await
            .map_err(|e| self.classify(e, Op::Unwrap, Some(version)))?
            .into_model()
            .map_err(|e| self.classify(e, Op::Unwrap, Some(version)))?;
        let kek_plaintext = Zeroizing::new(result.result.take().unwrap_or_default());
        let share = payload::open(
            payload::Binding {
                algorithm,
                key_id: &inner.key_id,
                key_version: wrapped.key_version(),
                context,
            },
            wrapped.nonce(),
            &framed,
            &kek_plaintext,
        )
        .map_err(|_| Error::auth_failed(name, None))?;
        Ok(UnwrappedShare::new(share))
    }

    /// The version Key Vault used, from the `kid` it returned.
    fn version_from_kid(
        &self,
        result: &azure_security_keyvault_keys::models::KeyOperationResult,
    ) -> Result<KeyVersion, Error> {
        let name = &self.inner.name;
        let id = result.resource_id().map_err(|e| {
            Error::internal(
                name,
                "wrapKey answered without a usable kid",
                Some(e.into()),
            )
        })?;
        let version = id.version.unwrap_or_default();
        if !id.name.eq_ignore_ascii_case(self.inner.key_id.as_str()) || !valid_key_version(&version)
        {
            return Err(Error::internal(
                name,
                format!(
                    "wrapKey answered for key {:?} version {version:?}, not key {:?}",
                    id.name,
                    self.inner.key_id.as_str()
                ),
                None,
            ));
        }
        KeyVersion::new(version)
            .map_err(|e| Error::internal(name, "bad key version", Some(e.into())))
    }

    fn classify(&self, e: azure_core::Error, op: Op, version: Option<&str>) -> Error {
        classify(&self.inner.name, self.inner.key_id.as_str(), e, op, version)
    }
}

/// Which operation an SDK error came from: a 400 means different things.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Wrap,
    Unwrap,
}

/// Maps an SDK error to the crate's transient/permanent classes.
fn classify(
    provider: &str,
    key_id: &str,
    e: azure_core::Error,
    op: Op,
    version: Option<&str>,
) -> Error {
    let provider = provider.to_owned();
    let detail = describe(&e);
    match e.kind() {
        ErrorKind::HttpResponse {
            status,
            error_code,
            raw_response,
        } => {
            let status = *status;
            let code = error_code.clone().unwrap_or_default();
            let retry_after = raw_response
                .as_ref()
                .and_then(|r| r.headers().get_optional_str(&RETRY_AFTER))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let source: Option<crate::BoxError> = Some(Box::new(e));
            match status {
                StatusCode::Unauthorized | StatusCode::Forbidden => Error::PermissionDenied {
                    provider,
                    reason: format!(
                        "Key Vault answered {} {code}: the identity needs the Key Vault Crypto User \
                         (or Managed HSM Crypto User) role on key {key_id:?}",
                        u16::from(status)
                    ),
                    source,
                },
                StatusCode::NotFound => Error::UnknownKey {
                    provider,
                    key_id: key_id.to_owned(),
                    key_version: version.map(str::to_owned),
                },
                StatusCode::TooManyRequests => Error::Throttled {
                    provider,
                    retry_after,
                    source,
                },
                StatusCode::BadRequest if op == Op::Unwrap => {
                    Error::AuthenticationFailed { provider, source }
                }
                s if u16::from(s) >= 500 || s == StatusCode::RequestTimeout => Error::Unavailable {
                    provider,
                    reason: format!("Key Vault answered {} {code}", u16::from(s)),
                    source,
                },
                s => Error::Misconfigured {
                    provider,
                    reason: format!("Key Vault refused the request: {} {code}", u16::from(s)),
                    source,
                },
            }
        }
        ErrorKind::Connection | ErrorKind::Io => match tls_error(&e) {
            Some(tls) => Error::Misconfigured {
                provider,
                reason: format!(
                    "TLS with Key Vault failed ({tls}); check the vault URL's host name and the \
                     trusted roots"
                ),
                source: Some(Box::new(e)),
            },
            None => Error::Unavailable {
                provider,
                reason: format!("cannot reach Key Vault: {detail}"),
                source: Some(Box::new(e)),
            },
        },
        // The token endpoint may be down as well as the secret wrong; treating the failure as
        // transient lets the retry and breaker layers handle an Entra ID outage.
        ErrorKind::Credential => Error::Unavailable {
            provider,
            reason: format!("cannot get an Entra ID token: {detail}"),
            source: Some(Box::new(e)),
        },
        // A challenge naming another resource, or an answer that does not parse.
        _ => Error::Misconfigured {
            provider,
            reason: format!("unusable Key Vault exchange: {detail}"),
            source: Some(Box::new(e)),
        },
    }
}

impl fmt::Debug for AzureKeyVaultProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureKeyVaultProvider")
            .field("name", &self.inner.name)
            .field("vault_url", &self.inner.vault_url)
            .field("key_id", &self.inner.key_id.as_str())
            .field("key_version", &self.inner.key_version)
            .field("algorithm", &self.inner.algorithm)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl KeyProvider for AzureKeyVaultProvider {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn kind(&self) -> ProviderKind {
        ProviderKind::AzureKeyVault
    }

    async fn wrap(&self, share: &[u8], context: &WrapContext) -> Result<WrappedShare, Error> {
        check_share_len(&self.inner.name, share)?;
        self.deadline(self.wrap_inner(share, context)).await
    }

    async fn unwrap(
        &self,
        wrapped: &WrappedShare,
        context: &WrapContext,
    ) -> Result<UnwrappedShare, Error> {
        self.deadline(self.unwrap_inner(wrapped, context)).await
    }

    /// Wraps and unwraps a probe: proves reachability, the credential and both permissions,
    /// and reports the key's current version.
    async fn health(&self) -> Result<Health, Error> {
        let ctx = health_probe_context();
        let probe = [0x5a_u8; 32];
        let wrapped = self.wrap(&probe, &ctx).await?;
        let back = self.unwrap(&wrapped, &ctx).await?;
        if !bool::from(back.expose_secret().ct_eq(&probe)) {
            return Err(Error::internal(
                &self.inner.name,
                "health probe unwrapped to different bytes",
                None,
            ));
        }
        Ok(Health::new(
            self.inner.name.clone(),
            ProviderKind::AzureKeyVault,
            wrapped.key_id().clone(),
            wrapped.key_version().clone(),
        ))
    }
}

/// The error's message and every cause's, outermost first: the SDK wraps the interesting
/// part ("challenge resource … doesn't match", a rustls alert) under generic context. None of
/// these messages holds request or response bodies.
fn describe(e: &azure_core::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = next {
        let text = err.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        next = match err.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    parts.join(": ")
}

/// The rustls error somewhere in `e`'s source chain, if any: a certificate that does not
/// verify is a configuration (or attack) problem, never worth retrying as an outage.
fn tls_error(e: &azure_core::Error) -> Option<String> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = next {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        // `io::Error::source` skips the error it wraps; `get_ref` is that error.
        next = match err.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}

/// Key Vault key names: 1 to 127 ASCII letters, digits and dashes.
fn valid_key_name(s: &str) -> bool {
    (1..=127).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Key Vault versions are 32 hex digits; accept 1 to 64 ASCII letters and digits, which is all
/// that matters for keeping a share from steering the request path.
fn valid_key_version(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn sdk_duration(d: Duration) -> azure_core::time::Duration {
    azure_core::time::Duration::try_from(d).unwrap_or(azure_core::time::Duration::MAX)
}

fn sdk_misconfigured(provider: &str, what: &str, e: azure_core::Error) -> Error {
    Error::Misconfigured {
        provider: provider.to_owned(),
        reason: format!("{what}: {e}"),
        source: Some(Box::new(e)),
    }
}

/// The HTTPS client handed to the SDK: rustls on `ring`, TLS 1.2+, the OS trust store or the
/// configured roots, https only.
fn http_client(
    provider: &str,
    roots: &[Vec<u8>],
    resolve: &[(String, SocketAddr)],
    attempt_timeout: Duration,
    connect_timeout: Duration,
) -> Result<reqwest::Client, Error> {
    let bad = |reason: String| Error::misconfigured(provider, reason);
    let mut store = rustls::RootCertStore::empty();
    if roots.is_empty() {
        let native = rustls_native_certs::load_native_certs();
        let (added, _ignored) = store.add_parsable_certificates(native.certs);
        if added == 0 {
            return Err(bad(
                "no usable root certificate in the operating system's trust store; install \
                 ca-certificates or configure root_certificate_der"
                    .into(),
            ));
        }
    } else {
        for der in roots {
            store
                .add(rustls::pki_types::CertificateDer::from(der.as_slice()))
                .map_err(|e| bad(format!("root certificate: {e}")))?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| bad(format!("TLS configuration: {e}")))?
    .with_root_certificates(store)
    .with_no_client_auth();
    let mut builder = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .https_only(true)
        .timeout(attempt_timeout)
        .connect_timeout(connect_timeout);
    if !resolve.is_empty() {
        builder = builder.no_proxy();
    }
    for (host, addr) in resolve {
        builder = builder.resolve(host, *addr);
    }
    builder.build().map_err(|e| Error::Misconfigured {
        provider: provider.to_owned(),
        reason: format!("cannot build the HTTPS client: {e}"),
        source: Some(Box::new(e)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions() {
        assert!(valid_key_name("mpc-vault-kek-1"));
        for bad in ["", "a/b", "a?b", "a#b", "a b", "a.b", "é", &"a".repeat(128)] {
            assert!(!valid_key_name(bad), "{bad:?}");
        }
        assert!(valid_key_version("78deebed173b48e48f55abf87ed4cf71"));
        for bad in ["", "../x", "a/b", "a%2f", "a?b", &"a".repeat(65)] {
            assert!(!valid_key_version(bad), "{bad:?}");
        }
    }

    fn http_error(status: u16, retry_after: Option<&str>) -> azure_core::Error {
        let mut headers = azure_core::http::headers::Headers::new();
        if let Some(v) = retry_after {
            headers.insert(RETRY_AFTER, v.to_owned());
        }
        let raw = azure_core::http::RawResponse::from_bytes(
            StatusCode::from(status),
            headers,
            azure_core::Bytes::from_static(br#"{"error":{"code":"X","message":"m"}}"#),
        );
        ErrorKind::HttpResponse {
            status: StatusCode::from(status),
            error_code: Some("X".into()),
            raw_response: Some(Box::new(raw)),
        }
        .into_error()
    }

    #[test]
    fn error_classes() {
        let c = |status, op| classify("az", "kek", http_error(status, Some("7")), op, Some("v1"));
        assert!(matches!(c(401, Op::Wrap), Error::PermissionDenied { .. }));
        assert!(matches!(c(403, Op::Unwrap), Error::PermissionDenied { .. }));
        assert!(matches!(
            c(404, Op::Unwrap),
            Error::UnknownKey { ref key_version, .. } if key_version.as_deref() == Some("v1")
        ));
        assert!(matches!(
            c(429, Op::Wrap),
            Error::Throttled { retry_after: Some(d), .. } if d == Duration::from_secs(7)
        ));
        assert!(matches!(
            c(400, Op::Unwrap),
            Error::AuthenticationFailed { .. }
        ));
        assert!(matches!(c(400, Op::Wrap), Error::Misconfigured { .. }));
        for s in [500, 502, 503, 504, 408] {
            let e = c(s, Op::Wrap);
            assert!(e.is_transient(), "{s}: {e}");
        }
        for s in [400, 401, 403, 404, 409] {
            assert!(!c(s, Op::Unwrap).is_transient(), "{s}");
        }
        let e = classify(
            "az",
            "kek",
            ErrorKind::Connection.into_error(),
            Op::Wrap,
            None,
        );
        assert!(matches!(e, Error::Unavailable { .. }));
        let e = classify(
            "az",
            "kek",
            ErrorKind::Credential.into_error(),
            Op::Wrap,
            None,
        );
        assert!(e.is_transient());
        let e = classify(
            "az",
            "kek",
            ErrorKind::DataConversion.into_error(),
            Op::Wrap,
            None,
        );
        assert!(matches!(e, Error::Misconfigured { .. }));
        assert_eq!(e.provider(), "az");
    }
}
