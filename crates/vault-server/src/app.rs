//! The server: state, router, middleware, startup and graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};
use axum::response::IntoResponse;
use custody_policy::Custodian;
use kms_providers::{KeyProvider, Layered, LocalProvider};
use tokio::net::TcpListener;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use crate::audit::routes::{AuditState, spawn_checkpointer};
use crate::audit::{AuditError, AuditKey, AuditSigner, NewAuditEvent};
use crate::auth::{ApiKeySecret, JwtKeys, KeyFileError};
use crate::config::{Config, ProviderConfig};
use crate::metrics::Metrics;
use crate::problem::{ApiError, PROBLEM_JSON};
use crate::rate_limit::{PeerAddr, RateLimiter};
use crate::routes;
use crate::storage::{ApiKeyRecord, PostgresStorage, SqliteStorage, Storage, StorageError};
use crate::time::now_millis;

/// The request id header, set on every request and echoed on every answer.
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Why the server could not start or serve.
///
/// # Example
///
/// ```
/// let err = vault_server::ServerError::Providers("no providers".into());
/// assert!(err.to_string().contains("no providers"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The storage failed to open or migrate.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// A key provider could not be built, or the custodian refused the set.
    #[error("key providers: {0}")]
    Providers(String),
    /// The JWT signing key could not be loaded or created.
    #[error("{0}")]
    SigningKey(String),
    /// The OS random generator failed.
    #[error("OS random generator: {0}")]
    Random(getrandom::Error),
    /// Binding or serving the socket failed.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
    /// The audit keys could not be loaded or created.
    #[error("audit keys: {0}")]
    Audit(#[from] AuditError),
}

impl From<KeyFileError> for ServerError {
    fn from(err: KeyFileError) -> ServerError {
        ServerError::SigningKey(err.to_string())
    }
}

/// Everything a request handler needs.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) custodian: Custodian,
    pub(crate) providers: Vec<ServerProvider>,
    pub(crate) jwt: JwtKeys,
    pub(crate) config: Config,
    /// The audit HMAC key, checkpoint signer and checkpoint policy.
    pub(crate) audit: AuditState,
    /// The Prometheus series (shared with the metered providers).
    pub(crate) metrics: Metrics,
    /// The token buckets; `None` when rate limiting is off.
    pub(crate) limiter: Option<RateLimiter>,
}

/// A configured provider as the server runs it: inside its resilience layers (retry →
/// concurrency limit → circuit breaker → timeout → the backend).
#[derive(Debug, Clone)]
pub(crate) struct ServerProvider {
    /// The layered provider; the custodian holds the same `Arc`, so the health check and the
    /// reads and writes share one circuit breaker and one concurrency limit.
    pub(crate) layered: Arc<Layered<Arc<dyn KeyProvider>>>,
    /// The per-call timeout, which also bounds the provider's health check.
    pub(crate) timeout: Duration,
}

/// Shared handler state.
pub(crate) type AppState = Arc<State>;

/// A vault server: storage, key providers and signing key opened from a [`Config`].
///
/// [`VaultServer::app`] is the whole HTTP API as an axum [`Router`]: tests drive it in process
/// with `tower::ServiceExt::oneshot`, and [`VaultServer::serve`] runs it on a socket.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tower::ServiceExt as _;
/// use vault_server::{Config, VaultServer};
///
/// let dir = tempfile::tempdir()?;
/// let server = VaultServer::open(Config::default_config().with_data_dir(dir.path())).await?;
/// let request = axum::http::Request::get("/v1/health").body(axum::body::Body::empty())?;
/// let response = server.app().oneshot(request).await?;
/// assert_eq!(response.status(), 200);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct VaultServer {
    state: AppState,
}

impl VaultServer {
    /// Opens the data directory (creating it), the SQLite store (running migrations), the
    /// configured key providers and the JWT signing key.
    ///
    /// With the embedded default providers it logs the single-machine custody warning.
    ///
    /// # Errors
    ///
    /// [`ServerError`] naming what could not be opened.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let config = vault_server::Config::default_config().with_data_dir(dir.path());
    /// vault_server::VaultServer::open(config).await?;
    /// # Ok(()) }
    /// ```
    pub async fn open(config: Config) -> Result<VaultServer, ServerError> {
        VaultServer::open_instrumented(config, |_, provider| provider).await
    }

