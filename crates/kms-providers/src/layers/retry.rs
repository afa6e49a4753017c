//! Retries of transient failures with exponential backoff and full jitter.

use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::context::WrapContext;
use crate::error::Error;
use crate::provider::{Health, KeyProvider, KeyRotation};
use crate::rng::SplitMix64;
use crate::secret::UnwrappedShare;
use crate::wrapped::{KeyVersion, ProviderKind, WrappedShare};

/// How [`Retry`] retries: attempts, backoff and the total time budget.
///
/// Before attempt *n* + 1 it sleeps a uniformly random time in
/// `[0, min(max_delay, base_delay × 2^(n−1))]` ("full jitter", which spreads the retries of many
/// clients instead of synchronising them), or at least the `retry_after` a throttling backend
/// asked for. It gives up, returning the last error, after `max_attempts` attempts or when the
/// next sleep would end later than `max_elapsed` after the first attempt started.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use kms_providers::RetryPolicy;
///
/// let policy = RetryPolicy::default()
///     .max_attempts(5)
///     .base_delay(Duration::from_millis(20))
///     .max_delay(Duration::from_secs(1))
///     .max_elapsed(Duration::from_secs(5));
/// assert_eq!(policy.get_max_attempts(), 5);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct RetryPolicy {
    max_attempts: u32,
    base_delay: Duration,
    max_delay: Duration,
    max_elapsed: Duration,
}

impl Default for RetryPolicy {
    /// 4 attempts, 50 ms base delay, 2 s cap per sleep, 10 s total.
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
            max_elapsed: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// Total attempts including the first (1 disables retries).
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::RetryPolicy;
    /// let p = RetryPolicy::default().max_attempts(1);
    /// ```
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }

    /// The first backoff ceiling; it doubles per attempt.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kms_providers::RetryPolicy;
    /// let p = RetryPolicy::default().base_delay(Duration::from_millis(10));
    /// ```
    pub fn base_delay(mut self, d: Duration) -> Self {
        self.base_delay = d;
        self
    }

    /// The largest backoff ceiling.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kms_providers::RetryPolicy;
    /// let p = RetryPolicy::default().max_delay(Duration::from_millis(500));
    /// ```
    pub fn max_delay(mut self, d: Duration) -> Self {
        self.max_delay = d;
        self
    }

    /// The time budget from the first attempt's start to the last sleep's end.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kms_providers::RetryPolicy;
    /// let p = RetryPolicy::default().max_elapsed(Duration::from_secs(3));
    /// ```
    pub fn max_elapsed(mut self, d: Duration) -> Self {
        self.max_elapsed = d;
        self
    }

    /// The configured number of attempts.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::RetryPolicy;
    /// assert_eq!(RetryPolicy::default().get_max_attempts(), 4);
    /// ```
    pub fn get_max_attempts(&self) -> u32 {
        self.max_attempts
    }

    fn validate(&self, provider: &str) -> Result<(), Error> {
        if self.max_attempts == 0 {
            return Err(Error::misconfigured(
                provider,
                "retry: max_attempts must be at least 1",
            ));
        }
        if self.base_delay.is_zero() || self.base_delay > self.max_delay {
            return Err(Error::misconfigured(
                provider,
                "retry: base_delay must be above zero and at most max_delay",
            ));
        }
        Ok(())
    }

    /// The backoff ceiling before attempt `attempt + 1` (attempt counts from 1).
    fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// Retries transient failures ([`Error::is_transient`]) of the inner provider; permanent errors
/// return at once. [`Error::CircuitOpen`] is not retried either: the breaker has already decided
/// the provider is down, and spinning inside one call until its cool-down ends would defeat the
/// point of failing fast.
///
/// Retrying a wrap is safe: a wrap that timed out but succeeded produces a wrapped share nobody
/// stores.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use kms_providers::{KeyProvider, LocalProvider, Retry, RetryPolicy};
///
/// let dir = tempfile::tempdir()?;
/// let local = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
/// let provider = Retry::new(local, RetryPolicy::default())?;
/// provider.health().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Retry<P> {
    inner: P,
    policy: RetryPolicy,
    jitter: Mutex<SplitMix64>,
}

