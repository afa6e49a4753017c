//! The routes and their handlers.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Extension;
use axum::extract::{FromRequestParts, State as AxState};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use custody_policy::{
    ClientShare, CustodyMode, Error as CustodyError, ProviderName, SecretContext, SlotIndex,
    StoredSecret, StoredSlot, VaultCustody,
};
use kms_providers::{CircuitState, KeyProvider as _};
use serde_json::{Value, json};

use crate::app::{AppState, ServerProvider, new_api_key};
use crate::audit::scope::AuditScope;
use crate::auth::{AGENT_KEY_PREFIX, API_KEY_PREFIX, verify_api_key};
use crate::dto::{
    AccessToken, ApiKey, ApiKeyList, ApiKeyTokenRequest, CreateApiKeyRequest, CreateVaultRequest,
    CreatedApiKey, EnableMpcRequest, Health, HsmHealth, Jwks, ListQuery, ProviderHealth,
    PutSecretRequest, RotateRequest, Secret, SecretList, SecretSummary, SecretWritten, Vault,
    VaultList, VersionInfo, VersionList,
};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::policy::Permission;
use crate::problem::{ApiError, Problem, internal};
use crate::storage::{
    NewVersion, PolicyRecord, ShareRecord, StorageError, VaultCustodyRecord, VaultRecord,
    VersionRecord,
};
use crate::time::{now_millis, parse_rfc3339, rfc3339};
use crate::{ids, validate};

/// The client share header (header names are case-insensitive).
const CLIENT_SHARE_HEADER: &str = "x-client-share";
/// The largest version number (the database stores versions as signed 64-bit integers).
const MAX_VERSION: u64 = i64::MAX as u64;
/// How many times a PUT re-seals when another PUT took its version number first.
const PUT_ATTEMPTS: usize = 3;

pub(crate) fn router(state: AppState) -> Router {
    use crate::audit::routes as audit;
    use crate::treasury::routes as treasury;
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/health/hsm", get(health_hsm))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/auth/api-key-token", post(api_key_token))
        .route("/v1/auth/api-keys", post(create_key).get(list_keys))
        .route("/v1/auth/api-keys/{id}", axum::routing::delete(revoke_key))
        .route("/v1/vaults", post(create_vault).get(list_vaults))
        .route("/v1/vaults/{id}", get(get_vault).delete(delete_vault))
        .route("/v1/vaults/{id}/mpc", post(enable_mpc))
        .route("/v1/vaults/{id}/secrets", get(list_secrets))
        .route(
            "/v1/vaults/{id}/secrets/{*path}",
            get(get_secret).put(put_secret).delete(delete_secret),
        )
        .route(
            "/v1/vaults/{id}/secret-versions/{*path}",
            get(list_versions),
        )
        .route(
            "/v1/vaults/{id}/secret-version/{*rest}",
            get(get_secret_version),
        )
        .route(
            "/v1/vaults/{id}/secret-version-disable/{*rest}",
            post(disable_version),
        )
        .route("/v1/vaults/{id}/secret-rotate/{*path}", post(rotate_secret))
        .route("/v1/auth/agent-token", post(crate::agents::agent_token))
        .route(
            "/v1/agents",
            post(crate::agents::create_agent).get(crate::agents::list_agents),
        )
        .route(
            "/v1/agents/{id}",
            get(crate::agents::get_agent).delete(crate::agents::delete_agent),
        )
        .route(
            "/v1/vaults/{id}/policies",
            post(crate::policies::create_policy).get(crate::policies::list_policies),
        )
        .route(
            "/v1/vaults/{id}/policies/{policy_id}",
            get(crate::policies::get_policy)
                .put(crate::policies::update_policy)
                .delete(crate::policies::delete_policy),
        )
        .route("/v1/audit/events", get(audit::events))
        .route("/v1/audit/verify", get(audit::verify))
        .route("/v1/audit/export", get(audit::export))
        .route("/v1/audit/checkpoints", post(audit::create_checkpoint))
        .route("/v1/audit/public-key", get(audit::public_key))
        .route(
            "/v1/vaults/{id}/cmek",
            post(crate::cmek_routes::enable_cmek).delete(crate::cmek_routes::disable_cmek),
        )
        .route(
            "/v1/vaults/{id}/cmek-rotate",
            post(crate::cmek_routes::start_rotation),
        )
        .route(
            "/v1/vaults/{id}/cmek-rotate/{job_id}",
            get(crate::cmek_routes::rotation_status),
        )
        .route("/metrics", get(crate::metrics::serve_metrics))
        .route("/v1/treasury/wallets", get(treasury::list))
        .route("/v1/treasury/wallets/generate", post(treasury::generate))
        .route(
            "/v1/treasury/wallets/{chain}",
            get(treasury::get).delete(treasury::delete),
        )
        .route("/v1/treasury/wallets/{chain}/sign", post(treasury::sign))
        .route(
            "/v1/treasury/wallets/{chain}/export",
            post(treasury::export),
        )
        .route(
            "/v1/treasury/wallets/{chain}/rotate",
            post(treasury::rotate),
        )
        // Every route above is audited (the public ones are skipped inside); routes added
        // after this line would not be.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::audit::scope::record,
        ))
        // Route layers run after routing, and the last one added runs first. The rate limit
        // runs before the audit layer: a refused request costs no database write, so a flood
        // cannot be turned into audit-trail growth (it shows in the `rate_limited` metric). The
        // route template is recorded for the request metrics even when the limit refuses.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::rate_limit::enforce,
        ))
        .route_layer(axum::middleware::from_fn(crate::metrics::record_route))
        .fallback(not_found)
        .with_state(state)
}

pub(crate) fn storage_error(err: StorageError) -> ApiError {
    if let StorageError::Unavailable(reason) = &err {
        // Nothing was written (the batch it was committed with failed, or the store is
        // closing): the request can be retried as it is.
        tracing::error!(%reason, "storage write not committed");
        return ApiError::Unavailable(
            "the change could not be stored and was not made; retry the request".into(),
        );
    }
    internal("storage failure", &err)
}

/// A write refused at the tier's limit becomes 403 `resource-limit-exceeded` (and is counted);
/// any other storage failure is internal.
///
/// The refusal is audited by the request's own event (outcome `denied`, status 403, written by
/// the audit layer once the handler answers), which names the quota in its detail as
/// `{"quota": {"resource": …, "limit": …}}`.
pub(crate) fn quota_or_storage_error(
    state: &AppState,
    audit: &AuditScope,
    err: StorageError,
) -> ApiError {
    if let StorageError::LimitReached { resource, limit } = &err {
        state.metrics.quota_refused(resource);
        audit.detail("quota", json!({ "resource": resource, "limit": limit }));
    }
    match state.config.limits().limit_error(err) {
        Ok(refusal) => refusal,
        Err(other) => storage_error(other),
    }
}

// ---------------------------------------------------------------------------------------------
// Authentication

