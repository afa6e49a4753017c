//! The conformance suite every provider's tests run (feature `testkit`).
//!
//! [`run_all`] runs every check against a [`Subject`]; each check is also public so a test can
//! run one alone. A check returns a [`CheckFailure`] naming the check and what went wrong
//! instead of panicking, so the suite can be used from any test harness.
//!
//! The checks: round trip (several share sizes, serialized form, fresh nonces, input bounds);
//! wrong context (each field: vault, path, version, share index, mode); tampering (every bit of
//! the encoded form, every truncation, an extension); a blob from another key (as is and
//! relabelled); unknown key and version; rotation (providers whose keys this crate rotates);
//! 1,000 concurrent wraps and unwraps; health;
//! and that every error names the provider and leaks no share bytes.
//!
//! With the `pkcs11` feature it also provides [`SoftHsmToken`], a throw-away SoftHSM2 token;
//! with `gcp`, [`GcpKmsServer`], a wire-compatible local Cloud KMS REST server (test support,
//! not a KMS) and [`static_bearer_credentials`].
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use kms_providers::LocalProvider;
//! use kms_providers::testkit::{self, Subject};
//!
//! let dir = tempfile::tempdir()?;
//! let subject = Subject::new(
//!     Arc::new(LocalProvider::builder("gcp").key_dir(dir.path()).build()?),
//!     Arc::new(LocalProvider::builder("gcp").key_dir(dir.path()).key_name("other").build()?),
//! );
//! let report = testkit::run_all(&subject).await?;
//! assert!(report.checks().contains(&"wrong_context"));
//! # Ok(()) }
//! ```

#[cfg(all(feature = "testkit", feature = "azure"))]
mod azure_server;
#[cfg(feature = "gcp")]
mod gcp_server;
#[cfg(feature = "pkcs11")]
mod softhsm;

use core::fmt;
use std::sync::Arc;

use subtle::ConstantTimeEq;
use tokio::task::JoinSet;

use crate::context::WrapContext;
use crate::error::Error;
use crate::provider::{KeyProvider, KeyRotation};
use crate::wrapped::{KeyId, KeyVersion, MAX_SHARE_LEN, WrappedShare};

#[cfg(all(feature = "testkit", feature = "azure"))]
pub use azure_server::{AzureKeyVaultServer, AzureServerError};
#[cfg(feature = "gcp")]
pub use gcp_server::{GcpKmsServer, GcpServerError, static_bearer_credentials};
#[cfg(feature = "pkcs11")]
pub use softhsm::{SOFTHSM2_CONF, SoftHsmError, SoftHsmToken, softhsm_module};

/// Concurrent operations [`check_concurrency`] runs in [`run_all`].
///
/// # Example
///
/// ```
/// assert_eq!(kms_providers::testkit::CONCURRENT_OPERATIONS, 1_000);
/// ```
pub const CONCURRENT_OPERATIONS: usize = 1_000;

/// A failed conformance check.
///
/// # Example
///
/// ```
/// use kms_providers::testkit::CheckFailure;
///
/// let f = CheckFailure::new("round_trip", "gcp", "unwrap returned other bytes");
/// assert_eq!(f.to_string(), "conformance check round_trip failed for provider \"gcp\": unwrap returned other bytes");
/// ```
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("conformance check {check} failed for provider {provider:?}: {detail}")]
pub struct CheckFailure {
    check: &'static str,
    provider: String,
    detail: String,
}

impl CheckFailure {
    /// A failure of `check` for `provider`.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::testkit::CheckFailure;
    /// let f = CheckFailure::new("health", "hsm", "no answer");
    /// assert_eq!(f.check(), "health");
    /// ```
    pub fn new(check: &'static str, provider: &str, detail: impl Into<String>) -> Self {
        Self {
            check,
            provider: provider.to_owned(),
            detail: detail.into(),
        }
    }

    /// The check that failed.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::testkit::CheckFailure;
    /// assert_eq!(CheckFailure::new("tampered", "p", "x").check(), "tampered");
    /// ```
    pub fn check(&self) -> &'static str {
        self.check
    }

    /// What went wrong.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::testkit::CheckFailure;
    /// assert_eq!(CheckFailure::new("tampered", "p", "x").detail(), "x");
    /// ```
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

