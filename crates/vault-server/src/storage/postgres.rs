//! The PostgreSQL store: several stateless server replicas on one database.
//!
//! Every write runs in one explicit transaction through [`PostgresStorage::write`], which also
//! retries the transaction when PostgreSQL aborts it for a serialization failure or a deadlock.
//! Version numbers stay gap-free and unique across replicas because a writer takes
//! `MAX(version) + 1` and `UNIQUE (secret_id, version)` turns a lost race into
//! [`StorageError::Conflict`], which the server answers by sealing again under the next number.
//!
//! Tier limits cannot lean on a database-wide write lock as they do on SQLite. A write with a
//! limit first locks its resource's row in `quota_locks` (`SELECT … FOR UPDATE`), then counts,
//! then writes, all in one transaction: limited writers of one resource queue on that row on
//! every replica, and under READ COMMITTED each count statement takes a fresh snapshot, so it
//! sees whatever the previous lock holder committed. Two creates at the limit cannot both pass.
//!
//! A vault's CMEK state is guarded by its own row: a version write reads the vault's
//! fingerprint `FOR SHARE`, while turning CMEK on or off and starting a rotation update (lock)
//! the row, so a version is always flagged with the fingerprint the vault had when the write
//! committed, and a rotation job's `total` counts every version flagged with the old key.
//!
//! Every write also appends its audit event inside that transaction (see [`Storage`]'s "Audit"
//! section): the `UPDATE audit_chain_head … RETURNING` that starts an append takes the head
//! row's lock until commit, so appends from all replicas form one gap-free chain.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{PgConnection, Postgres, Row, Transaction};

use super::{
    AgentRecord, ApiKeyRecord, AuditQuery, CmekJobRecord, CmekJobStatus, NewVersion, PolicyRecord,
    ShareRecord, Storage, StorageError, VaultCustodyRecord, VaultRecord, VersionRecord,
    WalletRecord, share_record,
};
use crate::audit::{AuditError, AuditEvent, AuditKey, Checkpoint, NewAuditEvent};
use crate::metrics::Metrics;

/// How many times a transaction PostgreSQL aborted (serialization failure, deadlock) is run
/// again before the error is returned. Conflicts on a unique row are not retried here: the
/// caller must decide again (a secret version is sealed under its number).
const TX_ATTEMPTS: u32 = 5;

/// The default most connections one server process keeps open.
const DEFAULT_MAX_CONNECTIONS: u32 = 10;

/// The default wait for a free connection (or a new one) before a request fails.
const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how to connect to PostgreSQL: a parsed `postgres://` URL and the pool settings.
///
/// The URL may carry a password, so this type has a redacted `Debug` and `Display` (user, host,
/// port and database only) and keeps no copy of the URL text.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use vault_server::PostgresOptions;
///
/// let options = PostgresOptions::parse("postgres://vault:s3cret@127.0.0.1:5432/vault")?
///     .max_connections(20)
///     .acquire_timeout(Duration::from_secs(5));
/// assert_eq!(options.to_string(), "postgres://vault@127.0.0.1:5432/vault");
/// assert!(!format!("{options:?}").contains("s3cret"));
/// # Ok::<(), vault_server::StorageError>(())
/// ```
#[derive(Clone)]
pub struct PostgresOptions {
    connect: PgConnectOptions,
    max_connections: u32,
    acquire_timeout: Duration,
}

impl PostgresOptions {
    /// Parses a `postgres://` or `postgresql://` URL (libpq syntax, e.g.
    /// `postgres://user:password@host:port/database`, or `?host=/run/postgresql` for a unix
    /// socket), with the default pool settings (10 connections, 10 s acquire timeout).
    ///
    /// # Errors
    ///
    /// [`StorageError::Database`] if the URL does not parse or is not a PostgreSQL URL.
    ///
    /// # Example
    ///
    /// ```
    /// assert!(vault_server::PostgresOptions::parse("mysql://x@y/z").is_err());
    /// assert!(vault_server::PostgresOptions::parse("postgres://x@127.0.0.1/z").is_ok());
    /// ```
    pub fn parse(url: &str) -> Result<PostgresOptions, StorageError> {
        let scheme_ok = url.starts_with("postgres://") || url.starts_with("postgresql://");
        if !scheme_ok {
            return Err(StorageError::Database(sqlx::Error::Configuration(
                "the database URL must start with postgres:// or postgresql://".into(),
            )));
        }
        let connect = PgConnectOptions::from_str(url)?
            // One name per process in pg_stat_activity, so an operator can tell replicas apart
            // from other clients.
            .application_name("mpc-vault");
        Ok(PostgresOptions {
            connect,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
        })
    }

    /// Sets the most connections this process keeps open (at least 1).
    ///
    /// # Example
    ///
    /// ```
    /// let options = vault_server::PostgresOptions::parse("postgres://x@127.0.0.1/z")?.max_connections(0);
    /// assert_eq!(options.get_max_connections(), 1);
    /// # Ok::<(), vault_server::StorageError>(())
    /// ```
    #[must_use]
    pub fn max_connections(mut self, max: u32) -> PostgresOptions {
        self.max_connections = max.max(1);
        self
    }

    /// Sets how long a request waits for a connection before it fails.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    /// let options = vault_server::PostgresOptions::parse("postgres://x@127.0.0.1/z")?
    ///     .acquire_timeout(Duration::from_secs(3));
    /// assert_eq!(options.get_acquire_timeout(), Duration::from_secs(3));
    /// # Ok::<(), vault_server::StorageError>(())
    /// ```
    #[must_use]
    pub fn acquire_timeout(mut self, timeout: Duration) -> PostgresOptions {
        self.acquire_timeout = timeout;
        self
    }

    /// The most connections this process keeps open.
    ///
    /// # Example
    ///
    /// ```
    /// let options = vault_server::PostgresOptions::parse("postgres://x@127.0.0.1/z")?;
    /// assert_eq!(options.get_max_connections(), 10);
    /// # Ok::<(), vault_server::StorageError>(())
    /// ```
    #[must_use]
    pub fn get_max_connections(&self) -> u32 {
        self.max_connections
    }

    /// How long a request waits for a connection.
    ///
    /// # Example
    ///
    /// ```
    /// let options = vault_server::PostgresOptions::parse("postgres://x@127.0.0.1/z")?;
    /// assert_eq!(options.get_acquire_timeout().as_secs(), 10);
    /// # Ok::<(), vault_server::StorageError>(())
    /// ```
    #[must_use]
    pub fn get_acquire_timeout(&self) -> Duration {
        self.acquire_timeout
    }
}

