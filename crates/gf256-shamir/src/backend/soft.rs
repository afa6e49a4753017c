//! The portable backend: SWAR over `u64` words, constant time, no tables indexed by data.
//!
//! A product `c · v` of a public scalar `c` and a secret byte `v` is linear over GF(2), and can
//! be expanded along the bits of either operand:
//!
//! ```text
//! c · v = XOR over b in 0..8 of  bit_b(v) · (c · x^b)      (secret bit planes, "masks")
//! c · v = XOR over b in 0..L of  bit_b(c) · (x^b · v)      (secret powers, "powers")
//! ```
//!
//! where `L` is the bit length of `c`. Both are computed the same way: a *plane* `p_b` is
//! derived from each secret word, once per input (shared by every output row), and each
//! product is `XOR_b p_b & m_b` with public words `m_b`:
//!
//! - **masks**: `p_b` is `0xFF` in the bytes whose bit `b` is set (a shift, an AND, a shift and
//!   a subtraction; no branch) and `m_b` is `c · x^b` in every byte. Always 8 planes.
//! - **powers**: `p_b = x^b · v` in every byte (a chain of SWAR doublings) and `m_b` is all
//!   ones or all zeros according to bit `b` of the public `c`. Only `L` planes, where `L` is the
//!   bit length of the largest scalar of the call: splitting at x = 1, 2, 3 needs 2.
//!
//! The choice between them, and `L`, depend on the public scalars only (see [`Plan::new`]).
//!
//! The kernel works on 32-byte blocks held as `[u64; 4]`, which the compiler turns into the
//! target's baseline vector instructions (SSE2 on x86_64, NEON on aarch64) with no intrinsics.
//! A partial last block is copied into a zero-padded stack block, processed the same way, and
//! the padding wiped.
//!
//! Nothing branches on, or indexes memory with, a secret byte; the only branches and loop
//! bounds are lengths, counts and functions of the public scalars.
//!
//! This is also the tail path of the SSE/AVX2 backends (the bytes after the last full vector).

use zeroize::Zeroize;

use super::{Coeffs, Init, MAX_COLS, MAX_ROWS};
use crate::field;

/// `0x01` in every byte.
const LOW_BITS: u64 = 0x0101_0101_0101_0101;

/// `0x7F` in every byte: the bits that stay inside their byte when doubled.
const LOW_SEVEN: u64 = 0x7F7F_7F7F_7F7F_7F7F;

/// The reduction byte 0x1B in every byte.
const POLY_BYTES: u64 = 0x1B1B_1B1B_1B1B_1B1B;

/// Words per block.
const WORDS: usize = 4;

/// Bytes per block.
const BLOCK: usize = WORDS * 8;

/// One block: 32 bytes as four little-endian words.
type Block = [u64; WORDS];

/// The byte `b` in every byte of a word.
#[inline(always)]
fn splat(b: u8) -> u64 {
    u64::from(b).wrapping_mul(LOW_BITS)
}

/// Every byte of `w` multiplied by x, reduced by 0x11B. Constant time.
#[inline(always)]
fn xtime_word(w: u64) -> u64 {
    let carries = (w >> 7) & LOW_BITS;
    // `carries * 255`, as a shift and a subtraction (no carry between bytes), selects 0x1B.
    ((w & LOW_SEVEN) << 1) ^ ((carries << 8).wrapping_sub(carries) & POLY_BYTES)
}

/// A word that is `0xFF` in the bytes of `w` whose bit `b` is set, `0x00` elsewhere.
#[inline(always)]
fn bit_mask(w: u64, b: u32) -> u64 {
    let bits = w.wrapping_shr(b) & LOW_BITS;
    // Each byte of `bits` is 0 or 1; `bits * 255` spreads it to 0x00 or 0xFF with no carry
    // between bytes, written as a shift and a subtraction.
    (bits << 8).wrapping_sub(bits)
}

/// How the planes of a call are derived from the secret words. Public: a function of the
/// scalars only.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// Bit masks of the secret bytes, against the public multiples `c · x^b`.
    Masks,
    /// Doublings `x^b · v` of the secret bytes, selected by the public bits of `c`.
    Powers,
}

