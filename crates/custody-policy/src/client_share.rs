//! The client share: handed to the client once, never stored, brought back to open.

use core::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::context::SecretContext;
use crate::slot::SlotIndex;
use crate::{Error, base64};

/// The length of a share's bytes: a share of a 32-byte DEK is 32 bytes in both schemes.
pub(crate) const SHARE_LEN: usize = envelope::Dek::LEN;

/// A short public tag that names the secret version (and custody mode and slot) a client
/// share belongs to: the first 8 bytes of a SHA-256 over a domain tag, the canonical context
/// and the slot index. It is a hash of public metadata and reveals nothing secret; its only job
/// is to turn "a share of another secret" into a precise error instead of a failed decryption.
///
/// # Example
///
/// ```
/// use custody_policy::{CustodyMode, SecretContext};
///
/// let ctx = SecretContext::new("v", "p", 1, "t", CustodyMode::two_of_two_client_custody())?;
/// let tag = ctx.client_share_tag().ok_or("no client slot")?;
/// assert_eq!(tag.to_string().len(), 16); // hex
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContextTag([u8; ContextTag::LEN]);

impl ContextTag {
    /// The tag length in bytes: 8 (a 2^-64 chance that a foreign share carries the same tag).
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(custody_policy::ContextTag::LEN, 8);
    /// ```
    pub const LEN: usize = 8;

    pub(crate) fn from_array(bytes: [u8; ContextTag::LEN]) -> ContextTag {
        ContextTag(bytes)
    }

    /// The tag's bytes.
    ///
    /// # Example
    ///
    /// ```
    /// # use custody_policy::{CustodyMode, SecretContext};
    /// # let ctx = SecretContext::new("v", "p", 1, "t", CustodyMode::two_of_two_client_custody())?;
    /// let tag = ctx.client_share_tag().ok_or("no client slot")?;
    /// assert_eq!(tag.as_bytes().len(), 8);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; ContextTag::LEN] {
        &self.0
    }
}

impl fmt::Display for ContextTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ContextTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContextTag({self})")
    }
}

/// What is wrong with a malformed client share. Every defect is a fact about the public
/// framing (length, version, slot); none says anything about the share's secret bytes.
///
/// # Example
///
/// ```
/// use custody_policy::{ClientShare, ClientShareDefect, Error};
///
/// let err = ClientShare::from_base64("not base64!").unwrap_err();
/// assert!(matches!(err, Error::ClientShareMalformed { defect: ClientShareDefect::NotBase64 }));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientShareDefect {
    /// The text is not base64 in either alphabet (standard or URL-safe, padding optional).
    #[error("not base64: use the standard or URL-safe alphabet, with or without '=' padding")]
    NotBase64,
    /// The decoded bytes have the wrong length.
    #[error("{len} bytes long, a client share is {expected} bytes", expected = ClientShare::ENCODED_LEN)]
    Length {
        /// The decoded length.
        len: usize,
    },
    /// The format version byte is not one this build reads.
    #[error(
        "unsupported format version {version}: this build reads version {}",
        ClientShare::FORMAT_VERSION
    )]
    Version {
        /// The version found.
        version: u8,
    },
    /// The slot index is 0 or above [`MAX_SLOTS`](crate::MAX_SLOTS).
    #[error("slot index {index} is out of range")]
    SlotIndex {
        /// The index found.
        index: u8,
    },
    /// The share claims a slot that is not the mode's client slot.
    #[error("it claims slot {index}, but this custody mode's client slot is {client_slot}")]
    NotClientSlot {
        /// The slot the share claims.
        index: u8,
        /// The mode's client slot.
        client_slot: u8,
    },
}

