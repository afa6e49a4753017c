//! Google Cloud KMS through the official `google-cloud-kms-v1` client (REST transport).
//!
//! A share is wrapped with `Encrypt` on a `GOOGLE_SYMMETRIC_ENCRYPTION` CryptoKey; the
//! additional authenticated data binds the wrapped form's header (key id and key version) and
//! the context's canonical bytes. Both directions carry the CRC32C integrity fields Google
//! recommends, and every response is checked before it is used.

mod errors;

use core::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use google_cloud_gax::exponential_backoff::ExponentialBackoffBuilder;
use google_cloud_gax::options::RequestOptionsBuilder;
use google_cloud_gax::retry_policy::{Aip194Strict, RetryPolicyExt};
use google_cloud_kms_v1::client::KeyManagementService;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::context::{WrapContext, put_lv};
use crate::error::{Error, check_share_len};
use crate::provider::{Health, KeyProvider, health_probe_context};
use crate::secret::UnwrappedShare;
use crate::wrapped::{Algorithm, KeyId, KeyVersion, MAX_SHARE_LEN, ProviderKind, WrappedShare};

pub use errors::GcpIntegrityError;
use errors::{Call, map_sdk_error};

/// The credentials type of `google-cloud-auth` the provider accepts: service-account JSON,
/// application default credentials, workload identity, or anything else that crate builds.
///
/// # Example
///
/// ```
/// use kms_providers::GcpCredentials;
///
/// // Anonymous credentials are only useful against a local test server.
/// let creds: GcpCredentials = google_cloud_auth::credentials::anonymous::Builder::new().build();
/// ```
pub type GcpCredentials = google_cloud_auth::credentials::Credentials;

/// The Cloud KMS endpoint used when none is configured.
const DEFAULT_ENDPOINT: &str = "https://cloudkms.googleapis.com";

/// Domain-separation tag of the additional authenticated data this provider sends.
const GCP_AAD_TAG: &[u8] = b"mpc-vault/kms-providers/gcp-aad/v1";

/// How many times one wrap re-encrypts when the key's primary version turns out to differ from
/// the one predicted (a rotation between two calls). Two changes of the primary version during
/// one wrap are already implausible; a third means something is wrong.
const MAX_VERSION_CHASES: usize = 3;

/// The CRC32C (Castagnoli) checksum Cloud KMS uses for its integrity fields.
const CRC32C: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

/// CRC32C of `bytes` as the `int64` the API carries.
fn crc32c(bytes: &[u8]) -> i64 {
    i64::from(CRC32C.checksum(bytes))
}

/// Builds a [`GcpKmsProvider`]; see [`GcpKmsProvider::builder`].
///
/// # Example
///
/// ```no_run
/// # async fn f() -> Result<(), kms_providers::Error> {
/// use std::time::Duration;
/// use kms_providers::GcpKmsProvider;
///
/// let gcp = GcpKmsProvider::builder("gcp")
///     .key("projects/p/locations/europe-west1/keyRings/mpc-vault/cryptoKeys/share-gcp")
///     .attempt_timeout(Duration::from_secs(2))
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[must_use]
pub struct GcpKmsProviderBuilder {
    name: String,
    key: Option<String>,
    endpoint: Option<String>,
    credentials: Option<GcpCredentials>,
    attempt_timeout: Duration,
    max_attempts: u32,
    retry_time_limit: Duration,
    initial_backoff: Duration,
    max_backoff: Duration,
}

impl fmt::Debug for GcpKmsProviderBuilder {
    // Credentials are left out: `google-cloud-auth` redacts its own secrets, but a builder's
    // Debug output has no reason to show them at all.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcpKmsProviderBuilder")
            .field("name", &self.name)
            .field("key", &self.key)
            .field("endpoint", &self.endpoint)
            .field("explicit_credentials", &self.credentials.is_some())
            .field("attempt_timeout", &self.attempt_timeout)
            .field("max_attempts", &self.max_attempts)
            .field("retry_time_limit", &self.retry_time_limit)
            .field("initial_backoff", &self.initial_backoff)
            .field("max_backoff", &self.max_backoff)
            .finish()
    }
}

