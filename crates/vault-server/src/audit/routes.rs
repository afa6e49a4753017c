//! The audit endpoints, the checkpointing task and the state they share.
//!
//! Who may call what:
//! - `GET /v1/audit/events`: any caller with an unscoped user key. The audit administrator (the
//!   bootstrap user, `admin`) sees every event; any other user sees the events they performed
//!   and the events of the vaults they created.
//! - `GET /v1/audit/verify`, `GET /v1/audit/export`, `POST /v1/audit/checkpoints`: the audit
//!   administrator only, since the chain (and its export) spans every user's events.
//! - `GET /v1/audit/public-key`: anyone, like the JWKS: it is what verifiers pin.
//!
//! Scoped keys are refused: they are meant for one vault's secrets, not for oversight.

use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::Json;
use axum::extract::State as AxState;
use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use serde::{Deserialize, Serialize};

use super::{
    AUDIT_SCHEME, AuditEvent, AuditExport, AuditKey, AuditSigner, ChainReport, Checkpoint,
    EXPORT_FORMAT, verify_chain,
};
use crate::app::{AppState, State};
use crate::extract::ApiQuery;
use crate::problem::{ApiError, Problem, internal};
use crate::routes::{Principal, storage_error};
use crate::storage::{AuditQuery, StorageError};
use crate::time::{now_millis, parse_rfc3339};

/// The user id of the audit administrator: the bootstrap user.
pub(crate) const AUDIT_ADMIN: &str = "admin";
/// The most events one verification walks or one export holds.
const MAX_RANGE: u64 = 100_000;

/// The audit keys and checkpoint policy the server runs with.
#[derive(Debug)]
pub(crate) struct AuditState {
    pub(crate) key: Arc<AuditKey>,
    pub(crate) signer: AuditSigner,
    pub(crate) every_events: u64,
    pub(crate) interval: Duration,
}

/// `GET /v1/audit/events` parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsQuery {
    /// Events of this resource, or of this vault and everything in it.
    resource_id: Option<String>,
    /// Events by this user or agent.
    actor_id: Option<String>,
    /// Events of this action (`secret.read`, `vault.create`, …).
    action: Option<String>,
    /// RFC 3339: events at or after.
    from: Option<String>,
    /// RFC 3339: events at or before.
    to: Option<String>,
    /// At most this many (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u64>,
    /// Skip this many (newest first).
    offset: Option<u64>,
}

/// `GET /v1/audit/verify` parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct VerifyQuery {
    /// RFC 3339: verify from the first event at or after (default: the first event).
    from: Option<String>,
    /// RFC 3339: verify up to the last event at or before (default: the head).
    to: Option<String>,
    /// At most this many events (1 to 100000, default 100000).
    #[param(minimum = 1, maximum = 100_000)]
    limit: Option<u64>,
}

/// `GET /v1/audit/export` parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ExportQuery {
    /// RFC 3339: events at or after (default: the first event).
    from: Option<String>,
    /// RFC 3339: events at or before (default: the head, which is signed for the export).
    to: Option<String>,
}

/// A page of events.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AuditEventList {
    /// Newest first.
    events: Vec<AuditEvent>,
    /// How many events match the filters (all pages).
    count: u64,
}

/// The checkpoint public key.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AuditPublicKey {
    /// `Ed25519`.
    algorithm: String,
    /// The public key, hex.
    public_key: String,
    /// The id checkpoints carry.
    key_id: String,
    /// The audit scheme.
    scheme: String,
}

fn time(name: &str, text: Option<&str>) -> Result<Option<i64>, ApiError> {
    text.map(|t| parse_rfc3339(name, t)).transpose()
}

fn admin_only(principal: &Principal) -> Result<(), ApiError> {
    principal.unscoped("read the audit trail")?;
    if principal.user_id() != AUDIT_ADMIN {
        return Err(ApiError::Forbidden(
            "only the audit administrator may verify or export the whole audit chain".into(),
        ));
    }
    Ok(())
}