/// The authenticated caller.
#[derive(Debug)]
pub(crate) struct Principal {
    /// The user id, or the agent id for an agent.
    user_id: String,
    /// The vaults a scoped key (or an agent with `vault_ids`) may use; `None` for every vault.
    scope: Option<Vec<String>>,
    /// An agent: policies decide everything it may do, and it manages nothing.
    agent: bool,
    /// The credential: the API key id (also for access tokens), or the agent id.
    key_id: String,
    /// The rate-limit bucket: `key:{id}` for an API key (access tokens count against their
    /// key), `agent:{id}` for an agent (its keys and tokens share one bucket).
    rate_key: String,
}

/// The result of authenticating a request in the rate-limit layer, handed to the handler's
/// `Principal` extractor so that a request is authenticated once.
#[derive(Debug, Clone)]
pub(crate) struct CachedAuth(std::sync::Arc<std::sync::Mutex<Option<Result<Principal, ApiError>>>>);

impl CachedAuth {
    pub(crate) fn new(auth: Result<Principal, ApiError>) -> CachedAuth {
        CachedAuth(std::sync::Arc::new(std::sync::Mutex::new(Some(auth))))
    }

    fn take(&self) -> Option<Result<Principal, ApiError>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

impl Principal {
    /// The user the caller acts for.
    pub(crate) fn user_id(&self) -> &str {
        &self.user_id
    }

    pub(crate) fn rate_key(&self) -> &str {
        &self.rate_key
    }

    pub(crate) fn may_use(&self, vault_id: &str) -> bool {
        self.scope
            .as_ref()
            .is_none_or(|vaults| vaults.iter().any(|v| v == vault_id))
    }

    /// Refuses actions beyond a scoped key's vaults' secrets, and every management action of
    /// an agent.
    pub(crate) fn unscoped(&self, action: &str) -> Result<(), ApiError> {
        if self.agent {
            return Err(ApiError::Forbidden(format!(
                "agents cannot {action}; use a user's API key"
            )));
        }
        if self.scope.is_some() {
            return Err(ApiError::Forbidden(format!(
                "this API key is scoped to specific vaults and cannot {action}; use an unscoped key"
            )));
        }
        Ok(())
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // The rate-limit layer authenticated the request already when it had credentials
        // (before the audit layer put its scope in the request), so the actor is named here,
        // for a cached result and a fresh one alike.
        let cached = parts
            .extensions
            .get::<CachedAuth>()
            .and_then(CachedAuth::take);
        let principal = match cached {
            Some(auth) => auth?,
            None => authenticate(parts, state).await?,
        };
        if let Some(audit) = parts.extensions.get::<AuditScope>() {
            let kind = if principal.agent { "agent" } else { "user" };
            audit.set_actor(kind, &principal.user_id, &principal.key_id);
        }
        Ok(principal)
    }
}

/// Checks the `Authorization` header: an agent key, an API key, or an access token for
/// either. Keys and agents are looked up on every request, so a revoked key or a deleted or
/// expired agent stops at once, tokens included.
async fn authenticate(parts: &Parts, state: &AppState) -> Result<Principal, ApiError> {
    let header = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
        ApiError::Unauthorized(
            "send `Authorization: Bearer <token>` with an API key (1ck_…) or an access token \
                 from POST /v1/auth/api-key-token"
                .into(),
        )
    })?;
    let bad_scheme = || {
        ApiError::Unauthorized(
            "the Authorization header must be `Bearer <token>` with an API key (1ck_…) or an \
                 access token"
                .into(),
        )
    };
    let text = header.to_str().map_err(|_| bad_scheme())?;
    let (scheme, token) = text.split_once(' ').ok_or_else(bad_scheme)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(bad_scheme());
    }
    let token = token.trim();
    if token.starts_with(AGENT_KEY_PREFIX) {
        let agent = crate::agents::verify_agent_key(&*state.storage, token)
            .await
            .map_err(storage_error)?
            .ok_or_else(|| {
                ApiError::Unauthorized(
                    "the agent key is not valid, or the agent was deleted or has expired".into(),
                )
            })?;
        return Ok(Principal {
            rate_key: crate::rate_limit::agent_principal(&agent.id),
            key_id: agent.id.clone(),
            user_id: agent.id,
            scope: agent.vault_ids,
            agent: true,
        });
    }
    if token.starts_with(API_KEY_PREFIX) {
        let key = verify_api_key(&*state.storage, token)
            .await
            .map_err(storage_error)?
            .ok_or_else(|| {
                ApiError::Unauthorized("the API key is not valid or was revoked".into())
            })?;
        return Ok(Principal {
            rate_key: crate::rate_limit::key_principal(&key.id),
            key_id: key.id,
            user_id: key.user_id,
            scope: key.vault_scope,
            agent: false,
        });
    }
    let invalid_token = || {
        ApiError::Unauthorized(
            "the access token is not valid or has expired; get a new one from \
                 POST /v1/auth/api-key-token"
                .into(),
        )
    };
    let claims = state.jwt.verify(token).ok_or_else(invalid_token)?;
    if claims.agent {
        // Deleting or expiring the agent revokes its tokens: it is looked up every time.
        let agent = state
            .storage
            .get_agent(&claims.sub)
            .await
            .map_err(storage_error)?
            .filter(|a| crate::agents::is_live(a, now_millis()))
            .ok_or_else(invalid_token)?;
        return Ok(Principal {
            rate_key: crate::rate_limit::agent_principal(&agent.id),
            key_id: agent.id.clone(),
            user_id: agent.id,
            scope: agent.vault_ids,
            agent: true,
        });
    }
    // Revoking a key revokes the tokens issued for it.
    let key = state
        .storage
        .get_api_key(&claims.key_id)
        .await
        .map_err(storage_error)?
        .filter(|k| k.revoked_at.is_none() && k.user_id == claims.sub)
        .ok_or_else(invalid_token)?;
    Ok(Principal {
        rate_key: crate::rate_limit::key_principal(&key.id),
        key_id: key.id,
        user_id: key.user_id,
        scope: key.vault_scope,
        agent: false,
    })
}

#[utoipa::path(
    post, path = "/v1/auth/api-key-token", tag = "auth", request_body = ApiKeyTokenRequest,
    responses((status = 200, description = "An access token for the key", body = AccessToken))
)]
pub(crate) async fn api_key_token(
    AxState(state): AxState<AppState>,
    Extension(audit): Extension<AuditScope>,
    ApiJson(body): ApiJson<ApiKeyTokenRequest>,
) -> Result<Response, ApiError> {
    let key = if body.api_key.0.starts_with(API_KEY_PREFIX) {
        verify_api_key(&*state.storage, &body.api_key.0)
            .await
            .map_err(storage_error)?
    } else {
        None
    };
    let key = key.ok_or_else(|| {
        ApiError::Unauthorized("`api_key` is not a valid API key (1ck_…) or was revoked".into())
    })?;
    // Recorded by the audit middleware (own transaction) once the token is issued.
    audit.set_actor("user", &key.user_id, &key.id);
    audit.set_resource(&key.id, None);
    let ttl = state.config.token_ttl();
    let token = state
        .jwt
        .issue(&key, ttl)
        .map_err(|e| internal("signing an access token", &e))?;
    Ok(Json(AccessToken {
        access_token: token,
        token_type: "Bearer".into(),
        expires_in: ttl.as_secs(),
    })
    .into_response())
}

