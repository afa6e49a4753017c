//! The arithmetic engines: a portable constant-time reference and x86_64 SIMD paths.
//!
//! Everything the crate computes on secret bytes is one operation, [`Engine::dot`]: a block
//! of outputs, each the XOR of an initial value and of input vectors multiplied by public
//! scalars,
//!
//! ```text
//! out[r] = init[r] ^ c[r][0]·in[0] ^ c[r][1]·in[1] ^ … ^ c[r][k-1]·in[k-1]
//! ```
//!
//! Splitting is this with the secret as `init` and the random coefficient vectors as inputs;
//! combining and recovering are this with the shares as inputs and Lagrange coefficients as
//! scalars. Vectors of at most [`SMALL_LEN`] bytes also have fixed-size kernels,
//! [`Engine::horner_small`] (a split's share, by Horner's rule) and [`Engine::dot_small`], over
//! operands packed in one stack buffer ([`SmallRows`]). This module also holds [`wipe`], the
//! volatile wipe of share buffers. The scalars are public (functions of share x-coordinates); the vectors are secret.
//! No backend branches on, or indexes memory with, a vector byte.
//!
//! The backend is chosen once (by [`Backend::detect`] or forced and checked by
//! `with_backend`) and kept in an [`Engine`], which can only be built for a backend the CPU
//! supports. That is the invariant every `unsafe` call to a `#[target_feature]` function below
//! relies on.

// The x86_64 backends call `#[target_feature]` functions and SIMD load/store intrinsics, which
// are `unsafe`. This module (and only this module) allows it; every block says why it is sound.
#![allow(unsafe_code)]

use core::fmt;

use zeroize::Zeroize;

use crate::error::Error;

mod soft;
#[cfg(all(target_arch = "x86_64", not(gf256_backend = "soft")))]
mod x86;

/// The most input vectors one kernel call combines. Larger thresholds are processed in groups
/// of this many, accumulating into the outputs.
pub(crate) const MAX_COLS: usize = 8;
/// The most output vectors one kernel call writes.
pub(crate) const MAX_ROWS: usize = 8;

/// An implementation of the field arithmetic on byte vectors.
///
/// All backends compute byte-identical results (this is property-tested against `Soft` for
/// every backend the host supports). They differ in speed and in the instructions they need.
/// [`Backend::detect`] picks the fastest one this CPU supports; `Splitter::with_backend` and
/// `Combiner::with_backend` force one (an error if it is unsupported), which tests and
/// benchmarks use.
///
/// # Example
///
/// ```
/// use gf256_shamir::Backend;
///
/// let best = Backend::detect();
/// assert!(best.is_supported());
/// assert!(Backend::Soft.is_supported());
/// println!("splitting with {best}");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// Portable constant-time code: SWAR over `u64` words, each product built from bit masks
    /// of the secret bytes and the public scalar's multiples. Runs everywhere; always used under
    /// `--cfg gf256_backend="soft"`.
    Soft,
    /// x86_64 SSSE3: 16-byte vectors, products looked up with `PSHUFB` in two 16-entry nibble
    /// tables per scalar, held in registers.
    Ssse3,
    /// x86_64 AVX2: as `Ssse3` with 32-byte vectors (`VPSHUFB`).
    Avx2,
    /// x86_64 GFNI with AVX2: 32-byte vectors multiplied by `VGF2P8MULB`.
    Avx2Gfni,
    /// x86_64 GFNI with AVX-512BW: 64-byte vectors multiplied by `VGF2P8MULB`, tails handled
    /// with masked loads and stores.
    Avx512Gfni,
}

impl Backend {
    /// Every backend, slowest first. Not all of them are supported on a given machine: filter
    /// with [`Backend::is_supported`].
    ///
    /// # Example
    ///
    /// ```
    /// use gf256_shamir::Backend;
    ///
    /// let supported: Vec<Backend> = Backend::ALL
    ///     .iter()
    ///     .copied()
    ///     .filter(|b| b.is_supported())
    ///     .collect();
    /// assert!(supported.contains(&Backend::Soft));
    /// ```
    pub const ALL: [Backend; 5] = [
        Backend::Soft,
        Backend::Ssse3,
        Backend::Avx2,
        Backend::Avx2Gfni,
        Backend::Avx512Gfni,
    ];

    /// The fastest backend this CPU supports, or [`Backend::Soft`] when the crate was built
    /// with `--cfg gf256_backend="soft"` or for a target without SIMD backends.
    ///
    /// Detection uses the standard library's cached CPUID results, so calling this again is
    /// cheap; splitters and combiners call it once, when they are built.
    ///
    /// # Example
    ///
    /// ```
    /// use gf256_shamir::Backend;
    ///
    /// assert!(Backend::detect().is_supported());
    /// ```
    #[must_use]
    pub fn detect() -> Backend {
        for backend in Backend::ALL.iter().rev() {
            if backend.is_supported() {
                return *backend;
            }
        }
        Backend::Soft
    }

    /// Whether this CPU and this build can run the backend.
    ///
    /// # Example
    ///
    /// ```
    /// use gf256_shamir::Backend;
    ///
    /// // The portable backend runs everywhere.
    /// assert!(Backend::Soft.is_supported());
    /// ```
    #[must_use]
    pub fn is_supported(self) -> bool {
        match self {
            Backend::Soft => true,
            #[cfg(all(target_arch = "x86_64", not(gf256_backend = "soft")))]
            other => x86::is_supported(other),
            #[cfg(not(all(target_arch = "x86_64", not(gf256_backend = "soft"))))]
            _ => false,
        }
    }

