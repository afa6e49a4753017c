//! The public API of `custody-policy`, tested from outside the crate against real `local`
//! providers (temporary key directories) behind the seeded fault injector: one integration
//! binary, one module per concern.

// This binary is all tests: clippy.toml already lets `#[test]` functions unwrap, and the same
// holds for the helpers they call, where a failed unwrap is a failed test with its location.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod client_share;
mod errors;
mod faults;
mod hedged;
mod modes;
mod properties;
mod redaction;
mod repair;
mod seal_open;
mod stored;
mod support;
mod swaps;