impl GcpKmsProviderBuilder {
    /// The CryptoKey resource name,
    /// `projects/PROJECT/locations/LOCATION/keyRings/RING/cryptoKeys/KEY` (required). Its purpose
    /// must be `ENCRYPT_DECRYPT` (algorithm `GOOGLE_SYMMETRIC_ENCRYPTION`).
    ///
    /// # Example
    ///
    /// ```
    /// let b = kms_providers::GcpKmsProvider::builder("gcp")
    ///     .key("projects/p/locations/global/keyRings/r/cryptoKeys/k");
    /// ```
    pub fn key(mut self, resource_name: impl Into<String>) -> Self {
        self.key = Some(resource_name.into());
        self
    }

    /// The service endpoint; default `https://cloudkms.googleapis.com`. Set it for a regional or
    /// private endpoint (`https://cloudkms.europe-west1.rep.googleapis.com`, Private Service
    /// Connect) or a local test server.
    ///
    /// # Example
    ///
    /// ```
    /// let b = kms_providers::GcpKmsProvider::builder("gcp")
    ///     .endpoint("https://cloudkms.europe-west1.rep.googleapis.com");
    /// ```
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// Explicit credentials. Without them, [`build`](Self::build) loads application default
    /// credentials (`GOOGLE_APPLICATION_CREDENTIALS`, the gcloud ADC file, or the metadata
    /// server / workload identity on Google Cloud).
    ///
    /// # Example
    ///
    /// ```
    /// let creds = google_cloud_auth::credentials::anonymous::Builder::new().build();
    /// let b = kms_providers::GcpKmsProvider::builder("gcp").credentials(creds);
    /// ```
    pub fn credentials(mut self, credentials: GcpCredentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Time limit of each HTTP attempt; default 5 s. An attempt that runs out fails with the
    /// transient [`Error::Timeout`] and is not retried by the client.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = kms_providers::GcpKmsProvider::builder("gcp").attempt_timeout(Duration::from_secs(2));
    /// ```
    pub fn attempt_timeout(mut self, limit: Duration) -> Self {
        self.attempt_timeout = limit;
        self
    }

    /// Attempts the client makes per call, including the first; default 3. `1` turns the
    /// client's retries off: do that when a [`LayerStack`](crate::LayerStack) retry layer wraps
    /// this provider, so that retries are not multiplied.
    ///
    /// The client retries only what Google's AIP-194 calls safe: `UNAVAILABLE`, HTTP 503,
    /// connection and I/O errors. Encrypt and decrypt are marked idempotent for this purpose:
    /// repeating either is harmless (a repeated encrypt only yields another valid ciphertext).
    ///
    /// # Example
    ///
    /// ```
    /// let b = kms_providers::GcpKmsProvider::builder("gcp").max_attempts(1);
    /// ```
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// Total time the client may spend retrying one call, backoff included; default 10 s.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = kms_providers::GcpKmsProvider::builder("gcp").retry_time_limit(Duration::from_secs(4));
    /// ```
    pub fn retry_time_limit(mut self, limit: Duration) -> Self {
        self.retry_time_limit = limit;
        self
    }

    /// Exponential backoff between the client's attempts (with jitter); default 100 ms doubling
    /// up to 2 s.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// let b = kms_providers::GcpKmsProvider::builder("gcp")
    ///     .backoff(Duration::from_millis(20), Duration::from_millis(200));
    /// ```
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max;
        self
    }