    /// A short lowercase name, as used in benchmark series and error messages.
    ///
    /// # Example
    ///
    /// ```
    /// use gf256_shamir::Backend;
    ///
    /// assert_eq!(Backend::Avx2Gfni.name(), "avx2-gfni");
    /// assert_eq!(Backend::Avx2Gfni.to_string(), "avx2-gfni");
    /// ```
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Backend::Soft => "soft",
            Backend::Ssse3 => "ssse3",
            Backend::Avx2 => "avx2",
            Backend::Avx2Gfni => "avx2-gfni",
            Backend::Avx512Gfni => "avx512-gfni",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A backend this CPU is known to support. The only way to build one is [`Engine::new`], which
/// checks; the `unsafe` calls in [`Engine::dot`] rely on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Engine(Backend);

impl Engine {
    /// The engine for `backend`, if this CPU and build support it.
    pub(crate) fn new(backend: Backend) -> Result<Engine, Error> {
        if backend.is_supported() {
            Ok(Engine(backend))
        } else {
            Err(Error::UnsupportedBackend { backend })
        }
    }

    /// The engine for the best supported backend, detected once per process.
    ///
    /// The one-call `split` and `combine` build an engine per call; walking the backends'
    /// feature checks each time was a measurable part of a 32-byte split.
    #[inline]
    pub(crate) fn detect() -> Engine {
        use core::sync::atomic::{AtomicU8, Ordering};
        /// 0 before the first detection, then 1 + the position of the backend in `ALL`. Every
        /// thread detects the same backend, so a race only repeats the detection.
        static DETECTED: AtomicU8 = AtomicU8::new(0);
        let cached = DETECTED.load(Ordering::Relaxed);
        if let Some(backend) = usize::from(cached)
            .checked_sub(1)
            .and_then(|i| Backend::ALL.get(i))
        {
            return Engine(*backend);
        }
        let backend = Backend::detect();
        let position = Backend::ALL.iter().position(|b| *b == backend);
        if let Some(tag) = position.and_then(|i| u8::try_from(i.saturating_add(1)).ok()) {
            DETECTED.store(tag, Ordering::Relaxed);
        }
        Engine(backend)
    }

    /// The backend this engine runs.
    pub(crate) fn backend(self) -> Backend {
        self.0
    }

    /// Computes `out[r] = init[r] ^ Σ_c coeffs[r][c] · inputs[c]` for every output `r`.
    ///
    /// `inputs` holds 0 to [`MAX_COLS`] vectors and `outputs` 1 to [`MAX_ROWS`]; all of them,
    /// and the base vector of [`Init::Xor`] and [`Init::Relative`], have the same length. Callers guarantee this; if
    /// they did not, this returns an error and writes nothing rather than panicking.
    ///
    /// Constant time in the vector contents; the lengths, the counts and the coefficients are
    /// public and may steer loops.
    pub(crate) fn dot(
        self,
        coeffs: &Coeffs,
        inputs: &[&[u8]],
        init: Init<'_>,
        outputs: &mut [&mut [u8]],
    ) -> Result<(), Error> {
        let len = check_shape(inputs, &init, outputs)?;
        let done = match self.0 {
            Backend::Soft => 0,
            #[cfg(all(target_arch = "x86_64", not(gf256_backend = "soft")))]
            simd => {
                // SAFETY: an `Engine` is only built by `Engine::new` after `is_supported`
                // returned true for this backend on this CPU, or by `Engine::detect`, which
                // returns a supported backend; so the target features of the kernel are present.
                unsafe { x86::dot(simd, coeffs, inputs, &init, outputs, len) }
            }
            #[cfg(not(all(target_arch = "x86_64", not(gf256_backend = "soft"))))]
            _ => 0,
        };
        if done < len {
            soft::dot(coeffs, inputs, &init, outputs, done, len);
        }
        Ok(())
    }

    /// Evaluates the polynomial with the base row as constant term and input row `c` as the
    /// coefficient of degree `c + 1` at the public point `x`, by Horner's rule:
    /// `out = base ^ x·(in[0] ^ x·(in[1] ^ … ^ x·in[k-1]))`. This is a split's share at `x`
    /// with one product by `x` per coefficient and no power table.
    ///
    /// Constant time in the row contents; `x` and the lengths are public.
    ///
    /// # Errors
    ///
    /// [`Error::OutputMismatch`] if `out` is not as long as the rows (nothing is written).
    #[inline]
    pub(crate) fn horner_small(
        self,
        rows: &SmallRows<'_>,
        x: u8,
        out: &mut [u8],
    ) -> Result<(), Error> {
        check_small(rows, out)?;
        match self.0 {
            Backend::Soft => soft::horner_small(rows.buf(), rows.len, rows.inputs, x, out),
            #[cfg(all(target_arch = "x86_64", not(gf256_backend = "soft")))]
            simd => {
                // SAFETY: an `Engine` only holds a backend this CPU supports (see `dot`).
                unsafe { x86::horner_small(simd, rows.buf(), rows.len, rows.inputs, x, out) }
            }
            #[cfg(not(all(target_arch = "x86_64", not(gf256_backend = "soft"))))]
            _ => soft::horner_small(rows.buf(), rows.len, rows.inputs, x, out),
        }
        Ok(())
    }

