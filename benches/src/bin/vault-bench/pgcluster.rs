//! PostgreSQL for the `pg-*` scenarios: a throwaway cluster that vault-bench starts itself, or
//! a server given with `--database-url`, with one fresh database per scenario, dropped after.
//!
//! The throwaway cluster is `initdb` in a temporary directory and `pg_ctl start` on a free
//! 127.0.0.1 port with its unix socket in the same directory, stopped and removed on drop (the
//! same recipe as vault-server's storage tests, written again here: a benchmark must not depend
//! on test code). Its commits are durable: `fsync`, `synchronous_commit` and `full_page_writes`
//! are set on explicitly, and every scenario reads them back into its results.
//!
//! initdb and postgres refuse to run as root: as root, the cluster runs as the `postgres`
//! system user (created by the Debian package) through `runuser`, with the temporary directory
//! handed to it. PostgreSQL missing is an error naming the setup script.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use sqlx::Connection as _;
use vault_server::PostgresOptions;

use crate::results::{PgSettings, WalActivity};

/// The script that installs PostgreSQL on a fresh machine.
pub(crate) const SETUP: &str = "scripts/setup/50-postgresql.sh";

/// The superuser initdb creates; the cluster trusts local connections, so it has no password.
const SUPERUSER: &str = "vault";

/// The cluster's server settings, passed to `postgres` on its command line. Durability is
/// spelled out rather than left to the defaults, so that the figures cannot silently come from
/// a cluster that does not sync its commits. `max_connections` leaves room for a large
/// `--database-max-connections` plus the admin connection.
const CLUSTER_SETTINGS: [(&str, &str); 5] = [
    ("fsync", "on"),
    ("synchronous_commit", "on"),
    ("full_page_writes", "on"),
    ("listen_addresses", "127.0.0.1"),
    ("max_connections", "300"),
];

/// The settings every PostgreSQL scenario records: durability, WAL flushing and grouping,
/// checkpoints, memory.
const RECORDED_SETTINGS: [&str; 13] = [
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_sync_method",
    "wal_level",
    "commit_delay",
    "commit_siblings",
    "wal_writer_delay",
    "wal_buffers",
    "checkpoint_timeout",
    "max_wal_size",
    "shared_buffers",
    "max_connections",
];

/// Why PostgreSQL could not be started or used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PgError {
    /// No server binaries.
    #[error(
        "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): run {SETUP}, or \
         give --database-url"
    )]
    NotInstalled,
    /// Running as root, but there is no unprivileged user to run the cluster as.
    #[error("there is no `postgres` system user to run the throwaway cluster as: run {SETUP}")]
    NoPostgresUser,
    /// The temporary directory or a process could not be created.
    #[error("throwaway PostgreSQL cluster: {0}")]
    Io(#[from] std::io::Error),
    /// `initdb` or `pg_ctl` failed; the detail holds its output (and the server log).
    #[error("throwaway PostgreSQL cluster: {program} failed: {detail}")]
    Command {
        /// The program.
        program: &'static str,
        /// What it said.
        detail: String,
    },
    /// A statement on the admin connection failed.
    #[error("PostgreSQL {server}: {source}")]
    Sql {
        /// The server, without its password.
        server: String,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// `--database-url` is not a usable URL; the message never repeats it (it may hold a
    /// password).
    #[error("--database-url: {0}")]
    Url(String),
    /// The throwaway cluster came up without durable commits (it never should).
    #[error("throwaway PostgreSQL cluster: commits are not durable: {0:?}")]
    NotDurable(BTreeMap<String, String>),
}

/// A running throwaway cluster; dropping it stops the server and deletes its files.
struct Cluster {
    bin: PathBuf,
    /// `<dir>/data` is the cluster, `<dir>` also holds the socket and the server log.
    dir: tempfile::TempDir,
    port: u16,
    as_postgres: bool,
    /// `PostgreSQL NN` from the binary directory, for the results.
    major: String,
}

/// Where the Debian packages install the server binaries, one directory per major version.
const INSTALL_ROOT: &str = "/usr/lib/postgresql";

/// The newest installed server's major version and binary directory
/// (`/usr/lib/postgresql/<major>/bin`).
fn postgres_bin() -> Result<(u32, PathBuf), PgError> {
    postgres_bin_in(Path::new(INSTALL_ROOT))
}

fn postgres_bin_in(root: &Path) -> Result<(u32, PathBuf), PgError> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").exists() && bin.join("pg_ctl").exists()).then_some((major, bin))
        })
        .collect();
    found.sort();
    found.pop().ok_or(PgError::NotInstalled)
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    // /proc/self belongs to this process's effective user.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn user_id(name: &str) -> Result<u32, PgError> {
    let out = Command::new("id").args(["-u", name]).output()?;
    if !out.status.success() {
        return Err(PgError::NoPostgresUser);
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| PgError::NoPostgresUser)
}

