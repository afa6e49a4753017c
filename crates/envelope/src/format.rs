//! The versioned wire format and its parser.
//!
//! ```text
//! offset  size  field
//!      0     4  magic "MPVE"
//!      4     1  format version = 1
//!      5     1  algorithm id = 1 (AES-256-GCM, HKDF-SHA256 key commitment)
//!      6    32  salt (random per envelope)
//!     38    32  key commitment
//!     70     4  plaintext length n, big-endian u32, at most MAX_PLAINTEXT_LEN
//!     74     n  ciphertext
//!   74+n    16  GCM tag
//! ```
//!
//! Bytes 0..74 are the header; the header followed by the canonical context encoding is the
//! GCM associated data, so every header byte is authenticated.

use core::fmt;

use crate::aead::TAG_LEN;
use crate::kdf::{COMMITMENT_LEN, KeySchedule, SALT_LEN};
use crate::{Context, Dek, Error, MAX_PLAINTEXT_LEN};

/// The magic bytes every envelope starts with.
pub(crate) const MAGIC: [u8; 4] = *b"MPVE";
/// The only format version this build reads and writes.
pub(crate) const FORMAT_VERSION: u8 = 1;
/// AES-256-GCM with a 96-bit HKDF-derived nonce, keyed by HKDF-SHA256 from the DEK and a
/// 256-bit salt, with a 256-bit HKDF-SHA256 key commitment over the DEK and the context.
pub(crate) const ALGORITHM_ID: u8 = 1;
/// Magic, version, algorithm id, salt, commitment and the 4-byte length.
pub(crate) const HEADER_LEN: usize = 4 + 1 + 1 + SALT_LEN + COMMITMENT_LEN + 4;

/// The fixed-size fields before the ciphertext.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) salt: [u8; SALT_LEN],
    pub(crate) commitment: [u8; COMMITMENT_LEN],
    /// The plaintext (and ciphertext) length, at most [`MAX_PLAINTEXT_LEN`].
    pub(crate) payload_len: u32,
}

impl Header {
    /// A header for a plaintext of `len` bytes.
    ///
    /// # Errors
    ///
    /// [`Error::PlaintextTooLarge`] if `len` exceeds [`MAX_PLAINTEXT_LEN`].
    pub(crate) fn new(
        salt: [u8; SALT_LEN],
        commitment: [u8; COMMITMENT_LEN],
        len: usize,
    ) -> Result<Self, Error> {
        let too_large = Error::PlaintextTooLarge {
            len,
            max: MAX_PLAINTEXT_LEN,
        };
        if len > MAX_PLAINTEXT_LEN {
            return Err(too_large);
        }
        let payload_len = u32::try_from(len).map_err(|_| too_large)?;
        Ok(Self {
            salt,
            commitment,
            payload_len,
        })
    }

    /// Appends the 74 header bytes.
    fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&MAGIC);
        out.push(FORMAT_VERSION);
        out.push(ALGORITHM_ID);
        out.extend_from_slice(&self.salt);
        out.extend_from_slice(&self.commitment);
        out.extend_from_slice(&self.payload_len.to_be_bytes());
    }

    /// The GCM associated data: the header, then the canonical context encoding. The header
    /// has a fixed length, so the concatenation is unambiguous.
    pub(crate) fn associated_data(&self, context: &Context) -> Vec<u8> {
        let encoded = context.canonical_encoding();
        let mut aad = Vec::with_capacity(HEADER_LEN.saturating_add(encoded.len()));
        self.write_to(&mut aad);
        aad.extend_from_slice(encoded);
        aad
    }
}

