//! A seeded, deterministic fault injector (feature `fault-injection`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;

use crate::context::WrapContext;
use crate::error::Error;
use crate::provider::{Health, KeyProvider, KeyRotation};
use crate::rng::SplitMix64;
use crate::secret::UnwrappedShare;
use crate::wrapped::{KeyVersion, ProviderKind, WrappedShare};

/// Added latency per call.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use kms_providers::Latency;
///
/// let l = Latency::Jittered { base: Duration::from_millis(20), jitter: Duration::from_millis(10) };
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[non_exhaustive]
pub enum Latency {
    /// No added latency.
    #[default]
    None,
    /// The same delay on every call.
    Fixed(Duration),
    /// `base` plus a uniformly random extra in `[0, jitter]`.
    Jittered {
        /// The minimum delay.
        base: Duration,
        /// The spread above it.
        jitter: Duration,
    },
}

/// The error an injected failure returns.
///
/// # Example
///
/// ```
/// use kms_providers::InjectedError;
/// assert_eq!(InjectedError::default(), InjectedError::Unavailable);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[non_exhaustive]
pub enum InjectedError {
    /// [`Error::Unavailable`] (transient).
    #[default]
    Unavailable,
    /// [`Error::Throttled`] (transient).
    Throttled,
    /// [`Error::Timeout`] (transient), as if the backend had timed out itself.
    Timeout,
    /// [`Error::PermissionDenied`] (permanent).
    PermissionDenied,
}

/// What the injector does, drawn from a seed.
///
/// Rates are probabilities in `[0, 1]`, drawn independently per call. Each call consumes the
/// same number of random draws whatever the outcome, so a seed fixes the whole sequence of
/// [`FaultPlan`]s: the n-th call always gets the n-th plan.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use kms_providers::{FaultConfig, InjectedError, Latency};
///
/// let config = FaultConfig::new(42)
///     .error_rate(0.1)
///     .error(InjectedError::Throttled)
///     .latency(Latency::Fixed(Duration::from_millis(5)))
///     .corrupt_rate(0.01)
///     .hang_rate(0.001);
/// ```
#[derive(Clone, PartialEq, Debug)]
#[must_use]
pub struct FaultConfig {
    seed: u64,
    error_rate: f64,
    error: InjectedError,
    latency: Latency,
    corrupt_rate: f64,
    hang_rate: f64,
}

impl FaultConfig {
    /// No faults yet, with this seed.
    ///
    /// # Example
    ///
    /// ```
    /// let config = kms_providers::FaultConfig::new(1);
    /// ```
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            error_rate: 0.0,
            error: InjectedError::default(),
            latency: Latency::None,
            corrupt_rate: 0.0,
            hang_rate: 0.0,
        }
    }

    /// Probability that a call fails with [`error`](Self::error) instead of reaching the provider.
    ///
    /// # Example
    ///
    /// ```
    /// let config = kms_providers::FaultConfig::new(1).error_rate(0.5);
    /// ```
    pub fn error_rate(mut self, rate: f64) -> Self {
        self.error_rate = rate;
        self
    }

    /// The error injected failures return.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::{FaultConfig, InjectedError};
    /// let config = FaultConfig::new(1).error(InjectedError::Timeout);
    /// ```
    pub fn error(mut self, error: InjectedError) -> Self {
        self.error = error;
        self
    }

    /// Latency added before every call.
    ///
    /// # Example
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use kms_providers::{FaultConfig, Latency};
    /// let config = FaultConfig::new(1).latency(Latency::Fixed(Duration::from_millis(3)));
    /// ```
    pub fn latency(mut self, latency: Latency) -> Self {
        self.latency = latency;
        self
    }

    /// Probability that a successful unwrap returns the share with one bit flipped (a
    /// misbehaving provider, which the custody layer must detect).
    ///
    /// # Example
    ///
    /// ```
    /// let config = kms_providers::FaultConfig::new(1).corrupt_rate(1.0);
    /// ```
    pub fn corrupt_rate(mut self, rate: f64) -> Self {
        self.corrupt_rate = rate;
        self
    }

    /// Probability that a call never completes (only a timeout or cancellation ends it).
    ///
    /// # Example
    ///
    /// ```
    /// let config = kms_providers::FaultConfig::new(1).hang_rate(0.01);
    /// ```
    pub fn hang_rate(mut self, rate: f64) -> Self {
        self.hang_rate = rate;
        self
    }

    /// The seed.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(kms_providers::FaultConfig::new(9).seed(), 9);
    /// ```
    pub fn seed(&self) -> u64 {
        self.seed
    }

    fn validate(&self, provider: &str) -> Result<(), Error> {
        for (what, rate) in [
            ("error_rate", self.error_rate),
            ("corrupt_rate", self.corrupt_rate),
            ("hang_rate", self.hang_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(Error::misconfigured(
                    provider,
                    format!("fault injection: {what} must be between 0 and 1"),
                ));
            }
        }
        Ok(())
    }
}

