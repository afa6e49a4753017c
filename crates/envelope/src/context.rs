//! What an envelope is bound to, and its canonical encoding.

use core::fmt;

use crate::Error;

/// The domain-separation tag that opens every canonical context encoding, so these bytes can
/// never be mistaken for another structure's encoding, or for a later version of this one.
const DOMAIN_TAG: &[u8] = b"mpc-vault/envelope/context/v1";

/// The identity of one secret version, which every envelope is bound to.
///
/// Sealing and opening both take a `Context`; opening succeeds only under the exact context
/// the envelope was sealed under, so a stored envelope cannot be replayed as another vault's
/// secret, another path, an older or newer version, another type or another custody mode.
///
/// A `Context` is built with [`Context::builder`], which requires every field:
///
/// | field | type | meaning |
/// |---|---|---|
/// | `vault_id` | text | the vault that owns the secret |
/// | `path` | text | the secret's path inside the vault |
/// | `version` | `u64` | the secret version this envelope holds |
/// | `secret_type` | text | what the secret is (`password`, `certificate`, ...) |
/// | `custody_mode` | text | how the DEK is held (`standard`, `2of3_multi_hsm`, ...) |
///
/// Text fields are UTF-8, 1 to [`Context::MAX_FIELD_LEN`] bytes, compared byte for byte (no
/// case folding or Unicode normalisation: callers must use one spelling). The custody mode is
/// an opaque label here because custody modes are defined by a higher layer.
///
/// A context is metadata, not a secret: it is printed by `Debug` and may be logged.
///
/// # Example
///
/// ```
/// use envelope::Context;
///
/// let context = Context::builder()
///     .vault_id("vault-7f3a")
///     .path("payments/stripe/api-key")
///     .version(3)
///     .secret_type("api_key")
///     .custody_mode("2of3_multi_hsm")
///     .build()?;
/// assert_eq!(context.version(), 3);
/// assert_eq!(context.custody_mode(), "2of3_multi_hsm");
/// # Ok::<(), envelope::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Context {
    vault_id: String,
    path: String,
    version: u64,
    secret_type: String,
    custody_mode: String,
    /// The canonical encoding, computed once when the context is built, since every seal and
    /// open uses it (as associated data and in the key derivation).
    encoded: Box<[u8]>,
}