/// A sealed secret: the output of [`seal`](crate::seal) and the input of
/// [`open`](crate::open), and the bytes to store.
///
/// An `Envelope` holds no secret (only a salt, a key commitment, the ciphertext and its tag),
/// so it may be cloned, compared, logged and stored freely. [`Envelope::to_bytes`] gives the
/// versioned wire format and [`Envelope::from_bytes`] parses it back; parsing checks the
/// framing only, and the cryptographic checks happen in [`open`](crate::open) and
/// [`Envelope::verify_key`].
///
/// Format v1, algorithm 1 (all integers big-endian; `n` is the plaintext length):
///
/// | offset | size | field |
/// |---:|---:|---|
/// | 0 | 4 | magic `MPVE` |
/// | 4 | 1 | format version, `1` |
/// | 5 | 1 | algorithm id, `1` (AES-256-GCM, HKDF-SHA256 key commitment) |
/// | 6 | 32 | salt, fresh from a CSPRNG for every envelope |
/// | 38 | 32 | key commitment |
/// | 70 | 4 | `n`, at most [`MAX_PLAINTEXT_LEN`] |
/// | 74 | `n` | ciphertext |
/// | 74 + `n` | 16 | GCM tag |
///
/// # Example
///
/// ```
/// use envelope::{Context, Dek, Envelope, open, seal};
///
/// let dek = Dek::generate()?;
/// let context = Context::builder()
///     .vault_id("vault-1")
///     .path("db/password")
///     .version(1)
///     .secret_type("password")
///     .custody_mode("standard")
///     .build()?;
/// let stored: Vec<u8> = seal(&dek, &context, b"hunter2")?.to_bytes();
/// assert_eq!(stored.len(), Envelope::OVERHEAD + 7);
///
/// let envelope = Envelope::from_bytes(&stored)?;
/// assert_eq!(open(&dek, &context, &envelope)?.expose_secret(), b"hunter2");
/// # Ok::<(), envelope::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Envelope {
    pub(crate) header: Header,
    pub(crate) ciphertext: Vec<u8>,
    pub(crate) tag: [u8; TAG_LEN],
}

impl Envelope {
    /// How many bytes the wire format adds to the plaintext: 74 of header and a 16-byte tag.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(envelope::Envelope::OVERHEAD, 90);
    /// ```
    pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;

    /// Parses the wire format. Checks the framing only (magic, version, algorithm, lengths);
    /// nothing here depends on a key, so nothing here can leak one.
    ///
    /// The parser never panics and never allocates more than the input's length: the declared
    /// plaintext length is checked against [`MAX_PLAINTEXT_LEN`] and against the bytes actually
    /// present before anything is copied. Every accepted input is in canonical form:
    /// [`Envelope::to_bytes`] gives back exactly the bytes parsed.
    ///
    /// # Errors
    ///
    /// Checked front to back, so the first problem in the input is the one reported:
    /// - [`Error::BadMagic`] if the input does not start with `MPVE` (an input that is a
    ///   strict prefix of `MPVE` is [`Error::Truncated`]);
    /// - [`Error::UnsupportedVersion`] if the version byte is not 1;
    /// - [`Error::UnsupportedAlgorithm`] if the algorithm id is not 1;
    /// - [`Error::PlaintextTooLarge`] if the declared length exceeds [`MAX_PLAINTEXT_LEN`];
    /// - [`Error::Truncated`] if the input ends before the header, the ciphertext or the tag
    ///   does;
    /// - [`Error::TrailingBytes`] if anything follows the tag.
    ///
    /// # Example
    ///
    /// ```
    /// use envelope::{Envelope, Error};
    ///
    /// assert_eq!(Envelope::from_bytes(b"PK\x03\x04"), Err(Error::BadMagic));
    /// let version_2 = Envelope::from_bytes(b"MPVE\x02");
    /// assert_eq!(version_2, Err(Error::UnsupportedVersion { version: 2 }));
    /// assert_eq!(Envelope::from_bytes(b"MPVE\x01\x01"), Err(Error::Truncated));
    /// ```
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        // Report a wrong magic as such even when the input is shorter than the magic, unless
        // the input could still be the start of a valid envelope.
        let shown = bytes.get(..MAGIC.len()).unwrap_or(bytes);
        if !MAGIC.starts_with(shown) {
            return Err(Error::BadMagic);
        }

