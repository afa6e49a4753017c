//! The custodian: the one place that composes the split core, the envelope and the providers.

use core::fmt;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use envelope::{Dek, Envelope};
use futures_util::StreamExt;
use futures_util::future::join_all;
use futures_util::stream::FuturesUnordered;
use kms_providers::{KeyProvider, UnwrappedShare, WrapContext, WrappedShare};
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::Error;
use crate::client_share::{ClientShare, SHARE_LEN};
use crate::context::SecretContext;
use crate::error::{SlotFailure, SlotFailureCause, SlotFailures};
use crate::latency::LatencyEstimate;
use crate::mode::{CustodyMode, SplitScheme};
use crate::record::{Opened, ReadReport, Repaired, Sealed, StoredSecret, StoredSlot};
use crate::sharing::{self, ShareValue};
use crate::slot::{ProviderName, Slot, SlotHolder, SlotIndex, SlotList};

/// How many shares a write must store before it succeeds.
///
/// The client share, when the mode has one, counts: it is handed out by the same call. The
/// quorum is clamped to the mode's range, threshold to share count, so one setting serves
/// vaults of every mode: a quorum below the threshold would store a secret nobody can read,
/// and XOR (n-of-n) and `standard` modes always need every share.
///
/// # Example
///
/// ```
/// use custody_policy::{CustodyMode, WriteQuorum};
///
/// let multi_hsm = CustodyMode::two_of_three_multi_hsm();
/// assert_eq!(WriteQuorum::All.required(&multi_hsm), 3);
/// assert_eq!(WriteQuorum::Threshold.required(&multi_hsm), 2);
/// assert_eq!(WriteQuorum::AtLeast(1).required(&multi_hsm), 2); // never below the threshold
/// assert_eq!(WriteQuorum::Threshold.required(&CustodyMode::two_of_two_client_custody()), 2);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WriteQuorum {
    /// Every share must be stored (the default): a write never leaves a slot pending.
    #[default]
    All,
    /// The threshold's worth of shares suffices: a write succeeds with up to `n - t` providers
    /// down, leaving their slots pending for [`Custodian::repair`].
    Threshold,
    /// At least this many shares, clamped to threshold..=share count.
    AtLeast(u8),
}

impl WriteQuorum {
    /// The number of shares a write in `mode` must store (the client share included).
    ///
    /// # Example
    ///
    /// ```
    /// use custody_policy::{CustodyMode, WriteQuorum};
    ///
    /// let mode: CustodyMode = "3of5:a,b,c,d,e".parse()?;
    /// assert_eq!(WriteQuorum::AtLeast(4).required(&mode), 4);
    /// # Ok::<(), custody_policy::Error>(())
    /// ```
    #[must_use]
    pub fn required(self, mode: &CustodyMode) -> u8 {
        let (t, n) = (mode.threshold(), mode.share_count());
        match self {
            WriteQuorum::All => n,
            WriteQuorum::Threshold => t,
            WriteQuorum::AtLeast(k) => k.clamp(t, n),
        }
    }
}

/// Configures a [`Custodian`]: the key providers (each under its own
/// [`name`](KeyProvider::name)) and the write quorum.
///
/// Per-call timeouts, retries, concurrency limits and circuit breaking come from the
/// providers' layers: wrap each provider in a [`kms_providers::LayerStack`] before adding it.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use custody_policy::{Custodian, WriteQuorum};
/// use kms_providers::{LayerStack, LocalProvider};
///
/// let keys = tempfile::tempdir()?;
/// let stack = LayerStack::new().timeout(Duration::from_secs(2));
/// let custodian = Custodian::builder()
///     .provider(stack.build(LocalProvider::builder("gcp").key_dir(keys.path()).build()?)?)
///     .provider(stack.build(LocalProvider::builder("aws").key_dir(keys.path()).build()?)?)
///     .write_quorum(WriteQuorum::Threshold)
///     .build()?;
/// assert_eq!(custodian.provider_names().count(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Default)]
#[must_use]
pub struct CustodianBuilder {
    providers: Vec<Arc<dyn KeyProvider>>,
    write_quorum: WriteQuorum,
}

