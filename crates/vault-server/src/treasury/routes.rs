//! The treasury routes: generate, list, get, sign, export, rotate and delete wallets.
//!
//! Every private key is a secret of the caller's `__treasury-keys` vault, written and read
//! through the same sealing and opening code as any other secret (`seal_version`,
//! `open_version`). A key is reconstructed only inside a sign or export call, as a zeroizing
//! [`ChainKey`], and its address is checked against the stored one before it is used.

use std::fmt;

use axum::Extension;
use axum::Json;
use axum::extract::State as AxState;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use custody_policy::ClientShare;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::json;
use utoipa::ToSchema;
use zeroize::Zeroizing;

use super::chains::{Chain, ChainError, ChainKey, SignInput};
use super::{SYSTEM_VAULT, organisation_tier};
use crate::app::AppState;
use crate::audit::scope::AuditScope;
use crate::extract::{ApiJson, ApiPath};
use crate::problem::{ApiError, Problem, internal};
use crate::routes::{
    Principal, WriteOptions, custody_error, custody_record, open_version, seal_version,
    storage_error,
};
use crate::storage::{StorageError, VaultRecord, WalletRecord};
use crate::time::{now_millis, rfc3339};

/// The header that confirms an export; its value must be the chain's name.
const CONFIRM_EXPORT_HEADER: &str = "x-confirm-export";

/// The secret type of a stored chain key.
const KEY_SECRET_TYPE: &str = "private_key";

/// Treasury writes of one process run one at a time: the system vault is created once, and a
/// generate, rotate or delete never races another over the same chain. (The database's unique
/// index on active wallets still refuses a second active wallet if two processes share it.)
static WRITES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `POST /v1/treasury/wallets/generate`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct GenerateWalletsRequest {
    /// The chains to generate a wallet for (`ethereum`, `bitcoin`, `solana`); all three if
    /// omitted.
    #[serde(default)]
    chains: Option<Vec<String>>,
}

/// `POST /v1/treasury/wallets/{chain}/sign`: exactly one of `digest_hex` and `message`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignRequest {
    /// A 32-byte digest (64 hex characters), signed as is: a transaction sighash.
    #[serde(default)]
    digest_hex: Option<String>,
    /// A UTF-8 message, hashed with the chain's signed-message convention first (EIP-191 on
    /// Ethereum, `Bitcoin Signed Message` on Bitcoin); Ed25519 signs the bytes themselves.
    #[serde(default)]
    message: Option<String>,
}

/// A treasury wallet (public data only).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TreasuryWallet {
    /// The wallet's id.
    id: String,
    /// `ethereum`, `bitcoin` or `solana`.
    chain: String,
    /// `secp256k1` or `ed25519`.
    curve: String,
    /// The public key, hex (SEC1 compressed for secp256k1).
    public_key_hex: String,
    /// The address: EIP-55 (Ethereum), P2WPKH bech32 (Bitcoin), base58 (Solana).
    address: String,
    /// False once rotated or deleted.
    is_active: bool,
    /// RFC 3339.
    created_at: String,
    /// In client-custody tiers: the key's client share (base64), returned only here. Send it
    /// as `X-Client-Share` to sign or export with this key.
    #[serde(skip_serializing_if = "Option::is_none")]
    client_share: Option<String>,
}

/// The answer to a list or a generate.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TreasuryWalletList {
    /// The wallets.
    wallets: Vec<TreasuryWallet>,
}

/// A signature.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TreasurySignature {
    /// The chain.
    chain: String,
    /// The signing wallet's address.
    address: String,
    /// Ethereum `r ‖ s ‖ v` (v = 27 + recovery id), Bitcoin BIP-137 `header ‖ r ‖ s`
    /// (header = 39 + recovery id, P2WPKH), Solana the 64-byte Ed25519 signature; hex.
    signature_hex: String,
    /// The secp256k1 recovery id (0 or 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    recovery_id: Option<u8>,
    /// The 32-byte digest that was signed (secp256k1), hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    digest_hex: Option<String>,
}

