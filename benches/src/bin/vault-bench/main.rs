//! `vault-bench`: an HTTP load generator for the mpc-vault server.
//!
//! It drives the JSON API of a running server (`--url`, `--api-key`) or of one it starts in
//! process (`vault_server::VaultServer` on a temporary data directory, `local` providers,
//! SQLite with durable commits), in closed loop (N workers) or open loop (a fixed arrival rate,
//! latency counted from each request's due time, so a stalled server cannot hide its stalls).
//! Every worker has its own keep-alive connection. Latencies go into HDR histograms; the
//! results are written as `results.json` and rendered as `report.html` with SVG charts.
//!
//! ```text
//! vault-bench suite [--full] [--only SUBSTRING] [--out DIR]      # the built-in scenarios
//! vault-bench run --mix get --concurrency 64 --custody 2of3_multi_hsm --duration 10
//! vault-bench report target/bench-report/results.json            # re-render the report
//! ```

mod client;
mod load;
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
use crate::results::{InjectorStats, Machine, Report, ScenarioResult};
use crate::scenario::{Custody, Fault, LoadModel, Mix, Scenario, SuiteTiming};
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
        Command::Suite { full, only, common } => {
            let timing = if full {
                SuiteTiming::FULL
            } else {
                SuiteTiming::QUICK
            };
            let scenarios: Vec<Scenario> = scenario::suite(timing)
                .into_iter()
                .filter(|s| only.is_empty() || only.iter().any(|o| s.name.contains(o.as_str())))
                .collect();
            if scenarios.is_empty() {
                return Err(Error::Usage(format!("no scenario matches {only:?}")));
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
/// is given, then writes the results and the report.
fn run_all(scenarios: &[Scenario], common: &Common) -> Result<(), Error> {
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
                client.block_on(load::run(Arc::clone(target), scenario, || {}))?
            }
            None => {
                // Started and dropped outside the client runtime: the server has its own.
                let server = InProcess::start(scenario.fault, server_threads)?;
                let target = Arc::new(Target::new(server.addr(), server.api_key())?);
                let mut result = client.block_on(load::run(target, scenario, || {
                    server.after_setup(scenario.fault);
                }))?;
                result.injectors = server
                    .fault_stats()
                    .into_iter()
                    .map(|(provider, stats)| InjectorStats {
                        provider,
                        calls: stats.calls,
                        errors: stats.errors,
                    })
                    .collect();
                drop(server);
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
        targets: report::check_targets(&done),
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
