//! Invariant checks driven by arbitrary bytes, for the `xor_combine` fuzz target.
//!
//! Only built with the `fuzzing` feature. The fuzz target in `fuzz/fuzz_targets/xor_combine.rs`
//! is one call to [`combine_shares`], and this crate's tests replay every file of the committed
//! corpus (`fuzz/corpus/xor_combine/`) through the same call on stable Rust, so a crash found
//! by the fuzzer becomes a regression test by copying the input into the corpus.

use core::convert::Infallible;

use rand_core::{TryCryptoRng, TryRng};

use crate::{Error, MAX_SHARES, MIN_SHARES, XorShare};

/// Decodes shares and options from `data`, runs every combine and split path on them, and
/// panics if any invariant fails.
///
/// Input layout (every field is optional: a short input simply ends early, and missing
/// bytes read as zero):
///
/// | bytes | meaning |
/// | --- | --- |
/// | 1 (or 2) | share count `n`: the byte itself, or `255 + next byte` when it is 255, so counts above the maximum are reachable |
/// | 1 | options: bits 0-1 choose the `combine_into` output length (share length, +1, -1, share length), bits 2-4 the bit to flip in the tampering check |
/// | 1 | which share to tamper with (modulo `n`) |
/// | 1 | which byte of it to tamper with (modulo the share length) |
/// | `n` × (1 + `len`) | each share: a length byte, then that many bytes (fewer if the input ends) |
/// | rest | the "random" tape for the round-trip splits, repeated as needed (all zeros if empty) |
///
/// Invariants checked:
/// - nothing panics, whatever the input;
/// - `combine_into` returns exactly the error a plain reference computes from the counts and
///   lengths (too few, too many, empty first share, the first mismatched position, wrong output
///   length), and leaves `out` untouched on error; otherwise it returns the bytewise XOR of the
///   shares, computed by an independent reference;
/// - `XorShare::from_bytes` refuses exactly the empty shares, and `combine` agrees with
///   `combine_into` whenever every share is non-empty;
/// - for a successful combine into a secret `s`: `combine(split(s)) == s` for the OS generator,
///   for a caller generator, and for the allocation-free `split_into_with_rng`, in forward and
///   reversed share order; and flipping one bit of one share flips exactly that bit of the
///   result.
///
/// Returns what `combine_into` returned for the decoded shares (the secret's length on
/// success), so the corpus replay can check that each seed still reaches the outcome its name
/// promises; the fuzz target ignores it.
///
/// # Errors
///
/// The typed error `combine_into` gave for malformed input. That is an expected outcome, not
/// a finding: findings are panics.
///
/// # Panics
///
/// Whenever an invariant fails: that is its purpose. A panic is a bug in this crate.
///
/// # Example
///
/// ```
/// use xor_split::Error;
/// use xor_split::fuzzing::combine_shares;
///
/// // Two one-byte shares, 0xAA and 0x55, exact output length, no tape.
/// assert_eq!(combine_shares(&[2, 0, 0, 0, 1, 0xAA, 1, 0x55]), Ok(1));
/// // One share only.
/// assert_eq!(combine_shares(&[1, 0, 0, 0, 1, 0xAA]), Err(Error::TooFewShares { count: 1 }));
/// ```
pub fn combine_shares(data: &[u8]) -> Result<usize, Error> {
    let input = Input::parse(data);
    let expected = reference_combine(&input.shares, input.out_len);

    // The allocation-free path, with a sentinel in `out` to see that errors leave it alone.
    let mut out = vec![SENTINEL; input.out_len];
    let got = crate::combine_into(&input.shares, &mut out).map(|()| out.clone());
    assert_eq!(got, expected, "combine_into disagrees with the reference");
    if got.is_err() {
        assert!(
            out.iter().all(|&b| b == SENTINEL),
            "combine_into wrote to `out` before failing"
        );
    }

    // The owned path: shares parsed from their wire form. `from_bytes` refuses exactly the
    // empty ones, and `combine` then agrees with the reference (output length aside, since it
    // allocates its own output).
    let owned: Result<Vec<XorShare>, Error> = input
        .shares
        .iter()
        .map(|s| XorShare::from_bytes(s))
        .collect();
    match owned {
        Ok(owned) => {
            assert!(input.shares.iter().all(|s| !s.is_empty()));
            let got = crate::combine(&owned).map(|s| s.to_vec());
            let share_len = input.shares.first().map_or(0, |s| s.len());
            assert_eq!(got, reference_combine(&input.shares, share_len));
            if let Ok(secret) = got {
                round_trips(&secret, owned.len(), &input);
            }
        }
        Err(error) => {
            assert_eq!(error, Error::EmptyShare);
            assert!(input.shares.iter().any(|s| s.is_empty()));
        }
    }
    got.map(|secret| secret.len())
}

