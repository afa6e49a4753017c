//! The embedded SQLite store: WAL journal, `synchronous = FULL` (an acknowledged commit is on
//! disk before the answer), foreign keys on, migrations embedded at compile time.
//!
//! Queries use `$n` placeholders and standard SQL only, so the PostgreSQL store can share them;
//! the statements of direct writes (rusqlite, see [`GroupCommit::write_direct`]) number theirs
//! `?n`, since rusqlite binds by position.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

use super::direct_read::DirectReaders;
use super::group_commit::GroupCommit;
use super::read_cache::ReadCache;
use super::{
    AgentRecord, ApiKeyRecord, AuditQuery, CmekJobRecord, CmekJobStatus, NewVersion, PolicyRecord,
    ShareRecord, Storage, StorageError, VaultCustodyRecord, VaultRecord, VersionRecord,
    WalletRecord, share_record,
};
use crate::audit::{AuditError, AuditEvent, AuditKey, Checkpoint, NewAuditEvent};
use crate::metrics::Metrics;

/// The database file inside the data directory.
const DB_FILE: &str = "vault.db";

/// The lock file that keeps a second server process off a data directory (see [`DirLock`]).
const LOCK_FILE: &str = "vault.db.lock";

/// Connections for reads: one per CPU, at least 2 and at most 8. Each is a thread in sqlx and a
/// read is CPU work on that thread, so more threads than CPUs only add context switches (on 2
/// CPUs, 4 readers cost 20% more CPU per GET than 2); two keep a long read (an audit export)
/// from holding up every other.
fn readers() -> u32 {
    let cpus = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    u32::try_from(cpus.clamp(2, 8)).unwrap_or(2)
}

/// The embedded SQLite store.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let storage = vault_server::SqliteStorage::open(dir.path()).await?;
/// assert!(dir.path().join("vault.db").exists());
/// # drop(storage);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SqliteStorage {
    /// Reads. Every write goes through `writer` instead.
    pool: SqlitePool,
    /// The read on every secret read's path (a version with its shares), without sqlx.
    direct: Arc<DirectReaders>,
    /// The one connection that writes, committing queued writes in batches (group commit).
    writer: GroupCommit,
    /// Seals audit events inside writes.
    sealer: Sealer,
    /// API keys and vaults as last read; dropped by every write that changes one.
    cache: ReadCache,
    /// The data directory's lock, held while the store is open; `None` for a database file
    /// opened with [`open_existing`](Self::open_existing).
    lock: Option<Arc<DirLock>>,
}

/// An exclusive advisory lock (`flock`) on `<data_dir>/vault.db.lock`, held by one open store.
///
/// One server process per SQLite data directory is a rule the store relies on: its read cache
/// is dropped by its own writes only, so a key revoked through a second process on the same
/// files would still pass in the first. Two processes are refused at open instead. The OS
/// releases the lock when the process dies, so a crash never leaves it behind.
#[derive(Debug)]
struct DirLock {
    file: std::fs::File,
}

impl DirLock {
    fn acquire(data_dir: &Path) -> Result<DirLock, StorageError> {
        let path = data_dir.join(LOCK_FILE);
        let mut options = std::fs::OpenOptions::new();
        options.create(true).truncate(false).write(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&path)?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock { file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(StorageError::Io(std::io::Error::new(
                std::io::ErrorKind::ResourceBusy,
                format!(
                    "the data directory {} is in use by another vault-server (it holds {}); \
                         run one server per data directory, or use PostgreSQL for several",
                    data_dir.display(),
                    path.display()
                ),
            ))),
            Err(std::fs::TryLockError::Error(e)) => Err(StorageError::Io(e)),
        }
    }
}

/// What a write needs to append audit events: cloned into each write, which runs on the
/// writer task.
#[derive(Debug, Clone)]
struct Sealer {
    /// Seals every appended audit event (`integrity_hash`).
    key: Arc<AuditKey>,
    /// Counts failed audit appends (`mpc_vault_audit_write_failures_total`); `None` for a
    /// store opened outside a server.
    metrics: Option<Metrics>,
}

impl Sealer {
    /// Appends `event` inside `tx`, counting a failure (the caller's write then fails too:
    /// fail-closed).
    async fn append(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        event: &NewAuditEvent,
    ) -> Result<AuditEvent, StorageError> {
        self.counted(append(tx, &self.key, event).await)
    }

    /// [`append`](Self::append) for a direct write (see [`GroupCommit::write_direct`]).
    fn append_direct(
        &self,
        conn: &rusqlite::Connection,
        event: &NewAuditEvent,
    ) -> Result<AuditEvent, StorageError> {
        self.counted(append_direct(conn, &self.key, event))
    }

    /// Counts `appended` in the metrics if it failed, and passes it on.
    fn counted(
        &self,
        appended: Result<AuditEvent, StorageError>,
    ) -> Result<AuditEvent, StorageError> {
        if appended.is_err()
            && let Some(metrics) = &self.metrics
        {
            metrics.audit_write_failed();
        }
        appended
    }

    /// Commits the change with its audit event when it changed something; otherwise rolls
    /// back (nothing changed, and the event must not claim a success).
    async fn commit_if(
        &self,
        mut tx: Transaction<'_, Sqlite>,
        event: &NewAuditEvent,
        changed: bool,
    ) -> Result<bool, StorageError> {
        if !changed {
            tx.rollback().await?;
            return Ok(false);
        }
        self.append(&mut tx, event).await?;
        tx.commit().await?;
        Ok(true)
    }
}

impl SqliteStorage {
    /// Opens (creating if needed) `vault.db` in `data_dir` and runs the migrations.
    ///
    /// # Errors
    ///
    /// [`StorageError`] if the directory cannot be created, the database cannot be opened or a
    /// migration fails.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// vault_server::SqliteStorage::open(dir.path()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn open(data_dir: &Path) -> Result<SqliteStorage, StorageError> {
        create_private_dir(data_dir)?;
        let key = AuditKey::load_or_create(data_dir)?;
        SqliteStorage::open_with_audit_key(data_dir, Arc::new(key)).await
    }

    /// As [`open`](Self::open), with the audit HMAC key given rather than read from
    /// `<data_dir>/audit-hmac.key`.
    ///
    /// # Errors
    ///
    /// As [`open`](Self::open).
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let key = std::sync::Arc::new(vault_server::AuditKey::load_or_create(dir.path())?);
    /// vault_server::SqliteStorage::open_with_audit_key(dir.path(), key).await?;
    /// # Ok(()) }
    /// ```
    pub async fn open_with_audit_key(
        data_dir: &Path,
        audit_key: Arc<AuditKey>,
    ) -> Result<SqliteStorage, StorageError> {
        create_private_dir(data_dir)?;
        let options = SqliteConnectOptions::new()
            .filename(data_dir.join(DB_FILE))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL syncs the WAL on every commit: an acknowledged write survives power loss.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
            // Every read writes an audit event, and each event touches a few B-trees at random
            // pages: with the default checkpoint every 1,000 WAL pages (4 MiB), the writer
            // stopped to checkpoint every few dozen requests. 16,384 pages (64 MiB) lets one
            // checkpoint fold many rewrites of the same hot pages.
            .pragma("wal_autocheckpoint", "16384")
            // 16 MiB of page cache per connection (the default is 2 MiB): the writer's cache
            // stays valid across its own commits and keeps the hot index pages.
            .pragma("cache_size", "-16384")
            // Each write runs in a savepoint (group commit), and SQLite keeps a savepoint's
            // undo pages in a sub-journal: in memory rather than a temporary file, which cost
            // a pwrite per page.
            .pragma("temp_store", "MEMORY");
        let lock = DirLock::acquire(data_dir)?;
        let mut storage = SqliteStorage::connect(options, readers(), audit_key).await?;
        storage.lock = Some(Arc::new(lock));
        Ok(storage)
    }

    /// Counts every failed audit append in `metrics`, and the group commits. Every append goes
    /// through [`Sealer::append`], in a write's transaction, so none is missed.
    pub(crate) fn with_metrics(mut self, metrics: Metrics) -> SqliteStorage {
        // The first server to own the store counts its commits.
        let _ = self.writer.stats().metrics.set(metrics.clone());
        self.sealer.metrics = Some(metrics);
        self
    }

    /// The pool for reads and the writer for writes, on the database `options` opens, with the
    /// migrations run. Reads run in WAL snapshots and never wait for the writer.
    async fn connect(
        options: SqliteConnectOptions,
        readers: u32,
        audit_key: Arc<AuditKey>,
    ) -> Result<SqliteStorage, StorageError> {
        let pool = SqlitePoolOptions::new()
            .max_connections(readers)
            // A local file needs no ping before each use: that would be one more round trip to
            // the connection's thread for every query.
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        let direct = Arc::new(DirectReaders::new(options.get_filename()));
        let writer = GroupCommit::start(options).await?;
        Ok(SqliteStorage {
            pool,
            direct,
            writer,
            sealer: Sealer {
                key: audit_key,
                metrics: None,
            },
            cache: ReadCache::default(),
            lock: None,
        })
    }

    /// Writes a consistent copy of the database to `dest` (which must not exist) with SQLite's
    /// `VACUUM INTO`, and syncs it to disk. Safe while a server runs on the same database: the
    /// copy is one read snapshot, and writers are not blocked in WAL mode.
    ///
    /// The copy is a complete `vault.db`: to restore, put it as `vault.db` in an empty data
    /// directory together with the JWT signing key and the local providers' key directory (see
    /// the README's "Storage" section).
    ///
    /// # Errors
    ///
    /// [`StorageError::Io`] if `dest` exists or cannot be created or synced,
    /// [`StorageError::Database`] if SQLite cannot write the copy.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let storage = vault_server::SqliteStorage::open(&dir.path().join("data")).await?;
    /// storage.backup_to(&dir.path().join("backup.db")).await?;
    /// let key = std::sync::Arc::new(vault_server::AuditKey::load_or_create(&dir.path().join("data"))?);
    /// let restored =
    ///     vault_server::SqliteStorage::open_existing(&dir.path().join("backup.db"), key).await?;
    /// # drop(restored);
    /// # Ok(()) }
    /// ```
    pub async fn backup_to(&self, dest: &Path) -> Result<(), StorageError> {
        let Some(dest_text) = dest.to_str() else {
            return Err(StorageError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the backup path must be valid UTF-8",
            )));
        };
        // The copy holds everything the database does (wrapped shares, key hashes): it is
        // created here, private (0600) and only if it does not exist; SQLite accepts an empty
        // file as the target of VACUUM INTO.
        create_private_file(dest)?;
        let copied = sqlx::query("VACUUM INTO $1")
            .bind(dest_text)
            .execute(&self.pool)
            .await;
        if let Err(e) = copied {
            // Only the empty file created above is removed; nothing else was written.
            let _ = std::fs::remove_file(dest);
            return Err(e.into());
        }
        // VACUUM INTO does not sync the file it writes; a backup must be on disk when this
        // returns.
        std::fs::File::open(dest)?.sync_all()?;
        Ok(())
    }

    /// Opens an existing SQLite database file (no data directory, never creating one) and
    /// runs the migrations: for `vault-server backup`, which must not create an empty store
    /// where it expected a real one, and for checking a backup. `audit_key` is the data
    /// directory's audit HMAC key, which seals any event appended through this handle.
    ///
    /// # Errors
    ///
    /// [`StorageError::Database`] if the file does not exist or is not a database.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let key = std::sync::Arc::new(vault_server::AuditKey::load_or_create(dir.path())?);
    /// let missing = vault_server::SqliteStorage::open_existing("/nonexistent/vault.db".as_ref(), key);
    /// assert!(missing.await.is_err());
    /// # Ok(()) }
    /// ```
    pub async fn open_existing(
        file: &Path,
        audit_key: Arc<AuditKey>,
    ) -> Result<SqliteStorage, StorageError> {
        let options = SqliteConnectOptions::new()
            .filename(file)
            .create_if_missing(false)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
            // Every read writes an audit event, and each event touches a few B-trees at random
            // pages: with the default checkpoint every 1,000 WAL pages (4 MiB), the writer
            // stopped to checkpoint every few dozen requests. 16,384 pages (64 MiB) lets one
            // checkpoint fold many rewrites of the same hot pages.
            .pragma("wal_autocheckpoint", "16384")
            // 16 MiB of page cache per connection (the default is 2 MiB): the writer's cache
            // stays valid across its own commits and keeps the hot index pages.
            .pragma("cache_size", "-16384");
        SqliteStorage::connect(options, 1, audit_key).await
    }

    /// The database file inside a data directory.
    pub(crate) fn file_in(data_dir: &Path) -> std::path::PathBuf {
        data_dir.join(DB_FILE)
    }
}

