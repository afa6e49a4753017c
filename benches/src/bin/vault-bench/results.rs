//! What a run measured, as written to `results.json`, and the summaries drawn from histograms.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::scenario::Scenario;

/// Latencies are recorded in microseconds, from 1 µs to 10 minutes, with 3 significant digits
/// (0.1% relative error): finer than any figure the report shows.
pub(crate) const HIGHEST_MICROS: u64 = 600_000_000;

/// A fresh latency histogram.
pub(crate) fn new_histogram() -> Result<Histogram<u64>, hdrhistogram::CreationError> {
    Histogram::new_with_bounds(1, HIGHEST_MICROS, 3)
}

/// p50/p95/p99/p99.9/max and mean of a histogram, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct LatencySummary {
    /// Requests recorded.
    pub(crate) count: u64,
    /// Mean.
    pub(crate) mean_ms: f64,
    /// Median.
    pub(crate) p50_ms: f64,
    /// 95th percentile.
    pub(crate) p95_ms: f64,
    /// 99th percentile.
    pub(crate) p99_ms: f64,
    /// 99.9th percentile.
    pub(crate) p999_ms: f64,
    /// Largest.
    pub(crate) max_ms: f64,
}

fn ms(micros: u64) -> f64 {
    // Latencies are far below 2^52 µs, so the conversion is exact.
    #[allow(clippy::cast_precision_loss)]
    let m = micros as f64 / 1000.0;
    m
}

impl LatencySummary {
    /// The summary of `h`, or `None` if it recorded nothing.
    pub(crate) fn of(h: &Histogram<u64>) -> Option<LatencySummary> {
        if h.is_empty() {
            return None;
        }
        Some(LatencySummary {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        })
    }
}

/// The latency distribution as (quantile, milliseconds) points, dense in the tail: quantiles
/// `1 - 10^(-k/10)` for k = 0..=40 (0 to 99.99%), then the maximum.
pub(crate) fn cdf_points(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut points: Vec<(f64, f64)> = (0..=40)
        .map(|k| {
            let q = 1.0 - 10f64.powf(-f64::from(k) / 10.0);
            (q, ms(h.value_at_quantile(q)))
        })
        .collect();
    points.push((1.0, ms(h.max())));
    points
}

/// Latencies of one scenario: all successful requests, and reads and writes apart.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Latencies {
    /// Every successful request.
    pub(crate) all: Option<LatencySummary>,
    /// Successful GETs.
    pub(crate) get: Option<LatencySummary>,
    /// Successful PUTs.
    pub(crate) put: Option<LatencySummary>,
}

/// Latency distributions of one scenario, as [`cdf_points`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Distributions {
    /// Every successful request.
    pub(crate) all: Vec<(f64, f64)>,
    /// Successful GETs.
    pub(crate) get: Vec<(f64, f64)>,
    /// Successful PUTs.
    pub(crate) put: Vec<(f64, f64)>,
}

/// What a fault injector saw during the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InjectorStats {
    /// The provider.
    pub(crate) provider: String,
    /// Calls it received (set-up included).
    pub(crate) calls: u64,
    /// Calls it failed.
    pub(crate) errors: u64,
}

/// One scenario's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ScenarioResult {
    /// What was run.
    pub(crate) scenario: Scenario,
    /// Unix seconds when the measured window began.
    pub(crate) started_unix: u64,
    /// 1/5/15-minute load averages just before the run (other builds share the machine).
    pub(crate) load_avg_before: Option<[f64; 3]>,
    /// The same just after.
    pub(crate) load_avg_after: Option<[f64; 3]>,
    /// The measured window, in seconds.
    pub(crate) measured_secs: f64,
    /// Successful (2xx) requests in the window.
    pub(crate) ok: u64,
    /// Successful requests per second.
    pub(crate) throughput_rps: f64,
    /// Latency summaries (successful requests only).
    pub(crate) latency: Latencies,
    /// Latency distributions.
    pub(crate) cdf: Distributions,
    /// Answers by HTTP status, successes included.
    pub(crate) status_counts: BTreeMap<String, u64>,
    /// Requests that got no HTTP answer (connection failures).
    pub(crate) transport_errors: u64,
    /// Open loop only: requests that were due in the window but never sent, because the run
    /// gave up draining the backlog.
    pub(crate) not_sent: u64,
    /// Non-2xx answers plus transport errors plus `not_sent`.
    pub(crate) errors: u64,
    /// One example answer body (a problem document) or error message per failing status.
    pub(crate) error_samples: BTreeMap<String, String>,
    /// Successful requests per second of the measured window, second by second.
    pub(crate) timeline_rps: Vec<f64>,
    /// Fault-injector counters, when the scenario injects faults.
    pub(crate) injectors: Vec<InjectorStats>,
    /// The PostgreSQL server and database a PostgreSQL scenario ran on, with its settings as
    /// the server reported them (`None` for SQLite and for `--url` runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) postgres: Option<PgSettings>,
}

