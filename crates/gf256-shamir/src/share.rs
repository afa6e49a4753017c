//! Shares and the small public types around them.

use core::cell::RefCell;
use core::fmt;
use core::num::NonZeroU8;

use subtle::{Choice, ConstantTimeEq};
use zeroize::{ZeroizeOnDrop, Zeroizing};

use crate::error::Error;

/// The x-coordinate of a share: `1..=255`, never zero.
///
/// The share at x = 0 would be the secret itself, so zero is unrepresentable: a forged share
/// "at 0" cannot be passed to a combine. Indices are public; they may be logged and compared
/// freely.
///
/// # Example
///
/// ```
/// use gf256_shamir::ShareIndex;
///
/// let x = ShareIndex::new(3).expect("non-zero");
/// assert_eq!(x.get(), 3);
/// assert!(ShareIndex::new(0).is_none());
/// assert!(ShareIndex::try_from(0u8).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShareIndex(NonZeroU8);

impl ShareIndex {
    /// The smallest index, 1.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(gf256_shamir::ShareIndex::MIN.get(), 1);
    /// ```
    pub const MIN: ShareIndex = ShareIndex(NonZeroU8::MIN);

    /// The largest index, 255.
    ///
    /// # Example
    ///
    /// ```
    /// assert_eq!(gf256_shamir::ShareIndex::MAX.get(), 255);
    /// ```
    pub const MAX: ShareIndex = ShareIndex(NonZeroU8::MAX);

    /// The index `x`, or `None` for 0.
    ///
    /// # Example
    ///
    /// ```
    /// use gf256_shamir::ShareIndex;
    ///
    /// assert_eq!(ShareIndex::new(255).map(ShareIndex::get), Some(255));
    /// assert_eq!(ShareIndex::new(0), None);
    /// ```
    #[must_use]
    pub const fn new(x: u8) -> Option<ShareIndex> {
        match NonZeroU8::new(x) {
            Some(x) => Some(ShareIndex(x)),
            None => None,
        }
    }

    /// The x-coordinate as a byte (never 0).
    ///
    /// # Example
    ///
    /// ```
    /// use gf256_shamir::ShareIndex;
    ///
    /// let x = ShareIndex::try_from(42u8)?;
    /// assert_eq!(x.get(), 42);
    /// # Ok::<(), gf256_shamir::Error>(())
    /// ```
    #[must_use]
    pub const fn get(self) -> u8 {
        self.0.get()
    }
}

impl TryFrom<u8> for ShareIndex {
    type Error = Error;

    /// # Errors
    ///
    /// [`Error::ZeroIndex`] for 0.
    fn try_from(x: u8) -> Result<ShareIndex, Error> {
        ShareIndex::new(x).ok_or(Error::ZeroIndex)
    }
}

/// A non-zero byte is always a valid x-coordinate, so this conversion cannot fail.
///
/// # Example
///
/// ```
/// use core::num::NonZeroU8;
/// use gf256_shamir::ShareIndex;
///
/// let x = NonZeroU8::MIN.saturating_add(2);
/// assert_eq!(ShareIndex::from(x).get(), 3);
/// ```
impl From<NonZeroU8> for ShareIndex {
    fn from(x: NonZeroU8) -> ShareIndex {
        ShareIndex(x)
    }
}

impl From<ShareIndex> for u8 {
    fn from(x: ShareIndex) -> u8 {
        x.get()
    }
}

impl fmt::Display for ShareIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.get().fmt(f)
    }
}

/// The number of shares needed to reconstruct: `2..=255`.
///
/// A threshold of 1 would make every share equal to the secret, so it is unrepresentable.
///
/// # Example
///
/// ```
/// use gf256_shamir::Threshold;
///
/// let t = Threshold::new(2).expect("in range");
/// assert_eq!(t.get(), 2);
/// assert!(Threshold::new(1).is_none());
/// assert!(Threshold::try_from(0u8).is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Threshold(u8);

impl Threshold {
    /// The threshold `t`, or `None` unless `2 <= t <= 255`.
    ///
    /// # Example
    ///
    /// ```
    /// use gf256_shamir::Threshold;
    ///
    /// assert!(Threshold::new(255).is_some());
    /// assert!(Threshold::new(1).is_none());
    /// ```
    #[must_use]
    pub const fn new(t: u8) -> Option<Threshold> {
        if t >= 2 { Some(Threshold(t)) } else { None }
    }

