//! Custody modes as types, their API strings, billing tiers and the vault's one-time choice.

use core::fmt;
use core::str::FromStr;

use crate::Error;
use crate::error::truncated;
use crate::slot::{CLIENT, MAX_SLOTS, ProviderName, Slot, SlotHolder, SlotIndex};

/// The family a custody mode belongs to: one of the four named modes of the API, or a general
/// t-of-n layout.
///
/// # Example
///
/// ```
/// use custody_policy::{CustodyMode, ModeKind};
///
/// assert_eq!(CustodyMode::two_of_three_multi_hsm().kind(), ModeKind::TwoOfThreeMultiHsm);
/// assert_eq!(ModeKind::TwoOfThreeMultiHsm.api_name(), Some("2of3_multi_hsm"));
/// assert_eq!(ModeKind::Custom.api_name(), None);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ModeKind {
    /// `standard`: no split; one provider wraps the whole DEK. Default slot: `[gcp]`.
    Standard,
    /// `2of2_client_custody`: XOR 2-of-2; one provider and the client. Default slots:
    /// `[gcp, client]`.
    TwoOfTwoClientCustody,
    /// `2of3_multi_hsm`: Shamir 2-of-3 over three providers. Default slots: `[gcp, aws, azure]`.
    TwoOfThreeMultiHsm,
    /// `2of3_client_custody`: Shamir 2-of-3 over two providers and the client. Default slots:
    /// `[gcp, aws, client]`.
    TwoOfThreeClientCustody,
    /// A custom t-of-n layout over named provider slots and at most one client slot, written
    /// `{t}of{n}:{slot},{slot},…` (for example `3of5:gcp,aws,azure,hsm,client`).
    Custom,
}

impl ModeKind {
    /// The four named modes, in the order the API documents them.
    ///
    /// # Example
    ///
    /// ```
    /// use custody_policy::ModeKind;
    ///
    /// let names: Vec<_> = ModeKind::NAMED.iter().filter_map(|k| k.api_name()).collect();
    /// assert_eq!(names, ["standard", "2of2_client_custody", "2of3_multi_hsm", "2of3_client_custody"]);
    /// ```
    pub const NAMED: [ModeKind; 4] = [
        ModeKind::Standard,
        ModeKind::TwoOfTwoClientCustody,
        ModeKind::TwoOfThreeMultiHsm,
        ModeKind::TwoOfThreeClientCustody,
    ];

    /// The API string of a named mode; `None` for [`ModeKind::Custom`], whose string is
    /// built from its threshold and slots.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(custody_policy::ModeKind::Standard.api_name(), Some("standard"));
    /// ```
    #[must_use]
    pub const fn api_name(self) -> Option<&'static str> {
        match self {
            ModeKind::Standard => Some("standard"),
            ModeKind::TwoOfTwoClientCustody => Some("2of2_client_custody"),
            ModeKind::TwoOfThreeMultiHsm => Some("2of3_multi_hsm"),
            ModeKind::TwoOfThreeClientCustody => Some("2of3_client_custody"),
            ModeKind::Custom => None,
        }
    }

    /// The named mode an API string names.
    fn from_api_name(name: &str) -> Option<ModeKind> {
        ModeKind::NAMED
            .into_iter()
            .find(|kind| kind.api_name() == Some(name))
    }

    /// Threshold and default slots of a named mode (`client` marks the client slot).
    fn defaults(self) -> Option<(u8, &'static [&'static str])> {
        match self {
            ModeKind::Standard => Some((1, &["gcp"])),
            ModeKind::TwoOfTwoClientCustody => Some((2, &["gcp", CLIENT])),
            ModeKind::TwoOfThreeMultiHsm => Some((2, &["gcp", "aws", "azure"])),
            ModeKind::TwoOfThreeClientCustody => Some((2, &["gcp", "aws", CLIENT])),
            ModeKind::Custom => None,
        }
    }
}