    /// Every share of a small split at once: `outs[r]` becomes what
    /// [`horner_small`](Engine::horner_small) computes at `xs[r]`. The portable backend shares
    /// each coefficient row's multiples between the shares (see `soft::split_small`); the SIMD
    /// backends run their Horner kernel per share.
    ///
    /// Constant time in the row contents; the x-coordinates and the lengths are public.
    ///
    /// # Errors
    ///
    /// [`Error::OutputMismatch`] if `xs` and `outs` differ in number, there are more than
    /// [`MAX_ROWS`], or an output is not as long as the rows (nothing is written).
    #[inline]
    pub(crate) fn split_small(
        self,
        rows: &SmallRows<'_>,
        xs: &[u8],
        outs: &mut [&mut [u8]],
    ) -> Result<(), Error> {
        if xs.len() != outs.len() || outs.len() > MAX_ROWS {
            return Err(Error::OutputMismatch {
                what: "kernel shape",
                expected: xs.len().min(MAX_ROWS),
                found: outs.len(),
            });
        }
        for out in outs.iter() {
            check_small(rows, out)?;
        }
        if self.0 == Backend::Soft {
            soft::split_small(rows.buf(), rows.len, rows.inputs, xs, outs);
            return Ok(());
        }
        for (x, out) in xs.iter().zip(outs.iter_mut()) {
            self.horner_small(rows, *x, out)?;
        }
        Ok(())
    }

    /// `out = base ^ Σ_c scalars[c] · (in[c] ^ base)` over the small rows: interpolation in
    /// the relative form of [`Init::Relative`].
    ///
    /// Constant time in the row contents; the scalars and the lengths are public.
    ///
    /// # Errors
    ///
    /// [`Error::OutputMismatch`] if `out` is not as long as the rows (nothing is written).
    #[inline]
    pub(crate) fn dot_small(
        self,
        rows: &SmallRows<'_>,
        scalars: &[u8; MAX_COLS],
        out: &mut [u8],
    ) -> Result<(), Error> {
        check_small(rows, out)?;
        match self.0 {
            Backend::Soft => soft::dot_small(rows.buf(), rows.len, rows.inputs, scalars, out),
            #[cfg(all(target_arch = "x86_64", not(gf256_backend = "soft")))]
            simd => {
                // SAFETY: an `Engine` only holds a backend this CPU supports (see `dot`).
                unsafe { x86::dot_small(simd, rows.buf(), rows.len, rows.inputs, scalars, out) }
            }
            #[cfg(not(all(target_arch = "x86_64", not(gf256_backend = "soft"))))]
            _ => soft::dot_small(rows.buf(), rows.len, rows.inputs, scalars, out),
        }
        Ok(())
    }
}

/// The fused large split: the coefficients of a split chunk generated as AES-256-CTR keystream
/// in vector registers (VAES) and evaluated there (GFNI), never written to memory.
///
/// Only [`Fused::detect`] builds one, after checking that the CPU has VAES, AES-NI, AVX-512F,
/// AVX-512BW and GFNI; the `unsafe` call in [`Fused::split_chunk`] relies on that.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
// Never built in soft-only builds or on other targets, where `detect` returns `None`.
#[cfg_attr(
    not(all(target_arch = "x86_64", not(gf256_backend = "soft"))),
    allow(dead_code)
)]
pub(crate) struct Fused(());

impl Fused {
    /// Whether the fused kernel handles `degree` coefficient degrees (threshold − 1): the
    /// degrees whose chunk of a large split is a whole number of 64-byte columns (the chunk is
    /// `16 KiB / degree` long, see `split.rs`), so that every coefficient row starts on a
    /// counter block.
    pub(crate) fn fuses_degree(degree: usize) -> bool {
        matches!(degree, 1 | 2 | 4 | 8)
    }

    /// The fused kernel, if this CPU and build can run it. Called once per large split; the
    /// standard library caches the CPU features it checks.
    #[inline]
    pub(crate) fn detect() -> Option<Fused> {
        #[cfg(all(target_arch = "x86_64", not(gf256_backend = "soft")))]
        {
            x86::fused::is_supported().then_some(Fused(()))
        }
        #[cfg(not(all(target_arch = "x86_64", not(gf256_backend = "soft"))))]
        {
            None
        }
    }