    /// The threshold as a number.
    ///
    /// # Example
    ///
    /// ```
    /// use gf256_shamir::Threshold;
    ///
    /// assert_eq!(Threshold::try_from(3u8)?.get(), 3);
    /// # Ok::<(), gf256_shamir::Error>(())
    /// ```
    #[must_use]
    pub const fn get(self) -> u8 {
        self.0
    }

    /// The threshold as a `usize`, for counting shares.
    pub(crate) fn count(self) -> usize {
        usize::from(self.0)
    }
}

impl TryFrom<u8> for Threshold {
    type Error = Error;

    /// # Errors
    ///
    /// [`Error::ThresholdOutOfRange`] unless `2 <= t`.
    fn try_from(t: u8) -> Result<Threshold, Error> {
        Threshold::new(t).ok_or(Error::ThresholdOutOfRange {
            threshold: usize::from(t),
        })
    }
}

impl TryFrom<usize> for Threshold {
    type Error = Error;

    /// # Errors
    ///
    /// [`Error::ThresholdOutOfRange`] unless `2 <= t <= 255`.
    fn try_from(t: usize) -> Result<Threshold, Error> {
        u8::try_from(t)
            .ok()
            .and_then(Threshold::new)
            .ok_or(Error::ThresholdOutOfRange { threshold: t })
    }
}

impl From<Threshold> for u8 {
    fn from(t: Threshold) -> u8 {
        t.get()
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.get().fmt(f)
    }
}

/// Buffers at least this long are allocated with `calloc`: see [`zeroed_vec`].
const LARGE_BUFFER: usize = 64 * 1024;

/// A zero-filled buffer of exactly `len` bytes (capacity included, so that turning it into a
/// boxed slice does not reallocate).
// Deliberately not `vec![0; n]` for small buffers: that is `calloc`, which bypasses glibc's
// per-thread cache and costs several times more than `malloc` plus a short `memset`.
#[allow(clippy::slow_vector_initialization)]
pub(crate) fn zeroed_vec(len: usize) -> Vec<u8> {
    if len < LARGE_BUFFER {
        let mut buffer = Vec::with_capacity(len);
        buffer.resize(len, 0);
        buffer
    } else {
        // Large buffers come from fresh zeroed pages; `calloc` does not write them again.
        vec![0u8; len]
    }
}

/// One share: a public x-coordinate and secret y-values, one per byte of the secret.
///
/// The bytes live on the heap, encoded as `x ‖ y`, and are wiped when the share is dropped.
/// The wiped buffer of a short share (a secret of at most 64 bytes) may then be kept by the
/// dropping thread, up to 16 of them, for its next share of the same length instead of going
/// back to the allocator: it holds only zeros by then, and is never shared by two live shares.
/// There is no `Clone`, `Deref` or `AsRef<[u8]>`: the y-values are read through
/// [`Share::expose_secret`] and the encoding through [`Share::to_bytes`], each a deliberate,
/// greppable call. `Debug` prints the index and length only. Equality compares the y-values in
/// constant time.
///
/// # Example
///
/// ```
/// use gf256_shamir::{split, Share};
///
/// let shares = split(b"correct horse", 2, 3)?;
/// let encoded = shares[0].to_bytes(); // x ‖ y, wiped when dropped
/// let decoded = Share::from_bytes(&encoded)?;
/// assert_eq!(decoded.index(), shares[0].index());
/// assert_eq!(decoded, shares[0]);
/// assert!(!format!("{decoded:?}").contains(&format!("{:?}", decoded.expose_secret())));
/// # Ok::<(), gf256_shamir::Error>(())
/// ```
pub struct Share {
    /// The x-coordinate, also stored as `encoded[0]`; kept apart so views need no decoding.
    index: ShareIndex,
    /// `x ‖ y`: at least 2 bytes, the first equal to `index`.
    encoded: Box<[u8]>,
}

impl Share {
    /// A share from its index and y-values (copied).
    ///
    /// # Errors
    ///
    /// [`Error::ShareTooShort`] if `y` is empty.
    ///
    /// # Example
    ///
    /// ```
    /// use gf256_shamir::{Share, ShareIndex};
    ///
    /// let x = ShareIndex::try_from(1u8)?;
    /// let share = Share::new(x, &[0xB9, 0xFA, 0x07, 0xE1, 0x85])?;
    /// assert_eq!(share.secret_len(), 5);
    /// # Ok::<(), gf256_shamir::Error>(())
    /// ```
    pub fn new(index: ShareIndex, y: &[u8]) -> Result<Share, Error> {
        if y.is_empty() {
            return Err(Error::ShareTooShort { len: 0 });
        }
        let mut share = Share::zeroed(index, y.len());
        share.y_mut().copy_from_slice(y);
        Ok(share)
    }

