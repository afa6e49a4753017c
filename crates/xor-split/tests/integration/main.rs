//! The public API of `xor-split`, tested from outside the crate: one integration binary, one
//! module per concern.

// This binary is all tests: clippy.toml already lets `#[test]` functions unwrap and panic, and
// the same holds for the helpers they call, where a failed unwrap or a panic is a failed test
// with its location and message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
mod constant_time;
mod errors;
mod fuzz_corpus;
mod redaction;
mod round_trip;
mod secrecy;
mod tamper;
mod traits;