/// Creates the data directory readable by its owner only: it holds the database, the JWT
/// signing key and (by default) the local providers' KEKs.
#[cfg(unix)]
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// Creates an empty file readable by its owner only; fails if it exists.
#[cfg(unix)]
fn create_private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
}

#[cfg(not(unix))]
fn create_private_file(path: &Path) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map(drop)
}

fn to_u64(table: &'static str, value: i64) -> Result<u64, StorageError> {
    u64::try_from(value).map_err(|_| StorageError::Corrupt {
        table,
        reason: format!("negative count {value}"),
    })
}

fn to_i64(value: u64) -> Result<i64, StorageError> {
    i64::try_from(value).map_err(|_| StorageError::Corrupt {
        table: "secret_versions",
        reason: format!("number {value} does not fit the database"),
    })
}

fn api_key(row: &SqliteRow) -> Result<ApiKeyRecord, StorageError> {
    let scope: Option<String> = row.try_get("vault_scope")?;
    let vault_scope = scope
        .map(|text| {
            serde_json::from_str(&text).map_err(|e| StorageError::Corrupt {
                table: "api_keys",
                reason: format!("vault_scope: {e}"),
            })
        })
        .transpose()?;
    Ok(ApiKeyRecord {
        vault_scope,
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        name: row.try_get("name")?,
        key_hash: row.try_get("key_hash")?,
        key_prefix: row.try_get("key_prefix")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

fn vault(row: &SqliteRow) -> Result<VaultRecord, StorageError> {
    let mode: Option<String> = row.try_get("mpc_custody")?;
    let custody = match mode {
        None => None,
        Some(mode) => {
            let threshold: i64 = row.try_get("mpc_threshold")?;
            let providers: String = row.try_get("mpc_providers")?;
            Some(VaultCustodyRecord {
                mode,
                threshold: u8::try_from(threshold).map_err(|_| StorageError::Corrupt {
                    table: "vaults",
                    reason: format!("threshold {threshold}"),
                })?,
                providers: serde_json::from_str(&providers).map_err(|e| StorageError::Corrupt {
                    table: "vaults",
                    reason: format!("mpc_providers: {e}"),
                })?,
            })
        }
    };
    Ok(VaultRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        cmek_enabled: row.try_get::<i64, _>("cmek_enabled")? != 0,
        custody,
    })
}

/// The columns of a result row, from sqlx or from rusqlite (direct reads): one decoder per
/// record serves both.
trait Columns {
    /// The column `name`, decoded as `T` by either library.
    fn column<T>(&self, name: &str) -> Result<T, StorageError>
    where
        T: rusqlite::types::FromSql + for<'r> sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>;
}

impl Columns for SqliteRow {
    fn column<T>(&self, name: &str) -> Result<T, StorageError>
    where
        T: rusqlite::types::FromSql + for<'r> sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
    {
        Ok(self.try_get(name)?)
    }
}

/// A rusqlite row with its statement's column names, read once per statement: rusqlite's own
/// lookup by name asks SQLite for every column's name (and measures it) on each call.
struct NamedRow<'a> {
    row: &'a rusqlite::Row<'a>,
    names: &'a [String],
}

impl Columns for NamedRow<'_> {
    fn column<T>(&self, name: &str) -> Result<T, StorageError>
    where
        T: rusqlite::types::FromSql + for<'r> sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
    {
        let index = self
            .names
            .iter()
            .position(|column| column == name)
            .ok_or_else(|| rusqlite::Error::InvalidColumnName(name.to_owned()))?;
        Ok(self.row.get(index)?)
    }
}

fn version_of(row: &impl Columns) -> Result<VersionRecord, StorageError> {
    const T: &str = "secret_versions";
    Ok(VersionRecord {
        secret_id: row.column("secret_id")?,
        version_id: row.column("version_id")?,
        vault_id: row.column("vault_id")?,
        path: row.column("path")?,
        version: to_u64(T, row.column("version")?)?,
        secret_type: row.column("secret_type")?,
        custody_mode: row.column("custody_mode")?,
        envelope: row.column("envelope")?,
        metadata: row.column("metadata")?,
        expires_at: row.column("expires_at")?,
        max_access_count: row
            .column::<Option<i64>>("max_access_count")?
            .map(|v| to_u64(T, v))
            .transpose()?,
        access_count: to_u64(T, row.column("access_count")?)?,
        disabled: row.column::<i64>("disabled")? != 0,
        deleted: row.column::<i64>("deleted")? != 0,
        created_by: row.column("created_by")?,
        created_at: row.column("created_at")?,
        cmek_fingerprint: row.column("cmek_fingerprint")?,
    })
}

fn json_list(table: &'static str, list: &[String]) -> Result<String, StorageError> {
    serde_json::to_string(list).map_err(|e| StorageError::Corrupt {
        table,
        reason: e.to_string(),
    })
}

fn parse_list(table: &'static str, text: &str) -> Result<Vec<String>, StorageError> {
    serde_json::from_str(text).map_err(|e| StorageError::Corrupt {
        table,
        reason: e.to_string(),
    })
}

fn agent(row: &SqliteRow) -> Result<AgentRecord, StorageError> {
    const T: &str = "agents";
    let vault_ids: Option<String> = row.try_get("vault_ids")?;
    Ok(AgentRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        created_by: row.try_get("created_by")?,
        vault_ids: vault_ids.map(|t| parse_list(T, &t)).transpose()?,
        expires_at: row.try_get("expires_at")?,
        token_ttl_seconds: row
            .try_get::<Option<i64>, _>("token_ttl_seconds")?
            .map(|v| to_u64(T, v))
            .transpose()?,
        key_hash: row.try_get("key_hash")?,
        key_prefix: row.try_get("key_prefix")?,
        created_at: row.try_get("created_at")?,
        deleted_at: row.try_get("deleted_at")?,
    })
}