/// What [`run_all`] checked.
///
/// # Example
///
/// ```
/// let report = kms_providers::testkit::Report::default();
/// assert!(report.checks().is_empty());
/// ```
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Report {
    checks: Vec<&'static str>,
    not_applicable: Vec<&'static str>,
    tamper_cases: usize,
}

impl Report {
    /// The checks that passed, in order.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(kms_providers::testkit::Report::default().checks().len(), 0);
    /// ```
    pub fn checks(&self) -> &[&'static str] {
        &self.checks
    }

    /// The checks that did not apply to this subject (`"rotation"` for a cloud KMS key).
    ///
    /// # Example
    ///
    /// ```
    /// assert!(kms_providers::testkit::Report::default().not_applicable().is_empty());
    /// ```
    pub fn not_applicable(&self) -> &[&'static str] {
        &self.not_applicable
    }

    /// How many tampered encodings were tried.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(kms_providers::testkit::Report::default().tamper_cases(), 0);
    /// ```
    pub fn tamper_cases(&self) -> usize {
        self.tamper_cases
    }
}

/// What the suite runs against: the provider under test and a provider of the same kind
/// holding a *different* KEK (another key name, label, key ARN or key resource).
///
/// Providers whose KEK versions this crate manages (`local`, `pkcs11`) are built with
/// [`Subject::new`] and also pass the rotation check. Cloud KMS keys rotate on the cloud side
/// (and their emulators may not rotate at all), so cloud providers use
/// [`Subject::without_rotation`]; the [`Report`] then says the rotation check did not apply.
///
/// # Example
///
/// ```
/// # use std::sync::Arc;
/// # use kms_providers::LocalProvider;
/// # use kms_providers::testkit::Subject;
/// let dir = tempfile::tempdir()?;
/// let subject = Subject::new(
///     Arc::new(LocalProvider::builder("aws").key_dir(dir.path()).build()?),
///     Arc::new(LocalProvider::builder("aws").key_dir(dir.path()).key_name("aws-other").build()?),
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Subject {
    provider: Arc<dyn KeyProvider>,
    rotation: Option<Arc<dyn KeyRotation>>,
    other_key: Arc<dyn KeyProvider>,
}

impl Subject {
    /// A provider that can rotate its KEK, and another key of the same kind.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use kms_providers::LocalProvider;
    /// # use kms_providers::testkit::Subject;
    /// # let dir = tempfile::tempdir()?;
    /// let s = Subject::new(
    ///     Arc::new(LocalProvider::builder("a").key_dir(dir.path()).build()?),
    ///     Arc::new(LocalProvider::builder("a").key_dir(dir.path()).key_name("b").build()?),
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new<P: KeyRotation + 'static>(
        provider: Arc<P>,
        other_key: Arc<dyn KeyProvider>,
    ) -> Self {
        let rotation: Arc<dyn KeyRotation> = provider;
        Self {
            provider: rotation.clone(),
            rotation: Some(rotation),
            other_key,
        }
    }

    /// A provider whose KEK rotates outside this crate (a cloud KMS), and another key of the
    /// same kind. [`run_all`] runs every check but rotation and records that in the [`Report`].
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use std::sync::Arc;
    /// # use kms_providers::LocalProvider;
    /// use kms_providers::testkit::{run_all, Subject};
    /// # let dir = tempfile::tempdir()?;
    /// let s = Subject::without_rotation(
    ///     Arc::new(LocalProvider::builder("a").key_dir(dir.path()).build()?),
    ///     Arc::new(LocalProvider::builder("a").key_dir(dir.path()).key_name("b").build()?),
    /// );
    /// let report = run_all(&s).await?;
    /// assert!(!report.checks().contains(&"rotation"));
    /// assert_eq!(report.not_applicable(), &["rotation"]);
    /// # Ok(()) }
    /// ```
    pub fn without_rotation<P: KeyProvider + 'static>(
        provider: Arc<P>,
        other_key: Arc<dyn KeyProvider>,
    ) -> Self {
        Self {
            provider,
            rotation: None,
            other_key,
        }
    }
}

