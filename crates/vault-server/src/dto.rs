//! The JSON shapes of the API (field names as in 1claw's public API). They are the single
//! source of both the wire format (serde) and the OpenAPI document (utoipa).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use zeroize::Zeroizing;

/// A secret string from a request (a value or an API key): wiped on drop, never printed.
#[derive(ToSchema)]
#[schema(value_type = String)]
pub(crate) struct SecretText(pub(crate) Zeroizing<String>);

impl<'de> Deserialize<'de> for SecretText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| SecretText(Zeroizing::new(s)))
    }
}

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretText(redacted)")
    }
}

/// `GET /v1/health`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Health {
    /// Always `ok` when the server answers.
    pub(crate) status: String,
    /// The server version.
    pub(crate) version: String,
}

/// One provider in `GET /v1/health/hsm`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProviderHealth {
    /// The provider's configured name.
    pub(crate) name: String,
    /// `ok` or `unavailable`.
    pub(crate) status: String,
    /// The provider kind (`local`, `pkcs11`, …) when it answered.
    pub(crate) kind: Option<String>,
    /// The KEK version new wraps use, when it answered.
    pub(crate) key_version: Option<String>,
    /// The circuit breaker in front of it: `closed` (calls go through), `open` (calls fail fast
    /// until the cool-down ends) or `half-open` (the next call probes it).
    pub(crate) circuit: String,
    /// Why it is unavailable.
    pub(crate) detail: Option<String>,
}

/// `GET /v1/health/hsm`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HsmHealth {
    /// `ok` (every provider answers), `degraded` (some do) or `unavailable` (none does).
    pub(crate) status: String,
    /// Per-provider detail.
    pub(crate) providers: Vec<ProviderHealth>,
}

/// One Ed25519 public key.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Jwk {
    /// `OKP`.
    pub(crate) kty: String,
    /// `Ed25519`.
    pub(crate) crv: String,
    /// `EdDSA`.
    pub(crate) alg: String,
    /// `sig`.
    #[serde(rename = "use")]
    pub(crate) key_use: String,
    /// Key id, as in the tokens' `kid` header.
    pub(crate) kid: String,
    /// The public key, base64url.
    pub(crate) x: String,
}

/// `GET /.well-known/jwks.json`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Jwks {
    /// The signing keys.
    pub(crate) keys: Vec<Jwk>,
}

/// `POST /v1/auth/api-key-token` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApiKeyTokenRequest {
    /// A user API key (`1ck_…`).
    pub(crate) api_key: SecretText,
}

/// `POST /v1/auth/api-key-token` answer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AccessToken {
    /// An EdDSA-signed JWT.
    pub(crate) access_token: String,
    /// `Bearer`.
    pub(crate) token_type: String,
    /// Lifetime in seconds.
    pub(crate) expires_in: u64,
}

/// `POST /v1/auth/api-keys` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateApiKeyRequest {
    /// A label (default `api key`).
    #[serde(default)]
    pub(crate) name: Option<String>,
    /// Restrict the key (and its tokens) to these vaults of the caller; a scoped key can use
    /// those vaults' secrets but cannot create or delete vaults or manage keys.
    #[serde(default)]
    pub(crate) vault_ids: Option<Vec<String>>,
}

/// An API key as listed (never the key itself).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ApiKey {
    /// Key id.
    pub(crate) id: String,
    /// Label.
    pub(crate) name: String,
    /// The key's first characters.
    pub(crate) key_prefix: String,
    /// The vaults the key is scoped to; `null` for every vault of its user.
    pub(crate) vault_ids: Option<Vec<String>>,
    /// RFC 3339.
    pub(crate) created_at: String,
    /// RFC 3339, if revoked.
    pub(crate) revoked_at: Option<String>,
}

/// `POST /v1/auth/api-keys` answer: the only time the full key is shown.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CreatedApiKey {
    /// The key's listing fields.
    #[serde(flatten)]
    pub(crate) key_info: ApiKey,
    /// The full key (`1ck_…`); store it now.
    pub(crate) key: String,
}

