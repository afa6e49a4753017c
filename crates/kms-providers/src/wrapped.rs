//! The self-describing, versioned wrapped-share format and its binary encoding.
//!
//! The parser is written for hostile input (a database column, a fuzzer): it reads through
//! bounds-checked slices only, bounds every length before using it, rejects trailing bytes and
//! never panics.

use core::fmt;

use crate::context::{WrapContext, put_lv};

/// Largest share (or whole DEK) a provider wraps, in bytes. AWS KMS `Encrypt` accepts at most
/// 4096 bytes of plaintext, so the same bound everywhere keeps every provider interchangeable.
///
/// # Example
///
/// ```
/// assert_eq!(kms_providers::MAX_SHARE_LEN, 4096);
/// ```
pub const MAX_SHARE_LEN: usize = 4096;
/// Largest blob a wrapped share may carry. AES-GCM adds 16 bytes to the share; AWS KMS
/// ciphertext blobs stay under 6144 bytes and RSA-4096 output is 512 bytes.
///
/// # Example
///
/// ```
/// assert_eq!(kms_providers::MAX_BLOB_LEN, 8192);
/// ```
pub const MAX_BLOB_LEN: usize = 8192;
/// Longest key id, in bytes (an AWS key ARN is at most 2048 characters).
///
/// # Example
///
/// ```
/// assert!(kms_providers::KeyId::new("k".repeat(kms_providers::MAX_KEY_ID_LEN + 1)).is_err());
/// ```
pub const MAX_KEY_ID_LEN: usize = 2048;
/// Longest key version, in bytes (Azure versions are 32 hex digits; ours are decimal numbers).
///
/// # Example
///
/// ```
/// assert!(kms_providers::KeyVersion::new("9".repeat(kms_providers::MAX_KEY_VERSION_LEN)).is_ok());
/// ```
pub const MAX_KEY_VERSION_LEN: usize = 128;
/// Longest nonce field, in bytes.
///
/// # Example
///
/// ```
/// assert_eq!(kms_providers::MAX_NONCE_LEN, 32);
/// ```
pub const MAX_NONCE_LEN: usize = 32;
/// Longest encoded wrapped share, in bytes: every field at its bound.
///
/// # Example
///
/// ```
/// use kms_providers::{DecodeError, WrappedShare, MAX_ENCODED_LEN};
/// let too_long = vec![0u8; MAX_ENCODED_LEN + 1];
/// assert!(matches!(WrappedShare::from_bytes(&too_long), Err(DecodeError::TooLong { .. })));
/// ```
pub const MAX_ENCODED_LEN: usize = HEADER_LEN
    + 2
    + MAX_KEY_ID_LEN
    + 1
    + MAX_KEY_VERSION_LEN
    + 1
    + MAX_NONCE_LEN
    + 2
    + MAX_BLOB_LEN;

/// Magic bytes opening every encoded wrapped share ("mpc-vault wrapped share").
const MAGIC: [u8; 4] = *b"MVWS";
/// The encoding version this code writes and reads.
const FORMAT_VERSION: u8 = 1;
/// Magic, format version, provider kind, algorithm.
const HEADER_LEN: usize = 4 + 1 + 1 + 1;
/// AES-GCM nonce length (96 bits, the only size GCM handles without hashing).
pub(crate) const GCM_NONCE_LEN: usize = 12;
/// AES-GCM tag length.
pub(crate) const GCM_TAG_LEN: usize = 16;
/// Domain-separation tag of the associated data used by the AES-GCM providers.
const GCM_AAD_TAG: &[u8] = b"mpc-vault/kms-providers/kek-aad/v1";
/// Azure: RSA-OAEP-256 ciphertext of the smallest (2048-bit) and largest (4096-bit) RSA key
/// Key Vault offers.
pub(crate) const AZURE_RSA_MIN_CIPHERTEXT: usize = 256;
pub(crate) const AZURE_RSA_MAX_CIPHERTEXT: usize = 512;
/// Azure: A256KW ciphertext of a 32-byte content key and a 32-byte context digest (RFC 3394
/// adds one 8-byte block).
pub(crate) const AZURE_KW_CIPHERTEXT: usize = 8 + 32 + 32;

/// Which kind of provider produced a wrapped share. Stored as one byte.
///
/// Every kind parses whether or not its provider's feature is built; a provider refuses shares
/// of any kind other than its own with
/// [`Error::WrongProviderKind`](crate::Error::WrongProviderKind).
///
/// # Example
///
/// ```
/// use kms_providers::ProviderKind;
/// assert_eq!(ProviderKind::from_code(1), Some(ProviderKind::Local));
/// assert_eq!(ProviderKind::Pkcs11.code(), 2);
/// assert_eq!(ProviderKind::Pkcs11.to_string(), "pkcs11");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum ProviderKind {
    /// Software KEK in a key directory or in configuration (`local` feature).
    Local,
    /// AES key in a PKCS#11 token (`pkcs11` feature).
    Pkcs11,
    /// AWS KMS (feature `aws`).
    AwsKms,
    /// Google Cloud KMS (feature `gcp`).
    GcpKms,
    /// Azure Key Vault or Managed HSM (feature `azure`).
    AzureKeyVault,
}

