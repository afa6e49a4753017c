//! Chain verification: online (every HMAC, link and checkpoint, with the audit key) and offline
//! (links and checkpoints, with the checkpoint public key only).

use std::collections::BTreeMap;

use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::{
    AUDIT_SCHEME, AuditEvent, AuditExport, AuditKey, Checkpoint, EXPORT_FORMAT, GENESIS_HASH,
    canonical_encoding, checkpoint_message, from_hex, keys::key_id, sha256,
};

/// What a verification found.
///
/// # Example
///
/// ```
/// let export = vault_server::AuditExport {
///     format: vault_server::EXPORT_FORMAT.into(), scheme: vault_server::AUDIT_SCHEME.into(),
///     public_key: "00".repeat(32), key_id: String::new(), to_head: true,
///     events: vec![], checkpoints: vec![],
/// };
/// let report = vault_server::verify_export(&export, &[0; 32]);
/// assert!(report.chain_valid);
/// assert_eq!(report.events_checked, 0);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChainReport {
    /// True when every check passed.
    pub chain_valid: bool,
    /// Events whose links and hashes (and HMACs, online) were recomputed and matched.
    pub events_verified: u64,
    /// Events looked at (the last one is the broken one when the chain is not valid).
    pub events_checked: u64,
    /// Checkpoints whose signature verified and whose event matched.
    pub checkpoints_verified: u64,
    /// The first event found broken (or the event a failing checkpoint names).
    pub broken_at_event_id: Option<String>,
    /// Why the chain is not valid.
    pub reason: Option<String>,
    /// [`AUDIT_SCHEME`](crate::AUDIT_SCHEME).
    pub scheme: String,
}

impl ChainReport {
    fn new() -> ChainReport {
        ChainReport {
            chain_valid: true,
            events_verified: 0,
            events_checked: 0,
            checkpoints_verified: 0,
            broken_at_event_id: None,
            reason: None,
            scheme: AUDIT_SCHEME.to_owned(),
        }
    }

    fn fail(mut self, event_id: &str, reason: String) -> ChainReport {
        self.chain_valid = false;
        self.broken_at_event_id = Some(event_id.to_owned());
        self.reason = Some(reason);
        self
    }
}

/// Verifies a contiguous run of events and the checkpoints that fall in it.
///
/// - `anchor`: the `event_hash` the first event must follow; `None` trusts the first event's
///   `prev_hash` unless it is event 1, which must follow [`GENESIS_HASH`].
/// - `hmac`: the audit key, online; offline the HMACs cannot be checked and are skipped.
/// - `to_head`: the run ends at the chain head, so a checkpoint beyond its last event means
///   the tail was removed.
pub(crate) fn verify_chain(
    events: &[AuditEvent],
    anchor: Option<[u8; 32]>,
    hmac: Option<&AuditKey>,
    checkpoints: &[Checkpoint],
    key: &VerifyingKey,
    to_head: bool,
) -> ChainReport {
    let mut report = ChainReport::new();
    let Some(first) = events.first() else {
        return check_checkpoints(report, &BTreeMap::new(), 0, checkpoints, key, to_head);
    };
    let mut expected_prev = match anchor {
        Some(hash) => hash,
        None if first.seq == 1 => GENESIS_HASH,
        None => first.prev_hash,
    };
    let mut expected_seq = first.seq;
    let mut seen: BTreeMap<u64, (&str, [u8; 32])> = BTreeMap::new();
    for event in events {
        report.events_checked += 1;
        let id = event.event.id.as_str();
        if event.seq != expected_seq {
            return report.fail(
                id,
                format!(
                    "event {expected_seq} is missing or out of order: the next stored event is {}",
                    event.seq
                ),
            );
        }
        if event.prev_hash != expected_prev {
            return report.fail(
                id,
                format!(
                    "event {}: prev_hash is not the previous event's hash",
                    event.seq
                ),
            );
        }
        let encoding = match canonical_encoding(event.seq, &event.prev_hash, &event.event) {
            Ok(encoding) => encoding,
            Err(e) => return report.fail(id, format!("event {}: {e}", event.seq)),
        };
        let hash = sha256(&encoding);
        if hash != event.event_hash {
            return report.fail(
                id,
                format!("event {}: event_hash does not match its fields", event.seq),
            );
        }
        if let Some(key) = hmac
            && !key.verify(&encoding, &event.integrity_hash)
        {
            return report.fail(
                id,
                format!(
                    "event {}: integrity_hash (HMAC) does not match its fields",
                    event.seq
                ),
            );
        }
        report.events_verified += 1;
        seen.insert(event.seq, (id, hash));
        expected_prev = hash;
        expected_seq = expected_seq.saturating_add(1);
    }
    let last = expected_seq.saturating_sub(1);
    check_checkpoints(report, &seen, last, checkpoints, key, to_head)
}

