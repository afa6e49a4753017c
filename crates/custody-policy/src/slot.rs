//! Slots: the positions of a custody mode, who holds each one, and their names.

use core::fmt;
use core::num::NonZeroU8;

use crate::Error;

/// The most slots (shares) a custody mode may have: 16.
///
/// Every slot but the client's is a distinct, independently operated key provider; sixteen is
/// far beyond any real deployment, and the bound keeps a mode's canonical string (which every
/// envelope binds) short.
///
/// # Example
///
/// ```
/// use custody_policy::{CustodyMode, MAX_SLOTS, SlotHolder};
///
/// let names: Vec<String> = (0..=MAX_SLOTS).map(|i| format!("p{i}")).collect();
/// let too_many = names.iter().map(|n| SlotHolder::provider(n)).collect::<Result<Vec<_>, _>>()?;
/// assert!(CustodyMode::custom(2, too_many).is_err());
/// # Ok::<(), custody_policy::Error>(())
/// ```
pub const MAX_SLOTS: u8 = 16;

/// The name reserved for the client slot in mode strings (`2of2_client_custody:gcp,client`).
pub(crate) const CLIENT: &str = "client";

/// The position of a share in a custody mode, from 1 to [`MAX_SLOTS`].
///
/// The slot index is also the share's x-coordinate in a Shamir split and the share index every
/// wrapped share is bound to, so a wrapped share moved to another slot does not unwrap. A
/// standard (unsplit) vault has one slot, index 1.
///
/// # Example
///
/// ```
/// use custody_policy::SlotIndex;
///
/// let slot = SlotIndex::new(2).ok_or("out of range")?;
/// assert_eq!(slot.get(), 2);
/// assert_eq!(slot.to_string(), "2");
/// assert!(SlotIndex::new(0).is_none());
/// assert!(SlotIndex::new(17).is_none());
/// # Ok::<(), &str>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SlotIndex(NonZeroU8);

impl SlotIndex {
    /// The first slot.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(custody_policy::SlotIndex::FIRST.get(), 1);
    /// ```
    pub const FIRST: SlotIndex = SlotIndex(NonZeroU8::MIN);

    /// The slot at `index`, or `None` outside `1..=`[`MAX_SLOTS`].
    ///
    /// # Example
    ///
    /// ```
    /// use custody_policy::{MAX_SLOTS, SlotIndex};
    ///
    /// assert!(SlotIndex::new(MAX_SLOTS).is_some());
    /// assert!(SlotIndex::new(MAX_SLOTS + 1).is_none());
    /// ```
    #[must_use]
    pub const fn new(index: u8) -> Option<SlotIndex> {
        if index > MAX_SLOTS {
            return None;
        }
        match NonZeroU8::new(index) {
            Some(index) => Some(SlotIndex(index)),
            None => None,
        }
    }

    /// The index as a number (1 to [`MAX_SLOTS`]).
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(custody_policy::SlotIndex::FIRST.get(), 1);
    /// ```
    #[must_use]
    pub const fn get(self) -> u8 {
        self.0.get()
    }

    /// The slot at a zero-based position in a mode's slot list.
    pub(crate) fn from_position(position: usize) -> Option<SlotIndex> {
        u8::try_from(position)
            .ok()
            .and_then(|p| p.checked_add(1))
            .and_then(SlotIndex::new)
    }

    /// The zero-based position of this slot in a mode's slot list.
    pub(crate) fn position(self) -> usize {
        usize::from(self.get()).saturating_sub(1)
    }

    /// The same index as a Shamir x-coordinate.
    pub(crate) fn share_index(self) -> gf256_shamir::ShareIndex {
        gf256_shamir::ShareIndex::from(self.0)
    }
}

impl fmt::Display for SlotIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.get(), f)
    }
}

/// The name of a configured key provider instance, as custody modes refer to it (`gcp`,
/// `aws`, `hsm-eu-1`).
///
/// 1 to 32 characters from `A-Z a-z 0-9 . _ -`, not starting with `.`; `client` is reserved for
/// the client slot. The name must equal the provider's
/// [`KeyProvider::name`](kms_providers::KeyProvider::name).
///
/// # Example
///
/// ```
/// use custody_policy::ProviderName;
///
/// let name = ProviderName::new("hsm-eu-1")?;
/// assert_eq!(name.as_str(), "hsm-eu-1");
/// assert!(ProviderName::new("client").is_err());
/// assert!(ProviderName::new("has space").is_err());
/// # Ok::<(), custody_policy::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProviderName(String);

impl ProviderName {
    /// The longest name, in bytes: 32.
    ///
    /// # Example
    ///
    /// ```
    /// use custody_policy::ProviderName;
    ///
    /// assert!(ProviderName::new("p".repeat(ProviderName::MAX_LEN)).is_ok());
    /// assert!(ProviderName::new("p".repeat(ProviderName::MAX_LEN + 1)).is_err());
    /// ```
    pub const MAX_LEN: usize = 32;