    /// As [`open`](Self::open), but hands each provider, as built from the configuration, to
    /// `instrument` before the resilience layers are put around it; what `instrument` returns
    /// is layered and used. For instrumentation (metrics, tracing) and fault-injection tests:
    /// a provider wrapped here is subject to the configured timeout, retries, circuit breaker
    /// and concurrency limit like any other.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use kms_providers::KeyProvider;
    ///
    /// let dir = tempfile::tempdir()?;
    /// let config = vault_server::Config::default_config().with_data_dir(dir.path());
    /// let mut seen = Vec::new();
    /// vault_server::VaultServer::open_instrumented(config, |name, provider: Arc<dyn KeyProvider>| {
    ///     seen.push(name.to_owned());
    ///     provider
    /// })
    /// .await?;
    /// assert_eq!(seen, ["aws", "azure", "gcp"]);
    /// # Ok(()) }
    /// ```
    pub async fn open_instrumented(
        config: Config,
        mut instrument: impl FnMut(&str, Arc<dyn KeyProvider>) -> Arc<dyn KeyProvider>,
    ) -> Result<VaultServer, ServerError> {
        // The data directory holds the audit keys, the JWT signing key and, by default, the
        // local providers' keys, whichever database holds the rest. The audit keys are read
        // before the store opens: the store seals every event with the HMAC key.
        crate::storage::create_private_dir(config.data_dir())?;
        let audit_key = Arc::new(AuditKey::load_or_create(config.data_dir())?);
        let signer = AuditSigner::load_or_create(config.data_dir())?;
        let metrics = Metrics::new();
        let storage: Arc<dyn Storage> = match config.database() {
            Some(postgres) => Arc::new(
                PostgresStorage::connect(postgres, Arc::clone(&audit_key))
                    .await?
                    .with_metrics(metrics.clone()),
            ),
            None => Arc::new(
                SqliteStorage::open_with_audit_key(config.data_dir(), Arc::clone(&audit_key))
                    .await?
                    .with_metrics(metrics.clone()),
            ),
        };
        // CMEK keys never survive a restart, so a job that was running cannot go on by itself.
        // Each paused job gets a `cmek.rotate.pause` event in the same transaction.
        let paused = storage
            .pause_running_cmek_jobs(&crate::cmek_routes::restart_pause_event)
            .await?;
        if paused > 0 {
            tracing::warn!(
                jobs = paused,
                "CMEK rotation jobs paused by the restart; clients resume them by sending their keys again"
            );
        }
        let mut providers: Vec<ServerProvider> = Vec::new();
        for (name, provider) in config.providers() {
            let built = instrument(name, build_provider(&config, name, provider).await?);
            let layers = config.resilience(name).cloned().unwrap_or_default();
            let layered = layers
                .layer_stack()
                .build(built)
                .map_err(|e| ServerError::Providers(format!("provider `{name}`: {e}")))?;
            providers.push(ServerProvider {
                layered: Arc::new(layered),
                timeout: layers.timeout(),
            });
        }
        if config.uses_embedded_providers() {
            let warning = kms_providers::single_machine_warning(&config.default_key_dir());
            tracing::warn!("{warning}");
        }
        let mut builder = Custodian::builder();
        for provider in &providers {
            let layered: Arc<dyn KeyProvider> =
                Arc::clone(&provider.layered) as Arc<dyn KeyProvider>;
            // Metered outside the layers: the metrics see each call as the custodian does.
            builder = builder.shared_provider(metrics.meter(layered));
        }
        let custodian = builder
            .build()
            .map_err(|e| ServerError::Providers(e.to_string()))?;
        let jwt = JwtKeys::load_or_create(config.data_dir())?;
        let audit = AuditState {
            key: audit_key,
            signer,
            every_events: config.audit_checkpoint_every(),
            interval: config.audit_checkpoint_interval(),
        };
        let state = Arc::new(State {
            storage,
            custodian,
            providers,
            jwt,
            limiter: config.rate_limit().cloned().map(RateLimiter::new),
            config,
            audit,
            metrics,
        });
        spawn_checkpointer(Arc::downgrade(&state));
        Ok(VaultServer { state })
    }

    /// Creates the first API key if the store has none, and returns it (to print once).
    ///
    /// Atomic in the store: of several replicas starting on one empty database, exactly one
    /// creates (and prints) the key.
    ///
    /// # Errors
    ///
    /// [`ServerError::Storage`] or [`ServerError::Random`].
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let config = vault_server::Config::default_config().with_data_dir(dir.path());
    /// let server = vault_server::VaultServer::open(config).await?;
    /// assert!(server.bootstrap_admin_key().await?.is_some());
    /// assert!(server.bootstrap_admin_key().await?.is_none());
    /// # Ok(()) }
    /// ```
    pub async fn bootstrap_admin_key(&self) -> Result<Option<ApiKeySecret>, ServerError> {
        if self.state.storage.api_key_count().await? > 0 {
            return Ok(None);
        }
        let (secret, record) = new_api_key(crate::audit::routes::AUDIT_ADMIN, "admin", None)?;
        let event = NewAuditEvent {
            id: crate::ids::new_event_id().map_err(ServerError::Random)?,
            occurred_at: now_millis(),
            request_id: "bootstrap".into(),
            actor_type: "system".into(),
            actor_id: String::new(),
            action: "key.create".into(),
            resource_type: "api_key".into(),
            resource_id: record.id.clone(),
            vault_id: None,
            outcome: "success".into(),
            detail: serde_json::json!({ "user_id": record.user_id, "bootstrap": true }).to_string(),
        };
        // Of several replicas bootstrapping one database at once, exactly one stores its key
        // (and its audit event, in the same transaction); the others print nothing.
        if self
            .state
            .storage
            .insert_first_api_key(&record, &event)
            .await?
        {
            Ok(Some(secret))
        } else {
            Ok(None)
        }
    }

