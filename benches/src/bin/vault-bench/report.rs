//! The rendered report: issue 10's targets checked against the figures, a table of every
//! scenario, and SVG charts (latency distributions, throughput and p99 against concurrency),
//! in one self-contained `report.html`.

use std::fmt::Write as _;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::results::{Report, ScenarioResult, TargetCheck, utc_text};
use crate::scenario::{self, Fault, Store};

/// One line per finished scenario for the console.
pub(crate) fn one_line(r: &ScenarioResult) -> String {
    let lat = r.latency.all;
    let (p50, p99, max) = lat.map_or((f64::NAN, f64::NAN, f64::NAN), |l| {
        (l.p50_ms, l.p99_ms, l.max_ms)
    });
    let load = r
        .load_avg_before
        .map_or_else(|| "-".into(), |l| format!("{:.2}", l[0]));
    format!(
        "{:<28} {:>9.0} req/s  p50 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms  errors {:>5}  load {load}",
        r.scenario.name, r.throughput_rps, p50, p99, max, r.errors
    )
}

fn find<'a>(results: &'a [ScenarioResult], name: &str) -> Option<&'a ScenarioResult> {
    results.iter().find(|r| r.scenario.name == name)
}

fn pct(measured: f64, target: f64) -> f64 {
    (measured / target - 1.0) * 100.0
}

/// Issue 10's targets against the results (targets whose scenarios did not run are listed with
/// `met: None`, not left out), the storage targets once per store. With a `remote` (`--url`)
/// server the store is the server's own and unknown here: the storage targets are checked
/// once, on the scenarios that ran, and say so.
pub(crate) fn check_targets(results: &[ScenarioResult], remote: bool) -> Vec<TargetCheck> {
    // A remote run has only the scenarios not tied to a store (named as the SQLite ones).
    let stores: &[Store] = if remote {
        &[Store::Sqlite]
    } else {
        &Store::ALL
    };
    let mut checks = Vec::new();
    for store in stores {
        checks.push(get_target(results, *store, remote));
    }
    for store in stores {
        checks.extend(put_targets(results, *store, remote));
    }
    checks.extend(fault_targets(results));
    checks
}

/// `target`, with the store it is checked on.
fn on(target: &str, store: Store, remote: bool) -> String {
    if remote {
        format!("{target} (the --url server's store)")
    } else {
        format!("{target} ({})", store.title())
    }
}

/// The GET target on `store`'s standard 64-worker run.
fn get_target(results: &[ScenarioResult], store: Store, remote: bool) -> TargetCheck {
    let target = on(
        "GET ≥ 10,000 req/s at 64 concurrent, p99 ≤ 20 ms",
        store,
        remote,
    );
    let name = match store {
        Store::Sqlite => "std-get-c64",
        Store::Postgres => "pg-std-get-c64",
    };
    let get = find(results, name).filter(|r| r.scenario.store == store);
    match get.and_then(|r| r.latency.all.map(|l| (r, l))) {
        Some((r, l)) => {
            let met = r.throughput_rps >= 10_000.0 && l.p99_ms <= 20.0 && r.errors == 0;
            TargetCheck {
                target,
                scenarios: r.scenario.name.clone(),
                measured: format!("{:.0} req/s, p99 {:.2} ms", r.throughput_rps, l.p99_ms),
                met: Some(met),
                margin: format!(
                    "throughput {:+.0}% vs 10,000; p99 {:+.0}% vs 20 ms",
                    pct(r.throughput_rps, 10_000.0),
                    pct(l.p99_ms, 20.0)
                ),
            }
        }
        None => missing(&target, name),
    }
}

