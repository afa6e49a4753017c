#![doc = include_str!("../README.md")]
// Only `backend/` may use `unsafe` (SIMD intrinsics and `#[target_feature]` calls); it opts out
// with a module-level allow that says why. `deny`, not `forbid`, so that opt-out is possible.
#![deny(unsafe_code)]
// The constant-time lints RustCrypto's ctutils uses: division and remainder are variable-time
// on common CPUs, arithmetic that can overflow hides panics (or, wrapped, bugs) in code that
// must be branch-free, and indexing hides bounds-check panics. `panic` is also a workspace lint;
// it is repeated so this crate's guarantees do not depend on the workspace settings.
#![warn(
    clippy::integer_division_remainder_used,
    clippy::arithmetic_side_effects,
    clippy::panic,
    clippy::indexing_slicing
)]
// Unit tests index and compute freely: a panic there is a failing test, which is the point.
#![cfg_attr(
    test,
    allow(
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects,
        clippy::integer_division_remainder_used
    )
)]

mod backend;
mod combine;
mod error;
mod field;
mod rng;
mod scratch;
mod share;
mod split;

#[cfg(feature = "fuzzing")]
pub mod fuzzing;

pub use crate::backend::Backend;
pub use crate::combine::{Combiner, combine, recover_share};
pub use crate::error::Error;
pub use crate::rng::FastRng;
pub use crate::share::{AsShareRef, Share, ShareIndex, ShareRef, Threshold};
pub use crate::split::{Splitter, split};