fn policy(row: &SqliteRow) -> Result<PolicyRecord, StorageError> {
    let permissions: String = row.try_get("permissions")?;
    Ok(PolicyRecord {
        id: row.try_get("id")?,
        vault_id: row.try_get("vault_id")?,
        secret_path_pattern: row.try_get("secret_path_pattern")?,
        principal_type: row.try_get("principal_type")?,
        principal_id: row.try_get("principal_id")?,
        permissions: parse_list("policies", &permissions)?,
        effect: row.try_get("effect")?,
        priority: row.try_get("priority")?,
        expires_at: row.try_get("expires_at")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn cmek_job(row: &SqliteRow) -> Result<CmekJobRecord, StorageError> {
    const T: &str = "cmek_rotation_jobs";
    let status: String = row.try_get("status")?;
    Ok(CmekJobRecord {
        id: row.try_get("id")?,
        vault_id: row.try_get("vault_id")?,
        old_fingerprint: row.try_get("old_fingerprint")?,
        new_fingerprint: row.try_get("new_fingerprint")?,
        status: status
            .parse()
            .map_err(|reason| StorageError::Corrupt { table: T, reason })?,
        processed: to_u64(T, row.try_get("processed")?)?,
        total: to_u64(T, row.try_get("total")?)?,
        error: row.try_get("error")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

const AUDIT_EVENTS: &str = "audit_events";
const AUDIT_HEAD: &str = "audit_chain_head";

fn hash32(table: &'static str, bytes: Vec<u8>) -> Result<[u8; 32], StorageError> {
    <[u8; 32]>::try_from(bytes).map_err(|b| StorageError::Corrupt {
        table,
        reason: format!("a hash of {} bytes", b.len()),
    })
}

fn audit_event(row: &SqliteRow) -> Result<AuditEvent, StorageError> {
    Ok(AuditEvent {
        seq: to_u64(AUDIT_EVENTS, row.try_get("seq")?)?,
        event: NewAuditEvent {
            id: row.try_get("id")?,
            occurred_at: row.try_get("occurred_at")?,
            request_id: row.try_get("request_id")?,
            actor_type: row.try_get("actor_type")?,
            actor_id: row.try_get("actor_id")?,
            action: row.try_get("action")?,
            resource_type: row.try_get("resource_type")?,
            resource_id: row.try_get("resource_id")?,
            vault_id: row.try_get("vault_id")?,
            outcome: row.try_get("outcome")?,
            detail: row.try_get("detail")?,
        },
        prev_hash: hash32(AUDIT_EVENTS, row.try_get("prev_hash")?)?,
        event_hash: hash32(AUDIT_EVENTS, row.try_get("event_hash")?)?,
        integrity_hash: hash32(AUDIT_EVENTS, row.try_get("integrity_hash")?)?,
    })
}

fn checkpoint(row: &SqliteRow) -> Result<Checkpoint, StorageError> {
    Ok(Checkpoint {
        seq: to_u64("audit_checkpoints", row.try_get("seq")?)?,
        event_id: row.try_get("event_id")?,
        event_hash: hash32("audit_checkpoints", row.try_get("event_hash")?)?,
        created_at: row.try_get("created_at")?,
        key_id: row.try_get("key_id")?,
        signature: row.try_get("signature")?,
    })
}

/// Appends `event` to the chain inside `tx`. The head row is updated first: that statement
/// takes the lock that serializes appends (SQLite's write lock, PostgreSQL's row lock) and
/// returns the new position with the previous head's hash (the hash column is not changed yet).
/// The event row and the head's new hash are then written by one two-statement query (SQLite
/// binds `$n` across both): one round trip fewer on the writer, for every audited write.
/// Takes the next sequence number and the previous event's hash from the chain head.
const ADVANCE_HEAD: &str =
    "UPDATE audit_chain_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, event_hash";

/// Inserts a sealed event (?1…?15). Direct writes bind by position, so their statements
/// number their parameters explicitly (`?n`, which sqlx reads as well).
macro_rules! insert_audit_event {
    () => {
        "INSERT INTO audit_events (seq, id, occurred_at, request_id, actor_type, actor_id, \
         action, resource_type, resource_id, vault_id, outcome, detail, prev_hash, event_hash, \
         integrity_hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, \
         ?15)"
    };
}

/// Records the new event's hash as the chain head's.
const SET_HEAD_HASH: &str = "UPDATE audit_chain_head SET event_hash = ?1 WHERE id = 1";

/// Seals `event` as number `seq` after the event whose hash is `prev` (the chain head as
/// [`ADVANCE_HEAD`] returns it); also returns `seq` as stored.
fn seal_after(
    key: &AuditKey,
    seq: i64,
    prev: Vec<u8>,
    event: &NewAuditEvent,
) -> Result<(i64, AuditEvent), StorageError> {
    let sealed = crate::audit::seal(
        key,
        to_u64(AUDIT_HEAD, seq)?,
        hash32(AUDIT_HEAD, prev)?,
        event,
    )?;
    Ok((seq, sealed))
}

/// Appends `event` to the audit chain inside `tx`.
async fn append(
    tx: &mut Transaction<'_, Sqlite>,
    key: &AuditKey,
    event: &NewAuditEvent,
) -> Result<AuditEvent, StorageError> {
    let row = sqlx::query(ADVANCE_HEAD).fetch_one(&mut **tx).await?;
    let (seq, sealed) = seal_after(key, row.try_get("seq")?, row.try_get("event_hash")?, event)?;
    let e = &sealed.event;
    // The event and the new head in one round trip: two statements in one query.
    sqlx::query(concat!(
        insert_audit_event!(),
        "; UPDATE audit_chain_head SET event_hash = ?14 WHERE id = 1"
    ))
    .bind(seq)
    .bind(&e.id)
    .bind(e.occurred_at)
    .bind(&e.request_id)
    .bind(&e.actor_type)
    .bind(&e.actor_id)
    .bind(&e.action)
    .bind(&e.resource_type)
    .bind(&e.resource_id)
    .bind(e.vault_id.as_deref())
    .bind(&e.outcome)
    .bind(&e.detail)
    .bind(sealed.prev_hash.as_slice())
    .bind(sealed.event_hash.as_slice())
    .bind(sealed.integrity_hash.as_slice())
    .execute(&mut **tx)
    .await?;
    Ok(sealed)
}

/// [`append`] on a direct write's connection.
fn append_direct(
    conn: &rusqlite::Connection,
    key: &AuditKey,
    event: &NewAuditEvent,
) -> Result<AuditEvent, StorageError> {
    let (seq, prev): (i64, Vec<u8>) = conn
        .prepare_cached(ADVANCE_HEAD)?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    let (seq, sealed) = seal_after(key, seq, prev, event)?;
    let e = &sealed.event;
    conn.prepare_cached(insert_audit_event!())?
        .execute(rusqlite::params![
            seq,
            e.id,
            e.occurred_at,
            e.request_id,
            e.actor_type,
            e.actor_id,
            e.action,
            e.resource_type,
            e.resource_id,
            e.vault_id,
            e.outcome,
            e.detail,
            sealed.prev_hash.as_slice(),
            sealed.event_hash.as_slice(),
            sealed.integrity_hash.as_slice(),
        ])?;
    conn.prepare_cached(SET_HEAD_HASH)?
        .execute([sealed.event_hash.as_slice()])?;
    Ok(sealed)
}

async fn shares_of(
    executor: impl sqlx::SqliteExecutor<'_>,
    version_id: &str,
) -> Result<Vec<ShareRecord>, StorageError> {
    sqlx::query(
        "SELECT slot, provider, blob FROM secret_dek_shares WHERE secret_version_id = $1 \
         ORDER BY slot",
    )
    .bind(version_id)
    .fetch_all(executor)
    .await?
    .iter()
    .map(|r| {
        share_record(
            r.try_get("slot")?,
            r.try_get("provider")?,
            r.try_get("blob")?,
        )
    })
    .collect()
}

/// Live secrets of the organisation: in a vault that is not deleted, with a version that is
/// not deleted. Treasury keys (the `__treasury-keys` system vault,
/// `crate::treasury::SYSTEM_VAULT`) are the server's, not the organisation's: not counted.
const LIVE_SECRETS: &str = "SELECT COUNT(*) FROM secrets s JOIN vaults va ON va.id = s.vault_id \
     WHERE va.deleted_at IS NULL AND va.name <> '__treasury-keys' AND EXISTS \
     (SELECT 1 FROM secret_versions lv WHERE lv.secret_id = s.id AND lv.deleted = 0)";

/// The columns `version()` reads: a version joined with its secret.
const VERSION_COLUMNS: &str = "s.id AS secret_id, v.id AS version_id, s.vault_id AS vault_id, \
     s.path AS path, v.version AS version, v.secret_type AS secret_type, \
     v.custody_mode AS custody_mode, v.envelope AS envelope, v.metadata AS metadata, \
     v.expires_at AS expires_at, v.max_access_count AS max_access_count, \
     v.access_count AS access_count, v.disabled AS disabled, v.deleted AS deleted, \
     v.created_by AS created_by, v.created_at AS created_at, \
     v.cmek_fingerprint AS cmek_fingerprint";

/// A version (the latest when `?3` is NULL) of the secret at `?1`/`?2`, one row per share
/// (one row with NULL share columns if it has none). Built once: it is the statement-cache key
/// of the read every secret read starts with.
static VERSION_WITH_SHARES: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {VERSION_COLUMNS}, d.slot AS share_slot, d.provider AS share_provider, \
         d.blob AS share_blob FROM secret_versions v JOIN secrets s ON s.id = v.secret_id \
         LEFT JOIN secret_dek_shares d ON d.secret_version_id = v.id \
         WHERE s.vault_id = ?1 AND s.path = ?2 AND v.version = COALESCE(?3, \
         (SELECT MAX(latest.version) FROM secret_versions latest \
          WHERE latest.secret_id = s.id)) \
         ORDER BY d.slot"
    )
});

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Whether a rusqlite error is a unique (or primary key) violation.
fn is_unique_violation_direct(err: &rusqlite::Error) -> bool {
    matches!(
        err,
        rusqlite::Error::SqliteFailure(failure, _)
            if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}

/// Inserts a version (creating its secret row on first use) with its shares, on a direct
/// write's connection; [`StorageError::Conflict`] if another write took the version number.
fn insert_version_direct(
    conn: &rusqlite::Connection,
    new: &NewVersion,
    max_secrets: Option<u64>,
) -> Result<VersionRecord, StorageError> {
    let v = &new.version;
    // Creates the secret's row or finds it, in one statement: the no-op update on a conflict
    // is what makes RETURNING answer with the existing row.
    let secret_id: String = conn
        .prepare_cached(
            "INSERT INTO secrets (id, vault_id, path, created_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (vault_id, path) DO UPDATE SET path = excluded.path RETURNING id",
        )?
        .query_row(
            rusqlite::params![new.new_secret_id, v.vault_id, v.path, v.created_at],
            |row| row.get(0),
        )?;
    if let Some(limit) = max_secrets {
        let live: bool = conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM secret_versions WHERE secret_id = ?1 AND deleted = 0)",
            )?
            .query_row([&secret_id], |row| row.get(0))?;
        if !live {
            let count: i64 = conn
                .prepare_cached(LIVE_SECRETS)?
                .query_row([], |row| row.get(0))?;
            if to_u64("secrets", count)? >= limit {
                // The error rolls the write back to its savepoint, secret row included.
                return Err(StorageError::LimitReached {
                    resource: "secrets",
                    limit,
                });
            }
        }
    }
    // The CMEK flag comes from the vault in this statement, not from the caller.
    let inserted = conn
        .prepare_cached(
            "INSERT INTO secret_versions (id, secret_id, version, secret_type, custody_mode, \
             envelope, metadata, expires_at, max_access_count, access_count, disabled, deleted, \
             created_by, created_at, cmek_fingerprint) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, \
             ?9, 0, 0, 0, ?10, ?11, (SELECT cmek_fingerprint FROM vaults WHERE id = ?12)) \
             RETURNING cmek_fingerprint",
        )?
        .query_row(
            rusqlite::params![
                v.version_id,
                secret_id,
                to_i64(v.version)?,
                v.secret_type,
                v.custody_mode,
                v.envelope,
                v.metadata,
                v.expires_at,
                v.max_access_count.map(to_i64).transpose()?,
                v.created_by,
                v.created_at,
                v.vault_id,
            ],
            |row| row.get::<_, Option<String>>(0),
        );
    let cmek_fingerprint = match inserted {
        Ok(fingerprint) => fingerprint,
        Err(e) if is_unique_violation_direct(&e) => return Err(StorageError::Conflict),
        Err(e) => return Err(e.into()),
    };
    // One prepared statement per share: a direct write pays no round trip per statement.
    let mut insert_share = conn.prepare_cached(
        "INSERT INTO secret_dek_shares (vault_id, secret_version_id, slot, provider, blob, state) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for share in &new.shares {
        insert_share.execute(rusqlite::params![
            v.vault_id,
            v.version_id,
            i64::from(share.slot),
            share.provider,
            share.blob,
            share_state(share),
        ])?;
    }
    let mut stored = v.clone();
    stored.cmek_fingerprint = cmek_fingerprint;
    stored.secret_id = secret_id;
    stored.access_count = 0;
    stored.disabled = false;
    stored.deleted = false;
    Ok(stored)
}

/// The `state` column of a share row: `pending` until its provider has wrapped it.
fn share_state(share: &ShareRecord) -> &'static str {
    if share.blob.is_some() {
        "stored"
    } else {
        "pending"
    }
}

fn wallet(row: &SqliteRow) -> Result<WalletRecord, StorageError> {
    let active: i64 = row.try_get("is_active")?;
    Ok(WalletRecord {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        vault_id: row.try_get("vault_id")?,
        chain: row.try_get("chain")?,
        curve: row.try_get("curve")?,
        public_key_hex: row.try_get("public_key_hex")?,
        address: row.try_get("address")?,
        is_active: active != 0,
        secret_path: row.try_get("secret_path")?,
        secret_version: to_u64("treasury_wallets", row.try_get("secret_version")?)?,
        created_at: row.try_get("created_at")?,
    })
}

async fn insert_shares(
    tx: &mut Transaction<'_, Sqlite>,
    vault_id: &str,
    version_id: &str,
    shares: &[ShareRecord],
) -> Result<(), StorageError> {
    if shares.is_empty() {
        return Ok(());
    }
    // One multi-row INSERT: one round trip for all the shares of a version.
    let mut sql = String::from(
        "INSERT INTO secret_dek_shares (vault_id, secret_version_id, slot, provider, blob, state) \
         VALUES ",
    );
    for i in 0..shares.len() {
        let p = i * 6;
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "(${}, ${}, ${}, ${}, ${}, ${})",
            p + 1,
            p + 2,
            p + 3,
            p + 4,
            p + 5,
            p + 6
        ));
    }
    let mut query = sqlx::query(&sql);
    for share in shares {
        query = query
            .bind(vault_id)
            .bind(version_id)
            .bind(i64::from(share.slot))
            .bind(&share.provider)
            .bind(share.blob.as_deref())
            .bind(share_state(share));
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

/// Inserts `key`'s row and returns how many rows were inserted; with `only_if_first`, only
/// when the table holds no key yet (the race-safe admin bootstrap).
async fn insert_api_key_row(
    tx: &mut Transaction<'_, Sqlite>,
    key: &ApiKeyRecord,
    only_if_first: bool,
) -> Result<u64, StorageError> {
    let sql = if only_if_first {
        "INSERT INTO api_keys (id, user_id, name, key_hash, key_prefix, vault_scope, \
         created_at, revoked_at) SELECT $1, $2, $3, $4, $5, $6, $7, $8 \
         WHERE NOT EXISTS (SELECT 1 FROM api_keys)"
    } else {
        "INSERT INTO api_keys (id, user_id, name, key_hash, key_prefix, vault_scope, \
         created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    };
    let scope = key
        .vault_scope
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| StorageError::Corrupt {
            table: "api_keys",
            reason: e.to_string(),
        })?;
    let done = sqlx::query(sql)
        .bind(&key.id)
        .bind(&key.user_id)
        .bind(&key.name)
        .bind(&key.key_hash)
        .bind(&key.key_prefix)
        .bind(scope)
        .bind(key.created_at)
        .bind(key.revoked_at)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected())
}

