//! Splitting: `Splitter` and the one-call `split`.

use core::fmt;
use core::ops::Range;

use rand_core::CryptoRng;

use crate::backend::{
    Backend, Coeffs, Engine, Fused, Init, Keystream, MAX_COLS, MAX_ROWS, SMALL_BUF,
    SMALL_BUF_SHORT, SMALL_LEN, SmallRows,
};
use crate::error::Error;
use crate::field;
use crate::rng::{FastRng, with_thread_rng};
use crate::scratch::Scratch;
use crate::share::{Share, ShareIndex, Threshold};

/// Scratch for the coefficients of tiny splits (a 32-byte key 2-of-n, a 16-byte one 3-of-n):
/// one vector register's worth to clear.
const TINY_SCRATCH: usize = 64;

/// Scratch for the random coefficients of small splits: one 256-byte frame covers a 32-byte
/// secret up to threshold 9 and a 64-byte one up to threshold 5, with no large stack frame to
/// clear or probe.
const SMALL_SCRATCH: usize = 256;

/// Scratch for large splits: the coefficients of one chunk of the secret, sized to stay in L1
/// together with the chunk of the secret and of each share being written.
const LARGE_SCRATCH: usize = 16 * 1024;

/// Splits secrets into shares with a fixed threshold, set of x-coordinates and backend.
///
/// Each byte of the secret is the constant term of its own random polynomial of degree
/// `threshold - 1` over GF(2^8); share `x` holds the polynomial's value at `x`. All
/// coefficients are drawn uniformly from the full 256 values (the leading one included: never
/// excluding zero, which would bias the shares, as in RUSTSEC-2024-0398).
///
/// Building a splitter validates everything once; splitting then only checks the secret (and
/// the output buffers for the `_into` forms). A splitter holds no secret and can be shared
/// between threads.
///
/// # Example
///
/// ```
/// use gf256_shamir::{Combiner, Splitter, Threshold};
///
/// let threshold = Threshold::try_from(2u8)?;
/// let splitter = Splitter::new(threshold, 3)?; // x = 1, 2, 3
/// let shares = splitter.split(b"data encryption key")?;
///
/// let combiner = Combiner::new(threshold);
/// assert_eq!(combiner.combine(&shares[1..])?.as_slice(), b"data encryption key");
/// # Ok::<(), gf256_shamir::Error>(())
/// ```
#[derive(Clone)]
pub struct Splitter {
    threshold: Threshold,
    /// The x-coordinates of the shares, in output order; `indices[..count]` is used.
    indices: [ShareIndex; 255],
    count: usize,
    /// `x_r^(c + 1)` for the first 8 shares and degrees 1 to 8: the scalars of the first (for
    /// up to 8 shares and threshold 9, the only) kernel call, computed once.
    powers: Coeffs,
    engine: Engine,
}

impl Splitter {
    /// A splitter making `shares` shares at x = 1, 2, …, `shares`, with the best backend.
    ///
    /// # Errors
    ///
    /// [`Error::ShareCountOutOfRange`] if `shares` is below the threshold.
    ///
    /// # Example
    ///
    /// ```
    /// use gf256_shamir::{Splitter, Threshold};
    ///
    /// let splitter = Splitter::new(Threshold::try_from(3u8)?, 5)?;
    /// assert_eq!(splitter.share_count(), 5);
    /// assert!(Splitter::new(Threshold::try_from(3u8)?, 2).is_err());
    /// # Ok::<(), gf256_shamir::Error>(())
    /// ```
    pub fn new(threshold: Threshold, shares: u8) -> Result<Splitter, Error> {
        check_count(threshold, usize::from(shares))?;
        Ok(Splitter::sequential(threshold, shares))
    }

    /// The splitter for x = 1, …, `shares`, whose count was checked.
    ///
    /// Built in place, with no `Result` around it: the one-call [`split()`] builds one per call,
    /// and moving this 340-byte value through `Result`s and `?` cost more than the split of a
    /// 32-byte key.
    #[inline]
    fn sequential(threshold: Threshold, shares: u8) -> Splitter {
        let mut splitter = Splitter {
            threshold,
            indices: SEQUENTIAL,
            count: usize::from(shares),
            powers: Coeffs::ZERO,
            engine: Engine::detect(),
        };
        splitter.fill_powers();
        splitter
    }

    /// A splitter for `indices[..count]`, with its power table and the detected backend.
    fn build(threshold: Threshold, indices: [ShareIndex; 255], count: usize) -> Splitter {
        let mut splitter = Splitter {
            threshold,
            indices,
            count,
            powers: Coeffs::ZERO,
            engine: Engine::detect(),
        };
        splitter.fill_powers();
        splitter
    }

    /// Fills the power table: `x_r^(c + 1)` for the first shares, and only the degrees a split
    /// uses (with threshold 2, one power per share).
    fn fill_powers(&mut self) {
        let cols = self.threshold.count().saturating_sub(1).min(MAX_COLS);
        for (r, x) in self
            .indices
            .iter()
            .take(self.count.min(MAX_ROWS))
            .enumerate()
        {
            coeffs_row_vartime(&mut self.powers, r, x.get(), 1, cols);
        }
    }

