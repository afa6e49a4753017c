//! Helpers shared by the test modules: hex, seeded generators, and an independent byte-at-a-time
//! reference implementation of the field and of Shamir evaluation.

use chacha20::ChaCha20Rng;
use chacha20::rand_core::SeedableRng;
use core::convert::Infallible;
use rand_core::{TryCryptoRng, TryRng};

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn unhex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "odd-length hex {text:?}");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

pub(crate) fn seeded(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// Multiplication in GF(2^8) mod 0x11B, bit by bit: the test-side reference.
pub(crate) fn gf_mul(a: u8, b: u8) -> u8 {
    let (mut a, mut b, mut product) = (a, b, 0u8);
    while b != 0 {
        if b & 1 == 1 {
            product ^= a;
        }
        a = (a << 1) ^ if a & 0x80 != 0 { 0x1B } else { 0 };
        b >>= 1;
    }
    product
}

/// The inverse of a non-zero element, as a^254.
pub(crate) fn gf_inv(a: u8) -> u8 {
    assert_ne!(a, 0);
    (0..254).fold(1, |acc, _| gf_mul(acc, a))
}

/// `coefficients[0] + coefficients[1]·x + …`, by Horner's rule.
pub(crate) fn eval(coefficients: &[u8], x: u8) -> u8 {
    coefficients
        .iter()
        .rev()
        .fold(0, |acc, &c| gf_mul(acc, x) ^ c)
}

/// A generator that hands out a fixed script of bytes, then zeros. It lets tests choose the
/// polynomial coefficients a split uses. Not random: only for tests.
pub(crate) struct ScriptedRng {
    pub(crate) script: Vec<u8>,
    pub(crate) position: usize,
}

impl ScriptedRng {
    pub(crate) fn new(script: Vec<u8>) -> ScriptedRng {
        ScriptedRng {
            script,
            position: 0,
        }
    }
}

impl TryRng for ScriptedRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut bytes = [0u8; 4];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u32::from_le_bytes(bytes))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut bytes = [0u8; 8];
        self.try_fill_bytes(&mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for byte in dst {
            *byte = self.script.get(self.position).copied().unwrap_or(0);
            self.position += 1;
        }
        Ok(())
    }
}

// Test-only: the trait bound of `split_with_rng` asks for a CSPRNG; this one is a script.
impl TryCryptoRng for ScriptedRng {}
