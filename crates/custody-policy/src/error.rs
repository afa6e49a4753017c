//! The crate's one error type, and the per-slot failures it carries.

use core::fmt;

use crate::client_share::{ClientShareDefect, ContextTag};
use crate::mode::CustodyMode;
use crate::slot::{ProviderName, Slot, SlotIndex, SlotList};

/// A boxed error kept as the `source` of an [`Error`].
type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong when choosing a custody mode, sealing, opening or repairing.
///
/// No variant, message or `source` ever holds a DEK, a share or a plaintext: only mode
/// strings, slot indices, provider names, counts, public context tags and the lower crates'
/// own (equally secret-free) errors. Provider errors are kept, per slot, as the `source` (see
/// [`SlotFailures`]).
///
/// The client share has four distinct errors so that a caller can tell the user exactly what
/// to fix: [`ClientShareMissing`](Error::ClientShareMissing) (send it),
/// [`ClientShareMalformed`](Error::ClientShareMalformed) (it was damaged or mistyped),
/// [`ClientShareForeign`](Error::ClientShareForeign) (it is another secret's or version's) and
/// [`WrongClientShare`](Error::WrongClientShare) (it is for this secret version but does not
/// rebuild its key).
///
/// # Example
///
/// ```
/// use custody_policy::{CustodyMode, Error};
///
/// let err = "3of2:gcp,aws".parse::<CustodyMode>().unwrap_err();
/// assert!(matches!(err, Error::InvalidMode { .. }));
/// assert_eq!(
///     err.to_string(),
///     "invalid custody mode \"3of2:gcp,aws\": threshold 3 is above the 2 slots: the DEK could never be rebuilt"
/// );
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A custody mode string or layout breaks a rule (unknown name, bad threshold, repeated
    /// provider, wrong slots for a named mode, …).
    #[error("invalid custody mode {input:?}: {reason}")]
    InvalidMode {
        /// The mode as given (cut to 128 bytes).
        input: String,
        /// Which rule it breaks, and how to fix it.
        reason: String,
    },

    /// A provider name is empty, too long, uses a character outside `A-Z a-z 0-9 . _ -`,
    /// starts with `.`, or is the reserved `client`.
    #[error("invalid provider name {name:?}: {reason}")]
    InvalidProviderName {
        /// The name as given (cut to 128 bytes).
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },

    /// A billing tier string is not one of `free`, `pro`, `team`, `business`, `enterprise`.
    #[error("unknown billing tier {input:?}: use free, pro, team, business or enterprise")]
    UnknownBillingTier {
        /// The tier as given (cut to 128 bytes).
        input: String,
    },

    /// The vault already has a custody mode; a mode is set once and never changed.
    #[error(
        "the vault's custody mode is already {current} and cannot be changed to {requested}: \
         secrets sealed under a mode stay bound to it"
    )]
    ModeAlreadySet {
        /// The vault's mode.
        current: CustodyMode,
        /// The mode that was asked for.
        requested: CustodyMode,
    },

    /// The custody mode names providers the custodian was not configured with.
    #[error(
        "custody mode {mode} needs key providers that are not configured: {}; configure them or \
         choose a mode that uses only the configured providers",
        join_names(.missing)
    )]
    MissingProviders {
        /// The mode.
        mode: CustodyMode,
        /// Every provider it names that is not configured.
        missing: Vec<ProviderName>,
    },

    /// Two configured providers report the same [`name`](kms_providers::KeyProvider::name).
    #[error("key provider {name:?} is configured twice: give each provider instance its own name")]
    DuplicateProvider {
        /// The repeated name.
        name: String,
    },

    /// A secret-context field is invalid for the envelope or for the wrap context (empty, too
    /// long, or holding a control character).
    #[error("invalid secret context: {source}")]
    InvalidContext {
        /// The lower layer's error ([`envelope::Error`] or [`kms_providers::ContextError`]).
        #[source]
        source: BoxError,
    },

    /// Sealing, parsing or opening the envelope failed: the plaintext is too large, the OS
    /// random generator failed, the stored envelope bytes are malformed, or the envelope's
    /// ciphertext was modified (its key verified but its tag did not).
    #[error("envelope: {0}")]
    Envelope(#[source] envelope::Error),

    /// Fewer shares than the write quorum could be wrapped and stored; nothing was sealed.
    #[error(
        "write quorum not met: {required} share(s) must be stored (the client share counts), only \
         {available} could be; {} failed",
        slots_of(.failures)
    )]
    WriteQuorumNotMet {
        /// Shares the quorum asks for.
        required: u8,
        /// Shares that could be stored, plus the client share if the mode has one.
        available: u8,
        /// Why each missing share failed; the provider errors are the sources.
        #[source]
        failures: SlotFailures,
    },

    /// Fewer than the threshold's shares could be obtained: providers failed, shares are
    /// pending, or stored wrapped shares are unreadable. No plaintext was produced.
    #[error(
        "not enough shares to rebuild the key: {needed} needed, {available} obtained; {} failed",
        slots_of(.failures)
    )]
    NotEnoughShares {
        /// Shares the mode needs (the client share included).
        needed: u8,
        /// Shares obtained.
        available: u8,
        /// Why each other share could not be obtained; provider errors are the sources.
        #[source]
        failures: SlotFailures,
    },

    /// Enough shares arrived but no combination of them rebuilds the key the envelope commits
    /// to: more shares are wrong than the mode can tolerate, or the envelope itself is
    /// corrupted. No plaintext was produced.
    #[error(
        "no combination of the shares from {tried} rebuilds the key of this envelope: more shares \
         are wrong than the mode can tolerate, or the envelope is corrupted"
    )]
    KeyVerificationFailed {
        /// The slots whose shares were tried.
        tried: SlotList,
    },

    /// The mode has a client slot and no client share was given.
    #[error("this custody mode needs the client share of slot {slot} to open or repair a secret")]
    ClientShareMissing {
        /// The mode's client slot.
        slot: SlotIndex,
    },

    /// The client share cannot be decoded, or claims a slot that is not this mode's client
    /// slot. It was damaged or mistyped in transit.
    #[error("malformed client share: {defect}")]
    ClientShareMalformed {
        /// What is wrong with it.
        defect: ClientShareDefect,
    },

    /// The client share is well formed but belongs to another secret, version, vault or mode:
    /// its public context tag differs from this secret version's.
    #[error(
        "the client share belongs to another secret, version, vault or custody mode: its context \
         tag is {found}, this secret version's is {expected}"
    )]
    ClientShareForeign {
        /// The tag the share carries.
        found: ContextTag,
        /// This secret version's tag.
        expected: ContextTag,
    },

    /// The client share is well formed and tagged for this secret version, but it does not
    /// rebuild the key. No plaintext was produced.
    ///
    /// When `confirmed`, the provider shares rebuilt the key on their own and the client share
    /// disagrees with it: the client share is certainly wrong (for example, one handed out by
    /// an earlier, abandoned seal of the same version). When not confirmed, no spare provider
    /// share was available to cross-check (always so in 2-of-2 custody), so a corrupted share
    /// from one of the `unverified` provider slots, or a corrupted envelope, cannot be ruled
    /// out.
    #[error("{}", wrong_client_share(*.confirmed, .unverified))]
    WrongClientShare {
        /// Whether the provider shares proved the client share wrong.
        confirmed: bool,
        /// Provider slots whose shares could not be cross-checked (empty when confirmed).
        unverified: SlotList,
    },

    /// A client share was given for a mode that has no client slot.
    #[error("custody mode {mode} has no client slot, but a client share was given")]
    UnexpectedClientShare {
        /// The mode.
        mode: CustodyMode,
    },

    /// The stored slots do not fit the custody mode: a slot is missing or repeated, names
    /// another provider, or is the client's.
    #[error("the stored secret does not fit custody mode {mode}: {reason}")]
    StoredSecretMismatch {
        /// The mode.
        mode: CustodyMode,
        /// What does not fit.
        reason: String,
    },

    /// The shares a repair gathered disagree, and not by a margin that settles which are
    /// right: two polynomials open the envelope with as many shares behind each, or the
    /// majority polynomial has no share beyond the `t` that define it (colluding providers
    /// whose errors cancel at the secret would look the same). Recomputing a pending share
    /// from the wrong polynomial would store a wrong share for good, so nothing was repaired;
    /// fix or replace the disputed providers first.
    #[error(
        "refusing to repair: the shares from {disputed} disagree with the others and the \
         disagreement is not settled by enough agreeing shares"
    )]
    DisputedShares {
        /// The slots whose shares are in dispute.
        disputed: SlotList,
    },

    /// [`Custodian::repair`](crate::Custodian::repair) was called on a secret with no pending
    /// slot.
    #[error("nothing to repair: every provider share of this secret is stored")]
    NothingToRepair,

    /// The key was rebuilt but no pending share could be wrapped again.
    #[error("no pending share could be repaired; {} failed", slots_of(.failures))]
    RepairFailed {
        /// Why each pending share failed; the provider errors are the sources.
        #[source]
        failures: SlotFailures,
    },

    /// The Shamir split or combine failed. With the shapes this crate passes, this is a bug.
    #[error("Shamir sharing failed: {0}")]
    Shamir(#[source] gf256_shamir::Error),

    /// The XOR split or combine failed. With the shapes this crate passes, this is a bug.
    #[error("XOR sharing failed: {0}")]
    Xor(#[source] xor_split::Error),
}

impl Error {
    /// Whether the same call may succeed later without any change on the caller's side:
    /// shares were missing only because providers had transient failures (timeouts,
    /// unavailability, throttling, an open circuit).
    ///
    /// # Example
    ///
    /// ```
    /// use custody_policy::Error;
    ///
    /// assert!(!Error::NothingToRepair.is_transient());
    /// ```
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Error::WriteQuorumNotMet { failures, .. }
            | Error::NotEnoughShares { failures, .. }
            | Error::RepairFailed { failures } => failures.all_transient(),
            _ => false,
        }
    }

    pub(crate) fn invalid_context(source: impl Into<BoxError>) -> Error {
        Error::InvalidContext {
            source: source.into(),
        }
    }
}

