//! CMEK endpoints and the rotation job.
//!
//! Rotation rewrites each flagged version **in place** (same version number, same secret
//! context): the value is opened, decrypted with the old key, encrypted with the new key and
//! sealed again, and the new envelope, its shares and the version's fingerprint replace the
//! old ones in one transaction. A crash between two versions leaves each version either fully
//! old (flagged with the old fingerprint) or fully new: every value opens with exactly the key
//! its fingerprint names, and the job resumes from the versions still flagged old. Writing new
//! versions instead would leave older versions under the old key, so the old key could never
//! be retired.
//!
//! Keys live only in the job's task and are zeroized when it ends. Job state is persisted; a
//! restart marks running jobs `paused`, and the same `POST …/cmek-rotate` with both keys
//! resumes them.
//!
//! Audit: the requests are recorded like every route (`cmek.enable`, `cmek.disable`,
//! `cmek.rotate`, `cmek.rotate_status`), with a change's event appended in the change's own
//! transaction. The job appends its own events, as actor `system`/`cmek-rotation` with the
//! request id of the `POST` that started or resumed it: one `cmek.rotate.version` per
//! re-encrypted version (in that version's transaction, so a version that moved without its
//! event cannot exist), then `cmek.rotate.complete` or `cmek.rotate.fail`; a restart appends
//! `cmek.rotate.pause` per paused job. Events carry fingerprints and ids, never a key.

use axum::extract::State as AxState;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use custody_policy::{CustodyMode, SecretContext, SlotIndex, StoredSecret, StoredSlot};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::app::AppState;
use crate::audit::scope::AuditScope;
use crate::audit::{AuditError, NewAuditEvent};
use crate::cmek::{CmekError, CmekKey, cmek_decrypt, cmek_encrypt, is_fingerprint};
use crate::extract::{ApiJson, ApiPath};
use crate::problem::{ApiError, Problem, internal};
use crate::routes::{Principal, custody_error, owned_vault, storage_error, vault_json};
use crate::storage::{CmekJobRecord, CmekJobStatus, ShareRecord, StorageError, VersionRecord};
use crate::time::{now_millis, rfc3339};

/// The header carrying the key the values are encrypted with now.
const OLD_KEY_HEADER: &str = "x-cmek-old-key";
/// The header carrying the key to move them to.
const NEW_KEY_HEADER: &str = "x-cmek-new-key";
/// Versions read per batch.
const BATCH: u32 = 50;

/// `POST /v1/vaults/{id}/cmek`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnableCmekRequest {
    /// SHA-256 of the client's 32-byte key, 64 hex digits. Only this is stored.
    #[schema(pattern = "^[0-9a-fA-F]{64}$")]
    fingerprint: String,
}

/// `POST /v1/vaults/{id}/cmek-rotate`; the keys travel in the `x-cmek-old-key` and
/// `x-cmek-new-key` headers.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CmekRotateRequest {
    /// SHA-256 of the new key, 64 hex digits; must match `x-cmek-new-key`.
    #[schema(pattern = "^[0-9a-fA-F]{64}$")]
    new_fingerprint: String,
}

/// A rotation job.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CmekJob {
    /// The job id.
    job_id: String,
    /// The vault.
    vault_id: String,
    /// `running`, `paused` (the server restarted: send the keys again), `completed` or
    /// `failed` (see `error`; send the keys again to resume).
    status: String,
    /// Versions re-encrypted so far.
    processed: u64,
    /// Versions under the old key when the job started.
    total: u64,
    /// Fingerprint of the key the values move from.
    old_fingerprint: String,
    /// Fingerprint of the key the values move to.
    new_fingerprint: String,
    /// Why the job paused or failed.
    error: Option<String>,
    /// RFC 3339.
    created_at: String,
    /// RFC 3339.
    updated_at: String,
}

fn job_json(job: &CmekJobRecord) -> CmekJob {
    CmekJob {
        job_id: job.id.clone(),
        vault_id: job.vault_id.clone(),
        status: job.status.as_str().to_owned(),
        processed: job.processed,
        total: job.total,
        old_fingerprint: job.old_fingerprint.clone(),
        new_fingerprint: job.new_fingerprint.clone(),
        error: job.error.clone(),
        created_at: rfc3339(job.created_at),
        updated_at: rfc3339(job.updated_at),
    }
}

fn fingerprint(field: &str, text: &str) -> Result<String, ApiError> {
    let lower = text.to_ascii_lowercase();
    if is_fingerprint(&lower) {
        Ok(lower)
    } else {
        Err(ApiError::Validation(format!(
            "`{field}` must be the SHA-256 of the key as 64 hex digits"
        )))
    }
}