/// How a mode splits the DEK.
///
/// # Example
///
/// ```
/// use custody_policy::{CustodyMode, SplitScheme};
///
/// assert_eq!(CustodyMode::standard().scheme(), SplitScheme::Whole);
/// assert_eq!(CustodyMode::two_of_two_client_custody().scheme(), SplitScheme::Xor);
/// assert_eq!(CustodyMode::two_of_three_multi_hsm().scheme(), SplitScheme::Shamir);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SplitScheme {
    /// No split: one provider wraps the whole DEK (`standard`).
    Whole,
    /// XOR n-of-n: every share is needed. Used for every layout whose threshold equals its
    /// share count (`2of2_client_custody`, and `{n}of{n}` layouts): with no spare share there is
    /// nothing for Shamir to add, and XOR gives the same perfect secrecy with no arithmetic.
    Xor,
    /// Shamir t-of-n over GF(2^8), x-coordinate = slot index (every layout with t < n).
    Shamir,
}

/// A custody mode: how a vault's DEKs are split and who holds each share.
///
/// A mode is a threshold `t` and an ordered list of `n` slots, each held by a named key
/// provider or by the client. It is written and read as the API strings
/// `standard`, `2of2_client_custody`, `2of3_multi_hsm` and `2of3_client_custody` (with their
/// default providers), a named mode with other providers (`2of3_multi_hsm:gcp,aws,hsm`), or a
/// general layout (`3of5:gcp,aws,azure,hsm,client`). [`Display`](fmt::Display) prints the
/// canonical string and [`FromStr`] reads it back: `mode.to_string().parse()` is `mode`.
///
/// The mode is bound into every envelope and every wrapped share (see
/// [`SecretContext`](crate::SecretContext)), so a secret sealed under one mode never opens
/// under another.
///
/// # Example
///
/// ```
/// use custody_policy::{CustodyMode, SlotHolder};
///
/// let mode: CustodyMode = "2of3_client_custody".parse()?;
/// assert_eq!(mode, CustodyMode::two_of_three_client_custody());
/// assert_eq!((mode.threshold(), mode.share_count()), (2, 3));
///
/// let custom = CustodyMode::custom(3, [
///     SlotHolder::provider("gcp")?, SlotHolder::provider("aws")?, SlotHolder::provider("azure")?,
///     SlotHolder::provider("hsm")?, SlotHolder::Client,
/// ])?;
/// assert_eq!(custom.to_string(), "3of5:gcp,aws,azure,hsm,client");
/// assert_eq!(custom.to_string().parse::<CustodyMode>()?, custom);
/// # Ok::<(), custody_policy::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CustodyMode {
    kind: ModeKind,
    threshold: u8,
    slots: Vec<SlotHolder>,
}

impl CustodyMode {
    /// `standard`: one provider, `gcp`, wraps the whole DEK.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(custody_policy::CustodyMode::standard().to_string(), "standard");
    /// ```
    #[must_use]
    pub fn standard() -> CustodyMode {
        CustodyMode::named_default(ModeKind::Standard)
    }

    /// `2of2_client_custody`: XOR 2-of-2 between `gcp` and the client.
    ///
    /// # Example
    ///
    /// ```
    /// let mode = custody_policy::CustodyMode::two_of_two_client_custody();
    /// assert_eq!(mode.to_string(), "2of2_client_custody");
    /// assert_eq!(mode.client_slot().map(|s| s.get()), Some(2));
    /// ```
    #[must_use]
    pub fn two_of_two_client_custody() -> CustodyMode {
        CustodyMode::named_default(ModeKind::TwoOfTwoClientCustody)
    }

    /// `2of3_multi_hsm`: Shamir 2-of-3 over `gcp`, `aws` and `azure`.
    ///
    /// # Example
    ///
    /// ```
    /// let mode = custody_policy::CustodyMode::two_of_three_multi_hsm();
    /// assert_eq!(mode.to_string(), "2of3_multi_hsm");
    /// assert_eq!(mode.client_slot(), None);
    /// ```
    #[must_use]
    pub fn two_of_three_multi_hsm() -> CustodyMode {
        CustodyMode::named_default(ModeKind::TwoOfThreeMultiHsm)
    }

