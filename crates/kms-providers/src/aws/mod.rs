//! AWS KMS through the official SDK: `Encrypt`/`Decrypt` with a symmetric key, the wrap context
//! bound as the encryption context.

mod context;
mod errors;

use core::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_kms::Client;
use aws_sdk_kms::config::SharedHttpClient;
use aws_sdk_kms::config::retry::RetryConfig;
use aws_sdk_kms::config::timeout::TimeoutConfig;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{EncryptionAlgorithmSpec, KeySpec, KeyUsageType};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use subtle::ConstantTimeEq;
use tokio::sync::OnceCell;
use zeroize::Zeroizing;

use self::errors::{CallInfo, Op, map_sdk_error};
use crate::context::WrapContext;
use crate::error::{Error, check_share_len};
use crate::provider::{Health, KeyProvider, health_probe_context};
use crate::secret::UnwrappedShare;
use crate::wrapped::{Algorithm, KeyId, KeyVersion, MAX_SHARE_LEN, ProviderKind, WrappedShare};

/// The key version recorded in every share this provider wraps. AWS KMS does not expose the
/// backing-key versions of a KMS key: the ciphertext names the one it used and KMS keeps every
/// backing key for the key's lifetime, so automatic rotation needs nothing from us and the
/// version field only says that KMS manages versions.
const KMS_MANAGED_VERSION: &str = "kms-managed";

/// Default number of attempts the SDK makes per call (the first try and two retries).
const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Default first retry backoff of the SDK; later ones grow exponentially with jitter.
const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// Longest backoff between two SDK attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Default TCP (and TLS) connect timeout.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Default limit for one attempt, from sending the request to the end of the response.
const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
/// Default limit for one call, all attempts and backoffs included.
const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTPS client the provider gives an SDK client that has none: hyper with rustls on the
/// `ring` provider and the platform's root certificates.
///
/// The `aws` feature builds the SDK without its default HTTPS client (which would bring
/// aws-lc-rs); pass this one to `aws-config` (`ConfigLoader::http_client`) when you load the
/// standard credential chain, so credential providers that call AWS (SSO, web identity, the
/// instance metadata service) have one too.
///
/// # Example
///
/// ```
/// let http = kms_providers::aws_https_client();
/// let conf = aws_sdk_kms::Config::builder().http_client(http).build();
/// assert!(conf.http_client().is_some());
/// ```
pub fn aws_https_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// A KMS key id as written in configuration: a key ARN (`arn:aws:kms:…:key/…`) needs no lookup;
/// a key id, an alias name or an alias ARN is resolved to the key ARN with `DescribeKey`.
fn is_key_arn(id: &str) -> bool {
    id.starts_with("arn:")
        && id
            .split(':')
            .nth(5)
            .is_some_and(|resource| resource.starts_with("key/") && resource.len() > 4)
        && id.split(':').nth(2) == Some("kms")
}

/// AWS KMS as a [`KeyProvider`]: each share is encrypted by KMS under one symmetric KMS key
/// (`SYMMETRIC_DEFAULT`), with the wrap context as the encryption context.
///
/// Build it with [`AwsKmsProvider::builder`] from an [`aws_sdk_kms::Client`] you configured
/// (region, credentials, endpoint). The provider sets the SDK's retry and timeout configuration
/// itself, explicitly, and gives the client an HTTPS client (rustls with `ring`) if it has none.
///
/// * **Binding.** The encryption context holds the vault id, secret path, version, share index,
///   custody mode and the SHA-256 of the canonical context (keys `mpc-vault:vault`,
///   `mpc-vault:path`, `mpc-vault:version`, `mpc-vault:share`, `mpc-vault:mode`,
///   `mpc-vault:context-sha256`). KMS authenticates it, so any other context fails to decrypt.
/// * **Keys.** New shares record the key ARN KMS reports; `Decrypt` always names the key
///   explicitly, and the provider checks that KMS decrypted with that key, so a blob made under
///   another key never unwraps, even when the caller may use that key. Shares naming any key
///   other than the configured one (and the keys added with
///   [`previous_key`](AwsKmsProviderBuilder::previous_key)) are refused before calling KMS.
/// * **Versions.** KMS hides backing-key versions; the version field is `kms-managed`.
///
/// # Example
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use kms_providers::{AwsKmsProvider, KeyProvider};
///
/// // Region and credentials from the standard chain (aws-config), or built explicitly.
/// let conf = aws_sdk_kms::Config::builder()
///     .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
///     .region(aws_sdk_kms::config::Region::new("eu-west-1"))
///     # .credentials_provider(aws_sdk_kms::config::Credentials::new("id", "secret", None, None, "doc"))
///     .build();
/// let aws = AwsKmsProvider::builder("aws")
///     .key_id("alias/mpc-vault-share")
///     .client(aws_sdk_kms::Client::from_conf(conf))
///     .build()?;
/// aws.health().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AwsKmsProvider {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    /// The key as configured (ARN, id, alias name or alias ARN).
    configured: String,
    /// The key ARN the configured key resolves to; looked up once, on first use.
    resolved: OnceCell<KeyId>,
    /// Key ARNs whose shares still unwrap but are never used to wrap.
    previous: Vec<KeyId>,
    /// [`KMS_MANAGED_VERSION`], the one version this provider writes and accepts.
    version: KeyVersion,
    client: Client,
    connect_timeout: Duration,
    operation_timeout: Duration,
    max_attempts: u32,
}

