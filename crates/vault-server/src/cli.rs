//! The command line: `serve` (the default), `config check` and `backup`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tokio::net::TcpListener;

use crate::app::{ServerError, VaultServer};
use crate::config::{Config, ConfigError, LogFormat};

/// `vault-server`: the mpc-vault HTTP API.
///
/// # Example
///
/// ```
/// use clap::Parser as _;
/// use vault_server::{Cli, Command, ConfigCommand};
///
/// let cli = Cli::parse_from(["vault-server", "--config", "vault.toml", "config", "check"]);
/// assert!(matches!(cli.command, Some(Command::Config { command: ConfigCommand::Check })));
/// ```
#[derive(Debug, Parser)]
#[command(name = "vault-server", version, about)]
#[non_exhaustive]
pub struct Cli {
    /// A TOML configuration file; without one the defaults apply (127.0.0.1:8443,
    /// ./mpc-vault-data, three local development providers). `MPCVAULT_*` variables override it.
    #[arg(long, short, env = "MPCVAULT_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
///
/// # Example
///
/// ```
/// use clap::Parser as _;
/// let cli = vault_server::Cli::parse_from(["vault-server", "serve"]);
/// assert!(matches!(cli.command, Some(vault_server::Command::Serve)));
/// ```
#[derive(Debug, Subcommand)]
#[non_exhaustive]
pub enum Command {
    /// Run the server until SIGINT or SIGTERM.
    Serve,
    /// Write a consistent copy of the SQLite database to a new file, safely while a server
    /// runs on it. Back up the JWT signing key and the local providers' keys with it (see the
    /// README's "Storage" section); for PostgreSQL use `pg_dump`.
    Backup {
        /// The file to write; it must not exist.
        #[arg(long)]
        to: PathBuf,
    },
    /// Configuration tools.
    Config {
        /// The configuration tool.
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

/// `config` subcommands.
///
/// # Example
///
/// ```
/// use clap::Parser as _;
/// let cli = vault_server::Cli::parse_from(["vault-server", "config", "check"]);
/// assert!(matches!(cli.command, Some(vault_server::Command::Config { .. })));
/// ```
#[derive(Debug, Subcommand)]
#[non_exhaustive]
pub enum ConfigCommand {
    /// Load and validate the configuration, print a summary, and exit.
    Check,
}

/// Why the command failed.
///
/// # Example
///
/// ```
/// let err = vault_server::RunError::from(vault_server::ConfigError::Parse("bad".into()));
/// assert_eq!(err.to_string(), "invalid configuration: bad");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The server failed to start or serve.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// The backup could not be written (or this configuration has no SQLite store to back up).
    #[error("backup: {0}")]
    Backup(String),
    /// Writing to stdout failed.
    #[error("stdout: {0}")]
    Stdout(std::io::Error),
}

/// Runs a parsed command line.
///
/// # Errors
///
/// [`RunError`] if the configuration is invalid or the server fails.
///
/// # Example
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use clap::Parser as _;
/// let cli = vault_server::Cli::parse_from(["vault-server", "--config", "/nonexistent.toml", "config", "check"]);
/// assert!(vault_server::run(cli).await.is_err());
/// # }
/// ```
pub async fn run(cli: Cli) -> Result<(), RunError> {
    let env: BTreeMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("MPCVAULT_"))
        .collect();
    let config = Config::load(cli.config.as_deref(), &env)?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Config {
            command: ConfigCommand::Check,
        } => {
            let providers: Vec<String> = config
                .providers()
                .iter()
                .map(|(name, p)| match config.resilience(name) {
                    Some(r) => format!(
                        "{name} ({}, timeout {} ms, {} attempts)",
                        backend_name(p),
                        r.timeout().as_millis(),
                        r.retry_attempts()
                    ),
                    None => format!("{name} ({})", backend_name(p)),
                })
                .collect();
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "configuration OK\n  listen: {}\n  data_dir: {}\n  database: {}\n  max_value_bytes: {}\n  \
                 request_timeout: {} s\n  tls: {}\n  providers: {}",
                config.listen(),
                config.data_dir().display(),
                config.database().map_or_else(
                    || "SQLite (vault.db in data_dir)".to_owned(),
                    ToString::to_string
                ),
                config.max_value_bytes(),
                config.request_timeout().as_secs(),
                config.tls_cert_file().map_or_else(
                    || "off (plain HTTP)".to_owned(),
                    |p| p.display().to_string()
                ),
                providers.join(", ")
            )
            .map_err(RunError::Stdout)?;
            Ok(())
        }
        Command::Backup { to } => backup(&config, &to).await,
        Command::Serve => serve(config).await,
    }
}

