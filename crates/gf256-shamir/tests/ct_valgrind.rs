//! Constant time, checked by valgrind memcheck ("ctgrind").
//!
//! Memcheck tracks, bit by bit, whether each value is *defined*. Marking the secret, the shares
//! and the random coefficients *undefined* turns its "conditional jump depends on uninitialised
//! value" and "use of uninitialised value" reports into exactly the check we want: any branch
//! or memory address computed from secret data is reported. Arithmetic on undefined data is
//! silent, so constant-time code runs clean.
//!
//! Each `workload_*` test below runs natively as an ordinary correctness test (the client
//! requests are no-ops outside valgrind). Each `valgrind_*` test re-executes this test binary
//! under `valgrind --error-exitcode=97`, selecting one workload, and asserts the outcome:
//! a clean run for every backend valgrind can execute (soft, ssse3, avx2; valgrind implements
//! neither GFNI nor AVX-512, which `ct_dudect.rs` covers instead), and reported errors for the
//! two negative controls, a table-indexed multiply and a branching one, which prove the harness
//! can fail.
//!
//! Outputs are marked defined again before they are compared, so the comparisons in the test
//! itself are not reported. Share comparisons run on tainted data too; their result bit becomes
//! public when converted to `bool`, and only `subtle::Choice`'s debug-build assertion on that bit
//! is suppressed (see `SUPPRESSIONS`). The one-bit outcome of the surplus-share consistency
//! check is public by design (a combine either fails or not) and is taken in a plain `if`, so
//! the workloads give combine exactly `threshold` shares.

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

use std::env;
use std::ffi::c_void;
use std::process::Command;

use chacha20::ChaCha20Rng;
use chacha20::rand_core::{Rng, SeedableRng};
use core::convert::Infallible;
use crabgrind::memcheck::{MemState, mark_memory};
use crabgrind::valgrind::{count_errors, running_mode};
use gf256_shamir::{Backend, Combiner, Share, ShareIndex, ShareRef, Splitter, Threshold, split};
use rand_core::{TryCryptoRng, TryRng};
use subtle::ConstantTimeEq;

/// Set by the `valgrind_*` tests for the child process, which must then really be under
/// valgrind and really be able to taint memory: a harness that silently tainted nothing would
/// pass everything.
const UNDER_VALGRIND: &str = "GF256_CT_UNDER_VALGRIND";

/// The exit status valgrind uses when memcheck reported at least one error.
const ERROR_EXIT_CODE: i32 = 97;

fn expect_valgrind() -> bool {
    env::var_os(UNDER_VALGRIND).is_some()
}

/// Marks `bytes` with `state` for memcheck; under the harness, insists that it worked.
fn mark(bytes: &[u8], state: MemState) {
    let result = mark_memory(bytes.as_ptr().cast::<c_void>(), bytes.len(), state);
    if expect_valgrind() {
        assert!(result.is_ok(), "memcheck refused the client request");
    }
}

fn taint(bytes: &[u8]) {
    mark(bytes, MemState::Undefined);
}

fn untaint(bytes: &[u8]) {
    mark(bytes, MemState::Defined);
}

/// A secret-derived byte made public for the test's own comparison: it goes through memory that
/// is marked defined, and `black_box(&mut …)` makes the compiler read it back from there
/// rather than reuse the (still undefined) register copy, which optimized builds would do.
fn declassify(byte: u8) -> u8 {
    let mut cell = [byte];
    untaint(&cell);
    std::hint::black_box(&mut cell);
    cell[0]
}

/// A seeded CSPRNG whose every output is marked undefined: the polynomial coefficients are
/// secrets too.
struct TaintingRng(ChaCha20Rng);

impl TryRng for TaintingRng {
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
        self.0.fill_bytes(dst);
        taint(dst);
        Ok(())
    }
}

impl TryCryptoRng for TaintingRng {}

/// Deterministic, defined test bytes.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut out = vec![0u8; len];
    rng.fill_bytes(&mut out);
    out
}

