//! The one trait every provider and every layer implements.

use core::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::context::WrapContext;
use crate::error::Error;
use crate::secret::UnwrappedShare;
use crate::wrapped::{KeyId, KeyVersion, ProviderKind, WrappedShare};

/// A key provider: wraps shares under a KEK it holds, bound to a [`WrapContext`], and unwraps
/// them again.
///
/// # Which method callers use when
///
/// * [`wrap`](Self::wrap) when a secret version is written: the custody layer splits the fresh
///   DEK and wraps each share with a different provider, under that share's context, and stores
///   [`WrappedShare::to_bytes`].
/// * [`unwrap`](Self::unwrap) when a secret version is read: the custody layer parses the stored
///   bytes, rebuilds the same context from the row, and unwraps as many shares as the mode needs.
/// * [`health`](Self::health) at start-up and from readiness probes, never per request: it
///   performs a real wrap and unwrap of a probe value so that it proves the KEK is usable.
///
/// # Contract
///
/// * The context is always bound: a wrapped share unwraps only under the exact context it was
///   wrapped under; any other context, a tampered wrapped share or one made by another key fails
///   with a permanent error (normally [`Error::AuthenticationFailed`] or
///   [`Error::UnknownKey`]), never with wrong bytes.
/// * New wraps use the KEK's current version; older versions keep unwrapping.
/// * Shares are 1 to [`MAX_SHARE_LEN`](crate::MAX_SHARE_LEN) bytes; anything else is
///   [`Error::InvalidInput`].
/// * Every error names [`name`](Self::name); nothing secret ever appears in an error or in
///   `Debug` output.
/// * Methods are safe to call concurrently from many tasks.
///
/// `kms_providers::testkit` (feature `testkit`) checks all of this; every implementation runs it.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use kms_providers::{KeyProvider, LocalProvider, WrapContext};
///
/// let dir = tempfile::tempdir()?;
/// let provider = LocalProvider::builder("gcp").key_dir(dir.path().join("keys")).build()?;
///
/// let ctx = WrapContext::new("vault-1", "db/password", 1, 1, "shamir-2-of-3")?;
/// let wrapped = provider.wrap(&[0x11; 32], &ctx).await?;
/// let share = provider.unwrap(&wrapped, &ctx).await?;
/// assert_eq!(share.expose_secret(), &[0x11; 32]);
/// # Ok(()) }
/// ```
#[async_trait]
pub trait KeyProvider: Send + Sync + fmt::Debug {
    /// The instance name (`"gcp"`, `"hsm-eu-1"`): the name errors and logs use.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use kms_providers::{KeyProvider, LocalProvider, WrapContext};
    /// # let dir = tempfile::tempdir()?;
    /// let provider = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
    /// assert_eq!(provider.name(), "gcp");
    /// # Ok(()) }
    /// ```
    fn name(&self) -> &str;

    /// The kind of provider, recorded in every wrapped share it makes.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use kms_providers::{KeyProvider, LocalProvider, WrapContext};
    /// # let dir = tempfile::tempdir()?;
    /// let provider = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
    /// assert_eq!(provider.kind(), kms_providers::ProviderKind::Local);
    /// # Ok(()) }
    /// ```
    fn kind(&self) -> ProviderKind;

    /// Wraps `share` under the current KEK version, bound to `context`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidInput`] for an empty or oversized share; transient errors when the
    /// backend is unreachable; other permanent errors for permission or configuration problems.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use kms_providers::{KeyProvider, LocalProvider, WrapContext};
    /// # let dir = tempfile::tempdir()?;
    /// let provider = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
    /// let ctx = WrapContext::new("v", "p", 1, 1, "shamir-2-of-3")?;
    /// let wrapped = provider.wrap(&[1; 32], &ctx).await?;
    /// assert_eq!(wrapped.kind(), provider.kind());
    /// # Ok(()) }
    /// ```
    async fn wrap(&self, share: &[u8], context: &WrapContext) -> Result<WrappedShare, Error>;

