//! The embedded SQLite store: WAL journal, `synchronous = FULL` (an acknowledged commit is on
//! disk before the answer), foreign keys on, migrations embedded at compile time.
//!
//! Queries use `$n` placeholders and standard SQL only, so the PostgreSQL store can share them.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

use super::{
    ApiKeyRecord, CmekJobRecord, CmekJobStatus, NewVersion, ShareRecord, Storage, StorageError,
    VaultCustodyRecord, VaultRecord, VersionRecord,
};

/// The database file inside the data directory.
const DB_FILE: &str = "vault.db";

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
    pool: SqlitePool,
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
        let options = SqliteConnectOptions::new()
            .filename(data_dir.join(DB_FILE))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL syncs the WAL on every commit: an acknowledged write survives power loss.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(SqliteStorage { pool })
    }
}

/// Creates the data directory readable by its owner only: it holds the database, the JWT
/// signing key and (by default) the local providers' KEKs.
#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
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

fn version_of(row: &SqliteRow) -> Result<VersionRecord, StorageError> {
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
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        deleted: row.try_get::<i64, _>("deleted")? != 0,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
        cmek_fingerprint: row.try_get("cmek_fingerprint")?,
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
    .collect()
}

/// Live secrets of the organisation: in a vault that is not deleted, with a version that is
/// not deleted.
const LIVE_SECRETS: &str = "SELECT COUNT(*) FROM secrets s JOIN vaults va ON va.id = s.vault_id \
     WHERE va.deleted_at IS NULL AND EXISTS \
     (SELECT 1 FROM secret_versions lv WHERE lv.secret_id = s.id AND lv.deleted = 0)";

/// The columns `version()` reads: a version joined with its secret.
const VERSION_COLUMNS: &str = "s.id AS secret_id, v.id AS version_id, s.vault_id AS vault_id, \
     s.path AS path, v.version AS version, v.secret_type AS secret_type, \
     v.custody_mode AS custody_mode, v.envelope AS envelope, v.metadata AS metadata, \
     v.expires_at AS expires_at, v.max_access_count AS max_access_count, \
     v.access_count AS access_count, v.disabled AS disabled, v.deleted AS deleted, \
     v.created_by AS created_by, v.created_at AS created_at, \
     v.cmek_fingerprint AS cmek_fingerprint";

fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