impl CustodianBuilder {
    /// Adds a provider.
    ///
    /// # Example
    ///
    /// ```
    /// use custody_policy::Custodian;
    /// use kms_providers::LocalProvider;
    ///
    /// let keys = tempfile::tempdir()?;
    /// let custodian = Custodian::builder()
    ///     .provider(LocalProvider::builder("gcp").key_dir(keys.path()).build()?)
    ///     .build()?;
    /// assert_eq!(custodian.provider_names().next().map(|n| n.as_str()), Some("gcp"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn provider(mut self, provider: impl KeyProvider + 'static) -> CustodianBuilder {
        self.providers.push(Arc::new(provider));
        self
    }

    /// Adds a provider the caller also keeps a handle to.
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::Arc;
    /// use custody_policy::Custodian;
    /// use kms_providers::{KeyProvider, LocalProvider};
    ///
    /// let keys = tempfile::tempdir()?;
    /// let gcp: Arc<dyn KeyProvider> = Arc::new(LocalProvider::builder("gcp").key_dir(keys.path()).build()?);
    /// let custodian = Custodian::builder().shared_provider(Arc::clone(&gcp)).build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn shared_provider(mut self, provider: Arc<dyn KeyProvider>) -> CustodianBuilder {
        self.providers.push(provider);
        self
    }

    /// Adds several providers.
    ///
    /// # Example
    ///
    /// ```
    /// use custody_policy::Custodian;
    /// use kms_providers::LocalProvider;
    ///
    /// let keys = tempfile::tempdir()?;
    /// let custodian = Custodian::builder()
    ///     .providers(LocalProvider::embedded_defaults(keys.path())?)
    ///     .build()?;
    /// assert_eq!(custodian.provider_names().count(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn providers<P: KeyProvider + 'static>(
        mut self,
        providers: impl IntoIterator<Item = P>,
    ) -> CustodianBuilder {
        for provider in providers {
            self.providers.push(Arc::new(provider));
        }
        self
    }

    /// Sets the write quorum (default [`WriteQuorum::All`]).
    ///
    /// # Example
    ///
    /// ```
    /// use custody_policy::{Custodian, WriteQuorum};
    ///
    /// let custodian = Custodian::builder().write_quorum(WriteQuorum::Threshold).build()?;
    /// assert_eq!(custodian.write_quorum(), WriteQuorum::Threshold);
    /// # Ok::<(), custody_policy::Error>(())
    /// ```
    pub fn write_quorum(mut self, quorum: WriteQuorum) -> CustodianBuilder {
        self.write_quorum = quorum;
        self
    }

    /// Checks the providers' names and builds the custodian.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidProviderName`] if a provider's name cannot appear in a custody mode;
    /// [`Error::DuplicateProvider`] if two providers share a name.
    ///
    /// # Example
    ///
    /// ```
    /// use custody_policy::{Custodian, Error};
    /// use kms_providers::LocalProvider;
    ///
    /// let keys = tempfile::tempdir()?;
    /// let err = Custodian::builder()
    ///     .provider(LocalProvider::builder("gcp").key_dir(keys.path()).build()?)
    ///     .provider(LocalProvider::builder("gcp").key_dir(keys.path()).build()?)
    ///     .build()
    ///     .unwrap_err();
    /// assert!(matches!(err, Error::DuplicateProvider { .. }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn build(self) -> Result<Custodian, Error> {
        let mut entries: Vec<Entry> = Vec::with_capacity(self.providers.len());
        for provider in self.providers {
            let name = ProviderName::new(provider.name())?;
            if entries.iter().any(|e| e.name == name) {
                return Err(Error::DuplicateProvider {
                    name: name.as_str().to_owned(),
                });
            }
            entries.push(Entry {
                name,
                provider,
                latency: LatencyEstimate::default(),
            });
        }
        Ok(Custodian {
            inner: Arc::new(Inner {
                entries,
                write_quorum: self.write_quorum,
            }),
        })
    }
}

/// Seals and opens secrets across key providers according to their custody mode.
///
/// The custodian is the only code that composes the split core, the envelope and the
/// providers. It keeps no secret state between calls (only per-provider latency estimates),
/// is cheap to clone (an `Arc`), and every method can run concurrently from many tasks. It
/// spawns nothing: provider calls run concurrently inside the caller's task.
///
/// - [`seal`](Self::seal): a fresh DEK per secret version, the envelope, the split, and every
///   provider share wrapped **concurrently**, each bound to its own slot's context.
/// - [`open`](Self::open): without a client share, a **hedged read** (all stored shares
///   requested at once, the key rebuilt from the first that verify); with one, the client
///   share plus the provider with the best latency estimate, falling back to the next on
///   failure. Lying providers are detected and named.
/// - [`repair`](Self::repair): rebuilds the shares a degraded write left pending, from the
///   same DEK, without re-encrypting, and only from shares that agree.
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
/// let ctx = SecretContext::new("vault-1", "db/password", 1, "password", CustodyMode::two_of_three_multi_hsm())?;
/// let (stored, _) = custodian.seal(&ctx, b"hunter2").await?.into_parts();
/// let opened = custodian.open(&ctx, &stored, None).await?;
/// assert_eq!(opened.plaintext().expose_secret(), b"hunter2");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Custodian {
    inner: Arc<Inner>,
}

struct Inner {
    entries: Vec<Entry>,
    write_quorum: WriteQuorum,
}

struct Entry {
    name: ProviderName,
    provider: Arc<dyn KeyProvider>,
    latency: LatencyEstimate,
}

impl Custodian {
    /// Starts configuring a custodian.
    ///
    /// # Example
    ///
    /// ```
    /// let custodian = custody_policy::Custodian::builder().build()?;
    /// assert_eq!(custodian.provider_names().count(), 0);
    /// # Ok::<(), custody_policy::Error>(())
    /// ```
    pub fn builder() -> CustodianBuilder {
        CustodianBuilder::default()
    }