    /// A share of `len` zero y-bytes at `index`, to be filled in place: a recycled buffer of
    /// this thread (already all zero, see [`Recycler`]) when one of the right length is free,
    /// otherwise a fresh allocation.
    #[inline]
    pub(crate) fn zeroed(index: ShareIndex, len: usize) -> Share {
        let size = len.saturating_add(1);
        let encoded = match Recycler::take(size) {
            Some(buffer) => buffer,
            None => zeroed_vec(size).into_boxed_slice(),
        };
        Share::with_buffer(index, encoded)
    }

    /// Shares of `len` zero y-bytes at each of `indices`, in order, to be filled in place: as
    /// [`Share::zeroed`], with one look into this thread's recycled buffers for all of them.
    pub(crate) fn zeroed_all(indices: &[ShareIndex], len: usize) -> Vec<Share> {
        let size = len.saturating_add(1);
        if size <= RECYCLE_MAX {
            let recycled = RECYCLED.try_with(|list| {
                let mut list = list.try_borrow_mut().ok()?;
                // Built by `collect`, not by pushing in a loop: pushing made the compiler write
                // the index byte and read it back as part of a wider word, a store-forwarding
                // stall that cost more than the rest of this function.
                Some(
                    indices
                        .iter()
                        .map(|index| {
                            let buffer = list
                                .pop(size)
                                .unwrap_or_else(|| zeroed_vec(size).into_boxed_slice());
                            Share::with_buffer(*index, buffer)
                        })
                        .collect::<Vec<Share>>(),
                )
            });
            if let Ok(Some(shares)) = recycled {
                return shares;
            }
        }
        indices.iter().map(|x| Share::zeroed(*x, len)).collect()
    }

    /// The share at `index` in `encoded`, an all-zero buffer of `1 + len` bytes.
    #[inline]
    fn with_buffer(index: ShareIndex, mut encoded: Box<[u8]>) -> Share {
        if let Some(x) = encoded.first_mut() {
            *x = index.get();
        }
        Share { index, encoded }
    }

    /// Decodes `x ‖ y` (the TSS Internet-Draft's layout and this crate's native one).
    ///
    /// # Errors
    ///
    /// [`Error::ShareTooShort`] for fewer than 2 bytes, [`Error::ZeroIndex`] if the first
    /// byte is 0.
    ///
    /// # Example
    ///
    /// ```
    /// use gf256_shamir::Share;
    ///
    /// let share = Share::from_bytes(&[0x01, 0xB9, 0xFA, 0x07, 0xE1, 0x85])?;
    /// assert_eq!(share.index().get(), 1);
    /// assert_eq!(share.expose_secret(), &[0xB9, 0xFA, 0x07, 0xE1, 0x85]);
    /// assert!(Share::from_bytes(&[0x00, 0x01]).is_err());
    /// # Ok::<(), gf256_shamir::Error>(())
    /// ```
    pub fn from_bytes(bytes: &[u8]) -> Result<Share, Error> {
        ShareRef::from_bytes(bytes).map(|share| share.to_share())
    }

    /// Decodes HashiCorp Vault's layout, `y ‖ x` (the x-coordinate is the last byte).
    ///
    /// # Errors
    ///
    /// [`Error::ShareTooShort`] for fewer than 2 bytes, [`Error::ZeroIndex`] if the last byte
    /// is 0.
    ///
    /// # Example
    ///
    /// ```
    /// use gf256_shamir::Share;
    ///
    /// let share = Share::from_vault_bytes(&[0xB9, 0xFA, 0x07, 0xE1, 0x85, 0x01])?;
    /// assert_eq!(share.index().get(), 1);
    /// assert_eq!(share.to_vault_bytes().as_slice(), &[0xB9, 0xFA, 0x07, 0xE1, 0x85, 0x01]);
    /// # Ok::<(), gf256_shamir::Error>(())
    /// ```
    pub fn from_vault_bytes(bytes: &[u8]) -> Result<Share, Error> {
        ShareRef::from_vault_bytes(bytes).map(|share| share.to_share())
    }

