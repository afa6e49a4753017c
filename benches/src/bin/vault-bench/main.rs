//! `vault-bench`: an HTTP load generator for the mpc-vault server.
//!
//! It drives the JSON API of a running server (`--url`, `--api-key`) or of one it starts in
//! process (`vault_server::VaultServer` on a temporary data directory, `local` providers,
//! SQLite with durable commits, or PostgreSQL: a fresh database per scenario in a throwaway
//! cluster with durable commits, or on the server given with `--database-url`), in closed loop
//! (N workers) or open loop (a fixed arrival rate, latency counted from each request's due
//! time, so a stalled server cannot hide its stalls).
//! Every worker has its own keep-alive connection. Latencies go into HDR histograms; the
//! results are written as `results.json` and rendered as `report.html` with SVG charts.
//!
//! ```text
//! vault-bench suite [--full] [--only SUBSTRING] [--out DIR]      # the built-in scenarios
//! vault-bench run --mix get --concurrency 64 --custody 2of3_multi_hsm --duration 10
//! vault-bench run --store postgres --mix put --concurrency 64              # throwaway cluster
//! vault-bench suite --store postgres --database-url postgres://u:pw@127.0.0.1/postgres
//! vault-bench report target/bench-report/results.json            # re-render the report
//! ```

/// The server binary's allocator (see `vault-server`'s main.rs), so the in-process server
/// is measured as it runs in production.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod client;
mod load;
mod pgcluster;
mod report;
mod results;
mod scenario;
mod server;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::client::Target;
use crate::load::RunError;
use crate::pgcluster::{PgError, Postgres, WalProbe};
use crate::results::{InjectorStats, Machine, PgSettings, Report, ScenarioResult, WalActivity};
use crate::scenario::{Custody, Fault, LoadModel, Mix, Scenario, Store, SuiteTiming};
use crate::server::InProcess;

/// HTTP load generator and benchmark report for mpc-vault.
#[derive(Debug, Parser)]
#[command(name = "vault-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the built-in scenarios (issue 10) and write results.json and report.html.
    Suite {
        /// Longer runs (30 s measured, 5 s warm-up) instead of 5 s + 1 s.
        #[arg(long)]
        full: bool,
        /// Run only scenarios whose name contains this (repeatable).
        #[arg(long)]
        only: Vec<String>,
        /// Run only the scenarios on this store, `sqlite` or `postgres` (default: both: the
        /// suite's PostgreSQL scenarios are the ones named `pg-*`).
        #[arg(long, conflicts_with = "url")]
        store: Option<Store>,
        /// Print the selected scenarios (name and store, tab-separated) and run nothing.
        #[arg(long)]
        list: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Run one scenario described on the command line.
    Run {
        /// `get`, `put`, or `mixNN` (NN = percentage of reads).
        #[arg(long, default_value = "mix90")]
        mix: Mix,
        /// Workers, each with one keep-alive connection.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Open loop at this many requests per second (closed loop when absent).
        #[arg(long)]
        rate: Option<f64>,
        /// `standard`, `2of2_client_custody`, `2of3_multi_hsm` or `2of3_client_custody`.
        #[arg(long, default_value = "standard")]
        custody: Custody,
        /// Secret value size in bytes.
        #[arg(long, default_value_t = scenario::DEFAULT_VALUE_BYTES)]
        value_bytes: usize,
        /// Secrets written before the run for reads to pick from.
        #[arg(long, default_value_t = scenario::DEFAULT_KEYS)]
        keys: usize,
        /// `none`, `aws-down` or `latency` (in-process server only).
        #[arg(long, default_value = "none")]
        fault: Fault,
        /// The in-process server's store: `sqlite` or `postgres`.
        #[arg(long, default_value = "sqlite", conflicts_with = "url")]
        store: Store,
        /// Measured seconds.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Warm-up seconds (same load, not recorded).
        #[arg(long, default_value_t = 2.0)]
        warmup: f64,
        #[command(flatten)]
        common: Common,
    },
    /// Render report.html from an existing results.json (into the same directory).
    Report {
        /// The results file.
        results: PathBuf,
    },
}