    /// Checks the configuration and builds the client. No RPC is made; call
    /// [`KeyProvider::health`] at start-up to prove the key is usable.
    ///
    /// Installs rustls' `ring` crypto provider as the process default if no default is
    /// installed yet (the SDK is built without its own default provider).
    ///
    /// # Errors
    ///
    /// [`Error::Misconfigured`] for a missing or malformed key name, bad timeouts or backoff,
    /// credentials that cannot be loaded, or a client that cannot be built.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let err = kms_providers::GcpKmsProvider::builder("gcp").key("not/a/key").build().await;
    /// assert!(matches!(err, Err(kms_providers::Error::Misconfigured { .. })));
    /// # }
    /// ```
    pub async fn build(self) -> Result<GcpKmsProvider, Error> {
        let name = self.name;
        let key = self.key.ok_or_else(|| {
            Error::misconfigured(&name, "no CryptoKey resource name: call .key(..)")
        })?;
        check_crypto_key_name(&key).map_err(|reason| Error::misconfigured(&name, reason))?;
        let key_id = KeyId::new(key.clone()).map_err(|e| Error::Misconfigured {
            provider: name.clone(),
            reason: "the CryptoKey resource name is not a valid key id".into(),
            source: Some(Box::new(e)),
        })?;
        if self.attempt_timeout.is_zero() {
            return Err(Error::misconfigured(
                &name,
                "the attempt timeout must be positive",
            ));
        }
        if self.max_attempts == 0 {
            return Err(Error::misconfigured(
                &name,
                "max_attempts must be at least 1",
            ));
        }
        let backoff = ExponentialBackoffBuilder::new()
            .with_initial_delay(self.initial_backoff)
            .with_maximum_delay(self.max_backoff)
            .build()
            .map_err(|e| Error::Misconfigured {
                provider: name.clone(),
                reason: "invalid backoff".into(),
                source: Some(Box::new(e)),
            })?;

        install_crypto_provider();
        let credentials = match self.credentials {
            Some(c) => c,
            None => google_cloud_auth::credentials::Builder::default()
                .build()
                .map_err(|e| Error::Misconfigured {
                    provider: name.clone(),
                    reason: "cannot load application default credentials".into(),
                    source: Some(Box::new(e)),
                })?,
        };
        let client = KeyManagementService::builder()
            .with_endpoint(self.endpoint.unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned()))
            .with_credentials(credentials)
            .with_retry_policy(
                Aip194Strict
                    .with_attempt_limit(self.max_attempts)
                    .with_time_limit(self.retry_time_limit),
            )
            .with_backoff_policy(backoff)
            .with_attempt_timeout(self.attempt_timeout)
            .build()
            .await
            .map_err(|e| Error::Misconfigured {
                provider: name.clone(),
                reason: "cannot build the Cloud KMS client".into(),
                source: Some(Box::new(e)),
            })?;
        Ok(GcpKmsProvider {
            inner: Arc::new(Inner {
                name,
                key_id,
                client,
                attempt_timeout: self.attempt_timeout,
                predicted_version: AtomicU64::new(0),
                highest_version_seen: AtomicU64::new(0),
            }),
        })
    }
}

/// The SDK's HTTPS client needs a process-wide rustls crypto provider; we build the SDK without
/// its aws-lc default, so install `ring` unless the application already chose one.
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Another thread may install a provider between the check and this call; then that one
        // is the process default, which is all we need, so the error carries no information.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Checks `projects/*/locations/*/keyRings/*/cryptoKeys/*`: non-empty segments of printable
/// ASCII without `/`, `:` or spaces (a `:` would change the REST path's method suffix).
fn check_crypto_key_name(name: &str) -> Result<(), String> {
    let parts: Vec<&str> = name.split('/').collect();
    let expected = ["projects", "locations", "keyRings", "cryptoKeys"];
    let shape_ok = parts.len() == 8
        && parts
            .chunks(2)
            .zip(expected)
            .all(|(pair, want)| pair.first() == Some(&want))
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_graphic() && b != b':' && b != b'/')
        });
    if shape_ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a CryptoKey resource name \
             (projects/PROJECT/locations/LOCATION/keyRings/RING/cryptoKeys/KEY)"
        ))
    }
}

