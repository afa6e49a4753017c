//! Stack buffers for secret intermediate values, wiped on drop.

use zeroize::Zeroize;

/// A fixed-size stack buffer whose used prefix is wiped when it goes out of scope, on every
/// path (including `?` returns).
///
/// Unlike `Zeroizing<[u8; N]>`, which wipes the whole array one volatile byte store at a time,
/// this wipes only what was handed out, through `zeroize`'s bulk slice path (a `memset` plus an
/// optimization barrier): a 32-byte split uses 32 bytes of a 512-byte buffer and pays for 32.
pub(crate) struct Scratch<const N: usize> {
    buf: [u8; N],
    used: usize,
}

impl<const N: usize> Scratch<N> {
    /// An all-zero buffer.
    #[inline]
    pub(crate) fn new() -> Scratch<N> {
        Scratch {
            buf: [0u8; N],
            used: 0,
        }
    }

    /// The first `len` bytes (at most `N`), which will be wiped on drop.
    #[inline]
    pub(crate) fn prefix(&mut self, len: usize) -> &mut [u8] {
        let len = len.min(N);
        self.used = self.used.max(len);
        self.buf.get_mut(..len).unwrap_or_default()
    }

    /// The whole buffer, which will be wiped on drop.
    #[inline]
    pub(crate) fn all(&mut self) -> &mut [u8; N] {
        self.used = N;
        &mut self.buf
    }
}

impl<const N: usize> Drop for Scratch<N> {
    fn drop(&mut self) {
        if let Some(used) = self.buf.get_mut(..self.used) {
            used.zeroize();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_clamped_and_tracked() {
        let mut scratch = Scratch::<8>::new();
        assert_eq!(scratch.prefix(3).len(), 3);
        assert_eq!(scratch.prefix(20).len(), 8);
        assert_eq!(scratch.used, 8);
        scratch.all()[0] = 1;
    }
}