/// The PostgreSQL side of one scenario, read back from the server rather than assumed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PgSettings {
    /// `throwaway cluster (…)` or the `--database-url` server, without its password.
    pub(crate) server: String,
    /// The fresh database the scenario ran in (dropped after the run).
    pub(crate) database: String,
    /// `SELECT version()`.
    pub(crate) version: String,
    /// The in-process server's connection pool size.
    pub(crate) pool_max_connections: u32,
    /// Whether a `CHECKPOINT` ran just before the scenario, so that no checkpoint left over
    /// from the previous scenario's writes lands in this one's window (it needs superuser or
    /// `pg_checkpoint` on a `--database-url` server).
    pub(crate) checkpoint_before_run: bool,
    /// Durability and WAL settings (`fsync`, `synchronous_commit`, `wal_sync_method`, …) by
    /// name, as `current_setting` shows them.
    pub(crate) settings: BTreeMap<String, String>,
    /// What the server's WAL did during the measured window (`None` if the counters could
    /// not be read, e.g. before PostgreSQL 14).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) wal_in_window: Option<WalActivity>,
}

/// The server's WAL and commit counters over the measured window: how many commits each WAL
/// flush carried. Cluster-wide for the WAL (`pg_stat_wal`: every process's syncs, the WAL
/// writer's included), the scenario's database for the commits (`pg_stat_database`, read-only
/// transactions included). Backends publish their counters at most once a second, so each end
/// of the window may be off by up to a second's worth.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct WalActivity {
    /// `pg_stat_wal.wal_sync`: WAL flushes to disk (fdatasync or the like).
    pub(crate) wal_syncs: u64,
    /// `pg_stat_wal.wal_write`: WAL writes from buffers to the kernel.
    pub(crate) wal_writes: u64,
    /// `pg_stat_wal.wal_bytes`.
    pub(crate) wal_bytes: u64,
    /// `pg_stat_database.xact_commit` of the scenario's database.
    pub(crate) commits: u64,
    /// Successful requests in the window per WAL flush (every request writes: a PUT its
    /// version, a GET its access count), filled in by [`WalActivity::per_request`].
    pub(crate) requests_per_wal_sync: Option<f64>,
}

impl WalActivity {
    /// The same, with `requests` successful requests in the window divided by the flushes.
    pub(crate) fn per_request(self, requests: u64) -> WalActivity {
        // Counts far below 2^52: exact in f64.
        #[allow(clippy::cast_precision_loss)]
        let ratio = (self.wal_syncs > 0).then(|| requests as f64 / self.wal_syncs as f64);
        WalActivity {
            requests_per_wal_sync: ratio,
            ..self
        }
    }
}

impl PgSettings {
    /// Whether every commit waits for its WAL to be flushed to disk: `fsync` on and
    /// `synchronous_commit` at least `local`.
    pub(crate) fn durable(&self) -> bool {
        let get = |name: &str| self.settings.get(name).map(String::as_str);
        get("fsync") == Some("on")
            && matches!(
                get("synchronous_commit"),
                Some("on" | "local" | "remote_write" | "remote_apply")
            )
    }
}

/// The machine the figures come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Machine {
    /// Logical CPUs available to the process.
    pub(crate) nproc: usize,
    /// `model name` from /proc/cpuinfo.
    pub(crate) cpu_model: Option<String>,
    /// `uname -r` equivalent from /proc.
    pub(crate) kernel: Option<String>,
    /// `std::env::consts::ARCH`.
    pub(crate) arch: String,
}

impl Machine {
    /// Reads what Linux tells about this machine (fields stay empty elsewhere).
    pub(crate) fn detect() -> Machine {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            });
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .map(|s| s.trim().to_owned());
        Machine {
            nproc: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            cpu_model,
            kernel,
            arch: std::env::consts::ARCH.to_owned(),
        }
    }
}

