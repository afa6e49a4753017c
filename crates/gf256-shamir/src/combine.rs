//! Reconstruction: `Combiner`, the one-call `combine` and `recover_share`.

use subtle::Choice;
use zeroize::{Zeroize, Zeroizing};

use crate::scratch::Scratch;

use crate::backend::{
    Backend, Coeffs, Engine, Init, MAX_COLS, SMALL_BUF, SMALL_BUF_SHORT, SMALL_LEN, SmallRows,
};
use crate::error::Error;
use crate::field;
use crate::share::{AsShareRef, Share, ShareIndex, ShareRef, Threshold, ct_eq_bytes, zeroed_vec};

/// Bytes of the secret processed per pass when the threshold needs several input groups
/// (more than 8 shares), so that the output chunk stays in L1 between passes.
const CHUNK: usize = 16 * 1024;

/// Bytes of a surplus share's prediction checked per pass, on the stack.
const CHECK_CHUNK: usize = 1024;

/// Reconstructs secrets, or the share at a chosen x-coordinate, from `threshold` shares.
///
/// The threshold is part of the combiner, not guessed from the input: fewer shares is an error
/// ([`Error::NotEnoughShares`]), never a wrong answer. The first `threshold` shares are
/// interpolated; any further shares are checked against them in constant time and a mismatch
/// is [`Error::InconsistentShares`], so a corrupted share is detected whenever a spare one is
/// supplied.
///
/// # Example
///
/// ```
/// use gf256_shamir::{Combiner, Splitter, ShareIndex, Threshold};
///
/// let t = Threshold::try_from(2u8)?;
/// let shares = Splitter::new(t, 3)?.split(b"k3y")?;
/// let combiner = Combiner::new(t);
///
/// assert_eq!(combiner.combine(&shares[..2])?.as_slice(), b"k3y");
/// // Repair the share at x = 3 from the other two, without learning anything new.
/// let repaired = combiner.recover_share(&shares[..2], ShareIndex::try_from(3u8)?)?;
/// assert_eq!(repaired, shares[2]);
/// # Ok::<(), gf256_shamir::Error>(())
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Combiner {
    threshold: Threshold,
    engine: Engine,
}

impl Combiner {
    /// A combiner for `threshold` shares, with the best backend.
    ///
    /// # Example
    ///
    /// ```
    /// use gf256_shamir::{Combiner, Threshold};
    ///
    /// let combiner = Combiner::new(Threshold::try_from(3u8)?);
    /// assert_eq!(combiner.threshold().get(), 3);
    /// # Ok::<(), gf256_shamir::Error>(())
    /// ```
    #[must_use]
    pub fn new(threshold: Threshold) -> Combiner {
        Combiner {
            threshold,
            engine: Engine::detect(),
        }
    }

    /// The same combiner running a given backend.
    ///
    /// # Errors
    ///
    /// [`Error::UnsupportedBackend`] if this CPU or build cannot run it.
    ///
    /// # Example
    ///
    /// ```
    /// use gf256_shamir::{Backend, Combiner, Threshold};
    ///
    /// let combiner = Combiner::new(Threshold::try_from(2u8)?).with_backend(Backend::Soft)?;
    /// assert_eq!(combiner.backend(), Backend::Soft);
    /// # Ok::<(), gf256_shamir::Error>(())
    /// ```
    pub fn with_backend(mut self, backend: Backend) -> Result<Combiner, Error> {
        self.engine = Engine::new(backend)?;
        Ok(self)
    }

    /// The threshold.
    ///
    /// # Example
    ///
    /// ```
    /// use gf256_shamir::{Combiner, Threshold};
    ///
    /// let t = Threshold::try_from(2u8)?;
    /// assert_eq!(Combiner::new(t).threshold(), t);
    /// # Ok::<(), gf256_shamir::Error>(())
    /// ```
    #[must_use]
    pub fn threshold(&self) -> Threshold {
        self.threshold
    }