/// An exported private key. `Debug` never shows it; it is wiped when the answer is written.
#[derive(Serialize, ToSchema)]
pub(crate) struct ExportedKey {
    /// The chain.
    chain: String,
    /// The key's address.
    address: String,
    /// The private key, hex (32 bytes).
    #[schema(value_type = String)]
    #[serde(serialize_with = "expose")]
    private_key_hex: Zeroizing<String>,
}

impl fmt::Debug for ExportedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExportedKey")
            .field("chain", &self.chain)
            .field("address", &self.address)
            .field("private_key_hex", &"<redacted>")
            .finish()
    }
}

fn expose<S: Serializer>(value: &Zeroizing<String>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(value)
}

/// The private key as lower-case hex, encoded in constant time (no table lookup or branch on
/// key bytes) into buffers that are wiped.
fn secret_hex(key: &ChainKey) -> Result<Zeroizing<String>, ApiError> {
    let mut buffer = Zeroizing::new([0u8; 64]);
    let text = base16ct::lower::encode_str(key.expose_secret(), buffer.as_mut())
        .map_err(|e| internal("encoding a treasury key", &e))?;
    Ok(Zeroizing::new(text.to_owned()))
}

fn chain_error(err: ChainError) -> ApiError {
    match err {
        ChainError::DigestLength(_) => ApiError::Validation(err.to_string()),
        other => internal("treasury key", &other),
    }
}

/// Only a user's unscoped key (or its token) may use the treasury: agents and vault-scoped
/// keys get 403 on every treasury route.
fn treasury_caller(principal: &Principal) -> Result<(), ApiError> {
    principal.unscoped("use treasury wallets")
}

fn chain_param(name: &str) -> Result<Chain, ApiError> {
    Chain::parse(name).ok_or_else(|| {
        ApiError::NotFound(format!(
            "there is no treasury chain {name:?}; use ethereum, bitcoin or solana"
        ))
    })
}

fn key_path(user_id: &str, chain: Chain) -> String {
    format!("users/{user_id}/chains/{chain}/private_key")
}

fn wallet_json(wallet: &WalletRecord, client_share: Option<ClientShare>) -> TreasuryWallet {
    TreasuryWallet {
        id: wallet.id.clone(),
        chain: wallet.chain.clone(),
        curve: wallet.curve.clone(),
        public_key_hex: wallet.public_key_hex.clone(),
        address: wallet.address.clone(),
        is_active: wallet.is_active,
        created_at: rfc3339(wallet.created_at),
        client_share: client_share.map(|share| share.to_base64().expose_secret().to_owned()),
    }
}

async fn active_wallet(
    state: &AppState,
    user_id: &str,
    chain: Chain,
) -> Result<Option<WalletRecord>, ApiError> {
    Ok(state
        .storage
        .list_wallets(user_id)
        .await
        .map_err(storage_error)?
        .into_iter()
        .find(|w| w.chain == chain.as_str()))
}

async fn require_wallet(
    state: &AppState,
    user_id: &str,
    chain: Chain,
) -> Result<WalletRecord, ApiError> {
    active_wallet(state, user_id, chain).await?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "there is no active {chain} treasury wallet; create one with \
             POST /v1/treasury/wallets/generate"
        ))
    })
}

/// The caller's system vault, created with the tier's custody on first use. Called with
/// [`WRITES`] held.
async fn system_vault(
    state: &AppState,
    audit: &AuditScope,
    principal: &Principal,
) -> Result<VaultRecord, ApiError> {
    let existing = state
        .storage
        .list_vaults(principal.user_id())
        .await
        .map_err(storage_error)?
        .into_iter()
        .find(super::is_system_vault);
    if let Some(vault) = existing {
        return Ok(vault);
    }
    let mode = organisation_tier(&state.config).treasury_custody();
    state.custodian.check_mode(&mode).map_err(custody_error)?;
    let vault = VaultRecord {
        id: crate::ids::new_id().map_err(|e| internal("random id", &e))?,
        name: SYSTEM_VAULT.to_owned(),
        description: "Treasury wallet keys (system vault)".to_owned(),
        created_by: principal.user_id().to_owned(),
        created_at: now_millis(),
        cmek_enabled: false,
        // Standard custody is stored as an explicit mode too: the tier decided it, and the
        // vault's mode is fixed from now on.
        custody: Some(custody_record(&mode)),
    };
    audit.set_resource(&vault.id, Some(&vault.id));
    audit.detail("system_vault", json!(SYSTEM_VAULT));
    audit.detail("custody_mode", json!(mode.to_string()));
    state
        .storage
        .insert_vault(&vault, &audit.success()?)
        .await
        .map_err(storage_error)?;
    audit.mark_audited();
    Ok(vault)
}