/// Written to `out` before `combine_into`, so an error that wrote anyway is visible. Any value
/// works: `combine_into` checks everything before writing.
const SENTINEL: u8 = 0xA5;

/// The decoded fuzz input.
struct Input<'a> {
    shares: Vec<&'a [u8]>,
    out_len: usize,
    tamper_share: u8,
    tamper_byte: u8,
    tamper_bit: u8,
    tape: &'a [u8],
}

impl<'a> Input<'a> {
    fn parse(data: &'a [u8]) -> Self {
        let mut cursor = Cursor(data);
        let first = cursor.byte();
        let n = if first == u8::MAX {
            usize::from(first).saturating_add(usize::from(cursor.byte()))
        } else {
            usize::from(first)
        };
        let options = cursor.byte();
        let tamper_share = cursor.byte();
        let tamper_byte = cursor.byte();
        let shares: Vec<&[u8]> = (0..n)
            .map(|_| {
                let len = cursor.byte();
                cursor.take(usize::from(len))
            })
            .collect();
        let share_len = shares.first().map_or(0, |s| s.len());
        let out_len = match options & 0b11 {
            1 => share_len.saturating_add(1),
            2 => share_len.saturating_sub(1),
            _ => share_len,
        };
        Self {
            shares,
            out_len,
            tamper_share,
            tamper_byte,
            tamper_bit: (options >> 2) & 0b111,
            tape: cursor.0,
        }
    }
}

/// Reads the input front to back; past the end it yields zeros and empty slices.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn take(&mut self, len: usize) -> &'a [u8] {
        let (taken, rest) = self.0.split_at_checked(len).unwrap_or((self.0, &[]));
        self.0 = rest;
        taken
    }
}

/// What a combine must return, computed independently of the crate's code: the rules as the
/// documentation states them, and the XOR one output byte at a time across all shares.
fn reference_combine(shares: &[&[u8]], out_len: usize) -> Result<Vec<u8>, Error> {
    let count = shares.len();
    if count < MIN_SHARES {
        return Err(Error::TooFewShares { count });
    }
    if count > MAX_SHARES {
        return Err(Error::ShareCountOutOfRange { count });
    }
    let expected = shares.first().map_or(0, |s| s.len());
    if expected == 0 {
        return Err(Error::EmptyShare);
    }
    if let Some((position, share)) = shares.iter().enumerate().find(|(_, s)| s.len() != expected) {
        return Err(Error::ShareLengthMismatch {
            position,
            expected,
            found: share.len(),
        });
    }
    if out_len != expected {
        return Err(Error::OutputLengthMismatch {
            expected,
            found: out_len,
        });
    }
    Ok((0..expected)
        .map(|i| {
            shares
                .iter()
                .fold(0u8, |acc, share| acc ^ share.get(i).copied().unwrap_or(0))
        })
        .collect())
}

/// Splits `secret` into `n` shares every way the crate offers and checks each combines back,
/// then checks that tampering with one bit of one share flips that bit of the result.
fn round_trips(secret: &[u8], n: usize, input: &Input<'_>) {
    let mut tape = TapeRng::new(input.tape);

    let shares = crate::split(secret, n)
        .unwrap_or_else(|e| fail(&format!("split (OS generator) failed: {e}")));
    assert_eq!(shares.len(), n);
    assert_combines_to(&shares, secret);

    let mut shares = crate::split_with_rng(secret, n, &mut tape)
        .unwrap_or_else(|e| fail(&format!("split_with_rng failed: {e}")));
    assert_combines_to(&shares, secret);
    shares.reverse();
    assert_combines_to(&shares, secret);

    // The allocation-free split, into one flat buffer cut into `n` shares.
    let mut flat = vec![0u8; secret.len().saturating_mul(n)];
    let mut bufs: Vec<&mut [u8]> = flat.chunks_mut(secret.len()).collect();
    crate::split_into_with_rng(secret, &mut bufs, &mut tape)
        .unwrap_or_else(|e| fail(&format!("split_into_with_rng failed: {e}")));
    let mut views: Vec<&[u8]> = flat.chunks(secret.len()).collect();
    let mut out = vec![0u8; secret.len()];
    crate::combine_into(&views, &mut out)
        .unwrap_or_else(|e| fail(&format!("combine_into of a fresh split failed: {e}")));
    assert_eq!(out, secret);
    views.reverse();
    crate::combine_into(&views, &mut out)
        .unwrap_or_else(|e| fail(&format!("combine_into of reversed shares failed: {e}")));
    assert_eq!(out, secret);

    // Tampering: XOR is malleable by design, so a flipped bit must come through unchanged.
    let target = usize::from(input.tamper_share)
        .checked_rem(n)
        .unwrap_or_else(|| fail("share count is zero after a successful combine"));
    let byte = usize::from(input.tamper_byte)
        .checked_rem(secret.len())
        .unwrap_or_else(|| fail("secret is empty after a successful combine"));
    let mask = 1u8 << input.tamper_bit;
    let mut tampered: Vec<Vec<u8>> = views.iter().map(|v| v.to_vec()).collect();
    if let Some(b) = tampered.get_mut(target).and_then(|s| s.get_mut(byte)) {
        *b ^= mask;
    }
    let tampered: Vec<&[u8]> = tampered.iter().map(Vec::as_slice).collect();
    crate::combine_into(&tampered, &mut out)
        .unwrap_or_else(|e| fail(&format!("combine_into of a tampered split failed: {e}")));
    let mut flipped = secret.to_vec();
    if let Some(b) = flipped.get_mut(byte) {
        *b ^= mask;
    }
    assert_ne!(
        out, secret,
        "a tampered share combined to the original secret"
    );
    assert_eq!(
        out, flipped,
        "tampering did not flip exactly the tampered bit"
    );
}