    /// The backend in use.
    ///
    /// # Example
    ///
    /// ```
    /// use gf256_shamir::{Backend, Combiner, Threshold};
    ///
    /// assert_eq!(Combiner::new(Threshold::try_from(2u8)?).backend(), Backend::detect());
    /// # Ok::<(), gf256_shamir::Error>(())
    /// ```
    #[must_use]
    pub fn backend(&self) -> Backend {
        self.engine.backend()
    }

    /// Reconstructs the secret.
    ///
    /// # Errors
    ///
    /// [`Error::NotEnoughShares`], [`Error::ShareLengthMismatch`], [`Error::DuplicateIndex`],
    /// and [`Error::InconsistentShares`] if surplus shares disagree with the first
    /// `threshold`.
    ///
    /// # Example
    ///
    /// ```
    /// use gf256_shamir::{split, Combiner, Threshold};
    ///
    /// let shares = split(b"hello", 3, 5)?;
    /// let combiner = Combiner::new(Threshold::try_from(3u8)?);
    /// assert_eq!(combiner.combine(&shares[2..])?.as_slice(), b"hello");
    /// assert!(combiner.combine(&shares[..2]).is_err());
    /// # Ok::<(), gf256_shamir::Error>(())
    /// ```
    pub fn combine<S: AsShareRef>(&self, shares: &[S]) -> Result<Zeroizing<Vec<u8>>, Error> {
        let len = self.validate(shares)?;
        let mut secret = Zeroizing::new(zeroed_vec(len));
        self.interpolate(shares, 0, &mut secret)?;
        Ok(secret)
    }

    /// Reconstructs the secret into `out`, which must be as long as the shares. Allocates
    /// nothing.
    ///
    /// # Errors
    ///
    /// As [`combine`](Combiner::combine), plus [`Error::OutputMismatch`] for a wrong-length
    /// `out`. On error `out` holds only zeros.
    ///
    /// # Example
    ///
    /// ```
    /// use gf256_shamir::{split, Combiner, Threshold};
    ///
    /// let shares = split(&[9u8; 32], 2, 3)?;
    /// let mut key = [0u8; 32];
    /// Combiner::new(Threshold::try_from(2u8)?).combine_into(&shares[1..], &mut key)?;
    /// assert_eq!(key, [9u8; 32]);
    /// # Ok::<(), gf256_shamir::Error>(())
    /// ```
    pub fn combine_into<S: AsShareRef>(&self, shares: &[S], out: &mut [u8]) -> Result<(), Error> {
        self.interpolate_into(shares, 0, out)
    }

    /// Computes the share at x-coordinate `index` from `threshold` shares: the repair of a
    /// lost share with no new split. The result is the share the original split made at that
    /// index (or would have made).
    ///
    /// # Errors
    ///
    /// As [`combine`](Combiner::combine).
    ///
    /// # Example
    ///
    /// ```
    /// use gf256_shamir::{split, Combiner, ShareIndex, Threshold};
    ///
    /// let shares = split(&[1u8; 32], 2, 3)?;
    /// let combiner = Combiner::new(Threshold::try_from(2u8)?);
    /// let lost = ShareIndex::try_from(2u8)?;
    /// let again = combiner.recover_share(&[&shares[0], &shares[2]], lost)?;
    /// assert_eq!(again, shares[1]);
    /// # Ok::<(), gf256_shamir::Error>(())
    /// ```
    pub fn recover_share<S: AsShareRef>(
        &self,
        shares: &[S],
        index: ShareIndex,
    ) -> Result<Share, Error> {
        let len = self.validate(shares)?;
        let mut share = Share::zeroed(index, len);
        self.interpolate(shares, index.get(), share.y_mut())?;
        Ok(share)
    }

