//! A bound on concurrent calls.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Semaphore;

use crate::context::WrapContext;
use crate::error::Error;
use crate::provider::{Health, KeyProvider, KeyRotation};
use crate::secret::UnwrappedShare;
use crate::wrapped::{KeyVersion, ProviderKind, WrappedShare};

/// Lets at most `max` calls into the inner provider at once; further calls wait (in FIFO order,
/// as `tokio::sync::Semaphore` is fair) for a slot. Protects backends with small session or
/// connection limits (HSMs) and bounds the blocking threads a PKCS#11 provider can occupy.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use kms_providers::{ConcurrencyLimit, KeyProvider, LocalProvider};
///
/// let dir = tempfile::tempdir()?;
/// let local = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
/// let provider = ConcurrencyLimit::new(local, 8)?;
/// assert_eq!(provider.available(), 8);
/// provider.health().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ConcurrencyLimit<P> {
    inner: P,
    semaphore: Arc<Semaphore>,
    max: usize,
}

impl<P: KeyProvider> ConcurrencyLimit<P> {
    /// Wraps `inner`, allowing `max` concurrent calls.
    ///
    /// # Errors
    ///
    /// [`Error::Misconfigured`] when `max` is zero or above `Semaphore::MAX_PERMITS`.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::{ConcurrencyLimit, LocalProvider};
    /// # let dir = tempfile::tempdir()?;
    /// # let local = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
    /// assert!(ConcurrencyLimit::new(local, 0).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(inner: P, max: usize) -> Result<Self, Error> {
        if max == 0 || max > Semaphore::MAX_PERMITS {
            return Err(Error::misconfigured(
                inner.name(),
                format!(
                    "the concurrency limit must be 1 to {}",
                    Semaphore::MAX_PERMITS
                ),
            ));
        }
        Ok(Self {
            inner,
            semaphore: Arc::new(Semaphore::new(max)),
            max,
        })
    }

    /// The configured limit.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::{ConcurrencyLimit, LocalProvider};
    /// # let dir = tempfile::tempdir()?;
    /// # let local = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
    /// assert_eq!(ConcurrencyLimit::new(local, 3)?.max(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max(&self) -> usize {
        self.max
    }

    /// Free slots right now.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::{ConcurrencyLimit, LocalProvider};
    /// # let dir = tempfile::tempdir()?;
    /// # let local = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
    /// assert_eq!(ConcurrencyLimit::new(local, 3)?.available(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn available(&self) -> usize {
        self.semaphore.available_permits()
    }

    /// The wrapped provider.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::{ConcurrencyLimit, KeyProvider, LocalProvider};
    /// # let dir = tempfile::tempdir()?;
    /// # let local = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
    /// assert_eq!(ConcurrencyLimit::new(local, 3)?.get_ref().name(), "gcp");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_ref(&self) -> &P {
        &self.inner
    }

    async fn permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, Error> {
        // The semaphore is never closed, so this error cannot occur; it is mapped, not unwrapped.
        self.semaphore.acquire().await.map_err(|e| {
            Error::internal(
                self.inner.name(),
                "concurrency limiter closed",
                Some(Box::new(e)),
            )
        })
    }
}

#[async_trait]
impl<P: KeyProvider> KeyProvider for ConcurrencyLimit<P> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn kind(&self) -> ProviderKind {
        self.inner.kind()
    }

    async fn wrap(&self, share: &[u8], context: &WrapContext) -> Result<WrappedShare, Error> {
        let _permit = self.permit().await?;
        self.inner.wrap(share, context).await
    }

    async fn unwrap(
        &self,
        wrapped: &WrappedShare,
        context: &WrapContext,
    ) -> Result<UnwrappedShare, Error> {
        let _permit = self.permit().await?;
        self.inner.unwrap(wrapped, context).await
    }

    async fn health(&self) -> Result<Health, Error> {
        let _permit = self.permit().await?;
        self.inner.health().await
    }
}

/// Rotation is an administrative call and goes straight to the provider.
#[async_trait]
impl<P: KeyRotation> KeyRotation for ConcurrencyLimit<P> {
    async fn rotate(&self) -> Result<KeyVersion, Error> {
        self.inner.rotate().await
    }
}
