//! The storage trait and its records. The server's handlers see only this trait; SQLite (the
//! embedded default) and PostgreSQL (several replicas) implement it and pass the same test suite.

mod direct_read;
mod group_commit;
mod postgres;
mod read_cache;
mod sqlite;

pub use postgres::{PostgresOptions, PostgresStorage};
pub use sqlite::SqliteStorage;
pub(crate) use sqlite::create_private_dir;

mod cmek;

pub use cmek::{CmekJobRecord, CmekJobStatus};

use async_trait::async_trait;

use crate::audit::{AuditError, AuditEvent, Checkpoint, NewAuditEvent};

/// A storage failure.
///
/// # Example
///
/// ```
/// let err = vault_server::StorageError::Conflict;
/// assert_eq!(err.to_string(), "a concurrent write created the same row first");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// A unique row (such as the next version of a secret) was written concurrently.
    #[error("a concurrent write created the same row first")]
    Conflict,
    /// A stored row does not decode (a column out of range, bad JSON).
    #[error("corrupt row in {table}: {reason}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What does not decode.
        reason: String,
    },
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A statement the SQLite store runs directly on its writer's connection (through
    /// rusqlite: the hot writes, see the store's group commit) failed.
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The write was not committed: the store is closed, or the batch it was committed with
    /// failed (see the SQLite store's group commit). Nothing of it was kept.
    #[error("the write was not committed: {0}")]
    Unavailable(String),
    /// Running the migrations failed.
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The data directory could not be created.
    #[error("data directory: {0}")]
    Io(#[from] std::io::Error),
    /// An audit event could not be sealed, or the audit key could not be loaded.
    #[error("audit: {0}")]
    Audit(#[from] AuditError),
    /// The write would take the organisation past its tier's limit on `resource`; nothing was
    /// written. The count is taken in the same statement or transaction as the write, so two
    /// concurrent writes at the limit cannot both pass.
    #[error("the limit of {limit} {resource} is reached")]
    LimitReached {
        /// What is counted: `vaults`, `secrets` (or `agents`).
        resource: &'static str,
        /// The limit.
        limit: u64,
    },
}

/// A `secret_dek_shares` row as both stores read it; the slot is stored as a 64-bit integer and
/// must be a slot number.
pub(crate) fn share_record(
    slot: i64,
    provider: String,
    blob: Option<Vec<u8>>,
) -> Result<ShareRecord, StorageError> {
    Ok(ShareRecord {
        slot: u8::try_from(slot).map_err(|_| StorageError::Corrupt {
            table: "secret_dek_shares",
            reason: format!("slot {slot}"),
        })?,
        provider,
        blob,
    })
}

/// Which audit events to list (`GET /v1/audit/events`); every filter is optional.
///
/// # Example
///
/// ```
/// let query = vault_server::AuditQuery { action: Some("secret.read".into()), limit: 50, ..Default::default() };
/// assert!(query.visible_to.is_none());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Events whose `resource_id` or `vault_id` is this.
    pub resource_id: Option<String>,
    /// Events by this actor.
    pub actor_id: Option<String>,
    /// Events of this action.
    pub action: Option<String>,
    /// Events at or after this time (unix milliseconds).
    pub from: Option<i64>,
    /// Events at or before this time (unix milliseconds).
    pub to: Option<i64>,
    /// Only events this user may see: those they performed and those of vaults they created.
    /// `None` for an audit administrator.
    pub visible_to: Option<String>,
    /// At most this many events.
    pub limit: u64,
    /// Skip this many.
    pub offset: u64,
}

