//! What the custodian hands out and takes back: plain data a server stores as it is.

use core::fmt;

use envelope::Plaintext;

use crate::client_share::ClientShare;
use crate::error::SlotFailures;
use crate::slot::{ProviderName, SlotIndex, SlotList};

/// Everything the server stores for one secret version: the envelope bytes and one row per
/// provider slot. Plain, public data (the envelope is ciphertext, the wrapped shares are
/// encrypted under provider KEKs); no client share, ever.
///
/// The server stores the vault's mode string with the vault, and rebuilds this value from its
/// rows with [`StoredSecret::new`], [`StoredSlot::stored`] and [`StoredSlot::pending`].
///
/// # Example
///
/// ```
/// use custody_policy::{ProviderName, SlotIndex, StoredSecret, StoredSlot};
///
/// // As read back from the database:
/// let row = StoredSlot::stored(SlotIndex::FIRST, ProviderName::new("gcp")?, vec![0x4d, 0x56]);
/// let stored = StoredSecret::new(vec![0x4d, 0x50, 0x56, 0x45], vec![row]);
/// assert_eq!(stored.slots().len(), 1);
/// assert!(!stored.is_degraded());
/// # Ok::<(), custody_policy::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct StoredSecret {
    envelope: Vec<u8>,
    slots: Vec<StoredSlot>,
}

impl StoredSecret {
    /// Assembles a stored secret from its envelope bytes and slot rows (in any order; they are
    /// kept sorted by slot index). Whether the rows fit the vault's mode is checked when the
    /// secret is opened or repaired.
    ///
    /// # Example
    ///
    /// ```
    /// use custody_policy::{ProviderName, SlotIndex, StoredSecret, StoredSlot};
    ///
    /// let two = SlotIndex::new(2).ok_or("range")?;
    /// let rows = vec![
    ///     StoredSlot::pending(two, ProviderName::new("aws")?),
    ///     StoredSlot::stored(SlotIndex::FIRST, ProviderName::new("gcp")?, vec![1]),
    /// ];
    /// let stored = StoredSecret::new(vec![0; 4], rows);
    /// assert_eq!(stored.slots()[0].index(), SlotIndex::FIRST); // sorted by slot
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn new(envelope: Vec<u8>, mut slots: Vec<StoredSlot>) -> StoredSecret {
        slots.sort_by_key(StoredSlot::index);
        StoredSecret { envelope, slots }
    }

    /// The envelope bytes (`envelope::Envelope::to_bytes`).
    ///
    /// # Example
    ///
    /// ```
    /// # use custody_policy::StoredSecret;
    /// let stored = StoredSecret::new(vec![1, 2, 3], Vec::new());
    /// assert_eq!(stored.envelope(), &[1, 2, 3]);
    /// ```
    #[must_use]
    pub fn envelope(&self) -> &[u8] {
        &self.envelope
    }

    /// The provider slot rows, by slot index.
    ///
    /// # Example
    ///
    /// ```
    /// # fn rows(stored: &custody_policy::StoredSecret) {
    /// for row in stored.slots() {
    ///     println!("{} {} pending={}", row.index(), row.provider(), row.is_pending());
    /// }
    /// # }
    /// ```
    #[must_use]
    pub fn slots(&self) -> &[StoredSlot] {
        &self.slots
    }

    /// The row of the slot at `index`.
    ///
    /// # Example
    ///
    /// ```
    /// # use custody_policy::{ProviderName, SlotIndex, StoredSecret, StoredSlot};
    /// let row = StoredSlot::pending(SlotIndex::FIRST, ProviderName::new("gcp")?);
    /// let stored = StoredSecret::new(Vec::new(), vec![row]);
    /// assert!(stored.slot(SlotIndex::FIRST).is_some_and(StoredSlot::is_pending));
    /// # Ok::<(), custody_policy::Error>(())
    /// ```
    #[must_use]
    pub fn slot(&self, index: SlotIndex) -> Option<&StoredSlot> {
        self.slots.iter().find(|slot| slot.index == index)
    }

