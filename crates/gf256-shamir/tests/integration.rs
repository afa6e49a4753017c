//! The functional test suite of gf256-shamir: one binary, one module per concern.

// Helpers outside `#[test]` functions unwrap, panic, print and cast as the tests do (clippy.toml
// allows that inside them): a failure there is a failing test, which is what we want.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr,
    clippy::cast_possible_truncation
)]

mod integration {
    mod api;
    mod backends;
    mod common;
    mod fuzz_corpus;
    mod hygiene;
    mod properties;
    mod statistics;
    mod vectors;
}
