//! The context a share is wrapped under, and its canonical encoding.

use core::fmt;

/// Longest vault id accepted, in bytes of UTF-8.
///
/// # Example
///
/// ```
/// assert!(kms_providers::WrapContext::new(&"v".repeat(kms_providers::MAX_VAULT_ID_LEN), "p", 1, 1, "m").is_ok());
/// ```
pub const MAX_VAULT_ID_LEN: usize = 256;
/// Longest secret path accepted, in bytes of UTF-8.
///
/// # Example
///
/// ```
/// assert_eq!(kms_providers::MAX_SECRET_PATH_LEN, 4096);
/// ```
pub const MAX_SECRET_PATH_LEN: usize = 4096;
/// Longest custody-mode label accepted, in bytes of UTF-8.
///
/// # Example
///
/// ```
/// assert_eq!(kms_providers::MAX_CUSTODY_MODE_LEN, 64);
/// ```
pub const MAX_CUSTODY_MODE_LEN: usize = 64;

/// Domain-separation tag that opens every canonical context encoding. A new encoding gets a new
/// tag, so bytes produced under one layout can never be read as another.
const DOMAIN_TAG: &[u8] = b"mpc-vault/kms-providers/wrap-context/v1";

/// Where a wrapped share belongs: the vault, the secret path, the secret version, the share
/// index and the custody mode.
///
/// Every provider binds the wrapped share to this value (as AES-GCM associated data, an AWS
/// encryption context, GCP additional authenticated data, or a hash inside the wrapped payload),
/// so a wrapped share copied to another secret, version, index or mode does not unwrap.
///
/// The context is not secret and is not stored in a [`WrappedShare`](crate::WrappedShare): the
/// caller rebuilds it from the row the wrapped share is read from.
///
/// Construction checks every field ("parse, don't validate"): the strings are non-empty, hold no
/// control characters and respect the `MAX_*_LEN` bounds, which keeps the canonical encoding
/// under the associated-data limits of every backend (GCP allows 64 KiB).
///
/// # Example
///
/// ```
/// use kms_providers::WrapContext;
///
/// let ctx = WrapContext::new("vault-7", "db/prod/password", 3, 1, "shamir-2-of-3")?;
/// assert_eq!(ctx.share_index(), 1);
/// // The same secret version's second share:
/// let second = ctx.with_share_index(2);
/// assert_ne!(ctx.canonical_bytes(), second.canonical_bytes());
/// # Ok::<(), kms_providers::ContextError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct WrapContext {
    vault_id: String,
    secret_path: String,
    version: u64,
    share_index: u8,
    custody_mode: String,
}

impl WrapContext {
    /// Builds a context.
    ///
    /// `share_index` is the share's x-coordinate (1 to 255) for a split DEK; use 0 when the
    /// wrapped value is a whole DEK. `custody_mode` is the label of the custody mode as the
    /// custody layer names it (for example `"shamir-2-of-3"`); this crate only binds it.
    ///
    /// # Errors
    ///
    /// [`ContextError`] when a string is empty, too long or holds a control character.
    ///
    /// # Example
    ///
    /// ```
    /// use kms_providers::{ContextError, ContextField, WrapContext};
    ///
    /// let ctx = WrapContext::new("vault-7", "app/api-key", 1, 2, "xor-2-of-2")?;
    /// assert_eq!(ctx.secret_path(), "app/api-key");
    ///
    /// let err = WrapContext::new("", "app/api-key", 1, 2, "xor-2-of-2").unwrap_err();
    /// assert_eq!(err, ContextError::Empty { field: ContextField::VaultId });
    /// # Ok::<(), ContextError>(())
    /// ```
    pub fn new(
        vault_id: &str,
        secret_path: &str,
        version: u64,
        share_index: u8,
        custody_mode: &str,
    ) -> Result<Self, ContextError> {
        check_field(ContextField::VaultId, vault_id, MAX_VAULT_ID_LEN)?;
        check_field(ContextField::SecretPath, secret_path, MAX_SECRET_PATH_LEN)?;
        check_field(
            ContextField::CustodyMode,
            custody_mode,
            MAX_CUSTODY_MODE_LEN,
        )?;
        Ok(Self {
            vault_id: vault_id.to_owned(),
            secret_path: secret_path.to_owned(),
            version,
            share_index,
            custody_mode: custody_mode.to_owned(),
        })
    }