    /// A splitter making one share per given x-coordinate, in that order.
    ///
    /// # Errors
    ///
    /// [`Error::ShareCountOutOfRange`] for fewer indices than the threshold or more than 255,
    /// [`Error::DuplicateIndex`] if an index repeats.
    ///
    /// # Example
    ///
    /// ```
    /// use gf256_shamir::{ShareIndex, Splitter, Threshold};
    ///
    /// let xs = [10u8, 20, 30].map(|x| ShareIndex::new(x).expect("non-zero"));
    /// let splitter = Splitter::with_indices(Threshold::try_from(2u8)?, &xs)?;
    /// let shares = splitter.split(b"k")?;
    /// assert_eq!(shares[2].index().get(), 30);
    /// # Ok::<(), gf256_shamir::Error>(())
    /// ```
    pub fn with_indices(threshold: Threshold, indices: &[ShareIndex]) -> Result<Splitter, Error> {
        let count = indices.len();
        if count < threshold.count() || count > 255 {
            return Err(Error::ShareCountOutOfRange {
                threshold: threshold.get(),
                count,
            });
        }
        ensure_distinct_vartime(indices.iter().copied())?;
        let mut stored = [ShareIndex::MIN; 255];
        for (slot, x) in stored.iter_mut().zip(indices) {
            *slot = *x;
        }
        Ok(Splitter::build(threshold, stored, count))
    }

    /// A splitter making `shares` shares at distinct x-coordinates drawn uniformly at random
    /// from `1..=255`, so that the indices do not reveal how many shares exist.
    ///
    /// # Errors
    ///
    /// [`Error::ShareCountOutOfRange`] if `shares` is below the threshold.
    ///
    /// # Example
    ///
    /// ```
    /// use gf256_shamir::{FastRng, Splitter, Threshold};
    ///
    /// let mut rng = FastRng::new()?;
    /// let splitter = Splitter::with_random_indices(Threshold::try_from(2u8)?, 3, &mut rng)?;
    /// let xs: Vec<u8> = splitter.indices().iter().map(|x| x.get()).collect();
    /// assert_eq!(xs.len(), 3);
    /// # Ok::<(), gf256_shamir::Error>(())
    /// ```
    pub fn with_random_indices<R: CryptoRng + ?Sized>(
        threshold: Threshold,
        shares: u8,
        rng: &mut R,
    ) -> Result<Splitter, Error> {
        let splitter = Splitter::new(threshold, shares)?;
        let mut indices = splitter.indices;
        // A partial Fisher–Yates shuffle of 1..=255. The positions drawn become public
        // x-coordinates; rejected draws are discarded, so the rejection loop reveals nothing.
        let mut pool: [u8; 255] = core::array::from_fn(|i| u8::try_from(i).unwrap_or(0));
        for x in &mut pool {
            *x = x.wrapping_add(1);
        }
        for i in 0..splitter.count {
            let remaining = 255usize.saturating_sub(i);
            let pick = i.saturating_add(uniform_below_vartime(rng, remaining));
            pool.swap(i, pick.min(254));
            if let (Some(slot), Some(x)) = (indices.get_mut(i), pool.get(i)) {
                *slot = ShareIndex::new(*x).unwrap_or(ShareIndex::MIN);
            }
        }
        Ok(Splitter::build(threshold, indices, splitter.count))
    }

    /// The same splitter running a given backend.
    ///
    /// # Errors
    ///
    /// [`Error::UnsupportedBackend`] if this CPU or build cannot run it.
    ///
    /// # Example
    ///
    /// ```
    /// use gf256_shamir::{Backend, Splitter, Threshold};
    ///
    /// let splitter = Splitter::new(Threshold::try_from(2u8)?, 3)?.with_backend(Backend::Soft)?;
    /// assert_eq!(splitter.backend(), Backend::Soft);
    /// # Ok::<(), gf256_shamir::Error>(())
    /// ```
    pub fn with_backend(mut self, backend: Backend) -> Result<Splitter, Error> {
        self.engine = Engine::new(backend)?;
        Ok(self)
    }

    /// The threshold.
    ///
    /// # Example
    ///
    /// ```
    /// use gf256_shamir::{Splitter, Threshold};
    ///
    /// let t = Threshold::try_from(2u8)?;
    /// assert_eq!(Splitter::new(t, 3)?.threshold(), t);
    /// # Ok::<(), gf256_shamir::Error>(())
    /// ```
    #[must_use]
    pub fn threshold(&self) -> Threshold {
        self.threshold
    }

    /// The number of shares each split makes.
    ///
    /// # Example
    ///
    /// ```
    /// use gf256_shamir::{Splitter, Threshold};
    ///
    /// assert_eq!(Splitter::new(Threshold::try_from(2u8)?, 3)?.share_count(), 3);
    /// # Ok::<(), gf256_shamir::Error>(())
    /// ```
    #[must_use]
    pub fn share_count(&self) -> usize {
        self.count
    }

    /// The x-coordinates, in the order shares are returned (and `split_into` buffers filled).
    ///
    /// # Example
    ///
    /// ```
    /// use gf256_shamir::{Splitter, Threshold};
    ///
    /// let splitter = Splitter::new(Threshold::try_from(2u8)?, 3)?;
    /// let xs: Vec<u8> = splitter.indices().iter().map(|x| x.get()).collect();
    /// assert_eq!(xs, [1, 2, 3]);
    /// # Ok::<(), gf256_shamir::Error>(())
    /// ```
    #[must_use]
    pub fn indices(&self) -> &[ShareIndex] {
        self.indices.get(..self.count).unwrap_or_default()
    }

    /// The backend in use.
    ///
    /// # Example
    ///
    /// ```
    /// use gf256_shamir::{Backend, Splitter, Threshold};
    ///
    /// let splitter = Splitter::new(Threshold::try_from(2u8)?, 3)?;
    /// assert_eq!(splitter.backend(), Backend::detect());
    /// # Ok::<(), gf256_shamir::Error>(())
    /// ```
    #[must_use]
    pub fn backend(&self) -> Backend {
        self.engine.backend()
    }

