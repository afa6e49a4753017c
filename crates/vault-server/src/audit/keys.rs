//! The audit keys: the HMAC key that seals events and the Ed25519 key that signs checkpoints.
//! Both live in the data directory next to (and separate from) the JWT key and the data keys.

use std::fmt;
use std::path::Path;

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use hmac::{Hmac, KeyInit, Mac as _};
use sha2::Sha256;
use zeroize::{Zeroize as _, Zeroizing};

use super::{AuditError, Checkpoint, checkpoint_message};

/// The file holding the 32-byte HMAC key.
const HMAC_KEY_FILE: &str = "audit-hmac.key";
/// The file holding the 32-byte Ed25519 checkpoint seed.
const SIGNING_SEED_FILE: &str = "audit-ed25519.seed";

/// The audit HMAC key: seals every event (`integrity_hash`).
///
/// Wiped on drop, never printed, not `Clone`.
///
/// # Example
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let key = vault_server::AuditKey::load_or_create(dir.path())?;
/// assert_eq!(format!("{key:?}"), "AuditKey(redacted)");
/// assert!(dir.path().join("audit-hmac.key").exists());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct AuditKey(Zeroizing<[u8; 32]>);

impl AuditKey {
    /// Loads `<data_dir>/audit-hmac.key`, creating it (mode 0600, 32 random bytes) on first
    /// start.
    ///
    /// # Errors
    ///
    /// [`AuditError`] if the file cannot be read or written, has the wrong length, or the OS
    /// random generator fails.
    ///
    /// # Example
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// vault_server::AuditKey::load_or_create(dir.path())?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load_or_create(data_dir: &Path) -> Result<AuditKey, AuditError> {
        load_or_create_seed(&data_dir.join(HMAC_KEY_FILE)).map(AuditKey)
    }

    /// A key from bytes (unit tests).
    #[cfg(test)]
    pub(crate) fn from_bytes(bytes: [u8; 32]) -> AuditKey {
        AuditKey(Zeroizing::new(bytes))
    }

    fn hmac(&self) -> Hmac<Sha256> {
        // RFC 2104 pads a key shorter than the hash's block (64 bytes for SHA-256) with zeros;
        // padding it here gives the same HMAC through the infallible constructor.
        let mut block = Zeroizing::new([0u8; 64]);
        block[..32].copy_from_slice(self.0.as_ref());
        <Hmac<Sha256> as KeyInit>::new(&(*block).into())
    }

    /// HMAC-SHA256 of `message`.
    pub(crate) fn mac(&self, message: &[u8]) -> [u8; 32] {
        let mut mac = self.hmac();
        mac.update(message);
        mac.finalize().into_bytes().into()
    }

    /// Checks a tag in constant time.
    pub(crate) fn verify(&self, message: &[u8], tag: &[u8]) -> bool {
        let mut mac = self.hmac();
        mac.update(message);
        mac.verify_slice(tag).is_ok()
    }
}

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuditKey(redacted)")
    }
}

/// The checkpoint signing key (Ed25519), separate from the JWT key.
///
/// # Example
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let signer = vault_server::AuditSigner::load_or_create(dir.path())?;
/// assert_eq!(signer.public_key_hex().len(), 64);
/// assert!(!format!("{signer:?}").contains("seed"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct AuditSigner {
    key: SigningKey,
    key_id: String,
}

