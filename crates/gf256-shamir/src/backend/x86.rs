//! x86_64 backends: PSHUFB nibble tables (SSSE3, AVX2) and GFNI (AVX2, AVX-512).
//!
//! Every kernel is a safe `#[target_feature]` function; the only `unsafe` operations are the
//! calls into them from [`dot`] (after the CPU was checked, see `Engine`) and the unaligned or
//! masked loads and stores, each wrapped in a small helper that bounds-checks its slice first.
//!
//! Constant time: products are computed with `PSHUFB` lookups in tables that live in vector
//! registers (the secret nibbles select lanes inside a register, never a memory address) or
//! with `GF2P8MULB`, whose latency does not depend on its operands. Loops run over lengths and
//! counts only.

use core::arch::x86_64::{
    __m128i, __m256i, __m512i, __mmask64, _mm_and_si128, _mm_cmpeq_epi8, _mm_loadu_si128,
    _mm_set_epi64x, _mm_set1_epi8, _mm_setr_epi8, _mm_setzero_si128, _mm_sfence, _mm_shuffle_epi8,
    _mm_srli_epi16, _mm_storeu_si128, _mm_xor_si128, _mm256_and_si256, _mm256_broadcastsi128_si256,
    _mm256_gf2p8mul_epi8, _mm256_loadu_si256, _mm256_set1_epi8, _mm256_setzero_si256,
    _mm256_shuffle_epi8, _mm256_srli_epi16, _mm256_storeu_si256, _mm256_xor_si256,
    _mm512_add_epi64, _mm512_broadcast_i32x4, _mm512_gf2p8mul_epi8, _mm512_loadu_si512,
    _mm512_mask_storeu_epi8, _mm512_maskz_loadu_epi8, _mm512_set_epi64, _mm512_set1_epi8,
    _mm512_set4_epi32, _mm512_setzero_si512, _mm512_shuffle_epi8, _mm512_storeu_si512,
    _mm512_stream_si512, _mm512_xor_si512,
};

use super::{Backend, Coeffs, Init, MAX_COLS, MAX_ROWS, soft};
use crate::field;

pub(super) mod fused;

/// Outputs at least this long are written with non-temporal stores when they all share one
/// alignment: a split or combine of a large secret writes far more than the caches hold, and
/// streaming stores skip reading each line before overwriting it.
pub(super) const STREAM_MIN: usize = 16 * 1024;

/// Whether this CPU runs `backend` (and the OS saves the registers it uses; the standard
/// library's detection checks XCR0 for the AVX and AVX-512 states).
pub(super) fn is_supported(backend: Backend) -> bool {
    match backend {
        Backend::Soft => true,
        Backend::Ssse3 => std::is_x86_feature_detected!("ssse3"),
        Backend::Avx2 => std::is_x86_feature_detected!("avx2"),
        Backend::Avx2Gfni => {
            std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("gfni")
        }
        // AVX2 too: the small kernels of this backend are the 32-byte GFNI ones (see
        // `horner_small`). Every AVX-512 CPU has it; checking keeps the `unsafe` calls honest.
        Backend::Avx512Gfni => {
            std::is_x86_feature_detected!("avx2")
                && std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("gfni")
        }
    }
}

/// Runs the SIMD kernel of `backend` over the longest prefix it handles and returns that
/// prefix's length; the caller finishes the rest with the portable kernel.
///
/// # Safety
///
/// `backend` must be supported by this CPU ([`is_supported`] returned true for it).
pub(super) unsafe fn dot(
    backend: Backend,
    coeffs: &Coeffs,
    inputs: &[&[u8]],
    init: &Init<'_>,
    outputs: &mut [&mut [u8]],
    len: usize,
) -> usize {
    match backend {
        Backend::Soft => 0,
        Backend::Ssse3 => {
            let body = len & !15;
            // SAFETY: the caller guarantees SSSE3 is available.
            unsafe { ssse3::dot(coeffs, inputs, init, outputs, body) };
            body
        }
        Backend::Avx2 => {
            let body = len & !31;
            // SAFETY: the caller guarantees AVX2 is available.
            unsafe { avx2::dot(coeffs, inputs, init, outputs, body) };
            body
        }
        Backend::Avx2Gfni => {
            let body = len & !31;
            // SAFETY: the caller guarantees AVX2 and GFNI are available.
            unsafe { avx2_gfni::dot(coeffs, inputs, init, outputs, body) };
            body
        }
        Backend::Avx512Gfni => {
            // SAFETY: the caller guarantees AVX-512F, AVX-512BW and GFNI are available.
            unsafe { avx512_gfni::dot(coeffs, inputs, init, outputs, len) };
            len
        }
    }
}

