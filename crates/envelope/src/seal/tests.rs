//! Tests that need the key schedule and the AEAD layer directly: they build envelopes the
//! public API would never produce, to show that the key commitment is what rejects them.

// Test code: GF(2^128) arithmetic on u128 and fixed-size block slicing, where an overflow or
// out-of-bounds index would be a failing test, not a vulnerability.
#![allow(clippy::arithmetic_side_effects, clippy::indexing_slicing)]

use aes::Aes256;
use aes::cipher::{BlockCipherEncrypt, KeyInit};

use super::*;
use crate::aead::{KEY_LEN, NONCE_LEN, TAG_LEN};
use crate::kdf::COMMITMENT_LEN;

fn context() -> Context {
    Context::builder()
        .vault_id("vault-salamander")
        .path("ops/root-token")
        .version(1)
        .secret_type("token")
        .custody_mode("2of3_multi_hsm")
        .build()
        .unwrap()
}

/// GCM's field GF(2^128), in the specification's bit order: a block read big-endian as a
/// `u128`, whose most significant bit is the coefficient of x^0 (NIST SP 800-38D, 6.3).
mod gf128 {
    const R: u128 = 0xE1 << 120;
    pub(super) const ONE: u128 = 1 << 127;

    pub(super) fn mul(x: u128, y: u128) -> u128 {
        let (mut z, mut v) = (0u128, y);
        for i in 0..128 {
            if (x >> (127 - i)) & 1 == 1 {
                z ^= v;
            }
            v = if v & 1 == 1 { (v >> 1) ^ R } else { v >> 1 };
        }
        z
    }

    pub(super) fn pow(mut base: u128, mut exp: u128) -> u128 {
        let mut acc = ONE;
        while exp != 0 {
            if exp & 1 == 1 {
                acc = mul(acc, base);
            }
            base = mul(base, base);
            exp >>= 1;
        }
        acc
    }

    /// a^(2^128 - 2) = a^-1 for a != 0.
    pub(super) fn inv(a: u128) -> u128 {
        pow(a, u128::MAX - 1)
    }
}

/// E_K(block) with raw AES-256.
fn aes_block(key: &[u8; KEY_LEN], block: [u8; 16]) -> u128 {
    let cipher = Aes256::new(key.into());
    let mut block = aes::Block::from(block);
    cipher.encrypt_block(&mut block);
    u128::from_be_bytes(block.into())
}

/// The GHASH input blocks for (A, C): A and C zero-padded to 16 bytes, then the length block.
fn ghash_blocks(aad: &[u8], ciphertext: &[u8]) -> Vec<u128> {
    let mut blocks = Vec::new();
    for data in [aad, ciphertext] {
        for chunk in data.chunks(16) {
            let mut block = [0u8; 16];
            block[..chunk.len()].copy_from_slice(chunk);
            blocks.push(u128::from_be_bytes(block));
        }
    }
    let bits = |len: usize| u128::from(u64::try_from(len).unwrap() * 8);
    blocks.push((bits(aad.len()) << 64) | bits(ciphertext.len()));
    blocks
}

/// The GCM tag for a 96-bit nonce: GHASH_H(A, C) xor E_K(J0), with H = E_K(0^128) and
/// J0 = nonce || 0^31 || 1.
fn gcm_tag(key: &[u8; KEY_LEN], nonce: &[u8; NONCE_LEN], aad: &[u8], ciphertext: &[u8]) -> u128 {
    let h = aes_block(key, [0; 16]);
    let ghash = ghash_blocks(aad, ciphertext)
        .into_iter()
        .fold(0, |y, x| gf128::mul(y ^ x, h));
    let mut j0 = [0u8; 16];
    j0[..NONCE_LEN].copy_from_slice(nonce);
    j0[15] = 1;
    ghash ^ aes_block(key, j0)
}

