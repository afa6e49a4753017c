//! Fuzzing entry points (feature `fuzzing`): the invariant checks behind
//! `fuzz/fuzz_targets/shamir_decode_combine.rs`, also replayed over the committed corpus by this
//! crate's tests on stable Rust.
//!
//! The functions here panic (through `assert!`) when an invariant breaks: that is how a fuzzer
//! reports a finding. They never panic on malformed input alone; malformed input must produce
//! a typed error from the library, which is one of the invariants.

// Panicking on a broken invariant is this module's purpose: it is how libFuzzer learns of a
// finding. Nothing outside the `fuzzing` feature can reach these panics.
#![allow(clippy::panic)]

use crate::{
    AsShareRef, Backend, Combiner, Error, FastRng, Share, ShareIndex, ShareRef, Splitter, Threshold,
};

/// Decodes shares derived from `data` with both codecs, combines them, and checks the
/// invariants.
///
/// Input layout (every byte string is a valid input):
///
/// - `data[0]`: the threshold passed to the combiner (0 and 1 exercise the range check);
/// - `data[1]`: bit 0 selects the codec (`x ‖ y` when clear, Vault's `y ‖ x` when set);
/// - `data[2]`: the encoded length of each share (0 and 1 exercise the "too short" check);
/// - the rest: consecutive encoded shares of that length; a short last piece is decoded too.
///
/// Invariants checked:
///
/// - decoding never panics; a decoded share re-encodes to exactly its input, in both
///   layouts, and the two decoders agree on mirrored input;
/// - combining never panics; it succeeds exactly when the threshold is valid, there are at
///   least `threshold` decodable shares of one length with distinct indices, and any surplus
///   shares are consistent; otherwise the error is the expected typed one;
/// - on success: every backend the CPU supports gives the same secret; `combine_into` agrees;
///   the share recovered at each input share's index equals that share; a share recovered at
///   a fresh index can stand in for one of the originals; and re-splitting the secret and
///   combining the new shares gives it back.
///
/// # Panics
///
/// When an invariant is violated, by design: that is the fuzzer's signal.
///
/// # Example
///
/// ```
/// // The TSS Internet-Draft's 2-of-2 test case, in the native layout.
/// let mut data = vec![2, 0, 6];
/// data.extend_from_slice(&[0x01, 0xB9, 0xFA, 0x07, 0xE1, 0x85]);
/// data.extend_from_slice(&[0x02, 0xF5, 0x40, 0x9B, 0x45, 0x11]);
/// gf256_shamir::fuzzing::decode_and_combine(&data);
/// ```
pub fn decode_and_combine(data: &[u8]) {
    let [threshold, flags, encoded_len, rest @ ..] = data else {
        return;
    };
    let vault = flags & 1 == 1;
    let encoded_len = usize::from(*encoded_len);
    let pieces: Vec<&[u8]> = if encoded_len == 0 {
        vec![rest]
    } else {
        rest.chunks(encoded_len).collect()
    };

    let mut shares: Vec<ShareRef<'_>> = Vec::new();
    let mut first_decode_error: Option<Error> = None;
    for piece in &pieces {
        let decoded = if vault {
            ShareRef::from_vault_bytes(piece)
        } else {
            ShareRef::from_bytes(piece)
        };
        check_codecs(piece, vault, decoded.as_ref().ok());
        match decoded {
            Ok(share) => shares.push(share),
            Err(error) => {
                assert!(
                    matches!(error, Error::ShareTooShort { .. } | Error::ZeroIndex),
                    "unexpected decode error {error:?}"
                );
                first_decode_error.get_or_insert(error);
            }
        }
    }

    let threshold = match Threshold::try_from(*threshold) {
        Ok(threshold) => threshold,
        Err(error) => {
            assert!(matches!(error, Error::ThresholdOutOfRange { .. }));
            return;
        }
    };
    let combiner = Combiner::new(threshold);
    let result = combiner.combine(&shares);
    check_errors(threshold, &shares, result.as_ref().err());
    let Ok(secret) = result else {
        return;
    };
    check_success(combiner, &shares, &secret);
}

