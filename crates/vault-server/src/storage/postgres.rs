//! The PostgreSQL store: several stateless server replicas on one database.
//!
//! Every write runs in one explicit transaction through [`PostgresStorage::write`], which also
//! retries the transaction when PostgreSQL aborts it for a serialization failure or a deadlock.
//! Version numbers stay gap-free and unique across replicas because a writer takes
//! `MAX(version) + 1` and `UNIQUE (secret_id, version)` turns a lost race into
//! [`StorageError::Conflict`], which the server answers by sealing again under the next number.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr as _;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{PgConnection, Postgres, Row, Transaction};

use super::{
    ApiKeyRecord, NewVersion, ShareRecord, Storage, StorageError, VaultCustodyRecord, VaultRecord,
    VersionRecord,
};

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
/// let storage = PostgresStorage::connect(&options).await?;
/// println!("{} API keys", storage.api_key_count().await?);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PostgresStorage {
    pool: PgPool,
}

/// A transaction body for [`PostgresStorage::write`]: it gets the open transaction and hands it
/// back with its result, so the helper can commit it or roll it back.
type TxBody<'a, T> = Pin<
    Box<dyn Future<Output = (Transaction<'static, Postgres>, Result<T, StorageError>)> + Send + 'a>,
>;

impl PostgresStorage {
    /// Connects the pool and runs the migrations (replicas starting together are safe: sqlx
    /// takes an advisory lock around them).
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
    /// vault_server::PostgresStorage::connect(&options).await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(options: &PostgresOptions) -> Result<PostgresStorage, StorageError> {
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(options.connect.clone())
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(PostgresStorage { pool })
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
    })
}

/// The columns `version_of()` reads: a version joined with its secret.
const VERSION_COLUMNS: &str = "s.id AS secret_id, v.id AS version_id, s.vault_id AS vault_id, \
     s.path AS path, v.version AS version, v.secret_type AS secret_type, \
     v.custody_mode AS custody_mode, v.envelope AS envelope, v.metadata AS metadata, \
     v.expires_at AS expires_at, v.max_access_count AS max_access_count, \
     v.access_count AS access_count, v.disabled AS disabled, v.deleted AS deleted, \
     v.created_by AS created_by, v.created_at AS created_at";

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
    key: &ApiKeyRecord,
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
    Ok(true)
}

