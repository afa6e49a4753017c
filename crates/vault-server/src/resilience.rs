//! Resilience settings for key providers: the kms-providers [`LayerStack`] around each one.

use std::collections::BTreeMap;
use std::time::Duration;

use kms_providers::{BreakerConfig, LayerStack, RetryPolicy};
use serde::Deserialize;

use crate::config::ConfigError;

/// The resilience layers the server puts around one key provider: a per-call timeout, retries
/// with full-jitter exponential backoff for transient errors, a circuit breaker and a limit on
/// calls in flight (kms-providers' [`LayerStack`], in its order:
/// retry → concurrency limit → circuit breaker → timeout → provider).
///
/// Set for every provider in a `[resilience]` section and per provider in its
/// `[providers.NAME]` table, with the same keys; a provider's own keys win. The defaults are
/// kms-providers' own.
///
/// | key | default | range |
/// |---|---|---|
/// | `timeout_ms` | 5000 | 1–600000 |
/// | `retry_attempts` | 4 (1 = no retry) | 1–20 |
/// | `retry_base_delay_ms` | 50 | 1–60000 |
/// | `retry_max_delay_ms` | 2000 | `retry_base_delay_ms`–600000 |
/// | `retry_budget_ms` | 10000 | 1–3600000 |
/// | `max_concurrency` | 64 | 1–100000 |
/// | `breaker_failure_threshold` | 5 | 1–100000 |
/// | `breaker_cool_down_ms` | 30000 | 1–3600000 |
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use vault_server::Config;
///
/// let config = Config::from_toml_str(r#"
///     [resilience]
///     timeout_ms = 2000
///     [providers.gcp]
///     backend = "local"
///     timeout_ms = 800
///     [providers.aws]
///     backend = "local"
/// "#)?;
/// assert_eq!(config.resilience("gcp").map(|r| r.timeout()), Some(Duration::from_millis(800)));
/// assert_eq!(config.resilience("aws").map(|r| r.timeout()), Some(Duration::from_secs(2)));
/// # Ok::<(), vault_server::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderResilience {
    timeout: Duration,
    retry_attempts: u32,
    retry_base_delay: Duration,
    retry_max_delay: Duration,
    retry_budget: Duration,
    max_concurrency: usize,
    breaker_failure_threshold: u32,
    breaker_cool_down: Duration,
}

impl Default for ProviderResilience {
    fn default() -> ProviderResilience {
        ProviderResilience {
            timeout: Duration::from_secs(5),
            retry_attempts: 4,
            retry_base_delay: Duration::from_millis(50),
            retry_max_delay: Duration::from_secs(2),
            retry_budget: Duration::from_secs(10),
            max_concurrency: 64,
            breaker_failure_threshold: 5,
            breaker_cool_down: Duration::from_secs(30),
        }
    }
}

impl ProviderResilience {
    /// The time limit of each call to the provider (`timeout_ms`); also the bound of its
    /// check in `GET /v1/health/hsm`.
    ///
    /// # Example
    ///
    /// ```
    /// let config = vault_server::Config::default_config();
    /// assert_eq!(config.resilience("gcp").map(|r| r.timeout().as_millis()), Some(5000));
    /// ```
    #[must_use]
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Attempts per call including the first (`retry_attempts`); only transient errors
    /// (timeouts, unavailability, throttling, an open circuit) are retried.
    ///
    /// # Example
    ///
    /// ```
    /// let config = vault_server::Config::default_config();
    /// assert_eq!(config.resilience("gcp").map(|r| r.retry_attempts()), Some(4));
    /// ```
    #[must_use]
    pub fn retry_attempts(&self) -> u32 {
        self.retry_attempts
    }

    /// The first backoff delay (`retry_base_delay_ms`), doubled per attempt under full jitter.
    ///
    /// # Example
    ///
    /// ```
    /// let config = vault_server::Config::default_config();
    /// assert_eq!(config.resilience("gcp").map(|r| r.retry_base_delay().as_millis()), Some(50));
    /// ```
    #[must_use]
    pub fn retry_base_delay(&self) -> Duration {
        self.retry_base_delay
    }

    /// The longest single backoff delay (`retry_max_delay_ms`).
    ///
    /// # Example
    ///
    /// ```
    /// let config = vault_server::Config::default_config();
    /// assert_eq!(config.resilience("gcp").map(|r| r.retry_max_delay().as_millis()), Some(2000));
    /// ```
    #[must_use]
    pub fn retry_max_delay(&self) -> Duration {
        self.retry_max_delay
    }