/// A stored API key (its hash only).
///
/// # Example
///
/// ```
/// let key = vault_server::ApiKeyRecord {
///     id: "k1".into(), user_id: "admin".into(), name: "ci".into(), key_hash: vec![0; 32],
///     key_prefix: "1ck_abcdefgh".into(), vault_scope: None, created_at: 0, revoked_at: None,
/// };
/// assert!(key.revoked_at.is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// The key's id (public).
    pub id: String,
    /// The user the key acts for.
    pub user_id: String,
    /// A label.
    pub name: String,
    /// SHA-256 of the full key.
    pub key_hash: Vec<u8>,
    /// The first characters of the key, to recognise it in listings.
    pub key_prefix: String,
    /// The vaults the key may use; `None` for every vault of its user.
    pub vault_scope: Option<Vec<String>>,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds, if revoked.
    pub revoked_at: Option<i64>,
}

/// A stored agent: a non-human principal with its own key (stored as a hash).
///
/// # Example
///
/// ```
/// let agent = vault_server::AgentRecord {
///     id: "a1".into(), name: "deployer".into(), description: String::new(),
///     created_by: "admin".into(), vault_ids: None, expires_at: None, token_ttl_seconds: None,
///     key_hash: vec![0; 32], key_prefix: "ocv_abcdefgh".into(), created_at: 0, deleted_at: None,
/// };
/// assert!(agent.deleted_at.is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRecord {
    /// UUID.
    pub id: String,
    /// Name.
    pub name: String,
    /// Description (empty if none).
    pub description: String,
    /// The user that manages it.
    pub created_by: String,
    /// The vaults it may ever reach; `None` for any (policies decide).
    pub vault_ids: Option<Vec<String>>,
    /// Unix milliseconds after which its key and tokens stop working.
    pub expires_at: Option<i64>,
    /// Lifetime of its access tokens; `None` for the server's default.
    pub token_ttl_seconds: Option<u64>,
    /// SHA-256 of its key.
    pub key_hash: Vec<u8>,
    /// The key's first characters.
    pub key_prefix: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds, once deleted.
    pub deleted_at: Option<i64>,
}

/// A stored access policy (see the crate README for the semantics).
///
/// # Example
///
/// ```
/// let policy = vault_server::PolicyRecord {
///     id: "p1".into(), vault_id: "v1".into(), secret_path_pattern: "db/**".into(),
///     principal_type: "agent".into(), principal_id: "a1".into(),
///     permissions: vec!["read".into()], effect: "allow".into(), priority: 0,
///     expires_at: None, created_by: "admin".into(), created_at: 0, updated_at: 0,
/// };
/// assert_eq!(policy.effect, "allow");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRecord {
    /// UUID.
    pub id: String,
    /// The vault it applies to.
    pub vault_id: String,
    /// Glob over secret paths.
    pub secret_path_pattern: String,
    /// `user` or `agent`.
    pub principal_type: String,
    /// The user or agent id.
    pub principal_id: String,
    /// `read` and/or `write`.
    pub permissions: Vec<String>,
    /// `allow` or `deny`.
    pub effect: String,
    /// Higher wins.
    pub priority: i64,
    /// Unix milliseconds after which it no longer applies.
    pub expires_at: Option<i64>,
    /// The user that wrote it.
    pub created_by: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub updated_at: i64,
}

/// A stored vault.
///
/// # Example
///
/// ```
/// let vault = vault_server::VaultRecord {
///     id: "v1".into(), name: "payments".into(), description: String::new(),
///     created_by: "admin".into(), created_at: 0, cmek_enabled: false, custody: None,
/// };
/// assert!(vault.custody.is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultRecord {
    /// UUID.
    pub id: String,
    /// Name.
    pub name: String,
    /// Description (empty if none was given).
    pub description: String,
    /// The user that created it.
    pub created_by: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Customer-managed encryption keys (always false in this server).
    pub cmek_enabled: bool,
    /// The custody: canonical mode string, threshold, provider names; `None` until set.
    pub custody: Option<VaultCustodyRecord>,
}

/// A vault's custody columns.
///
/// # Example
///
/// ```
/// let custody = vault_server::VaultCustodyRecord {
///     mode: "2of3_multi_hsm".into(), threshold: 2,
///     providers: vec!["gcp".into(), "aws".into(), "azure".into()],
/// };
/// assert_eq!(custody.providers.len(), 3);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultCustodyRecord {
    /// The canonical mode string.
    pub mode: String,
    /// The threshold.
    pub threshold: u8,
    /// Provider names of the mode's provider slots.
    pub providers: Vec<String>,
}

