//! The per-request audit scope and the middleware that guarantees every audited route leaves
//! exactly one event.
//!
//! The middleware names the action and resource from the matched route, puts an
//! [`AuditScope`] in the request, and runs the handler. The authentication extractor fills in
//! the actor. A handler that writes passes `scope.success()` to the storage, which appends it
//! in the write's own transaction, and marks the scope audited. Whatever was not audited that
//! way (reads, refusals, failures) is appended by the middleware in its own transaction once
//! the handler has answered; if that append fails, the answer is replaced by a 500
//! (fail-closed: a read whose record cannot be written does not return its data).

use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::{FromRequestParts as _, MatchedPath, RawPathParams, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use serde_json::{Map, Value};

use super::NewAuditEvent;
use crate::app::AppState;
use crate::problem::{ApiError, internal};
use crate::time::now_millis;

/// Request-supplied text kept in an event (a rejected path can be long) is cut to this many
/// bytes.
const MAX_FIELD: usize = 2048;

/// What the audit record of one request will say.
#[derive(Debug, Clone)]
pub(crate) struct AuditScope(Arc<Mutex<ScopeState>>);

#[derive(Debug)]
struct ScopeState {
    request_id: String,
    action: &'static str,
    resource_type: &'static str,
    resource_id: String,
    vault_id: Option<String>,
    actor_type: &'static str,
    actor_id: String,
    detail: Map<String, Value>,
    audited: bool,
}

impl AuditScope {
    fn lock(&self) -> MutexGuard<'_, ScopeState> {
        // A panic while holding this lock cannot leave the state half-written in a way that
        // matters (each setter writes whole fields), so a poisoned lock is still used.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records who is acting (after authentication succeeded).
    pub(crate) fn set_actor(&self, actor_type: &'static str, actor_id: &str, key_id: &str) {
        let mut state = self.lock();
        state.actor_type = actor_type;
        state.actor_id = actor_id.to_owned();
        state
            .detail
            .insert("key_id".into(), Value::String(key_id.to_owned()));
    }

    /// Names the resource precisely (a created vault's id, the key a token was issued for).
    pub(crate) fn set_resource(&self, resource_id: &str, vault_id: Option<&str>) {
        let mut state = self.lock();
        state.resource_id = clip(resource_id);
        state.vault_id = vault_id.map(clip);
    }

    /// Adds a public fact to the event's detail.
    pub(crate) fn detail(&self, key: &str, value: Value) {
        self.lock().detail.insert(key.to_owned(), value);
    }

    /// The event of a successful action, to hand to a storage write.
    pub(crate) fn success(&self) -> Result<NewAuditEvent, ApiError> {
        self.event("success", None)
    }

    /// The request id the events of this request carry (also given to work the request starts,
    /// such as a CMEK rotation job, so its events can be traced back).
    pub(crate) fn request_id(&self) -> String {
        self.lock().request_id.clone()
    }

    /// Marks the request as recorded (its write committed the event).
    pub(crate) fn mark_audited(&self) {
        self.lock().audited = true;
    }

    fn event(&self, outcome: &str, status: Option<u16>) -> Result<NewAuditEvent, ApiError> {
        let id = crate::ids::new_event_id().map_err(|e| internal("random id", &e))?;
        let state = self.lock();
        let mut detail = state.detail.clone();
        if let Some(status) = status {
            detail.insert("status".into(), Value::from(status));
        }
        Ok(NewAuditEvent {
            id,
            occurred_at: now_millis(),
            request_id: state.request_id.clone(),
            actor_type: state.actor_type.to_owned(),
            actor_id: state.actor_id.clone(),
            action: state.action.to_owned(),
            resource_type: state.resource_type.to_owned(),
            resource_id: state.resource_id.clone(),
            vault_id: state.vault_id.clone(),
            outcome: outcome.to_owned(),
            detail: Value::Object(detail).to_string(),
        })
    }
}

fn clip(text: &str) -> String {
    if text.len() <= MAX_FIELD {
        return text.to_owned();
    }
    let mut end = MAX_FIELD;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// The action and resource type of an audited route; `None` for the public routes (health,
/// JWKS, OpenAPI, the audit public key), which act on nothing and identify no one.
fn action_for(method: &Method, route: &str) -> Option<(&'static str, &'static str)> {
    let m = method.as_str();
    Some(match (m, route) {
        ("POST", "/v1/auth/api-key-token") => ("auth.token", "api_key"),
        ("POST", "/v1/auth/api-keys") => ("key.create", "api_key"),
        ("GET", "/v1/auth/api-keys") => ("key.list", "api_key"),
        ("DELETE", "/v1/auth/api-keys/{id}") => ("key.revoke", "api_key"),
        ("POST", "/v1/vaults") => ("vault.create", "vault"),
        ("GET", "/v1/vaults") => ("vault.list", "vault"),
        ("GET", "/v1/vaults/{id}") => ("vault.read", "vault"),
        ("DELETE", "/v1/vaults/{id}") => ("vault.delete", "vault"),
        ("POST", "/v1/vaults/{id}/mpc") => ("vault.mpc_enable", "vault"),
        ("GET", "/v1/vaults/{id}/secrets") => ("secret.list", "vault"),
        ("GET", "/v1/vaults/{id}/secrets/{*path}") => ("secret.read", "secret"),
        ("PUT", "/v1/vaults/{id}/secrets/{*path}") => ("secret.write", "secret"),
        ("DELETE", "/v1/vaults/{id}/secrets/{*path}") => ("secret.delete", "secret"),
        ("GET", "/v1/vaults/{id}/secret-versions/{*path}") => ("secret.versions", "secret"),
        ("GET", "/v1/vaults/{id}/secret-version/{*rest}") => ("secret.read", "secret"),
        ("POST", "/v1/vaults/{id}/secret-version-disable/{*rest}") => ("secret.disable", "secret"),
        ("POST", "/v1/vaults/{id}/secret-rotate/{*path}") => ("secret.rotate", "secret"),
        ("POST", "/v1/auth/agent-token") => ("auth.agent_token", "agent"),
        ("POST", "/v1/agents") => ("agent.create", "agent"),
        ("GET", "/v1/agents") => ("agent.list", "agent"),
        ("GET", "/v1/agents/{id}") => ("agent.read", "agent"),
        ("DELETE", "/v1/agents/{id}") => ("agent.delete", "agent"),
        ("POST", "/v1/vaults/{id}/policies") => ("policy.create", "policy"),
        ("GET", "/v1/vaults/{id}/policies") => ("policy.list", "policy"),
        ("GET", "/v1/vaults/{id}/policies/{policy_id}") => ("policy.read", "policy"),
        ("PUT", "/v1/vaults/{id}/policies/{policy_id}") => ("policy.update", "policy"),
        ("DELETE", "/v1/vaults/{id}/policies/{policy_id}") => ("policy.delete", "policy"),
        ("GET", "/v1/audit/events") => ("audit.events", "audit"),
        ("GET", "/v1/audit/verify") => ("audit.verify", "audit"),
        ("GET", "/v1/audit/export") => ("audit.export", "audit"),
        ("POST", "/v1/audit/checkpoints") => ("audit.checkpoint", "audit"),
        ("POST", "/v1/vaults/{id}/cmek") => ("cmek.enable", "vault"),
        ("DELETE", "/v1/vaults/{id}/cmek") => ("cmek.disable", "vault"),
        ("POST", "/v1/vaults/{id}/cmek-rotate") => ("cmek.rotate", "vault"),
        ("GET", "/v1/vaults/{id}/cmek-rotate/{job_id}") => ("cmek.rotate_status", "vault"),
        ("POST", "/v1/treasury/wallets/generate") => ("treasury.generate", "wallet"),
        ("GET", "/v1/treasury/wallets") => ("treasury.list", "wallet"),
        ("GET", "/v1/treasury/wallets/{chain}") => ("treasury.get", "wallet"),
        ("POST", "/v1/treasury/wallets/{chain}/sign") => ("treasury.sign", "wallet"),
        ("POST", "/v1/treasury/wallets/{chain}/export") => ("treasury.export", "wallet"),
        ("POST", "/v1/treasury/wallets/{chain}/rotate") => ("treasury.rotate", "wallet"),
        ("DELETE", "/v1/treasury/wallets/{chain}") => ("treasury.delete", "wallet"),
        _ => return None,
    })
}

/// How an answer's status reads in the trail.
fn outcome(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 | 403 => "denied",
        404 => "not_found",
        400..=499 => "rejected",
        500..=599 => "error",
        _ => "success",
    }
}

/// The middleware (a route layer: it runs after routing, so the matched route and its
/// parameters are known).
pub(crate) async fn record(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let Some((action, resource_type)) = route
        .as_deref()
        .and_then(|route| action_for(request.method(), route))
    else {
        return next.run(request).await;
    };
    let (mut parts, body) = request.into_parts();
    let request_id = parts
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| "-".to_owned(), clip);
    let params = RawPathParams::from_request_parts(&mut parts, &())
        .await
        .ok();
    let param = |name: &str| {
        params
            .as_ref()
            .and_then(|p| p.iter().find(|(k, _)| *k == name).map(|(_, v)| clip(v)))
    };
    let id = param("id");
    let rest = param("path").or_else(|| param("rest"));
    let policy = param("policy_id");
    let (resource_id, vault_id) = match (resource_type, id, rest) {
        ("secret", Some(vault), Some(path)) => (clip(&format!("{vault}/{path}")), Some(vault)),
        ("policy", Some(vault), _) => (policy.unwrap_or_else(|| vault.clone()), Some(vault)),
        ("vault", Some(vault), _) => (vault.clone(), Some(vault)),
        (_, Some(id), _) => (id, None),
        _ => (String::new(), None),
    };
    let scope = AuditScope(Arc::new(Mutex::new(ScopeState {
        request_id,
        action,
        resource_type,
        resource_id,
        vault_id,
        actor_type: "anonymous",
        actor_id: String::new(),
        detail: Map::new(),
        audited: false,
    })));
    parts.extensions.insert(scope.clone());
    let response = next.run(Request::from_parts(parts, body)).await;
    if scope.lock().audited {
        return response;
    }
    let status = response.status();
    let appended = match scope.event(outcome(status), Some(status.as_u16())) {
        Ok(event) => state
            .storage
            .append_audit(&event)
            .await
            .map_err(|e| internal("appending an audit event", &e)),
        Err(e) => Err(e),
    };
    match appended {
        Ok(_) => response,
        // Fail-closed: the caller does not get an answer whose record is missing.
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_outcomes() {
        assert_eq!(outcome(StatusCode::OK), "success");
        assert_eq!(outcome(StatusCode::CREATED), "success");
        assert_eq!(outcome(StatusCode::UNAUTHORIZED), "denied");
        assert_eq!(outcome(StatusCode::FORBIDDEN), "denied");
        assert_eq!(outcome(StatusCode::NOT_FOUND), "not_found");
        assert_eq!(outcome(StatusCode::GONE), "rejected");
        assert_eq!(outcome(StatusCode::SERVICE_UNAVAILABLE), "error");
    }

    #[test]
    fn long_request_text_is_clipped_on_a_char_boundary() {
        let text = "é".repeat(MAX_FIELD);
        let clipped = clip(&text);
        assert!(clipped.len() <= MAX_FIELD);
        assert!(clipped.chars().all(|c| c == 'é'));
    }

    #[test]
    fn public_routes_are_not_audited() {
        assert!(action_for(&Method::GET, "/v1/health").is_none());
        assert!(action_for(&Method::GET, "/.well-known/jwks.json").is_none());
        assert_eq!(
            action_for(&Method::PUT, "/v1/vaults/{id}/secrets/{*path}"),
            Some(("secret.write", "secret"))
        );
        assert_eq!(
            action_for(&Method::POST, "/v1/treasury/wallets/{chain}/sign"),
            Some(("treasury.sign", "wallet"))
        );
    }
}
