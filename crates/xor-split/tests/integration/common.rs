//! Helpers shared by the test modules.

use core::convert::Infallible;

use rand_core::{TryCryptoRng, TryRng};

/// Hands out exactly the bytes it was built with, then panics: the "randomness" of a split
/// made explicit, so a test can enumerate every possible tape.
///
/// This is **not** a CSPRNG; it carries the `CryptoRng` marker only so the split functions
/// accept it in tests. Panicking when the tape runs out makes a split that consumes more
/// randomness than the tape holds fail the test instead of silently reusing bytes.
pub(crate) struct TapeRng<'a> {
    tape: &'a [u8],
}

impl<'a> TapeRng<'a> {
    pub(crate) fn new(tape: &'a [u8]) -> Self {
        Self { tape }
    }

    /// True once every byte of the tape has been consumed.
    pub(crate) fn is_exhausted(&self) -> bool {
        self.tape.is_empty()
    }
}

impl TryRng for TapeRng<'_> {
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
        let (taken, rest) = self
            .tape
            .split_at_checked(dst.len())
            .expect("the split asked for more randomness than n - 1 shares need");
        dst.copy_from_slice(taken);
        self.tape = rest;
        Ok(())
    }
}

impl TryCryptoRng for TapeRng<'_> {}
