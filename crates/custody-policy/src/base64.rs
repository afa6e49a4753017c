//! Constant-time base64 for client shares.
//!
//! A client share is secret, and the usual base64 codecs look each character up in a table
//! indexed by the character (decode) or by the 6-bit value (encode): a secret-dependent memory
//! index, which cache timing can observe. These functions compute every character and every
//! 6-bit value with arithmetic only (the technique of RustCrypto's `base64ct`): no branch and
//! no memory index depends on a byte of the share. What may vary is public: the input length,
//! and whether the input is well formed (the answer is returned anyway).
//!
//! Decoding accepts both RFC 4648 alphabets at once (standard `+/` and URL-safe `-_`), with or
//! without `=` padding. Encoding writes the standard alphabet with padding. Non-canonical
//! encodings (unused low bits set in the last character) are refused, so each share has exactly
//! one encoding per alphabet.

use zeroize::Zeroizing;

/// The 6-bit value of a base64 character of either alphabet, or -1.
///
/// Each test `((lo - c) & (c - hi)) >> 8` is all ones exactly when `lo < c < hi` (both
/// differences negative) and zero otherwise; the matching range adds its offset to -1.
fn decode_char(c: u8) -> i16 {
    let c = i16::from(c);
    let mut value: i16 = -1;
    // 'A'..='Z' (0x41..=0x5a) -> 0..=25
    value += (((0x40 - c) & (c - 0x5b)) >> 8) & (c - 64);
    // 'a'..='z' (0x61..=0x7a) -> 26..=51
    value += (((0x60 - c) & (c - 0x7b)) >> 8) & (c - 70);
    // '0'..='9' (0x30..=0x39) -> 52..=61
    value += (((0x2f - c) & (c - 0x3a)) >> 8) & (c + 5);
    // '+' (0x2b) and '-' (0x2d) -> 62
    value += (((0x2a - c) & (c - 0x2c)) >> 8) & 63;
    value += (((0x2c - c) & (c - 0x2e)) >> 8) & 63;
    // '/' (0x2f) and '_' (0x5f) -> 63
    value += (((0x2e - c) & (c - 0x30)) >> 8) & 64;
    value += (((0x5e - c) & (c - 0x60)) >> 8) & 64;
    value
}

/// The standard-alphabet character of a 6-bit value.
///
/// Starts from the offset of 'A' and corrects it for each range the value is past; each
/// `(bound - v) >> 8` is all ones exactly when `v > bound`.
fn encode_char(v: u8) -> u8 {
    let v = i16::from(v & 0x3f);
    let mut diff: i16 = 0x41;
    // 26..=51 -> 'a'..='z': offset 71
    diff += ((25 - v) >> 8) & 6;
    // 52..=61 -> '0'..='9': offset -4
    diff -= ((51 - v) >> 8) & 75;
    // 62 -> '+': offset -19
    diff -= ((61 - v) >> 8) & 15;
    // 63 -> '/': offset -16
    diff += ((62 - v) >> 8) & 3;
    // `v + diff` is always an ASCII character (0x2b..=0x7a), so the cast keeps every bit.
    (v + diff).to_le_bytes()[0]
}

/// Encodes `bytes` with the standard alphabet and padding, into a buffer wiped on drop.
pub(crate) fn encode(bytes: &[u8]) -> Zeroizing<String> {
    let groups = bytes.len().div_ceil(3);
    let mut out = Zeroizing::new(String::with_capacity(groups.saturating_mul(4)));
    for chunk in bytes.chunks(3) {
        let b0 = chunk.first().copied().unwrap_or(0);
        let b1 = chunk.get(1).copied().unwrap_or(0);
        let b2 = chunk.get(2).copied().unwrap_or(0);
        let chars = [
            encode_char(b0 >> 2),
            encode_char(((b0 << 4) | (b1 >> 4)) & 0x3f),
            encode_char(((b1 << 2) | (b2 >> 6)) & 0x3f),
            encode_char(b2 & 0x3f),
        ];
        // The chunk length is public (it follows from the input length).
        let used = chunk.len().saturating_add(1);
        for (i, &c) in chars.iter().enumerate() {
            out.push(if i < used { char::from(c) } else { '=' });
        }
    }
    out
}