/// The public half of a call: the plane mode, how many planes, and the public word each plane
/// is ANDed with for every (row, input).
struct Plan<const C: usize> {
    mode: Mode,
    levels: usize,
    words: [[[u64; 8]; C]; MAX_ROWS],
}

impl<const C: usize> Plan<C> {
    /// The cheaper plan for the scalars of rows `0..rows`.
    ///
    /// Per input and 8-byte word, masks cost about `32 + 16·R` operations (8 planes of 4, and
    /// an AND and a XOR per plane and row) and powers `8·(L − 1) + 2·L·R` (L − 1 doublings of
    /// about 8). Small scalars, as in splitting at small x-coordinates, favour powers; full-byte
    /// Lagrange coefficients favour masks.
    fn new(coeffs: &Coeffs, rows: usize) -> Plan<C> {
        let mut all = 0u8;
        for r in 0..rows {
            for c in 0..C {
                all |= coeffs.get(r, c);
            }
        }
        // The bit length of the largest scalar: 0 to 8.
        let levels = usize::try_from(u8::BITS.saturating_sub(all.leading_zeros())).unwrap_or(8);
        let masks_cost = 32usize.saturating_add(rows.saturating_mul(16));
        let powers_cost = levels
            .saturating_sub(1)
            .saturating_mul(8)
            .saturating_add(levels.saturating_mul(2).saturating_mul(rows));
        let mode = if powers_cost < masks_cost {
            Mode::Powers
        } else {
            Mode::Masks
        };
        let mut words = [[[0u64; 8]; C]; MAX_ROWS];
        for (r, row) in words.iter_mut().enumerate().take(rows) {
            for (c, planes) in row.iter_mut().enumerate() {
                let scalar = coeffs.get(r, c);
                let mut multiple = scalar;
                for (b, word) in (0u32..).zip(planes.iter_mut()) {
                    *word = match mode {
                        Mode::Masks => splat(multiple),
                        // All ones where bit `b` of the public scalar is set.
                        Mode::Powers => 0u64.wrapping_sub(u64::from(scalar.wrapping_shr(b) & 1)),
                    };
                    multiple = field::xtime(multiple);
                }
            }
        }
        let levels = match mode {
            Mode::Masks => 8,
            Mode::Powers => levels,
        };
        Plan {
            mode,
            levels,
            words,
        }
    }

    /// The planes of one block of every input.
    #[inline(always)]
    fn planes(&self, x: &[Block; C], planes: &mut [[Block; 8]; C]) {
        for (x, planes) in x.iter().zip(planes.iter_mut()) {
            match self.mode {
                Mode::Masks => {
                    for (b, plane) in (0u32..).zip(planes.iter_mut()) {
                        for (p, w) in plane.iter_mut().zip(x) {
                            *p = bit_mask(*w, b);
                        }
                    }
                }
                Mode::Powers => {
                    let mut power = *x;
                    for plane in planes.iter_mut().take(self.levels) {
                        *plane = power;
                        for w in &mut power {
                            *w = xtime_word(*w);
                        }
                    }
                }
            }
        }
    }

    /// `acc ^= Σ_c c[r][c] · x_c` for one block, from the inputs' planes.
    #[inline(always)]
    fn accumulate(&self, r: usize, planes: &[[Block; 8]; C], acc: &mut Block) {
        let Some(row) = self.words.get(r) else {
            return;
        };
        for (planes, words) in planes.iter().zip(row) {
            for (plane, m) in planes.iter().zip(words).take(self.levels) {
                for (a, p) in acc.iter_mut().zip(plane) {
                    *a ^= p & m;
                }
            }
        }
    }
}

/// The block at byte offset `off`, or zeros if it is out of bounds (callers never ask for
/// that).
#[inline(always)]
fn load(s: &[u8], off: usize) -> Block {
    let mut block = [0u64; WORDS];
    if let Some(bytes) = s
        .split_at_checked(off)
        .and_then(|(_, rest)| rest.first_chunk::<BLOCK>())
    {
        let (words, _) = bytes.as_chunks::<8>();
        for (w, bytes) in block.iter_mut().zip(words) {
            *w = u64::from_le_bytes(*bytes);
        }
    }
    block
}