impl fmt::Debug for AwsKmsProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The SDK client is left out: it is large, and nothing in it helps to tell providers
        // apart. Nothing here is secret.
        f.debug_struct("AwsKmsProvider")
            .field("name", &self.inner.name)
            .field("key_id", &self.inner.configured)
            .field("key_arn", &self.inner.resolved.get().map(KeyId::as_str))
            .field("previous_keys", &self.inner.previous)
            .field("max_attempts", &self.inner.max_attempts)
            .field("operation_timeout", &self.inner.operation_timeout)
            .finish_non_exhaustive()
    }
}

impl AwsKmsProvider {
    /// Starts building a provider instance named `name` (the name errors and logs use).
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::AwsKmsProvider;
    /// let err = AwsKmsProvider::builder("aws").build().unwrap_err();
    /// assert!(err.to_string().contains("key_id"));
    /// ```
    pub fn builder(name: impl Into<String>) -> AwsKmsProviderBuilder {
        AwsKmsProviderBuilder {
            name: name.into(),
            key_id: None,
            client: None,
            previous: Vec::new(),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
            operation_timeout: DEFAULT_OPERATION_TIMEOUT,
        }
    }

    fn call<'a>(&'a self, op: Op, key_id: &'a str) -> CallInfo<'a> {
        CallInfo {
            provider: &self.inner.name,
            op,
            key_id,
            connect_timeout: self.inner.connect_timeout,
            operation_timeout: self.inner.operation_timeout,
        }
    }

    /// The ARN of the configured key: the configuration itself for a key ARN, otherwise the
    /// answer of `DescribeKey`, checked to be a symmetric encryption key. Looked up once; a
    /// failed lookup is not cached, so a transient failure is retried by the next call.
    async fn key_arn(&self) -> Result<&KeyId, Error> {
        self.inner
            .resolved
            .get_or_try_init(|| async {
                let name = &self.inner.name;
                let configured = &self.inner.configured;
                if is_key_arn(configured) {
                    return KeyId::new(configured.clone()).map_err(|e| {
                        Error::misconfigured(name, format!("key_id {configured:?}: {e}"))
                    });
                }
                let out = self
                    .inner
                    .client
                    .describe_key()
                    .key_id(configured)
                    .send()
                    .await
                    .map_err(|e| map_sdk_error(self.call(Op::DescribeKey, configured), e))?;
                let meta = out.key_metadata().ok_or_else(|| {
                    Error::internal(name, "DescribeKey returned no key metadata", None)
                })?;
                // Refuse what is known to be wrong; a field KMS-compatible servers leave out
                // (moto omits KeyUsage) is left to Encrypt, which KMS refuses on such keys.
                if meta
                    .key_usage()
                    .is_some_and(|u| *u != KeyUsageType::EncryptDecrypt)
                    || meta
                        .key_spec()
                        .is_some_and(|s| *s != KeySpec::SymmetricDefault)
                {
                    return Err(Error::misconfigured(
                        name,
                        format!(
                            "the KMS key {configured} is not a symmetric encryption key; use a \
                             key with KeySpec SYMMETRIC_DEFAULT and KeyUsage ENCRYPT_DECRYPT"
                        ),
                    ));
                }
                let arn = meta.arn().ok_or_else(|| {
                    Error::internal(name, "DescribeKey returned no key ARN", None)
                })?;
                KeyId::new(arn).map_err(|e| {
                    Error::internal(name, format!("DescribeKey returned a bad ARN: {e}"), None)
                })
            })
            .await
    }

