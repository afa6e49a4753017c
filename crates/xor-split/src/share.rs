//! The owned share type.

use core::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::Error;

/// One share of an XOR split: as many bytes as the secret, wiped when dropped.
///
/// A share on its own is uniformly random and says nothing about the secret; all shares of a
/// split XORed together give the secret back. Shares have **no index**: the order in which they
/// are passed to [`combine`](crate::combine) does not matter. A share also carries no context
/// (which vault, secret or version it belongs to): binding it to one is the caller's job, and in
/// mpc-vault the custody policy does it when it wraps or hands out each share.
///
/// The type holds a secret, so it is deliberately thin: it has no `Clone`, no `Serialize`, no
/// `Deref` or `AsRef<[u8]>`, and its `Debug` shows only the length. The bytes are read through
/// one greppable call, [`expose_secret`](Self::expose_secret), or copied out in their wire form
/// with [`to_bytes`](Self::to_bytes).
///
/// # Example
///
/// ```
/// use xor_split::{combine, split};
///
/// let shares = split(b"data encryption key", 2)?;
/// assert_eq!(shares[0].len(), 19);
/// assert_eq!(format!("{:?}", shares[0]), "XorShare { len: 19, .. }");
/// assert_eq!(&combine(&shares)?[..], b"data encryption key");
/// # Ok::<(), xor_split::Error>(())
/// ```
pub struct XorShare {
    /// A boxed slice rather than a `Vec`: it has no spare capacity that could hold stale copies,
    /// and its length never changes after construction.
    bytes: Box<[u8]>,
}

impl XorShare {
    /// A share of `len` zero bytes, to be filled by a split. Crate-internal: a public share is
    /// always the output of a split or of [`from_bytes`](Self::from_bytes).
    pub(crate) fn zeroed(len: usize) -> Self {
        Self {
            bytes: vec![0u8; len].into_boxed_slice(),
        }
    }

    /// Mutable access for the split that fills this share.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }

    /// Reads a share from its wire form, copying the bytes.
    ///
    /// The wire form is the share's bytes and nothing else: no header, no index, no length
    /// prefix. Encoding it for transport (base64 or otherwise), framing it, and checking that it
    /// belongs to the secret being opened are the caller's job. The caller still owns `bytes`
    /// and should wipe it once the share is built.
    ///
    /// # Errors
    ///
    /// [`Error::EmptyShare`] if `bytes` is empty: a split never produces an empty share.
    ///
    /// # Example
    ///
    /// ```
    /// use xor_split::{combine, split, XorShare};
    ///
    /// let shares = split(b"secret", 2)?;
    /// // Send share 1 to the client in its wire form, and read it back later.
    /// let wire = shares[1].to_bytes();
    /// let returned = XorShare::from_bytes(&wire)?;
    /// assert_eq!(&combine(&[returned, XorShare::from_bytes(&shares[0].to_bytes())?])?[..], b"secret");
    /// # Ok::<(), xor_split::Error>(())
    /// ```
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.is_empty() {
            return Err(Error::EmptyShare);
        }
        Ok(Self {
            bytes: Box::from(bytes),
        })
    }

    /// Copies the share out in its wire form (its bytes, nothing else), in a buffer that is
    /// wiped when dropped.
    ///
    /// This is a copy of secret material, like [`expose_secret`](Self::expose_secret): use it
    /// only to hand the share to whoever holds it (a key provider that wraps it, a client that
    /// keeps it).
    ///
    /// # Example
    ///
    /// ```
    /// use xor_split::split;
    ///
    /// let shares = split(&[0xAB; 32], 2)?;
    /// let wire = shares[0].to_bytes();
    /// assert_eq!(&wire[..], shares[0].expose_secret());
    /// # Ok::<(), xor_split::Error>(())
    /// ```
    #[must_use]
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.bytes.to_vec())
    }

    /// Borrows the share's bytes: the one accessor for secret material, named so that every
    /// read can be found with a search.
    ///
    /// # Example
    ///
    /// ```
    /// use xor_split::{combine_into, split};
    ///
    /// let shares = split(b"top secret", 2)?;
    /// let mut secret = [0u8; 10];
    /// combine_into(&[shares[0].expose_secret(), shares[1].expose_secret()], &mut secret)?;
    /// assert_eq!(&secret, b"top secret");
    /// # Ok::<(), xor_split::Error>(())
    /// ```
    #[must_use]
    pub fn expose_secret(&self) -> &[u8] {
        &self.bytes
    }

    /// The share's length in bytes, which equals the secret's. Lengths are public: they are
    /// visible in any ciphertext or wrapped share anyway.
    ///
    /// # Example
    ///
    /// ```
    /// let shares = xor_split::split(&[7u8; 32], 3)?;
    /// assert!(shares.iter().all(|share| share.len() == 32));
    /// # Ok::<(), xor_split::Error>(())
    /// ```
    // A share is never empty (both constructors refuse that), so an `is_empty` would always
    // answer `false` and only invite dead checks.
    #[allow(clippy::len_without_is_empty)]
    #[must_use]
    pub fn len(&self) -> usize {
        self.bytes.len()
    }
}

impl XorShare {
    /// Overwrites every byte with zero (volatile writes that the optimizer keeps). Only `Drop`
    /// calls it; it is a separate method so a test can observe its effect.
    fn wipe(&mut self) {
        self.bytes.zeroize();
    }
}

impl Drop for XorShare {
    fn drop(&mut self) {
        self.wipe();
    }
}

/// Marks that dropping a share wipes it. `Zeroize` itself is not implemented: a share is always
/// secret, so there is no state in which a caller should wipe it and keep using it.
impl ZeroizeOnDrop for XorShare {}

/// Shows the length only: never a byte of the share, in any format or with `{:#?}`.
impl fmt::Debug for XorShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XorShare")
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_bytes_copies_and_round_trips() {
        let wire = [1u8, 2, 3, 4, 5];
        let share = XorShare::from_bytes(&wire).unwrap();
        assert_eq!(share.expose_secret(), &wire);
        assert_eq!(&share.to_bytes()[..], &wire);
        assert_eq!(share.len(), 5);
    }

    #[test]
    fn from_bytes_refuses_empty_input() {
        assert!(matches!(XorShare::from_bytes(&[]), Err(Error::EmptyShare)));
    }

    #[test]
    fn debug_shows_length_only() {
        let a = XorShare::from_bytes(&[0x00; 17]).unwrap();
        let b = XorShare::from_bytes(&[0xFF; 17]).unwrap();
        assert_eq!(format!("{a:?}"), "XorShare { len: 17, .. }");
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        assert_eq!(format!("{a:#?}"), format!("{b:#?}"));
    }

    /// `Drop` runs exactly `wipe`; calling it on a share we still own lets us observe the
    /// result without reading freed memory (which safe Rust cannot do, and unsafe code could
    /// not do without undefined behaviour).
    #[test]
    fn wipe_zeroes_every_byte() {
        let mut share = XorShare::from_bytes(&[0xA5; 64]).unwrap();
        share.wipe();
        assert!(share.expose_secret().iter().all(|&b| b == 0));
        assert_eq!(
            share.len(),
            64,
            "wiping keeps the length; only the contents change"
        );
    }
}