    /// The total time a call and its retries may take (`retry_budget_ms`).
    ///
    /// # Example
    ///
    /// ```
    /// let config = vault_server::Config::default_config();
    /// assert_eq!(config.resilience("gcp").map(|r| r.retry_budget().as_secs()), Some(10));
    /// ```
    #[must_use]
    pub fn retry_budget(&self) -> Duration {
        self.retry_budget
    }

    /// The most calls to the provider in flight at once (`max_concurrency`).
    ///
    /// # Example
    ///
    /// ```
    /// let config = vault_server::Config::default_config();
    /// assert_eq!(config.resilience("gcp").map(|r| r.max_concurrency()), Some(64));
    /// ```
    #[must_use]
    pub fn max_concurrency(&self) -> usize {
        self.max_concurrency
    }

    /// Consecutive transient failures that open the circuit (`breaker_failure_threshold`).
    ///
    /// # Example
    ///
    /// ```
    /// let config = vault_server::Config::default_config();
    /// assert_eq!(config.resilience("gcp").map(|r| r.breaker_failure_threshold()), Some(5));
    /// ```
    #[must_use]
    pub fn breaker_failure_threshold(&self) -> u32 {
        self.breaker_failure_threshold
    }

    /// How long an open circuit fails fast before it probes the provider again
    /// (`breaker_cool_down_ms`).
    ///
    /// # Example
    ///
    /// ```
    /// let config = vault_server::Config::default_config();
    /// assert_eq!(config.resilience("gcp").map(|r| r.breaker_cool_down().as_secs()), Some(30));
    /// ```
    #[must_use]
    pub fn breaker_cool_down(&self) -> Duration {
        self.breaker_cool_down
    }

    /// The kms-providers layer stack these settings describe.
    pub(crate) fn layer_stack(&self) -> LayerStack {
        LayerStack::new()
            .timeout(self.timeout)
            .retry(
                RetryPolicy::default()
                    .max_attempts(self.retry_attempts)
                    .base_delay(self.retry_base_delay)
                    .max_delay(self.retry_max_delay)
                    .max_elapsed(self.retry_budget),
            )
            .max_concurrency(self.max_concurrency)
            .circuit_breaker(
                BreakerConfig::default()
                    .failure_threshold(self.breaker_failure_threshold)
                    .cool_down(self.breaker_cool_down),
            )
    }

    /// These settings with `raw`'s keys applied; `prefix` names the table in errors
    /// (`resilience` or `providers.NAME`).
    pub(crate) fn apply(
        &self,
        raw: &RawResilience,
        prefix: &str,
    ) -> Result<ProviderResilience, ConfigError> {
        let mut out = self.clone();
        let field = |key: &str| format!("{prefix}.{key}");
        if let Some(v) = raw.timeout_ms {
            out.timeout = millis(&field("timeout_ms"), v, 1, 600_000)?;
        }
        if let Some(v) = raw.retry_attempts {
            out.retry_attempts = bounded(&field("retry_attempts"), v, 1, 20)?;
        }
        if let Some(v) = raw.retry_base_delay_ms {
            out.retry_base_delay = millis(&field("retry_base_delay_ms"), v, 1, 60_000)?;
        }
        if let Some(v) = raw.retry_max_delay_ms {
            out.retry_max_delay = millis(&field("retry_max_delay_ms"), v, 1, 600_000)?;
        }
        if let Some(v) = raw.retry_budget_ms {
            out.retry_budget = millis(&field("retry_budget_ms"), v, 1, 3_600_000)?;
        }
        if let Some(v) = raw.max_concurrency {
            out.max_concurrency = bounded(&field("max_concurrency"), v, 1, 100_000)?;
        }
        if let Some(v) = raw.breaker_failure_threshold {
            out.breaker_failure_threshold =
                bounded(&field("breaker_failure_threshold"), v, 1, 100_000)?;
        }
        if let Some(v) = raw.breaker_cool_down_ms {
            out.breaker_cool_down = millis(&field("breaker_cool_down_ms"), v, 1, 3_600_000)?;
        }
        // Checked on the merged result: a global base delay can meet a per-provider cap.
        if out.retry_max_delay < out.retry_base_delay {
            return Err(ConfigError::Invalid {
                field: field("retry_max_delay_ms"),
                reason: format!(
                    "must be at least retry_base_delay_ms ({} ms)",
                    out.retry_base_delay.as_millis()
                ),
            });
        }
        Ok(out)
    }
}