impl<P: KeyProvider> Retry<P> {
    /// Wraps `inner` with a retry policy; jitter is seeded from the OS.
    ///
    /// # Errors
    ///
    /// [`Error::Misconfigured`] for zero attempts or a base delay of zero or above the cap.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::{LocalProvider, Retry, RetryPolicy};
    /// # let dir = tempfile::tempdir()?;
    /// # let local = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
    /// assert!(Retry::new(local, RetryPolicy::default().max_attempts(0)).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(inner: P, policy: RetryPolicy) -> Result<Self, Error> {
        Self::with_jitter(inner, policy, SplitMix64::from_os_seed())
    }

    /// As [`new`](Self::new) with a fixed jitter seed, for reproducible tests.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::{LocalProvider, Retry, RetryPolicy};
    /// # let dir = tempfile::tempdir()?;
    /// # let local = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
    /// let r = Retry::with_seed(local, RetryPolicy::default(), 42)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_seed(inner: P, policy: RetryPolicy, seed: u64) -> Result<Self, Error> {
        Self::with_jitter(inner, policy, SplitMix64::new(seed))
    }

    fn with_jitter(inner: P, policy: RetryPolicy, jitter: SplitMix64) -> Result<Self, Error> {
        policy.validate(inner.name())?;
        Ok(Self {
            inner,
            policy,
            jitter: Mutex::new(jitter),
        })
    }

    /// The policy.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::{LocalProvider, Retry, RetryPolicy};
    /// # let dir = tempfile::tempdir()?;
    /// # let local = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
    /// let r = Retry::new(local, RetryPolicy::default())?;
    /// assert_eq!(r.policy(), &RetryPolicy::default());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// The wrapped provider.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::{KeyProvider, LocalProvider, Retry, RetryPolicy};
    /// # let dir = tempfile::tempdir()?;
    /// # let local = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
    /// assert_eq!(Retry::new(local, RetryPolicy::default())?.get_ref().name(), "gcp");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_ref(&self) -> &P {
        &self.inner
    }

    async fn run<T, F, Fut>(&self, mut op: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut + Send,
        Fut: Future<Output = Result<T, Error>> + Send,
        T: Send,
    {
        let start = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt = attempt.saturating_add(1);
            let err = match op().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let retryable = err.is_transient() && !matches!(err, Error::CircuitOpen { .. });
            if !retryable || attempt >= self.policy.max_attempts {
                return Err(err);
            }
            let mut delay = {
                let mut rng = self.jitter.lock().unwrap_or_else(PoisonError::into_inner);
                rng.duration_up_to(self.policy.ceiling(attempt))
            };
            if let Error::Throttled {
                retry_after: Some(wait),
                ..
            } = &err
            {
                delay = delay.max(*wait);
            }
            if start.elapsed().saturating_add(delay) > self.policy.max_elapsed {
                return Err(err);
            }
            tokio::time::sleep(delay).await;
        }
    }
}

#[async_trait]
impl<P: KeyProvider> KeyProvider for Retry<P> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn kind(&self) -> ProviderKind {
        self.inner.kind()
    }

    async fn wrap(&self, share: &[u8], context: &WrapContext) -> Result<WrappedShare, Error> {
        self.run(|| self.inner.wrap(share, context)).await
    }

    async fn unwrap(
        &self,
        wrapped: &WrappedShare,
        context: &WrapContext,
    ) -> Result<UnwrappedShare, Error> {
        self.run(|| self.inner.unwrap(wrapped, context)).await
    }

    async fn health(&self) -> Result<Health, Error> {
        self.run(|| self.inner.health()).await
    }
}

/// Rotation is not idempotent (each call creates a version), so it is never retried.
#[async_trait]
impl<P: KeyRotation> KeyRotation for Retry<P> {
    async fn rotate(&self) -> Result<KeyVersion, Error> {
        self.inner.rotate().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_and_cap() {
        let p = RetryPolicy::default()
            .base_delay(Duration::from_millis(50))
            .max_delay(Duration::from_millis(300));
        assert_eq!(p.ceiling(1), Duration::from_millis(50));
        assert_eq!(p.ceiling(2), Duration::from_millis(100));
        assert_eq!(p.ceiling(3), Duration::from_millis(200));
        assert_eq!(p.ceiling(4), Duration::from_millis(300));
        assert_eq!(p.ceiling(200), Duration::from_millis(300));
    }
}