    /// The whole HTTP API, with its middleware (request id, trace, timeout, body limit,
    /// problem+json for every failure).
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let server = vault_server::VaultServer::open(vault_server::Config::default_config().with_data_dir(dir.path())).await?;
    /// let router: axum::Router = server.app();
    /// # drop(router);
    /// # Ok(()) }
    /// ```
    pub fn app(&self) -> Router {
        let state = Arc::clone(&self.state);
        let limit = state.config.body_limit_bytes();
        let timeout = state.config.request_timeout();
        let state_metrics = state.metrics.clone();
        routes::router(state)
            .layer(DefaultBodyLimit::max(limit))
            .layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                timeout,
            ))
            // Outside the timeout, so that its bare 408 becomes a problem too.
            .layer(axum::middleware::map_response(problem_for_bare_errors))
            // Every answer, the timeout's included, is counted by route template and status.
            .layer(axum::middleware::from_fn_with_state(
                state_metrics,
                crate::metrics::track_requests,
            ))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(|request: &Request<Body>| {
                        // Method, path and request id only: never headers (tokens, client shares)
                        // and never bodies (values).
                        let id = request
                            .headers()
                            .get(&REQUEST_ID)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("-");
                        tracing::info_span!(
                            "request",
                            id = %id,
                            method = %request.method(),
                            path = %request.uri().path(),
                        )
                    })
                    .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
            )
            // Values, client shares, keys and tokens travel in answers: none may be cached.
            .layer(SetResponseHeaderLayer::if_not_present(
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-store"),
            ))
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            .layer(SetRequestIdLayer::new(REQUEST_ID, RandomRequestId))
    }

    /// Serves the API on `listener` (with TLS when a certificate is configured) until
    /// `shutdown` resolves, then finishes the requests in flight and closes the store.
    ///
    /// # Errors
    ///
    /// [`ServerError::Io`] if serving fails.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let server = vault_server::VaultServer::open(vault_server::Config::default_config().with_data_dir(dir.path())).await?;
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// server.serve(listener, async {}).await?;
    /// # Ok(()) }
    /// ```
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let app = self.app();
        match self.state.config.tls() {
            Some(tls) => {
                let listener =
                    crate::tls::TlsListener::new(listener, Arc::clone(&tls.server_config))?;
                axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<PeerAddr>(),
                )
                .with_graceful_shutdown(shutdown)
                .await?;
            }
            None => {
                // The peer address is what unauthenticated requests are rate-limited by.
                axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<PeerAddr>(),
                )
                .with_graceful_shutdown(shutdown)
                .await?;
            }
        }
        self.close().await;
        Ok(())
    }

    /// Closes the store (the pool waits for its connections).
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let server = vault_server::VaultServer::open(vault_server::Config::default_config().with_data_dir(dir.path())).await?;
    /// server.close().await;
    /// # Ok(()) }
    /// ```
    pub async fn close(&self) {
        self.state.storage.close().await;
    }

    /// The server's metrics (what `GET /metrics` serves). The audit trail reports failed
    /// writes here with [`Metrics::audit_write_failed`].
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let server = vault_server::VaultServer::open(vault_server::Config::default_config().with_data_dir(dir.path())).await?;
    /// assert!(server.metrics().render().contains("mpc_vault_audit_write_failures_total 0"));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn metrics(&self) -> &Metrics {
        &self.state.metrics
    }

    /// The configuration the server runs with.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let server = vault_server::VaultServer::open(vault_server::Config::default_config().with_data_dir(dir.path())).await?;
    /// assert_eq!(server.config().listen().port(), 8443);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.state.config
    }

    /// The server's own store. Tools embedding the server write through it what the HTTP API
    /// does not offer yet (provisioning another user's API key, say); the server sees such a
    /// write at once. Do not open a second store on the same SQLite data directory instead:
    /// that is refused while the server runs (one process per directory, see the README).
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let server = vault_server::VaultServer::open(vault_server::Config::default_config().with_data_dir(dir.path())).await?;
    /// server.bootstrap_admin_key().await?;
    /// assert_eq!(server.storage().api_key_count().await?, 1);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn storage(&self) -> Arc<dyn Storage> {
        Arc::clone(&self.state.storage)
    }
}