    /// Splits `secret` with this thread's [`FastRng`](crate::FastRng).
    ///
    /// # Errors
    ///
    /// [`Error::EmptySecret`] for an empty secret; [`Error::Rng`] if the operating system's
    /// generator fails while seeding this thread's generator.
    ///
    /// # Example
    ///
    /// ```
    /// use gf256_shamir::{Splitter, Threshold};
    ///
    /// let shares = Splitter::new(Threshold::try_from(2u8)?, 3)?.split(&[0x42; 32])?;
    /// assert_eq!(shares.len(), 3);
    /// assert!(shares.iter().all(|s| s.secret_len() == 32));
    /// # Ok::<(), gf256_shamir::Error>(())
    /// ```
    pub fn split(&self, secret: &[u8]) -> Result<Vec<Share>, Error> {
        if secret.is_empty() {
            return Err(Error::EmptySecret);
        }
        let mut shares = Share::zeroed_all(self.indices(), secret.len());
        with_thread_rng(|rng| self.split_core_fast(secret, shares.as_mut_slice(), rng))??;
        Ok(shares)
    }

    /// Splits `secret` drawing the polynomial coefficients from `rng`.
    ///
    /// The coefficients are raw output bytes of `rng`, so each is uniform over all 256 values
    /// if `rng` is a CSPRNG. Use a seeded generator only for tests: anyone who knows the seed
    /// and one share learns the secret.
    ///
    /// # Errors
    ///
    /// [`Error::EmptySecret`] for an empty secret.
    ///
    /// # Example
    ///
    /// ```
    /// use gf256_shamir::{FastRng, Splitter, Threshold};
    ///
    /// let mut rng = FastRng::new()?;
    /// let splitter = Splitter::new(Threshold::try_from(3u8)?, 5)?;
    /// let shares = splitter.split_with_rng(b"secret", &mut rng)?;
    /// assert_eq!(shares.len(), 5);
    /// # Ok::<(), gf256_shamir::Error>(())
    /// ```
    pub fn split_with_rng<R: CryptoRng + ?Sized>(
        &self,
        secret: &[u8],
        rng: &mut R,
    ) -> Result<Vec<Share>, Error> {
        if secret.is_empty() {
            return Err(Error::EmptySecret);
        }
        let mut shares = Share::zeroed_all(self.indices(), secret.len());
        self.split_core(secret, shares.as_mut_slice(), rng)?;
        Ok(shares)
    }

    /// Splits `secret` into caller-provided buffers, with this thread's
    /// [`FastRng`](crate::FastRng). Allocates nothing (after the first call on a thread, which
    /// creates the generator).
    ///
    /// `outputs[i]` receives the y-values of the share at `indices()[i]`; there must be
    /// exactly [`share_count`](Splitter::share_count) buffers, each as long as the secret.
    /// Pair each buffer with its index, e.g. with [`ShareRef::new`](crate::ShareRef::new).
    ///
    /// # Errors
    ///
    /// [`Error::EmptySecret`], [`Error::OutputMismatch`] for a wrong number or length of
    /// buffers, [`Error::Rng`] if seeding this thread's generator fails. Nothing is written on
    /// error.
    ///
    /// # Example
    ///
    /// ```
    /// use gf256_shamir::{Combiner, ShareRef, Splitter, Threshold};
    ///
    /// let t = Threshold::try_from(2u8)?;
    /// let splitter = Splitter::new(t, 3)?;
    /// let secret = [7u8; 32];
    /// let mut bufs = [[0u8; 32]; 3];
    /// {
    ///     let mut outputs: Vec<&mut [u8]> = bufs.iter_mut().map(|b| b.as_mut_slice()).collect();
    ///     splitter.split_into(&secret, &mut outputs)?;
    /// }
    /// let x = splitter.indices();
    /// let shares = [ShareRef::new(x[0], &bufs[0])?, ShareRef::new(x[2], &bufs[2])?];
    /// let mut recovered = [0u8; 32];
    /// Combiner::new(t).combine_into(&shares, &mut recovered)?;
    /// assert_eq!(recovered, secret);
    /// # Ok::<(), gf256_shamir::Error>(())
    /// ```
    pub fn split_into(&self, secret: &[u8], outputs: &mut [&mut [u8]]) -> Result<(), Error> {
        self.check_outputs(secret, outputs)?;
        with_thread_rng(|rng| self.split_core_fast(secret, outputs, rng))?
    }

    /// Splits `secret` into caller-provided buffers, drawing coefficients from `rng`. See
    /// [`split_into`](Splitter::split_into) for the buffer layout.
    ///
    /// # Errors
    ///
    /// [`Error::EmptySecret`], [`Error::OutputMismatch`] for a wrong number or length of
    /// buffers. Nothing is written on error.
    ///
    /// # Example
    ///
    /// ```
    /// use gf256_shamir::{FastRng, Splitter, Threshold};
    ///
    /// let splitter = Splitter::new(Threshold::try_from(2u8)?, 2)?;
    /// let (mut a, mut b) = ([0u8; 4], [0u8; 4]);
    /// splitter.split_into_with_rng(b"abcd", &mut [&mut a, &mut b], &mut FastRng::new()?)?;
    /// # Ok::<(), gf256_shamir::Error>(())
    /// ```
    pub fn split_into_with_rng<R: CryptoRng + ?Sized>(
        &self,
        secret: &[u8],
        outputs: &mut [&mut [u8]],
        rng: &mut R,
    ) -> Result<(), Error> {
        self.check_outputs(secret, outputs)?;
        self.split_core(secret, outputs, rng)
    }

    /// Validates the secret and the caller's output buffers.
    fn check_outputs(&self, secret: &[u8], outputs: &[&mut [u8]]) -> Result<(), Error> {
        if secret.is_empty() {
            return Err(Error::EmptySecret);
        }
        if outputs.len() != self.count {
            return Err(Error::OutputMismatch {
                what: "buffer count",
                expected: self.count,
                found: outputs.len(),
            });
        }
        match outputs.iter().find(|out| out.len() != secret.len()) {
            Some(out) => Err(Error::OutputMismatch {
                what: "buffer length",
                expected: secret.len(),
                found: out.len(),
            }),
            None => Ok(()),
        }
    }

