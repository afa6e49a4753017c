//! A time limit per call.

use std::time::Duration;

use async_trait::async_trait;

use crate::context::WrapContext;
use crate::error::Error;
use crate::provider::{Health, KeyProvider, KeyRotation};
use crate::secret::UnwrappedShare;
use crate::wrapped::{KeyVersion, ProviderKind, WrappedShare};

/// Fails a call with the transient [`Error::Timeout`] when the inner provider takes longer than
/// the limit. The inner call is dropped (cancelled) at that point; blocking backend work that
/// was already handed to a thread (PKCS#11) finishes in the background and its result is
/// discarded.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use kms_providers::{KeyProvider, LocalProvider, Timeout};
///
/// let dir = tempfile::tempdir()?;
/// let local = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
/// let provider = Timeout::new(local, Duration::from_secs(2))?;
/// assert_eq!(provider.limit(), Duration::from_secs(2));
/// provider.health().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Timeout<P> {
    inner: P,
    limit: Duration,
}

impl<P: KeyProvider> Timeout<P> {
    /// Wraps `inner` with a per-call time limit.
    ///
    /// # Errors
    ///
    /// [`Error::Misconfigured`] for a zero limit.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kms_providers::{LocalProvider, Timeout};
    /// # let dir = tempfile::tempdir()?;
    /// # let local = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
    /// assert!(Timeout::new(local, Duration::ZERO).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(inner: P, limit: Duration) -> Result<Self, Error> {
        if limit.is_zero() {
            return Err(Error::misconfigured(
                inner.name(),
                "the timeout must be longer than zero",
            ));
        }
        Ok(Self { inner, limit })
    }

    /// The time limit.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kms_providers::{LocalProvider, Timeout};
    /// # let dir = tempfile::tempdir()?;
    /// # let local = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
    /// let t = Timeout::new(local, Duration::from_millis(500))?;
    /// assert_eq!(t.limit(), Duration::from_millis(500));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// The wrapped provider.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kms_providers::{KeyProvider, LocalProvider, Timeout};
    /// # let dir = tempfile::tempdir()?;
    /// # let local = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
    /// let t = Timeout::new(local, Duration::from_secs(1))?;
    /// assert_eq!(t.get_ref().name(), "gcp");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_ref(&self) -> &P {
        &self.inner
    }

    fn elapsed(&self) -> Error {
        Error::Timeout {
            provider: self.inner.name().to_owned(),
            after: self.limit,
        }
    }
}

#[async_trait]
impl<P: KeyProvider> KeyProvider for Timeout<P> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn kind(&self) -> ProviderKind {
        self.inner.kind()
    }

    async fn wrap(&self, share: &[u8], context: &WrapContext) -> Result<WrappedShare, Error> {
        tokio::time::timeout(self.limit, self.inner.wrap(share, context))
            .await
            .map_err(|_| self.elapsed())?
    }

    async fn unwrap(
        &self,
        wrapped: &WrappedShare,
        context: &WrapContext,
    ) -> Result<UnwrappedShare, Error> {
        tokio::time::timeout(self.limit, self.inner.unwrap(wrapped, context))
            .await
            .map_err(|_| self.elapsed())?
    }

    async fn health(&self) -> Result<Health, Error> {
        tokio::time::timeout(self.limit, self.inner.health())
            .await
            .map_err(|_| self.elapsed())?
    }
}

/// Rotation is an administrative call: it goes straight to the provider, without the time
/// limit, because cancelling it half-way helps nobody.
#[async_trait]
impl<P: KeyRotation> KeyRotation for Timeout<P> {
    async fn rotate(&self) -> Result<KeyVersion, Error> {
        self.inner.rotate().await
    }
}
