//! The crate's one error type.

/// Everything that can go wrong when building a context, creating a DEK, sealing, parsing or
/// opening an envelope.
///
/// The variants fall into two groups with different disclosure rules:
///
/// - **Opening** fails with exactly one variant, [`Error::AuthenticationFailed`], whatever the
///   cause: a wrong DEK, a wrong context (any field), a modified commitment, ciphertext or tag.
///   Saying which check failed would help an attacker and help no honest caller, whose only
///   remedy is the same in every case (use the right key and context, or restore the envelope
///   from a good copy).
/// - **Framing** errors from [`Envelope::from_bytes`](crate::Envelope::from_bytes)
///   ([`Error::Truncated`], [`Error::TrailingBytes`], [`Error::BadMagic`],
///   [`Error::UnsupportedVersion`], [`Error::UnsupportedAlgorithm`],
///   [`Error::PlaintextTooLarge`]) are distinct. They describe only the public layout of the
///   bytes, which anyone holding them can read, and are checked before any key is touched, so
///   they reveal nothing about the DEK, the context or the plaintext; being precise there makes
///   storage and transport bugs quick to find.
///
/// No variant, message or `source` ever holds a byte of a DEK, a derived key or a plaintext.
/// Lengths do appear: they are public (a ciphertext is as long as its plaintext).
///
/// # Example
///
/// ```
/// use envelope::{Envelope, Error};
///
/// let err = Envelope::from_bytes(b"MPVE").unwrap_err();
/// assert_eq!(err, Error::Truncated);
/// assert_eq!(err.to_string(), "envelope is truncated: the input ends before the envelope does");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Opening or verifying an envelope failed: the DEK or the context is not the one it was
    /// sealed under, or the envelope was modified. Deliberately says no more (see the type
    /// documentation).
    #[error("authentication failed")]
    AuthenticationFailed,

    /// The input ends before the envelope does (a header field, the ciphertext or the tag is
    /// cut short). Usually a storage or transport bug.
    #[error("envelope is truncated: the input ends before the envelope does")]
    Truncated,

    /// Bytes follow the end of the envelope. The format is exact, so this is a storage or
    /// transport bug, or two values were concatenated.
    #[error("envelope is followed by {count} unexpected trailing bytes")]
    TrailingBytes {
        /// How many bytes follow the envelope.
        count: usize,
    },

    /// The input does not start with the envelope magic bytes `MPVE`: it is not an mpc-vault
    /// envelope at all.
    #[error("not an mpc-vault envelope: the input does not start with the magic bytes \"MPVE\"")]
    BadMagic,

    /// The envelope's format version is not one this build reads.
    #[error("unsupported envelope format version {version}: this build reads version 1")]
    UnsupportedVersion {
        /// The version byte found.
        version: u8,
    },

    /// The envelope's algorithm id is not one this build implements.
    #[error(
        "unsupported envelope algorithm id {id}: this build implements id 1 \
         (AES-256-GCM with an HKDF-SHA256 key commitment)"
    )]
    UnsupportedAlgorithm {
        /// The algorithm id byte found.
        id: u8,
    },

    /// A plaintext given to a seal function, or the plaintext length declared by an envelope
    /// being parsed, exceeds [`MAX_PLAINTEXT_LEN`](crate::MAX_PLAINTEXT_LEN).
    #[error("plaintext of {len} bytes exceeds the maximum of {max} bytes")]
    PlaintextTooLarge {
        /// The plaintext length given or declared.
        len: usize,
        /// The limit, [`MAX_PLAINTEXT_LEN`](crate::MAX_PLAINTEXT_LEN).
        max: usize,
    },

    /// [`Dek::from_bytes`](crate::Dek::from_bytes) was given a slice that is not exactly
    /// [`Dek::LEN`](crate::Dek::LEN) bytes long.
    #[error("a DEK is exactly 32 bytes, got {len}")]
    InvalidDekLength {
        /// The length given.
        len: usize,
    },

    /// [`ContextBuilder::build`](crate::ContextBuilder::build) was called without setting a
    /// required field. Every field is required: a context with a hole in it would bind the
    /// envelope to less than the caller thinks.
    #[error("context field `{field}` is missing: set it with `ContextBuilder::{field}`")]
    MissingContextField {
        /// The field's name, as the builder method that sets it.
        field: &'static str,
    },

    /// A text field given to [`ContextBuilder`](crate::ContextBuilder) is empty or longer than
    /// [`Context::MAX_FIELD_LEN`](crate::Context::MAX_FIELD_LEN) bytes.
    #[error("context field `{field}` is {len} bytes long: it must be 1 to {max} bytes")]
    InvalidContextField {
        /// The field's name, as the builder method that sets it.
        field: &'static str,
        /// The length given, in bytes of UTF-8.
        len: usize,
        /// The limit, [`Context::MAX_FIELD_LEN`](crate::Context::MAX_FIELD_LEN).
        max: usize,
    },

    /// The operating system's random number generator failed, so no DEK or salt could be
    /// drawn. Nothing was produced; retrying may succeed, and the `source` says why it failed.
    #[error("the operating system random number generator failed")]
    Rng(#[source] getrandom::Error),
}