/// The two PUT targets on `store`'s best standard closed-loop PUT run (the issue does not fix
/// the concurrency for writes).
fn put_targets(results: &[ScenarioResult], store: Store, remote: bool) -> [TargetCheck; 2] {
    let durable = on("Durable PUT ≥ 1,000 req/s, p99 ≤ 50 ms", store, remote);
    let grouped = on("PUT ≥ 3,000 req/s with group commit", store, remote);
    let pattern = match store {
        Store::Sqlite => "std-put-c*",
        Store::Postgres => "pg-std-put-c*",
    };
    let best_put = results
        .iter()
        .filter(|r| {
            r.scenario.store == store
                && r.scenario.custody == scenario::Custody::Standard
                && r.scenario.mix.read_fraction <= 0.0
                && r.scenario.load == scenario::LoadModel::Closed
                && r.scenario.fault == Fault::None
        })
        .filter_map(|r| r.latency.all.map(|l| (r, l)))
        .max_by(|a, b| a.0.throughput_rps.total_cmp(&b.0.throughput_rps));
    let durable = match best_put {
        Some((r, l)) => TargetCheck {
            target: durable,
            scenarios: format!("{} (best standard PUT run)", r.scenario.name),
            measured: format!("{:.0} req/s, p99 {:.2} ms", r.throughput_rps, l.p99_ms),
            met: Some(r.throughput_rps >= 1000.0 && l.p99_ms <= 50.0 && r.errors == 0),
            margin: format!(
                "throughput {:+.0}% vs 1,000; p99 {:+.0}% vs 50 ms",
                pct(r.throughput_rps, 1000.0),
                pct(l.p99_ms, 50.0)
            ),
        },
        None => missing(&durable, pattern),
    };
    let grouped = match best_put {
        Some((r, _)) => TargetCheck {
            target: grouped,
            scenarios: format!("{} (best standard PUT run)", r.scenario.name),
            measured: format!("{:.0} req/s", r.throughput_rps),
            met: Some(r.throughput_rps >= 3000.0 && r.errors == 0),
            margin: format!("{:+.0}% vs 3,000", pct(r.throughput_rps, 3000.0)),
        },
        None => missing(&grouped, pattern),
    };
    [durable, grouped]
}

/// The provider-fault targets (SQLite runs only: the fault scenarios are not repeated on
/// PostgreSQL, whose store is not what they measure).
fn fault_targets(results: &[ScenarioResult]) -> [TargetCheck; 2] {
    let base = find(results, "2of3hsm-get-c64");
    let down = find(results, "2of3hsm-get-c64-aws-down");
    let outage = match (base, down) {
        (Some(base), Some(down)) if base.throughput_rps > 0.0 => {
            let change = pct(down.throughput_rps, base.throughput_rps);
            TargetCheck {
                target: "One provider down (2of3_multi_hsm): GET throughput at most 10% lower"
                    .into(),
                scenarios: format!("{} vs {}", down.scenario.name, base.scenario.name),
                measured: format!(
                    "{:.0} vs {:.0} req/s ({change:+.1}%), {} errors",
                    down.throughput_rps, base.throughput_rps, down.errors
                ),
                met: Some(change >= -10.0 && down.errors == 0),
                margin: format!("{change:+.1}% (limit −10%)"),
            }
        }
        _ => missing(
            "One provider down (2of3_multi_hsm): GET throughput at most 10% lower",
            "2of3hsm-get-c64, 2of3hsm-get-c64-aws-down",
        ),
    };

    let hedged = find(results, "2of3hsm-get-c16-latency");
    let second = Fault::SECOND_FASTEST_MEDIAN.as_secs_f64() * 1000.0;
    let hedging = match hedged.and_then(|r| r.latency.get.map(|l| (r, l))) {
        Some((r, l)) => TargetCheck {
            target: "Injected latencies 20/40/80 ms: GET p50 within 10% of the second-fastest \
                     provider"
                .into(),
            scenarios: r.scenario.name.clone(),
            measured: format!(
                "GET p50 {:.2} ms (second-fastest provider: {second:.0} ms)",
                l.p50_ms
            ),
            met: Some(l.p50_ms <= second * 1.1 && r.errors == 0),
            margin: format!(
                "{:+.1}% vs {second:.0} ms (limit +10%)",
                pct(l.p50_ms, second)
            ),
        },
        None => missing(
            "Injected latencies 20/40/80 ms: GET p50 within 10% of the second-fastest provider",
            "2of3hsm-get-c16-latency",
        ),
    };
    [outage, hedging]
}

