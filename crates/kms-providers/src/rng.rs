//! A small seeded generator for *non-secret* randomness: backoff jitter and fault schedules.
//!
//! Nothing secret is ever drawn from it: nonces come from the OS RNG (`getrandom`). It exists so
//! that jitter and fault injection are reproducible from a seed, which a CSPRNG would also allow
//! but at the cost of a dependency for no security benefit.

use std::time::Duration;

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, full-period, statistically good for this use.
#[derive(Clone, Debug)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A seed from the OS RNG; jitter must not be predictable across processes (thundering
    /// herds), but it is not secret, so a fixed fallback on RNG failure is acceptable.
    pub(crate) fn from_os_seed() -> Self {
        Self(getrandom::u64().unwrap_or(0x853c_49e6_748f_ea9b))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` with 53 bits of precision.
    #[cfg_attr(not(feature = "fault-injection"), allow(dead_code))]
    pub(crate) fn next_f64(&mut self) -> f64 {
        const SCALE: f64 = 1.0 / (1u64 << 53) as f64;
        (self.next_u64() >> 11) as f64 * SCALE
    }

    /// Uniform in `[0, n)` (Lemire's multiply-shift; the bias is below 2^-64 × n, irrelevant here).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        let wide = u128::from(self.next_u64()) * u128::from(n);
        u64::try_from(wide >> 64).unwrap_or(0)
    }

    /// Uniform in `[0, max]`.
    pub(crate) fn duration_up_to(&mut self, max: Duration) -> Duration {
        let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(self.below(nanos.saturating_add(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        // Reference outputs of SplitMix64 seeded with 1234567.
        let mut r = SplitMix64::new(1_234_567);
        assert_eq!(r.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(r.next_u64(), 3_203_168_211_198_807_973);
    }

    #[test]
    fn ranges() {
        let mut r = SplitMix64::new(7);
        for _ in 0..10_000 {
            let f = r.next_f64();
            assert!((0.0..1.0).contains(&f));
            assert!(r.below(10) < 10);
            assert!(r.duration_up_to(Duration::from_millis(5)) <= Duration::from_millis(5));
        }
        assert_eq!(r.below(0), 0);
    }
}