    /// One chunk of a large split, written to bytes `start .. start + L` (`L = secret.len()`)
    /// of every output: `outputs[r] = secret ^ Σ_c coef_c · xs[r]^(c + 1)`, where
    /// coefficient row `c` is bytes `c·L .. (c + 1)·L` of the AES-256-CTR keystream under
    /// `stream.key` from the counter block `stream.counter`, exactly as `FastRng` would produce
    /// them for one direct request of `degree · L` bytes. The keystream of the two blocks after
    /// the request goes to `stream.next_key` (`FastRng`'s next key).
    ///
    /// Returns `Ok(false)`, having written nothing, when the kernel does not apply: a degree
    /// [`Fused::fuses_degree`] rejects, a length that is zero or not a multiple of 64, or a
    /// counter whose low 64 bits would wrap within the request (the vector counters do not
    /// carry into the high word). The caller then takes the generic path, which handles all of
    /// these. Outputs are streamed (non-temporal stores) when `total_len`, the whole secret's
    /// length, is large.
    ///
    /// Constant time in the secret and the keystream; lengths, addresses and x-coordinates are
    /// public.
    ///
    /// # Errors
    ///
    /// [`Error::OutputMismatch`] if an output does not have those bytes or `xs` and
    /// `outputs` differ in number (nothing is written).
    // The key, the counter, the chunk and where it goes, the shares and the whole secret's
    // length are all distinct inputs of the one operation.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn split_chunk(
        self,
        stream: Keystream<'_>,
        secret: &[u8],
        start: usize,
        outputs: &mut [&mut [u8]],
        xs: &[u8],
        degree: usize,
        total_len: usize,
    ) -> Result<bool, Error> {
        let len = secret.len();
        if xs.len() != outputs.len() {
            return Err(Error::OutputMismatch {
                what: "kernel shape",
                expected: xs.len(),
                found: outputs.len(),
            });
        }
        let end = start.saturating_add(len);
        if let Some(found) = outputs.iter().map(|out| out.len()).find(|n| *n < end) {
            return Err(Error::OutputMismatch {
                what: "kernel shape",
                expected: end,
                found,
            });
        }
        let blocks = degree
            .checked_mul(len >> 4)
            .and_then(|n| u64::try_from(n).ok());
        let lo = u64::try_from(stream.counter & u128::from(u64::MAX)).unwrap_or(u64::MAX);
        let fits = blocks.is_some_and(|n| lo.checked_add(n).is_some());
        if !Fused::fuses_degree(degree) || len == 0 || len & 63 != 0 || !fits {
            return Ok(false);
        }
        #[cfg(all(target_arch = "x86_64", not(gf256_backend = "soft")))]
        {
            let streamed = total_len >= x86::STREAM_MIN;
            // SAFETY: a `Fused` is only built by `detect` after `x86::fused::is_supported`
            // confirmed VAES, AES-NI, AVX-512F, AVX-512BW and GFNI on this CPU; the shape checks
            // above are the kernel's documented preconditions.
            unsafe {
                x86::fused::split_chunk(stream, secret, start, outputs, xs, degree, streamed);
            }
            Ok(true)
        }
        #[cfg(not(all(target_arch = "x86_64", not(gf256_backend = "soft"))))]
        {
            let _ = (stream, start, total_len);
            Ok(false)
        }
    }
}

/// The generator state a fused chunk runs from: `FastRng`'s current key and counter, and where
/// the keystream of its next key goes.
// Only the x86_64 kernel reads the key and writes the next key; soft-only builds never do.
#[cfg_attr(
    not(all(target_arch = "x86_64", not(gf256_backend = "soft"))),
    allow(dead_code)
)]
pub(crate) struct Keystream<'a> {
    /// The AES-256 key.
    pub(crate) key: &'a [u8; 32],
    /// The first counter block of the request.
    pub(crate) counter: u128,
    /// Receives the keystream of the two blocks after the request.
    pub(crate) next_key: &'a mut [u8; 32],
}

/// The longest vector the fixed-size small kernels ([`Engine::horner_small`],
/// [`Engine::dot_small`]) handle: a 32- or 64-byte key, the case that matters most, pays no
/// chunking, no scalar matrix and no per-output dispatch.
pub(crate) const SMALL_LEN: usize = 64;

/// Bytes of the larger [`SmallRows`] buffer: up to [`MAX_COLS`] input rows and the base row of
/// [`SMALL_LEN`] bytes, packed, with room behind the last row for a whole 64-byte block load.
pub(crate) const SMALL_BUF: usize = (MAX_COLS + 1) * SMALL_LEN;

/// Bytes of the smaller [`SmallRows`] buffer, enough for a 32-byte key up to threshold 3: cheaper
/// to clear and to wipe than [`SMALL_BUF`].
pub(crate) const SMALL_BUF_SHORT: usize = 128;

/// The operands of one small kernel call: `inputs` rows of `len` bytes packed back to back,
/// then the base row, in a stack buffer borrowed from the caller and wiped on drop.
///
/// The buffer is borrowed rather than owned so that it is never moved: a move would copy
/// secret bytes to another stack slot that nothing wipes.
///
/// Packing at stride `len` (not 64) keeps a split's random coefficients exactly as the
/// generator produced them, in one fill. The kernels load each row as whole vectors (16, 32 or
/// 64 bytes, rounded up from `len`); the bytes past the row's end (the next row, or zeros) only
/// reach vector lanes that are never stored. [`SmallRows::new`] only accepts shapes for which
/// every such load stays inside the buffer.
pub(crate) struct SmallRows<'a> {
    buf: &'a mut [u8],
    len: usize,
    inputs: usize,
}

impl<'a> SmallRows<'a> {
    /// Rows for `inputs` input vectors of `len` bytes in `buf` (all zero), or `None` unless
    /// `1 <= len <= SMALL_LEN`, `inputs <= MAX_COLS`, and the last row's block load fits in
    /// `buf`.
    #[inline(always)]
    pub(crate) fn new(buf: &'a mut [u8], len: usize, inputs: usize) -> Option<SmallRows<'a>> {
        if len == 0 || len > SMALL_LEN || inputs > MAX_COLS {
            return None;
        }
        // The widest load any kernel makes for a row of `len` bytes (see the kernels).
        let block = if len <= 32 { 32 } else { 64 };
        if inputs.checked_mul(len)?.checked_add(block)? > buf.len() {
            return None;
        }
        Some(SmallRows { buf, len, inputs })
    }

    /// The vector length.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The number of input rows.
    #[inline]
    pub(crate) fn inputs(&self) -> usize {
        self.inputs
    }

    /// All input rows, back to back (`inputs · len` bytes).
    #[inline]
    pub(crate) fn inputs_mut(&mut self) -> &mut [u8] {
        let end = self.inputs.saturating_mul(self.len);
        self.buf.get_mut(..end).unwrap_or_default()
    }

    /// Copies `src` into row `i` (input `i` for `i < inputs`, the base row for
    /// `i == inputs`).
    ///
    /// # Errors
    ///
    /// [`Error::OutputMismatch`] if `src` is not `len` bytes long or there is no row `i`.
    #[inline]
    pub(crate) fn set_row(&mut self, i: usize, src: &[u8]) -> Result<(), Error> {
        let len = self.len;
        let start = i.saturating_mul(len);
        let row = self
            .buf
            .get_mut(start..start.saturating_add(len))
            .filter(|row| i <= self.inputs && row.len() == src.len());
        let Some(row) = row else {
            return Err(Error::OutputMismatch {
                what: "kernel shape",
                expected: len,
                found: src.len(),
            });
        };
        // A 32-byte key is the common case: a fixed-size copy is two register moves, where
        // `copy_from_slice` of a run-time length is a call into `memcpy`.
        match (row.first_chunk_mut::<32>(), src.first_chunk::<32>()) {
            (Some(dst), Some(bytes)) if len == 32 => *dst = *bytes,
            _ => row.copy_from_slice(src),
        }
        Ok(())
    }

    /// The whole buffer, for the kernels' block loads.
    #[inline(always)]
    fn buf(&self) -> &[u8] {
        self.buf
    }
}

impl Drop for SmallRows<'_> {
    fn drop(&mut self) {
        let used = self.inputs.saturating_add(1).saturating_mul(self.len);
        if let Some(used) = self.buf.get_mut(..used) {
            used.zeroize();
        }
    }
}