/// Horner's rule over the rows of a small split (see `Engine::horner_small`).
///
/// Both GFNI backends use the 32-byte kernel: for vectors of at most 64 bytes, one or two
/// 256-bit products per row beat the 512-bit kernel's masked loads and stores (measured; see the
/// crate README's performance notes).
///
/// # Safety
///
/// `backend` must be supported by this CPU ([`is_supported`] returned true for it).
pub(super) unsafe fn horner_small(
    backend: Backend,
    buf: &[u8],
    len: usize,
    inputs: usize,
    x: u8,
    out: &mut [u8],
) {
    match backend {
        Backend::Soft => soft::horner_small(buf, len, inputs, x, out),
        // SAFETY: the caller guarantees SSSE3 is available.
        Backend::Ssse3 => unsafe { ssse3::horner_small(buf, len, inputs, x, out) },
        // SAFETY: the caller guarantees AVX2 is available.
        Backend::Avx2 => unsafe { avx2::horner_small(buf, len, inputs, x, out) },
        // SAFETY: the caller guarantees AVX2 and GFNI are available (`is_supported` checks AVX2
        // for the AVX-512 backend too).
        Backend::Avx2Gfni | Backend::Avx512Gfni => unsafe {
            avx2_gfni::horner_small(buf, len, inputs, x, out)
        },
    }
}

/// `out = base ^ Σ_c scalars[c] · (in[c] ^ base)` over small rows (see `Engine::dot_small`).
///
/// # Safety
///
/// `backend` must be supported by this CPU ([`is_supported`] returned true for it).
pub(super) unsafe fn dot_small(
    backend: Backend,
    buf: &[u8],
    len: usize,
    inputs: usize,
    scalars: &[u8; MAX_COLS],
    out: &mut [u8],
) {
    match backend {
        Backend::Soft => soft::dot_small(buf, len, inputs, scalars, out),
        // SAFETY: the caller guarantees SSSE3 is available.
        Backend::Ssse3 => unsafe { ssse3::dot_small(buf, len, inputs, scalars, out) },
        // SAFETY: the caller guarantees AVX2 is available.
        Backend::Avx2 => unsafe { avx2::dot_small(buf, len, inputs, scalars, out) },
        // SAFETY: as in `horner_small`.
        Backend::Avx2Gfni | Backend::Avx512Gfni => unsafe {
            avx2_gfni::dot_small(buf, len, inputs, scalars, out)
        },
    }
}

