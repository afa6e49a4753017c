//! The in-process server: `vault_server::VaultServer` on a temporary data directory with the
//! embedded `local` providers (gcp, aws, azure) and SQLite with durable commits, as configured by
//! default, or a fresh PostgreSQL database (see `pgcluster`), serving plain HTTP on 127.0.0.1
//! from its own Tokio runtime.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use kms_providers::{FaultConfig, FaultInjector, KeyProvider, Latency};
use vault_server::{Config, PostgresOptions, VaultServer};

use crate::scenario::Fault;

/// Why the in-process server could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    /// The temporary directory, the runtime or the socket.
    #[error("in-process server: {0}")]
    Io(#[from] std::io::Error),
    /// `VaultServer::open_instrumented` or the admin key.
    #[error("in-process server: {0}")]
    Server(#[from] vault_server::ServerError),
    /// The server configuration was refused.
    #[error("in-process server configuration: {0}")]
    Config(#[from] vault_server::ConfigError),
    /// The fault injector refused its configuration.
    #[error("fault injector: {0}")]
    Fault(#[from] kms_providers::Error),
    /// The store already had an API key, so none was printed for us.
    #[error("in-process server: the new store unexpectedly had an API key already")]
    NoAdminKey,
}

/// A provider inside a fault injector, shared by the server (which calls it) and the run (which
/// takes it down and reads its counters).
type Injected = Arc<FaultInjector<Arc<dyn KeyProvider>>>;

/// A running in-process server; dropping it stops the server and deletes its data.
pub(crate) struct InProcess {
    addr: SocketAddr,
    api_key: String,
    /// Providers wrapped in a fault injector, by name, to take them down after set-up.
    injectors: Vec<(String, Injected)>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    runtime: Option<tokio::runtime::Runtime>,
    _dir: tempfile::TempDir,
}

impl fmt::Debug for InProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The admin API key is a credential: never formatted.
        f.debug_struct("InProcess")
            .field("addr", &self.addr)
            .field("api_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl InProcess {
    /// Starts a fresh server with `fault` applied to its providers, on a runtime with
    /// `threads` worker threads (the server binary uses one per core), on SQLite in its data
    /// directory or on the (empty) PostgreSQL `database`.
    pub(crate) fn start(
        fault: Fault,
        threads: usize,
        database: Option<PostgresOptions>,
    ) -> Result<InProcess, StartError> {
        let dir = tempfile::Builder::new().prefix("vault-bench-").tempdir()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("vault-server")
            .enable_all()
            .build()?;
        // The rate limit is off: a load run measures the server and its stores, not the
        // per-principal limiter (which would refuse most of a run's requests from one key).
        let mut config = Config::default_config()
            .with_data_dir(dir.path())
            .with_rate_limit(None)?;
        if let Some(database) = database {
            config = config.with_database(database);
        }
        let mut injectors = Vec::new();
        let mut wrap_error = None;
        let (server, api_key, listener) = runtime.block_on(async {
            let server =
                VaultServer::open_instrumented(config, |name, provider| {
                    match injector_for(fault, name, Arc::clone(&provider)) {
                        Ok(Some(injector)) => {
                            injectors.push((name.to_owned(), Arc::clone(&injector)));
                            injector as Arc<dyn KeyProvider>
                        }
                        Ok(None) => provider,
                        Err(e) => {
                            wrap_error = Some(e);
                            provider
                        }
                    }
                })
                .await?;
            let key = server
                .bootstrap_admin_key()
                .await?
                .ok_or(StartError::NoAdminKey)?;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            Ok::<_, StartError>((server, key.expose_secret().to_owned(), listener))
        })?;
        if let Some(e) = wrap_error {
            return Err(StartError::Fault(e));
        }
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        runtime.spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) = server.serve(listener, shutdown).await {
                tracing_free_report(&e);
            }
        });
        Ok(InProcess {
            addr,
            api_key,
            injectors,
            stop: Some(stop),
            runtime: Some(runtime),
            _dir: dir,
        })
    }

    /// Where it listens.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin API key of the fresh store.
    pub(crate) fn api_key(&self) -> &str {
        &self.api_key
    }

    /// Applies the part of `fault` that starts after set-up: a provider going down once the
    /// secrets exist (reads are what the outage scenario measures).
    pub(crate) fn after_setup(&self, fault: Fault) {
        if fault == Fault::AwsDown {
            for (name, injector) in &self.injectors {
                if name == "aws" {
                    injector.set_outage(true);
                }
            }
        }
    }

    /// Calls, errors and so on per injected provider, for the results.
    pub(crate) fn fault_stats(&self) -> Vec<(String, kms_providers::FaultStats)> {
        self.injectors
            .iter()
            .map(|(name, injector)| (name.clone(), injector.stats()))
            .collect()
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(runtime) = self.runtime.take() {
            // Requests in flight were already answered (the run waits for its workers); give
            // the graceful shutdown a moment to close the store, then drop the rest.
            runtime.shutdown_timeout(std::time::Duration::from_secs(5));
        }
    }
}

/// The fault injector for provider `name` under `fault`, if it gets one.
fn injector_for(
    fault: Fault,
    name: &str,
    provider: Arc<dyn KeyProvider>,
) -> Result<Option<Injected>, kms_providers::Error> {
    // Distinct fixed seeds per provider: the jitter sequence is reproducible run to run.
    let seed = name.bytes().fold(0x5eed_u64, |h, b| {
        h.wrapping_mul(31).wrapping_add(u64::from(b))
    });
    let config = match fault {
        Fault::None => return Ok(None),
        Fault::AwsDown if name == "aws" => FaultConfig::new(seed),
        Fault::AwsDown => return Ok(None),
        Fault::Latency => {
            let Some(&(_, base, jitter)) = Fault::LATENCIES.iter().find(|(n, _, _)| *n == name)
            else {
                return Ok(None);
            };
            FaultConfig::new(seed).latency(Latency::Jittered { base, jitter })
        }
    };
    Ok(Some(Arc::new(FaultInjector::new(provider, config)?)))
}

/// The server task has nowhere to return an error to; say it on stderr, since a server that
/// stopped serving explains every error the run will then count.
fn tracing_free_report(e: &vault_server::ServerError) {
    // The load generator's one diagnostic channel is stderr.
    #[allow(clippy::print_stderr)]
    {
        eprintln!("vault-bench: in-process server stopped: {e}");
    }
}
