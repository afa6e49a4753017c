//! The glue between custody modes and the split core: split a DEK into one share per slot,
//! rebuild it from candidate shares, recover a missing share, test a share's consistency.

use envelope::Dek;
use gf256_shamir::{Combiner, ShareRef, Splitter, Threshold};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::Error;
use crate::client_share::SHARE_LEN;
use crate::mode::{CustodyMode, SplitScheme};
use crate::slot::SlotIndex;

/// One share's bytes with the slot they belong to (a provider's unwrapped share or the
/// client's), wiped when dropped.
pub(crate) struct ShareValue {
    pub(crate) slot: SlotIndex,
    pub(crate) bytes: Zeroizing<Vec<u8>>,
}

/// One share of a 32-byte DEK, wiped when dropped.
pub(crate) type ShareBytes = Zeroizing<[u8; SHARE_LEN]>;

/// Splits `dek` into the mode's shares, one per slot in slot order (slot `i` gets element
/// `i - 1`). `standard` has one "share": the DEK itself.
pub(crate) fn split(mode: &CustodyMode, dek: &Dek) -> Result<Vec<ShareBytes>, Error> {
    let secret = dek.expose_secret();
    match mode.scheme() {
        SplitScheme::Whole => Ok(vec![Zeroizing::new(*secret)]),
        SplitScheme::Xor => xor_split::split(secret, usize::from(mode.share_count()))
            .map_err(Error::Xor)?
            .iter()
            .enumerate()
            .map(|(position, share)| {
                fixed(share.expose_secret()).ok_or(Error::Xor(
                    xor_split::Error::ShareLengthMismatch {
                        position,
                        expected: SHARE_LEN,
                        found: share.len(),
                    },
                ))
            })
            .collect(),
        SplitScheme::Shamir => {
            // Fixed x-coordinates 1..=n: the slot index is the x-coordinate, so a share's x is
            // public, bound into its wrap context, and never needs to be stored.
            let splitter =
                Splitter::new(threshold(mode)?, mode.share_count()).map_err(Error::Shamir)?;
            splitter
                .split(secret)
                .map_err(Error::Shamir)?
                .iter()
                .enumerate()
                .map(|(position, share)| {
                    fixed(share.expose_secret()).ok_or(Error::Shamir(
                        gf256_shamir::Error::ShareLengthMismatch {
                            position,
                            expected: SHARE_LEN,
                            found: share.secret_len(),
                        },
                    ))
                })
                .collect()
        }
    }
}

/// Copies a share into a fixed-size wiped buffer; `None` if it is not 32 bytes (which the
/// split core never produces from a 32-byte key).
fn fixed(share: &[u8]) -> Option<ShareBytes> {
    let mut out = Zeroizing::new([0u8; SHARE_LEN]);
    if share.len() != SHARE_LEN {
        return None;
    }
    out.copy_from_slice(share);
    Some(out)
}

/// Rebuilds a candidate DEK from exactly the shares the mode needs (1, all n, or t). Whether
/// the candidate is the right key is for the envelope's commitment to say.
pub(crate) fn rebuild(mode: &CustodyMode, shares: &[&ShareValue]) -> Result<Dek, Error> {
    let mut key = Zeroizing::new([0u8; SHARE_LEN]);
    match mode.scheme() {
        SplitScheme::Whole => {
            // `standard` reads rebuild from exactly one share; the error below is unreachable
            // but keeps a misuse from being silent.
            let [share] = shares else {
                return Err(Error::Shamir(gf256_shamir::Error::NotEnoughShares {
                    threshold: 1,
                    provided: shares.len(),
                }));
            };
            return Dek::from_bytes(&share.bytes).map_err(Error::Envelope);
        }
        SplitScheme::Xor => {
            let views: Vec<&[u8]> = shares.iter().map(|s| s.bytes.as_slice()).collect();
            xor_split::combine_into(&views, key.as_mut_slice()).map_err(Error::Xor)?;
        }
        SplitScheme::Shamir => {
            let views = share_refs(shares)?;
            Combiner::new(threshold(mode)?)
                .combine_into(&views, key.as_mut_slice())
                .map_err(Error::Shamir)?;
        }
    }
    Dek::from_bytes(key.as_slice()).map_err(Error::Envelope)
}