/// Runs every check, in an order where rotation comes last but one and concurrency last.
///
/// The rotation check runs only for a [`Subject::new`] subject; for a
/// [`Subject::without_rotation`] one it is listed in [`Report::not_applicable`].
///
/// # Errors
///
/// The first [`CheckFailure`].
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use kms_providers::LocalProvider;
/// use kms_providers::testkit::{run_all, Subject};
///
/// let dir = tempfile::tempdir()?;
/// let report = run_all(&Subject::new(
///     Arc::new(LocalProvider::builder("p").key_dir(dir.path()).build()?),
///     Arc::new(LocalProvider::builder("p").key_dir(dir.path()).key_name("q").build()?),
/// ))
/// .await?;
/// assert_eq!(report.checks().len(), 10);
/// # Ok(()) }
/// ```
pub async fn run_all(subject: &Subject) -> Result<Report, CheckFailure> {
    let p: &dyn KeyProvider = subject.provider.as_ref();
    let mut report = Report::default();
    check_health(p).await?;
    report.checks.push("health");
    check_round_trip(p).await?;
    report.checks.push("round_trip");
    check_input_bounds(p).await?;
    report.checks.push("input_bounds");
    check_wrong_context(p).await?;
    report.checks.push("wrong_context");
    report.tamper_cases = check_tampered(p).await?;
    report.checks.push("tampered");
    check_other_key(p, subject.other_key.as_ref()).await?;
    report.checks.push("other_key");
    check_unknown_key(p).await?;
    report.checks.push("unknown_key");
    check_errors_name_provider(p).await?;
    report.checks.push("errors_name_provider");
    match &subject.rotation {
        Some(rotation) => {
            check_rotation(rotation.as_ref()).await?;
            report.checks.push("rotation");
        }
        None => report.not_applicable.push("rotation"),
    }
    check_concurrency(subject.provider.clone(), CONCURRENT_OPERATIONS).await?;
    report.checks.push("concurrency");
    Ok(report)
}

fn ctx(version: u64, index: u8) -> WrapContext {
    WrapContext::trusted(
        "testkit-vault",
        "testkit/secret",
        version,
        index,
        "testkit-mode",
    )
}

/// Distinct, deterministic share bytes: the checks compare results against them.
fn share(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            u8::try_from(i % 251)
                .unwrap_or(0)
                .wrapping_mul(31)
                .wrapping_add(seed)
        })
        .collect()
}

fn same(a: &[u8], b: &[u8]) -> bool {
    bool::from(a.ct_eq(b))
}

/// Checks an error is permanent, names the provider, and does not print the share.
fn expect_permanent(
    check: &'static str,
    p: &dyn KeyProvider,
    err: &Error,
    secret: &[u8],
    what: &str,
) -> Result<(), CheckFailure> {
    if err.is_transient() {
        return Err(CheckFailure::new(
            check,
            p.name(),
            format!("{what}: transient error {err}"),
        ));
    }
    check_error_hygiene(check, p, err, secret)
}

fn check_error_hygiene(
    check: &'static str,
    p: &dyn KeyProvider,
    err: &Error,
    secret: &[u8],
) -> Result<(), CheckFailure> {
    if err.provider() != p.name() {
        return Err(CheckFailure::new(
            check,
            p.name(),
            format!("error names provider {:?}: {err}", err.provider()),
        ));
    }
    let text = format!("{err} {err:?}");
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let list = format!("{secret:?}");
    if secret.len() >= 8
        && (text.contains(&hex) || text.contains(&list[1..list.len().saturating_sub(1)]))
    {
        return Err(CheckFailure::new(
            check,
            p.name(),
            "an error message contains the share bytes",
        ));
    }
    Ok(())
}