/// Split, combine, recover (owned and `_into` forms), the share codecs and share equality,
/// on tainted data, with one backend.
fn workload(backend: Backend) {
    if expect_valgrind() {
        assert!(
            running_mode().is_valgrind(),
            "expected to run under valgrind"
        );
    }
    let mut rng = TaintingRng(ChaCha20Rng::seed_from_u64(0x5EED));
    // (threshold, shares): the common shapes, and shapes that need several kernel calls
    // (more than 8 coefficients, more than 8 output rows).
    let shapes = [(2u8, 3u8), (3, 5), (2, 2), (10, 12)];
    // Lengths around the vector widths, the small/large scratch switch, and the chunking.
    let lengths = [1usize, 5, 16, 31, 32, 33, 64, 100, 700, 2000];
    for (t, n) in shapes {
        let threshold = Threshold::try_from(t).unwrap();
        let splitter = Splitter::new(threshold, n)
            .unwrap()
            .with_backend(backend)
            .unwrap();
        let combiner = Combiner::new(threshold).with_backend(backend).unwrap();
        for len in lengths {
            if t == 10 && len > 100 {
                continue; // Large shapes on short secrets keep the valgrind run short.
            }
            let secret = bytes(u64::from(t) << 32 | len as u64, len);
            let expected = secret.clone();
            taint(&secret);

            let shares = splitter.split_with_rng(&secret, &mut rng).unwrap();
            for share in &shares {
                taint(share.expose_secret());
            }

            // Combine from the last `t` shares.
            let basis = &shares[shares.len() - usize::from(t)..];
            let recovered = combiner.combine(basis).unwrap();
            untaint(&recovered);
            assert_eq!(
                recovered.as_slice(),
                expected.as_slice(),
                "{backend} {t}/{n} len {len}"
            );

            // Recover the first share from the last `t`.
            let index = shares[0].index();
            let repaired = combiner.recover_share(basis, index).unwrap();
            assert_eq!(declassify(repaired.ct_eq(&shares[0]).unwrap_u8()), 1);

            // The allocation-free forms, through the codecs.
            let encoded: Vec<_> = basis.iter().map(Share::to_bytes).collect();
            let vault: Vec<_> = basis.iter().map(Share::to_vault_bytes).collect();
            let mut views: Vec<ShareRef<'_>> = encoded
                .iter()
                .map(|bytes| ShareRef::from_bytes(bytes).unwrap())
                .collect();
            views.rotate_left(1);
            let mut out = vec![0u8; len];
            combiner.combine_into(&views, &mut out).unwrap();
            untaint(&out);
            assert_eq!(out, expected);
            let views: Vec<ShareRef<'_>> = vault
                .iter()
                .map(|bytes| ShareRef::from_vault_bytes(bytes).unwrap())
                .collect();
            combiner
                .recover_share_into(&views, index, &mut out)
                .unwrap();
            let first = shares[0].expose_secret().to_vec();
            untaint(&out);
            untaint(&first);
            assert_eq!(out, first);

            let mut buffers = vec![vec![0u8; len]; usize::from(n)];
            let mut outputs: Vec<&mut [u8]> = buffers.iter_mut().map(Vec::as_mut_slice).collect();
            splitter
                .split_into_with_rng(&secret, &mut outputs, &mut rng)
                .unwrap();
            let views: Vec<ShareRef<'_>> = splitter
                .indices()
                .iter()
                .zip(&buffers)
                .map(|(x, y)| ShareRef::new(*x, y).unwrap())
                .take(usize::from(t))
                .collect();
            combiner.combine_into(&views, &mut out).unwrap();
            untaint(&out);
            assert_eq!(out, expected);
        }
    }

    // The default generator (this thread's FastRng) and the one-call API, on a tainted secret.
    let secret = bytes(99, 32);
    taint(&secret);
    let shares = split(&secret, 2, 3).unwrap();
    let x3 = ShareIndex::try_from(3u8).unwrap();
    let combiner = Combiner::new(Threshold::try_from(2u8).unwrap())
        .with_backend(backend)
        .unwrap();
    let repaired = combiner.recover_share(&shares[..2], x3).unwrap();
    assert_eq!(declassify(repaired.ct_eq(&shares[2]).unwrap_u8()), 1);

    if expect_valgrind() {
        assert_eq!(
            count_errors(),
            0,
            "memcheck reported secret-dependent behaviour"
        );
    }
}