    /// [`split_core`](Splitter::split_core) with this crate's generator: a large split whose
    /// shape the fused kernel handles runs [`split_fused`](Splitter::split_fused) (same shares
    /// from the same generator state), everything else the generic path.
    fn split_core_fast<O: ShareSink + ?Sized>(
        &self,
        secret: &[u8],
        sink: &mut O,
        rng: &mut FastRng,
    ) -> Result<(), Error> {
        let degree = self.threshold.count().saturating_sub(1);
        if takes_large_scratch(secret.len(), degree)
            && self.engine.backend() == Backend::Avx512Gfni
            && Fused::fuses_degree(degree)
            && let Some(fused) = Fused::detect()
        {
            return self.split_fused(fused, secret, sink, rng);
        }
        self.split_core(secret, sink, rng)
    }

    /// The large split of [`split_chunked`](Splitter::split_chunked) with `LARGE_SCRATCH`, for
    /// a degree of at most `MAX_COLS` that [`Fused::fuses_degree`] accepts: chunk by chunk, the
    /// chunk's coefficients are the keystream `rng` would hand out for the chunk's one request,
    /// generated and used in vector registers by the fused kernel, after which `rng` is
    /// advanced and re-keyed exactly as that request would have left it
    /// ([`FastRng::direct_with`]). Chunks the kernel does not take (the last one when it is not
    /// a whole number of 64-byte columns, or one whose counter would wrap its low word) run
    /// through `split_chunked` itself, which consumes the same bytes. So the shares are
    /// byte-identical to the generic path's from the same generator state (tested below).
    // Not inlined, so that small splits do not pay for (and probe the stack pages of) this
    // frame, which holds a slice for each of up to 255 shares.
    #[inline(never)]
    fn split_fused<O: ShareSink + ?Sized>(
        &self,
        fused: Fused,
        secret: &[u8],
        sink: &mut O,
        rng: &mut FastRng,
    ) -> Result<(), Error> {
        let degree = self.threshold.count().saturating_sub(1);
        let chunk_len = LARGE_SCRATCH
            .checked_div(degree)
            .unwrap_or(LARGE_SCRATCH)
            .max(1);
        let mut xs = [0u8; 255];
        for (slot, x) in xs.iter_mut().zip(self.indices()) {
            *slot = x.get();
        }
        let xs = xs.get(..self.count).unwrap_or_default();
        // Every share's whole row, gathered once: the kernel writes each chunk at its offset.
        let mut rows: [&mut [u8]; 255] = core::array::from_fn(|_| Default::default());
        let count = sink.rows(0, 0..secret.len(), &mut rows);
        let rows = rows.get_mut(..count).unwrap_or_default();
        for (chunk_index, chunk) in secret.chunks(chunk_len).enumerate() {
            let start = chunk_index.saturating_mul(chunk_len);
            let request = degree.saturating_mul(chunk.len());
            let done = rng.direct_with(request, |key, counter, next_key| {
                let stream = Keystream {
                    key,
                    counter,
                    next_key,
                };
                fused.split_chunk(stream, chunk, start, rows, xs, degree, secret.len())
            })?;
            #[cfg(test)]
            if done {
                tests::FUSED_CHUNKS.with(|n| n.set(n.get() + 1));
            }
            if !done {
                let mut part = Offset {
                    inner: &mut *rows,
                    range: start..start.saturating_add(chunk.len()),
                };
                self.split_chunked::<LARGE_SCRATCH, _, _>(chunk, &mut part, rng)?;
            }
        }
        Ok(())
    }

    /// Writes the shares' y-values into `sink`, whose rows have the secret's length.
    fn split_core<O: ShareSink + ?Sized, R: CryptoRng + ?Sized>(
        &self,
        secret: &[u8],
        sink: &mut O,
        rng: &mut R,
    ) -> Result<(), Error> {
        let degree = self.threshold.count().saturating_sub(1);
        if let Some(result) = split_small(
            self.engine,
            self.threshold,
            self.indices(),
            secret,
            sink,
            rng,
        ) {
            return result;
        }
        if takes_large_scratch(secret.len(), degree) {
            self.split_chunked::<LARGE_SCRATCH, O, R>(secret, sink, rng)
        } else if secret.len().saturating_mul(degree.min(MAX_COLS)) <= TINY_SCRATCH {
            self.split_chunked::<TINY_SCRATCH, O, R>(secret, sink, rng)
        } else {
            self.split_chunked::<SMALL_SCRATCH, O, R>(secret, sink, rng)
        }
    }

