//! Replays the committed fuzz corpus (fuzz/corpus/shamir_decode_combine/) through the same
//! function the fuzz target calls, on stable Rust, plus seeded mutations of it: the invariants
//! of `gf256_shamir::fuzzing::decode_and_combine` hold on every input.

use std::path::PathBuf;

use chacha20::rand_core::Rng;
use gf256_shamir::fuzzing::decode_and_combine;

use super::common::seeded;

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/shamir_decode_combine");
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the corpus at {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn corpus_replays_cleanly() {
    let files = corpus();
    assert!(
        files.len() >= 20,
        "the corpus has only {} files",
        files.len()
    );
    for (name, data) in &files {
        // A panic here names the file through the test output.
        eprintln!("replaying {name}");
        decode_and_combine(data);
    }
}

#[test]
fn seeded_mutations_of_the_corpus_hold_the_invariants() {
    let files = corpus();
    let mut rng = seeded(0xF022);
    for round in 0..400 {
        let (_, base) = &files[round % files.len()];
        let mut data = base.clone();
        let edits = 1 + (rng.next_u32() % 4) as usize;
        for _ in 0..edits {
            let choice = rng.next_u32();
            if data.is_empty() || choice.is_multiple_of(5) {
                data.push(choice as u8);
            } else {
                let at = (rng.next_u32() as usize) % data.len();
                match choice % 5 {
                    1 => data[at] ^= 1 << (choice % 8),
                    2 => data[at] = (choice >> 8) as u8,
                    3 => {
                        data.remove(at);
                    }
                    _ => data.truncate(at),
                }
            }
        }
        decode_and_combine(&data);
    }
    decode_and_combine(&[]);
    decode_and_combine(&[2]);
    decode_and_combine(&[2, 0]);
}
