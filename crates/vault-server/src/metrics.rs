//! Prometheus metrics: HTTP requests by route template and status, latency histograms, key
//! provider calls, reconstruct anomalies per slot, rate-limit and quota refusals, and audit
//! write failures. Served by `GET /metrics` in the OpenMetrics text format.
//!
//! Labels are never request data: a route label is the matched route template
//! (`/v1/vaults/{id}/secrets/{*path}`), never the raw path, so secret paths and ids cannot end
//! up in a time series; provider and slot labels come from the configuration.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::Response;
use kms_providers::{
    Health, KeyProvider, ProviderKind, UnwrappedShare, WrapContext, WrappedShare, async_trait,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::app::AppState;
use crate::config::ConfigError;
use crate::problem::ApiError;

/// The content type of the OpenMetrics text format, which Prometheus scrapes natively.
pub(crate) const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The route label of requests that matched no route.
const UNMATCHED: &str = "unmatched";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    provider: String,
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderOutcomeLabels {
    provider: String,
    operation: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SlotLabels {
    slot: String,
    holder: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabels {
    resource: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms to ~33 s in doubling steps: covers a cached read and a provider timeout.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// The server's metrics. Cloning shares the same series.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let config = vault_server::Config::default_config().with_data_dir(dir.path());
/// let server = vault_server::VaultServer::open(config).await?;
/// server.metrics().audit_write_failed();
/// assert!(server.metrics().render().contains("mpc_vault_audit_write_failures_total 1"));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: HistogramFamily<RouteLabels>,
    provider_calls: Family<ProviderOutcomeLabels, Counter>,
    provider_duration: HistogramFamily<ProviderLabels>,
    liars: Family<SlotLabels, Counter>,
    slot_failures: Family<SlotLabels, Counter>,
    rate_limited: Counter,
    quota_refusals: Family<ResourceLabels, Counter>,
    audit_write_failures: Counter,
    storage_commits: Counter,
    storage_committed_writes: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("mpc_vault");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by method, route template and status",
            requests.clone(),
        );
        let request_duration: HistogramFamily<RouteLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by method and route template",
            request_duration.clone(),
        );
        let provider_calls = Family::<ProviderOutcomeLabels, Counter>::default();
        registry.register(
            "provider_calls",
            "Key provider calls (after retries, timeout and circuit breaker) by outcome: ok, \
             error, or cancelled (a hedged read finished without it)",
            provider_calls.clone(),
        );
        let provider_duration: HistogramFamily<ProviderLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "provider_call_duration_seconds",
            "Latency of key provider calls that finished (ok or error)",
            provider_duration.clone(),
        );
        let liars = Family::<SlotLabels, Counter>::default();
        registry.register(
            "reconstruct_liars",
            "Reads where a slot's share was inconsistent with the verified key (the liar count)",
            liars.clone(),
        );
        let slot_failures = Family::<SlotLabels, Counter>::default();
        registry.register(
            "reconstruct_slot_failures",
            "Successful reads where a slot could not provide a share (degraded reads)",
            slot_failures.clone(),
        );
        let rate_limited = Counter::default();
        registry.register(
            "rate_limited_requests",
            "Requests refused with 429",
            rate_limited.clone(),
        );
        let quota_refusals = Family::<ResourceLabels, Counter>::default();
        registry.register(
            "quota_refusals",
            "Creates refused by the tier's limits, by resource",
            quota_refusals.clone(),
        );
        let audit_write_failures = Counter::default();
        registry.register(
            "audit_write_failures",
            "Audit events that could not be written (the action failed closed)",
            audit_write_failures.clone(),
        );
        let storage_commits = Counter::default();
        registry.register(
            "storage_commits",
            "Transactions committed by the SQLite store's group commit (one fsync each)",
            storage_commits.clone(),
        );
        let storage_committed_writes = Counter::default();
        registry.register(
            "storage_committed_writes",
            "Writes committed by the SQLite store's group commit; divided by \
             mpc_vault_storage_commits_total, the average batch size",
            storage_committed_writes.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry,
                requests,
                request_duration,
                provider_calls,
                provider_duration,
                liars,
                slot_failures,
                rate_limited,
                quota_refusals,
                audit_write_failures,
                storage_commits,
                storage_committed_writes,
            }),
        }
    }

    /// Counts one audit event that could not be written. The audit trail calls this where a
    /// write fails (the action then fails too).
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let server = vault_server::VaultServer::open(vault_server::Config::default_config().with_data_dir(dir.path())).await?;
    /// server.metrics().audit_write_failed();
    /// # Ok(()) }
    /// ```
    pub fn audit_write_failed(&self) {
        self.inner.audit_write_failures.inc();
    }

    /// The metrics in the OpenMetrics text format (what `GET /metrics` answers).
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let server = vault_server::VaultServer::open(vault_server::Config::default_config().with_data_dir(dir.path())).await?;
    /// assert!(server.metrics().render().ends_with("# EOF\n"));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an error here would be a bug in the encoder,
        // logged and answered with what was written.
        if let Err(err) = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry)
        {
            tracing::error!(error = %err, "encoding the metrics failed");
        }
        out
    }

    /// Counts one group commit of `writes` writes.
    pub(crate) fn storage_committed(&self, writes: u64) {
        self.inner.storage_commits.inc();
        self.inner.storage_committed_writes.inc_by(writes);
    }

    pub(crate) fn rate_limited(&self) {
        self.inner.rate_limited.inc();
    }

    pub(crate) fn quota_refused(&self, resource: &str) {
        self.inner
            .quota_refusals
            .get_or_create(&ResourceLabels {
                resource: resource.to_owned(),
            })
            .inc();
    }

    /// Counts what a successful read's report says about each slot.
    pub(crate) fn record_read(&self, report: &custody_policy::ReadReport) {
        for liar in report.liars() {
            self.inner.liars.get_or_create(&slot_labels(liar)).inc();
        }
        for failure in report.failures() {
            self.inner
                .slot_failures
                .get_or_create(&slot_labels(failure.slot()))
                .inc();
        }
    }

    /// Wraps a provider so that its calls are counted and timed.
    pub(crate) fn meter(&self, provider: Arc<dyn KeyProvider>) -> Arc<dyn KeyProvider> {
        Arc::new(MeteredProvider {
            name: provider.name().to_owned(),
            inner: provider,
            metrics: self.clone(),
        })
    }
}