    /// The configured providers' names.
    ///
    /// # Example
    ///
    /// ```
    /// use custody_policy::Custodian;
    /// use kms_providers::LocalProvider;
    ///
    /// let keys = tempfile::tempdir()?;
    /// let custodian = Custodian::builder()
    ///     .providers(LocalProvider::embedded_defaults(keys.path())?)
    ///     .build()?;
    /// let names: Vec<&str> = custodian.provider_names().map(|n| n.as_str()).collect();
    /// assert_eq!(names, ["gcp", "aws", "azure"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn provider_names(&self) -> impl Iterator<Item = &ProviderName> + '_ {
        self.inner.entries.iter().map(|e| &e.name)
    }

    /// The write quorum.
    ///
    /// # Example
    ///
    /// ```
    /// use custody_policy::{Custodian, WriteQuorum};
    ///
    /// assert_eq!(Custodian::builder().build()?.write_quorum(), WriteQuorum::All);
    /// # Ok::<(), custody_policy::Error>(())
    /// ```
    #[must_use]
    pub fn write_quorum(&self) -> WriteQuorum {
        self.inner.write_quorum
    }

    /// Checks that every provider `mode` names is configured; call it before a vault's mode is
    /// set, so a mode that cannot work is refused up front.
    ///
    /// # Errors
    ///
    /// [`Error::MissingProviders`] naming every missing provider.
    ///
    /// # Example
    ///
    /// ```
    /// use custody_policy::{Custodian, CustodyMode, Error};
    /// use kms_providers::LocalProvider;
    ///
    /// let keys = tempfile::tempdir()?;
    /// let custodian = Custodian::builder()
    ///     .provider(LocalProvider::builder("gcp").key_dir(keys.path()).build()?)
    ///     .build()?;
    /// assert!(custodian.check_mode(&CustodyMode::two_of_two_client_custody()).is_ok());
    /// let err = custodian.check_mode(&CustodyMode::two_of_three_multi_hsm()).unwrap_err();
    /// assert!(matches!(err, Error::MissingProviders { ref missing, .. } if missing.len() == 2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn check_mode(&self, mode: &CustodyMode) -> Result<(), Error> {
        mode.check_providers(self.provider_names())
    }

    /// The current unwrap-latency estimate of a provider (an exponentially weighted moving
    /// average; failures and cancelled calls push it up), or `None` before its first call.
    /// Client-share reads call the provider with the lowest estimate first.
    ///
    /// # Example
    ///
    /// ```
    /// use custody_policy::Custodian;
    /// use kms_providers::LocalProvider;
    ///
    /// let keys = tempfile::tempdir()?;
    /// let custodian = Custodian::builder()
    ///     .provider(LocalProvider::builder("gcp").key_dir(keys.path()).build()?)
    ///     .build()?;
    /// assert_eq!(custodian.latency_estimate("gcp"), None); // no read yet
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn latency_estimate(&self, provider: &str) -> Option<Duration> {
        self.inner
            .entries
            .iter()
            .find(|e| e.name.as_str() == provider)
            .and_then(|e| e.latency.get())
    }

    /// Seals `plaintext` as the secret version `ctx` names.
    ///
    /// Draws a fresh DEK, seals the envelope under it, splits it as the mode says (XOR for
    /// n-of-n, Shamir for t-of-n, nothing for `standard`), wraps every provider share
    /// concurrently under its own slot's [`WrapContext`], and returns what to store plus the
    /// client share, if the mode has one. The DEK and every share are wiped before this
    /// returns. With a write quorum below the share count, slots whose provider failed are
    /// recorded as pending (see [`Sealed::pending`]).
    ///
    /// # Errors
    ///
    /// [`Error::MissingProviders`] if the mode names providers that are not configured;
    /// [`Error::Envelope`] if the plaintext is too large or the OS random generator fails;
    /// [`Error::WriteQuorumNotMet`] if too few shares could be stored (nothing is sealed then).
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use custody_policy::{Custodian, CustodyMode, SecretContext, SlotState};
    /// use kms_providers::LocalProvider;
    ///
    /// let keys = tempfile::tempdir()?;
    /// let custodian = Custodian::builder()
    ///     .providers(LocalProvider::embedded_defaults(keys.path())?)
    ///     .build()?;
    /// let ctx = SecretContext::new("v", "p", 1, "password", CustodyMode::two_of_three_multi_hsm())?;
    /// let sealed = custodian.seal(&ctx, b"hunter2").await?;
    /// for row in sealed.stored().slots() {
    ///     assert!(matches!(row.state(), SlotState::Stored { .. }));
    /// }
    /// assert!(sealed.client_share().is_none());
    /// # Ok(()) }
    /// ```
    pub async fn seal(&self, ctx: &SecretContext, plaintext: &[u8]) -> Result<Sealed, Error> {
        let mode = ctx.mode();
        let targets = self.provider_targets(mode)?;
        let dek = Dek::generate().map_err(Error::Envelope)?;
        let envelope =
            envelope::seal(&dek, ctx.envelope_context(), plaintext).map_err(Error::Envelope)?;
        let shares = sharing::split(mode, &dek)?;
        drop(dek);

        let wraps = targets.iter().map(|&(slot, entry)| {
            let share = shares.get(slot.position());
            let wrap_context = ctx.wrap_context(slot);
            async move {
                let result = match share {
                    Some(share) => entry.provider.wrap(share.as_slice(), &wrap_context).await,
                    None => Err(internal(entry, "no share was split for this slot")),
                };
                (slot, entry, result)
            }
        });
        let results = join_all(wraps).await;

        // A context has a client tag exactly when its mode has a client slot, and the split
        // makes one share per slot, so a client-slot mode always yields a client share.
        let client_share = match (mode.client_slot(), ctx.client_share_tag()) {
            (Some(slot), Some(tag)) => shares
                .get(slot.position())
                .map(|share| ClientShare::new(slot, tag, share)),
            _ => None,
        };
        drop(shares);

        let mut rows = Vec::with_capacity(results.len());
        let mut pending = SlotFailures::default();
        for (slot, entry, result) in results {
            match result {
                Ok(wrapped) => rows.push(StoredSlot::stored(
                    slot,
                    entry.name.clone(),
                    wrapped.to_bytes(),
                )),
                Err(err) => {
                    rows.push(StoredSlot::pending(slot, entry.name.clone()));
                    pending.push(SlotFailure::new(
                        provider_slot(slot, entry),
                        SlotFailureCause::Provider(err),
                    ));
                }
            }
        }
        let stored_count = rows.len().saturating_sub(pending.len());
        let available = stored_count.saturating_add(usize::from(client_share.is_some()));
        let required = self.inner.write_quorum.required(mode);
        if available < usize::from(required) {
            return Err(Error::WriteQuorumNotMet {
                required,
                available: saturate(available),
                failures: pending,
            });
        }
        Ok(Sealed::new(
            StoredSecret::new(envelope.to_bytes(), rows),
            client_share,
            pending,
        ))
    }

    /// Opens the secret version `ctx` names from what the server stored, and the client share
    /// if the mode has one.
    ///
    /// Without a client slot, this is a **hedged read**: every stored share is requested at
    /// once and the key is rebuilt from the first `t` that arrive; each candidate key is
    /// checked against the envelope's key commitment, and if it fails, the other combinations
    /// are tried as more shares arrive. Calls still in flight when the key verifies are
    /// cancelled. With a client share, only `t - 1` providers are called (one, in the named
    /// modes), chosen by the lowest latency estimate; a failure or a key that does not verify
    /// calls the next provider, and only a combination with the client share concludes the
    /// read. A slot whose share is off the polynomial most shares agree on is reported as a
    /// liar ([`ReadReport::liars`](crate::ReadReport::liars)); see the crate documentation on
    /// liar detection for its limits.
    ///
    /// No plaintext is returned unless the key verified; in a mode with a client slot, also
    /// unless the client share is consistent with that key.
    ///
    /// # Errors
    ///
    /// - [`Error::ClientShareMissing`], [`Error::ClientShareMalformed`],
    ///   [`Error::ClientShareForeign`], [`Error::WrongClientShare`],
    ///   [`Error::UnexpectedClientShare`]: the client share;
    /// - [`Error::NotEnoughShares`]: too few shares obtained (provider errors as sources);
    /// - [`Error::KeyVerificationFailed`]: shares arrived but no combination rebuilds the key;
    /// - [`Error::MissingProviders`], [`Error::StoredSecretMismatch`]: configuration or stored
    ///   rows do not fit the mode;
    /// - [`Error::Envelope`]: the envelope bytes are malformed or its ciphertext was modified.
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
    ///     .providers(LocalProvider::embedded_defaults(keys.path())?)
    ///     .build()?;
    /// let ctx = SecretContext::new("v", "p", 1, "t", CustodyMode::two_of_three_client_custody())?;
    /// let (stored, client) = custodian.seal(&ctx, b"secret").await?.into_parts();
    ///
    /// assert!(matches!(custodian.open(&ctx, &stored, None).await, Err(Error::ClientShareMissing { .. })));
    /// let opened = custodian.open(&ctx, &stored, client.as_ref()).await?;
    /// assert_eq!(opened.plaintext().expose_secret(), b"secret");
    /// assert_eq!(opened.report().provider_calls(), 1);
    /// # Ok(()) }
    /// ```
    pub async fn open(
        &self,
        ctx: &SecretContext,
        stored: &StoredSecret,
        client_share: Option<&ClientShare>,
    ) -> Result<Opened, Error> {
        let envelope = Envelope::from_bytes(stored.envelope()).map_err(Error::Envelope)?;
        let gathered = self
            .gather(
                ctx,
                stored,
                &envelope,
                client_share,
                Thoroughness::FirstVerified,
            )
            .await?;
        let plaintext = envelope::open(&gathered.dek, ctx.envelope_context(), &envelope)
            .map_err(Error::Envelope)?;
        Ok(Opened::new(plaintext, gathered.report))
    }

    /// Rebuilds the shares a degraded write left pending and wraps them again.
    ///
    /// Unlike a read, a repair asks every stored share and waits for all of them. The key is
    /// rebuilt and verified against the envelope as [`open`](Self::open) does; each pending
    /// share is recomputed from `t` shares of the agreed polynomial (Shamir's
    /// `recover_share`: the same DEK, the same share, no re-encryption) and wrapped by its
    /// slot's provider under its slot's context, concurrently. Because a recomputed share is
    /// stored for good, the polynomial must be agreed by every share that arrived, or be the
    /// majority with at least one share beyond the `t` that define it. Store
    /// [`Repaired::stored`] in place of the old rows; the envelope is unchanged. Modes with a
    /// client slot need the client share here too.
    ///
    /// # Errors
    ///
    /// [`Error::NothingToRepair`] if no slot is pending; [`Error::DisputedShares`] if the
    /// shares disagree without a confirmed majority (nothing is wrapped then);
    /// [`Error::RepairFailed`] if no pending share could be wrapped; and the errors of
    /// [`open`](Self::open).
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use custody_policy::{Custodian, CustodyMode, SecretContext, WriteQuorum};
    /// use kms_providers::{FaultConfig, FaultInjector, LocalProvider};
    /// use std::sync::Arc;
    ///
    /// let keys = tempfile::tempdir()?;
    /// let azure = Arc::new(FaultInjector::new(
    ///     LocalProvider::builder("azure").key_dir(keys.path()).build()?,
    ///     FaultConfig::new(7),
    /// )?);
    /// let custodian = Custodian::builder()
    ///     .provider(LocalProvider::builder("gcp").key_dir(keys.path()).build()?)
    ///     .provider(LocalProvider::builder("aws").key_dir(keys.path()).build()?)
    ///     .shared_provider(azure.clone())
    ///     .write_quorum(WriteQuorum::Threshold)
    ///     .build()?;
    /// let ctx = SecretContext::new("v", "p", 1, "t", CustodyMode::two_of_three_multi_hsm())?;
    ///
    /// azure.set_outage(true);
    /// let sealed = custodian.seal(&ctx, b"secret").await?;
    /// assert_eq!(sealed.pending().len(), 1); // azure's share is pending
    ///
    /// azure.set_outage(false);
    /// let repaired = custodian.repair(&ctx, sealed.stored(), None).await?;
    /// assert_eq!(repaired.repaired().to_string(), "slot 3 (azure)");
    /// assert!(repaired.still_pending().is_empty());
    /// assert!(!repaired.stored().is_degraded());
    /// # Ok(()) }
    /// ```
    pub async fn repair(
        &self,
        ctx: &SecretContext,
        stored: &StoredSecret,
        client_share: Option<&ClientShare>,
    ) -> Result<Repaired, Error> {
        let mode = ctx.mode();
        let rows = self.slot_rows(mode, stored)?;
        let pending: Vec<(SlotIndex, &Entry)> = rows
            .iter()
            .filter(|(_, _, row)| row.is_pending())
            .map(|&(slot, entry, _)| (slot, entry))
            .collect();
        if pending.is_empty() {
            return Err(Error::NothingToRepair);
        }
        let envelope = Envelope::from_bytes(stored.envelope()).map_err(Error::Envelope)?;
        let gathered = self
            .gather(
                ctx,
                stored,
                &envelope,
                client_share,
                Thoroughness::EveryShare,
            )
            .await?;
        // A recomputed share is stored for good, so a repair demands more than a read: every
        // share agrees, or the majority polynomial is confirmed by at least one share beyond
        // the `t` that define it. A polynomial backed by exactly `t` shares while another
        // share disagrees cannot be told from one through colluding liars whose errors cancel
        // at the secret, and a share recomputed from that would be wrong forever.
        let confirmed = match gathered.agreement {
            Agreement::Unanimous => true,
            Agreement::Majority { support } => support > usize::from(mode.threshold()),
            Agreement::Tied => false,
        };
        if !confirmed {
            let mut disputed = gathered.report.disputed;
            for liar in gathered.report.liars.as_slice() {
                disputed.push(liar.clone());
            }
            return Err(Error::DisputedShares { disputed });
        }
        let verified: Vec<&ShareValue> = gathered.verified.iter().collect();

        let mut recovered = Vec::with_capacity(pending.len());
        for &(slot, entry) in &pending {
            recovered.push((slot, entry, sharing::recover(mode, &verified, slot)?));
        }
        let wraps = recovered.iter().map(|(slot, entry, share)| {
            let wrap_context = ctx.wrap_context(*slot);
            async move {
                let result = entry.provider.wrap(share.as_slice(), &wrap_context).await;
                (*slot, *entry, result)
            }
        });
        let results = join_all(wraps).await;
        drop(recovered);

        let mut rows = Vec::new();
        let mut repaired = SlotList::default();
        let mut still_pending = SlotFailures::default();
        for (slot, entry, result) in results {
            match result {
                Ok(wrapped) => {
                    rows.push(StoredSlot::stored(
                        slot,
                        entry.name.clone(),
                        wrapped.to_bytes(),
                    ));
                    repaired.push(provider_slot(slot, entry));
                }
                Err(err) => still_pending.push(SlotFailure::new(
                    provider_slot(slot, entry),
                    SlotFailureCause::Provider(err),
                )),
            }
        }
        if repaired.is_empty() {
            return Err(Error::RepairFailed {
                failures: still_pending,
            });
        }
        Ok(Repaired {
            stored: stored.with_slots(rows),
            repaired,
            still_pending,
            read: gathered.report,
        })
    }

    /// The configured provider of each provider slot of `mode`.
    fn provider_targets(&self, mode: &CustodyMode) -> Result<Vec<(SlotIndex, &Entry)>, Error> {
        self.check_mode(mode)?;
        mode.provider_slots()
            .map(|(slot, name)| {
                self.entry(name)
                    .map(|entry| (slot, entry))
                    .ok_or_else(|| Error::MissingProviders {
                        mode: mode.clone(),
                        missing: vec![name.clone()],
                    })
            })
            .collect()
    }

    fn entry(&self, name: &ProviderName) -> Option<&Entry> {
        self.inner.entries.iter().find(|e| &e.name == name)
    }

    /// Matches the stored rows to the mode's provider slots: exactly one row per provider
    /// slot, naming that slot's provider.
    fn slot_rows<'a>(
        &'a self,
        mode: &CustodyMode,
        stored: &'a StoredSecret,
    ) -> Result<Vec<(SlotIndex, &'a Entry, &'a StoredSlot)>, Error> {
        let targets = self.provider_targets(mode)?;
        let mismatch = |reason: String| Error::StoredSecretMismatch {
            mode: mode.clone(),
            reason,
        };
        for row in stored.slots() {
            match mode.slot(row.index()).as_ref().map(Slot::holder) {
                None => {
                    return Err(mismatch(format!(
                        "there is a row for slot {}, which the mode does not have",
                        row.index()
                    )));
                }
                Some(SlotHolder::Client) => {
                    return Err(mismatch(format!(
                        "there is a row for slot {}, the client's, whose share is never stored",
                        row.index()
                    )));
                }
                Some(SlotHolder::Provider(name)) if name != row.provider() => {
                    return Err(mismatch(format!(
                        "the row for slot {} names provider {}, but the mode puts {} there",
                        row.index(),
                        row.provider(),
                        name
                    )));
                }
                Some(_) => {}
            }
        }
        targets
            .into_iter()
            .map(|(slot, entry)| {
                let mut rows = stored.slots().iter().filter(|row| row.index() == slot);
                match (rows.next(), rows.next()) {
                    (Some(row), None) => Ok((slot, entry, row)),
                    (None, _) => Err(mismatch(format!("slot {slot} ({}) has no row", entry.name))),
                    (Some(_), Some(_)) => Err(mismatch(format!(
                        "slot {slot} ({}) has more than one row",
                        entry.name
                    ))),
                }
            })
            .collect()
    }

    /// Obtains shares and rebuilds the verified DEK: the read shared by `open` and `repair`.
    ///
    /// A read (`Thoroughness::FirstVerified`) concludes as soon as a combination verifies. A
    /// repair (`Thoroughness::EveryShare`) asks every stored share and waits for all of them,
    /// so that the shares it recomputes come from the polynomial the most shares agree on.
    async fn gather(
        &self,
        ctx: &SecretContext,
        stored: &StoredSecret,
        envelope: &Envelope,
        client_share: Option<&ClientShare>,
        thoroughness: Thoroughness,
    ) -> Result<Gathered, Error> {
        let mode = ctx.mode();
        let rows = self.slot_rows(mode, stored)?;

        let client = match (mode.client_slot(), client_share) {
            (Some(slot), None) => return Err(Error::ClientShareMissing { slot }),
            (None, Some(_)) => {
                return Err(Error::UnexpectedClientShare { mode: mode.clone() });
            }
            (Some(_), Some(share)) => {
                share.check_context(ctx)?;
                Some(ShareValue {
                    slot: share.slot(),
                    bytes: Zeroizing::new(share.expose_secret().to_vec()),
                })
            }
            (None, None) => None,
        };

        let mut report = ReadReport::default();
        let mut candidates = Vec::with_capacity(rows.len());
        for (slot, entry, row) in rows {
            let failure = |cause| SlotFailure::new(provider_slot(slot, entry), cause);
            match row.wrapped().map(WrappedShare::from_bytes) {
                None => report.failures.push(failure(SlotFailureCause::Pending)),
                Some(Err(err)) => report
                    .failures
                    .push(failure(SlotFailureCause::Unreadable(err))),
                Some(Ok(wrapped)) => candidates.push(Candidate {
                    slot,
                    entry,
                    wrapped,
                    wrap_context: ctx.wrap_context(slot),
                }),
            }
        }

        let threshold = usize::from(mode.threshold());
        let client_mode = client.is_some();
        let thorough = thoroughness == Thoroughness::EveryShare;
        // With a client share, the fastest providers first (unmeasured ones sort first, so
        // each gets measured); without one every candidate is called at once and order only
        // decides who is polled first.
        if client_mode {
            candidates.sort_by_key(|c| (c.entry.latency.sort_key(), c.slot));
        }
        let mut want = if client_mode && !thorough {
            threshold.saturating_sub(1)
        } else {
            candidates.len()
        };
        let mut reserve: VecDeque<Candidate<'_>> = candidates.into();
        let mut search = Search::new(mode, envelope, ctx.envelope_context(), client);
        let mut in_flight = FuturesUnordered::new();
        let mut started: Vec<(SlotIndex, &Entry, Instant)> = Vec::new();
        let mut found: Option<Found> = None;

        loop {
            while search.provider_shares().saturating_add(in_flight.len()) < want {
                let Some(candidate) = reserve.pop_front() else {
                    break;
                };
                report.provider_calls = report.provider_calls.saturating_add(1);
                started.push((candidate.slot, candidate.entry, Instant::now()));
                in_flight.push(unwrap_share(candidate));
            }
            if in_flight.is_empty() {
                if reserve.is_empty() || found.is_some() {
                    break;
                }
                // Every share asked for arrived (or failed) and none rebuilt the key: ask one
                // more provider, for another combination.
                want = want.saturating_add(1);
                continue;
            }
            let Some((slot, entry, elapsed, result)) = in_flight.next().await else {
                break;
            };
            started.retain(|(s, _, _)| *s != slot);
            let share = match result {
                Ok(share) => {
                    entry.latency.observe(elapsed);
                    share
                }
                Err(err) => {
                    entry.latency.observe_failure();
                    report.failures.push(SlotFailure::new(
                        provider_slot(slot, entry),
                        SlotFailureCause::Provider(err),
                    ));
                    continue;
                }
            };
            if share.len() != SHARE_LEN {
                entry.latency.observe_failure();
                report.failures.push(SlotFailure::new(
                    provider_slot(slot, entry),
                    SlotFailureCause::WrongLength {
                        len: share.len(),
                        expected: SHARE_LEN,
                    },
                ));
                continue;
            }
            let value = ShareValue {
                slot,
                bytes: share.into_zeroizing(),
            };
            if found.is_some() {
                // A thorough read already has its key: later shares only join the vote.
                search.push(value);
                continue;
            }
            found = search.add(value)?;
            if found.is_some() && !thorough {
                break;
            }
        }

        let Some(found) = found else {
            return Err(search.failure(report));
        };
        // The answers still in flight are not needed: cancel them, and remember that those
        // providers took at least this long.
        drop(in_flight);
        let now = Instant::now();
        for (_, entry, start) in started {
            entry
                .latency
                .observe_at_least(now.saturating_duration_since(start));
        }
        let gathered = search.conclude(found, report)?;
        // A liar's answers are useless however fast they come: rank it like a provider that
        // failed, so client-share reads stop choosing it.
        for liar in gathered.report.liars() {
            if let Some(entry) = liar.holder().provider_name().and_then(|n| self.entry(n)) {
                entry.latency.observe_failure();
            }
        }
        Ok(gathered)
    }
}