    /// Checks and wraps a provider name.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidProviderName`] for an empty or longer than 32-byte name, a character
    /// outside `A-Z a-z 0-9 . _ -`, a leading `.`, or the reserved name `client`.
    ///
    /// # Example
    ///
    /// ```
    /// use custody_policy::{Error, ProviderName};
    ///
    /// let err = ProviderName::new("").unwrap_err();
    /// assert!(matches!(err, Error::InvalidProviderName { .. }));
    /// ```
    pub fn new(name: impl Into<String>) -> Result<ProviderName, Error> {
        let name = name.into();
        let reason = if name.is_empty() || name.len() > Self::MAX_LEN {
            Some("a provider name is 1 to 32 characters long")
        } else if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            Some("a provider name uses only A-Z, a-z, 0-9, '.', '_' and '-'")
        } else if name.starts_with('.') {
            Some("a provider name must not start with '.'")
        } else if name == CLIENT {
            Some("\"client\" is reserved for the client slot")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(Error::InvalidProviderName {
                name: crate::error::truncated(&name),
                reason,
            }),
            None => Ok(ProviderName(name)),
        }
    }

    /// A name known to be valid at compile time (the presets' defaults); a unit test checks
    /// each one against [`ProviderName::new`].
    pub(crate) fn from_static(name: &'static str) -> ProviderName {
        ProviderName(name.to_owned())
    }

    /// The name.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(custody_policy::ProviderName::new("gcp")?.as_str(), "gcp");
    /// # Ok::<(), custody_policy::Error>(())
    /// ```
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProviderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ProviderName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Who holds the share of a slot: a named key provider, which wraps it, or the client, who is
/// handed it once and keeps it.
///
/// # Example
///
/// ```
/// use custody_policy::SlotHolder;
///
/// let gcp = SlotHolder::provider("gcp")?;
/// assert_eq!(gcp.to_string(), "gcp");
/// assert_eq!(SlotHolder::Client.to_string(), "client");
/// assert!(SlotHolder::Client.is_client());
/// # Ok::<(), custody_policy::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SlotHolder {
    /// A configured key provider wraps this slot's share; the wrapped share is stored.
    Provider(ProviderName),
    /// The client keeps this slot's share; the server never stores it.
    Client,
}

impl SlotHolder {
    /// A provider slot, checking the name.
    ///
    /// # Errors
    ///
    /// As [`ProviderName::new`].
    ///
    /// # Example
    ///
    /// ```
    /// let holder = custody_policy::SlotHolder::provider("aws")?;
    /// assert!(!holder.is_client());
    /// # Ok::<(), custody_policy::Error>(())
    /// ```
    pub fn provider(name: impl Into<String>) -> Result<SlotHolder, Error> {
        ProviderName::new(name).map(SlotHolder::Provider)
    }

    /// Whether this is the client slot.
    ///
    /// # Example
    ///
    /// ```
    /// assert!(custody_policy::SlotHolder::Client.is_client());
    /// ```
    #[must_use]
    pub fn is_client(&self) -> bool {
        matches!(self, SlotHolder::Client)
    }

    /// The provider's name, for a provider slot.
    ///
    /// # Example
    ///
    /// ```
    /// use custody_policy::SlotHolder;
    ///
    /// assert_eq!(SlotHolder::provider("gcp")?.provider_name().map(|n| n.as_str()), Some("gcp"));
    /// assert_eq!(SlotHolder::Client.provider_name(), None);
    /// # Ok::<(), custody_policy::Error>(())
    /// ```
    #[must_use]
    pub fn provider_name(&self) -> Option<&ProviderName> {
        match self {
            SlotHolder::Provider(name) => Some(name),
            SlotHolder::Client => None,
        }
    }

    /// Parses one entry of a mode string's slot list: `client` or a provider name.
    pub(crate) fn parse(entry: &str) -> Result<SlotHolder, Error> {
        if entry == CLIENT {
            Ok(SlotHolder::Client)
        } else {
            SlotHolder::provider(entry)
        }
    }
}

impl fmt::Display for SlotHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlotHolder::Provider(name) => f.write_str(name.as_str()),
            SlotHolder::Client => f.write_str(CLIENT),
        }
    }
}

/// One slot of a custody mode: its index and who holds its share. Errors and reports name
/// slots this way (`slot 2 (aws)`).
///
/// # Example
///
/// ```
/// use custody_policy::CustodyMode;
///
/// let mode = CustodyMode::two_of_three_client_custody();
/// let slots: Vec<String> = mode.slots().map(|s| s.to_string()).collect();
/// assert_eq!(slots, ["slot 1 (gcp)", "slot 2 (aws)", "slot 3 (client)"]);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Slot {
    index: SlotIndex,
    holder: SlotHolder,
}

impl Slot {
    pub(crate) fn new(index: SlotIndex, holder: SlotHolder) -> Slot {
        Slot { index, holder }
    }

    /// The slot's index.
    ///
    /// # Example
    ///
    /// ```
    /// let mode = custody_policy::CustodyMode::two_of_two_client_custody();
    /// let last = mode.slots().last().ok_or("no slots")?;
    /// assert_eq!(last.index().get(), 2);
    /// # Ok::<(), &str>(())
    /// ```
    #[must_use]
    pub fn index(&self) -> SlotIndex {
        self.index
    }