#[derive(Debug, Args)]
struct Common {
    /// A running server (`http://host:port`); without it a fresh in-process server is started
    /// for every scenario.
    #[arg(long, requires = "api_key")]
    url: Option<String>,
    /// The API key for `--url` (an admin key: the run creates vaults).
    #[arg(long, env = "VAULT_BENCH_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Where results.json and report.html go.
    #[arg(long, default_value = "target/bench-report")]
    out: PathBuf,
    /// Worker threads of the in-process server (default: one per CPU, as the server binary).
    #[arg(long)]
    server_threads: Option<usize>,
    /// Worker threads of the load generator.
    #[arg(long, default_value_t = 1)]
    client_threads: usize,
    /// The PostgreSQL server for the `postgres` scenarios
    /// (`postgres://user:password@host:port/database`): every scenario gets a fresh database
    /// on it (the user needs CREATEDB), dropped after. Without it, vault-bench starts a
    /// throwaway cluster (needs scripts/setup/50-postgresql.sh).
    #[arg(
        long,
        env = "VAULT_BENCH_DATABASE_URL",
        hide_env_values = true,
        conflicts_with = "url"
    )]
    database_url: Option<String>,
    /// The in-process server's PostgreSQL pool size (default: the server's own, 10).
    #[arg(long, conflicts_with = "url")]
    database_max_connections: Option<u32>,
}

/// Why the tool failed.
#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Start(#[from] server::StartError),
    #[error(transparent)]
    Client(#[from] client::ClientError),
    #[error(transparent)]
    Postgres(#[from] PgError),
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{0}")]
    Usage(String),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // The tool's one diagnostic channel is stderr.
            #[allow(clippy::print_stderr)]
            {
                eprintln!("vault-bench: {err}");
            }
            ExitCode::FAILURE
        }
    }
}

fn execute(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Suite {
            full,
            only,
            store,
            list,
            common,
        } => {
            let timing = if full {
                SuiteTiming::FULL
            } else {
                SuiteTiming::QUICK
            };
            let scenarios: Vec<Scenario> = scenario::suite(timing)
                .into_iter()
                .filter(|s| only.is_empty() || only.iter().any(|o| s.name.contains(o.as_str())))
                .filter(|s| store.is_none_or(|store| s.store == store))
                .collect();
            if scenarios.is_empty() {
                return Err(Error::Usage(format!(
                    "no scenario matches {only:?} on {}",
                    store.map_or("any store", Store::name)
                )));
            }
            if list {
                for s in &scenarios {
                    say(&format!("{}\t{}", s.name, s.store));
                }
                return Ok(());
            }
            run_all(&scenarios, &common)
        }
        Command::Run {
            mix,
            concurrency,
            rate,
            custody,
            value_bytes,
            keys,
            fault,
            store,
            duration,
            warmup,
            common,
        } => {
            let secs = |what: &str, s: f64| {
                Duration::try_from_secs_f64(s)
                    .map_err(|_| Error::Usage(format!("--{what} must be a number of seconds ≥ 0")))
            };
            let mut scenario = Scenario::closed(
                "Command line",
                mix,
                custody,
                concurrency,
                SuiteTiming {
                    duration: secs("duration", duration)?,
                    warmup: secs("warmup", warmup)?,
                },
            );
            scenario.value_bytes = value_bytes;
            scenario.keys = keys;
            scenario.fault = fault;
            let mut scenario = scenario.on_store(store);
            if let Some(rate) = rate {
                scenario.load = LoadModel::Open { rate };
            }
            run_all(&[scenario], &common)
        }
        Command::Report { results } => {
            let text = std::fs::read_to_string(&results).map_err(|source| Error::File {
                path: results.clone(),
                source,
            })?;
            let report: Report = serde_json::from_str(&text).map_err(|source| Error::Json {
                path: results.clone(),
                source,
            })?;
            let dir = results.parent().unwrap_or(Path::new("."));
            write_html(dir, &report)
        }
    }
}

