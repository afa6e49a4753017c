//! One integration binary: every endpoint in process through `VaultServer::app()`, the
//! bad-input table, the restart test and one end-to-end test over a real socket; the storage
//! suite and the differential test on SQLite and PostgreSQL; the `vault-server` binary as
//! processes for the replica, `kill -9` and backup tests.

// This binary is all tests: clippy.toml already lets `#[test]` functions unwrap, and the same
// holds for the helpers they call, where a failed unwrap is a failed test with its location.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod access;
mod audit;
mod auth;
mod backup;
mod bad_input;
mod cmek;
mod config;
mod crash;
mod differential;
mod e2e;
mod fuzz_api;
mod health;
mod isolation;
mod limits;
mod logs;
mod metrics;
mod openapi;
mod pg;
mod process;
mod replicas;
// Without the feature, `config::pkcs11_needs_the_feature` checks the refusal instead.
#[cfg(feature = "pkcs11")]
mod pkcs11;
mod rate_limit;
mod resilience;
mod restart;
mod secrets;
mod storage;
mod support;
mod tls;
mod treasury;
mod vaults;