async fn insert_shares(
    tx: &mut Transaction<'_, Sqlite>,
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
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

#[async_trait]
impl Storage for SqliteStorage {
    async fn api_key_count(&self) -> Result<u64, StorageError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM api_keys")
            .fetch_one(&self.pool)
            .await?;
        to_u64("api_keys", n)
    }

    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO api_keys (id, user_id, name, key_hash, key_prefix, vault_scope, \
             created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&key.id)
        .bind(&key.user_id)
        .bind(&key.name)
        .bind(&key.key_hash)
        .bind(&key.key_prefix)
        .bind(
            key.vault_scope
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(|e| StorageError::Corrupt {
                    table: "api_keys",
                    reason: e.to_string(),
                })?,
        )
        .bind(key.created_at)
        .bind(key.revoked_at)
        .execute(&self.pool)
        .await?;
        Ok(())
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
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL",
        )
        .bind(at)
        .bind(id)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_vault_within(
        &self,
        vault: &VaultRecord,
        max_vaults: Option<u64>,
    ) -> Result<(), StorageError> {
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
        // One INSERT … SELECT: SQLite takes the write lock when the statement starts, so the
        // count and the insert are atomic and two creates at the limit cannot both pass.
        let inserted = sqlx::query(
            "INSERT INTO vaults (id, name, description, created_by, created_at, cmek_enabled, \
             mpc_custody, mpc_threshold, mpc_providers) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9 \
             WHERE $10 IS NULL OR (SELECT COUNT(*) FROM vaults WHERE deleted_at IS NULL) < $10",
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
        .execute(&self.pool)
        .await?;
        match (inserted.rows_affected(), max_vaults) {
            (0, Some(limit)) => Err(StorageError::LimitReached {
                resource: "vaults",
                limit,
            }),
            _ => Ok(()),
        }
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
        let done =
            sqlx::query("UPDATE vaults SET deleted_at = $1 WHERE id = $2 AND deleted_at IS NULL")
                .bind(at)
                .bind(id)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_vault_custody(
        &self,
        id: &str,
        custody: &VaultCustodyRecord,
    ) -> Result<bool, StorageError> {
        let providers =
            serde_json::to_string(&custody.providers).map_err(|e| StorageError::Corrupt {
                table: "vaults",
                reason: e.to_string(),
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
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
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
    ) -> Result<VersionRecord, StorageError> {
        let v = &new.version;
        let mut tx = self.pool.begin().await?;
        // The transaction's first statement is a write, so SQLite holds the write lock from
        // here to the commit: the quota count below cannot race another write.
        sqlx::query(
            "INSERT INTO secrets (id, vault_id, path, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (vault_id, path) DO NOTHING",
        )
        .bind(&new.new_secret_id)
        .bind(&v.vault_id)
        .bind(&v.path)
        .bind(v.created_at)
        .execute(&mut *tx)
        .await?;
        let secret_id: String =
            sqlx::query_scalar("SELECT id FROM secrets WHERE vault_id = $1 AND path = $2")
                .bind(&v.vault_id)
                .bind(&v.path)
                .fetch_one(&mut *tx)
                .await?;
        if let Some(limit) = max_secrets {
            let live: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM secret_versions WHERE secret_id = $1 AND deleted = 0)",
            )
            .bind(&secret_id)
            .fetch_one(&mut *tx)
            .await?;
            if !live {
                let count: i64 = sqlx::query_scalar(LIVE_SECRETS).fetch_one(&mut *tx).await?;
                if to_u64("secrets", count)? >= limit {
                    // Dropping the transaction rolls back the secret row inserted above.
                    return Err(StorageError::LimitReached {
                        resource: "secrets",
                        limit,
                    });
                }
            }
        }
        // The CMEK flag comes from the vault in this statement, not from the caller.
        let inserted = sqlx::query(
            "INSERT INTO secret_versions (id, secret_id, version, secret_type, custody_mode, \
             envelope, metadata, expires_at, max_access_count, access_count, disabled, deleted, \
             created_by, created_at, cmek_fingerprint) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
             0, 0, 0, $10, $11, (SELECT cmek_fingerprint FROM vaults WHERE id = $12))",
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
        .bind(&v.vault_id)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Err(StorageError::Conflict),
            Err(e) => return Err(e.into()),
        }
        insert_shares(&mut tx, &v.vault_id, &v.version_id, &new.shares).await?;
        let cmek_fingerprint: Option<String> =
            sqlx::query_scalar("SELECT cmek_fingerprint FROM secret_versions WHERE id = $1")
                .bind(&v.version_id)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        let mut stored = v.clone();
        stored.cmek_fingerprint = cmek_fingerprint;
        stored.secret_id = secret_id;
        stored.access_count = 0;
        stored.disabled = false;
        stored.deleted = false;
        Ok(stored)
    }

    async fn get_version(
        &self,
        vault_id: &str,
        path: &str,
        version: Option<u64>,
    ) -> Result<Option<(VersionRecord, Vec<ShareRecord>)>, StorageError> {
        let row = match version {
            Some(n) => {
                sqlx::query(&format!(
                    "SELECT {VERSION_COLUMNS} FROM secret_versions v JOIN secrets s ON s.id = v.secret_id \
                     WHERE s.vault_id = $1 AND s.path = $2 AND v.version = $3"
                ))
                .bind(vault_id)
                .bind(path)
                .bind(to_i64(n)?)
                .fetch_optional(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {VERSION_COLUMNS} FROM secret_versions v JOIN secrets s ON s.id = v.secret_id \
                     WHERE s.vault_id = $1 AND s.path = $2 ORDER BY v.version DESC LIMIT 1"
                ))
                .bind(vault_id)
                .bind(path)
                .fetch_optional(&self.pool)
                .await?
            }
        };
        let Some(row) = row else { return Ok(None) };
        let record = version_of(&row)?;
        let shares = shares_of(&self.pool, &record.version_id).await?;
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

    async fn disable_version(&self, version_id: &str) -> Result<bool, StorageError> {
        let done =
            sqlx::query("UPDATE secret_versions SET disabled = 1 WHERE id = $1 AND deleted = 0")
                .bind(version_id)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_secret(&self, vault_id: &str, path: &str) -> Result<bool, StorageError> {
        let done = sqlx::query(
            "UPDATE secret_versions SET deleted = 1 WHERE deleted = 0 AND secret_id = \
             (SELECT id FROM secrets WHERE vault_id = $1 AND path = $2)",
        )
        .bind(vault_id)
        .bind(path)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn record_access(&self, version_id: &str) -> Result<bool, StorageError> {
        // One conditional UPDATE: concurrent reads cannot together exceed the maximum.
        let done = sqlx::query(
            "UPDATE secret_versions SET access_count = access_count + 1 WHERE id = $1 \
             AND (max_access_count IS NULL OR access_count < max_access_count)",
        )
        .bind(version_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
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
    ) -> Result<bool, StorageError> {
        let done = sqlx::query(
            "UPDATE vaults SET cmek_fingerprint = $1, cmek_enabled = $2 \
             WHERE id = $3 AND deleted_at IS NULL AND NOT EXISTS (SELECT 1 FROM \
             cmek_rotation_jobs j WHERE j.vault_id = $3 AND j.status IN ('running', 'paused', 'failed'))",
        )
        .bind(fingerprint)
        .bind(i64::from(fingerprint.is_some()))
        .bind(vault_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn create_cmek_job(&self, job: &CmekJobRecord) -> Result<CmekJobRecord, StorageError> {
        let mut tx = self.pool.begin().await?;
        // First statement is the write that moves the vault to the new key (compare-and-set on
        // the old fingerprint), so the rest of the transaction holds the write lock.
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
        tx.commit().await?;
        let mut stored = job.clone();
        stored.status = CmekJobStatus::Running;
        stored.processed = 0;
        stored.total = to_u64("cmek_rotation_jobs", total)?;
        stored.error = None;
        stored.updated_at = job.created_at;
        Ok(stored)
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
    ) -> Result<(), StorageError> {
        sqlx::query(
            "UPDATE cmek_rotation_jobs SET status = $1, error = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(status.as_str())
        .bind(error)
        .bind(crate::time::now_millis())
        .bind(job_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn pause_running_cmek_jobs(&self) -> Result<u64, StorageError> {
        let done = sqlx::query(
            "UPDATE cmek_rotation_jobs SET status = 'paused', error = $1, updated_at = $2 \
             WHERE status = 'running'",
        )
        .bind(
            "the server restarted and CMEK keys are never stored: send the same POST \
             …/cmek-rotate with both keys to resume",
        )
        .bind(crate::time::now_millis())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
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
    ) -> Result<bool, StorageError> {
        let mut tx = self.pool.begin().await?;
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
        tx.commit().await?;
        Ok(true)
    }

    async fn close(&self) {
        // Closing waits for the connections, so the WAL is checkpointed cleanly.
        self.pool.close().await;
    }
}
