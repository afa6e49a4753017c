//! The data encryption key.

use core::fmt;

use rand_core::CryptoRng;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::Error;

/// A 256-bit data encryption key (DEK): the secret every envelope of one secret version is
/// sealed under.
///
/// The key lives on the heap, in one place for its whole life (moving a `Dek` moves a pointer,
/// never the key bytes), and is wiped when the `Dek` is dropped. There is deliberately no
/// `Clone`, no `Serialize`, no `PartialEq` and no `Deref`/`AsRef<[u8]>`: every read of the key
/// is a call to [`Dek::expose_secret`], which is easy to grep for and to review. `Debug` prints
/// `Dek([REDACTED])`.
///
/// Where a DEK comes from:
/// - [`Dek::generate`]: a fresh key from the operating system's CSPRNG (the normal case, once
///   per secret version);
/// - [`Dek::generate_with_rng`]: a fresh key from a caller's CSPRNG;
/// - [`Dek::from_bytes`]: a key rebuilt from shares (XOR or Shamir) or unwrapped by a key
///   provider. Whether the rebuilt key is the right one is checked against an envelope with
///   [`Envelope::verify_key`](crate::Envelope::verify_key).
///
/// # Example
///
/// ```
/// use envelope::Dek;
///
/// let dek = Dek::generate()?;
/// assert_eq!(dek.expose_secret().len(), Dek::LEN);
/// assert_eq!(format!("{dek:?}"), "Dek([REDACTED])");
/// # Ok::<(), envelope::Error>(())
/// ```
pub struct Dek {
    bytes: Box<[u8; Dek::LEN]>,
}

impl Dek {
    /// The length of a DEK in bytes: 32 (AES-256).
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(envelope::Dek::LEN, 32);
    /// ```
    pub const LEN: usize = 32;

    /// A key of zeros, allocated where it will stay, to be filled in place by a constructor.
    fn zeroed() -> Self {
        Self {
            bytes: Box::new([0u8; Self::LEN]),
        }
    }

    /// Draws a fresh DEK from the operating system's CSPRNG (`getrandom`).
    ///
    /// # Errors
    ///
    /// [`Error::Rng`] if the operating system's generator fails; no key is returned then.
    ///
    /// # Example
    ///
    /// ```
    /// use envelope::Dek;
    ///
    /// let a = Dek::generate()?;
    /// let b = Dek::generate()?;
    /// assert_ne!(a.expose_secret(), b.expose_secret());
    /// # Ok::<(), envelope::Error>(())
    /// ```
    pub fn generate() -> Result<Self, Error> {
        let mut dek = Self::zeroed();
        // On failure `dek` is dropped here, and wiped, before the error is returned.
        getrandom::fill(dek.bytes.as_mut_slice()).map_err(Error::Rng)?;
        Ok(dek)
    }

    /// Draws a fresh DEK from a caller's cryptographically secure generator.
    ///
    /// Use this where the process already keeps a seeded CSPRNG, or to make a test
    /// reproducible; otherwise prefer [`Dek::generate`].
    ///
    /// # Example
    ///
    /// ```
    /// use chacha20::ChaCha20Rng;
    /// use envelope::Dek;
    /// use envelope::rand_core::SeedableRng;
    ///
    /// // A fixed seed makes the key reproducible, which is for tests only.
    /// let a = Dek::generate_with_rng(&mut ChaCha20Rng::from_seed([7; 32]));
    /// let b = Dek::generate_with_rng(&mut ChaCha20Rng::from_seed([7; 32]));
    /// assert_eq!(a.expose_secret(), b.expose_secret());
    /// ```
    pub fn generate_with_rng<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut dek = Self::zeroed();
        rng.fill_bytes(dek.bytes.as_mut_slice());
        dek
    }

    /// Copies a DEK from `bytes`, for a key rebuilt from shares or unwrapped by a key provider.
    ///
    /// The caller still owns `bytes` and should wipe it (for example by holding it in a
    /// `zeroize::Zeroizing`) once the `Dek` exists.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidDekLength`] if `bytes` is not exactly [`Dek::LEN`] bytes long.
    ///
    /// # Example
    ///
    /// ```
    /// use envelope::{Dek, Error};
    /// use zeroize::Zeroizing;
    ///
    /// let rebuilt = Zeroizing::new(vec![0x42u8; 32]);
    /// let dek = Dek::from_bytes(&rebuilt)?;
    /// assert_eq!(dek.expose_secret(), &[0x42u8; 32]);
    ///
    /// assert_eq!(Dek::from_bytes(&[0u8; 31]).unwrap_err(), Error::InvalidDekLength { len: 31 });
    /// # Ok::<(), Error>(())
    /// ```
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let bytes: &[u8; Self::LEN] = bytes
            .try_into()
            .map_err(|_| Error::InvalidDekLength { len: bytes.len() })?;
        Ok(Self::from_array(bytes))
    }

    /// Copies a DEK from an array of the right length.
    pub(crate) fn from_array(bytes: &[u8; Self::LEN]) -> Self {
        let mut dek = Self::zeroed();
        dek.bytes.copy_from_slice(bytes);
        dek
    }

    /// The key bytes. This is the only way to read them; keep each use short-lived and never
    /// copy the result into a type that is not wiped on drop.
    ///
    /// # Example
    ///
    /// ```
    /// use envelope::Dek;
    ///
    /// let dek = Dek::from_bytes(&[1u8; 32])?;
    /// assert_eq!(dek.expose_secret(), &[1u8; 32]);
    /// # Ok::<(), envelope::Error>(())
    /// ```
    #[must_use]
    pub fn expose_secret(&self) -> &[u8; Self::LEN] {
        &self.bytes
    }
}

impl Drop for Dek {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl ZeroizeOnDrop for Dek {}

impl fmt::Debug for Dek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Dek([REDACTED])")
    }
}