/// The client's share of a DEK: handed out once by [`Custodian::seal`](crate::Custodian::seal),
/// never stored by the server, and brought back by the client to open the secret.
///
/// It is a secret: it is wiped when dropped, has no `Clone`, and its `Debug` shows only its
/// public slot and context tag. The share bytes are read through one greppable call,
/// [`expose_secret`](Self::expose_secret).
///
/// # Wire format (version 1)
///
/// 42 bytes, sent as base64 (56 characters, no padding needed). [`from_base64`](Self::from_base64)
/// accepts the standard and the URL-safe alphabet, with or without padding;
/// [`to_base64`](Self::to_base64) writes the standard one.
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 1 | format version, `0x01` |
/// | 1 | 1 | slot index (the Shamir x-coordinate), 1 to 16 |
/// | 2 | 8 | [`ContextTag`]: which secret version, mode and slot the share is for |
/// | 10 | 32 | the share (Shamir y-values, or the XOR share) |
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use custody_policy::{ClientShare, Custodian, CustodyMode, SecretContext};
/// use kms_providers::LocalProvider;
///
/// let keys = tempfile::tempdir()?;
/// let custodian = Custodian::builder()
///     .provider(LocalProvider::builder("gcp").key_dir(keys.path()).build()?)
///     .build()?;
/// let ctx = SecretContext::new("v", "p", 1, "password", CustodyMode::two_of_two_client_custody())?;
/// let (stored, client) = custodian.seal(&ctx, b"hunter2").await?.into_parts();
/// let client = client.ok_or("2of2 has a client share")?;
///
/// // Hand it out once, as text; read it back when the client returns it.
/// let text = client.to_base64();
/// assert_eq!(text.expose_secret().len(), 56);
/// let returned = ClientShare::from_base64(text.expose_secret())?;
/// assert_eq!(format!("{returned:?}"), format!("ClientShare {{ slot: 2, context_tag: {}, .. }}", returned.context_tag()));
/// let opened = custodian.open(&ctx, &stored, Some(&returned)).await?;
/// assert_eq!(opened.plaintext().expose_secret(), b"hunter2");
/// # Ok(()) }
/// ```
pub struct ClientShare {
    slot: SlotIndex,
    tag: ContextTag,
    /// Boxed so the share stays in one heap allocation for its whole life: moving a
    /// `ClientShare` moves a pointer, never the secret bytes.
    share: Box<[u8; SHARE_LEN]>,
}

impl ClientShare {
    /// The encoded length in bytes: 42.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(custody_policy::ClientShare::ENCODED_LEN, 42);
    /// ```
    pub const ENCODED_LEN: usize = 2 + ContextTag::LEN + SHARE_LEN;

    /// The format version this build writes and reads: 1.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(custody_policy::ClientShare::FORMAT_VERSION, 1);
    /// ```
    pub const FORMAT_VERSION: u8 = 1;

    /// A share for `slot` of the context that `tag` names.
    pub(crate) fn new(slot: SlotIndex, tag: ContextTag, share: &[u8; SHARE_LEN]) -> ClientShare {
        let mut boxed = Box::new([0u8; SHARE_LEN]);
        boxed.copy_from_slice(share);
        ClientShare {
            slot,
            tag,
            share: boxed,
        }
    }

    /// Reads a client share from its base64 text (standard or URL-safe alphabet, padding
    /// optional). Decoding is constant time in the share's bytes.
    ///
    /// This checks the framing only; whether the share belongs to a given secret version is
    /// checked by [`check_context`](Self::check_context), which
    /// [`Custodian::open`](crate::Custodian::open) calls first.
    ///
    /// # Errors
    ///
    /// [`Error::ClientShareMalformed`]: not base64, wrong length, unsupported version, or a
    /// slot index out of range.
    ///
    /// # Example
    ///
    /// ```
    /// use custody_policy::{ClientShare, ClientShareDefect, Error};
    ///
    /// let err = ClientShare::from_base64("AAAA").unwrap_err();
    /// assert!(matches!(err, Error::ClientShareMalformed { defect: ClientShareDefect::Length { len: 3 } }));
    /// ```
    pub fn from_base64(text: &str) -> Result<ClientShare, Error> {
        // Far longer than any version's encoding: refuse before decoding, so hostile input
        // costs nothing. The decoded length is what the error reports.
        const MAX_TEXT: usize = 4 * ClientShare::ENCODED_LEN;
        if text.len() > MAX_TEXT {
            return Err(malformed(ClientShareDefect::Length {
                len: text.len() / 4 * 3,
            }));
        }
        let bytes = base64::decode(text).ok_or(malformed(ClientShareDefect::NotBase64))?;
        ClientShare::from_bytes(&bytes)
    }