/// Runs the scenarios one after the other, each on a fresh in-process server unless `--url`
/// is given, then writes the results and the report. PostgreSQL scenarios each get a fresh
/// database, on a throwaway cluster started at the first of them (or on `--database-url`).
fn run_all(scenarios: &[Scenario], common: &Common) -> Result<(), Error> {
    let any_postgres = scenarios.iter().any(|s| s.store == Store::Postgres);
    if !any_postgres && (common.database_url.is_some() || common.database_max_connections.is_some())
    {
        return Err(Error::Usage(
            "--database-url and --database-max-connections apply to postgres scenarios, and \
             none is selected"
                .into(),
        ));
    }
    let machine = Machine::detect();
    let server_threads = common.server_threads.unwrap_or(machine.nproc).max(1);
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(common.client_threads.max(1))
        .thread_name("vault-bench")
        .enable_all()
        .build()
        .map_err(|source| Error::File {
            path: PathBuf::from("<tokio runtime>"),
            source,
        })?;
    let external = match (&common.url, &common.api_key) {
        (Some(url), Some(key)) => Some(Arc::new(client.block_on(Target::from_url(url, key))?)),
        _ => None,
    };
    let started_unix = results::unix_now();
    let mut done: Vec<ScenarioResult> = Vec::new();
    // A throwaway cluster is started at the first PostgreSQL scenario and stopped when this
    // function returns; whether it can start, or whether --database-url parses, is checked
    // now, so that a suite fails before its SQLite scenarios rather than after.
    let mut postgres: Option<Postgres> = None;
    if any_postgres && external.is_none() {
        match &common.database_url {
            Some(url) => postgres = Some(Postgres::external(url)?),
            None => pgcluster::preflight()?,
        }
    }
    for scenario in scenarios {
        let result = match &external {
            Some(target) => {
                if scenario.fault != Fault::None {
                    // Faults are injected into the in-process server's providers; a remote
                    // server cannot be reached that way. Say so rather than skip silently.
                    say(&format!(
                        "{}: skipped: fault injection needs the in-process server (no --url)",
                        scenario.name
                    ));
                    continue;
                }
                if scenario.store != Store::Sqlite {
                    // The remote server has its own store; running the same load again under
                    // another store's name would mislabel it.
                    say(&format!(
                        "{}: skipped: the store is chosen for the in-process server (no --url)",
                        scenario.name
                    ));
                    continue;
                }
                client.block_on(load::run(Arc::clone(target), scenario, || {}, |_, _| {}))?
            }
            None => {
                let database = match scenario.store {
                    Store::Sqlite => None,
                    Store::Postgres => {
                        let pg = match &mut postgres {
                            Some(pg) => pg,
                            None => postgres.insert(Postgres::throwaway()?),
                        };
                        let database =
                            client.block_on(pg.fresh_database(common.database_max_connections))?;
                        if !database.settings.durable() {
                            say(&format!(
                                "{}: warning: commits on {} are not durable: {:?}",
                                scenario.name, database.settings.server, database.settings.settings
                            ));
                        }
                        Some(database)
                    }
                };
                let outcome = run_in_process(
                    &client,
                    scenario,
                    server_threads,
                    database.as_ref().map(|d| d.options.clone()),
                    database
                        .as_ref()
                        .zip(postgres.as_ref())
                        .map(|(d, pg)| pg.wal_probe(&d.name)),
                );
                // The database goes whether or not the run succeeded: on a --database-url
                // server it would otherwise stay behind.
                if let (Some(database), Some(pg)) = (&database, &postgres) {
                    let dropped = client.block_on(pg.drop_database(&database.name));
                    match (&outcome, dropped) {
                        (Ok(_), Err(e)) => return Err(e.into()),
                        (Err(_), Err(e)) => say(&format!(
                            "{}: also failed to drop database {}: {e}",
                            scenario.name, database.name
                        )),
                        (_, Ok(())) => {}
                    }
                }
                let (mut result, wal) = outcome?;
                result.postgres = database.map(|d| PgSettings {
                    wal_in_window: wal.map(|w| w.per_request(result.ok)),
                    ..d.settings
                });
                result
            }
        };
        say(&report::one_line(&result));
        done.push(result);
    }
    let report = Report {
        tool: format!("vault-bench {}", env!("CARGO_PKG_VERSION")),
        started_unix,
        machine,
        server: common.url.clone().unwrap_or_else(|| "in-process".into()),
        server_threads,
        client_threads: common.client_threads.max(1),
        targets: report::check_targets(&done, external.is_some()),
        scenarios: done,
    };
    std::fs::create_dir_all(&common.out).map_err(|source| Error::File {
        path: common.out.clone(),
        source,
    })?;
    let json_path = common.out.join("results.json");
    let json = serde_json::to_string_pretty(&report).map_err(|source| Error::Json {
        path: json_path.clone(),
        source,
    })?;
    std::fs::write(&json_path, json).map_err(|source| Error::File {
        path: json_path.clone(),
        source,
    })?;
    write_html(&common.out, &report)?;
    say(&report::targets_text(&report.targets));
    say(&format!(
        "wrote {} and {}",
        json_path.display(),
        common.out.join("report.html").display()
    ));
    Ok(())
}