fn key_json(record: &crate::storage::ApiKeyRecord) -> ApiKey {
    ApiKey {
        id: record.id.clone(),
        name: record.name.clone(),
        key_prefix: record.key_prefix.clone(),
        vault_ids: record.vault_scope.clone(),
        created_at: rfc3339(record.created_at),
        revoked_at: record.revoked_at.map(rfc3339),
    }
}

#[utoipa::path(
    post, path = "/v1/auth/api-keys", tag = "auth", security(("bearer" = [])), request_body = CreateApiKeyRequest,
    responses(
        (status = 201, description = "The new key, shown only here", body = CreatedApiKey),
        (status = 403, description = "A scoped key cannot manage keys", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn create_key(
    AxState(state): AxState<AppState>,
    Extension(audit): Extension<AuditScope>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateApiKeyRequest>,
) -> Result<Response, ApiError> {
    principal.unscoped("create API keys")?;
    let name = body.name.unwrap_or_else(|| "api key".to_owned());
    validate::name("name", &name, 128)?;
    if let Some(vaults) = &body.vault_ids {
        if vaults.is_empty() || vaults.len() > 100 {
            return Err(ApiError::Validation(
                "`vault_ids` must list 1 to 100 vault ids (omit it for an unscoped key)".into(),
            ));
        }
        for id in vaults {
            owned_vault(&state, &principal, id).await?;
        }
    }
    let (secret, record) = new_api_key(&principal.user_id, &name, body.vault_ids)
        .map_err(|e| internal("creating an API key", &e))?;
    audit.set_resource(&record.id, None);
    state
        .storage
        .insert_api_key(&record, &audit.success()?)
        .await
        .map_err(storage_error)?;
    audit.mark_audited();
    // The full key is shown here, once; only its hash is stored.
    let out = CreatedApiKey {
        key_info: key_json(&record),
        key: secret.expose_secret().to_owned(),
    };
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

#[utoipa::path(
    get, path = "/v1/auth/api-keys", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's keys (prefixes only)", body = ApiKeyList),
        (status = 403, description = "A scoped key cannot manage keys", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list_keys(
    AxState(state): AxState<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.unscoped("list API keys")?;
    let keys = state
        .storage
        .list_api_keys(&principal.user_id)
        .await
        .map_err(storage_error)?;
    let api_keys = keys.iter().map(key_json).collect();
    Ok(Json(ApiKeyList { api_keys }).into_response())
}

#[utoipa::path(
    delete, path = "/v1/auth/api-keys/{id}", tag = "auth", security(("bearer" = [])),
    params(("id" = String, Path, description = "Key id")),
    responses(
        (status = 204, description = "Revoked, with every token issued for it"),
        (status = 403, description = "A scoped key cannot manage keys", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn revoke_key(
    AxState(state): AxState<AppState>,
    Extension(audit): Extension<AuditScope>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    principal.unscoped("revoke API keys")?;
    let done = state
        .storage
        .revoke_api_key(&principal.user_id, &id, now_millis(), &audit.success()?)
        .await
        .map_err(storage_error)?;
    if done {
        audit.mark_audited();
    } else {
        return Err(ApiError::NotFound(
            "there is no active API key with that id".into(),
        ));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(
    get, path = "/.well-known/jwks.json", tag = "auth",
    responses((status = 200, description = "The Ed25519 key access tokens are signed with", body = Jwks))
)]
pub(crate) async fn jwks(AxState(state): AxState<AppState>) -> Response {
    let jwk: Jwks = state.jwt.jwks();
    Json(jwk).into_response()
}

// ---------------------------------------------------------------------------------------------
// Health

#[utoipa::path(
    get, path = "/v1/health", tag = "health",
    responses((status = 200, description = "The server answers", body = Health))
)]
pub(crate) async fn health() -> Response {
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
    .into_response()
}

#[utoipa::path(
    get, path = "/v1/health/hsm", tag = "health", security(("bearer" = [])),
    responses((status = 200, description = "Every provider's health: ok, degraded or unavailable", body = HsmHealth))
)]
pub(crate) async fn health_hsm(AxState(state): AxState<AppState>) -> Response {
    // Every provider is checked at once, each in its own task bounded by its timeout, so the
    // answer takes as long as the slowest check, not the sum. The `JoinSet` aborts the checks
    // if the request itself is dropped.
    let mut checks = tokio::task::JoinSet::new();
    let mut task_index = BTreeMap::new();
    for (index, provider) in state.providers.iter().enumerate() {
        let provider = provider.clone();
        let handle = checks.spawn(check_provider(provider));
        task_index.insert(handle.id(), index);
    }
    let mut providers: Vec<Option<ProviderHealth>> = state.providers.iter().map(|_| None).collect();
    while let Some(joined) = checks.join_next_with_id().await {
        let (id, health) = match joined {
            Ok((id, health)) => (id, health),
            Err(err) => {
                // A check that panicked (a bug in a provider) is reported, not propagated.
                tracing::error!(error = %err, "a provider health check task failed");
                continue;
            }
        };
        if let Some(slot) = task_index.get(&id).and_then(|i| providers.get_mut(*i)) {
            *slot = Some(health);
        }
    }
    let providers: Vec<ProviderHealth> = providers
        .into_iter()
        .zip(&state.providers)
        .map(|(health, provider)| {
            health.unwrap_or_else(|| ProviderHealth {
                name: provider.layered.name().to_owned(),
                status: "unavailable".into(),
                kind: None,
                key_version: None,
                circuit: circuit_label(provider),
                detail: Some("the health check failed inside the server".into()),
            })
        })
        .collect();
    let healthy = providers.iter().filter(|p| p.status == "ok").count();
    let status = if healthy == providers.len() {
        "ok"
    } else if healthy == 0 {
        "unavailable"
    } else {
        "degraded"
    };
    Json(HsmHealth {
        status: status.into(),
        providers,
    })
    .into_response()
}

/// One provider's health: a real wrap and unwrap of a probe value through the concurrency limit,
/// the circuit breaker and the timeout, but not the retry layer: a probe reports what one call
/// sees now, and must finish within the provider's timeout.
async fn check_provider(provider: ServerProvider) -> ProviderHealth {
    let name = provider.layered.name().to_owned();
    // The inner timeout layer fires at `timeout`, which the breaker counts as a failure; the
    // outer bound adds a little room for that and also covers queueing for a concurrency slot.
    let bound = provider.timeout.saturating_add(HEALTH_MARGIN);
    let result = tokio::time::timeout(bound, provider.layered.get_ref().health()).await;
    let circuit = circuit_label(&provider);
    match result {
        Ok(Ok(health)) => ProviderHealth {
            name,
            status: "ok".into(),
            kind: Some(health.kind().to_string()),
            key_version: Some(health.key_version().as_str().to_owned()),
            circuit,
            detail: None,
        },
        Ok(Err(err)) => {
            tracing::warn!(provider = %name, error = %err, "provider health check failed");
            ProviderHealth {
                name,
                status: "unavailable".into(),
                kind: None,
                key_version: None,
                circuit,
                detail: Some(err.to_string()),
            }
        }
        Err(_) => {
            tracing::warn!(provider = %name, "provider health check timed out");
            ProviderHealth {
                name,
                status: "unavailable".into(),
                kind: None,
                key_version: None,
                circuit,
                detail: Some(format!(
                    "the health check timed out after {} ms",
                    bound.as_millis()
                )),
            }
        }
    }
}

/// Room above a provider's own timeout for the health check's outer bound.
const HEALTH_MARGIN: Duration = Duration::from_millis(250);

/// The circuit breaker's state as the API spells it.
fn circuit_label(provider: &ServerProvider) -> String {
    match provider.layered.get_ref().get_ref().state() {
        CircuitState::Closed => "closed",
        CircuitState::Open => "open",
        CircuitState::HalfOpen => "half-open",
        // `CircuitState` is non-exhaustive; a state added later is shown as such.
        _ => "unknown",
    }
    .into()
}

/// The OpenAPI document (public, like the JWKS).
async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::openapi_json(),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::NotFound("there is no such route; see /v1/openapi.json".into())
}

// ---------------------------------------------------------------------------------------------
// Vaults

pub(crate) fn vault_json(vault: &VaultRecord) -> Vault {
    Vault {
        id: vault.id.clone(),
        name: vault.name.clone(),
        description: vault.description.clone(),
        created_by: vault.created_by.clone(),
        created_at: rfc3339(vault.created_at),
        cmek_enabled: vault.cmek_enabled,
        mpc_custody: vault.custody.as_ref().map(|c| c.mode.clone()),
        mpc_threshold: vault.custody.as_ref().map(|c| c.threshold),
        mpc_providers: vault.custody.as_ref().map(|c| c.providers.clone()),
    }
}

/// The caller's vault, or 404 (another user's vault is indistinguishable from none).
pub(crate) async fn owned_vault(
    state: &AppState,
    who: &Principal,
    id: &str,
) -> Result<VaultRecord, ApiError> {
    state
        .storage
        .get_vault(id)
        .await
        .map_err(storage_error)?
        .filter(|v| !who.agent && v.created_by == who.user_id && who.may_use(&v.id))
        .ok_or_else(|| ApiError::NotFound(format!("there is no vault with id {id:?}")))
        .and_then(crate::treasury::refuse_system_vault)
}

/// How a caller may use a vault's secrets.
#[derive(Debug)]
pub(crate) enum Access {
    /// The vault's creator: everything.
    Full,
    /// Anyone else: what these policies (the caller's, read for this request) allow.
    Policies(Vec<PolicyRecord>),
}

impl Access {
    fn allows(&self, path: &str, permission: Permission) -> bool {
        match self {
            Access::Full => true,
            Access::Policies(policies) => {
                crate::policy::allows(policies, path, permission, now_millis())
            }
        }
    }

    fn require(&self, path: &str, permission: Permission) -> Result<(), ApiError> {
        if self.allows(path, permission) {
            return Ok(());
        }
        Err(ApiError::Forbidden(format!(
            "no policy of this vault grants `{}` on {path:?} to the caller",
            permission.as_str()
        )))
    }
}

/// A vault whose secrets the caller may use, with how: its creator has full access; another
/// user or an agent needs an unexpired allowing policy in that vault, or the vault answers 404
/// as if it did not exist. Policies are read from storage on every request, so a changed or
/// deleted policy applies at once.
async fn secret_vault(
    state: &AppState,
    who: &Principal,
    id: &str,
) -> Result<(VaultRecord, Access), ApiError> {
    let not_found = || ApiError::NotFound(format!("there is no vault with id {id:?}"));
    let vault = state
        .storage
        .get_vault(id)
        .await
        .map_err(storage_error)?
        .filter(|v| who.may_use(&v.id))
        .ok_or_else(not_found)?;
    if !who.agent && vault.created_by == who.user_id {
        return Ok((crate::treasury::refuse_system_vault(vault)?, Access::Full));
    }
    if crate::treasury::is_system_vault(&vault) {
        // Nobody else can hold a policy on it (policy routes refuse it); answered as absent.
        return Err(not_found());
    }
    let kind = if who.agent { "agent" } else { "user" };
    let policies = state
        .storage
        .principal_policies(&vault.id, kind, &who.user_id)
        .await
        .map_err(storage_error)?;
    if !crate::policy::grants_anything(&policies, now_millis()) {
        return Err(not_found());
    }
    Ok((vault, Access::Policies(policies)))
}

pub(crate) fn custody_error(err: CustodyError) -> ApiError {
    match err {
        CustodyError::MissingProviders { .. } => ApiError::ProvidersNotConfigured(err.to_string()),
        CustodyError::ModeAlreadySet { .. } => ApiError::Conflict(err.to_string()),
        CustodyError::InvalidMode { .. } | CustodyError::InvalidProviderName { .. } => {
            ApiError::Validation(err.to_string())
        }
        CustodyError::ClientShareMissing { .. } => ApiError::ClientShareMissing(format!(
            "{err}: send the `client_share` returned when this version was written, in the \
             `X-Client-Share` header"
        )),
        CustodyError::ClientShareMalformed { .. } => ApiError::ClientShareMalformed(format!(
            "{err}: send the `client_share` exactly as returned when this version was written \
             (base64, 56 characters)"
        )),
        CustodyError::ClientShareForeign { .. } => ApiError::ClientShareForeign(format!(
            "{err}; send the client share returned when this version of this secret was written"
        )),
        CustodyError::WrongClientShare { .. } => ApiError::ClientShareWrong(format!(
            "{err}; send the client share returned when this version was written"
        )),
        CustodyError::UnexpectedClientShare { .. } => ApiError::ClientShareUnexpected(format!(
            "{err}; do not send `X-Client-Share` for this secret"
        )),
        other if other.is_transient() => {
            tracing::warn!(error = %other, "key providers temporarily unavailable");
            ApiError::Unavailable(
                "the key providers are temporarily unavailable; retry later".into(),
            )
        }
        other => internal("custody failure", &other),
    }
}

/// Parses a mode (with optional providers) and checks its providers are configured.
fn requested_mode(
    state: &AppState,
    mode: &str,
    providers: Option<Vec<String>>,
) -> Result<CustodyMode, ApiError> {
    let mut mode: CustodyMode = mode.parse().map_err(custody_error)?;
    if let Some(providers) = providers {
        mode = mode.with_providers(providers).map_err(custody_error)?;
    }
    state.custodian.check_mode(&mode).map_err(custody_error)?;
    state.config.limits().check_mode(&mode)?;
    Ok(mode)
}

pub(crate) fn custody_record(mode: &CustodyMode) -> VaultCustodyRecord {
    VaultCustodyRecord {
        mode: mode.to_string(),
        threshold: mode.threshold(),
        providers: mode
            .provider_slots()
            .map(|(_, name)| name.as_str().to_owned())
            .collect(),
    }
}

#[utoipa::path(
    post, path = "/v1/vaults", tag = "vaults", security(("bearer" = [])), request_body = CreateVaultRequest,
    responses(
        (status = 201, description = "The new vault", body = Vault),
        (status = 403, description = "A scoped key cannot create vaults; the tier's vault limit is reached (`resource-limit-exceeded`) or its custody modes exclude this one (`custody-mode-not-allowed`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn create_vault(
    AxState(state): AxState<AppState>,
    Extension(audit): Extension<AuditScope>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateVaultRequest>,
) -> Result<Response, ApiError> {
    principal.unscoped("create vaults")?;
    validate::name("name", &body.name, 128)?;
    crate::treasury::refuse_reserved_name(&body.name)?;
    // Vault quotas (when they come) count the caller's vaults except the system vault
    // `__treasury-keys`: check it with `crate::treasury::is_system_vault`.
    let description = body.description.unwrap_or_default();
    if description.chars().count() > 1024 {
        return Err(ApiError::Validation(
            "`description` must be at most 1024 characters".into(),
        ));
    }
    let custody = match body.mpc_custody.as_deref() {
        Some(mode) => Some(custody_record(&requested_mode(&state, mode, None)?)),
        None => None,
    };
    let vault = VaultRecord {
        id: ids::new_id().map_err(|e| internal("random id", &e))?,
        name: body.name,
        description,
        created_by: principal.user_id,
        created_at: now_millis(),
        cmek_enabled: false,
        custody,
    };
    audit.set_resource(&vault.id, Some(&vault.id));
    if let Some(custody) = &vault.custody {
        audit.detail("custody_mode", json!(custody.mode));
    }
    state
        .storage
        .insert_vault_within(
            &vault,
            state.config.limits().limits().max_vaults(),
            &audit.success()?,
        )
        .await
        .map_err(|err| quota_or_storage_error(&state, &audit, err))?;
    audit.mark_audited();
    Ok((StatusCode::CREATED, Json(vault_json(&vault))).into_response())
}

#[utoipa::path(
    get, path = "/v1/vaults", tag = "vaults", security(("bearer" = [])),
    responses((status = 200, description = "The caller's vaults", body = VaultList))
)]
pub(crate) async fn list_vaults(
    AxState(state): AxState<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    let vaults = state
        .storage
        .list_vaults(&principal.user_id)
        .await
        .map_err(storage_error)?;
    let vaults = vaults
        .iter()
        .filter(|v| principal.may_use(&v.id) && !crate::treasury::is_system_vault(v))
        .map(vault_json)
        .collect();
    Ok(Json(VaultList { vaults }).into_response())
}

#[utoipa::path(
    get, path = "/v1/vaults/{id}", tag = "vaults", security(("bearer" = [])),
    params(("id" = String, Path, description = "Vault id")),
    responses((status = 200, description = "The vault", body = Vault))
)]
pub(crate) async fn get_vault(
    AxState(state): AxState<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let vault = owned_vault(&state, &principal, &id).await?;
    Ok(Json(vault_json(&vault)).into_response())
}