/// The faults one call gets.
///
/// # Example
///
/// ```
/// use kms_providers::{FaultConfig, FaultSchedule};
///
/// let plan = FaultSchedule::new(&FaultConfig::new(3).error_rate(1.0)).next_plan();
/// assert!(plan.error);
/// assert!(!plan.hang);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub struct FaultPlan {
    /// Latency added before anything else.
    pub delay: Duration,
    /// The call never completes.
    pub hang: bool,
    /// The call fails with the configured error.
    pub error: bool,
    /// An unwrap returns a corrupted share.
    pub corrupt: bool,
    /// Which bit to flip when corrupting: bit `corrupt_bit % (8 × len)` of the share.
    pub corrupt_bit: u64,
}

/// The deterministic sequence of [`FaultPlan`]s a [`FaultConfig`] produces.
///
/// # Example
///
/// ```
/// use kms_providers::{FaultConfig, FaultSchedule};
///
/// let config = FaultConfig::new(7).error_rate(0.3);
/// let a: Vec<_> = FaultSchedule::new(&config).take(100).collect();
/// let b: Vec<_> = FaultSchedule::new(&config).take(100).collect();
/// assert_eq!(a, b);
/// ```
#[derive(Clone, Debug)]
pub struct FaultSchedule {
    rng: SplitMix64,
    config: FaultConfig,
}

impl FaultSchedule {
    /// The schedule of `config`, from its first call.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::{FaultConfig, FaultSchedule};
    /// let mut s = FaultSchedule::new(&FaultConfig::new(1));
    /// assert!(!s.next_plan().error);
    /// ```
    pub fn new(config: &FaultConfig) -> Self {
        Self {
            rng: SplitMix64::new(config.seed),
            config: config.clone(),
        }
    }

    /// The next call's plan.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::{FaultConfig, FaultSchedule};
    /// let mut s = FaultSchedule::new(&FaultConfig::new(1).hang_rate(1.0));
    /// assert!(s.next_plan().hang);
    /// ```
    pub fn next_plan(&mut self) -> FaultPlan {
        // Always five draws, in this order, so outcomes never shift later plans.
        let jitter_draw = self.rng.next_u64();
        let hang_draw = self.rng.next_f64();
        let error_draw = self.rng.next_f64();
        let corrupt_draw = self.rng.next_f64();
        let corrupt_bit = self.rng.next_u64();
        let delay = match self.config.latency {
            Latency::None => Duration::ZERO,
            Latency::Fixed(d) => d,
            Latency::Jittered { base, jitter } => {
                let span = u64::try_from(jitter.as_nanos()).unwrap_or(u64::MAX);
                let extra = SplitMix64::new(jitter_draw).below(span.saturating_add(1));
                base.saturating_add(Duration::from_nanos(extra))
            }
        };
        FaultPlan {
            delay,
            hang: hang_draw < self.config.hang_rate,
            error: error_draw < self.config.error_rate,
            corrupt: corrupt_draw < self.config.corrupt_rate,
            corrupt_bit,
        }
    }
}

impl Iterator for FaultSchedule {
    type Item = FaultPlan;

    fn next(&mut self) -> Option<FaultPlan> {
        Some(self.next_plan())
    }
}

/// Counts of what a [`FaultInjector`] did.
///
/// # Example
///
/// ```
/// let stats = kms_providers::FaultStats::default();
/// assert_eq!(stats.calls, 0);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[non_exhaustive]
pub struct FaultStats {
    /// Calls seen.
    pub calls: u64,
    /// Calls failed with the injected error (outages included).
    pub errors: u64,
    /// Calls left hanging.
    pub hangs: u64,
    /// Unwraps that returned a corrupted share.
    pub corruptions: u64,
}