/// Parses a CryptoKeyVersion id: a decimal number from 1, without sign or leading zeros.
fn parse_version(s: &str) -> Option<u64> {
    if s.is_empty() || s.starts_with('0') || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A Google Cloud KMS CryptoKey as a key provider.
///
/// * **Key id** is the CryptoKey resource name; **key version** is the CryptoKeyVersion id the
///   encrypt response names, so shares wrapped before a rotation stay identifiable. Keys rotate
///   on the Google side (automatic rotation or a new primary version); decrypt picks the right
///   version from the ciphertext, so old shares keep unwrapping while their version is enabled.
/// * **Binding.** The additional authenticated data is a domain tag, the provider kind and
///   algorithm, the key id and key version, then [`WrapContext::canonical_bytes`]: a share
///   unwraps only under its own context, and a relabelled version fails authentication. Since the
///   version is only known from the response, the provider predicts it (the last primary
///   version seen) and encrypts again in the rare case the prediction was wrong (the first wrap
///   of a process, or after a rotation).
/// * **Integrity.** `plaintextCrc32c` and `additionalAuthenticatedDataCrc32c` go out with every
///   encrypt; the response must confirm both (`verified…Crc32c`), carry a `ciphertextCrc32c`
///   matching the ciphertext and a `name` under the configured key. Decrypt sends
///   `ciphertextCrc32c` and the AAD checksum and checks the returned `plaintextCrc32c`. A
///   mismatch is the transient [`Error::Unavailable`] with a [`GcpIntegrityError`] source
///   (corrupted in transit: retry).
///
/// Errors: `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `INTERNAL`, `UNKNOWN`, `ABORTED`, HTTP 5xx and
/// connection failures are transient ([`Error::Unavailable`], [`Error::Timeout`]);
/// `RESOURCE_EXHAUSTED` / HTTP 429 is [`Error::Throttled`]; `INVALID_ARGUMENT` on decrypt is
/// [`Error::AuthenticationFailed`]; `NOT_FOUND` is [`Error::UnknownKey`]; `PERMISSION_DENIED`,
/// `UNAUTHENTICATED` and `FAILED_PRECONDITION` (a disabled or destroyed version) are
/// [`Error::PermissionDenied`] with the reason.
///
/// # Example
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use kms_providers::{GcpKmsProvider, KeyProvider, WrapContext};
///
/// let gcp = GcpKmsProvider::builder("gcp")
///     .key("projects/p/locations/europe-west1/keyRings/mpc-vault/cryptoKeys/share-gcp")
///     .build()
///     .await?;
/// let ctx = WrapContext::new("vault-1", "db/password", 1, 1, "shamir-2-of-3")?;
/// let wrapped = gcp.wrap(&[0x42; 32], &ctx).await?;
/// assert_eq!(gcp.unwrap(&wrapped, &ctx).await?.expose_secret(), &[0x42; 32]);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct GcpKmsProvider {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    key_id: KeyId,
    client: KeyManagementService,
    attempt_timeout: Duration,
    /// The primary version the next wrap binds into its AAD; 0 before the first response.
    predicted_version: AtomicU64,
    /// The highest version any encrypt response named in this process; 0 before the first.
    highest_version_seen: AtomicU64,
}

impl fmt::Debug for GcpKmsProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcpKmsProvider")
            .field("name", &self.inner.name)
            .field("key_id", &self.inner.key_id)
            .field("attempt_timeout", &self.inner.attempt_timeout)
            .field(
                "predicted_version",
                &self.inner.predicted_version.load(Ordering::Relaxed),
            )
            .finish_non_exhaustive()
    }
}

