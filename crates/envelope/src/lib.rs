#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
// The parser reads attacker-controlled bytes, so an index out of bounds or an arithmetic overflow
// would be a panic (or, wrapped, a silent misparse) on hostile input. These lints make every such
// operation in library code go through `get`, `split_*_checked` or checked arithmetic instead.
// `panic` is also a workspace lint; it is repeated so the crate's guarantee does not depend on it.
#![warn(
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects,
    clippy::panic
)]

mod aead;
mod context;
mod dek;
mod error;
mod format;
mod kdf;
mod plaintext;
mod seal;

#[cfg(test)]
// Test code indexes and counts freely: a panic there is a failing test, not a vulnerability.
#[allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]
mod test_util;

#[cfg(feature = "fuzzing")]
pub mod fuzzing;

pub use crate::context::{Context, ContextBuilder};
pub use crate::dek::Dek;
pub use crate::error::Error;
pub use crate::format::Envelope;
pub use crate::plaintext::Plaintext;
pub use crate::seal::{open, seal, seal_with_rng};

/// The `rand_core` this crate's `*_with_rng` functions are written against (0.10), re-exported
/// so callers can name `CryptoRng` without depending on a matching version themselves.
///
/// # Example
///
/// ```
/// use chacha20::ChaCha20Rng;
/// use envelope::rand_core::{CryptoRng, SeedableRng};
///
/// fn fresh_dek<R: CryptoRng + ?Sized>(rng: &mut R) -> envelope::Dek {
///     envelope::Dek::generate_with_rng(rng)
/// }
/// let dek = fresh_dek(&mut ChaCha20Rng::from_seed([7; 32]));
/// assert_eq!(dek.expose_secret().len(), envelope::Dek::LEN);
/// ```
pub use rand_core;

/// The largest plaintext, in bytes, that [`seal`] accepts and that [`Envelope::from_bytes`] will
/// parse: 16 MiB.
///
/// Secrets are small (keys, passwords, certificates), so the limit is far above any real use yet
/// keeps a hostile length field, or an accidental upload of a disk image, from turning into an
/// unbounded allocation. It also sits far below AES-GCM's own limit of 2^36 − 32 bytes per
/// message. Raising it later stays compatible: the wire format carries a 32-bit length.
///
/// # Example
///
/// ```
/// use envelope::{Context, Dek, Error, MAX_PLAINTEXT_LEN, seal};
///
/// let dek = Dek::generate()?;
/// let context = Context::builder()
///     .vault_id("vault-1")
///     .path("big/blob")
///     .version(1)
///     .secret_type("opaque")
///     .custody_mode("standard")
///     .build()?;
/// let too_big = vec![0u8; MAX_PLAINTEXT_LEN + 1];
/// assert!(matches!(
///     seal(&dek, &context, &too_big),
///     Err(Error::PlaintextTooLarge { .. })
/// ));
/// # Ok::<(), Error>(())
/// ```
pub const MAX_PLAINTEXT_LEN: usize = 16 * 1024 * 1024;