#[test]
fn workload_soft() {
    workload(Backend::Soft);
}

#[test]
#[cfg(not(gf256_backend = "soft"))]
fn workload_ssse3() {
    workload(Backend::Ssse3);
}

#[test]
#[cfg(not(gf256_backend = "soft"))]
fn workload_avx2() {
    workload(Backend::Avx2);
}

/// The classic log/exp-table multiply: fast, and leaks through the cache because the table
/// index is a secret byte. Zero is handled with masks so that only the indexing leaks.
fn table_mul(a: u8, b: u8) -> u8 {
    static TABLES: std::sync::OnceLock<([u8; 512], [u8; 256])> = std::sync::OnceLock::new();
    let (exp, log) = TABLES.get_or_init(|| {
        let (mut exp, mut log) = ([0u8; 512], [0u8; 256]);
        let mut value = 1u8;
        for i in 0..255 {
            exp[i] = value;
            exp[i + 255] = value;
            log[usize::from(value)] = i as u8;
            value = slow_mul(value, 3);
        }
        (exp, log)
    });
    let product = exp[usize::from(log[usize::from(a)]) + usize::from(log[usize::from(b)])];
    let nonzero = 0u8.wrapping_sub(u8::from(a != 0) & u8::from(b != 0));
    product & nonzero
}

/// Shift-and-add multiplication that branches on the bits of `b` and stops early.
///
/// The conditional step is a call with a side effect (`black_box`), which the optimizer can
/// neither inline away nor turn into a conditional move, so the branch survives every
/// optimization level and the negative control stays a real one.
fn branching_mul(a: u8, mut b: u8) -> u8 {
    #[inline(never)]
    fn add(product: u8, a: u8) -> u8 {
        std::hint::black_box(product ^ a)
    }
    let mut a = a;
    let mut product = 0u8;
    while b != 0 {
        if b & 1 == 1 {
            product = add(product, a);
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

/// A reference multiply for checking the negative controls natively.
fn slow_mul(a: u8, b: u8) -> u8 {
    (0..8).fold(0u8, |acc, bit| {
        let term = if (b >> bit) & 1 == 1 {
            (0..bit).fold(a, |v, _| {
                if v & 0x80 != 0 {
                    (v << 1) ^ 0x1B
                } else {
                    v << 1
                }
            })
        } else {
            0
        };
        acc ^ term
    })
}

/// Multiplies a tainted secret by public scalars with a variable-time multiply, as a broken
/// backend would, and (under valgrind) insists that memcheck noticed.
fn negative_workload(mul: fn(u8, u8) -> u8) {
    if expect_valgrind() {
        assert!(
            running_mode().is_valgrind(),
            "expected to run under valgrind"
        );
    }
    let secret = bytes(7, 64);
    let expected: Vec<u8> = secret.iter().map(|&s| slow_mul(s, 0x53)).collect();
    taint(&secret);
    let products: Vec<u8> = secret.iter().map(|&s| mul(0x53, s)).collect();
    untaint(&products);
    assert_eq!(products, expected);
    if expect_valgrind() {
        let errors = count_errors();
        println!("negative control: memcheck reported {errors} error(s)");
        assert!(errors > 0, "the harness missed a variable-time multiply");
    }
}

#[test]
fn workload_negative_table() {
    negative_workload(table_mul);
}

#[test]
fn workload_negative_branch() {
    negative_workload(branching_mul);
}

/// The one suppression: `subtle::Choice`'s constructor asserts, in debug builds only, that its
/// bit is 0 or 1, which branches on the (secret-derived) bit it wraps. Release builds have no
/// such branch. Only reports whose innermost frame is that constructor are suppressed, so the
/// comparison loops around it are still checked.
const SUPPRESSIONS: &str = "\
{
   subtle_choice_debug_assertion
   Memcheck:Cond
   fun:*subtle*Choice*From*from*
}
";

fn suppressions_file() -> &'static std::path::Path {
    static PATH: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let path = env::temp_dir().join(format!("gf256-ct-{}.supp", std::process::id()));
        std::fs::write(&path, SUPPRESSIONS).unwrap();
        path
    })
}

