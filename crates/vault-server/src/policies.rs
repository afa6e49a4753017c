//! The policy endpoints: a vault's creator manages who else (users, agents) may read or write
//! which of its secrets. The rules are in `policy.rs`.

use axum::Json;
use axum::extract::State as AxState;
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::app::AppState;
use crate::audit::scope::AuditScope;
use crate::extract::{ApiJson, ApiPath};
use crate::ids;
use crate::policy::validate_pattern;
use crate::problem::{ApiError, Problem, internal};
use crate::routes::{Principal, owned_vault, storage_error};
use crate::storage::PolicyRecord;
use crate::time::{now_millis, parse_rfc3339, rfc3339};

/// The widest priority range (keeps arithmetic and storage trivially safe).
const MAX_PRIORITY: i64 = 1_000_000;

/// `POST`/`PUT` body of a policy.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyRequest {
    /// Glob over secret paths: `*` within one segment, `**` any number of segments.
    secret_path_pattern: String,
    /// `user` or `agent`.
    principal_type: String,
    /// The user or agent id.
    principal_id: String,
    /// `read` and/or `write`.
    permissions: Vec<String>,
    /// `allow` (default) or `deny`.
    effect: Option<String>,
    /// Higher wins; deny beats allow at equal priority (default 0, -1000000 to 1000000).
    #[schema(minimum = -1_000_000, maximum = 1_000_000)]
    priority: Option<i64>,
    /// RFC 3339: the policy stops applying then.
    expires_at: Option<String>,
}

/// A policy.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Policy {
    id: String,
    vault_id: String,
    secret_path_pattern: String,
    principal_type: String,
    principal_id: String,
    permissions: Vec<String>,
    effect: String,
    priority: i64,
    expires_at: Option<String>,
    created_by: String,
    created_at: String,
    updated_at: String,
}

/// `GET /v1/vaults/{id}/policies` answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PolicyList {
    policies: Vec<Policy>,
}

fn policy_json(p: &PolicyRecord) -> Policy {
    Policy {
        id: p.id.clone(),
        vault_id: p.vault_id.clone(),
        secret_path_pattern: p.secret_path_pattern.clone(),
        principal_type: p.principal_type.clone(),
        principal_id: p.principal_id.clone(),
        permissions: p.permissions.clone(),
        effect: p.effect.clone(),
        priority: p.priority,
        expires_at: p.expires_at.map(rfc3339),
        created_by: p.created_by.clone(),
        created_at: rfc3339(p.created_at),
        updated_at: rfc3339(p.updated_at),
    }
}

/// The validated rule of a request: (pattern, type, id, permissions, effect, priority, expiry).
struct Rule {
    pattern: String,
    principal_type: String,
    principal_id: String,
    permissions: Vec<String>,
    effect: String,
    priority: i64,
    expires_at: Option<i64>,
}