    /// Computes the y-values of the share at `index` into `out`. Allocates nothing.
    ///
    /// # Errors
    ///
    /// As [`combine_into`](Combiner::combine_into). On error `out` holds only zeros.
    ///
    /// # Example
    ///
    /// ```
    /// use gf256_shamir::{split, Combiner, ShareIndex, Threshold};
    ///
    /// let shares = split(b"abc", 2, 3)?;
    /// let mut y = [0u8; 3];
    /// let x = ShareIndex::try_from(1u8)?;
    /// Combiner::new(Threshold::try_from(2u8)?).recover_share_into(&shares[1..], x, &mut y)?;
    /// assert_eq!(&y, shares[0].expose_secret());
    /// # Ok::<(), gf256_shamir::Error>(())
    /// ```
    pub fn recover_share_into<S: AsShareRef>(
        &self,
        shares: &[S],
        index: ShareIndex,
        out: &mut [u8],
    ) -> Result<(), Error> {
        self.interpolate_into(shares, index.get(), out)
    }

    /// Validates `shares` and returns their common y-length.
    ///
    /// One pass: a length mismatch anywhere is reported before a duplicate index anywhere, so
    /// a given bad input always yields the same error.
    fn validate<S: AsShareRef>(&self, shares: &[S]) -> Result<usize, Error> {
        if shares.len() < self.threshold.count() {
            return Err(Error::NotEnoughShares {
                threshold: self.threshold.get(),
                provided: shares.len(),
            });
        }
        let mut len = 0;
        let mut seen = [0u64; 4];
        let mut duplicate = None;
        for (position, share) in shares.iter().enumerate() {
            let share = share.as_share_ref();
            let found = share.secret_len();
            if position == 0 {
                len = found;
            }
            if found != len || found == 0 {
                return Err(Error::ShareLengthMismatch {
                    position,
                    expected: len,
                    found,
                });
            }
            let x = share.index().get();
            let bit = 1u64 << (x & 63);
            if let Some(word) = seen.get_mut(usize::from(x >> 6)) {
                if *word & bit != 0 && duplicate.is_none() {
                    duplicate = Some(x);
                }
                *word |= bit;
            }
        }
        match duplicate {
            Some(index) => Err(Error::DuplicateIndex { index }),
            None => Ok(len),
        }
    }

    /// Validates, checks `out`'s length, and interpolates at `at` into it.
    fn interpolate_into<S: AsShareRef>(
        &self,
        shares: &[S],
        at: u8,
        out: &mut [u8],
    ) -> Result<(), Error> {
        let len = self.validate(shares)?;
        if out.len() != len {
            return Err(Error::OutputMismatch {
                what: "buffer length",
                expected: len,
                found: out.len(),
            });
        }
        self.interpolate(shares, at, out)
    }

    /// The value at `at` of the polynomial through the first `threshold` shares, written to
    /// `out`; then every surplus share is checked against the same polynomial. On any error
    /// `out` is wiped. Shares were validated and `out` has their length.
    fn interpolate<S: AsShareRef>(
        &self,
        shares: &[S],
        at: u8,
        out: &mut [u8],
    ) -> Result<(), Error> {
        let t = self.threshold.count();
        let (basis, surplus) = shares.split_at(t.min(shares.len()));
        let result = if self.engine.backend() == Backend::Soft && out.len() <= SMALL_LEN {
            // The portable kernel pays a per-call plan and works on 32-byte blocks, so for short
            // shares copying them into one padded stack buffer and running the small kernel is
            // faster. The SIMD kernels read short shares in place faster than they can be
            // copied (measured), so they keep the general path. Two buffer sizes, so that a
            // 32-byte key up to threshold 3 clears and wipes 128 bytes rather than 576; neither
            // buffer is ever moved.
            let mut short = [0u8; SMALL_BUF_SHORT];
            if let Some(rows) = small_rows(&mut short, basis, out.len()) {
                self.interpolate_small(&rows, basis, at, surplus, out)
            } else {
                let mut long = [0u8; SMALL_BUF];
                match small_rows(&mut long, basis, out.len()) {
                    Some(rows) => self.interpolate_small(&rows, basis, at, surplus, out),
                    None => self.interpolate_large(basis, at, surplus, out),
                }
            }
        } else {
            self.interpolate_large(basis, at, surplus, out)
        };
        if result.is_err() {
            out.zeroize();
        }
        result
    }

