//! Secrecy and uniformity: fewer than `t` shares are independent of the secret (checked
//! exhaustively for 1-byte secrets), and the coefficients a split uses are uniform over all
//! 256 values, the leading one included.

use chacha20::rand_core::Rng;
use gf256_shamir::{Share, ShareIndex, Splitter, Threshold};

use super::common::{ScriptedRng, gf_inv, gf_mul, seeded};

/// All 256 one-byte secrets side by side: byte `s` of the secret is `s`, and every byte has its
/// own polynomial, so one split evaluates 256 one-byte splits at once.
fn all_secrets() -> Vec<u8> {
    (0..=255u8).collect()
}

/// t = 2: for every x and every observed share value y, each of the 256 secrets is consistent
/// with exactly one polynomial (one coefficient a1), so one share says nothing about the secret.
#[test]
fn one_share_of_two_reveals_nothing() {
    let splitter = Splitter::new(Threshold::try_from(2u8).unwrap(), 255).unwrap();
    // counts[x - 1][y][s]: how many polynomials give share value y at x for secret s.
    let mut counts = vec![0u8; 255 * 256 * 256];
    for a1 in 0..=255u8 {
        let shares = splitter
            .split_with_rng(&all_secrets(), &mut ScriptedRng::new(vec![a1; 256]))
            .unwrap();
        for share in &shares {
            let x = usize::from(share.index().get()) - 1;
            for (s, &y) in share.expose_secret().iter().enumerate() {
                counts[(x * 256 + usize::from(y)) * 256 + s] += 1;
            }
        }
    }
    assert!(
        counts.iter().all(|&c| c == 1),
        "some share value favours some secret"
    );
}

/// t = 3: for pairs of x-coordinates, the map (secret, a1, a2) -> (secret, y_i, y_j) is a
/// bijection, i.e. every pair of share values is consistent with exactly one polynomial for
/// each of the 256 secrets.
#[test]
fn two_shares_of_three_reveal_nothing() {
    let xs = [1u8, 2, 77, 255];
    let indices: Vec<ShareIndex> = xs
        .iter()
        .map(|&x| ShareIndex::try_from(x).unwrap())
        .collect();
    let splitter = Splitter::with_indices(Threshold::try_from(3u8).unwrap(), &indices).unwrap();
    let pairs: Vec<(usize, usize)> = (0..xs.len())
        .flat_map(|i| (i + 1..xs.len()).map(move |j| (i, j)))
        .collect();
    // One bit per (y_i, y_j, s) per pair: 2^24 bits each.
    let mut seen = vec![vec![0u64; (1 << 24) / 64]; pairs.len()];
    let mut script = vec![0u8; 512];
    for a1 in 0..=255u8 {
        for a2 in 0..=255u8 {
            script[..256].fill(a1);
            script[256..].fill(a2);
            let shares: Vec<Share> = splitter
                .split_with_rng(&all_secrets(), &mut ScriptedRng::new(script.clone()))
                .unwrap();
            for (bits, &(i, j)) in seen.iter_mut().zip(&pairs) {
                let (yi, yj) = (shares[i].expose_secret(), shares[j].expose_secret());
                for s in 0..256usize {
                    let key = (usize::from(yi[s]) << 16) | (usize::from(yj[s]) << 8) | s;
                    let (word, bit) = (key / 64, 1u64 << (key % 64));
                    assert!(
                        bits[word] & bit == 0,
                        "x = {} and {}: two polynomials give the same shares for secret {s}",
                        xs[i],
                        xs[j]
                    );
                    bits[word] |= bit;
                }
            }
        }
    }
    // 2^24 distinct keys were hit out of 2^24: the map is onto, each case exactly once.
    for bits in &seen {
        assert!(bits.iter().all(|&w| w == u64::MAX));
    }
}

