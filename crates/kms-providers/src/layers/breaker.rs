//! A circuit breaker: fail fast while a provider is down, probe it back.

use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::context::WrapContext;
use crate::error::Error;
use crate::provider::{Health, KeyProvider, KeyRotation};
use crate::secret::UnwrappedShare;
use crate::wrapped::{KeyVersion, ProviderKind, WrappedShare};

/// When a [`CircuitBreaker`] opens and how long it stays open.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use kms_providers::BreakerConfig;
///
/// let config = BreakerConfig::default()
///     .failure_threshold(3)
///     .cool_down(Duration::from_secs(5));
/// assert_eq!(config.get_failure_threshold(), 3);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct BreakerConfig {
    failure_threshold: u32,
    cool_down: Duration,
}

impl Default for BreakerConfig {
    /// Opens after 5 consecutive transient failures; probes after 30 s.
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            cool_down: Duration::from_secs(30),
        }
    }
}

impl BreakerConfig {
    /// Consecutive transient failures that open the circuit.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::BreakerConfig;
    /// let c = BreakerConfig::default().failure_threshold(10);
    /// ```
    pub fn failure_threshold(mut self, n: u32) -> Self {
        self.failure_threshold = n;
        self
    }

    /// How long the circuit stays open before one probe call is let through.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kms_providers::BreakerConfig;
    /// let c = BreakerConfig::default().cool_down(Duration::from_secs(10));
    /// ```
    pub fn cool_down(mut self, d: Duration) -> Self {
        self.cool_down = d;
        self
    }

    /// The configured threshold.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::BreakerConfig;
    /// assert_eq!(BreakerConfig::default().get_failure_threshold(), 5);
    /// ```
    pub fn get_failure_threshold(&self) -> u32 {
        self.failure_threshold
    }

    /// The configured cool-down.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kms_providers::BreakerConfig;
    /// assert_eq!(BreakerConfig::default().get_cool_down(), Duration::from_secs(30));
    /// ```
    pub fn get_cool_down(&self) -> Duration {
        self.cool_down
    }
}

/// The state of a [`CircuitBreaker`], for monitoring.
///
/// # Example
///
/// ```
/// use kms_providers::CircuitState;
/// assert_ne!(CircuitState::Open, CircuitState::Closed);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum CircuitState {
    /// Calls go through; consecutive transient failures are counted.
    Closed,
    /// Calls fail fast with [`Error::CircuitOpen`] until the cool-down ends.
    Open,
    /// The cool-down has ended: the next call (one at a time) probes the provider.
    HalfOpen,
}

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Admission {
    Normal,
    Probe,
}

/// Stops calling a provider that keeps failing, so callers fail fast (with the transient
/// [`Error::CircuitOpen`]) instead of queueing behind timeouts, and lets one probe call through
/// after a cool-down to find out whether it is back.
///
/// Only transient errors count as failures: a permanent error such as
/// [`Error::AuthenticationFailed`] means the provider answered, so it resets the count like a
/// success. A successful probe closes the circuit; a failed probe opens it for another cool-down;
/// a cancelled probe (the caller gave up) lets the next call probe instead.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use kms_providers::{BreakerConfig, CircuitBreaker, CircuitState, KeyProvider, LocalProvider};
///
/// let dir = tempfile::tempdir()?;
/// let local = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
/// let provider = CircuitBreaker::new(local, BreakerConfig::default())?;
/// provider.health().await?;
/// assert_eq!(provider.state(), CircuitState::Closed);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct CircuitBreaker<P> {
    inner: P,
    config: BreakerConfig,
    state: Mutex<State>,
}

/// Returns a probe's slot if the probe future is dropped before it finishes.
struct ProbeGuard<'a> {
    state: &'a Mutex<State>,
    armed: bool,
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if matches!(*state, State::HalfOpen { probing: true }) {
                *state = State::HalfOpen { probing: false };
            }
        }
    }
}

