//! Server-generated secret values for `secret-rotate`.

use subtle::{ConditionallySelectable as _, ConstantTimeEq as _};
use zeroize::Zeroizing;

use crate::problem::ApiError;

/// The alphabets a generated value can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Charset {
    Alphanumeric,
    Hex,
    /// Printable ASCII without space.
    Ascii,
}

impl Charset {
    pub(crate) fn from_name(name: &str) -> Result<Charset, ApiError> {
        match name {
            "alphanumeric" => Ok(Charset::Alphanumeric),
            "hex" => Ok(Charset::Hex),
            "ascii" => Ok(Charset::Ascii),
            _ => Err(ApiError::Validation(
                "`charset` must be one of alphanumeric, hex, ascii".into(),
            )),
        }
    }

    fn alphabet(self) -> Vec<u8> {
        match self {
            Charset::Alphanumeric => (b'0'..=b'9')
                .chain(b'A'..=b'Z')
                .chain(b'a'..=b'z')
                .collect(),
            Charset::Hex => (b'0'..=b'9').chain(b'a'..=b'f').collect(),
            Charset::Ascii => (b'!'..=b'~').collect(),
        }
    }
}

/// A uniformly random value of `length` characters from `charset`.
///
/// Each character is chosen by rejection sampling (no modulo bias) and read from the alphabet
/// with a constant-time scan, so no memory index depends on the value.
pub(crate) fn random_value(
    charset: Charset,
    length: usize,
) -> Result<Zeroizing<String>, getrandom::Error> {
    let alphabet = charset.alphabet();
    // Alphabets have at most 94 characters, so the length always fits a byte.
    let n = u8::try_from(alphabet.len()).unwrap_or(u8::MAX);
    // The largest multiple of n below 256: bytes at or above it are redrawn.
    let limit = 256 - (256 % u16::from(n));
    let mut out = Zeroizing::new(String::with_capacity(length));
    let mut pool = Zeroizing::new([0u8; 64]);
    let mut used = pool.len();
    while out.len() < length {
        if used == pool.len() {
            getrandom::fill(pool.as_mut())?;
            used = 0;
        }
        let byte = pool[used];
        used += 1;
        // Whether a byte is rejected says nothing about the characters that are kept.
        if u16::from(byte) >= limit {
            continue;
        }
        let index = byte % n;
        let mut chosen = 0u8;
        for (i, c) in (0..=u8::MAX).zip(alphabet.iter()) {
            chosen.conditional_assign(c, i.ct_eq(&index));
        }
        out.push(char::from(chosen));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_have_the_length_and_alphabet() {
        for (charset, len) in [
            (Charset::Alphanumeric, 32),
            (Charset::Hex, 64),
            (Charset::Ascii, 100),
        ] {
            let value = random_value(charset, len).unwrap();
            assert_eq!(value.len(), len);
            let alphabet = charset.alphabet();
            assert!(value.bytes().all(|b| alphabet.contains(&b)));
        }
        assert_ne!(
            random_value(Charset::Alphanumeric, 32).unwrap(),
            random_value(Charset::Alphanumeric, 32).unwrap()
        );
    }

    #[test]
    fn every_character_is_reachable() {
        let value = random_value(Charset::Hex, 4096).unwrap();
        for c in Charset::Hex.alphabet() {
            assert!(value.as_bytes().contains(&c));
        }
    }
}
