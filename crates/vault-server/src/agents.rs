//! Agents: non-human principals (CI jobs, services) with their own `ocv_` keys.
//!
//! A user creates an agent and gets its key once; the key (or an access token issued for it by
//! `POST /v1/auth/agent-token`) authenticates the agent. An agent is deny-by-default: it reaches
//! only the secrets that policies grant it, within its `vault_ids` if set, and it can create
//! nothing (vaults, keys, agents, policies). Deleting or expiring an agent stops its key and
//! its tokens at once: every request looks the agent up.

use axum::Json;
use axum::extract::State as AxState;
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq as _;
use utoipa::ToSchema;

use crate::app::AppState;
use crate::audit::scope::AuditScope;
use crate::auth::{AGENT_KEY_PREFIX, ApiKeySecret, hash_api_key};
use crate::dto::SecretText;
use crate::extract::{ApiJson, ApiPath};
use crate::problem::{ApiError, Problem, internal};
use crate::routes::{Principal, owned_vault, quota_or_storage_error, storage_error};
use crate::storage::{AgentRecord, Storage, StorageError};
use crate::time::{now_millis, parse_rfc3339, rfc3339};
use crate::{ids, validate};

/// Whether an agent may authenticate at `now`.
pub(crate) fn is_live(agent: &AgentRecord, now: i64) -> bool {
    agent.deleted_at.is_none() && agent.expires_at.is_none_or(|at| at > now)
}

/// Looks an agent key up by hash, confirms the hash in constant time, and refuses deleted or
/// expired agents.
pub(crate) async fn verify_agent_key(
    storage: &dyn Storage,
    key: &str,
) -> Result<Option<AgentRecord>, StorageError> {
    let hash = hash_api_key(key);
    let found = storage.find_agent_by_hash(&hash).await?;
    Ok(found.filter(|agent| {
        bool::from(agent.key_hash.as_slice().ct_eq(hash.as_slice())) && is_live(agent, now_millis())
    }))
}

/// `POST /v1/agents` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateAgentRequest {
    /// 1 to 128 characters.
    name: String,
    /// At most 1024 characters.
    description: Option<String>,
    /// The only vaults the agent may reach (policies still decide); omit for any.
    vault_ids: Option<Vec<String>>,
    /// RFC 3339: the agent's key and tokens stop working then.
    expires_at: Option<String>,
    /// Lifetime of its access tokens (60 to 86400; default: the server's `token_ttl_secs`).
    #[schema(minimum = 60, maximum = 86400)]
    token_ttl_seconds: Option<u64>,
}

/// An agent (never its key).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Agent {
    id: String,
    name: String,
    description: String,
    /// The key's first characters, to recognise it.
    key_prefix: String,
    vault_ids: Option<Vec<String>>,
    expires_at: Option<String>,
    token_ttl_seconds: Option<u64>,
    created_by: String,
    created_at: String,
}

/// `POST /v1/agents` answer.
#[derive(Serialize, ToSchema)]
pub(crate) struct CreatedAgent {
    agent: Agent,
    /// The agent's key (`ocv_…`), shown only here.
    api_key: String,
}

impl std::fmt::Debug for CreatedAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedAgent")
            .field("agent", &self.agent)
            .finish_non_exhaustive()
    }
}

/// `GET /v1/agents` answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AgentList {
    agents: Vec<Agent>,
}

/// `POST /v1/auth/agent-token` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AgentTokenRequest {
    /// The agent's key (`ocv_…`).
    api_key: SecretText,
    /// If given, must be the key's agent.
    agent_id: Option<String>,
}

/// `POST /v1/auth/agent-token` answer.
#[derive(Serialize, ToSchema)]
pub(crate) struct AgentToken {
    /// An EdDSA-signed JWT identifying the agent (never its grants).
    access_token: String,
    /// `Bearer`.
    token_type: String,
    /// Seconds.
    expires_in: u64,
    agent_id: String,
}

impl std::fmt::Debug for AgentToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentToken")
            .field("agent_id", &self.agent_id)
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

fn agent_json(agent: &AgentRecord) -> Agent {
    Agent {
        id: agent.id.clone(),
        name: agent.name.clone(),
        description: agent.description.clone(),
        key_prefix: agent.key_prefix.clone(),
        vault_ids: agent.vault_ids.clone(),
        expires_at: agent.expires_at.map(rfc3339),
        token_ttl_seconds: agent.token_ttl_seconds,
        created_by: agent.created_by.clone(),
        created_at: rfc3339(agent.created_at),
    }
}

