//! The crate's one error type.

use crate::backend::Backend;

/// Everything that can go wrong when splitting, combining, recovering or decoding shares.
///
/// Every variant carries only public facts: thresholds, counts, lengths, x-coordinates and
/// positions in the caller's list of shares. No variant, message or `source` ever holds a byte
/// of a secret or of a share's y-values. Inputs are validated before any output is written; an
/// error raised after output was written (a failed consistency check) wipes that output first.
///
/// # Example
///
/// ```
/// use gf256_shamir::{split, Error};
///
/// let err = split(b"", 2, 3).unwrap_err();
/// assert!(matches!(err, Error::EmptySecret));
/// assert_eq!(err.to_string(), "cannot split an empty secret");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The secret given to a split function has no bytes: it would produce empty shares that
    /// protect nothing.
    #[error("cannot split an empty secret")]
    EmptySecret,

    /// A share has no y-bytes (an encoded share shorter than 2 bytes, or an empty value). A
    /// split never produces one, so it is a transport or storage mistake.
    #[error("a share needs an x-coordinate and at least one y-byte, got {len} bytes")]
    ShareTooShort {
        /// The length of what was given: the whole encoding, or the y-values alone.
        len: usize,
    },

    /// A threshold outside `2..=255`. A threshold of 1 would make every share the secret.
    #[error("threshold {threshold} is out of range: use 2 to 255")]
    ThresholdOutOfRange {
        /// The threshold asked for.
        threshold: usize,
    },

    /// A split was asked for fewer shares than its threshold (the secret could never be
    /// recovered) or more than 255 (there are only 255 non-zero x-coordinates).
    #[error("share count {count} is out of range: use the threshold ({threshold}) to 255")]
    ShareCountOutOfRange {
        /// The threshold of the split.
        threshold: u8,
        /// The number of shares asked for.
        count: usize,
    },

    /// An x-coordinate of 0. The share at x = 0 *is* the secret, so a forged share there would
    /// substitute the secret; such shares are refused everywhere.
    #[error("x-coordinate 0 is not a valid share index: indices are 1 to 255")]
    ZeroIndex,

    /// Two shares (or two requested indices) have the same x-coordinate. Interpolation needs
    /// distinct points; a duplicate is usually the same share given twice.
    #[error("x-coordinate {index} appears more than once")]
    DuplicateIndex {
        /// The repeated x-coordinate.
        index: u8,
    },

    /// Fewer shares than the threshold were given. Fewer than `threshold` shares determine
    /// nothing about the secret, so this is an error rather than a wrong answer.
    #[error("not enough shares: got {provided}, the threshold is {threshold}")]
    NotEnoughShares {
        /// The threshold passed to the combine or recover call.
        threshold: u8,
        /// The number of shares given.
        provided: usize,
    },

    /// A share's y-values have a different length from the first share's (or, for splits into
    /// caller buffers, from the secret).
    #[error("share at position {position} has {found} y-bytes, expected {expected}")]
    ShareLengthMismatch {
        /// The zero-based position in the caller's list.
        position: usize,
        /// The length every share must have.
        expected: usize,
        /// The length this share has.
        found: usize,
    },

    /// A caller-supplied output buffer has the wrong length, or the wrong number of buffers
    /// was supplied.
    #[error("output {what} is {found}, expected {expected}")]
    OutputMismatch {
        /// What was wrong: `"buffer length"` or `"buffer count"`. (`"kernel shape"` reports a
        /// broken internal invariant of the arithmetic kernels instead of panicking; no input
        /// can cause it.)
        what: &'static str,
        /// The required value.
        expected: usize,
        /// The value given.
        found: usize,
    },

    /// More shares than the threshold were given and they do not all lie on one polynomial of
    /// degree `threshold - 1`: at least one share is corrupted, forged, or from another split.
    /// Nothing was returned (any output buffer has been wiped).
    #[error(
        "the shares are inconsistent: the surplus shares do not match the first {threshold}; \
         at least one share is corrupted or from another split"
    )]
    InconsistentShares {
        /// The threshold passed to the call.
        threshold: u8,
    },

    /// A backend was forced on a splitter or combiner but this CPU (or this build, under
    /// `--cfg gf256_backend="soft"`) cannot run it.
    #[error("backend {backend} is not supported on this machine or build")]
    UnsupportedBackend {
        /// The backend that was asked for.
        backend: Backend,
    },

    /// The operating system's random number generator failed while seeding or reseeding
    /// [`FastRng`](crate::FastRng). Any output written before the failure has been wiped.
    #[error("the operating system random number generator failed")]
    Rng(#[source] getrandom::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins every message: they are what an operator reads, so a change is deliberate.
    #[test]
    fn messages_are_stable_and_name_the_fix() {
        let cases = [
            (Error::EmptySecret, "cannot split an empty secret"),
            (
                Error::ShareTooShort { len: 1 },
                "a share needs an x-coordinate and at least one y-byte, got 1 bytes",
            ),
            (
                Error::ThresholdOutOfRange { threshold: 1 },
                "threshold 1 is out of range: use 2 to 255",
            ),
            (
                Error::ShareCountOutOfRange {
                    threshold: 3,
                    count: 2,
                },
                "share count 2 is out of range: use the threshold (3) to 255",
            ),
            (
                Error::ZeroIndex,
                "x-coordinate 0 is not a valid share index: indices are 1 to 255",
            ),
            (
                Error::DuplicateIndex { index: 7 },
                "x-coordinate 7 appears more than once",
            ),
            (
                Error::NotEnoughShares {
                    threshold: 3,
                    provided: 2,
                },
                "not enough shares: got 2, the threshold is 3",
            ),
            (
                Error::ShareLengthMismatch {
                    position: 1,
                    expected: 32,
                    found: 31,
                },
                "share at position 1 has 31 y-bytes, expected 32",
            ),
            (
                Error::OutputMismatch {
                    what: "buffer length",
                    expected: 32,
                    found: 16,
                },
                "output buffer length is 16, expected 32",
            ),
            (
                Error::InconsistentShares { threshold: 2 },
                "the shares are inconsistent: the surplus shares do not match the first 2; \
                 at least one share is corrupted or from another split",
            ),
            (
                Error::UnsupportedBackend {
                    backend: Backend::Avx512Gfni,
                },
                "backend avx512-gfni is not supported on this machine or build",
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