    /// Who holds the slot's share.
    ///
    /// # Example
    ///
    /// ```
    /// let mode = custody_policy::CustodyMode::two_of_two_client_custody();
    /// let last = mode.slots().last().ok_or("no slots")?;
    /// assert!(last.holder().is_client());
    /// # Ok::<(), &str>(())
    /// ```
    #[must_use]
    pub fn holder(&self) -> &SlotHolder {
        &self.holder
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "slot {} ({})", self.index, self.holder)
    }
}

/// A list of slots, displayed as `slot 1 (gcp), slot 3 (azure)` (or `none`): the form errors
/// and reports use.
///
/// # Example
///
/// ```
/// use custody_policy::{CustodyMode, SlotList};
///
/// let list = SlotList::from(CustodyMode::two_of_three_multi_hsm().slots().collect::<Vec<_>>());
/// assert_eq!(list.to_string(), "slot 1 (gcp), slot 2 (aws), slot 3 (azure)");
/// assert_eq!(list.len(), 3);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlotList(Vec<Slot>);

impl SlotList {
    /// The slots, in order.
    ///
    /// # Example
    ///
    /// ```
    /// use custody_policy::{CustodyMode, SlotList};
    ///
    /// let list = SlotList::from(CustodyMode::standard().slots().collect::<Vec<_>>());
    /// assert_eq!(list.as_slice()[0].index().get(), 1);
    /// ```
    #[must_use]
    pub fn as_slice(&self) -> &[Slot] {
        &self.0
    }

    /// How many slots the list holds.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(custody_policy::SlotList::default().len(), 0);
    /// ```
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the list is empty.
    ///
    /// # Example
    ///
    /// ```
    /// assert!(custody_policy::SlotList::default().is_empty());
    /// ```
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the list holds the slot at `index`.
    ///
    /// # Example
    ///
    /// ```
    /// use custody_policy::{CustodyMode, SlotIndex, SlotList};
    ///
    /// let list = SlotList::from(CustodyMode::standard().slots().collect::<Vec<_>>());
    /// assert!(list.contains(SlotIndex::FIRST));
    /// ```
    #[must_use]
    pub fn contains(&self, index: SlotIndex) -> bool {
        self.0.iter().any(|slot| slot.index == index)
    }

    /// The slot indices, in order.
    ///
    /// # Example
    ///
    /// ```
    /// use custody_policy::{CustodyMode, SlotList};
    ///
    /// let list = SlotList::from(CustodyMode::two_of_two_client_custody().slots().collect::<Vec<_>>());
    /// let indices: Vec<u8> = list.indices().map(|i| i.get()).collect();
    /// assert_eq!(indices, [1, 2]);
    /// ```
    pub fn indices(&self) -> impl Iterator<Item = SlotIndex> + '_ {
        self.0.iter().map(|slot| slot.index)
    }

    pub(crate) fn push(&mut self, slot: Slot) {
        self.0.push(slot);
    }

    pub(crate) fn sort(&mut self) {
        self.0.sort_by_key(Slot::index);
    }
}

impl From<Vec<Slot>> for SlotList {
    fn from(slots: Vec<Slot>) -> SlotList {
        SlotList(slots)
    }
}

impl fmt::Display for SlotList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (i, slot) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            fmt::Display::fmt(slot, f)?;
        }
        Ok(())
    }
}

impl<'a> IntoIterator for &'a SlotList {
    type Item = &'a Slot;
    type IntoIter = core::slice::Iter<'a, Slot>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_index_range_and_positions() {
        assert!(SlotIndex::new(0).is_none());
        for i in 1..=MAX_SLOTS {
            let slot = SlotIndex::new(i).unwrap();
            assert_eq!(slot.get(), i);
            assert_eq!(SlotIndex::from_position(slot.position()), Some(slot));
            assert_eq!(slot.share_index().get(), i);
        }
        assert!(SlotIndex::new(MAX_SLOTS + 1).is_none());
        assert!(SlotIndex::from_position(usize::from(MAX_SLOTS)).is_none());
        assert!(SlotIndex::from_position(usize::MAX).is_none());
    }

    #[test]
    fn provider_names_are_checked() {
        for good in ["gcp", "aws", "azure", "hsm-eu-1", "a.b_c", "X9"] {
            assert_eq!(ProviderName::new(good).unwrap().as_str(), good);
        }
        for bad in [
            "",
            ".hidden",
            "client",
            "white space",
            "é",
            "a/b",
            "a:b",
            "a,b",
        ] {
            assert!(
                matches!(
                    ProviderName::new(bad),
                    Err(Error::InvalidProviderName { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(ProviderName::new("x".repeat(33)).is_err());
    }

    #[test]
    fn slot_list_display() {
        let gcp = Slot::new(SlotIndex::FIRST, SlotHolder::provider("gcp").unwrap());
        let client = Slot::new(SlotIndex::new(2).unwrap(), SlotHolder::Client);
        assert_eq!(SlotList::default().to_string(), "none");
        assert_eq!(
            SlotList::from(vec![gcp, client]).to_string(),
            "slot 1 (gcp), slot 2 (client)"
        );
    }
}