fn check_checkpoints(
    mut report: ChainReport,
    seen: &BTreeMap<u64, (&str, [u8; 32])>,
    last_seq: u64,
    checkpoints: &[Checkpoint],
    key: &VerifyingKey,
    to_head: bool,
) -> ChainReport {
    let first_seq = seen.keys().next().copied().unwrap_or(0);
    let expected_key_id = key_id(key);
    for checkpoint in checkpoints {
        let id = checkpoint.event_id.as_str();
        let signed = checkpoint.key_id == expected_key_id
            && checkpoint_message(checkpoint).is_ok_and(|message| {
                Signature::from_slice(&checkpoint.signature)
                    .is_ok_and(|sig| key.verify_strict(&message, &sig).is_ok())
            });
        if !signed {
            return report.fail(
                id,
                format!(
                    "checkpoint {}: the signature does not verify with the checkpoint key",
                    checkpoint.seq
                ),
            );
        }
        match seen.get(&checkpoint.seq) {
            Some((event_id, hash)) => {
                if *event_id != id || *hash != checkpoint.event_hash {
                    return report.fail(
                        id,
                        format!(
                            "checkpoint {}: the signed head is not the stored event {}",
                            checkpoint.seq, checkpoint.seq
                        ),
                    );
                }
            }
            None if checkpoint.seq > last_seq && to_head => {
                return report.fail(
                    id,
                    format!(
                        "checkpoint {} signs event {} but the chain ends at {last_seq}: events \
                         were removed from the tail",
                        checkpoint.seq, checkpoint.seq
                    ),
                );
            }
            // Outside the verified range (or the genesis checkpoint of an empty chain).
            None if checkpoint.seq < first_seq || checkpoint.seq > last_seq => continue,
            None => {
                return report.fail(
                    id,
                    format!("checkpoint {}: its event is missing", checkpoint.seq),
                );
            }
        }
        report.checkpoints_verified += 1;
    }
    report
}