impl ProviderKind {
    /// The byte that encodes this kind.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::ProviderKind;
    /// assert_eq!(ProviderKind::Local.code(), 1);
    /// ```
    pub const fn code(self) -> u8 {
        match self {
            Self::Local => 1,
            Self::Pkcs11 => 2,
            Self::AwsKms => 3,
            Self::GcpKms => 4,
            Self::AzureKeyVault => 5,
        }
    }

    /// The kind a byte encodes, if any.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::ProviderKind;
    /// assert_eq!(ProviderKind::from_code(5), Some(ProviderKind::AzureKeyVault));
    /// assert_eq!(ProviderKind::from_code(0), None);
    /// ```
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Local),
            2 => Some(Self::Pkcs11),
            3 => Some(Self::AwsKms),
            4 => Some(Self::GcpKms),
            5 => Some(Self::AzureKeyVault),
            _ => None,
        }
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Local => "local",
            Self::Pkcs11 => "pkcs11",
            Self::AwsKms => "aws-kms",
            Self::GcpKms => "gcp-kms",
            Self::AzureKeyVault => "azure-key-vault",
        })
    }
}

/// The wrapping algorithm. Stored as one byte; it fixes the nonce and blob shapes.
///
/// # Example
///
/// ```
/// use kms_providers::Algorithm;
/// assert_eq!(Algorithm::Aes256Gcm.nonce_len(), Some(12));
/// assert_eq!(Algorithm::from_code(1), Some(Algorithm::Aes256Gcm));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum Algorithm {
    /// AES-256-GCM with a 96-bit nonce stored in the wrapped form and a 128-bit tag appended to
    /// the blob (`local`, `pkcs11`).
    Aes256Gcm,
    /// AWS KMS `SYMMETRIC_DEFAULT`: the blob is KMS's opaque ciphertext.
    AwsSymmetricDefault,
    /// GCP KMS `GOOGLE_SYMMETRIC_ENCRYPTION`: the blob is KMS's opaque ciphertext.
    GcpSymmetricEncryption,
    /// Azure Key Vault RSA key, `RSA-OAEP-256` `wrapKey`, as a JWE-style hybrid: Key Vault
    /// wraps a fresh 256-bit content key followed by SHA-256 of the context (the operation takes
    /// no associated data), and the share is sealed under that content key with AES-256-GCM.
    /// Blob: `u16 length ‖ Key Vault ciphertext (256 to 512 bytes) ‖ GCM ciphertext ‖ tag`.
    RsaOaepSha256,
    /// Azure Managed HSM `oct-HSM` key, `A256KW` (RFC 3394) `wrapKey`: the same hybrid as
    /// [`Algorithm::RsaOaepSha256`], with a 72-byte Key Vault ciphertext.
    A256Kw,
}

impl Algorithm {
    /// The byte that encodes this algorithm.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::Algorithm;
    /// assert_eq!(Algorithm::Aes256Gcm.code(), 1);
    /// ```
    pub const fn code(self) -> u8 {
        match self {
            Self::Aes256Gcm => 1,
            Self::AwsSymmetricDefault => 2,
            Self::GcpSymmetricEncryption => 3,
            Self::RsaOaepSha256 => 4,
            Self::A256Kw => 5,
        }
    }