#[async_trait]
impl Storage for SqliteStorage {
    async fn api_key_count(&self) -> Result<u64, StorageError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_keys")
            .fetch_one(&self.pool)
            .await?;
        to_u64("api_keys", n)
    }

    async fn insert_api_key(
        &self,
        key: &ApiKeyRecord,
        audit: &NewAuditEvent,
    ) -> Result<(), StorageError> {
        let (key, audit) = (key.clone(), audit.clone());
        let sealer = self.sealer.clone();
        self.writer
            .write(move |mut tx| {
                Box::pin(async move {
                    let key: &ApiKeyRecord = &key;
                    let audit: &NewAuditEvent = &audit;
                    insert_api_key_row(&mut tx, key, false).await?;
                    sealer.append(&mut tx, audit).await?;
                    tx.commit().await?;
                    Ok(())
                })
            })
            .await
    }

    async fn insert_first_api_key(
        &self,
        key: &ApiKeyRecord,
        audit: &NewAuditEvent,
    ) -> Result<bool, StorageError> {
        let (key, audit) = (key.clone(), audit.clone());
        let sealer = self.sealer.clone();
        self.writer
            .write(move |mut tx| {
                Box::pin(async move {
                    let key: &ApiKeyRecord = &key;
                    let audit: &NewAuditEvent = &audit;
                    // `BEGIN IMMEDIATE` holds the write lock from the start, so the NOT EXISTS check and
                    // the insert cannot interleave with another writer.
                    let inserted = insert_api_key_row(&mut tx, key, true).await?;
                    sealer.commit_if(tx, audit, inserted == 1).await
                })
            })
            .await
    }

    async fn find_api_key_by_hash(
        &self,
        hash: &[u8],
    ) -> Result<Option<ApiKeyRecord>, StorageError> {
        let ticket = match self.cache.key(hash) {
            Ok(hit) => return Ok(Some(hit)),
            Err(ticket) => ticket,
        };
        let found = sqlx::query("SELECT * FROM api_keys WHERE key_hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(api_key)
            .transpose()?;
        if let Some(key) = &found {
            self.cache.store_key(ticket, key);
        }
        Ok(found)
    }

    async fn get_api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, StorageError> {
        sqlx::query("SELECT * FROM api_keys WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(api_key)
            .transpose()
    }

    async fn list_api_keys(&self, user_id: &str) -> Result<Vec<ApiKeyRecord>, StorageError> {
        sqlx::query("SELECT * FROM api_keys WHERE user_id = $1 ORDER BY created_at, id")
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(api_key)
            .collect()
    }

    async fn revoke_api_key(
        &self,
        user_id: &str,
        id: &str,
        at: i64,
        audit: &NewAuditEvent,
    ) -> Result<bool, StorageError> {
        let (user_id, id, audit) = (user_id.to_owned(), id.to_owned(), audit.clone());
        let sealer = self.sealer.clone();
        let written = self
            .writer
            .write(move |mut tx| {
                Box::pin(async move {
                    let user_id: &str = &user_id;
                    let id: &str = &id;
                    let audit: &NewAuditEvent = &audit;
                    let done = sqlx::query(
                        "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL",
                    )
                    .bind(at)
                    .bind(id)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
                    sealer.commit_if(tx, audit, done.rows_affected() == 1).await
                })
            })
            .await;
        // Before the answer: the next request must see the change.
        self.cache.drop_all();
        written
    }

    async fn insert_vault_within(
        &self,
        vault: &VaultRecord,
        max_vaults: Option<u64>,
        audit: &NewAuditEvent,
    ) -> Result<(), StorageError> {
        let (vault, audit) = (vault.clone(), audit.clone());
        let sealer = self.sealer.clone();
        self.writer
            .write(move |mut tx| {
                Box::pin(async move {
                    let vault: &VaultRecord = &vault;
                    let audit: &NewAuditEvent = &audit;
                    let (mode, threshold, providers) = match &vault.custody {
                        Some(c) => (
                            Some(c.mode.as_str()),
                            Some(i64::from(c.threshold)),
                            Some(
                                serde_json::to_string(&c.providers).map_err(|e| StorageError::Corrupt {
                                    table: "vaults",
                                    reason: e.to_string(),
                                })?,
                            ),
                        ),
                        None => (None, None, None),
                    };
                    // `BEGIN IMMEDIATE` holds the write lock from the start, and the count is in the
                    // INSERT … SELECT itself: two creates at the limit cannot both pass. The treasury's
                    // system vaults are the server's, not the organisation's: they are not counted.
                    let inserted = sqlx::query(
                        "INSERT INTO vaults (id, name, description, created_by, created_at, cmek_enabled, \
                         mpc_custody, mpc_threshold, mpc_providers) \
                         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9 \
                         WHERE $10 IS NULL OR (SELECT COUNT(*) FROM vaults \
                         WHERE deleted_at IS NULL AND name <> $11) < $10",
                    )
                    .bind(&vault.id)
                    .bind(&vault.name)
                    .bind(&vault.description)
                    .bind(&vault.created_by)
                    .bind(vault.created_at)
                    .bind(i64::from(vault.cmek_enabled))
                    .bind(mode)
                    .bind(threshold)
                    .bind(providers)
                    .bind(max_vaults.map(to_i64).transpose()?)
                    .bind(crate::treasury::SYSTEM_VAULT)
                    .execute(&mut *tx)
                    .await?;
                    if let (0, Some(limit)) = (inserted.rows_affected(), max_vaults) {
                        tx.rollback().await?;
                        return Err(StorageError::LimitReached {
                            resource: "vaults",
                            limit,
                        });
                    }
                    sealer.append(&mut tx, audit).await?;
                    tx.commit().await?;
                    Ok(())
                })
            })
            .await
    }

    async fn get_vault(&self, id: &str) -> Result<Option<VaultRecord>, StorageError> {
        let ticket = match self.cache.vault(id) {
            Ok(hit) => return Ok(Some(hit)),
            Err(ticket) => ticket,
        };
        let found = sqlx::query("SELECT * FROM vaults WHERE id = $1 AND deleted_at IS NULL")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(vault)
            .transpose()?;
        if let Some(vault) = &found {
            self.cache.store_vault(ticket, vault);
        }
        Ok(found)
    }

    async fn list_vaults(&self, created_by: &str) -> Result<Vec<VaultRecord>, StorageError> {
        sqlx::query(
            "SELECT * FROM vaults WHERE created_by = $1 AND deleted_at IS NULL \
             ORDER BY created_at, id",
        )
        .bind(created_by)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(vault)
        .collect()
    }

    async fn delete_vault(
        &self,
        id: &str,
        at: i64,
        audit: &NewAuditEvent,
    ) -> Result<bool, StorageError> {
        let (id, audit) = (id.to_owned(), audit.clone());
        let sealer = self.sealer.clone();
        let written = self
            .writer
            .write(move |mut tx| {
                Box::pin(async move {
                    let id: &str = &id;
                    let audit: &NewAuditEvent = &audit;
                    let done = sqlx::query(
                        "UPDATE vaults SET deleted_at = $1 WHERE id = $2 AND deleted_at IS NULL",
                    )
                    .bind(at)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    sealer.commit_if(tx, audit, done.rows_affected() == 1).await
                })
            })
            .await;
        // Before the answer: the next request must see the change.
        self.cache.drop_all();
        written
    }

    async fn set_vault_custody(
        &self,
        id: &str,
        custody: &VaultCustodyRecord,
        audit: &NewAuditEvent,
    ) -> Result<bool, StorageError> {
        let (id, custody, audit) = (id.to_owned(), custody.clone(), audit.clone());
        let sealer = self.sealer.clone();
        let written = self
            .writer
            .write(move |mut tx| {
                Box::pin(async move {
                    let id: &str = &id;
                    let custody: &VaultCustodyRecord = &custody;
                    let audit: &NewAuditEvent = &audit;
                        let providers = serde_json::to_string(&custody.providers).map_err(|e| {
                            StorageError::Corrupt {
                                table: "vaults",
                                reason: e.to_string(),
                            }
                        })?;
                        // The `mpc_custody IS NULL` guard makes setting a mode a compare-and-set: two
                        // concurrent requests cannot both set one.
                        let done = sqlx::query(
                        "UPDATE vaults SET mpc_custody = $1, mpc_threshold = $2, mpc_providers = $3 \
                         WHERE id = $4 AND deleted_at IS NULL AND mpc_custody IS NULL",
                    )
                    .bind(&custody.mode)
                    .bind(i64::from(custody.threshold))
                    .bind(providers)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                        sealer.commit_if(tx, audit, done.rows_affected() == 1).await
                })
            })
            .await;
        // Before the answer: the next request must see the change.
        self.cache.drop_all();
        written
    }

    async fn latest_version_number(
        &self,
        vault_id: &str,
        path: &str,
    ) -> Result<Option<u64>, StorageError> {
        let n: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(v.version) FROM secret_versions v JOIN secrets s ON s.id = v.secret_id \
             WHERE s.vault_id = $1 AND s.path = $2",
        )
        .bind(vault_id)
        .bind(path)
        .fetch_one(&self.pool)
        .await?;
        n.map(|n| to_u64("secret_versions", n)).transpose()
    }

    async fn put_version_within(
        &self,
        new: &NewVersion,
        max_secrets: Option<u64>,
        audit: &NewAuditEvent,
    ) -> Result<VersionRecord, StorageError> {
        let (new, audit) = (new.clone(), audit.clone());
        let sealer = self.sealer.clone();
        // A direct write: its five to seven statements cost no round trip each.
        self.writer
            .write_direct(move |conn| {
                let stored = insert_version_direct(conn, &new, max_secrets)?;
                sealer.append_direct(conn, &audit)?;
                Ok(stored)
            })
            .await
    }

    async fn put_wallet(
        &self,
        new: &NewVersion,
        wallet: &WalletRecord,
        replaces: Option<&str>,
        audit: &NewAuditEvent,
    ) -> Result<VersionRecord, StorageError> {
        let (new, wallet, replaces, audit) = (
            new.clone(),
            wallet.clone(),
            replaces.map(str::to_owned),
            audit.clone(),
        );
        let sealer = self.sealer.clone();
        self.writer
            .write_direct(move |conn| {
                if let Some(old) = &replaces {
                    let done = conn
                        .prepare_cached(
                            "UPDATE treasury_wallets SET is_active = 0, deactivated_at = ?1 \
                             WHERE id = ?2 AND is_active = 1",
                        )?
                        .execute(rusqlite::params![wallet.created_at, old])?;
                    if done != 1 {
                        // Rotated or deleted by a concurrent request.
                        return Err(StorageError::Conflict);
                    }
                }
                // Treasury keys are not user secrets: no secret quota applies.
                let stored = insert_version_direct(conn, &new, None)?;
                if replaces.is_some() {
                    // The replaced key must not be readable any more: every older version goes.
                    conn.prepare_cached(
                        "UPDATE secret_versions SET deleted = 1 WHERE secret_id = ?1 AND version < ?2",
                    )?
                    .execute(rusqlite::params![stored.secret_id, to_i64(stored.version)?])?;
                }
                let inserted = conn
                    .prepare_cached(
                        "INSERT INTO treasury_wallets (id, user_id, vault_id, chain, curve, \
                         public_key_hex, address, is_active, secret_path, secret_version, \
                         created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1, ?8, ?9, ?10)",
                    )?
                    .execute(rusqlite::params![
                        wallet.id,
                        wallet.user_id,
                        wallet.vault_id,
                        wallet.chain,
                        wallet.curve,
                        wallet.public_key_hex,
                        wallet.address,
                        wallet.secret_path,
                        to_i64(wallet.secret_version)?,
                        wallet.created_at,
                    ]);
                match inserted {
                    Ok(_) => {}
                    // The chain already has an active wallet (a concurrent generate).
                    Err(e) if is_unique_violation_direct(&e) => {
                        return Err(StorageError::Conflict);
                    }
                    Err(e) => return Err(e.into()),
                }
                sealer.append_direct(conn, &audit)?;
                Ok(stored)
            })
            .await
    }

    async fn list_wallets(&self, user_id: &str) -> Result<Vec<WalletRecord>, StorageError> {
        sqlx::query(
            "SELECT * FROM treasury_wallets WHERE user_id = $1 AND is_active = 1 \
             ORDER BY created_at, id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(wallet)
        .collect()
    }

    async fn delete_wallet(
        &self,
        wallet: &WalletRecord,
        at: i64,
        audit: &NewAuditEvent,
    ) -> Result<bool, StorageError> {
        let (wallet, audit) = (wallet.clone(), audit.clone());
        let sealer = self.sealer.clone();
        self.writer
            .write(move |mut tx| {
                Box::pin(async move {
                    let wallet: &WalletRecord = &wallet;
                    let audit: &NewAuditEvent = &audit;
                    let done = sqlx::query(
                        "UPDATE treasury_wallets SET is_active = 0, deactivated_at = $1 \
                     WHERE id = $2 AND is_active = 1",
                    )
                    .bind(at)
                    .bind(&wallet.id)
                    .execute(&mut *tx)
                    .await?;
                    if done.rows_affected() == 1 {
                        sqlx::query(
                        "UPDATE secret_versions SET deleted = 1 WHERE deleted = 0 AND secret_id = \
                         (SELECT id FROM secrets WHERE vault_id = $1 AND path = $2)",
                    )
                    .bind(&wallet.vault_id)
                    .bind(&wallet.secret_path)
                    .execute(&mut *tx)
                    .await?;
                    }
                    sealer.commit_if(tx, audit, done.rows_affected() == 1).await
                })
            })
            .await
    }

    async fn get_version(
        &self,
        vault_id: &str,
        path: &str,
        version: Option<u64>,
    ) -> Result<Option<(VersionRecord, Vec<ShareRecord>)>, StorageError> {
        // One statement, so the version and its shares come from one snapshot (a CMEK
        // rotation rewrites both together). This is on the path of every read: it runs on a
        // direct read connection, on this thread (see `direct_read`).
        let version = version.map(to_i64).transpose()?;
        self.direct.read(|conn| {
            let mut statement = conn.prepare_cached(&VERSION_WITH_SHARES)?;
            let names: Vec<String> = statement
                .column_names()
                .into_iter()
                .map(str::to_owned)
                .collect();
            let names = names.as_slice();
            let mut rows = statement.query(rusqlite::params![vault_id, path, version])?;
            let Some(first) = rows.next()? else {
                return Ok(None);
            };
            let record = version_of(&NamedRow { row: first, names })?;
            let mut shares = Vec::new();
            let mut row = Some(first);
            while let Some(found) = row {
                let current = NamedRow { row: found, names };
                if let Some(slot) = current.column::<Option<i64>>("share_slot")? {
                    shares.push(share_record(
                        slot,
                        current.column("share_provider")?,
                        current.column("share_blob")?,
                    )?);
                }
                row = rows.next()?;
            }
            Ok(Some((record, shares)))
        })
    }

    async fn list_versions(
        &self,
        vault_id: &str,
        path: &str,
    ) -> Result<Vec<VersionRecord>, StorageError> {
        sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS} FROM secret_versions v JOIN secrets s ON s.id = v.secret_id \
             WHERE s.vault_id = $1 AND s.path = $2 ORDER BY v.version"
        ))
        .bind(vault_id)
        .bind(path)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(version_of)
        .collect()
    }

    async fn list_secrets(
        &self,
        vault_id: &str,
        prefix: &str,
    ) -> Result<Vec<VersionRecord>, StorageError> {
        // The prefix is compared with SUBSTR rather than LIKE so `_` and `%` in it are literal.
        sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS} FROM secret_versions v JOIN secrets s ON s.id = v.secret_id \
             WHERE s.vault_id = $1 AND SUBSTR(s.path, 1, LENGTH($2)) = $2 AND v.deleted = 0 \
             AND v.version = (SELECT MAX(v2.version) FROM secret_versions v2 WHERE v2.secret_id = s.id) \
             ORDER BY s.path"
        ))
        .bind(vault_id)
        .bind(prefix)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(version_of)
        .collect()
    }

    async fn disable_version(
        &self,
        version_id: &str,
        audit: &NewAuditEvent,
    ) -> Result<bool, StorageError> {
        let (version_id, audit) = (version_id.to_owned(), audit.clone());
        let sealer = self.sealer.clone();
        self.writer
            .write(move |mut tx| {
                Box::pin(async move {
                    let version_id: &str = &version_id;
                    let audit: &NewAuditEvent = &audit;
                    let done = sqlx::query(
                        "UPDATE secret_versions SET disabled = 1 WHERE id = $1 AND deleted = 0",
                    )
                    .bind(version_id)
                    .execute(&mut *tx)
                    .await?;
                    sealer.commit_if(tx, audit, done.rows_affected() == 1).await
                })
            })
            .await
    }

    async fn delete_secret(
        &self,
        vault_id: &str,
        path: &str,
        audit: &NewAuditEvent,
    ) -> Result<bool, StorageError> {
        let (vault_id, path, audit) = (vault_id.to_owned(), path.to_owned(), audit.clone());
        let sealer = self.sealer.clone();
        self.writer
            .write(move |mut tx| {
                Box::pin(async move {
                    let vault_id: &str = &vault_id;
                    let path: &str = &path;
                    let audit: &NewAuditEvent = &audit;
                    let done = sqlx::query(
                        "UPDATE secret_versions SET deleted = 1 WHERE deleted = 0 AND secret_id = \
                     (SELECT id FROM secrets WHERE vault_id = $1 AND path = $2)",
                    )
                    .bind(vault_id)
                    .bind(path)
                    .execute(&mut *tx)
                    .await?;
                    sealer.commit_if(tx, audit, done.rows_affected() > 0).await
                })
            })
            .await
    }

    async fn record_access(
        &self,
        version_id: &str,
        audit: &NewAuditEvent,
    ) -> Result<bool, StorageError> {
        let (version_id, audit) = (version_id.to_owned(), audit.clone());
        let sealer = self.sealer.clone();
        // A direct write: every read makes one, so its statements cost no round trips.
        self.writer
            .write_direct(move |conn| {
                // One conditional UPDATE: concurrent reads cannot together exceed the maximum.
                let counted = conn
                    .prepare_cached(
                        "UPDATE secret_versions SET access_count = access_count + 1 WHERE id = ?1 \
                         AND (max_access_count IS NULL OR access_count < max_access_count)",
                    )?
                    .execute([&version_id])?;
                // Nothing changed: no event (it must not claim a success).
                if counted != 1 {
                    return Ok(false);
                }
                sealer.append_direct(conn, &audit)?;
                Ok(true)
            })
            .await
    }

    async fn insert_agent_within(
        &self,
        agent: &AgentRecord,
        max_agents: Option<u64>,
        audit: &NewAuditEvent,
    ) -> Result<(), StorageError> {
        let (agent, audit) = (agent.clone(), audit.clone());
        let sealer = self.sealer.clone();
        self.writer
            .write(move |mut tx| {
                Box::pin(async move {
                    let agent: &AgentRecord = &agent;
                    let audit: &NewAuditEvent = &audit;
                    let vault_ids = agent
                        .vault_ids
                        .as_deref()
                        .map(|ids| json_list("agents", ids))
                        .transpose()?;
                    // As for vaults: the write lock is held from the start and the count is in the
                    // INSERT … SELECT, so two creates at the limit cannot both pass. Deleted agents do not
                    // count; expired ones do until deleted (they still hold a name and a key row).
                    let inserted = sqlx::query(
                        "INSERT INTO agents (id, name, description, created_by, vault_ids, expires_at, \
                         token_ttl_seconds, key_hash, key_prefix, created_at) \
                         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 \
                         WHERE $11 IS NULL OR (SELECT COUNT(*) FROM agents WHERE deleted_at IS NULL) < $11",
                    )
                    .bind(&agent.id)
                    .bind(&agent.name)
                    .bind(&agent.description)
                    .bind(&agent.created_by)
                    .bind(vault_ids)
                    .bind(agent.expires_at)
                    .bind(agent.token_ttl_seconds.map(to_i64).transpose()?)
                    .bind(&agent.key_hash)
                    .bind(&agent.key_prefix)
                    .bind(agent.created_at)
                    .bind(max_agents.map(to_i64).transpose()?)
                    .execute(&mut *tx)
                    .await?;
                    if let (0, Some(limit)) = (inserted.rows_affected(), max_agents) {
                        tx.rollback().await?;
                        return Err(StorageError::LimitReached {
                            resource: "agents",
                            limit,
                        });
                    }
                    sealer.append(&mut tx, audit).await?;
                    tx.commit().await?;
                    Ok(())
                })
            })
            .await
    }

    async fn get_agent(&self, id: &str) -> Result<Option<AgentRecord>, StorageError> {
        sqlx::query("SELECT * FROM agents WHERE id = $1 AND deleted_at IS NULL")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(agent)
            .transpose()
    }

    async fn find_agent_by_hash(&self, hash: &[u8]) -> Result<Option<AgentRecord>, StorageError> {
        sqlx::query("SELECT * FROM agents WHERE key_hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(agent)
            .transpose()
    }

    async fn list_agents(&self, created_by: &str) -> Result<Vec<AgentRecord>, StorageError> {
        sqlx::query(
            "SELECT * FROM agents WHERE created_by = $1 AND deleted_at IS NULL \
             ORDER BY created_at, id",
        )
        .bind(created_by)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(agent)
        .collect()
    }

    async fn delete_agent(
        &self,
        created_by: &str,
        id: &str,
        at: i64,
        audit: &NewAuditEvent,
    ) -> Result<bool, StorageError> {
        let (created_by, id, audit) = (created_by.to_owned(), id.to_owned(), audit.clone());
        let sealer = self.sealer.clone();
        self.writer
            .write(move |mut tx| {
                Box::pin(async move {
                    let created_by: &str = &created_by;
                    let id: &str = &id;
                    let audit: &NewAuditEvent = &audit;
                    let done = sqlx::query(
                        "UPDATE agents SET deleted_at = $1 WHERE id = $2 AND created_by = $3 \
                     AND deleted_at IS NULL",
                    )
                    .bind(at)
                    .bind(id)
                    .bind(created_by)
                    .execute(&mut *tx)
                    .await?;
                    sealer.commit_if(tx, audit, done.rows_affected() == 1).await
                })
            })
            .await
    }

    async fn insert_policy(
        &self,
        policy: &PolicyRecord,
        audit: &NewAuditEvent,
    ) -> Result<(), StorageError> {
        let (policy, audit) = (policy.clone(), audit.clone());
        let sealer = self.sealer.clone();
        self.writer
            .write(move |mut tx| {
                Box::pin(async move {
                    let policy: &PolicyRecord = &policy;
                    let audit: &NewAuditEvent = &audit;
                    sqlx::query(
                        "INSERT INTO policies (id, vault_id, secret_path_pattern, principal_type, \
                         principal_id, permissions, effect, priority, expires_at, created_by, created_at, \
                         updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                    )
                    .bind(&policy.id)
                    .bind(&policy.vault_id)
                    .bind(&policy.secret_path_pattern)
                    .bind(&policy.principal_type)
                    .bind(&policy.principal_id)
                    .bind(json_list("policies", &policy.permissions)?)
                    .bind(&policy.effect)
                    .bind(policy.priority)
                    .bind(policy.expires_at)
                    .bind(&policy.created_by)
                    .bind(policy.created_at)
                    .bind(policy.updated_at)
                    .execute(&mut *tx)
                    .await?;
                    sealer.append(&mut tx, audit).await?;
                    tx.commit().await?;
                    Ok(())
                })
            })
            .await
    }

    async fn update_policy(
        &self,
        policy: &PolicyRecord,
        audit: &NewAuditEvent,
    ) -> Result<bool, StorageError> {
        let (policy, audit) = (policy.clone(), audit.clone());
        let sealer = self.sealer.clone();
        self.writer
            .write(move |mut tx| {
                Box::pin(async move {
                    let policy: &PolicyRecord = &policy;
                    let audit: &NewAuditEvent = &audit;
                    let done = sqlx::query(
                        "UPDATE policies SET secret_path_pattern = $1, principal_type = $2, \
                         principal_id = $3, permissions = $4, effect = $5, priority = $6, expires_at = $7, \
                         updated_at = $8 WHERE id = $9 AND vault_id = $10",
                    )
                    .bind(&policy.secret_path_pattern)
                    .bind(&policy.principal_type)
                    .bind(&policy.principal_id)
                    .bind(json_list("policies", &policy.permissions)?)
                    .bind(&policy.effect)
                    .bind(policy.priority)
                    .bind(policy.expires_at)
                    .bind(policy.updated_at)
                    .bind(&policy.id)
                    .bind(&policy.vault_id)
                    .execute(&mut *tx)
                    .await?;
                    sealer.commit_if(tx, audit, done.rows_affected() == 1).await
                })
            })
            .await
    }

    async fn delete_policy(
        &self,
        vault_id: &str,
        id: &str,
        audit: &NewAuditEvent,
    ) -> Result<bool, StorageError> {
        let (vault_id, id, audit) = (vault_id.to_owned(), id.to_owned(), audit.clone());
        let sealer = self.sealer.clone();
        self.writer
            .write(move |mut tx| {
                Box::pin(async move {
                    let vault_id: &str = &vault_id;
                    let id: &str = &id;
                    let audit: &NewAuditEvent = &audit;
                    let done = sqlx::query("DELETE FROM policies WHERE id = $1 AND vault_id = $2")
                        .bind(id)
                        .bind(vault_id)
                        .execute(&mut *tx)
                        .await?;
                    sealer.commit_if(tx, audit, done.rows_affected() == 1).await
                })
            })
            .await
    }

    async fn get_policy(
        &self,
        vault_id: &str,
        id: &str,
    ) -> Result<Option<PolicyRecord>, StorageError> {
        sqlx::query("SELECT * FROM policies WHERE id = $1 AND vault_id = $2")
            .bind(id)
            .bind(vault_id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(policy)
            .transpose()
    }

    async fn list_policies(&self, vault_id: &str) -> Result<Vec<PolicyRecord>, StorageError> {
        sqlx::query("SELECT * FROM policies WHERE vault_id = $1 ORDER BY created_at, id")
            .bind(vault_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(policy)
            .collect()
    }

    async fn principal_policies(
        &self,
        vault_id: &str,
        principal_type: &str,
        principal_id: &str,
    ) -> Result<Vec<PolicyRecord>, StorageError> {
        sqlx::query(
            "SELECT * FROM policies WHERE vault_id = $1 AND principal_type = $2 \
             AND principal_id = $3 ORDER BY created_at, id",
        )
        .bind(vault_id)
        .bind(principal_type)
        .bind(principal_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(policy)
        .collect()
    }

    async fn append_audit(&self, audit: &NewAuditEvent) -> Result<AuditEvent, StorageError> {
        let (audit, sealer) = (audit.clone(), self.sealer.clone());
        self.writer
            .write(move |mut tx| {
                Box::pin(async move {
                    let sealed = sealer.append(&mut tx, &audit).await?;
                    tx.commit().await?;
                    Ok(sealed)
                })
            })
            .await
    }

    async fn audit_head(&self) -> Result<(u64, [u8; 32]), StorageError> {
        let row = sqlx::query("SELECT seq, event_hash FROM audit_chain_head WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok((
            to_u64(AUDIT_HEAD, row.try_get("seq")?)?,
            hash32(AUDIT_HEAD, row.try_get("event_hash")?)?,
        ))
    }

    async fn audit_events(
        &self,
        query: &AuditQuery,
    ) -> Result<(Vec<AuditEvent>, u64), StorageError> {
        // One WHERE clause for both the page and the count; every filter is a bound parameter
        // that is NULL when unused.
        const WHERE: &str = "WHERE ($1 IS NULL OR resource_id = $1 OR vault_id = $1) \
             AND ($2 IS NULL OR actor_id = $2) AND ($3 IS NULL OR action = $3) \
             AND ($4 IS NULL OR occurred_at >= $4) AND ($5 IS NULL OR occurred_at <= $5) \
             AND ($6 IS NULL OR actor_id = $6 OR vault_id IN \
                  (SELECT id FROM vaults WHERE created_by = $6))";
        let count: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM audit_events {WHERE}"))
            .bind(query.resource_id.as_deref())
            .bind(query.actor_id.as_deref())
            .bind(query.action.as_deref())
            .bind(query.from)
            .bind(query.to)
            .bind(query.visible_to.as_deref())
            .fetch_one(&self.pool)
            .await?;
        let events = sqlx::query(&format!(
            "SELECT * FROM audit_events {WHERE} ORDER BY seq DESC LIMIT $7 OFFSET $8"
        ))
        .bind(query.resource_id.as_deref())
        .bind(query.actor_id.as_deref())
        .bind(query.action.as_deref())
        .bind(query.from)
        .bind(query.to)
        .bind(query.visible_to.as_deref())
        .bind(to_i64(query.limit)?)
        .bind(to_i64(query.offset)?)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(audit_event)
        .collect::<Result<Vec<_>, _>>()?;
        Ok((events, to_u64(AUDIT_EVENTS, count)?))
    }

    async fn audit_chain(
        &self,
        from_seq: u64,
        limit: u64,
    ) -> Result<Vec<AuditEvent>, StorageError> {
        sqlx::query("SELECT * FROM audit_events WHERE seq >= $1 ORDER BY seq LIMIT $2")
            .bind(to_i64(from_seq)?)
            .bind(to_i64(limit)?)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(audit_event)
            .collect()
    }

    async fn audit_seq_range(
        &self,
        from: Option<i64>,
        to: Option<i64>,
    ) -> Result<Option<(u64, u64)>, StorageError> {
        let row = sqlx::query(
            "SELECT MIN(seq) AS first, MAX(seq) AS last FROM audit_events \
             WHERE ($1 IS NULL OR occurred_at >= $1) AND ($2 IS NULL OR occurred_at <= $2)",
        )
        .bind(from)
        .bind(to)
        .fetch_one(&self.pool)
        .await?;
        let first: Option<i64> = row.try_get("first")?;
        let last: Option<i64> = row.try_get("last")?;
        match (first, last) {
            (Some(first), Some(last)) => Ok(Some((
                to_u64(AUDIT_EVENTS, first)?,
                to_u64(AUDIT_EVENTS, last)?,
            ))),
            _ => Ok(None),
        }
    }

    async fn insert_checkpoint(&self, checkpoint: &Checkpoint) -> Result<bool, StorageError> {
        let checkpoint = checkpoint.clone();
        self.writer
            .write(move |mut tx| {
                Box::pin(async move {
                    let done = sqlx::query(
            "INSERT INTO audit_checkpoints (seq, event_id, event_hash, created_at, key_id, \
             signature) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (seq) DO NOTHING",
        )
        .bind(to_i64(checkpoint.seq)?)
        .bind(&checkpoint.event_id)
        .bind(checkpoint.event_hash.as_slice())
        .bind(checkpoint.created_at)
        .bind(&checkpoint.key_id)
        .bind(checkpoint.signature.as_slice())
        .execute(&mut *tx)
        .await?;
                    tx.commit().await?;
                    Ok(done.rows_affected() == 1)
                })
            })
            .await
    }

    async fn audit_checkpoints(
        &self,
        from_seq: u64,
        to_seq: u64,
    ) -> Result<Vec<Checkpoint>, StorageError> {
        sqlx::query("SELECT * FROM audit_checkpoints WHERE seq >= $1 AND seq <= $2 ORDER BY seq")
            .bind(to_i64(from_seq)?)
            .bind(to_i64(to_seq)?)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(checkpoint)
            .collect()
    }

    async fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, StorageError> {
        sqlx::query("SELECT * FROM audit_checkpoints ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(checkpoint)
            .transpose()
    }

    async fn vault_cmek_fingerprint(&self, vault_id: &str) -> Result<Option<String>, StorageError> {
        let fingerprint: Option<Option<String>> = sqlx::query_scalar(
            "SELECT cmek_fingerprint FROM vaults WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(vault_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(fingerprint.flatten())
    }

    async fn set_vault_cmek(
        &self,
        vault_id: &str,
        fingerprint: Option<&str>,
        audit: &NewAuditEvent,
    ) -> Result<bool, StorageError> {
        let (vault_id, fingerprint, audit) = (
            vault_id.to_owned(),
            fingerprint.map(str::to_owned),
            audit.clone(),
        );
        let sealer = self.sealer.clone();
        let written = self
            .writer
            .write(move |mut tx| {
                Box::pin(async move {
                    let vault_id: &str = &vault_id;
                    let fingerprint: Option<&str> = fingerprint.as_deref();
                    let audit: &NewAuditEvent = &audit;
                    let done = sqlx::query(
                        "UPDATE vaults SET cmek_fingerprint = $1, cmek_enabled = $2 \
                         WHERE id = $3 AND deleted_at IS NULL AND NOT EXISTS (SELECT 1 FROM \
                         cmek_rotation_jobs j WHERE j.vault_id = $3 AND j.status IN ('running', 'paused', 'failed'))",
                    )
                    .bind(fingerprint)
                    .bind(i64::from(fingerprint.is_some()))
                    .bind(vault_id)
                    .execute(&mut *tx)
                    .await?;
                    sealer.commit_if(tx, audit, done.rows_affected() == 1).await
                })
            })
            .await;
        // Before the answer: the next request must see the change.
        self.cache.drop_all();
        written
    }

    async fn create_cmek_job(
        &self,
        job: &CmekJobRecord,
        audit: &NewAuditEvent,
    ) -> Result<CmekJobRecord, StorageError> {
        let (job, audit) = (job.clone(), audit.clone());
        let sealer = self.sealer.clone();
        let written = self
            .writer
            .write(move |mut tx| {
                Box::pin(async move {
                    let job: &CmekJobRecord = &job;
                    let audit: &NewAuditEvent = &audit;
                    // The write lock is held from the start; the first statement moves the vault to the new
                    // key (compare-and-set on the old fingerprint).
                    let moved = sqlx::query(
                        "UPDATE vaults SET cmek_fingerprint = $1 WHERE id = $2 AND deleted_at IS NULL \
                         AND cmek_fingerprint = $3",
                    )
                    .bind(&job.new_fingerprint)
                    .bind(&job.vault_id)
                    .bind(&job.old_fingerprint)
                    .execute(&mut *tx)
                    .await?;
                    if moved.rows_affected() != 1 {
                        return Err(StorageError::Conflict);
                    }
                    let total: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM secret_versions v JOIN secrets s ON s.id = v.secret_id \
                         WHERE s.vault_id = $1 AND v.cmek_fingerprint = $2 AND v.deleted = 0",
                    )
                    .bind(&job.vault_id)
                    .bind(&job.old_fingerprint)
                    .fetch_one(&mut *tx)
                    .await?;
                    let inserted = sqlx::query(
                        "INSERT INTO cmek_rotation_jobs (id, vault_id, old_fingerprint, new_fingerprint, \
                         status, processed, total, error, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, 0, $6, NULL, $7, $7)",
                    )
                    .bind(&job.id)
                    .bind(&job.vault_id)
                    .bind(&job.old_fingerprint)
                    .bind(&job.new_fingerprint)
                    .bind(CmekJobStatus::Running.as_str())
                    .bind(total)
                    .bind(job.created_at)
                    .execute(&mut *tx)
                    .await;
                    match inserted {
                        Ok(_) => {}
                        Err(e) if is_unique_violation(&e) => return Err(StorageError::Conflict),
                        Err(e) => return Err(e.into()),
                    }
                    sealer.append(&mut tx, audit).await?;
                    tx.commit().await?;
                    let mut stored = job.clone();
                    stored.status = CmekJobStatus::Running;
                    stored.processed = 0;
                    stored.total = to_u64("cmek_rotation_jobs", total)?;
                    stored.error = None;
                    stored.updated_at = job.created_at;
                    Ok(stored)
                })
            })
            .await;
        // Before the answer: the next request must see the change.
        self.cache.drop_all();
        written
    }

    async fn get_cmek_job(
        &self,
        vault_id: &str,
        job_id: &str,
    ) -> Result<Option<CmekJobRecord>, StorageError> {
        sqlx::query("SELECT * FROM cmek_rotation_jobs WHERE id = $1 AND vault_id = $2")
            .bind(job_id)
            .bind(vault_id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(cmek_job)
            .transpose()
    }

    async fn unfinished_cmek_job(
        &self,
        vault_id: &str,
    ) -> Result<Option<CmekJobRecord>, StorageError> {
        sqlx::query(
            "SELECT * FROM cmek_rotation_jobs WHERE vault_id = $1 \
             AND status IN ('running', 'paused', 'failed')",
        )
        .bind(vault_id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(cmek_job)
        .transpose()
    }

    async fn set_cmek_job_status(
        &self,
        job_id: &str,
        status: CmekJobStatus,
        error: Option<&str>,
        audit: &NewAuditEvent,
    ) -> Result<(), StorageError> {
        let (job_id, error, audit) = (job_id.to_owned(), error.map(str::to_owned), audit.clone());
        let sealer = self.sealer.clone();
        self.writer
            .write(move |mut tx| {
                Box::pin(async move {
                    let job_id: &str = &job_id;
                    let error: Option<&str> = error.as_deref();
                    let audit: &NewAuditEvent = &audit;
                    let done = sqlx::query(
                        "UPDATE cmek_rotation_jobs SET status = $1, error = $2, updated_at = $3 WHERE id = $4",
                    )
                    .bind(status.as_str())
                    .bind(error)
                    .bind(crate::time::now_millis())
                    .bind(job_id)
                    .execute(&mut *tx)
                    .await?;
                    // No such job: nothing changed, and no event claims a change.
                    sealer.commit_if(tx, audit, done.rows_affected() == 1).await?;
                    Ok(())
                })
            })
            .await
    }

    async fn pause_running_cmek_jobs(
        &self,
        audit: &(
             dyn for<'j> Fn(&'j CmekJobRecord) -> Result<NewAuditEvent, AuditError> + Send + Sync
         ),
    ) -> Result<u64, StorageError> {
        // The events are built here (the closure borrows from the caller); the writer then
        // pauses each job that is still running and appends its event with it.
        let running = sqlx::query("SELECT * FROM cmek_rotation_jobs WHERE status = 'running'")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(cmek_job)
            .collect::<Result<Vec<_>, _>>()?;
        let paused = running
            .iter()
            .map(|job| Ok((job.id.clone(), audit(job)?)))
            .collect::<Result<Vec<_>, StorageError>>()?;
        let sealer = self.sealer.clone();
        self.writer
            .write(move |mut tx| {
                Box::pin(async move {
                    let now = crate::time::now_millis();
                    let mut count = 0;
                    for (job_id, event) in &paused {
                        let done = sqlx::query(
                            "UPDATE cmek_rotation_jobs SET status = 'paused', error = $1, \
                             updated_at = $2 WHERE id = $3 AND status = 'running'",
                        )
                        .bind(
                            "the server restarted and CMEK keys are never stored: send the same \
                             POST …/cmek-rotate with both keys to resume",
                        )
                        .bind(now)
                        .bind(job_id)
                        .execute(&mut *tx)
                        .await?;
                        if done.rows_affected() == 1 {
                            sealer.append(&mut tx, event).await?;
                            count += 1;
                        }
                    }
                    tx.commit().await?;
                    Ok(count)
                })
            })
            .await
    }

    async fn cmek_versions_with(
        &self,
        vault_id: &str,
        fingerprint: &str,
        limit: u32,
    ) -> Result<Vec<(VersionRecord, Vec<ShareRecord>)>, StorageError> {
        let rows = sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS} FROM secret_versions v JOIN secrets s ON s.id = v.secret_id \
             WHERE s.vault_id = $1 AND v.cmek_fingerprint = $2 AND v.deleted = 0 \
             ORDER BY v.id LIMIT $3"
        ))
        .bind(vault_id)
        .bind(fingerprint)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let record = version_of(row)?;
            let shares = shares_of(&self.pool, &record.version_id).await?;
            out.push((record, shares));
        }
        Ok(out)
    }

    async fn rewrite_cmek_version(
        &self,
        job: &CmekJobRecord,
        version_id: &str,
        envelope: &[u8],
        shares: &[ShareRecord],
        audit: &NewAuditEvent,
    ) -> Result<bool, StorageError> {
        let (job, version_id, envelope, shares, audit) = (
            job.clone(),
            version_id.to_owned(),
            envelope.to_vec(),
            shares.to_vec(),
            audit.clone(),
        );
        let sealer = self.sealer.clone();
        self.writer
            .write(move |mut tx| {
                Box::pin(async move {
                    let job: &CmekJobRecord = &job;
                    let version_id: &str = &version_id;
                    let envelope: &[u8] = &envelope;
                    let shares: &[ShareRecord] = &shares;
                    let audit: &NewAuditEvent = &audit;
                    let done = sqlx::query(
                        "UPDATE secret_versions SET envelope = $1, cmek_fingerprint = $2 \
                         WHERE id = $3 AND cmek_fingerprint = $4",
                    )
                    .bind(envelope)
                    .bind(&job.new_fingerprint)
                    .bind(version_id)
                    .bind(&job.old_fingerprint)
                    .execute(&mut *tx)
                    .await?;
                    if done.rows_affected() != 1 {
                        tx.rollback().await?;
                        return Ok(false);
                    }
                    sqlx::query("DELETE FROM secret_dek_shares WHERE secret_version_id = $1")
                        .bind(version_id)
                        .execute(&mut *tx)
                        .await?;
                    insert_shares(&mut tx, &job.vault_id, version_id, shares).await?;
                    sqlx::query(
                        "UPDATE cmek_rotation_jobs SET processed = processed + 1, updated_at = $1 WHERE id = $2",
                    )
                    .bind(crate::time::now_millis())
                    .bind(&job.id)
                    .execute(&mut *tx)
                    .await?;
                    sealer.append(&mut tx, audit).await?;
                    tx.commit().await?;
                    Ok(true)
                })
            })
            .await
    }

    async fn close(&self) {
        // Closing waits for the queued writes and the connections, so the WAL is checkpointed
        // cleanly (by the last connection to close: the direct readers go first).
        self.direct.close();
        self.writer.close().await;
        self.pool.close().await;
        // Released now rather than when the last clone drops: a closed store writes nothing,
        // and a new server may open the directory at once.
        if let Some(lock) = &self.lock {
            let _ = lock.file.unlock();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    fn event(n: u32) -> NewAuditEvent {
        NewAuditEvent {
            id: format!("00000000-0000-4000-8000-{n:012}"),
            occurred_at: i64::from(n),
            request_id: format!("r{n}"),
            actor_type: "user".into(),
            actor_id: "admin".into(),
            action: "secret.read".into(),
            resource_type: "secret".into(),
            resource_id: format!("s{n}"),
            vault_id: Some("v1".into()),
            outcome: "success".into(),
            detail: "{}".into(),
        }
    }

    // Migration 0030 rebuilds `audit_events` (seq becomes the rowid: no index of its own): a
    // chain written under the old schema must come through whole and keep verifying, and new
    // events (appended by a direct write) must link to it.
    #[tokio::test]
    async fn the_audit_table_rebuild_keeps_an_existing_chain() {
        let dir = tempfile::tempdir().unwrap();
        let key = Arc::new(AuditKey::from_bytes([9; 32]));
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join(DB_FILE))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        {
            let pool = SqlitePool::connect_with(options).await.unwrap();
            let mut before = sqlx::migrate!("./migrations/sqlite");
            before.migrations = Cow::Owned(
                before
                    .migrations
                    .iter()
                    .filter(|m| m.version < 30)
                    .cloned()
                    .collect(),
            );
            before.run(&pool).await.unwrap();
            for n in 1..=3 {
                let mut tx = pool.begin().await.unwrap();
                append(&mut tx, &key, &event(n)).await.unwrap();
                tx.commit().await.unwrap();
            }
            pool.close().await;
        }
        let storage = SqliteStorage::open_with_audit_key(dir.path(), Arc::clone(&key))
            .await
            .unwrap();
        let sealer = storage.sealer.clone();
        storage
            .writer
            .write_direct(move |conn| sealer.append_direct(conn, &event(4)))
            .await
            .unwrap();
        let events = storage.audit_chain(1, 100).await.unwrap();
        let ids: Vec<&str> = events
            .iter()
            .map(|e| e.event.resource_id.as_str())
            .collect();
        assert_eq!(ids, ["s1", "s2", "s3", "s4"]);
        let verifying = ed25519_dalek::SigningKey::from_bytes(&[3; 32]).verifying_key();
        let report = crate::audit::verify_chain(&events, None, Some(&key), &[], &verifying, true);
        assert!(report.chain_valid, "{report:?}");
        assert_eq!(report.events_verified, 4);
        assert_eq!(storage.audit_head().await.unwrap().0, 4);
        // The new shape: `seq` is the rowid (no separate key index); `id` stays unique.
        let indexes: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit_events' \
             ORDER BY name",
        )
        .fetch_all(&storage.pool)
        .await
        .unwrap();
        assert_eq!(
            indexes,
            [
                "audit_events_by_actor",
                "audit_events_by_resource",
                "audit_events_by_time",
                "audit_events_by_vault",
                "sqlite_autoindex_audit_events_1"
            ]
        );
        storage.close().await;
    }

    #[tokio::test]
    async fn a_second_store_on_the_same_data_directory_is_refused_until_the_first_closes() {
        let dir = tempfile::tempdir().unwrap();
        let first = SqliteStorage::open(dir.path()).await.unwrap();
        let Err(refused) = SqliteStorage::open(dir.path()).await else {
            panic!("two stores opened the same data directory")
        };
        let message = refused.to_string();
        assert!(
            message.contains("in use by another vault-server"),
            "{message}"
        );
        first.close().await;
        let second = SqliteStorage::open(dir.path()).await.unwrap();
        second.close().await;
    }
}
