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
    _mm_set1_epi8, _mm_setr_epi8, _mm_setzero_si128, _mm_shuffle_epi8, _mm_srli_epi16,
    _mm_storeu_si128, _mm_xor_si128, _mm256_and_si256, _mm256_broadcastsi128_si256,
    _mm256_gf2p8mul_epi8, _mm256_loadu_si256, _mm256_set1_epi8, _mm256_setzero_si256,
    _mm256_shuffle_epi8, _mm256_srli_epi16, _mm256_storeu_si256, _mm256_xor_si256,
    _mm512_gf2p8mul_epi8, _mm512_loadu_si512, _mm512_mask_storeu_epi8, _mm512_maskz_loadu_epi8,
    _mm512_set1_epi8, _mm512_setzero_si512, _mm512_storeu_si512, _mm512_xor_si512,
};

use super::{Backend, Coeffs, Init, MAX_ROWS};
use crate::field;

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
        Backend::Avx512Gfni => {
            std::is_x86_feature_detected!("avx512f")
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

/// GFNI on 64-byte vectors; the last partial vector uses masked loads and stores, so this
/// kernel covers the whole length.
mod avx512_gfni {
    use super::*;

    /// A mask with the low `n` bits set, `n <= 64`.
    #[inline(always)]
    fn low_mask(n: usize) -> __mmask64 {
        let shift = 64usize.saturating_sub(n);
        u64::MAX
            .checked_shr(u32::try_from(shift).unwrap_or(64))
            .unwrap_or(0)
    }

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
        let mut off = 0;
        while off < len {
            let n = if len.wrapping_sub(off) < 64 {
                len.wrapping_sub(off)
            } else {
                64
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
                store(out, off, n, acc);
            }
            off = off.wrapping_add(64);
        }
    }
}