async fn insert_vault_row(
    conn: &mut PgConnection,
    vault: &VaultRecord,
) -> Result<(), StorageError> {
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
) -> Result<VersionRecord, StorageError> {
    let v = &new.version;
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
    let inserted = sqlx::query(
        "INSERT INTO secret_versions (id, secret_id, version, secret_type, custody_mode, \
         envelope, metadata, expires_at, max_access_count, access_count, disabled, deleted, \
         created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, FALSE, FALSE, $10, $11)",
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
    .execute(&mut *conn)
    .await;
    match inserted {
        Ok(_) => {}
        Err(e) if is_unique_violation(&e) => return Err(StorageError::Conflict),
        Err(e) => return Err(e.into()),
    }
    for share in &new.shares {
        let state = if share.blob.is_some() {
            "stored"
        } else {
            "pending"
        };
        sqlx::query(
            "INSERT INTO secret_dek_shares (vault_id, secret_version_id, slot, provider, blob, state) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&v.vault_id)
        .bind(&v.version_id)
        .bind(i64::from(share.slot))
        .bind(&share.provider)
        .bind(share.blob.as_deref())
        .bind(state)
        .execute(&mut *conn)
        .await?;
    }
    let mut stored = v.clone();
    stored.secret_id = secret_id;
    stored.access_count = 0;
    stored.disabled = false;
    stored.deleted = false;
    Ok(stored)
}

/// Runs one statement and returns how many rows it changed.
async fn execute(
    conn: &mut PgConnection,
    query: sqlx::query::Query<'_, Postgres, sqlx::postgres::PgArguments>,
) -> Result<u64, StorageError> {
    Ok(query.execute(conn).await?.rows_affected())
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

    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StorageError> {
        self.write(tx_body!(|conn| insert_api_key_row(conn, key)))
            .await
    }

    async fn insert_first_api_key(&self, key: &ApiKeyRecord) -> Result<bool, StorageError> {
        self.write(tx_body!(|conn| insert_first_api_key_row(conn, key)))
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

    async fn revoke_api_key(&self, user_id: &str, id: &str, at: i64) -> Result<bool, StorageError> {
        let changed = self
            .write(tx_body!(|conn| execute(
                conn,
                sqlx::query(
                    "UPDATE api_keys SET revoked_at = $1 \
                     WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL",
                )
                .bind(at)
                .bind(id)
                .bind(user_id)
            )))
            .await?;
        Ok(changed == 1)
    }

    async fn insert_vault(&self, vault: &VaultRecord) -> Result<(), StorageError> {
        self.write(tx_body!(|conn| insert_vault_row(conn, vault)))
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

    async fn delete_vault(&self, id: &str, at: i64) -> Result<bool, StorageError> {
        let changed = self
            .write(tx_body!(|conn| execute(
                conn,
                sqlx::query(
                    "UPDATE vaults SET deleted_at = $1 WHERE id = $2 AND deleted_at IS NULL"
                )
                .bind(at)
                .bind(id)
            )))
            .await?;
        Ok(changed == 1)
    }

    async fn set_vault_custody(
        &self,
        id: &str,
        custody: &VaultCustodyRecord,
    ) -> Result<bool, StorageError> {
        let providers = to_json("vaults", &custody.providers)?;
        let providers = providers.as_str();
        // The `mpc_custody IS NULL` guard makes setting a mode a compare-and-set: under READ
        // COMMITTED the second of two concurrent updates re-checks it after the first commits.
        let changed = self
            .write(tx_body!(|conn| execute(
                conn,
                sqlx::query(
                    "UPDATE vaults SET mpc_custody = $1, mpc_threshold = $2, mpc_providers = $3 \
                     WHERE id = $4 AND deleted_at IS NULL AND mpc_custody IS NULL",
                )
                .bind(&custody.mode)
                .bind(i64::from(custody.threshold))
                .bind(providers)
                .bind(id)
            )))
            .await?;
        Ok(changed == 1)
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

    async fn put_version(&self, new: &NewVersion) -> Result<VersionRecord, StorageError> {
        self.write(tx_body!(|conn| put_version_rows(conn, new)))
            .await
    }

    async fn get_version(
        &self,
        vault_id: &str,
        path: &str,
        version: Option<u64>,
    ) -> Result<Option<(VersionRecord, Vec<ShareRecord>)>, StorageError> {
        // The version and its shares are read in one snapshot (REPEATABLE READ, read only), so
        // a read never pairs a version with shares of another state.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await?;
        let row = match version {
            Some(n) => {
                sqlx::query(&format!(
                    "SELECT {VERSION_COLUMNS} FROM secret_versions v JOIN secrets s ON s.id = v.secret_id \
                     WHERE s.vault_id = $1 AND s.path = $2 AND v.version = $3"
                ))
                .bind(vault_id)
                .bind(path)
                .bind(to_i64(n)?)
                .fetch_optional(&mut *tx)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {VERSION_COLUMNS} FROM secret_versions v JOIN secrets s ON s.id = v.secret_id \
                     WHERE s.vault_id = $1 AND s.path = $2 ORDER BY v.version DESC LIMIT 1"
                ))
                .bind(vault_id)
                .bind(path)
                .fetch_optional(&mut *tx)
                .await?
            }
        };
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(None);
        };
        let record = version_of(&row)?;
        let shares = sqlx::query(
            "SELECT slot, provider, blob FROM secret_dek_shares WHERE secret_version_id = $1 \
             ORDER BY slot",
        )
        .bind(&record.version_id)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| {
            let slot: i64 = r.try_get("slot")?;
            Ok(ShareRecord {
                slot: u8::try_from(slot).map_err(|_| StorageError::Corrupt {
                    table: "secret_dek_shares",
                    reason: format!("slot {slot}"),
                })?,
                provider: r.try_get("provider")?,
                blob: r.try_get("blob")?,
            })
        })
        .collect::<Result<Vec<_>, StorageError>>()?;
        tx.rollback().await?;
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

    async fn disable_version(&self, version_id: &str) -> Result<bool, StorageError> {
        let changed = self
            .write(tx_body!(|conn| execute(
                conn,
                sqlx::query(
                    "UPDATE secret_versions SET disabled = TRUE WHERE id = $1 AND NOT deleted"
                )
                .bind(version_id)
            )))
            .await?;
        Ok(changed == 1)
    }

    async fn delete_secret(&self, vault_id: &str, path: &str) -> Result<bool, StorageError> {
        let changed = self
            .write(tx_body!(|conn| execute(
                conn,
                sqlx::query(
                    "UPDATE secret_versions SET deleted = TRUE WHERE NOT deleted AND secret_id = \
                     (SELECT id FROM secrets WHERE vault_id = $1 AND path = $2)",
                )
                .bind(vault_id)
                .bind(path)
            )))
            .await?;
        Ok(changed > 0)
    }

    async fn record_access(&self, version_id: &str) -> Result<bool, StorageError> {
        // One conditional UPDATE: the row lock makes a concurrent read re-check the condition
        // after this one commits, so reads on several replicas cannot exceed the maximum.
        let changed = self
            .write(tx_body!(|conn| execute(
                conn,
                sqlx::query(
                    "UPDATE secret_versions SET access_count = access_count + 1 WHERE id = $1 \
                     AND (max_access_count IS NULL OR access_count < max_access_count)",
                )
                .bind(version_id)
            )))
            .await?;
        Ok(changed == 1)
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