fn slot_labels(slot: &custody_policy::Slot) -> SlotLabels {
    SlotLabels {
        slot: slot.index().get().to_string(),
        holder: slot.holder().to_string(),
    }
}

/// The route template of a request, filled in after routing (see [`record_route`]) and read
/// by [`track_requests`] outside it, so that answers made outside the router (timeouts) are
/// labelled too.
#[derive(Clone, Debug, Default)]
pub(crate) struct RouteSlot(Arc<OnceLock<String>>);

/// Route layer: writes the matched route template into the request's [`RouteSlot`].
pub(crate) async fn record_route(request: Request, next: Next) -> Response {
    if let (Some(slot), Some(path)) = (
        request.extensions().get::<RouteSlot>(),
        request.extensions().get::<MatchedPath>(),
    ) {
        // Set once per request; a second set (nested routers) keeps the first.
        let _ = slot.0.set(path.as_str().to_owned());
    }
    next.run(request).await
}

/// Outer layer: counts and times every request by method, route template and status.
pub(crate) async fn track_requests(
    metrics: axum::extract::State<Metrics>,
    mut request: Request,
    next: Next,
) -> Response {
    let slot = RouteSlot::default();
    request.extensions_mut().insert(slot.clone());
    let method = request.method().as_str().to_owned();
    let start = Instant::now();
    let response = next.run(request).await;
    let route = slot
        .0
        .get()
        .cloned()
        .unwrap_or_else(|| UNMATCHED.to_owned());
    let inner = &metrics.inner;
    inner
        .request_duration
        .get_or_create(&RouteLabels {
            method: method.clone(),
            route: route.clone(),
        })
        .observe(start.elapsed().as_secs_f64());
    inner
        .requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: response.status().as_u16().to_string(),
        })
        .inc();
    response
}

/// `GET /metrics`: outside the API's authentication (scrapers have no API key); open on the
/// listener or guarded by its own bearer token, as configured. Not in the OpenAPI document:
/// it is an operations endpoint, not part of the JSON API.
pub(crate) async fn serve_metrics(
    axum::extract::State(state): axum::extract::State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let access = state
        .config
        .metrics_access()
        .ok_or_else(|| ApiError::NotFound("there is no such route; see /v1/openapi.json".into()))?;
    access.check(&headers)?;
    let mut response = Response::new(axum::body::Body::from(state.metrics.render()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static(OPENMETRICS_CONTENT_TYPE),
    );
    Ok(response)
}

/// Who may read `GET /metrics`.
#[derive(Clone)]
pub(crate) enum MetricsAccess {
    /// Anyone who can reach the listener.
    Open,
    /// `Authorization: Bearer <token>`; only the token's SHA-256 is kept.
    Token([u8; 32]),
}

impl std::fmt::Debug for MetricsAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetricsAccess::Open => f.write_str("Open"),
            MetricsAccess::Token(_) => f.write_str("Token(<redacted>)"),
        }
    }
}