    /// The algorithm a byte encodes, if any.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::Algorithm;
    /// assert_eq!(Algorithm::from_code(4), Some(Algorithm::RsaOaepSha256));
    /// assert_eq!(Algorithm::from_code(9), None);
    /// ```
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::Aes256Gcm),
            2 => Some(Self::AwsSymmetricDefault),
            3 => Some(Self::GcpSymmetricEncryption),
            4 => Some(Self::RsaOaepSha256),
            5 => Some(Self::A256Kw),
            _ => None,
        }
    }

    /// The exact nonce length the algorithm stores, or `None` when the wrapped form carries no
    /// nonce (the backend keeps its own inside the blob).
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::Algorithm;
    /// assert_eq!(Algorithm::AwsSymmetricDefault.nonce_len(), None);
    /// ```
    pub const fn nonce_len(self) -> Option<usize> {
        match self {
            Self::Aes256Gcm | Self::RsaOaepSha256 | Self::A256Kw => Some(GCM_NONCE_LEN),
            Self::AwsSymmetricDefault | Self::GcpSymmetricEncryption => None,
        }
    }

    /// Smallest and largest valid blob for this algorithm.
    const fn blob_bounds(self) -> (usize, usize) {
        match self {
            // A tag plus at least one byte of share, at most a maximal share.
            Self::Aes256Gcm => (GCM_TAG_LEN + 1, GCM_TAG_LEN + MAX_SHARE_LEN),
            // The Key Vault ciphertext of an RSA-2048 to RSA-4096 key, then the sealed share.
            Self::RsaOaepSha256 => (
                2 + AZURE_RSA_MIN_CIPHERTEXT + GCM_TAG_LEN + 1,
                2 + AZURE_RSA_MAX_CIPHERTEXT + GCM_TAG_LEN + MAX_SHARE_LEN,
            ),
            Self::A256Kw => (
                2 + AZURE_KW_CIPHERTEXT + GCM_TAG_LEN + 1,
                2 + AZURE_KW_CIPHERTEXT + GCM_TAG_LEN + MAX_SHARE_LEN,
            ),
            Self::AwsSymmetricDefault | Self::GcpSymmetricEncryption => (1, MAX_BLOB_LEN),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Aes256Gcm => "AES-256-GCM",
            Self::AwsSymmetricDefault => "AWS-SYMMETRIC_DEFAULT",
            Self::GcpSymmetricEncryption => "GCP-GOOGLE_SYMMETRIC_ENCRYPTION",
            Self::RsaOaepSha256 => "RSA-OAEP-256",
            Self::A256Kw => "A256KW",
        })
    }
}

/// The name of a KEK inside its provider: a local key name, a PKCS#11 label, a cloud key
/// resource name. Public; 1 to [`MAX_KEY_ID_LEN`] bytes of UTF-8 without control characters.
///
/// # Example
///
/// ```
/// use kms_providers::KeyId;
/// let id = KeyId::new("kek-gcp")?;
/// assert_eq!(id.as_str(), "kek-gcp");
/// assert!(KeyId::new("").is_err());
/// # Ok::<(), kms_providers::DecodeError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct KeyId(String);

impl KeyId {
    /// Checks and wraps a key id.
    ///
    /// # Errors
    ///
    /// [`DecodeError::InvalidKeyId`] if the id is empty, too long or holds a control character.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::KeyId;
    /// assert!(KeyId::new("arn:aws:kms:eu-west-1:111122223333:key/abc").is_ok());
    /// assert!(KeyId::new("bad\nid").is_err());
    /// ```
    pub fn new(id: impl Into<String>) -> Result<Self, DecodeError> {
        let id = id.into();
        if id.is_empty() || id.len() > MAX_KEY_ID_LEN || id.chars().any(char::is_control) {
            return Err(DecodeError::InvalidKeyId);
        }
        Ok(Self(id))
    }

    /// The id as text.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::KeyId;
    /// assert_eq!(KeyId::new("k")?.as_str(), "k");
    /// # Ok::<(), kms_providers::DecodeError>(())
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The version of a KEK: new wraps use the current version, old versions keep unwrapping.
///
/// Opaque text so that every backend fits (Azure uses 32 hex digits); `local` and `pkcs11` use
/// decimal numbers from 1, written without leading zeros so that each number has exactly one
/// spelling. 1 to [`MAX_KEY_VERSION_LEN`] printable ASCII characters.
///
/// # Example
///
/// ```
/// use kms_providers::KeyVersion;
/// let v = KeyVersion::from_number(3);
/// assert_eq!(v.as_str(), "3");
/// assert_eq!(v.as_number(), Some(3));
/// assert_eq!(KeyVersion::new("007")?.as_number(), None);
/// # Ok::<(), kms_providers::DecodeError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct KeyVersion(String);

impl KeyVersion {
    /// Checks and wraps a version string.
    ///
    /// # Errors
    ///
    /// [`DecodeError::InvalidKeyVersion`] if it is empty, too long or not printable ASCII.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::KeyVersion;
    /// assert!(KeyVersion::new("4f1c0b5e9a7d4c3e8b2a1f0e9d8c7b6a").is_ok());
    /// assert!(KeyVersion::new("two words").is_err());
    /// ```
    pub fn new(version: impl Into<String>) -> Result<Self, DecodeError> {
        let version = version.into();
        if version.is_empty()
            || version.len() > MAX_KEY_VERSION_LEN
            || !version.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(DecodeError::InvalidKeyVersion);
        }
        Ok(Self(version))
    }

    /// A numbered version, as `local` and `pkcs11` use.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::KeyVersion;
    /// assert_eq!(KeyVersion::from_number(12).to_string(), "12");
    /// ```
    pub fn from_number(n: u32) -> Self {
        Self(n.to_string())
    }

