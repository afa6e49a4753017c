//! Constant time, checked by valgrind memcheck ("ctgrind").
//!
//! Memcheck tracks, bit by bit, whether each value is *defined*. Marking the secret and the
//! generator's output *undefined* turns its "conditional jump or move depends on uninitialised
//! value(s)" and "use of uninitialised value" reports into exactly the check we want: any
//! branch or memory address computed from a secret or share byte is reported, while XOR and
//! copies of undefined data are silent.
//!
//! Each `workload_*` test runs natively as an ordinary correctness test (the client requests
//! are no-ops outside valgrind). Each `valgrind_*` test re-executes this test binary under
//! `valgrind --error-exitcode=97`, selecting one workload, and asserts the outcome: a clean run
//! for the crate's split, combine, wire-form and formatting paths, and reported errors for the
//! negative control (a branch and a table index on a secret byte), which proves the harness
//! can fail. Outputs are marked defined again before the test compares them, so the test's own
//! comparisons are not reported.

use std::env;
use std::ffi::c_void;
use std::hint::black_box;
use std::process::Command;

use chacha20::ChaCha20Rng;
use core::convert::Infallible;
use crabgrind::memcheck::{MemState, mark_memory};
use crabgrind::valgrind::{RunningMode, count_errors, running_mode};
use rand_core::{Rng, SeedableRng, TryCryptoRng, TryRng};
use xor_split::{
    Error, XorShare, combine, combine_into, split, split_into_with_rng, split_with_rng,
};

/// Set for the child process by the `valgrind_*` tests: the child must then really run under
/// valgrind and really be able to taint memory, or a harness that tainted nothing would pass
/// everything.
const UNDER_VALGRIND: &str = "XOR_SPLIT_CT_UNDER_VALGRIND";

/// The exit status valgrind uses when memcheck reported at least one error.
const ERROR_EXIT_CODE: i32 = 97;

fn expect_valgrind() -> bool {
    env::var_os(UNDER_VALGRIND).is_some()
}

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

/// Under the harness, checks that the child really runs under valgrind. (That tainting works is
/// what `valgrind_catches_the_negative_control` shows.)
fn check_harness() {
    if !expect_valgrind() {
        return;
    }
    assert!(
        matches!(running_mode(), RunningMode::Valgrind),
        "{UNDER_VALGRIND} is set but the process is not under valgrind"
    );
}

/// A seeded CSPRNG whose every output is marked undefined: the random shares are secrets too.
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

// ChaCha20 is a CSPRNG; tainting its output changes nothing about that.
impl TryCryptoRng for TaintingRng {}

/// A secret that is not a multiple of the vector width, so the loops' scalar tails run too.
fn tainted_secret() -> Vec<u8> {
    let mut secret = vec![0u8; 100];
    ChaCha20Rng::from_seed([9; 32]).fill_bytes(&mut secret);
    taint(&secret);
    secret
}

/// Compares two buffers after marking both defined (the comparison is the test's, not the
/// crate's).
fn assert_same(got: &[u8], want: &[u8]) {
    untaint(got);
    untaint(want);
    assert_eq!(got, want);
}