/// Generates a key for `chain`, seals it into the system vault and records the wallet, in one
/// transaction (deactivating `replaces` for a rotation).
async fn create_wallet(
    state: &AppState,
    audit: &AuditScope,
    principal: &Principal,
    vault: &VaultRecord,
    chain: Chain,
    replaces: Option<&str>,
) -> Result<(WalletRecord, Option<ClientShare>), ApiError> {
    let key = ChainKey::generate(chain).map_err(chain_error)?;
    let public_key_hex = hex::encode(key.public_key().map_err(chain_error)?);
    let address = key.address().map_err(chain_error)?;
    let path = key_path(principal.user_id(), chain);
    let options = WriteOptions {
        secret_type: KEY_SECRET_TYPE.to_owned(),
        metadata: json!({"chain": chain.as_str(), "address": address}).to_string(),
        metadata_json: json!({}),
        expires_at: None,
        max_access_count: None,
    };
    let key_hex = secret_hex(&key)?;
    drop(key);
    let (new, client_share) = seal_version(
        state,
        audit,
        principal,
        vault,
        &path,
        key_hex.as_bytes(),
        &options,
    )
    .await?;
    drop(key_hex);
    let wallet = WalletRecord {
        id: crate::ids::new_id().map_err(|e| internal("random id", &e))?,
        user_id: principal.user_id().to_owned(),
        vault_id: vault.id.clone(),
        chain: chain.as_str().to_owned(),
        curve: chain.curve().to_owned(),
        public_key_hex,
        address,
        is_active: true,
        secret_path: path,
        secret_version: new.version.version,
        created_at: new.version.created_at,
    };
    audit.set_resource(&wallet.id, Some(&vault.id));
    audit.detail("chain", json!(chain.as_str()));
    audit.detail("address", json!(wallet.address));
    if let Some(old) = replaces {
        audit.detail("replaces", json!(old));
    }
    match state
        .storage
        .put_wallet(&new, &wallet, replaces, &audit.success()?)
        .await
    {
        Ok(_) => {
            audit.mark_audited();
            Ok((wallet, client_share))
        }
        Err(StorageError::Conflict) => Err(ApiError::Conflict(format!(
            "the {chain} wallet was changed by a concurrent request; retry"
        ))),
        Err(e) => Err(storage_error(e)),
    }
}