    /// The x-coordinate.
    ///
    /// # Example
    ///
    /// ```
    /// let shares = gf256_shamir::split(b"k", 2, 3)?;
    /// let xs: Vec<u8> = shares.iter().map(|s| s.index().get()).collect();
    /// assert_eq!(xs, [1, 2, 3]);
    /// # Ok::<(), gf256_shamir::Error>(())
    /// ```
    #[must_use]
    pub fn index(&self) -> ShareIndex {
        self.index
    }

    /// The number of y-bytes, which is the length of the secret. Public.
    ///
    /// # Example
    ///
    /// ```
    /// let shares = gf256_shamir::split(&[7u8; 32], 2, 3)?;
    /// assert_eq!(shares[0].secret_len(), 32);
    /// # Ok::<(), gf256_shamir::Error>(())
    /// ```
    #[must_use]
    pub fn secret_len(&self) -> usize {
        self.encoded.len().saturating_sub(1)
    }

    /// The y-values. Secret: anyone holding `threshold` of these learns the secret.
    ///
    /// # Example
    ///
    /// ```
    /// let shares = gf256_shamir::split(b"abc", 2, 2)?;
    /// assert_eq!(shares[0].expose_secret().len(), 3);
    /// # Ok::<(), gf256_shamir::Error>(())
    /// ```
    #[must_use]
    pub fn expose_secret(&self) -> &[u8] {
        self.encoded.get(1..).unwrap_or_default()
    }

    /// The encoding `x ‖ y`, in a buffer wiped on drop.
    ///
    /// # Example
    ///
    /// ```
    /// let shares = gf256_shamir::split(b"abc", 2, 2)?;
    /// let bytes = shares[1].to_bytes();
    /// assert_eq!(bytes[0], 2);
    /// assert_eq!(&bytes[1..], shares[1].expose_secret());
    /// # Ok::<(), gf256_shamir::Error>(())
    /// ```
    #[must_use]
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.encoded.to_vec())
    }

    /// HashiCorp Vault's encoding `y ‖ x`, in a buffer wiped on drop.
    ///
    /// # Example
    ///
    /// ```
    /// let shares = gf256_shamir::split(b"abc", 2, 2)?;
    /// let bytes = shares[1].to_vault_bytes();
    /// assert_eq!(bytes.last(), Some(&2));
    /// assert_eq!(&bytes[..3], shares[1].expose_secret());
    /// # Ok::<(), gf256_shamir::Error>(())
    /// ```
    #[must_use]
    pub fn to_vault_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut bytes = Zeroizing::new(Vec::with_capacity(self.encoded.len()));
        bytes.extend_from_slice(self.expose_secret());
        bytes.push(self.index().get());
        bytes
    }

    /// A borrowed view, for the allocation-free paths and for mixing owned and borrowed shares.
    ///
    /// # Example
    ///
    /// ```
    /// let shares = gf256_shamir::split(b"abc", 2, 2)?;
    /// let view = shares[0].as_share_ref();
    /// assert_eq!(view.index(), shares[0].index());
    /// # Ok::<(), gf256_shamir::Error>(())
    /// ```
    #[must_use]
    pub fn as_share_ref(&self) -> ShareRef<'_> {
        ShareRef {
            index: self.index,
            y: self.encoded.get(1..).unwrap_or_default(),
        }
    }

    /// The y-values, writable, for filling a share in place.
    pub(crate) fn y_mut(&mut self) -> &mut [u8] {
        self.encoded.get_mut(1..).unwrap_or_default()
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        crate::backend::wipe(&mut self.encoded);
        // Only now, all zero, may the buffer be handed to a later share of this thread.
        Recycler::give(core::mem::take(&mut self.encoded));
    }
}

/// Encoded shares of at most this many bytes (`x ‖ y` of a secret up to 64 bytes, which covers
/// every data key) are recycled.
const RECYCLE_MAX: usize = crate::backend::SMALL_LEN + 1;

/// How many buffers one thread keeps at most: a few splits' worth of 2-of-3 or 3-of-5 shares,
/// at most about 1 KiB of memory plus the allocator's headers.
const RECYCLE_SLOTS: usize = 16;