    /// Whether any provider slot is pending (a degraded write not yet repaired).
    ///
    /// # Example
    ///
    /// ```
    /// # use custody_policy::{ProviderName, SlotIndex, StoredSecret, StoredSlot};
    /// let stored = StoredSecret::new(Vec::new(), vec![StoredSlot::pending(SlotIndex::FIRST, ProviderName::new("gcp")?)]);
    /// assert!(stored.is_degraded());
    /// # Ok::<(), custody_policy::Error>(())
    /// ```
    #[must_use]
    pub fn is_degraded(&self) -> bool {
        self.slots.iter().any(StoredSlot::is_pending)
    }

    /// Takes the envelope bytes and the rows apart, for storage.
    ///
    /// # Example
    ///
    /// ```
    /// # use custody_policy::StoredSecret;
    /// let (envelope, slots) = StoredSecret::new(vec![7], Vec::new()).into_parts();
    /// assert_eq!((envelope, slots.len()), (vec![7], 0));
    /// ```
    #[must_use]
    pub fn into_parts(self) -> (Vec<u8>, Vec<StoredSlot>) {
        (self.envelope, self.slots)
    }

    /// The same secret with some rows replaced (by slot index).
    pub(crate) fn with_slots(&self, replacements: Vec<StoredSlot>) -> StoredSecret {
        let mut slots = self.slots.clone();
        for replacement in replacements {
            match slots.iter_mut().find(|s| s.index == replacement.index) {
                Some(slot) => *slot = replacement,
                None => slots.push(replacement),
            }
        }
        StoredSecret::new(self.envelope.clone(), slots)
    }
}

impl fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredSecret")
            .field("envelope_len", &self.envelope.len())
            .field("slots", &self.slots)
            .finish()
    }
}

/// One provider slot's row: slot index, provider name, and the wrapped share or `Pending`.
///
/// # Example
///
/// ```
/// use custody_policy::{ProviderName, SlotIndex, SlotState, StoredSlot};
///
/// let row = StoredSlot::stored(SlotIndex::FIRST, ProviderName::new("gcp")?, vec![1, 2, 3]);
/// assert_eq!(row.provider().as_str(), "gcp");
/// assert_eq!(row.wrapped(), Some(&[1u8, 2, 3][..]));
/// assert!(matches!(row.state(), SlotState::Stored { .. }));
/// # Ok::<(), custody_policy::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct StoredSlot {
    index: SlotIndex,
    provider: ProviderName,
    state: SlotState,
}

impl StoredSlot {
    /// A row holding a wrapped share (`kms_providers::WrappedShare::to_bytes`).
    ///
    /// # Example
    ///
    /// ```
    /// # use custody_policy::{ProviderName, SlotIndex, StoredSlot};
    /// let row = StoredSlot::stored(SlotIndex::FIRST, ProviderName::new("gcp")?, vec![0x4d, 0x56]);
    /// assert!(!row.is_pending());
    /// # Ok::<(), custody_policy::Error>(())
    /// ```
    #[must_use]
    pub fn stored(index: SlotIndex, provider: ProviderName, wrapped: Vec<u8>) -> StoredSlot {
        StoredSlot {
            index,
            provider,
            state: SlotState::Stored { wrapped },
        }
    }

    /// A row whose share was not stored (a degraded write), to be rebuilt by
    /// [`Custodian::repair`](crate::Custodian::repair).
    ///
    /// # Example
    ///
    /// ```
    /// # use custody_policy::{ProviderName, SlotIndex, StoredSlot};
    /// let row = StoredSlot::pending(SlotIndex::FIRST, ProviderName::new("aws")?);
    /// assert!(row.is_pending());
    /// assert_eq!(row.wrapped(), None);
    /// # Ok::<(), custody_policy::Error>(())
    /// ```
    #[must_use]
    pub fn pending(index: SlotIndex, provider: ProviderName) -> StoredSlot {
        StoredSlot {
            index,
            provider,
            state: SlotState::Pending,
        }
    }