/// Overwrites `buf` with zeros in a way the compiler may not remove: volatile byte stores up to
/// an 8-byte boundary, volatile aligned 8-byte stores, volatile byte stores for the tail, then a
/// compiler fence.
///
/// For the short buffers of shares (a 32-byte key's share is 33 bytes, in an allocation the
/// allocator aligns to 16) this is five plain stores, where `zeroize`'s slice wipe is a call
/// into `memset` plus an optimization barrier. (A volatile store of a `[u8; 8]` compiles to a
/// round trip through the stack, so the words are written as aligned `u64`s.)
pub(crate) fn wipe(buf: &mut [u8]) {
    // The shares of 32- and 64-byte keys: one fixed-size store, with no alignment search.
    if let Ok(share) = <&mut [u8; 33]>::try_from(&mut *buf) {
        return wipe_exact(share);
    }
    if let Ok(share) = <&mut [u8; 65]>::try_from(&mut *buf) {
        return wipe_exact(share);
    }
    // SAFETY: every bit pattern is a valid `u8` and a valid `u64`, so viewing the aligned middle
    // of the buffer as `u64`s is sound; `align_to_mut` only hands out aligned, in-bounds,
    // non-overlapping parts of `buf`.
    let (head, words, tail) = unsafe { buf.align_to_mut::<u64>() };
    for byte in head.iter_mut().chain(tail.iter_mut()) {
        let ptr: *mut u8 = byte;
        // SAFETY: `ptr` comes from a `&mut u8`, so it is valid for writes, aligned and not
        // aliased for the duration of the write.
        unsafe { core::ptr::write_volatile(ptr, 0) };
    }
    for word in words {
        let ptr: *mut u64 = word;
        // SAFETY: `ptr` comes from a `&mut u64`, so it is valid for writes, aligned for `u64`
        // and not aliased for the duration of the write.
        unsafe { core::ptr::write_volatile(ptr, 0) };
    }
    core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
}

/// [`wipe`] of an array whose length is known at compile time: one volatile store of the whole
/// array, which compiles to a few vector and byte stores.
#[inline(always)]
fn wipe_exact<const N: usize>(array: &mut [u8; N]) {
    let ptr: *mut [u8; N] = array;
    // SAFETY: `ptr` comes from a `&mut [u8; N]`, so it is valid for writes, aligned and not
    // aliased for the duration of the write; all zeros is a valid `[u8; N]`.
    unsafe { core::ptr::write_volatile(ptr, [0u8; N]) };
    core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
}

/// Fills `dst` (a whole number of 16-byte blocks) with the big-endian 128-bit counter blocks
/// `counter`, `counter + 1`, … for AES-CTR, and returns the counter after the last block.
///
/// With AVX-512BW, four blocks are formed and byte-swapped per vector store; elsewhere, and for
/// the blocks where the low 64 bits wrap, block by block. Both write the same bytes (tested
/// against each other and, through `FastRng`, against NIST's CTR-AES256 vectors). Counters are
/// public: they are the cipher's input, not its output.
pub(crate) fn counter_blocks(dst: &mut [u8], counter: u128) -> u128 {
    let (blocks, _) = dst.as_chunks_mut::<16>();
    let count = u128::try_from(blocks.len()).unwrap_or(u128::MAX);
    let done = vector_counter_blocks(blocks.as_flattened_mut(), counter) >> 4;
    let mut next = counter.wrapping_add(u128::try_from(done).unwrap_or(0));
    for block in blocks.iter_mut().skip(done) {
        *block = next.to_be_bytes();
        next = next.wrapping_add(1);
    }
    counter.wrapping_add(count)
}

/// The vector part of [`counter_blocks`]: how many bytes of whole counter blocks it wrote from
/// the front of `dst` (0 where there is no vector path).
#[cfg(all(target_arch = "x86_64", not(gf256_backend = "soft")))]
fn vector_counter_blocks(dst: &mut [u8], counter: u128) -> usize {
    // The vector path adds to the low word only, so it runs when that cannot wrap.
    let hi = u64::try_from(counter >> 64).unwrap_or(0);
    let lo = u64::try_from(counter & u128::from(u64::MAX)).unwrap_or(0);
    let blocks = dst.len() >> 4;
    if u64::try_from(blocks).is_ok_and(|n| lo.checked_add(n).is_some()) && x86::has_counter_blocks()
    {
        // SAFETY: `has_counter_blocks` just confirmed AVX-512F and AVX-512BW.
        unsafe { x86::counter_blocks(dst, hi, lo) }
    } else {
        0
    }
}