    async fn encrypt(&self, share: &[u8], context: &WrapContext) -> Result<WrappedShare, Error> {
        let name = &self.inner.name;
        check_share_len(name, share)?;
        let arn = self.key_arn().await?;
        // The SDK takes the plaintext by value and serializes it into the request body; those
        // buffers belong to the SDK and are not zeroized (see the README's security notes).
        let out = self
            .inner
            .client
            .encrypt()
            .key_id(arn.as_str())
            .plaintext(Blob::new(share.to_vec()))
            .set_encryption_context(Some(context::encryption_context(context)))
            .encryption_algorithm(EncryptionAlgorithmSpec::SymmetricDefault)
            .send()
            .await
            .map_err(|e| map_sdk_error(self.call(Op::Encrypt, arn.as_str()), e))?;
        // KMS reports the ARN of the key it used; anything else means we would record a key
        // that cannot decrypt the blob.
        if out.key_id() != Some(arn.as_str()) {
            return Err(Error::internal(
                name,
                format!(
                    "KMS Encrypt reported key {:?}, not the requested {arn}",
                    out.key_id()
                ),
                None,
            ));
        }
        let blob = out
            .ciphertext_blob
            .map(Blob::into_inner)
            .ok_or_else(|| Error::internal(name, "KMS Encrypt returned no ciphertext", None))?;
        WrappedShare::new(
            ProviderKind::AwsKms,
            arn.clone(),
            self.inner.version.clone(),
            Algorithm::AwsSymmetricDefault,
            Vec::new(),
            blob,
        )
        .map_err(|e| {
            Error::internal(
                name,
                format!("KMS Encrypt returned an unusable ciphertext: {e}"),
                Some(Box::new(e)),
            )
        })
    }
}

#[async_trait]
impl KeyProvider for AwsKmsProvider {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn kind(&self) -> ProviderKind {
        ProviderKind::AwsKms
    }

    async fn wrap(&self, share: &[u8], context: &WrapContext) -> Result<WrappedShare, Error> {
        self.encrypt(share, context).await
    }

    async fn unwrap(
        &self,
        wrapped: &WrappedShare,
        context: &WrapContext,
    ) -> Result<UnwrappedShare, Error> {
        let name = &self.inner.name;
        if wrapped.kind() != ProviderKind::AwsKms {
            return Err(Error::WrongProviderKind {
                provider: name.clone(),
                expected: ProviderKind::AwsKms,
                found: wrapped.kind(),
            });
        }
        if wrapped.algorithm() != Algorithm::AwsSymmetricDefault {
            return Err(Error::invalid_input(
                name,
                format!(
                    "the share uses {}; this provider only uses {}",
                    wrapped.algorithm(),
                    Algorithm::AwsSymmetricDefault
                ),
            ));
        }
        let key = wrapped.key_id();
        let ours = self.key_arn().await?;
        if key != ours && !self.inner.previous.contains(key) {
            return Err(Error::unknown_key(name, key.as_str(), None));
        }
        if wrapped.key_version() != &self.inner.version {
            return Err(Error::unknown_key(
                name,
                key.as_str(),
                Some(wrapped.key_version().as_str()),
            ));
        }
        let out = self
            .inner
            .client
            .decrypt()
            .ciphertext_blob(Blob::new(wrapped.blob().to_vec()))
            .key_id(key.as_str())
            .set_encryption_context(Some(context::encryption_context(context)))
            .encryption_algorithm(EncryptionAlgorithmSpec::SymmetricDefault)
            .send()
            .await
            .map_err(|e| map_sdk_error(self.call(Op::Decrypt, key.as_str()), e))?;
        let used = out.key_id.clone();
        // Take the plaintext out first so it is wiped on every path below.
        let plaintext = Zeroizing::new(
            out.plaintext
                .map(Blob::into_inner)
                .ok_or_else(|| Error::internal(name, "KMS Decrypt returned no plaintext", None))?,
        );
        // KMS must have decrypted with the key we named. Real KMS refuses a blob of another key
        // (IncorrectKeyException); checking the answer as well keeps that guarantee with any
        // KMS-compatible server.
        if used.as_deref() != Some(key.as_str()) {
            return Err(Error::auth_failed(name, None));
        }
        if plaintext.is_empty() || plaintext.len() > MAX_SHARE_LEN {
            return Err(Error::internal(
                name,
                format!(
                    "KMS Decrypt returned {} bytes; shares are 1 to {MAX_SHARE_LEN}",
                    plaintext.len()
                ),
                None,
            ));
        }
        Ok(UnwrappedShare::new(plaintext))
    }