    /// A context from fields known to be valid (string literals that pass every check of
    /// [`new`](Self::new)); for the crate's own fixed contexts (health probe, testkit), so that
    /// they need no error path that can never be taken.
    #[cfg_attr(
        not(any(feature = "local", feature = "pkcs11", feature = "testkit")),
        allow(dead_code)
    )]
    pub(crate) fn trusted(
        vault_id: &'static str,
        secret_path: &'static str,
        version: u64,
        share_index: u8,
        custody_mode: &'static str,
    ) -> Self {
        debug_assert!(Self::new(vault_id, secret_path, version, share_index, custody_mode).is_ok());
        Self {
            vault_id: vault_id.to_owned(),
            secret_path: secret_path.to_owned(),
            version,
            share_index,
            custody_mode: custody_mode.to_owned(),
        }
    }

    /// The same context for another share index: the custody layer wraps each share of one
    /// secret version under the context of that share.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::WrapContext;
    /// let first = WrapContext::new("v", "p", 1, 1, "shamir-2-of-3")?;
    /// assert_eq!(first.with_share_index(3).share_index(), 3);
    /// # Ok::<(), kms_providers::ContextError>(())
    /// ```
    #[must_use]
    pub fn with_share_index(&self, share_index: u8) -> Self {
        Self {
            share_index,
            ..self.clone()
        }
    }

    /// The vault id.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::WrapContext;
    /// let ctx = WrapContext::new("vault-7", "p", 1, 1, "m")?;
    /// assert_eq!(ctx.vault_id(), "vault-7");
    /// # Ok::<(), kms_providers::ContextError>(())
    /// ```
    pub fn vault_id(&self) -> &str {
        &self.vault_id
    }

    /// The secret's path inside the vault.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::WrapContext;
    /// let ctx = WrapContext::new("v", "db/password", 1, 1, "m")?;
    /// assert_eq!(ctx.secret_path(), "db/password");
    /// # Ok::<(), kms_providers::ContextError>(())
    /// ```
    pub fn secret_path(&self) -> &str {
        &self.secret_path
    }

    /// The secret version the share belongs to.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::WrapContext;
    /// let ctx = WrapContext::new("v", "p", 42, 1, "m")?;
    /// assert_eq!(ctx.version(), 42);
    /// # Ok::<(), kms_providers::ContextError>(())
    /// ```
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The share index (x-coordinate), or 0 for a whole DEK.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::WrapContext;
    /// let ctx = WrapContext::new("v", "p", 1, 0, "single-provider")?;
    /// assert_eq!(ctx.share_index(), 0);
    /// # Ok::<(), kms_providers::ContextError>(())
    /// ```
    pub fn share_index(&self) -> u8 {
        self.share_index
    }

    /// The custody-mode label.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::WrapContext;
    /// let ctx = WrapContext::new("v", "p", 1, 1, "shamir-2-of-3")?;
    /// assert_eq!(ctx.custody_mode(), "shamir-2-of-3");
    /// # Ok::<(), kms_providers::ContextError>(())
    /// ```
    pub fn custody_mode(&self) -> &str {
        &self.custody_mode
    }

    /// The canonical, unambiguous encoding that providers bind as associated data.
    ///
    /// Layout (all integers big-endian): `u32` length and bytes of the domain tag
    /// `mpc-vault/kms-providers/wrap-context/v1`; `u32` length and bytes of the vault id;
    /// `u32` length and bytes of the secret path; `u64` version; `u8` share index; `u32` length
    /// and bytes of the custody mode. Every variable field carries its length, so no two
    /// different contexts encode to the same bytes.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::WrapContext;
    /// // Moving a '/' between fields changes the encoding: no concatenation ambiguity.
    /// let a = WrapContext::new("a/b", "c", 1, 1, "m")?;
    /// let b = WrapContext::new("a", "b/c", 1, 1, "m")?;
    /// assert_ne!(a.canonical_bytes(), b.canonical_bytes());
    /// # Ok::<(), kms_providers::ContextError>(())
    /// ```
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            4 * 4
                + DOMAIN_TAG.len()
                + self.vault_id.len()
                + self.secret_path.len()
                + 8
                + 1
                + self.custody_mode.len(),
        );
        put_lv(&mut out, DOMAIN_TAG);
        put_lv(&mut out, self.vault_id.as_bytes());
        put_lv(&mut out, self.secret_path.as_bytes());
        out.extend_from_slice(&self.version.to_be_bytes());
        out.push(self.share_index);
        put_lv(&mut out, self.custody_mode.as_bytes());
        out
    }
}

/// Appends a `u32` big-endian length followed by the bytes. Every caller passes a field bounded
/// far below `u32::MAX` (checked at construction), so the saturation never happens; it only keeps
/// the function total.
pub(crate) fn put_lv(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

fn check_field(field: ContextField, value: &str, max: usize) -> Result<(), ContextError> {
    if value.is_empty() {
        return Err(ContextError::Empty { field });
    }
    if value.len() > max {
        return Err(ContextError::TooLong {
            field,
            len: value.len(),
            max,
        });
    }
    if value.chars().any(char::is_control) {
        return Err(ContextError::ControlCharacter { field });
    }
    Ok(())
}

/// A field of a [`WrapContext`], named in [`ContextError`].
///
/// # Example
///
/// ```
/// use kms_providers::ContextField;
/// assert_eq!(ContextField::SecretPath.to_string(), "secret path");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum ContextField {
    /// The vault id.
    VaultId,
    /// The secret path.
    SecretPath,
    /// The custody-mode label.
    CustodyMode,
}