/// A small per-thread free list of share buffers that were wiped when their share was dropped.
///
/// Splitting a data key into owned shares is dominated by the allocator: one `malloc` and one
/// `free` per share cost more than the arithmetic (see the crate README's performance notes).
/// Short buffers are therefore kept for the next share of the same length on the same thread.
///
/// - **Only zeros enter the list.** [`Share`]'s `Drop` wipes the buffer (volatile stores)
///   before it calls [`Recycler::give`], so the list never holds key material, and a recycled
///   buffer is exactly as clean as a fresh zeroed one.
/// - **No sharing.** Every buffer belongs to one share at a time and is moved, never aliased:
///   one share never keeps another share's bytes alive.
/// - **Bounded.** At most [`RECYCLE_SLOTS`] buffers of at most [`RECYCLE_MAX`] bytes; anything
///   else goes back to the allocator. A share dropped on another thread feeds that thread's
///   list. The list is freed when its thread exits; a share dropped during thread exit, after
///   the list is gone, is freed directly.
/// - Lengths are public, so choosing a buffer by length reveals nothing.
struct Recycler {
    free: [Option<Box<[u8]>>; RECYCLE_SLOTS],
    count: usize,
}

thread_local! {
    static RECYCLED: RefCell<Recycler> = const {
        RefCell::new(Recycler {
            free: [const { None }; RECYCLE_SLOTS],
            count: 0,
        })
    };
}

impl Recycler {
    /// A wiped buffer of exactly `size` bytes from this thread's list, if there is one.
    #[inline]
    fn take(size: usize) -> Option<Box<[u8]>> {
        if size > RECYCLE_MAX {
            return None;
        }
        RECYCLED
            .try_with(|list| list.try_borrow_mut().ok()?.pop(size))
            .ok()
            .flatten()
    }

    /// Keeps `buffer` (already wiped) for a later share, or frees it if it is too long, the
    /// list is full or this thread's list is already gone.
    #[inline]
    fn give(buffer: Box<[u8]>) {
        if buffer.is_empty() || buffer.len() > RECYCLE_MAX {
            return;
        }
        // If the thread-local is gone the closure is dropped unrun, and the buffer with it.
        let _ = RECYCLED.try_with(move |list| {
            if let Ok(mut list) = list.try_borrow_mut() {
                list.push(buffer);
            }
        });
    }

    /// Removes and returns the most recently given buffer if it has `size` bytes. Only the top
    /// is looked at: a thread splits keys of one length in practice, and a miss only means an
    /// allocation.
    #[inline]
    fn pop(&mut self, size: usize) -> Option<Box<[u8]>> {
        let last = self.count.checked_sub(1)?;
        let slot = self.free.get_mut(last)?;
        if slot.as_ref().is_some_and(|buffer| buffer.len() == size) {
            self.count = last;
            slot.take()
        } else {
            None
        }
    }

    /// Stores `buffer` if there is room (dropping, hence freeing, it otherwise).
    #[inline]
    fn push(&mut self, buffer: Box<[u8]>) {
        if let Some(slot) = self.free.get_mut(self.count) {
            *slot = Some(buffer);
            self.count = self.count.saturating_add(1);
        }
    }
}

impl ZeroizeOnDrop for Share {}

impl fmt::Debug for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_share_ref().fmt(f)
    }
}

impl ConstantTimeEq for Share {
    /// Equal indices and lengths (public, compared directly) and equal y-values (compared in
    /// constant time).
    fn ct_eq(&self, other: &Share) -> Choice {
        self.as_share_ref().ct_eq(&other.as_share_ref())
    }
}

impl PartialEq for Share {
    /// Constant-time in the y-values; see [`ConstantTimeEq`].
    fn eq(&self, other: &Share) -> bool {
        self.ct_eq(other).into()
    }
}

impl Eq for Share {}

/// A borrowed share: an index and a view of y-values owned elsewhere (a [`Share`], a decrypted
/// buffer, a memory-mapped file).
///
/// Decoding with [`ShareRef::from_bytes`] copies nothing, so combining straight from received
/// bytes allocates only the output. `Debug` prints the index and length only.
///
/// # Example
///
/// ```
/// use gf256_shamir::{combine, ShareRef};
///
/// // The TSS Internet-Draft's test case: "test\0" split 2-of-2.
/// let a = ShareRef::from_bytes(&[0x01, 0xB9, 0xFA, 0x07, 0xE1, 0x85])?;
/// let b = ShareRef::from_bytes(&[0x02, 0xF5, 0x40, 0x9B, 0x45, 0x11])?;
/// assert_eq!(combine(&[a, b], 2)?.as_slice(), b"test\0");
/// # Ok::<(), gf256_shamir::Error>(())
/// ```
#[derive(Clone, Copy)]
pub struct ShareRef<'a> {
    index: ShareIndex,
    y: &'a [u8],
}