/// The vector part of [`counter_blocks`]: none in this build.
#[cfg(not(all(target_arch = "x86_64", not(gf256_backend = "soft"))))]
fn vector_counter_blocks(_dst: &mut [u8], _counter: u128) -> usize {
    0
}

/// The scalars of one kernel call: `c[r][col]` multiplies input `col` into output `r`. Entries
/// outside the call's rows and columns are ignored.
#[derive(Clone, Copy)]
pub(crate) struct Coeffs(pub(crate) [[u8; MAX_COLS]; MAX_ROWS]);

impl Coeffs {
    /// All zero.
    pub(crate) const ZERO: Coeffs = Coeffs([[0; MAX_COLS]; MAX_ROWS]);

    /// The scalar at row `r`, column `c` (0 outside the matrix).
    #[inline]
    pub(crate) fn get(&self, r: usize, c: usize) -> u8 {
        self.0
            .get(r)
            .and_then(|row| row.get(c))
            .copied()
            .unwrap_or(0)
    }

    /// Row `r` (all zero outside the matrix).
    // Only the x86_64 GFNI kernels read whole rows; soft-only builds have no caller.
    #[cfg_attr(
        not(all(target_arch = "x86_64", not(gf256_backend = "soft"))),
        allow(dead_code)
    )]
    #[inline]
    pub(crate) fn row(&self, r: usize) -> &[u8; MAX_COLS] {
        const ZERO_ROW: [u8; MAX_COLS] = [0; MAX_COLS];
        self.0.get(r).unwrap_or(&ZERO_ROW)
    }

    /// Sets the scalar at row `r`, column `c` (ignored outside the matrix).
    #[inline]
    pub(crate) fn set(&mut self, r: usize, c: usize, value: u8) {
        if let Some(slot) = self.0.get_mut(r).and_then(|row| row.get_mut(c)) {
            *slot = value;
        }
    }
}