/// Verifies an export offline with the checkpoint public key the verifier trusts (obtained
/// out of band, e.g. pinned from `GET /v1/audit/public-key`).
///
/// Checks that the export is signed by that key, that every event's `event_hash` is the
/// SHA-256 of its fields and links to the previous one, that every checkpoint's signature
/// verifies and names an event present with that hash, and, for an export that runs to the
/// head, that the last event is signed by a checkpoint (so no tail was cut off). The HMACs
/// need the server's audit key and are not checked here.
///
/// # Example
///
/// ```
/// let mut export = vault_server::AuditExport {
///     format: vault_server::EXPORT_FORMAT.into(), scheme: vault_server::AUDIT_SCHEME.into(),
///     public_key: "00".repeat(32), key_id: String::new(), to_head: false,
///     events: vec![], checkpoints: vec![],
/// };
/// export.format = "something else".into();
/// assert!(!vault_server::verify_export(&export, &[0; 32]).chain_valid);
/// ```
#[must_use]
pub fn verify_export(export: &AuditExport, trusted_public_key: &[u8; 32]) -> ChainReport {
    let report = ChainReport::new();
    let first = export.events.first().map_or("", |e| e.event.id.as_str());
    if export.format != EXPORT_FORMAT || export.scheme != AUDIT_SCHEME {
        return report.fail(
            first,
            format!(
                "unknown export format {:?} / scheme {:?}",
                export.format, export.scheme
            ),
        );
    }
    if from_hex(&export.public_key).as_deref() != Some(trusted_public_key.as_slice()) {
        return report.fail(
            first,
            "the export names another checkpoint key than the trusted one".into(),
        );
    }
    let Ok(key) = VerifyingKey::from_bytes(trusted_public_key) else {
        return report.fail(first, "the trusted key is not an Ed25519 public key".into());
    };
    let report = verify_chain(
        &export.events,
        None,
        None,
        &export.checkpoints,
        &key,
        export.to_head,
    );
    if !report.chain_valid || !export.to_head {
        return report;
    }
    match (export.events.last(), export.checkpoints.last()) {
        (Some(last), Some(cp)) if cp.seq == last.seq => report,
        (None, None) => report,
        (Some(last), _) => {
            let id = last.event.id.clone();
            report.fail(
                &id,
                format!(
                    "the export runs to the head but no checkpoint signs its last event {}",
                    last.seq
                ),
            )
        }
        (None, Some(cp)) => {
            let id = cp.event_id.clone();
            report.fail(&id, "the export has checkpoints but no events".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{AuditSigner, NewAuditEvent, seal};
    use super::*;

    fn chain(key: &AuditKey, n: u64) -> Vec<AuditEvent> {
        let mut prev = GENESIS_HASH;
        (1..=n)
            .map(|seq| {
                let event = NewAuditEvent {
                    id: format!("e{seq}"),
                    occurred_at: i64::try_from(seq).unwrap(),
                    request_id: "r".into(),
                    actor_type: "user".into(),
                    actor_id: "admin".into(),
                    action: "secret.read".into(),
                    resource_type: "secret".into(),
                    resource_id: "v/db".into(),
                    vault_id: Some("v".into()),
                    outcome: "success".into(),
                    detail: "{}".into(),
                };
                let sealed = seal(key, seq, prev, &event).unwrap();
                prev = sealed.event_hash;
                sealed
            })
            .collect()
    }

    #[test]
    fn a_sound_chain_verifies_online_and_every_edit_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let key = AuditKey::from_bytes([9; 32]);
        let signer = AuditSigner::load_or_create(dir.path()).unwrap();
        let events = chain(&key, 5);
        let cp = signer
            .sign(5, "e5".into(), events[4].event_hash, 0)
            .unwrap();
        let vk = signer.verifying_key();
        let ok = verify_chain(
            &events,
            None,
            Some(&key),
            std::slice::from_ref(&cp),
            &vk,
            true,
        );
        assert!(ok.chain_valid, "{ok:?}");
        assert_eq!((ok.events_verified, ok.checkpoints_verified), (5, 1));

        // A changed field, recomputed SHA-256 included: only the HMAC catches it.
        let mut forged = events.clone();
        forged[2].event.actor_id = "mallory".into();
        let enc = canonical_encoding(3, &forged[2].prev_hash, &forged[2].event).unwrap();
        forged[2].event_hash = sha256(&enc);
        let bad = verify_chain(&forged, None, Some(&key), &[], &vk, true);
        assert_eq!(bad.broken_at_event_id.as_deref(), Some("e3"));
        assert!(bad.reason.unwrap().contains("HMAC"));

        // A removed event.
        let mut gap = events.clone();
        gap.remove(1);
        let bad = verify_chain(&gap, None, Some(&key), &[], &vk, true);
        assert_eq!(bad.broken_at_event_id.as_deref(), Some("e3"));

        // A truncated tail, caught by the checkpoint.
        let bad = verify_chain(
            &events[..3],
            None,
            Some(&key),
            std::slice::from_ref(&cp),
            &vk,
            true,
        );
        assert_eq!(bad.broken_at_event_id.as_deref(), Some("e5"));
        assert!(bad.reason.unwrap().contains("tail"));

        // A checkpoint signed by another key.
        let other = tempfile::tempdir().unwrap();
        let other = AuditSigner::load_or_create(other.path()).unwrap();
        let bad = verify_chain(
            &events,
            None,
            Some(&key),
            &[cp],
            &other.verifying_key(),
            true,
        );
        assert!(!bad.chain_valid);
    }
}