/// Wrap then unwrap gives the share back, for sizes 1, 16, 32, 33, 255 and the maximum;
/// through the binary encoding too; under the provider's kind and current key; with a fresh
/// nonce and blob each time.
///
/// # Errors
///
/// A [`CheckFailure`] describing the first mismatch or error.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use kms_providers::LocalProvider;
/// use kms_providers::testkit;
/// let dir = tempfile::tempdir()?;
/// let p = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
/// testkit::check_round_trip(&p).await?;
/// # Ok(()) }
/// ```
pub async fn check_round_trip(p: &dyn KeyProvider) -> Result<(), CheckFailure> {
    const CHECK: &str = "round_trip";
    let fail = |detail: String| CheckFailure::new(CHECK, p.name(), detail);
    let health = p.health().await.map_err(|e| fail(format!("health: {e}")))?;
    for (i, len) in [1usize, 16, 32, 33, 255, MAX_SHARE_LEN]
        .into_iter()
        .enumerate()
    {
        let secret = share(len, u8::try_from(i).unwrap_or(0));
        let c = ctx(1, 1);
        let w = p
            .wrap(&secret, &c)
            .await
            .map_err(|e| fail(format!("wrap {len} bytes: {e}")))?;
        if w.kind() != p.kind() {
            return Err(fail(format!(
                "wrapped share says kind {}, provider is {}",
                w.kind(),
                p.kind()
            )));
        }
        if w.key_id() != health.key_id() || w.key_version() != health.key_version() {
            return Err(fail(format!(
                "wrapped under {}/{}, health reports {}/{}",
                w.key_id(),
                w.key_version(),
                health.key_id(),
                health.key_version()
            )));
        }
        if len >= 8 && w.blob().windows(len).any(|win| win == secret.as_slice()) {
            return Err(fail("the blob contains the share in clear".into()));
        }
        let parsed =
            WrappedShare::from_bytes(&w.to_bytes()).map_err(|e| fail(format!("re-parse: {e}")))?;
        let back = p
            .unwrap(&parsed, &c)
            .await
            .map_err(|e| fail(format!("unwrap {len} bytes: {e}")))?;
        if !same(back.expose_secret(), &secret) {
            return Err(fail(format!(
                "unwrap of a {len}-byte share returned other bytes"
            )));
        }
        let again = p
            .wrap(&secret, &c)
            .await
            .map_err(|e| fail(format!("second wrap: {e}")))?;
        if again.nonce() == w.nonce() && !w.nonce().is_empty() {
            return Err(fail("two wraps used the same nonce".into()));
        }
        if again.blob() == w.blob() {
            return Err(fail(
                "two wraps of the same share gave the same blob".into(),
            ));
        }
    }
    Ok(())
}

/// Empty and oversized shares are refused with [`Error::InvalidInput`].
///
/// # Errors
///
/// A [`CheckFailure`] if either is accepted or refused with another error.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use kms_providers::LocalProvider;
/// use kms_providers::testkit;
/// let dir = tempfile::tempdir()?;
/// let p = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
/// testkit::check_input_bounds(&p).await?;
/// # Ok(()) }
/// ```
pub async fn check_input_bounds(p: &dyn KeyProvider) -> Result<(), CheckFailure> {
    const CHECK: &str = "input_bounds";
    for len in [0, MAX_SHARE_LEN + 1] {
        match p.wrap(&share(len, 9), &ctx(1, 1)).await {
            Err(Error::InvalidInput { provider, .. }) if provider == p.name() => {}
            Err(e) => {
                return Err(CheckFailure::new(
                    CHECK,
                    p.name(),
                    format!("{len}-byte share: {e}"),
                ));
            }
            Ok(_) => {
                return Err(CheckFailure::new(
                    CHECK,
                    p.name(),
                    format!("a {len}-byte share was wrapped"),
                ));
            }
        }
    }
    Ok(())
}