    /// [`interpolate`](Combiner::interpolate) for short shares: the basis shares' y-values
    /// were copied once into `rows` (all but the last as inputs, the last as base), and both
    /// the result and each surplus share's prediction are one small kernel call.
    // Always inlined: returned through a call, the 40-byte result was written with a one-byte
    // tag and copied out with 16-byte loads, a failed store-to-load forward.
    #[inline(always)]
    fn interpolate_small<S: AsShareRef>(
        &self,
        rows: &SmallRows<'_>,
        basis: &[S],
        at: u8,
        surplus: &[S],
        out: &mut [u8],
    ) -> Result<(), Error> {
        let mut xs = [0u8; MAX_COLS + 1];
        for (x, share) in xs.iter_mut().zip(basis) {
            *x = share.as_share_ref().index().get();
        }
        let xs = xs.get(..basis.len()).unwrap_or_default();
        let mut lambdas = [0u8; MAX_COLS + 1];
        lagrange_vartime(xs, at, &mut lambdas);
        self.engine.dot_small(rows, first_cols(&lambdas), out)?;
        let mut consistent = Choice::from(1);
        let mut prediction = Scratch::<SMALL_LEN>::new();
        for share in surplus {
            let share = share.as_share_ref();
            lagrange_vartime(xs, share.index().get(), &mut lambdas);
            let predicted = prediction.prefix(rows.len());
            self.engine
                .dot_small(rows, first_cols(&lambdas), predicted)?;
            consistent &= ct_eq_bytes(predicted, share.expose_secret());
        }
        self.consistency(consistent)
    }

    /// `Ok` if every surplus share agreed with the basis (`consistent`, accumulated in
    /// constant time over all of them), otherwise [`Error::InconsistentShares`].
    fn consistency(&self, consistent: Choice) -> Result<(), Error> {
        if bool::from(consistent) {
            Ok(())
        } else {
            Err(Error::InconsistentShares {
                threshold: self.threshold.get(),
            })
        }
    }

    /// [`interpolate`](Combiner::interpolate) for any length and threshold, in chunks, reading
    /// the shares in place.
    fn interpolate_large<S: AsShareRef>(
        &self,
        basis: &[S],
        at: u8,
        surplus: &[S],
        out: &mut [u8],
    ) -> Result<(), Error> {
        // The x-coordinates, in a buffer sized for the common small thresholds (clearing 255
        // bytes for two shares cost as much as the 32-byte product itself).
        if basis.len() <= MAX_COLS {
            let mut xs = [0u8; MAX_COLS];
            let xs = points(&mut xs, basis);
            self.interpolate_points(basis, xs, at, surplus, out)
        } else {
            let mut xs = [0u8; 255];
            let xs = points(&mut xs, basis);
            self.interpolate_points(basis, xs, at, surplus, out)
        }
    }

    /// [`interpolate_large`](Combiner::interpolate_large) once the basis x-coordinates `xs`
    /// are gathered.
    fn interpolate_points<S: AsShareRef>(
        &self,
        basis: &[S],
        xs: &[u8],
        at: u8,
        surplus: &[S],
        out: &mut [u8],
    ) -> Result<(), Error> {
        self.evaluate(basis, xs, at, out).and_then(|()| {
            let mut consistent = Choice::from(1);
            for share in surplus {
                let share = share.as_share_ref();
                consistent &= self.matches(basis, xs, share)?;
            }
            self.consistency(consistent)
        })
    }