/// Why one slot's share could not be used.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use custody_policy::{Custodian, CustodyMode, Error, SecretContext, WriteQuorum};
/// use kms_providers::{FaultConfig, FaultInjector, LocalProvider};
///
/// let keys = tempfile::tempdir()?;
/// let azure = FaultInjector::new(
///     LocalProvider::builder("azure").key_dir(keys.path()).build()?,
///     FaultConfig::new(1),
/// )?;
/// azure.set_outage(true);
/// let custodian = Custodian::builder()
///     .provider(LocalProvider::builder("gcp").key_dir(keys.path()).build()?)
///     .provider(LocalProvider::builder("aws").key_dir(keys.path()).build()?)
///     .provider(azure)
///     .build()?;
/// let ctx = SecretContext::new("v", "p", 1, "password", CustodyMode::two_of_three_multi_hsm())?;
/// let Err(Error::WriteQuorumNotMet { failures, .. }) = custodian.seal(&ctx, b"x").await else {
///     panic!("azure is down and every share must be stored");
/// };
/// let failure = &failures.as_slice()[0];
/// assert_eq!(failure.slot().to_string(), "slot 3 (azure)");
/// assert!(failure.provider_error().is_some_and(|e| e.is_transient()));
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct SlotFailure {
    slot: Slot,
    cause: SlotFailureCause,
}

