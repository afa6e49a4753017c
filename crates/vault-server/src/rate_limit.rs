//! Per-principal rate limiting: one token bucket per API key (access tokens count against the
//! key they were issued for) and, for requests without valid credentials, one per peer IP.
//!
//! Memory is bounded: a bucket that has refilled to its burst is indistinguishable from a new
//! one, so sweeping removes exactly those; if the table is still full of active buckets, new
//! principals share one overflow bucket rather than growing the table.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::connect_info::Connected;
use axum::extract::{FromRequestParts as _, Request};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use axum::serve::IncomingStream;
use serde::Deserialize;

use crate::app::AppState;
use crate::config::ConfigError;
use crate::problem::ApiError;
use crate::routes::{CachedAuth, Principal};

/// Rate-limit settings (`[rate_limit]`).
///
/// # Example
///
/// ```
/// let config = vault_server::Config::from_toml_str(
///     "[rate_limit]\nrequests_per_second = 5.0\nburst = 10",
/// )?;
/// let rate = config.rate_limit().expect("enabled");
/// assert_eq!(rate.burst(), 10);
/// assert_eq!(rate.requests_per_second(), 5.0);
/// # Ok::<(), vault_server::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitConfig {
    requests_per_second: f64,
    burst: u32,
    max_tracked: usize,
}

impl Default for RateLimitConfig {
    fn default() -> RateLimitConfig {
        RateLimitConfig {
            requests_per_second: 50.0,
            burst: 100,
            max_tracked: 100_000,
        }
    }
}

impl RateLimitConfig {
    /// Tokens added per second to each bucket (default 50).
    ///
    /// # Example
    ///
    /// ```
    /// let rate = vault_server::Config::default_config().rate_limit().cloned().expect("on by default");
    /// assert_eq!(rate.requests_per_second(), 50.0);
    /// ```
    #[must_use]
    pub fn requests_per_second(&self) -> f64 {
        self.requests_per_second
    }

    /// The bucket size: requests a principal may send at once (default 100).
    ///
    /// # Example
    ///
    /// ```
    /// let rate = vault_server::Config::default_config().rate_limit().cloned().expect("on by default");
    /// assert_eq!(rate.burst(), 100);
    /// ```
    #[must_use]
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// The most buckets kept in memory (default 100 000).
    ///
    /// # Example
    ///
    /// ```
    /// let rate = vault_server::Config::default_config().rate_limit().cloned().expect("on by default");
    /// assert_eq!(rate.max_tracked(), 100_000);
    /// ```
    #[must_use]
    pub fn max_tracked(&self) -> usize {
        self.max_tracked
    }

    /// Builds the settings from a `[rate_limit]` table; `None` when `enabled = false`.
    pub(crate) fn from_raw(raw: &RawRateLimit) -> Result<Option<RateLimitConfig>, ConfigError> {
        if raw.enabled == Some(false) {
            return Ok(None);
        }
        let mut config = RateLimitConfig::default();
        if let Some(rps) = raw.requests_per_second {
            if !(rps.is_finite() && (0.001..=1_000_000.0).contains(&rps)) {
                return Err(ConfigError::Invalid {
                    field: "rate_limit.requests_per_second".into(),
                    reason: "must be between 0.001 and 1000000".into(),
                });
            }
            config.requests_per_second = rps;
        }
        if let Some(burst) = raw.burst {
            if !(1..=1_000_000).contains(&burst) {
                return Err(ConfigError::Invalid {
                    field: "rate_limit.burst".into(),
                    reason: "must be between 1 and 1000000".into(),
                });
            }
            config.burst = burst;
        }
        if let Some(max) = raw.max_tracked {
            if !(1..=10_000_000).contains(&max) {
                return Err(ConfigError::Invalid {
                    field: "rate_limit.max_tracked".into(),
                    reason: "must be between 1 and 10000000".into(),
                });
            }
            config.max_tracked = max;
        }
        Ok(Some(config))
    }
}