/// The share at `slot` computed from `shares` (t shares of a verified key): the repair of a
/// pending share, or the reference a received share is checked against. Shamir only.
pub(crate) fn recover(
    mode: &CustodyMode,
    shares: &[&ShareValue],
    slot: SlotIndex,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let views = share_refs(shares)?;
    let mut y = Zeroizing::new(vec![0u8; SHARE_LEN]);
    Combiner::new(threshold(mode)?)
        .recover_share_into(&views, slot.share_index(), y.as_mut_slice())
        .map_err(Error::Shamir)?;
    Ok(y)
}

/// Whether `share` lies on the polynomial that `verified` (t shares of the verified key)
/// define: recomputes the share at its slot and compares in constant time. Shamir only; for
/// XOR and whole-DEK modes every share takes part in the one possible combination.
pub(crate) fn is_consistent(
    mode: &CustodyMode,
    verified: &[&ShareValue],
    share: &ShareValue,
) -> Result<bool, Error> {
    let expected = recover(mode, verified, share.slot)?;
    Ok(bool::from(
        expected.as_slice().ct_eq(share.bytes.as_slice()),
    ))
}

fn share_refs<'a>(shares: &[&'a ShareValue]) -> Result<Vec<ShareRef<'a>>, Error> {
    shares
        .iter()
        .map(|s| ShareRef::new(s.slot.share_index(), &s.bytes).map_err(Error::Shamir))
        .collect()
}

fn threshold(mode: &CustodyMode) -> Result<Threshold, Error> {
    Threshold::try_from(mode.threshold()).map_err(Error::Shamir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SlotHolder;

    fn values(shares: Vec<ShareBytes>) -> Vec<ShareValue> {
        shares
            .into_iter()
            .enumerate()
            .map(|(i, bytes)| ShareValue {
                slot: SlotIndex::from_position(i).unwrap(),
                bytes: Zeroizing::new(bytes.to_vec()),
            })
            .collect()
    }

    #[test]
    fn every_mode_splits_and_rebuilds() {
        let general = CustodyMode::custom(
            3,
            ["a", "b", "c", "d"]
                .map(|n| SlotHolder::provider(n).unwrap())
                .into_iter()
                .chain([SlotHolder::Client]),
        )
        .unwrap();
        for mode in [
            CustodyMode::standard(),
            CustodyMode::two_of_two_client_custody(),
            CustodyMode::two_of_three_multi_hsm(),
            CustodyMode::two_of_three_client_custody(),
            general,
        ] {
            let dek = Dek::generate().unwrap();
            let shares = values(split(&mode, &dek).unwrap());
            assert_eq!(shares.len(), usize::from(mode.share_count()), "{mode}");
            assert!(shares.iter().all(|s| s.bytes.len() == SHARE_LEN));
            let t = usize::from(mode.threshold());
            let first: Vec<&ShareValue> = shares.iter().take(t).collect();
            let last: Vec<&ShareValue> = shares.iter().rev().take(t).collect();
            for subset in [first, last] {
                let rebuilt = rebuild(&mode, &subset).unwrap();
                assert_eq!(rebuilt.expose_secret(), dek.expose_secret(), "{mode}");
            }
        }
    }

    #[test]
    fn consistency_with_any_verified_subset() {
        let mode: CustodyMode = "3of5:a,b,client,d,e".parse().unwrap();
        let dek = Dek::generate().unwrap();
        let shares = values(split(&mode, &dek).unwrap());
        for subset in [[0usize, 1, 2], [2, 0, 3], [4, 3, 2], [1, 4, 0]] {
            let verified: Vec<&ShareValue> = subset.iter().map(|&i| &shares[i]).collect();
            assert_eq!(
                rebuild(&mode, &verified).unwrap().expose_secret(),
                dek.expose_secret()
            );
            for other in &shares {
                assert!(
                    is_consistent(&mode, &verified, other).unwrap(),
                    "{subset:?} vs {}",
                    other.slot
                );
            }
        }
    }

    #[test]
    fn recovery_and_consistency() {
        let mode = CustodyMode::two_of_three_multi_hsm();
        let dek = Dek::generate().unwrap();
        let mut shares = values(split(&mode, &dek).unwrap());
        let verified = [&shares[0], &shares[1]];
        let third = recover(&mode, &verified, shares[2].slot).unwrap();
        assert_eq!(third.as_slice(), shares[2].bytes.as_slice());
        assert!(is_consistent(&mode, &verified, &shares[2]).unwrap());
        shares[2].bytes[7] ^= 0x40;
        let verified = [&shares[0], &shares[1]];
        assert!(!is_consistent(&mode, &verified, &shares[2]).unwrap());
    }
}
