//! Sealing then opening gives the plaintext back, for any plaintext and context.

use envelope::rand_core::SeedableRng;
use envelope::{Context, Dek, Envelope, MAX_PLAINTEXT_LEN, open, seal, seal_with_rng};
use proptest::prelude::*;

use crate::util::{ReplayRng, context, dek};

/// Seals, serialises, parses and opens, checking everything observable on the way.
fn round_trip(dek: &Dek, context: &Context, plaintext: &[u8]) {
    let envelope = seal(dek, context, plaintext).unwrap();
    assert_eq!(envelope.plaintext_len(), plaintext.len());
    let bytes = envelope.to_bytes();
    assert_eq!(bytes.len(), Envelope::OVERHEAD + plaintext.len());
    assert_eq!(envelope.encoded_len(), bytes.len());
    let parsed = Envelope::from_bytes(&bytes).unwrap();
    assert_eq!(parsed, envelope);
    assert_eq!(parsed.verify_key(dek, context), Ok(()));
    let opened = open(dek, context, &parsed).unwrap();
    assert_eq!(opened.expose_secret(), plaintext);
    assert_eq!(opened.len(), plaintext.len());
    assert_eq!(opened.is_empty(), plaintext.is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_plaintext_under_any_context_round_trips(
        plaintext in proptest::collection::vec(any::<u8>(), 0..=4096),
        vault_id in "[a-z0-9-]{1,40}",
        path in "\\PC{1,80}",
        version in any::<u64>(),
        secret_type in "[a-z_]{1,20}",
        custody_mode in "[a-z0-9_]{1,24}",
        seed in any::<[u8; 32]>(),
    ) {
        let context = Context::builder()
            .vault_id(vault_id)
            .path(path)
            .version(version)
            .secret_type(secret_type)
            .custody_mode(custody_mode)
            .build()
            .unwrap();
        let dek = Dek::generate_with_rng(&mut chacha20::ChaCha20Rng::from_seed(seed));
        round_trip(&dek, &context, &plaintext);
    }
}

#[test]
fn block_boundary_sizes_round_trip() {
    let (dek, context) = (dek(), context());
    for len in [
        0, 1, 15, 16, 17, 31, 32, 33, 255, 256, 257, 4095, 4096, 4097, 65_536,
    ] {
        let plaintext: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        round_trip(&dek, &context, &plaintext);
    }
}

#[test]
fn the_plaintext_limit_is_inclusive_and_enforced_on_both_sides() {
    // Sealing 16 MiB in an unoptimised test build takes tens of seconds, so the inclusive
    // boundary on the sealing side is a unit test of the length check (src/seal/tests.rs);
    // here the parser accepts an envelope of exactly the limit and both seal functions refuse
    // one byte more.
    let (dek, context) = (dek(), context());
    let mut at_limit = b"MPVE\x01\x01".to_vec();
    at_limit.extend_from_slice(&[0x11; 64]);
    at_limit.extend_from_slice(&u32::try_from(MAX_PLAINTEXT_LEN).unwrap().to_be_bytes());
    at_limit.resize(Envelope::OVERHEAD + MAX_PLAINTEXT_LEN, 0x5a);
    let parsed = Envelope::from_bytes(&at_limit).unwrap();
    assert_eq!(parsed.plaintext_len(), MAX_PLAINTEXT_LEN);
    assert_eq!(parsed.to_bytes(), at_limit);
    // Never sealed, so it cannot open; the commitment check refuses it before any GCM work.
    assert_eq!(
        open(&dek, &context, &parsed).unwrap_err(),
        envelope::Error::AuthenticationFailed
    );

    let too_big = vec![0x5a; MAX_PLAINTEXT_LEN + 1];
    let expected = envelope::Error::PlaintextTooLarge {
        len: MAX_PLAINTEXT_LEN + 1,
        max: MAX_PLAINTEXT_LEN,
    };
    assert_eq!(seal(&dek, &context, &too_big).unwrap_err(), expected);
    let mut rng = ReplayRng::new(&[0; 32]);
    assert_eq!(
        seal_with_rng(&dek, &context, &too_big, &mut rng).unwrap_err(),
        expected
    );
    assert_eq!(
        rng.remaining(),
        32,
        "no randomness is drawn for a refused plaintext"
    );
}

#[test]
fn every_seal_draws_a_fresh_salt() {
    // Same DEK, context and plaintext: the envelopes must still differ completely after the
    // algorithm id (salt, so commitment, ciphertext and tag), and both must open.
    let (dek, context) = (dek(), context());
    let a = seal(&dek, &context, b"same plaintext").unwrap().to_bytes();
    let b = seal(&dek, &context, b"same plaintext").unwrap().to_bytes();
    assert_eq!(a[..6], b[..6]);
    assert_ne!(a[6..38], b[6..38], "salt reused");
    assert_ne!(a[38..70], b[38..70], "commitment reused");
    assert_ne!(a[74..], b[74..], "ciphertext and tag reused");
    for bytes in [a, b] {
        let envelope = Envelope::from_bytes(&bytes).unwrap();
        assert_eq!(
            open(&dek, &context, &envelope).unwrap().expose_secret(),
            b"same plaintext"
        );
    }
}

#[test]
fn seal_with_rng_uses_exactly_one_32_byte_salt_from_the_generator() {
    let (dek, context) = (dek(), context());
    let mut rng = ReplayRng::new(&[0x11; 32]);
    let a = seal_with_rng(&dek, &context, b"x", &mut rng).unwrap();
    assert_eq!(rng.remaining(), 0);
    assert_eq!(a.to_bytes()[6..38], [0x11; 32]);

    // The same generator state gives the same envelope; another gives another.
    let seeded = |seed| chacha20::ChaCha20Rng::from_seed([seed; 32]);
    let one = seal_with_rng(&dek, &context, b"x", &mut seeded(1)).unwrap();
    let again = seal_with_rng(&dek, &context, b"x", &mut seeded(1)).unwrap();
    let other = seal_with_rng(&dek, &context, b"x", &mut seeded(2)).unwrap();
    assert_eq!(one, again);
    assert_ne!(one, other);
}
