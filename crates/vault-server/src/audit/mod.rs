//! The audit trail: events, their canonical encoding, the two hash chains, signed checkpoints
//! and their verification.
//!
//! Every event is sealed twice over one canonical encoding (see [`canonical_encoding`]):
//!
//! - `event_hash = SHA-256(encoding)`, where the encoding contains the previous event's
//!   `event_hash` (`prev_hash`): a public hash chain anyone can recompute;
//! - `integrity_hash = HMAC-SHA256(audit key, encoding)`: only the server, which holds the audit
//!   key, can produce or check it, so someone who can write the database but not read the key
//!   file cannot forge a consistent chain, not even one recomputed from the first event.
//!
//! Checkpoints sign `(seq, event_id, event_hash, created_at)` of the chain head with a separate
//! Ed25519 key. A customer with the public key checks an export offline: the SHA-256 links, and
//! that every signed checkpoint names an event that is present with that exact hash. Rewriting
//! or deleting anything up to the last checkpoint breaks a signature; truncating the tail is
//! seen because the last checkpoint names an event that is missing.

mod keys;
pub(crate) mod routes;
pub(crate) mod scope;
mod verify;

pub use keys::{AuditKey, AuditSigner};
pub(crate) use verify::verify_chain;
pub use verify::{ChainReport, verify_export};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The scheme every report names; bump the version with any change to the encoding.
pub const AUDIT_SCHEME: &str =
    "mpc-vault-audit-v1: sha256-chain + hmac-sha256 + ed25519-checkpoints";
/// The domain tag that opens every event encoding.
const EVENT_TAG: &[u8] = b"mpc-vault/audit-event/v1";
/// The domain tag that opens every checkpoint statement.
const CHECKPOINT_TAG: &[u8] = b"mpc-vault/audit-checkpoint/v1";
/// The export format name.
pub const EXPORT_FORMAT: &str = "mpc-vault-audit-export/v1";
/// `prev_hash` of the first event.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// Why an audit record could not be encoded, sealed or loaded.
///
/// # Example
///
/// ```
/// let err = vault_server::AuditError::FieldTooLong("detail");
/// assert_eq!(err.to_string(), "audit field `detail` is longer than 4 GiB");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// A field does not fit the 32-bit length prefix of the encoding.
    #[error("audit field `{0}` is longer than 4 GiB")]
    FieldTooLong(&'static str),
    /// A key file could not be read or written.
    #[error("audit key file {path}: {source}")]
    KeyFile {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A key file does not hold a 32-byte key.
    #[error("audit key file {0} does not hold 32 bytes")]
    BadKeyLength(String),
    /// The OS random generator failed.
    #[error("OS random generator: {0}")]
    Random(getrandom::Error),
}

/// An event to append: what happened, who did it, to what, and how it ended.
///
/// Only public facts belong here: never a secret value, client share, API key or token.
///
/// # Example
///
/// ```
/// let event = vault_server::NewAuditEvent {
///     id: "e1".into(), occurred_at: 0, request_id: "r1".into(),
///     actor_type: "user".into(), actor_id: "admin".into(), action: "vault.create".into(),
///     resource_type: "vault".into(), resource_id: "v1".into(), vault_id: Some("v1".into()),
///     outcome: "success".into(), detail: "{}".into(),
/// };
/// assert_eq!(event.outcome, "success");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NewAuditEvent {
    /// UUID of the event.
    pub id: String,
    /// Unix milliseconds.
    pub occurred_at: i64,
    /// The `x-request-id` of the request.
    pub request_id: String,
    /// `user`, `agent`, `anonymous` (authentication failed) or `system`.
    pub actor_type: String,
    /// The user or agent id; empty for anonymous callers.
    pub actor_id: String,
    /// What was attempted, e.g. `secret.read`, `vault.create`, `auth.token`.
    pub action: String,
    /// `vault`, `secret`, `api_key`, `audit`, ….
    pub resource_type: String,
    /// The resource: a vault id, `vault_id/secret path`, a key id, ….
    pub resource_id: String,
    /// The vault the resource belongs to, if any.
    pub vault_id: Option<String>,
    /// `success`, `denied` (401/403), `not_found`, `rejected` (other 4xx) or `error` (5xx).
    pub outcome: String,
    /// A JSON object of public facts (HTTP status, version, key id).
    pub detail: String,
}

