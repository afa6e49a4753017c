//! The secret type unwrap returns.

use core::fmt;

use subtle::{Choice, ConstantTimeEq};
use zeroize::Zeroizing;

/// A share (or whole DEK) as it came out of [`KeyProvider::unwrap`](crate::KeyProvider::unwrap).
///
/// Zeroized when dropped. No `Clone`, no `Deref`, no `AsRef<[u8]>`: every read of the secret is a
/// call to [`expose_secret`](Self::expose_secret), so reads are easy to find in review. `Debug`
/// prints only the length. Equality is constant time ([`ConstantTimeEq`]).
///
/// # Example
///
/// ```
/// use kms_providers::UnwrappedShare;
/// use zeroize::Zeroizing;
///
/// let share = UnwrappedShare::new(Zeroizing::new(vec![0x42; 32]));
/// assert_eq!(share.len(), 32);
/// assert_eq!(format!("{share:?}"), "UnwrappedShare([REDACTED; 32 bytes])");
/// assert_eq!(share.expose_secret()[0], 0x42);
/// ```
pub struct UnwrappedShare(Zeroizing<Vec<u8>>);

impl UnwrappedShare {
    /// Takes ownership of unwrapped bytes. Providers outside this crate use it to build their
    /// return value; the bytes stay in the zeroizing buffer they arrive in.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::UnwrappedShare;
    /// # use zeroize::Zeroizing;
    /// let share = UnwrappedShare::new(Zeroizing::new(vec![1, 2, 3]));
    /// assert!(!share.is_empty());
    /// ```
    pub fn new(bytes: Zeroizing<Vec<u8>>) -> Self {
        Self(bytes)
    }

    /// The secret bytes. The one way to read them.
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::UnwrappedShare;
    /// # use zeroize::Zeroizing;
    /// let share = UnwrappedShare::new(Zeroizing::new(vec![7; 4]));
    /// assert_eq!(share.expose_secret(), &[7, 7, 7, 7]);
    /// ```
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }

    /// Hands the bytes on in their zeroizing buffer (to a share or DEK type of a higher crate).
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::UnwrappedShare;
    /// # use zeroize::Zeroizing;
    /// let share = UnwrappedShare::new(Zeroizing::new(vec![7; 4]));
    /// let bytes: Zeroizing<Vec<u8>> = share.into_zeroizing();
    /// assert_eq!(bytes.len(), 4);
    /// ```
    pub fn into_zeroizing(self) -> Zeroizing<Vec<u8>> {
        self.0
    }

    /// Length in bytes (not secret: share lengths are fixed by the scheme).
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::UnwrappedShare;
    /// # use zeroize::Zeroizing;
    /// assert_eq!(UnwrappedShare::new(Zeroizing::new(vec![0; 33])).len(), 33);
    /// ```
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the share is empty (never, for a share a provider returns).
    ///
    /// # Example
    ///
    /// ```
    /// # use kms_providers::UnwrappedShare;
    /// # use zeroize::Zeroizing;
    /// assert!(UnwrappedShare::new(Zeroizing::new(Vec::new())).is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for UnwrappedShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UnwrappedShare([REDACTED; {} bytes])", self.0.len())
    }
}

impl ConstantTimeEq for UnwrappedShare {
    /// Constant time in the contents; lengths (public) may differ and then compare unequal.
    fn ct_eq(&self, other: &Self) -> Choice {
        self.0.as_slice().ct_eq(other.0.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_leaks_nothing() {
        let share = UnwrappedShare::new(Zeroizing::new(vec![0xAB; 32]));
        let dbg = format!("{share:?} {share:#?}");
        assert!(!dbg.contains("171"), "{dbg}");
        assert!(!dbg.to_lowercase().contains("ab"), "{dbg}");
    }

    #[test]
    fn constant_time_equality() {
        let a = UnwrappedShare::new(Zeroizing::new(vec![1, 2, 3]));
        let b = UnwrappedShare::new(Zeroizing::new(vec![1, 2, 3]));
        let c = UnwrappedShare::new(Zeroizing::new(vec![1, 2, 4]));
        let d = UnwrappedShare::new(Zeroizing::new(vec![1, 2]));
        assert!(bool::from(a.ct_eq(&b)));
        assert!(!bool::from(a.ct_eq(&c)));
        assert!(!bool::from(a.ct_eq(&d)));
    }
}
