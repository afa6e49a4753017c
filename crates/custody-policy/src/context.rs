//! The one context type every envelope, wrapped share and client share is bound to.

use core::fmt;

use kms_providers::WrapContext;
use sha2::{Digest, Sha256};

use crate::Error;
use crate::client_share::ContextTag;
use crate::mode::{CustodyMode, SplitScheme};
use crate::slot::SlotIndex;

/// Domain-separation tag of the client-share context tag, so that this hash can never be
/// confused with any other use of SHA-256 over a context.
const CLIENT_TAG_DOMAIN: &[u8] = b"mpc-vault/custody-policy/client-share-tag/v1";

/// The identity of one secret version under one custody mode: vault id, path, version, secret
/// type and mode.
///
/// It is the single source of every binding the custodian makes:
///
/// - the envelope is sealed under [`envelope_context`](Self::envelope_context): all five
///   fields, with the mode as its full canonical string (slot layout included);
/// - each provider share is wrapped under [`wrap_context`](Self::wrap_context) for its slot:
///   vault id, path, version, the slot index as share index (0 for the whole DEK of a
///   `standard` vault) and the mode's label (its API name, or `{t}of{n}`);
/// - a client share carries a [`ContextTag`] derived from the envelope context and its slot.
///
/// So an envelope, a wrapped share or a client share moved to another vault, path, version,
/// slot or mode is rejected. Construction checks every field against the rules of both lower
/// layers (parse, don't validate): text fields are non-empty, without control characters, at
/// most 256 bytes for the vault id and 1024 bytes for the path and secret type.
///
/// A context is metadata, not a secret: `Debug` prints it.
///
/// # Example
///
/// ```
/// use custody_policy::{CustodyMode, SecretContext};
///
/// let ctx = SecretContext::new("vault-7", "payments/api-key", 3, "api_key", CustodyMode::two_of_three_multi_hsm())?;
/// assert_eq!(ctx.version(), 3);
/// assert_eq!(ctx.envelope_context().custody_mode(), "2of3_multi_hsm");
/// # Ok::<(), custody_policy::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SecretContext {
    mode: CustodyMode,
    envelope: envelope::Context,
    /// The wrap context of share index 0; each slot's is derived with `with_share_index`.
    wrap: WrapContext,
    /// The tag a client share of this context carries, for modes with a client slot.
    client_tag: Option<ContextTag>,
}

impl SecretContext {
    /// Checks the fields and builds the context.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidContext`] (with the lower layer's error as `source`) for an empty or
    /// over-long field, or a control character in the vault id, path or secret type.
    ///
    /// # Example
    ///
    /// ```
    /// use custody_policy::{CustodyMode, Error, SecretContext};
    ///
    /// let err = SecretContext::new("", "p", 1, "t", CustodyMode::standard()).unwrap_err();
    /// assert!(matches!(err, Error::InvalidContext { .. }));
    /// assert!(SecretContext::new("v", "a\nb", 1, "t", CustodyMode::standard()).is_err());
    /// ```
    pub fn new(
        vault_id: &str,
        path: &str,
        version: u64,
        secret_type: &str,
        mode: CustodyMode,
    ) -> Result<SecretContext, Error> {
        // The envelope does not refuse control characters in the secret type, but a context
        // is printed in logs and errors, where one would be ambiguous.
        if secret_type.chars().any(char::is_control) {
            return Err(Error::invalid_context(
                "the secret type contains a control character",
            ));
        }
        let envelope = envelope::Context::builder()
            .vault_id(vault_id)
            .path(path)
            .version(version)
            .secret_type(secret_type)
            .custody_mode(mode.to_string())
            .build()
            .map_err(Error::invalid_context)?;
        let wrap = WrapContext::new(vault_id, path, version, 0, &mode.wrap_label())
            .map_err(Error::invalid_context)?;
        let client_tag = mode
            .client_slot()
            .map(|slot| ContextTag::derive(CLIENT_TAG_DOMAIN, envelope.canonical_encoding(), slot));
        Ok(SecretContext {
            mode,
            envelope,
            wrap,
            client_tag,
        })
    }

    /// The vault that owns the secret.
    ///
    /// # Example
    ///
    /// ```
    /// # use custody_policy::{CustodyMode, SecretContext};
    /// let ctx = SecretContext::new("vault-1", "p", 1, "t", CustodyMode::standard())?;
    /// assert_eq!(ctx.vault_id(), "vault-1");
    /// # Ok::<(), custody_policy::Error>(())
    /// ```
    #[must_use]
    pub fn vault_id(&self) -> &str {
        self.envelope.vault_id()
    }