#[test]
fn gf128_and_gcm_tag_helpers_agree_with_aes_gcm() {
    // The attack below is only meaningful if this model of GCM is right; check it against the
    // real implementation first, on inputs with partial blocks.
    let a = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210_u128;
    assert_eq!(gf128::mul(a, gf128::ONE), a);
    assert_eq!(gf128::mul(a, gf128::inv(a)), gf128::ONE);
    let key = [9u8; KEY_LEN];
    let nonce = [3u8; NONCE_LEN];
    let aad = b"associated data, 31 bytes long!";
    let mut buffer = b"forty-one bytes of plaintext for the test".to_vec();
    let tag = aead::encrypt_in_place(&key, &nonce, aad, &mut buffer).unwrap();
    assert_eq!(gcm_tag(&key, &nonce, aad, &buffer).to_be_bytes(), tag);
}

/// Builds a ciphertext whose GCM tag is valid under two unrelated (key, nonce) pairs: the
/// multi-key collision behind "invisible salamanders" (Dodis et al., CRYPTO 2018; Len et al.,
/// USENIX Security 2021). One 16-byte block of the ciphertext is solved for so that both tags
/// coincide; the tag is linear in that block, with coefficient H^p for its position p.
fn colliding_ciphertext(
    (key1, nonce1): (&[u8; KEY_LEN], &[u8; NONCE_LEN]),
    (key2, nonce2): (&[u8; KEY_LEN], &[u8; NONCE_LEN]),
    aad: &[u8],
    blocks: usize,
) -> (Vec<u8>, [u8; TAG_LEN]) {
    let free = 0; // The first ciphertext block is the one solved for.
    let mut ciphertext = vec![0x5a; blocks * 16];
    ciphertext[free * 16..free * 16 + 16].fill(0);
    let total = ghash_blocks(aad, &ciphertext).len();
    // Block index (0-based) of the free block among all GHASH blocks, and its power of H.
    let index = aad.len().div_ceil(16) + free;
    let power = u128::try_from(total - index).unwrap();

    let (h1, h2) = (aes_block(key1, [0; 16]), aes_block(key2, [0; 16]));
    let (t1, t2) = (
        gcm_tag(key1, nonce1, aad, &ciphertext),
        gcm_tag(key2, nonce2, aad, &ciphertext),
    );
    let coefficient = gf128::pow(h1, power) ^ gf128::pow(h2, power);
    let x = gf128::mul(t1 ^ t2, gf128::inv(coefficient));
    ciphertext[free * 16..free * 16 + 16].copy_from_slice(&x.to_be_bytes());

    let tag = gcm_tag(key1, nonce1, aad, &ciphertext);
    assert_eq!(tag, gcm_tag(key2, nonce2, aad, &ciphertext));
    (ciphertext, tag.to_be_bytes())
}

#[test]
fn commitment_stops_a_ciphertext_that_gcm_accepts_under_two_deks() {
    let ctx = context();
    // The attacker knows both DEKs here (it chose them, as a malicious share holder choosing
    // its share would); the salt is whatever it likes too.
    let dek1 = Dek::from_bytes(&[0x11; 32]).unwrap();
    let dek2 = Dek::from_bytes(&[0x22; 32]).unwrap();
    let salt = [0x33; SALT_LEN];
    let (s1, s2) = (
        KeySchedule::new(&dek1, &salt),
        KeySchedule::new(&dek2, &salt),
    );
    let (key1, nonce1) = s1.cipher_key_and_nonce(&ctx);
    let (key2, nonce2) = s2.cipher_key_and_nonce(&ctx);

    let header = Header::new(salt, s1.commitment(&ctx), 4 * 16).unwrap();
    let aad = header.associated_data(&ctx);
    assert_ne!(
        aad.len() % 16,
        0,
        "the associated data ends in a partial block"
    );

    let (ciphertext, tag) = colliding_ciphertext((&key1, &nonce1), (&key2, &nonce2), &aad, 4);

    // Plain AES-GCM accepts the ciphertext under both keys, with two different plaintexts.
    let mut p1 = ciphertext.clone();
    let mut p2 = ciphertext.clone();
    aead::decrypt_in_place(&key1, &nonce1, &aad, &mut p1, &tag).unwrap();
    aead::decrypt_in_place(&key2, &nonce2, &aad, &mut p2, &tag).unwrap();
    assert_ne!(p1, p2);

    // The envelope, which carries DEK 1's commitment, opens only under DEK 1.
    let envelope = Envelope {
        header,
        ciphertext,
        tag,
    };
    assert_eq!(open(&dek1, &ctx, &envelope).unwrap().expose_secret(), p1);
    assert_eq!(
        open(&dek2, &ctx, &envelope).unwrap_err(),
        Error::AuthenticationFailed
    );
    assert_eq!(envelope.verify_key(&dek1, &ctx), Ok(()));
    assert_eq!(
        envelope.verify_key(&dek2, &ctx),
        Err(Error::AuthenticationFailed)
    );
    // And it survives the wire format unchanged, so the defence holds for stored envelopes.
    let reparsed = Envelope::from_bytes(&envelope.to_bytes()).unwrap();
    assert_eq!(
        open(&dek2, &ctx, &reparsed).unwrap_err(),
        Error::AuthenticationFailed
    );
}