/// `GET /v1/auth/api-keys`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ApiKeyList {
    /// The caller's keys, revoked ones included.
    pub(crate) api_keys: Vec<ApiKey>,
}

/// `POST /v1/vaults` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateVaultRequest {
    /// 1 to 128 characters, not all blank, no control characters.
    #[schema(min_length = 1, max_length = 128, pattern = r"\S")]
    pub(crate) name: String,
    /// At most 1024 characters.
    #[serde(default)]
    #[schema(max_length = 1024)]
    pub(crate) description: Option<String>,
    /// A custody mode to set at creation (see `POST /v1/vaults/{id}/mpc`).
    #[serde(default)]
    pub(crate) mpc_custody: Option<String>,
}

/// A vault.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Vault {
    /// UUID.
    pub(crate) id: String,
    /// Name.
    pub(crate) name: String,
    /// Description.
    pub(crate) description: String,
    /// The user that created it.
    pub(crate) created_by: String,
    /// RFC 3339.
    pub(crate) created_at: String,
    /// Customer-managed keys (not offered by this server: always false).
    pub(crate) cmek_enabled: bool,
    /// The custody mode; `null` until set (then secrets use `standard` custody).
    pub(crate) mpc_custody: Option<String>,
    /// The mode's threshold.
    pub(crate) mpc_threshold: Option<u8>,
    /// The providers of the mode's provider slots, in slot order.
    pub(crate) mpc_providers: Option<Vec<String>>,
}

/// `GET /v1/vaults`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct VaultList {
    /// The caller's vaults.
    pub(crate) vaults: Vec<Vault>,
}

/// `POST /v1/vaults/{id}/mpc` body: either `{custody_mode, providers?}` or `{mpc_custody}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnableMpcRequest {
    /// `standard`, `2of2_client_custody`, `2of3_multi_hsm`, `2of3_client_custody` or a layout
    /// such as `3of5:gcp,aws,azure,hsm,client`.
    #[serde(default)]
    pub(crate) custody_mode: Option<String>,
    /// Providers for a named mode's provider slots.
    #[serde(default)]
    pub(crate) providers: Option<Vec<String>>,
    /// The same as `custody_mode` (the other accepted shape).
    #[serde(default)]
    pub(crate) mpc_custody: Option<String>,
}

/// `PUT /v1/vaults/{id}/secrets/{path}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PutSecretRequest {
    /// The secret value (UTF-8 text).
    pub(crate) value: SecretText,
    /// 1 to 64 of `a-z 0-9 _ -`; default `generic`.
    #[serde(default, rename = "type")]
    pub(crate) secret_type: Option<String>,
    /// A JSON object of at most 16 KiB.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub(crate) metadata: Option<Value>,
    /// RFC 3339, in the future; reads after it answer 410.
    #[serde(default)]
    pub(crate) expires_at: Option<String>,
    /// Reads allowed; the read after the last answers 410.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub(crate) max_access_count: Option<u64>,
}

/// The answer to a write (`PUT` or `secret-rotate`).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SecretWritten {
    /// The secret's id (the same for every version).
    pub(crate) id: String,
    /// The secret path.
    pub(crate) path: String,
    /// Secret type.
    #[serde(rename = "type")]
    pub(crate) secret_type: String,
    /// The new version number.
    pub(crate) version: u64,
    /// Metadata.
    #[schema(value_type = Object)]
    pub(crate) metadata: Value,
    /// RFC 3339.
    pub(crate) created_at: String,
    /// RFC 3339, if the version expires.
    pub(crate) expires_at: Option<String>,
    /// True when the vault had CMEK on at the write: the value is the client's ciphertext
    /// (`0x01 ‖ IV ‖ AES-256-GCM`, base64), to decrypt with the client's key.
    pub(crate) cmek_encrypted: bool,
    /// In modes with a client slot: this version's client share (base64). It is returned
    /// only here and never stored; send it as `X-Client-Share` to read this version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) client_share: Option<String>,
}