impl Context {
    /// The longest a text field may be, in bytes of UTF-8: 1024.
    ///
    /// # Example
    ///
    /// ```
    /// use envelope::{Context, Error};
    ///
    /// let err = Context::builder()
    ///     .vault_id("v")
    ///     .path("p".repeat(Context::MAX_FIELD_LEN + 1))
    ///     .version(1)
    ///     .secret_type("t")
    ///     .custody_mode("standard")
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err, Error::InvalidContextField { field: "path", len: 1025, max: 1024 });
    /// ```
    pub const MAX_FIELD_LEN: usize = 1024;

    /// Starts building a context; every field must be set before
    /// [`build`](ContextBuilder::build).
    ///
    /// # Example
    ///
    /// ```
    /// use envelope::Context;
    ///
    /// let context = Context::builder()
    ///     .vault_id("v")
    ///     .path("p")
    ///     .version(1)
    ///     .secret_type("t")
    ///     .custody_mode("standard")
    ///     .build()?;
    /// assert_eq!(context.path(), "p");
    /// # Ok::<(), envelope::Error>(())
    /// ```
    pub fn builder() -> ContextBuilder {
        ContextBuilder::default()
    }

    /// The vault that owns the secret.
    ///
    /// # Example
    ///
    /// ```
    /// # let context = envelope::Context::builder().vault_id("vault-1").path("p").version(1)
    /// #     .secret_type("t").custody_mode("standard").build()?;
    /// assert_eq!(context.vault_id(), "vault-1");
    /// # Ok::<(), envelope::Error>(())
    /// ```
    #[must_use]
    pub fn vault_id(&self) -> &str {
        &self.vault_id
    }

    /// The secret's path inside the vault.
    ///
    /// # Example
    ///
    /// ```
    /// # let context = envelope::Context::builder().vault_id("v").path("db/password").version(1)
    /// #     .secret_type("t").custody_mode("standard").build()?;
    /// assert_eq!(context.path(), "db/password");
    /// # Ok::<(), envelope::Error>(())
    /// ```
    #[must_use]
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The secret version.
    ///
    /// # Example
    ///
    /// ```
    /// # let context = envelope::Context::builder().vault_id("v").path("p").version(42)
    /// #     .secret_type("t").custody_mode("standard").build()?;
    /// assert_eq!(context.version(), 42);
    /// # Ok::<(), envelope::Error>(())
    /// ```
    #[must_use]
    pub fn version(&self) -> u64 {
        self.version
    }

    /// What kind of secret this is.
    ///
    /// # Example
    ///
    /// ```
    /// # let context = envelope::Context::builder().vault_id("v").path("p").version(1)
    /// #     .secret_type("certificate").custody_mode("standard").build()?;
    /// assert_eq!(context.secret_type(), "certificate");
    /// # Ok::<(), envelope::Error>(())
    /// ```
    #[must_use]
    pub fn secret_type(&self) -> &str {
        &self.secret_type
    }

    /// How the DEK is held, as an opaque label.
    ///
    /// # Example
    ///
    /// ```
    /// # let context = envelope::Context::builder().vault_id("v").path("p").version(1)
    /// #     .secret_type("t").custody_mode("2of2_client_custody").build()?;
    /// assert_eq!(context.custody_mode(), "2of2_client_custody");
    /// # Ok::<(), envelope::Error>(())
    /// ```
    #[must_use]
    pub fn custody_mode(&self) -> &str {
        &self.custody_mode
    }

    /// The canonical, unambiguous byte encoding of this context (format v1), which is what an
    /// envelope is actually bound to.
    ///
    /// It is a sequence of items, each a 4-byte big-endian length followed by that many
    /// bytes: first the domain tag `mpc-vault/envelope/context/v1`, then `vault_id`, `path`,
    /// `version` (8 bytes, big-endian), `secret_type` and `custody_mode`. Because every item
    /// carries its length, no two different contexts share an encoding (`"ab"` + `"c"` and
    /// `"a"` + `"bc"` differ), which a plain concatenation could not promise.
    ///
    /// # Example
    ///
    /// ```
    /// use envelope::Context;
    ///
    /// let build = |vault: &str, path: &str| {
    ///     Context::builder().vault_id(vault).path(path).version(1)
    ///         .secret_type("t").custody_mode("standard").build()
    /// };
    /// let a = build("ab", "c")?;
    /// let b = build("a", "bc")?;
    /// assert_ne!(a.canonical_encoding(), b.canonical_encoding());
    /// assert!(a.canonical_encoding().starts_with(b"\0\0\0\x1dmpc-vault/envelope/context/v1"));
    /// # Ok::<(), envelope::Error>(())
    /// ```
    #[must_use]
    pub fn canonical_encoding(&self) -> &[u8] {
        &self.encoded
    }
}

impl fmt::Debug for Context {
    // Hand-written only to leave out the encoding, which repeats the fields as bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("vault_id", &self.vault_id)
            .field("path", &self.path)
            .field("version", &self.version)
            .field("secret_type", &self.secret_type)
            .field("custody_mode", &self.custody_mode)
            .finish()
    }
}

/// Builds a [`Context`]; created by [`Context::builder`].
///
/// Every field is required, and [`build`](ContextBuilder::build) reports the first one that
/// is missing or invalid, in the order `vault_id`, `path`, `version`, `secret_type`,
/// `custody_mode`. Setting a field twice keeps the last value.
///
/// # Example
///
/// ```
/// use envelope::{Context, Error};
///
/// let err = Context::builder().vault_id("v").path("p").build().unwrap_err();
/// assert_eq!(err, Error::MissingContextField { field: "version" });
/// assert_eq!(
///     err.to_string(),
///     "context field `version` is missing: set it with `ContextBuilder::version`"
/// );
/// ```
#[derive(Clone, Debug, Default)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct ContextBuilder {
    vault_id: Option<String>,
    path: Option<String>,
    version: Option<u64>,
    secret_type: Option<String>,
    custody_mode: Option<String>,
}

impl ContextBuilder {
    /// Sets the vault that owns the secret.
    ///
    /// # Example
    ///
    /// ```
    /// let builder = envelope::Context::builder().vault_id("vault-1");
    /// # let _ = builder;
    /// ```
    pub fn vault_id(mut self, vault_id: impl Into<String>) -> Self {
        self.vault_id = Some(vault_id.into());
        self
    }

