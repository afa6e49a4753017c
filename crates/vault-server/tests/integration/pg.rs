//! A throwaway PostgreSQL cluster for one test: `initdb` in a temporary directory, `pg_ctl
//! start` on a free 127.0.0.1 port with its unix socket in the same directory, stopped and
//! removed on drop. No test uses a server it did not start.
//!
//! initdb and postgres refuse to run as root, and the tests run as root here and in CI: then the
//! cluster runs as the `postgres` system user (created by the Debian package) through `runuser`,
//! with the temporary directory handed to it. PostgreSQL missing is a test failure naming the
//! setup script, never a skip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use vault_server::PostgresOptions;

/// The script that installs PostgreSQL on a fresh machine.
const SETUP: &str = "scripts/setup/50-postgresql.sh";

/// The superuser initdb creates; the cluster trusts local connections, so it has no password.
const SUPERUSER: &str = "vault";

pub(crate) struct PgCluster {
    bin: PathBuf,
    /// `<dir>/data` is the cluster, `<dir>` also holds the socket and the server log.
    dir: tempfile::TempDir,
    port: u16,
    as_postgres: bool,
}

/// The newest installed server's binary directory (`/usr/lib/postgresql/<major>/bin`).
fn postgres_bin() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((major, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): run {SETUP} \
             (the test suite's scripts/test runs it first)"
        ),
    }
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    // The owner of a directory this process just created is its effective user.
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// A port nobody listens on right now (the OS picks it; the small race until postgres binds it
/// is covered by retrying the start).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl PgCluster {
    /// Creates and starts a cluster; panics with the reason (and the server log) if it cannot.
    pub(crate) fn start() -> PgCluster {
        let bin = postgres_bin();
        let as_postgres = is_root();
        let dir = tempfile::Builder::new()
            .prefix("mpc-vault-pg-")
            .tempdir()
            .unwrap();
        if as_postgres {
            let uid = user_id("postgres");
            std::os::unix::fs::chown(dir.path(), Some(uid), None).unwrap();
        }
        let mut cluster = PgCluster {
            bin,
            dir,
            port: 0,
            as_postgres,
        };
        let data = cluster.data_dir();
        cluster.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "-E",
                "UTF8",
                // A test cluster: skipping initdb's fsyncs saves seconds; the server itself
                // still syncs its commits.
                "--no-sync",
            ],
        );
        let mut last_error = String::new();
        for _ in 0..5 {
            cluster.port = free_port();
            let options = format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
                cluster.port,
                cluster.dir.path().display()
            );
            let log = cluster.dir.path().join("server.log");
            let mut command = cluster.command("pg_ctl");
            command.args([
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ]);
            let out = output(&mut command);
            if out.status.success() {
                return cluster;
            }
            last_error = format!(
                "{}\n{}\nserver log:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        panic!("pg_ctl start failed 5 times: {last_error}");
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

    fn run(&self, program: &str, args: &[&str]) {
        let out = output(self.command(program).args(args));
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A client tool (`pg_dump`, `pg_restore`) from the same installation.
    pub(crate) fn client_tool(&self, program: &str) -> Command {
        Command::new(self.bin.join(program))
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The URL of a database in this cluster.
    pub(crate) fn url(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{database}", self.port)
    }

    pub(crate) fn superuser(&self) -> &'static str {
        SUPERUSER
    }

    /// Creates an empty database and returns its connection settings.
    pub(crate) async fn database(&self, name: &str) -> PostgresOptions {
        use sqlx::Connection as _;
        let mut admin = sqlx::PgConnection::connect(&self.url("postgres"))
            .await
            .unwrap();
        // The name is the test's own constant, not input: quoting it is enough.
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        PostgresOptions::parse(&self.url(name))
            .unwrap()
            .acquire_timeout(Duration::from_secs(30))
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // `immediate`: nothing in a test cluster needs a clean shutdown, and it is fast. The
        // temporary directory is removed after this, by its own drop.
        let data = self.data_dir();
        let _ = output(self.command("pg_ctl").args([
            "-D",
            data.to_str().unwrap_or_default(),
            "-m",
            "immediate",
            "-w",
            "stop",
        ]));
    }
}

fn output(command: &mut Command) -> std::process::Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e} (see {SETUP})"))
}

fn user_id(name: &str) -> u32 {
    let out = output(Command::new("id").args(["-u", name]));
    assert!(
        out.status.success(),
        "there is no `{name}` user to run PostgreSQL as: run {SETUP}"
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// A path as `&str` (the tests' temporary paths are ASCII).
pub(crate) fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}
