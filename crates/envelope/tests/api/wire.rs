//! The wire format: layout, version and algorithm checks, and length bounds.

use envelope::{Envelope, Error, MAX_PLAINTEXT_LEN, seal};

use crate::util::{context, dek};

/// A syntactically valid header declaring `len` plaintext bytes, with no body.
fn header(len: u32) -> Vec<u8> {
    let mut out = b"MPVE\x01\x01".to_vec();
    out.extend_from_slice(&[0x11; 32]);
    out.extend_from_slice(&[0x22; 32]);
    out.extend_from_slice(&len.to_be_bytes());
    out
}

#[test]
fn layout_matches_the_documented_table() {
    let plaintext = b"layout check";
    let bytes = seal(&dek(), &context(), plaintext).unwrap().to_bytes();
    assert_eq!(bytes.len(), 74 + plaintext.len() + 16);
    assert_eq!(&bytes[0..4], b"MPVE");
    assert_eq!(bytes[4], 1, "format version");
    assert_eq!(bytes[5], 1, "algorithm id");
    assert_eq!(
        bytes[70..74],
        u32::try_from(plaintext.len()).unwrap().to_be_bytes()
    );
    // GCM is a stream mode: the ciphertext is the plaintext's length, never the plaintext.
    assert_ne!(&bytes[74..74 + plaintext.len()], plaintext);
}

#[test]
fn a_minimal_envelope_parses_and_reserialises_exactly() {
    let mut bytes = header(0);
    bytes.extend_from_slice(&[0x33; 16]);
    assert_eq!(bytes.len(), Envelope::OVERHEAD);
    let envelope = Envelope::from_bytes(&bytes).unwrap();
    assert_eq!(envelope.plaintext_len(), 0);
    assert_eq!(envelope.to_bytes(), bytes);
    // Parsing checks framing only: this envelope was never sealed and does not verify.
    assert_eq!(
        envelope.verify_key(&dek(), &context()),
        Err(Error::AuthenticationFailed)
    );
}

#[test]
fn wrong_magic_is_reported_as_such_even_when_short() {
    for input in [
        &b"X"[..],
        b"MX",
        b"MPV\0",
        b"mpve",
        b"PK\x03\x04rest",
        b"\0\0\0\0\x01\x01",
    ] {
        assert_eq!(
            Envelope::from_bytes(input),
            Err(Error::BadMagic),
            "{input:?}"
        );
    }
    // A prefix of the magic could still become an envelope: that is truncation.
    for input in [&b""[..], b"M", b"MP", b"MPV", b"MPVE"] {
        assert_eq!(
            Envelope::from_bytes(input),
            Err(Error::Truncated),
            "{input:?}"
        );
    }
}

#[test]
fn other_versions_and_algorithms_are_refused() {
    let valid = seal(&dek(), &context(), b"x").unwrap().to_bytes();
    for version in [0u8, 2, 0x7f, 0xff] {
        let mut bytes = valid.clone();
        bytes[4] = version;
        assert_eq!(
            Envelope::from_bytes(&bytes),
            Err(Error::UnsupportedVersion { version })
        );
    }
    for id in [0u8, 2, 0x7f, 0xff] {
        let mut bytes = valid.clone();
        bytes[5] = id;
        assert_eq!(
            Envelope::from_bytes(&bytes),
            Err(Error::UnsupportedAlgorithm { id })
        );
    }
    assert_eq!(
        Error::UnsupportedVersion { version: 2 }.to_string(),
        "unsupported envelope format version 2: this build reads version 1"
    );
}

#[test]
fn declared_lengths_are_bounded_before_anything_is_read() {
    let limit = u32::try_from(MAX_PLAINTEXT_LEN).unwrap();
    for declared in [limit + 1, u32::MAX] {
        assert_eq!(
            Envelope::from_bytes(&header(declared)),
            Err(Error::PlaintextTooLarge {
                len: usize::try_from(declared).unwrap(),
                max: MAX_PLAINTEXT_LEN
            })
        );
    }
    // At the limit the length is acceptable, and the missing body is what is reported.
    assert_eq!(Envelope::from_bytes(&header(limit)), Err(Error::Truncated));
    // A length one byte short of, or past, the body actually present.
    let sealed = seal(&dek(), &context(), b"abc").unwrap().to_bytes();
    let mut longer = sealed.clone();
    longer[73] = 4;
    assert_eq!(Envelope::from_bytes(&longer), Err(Error::Truncated));
    let mut shorter = sealed;
    shorter[73] = 2;
    assert_eq!(
        Envelope::from_bytes(&shorter),
        Err(Error::TrailingBytes { count: 1 })
    );
}

#[test]
fn envelopes_compare_and_clone_as_values() {
    let envelope = seal(&dek(), &context(), b"x").unwrap();
    let copy = envelope.clone();
    assert_eq!(copy, envelope);
    assert_eq!(Envelope::from_bytes(&copy.to_bytes()).unwrap(), envelope);
}