/// Stores a block at byte offset `off` (ignored if out of bounds, which callers never ask for).
#[inline(always)]
fn store(s: &mut [u8], off: usize, block: &Block) {
    if let Some(bytes) = s
        .split_at_mut_checked(off)
        .and_then(|(_, rest)| rest.first_chunk_mut::<BLOCK>())
    {
        let (words, _) = bytes.as_chunks_mut::<8>();
        for (bytes, w) in words.iter_mut().zip(block) {
            *bytes = w.to_le_bytes();
        }
    }
}

/// `a ^ b`, word by word.
#[inline(always)]
fn xor(mut a: Block, b: &Block) -> Block {
    for (a, b) in a.iter_mut().zip(b) {
        *a ^= b;
    }
    a
}

/// `s[off..off + n]` (`n < 32`) as a zero-padded block.
#[inline]
fn load_partial(s: &[u8], off: usize, n: usize) -> Block {
    let mut bytes = [0u8; BLOCK];
    if let (Some(dst), Some(src)) = (bytes.get_mut(..n), s.get(off..off.saturating_add(n))) {
        dst.copy_from_slice(src);
    }
    let block = load(&bytes, 0);
    bytes.zeroize();
    block
}

/// Stores the first `n` bytes (`n < 32`) of a block at `s[off..off + n]`.
#[inline]
fn store_partial(s: &mut [u8], off: usize, n: usize, block: &Block) {
    let mut bytes = [0u8; BLOCK];
    store(&mut bytes, 0, block);
    if let (Some(dst), Some(src)) = (s.get_mut(off..off.saturating_add(n)), bytes.get(..n)) {
        dst.copy_from_slice(src);
    }
    bytes.zeroize();
}

/// `out[r] = init[r] ^ Σ_c coeffs[r][c] · inputs[c]` over the byte range `start..end`.
///
/// Shapes were checked by the caller (`Engine::dot`).
pub(super) fn dot(
    coeffs: &Coeffs,
    inputs: &[&[u8]],
    init: &Init<'_>,
    outputs: &mut [&mut [u8]],
    start: usize,
    end: usize,
) {
    match inputs.len() {
        0 => dot_n::<0>(coeffs, inputs, init, outputs, start, end),
        1 => dot_n::<1>(coeffs, inputs, init, outputs, start, end),
        2 => dot_n::<2>(coeffs, inputs, init, outputs, start, end),
        3 => dot_n::<3>(coeffs, inputs, init, outputs, start, end),
        4 => dot_n::<4>(coeffs, inputs, init, outputs, start, end),
        5 => dot_n::<5>(coeffs, inputs, init, outputs, start, end),
        6 => dot_n::<6>(coeffs, inputs, init, outputs, start, end),
        7 => dot_n::<7>(coeffs, inputs, init, outputs, start, end),
        8 => dot_n::<8>(coeffs, inputs, init, outputs, start, end),
        // `Engine::dot` rejects more than MAX_COLS inputs before calling a kernel.
        _ => {}
    }
}