    /// The split, chunk by chunk of the secret and group by group of coefficients, with an
    /// `N`-byte scratch for one group's coefficients of one chunk.
    ///
    /// Random bytes are consumed in this order: for each chunk of the secret, for each group of
    /// up to 8 coefficient degrees (1 to 8, then 9 to 16, …), one row of `chunk length` bytes
    /// per degree. Each secret byte thus gets `threshold - 1` independent uniform coefficients.
    // Not inlined, so that small splits do not pay for (and probe the stack pages of) the large
    // variant's frame.
    #[inline(never)]
    fn split_chunked<const N: usize, O: ShareSink + ?Sized, R: CryptoRng + ?Sized>(
        &self,
        secret: &[u8],
        sink: &mut O,
        rng: &mut R,
    ) -> Result<(), Error> {
        let degree = self.threshold.count().saturating_sub(1);
        let group = degree.clamp(1, MAX_COLS);
        let chunk_len = N.checked_div(group).unwrap_or(N).max(1);
        let mut scratch = Scratch::<N>::new();
        let mut coeffs = Coeffs::ZERO;

        for (chunk_index, chunk) in secret.chunks(chunk_len).enumerate() {
            let start = chunk_index.saturating_mul(chunk_len);
            let range = start..start.saturating_add(chunk.len());
            let mut first_degree = 1usize;
            while first_degree <= degree {
                let cols = degree
                    .saturating_sub(first_degree)
                    .saturating_add(1)
                    .min(MAX_COLS);
                let random = scratch.prefix(cols.saturating_mul(chunk.len()));
                rng.fill_bytes(random);
                let mut inputs: [&[u8]; MAX_COLS] = [&[]; MAX_COLS];
                for (slot, row) in inputs.iter_mut().zip(random.chunks_exact(chunk.len())) {
                    *slot = row;
                }
                let init = if first_degree == 1 {
                    Init::Xor(chunk)
                } else {
                    Init::Accumulate
                };

                let mut first_row = 0;
                while first_row < self.count {
                    let rows = self.count.saturating_sub(first_row).min(MAX_ROWS);
                    if first_row == 0 && first_degree == 1 {
                        coeffs = self.powers;
                    } else {
                        for r in 0..rows {
                            let x = self
                                .indices
                                .get(first_row.saturating_add(r))
                                .map_or(0, |x| x.get());
                            coeffs_row_vartime(&mut coeffs, r, x, first_degree, cols);
                        }
                    }
                    let mut outputs: [&mut [u8]; MAX_ROWS] = Default::default();
                    let written = sink.rows(first_row, range.clone(), &mut outputs);
                    self.engine.dot(
                        &coeffs,
                        inputs.get(..cols).unwrap_or_default(),
                        init,
                        outputs.get_mut(..written).unwrap_or_default(),
                    )?;
                    first_row = first_row.saturating_add(MAX_ROWS);
                }
                first_degree = first_degree.saturating_add(MAX_COLS);
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Splitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Splitter")
            .field("threshold", &self.threshold.get())
            .field("indices", &self.indices())
            .field("backend", &self.backend())
            .finish()
    }
}

/// The split of a secret of at most `SMALL_LEN` bytes with a threshold of at most 9, or `None`
/// for any other shape: all coefficients drawn in one request into a stack buffer, then each
/// share evaluated at its x-coordinate straight into its output (by Horner's rule on the SIMD
/// backends, up to 8 shares at once from shared doublings on the portable one).
///
/// Random bytes are consumed exactly as by [`Splitter::split_chunked`] for such a secret (one
/// row of `len` bytes per degree, 1 to `threshold - 1`, in one request), so both paths give the
/// same shares from the same generator.
///
/// A free function of the engine and the x-coordinates, so that the one-call [`split()`] runs it
/// without building a [`Splitter`] (whose power table only the chunked path uses).
// Always inlined, with `split_small_rows`: returned through a call, the 40-byte result was
// written with a one-byte tag and copied out with 16-byte loads, a failed store-to-load forward
// that cost a sixth of a 32-byte split.
#[inline(always)]
fn split_small<O: ShareSink + ?Sized, R: CryptoRng + ?Sized>(
    engine: Engine,
    threshold: Threshold,
    indices: &[ShareIndex],
    secret: &[u8],
    sink: &mut O,
    rng: &mut R,
) -> Option<Result<(), Error>> {
    let degree = threshold.count().saturating_sub(1);
    if secret.len() > SMALL_LEN || degree > MAX_COLS {
        return None;
    }
    // Two sizes, so that a 32-byte key up to threshold 3 clears and wipes 128 bytes of stack
    // rather than 576.
    let mut short = [0u8; SMALL_BUF_SHORT];
    if let Some(rows) = SmallRows::new(&mut short, secret.len(), degree) {
        return Some(split_small_rows(engine, indices, secret, sink, rng, rows));
    }
    let mut long = [0u8; SMALL_BUF];
    SmallRows::new(&mut long, secret.len(), degree)
        .map(|rows| split_small_rows(engine, indices, secret, sink, rng, rows))
}

/// [`split_small`] once the stack buffer is chosen.
#[inline(always)]
fn split_small_rows<O: ShareSink + ?Sized, R: CryptoRng + ?Sized>(
    engine: Engine,
    indices: &[ShareIndex],
    secret: &[u8],
    sink: &mut O,
    rng: &mut R,
    mut rows: SmallRows<'_>,
) -> Result<(), Error> {
    rng.fill_bytes(rows.inputs_mut());
    rows.set_row(rows.inputs(), secret)?;
    if engine.backend() == Backend::Soft {
        // The portable kernel evaluates up to 8 shares per call, sharing the multiples of
        // each coefficient row between them.
        for (group, xs) in indices.chunks(MAX_ROWS).enumerate() {
            let mut outputs: [&mut [u8]; MAX_ROWS] = Default::default();
            let first = group.saturating_mul(MAX_ROWS);
            let written = sink.rows(first, 0..secret.len(), &mut outputs);
            let mut x = [0u8; MAX_ROWS];
            for (slot, index) in x.iter_mut().zip(xs) {
                *slot = index.get();
            }
            engine.split_small(
                &rows,
                x.get(..written).unwrap_or_default(),
                outputs.get_mut(..written).unwrap_or_default(),
            )?;
        }
        return Ok(());
    }
    for (r, x) in indices.iter().enumerate() {
        if let Some(out) = sink.row(r) {
            engine.horner_small(&rows, x.get(), out)?;
        }
    }
    Ok(())
}

/// Whether [`Splitter::split_core`] splits a secret of `len` bytes with `degree` coefficient
/// degrees through the `LARGE_SCRATCH` chunked split: too long or too high a threshold for the
/// small split, and more coefficient bytes per group of degrees than the small scratch holds.
/// The fused split takes over exactly these secrets.
fn takes_large_scratch(len: usize, degree: usize) -> bool {
    let small_split = len <= SMALL_LEN && degree <= MAX_COLS;
    !small_split && len.saturating_mul(degree.min(MAX_COLS)) > SMALL_SCRATCH
}

/// x = 1, 2, …, 255 in order: the x-coordinates of [`split()`] and [`Splitter::new`].
const SEQUENTIAL: [ShareIndex; 255] = {
    let mut table = [ShareIndex::MIN; 255];
    let mut i = 0;
    while i < 255 {
        // Evaluated at compile time: `i + 1` is 1 to 255, so the cast is exact, the index is in
        // bounds and `new` returns `Some` (an error here would fail the build, not a caller).
        #[allow(
            clippy::indexing_slicing,
            clippy::arithmetic_side_effects,
            clippy::cast_possible_truncation
        )]
        if let Some(x) = ShareIndex::new((i + 1) as u8) {
            table[i] = x;
        }
        #[allow(clippy::arithmetic_side_effects)]
        {
            i += 1;
        }
    }
    table
};