/// `vault-server backup --to FILE`: SQLite's `VACUUM INTO` on the configured data directory.
async fn backup(config: &Config, to: &std::path::Path) -> Result<(), RunError> {
    if config.database().is_some() {
        return Err(RunError::Backup(
            "this server stores its data in PostgreSQL: back it up with pg_dump (see the README)"
                .into(),
        ));
    }
    if to.exists() {
        return Err(RunError::Backup(format!("{} exists already", to.display())));
    }
    let file = crate::storage::SqliteStorage::file_in(config.data_dir());
    if !file.exists() {
        return Err(RunError::Backup(format!(
            "there is no database at {}",
            file.display()
        )));
    }
    // The handle needs the data directory's audit key (it seals any event appended through
    // it); a backup appends none, but the key is the real one, never a stand-in.
    let audit_key = crate::audit::AuditKey::load_or_create(config.data_dir())
        .map_err(|e| RunError::Backup(e.to_string()))?;
    let storage =
        crate::storage::SqliteStorage::open_existing(&file, std::sync::Arc::new(audit_key))
            .await
            .map_err(|e| RunError::Backup(e.to_string()))?;
    let written = storage.backup_to(to).await;
    crate::storage::Storage::close(&storage).await;
    written.map_err(|e| RunError::Backup(e.to_string()))?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "backed up {} to {}\nAlso keep a copy of {}, {}, {} and of the local providers' key \
         directory (default {}).",
        file.display(),
        to.display(),
        config.data_dir().join("jwt-ed25519.seed").display(),
        config.data_dir().join("audit-hmac.key").display(),
        config.data_dir().join("audit-ed25519.seed").display(),
        config.data_dir().join("keys").display()
    )
    .map_err(RunError::Stdout)?;
    Ok(())
}

fn backend_name(p: &crate::config::ProviderConfig) -> &'static str {
    match p {
        crate::config::ProviderConfig::Local { .. } => "local",
        crate::config::ProviderConfig::Pkcs11 { .. } => "pkcs11",
        crate::config::ProviderConfig::Aws { .. } => "aws",
        crate::config::ProviderConfig::Gcp { .. } => "gcp",
        crate::config::ProviderConfig::Azure { .. } => "azure",
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second initialisation (tests calling `run` twice) keeps the first subscriber.
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

async fn serve(config: Config) -> Result<(), RunError> {
    init_tracing(config.log_format());
    let server = VaultServer::open(config).await?;
    if let Some(key) = server.bootstrap_admin_key().await? {
        // Printed once, to stdout only: the key must never reach the logs.
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "\nFirst start: created the admin API key. It is shown only this once; store it now:\n\n    {}\n",
            key.expose_secret()
        )
        .map_err(RunError::Stdout)?;
        out.flush().map_err(RunError::Stdout)?;
    }
    let listener = TcpListener::bind(server.config().listen())
        .await
        .map_err(ServerError::Io)?;
    let scheme = if server.config().tls_cert_file().is_some() {
        "HTTPS"
    } else {
        "plain HTTP"
    };
    tracing::info!(
        address = %listener.local_addr().map_err(ServerError::Io)?,
        data_dir = %server.config().data_dir().display(),
        "mpc-vault server listening ({scheme})"
    );
    server.serve(listener, shutdown_signal()).await?;
    tracing::info!("server stopped");
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown signal received; finishing requests in flight");
}
