//! The portable backend: SWAR over `u64` words, constant time, no tables indexed by data.
//!
//! A product `c · v` of a public scalar `c` and a secret byte `v` is linear over GF(2) in the
//! bits of `v`:
//!
//! ```text
//! c · v = XOR over b in 0..8 of  bit_b(v) · (c · x^b)
//! ```
//!
//! so each secret word is turned into eight byte masks (`0xFF` where bit `b` of a byte is set,
//! `0x00` elsewhere; shifts, ANDs and a subtraction, no branch), and each product is eight
//! ANDs with the broadcast multiples `c · x^b` and eight XORs. The masks of an input word are
//! computed once and shared by every output row, which is what makes splitting into many
//! shares cheap. Nothing branches on, or indexes memory with, a secret byte; the only branches
//! are on lengths and counts, which are public.
//!
//! This is also the tail path of the SSE/AVX2 backends (the bytes after the last full vector).

use zeroize::Zeroize;

use super::{Coeffs, Init, MAX_ROWS};
use crate::field;

/// `0x01` in every byte.
const LOW_BITS: u64 = 0x0101_0101_0101_0101;

/// The byte `b` in every byte of a word.
#[inline(always)]
fn splat(b: u8) -> u64 {
    u64::from(b).wrapping_mul(LOW_BITS)
}

/// The eight broadcast multiples `c · x^b`, `b = 0..8`, of a public scalar.
#[inline]
fn expand(c: u8) -> [u64; 8] {
    let mut multiples = [0u64; 8];
    let mut power = c;
    for slot in &mut multiples {
        *slot = splat(power);
        power = field::xtime(power);
    }
    multiples
}

/// For each bit position `b`, a word that is `0xFF` in the bytes of `w` whose bit `b` is set.
#[inline(always)]
fn bit_masks(w: u64) -> [u64; 8] {
    let mut masks = [0u64; 8];
    for (b, mask) in masks.iter_mut().enumerate() {
        let bits = (w >> b) & LOW_BITS;
        // Each byte of `bits` is 0 or 1; `bits * 255` spreads it to 0x00 or 0xFF with no carry
        // between bytes, written as a shift and a subtraction.
        *mask = (bits << 8).wrapping_sub(bits);
    }
    masks
}

/// The word at byte offset `off`, or 0 if it is out of bounds (callers never ask for that).
#[inline(always)]
fn load(s: &[u8], off: usize) -> u64 {
    s.get(off..off.wrapping_add(8))
        .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
        .map_or(0, u64::from_le_bytes)
}

/// Stores a word at byte offset `off` (ignored if out of bounds, which callers never ask for).
#[inline(always)]
fn store(s: &mut [u8], off: usize, w: u64) {
    if let Some(bytes) = s.get_mut(off..off.wrapping_add(8)) {
        bytes.copy_from_slice(&w.to_le_bytes());
    }
}

/// Copies `s[off..off + n]` (`n < 8`) into a zero-padded word.
#[inline]
fn load_partial(s: &[u8], off: usize, n: usize) -> u64 {
    let mut bytes = [0u8; 8];
    if let (Some(dst), Some(src)) = (bytes.get_mut(..n), s.get(off..off.wrapping_add(n))) {
        dst.copy_from_slice(src);
    }
    let w = u64::from_le_bytes(bytes);
    bytes.as_mut_slice().zeroize();
    w
}

/// Stores the low `n` bytes (`n < 8`) of a word at `s[off..off + n]`.
#[inline]
fn store_partial(s: &mut [u8], off: usize, n: usize, w: u64) {
    let mut bytes = w.to_le_bytes();
    if let (Some(dst), Some(src)) = (s.get_mut(off..off.wrapping_add(n)), bytes.get(..n)) {
        dst.copy_from_slice(src);
    }
    bytes.as_mut_slice().zeroize();
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

/// [`dot`] for exactly `C` inputs, so that the masks and the scalar multiples stay in
/// registers or a small fixed-size frame.
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
    let mut multiples = [[[0u64; 8]; C]; MAX_ROWS];
    for (r, row) in multiples.iter_mut().enumerate().take(outputs.len()) {
        for (c, slot) in row.iter_mut().enumerate() {
            *slot = expand(coeffs.get(r, c));
        }
    }

    // One word of every output from one word of every input.
    let word = |input_words: [u64; C], base: u64, r: usize, current: u64| -> u64 {
        let mut acc = match init {
            Init::Accumulate => current,
            Init::Zero | Init::Xor(_) => base,
        };
        if let Some(row) = multiples.get(r) {
            for (w, multiples) in input_words.iter().zip(row) {
                let masks = bit_masks(*w);
                for (mask, multiple) in masks.iter().zip(multiples) {
                    acc ^= mask & multiple;
                }
            }
        }
        acc
    };

    let mut off = start;
    while end.checked_sub(off).is_some_and(|left| left >= 8) {
        let input_words: [u64; C] = inputs.map(|input| load(input, off));
        let base = match init {
            Init::Xor(base) => load(base, off),
            Init::Zero | Init::Accumulate => 0,
        };
        for (r, out) in outputs.iter_mut().enumerate() {
            let current = load(out, off);
            store(out, off, word(input_words, base, r, current));
        }
        off = off.wrapping_add(8);
    }

    let n = end.saturating_sub(off);
    if n > 0 {
        let mut input_words: [u64; C] = inputs.map(|input| load_partial(input, off, n));
        let mut base = match init {
            Init::Xor(base) => load_partial(base, off, n),
            Init::Zero | Init::Accumulate => 0,
        };
        for (r, out) in outputs.iter_mut().enumerate() {
            let mut current = load_partial(out, off, n);
            current = word(input_words, base, r, current);
            store_partial(out, off, n, current);
            current.zeroize();
        }
        input_words.zeroize();
        base.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_select_bits_per_byte() {
        let w = u64::from_le_bytes([0x00, 0xFF, 0x01, 0x80, 0x55, 0xAA, 0x0F, 0xF0]);
        let masks = bit_masks(w);
        for (b, mask) in masks.iter().enumerate() {
            for (i, byte) in w.to_le_bytes().iter().enumerate() {
                let expected = if (byte >> b) & 1 == 1 { 0xFF } else { 0x00 };
                assert_eq!(mask.to_le_bytes()[i], expected, "bit {b} of byte {i}");
            }
        }
    }

    #[test]
    fn single_products_match_the_field() {
        for c in 0..=255u8 {
            let multiples = expand(c);
            for v in 0..=255u8 {
                let masks = bit_masks(splat(v));
                let product = masks
                    .iter()
                    .zip(&multiples)
                    .fold(0u64, |acc, (m, k)| acc ^ (m & k));
                assert_eq!(product, splat(field::mul(c, v)), "{c:#04x} * {v:#04x}");
            }
        }
    }
}