/// A port nobody listens on right now (the OS picks it; the small race until postgres binds it
/// is covered by retrying the start).
fn free_port() -> Result<u16, PgError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A path as UTF-8 for a command line (temporary directories are ASCII; anything else is
/// refused rather than mangled).
fn utf8(path: &Path) -> Result<&str, PgError> {
    path.to_str().ok_or_else(|| {
        PgError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is not UTF-8", path.display()),
        ))
    })
}

fn output_text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )
}

/// Checks, before any scenario runs, that a throwaway cluster can be started: the binaries
/// are installed and, as root, the `postgres` user exists. A suite then fails at once rather
/// than after its SQLite scenarios.
pub(crate) fn preflight() -> Result<(), PgError> {
    postgres_bin()?;
    if is_root() {
        user_id("postgres")?;
    }
    Ok(())
}

impl Cluster {
    /// Creates and starts a cluster.
    fn start() -> Result<Cluster, PgError> {
        let (major, bin) = postgres_bin()?;
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("vault-bench-pg-")
            .tempdir()?;
        if as_postgres {
            std::os::unix::fs::chown(dir.path(), Some(user_id("postgres")?), None)?;
        }
        let mut cluster = Cluster {
            bin,
            dir,
            port: 0,
            as_postgres,
            major: format!("PostgreSQL {major}"),
        };
        let data = cluster.data_dir();
        let out = cluster
            .command("initdb")
            .args(["-D", utf8(&data)?, "-U", SUPERUSER, "--auth=trust"])
            // initdb's own fsyncs of the template files are skipped: they only protect the
            // cluster's creation, which a crash would simply redo. The server syncs every
            // commit (CLUSTER_SETTINGS).
            .args(["-E", "UTF8", "--no-sync"])
            .output()?;
        if !out.status.success() {
            return Err(PgError::Command {
                program: "initdb",
                detail: output_text(&out),
            });
        }
        let log = cluster.dir.path().join("server.log");
        let mut last_error = String::new();
        for _ in 0..5 {
            cluster.port = free_port()?;
            let mut options = format!("-p {} -k {}", cluster.port, utf8(cluster.dir.path())?);
            for (name, value) in CLUSTER_SETTINGS {
                options.push_str(&format!(" -c {name}={value}"));
            }
            let out = cluster
                .command("pg_ctl")
                .args(["-D", utf8(&data)?, "-l", utf8(&log)?, "-o", &options])
                .args(["-w", "-t", "60", "start"])
                .output()?;
            if out.status.success() {
                return Ok(cluster);
            }
            last_error = format!(
                "{}\nserver log:\n{}",
                output_text(&out),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        Err(PgError::Command {
            program: "pg_ctl start (5 attempts)",
            detail: last_error,
        })
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A command for one of the cluster's binaries, as the `postgres` user when we are root.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    /// The URL of a database in this cluster (no password: the cluster trusts local clients).
    fn url(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // `immediate`: the cluster is deleted next, so a clean shutdown would only cost time.
        // The temporary directory is removed after this, by its own drop.
        let data = self.data_dir();
        if let Some(data) = data.to_str() {
            let _ = self
                .command("pg_ctl")
                .args(["-D", data, "-m", "immediate", "-w", "stop"])
                .output();
        }
    }
}

/// A fresh database for one scenario.
#[derive(Debug)]
pub(crate) struct Database {
    /// Its name (generated: `vault_bench_<pid>_<n>`).
    pub(crate) name: String,
    /// What the in-process server connects with.
    pub(crate) options: PostgresOptions,
    /// What the scenario records.
    pub(crate) settings: PgSettings,
}

/// The PostgreSQL server the `pg-*` scenarios run on.
pub(crate) struct Postgres {
    /// The throwaway cluster, or `None` for a `--database-url` server.
    cluster: Option<Cluster>,
    /// The database vault-bench connects to for `CREATE DATABASE`, `DROP DATABASE` and
    /// `CHECKPOINT`. It may hold a password: never formatted.
    admin_url: url::Url,
    /// The server for the results and messages, without a password.
    description: String,
    /// Databases created so far, for unique names.
    created: u32,
}

impl fmt::Debug for Postgres {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The admin URL may hold a password: only the redacted description is formatted.
        f.debug_struct("Postgres")
            .field("server", &self.description)
            .finish_non_exhaustive()
    }
}

/// `postgres://user@host:port/database`, without the password.
fn redacted(url: &url::Url) -> String {
    format!(
        "postgres://{}@{}:{}{}",
        url.username(),
        url.host_str().unwrap_or(""),
        url.port().unwrap_or(5432),
        url.path()
    )
}

fn parse_url(text: &str) -> Result<url::Url, PgError> {
    let url = url::Url::parse(text).map_err(|e| {
        PgError::Url(format!(
            "not a URL ({e}); use postgres://user:password@host:port/database"
        ))
    })?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(PgError::Url(
            "the scheme must be postgres:// or postgresql://".into(),
        ));
    }
    Ok(url)
}

impl Postgres {
    /// Starts a throwaway cluster.
    pub(crate) fn throwaway() -> Result<Postgres, PgError> {
        let cluster = Cluster::start()?;
        let admin_url = parse_url(&cluster.url("postgres"))?;
        let description = format!(
            "throwaway cluster ({}, initdb in {}, port {})",
            cluster.major,
            cluster.dir.path().display(),
            cluster.port
        );
        Ok(Postgres {
            cluster: Some(cluster),
            admin_url,
            description,
            created: 0,
        })
    }