    /// Sets the secret's path inside the vault.
    ///
    /// # Example
    ///
    /// ```
    /// let builder = envelope::Context::builder().path("db/password");
    /// # let _ = builder;
    /// ```
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Sets the secret version.
    ///
    /// # Example
    ///
    /// ```
    /// let builder = envelope::Context::builder().version(3);
    /// # let _ = builder;
    /// ```
    pub fn version(mut self, version: u64) -> Self {
        self.version = Some(version);
        self
    }

    /// Sets what kind of secret this is.
    ///
    /// # Example
    ///
    /// ```
    /// let builder = envelope::Context::builder().secret_type("password");
    /// # let _ = builder;
    /// ```
    pub fn secret_type(mut self, secret_type: impl Into<String>) -> Self {
        self.secret_type = Some(secret_type.into());
        self
    }

    /// Sets how the DEK is held, as an opaque label defined by the custody layer.
    ///
    /// # Example
    ///
    /// ```
    /// let builder = envelope::Context::builder().custody_mode("2of3_multi_hsm");
    /// # let _ = builder;
    /// ```
    pub fn custody_mode(mut self, custody_mode: impl Into<String>) -> Self {
        self.custody_mode = Some(custody_mode.into());
        self
    }

    /// Checks every field and builds the context.
    ///
    /// # Errors
    ///
    /// For the first offending field in the order `vault_id`, `path`, `version`,
    /// `secret_type`, `custody_mode`:
    /// - [`Error::MissingContextField`] if it was never set;
    /// - [`Error::InvalidContextField`] if a text field is empty or longer than
    ///   [`Context::MAX_FIELD_LEN`] bytes.
    ///
    /// # Example
    ///
    /// ```
    /// use envelope::{Context, Error};
    ///
    /// let err = Context::builder()
    ///     .vault_id("")
    ///     .path("p")
    ///     .version(1)
    ///     .secret_type("t")
    ///     .custody_mode("standard")
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err, Error::InvalidContextField { field: "vault_id", len: 0, max: 1024 });
    /// ```
    pub fn build(self) -> Result<Context, Error> {
        let vault_id = text_field("vault_id", self.vault_id)?;
        let path = text_field("path", self.path)?;
        let version = self
            .version
            .ok_or(Error::MissingContextField { field: "version" })?;
        let secret_type = text_field("secret_type", self.secret_type)?;
        let custody_mode = text_field("custody_mode", self.custody_mode)?;

        let mut encoded = Vec::new();
        push_item(&mut encoded, "domain tag", DOMAIN_TAG)?;
        push_item(&mut encoded, "vault_id", vault_id.as_bytes())?;
        push_item(&mut encoded, "path", path.as_bytes())?;
        push_item(&mut encoded, "version", &version.to_be_bytes())?;
        push_item(&mut encoded, "secret_type", secret_type.as_bytes())?;
        push_item(&mut encoded, "custody_mode", custody_mode.as_bytes())?;

        Ok(Context {
            vault_id,
            path,
            version,
            secret_type,
            custody_mode,
            encoded: encoded.into_boxed_slice(),
        })
    }
}

/// Checks that a text field was set and has an acceptable length.
fn text_field(field: &'static str, value: Option<String>) -> Result<String, Error> {
    let value = value.ok_or(Error::MissingContextField { field })?;
    if value.is_empty() || value.len() > Context::MAX_FIELD_LEN {
        return Err(Error::InvalidContextField {
            field,
            len: value.len(),
            max: Context::MAX_FIELD_LEN,
        });
    }
    Ok(value)
}