    /// The slot index.
    ///
    /// # Example
    ///
    /// ```
    /// # use custody_policy::{ProviderName, SlotIndex, StoredSlot};
    /// let row = StoredSlot::pending(SlotIndex::FIRST, ProviderName::new("aws")?);
    /// assert_eq!(row.index(), SlotIndex::FIRST);
    /// # Ok::<(), custody_policy::Error>(())
    /// ```
    #[must_use]
    pub fn index(&self) -> SlotIndex {
        self.index
    }

    /// The provider that wraps this slot's share.
    ///
    /// # Example
    ///
    /// ```
    /// # use custody_policy::{ProviderName, SlotIndex, StoredSlot};
    /// let row = StoredSlot::pending(SlotIndex::FIRST, ProviderName::new("azure")?);
    /// assert_eq!(row.provider().as_str(), "azure");
    /// # Ok::<(), custody_policy::Error>(())
    /// ```
    #[must_use]
    pub fn provider(&self) -> &ProviderName {
        &self.provider
    }

    /// Stored or pending.
    ///
    /// # Example
    ///
    /// ```
    /// # use custody_policy::{ProviderName, SlotIndex, SlotState, StoredSlot};
    /// let row = StoredSlot::pending(SlotIndex::FIRST, ProviderName::new("azure")?);
    /// assert!(matches!(row.state(), SlotState::Pending));
    /// # Ok::<(), custody_policy::Error>(())
    /// ```
    #[must_use]
    pub fn state(&self) -> &SlotState {
        &self.state
    }

    /// The wrapped share's bytes, unless the slot is pending.
    ///
    /// # Example
    ///
    /// ```
    /// # use custody_policy::{ProviderName, SlotIndex, StoredSlot};
    /// let row = StoredSlot::stored(SlotIndex::FIRST, ProviderName::new("gcp")?, vec![9, 9]);
    /// assert_eq!(row.wrapped(), Some(&[9u8, 9][..]));
    /// # Ok::<(), custody_policy::Error>(())
    /// ```
    #[must_use]
    pub fn wrapped(&self) -> Option<&[u8]> {
        match &self.state {
            SlotState::Stored { wrapped } => Some(wrapped),
            SlotState::Pending => None,
        }
    }

    /// Whether the slot is pending.
    ///
    /// # Example
    ///
    /// ```
    /// # use custody_policy::{ProviderName, SlotIndex, StoredSlot};
    /// let row = StoredSlot::stored(SlotIndex::FIRST, ProviderName::new("gcp")?, vec![9]);
    /// assert!(!row.is_pending());
    /// # Ok::<(), custody_policy::Error>(())
    /// ```
    #[must_use]
    pub fn is_pending(&self) -> bool {
        matches!(self.state, SlotState::Pending)
    }
}

impl fmt::Debug for StoredSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredSlot")
            .field("index", &self.index.get())
            .field("provider", &self.provider.as_str())
            .field("state", &self.state)
            .finish()
    }
}

/// Whether a provider slot's share is stored.
///
/// # Example
///
/// ```
/// use custody_policy::SlotState;
///
/// let state = SlotState::Stored { wrapped: vec![1, 2] };
/// assert_eq!(format!("{state:?}"), "Stored { wrapped_len: 2 }");
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SlotState {
    /// The wrapped share is stored.
    Stored {
        /// `kms_providers::WrappedShare::to_bytes`.
        wrapped: Vec<u8>,
    },
    /// The share was not stored when the secret was written; repair rebuilds it.
    Pending,
}

impl fmt::Debug for SlotState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlotState::Stored { wrapped } => f
                .debug_struct("Stored")
                .field("wrapped_len", &wrapped.len())
                .finish(),
            SlotState::Pending => f.write_str("Pending"),
        }
    }
}

