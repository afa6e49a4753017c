#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
// `panic` is also a workspace lint; it is repeated so this crate's guarantee (no panic on any
// input: stored rows, client shares, provider answers) does not depend on workspace settings.
#![warn(clippy::panic)]

mod base64;
mod client_share;
mod context;
mod custodian;
mod error;
mod latency;
mod mode;
mod record;
mod sharing;
mod slot;

pub use crate::client_share::{ClientShare, ClientShareDefect, ContextTag, EncodedClientShare};
pub use crate::context::SecretContext;
pub use crate::custodian::{Custodian, CustodianBuilder, WriteQuorum};
pub use crate::error::{Error, SlotFailure, SlotFailureCause, SlotFailures};
pub use crate::mode::{BillingTier, CustodyMode, ModeKind, SplitScheme, VaultCustody};
pub use crate::record::{
    Opened, ReadReport, Repaired, Sealed, SlotState, StoredSecret, StoredSlot,
};
pub use crate::slot::{MAX_SLOTS, ProviderName, Slot, SlotHolder, SlotIndex, SlotList};
