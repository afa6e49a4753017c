//! Every modification of a sealed envelope is refused: bit flips, truncation, extension and
//! splicing. Framing damage is a parse error; anything that still parses fails to open.

use envelope::{Envelope, Error, open, seal};

use crate::util::{context, dek};

/// Byte ranges of the v1 layout for a plaintext of `n` bytes.
const MAGIC: std::ops::Range<usize> = 0..4;
const VERSION: usize = 4;
const ALGORITHM: usize = 5;
const SALT: std::ops::Range<usize> = 6..38;
const COMMITMENT: std::ops::Range<usize> = 38..70;
const LENGTH: std::ops::Range<usize> = 70..74;

#[test]
fn every_single_bit_flip_is_refused() {
    let (dek, context) = (dek(), context());
    for len in [0usize, 1, 16, 33] {
        let plaintext = vec![0xC3; len];
        let sealed = seal(&dek, &context, &plaintext).unwrap().to_bytes();
        let mut opened_checks = 0;
        for byte in 0..sealed.len() {
            for bit in 0..8 {
                let mut bytes = sealed.clone();
                bytes[byte] ^= 1 << bit;
                let parsed = Envelope::from_bytes(&bytes);
                if MAGIC.contains(&byte) {
                    assert_eq!(parsed, Err(Error::BadMagic), "byte {byte} bit {bit}");
                } else if byte == VERSION {
                    let version = 1 ^ (1 << bit);
                    assert_eq!(parsed, Err(Error::UnsupportedVersion { version }));
                } else if byte == ALGORITHM {
                    let id = 1 ^ (1 << bit);
                    assert_eq!(parsed, Err(Error::UnsupportedAlgorithm { id }));
                } else if LENGTH.contains(&byte) {
                    // A different declared length never matches the bytes present.
                    let err = parsed.unwrap_err();
                    assert!(
                        matches!(
                            err,
                            Error::Truncated
                                | Error::TrailingBytes { .. }
                                | Error::PlaintextTooLarge { .. }
                        ),
                        "byte {byte} bit {bit}: {err:?}"
                    );
                } else {
                    // Salt, commitment, ciphertext or tag: parses, and must not open.
                    let envelope = parsed.unwrap();
                    assert_eq!(
                        open(&dek, &context, &envelope).unwrap_err(),
                        Error::AuthenticationFailed,
                        "len {len}: byte {byte} bit {bit} was accepted"
                    );
                    // The commitment covers the DEK, the salt and the context, not the
                    // ciphertext: `verify_key` catches the first two regions only, and `open`
                    // catches the rest with the GCM tag.
                    let key_check = envelope.verify_key(&dek, &context);
                    if SALT.contains(&byte) || COMMITMENT.contains(&byte) {
                        assert_eq!(key_check, Err(Error::AuthenticationFailed));
                    } else {
                        assert_eq!(key_check, Ok(()));
                    }
                    opened_checks += 1;
                }
            }
        }
        // Every bit of the salt, commitment, ciphertext and tag went through `open`.
        assert_eq!(opened_checks, (32 + 32 + len + 16) * 8);
    }
}

#[test]
fn truncation_at_every_length_is_a_clean_error() {
    let (dek, context) = (dek(), context());
    for len in [0usize, 1, 40] {
        let sealed = seal(&dek, &context, &vec![7; len]).unwrap().to_bytes();
        for cut in 0..sealed.len() {
            assert_eq!(
                Envelope::from_bytes(&sealed[..cut]),
                Err(Error::Truncated),
                "len {len}: cut at {cut}"
            );
        }
        assert!(Envelope::from_bytes(&sealed).is_ok());
    }
}

#[test]
fn trailing_bytes_are_refused() {
    let sealed = seal(&dek(), &context(), b"secret").unwrap().to_bytes();
    for extra in 1..=3 {
        let mut bytes = sealed.clone();
        bytes.extend(std::iter::repeat_n(0, extra));
        assert_eq!(
            Envelope::from_bytes(&bytes),
            Err(Error::TrailingBytes { count: extra })
        );
    }
    // Two envelopes back to back are not one envelope.
    let doubled = [sealed.as_slice(), sealed.as_slice()].concat();
    assert_eq!(
        Envelope::from_bytes(&doubled),
        Err(Error::TrailingBytes {
            count: sealed.len()
        })
    );
}

#[test]
fn splicing_two_envelopes_under_the_same_key_is_refused() {
    // Same DEK, context and length: every field is individually well formed, so only the
    // cryptography can tell the halves apart.
    let (dek, context) = (dek(), context());
    let a = seal(&dek, &context, b"first secret").unwrap().to_bytes();
    let b = seal(&dek, &context, b"other secret").unwrap().to_bytes();
    let split_points = [SALT.end, COMMITMENT.end, LENGTH.end, a.len() - 16];
    for split in split_points {
        let spliced = [&a[..split], &b[split..]].concat();
        let envelope = Envelope::from_bytes(&spliced).unwrap();
        assert_eq!(
            open(&dek, &context, &envelope).unwrap_err(),
            Error::AuthenticationFailed,
            "spliced at {split}"
        );
    }
}