fn missing(target: &str, scenarios: &str) -> TargetCheck {
    TargetCheck {
        target: target.into(),
        scenarios: scenarios.into(),
        measured: "not run (scenario filtered out)".into(),
        met: None,
        margin: "-".into(),
    }
}

/// The targets as console text.
pub(crate) fn targets_text(checks: &[TargetCheck]) -> String {
    let mut out = String::from("\nTargets (issue 10):\n");
    for c in checks {
        let verdict = match c.met {
            Some(true) => "MET",
            Some(false) => "NOT MET",
            None => "NOT RUN",
        };
        let _ = writeln!(
            out,
            "  [{verdict:^7}] {}\n            {} on {}; {}",
            c.target, c.measured, c.scenarios, c.margin
        );
    }
    out
}

/// HTML-escapes text.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The whole report page.
pub(crate) fn html(report: &Report) -> String {
    let mut page = String::new();
    let m = &report.machine;
    let _ = write!(
        page,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>mpc-vault benchmark report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1300px; }}
table {{ border-collapse: collapse; margin: 1em 0; font-size: 14px; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
th {{ background: #f3f3f3; }} td.l, th.l {{ text-align: left; }}
.met {{ color: #0a0; font-weight: bold; }} .miss {{ color: #c00; font-weight: bold; }}
.bar {{ background: #4a7bd0; height: 10px; display: inline-block; }}
figure {{ display: inline-block; margin: 0.5em; }}
</style></head><body>
<h1>mpc-vault benchmark report</h1>
<p>{tool}, started {started}. Server: {server} ({sthreads} server threads, {cthreads} load-generator thread(s)).
Machine: {nproc} CPUs, {cpu}, {arch}, Linux {kernel}. The load generator runs on the same machine
and competes for the same CPUs; the load average before each run is listed because other work
(parallel builds) may share the machine.</p>
"#,
        tool = esc(&report.tool),
        started = utc_text(report.started_unix),
        server = esc(&report.server),
        sthreads = report.server_threads,
        cthreads = report.client_threads,
        nproc = m.nproc,
        cpu = esc(m.cpu_model.as_deref().unwrap_or("unknown CPU")),
        arch = esc(&m.arch),
        kernel = esc(m.kernel.as_deref().unwrap_or("?")),
    );

    page.push_str("<h2>Targets (issue 10)</h2>\n<table><tr><th class=l>target</th><th class=l>scenario</th><th class=l>measured</th><th class=l>margin</th><th>verdict</th></tr>\n");
    for c in &report.targets {
        let verdict = match c.met {
            Some(true) => "<span class=met>met</span>",
            Some(false) => "<span class=miss>not met</span>",
            None => "not run",
        };
        let _ = writeln!(
            page,
            "<tr><td class=l>{}</td><td class=l>{}</td><td class=l>{}</td><td class=l>{}</td><td>{verdict}</td></tr>",
            esc(&c.target),
            esc(&c.scenarios),
            esc(&c.measured),
            esc(&c.margin)
        );
    }
    page.push_str("</table>\n");

    page.push_str("<h2>Throughput and latency against concurrency (standard vault)</h2>\n");
    page.push_str(&figure(&concurrency_chart(&report.scenarios, false)));
    page.push_str(&figure(&concurrency_chart(&report.scenarios, true)));

    let mut groups: Vec<&str> = Vec::new();
    for r in &report.scenarios {
        if !groups.contains(&r.scenario.group.as_str()) {
            groups.push(&r.scenario.group);
        }
    }
    page.push_str("<h2>Latency distributions</h2>\n<p>Latency by percentile (successful requests; open-loop runs count from each request's due time). The x axis stretches the tail: each step is ten times rarer.</p>\n");
    for group in &groups {
        let members: Vec<&ScenarioResult> = report
            .scenarios
            .iter()
            .filter(|r| r.scenario.group == *group)
            .collect();
        page.push_str(&figure(&latency_chart(group, &members)));
    }

    page.push_str("<h2>Every scenario</h2>\n");
    let top = report
        .scenarios
        .iter()
        .map(|r| r.throughput_rps)
        .fold(1.0_f64, f64::max);
    page.push_str("<table><tr><th class=l>scenario</th><th class=l>custody</th><th class=l>load</th><th>conc.</th><th>value B</th><th class=l>fault</th><th class=l>store</th><th>req/s</th><th class=l></th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th><th>GET p50</th><th>PUT p50</th><th>errors</th><th class=l>statuses</th><th>load avg</th></tr>\n");
    for r in &report.scenarios {
        let s = &r.scenario;
        let l = r.latency.all;
        let f = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.2}"));
        let load = match s.load {
            scenario::LoadModel::Closed => format!("closed, {}", s.mix.label()),
            scenario::LoadModel::Open { rate } => format!("open {rate:.0}/s, {}", s.mix.label()),
        };
        let statuses: Vec<String> = r
            .status_counts
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .chain((r.transport_errors > 0).then(|| format!("io: {}", r.transport_errors)))
            .chain((r.not_sent > 0).then(|| format!("not sent: {}", r.not_sent)))
            .collect();
        let width = (r.throughput_rps / top * 160.0).max(1.0);
        let _ = writeln!(
            page,
            "<tr><td class=l>{}</td><td class=l>{}</td><td class=l>{}</td><td>{}</td><td>{}</td><td class=l>{}</td><td class=l>{}</td><td>{:.0}</td><td class=l><span class=bar style=\"width:{width:.0}px\"></span></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=l>{}</td><td>{}</td></tr>",
            esc(&s.name),
            s.custody,
            esc(&load),
            s.concurrency,
            s.value_bytes,
            fault_name(s.fault),
            store_text(report, r),
            r.throughput_rps,
            f(l.map(|l| l.p50_ms)),
            f(l.map(|l| l.p95_ms)),
            f(l.map(|l| l.p99_ms)),
            f(l.map(|l| l.p999_ms)),
            f(l.map(|l| l.max_ms)),
            f(r.latency.get.map(|l| l.p50_ms)),
            f(r.latency.put.map(|l| l.p50_ms)),
            r.errors,
            esc(&statuses.join(", ")),
            r.load_avg_before
                .map_or_else(|| "-".into(), |l| format!("{:.2}", l[0])),
        );
    }
    page.push_str("</table>\n");
    page.push_str(&postgres_section(report));
    let samples: Vec<String> = report
        .scenarios
        .iter()
        .flat_map(|r| {
            r.error_samples
                .iter()
                .map(move |(k, v)| format!("{}: {k}: {v}", r.scenario.name))
        })
        .collect();
    if !samples.is_empty() {
        page.push_str("<h3>Error samples (one per scenario and status)</h3><pre>");
        page.push_str(&esc(&samples.join("\n")));
        page.push_str("</pre>\n");
    }
    page.push_str("</body></html>\n");
    page
}

/// The store column: the scenario's store on the in-process server; a `--url` server's store is
/// its own and unknown here.
fn store_text(report: &Report, r: &ScenarioResult) -> String {
    if report.server != "in-process" {
        return "remote".into();
    }
    match &r.postgres {
        Some(pg) => format!("postgres (pool {})", pg.pool_max_connections),
        None => r.scenario.store.name().into(),
    }
}

/// The PostgreSQL server and settings the `pg-*` scenarios ran on, read back from the server
/// (one table per distinct server and settings; usually one for the whole run).
fn postgres_section(report: &Report) -> String {
    let mut seen: Vec<(&crate::results::PgSettings, Vec<&str>)> = Vec::new();
    for r in &report.scenarios {
        let Some(pg) = &r.postgres else { continue };
        let same = |other: &crate::results::PgSettings| {
            other.server == pg.server
                && other.version == pg.version
                && other.settings == pg.settings
                && other.pool_max_connections == pg.pool_max_connections
                && other.checkpoint_before_run == pg.checkpoint_before_run
        };
        match seen.iter_mut().find(|(other, _)| same(other)) {
            Some((_, names)) => names.push(&r.scenario.name),
            None => seen.push((pg, vec![&r.scenario.name])),
        }
    }
    if seen.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<h2>PostgreSQL</h2>\n<p>Every PostgreSQL scenario runs on a fresh database, dropped after it. The settings below are read back from the server before each run.</p>\n",
    );
    for (pg, names) in seen {
        let _ = writeln!(
            out,
            "<p><b>{}</b>: {}; pool {} connections; checkpoint before each run: {}; commits {}. Scenarios: {}.</p>",
            esc(&pg.server),
            esc(&pg.version),
            pg.pool_max_connections,
            if pg.checkpoint_before_run {
                "yes"
            } else {
                "no (not permitted)"
            },
            if pg.durable() {
                "durable (fsync, synchronous_commit)"
            } else {
                "<span class=miss>NOT durable</span>"
            },
            esc(&names.join(", ")),
        );
        out.push_str("<table><tr><th class=l>setting</th><th class=l>value</th></tr>\n");
        for (name, value) in &pg.settings {
            let _ = writeln!(
                out,
                "<tr><td class=l>{}</td><td class=l>{}</td></tr>",
                esc(name),
                esc(value)
            );
        }
        out.push_str("</table>\n");
    }
    let probed: Vec<(&ScenarioResult, crate::results::WalActivity)> = report
        .scenarios
        .iter()
        .filter_map(|r| Some((r, r.postgres.as_ref()?.wal_in_window?)))
        .collect();
    if !probed.is_empty() {
        out.push_str(
            "<h3>WAL flushes in the measured window</h3>\n<p>From <code>pg_stat_wal</code> (cluster-wide) and the scenario database's <code>pg_stat_database</code>, read at both ends of the window. Every request writes (a PUT its version, a GET its access count), so requests per WAL flush above 1 means concurrent commits shared a flush. Backends publish their counters at most once a second: short windows are approximate.</p>\n<table><tr><th class=l>scenario</th><th>requests</th><th>commits</th><th>WAL flushes</th><th>WAL writes</th><th>WAL MiB</th><th>requests per flush</th></tr>\n",
        );
        for (r, wal) in probed {
            // Display only: a few MiB, far below f64's exact range.
            #[allow(clippy::cast_precision_loss)]
            let mib = wal.wal_bytes as f64 / f64::from(1u32 << 20);
            let _ = writeln!(
                out,
                "<tr><td class=l>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{mib:.1}</td><td>{}</td></tr>",
                esc(&r.scenario.name),
                r.ok,
                wal.commits,
                wal.wal_syncs,
                wal.wal_writes,
                wal.requests_per_wal_sync
                    .map_or_else(|| "-".into(), |v| format!("{v:.2}")),
            );
        }
        out.push_str("</table>\n");
    }
    out
}

fn fault_name(f: Fault) -> &'static str {
    match f {
        Fault::None => "none",
        Fault::AwsDown => "aws down",
        Fault::Latency => "20/40/80 ms",
    }
}

fn figure(svg: &str) -> String {
    format!("<figure>{svg}</figure>\n")
}

/// Chart size in pixels.
const SIZE: (u32, u32) = (620, 400);

/// Where a latency quantile goes on the stretched axis: `-log10(1 - q)`, with the maximum
/// drawn one step past 99.99%.
fn tail_x(q: f64) -> f64 {
    if q >= 1.0 { 5.0 } else { -(1.0 - q).log10() }
}

/// Draws into an SVG string; a drawing error leaves an explanatory note instead of a chart.
fn svg(draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> Result<(), String>) -> String {
    let mut out = String::new();
    let result = {
        let root = SVGBackend::with_string(&mut out, SIZE).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| e.to_string())
            .and_then(|()| draw(&root))
            .and_then(|()| root.present().map_err(|e| e.to_string()))
    };
    match result {
        Ok(()) => out,
        Err(e) => format!("<p>chart not drawn: {}</p>", esc(&e)),
    }
}

fn latency_chart(title: &str, members: &[&ScenarioResult]) -> String {
    let top = members
        .iter()
        .flat_map(|r| r.cdf.all.iter().map(|p| p.1))
        .fold(1.0_f64, f64::max);
    let bottom = members
        .iter()
        .flat_map(|r| r.cdf.all.iter().map(|p| p.1))
        .fold(top, f64::min)
        .max(0.01);
    svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(0.0..5.2_f64, (bottom * 0.8..top * 1.3).log_scale())
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("latency (ms)")
            .x_labels(6)
            .x_label_formatter(&|x| {
                // Labels only at whole steps of the stretched axis.
                let labels = ["0%", "90%", "99%", "99.9%", "99.99%", "max"];
                labels
                    .iter()
                    .zip(0u8..)
                    .find(|(_, step)| (x - f64::from(*step)).abs() < 0.05)
                    .map_or_else(String::new, |(label, _)| (*label).to_owned())
            })
            .y_label_formatter(&|y| format!("{y}"))
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, r) in members.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let points: Vec<(f64, f64)> = r
                .cdf
                .all
                .iter()
                .map(|&(q, ms)| (tail_x(q), ms.max(bottom)))
                .collect();
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(r.scenario.name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font(("sans-serif", 11))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())
    })
}

