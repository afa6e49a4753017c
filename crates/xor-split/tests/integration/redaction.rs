//! Formatting a share, an error or a combined secret's container leaks no byte of a secret.

use proptest::prelude::*;
use xor_split::{Error, XorShare, combine_into, split};

proptest! {
    /// `Debug` of a share is a function of its length alone: shares of equal length with any
    /// contents print identically, so no byte (in any encoding) can be in the output.
    #[test]
    fn share_debug_depends_only_on_length(bytes in prop::collection::vec(any::<u8>(), 1..=256)) {
        let share = XorShare::from_bytes(&bytes).unwrap();
        let zeros = XorShare::from_bytes(&vec![0u8; bytes.len()]).unwrap();
        prop_assert_eq!(format!("{share:?}"), format!("{zeros:?}"));
        prop_assert_eq!(format!("{share:#?}"), format!("{zeros:#?}"));
        prop_assert_eq!(format!("{share:?}"), format!("XorShare {{ len: {}, .. }}", bytes.len()));
    }
}

/// A recognisable secret and its shares: neither the secret's bytes nor any share's bytes
/// appear, in decimal or hex, in the formatted shares or in the debug output of a `Vec` of them.
#[test]
fn formatted_shares_contain_no_share_bytes() {
    let secret = [0xDEu8, 0xAD, 0xBE, 0xEF, 0x13, 0x37, 0xC0, 0xDE];
    let shares = split(&secret, 3).unwrap();
    let printed = [format!("{shares:?}"), format!("{shares:#?}")];
    for text in &printed {
        assert!(text.contains("XorShare"));
        for share in &shares {
            // Any 2-byte window of a share, printed the ways a derived Debug or a hex dump
            // would, must not appear.
            for window in share.expose_secret().windows(2) {
                for needle in [
                    format!("{}, {}", window[0], window[1]),
                    format!("{:02x}{:02x}", window[0], window[1]),
                    format!("{:02X}{:02X}", window[0], window[1]),
                ] {
                    assert!(!text.contains(&needle), "{text} contains {needle}");
                }
            }
        }
        assert!(!text.to_lowercase().contains("deadbeef"));
    }
}

/// Errors carry counts, lengths and positions only: their `Display` and `Debug` are the same
/// whatever the shares contain.
#[test]
fn errors_do_not_depend_on_share_contents() {
    let render = |fill: u8| {
        let a = vec![fill; 4];
        let b = vec![fill; 5];
        let mut out = [0u8; 4];
        let error = combine_into(&[&a, &b], &mut out).unwrap_err();
        assert!(matches!(error, Error::ShareLengthMismatch { .. }));
        (error.to_string(), format!("{error:?}"))
    };
    assert_eq!(render(0x00), render(0xFF));
    assert_eq!(render(0x00), render(0x5A));
}
