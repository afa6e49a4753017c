//! Per-provider unwrap latency estimates, which choose the provider a client-share read calls.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// An exponentially weighted moving average of one provider's unwrap latency, in nanoseconds.
///
/// Lock-free: concurrent reads update it with compare-and-swap loops. 0 means "no sample yet",
/// which sorts first, so a provider nobody has measured gets tried (and measured) once rather
/// than being starved by an early guess.
#[derive(Debug, Default)]
pub(crate) struct LatencyEstimate {
    nanos: AtomicU64,
}

/// Weight of a new sample: 1/4. Heavy enough to follow a provider that slows down within a few
/// reads, light enough that one outlier does not reorder providers.
const WEIGHT_SHIFT: u32 = 2;

/// What a failed call counts as: a provider that just failed sorts behind every provider that
/// answers within a second, until successes bring its average back down.
const FAILURE_PENALTY: Duration = Duration::from_secs(1);

impl LatencyEstimate {
    /// The current estimate, if there is one.
    pub(crate) fn get(&self) -> Option<Duration> {
        match self.nanos.load(Ordering::Relaxed) {
            0 => None,
            nanos => Some(Duration::from_nanos(nanos)),
        }
    }

    /// The sort key: the estimate in nanoseconds, 0 when unmeasured.
    pub(crate) fn sort_key(&self) -> u64 {
        self.nanos.load(Ordering::Relaxed)
    }

    /// Folds in a completed call's latency.
    pub(crate) fn observe(&self, sample: Duration) {
        let sample = nanos(sample);
        self.update(|old| {
            if old == 0 {
                sample
            } else {
                // old + (sample - old) / 4, in signed arithmetic widened to i128 so that no
                // pair of u64 values overflows.
                let old_i = i128::from(old);
                let next = old_i + ((i128::from(sample) - old_i) >> WEIGHT_SHIFT);
                u64::try_from(next).unwrap_or(u64::MAX)
            }
        });
    }

    /// Records a failed call.
    pub(crate) fn observe_failure(&self) {
        let penalty = nanos(FAILURE_PENALTY);
        self.update(|old| old.saturating_mul(2).max(penalty));
    }

    /// Records a call cancelled after `elapsed` (its answer was not needed): its latency is at
    /// least that, so an estimate below it is raised to it. Without this, a provider that is
    /// always cancelled in hedged reads would keep looking fast.
    pub(crate) fn observe_at_least(&self, elapsed: Duration) {
        let floor = nanos(elapsed);
        self.update(|old| old.max(floor));
    }

    fn update(&self, f: impl Fn(u64) -> u64) {
        // The closure never returns `None`, so `fetch_update` always succeeds; its result is
        // the previous value, which nobody needs.
        let _ = self
            .nanos
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                Some(f(old).max(1))
            });
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_sample_is_taken_as_is_then_averaged() {
        let e = LatencyEstimate::default();
        assert_eq!(e.get(), None);
        e.observe(Duration::from_millis(40));
        assert_eq!(e.get(), Some(Duration::from_millis(40)));
        e.observe(Duration::from_millis(80));
        assert_eq!(e.get(), Some(Duration::from_millis(50)));
        for _ in 0..100 {
            e.observe(Duration::from_millis(20));
        }
        let settled = e.get().unwrap();
        assert!(settled >= Duration::from_millis(20) && settled < Duration::from_millis(21));
    }

    #[test]
    fn failures_and_cancellations_push_the_estimate_up() {
        let e = LatencyEstimate::default();
        e.observe(Duration::from_millis(5));
        e.observe_failure();
        assert_eq!(e.get(), Some(FAILURE_PENALTY));
        e.observe_failure();
        assert_eq!(e.get(), Some(FAILURE_PENALTY * 2));

        let c = LatencyEstimate::default();
        c.observe_at_least(Duration::from_millis(30));
        assert_eq!(c.get(), Some(Duration::from_millis(30)));
        c.observe_at_least(Duration::from_millis(10));
        assert_eq!(c.get(), Some(Duration::from_millis(30)));
    }

    #[test]
    fn a_zero_sample_still_counts_as_measured() {
        let e = LatencyEstimate::default();
        e.observe(Duration::ZERO);
        assert_eq!(e.get(), Some(Duration::from_nanos(1)));
    }
}