/// Defines `horner_small` and `dot_small` for one vector type: `$w` bytes per vector, `$load`
/// and `$store` over whole vectors, `$xor`, `$zero`, and `$mul(v, scalar_state)` with the
/// per-scalar state built by `$prep(scalar)` (a broadcast for GFNI, nibble tables for PSHUFB).
///
/// Rows are loaded as whole vectors from the padded `SmallRows` buffer. Outputs of exactly
/// one or two vectors are stored directly; other lengths go through a stack block that is
/// wiped afterwards.
macro_rules! small_kernels {
    ($features:literal, $vec:ty, $w:expr, $load:path, $store:path, $xor:path, $zero:path,
     $prep:ident, $mul:ident) => {
        /// See `x86::horner_small`.
        #[target_feature(enable = $features)]
        pub(super) fn horner_small(buf: &[u8], len: usize, inputs: usize, x: u8, out: &mut [u8]) {
            if len <= $w {
                horner_n::<1>(buf, len, inputs, x, out);
            } else if len <= 2 * $w {
                horner_n::<2>(buf, len, inputs, x, out);
            } else {
                horner_n::<4>(buf, len, inputs, x, out);
            }
        }

        #[target_feature(enable = $features)]
        fn horner_n<const V: usize>(buf: &[u8], len: usize, inputs: usize, x: u8, out: &mut [u8]) {
            let scalar = $prep(x);
            // The leading coefficient (or the base row when there is none), then rows
            // `inputs - 2` down to 0, then the base row: no product of the initial zero.
            let first = inputs.saturating_sub(1);
            let mut acc: [$vec; V] = [$zero(); V];
            let mut v = 0usize;
            while v < V {
                if let Some(a) = acc.get_mut(v) {
                    *a = $load(
                        buf,
                        first.wrapping_mul(len).wrapping_add(v.wrapping_mul($w)),
                    );
                }
                v = v.wrapping_add(1);
            }
            let mut step = if inputs > 0 {
                1
            } else {
                inputs.wrapping_add(1)
            };
            while step <= inputs {
                let row = if step < inputs {
                    inputs.wrapping_sub(1).wrapping_sub(step)
                } else {
                    inputs
                };
                let off = row.wrapping_mul(len);
                let mut v = 0usize;
                while v < V {
                    let next = $load(buf, off.wrapping_add(v.wrapping_mul($w)));
                    if let Some(a) = acc.get_mut(v) {
                        *a = $xor($mul(*a, &scalar), next);
                    }
                    v = v.wrapping_add(1);
                }
                step = step.wrapping_add(1);
            }
            store_small::<V>(out, &acc);
        }

        /// See `x86::dot_small`.
        #[target_feature(enable = $features)]
        pub(super) fn dot_small(
            buf: &[u8],
            len: usize,
            inputs: usize,
            scalars: &[u8; MAX_COLS],
            out: &mut [u8],
        ) {
            if len <= $w {
                dot_small_n::<1>(buf, len, inputs, scalars, out);
            } else if len <= 2 * $w {
                dot_small_n::<2>(buf, len, inputs, scalars, out);
            } else {
                dot_small_n::<4>(buf, len, inputs, scalars, out);
            }
        }

        #[target_feature(enable = $features)]
        fn dot_small_n<const V: usize>(
            buf: &[u8],
            len: usize,
            inputs: usize,
            scalars: &[u8; MAX_COLS],
            out: &mut [u8],
        ) {
            let base_off = inputs.wrapping_mul(len);
            let mut base: [$vec; V] = [$zero(); V];
            let mut v = 0usize;
            while v < V {
                if let Some(b) = base.get_mut(v) {
                    *b = $load(buf, base_off.wrapping_add(v.wrapping_mul($w)));
                }
                v = v.wrapping_add(1);
            }
            let mut acc = base;
            let mut c = 0;
            while c < inputs {
                let scalar = $prep(match scalars.get(c) {
                    Some(s) => *s,
                    None => 0,
                });
                let off = c.wrapping_mul(len);
                let mut v = 0usize;
                while v < V {
                    let input = $load(buf, off.wrapping_add(v.wrapping_mul($w)));
                    if let (Some(a), Some(b)) = (acc.get_mut(v), base.get(v)) {
                        *a = $xor(*a, $mul($xor(input, *b), &scalar));
                    }
                    v = v.wrapping_add(1);
                }
                c = c.wrapping_add(1);
            }
            store_small::<V>(out, &acc);
        }

        /// Writes the first `out.len()` bytes of `V` vectors to `out`.
        #[target_feature(enable = $features)]
        fn store_small<const V: usize>(out: &mut [u8], acc: &[$vec; V]) {
            if out.len() == V * $w {
                let mut v = 0usize;
                while v.wrapping_mul($w) < out.len() {
                    if let Some(a) = acc.get(v) {
                        $store(out, v.wrapping_mul($w), *a);
                    }
                    v = v.wrapping_add(1);
                }
                return;
            }
            // Room for 4 vectors of the widest type; `$store` ignores anything past the end.
            let mut block = [0u8; 128];
            let mut v = 0usize;
            while v < V {
                if let Some(a) = acc.get(v) {
                    $store(&mut block, v.wrapping_mul($w), *a);
                }
                v = v.wrapping_add(1);
            }
            if let Some(bytes) = block.get(..out.len()) {
                out.copy_from_slice(bytes);
            }
            zeroize::Zeroize::zeroize(&mut block);
        }
    };
}

/// Calls `$kernel::<C>` with the number of inputs as a constant, so per-input state stays in
/// registers. More than `MAX_COLS` inputs never reach a kernel (`Engine::dot` checks).
macro_rules! by_input_count {
    ($kernel:ident, $coeffs:expr, $inputs:expr, $init:expr, $outputs:expr, $len:expr) => {
        match $inputs.len() {
            0 => $kernel::<0>($coeffs, $inputs, $init, $outputs, $len),
            1 => $kernel::<1>($coeffs, $inputs, $init, $outputs, $len),
            2 => $kernel::<2>($coeffs, $inputs, $init, $outputs, $len),
            3 => $kernel::<3>($coeffs, $inputs, $init, $outputs, $len),
            4 => $kernel::<4>($coeffs, $inputs, $init, $outputs, $len),
            5 => $kernel::<5>($coeffs, $inputs, $init, $outputs, $len),
            6 => $kernel::<6>($coeffs, $inputs, $init, $outputs, $len),
            7 => $kernel::<7>($coeffs, $inputs, $init, $outputs, $len),
            8 => $kernel::<8>($coeffs, $inputs, $init, $outputs, $len),
            _ => {}
        }
    };
}

/// The bytes `s[off..off + N]` as an array reference, if they exist.
///
/// Written without closures or `Option` combinators: those are compiled without the caller's
/// target features and then cannot be inlined into the SIMD kernels.
#[inline(always)]
fn window<const N: usize>(s: &[u8], off: usize) -> Option<&[u8; N]> {
    match s.split_at_checked(off) {
        Some((_, rest)) => match rest.first_chunk::<N>() {
            Some(bytes) => Some(bytes),
            None => None,
        },
        None => None,
    }
}