/// The `[rate_limit]` table before validation.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRateLimit {
    enabled: Option<bool>,
    requests_per_second: Option<f64>,
    burst: Option<u32>,
    max_tracked: Option<usize>,
}

impl RawRateLimit {
    pub(crate) fn new(requests_per_second: f64, burst: u32) -> RawRateLimit {
        RawRateLimit {
            enabled: Some(true),
            requests_per_second: Some(requests_per_second),
            burst: Some(burst),
            max_tracked: None,
        }
    }
}

/// One principal's bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// The buckets of every principal.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    config: RateLimitConfig,
    buckets: Mutex<Table>,
}

#[derive(Debug)]
struct Table {
    buckets: HashMap<String, Bucket>,
    /// Shared by new principals while the table is full of active buckets.
    overflow: Bucket,
}

/// The peer address of a connection, for the unauthenticated buckets (plain TCP and TLS).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerAddr(pub(crate) std::net::SocketAddr);

impl Connected<IncomingStream<'_, tokio::net::TcpListener>> for PeerAddr {
    fn connect_info(stream: IncomingStream<'_, tokio::net::TcpListener>) -> PeerAddr {
        PeerAddr(*stream.remote_addr())
    }
}

impl Connected<IncomingStream<'_, crate::tls::TlsListener>> for PeerAddr {
    fn connect_info(stream: IncomingStream<'_, crate::tls::TlsListener>) -> PeerAddr {
        PeerAddr(*stream.remote_addr())
    }
}

/// Route layer: charges the request to its principal's bucket before the handler runs.
///
/// With an `Authorization` header the caller is authenticated here (once: the handler's
/// `Principal` extractor takes the result from the request), and a valid API key or access
/// token is charged to its key's bucket, an agent key or agent token to its agent's bucket. Everything else (no credentials, bad credentials,
/// public endpoints) is charged to the peer address, so failing authentication cannot be used
/// to dodge the limit.
pub(crate) async fn enforce(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(limiter) = &state.limiter else {
        return next.run(request).await;
    };
    let (mut parts, body) = request.into_parts();
    let peer_ip = parts
        .extensions
        .get::<axum::extract::ConnectInfo<PeerAddr>>()
        .map(|info| info.0.0.ip());
    let peer = || peer_principal(peer_ip);
    let bucket = if parts.headers.contains_key(header::AUTHORIZATION) {
        let auth = Principal::from_request_parts(&mut parts, &state).await;
        let bucket = match &auth {
            Ok(principal) => principal.rate_key().to_owned(),
            Err(_) => peer(),
        };
        parts.extensions.insert(CachedAuth::new(auth));
        bucket
    } else {
        peer()
    };
    if let Err(refused) = limiter.check(&bucket) {
        state.metrics.rate_limited();
        return refused.into_response();
    }
    next.run(Request::from_parts(parts, body)).await
}

/// The bucket key of an authenticated API key (access tokens use their key's id).
pub(crate) fn key_principal(key_id: &str) -> String {
    format!("key:{key_id}")
}

/// The bucket key of an authenticated agent: its agent keys and the tokens issued for them
/// share one bucket.
pub(crate) fn agent_principal(agent_id: &str) -> String {
    format!("agent:{agent_id}")
}

/// The bucket key of a request without valid credentials.
pub(crate) fn peer_principal(peer: Option<std::net::IpAddr>) -> String {
    match peer {
        Some(ip) => format!("ip:{ip}"),
        // In-process calls (tests through `oneshot`) have no peer address.
        None => "ip:unknown".to_owned(),
    }
}

impl RateLimiter {
    pub(crate) fn new(config: RateLimitConfig) -> RateLimiter {
        let now = Instant::now();
        let full = f64::from(config.burst);
        RateLimiter {
            config,
            buckets: Mutex::new(Table {
                buckets: HashMap::new(),
                overflow: Bucket {
                    tokens: full,
                    updated: now,
                },
            }),
        }
    }

    /// Takes one token from `principal`'s bucket, or says how long to wait (429).
    pub(crate) fn check(&self, principal: &str) -> Result<(), ApiError> {
        self.check_at(principal, Instant::now())
    }

