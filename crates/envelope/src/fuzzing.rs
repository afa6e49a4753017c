//! Entry points for fuzzing, compiled only with the `fuzzing` feature. Not part of the stable
//! API, and not for production builds.
//!
//! The fuzz target `fuzz/fuzz_targets/envelope_parse.rs` is one line calling
//! [`parse_and_open`]; this crate's tests replay the committed corpus
//! (`fuzz/corpus/envelope_parse/`) through the same function on stable Rust, so the corpus is
//! checked by every `cargo test` even where cargo-fuzz cannot run. The seeds are written by
//! `cargo run -p envelope --features fuzzing --example envelope_seed_corpus -- <dir>`.
//!
//! Every envelope is opened with [`fuzz_dek`] under [`fuzz_context`]; the valid seeds are
//! sealed with them, so mutations of a seed reach the commitment check, the GCM tag check and
//! decryption, not only the parser.

use crate::{Context, Dek, Envelope, Error, open};

/// The fixed DEK every fuzz input is opened with. Public test data, never a real key.
const FUZZ_DEK: [u8; Dek::LEN] = *b"mpc-vault envelope fuzzing DEK!!";

/// The DEK every fuzz input is opened with (a fixed, public test key).
///
/// # Example
///
/// ```
/// let dek = envelope::fuzzing::fuzz_dek();
/// assert_eq!(dek.expose_secret(), b"mpc-vault envelope fuzzing DEK!!");
/// ```
#[must_use]
pub fn fuzz_dek() -> Dek {
    Dek::from_array(&FUZZ_DEK)
}

/// The context every fuzz input is opened under.
///
/// # Errors
///
/// None in practice: the fields are fixed and valid. The `Result` is kept so that this
/// function, like everything else in the crate, has no panic path.
///
/// # Example
///
/// ```
/// let context = envelope::fuzzing::fuzz_context()?;
/// assert_eq!(context.path(), "fuzz/secret");
/// # Ok::<(), envelope::Error>(())
/// ```
pub fn fuzz_context() -> Result<Context, Error> {
    Context::builder()
        .vault_id("fuzz-vault")
        .path("fuzz/secret")
        .version(1)
        .secret_type("opaque")
        .custody_mode("2of3_multi_hsm")
        .build()
}

/// Parses `data` as an envelope and, if it parses, checks the parser's invariants and opens it
/// with [`fuzz_dek`] under [`fuzz_context`]. Returns the opened plaintext's length, or the
/// error from parsing or opening.
///
/// It never panics on its own; it asserts (and so panics, which is a finding) only if an
/// invariant breaks:
/// - an accepted input serialises back to exactly the same bytes, of
///   [`Envelope::encoded_len`] bytes;
/// - [`Envelope::verify_key`] and [`open`] agree: an envelope that opens also verifies, and
///   one that fails verification does not open;
/// - an opened plaintext is [`Envelope::plaintext_len`] bytes long;
/// - opening fails only with [`Error::AuthenticationFailed`].
///
/// # Errors
///
/// The parse error, or [`Error::AuthenticationFailed`] from opening.
///
/// # Panics
///
/// Only if one of the invariants above is broken, which is a bug for the fuzzer to report.
///
/// # Example
///
/// ```
/// use envelope::Error;
/// use envelope::fuzzing::parse_and_open;
///
/// assert_eq!(parse_and_open(b"MPVE"), Err(Error::Truncated));
/// assert_eq!(parse_and_open(b"not an envelope"), Err(Error::BadMagic));
/// ```
pub fn parse_and_open(data: &[u8]) -> Result<usize, Error> {
    let envelope = Envelope::from_bytes(data)?;
    assert_eq!(
        envelope.to_bytes(),
        data,
        "parse then serialise changed the bytes"
    );
    assert_eq!(envelope.encoded_len(), data.len(), "encoded_len is wrong");

    let dek = fuzz_dek();
    let context = fuzz_context()?;
    let verified = envelope.verify_key(&dek, &context);
    match open(&dek, &context, &envelope) {
        Ok(plaintext) => {
            assert_eq!(verified, Ok(()), "opened although the key did not verify");
            assert_eq!(
                plaintext.len(),
                envelope.plaintext_len(),
                "plaintext length"
            );
            Ok(plaintext.len())
        }
        Err(error) => {
            assert_eq!(error, Error::AuthenticationFailed, "open failed oddly");
            Err(error)
        }
    }
}