    /// Writes `Σ_j λ_j(at) · y_j` over the basis shares into `out`.
    fn evaluate<S: AsShareRef>(
        &self,
        basis: &[S],
        xs: &[u8],
        at: u8,
        out: &mut [u8],
    ) -> Result<(), Error> {
        let len = out.len();
        if basis.len() <= MAX_COLS {
            let mut lambdas = [0u8; MAX_COLS];
            lagrange_vartime(xs, at, &mut lambdas);
            return combine_range(self.engine, basis, &lambdas, 0..len, out);
        }
        let mut lambdas = [0u8; 255];
        lagrange_vartime(xs, at, &mut lambdas);
        // With at most 8 shares there is one pass over the whole length; more shares are
        // combined in groups of 8, accumulating chunk by chunk so the output stays in cache.
        let chunk = if basis.len() <= MAX_COLS { len } else { CHUNK };
        let mut start = 0;
        while start < len {
            let end = start.saturating_add(chunk).min(len);
            let out_chunk = out.get_mut(start..end).unwrap_or_default();
            combine_range(self.engine, basis, &lambdas, start..end, out_chunk)?;
            start = end;
        }
        Ok(())
    }

    /// Whether `share` lies on the polynomial through the basis shares: its predicted value
    /// is computed chunk by chunk on the stack and compared in constant time.
    fn matches<S: AsShareRef>(
        &self,
        basis: &[S],
        xs: &[u8],
        share: ShareRef<'_>,
    ) -> Result<Choice, Error> {
        let mut lambdas = [0u8; 255];
        lagrange_vartime(xs, share.index().get(), &mut lambdas);
        let mut prediction = Scratch::<CHECK_CHUNK>::new();
        let mut equal = Choice::from(1);
        let y = share.expose_secret();
        let mut start = 0;
        while start < y.len() {
            let end = start.saturating_add(CHECK_CHUNK).min(y.len());
            let n = end.saturating_sub(start);
            let predicted = prediction.prefix(n);
            combine_range(self.engine, basis, &lambdas, start..end, predicted)?;
            equal &= ct_eq_bytes(predicted, y.get(start..end).unwrap_or_default());
            start = end;
        }
        Ok(equal)
    }
}

/// The x-coordinates of `basis`, written to the front of `buf` (which has room for them).
fn points<'a, S: AsShareRef>(buf: &'a mut [u8], basis: &[S]) -> &'a [u8] {
    for (x, share) in buf.iter_mut().zip(basis) {
        *x = share.as_share_ref().index().get();
    }
    buf.get(..basis.len()).unwrap_or_default()
}

/// The basis shares' y-values packed for the small kernel (the last share as the base row),
/// if they are short enough and few enough. Shares were validated: all are `len` bytes long.
// Always inlined: returned through a call, the rows' three words were stored one by one and
// copied with a 16-byte load, a failed store-to-load forward.
#[inline(always)]
fn small_rows<'a, S: AsShareRef>(
    buf: &'a mut [u8],
    basis: &[S],
    len: usize,
) -> Option<SmallRows<'a>> {
    let inputs = basis.len().checked_sub(1)?;
    let mut rows = SmallRows::new(buf, len, inputs)?;
    for (i, share) in basis.iter().enumerate() {
        rows.set_row(i, share.as_share_ref().expose_secret()).ok()?;
    }
    Some(rows)
}

/// The first [`MAX_COLS`] Lagrange coefficients: the scalars of a small kernel call.
fn first_cols(lambdas: &[u8; MAX_COLS + 1]) -> &[u8; MAX_COLS] {
    const ZERO: [u8; MAX_COLS] = [0; MAX_COLS];
    lambdas.first_chunk::<MAX_COLS>().unwrap_or(&ZERO)
}