/// A share wrapped under one context does not unwrap under a context that differs in any one
/// field: vault id, secret path, version, share index, custody mode. Each failure is a
/// permanent [`Error::AuthenticationFailed`].
///
/// # Errors
///
/// A [`CheckFailure`] naming the field whose change went unnoticed.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use kms_providers::LocalProvider;
/// use kms_providers::testkit;
/// let dir = tempfile::tempdir()?;
/// let p = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
/// testkit::check_wrong_context(&p).await?;
/// # Ok(()) }
/// ```
pub async fn check_wrong_context(p: &dyn KeyProvider) -> Result<(), CheckFailure> {
    const CHECK: &str = "wrong_context";
    let fail = |detail: String| CheckFailure::new(CHECK, p.name(), detail);
    let secret = share(32, 3);
    let good = WrapContext::new("vault-a", "app/db", 7, 2, "shamir-2-of-3")
        .map_err(|e| fail(e.to_string()))?;
    let w = p
        .wrap(&secret, &good)
        .await
        .map_err(|e| fail(format!("wrap: {e}")))?;
    let variants = [
        (
            "vault id",
            WrapContext::new("vault-b", "app/db", 7, 2, "shamir-2-of-3"),
        ),
        (
            "secret path",
            WrapContext::new("vault-a", "app/dc", 7, 2, "shamir-2-of-3"),
        ),
        (
            "version",
            WrapContext::new("vault-a", "app/db", 8, 2, "shamir-2-of-3"),
        ),
        ("share index", Ok(good.with_share_index(3))),
        (
            "custody mode",
            WrapContext::new("vault-a", "app/db", 7, 2, "xor-2-of-2"),
        ),
        ("whole-DEK index", Ok(good.with_share_index(0))),
    ];
    for (field, c) in variants {
        let c = c.map_err(|e| fail(e.to_string()))?;
        match p.unwrap(&w, &c).await {
            Ok(_) => return Err(fail(format!("unwrapped under a different {field}"))),
            Err(Error::AuthenticationFailed { .. }) => {}
            Err(e) => {
                return Err(fail(format!(
                    "changed {field}: expected authentication failure, got {e}"
                )));
            }
        }
    }
    let back = p
        .unwrap(&w, &good)
        .await
        .map_err(|e| fail(format!("unwrap under the right context: {e}")))?;
    if !same(back.expose_secret(), &secret) {
        return Err(fail("right context returned other bytes".into()));
    }
    Ok(())
}

/// Every single-bit flip of the encoded wrapped share, every truncation and a one-byte
/// extension either fails to parse or fails to unwrap with a permanent error; none unwraps.
/// Returns the number of cases tried.
///
/// # Errors
///
/// A [`CheckFailure`] naming the byte and bit whose change went unnoticed.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use kms_providers::LocalProvider;
/// use kms_providers::testkit;
/// let dir = tempfile::tempdir()?;
/// let p = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
/// let cases = testkit::check_tampered(&p).await?;
/// assert!(cases > 500);
/// # Ok(()) }
/// ```
pub async fn check_tampered(p: &dyn KeyProvider) -> Result<usize, CheckFailure> {
    const CHECK: &str = "tampered";
    let fail = |detail: String| CheckFailure::new(CHECK, p.name(), detail);
    let secret = share(32, 5);
    let c = ctx(3, 1);
    let w = p
        .wrap(&secret, &c)
        .await
        .map_err(|e| fail(format!("wrap: {e}")))?;
    let bytes = w.to_bytes();
    let mut cases = 0usize;
    let mut candidates: Vec<(String, Vec<u8>)> = Vec::new();
    for i in 0..bytes.len() {
        for bit in 0..8u8 {
            let mut b = bytes.clone();
            if let Some(x) = b.get_mut(i) {
                *x ^= 1 << bit;
            }
            candidates.push((format!("byte {i} bit {bit}"), b));
        }
    }
    for len in 0..bytes.len() {
        candidates.push((
            format!("truncated to {len} bytes"),
            bytes.get(..len).unwrap_or_default().to_vec(),
        ));
    }
    let mut longer = bytes.clone();
    longer.push(0);
    candidates.push(("one byte appended".into(), longer));

    for (what, b) in candidates {
        cases += 1;
        let Ok(parsed) = WrappedShare::from_bytes(&b) else {
            continue;
        };
        match p.unwrap(&parsed, &c).await {
            Ok(_) => return Err(fail(format!("{what}: the tampered share unwrapped"))),
            Err(e) => expect_permanent(CHECK, p, &e, &secret, &what)?,
        }
    }
    Ok(cases)
}

