//! The recommended stack of layers, in the right order, with sane defaults.

use std::time::Duration;

use super::{BreakerConfig, CircuitBreaker, ConcurrencyLimit, Retry, RetryPolicy, Timeout};
use crate::error::Error;
use crate::provider::KeyProvider;

/// A provider inside the full stack built by [`LayerStack`], outermost first:
/// [`Retry`] → [`ConcurrencyLimit`] → [`CircuitBreaker`] → [`Timeout`] → the provider.
///
/// # Example
///
/// ```
/// use kms_providers::{LayerStack, Layered, LocalProvider};
/// # let dir = tempfile::tempdir()?;
/// let p: Layered<LocalProvider> = LayerStack::new().build(LocalProvider::builder("gcp").key_dir(dir.path()).build()?)?;
/// // Reach the breaker to read its state:
/// let state = p.get_ref().get_ref().state();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub type Layered<P> = Retry<ConcurrencyLimit<CircuitBreaker<Timeout<P>>>>;

/// Builds a [`Layered`] provider: per-call timeout, circuit breaker, concurrency limit and
/// retries, stacked so that each sees what it should:
///
/// 1. [`Retry`] is outermost, so each attempt goes through everything below and waiting between
///    attempts holds no concurrency slot.
/// 2. [`ConcurrencyLimit`] sits above the breaker and the timeout, so time spent queueing for a
///    slot is neither counted against the per-call timeout nor seen by the breaker as a provider
///    failure: our own load must not open the circuit.
/// 3. [`CircuitBreaker`] sits above [`Timeout`], so a hung provider counts as a failure and an
///    open circuit fails fast before any timer starts.
/// 4. [`Timeout`] is innermost: it limits each real call to the provider.
///
/// Defaults: 5 s timeout, [`RetryPolicy::default`] (4 attempts, 50 ms to 2 s full-jitter
/// backoff, 10 s budget), 64 concurrent calls, [`BreakerConfig::default`] (open after 5
/// consecutive transient failures, probe after 30 s).
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use kms_providers::{KeyProvider, LayerStack, LocalProvider, WrapContext};
///
/// let dir = tempfile::tempdir()?;
/// let local = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
/// let provider = LayerStack::new()
///     .timeout(Duration::from_secs(2))
///     .max_concurrency(16)
///     .build(local)?;
///
/// let ctx = WrapContext::new("v", "p", 1, 1, "shamir-2-of-3")?;
/// let wrapped = provider.wrap(&[1; 32], &ctx).await?;
/// assert_eq!(provider.unwrap(&wrapped, &ctx).await?.expose_secret(), &[1; 32]);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct LayerStack {
    timeout: Duration,
    retry: RetryPolicy,
    max_concurrency: usize,
    breaker: BreakerConfig,
    jitter_seed: Option<u64>,
}

impl Default for LayerStack {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            max_concurrency: 64,
            breaker: BreakerConfig::default(),
            jitter_seed: None,
        }
    }
}

impl LayerStack {
    /// The defaults listed above.
    ///
    /// # Example
    ///
    /// ```
    /// let stack = kms_providers::LayerStack::new();
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Time limit of each call to the provider.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// let stack = kms_providers::LayerStack::new().timeout(Duration::from_millis(800));
    /// ```
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = limit;
        self
    }

    /// Retry policy.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::{LayerStack, RetryPolicy};
    /// let stack = LayerStack::new().retry(RetryPolicy::default().max_attempts(2));
    /// ```
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Fixed jitter seed for the retry layer, for reproducible tests and benchmarks.
    ///
    /// # Example
    ///
    /// ```
    /// let stack = kms_providers::LayerStack::new().jitter_seed(7);
    /// ```
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.jitter_seed = Some(seed);
        self
    }

    /// Most calls in flight at once.
    ///
    /// # Example
    ///
    /// ```
    /// let stack = kms_providers::LayerStack::new().max_concurrency(4);
    /// ```
    pub fn max_concurrency(mut self, max: usize) -> Self {
        self.max_concurrency = max;
        self
    }

    /// Circuit-breaker settings.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::{BreakerConfig, LayerStack};
    /// let stack = LayerStack::new().circuit_breaker(BreakerConfig::default().failure_threshold(3));
    /// ```
    pub fn circuit_breaker(mut self, config: BreakerConfig) -> Self {
        self.breaker = config;
        self
    }

    /// Stacks the layers around `provider`.
    ///
    /// # Errors
    ///
    /// [`Error::Misconfigured`] naming the provider when any setting is invalid (zero timeout,
    /// zero concurrency, zero attempts, zero threshold or cool-down, base delay above the cap).
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::{LayerStack, LocalProvider};
    /// # let dir = tempfile::tempdir()?;
    /// # let local = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
    /// assert!(LayerStack::new().max_concurrency(0).build(local).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn build<P: KeyProvider>(&self, provider: P) -> Result<Layered<P>, Error> {
        let timed = Timeout::new(provider, self.timeout)?;
        let guarded = CircuitBreaker::new(timed, self.breaker.clone())?;
        let limited = ConcurrencyLimit::new(guarded, self.max_concurrency)?;
        match self.jitter_seed {
            Some(seed) => Retry::with_seed(limited, self.retry.clone(), seed),
            None => Retry::new(limited, self.retry.clone()),
        }
    }
}