impl SlotFailure {
    pub(crate) fn new(slot: Slot, cause: SlotFailureCause) -> SlotFailure {
        SlotFailure { slot, cause }
    }

    /// The slot.
    ///
    /// # Example
    ///
    /// ```
    /// # fn log(failure: &custody_policy::SlotFailure) {
    /// eprintln!("{} ({}) failed: {}", failure.slot().index(), failure.slot().holder(), failure.cause());
    /// # }
    /// ```
    #[must_use]
    pub fn slot(&self) -> &Slot {
        &self.slot
    }

    /// Why it failed.
    ///
    /// # Example
    ///
    /// ```
    /// # fn check(failure: &custody_policy::SlotFailure) {
    /// use custody_policy::SlotFailureCause;
    ///
    /// if let SlotFailureCause::Pending = failure.cause() {
    ///     // The share was never stored: `Custodian::repair` can rebuild it.
    /// }
    /// # }
    /// ```
    #[must_use]
    pub fn cause(&self) -> &SlotFailureCause {
        &self.cause
    }

    /// The provider's error, when the provider call failed.
    ///
    /// # Example
    ///
    /// ```
    /// # fn retry_later(failure: &custody_policy::SlotFailure) -> bool {
    /// failure.provider_error().is_some_and(|e| e.is_transient())
    /// # }
    /// ```
    #[must_use]
    pub fn provider_error(&self) -> Option<&kms_providers::Error> {
        match &self.cause {
            SlotFailureCause::Provider(err) => Some(err),
            _ => None,
        }
    }
}

impl fmt::Display for SlotFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.slot, self.cause)
    }
}

impl std::error::Error for SlotFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.cause {
            SlotFailureCause::Provider(err) => Some(err),
            SlotFailureCause::Unreadable(err) => Some(err),
            _ => None,
        }
    }
}

/// What went wrong with one slot's share.
///
/// # Example
///
/// ```
/// use custody_policy::SlotFailureCause;
///
/// assert_eq!(
///     SlotFailureCause::Pending.to_string(),
///     "the share is pending: it was not stored when the secret was written"
/// );
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SlotFailureCause {
    /// The provider call failed (wrap or unwrap); the provider's error, which says whether it
    /// is transient.
    #[error(transparent)]
    Provider(kms_providers::Error),
    /// The slot is pending: its share was not stored when the secret was written.
    #[error("the share is pending: it was not stored when the secret was written")]
    Pending,
    /// The stored wrapped-share bytes do not parse.
    #[error("the stored wrapped share cannot be read: {0}")]
    Unreadable(kms_providers::DecodeError),
    /// The provider returned a share of the wrong length (a misbehaving provider).
    #[error("the provider returned a {len}-byte share; shares are {expected} bytes")]
    WrongLength {
        /// The length returned.
        len: usize,
        /// The length every share has.
        expected: usize,
    },
}