impl fmt::Display for ContextField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::VaultId => "vault id",
            Self::SecretPath => "secret path",
            Self::CustodyMode => "custody mode",
        })
    }
}

/// Why a [`WrapContext`] could not be built.
///
/// # Example
///
/// ```
/// use kms_providers::{ContextError, WrapContext};
///
/// let err = WrapContext::new("v", "a\nb", 1, 1, "m").unwrap_err();
/// assert!(matches!(err, ContextError::ControlCharacter { .. }));
/// assert_eq!(err.to_string(), "invalid wrap context: the secret path contains a control character");
/// ```
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContextError {
    /// A string field is empty.
    #[error("invalid wrap context: the {field} is empty")]
    Empty {
        /// The empty field.
        field: ContextField,
    },
    /// A string field is longer than its bound.
    #[error("invalid wrap context: the {field} is {len} bytes long; at most {max} are allowed")]
    TooLong {
        /// The field.
        field: ContextField,
        /// Its length in bytes.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// A string field contains a control character (which would make logs and the text forms
    /// some backends use, such as AWS encryption contexts, ambiguous).
    #[error("invalid wrap context: the {field} contains a control character")]
    ControlCharacter {
        /// The field.
        field: ContextField,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> WrapContext {
        WrapContext::new("vault", "path/x", 7, 2, "shamir-2-of-3").unwrap()
    }

    #[test]
    fn encoding_layout_is_pinned() {
        let bytes = WrapContext::new("v", "pp", 0x0102, 3, "m")
            .unwrap()
            .canonical_bytes();
        let mut expected = Vec::new();
        expected.extend_from_slice(&39u32.to_be_bytes());
        expected.extend_from_slice(b"mpc-vault/kms-providers/wrap-context/v1");
        expected.extend_from_slice(&[0, 0, 0, 1, b'v']);
        expected.extend_from_slice(&[0, 0, 0, 2, b'p', b'p']);
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 1, 2]);
        expected.push(3);
        expected.extend_from_slice(&[0, 0, 0, 1, b'm']);
        assert_eq!(bytes, expected);
    }

    #[test]
    fn every_field_changes_the_encoding() {
        let base = ctx().canonical_bytes();
        let variants = [
            WrapContext::new("vault2", "path/x", 7, 2, "shamir-2-of-3").unwrap(),
            WrapContext::new("vault", "path/y", 7, 2, "shamir-2-of-3").unwrap(),
            WrapContext::new("vault", "path/x", 8, 2, "shamir-2-of-3").unwrap(),
            ctx().with_share_index(3),
            WrapContext::new("vault", "path/x", 7, 2, "xor-2-of-2").unwrap(),
        ];
        for v in variants {
            assert_ne!(v.canonical_bytes(), base, "{v:?}");
        }
    }

    #[test]
    fn shifting_bytes_between_fields_is_not_ambiguous() {
        let a = WrapContext::new("ab", "c", 1, 1, "m").unwrap();
        let b = WrapContext::new("a", "bc", 1, 1, "m").unwrap();
        let c = WrapContext::new("a", "b", 1, 1, "cm").unwrap();
        assert_ne!(a.canonical_bytes(), b.canonical_bytes());
        assert_ne!(b.canonical_bytes(), c.canonical_bytes());
    }

    #[test]
    fn bounds_and_characters_are_checked() {
        let long = "x".repeat(MAX_VAULT_ID_LEN + 1);
        assert_eq!(
            WrapContext::new(&long, "p", 1, 1, "m"),
            Err(ContextError::TooLong {
                field: ContextField::VaultId,
                len: MAX_VAULT_ID_LEN + 1,
                max: MAX_VAULT_ID_LEN
            })
        );
        assert!(WrapContext::new(&"x".repeat(MAX_VAULT_ID_LEN), "p", 1, 1, "m").is_ok());
        assert!(WrapContext::new("v", &"p".repeat(MAX_SECRET_PATH_LEN), 1, 1, "m").is_ok());
        assert!(WrapContext::new("v", &"p".repeat(MAX_SECRET_PATH_LEN + 1), 1, 1, "m").is_err());
        assert!(WrapContext::new("v", "p", 1, 1, &"m".repeat(MAX_CUSTODY_MODE_LEN + 1)).is_err());
        assert_eq!(
            WrapContext::new("v", "p", 1, 1, ""),
            Err(ContextError::Empty {
                field: ContextField::CustodyMode
            })
        );
        assert_eq!(
            WrapContext::new("v\0", "p", 1, 1, "m"),
            Err(ContextError::ControlCharacter {
                field: ContextField::VaultId
            })
        );
        // Non-ASCII text is fine: paths are UTF-8.
        assert!(WrapContext::new("v", "données/clé", 1, 1, "m").is_ok());
    }
}