/// A share wrapped by another key of the same kind does not unwrap: as is (unknown key), and
/// relabelled with this provider's key id and version (authentication failure).
///
/// # Errors
///
/// A [`CheckFailure`] if either unwraps or fails with a transient error.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use kms_providers::LocalProvider;
/// use kms_providers::testkit;
/// let dir = tempfile::tempdir()?;
/// let p = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
/// let other = LocalProvider::builder("gcp").key_dir(dir.path()).key_name("other").build()?;
/// testkit::check_other_key(&p, &other).await?;
/// # Ok(()) }
/// ```
pub async fn check_other_key(
    p: &dyn KeyProvider,
    other: &dyn KeyProvider,
) -> Result<(), CheckFailure> {
    const CHECK: &str = "other_key";
    let fail = |detail: String| CheckFailure::new(CHECK, p.name(), detail);
    if other.kind() != p.kind() {
        return Err(fail(format!(
            "the other key is a {} provider, not {}",
            other.kind(),
            p.kind()
        )));
    }
    let secret = share(32, 7);
    let c = ctx(4, 2);
    let theirs = other
        .wrap(&secret, &c)
        .await
        .map_err(|e| fail(format!("other key wrap: {e}")))?;
    let ours = p
        .wrap(&secret, &c)
        .await
        .map_err(|e| fail(format!("wrap: {e}")))?;
    if theirs.key_id() == ours.key_id() {
        return Err(fail(
            "the other provider uses the same key id; give it another key".into(),
        ));
    }
    match p.unwrap(&theirs, &c).await {
        Ok(_) => return Err(fail("another key's share unwrapped".into())),
        Err(e) => expect_permanent(CHECK, p, &e, &secret, "another key's share")?,
    }
    let relabelled = WrappedShare::new(
        theirs.kind(),
        ours.key_id().clone(),
        ours.key_version().clone(),
        theirs.algorithm(),
        theirs.nonce().to_vec(),
        theirs.blob().to_vec(),
    )
    .map_err(|e| fail(format!("relabel: {e}")))?;
    match p.unwrap(&relabelled, &c).await {
        Ok(_) => Err(fail("another key's blob unwrapped under our key id".into())),
        Err(Error::AuthenticationFailed { .. }) => Ok(()),
        Err(e) => Err(fail(format!(
            "relabelled blob: expected authentication failure, got {e}"
        ))),
    }
}

/// A share naming a key id or key version the provider does not hold fails with
/// [`Error::UnknownKey`].
///
/// # Errors
///
/// A [`CheckFailure`] if another outcome occurs.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use kms_providers::LocalProvider;
/// use kms_providers::testkit;
/// let dir = tempfile::tempdir()?;
/// let p = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
/// testkit::check_unknown_key(&p).await?;
/// # Ok(()) }
/// ```
pub async fn check_unknown_key(p: &dyn KeyProvider) -> Result<(), CheckFailure> {
    const CHECK: &str = "unknown_key";
    let fail = |detail: String| CheckFailure::new(CHECK, p.name(), detail);
    let c = ctx(5, 1);
    let w = p
        .wrap(&share(32, 11), &c)
        .await
        .map_err(|e| fail(format!("wrap: {e}")))?;
    let renamed = |id: KeyId, v: KeyVersion| {
        WrappedShare::new(
            w.kind(),
            id,
            v,
            w.algorithm(),
            w.nonce().to_vec(),
            w.blob().to_vec(),
        )
    };
    let cases = [
        (
            "unknown key id",
            KeyId::new("testkit-no-such-key"),
            Ok(w.key_version().clone()),
        ),
        (
            "unknown key version",
            Ok(w.key_id().clone()),
            KeyVersion::new("4000000000"),
        ),
        (
            "non-numeric version",
            Ok(w.key_id().clone()),
            KeyVersion::new("not-a-version"),
        ),
    ];
    for (what, id, v) in cases {
        let id = id.map_err(|e| fail(e.to_string()))?;
        let v = v.map_err(|e| fail(e.to_string()))?;
        let bad = renamed(id, v).map_err(|e| fail(e.to_string()))?;
        match p.unwrap(&bad, &c).await {
            Err(Error::UnknownKey { ref provider, .. }) if provider == p.name() => {}
            Err(e)
                if what == "non-numeric version"
                    && matches!(e, Error::AuthenticationFailed { .. }) =>
            {
                // Backends with opaque version strings may only find out by authenticating.
            }
            Err(e) => return Err(fail(format!("{what}: expected unknown key, got {e}"))),
            Ok(_) => return Err(fail(format!("{what}: unwrapped"))),
        }
    }
    Ok(())
}