impl GcpKmsProvider {
    /// Starts configuring a provider instance called `name` (the name errors and logs use).
    ///
    /// # Example
    ///
    /// ```
    /// let b = kms_providers::GcpKmsProvider::builder("gcp");
    /// ```
    pub fn builder(name: impl Into<String>) -> GcpKmsProviderBuilder {
        GcpKmsProviderBuilder {
            name: name.into(),
            key: None,
            endpoint: None,
            credentials: None,
            attempt_timeout: Duration::from_secs(5),
            max_attempts: 3,
            retry_time_limit: Duration::from_secs(10),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
        }
    }

    /// The CryptoKey resource name this provider wraps under.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), kms_providers::Error> {
    /// let gcp = kms_providers::GcpKmsProvider::builder("gcp")
    ///     .key("projects/p/locations/global/keyRings/r/cryptoKeys/k")
    ///     .build()
    ///     .await?;
    /// assert_eq!(gcp.key_id().as_str(), "projects/p/locations/global/keyRings/r/cryptoKeys/k");
    /// # Ok(()) }
    /// ```
    pub fn key_id(&self) -> &KeyId {
        &self.inner.key_id
    }

    /// Encrypts under the key's primary version with the AAD bound to `predicted` and checks the
    /// response; returns the version the server used and the ciphertext.
    async fn encrypt_once(
        &self,
        share: &[u8],
        context: &WrapContext,
        predicted: &KeyVersion,
    ) -> Result<(u64, Vec<u8>), Error> {
        let inner = &*self.inner;
        let aad = associated_data(&inner.key_id, predicted, context);
        let aad_crc = crc32c(&aad);
        let response = inner
            .client
            .encrypt()
            .set_name(inner.key_id.as_str())
            // The SDK needs an owned buffer it serializes into JSON; that copy and the JSON
            // body are outside our reach (see the README's security notes).
            .set_plaintext(share.to_vec())
            .set_plaintext_crc32c(crc32c(share))
            .set_additional_authenticated_data(aad)
            .set_additional_authenticated_data_crc32c(aad_crc)
            .with_idempotency(true)
            .send()
            .await
            .map_err(|e| {
                map_sdk_error(
                    &inner.name,
                    inner.key_id.as_str(),
                    Call::Encrypt,
                    e,
                    inner.attempt_timeout,
                    None,
                )
            })?;

        if !response.verified_plaintext_crc32c {
            return Err(GcpIntegrityError::PlaintextNotVerified.into_error(&inner.name));
        }
        if !response.verified_additional_authenticated_data_crc32c {
            return Err(GcpIntegrityError::AadNotVerified.into_error(&inner.name));
        }
        if response.ciphertext_crc32c != Some(crc32c(&response.ciphertext)) {
            return Err(GcpIntegrityError::CiphertextChecksum.into_error(&inner.name));
        }
        let version = response
            .name
            .strip_prefix(inner.key_id.as_str())
            .and_then(|rest| rest.strip_prefix("/cryptoKeyVersions/"))
            .and_then(parse_version)
            .ok_or_else(|| {
                Error::internal(
                    &inner.name,
                    format!(
                        "the encrypt response names {:?}, not a version of {:?}",
                        response.name,
                        inner.key_id.as_str()
                    ),
                    None,
                )
            })?;
        Ok((version, response.ciphertext.to_vec()))
    }
}

/// The additional authenticated data of a wrap: domain tag, kind, algorithm, key id, key
/// version (all length-prefixed where variable), then the canonical context. Binding the key
/// version makes a relabelled share fail authentication at Google.
fn associated_data(key_id: &KeyId, key_version: &KeyVersion, context: &WrapContext) -> Vec<u8> {
    let ctx = context.canonical_bytes();
    let mut aad = Vec::with_capacity(
        4 + GCP_AAD_TAG.len()
            + 2
            + 4
            + key_id.as_str().len()
            + 4
            + key_version.as_str().len()
            + ctx.len(),
    );
    put_lv(&mut aad, GCP_AAD_TAG);
    aad.push(ProviderKind::GcpKms.code());
    aad.push(Algorithm::GcpSymmetricEncryption.code());
    put_lv(&mut aad, key_id.as_str().as_bytes());
    put_lv(&mut aad, key_version.as_str().as_bytes());
    aad.extend_from_slice(&ctx);
    aad
}