impl<'a> ShareRef<'a> {
    /// A view of `y` as the share at `index`.
    ///
    /// # Errors
    ///
    /// [`Error::ShareTooShort`] if `y` is empty.
    ///
    /// # Example
    ///
    /// ```
    /// use gf256_shamir::{ShareIndex, ShareRef};
    ///
    /// let y = [1u8, 2, 3];
    /// let share = ShareRef::new(ShareIndex::try_from(9u8)?, &y)?;
    /// assert_eq!(share.index().get(), 9);
    /// # Ok::<(), gf256_shamir::Error>(())
    /// ```
    pub fn new(index: ShareIndex, y: &'a [u8]) -> Result<ShareRef<'a>, Error> {
        if y.is_empty() {
            return Err(Error::ShareTooShort { len: 0 });
        }
        Ok(ShareRef { index, y })
    }

    /// Decodes `x ‖ y` without copying.
    ///
    /// # Errors
    ///
    /// [`Error::ShareTooShort`] for fewer than 2 bytes, [`Error::ZeroIndex`] if the first
    /// byte is 0.
    ///
    /// # Example
    ///
    /// ```
    /// use gf256_shamir::ShareRef;
    ///
    /// let share = ShareRef::from_bytes(&[0x02, 0xAA, 0xBB])?;
    /// assert_eq!(share.index().get(), 2);
    /// assert_eq!(share.expose_secret(), &[0xAA, 0xBB]);
    /// # Ok::<(), gf256_shamir::Error>(())
    /// ```
    pub fn from_bytes(bytes: &'a [u8]) -> Result<ShareRef<'a>, Error> {
        match bytes.split_first() {
            Some((x, y)) if !y.is_empty() => ShareRef::new(ShareIndex::try_from(*x)?, y),
            _ => Err(Error::ShareTooShort { len: bytes.len() }),
        }
    }

    /// Decodes HashiCorp Vault's `y ‖ x` without copying.
    ///
    /// # Errors
    ///
    /// [`Error::ShareTooShort`] for fewer than 2 bytes, [`Error::ZeroIndex`] if the last
    /// byte is 0.
    ///
    /// # Example
    ///
    /// ```
    /// use gf256_shamir::ShareRef;
    ///
    /// let share = ShareRef::from_vault_bytes(&[0xAA, 0xBB, 0x02])?;
    /// assert_eq!(share.index().get(), 2);
    /// assert_eq!(share.expose_secret(), &[0xAA, 0xBB]);
    /// # Ok::<(), gf256_shamir::Error>(())
    /// ```
    pub fn from_vault_bytes(bytes: &'a [u8]) -> Result<ShareRef<'a>, Error> {
        match bytes.split_last() {
            Some((x, y)) if !y.is_empty() => ShareRef::new(ShareIndex::try_from(*x)?, y),
            _ => Err(Error::ShareTooShort { len: bytes.len() }),
        }
    }

    /// The x-coordinate.
    ///
    /// # Example
    ///
    /// ```
    /// use gf256_shamir::ShareRef;
    ///
    /// assert_eq!(ShareRef::from_bytes(&[5, 0])?.index().get(), 5);
    /// # Ok::<(), gf256_shamir::Error>(())
    /// ```
    #[must_use]
    pub fn index(&self) -> ShareIndex {
        self.index
    }

    /// The number of y-bytes (the secret's length). Public.
    ///
    /// # Example
    ///
    /// ```
    /// use gf256_shamir::ShareRef;
    ///
    /// assert_eq!(ShareRef::from_bytes(&[5, 0, 0, 0])?.secret_len(), 3);
    /// # Ok::<(), gf256_shamir::Error>(())
    /// ```
    #[must_use]
    pub fn secret_len(&self) -> usize {
        self.y.len()
    }

    /// The y-values. Secret.
    ///
    /// # Example
    ///
    /// ```
    /// use gf256_shamir::ShareRef;
    ///
    /// assert_eq!(ShareRef::from_bytes(&[5, 9])?.expose_secret(), &[9]);
    /// # Ok::<(), gf256_shamir::Error>(())
    /// ```
    #[must_use]
    pub fn expose_secret(&self) -> &'a [u8] {
        self.y
    }

    /// An owned copy (wiped on drop).
    ///
    /// # Example
    ///
    /// ```
    /// use gf256_shamir::ShareRef;
    ///
    /// let owned = ShareRef::from_bytes(&[5, 9])?.to_share();
    /// assert_eq!(owned.to_bytes().as_slice(), &[5, 9]);
    /// # Ok::<(), gf256_shamir::Error>(())
    /// ```
    #[must_use]
    pub fn to_share(&self) -> Share {
        let mut share = Share::zeroed(self.index, self.y.len());
        share.y_mut().copy_from_slice(self.y);
        share
    }
}

impl fmt::Debug for ShareRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Share")
            .field("index", &self.index.get())
            .field("secret_len", &self.y.len())
            .field("y", &format_args!("<redacted>"))
            .finish()
    }
}

