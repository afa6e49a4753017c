//! Any `n - 1` shares are uniformly distributed whatever the secret is.
//!
//! Two complementary checks. The exhaustive ones feed the split every possible random tape
//! for a 1-byte secret and require every tuple of `n - 1` share bytes to appear exactly once:
//! each such tuple is then a bijection of the tape, so with a uniform generator it is uniform,
//! for every secret tested (perfect secrecy of the implementation, not only of the scheme).
//! The statistical ones run the real operating-system generator and require the share bytes
//! to pass a chi-squared test against uniform.

use xor_split::{split, split_into_with_rng, split_with_rng};

use crate::common::TapeRng;

/// Splits the 1-byte `secret` into `N` shares with `tape` as the only randomness, checking
/// that the split consumed the whole tape.
fn split_byte<const N: usize>(secret: u8, tape: &[u8]) -> [u8; N] {
    let mut shares = [[0u8; 1]; N];
    let mut bufs: Vec<&mut [u8]> = shares.iter_mut().map(|s| &mut s[..]).collect();
    let mut rng = TapeRng::new(tape);
    split_into_with_rng(&[secret], &mut bufs, &mut rng).unwrap();
    assert!(
        rng.is_exhausted(),
        "a split of n shares must draw n - 1 random bytes per byte"
    );
    assert_eq!(shares.iter().fold(0, |acc, s| acc ^ s[0]), secret);
    shares.map(|s| s[0])
}

#[test]
fn two_shares_each_share_is_uniform_for_every_secret() {
    for secret in 0..=u8::MAX {
        let mut seen = [[0u32; 256]; 2];
        for r in 0..=u8::MAX {
            let shares = split_byte::<2>(secret, &[r]);
            for (position, &value) in shares.iter().enumerate() {
                seen[position][usize::from(value)] += 1;
            }
        }
        for (position, counts) in seen.iter().enumerate() {
            assert!(
                counts.iter().all(|&c| c == 1),
                "secret {secret:#04x}: share {position} is not a bijection of the randomness"
            );
        }
    }
}

/// The allocating path draws randomness the same way; checked exhaustively for 2 shares too.
#[test]
fn two_shares_allocating_split_is_uniform_for_every_secret() {
    for secret in 0..=u8::MAX {
        let mut seen = [[0u32; 256]; 2];
        for r in 0..=u8::MAX {
            let tape = [r];
            let mut rng = TapeRng::new(&tape);
            let shares = split_with_rng(&[secret], 2, &mut rng).unwrap();
            assert!(rng.is_exhausted());
            for (position, share) in shares.iter().enumerate() {
                seen[position][usize::from(share.expose_secret()[0])] += 1;
            }
        }
        assert!(
            seen.iter().flatten().all(|&c| c == 1),
            "secret {secret:#04x}"
        );
    }
}

/// Three shares: every pair of shares takes each of the 65 536 possible values exactly once
/// over the 65 536 possible tapes. Secrets are a spread of bit patterns (all 256 would be 16.7
/// million splits, too slow for a debug-build test; the two-share tests cover every secret).
#[test]
fn three_shares_every_pair_is_uniform() {
    const PAIRS: [(usize, usize); 3] = [(0, 1), (0, 2), (1, 2)];
    for secret in [0x00, 0x01, 0x80, 0xA5, 0xFF] {
        let mut seen = vec![[0u8; 3]; 1 << 16];
        for r0 in 0..=u8::MAX {
            for r1 in 0..=u8::MAX {
                let shares = split_byte::<3>(secret, &[r0, r1]);
                for (pair, &(i, j)) in PAIRS.iter().enumerate() {
                    let value = usize::from(shares[i]) << 8 | usize::from(shares[j]);
                    seen[value][pair] += 1;
                }
            }
        }
        for (pair, &(i, j)) in PAIRS.iter().enumerate() {
            assert!(
                seen.iter().all(|counts| counts[pair] == 1),
                "secret {secret:#04x}: shares ({i}, {j}) are not a bijection of the randomness"
            );
        }
    }
}

/// Pearson's chi-squared statistic of `counts` against a uniform distribution.
fn chi_squared(counts: &[u32; 256]) -> f64 {
    let total: u32 = counts.iter().sum();
    let expected = f64::from(total) / 256.0;
    counts
        .iter()
        .map(|&c| (f64::from(c) - expected).powi(2) / expected)
        .sum()
}

/// The 1 - 10^-9 quantile of chi-squared with 255 degrees of freedom is about 415
/// (Wilson-Hilferty: 255 * (1 - 2/2295 + 6.0 * sqrt(2/2295))^3). A correct generator fails one
/// check with probability about 10^-9; a biased or constant one fails by orders of magnitude
/// (a constant share scores 256 * 65 280 = 16.7 million).
const CHI_SQUARED_LIMIT: f64 = 415.0;

#[test]
fn os_generator_shares_are_uniform() {
    const SAMPLES: usize = 256 * 256;
    for n in [2usize, 3] {
        for secret in [0x00u8, 0xFF] {
            let mut seen = vec![[0u32; 256]; n];
            for _ in 0..SAMPLES {
                let shares = split(&[secret], n).unwrap();
                for (position, share) in shares.iter().enumerate() {
                    seen[position][usize::from(share.expose_secret()[0])] += 1;
                }
            }
            for (position, counts) in seen.iter().enumerate() {
                let statistic = chi_squared(counts);
                assert!(
                    statistic < CHI_SQUARED_LIMIT,
                    "n = {n}, secret {secret:#04x}: share {position} chi-squared {statistic:.1}"
                );
            }
        }
    }
}

/// The statistic really tells a uniform histogram from a skewed one, so the test above can
/// fail.
#[test]
fn chi_squared_detects_bias() {
    let uniform = [256u32; 256];
    assert!(chi_squared(&uniform) < 1e-9);
    let mut skewed = [256u32; 256];
    skewed[0] += 128;
    skewed[1] -= 128;
    assert!(chi_squared(&skewed) > 100.0);
    let mut constant = [0u32; 256];
    constant[0x5A] = 65_536;
    assert!(chi_squared(&constant) > CHI_SQUARED_LIMIT);
}