/// The mutable bytes `s[off..off + N]` as an array reference, if they exist.
#[inline(always)]
fn window_mut<const N: usize>(s: &mut [u8], off: usize) -> Option<&mut [u8; N]> {
    match s.split_at_mut_checked(off) {
        Some((_, rest)) => match rest.first_chunk_mut::<N>() {
            Some(bytes) => Some(bytes),
            None => None,
        },
        None => None,
    }
}

/// The bytes `s[off..off + n]`, if they exist.
#[inline(always)]
fn span(s: &[u8], off: usize, n: usize) -> Option<&[u8]> {
    match s.split_at_checked(off) {
        Some((_, rest)) => match rest.split_at_checked(n) {
            Some((bytes, _)) => Some(bytes),
            None => None,
        },
        None => None,
    }
}

/// The mutable bytes `s[off..off + n]`, if they exist.
#[inline(always)]
fn span_mut(s: &mut [u8], off: usize, n: usize) -> Option<&mut [u8]> {
    match s.split_at_mut_checked(off) {
        Some((_, rest)) => match rest.split_at_mut_checked(n) {
            Some((bytes, _)) => Some(bytes),
            None => None,
        },
        None => None,
    }
}

/// The byte `b` as the `i8` lane type the `set1` intrinsics take.
#[inline(always)]
fn lane(b: u8) -> i8 {
    i8::from_ne_bytes([b])
}

/// The two 16-entry PSHUFB tables of a public scalar `c`: `lo[n] = c·n` and
/// `hi[n] = c·(n << 4)` for nibbles `n`, so that `c·v = lo[v & 15] ^ hi[v >> 4]`.
///
/// Built with vector compares against the lane numbers (no table indexed by anything), from
/// the eight multiples `c·x^b`.
#[target_feature(enable = "ssse3")]
fn nibble_tables(c: u8) -> (__m128i, __m128i) {
    let lanes = _mm_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let mut tables = [_mm_setzero_si128(); 2];
    let mut multiple = c;
    for table in &mut tables {
        for bit in [1u8, 2, 4, 8] {
            let bit = _mm_set1_epi8(lane(bit));
            let selected = _mm_cmpeq_epi8(_mm_and_si128(lanes, bit), bit);
            *table = _mm_xor_si128(
                *table,
                _mm_and_si128(selected, _mm_set1_epi8(lane(multiple))),
            );
            multiple = field::xtime(multiple);
        }
    }
    let [lo, hi] = tables;
    (lo, hi)
}

/// SSSE3: 16-byte vectors, products by PSHUFB nibble lookups.
mod ssse3 {
    use super::*;

    #[target_feature(enable = "ssse3")]
    fn load(s: &[u8], off: usize) -> __m128i {
        match window::<16>(s, off) {
            // SAFETY: `bytes` is a reference to 16 readable bytes; the load is unaligned.
            Some(bytes) => unsafe { _mm_loadu_si128(bytes.as_ptr().cast()) },
            None => _mm_setzero_si128(),
        }
    }

    #[target_feature(enable = "ssse3")]
    fn store(s: &mut [u8], off: usize, v: __m128i) {
        if let Some(bytes) = window_mut::<16>(s, off) {
            // SAFETY: `bytes` is a reference to 16 writable bytes; the store is unaligned.
            unsafe { _mm_storeu_si128(bytes.as_mut_ptr().cast(), v) }
        }
    }

    /// The nibble tables of a public scalar, for [`mul`].
    #[target_feature(enable = "ssse3")]
    fn prep(c: u8) -> (__m128i, __m128i) {
        nibble_tables(c)
    }

    /// `v · c` for the scalar whose tables are `t`.
    #[target_feature(enable = "ssse3")]
    fn mul(v: __m128i, t: &(__m128i, __m128i)) -> __m128i {
        let low_nibble = _mm_set1_epi8(0x0F);
        let lo = _mm_and_si128(v, low_nibble);
        let hi = _mm_and_si128(_mm_srli_epi16::<4>(v), low_nibble);
        _mm_xor_si128(_mm_shuffle_epi8(t.0, lo), _mm_shuffle_epi8(t.1, hi))
    }

    small_kernels!(
        "ssse3",
        __m128i,
        16,
        load,
        store,
        _mm_xor_si128,
        _mm_setzero_si128,
        prep,
        mul
    );

    /// The entry point: `len` is a multiple of 16.
    #[target_feature(enable = "ssse3")]
    pub(super) fn dot(
        coeffs: &Coeffs,
        inputs: &[&[u8]],
        init: &Init<'_>,
        outputs: &mut [&mut [u8]],
        len: usize,
    ) {
        by_input_count!(dot_n, coeffs, inputs, init, outputs, len);
    }