    /// The secret's path inside the vault.
    ///
    /// # Example
    ///
    /// ```
    /// # use custody_policy::{CustodyMode, SecretContext};
    /// let ctx = SecretContext::new("v", "db/password", 1, "t", CustodyMode::standard())?;
    /// assert_eq!(ctx.path(), "db/password");
    /// # Ok::<(), custody_policy::Error>(())
    /// ```
    #[must_use]
    pub fn path(&self) -> &str {
        self.envelope.path()
    }

    /// The secret version.
    ///
    /// # Example
    ///
    /// ```
    /// # use custody_policy::{CustodyMode, SecretContext};
    /// let ctx = SecretContext::new("v", "p", 9, "t", CustodyMode::standard())?;
    /// assert_eq!(ctx.version(), 9);
    /// # Ok::<(), custody_policy::Error>(())
    /// ```
    #[must_use]
    pub fn version(&self) -> u64 {
        self.envelope.version()
    }

    /// What kind of secret this is.
    ///
    /// # Example
    ///
    /// ```
    /// # use custody_policy::{CustodyMode, SecretContext};
    /// let ctx = SecretContext::new("v", "p", 1, "certificate", CustodyMode::standard())?;
    /// assert_eq!(ctx.secret_type(), "certificate");
    /// # Ok::<(), custody_policy::Error>(())
    /// ```
    #[must_use]
    pub fn secret_type(&self) -> &str {
        self.envelope.secret_type()
    }

    /// The vault's custody mode.
    ///
    /// # Example
    ///
    /// ```
    /// # use custody_policy::{CustodyMode, SecretContext};
    /// let ctx = SecretContext::new("v", "p", 1, "t", CustodyMode::two_of_two_client_custody())?;
    /// assert_eq!(ctx.mode(), &CustodyMode::two_of_two_client_custody());
    /// # Ok::<(), custody_policy::Error>(())
    /// ```
    #[must_use]
    pub fn mode(&self) -> &CustodyMode {
        &self.mode
    }

    /// The context the envelope is sealed under (the mode as its full canonical string).
    ///
    /// # Example
    ///
    /// ```
    /// # use custody_policy::{CustodyMode, SecretContext};
    /// let mode = CustodyMode::two_of_three_multi_hsm().with_providers(["gcp", "aws", "hsm"])?;
    /// let ctx = SecretContext::new("v", "p", 1, "t", mode)?;
    /// assert_eq!(ctx.envelope_context().custody_mode(), "2of3_multi_hsm:gcp,aws,hsm");
    /// # Ok::<(), custody_policy::Error>(())
    /// ```
    #[must_use]
    pub fn envelope_context(&self) -> &envelope::Context {
        &self.envelope
    }

    /// The context the share of `slot` is wrapped under: share index = slot index for a split
    /// DEK, 0 for the whole DEK of a `standard` vault.
    ///
    /// # Example
    ///
    /// ```
    /// # use custody_policy::{CustodyMode, SecretContext, SlotIndex};
    /// let ctx = SecretContext::new("v", "p", 1, "t", CustodyMode::two_of_three_multi_hsm())?;
    /// let wrap = ctx.wrap_context(SlotIndex::new(3).ok_or("range")?);
    /// assert_eq!((wrap.share_index(), wrap.custody_mode()), (3, "2of3_multi_hsm"));
    ///
    /// let standard = SecretContext::new("v", "p", 1, "t", CustodyMode::standard())?;
    /// assert_eq!(standard.wrap_context(SlotIndex::FIRST).share_index(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn wrap_context(&self, slot: SlotIndex) -> WrapContext {
        match self.mode.scheme() {
            SplitScheme::Whole => self.wrap.clone(),
            _ => self.wrap.with_share_index(slot.get()),
        }
    }

    /// The tag a client share of this secret version carries, if the mode has a client slot.
    /// Public: it is a truncated hash of public metadata.
    ///
    /// # Example
    ///
    /// ```
    /// # use custody_policy::{CustodyMode, SecretContext};
    /// let v1 = SecretContext::new("v", "p", 1, "t", CustodyMode::two_of_two_client_custody())?;
    /// let v2 = SecretContext::new("v", "p", 2, "t", CustodyMode::two_of_two_client_custody())?;
    /// assert_ne!(v1.client_share_tag(), v2.client_share_tag());
    /// let standard = SecretContext::new("v", "p", 1, "t", CustodyMode::standard())?;
    /// assert_eq!(standard.client_share_tag(), None);
    /// # Ok::<(), custody_policy::Error>(())
    /// ```
    #[must_use]
    pub fn client_share_tag(&self) -> Option<ContextTag> {
        self.client_tag
    }
}