/// Row `r` of the split's scalars: `x^first_degree, x^(first_degree + 1), …` (`cols` of them)
/// for the public x-coordinate `x`.
fn coeffs_row_vartime(coeffs: &mut Coeffs, r: usize, x: u8, first_degree: usize, cols: usize) {
    let exponent = u32::try_from(first_degree).unwrap_or(0);
    let mut power = field::pow_vartime(x, exponent);
    for c in 0..cols {
        coeffs.set(r, c, power);
        power = field::mul_vartime(power, x);
    }
}

/// Fails with [`Error::DuplicateIndex`] on the first x-coordinate seen twice.
fn ensure_distinct_vartime(indices: impl Iterator<Item = ShareIndex>) -> Result<(), Error> {
    let mut seen = [0u64; 4];
    for x in indices {
        let x = x.get();
        let bit = 1u64 << (x & 63);
        let Some(word) = seen.get_mut(usize::from(x >> 6)) else {
            continue;
        };
        if *word & bit != 0 {
            return Err(Error::DuplicateIndex { index: x });
        }
        *word |= bit;
    }
    Ok(())
}

/// A uniform integer in `0..bound` (`1 <= bound <= 256`) by rejection sampling of bytes. The
/// result becomes a public x-coordinate; rejected bytes are discarded.
fn uniform_below_vartime<R: CryptoRng + ?Sized>(rng: &mut R, bound: usize) -> usize {
    let bound = bound.clamp(1, 256);
    // The largest multiple of `bound` not above 256; bytes at or above it are rejected.
    let limit = 256usize.saturating_sub(256usize.checked_rem(bound).unwrap_or(0));
    loop {
        let mut byte = [0u8; 1];
        rng.fill_bytes(&mut byte);
        let value = usize::from(byte[0]);
        if value < limit {
            return value.checked_rem(bound).unwrap_or(0);
        }
    }
}

/// Where a split writes the shares' y-values: owned shares or caller buffers.
trait ShareSink {
    /// Fills `out` with the byte range `range` of rows `first..first + N` (as many as exist)
    /// and returns how many were filled.
    fn rows<'s, const N: usize>(
        &'s mut self,
        first: usize,
        range: Range<usize>,
        out: &mut [&'s mut [u8]; N],
    ) -> usize;

    /// The whole of row `r`, if it exists.
    fn row(&mut self, r: usize) -> Option<&mut [u8]>;
}

impl ShareSink for [Share] {
    fn rows<'s, const N: usize>(
        &'s mut self,
        first: usize,
        range: Range<usize>,
        out: &mut [&'s mut [u8]; N],
    ) -> usize {
        let shares = self.get_mut(first..).unwrap_or_default();
        out.iter_mut()
            .zip(shares)
            .map(|(slot, share)| *slot = share.y_mut().get_mut(range.clone()).unwrap_or_default())
            .count()
    }

    fn row(&mut self, r: usize) -> Option<&mut [u8]> {
        self.get_mut(r).map(Share::y_mut)
    }
}

impl ShareSink for [&mut [u8]] {
    fn rows<'s, const N: usize>(
        &'s mut self,
        first: usize,
        range: Range<usize>,
        out: &mut [&'s mut [u8]; N],
    ) -> usize {
        let buffers = self.get_mut(first..).unwrap_or_default();
        out.iter_mut()
            .zip(buffers)
            .map(|(slot, buffer)| *slot = buffer.get_mut(range.clone()).unwrap_or_default())
            .count()
    }

    fn row(&mut self, r: usize) -> Option<&mut [u8]> {
        self.get_mut(r).map(|buffer| &mut **buffer)
    }
}

/// The byte range `range` of every row of another sink, seen as a sink of its own: the part of
/// a large split that one chunk writes, for running that chunk through the generic path.
struct Offset<'a, O: ?Sized> {
    inner: &'a mut O,
    range: Range<usize>,
}

impl<O: ShareSink + ?Sized> Offset<'_, O> {
    /// `range` (relative to this part) in the inner sink's coordinates, clamped to the part.
    fn shift(&self, range: Range<usize>) -> Range<usize> {
        let start = self
            .range
            .start
            .saturating_add(range.start)
            .min(self.range.end);
        let end = self
            .range
            .start
            .saturating_add(range.end)
            .min(self.range.end);
        start..end.max(start)
    }
}

impl<O: ShareSink + ?Sized> ShareSink for Offset<'_, O> {
    fn rows<'s, const N: usize>(
        &'s mut self,
        first: usize,
        range: Range<usize>,
        out: &mut [&'s mut [u8]; N],
    ) -> usize {
        let range = self.shift(range);
        self.inner.rows(first, range, out)
    }

    fn row(&mut self, r: usize) -> Option<&mut [u8]> {
        let range = self.range.clone();
        self.inner.row(r).and_then(|row| row.get_mut(range))
    }
}