    /// `2of3_client_custody`: Shamir 2-of-3 over `gcp`, `aws` and the client.
    ///
    /// # Example
    ///
    /// ```
    /// let mode = custody_policy::CustodyMode::two_of_three_client_custody();
    /// assert_eq!(mode.to_string(), "2of3_client_custody");
    /// assert_eq!(mode.client_slot().map(|s| s.get()), Some(3));
    /// ```
    #[must_use]
    pub fn two_of_three_client_custody() -> CustodyMode {
        CustodyMode::named_default(ModeKind::TwoOfThreeClientCustody)
    }

    /// A general t-of-n layout over the given slots (slot `i` is the `i`-th holder, from 1).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidMode`] unless `2 <= t <= n <= 16`, at most one slot is the client's,
    /// and no provider appears twice.
    ///
    /// # Example
    ///
    /// ```
    /// use custody_policy::{CustodyMode, SlotHolder, SplitScheme};
    ///
    /// let mode = CustodyMode::custom(2, [SlotHolder::provider("hsm-a")?, SlotHolder::provider("hsm-b")?])?;
    /// assert_eq!(mode.to_string(), "2of2:hsm-a,hsm-b");
    /// assert_eq!(mode.scheme(), SplitScheme::Xor);
    /// assert!(CustodyMode::custom(3, [SlotHolder::Client, SlotHolder::provider("gcp")?]).is_err());
    /// # Ok::<(), custody_policy::Error>(())
    /// ```
    pub fn custom(
        t: u8,
        slots: impl IntoIterator<Item = SlotHolder>,
    ) -> Result<CustodyMode, Error> {
        let mode = CustodyMode {
            kind: ModeKind::Custom,
            threshold: t,
            slots: slots.into_iter().collect(),
        };
        mode.check().map_err(|reason| Error::InvalidMode {
            input: truncated(&mode.to_string()),
            reason,
        })?;
        Ok(mode)
    }

