//! Splitting a secret into `n` shares.
//!
//! Every split works the same way: shares `0..n-1` are filled with fresh random bytes, and the
//! last share is the secret XORed with all of them. Any `n - 1` shares are therefore a uniform
//! random string that is independent of the secret, whichever `n - 1` they are, and the XOR of
//! all `n` is the secret. The four public functions differ only in where the randomness comes
//! from (the operating system or the caller) and where the shares are written (new zeroizing
//! buffers or the caller's).

use rand_core::CryptoRng;
use zeroize::Zeroize;

use crate::kernel::{xor_in_place, xor_into};
use crate::{Error, MAX_SHARES, MIN_SHARES, XorShare};

/// The most bytes asked of the operating system generator in one call. The kernel caps a single
/// `getrandom(2)` call (at 32 MiB - 1 on Linux) and may return short reads above 256 bytes when
/// a signal arrives; bounded requests keep each call's latency small and predictable. On the
/// development machine (Linux 6.18) throughput rose with the chunk size up to 64 KiB (165 MiB/s
/// at 256 B, 250 MiB/s at 4 KiB, 365 MiB/s at 64 KiB) and was flat beyond it.
const OS_RNG_CHUNK: usize = 64 * 1024;

/// Splits `secret` into `n` shares using the operating system's CSPRNG (through `getrandom`).
///
/// All `n` shares are needed to recover the secret with [`combine`](crate::combine); any
/// `n - 1` of them reveal nothing about it. The shares have no index and may be combined in
/// any order. Binding each share to its context (vault, secret, version) is the caller's job.
///
/// Work and memory are proportional to `secret.len() * n`; the secret's bytes influence no
/// branch and no memory address. The operating system generator runs at a few hundred MiB/s
/// (see the crate README); [`split_with_rng`] with a user-space CSPRNG is faster for large
/// secrets.
///
/// # Errors
///
/// Checked in this order:
/// - [`Error::ShareCountOutOfRange`] if `n` is not in `2..=255`;
/// - [`Error::EmptySecret`] if `secret` is empty;
/// - [`Error::Rng`] if the operating system generator fails (every share written so far is
///   wiped before the error is returned).
///
/// # Example
///
/// ```
/// use xor_split::{combine, split};
///
/// let shares = split(b"a 32-byte data encryption key...", 2)?;
/// assert_eq!(shares.len(), 2);
/// assert_eq!(&combine(&shares)?[..], b"a 32-byte data encryption key...");
/// # Ok::<(), xor_split::Error>(())
/// ```
pub fn split(secret: &[u8], n: usize) -> Result<Vec<XorShare>, Error> {
    split_owned(secret, n, &mut OsRandom)
}

/// Splits `secret` into `n` shares using the caller's cryptographically secure generator.
///
/// Identical to [`split`] except for the source of randomness, which must be a
/// `rand_core` 0.10 [`CryptoRng`] (and so also a `rand_core::Rng`). The generator's security
/// is the split's security: a predictable generator makes every share predictable.
///
/// # Errors
///
/// Checked in this order:
/// - [`Error::ShareCountOutOfRange`] if `n` is not in `2..=255`;
/// - [`Error::EmptySecret`] if `secret` is empty.
///
/// # Example
///
/// ```
/// use chacha20::ChaCha20Rng;
/// use rand_core::SeedableRng;
/// use xor_split::{combine, split_with_rng};
///
/// // Seeding from the OS once and drawing many splits from user space is fast; a fixed seed,
/// // as here, is for tests only.
/// let mut rng = ChaCha20Rng::from_seed([7; 32]);
/// let shares = split_with_rng(b"secret", 3, &mut rng)?;
/// assert_eq!(&combine(&shares)?[..], b"secret");
/// # Ok::<(), xor_split::Error>(())
/// ```
pub fn split_with_rng<R: CryptoRng + ?Sized>(
    secret: &[u8],
    n: usize,
    rng: &mut R,
) -> Result<Vec<XorShare>, Error> {
    split_owned(secret, n, &mut CallerRng(rng))
}

