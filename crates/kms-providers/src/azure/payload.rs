//! The hybrid wrapped form of an Azure share, apart from any network call.
//!
//! Key Vault `wrapKey` takes no associated data, RSA-OAEP-256 takes at most 190 bytes under a
//! 2048-bit key and A256KW is deterministic. So, as JWE does with `RSA-OAEP-256` + `A256GCM`,
//! Key Vault never sees the share: it wraps a fresh 256-bit content key (CEK) followed by a
//! SHA-256 digest of the context, and the share is sealed locally under the CEK with
//! AES-256-GCM whose associated data is the wrapped form's header and the context.
//!
//! ```text
//! Key Vault plaintext  = CEK (32) ‖ SHA-256(tag ‖ algorithm ‖ key id ‖ context) (32)
//! blob                 = u16 BE length ‖ Key Vault ciphertext ‖ GCM ciphertext ‖ GCM tag
//! ```

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, KeyInit};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::context::{WrapContext, put_lv};
use crate::wrapped::{
    AZURE_KW_CIPHERTEXT, AZURE_RSA_MAX_CIPHERTEXT, AZURE_RSA_MIN_CIPHERTEXT, Algorithm,
    GCM_NONCE_LEN, GCM_TAG_LEN, KeyId, KeyVersion, ProviderKind,
};

/// Length of the per-share content key.
pub(super) const CEK_LEN: usize = 32;
/// Length of the context digest that follows the CEK in the Key Vault plaintext.
const DIGEST_LEN: usize = 32;
/// What Key Vault wraps: the CEK and the context digest.
pub(super) const KEK_PLAINTEXT_LEN: usize = CEK_LEN + DIGEST_LEN;

/// Domain separation of the context digest from every other SHA-256 use.
const DIGEST_TAG: &[u8] = b"mpc-vault/kms-providers/azure/context-digest/v1";
/// Domain separation of the GCM associated data from the local provider's.
const AAD_TAG: &[u8] = b"mpc-vault/kms-providers/azure/share-aad/v1";

/// Why a blob or an unwrapped Key Vault plaintext was refused. Deliberately uninformative
/// beyond its variant: every case is an authentication failure to the caller.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Refused {
    /// The blob's framing is wrong (length prefix, Key Vault ciphertext length, no share).
    Framing,
    /// The Key Vault plaintext is not a CEK and a digest of this context.
    Context,
    /// The GCM tag did not verify.
    Tag,
}

/// The Key Vault ciphertext lengths an algorithm can produce.
pub(super) fn kek_ciphertext_ok(algorithm: Algorithm, len: usize) -> bool {
    match algorithm {
        Algorithm::RsaOaepSha256 => {
            (AZURE_RSA_MIN_CIPHERTEXT..=AZURE_RSA_MAX_CIPHERTEXT).contains(&len)
        }
        Algorithm::A256Kw => len == AZURE_KW_CIPHERTEXT,
        _ => false,
    }
}

/// What a wrapped share is bound to besides the context's bytes.
#[derive(Clone, Copy, Debug)]
pub(super) struct Binding<'a> {
    /// The wrapped form's algorithm.
    pub(super) algorithm: Algorithm,
    /// The Key Vault key name.
    pub(super) key_id: &'a KeyId,
    /// The Key Vault key version that wrapped the CEK.
    pub(super) key_version: &'a KeyVersion,
    /// The wrap context.
    pub(super) context: &'a WrapContext,
}

/// SHA-256 over the tag, the algorithm, the key name and the canonical context, each
/// length-prefixed so no two inputs share an encoding.
fn context_digest(algorithm: Algorithm, key_id: &KeyId, context: &WrapContext) -> [u8; DIGEST_LEN] {
    let mut h = Sha256::new();
    let mut head = Vec::with_capacity(4 + DIGEST_TAG.len() + 1 + 4 + key_id.as_str().len());
    put_lv(&mut head, DIGEST_TAG);
    head.push(algorithm.code());
    put_lv(&mut head, key_id.as_str().as_bytes());
    h.update(&head);
    h.update(context.canonical_bytes());
    h.finalize().into()
}

/// The GCM associated data: tag, kind, algorithm, key name, key version, canonical context.
/// The version is bound here (not in the digest) because a wrap to the latest version learns
/// it only from Key Vault's answer.
fn associated_data(b: Binding<'_>) -> Vec<u8> {
    let Binding {
        algorithm,
        key_id,
        key_version,
        context,
    } = b;
    let ctx = context.canonical_bytes();
    let mut aad = Vec::with_capacity(
        4 + AAD_TAG.len()
            + 2
            + 4
            + key_id.as_str().len()
            + 4
            + key_version.as_str().len()
            + ctx.len(),
    );
    put_lv(&mut aad, AAD_TAG);
    aad.push(ProviderKind::AzureKeyVault.code());
    aad.push(algorithm.code());
    put_lv(&mut aad, key_id.as_str().as_bytes());
    put_lv(&mut aad, key_version.as_str().as_bytes());
    aad.extend_from_slice(&ctx);
    aad
}