    /// The same mode with other providers in its provider slots, in slot order; the client
    /// slot, if any, stays where it is.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidProviderName`] for a bad name; [`Error::InvalidMode`] if the number of
    /// names differs from the number of provider slots, or a name repeats.
    ///
    /// # Example
    ///
    /// ```
    /// use custody_policy::CustodyMode;
    ///
    /// let mode = CustodyMode::two_of_three_multi_hsm().with_providers(["gcp", "aws", "hsm-eu"])?;
    /// assert_eq!(mode.to_string(), "2of3_multi_hsm:gcp,aws,hsm-eu");
    /// let mode = CustodyMode::two_of_two_client_custody().with_providers(["pkcs11"])?;
    /// assert_eq!(mode.to_string(), "2of2_client_custody:pkcs11,client");
    /// # Ok::<(), custody_policy::Error>(())
    /// ```
    pub fn with_providers<I, S>(&self, providers: I) -> Result<CustodyMode, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut names = providers
            .into_iter()
            .map(ProviderName::new)
            .collect::<Result<Vec<_>, _>>()?
            .into_iter();
        let expected = self.provider_slots().count();
        let mut slots = Vec::with_capacity(self.slots.len());
        let mut given = 0usize;
        for holder in &self.slots {
            match holder {
                SlotHolder::Client => slots.push(SlotHolder::Client),
                SlotHolder::Provider(_) => {
                    given = given.saturating_add(1);
                    match names.next() {
                        Some(name) => slots.push(SlotHolder::Provider(name)),
                        None => break,
                    }
                }
            }
        }
        let extra = names.count();
        let mode = CustodyMode {
            kind: self.kind,
            threshold: self.threshold,
            slots,
        };
        if given != expected || extra > 0 || mode.slots.len() != self.slots.len() {
            return Err(Error::InvalidMode {
                input: truncated(&self.to_string()),
                reason: format!(
                    "this mode has {expected} provider slot(s); give exactly that many provider names"
                ),
            });
        }
        mode.check().map_err(|reason| Error::InvalidMode {
            input: truncated(&mode.to_string()),
            reason,
        })?;
        Ok(mode)
    }

    /// The mode's family.
    ///
    /// # Example
    ///
    /// ```
    /// use custody_policy::{CustodyMode, ModeKind};
    ///
    /// assert_eq!(CustodyMode::standard().kind(), ModeKind::Standard);
    /// ```
    #[must_use]
    pub fn kind(&self) -> ModeKind {
        self.kind
    }

    /// How many shares rebuild the DEK (1 for `standard`).
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(custody_policy::CustodyMode::two_of_three_multi_hsm().threshold(), 2);
    /// ```
    #[must_use]
    pub fn threshold(&self) -> u8 {
        self.threshold
    }

    /// How many shares (slots) the DEK is split into (1 for `standard`).
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(custody_policy::CustodyMode::two_of_three_multi_hsm().share_count(), 3);
    /// ```
    #[must_use]
    pub fn share_count(&self) -> u8 {
        // `check` bounds the slot count by MAX_SLOTS (16), so it always fits.
        u8::try_from(self.slots.len()).unwrap_or(u8::MAX)
    }

    /// How the DEK is split.
    ///
    /// # Example
    ///
    /// ```
    /// use custody_policy::{CustodyMode, SplitScheme};
    ///
    /// assert_eq!(CustodyMode::two_of_three_client_custody().scheme(), SplitScheme::Shamir);
    /// ```
    #[must_use]
    pub fn scheme(&self) -> SplitScheme {
        if self.kind == ModeKind::Standard {
            SplitScheme::Whole
        } else if usize::from(self.threshold) == self.slots.len() {
            SplitScheme::Xor
        } else {
            SplitScheme::Shamir
        }
    }

    /// Every slot, in index order.
    ///
    /// # Example
    ///
    /// ```
    /// let mode = custody_policy::CustodyMode::two_of_two_client_custody();
    /// let holders: Vec<String> = mode.slots().map(|s| s.holder().to_string()).collect();
    /// assert_eq!(holders, ["gcp", "client"]);
    /// ```
    pub fn slots(&self) -> impl Iterator<Item = Slot> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(position, holder)| {
                SlotIndex::from_position(position).map(|index| Slot::new(index, holder.clone()))
            })
    }

    /// The slot at `index`, if the mode has it.
    ///
    /// # Example
    ///
    /// ```
    /// use custody_policy::{CustodyMode, SlotIndex};
    ///
    /// let mode = CustodyMode::two_of_three_multi_hsm();
    /// let second = mode.slot(SlotIndex::new(2).ok_or("range")?).ok_or("missing")?;
    /// assert_eq!(second.holder().to_string(), "aws");
    /// assert!(mode.slot(SlotIndex::new(4).ok_or("range")?).is_none());
    /// # Ok::<(), &str>(())
    /// ```
    #[must_use]
    pub fn slot(&self, index: SlotIndex) -> Option<Slot> {
        self.slots
            .get(index.position())
            .map(|holder| Slot::new(index, holder.clone()))
    }

    /// The provider slots, in index order.
    ///
    /// # Example
    ///
    /// ```
    /// let mode = custody_policy::CustodyMode::two_of_three_client_custody();
    /// let names: Vec<&str> = mode.provider_slots().map(|(_, name)| name.as_str()).collect();
    /// assert_eq!(names, ["gcp", "aws"]);
    /// ```
    pub fn provider_slots(&self) -> impl Iterator<Item = (SlotIndex, &ProviderName)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(position, holder)| {
                let index = SlotIndex::from_position(position)?;
                holder.provider_name().map(|name| (index, name))
            })
    }

    /// The client's slot, if the mode has one. Such a mode opens a secret only with the
    /// client share.
    ///
    /// # Example
    ///
    /// ```
    /// use custody_policy::CustodyMode;
    ///
    /// assert_eq!(CustodyMode::two_of_three_client_custody().client_slot().map(|s| s.get()), Some(3));
    /// assert_eq!(CustodyMode::standard().client_slot(), None);
    /// ```
    #[must_use]
    pub fn client_slot(&self) -> Option<SlotIndex> {
        self.slots
            .iter()
            .position(SlotHolder::is_client)
            .and_then(SlotIndex::from_position)
    }

    /// Checks that every provider the mode names is among `configured`.
    ///
    /// # Errors
    ///
    /// [`Error::MissingProviders`] naming every missing provider.
    ///
    /// # Example
    ///
    /// ```
    /// use custody_policy::{CustodyMode, Error};
    ///
    /// let mode = CustodyMode::two_of_three_multi_hsm();
    /// assert!(mode.check_providers(["gcp", "aws", "azure", "hsm"]).is_ok());
    /// let err = mode.check_providers(["gcp"]).unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "custody mode 2of3_multi_hsm needs key providers that are not configured: aws, azure; \
    ///      configure them or choose a mode that uses only the configured providers"
    /// );
    /// ```
    pub fn check_providers<I, S>(&self, configured: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let configured: Vec<S> = configured.into_iter().collect();
        let missing: Vec<ProviderName> = self
            .provider_slots()
            .filter(|(_, name)| !configured.iter().any(|c| c.as_ref() == name.as_str()))
            .map(|(_, name)| name.clone())
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Error::MissingProviders {
                mode: self.clone(),
                missing,
            })
        }
    }

    /// The label bound into every wrapped share's [`kms_providers::WrapContext`]: the API name
    /// of a named mode, or `{t}of{n}`. It is at most 19 bytes, within the 64 bytes a wrap
    /// context allows; the full layout (provider names included) is bound by the envelope,
    /// and each slot's provider is pinned by its own KEK.
    pub(crate) fn wrap_label(&self) -> String {
        match self.kind.api_name() {
            Some(name) => name.to_owned(),
            None => format!("{}of{}", self.threshold, self.slots.len()),
        }
    }

    /// The default layout of a named mode.
    fn named_default(kind: ModeKind) -> CustodyMode {
        let (threshold, slots) = kind.defaults().unwrap_or((1, &["gcp"]));
        CustodyMode {
            kind,
            threshold,
            slots: slots
                .iter()
                .map(|name| {
                    if *name == CLIENT {
                        SlotHolder::Client
                    } else {
                        SlotHolder::Provider(ProviderName::from_static(name))
                    }
                })
                .collect(),
        }
    }

    /// Whether the slots are a named mode's defaults (then the mode prints as its bare name).
    fn has_default_slots(&self) -> bool {
        self.kind.defaults().is_some_and(|(_, defaults)| {
            defaults.len() == self.slots.len()
                && defaults
                    .iter()
                    .zip(&self.slots)
                    .all(|(d, s)| *d == s.to_string())
        })
    }

    /// Every rule a mode obeys; the reason for the first one broken.
    fn check(&self) -> Result<(), String> {
        let n = self.slots.len();
        let t = usize::from(self.threshold);
        if n > usize::from(MAX_SLOTS) {
            return Err(format!("{n} slots: at most {MAX_SLOTS} are allowed"));
        }
        let clients = self.slots.iter().filter(|h| h.is_client()).count();
        if clients > 1 {
            return Err("at most one slot can be the client's".to_owned());
        }
        for (i, holder) in self.slots.iter().enumerate() {
            if let SlotHolder::Provider(name) = holder {
                let repeated = self
                    .slots
                    .iter()
                    .skip(i.saturating_add(1))
                    .any(|other| other.provider_name() == Some(name));
                if repeated {
                    return Err(format!(
                        "provider {name} holds more than one slot: each slot needs its own provider"
                    ));
                }
            }
        }
        match self.kind.defaults() {
            Some((threshold, defaults)) => {
                let same_shape = t == usize::from(threshold)
                    && n == defaults.len()
                    && defaults
                        .iter()
                        .zip(&self.slots)
                        .all(|(d, s)| (*d == CLIENT) == s.is_client());
                if !same_shape {
                    let shape: Vec<&str> = defaults
                        .iter()
                        .map(|d| if *d == CLIENT { CLIENT } else { "<provider>" })
                        .collect();
                    return Err(format!(
                        "{} has the slots [{}]",
                        self.kind.api_name().unwrap_or("this mode"),
                        shape.join(", ")
                    ));
                }
            }
            None => {
                if t < 2 {
                    return Err(format!(
                        "threshold {t} is too low: a split needs at least 2 shares (use `standard` for one provider)"
                    ));
                }
                if t > n {
                    return Err(format!(
                        "threshold {t} is above the {n} slots: the DEK could never be rebuilt"
                    ));
                }
            }
        }
        Ok(())
    }
}

