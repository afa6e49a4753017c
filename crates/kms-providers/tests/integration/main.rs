//! The one integration test binary of kms-providers: the conformance suite against `local` and
//! against `pkcs11` on SoftHSM2 and
//! `aws` on moto, provider-specific behaviour, the layers and the fuzz checks.

// This binary is all tests: clippy.toml already lets `#[test]` functions unwrap and panic, and
// the same holds for the fixtures they call, where a failure is a failed test with its location.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod aws;
mod azure;
mod fuzzing;
mod gcp;
mod layers;
mod local;
mod pkcs11;
mod support;
mod testkit_self;