    /// The base64 text to hand to the client (standard alphabet), in a buffer wiped when
    /// dropped. Encoding is constant time in the share's bytes.
    ///
    /// # Example
    ///
    /// ```
    /// # fn hand_out(share: &custody_policy::ClientShare) {
    /// let text = share.to_base64();
    /// assert_eq!(text.expose_secret().len(), 56);
    /// assert_eq!(format!("{text:?}"), "EncodedClientShare([REDACTED])");
    /// # }
    /// ```
    #[must_use]
    pub fn to_base64(&self) -> EncodedClientShare {
        let bytes = self.to_bytes();
        EncodedClientShare(base64::encode(&bytes))
    }

    /// Reads a client share from its 42-byte binary form.
    ///
    /// # Errors
    ///
    /// [`Error::ClientShareMalformed`]: wrong length, unsupported version, or a slot index out
    /// of range.
    ///
    /// # Example
    ///
    /// ```
    /// use custody_policy::{ClientShare, ClientShareDefect, Error};
    ///
    /// let mut bytes = [0u8; ClientShare::ENCODED_LEN];
    /// bytes[0] = 2;
    /// let err = ClientShare::from_bytes(&bytes).unwrap_err();
    /// assert!(matches!(err, Error::ClientShareMalformed { defect: ClientShareDefect::Version { version: 2 } }));
    /// ```
    pub fn from_bytes(bytes: &[u8]) -> Result<ClientShare, Error> {
        let Some((&version, rest)) = bytes.split_first() else {
            return Err(malformed(ClientShareDefect::Length { len: 0 }));
        };
        if bytes.len() != ClientShare::ENCODED_LEN {
            return Err(malformed(ClientShareDefect::Length { len: bytes.len() }));
        }
        if version != ClientShare::FORMAT_VERSION {
            return Err(malformed(ClientShareDefect::Version { version }));
        }
        let Some((&index, rest)) = rest.split_first() else {
            return Err(malformed(ClientShareDefect::Length { len: bytes.len() }));
        };
        let slot =
            SlotIndex::new(index).ok_or(malformed(ClientShareDefect::SlotIndex { index }))?;
        let (tag, share) = rest
            .split_at_checked(ContextTag::LEN)
            .ok_or(malformed(ClientShareDefect::Length { len: bytes.len() }))?;
        let mut tag_bytes = [0u8; ContextTag::LEN];
        tag_bytes.copy_from_slice(tag);
        let share: &[u8; SHARE_LEN] = share
            .try_into()
            .map_err(|_| malformed(ClientShareDefect::Length { len: bytes.len() }))?;
        Ok(ClientShare::new(
            slot,
            ContextTag::from_array(tag_bytes),
            share,
        ))
    }

