//! Authentication: API keys (`1ck_…`, stored as SHA-256 hashes, compared in constant time) and
//! EdDSA (Ed25519) JWTs issued for them. This is the server's only cryptography.

use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use zeroize::{Zeroize as _, Zeroizing};

use crate::storage::{ApiKeyRecord, Storage, StorageError};

/// Every API key starts with this.
pub(crate) const API_KEY_PREFIX: &str = "1ck_";
/// Every agent key starts with this.
pub(crate) const AGENT_KEY_PREFIX: &str = "ocv_";
/// The JWT issuer and audience.
const ISSUER: &str = "mpc-vault";
const AUDIENCE: &str = "mpc-vault-api";
/// The file in the data directory holding the JWT signing key's 32-byte seed.
const SIGNING_KEY_FILE: &str = "jwt-ed25519.seed";

/// A full API key: shown once when created, never stored (only its hash is).
///
/// Wiped on drop; `Debug` prints only its public prefix; read it with
/// [`expose_secret`](ApiKeySecret::expose_secret).
///
/// # Example
///
/// ```
/// let key = vault_server::ApiKeySecret::generate()?;
/// assert!(key.expose_secret().starts_with("1ck_"));
/// assert!(!format!("{key:?}").contains(key.expose_secret()));
/// # Ok::<(), getrandom::Error>(())
/// ```
pub struct ApiKeySecret(Zeroizing<String>);

impl ApiKeySecret {
    /// A fresh key: `1ck_` and 256 random bits in unpadded base64url.
    ///
    /// # Errors
    ///
    /// The OS random generator failed.
    ///
    /// # Example
    ///
    /// ```
    /// let key = vault_server::ApiKeySecret::generate()?;
    /// assert_eq!(key.expose_secret().len(), 4 + 43);
    /// # Ok::<(), getrandom::Error>(())
    /// ```
    pub fn generate() -> Result<ApiKeySecret, getrandom::Error> {
        ApiKeySecret::generate_prefixed(API_KEY_PREFIX)
    }

    /// A fresh key with another 4-character prefix (agent keys: `ocv_`).
    pub(crate) fn generate_prefixed(prefix: &str) -> Result<ApiKeySecret, getrandom::Error> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        getrandom::fill(bytes.as_mut())?;
        let mut text = Zeroizing::new(String::with_capacity(prefix.len() + 43));
        text.push_str(prefix);
        URL_SAFE_NO_PAD.encode_string(bytes.as_ref(), &mut text);
        Ok(ApiKeySecret(text))
    }

    /// The key text.
    ///
    /// # Example
    ///
    /// ```
    /// let key = vault_server::ApiKeySecret::generate()?;
    /// assert!(key.expose_secret().starts_with("1ck_"));
    /// # Ok::<(), getrandom::Error>(())
    /// ```
    #[must_use]
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// The public prefix shown in listings (`1ck_` and 8 characters).
    pub(crate) fn prefix(&self) -> String {
        self.0.chars().take(API_KEY_PREFIX.len() + 8).collect()
    }
}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeySecret({}…, redacted)", self.prefix())
    }
}

/// SHA-256 of a key's text: what the database stores.
pub(crate) fn hash_api_key(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// Looks a key up by hash and confirms the hash in constant time.
pub(crate) async fn verify_api_key(
    storage: &dyn Storage,
    key: &str,
) -> Result<Option<ApiKeyRecord>, StorageError> {
    let hash = hash_api_key(key);
    let found = storage.find_api_key_by_hash(&hash).await?;
    Ok(found.filter(|record| {
        bool::from(record.key_hash.as_slice().ct_eq(hash.as_slice())) && record.revoked_at.is_none()
    }))
}

/// The claims of an access token.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Claims {
    pub(crate) sub: String,
    /// The API key the token was issued for; revoking the key revokes its tokens. For an
    /// agent, the agent id (deleting the agent revokes its tokens).
    pub(crate) key_id: String,
    /// True for an agent's token: `sub` is then an agent id, not a user id.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) agent: bool,
    iss: String,
    aud: String,
    iat: u64,
    exp: u64,
}

/// The server's JWT signing key and its public JWK.
pub(crate) struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    kid: String,
    public_x: String,
}

impl fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKeys")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Why the signing key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeyFileError {
    #[error("JWT signing key file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("JWT signing key file {0} does not hold a 32-byte seed")]
    BadLength(String),
    #[error("OS random generator: {0}")]
    Random(getrandom::Error),
    #[error("cannot encode the signing key as PKCS#8")]
    Pkcs8,
    #[error("cannot build the JWT verification key: {0}")]
    Jwt(jsonwebtoken::errors::Error),
}