        let mut reader = Reader { rest: bytes };
        // The magic was compared above; reading it here only moves past it (or finds the
        // input too short).
        let _magic: [u8; 4] = reader.array()?;
        let [version] = reader.array()?;
        if version != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion { version });
        }
        let [id] = reader.array()?;
        if id != ALGORITHM_ID {
            return Err(Error::UnsupportedAlgorithm { id });
        }
        let salt = reader.array()?;
        let commitment = reader.array()?;
        let payload_len = u32::from_be_bytes(reader.array()?);
        // A length that does not fit in `usize` (16-bit targets) is certainly too large.
        let len = usize::try_from(payload_len).unwrap_or(usize::MAX);
        let header = Header::new(salt, commitment, len)?;
        let ciphertext = reader.slice(len)?.to_vec();
        let tag = reader.array()?;
        if !reader.rest.is_empty() {
            return Err(Error::TrailingBytes {
                count: reader.rest.len(),
            });
        }
        Ok(Self {
            header,
            ciphertext,
            tag,
        })
    }

    /// Serialises the envelope to the wire format (see the table above).
    ///
    /// # Example
    ///
    /// ```
    /// # use envelope::{Context, Dek, Envelope, seal};
    /// # let dek = Dek::generate()?;
    /// # let context = Context::builder().vault_id("v").path("p").version(1)
    /// #     .secret_type("t").custody_mode("standard").build()?;
    /// let bytes = seal(&dek, &context, b"s3cret")?.to_bytes();
    /// assert!(bytes.starts_with(b"MPVE\x01\x01"));
    /// assert_eq!(Envelope::from_bytes(&bytes)?.to_bytes(), bytes);
    /// # Ok::<(), envelope::Error>(())
    /// ```
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.header.write_to(&mut out);
        out.extend_from_slice(&self.ciphertext);
        out.extend_from_slice(&self.tag);
        out
    }

    /// The length of [`Envelope::to_bytes`]: the plaintext length plus
    /// [`Envelope::OVERHEAD`].
    ///
    /// # Example
    ///
    /// ```
    /// # use envelope::{Context, Dek, Envelope, seal};
    /// # let dek = Dek::generate()?;
    /// # let context = Context::builder().vault_id("v").path("p").version(1)
    /// #     .secret_type("t").custody_mode("standard").build()?;
    /// let envelope = seal(&dek, &context, b"s3cret")?;
    /// assert_eq!(envelope.encoded_len(), 6 + Envelope::OVERHEAD);
    /// # Ok::<(), envelope::Error>(())
    /// ```
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        // At most MAX_PLAINTEXT_LEN + 90, far from overflowing.
        Self::OVERHEAD.saturating_add(self.ciphertext.len())
    }

    /// The length of the sealed plaintext in bytes (public: the ciphertext is as long).
    ///
    /// # Example
    ///
    /// ```
    /// # use envelope::{Context, Dek, seal};
    /// # let dek = Dek::generate()?;
    /// # let context = Context::builder().vault_id("v").path("p").version(1)
    /// #     .secret_type("t").custody_mode("standard").build()?;
    /// assert_eq!(seal(&dek, &context, b"s3cret")?.plaintext_len(), 6);
    /// # Ok::<(), envelope::Error>(())
    /// ```
    #[must_use]
    pub fn plaintext_len(&self) -> usize {
        self.ciphertext.len()
    }

    /// Checks, without decrypting, that `dek` and `context` are the ones this envelope was
    /// sealed under, by recomputing the key commitment and comparing it in constant time.
    ///
    /// This is how a DEK rebuilt from shares is tested before use: when a custody layer tries
    /// combinations of shares, each wrong combination gives a wrong DEK, and this check rejects
    /// it for sure (up to the 2^-256 chance of a commitment collision) at the cost of two
    /// HMAC-SHA256 computations (one HKDF extract, one expand), whatever the plaintext size.
    /// A DEK that passes will also open the envelope unless the ciphertext or tag was
    /// modified.
    ///
    /// The context is part of the check because the commitment covers it (see the crate's
    /// "Security" section); a custody layer always has it at hand, since it needs it to open.
    ///
    /// # Errors
    ///
    /// [`Error::AuthenticationFailed`] if the commitment does not match: a wrong DEK, a wrong
    /// context, or a modified salt or commitment. Which of these it was is not revealed.
    ///
    /// # Example
    ///
    /// ```
    /// use envelope::{Context, Dek, Error, seal};
    ///
    /// let dek = Dek::generate()?;
    /// let context = Context::builder()
    ///     .vault_id("vault-1")
    ///     .path("db/password")
    ///     .version(1)
    ///     .secret_type("password")
    ///     .custody_mode("2of3_multi_hsm")
    ///     .build()?;
    /// let envelope = seal(&dek, &context, b"hunter2")?;
    ///
    /// assert_eq!(envelope.verify_key(&dek, &context), Ok(()));
    /// let wrong = Dek::generate()?;
    /// assert_eq!(envelope.verify_key(&wrong, &context), Err(Error::AuthenticationFailed));
    /// # Ok::<(), Error>(())
    /// ```
    pub fn verify_key(&self, dek: &Dek, context: &Context) -> Result<(), Error> {
        let schedule = KeySchedule::new(dek, &self.header.salt);
        // Branching on the comparison's outcome is fine: the outcome is what the caller learns
        // anyway. What must not leak is how close a wrong candidate came, and `ct_eq` ensures
        // the comparison itself takes the same time for every input.
        if bool::from(schedule.commitment_matches(context, &self.header.commitment)) {
            Ok(())
        } else {
            Err(Error::AuthenticationFailed)
        }
    }
}