    /// The number, if this version is a canonical decimal number (no sign, no leading zero).
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::KeyVersion;
    /// assert_eq!(KeyVersion::new("12")?.as_number(), Some(12));
    /// assert_eq!(KeyVersion::new("+12")?.as_number(), None);
    /// # Ok::<(), kms_providers::DecodeError>(())
    /// ```
    pub fn as_number(&self) -> Option<u32> {
        let s = self.0.as_str();
        if !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0')) {
            return None;
        }
        s.parse().ok()
    }

    /// The version as text.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::KeyVersion;
    /// assert_eq!(KeyVersion::from_number(1).as_str(), "1");
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A share wrapped by a provider: which provider kind, key and key version wrapped it, with
/// which algorithm, the nonce, and the ciphertext blob. Not secret.
///
/// The context is deliberately absent: the caller supplies it again on unwrap, and a wrapped
/// share only unwraps under the context it was wrapped under.
///
/// # Encoding
///
/// [`to_bytes`](Self::to_bytes) writes, with big-endian integers:
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 4 | magic `MVWS` |
/// | 4 | 1 | format version, `1` |
/// | 5 | 1 | provider kind ([`ProviderKind::code`]) |
/// | 6 | 1 | algorithm ([`Algorithm::code`]) |
/// | 7 | 2 | key id length *k*, 1 to 2048 |
/// | 9 | *k* | key id, UTF-8 |
/// | 9+*k* | 1 | key version length *v*, 1 to 128 |
/// | 10+*k* | *v* | key version, printable ASCII |
/// | 10+*k*+*v* | 1 | nonce length *n* (12 for AES-256-GCM, 0 for cloud kinds) |
/// | 11+*k*+*v* | *n* | nonce |
/// | 11+*k*+*v*+*n* | 2 | blob length *b* (17 to 4112 for AES-256-GCM, 1 to 8192 otherwise) |
/// | 13+*k*+*v*+*n* | *b* | blob (for AES-256-GCM: ciphertext ‖ 16-byte tag) |
///
/// Nothing may follow the blob. [`from_bytes`](Self::from_bytes) accepts exactly what
/// [`new`](Self::new) accepts, so parse-then-encode returns the input.
///
/// # Example
///
/// ```
/// use kms_providers::{Algorithm, KeyId, KeyVersion, ProviderKind, WrappedShare};
///
/// let wrapped = WrappedShare::new(
///     ProviderKind::Local,
///     KeyId::new("gcp")?,
///     KeyVersion::from_number(1),
///     Algorithm::Aes256Gcm,
///     vec![0; 12],
///     vec![0; 48],
/// )?;
/// let bytes = wrapped.to_bytes();
/// assert_eq!(WrappedShare::from_bytes(&bytes)?, wrapped);
/// assert!(WrappedShare::from_bytes(&bytes[..bytes.len() - 1]).is_err());
/// # Ok::<(), kms_providers::DecodeError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct WrappedShare {
    kind: ProviderKind,
    key_id: KeyId,
    key_version: KeyVersion,
    algorithm: Algorithm,
    nonce: Vec<u8>,
    blob: Vec<u8>,
}

impl WrappedShare {
    /// Assembles a wrapped share, checking that nonce and blob fit the algorithm.
    ///
    /// Providers call this; callers above this crate normally only parse.
    ///
    /// # Errors
    ///
    /// [`DecodeError::NonceLength`] or [`DecodeError::BlobLength`] when the shapes do not fit
    /// the algorithm.
    ///
    /// # Example
    ///
    /// ```
    /// use kms_providers::{Algorithm, DecodeError, KeyId, KeyVersion, ProviderKind, WrappedShare};
    ///
    /// let err = WrappedShare::new(
    ///     ProviderKind::Pkcs11,
    ///     KeyId::new("kek")?,
    ///     KeyVersion::from_number(1),
    ///     Algorithm::Aes256Gcm,
    ///     vec![0; 8], // GCM needs 12
    ///     vec![0; 48],
    /// )
    /// .unwrap_err();
    /// assert!(matches!(err, DecodeError::NonceLength { .. }));
    /// # Ok::<(), DecodeError>(())
    /// ```
    pub fn new(
        kind: ProviderKind,
        key_id: KeyId,
        key_version: KeyVersion,
        algorithm: Algorithm,
        nonce: Vec<u8>,
        blob: Vec<u8>,
    ) -> Result<Self, DecodeError> {
        let expected_nonce = algorithm.nonce_len().unwrap_or(0);
        if nonce.len() != expected_nonce {
            return Err(DecodeError::NonceLength {
                algorithm,
                len: nonce.len(),
            });
        }
        let (min, max) = algorithm.blob_bounds();
        if blob.len() < min || blob.len() > max {
            return Err(DecodeError::BlobLength {
                algorithm,
                len: blob.len(),
            });
        }
        Ok(Self {
            kind,
            key_id,
            key_version,
            algorithm,
            nonce,
            blob,
        })
    }

