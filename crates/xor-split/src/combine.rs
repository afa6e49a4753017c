//! Recovering the secret: the XOR of every share.

use zeroize::Zeroizing;

use crate::kernel::{xor_extend, xor_in_place, xor_into, xor2_in_place, xor3_extend, xor3_into};
use crate::{Error, MAX_SHARES, MIN_SHARES, XorShare};

/// Recovers the secret from **all** the shares of a split, in any order.
///
/// The result is a new buffer that is wiped when dropped. The work depends only on the number
/// of shares and their length (both public); no share byte influences a branch or an address.
///
/// XOR splitting authenticates nothing: a share with a flipped bit combines without error into
/// a secret with the same bit flipped, and a share from another split combines into garbage.
/// Integrity comes from upstream, e.g. the envelope's key commitment, which rejects a wrong
/// data key before it decrypts anything.
///
/// # Errors
///
/// Checked in this order, before anything is allocated:
/// - [`Error::TooFewShares`] if fewer than 2 shares are given;
/// - [`Error::ShareCountOutOfRange`] if more than 255 are given;
/// - [`Error::EmptyShare`] if the first share is empty (a share from
///   [`XorShare::from_bytes`] never is);
/// - [`Error::ShareLengthMismatch`] for the first share whose length differs from the first
///   share's.
///
/// # Example
///
/// ```
/// use xor_split::{combine, split};
///
/// let mut shares = split(b"secret", 3)?;
/// shares.reverse(); // order does not matter
/// assert_eq!(&combine(&shares)?[..], b"secret");
/// # Ok::<(), xor_split::Error>(())
/// ```
pub fn combine(shares: &[XorShare]) -> Result<Zeroizing<Vec<u8>>, Error> {
    let len = check_shares(shares)?;
    // Exactly `len` bytes of capacity, wrapped before the first byte is written: the vector
    // never reallocates (which would leave an unwiped copy behind) and is wiped on drop.
    let mut secret = Zeroizing::new(Vec::with_capacity(len));
    let rest = match shares {
        [a, b] => {
            xor_extend(&mut secret, a.expose_secret(), b.expose_secret());
            &[][..]
        }
        [a, b, c, rest @ ..] => {
            xor3_extend(
                &mut secret,
                a.expose_secret(),
                b.expose_secret(),
                c.expose_secret(),
            );
            rest
        }
        _ => {
            return Err(Error::TooFewShares {
                count: shares.len(),
            });
        }
    };
    fold_in(&mut secret, rest);
    Ok(secret)
}

/// Recovers the secret from all the shares into the caller's buffer. Allocation-free.
///
/// The shares are borrowed byte slices (e.g. from [`XorShare::expose_secret`] or from
/// decrypted, still-wrapped-in-`Zeroizing` buffers), in any order; `out` must be exactly as
/// long as the shares. On error `out` is left untouched. Wiping `out` once the secret is no
/// longer needed is the caller's job.
///
/// # Errors
///
/// Checked in this order, before `out` is written:
/// - [`Error::TooFewShares`] if fewer than 2 shares are given;
/// - [`Error::ShareCountOutOfRange`] if more than 255 are given;
/// - [`Error::EmptyShare`] if the first share is empty;
/// - [`Error::ShareLengthMismatch`] for the first share whose length differs from the first
///   share's;
/// - [`Error::OutputLengthMismatch`] if `out.len()` differs from the share length.
///
/// # Example
///
/// ```
/// use xor_split::{combine_into, split};
///
/// let shares = split(&[0x42; 32], 2)?;
/// let mut key = [0u8; 32];
/// combine_into(&[shares[1].expose_secret(), shares[0].expose_secret()], &mut key)?;
/// assert_eq!(key, [0x42; 32]);
/// # Ok::<(), xor_split::Error>(())
/// ```
pub fn combine_into(shares: &[&[u8]], out: &mut [u8]) -> Result<(), Error> {
    let len = check_shares(shares)?;
    if out.len() != len {
        return Err(Error::OutputLengthMismatch {
            expected: len,
            found: out.len(),
        });
    }
    xor_all(shares, out)
}

/// A share a combine reads from.
trait ShareBuf {
    fn buf(&self) -> &[u8];
}

impl ShareBuf for XorShare {
    fn buf(&self) -> &[u8] {
        self.expose_secret()
    }
}

impl ShareBuf for &[u8] {
    fn buf(&self) -> &[u8] {
        self
    }
}

/// Checks the share count and lengths (public values) and returns the common length.
fn check_shares<S: ShareBuf>(shares: &[S]) -> Result<usize, Error> {
    let count = shares.len();
    if count < MIN_SHARES {
        return Err(Error::TooFewShares { count });
    }
    if count > MAX_SHARES {
        return Err(Error::ShareCountOutOfRange { count });
    }
    let Some((first, rest)) = shares.split_first() else {
        return Err(Error::TooFewShares { count });
    };
    let expected = first.buf().len();
    if expected == 0 {
        return Err(Error::EmptyShare);
    }
    // `zip` with `1..` numbers the remaining shares by their position in the caller's list
    // without index arithmetic.
    for (position, share) in (1..).zip(rest) {
        let found = share.buf().len();
        if found != expected {
            return Err(Error::ShareLengthMismatch {
                position,
                expected,
                found,
            });
        }
    }
    Ok(expected)
}

/// `out = shares[0] ^ shares[1] ^ ...`, for shares already checked by [`check_shares`]. The
/// first pass takes up to three shares and each later pass two, so a 2- or 3-share combine
/// reads every share once and writes `out` once.
fn xor_all<S: ShareBuf>(shares: &[S], out: &mut [u8]) -> Result<(), Error> {
    let rest = match shares {
        [a, b] => {
            xor_into(out, a.buf(), b.buf());
            &[][..]
        }
        [a, b, c, rest @ ..] => {
            xor3_into(out, a.buf(), b.buf(), c.buf());
            rest
        }
        _ => {
            return Err(Error::TooFewShares {
                count: shares.len(),
            });
        }
    };
    fold_in(out, rest);
    Ok(())
}

/// `out ^= share` for every share, two shares per pass.
fn fold_in<S: ShareBuf>(out: &mut [u8], shares: &[S]) {
    let mut shares = shares.iter();
    while let Some(a) = shares.next() {
        match shares.next() {
            Some(b) => xor2_in_place(out, a.buf(), b.buf()),
            None => xor_in_place(out, a.buf()),
        }
    }
}