/// One scenario on a fresh in-process server (on SQLite, or on the empty PostgreSQL
/// `database`), with its fault injectors' counters, and the PostgreSQL server's WAL activity
/// during the measured window when a `probe` is given (`None` if it could not be read: said
/// on stdout, the run itself stands).
fn run_in_process(
    client: &tokio::runtime::Runtime,
    scenario: &Scenario,
    server_threads: usize,
    database: Option<vault_server::PostgresOptions>,
    probe: Option<WalProbe>,
) -> Result<(ScenarioResult, Option<WalActivity>), Error> {
    // Started and dropped outside the client runtime: the server has its own.
    let server = InProcess::start(scenario.fault, server_threads, database)?;
    let target = Arc::new(Target::new(server.addr(), server.api_key())?);
    let mut probing = None;
    let mut result = client.block_on(load::run(
        target,
        scenario,
        || server.after_setup(scenario.fault),
        |from, end| {
            // Called inside the client runtime, so the probe runs beside the load.
            probing = probe.map(|probe| tokio::spawn(probe.measure(from, end)));
        },
    ))?;
    let wal = match probing.map(|task| client.block_on(task)) {
        None => None,
        Some(Ok(Ok(wal))) => Some(wal),
        Some(Ok(Err(e))) => {
            say(&format!("{}: WAL counters not read: {e}", scenario.name));
            None
        }
        Some(Err(e)) => {
            say(&format!("{}: WAL probe failed: {e}", scenario.name));
            None
        }
    };
    result.injectors = server
        .fault_stats()
        .into_iter()
        .map(|(provider, stats)| InjectorStats {
            provider,
            calls: stats.calls,
            errors: stats.errors,
        })
        .collect();
    Ok((result, wal))
}

fn write_html(dir: &Path, report: &Report) -> Result<(), Error> {
    let path = dir.join("report.html");
    std::fs::write(&path, report::html(report)).map_err(|source| Error::File { path, source })
}