/// The result of [`Custodian::seal`](crate::Custodian::seal): what to store, the client share
/// to hand out once (if the mode has a client slot), and why any slot is pending.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use custody_policy::{Custodian, CustodyMode, SecretContext};
/// use kms_providers::LocalProvider;
///
/// let keys = tempfile::tempdir()?;
/// let custodian = Custodian::builder()
///     .providers(LocalProvider::embedded_defaults(keys.path())?)
///     .build()?;
/// let ctx = SecretContext::new("v", "p", 1, "t", CustodyMode::two_of_three_client_custody())?;
/// let sealed = custodian.seal(&ctx, b"secret").await?;
/// assert!(sealed.pending().is_empty());
/// assert_eq!(sealed.stored().slots().len(), 2); // gcp and aws; the client's is never stored
/// assert!(sealed.client_share().is_some());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Sealed {
    stored: StoredSecret,
    client_share: Option<ClientShare>,
    pending: SlotFailures,
}

impl Sealed {
    pub(crate) fn new(
        stored: StoredSecret,
        client_share: Option<ClientShare>,
        pending: SlotFailures,
    ) -> Sealed {
        Sealed {
            stored,
            client_share,
            pending,
        }
    }

    /// What to store.
    ///
    /// # Example
    ///
    /// ```
    /// # fn f(sealed: &custody_policy::Sealed) {
    /// let envelope_bytes: &[u8] = sealed.stored().envelope();
    /// # let _ = envelope_bytes; }
    /// ```
    #[must_use]
    pub fn stored(&self) -> &StoredSecret {
        &self.stored
    }

    /// The client share, for modes with a client slot.
    ///
    /// # Example
    ///
    /// ```
    /// # fn f(sealed: &custody_policy::Sealed) {
    /// if let Some(share) = sealed.client_share() {
    ///     let text = share.to_base64(); // hand it to the client once
    /// #   let _ = text;
    /// }
    /// # }
    /// ```
    #[must_use]
    pub fn client_share(&self) -> Option<&ClientShare> {
        self.client_share.as_ref()
    }

    /// Why each pending slot's share could not be stored (empty unless the write was degraded).
    ///
    /// # Example
    ///
    /// ```
    /// # fn f(sealed: &custody_policy::Sealed) {
    /// for failure in sealed.pending() {
    ///     eprintln!("degraded write, repair later: {failure}");
    /// }
    /// # }
    /// ```
    #[must_use]
    pub fn pending(&self) -> &SlotFailures {
        &self.pending
    }

    /// What to store and the client share to hand out.
    ///
    /// # Example
    ///
    /// ```
    /// # async fn f(sealed: custody_policy::Sealed) {
    /// let (stored, client_share) = sealed.into_parts();
    /// # let _ = (stored, client_share); }
    /// ```
    #[must_use]
    pub fn into_parts(self) -> (StoredSecret, Option<ClientShare>) {
        (self.stored, self.client_share)
    }
}

/// The result of [`Custodian::open`](crate::Custodian::open): the plaintext and how it was
/// obtained.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use custody_policy::{Custodian, CustodyMode, SecretContext};
/// use kms_providers::LocalProvider;
///
/// let keys = tempfile::tempdir()?;
/// let custodian = Custodian::builder()
///     .providers(LocalProvider::embedded_defaults(keys.path())?)
///     .build()?;
/// let ctx = SecretContext::new("v", "p", 1, "t", CustodyMode::two_of_three_multi_hsm())?;
/// let (stored, _) = custodian.seal(&ctx, b"secret").await?.into_parts();
/// let opened = custodian.open(&ctx, &stored, None).await?;
/// assert_eq!(opened.plaintext().expose_secret(), b"secret");
/// assert_eq!(opened.report().used().len(), 2);
/// assert!(opened.report().liars().is_empty());
/// assert_eq!(format!("{opened:?}").contains("secret"), false);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Opened {
    plaintext: Plaintext,
    report: ReadReport,
}