    /// Uses the server at `url`; its database is only the one vault-bench connects to for
    /// creating and dropping the scenarios' databases (the user needs `CREATEDB`).
    pub(crate) fn external(url: &str) -> Result<Postgres, PgError> {
        let admin_url = parse_url(url)?;
        let description = format!("--database-url {}", redacted(&admin_url));
        Ok(Postgres {
            cluster: None,
            admin_url,
            description,
            created: 0,
        })
    }

    fn sql_error(&self, source: sqlx::Error) -> PgError {
        PgError::Sql {
            server: self.description.clone(),
            source,
        }
    }

    async fn admin(&self) -> Result<sqlx::PgConnection, PgError> {
        sqlx::PgConnection::connect(self.admin_url.as_str())
            .await
            .map_err(|e| self.sql_error(e))
    }

    /// Creates an empty database, checkpoints, and reads the server's settings back.
    /// `max_connections` is the in-process server's pool size (`None`: the server's default).
    pub(crate) async fn fresh_database(
        &mut self,
        max_connections: Option<u32>,
    ) -> Result<Database, PgError> {
        self.created += 1;
        let name = format!("vault_bench_{}_{}", std::process::id(), self.created);
        let mut admin = self.admin().await?;
        // The name is generated above from digits and underscores: quoting it is enough.
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .map_err(|e| self.sql_error(e))?;
        // A checkpoint now, so that the previous scenario's writes are not flushed during this
        // one. It needs privileges a --database-url user may lack: then it is recorded as not
        // done, and the run goes on.
        let checkpoint_before_run = sqlx::query("CHECKPOINT").execute(&mut admin).await.is_ok();
        let version: String = sqlx::query_scalar("SELECT version()")
            .fetch_one(&mut admin)
            .await
            .map_err(|e| self.sql_error(e))?;
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY($1)",
        )
        .bind(RECORDED_SETTINGS.as_slice())
        .fetch_all(&mut admin)
        .await
        .map_err(|e| self.sql_error(e))?;
        let _ = admin.close().await;

