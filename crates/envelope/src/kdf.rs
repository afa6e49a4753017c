//! The key schedule: from (DEK, salt, context) to the AES-GCM key, the GCM nonce and the key
//! commitment, with HKDF-SHA256 (RFC 5869).
//!
//! ```text
//! PRK        = HKDF-Extract(salt, DEK)
//! key        = HKDF-Expand(PRK, info("mpc-vault/envelope/v1/aes-256-gcm/key"),        32)
//! nonce      = HKDF-Expand(PRK, info("mpc-vault/envelope/v1/aes-256-gcm/nonce"),      12)
//! commitment = HKDF-Expand(PRK, info("mpc-vault/envelope/v1/aes-256-gcm/commitment"), 32)
//! info(label) = label || canonical context encoding
//! ```
//!
//! This is the construction of the AWS Encryption SDK's committing suites (a random per-message
//! salt, one extract, distinct expand labels for the data key and the commitment), with SHA-256
//! and with the context in `info`, so the commitment covers the context as well as the key.

use hkdf::Hkdf;
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};
use zeroize::{Zeroize, Zeroizing};

use crate::aead::{KEY_LEN, NONCE_LEN};
use crate::{Context, Dek};

/// Length of the random per-envelope HKDF salt: 256 bits, so two envelopes under one DEK share
/// a salt (and so a key and nonce) with probability about 2^-256 per pair.
pub(crate) const SALT_LEN: usize = 32;

/// Length of the key commitment: 256 bits, as in the AWS Encryption SDK. Finding two DEKs (or
/// DEK and context pairs) with the same commitment for one salt costs about 2^128 work.
pub(crate) const COMMITMENT_LEN: usize = 32;

const LABEL_KEY: &[u8] = b"mpc-vault/envelope/v1/aes-256-gcm/key";
const LABEL_NONCE: &[u8] = b"mpc-vault/envelope/v1/aes-256-gcm/nonce";
const LABEL_COMMITMENT: &[u8] = b"mpc-vault/envelope/v1/aes-256-gcm/commitment";

/// HKDF-SHA256 can expand at most 255 blocks of 32 bytes; every output here is one block or
/// less, which this assertion proves at compile time (see `expand`).
const _: () = assert!(KEY_LEN <= 32 && NONCE_LEN <= 32 && COMMITMENT_LEN <= 32);

/// The expanded state for one envelope: HKDF's PRK, held as the keyed HMAC state, which is
/// wiped on drop (the `zeroize` features of `hmac` and `sha2` are enabled in Cargo.toml).
/// Deliberately not `Debug`: `Hkdf`'s own `Debug` would print the keyed state.
pub(crate) struct KeySchedule {
    hkdf: Hkdf<Sha256>,
}

impl KeySchedule {
    /// Runs HKDF-Extract over the DEK with the envelope's salt.
    pub(crate) fn new(dek: &Dek, salt: &[u8; SALT_LEN]) -> Self {
        let (mut prk, hkdf) = Hkdf::<Sha256>::extract(Some(salt), dek.expose_secret());
        // The PRK is also kept inside `hkdf` (as the keyed HMAC state); this returned copy is
        // not needed, so it is wiped at once instead of lingering until its stack slot is reused.
        prk.as_mut_slice().zeroize();
        Self { hkdf }
    }

    /// The key commitment for `context`.
    pub(crate) fn commitment(&self, context: &Context) -> [u8; COMMITMENT_LEN] {
        let mut out = [0u8; COMMITMENT_LEN];
        self.expand(LABEL_COMMITMENT, context, &mut out);
        out
    }

    /// Whether `stored` is the commitment for `context`, compared in constant time so that a
    /// timing difference cannot reveal how many leading bytes of a candidate matched.
    pub(crate) fn commitment_matches(
        &self,
        context: &Context,
        stored: &[u8; COMMITMENT_LEN],
    ) -> Choice {
        let mut expected = Zeroizing::new([0u8; COMMITMENT_LEN]);
        self.expand(LABEL_COMMITMENT, context, expected.as_mut_slice());
        expected.as_slice().ct_eq(stored.as_slice())
    }

    /// The AES-256-GCM key and nonce for `context`.
    pub(crate) fn cipher_key_and_nonce(
        &self,
        context: &Context,
    ) -> (Zeroizing<[u8; KEY_LEN]>, [u8; NONCE_LEN]) {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        self.expand(LABEL_KEY, context, key.as_mut_slice());
        let mut nonce = [0u8; NONCE_LEN];
        self.expand(LABEL_NONCE, context, &mut nonce);
        (key, nonce)
    }