#[utoipa::path(
    post, path = "/v1/vaults/{id}/cmek", tag = "cmek", security(("bearer" = [])), request_body = EnableCmekRequest,
    params(("id" = String, Path, description = "Vault id")),
    responses(
        (status = 200, description = "The vault, `cmek_enabled: true`; values written from now on are flagged", body = crate::dto::Vault),
        (status = 403, description = "A scoped key cannot change CMEK", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "CMEK is on with another key (rotate instead), or a rotation is unfinished", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn enable_cmek(
    AxState(state): AxState<AppState>,
    Extension(audit): Extension<AuditScope>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<EnableCmekRequest>,
) -> Result<Response, ApiError> {
    principal.unscoped("change CMEK")?;
    let vault = owned_vault(&state, &principal, &id).await?;
    let wanted = fingerprint("fingerprint", &body.fingerprint)?;
    audit.detail("fingerprint", json!(wanted));
    match state
        .storage
        .vault_cmek_fingerprint(&vault.id)
        .await
        .map_err(storage_error)?
    {
        Some(current) if current == wanted => {
            return Ok(Json(vault_json(&vault)).into_response());
        }
        Some(_) => {
            return Err(ApiError::Conflict(
                "CMEK is already on with another key; move the values to a new key with \
                 POST /v1/vaults/{id}/cmek-rotate"
                    .into(),
            ));
        }
        None => {}
    }
    if !state
        .storage
        .set_vault_cmek(&vault.id, Some(&wanted), &audit.success()?)
        .await
        .map_err(storage_error)?
    {
        return Err(unfinished_job_conflict());
    }
    audit.mark_audited();
    let vault = owned_vault(&state, &principal, &id).await?;
    Ok(Json(vault_json(&vault)).into_response())
}

fn unfinished_job_conflict() -> ApiError {
    ApiError::Conflict(
        "a CMEK rotation job of this vault is unfinished; finish it (POST …/cmek-rotate with \
         both keys resumes it) before changing CMEK"
            .into(),
    )
}

#[utoipa::path(
    delete, path = "/v1/vaults/{id}/cmek", tag = "cmek", security(("bearer" = [])),
    params(("id" = String, Path, description = "Vault id")),
    responses(
        (status = 200, description = "The vault, `cmek_enabled: false`; values already written stay flagged and encrypted", body = crate::dto::Vault),
        (status = 403, description = "A scoped key cannot change CMEK", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A rotation is unfinished", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn disable_cmek(
    AxState(state): AxState<AppState>,
    Extension(audit): Extension<AuditScope>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    principal.unscoped("change CMEK")?;
    let vault = owned_vault(&state, &principal, &id).await?;
    if !state
        .storage
        .set_vault_cmek(&vault.id, None, &audit.success()?)
        .await
        .map_err(storage_error)?
    {
        return Err(unfinished_job_conflict());
    }
    audit.mark_audited();
    let vault = owned_vault(&state, &principal, &id).await?;
    Ok(Json(vault_json(&vault)).into_response())
}

/// Reads a key header; 400 naming the header if absent or not base64 of 32 bytes.
fn key_header(headers: &HeaderMap, name: &str) -> Result<CmekKey, ApiError> {
    let value = headers.get(name).ok_or_else(|| {
        ApiError::Validation(format!(
            "send the key as base64 of 32 bytes in the `{name}` header"
        ))
    })?;
    let text = value.to_str().map_err(|_| {
        ApiError::Validation(format!("the `{name}` header must be base64 of 32 bytes"))
    })?;
    CmekKey::from_base64(text).map_err(|e: CmekError| {
        ApiError::Validation(format!("the `{name}` header is refused: {e}"))
    })
}

#[utoipa::path(
    post, path = "/v1/vaults/{id}/cmek-rotate", tag = "cmek", security(("bearer" = [])), request_body = CmekRotateRequest,
    params(("id" = String, Path, description = "Vault id"),
        ("x-cmek-old-key" = String, Header, description = "The current key, base64 of 32 bytes; used by the job only, never stored"),
        ("x-cmek-new-key" = String, Header, description = "The new key, base64 of 32 bytes; used by the job only, never stored")),
    responses(
        (status = 202, description = "The job started (or resumed); poll it", body = CmekJob),
        (status = 403, description = "A key does not match its fingerprint, or a scoped key", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "CMEK is off, the custody mode has a client slot, or another job is unfinished or running", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn start_rotation(
    AxState(state): AxState<AppState>,
    Extension(audit): Extension<AuditScope>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CmekRotateRequest>,
) -> Result<Response, ApiError> {
    principal.unscoped("rotate CMEK keys")?;
    let vault = owned_vault(&state, &principal, &id).await?;
    let new_fingerprint = fingerprint("new_fingerprint", &body.new_fingerprint)?;
    audit.detail("new_fingerprint", json!(new_fingerprint));
    let old_key = key_header(&headers, OLD_KEY_HEADER)?;
    let new_key = key_header(&headers, NEW_KEY_HEADER)?;
    if new_key.fingerprint() != new_fingerprint {
        return Err(ApiError::CmekKeyMismatch(
            "the key in `x-cmek-new-key` does not match `new_fingerprint` (SHA-256 of the 32 \
             key bytes, hex)"
                .into(),
        ));
    }
    if let Some(mode) = &vault.custody {
        let mode: CustodyMode = mode
            .mode
            .parse()
            .map_err(|e| internal("stored custody mode", &e))?;
        if mode.client_slot().is_some() {
            return Err(ApiError::Conflict(
                "this vault's custody mode has a client slot: the server cannot open its values \
                 without the client shares, so CMEK rotation is not available here; re-encrypt \
                 and write the values from the client instead"
                    .into(),
            ));
        }
    }
    if let Some(job) = state
        .storage
        .unfinished_cmek_job(&vault.id)
        .await
        .map_err(storage_error)?
    {
        if job.new_fingerprint != new_fingerprint {
            return Err(ApiError::Conflict(format!(
                "rotation job {} to another key is unfinished; resume it with its keys first",
                job.id
            )));
        }
        if old_key.fingerprint() != job.old_fingerprint {
            return Err(ApiError::CmekKeyMismatch(
                "the key in `x-cmek-old-key` does not match the fingerprint the unfinished job \
                 moves values from"
                    .into(),
            ));
        }
        if job.status == CmekJobStatus::Running {
            return Err(ApiError::Conflict(format!(
                "rotation job {} is already running; poll GET …/cmek-rotate/{}",
                job.id, job.id
            )));
        }
        audit.detail("job_id", json!(job.id));
        audit.detail("old_fingerprint", json!(job.old_fingerprint));
        audit.detail("resumed", json!(true));
        state
            .storage
            .set_cmek_job_status(&job.id, CmekJobStatus::Running, None, &audit.success()?)
            .await
            .map_err(storage_error)?;
        audit.mark_audited();
        let job = reread(&state, &job).await?;
        spawn_job(
            state.clone(),
            job.clone(),
            old_key,
            new_key,
            audit.request_id(),
        );
        return Ok((StatusCode::ACCEPTED, Json(job_json(&job))).into_response());
    }
    let current = state
        .storage
        .vault_cmek_fingerprint(&vault.id)
        .await
        .map_err(storage_error)?
        .ok_or_else(|| {
            ApiError::Conflict(
                "CMEK is off for this vault; turn it on with POST /v1/vaults/{id}/cmek".into(),
            )
        })?;
    if old_key.fingerprint() != current {
        return Err(ApiError::CmekKeyMismatch(
            "the key in `x-cmek-old-key` does not match the vault's CMEK fingerprint".into(),
        ));
    }
    if new_fingerprint == current {
        return Err(ApiError::Validation(
            "`new_fingerprint` is the vault's current key; rotate to a different key".into(),
        ));
    }
    let now = now_millis();
    let job = CmekJobRecord {
        id: crate::ids::new_id().map_err(|e| internal("random id", &e))?,
        vault_id: vault.id.clone(),
        old_fingerprint: current,
        new_fingerprint,
        status: CmekJobStatus::Running,
        processed: 0,
        total: 0,
        error: None,
        created_at: now,
        updated_at: now,
    };
    audit.detail("job_id", json!(job.id));
    audit.detail("old_fingerprint", json!(job.old_fingerprint));
    let job = match state.storage.create_cmek_job(&job, &audit.success()?).await {
        Ok(job) => job,
        Err(StorageError::Conflict) => {
            return Err(ApiError::Conflict(
                "the vault's CMEK key changed or another rotation started meanwhile; retry".into(),
            ));
        }
        Err(e) => return Err(storage_error(e)),
    };
    audit.mark_audited();
    spawn_job(
        state.clone(),
        job.clone(),
        old_key,
        new_key,
        audit.request_id(),
    );
    Ok((StatusCode::ACCEPTED, Json(job_json(&job))).into_response())
}

async fn reread(state: &AppState, job: &CmekJobRecord) -> Result<CmekJobRecord, ApiError> {
    state
        .storage
        .get_cmek_job(&job.vault_id, &job.id)
        .await
        .map_err(storage_error)?
        .ok_or_else(|| ApiError::NotFound("there is no such rotation job".into()))
}

#[utoipa::path(
    get, path = "/v1/vaults/{id}/cmek-rotate/{job_id}", tag = "cmek", security(("bearer" = [])),
    params(("id" = String, Path, description = "Vault id"), ("job_id" = String, Path, description = "Job id")),
    responses((status = 200, description = "The job's status and progress", body = CmekJob))
)]
pub(crate) async fn rotation_status(
    AxState(state): AxState<AppState>,
    Extension(audit): Extension<AuditScope>,
    principal: Principal,
    ApiPath((id, job_id)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    audit.detail("job_id", json!(job_id));
    let vault = owned_vault(&state, &principal, &id).await?;
    let job = state
        .storage
        .get_cmek_job(&vault.id, &job_id)
        .await
        .map_err(storage_error)?
        .ok_or_else(|| {
            ApiError::NotFound(format!("vault {id:?} has no rotation job {job_id:?}"))
        })?;
    Ok(Json(job_json(&job)).into_response())
}

/// The actor id of the events the rotation job appends itself.
const JOB_ACTOR: &str = "cmek-rotation";

/// An event the job appends itself (no request is in flight while it runs).
fn job_event(
    job: &CmekJobRecord,
    request_id: &str,
    action: &str,
    (resource_type, resource_id): (&str, &str),
    outcome: &str,
    mut detail: serde_json::Map<String, Value>,
) -> Result<NewAuditEvent, AuditError> {
    detail.insert("job_id".into(), json!(job.id));
    detail.insert("old_fingerprint".into(), json!(job.old_fingerprint));
    detail.insert("new_fingerprint".into(), json!(job.new_fingerprint));
    Ok(NewAuditEvent {
        id: crate::ids::new_event_id().map_err(AuditError::Random)?,
        occurred_at: now_millis(),
        request_id: request_id.to_owned(),
        actor_type: "system".into(),
        actor_id: JOB_ACTOR.into(),
        action: action.into(),
        resource_type: resource_type.into(),
        resource_id: resource_id.to_owned(),
        vault_id: Some(job.vault_id.clone()),
        outcome: outcome.into(),
        detail: Value::Object(detail).to_string(),
    })
}

/// The `cmek.rotate.pause` event of a job a restart paused (appended by
/// [`Storage::pause_running_cmek_jobs`](crate::Storage::pause_running_cmek_jobs) in the
/// transaction that pauses it).
pub(crate) fn restart_pause_event(job: &CmekJobRecord) -> Result<NewAuditEvent, AuditError> {
    let mut detail = serde_json::Map::new();
    detail.insert("reason".into(), json!("restart"));
    detail.insert("processed".into(), json!(job.processed));
    job_event(
        job,
        "startup",
        "cmek.rotate.pause",
        ("vault", &job.vault_id),
        "success",
        detail,
    )
}

/// Runs the job in its own task; the keys move into it and are wiped when it ends.
fn spawn_job(
    state: AppState,
    job: CmekJobRecord,
    old_key: CmekKey,
    new_key: CmekKey,
    request_id: String,
) {
    tokio::spawn(async move {
        let (status, error) = match run_job(&state, &job, &request_id, &old_key, &new_key).await {
            Ok(()) => (CmekJobStatus::Completed, None),
            Err(reason) => {
                tracing::warn!(job = %job.id, vault = %job.vault_id, %reason, "CMEK rotation stopped");
                (CmekJobStatus::Failed, Some(reason))
            }
        };
        drop((old_key, new_key));
        let (action, outcome) = match status {
            CmekJobStatus::Completed => ("cmek.rotate.complete", "success"),
            _ => ("cmek.rotate.fail", "error"),
        };
        let mut detail = serde_json::Map::new();
        if let Some(reason) = &error {
            detail.insert("error".into(), json!(reason));
        }
        let ended = match job_event(
            &job,
            &request_id,
            action,
            ("vault", &job.vault_id),
            outcome,
            detail,
        ) {
            Ok(event) => {
                state
                    .storage
                    .set_cmek_job_status(&job.id, status, error.as_deref(), &event)
                    .await
            }
            Err(err) => Err(err.into()),
        };
        if let Err(err) = ended {
            // The job stays `running` in the store; the restart pauses it, and the client
            // resumes it with its keys (the versions already moved stay moved).
            tracing::error!(job = %job.id, error = %err, "recording the CMEK job's end failed");
        }
    });
}

/// Moves every version still flagged with the old fingerprint to the new key, batch by batch.
/// Returns the reason it stopped early, naming the version (never a value or key).
async fn run_job(
    state: &AppState,
    job: &CmekJobRecord,
    request_id: &str,
    old_key: &CmekKey,
    new_key: &CmekKey,
) -> Result<(), String> {
    loop {
        let batch = state
            .storage
            .cmek_versions_with(&job.vault_id, &job.old_fingerprint, BATCH)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "reading a CMEK batch failed");
                "a storage failure stopped the job; send the keys again to resume".to_owned()
            })?;
        if batch.is_empty() {
            return Ok(());
        }
        for (record, shares) in batch {
            rewrite(state, job, request_id, &record, shares, old_key, new_key).await?;
        }
    }
}

async fn rewrite(
    state: &AppState,
    job: &CmekJobRecord,
    request_id: &str,
    record: &VersionRecord,
    shares: Vec<ShareRecord>,
    old_key: &CmekKey,
    new_key: &CmekKey,
) -> Result<(), String> {
    let which = format!("secret {:?} version {}", record.path, record.version);
    let resume =
        "; it is unchanged and still opens with the old key; send the keys again to resume";
    let mode: CustodyMode = record
        .custody_mode
        .parse()
        .map_err(|_| format!("{which} has an unreadable custody mode{resume}"))?;
    if mode.client_slot().is_some() {
        return Err(format!(
            "{which} needs a client share to open, which the server does not hold{resume}"
        ));
    }
    let ctx = SecretContext::new(
        &record.vault_id,
        &record.path,
        record.version,
        &record.secret_type,
        mode,
    )
    .map_err(|_| format!("{which} has an invalid context{resume}"))?;
    let slots = shares
        .into_iter()
        .map(|share| {
            let index = SlotIndex::new(share.slot)?;
            let provider = custody_policy::ProviderName::new(share.provider).ok()?;
            Some(match share.blob {
                Some(blob) => StoredSlot::stored(index, provider, blob),
                None => StoredSlot::pending(index, provider),
            })
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| format!("{which} has an unreadable share row{resume}"))?;
    let stored = StoredSecret::new(record.envelope.clone(), slots);
    let opened = state
        .custodian
        .open(&ctx, &stored, None)
        .await
        .map_err(|e| {
            let api = custody_error(e);
            format!("{which} could not be opened ({}){resume}", api.detail())
        })?;
    let value = std::str::from_utf8(opened.plaintext().expose_secret())
        .map_err(|_| format!("{which} is not a CMEK value (not text){resume}"))?;
    let plain = cmek_decrypt(old_key, value).map_err(|e| match e {
        CmekError::Decrypt => format!("{which} does not decrypt with the old key{resume}"),
        other => format!("{which}: {other}{resume}"),
    })?;
    let reencrypted = cmek_encrypt(new_key, &plain)
        .map_err(|e| format!("{which} could not be re-encrypted: {e}{resume}"))?;
    drop(plain);
    drop(opened);
    let sealed = state
        .custodian
        .seal(&ctx, reencrypted.as_bytes())
        .await
        .map_err(|e| {
            let api = custody_error(e);
            format!(
                "{which} could not be sealed again ({}){resume}",
                api.detail()
            )
        })?;
    let (stored, _client_share) = sealed.into_parts();
    let (envelope, slots) = stored.into_parts();
    let shares: Vec<ShareRecord> = slots
        .iter()
        .map(|slot| ShareRecord {
            slot: slot.index().get(),
            provider: slot.provider().as_str().to_owned(),
            blob: slot.wrapped().map(<[u8]>::to_vec),
        })
        .collect();
    let mut detail = serde_json::Map::new();
    detail.insert("version".into(), json!(record.version));
    let event = job_event(
        job,
        request_id,
        "cmek.rotate.version",
        ("secret", &format!("{}/{}", record.vault_id, record.path)),
        "success",
        detail,
    )
    .map_err(|e| format!("{which}: the audit event could not be made ({e}){resume}"))?;
    state
        .storage
        .rewrite_cmek_version(job, &record.version_id, &envelope, &shares, &event)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "rewriting a CMEK version failed");
            format!("a storage failure stopped the job at {which}{resume}")
        })?;
    Ok(())
}