/// Appends one length-prefixed item (4-byte big-endian length, then the bytes).
///
/// Fields are checked against [`Context::MAX_FIELD_LEN`] before this is called, so the length
/// always fits; the check here keeps the encoding from ever being silently wrong regardless.
fn push_item(out: &mut Vec<u8>, field: &'static str, item: &[u8]) -> Result<(), Error> {
    let len = u32::try_from(item.len()).map_err(|_| Error::InvalidContextField {
        field,
        len: item.len(),
        max: Context::MAX_FIELD_LEN,
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(item);
    Ok(())
}

#[cfg(test)]
// Test code indexes and counts freely: a panic there is a failing test, not a vulnerability.
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    fn context(vault_id: &str, path: &str, version: u64, ty: &str, mode: &str) -> Context {
        Context::builder()
            .vault_id(vault_id)
            .path(path)
            .version(version)
            .secret_type(ty)
            .custody_mode(mode)
            .build()
            .unwrap()
    }

    #[test]
    fn canonical_encoding_is_exactly_the_documented_layout() {
        let ctx = context("v1", "a/b", 0x0102_0304_0506_0708, "pw", "standard");
        let mut expected = Vec::new();
        expected.extend_from_slice(&[0, 0, 0, 29]);
        expected.extend_from_slice(b"mpc-vault/envelope/context/v1");
        expected.extend_from_slice(&[0, 0, 0, 2]);
        expected.extend_from_slice(b"v1");
        expected.extend_from_slice(&[0, 0, 0, 3]);
        expected.extend_from_slice(b"a/b");
        expected.extend_from_slice(&[0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
        expected.extend_from_slice(&[0, 0, 0, 2]);
        expected.extend_from_slice(b"pw");
        expected.extend_from_slice(&[0, 0, 0, 8]);
        expected.extend_from_slice(b"standard");
        assert_eq!(ctx.canonical_encoding(), expected.as_slice());
    }

    #[test]
    fn shifting_bytes_between_fields_changes_the_encoding() {
        // Every pair of adjacent text fields, with one byte moved across the boundary.
        let base = context("ab", "c", 1, "de", "f");
        let variants = [
            context("a", "bc", 1, "de", "f"),
            context("abc", "c", 1, "de", "f"),
            context("ab", "c", 1, "d", "ef"),
            context("ab", "c", 1, "def", "f"),
        ];
        for other in &variants {
            assert_ne!(base.canonical_encoding(), other.canonical_encoding());
        }
    }

    #[test]
    fn every_field_is_required_and_reported_in_order() {
        let full = || {
            Context::builder()
                .vault_id("v")
                .path("p")
                .version(1)
                .secret_type("t")
                .custody_mode("m")
        };
        assert!(full().build().is_ok());
        let cases: [(ContextBuilder, &str); 5] = [
            (
                ContextBuilder {
                    vault_id: None,
                    ..full()
                },
                "vault_id",
            ),
            (
                ContextBuilder {
                    path: None,
                    ..full()
                },
                "path",
            ),
            (
                ContextBuilder {
                    version: None,
                    ..full()
                },
                "version",
            ),
            (
                ContextBuilder {
                    secret_type: None,
                    ..full()
                },
                "secret_type",
            ),
            (
                ContextBuilder {
                    custody_mode: None,
                    ..full()
                },
                "custody_mode",
            ),
        ];
        for (builder, field) in cases {
            assert_eq!(
                builder.build().unwrap_err(),
                Error::MissingContextField { field }
            );
        }
        assert_eq!(
            Context::builder().build().unwrap_err(),
            Error::MissingContextField { field: "vault_id" }
        );
    }

    #[test]
    fn text_field_lengths_are_bounded_on_both_sides() {
        let max = Context::MAX_FIELD_LEN;
        let at_max = "x".repeat(max);
        let ctx = context(&at_max, &at_max, u64::MAX, &at_max, &at_max);
        assert_eq!(ctx.vault_id().len(), max);
        for field in ["vault_id", "path", "secret_type", "custody_mode"] {
            for bad in [String::new(), "y".repeat(max + 1)] {
                let value = |name: &str| {
                    if name == field {
                        bad.clone()
                    } else {
                        "ok".into()
                    }
                };
                let err = Context::builder()
                    .vault_id(value("vault_id"))
                    .path(value("path"))
                    .version(7)
                    .secret_type(value("secret_type"))
                    .custody_mode(value("custody_mode"))
                    .build()
                    .unwrap_err();
                assert_eq!(
                    err,
                    Error::InvalidContextField {
                        field,
                        len: bad.len(),
                        max
                    }
                );
            }
        }
    }

    #[test]
    fn debug_shows_fields_not_the_encoding() {
        let ctx = context("vault-1", "db/pw", 9, "password", "standard");
        let shown = format!("{ctx:?}");
        assert_eq!(
            shown,
            "Context { vault_id: \"vault-1\", path: \"db/pw\", version: 9, \
             secret_type: \"password\", custody_mode: \"standard\" }"
        );
    }
}