/// [`dot`] for exactly `C` inputs, so that the planes and the public words stay in registers
/// or a small fixed-size frame.
#[inline]
fn dot_n<const C: usize>(
    coeffs: &Coeffs,
    inputs: &[&[u8]],
    init: &Init<'_>,
    outputs: &mut [&mut [u8]],
    start: usize,
    end: usize,
) {
    let Ok(inputs) = <&[&[u8]; C]>::try_from(inputs) else {
        return;
    };
    let plan = Plan::<C>::new(coeffs, outputs.len().min(MAX_ROWS));
    let mut planes = [[[0u64; WORDS]; 8]; C];
    // The inputs of `Init::Relative` are taken relative to the base (public mode).
    let relative = matches!(init, Init::Relative(_));

    let mut off = start;
    while end.checked_sub(off).is_some_and(|left| left >= BLOCK) {
        let base = match init {
            Init::Xor(base) | Init::Relative(base) => load(base, off),
            Init::Zero | Init::Accumulate => [0; WORDS],
        };
        let shift = if relative { base } else { [0; WORDS] };
        let x: [Block; C] = inputs.map(|input| xor(load(input, off), &shift));
        plan.planes(&x, &mut planes);
        for (r, out) in outputs.iter_mut().enumerate() {
            let mut acc = match init {
                Init::Accumulate => load(out, off),
                Init::Zero | Init::Xor(_) | Init::Relative(_) => base,
            };
            plan.accumulate(r, &planes, &mut acc);
            store(out, off, &acc);
        }
        off = off.wrapping_add(BLOCK);
    }

    let n = end.saturating_sub(off);
    if n > 0 {
        let mut base = match init {
            Init::Xor(base) | Init::Relative(base) => load_partial(base, off, n),
            Init::Zero | Init::Accumulate => [0; WORDS],
        };
        let mut shift = if relative { base } else { [0; WORDS] };
        let mut x: [Block; C] = inputs.map(|input| xor(load_partial(input, off, n), &shift));
        plan.planes(&x, &mut planes);
        for (r, out) in outputs.iter_mut().enumerate() {
            let mut acc = match init {
                Init::Accumulate => load_partial(out, off, n),
                Init::Zero | Init::Xor(_) | Init::Relative(_) => base,
            };
            plan.accumulate(r, &planes, &mut acc);
            store_partial(out, off, n, &acc);
            acc.zeroize();
        }
        x.iter_mut().for_each(Zeroize::zeroize);
        base.zeroize();
        shift.zeroize();
    }
    // The planes are the only explicit buffer of secret-derived words; the rest lives in
    // registers.
    planes
        .iter_mut()
        .flat_map(|planes| planes.iter_mut())
        .for_each(Zeroize::zeroize);
}

/// Horner's rule over the rows of a small split (see `Engine::horner_small`): `len` bytes,
/// `inputs` coefficient rows, then the base row, at stride `len` in `buf`.
pub(super) fn horner_small(buf: &[u8], len: usize, inputs: usize, x: u8, out: &mut [u8]) {
    if len <= BLOCK {
        horner_bytes::<BLOCK>(buf, len, inputs, x, out);
    } else {
        horner_bytes::<{ 2 * BLOCK }>(buf, len, inputs, x, out);
    }
}

/// [`horner_small`] on `N`-byte arrays, with the small kernels' byte operations below.
#[inline(always)]
fn horner_bytes<const N: usize>(buf: &[u8], len: usize, inputs: usize, x: u8, out: &mut [u8]) {
    // The leading coefficient (or the base row when there is none), then rows `inputs - 2`
    // down to 0, then the base row (index `inputs`): no product of the initial zero.
    let first = inputs.saturating_sub(1);
    let mut acc = [0u8; N];
    load_bytes(&mut acc, buf, first.saturating_mul(len));
    if inputs > 0 {
        let mut next = [0u8; N];
        for row in (0..first).rev().chain(core::iter::once(inputs)) {
            load_bytes(&mut next, buf, row.saturating_mul(len));
            // next ^= x · acc, which then becomes the running value.
            mul_acc_bytes(&mut next, &mut acc, x);
            acc = next;
        }
    }
    store_bytes(out, &acc);
}