#[utoipa::path(
    post, path = "/v1/agents", tag = "agents", security(("bearer" = [])), request_body = CreateAgentRequest,
    responses(
        (status = 201, description = "The agent and its key, shown only here", body = CreatedAgent),
        (status = 403, description = "Agents and scoped keys cannot create agents", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn create_agent(
    AxState(state): AxState<AppState>,
    axum::Extension(audit): axum::Extension<AuditScope>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateAgentRequest>,
) -> Result<Response, ApiError> {
    principal.unscoped("create agents")?;
    validate::name("name", &body.name, 128)?;
    let description = body.description.unwrap_or_default();
    if description.chars().count() > 1024 {
        return Err(ApiError::Validation(
            "`description` must be at most 1024 characters".into(),
        ));
    }
    if let Some(vaults) = &body.vault_ids {
        if vaults.is_empty() || vaults.len() > 100 {
            return Err(ApiError::Validation(
                "`vault_ids` must list 1 to 100 vault ids (omit it for any vault)".into(),
            ));
        }
        for id in vaults {
            owned_vault(&state, &principal, id).await?;
        }
    }
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
    if body
        .token_ttl_seconds
        .is_some_and(|ttl| !(60..=86_400).contains(&ttl))
    {
        return Err(ApiError::Validation(
            "`token_ttl_seconds` must be between 60 and 86400".into(),
        ));
    }
    let secret = ApiKeySecret::generate_prefixed(AGENT_KEY_PREFIX)
        .map_err(|e| internal("random key", &e))?;
    let record = AgentRecord {
        id: ids::new_id().map_err(|e| internal("random id", &e))?,
        name: body.name,
        description,
        created_by: principal.user_id().to_owned(),
        vault_ids: body.vault_ids,
        expires_at,
        token_ttl_seconds: body.token_ttl_seconds,
        key_hash: hash_api_key(secret.expose_secret()),
        key_prefix: secret.prefix(),
        created_at: now_millis(),
        deleted_at: None,
    };
    audit.set_resource(&record.id, None);
    // The tier's agent quota is counted inside the insert's transaction; at the limit the
    // answer is 403 `resource-limit-exceeded`, like vaults and secrets.
    state
        .storage
        .insert_agent_within(
            &record,
            state.config.limits().limits().max_agents(),
            &audit.success()?,
        )
        .await
        .map_err(|err| quota_or_storage_error(&state, &audit, err))?;
    audit.mark_audited();
    let out = CreatedAgent {
        agent: agent_json(&record),
        api_key: secret.expose_secret().to_owned(),
    };
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

#[utoipa::path(
    get, path = "/v1/agents", tag = "agents", security(("bearer" = [])),
    responses((status = 200, description = "The caller's agents (no keys)", body = AgentList))
)]
pub(crate) async fn list_agents(
    AxState(state): AxState<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    principal.unscoped("list agents")?;
    let agents = state
        .storage
        .list_agents(principal.user_id())
        .await
        .map_err(storage_error)?;
    let agents = agents.iter().map(agent_json).collect();
    Ok(Json(AgentList { agents }).into_response())
}

async fn own_agent(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<AgentRecord, ApiError> {
    state
        .storage
        .get_agent(id)
        .await
        .map_err(storage_error)?
        .filter(|a| a.created_by == principal.user_id())
        .ok_or_else(|| ApiError::NotFound(format!("there is no agent with id {id:?}")))
}

#[utoipa::path(
    get, path = "/v1/agents/{id}", tag = "agents", security(("bearer" = [])),
    params(("id" = String, Path, description = "Agent id")),
    responses((status = 200, description = "The agent (no key)", body = Agent))
)]
pub(crate) async fn get_agent(
    AxState(state): AxState<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    principal.unscoped("read agents")?;
    let agent = own_agent(&state, &principal, &id).await?;
    Ok(Json(agent_json(&agent)).into_response())
}

#[utoipa::path(
    delete, path = "/v1/agents/{id}", tag = "agents", security(("bearer" = [])),
    params(("id" = String, Path, description = "Agent id")),
    responses((status = 204, description = "Deleted; its key and tokens stop working at once"))
)]
pub(crate) async fn delete_agent(
    AxState(state): AxState<AppState>,
    axum::Extension(audit): axum::Extension<AuditScope>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    principal.unscoped("delete agents")?;
    if !state
        .storage
        .delete_agent(principal.user_id(), &id, now_millis(), &audit.success()?)
        .await
        .map_err(storage_error)?
    {
        return Err(ApiError::NotFound(format!(
            "there is no agent with id {id:?}"
        )));
    }
    audit.mark_audited();
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(
    post, path = "/v1/auth/agent-token", tag = "auth", request_body = AgentTokenRequest,
    responses((status = 200, description = "An access token for the agent", body = AgentToken))
)]
pub(crate) async fn agent_token(
    AxState(state): AxState<AppState>,
    axum::Extension(audit): axum::Extension<AuditScope>,
    ApiJson(body): ApiJson<AgentTokenRequest>,
) -> Result<Response, ApiError> {
    let key = body.api_key.0.as_str();
    let agent = if key.starts_with(AGENT_KEY_PREFIX) {
        verify_agent_key(&*state.storage, key)
            .await
            .map_err(storage_error)?
    } else {
        None
    };
    let agent = agent
        .filter(|a| body.agent_id.as_deref().is_none_or(|id| id == a.id))
        .ok_or_else(|| {
            ApiError::Unauthorized(
                "`api_key` is not a valid agent key (ocv_…) for that agent, or the agent was \
                 deleted or has expired"
                    .into(),
            )
        })?;
    audit.set_actor("agent", &agent.id, &agent.id);
    audit.set_resource(&agent.id, None);
    let mut ttl = agent
        .token_ttl_seconds
        .map_or(state.config.token_ttl(), std::time::Duration::from_secs);
    // A token never outlives its agent.
    if let Some(at) = agent.expires_at {
        let left = u64::try_from(at.saturating_sub(now_millis()) / 1000).unwrap_or(0);
        ttl = ttl.min(std::time::Duration::from_secs(left));
    }
    let token = state
        .jwt
        .issue_agent(&agent.id, ttl)
        .map_err(|e| internal("signing an access token", &e))?;
    Ok(Json(AgentToken {
        access_token: token,
        token_type: "Bearer".into(),
        expires_in: ttl.as_secs(),
        agent_id: agent.id,
    })
    .into_response())
}