fn assert_combines_to(shares: &[XorShare], secret: &[u8]) {
    let combined = crate::combine(shares)
        .unwrap_or_else(|e| fail(&format!("combine of a fresh split failed: {e}")));
    assert_eq!(&combined[..], secret, "combine(split(s)) != s");
}

/// Reports a failed invariant. Panicking is the point of this module: libFuzzer records the
/// panic as a crash and saves the input.
#[allow(clippy::panic)] // See above: a panic is how a fuzz target reports a bug.
fn fail(message: &str) -> ! {
    panic!("xor-split invariant failed: {message}")
}

/// Replays bytes from the fuzz input as the split's "randomness", cycling when it runs out
/// (zeros if there is none).
///
/// This is **not** a CSPRNG, although it carries the `CryptoRng` marker so the split functions
/// accept it: here the fuzzer plays an adversary who chooses the randomness, and correctness
/// (`combine(split(s)) == s`) must hold for every choice, including all zeros. It is private to
/// this feature-gated module and cannot reach production code.
struct TapeRng<'a> {
    tape: &'a [u8],
    next: core::iter::Cycle<core::slice::Iter<'a, u8>>,
}

impl<'a> TapeRng<'a> {
    fn new(tape: &'a [u8]) -> Self {
        Self {
            tape,
            next: tape.iter().cycle(),
        }
    }
}

impl TryRng for TapeRng<'_> {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut bytes = [0u8; 4];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u32::from_le_bytes(bytes))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut bytes = [0u8; 8];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        if self.tape.is_empty() {
            dst.fill(0);
            return Ok(());
        }
        for (d, s) in dst.iter_mut().zip(&mut self.next) {
            *d = *s;
        }
        Ok(())
    }
}

impl TryCryptoRng for TapeRng<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_reads_the_documented_layout() {
        let data = [3, 0b0001_0101, 9, 200, 2, 1, 2, 2, 3, 4, 1, 5, 0xEE, 0xFF];
        let input = Input::parse(&data);
        assert_eq!(input.shares, [&[1u8, 2][..], &[3, 4][..], &[5][..]]);
        assert_eq!(input.out_len, 3, "option bits 0-1 = 1: share length + 1");
        assert_eq!(input.tamper_bit, 5);
        assert_eq!((input.tamper_share, input.tamper_byte), (9, 200));
        assert_eq!(input.tape, [0xEE, 0xFF]);
    }

    #[test]
    fn parse_reaches_counts_above_the_maximum() {
        let input = Input::parse(&[255, 3]);
        assert_eq!(input.shares.len(), 258);
        assert!(input.shares.iter().all(|s| s.is_empty()));
    }

    #[test]
    fn tape_cycles_and_defaults_to_zero() {
        let mut rng = TapeRng::new(&[1, 2, 3]);
        let mut buf = [0u8; 7];
        rng.try_fill_bytes(&mut buf).unwrap();
        assert_eq!(buf, [1, 2, 3, 1, 2, 3, 1]);
        let mut empty = TapeRng::new(&[]);
        let mut buf = [9u8; 4];
        empty.try_fill_bytes(&mut buf).unwrap();
        assert_eq!(buf, [0; 4]);
    }
}
