//! Running one scenario: set-up (a vault and the secrets reads pick from), then workers with one
//! keep-alive connection each, in closed or open loop, recording latencies in HDR histograms.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Write as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::client::{Answer, ClientError, ClientShare, Connection, Target};
use crate::results::{self, Distributions, Latencies, LatencySummary, ScenarioResult};
use crate::scenario::{LoadModel, Scenario};

/// Connections used to write the secrets before a run.
const SETUP_CONNECTIONS: usize = 8;

/// Why a scenario could not run (set-up failed; failures under load are counted, not raised).
#[derive(Debug, thiserror::Error)]
pub(crate) enum RunError {
    /// Talking to the server failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The server refused a set-up request.
    #[error("set-up: {what} answered {status}: {body}")]
    Setup {
        /// The request.
        what: String,
        /// The answer's status.
        status: StatusCode,
        /// The answer's body (a problem document; never a secret).
        body: String,
    },
    /// The scenario's parameters are unusable.
    #[error("scenario `{0}`: {1}")]
    Invalid(String, String),
    /// A histogram could not be created or merged.
    #[error("histogram: {0}")]
    Histogram(String),
    /// A worker task failed.
    #[error("worker: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// What the workers need to send requests.
struct Workload {
    vault: String,
    /// `(path, client share)` of each secret reads pick from.
    reads: Vec<(String, Option<ClientShare>)>,
    /// The PUT body: `{"value": …}` of the scenario's size.
    put_body: Bytes,
    read_fraction: f64,
}

/// A value of `len` printable ASCII bytes (the API takes values as JSON strings); its content
/// does not matter to the server, which encrypts it under a fresh key either way.
fn value_of(len: usize, seed: u64) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = SplitMix64(seed);
    (0..len)
        .map(|_| {
            // The low 6 bits index the 64-letter alphabet.
            let i = usize::try_from(rng.next() & 63).unwrap_or(0);
            char::from(ALPHABET.get(i).copied().unwrap_or(b'A'))
        })
        .collect()
}

/// SplitMix64: a tiny, fast, seedable generator for choosing operations and keys (not for
/// anything secret).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        // 53 random bits are exactly representable.
        #[allow(clippy::cast_precision_loss)]
        let x = (self.next() >> 11) as f64;
        x / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (n > 0), with negligible bias for the small `n` used here.
    fn below(&mut self, n: usize) -> usize {
        let n64 = u64::try_from(n).unwrap_or(u64::MAX).max(1);
        usize::try_from(self.next() % n64).unwrap_or(0)
    }
}

fn setup_error(what: &str, answer: &Answer) -> RunError {
    RunError::Setup {
        what: what.to_owned(),
        status: answer.status,
        body: String::from_utf8_lossy(&answer.body)
            .chars()
            .take(400)
            .collect(),
    }
}

/// Creates the vault and writes the secrets reads pick from.
async fn prepare(target: &Arc<Target>, scenario: &Scenario) -> Result<Workload, RunError> {
    let mut conn = Connection::open(Arc::clone(target)).await?;
    let mut body = json!({ "name": format!("vault-bench {}", scenario.name) });
    if let Some(mode) = scenario.custody.api_name() {
        body["mpc_custody"] = json!(mode);
    }
    let answer = conn
        .send(
            Method::POST,
            "/v1/vaults",
            Some(Bytes::from(body.to_string())),
            None,
        )
        .await?;
    if answer.status != StatusCode::CREATED {
        return Err(setup_error("POST /v1/vaults", &answer));
    }
    let created: Value = serde_json::from_slice(&answer.body)
        .map_err(|e| RunError::Invalid(scenario.name.clone(), format!("vault answer: {e}")))?;
    let vault = created["id"]
        .as_str()
        .ok_or_else(|| RunError::Invalid(scenario.name.clone(), "vault answer has no id".into()))?
        .to_owned();
    let put_body = Bytes::from(json!({ "value": value_of(scenario.value_bytes, 1) }).to_string());

    // Write the read set over a few connections at once.
    let keys = scenario.keys.max(1);
    let next = Arc::new(AtomicU64::new(0));
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..SETUP_CONNECTIONS.min(keys) {
        let target = Arc::clone(target);
        let vault = vault.clone();
        let put_body = put_body.clone();
        let next = Arc::clone(&next);
        writers.spawn(async move {
            let mut conn = Connection::open(target).await?;
            let mut written = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= keys as u64 {
                    return Ok::<_, RunError>(written);
                }
                let path = format!("bench/read/{i}");
                let answer = conn
                    .send(
                        Method::PUT,
                        &format!("/v1/vaults/{vault}/secrets/{path}"),
                        Some(put_body.clone()),
                        None,
                    )
                    .await?;
                if answer.status != StatusCode::CREATED {
                    return Err(setup_error(&format!("PUT {path}"), &answer));
                }
                let stored: Value = serde_json::from_slice(&answer.body).map_err(|e| {
                    RunError::Invalid(path.clone(), format!("PUT answer is not JSON: {e}"))
                })?;
                let share = stored["client_share"]
                    .as_str()
                    .map(ClientShare::new)
                    .transpose()?;
                written.push((i, path, share));
            }
        });
    }
    let mut reads = Vec::with_capacity(keys);
    while let Some(done) = writers.join_next().await {
        reads.extend(done??);
    }
    reads.sort_by_key(|(i, _, _)| *i);
    Ok(Workload {
        vault,
        reads: reads
            .into_iter()
            .map(|(_, path, share)| (path, share))
            .collect(),
        put_body,
        read_fraction: scenario.mix.read_fraction,
    })
}