/// Encode/decode round trips for one piece.
fn check_codecs(piece: &[u8], vault: bool, decoded: Option<&ShareRef<'_>>) {
    let mirrored: Vec<u8> = match piece.split_first() {
        // Native `x ‖ y` to Vault `y ‖ x` (or back): move the x-coordinate to the other end.
        Some((first, tail)) if !vault => tail.iter().chain([first]).copied().collect(),
        _ => match piece.split_last() {
            Some((last, head)) => [last].into_iter().chain(head).copied().collect(),
            None => Vec::new(),
        },
    };
    let other = if vault {
        ShareRef::from_bytes(&mirrored)
    } else {
        ShareRef::from_vault_bytes(&mirrored)
    };
    match (decoded, other) {
        (Some(share), Ok(other)) => {
            assert_eq!(*share, other, "the two layouts decode differently");
            let owned = share.to_share();
            let (native, vault_bytes) = (owned.to_bytes(), owned.to_vault_bytes());
            let (expected_native, expected_vault) = if vault {
                (&mirrored[..], piece)
            } else {
                (piece, &mirrored[..])
            };
            assert_eq!(
                native.as_slice(),
                expected_native,
                "x ‖ y does not round-trip"
            );
            assert_eq!(
                vault_bytes.as_slice(),
                expected_vault,
                "y ‖ x does not round-trip"
            );
            let again = Share::from_bytes(&native).ok();
            assert!(again.is_some_and(|again| again == owned));
        }
        (None, Err(_)) => {}
        (Some(_), Err(error)) => panic!("only one layout decoded: {error:?}"),
        (None, Ok(_)) => panic!("only one layout decoded"),
    }
}

/// The error (or success) of a combine is the one validation predicts.
fn check_errors(threshold: Threshold, shares: &[ShareRef<'_>], error: Option<&Error>) {
    let t = usize::from(threshold.get());
    let expected_len = shares.first().map(ShareRef::secret_len);
    let length_mismatch = shares
        .iter()
        .any(|share| Some(share.secret_len()) != expected_len);
    let mut seen = [false; 256];
    let mut duplicate = false;
    for share in shares {
        if let Some(slot) = seen.get_mut(usize::from(share.index().get())) {
            duplicate |= *slot;
            *slot = true;
        }
    }
    match error {
        None => assert!(shares.len() >= t && !length_mismatch && !duplicate),
        Some(Error::NotEnoughShares { provided, .. }) => {
            assert!(shares.len() < t && *provided == shares.len());
        }
        Some(Error::ShareLengthMismatch { .. }) => assert!(shares.len() >= t && length_mismatch),
        Some(Error::DuplicateIndex { .. }) => {
            assert!(shares.len() >= t && !length_mismatch && duplicate);
        }
        Some(Error::InconsistentShares { .. }) => {
            assert!(shares.len() > t && !length_mismatch && !duplicate);
        }
        Some(other) => panic!("unexpected combine error {other:?}"),
    }
}

/// Everything that must hold once a combine succeeded.
fn check_success(combiner: Combiner, shares: &[ShareRef<'_>], secret: &[u8]) {
    let t = usize::from(combiner.threshold().get());
    assert_eq!(Some(secret.len()), shares.first().map(ShareRef::secret_len));

    for backend in Backend::ALL.into_iter().filter(|b| b.is_supported()) {
        let Ok(forced) = combiner.with_backend(backend) else {
            panic!("a supported backend was refused");
        };
        let again = forced.combine(shares);
        assert!(
            again.is_ok_and(|again| again.as_slice() == secret),
            "{backend} differs"
        );
        let mut out = vec![0u8; secret.len()];
        assert!(forced.combine_into(shares, &mut out).is_ok());
        assert_eq!(out, secret, "{backend}: combine_into differs");
    }

    // Every input share is the recovered share at its own index.
    let basis = shares.get(..t).unwrap_or_default();
    for share in shares {
        let recovered = combiner.recover_share(basis, share.index());
        assert!(recovered.is_ok_and(|r| r.as_share_ref() == *share));
    }

    // A share recovered at an unused index stands in for the first original.
    let fresh = (1..=255u8)
        .filter_map(ShareIndex::new)
        .find(|x| shares.iter().all(|s| s.index() != *x));
    if let Some(fresh) = fresh {
        match combiner.recover_share(basis, fresh) {
            Ok(new_share) => {
                let mut mixed: Vec<ShareRef<'_>> = vec![new_share.as_share_ref()];
                mixed.extend(basis.iter().skip(1));
                let again = combiner.combine(&mixed);
                assert!(again.is_ok_and(|again| again.as_slice() == secret));
            }
            Err(error) => panic!("recover at a fresh index failed: {error:?}"),
        }
    }

    // Re-splitting the secret (fresh randomness) and combining any `t` new shares returns it.
    let splitter = Splitter::new(combiner.threshold(), combiner.threshold().get());
    let mut rng = FastRng::new();
    if let (Ok(splitter), Ok(rng)) = (splitter.as_ref(), rng.as_mut()) {
        match splitter.split_with_rng(secret, rng) {
            Ok(new_shares) => {
                let again = combiner.combine(&new_shares);
                assert!(again.is_ok_and(|again| again.as_slice() == secret));
                let views: Vec<ShareRef<'_>> =
                    new_shares.iter().map(AsShareRef::as_share_ref).collect();
                assert_eq!(views.len(), t);
            }
            Err(error) => panic!("re-split failed: {error:?}"),
        }
    }
}