impl fmt::Debug for Envelope {
    // Hand-written to keep a possibly megabyte-long ciphertext out of logs; nothing here is
    // secret, it is only noise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("version", &FORMAT_VERSION)
            .field("algorithm", &ALGORITHM_ID)
            .field("plaintext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

/// A forward-only reader over untrusted bytes whose every read is bounds-checked.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads exactly `N` bytes.
    fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let (head, rest) = self.rest.split_first_chunk::<N>().ok_or(Error::Truncated)?;
        self.rest = rest;
        Ok(*head)
    }

    /// Reads exactly `len` bytes.
    fn slice(&mut self, len: usize) -> Result<&'a [u8], Error> {
        let (head, rest) = self.rest.split_at_checked(len).ok_or(Error::Truncated)?;
        self.rest = rest;
        Ok(head)
    }
}

#[cfg(test)]
// Test code indexes and counts freely: a panic there is a failing test, not a vulnerability.
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    #[test]
    fn header_is_74_bytes_and_overhead_is_90() {
        assert_eq!(HEADER_LEN, 74);
        assert_eq!(Envelope::OVERHEAD, 90);
        let header = Header::new([0xAA; SALT_LEN], [0xBB; COMMITMENT_LEN], 0x0102).unwrap();
        let mut out = Vec::new();
        header.write_to(&mut out);
        assert_eq!(out.len(), HEADER_LEN);
        let mut expected = b"MPVE\x01\x01".to_vec();
        expected.extend_from_slice(&[0xAA; 32]);
        expected.extend_from_slice(&[0xBB; 32]);
        expected.extend_from_slice(&[0, 0, 1, 2]);
        assert_eq!(out, expected);
    }

    #[test]
    fn header_refuses_lengths_above_the_limit() {
        assert!(Header::new([0; SALT_LEN], [0; COMMITMENT_LEN], MAX_PLAINTEXT_LEN).is_ok());
        assert_eq!(
            Header::new([0; SALT_LEN], [0; COMMITMENT_LEN], MAX_PLAINTEXT_LEN + 1),
            Err(Error::PlaintextTooLarge {
                len: MAX_PLAINTEXT_LEN + 1,
                max: MAX_PLAINTEXT_LEN
            })
        );
    }
}