impl ConstantTimeEq for ShareRef<'_> {
    /// Equal indices and lengths (public, compared directly) and equal y-values (compared in
    /// constant time).
    fn ct_eq(&self, other: &ShareRef<'_>) -> Choice {
        if self.index != other.index {
            return Choice::from(0);
        }
        ct_eq_bytes(self.y, other.y)
    }
}

impl PartialEq for ShareRef<'_> {
    /// Constant-time in the y-values; see [`ConstantTimeEq`].
    fn eq(&self, other: &ShareRef<'_>) -> bool {
        self.ct_eq(other).into()
    }
}

impl Eq for ShareRef<'_> {}

/// Constant-time equality of byte strings (lengths are public and compared directly).
///
/// The differences are ORed together word by word and reduced to one bit with arithmetic; the
/// only conversion to `Choice` is at the end. (`subtle`'s own slice comparison builds a `Choice`
/// per byte, whose debug-build assertion branches on each byte.)
pub(crate) fn ct_eq_bytes(a: &[u8], b: &[u8]) -> Choice {
    if a.len() != b.len() {
        return Choice::from(0);
    }
    let mut diff = 0u64;
    let (a_words, a_tail) = a.as_chunks::<8>();
    let (b_words, b_tail) = b.as_chunks::<8>();
    for (x, y) in a_words.iter().zip(b_words) {
        diff |= u64::from_le_bytes(*x) ^ u64::from_le_bytes(*y);
        // Keeps the optimizer from turning the fold into an early exit.
        diff = core::hint::black_box(diff);
    }
    for (x, y) in a_tail.iter().zip(b_tail) {
        diff |= u64::from(x ^ y);
    }
    // `diff | -diff` has its top bit set exactly when `diff` is non-zero.
    let nonzero = (diff | diff.wrapping_neg()) >> 63;
    let [equal, ..] = (nonzero ^ 1).to_le_bytes();
    Choice::from(equal)
}

/// Anything that can lend a [`ShareRef`]: [`Share`], [`ShareRef`], and references to them.
///
/// Combine and recover functions take `&[S]` for any `S: AsShareRef`, so owned shares,
/// borrowed views and `&Share` lists all work without conversion. Implement it for your own
/// wrapper (a share with metadata, say) to pass those directly.
///
/// # Example
///
/// ```
/// use gf256_shamir::{combine, split, AsShareRef};
///
/// let shares = split(b"secret", 2, 3)?;
/// // Owned, borrowed, or a mix of views: all accepted.
/// assert_eq!(combine(&shares[1..], 2)?.as_slice(), b"secret");
/// let picked = [&shares[2], &shares[0]];
/// assert_eq!(combine(&picked, 2)?.as_slice(), b"secret");
/// let views = [shares[0].as_share_ref(), shares[1].as_share_ref()];
/// assert_eq!(combine(&views, 2)?.as_slice(), b"secret");
/// # Ok::<(), gf256_shamir::Error>(())
/// ```
pub trait AsShareRef {
    /// The borrowed view.
    fn as_share_ref(&self) -> ShareRef<'_>;
}

impl AsShareRef for Share {
    fn as_share_ref(&self) -> ShareRef<'_> {
        Share::as_share_ref(self)
    }
}

impl AsShareRef for ShareRef<'_> {
    fn as_share_ref(&self) -> ShareRef<'_> {
        *self
    }
}

impl<T: AsShareRef + ?Sized> AsShareRef for &T {
    fn as_share_ref(&self) -> ShareRef<'_> {
        (**self).as_share_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_y_values() {
        // Bytes whose decimal and hex spellings appear nowhere in the redacted text itself.
        let secret_y = [0x9F, 0x3B, 0x71, 0xF6, 0x2E];
        let share = Share::new(ShareIndex::new(7).unwrap(), &secret_y).unwrap();
        for text in [
            format!("{share:?}"),
            format!("{share:#?}"),
            format!("{:?}", share.as_share_ref()),
        ] {
            assert!(text.contains("redacted"), "{text}");
            assert!(text.contains("index: 7"), "{text}");
            for byte in secret_y {
                assert!(!text.contains(&format!("{byte}")), "{text} leaks {byte}");
                assert!(
                    !text.to_lowercase().contains(&format!("{byte:02x}")),
                    "{text}"
                );
            }
        }
    }