impl fmt::Display for CustodyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind.api_name() {
            Some(name) if self.has_default_slots() => return f.write_str(name),
            Some(name) => f.write_str(name)?,
            None => write!(f, "{}of{}", self.threshold, self.slots.len())?,
        }
        for (i, holder) in self.slots.iter().enumerate() {
            f.write_str(if i == 0 { ":" } else { "," })?;
            fmt::Display::fmt(holder, f)?;
        }
        Ok(())
    }
}

impl fmt::Debug for CustodyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CustodyMode({self})")
    }
}

impl FromStr for CustodyMode {
    type Err = Error;

    /// Parses a mode string: a named mode (`2of3_multi_hsm`), a named mode with its provider
    /// slots spelled out (`2of3_multi_hsm:gcp,aws,hsm`), or a general layout
    /// (`3of5:gcp,aws,azure,hsm,client`). Exact spelling: lowercase names, no spaces, decimal
    /// counts without leading zeros.
    fn from_str(input: &str) -> Result<CustodyMode, Error> {
        let invalid = |reason: String| Error::InvalidMode {
            input: truncated(input),
            reason,
        };
        let (head, list) = match input.split_once(':') {
            Some((head, list)) => (head, Some(list)),
            None => (input, None),
        };
        let slots = list
            .map(|list| {
                list.split(',')
                    .map(SlotHolder::parse)
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()
            .map_err(|err| invalid(format!("bad slot list: {err}")))?;

        if let Some(kind) = ModeKind::from_api_name(head) {
            let default = CustodyMode::named_default(kind);
            let Some(slots) = slots else {
                return Ok(default);
            };
            let mode = CustodyMode {
                kind,
                threshold: default.threshold,
                slots,
            };
            mode.check().map_err(invalid)?;
            return Ok(mode);
        }
        let Some((t, n)) = parse_count(head) else {
            return Err(invalid(
                "unknown custody mode: use standard, 2of2_client_custody, 2of3_multi_hsm, \
                 2of3_client_custody, or {t}of{n}:{slot},… for a general layout"
                    .to_owned(),
            ));
        };
        let Some(slots) = slots else {
            return Err(invalid(format!(
                "a {t}of{n} layout lists its {n} slots: {t}of{n}:<provider>,…[,client]"
            )));
        };
        if slots.len() != usize::from(n) {
            return Err(invalid(format!(
                "{t}of{n} lists {} slot(s), expected {n}",
                slots.len()
            )));
        }
        let mode = CustodyMode {
            kind: ModeKind::Custom,
            threshold: t,
            slots,
        };
        mode.check().map_err(invalid)?;
        Ok(mode)
    }
}

/// Parses `{t}of{n}`: two decimal numbers from 1 to 255 without leading zeros.
fn parse_count(head: &str) -> Option<(u8, u8)> {
    let (t, n) = head.split_once("of")?;
    Some((parse_small(t)?, parse_small(n)?))
}

fn parse_small(digits: &str) -> Option<u8> {
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !(digits.len() > 1 && digits.starts_with('0'));
    if canonical { digits.parse().ok() } else { None }
}

/// A billing plan, which decides the custody mode of a vault's treasury.
///
/// | tier | treasury custody |
/// |---|---|
/// | `free` | `standard` |
/// | `pro`, `team` | `2of2_client_custody` |
/// | `business`, `enterprise` | `2of3_multi_hsm` |
///
/// # Example
///
/// ```
/// use custody_policy::{BillingTier, CustodyMode};
///
/// let tier: BillingTier = "team".parse()?;
/// assert_eq!(tier.treasury_custody(), CustodyMode::two_of_two_client_custody());
/// assert_eq!(BillingTier::Enterprise.to_string(), "enterprise");
/// # Ok::<(), custody_policy::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BillingTier {
    /// `free`.
    Free,
    /// `pro`.
    Pro,
    /// `team`.
    Team,
    /// `business`.
    Business,
    /// `enterprise`.
    Enterprise,
}

impl BillingTier {
    /// Every tier, cheapest first.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(custody_policy::BillingTier::ALL.len(), 5);
    /// ```
    pub const ALL: [BillingTier; 5] = [
        BillingTier::Free,
        BillingTier::Pro,
        BillingTier::Team,
        BillingTier::Business,
        BillingTier::Enterprise,
    ];