/// The time anchors of a run.
#[derive(Clone, Copy)]
struct Clock {
    start: Instant,
    measure_from: Instant,
    end: Instant,
    /// Open loop: after this, requests still due are counted as not sent.
    drain_until: Instant,
}

/// Counters the progress line reads while the run goes.
#[derive(Default)]
struct Live {
    ok: AtomicU64,
    errors: AtomicU64,
}

/// What one worker recorded.
struct WorkerTally {
    get: Histogram<u64>,
    put: Histogram<u64>,
    statuses: BTreeMap<u16, u64>,
    transport_errors: u64,
    not_sent: u64,
    samples: BTreeMap<String, String>,
}

impl WorkerTally {
    fn new() -> Result<WorkerTally, RunError> {
        let h = || results::new_histogram().map_err(|e| RunError::Histogram(e.to_string()));
        Ok(WorkerTally {
            get: h()?,
            put: h()?,
            statuses: BTreeMap::new(),
            transport_errors: 0,
            not_sent: 0,
            samples: BTreeMap::new(),
        })
    }
}

/// When request `i` of an open-loop run is due.
fn due(start: Instant, rate: f64, i: u64) -> Instant {
    // Seconds as f64 keep sub-nanosecond precision far beyond any run's length.
    #[allow(clippy::cast_precision_loss)]
    let at = i as f64 / rate;
    start + Duration::from_secs_f64(at)
}

/// What every worker shares.
struct Shared {
    target: Arc<Target>,
    work: Workload,
    load: LoadModel,
    clock: Clock,
    /// Open loop: the index of the next request due.
    next_due: AtomicU64,
    live: Live,
}