/// Every error the provider returns in the other checks names it; this check additionally
/// provokes one error of each reachable class and checks its name and text.
///
/// # Errors
///
/// A [`CheckFailure`] for an error that names another provider or prints share bytes.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use kms_providers::LocalProvider;
/// use kms_providers::testkit;
/// let dir = tempfile::tempdir()?;
/// let p = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
/// testkit::check_errors_name_provider(&p).await?;
/// # Ok(()) }
/// ```
pub async fn check_errors_name_provider(p: &dyn KeyProvider) -> Result<(), CheckFailure> {
    const CHECK: &str = "errors_name_provider";
    let fail = |detail: String| CheckFailure::new(CHECK, p.name(), detail);
    let secret = share(64, 13);
    let c = ctx(6, 1);
    let w = p
        .wrap(&secret, &c)
        .await
        .map_err(|e| fail(format!("wrap: {e}")))?;
    let mut errors = Vec::new();
    if let Err(e) = p.unwrap(&w, &ctx(7, 1)).await {
        errors.push(e);
    }
    if let Err(e) = p.wrap(&[], &c).await {
        errors.push(e);
    }
    let foreign_kind = [
        crate::ProviderKind::Local,
        crate::ProviderKind::Pkcs11,
        crate::ProviderKind::AwsKms,
    ]
    .into_iter()
    .find(|k| *k != p.kind())
    .unwrap_or(crate::ProviderKind::GcpKms);
    let foreign = WrappedShare::new(
        foreign_kind,
        w.key_id().clone(),
        w.key_version().clone(),
        w.algorithm(),
        w.nonce().to_vec(),
        w.blob().to_vec(),
    )
    .map_err(|e| fail(e.to_string()))?;
    match p.unwrap(&foreign, &c).await {
        Err(e) => expect_permanent(CHECK, p, &e, &secret, "a share of another provider kind")
            .map(|()| errors.push(e))?,
        Ok(_) => return Err(fail("a share of another provider kind unwrapped".into())),
    }
    if errors.len() != 3 {
        return Err(fail(format!("expected 3 errors, got {}", errors.len())));
    }
    for e in &errors {
        check_error_hygiene(CHECK, p, e, &secret)?;
        if !e.to_string().contains(&format!("{:?}", p.name())) {
            return Err(fail(format!(
                "error text does not quote the provider name: {e}"
            )));
        }
    }
    Ok(())
}

/// Rotation creates a newer version; new wraps use it and health reports it; shares wrapped
/// before still unwrap; shares wrapped after unwrap too.
///
/// # Errors
///
/// A [`CheckFailure`] for the first broken expectation.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use kms_providers::LocalProvider;
/// use kms_providers::testkit;
/// let dir = tempfile::tempdir()?;
/// let p = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
/// testkit::check_rotation(&p).await?;
/// # Ok(()) }
/// ```
pub async fn check_rotation(p: &dyn KeyRotation) -> Result<(), CheckFailure> {
    const CHECK: &str = "rotation";
    let fail = |detail: String| CheckFailure::new(CHECK, p.name(), detail);
    let secret = share(32, 17);
    let c = ctx(8, 1);
    let before = p
        .wrap(&secret, &c)
        .await
        .map_err(|e| fail(format!("wrap: {e}")))?;
    let new_version = p.rotate().await.map_err(|e| fail(format!("rotate: {e}")))?;
    if &new_version == before.key_version() {
        return Err(fail(format!(
            "rotation returned the old version {new_version}"
        )));
    }
    if let (Some(old), Some(new)) = (before.key_version().as_number(), new_version.as_number())
        && new <= old
    {
        return Err(fail(format!("rotation went from version {old} to {new}")));
    }
    let after = p
        .wrap(&secret, &c)
        .await
        .map_err(|e| fail(format!("wrap after rotation: {e}")))?;
    if after.key_version() != &new_version {
        return Err(fail(format!(
            "wrap after rotation used version {}, not {new_version}",
            after.key_version()
        )));
    }
    let health = p.health().await.map_err(|e| fail(format!("health: {e}")))?;
    if health.key_version() != &new_version {
        return Err(fail(format!(
            "health reports version {}",
            health.key_version()
        )));
    }
    for (which, w) in [("old", &before), ("new", &after)] {
        let back = p
            .unwrap(w, &c)
            .await
            .map_err(|e| fail(format!("unwrap {which} share: {e}")))?;
        if !same(back.expose_secret(), &secret) {
            return Err(fail(format!("{which} share unwrapped to other bytes")));
        }
    }
    Ok(())
}