#[test]
fn open_checks_the_commitment_even_when_the_tag_is_valid() {
    // An envelope whose GCM tag is correct for DEK's derived key but whose commitment field is
    // wrong: only the commitment check can reject it.
    let ctx = context();
    let dek = Dek::from_bytes(&[0x44; 32]).unwrap();
    let salt = [0x55; SALT_LEN];
    let schedule = KeySchedule::new(&dek, &salt);
    let mut commitment = schedule.commitment(&ctx);
    commitment[COMMITMENT_LEN - 1] ^= 1;
    let header = Header::new(salt, commitment, 6).unwrap();
    let (key, nonce) = schedule.cipher_key_and_nonce(&ctx);
    let aad = header.associated_data(&ctx);
    let mut ciphertext = b"secret".to_vec();
    let tag = aead::encrypt_in_place(&key, &nonce, &aad, &mut ciphertext).unwrap();

    // The AEAD layer alone would accept it.
    let mut check = ciphertext.clone();
    aead::decrypt_in_place(&key, &nonce, &aad, &mut check, &tag).unwrap();
    assert_eq!(check, b"secret");

    let envelope = Envelope {
        header,
        ciphertext,
        tag,
    };
    assert_eq!(
        open(&dek, &ctx, &envelope).unwrap_err(),
        Error::AuthenticationFailed
    );
    assert_eq!(
        envelope.verify_key(&dek, &ctx),
        Err(Error::AuthenticationFailed)
    );
}

#[test]
fn seal_is_the_documented_composition() {
    // seal_with_salt = commitment in the header, header || context as AAD, derived key/nonce.
    let ctx = context();
    let dek = Dek::from_bytes(&[0x66; 32]).unwrap();
    let salt = [0x77; SALT_LEN];
    let envelope = seal_with_salt(&dek, &ctx, b"payload", salt).unwrap();
    let schedule = KeySchedule::new(&dek, &salt);
    assert_eq!(envelope.header.salt, salt);
    assert_eq!(envelope.header.commitment, schedule.commitment(&ctx));
    let (key, nonce) = schedule.cipher_key_and_nonce(&ctx);
    let mut expected = b"payload".to_vec();
    let aad = envelope.header.associated_data(&ctx);
    let tag = aead::encrypt_in_place(&key, &nonce, &aad, &mut expected).unwrap();
    assert_eq!(envelope.ciphertext, expected);
    assert_eq!(envelope.tag, tag);
}

#[test]
fn the_length_check_admits_exactly_the_limit() {
    // The seal functions' only size gate; a 16 MiB round trip is too slow for an unoptimised
    // test build, so the boundary is checked here without encrypting.
    assert_eq!(check_len(&[]), Ok(()));
    assert_eq!(check_len(&vec![0; MAX_PLAINTEXT_LEN]), Ok(()));
    assert_eq!(
        check_len(&vec![0; MAX_PLAINTEXT_LEN + 1]),
        Err(Error::PlaintextTooLarge {
            len: MAX_PLAINTEXT_LEN + 1,
            max: MAX_PLAINTEXT_LEN
        })
    );
}