/// One stored slot of a secret version.
///
/// # Example
///
/// ```
/// let pending = vault_server::ShareRecord { slot: 3, provider: "azure".into(), blob: None };
/// assert!(pending.blob.is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareRecord {
    /// Slot index (1-based).
    pub slot: u8,
    /// Provider name.
    pub provider: String,
    /// The wrapped share, or `None` for a pending slot.
    pub blob: Option<Vec<u8>>,
}

/// A stored secret version with its secret's identity.
///
/// # Example
///
/// ```
/// let v = vault_server::VersionRecord {
///     secret_id: "s1".into(), version_id: "s1v1".into(), vault_id: "v1".into(),
///     path: "db/password".into(), version: 1, secret_type: "generic".into(),
///     custody_mode: "standard".into(), envelope: vec![], metadata: "{}".into(),
///     expires_at: None, max_access_count: None, access_count: 0, disabled: false,
///     deleted: false, created_by: "admin".into(), created_at: 0, cmek_fingerprint: None,
/// };
/// assert_eq!(v.version, 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRecord {
    /// The secret's id (stable across versions).
    pub secret_id: String,
    /// This version's row id.
    pub version_id: String,
    /// The vault.
    pub vault_id: String,
    /// The secret path.
    pub path: String,
    /// Version number, from 1.
    pub version: u64,
    /// Secret type.
    pub secret_type: String,
    /// Canonical custody mode string.
    pub custody_mode: String,
    /// Envelope bytes.
    pub envelope: Vec<u8>,
    /// Metadata as JSON text.
    pub metadata: String,
    /// Unix milliseconds.
    pub expires_at: Option<i64>,
    /// Reads allowed, if bounded.
    pub max_access_count: Option<u64>,
    /// Reads so far.
    pub access_count: u64,
    /// Disabled version.
    pub disabled: bool,
    /// Soft-deleted version.
    pub deleted: bool,
    /// The user that wrote it.
    pub created_by: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// For a CMEK value, the fingerprint (SHA-256, lowercase hex) of the client key it was
    /// encrypted with; `None` for other values. On write the store takes it from the vault in
    /// the same statement (the field is ignored there), so the flag cannot disagree with the
    /// vault's CMEK state at the moment of the write.
    pub cmek_fingerprint: Option<String>,
}

/// A version to write, with all its shares.
///
/// # Example
///
/// ```
/// # let version = vault_server::VersionRecord {
/// #     secret_id: String::new(), version_id: "s1v1".into(), vault_id: "v1".into(),
/// #     path: "db/password".into(), version: 1, secret_type: "generic".into(),
/// #     custody_mode: "standard".into(), envelope: vec![], metadata: "{}".into(),
/// #     expires_at: None, max_access_count: None, access_count: 0, disabled: false,
/// #     deleted: false, created_by: "admin".into(), created_at: 0, cmek_fingerprint: None,
/// # };
/// let new = vault_server::NewVersion {
///     new_secret_id: "s1".into(),
///     version,
///     shares: vec![vault_server::ShareRecord { slot: 1, provider: "gcp".into(), blob: Some(vec![1]) }],
/// };
/// assert_eq!(new.shares.len(), 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVersion {
    /// Id for the secret row if this is the first version.
    pub new_secret_id: String,
    /// The version row fields (`secret_id` is ignored when the secret already exists).
    pub version: VersionRecord,
    /// One row per provider slot.
    pub shares: Vec<ShareRecord>,
}