    /// HKDF-Expand with `info = label || canonical context encoding`.
    ///
    /// `info` is unambiguous because the labels are prefix-free (no label starts with another,
    /// checked by a test) and the context encoding is length-prefixed, so self-delimiting.
    fn expand(&self, label: &'static [u8], context: &Context, out: &mut [u8]) {
        let info: [&[u8]; 2] = [label, context.canonical_encoding()];
        // HKDF-Expand fails only when asked for more than 255 * 32 bytes, and every caller asks
        // for at most 32 (asserted at compile time above), so this never fails.
        #[allow(clippy::expect_used)] // Proven unreachable by the compile-time assertion above.
        self.hkdf
            .expand_multi_info(&info, out)
            .expect("HKDF-SHA256 output of at most 32 bytes is always valid");
    }
}

#[cfg(test)]
// Test code indexes and counts freely: a panic there is a failing test, not a vulnerability.
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use crate::test_util::{hex, unhex};

    fn context(path: &str) -> Context {
        Context::builder()
            .vault_id("v")
            .path(path)
            .version(1)
            .secret_type("t")
            .custody_mode("standard")
            .build()
            .unwrap()
    }

    #[test]
    fn labels_are_distinct_and_prefix_free() {
        let labels = [LABEL_KEY, LABEL_NONCE, LABEL_COMMITMENT];
        for (i, a) in labels.iter().enumerate() {
            for (j, b) in labels.iter().enumerate() {
                if i != j {
                    assert!(!a.starts_with(b), "label {i} starts with label {j}");
                }
            }
        }
    }

    #[test]
    fn outputs_are_independent_and_depend_on_every_input() {
        let dek = Dek::from_bytes(&[7u8; 32]).unwrap();
        let other_dek = Dek::from_bytes(&[8u8; 32]).unwrap();
        let salt = [1u8; SALT_LEN];
        let ctx = context("a");
        let schedule = KeySchedule::new(&dek, &salt);
        let commitment = schedule.commitment(&ctx);
        let (key, nonce) = schedule.cipher_key_and_nonce(&ctx);
        assert_ne!(&commitment[..], &key[..]);
        assert_ne!(&commitment[..NONCE_LEN], &nonce[..]);
        assert_ne!(&key[..NONCE_LEN], &nonce[..]);

        // A different DEK, salt or context changes every output.
        let variants = [
            KeySchedule::new(&other_dek, &salt).commitment(&ctx),
            KeySchedule::new(&dek, &[2u8; SALT_LEN]).commitment(&ctx),
            schedule.commitment(&context("b")),
        ];
        for variant in variants {
            assert_ne!(variant, commitment);
        }
        assert!(bool::from(schedule.commitment_matches(&ctx, &commitment)));
        assert!(!bool::from(
            schedule.commitment_matches(&context("b"), &commitment)
        ));
    }

    #[test]
    fn key_schedule_matches_the_independent_python_implementation() {
        // tests/data/envelope_v1_kat.json is written by gen_envelope_kat.py with
        // pyca/cryptography (OpenSSL), from the specification alone.
        let file: serde_json::Value =
            serde_json::from_str(include_str!("../tests/data/envelope_v1_kat.json")).unwrap();
        let vectors = file["vectors"].as_array().unwrap();
        assert_eq!(vectors.len(), 4);
        for v in vectors {
            let text = |name: &str| v[name].as_str().unwrap().to_owned();
            let context = Context::builder()
                .vault_id(text("vault_id"))
                .path(text("path"))
                .version(v["version"].as_u64().unwrap())
                .secret_type(text("secret_type"))
                .custody_mode(text("custody_mode"))
                .build()
                .unwrap();
            assert_eq!(hex(context.canonical_encoding()), text("context_encoding"));
            let dek = Dek::from_bytes(&unhex(&text("dek"))).unwrap();
            let salt: [u8; SALT_LEN] = unhex(&text("salt")).try_into().unwrap();
            let schedule = KeySchedule::new(&dek, &salt);
            let (key, nonce) = schedule.cipher_key_and_nonce(&context);
            assert_eq!(hex(key.as_slice()), text("key"), "{}", text("comment"));
            assert_eq!(hex(&nonce), text("nonce"), "{}", text("comment"));
            assert_eq!(
                hex(&schedule.commitment(&context)),
                text("commitment"),
                "{}",
                text("comment")
            );
        }
    }
}