    #[target_feature(enable = "ssse3")]
    fn dot_n<const C: usize>(
        coeffs: &Coeffs,
        inputs: &[&[u8]],
        init: &Init<'_>,
        outputs: &mut [&mut [u8]],
        len: usize,
    ) {
        let Ok(inputs) = <&[&[u8]; C]>::try_from(inputs) else {
            return;
        };
        let zero = _mm_setzero_si128();
        let mut tables = [[(zero, zero); C]; MAX_ROWS];
        for (r, row) in tables.iter_mut().enumerate().take(outputs.len()) {
            for (c, slot) in row.iter_mut().enumerate() {
                *slot = nibble_tables(coeffs.get(r, c));
            }
        }
        let low_nibble = _mm_set1_epi8(0x0F);
        // The inputs of `Init::Relative` are taken relative to the base (public mode).
        let relative = matches!(init, Init::Relative(_));
        let mut off = 0;
        while off < len {
            let base = match init {
                Init::Xor(base) | Init::Relative(base) => load(base, off),
                Init::Zero | Init::Accumulate => zero,
            };
            let shift = if relative { base } else { zero };
            let mut lo = [zero; C];
            let mut hi = [zero; C];
            for ((input, lo), hi) in inputs.iter().zip(&mut lo).zip(&mut hi) {
                let x = _mm_xor_si128(load(input, off), shift);
                *lo = _mm_and_si128(x, low_nibble);
                *hi = _mm_and_si128(_mm_srli_epi16::<4>(x), low_nibble);
            }
            for (out, row) in outputs.iter_mut().zip(&tables) {
                let mut acc = match init {
                    Init::Accumulate => load(out, off),
                    Init::Zero | Init::Xor(_) | Init::Relative(_) => base,
                };
                for (((t_lo, t_hi), lo), hi) in row.iter().zip(&lo).zip(&hi) {
                    acc = _mm_xor_si128(acc, _mm_shuffle_epi8(*t_lo, *lo));
                    acc = _mm_xor_si128(acc, _mm_shuffle_epi8(*t_hi, *hi));
                }
                store(out, off, acc);
            }
            off = off.wrapping_add(16);
        }
    }
}

/// AVX2: as SSSE3 with 32-byte vectors; each 16-entry table is repeated in both 128-bit lanes
/// because `VPSHUFB` looks up within a lane.
mod avx2 {
    use super::*;

    #[target_feature(enable = "avx2")]
    pub(super) fn load(s: &[u8], off: usize) -> __m256i {
        match window::<32>(s, off) {
            // SAFETY: `bytes` is a reference to 32 readable bytes; the load is unaligned.
            Some(bytes) => unsafe { _mm256_loadu_si256(bytes.as_ptr().cast()) },
            None => _mm256_setzero_si256(),
        }
    }

    #[target_feature(enable = "avx2")]
    pub(super) fn store(s: &mut [u8], off: usize, v: __m256i) {
        if let Some(bytes) = window_mut::<32>(s, off) {
            // SAFETY: `bytes` is a reference to 32 writable bytes; the store is unaligned.
            unsafe { _mm256_storeu_si256(bytes.as_mut_ptr().cast(), v) }
        }
    }

    /// The nibble tables of a public scalar, in both lanes, for [`mul`].
    #[target_feature(enable = "avx2")]
    fn prep(c: u8) -> (__m256i, __m256i) {
        let (lo, hi) = nibble_tables(c);
        (
            _mm256_broadcastsi128_si256(lo),
            _mm256_broadcastsi128_si256(hi),
        )
    }

