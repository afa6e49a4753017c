//! Property tests of the sharing scheme itself: any `t` shares reconstruct, fewer fail, and
//! repaired shares equal the originals.

use chacha20::rand_core::Rng;
use gf256_shamir::{Combiner, Error, Share, ShareIndex, Splitter, Threshold, combine};
use proptest::prelude::*;

use super::common::seeded;

/// Every subset of `0..n` with `k` elements.
fn subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
    (0u32..(1 << n))
        .filter(|mask| mask.count_ones() as usize == k)
        .map(|mask| (0..n).filter(|i| mask & (1 << i) != 0).collect())
        .collect()
}

fn split_seeded(secret: &[u8], t: u8, n: u8, seed: u64) -> (Splitter, Vec<Share>) {
    let splitter = Splitter::new(Threshold::try_from(t).unwrap(), n).unwrap();
    let shares = splitter.split_with_rng(secret, &mut seeded(seed)).unwrap();
    (splitter, shares)
}

fn secret_of(len: usize, seed: u64) -> Vec<u8> {
    let mut secret = vec![0u8; len];
    seeded(seed ^ 0xABCD).fill_bytes(&mut secret);
    secret
}

/// (threshold, shares) with 2 <= t <= n <= 7, small enough to enumerate every subset.
fn small_shape() -> impl Strategy<Value = (u8, u8)> {
    (2u8..=7).prop_flat_map(|n| (2u8..=n, Just(n)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn every_t_subset_reconstructs(
        (t, n) in small_shape(),
        len in 1usize..=300,
        seed in any::<u64>(),
    ) {
        let secret = secret_of(len, seed);
        let (_, shares) = split_seeded(&secret, t, n, seed);
        prop_assert_eq!(shares.len(), usize::from(n));
        for k in usize::from(t)..=usize::from(n) {
            for subset in subsets(usize::from(n), k) {
                let picked: Vec<&Share> = subset.iter().map(|&i| &shares[i]).collect();
                let recovered = combine(&picked, t).unwrap();
                prop_assert_eq!(recovered.as_slice(), secret.as_slice(), "subset {:?}", subset);
            }
        }
    }

    #[test]
    fn fewer_than_t_shares_always_fail(
        (t, n) in small_shape(),
        len in 1usize..=64,
        seed in any::<u64>(),
    ) {
        let (_, shares) = split_seeded(&secret_of(len, seed), t, n, seed);
        for k in 0..usize::from(t) {
            for subset in subsets(usize::from(n), k) {
                let picked: Vec<&Share> = subset.iter().map(|&i| &shares[i]).collect();
                let err = combine(&picked, t).unwrap_err();
                prop_assert_eq!(err, Error::NotEnoughShares { threshold: t, provided: k });
            }
        }
    }

    #[test]
    fn recovered_shares_equal_the_originals(
        (t, n) in small_shape(),
        len in 1usize..=300,
        seed in any::<u64>(),
    ) {
        let (splitter, shares) = split_seeded(&secret_of(len, seed), t, n, seed);
        let combiner = Combiner::new(splitter.threshold());
        for missing in 0..shares.len() {
            let others: Vec<&Share> = shares
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != missing)
                .map(|(_, s)| s)
                .take(usize::from(t))
                .collect();
            if others.len() < usize::from(t) {
                continue; // t == n: every other share is needed and there are only n - 1.
            }
            let repaired = combiner.recover_share(&others, shares[missing].index()).unwrap();
            prop_assert!(repaired == shares[missing], "share {} differs", missing);
        }
        // A share at a new index can replace any original in a combine.
        let fresh = (1..=255u8)
            .map(|x| ShareIndex::try_from(x).unwrap())
            .find(|x| splitter.indices().iter().all(|y| y != x))
            .unwrap();
        let basis: Vec<&Share> = shares.iter().take(usize::from(t)).collect();
        let new_share = combiner.recover_share(&basis, fresh).unwrap();
        let mut mixed: Vec<&Share> = vec![&new_share];
        mixed.extend(shares.iter().skip(1).take(usize::from(t) - 1));
        let secret = secret_of(len, seed);
        prop_assert_eq!(combiner.combine(&mixed).unwrap().to_vec(), secret);
    }

    /// Large thresholds and share counts: several coefficient groups and output groups.
    #[test]
    fn large_shapes_round_trip(
        t in 2u8..=40,
        extra in 0u8..=30,
        len in 1usize..=200,
        seed in any::<u64>(),
    ) {
        let n = t.saturating_add(extra);
        let secret = secret_of(len, seed);
        let (splitter, shares) = split_seeded(&secret, t, n, seed);
        let k = usize::from(t);
        prop_assert_eq!(combine(&shares[..k], t).unwrap().to_vec(), secret.clone());
        prop_assert_eq!(combine(&shares[shares.len() - k..], t).unwrap().to_vec(), secret.clone());
        prop_assert_eq!(combine(&shares, t).unwrap().to_vec(), secret);
        let combiner = Combiner::new(splitter.threshold());
        let last = shares.last().unwrap();
        let repaired = combiner.recover_share(&shares[..k], last.index()).unwrap();
        prop_assert!(&repaired == last);
    }
}

#[test]
fn secrets_longer_than_one_chunk_round_trip() {
    for (len, t, n) in [(16 * 1024 + 1, 2u8, 3u8), (100_003, 3, 5), (40_000, 12, 14)] {
        let secret = secret_of(len, len as u64);
        let (_, shares) = split_seeded(&secret, t, n, 7);
        let k = usize::from(t);
        assert_eq!(
            combine(&shares[n as usize - k..], t).unwrap().as_slice(),
            secret
        );
        assert_eq!(combine(&shares, t).unwrap().as_slice(), secret);
    }
}