/// Every share of a small split at once (see `Engine::split_small`): `outs[r] = base ^
/// Σ_c xs[r]^(c+1) · in[c]` for the rows of `buf` (`inputs` coefficient rows, then the base
/// row, at stride `len`).
///
/// Where Horner's rule per share multiplies every coefficient row by every `x`, this walks each
/// coefficient row's doubling chain `in[c], x·in[c], x^2·in[c], …` once, as far as the largest
/// public scalar `xs[r]^(c+1)` needs, and adds each doubling to the shares whose scalar has that
/// bit set: splitting a 32-byte key 3-of-5 needs 6 block doublings instead of 12.
pub(super) fn split_small(
    buf: &[u8],
    len: usize,
    inputs: usize,
    xs: &[u8],
    outs: &mut [&mut [u8]],
) {
    // One instance per exact share count: every loop over the shares is unrolled and each
    // share's running sum stays in vector registers.
    match (len <= BLOCK, xs.len().min(outs.len())) {
        (true, 1) => split_bytes::<BLOCK, 1>(buf, len, inputs, xs, outs),
        (true, 2) => split_bytes::<BLOCK, 2>(buf, len, inputs, xs, outs),
        (true, 3) => split_bytes::<BLOCK, 3>(buf, len, inputs, xs, outs),
        (true, 4) => split_bytes::<BLOCK, 4>(buf, len, inputs, xs, outs),
        (true, 5) => split_bytes::<BLOCK, 5>(buf, len, inputs, xs, outs),
        (true, 6) => split_bytes::<BLOCK, 6>(buf, len, inputs, xs, outs),
        (true, 7) => split_bytes::<BLOCK, 7>(buf, len, inputs, xs, outs),
        (true, _) => split_bytes::<BLOCK, MAX_ROWS>(buf, len, inputs, xs, outs),
        (false, 1) => split_bytes::<{ 2 * BLOCK }, 1>(buf, len, inputs, xs, outs),
        (false, 2) => split_bytes::<{ 2 * BLOCK }, 2>(buf, len, inputs, xs, outs),
        (false, 3) => split_bytes::<{ 2 * BLOCK }, 3>(buf, len, inputs, xs, outs),
        (false, 4) => split_bytes::<{ 2 * BLOCK }, 4>(buf, len, inputs, xs, outs),
        (false, 5) => split_bytes::<{ 2 * BLOCK }, 5>(buf, len, inputs, xs, outs),
        (false, 6) => split_bytes::<{ 2 * BLOCK }, 6>(buf, len, inputs, xs, outs),
        (false, 7) => split_bytes::<{ 2 * BLOCK }, 7>(buf, len, inputs, xs, outs),
        (false, _) => split_bytes::<{ 2 * BLOCK }, MAX_ROWS>(buf, len, inputs, xs, outs),
    }
}

// The small kernels below work on whole `[u8; N]` arrays, byte by byte, with no branch inside an
// array operation. The compiler turns each array operation into a few vector instructions (two
// 16-byte SSE2 operations per 32-byte step on x86_64, NEON on aarch64), with no intrinsics: the
// doubling of a byte becomes an add, a signed compare (the mask of the top bits), an AND and a
// XOR. The same code on `u64` words stayed scalar, with more operations per byte, and with five
// shares' sums it ran out of registers.
//
// Their locals are values the compiler keeps in registers, like the SIMD kernels' vectors, and
// are not wiped (the crate README's security notes: registers and spills are not wiped,
// explicit buffers are). A volatile wipe would force every array into memory for the whole
// computation: measured 1.6 to 3 times slower, and it would itself create the stack copies it
// then clears. The secret bytes these kernels read sit in the caller's `SmallRows` buffer,
// which is wiped on drop.

/// Copies the `N` bytes of `buf` from `off` into `dst` (left as it is if out of bounds, which
/// callers never reach: every row of a `SmallRows` has a whole block of buffer behind it).
// Into a destination rather than returned: `Option::unwrap_or` on the array compiled to a
// byte-by-byte select.
#[inline(always)]
fn load_bytes<const N: usize>(dst: &mut [u8; N], buf: &[u8], off: usize) {
    if let Some(src) = buf.get(off..).and_then(<[u8]>::first_chunk::<N>) {
        *dst = *src;
    }
}

/// The first `out.len()` (at most `N`) bytes of `bytes` into `out`.
#[inline(always)]
fn store_bytes<const N: usize>(out: &mut [u8], bytes: &[u8; N]) {
    // A whole array (a 32- or 64-byte key) is a fixed-size copy; a shorter row a `memcpy`.
    if let Ok(out) = <&mut [u8; N]>::try_from(&mut *out) {
        *out = *bytes;
    } else if let Some(src) = bytes.get(..out.len()) {
        out.copy_from_slice(src);
    }
}

/// Every byte of `v` multiplied by x, reduced by 0x11B: a shift, and 0x1B selected by the top
/// bit through a mask (no branch).
#[inline(always)]
fn xtime_bytes<const N: usize>(v: &mut [u8; N]) {
    for b in v.iter_mut() {
        *b = (*b << 1) ^ (0u8.wrapping_sub(*b >> 7) & 0x1B);
    }
}

