//! The crate's one integration test binary: the public API only, one module per concern.

// Everything in this binary is test code, helpers included: clippy.toml allows unwrap, expect
// and panic inside `#[test]` functions, and the shared helpers fail the same way, on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod context_binding;
mod fuzz_corpus;
mod keys;
mod known_answers;
mod redaction;
mod round_trip;
mod tamper;
mod util;
mod wire;