/// The storage the server runs on.
///
/// Every write that must not be half done (a version and its shares) is one call, which an
/// implementation runs in one transaction.
///
/// # Audit
///
/// Every write method takes the [`NewAuditEvent`] describing it and appends it to the audit
/// chain **in the same transaction**: the change and its record commit together or not at all
/// (fail-closed). A write that changes nothing (a method answering `false`) rolls back, so its
/// event is not recorded as a success; the caller records the failure with
/// [`append_audit`](Storage::append_audit), which reads and failures use too.
///
/// Appends are serialized on the chain head row: the implementation updates it first in the
/// transaction (`UPDATE audit_chain_head SET seq = seq + 1 … RETURNING seq, event_hash`), which
/// holds SQLite's write lock (the transaction is `BEGIN IMMEDIATE`) or PostgreSQL's row lock
/// until commit, so concurrent writers produce one gap-free chain.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use vault_server::{SqliteStorage, Storage};
///
/// let dir = tempfile::tempdir()?;
/// let storage = SqliteStorage::open(dir.path()).await?;
/// assert_eq!(storage.api_key_count().await?, 0);
/// # Ok(()) }
/// ```
#[async_trait]
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// How many API keys exist (revoked ones included).
    async fn api_key_count(&self) -> Result<u64, StorageError>;
    /// Stores a new API key.
    async fn insert_api_key(
        &self,
        key: &ApiKeyRecord,
        audit: &NewAuditEvent,
    ) -> Result<(), StorageError>;
    /// Stores `key` only if there is no API key at all, atomically, with its audit event in the
    /// same transaction: of several server replicas bootstrapping one database at once, exactly
    /// one creates the first admin key (and records it). True if `key` was stored; false rolls
    /// back, so no event is recorded.
    async fn insert_first_api_key(
        &self,
        key: &ApiKeyRecord,
        audit: &NewAuditEvent,
    ) -> Result<bool, StorageError>;
    /// The key whose hash this is.
    async fn find_api_key_by_hash(&self, hash: &[u8])
    -> Result<Option<ApiKeyRecord>, StorageError>;
    /// The key with this id.
    async fn get_api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StorageError>;
    /// A user's keys, oldest first.
    async fn list_api_keys(&self, user_id: &str) -> Result<Vec<ApiKeyRecord>, StorageError>;
    /// Revokes a user's key; false if there is no such unrevoked key.
    async fn revoke_api_key(
        &self,
        user_id: &str,
        id: &str,
        at: i64,
        audit: &NewAuditEvent,
    ) -> Result<bool, StorageError>;

    /// Stores a new vault (no limit on the number of vaults), with its audit event.
    async fn insert_vault(
        &self,
        vault: &VaultRecord,
        audit: &NewAuditEvent,
    ) -> Result<(), StorageError> {
        self.insert_vault_within(vault, None, audit).await
    }
    /// Stores a new vault unless the organisation already has `max_vaults` live vaults:
    /// [`StorageError::LimitReached`] then (nothing written, no event). The count, the insert
    /// and the audit event are in one transaction.
    async fn insert_vault_within(
        &self,
        vault: &VaultRecord,
        max_vaults: Option<u64>,
        audit: &NewAuditEvent,
    ) -> Result<(), StorageError>;
    /// A vault that is not deleted.
    async fn get_vault(&self, id: &str) -> Result<Option<VaultRecord>, StorageError>;
    /// A user's vaults that are not deleted, oldest first.
    async fn list_vaults(&self, created_by: &str) -> Result<Vec<VaultRecord>, StorageError>;
    /// Soft-deletes a vault; false if there is no such vault.
    async fn delete_vault(
        &self,
        id: &str,
        at: i64,
        audit: &NewAuditEvent,
    ) -> Result<bool, StorageError>;
    /// Sets the custody of a vault that has none; false if it already has one (nothing is
    /// changed).
    async fn set_vault_custody(
        &self,
        id: &str,
        custody: &VaultCustodyRecord,
        audit: &NewAuditEvent,
    ) -> Result<bool, StorageError>;

    /// The highest version number of a secret (deleted ones included), if it exists.
    async fn latest_version_number(
        &self,
        vault_id: &str,
        path: &str,
    ) -> Result<Option<u64>, StorageError>;
    /// Writes a version and all its shares in one transaction, creating the secret if needed.
    /// [`StorageError::Conflict`] if that version number exists already.
    async fn put_version(
        &self,
        new: &NewVersion,
        audit: &NewAuditEvent,
    ) -> Result<VersionRecord, StorageError> {
        self.put_version_within(new, None, audit).await
    }
    /// As [`put_version`](Self::put_version), and when the write would make a secret live
    /// (a new path, or one whose versions are all deleted) while the organisation already has
    /// `max_secrets` live secrets, [`StorageError::LimitReached`] (nothing written, no event).
    /// The count is taken inside the write transaction.
    async fn put_version_within(
        &self,
        new: &NewVersion,
        max_secrets: Option<u64>,
        audit: &NewAuditEvent,
    ) -> Result<VersionRecord, StorageError>;
    /// A version (the latest if `version` is `None`) with its shares.
    async fn get_version(
        &self,
        vault_id: &str,
        path: &str,
        version: Option<u64>,
    ) -> Result<Option<(VersionRecord, Vec<ShareRecord>)>, StorageError>;
    /// Every version of a secret, oldest first.
    async fn list_versions(
        &self,
        vault_id: &str,
        path: &str,
    ) -> Result<Vec<VersionRecord>, StorageError>;
    /// The latest version of every secret under `prefix` whose latest version is not deleted,
    /// ordered by path.
    async fn list_secrets(
        &self,
        vault_id: &str,
        prefix: &str,
    ) -> Result<Vec<VersionRecord>, StorageError>;
    /// Disables one version; false if it does not exist or is deleted.
    async fn disable_version(
        &self,
        version_id: &str,
        audit: &NewAuditEvent,
    ) -> Result<bool, StorageError>;
    /// Soft-deletes every version of a secret; false if it has none left to delete.
    async fn delete_secret(
        &self,
        vault_id: &str,
        path: &str,
        audit: &NewAuditEvent,
    ) -> Result<bool, StorageError>;
    /// Counts one read of a version unless it has reached its maximum; false if it had.
    async fn record_access(
        &self,
        version_id: &str,
        audit: &NewAuditEvent,
    ) -> Result<bool, StorageError>;

    /// Stores a new agent (no limit on the number of agents), with its audit event.
    async fn insert_agent(
        &self,
        agent: &AgentRecord,
        audit: &NewAuditEvent,
    ) -> Result<(), StorageError> {
        self.insert_agent_within(agent, None, audit).await
    }
    /// Stores a new agent unless the organisation already has `max_agents` agents that are
    /// not deleted: [`StorageError::LimitReached`] then (nothing written, no event). The count,
    /// the insert and the audit event are in one transaction.
    async fn insert_agent_within(
        &self,
        agent: &AgentRecord,
        max_agents: Option<u64>,
        audit: &NewAuditEvent,
    ) -> Result<(), StorageError>;
    /// An agent that is not deleted.
    async fn get_agent(&self, id: &str) -> Result<Option<AgentRecord>, StorageError>;
    /// The agent whose key hash this is (deleted ones included).
    async fn find_agent_by_hash(&self, hash: &[u8]) -> Result<Option<AgentRecord>, StorageError>;
    /// A user's agents that are not deleted, oldest first.
    async fn list_agents(&self, created_by: &str) -> Result<Vec<AgentRecord>, StorageError>;
    /// Deletes a user's agent; false if there is no such agent.
    async fn delete_agent(
        &self,
        created_by: &str,
        id: &str,
        at: i64,
        audit: &NewAuditEvent,
    ) -> Result<bool, StorageError>;

    /// Stores a new policy.
    async fn insert_policy(
        &self,
        policy: &PolicyRecord,
        audit: &NewAuditEvent,
    ) -> Result<(), StorageError>;
    /// Replaces a policy's rule (pattern, principal, permissions, effect, priority, expiry);
    /// false if the vault has no such policy.
    async fn update_policy(
        &self,
        policy: &PolicyRecord,
        audit: &NewAuditEvent,
    ) -> Result<bool, StorageError>;
    /// Deletes a policy; false if the vault has no such policy.
    async fn delete_policy(
        &self,
        vault_id: &str,
        id: &str,
        audit: &NewAuditEvent,
    ) -> Result<bool, StorageError>;
    /// A vault's policy.
    async fn get_policy(
        &self,
        vault_id: &str,
        id: &str,
    ) -> Result<Option<PolicyRecord>, StorageError>;
    /// A vault's policies, oldest first.
    async fn list_policies(&self, vault_id: &str) -> Result<Vec<PolicyRecord>, StorageError>;
    /// A vault's policies for one principal.
    async fn principal_policies(
        &self,
        vault_id: &str,
        principal_type: &str,
        principal_id: &str,
    ) -> Result<Vec<PolicyRecord>, StorageError>;

    /// Appends one event in its own transaction (reads, failures, token issuance).
    async fn append_audit(&self, audit: &NewAuditEvent) -> Result<AuditEvent, StorageError>;
    /// The chain head: its `seq` (0 for an empty chain) and `event_hash`.
    async fn audit_head(&self) -> Result<(u64, [u8; 32]), StorageError>;
    /// Events matching a query, newest first, with the total count of matches.
    async fn audit_events(
        &self,
        query: &AuditQuery,
    ) -> Result<(Vec<AuditEvent>, u64), StorageError>;
    /// Up to `limit` events with `seq >= from_seq`, in chain order.
    async fn audit_chain(&self, from_seq: u64, limit: u64)
    -> Result<Vec<AuditEvent>, StorageError>;
    /// The first and last `seq` of the events in a time window, if any.
    async fn audit_seq_range(
        &self,
        from: Option<i64>,
        to: Option<i64>,
    ) -> Result<Option<(u64, u64)>, StorageError>;
    /// Stores a checkpoint; false if one exists for that `seq` already.
    async fn insert_checkpoint(&self, checkpoint: &Checkpoint) -> Result<bool, StorageError>;
    /// The checkpoints with `from_seq <= seq <= to_seq`, oldest first.
    async fn audit_checkpoints(
        &self,
        from_seq: u64,
        to_seq: u64,
    ) -> Result<Vec<Checkpoint>, StorageError>;
    /// The newest checkpoint.
    async fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, StorageError>;

    /// The vault's CMEK fingerprint, if the vault exists, is not deleted and has CMEK on.
    async fn vault_cmek_fingerprint(&self, vault_id: &str) -> Result<Option<String>, StorageError>;
    /// Turns CMEK on with `fingerprint`, or off with `None`, with its audit event; false
    /// (nothing written, no event) if the vault does not exist or a rotation job of the vault
    /// is unfinished (the fingerprint is the job's to change).
    async fn set_vault_cmek(
        &self,
        vault_id: &str,
        fingerprint: Option<&str>,
        audit: &NewAuditEvent,
    ) -> Result<bool, StorageError>;
    /// Creates a rotation job and, in the same transaction, makes its new fingerprint the
    /// vault's (new writes are flagged with the new key from then on). `total` is counted
    /// here: the vault's undeleted versions flagged with the old fingerprint.
    /// [`StorageError::Conflict`] if the vault's fingerprint is no longer `old_fingerprint`
    /// or another job is unfinished. The audit event is appended in the same transaction.
    async fn create_cmek_job(
        &self,
        job: &CmekJobRecord,
        audit: &NewAuditEvent,
    ) -> Result<CmekJobRecord, StorageError>;
    /// A job of a vault.
    async fn get_cmek_job(
        &self,
        vault_id: &str,
        job_id: &str,
    ) -> Result<Option<CmekJobRecord>, StorageError>;
    /// The vault's unfinished (running, paused or failed) job, if any.
    async fn unfinished_cmek_job(
        &self,
        vault_id: &str,
    ) -> Result<Option<CmekJobRecord>, StorageError>;
    /// Sets a job's status and error, with its audit event in the same transaction;
    /// `processed` is the job's own counter.
    async fn set_cmek_job_status(
        &self,
        job_id: &str,
        status: CmekJobStatus,
        error: Option<&str>,
        audit: &NewAuditEvent,
    ) -> Result<(), StorageError>;
    /// Marks every running job paused (at startup: the keys did not survive the restart),
    /// appending one event built by `audit` for each job in the same transaction.
    async fn pause_running_cmek_jobs(
        &self,
        audit: &(
             dyn for<'j> Fn(&'j CmekJobRecord) -> Result<NewAuditEvent, AuditError> + Send + Sync
         ),
    ) -> Result<u64, StorageError>;
    /// Up to `limit` undeleted versions of the vault still flagged with `fingerprint`.
    async fn cmek_versions_with(
        &self,
        vault_id: &str,
        fingerprint: &str,
        limit: u32,
    ) -> Result<Vec<(VersionRecord, Vec<ShareRecord>)>, StorageError>;
    /// Replaces one version's envelope and shares and re-flags it `new_fingerprint`, and counts
    /// it in the job, with its audit event, in one transaction; false (nothing changed, no
    /// event) if the version is no longer flagged `old_fingerprint`.
    async fn rewrite_cmek_version(
        &self,
        job: &CmekJobRecord,
        version_id: &str,
        envelope: &[u8],
        shares: &[ShareRecord],
        audit: &NewAuditEvent,
    ) -> Result<bool, StorageError>;
    /// Stores a treasury wallet: its private key as the next version of its secret (exactly as
    /// [`Storage::put_version`]) and its metadata, in one transaction with `audit`. With
    /// `replaces` (a rotation) that wallet is deactivated and the older versions of the secret
    /// are deleted in the same transaction. [`StorageError::Conflict`] if another write took the
    /// version, the chain already has an active wallet, or `replaces` is no longer active.
    async fn put_wallet(
        &self,
        new: &NewVersion,
        wallet: &WalletRecord,
        replaces: Option<&str>,
        audit: &NewAuditEvent,
    ) -> Result<VersionRecord, StorageError>;
    /// The user's active treasury wallets, oldest first.
    async fn list_wallets(&self, user_id: &str) -> Result<Vec<WalletRecord>, StorageError>;
    /// Deactivates a wallet and deletes every version of its key secret, with `audit`; false
    /// if it was not active.
    async fn delete_wallet(
        &self,
        wallet: &WalletRecord,
        at: i64,
        audit: &NewAuditEvent,
    ) -> Result<bool, StorageError>;

    /// Closes the store, waiting for work in flight.
    async fn close(&self);
}