    /// Encodes the wrapped share (layout in the type's docs).
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::{Algorithm, KeyId, KeyVersion, ProviderKind, WrappedShare};
    /// # let w = WrappedShare::new(ProviderKind::Local, KeyId::new("k")?, KeyVersion::from_number(1),
    /// #     Algorithm::Aes256Gcm, vec![0; 12], vec![0; 48])?;
    /// let bytes = w.to_bytes();
    /// assert_eq!(&bytes[..4], b"MVWS");
    /// # Ok::<(), kms_providers::DecodeError>(())
    /// ```
    pub fn to_bytes(&self) -> Vec<u8> {
        let key_id = self.key_id.0.as_bytes();
        let version = self.key_version.0.as_bytes();
        let mut out = Vec::with_capacity(
            HEADER_LEN
                + 2
                + key_id.len()
                + 1
                + version.len()
                + 1
                + self.nonce.len()
                + 2
                + self.blob.len(),
        );
        out.extend_from_slice(&MAGIC);
        out.push(FORMAT_VERSION);
        out.push(self.kind.code());
        out.push(self.algorithm.code());
        // Every length below was bounded at construction (key id <= 2048, version <= 128,
        // nonce <= 32, blob <= 8192), so the conversions cannot saturate.
        out.extend_from_slice(
            &u16::try_from(key_id.len())
                .unwrap_or(u16::MAX)
                .to_be_bytes(),
        );
        out.extend_from_slice(key_id);
        out.push(u8::try_from(version.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(version);
        out.push(u8::try_from(self.nonce.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(
            &u16::try_from(self.blob.len())
                .unwrap_or(u16::MAX)
                .to_be_bytes(),
        );
        out.extend_from_slice(&self.blob);
        out
    }

    /// Parses an encoded wrapped share.
    ///
    /// # Errors
    ///
    /// A [`DecodeError`] naming the first problem found; never panics, whatever the input.
    ///
    /// # Example
    ///
    /// ```
    /// use kms_providers::{DecodeError, WrappedShare};
    /// assert_eq!(WrappedShare::from_bytes(b"nope"), Err(DecodeError::BadMagic));
    /// assert_eq!(WrappedShare::from_bytes(b""), Err(DecodeError::Truncated));
    /// ```
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_ENCODED_LEN {
            return Err(DecodeError::TooLong { len: bytes.len() });
        }
        let mut r = Reader(bytes);
        let magic = r.take(MAGIC.len())?;
        if magic != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let format = r.u8()?;
        if format != FORMAT_VERSION {
            return Err(DecodeError::UnsupportedFormatVersion(format));
        }
        let kind_code = r.u8()?;
        let kind = ProviderKind::from_code(kind_code)
            .ok_or(DecodeError::UnknownProviderKind(kind_code))?;
        let alg_code = r.u8()?;
        let algorithm =
            Algorithm::from_code(alg_code).ok_or(DecodeError::UnknownAlgorithm(alg_code))?;

        let key_id_len = usize::from(r.u16()?);
        if key_id_len == 0 || key_id_len > MAX_KEY_ID_LEN {
            return Err(DecodeError::InvalidKeyId);
        }
        let key_id =
            core::str::from_utf8(r.take(key_id_len)?).map_err(|_| DecodeError::InvalidKeyId)?;
        let key_id = KeyId::new(key_id)?;

        let version_len = usize::from(r.u8()?);
        if version_len == 0 || version_len > MAX_KEY_VERSION_LEN {
            return Err(DecodeError::InvalidKeyVersion);
        }
        let version = core::str::from_utf8(r.take(version_len)?)
            .map_err(|_| DecodeError::InvalidKeyVersion)?;
        let key_version = KeyVersion::new(version)?;

        let nonce_len = usize::from(r.u8()?);
        if nonce_len > MAX_NONCE_LEN {
            return Err(DecodeError::NonceLength {
                algorithm,
                len: nonce_len,
            });
        }
        let nonce = r.take(nonce_len)?.to_vec();

        let blob_len = usize::from(r.u16()?);
        if blob_len > MAX_BLOB_LEN {
            return Err(DecodeError::BlobLength {
                algorithm,
                len: blob_len,
            });
        }
        let blob = r.take(blob_len)?.to_vec();
        if !r.0.is_empty() {
            return Err(DecodeError::TrailingBytes { len: r.0.len() });
        }
        Self::new(kind, key_id, key_version, algorithm, nonce, blob)
    }

    /// The provider kind that wrapped the share.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::{Algorithm, KeyId, KeyVersion, ProviderKind, WrappedShare};
    /// # let w = WrappedShare::new(ProviderKind::Local, KeyId::new("k")?, KeyVersion::from_number(1),
    /// #     Algorithm::Aes256Gcm, vec![0; 12], vec![0; 48])?;
    /// assert_eq!(w.kind(), ProviderKind::Local);
    /// # Ok::<(), kms_providers::DecodeError>(())
    /// ```
    pub fn kind(&self) -> ProviderKind {
        self.kind
    }

    /// The KEK's id.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::{Algorithm, KeyId, KeyVersion, ProviderKind, WrappedShare};
    /// # let w = WrappedShare::new(ProviderKind::Local, KeyId::new("k")?, KeyVersion::from_number(1),
    /// #     Algorithm::Aes256Gcm, vec![0; 12], vec![0; 48])?;
    /// assert_eq!(w.key_id().as_str(), "k");
    /// # Ok::<(), kms_providers::DecodeError>(())
    /// ```
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    /// The KEK version that wrapped the share.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::{Algorithm, KeyId, KeyVersion, ProviderKind, WrappedShare};
    /// # let w = WrappedShare::new(ProviderKind::Local, KeyId::new("k")?, KeyVersion::from_number(2),
    /// #     Algorithm::Aes256Gcm, vec![0; 12], vec![0; 48])?;
    /// assert_eq!(w.key_version().as_number(), Some(2));
    /// # Ok::<(), kms_providers::DecodeError>(())
    /// ```
    pub fn key_version(&self) -> &KeyVersion {
        &self.key_version
    }

    /// The algorithm.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::{Algorithm, KeyId, KeyVersion, ProviderKind, WrappedShare};
    /// # let w = WrappedShare::new(ProviderKind::Local, KeyId::new("k")?, KeyVersion::from_number(1),
    /// #     Algorithm::Aes256Gcm, vec![0; 12], vec![0; 48])?;
    /// assert_eq!(w.algorithm(), Algorithm::Aes256Gcm);
    /// # Ok::<(), kms_providers::DecodeError>(())
    /// ```
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The nonce (empty for algorithms that keep it inside the blob).
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::{Algorithm, KeyId, KeyVersion, ProviderKind, WrappedShare};
    /// # let w = WrappedShare::new(ProviderKind::Local, KeyId::new("k")?, KeyVersion::from_number(1),
    /// #     Algorithm::Aes256Gcm, vec![7; 12], vec![0; 48])?;
    /// assert_eq!(w.nonce(), &[7; 12]);
    /// # Ok::<(), kms_providers::DecodeError>(())
    /// ```
    pub fn nonce(&self) -> &[u8] {
        &self.nonce
    }

    /// The ciphertext blob.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::{Algorithm, KeyId, KeyVersion, ProviderKind, WrappedShare};
    /// # let w = WrappedShare::new(ProviderKind::Local, KeyId::new("k")?, KeyVersion::from_number(1),
    /// #     Algorithm::Aes256Gcm, vec![0; 12], vec![0; 48])?;
    /// assert_eq!(w.blob().len(), 48);
    /// # Ok::<(), kms_providers::DecodeError>(())
    /// ```
    pub fn blob(&self) -> &[u8] {
        &self.blob
    }
}

impl fmt::Debug for WrappedShare {
    // The blob is ciphertext, not secret, but dumping it into logs helps nobody: print shapes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrappedShare")
            .field("kind", &self.kind)
            .field("key_id", &self.key_id.0)
            .field("key_version", &self.key_version.0)
            .field("algorithm", &self.algorithm)
            .field("nonce_len", &self.nonce.len())
            .field("blob_len", &self.blob.len())
            .finish()
    }
}

/// The associated data the AES-GCM providers (`local`, `pkcs11`) authenticate: a domain tag,
/// the wrapped form's header (kind, algorithm, key id, key version) and the canonical context.
///
/// Binding the header as well as the context means a blob relabelled with another key id or
/// version fails authentication even if that key happened to decrypt it.
#[cfg_attr(not(any(feature = "local", feature = "pkcs11")), allow(dead_code))]
pub(crate) fn gcm_associated_data(
    kind: ProviderKind,
    key_id: &KeyId,
    key_version: &KeyVersion,
    context: &WrapContext,
) -> Vec<u8> {
    let ctx = context.canonical_bytes();
    let mut aad = Vec::with_capacity(
        4 + GCM_AAD_TAG.len() + 2 + 4 + key_id.0.len() + 4 + key_version.0.len() + ctx.len(),
    );
    put_lv(&mut aad, GCM_AAD_TAG);
    aad.push(kind.code());
    aad.push(Algorithm::Aes256Gcm.code());
    put_lv(&mut aad, key_id.0.as_bytes());
    put_lv(&mut aad, key_version.0.as_bytes());
    aad.extend_from_slice(&ctx);
    aad
}

/// A bounds-checked cursor: every read returns `Truncated` instead of panicking.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let (head, tail) = self.0.split_at_checked(n).ok_or(DecodeError::Truncated)?;
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        let (&b, tail) = self.0.split_first().ok_or(DecodeError::Truncated)?;
        self.0 = tail;
        Ok(b)
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        let bytes = self.take(2)?;
        let arr: [u8; 2] = bytes.try_into().map_err(|_| DecodeError::Truncated)?;
        Ok(u16::from_be_bytes(arr))
    }
}