    /// The tier's API string.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(custody_policy::BillingTier::Business.as_str(), "business");
    /// ```
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            BillingTier::Free => "free",
            BillingTier::Pro => "pro",
            BillingTier::Team => "team",
            BillingTier::Business => "business",
            BillingTier::Enterprise => "enterprise",
        }
    }

    /// The custody mode of the treasury (the vault holding the account's own keys) for this
    /// tier, with the default providers.
    ///
    /// # Example
    ///
    /// ```
    /// use custody_policy::{BillingTier, CustodyMode};
    ///
    /// assert_eq!(BillingTier::Free.treasury_custody(), CustodyMode::standard());
    /// assert_eq!(BillingTier::Pro.treasury_custody(), CustodyMode::two_of_two_client_custody());
    /// assert_eq!(BillingTier::Business.treasury_custody(), CustodyMode::two_of_three_multi_hsm());
    /// ```
    #[must_use]
    pub fn treasury_custody(self) -> CustodyMode {
        match self {
            BillingTier::Free => CustodyMode::standard(),
            BillingTier::Pro | BillingTier::Team => CustodyMode::two_of_two_client_custody(),
            BillingTier::Business | BillingTier::Enterprise => {
                CustodyMode::two_of_three_multi_hsm()
            }
        }
    }
}