/// A version id as the wrapped form records it (decimal, the last segment of the
/// CryptoKeyVersion resource name).
fn version_label(name: &str, v: u64) -> Result<KeyVersion, Error> {
    KeyVersion::new(v.to_string())
        .map_err(|e| Error::internal(name, "key version label", Some(Box::new(e))))
}

#[async_trait]
impl KeyProvider for GcpKmsProvider {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn kind(&self) -> ProviderKind {
        ProviderKind::GcpKms
    }

    async fn wrap(&self, share: &[u8], context: &WrapContext) -> Result<WrappedShare, Error> {
        let inner = &*self.inner;
        check_share_len(&inner.name, share)?;
        // Before any response we guess version 1, the first version of every key; a wrong guess
        // costs one more round trip, once.
        let mut predicted = inner.predicted_version.load(Ordering::Relaxed).max(1);
        for _ in 0..MAX_VERSION_CHASES {
            let label = version_label(&inner.name, predicted)?;
            let (used, ciphertext) = self.encrypt_once(share, context, &label).await?;
            inner
                .highest_version_seen
                .fetch_max(used, Ordering::Relaxed);
            inner.predicted_version.store(used, Ordering::Relaxed);
            if used == predicted {
                return WrappedShare::new(
                    ProviderKind::GcpKms,
                    inner.key_id.clone(),
                    label,
                    Algorithm::GcpSymmetricEncryption,
                    Vec::new(),
                    ciphertext,
                )
                .map_err(|e| {
                    Error::internal(
                        &inner.name,
                        "Cloud KMS returned a ciphertext that does not fit the wrapped format",
                        Some(Box::new(e)),
                    )
                });
            }
            // The primary version changed: this ciphertext's AAD names the wrong version and is
            // dropped; encrypt again bound to the version the server actually uses.
            predicted = used;
        }
        Err(Error::Unavailable {
            provider: inner.name.clone(),
            reason: "the key's primary version kept changing during the wrap".into(),
            source: None,
        })
    }

    async fn unwrap(
        &self,
        wrapped: &WrappedShare,
        context: &WrapContext,
    ) -> Result<UnwrappedShare, Error> {
        let inner = &*self.inner;
        if wrapped.kind() != ProviderKind::GcpKms {
            return Err(Error::WrongProviderKind {
                provider: inner.name.clone(),
                expected: ProviderKind::GcpKms,
                found: wrapped.kind(),
            });
        }
        if wrapped.algorithm() != Algorithm::GcpSymmetricEncryption {
            return Err(Error::invalid_input(
                &inner.name,
                format!("algorithm {} is not used by Cloud KMS", wrapped.algorithm()),
            ));
        }
        if wrapped.key_id() != &inner.key_id {
            return Err(Error::unknown_key(
                &inner.name,
                wrapped.key_id().as_str(),
                None,
            ));
        }
        let Some(version) = parse_version(wrapped.key_version().as_str()) else {
            return Err(Error::unknown_key(
                &inner.name,
                wrapped.key_id().as_str(),
                Some(wrapped.key_version().as_str()),
            ));
        };
        let aad = associated_data(&inner.key_id, wrapped.key_version(), context);
        let aad_crc = crc32c(&aad);
        let ciphertext = wrapped.blob();
        let response = inner
            .client
            .decrypt()
            .set_name(inner.key_id.as_str())
            .set_ciphertext(ciphertext.to_vec())
            .set_ciphertext_crc32c(crc32c(ciphertext))
            .set_additional_authenticated_data(aad)
            .set_additional_authenticated_data_crc32c(aad_crc)
            .with_idempotency(true)
            .send()
            .await
            .map_err(|e| {
                let unknown_version = {
                    // Decrypt cannot tell a version that does not exist from a failed
                    // authentication; a version above every primary version this process has
                    // seen is reported as unknown (both errors are permanent).
                    let highest = inner.highest_version_seen.load(Ordering::Relaxed);
                    (highest != 0 && version > highest).then(|| wrapped.key_version().as_str())
                };
                map_sdk_error(
                    &inner.name,
                    inner.key_id.as_str(),
                    Call::Decrypt,
                    e,
                    inner.attempt_timeout,
                    unknown_version,
                )
            })?;
        // Take the plaintext buffer over (no copy when the SDK holds the only reference) so that
        // it is zeroized when dropped.
        let plaintext = Zeroizing::new(Vec::<u8>::from(response.plaintext));
        if response.plaintext_crc32c != Some(crc32c(&plaintext)) {
            return Err(GcpIntegrityError::PlaintextChecksum.into_error(&inner.name));
        }
        if plaintext.is_empty() || plaintext.len() > MAX_SHARE_LEN {
            return Err(Error::internal(
                &inner.name,
                format!(
                    "Cloud KMS returned a {}-byte plaintext; shares are 1 to {MAX_SHARE_LEN} bytes",
                    plaintext.len()
                ),
                None,
            ));
        }
        Ok(UnwrappedShare::new(plaintext))
    }