/// A stored event with its place in the chain and its two seals.
///
/// # Example
///
/// ```
/// # let event = vault_server::NewAuditEvent {
/// #     id: "e1".into(), occurred_at: 0, request_id: "r1".into(),
/// #     actor_type: "user".into(), actor_id: "admin".into(), action: "vault.create".into(),
/// #     resource_type: "vault".into(), resource_id: "v1".into(), vault_id: None,
/// #     outcome: "success".into(), detail: "{}".into(),
/// # };
/// let encoding = vault_server::canonical_encoding(1, &vault_server::GENESIS_HASH, &event)?;
/// assert!(encoding.starts_with(&[0, 0, 0, 24]));
/// # Ok::<(), vault_server::AuditError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEvent {
    /// Position in the chain, from 1.
    pub seq: u64,
    /// The event's fields.
    #[serde(flatten)]
    pub event: NewAuditEvent,
    /// The previous event's `event_hash` (hex; zeros for the first event).
    #[serde(with = "hex32")]
    #[schema(value_type = String)]
    pub prev_hash: [u8; 32],
    /// SHA-256 of the canonical encoding (hex).
    #[serde(with = "hex32")]
    #[schema(value_type = String)]
    pub event_hash: [u8; 32],
    /// HMAC-SHA256 of the canonical encoding under the audit key (hex).
    #[serde(with = "hex32")]
    #[schema(value_type = String)]
    pub integrity_hash: [u8; 32],
}

/// A signed statement that the chain had `seq` events and that the last one was `event_id`
/// with hash `event_hash`.
///
/// # Example
///
/// ```
/// let cp = vault_server::Checkpoint {
///     seq: 1, event_id: "e1".into(), event_hash: [0; 32], created_at: 0,
///     key_id: "k".into(), signature: vec![0; 64],
/// };
/// assert_eq!(cp.signature.len(), 64);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Checkpoint {
    /// The number of events in the chain (the head's `seq`).
    pub seq: u64,
    /// The head event's id.
    pub event_id: String,
    /// The head event's `event_hash` (hex).
    #[serde(with = "hex32")]
    #[schema(value_type = String)]
    pub event_hash: [u8; 32],
    /// Unix milliseconds.
    pub created_at: i64,
    /// The signing key's id (hex of the first 8 bytes of SHA-256 of the public key).
    pub key_id: String,
    /// Ed25519 signature over [`checkpoint_message`] (hex).
    #[serde(with = "hex_vec")]
    #[schema(value_type = String)]
    pub signature: Vec<u8>,
}

/// An export: events of a range, the checkpoints inside it, and the public key that signs them.
///
/// # Example
///
/// ```
/// let export = vault_server::AuditExport {
///     format: vault_server::EXPORT_FORMAT.into(), scheme: vault_server::AUDIT_SCHEME.into(),
///     public_key: "00".repeat(32), key_id: String::new(), to_head: true,
///     events: vec![], checkpoints: vec![],
/// };
/// assert!(export.events.is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditExport {
    /// [`EXPORT_FORMAT`].
    pub format: String,
    /// [`AUDIT_SCHEME`].
    pub scheme: String,
    /// The Ed25519 checkpoint public key (hex). A verifier compares it with the key it trusts.
    pub public_key: String,
    /// The key's id.
    pub key_id: String,
    /// True when the export runs to the chain head, which the last checkpoint then signs.
    pub to_head: bool,
    /// The events, in chain order.
    pub events: Vec<AuditEvent>,
    /// The checkpoints whose `seq` falls in the exported range, oldest first.
    pub checkpoints: Vec<Checkpoint>,
}

