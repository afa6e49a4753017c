//! Invariant checks driven by arbitrary bytes, for fuzz targets (feature `fuzzing`).
//!
//! Each function is the whole body of one fuzz target; this crate's tests run them over
//! generated inputs on stable Rust, so a crash input found by the fuzzer becomes a regression
//! test by adding it to those tests (or to the committed corpus).

use crate::context::WrapContext;
use crate::wrapped::WrappedShare;

/// Parses `data` as an encoded wrapped share and checks the parser's contract.
///
/// Invariants: parsing never panics; whatever parses re-encodes to exactly `data`
/// (the encoding is canonical: one wrapped share, one byte string); rebuilding it from its
/// accessors with [`WrappedShare::new`] gives an equal value; `Debug` never panics.
///
/// # Panics
///
/// Whenever an invariant fails: that is its purpose.
///
/// # Example
///
/// ```
/// kms_providers::fuzzing::wrapped_share(b"MVWS\x01\x01\x01\x00\x01k\x011\x0c");
/// ```
pub fn wrapped_share(data: &[u8]) {
    let Ok(w) = WrappedShare::from_bytes(data) else {
        return;
    };
    assert_eq!(w.to_bytes(), data, "parse-then-encode changed the bytes");
    let rebuilt = WrappedShare::new(
        w.kind(),
        w.key_id().clone(),
        w.key_version().clone(),
        w.algorithm(),
        w.nonce().to_vec(),
        w.blob().to_vec(),
    );
    assert_eq!(
        rebuilt.as_ref(),
        Ok(&w),
        "the accessors do not rebuild the same share"
    );
    let _ = format!("{w:?}");
}

/// Splits `data` into two candidate contexts and checks that the canonical encoding is
/// injective: two contexts encode to the same bytes exactly when they are equal.
///
/// Layout: five length-prefixed chunks per context (vault id, path, version bytes, share index
/// byte, mode), each a length byte then that many bytes (fewer if the input ends); text fields
/// are taken as lossy UTF-8. Inputs that do not make two valid contexts are ignored.
///
/// # Panics
///
/// Whenever the invariant fails.
///
/// # Example
///
/// ```
/// kms_providers::fuzzing::context_encoding(&[1, b'a', 1, b'b', 1, 7, 1, 1, 1, b'm',
///                                            1, b'a', 1, b'b', 1, 7, 1, 2, 1, b'm']);
/// ```
pub fn context_encoding(data: &[u8]) {
    let mut rest = data;
    let mut next = || -> Vec<u8> {
        let Some((&len, tail)) = rest.split_first() else {
            return Vec::new();
        };
        let take = usize::from(len).min(tail.len());
        let (chunk, tail) = tail.split_at(take);
        rest = tail;
        chunk.to_vec()
    };
    let mut contexts = Vec::with_capacity(2);
    for _ in 0..2 {
        let vault = String::from_utf8_lossy(&next()).into_owned();
        let path = String::from_utf8_lossy(&next()).into_owned();
        let version = next()
            .iter()
            .take(8)
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        let index = next().first().copied().unwrap_or(0);
        let mode = String::from_utf8_lossy(&next()).into_owned();
        match WrapContext::new(&vault, &path, version, index, &mode) {
            Ok(c) => contexts.push(c),
            Err(_) => return,
        }
    }
    if let [a, b] = contexts.as_slice() {
        assert_eq!(
            a == b,
            a.canonical_bytes() == b.canonical_bytes(),
            "canonical encoding is not injective: {a:?} / {b:?}"
        );
    }
}