/// How long a gather goes on once a combination verifies.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Thoroughness {
    /// Stop at the first combination that may conclude the read (hedged reads).
    FirstVerified,
    /// Ask every available share and wait for all of them (repairs).
    EveryShare,
}

impl fmt::Debug for Custodian {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let providers: Vec<_> = self
            .inner
            .entries
            .iter()
            .map(|e| (e.name.as_str(), e.latency.get()))
            .collect();
        f.debug_struct("Custodian")
            .field("providers", &providers)
            .field("write_quorum", &self.inner.write_quorum)
            .finish()
    }
}

/// A provider slot whose wrapped share can be requested.
struct Candidate<'a> {
    slot: SlotIndex,
    entry: &'a Entry,
    wrapped: WrappedShare,
    wrap_context: WrapContext,
}

/// One unwrap call, timed. Every call site uses this one function, so every future in the
/// `FuturesUnordered` has the same type.
async fn unwrap_share(
    candidate: Candidate<'_>,
) -> (
    SlotIndex,
    &Entry,
    Duration,
    Result<UnwrappedShare, kms_providers::Error>,
) {
    let start = Instant::now();
    let result = candidate
        .entry
        .provider
        .unwrap(&candidate.wrapped, &candidate.wrap_context)
        .await;
    (candidate.slot, candidate.entry, start.elapsed(), result)
}