/// `out = Σ_j lambdas[j] · y_j[range]`, in groups of up to 8 shares.
///
/// The lambdas are a Lagrange basis, so they sum to 1: with at most 8 shares this is computed
/// as `y_last ^ Σ_{j<last} lambdas[j] · (y_j ^ y_last)`, which is the same value with one
/// product fewer per byte (half the products for a threshold of 2).
fn combine_range<S: AsShareRef>(
    engine: Engine,
    shares: &[S],
    lambdas: &[u8],
    range: core::ops::Range<usize>,
    out: &mut [u8],
) -> Result<(), Error> {
    if shares.len() <= MAX_COLS
        && let Some((last, rest)) = shares.split_last()
    {
        let mut coeffs = Coeffs::ZERO;
        let mut inputs: [&[u8]; MAX_COLS] = [&[]; MAX_COLS];
        for (c, (slot, share)) in inputs.iter_mut().zip(rest).enumerate() {
            *slot = share
                .as_share_ref()
                .expose_secret()
                .get(range.clone())
                .unwrap_or_default();
            coeffs.set(0, c, lambdas.get(c).copied().unwrap_or(0));
        }
        let base = last
            .as_share_ref()
            .expose_secret()
            .get(range)
            .unwrap_or_default();
        return engine.dot(
            &coeffs,
            inputs.get(..rest.len()).unwrap_or_default(),
            Init::Relative(base),
            &mut [out],
        );
    }
    for (group_index, group) in shares.chunks(MAX_COLS).enumerate() {
        let first = group_index.saturating_mul(MAX_COLS);
        let mut coeffs = Coeffs::ZERO;
        let mut inputs: [&[u8]; MAX_COLS] = [&[]; MAX_COLS];
        for (c, (slot, share)) in inputs.iter_mut().zip(group).enumerate() {
            *slot = share
                .as_share_ref()
                .expose_secret()
                .get(range.clone())
                .unwrap_or_default();
            coeffs.set(
                0,
                c,
                lambdas.get(first.saturating_add(c)).copied().unwrap_or(0),
            );
        }
        let init = if group_index == 0 {
            Init::Zero
        } else {
            Init::Accumulate
        };
        engine.dot(
            &coeffs,
            inputs.get(..group.len()).unwrap_or_default(),
            init,
            &mut [&mut *out],
        )?;
    }
    Ok(())
}

/// The Lagrange basis coefficients at `at` for the distinct non-zero points `xs`:
/// `λ_j = Π_{m≠j} (at − x_m) / (x_j − x_m)` (subtraction is XOR in GF(2^8)), written to
/// `out[..xs.len()]`.
///
/// All of them at once, in the log domain, from public x-coordinates: the numerators share one
/// product, every sum of logarithms stays below 2^16 and is reduced once, so the whole set
/// costs `O(t²)` table lookups and no inversion.
fn lagrange_vartime<const N: usize>(xs: &[u8], at: u8, out: &mut [u8; N]) {
    // Two points (every 2-of-n read), neither of them `at`: λ_0 = (at − x_1) / (x_0 − x_1) and
    // λ_1 = (at − x_0) / (x_1 − x_0), four table lookups. The general loop below costs about
    // five times as much, which showed in a 32-byte reconstruct.
    if let ([x0, x1], [l0, l1, ..]) = (xs, out.as_mut_slice())
        && at != *x0
        && at != *x1
        && x0 != x1
    {
        let log_d = field::log_vartime(x0 ^ x1);
        let ratio = |numerator: u8| {
            let log = field::log_vartime(numerator)
                .wrapping_add(255)
                .wrapping_sub(log_d);
            field::exp_vartime(field::mod255_vartime(log))
        };
        *l0 = ratio(at ^ x1);
        *l1 = ratio(at ^ x0);
        return;
    }
    // At one of the points the polynomial's value is that share's: λ is 1 there, 0 elsewhere.
    if xs.contains(&at) {
        for (lambda, &x) in out.iter_mut().zip(xs) {
            *lambda = u8::from(x == at);
        }
        return;
    }
    // log Π_m (at − x_m); every factor is non-zero here.
    let mut log_all = 0u32;
    for &x in xs {
        log_all = log_all.wrapping_add(field::log_vartime(at ^ x));
    }
    for (j, (&xj, lambda)) in xs.iter().zip(out.iter_mut()).enumerate() {
        // 255 · 255 added to keep the difference non-negative; both sums are below it.
        let mut log_lambda = log_all
            .wrapping_sub(field::log_vartime(at ^ xj))
            .wrapping_add(255 * 255);
        for (m, &xm) in xs.iter().enumerate() {
            if m != j {
                log_lambda = log_lambda.wrapping_sub(field::log_vartime(xj ^ xm));
            }
        }
        *lambda = field::exp_vartime(field::mod255_vartime(log_lambda));
    }
}