    /// `v · c` for the scalar whose tables are `t`.
    #[target_feature(enable = "avx2")]
    fn mul(v: __m256i, t: &(__m256i, __m256i)) -> __m256i {
        let low_nibble = _mm256_set1_epi8(0x0F);
        let lo = _mm256_and_si256(v, low_nibble);
        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), low_nibble);
        _mm256_xor_si256(_mm256_shuffle_epi8(t.0, lo), _mm256_shuffle_epi8(t.1, hi))
    }

    small_kernels!(
        "avx2",
        __m256i,
        32,
        load,
        store,
        _mm256_xor_si256,
        _mm256_setzero_si256,
        prep,
        mul
    );

    /// The entry point: `len` is a multiple of 32.
    #[target_feature(enable = "avx2")]
    pub(super) fn dot(
        coeffs: &Coeffs,
        inputs: &[&[u8]],
        init: &Init<'_>,
        outputs: &mut [&mut [u8]],
        len: usize,
    ) {
        by_input_count!(dot_n, coeffs, inputs, init, outputs, len);
    }

    #[target_feature(enable = "avx2")]
    fn dot_n<const C: usize>(
        coeffs: &Coeffs,
        inputs: &[&[u8]],
        init: &Init<'_>,
        outputs: &mut [&mut [u8]],
        len: usize,
    ) {
        let Ok(inputs) = <&[&[u8]; C]>::try_from(inputs) else {
            return;
        };
        let zero = _mm256_setzero_si256();
        let mut tables = [[(zero, zero); C]; MAX_ROWS];
        for (r, row) in tables.iter_mut().enumerate().take(outputs.len()) {
            for (c, slot) in row.iter_mut().enumerate() {
                let (lo, hi) = nibble_tables(coeffs.get(r, c));
                *slot = (
                    _mm256_broadcastsi128_si256(lo),
                    _mm256_broadcastsi128_si256(hi),
                );
            }
        }
        let low_nibble = _mm256_set1_epi8(0x0F);
        // The inputs of `Init::Relative` are taken relative to the base (public mode).
        let relative = matches!(init, Init::Relative(_));
        let mut off = 0;
        while off < len {
            let base = match init {
                Init::Xor(base) | Init::Relative(base) => load(base, off),
                Init::Zero | Init::Accumulate => zero,
            };
            let shift = if relative { base } else { zero };
            let mut lo = [zero; C];
            let mut hi = [zero; C];
            for ((input, lo), hi) in inputs.iter().zip(&mut lo).zip(&mut hi) {
                let x = _mm256_xor_si256(load(input, off), shift);
                *lo = _mm256_and_si256(x, low_nibble);
                *hi = _mm256_and_si256(_mm256_srli_epi16::<4>(x), low_nibble);
            }
            for (out, row) in outputs.iter_mut().zip(&tables) {
                let mut acc = match init {
                    Init::Accumulate => load(out, off),
                    Init::Zero | Init::Xor(_) | Init::Relative(_) => base,
                };
                for (((t_lo, t_hi), lo), hi) in row.iter().zip(&lo).zip(&hi) {
                    acc = _mm256_xor_si256(acc, _mm256_shuffle_epi8(*t_lo, *lo));
                    acc = _mm256_xor_si256(acc, _mm256_shuffle_epi8(*t_hi, *hi));
                }
                store(out, off, acc);
            }
            off = off.wrapping_add(32);
        }
    }
}

/// GFNI on 32-byte vectors (VEX-encoded `VGF2P8MULB`, which needs AVX but not AVX-512).
mod avx2_gfni {
    use super::avx2::{load, store};
    use super::*;

    /// The broadcast of a public scalar, for [`mul`].
    #[target_feature(enable = "avx2,gfni")]
    fn prep(c: u8) -> __m256i {
        _mm256_set1_epi8(lane(c))
    }

    /// `v · c` for the broadcast scalar `c`.
    #[target_feature(enable = "avx2,gfni")]
    fn mul(v: __m256i, c: &__m256i) -> __m256i {
        _mm256_gf2p8mul_epi8(v, *c)
    }

    small_kernels!(
        "avx2,gfni",
        __m256i,
        32,
        load,
        store,
        _mm256_xor_si256,
        _mm256_setzero_si256,
        prep,
        mul
    );

    /// The entry point: `len` is a multiple of 32.
    #[target_feature(enable = "avx2,gfni")]
    pub(super) fn dot(
        coeffs: &Coeffs,
        inputs: &[&[u8]],
        init: &Init<'_>,
        outputs: &mut [&mut [u8]],
        len: usize,
    ) {
        by_input_count!(dot_n, coeffs, inputs, init, outputs, len);
    }

    #[target_feature(enable = "avx2,gfni")]
    fn dot_n<const C: usize>(
        coeffs: &Coeffs,
        inputs: &[&[u8]],
        init: &Init<'_>,
        outputs: &mut [&mut [u8]],
        len: usize,
    ) {
        let Ok(inputs) = <&[&[u8]; C]>::try_from(inputs) else {
            return;
        };
        let zero = _mm256_setzero_si256();
        // The inputs of `Init::Relative` are taken relative to the base (public mode).
        let relative = matches!(init, Init::Relative(_));
        let mut off = 0;
        while off < len {
            let base = match init {
                Init::Xor(base) | Init::Relative(base) => load(base, off),
                Init::Zero | Init::Accumulate => zero,
            };
            let shift = if relative { base } else { zero };
            let mut x = [zero; C];
            for (input, x) in inputs.iter().zip(&mut x) {
                *x = _mm256_xor_si256(load(input, off), shift);
            }
            for (r, out) in outputs.iter_mut().enumerate() {
                let mut acc = match init {
                    Init::Accumulate => load(out, off),
                    Init::Zero | Init::Xor(_) | Init::Relative(_) => base,
                };
                // The broadcasts are loop-invariant; the compiler keeps them in registers
                // across strips when there are few enough.
                for (scalar, x) in coeffs.row(r).iter().zip(&x) {
                    let scalar = _mm256_set1_epi8(lane(*scalar));
                    acc = _mm256_xor_si256(acc, _mm256_gf2p8mul_epi8(*x, scalar));
                }
                store(out, off, acc);
            }
            off = off.wrapping_add(32);
        }
    }
}

