//! The layers and the fault injector, on real local providers, mostly in paused Tokio time.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use kms_providers::{
    BreakerConfig, CircuitBreaker, CircuitState, ConcurrencyLimit, Error, FaultConfig,
    FaultInjector, FaultSchedule, InjectedError, KeyProvider, Latency, LayerStack, LocalProvider,
    Retry, RetryPolicy, StaticKek, Timeout,
};
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::support::{InFlight, ctx};

/// A real local provider with a fixed KEK, so that two instances behave identically.
fn local() -> LocalProvider {
    LocalProvider::builder("local-it")
        .static_kek(StaticKek::new(1, Zeroizing::new([0x42; 32])))
        .build()
        .unwrap()
}

fn faulty(config: FaultConfig) -> FaultInjector<LocalProvider> {
    FaultInjector::new(local(), config).unwrap()
}

// ---- timeout ----

#[tokio::test(start_paused = true)]
async fn timeout_fires_on_a_hang_and_names_the_provider() {
    let p = Timeout::new(
        faulty(FaultConfig::new(1).hang_rate(1.0)),
        Duration::from_millis(100),
    )
    .unwrap();
    let start = Instant::now();
    let err = p.wrap(b"share", &ctx(1, 1)).await.unwrap_err();
    assert!(
        matches!(err, Error::Timeout { after, .. } if after == Duration::from_millis(100)),
        "{err}"
    );
    assert!(err.is_transient());
    assert_eq!(err.provider(), "local-it");
    assert_eq!(start.elapsed(), Duration::from_millis(100));
    assert_eq!(p.get_ref().stats().hangs, 1);
}

#[tokio::test(start_paused = true)]
async fn timeout_lets_slow_but_timely_calls_through() {
    let slow = faulty(FaultConfig::new(1).latency(Latency::Fixed(Duration::from_millis(90))));
    let p = Timeout::new(slow, Duration::from_millis(100)).unwrap();
    let c = ctx(1, 1);
    let w = p.wrap(b"share", &c).await.unwrap();
    assert_eq!(p.unwrap(&w, &c).await.unwrap().expose_secret(), b"share");
    assert!(Timeout::new(local(), Duration::ZERO).is_err());
}

// ---- retry ----

fn quick_policy(attempts: u32) -> RetryPolicy {
    RetryPolicy::default()
        .max_attempts(attempts)
        .base_delay(Duration::from_millis(10))
        .max_delay(Duration::from_millis(100))
        .max_elapsed(Duration::from_secs(60))
}

#[tokio::test(start_paused = true)]
async fn retry_retries_transient_errors_up_to_the_attempt_limit() {
    let p = Retry::with_seed(
        faulty(FaultConfig::new(1).error_rate(1.0)),
        quick_policy(4),
        9,
    )
    .unwrap();
    let err = p.wrap(b"share", &ctx(1, 1)).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err}");
    assert_eq!(p.get_ref().stats().calls, 4);
}

#[tokio::test(start_paused = true)]
async fn retry_never_retries_permanent_errors() {
    let denied = faulty(
        FaultConfig::new(1)
            .error_rate(1.0)
            .error(InjectedError::PermissionDenied),
    );
    let p = Retry::with_seed(denied, quick_policy(4), 9).unwrap();
    let err = p.wrap(b"share", &ctx(1, 1)).await.unwrap_err();
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err}");
    assert_eq!(p.get_ref().stats().calls, 1);

    // A real authentication failure (wrong context) is not retried either.
    let p = Retry::with_seed(faulty(FaultConfig::new(1)), quick_policy(4), 9).unwrap();
    let w = p.wrap(b"share", &ctx(1, 1)).await.unwrap();
    let err = p.unwrap(&w, &ctx(2, 1)).await.unwrap_err();
    assert!(matches!(err, Error::AuthenticationFailed { .. }), "{err}");
    assert_eq!(p.get_ref().stats().calls, 2);
}