    async fn health(&self) -> Result<Health, Error> {
        const PROBE: [u8; 32] = [0x5a; 32];
        let ctx = health_probe_context();
        let wrapped = self.wrap(&PROBE, &ctx).await?;
        let back = self.unwrap(&wrapped, &ctx).await?;
        if !bool::from(back.expose_secret().ct_eq(&PROBE)) {
            return Err(Error::internal(
                &self.inner.name,
                "the health probe unwrapped to other bytes",
                None,
            ));
        }
        Ok(Health::new(
            self.inner.name.clone(),
            ProviderKind::GcpKms,
            self.inner.key_id.clone(),
            wrapped.key_version().clone(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_castagnoli_check_value() {
        // The standard check value of CRC-32C over "123456789".
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn key_names() {
        assert!(check_crypto_key_name("projects/p/locations/l/keyRings/r/cryptoKeys/k").is_ok());
        for bad in [
            "",
            "projects/p/locations/l/keyRings/r/cryptoKeys",
            "projects/p/locations/l/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1",
            "projects/p/locations/l/keyRings/r/cryptoKeys/",
            "projects//locations/l/keyRings/r/cryptoKeys/k",
            "project/p/locations/l/keyRings/r/cryptoKeys/k",
            "projects/p/locations/l/keyRings/r/cryptoKeys/k:encrypt",
            "projects/p/locations/l/keyRings/r/cryptoKeys/k k",
        ] {
            assert!(check_crypto_key_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version("1"), Some(1));
        assert_eq!(parse_version("4000000000"), Some(4_000_000_000));
        for bad in [
            "",
            "0",
            "01",
            "-1",
            "+1",
            "1a",
            "not-a-version",
            "99999999999999999999999",
        ] {
            assert_eq!(parse_version(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn aad_binds_version_and_context() {
        let id = KeyId::new("projects/p/locations/l/keyRings/r/cryptoKeys/k").unwrap();
        let c1 = WrapContext::new("v", "p", 1, 1, "m").unwrap();
        let c2 = WrapContext::new("v", "p", 2, 1, "m").unwrap();
        let a = associated_data(&id, &KeyVersion::from_number(1), &c1);
        assert_ne!(a, associated_data(&id, &KeyVersion::from_number(2), &c1));
        assert_ne!(a, associated_data(&id, &KeyVersion::from_number(1), &c2));
        assert!(a.ends_with(&c1.canonical_bytes()));
    }
}