/// A mask with the low `n` bits set, `n <= 64`: the lanes of a partial 64-byte vector.
#[inline(always)]
fn low_mask(n: usize) -> __mmask64 {
    let shift = 64usize.saturating_sub(n);
    u64::MAX
        .checked_shr(u32::try_from(shift).unwrap_or(64))
        .unwrap_or(0)
}

/// GFNI on 64-byte vectors; the last partial vector uses masked loads and stores, so this
/// kernel covers the whole length.
mod avx512_gfni {
    use super::*;

    /// The `n <= 64` bytes at `s[off..]`, zero-extended to a vector.
    #[target_feature(enable = "avx512f,avx512bw")]
    fn load(s: &[u8], off: usize, n: usize) -> __m512i {
        if n == 64
            && let Some(bytes) = window::<64>(s, off)
        {
            // SAFETY: `bytes` is a reference to 64 readable bytes; the load is unaligned.
            return unsafe { _mm512_loadu_si512(bytes.as_ptr().cast()) };
        }
        match span(s, off, n) {
            // SAFETY: only the `n` lanes selected by the mask are read, and `bytes` holds
            // exactly `n` readable bytes; masked-off lanes are never accessed (they cannot fault).
            Some(bytes) if n <= 64 => unsafe {
                _mm512_maskz_loadu_epi8(low_mask(n), bytes.as_ptr().cast())
            },
            _ => _mm512_setzero_si512(),
        }
    }

    /// Stores the low `n <= 64` bytes of `v` at `s[off..]`.
    #[target_feature(enable = "avx512f,avx512bw")]
    fn store(s: &mut [u8], off: usize, n: usize, v: __m512i) {
        if n == 64
            && let Some(bytes) = window_mut::<64>(s, off)
        {
            // SAFETY: `bytes` is a reference to 64 writable bytes; the store is unaligned.
            unsafe { _mm512_storeu_si512(bytes.as_mut_ptr().cast(), v) };
            return;
        }
        if let Some(bytes) = span_mut(s, off, n)
            && n <= 64
        {
            // SAFETY: only the `n` lanes selected by the mask are written, and `bytes` holds
            // exactly `n` writable bytes.
            unsafe { _mm512_mask_storeu_epi8(bytes.as_mut_ptr().cast(), low_mask(n), v) }
        }
    }

    /// Stores `v` at `s[off..off + 64]` with a non-temporal store if those 64 bytes exist and
    /// are 64-byte aligned; returns whether it did. The caller issues `sfence` before
    /// returning.
    #[target_feature(enable = "avx512f")]
    fn stream(s: &mut [u8], off: usize, v: __m512i) -> bool {
        match window_mut::<64>(s, off) {
            Some(bytes) if bytes.as_ptr().addr() & 63 == 0 => {
                // SAFETY: `bytes` is a reference to 64 writable bytes, and its address was just
                // checked to be 64-byte aligned, as `_mm512_stream_si512` requires. The kernel
                // calls `_mm_sfence` before it returns, so the weakly ordered store is ordered
                // before any later access to this memory.
                unsafe { _mm512_stream_si512(bytes.as_mut_ptr().cast(), v) };
                true
            }
            _ => false,
        }
    }

    /// The distance from `s` to the next 64-byte boundary, if every output is at the same
    /// distance from one (then one head segment aligns them all).
    fn common_head(outputs: &[&mut [u8]]) -> Option<usize> {
        let first = outputs.first()?.as_ptr().addr() & 63;
        if outputs.iter().all(|out| out.as_ptr().addr() & 63 == first) {
            Some(64usize.wrapping_sub(first) & 63)
        } else {
            None
        }
    }

    /// The entry point: any `len`.
    #[target_feature(enable = "avx512f,avx512bw,gfni")]
    pub(super) fn dot(
        coeffs: &Coeffs,
        inputs: &[&[u8]],
        init: &Init<'_>,
        outputs: &mut [&mut [u8]],
        len: usize,
    ) {
        by_input_count!(dot_n, coeffs, inputs, init, outputs, len);
    }