/// Reconstructs a secret from at least `threshold` shares, with the best backend.
///
/// # Errors
///
/// [`Error::ThresholdOutOfRange`], and the errors of [`Combiner::combine`].
///
/// # Example
///
/// ```
/// let shares = gf256_shamir::split(b"swordfish", 2, 3)?;
/// let secret = gf256_shamir::combine(&shares[1..], 2)?;
/// assert_eq!(secret.as_slice(), b"swordfish");
/// # Ok::<(), gf256_shamir::Error>(())
/// ```
pub fn combine<S: AsShareRef>(shares: &[S], threshold: u8) -> Result<Zeroizing<Vec<u8>>, Error> {
    Combiner::new(Threshold::try_from(threshold)?).combine(shares)
}

/// Computes the share at x-coordinate `index` from at least `threshold` shares.
///
/// # Errors
///
/// [`Error::ThresholdOutOfRange`], [`Error::ZeroIndex`] for `index` 0, and the errors of
/// [`Combiner::recover_share`].
///
/// # Example
///
/// ```
/// let shares = gf256_shamir::split(&[3u8; 32], 2, 3)?;
/// let repaired = gf256_shamir::recover_share(&shares[..2], 2, 3)?;
/// assert_eq!(repaired, shares[2]);
/// # Ok::<(), gf256_shamir::Error>(())
/// ```
pub fn recover_share<S: AsShareRef>(
    shares: &[S],
    threshold: u8,
    index: u8,
) -> Result<Share, Error> {
    Combiner::new(Threshold::try_from(threshold)?)
        .recover_share(shares, ShareIndex::try_from(index)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// λ_j(at) by the textbook formula with constant-time multiplications and inversion by
    /// exponentiation: an independent oracle.
    fn lagrange_oracle(xs: &[u8], at: u8, j: usize) -> u8 {
        let inv = |a: u8| (0..254).fold(1u8, |acc, _| field::mul(acc, a));
        xs.iter()
            .enumerate()
            .filter(|&(m, _)| m != j)
            .fold(1u8, |acc, (_, &xm)| {
                field::mul(acc, field::mul(at ^ xm, inv(xs[j] ^ xm)))
            })
    }

    #[test]
    fn lagrange_matches_the_textbook_formula() {
        let sets: [&[u8]; 5] = [
            &[1, 2],
            &[1, 2, 3],
            &[7, 200, 3, 99, 255],
            &[255, 254],
            &[5],
        ];
        for xs in sets {
            for at in [0u8, 1, 4, 17, 200, 254] {
                let mut out = [0u8; 255];
                lagrange_vartime(xs, at, &mut out);
                for (j, lambda) in out.iter().enumerate().take(xs.len()) {
                    assert_eq!(
                        *lambda,
                        lagrange_oracle(xs, at, j),
                        "xs {xs:?} at {at} j {j}"
                    );
                }
            }
        }
    }

    #[test]
    fn two_point_lagrange_matches_the_general_formula() {
        // Every pair of distinct x-coordinates, at 0 (reconstruct) and at a few repair points.
        for x0 in 1..=255u8 {
            for x1 in 1..=255u8 {
                if x0 == x1 {
                    continue;
                }
                for at in [0u8, 1, 2, 3, 0x80, 0xFF] {
                    let mut fast = [0u8; 2];
                    lagrange_vartime(&[x0, x1], at, &mut fast);
                    for (j, lambda) in fast.iter().enumerate() {
                        let expected = if at == x0 || at == x1 {
                            u8::from([x0, x1][j] == at)
                        } else {
                            lagrange_oracle(&[x0, x1], at, j)
                        };
                        assert_eq!(*lambda, expected, "x {x0} {x1} at {at} j {j}");
                    }
                }
            }
        }
    }

    #[test]
    fn lagrange_at_a_known_point_selects_it() {
        let mut out = [9u8; 255];
        lagrange_vartime(&[4, 8, 15], 8, &mut out);
        assert_eq!(&out[..3], &[0, 1, 0]);
    }
}