/// A treasury wallet's public metadata; its private key is the secret at `secret_path`
/// (version `secret_version`) of the vault `vault_id`.
///
/// # Example
///
/// ```
/// let wallet = vault_server::WalletRecord {
///     id: "w1".into(), user_id: "admin".into(), vault_id: "v1".into(), chain: "solana".into(),
///     curve: "ed25519".into(), public_key_hex: "00".repeat(32), address: "1111".into(),
///     is_active: true, secret_path: "users/admin/chains/solana/private_key".into(),
///     secret_version: 1, created_at: 0,
/// };
/// assert!(wallet.is_active);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletRecord {
    /// UUID.
    pub id: String,
    /// The user whose treasury holds it.
    pub user_id: String,
    /// The user's `__treasury-keys` vault.
    pub vault_id: String,
    /// `ethereum`, `bitcoin` or `solana`.
    pub chain: String,
    /// `secp256k1` or `ed25519`.
    pub curve: String,
    /// The public key (SEC1 compressed for secp256k1), hex.
    pub public_key_hex: String,
    /// The chain address.
    pub address: String,
    /// False once rotated or deleted.
    pub is_active: bool,
    /// The secret holding the private key.
    pub secret_path: String,
    /// The version of that secret holding this wallet's key.
    pub secret_version: u64,
    /// Unix milliseconds.
    pub created_at: i64,
}