fn rule(body: PolicyRequest) -> Result<Rule, ApiError> {
    validate_pattern(&body.secret_path_pattern)?;
    if !matches!(body.principal_type.as_str(), "user" | "agent") {
        return Err(ApiError::Validation(
            "`principal_type` must be `user` or `agent`".into(),
        ));
    }
    if body.principal_id.is_empty() || body.principal_id.chars().count() > 128 {
        return Err(ApiError::Validation(
            "`principal_id` must be 1 to 128 characters".into(),
        ));
    }
    let mut permissions = Vec::new();
    for permission in ["read", "write"] {
        if body.permissions.iter().any(|p| p == permission) {
            permissions.push(permission.to_owned());
        }
    }
    if permissions.is_empty() || body.permissions.iter().any(|p| p != "read" && p != "write") {
        return Err(ApiError::Validation(
            "`permissions` must list `read` and/or `write`".into(),
        ));
    }
    let effect = body.effect.unwrap_or_else(|| "allow".to_owned());
    if effect != "allow" && effect != "deny" {
        return Err(ApiError::Validation(
            "`effect` must be `allow` or `deny`".into(),
        ));
    }
    let priority = body.priority.unwrap_or(0);
    if !(-MAX_PRIORITY..=MAX_PRIORITY).contains(&priority) {
        return Err(ApiError::Validation(format!(
            "`priority` must be between -{MAX_PRIORITY} and {MAX_PRIORITY}"
        )));
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
    Ok(Rule {
        pattern: body.secret_path_pattern,
        principal_type: body.principal_type,
        principal_id: body.principal_id,
        permissions,
        effect,
        priority,
        expires_at,
    })
}

fn describe(audit: &AuditScope, rule: &Rule) {
    // The rule is public configuration: recorded so the trail shows who granted what.
    audit.detail(
        "policy",
        json!({
            "secret_path_pattern": rule.pattern,
            "principal_type": rule.principal_type,
            "principal_id": rule.principal_id,
            "permissions": rule.permissions,
            "effect": rule.effect,
            "priority": rule.priority,
        }),
    );
}

#[utoipa::path(
    post, path = "/v1/vaults/{id}/policies", tag = "policies", security(("bearer" = [])), request_body = PolicyRequest,
    params(("id" = String, Path, description = "Vault id")),
    responses(
        (status = 201, description = "The new policy; it applies from the next request", body = Policy),
        (status = 403, description = "Agents and scoped keys cannot manage policies", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn create_policy(
    AxState(state): AxState<AppState>,
    axum::Extension(audit): axum::Extension<AuditScope>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<PolicyRequest>,
) -> Result<Response, ApiError> {
    principal.unscoped("manage policies")?;
    let vault = owned_vault(&state, &principal, &id).await?;
    let rule = rule(body)?;
    let now = now_millis();
    let record = PolicyRecord {
        id: ids::new_id().map_err(|e| internal("random id", &e))?,
        vault_id: vault.id.clone(),
        secret_path_pattern: rule.pattern.clone(),
        principal_type: rule.principal_type.clone(),
        principal_id: rule.principal_id.clone(),
        permissions: rule.permissions.clone(),
        effect: rule.effect.clone(),
        priority: rule.priority,
        expires_at: rule.expires_at,
        created_by: principal.user_id().to_owned(),
        created_at: now,
        updated_at: now,
    };
    audit.set_resource(&record.id, Some(&vault.id));
    describe(&audit, &rule);
    state
        .storage
        .insert_policy(&record, &audit.success()?)
        .await
        .map_err(storage_error)?;
    audit.mark_audited();
    Ok((StatusCode::CREATED, Json(policy_json(&record))).into_response())
}

#[utoipa::path(
    get, path = "/v1/vaults/{id}/policies", tag = "policies", security(("bearer" = [])),
    params(("id" = String, Path, description = "Vault id")),
    responses((status = 200, description = "The vault's policies", body = PolicyList))
)]
pub(crate) async fn list_policies(
    AxState(state): AxState<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    principal.unscoped("manage policies")?;
    let vault = owned_vault(&state, &principal, &id).await?;
    let policies = state
        .storage
        .list_policies(&vault.id)
        .await
        .map_err(storage_error)?;
    let policies = policies.iter().map(policy_json).collect();
    Ok(Json(PolicyList { policies }).into_response())
}

fn no_policy(id: &str) -> ApiError {
    ApiError::NotFound(format!("this vault has no policy with id {id:?}"))
}

#[utoipa::path(
    get, path = "/v1/vaults/{id}/policies/{policy_id}", tag = "policies", security(("bearer" = [])),
    params(("id" = String, Path, description = "Vault id"), ("policy_id" = String, Path, description = "Policy id")),
    responses((status = 200, description = "The policy", body = Policy))
)]
pub(crate) async fn get_policy(
    AxState(state): AxState<AppState>,
    principal: Principal,
    ApiPath((id, policy_id)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    principal.unscoped("manage policies")?;
    let vault = owned_vault(&state, &principal, &id).await?;
    let policy = state
        .storage
        .get_policy(&vault.id, &policy_id)
        .await
        .map_err(storage_error)?
        .ok_or_else(|| no_policy(&policy_id))?;
    Ok(Json(policy_json(&policy)).into_response())
}

#[utoipa::path(
    put, path = "/v1/vaults/{id}/policies/{policy_id}", tag = "policies", security(("bearer" = [])), request_body = PolicyRequest,
    params(("id" = String, Path, description = "Vault id"), ("policy_id" = String, Path, description = "Policy id")),
    responses(
        (status = 200, description = "The policy as replaced; it applies from the next request", body = Policy),
        (status = 403, description = "Agents and scoped keys cannot manage policies", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn update_policy(
    AxState(state): AxState<AppState>,
    axum::Extension(audit): axum::Extension<AuditScope>,
    principal: Principal,
    ApiPath((id, policy_id)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<PolicyRequest>,
) -> Result<Response, ApiError> {
    principal.unscoped("manage policies")?;
    let vault = owned_vault(&state, &principal, &id).await?;
    let current = state
        .storage
        .get_policy(&vault.id, &policy_id)
        .await
        .map_err(storage_error)?
        .ok_or_else(|| no_policy(&policy_id))?;
    let rule = rule(body)?;
    let record = PolicyRecord {
        secret_path_pattern: rule.pattern.clone(),
        principal_type: rule.principal_type.clone(),
        principal_id: rule.principal_id.clone(),
        permissions: rule.permissions.clone(),
        effect: rule.effect.clone(),
        priority: rule.priority,
        expires_at: rule.expires_at,
        updated_at: now_millis(),
        ..current
    };
    describe(&audit, &rule);
    if !state
        .storage
        .update_policy(&record, &audit.success()?)
        .await
        .map_err(storage_error)?
    {
        return Err(no_policy(&policy_id));
    }
    audit.mark_audited();
    Ok(Json(policy_json(&record)).into_response())
}

#[utoipa::path(
    delete, path = "/v1/vaults/{id}/policies/{policy_id}", tag = "policies", security(("bearer" = [])),
    params(("id" = String, Path, description = "Vault id"), ("policy_id" = String, Path, description = "Policy id")),
    responses(
        (status = 204, description = "Deleted; it no longer applies from the next request"),
        (status = 403, description = "Agents and scoped keys cannot manage policies", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn delete_policy(
    AxState(state): AxState<AppState>,
    axum::Extension(audit): axum::Extension<AuditScope>,
    principal: Principal,
    ApiPath((id, policy_id)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    principal.unscoped("manage policies")?;
    let vault = owned_vault(&state, &principal, &id).await?;
    if !state
        .storage
        .delete_policy(&vault.id, &policy_id, &audit.success()?)
        .await
        .map_err(storage_error)?
    {
        return Err(no_policy(&policy_id));
    }
    audit.mark_audited();
    Ok(StatusCode::NO_CONTENT.into_response())
}