/// A line of output on stdout (the summary a person reads; the JSON is the record).
fn say(line: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// End to end on a real in-process server: a short closed-loop mix and a short open-loop
    /// run in a client-custody mode must answer every request with success, record latencies
    /// and write a report that names them.
    #[test]
    fn runs_scenarios_against_an_in_process_server() {
        let out = tempfile::tempdir().unwrap();
        let timing = SuiteTiming {
            duration: Duration::from_millis(700),
            warmup: Duration::from_millis(200),
        };
        let mut closed = Scenario::closed("t", Mix::MIX_90_10, Custody::Standard, 4, timing);
        closed.keys = 10;
        let mut open = Scenario::closed("t", Mix::GET, Custody::TwoOfThreeClient, 2, timing);
        open.name = "open".into();
        open.keys = 5;
        open.load = LoadModel::Open { rate: 200.0 };
        let common = Common {
            url: None,
            api_key: None,
            out: out.path().to_owned(),
            server_threads: Some(1),
            client_threads: 1,
            database_url: None,
            database_max_connections: None,
        };
        run_all(&[closed, open], &common).unwrap();
        let report: Report = serde_json::from_str(
            &std::fs::read_to_string(out.path().join("results.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(report.scenarios.len(), 2);
        for result in &report.scenarios {
            assert_eq!(result.errors, 0, "{:?}", result.error_samples);
            assert!(result.ok > 0, "{}", result.scenario.name);
            let all = result.latency.all.unwrap();
            assert!(all.p50_ms > 0.0 && all.p50_ms <= all.p99_ms && all.p99_ms <= all.max_ms);
        }
        let mix = &report.scenarios[0];
        assert!(mix.latency.get.is_some() && mix.latency.put.is_some());
        assert!(mix.status_counts.contains_key("200") && mix.status_counts.contains_key("201"));
        // The open-loop run sends close to its rate: 200 req/s for 0.7 s.
        let open = &report.scenarios[1];
        assert!((100..=150).contains(&open.ok), "{}", open.ok);
        let html = std::fs::read_to_string(out.path().join("report.html")).unwrap();
        assert!(html.contains("std-mix90-c4") && html.contains("<svg"));
    }

    /// The PostgreSQL scenarios end to end: a throwaway cluster, a fresh database per scenario
    /// on a durable server, every request answered, the settings in the results and the
    /// report.
    #[test]
    fn runs_postgres_scenarios_on_a_throwaway_cluster() {
        let out = tempfile::tempdir().unwrap();
        // Long enough for the server's backends to publish their statistics (at most once a
        // second) inside the window.
        let timing = SuiteTiming {
            duration: Duration::from_millis(2500),
            warmup: Duration::from_millis(200),
        };
        let scenarios: Vec<Scenario> = [(Mix::PUT, 8), (Mix::MIX_90_10, 4)]
            .into_iter()
            .map(|(mix, c)| {
                let mut s = Scenario::closed(scenario::GROUP_PG, mix, Custody::Standard, c, timing)
                    .on_store(Store::Postgres);
                s.keys = 10;
                s
            })
            .collect();
        let common = Common {
            url: None,
            api_key: None,
            out: out.path().to_owned(),
            server_threads: Some(1),
            client_threads: 1,
            database_url: None,
            database_max_connections: Some(4),
        };
        run_all(&scenarios, &common).unwrap();
        let report: Report = serde_json::from_str(
            &std::fs::read_to_string(out.path().join("results.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(report.scenarios.len(), 2);
        let mut databases = Vec::new();
        for result in &report.scenarios {
            assert_eq!(result.errors, 0, "{:?}", result.error_samples);
            assert!(result.ok > 0, "{}", result.scenario.name);
            assert_eq!(result.scenario.store, Store::Postgres);
            let pg = result.postgres.as_ref().unwrap();
            assert!(pg.durable(), "{pg:?}");
            assert!(pg.server.starts_with("throwaway cluster"), "{}", pg.server);
            assert_eq!(pg.pool_max_connections, 4);
            // Requests wrote (a version, or a GET's access count) and the server synced its
            // WAL during the window.
            let wal = pg.wal_in_window.as_ref().unwrap();
            assert!(wal.wal_syncs > 0 && wal.commits > 0, "{wal:?}");
            assert!(wal.requests_per_wal_sync.unwrap() > 0.0, "{wal:?}");
            databases.push(pg.database.clone());
        }
        assert_ne!(
            databases[0], databases[1],
            "one fresh database per scenario"
        );
        assert!(report.scenarios[0].status_counts.contains_key("201"));
        assert_eq!(report.scenarios[0].scenario.name, "pg-std-put-c8");
        let html = std::fs::read_to_string(out.path().join("report.html")).unwrap();
        assert!(html.contains("pg-std-put-c8") && html.contains("<h2>PostgreSQL</h2>"));
    }

    #[test]
    fn database_options_need_a_postgres_scenario_and_the_in_process_server() {
        let out = tempfile::tempdir().unwrap();
        let sqlite = Scenario::closed(
            "t",
            Mix::GET,
            Custody::Standard,
            1,
            SuiteTiming {
                duration: Duration::from_millis(100),
                warmup: Duration::ZERO,
            },
        );
        let common = Common {
            url: None,
            api_key: None,
            out: out.path().to_owned(),
            server_threads: Some(1),
            client_threads: 1,
            database_url: Some("postgres://u:pw@127.0.0.1:1/postgres".into()),
            database_max_connections: None,
        };
        let err = run_all(&[sqlite], &common).unwrap_err();
        assert!(matches!(err, Error::Usage(_)), "{err}");
        assert!(!err.to_string().contains("pw"), "{err}");
        // The store belongs to the in-process server: not with --url.
        for args in [
            &[
                "vault-bench",
                "run",
                "--url",
                "http://127.0.0.1:1",
                "--api-key",
                "k",
                "--store",
                "postgres",
            ][..],
            &[
                "vault-bench",
                "suite",
                "--url",
                "http://127.0.0.1:1",
                "--api-key",
                "k",
                "--database-url",
                "postgres://x@y/z",
            ][..],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
        let cli =
            Cli::try_parse_from(["vault-bench", "suite", "--store", "postgres", "--list"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Suite {
                store: Some(Store::Postgres),
                list: true,
                ..
            }
        ));
        assert!(Cli::try_parse_from(["vault-bench", "run", "--store", "mysql"]).is_err());
        // The default store does not count as given: --url alone still parses.
        let remote = [
            "vault-bench",
            "run",
            "--url",
            "http://127.0.0.1:1",
            "--api-key",
            "k",
        ];
        assert!(Cli::try_parse_from(remote).is_ok());
    }

    #[test]
    fn a_provider_outage_is_injected_after_setup() {
        let timing = SuiteTiming {
            duration: Duration::from_millis(500),
            warmup: Duration::from_millis(100),
        };
        let mut scenario = Scenario::closed("t", Mix::GET, Custody::TwoOfThreeMultiHsm, 2, timing);
        scenario.fault = Fault::AwsDown;
        scenario.keys = 4;
        let out = tempfile::tempdir().unwrap();
        let common = Common {
            url: None,
            api_key: None,
            out: out.path().to_owned(),
            server_threads: Some(1),
            client_threads: 1,
            database_url: None,
            database_max_connections: None,
        };
        run_all(&[scenario], &common).unwrap();
        let report: Report = serde_json::from_str(
            &std::fs::read_to_string(out.path().join("results.json")).unwrap(),
        )
        .unwrap();
        let result = &report.scenarios[0];
        // Reads still succeed with two of three providers...
        assert_eq!(result.errors, 0, "{:?}", result.error_samples);
        assert!(result.ok > 0);
        // ...and the injector really failed calls to `aws`.
        let aws = result
            .injectors
            .iter()
            .find(|i| i.provider == "aws")
            .unwrap();
        assert!(aws.errors > 0, "{aws:?}");
    }
}