/// A fresh content key and the Key Vault plaintext for it (CEK ‖ context digest).
pub(super) struct Sealer {
    cek: Zeroizing<[u8; CEK_LEN]>,
    kek_plaintext: Zeroizing<Vec<u8>>,
}

impl Sealer {
    /// Draws a CEK from the OS RNG.
    pub(super) fn new(
        algorithm: Algorithm,
        key_id: &KeyId,
        context: &WrapContext,
    ) -> Result<Self, getrandom::Error> {
        let mut cek = Zeroizing::new([0u8; CEK_LEN]);
        getrandom::fill(cek.as_mut_slice())?;
        let mut kek_plaintext = Zeroizing::new(Vec::with_capacity(KEK_PLAINTEXT_LEN));
        kek_plaintext.extend_from_slice(cek.as_slice());
        kek_plaintext.extend_from_slice(&context_digest(algorithm, key_id, context));
        Ok(Self { cek, kek_plaintext })
    }

    /// What Key Vault must wrap.
    pub(super) fn kek_plaintext(&self) -> &[u8] {
        &self.kek_plaintext
    }

    /// Seals `share` under the CEK and frames the blob around Key Vault's ciphertext.
    /// Returns `None` only if the ciphertext is longer than a `u16` or GCM refuses the input,
    /// neither of which a caller that checked the share length can cause.
    pub(super) fn seal(
        &self,
        binding: Binding<'_>,
        nonce: &[u8; GCM_NONCE_LEN],
        kek_ciphertext: &[u8],
        share: &[u8],
    ) -> Option<Vec<u8>> {
        let prefix = u16::try_from(kek_ciphertext.len()).ok()?;
        let cipher = Aes256Gcm::new(self.cek.as_slice().try_into().ok()?);
        let aad = associated_data(binding);
        // Room for the tag up front, so encryption never reallocates and leaves a copy of the
        // share in freed memory; the buffer is wiped if anything fails.
        let mut buf = Zeroizing::new(Vec::with_capacity(share.len() + GCM_TAG_LEN));
        buf.extend_from_slice(share);
        cipher
            .encrypt_in_place(&(*nonce).into(), &aad, &mut *buf)
            .ok()?;
        let mut blob = Vec::with_capacity(2 + kek_ciphertext.len() + buf.len());
        blob.extend_from_slice(&prefix.to_be_bytes());
        blob.extend_from_slice(kek_ciphertext);
        // Ciphertext and tag are not secret.
        blob.extend_from_slice(&buf);
        Some(blob)
    }
}

/// A blob split into Key Vault's ciphertext and the sealed share.
pub(super) struct Framed<'a> {
    /// What Key Vault must unwrap.
    pub(super) kek_ciphertext: &'a [u8],
    sealed: &'a [u8],
}

/// Splits a blob; lengths are public, so this may branch on them.
pub(super) fn split(algorithm: Algorithm, blob: &[u8]) -> Result<Framed<'_>, Refused> {
    let (prefix, rest) = blob.split_first_chunk::<2>().ok_or(Refused::Framing)?;
    let len = usize::from(u16::from_be_bytes(*prefix));
    if !kek_ciphertext_ok(algorithm, len) {
        return Err(Refused::Framing);
    }
    let (kek_ciphertext, sealed) = rest.split_at_checked(len).ok_or(Refused::Framing)?;
    if sealed.len() <= GCM_TAG_LEN {
        return Err(Refused::Framing);
    }
    Ok(Framed {
        kek_ciphertext,
        sealed,
    })
}

