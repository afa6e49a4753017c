#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
// The constant-time lints RustCrypto's ctutils uses: division and remainder are variable-time
// on common CPUs, and arithmetic that can overflow hides panics (or, with wrapping, bugs) in
// code that must be branch-free. `panic` is also a workspace lint; it is repeated here so this
// crate's guarantees do not depend on the workspace settings.
#![warn(
    clippy::integer_division_remainder_used,
    clippy::arithmetic_side_effects,
    clippy::panic
)]

mod combine;
mod error;
mod kernel;
mod share;
mod split;

#[cfg(feature = "fuzzing")]
pub mod fuzzing;

pub use crate::combine::{combine, combine_into};
pub use crate::error::Error;
pub use crate::share::XorShare;
pub use crate::split::{split, split_into, split_into_with_rng, split_with_rng};

/// The fewest shares a split produces and a combine accepts. With one share, the share would
/// be the secret.
///
/// # Example
///
/// ```
/// assert!(xor_split::split(b"secret", xor_split::MIN_SHARES - 1).is_err());
/// assert!(xor_split::split(b"secret", xor_split::MIN_SHARES).is_ok());
/// ```
pub const MIN_SHARES: usize = 2;

/// The most shares a split produces and a combine accepts, matching the 255 non-zero share
/// indices of the workspace's Shamir sharing so both modes have the same limits.
///
/// # Example
///
/// ```
/// assert!(xor_split::split(b"secret", xor_split::MAX_SHARES).is_ok());
/// assert!(xor_split::split(b"secret", xor_split::MAX_SHARES + 1).is_err());
/// ```
pub const MAX_SHARES: usize = 255;