/// The 1/5/15-minute load averages, on Linux.
pub(crate) fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut fields = text.split_whitespace().map(str::parse::<f64>);
    Some([
        fields.next()?.ok()?,
        fields.next()?.ok()?,
        fields.next()?.ok()?,
    ])
}

/// One of issue 10's targets, checked against the figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TargetCheck {
    /// The target as the issue states it.
    pub(crate) target: String,
    /// The scenario(s) it is checked on.
    pub(crate) scenarios: String,
    /// What was measured.
    pub(crate) measured: String,
    /// `Some(true)` met, `Some(false)` not met, `None` when the suite lacks the scenarios.
    pub(crate) met: Option<bool>,
    /// By how much it is missed or beaten.
    pub(crate) margin: String,
}

/// The whole `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Report {
    /// `vault-bench` and its version.
    pub(crate) tool: String,
    /// Unix seconds when the run started.
    pub(crate) started_unix: u64,
    /// The machine.
    pub(crate) machine: Machine,
    /// `in-process` or the `--url` of the server under load.
    pub(crate) server: String,
    /// Worker threads of the in-process server's runtime.
    pub(crate) server_threads: usize,
    /// Worker threads of the load generator's runtime.
    pub(crate) client_threads: usize,
    /// Every scenario, in run order.
    pub(crate) scenarios: Vec<ScenarioResult>,
    /// The targets against these figures.
    pub(crate) targets: Vec<TargetCheck>,
}

/// Now, in Unix seconds.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `YYYY-MM-DD HH:MM:SS UTC` for Unix seconds (civil-from-days, proleptic Gregorian).
pub(crate) fn utc_text(unix: u64) -> String {
    let days = unix / 86_400;
    let rem = unix % 86_400;
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Howard Hinnant's days_from_civil inverse, on unsigned arithmetic (days ≥ 0).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{d:02} {h:02}:{m:02}:{s:02} UTC")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_follow_the_recorded_values() {
        let mut h = new_histogram().unwrap();
        for micros in 1..=1000u64 {
            h.record(micros * 1000).unwrap();
        }
        let s = LatencySummary::of(&h).unwrap();
        assert_eq!(s.count, 1000);
        assert!((s.p50_ms - 500.0).abs() < 1.0, "{s:?}");
        assert!((s.p99_ms - 990.0).abs() < 1.5, "{s:?}");
        assert!((s.max_ms - 1000.0).abs() < 1.5, "{s:?}");
        assert!(LatencySummary::of(&new_histogram().unwrap()).is_none());
    }

    #[test]
    fn cdf_is_monotonic_and_ends_at_the_maximum() {
        let mut h = new_histogram().unwrap();
        for v in [100, 200, 300, 5000, 90_000] {
            h.record(v).unwrap();
        }
        let points = cdf_points(&h);
        assert_eq!(points.len(), 42);
        assert!(
            points
                .windows(2)
                .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1)
        );
        let last = points.last().unwrap();
        assert_eq!(last.0, 1.0);
        assert!((last.1 - 90.0).abs() < 0.1);
    }

    #[test]
    fn durability_follows_fsync_and_synchronous_commit() {
        let mut pg = PgSettings {
            server: "throwaway cluster".into(),
            database: "vault_bench_1".into(),
            version: "PostgreSQL 15".into(),
            pool_max_connections: 10,
            checkpoint_before_run: true,
            settings: [("fsync", "on"), ("synchronous_commit", "on")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            wal_in_window: None,
        };
        assert!(pg.durable());
        pg.settings
            .insert("synchronous_commit".into(), "off".into());
        assert!(!pg.durable());
        pg.settings
            .insert("synchronous_commit".into(), "local".into());
        pg.settings.insert("fsync".into(), "off".into());
        assert!(!pg.durable());
        pg.settings.remove("fsync");
        assert!(!pg.durable());
    }

    #[test]
    fn requests_per_wal_flush() {
        let wal = WalActivity {
            wal_syncs: 400,
            wal_writes: 420,
            wal_bytes: 1 << 20,
            commits: 5000,
            requests_per_wal_sync: None,
        };
        assert_eq!(wal.per_request(1000).requests_per_wal_sync, Some(2.5));
        let none = WalActivity {
            wal_syncs: 0,
            ..wal
        };
        assert_eq!(none.per_request(1000).requests_per_wal_sync, None);
    }

    #[test]
    fn utc_text_matches_known_dates() {
        assert_eq!(utc_text(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_text(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_text(1_795_703_457), "2026-11-26 14:30:57 UTC");
    }
}