#[utoipa::path(
    get, path = "/v1/audit/events", tag = "audit", security(("bearer" = [])), params(EventsQuery),
    responses(
        (status = 200, description = "Matching events, newest first", body = AuditEventList),
        (status = 403, description = "Scoped keys cannot read the audit trail", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn events(
    AxState(state): AxState<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> Result<Response, ApiError> {
    principal.unscoped("read the audit trail")?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::Validation(
            "`limit` must be between 1 and 1000".into(),
        ));
    }
    let offset = query.offset.unwrap_or(0);
    if i64::try_from(offset).is_err() {
        return Err(ApiError::Validation("`offset` is too large".into()));
    }
    let visible_to = (principal.user_id() != AUDIT_ADMIN).then(|| principal.user_id().to_owned());
    let filter = AuditQuery {
        resource_id: query.resource_id,
        actor_id: query.actor_id,
        action: query.action,
        from: time("from", query.from.as_deref())?,
        to: time("to", query.to.as_deref())?,
        visible_to,
        limit,
        offset,
    };
    let (events, count) = state
        .storage
        .audit_events(&filter)
        .await
        .map_err(storage_error)?;
    Ok(Json(AuditEventList { events, count }).into_response())
}

#[utoipa::path(
    get, path = "/v1/audit/verify", tag = "audit", security(("bearer" = [])), params(VerifyQuery),
    responses(
        (status = 200, description = "The result of recomputing every HMAC, hash, link and checkpoint in the range", body = ChainReport),
        (status = 403, description = "Only the audit administrator may verify the chain", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn verify(
    AxState(state): AxState<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<VerifyQuery>,
) -> Result<Response, ApiError> {
    admin_only(&principal)?;
    let limit = query.limit.unwrap_or(MAX_RANGE);
    if !(1..=MAX_RANGE).contains(&limit) {
        return Err(ApiError::Validation(format!(
            "`limit` must be between 1 and {MAX_RANGE}"
        )));
    }
    let from = time("from", query.from.as_deref())?;
    let to = time("to", query.to.as_deref())?;
    let report = verify_range(&state, from, to, limit).await?;
    Ok(Json(report).into_response())
}

/// Recomputes the chain over the events of a time window, starting from the event before it
/// (whose hash anchors the first link).
pub(crate) async fn verify_range(
    state: &State,
    from: Option<i64>,
    to: Option<i64>,
    limit: u64,
) -> Result<ChainReport, ApiError> {
    let storage = &state.storage;
    let (head_seq, head_hash) = storage.audit_head().await.map_err(storage_error)?;
    let Some((first, last)) = storage
        .audit_seq_range(from, to)
        .await
        .map_err(storage_error)?
    else {
        // No events in the window; with no window, the head and the checkpoints must agree
        // that the chain is empty.
        let checkpoints = if from.is_none() && to.is_none() {
            storage
                .audit_checkpoints(1, i64::MAX.unsigned_abs())
                .await
                .map_err(storage_error)?
        } else {
            Vec::new()
        };
        let mut report = verify_chain(
            &[],
            None,
            Some(&state.audit.key),
            &checkpoints,
            &state.audit.signer.verifying_key(),
            true,
        );
        if report.chain_valid && from.is_none() && to.is_none() && head_seq != 0 {
            report = broken(
                report,
                "",
                format!("the chain head says {head_seq} events but none are stored"),
            );
        }
        return Ok(report);
    };
    let start = first.saturating_sub(1).max(1);
    let wanted = last.saturating_sub(start).saturating_add(1);
    let events = storage
        .audit_chain(start, wanted.min(limit))
        .await
        .map_err(storage_error)?;
    let walked_to = events.last().map_or(0, |e| e.seq);
    // The walk reaches the head when no upper bound cut it short.
    let to_head = to.is_none() && wanted <= limit;
    let checkpoint_end = if to_head {
        i64::MAX.unsigned_abs()
    } else {
        walked_to
    };
    let checkpoints = storage
        .audit_checkpoints(start, checkpoint_end)
        .await
        .map_err(storage_error)?;
    let mut report = verify_chain(
        &events,
        None,
        Some(&state.audit.key),
        &checkpoints,
        &state.audit.signer.verifying_key(),
        to_head,
    );
    if report.chain_valid
        && to_head
        && let Some(tail) = events.last()
        && (tail.seq != head_seq || tail.event_hash != head_hash)
    {
        let id = tail.event.id.clone();
        report = broken(
            report,
            &id,
            format!(
                "the chain head is event {head_seq} but the stored chain ends at {}: events were \
                 removed or the head was altered",
                tail.seq
            ),
        );
    }
    Ok(report)
}

fn broken(mut report: ChainReport, event_id: &str, reason: String) -> ChainReport {
    report.chain_valid = false;
    report.broken_at_event_id = Some(event_id.to_owned());
    report.reason = Some(reason);
    report
}

#[utoipa::path(
    get, path = "/v1/audit/export", tag = "audit", security(("bearer" = [])), params(ExportQuery),
    responses(
        (status = 200, description = "Events, checkpoints and the checkpoint public key, for offline verification", body = AuditExport),
        (status = 403, description = "Only the audit administrator may export the chain", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn export(
    AxState(state): AxState<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<ExportQuery>,
) -> Result<Response, ApiError> {
    admin_only(&principal)?;
    let from = time("from", query.from.as_deref())?;
    let to = time("to", query.to.as_deref())?;
    let storage = &state.storage;
    // An export to the head ends exactly at a checkpoint made now, so its tail is signed too.
    let head_checkpoint = if to.is_none() {
        checkpoint_now(&state).await?
    } else {
        None
    };
    let range = storage
        .audit_seq_range(from, to)
        .await
        .map_err(storage_error)?;
    let (events, checkpoints) = match range {
        // Events appended after the export's checkpoint are left for the next export.
        Some((first, last)) if head_checkpoint.as_ref().is_none_or(|cp| first <= cp.seq) => {
            let last = head_checkpoint.as_ref().map_or(last, |cp| cp.seq);
            let count = last.saturating_sub(first).saturating_add(1);
            if count > MAX_RANGE {
                return Err(ApiError::Validation(format!(
                    "the range holds {count} events; export at most {MAX_RANGE} at a time \
                     (narrow `from` and `to`)"
                )));
            }
            let events = storage
                .audit_chain(first, count)
                .await
                .map_err(storage_error)?;
            let checkpoints = storage
                .audit_checkpoints(first, last)
                .await
                .map_err(storage_error)?;
            (events, checkpoints)
        }
        _ => (Vec::new(), Vec::new()),
    };
    let signer = &state.audit.signer;
    Ok(Json(AuditExport {
        format: EXPORT_FORMAT.into(),
        scheme: AUDIT_SCHEME.into(),
        public_key: signer.public_key_hex(),
        key_id: signer.key_id().to_owned(),
        to_head: to.is_none(),
        events,
        checkpoints,
    })
    .into_response())
}

#[utoipa::path(
    post, path = "/v1/audit/checkpoints", tag = "audit", security(("bearer" = [])),
    responses(
        (status = 201, description = "The chain head, signed now (or the existing checkpoint of an unchanged head)", body = Checkpoint),
        (status = 403, description = "Only the audit administrator may sign checkpoints", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The chain is empty", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn create_checkpoint(
    AxState(state): AxState<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    admin_only(&principal)?;
    let checkpoint = checkpoint_now(&state)
        .await?
        .ok_or_else(|| ApiError::Conflict("the audit chain is empty".into()))?;
    Ok((StatusCode::CREATED, Json(checkpoint)).into_response())
}

#[utoipa::path(
    get, path = "/v1/audit/public-key", tag = "audit",
    responses((status = 200, description = "The Ed25519 key checkpoints are signed with; pin it to verify exports offline", body = AuditPublicKey))
)]
pub(crate) async fn public_key(AxState(state): AxState<AppState>) -> Response {
    let signer = &state.audit.signer;
    Json(AuditPublicKey {
        algorithm: "Ed25519".into(),
        public_key: signer.public_key_hex(),
        key_id: signer.key_id().to_owned(),
        scheme: AUDIT_SCHEME.into(),
    })
    .into_response()
}

/// Signs the current head unless a checkpoint of it exists; `None` for an empty chain.
pub(crate) async fn checkpoint_now(state: &State) -> Result<Option<Checkpoint>, ApiError> {
    let storage = &state.storage;
    let (seq, hash) = storage.audit_head().await.map_err(storage_error)?;
    if seq == 0 {
        return Ok(None);
    }
    if let Some(existing) = storage
        .audit_checkpoints(seq, seq)
        .await
        .map_err(storage_error)?
        .pop()
    {
        return Ok(Some(existing));
    }
    let head = storage
        .audit_chain(seq, 1)
        .await
        .map_err(storage_error)?
        .pop()
        .filter(|e| e.event_hash == hash)
        .ok_or_else(|| {
            internal(
                "audit chain head",
                &StorageError::Corrupt {
                    table: "audit_events",
                    reason: format!("the head event {seq} is missing or differs from the head"),
                },
            )
        })?;
    let checkpoint = state
        .audit
        .signer
        .sign(seq, head.event.id, hash, now_millis())
        .map_err(|e| internal("signing a checkpoint", &e))?;
    if !storage
        .insert_checkpoint(&checkpoint)
        .await
        .map_err(storage_error)?
    {
        // Another request signed the same head first: answer with that one.
        return Ok(storage
            .audit_checkpoints(seq, seq)
            .await
            .map_err(storage_error)?
            .pop());
    }
    Ok(Some(checkpoint))
}

/// How often the checkpointing task looks at the head.
const TICK: Duration = Duration::from_secs(1);

/// Signs the head every `every_events` events or `interval`, whichever comes first, until the
/// server is dropped.
pub(crate) fn spawn_checkpointer(state: Weak<State>) {
    // Until the first checkpoint, the interval runs from the server's start.
    let started = now_millis();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let Some(state) = state.upgrade() else { return };
            if let Err(e) = maybe_checkpoint(&state, started).await {
                tracing::error!(error = %e, "periodic audit checkpoint failed");
            }
        }
    });
}

async fn maybe_checkpoint(state: &State, started: i64) -> Result<(), ApiError> {
    let (seq, _) = state.storage.audit_head().await.map_err(storage_error)?;
    let latest = state
        .storage
        .latest_checkpoint()
        .await
        .map_err(storage_error)?;
    let (signed_seq, signed_at) = latest.map_or((0, started), |cp| (cp.seq, cp.created_at));
    if seq <= signed_seq {
        return Ok(());
    }
    let interval_ms = i64::try_from(state.audit.interval.as_millis()).unwrap_or(i64::MAX);
    let due = seq - signed_seq >= state.audit.every_events
        || now_millis().saturating_sub(signed_at) >= interval_ms;
    if due {
        checkpoint_now(state).await?;
    }
    Ok(())
}