impl Opened {
    pub(crate) fn new(plaintext: Plaintext, report: ReadReport) -> Opened {
        Opened { plaintext, report }
    }

    /// The plaintext (wiped when dropped; read with `expose_secret`).
    ///
    /// # Example
    ///
    /// ```
    /// # fn f(opened: &custody_policy::Opened) {
    /// let secret: &[u8] = opened.plaintext().expose_secret();
    /// # let _ = secret; }
    /// ```
    #[must_use]
    pub fn plaintext(&self) -> &Plaintext {
        &self.plaintext
    }

    /// How the key was rebuilt.
    ///
    /// # Example
    ///
    /// ```
    /// # fn f(opened: &custody_policy::Opened) {
    /// if !opened.report().liars().is_empty() {
    ///     eprintln!("ALERT: providers returned wrong shares: {}", opened.report().liars());
    /// }
    /// # }
    /// ```
    #[must_use]
    pub fn report(&self) -> &ReadReport {
        &self.report
    }

    /// The plaintext and the report.
    ///
    /// # Example
    ///
    /// ```
    /// # fn f(opened: custody_policy::Opened) {
    /// let (plaintext, report) = opened.into_parts();
    /// # let _ = (plaintext, report); }
    /// ```
    #[must_use]
    pub fn into_parts(self) -> (Plaintext, ReadReport) {
        (self.plaintext, self.report)
    }
}

/// How a read (or a repair's read) rebuilt the key: which slots' shares were used, which slots
/// lied, which failed, and how many provider calls were made.
///
/// A **liar** is a slot whose provider returned a share off the polynomial that the other
/// shares agree on and that opens the envelope: its provider (or its KEK, or the path to it) is
/// misbehaving, and should be alerted on. Attribution is exact when one share is wrong. Only
/// shares that arrived before the key was rebuilt are examined, so a liar whose answer was not
/// needed can go unnoticed on one read and be caught on another. Several colluding providers
/// whose errors cancel at the secret can make two polynomials open the envelope; then nobody is
/// named and the slots that disagree are [`disputed`](Self::disputed). No attribution ever
/// changes the plaintext: every polynomial that opens the envelope yields the same key.
///
/// # Example
///
/// ```
/// # fn f(report: &custody_policy::ReadReport) {
/// println!(
///     "rebuilt from {} after {} provider call(s); liars: {}; failed: {}",
///     report.used(), report.provider_calls(), report.liars(), report.failures().slots()
/// );
/// # }
/// ```
#[derive(Debug, Default)]
pub struct ReadReport {
    pub(crate) used: SlotList,
    pub(crate) liars: SlotList,
    pub(crate) disputed: SlotList,
    pub(crate) failures: SlotFailures,
    pub(crate) provider_calls: usize,
}

impl ReadReport {
    /// The slots whose shares rebuilt the key (the client's included).
    ///
    /// # Example
    ///
    /// ```
    /// # fn f(report: &custody_policy::ReadReport) {
    /// let rebuilt_from: Vec<u8> = report.used().indices().map(|i| i.get()).collect();
    /// # let _ = rebuilt_from; }
    /// ```
    #[must_use]
    pub fn used(&self) -> &SlotList {
        &self.used
    }

    /// The slots whose providers returned a share inconsistent with the verified key.
    ///
    /// # Example
    ///
    /// ```
    /// # fn f(report: &custody_policy::ReadReport) {
    /// for liar in report.liars() {
    ///     eprintln!("ALERT: {liar} returned a share inconsistent with the key");
    /// }
    /// # }
    /// ```
    #[must_use]
    pub fn liars(&self) -> &SlotList {
        &self.liars
    }

    /// The slots whose shares disagree with others when the disagreement could not be
    /// attributed (a tie between polynomials that both open the envelope). Empty unless
    /// several shares are wrong.
    ///
    /// # Example
    ///
    /// ```
    /// # fn f(opened: &custody_policy::Opened) {
    /// if !opened.report().disputed().is_empty() {
    ///     eprintln!("several providers disagree: {}", opened.report().disputed());
    /// }
    /// # }
    /// ```
    #[must_use]
    pub fn disputed(&self) -> &SlotList {
        &self.disputed
    }