/// Throughput (or p99 with `p99`) against concurrency for the standard closed-loop GET, PUT
/// and 90/10 runs, one series per store and mix.
fn concurrency_chart(results: &[ScenarioResult], p99: bool) -> String {
    let mixes = [
        scenario::Mix::GET,
        scenario::Mix::PUT,
        scenario::Mix::MIX_90_10,
    ];
    let series: Vec<(String, Vec<(f64, f64)>)> = Store::ALL
        .iter()
        .flat_map(|store| mixes.iter().map(move |mix| (*store, *mix)))
        .map(|(store, mix)| {
            let mut points: Vec<(f64, f64)> = results
                .iter()
                .filter(|r| {
                    matches!(
                        r.scenario.group.as_str(),
                        scenario::GROUP_CONCURRENCY | scenario::GROUP_PG
                    ) && r.scenario.store == store
                        && r.scenario.mix == mix
                })
                .filter_map(|r| {
                    let y = if p99 {
                        r.latency.all?.p99_ms
                    } else {
                        r.throughput_rps
                    };
                    // Concurrency is at most a few thousand: exact in f64.
                    #[allow(clippy::cast_precision_loss)]
                    let x = r.scenario.concurrency as f64;
                    Some((x, y))
                })
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            (format!("{} {}", store.name(), mix.label()), points)
        })
        .filter(|(_, p)| !p.is_empty())
        .collect();
    let top = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| q.1))
        .fold(1.0_f64, f64::max);
    let (title, ydesc) = if p99 {
        ("p99 latency vs concurrency", "p99 latency (ms)")
    } else {
        ("Throughput vs concurrency", "successful requests / s")
    };
    svg(|root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d((0.8..100.0_f64).log_scale(), 0.0..top * 1.15)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("concurrent workers (log)")
            .y_desc(ydesc)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, (label, points)) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(label.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(|e| e.to_string())?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{Distributions, Latencies, LatencySummary, Machine, PgSettings};
    use crate::scenario::{Custody, Mix, Scenario, SuiteTiming};

    fn result(
        name: &str,
        mix: Mix,
        custody: Custody,
        c: usize,
        rps: f64,
        p99: f64,
    ) -> ScenarioResult {
        let mut s = Scenario::closed(
            scenario::GROUP_CONCURRENCY,
            mix,
            custody,
            c,
            SuiteTiming::QUICK,
        );
        s.name = name.into();
        if name.ends_with("aws-down") {
            s.fault = Fault::AwsDown;
        }
        if name.starts_with("pg-") {
            s.store = Store::Postgres;
            s.group = scenario::GROUP_PG.into();
        }
        let l = LatencySummary {
            count: 100,
            mean_ms: p99 / 3.0,
            p50_ms: p99 / 4.0,
            p95_ms: p99 / 2.0,
            p99_ms: p99,
            p999_ms: p99 * 1.5,
            max_ms: p99 * 2.0,
        };
        ScenarioResult {
            scenario: s,
            started_unix: 0,
            load_avg_before: Some([1.0, 1.0, 1.0]),
            load_avg_after: None,
            measured_secs: 5.0,
            ok: 100,
            throughput_rps: rps,
            latency: Latencies {
                all: Some(l),
                get: Some(l),
                put: None,
            },
            cdf: Distributions {
                all: vec![(0.0, 0.5), (0.9, p99 / 2.0), (0.99, p99), (1.0, p99 * 2.0)],
                ..Distributions::default()
            },
            status_counts: [("200".to_string(), 100)].into_iter().collect(),
            transport_errors: 0,
            not_sent: 0,
            errors: 0,
            error_samples: Default::default(),
            timeline_rps: vec![rps],
            injectors: Vec::new(),
            postgres: name.starts_with("pg-").then(|| PgSettings {
                server: "throwaway cluster".into(),
                database: "vault_bench_1_1".into(),
                version: "PostgreSQL 15.14".into(),
                pool_max_connections: 10,
                checkpoint_before_run: true,
                settings: [("fsync", "on"), ("synchronous_commit", "on")]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
                wal_in_window: Some(crate::results::WalActivity {
                    wal_syncs: 40,
                    wal_writes: 41,
                    wal_bytes: 3 << 20,
                    commits: 300,
                    requests_per_wal_sync: Some(2.5),
                }),
            }),
        }
    }

    #[test]
    fn targets_are_judged_on_the_figures() {
        let results = vec![
            result(
                "std-get-c64",
                Mix::GET,
                Custody::Standard,
                64,
                12_000.0,
                15.0,
            ),
            result("std-put-c16", Mix::PUT, Custody::Standard, 16, 900.0, 30.0),
            result(
                "std-put-c64",
                Mix::PUT,
                Custody::Standard,
                64,
                1_200.0,
                60.0,
            ),
            result(
                "2of3hsm-get-c64",
                Mix::GET,
                Custody::TwoOfThreeMultiHsm,
                64,
                1000.0,
                10.0,
            ),
            result(
                "2of3hsm-get-c64-aws-down",
                Mix::GET,
                Custody::TwoOfThreeMultiHsm,
                64,
                850.0,
                10.0,
            ),
        ];
        let checks = check_targets(&results, false);
        assert_eq!(checks.len(), 8);
        // GET on SQLite met; GET on PostgreSQL not run.
        assert_eq!(checks[0].met, Some(true));
        assert!(checks[0].target.ends_with("(SQLite)"));
        assert_eq!(checks[1].met, None);
        assert!(checks[1].target.ends_with("(PostgreSQL)"));
        assert_eq!(checks[1].scenarios, "pg-std-get-c64");
        // The best PUT run (1,200 req/s) misses on p99 (60 > 50 ms).
        assert_eq!(checks[2].met, Some(false));
        assert!(checks[2].scenarios.starts_with("std-put-c64"));
        assert_eq!(checks[3].met, Some(false));
        // No PostgreSQL PUT run.
        assert_eq!((checks[4].met, checks[5].met), (None, None));
        // 850 vs 1000 is 15% lower.
        assert_eq!(checks[6].met, Some(false));
        assert!(
            checks[6].margin.starts_with("-15.0%"),
            "{}",
            checks[6].margin
        );
        // The latency scenario did not run: listed, not judged.
        assert_eq!(checks[7].met, None);
        assert!(targets_text(&checks).contains("NOT RUN"));
    }

    /// PostgreSQL rows are judged on their own, never mixed with the SQLite ones: a faster
    /// PostgreSQL PUT run does not become the SQLite best, and the other way round.
    #[test]
    fn targets_are_judged_per_store() {
        let results = vec![
            result("std-put-c16", Mix::PUT, Custody::Standard, 16, 900.0, 30.0),
            result(
                "pg-std-put-c16",
                Mix::PUT,
                Custody::Standard,
                16,
                2_000.0,
                20.0,
            ),
            result(
                "pg-std-put-c64",
                Mix::PUT,
                Custody::Standard,
                64,
                3_500.0,
                40.0,
            ),
            result(
                "pg-std-get-c64",
                Mix::GET,
                Custody::Standard,
                64,
                9_000.0,
                12.0,
            ),
        ];
        let checks = check_targets(&results, false);
        assert_eq!(checks[0].met, None, "no SQLite GET run");
        assert_eq!(checks[1].met, Some(false), "9,000 < 10,000");
        assert!(checks[2].scenarios.starts_with("std-put-c16"));
        assert_eq!((checks[2].met, checks[3].met), (Some(false), Some(false)));
        assert!(checks[4].scenarios.starts_with("pg-std-put-c64"));
        assert_eq!((checks[4].met, checks[5].met), (Some(true), Some(true)));
        // Against a --url server the store is unknown: the storage targets appear once,
        // without a store's name.
        let remote = check_targets(&results[..1], true);
        assert_eq!(remote.len(), 5);
        assert!(remote[0].target.ends_with("(the --url server's store)"));
        assert!(remote.iter().all(|c| !c.target.contains("SQLite")));
        assert!(remote[1].scenarios.starts_with("std-put-c16"));
    }

    #[test]
    fn the_page_has_charts_and_escapes_text() {
        let mut results = vec![
            result("std-get-c1", Mix::GET, Custody::Standard, 1, 500.0, 2.0),
            result("std-get-c16", Mix::GET, Custody::Standard, 16, 4000.0, 6.0),
            result("pg-std-get-c1", Mix::GET, Custody::Standard, 1, 400.0, 3.0),
            result(
                "pg-std-get-c16",
                Mix::GET,
                Custody::Standard,
                16,
                3000.0,
                8.0,
            ),
        ];
        results[0]
            .error_samples
            .insert("500".into(), "<script>".into());
        let report = Report {
            tool: "vault-bench test".into(),
            started_unix: 0,
            machine: Machine::detect(),
            server: "in-process".into(),
            server_threads: 2,
            client_threads: 1,
            targets: check_targets(&results, false),
            scenarios: results,
        };
        let page = html(&report);
        assert!(page.matches("<svg").count() >= 3, "charts missing");
        assert!(page.contains("Throughput vs concurrency"));
        assert!(page.contains("&lt;script&gt;") && !page.contains("<script>"));
        assert!(!page.contains("chart not drawn"));
        // The store column, both stores' series, and the PostgreSQL settings.
        assert!(page.contains("<th class=l>store</th>"));
        assert!(page.contains("postgres (pool 10)") && page.contains("<td class=l>sqlite</td>"));
        assert!(page.contains("sqlite get") && page.contains("postgres get"));
        assert!(page.contains("<h2>PostgreSQL</h2>") && page.contains("synchronous_commit"));
        assert!(page.contains("Scenarios: pg-std-get-c1, pg-std-get-c16."));
        assert!(page.contains("WAL flushes in the measured window"));
        assert!(page.contains("<td>40</td><td>41</td><td>3.0</td><td>2.50</td>"));
    }
}