/// Decodes base64 of either alphabet, padded or not. `None` if the input is not canonical
/// base64; the decoded bytes otherwise, in a buffer wiped on drop.
pub(crate) fn decode(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    let mut chars = text.as_bytes();
    // Padding is only valid on a whole number of 4-character groups, and its length follows
    // from the data length, so these checks look only at public structure.
    if chars.len().is_multiple_of(4) {
        for _ in 0..2 {
            if let Some((&b'=', rest)) = chars.split_last() {
                chars = rest;
            }
        }
    }
    let tail = chars.len() % 4;
    if tail == 1 {
        return None;
    }
    let full = chars.len() / 4;
    let out_len = full
        .saturating_mul(3)
        .saturating_add(tail.saturating_sub(1));
    let mut out = Zeroizing::new(Vec::with_capacity(out_len));
    // Accumulates -1 for any invalid character; checked once, after every character was read.
    let mut invalid: i16 = 0;
    for group in chars.chunks(4) {
        let v = [
            decode_char(group.first().copied().unwrap_or(b'A')),
            decode_char(group.get(1).copied().unwrap_or(b'A')),
            decode_char(group.get(2).copied().unwrap_or(b'A')),
            decode_char(group.get(3).copied().unwrap_or(b'A')),
        ];
        invalid |= v[0] | v[1] | v[2] | v[3];
        // Every `v` is 0..=63 here unless `invalid` is set, so the low byte holds it.
        let [v0, v1, v2, v3] = v.map(|x| x.to_le_bytes()[0]);
        let bytes = [(v0 << 2) | (v1 >> 4), (v1 << 4) | (v2 >> 2), (v2 << 6) | v3];
        let produced = group.len().saturating_sub(1);
        out.extend_from_slice(bytes.get(..produced).unwrap_or(&bytes));
        // A short final group must leave the unused low bits of its last character zero, so
        // that no two strings decode to the same share.
        match group.len() {
            2 => invalid |= -i16::from(v1 & 0x0f != 0),
            3 => invalid |= -i16::from(v2 & 0x03 != 0),
            _ => {}
        }
    }
    if invalid < 0 { None } else { Some(out) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    #[test]
    fn every_character_maps_like_the_table() {
        for c in 0..=255u8 {
            let expected = STANDARD
                .iter()
                .position(|&s| s == c)
                .or_else(|| URL_SAFE.iter().position(|&s| s == c))
                .map_or(-1, |v| i16::try_from(v).unwrap());
            assert_eq!(decode_char(c), expected, "char {c:#04x}");
        }
        for v in 0..64u8 {
            assert_eq!(encode_char(v), STANDARD[usize::from(v)], "value {v}");
        }
    }

    #[test]
    fn rfc4648_vectors() {
        let vectors: [(&[u8], &str); 7] = [
            (b"", ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"fooba", "Zm9vYmE="),
            (b"foobar", "Zm9vYmFy"),
        ];
        for (bytes, text) in vectors {
            assert_eq!(encode(bytes).as_str(), text);
            assert_eq!(decode(text).unwrap().as_slice(), bytes);
            assert_eq!(
                decode(text.trim_end_matches('=')).unwrap().as_slice(),
                bytes
            );
        }
    }

    #[test]
    fn both_alphabets_decode_to_the_same_bytes() {
        let bytes: Vec<u8> = (0..=255).collect();
        let standard = encode(&bytes);
        let url: String = standard
            .chars()
            .map(|c| match c {
                '+' => '-',
                '/' => '_',
                c => c,
            })
            .collect();
        assert!(standard.contains('+') && standard.contains('/'));
        assert_eq!(decode(&standard).unwrap().as_slice(), bytes.as_slice());
        assert_eq!(decode(&url).unwrap().as_slice(), bytes.as_slice());
        assert_eq!(
            decode(url.trim_end_matches('=')).unwrap().as_slice(),
            bytes.as_slice()
        );
    }

    #[test]
    fn malformed_input_is_refused() {
        for bad in [
            "Z", "Zg=", "Zg===", "Z===", "Zm9v!", "Zm 9v", "Zm9v\n", "Zh==", "Zm9=", "=Zm9v",
            "Zm=v", "Zm9vY", "é",
        ] {
            assert!(decode(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn round_trips_every_length() {
        for len in 0..100usize {
            let bytes: Vec<u8> = (0..len)
                .map(|i| u8::try_from((i * 37 + 11) % 256).unwrap())
                .collect();
            let text = encode(&bytes);
            assert_eq!(decode(&text).unwrap().as_slice(), bytes.as_slice());
        }
    }
}