    async fn health(&self) -> Result<Health, Error> {
        let name = &self.inner.name;
        let ctx = health_probe_context();
        let probe = [0x5a_u8; 32];
        let wrapped = self.encrypt(&probe, &ctx).await?;
        let back = self.unwrap(&wrapped, &ctx).await?;
        if !bool::from(back.expose_secret().ct_eq(&probe)) {
            return Err(Error::internal(
                name,
                "health probe unwrapped to different bytes",
                None,
            ));
        }
        Ok(Health::new(
            name.clone(),
            ProviderKind::AwsKms,
            wrapped.key_id().clone(),
            wrapped.key_version().clone(),
        ))
    }
}

/// Configures an [`AwsKmsProvider`]; see [`AwsKmsProvider::builder`].
///
/// Required: [`key_id`](Self::key_id) and [`client`](Self::client). Everything else has a
/// default: 3 attempts per call with exponential backoff from 100 ms, 3 s connect timeout, 3 s
/// per attempt, 10 s per call.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use kms_providers::AwsKmsProvider;
///
/// let conf = aws_sdk_kms::Config::builder()
///     .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
///     .region(aws_sdk_kms::config::Region::new("eu-west-1"))
///     .build();
/// let aws = AwsKmsProvider::builder("aws")
///     .key_id("arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab")
///     .client(aws_sdk_kms::Client::from_conf(conf))
///     .max_attempts(3)
///     .operation_timeout(Duration::from_secs(5))
///     .build()?;
/// # Ok::<(), kms_providers::Error>(())
/// ```
#[must_use]
pub struct AwsKmsProviderBuilder {
    name: String,
    key_id: Option<String>,
    client: Option<Client>,
    previous: Vec<String>,
    max_attempts: u32,
    initial_backoff: Duration,
    connect_timeout: Duration,
    attempt_timeout: Duration,
    operation_timeout: Duration,
}

impl fmt::Debug for AwsKmsProviderBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsKmsProviderBuilder")
            .field("name", &self.name)
            .field("key_id", &self.key_id)
            .field(
                "client",
                &self.client.as_ref().map(|_| "aws_sdk_kms::Client"),
            )
            .field("previous", &self.previous)
            .field("max_attempts", &self.max_attempts)
            .field("initial_backoff", &self.initial_backoff)
            .field("connect_timeout", &self.connect_timeout)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .finish()
    }
}

impl AwsKmsProviderBuilder {
    /// The KMS key that wraps: a key ARN (recommended: no lookup, no ambiguity), a key id, an
    /// alias name (`alias/…`) or an alias ARN. Anything but a key ARN is resolved once, on first
    /// use, with `DescribeKey` (which then needs `kms:DescribeKey`); from then on the provider
    /// wraps with that key ARN, so retargeting an alias takes effect at the next start.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::AwsKmsProvider;
    /// let b = AwsKmsProvider::builder("aws").key_id("alias/mpc-vault");
    /// ```
    pub fn key_id(mut self, key_id: impl Into<String>) -> Self {
        self.key_id = Some(key_id.into());
        self
    }

    /// The SDK client: region, credentials and endpoint come from its configuration. The
    /// provider keeps everything but the retry and timeout configuration, which it sets from
    /// this builder, and adds [`aws_https_client`] if the client has no HTTP client.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::AwsKmsProvider;
    /// let conf = aws_sdk_kms::Config::builder()
    ///     .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
    ///     .region(aws_sdk_kms::config::Region::new("us-east-1"))
    ///     .endpoint_url("http://127.0.0.1:4566") // a local emulator
    ///     .build();
    /// let b = AwsKmsProvider::builder("aws").client(aws_sdk_kms::Client::from_conf(conf));
    /// ```
    pub fn client(mut self, client: Client) -> Self {
        self.client = Some(client);
        self
    }

    /// A key ARN whose shares this provider still unwraps but never wraps with: the previous
    /// target of a retargeted alias, or the key of a migration. May be repeated.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::AwsKmsProvider;
    /// let b = AwsKmsProvider::builder("aws")
    ///     .key_id("alias/mpc-vault")
    ///     .previous_key("arn:aws:kms:eu-west-1:111122223333:key/0000abcd-12ab-34cd-56ef-1234567890ab");
    /// ```
    pub fn previous_key(mut self, key_arn: impl Into<String>) -> Self {
        self.previous.push(key_arn.into());
        self
    }