impl<P: KeyProvider> CircuitBreaker<P> {
    /// Wraps `inner` with a circuit breaker.
    ///
    /// # Errors
    ///
    /// [`Error::Misconfigured`] for a zero threshold or cool-down.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::{BreakerConfig, CircuitBreaker, LocalProvider};
    /// # let dir = tempfile::tempdir()?;
    /// # let local = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
    /// assert!(CircuitBreaker::new(local, BreakerConfig::default().failure_threshold(0)).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(inner: P, config: BreakerConfig) -> Result<Self, Error> {
        if config.failure_threshold == 0 || config.cool_down.is_zero() {
            return Err(Error::misconfigured(
                inner.name(),
                "circuit breaker: the failure threshold and the cool-down must be above zero",
            ));
        }
        Ok(Self {
            inner,
            config,
            state: Mutex::new(State::Closed { failures: 0 }),
        })
    }

    /// The current state. An open circuit whose cool-down has ended reports
    /// [`CircuitState::HalfOpen`]: the next call will probe.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::{BreakerConfig, CircuitBreaker, CircuitState, LocalProvider};
    /// # let dir = tempfile::tempdir()?;
    /// # let local = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
    /// let b = CircuitBreaker::new(local, BreakerConfig::default())?;
    /// assert_eq!(b.state(), CircuitState::Closed);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn state(&self) -> CircuitState {
        match *self.lock() {
            State::Closed { .. } => CircuitState::Closed,
            State::Open { until } if Instant::now() < until => CircuitState::Open,
            State::Open { .. } | State::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }

    /// The wrapped provider.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::{BreakerConfig, CircuitBreaker, KeyProvider, LocalProvider};
    /// # let dir = tempfile::tempdir()?;
    /// # let local = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
    /// assert_eq!(CircuitBreaker::new(local, BreakerConfig::default())?.get_ref().name(), "gcp");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_ref(&self) -> &P {
        &self.inner
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // State transitions never panic midway, so a poisoned lock still holds a valid state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn admit(&self) -> Result<Admission, Error> {
        let mut state = self.lock();
        let now = Instant::now();
        match *state {
            State::Closed { .. } => Ok(Admission::Normal),
            State::Open { until } if now < until => Err(Error::CircuitOpen {
                provider: self.inner.name().to_owned(),
                retry_in: until.saturating_duration_since(now),
            }),
            State::Open { .. } | State::HalfOpen { probing: false } => {
                *state = State::HalfOpen { probing: true };
                Ok(Admission::Probe)
            }
            // A probe is already in flight; its outcome decides. Nothing to wait for but it.
            State::HalfOpen { probing: true } => Err(Error::CircuitOpen {
                provider: self.inner.name().to_owned(),
                retry_in: Duration::ZERO,
            }),
        }
    }

    fn record(&self, admission: Admission, transient_failure: bool) {
        let mut state = self.lock();
        let open = State::Open {
            until: Instant::now() + self.config.cool_down,
        };
        match (admission, &mut *state) {
            (Admission::Probe, _) => {
                *state = if transient_failure {
                    open
                } else {
                    State::Closed { failures: 0 }
                };
            }
            (Admission::Normal, State::Closed { failures }) => {
                if transient_failure {
                    *failures = failures.saturating_add(1);
                    if *failures >= self.config.failure_threshold {
                        *state = open;
                    }
                } else {
                    *failures = 0;
                }
            }
            // A call admitted before the circuit opened finished afterwards: the probe, not a
            // straggler, decides when the circuit closes again.
            (Admission::Normal, State::Open { .. } | State::HalfOpen { .. }) => {}
        }
    }

    async fn call<T, F, Fut>(&self, op: F) -> Result<T, Error>
    where
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = Result<T, Error>> + Send,
        T: Send,
    {
        let admission = self.admit()?;
        let mut guard = ProbeGuard {
            state: &self.state,
            armed: admission == Admission::Probe,
        };
        let result = op().await;
        guard.armed = false;
        self.record(admission, matches!(&result, Err(e) if e.is_transient()));
        result
    }
}

#[async_trait]
impl<P: KeyProvider> KeyProvider for CircuitBreaker<P> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn kind(&self) -> ProviderKind {
        self.inner.kind()
    }

    async fn wrap(&self, share: &[u8], context: &WrapContext) -> Result<WrappedShare, Error> {
        self.call(|| self.inner.wrap(share, context)).await
    }

    async fn unwrap(
        &self,
        wrapped: &WrappedShare,
        context: &WrapContext,
    ) -> Result<UnwrappedShare, Error> {
        self.call(|| self.inner.unwrap(wrapped, context)).await
    }

    async fn health(&self) -> Result<Health, Error> {
        self.call(|| self.inner.health()).await
    }
}

/// Rotation is an administrative call and goes straight to the provider.
#[async_trait]
impl<P: KeyRotation> KeyRotation for CircuitBreaker<P> {
    async fn rotate(&self) -> Result<KeyVersion, Error> {
        self.inner.rotate().await
    }
}