impl AuditSigner {
    /// Loads `<data_dir>/audit-ed25519.seed`, creating it (mode 0600) on first start.
    ///
    /// # Errors
    ///
    /// As [`AuditKey::load_or_create`].
    ///
    /// # Example
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let a = vault_server::AuditSigner::load_or_create(dir.path())?;
    /// let b = vault_server::AuditSigner::load_or_create(dir.path())?;
    /// assert_eq!(a.public_key_hex(), b.public_key_hex());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load_or_create(data_dir: &Path) -> Result<AuditSigner, AuditError> {
        let seed = load_or_create_seed(&data_dir.join(SIGNING_SEED_FILE))?;
        let key = SigningKey::from_bytes(&seed);
        let key_id = key_id(&key.verifying_key());
        Ok(AuditSigner { key, key_id })
    }

    /// The public key, hex.
    ///
    /// # Example
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let signer = vault_server::AuditSigner::load_or_create(dir.path())?;
    /// assert!(signer.public_key_hex().chars().all(|c| c.is_ascii_hexdigit()));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn public_key_hex(&self) -> String {
        super::to_hex(self.key.verifying_key().as_bytes())
    }

    /// The public key.
    pub(crate) fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// The key id checkpoints carry.
    pub(crate) fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Signs a checkpoint of the head `(seq, event_id, event_hash)` at `created_at`.
    pub(crate) fn sign(
        &self,
        seq: u64,
        event_id: String,
        event_hash: [u8; 32],
        created_at: i64,
    ) -> Result<Checkpoint, AuditError> {
        let mut checkpoint = Checkpoint {
            seq,
            event_id,
            event_hash,
            created_at,
            key_id: self.key_id.clone(),
            signature: Vec::new(),
        };
        let message = checkpoint_message(&checkpoint)?;
        checkpoint.signature = self.key.sign(&message).to_bytes().to_vec();
        Ok(checkpoint)
    }
}

impl fmt::Debug for AuditSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditSigner")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// Hex of the first 8 bytes of SHA-256 of the public key.
pub(crate) fn key_id(key: &VerifyingKey) -> String {
    super::to_hex(&super::sha256(key.as_bytes())[..8])
}

fn load_or_create_seed(path: &Path) -> Result<Zeroizing<[u8; 32]>, AuditError> {
    let io = |source| AuditError::KeyFile {
        path: path.display().to_string(),
        source,
    };
    let mut seed = Zeroizing::new([0u8; 32]);
    let read = |seed: &mut [u8; 32]| -> Result<bool, AuditError> {
        match std::fs::read(path) {
            Ok(mut bytes) => {
                if bytes.len() != 32 {
                    bytes.zeroize();
                    return Err(AuditError::BadKeyLength(path.display().to_string()));
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
        getrandom::fill(seed.as_mut()).map_err(AuditError::Random)?;
        match crate::auth::write_private_file(path, seed.as_ref()) {
            Ok(()) => {}
            // Replicas sharing a data directory may start together: the first to publish the
            // file wins and the others load its key, so every replica seals and signs the one
            // chain in a shared database with the same keys.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if !read(&mut seed)? {
                    return Err(io(e));
                }
            }
            Err(e) => return Err(io(e)),
        }
    }
    Ok(seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_starting_together_load_one_key() {
        // Several processes sharing a data directory may create the keys at once: the first
        // to publish each file wins and every other loads it rather than failing.
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        AuditKey::load_or_create(dir.path()).unwrap();
                        AuditSigner::load_or_create(dir.path())
                            .unwrap()
                            .public_key_hex()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.iter().all(|k| *k == keys[0]));
        let hmac = std::fs::read(dir.path().join(HMAC_KEY_FILE)).unwrap();
        assert_eq!(hmac.len(), 32);
    }

    #[test]
    fn keys_are_private_files_distinct_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let key = AuditKey::load_or_create(dir.path()).unwrap();
        let signer = AuditSigner::load_or_create(dir.path()).unwrap();
        let hmac_bytes = std::fs::read(dir.path().join(HMAC_KEY_FILE)).unwrap();
        let seed = std::fs::read(dir.path().join(SIGNING_SEED_FILE)).unwrap();
        assert_ne!(hmac_bytes, seed);
        for text in [format!("{key:?}"), format!("{signer:?}")] {
            assert!(!text.contains(&super::super::to_hex(&hmac_bytes)));
            assert!(!text.contains(&super::super::to_hex(&seed)));
        }
        #[cfg(unix)]
        for file in [HMAC_KEY_FILE, SIGNING_SEED_FILE] {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
        // The same key is loaded again: tags made before a restart still verify.
        let again = AuditKey::load_or_create(dir.path()).unwrap();
        assert!(again.verify(b"m", &key.mac(b"m")));
        assert!(!again.verify(b"n", &key.mac(b"m")));
    }

    #[test]
    fn a_key_file_of_the_wrong_length_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(HMAC_KEY_FILE), [1u8; 31]).unwrap();
        assert!(matches!(
            AuditKey::load_or_create(dir.path()),
            Err(AuditError::BadKeyLength(_))
        ));
    }
}
