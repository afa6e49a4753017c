//! `combine(split(s)) == s` on every path, for random secrets, lengths, share counts and share
//! orders.

use chacha20::ChaCha20Rng;
use proptest::prelude::*;
use rand_core::SeedableRng;
use xor_split::{
    MAX_SHARES, MIN_SHARES, XorShare, combine, combine_into, split, split_into,
    split_into_with_rng, split_with_rng,
};

fn share_count() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(MIN_SHARES),
        Just(3),
        Just(MAX_SHARES),
        MIN_SHARES..=MAX_SHARES
    ]
}

/// A share count and a secret from 1 byte (the smallest allowed) up to 3000 bytes, which
/// covers the vectorized body and the scalar tail of the XOR loops at every length modulo the
/// vector width. The total share bytes are capped at 64 KiB so that a few hundred cases stay
/// fast in a debug build; `os_split_of_a_large_secret_round_trips` covers large secrets.
fn count_and_secret() -> impl Strategy<Value = (usize, Vec<u8>)> {
    share_count().prop_flat_map(|n| {
        let max_len = (65_536 / n).min(3000);
        (Just(n), prop::collection::vec(any::<u8>(), 1..=max_len))
    })
}

/// Combines with both functions, checks they agree, and returns the secret.
fn combine_both(shares: &[XorShare]) -> Vec<u8> {
    let owned = combine(shares).unwrap();
    let views: Vec<&[u8]> = shares.iter().map(XorShare::expose_secret).collect();
    let mut out = vec![0u8; owned.len()];
    combine_into(&views, &mut out).unwrap();
    assert_eq!(&owned[..], &out[..], "combine and combine_into disagree");
    out
}

fn flat_shares(len: usize, n: usize) -> Vec<u8> {
    vec![0u8; len * n]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn split_os_round_trips((n, secret) in count_and_secret()) {
        let shares = split(&secret, n).unwrap();
        prop_assert_eq!(shares.len(), n);
        prop_assert!(shares.iter().all(|s| s.len() == secret.len()));
        prop_assert_eq!(combine_both(&shares), secret);
    }

    #[test]
    fn split_with_rng_round_trips((n, secret) in count_and_secret(), seed in any::<[u8; 32]>()) {
        let mut rng = ChaCha20Rng::from_seed(seed);
        let shares = split_with_rng(&secret, n, &mut rng).unwrap();
        prop_assert_eq!(shares.len(), n);
        prop_assert_eq!(combine_both(&shares), secret);
    }

    #[test]
    fn split_into_round_trips((n, secret) in count_and_secret()) {
        let mut flat = flat_shares(secret.len(), n);
        let mut bufs: Vec<&mut [u8]> = flat.chunks_mut(secret.len()).collect();
        split_into(&secret, &mut bufs).unwrap();
        let views: Vec<&[u8]> = flat.chunks(secret.len()).collect();
        let mut out = vec![0u8; secret.len()];
        combine_into(&views, &mut out).unwrap();
        prop_assert_eq!(out, secret);
    }

    #[test]
    fn split_into_with_rng_round_trips((n, secret) in count_and_secret(), seed in any::<[u8; 32]>()) {
        let mut rng = ChaCha20Rng::from_seed(seed);
        let mut flat = flat_shares(secret.len(), n);
        let mut bufs: Vec<&mut [u8]> = flat.chunks_mut(secret.len()).collect();
        split_into_with_rng(&secret, &mut bufs, &mut rng).unwrap();
        // The same seed through the allocating path gives the same shares: both forms are one
        // algorithm.
        let mut rng = ChaCha20Rng::from_seed(seed);
        let owned = split_with_rng(&secret, n, &mut rng).unwrap();
        for (buf, share) in flat.chunks(secret.len()).zip(&owned) {
            prop_assert_eq!(buf, share.expose_secret());
        }
        prop_assert_eq!(combine_both(&owned), secret);
    }

    /// Shares have no index: any permutation combines to the same secret.
    #[test]
    fn share_order_does_not_matter(
        secret in prop::collection::vec(any::<u8>(), 1..=3000),
        (n, order) in (MIN_SHARES..=16usize)
            .prop_flat_map(|n| (Just(n), Just((0..n).collect::<Vec<_>>()).prop_shuffle())),
    ) {
        let shares = split(&secret, n).unwrap();
        let views: Vec<&[u8]> = order.iter().map(|&i| shares[i].expose_secret()).collect();
        let mut out = vec![0u8; secret.len()];
        combine_into(&views, &mut out).unwrap();
        prop_assert_eq!(out, secret);
    }

    /// The wire form round-trips: shares sent away with `to_bytes` and read back with
    /// `from_bytes` still combine.
    #[test]
    fn wire_form_round_trips(secret in prop::collection::vec(any::<u8>(), 1..=3000), n in MIN_SHARES..=8usize) {
        let shares = split(&secret, n).unwrap();
        let returned: Vec<XorShare> = shares
            .iter()
            .map(|s| XorShare::from_bytes(&s.to_bytes()).unwrap())
            .collect();
        for (a, b) in shares.iter().zip(&returned) {
            prop_assert_eq!(a.expose_secret(), b.expose_secret());
        }
        prop_assert_eq!(combine_both(&returned), secret);
    }
}

/// Two splits of the same secret must not produce the same shares: the randomness is fresh
/// each time. (A repeat of 32 random bytes has probability 2^-256.)
#[test]
fn each_split_draws_fresh_randomness() {
    let secret = [0x42u8; 32];
    let a = split(&secret, 2).unwrap();
    let b = split(&secret, 2).unwrap();
    assert_ne!(a[0].expose_secret(), b[0].expose_secret());
    assert_ne!(a[1].expose_secret(), b[1].expose_secret());
    // No share of a split is the secret itself.
    for share in a.iter().chain(&b) {
        assert_ne!(share.expose_secret(), &secret);
    }
}

/// Large secrets take more than one 64 KiB request to the OS generator; every part of every
/// share must be random, including the tail of the last request.
#[test]
fn os_split_of_a_large_secret_round_trips() {
    let secret: Vec<u8> = (0..(1usize << 20) + 12345)
        .map(|i| u8::try_from(i % 251).unwrap())
        .collect();
    for n in [2, 3] {
        let shares = split(&secret, n).unwrap();
        assert_eq!(combine_both(&shares), secret);
        for share in &shares {
            for (block, plain) in share.expose_secret().chunks(4096).zip(secret.chunks(4096)) {
                assert_ne!(block, plain, "a share block equals the secret");
                assert!(block.iter().any(|&b| b != 0));
            }
        }
    }
}