/// `acc ^= v`, byte by byte.
#[inline(always)]
fn xor_bytes<const N: usize>(acc: &mut [u8; N], v: &[u8; N]) {
    for (a, b) in acc.iter_mut().zip(v) {
        *a ^= b;
    }
}

/// `acc ^= s · v` for a *public* scalar `s`: the doublings `x^b · v` selected by the bits of `s`.
/// Branches on `s` only; `v` is never inspected. `v` is left doubled.
#[inline(always)]
fn mul_acc_bytes<const N: usize>(acc: &mut [u8; N], v: &mut [u8; N], s: u8) {
    let mut bits = s;
    while bits != 0 {
        if bits & 1 == 1 {
            xor_bytes(acc, v);
        }
        bits >>= 1;
        if bits != 0 {
            xtime_bytes(v);
        }
    }
}

/// [`split_small`] on `N`-byte arrays for exactly `R` shares (`xs` and `outs` have `R`
/// entries; with fewer, nothing is written, which the dispatch above never asks for).
#[inline(always)]
fn split_bytes<const N: usize, const R: usize>(
    buf: &[u8],
    len: usize,
    inputs: usize,
    xs: &[u8],
    outs: &mut [&mut [u8]],
) {
    let (Some(xs), Some(outs)) = (xs.first_chunk::<R>(), outs.first_chunk_mut::<R>()) else {
        return;
    };
    let mut base = [0u8; N];
    load_bytes(&mut base, buf, inputs.saturating_mul(len));
    let mut acc = [base; R];
    let mut power = [0u8; N];
    // `scalars[r]` is `xs[r]^(c+1)` for the coefficient row `c` being added. Public.
    let mut scalars = *xs;
    for c in 0..inputs {
        load_bytes(&mut power, buf, c.saturating_mul(len));
        // The bits of each share's scalar not yet added, lowest first.
        let mut pending = scalars;
        loop {
            let mut more = 0u8;
            for (a, s) in acc.iter_mut().zip(pending.iter_mut()) {
                // Branches on a bit of the public scalar only.
                if *s & 1 != 0 {
                    xor_bytes(a, &power);
                }
                *s >>= 1;
                more |= *s;
            }
            // The next doubling only if some share still needs a higher bit.
            if more == 0 {
                break;
            }
            xtime_bytes(&mut power);
        }
        if c.saturating_add(1) < inputs {
            for (s, x) in scalars.iter_mut().zip(xs) {
                *s = field::mul_vartime(*s, *x);
            }
        }
    }
    for (out, a) in outs.iter_mut().zip(&acc) {
        store_bytes(out, a);
    }
}

/// `out = base ^ Σ_c scalars[c] · (in[c] ^ base)` over small rows (see `Engine::dot_small`).
pub(super) fn dot_small(
    buf: &[u8],
    len: usize,
    inputs: usize,
    scalars: &[u8; MAX_COLS],
    out: &mut [u8],
) {
    if len <= BLOCK {
        dot_bytes::<BLOCK>(buf, len, inputs, scalars, out);
    } else {
        dot_bytes::<{ 2 * BLOCK }>(buf, len, inputs, scalars, out);
    }
}