    /// Unwraps a share wrapped by this provider's key under the same `context`.
    ///
    /// # Errors
    ///
    /// [`Error::AuthenticationFailed`] for a wrong context, a tampered share or another key's
    /// blob; [`Error::UnknownKey`] for a key id or version this provider does not hold;
    /// [`Error::WrongProviderKind`] for another kind's share; transient errors when the backend
    /// is unreachable.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use kms_providers::{KeyProvider, LocalProvider, WrapContext};
    /// # let dir = tempfile::tempdir()?;
    /// let provider = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
    /// let ctx = WrapContext::new("v", "p", 1, 1, "shamir-2-of-3")?;
    /// let wrapped = provider.wrap(&[1; 32], &ctx).await?;
    /// assert_eq!(provider.unwrap(&wrapped, &ctx).await?.expose_secret(), &[1; 32]);
    /// # Ok(()) }
    /// ```
    async fn unwrap(
        &self,
        wrapped: &WrappedShare,
        context: &WrapContext,
    ) -> Result<UnwrappedShare, Error>;

    /// Checks that the provider can wrap and unwrap now and reports the key new wraps use.
    ///
    /// # Errors
    ///
    /// The error that stops the provider from working.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use kms_providers::{KeyProvider, LocalProvider, WrapContext};
    /// # let dir = tempfile::tempdir()?;
    /// let provider = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
    /// let health = provider.health().await?;
    /// assert_eq!(health.key_version().as_number(), Some(1));
    /// # Ok(()) }
    /// ```
    async fn health(&self) -> Result<Health, Error>;
}

/// Providers whose KEK versions this crate manages (`local`, `pkcs11`) can rotate: a new key
/// version is created and used for every later wrap; shares wrapped under older versions keep
/// unwrapping. Cloud KMS keys rotate on the cloud side instead.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use kms_providers::{KeyProvider, KeyRotation, KeyVersion, LocalProvider, WrapContext};
///
/// let dir = tempfile::tempdir()?;
/// let provider = LocalProvider::builder("aws").key_dir(dir.path().join("keys")).build()?;
/// let ctx = WrapContext::new("v", "p", 1, 2, "shamir-2-of-3")?;
/// let old = provider.wrap(b"share", &ctx).await?;
///
/// assert_eq!(provider.rotate().await?, KeyVersion::from_number(2));
/// let new = provider.wrap(b"share", &ctx).await?;
/// assert_eq!(new.key_version().as_number(), Some(2));
/// assert_eq!(provider.unwrap(&old, &ctx).await?.expose_secret(), b"share");
/// # Ok(()) }
/// ```
#[async_trait]
pub trait KeyRotation: KeyProvider {
    /// Creates a new KEK version and makes it current; returns it.
    ///
    /// # Errors
    ///
    /// [`Error::Misconfigured`] when the keys cannot be rotated from here (for example local
    /// keys supplied from configuration), or the backend's error.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use kms_providers::{KeyProvider, LocalProvider, WrapContext};
    /// # let dir = tempfile::tempdir()?;
    /// let provider = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
    /// use kms_providers::KeyRotation;
    /// assert_eq!(provider.rotate().await?.as_number(), Some(2));
    /// # Ok(()) }
    /// ```
    async fn rotate(&self) -> Result<KeyVersion, Error>;
}

/// What [`KeyProvider::health`] reports when the provider works.
///
/// # Example
///
/// ```
/// use kms_providers::{Health, KeyId, KeyVersion, ProviderKind};
///
/// let h = Health::new("gcp", ProviderKind::Local, KeyId::new("gcp")?, KeyVersion::from_number(1));
/// assert_eq!(h.provider(), "gcp");
/// assert_eq!(h.key_version().as_number(), Some(1));
/// # Ok::<(), kms_providers::DecodeError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Health {
    provider: String,
    kind: ProviderKind,
    key_id: KeyId,
    key_version: KeyVersion,
}