impl JwtKeys {
    /// Loads the seed from the data directory, creating it (mode 0600) on first start.
    pub(crate) fn load_or_create(data_dir: &Path) -> Result<JwtKeys, KeyFileError> {
        let path = data_dir.join(SIGNING_KEY_FILE);
        let io = |source| KeyFileError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut seed = Zeroizing::new([0u8; 32]);
        let read = |seed: &mut [u8; 32]| -> Result<bool, KeyFileError> {
            match std::fs::read(&path) {
                Ok(mut bytes) => {
                    if bytes.len() != 32 {
                        bytes.zeroize();
                        return Err(KeyFileError::BadLength(path.display().to_string()));
                    }
                    seed.copy_from_slice(&bytes);
                    bytes.zeroize();
                    Ok(true)
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(io(e)),
            }
        };
        if !read(&mut seed)? {
            getrandom::fill(seed.as_mut()).map_err(KeyFileError::Random)?;
            match write_private_file(&path, seed.as_ref()) {
                Ok(()) => {}
                // Replicas sharing a data directory may start together: the first to publish
                // the file wins and the others use its seed, so every replica signs and
                // verifies with the same key.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if !read(&mut seed)? {
                        return Err(io(e));
                    }
                }
                Err(e) => return Err(io(e)),
            }
        }
        let signing = SigningKey::from_bytes(&seed);
        let der = signing.to_pkcs8_der().map_err(|_| KeyFileError::Pkcs8)?;
        let public = signing.verifying_key().to_bytes();
        let public_x = URL_SAFE_NO_PAD.encode(public);
        let kid = URL_SAFE_NO_PAD.encode(&Sha256::digest(public)[..12]);
        Ok(JwtKeys {
            encoding: EncodingKey::from_ed_der(der.as_bytes()),
            decoding: DecodingKey::from_ed_components(&public_x).map_err(KeyFileError::Jwt)?,
            kid,
            public_x,
        })
    }

    /// Signs an access token for a key.
    pub(crate) fn issue(
        &self,
        key: &ApiKeyRecord,
        ttl: Duration,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        self.sign(key.user_id.clone(), key.id.clone(), false, ttl)
    }

    /// Signs an access token for an agent.
    pub(crate) fn issue_agent(
        &self,
        agent_id: &str,
        ttl: Duration,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        self.sign(agent_id.to_owned(), agent_id.to_owned(), true, ttl)
    }

    fn sign(
        &self,
        sub: String,
        key_id: String,
        agent: bool,
        ttl: Duration,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let now = unix_secs();
        let claims = Claims {
            sub,
            key_id,
            agent,
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            iat: now,
            exp: now.saturating_add(ttl.as_secs()),
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding)
    }

    /// Verifies a token's signature (EdDSA only), issuer, audience and expiry.
    pub(crate) fn verify(&self, token: &str) -> Option<Claims> {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 0;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .ok()
            .map(|data| data.claims)
    }

    /// The public key as a JWK set.
    pub(crate) fn jwks(&self) -> crate::dto::Jwks {
        crate::dto::Jwks {
            keys: vec![crate::dto::Jwk {
                kty: "OKP".into(),
                crv: "Ed25519".into(),
                alg: "EdDSA".into(),
                key_use: "sig".into(),
                kid: self.kid.clone(),
                x: self.public_x.clone(),
            }],
        }
    }
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Writes `bytes` to a private temporary file beside `path`, syncs it, then hard-links it to
/// `path`: a reader never sees a half-written file, and the link fails with `AlreadyExists` if
/// another process published `path` first.
#[cfg(unix)]
pub(crate) fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut suffix = [0u8; 8];
    getrandom::fill(&mut suffix).map_err(std::io::Error::other)?;
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(format!(".tmp-{:016x}", u64::from_le_bytes(suffix)));
    let tmp = std::path::PathBuf::from(tmp_name);
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::hard_link(&tmp, path)
    })();
    // The temporary name is removed whether or not the link won.
    let _ = std::fs::remove_file(&tmp);
    written?;
    // Persist the directory entry, so the seed that tokens were signed with survives a crash.
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}

#[cfg(not(unix))]
pub(crate) fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_key_is_persisted_private_and_not_printed() {
        let dir = tempfile::tempdir().unwrap();
        let first = JwtKeys::load_or_create(dir.path()).unwrap();
        let again = JwtKeys::load_or_create(dir.path()).unwrap();
        assert_eq!(first.public_x, again.public_x);
        let seed = std::fs::read(dir.path().join(SIGNING_KEY_FILE)).unwrap();
        let debug = format!("{first:?}");
        assert!(debug.starts_with("JwtKeys { kid: "));
        assert!(!debug.contains(&URL_SAFE_NO_PAD.encode(&seed)));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(SIGNING_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_seed_file_of_the_wrong_length_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SIGNING_KEY_FILE), [0u8; 31]).unwrap();
        assert!(matches!(
            JwtKeys::load_or_create(dir.path()),
            Err(KeyFileError::BadLength(_))
        ));
    }

    #[test]
    fn tokens_verify_only_with_the_right_key_and_before_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let keys = JwtKeys::load_or_create(dir.path()).unwrap();
        let record = ApiKeyRecord {
            id: "k".into(),
            user_id: "u".into(),
            name: "n".into(),
            key_hash: vec![],
            key_prefix: String::new(),
            vault_scope: None,
            created_at: 0,
            revoked_at: None,
        };
        let token = keys.issue(&record, Duration::from_secs(60)).unwrap();
        let claims = keys.verify(&token).unwrap();
        assert_eq!((claims.sub.as_str(), claims.key_id.as_str()), ("u", "k"));
        let other = tempfile::tempdir().unwrap();
        let other = JwtKeys::load_or_create(other.path()).unwrap();
        assert!(other.verify(&token).is_none());
        let expired = keys.issue(&record, Duration::ZERO).unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        assert!(keys.verify(&expired).is_none());
        // `alg: none` and HMAC tokens are refused whatever their claims.
        assert!(keys.verify("eyJhbGciOiJub25lIn0.e30.").is_none());
    }
}