/// Splits `secret` into `shares` shares at x = 1, …, `shares`, any `threshold` of which
/// reconstruct it, using the best backend and this thread's [`FastRng`](crate::FastRng).
///
/// # Errors
///
/// [`Error::ThresholdOutOfRange`] unless `2 <= threshold`, [`Error::ShareCountOutOfRange`]
/// unless `threshold <= shares`, [`Error::EmptySecret`] for an empty secret, [`Error::Rng`] if
/// seeding this thread's generator fails.
///
/// # Example
///
/// ```
/// let dek = [0x5Au8; 32];
/// let shares = gf256_shamir::split(&dek, 2, 3)?;
/// let recovered = gf256_shamir::combine(&[&shares[0], &shares[2]], 2)?;
/// assert_eq!(recovered.as_slice(), &dek);
/// # Ok::<(), gf256_shamir::Error>(())
/// ```
pub fn split(secret: &[u8], threshold: u8, shares: u8) -> Result<Vec<Share>, Error> {
    let threshold = Threshold::try_from(threshold)?;
    check_count(threshold, usize::from(shares))?;
    if secret.is_empty() {
        return Err(Error::EmptySecret);
    }
    let indices = SEQUENTIAL.get(..usize::from(shares)).unwrap_or_default();
    // A data key: the small split straight from the x-coordinates, with no `Splitter` to build.
    if secret.len() <= SMALL_LEN && threshold.count() <= MAX_COLS.saturating_add(1) {
        let mut out = Share::zeroed_all(indices, secret.len());
        let small = with_thread_rng(|rng| {
            split_small(
                Engine::detect(),
                threshold,
                indices,
                secret,
                out.as_mut_slice(),
                rng,
            )
        })?;
        if let Some(result) = small {
            return result.map(|()| out);
        }
    }
    Splitter::sequential(threshold, shares).split(secret)
}

