//! Tampering with any share changes the combined secret, and by exactly the tampering: XOR
//! splitting is malleable, which is why integrity has to come from the envelope upstream.

use proptest::prelude::*;
use xor_split::{XorShare, combine, combine_into, split};

/// A secret, a share count, the share to tamper with, and a non-zero difference to XOR into it.
fn case() -> impl Strategy<Value = (Vec<u8>, usize, usize, Vec<u8>)> {
    (1..=512usize, 2..=8usize).prop_flat_map(|(len, n)| {
        (
            prop::collection::vec(any::<u8>(), len),
            Just(n),
            0..n,
            prop::collection::vec(any::<u8>(), len)
                .prop_filter("a tampering changes at least one bit", |d| {
                    d.iter().any(|&b| b != 0)
                }),
        )
    })
}

proptest! {
    #[test]
    fn tampering_any_share_changes_the_secret_by_the_tampering((secret, n, target, delta) in case()) {
        let shares = split(&secret, n).unwrap();
        let tampered: Vec<XorShare> = shares
            .iter()
            .enumerate()
            .map(|(i, share)| {
                let mut bytes = share.to_bytes();
                if i == target {
                    for (b, d) in bytes.iter_mut().zip(&delta) {
                        *b ^= d;
                    }
                }
                XorShare::from_bytes(&bytes).unwrap()
            })
            .collect();
        let got = combine(&tampered).unwrap();
        let expected: Vec<u8> = secret.iter().zip(&delta).map(|(s, d)| s ^ d).collect();
        prop_assert_ne!(&got[..], &secret[..]);
        prop_assert_eq!(&got[..], &expected[..]);

        let views: Vec<&[u8]> = tampered.iter().map(XorShare::expose_secret).collect();
        let mut out = vec![0u8; secret.len()];
        combine_into(&views, &mut out).unwrap();
        prop_assert_eq!(out, expected);
    }

    /// Every single-bit flip, in every position of every share, flips that bit of the secret.
    #[test]
    fn every_bit_flip_comes_through(secret in prop::collection::vec(any::<u8>(), 1..=8), n in 2..=4usize) {
        let shares = split(&secret, n).unwrap();
        let mut flat: Vec<Vec<u8>> = shares.iter().map(|s| s.expose_secret().to_vec()).collect();
        let mut out = vec![0u8; secret.len()];
        for target in 0..n {
            for byte in 0..secret.len() {
                for bit in 0..8 {
                    flat[target][byte] ^= 1 << bit;
                    let views: Vec<&[u8]> = flat.iter().map(Vec::as_slice).collect();
                    combine_into(&views, &mut out).unwrap();
                    flat[target][byte] ^= 1 << bit;
                    let mut expected = secret.clone();
                    expected[byte] ^= 1 << bit;
                    prop_assert_eq!(&out, &expected);
                }
            }
        }
    }
}

/// A share from a different split of the same secret combines, without error, into something
/// other than the secret: shares are not interchangeable across splits, and nothing in the
/// share says so. (Equal shares across two splits have probability 2^-256.)
#[test]
fn mixing_splits_does_not_give_the_secret() {
    let secret = [0x11u8; 32];
    let a = split(&secret, 2).unwrap();
    let b = split(&secret, 2).unwrap();
    let mixed = [&a[0], &b[1]].map(|s| XorShare::from_bytes(s.expose_secret()).unwrap());
    assert_ne!(&combine(&mixed).unwrap()[..], &secret);
}