/// Splits `secret` into the caller's buffers, one per share, using the operating system's
/// CSPRNG. Allocation-free.
///
/// The number of shares is `shares.len()`, and each buffer must be exactly as long as the
/// secret. On success every buffer holds one share; on error nothing secret is left in them
/// (they are untouched if validation fails, wiped if the generator fails). Wiping the buffers
/// once they are no longer needed is the caller's job.
///
/// # Errors
///
/// Checked in this order:
/// - [`Error::ShareCountOutOfRange`] if `shares.len()` is not in `2..=255`;
/// - [`Error::EmptySecret`] if `secret` is empty;
/// - [`Error::ShareLengthMismatch`] for the first buffer whose length is not `secret.len()`;
/// - [`Error::Rng`] if the operating system generator fails.
///
/// # Example
///
/// ```
/// use xor_split::{combine_into, split_into};
///
/// let (mut a, mut b) = ([0u8; 6], [0u8; 6]);
/// split_into(b"secret", &mut [&mut a, &mut b])?;
/// let mut secret = [0u8; 6];
/// combine_into(&[&a, &b], &mut secret)?;
/// assert_eq!(&secret, b"secret");
/// # Ok::<(), xor_split::Error>(())
/// ```
pub fn split_into(secret: &[u8], shares: &mut [&mut [u8]]) -> Result<(), Error> {
    split_borrowed(secret, shares, &mut OsRandom)
}

/// Splits `secret` into the caller's buffers using the caller's cryptographically secure
/// generator. Allocation-free.
///
/// Identical to [`split_into`] except for the source of randomness, as in [`split_with_rng`].
///
/// # Errors
///
/// Checked in this order:
/// - [`Error::ShareCountOutOfRange`] if `shares.len()` is not in `2..=255`;
/// - [`Error::EmptySecret`] if `secret` is empty;
/// - [`Error::ShareLengthMismatch`] for the first buffer whose length is not `secret.len()`.
///
/// # Example
///
/// ```
/// use chacha20::ChaCha20Rng;
/// use rand_core::SeedableRng;
/// use xor_split::{combine_into, split_into_with_rng};
///
/// let mut rng = ChaCha20Rng::from_seed([7; 32]);
/// let mut shares = [[0u8; 4]; 3];
/// let [a, b, c] = &mut shares;
/// split_into_with_rng(b"key!", &mut [a, b, c], &mut rng)?;
/// let mut secret = [0u8; 4];
/// combine_into(&[&shares[2], &shares[0], &shares[1]], &mut secret)?;
/// assert_eq!(&secret, b"key!");
/// # Ok::<(), xor_split::Error>(())
/// ```
pub fn split_into_with_rng<R: CryptoRng + ?Sized>(
    secret: &[u8],
    shares: &mut [&mut [u8]],
    rng: &mut R,
) -> Result<(), Error> {
    split_borrowed(secret, shares, &mut CallerRng(rng))
}

/// Where a split's random bytes come from.
trait RandomSource {
    /// Fills `buf` entirely with random bytes.
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), Error>;
}

/// The operating system CSPRNG, asked for at most [`OS_RNG_CHUNK`] bytes per call.
struct OsRandom;

impl RandomSource for OsRandom {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), Error> {
        for chunk in buf.chunks_mut(OS_RNG_CHUNK) {
            getrandom::fill(chunk).map_err(Error::Rng)?;
        }
        Ok(())
    }
}

/// A caller's infallible CSPRNG.
struct CallerRng<'a, R: ?Sized>(&'a mut R);

impl<R: CryptoRng + ?Sized> RandomSource for CallerRng<'_, R> {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), Error> {
        self.0.fill_bytes(buf);
        Ok(())
    }
}

/// A buffer a split writes one share into.
trait ShareBufMut {
    fn buf_mut(&mut self) -> &mut [u8];
}

impl ShareBufMut for XorShare {
    fn buf_mut(&mut self) -> &mut [u8] {
        self.bytes_mut()
    }
}

impl ShareBufMut for &mut [u8] {
    fn buf_mut(&mut self) -> &mut [u8] {
        self
    }
}

/// Refuses share counts outside `2..=255` (a public value: branching on it is fine).
fn check_split_count(count: usize) -> Result<(), Error> {
    if (MIN_SHARES..=MAX_SHARES).contains(&count) {
        Ok(())
    } else {
        Err(Error::ShareCountOutOfRange { count })
    }
}

fn split_owned<F: RandomSource + ?Sized>(
    secret: &[u8],
    n: usize,
    rng: &mut F,
) -> Result<Vec<XorShare>, Error> {
    check_split_count(n)?;
    if secret.is_empty() {
        return Err(Error::EmptySecret);
    }
    let mut shares: Vec<XorShare> = (0..n).map(|_| XorShare::zeroed(secret.len())).collect();
    // On error the shares are dropped here, and dropping wipes them.
    fill_shares(secret, &mut shares, rng)?;
    Ok(shares)
}