    /// The slots that could not provide a share (provider errors, pending, unreadable rows).
    ///
    /// # Example
    ///
    /// ```
    /// # fn f(opened: &custody_policy::Opened) {
    /// for failure in opened.report().failures() {
    ///     eprintln!("degraded read: {failure}");
    /// }
    /// # }
    /// ```
    #[must_use]
    pub fn failures(&self) -> &SlotFailures {
        &self.failures
    }

    /// How many unwrap calls were made (started, including any cancelled once the key was
    /// rebuilt).
    ///
    /// # Example
    ///
    /// ```
    /// # fn f(opened: &custody_policy::Opened) {
    /// // With a client share, a healthy read calls exactly one provider.
    /// assert!(opened.report().provider_calls() >= 1);
    /// # }
    /// ```
    #[must_use]
    pub fn provider_calls(&self) -> usize {
        self.provider_calls
    }
}

/// The result of [`Custodian::repair`](crate::Custodian::repair): the updated secret to store,
/// which slots were repaired, which are still pending, and the read that rebuilt the key.
///
/// # Example
///
/// ```
/// # fn f(repaired: custody_policy::Repaired) {
/// println!("repaired {}; still pending: {}", repaired.repaired(), repaired.still_pending().slots());
/// let to_store = repaired.into_stored();
/// # let _ = to_store; }
/// ```
#[derive(Debug)]
pub struct Repaired {
    pub(crate) stored: StoredSecret,
    pub(crate) repaired: SlotList,
    pub(crate) still_pending: SlotFailures,
    pub(crate) read: ReadReport,
}

impl Repaired {
    /// The secret with every repaired slot stored; store it in place of the old rows.
    ///
    /// # Example
    ///
    /// ```
    /// # fn f(repaired: &custody_policy::Repaired) {
    /// assert!(!repaired.stored().slots().is_empty());
    /// # }
    /// ```
    #[must_use]
    pub fn stored(&self) -> &StoredSecret {
        &self.stored
    }

    /// The slots whose shares were rebuilt and stored.
    ///
    /// # Example
    ///
    /// ```
    /// # fn f(repaired: &custody_policy::Repaired) {
    /// let fixed: Vec<u8> = repaired.repaired().indices().map(|i| i.get()).collect();
    /// # let _ = fixed; }
    /// ```
    #[must_use]
    pub fn repaired(&self) -> &SlotList {
        &self.repaired
    }

    /// The pending slots whose provider still failed, and why.
    ///
    /// # Example
    ///
    /// ```
    /// # fn f(repaired: &custody_policy::Repaired) {
    /// for failure in repaired.still_pending() {
    ///     eprintln!("still pending: {failure}");
    /// }
    /// # }
    /// ```
    #[must_use]
    pub fn still_pending(&self) -> &SlotFailures {
        &self.still_pending
    }

    /// How the key was rebuilt for the repair.
    ///
    /// # Example
    ///
    /// ```
    /// # fn f(repaired: &custody_policy::Repaired) {
    /// let rebuilt_from = repaired.read().used();
    /// # let _ = rebuilt_from; }
    /// ```
    #[must_use]
    pub fn read(&self) -> &ReadReport {
        &self.read
    }

    /// The secret to store.
    ///
    /// # Example
    ///
    /// ```
    /// # fn f(repaired: custody_policy::Repaired) {
    /// let (envelope, rows) = repaired.into_stored().into_parts();
    /// // Replace the secret version's rows with `rows`; `envelope` is unchanged.
    /// # let _ = (envelope, rows);
    /// # }
    /// ```
    #[must_use]
    pub fn into_stored(self) -> StoredSecret {
        self.stored
    }
}