#[derive(Debug, Default)]
struct Counters {
    calls: AtomicU64,
    errors: AtomicU64,
    hangs: AtomicU64,
    corruptions: AtomicU64,
}

/// A layer that injects faults into calls to the inner provider: errors, latency, corrupted
/// unwrap results and hangs, drawn from a seeded [`FaultSchedule`]; plus an outage switch that
/// fails every call while set. For tests and benchmarks of the layers and of the custody code.
///
/// Calls take plans in the order they reach the injector; with sequential calls a seed
/// therefore reproduces the exact run.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use kms_providers::{FaultConfig, FaultInjector, KeyProvider, LocalProvider, WrapContext};
///
/// let dir = tempfile::tempdir()?;
/// let local = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
/// let flaky = FaultInjector::new(local, FaultConfig::new(1))?;
/// let ctx = WrapContext::new("v", "p", 1, 1, "m")?;
///
/// flaky.set_outage(true);
/// assert!(flaky.wrap(b"share", &ctx).await.unwrap_err().is_transient());
/// flaky.set_outage(false);
/// assert!(flaky.wrap(b"share", &ctx).await.is_ok());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct FaultInjector<P> {
    inner: P,
    config: FaultConfig,
    schedule: Mutex<FaultSchedule>,
    outage: AtomicBool,
    counters: Counters,
}

impl<P: KeyProvider> FaultInjector<P> {
    /// Wraps `inner`.
    ///
    /// # Errors
    ///
    /// [`Error::Misconfigured`] when a rate is outside `[0, 1]` (or NaN).
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::{FaultConfig, FaultInjector, LocalProvider};
    /// # let dir = tempfile::tempdir()?;
    /// # let local = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
    /// assert!(FaultInjector::new(local, FaultConfig::new(1).error_rate(1.5)).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(inner: P, config: FaultConfig) -> Result<Self, Error> {
        config.validate(inner.name())?;
        Ok(Self {
            schedule: Mutex::new(FaultSchedule::new(&config)),
            inner,
            config,
            outage: AtomicBool::new(false),
            counters: Counters::default(),
        })
    }

    /// While `true`, every call fails with the configured error, as if the provider were down.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::{FaultConfig, FaultInjector, LocalProvider};
    /// # let dir = tempfile::tempdir()?;
    /// # let local = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
    /// let f = FaultInjector::new(local, FaultConfig::new(1))?;
    /// f.set_outage(true);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_outage(&self, down: bool) {
        self.outage.store(down, Ordering::SeqCst);
    }

    /// What the injector has done so far.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::{FaultConfig, FaultInjector, LocalProvider};
    /// # let dir = tempfile::tempdir()?;
    /// # let local = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
    /// let f = FaultInjector::new(local, FaultConfig::new(1))?;
    /// assert_eq!(f.stats().calls, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stats(&self) -> FaultStats {
        FaultStats {
            calls: self.counters.calls.load(Ordering::Relaxed),
            errors: self.counters.errors.load(Ordering::Relaxed),
            hangs: self.counters.hangs.load(Ordering::Relaxed),
            corruptions: self.counters.corruptions.load(Ordering::Relaxed),
        }
    }

    /// The configuration.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::{FaultConfig, FaultInjector, LocalProvider};
    /// # let dir = tempfile::tempdir()?;
    /// # let local = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
    /// let f = FaultInjector::new(local, FaultConfig::new(5))?;
    /// assert_eq!(f.config().seed(), 5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn config(&self) -> &FaultConfig {
        &self.config
    }

    /// The wrapped provider.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::{FaultConfig, FaultInjector, KeyProvider, LocalProvider};
    /// # let dir = tempfile::tempdir()?;
    /// # let local = LocalProvider::builder("gcp").key_dir(dir.path()).build()?;
    /// let f = FaultInjector::new(local, FaultConfig::new(5))?;
    /// assert_eq!(f.get_ref().name(), "gcp");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_ref(&self) -> &P {
        &self.inner
    }

    fn injected(&self) -> Error {
        let provider = self.inner.name().to_owned();
        let reason = "injected fault".to_owned();
        match self.config.error {
            InjectedError::Unavailable => Error::Unavailable {
                provider,
                reason,
                source: None,
            },
            InjectedError::Throttled => Error::Throttled {
                provider,
                retry_after: None,
                source: None,
            },
            InjectedError::Timeout => Error::Timeout {
                provider,
                after: Duration::ZERO,
            },
            InjectedError::PermissionDenied => Error::PermissionDenied {
                provider,
                reason,
                source: None,
            },
        }
    }

    /// Applies the latency, outage, hang and error parts of the next plan; returns the plan so
    /// that unwrap can apply the corruption part.
    async fn before_call(&self) -> Result<FaultPlan, Error> {
        let plan = self
            .schedule
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .next_plan();
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        if !plan.delay.is_zero() {
            tokio::time::sleep(plan.delay).await;
        }
        if self.outage.load(Ordering::SeqCst) {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
            return Err(self.injected());
        }
        if plan.hang {
            self.counters.hangs.fetch_add(1, Ordering::Relaxed);
            std::future::pending::<()>().await;
        }
        if plan.error {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
            return Err(self.injected());
        }
        Ok(plan)
    }
}

