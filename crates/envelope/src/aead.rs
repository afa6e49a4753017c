//! The AEAD layer: AES-256-GCM with a 96-bit nonce and a 128-bit tag, in place.
//!
//! Everything above this module decides which key, nonce and associated data to use; this
//! module only encrypts and decrypts, and is what the Wycheproof vectors exercise.

use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit};

use crate::{Error, MAX_PLAINTEXT_LEN};

/// AES-256 key length.
pub(crate) const KEY_LEN: usize = 32;
/// GCM nonce length: 96 bits, the only length whose counter block needs no GHASH and the only
/// one this layer accepts (Wycheproof's other lengths are checked to be unrepresentable).
pub(crate) const NONCE_LEN: usize = 12;
/// GCM tag length: the full 128 bits; truncated tags are not offered.
pub(crate) const TAG_LEN: usize = 16;

/// Encrypts `buffer` in place and returns the tag.
///
/// # Errors
///
/// [`Error::PlaintextTooLarge`] if `aes-gcm` refuses the lengths, which happens only past its
/// limits (2^36 − 32 bytes of plaintext, 2^61 − 1 of associated data), far above what callers
/// pass.
pub(crate) fn encrypt_in_place(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    buffer: &mut [u8],
) -> Result<[u8; TAG_LEN], Error> {
    let len = buffer.len();
    let cipher = Aes256Gcm::new(key.into());
    let tag = cipher
        .encrypt_inout_detached(nonce.into(), aad, buffer.into())
        .map_err(|_| Error::PlaintextTooLarge {
            len,
            max: MAX_PLAINTEXT_LEN,
        })?;
    Ok(tag.into())
}

/// Verifies `tag` over `aad` and the ciphertext in `buffer` in constant time and, only if it
/// matches, decrypts `buffer` in place. On failure `buffer` still holds the ciphertext.
///
/// # Errors
///
/// [`Error::AuthenticationFailed`] if the tag does not match.
pub(crate) fn decrypt_in_place(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    buffer: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> Result<(), Error> {
    let cipher = Aes256Gcm::new(key.into());
    cipher
        .decrypt_inout_detached(nonce.into(), aad, buffer.into(), tag.into())
        .map_err(|_| Error::AuthenticationFailed)
}

#[cfg(test)]
// Test code indexes and counts freely: a panic there is a failing test, not a vulnerability.
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use crate::test_util::unhex;
    use serde_json::Value;

    /// Google's Wycheproof AES-GCM vectors, the 256-bit-key subset (provenance and licence in
    /// tests/data/README.md).
    const WYCHEPROOF: &str = include_str!("../tests/data/wycheproof_aes_256_gcm_test.json");

    fn field(test: &Value, name: &str) -> Vec<u8> {
        unhex(test[name].as_str().unwrap())
    }

    #[test]
    fn wycheproof_aes_256_gcm_every_vector() {
        let file: Value = serde_json::from_str(WYCHEPROOF).unwrap();
        assert_eq!(file["algorithm"], "AES-GCM");
        let declared = usize::try_from(file["numberOfTests"].as_u64().unwrap()).unwrap();

        let (mut total, mut valid_run, mut invalid_run, mut unrepresentable) = (0, 0, 0, 0);
        for group in file["testGroups"].as_array().unwrap() {
            assert_eq!(group["keySize"], 256);
            assert_eq!(group["tagSize"], 128, "only full-length tags are offered");
            for test in group["tests"].as_array().unwrap() {
                total += 1;
                let id = &test["tcId"];
                let key: [u8; KEY_LEN] = field(test, "key").try_into().unwrap();
                let iv = field(test, "iv");
                let aad = field(test, "aad");
                let msg = field(test, "msg");
                let ct = field(test, "ct");
                let tag: [u8; TAG_LEN] = field(test, "tag").try_into().unwrap();
                let result = test["result"].as_str().unwrap();

                let Ok(nonce) = <[u8; NONCE_LEN]>::try_from(iv.as_slice()) else {
                    // This layer takes only `[u8; 12]`, so a vector with another IV length
                    // cannot even be expressed: it is rejected by type, which is the behaviour
                    // Wycheproof asks for on invalid short IVs and allows on long ones.
                    assert_ne!(iv.len(), NONCE_LEN);
                    unrepresentable += 1;
                    continue;
                };

                let mut buffer = msg.clone();
                let computed_tag = encrypt_in_place(&key, &nonce, &aad, &mut buffer).unwrap();
                let mut opened = ct.clone();
                let decrypted = decrypt_in_place(&key, &nonce, &aad, &mut opened, &tag);
                match result {
                    "valid" => {
                        assert_eq!(buffer, ct, "tcId {id}: ciphertext");
                        assert_eq!(computed_tag, tag, "tcId {id}: tag");
                        assert_eq!(decrypted, Ok(()), "tcId {id}: decrypt");
                        assert_eq!(opened, msg, "tcId {id}: plaintext");
                        valid_run += 1;
                    }
                    "invalid" => {
                        assert_eq!(
                            decrypted,
                            Err(Error::AuthenticationFailed),
                            "tcId {id}: an invalid vector was accepted"
                        );
                        assert_eq!(opened, ct, "tcId {id}: buffer changed on failure");
                        assert!(
                            (buffer.as_slice(), computed_tag) != (ct.as_slice(), tag),
                            "tcId {id}: encryption reproduced an invalid vector"
                        );
                        invalid_run += 1;
                    }
                    other => unreachable!("tcId {id}: unexpected result {other:?}"),
                }
            }
        }
        assert_eq!(total, declared, "every vector in the file was visited");
        assert_eq!(total, valid_run + invalid_run + unrepresentable);
        // Pin the split so a truncated or swapped data file cannot pass unnoticed.
        assert_eq!((valid_run, invalid_run, unrepresentable), (39, 27, 39));
    }
}