/// Without the password: `postgres://user@host:port/database`.
impl fmt::Display for PostgresOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "postgres://{}@{}:{}/{}",
            self.connect.get_username(),
            self.connect.get_host(),
            self.connect.get_port(),
            self.connect.get_database().unwrap_or("")
        )
    }
}

/// Redacted: `PgConnectOptions`'s own `Debug` would print the password.
impl fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresOptions")
            .field("url", &format_args!("{self}"))
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .finish_non_exhaustive()
    }
}

/// The PostgreSQL store.
///
/// # Example
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use vault_server::{PostgresOptions, PostgresStorage, Storage};
///
/// let options = PostgresOptions::parse("postgres://vault@127.0.0.1:5432/vault")?;
/// let dir = tempfile::tempdir()?;
/// let audit_key = std::sync::Arc::new(vault_server::AuditKey::load_or_create(dir.path())?);
/// let storage = PostgresStorage::connect(&options, audit_key).await?;
/// println!("{} API keys", storage.api_key_count().await?);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PostgresStorage {
    pool: PgPool,
    /// What every audit append needs besides the transaction.
    chain: AuditChain,
}

/// The audit chain's sealing key and the counter of failed appends, which every append gets.
#[derive(Debug, Clone)]
struct AuditChain {
    /// Seals every appended audit event (`integrity_hash`); every replica must hold the same.
    key: Arc<AuditKey>,
    /// Counts failed audit appends (`mpc_vault_audit_write_failures_total`); `None` for a
    /// store opened outside a server.
    metrics: Option<Metrics>,
}

/// A transaction body for [`PostgresStorage::write`]: it gets the open transaction and hands it
/// back with its result, so the helper can commit it or roll it back.
type TxBody<'a, T> = Pin<
    Box<dyn Future<Output = (Transaction<'static, Postgres>, Result<T, StorageError>)> + Send + 'a>,
>;

impl PostgresStorage {
    /// Connects the pool and runs the migrations (replicas starting together are safe: sqlx
    /// takes an advisory lock around them). `audit_key` seals every appended audit event: all
    /// replicas on one database must use the same key (`<data_dir>/audit-hmac.key`).
    ///
    /// # Errors
    ///
    /// [`StorageError`] if the database cannot be reached or a migration fails.
    ///
    /// # Example
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let options = vault_server::PostgresOptions::parse("postgres://vault@127.0.0.1/vault")?;
    /// let key = std::sync::Arc::new(vault_server::AuditKey::load_or_create("/var/lib/mpc-vault".as_ref())?);
    /// vault_server::PostgresStorage::connect(&options, key).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(
        options: &PostgresOptions,
        audit_key: Arc<AuditKey>,
    ) -> Result<PostgresStorage, StorageError> {
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(options.connect.clone())
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(PostgresStorage {
            pool,
            chain: AuditChain {
                key: audit_key,
                metrics: None,
            },
        })
    }

    /// Counts every failed audit append in `metrics`. Every append goes through [`append`],
    /// in a write's transaction or its own, so none is missed.
    pub(crate) fn with_metrics(mut self, metrics: Metrics) -> PostgresStorage {
        self.chain.metrics = Some(metrics);
        self
    }

    /// Runs `body` in one transaction and commits it; every write goes through here, so a row
    /// that must be written with each change (an audit record) is added in one place.
    ///
    /// A transaction PostgreSQL aborted for a serialization failure or a deadlock is rolled
    /// back and run again, at most [`TX_ATTEMPTS`] times; any other error rolls it back and is
    /// returned.
    async fn write<'a, T, F>(&self, mut body: F) -> Result<T, StorageError>
    where
        F: FnMut(Transaction<'static, Postgres>) -> TxBody<'a, T>,
    {
        let mut attempt = 1;
        loop {
            let tx = self.pool.begin().await?;
            let (tx, result) = body(tx).await;
            let result = match result {
                Ok(value) => tx
                    .commit()
                    .await
                    .map(|()| value)
                    .map_err(StorageError::from),
                Err(e) => {
                    // Dropping a transaction also rolls it back, but asynchronously; rolling
                    // back here returns the connection to the pool clean before a retry. If the
                    // rollback fails the connection is broken (the pool discards it) and the
                    // body's error is still the one worth reporting.
                    let _ = tx.rollback().await;
                    Err(e)
                }
            };
            match result {
                Err(StorageError::Database(e)) if is_retryable(&e) && attempt < TX_ATTEMPTS => {
                    attempt += 1;
                    // A short, growing pause lets the transaction we collided with finish.
                    tokio::time::sleep(Duration::from_millis(5 << attempt)).await;
                }
                other => return other,
            }
        }
    }
}

/// Serialization failure (40001) or deadlock detected (40P01): PostgreSQL aborted the
/// transaction and running it again is the documented remedy.
fn is_retryable(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db)
        if matches!(db.code().as_deref(), Some("40001" | "40P01")))
}

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
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

fn to_json<T: serde::Serialize>(table: &'static str, value: &T) -> Result<String, StorageError> {
    serde_json::to_string(value).map_err(|e| StorageError::Corrupt {
        table,
        reason: e.to_string(),
    })
}

fn api_key(row: &PgRow) -> Result<ApiKeyRecord, StorageError> {
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

fn vault(row: &PgRow) -> Result<VaultRecord, StorageError> {
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
        cmek_enabled: row.try_get("cmek_enabled")?,
        custody,
    })
}

fn version_of(row: &PgRow) -> Result<VersionRecord, StorageError> {
    const T: &str = "secret_versions";
    Ok(VersionRecord {
        secret_id: row.try_get("secret_id")?,
        version_id: row.try_get("version_id")?,
        vault_id: row.try_get("vault_id")?,
        path: row.try_get("path")?,
        version: to_u64(T, row.try_get("version")?)?,
        secret_type: row.try_get("secret_type")?,
        custody_mode: row.try_get("custody_mode")?,
        envelope: row.try_get("envelope")?,
        metadata: row.try_get("metadata")?,
        expires_at: row.try_get("expires_at")?,
        max_access_count: row
            .try_get::<Option<i64>, _>("max_access_count")?
            .map(|v| to_u64(T, v))
            .transpose()?,
        access_count: to_u64(T, row.try_get("access_count")?)?,
        disabled: row.try_get("disabled")?,
        deleted: row.try_get("deleted")?,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        cmek_fingerprint: row.try_get("cmek_fingerprint")?,
    })
}