    fn check_at(&self, principal: &str, now: Instant) -> Result<(), ApiError> {
        let rate = self.config.requests_per_second;
        let burst = f64::from(self.config.burst);
        // A poisoned lock only means another request panicked mid-update; the table of
        // numbers is still usable, and refusing every request would be worse.
        let mut table = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !table.buckets.contains_key(principal) && table.buckets.len() >= self.config.max_tracked
        {
            // Full buckets carry no state; drop them.
            table.buckets.retain(|_, b| {
                let refilled = b.tokens + now.duration_since(b.updated).as_secs_f64() * rate;
                refilled < burst
            });
        }
        let tracked = table.buckets.len() < self.config.max_tracked;
        let bucket = if let Some(bucket) = table.buckets.get_mut(principal) {
            bucket
        } else if tracked {
            table.buckets.entry(principal.to_owned()).or_insert(Bucket {
                tokens: burst,
                updated: now,
            })
        } else {
            tracing::warn!("rate limiter table full; new principals share the overflow bucket");
            &mut table.overflow
        };
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = Duration::from_secs_f64((1.0 - bucket.tokens) / rate);
        // Retry-After is whole seconds: round up so a client that waits that long succeeds.
        let retry_after_secs = wait
            .as_secs()
            .saturating_add(u64::from(wait.subsec_nanos() > 0));
        Err(ApiError::RateLimited {
            detail: format!(
                "too many requests: this server allows {} requests per second with bursts of {} \
                 per API key or agent (per address without credentials); retry after {} s",
                self.config.requests_per_second, self.config.burst, retry_after_secs
            ),
            retry_after_secs: retry_after_secs.max(1),
        })
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .buckets
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(rps: f64, burst: u32, max_tracked: usize) -> RateLimiter {
        RateLimiter::new(RateLimitConfig {
            requests_per_second: rps,
            burst,
            max_tracked,
        })
    }

    #[test]
    fn a_burst_then_refusal_then_refill() {
        let limiter = limiter(2.0, 3, 10);
        let t0 = Instant::now();
        for _ in 0..3 {
            limiter.check_at("key:a", t0).unwrap();
        }
        let err = limiter.check_at("key:a", t0).unwrap_err();
        assert_eq!(err.status().as_u16(), 429);
        assert!(
            matches!(
                err,
                ApiError::RateLimited {
                    retry_after_secs: 1,
                    ..
                }
            ),
            "{err:?}"
        );
        // Other principals have their own bucket.
        limiter.check_at("key:b", t0).unwrap();
        // Half a second refills one token at 2/s.
        limiter
            .check_at("key:a", t0 + Duration::from_millis(500))
            .unwrap();
        assert!(
            limiter
                .check_at("key:a", t0 + Duration::from_millis(500))
                .is_err()
        );
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let limiter = limiter(0.25, 1, 10);
        let t0 = Instant::now();
        limiter.check_at("ip:1", t0).unwrap();
        let err = limiter.check_at("ip:1", t0).unwrap_err();
        assert!(
            matches!(
                err,
                ApiError::RateLimited {
                    retry_after_secs: 4,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn memory_is_bounded_and_idle_buckets_are_evicted() {
        let limiter = limiter(1.0, 2, 3);
        let t0 = Instant::now();
        for p in ["a", "b", "c"] {
            limiter.check_at(p, t0).unwrap();
        }
        assert_eq!(limiter.tracked(), 3);
        // Still active: a fourth principal goes to the overflow bucket, the table stays at 3.
        limiter.check_at("d", t0).unwrap();
        limiter.check_at("e", t0).unwrap();
        assert!(
            limiter.check_at("f", t0).is_err(),
            "overflow bucket is shared"
        );
        assert_eq!(limiter.tracked(), 3);
        // After they refill, the sweep evicts them and new principals get their own bucket.
        let later = t0 + Duration::from_secs(5);
        limiter.check_at("g", later).unwrap();
        assert_eq!(limiter.tracked(), 1);
    }
}