#[tokio::test(start_paused = true)]
async fn retry_recovers_from_intermittent_failures() {
    let flaky = faulty(
        FaultConfig::new(3)
            .error_rate(0.5)
            .error(InjectedError::Throttled),
    );
    let p = Retry::with_seed(flaky, quick_policy(10), 9).unwrap();
    let c = ctx(1, 1);
    for i in 0..50u8 {
        let w = p.wrap(&[i; 32], &c).await.unwrap();
        assert_eq!(p.unwrap(&w, &c).await.unwrap().expose_secret(), &[i; 32]);
    }
    let stats = p.get_ref().stats();
    assert!(
        stats.errors > 20 && stats.calls == 100 + stats.errors,
        "{stats:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn retry_respects_the_time_budget_and_backoff_ceilings() {
    let policy = RetryPolicy::default()
        .max_attempts(100)
        .base_delay(Duration::from_millis(100))
        .max_delay(Duration::from_millis(400))
        .max_elapsed(Duration::from_secs(2));
    let p = Retry::with_seed(faulty(FaultConfig::new(1).error_rate(1.0)), policy, 5).unwrap();
    let start = Instant::now();
    p.wrap(b"share", &ctx(1, 1)).await.unwrap_err();
    assert!(
        start.elapsed() <= Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    let calls = p.get_ref().stats().calls;
    // Sleeps average at most 200 ms once capped, so a 2 s budget allows roughly 10 to 40 tries;
    // never the 100 the attempt limit would allow.
    assert!((5..60).contains(&calls), "{calls}");
}

#[tokio::test(start_paused = true)]
async fn retry_jitter_is_reproducible_from_its_seed() {
    async fn run(seed: u64) -> Duration {
        let p = Retry::with_seed(
            faulty(FaultConfig::new(1).error_rate(1.0)),
            quick_policy(6),
            seed,
        )
        .unwrap();
        let start = Instant::now();
        p.wrap(b"share", &ctx(1, 1)).await.unwrap_err();
        start.elapsed()
    }
    assert_eq!(run(77).await, run(77).await);
    assert_ne!(run(77).await, run(78).await);
}

#[tokio::test(start_paused = true)]
async fn retry_does_not_spin_on_an_open_circuit() {
    let breaker = CircuitBreaker::new(
        faulty(FaultConfig::new(1)),
        BreakerConfig::default()
            .failure_threshold(1)
            .cool_down(Duration::from_secs(30)),
    )
    .unwrap();
    breaker.get_ref().set_outage(true);
    let p = Retry::with_seed(breaker, quick_policy(5), 1).unwrap();
    // First call: one real failure opens the circuit; the retry then meets CircuitOpen and stops.
    let err = p.wrap(b"share", &ctx(1, 1)).await.unwrap_err();
    assert!(matches!(err, Error::CircuitOpen { .. }), "{err}");
    assert_eq!(p.get_ref().get_ref().stats().calls, 1);
}

// ---- circuit breaker ----

#[tokio::test(start_paused = true)]
async fn breaker_opens_fails_fast_half_opens_and_closes() {
    let config = BreakerConfig::default()
        .failure_threshold(3)
        .cool_down(Duration::from_secs(10));
    let b = CircuitBreaker::new(faulty(FaultConfig::new(1)), config).unwrap();
    let c = ctx(1, 1);
    b.get_ref().set_outage(true);
    for _ in 0..3 {
        assert!(matches!(
            b.wrap(b"s", &c).await,
            Err(Error::Unavailable { .. })
        ));
    }
    assert_eq!(b.state(), CircuitState::Open);
    // Open: fails fast, the provider is not called.
    let err = b.wrap(b"s", &c).await.unwrap_err();
    assert!(
        matches!(err, Error::CircuitOpen { retry_in, .. } if retry_in == Duration::from_secs(10)),
        "{err}"
    );
    assert!(err.is_transient());
    assert_eq!(b.get_ref().stats().calls, 3);

    // After the cool-down one probe goes through; it fails, so the circuit opens again.
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(b.state(), CircuitState::HalfOpen);
    assert!(matches!(
        b.wrap(b"s", &c).await,
        Err(Error::Unavailable { .. })
    ));
    assert_eq!(b.state(), CircuitState::Open);
    assert_eq!(b.get_ref().stats().calls, 4);

    // The provider recovers; the next probe closes the circuit.
    b.get_ref().set_outage(false);
    tokio::time::advance(Duration::from_secs(10)).await;
    let w = b.wrap(b"s", &c).await.unwrap();
    assert_eq!(b.state(), CircuitState::Closed);
    assert_eq!(b.unwrap(&w, &c).await.unwrap().expose_secret(), b"s");
}

#[tokio::test(start_paused = true)]
async fn breaker_ignores_permanent_errors_and_resets_on_success() {
    let config = BreakerConfig::default()
        .failure_threshold(2)
        .cool_down(Duration::from_secs(10));
    let b = CircuitBreaker::new(faulty(FaultConfig::new(1)), config).unwrap();
    let w = b.wrap(b"s", &ctx(1, 1)).await.unwrap();
    for _ in 0..10 {
        let err = b.unwrap(&w, &ctx(2, 1)).await.unwrap_err();
        assert!(matches!(err, Error::AuthenticationFailed { .. }));
    }
    assert_eq!(b.state(), CircuitState::Closed);
    // Failures must be consecutive: fail, succeed, fail stays closed.
    b.get_ref().set_outage(true);
    b.wrap(b"s", &ctx(1, 1)).await.unwrap_err();
    b.get_ref().set_outage(false);
    b.wrap(b"s", &ctx(1, 1)).await.unwrap();
    b.get_ref().set_outage(true);
    b.wrap(b"s", &ctx(1, 1)).await.unwrap_err();
    assert_eq!(b.state(), CircuitState::Closed);
    b.wrap(b"s", &ctx(1, 1)).await.unwrap_err();
    assert_eq!(b.state(), CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn breaker_allows_one_probe_at_a_time_and_survives_a_cancelled_probe() {
    let slow = faulty(FaultConfig::new(1).latency(Latency::Fixed(Duration::from_secs(1))));
    let config = BreakerConfig::default()
        .failure_threshold(1)
        .cool_down(Duration::from_secs(5));
    let b = Arc::new(CircuitBreaker::new(slow, config).unwrap());
    b.get_ref().set_outage(true);
    b.wrap(b"s", &ctx(1, 1)).await.unwrap_err();
    assert_eq!(b.state(), CircuitState::Open);
    b.get_ref().set_outage(false);
    tokio::time::advance(Duration::from_secs(5)).await;

    // A probe that its caller abandons frees the probe slot.
    let abandoned =
        tokio::time::timeout(Duration::from_millis(100), b.wrap(b"s", &ctx(1, 1))).await;
    assert!(abandoned.is_err());
    assert_eq!(b.state(), CircuitState::HalfOpen);

    // While a probe is in flight, other calls fail fast.
    let probe = {
        let b = Arc::clone(&b);
        tokio::spawn(async move { b.wrap(b"s", &ctx(1, 1)).await })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    let err = b.wrap(b"s", &ctx(1, 1)).await.unwrap_err();
    assert!(
        matches!(err, Error::CircuitOpen { retry_in, .. } if retry_in.is_zero()),
        "{err}"
    );
    probe.await.unwrap().unwrap();
    assert_eq!(b.state(), CircuitState::Closed);
}

// ---- concurrency limit ----

#[tokio::test(start_paused = true)]
async fn limiter_bounds_calls_in_flight() {
    async fn peak_with(limit: Option<usize>) -> usize {
        let slow = faulty(FaultConfig::new(1).latency(Latency::Fixed(Duration::from_millis(10))));
        let counted = InFlight::new(slow);
        let provider: Arc<dyn KeyProvider> = match limit {
            Some(n) => Arc::new(ConcurrencyLimit::new(Arc::clone(&counted), n).unwrap()),
            None => counted.clone(),
        };
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..50u8 {
            let p = Arc::clone(&provider);
            tasks.spawn(async move { p.wrap(&[i; 32], &ctx(1, 1)).await.map(|_| ()) });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap().unwrap();
        }
        assert_eq!(counted.now.load(Ordering::SeqCst), 0);
        counted.peak.load(Ordering::SeqCst)
    }
    assert_eq!(peak_with(Some(4)).await, 4);
    assert!(peak_with(None).await > 4);
    assert!(ConcurrencyLimit::new(local(), 0).is_err());
}

// ---- fault injector ----

/// The observable outcome of wrap-then-unwrap through an injector.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    WrapFailed,
    UnwrapFailed,
    Corrupted,
    Intact,
}

async fn outcomes(config: FaultConfig, n: u8) -> Vec<Outcome> {
    let p = faulty(config);
    let c = ctx(1, 1);
    let mut out = Vec::new();
    for i in 0..n {
        let share = [i; 32];
        let Ok(w) = p.wrap(&share, &c).await else {
            out.push(Outcome::WrapFailed);
            continue;
        };
        out.push(match p.unwrap(&w, &c).await {
            Err(_) => Outcome::UnwrapFailed,
            Ok(s) if s.expose_secret() == share => Outcome::Intact,
            Ok(s) => {
                // Exactly one bit differs.
                let diff: u32 = s
                    .expose_secret()
                    .iter()
                    .zip(share)
                    .map(|(a, b)| (a ^ b).count_ones())
                    .sum();
                assert_eq!(diff, 1);
                Outcome::Corrupted
            }
        });
    }
    out
}

#[tokio::test(start_paused = true)]
async fn injector_is_deterministic_per_seed() {
    let config = |seed| {
        FaultConfig::new(seed)
            .error_rate(0.2)
            .corrupt_rate(0.3)
            .latency(Latency::Jittered {
                base: Duration::from_millis(1),
                jitter: Duration::from_millis(4),
            })
    };
    let a = outcomes(config(1234), 200).await;
    let b = outcomes(config(1234), 200).await;
    assert_eq!(a, b);
    assert_ne!(a, outcomes(config(4321), 200).await);
    for kind in [
        Outcome::WrapFailed,
        Outcome::UnwrapFailed,
        Outcome::Corrupted,
        Outcome::Intact,
    ] {
        assert!(a.contains(&kind), "no {kind:?} in 200 calls");
    }

    // The outcomes follow the published schedule: call 2k is the k-th wrap, 2k+1 its unwrap.
    let mut schedule = FaultSchedule::new(&config(1234));
    for outcome in &a {
        let wrap_plan = schedule.next_plan();
        if wrap_plan.error {
            assert_eq!(outcome, &Outcome::WrapFailed);
            continue;
        }
        let unwrap_plan = schedule.next_plan();
        let expected = if unwrap_plan.error {
            Outcome::UnwrapFailed
        } else if unwrap_plan.corrupt {
            Outcome::Corrupted
        } else {
            Outcome::Intact
        };
        assert_eq!(outcome, &expected);
    }
}

#[tokio::test(start_paused = true)]
async fn injector_latency_matches_the_schedule() {
    let config = FaultConfig::new(8).latency(Latency::Jittered {
        base: Duration::from_millis(20),
        jitter: Duration::from_millis(30),
    });
    let p = faulty(config.clone());
    let mut schedule = FaultSchedule::new(&config);
    for _ in 0..20 {
        let start = Instant::now();
        p.health().await.unwrap();
        let expected = schedule.next_plan().delay;
        // Tokio's timer counts whole milliseconds, rounding a sleep up to the next one.
        let elapsed = start.elapsed();
        assert!(
            elapsed >= expected && elapsed <= expected + Duration::from_millis(1),
            "{elapsed:?} vs {expected:?}"
        );
        assert!(expected >= Duration::from_millis(20) && expected <= Duration::from_millis(50));
    }
}

#[tokio::test(start_paused = true)]
async fn full_stack_turns_hangs_into_bounded_timeouts() {
    let hanging = faulty(FaultConfig::new(1).hang_rate(1.0));
    let stack = LayerStack::new()
        .timeout(Duration::from_millis(200))
        .retry(quick_policy(3))
        .circuit_breaker(
            BreakerConfig::default()
                .failure_threshold(3)
                .cool_down(Duration::from_secs(60)),
        )
        .jitter_seed(4);
    let p = stack.build(hanging).unwrap();
    let start = Instant::now();
    let err = p.wrap(b"share", &ctx(1, 1)).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    // Three attempts of 200 ms plus two short backoffs.
    assert!(
        start.elapsed() >= Duration::from_millis(600) && start.elapsed() < Duration::from_secs(1)
    );
    // Those three timeouts opened the circuit: the next call fails at once.
    let start = Instant::now();
    let err = p.wrap(b"share", &ctx(1, 1)).await.unwrap_err();
    assert!(matches!(err, Error::CircuitOpen { .. }), "{err}");
    assert_eq!(start.elapsed(), Duration::ZERO);
    let injector = p.get_ref().get_ref().get_ref().get_ref();
    assert_eq!(injector.stats().hangs, 3);
}

#[test]
fn stack_settings_are_validated_at_build_time() {
    for stack in [
        LayerStack::new().timeout(Duration::ZERO),
        LayerStack::new().max_concurrency(0),
        LayerStack::new().retry(RetryPolicy::default().max_attempts(0)),
        LayerStack::new().retry(
            RetryPolicy::default()
                .base_delay(Duration::from_secs(5))
                .max_delay(Duration::from_secs(1)),
        ),
        LayerStack::new().circuit_breaker(BreakerConfig::default().cool_down(Duration::ZERO)),
    ] {
        let err = stack.build(local()).unwrap_err();
        assert!(matches!(err, Error::Misconfigured { .. }), "{err}");
        assert_eq!(err.provider(), "local-it");
    }
}