    /// The 42-byte binary form, in a buffer wiped when dropped. A copy of secret material,
    /// like [`expose_secret`](Self::expose_secret).
    ///
    /// # Example
    ///
    /// ```
    /// # fn show(share: &custody_policy::ClientShare) -> Result<(), custody_policy::Error> {
    /// use custody_policy::ClientShare;
    ///
    /// let bytes = share.to_bytes();
    /// assert_eq!(bytes.len(), ClientShare::ENCODED_LEN);
    /// assert_eq!(ClientShare::from_bytes(&bytes)?.slot(), share.slot());
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(ClientShare::ENCODED_LEN));
        out.push(ClientShare::FORMAT_VERSION);
        out.push(self.slot.get());
        out.extend_from_slice(self.tag.as_bytes());
        out.extend_from_slice(self.share.as_slice());
        out
    }

    /// The slot the share claims (its x-coordinate).
    ///
    /// # Example
    ///
    /// ```
    /// # fn show(share: &custody_policy::ClientShare, ctx: &custody_policy::SecretContext) {
    /// let is_client_slot = ctx.mode().client_slot() == Some(share.slot());
    /// # let _ = is_client_slot; }
    /// ```
    #[must_use]
    pub fn slot(&self) -> SlotIndex {
        self.slot
    }

    /// The public tag of the secret version the share was made for.
    ///
    /// # Example
    ///
    /// ```
    /// # fn show(share: &custody_policy::ClientShare, ctx: &custody_policy::SecretContext) {
    /// let same_version = ctx.client_share_tag() == Some(share.context_tag());
    /// # let _ = same_version; }
    /// ```
    #[must_use]
    pub fn context_tag(&self) -> ContextTag {
        self.tag
    }

    /// The share bytes (32). The only way to read them; keep each use short-lived.
    ///
    /// # Example
    ///
    /// ```
    /// # fn show(share: &custody_policy::ClientShare) {
    /// assert_eq!(share.expose_secret().len(), 32);
    /// # }
    /// ```
    #[must_use]
    pub fn expose_secret(&self) -> &[u8] {
        self.share.as_slice()
    }

    /// Checks that the share is the client share of `ctx`'s secret version: the mode has a
    /// client slot, the share claims it, and its context tag matches.
    ///
    /// # Errors
    ///
    /// [`Error::UnexpectedClientShare`] if the mode has no client slot;
    /// [`Error::ClientShareForeign`] if the tag names another secret version (or vault, path,
    /// type, mode); [`Error::ClientShareMalformed`] with
    /// [`ClientShareDefect::NotClientSlot`] if the tag matches but the slot does not (the
    /// slot byte was altered).
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use custody_policy::{Custodian, CustodyMode, Error, SecretContext};
    /// use kms_providers::LocalProvider;
    ///
    /// let keys = tempfile::tempdir()?;
    /// let custodian = Custodian::builder()
    ///     .provider(LocalProvider::builder("gcp").key_dir(keys.path()).build()?)
    ///     .build()?;
    /// let v1 = SecretContext::new("v", "p", 1, "t", CustodyMode::two_of_two_client_custody())?;
    /// let v2 = SecretContext::new("v", "p", 2, "t", CustodyMode::two_of_two_client_custody())?;
    /// let (_, client) = custodian.seal(&v1, b"secret").await?.into_parts();
    /// let client = client.ok_or("2of2 has a client share")?;
    /// assert!(client.check_context(&v1).is_ok());
    /// assert!(matches!(client.check_context(&v2), Err(Error::ClientShareForeign { .. })));
    /// # Ok(()) }
    /// ```
    pub fn check_context(&self, ctx: &SecretContext) -> Result<(), Error> {
        let (Some(client_slot), Some(expected)) =
            (ctx.mode().client_slot(), ctx.client_share_tag())
        else {
            return Err(Error::UnexpectedClientShare {
                mode: ctx.mode().clone(),
            });
        };
        if self.tag != expected {
            return Err(Error::ClientShareForeign {
                found: self.tag,
                expected,
            });
        }
        if self.slot != client_slot {
            return Err(malformed(ClientShareDefect::NotClientSlot {
                index: self.slot.get(),
                client_slot: client_slot.get(),
            }));
        }
        Ok(())
    }
}

impl Drop for ClientShare {
    fn drop(&mut self) {
        self.share.zeroize();
    }
}

impl ZeroizeOnDrop for ClientShare {}

/// Shows the public slot and context tag only, never the share.
impl fmt::Debug for ClientShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientShare")
            .field("slot", &self.slot.get())
            .field("context_tag", &format_args!("{}", self.tag))
            .finish_non_exhaustive()
    }
}

/// The base64 text of a [`ClientShare`], as handed to the client: a secret too, wiped when
/// dropped, `Debug` redacted, read with [`expose_secret`](Self::expose_secret).
///
/// # Example
///
/// ```
/// # fn respond(share: &custody_policy::ClientShare) {
/// let text = share.to_base64(); // wiped when `text` is dropped
/// let header_value: &str = text.expose_secret();
/// assert!(header_value.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)));
/// # }
/// ```
pub struct EncodedClientShare(Zeroizing<String>);

