//! Every bad input gets its typed error, from every function, in the documented order, and
//! nothing is written on error.

use chacha20::ChaCha20Rng;
use proptest::prelude::*;
use rand_core::SeedableRng;
use xor_split::{
    Error, XorShare, combine, combine_into, split, split_into, split_into_with_rng, split_with_rng,
};

fn rng() -> ChaCha20Rng {
    ChaCha20Rng::from_seed([3; 32])
}

#[test]
fn split_refuses_share_counts_out_of_range() {
    for n in [0, 1, 256, 1000, usize::MAX] {
        let expected = Error::ShareCountOutOfRange { count: n };
        assert_eq!(split(b"secret", n).unwrap_err(), expected);
        assert_eq!(
            split_with_rng(b"secret", n, &mut rng()).unwrap_err(),
            expected
        );
    }
}

#[test]
fn split_into_refuses_share_counts_out_of_range() {
    for n in [0usize, 1, 256] {
        let mut flat = vec![0u8; 6 * n];
        let mut bufs: Vec<&mut [u8]> = flat.chunks_mut(6).collect();
        let expected = Error::ShareCountOutOfRange { count: n };
        assert_eq!(split_into(b"secret", &mut bufs).unwrap_err(), expected);
        assert_eq!(
            split_into_with_rng(b"secret", &mut bufs, &mut rng()).unwrap_err(),
            expected
        );
    }
}

#[test]
fn split_refuses_an_empty_secret() {
    assert_eq!(split(b"", 2).unwrap_err(), Error::EmptySecret);
    assert_eq!(
        split_with_rng(b"", 2, &mut rng()).unwrap_err(),
        Error::EmptySecret
    );
    let mut bufs: [&mut [u8]; 2] = [&mut [], &mut []];
    assert_eq!(split_into(b"", &mut bufs).unwrap_err(), Error::EmptySecret);
    assert_eq!(
        split_into_with_rng(b"", &mut bufs, &mut rng()).unwrap_err(),
        Error::EmptySecret
    );
}

/// The share count is checked before the secret: an empty secret with one share reports the
/// count.
#[test]
fn split_checks_the_count_first() {
    assert_eq!(
        split(b"", 1).unwrap_err(),
        Error::ShareCountOutOfRange { count: 1 }
    );
}

#[test]
fn split_into_refuses_wrong_buffer_lengths_and_leaves_buffers_untouched() {
    let (mut a, mut b, mut c) = ([0xEEu8; 4], [0xEEu8; 3], [0xEEu8; 5]);
    let mut bufs: [&mut [u8]; 3] = [&mut a, &mut b, &mut c];
    let expected = Error::ShareLengthMismatch {
        position: 1,
        expected: 4,
        found: 3,
    };
    assert_eq!(split_into(b"abcd", &mut bufs).unwrap_err(), expected);
    assert_eq!(
        split_into_with_rng(b"abcd", &mut bufs, &mut rng()).unwrap_err(),
        expected
    );
    assert_eq!((a, b, c), ([0xEE; 4], [0xEE; 3], [0xEE; 5]));
}

#[test]
fn combine_refuses_too_few_shares() {
    let one = [XorShare::from_bytes(b"x").unwrap()];
    assert_eq!(combine(&[]).unwrap_err(), Error::TooFewShares { count: 0 });
    assert_eq!(combine(&one).unwrap_err(), Error::TooFewShares { count: 1 });
    let mut out = [0u8; 1];
    assert_eq!(
        combine_into(&[], &mut out).unwrap_err(),
        Error::TooFewShares { count: 0 }
    );
    assert_eq!(
        combine_into(&[b"x"], &mut out).unwrap_err(),
        Error::TooFewShares { count: 1 }
    );
}

#[test]
fn combine_refuses_too_many_shares() {
    let shares: Vec<XorShare> = (0..256)
        .map(|_| XorShare::from_bytes(b"x").unwrap())
        .collect();
    assert_eq!(
        combine(&shares).unwrap_err(),
        Error::ShareCountOutOfRange { count: 256 }
    );
    let views: Vec<&[u8]> = vec![b"x"; 256];
    let mut out = [0u8; 1];
    assert_eq!(
        combine_into(&views, &mut out).unwrap_err(),
        Error::ShareCountOutOfRange { count: 256 }
    );
    // 255 is the maximum and works.
    assert!(combine(&shares[..255]).is_ok());
}

#[test]
fn combine_into_refuses_empty_shares() {
    let mut out = [0u8; 0];
    assert_eq!(
        combine_into(&[b"", b""], &mut out).unwrap_err(),
        Error::EmptyShare
    );
    // An empty share after a non-empty first one is a length mismatch against the first.
    let mut out = [0u8; 2];
    assert_eq!(
        combine_into(&[b"ab", b""], &mut out).unwrap_err(),
        Error::ShareLengthMismatch {
            position: 1,
            expected: 2,
            found: 0
        }
    );
}

#[test]
fn from_bytes_refuses_an_empty_share() {
    assert_eq!(XorShare::from_bytes(&[]).unwrap_err(), Error::EmptyShare);
}

#[test]
fn combine_refuses_mismatched_lengths() {
    let shares = [
        XorShare::from_bytes(b"abc").unwrap(),
        XorShare::from_bytes(b"abc").unwrap(),
        XorShare::from_bytes(b"abcd").unwrap(),
        XorShare::from_bytes(b"ab").unwrap(),
    ];
    // The first mismatch is reported, with its position in the caller's list.
    assert_eq!(
        combine(&shares).unwrap_err(),
        Error::ShareLengthMismatch {
            position: 2,
            expected: 3,
            found: 4
        }
    );
}

#[test]
fn combine_into_refuses_a_wrong_output_length_and_leaves_it_untouched() {
    for out_len in [0usize, 1, 2, 4, 100] {
        let mut out = vec![0xEEu8; out_len];
        assert_eq!(
            combine_into(&[b"abc", b"xyz"], &mut out).unwrap_err(),
            Error::OutputLengthMismatch {
                expected: 3,
                found: out_len
            }
        );
        assert!(out.iter().all(|&b| b == 0xEE));
    }
}

/// Share lengths are checked before the output length.
#[test]
fn combine_into_checks_shares_before_the_output() {
    let mut out = [0u8; 7];
    assert_eq!(
        combine_into(&[b"abc", b"ab"], &mut out).unwrap_err(),
        Error::ShareLengthMismatch {
            position: 1,
            expected: 3,
            found: 2
        }
    );
}

proptest! {
    /// For any list of share lengths and any output length, `combine_into` fails exactly when
    /// the lengths are not all equal (or a share is empty, or the output differs), with the
    /// error naming the first offending position.
    #[test]
    fn combine_into_errors_exactly_when_lengths_mismatch(
        lengths in prop::collection::vec(0..=6usize, 2..=6),
        out_len in 0..=6usize,
    ) {
        let shares: Vec<Vec<u8>> = lengths.iter().map(|&len| vec![0x5A; len]).collect();
        let views: Vec<&[u8]> = shares.iter().map(Vec::as_slice).collect();
        let mut out = vec![0u8; out_len];
        let result = combine_into(&views, &mut out);
        let first = lengths[0];
        let mismatch = lengths.iter().position(|&len| len != first);
        let expected = if first == 0 {
            Err(Error::EmptyShare)
        } else if let Some(position) = mismatch {
            Err(Error::ShareLengthMismatch { position, expected: first, found: lengths[position] })
        } else if out_len != first {
            Err(Error::OutputLengthMismatch { expected: first, found: out_len })
        } else {
            Ok(())
        };
        prop_assert_eq!(result, expected);
    }
}