#[async_trait]
impl<P: KeyProvider> KeyProvider for FaultInjector<P> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn kind(&self) -> ProviderKind {
        self.inner.kind()
    }

    async fn wrap(&self, share: &[u8], context: &WrapContext) -> Result<WrappedShare, Error> {
        self.before_call().await?;
        self.inner.wrap(share, context).await
    }

    async fn unwrap(
        &self,
        wrapped: &WrappedShare,
        context: &WrapContext,
    ) -> Result<UnwrappedShare, Error> {
        let plan = self.before_call().await?;
        let share = self.inner.unwrap(wrapped, context).await?;
        if !plan.corrupt || share.is_empty() {
            return Ok(share);
        }
        self.counters.corruptions.fetch_add(1, Ordering::Relaxed);
        let mut bytes = share.into_zeroizing();
        // The position comes from the fault schedule, not from the secret.
        let bits = u64::try_from(bytes.len())
            .unwrap_or(u64::MAX)
            .saturating_mul(8);
        let bit = plan.corrupt_bit % bits;
        let byte = usize::try_from(bit / 8).unwrap_or(0);
        if let Some(b) = bytes.get_mut(byte) {
            *b ^= 1 << (bit % 8);
        }
        Ok(UnwrappedShare::new(bytes))
    }

    async fn health(&self) -> Result<Health, Error> {
        self.before_call().await?;
        self.inner.health().await
    }
}

/// Rotation is an administrative call and goes straight to the provider, without faults.
#[async_trait]
impl<P: KeyRotation> KeyRotation for FaultInjector<P> {
    async fn rotate(&self) -> Result<KeyVersion, Error> {
        self.inner.rotate().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_respected() {
        let config = FaultConfig::new(11)
            .error_rate(0.25)
            .corrupt_rate(0.5)
            .hang_rate(0.0)
            .latency(Latency::Jittered {
                base: Duration::from_millis(10),
                jitter: Duration::from_millis(5),
            });
        let plans: Vec<_> = FaultSchedule::new(&config).take(20_000).collect();
        let errors = plans.iter().filter(|p| p.error).count();
        let corrupt = plans.iter().filter(|p| p.corrupt).count();
        assert!((4_500..5_500).contains(&errors), "{errors}");
        assert!((9_500..10_500).contains(&corrupt), "{corrupt}");
        assert!(plans.iter().all(|p| !p.hang));
        assert!(
            plans
                .iter()
                .all(|p| p.delay >= Duration::from_millis(10)
                    && p.delay <= Duration::from_millis(15))
        );
        // Different seeds give different schedules.
        let other: Vec<_> = FaultSchedule::new(&FaultConfig { seed: 12, ..config })
            .take(100)
            .collect();
        assert_ne!(&plans[..100], &other[..]);
    }

    #[test]
    fn nan_rates_are_refused() {
        assert!(
            FaultConfig::new(1)
                .error_rate(f64::NAN)
                .validate("p")
                .is_err()
        );
        assert!(FaultConfig::new(1).hang_rate(-0.1).validate("p").is_err());
        assert!(FaultConfig::new(1).corrupt_rate(1.0).validate("p").is_ok());
    }
}