/// What each output starts from before the products are added.
#[derive(Clone, Copy)]
pub(crate) enum Init<'a> {
    /// Zero: the outputs are overwritten.
    Zero,
    /// The same vector for every output (the secret, when splitting).
    Xor(&'a [u8]),
    /// The output's current contents: accumulate into it (for input groups after the first).
    Accumulate,
    /// The same vector `b` for every output, with every input taken relative to it:
    /// `out[r] = b ^ Σ_c c[r][c] · (in[c] ^ b)`. Interpolation uses it: the Lagrange
    /// coefficients of `t` points sum to 1, so `Σ_j λ_j·y_j = y_t ^ Σ_{j<t} λ_j·(y_j ^ y_t)`,
    /// one product fewer per byte.
    Relative(&'a [u8]),
}

/// Checks that a small kernel's output is as long as its rows.
fn check_small(rows: &SmallRows<'_>, out: &[u8]) -> Result<(), Error> {
    if out.len() == rows.len {
        Ok(())
    } else {
        Err(Error::OutputMismatch {
            what: "kernel shape",
            expected: rows.len,
            found: out.len(),
        })
    }
}

/// Checks the shape invariants of [`Engine::dot`] and returns the common length.
fn check_shape(inputs: &[&[u8]], init: &Init<'_>, outputs: &[&mut [u8]]) -> Result<usize, Error> {
    let shape_error = |expected: usize, found: usize| Error::OutputMismatch {
        what: "kernel shape",
        expected,
        found,
    };
    if inputs.len() > MAX_COLS {
        return Err(shape_error(MAX_COLS, inputs.len()));
    }
    if outputs.is_empty() || outputs.len() > MAX_ROWS {
        return Err(shape_error(MAX_ROWS, outputs.len()));
    }
    let len = outputs.first().map_or(0, |out| out.len());
    for found in outputs.iter().map(|out| out.len()) {
        if found != len {
            return Err(shape_error(len, found));
        }
    }
    for found in inputs.iter().map(|input| input.len()) {
        if found != len {
            return Err(shape_error(len, found));
        }
    }
    if let Init::Xor(base) | Init::Relative(base) = init
        && base.len() != len
    {
        return Err(shape_error(len, base.len()));
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field;

    /// Byte-by-byte reference of `dot`, using the field's scalar multiply.
    fn dot_reference(
        coeffs: &Coeffs,
        inputs: &[Vec<u8>],
        base: Option<&[u8]>,
        outputs: &mut [Vec<u8>],
        accumulate: bool,
    ) {
        for (r, out) in outputs.iter_mut().enumerate() {
            for (i, byte) in out.iter_mut().enumerate() {
                let mut acc = if accumulate { *byte } else { 0 };
                if let Some(base) = base {
                    acc ^= base[i];
                }
                for (c, input) in inputs.iter().enumerate() {
                    acc ^= field::mul(coeffs.get(r, c), input[i]);
                }
                *byte = acc;
            }
        }
    }

    /// A tiny deterministic generator so these unit tests need no dependency.
    fn bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[3]
            })
            .collect()
    }

    #[test]
    fn every_supported_backend_matches_the_reference() {
        for backend in Backend::ALL.into_iter().filter(|b| b.is_supported()) {
            let engine = Engine::new(backend).unwrap();
            for len in [
                1usize, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 200, 1000,
            ] {
                for (rows, cols) in [(1, 0), (1, 1), (3, 1), (1, 2), (5, 4), (8, 8), (2, 7)] {
                    for mode in 0..4 {
                        let seed = (len * 131 + rows * 17 + cols * 7 + mode) as u64;
                        let mut coeffs = Coeffs::ZERO;
                        for r in 0..rows {
                            for c in 0..cols {
                                coeffs.set(r, c, bytes(seed ^ (r * 8 + c) as u64, 1)[0]);
                            }
                        }
                        let inputs: Vec<Vec<u8>> = (0..cols)
                            .map(|c| bytes(seed + 100 + c as u64, len))
                            .collect();
                        let base = bytes(seed + 50, len);
                        let initial: Vec<Vec<u8>> = (0..rows)
                            .map(|r| bytes(seed + 200 + r as u64, len))
                            .collect();

                        let mut expected = initial.clone();
                        // Relative inputs: the reference is given them already shifted.
                        let shifted: Vec<Vec<u8>> = inputs
                            .iter()
                            .map(|input| input.iter().zip(&base).map(|(a, b)| a ^ b).collect())
                            .collect();
                        dot_reference(
                            &coeffs,
                            if mode == 3 { &shifted } else { &inputs },
                            (mode == 1 || mode == 3).then_some(base.as_slice()),
                            &mut expected,
                            mode == 2,
                        );

                        let mut actual = initial.clone();
                        let input_refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
                        let mut output_refs: Vec<&mut [u8]> =
                            actual.iter_mut().map(Vec::as_mut_slice).collect();
                        let init = match mode {
                            0 => Init::Zero,
                            1 => Init::Xor(&base),
                            2 => Init::Accumulate,
                            _ => Init::Relative(&base),
                        };
                        engine
                            .dot(&coeffs, &input_refs, init, &mut output_refs)
                            .unwrap();
                        assert_eq!(
                            actual, expected,
                            "{backend}: len {len}, {rows}x{cols}, mode {mode}"
                        );
                    }
                }
            }
        }
    }

    /// The small kernels against the field's scalar multiply, for every supported backend,
    /// every length up to `SMALL_LEN`, every input count and both buffer sizes.
    #[test]
    fn small_kernels_match_the_reference() {
        for backend in Backend::ALL.into_iter().filter(|b| b.is_supported()) {
            let engine = Engine::new(backend).unwrap();
            for len in 1..=SMALL_LEN {
                for inputs in 0..=MAX_COLS {
                    let seed = (len * 31 + inputs) as u64;
                    let data = bytes(seed, (inputs + 1) * len);
                    let mut short = [0u8; SMALL_BUF_SHORT];
                    let mut long = [0u8; SMALL_BUF];
                    let rows = match SmallRows::new(&mut short, len, inputs) {
                        Some(rows) => Some(rows),
                        None => SmallRows::new(&mut long, len, inputs),
                    };
                    let mut rows = rows.expect("every shape fits the long buffer");
                    for i in 0..=inputs {
                        rows.set_row(i, &data[i * len..(i + 1) * len]).unwrap();
                    }
                    let row = |i: usize| &data[i * len..(i + 1) * len];
                    for x in [1u8, 2, 3, 0x53, 0xFF] {
                        // Σ_c x^(c+1)·in[c] ^ base.
                        let expected: Vec<u8> = (0..len)
                            .map(|b| {
                                let mut acc = row(inputs)[b];
                                let mut power = x;
                                for c in 0..inputs {
                                    acc ^= field::mul(power, row(c)[b]);
                                    power = field::mul(power, x);
                                }
                                acc
                            })
                            .collect();
                        let mut out = vec![0u8; len];
                        engine.horner_small(&rows, x, &mut out).unwrap();
                        assert_eq!(out, expected, "{backend} horner len {len} k {inputs} x {x}");
                    }
                    // All shares at once (the portable kernel's shared doubling chains), for
                    // every group size up to MAX_ROWS, against Horner per share.
                    let xs = [1u8, 2, 3, 4, 5, 0x53, 0xFF, 0x80];
                    for count in 1..=MAX_ROWS {
                        let mut outs = vec![vec![0u8; len]; count];
                        let mut refs: Vec<&mut [u8]> =
                            outs.iter_mut().map(Vec::as_mut_slice).collect();
                        engine.split_small(&rows, &xs[..count], &mut refs).unwrap();
                        for (out, x) in outs.iter().zip(xs) {
                            let mut expected = vec![0u8; len];
                            engine.horner_small(&rows, x, &mut expected).unwrap();
                            assert_eq!(
                                out, &expected,
                                "{backend} split len {len} k {inputs} x {x}"
                            );
                        }
                    }
                    let mut one = vec![0u8; len];
                    assert!(
                        engine
                            .split_small(&rows, &xs[..2], &mut [&mut one])
                            .is_err()
                    );
                    let scalars: [u8; MAX_COLS] =
                        bytes(seed ^ 0xABCD, MAX_COLS).try_into().unwrap();
                    let expected: Vec<u8> = (0..len)
                        .map(|b| {
                            let base = row(inputs)[b];
                            let mut acc = base;
                            for (c, s) in scalars.iter().enumerate().take(inputs) {
                                acc ^= field::mul(*s, row(c)[b] ^ base);
                            }
                            acc
                        })
                        .collect();
                    let mut out = vec![0u8; len];
                    engine.dot_small(&rows, &scalars, &mut out).unwrap();
                    assert_eq!(out, expected, "{backend} dot len {len} k {inputs}");
                    let mut wrong = vec![0u8; len + 1];
                    assert!(engine.horner_small(&rows, 1, &mut wrong).is_err());
                    assert!(rows.set_row(inputs + 1, row(0)).is_err());
                }
            }
        }
        assert!(SmallRows::new(&mut [0u8; SMALL_BUF], SMALL_LEN + 1, 1).is_none());
        assert!(SmallRows::new(&mut [0u8; SMALL_BUF], 0, 1).is_none());
        assert!(SmallRows::new(&mut [0u8; SMALL_BUF], 1, MAX_COLS + 1).is_none());
    }

    /// Outputs long enough for the non-temporal stores of `avx512-gfni`, at a common
    /// alignment (streamed after a short head), at 64-byte alignment (no head), and at
    /// different alignments (not streamed): every backend equals `soft`.
    #[test]
    fn long_outputs_match_soft_at_every_alignment() {
        let len = 16 * 1024 + 77;
        let inputs: Vec<Vec<u8>> = (0..2).map(|c| bytes(900 + c, len)).collect();
        let input_refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
        let base = bytes(901, len);
        let mut coeffs = Coeffs::ZERO;
        for r in 0..3 {
            for c in 0..2 {
                coeffs.set(r, c, bytes((r * 2 + c) as u64, 1)[0] | 1);
            }
        }
        let soft = Engine::new(Backend::Soft).unwrap();
        for backend in Backend::ALL.into_iter().filter(|b| b.is_supported()) {
            let engine = Engine::new(backend).unwrap();
            for offsets in [[0usize, 0, 0], [5, 5, 5], [1, 2, 3], [64, 0, 128]] {
                for relative in [false, true] {
                    let run = |engine: Engine| {
                        // Over-allocate so that each output can start at any offset from a
                        // 64-byte boundary.
                        let mut backing: Vec<Vec<u8>> = vec![vec![0u8; len + 256]; 3];
                        let mut outs: Vec<&mut [u8]> = backing
                            .iter_mut()
                            .zip(offsets)
                            .map(|(b, off)| {
                                let skip = (64 - (b.as_ptr() as usize) % 64) % 64 + off;
                                &mut b[skip..skip + len]
                            })
                            .collect();
                        let init = if relative {
                            Init::Relative(&base)
                        } else {
                            Init::Xor(&base)
                        };
                        engine.dot(&coeffs, &input_refs, init, &mut outs).unwrap();
                        outs.iter().map(|o| o.to_vec()).collect::<Vec<_>>()
                    };
                    assert_eq!(
                        run(engine),
                        run(soft),
                        "{backend} offsets {offsets:?} relative {relative}"
                    );
                }
            }
        }
    }

    /// The vector counter fill against block-by-block big-endian counters, at lengths around
    /// the 4-block vector width and at counters whose low word, or the whole counter, wraps.
    #[test]
    fn counter_blocks_match_scalar_counters() {
        for start in [
            0u128,
            0x0123_4567_89AB_CDEF_FEDC_BA98_7654_3210,
            u128::from(u64::MAX) - 5,
            u128::MAX - 2,
            (1u128 << 64) - 64,
        ] {
            for blocks in [0usize, 1, 3, 4, 5, 8, 63, 64, 65, 1024] {
                let mut dst = vec![0xA5u8; blocks * 16];
                let next = counter_blocks(&mut dst, start);
                let expected: Vec<u8> = (0..blocks)
                    .flat_map(|i| start.wrapping_add(i as u128).to_be_bytes())
                    .collect();
                assert_eq!(dst, expected, "start {start:#x}, {blocks} blocks");
                assert_eq!(next, start.wrapping_add(blocks as u128));
            }
        }
    }

    #[test]
    fn wipe_clears_every_byte() {
        // Every start offset from an 8-byte boundary, so head, words and tail all occur.
        for offset in 0..8 {
            for len in (0..40).chain([64, 65, 66]) {
                let mut buf = vec![0xA5u8; offset + len];
                wipe(&mut buf[offset..]);
                assert!(buf[..offset].iter().all(|&b| b == 0xA5), "{offset}+{len}");
                assert!(buf[offset..].iter().all(|&b| b == 0), "{offset}+{len}");
            }
        }
    }

    #[test]
    fn bad_shapes_are_errors_not_panics() {
        let engine = Engine::detect();
        let a = [1u8; 4];
        let b = [2u8; 5];
        let mut out = [0u8; 4];
        let err = engine
            .dot(&Coeffs::ZERO, &[&a, &b], Init::Zero, &mut [&mut out])
            .unwrap_err();
        assert!(matches!(err, Error::OutputMismatch { .. }));
        let err = engine
            .dot(&Coeffs::ZERO, &[&a], Init::Xor(&b), &mut [&mut out])
            .unwrap_err();
        assert!(matches!(err, Error::OutputMismatch { .. }));
        let err = engine
            .dot(&Coeffs::ZERO, &[&a], Init::Relative(&b), &mut [&mut out])
            .unwrap_err();
        assert!(matches!(err, Error::OutputMismatch { .. }));
        let err = engine
            .dot(&Coeffs::ZERO, &[&a], Init::Zero, &mut [])
            .unwrap_err();
        assert!(matches!(err, Error::OutputMismatch { .. }));
        let nine = [&a[..]; 9];
        let err = engine
            .dot(&Coeffs::ZERO, &nine, Init::Zero, &mut [&mut out])
            .unwrap_err();
        assert!(matches!(err, Error::OutputMismatch { .. }));
    }

    #[test]
    fn unsupported_backend_is_an_error() {
        for backend in Backend::ALL {
            assert_eq!(Engine::new(backend).is_ok(), backend.is_supported());
        }
        assert!(Backend::detect().is_supported());
    }
}