/// The canonical encoding of an event at position `seq` after `prev_hash`.
///
/// Version 1, every integer big-endian, every string as a 32-bit length and its UTF-8 bytes
/// (`lp`), an optional string as one byte 0 (absent) or 1 followed by `lp`:
///
/// ```text
/// lp("mpc-vault/audit-event/v1") ‖ u64 seq ‖ prev_hash (32 bytes) ‖ lp(id) ‖ i64 occurred_at ‖
/// lp(request_id) ‖ lp(actor_type) ‖ lp(actor_id) ‖ lp(action) ‖ lp(resource_type) ‖
/// lp(resource_id) ‖ opt(vault_id) ‖ lp(outcome) ‖ lp(detail)
/// ```
///
/// The length prefixes make the encoding injective: no two different events encode alike.
///
/// # Errors
///
/// [`AuditError::FieldTooLong`] for a field of 4 GiB or more.
///
/// # Example
///
/// ```
/// # let event = vault_server::NewAuditEvent {
/// #     id: "e1".into(), occurred_at: 0, request_id: "r1".into(),
/// #     actor_type: "user".into(), actor_id: "admin".into(), action: "vault.create".into(),
/// #     resource_type: "vault".into(), resource_id: "v1".into(), vault_id: None,
/// #     outcome: "success".into(), detail: "{}".into(),
/// # };
/// let a = vault_server::canonical_encoding(1, &[0; 32], &event)?;
/// let b = vault_server::canonical_encoding(2, &[0; 32], &event)?;
/// assert_ne!(a, b);
/// # Ok::<(), vault_server::AuditError>(())
/// ```
pub fn canonical_encoding(
    seq: u64,
    prev_hash: &[u8; 32],
    event: &NewAuditEvent,
) -> Result<Vec<u8>, AuditError> {
    let mut out = Vec::with_capacity(256 + event.detail.len() + event.resource_id.len());
    put_lp(&mut out, "tag", EVENT_TAG)?;
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(prev_hash);
    put_lp(&mut out, "id", event.id.as_bytes())?;
    out.extend_from_slice(&event.occurred_at.to_be_bytes());
    put_lp(&mut out, "request_id", event.request_id.as_bytes())?;
    put_lp(&mut out, "actor_type", event.actor_type.as_bytes())?;
    put_lp(&mut out, "actor_id", event.actor_id.as_bytes())?;
    put_lp(&mut out, "action", event.action.as_bytes())?;
    put_lp(&mut out, "resource_type", event.resource_type.as_bytes())?;
    put_lp(&mut out, "resource_id", event.resource_id.as_bytes())?;
    match &event.vault_id {
        None => out.push(0),
        Some(vault) => {
            out.push(1);
            put_lp(&mut out, "vault_id", vault.as_bytes())?;
        }
    }
    put_lp(&mut out, "outcome", event.outcome.as_bytes())?;
    put_lp(&mut out, "detail", event.detail.as_bytes())?;
    Ok(out)
}

/// The statement a checkpoint signs:
/// `lp("mpc-vault/audit-checkpoint/v1") ‖ u64 seq ‖ lp(event_id) ‖ event_hash ‖ i64 created_at`.
///
/// # Errors
///
/// [`AuditError::FieldTooLong`] for an event id of 4 GiB or more.
///
/// # Example
///
/// ```
/// let cp = vault_server::Checkpoint {
///     seq: 1, event_id: "e1".into(), event_hash: [0; 32], created_at: 0,
///     key_id: "k".into(), signature: vec![],
/// };
/// assert_eq!(vault_server::checkpoint_message(&cp)?.len(), 4 + 29 + 8 + 4 + 2 + 32 + 8);
/// # Ok::<(), vault_server::AuditError>(())
/// ```
pub fn checkpoint_message(checkpoint: &Checkpoint) -> Result<Vec<u8>, AuditError> {
    let mut out = Vec::with_capacity(128);
    put_lp(&mut out, "tag", CHECKPOINT_TAG)?;
    out.extend_from_slice(&checkpoint.seq.to_be_bytes());
    put_lp(&mut out, "event_id", checkpoint.event_id.as_bytes())?;
    out.extend_from_slice(&checkpoint.event_hash);
    out.extend_from_slice(&checkpoint.created_at.to_be_bytes());
    Ok(out)
}