    #[test]
    fn encodings_round_trip() {
        let share = Share::from_bytes(&[3, 10, 20, 30]).unwrap();
        assert_eq!(share.index().get(), 3);
        assert_eq!(share.expose_secret(), &[10, 20, 30]);
        assert_eq!(share.to_bytes().as_slice(), &[3, 10, 20, 30]);
        assert_eq!(share.to_vault_bytes().as_slice(), &[10, 20, 30, 3]);
        let vault = Share::from_vault_bytes(&[10, 20, 30, 3]).unwrap();
        assert_eq!(vault, share);
    }

    #[test]
    fn malformed_encodings_are_typed_errors() {
        assert_eq!(
            Share::from_bytes(&[]).unwrap_err(),
            Error::ShareTooShort { len: 0 }
        );
        assert_eq!(
            Share::from_bytes(&[1]).unwrap_err(),
            Error::ShareTooShort { len: 1 }
        );
        assert_eq!(Share::from_bytes(&[0, 1]).unwrap_err(), Error::ZeroIndex);
        assert_eq!(
            Share::from_vault_bytes(&[1]).unwrap_err(),
            Error::ShareTooShort { len: 1 }
        );
        assert_eq!(
            Share::from_vault_bytes(&[1, 0]).unwrap_err(),
            Error::ZeroIndex
        );
        assert_eq!(
            Share::new(ShareIndex::new(1).unwrap(), &[]).unwrap_err(),
            Error::ShareTooShort { len: 0 }
        );
    }

    #[test]
    fn equality_needs_same_index_length_and_values() {
        let a = Share::from_bytes(&[1, 5, 6]).unwrap();
        assert_eq!(a, Share::from_bytes(&[1, 5, 6]).unwrap());
        assert_ne!(a, Share::from_bytes(&[2, 5, 6]).unwrap());
        assert_ne!(a, Share::from_bytes(&[1, 5, 7]).unwrap());
        assert_ne!(a, Share::from_bytes(&[1, 5, 6, 7]).unwrap());
    }

    #[test]
    fn recycled_buffers_come_back_wiped_and_are_bounded() {
        let x = ShareIndex::new(4).unwrap();
        let share = Share::new(x, &[0xC3; 32]).unwrap();
        let address = share.encoded.as_ptr();
        drop(share);
        // The next share of the same length on this thread reuses the buffer, all zero.
        let again = Share::zeroed(x, 32);
        assert_eq!(again.encoded.as_ptr(), address);
        assert!(again.expose_secret().iter().all(|&b| b == 0));
        assert_eq!(again.to_bytes().as_slice()[0], 4);
        drop(again);
        // Batches take from the list too, and fall back to the allocator when it runs dry.
        let many = Share::zeroed_all(&[x; 2 * RECYCLE_SLOTS], 32);
        assert!(
            many.iter()
                .all(|s| s.index() == x && s.expose_secret() == [0u8; 32])
        );
        drop(many);
        RECYCLED.with(|list| {
            let list = list.borrow();
            assert_eq!(list.count, RECYCLE_SLOTS);
            for buffer in list.free.iter().flatten() {
                assert!(buffer.iter().all(|&b| b == 0));
            }
        });
        // Long shares never enter the list.
        let long = Share::zeroed(x, RECYCLE_MAX);
        let before = RECYCLED.with(|list| list.borrow().count);
        drop(long);
        assert_eq!(RECYCLED.with(|list| list.borrow().count), before);
    }

    #[test]
    fn thresholds_and_indices_reject_out_of_range() {
        assert_eq!(
            Threshold::try_from(1u8).unwrap_err(),
            Error::ThresholdOutOfRange { threshold: 1 }
        );
        assert_eq!(
            Threshold::try_from(256usize).unwrap_err(),
            Error::ThresholdOutOfRange { threshold: 256 }
        );
        assert_eq!(Threshold::try_from(255usize).unwrap().get(), 255);
        assert_eq!(ShareIndex::try_from(0u8).unwrap_err(), Error::ZeroIndex);
        assert_eq!(u8::from(ShareIndex::try_from(9u8).unwrap()), 9);
        assert_eq!(ShareIndex::new(9).unwrap().to_string(), "9");
        assert_eq!(Threshold::new(9).unwrap().to_string(), "9");
    }
}