/// The `[metrics]` table before validation.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMetrics {
    enabled: Option<bool>,
    token_env: Option<String>,
}

impl MetricsAccess {
    /// `None` when `/metrics` is off. The token is read from `env` (the process environment
    /// when the server starts) by the variable `token_env` names, never from the file.
    pub(crate) fn from_raw(
        raw: &RawMetrics,
        env: &BTreeMap<String, String>,
    ) -> Result<Option<MetricsAccess>, ConfigError> {
        if raw.enabled == Some(false) {
            return Ok(None);
        }
        let Some(var) = &raw.token_env else {
            return Ok(Some(MetricsAccess::Open));
        };
        let token = env.get(var).ok_or_else(|| ConfigError::Invalid {
            field: "metrics.token_env".into(),
            reason: format!("the environment variable `{var}` is not set"),
        })?;
        if token.trim().len() < 16 {
            return Err(ConfigError::Invalid {
                field: "metrics.token_env".into(),
                reason: format!("the token in `{var}` must be at least 16 characters"),
            });
        }
        Ok(Some(MetricsAccess::token(token.trim())))
    }

    pub(crate) fn token(token: &str) -> MetricsAccess {
        MetricsAccess::Token(Sha256::digest(token.as_bytes()).into())
    }

    /// Checks the request's credentials; compares digests in constant time, so neither the
    /// token's bytes nor its length leak through timing.
    pub(crate) fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let MetricsAccess::Token(expected) = self else {
            return Ok(());
        };
        let refused = || {
            ApiError::Unauthorized(
                "GET /metrics needs `Authorization: Bearer <metrics token>` (the value of the \
                 variable named by `metrics.token_env`)"
                    .into(),
            )
        };
        let value = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(refused)?;
        let (scheme, token) = value.split_once(' ').ok_or_else(refused)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(refused());
        }
        let digest: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        if bool::from(digest.ct_eq(expected)) {
            Ok(())
        } else {
            Err(refused())
        }
    }
}

/// A provider whose calls are counted and timed. It sits outside the resilience layers, so it
/// sees what the vault sees: one call per share, with retries, timeouts and open circuits
/// folded into the outcome.
#[derive(Debug)]
struct MeteredProvider {
    name: String,
    inner: Arc<dyn KeyProvider>,
    metrics: Metrics,
}

/// Records a call's outcome when it finishes, or `cancelled` if it is dropped first (a hedged
/// read stops asking once it has enough shares; that is not a provider error).
struct CallGuard<'a> {
    provider: &'a MeteredProvider,
    operation: &'static str,
    start: Instant,
    outcome: Option<&'static str>,
}

impl CallGuard<'_> {
    fn finish<T, E>(mut self, result: &Result<T, E>) {
        let outcome = if result.is_ok() { "ok" } else { "error" };
        self.outcome = Some(outcome);
        self.provider
            .metrics
            .inner
            .provider_duration
            .get_or_create(&ProviderLabels {
                provider: self.provider.name.clone(),
                operation: self.operation,
            })
            .observe(self.start.elapsed().as_secs_f64());
    }
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        self.provider
            .metrics
            .inner
            .provider_calls
            .get_or_create(&ProviderOutcomeLabels {
                provider: self.provider.name.clone(),
                operation: self.operation,
                outcome: self.outcome.unwrap_or("cancelled"),
            })
            .inc();
    }
}

impl MeteredProvider {
    fn guard(&self, operation: &'static str) -> CallGuard<'_> {
        CallGuard {
            provider: self,
            operation,
            start: Instant::now(),
            outcome: None,
        }
    }
}

#[async_trait]
impl KeyProvider for MeteredProvider {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn kind(&self) -> ProviderKind {
        self.inner.kind()
    }

    async fn wrap(
        &self,
        share: &[u8],
        context: &WrapContext,
    ) -> Result<WrappedShare, kms_providers::Error> {
        let guard = self.guard("wrap");
        let result = self.inner.wrap(share, context).await;
        guard.finish(&result);
        result
    }

    async fn unwrap(
        &self,
        wrapped: &WrappedShare,
        context: &WrapContext,
    ) -> Result<UnwrappedShare, kms_providers::Error> {
        let guard = self.guard("unwrap");
        let result = self.inner.unwrap(wrapped, context).await;
        guard.finish(&result);
        result
    }

    async fn health(&self) -> Result<Health, kms_providers::Error> {
        let guard = self.guard("health");
        let result = self.inner.health().await;
        guard.finish(&result);
        result
    }
}