/// The verified key and the shares that rebuilt it.
struct Gathered {
    dek: Dek,
    /// `t` shares of the agreed polynomial (repair recomputes pending shares from them).
    verified: Vec<ShareValue>,
    report: ReadReport,
    agreement: Agreement,
}

/// How the shares that arrived agree on the polynomial that rebuilt the key.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Agreement {
    /// Every share that arrived lies on it.
    Unanimous,
    /// Some do not; it is the one polynomial with the most agreeing shares (`support`).
    Majority { support: usize },
    /// Two or more polynomials open the envelope with as many agreeing shares each.
    Tied,
}

/// The positions (in arrival order) of a combination that verified.
struct Found {
    dek: Dek,
    members: Vec<usize>,
}

/// The combination search over the shares that have arrived.
///
/// Every time a share arrives, each `t`-combination that includes it (and so has not been
/// tried before) is rebuilt and checked against the envelope's key commitment, in
/// lexicographic order of arrival positions. The client share, when given, is at position 0,
/// so combinations with it are tried first, and only a combination with it can conclude a
/// client-share read: one of provider shares alone that verifies is only remembered, as proof
/// against the client share if nothing with it ever verifies.
struct Search<'a> {
    mode: &'a CustodyMode,
    threshold: usize,
    envelope: &'a Envelope,
    context: &'a envelope::Context,
    /// Shares in arrival order; the client share first, when there is one.
    arrived: Vec<ShareValue>,
    has_client: bool,
    /// Whether some combination without the client share was tried.
    tried_without_client: bool,
    /// Whether some combination without the client share verified.
    verified_without_client: bool,
}