#[test]
fn workload_split_and_combine() {
    check_harness();
    let secret = tainted_secret();
    let mut rng = TaintingRng(ChaCha20Rng::from_seed([1; 32]));

    // Allocation-free split and combine, 3 shares.
    let mut flat = vec![0u8; secret.len() * 3];
    {
        let mut bufs: Vec<&mut [u8]> = flat.chunks_mut(secret.len()).collect();
        split_into_with_rng(&secret, &mut bufs, &mut rng).unwrap();
    }
    let views: Vec<&[u8]> = flat.chunks(secret.len()).collect();
    let mut out = vec![0u8; secret.len()];
    combine_into(&views, &mut out).unwrap();
    // Length errors branch on lengths only, whatever the (tainted) contents.
    assert_eq!(
        combine_into(&views[..2], &mut out[..99]),
        Err(Error::OutputLengthMismatch {
            expected: 100,
            found: 99
        })
    );

    // Allocating split and combine, with the caller's generator and with the OS generator
    // (whose output is not tainted, but the last share, masked secret, is).
    let shares = split_with_rng(&secret, 2, &mut rng).unwrap();
    let combined = combine(&shares).unwrap();
    let os_shares = split(&secret, 4).unwrap();
    let os_combined = combine(&os_shares).unwrap();

    // Wire form and formatting: copying out and back in, and `Debug`, touch no byte in a way
    // that depends on its value.
    let returned: Vec<XorShare> = shares
        .iter()
        .map(|s| XorShare::from_bytes(&s.to_bytes()).unwrap())
        .collect();
    let debug = format!("{returned:?}");
    let recombined = combine(&returned).unwrap();

    // Dropping the shares wipes tainted memory; writes are not checks, so this is silent too.
    drop(shares);
    drop(os_shares);
    drop(returned);

    assert_same(&out, &secret);
    assert_same(&combined, &secret);
    assert_same(&os_combined, &secret);
    assert_same(&recombined, &secret);
    assert_eq!(
        debug,
        "[XorShare { len: 100, .. }, XorShare { len: 100, .. }]"
    );
    if expect_valgrind() {
        assert_eq!(
            count_errors(),
            0,
            "memcheck reported secret-dependent behaviour"
        );
    }
}

/// A deliberately leaky combine: branches on, and indexes a table with, share bytes.
fn leaky_combine(a: &[u8], b: &[u8], out: &mut [u8]) {
    let table: [u8; 256] = core::array::from_fn(|i| u8::try_from(i).unwrap().rotate_left(1));
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        let mixed = x ^ y;
        *o = if black_box(mixed) == 0 {
            0
        } else {
            black_box(&table)[usize::from(mixed)].rotate_right(1)
        };
    }
}

#[test]
fn workload_negative_control() {
    check_harness();
    let secret = tainted_secret();
    let shares = split(&secret, 2).unwrap();
    let mut out = vec![0u8; secret.len()];
    leaky_combine(
        shares[0].expose_secret(),
        shares[1].expose_secret(),
        &mut out,
    );
    assert_same(&out, &secret);
}

fn run_under_valgrind(workload: &str) -> (Option<i32>, String) {
    let exe = env::current_exe().unwrap();
    let output = Command::new("valgrind")
        .args([
            "--tool=memcheck",
            &format!("--error-exitcode={ERROR_EXIT_CODE}"),
            "--leak-check=no",
            "--track-origins=yes",
            "--num-callers=30",
        ])
        .arg(&exe)
        .args([workload, "--exact", "--test-threads=1", "--nocapture"])
        .env(UNDER_VALGRIND, "1")
        .output()
        .unwrap_or_else(|error| {
            panic!(
                "cannot run valgrind ({error}): the constant-time test needs it; install it \
                 with scripts/setup/00-valgrind.sh (apt-get install valgrind)"
            )
        });
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), stderr)
}

#[test]
fn valgrind_split_and_combine_are_constant_time() {
    let (code, stderr) = run_under_valgrind("constant_time::workload_split_and_combine");
    assert_eq!(
        code,
        Some(0),
        "memcheck reported errors or the workload failed:\n{stderr}"
    );
    assert!(stderr.contains("ERROR SUMMARY: 0 errors"), "{stderr}");
}

#[test]
fn valgrind_catches_the_negative_control() {
    let (code, stderr) = run_under_valgrind("constant_time::workload_negative_control");
    assert_eq!(
        code,
        Some(ERROR_EXIT_CODE),
        "the leak was not reported:\n{stderr}"
    );
    assert!(
        stderr.contains("Conditional jump or move depends on uninitialised value"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Use of uninitialised value of size 8"),
        "the secret-indexed table read was not reported:\n{stderr}"
    );
}