impl SlotFailureCause {
    fn is_transient(&self) -> bool {
        matches!(self, SlotFailureCause::Provider(err) if err.is_transient())
    }
}

/// The failures of several slots, in slot order, as one error: displayed as
/// `slot 2 (aws): …; slot 3 (azure): …`, with the first failure's provider error as its
/// `source`.
///
/// # Example
///
/// ```
/// let none = custody_policy::SlotFailures::default();
/// assert!(none.is_empty());
/// assert_eq!(none.to_string(), "no slot failed");
/// ```
#[derive(Debug, Default)]
pub struct SlotFailures(Vec<SlotFailure>);

impl SlotFailures {
    /// The failures, in slot order.
    ///
    /// # Example
    ///
    /// ```
    /// assert!(custody_policy::SlotFailures::default().as_slice().is_empty());
    /// ```
    #[must_use]
    pub fn as_slice(&self) -> &[SlotFailure] {
        &self.0
    }

    /// How many slots failed.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(custody_policy::SlotFailures::default().len(), 0);
    /// ```
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no slot failed.
    ///
    /// # Example
    ///
    /// ```
    /// assert!(custody_policy::SlotFailures::default().is_empty());
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The failure of the slot at `index`, if it failed.
    ///
    /// # Example
    ///
    /// ```
    /// use custody_policy::{SlotFailures, SlotIndex};
    ///
    /// assert!(SlotFailures::default().get(SlotIndex::FIRST).is_none());
    /// ```
    #[must_use]
    pub fn get(&self, index: SlotIndex) -> Option<&SlotFailure> {
        self.0.iter().find(|f| f.slot.index() == index)
    }

    /// The failed slots.
    ///
    /// # Example
    ///
    /// ```
    /// assert!(custody_policy::SlotFailures::default().slots().is_empty());
    /// ```
    #[must_use]
    pub fn slots(&self) -> SlotList {
        SlotList::from(self.0.iter().map(|f| f.slot.clone()).collect::<Vec<_>>())
    }

    pub(crate) fn push(&mut self, failure: SlotFailure) {
        self.0.push(failure);
        self.0.sort_by_key(|f| f.slot.index());
    }

    pub(crate) fn all_transient(&self) -> bool {
        !self.0.is_empty() && self.0.iter().all(|f| f.cause.is_transient())
    }
}

impl fmt::Display for SlotFailures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("no slot failed");
        }
        for (i, failure) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            fmt::Display::fmt(failure, f)?;
        }
        Ok(())
    }
}

impl std::error::Error for SlotFailures {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.iter().find_map(|f| std::error::Error::source(f))
    }
}

impl<'a> IntoIterator for &'a SlotFailures {
    type Item = &'a SlotFailure;
    type IntoIter = core::slice::Iter<'a, SlotFailure>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Cuts user input quoted in an error to at most 128 bytes, on a character boundary.
pub(crate) fn truncated(input: &str) -> String {
    const MAX: usize = 128;
    if input.len() <= MAX {
        return input.to_owned();
    }
    let mut end = MAX;
    while !input.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    let mut out = input.get(..end).unwrap_or_default().to_owned();
    out.push('…');
    out
}

fn join_names(names: &[ProviderName]) -> String {
    names
        .iter()
        .map(ProviderName::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

fn slots_of(failures: &SlotFailures) -> SlotList {
    failures.slots()
}

fn wrong_client_share(confirmed: bool, unverified: &SlotList) -> String {
    if confirmed {
        "wrong client share: it is tagged for this secret version, but the provider shares \
         rebuild the key without it and the client share does not match that key"
            .to_owned()
    } else {
        format!(
            "wrong client share: it is tagged for this secret version, but it does not rebuild the \
             key together with {unverified}; no spare provider share was available to rule out a \
             corrupted provider share or envelope"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncated("short"), "short");
        let long = "é".repeat(100);
        let cut = truncated(&long);
        assert!(cut.len() <= 128 + '…'.len_utf8());
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn wrong_client_share_messages_say_how_sure_they_are() {
        let confirmed = Error::WrongClientShare {
            confirmed: true,
            unverified: SlotList::default(),
        };
        assert!(
            confirmed
                .to_string()
                .contains("provider shares rebuild the key without it")
        );
        let gcp = Slot::new(
            SlotIndex::FIRST,
            crate::SlotHolder::provider("gcp").unwrap(),
        );
        let unconfirmed = Error::WrongClientShare {
            confirmed: false,
            unverified: SlotList::from(vec![gcp]),
        };
        assert!(
            unconfirmed
                .to_string()
                .contains("together with slot 1 (gcp)")
        );
    }
}
