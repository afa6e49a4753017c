//! Secret hygiene visible from outside: nothing secret in `Debug`, zeroizing types where the
//! secret comes back, and wiping on drop.

use gf256_shamir::{
    Combiner, Error, FastRng, Share, ShareRef, Splitter, Threshold, combine, split,
};
use zeroize::{ZeroizeOnDrop, Zeroizing};

/// Every spelling of every byte of `secret` that a formatter could produce.
fn assert_no_leak(text: &str, secret: &[u8]) {
    let lower = text.to_lowercase();
    for window in secret.windows(2) {
        let hex_pair = format!("{:02x}{:02x}", window[0], window[1]);
        assert!(!lower.contains(&hex_pair), "{text:?} leaks {hex_pair}");
        let dec_pair = format!("{}, {}", window[0], window[1]);
        assert!(!text.contains(&dec_pair), "{text:?} leaks {dec_pair}");
    }
}

#[test]
fn debug_output_contains_no_secret_or_share_bytes() {
    // Bytes chosen so that pairs of them cannot occur in the fixed text of the formats.
    let secret: Vec<u8> = (0..32u8).map(|i| 0x90 + (i * 7) % 0x60).collect();
    let shares = split(&secret, 2, 3).unwrap();
    let encoded = shares[0].to_bytes();
    let view = ShareRef::from_bytes(&encoded).unwrap();
    let texts = [
        format!("{:?}", shares),
        format!("{:#?}", shares[1]),
        format!("{view:?}"),
        format!("{:?}", FastRng::new().unwrap()),
        format!(
            "{:?}",
            Splitter::new(Threshold::try_from(2u8).unwrap(), 3).unwrap()
        ),
        format!("{:?}", Combiner::new(Threshold::try_from(2u8).unwrap())),
        format!("{:?}", combine(&shares[..1], 2).unwrap_err()),
    ];
    for text in &texts {
        assert_no_leak(text, &secret);
        for share in &shares {
            assert_no_leak(text, share.expose_secret());
        }
    }
    assert!(texts[1].contains("redacted"));
}

#[test]
fn errors_name_only_public_facts() {
    let a = split(b"0123456789", 2, 2).unwrap();
    let b = split(b"abc", 2, 2).unwrap();
    let errors = [
        combine(&[&a[0], &b[0]], 2).unwrap_err(),
        combine(&[&a[0], &a[0]], 2).unwrap_err(),
        combine(&a[..1], 2).unwrap_err(),
    ];
    for error in errors {
        let text = format!("{error} {error:?}");
        for share in a.iter().chain(&b) {
            assert_no_leak(&text, share.expose_secret());
        }
        assert!(std::error::Error::source(&error).is_none());
    }
    assert!(matches!(
        Share::from_bytes(&[0]).unwrap_err(),
        Error::ShareTooShort { len: 1 }
    ));
}

#[test]
fn secret_bearing_types_are_zeroizing() {
    fn wipes_on_drop<T: ZeroizeOnDrop>() {}
    wipes_on_drop::<Share>();
    wipes_on_drop::<FastRng>();
    let shares = split(b"key", 2, 2).unwrap();
    let secret: Zeroizing<Vec<u8>> = combine(&shares, 2).unwrap();
    let encoded: Zeroizing<Vec<u8>> = shares[0].to_bytes();
    let vault: Zeroizing<Vec<u8>> = shares[0].to_vault_bytes();
    assert_eq!(secret.as_slice(), b"key");
    assert_eq!(encoded.len(), 4);
    assert_eq!(vault.len(), 4);
}