        let mut url = self.admin_url.clone();
        url.set_path(&format!("/{name}"));
        let mut options = PostgresOptions::parse(url.as_str())
            .map_err(|e| PgError::Url(e.to_string()))?
            // A 64-worker run against a 10-connection pool queues in the pool: a request may
            // wait behind several others' commits, well under this.
            .acquire_timeout(Duration::from_secs(30));
        if let Some(max) = max_connections {
            options = options.max_connections(max);
        }
        let settings = PgSettings {
            server: self.description.clone(),
            database: name.clone(),
            version,
            pool_max_connections: options.get_max_connections(),
            checkpoint_before_run,
            settings: rows.into_iter().collect(),
            wal_in_window: None,
        };
        if self.cluster.is_some() && !settings.durable() {
            return Err(PgError::NotDurable(settings.settings));
        }
        Ok(Database {
            name,
            options,
            settings,
        })
    }

    /// Drops a scenario's database (the in-process server using it has stopped; `FORCE`
    /// closes any connection its pool left behind).
    pub(crate) async fn drop_database(&self, name: &str) -> Result<(), PgError> {
        let mut admin = self.admin().await?;
        // `name` is one of ours (see `fresh_database`).
        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .execute(&mut admin)
            .await
            .map_err(|e| self.sql_error(e))?;
        let _ = admin.close().await;
        Ok(())
    }
}

impl Postgres {
    /// A probe of the WAL and commit counters for the scenario in `database`.
    pub(crate) fn wal_probe(&self, database: &str) -> WalProbe {
        WalProbe {
            admin_url: self.admin_url.clone(),
            description: self.description.clone(),
            database: database.to_owned(),
        }
    }
}

/// Reads `pg_stat_wal` and the scenario database's `pg_stat_database` row at both ends of the
/// measured window, from a task beside the load.
pub(crate) struct WalProbe {
    /// May hold a password: never formatted.
    admin_url: url::Url,
    description: String,
    database: String,
}

impl fmt::Debug for WalProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The admin URL may hold a password.
        f.debug_struct("WalProbe")
            .field("server", &self.description)
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

/// One reading: WAL syncs, WAL writes, WAL bytes, commits.
type Counters = (i64, i64, i64, i64);

impl WalProbe {
    /// The counters' growth between `from` and `end`. The connection is opened before the
    /// window starts, so that opening it does not count.
    pub(crate) async fn measure(
        self,
        from: tokio::time::Instant,
        end: tokio::time::Instant,
    ) -> Result<WalActivity, PgError> {
        let mut conn = sqlx::PgConnection::connect(self.admin_url.as_str())
            .await
            .map_err(|e| self.sql_error(e))?;
        tokio::time::sleep_until(from).await;
        let before = self.read(&mut conn).await?;
        tokio::time::sleep_until(end).await;
        let after = self.read(&mut conn).await?;
        let _ = conn.close().await;
        // The counters only grow (nothing resets them during a run); a negative difference
        // would mean someone did, and is reported as zero rather than wrapped.
        let grew = |a: i64, b: i64| u64::try_from(b.saturating_sub(a)).unwrap_or(0);
        Ok(WalActivity {
            wal_syncs: grew(before.0, after.0),
            wal_writes: grew(before.1, after.1),
            wal_bytes: grew(before.2, after.2),
            commits: grew(before.3, after.3),
            requests_per_wal_sync: None,
        })
    }

