//! Helpers shared by the integration tests.

use std::convert::Infallible;

use envelope::rand_core::{TryCryptoRng, TryRng};
use envelope::{Context, Dek};

/// A context with every field set to an ordinary value.
pub(crate) fn context() -> Context {
    Context::builder()
        .vault_id("vault-1")
        .path("db/password")
        .version(1)
        .secret_type("password")
        .custody_mode("2of3_multi_hsm")
        .build()
        .unwrap()
}

/// A fixed DEK whose bytes are easy to recognise in output.
pub(crate) fn dek() -> Dek {
    Dek::from_bytes(&[0xA5; Dek::LEN]).unwrap()
}

pub(crate) fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd-length hex {s:?}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Replays fixed bytes as "randomness", to reproduce known-answer vectors through the public
/// `seal_with_rng`. It claims `CryptoRng` only because the API demands it: test use only.
/// Running out of bytes panics, which fails the test (a seal drew more than its 32-byte salt).
pub(crate) struct ReplayRng {
    bytes: Vec<u8>,
}

impl ReplayRng {
    pub(crate) fn new(bytes: &[u8]) -> Self {
        Self {
            bytes: bytes.to_vec(),
        }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len()
    }
}

impl TryRng for ReplayRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        assert!(dst.len() <= self.bytes.len(), "ReplayRng ran out of bytes");
        let rest = self.bytes.split_off(dst.len());
        dst.copy_from_slice(&self.bytes);
        self.bytes = rest;
        Ok(())
    }
}

impl TryCryptoRng for ReplayRng {}
