//! Backend equivalence: every backend this machine supports is byte-identical to the portable
//! one, for random inputs, every length from 1 to 300 and large ones, and every alignment.

use gf256_shamir::{Backend, Combiner, ShareIndex, ShareRef, Splitter, Threshold};
use proptest::prelude::*;

use super::common::seeded;
use chacha20::rand_core::Rng;

fn supported() -> Vec<Backend> {
    let backends: Vec<Backend> = Backend::ALL
        .into_iter()
        .filter(|b| b.is_supported())
        .collect();
    assert!(backends.contains(&Backend::Soft));
    backends
}

/// Split a secret placed at byte offset `offset` of a buffer, into buffers at the same offset,
/// then combine and recover from views at that offset; returns everything produced.
fn run(
    backend: Backend,
    secret: &[u8],
    t: u8,
    n: u8,
    seed: u64,
    offset: usize,
) -> (Vec<Vec<u8>>, Vec<u8>, Vec<u8>) {
    let len = secret.len();
    let threshold = Threshold::try_from(t).unwrap();
    let splitter = Splitter::new(threshold, n)
        .unwrap()
        .with_backend(backend)
        .unwrap();
    let combiner = Combiner::new(threshold).with_backend(backend).unwrap();

    let mut placed = vec![0u8; offset + len];
    placed[offset..].copy_from_slice(secret);
    let mut buffers = vec![vec![0u8; offset + len]; usize::from(n)];
    let mut outputs: Vec<&mut [u8]> = buffers.iter_mut().map(|b| &mut b[offset..]).collect();
    splitter
        .split_into_with_rng(&placed[offset..], &mut outputs, &mut seeded(seed))
        .unwrap();

    let views: Vec<ShareRef<'_>> = splitter
        .indices()
        .iter()
        .zip(&buffers)
        .map(|(x, b)| ShareRef::new(*x, &b[offset..]).unwrap())
        .collect();
    let k = usize::from(t);
    let mut combined = vec![0u8; offset + len];
    combiner
        .combine_into(&views[views.len() - k..], &mut combined[offset..])
        .unwrap();
    let mut recovered = vec![0u8; offset + len];
    let at = ShareIndex::try_from(200u8).unwrap();
    combiner
        .recover_share_into(&views[..k], at, &mut recovered[offset..])
        .unwrap();
    let shares = buffers.into_iter().map(|b| b[offset..].to_vec()).collect();
    (
        shares,
        combined[offset..].to_vec(),
        recovered[offset..].to_vec(),
    )
}

fn random_secret(len: usize, seed: u64) -> Vec<u8> {
    let mut secret = vec![0u8; len];
    seeded(!seed).fill_bytes(&mut secret);
    secret
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn backends_agree_with_soft(
        len in 1usize..=300,
        t in 2u8..=12,
        extra in 0u8..=10,
        seed in any::<u64>(),
        offset in 0usize..64,
    ) {
        let n = t + extra;
        let secret = random_secret(len, seed);
        let reference = run(Backend::Soft, &secret, t, n, seed, offset);
        prop_assert_eq!(&reference.1, &secret);
        for backend in supported() {
            let result = run(backend, &secret, t, n, seed, offset);
            prop_assert!(result == reference, "{} differs from soft", backend);
        }
    }
}

#[test]
fn every_length_up_to_300_and_every_alignment() {
    let backends = supported();
    for len in 1..=300usize {
        let secret = random_secret(len, len as u64);
        let offset = len % 64;
        let reference = run(Backend::Soft, &secret, 3, 4, len as u64, offset);
        for &backend in &backends {
            assert!(
                run(backend, &secret, 3, 4, len as u64, offset) == reference,
                "{backend} len {len}"
            );
        }
    }
    for offset in 0..64 {
        for len in [1usize, 15, 16, 17, 31, 32, 33, 63, 64, 65, 129] {
            let secret = random_secret(len, offset as u64);
            let reference = run(Backend::Soft, &secret, 2, 3, 9, offset);
            for &backend in &backends {
                assert!(
                    run(backend, &secret, 2, 3, 9, offset) == reference,
                    "{backend} offset {offset}"
                );
            }
        }
    }
}

#[test]
fn large_inputs_agree() {
    let backends = supported();
    for (len, t, n) in [(1 << 20, 2u8, 3u8), (100_003, 3, 5), (50_001, 10, 12)] {
        let secret = random_secret(len, 77);
        let reference = run(Backend::Soft, &secret, t, n, 77, 3);
        assert_eq!(reference.1, secret);
        for &backend in &backends {
            assert!(
                run(backend, &secret, t, n, 77, 3) == reference,
                "{backend} len {len}"
            );
        }
    }
}