impl<'a> Search<'a> {
    fn new(
        mode: &'a CustodyMode,
        envelope: &'a Envelope,
        context: &'a envelope::Context,
        client: Option<ShareValue>,
    ) -> Search<'a> {
        let has_client = client.is_some();
        Search {
            mode,
            threshold: usize::from(mode.threshold()),
            envelope,
            context,
            arrived: client.into_iter().collect(),
            has_client,
            tried_without_client: false,
            verified_without_client: false,
        }
    }

    /// How many provider shares have arrived.
    fn provider_shares(&self) -> usize {
        self.arrived
            .len()
            .saturating_sub(usize::from(self.has_client))
    }

    /// Adds an arrived share and tries every new combination; the first that verifies and
    /// may conclude the read.
    fn add(&mut self, share: ShareValue) -> Result<Option<Found>, Error> {
        self.arrived.push(share);
        let newest = self.arrived.len().saturating_sub(1);
        let Some(others) = self.threshold.checked_sub(1) else {
            return Ok(None);
        };
        if self.arrived.len() < self.threshold {
            return Ok(None);
        }
        let mut combination: Vec<usize> = (0..others).collect();
        loop {
            let members: Vec<usize> = combination
                .iter()
                .copied()
                .chain(core::iter::once(newest))
                .collect();
            let with_client = !self.has_client || members.contains(&0);
            if !with_client {
                self.tried_without_client = true;
            }
            // Once provider shares alone have verified, more such combinations prove nothing
            // new; skipping them keeps a client-share read's search small.
            let worth_trying = with_client || !self.verified_without_client;
            if worth_trying && let Some(dek) = self.verify(&members)? {
                if with_client {
                    return Ok(Some(Found { dek, members }));
                }
                self.verified_without_client = true;
            }
            if !next_combination(&mut combination, newest) {
                return Ok(None);
            }
        }
    }

    /// Adds a share that arrived after the key was found (thorough reads): it only takes part
    /// in the attribution vote.
    fn push(&mut self, share: ShareValue) {
        self.arrived.push(share);
    }

    /// Rebuilds the key from the shares at `members`; the key if the envelope accepts it.
    fn verify(&self, members: &[usize]) -> Result<Option<Dek>, Error> {
        let shares: Vec<&ShareValue> = members
            .iter()
            .filter_map(|&i| self.arrived.get(i))
            .collect();
        let dek = sharing::rebuild(self.mode, &shares)?;
        Ok(self
            .envelope
            .verify_key(&dek, self.context)
            .is_ok()
            .then_some(dek))
    }

    /// The positions of the arrived shares that lie on the polynomial of `members` (which
    /// are among them). XOR and whole-DEK reads have no spare share: all agree.
    fn support(&self, members: &[usize]) -> Result<Vec<usize>, Error> {
        if self.mode.scheme() != SplitScheme::Shamir {
            return Ok((0..self.arrived.len()).collect());
        }
        let verified: Vec<&ShareValue> = members
            .iter()
            .filter_map(|&i| self.arrived.get(i))
            .collect();
        let mut support = Vec::with_capacity(self.arrived.len());
        for (position, share) in self.arrived.iter().enumerate() {
            if members.contains(&position) || sharing::is_consistent(self.mode, &verified, share)? {
                support.push(position);
            }
        }
        Ok(support)
    }

    /// When the arrived shares disagree: the support of every distinct polynomial that opens
    /// the envelope (two distinct polynomials share fewer than `t` points, so their supports
    /// differ). Costs one key check per `t`-combination of the arrived shares, and runs only
    /// when some share is wrong.
    fn verifying_supports(&self) -> Result<Vec<Vec<usize>>, Error> {
        let mut supports: Vec<Vec<usize>> = Vec::new();
        let mut combination: Vec<usize> = (0..self.threshold).collect();
        let limit = self.arrived.len();
        loop {
            let known = supports
                .iter()
                .any(|s| combination.iter().all(|m| s.contains(m)));
            if !known && self.verify(&combination)?.is_some() {
                supports.push(self.support(&combination)?);
            }
            if !next_combination(&mut combination, limit) {
                return Ok(supports);
            }
        }
    }

    /// Attributes any disagreement and builds the result.
    ///
    /// Every polynomial that opens the envelope yields the same key (the commitment binds
    /// it), so the plaintext never depends on attribution. Liars are the shares off the
    /// polynomial that most arrived shares agree on; if two polynomials tie (possible only
    /// with several wrong shares whose errors cancel at the secret), nobody is named and the
    /// shares off either are reported as disputed. In a client-share read the client share
    /// must be on the winning polynomial.
    fn conclude(self, found: Found, mut report: ReadReport) -> Result<Gathered, Error> {
        let first = self.support(&found.members)?;
        let unanimous = first.len() == self.arrived.len();
        let agreed: Option<Vec<usize>> = if unanimous {
            Some(first)
        } else {
            let supports = self.verifying_supports()?;
            let best = supports.iter().map(Vec::len).max().unwrap_or(0);
            let mut top = supports.iter().filter(|s| s.len() == best);
            match (top.next(), top.next()) {
                (Some(winner), None) => Some(winner.clone()),
                _ => {
                    let in_all_top = |position: &usize| {
                        supports
                            .iter()
                            .filter(|s| s.len() == best)
                            .all(|s| s.contains(position))
                    };
                    for (position, share) in self.arrived.iter().enumerate() {
                        if !in_all_top(&position)
                            && let Some(slot) = self.mode.slot(share.slot)
                        {
                            report.disputed.push(slot);
                        }
                    }
                    None
                }
            }
        };
        if let Some(agreed) = &agreed {
            if self.has_client && !agreed.contains(&0) {
                // The shares that agree on the key outvote the client share: the custody rule
                // forbids releasing the plaintext.
                return Err(Error::WrongClientShare {
                    confirmed: true,
                    unverified: SlotList::default(),
                });
            }
            for (position, share) in self.arrived.iter().enumerate() {
                if !agreed.contains(&position)
                    && let Some(slot) = self.mode.slot(share.slot)
                {
                    report.liars.push(slot);
                }
            }
        }
        // The shares handed on (to recompute pending shares in a repair, and reported as
        // used) are `t` shares of the agreed polynomial: the found combination when it is the
        // agreed one or when nothing was agreed, else the first `t` agreeing shares.
        let mut members = match &agreed {
            Some(agreed) if !found.members.iter().all(|m| agreed.contains(m)) => {
                agreed.iter().copied().take(self.threshold).collect()
            }
            _ => found.members,
        };
        members.sort_unstable();
        for &position in &members {
            if let Some(slot) = self
                .arrived
                .get(position)
                .and_then(|s| self.mode.slot(s.slot))
            {
                report.used.push(slot);
            }
        }
        // Reports list slots in index order, whatever order the shares arrived in.
        report.used.sort();
        report.liars.sort();
        report.disputed.sort();
        let agreement = match &agreed {
            Some(_) if unanimous => Agreement::Unanimous,
            Some(agreed) => Agreement::Majority {
                support: agreed.len(),
            },
            None => Agreement::Tied,
        };
        let mut arrived: Vec<Option<ShareValue>> = self.arrived.into_iter().map(Some).collect();
        let verified = members
            .iter()
            .filter_map(|&i| arrived.get_mut(i).and_then(Option::take))
            .collect();
        Ok(Gathered {
            dek: found.dek,
            verified,
            report,
            agreement,
        })
    }

    /// The error when no more shares can come and nothing concluded the read.
    fn failure(self, report: ReadReport) -> Error {
        let slots_of = |shares: &[ShareValue], providers_only: bool| {
            SlotList::from(
                shares
                    .iter()
                    .filter(|s| !providers_only || self.mode.client_slot() != Some(s.slot))
                    .filter_map(|s| self.mode.slot(s.slot))
                    .collect::<Vec<_>>(),
            )
        };
        if self.arrived.len() < self.threshold {
            return Error::NotEnoughShares {
                needed: self.mode.threshold(),
                available: saturate(self.arrived.len()),
                failures: report.failures,
            };
        }
        if self.has_client && self.verified_without_client {
            // Provider shares alone rebuilt the key, and no combination with the client share
            // did, even with every provider share available.
            return Error::WrongClientShare {
                confirmed: true,
                unverified: SlotList::default(),
            };
        }
        if self.has_client && !self.tried_without_client {
            return Error::WrongClientShare {
                confirmed: false,
                unverified: slots_of(&self.arrived, true),
            };
        }
        Error::KeyVerificationFailed {
            tried: slots_of(&self.arrived, false),
        }
    }
}