/// A secret version with its value.
#[derive(Serialize, ToSchema)]
pub(crate) struct Secret {
    /// The secret's id.
    pub(crate) id: String,
    /// The secret path.
    pub(crate) path: String,
    /// Secret type.
    #[serde(rename = "type")]
    pub(crate) secret_type: String,
    /// The value.
    pub(crate) value: String,
    /// Version number.
    pub(crate) version: u64,
    /// Metadata.
    #[schema(value_type = Object)]
    pub(crate) metadata: Value,
    /// The user that wrote the version.
    pub(crate) created_by: String,
    /// RFC 3339.
    pub(crate) created_at: String,
    /// RFC 3339, if the version expires.
    pub(crate) expires_at: Option<String>,
    /// True when the vault had CMEK on at the write: the value is the client's ciphertext
    /// (`0x01 ‖ IV ‖ AES-256-GCM`, base64), to decrypt with the client's key.
    pub(crate) cmek_encrypted: bool,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("path", &self.path)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.value);
    }
}

/// A secret's metadata (its latest version), without the value.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SecretSummary {
    /// The secret's id.
    pub(crate) id: String,
    /// The secret path.
    pub(crate) path: String,
    /// Secret type.
    #[serde(rename = "type")]
    pub(crate) secret_type: String,
    /// Latest version number.
    pub(crate) version: u64,
    /// Metadata.
    #[schema(value_type = Object)]
    pub(crate) metadata: Value,
    /// RFC 3339.
    pub(crate) created_at: String,
    /// RFC 3339, if the version expires.
    pub(crate) expires_at: Option<String>,
    /// True when the vault had CMEK on at the write: the value is the client's ciphertext
    /// (`0x01 ‖ IV ‖ AES-256-GCM`, base64), to decrypt with the client's key.
    pub(crate) cmek_encrypted: bool,
}

/// `GET /v1/vaults/{id}/secrets`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SecretList {
    /// Secrets whose latest version is not deleted, by path.
    pub(crate) secrets: Vec<SecretSummary>,
}

/// One version in `GET …/secret-versions/{path}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct VersionInfo {
    /// Version number.
    pub(crate) version: u64,
    /// Secret type.
    #[serde(rename = "type")]
    pub(crate) secret_type: String,
    /// The user that wrote it.
    pub(crate) created_by: String,
    /// RFC 3339.
    pub(crate) created_at: String,
    /// RFC 3339, if it expires.
    pub(crate) expires_at: Option<String>,
    /// Reads so far.
    pub(crate) access_count: u64,
    /// Reads allowed, if bounded.
    pub(crate) max_access_count: Option<u64>,
    /// Disabled.
    pub(crate) disabled: bool,
    /// Deleted.
    pub(crate) deleted: bool,
}

/// `GET …/secret-versions/{path}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct VersionList {
    /// Every version, oldest first.
    pub(crate) versions: Vec<VersionInfo>,
}

/// `POST …/secret-rotate/{path}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RotateRequest {
    /// 8 to 4096 characters; default 32.
    #[serde(default)]
    pub(crate) length: Option<usize>,
    /// `alphanumeric` (default), `hex` or `ascii`.
    #[serde(default)]
    pub(crate) charset: Option<String>,
}

/// `GET /v1/vaults/{id}/secrets` query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only secrets whose path starts with this.
    #[serde(default)]
    pub(crate) prefix: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_secret_holders_leaks_nothing() {
        let text: SecretText = serde_json::from_str("\"hunter2-secret\"").unwrap();
        assert_eq!(format!("{text:?}"), "SecretText(redacted)");
        let request: PutSecretRequest =
            serde_json::from_str(r#"{"value":"hunter2-secret","type":"password"}"#).unwrap();
        assert!(!format!("{request:?}").contains("hunter2"));
        let token: ApiKeyTokenRequest =
            serde_json::from_str(r#"{"api_key":"1ck_secretsecret"}"#).unwrap();
        assert!(!format!("{token:?}").contains("secretsecret"));
        let secret = Secret {
            id: "id".into(),
            path: "db/password".into(),
            secret_type: "password".into(),
            value: "hunter2-secret".into(),
            version: 1,
            metadata: Value::Null,
            created_by: "admin".into(),
            created_at: String::new(),
            expires_at: None,
            cmek_encrypted: false,
        };
        let debug = format!("{secret:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("db/password"));
    }
}
