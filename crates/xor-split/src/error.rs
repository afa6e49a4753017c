//! The crate's one error type.

use crate::{MAX_SHARES, MIN_SHARES};

/// Everything that can go wrong when splitting or combining.
///
/// Every variant carries only public facts: counts, lengths and positions in the caller's list
/// of shares. No variant, message or `source` ever holds a byte of a secret or a share.
/// Validation happens before any output is written, in the order the variants are checked by
/// each function's `# Errors` section, so one bad input always produces the same error.
///
/// # Example
///
/// ```
/// use xor_split::{split, Error};
///
/// let err = split(b"", 2).unwrap_err();
/// assert!(matches!(err, Error::EmptySecret));
/// assert_eq!(err.to_string(), "cannot split an empty secret");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The secret given to a split function has no bytes. An empty secret would produce empty
    /// shares that protect nothing, so it is refused rather than split.
    #[error("cannot split an empty secret")]
    EmptySecret,

    /// A share has no bytes. A split never produces one, so an empty share is always a
    /// transport or storage mistake on the caller's side.
    #[error("a share is empty: XOR shares are as long as the secret, which is never empty")]
    EmptyShare,

    /// A split was asked for a number of shares outside `2..=255`, or more than 255 shares
    /// were given to a combine function.
    #[error(
        "share count {count} is out of range: XOR splitting uses {MIN_SHARES} to {MAX_SHARES} shares"
    )]
    ShareCountOutOfRange {
        /// The number of shares asked for or given.
        count: usize,
    },

    /// A combine function was given fewer than 2 shares. XOR splitting is n-of-n: every share
    /// of the split is needed, and a split always has at least 2.
    #[error(
        "too few shares to combine: got {count}, need every share of the split (at least {MIN_SHARES})"
    )]
    TooFewShares {
        /// The number of shares given.
        count: usize,
    },

    /// A share's length differs from the expected one. When combining, the first share sets
    /// the expected length; when splitting into caller buffers, the secret does.
    #[error("share at position {position} is {found} bytes long, expected {expected}")]
    ShareLengthMismatch {
        /// The share's zero-based position in the list the caller passed.
        position: usize,
        /// The length every share must have.
        expected: usize,
        /// The length this share has.
        found: usize,
    },

    /// The output buffer given to [`combine_into`](crate::combine_into) is not as long as the
    /// shares.
    #[error("output buffer is {found} bytes long, expected {expected} (the length of the shares)")]
    OutputLengthMismatch {
        /// The share length, which the output must match.
        expected: usize,
        /// The output buffer's length.
        found: usize,
    },

    /// The operating system's random number generator failed. Only the one-call
    /// [`split`](crate::split) and [`split_into`](crate::split_into) use it; any output written
    /// before the failure has been wiped.
    #[error("the operating system random number generator failed")]
    Rng(#[source] getrandom::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins every message: they are part of what an operator reads, so a change is deliberate.
    #[test]
    fn messages_are_stable_and_name_the_fix() {
        let cases = [
            (Error::EmptySecret, "cannot split an empty secret"),
            (
                Error::EmptyShare,
                "a share is empty: XOR shares are as long as the secret, which is never empty",
            ),
            (
                Error::ShareCountOutOfRange { count: 256 },
                "share count 256 is out of range: XOR splitting uses 2 to 255 shares",
            ),
            (
                Error::TooFewShares { count: 1 },
                "too few shares to combine: got 1, need every share of the split (at least 2)",
            ),
            (
                Error::ShareLengthMismatch {
                    position: 2,
                    expected: 32,
                    found: 31,
                },
                "share at position 2 is 31 bytes long, expected 32",
            ),
            (
                Error::OutputLengthMismatch {
                    expected: 32,
                    found: 16,
                },
                "output buffer is 16 bytes long, expected 32 (the length of the shares)",
            ),
            (
                Error::Rng(getrandom::Error::UNSUPPORTED),
                "the operating system random number generator failed",
            ),
        ];
        for (error, message) in cases {
            assert_eq!(error.to_string(), message);
        }
    }

    #[test]
    fn rng_error_keeps_its_source() {
        let error = Error::Rng(getrandom::Error::UNSUPPORTED);
        let source = std::error::Error::source(&error).map(ToString::to_string);
        assert_eq!(source, Some(getrandom::Error::UNSUPPORTED.to_string()));
    }
}
