//! Replays the committed `xor_combine` fuzz corpus on stable Rust.
//!
//! Every file in `fuzz/corpus/xor_combine/` is fed to `xor_split::fuzzing::combine_shares`,
//! the same function the cargo-fuzz target calls, so the seeds (and any crash input added to
//! the corpus as a regression) run on every `cargo test`, without nightly or cargo-fuzz. The
//! `fuzzing` feature is switched on by this crate's self dev-dependency, so this test cannot
//! be compiled out.
//!
//! Seed files are named after the outcome they must reach (`ok-…`, `too-few-…`, …), and that
//! outcome is checked too, so a change to the input layout cannot quietly turn the seeds into
//! inputs that all stop at the first check. Files the fuzzer adds (named by their hash) are
//! only checked for invariants.

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use xor_split::Error;
use xor_split::fuzzing::combine_shares;

/// Whether a `combine_shares` outcome is the one a seed's name promises.
type Expect = fn(&Result<usize, Error>) -> bool;

/// File-name prefixes of the seeds and the outcome each must reach.
const OUTCOMES: [(&str, Expect); 7] = [
    ("ok-", |r| r.is_ok()),
    ("too-few-", |r| matches!(r, Err(Error::TooFewShares { .. }))),
    ("out-of-range-", |r| {
        matches!(r, Err(Error::ShareCountOutOfRange { .. }))
    }),
    ("empty-share-", |r| matches!(r, Err(Error::EmptyShare))),
    ("length-mismatch-", |r| {
        matches!(r, Err(Error::ShareLengthMismatch { .. }))
    }),
    ("output-length-", |r| {
        matches!(r, Err(Error::OutputLengthMismatch { .. }))
    }),
    // Reserved for crash inputs kept as regressions: any outcome, as long as nothing panics.
    ("regression-", |_| true),
];

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/xor_combine")
}

#[test]
fn every_corpus_file_passes_and_seeds_reach_their_outcome() {
    let dir = corpus_dir();
    let entries = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the corpus at {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();

    let mut failures = Vec::new();
    let mut seeds_per_outcome = [0usize; OUTCOMES.len()];
    for path in &files {
        let data = fs::read(path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        match catch_unwind(AssertUnwindSafe(|| combine_shares(&data))) {
            Err(_) => failures.push(format!("{name}: broke an invariant (panicked)")),
            Ok(result) => {
                if let Some(i) = OUTCOMES.iter().position(|(p, _)| name.starts_with(p)) {
                    seeds_per_outcome[i] += 1;
                    if !(OUTCOMES[i].1)(&result) {
                        failures.push(format!("{name}: unexpected outcome {result:?}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "corpus failures: {failures:#?}");

    // Every outcome except the optional regressions has seeds, so the fuzzer always starts from
    // inputs that reach each check, including a full successful round trip.
    for ((prefix, _), count) in OUTCOMES.iter().zip(seeds_per_outcome) {
        if *prefix != "regression-" {
            assert!(count > 0, "no `{prefix}` seed in {}", dir.display());
        }
    }
}