impl fmt::Display for BillingTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BillingTier {
    type Err = Error;

    fn from_str(input: &str) -> Result<BillingTier, Error> {
        BillingTier::ALL
            .into_iter()
            .find(|tier| tier.as_str() == input)
            .ok_or_else(|| Error::UnknownBillingTier {
                input: truncated(input),
            })
    }
}

/// A vault's custody mode, which can be set once and never changed.
///
/// Changing the mode of a vault that holds secrets would strand every sealed version (their
/// envelopes and wrapped shares are bound to the old mode), so the type makes the choice
/// one-way: [`set_mode`](Self::set_mode) succeeds only on a vault without a mode. The server
/// loads the stored mode with [`with_mode`](Self::with_mode).
///
/// # Example
///
/// ```
/// use custody_policy::{CustodyMode, Error, VaultCustody};
///
/// let mut vault = VaultCustody::new();
/// vault.set_mode(CustodyMode::two_of_three_multi_hsm())?;
/// let err = vault.set_mode(CustodyMode::standard()).unwrap_err();
/// assert!(matches!(err, Error::ModeAlreadySet { .. }));
/// assert_eq!(vault.mode(), Some(&CustodyMode::two_of_three_multi_hsm()));
/// # Ok::<(), Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VaultCustody {
    mode: Option<CustodyMode>,
}