fn put_lp(out: &mut Vec<u8>, field: &'static str, bytes: &[u8]) -> Result<(), AuditError> {
    let len = u32::try_from(bytes.len()).map_err(|_| AuditError::FieldTooLong(field))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

/// SHA-256 of an encoding.
pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Seals `event` as chain position `seq` after `prev_hash`: what a store appends.
pub(crate) fn seal(
    key: &AuditKey,
    seq: u64,
    prev_hash: [u8; 32],
    event: &NewAuditEvent,
) -> Result<AuditEvent, AuditError> {
    let encoding = canonical_encoding(seq, &prev_hash, event)?;
    Ok(AuditEvent {
        seq,
        event: event.clone(),
        prev_hash,
        event_hash: sha256(&encoding),
        integrity_hash: key.mac(&encoding),
    })
}

/// Lower-case hex.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Parses hex (either case); `None` if it is not hex.
pub(crate) fn from_hex(text: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| match pair {
            [hi, lo] => Some((nibble(*hi)? << 4) | nibble(*lo)?),
            _ => None,
        })
        .collect()
}

/// Serde for 32-byte hashes as hex strings.
mod hex32 {
    use serde::{Deserialize as _, Deserializer, Serializer, de::Error as _};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::to_hex(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        super::from_hex(&text)
            .and_then(|v| <[u8; 32]>::try_from(v).ok())
            .ok_or_else(|| D::Error::custom("expected 64 hex digits"))
    }
}

/// Serde for byte strings as hex.
mod hex_vec {
    use serde::{Deserialize as _, Deserializer, Serializer, de::Error as _};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::to_hex(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        super::from_hex(&text).ok_or_else(|| D::Error::custom("expected hex digits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> NewAuditEvent {
        NewAuditEvent {
            id: "e1".into(),
            occurred_at: 5,
            request_id: "r".into(),
            actor_type: "user".into(),
            actor_id: "admin".into(),
            action: "vault.create".into(),
            resource_type: "vault".into(),
            resource_id: "v1".into(),
            vault_id: Some("v1".into()),
            outcome: "success".into(),
            detail: "{}".into(),
        }
    }

    #[test]
    fn the_encoding_is_injective_across_field_boundaries() {
        let a = event();
        let mut b = event();
        // Moving a character from one field to the next must change the encoding.
        b.actor_type = "use".into();
        b.actor_id = "radmin".into();
        assert_ne!(
            canonical_encoding(1, &GENESIS_HASH, &a).unwrap(),
            canonical_encoding(1, &GENESIS_HASH, &b).unwrap()
        );
        let mut c = event();
        c.vault_id = None;
        assert_ne!(
            canonical_encoding(1, &GENESIS_HASH, &a).unwrap(),
            canonical_encoding(1, &GENESIS_HASH, &c).unwrap()
        );
        let mut d = event();
        d.vault_id = Some(String::new());
        assert_ne!(
            canonical_encoding(1, &GENESIS_HASH, &c).unwrap(),
            canonical_encoding(1, &GENESIS_HASH, &d).unwrap()
        );
    }

    #[test]
    fn hex_round_trips_and_refuses_junk() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(from_hex(&to_hex(&bytes)).unwrap(), bytes);
        assert_eq!(from_hex("0A"), Some(vec![10]));
        assert!(from_hex("0").is_none());
        assert!(from_hex("zz").is_none());
    }

    #[test]
    fn events_serialize_with_hex_hashes_and_round_trip() {
        let key = AuditKey::from_bytes([7; 32]);
        let sealed = seal(&key, 1, GENESIS_HASH, &event()).unwrap();
        let json = serde_json::to_value(&sealed).unwrap();
        assert_eq!(json["prev_hash"], "0".repeat(64));
        assert_eq!(json["actor_id"], "admin");
        let back: AuditEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, sealed);
    }
}