async fn worker(
    id: usize,
    shared: Arc<Shared>,
    mut conn: Connection,
) -> Result<WorkerTally, RunError> {
    let Shared {
        target,
        work,
        load,
        clock,
        next_due,
        live,
    } = &*shared;
    let (load, clock) = (*load, *clock);
    let mut tally = WorkerTally::new()?;
    let mut rng = SplitMix64(0xB0A7 ^ (id as u64).wrapping_mul(0x9E37_79B9));
    let mut writes = 0u64;
    let mut connected = true;
    loop {
        // When this request counts from: its due time (open loop) or now (closed loop).
        let counted_from = match load {
            LoadModel::Closed => {
                let now = Instant::now();
                if now >= clock.end {
                    break;
                }
                now
            }
            LoadModel::Open { rate } => {
                let i = next_due.fetch_add(1, Ordering::Relaxed);
                let at = due(clock.start, rate, i);
                if at >= clock.end {
                    break;
                }
                if Instant::now() > clock.drain_until {
                    if at >= clock.measure_from {
                        tally.not_sent += 1;
                        live.errors.fetch_add(1, Ordering::Relaxed);
                    }
                    continue;
                }
                tokio::time::sleep_until(at).await;
                at
            }
        };
        if !connected || conn.is_closed() {
            match Connection::open(Arc::clone(target)).await {
                Ok(fresh) => {
                    conn = fresh;
                    connected = true;
                }
                Err(e) => {
                    record_transport(&mut tally, live, counted_from, clock, &e);
                    // The server is not accepting connections: do not spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let is_read = work.read_fraction >= 1.0
            || (work.read_fraction > 0.0 && rng.unit() < work.read_fraction);
        let sent = if is_read {
            let (path, share) = match work.reads.get(rng.below(work.reads.len())) {
                Some(entry) => entry,
                None => return Err(RunError::Invalid("reads".into(), "no secrets".into())),
            };
            let uri = format!("/v1/vaults/{}/secrets/{path}", work.vault);
            conn.send(Method::GET, &uri, None, share.as_ref()).await
        } else {
            // Each worker rewrites its own 16 paths, so writes add versions without contending
            // for the same secret.
            let uri = format!(
                "/v1/vaults/{}/secrets/bench/write/{id}/{}",
                work.vault,
                writes % 16
            );
            writes += 1;
            conn.send(Method::PUT, &uri, Some(work.put_body.clone()), None)
                .await
        };
        let done = Instant::now();
        let measured = counted_from >= clock.measure_from;
        match sent {
            Ok(answer) => {
                if !measured {
                    continue;
                }
                *tally.statuses.entry(answer.status.as_u16()).or_default() += 1;
                if answer.status.is_success() {
                    let micros = u64::try_from((done - counted_from).as_micros())
                        .unwrap_or(u64::MAX)
                        .clamp(1, results::HIGHEST_MICROS);
                    let h = if is_read {
                        &mut tally.get
                    } else {
                        &mut tally.put
                    };
                    h.saturating_record(micros);
                    live.ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    live.errors.fetch_add(1, Ordering::Relaxed);
                    tally
                        .samples
                        .entry(answer.status.as_u16().to_string())
                        .or_insert_with(|| {
                            String::from_utf8_lossy(&answer.body)
                                .chars()
                                .take(300)
                                .collect()
                        });
                }
            }
            Err(e) => {
                connected = false;
                record_transport(&mut tally, live, counted_from, clock, &e);
            }
        }
    }
    Ok(tally)
}

fn record_transport(
    tally: &mut WorkerTally,
    live: &Live,
    counted_from: Instant,
    clock: Clock,
    e: &ClientError,
) {
    if counted_from >= clock.measure_from {
        tally.transport_errors += 1;
        live.errors.fetch_add(1, Ordering::Relaxed);
        tally
            .samples
            .entry("transport".into())
            .or_insert_with(|| e.to_string());
    }
}

/// A one-line progress display on stderr, refreshed each second, when stderr is a terminal;
/// it also samples the per-second throughput for the timeline.
async fn progress(name: String, shared: Arc<Shared>) -> Vec<f64> {
    let (clock, live) = (shared.clock, &shared.live);
    let tty = std::io::stderr().is_terminal();
    let mut tick = tokio::time::interval_at(clock.measure_from, Duration::from_secs(1));
    let mut last = 0u64;
    let mut timeline = Vec::new();
    let total = (clock.end - clock.measure_from).as_secs_f64();
    loop {
        let now = tick.tick().await;
        let ok = live.ok.load(Ordering::Relaxed);
        if now > clock.measure_from {
            // Counts fit f64 exactly far beyond any run.
            #[allow(clippy::cast_precision_loss)]
            timeline.push((ok - last) as f64);
        }
        last = ok;
        if tty {
            let elapsed = (now - clock.measure_from).as_secs_f64();
            let errors = live.errors.load(Ordering::Relaxed);
            let rate = timeline.last().copied().unwrap_or(0.0);
            let mut err = std::io::stderr().lock();
            let _ = write!(
                err,
                "\r\x1b[2K{name}: {elapsed:>4.0}/{total:.0} s  {ok:>9} ok  {rate:>8.0} req/s  {errors} errors"
            );
            let _ = err.flush();
        }
        if now >= clock.end {
            break;
        }
    }
    if tty {
        let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
    }
    timeline
}

/// Runs `scenario` against `target`. `after_setup` is called once the secrets are written
/// (the in-process server takes a provider down there); `window` is called, from within the
/// runtime, with the start and end of the measured window before the load starts (the
/// PostgreSQL scenarios read the server's WAL counters at both).
pub(crate) async fn run(
    target: Arc<Target>,
    scenario: &Scenario,
    after_setup: impl FnOnce(),
    window: impl FnOnce(Instant, Instant),
) -> Result<ScenarioResult, RunError> {
    if scenario.concurrency == 0 {
        return Err(RunError::Invalid(
            scenario.name.clone(),
            "concurrency must be at least 1".into(),
        ));
    }
    if let LoadModel::Open { rate } = scenario.load
        && !(rate.is_finite() && rate > 0.0)
    {
        return Err(RunError::Invalid(
            scenario.name.clone(),
            "the open-loop rate must be a positive number".into(),
        ));
    }
    if !(0.0..=1.0).contains(&scenario.mix.read_fraction) {
        return Err(RunError::Invalid(
            scenario.name.clone(),
            "the read fraction must be in [0, 1]".into(),
        ));
    }
    let work = prepare(&target, scenario).await?;
    after_setup();
    let mut connections = Vec::with_capacity(scenario.concurrency);
    for _ in 0..scenario.concurrency {
        connections.push(Connection::open(Arc::clone(&target)).await?);
    }
    let load_avg_before = results::load_average();
    let start = Instant::now();
    let measure_from = start + scenario.warmup;
    let end = measure_from + scenario.duration;
    let clock = Clock {
        start,
        measure_from,
        end,
        drain_until: end + scenario.duration.max(Duration::from_secs(5)),
    };
    window(measure_from, end);
    let shared = Arc::new(Shared {
        target,
        work,
        load: scenario.load,
        clock,
        next_due: AtomicU64::new(0),
        live: Live::default(),
    });
    let progress = tokio::spawn(progress(scenario.name.clone(), Arc::clone(&shared)));
    let mut workers = tokio::task::JoinSet::new();
    for (id, conn) in connections.into_iter().enumerate() {
        workers.spawn(worker(id, Arc::clone(&shared), conn));
    }
    let started_unix = results::unix_now();
    let mut get = results::new_histogram().map_err(|e| RunError::Histogram(e.to_string()))?;
    let mut put = results::new_histogram().map_err(|e| RunError::Histogram(e.to_string()))?;
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    let (mut transport_errors, mut not_sent) = (0, 0);
    let mut error_samples = BTreeMap::new();
    while let Some(done) = workers.join_next().await {
        let tally = done??;
        get.add(&tally.get)
            .map_err(|e| RunError::Histogram(format!("{e:?}")))?;
        put.add(&tally.put)
            .map_err(|e| RunError::Histogram(format!("{e:?}")))?;
        for (status, n) in tally.statuses {
            *statuses.entry(status).or_default() += n;
        }
        transport_errors += tally.transport_errors;
        not_sent += tally.not_sent;
        for (k, v) in tally.samples {
            error_samples.entry(k).or_insert(v);
        }
    }
    let timeline_rps = progress.await?;
    let load_avg_after = results::load_average();
    let mut all = get.clone();
    all.add(&put)
        .map_err(|e| RunError::Histogram(format!("{e:?}")))?;
    let measured_secs = scenario.duration.as_secs_f64();
    let http_errors: u64 = statuses
        .iter()
        .filter(|(s, _)| !(200..300).contains(*s))
        .map(|(_, n)| n)
        .sum();
    // Counts fit f64 exactly far beyond any run.
    #[allow(clippy::cast_precision_loss)]
    let throughput_rps = all.len() as f64 / measured_secs;
    Ok(ScenarioResult {
        scenario: scenario.clone(),
        started_unix,
        load_avg_before,
        load_avg_after,
        measured_secs,
        ok: all.len(),
        throughput_rps,
        latency: Latencies {
            all: LatencySummary::of(&all),
            get: LatencySummary::of(&get),
            put: LatencySummary::of(&put),
        },
        cdf: Distributions {
            all: results::cdf_points(&all),
            get: results::cdf_points(&get),
            put: results::cdf_points(&put),
        },
        status_counts: statuses
            .into_iter()
            .map(|(s, n)| (s.to_string(), n))
            .collect(),
        transport_errors,
        not_sent,
        errors: http_errors + transport_errors + not_sent,
        error_samples,
        timeline_rps,
        injectors: Vec::new(),
        postgres: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_have_the_requested_size_and_are_json_safe() {
        for len in [0, 1, 256, 4096] {
            let v = value_of(len, 7);
            assert_eq!(v.len(), len);
            assert!(
                v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            );
        }
        assert_ne!(value_of(64, 1), value_of(64, 2));
    }

    #[test]
    fn open_loop_schedule_is_evenly_spaced_from_the_start() {
        let start = Instant::now();
        assert_eq!(due(start, 1000.0, 0), start);
        assert_eq!(due(start, 1000.0, 1000), start + Duration::from_secs(1));
        let d = due(start, 3.0, 1) - start;
        assert!((d.as_secs_f64() - 1.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn the_mix_draw_matches_the_fraction() {
        let mut rng = SplitMix64(3);
        let n = 100_000;
        let reads = (0..n).filter(|_| rng.unit() < 0.9).count();
        assert!((89_000..91_000).contains(&reads), "{reads}");
        assert!((0..1000).all(|_| rng.below(7) < 7));
    }
}