/// The resilience keys as written, in `[resilience]` or inside a provider's table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawResilience {
    timeout_ms: Option<u64>,
    retry_attempts: Option<u64>,
    retry_base_delay_ms: Option<u64>,
    retry_max_delay_ms: Option<u64>,
    retry_budget_ms: Option<u64>,
    max_concurrency: Option<u64>,
    breaker_failure_threshold: Option<u64>,
    breaker_cool_down_ms: Option<u64>,
}

/// The resilience keys, as they may appear in a provider's table.
pub(crate) const KEYS: &[&str] = &[
    "timeout_ms",
    "retry_attempts",
    "retry_base_delay_ms",
    "retry_max_delay_ms",
    "retry_budget_ms",
    "max_concurrency",
    "breaker_failure_threshold",
    "breaker_cool_down_ms",
];

impl RawResilience {
    /// Takes the resilience keys out of a provider's leftover keys (a provider table is an
    /// internally tagged enum, so serde hands them over as loose values).
    pub(crate) fn take_from(
        rest: &mut BTreeMap<String, toml::Value>,
        prefix: &str,
    ) -> Result<RawResilience, ConfigError> {
        let mut raw = RawResilience::default();
        for key in KEYS {
            let Some(value) = rest.remove(*key) else {
                continue;
            };
            let number = value
                .as_integer()
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(|| ConfigError::Invalid {
                    field: format!("{prefix}.{key}"),
                    reason: "must be a non-negative integer".into(),
                })?;
            let slot = match *key {
                "timeout_ms" => &mut raw.timeout_ms,
                "retry_attempts" => &mut raw.retry_attempts,
                "retry_base_delay_ms" => &mut raw.retry_base_delay_ms,
                "retry_max_delay_ms" => &mut raw.retry_max_delay_ms,
                "retry_budget_ms" => &mut raw.retry_budget_ms,
                "max_concurrency" => &mut raw.max_concurrency,
                "breaker_failure_threshold" => &mut raw.breaker_failure_threshold,
                _ => &mut raw.breaker_cool_down_ms,
            };
            *slot = Some(number);
        }
        Ok(raw)
    }
}

fn bounded<T: TryFrom<u64>>(field: &str, value: u64, min: u64, max: u64) -> Result<T, ConfigError> {
    if (min..=max).contains(&value)
        && let Ok(v) = T::try_from(value)
    {
        return Ok(v);
    }
    Err(ConfigError::Invalid {
        field: field.to_owned(),
        reason: format!("must be between {min} and {max}"),
    })
}

fn millis(field: &str, value: u64, min: u64, max: u64) -> Result<Duration, ConfigError> {
    bounded::<u64>(field, value, min, max).map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_build_a_stack_and_match_kms_providers() {
        let r = ProviderResilience::default();
        assert_eq!(r.timeout(), Duration::from_secs(5));
        assert_eq!(r.retry_attempts(), 4);
        assert_eq!(r.max_concurrency(), 64);
        let dir = tempfile::tempdir().unwrap();
        let local = kms_providers::LocalProvider::builder("gcp")
            .key_dir(dir.path())
            .build()
            .unwrap();
        assert!(r.layer_stack().build(local).is_ok());
    }

    #[test]
    fn out_of_range_values_name_the_field() {
        let mut rest = BTreeMap::from([
            ("timeout_ms".to_owned(), toml::Value::Integer(0)),
            ("key_dir".to_owned(), toml::Value::String("x".into())),
        ]);
        let raw = RawResilience::take_from(&mut rest, "providers.gcp").unwrap();
        // Only resilience keys are taken; the backend's own keys stay.
        assert_eq!(rest.keys().collect::<Vec<_>>(), ["key_dir"]);
        let err = ProviderResilience::default()
            .apply(&raw, "providers.gcp")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration field `providers.gcp.timeout_ms`: must be between 1 and 600000"
        );

        let mut rest =
            BTreeMap::from([("retry_attempts".to_owned(), toml::Value::String("3".into()))]);
        let err = RawResilience::take_from(&mut rest, "providers.aws").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid configuration field `providers.aws.retry_attempts`: must be a non-negative integer"
        );
    }
}