/// Advances `combination` (strictly increasing positions below `limit`) to the next one in
/// lexicographic order; `false` when it was the last.
fn next_combination(combination: &mut [usize], limit: usize) -> bool {
    let k = combination.len();
    // Find the rightmost position that can still move right.
    let mut i = k;
    while i > 0 {
        i -= 1;
        let max_here = limit.saturating_sub(k.saturating_sub(i));
        if combination.get(i).is_some_and(|&v| v < max_here) {
            let base = combination.get(i).copied().unwrap_or(0).saturating_add(1);
            for (offset, slot) in combination.iter_mut().skip(i).enumerate() {
                *slot = base.saturating_add(offset);
            }
            return true;
        }
    }
    false
}

fn provider_slot(slot: SlotIndex, entry: &Entry) -> Slot {
    Slot::new(slot, SlotHolder::Provider(entry.name.clone()))
}

fn internal(entry: &Entry, reason: &str) -> kms_providers::Error {
    kms_providers::Error::Internal {
        provider: entry.name.as_str().to_owned(),
        reason: reason.to_owned(),
        source: None,
    }
}

/// Counts of shares are at most 16 (`MAX_SLOTS`), so they always fit a `u8`.
fn saturate(count: usize) -> u8 {
    u8::try_from(count).unwrap_or(u8::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_combinations(limit: usize, k: usize) -> Vec<Vec<usize>> {
        let mut combination: Vec<usize> = (0..k).collect();
        let mut out = vec![combination.clone()];
        while next_combination(&mut combination, limit) {
            out.push(combination.clone());
        }
        out
    }

    #[test]
    fn combinations_are_enumerated_once_in_order() {
        assert_eq!(all_combinations(3, 1), [[0], [1], [2]]);
        assert_eq!(
            all_combinations(4, 2),
            [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]
        );
        assert_eq!(all_combinations(5, 3).len(), 10);
        assert_eq!(all_combinations(16, 8).len(), 12_870);
        assert_eq!(all_combinations(2, 0), [Vec::<usize>::new()]);
    }

    #[test]
    fn quorum_is_clamped_to_the_mode() {
        let mode = CustodyMode::custom(
            3,
            ["a", "b", "c", "d", "e"].map(|n| SlotHolder::provider(n).unwrap()),
        )
        .unwrap();
        assert_eq!(WriteQuorum::AtLeast(0).required(&mode), 3);
        assert_eq!(WriteQuorum::AtLeast(4).required(&mode), 4);
        assert_eq!(WriteQuorum::AtLeast(99).required(&mode), 5);
        assert_eq!(WriteQuorum::Threshold.required(&CustodyMode::standard()), 1);
    }
}