impl EncodedClientShare {
    /// The text. Copy it only into what must carry it to the client (a response body).
    ///
    /// # Example
    ///
    /// ```
    /// # fn respond(share: &custody_policy::ClientShare) {
    /// let text = share.to_base64();
    /// let round_trip = custody_policy::ClientShare::from_base64(text.expose_secret());
    /// assert!(round_trip.is_ok());
    /// # }
    /// ```
    #[must_use]
    pub fn expose_secret(&self) -> &str {
        self.0.as_str()
    }
}

impl ZeroizeOnDrop for EncodedClientShare {}

impl fmt::Debug for EncodedClientShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncodedClientShare([REDACTED])")
    }
}

fn malformed(defect: ClientShareDefect) -> Error {
    Error::ClientShareMalformed { defect }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(byte: u8) -> ClientShare {
        ClientShare::new(
            SlotIndex::new(2).unwrap(),
            ContextTag::from_array([0xA1, 0xB2, 0xC3, 0xD4, 0xE5, 0xF6, 0x07, 0x18]),
            &[byte; SHARE_LEN],
        )
    }

    #[test]
    fn binary_layout_is_pinned() {
        let bytes = sample(0x5A).to_bytes();
        let mut expected = vec![1, 2, 0xA1, 0xB2, 0xC3, 0xD4, 0xE5, 0xF6, 0x07, 0x18];
        expected.extend_from_slice(&[0x5A; 32]);
        assert_eq!(bytes.as_slice(), expected.as_slice());
        assert_eq!(
            sample(0x5A).to_base64().expose_secret(),
            "AQKhssPU5fYHGFpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpa"
        );
    }

    #[test]
    fn round_trips_and_accepts_both_alphabets() {
        let share = sample(0xFB);
        let text = share.to_base64();
        let standard = text.expose_secret();
        assert!(standard.contains('+') || standard.contains('/'));
        let url: String = standard
            .chars()
            .map(|c| match c {
                '+' => '-',
                '/' => '_',
                c => c,
            })
            .collect();
        for variant in [standard.to_owned(), url] {
            let back = ClientShare::from_base64(&variant).unwrap();
            assert_eq!(back.expose_secret(), share.expose_secret());
            assert_eq!(back.slot(), share.slot());
            assert_eq!(back.context_tag(), share.context_tag());
        }
    }

    #[test]
    fn framing_defects_are_typed() {
        let defect = |text: &str| match ClientShare::from_base64(text) {
            Err(Error::ClientShareMalformed { defect }) => defect,
            other => panic!("{text:?}: {other:?}"),
        };
        assert_eq!(defect("***"), ClientShareDefect::NotBase64);
        assert_eq!(defect(""), ClientShareDefect::Length { len: 0 });
        assert_eq!(defect("AQID"), ClientShareDefect::Length { len: 3 });
        assert_eq!(
            defect(&"A".repeat(1000)),
            ClientShareDefect::Length { len: 750 }
        );
        let mut bytes = sample(1).to_bytes();
        bytes[0] = 9;
        assert_eq!(
            defect(base64::encode(&bytes).as_str()),
            ClientShareDefect::Version { version: 9 }
        );
        bytes[0] = 1;
        for index in [0u8, 17, 255] {
            bytes[1] = index;
            assert_eq!(
                defect(base64::encode(&bytes).as_str()),
                ClientShareDefect::SlotIndex { index }
            );
        }
    }

    #[test]
    fn debug_shows_nothing_secret() {
        let share = sample(0xAB);
        for shown in [format!("{share:?}"), format!("{share:#?}")] {
            assert!(shown.contains("slot"), "{shown}");
            assert!(shown.contains("a1b2c3d4e5f60718"), "{shown}");
            assert!(!shown.to_lowercase().contains("abab"), "{shown}");
            assert!(!shown.contains("171"), "{shown}");
        }
        let text = share.to_base64();
        assert_eq!(format!("{text:?}"), "EncodedClientShare([REDACTED])");
        assert!(!format!("{text:#?}").contains(&text.expose_secret()[12..20]));
    }
}