/// Why bytes are not a valid wrapped share (or a key id/version is invalid).
///
/// # Example
///
/// ```
/// use kms_providers::{DecodeError, WrappedShare};
/// let err = WrappedShare::from_bytes(b"MVWS\x02").unwrap_err();
/// assert_eq!(err, DecodeError::UnsupportedFormatVersion(2));
/// ```
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ends before the structure does.
    #[error("wrapped share is truncated")]
    Truncated,
    /// The input is longer than any valid wrapped share.
    #[error("wrapped share is {len} bytes long; at most {MAX_ENCODED_LEN} are valid")]
    TooLong {
        /// Input length.
        len: usize,
    },
    /// The input does not start with `MVWS`.
    #[error("not a wrapped share: bad magic bytes")]
    BadMagic,
    /// A format version this code does not read.
    #[error("unsupported wrapped-share format version {0}")]
    UnsupportedFormatVersion(u8),
    /// An unknown provider-kind byte.
    #[error("unknown provider kind {0}")]
    UnknownProviderKind(u8),
    /// An unknown algorithm byte.
    #[error("unknown wrapping algorithm {0}")]
    UnknownAlgorithm(u8),
    /// The key id is empty, too long, not UTF-8 or holds a control character.
    #[error("invalid key id: 1 to {MAX_KEY_ID_LEN} bytes of UTF-8 without control characters")]
    InvalidKeyId,
    /// The key version is empty, too long or not printable ASCII.
    #[error("invalid key version: 1 to {MAX_KEY_VERSION_LEN} printable ASCII characters")]
    InvalidKeyVersion,
    /// The nonce length does not fit the algorithm.
    #[error("a {len}-byte nonce does not fit {algorithm}")]
    NonceLength {
        /// The algorithm.
        algorithm: Algorithm,
        /// The nonce length found.
        len: usize,
    },
    /// The blob length does not fit the algorithm.
    #[error("a {len}-byte blob does not fit {algorithm}")]
    BlobLength {
        /// The algorithm.
        algorithm: Algorithm,
        /// The blob length found.
        len: usize,
    },
    /// Bytes follow the blob.
    #[error("{len} unexpected bytes after the wrapped share")]
    TrailingBytes {
        /// How many.
        len: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azure_algorithm_bounds() {
        let id = KeyId::new("kek").unwrap();
        let v = KeyVersion::new("0123456789abcdef0123456789abcdef").unwrap();
        let make = |alg, nonce: usize, blob: usize| {
            WrappedShare::new(
                ProviderKind::AzureKeyVault,
                id.clone(),
                v.clone(),
                alg,
                vec![0; nonce],
                vec![0; blob],
            )
        };
        for (alg, min, max) in [
            (Algorithm::RsaOaepSha256, 275, 4626),
            (Algorithm::A256Kw, 91, 4186),
        ] {
            assert_eq!(Algorithm::from_code(alg.code()), Some(alg));
            assert!(make(alg, 12, min).is_ok());
            assert!(make(alg, 12, max).is_ok());
            assert!(make(alg, 12, min - 1).is_err());
            assert!(make(alg, 12, max + 1).is_err());
            assert!(make(alg, 0, min).is_err());
            let w = make(alg, 12, min).unwrap();
            assert_eq!(WrappedShare::from_bytes(&w.to_bytes()).unwrap(), w);
        }
        assert_eq!(Algorithm::A256Kw.to_string(), "A256KW");
        assert_eq!(Algorithm::from_code(6), None);
    }

    fn sample() -> WrappedShare {
        WrappedShare::new(
            ProviderKind::Pkcs11,
            KeyId::new("kek-gcp").unwrap(),
            KeyVersion::from_number(12),
            Algorithm::Aes256Gcm,
            (0u8..12).collect(),
            (0u8..48).collect(),
        )
        .unwrap()
    }

    #[test]
    fn layout_is_pinned() {
        let bytes = sample().to_bytes();
        let mut expected = b"MVWS\x01\x02\x01\x00\x07kek-gcp\x0212\x0c".to_vec();
        expected.extend(0u8..12);
        expected.extend_from_slice(&[0, 48]);
        expected.extend(0u8..48);
        assert_eq!(bytes, expected);
    }

    #[test]
    fn round_trip() {
        let w = sample();
        assert_eq!(WrappedShare::from_bytes(&w.to_bytes()).unwrap(), w);
        let cloud = WrappedShare::new(
            ProviderKind::AwsKms,
            KeyId::new("arn:aws:kms:eu-west-1:111122223333:key/1234").unwrap(),
            KeyVersion::new("AUTO").unwrap(),
            Algorithm::AwsSymmetricDefault,
            Vec::new(),
            vec![9; MAX_BLOB_LEN],
        )
        .unwrap();
        assert_eq!(WrappedShare::from_bytes(&cloud.to_bytes()).unwrap(), cloud);
    }

    #[test]
    fn every_truncation_and_extension_is_rejected() {
        let bytes = sample().to_bytes();
        for len in 0..bytes.len() {
            assert!(
                WrappedShare::from_bytes(&bytes[..len]).is_err(),
                "len {len}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            WrappedShare::from_bytes(&longer),
            Err(DecodeError::TrailingBytes { len: 1 })
        );
    }

    #[test]
    fn maximal_share_fits_and_oversize_is_rejected() {
        let max = WrappedShare::new(
            ProviderKind::Local,
            KeyId::new("k".repeat(MAX_KEY_ID_LEN)).unwrap(),
            KeyVersion::new("9".repeat(MAX_KEY_VERSION_LEN)).unwrap(),
            Algorithm::Aes256Gcm,
            vec![0; 12],
            vec![0; MAX_SHARE_LEN + GCM_TAG_LEN],
        )
        .unwrap();
        let bytes = max.to_bytes();
        assert!(bytes.len() <= MAX_ENCODED_LEN);
        // The README quotes this bound.
        assert_eq!(MAX_ENCODED_LEN, 10_413);
        assert_eq!(WrappedShare::from_bytes(&bytes).unwrap(), max);
        assert_eq!(
            WrappedShare::from_bytes(&vec![0; MAX_ENCODED_LEN + 1]),
            Err(DecodeError::TooLong {
                len: MAX_ENCODED_LEN + 1
            })
        );
    }

    #[test]
    fn field_checks() {
        let mut b = sample().to_bytes();
        b[5] = 0;
        assert_eq!(
            WrappedShare::from_bytes(&b),
            Err(DecodeError::UnknownProviderKind(0))
        );
        let mut b = sample().to_bytes();
        b[6] = 77;
        assert_eq!(
            WrappedShare::from_bytes(&b),
            Err(DecodeError::UnknownAlgorithm(77))
        );
        let mut b = sample().to_bytes();
        b[9] = b'\n';
        assert_eq!(WrappedShare::from_bytes(&b), Err(DecodeError::InvalidKeyId));
        let mut b = sample().to_bytes();
        b[8] = 0;
        b[7] = 0;
        assert_eq!(WrappedShare::from_bytes(&b), Err(DecodeError::InvalidKeyId));
        // GCM shares carry exactly 12 nonce bytes and at least one byte of share.
        assert!(matches!(
            WrappedShare::new(
                ProviderKind::Local,
                KeyId::new("k").unwrap(),
                KeyVersion::from_number(1),
                Algorithm::Aes256Gcm,
                vec![0; 12],
                vec![0; GCM_TAG_LEN],
            ),
            Err(DecodeError::BlobLength { len: 16, .. })
        ));
    }

    #[test]
    fn hostile_inputs_never_panic() {
        // A cheap deterministic sweep; the fuzz target does the rest.
        let base = sample().to_bytes();
        let mut state = 0x1234_5678_9abc_def0_u64;
        for _ in 0..20_000 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let mut b = base.clone();
            let pos = usize::try_from(state >> 40).unwrap() % b.len();
            b[pos] = state.to_le_bytes()[1];
            let cut = usize::try_from(state >> 20).unwrap() % (b.len() + 1);
            let _ = WrappedShare::from_bytes(&b[..cut]);
            if let Ok(w) = WrappedShare::from_bytes(&b) {
                assert_eq!(w.to_bytes(), b);
            }
        }
    }

    #[test]
    fn key_version_numbers_are_canonical() {
        assert_eq!(KeyVersion::new("0").unwrap().as_number(), Some(0));
        assert_eq!(KeyVersion::new("01").unwrap().as_number(), None);
        assert_eq!(KeyVersion::new("4294967296").unwrap().as_number(), None);
        assert!(KeyVersion::new("é").is_err());
    }

    #[test]
    fn debug_prints_shapes_only() {
        let s = format!("{:?}", sample());
        assert!(s.contains("blob_len: 48"), "{s}");
    }
}
