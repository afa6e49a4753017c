//! No secret reaches `Debug` or an error message.

use envelope::{Dek, Envelope, Error, open, seal};

use crate::util::context;

/// Every rendering of `bytes` that a careless `Debug` could produce.
fn renderings(bytes: &[u8]) -> Vec<String> {
    let mut out = vec![
        format!("{bytes:?}"),
        format!("{bytes:x?}"),
        format!("{bytes:X?}"),
        bytes.iter().map(|b| format!("{b:02x}")).collect(),
        bytes.iter().map(|b| format!("{b:02X}")).collect(),
    ];
    if let Ok(text) = std::str::from_utf8(bytes) {
        out.push(text.to_owned());
    }
    out
}

fn assert_leaks_nothing(shown: &str, secret: &[u8]) {
    for rendering in renderings(secret) {
        assert!(
            !shown.contains(&rendering),
            "{shown:?} contains {rendering:?}"
        );
    }
}

#[test]
fn dek_debug_is_redacted() {
    // 0xA5 = 165: neither the decimal nor the hex form of any byte may appear.
    let dek = Dek::from_bytes(&[0xA5; 32]).unwrap();
    for shown in [format!("{dek:?}"), format!("{dek:#?}")] {
        assert_eq!(shown, "Dek([REDACTED])");
        assert!(!shown.contains("165") && !shown.to_lowercase().contains("a5"));
    }
    let holder = Some(Box::new(dek));
    assert_eq!(format!("{holder:?}"), "Some(Dek([REDACTED]))");
}

#[test]
fn plaintext_debug_is_redacted() {
    let secret = b"TOP-SECRET-hunter2";
    let dek = Dek::generate().unwrap();
    let context = context();
    let plaintext = open(&dek, &context, &seal(&dek, &context, secret).unwrap()).unwrap();
    for shown in [format!("{plaintext:?}"), format!("{plaintext:#?}")] {
        assert_eq!(shown, "Plaintext([REDACTED])");
        assert_leaks_nothing(&shown, secret);
    }
    let result: Result<_, Error> = Ok(plaintext);
    assert_leaks_nothing(&format!("{result:?}"), secret);
}

#[test]
fn envelope_debug_shows_no_ciphertext() {
    let dek = Dek::generate().unwrap();
    let envelope = seal(&dek, &context(), b"0123456789").unwrap();
    let shown = format!("{envelope:?}");
    assert_eq!(
        shown,
        "Envelope { version: 1, algorithm: 1, plaintext_len: 10, .. }"
    );
    let bytes = envelope.to_bytes();
    assert_leaks_nothing(&shown, &bytes[74..]);
}

#[test]
fn failures_say_nothing_about_keys_or_plaintext() {
    let secret = b"TOP-SECRET-hunter2";
    let dek = Dek::from_bytes(&[0x3C; 32]).unwrap();
    let wrong = Dek::from_bytes(&[0xC3; 32]).unwrap();
    let context = context();
    let envelope = seal(&dek, &context, secret).unwrap();
    let mut tampered = envelope.to_bytes();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let tampered = Envelope::from_bytes(&tampered).unwrap();

    let failures = [
        open(&wrong, &context, &envelope).unwrap_err(),
        open(&dek, &context, &tampered).unwrap_err(),
        envelope.verify_key(&wrong, &context).unwrap_err(),
    ];
    for error in failures {
        // The same opaque error whatever failed.
        assert_eq!(error, Error::AuthenticationFailed);
        for shown in [
            error.to_string(),
            format!("{error:?}"),
            format!("{error:#?}"),
        ] {
            assert_leaks_nothing(&shown, secret);
            assert_leaks_nothing(&shown, dek.expose_secret());
            assert_leaks_nothing(&shown, wrong.expose_secret());
        }
        assert_eq!(error.to_string(), "authentication failed");
    }
}