fn split_borrowed<F: RandomSource + ?Sized>(
    secret: &[u8],
    shares: &mut [&mut [u8]],
    rng: &mut F,
) -> Result<(), Error> {
    check_split_count(shares.len())?;
    if secret.is_empty() {
        return Err(Error::EmptySecret);
    }
    let expected = secret.len();
    for (position, share) in shares.iter().enumerate() {
        if share.len() != expected {
            return Err(Error::ShareLengthMismatch {
                position,
                expected,
                found: share.len(),
            });
        }
    }
    let result = fill_shares(secret, shares, rng);
    if result.is_err() {
        // The last buffer may hold the secret masked by only some of the random shares.
        for share in shares.iter_mut() {
            share.zeroize();
        }
    }
    result
}

/// Writes the shares of `secret`, whose count and lengths the caller has already checked:
/// shares `0..n-1` random, the last one `secret ^ share_0 ^ ... ^ share_{n-2}`.
fn fill_shares<S: ShareBufMut, F: RandomSource + ?Sized>(
    secret: &[u8],
    shares: &mut [S],
    rng: &mut F,
) -> Result<(), Error> {
    let Some((last, randoms)) = shares.split_last_mut() else {
        return Err(Error::ShareCountOutOfRange { count: 0 });
    };
    let Some((first, others)) = randoms.split_first_mut() else {
        return Err(Error::ShareCountOutOfRange { count: 1 });
    };
    let last = last.buf_mut();
    // The first random share and the secret go into the last share in one pass, so a 2-of-2
    // split reads the secret once and writes each share once.
    let first = first.buf_mut();
    rng.fill(first)?;
    xor_into(last, secret, first);
    for share in others {
        let share = share.buf_mut();
        rng.fill(share)?;
        xor_in_place(last, share);
    }
    Ok(())
}

#[cfg(test)]
// Test arithmetic is on small constants; an overflow there would be a bug in the test, and
// debug assertions would catch it.
#[allow(
    clippy::arithmetic_side_effects,
    clippy::integer_division_remainder_used
)]
mod tests {
    use rand_core::SeedableRng;

    use super::*;

    /// A source that fails after handing out a given number of bytes, to check the wipe.
    struct FailingRandom {
        remaining: usize,
    }

    impl RandomSource for FailingRandom {
        fn fill(&mut self, buf: &mut [u8]) -> Result<(), Error> {
            if buf.len() > self.remaining {
                return Err(Error::Rng(getrandom::Error::UNEXPECTED));
            }
            self.remaining -= buf.len();
            buf.fill(0x5A);
            Ok(())
        }
    }

    #[test]
    fn generator_failure_wipes_the_caller_buffers() {
        let secret = [0xC3u8; 8];
        let mut bufs = [[0x11u8; 8]; 3];
        let [a, b, c] = &mut bufs;
        // The first random share succeeds (so the last buffer holds secret ^ share 0), then the
        // generator fails on the second.
        let result = split_borrowed(&secret, &mut [a, b, c], &mut FailingRandom { remaining: 8 });
        assert!(matches!(result, Err(Error::Rng(_))));
        assert_eq!(bufs, [[0u8; 8]; 3]);
    }

    #[test]
    fn generator_failure_returns_no_shares() {
        let result = split_owned(&[1, 2, 3], 2, &mut FailingRandom { remaining: 0 });
        assert!(matches!(result, Err(Error::Rng(_))));
    }

    #[test]
    fn os_source_fills_more_than_one_chunk() {
        // Two and a half chunks: every chunk, including the short tail, must be written.
        let mut buf = vec![0u8; OS_RNG_CHUNK * 2 + OS_RNG_CHUNK / 2];
        OsRandom.fill(&mut buf).unwrap();
        for chunk in buf.chunks(OS_RNG_CHUNK) {
            // 32 zero bytes in a row from a CSPRNG has probability 2^-256.
            assert!(chunk.chunks(32).any(|w| w.iter().any(|&b| b != 0)));
            assert!(chunk[chunk.len() - 32..].iter().any(|&b| b != 0));
        }
    }

    #[test]
    fn last_share_is_secret_masked_by_the_others() {
        let mut rng = chacha20::ChaCha20Rng::from_seed([1; 32]);
        let secret = *b"0123456789abcdef";
        let shares = split_with_rng(&secret, 4, &mut rng).unwrap();
        let mut acc = secret;
        for share in &shares[..3] {
            xor_in_place(&mut acc, share.expose_secret());
        }
        assert_eq!(&acc, shares[3].expose_secret());
    }
}