/// Pearson's chi-square statistic of byte counts against the uniform distribution.
fn chi_square(bytes: impl Iterator<Item = u8>) -> (f64, [u64; 256]) {
    let mut counts = [0u64; 256];
    let mut total = 0u64;
    for b in bytes {
        counts[usize::from(b)] += 1;
        total += 1;
    }
    let expected = total as f64 / 256.0;
    let statistic = counts
        .iter()
        .map(|&c| (c as f64 - expected).powi(2) / expected)
        .sum();
    (statistic, counts)
}

/// The 99.9th percentile of the chi-square distribution with 255 degrees of freedom. With a
/// fixed seed the statistics below are fixed numbers, so this cannot flake; it fails only if
/// the split's use of randomness changes for the worse (bias, zeros excluded, reuse).
const CHI2_255_P999: f64 = 330.5;

#[test]
fn coefficients_are_uniform_including_zero() {
    let len = 256 * 1024;
    let zeros = vec![0u8; len];

    // t = 2 at x = 1 with a zero secret: y = a1, the (leading) coefficient itself.
    let splitter = Splitter::new(Threshold::try_from(2u8).unwrap(), 2).unwrap();
    let shares = splitter.split_with_rng(&zeros, &mut seeded(2024)).unwrap();
    let (chi2, counts) = chi_square(shares[0].expose_secret().iter().copied());
    assert!(chi2 < CHI2_255_P999, "t = 2: chi-square {chi2:.1}");
    assert!(counts[0] > 0, "zero never used as a leading coefficient");

    // t = 3 at x = 1, 2 with a zero secret: y1 = a1 + a2 and y2 = 2·a1 + 4·a2, so
    // a2 = (y2 + 2·y1) / 6 and a1 = y1 + a2.
    let splitter = Splitter::new(Threshold::try_from(3u8).unwrap(), 3).unwrap();
    let shares = splitter.split_with_rng(&zeros, &mut seeded(2025)).unwrap();
    let inv6 = gf_inv(6);
    let (y1, y2) = (shares[0].expose_secret(), shares[1].expose_secret());
    let a2: Vec<u8> = y1
        .iter()
        .zip(y2)
        .map(|(&y1, &y2)| gf_mul(y2 ^ gf_mul(2, y1), inv6))
        .collect();
    let a1: Vec<u8> = y1.iter().zip(&a2).map(|(&y1, &a2)| y1 ^ a2).collect();
    let (chi2_leading, counts) = chi_square(a2.iter().copied());
    assert!(
        chi2_leading < CHI2_255_P999,
        "t = 3 leading: chi-square {chi2_leading:.1}"
    );
    assert!(counts[0] > 0, "zero never used as a leading coefficient");
    let (chi2_linear, _) = chi_square(a1.iter().copied());
    assert!(
        chi2_linear < CHI2_255_P999,
        "t = 3 linear: chi-square {chi2_linear:.1}"
    );

    // The coefficients are exactly the generator's bytes: no rejection, no transformation.
    let mut stream = vec![0u8; 2 * len];
    seeded(2025).fill_bytes(&mut stream);
    let (first, second) = (&stream[..16 * 1024], &stream[16 * 1024..32 * 1024]);
    // The split's scratch holds 16 KiB of coefficients: with two degrees, each 8 KiB chunk of
    // the secret takes one 8 KiB row per degree, in order.
    assert_eq!(&a1[..8 * 1024], &first[..8 * 1024]);
    assert_eq!(&a2[..8 * 1024], &first[8 * 1024..]);
    assert_eq!(&a1[8 * 1024..16 * 1024], &second[..8 * 1024]);
}

/// The sanity of the statistic itself: a biased source (zero never produced, as in the
/// RUSTSEC-2024-0398 bug) is far above the bound.
#[test]
fn chi_square_flags_a_source_that_excludes_zero() {
    let mut rng = seeded(5);
    let biased = (0..256 * 1024).map(|_| {
        loop {
            let mut b = [0u8; 1];
            rng.fill_bytes(&mut b);
            if b[0] != 0 {
                break b[0];
            }
        }
    });
    let (chi2, counts) = chi_square(biased);
    assert_eq!(counts[0], 0);
    assert!(chi2 > CHI2_255_P999, "chi-square {chi2:.1}");
}