    /// How many attempts the SDK makes per call, the first included (default 3; at least 1).
    /// The SDK retries throttling, 5xx answers, time-outs and connection failures, with
    /// exponential backoff and full jitter, within its retry quota.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::AwsKmsProvider;
    /// let b = AwsKmsProvider::builder("aws").max_attempts(5);
    /// ```
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// The SDK's first retry backoff (default 100 ms); later ones double, up to 2 s.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kms_providers::AwsKmsProvider;
    /// let b = AwsKmsProvider::builder("aws").initial_backoff(Duration::from_millis(50));
    /// ```
    pub fn initial_backoff(mut self, backoff: Duration) -> Self {
        self.initial_backoff = backoff;
        self
    }

    /// Connect timeout, TLS handshake included (default 3 s).
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kms_providers::AwsKmsProvider;
    /// let b = AwsKmsProvider::builder("aws").connect_timeout(Duration::from_secs(1));
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Limit for one attempt (default 3 s).
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kms_providers::AwsKmsProvider;
    /// let b = AwsKmsProvider::builder("aws").attempt_timeout(Duration::from_secs(1));
    /// ```
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// Limit for one call, every attempt and backoff included (default 10 s): the longest a
    /// wrap or unwrap can take before it fails with [`Error::Timeout`].
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kms_providers::AwsKmsProvider;
    /// let b = AwsKmsProvider::builder("aws").operation_timeout(Duration::from_secs(4));
    /// ```
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// Checks the configuration and builds the provider. Makes no network call: the key is
    /// resolved on first use, and [`KeyProvider::health`] proves it works.
    ///
    /// # Errors
    ///
    /// [`Error::Misconfigured`] for a missing key id or client, a client without a region, a
    /// key id or previous key that is not valid, zero attempts or a zero or inconsistent
    /// timeout.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::AwsKmsProvider;
    /// let conf = aws_sdk_kms::Config::builder()
    ///     .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
    ///     .build(); // no region
    /// let err = AwsKmsProvider::builder("aws")
    ///     .key_id("alias/mpc-vault")
    ///     .client(aws_sdk_kms::Client::from_conf(conf))
    ///     .build()
    ///     .unwrap_err();
    /// assert!(err.to_string().contains("region"));
    /// ```
    pub fn build(self) -> Result<AwsKmsProvider, Error> {
        let name = self.name;
        let bad = |reason: String| Error::misconfigured(&name, reason);
        if name.is_empty() {
            return Err(bad("the provider name is empty".into()));
        }
        let configured = self
            .key_id
            .ok_or_else(|| bad("no key_id: set the KMS key ARN, key id or alias".into()))?;
        KeyId::new(configured.clone()).map_err(|e| bad(format!("key_id {configured:?}: {e}")))?;
        let mut previous = Vec::with_capacity(self.previous.len());
        for arn in self.previous {
            if !is_key_arn(&arn) {
                return Err(bad(format!(
                    "previous key {arn:?} is not a key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)"
                )));
            }
            previous.push(
                KeyId::new(arn.clone()).map_err(|e| bad(format!("previous key {arn:?}: {e}")))?,
            );
        }
        let client = self
            .client
            .ok_or_else(|| bad("no client: pass an aws_sdk_kms::Client".into()))?;
        if client.config().region().is_none() {
            return Err(bad(
                "the AWS SDK client has no region; set one in its configuration (or AWS_REGION \
                 with the standard chain)"
                    .into(),
            ));
        }
        if self.max_attempts == 0 {
            return Err(bad("max_attempts must be at least 1".into()));
        }
        for (what, d) in [
            ("connect_timeout", self.connect_timeout),
            ("attempt_timeout", self.attempt_timeout),
            ("operation_timeout", self.operation_timeout),
        ] {
            if d.is_zero() {
                return Err(bad(format!("{what} must not be zero")));
            }
        }
        if self.attempt_timeout > self.operation_timeout {
            return Err(bad(format!(
                "attempt_timeout ({:?}) exceeds operation_timeout ({:?})",
                self.attempt_timeout, self.operation_timeout
            )));
        }

        // Retries and timeouts are set here, explicitly, whatever the client came with: the
        // SDK retries within one call (see the README on how this composes with `Retry`).
        let retry = RetryConfig::standard()
            .with_max_attempts(self.max_attempts)
            .with_initial_backoff(self.initial_backoff)
            .with_max_backoff(MAX_BACKOFF);
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(self.connect_timeout)
            .operation_attempt_timeout(self.attempt_timeout)
            .operation_timeout(self.operation_timeout)
            .build();
        let mut conf = client
            .config()
            .to_builder()
            .retry_config(retry)
            .timeout_config(timeouts);
        if client.config().http_client().is_none() {
            conf = conf.http_client(aws_https_client());
        }
        let conf = conf.build();
        // `Client::from_conf` panics on a configuration it cannot use (no sleep implementation
        // for retries); the client we started from passed the same validation, so this does not
        // happen, but a panic must never escape a builder.
        let client = std::panic::catch_unwind(AssertUnwindSafe(|| Client::from_conf(conf)))
            .map_err(|_| bad("the AWS SDK refused the client configuration".into()))?;

        let version = KeyVersion::new(KMS_MANAGED_VERSION)
            .map_err(|e| Error::internal(&name, format!("the key version label: {e}"), None))?;
        Ok(AwsKmsProvider {
            inner: Arc::new(Inner {
                name,
                version,
                configured,
                resolved: OnceCell::new(),
                previous,
                client,
                connect_timeout: self.connect_timeout,
                operation_timeout: self.operation_timeout,
                max_attempts: self.max_attempts,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        let conf = aws_sdk_kms::Config::builder()
            .behavior_version(aws_sdk_kms::config::BehaviorVersion::latest())
            .region(aws_sdk_kms::config::Region::new("us-east-1"))
            .build();
        Client::from_conf(conf)
    }

    #[test]
    fn key_arns() {
        assert!(is_key_arn(
            "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
        ));
        assert!(is_key_arn("arn:aws-cn:kms:cn-north-1:111122223333:key/k"));
        assert!(!is_key_arn("arn:aws:kms:eu-west-1:111122223333:alias/mpc"));
        assert!(!is_key_arn("arn:aws:kms:eu-west-1:111122223333:key/"));
        assert!(!is_key_arn("arn:aws:s3:eu-west-1:111122223333:key/k"));
        assert!(!is_key_arn("alias/mpc"));
        assert!(!is_key_arn("1234abcd-12ab-34cd-56ef-1234567890ab"));
    }

    #[test]
    fn builder_checks() {
        let err = |b: AwsKmsProviderBuilder| match b.build() {
            Err(e @ Error::Misconfigured { .. }) => e.to_string(),
            Err(e) => panic!("unexpected error {e}"),
            Ok(p) => panic!("built {p:?}"),
        };
        assert!(err(AwsKmsProvider::builder("aws").client(client())).contains("no key_id"));
        assert!(err(AwsKmsProvider::builder("aws").key_id("alias/x")).contains("no client"));
        assert!(err(AwsKmsProvider::builder("aws").key_id("").client(client())).contains("key_id"));
        assert!(
            err(AwsKmsProvider::builder("aws")
                .key_id("alias/x")
                .client(client())
                .max_attempts(0))
            .contains("max_attempts")
        );
        assert!(
            err(AwsKmsProvider::builder("aws")
                .key_id("alias/x")
                .client(client())
                .operation_timeout(Duration::ZERO))
            .contains("operation_timeout")
        );
        assert!(
            err(AwsKmsProvider::builder("aws")
                .key_id("alias/x")
                .client(client())
                .attempt_timeout(Duration::from_secs(20)))
            .contains("exceeds")
        );
        assert!(
            err(AwsKmsProvider::builder("aws")
                .key_id("alias/x")
                .client(client())
                .previous_key("alias/old"))
            .contains("not a key ARN")
        );
        let p = AwsKmsProvider::builder("aws")
            .key_id("alias/x")
            .client(client())
            .build()
            .unwrap();
        assert_eq!(p.name(), "aws");
        assert_eq!(p.kind(), ProviderKind::AwsKms);
        let conf = p.inner.client.config();
        assert_eq!(conf.retry_config().unwrap().max_attempts(), 3);
        assert_eq!(
            conf.timeout_config().unwrap().operation_timeout(),
            Some(Duration::from_secs(10))
        );
        assert!(conf.http_client().is_some());
    }

    #[test]
    fn debug_names_the_key() {
        let p = AwsKmsProvider::builder("aws")
            .key_id("alias/x")
            .client(client())
            .build()
            .unwrap();
        let text = format!("{p:?}");
        assert!(text.contains("alias/x"), "{text}");
        assert!(text.contains("\"aws\""), "{text}");
    }
}
