//! GF(2^8) arithmetic with the AES polynomial x^8 + x^4 + x^3 + x + 1 (0x11B).
//!
//! Two kinds of function live here, and their names say which is which:
//!
//! - [`xtime`] and [`mul`] are constant time in all their inputs: no branch and no memory
//!   index depends on the operands. They are the reference the SIMD backends are tested
//!   against, and what the known-answer tests use.
//! - Every `*_vartime` function indexes log/exp tables with its inputs. They are only ever
//!   given public values: share x-coordinates and the Lagrange or power coefficients derived
//!   from them. Secret bytes never reach them.

/// The low byte of the field polynomial 0x11B: what `xtime` folds back in when x^8 appears.
pub(crate) const POLY: u8 = 0x1B;

/// Multiplies by x (the polynomial `0x02`), reducing by 0x11B. Constant time.
#[inline]
pub(crate) const fn xtime(a: u8) -> u8 {
    // 0xFF when the top bit is set, 0x00 otherwise, with no branch.
    let mask = 0u8.wrapping_sub(a >> 7);
    (a << 1) ^ (mask & POLY)
}

/// The product of two field elements. Constant time: all eight bits of `b` are visited and
/// selected with masks, never with branches.
#[inline]
pub(crate) const fn mul(a: u8, b: u8) -> u8 {
    let mut acc = 0u8;
    let mut a = a;
    let mut bit = 0u32;
    while bit < 8 {
        let mask = 0u8.wrapping_sub((b >> bit) & 1);
        acc ^= a & mask;
        a = xtime(a);
        bit = bit.wrapping_add(1);
    }
    acc
}

/// `EXP[i] = 3^i`, stored twice over (510 entries, padded to 512) so that the sum of two
/// logarithms indexes it without a reduction.
// Evaluated at compile time: an out-of-range index would fail the build, not panic at run time.
#[allow(clippy::indexing_slicing)]
static EXP: [u8; 512] = {
    let mut table = [0u8; 512];
    let mut value = 1u8;
    let mut i = 0usize;
    while i < 255 {
        table[i] = value;
        table[i.wrapping_add(255)] = value;
        // 3 = x + 1 generates the multiplicative group of this field.
        value = mul(value, 3);
        i = i.wrapping_add(1);
    }
    table
};

/// `LOG[a]` is the `i` in `0..255` with `3^i = a`; `LOG[0]` is unused (0 has no logarithm).
// Evaluated at compile time: an out-of-range index would fail the build, not panic at run time.
#[allow(clippy::indexing_slicing)]
static LOG: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut value = 1u8;
    let mut i = 0u8;
    while i < 255 {
        table[value as usize] = i;
        value = mul(value, 3);
        i = i.wrapping_add(1);
    }
    table
};

/// Reduces `v < 2^24` modulo 255 without a division: 256 is 1 modulo 255, so the base-256
/// digits of `v` can be added. For public values only (it branches on the result).
#[inline]
pub(crate) const fn mod255_vartime(v: u32) -> u32 {
    let v = (v & 0xFF)
        .wrapping_add((v >> 8) & 0xFF)
        .wrapping_add((v >> 16) & 0xFF);
    let v = (v & 0xFF).wrapping_add(v >> 8);
    let v = (v & 0xFF).wrapping_add(v >> 8);
    if v == 255 { 0 } else { v }
}

/// The logarithm of a non-zero public element.
#[inline]
// The index is a `u8`, and the table has 256 entries.
#[allow(clippy::indexing_slicing)]
pub(crate) fn log_vartime(a: u8) -> u32 {
    u32::from(LOG[usize::from(a)])
}

/// `3^e` for a public exponent `e < 510`; out-of-range exponents give 0, which no caller
/// produces (they reduce modulo 255 first).
#[inline]
pub(crate) fn exp_vartime(e: u32) -> u8 {
    usize::try_from(e)
        .ok()
        .and_then(|e| EXP.get(e))
        .copied()
        .unwrap_or(0)
}

/// The product of two public elements, through the log/exp tables.
#[inline]
pub(crate) fn mul_vartime(a: u8, b: u8) -> u8 {
    if a == 0 || b == 0 {
        return 0;
    }
    exp_vartime(log_vartime(a).wrapping_add(log_vartime(b)))
}

/// `x^e` for public `x` and `e`; `0^0` is 1, as the empty product.
#[inline]
pub(crate) fn pow_vartime(x: u8, e: u32) -> u8 {
    if e == 0 {
        return 1;
    }
    if x == 0 {
        return 0;
    }
    // log(x) < 255 and e fits the powers this crate needs (< 256), so the product is < 2^16.
    let e = e & 0xFF;
    exp_vartime(mod255_vartime(log_vartime(x).wrapping_mul(e)))
}

/// The multiplicative inverse of a public element; 0 maps to 0. Only the tests need it:
/// Lagrange coefficients are computed in the log domain without inversions.
#[cfg(test)]
pub(crate) fn inv_vartime(a: u8) -> u8 {
    if a == 0 {
        return 0;
    }
    exp_vartime(255u32.wrapping_sub(log_vartime(a)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Schoolbook carry-less multiplication followed by reduction: an independent oracle.
    fn mul_oracle(a: u8, b: u8) -> u8 {
        let mut product: u16 = 0;
        for bit in 0..8 {
            if (b >> bit) & 1 == 1 {
                product ^= u16::from(a) << bit;
            }
        }
        for bit in (8..16).rev() {
            if (product >> bit) & 1 == 1 {
                product ^= 0x11B << (bit - 8);
            }
        }
        u8::try_from(product).unwrap()
    }

    #[test]
    fn mul_matches_oracle_exhaustively() {
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                let expected = mul_oracle(a, b);
                assert_eq!(mul(a, b), expected, "{a:#04x} * {b:#04x}");
                assert_eq!(mul_vartime(a, b), expected, "{a:#04x} * {b:#04x} (vartime)");
            }
        }
    }

    #[test]
    fn known_products_from_fips_197() {
        // FIPS 197, section 4.2: {57} * {83} = {c1}, and {57} * {13} = {fe}.
        assert_eq!(mul(0x57, 0x83), 0xC1);
        assert_eq!(mul(0x57, 0x13), 0xFE);
        assert_eq!(xtime(0x57), 0xAE);
        assert_eq!(xtime(0xAE), 0x47);
    }

    #[test]
    fn inverse_and_power_are_consistent() {
        assert_eq!(inv_vartime(0), 0);
        for a in 1..=255u8 {
            assert_eq!(mul(a, inv_vartime(a)), 1, "inverse of {a:#04x}");
            let mut power = 1u8;
            for e in 0..=255u32 {
                assert_eq!(pow_vartime(a, e), power, "{a:#04x}^{e}");
                power = mul(power, a);
            }
        }
        assert_eq!(pow_vartime(0, 0), 1);
        assert_eq!(pow_vartime(0, 5), 0);
    }

    #[test]
    fn mod255_matches_remainder() {
        for v in 0..(1u32 << 24) {
            assert_eq!(mod255_vartime(v), v % 255, "{v}");
        }
    }
}