/// [`dot_small`] on `N`-byte arrays.
#[inline(always)]
fn dot_bytes<const N: usize>(
    buf: &[u8],
    len: usize,
    inputs: usize,
    scalars: &[u8; MAX_COLS],
    out: &mut [u8],
) {
    let mut base = [0u8; N];
    load_bytes(&mut base, buf, inputs.saturating_mul(len));
    let mut acc = base;
    let mut v = [0u8; N];
    for (c, s) in scalars.iter().enumerate().take(inputs) {
        load_bytes(&mut v, buf, c.saturating_mul(len));
        xor_bytes(&mut v, &base);
        mul_acc_bytes(&mut acc, &mut v, *s);
    }
    store_bytes(out, &acc);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_select_bits_per_byte() {
        let w = u64::from_le_bytes([0x00, 0xFF, 0x01, 0x80, 0x55, 0xAA, 0x0F, 0xF0]);
        for b in 0..8u32 {
            let mask = bit_mask(w, b);
            for (i, byte) in w.to_le_bytes().iter().enumerate() {
                let expected = if (byte >> b) & 1 == 1 { 0xFF } else { 0x00 };
                assert_eq!(mask.to_le_bytes()[i], expected, "bit {b} of byte {i}");
            }
        }
    }

    #[test]
    fn doubling_matches_the_field() {
        for v in 0..=255u8 {
            let w = u64::from_le_bytes([v, 0, 0xFF, v ^ 0x80, 1, 0x80, v, 0x7F]);
            let doubled = xtime_word(w).to_le_bytes();
            for (d, b) in doubled.iter().zip(w.to_le_bytes()) {
                assert_eq!(*d, field::xtime(b), "2 * {b:#04x}");
            }
        }
    }

    #[test]
    fn byte_doubling_and_products_match_the_field() {
        let all: [u8; 256] = core::array::from_fn(|i| u8::try_from(i).unwrap());
        let mut doubled = all;
        xtime_bytes(&mut doubled);
        for (d, b) in doubled.iter().zip(all) {
            assert_eq!(*d, field::xtime(b), "2 * {b:#04x}");
        }
        for s in [0u8, 1, 2, 3, 0x53, 0x80, 0xFF] {
            let mut acc = [0x5Au8; 256];
            let mut v = all;
            mul_acc_bytes(&mut acc, &mut v, s);
            for (a, b) in acc.iter().zip(all) {
                assert_eq!(*a, 0x5A ^ field::mul(s, b), "{s:#04x} * {b:#04x}");
            }
        }
    }

    /// Every scalar times every byte, through both plans (whichever `Plan::new` would pick).
    #[test]
    fn single_products_match_the_field_in_both_modes() {
        for c in 0..=255u8 {
            let mut coeffs = Coeffs::ZERO;
            coeffs.set(0, 0, c);
            let mut plan = Plan::<1>::new(&coeffs, 1);
            for mode in [Mode::Masks, Mode::Powers] {
                plan.mode = mode;
                plan.levels = match mode {
                    Mode::Masks => 8,
                    Mode::Powers => 8 - c.leading_zeros() as usize,
                };
                let mut multiple = c;
                for (b, word) in plan.words[0][0].iter_mut().enumerate() {
                    *word = match mode {
                        Mode::Masks => splat(multiple),
                        Mode::Powers => 0u64.wrapping_sub(u64::from((c >> b) & 1)),
                    };
                    multiple = field::xtime(multiple);
                }
                for v in 0..=255u8 {
                    let x = [[splat(v), splat(v ^ 0x5A), 0, splat(v.rotate_left(3))]];
                    let mut planes = [[[0u64; WORDS]; 8]; 1];
                    plan.planes(&x, &mut planes);
                    let mut acc = [0u64; WORDS];
                    plan.accumulate(0, &planes, &mut acc);
                    let expected = [
                        splat(field::mul(c, v)),
                        splat(field::mul(c, v ^ 0x5A)),
                        0,
                        splat(field::mul(c, v.rotate_left(3))),
                    ];
                    assert_eq!(acc, expected, "{c:#04x} * {v:#04x} ({mode:?})");
                }
            }
        }
    }

    #[test]
    fn small_scalars_use_few_powers_and_large_ones_use_masks() {
        let mut coeffs = Coeffs::ZERO;
        for (r, x) in [1u8, 2, 3].into_iter().enumerate() {
            coeffs.set(r, 0, x);
        }
        let plan = Plan::<1>::new(&coeffs, 3);
        assert_eq!((plan.mode, plan.levels), (Mode::Powers, 2));
        coeffs.set(0, 0, 0xC7);
        let plan = Plan::<1>::new(&coeffs, 1);
        assert_eq!((plan.mode, plan.levels), (Mode::Masks, 8));
        let plan = Plan::<1>::new(&Coeffs::ZERO, 1);
        assert_eq!((plan.mode, plan.levels), (Mode::Powers, 0));
    }
}
