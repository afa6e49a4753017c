//! The decrypted secret.

use core::fmt;

use zeroize::{ZeroizeOnDrop, Zeroizing};

/// A decrypted secret, as returned by [`open`](crate::open).
///
/// It exists only after every check passed: [`open`](crate::open) returns either a `Plaintext`
/// or an error, never partial or unauthenticated bytes. The bytes are wiped when the value is
/// dropped; there is no `Clone`, no `Serialize`, no `Deref`, and `Debug` prints
/// `Plaintext([REDACTED])` (not even the length). The one accessor is
/// [`Plaintext::expose_secret`].
///
/// # Example
///
/// ```
/// use envelope::{Context, Dek, open, seal};
///
/// let dek = Dek::generate()?;
/// let context = Context::builder()
///     .vault_id("vault-1")
///     .path("db/password")
///     .version(1)
///     .secret_type("password")
///     .custody_mode("standard")
///     .build()?;
/// let plaintext = open(&dek, &context, &seal(&dek, &context, b"hunter2")?)?;
/// assert_eq!(plaintext.expose_secret(), b"hunter2");
/// assert_eq!(format!("{plaintext:?}"), "Plaintext([REDACTED])");
/// # Ok::<(), envelope::Error>(())
/// ```
pub struct Plaintext {
    bytes: Zeroizing<Vec<u8>>,
}

impl Plaintext {
    /// Wraps bytes that were just authenticated and decrypted in place.
    pub(crate) fn new(bytes: Zeroizing<Vec<u8>>) -> Self {
        Self { bytes }
    }

    /// The secret bytes. This is the only way to read them; never copy the result into a type
    /// that is not wiped on drop unless it must leave the process (an HTTP response, say).
    ///
    /// # Example
    ///
    /// ```
    /// # use envelope::{Context, Dek, open, seal};
    /// # let dek = Dek::generate()?;
    /// # let context = Context::builder().vault_id("v").path("p").version(1)
    /// #     .secret_type("t").custody_mode("standard").build()?;
    /// let plaintext = open(&dek, &context, &seal(&dek, &context, b"s3cret")?)?;
    /// assert_eq!(plaintext.expose_secret(), b"s3cret");
    /// # Ok::<(), envelope::Error>(())
    /// ```
    #[must_use]
    pub fn expose_secret(&self) -> &[u8] {
        &self.bytes
    }

    /// The length of the secret in bytes (public: the ciphertext has the same length).
    ///
    /// # Example
    ///
    /// ```
    /// # use envelope::{Context, Dek, open, seal};
    /// # let dek = Dek::generate()?;
    /// # let context = Context::builder().vault_id("v").path("p").version(1)
    /// #     .secret_type("t").custody_mode("standard").build()?;
    /// let plaintext = open(&dek, &context, &seal(&dek, &context, b"s3cret")?)?;
    /// assert_eq!(plaintext.len(), 6);
    /// # Ok::<(), envelope::Error>(())
    /// ```
    #[must_use]
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether the secret is empty (an empty plaintext is valid and round-trips).
    ///
    /// # Example
    ///
    /// ```
    /// # use envelope::{Context, Dek, open, seal};
    /// # let dek = Dek::generate()?;
    /// # let context = Context::builder().vault_id("v").path("p").version(1)
    /// #     .secret_type("t").custody_mode("standard").build()?;
    /// let plaintext = open(&dek, &context, &seal(&dek, &context, b"")?)?;
    /// assert!(plaintext.is_empty());
    /// # Ok::<(), envelope::Error>(())
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

// `Zeroizing` wipes the bytes (and the vector's spare capacity) when the field is dropped.
impl ZeroizeOnDrop for Plaintext {}

impl fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Plaintext([REDACTED])")
    }
}