/// `n` tasks at once, each wrapping a distinct share under a distinct context and unwrapping
/// it; every one must succeed and get its own share back.
///
/// # Errors
///
/// A [`CheckFailure`] for the first task that fails.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use std::sync::Arc;
/// # use kms_providers::LocalProvider;
/// let dir = tempfile::tempdir()?;
/// let p = Arc::new(LocalProvider::builder("gcp").key_dir(dir.path()).build()?);
/// kms_providers::testkit::check_concurrency(p, 50).await?;
/// # Ok(()) }
/// ```
pub async fn check_concurrency(p: Arc<dyn KeyProvider>, n: usize) -> Result<(), CheckFailure> {
    const CHECK: &str = "concurrency";
    let mut tasks = JoinSet::new();
    for i in 0..n {
        let p = Arc::clone(&p);
        tasks.spawn(async move {
            let version = u64::try_from(i).unwrap_or(u64::MAX);
            let c = ctx(version, u8::try_from(i % 255 + 1).unwrap_or(1));
            let secret = share(32, u8::try_from(i % 256).unwrap_or(0));
            let w = p
                .wrap(&secret, &c)
                .await
                .map_err(|e| format!("task {i} wrap: {e}"))?;
            let back = p
                .unwrap(&w, &c)
                .await
                .map_err(|e| format!("task {i} unwrap: {e}"))?;
            if same(back.expose_secret(), &secret) {
                Ok(())
            } else {
                Err(format!("task {i} got another share back"))
            }
        });
    }
    let mut done = 0usize;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(())) => done += 1,
            Ok(Err(detail)) => return Err(CheckFailure::new(CHECK, p.name(), detail)),
            Err(e) => {
                return Err(CheckFailure::new(
                    CHECK,
                    p.name(),
                    format!("task panicked: {e}"),
                ));
            }
        }
    }
    if done != n {
        return Err(CheckFailure::new(
            CHECK,
            p.name(),
            format!("{done} of {n} tasks finished"),
        ));
    }
    Ok(())
}

/// Health succeeds and reports this provider's name and kind.
///
/// # Errors
///
/// A [`CheckFailure`] if health fails or reports another provider.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use kms_providers::LocalProvider;
/// use kms_providers::testkit;
/// let dir = tempfile::tempdir()?;
/// let p = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
/// testkit::check_health(&p).await?;
/// # Ok(()) }
/// ```
pub async fn check_health(p: &dyn KeyProvider) -> Result<(), CheckFailure> {
    const CHECK: &str = "health";
    let h = p
        .health()
        .await
        .map_err(|e| CheckFailure::new(CHECK, p.name(), e.to_string()))?;
    if h.provider() != p.name() || h.kind() != p.kind() {
        return Err(CheckFailure::new(
            CHECK,
            p.name(),
            format!("health reports {} ({})", h.provider(), h.kind()),
        ));
    }
    Ok(())
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} checks passed ({} tamper cases): {}",
            self.checks.len(),
            self.tamper_cases,
            self.checks.join(", ")
        )
    }
}