#[utoipa::path(
    delete, path = "/v1/vaults/{id}", tag = "vaults", security(("bearer" = [])),
    params(("id" = String, Path, description = "Vault id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "A scoped key cannot delete vaults", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn delete_vault(
    AxState(state): AxState<AppState>,
    Extension(audit): Extension<AuditScope>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    principal.unscoped("delete vaults")?;
    owned_vault(&state, &principal, &id).await?;
    if !state
        .storage
        .delete_vault(&id, now_millis(), &audit.success()?)
        .await
        .map_err(storage_error)?
    {
        // Deleted by a concurrent request between the check and the write.
        return Err(ApiError::NotFound(format!(
            "there is no vault with id {id:?}"
        )));
    }
    audit.mark_audited();
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(
    post, path = "/v1/vaults/{id}/mpc", tag = "vaults", security(("bearer" = [])), request_body = EnableMpcRequest,
    params(("id" = String, Path, description = "Vault id")),
    responses(
        (status = 200, description = "The vault with its custody mode", body = Vault),
        (status = 403, description = "The tier's custody modes exclude this one (`custody-mode-not-allowed`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The vault already has another mode", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn enable_mpc(
    AxState(state): AxState<AppState>,
    Extension(audit): Extension<AuditScope>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<EnableMpcRequest>,
) -> Result<Response, ApiError> {
    let vault = owned_vault(&state, &principal, &id).await?;
    let mode_text = match (body.custody_mode, body.mpc_custody) {
        (Some(mode), None) | (None, Some(mode)) => mode,
        (Some(_), Some(_)) => {
            return Err(ApiError::Validation(
                "send either `custody_mode` or `mpc_custody`, not both".into(),
            ));
        }
        (None, None) => {
            return Err(ApiError::Validation(
                "send `custody_mode` (with optional `providers`) or `mpc_custody`, e.g. \
                 {\"custody_mode\": \"2of3_multi_hsm\"}"
                    .into(),
            ));
        }
    };
    let mode = requested_mode(&state, &mode_text, body.providers)?;
    let already = |current: &str| -> Result<Response, ApiError> {
        let current: CustodyMode = current
            .parse()
            .map_err(|e| internal("stored custody mode", &e))?;
        if current == mode {
            // Asking again for the mode the vault has is not a change.
            return Ok(Json(vault_json(&vault)).into_response());
        }
        let err = VaultCustody::with_mode(current)
            .set_mode(mode.clone())
            .err()
            .map_or(
                ApiError::Conflict("the vault's custody mode is already set".into()),
                custody_error,
            );
        Err(err)
    };
    if let Some(current) = &vault.custody {
        return already(&current.mode);
    }
    let record = custody_record(&mode);
    audit.detail("custody_mode", json!(record.mode));
    let set = state
        .storage
        .set_vault_custody(&id, &record, &audit.success()?)
        .await
        .map_err(storage_error)?;
    if set {
        audit.mark_audited();
    }
    let vault = owned_vault(&state, &principal, &id).await?;
    if !set {
        // Another request set a mode between the read and the write.
        if let Some(current) = &vault.custody {
            return already(&current.mode);
        }
    }
    Ok(Json(vault_json(&vault)).into_response())
}

// ---------------------------------------------------------------------------------------------
// Secrets

fn checked_path(path: &str) -> Result<&str, ApiError> {
    validate::secret_path(path)?;
    Ok(path)
}

/// Splits `{path}/{version}` (the version is the last segment).
fn path_and_version(rest: &str) -> Result<(&str, u64), ApiError> {
    let (path, version) = rest.rsplit_once('/').ok_or_else(|| {
        ApiError::InvalidPath("the URL must end with `/{secret path}/{version}`".into())
    })?;
    // Versions are stored as signed 64-bit integers (portable SQL), so the largest is
    // i64::MAX; anything else is refused here rather than failing in the database.
    let version = version
        .parse::<u64>()
        .ok()
        .filter(|v| (1..=MAX_VERSION).contains(v))
        .ok_or_else(|| {
            ApiError::Validation(format!(
                "the version must be an integer from 1 to {MAX_VERSION}"
            ))
        })?;
    Ok((checked_path(path)?, version))
}

pub(crate) struct WriteOptions {
    pub(crate) secret_type: String,
    pub(crate) metadata: String,
    pub(crate) metadata_json: Value,
    pub(crate) expires_at: Option<i64>,
    pub(crate) max_access_count: Option<u64>,
}

/// Seals `value` as the next version of `path` under the vault's custody: the version to store
/// and the client share (to return once, never stored) if the mode has one. Sets the version
/// and custody mode in the audit detail.
pub(crate) async fn seal_version(
    state: &AppState,
    audit: &AuditScope,
    principal: &Principal,
    vault: &VaultRecord,
    path: &str,
    value: &[u8],
    options: &WriteOptions,
) -> Result<(NewVersion, Option<ClientShare>), ApiError> {
    let mode = match &vault.custody {
        Some(c) => c
            .mode
            .parse::<CustodyMode>()
            .map_err(|e| internal("stored custody mode", &e))?,
        None => CustodyMode::standard(),
    };
    let next = state
        .storage
        .latest_version_number(&vault.id, path)
        .await
        .map_err(storage_error)?
        .unwrap_or(0)
        .checked_add(1)
        .ok_or_else(|| ApiError::Conflict("the secret has no version numbers left".into()))?;
    let ctx = SecretContext::new(&vault.id, path, next, &options.secret_type, mode.clone())
        .map_err(|e| internal("secret context", &e))?;
    let sealed = state
        .custodian
        .seal(&ctx, value)
        .await
        .map_err(custody_error)?;
    let (stored, client_share) = sealed.into_parts();
    let (envelope, slots) = stored.into_parts();
    let shares = slots
        .iter()
        .map(|slot| ShareRecord {
            slot: slot.index().get(),
            provider: slot.provider().as_str().to_owned(),
            blob: slot.wrapped().map(<[u8]>::to_vec),
        })
        .collect();
    let new = NewVersion {
        new_secret_id: ids::new_id().map_err(|e| internal("random id", &e))?,
        version: VersionRecord {
            secret_id: String::new(),
            version_id: ids::new_id().map_err(|e| internal("random id", &e))?,
            vault_id: vault.id.clone(),
            path: path.to_owned(),
            version: next,
            secret_type: options.secret_type.clone(),
            custody_mode: mode.to_string(),
            envelope,
            metadata: options.metadata.clone(),
            expires_at: options.expires_at,
            max_access_count: options.max_access_count,
            access_count: 0,
            disabled: false,
            deleted: false,
            created_by: principal.user_id.clone(),
            created_at: now_millis(),
            // Set by the store from the vault, in the same statement as the insert.
            cmek_fingerprint: None,
        },
        shares,
    };
    audit.detail("version", json!(next));
    audit.detail("custody_mode", json!(new.version.custody_mode));
    Ok((new, client_share))
}

/// Seals `value` as the next version of `path` and stores it with all its shares in one
/// transaction; answers 201 with the client share if the mode has one.
async fn write_version(
    state: &AppState,
    audit: &AuditScope,
    principal: &Principal,
    vault: &VaultRecord,
    path: &str,
    value: &[u8],
    options: WriteOptions,
) -> Result<Response, ApiError> {
    for _ in 0..PUT_ATTEMPTS {
        let (new, client_share) =
            seal_version(state, audit, principal, vault, path, value, &options).await?;
        let max_secrets = state.config.limits().limits().max_secrets();
        match state
            .storage
            .put_version_within(&new, max_secrets, &audit.success()?)
            .await
        {
            Ok(stored) => {
                audit.mark_audited();
                // The client share is returned once, here, and never stored.
                let client_share =
                    client_share.map(|share| share.to_base64().expose_secret().to_owned());
                let out = SecretWritten {
                    id: stored.secret_id,
                    path: stored.path,
                    secret_type: stored.secret_type,
                    version: stored.version,
                    metadata: options.metadata_json,
                    created_at: rfc3339(stored.created_at),
                    expires_at: stored.expires_at.map(rfc3339),
                    cmek_encrypted: stored.cmek_fingerprint.is_some(),
                    client_share,
                };
                return Ok((StatusCode::CREATED, Json(out)).into_response());
            }
            Err(StorageError::Conflict) => {}
            Err(e) => return Err(quota_or_storage_error(state, audit, e)),
        }
    }
    Err(ApiError::Conflict(
        "other writes to this secret kept taking the next version; retry".into(),
    ))
}

#[utoipa::path(
    put, path = "/v1/vaults/{id}/secrets/{path}", tag = "secrets", security(("bearer" = [])), request_body = PutSecretRequest,
    params(("id" = String, Path, description = "Vault id"), ("path" = String, Path, description = "Secret path (`/` may be sent as `%2F`)")),
    responses(
        (status = 201, description = "The new version; `client_share` in modes with a client slot", body = SecretWritten),
        (status = 403, description = "A new secret past the tier's secret limit (`resource-limit-exceeded`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Concurrent writes kept taking the next version", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn put_secret(
    AxState(state): AxState<AppState>,
    Extension(audit): Extension<AuditScope>,
    principal: Principal,
    ApiPath((id, path)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<PutSecretRequest>,
) -> Result<Response, ApiError> {
    let (vault, access) = secret_vault(&state, &principal, &id).await?;
    let path = checked_path(&path)?;
    access.require(path, Permission::Write)?;
    let value = &body.value.0;
    if value.len() > state.config.max_value_bytes() {
        return Err(ApiError::PayloadTooLarge(format!(
            "`value` is {} bytes; this server accepts at most {}",
            value.len(),
            state.config.max_value_bytes()
        )));
    }
    let secret_type = body.secret_type.unwrap_or_else(|| "generic".to_owned());
    validate::secret_type(&secret_type)?;
    let metadata_json = body.metadata.unwrap_or_else(|| json!({}));
    let metadata = validate::metadata(&metadata_json)?;
    let expires_at = match body.expires_at.as_deref() {
        Some(text) => {
            let at = parse_rfc3339("expires_at", text)?;
            if at <= now_millis() {
                return Err(ApiError::Validation("`expires_at` is in the past".into()));
            }
            Some(at)
        }
        None => None,
    };
    if body.max_access_count == Some(0) {
        return Err(ApiError::Validation(
            "`max_access_count` must be at least 1".into(),
        ));
    }
    if body
        .max_access_count
        .is_some_and(|n| i64::try_from(n).is_err())
    {
        return Err(ApiError::Validation(
            "`max_access_count` is too large".into(),
        ));
    }
    let options = WriteOptions {
        secret_type,
        metadata,
        metadata_json,
        expires_at,
        max_access_count: body.max_access_count,
    };
    write_version(
        &state,
        &audit,
        &principal,
        &vault,
        path,
        value.as_bytes(),
        options,
    )
    .await
}

/// Why a stored version cannot be read, if it cannot.
fn gone_reason(record: &VersionRecord) -> Option<&'static str> {
    if record.deleted {
        Some("this secret was deleted")
    } else if record.disabled {
        Some("this secret version was disabled")
    } else if record.expires_at.is_some_and(|at| at <= now_millis()) {
        Some("this secret version has expired")
    } else if record
        .max_access_count
        .is_some_and(|max| record.access_count >= max)
    {
        Some("this secret version has been read its maximum number of times")
    } else {
        None
    }
}

fn metadata_value(record: &VersionRecord) -> Value {
    serde_json::from_str(&record.metadata).unwrap_or_else(|_| json!({}))
}

/// Opens one version: checks it is readable, opens it through the custodian with the client
/// share (from `X-Client-Share`) if its mode has one. The caller counts the access with
/// `record_access` before answering.
pub(crate) async fn open_version(
    state: &AppState,
    vault: &VaultRecord,
    path: &str,
    version: Option<u64>,
    headers: &HeaderMap,
) -> Result<(VersionRecord, custody_policy::Opened), ApiError> {
    let (record, shares) = state
        .storage
        .get_version(&vault.id, path, version)
        .await
        .map_err(storage_error)?
        .ok_or_else(|| match version {
            Some(v) => ApiError::NotFound(format!("secret {path:?} has no version {v}")),
            None => ApiError::NotFound(format!("there is no secret at {path:?}")),
        })?;
    if let Some(reason) = gone_reason(&record) {
        return Err(ApiError::Gone(reason.into()));
    }
    let mode: CustodyMode = record
        .custody_mode
        .parse()
        .map_err(|e| internal("stored custody mode", &e))?;
    let ctx = SecretContext::new(&vault.id, path, record.version, &record.secret_type, mode)
        .map_err(|e| internal("secret context", &e))?;
    let client_share = match headers.get(CLIENT_SHARE_HEADER) {
        None => None,
        Some(value) => {
            let text = value.to_str().map_err(|_| {
                ApiError::ClientShareMalformed(
                    "the X-Client-Share header is not base64 text; send the `client_share` \
                     exactly as returned when this version was written"
                        .into(),
                )
            })?;
            Some(ClientShare::from_base64(text.trim()).map_err(custody_error)?)
        }
    };
    let slots = shares
        .into_iter()
        .map(|share| {
            let index = SlotIndex::new(share.slot).ok_or_else(|| {
                internal(
                    "stored slot",
                    &StorageError::Corrupt {
                        table: "secret_dek_shares",
                        reason: format!("slot {}", share.slot),
                    },
                )
            })?;
            let provider =
                ProviderName::new(share.provider).map_err(|e| internal("stored provider", &e))?;
            Ok(match share.blob {
                Some(blob) => StoredSlot::stored(index, provider, blob),
                None => StoredSlot::pending(index, provider),
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let stored = StoredSecret::new(record.envelope.clone(), slots);
    let opened = state
        .custodian
        .open(&ctx, &stored, client_share.as_ref())
        .await
        .map_err(custody_error)?;
    state.metrics.record_read(opened.report());
    if !opened.report().liars().is_empty() {
        tracing::warn!(liars = %opened.report().liars(), secret = path, "providers returned wrong shares");
    }
    Ok((record, opened))
}

/// Reads one version: opens it, counts the access, answers with the value.
async fn read_version(
    state: &AppState,
    audit: &AuditScope,
    vault: &VaultRecord,
    path: &str,
    version: Option<u64>,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let (record, opened) = open_version(state, vault, path, version, headers).await?;
    // Counted after a successful open, with a conditional update: a failed read costs no
    // access, and concurrent reads cannot exceed the maximum together.
    audit.detail("version", json!(record.version));
    if !state
        .storage
        .record_access(&record.version_id, &audit.success()?)
        .await
        .map_err(storage_error)?
    {
        return Err(ApiError::Gone(
            "this secret version has been read its maximum number of times".into(),
        ));
    }
    // The access and its audit event committed together.
    audit.mark_audited();
    let value = std::str::from_utf8(opened.plaintext().expose_secret())
        .map_err(|e| internal("stored value is not UTF-8", &e))?;
    let metadata = metadata_value(&record);
    let body = Secret {
        id: record.secret_id,
        path: record.path,
        secret_type: record.secret_type,
        value: value.to_owned(),
        version: record.version,
        metadata,
        created_by: record.created_by,
        created_at: rfc3339(record.created_at),
        expires_at: record.expires_at.map(rfc3339),
        cmek_encrypted: record.cmek_fingerprint.is_some(),
    };
    // `Cache-Control: no-store` is set on every answer by the middleware in `app()`.
    Ok(Json(body).into_response())
}

#[utoipa::path(
    get, path = "/v1/vaults/{id}/secrets/{path}", tag = "secrets", security(("bearer" = [])),
    params(("id" = String, Path, description = "Vault id"), ("path" = String, Path, description = "Secret path"),
        ("X-Client-Share" = Option<String>, Header, description = "The version's client share, in modes with a client slot")),
    responses(
        (status = 200, description = "The latest version with its value", body = Secret),
        (status = 403, description = "The client share is of another secret or version, or wrong", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "Deleted, disabled, expired or read its maximum number of times", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get_secret(
    AxState(state): AxState<AppState>,
    Extension(audit): Extension<AuditScope>,
    principal: Principal,
    ApiPath((id, path)): ApiPath<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (vault, access) = secret_vault(&state, &principal, &id).await?;
    let path = checked_path(&path)?;
    access.require(path, Permission::Read)?;
    read_version(&state, &audit, &vault, path, None, &headers).await
}

#[utoipa::path(
    get, path = "/v1/vaults/{id}/secret-version/{path}/{version}", tag = "secrets", security(("bearer" = [])),
    params(("id" = String, Path, description = "Vault id"), ("path" = String, Path, description = "Secret path"),
        ("version" = u64, Path, minimum = 1, maximum = 9_223_372_036_854_775_807_u64, description = "Version number"),
        ("X-Client-Share" = Option<String>, Header, description = "The version's client share, in modes with a client slot")),
    responses(
        (status = 200, description = "The version with its value", body = Secret),
        (status = 403, description = "The client share is of another secret or version, or wrong", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "Deleted, disabled, expired or read its maximum number of times", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get_secret_version(
    AxState(state): AxState<AppState>,
    Extension(audit): Extension<AuditScope>,
    principal: Principal,
    ApiPath((id, rest)): ApiPath<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (vault, access) = secret_vault(&state, &principal, &id).await?;
    let (path, version) = path_and_version(&rest)?;
    access.require(path, Permission::Read)?;
    read_version(&state, &audit, &vault, path, Some(version), &headers).await
}

#[utoipa::path(
    delete, path = "/v1/vaults/{id}/secrets/{path}", tag = "secrets", security(("bearer" = [])),
    params(("id" = String, Path, description = "Vault id"), ("path" = String, Path, description = "Secret path")),
    responses(
        (status = 204, description = "Every version soft-deleted"),
        (status = 410, description = "Already deleted", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn delete_secret(
    AxState(state): AxState<AppState>,
    Extension(audit): Extension<AuditScope>,
    principal: Principal,
    ApiPath((id, path)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let (vault, access) = secret_vault(&state, &principal, &id).await?;
    let path = checked_path(&path)?;
    access.require(path, Permission::Write)?;
    let deleted = state
        .storage
        .delete_secret(&vault.id, path, &audit.success()?)
        .await
        .map_err(storage_error)?;
    if deleted {
        audit.mark_audited();
    } else {
        let exists = state
            .storage
            .latest_version_number(&vault.id, path)
            .await
            .map_err(storage_error)?
            .is_some();
        return Err(if exists {
            ApiError::Gone("this secret was already deleted".into())
        } else {
            ApiError::NotFound(format!("there is no secret at {path:?}"))
        });
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn summary_json(record: &VersionRecord) -> SecretSummary {
    SecretSummary {
        id: record.secret_id.clone(),
        path: record.path.clone(),
        secret_type: record.secret_type.clone(),
        version: record.version,
        metadata: metadata_value(record),
        created_at: rfc3339(record.created_at),
        expires_at: record.expires_at.map(rfc3339),
        cmek_encrypted: record.cmek_fingerprint.is_some(),
    }
}

#[utoipa::path(
    get, path = "/v1/vaults/{id}/secrets", tag = "secrets", security(("bearer" = [])),
    params(("id" = String, Path, description = "Vault id"), ListQuery),
    responses((status = 200, description = "Secret metadata, no values", body = SecretList))
)]
pub(crate) async fn list_secrets(
    AxState(state): AxState<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Response, ApiError> {
    let (vault, access) = secret_vault(&state, &principal, &id).await?;
    let prefix = query.prefix.unwrap_or_default();
    if prefix.len() > validate::MAX_PATH_LEN {
        return Err(ApiError::Validation(format!(
            "`prefix` is longer than the longest path ({} bytes)",
            validate::MAX_PATH_LEN
        )));
    }
    let secrets = state
        .storage
        .list_secrets(&vault.id, &prefix)
        .await
        .map_err(storage_error)?;
    // Only the paths the caller may read are listed.
    let secrets = secrets
        .iter()
        .filter(|s| access.allows(&s.path, Permission::Read))
        .map(summary_json)
        .collect();
    Ok(Json(SecretList { secrets }).into_response())
}

#[utoipa::path(
    get, path = "/v1/vaults/{id}/secret-versions/{path}", tag = "secrets", security(("bearer" = [])),
    params(("id" = String, Path, description = "Vault id"), ("path" = String, Path, description = "Secret path")),
    responses((status = 200, description = "Every version, oldest first", body = VersionList))
)]
pub(crate) async fn list_versions(
    AxState(state): AxState<AppState>,
    principal: Principal,
    ApiPath((id, path)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let (vault, access) = secret_vault(&state, &principal, &id).await?;
    let path = checked_path(&path)?;
    access.require(path, Permission::Read)?;
    let versions = state
        .storage
        .list_versions(&vault.id, path)
        .await
        .map_err(storage_error)?;
    if versions.is_empty() {
        return Err(ApiError::NotFound(format!(
            "there is no secret at {path:?}"
        )));
    }
    let versions = versions
        .iter()
        .map(|v| VersionInfo {
            version: v.version,
            secret_type: v.secret_type.clone(),
            created_by: v.created_by.clone(),
            created_at: rfc3339(v.created_at),
            expires_at: v.expires_at.map(rfc3339),
            access_count: v.access_count,
            max_access_count: v.max_access_count,
            disabled: v.disabled,
            deleted: v.deleted,
        })
        .collect();
    Ok(Json(VersionList { versions }).into_response())
}

#[utoipa::path(
    post, path = "/v1/vaults/{id}/secret-version-disable/{path}/{version}", tag = "secrets", security(("bearer" = [])),
    params(("id" = String, Path, description = "Vault id"), ("path" = String, Path, description = "Secret path"),
        ("version" = u64, Path, minimum = 1, maximum = 9_223_372_036_854_775_807_u64, description = "Version number")),
    responses(
        (status = 204, description = "Disabled; reads of it answer 410"),
        (status = 410, description = "The secret was deleted", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn disable_version(
    AxState(state): AxState<AppState>,
    Extension(audit): Extension<AuditScope>,
    principal: Principal,
    ApiPath((id, rest)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let (vault, access) = secret_vault(&state, &principal, &id).await?;
    let (path, version) = path_and_version(&rest)?;
    access.require(path, Permission::Write)?;
    let (record, _) = state
        .storage
        .get_version(&vault.id, path, Some(version))
        .await
        .map_err(storage_error)?
        .ok_or_else(|| ApiError::NotFound(format!("secret {path:?} has no version {version}")))?;
    audit.detail("version", json!(version));
    if !state
        .storage
        .disable_version(&record.version_id, &audit.success()?)
        .await
        .map_err(storage_error)?
    {
        return Err(ApiError::Gone("this secret was deleted".into()));
    }
    audit.mark_audited();
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(
    post, path = "/v1/vaults/{id}/secret-rotate/{path}", tag = "secrets", security(("bearer" = [])), request_body = RotateRequest,
    params(("id" = String, Path, description = "Vault id"), ("path" = String, Path, description = "Secret path")),
    responses(
        (status = 201, description = "A new version with a server-generated value", body = SecretWritten),
        (status = 409, description = "Concurrent writes kept taking the next version", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "The secret was deleted", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn rotate_secret(
    AxState(state): AxState<AppState>,
    Extension(audit): Extension<AuditScope>,
    principal: Principal,
    ApiPath((id, path)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<RotateRequest>,
) -> Result<Response, ApiError> {
    let (vault, access) = secret_vault(&state, &principal, &id).await?;
    let path = checked_path(&path)?;
    access.require(path, Permission::Write)?;
    let length = body.length.unwrap_or(32);
    if !(8..=4096).contains(&length) {
        return Err(ApiError::Validation(
            "`length` must be between 8 and 4096".into(),
        ));
    }
    let charset =
        crate::generate::Charset::from_name(body.charset.as_deref().unwrap_or("alphanumeric"))?;
    let (latest, _) = state
        .storage
        .get_version(&vault.id, path, None)
        .await
        .map_err(storage_error)?
        .ok_or_else(|| ApiError::NotFound(format!("there is no secret at {path:?}")))?;
    if latest.deleted {
        return Err(ApiError::Gone("this secret was deleted".into()));
    }
    let value =
        crate::generate::random_value(charset, length).map_err(|e| internal("random value", &e))?;
    let options = WriteOptions {
        secret_type: latest.secret_type.clone(),
        metadata: latest.metadata.clone(),
        metadata_json: metadata_value(&latest),
        expires_at: None,
        max_access_count: None,
    };
    write_version(
        &state,
        &audit,
        &principal,
        &vault,
        path,
        value.as_bytes(),
        options,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    // Every route maps storage errors through `storage_error` (agents, policies, CMEK and
    // audit routes included): a write the store could not commit is a 503 "retry", anything
    // else an opaque 500.
    #[test]
    fn an_uncommitted_write_is_unavailable_and_other_failures_are_internal() {
        assert!(matches!(
            storage_error(StorageError::Unavailable("the batch failed".into())),
            ApiError::Unavailable(_)
        ));
        assert!(matches!(
            storage_error(StorageError::Conflict),
            ApiError::Internal
        ));
    }
}
