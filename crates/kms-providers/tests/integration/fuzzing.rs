//! The fuzz targets' checks, run on stable Rust over generated inputs: every valid encoding
//! the providers produce, every single-byte mutation and truncation of them, and a
//! deterministic pseudo-random sweep.

use kms_providers::fuzzing;
use kms_providers::{KeyProvider, LocalProvider};

use crate::support::ctx;

fn sweep(seed: u64, n: usize, max_len: usize, mut f: impl FnMut(&[u8])) {
    let mut state = seed;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        state
    };
    for _ in 0..n {
        let len = usize::try_from(next() >> 33).unwrap() % max_len;
        let data: Vec<u8> = (0..len).map(|_| next().to_be_bytes()[0]).collect();
        f(&data);
    }
}

#[tokio::test]
async fn wrapped_share_checks_hold_on_real_and_mutated_encodings() {
    let dir = tempfile::tempdir().unwrap();
    let p = LocalProvider::builder("fuzz")
        .key_dir(dir.path())
        .build()
        .unwrap();
    for len in [1usize, 32, 255] {
        let bytes = p.wrap(&vec![7; len], &ctx(1, 1)).await.unwrap().to_bytes();
        fuzzing::wrapped_share(&bytes);
        for i in 0..bytes.len() {
            for v in [0u8, 1, 0x7f, 0x80, 0xff] {
                let mut m = bytes.clone();
                m[i] = v;
                fuzzing::wrapped_share(&m);
            }
            fuzzing::wrapped_share(&bytes[..i]);
        }
    }
    sweep(1, 20_000, 128, fuzzing::wrapped_share);
    // Random bytes behind a valid prefix reach the deeper parser states.
    sweep(2, 20_000, 96, |tail| {
        let mut data = b"MVWS\x01\x01\x01".to_vec();
        data.extend_from_slice(tail);
        fuzzing::wrapped_share(&data);
    });
}

#[test]
fn context_encoding_is_injective_on_generated_inputs() {
    sweep(3, 50_000, 64, fuzzing::context_encoding);
    // Pairs that differ only by where a byte sits between adjacent fields.
    fuzzing::context_encoding(&[
        2, b'a', b'b', 1, b'c', 1, 1, 1, 1, 1, b'm', 1, b'a', 2, b'b', b'c', 1, 1, 1, 1, 1, b'm',
    ]);
}