/// Fails with [`Error::ShareCountOutOfRange`] if `count` shares cannot meet `threshold`.
fn check_count(threshold: Threshold, count: usize) -> Result<(), Error> {
    if count < threshold.count() {
        Err(Error::ShareCountOutOfRange {
            threshold: threshold.get(),
            count,
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::Cell;
    use core::convert::Infallible;
    use rand_core::{Rng, TryCryptoRng, TryRng};

    thread_local! {
        /// Chunks this thread's large splits ran through the fused kernel.
        pub(super) static FUSED_CHUNKS: Cell<usize> = const { Cell::new(0) };
    }

    /// A `FastRng` seen only through `fill_bytes`, so that a split with it takes the generic
    /// path (its type is not `FastRng`).
    struct Generic(FastRng);

    impl TryRng for Generic {
        type Error = Infallible;

        fn try_next_u32(&mut self) -> Result<u32, Infallible> {
            Ok(self.0.next_u32())
        }

        fn try_next_u64(&mut self) -> Result<u64, Infallible> {
            Ok(self.0.next_u64())
        }

        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
            self.0.fill_bytes(dst);
            Ok(())
        }
    }

    impl TryCryptoRng for Generic {}

    /// Output buffers over one backing allocation each, starting `offsets[r % 3]` bytes past a
    /// 64-byte boundary.
    fn buffers(count: usize, len: usize, offsets: [usize; 3]) -> (Vec<Vec<u8>>, Vec<usize>) {
        let backing: Vec<Vec<u8>> = vec![vec![0u8; len + 128]; count];
        let skips = backing
            .iter()
            .enumerate()
            .map(|(r, b)| (64 - (b.as_ptr() as usize) % 64) % 64 + offsets[r % 3])
            .collect();
        (backing, skips)
    }

    /// Splits `secret` with two generators from the same seed, one through the fused path
    /// (`split_core_fast` with the `FastRng` itself), one through the generic path (the same
    /// generator behind `Generic`), after the same small draws that leave both pools part
    /// read; the shares, and the generators' next output, must be identical. Returns how many
    /// chunks the fused kernel took.
    // Test patterns: the byte values wrap on purpose.
    #[allow(clippy::cast_possible_truncation)]
    fn fused_equals_generic(
        splitter: &Splitter,
        secret: &[u8],
        offsets: [usize; 3],
        pool_used: usize,
    ) -> usize {
        let seed: [u8; 48] = core::array::from_fn(|i| (i as u8).wrapping_mul(151) ^ 0x3A);
        let mut fused_rng = FastRng::deterministic(&seed, 0xE17A);
        let mut generic_rng = Generic(FastRng::deterministic(&seed, 0xE17A));
        let mut drawn = vec![0u8; pool_used];
        fused_rng.fill_bytes(&mut drawn);
        generic_rng.fill_bytes(&mut drawn);

        let len = secret.len();
        let count = splitter.share_count();
        let (mut fused_backing, skips) = buffers(count, len, offsets);
        let (mut generic_backing, generic_skips) = buffers(count, len, offsets);
        let before = FUSED_CHUNKS.with(Cell::get);
        {
            let mut outs: Vec<&mut [u8]> = fused_backing
                .iter_mut()
                .zip(&skips)
                .map(|(b, &s)| &mut b[s..s + len])
                .collect();
            splitter
                .split_core_fast(secret, outs.as_mut_slice(), &mut fused_rng)
                .unwrap();
        }
        let fused_chunks = FUSED_CHUNKS.with(Cell::get) - before;
        {
            let mut outs: Vec<&mut [u8]> = generic_backing
                .iter_mut()
                .zip(&generic_skips)
                .map(|(b, &s)| &mut b[s..s + len])
                .collect();
            splitter
                .split_into_with_rng(secret, &mut outs, &mut generic_rng)
                .unwrap();
        }
        assert_eq!(FUSED_CHUNKS.with(Cell::get) - before, fused_chunks);
        let what = format!(
            "len {len}, threshold {}, {count} shares, offsets {offsets:?}, pool {pool_used}",
            splitter.threshold().get()
        );
        for r in 0..count {
            let fused = &fused_backing[r][skips[r]..skips[r] + len];
            let generic = &generic_backing[r][generic_skips[r]..generic_skips[r] + len];
            assert!(fused == generic, "{what}: share {r} differs");
        }
        // Same state afterwards: counter, key, pool position and reseed count.
        let mut a = vec![0u8; 5000];
        let mut b = vec![0u8; 5000];
        fused_rng.fill_bytes(&mut a);
        generic_rng.fill_bytes(&mut b);
        assert!(a == b, "{what}: the generators diverged");
        fused_chunks
    }

    /// The fused split gives byte-identical shares to the generic path for the same `FastRng`
    /// state: lengths from 1 byte to over 2 MiB (odd ones, ones around the 16 KiB chunk, the
    /// 64 KiB segment and the 1 MiB reseed), thresholds 2 to 10 (fused and not), share counts
    /// up to 12, and output alignments that stream, stream after a head, or do not stream.
    // Test patterns: the byte values wrap on purpose.
    #[allow(clippy::cast_possible_truncation)]
    #[test]
    fn fused_split_equals_generic_split() {
        let fusable =
            Fused::detect().is_some() && Engine::detect().backend() == Backend::Avx512Gfni;
        let mut fused_total = 0;
        let lengths = [
            1usize,
            33,
            64,
            65,
            100,
            257,
            1000,
            4095,
            4096,
            4097,
            8191,
            8192,
            8256,
            16383,
            16384,
            16385,
            16448,
            3 * 16384 + 64,
            65535,
            65536,
            65537,
            100_001,
        ];
        for threshold in 2u8..=10 {
            for shares in [threshold, threshold + 1, 9, 12] {
                let splitter =
                    Splitter::new(Threshold::new(threshold).unwrap(), shares.max(threshold))
                        .unwrap();
                for (i, &len) in lengths.iter().enumerate() {
                    let secret: Vec<u8> = (0..len).map(|j| (j * 7 + i) as u8).collect();
                    let offsets = [[0usize; 3], [16; 3], [48, 48, 48], [1; 3], [0, 32, 7]][i % 5];
                    fused_total += fused_equals_generic(&splitter, &secret, offsets, 37 * i);
                }
            }
        }
        // Large secrets: across segments, the 1 MiB reseed and past 2 MiB, at a few shapes.
        for (threshold, shares) in [(2u8, 3u8), (3, 12), (5, 5), (9, 10), (4, 6)] {
            let splitter = Splitter::new(Threshold::new(threshold).unwrap(), shares).unwrap();
            for (i, len) in [(1usize << 20) + 17, 2 * (1 << 20) + 4160]
                .into_iter()
                .enumerate()
            {
                let secret: Vec<u8> = (0..len).map(|j| (j * 13 + 5) as u8).collect();
                for offsets in [[16usize; 3], [3, 3, 3]] {
                    fused_total += fused_equals_generic(&splitter, &secret, offsets, 100 * i);
                }
            }
        }
        println!("{fused_total} chunks through the fused kernel (fused path available: {fusable})");
        assert_eq!(fused_total > 0, fusable, "fused chunks: {fused_total}");
    }

    /// The public entry points of the fused path (`split_into`, `Splitter::split`, `split()`)
    /// make shares that reconstruct the secret, for fused and unfused shapes.
    // Test patterns: the byte values wrap on purpose.
    #[allow(clippy::cast_possible_truncation)]
    #[test]
    fn fused_entry_points_reconstruct() {
        let len = 3 * 16384 + 100;
        let secret: Vec<u8> = (0..len).map(|j| (j * 31 + 1) as u8).collect();
        for (t, n) in [(2u8, 3u8), (3, 5), (5, 9), (9, 12), (4, 4)] {
            let threshold = Threshold::new(t).unwrap();
            let splitter = Splitter::new(threshold, n).unwrap();
            let owned = splitter.split(&secret).unwrap();
            let one_call = split(&secret, t, n).unwrap();
            let mut bufs = vec![vec![0u8; len]; usize::from(n)];
            let mut outs: Vec<&mut [u8]> = bufs.iter_mut().map(Vec::as_mut_slice).collect();
            splitter.split_into(&secret, &mut outs).unwrap();
            let combiner = crate::Combiner::new(threshold);
            let k = usize::from(t);
            assert_eq!(
                combiner
                    .combine(&owned[n as usize - k..])
                    .unwrap()
                    .as_slice(),
                secret
            );
            assert_eq!(combiner.combine(&one_call[..k]).unwrap().as_slice(), secret);
            let refs: Vec<crate::ShareRef<'_>> = bufs
                .iter()
                .zip(splitter.indices())
                .take(k)
                .map(|(b, x)| crate::ShareRef::new(*x, b).unwrap())
                .collect();
            let mut recovered = vec![0u8; len];
            combiner.combine_into(&refs, &mut recovered).unwrap();
            assert_eq!(recovered, secret);
            // Fresh coefficients each time: the same secret never gives the same shares.
            assert_ne!(owned[0].expose_secret(), one_call[0].expose_secret());
        }
    }

    #[test]
    fn distinctness_check_finds_the_repeat() {
        let xs = [1u8, 64, 200, 64].map(|x| ShareIndex::new(x).unwrap());
        assert_eq!(
            ensure_distinct_vartime(xs.into_iter()),
            Err(Error::DuplicateIndex { index: 64 })
        );
        let all = (1..=255u8).map(|x| ShareIndex::new(x).unwrap());
        assert_eq!(ensure_distinct_vartime(all), Ok(()));
    }

    #[test]
    fn debug_shows_only_public_configuration() {
        let splitter = Splitter::new(Threshold::new(2).unwrap(), 3)
            .unwrap()
            .with_backend(Backend::Soft)
            .unwrap();
        assert_eq!(
            format!("{splitter:?}"),
            "Splitter { threshold: 2, indices: [ShareIndex(1), ShareIndex(2), ShareIndex(3)], \
             backend: Soft }"
        );
    }
}