/// Opens the wallet's key (with the client share in `headers` where the custody needs it),
/// checks it still has the wallet's address, and hands it to `use_key`. The key lives only
/// inside this call and is wiped when it returns. The use is counted and audited (in one
/// transaction) before the result is returned.
async fn with_key<T>(
    state: &AppState,
    audit: &AuditScope,
    wallet: &WalletRecord,
    chain: Chain,
    headers: &HeaderMap,
    use_key: impl FnOnce(&ChainKey) -> Result<T, ApiError>,
) -> Result<T, ApiError> {
    let vault = state
        .storage
        .get_vault(&wallet.vault_id)
        .await
        .map_err(storage_error)?
        .ok_or_else(|| {
            internal(
                "treasury vault",
                &StorageError::Corrupt {
                    table: "treasury_wallets",
                    reason: format!("wallet {} has no vault", wallet.id),
                },
            )
        })?;
    audit.set_resource(&wallet.id, Some(&vault.id));
    audit.detail("chain", json!(chain.as_str()));
    audit.detail("address", json!(wallet.address));
    let (record, opened) = open_version(
        state,
        &vault,
        &wallet.secret_path,
        Some(wallet.secret_version),
        headers,
    )
    .await?;
    let result = {
        let mut bytes = Zeroizing::new([0u8; 32]);
        let decoded = base16ct::lower::decode(opened.plaintext().expose_secret(), bytes.as_mut())
            .map_err(|e| internal("stored treasury key is not hex", &e))?
            .len();
        if decoded != 32 {
            tracing::error!(wallet = %wallet.id, "stored treasury key is not 32 bytes");
            return Err(ApiError::Internal);
        }
        drop(opened);
        let key = ChainKey::from_bytes(chain, bytes.as_ref()).map_err(chain_error)?;
        drop(bytes);
        // Defence in depth: a key that does not derive the wallet's address (a swapped or
        // corrupted secret) is never used.
        if key.address().map_err(chain_error)? != wallet.address {
            tracing::error!(wallet = %wallet.id, "treasury key does not match its wallet address");
            return Err(ApiError::Internal);
        }
        use_key(&key)?
    };
    if !state
        .storage
        .record_access(&record.version_id, &audit.success()?)
        .await
        .map_err(storage_error)?
    {
        return Err(ApiError::Gone(
            "this treasury key can no longer be read".into(),
        ));
    }
    audit.mark_audited();
    Ok(result)
}