fn cmek_job(row: &PgRow) -> Result<CmekJobRecord, StorageError> {
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

/// A version's share rows, by slot.
async fn shares_of(
    conn: &mut PgConnection,
    version_id: &str,
) -> Result<Vec<ShareRecord>, StorageError> {
    sqlx::query(
        "SELECT slot, provider, blob FROM secret_dek_shares WHERE secret_version_id = $1 \
         ORDER BY slot",
    )
    .bind(version_id)
    .fetch_all(conn)
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
     (SELECT 1 FROM secret_versions lv WHERE lv.secret_id = s.id AND NOT lv.deleted)";

/// Takes the quota lock of `resource` (a row of `quota_locks`) until the transaction ends; see
/// the module documentation. Only limited writes take it, so unlimited ones never queue.
async fn lock_quota(conn: &mut PgConnection, resource: &'static str) -> Result<(), StorageError> {
    let locked: Option<String> =
        sqlx::query_scalar("SELECT resource FROM quota_locks WHERE resource = $1 FOR UPDATE")
            .bind(resource)
            .fetch_optional(conn)
            .await?;
    match locked {
        Some(_) => Ok(()),
        // Without its row the limit could not be enforced race-free: refuse the write.
        None => Err(StorageError::Corrupt {
            table: "quota_locks",
            reason: format!("no lock row for {resource}"),
        }),
    }
}

/// The columns `version_of()` reads: a version joined with its secret.
const VERSION_COLUMNS: &str = "s.id AS secret_id, v.id AS version_id, s.vault_id AS vault_id, \
     s.path AS path, v.version AS version, v.secret_type AS secret_type, \
     v.custody_mode AS custody_mode, v.envelope AS envelope, v.metadata AS metadata, \
     v.expires_at AS expires_at, v.max_access_count AS max_access_count, \
     v.access_count AS access_count, v.disabled AS disabled, v.deleted AS deleted, \
     v.created_by AS created_by, v.created_at AS created_at, \
     v.cmek_fingerprint AS cmek_fingerprint";

async fn insert_api_key_row(
    conn: &mut PgConnection,
    key: &ApiKeyRecord,
) -> Result<(), StorageError> {
    let scope = key
        .vault_scope
        .as_ref()
        .map(|s| to_json("api_keys", s))
        .transpose()?;
    sqlx::query(
        "INSERT INTO api_keys (id, user_id, name, key_hash, key_prefix, vault_scope, \
         created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&key.id)
    .bind(&key.user_id)
    .bind(&key.name)
    .bind(&key.key_hash)
    .bind(&key.key_prefix)
    .bind(scope)
    .bind(key.created_at)
    .bind(key.revoked_at)
    .execute(conn)
    .await?;
    Ok(())
}

async fn insert_first_api_key_row(
    conn: &mut PgConnection,
    chain: &AuditChain,
    key: &ApiKeyRecord,
    audit: &NewAuditEvent,
) -> Result<bool, StorageError> {
    // The lock conflicts with itself and with every insert, so of two replicas bootstrapping at
    // once the second waits, then sees the first one's key. Readers are not blocked.
    sqlx::query("LOCK TABLE api_keys IN SHARE ROW EXCLUSIVE MODE")
        .execute(&mut *conn)
        .await?;
    let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_keys")
        .fetch_one(&mut *conn)
        .await?;
    if existing > 0 {
        return Ok(false);
    }
    insert_api_key_row(conn, key).await?;
    append(conn, chain, audit).await?;
    Ok(true)
}

async fn insert_vault_row(
    conn: &mut PgConnection,
    vault: &VaultRecord,
    max_vaults: Option<u64>,
) -> Result<(), StorageError> {
    if let Some(limit) = max_vaults {
        lock_quota(&mut *conn, "vaults").await?;
        // The treasury's system vaults are the server's, not the organisation's: not counted.
        let live: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM vaults WHERE deleted_at IS NULL AND name <> $1",
        )
        .bind(crate::treasury::SYSTEM_VAULT)
        .fetch_one(&mut *conn)
        .await?;
        if to_u64("vaults", live)? >= limit {
            return Err(StorageError::LimitReached {
                resource: "vaults",
                limit,
            });
        }
    }
    let (mode, threshold, providers) = match &vault.custody {
        Some(c) => (
            Some(c.mode.as_str()),
            Some(i64::from(c.threshold)),
            Some(to_json("vaults", &c.providers)?),
        ),
        None => (None, None, None),
    };
    sqlx::query(
        "INSERT INTO vaults (id, name, description, created_by, created_at, cmek_enabled, \
         mpc_custody, mpc_threshold, mpc_providers) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&vault.id)
    .bind(&vault.name)
    .bind(&vault.description)
    .bind(&vault.created_by)
    .bind(vault.created_at)
    .bind(vault.cmek_enabled)
    .bind(mode)
    .bind(threshold)
    .bind(providers)
    .execute(conn)
    .await?;
    Ok(())
}

async fn put_version_rows(
    conn: &mut PgConnection,
    new: &NewVersion,
    max_secrets: Option<u64>,
) -> Result<VersionRecord, StorageError> {
    let v = &new.version;
    if max_secrets.is_some() {
        // First, before any row lock: every limited writer takes the locks in the same order
        // (quota, vault, secret), so they queue instead of deadlocking.
        lock_quota(&mut *conn, "secrets").await?;
    }
    // The vault's CMEK fingerprint, read under a share lock held to the commit: turning CMEK
    // on or off, or starting a rotation, waits for this write, and this write waits for them.
    // A missing vault reads as no fingerprint; the secret's foreign key then refuses the write.
    let cmek_fingerprint: Option<String> =
        sqlx::query_scalar("SELECT cmek_fingerprint FROM vaults WHERE id = $1 FOR SHARE")
            .bind(&v.vault_id)
            .fetch_optional(&mut *conn)
            .await?
            .flatten();
    // Under READ COMMITTED, a concurrent insert of the same secret makes this statement wait
    // for it; the SELECT after it then sees whichever row won.
    sqlx::query(
        "INSERT INTO secrets (id, vault_id, path, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (vault_id, path) DO NOTHING",
    )
    .bind(&new.new_secret_id)
    .bind(&v.vault_id)
    .bind(&v.path)
    .bind(v.created_at)
    .execute(&mut *conn)
    .await?;
    let secret_id: String =
        sqlx::query_scalar("SELECT id FROM secrets WHERE vault_id = $1 AND path = $2")
            .bind(&v.vault_id)
            .bind(&v.path)
            .fetch_one(&mut *conn)
            .await?;
    if let Some(limit) = max_secrets {
        let live: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM secret_versions WHERE secret_id = $1 AND NOT deleted)",
        )
        .bind(&secret_id)
        .fetch_one(&mut *conn)
        .await?;
        if !live {
            let count: i64 = sqlx::query_scalar(LIVE_SECRETS)
                .fetch_one(&mut *conn)
                .await?;
            if to_u64("secrets", count)? >= limit {
                // The caller rolls the transaction back, with the secret row inserted above.
                return Err(StorageError::LimitReached {
                    resource: "secrets",
                    limit,
                });
            }
        }
    }
    let inserted = sqlx::query(
        "INSERT INTO secret_versions (id, secret_id, version, secret_type, custody_mode, \
         envelope, metadata, expires_at, max_access_count, access_count, disabled, deleted, \
         created_by, created_at, cmek_fingerprint) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, FALSE, FALSE, $10, $11, $12)",
    )
    .bind(&v.version_id)
    .bind(&secret_id)
    .bind(to_i64(v.version)?)
    .bind(&v.secret_type)
    .bind(&v.custody_mode)
    .bind(&v.envelope)
    .bind(&v.metadata)
    .bind(v.expires_at)
    .bind(v.max_access_count.map(to_i64).transpose()?)
    .bind(&v.created_by)
    .bind(v.created_at)
    .bind(cmek_fingerprint.as_deref())
    .execute(&mut *conn)
    .await;
    match inserted {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => return Err(StorageError::Conflict),
        Err(e) => return Err(e.into()),
    }
    insert_shares(&mut *conn, &v.vault_id, &v.version_id, &new.shares).await?;
    let mut stored = v.clone();
    stored.cmek_fingerprint = cmek_fingerprint;
    stored.secret_id = secret_id;
    stored.access_count = 0;
    stored.disabled = false;
    stored.deleted = false;
    Ok(stored)
}

/// Inserts a version's share rows: the wrapped share, or a pending slot to repair.
async fn insert_shares(
    conn: &mut PgConnection,
    vault_id: &str,
    version_id: &str,
    shares: &[ShareRecord],
) -> Result<(), StorageError> {
    for share in shares {
        let state = if share.blob.is_some() {
            "stored"
        } else {
            "pending"
        };
        sqlx::query(
            "INSERT INTO secret_dek_shares (vault_id, secret_version_id, slot, provider, blob, state) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(vault_id)
        .bind(version_id)
        .bind(i64::from(share.slot))
        .bind(&share.provider)
        .bind(share.blob.as_deref())
        .bind(state)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn set_vault_cmek_rows(
    conn: &mut PgConnection,
    vault_id: &str,
    fingerprint: Option<&str>,
) -> Result<bool, StorageError> {
    // The row lock first: a rotation starting meanwhile (which updates this row) either
    // committed before, and its job is seen by the check below, or waits for this transaction.
    // A single UPDATE with NOT EXISTS would re-check only the vault row after waiting, not the
    // job table, under READ COMMITTED.
    let exists: Option<String> =
        sqlx::query_scalar("SELECT id FROM vaults WHERE id = $1 AND deleted_at IS NULL FOR UPDATE")
            .bind(vault_id)
            .fetch_optional(&mut *conn)
            .await?;
    if exists.is_none() {
        return Ok(false);
    }
    let unfinished: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM cmek_rotation_jobs WHERE vault_id = $1 \
         AND status IN ('running', 'paused', 'failed'))",
    )
    .bind(vault_id)
    .fetch_one(&mut *conn)
    .await?;
    if unfinished {
        return Ok(false);
    }
    let changed = execute(
        conn,
        sqlx::query("UPDATE vaults SET cmek_fingerprint = $1, cmek_enabled = $2 WHERE id = $3")
            .bind(fingerprint)
            .bind(fingerprint.is_some())
            .bind(vault_id),
    )
    .await?;
    Ok(changed == 1)
}

async fn create_cmek_job_rows(
    conn: &mut PgConnection,
    job: &CmekJobRecord,
) -> Result<CmekJobRecord, StorageError> {
    // Compare-and-set on the old fingerprint. The update locks the vault row, so version writes
    // in flight (holding it `FOR SHARE`) finish first and are counted below, and later ones
    // wait for the commit and are flagged with the new fingerprint.
    let moved = execute(
        &mut *conn,
        sqlx::query(
            "UPDATE vaults SET cmek_fingerprint = $1 WHERE id = $2 AND deleted_at IS NULL \
             AND cmek_fingerprint = $3",
        )
        .bind(&job.new_fingerprint)
        .bind(&job.vault_id)
        .bind(&job.old_fingerprint),
    )
    .await?;
    if moved != 1 {
        return Err(StorageError::Conflict);
    }
    let total: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM secret_versions v JOIN secrets s ON s.id = v.secret_id \
         WHERE s.vault_id = $1 AND v.cmek_fingerprint = $2 AND NOT v.deleted",
    )
    .bind(&job.vault_id)
    .bind(&job.old_fingerprint)
    .fetch_one(&mut *conn)
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
    .execute(&mut *conn)
    .await;
    match inserted {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => return Err(StorageError::Conflict),
        Err(e) => return Err(e.into()),
    }
    let mut stored = job.clone();
    stored.status = CmekJobStatus::Running;
    stored.processed = 0;
    stored.total = to_u64("cmek_rotation_jobs", total)?;
    stored.error = None;
    stored.updated_at = job.created_at;
    Ok(stored)
}

async fn rewrite_cmek_version_rows(
    conn: &mut PgConnection,
    job: &CmekJobRecord,
    version_id: &str,
    envelope: &[u8],
    shares: &[ShareRecord],
) -> Result<bool, StorageError> {
    // Compare-and-set on the old fingerprint: of two runs of one job (a resumed job on another
    // replica), the second waits for the row lock, re-checks, and changes nothing.
    let changed = execute(
        &mut *conn,
        sqlx::query(
            "UPDATE secret_versions SET envelope = $1, cmek_fingerprint = $2 \
             WHERE id = $3 AND cmek_fingerprint = $4",
        )
        .bind(envelope)
        .bind(&job.new_fingerprint)
        .bind(version_id)
        .bind(&job.old_fingerprint),
    )
    .await?;
    if changed != 1 {
        return Ok(false);
    }
    execute(
        &mut *conn,
        sqlx::query("DELETE FROM secret_dek_shares WHERE secret_version_id = $1").bind(version_id),
    )
    .await?;
    insert_shares(&mut *conn, &job.vault_id, version_id, shares).await?;
    execute(
        conn,
        sqlx::query(
            "UPDATE cmek_rotation_jobs SET processed = processed + 1, updated_at = $1 WHERE id = $2",
        )
        .bind(crate::time::now_millis())
        .bind(&job.id),
    )
    .await?;
    Ok(true)
}

const AUDIT_EVENTS: &str = "audit_events";
const AUDIT_HEAD: &str = "audit_chain_head";

fn hash32(table: &'static str, bytes: Vec<u8>) -> Result<[u8; 32], StorageError> {
    <[u8; 32]>::try_from(bytes).map_err(|b| StorageError::Corrupt {
        table,
        reason: format!("a hash of {} bytes", b.len()),
    })
}

fn parse_list(table: &'static str, text: &str) -> Result<Vec<String>, StorageError> {
    serde_json::from_str(text).map_err(|e| StorageError::Corrupt {
        table,
        reason: e.to_string(),
    })
}

fn audit_event(row: &PgRow) -> Result<AuditEvent, StorageError> {
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

fn checkpoint(row: &PgRow) -> Result<Checkpoint, StorageError> {
    Ok(Checkpoint {
        seq: to_u64("audit_checkpoints", row.try_get("seq")?)?,
        event_id: row.try_get("event_id")?,
        event_hash: hash32("audit_checkpoints", row.try_get("event_hash")?)?,
        created_at: row.try_get("created_at")?,
        key_id: row.try_get("key_id")?,
        signature: row.try_get("signature")?,
    })
}

fn agent(row: &PgRow) -> Result<AgentRecord, StorageError> {
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

fn policy(row: &PgRow) -> Result<PolicyRecord, StorageError> {
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

/// Appends `event` to the chain inside the caller's transaction. The head row is updated
/// first: that `UPDATE … RETURNING` takes the row lock that serializes appends from every
/// connection and replica until commit (a concurrent appender blocks on it, then, under READ
/// COMMITTED, re-reads the committed row), and returns the new position with the previous
/// head's hash (the hash column is not changed yet).
async fn append(
    conn: &mut PgConnection,
    chain: &AuditChain,
    event: &NewAuditEvent,
) -> Result<AuditEvent, StorageError> {
    let appended = seal_and_insert(conn, &chain.key, event).await;
    // The caller's write fails with this error too (fail-closed); the counter makes a failing
    // audit trail visible before users report failing writes.
    if appended.is_err()
        && let Some(metrics) = &chain.metrics
    {
        metrics.audit_write_failed();
    }
    appended
}

/// The append itself, see [`append`].
async fn seal_and_insert(
    conn: &mut PgConnection,
    key: &AuditKey,
    event: &NewAuditEvent,
) -> Result<AuditEvent, StorageError> {
    let row = sqlx::query(
        "UPDATE audit_chain_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, event_hash",
    )
    .fetch_one(&mut *conn)
    .await?;
    let seq = to_u64(AUDIT_HEAD, row.try_get("seq")?)?;
    let prev = hash32(AUDIT_HEAD, row.try_get("event_hash")?)?;
    let sealed = crate::audit::seal(key, seq, prev, event)?;
    let e = &sealed.event;
    // The event row and the head's new hash in one statement (a data-modifying CTE): one round
    // trip fewer for every audited write.
    sqlx::query(
        "WITH event AS (INSERT INTO audit_events (seq, id, occurred_at, request_id, actor_type, \
         actor_id, action, resource_type, resource_id, vault_id, outcome, detail, prev_hash, \
         event_hash, integrity_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
         $13, $14, $15) RETURNING event_hash) \
         UPDATE audit_chain_head SET event_hash = (SELECT event_hash FROM event) WHERE id = 1",
    )
    .bind(to_i64(seq)?)
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
    .execute(&mut *conn)
    .await?;
    Ok(sealed)
}

/// Runs one statement that may change nothing (a conditional update or delete) and appends
/// its audit event only when `changed(rows)` holds. A change that did nothing writes no row
/// and no event (the caller records the failure with `append_audit`), so committing it is the
/// same as rolling it back, and it never takes the chain head's lock.
async fn execute_audited(
    conn: &mut PgConnection,
    chain: &AuditChain,
    audit: &NewAuditEvent,
    query: sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments>,
    changed: fn(u64) -> bool,
) -> Result<bool, StorageError> {
    let rows = query.execute(&mut *conn).await?.rows_affected();
    if !changed(rows) {
        return Ok(false);
    }
    append(conn, chain, audit).await?;
    Ok(true)
}

/// Runs one statement and returns how many rows it changed.
async fn execute(
    conn: &mut PgConnection,
    query: sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments>,
) -> Result<u64, StorageError> {
    Ok(query.execute(conn).await?.rows_affected())
}

fn exactly_one(rows: u64) -> bool {
    rows == 1
}

fn at_least_one(rows: u64) -> bool {
    rows > 0
}

async fn insert_agent_row(
    conn: &mut PgConnection,
    agent: &AgentRecord,
    max_agents: Option<u64>,
) -> Result<(), StorageError> {
    if let Some(limit) = max_agents {
        // As for vaults. Deleted agents do not count; expired ones do until deleted (they
        // still hold a name and a key row).
        lock_quota(&mut *conn, "agents").await?;
        let live: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM agents WHERE deleted_at IS NULL")
            .fetch_one(&mut *conn)
            .await?;
        if to_u64("agents", live)? >= limit {
            return Err(StorageError::LimitReached {
                resource: "agents",
                limit,
            });
        }
    }
    let vault_ids = agent
        .vault_ids
        .as_ref()
        .map(|ids| to_json("agents", ids))
        .transpose()?;
    sqlx::query(
        "INSERT INTO agents (id, name, description, created_by, vault_ids, expires_at, \
         token_ttl_seconds, key_hash, key_prefix, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
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
    .execute(conn)
    .await?;
    Ok(())
}

async fn insert_policy_row(
    conn: &mut PgConnection,
    policy: &PolicyRecord,
) -> Result<(), StorageError> {
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
    .bind(to_json("policies", &policy.permissions)?)
    .bind(&policy.effect)
    .bind(policy.priority)
    .bind(policy.expires_at)
    .bind(&policy.created_by)
    .bind(policy.created_at)
    .bind(policy.updated_at)
    .execute(conn)
    .await?;
    Ok(())
}

fn wallet(row: &PgRow) -> Result<WalletRecord, StorageError> {
    Ok(WalletRecord {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        vault_id: row.try_get("vault_id")?,
        chain: row.try_get("chain")?,
        curve: row.try_get("curve")?,
        public_key_hex: row.try_get("public_key_hex")?,
        address: row.try_get("address")?,
        is_active: row.try_get("is_active")?,
        secret_path: row.try_get("secret_path")?,
        secret_version: to_u64("treasury_wallets", row.try_get("secret_version")?)?,
        created_at: row.try_get("created_at")?,
    })
}

/// Deactivates the active wallet `id`; false if it is no longer active. Under READ COMMITTED a
/// concurrent rotation or delete of the same wallet blocks on the row lock, then re-checks
/// `is_active` after the first commits and finds nothing to change.
async fn deactivate_wallet_row(
    conn: &mut PgConnection,
    id: &str,
    at: i64,
) -> Result<bool, StorageError> {
    let done = sqlx::query(
        "UPDATE treasury_wallets SET is_active = FALSE, deactivated_at = $1 \
         WHERE id = $2 AND is_active",
    )
    .bind(at)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Stores a wallet: the rotated one (if any) deactivated, its key as the next version of its
/// secret, the older versions deleted on a rotation, and the metadata row; the caller appends
/// the audit event in the same transaction.
async fn put_wallet_rows(
    conn: &mut PgConnection,
    new: &NewVersion,
    wallet: &WalletRecord,
    replaces: Option<&str>,
) -> Result<VersionRecord, StorageError> {
    if let Some(old) = replaces
        && !deactivate_wallet_row(&mut *conn, old, wallet.created_at).await?
    {
        // Rotated or deleted by a concurrent request.
        return Err(StorageError::Conflict);
    }
    // Treasury keys are not user secrets: no secret quota applies.
    let stored = put_version_rows(&mut *conn, new, None).await?;
    if replaces.is_some() {
        // The replaced key must not be readable any more: every older version goes.
        sqlx::query(
            "UPDATE secret_versions SET deleted = TRUE WHERE secret_id = $1 AND version < $2",
        )
        .bind(&stored.secret_id)
        .bind(to_i64(stored.version)?)
        .execute(&mut *conn)
        .await?;
    }
    let inserted = sqlx::query(
        "INSERT INTO treasury_wallets (id, user_id, vault_id, chain, curve, public_key_hex, \
         address, is_active, secret_path, secret_version, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, TRUE, $8, $9, $10)",
    )
    .bind(&wallet.id)
    .bind(&wallet.user_id)
    .bind(&wallet.vault_id)
    .bind(&wallet.chain)
    .bind(&wallet.curve)
    .bind(&wallet.public_key_hex)
    .bind(&wallet.address)
    .bind(&wallet.secret_path)
    .bind(to_i64(wallet.secret_version)?)
    .bind(wallet.created_at)
    .execute(&mut *conn)
    .await;
    match inserted {
        Ok(_) => Ok(stored),
        // The chain already has an active wallet: a concurrent generate committed first (the
        // unique index made this insert wait for it).
        Err(e) if is_unique_violation(&e) => Err(StorageError::Conflict),
        Err(e) => Err(e.into()),
    }
}

/// Deactivates a wallet and deletes every version of its key secret, appending `audit` only
/// when the wallet was still active.
async fn delete_wallet_rows(
    conn: &mut PgConnection,
    chain: &AuditChain,
    wallet: &WalletRecord,
    at: i64,
    audit: &NewAuditEvent,
) -> Result<bool, StorageError> {
    if !deactivate_wallet_row(&mut *conn, &wallet.id, at).await? {
        return Ok(false);
    }
    sqlx::query(
        "UPDATE secret_versions SET deleted = TRUE WHERE NOT deleted AND secret_id = \
         (SELECT id FROM secrets WHERE vault_id = $1 AND path = $2)",
    )
    .bind(&wallet.vault_id)
    .bind(&wallet.secret_path)
    .execute(&mut *conn)
    .await?;
    append(conn, chain, audit).await?;
    Ok(true)
}

/// Wraps a transaction body written against `&mut PgConnection` as a [`TxBody`].
macro_rules! tx_body {
    (|$conn:ident| $body:expr) => {
        |mut tx: Transaction<'static, Postgres>| {
            Box::pin(async move {
                let result = {
                    let $conn: &mut PgConnection = &mut tx;
                    $body.await
                };
                (tx, result)
            })
        }
    };
}

#[async_trait]
impl Storage for PostgresStorage {
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
        let chain = &self.chain;
        self.write(tx_body!(|conn| async {
            insert_api_key_row(&mut *conn, key).await?;
            append(conn, chain, audit).await?;
            Ok(())
        }))
        .await
    }

    async fn insert_first_api_key(
        &self,
        key: &ApiKeyRecord,
        audit: &NewAuditEvent,
    ) -> Result<bool, StorageError> {
        let chain = &self.chain;
        self.write(tx_body!(|conn| insert_first_api_key_row(
            conn, chain, key, audit
        )))
        .await
    }

    async fn find_api_key_by_hash(
        &self,
        hash: &[u8],
    ) -> Result<Option<ApiKeyRecord>, StorageError> {
        sqlx::query("SELECT * FROM api_keys WHERE key_hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(api_key)
            .transpose()
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
        let chain = &self.chain;
        self.write(tx_body!(|conn| execute_audited(
            conn,
            chain,
            audit,
            sqlx::query(
                "UPDATE api_keys SET revoked_at = $1 \
                 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL",
            )
            .bind(at)
            .bind(id)
            .bind(user_id),
            exactly_one,
        )))
        .await
    }

    async fn insert_vault_within(
        &self,
        vault: &VaultRecord,
        max_vaults: Option<u64>,
        audit: &NewAuditEvent,
    ) -> Result<(), StorageError> {
        let chain = &self.chain;
        self.write(tx_body!(|conn| async {
            insert_vault_row(&mut *conn, vault, max_vaults).await?;
            append(conn, chain, audit).await?;
            Ok(())
        }))
        .await
    }

    async fn get_vault(&self, id: &str) -> Result<Option<VaultRecord>, StorageError> {
        sqlx::query("SELECT * FROM vaults WHERE id = $1 AND deleted_at IS NULL")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(vault)
            .transpose()
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
        let chain = &self.chain;
        self.write(tx_body!(|conn| execute_audited(
            conn,
            chain,
            audit,
            sqlx::query("UPDATE vaults SET deleted_at = $1 WHERE id = $2 AND deleted_at IS NULL")
                .bind(at)
                .bind(id),
            exactly_one,
        )))
        .await
    }

    async fn set_vault_custody(
        &self,
        id: &str,
        custody: &VaultCustodyRecord,
        audit: &NewAuditEvent,
    ) -> Result<bool, StorageError> {
        let providers = to_json("vaults", &custody.providers)?;
        let providers = providers.as_str();
        let chain = &self.chain;
        // The `mpc_custody IS NULL` guard makes setting a mode a compare-and-set: under READ
        // COMMITTED the second of two concurrent updates re-checks it after the first commits.
        self.write(tx_body!(|conn| execute_audited(
            conn,
            chain,
            audit,
            sqlx::query(
                "UPDATE vaults SET mpc_custody = $1, mpc_threshold = $2, mpc_providers = $3 \
                 WHERE id = $4 AND deleted_at IS NULL AND mpc_custody IS NULL",
            )
            .bind(&custody.mode)
            .bind(i64::from(custody.threshold))
            .bind(providers)
            .bind(id),
            exactly_one,
        )))
        .await
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
        let chain = &self.chain;
        self.write(tx_body!(|conn| async {
            let stored = put_version_rows(&mut *conn, new, max_secrets).await?;
            append(conn, chain, audit).await?;
            Ok(stored)
        }))
        .await
    }

    async fn get_version(
        &self,
        vault_id: &str,
        path: &str,
        version: Option<u64>,
    ) -> Result<Option<(VersionRecord, Vec<ShareRecord>)>, StorageError> {
        // One statement: the version and its shares come from one snapshot (a statement sees
        // one), so a read never pairs a version with shares of another state, and it costs one
        // round trip instead of a transaction's five. This is on the path of every read.
        let version = version.map(to_i64).transpose()?;
        let rows = sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS}, d.slot AS share_slot, d.provider AS share_provider, \
             d.blob AS share_blob FROM secret_versions v JOIN secrets s ON s.id = v.secret_id \
             LEFT JOIN secret_dek_shares d ON d.secret_version_id = v.id \
             WHERE s.vault_id = $1 AND s.path = $2 AND v.version = COALESCE($3::BIGINT, \
             (SELECT MAX(latest.version) FROM secret_versions latest \
              WHERE latest.secret_id = s.id)) \
             ORDER BY d.slot"
        ))
        .bind(vault_id)
        .bind(path)
        .bind(version)
        .fetch_all(&self.pool)
        .await?;
        let Some(first) = rows.first() else {
            return Ok(None);
        };
        let record = version_of(first)?;
        let mut shares = Vec::with_capacity(rows.len());
        for row in &rows {
            let Some(slot) = row.try_get::<Option<i64>, _>("share_slot")? else {
                continue;
            };
            shares.push(share_record(
                slot,
                row.try_get("share_provider")?,
                row.try_get("share_blob")?,
            )?);
        }
        Ok(Some((record, shares)))
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
        // The prefix is compared with LEFT rather than LIKE so `_` and `%` in it are literal;
        // `path` is in the "C" collation, so ORDER BY gives SQLite's byte order.
        sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS} FROM secret_versions v JOIN secrets s ON s.id = v.secret_id \
             WHERE s.vault_id = $1 AND LEFT(s.path, LENGTH($2)) = $2 AND NOT v.deleted \
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
        let chain = &self.chain;
        self.write(tx_body!(|conn| execute_audited(
            conn,
            chain,
            audit,
            sqlx::query("UPDATE secret_versions SET disabled = TRUE WHERE id = $1 AND NOT deleted")
                .bind(version_id),
            exactly_one,
        )))
        .await
    }

    async fn delete_secret(
        &self,
        vault_id: &str,
        path: &str,
        audit: &NewAuditEvent,
    ) -> Result<bool, StorageError> {
        let chain = &self.chain;
        self.write(tx_body!(|conn| execute_audited(
            conn,
            chain,
            audit,
            sqlx::query(
                "UPDATE secret_versions SET deleted = TRUE WHERE NOT deleted AND secret_id = \
                 (SELECT id FROM secrets WHERE vault_id = $1 AND path = $2)",
            )
            .bind(vault_id)
            .bind(path),
            at_least_one,
        )))
        .await
    }

    async fn record_access(
        &self,
        version_id: &str,
        audit: &NewAuditEvent,
    ) -> Result<bool, StorageError> {
        let chain = &self.chain;
        // One conditional UPDATE: the row lock makes a concurrent read re-check the condition
        // after this one commits, so reads on several replicas cannot exceed the maximum.
        self.write(tx_body!(|conn| execute_audited(
            conn,
            chain,
            audit,
            sqlx::query(
                "UPDATE secret_versions SET access_count = access_count + 1 WHERE id = $1 \
                 AND (max_access_count IS NULL OR access_count < max_access_count)",
            )
            .bind(version_id),
            exactly_one,
        )))
        .await
    }

    async fn insert_agent_within(
        &self,
        agent: &AgentRecord,
        max_agents: Option<u64>,
        audit: &NewAuditEvent,
    ) -> Result<(), StorageError> {
        let chain = &self.chain;
        self.write(tx_body!(|conn| async {
            insert_agent_row(&mut *conn, agent, max_agents).await?;
            append(conn, chain, audit).await?;
            Ok(())
        }))
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
        let chain = &self.chain;
        self.write(tx_body!(|conn| execute_audited(
            conn,
            chain,
            audit,
            sqlx::query(
                "UPDATE agents SET deleted_at = $1 WHERE id = $2 AND created_by = $3 \
                 AND deleted_at IS NULL",
            )
            .bind(at)
            .bind(id)
            .bind(created_by),
            exactly_one,
        )))
        .await
    }

    async fn insert_policy(
        &self,
        policy: &PolicyRecord,
        audit: &NewAuditEvent,
    ) -> Result<(), StorageError> {
        let chain = &self.chain;
        self.write(tx_body!(|conn| async {
            insert_policy_row(&mut *conn, policy).await?;
            append(conn, chain, audit).await?;
            Ok(())
        }))
        .await
    }

    async fn update_policy(
        &self,
        policy: &PolicyRecord,
        audit: &NewAuditEvent,
    ) -> Result<bool, StorageError> {
        let permissions = to_json("policies", &policy.permissions)?;
        let permissions = permissions.as_str();
        let chain = &self.chain;
        self.write(tx_body!(|conn| execute_audited(
            conn,
            chain,
            audit,
            sqlx::query(
                "UPDATE policies SET secret_path_pattern = $1, principal_type = $2, \
                 principal_id = $3, permissions = $4, effect = $5, priority = $6, \
                 expires_at = $7, updated_at = $8 WHERE id = $9 AND vault_id = $10",
            )
            .bind(&policy.secret_path_pattern)
            .bind(&policy.principal_type)
            .bind(&policy.principal_id)
            .bind(permissions)
            .bind(&policy.effect)
            .bind(policy.priority)
            .bind(policy.expires_at)
            .bind(policy.updated_at)
            .bind(&policy.id)
            .bind(&policy.vault_id),
            exactly_one,
        )))
        .await
    }

    async fn delete_policy(
        &self,
        vault_id: &str,
        id: &str,
        audit: &NewAuditEvent,
    ) -> Result<bool, StorageError> {
        let chain = &self.chain;
        self.write(tx_body!(|conn| execute_audited(
            conn,
            chain,
            audit,
            sqlx::query("DELETE FROM policies WHERE id = $1 AND vault_id = $2")
                .bind(id)
                .bind(vault_id),
            exactly_one,
        )))
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
        // The order does not change a decision (priority and deny-wins decide), but both
        // stores give the same stable order, so their answers compare equal.
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
        let chain = &self.chain;
        self.write(tx_body!(|conn| append(conn, chain, audit)))
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
        // that is NULL when unused. The casts give each parameter a type PostgreSQL cannot
        // infer from `$n IS NULL` alone.
        const WHERE: &str = "WHERE ($1::text IS NULL OR resource_id = $1 OR vault_id = $1) \
             AND ($2::text IS NULL OR actor_id = $2) AND ($3::text IS NULL OR action = $3) \
             AND ($4::bigint IS NULL OR occurred_at >= $4) \
             AND ($5::bigint IS NULL OR occurred_at <= $5) \
             AND ($6::text IS NULL OR actor_id = $6 OR vault_id IN \
                  (SELECT id FROM vaults WHERE created_by = $6))";
        // The count and the page are read in one snapshot, so `count` matches the page even
        // while other replicas append.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await?;
        let count: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM audit_events {WHERE}"))
            .bind(query.resource_id.as_deref())
            .bind(query.actor_id.as_deref())
            .bind(query.action.as_deref())
            .bind(query.from)
            .bind(query.to)
            .bind(query.visible_to.as_deref())
            .fetch_one(&mut *tx)
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
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(audit_event)
        .collect::<Result<Vec<_>, _>>()?;
        tx.rollback().await?;
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
             WHERE ($1::bigint IS NULL OR occurred_at >= $1) \
             AND ($2::bigint IS NULL OR occurred_at <= $2)",
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
        // Replicas checkpoint independently; the first to sign a given head wins and the
        // others' identical statements are dropped.
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
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
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
        let chain = &self.chain;
        self.write(tx_body!(|conn| async {
            if !set_vault_cmek_rows(&mut *conn, vault_id, fingerprint).await? {
                // Nothing changed: no event claims a change (the caller records the failure).
                return Ok(false);
            }
            append(conn, chain, audit).await?;
            Ok(true)
        }))
        .await
    }

    async fn create_cmek_job(
        &self,
        job: &CmekJobRecord,
        audit: &NewAuditEvent,
    ) -> Result<CmekJobRecord, StorageError> {
        let chain = &self.chain;
        self.write(tx_body!(|conn| async {
            let stored = create_cmek_job_rows(&mut *conn, job).await?;
            append(conn, chain, audit).await?;
            Ok(stored)
        }))
        .await
    }

    async fn put_wallet(
        &self,
        new: &NewVersion,
        wallet: &WalletRecord,
        replaces: Option<&str>,
        audit: &NewAuditEvent,
    ) -> Result<VersionRecord, StorageError> {
        let chain = &self.chain;
        self.write(tx_body!(|conn| async {
            let stored = put_wallet_rows(&mut *conn, new, wallet, replaces).await?;
            append(conn, chain, audit).await?;
            Ok(stored)
        }))
        .await
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
        let now = crate::time::now_millis();
        let chain = &self.chain;
        // No such job: nothing changed, and no event claims a change.
        self.write(tx_body!(|conn| execute_audited(
            conn,
            chain,
            audit,
            sqlx::query(
                "UPDATE cmek_rotation_jobs SET status = $1, error = $2, updated_at = $3 \
                 WHERE id = $4",
            )
            .bind(status.as_str())
            .bind(error)
            .bind(now)
            .bind(job_id),
            exactly_one,
        )))
        .await?;
        Ok(())
    }

    async fn pause_running_cmek_jobs(
        &self,
        audit: &(
             dyn for<'j> Fn(&'j CmekJobRecord) -> Result<NewAuditEvent, AuditError> + Send + Sync
         ),
    ) -> Result<u64, StorageError> {
        let now = crate::time::now_millis();
        let chain = &self.chain;
        self.write(tx_body!(|conn| async {
            // One statement pauses the jobs and returns them, so every paused job (and only
            // those: a replica starting at the same time pauses none twice) gets its event.
            let paused = sqlx::query(
                "UPDATE cmek_rotation_jobs SET status = 'paused', error = $1, updated_at = $2 \
                 WHERE status = 'running' RETURNING *",
            )
            .bind(
                "the server restarted and CMEK keys are never stored: send the same POST \
                 …/cmek-rotate with both keys to resume",
            )
            .bind(now)
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(cmek_job)
            .collect::<Result<Vec<_>, _>>()?;
            for job in &paused {
                append(&mut *conn, chain, &audit(job)?).await?;
            }
            u64::try_from(paused.len()).map_err(|_| StorageError::Corrupt {
                table: "cmek_rotation_jobs",
                reason: "too many jobs".into(),
            })
        }))
        .await
    }

    async fn cmek_versions_with(
        &self,
        vault_id: &str,
        fingerprint: &str,
        limit: u32,
    ) -> Result<Vec<(VersionRecord, Vec<ShareRecord>)>, StorageError> {
        // One snapshot for the batch and its shares (as in `get_version`), so a version is
        // never paired with the shares of a concurrent rewrite.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await?;
        let rows = sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS} FROM secret_versions v JOIN secrets s ON s.id = v.secret_id \
             WHERE s.vault_id = $1 AND v.cmek_fingerprint = $2 AND NOT v.deleted \
             ORDER BY v.id LIMIT $3"
        ))
        .bind(vault_id)
        .bind(fingerprint)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let record = version_of(row)?;
            let shares = shares_of(&mut tx, &record.version_id).await?;
            out.push((record, shares));
        }
        tx.rollback().await?;
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
        let chain = &self.chain;
        self.write(tx_body!(|conn| async {
            if !rewrite_cmek_version_rows(&mut *conn, job, version_id, envelope, shares).await? {
                // Already rewritten (another run of the job): no change, no event.
                return Ok(false);
            }
            append(conn, chain, audit).await?;
            Ok(true)
        }))
        .await
    }

    async fn list_wallets(&self, user_id: &str) -> Result<Vec<WalletRecord>, StorageError> {
        sqlx::query(
            "SELECT * FROM treasury_wallets WHERE user_id = $1 AND is_active \
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
        let chain = &self.chain;
        self.write(tx_body!(|conn| delete_wallet_rows(
            conn, chain, wallet, at, audit
        )))
        .await
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