impl VaultCustody {
    /// A vault whose mode is not chosen yet.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(custody_policy::VaultCustody::new().mode(), None);
    /// ```
    #[must_use]
    pub fn new() -> VaultCustody {
        VaultCustody::default()
    }

    /// A vault whose mode was chosen earlier (as loaded from storage).
    ///
    /// # Example
    ///
    /// ```
    /// use custody_policy::{CustodyMode, VaultCustody};
    ///
    /// let vault = VaultCustody::with_mode("2of3_multi_hsm".parse()?);
    /// assert!(vault.mode().is_some());
    /// # Ok::<(), custody_policy::Error>(())
    /// ```
    #[must_use]
    pub fn with_mode(mode: CustodyMode) -> VaultCustody {
        VaultCustody { mode: Some(mode) }
    }

    /// The vault's mode, once set.
    ///
    /// # Example
    ///
    /// ```
    /// use custody_policy::{CustodyMode, VaultCustody};
    ///
    /// let vault = VaultCustody::with_mode(CustodyMode::standard());
    /// assert_eq!(vault.mode(), Some(&CustodyMode::standard()));
    /// ```
    #[must_use]
    pub fn mode(&self) -> Option<&CustodyMode> {
        self.mode.as_ref()
    }

    /// Sets the mode of a vault that has none.
    ///
    /// # Errors
    ///
    /// [`Error::ModeAlreadySet`] if the vault already has a mode, whether or not it is the same
    /// one: a repeated set is a caller bug worth surfacing, not a no-op.
    ///
    /// # Example
    ///
    /// ```
    /// use custody_policy::{CustodyMode, VaultCustody};
    ///
    /// let mut vault = VaultCustody::new();
    /// let mode = vault.set_mode(CustodyMode::two_of_two_client_custody())?;
    /// assert_eq!(mode.to_string(), "2of2_client_custody");
    /// # Ok::<(), custody_policy::Error>(())
    /// ```
    pub fn set_mode(&mut self, mode: CustodyMode) -> Result<&CustodyMode, Error> {
        match &self.mode {
            Some(current) => Err(Error::ModeAlreadySet {
                current: current.clone(),
                requested: mode,
            }),
            None => Ok(self.mode.insert(mode)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preset_defaults_are_valid_and_canonical() {
        for kind in ModeKind::NAMED {
            let mode = CustodyMode::named_default(kind);
            mode.check().unwrap();
            for (_, name) in mode.provider_slots() {
                assert_eq!(&ProviderName::new(name.as_str()).unwrap(), name);
            }
            let name = kind.api_name().unwrap();
            assert_eq!(mode.to_string(), name);
            assert_eq!(name.parse::<CustodyMode>().unwrap(), mode);
            assert_eq!(mode.wrap_label(), name);
        }
    }

    #[test]
    fn wrap_label_of_a_general_layout_is_bounded() {
        let slots: Vec<SlotHolder> = (0..MAX_SLOTS)
            .map(|i| SlotHolder::provider(format!("provider-number-{i:02}-abcdefghijkl")).unwrap())
            .collect();
        let mode = CustodyMode::custom(MAX_SLOTS, slots).unwrap();
        assert_eq!(mode.wrap_label(), "16of16");
        assert!(mode.wrap_label().len() <= kms_providers::MAX_CUSTODY_MODE_LEN);
        assert!(mode.to_string().len() <= envelope::Context::MAX_FIELD_LEN);
    }

    #[test]
    fn count_parser_is_strict() {
        assert_eq!(parse_count("3of5"), Some((3, 5)));
        assert_eq!(parse_count("16of16"), Some((16, 16)));
        for bad in [
            "03of5", "3of05", "of5", "3of", "+3of5", "3 of 5", "3of5of", "256of300",
        ] {
            assert_eq!(parse_count(bad), None, "{bad}");
        }
    }
}
