//! The byte kernels every split and combine runs through.
//!
//! Each is a plain zipped loop with no branch and no index that depends on the bytes: the only
//! thing that changes the work done is the slice length, which is public. The loops are written
//! so that LLVM vectorizes them (16-byte SSE2 loads, XORs and stores on the x86-64 baseline,
//! wider with `-C target-cpu`); the throughput benchmark checks that they run at memory speed.
//! Callers have already checked that the slices have the same length; `zip` would otherwise
//! stop at the shorter one instead of panicking.

/// `dst[i] ^= src[i]` for every `i`.
#[inline]
pub(crate) fn xor_in_place(dst: &mut [u8], src: &[u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d ^= *s;
    }
}

/// `dst[i] ^= a[i] ^ b[i]` for every `i`: folds two more shares into a combine per pass over
/// `dst`, halving the memory traffic of combines with more than three shares.
#[inline]
pub(crate) fn xor2_in_place(dst: &mut [u8], a: &[u8], b: &[u8]) {
    for ((d, x), y) in dst.iter_mut().zip(a).zip(b) {
        *d ^= *x ^ *y;
    }
}

/// `dst[i] = a[i] ^ b[i]` for every `i`, in one pass (the whole of a 2-share combine).
#[inline]
pub(crate) fn xor_into(dst: &mut [u8], a: &[u8], b: &[u8]) {
    for ((d, x), y) in dst.iter_mut().zip(a).zip(b) {
        *d = *x ^ *y;
    }
}

/// `dst[i] = a[i] ^ b[i] ^ c[i]` for every `i`, in one pass (the whole of a 3-share combine).
#[inline]
pub(crate) fn xor3_into(dst: &mut [u8], a: &[u8], b: &[u8], c: &[u8]) {
    for (((d, x), y), z) in dst.iter_mut().zip(a).zip(b).zip(c) {
        *d = *x ^ *y ^ *z;
    }
}

/// Appends `a[i] ^ b[i]` for every `i` to `dst`, an empty vector with room for the result: the
/// allocating combine writes its output once, without first zero-filling it.
#[inline]
pub(crate) fn xor_extend(dst: &mut Vec<u8>, a: &[u8], b: &[u8]) {
    dst.extend(a.iter().zip(b).map(|(x, y)| *x ^ *y));
}

/// Appends `a[i] ^ b[i] ^ c[i]` for every `i` to `dst`, as [`xor_extend`] does for two.
#[inline]
pub(crate) fn xor3_extend(dst: &mut Vec<u8>, a: &[u8], b: &[u8], c: &[u8]) {
    dst.extend(a.iter().zip(b).zip(c).map(|((x, y), z)| *x ^ *y ^ *z));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three distinct byte patterns, 300 bytes long so the vectorized body and the scalar tail
    /// both run.
    fn inputs() -> [Vec<u8>; 3] {
        [
            (0..300u16)
                .map(|i| i.to_le_bytes()[0].wrapping_mul(7))
                .collect(),
            (0..300u16)
                .map(|i| i.to_le_bytes()[0].wrapping_mul(13) ^ 0x5A)
                .collect(),
            (0..300u16)
                .map(|i| i.to_le_bytes()[0].wrapping_mul(29) ^ 0xC3)
                .collect(),
        ]
    }

    #[test]
    fn every_kernel_matches_a_bytewise_reference() {
        let [a, b, c] = inputs();
        let ab: Vec<u8> = (0..300).map(|i| a[i] ^ b[i]).collect();
        let abc: Vec<u8> = (0..300).map(|i| a[i] ^ b[i] ^ c[i]).collect();

        let mut dst = vec![0xEE; 300];
        xor_into(&mut dst, &a, &b);
        assert_eq!(dst, ab);
        xor3_into(&mut dst, &a, &b, &c);
        assert_eq!(dst, abc);

        let mut dst = a.clone();
        xor_in_place(&mut dst, &b);
        assert_eq!(dst, ab);
        let mut dst = a.clone();
        xor2_in_place(&mut dst, &b, &c);
        assert_eq!(dst, abc);

        let mut dst = Vec::with_capacity(300);
        xor_extend(&mut dst, &a, &b);
        assert_eq!(dst, ab);
        let mut dst = Vec::with_capacity(300);
        xor3_extend(&mut dst, &a, &b, &c);
        assert_eq!(dst, abc);
    }
}