    async fn read(&self, conn: &mut sqlx::PgConnection) -> Result<Counters, PgError> {
        // Each statement runs in its own transaction, so the statistics snapshot is fresh.
        sqlx::query_as(
            "SELECT w.wal_sync, w.wal_write, w.wal_bytes::bigint, d.xact_commit \
             FROM pg_stat_wal w, pg_stat_database d WHERE d.datname = $1",
        )
        .bind(&self.database)
        .fetch_one(conn)
        .await
        .map_err(|e| self.sql_error(e))
    }

    fn sql_error(&self, source: sqlx::Error) -> PgError {
        PgError::Sql {
            server: self.description.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_are_checked_and_never_formatted_with_their_password() {
        let pg = Postgres::external("postgres://bench:s3cret@127.0.0.1:5433/postgres").unwrap();
        let debug = format!("{pg:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(
            debug.contains("postgres://bench@127.0.0.1:5433/postgres"),
            "{debug}"
        );
        assert!(matches!(
            Postgres::external("mysql://bench@127.0.0.1/x"),
            Err(PgError::Url(_))
        ));
        let err = Postgres::external("postgres://bench:s3cret@[::1/x").unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }

    #[test]
    fn missing_binaries_name_the_setup_script() {
        let empty = tempfile::tempdir().unwrap();
        let err = postgres_bin_in(empty.path()).unwrap_err();
        assert!(matches!(err, PgError::NotInstalled));
        assert!(err.to_string().contains(SETUP), "{err}");
        // A version directory without the binaries does not count; the newest complete one
        // wins.
        for (major, complete) in [(13, true), (15, true), (17, false)] {
            let bin = empty.path().join(major.to_string()).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            if complete {
                std::fs::write(bin.join("initdb"), "").unwrap();
                std::fs::write(bin.join("pg_ctl"), "").unwrap();
            }
        }
        let (major, bin) = postgres_bin_in(empty.path()).unwrap();
        assert_eq!(major, 15);
        assert_eq!(bin, empty.path().join("15").join("bin"));
        // This machine has them (scripts/setup/50-postgresql.sh).
        preflight().unwrap();
    }

    /// The real thing: a throwaway cluster comes up durable, hands out fresh databases the
    /// server can use, records its settings, drops the databases and goes away on drop.
    #[test]
    fn a_throwaway_cluster_is_durable_and_hands_out_fresh_databases() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut pg = Postgres::throwaway().unwrap();
        let data = pg.cluster.as_ref().unwrap().data_dir();
        assert!(data.join("PG_VERSION").exists());
        runtime.block_on(async {
            let first = pg.fresh_database(Some(3)).await.unwrap();
            let second = pg.fresh_database(None).await.unwrap();
            assert_ne!(first.name, second.name);
            let s = &first.settings;
            assert!(s.durable(), "{s:?}");
            assert_eq!(
                s.settings.get("full_page_writes").map(String::as_str),
                Some("on")
            );
            assert_eq!(s.settings.len(), RECORDED_SETTINGS.len(), "{s:?}");
            assert!(s.checkpoint_before_run);
            assert!(s.version.starts_with("PostgreSQL"), "{}", s.version);
            assert_eq!(s.pool_max_connections, 3);
            assert_eq!(second.settings.pool_max_connections, 10);
            // The server's connection string points at the fresh database.
            assert!(
                first
                    .options
                    .to_string()
                    .ends_with(&format!("/{}", first.name)),
                "{}",
                first.options
            );
            let mut conn =
                sqlx::PgConnection::connect(&pg.cluster.as_ref().unwrap().url(&first.name))
                    .await
                    .unwrap();
            let one: i32 = sqlx::query_scalar("SELECT 1")
                .fetch_one(&mut conn)
                .await
                .unwrap();
            assert_eq!(one, 1);
            conn.close().await.unwrap();
            pg.drop_database(&first.name).await.unwrap();
            pg.drop_database(&second.name).await.unwrap();
            let mut admin = pg.admin().await.unwrap();
            let left: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_database WHERE datname LIKE 'vault_bench_%'",
            )
            .fetch_one(&mut admin)
            .await
            .unwrap();
            assert_eq!(left, 0);
        });
        drop(pg);
        assert!(!data.exists(), "the cluster's files outlived it");
    }
}
