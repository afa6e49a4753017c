//! The client-managed key (CMEK) value format: `0x01 ‖ 12-byte IV ‖ AES-256-GCM ciphertext and
//! tag`, base64 (standard alphabet, padded).
//!
//! A client encrypts a value with its own key before `PUT`, and decrypts what `GET` returns;
//! the server stores the base64 text as the secret's value (inside its own context-bound
//! envelope) and only ever learns the key's SHA-256 fingerprint, except while a rotation job it
//! was handed both keys for is running. There is no associated data: the format is the one
//! clients already speak, and the binding of a value to its vault, path and version is the
//! server envelope's job.

use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest as _, Sha256};
use zeroize::{Zeroize as _, Zeroizing};

/// The format version byte.
const VERSION: u8 = 0x01;
/// AES-GCM nonce (IV) length.
const IV_LEN: usize = 12;
/// AES-GCM tag length.
const TAG_LEN: usize = 16;
/// Key length: AES-256.
const KEY_LEN: usize = 32;

/// Why a CMEK key or value was refused. Never holds key or plaintext bytes.
///
/// # Example
///
/// ```
/// use vault_server::{CmekError, CmekKey, cmek_decrypt};
///
/// let key = CmekKey::from_bytes([7; 32]);
/// assert_eq!(cmek_decrypt(&key, "AQ=="), Err(CmekError::Malformed("shorter than the IV and tag")));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CmekError {
    /// The key is not base64 of exactly 32 bytes.
    #[error("a CMEK key must be base64 of exactly 32 bytes")]
    BadKey,
    /// The value is not in the CMEK format (the reason says which part).
    #[error("not a CMEK value: {0}")]
    Malformed(&'static str),
    /// The tag does not verify: another key, or a modified value.
    #[error("the CMEK value does not decrypt with this key (wrong key or modified value)")]
    Decrypt,
    /// The OS random generator failed (no IV could be drawn).
    #[error("OS random generator failed")]
    Random,
}

/// A client's 256-bit CMEK key: zeroized on drop, no `Clone`, redacted `Debug`.
///
/// # Example
///
/// ```
/// let key = vault_server::CmekKey::from_bytes([1; 32]);
/// assert_eq!(format!("{key:?}"), "CmekKey(<redacted>)");
/// assert_eq!(key.fingerprint().len(), 64);
/// ```
pub struct CmekKey(Zeroizing<[u8; KEY_LEN]>);

impl std::fmt::Debug for CmekKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CmekKey(<redacted>)")
    }
}

impl CmekKey {
    /// A key from its bytes (the array is copied into zeroizing memory; wipe yours).
    ///
    /// # Example
    ///
    /// ```
    /// let key = vault_server::CmekKey::from_bytes([9; 32]);
    /// assert_eq!(key.expose_secret(), &[9; 32]);
    /// ```
    #[must_use]
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> CmekKey {
        CmekKey(Zeroizing::new(bytes))
    }