impl fmt::Debug for SecretContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretContext")
            .field("vault_id", &self.vault_id())
            .field("path", &self.path())
            .field("version", &self.version())
            .field("secret_type", &self.secret_type())
            .field("mode", &format_args!("{}", self.mode))
            .finish()
    }
}

impl ContextTag {
    /// `SHA-256(len ‖ domain ‖ len ‖ canonical context ‖ slot)`, truncated. Lengths are 4-byte
    /// big-endian, as in the lower layers' canonical encodings.
    fn derive(domain: &[u8], canonical_context: &[u8], slot: SlotIndex) -> ContextTag {
        let mut hash = Sha256::new();
        for item in [domain, canonical_context] {
            // Both items are bounded far below 4 GiB (a constant; a context of five bounded
            // fields), so the length always fits.
            let len = u32::try_from(item.len()).unwrap_or(u32::MAX);
            hash.update(len.to_be_bytes());
            hash.update(item);
        }
        hash.update([slot.get()]);
        let digest = hash.finalize();
        let mut tag = [0u8; ContextTag::LEN];
        for (out, byte) in tag.iter_mut().zip(digest.iter()) {
            *out = *byte;
        }
        ContextTag::from_array(tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(vault: &str, path: &str, version: u64, ty: &str, mode: CustodyMode) -> SecretContext {
        SecretContext::new(vault, path, version, ty, mode).unwrap()
    }

    #[test]
    fn every_field_changes_the_client_tag() {
        let mode = CustodyMode::two_of_three_client_custody;
        let base = ctx("v", "p", 1, "t", mode()).client_share_tag().unwrap();
        let variants = [
            ctx("w", "p", 1, "t", mode()),
            ctx("v", "q", 1, "t", mode()),
            ctx("v", "p", 2, "t", mode()),
            ctx("v", "p", 1, "u", mode()),
            ctx(
                "v",
                "p",
                1,
                "t",
                mode().with_providers(["gcp", "hsm"]).unwrap(),
            ),
        ];
        for variant in variants {
            assert_ne!(variant.client_share_tag().unwrap(), base, "{variant:?}");
        }
    }

    #[test]
    fn tag_matches_the_documented_derivation() {
        let c = ctx("v", "p", 1, "t", CustodyMode::two_of_two_client_custody());
        let mut input = Vec::new();
        input.extend_from_slice(
            &u32::try_from(CLIENT_TAG_DOMAIN.len())
                .unwrap()
                .to_be_bytes(),
        );
        input.extend_from_slice(CLIENT_TAG_DOMAIN);
        let canonical = c.envelope_context().canonical_encoding();
        input.extend_from_slice(&u32::try_from(canonical.len()).unwrap().to_be_bytes());
        input.extend_from_slice(canonical);
        input.push(2);
        let digest = Sha256::digest(&input);
        assert_eq!(c.client_share_tag().unwrap().as_bytes(), &digest[..8]);
    }

    #[test]
    fn wrap_contexts_bind_slot_and_mode_label() {
        let general = CustodyMode::custom(
            2,
            [
                crate::SlotHolder::provider("a").unwrap(),
                crate::SlotHolder::provider("b").unwrap(),
                crate::SlotHolder::Client,
            ],
        )
        .unwrap();
        let c = ctx("v", "p", 5, "t", general);
        let slot2 = c.wrap_context(SlotIndex::new(2).unwrap());
        assert_eq!(slot2.custody_mode(), "2of3");
        assert_eq!(slot2.share_index(), 2);
        assert_eq!(slot2.version(), 5);
        assert_eq!(c.envelope_context().custody_mode(), "2of3:a,b,client");
    }

    #[test]
    fn control_characters_are_refused_everywhere() {
        for (vault, path, ty) in [("v\t", "p", "t"), ("v", "p\0", "t"), ("v", "p", "t\n")] {
            assert!(matches!(
                SecretContext::new(vault, path, 1, ty, CustodyMode::standard()),
                Err(Error::InvalidContext { .. })
            ));
        }
    }

    #[test]
    fn field_bounds_follow_the_stricter_layer() {
        let long_vault = "v".repeat(kms_providers::MAX_VAULT_ID_LEN + 1);
        assert!(SecretContext::new(&long_vault, "p", 1, "t", CustodyMode::standard()).is_err());
        let long_path = "p".repeat(envelope::Context::MAX_FIELD_LEN + 1);
        assert!(SecretContext::new("v", &long_path, 1, "t", CustodyMode::standard()).is_err());
        let max_path = "p".repeat(envelope::Context::MAX_FIELD_LEN);
        assert!(SecretContext::new("v", &max_path, 1, "t", CustodyMode::standard()).is_ok());
    }
}