impl Health {
    /// Builds a report (for provider implementations).
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::{Health, KeyId, KeyVersion, ProviderKind};
    /// let h = Health::new("hsm", ProviderKind::Pkcs11, KeyId::new("kek")?, KeyVersion::from_number(4));
    /// assert_eq!(h.kind(), ProviderKind::Pkcs11);
    /// # Ok::<(), kms_providers::DecodeError>(())
    /// ```
    pub fn new(
        provider: impl Into<String>,
        kind: ProviderKind,
        key_id: KeyId,
        key_version: KeyVersion,
    ) -> Self {
        Self {
            provider: provider.into(),
            kind,
            key_id,
            key_version,
        }
    }

    /// The provider instance name.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::{Health, KeyId, KeyVersion, ProviderKind};
    /// # let h = Health::new("hsm", ProviderKind::Pkcs11, KeyId::new("kek")?, KeyVersion::from_number(4));
    /// assert_eq!(h.provider(), "hsm");
    /// # Ok::<(), kms_providers::DecodeError>(())
    /// ```
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The provider kind.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::{Health, KeyId, KeyVersion, ProviderKind};
    /// # let h = Health::new("hsm", ProviderKind::Pkcs11, KeyId::new("kek")?, KeyVersion::from_number(4));
    /// assert_eq!(h.kind(), ProviderKind::Pkcs11);
    /// # Ok::<(), kms_providers::DecodeError>(())
    /// ```
    pub fn kind(&self) -> ProviderKind {
        self.kind
    }

    /// The KEK new wraps use.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::{Health, KeyId, KeyVersion, ProviderKind};
    /// # let h = Health::new("hsm", ProviderKind::Pkcs11, KeyId::new("kek")?, KeyVersion::from_number(4));
    /// assert_eq!(h.key_id().as_str(), "kek");
    /// # Ok::<(), kms_providers::DecodeError>(())
    /// ```
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    /// The KEK version new wraps use.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::{Health, KeyId, KeyVersion, ProviderKind};
    /// # let h = Health::new("hsm", ProviderKind::Pkcs11, KeyId::new("kek")?, KeyVersion::from_number(4));
    /// assert_eq!(h.key_version().as_str(), "4");
    /// # Ok::<(), kms_providers::DecodeError>(())
    /// ```
    pub fn key_version(&self) -> &KeyVersion {
        &self.key_version
    }
}

/// The context of the probe value [`KeyProvider::health`] wraps and unwraps. The vault id is
/// reserved: no real secret can be wrapped under it by accident because real vault ids come from
/// the server, which never issues this one.
#[cfg_attr(not(any(feature = "local", feature = "pkcs11")), allow(dead_code))]
pub(crate) fn health_probe_context() -> WrapContext {
    WrapContext::trusted(
        "mpc-vault.health-probe",
        "health-probe",
        0,
        0,
        "health-probe",
    )
}

macro_rules! forward_key_provider {
    ($ty:ty) => {
        #[async_trait]
        impl<P: KeyProvider + ?Sized> KeyProvider for $ty {
            fn name(&self) -> &str {
                (**self).name()
            }

            fn kind(&self) -> ProviderKind {
                (**self).kind()
            }

            async fn wrap(
                &self,
                share: &[u8],
                context: &WrapContext,
            ) -> Result<WrappedShare, Error> {
                (**self).wrap(share, context).await
            }

            async fn unwrap(
                &self,
                wrapped: &WrappedShare,
                context: &WrapContext,
            ) -> Result<UnwrappedShare, Error> {
                (**self).unwrap(wrapped, context).await
            }

            async fn health(&self) -> Result<Health, Error> {
                (**self).health().await
            }
        }

        #[async_trait]
        impl<P: KeyRotation + ?Sized> KeyRotation for $ty {
            async fn rotate(&self) -> Result<KeyVersion, Error> {
                (**self).rotate().await
            }
        }
    };
}

forward_key_provider!(Arc<P>);
forward_key_provider!(Box<P>);