    #[target_feature(enable = "avx512f,avx512bw,gfni")]
    fn dot_n<const C: usize>(
        coeffs: &Coeffs,
        inputs: &[&[u8]],
        init: &Init<'_>,
        outputs: &mut [&mut [u8]],
        len: usize,
    ) {
        let Ok(inputs) = <&[&[u8]; C]>::try_from(inputs) else {
            return;
        };
        let zero = _mm512_setzero_si512();
        // The inputs of `Init::Relative` are taken relative to the base (public mode).
        let relative = matches!(init, Init::Relative(_));
        // Large outputs with a common alignment: a short first segment (masked, as a tail is)
        // brings them all to a 64-byte boundary, then whole vectors are streamed. Addresses and
        // lengths are public.
        let head = if len >= STREAM_MIN && !matches!(init, Init::Accumulate) {
            common_head(outputs)
        } else {
            None
        };
        let streaming = head.is_some();
        let mut off = 0;
        while off < len {
            let left = len.wrapping_sub(off);
            let n = match head {
                Some(head) if off == 0 && head > 0 => head.min(left),
                _ if left < 64 => left,
                _ => 64,
            };
            let base = match init {
                Init::Xor(base) | Init::Relative(base) => load(base, off, n),
                Init::Zero | Init::Accumulate => zero,
            };
            let shift = if relative { base } else { zero };
            let mut x = [zero; C];
            for (input, x) in inputs.iter().zip(&mut x) {
                *x = _mm512_xor_si512(load(input, off, n), shift);
            }
            for (r, out) in outputs.iter_mut().enumerate() {
                let mut acc = match init {
                    Init::Accumulate => load(out, off, n),
                    Init::Zero | Init::Xor(_) | Init::Relative(_) => base,
                };
                // The broadcasts are loop-invariant; the compiler keeps them in registers
                // across strips when there are few enough.
                for (scalar, x) in coeffs.row(r).iter().zip(&x) {
                    let scalar = _mm512_set1_epi8(lane(*scalar));
                    acc = _mm512_xor_si512(acc, _mm512_gf2p8mul_epi8(*x, scalar));
                }
                if !(streaming && n == 64 && stream(out, off, acc)) {
                    store(out, off, n, acc);
                }
            }
            off = off.wrapping_add(n);
        }
        if streaming {
            // Orders the non-temporal stores before anything the caller does next.
            _mm_sfence();
        }
    }
}

/// Whether [`counter_blocks`] can run on this CPU.
pub(super) fn has_counter_blocks() -> bool {
    std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bw")
}

/// Writes the big-endian 128-bit counter blocks `hi ‖ lo`, `hi ‖ lo + 1`, … over the first
/// `4·k` blocks of `dst` (whole 16-byte blocks, four per 512-bit store) and returns how many
/// bytes it wrote. The caller has checked that `lo` does not wrap over `dst`, and writes any
/// remaining blocks itself.
///
/// The counters are public (they are the input of the cipher, not its output), so their
/// values steer nothing secret.
///
/// # Safety
///
/// AVX-512F and AVX-512BW must be available ([`has_counter_blocks`] returned true).
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) unsafe fn counter_blocks(dst: &mut [u8], hi: u64, lo: u64) -> usize {
    let mut counters = counter_words(hi, lo);
    let step = _mm512_set_epi64(4, 0, 4, 0, 4, 0, 4, 0);
    let mut off = 0usize;
    while let Some(bytes) = window_mut::<64>(dst, off) {
        let be = big_endian_blocks(counters);
        // SAFETY: `bytes` is a reference to 64 writable bytes; the store is unaligned.
        unsafe { _mm512_storeu_si512(bytes.as_mut_ptr().cast(), be) };
        counters = _mm512_add_epi64(counters, step);
        off = off.wrapping_add(64);
    }
    off
}

/// The counter blocks `hi ‖ lo` to `hi ‖ lo + 3` as 64-bit words in native order (lanes, low
/// first: hi, lo, hi, lo + 1, …, hi, lo + 3); the caller has checked that `lo` does not wrap
/// over them. Shared by [`counter_blocks`] and the fused split's keystream.
#[target_feature(enable = "avx512f")]
fn counter_words(hi: u64, lo: u64) -> __m512i {
    let word = |w: u64| i64::from_ne_bytes(w.to_ne_bytes());
    _mm512_add_epi64(
        _mm512_broadcast_i32x4(_mm_set_epi64x(word(lo), word(hi))),
        _mm512_set_epi64(3, 0, 2, 0, 1, 0, 0, 0),
    )
}

/// Four counter blocks of [`counter_words`] as the cipher takes them: each 64-bit word
/// byte-reversed in place (the shuffle works within 128-bit lanes), which makes each 128-bit
/// lane a big-endian block.
#[target_feature(enable = "avx512f,avx512bw")]
fn big_endian_blocks(words: __m512i) -> __m512i {
    let swap = _mm512_set4_epi32(0x0809_0A0B, 0x0C0D_0E0F, 0x0001_0203, 0x0405_0607);
    _mm512_shuffle_epi8(words, swap)
}