/// Builds one provider's backend from its configuration (no layers yet).
async fn build_provider(
    config: &Config,
    name: &str,
    provider: &ProviderConfig,
) -> Result<Arc<dyn KeyProvider>, ServerError> {
    let failed =
        |e: kms_providers::Error| ServerError::Providers(format!("provider `{name}`: {e}"));
    match provider {
        ProviderConfig::Local {
            key_dir, key_name, ..
        } => {
            let dir = key_dir.clone().unwrap_or_else(|| config.default_key_dir());
            let mut builder = LocalProvider::builder(name).key_dir(dir);
            if let Some(key_name) = key_name {
                builder = builder.key_name(key_name.as_str());
            }
            Ok(Arc::new(builder.build().map_err(failed)?))
        }
        #[cfg(feature = "pkcs11")]
        ProviderConfig::Pkcs11 {
            module,
            token_label,
            slot_id,
            pin_env,
            key_label,
            create_key_if_missing,
            max_sessions,
            ..
        } => {
            let mut builder = kms_providers::Pkcs11Provider::builder(name)
                .create_key_if_missing(*create_key_if_missing);
            if let Some(module) = module {
                builder = builder.module(module);
            }
            if let Some(label) = token_label {
                builder = builder.token_label(label.as_str());
            }
            if let Some(slot) = slot_id {
                builder = builder.slot_id(*slot);
            }
            // The PIN is read from the environment here and nowhere else; `Config` only holds
            // the variable's name.
            if let Some(var) = pin_env {
                builder = builder.pin_from_env(var.as_str());
            }
            if let Some(label) = key_label {
                builder = builder.key_label(label.as_str());
            }
            if let Some(max) = max_sessions {
                builder = builder.max_sessions(*max);
            }
            Ok(Arc::new(builder.build().await.map_err(failed)?))
        }
        // `Config` refuses the other backends at load time, so this arm is never reached with a
        // validated configuration.
        _ => Err(ServerError::Providers(format!(
            "provider `{name}`: backend not available in this build"
        ))),
    }
}

/// A new key for a user: the secret (shown once) and the record to store (its hash only).
pub(crate) fn new_api_key(
    user_id: &str,
    name: &str,
    vault_scope: Option<Vec<String>>,
) -> Result<(ApiKeySecret, ApiKeyRecord), ServerError> {
    let secret = ApiKeySecret::generate().map_err(ServerError::Random)?;
    let record = ApiKeyRecord {
        id: crate::ids::new_id().map_err(ServerError::Random)?,
        user_id: user_id.to_owned(),
        name: name.to_owned(),
        key_hash: crate::auth::hash_api_key(secret.expose_secret()),
        key_prefix: secret.prefix(),
        vault_scope,
        created_at: now_millis(),
        revoked_at: None,
    };
    Ok((secret, record))
}

/// Request ids are random UUIDs.
#[derive(Debug, Clone, Copy)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        let id = crate::ids::new_id().ok()?;
        HeaderValue::from_str(&id).ok().map(RequestId::new)
    }
}

/// Turns every error answer that is not already a problem (the timeout's 408, the body limit's
/// 413, axum's 405, …) into one, so that every failure has the same shape.
async fn problem_for_bare_errors(response: Response<Body>) -> Response<Body> {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == PROBLEM_JSON.as_bytes());
    if is_problem {
        return response;
    }
    let error = match status {
        StatusCode::NOT_FOUND => ApiError::NotFound("there is no such route".into()),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed(
            "this route does not accept that method; see /v1/openapi.json".into(),
        ),
        StatusCode::REQUEST_TIMEOUT => {
            ApiError::Timeout("the request took longer than the server's request timeout".into())
        }
        StatusCode::PAYLOAD_TOO_LARGE => crate::extract::too_large(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(
            "send the body as JSON with the header `Content-Type: application/json`".into(),
        ),
        s if s.is_client_error() => ApiError::Validation("the request was refused".into()),
        _ => {
            tracing::error!(%status, "a middleware answered with a bare server error");
            ApiError::Internal
        }
    };
    let mut problem = error.into_response();
    // Keep the original headers that matter (Allow on 405).
    if let Some(allow) = response.headers().get(header::ALLOW) {
        problem.headers_mut().insert(header::ALLOW, allow.clone());
    }
    problem
}
