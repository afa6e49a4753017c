//! Only the right DEK opens an envelope, and a wrong one is caught by the key commitment.

use envelope::rand_core::SeedableRng;
use envelope::{Dek, Error, open, seal};

use crate::util::{context, dek};

#[test]
fn a_wrong_dek_is_refused_by_open_and_by_verify_key() {
    let context = context();
    let envelope = seal(&dek(), &context, b"secret").unwrap();
    let wrong = Dek::generate().unwrap();
    assert_eq!(
        open(&wrong, &context, &envelope).unwrap_err(),
        Error::AuthenticationFailed
    );
    assert_eq!(
        envelope.verify_key(&wrong, &context),
        Err(Error::AuthenticationFailed)
    );
    assert_eq!(envelope.verify_key(&dek(), &context), Ok(()));
}

#[test]
fn every_dek_one_bit_away_is_caught_by_the_commitment() {
    // A share corrupted in one bit rebuilds a DEK one bit away from the right one (XOR
    // splitting passes the flip straight through). Each of the 256 such keys must fail the
    // cheap check a custody layer runs before opening, and must fail to open.
    let context = context();
    let right = [0xA5u8; Dek::LEN];
    let envelope = seal(&Dek::from_bytes(&right).unwrap(), &context, b"secret").unwrap();
    for bit in 0..Dek::LEN * 8 {
        let mut bytes = right;
        bytes[bit / 8] ^= 1 << (bit % 8);
        let candidate = Dek::from_bytes(&bytes).unwrap();
        assert_eq!(
            envelope.verify_key(&candidate, &context),
            Err(Error::AuthenticationFailed),
            "bit {bit}"
        );
        assert_eq!(
            open(&candidate, &context, &envelope).unwrap_err(),
            Error::AuthenticationFailed,
            "bit {bit}"
        );
    }
}

#[test]
fn verify_key_picks_the_one_right_candidate_among_many() {
    // What a custody layer does when it cannot tell which share is bad: try every candidate
    // DEK and keep the one that verifies.
    let context = context();
    let mut rng = chacha20::ChaCha20Rng::from_seed([3; 32]);
    let candidates: Vec<Dek> = (0..32).map(|_| Dek::generate_with_rng(&mut rng)).collect();
    let right = 19;
    let envelope = seal(&candidates[right], &context, b"secret").unwrap();
    let verified: Vec<usize> = candidates
        .iter()
        .enumerate()
        .filter(|(_, dek)| envelope.verify_key(dek, &context).is_ok())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(verified, [right]);
}

#[test]
fn from_bytes_takes_exactly_32_bytes() {
    for len in [0usize, 1, 16, 31, 33, 64] {
        assert_eq!(
            Dek::from_bytes(&vec![1; len]).unwrap_err(),
            Error::InvalidDekLength { len }
        );
    }
    let dek = Dek::from_bytes(&[9; 32]).unwrap();
    assert_eq!(dek.expose_secret(), &[9; 32]);
}

#[test]
fn generated_deks_differ_and_seeded_ones_repeat() {
    let a = Dek::generate().unwrap();
    let b = Dek::generate().unwrap();
    assert_ne!(a.expose_secret(), b.expose_secret());
    assert_ne!(a.expose_secret(), &[0; 32], "the key was never filled");

    let seeded = |seed| Dek::generate_with_rng(&mut chacha20::ChaCha20Rng::from_seed([seed; 32]));
    assert_eq!(seeded(1).expose_secret(), seeded(1).expose_secret());
    assert_ne!(seeded(1).expose_secret(), seeded(2).expose_secret());
}
