//! Writes the seed corpus of the `envelope_parse` fuzz target.
//!
//! ```sh
//! cargo run -p envelope --features fuzzing --example envelope_seed_corpus -- fuzz/corpus/envelope_parse
//! ```
//!
//! Each seed's name says what `envelope::fuzzing::parse_and_open` must do with it, and the
//! crate's tests (tests/api/fuzz_corpus.rs) hold it to that: `valid-*` opens, `auth-*` parses
//! but fails authentication, `reject-*` fails to parse. Salts come from a fixed-seed ChaCha20
//! generator, so running this again rewrites the same bytes.

// A command-line tool reports what it wrote on standard output.
#![allow(clippy::print_stdout)]

use std::error::Error as StdError;
use std::path::PathBuf;
use std::{env, fs};

use chacha20::ChaCha20Rng;
use envelope::fuzzing::{fuzz_context, fuzz_dek};
use envelope::rand_core::SeedableRng;
use envelope::{Context, Dek, seal_with_rng};

/// Flips one bit at `index`, which must be inside `bytes` (all call sites use header offsets or
/// offsets from the end of an envelope, which is at least 90 bytes long).
fn flip(mut bytes: Vec<u8>, index: usize) -> Result<Vec<u8>, Box<dyn StdError>> {
    let byte = bytes.get_mut(index).ok_or("offset outside the envelope")?;
    *byte ^= 0x01;
    Ok(bytes)
}

fn main() -> Result<(), Box<dyn StdError>> {
    let dir = PathBuf::from(
        env::args()
            .nth(1)
            .ok_or("usage: envelope_seed_corpus <dir>")?,
    );
    fs::create_dir_all(&dir)?;

    let mut rng = ChaCha20Rng::from_seed(*b"envelope_parse seed corpus v1 !!");
    let dek = fuzz_dek();
    let context = fuzz_context()?;
    let mut seal = |dek: &Dek, context: &Context, plaintext: &[u8]| {
        seal_with_rng(dek, context, plaintext, &mut rng).map(|e| e.to_bytes())
    };

    let short = seal(&dek, &context, b"hunter2")?;
    let block = seal(&dek, &context, b"exactly 16 bytes")?;
    let long: Vec<u8> = (0u8..=250).cycle().take(300).collect();
    let long = seal(&dek, &context, &long)?;
    let other_context = Context::builder()
        .vault_id("fuzz-vault")
        .path("fuzz/other")
        .version(1)
        .secret_type("opaque")
        .custody_mode("2of3_multi_hsm")
        .build()?;
    let other_dek = Dek::from_bytes(&[0x5a; Dek::LEN])?;
    let end = short.len();

    let mut too_large = short.clone();
    too_large.splice(70..74, u32::MAX.to_be_bytes());
    let mut trailing = short.clone();
    trailing.push(0);
    let mut version_2 = short.clone();
    version_2.splice(4..5, [2]);
    let mut algorithm_2 = short.clone();
    algorithm_2.splice(5..6, [2]);

    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("valid-empty", seal(&dek, &context, b"")?),
        ("valid-short", short.clone()),
        ("valid-block", block),
        ("valid-long", long),
        (
            "auth-wrong-context",
            seal(&dek, &other_context, b"hunter2")?,
        ),
        ("auth-wrong-dek", seal(&other_dek, &context, b"hunter2")?),
        ("auth-flipped-salt", flip(short.clone(), 6)?),
        ("auth-flipped-commitment", flip(short.clone(), 38)?),
        ("auth-flipped-ciphertext", flip(short.clone(), 74)?),
        ("auth-flipped-tag", flip(short.clone(), end - 1)?),
        ("reject-empty", Vec::new()),
        ("reject-bad-magic", flip(short.clone(), 0)?),
        ("reject-version-2", version_2),
        ("reject-algorithm-2", algorithm_2),
        (
            "reject-truncated-header",
            short.get(..40).ok_or("short")?.to_vec(),
        ),
        (
            "reject-truncated-tag",
            short.get(..end - 1).ok_or("short")?.to_vec(),
        ),
        ("reject-trailing-byte", trailing),
        ("reject-length-too-large", too_large),
    ];
    for (name, bytes) in &seeds {
        let path = dir.join(name);
        fs::write(&path, bytes)?;
        println!("{} ({} bytes)", path.display(), bytes.len());
    }
    Ok(())
}