/// Re-executes this binary under valgrind memcheck, running only the test `workload`.
fn run_under_valgrind(workload: &str) -> (Option<i32>, String, String) {
    let exe = env::current_exe().unwrap();
    let output = Command::new("valgrind")
        .args([
            "--tool=memcheck",
            &format!("--error-exitcode={ERROR_EXIT_CODE}"),
            "--leak-check=no",
            "--track-origins=yes",
            "--num-callers=30",
        ])
        .arg(format!("--suppressions={}", suppressions_file().display()))
        .arg(&exe)
        .args([workload, "--exact", "--test-threads=1", "--nocapture"])
        .env(UNDER_VALGRIND, "1")
        .output();
    let output = match output {
        Ok(output) => output,
        Err(error) => panic!(
            "cannot run valgrind ({error}): the constant-time test needs it; install it with \
             scripts/setup/00-valgrind.sh (apt-get install valgrind)"
        ),
    };
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A backend's workload must run to completion under valgrind with no memcheck error.
fn assert_clean(backend: Backend, workload: &str) {
    assert!(
        backend.is_supported(),
        "this CPU lacks {backend}, so its constant-time check cannot run here"
    );
    let (code, stdout, stderr) = run_under_valgrind(workload);
    assert!(
        code == Some(0) && stdout.contains("1 passed"),
        "{workload} under valgrind: exit {code:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    assert!(
        stderr.contains("ERROR SUMMARY: 0 errors"),
        "{workload}: unexpected memcheck output\n{stderr}"
    );
}

/// A negative control must be reported, with the kind of error expected.
fn assert_reported(workload: &str, expected_report: &str) {
    let (code, stdout, stderr) = run_under_valgrind(workload);
    assert_eq!(
        code,
        Some(ERROR_EXIT_CODE),
        "{workload} was not reported by memcheck\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    assert!(
        stdout.contains("1 passed") && stdout.contains("negative control: memcheck reported"),
        "{workload} did not run to completion\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    assert!(
        stderr.contains(expected_report),
        "{workload}: expected \"{expected_report}\" in\n{stderr}"
    );
}

#[test]
fn valgrind_soft() {
    assert_clean(Backend::Soft, "workload_soft");
}

#[test]
#[cfg(not(gf256_backend = "soft"))]
fn valgrind_ssse3() {
    assert_clean(Backend::Ssse3, "workload_ssse3");
}

#[test]
#[cfg(not(gf256_backend = "soft"))]
fn valgrind_avx2() {
    assert_clean(Backend::Avx2, "workload_avx2");
}

/// With the SIMD backends compiled out, only `soft` exists to be checked; the SIMD backends
/// must then really be unavailable.
#[test]
#[cfg(gf256_backend = "soft")]
fn simd_backends_are_compiled_out() {
    for backend in [
        Backend::Ssse3,
        Backend::Avx2,
        Backend::Avx2Gfni,
        Backend::Avx512Gfni,
    ] {
        assert!(
            !backend.is_supported(),
            "{backend} is available in a soft-only build"
        );
    }
}

#[test]
fn valgrind_reports_table_indexed_multiply() {
    assert_reported(
        "workload_negative_table",
        "Use of uninitialised value of size 8",
    );
}

#[test]
fn valgrind_reports_branching_multiply() {
    assert_reported(
        "workload_negative_branch",
        "Conditional jump or move depends on uninitialised value(s)",
    );
}