    /// A fresh key from the OS CSPRNG.
    ///
    /// # Errors
    ///
    /// [`CmekError::Random`] if the OS generator fails.
    ///
    /// # Example
    ///
    /// ```
    /// let a = vault_server::CmekKey::generate()?;
    /// let b = vault_server::CmekKey::generate()?;
    /// assert_ne!(a.fingerprint(), b.fingerprint());
    /// # Ok::<(), vault_server::CmekError>(())
    /// ```
    pub fn generate() -> Result<CmekKey, CmekError> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(key.as_mut()).map_err(|_| CmekError::Random)?;
        Ok(CmekKey(key))
    }

    /// A key from base64 (standard alphabet, padded) of exactly 32 bytes, as sent in the
    /// `x-cmek-old-key` / `x-cmek-new-key` headers.
    ///
    /// # Errors
    ///
    /// [`CmekError::BadKey`] for anything else.
    ///
    /// # Example
    ///
    /// ```
    /// use vault_server::CmekKey;
    ///
    /// let key = CmekKey::from_bytes([3; 32]);
    /// let again = CmekKey::from_base64(&key.to_base64())?;
    /// assert_eq!(again.fingerprint(), key.fingerprint());
    /// assert!(CmekKey::from_base64("c2hvcnQ=").is_err());
    /// # Ok::<(), vault_server::CmekError>(())
    /// ```
    pub fn from_base64(text: &str) -> Result<CmekKey, CmekError> {
        let mut decoded = Zeroizing::new(
            STANDARD
                .decode(text.trim())
                .map_err(|_| CmekError::BadKey)?,
        );
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        if decoded.len() != KEY_LEN {
            decoded.zeroize();
            return Err(CmekError::BadKey);
        }
        key.copy_from_slice(&decoded);
        Ok(CmekKey(key))
    }

    /// The key as base64 (for the rotation headers), in zeroizing memory.
    ///
    /// # Example
    ///
    /// ```
    /// let key = vault_server::CmekKey::from_bytes([0; 32]);
    /// assert_eq!(key.to_base64().len(), 44);
    /// ```
    #[must_use]
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(self.0.as_ref()))
    }

    /// The fingerprint the server stores: SHA-256 of the 32 key bytes, lowercase hex.
    ///
    /// # Example
    ///
    /// ```
    /// let key = vault_server::CmekKey::from_bytes([0; 32]);
    /// assert_eq!(
    ///     key.fingerprint(),
    ///     "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
    /// );
    /// ```
    #[must_use]
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.0.as_ref());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The key bytes: the one accessor, named so every use is easy to find.
    ///
    /// # Example
    ///
    /// ```
    /// let key = vault_server::CmekKey::from_bytes([5; 32]);
    /// assert_eq!(key.expose_secret()[0], 5);
    /// ```
    #[must_use]
    pub fn expose_secret(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

/// Encrypts `plaintext` under `key` with a fresh random IV and returns the base64 CMEK value.
///
/// # Errors
///
/// [`CmekError::Random`] if no IV could be drawn; [`CmekError::Malformed`] past AES-GCM's
/// length limit (64 GiB).
///
/// # Example
///
/// ```
/// use vault_server::{CmekKey, cmek_decrypt, cmek_encrypt};
///
/// let key = CmekKey::generate()?;
/// let value = cmek_encrypt(&key, b"hunter2")?;
/// assert_eq!(cmek_decrypt(&key, &value)?.as_slice(), b"hunter2");
/// # Ok::<(), vault_server::CmekError>(())
/// ```
pub fn cmek_encrypt(key: &CmekKey, plaintext: &[u8]) -> Result<String, CmekError> {
    let mut iv = [0u8; IV_LEN];
    getrandom::fill(&mut iv).map_err(|_| CmekError::Random)?;
    let mut out = Zeroizing::new(Vec::with_capacity(1 + IV_LEN + plaintext.len() + TAG_LEN));
    out.push(VERSION);
    out.extend_from_slice(&iv);
    out.extend_from_slice(plaintext);
    let cipher = Aes256Gcm::new(key.expose_secret().into());
    let tag = cipher
        .encrypt_inout_detached((&iv).into(), &[], (&mut out[1 + IV_LEN..]).into())
        .map_err(|_| CmekError::Malformed("value too large for AES-GCM"))?;
    out.extend_from_slice(&tag);
    Ok(STANDARD.encode(out.as_slice()))
}

/// Decrypts a base64 CMEK value with `key`; the plaintext comes back in zeroizing memory.
///
/// # Errors
///
/// [`CmekError::Malformed`] if the text is not base64 of `0x01 ‖ IV ‖ ciphertext ‖ tag`;
/// [`CmekError::Decrypt`] if the tag does not verify under `key`.
///
/// # Example
///
/// ```
/// use vault_server::{CmekError, CmekKey, cmek_decrypt, cmek_encrypt};
///
/// let value = cmek_encrypt(&CmekKey::from_bytes([1; 32]), b"x")?;
/// assert_eq!(cmek_decrypt(&CmekKey::from_bytes([2; 32]), &value), Err(CmekError::Decrypt));
/// # Ok::<(), vault_server::CmekError>(())
/// ```
pub fn cmek_decrypt(key: &CmekKey, value: &str) -> Result<Zeroizing<Vec<u8>>, CmekError> {
    let raw = STANDARD
        .decode(value.trim())
        .map_err(|_| CmekError::Malformed("not base64"))?;
    if raw.len() < 1 + IV_LEN + TAG_LEN {
        return Err(CmekError::Malformed("shorter than the IV and tag"));
    }
    if raw.first() != Some(&VERSION) {
        return Err(CmekError::Malformed(
            "unknown format version (expected 0x01)",
        ));
    }
    let (iv, rest) = raw[1..].split_at(IV_LEN);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    let mut buffer = Zeroizing::new(ciphertext.to_vec());
    let cipher = Aes256Gcm::new(key.expose_secret().into());
    let iv: &[u8; IV_LEN] = iv.try_into().map_err(|_| CmekError::Malformed("IV"))?;
    let tag: &[u8; TAG_LEN] = tag.try_into().map_err(|_| CmekError::Malformed("tag"))?;
    cipher
        .decrypt_inout_detached(iv.into(), &[], buffer.as_mut_slice().into(), tag.into())
        .map_err(|_| CmekError::Decrypt)?;
    Ok(buffer)
}

/// Whether `text` is a fingerprint: 64 lowercase hex digits.
pub(crate) fn is_fingerprint(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_version_iv_ciphertext_tag() {
        let key = CmekKey::from_bytes([4; 32]);
        let value = cmek_encrypt(&key, b"abc").unwrap();
        let raw = STANDARD.decode(&value).unwrap();
        assert_eq!(raw.len(), 1 + 12 + 3 + 16);
        assert_eq!(raw[0], 1);
        // Two encryptions of the same value differ (fresh IV).
        assert_ne!(cmek_encrypt(&key, b"abc").unwrap(), value);
    }

    #[test]
    fn tampering_and_bad_input_are_refused() {
        let key = CmekKey::from_bytes([4; 32]);
        let value = cmek_encrypt(&key, b"secret value").unwrap();
        let mut raw = STANDARD.decode(&value).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        assert_eq!(
            cmek_decrypt(&key, &STANDARD.encode(&raw)),
            Err(CmekError::Decrypt)
        );
        raw[last] ^= 1;
        raw[0] = 2;
        assert!(matches!(
            cmek_decrypt(&key, &STANDARD.encode(&raw)),
            Err(CmekError::Malformed(_))
        ));
        assert!(matches!(
            cmek_decrypt(&key, "!!"),
            Err(CmekError::Malformed(_))
        ));
        assert_eq!(
            CmekKey::from_base64(&STANDARD.encode([0u8; 31])).unwrap_err(),
            CmekError::BadKey
        );
    }

    #[test]
    fn nothing_secret_in_debug_or_errors() {
        let key = CmekKey::from_bytes([0xAB; 32]);
        let shown = format!("{key:?} {}", CmekError::Decrypt);
        assert!(!shown.to_lowercase().contains("ab"), "{shown}");
        assert!(!shown.contains(&*key.to_base64()));
    }

    #[test]
    fn fingerprints_are_lowercase_hex() {
        assert!(is_fingerprint(&CmekKey::from_bytes([1; 32]).fingerprint()));
        assert!(!is_fingerprint(&"A".repeat(64)));
        assert!(!is_fingerprint("abc"));
    }
}