/// Checks the Key Vault plaintext against this context (in constant time) and opens the share.
pub(super) fn open(
    binding: Binding<'_>,
    nonce: &[u8],
    framed: &Framed<'_>,
    kek_plaintext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, Refused> {
    let (cek, digest) = kek_plaintext
        .split_at_checked(CEK_LEN)
        .filter(|(_, d)| d.len() == DIGEST_LEN)
        .ok_or(Refused::Context)?;
    let expected = context_digest(binding.algorithm, binding.key_id, binding.context);
    if !bool::from(digest.ct_eq(&expected)) {
        return Err(Refused::Context);
    }
    let nonce: [u8; GCM_NONCE_LEN] = nonce.try_into().map_err(|_| Refused::Framing)?;
    let cipher = Aes256Gcm::new(cek.try_into().map_err(|_| Refused::Context)?);
    let aad = associated_data(binding);
    let mut buf = Zeroizing::new(framed.sealed.to_vec());
    // aes-gcm checks the tag in constant time before decrypting: on failure the buffer never
    // holds plaintext.
    cipher
        .decrypt_in_place(&nonce.into(), &aad, &mut *buf)
        .map_err(|_| Refused::Tag)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(version: u64) -> WrapContext {
        WrapContext::new("vault", "app/db", version, 1, "shamir-2-of-3").unwrap()
    }

    fn seal(alg: Algorithm, kek_ct: &[u8], share: &[u8]) -> (Sealer, Vec<u8>) {
        let id = KeyId::new("kek").unwrap();
        let v = KeyVersion::new("0123456789abcdef0123456789abcdef").unwrap();
        let s = Sealer::new(alg, &id, &ctx(1)).unwrap();
        let c = ctx(1);
        let b = Binding {
            algorithm: alg,
            key_id: &id,
            key_version: &v,
            context: &c,
        };
        let blob = s.seal(b, &[7; 12], kek_ct, share).unwrap();
        (s, blob)
    }

    fn bind<'a>(
        algorithm: Algorithm,
        key_id: &'a KeyId,
        key_version: &'a KeyVersion,
        context: &'a WrapContext,
    ) -> Binding<'a> {
        Binding {
            algorithm,
            key_id,
            key_version,
            context,
        }
    }

    #[test]
    fn round_trip_and_bindings() {
        let id = KeyId::new("kek").unwrap();
        let v = KeyVersion::new("0123456789abcdef0123456789abcdef").unwrap();
        let kek_ct = [9u8; AZURE_KW_CIPHERTEXT];
        let (s, blob) = seal(Algorithm::A256Kw, &kek_ct, b"share bytes");
        assert_eq!(s.kek_plaintext().len(), KEK_PLAINTEXT_LEN);
        let framed = split(Algorithm::A256Kw, &blob).unwrap();
        assert_eq!(framed.kek_ciphertext, kek_ct);
        let pt = s.kek_plaintext().to_vec();
        let back = open(
            bind(Algorithm::A256Kw, &id, &v, &ctx(1)),
            &[7; 12],
            &framed,
            &pt,
        )
        .unwrap();
        assert_eq!(back.as_slice(), b"share bytes");

        // Another context fails on the digest, before GCM.
        let e = open(
            bind(Algorithm::A256Kw, &id, &v, &ctx(2)),
            &[7; 12],
            &framed,
            &pt,
        );
        assert_eq!(e.unwrap_err(), Refused::Context);
        // Another key name or algorithm changes the digest too.
        let other = KeyId::new("kek2").unwrap();
        let e = open(
            bind(Algorithm::A256Kw, &other, &v, &ctx(1)),
            &[7; 12],
            &framed,
            &pt,
        );
        assert_eq!(e.unwrap_err(), Refused::Context);
        let e = open(
            bind(Algorithm::RsaOaepSha256, &id, &v, &ctx(1)),
            &[7; 12],
            &framed,
            &pt,
        );
        assert_eq!(e.unwrap_err(), Refused::Context);
        // Another version or nonce fails the tag.
        let v2 = KeyVersion::new("ffff").unwrap();
        let e = open(
            bind(Algorithm::A256Kw, &id, &v2, &ctx(1)),
            &[7; 12],
            &framed,
            &pt,
        );
        assert_eq!(e.unwrap_err(), Refused::Tag);
        let e = open(
            bind(Algorithm::A256Kw, &id, &v, &ctx(1)),
            &[8; 12],
            &framed,
            &pt,
        );
        assert_eq!(e.unwrap_err(), Refused::Tag);
        // A short Key Vault plaintext is refused, not sliced past its end.
        let e = open(
            bind(Algorithm::A256Kw, &id, &v, &ctx(1)),
            &[7; 12],
            &framed,
            &pt[..40],
        );
        assert_eq!(e.unwrap_err(), Refused::Context);
    }

    #[test]
    fn framing_is_checked() {
        let (_, blob) = seal(Algorithm::RsaOaepSha256, &[1u8; 256], b"x");
        assert!(split(Algorithm::RsaOaepSha256, &blob).is_ok());
        // The same blob is not an A256KW blob.
        assert!(split(Algorithm::A256Kw, &blob).is_err());
        for len in 0..blob.len() {
            assert!(
                split(Algorithm::RsaOaepSha256, &blob[..len]).is_err(),
                "{len}"
            );
        }
        let mut bad = blob.clone();
        bad[1] ^= 1;
        assert_eq!(
            split(Algorithm::RsaOaepSha256, &bad).err(),
            Some(Refused::Framing)
        );
        assert!(!kek_ciphertext_ok(Algorithm::RsaOaepSha256, 255));
        assert!(kek_ciphertext_ok(Algorithm::RsaOaepSha256, 384));
        assert!(!kek_ciphertext_ok(Algorithm::RsaOaepSha256, 513));
        assert!(!kek_ciphertext_ok(Algorithm::Aes256Gcm, 72));
    }

    #[test]
    fn fresh_cek_each_time() {
        let (a, _) = seal(Algorithm::A256Kw, &[0; 72], b"s");
        let (b, _) = seal(Algorithm::A256Kw, &[0; 72], b"s");
        assert_ne!(a.kek_plaintext()[..CEK_LEN], b.kek_plaintext()[..CEK_LEN]);
        // Same context, same digest.
        assert_eq!(a.kek_plaintext()[CEK_LEN..], b.kek_plaintext()[CEK_LEN..]);
    }
}