#[utoipa::path(
    post, path = "/v1/treasury/wallets/generate", tag = "treasury", security(("bearer" = [])),
    request_body = GenerateWalletsRequest,
    responses(
        (status = 201, description = "The new wallets; `client_share` per wallet in client-custody tiers (returned only here)", body = TreasuryWalletList),
        (status = 403, description = "Agents and vault-scoped keys cannot use the treasury", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A requested chain already has an active wallet", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn generate(
    AxState(state): AxState<AppState>,
    Extension(audit): Extension<AuditScope>,
    principal: Principal,
    ApiJson(body): ApiJson<GenerateWalletsRequest>,
) -> Result<Response, ApiError> {
    treasury_caller(&principal)?;
    let chains = match body.chains {
        None => Chain::ALL.to_vec(),
        Some(names) => {
            if names.is_empty() {
                return Err(ApiError::Validation(
                    "`chains` must name at least one chain (omit it for all three)".into(),
                ));
            }
            let mut chains = Vec::with_capacity(names.len());
            for name in &names {
                let chain = Chain::parse(name).ok_or_else(|| {
                    ApiError::Validation(format!(
                        "`chains` lists {:?}; use ethereum, bitcoin or solana",
                        name.chars().take(64).collect::<String>()
                    ))
                })?;
                if chains.contains(&chain) {
                    return Err(ApiError::Validation(format!(
                        "`chains` lists {chain} twice"
                    )));
                }
                chains.push(chain);
            }
            chains
        }
    };
    let _writes = WRITES.lock().await;
    // Every conflict is found before anything is written, so a refused request changes nothing.
    let active = state
        .storage
        .list_wallets(principal.user_id())
        .await
        .map_err(storage_error)?;
    if let Some(taken) = chains
        .iter()
        .find(|c| active.iter().any(|w| w.chain == c.as_str()))
    {
        return Err(ApiError::Conflict(format!(
            "there is already an active {taken} wallet; rotate it with \
             POST /v1/treasury/wallets/{taken}/rotate or delete it first"
        )));
    }
    let vault = system_vault(&state, &audit, &principal).await?;
    let mut wallets = Vec::with_capacity(chains.len());
    for chain in chains {
        let (wallet, client_share) =
            create_wallet(&state, &audit, &principal, &vault, chain, None).await?;
        wallets.push(wallet_json(&wallet, client_share));
    }
    Ok((StatusCode::CREATED, Json(TreasuryWalletList { wallets })).into_response())
}

#[utoipa::path(
    get, path = "/v1/treasury/wallets", tag = "treasury", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's active wallets", body = TreasuryWalletList),
        (status = 403, description = "Agents and vault-scoped keys cannot use the treasury", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn list(
    AxState(state): AxState<AppState>,
    principal: Principal,
) -> Result<Response, ApiError> {
    treasury_caller(&principal)?;
    let wallets = state
        .storage
        .list_wallets(principal.user_id())
        .await
        .map_err(storage_error)?
        .iter()
        .map(|w| wallet_json(w, None))
        .collect();
    Ok(Json(TreasuryWalletList { wallets }).into_response())
}

#[utoipa::path(
    get, path = "/v1/treasury/wallets/{chain}", tag = "treasury", security(("bearer" = [])),
    params(("chain" = String, Path, description = "`ethereum`, `bitcoin` or `solana`")),
    responses(
        (status = 200, description = "The chain's active wallet", body = TreasuryWallet),
        (status = 403, description = "Agents and vault-scoped keys cannot use the treasury", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get(
    AxState(state): AxState<AppState>,
    principal: Principal,
    ApiPath(chain): ApiPath<String>,
) -> Result<Response, ApiError> {
    treasury_caller(&principal)?;
    let chain = chain_param(&chain)?;
    let wallet = require_wallet(&state, principal.user_id(), chain).await?;
    Ok(Json(wallet_json(&wallet, None)).into_response())
}

#[utoipa::path(
    post, path = "/v1/treasury/wallets/{chain}/sign", tag = "treasury", security(("bearer" = [])),
    request_body = SignRequest,
    params(("chain" = String, Path, description = "`ethereum`, `bitcoin` or `solana`"),
        ("X-Client-Share" = Option<String>, Header, description = "The key's client share, in client-custody tiers")),
    responses(
        (status = 200, description = "The signature", body = TreasurySignature),
        (status = 403, description = "Agents and vault-scoped keys cannot use the treasury, or the client share is wrong", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn sign(
    AxState(state): AxState<AppState>,
    Extension(audit): Extension<AuditScope>,
    principal: Principal,
    ApiPath(chain): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SignRequest>,
) -> Result<Response, ApiError> {
    treasury_caller(&principal)?;
    let chain = chain_param(&chain)?;
    // The input is checked before any provider is asked for a share.
    let digest;
    let input = match (&body.digest_hex, &body.message) {
        (Some(text), None) => {
            let mut bytes = [0u8; 32];
            hex::decode_to_slice(text, &mut bytes).map_err(|_| {
                ApiError::Validation(
                    "`digest_hex` must be 64 hex characters (a 32-byte digest)".into(),
                )
            })?;
            digest = bytes;
            audit.detail("digest_hex", json!(hex::encode(digest)));
            SignInput::Digest(&digest)
        }
        (None, Some(message)) => SignInput::Message(message.as_bytes()),
        _ => {
            return Err(ApiError::Validation(
                "send exactly one of `digest_hex` (64 hex characters) and `message`".into(),
            ));
        }
    };
    let wallet = require_wallet(&state, principal.user_id(), chain).await?;
    let signature = with_key(&state, &audit, &wallet, chain, &headers, |key| {
        key.sign(input).map_err(chain_error)
    })
    .await?;
    Ok(Json(TreasurySignature {
        chain: chain.as_str().to_owned(),
        address: wallet.address,
        signature_hex: hex::encode(&signature.bytes),
        recovery_id: signature.recovery_id,
        digest_hex: signature.digest.map(hex::encode),
    })
    .into_response())
}

#[utoipa::path(
    post, path = "/v1/treasury/wallets/{chain}/export", tag = "treasury", security(("bearer" = [])),
    params(("chain" = String, Path, description = "`ethereum`, `bitcoin` or `solana`"),
        ("X-Confirm-Export" = String, Header, description = "Must be the chain's name: confirms the private key is to leave the vault"),
        ("X-Client-Share" = Option<String>, Header, description = "The key's client share, in client-custody tiers")),
    responses(
        (status = 200, description = "The private key", body = ExportedKey),
        (status = 400, description = "`X-Confirm-Export` is missing or names another chain", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Agents and vault-scoped keys cannot use the treasury, or the client share is wrong", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn export(
    AxState(state): AxState<AppState>,
    Extension(audit): Extension<AuditScope>,
    principal: Principal,
    ApiPath(chain): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    treasury_caller(&principal)?;
    let chain = chain_param(&chain)?;
    let confirmed = headers
        .get(CONFIRM_EXPORT_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == chain.as_str());
    if !confirmed {
        return Err(ApiError::Validation(format!(
            "exporting a private key needs the header `X-Confirm-Export: {chain}`"
        )));
    }
    let wallet = require_wallet(&state, principal.user_id(), chain).await?;
    let private_key_hex = with_key(&state, &audit, &wallet, chain, &headers, secret_hex).await?;
    Ok(Json(ExportedKey {
        chain: chain.as_str().to_owned(),
        address: wallet.address,
        private_key_hex,
    })
    .into_response())
}

#[utoipa::path(
    post, path = "/v1/treasury/wallets/{chain}/rotate", tag = "treasury", security(("bearer" = [])),
    params(("chain" = String, Path, description = "`ethereum`, `bitcoin` or `solana`")),
    responses(
        (status = 201, description = "The new wallet (new key, new address); `client_share` in client-custody tiers, returned only here. The old key is deleted.", body = TreasuryWallet),
        (status = 403, description = "Agents and vault-scoped keys cannot use the treasury", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A concurrent request changed the wallet", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn rotate(
    AxState(state): AxState<AppState>,
    Extension(audit): Extension<AuditScope>,
    principal: Principal,
    ApiPath(chain): ApiPath<String>,
) -> Result<Response, ApiError> {
    treasury_caller(&principal)?;
    let chain = chain_param(&chain)?;
    let _writes = WRITES.lock().await;
    let old = require_wallet(&state, principal.user_id(), chain).await?;
    let vault = system_vault(&state, &audit, &principal).await?;
    audit.detail("previous_address", json!(old.address));
    let (wallet, client_share) =
        create_wallet(&state, &audit, &principal, &vault, chain, Some(&old.id)).await?;
    Ok((
        StatusCode::CREATED,
        Json(wallet_json(&wallet, client_share)),
    )
        .into_response())
}

#[utoipa::path(
    delete, path = "/v1/treasury/wallets/{chain}", tag = "treasury", security(("bearer" = [])),
    params(("chain" = String, Path, description = "`ethereum`, `bitcoin` or `solana`")),
    responses(
        (status = 204, description = "Deactivated; its key secret is deleted"),
        (status = 403, description = "Agents and vault-scoped keys cannot use the treasury", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn delete(
    AxState(state): AxState<AppState>,
    Extension(audit): Extension<AuditScope>,
    principal: Principal,
    ApiPath(chain): ApiPath<String>,
) -> Result<Response, ApiError> {
    treasury_caller(&principal)?;
    let chain = chain_param(&chain)?;
    let _writes = WRITES.lock().await;
    let wallet = require_wallet(&state, principal.user_id(), chain).await?;
    audit.set_resource(&wallet.id, Some(&wallet.vault_id));
    audit.detail("chain", json!(chain.as_str()));
    audit.detail("address", json!(wallet.address));
    if !state
        .storage
        .delete_wallet(&wallet, now_millis(), &audit.success()?)
        .await
        .map_err(storage_error)?
    {
        return Err(ApiError::NotFound(format!(
            "there is no active {chain} treasury wallet"
        )));
    }
    audit.mark_audited();
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exported_key_debug_shows_no_key() {
        let exported = ExportedKey {
            chain: "solana".into(),
            address: "addr".into(),
            private_key_hex: Zeroizing::new("5a".repeat(32)),
        };
        let text = format!("{exported:?}");
        assert!(!text.contains("5a5a"), "{text}");
        assert!(text.contains("redacted"));
        // The key is in the JSON answer only.
        let json = serde_json::to_string(&exported).unwrap();
        assert!(json.contains(&"5a".repeat(32)));
    }

    #[test]
    fn key_paths_follow_the_documented_layout() {
        assert_eq!(
            key_path("admin", Chain::Bitcoin),
            "users/admin/chains/bitcoin/private_key"
        );
        assert!(chain_param("ethereum").is_ok());
        assert!(matches!(
            chain_param("Ethereum"),
            Err(ApiError::NotFound(_))
        ));
    }
}
