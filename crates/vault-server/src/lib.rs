#![doc = include_str!("../README.md")]
// Denied, not forbidden: the SQLite writer has the crate's one `unsafe` block (handing its
// locked connection handle to rusqlite, see `storage/group_commit.rs`), allowed there alone.
#![deny(unsafe_code)]
// `panic` is also a workspace lint; repeated here because this crate's promise (no panic on any
// request) must not depend on workspace settings.
#![warn(clippy::panic)]

mod agents;
mod app;
mod audit;
mod auth;
mod cli;
mod cmek;
mod cmek_routes;
mod config;
mod dto;
mod extract;
mod generate;
mod ids;
mod limits;
mod metrics;
mod openapi;
mod policies;
mod policy;
mod problem;
mod rate_limit;
mod resilience;
mod routes;
mod storage;
mod time;
mod tls;
mod treasury;
mod validate;

pub use crate::app::{ServerError, VaultServer};
pub use crate::audit::{
    AUDIT_SCHEME, AuditError, AuditEvent, AuditExport, AuditKey, AuditSigner, ChainReport,
    Checkpoint, EXPORT_FORMAT, GENESIS_HASH, NewAuditEvent, canonical_encoding, checkpoint_message,
    verify_export,
};
pub use crate::auth::ApiKeySecret;
pub use crate::cli::{Cli, Command, ConfigCommand, RunError, run};
pub use crate::cmek::{CmekError, CmekKey, cmek_decrypt, cmek_encrypt};
pub use crate::config::{
    Config, ConfigError, DEFAULT_DATA_DIR, DEFAULT_LISTEN, DEFAULT_MAX_VALUE_BYTES, LogFormat,
    ProviderConfig,
};
pub use crate::limits::{CUSTODY_MODE_KINDS, OrgLimits, TierLimits};
pub use crate::metrics::Metrics;
pub use crate::openapi::openapi_json;
pub use crate::problem::ApiError;
pub use crate::rate_limit::RateLimitConfig;
pub use crate::resilience::ProviderResilience;
pub use crate::storage::{
    AgentRecord, ApiKeyRecord, AuditQuery, CmekJobRecord, CmekJobStatus, NewVersion, PolicyRecord,
    PostgresOptions, PostgresStorage, ShareRecord, SqliteStorage, Storage, StorageError,
    VaultCustodyRecord, VaultRecord, VersionRecord, WalletRecord,
};
pub use crate::validate::MAX_PATH_LEN;
