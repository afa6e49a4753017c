//! The AWS KMS encryption context a share is wrapped under.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::context::WrapContext;

/// Encryption-context key holding the vault id.
pub(crate) const VAULT_KEY: &str = "mpc-vault:vault";
/// Encryption-context key holding the secret path.
pub(crate) const PATH_KEY: &str = "mpc-vault:path";
/// Encryption-context key holding the secret version, in decimal.
pub(crate) const VERSION_KEY: &str = "mpc-vault:version";
/// Encryption-context key holding the share index, in decimal (0 for a whole DEK).
pub(crate) const SHARE_KEY: &str = "mpc-vault:share";
/// Encryption-context key holding the custody-mode label.
pub(crate) const MODE_KEY: &str = "mpc-vault:mode";
/// Encryption-context key holding the lowercase hex SHA-256 of
/// [`WrapContext::canonical_bytes`].
pub(crate) const DIGEST_KEY: &str = "mpc-vault:context-sha256";

/// The encryption context for `context`.
///
/// KMS binds the whole map as additional authenticated data (it canonicalizes the pairs
/// itself), so every field must match on Decrypt. The readable fields let key policies and
/// CloudTrail see which vault and secret a call is for; the digest of the canonical encoding
/// binds the exact bytes every other provider binds, domain tag and layout version included,
/// so a future change of that encoding can never make two contexts collide here either.
pub(crate) fn encryption_context(context: &WrapContext) -> HashMap<String, String> {
    let digest = Sha256::digest(context.canonical_bytes());
    let mut hex = String::with_capacity(2 * digest.len());
    for byte in digest {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        // The context is public, so table lookups indexed by its digest leak nothing.
        hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
        hex.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    HashMap::from([
        (VAULT_KEY.to_owned(), context.vault_id().to_owned()),
        (PATH_KEY.to_owned(), context.secret_path().to_owned()),
        (VERSION_KEY.to_owned(), context.version().to_string()),
        (SHARE_KEY.to_owned(), context.share_index().to_string()),
        (MODE_KEY.to_owned(), context.custody_mode().to_owned()),
        (DIGEST_KEY.to_owned(), hex),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_digest() {
        let ctx = WrapContext::new("vault-1", "db/password", 7, 2, "shamir-2-of-3").unwrap();
        let map = encryption_context(&ctx);
        assert_eq!(map.len(), 6);
        assert_eq!(map[VAULT_KEY], "vault-1");
        assert_eq!(map[PATH_KEY], "db/password");
        assert_eq!(map[VERSION_KEY], "7");
        assert_eq!(map[SHARE_KEY], "2");
        assert_eq!(map[MODE_KEY], "shamir-2-of-3");
        let expected: String = Sha256::digest(ctx.canonical_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(map[DIGEST_KEY], expected);
        assert_eq!(expected.len(), 64);
    }

    #[test]
    fn every_field_changes_the_map() {
        let base = WrapContext::new("v", "p", 1, 1, "m").unwrap();
        let others = [
            WrapContext::new("w", "p", 1, 1, "m").unwrap(),
            WrapContext::new("v", "q", 1, 1, "m").unwrap(),
            WrapContext::new("v", "p", 2, 1, "m").unwrap(),
            base.with_share_index(0),
            WrapContext::new("v", "p", 1, 1, "n").unwrap(),
        ];
        let a = encryption_context(&base);
        for other in &others {
            let b = encryption_context(other);
            assert_ne!(a, b);
            assert_ne!(a[DIGEST_KEY], b[DIGEST_KEY]);
        }
    }
}
