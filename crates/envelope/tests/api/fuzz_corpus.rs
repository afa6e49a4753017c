//! Replays the committed fuzz corpus through `envelope::fuzzing::parse_and_open` on stable Rust,
//! so every `cargo test` checks it even where cargo-fuzz cannot run.

use std::fs;
use std::path::Path;

use envelope::Error;
use envelope::fuzzing::parse_and_open;

const CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../fuzz/corpus/envelope_parse"
);

#[test]
fn every_corpus_entry_behaves_as_its_name_says() {
    let dir = Path::new(CORPUS);
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read the corpus at {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    entries.sort();
    let (mut valid, mut auth, mut reject, mut other) = (0, 0, 0, 0);
    for path in &entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let data = fs::read(path).unwrap();
        // Seeds carry their expected outcome in their name; files the fuzzer adds (named by
        // hash) only have to be handled without a panic, which `parse_and_open` asserts.
        let outcome = parse_and_open(&data);
        if name.starts_with("valid-") {
            assert_eq!(outcome, Ok(data.len() - 90), "{name}");
            valid += 1;
        } else if name.starts_with("auth-") {
            assert_eq!(outcome, Err(Error::AuthenticationFailed), "{name}");
            auth += 1;
        } else if name.starts_with("reject-") {
            let err = outcome.unwrap_err();
            assert_ne!(err, Error::AuthenticationFailed, "{name} parsed");
            reject += 1;
        } else {
            other += 1;
        }
    }
    assert!(
        valid >= 4 && auth >= 6 && reject >= 8,
        "seed corpus is incomplete"
    );
    assert_eq!(valid + auth + reject + other, entries.len());
}
