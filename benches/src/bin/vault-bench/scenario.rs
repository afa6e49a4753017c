//! What a run does: the workload, the custody mode, the load model, the injected faults, and the
//! built-in suite that `scripts/bench` runs.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A vault's custody mode, as the API names it (`mpc_custody`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Custody {
    /// No MPC custody: the DEK is wrapped by one provider.
    #[serde(rename = "standard")]
    Standard,
    /// XOR 2-of-2: one provider share, one share held by the client (`X-Client-Share`).
    #[serde(rename = "2of2_client_custody")]
    TwoOfTwoClient,
    /// Shamir 2-of-3 over three providers; reads are hedged across all three.
    #[serde(rename = "2of3_multi_hsm")]
    TwoOfThreeMultiHsm,
    /// Shamir 2-of-3: two provider shares and one client share.
    #[serde(rename = "2of3_client_custody")]
    TwoOfThreeClient,
}

impl Custody {
    /// Every mode, in the order the report lists them.
    pub(crate) const ALL: [Custody; 4] = [
        Custody::Standard,
        Custody::TwoOfTwoClient,
        Custody::TwoOfThreeMultiHsm,
        Custody::TwoOfThreeClient,
    ];

    /// The `mpc_custody` value to create the vault with (`None` for a standard vault).
    pub(crate) fn api_name(self) -> Option<&'static str> {
        match self {
            Custody::Standard => None,
            Custody::TwoOfTwoClient => Some("2of2_client_custody"),
            Custody::TwoOfThreeMultiHsm => Some("2of3_multi_hsm"),
            Custody::TwoOfThreeClient => Some("2of3_client_custody"),
        }
    }

    /// A short name for scenario names.
    fn short(self) -> &'static str {
        match self {
            Custody::Standard => "std",
            Custody::TwoOfTwoClient => "2of2cc",
            Custody::TwoOfThreeMultiHsm => "2of3hsm",
            Custody::TwoOfThreeClient => "2of3cc",
        }
    }
}

impl fmt::Display for Custody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.api_name().unwrap_or("standard"))
    }
}

impl FromStr for Custody {
    type Err = String;

    fn from_str(s: &str) -> Result<Custody, String> {
        Custody::ALL
            .into_iter()
            .find(|c| c.to_string() == s)
            .ok_or_else(|| {
                format!(
                    "unknown custody mode `{s}`; use standard, 2of2_client_custody, \
                     2of3_multi_hsm or 2of3_client_custody"
                )
            })
    }
}

/// The share of requests that are reads; the rest are writes (new versions).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct Mix {
    /// In `[0, 1]`: 1 is GET-only, 0 is PUT-only.
    pub(crate) read_fraction: f64,
}

impl Mix {
    /// GET-only.
    pub(crate) const GET: Mix = Mix { read_fraction: 1.0 };
    /// PUT-only.
    pub(crate) const PUT: Mix = Mix { read_fraction: 0.0 };
    /// 90% GET, 10% PUT.
    pub(crate) const MIX_90_10: Mix = Mix { read_fraction: 0.9 };

    /// `get`, `put` or `mix90` style label.
    pub(crate) fn label(self) -> String {
        if self.read_fraction >= 1.0 {
            "get".into()
        } else if self.read_fraction <= 0.0 {
            "put".into()
        } else {
            format!("mix{:.0}", self.read_fraction * 100.0)
        }
    }
}

impl FromStr for Mix {
    type Err = String;

    /// `get`, `put`, or the read percentage as `mix90` / `mix:90`.
    fn from_str(s: &str) -> Result<Mix, String> {
        match s {
            "get" => Ok(Mix::GET),
            "put" => Ok(Mix::PUT),
            _ => {
                let pct = s
                    .strip_prefix("mix")
                    .map(|p| p.trim_start_matches(':'))
                    .and_then(|p| p.parse::<u8>().ok())
                    .filter(|p| *p <= 100)
                    .ok_or_else(|| {
                        format!("unknown mix `{s}`; use get, put or mixNN (NN = % of reads)")
                    })?;
                Ok(Mix {
                    read_fraction: f64::from(pct) / 100.0,
                })
            }
        }
    }
}

/// How requests are issued.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum LoadModel {
    /// Each worker sends its next request as soon as the previous one is answered.
    Closed,
    /// Requests are due at a fixed rate whatever the server does; latency is measured from the
    /// time a request was due, so a stalled server is charged for every request it delayed
    /// (no coordinated omission).
    Open {
        /// Requests per second, over all workers.
        rate: f64,
    },
}

/// A fault injected into the in-process server's providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Fault {
    /// Providers as configured.
    None,
    /// The `aws` provider fails every call (after the secrets were written), as if it were down.
    AwsDown,
    /// Every provider call is delayed: gcp 18–22 ms, aws 36–44 ms, azure 72–88 ms (uniform
    /// jitter; medians 20, 40 and 80 ms).
    Latency,
}

impl Fault {
    /// The injected (base, jitter) per provider for [`Fault::Latency`].
    pub(crate) const LATENCIES: [(&'static str, Duration, Duration); 3] = [
        ("gcp", Duration::from_millis(18), Duration::from_millis(4)),
        ("aws", Duration::from_millis(36), Duration::from_millis(8)),
        (
            "azure",
            Duration::from_millis(72),
            Duration::from_millis(16),
        ),
    ];

    /// The median latency of the second-fastest provider under [`Fault::Latency`]: the
    /// latency a hedged 2-of-3 read should approach.
    pub(crate) const SECOND_FASTEST_MEDIAN: Duration = Duration::from_millis(40);
}

impl FromStr for Fault {
    type Err = String;

    fn from_str(s: &str) -> Result<Fault, String> {
        match s {
            "none" => Ok(Fault::None),
            "aws-down" | "aws_down" => Ok(Fault::AwsDown),
            "latency" => Ok(Fault::Latency),
            _ => Err(format!(
                "unknown fault `{s}`; use none, aws-down or latency"
            )),
        }
    }
}

/// Where the in-process server keeps its records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Store {
    /// SQLite in the server's temporary data directory, with durable commits (the default
    /// configuration).
    #[default]
    Sqlite,
    /// PostgreSQL: a fresh database per scenario, in a throwaway cluster vault-bench starts
    /// (fsync and synchronous_commit on) or on the server given with `--database-url`.
    Postgres,
}

impl Store {
    /// Every store, in the order the report lists them.
    pub(crate) const ALL: [Store; 2] = [Store::Sqlite, Store::Postgres];

    /// The name on the command line and in the results.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Store::Sqlite => "sqlite",
            Store::Postgres => "postgres",
        }
    }

    /// The name as people write it, for the report's prose.
    pub(crate) fn title(self) -> &'static str {
        match self {
            Store::Sqlite => "SQLite",
            Store::Postgres => "PostgreSQL",
        }
    }
}

impl fmt::Display for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Store {
    type Err = String;

    fn from_str(s: &str) -> Result<Store, String> {
        match s {
            "sqlite" => Ok(Store::Sqlite),
            "postgres" | "postgresql" => Ok(Store::Postgres),
            _ => Err(format!("unknown store `{s}`; use sqlite or postgres")),
        }
    }
}

/// One measured run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Scenario {
    /// Unique, stable name (`std-get-c64`).
    pub(crate) name: String,
    /// The report section it belongs to.
    pub(crate) group: String,
    /// GET/PUT mix.
    pub(crate) mix: Mix,
    /// The vault's custody mode.
    pub(crate) custody: Custody,
    /// Workers, each with its own keep-alive connection.
    pub(crate) concurrency: usize,
    /// Closed or open loop.
    pub(crate) load: LoadModel,
    /// Size of each secret value, in bytes.
    pub(crate) value_bytes: usize,
    /// Distinct secrets the reads pick from (written before the run).
    pub(crate) keys: usize,
    /// Injected fault (in-process server only).
    pub(crate) fault: Fault,
    /// The in-process server's store (results written before stores were selectable ran on
    /// SQLite, hence the default).
    #[serde(default)]
    pub(crate) store: Store,
    /// Measured time.
    #[serde(with = "secs")]
    pub(crate) duration: Duration,
    /// Time run before measuring (same load, not recorded).
    #[serde(with = "secs")]
    pub(crate) warmup: Duration,
}

/// Durations as fractional seconds in the JSON.
mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

/// Durations for the built-in suite.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SuiteTiming {
    /// Measured time per scenario.
    pub(crate) duration: Duration,
    /// Warm-up per scenario.
    pub(crate) warmup: Duration,
}

impl SuiteTiming {
    /// The default: short runs, enough for stable medians on a quiet machine.
    pub(crate) const QUICK: SuiteTiming = SuiteTiming {
        duration: Duration::from_secs(5),
        warmup: Duration::from_secs(1),
    };
    /// `--full`: longer runs for stable tails.
    pub(crate) const FULL: SuiteTiming = SuiteTiming {
        duration: Duration::from_secs(30),
        warmup: Duration::from_secs(5),
    };
}

/// Defaults for one scenario; the suite and the `run` command fill in the rest.
pub(crate) const DEFAULT_VALUE_BYTES: usize = 256;
/// Secrets written before a run, for reads to pick from.
pub(crate) const DEFAULT_KEYS: usize = 100;

impl Scenario {
    /// A closed-loop scenario with the defaults, named after its parameters.
    pub(crate) fn closed(
        group: &str,
        mix: Mix,
        custody: Custody,
        concurrency: usize,
        timing: SuiteTiming,
    ) -> Scenario {
        Scenario {
            name: format!("{}-{}-c{concurrency}", custody.short(), mix.label()),
            group: group.to_owned(),
            mix,
            custody,
            concurrency,
            load: LoadModel::Closed,
            value_bytes: DEFAULT_VALUE_BYTES,
            keys: DEFAULT_KEYS,
            fault: Fault::None,
            store: Store::Sqlite,
            duration: timing.duration,
            warmup: timing.warmup,
        }
    }

    /// The same scenario with a fault, renamed.
    fn with_fault(mut self, fault: Fault, suffix: &str) -> Scenario {
        self.fault = fault;
        self.name = format!("{}-{suffix}", self.name);
        self
    }

    /// The same scenario on `store`, renamed (`pg-` in front for PostgreSQL; SQLite scenarios
    /// keep the names they had before stores were selectable).
    pub(crate) fn on_store(mut self, store: Store) -> Scenario {
        if self.store == Store::Sqlite && store == Store::Postgres {
            self.name = format!("pg-{}", self.name);
        }
        self.store = store;
        self
    }

    /// The same scenario open-loop at `rate` requests per second, renamed.
    fn open_loop(mut self, rate: f64) -> Scenario {
        self.load = LoadModel::Open { rate };
        self.name = format!("{}-open{rate:.0}", self.name);
        self
    }
}

/// Report groups, in order.
pub(crate) const GROUP_CONCURRENCY: &str = "Standard vault: GET, PUT, 90/10 by concurrency";
/// Custody-mode comparison.
pub(crate) const GROUP_CUSTODY: &str = "Custody modes";
/// Faults.
pub(crate) const GROUP_FAULTS: &str = "Faults: provider down, injected provider latency";
/// Open-loop runs.
pub(crate) const GROUP_OPEN: &str = "Open loop (fixed arrival rate)";
/// The concurrency sweep again on PostgreSQL.
pub(crate) const GROUP_PG: &str = "PostgreSQL: standard vault, GET, PUT, 90/10 by concurrency";

/// The built-in suite: every scenario of issue 10 on SQLite with `local` providers, then the
/// concurrency sweep (GET, PUT, 90/10 at 1, 16 and 64 workers) on PostgreSQL.
pub(crate) fn suite(timing: SuiteTiming) -> Vec<Scenario> {
    let mut all = Vec::new();
    for mix in [Mix::GET, Mix::PUT, Mix::MIX_90_10] {
        for concurrency in [1, 16, 64] {
            all.push(Scenario::closed(
                GROUP_CONCURRENCY,
                mix,
                Custody::Standard,
                concurrency,
                timing,
            ));
        }
    }
    for custody in [
        Custody::TwoOfTwoClient,
        Custody::TwoOfThreeMultiHsm,
        Custody::TwoOfThreeClient,
    ] {
        all.push(Scenario::closed(
            GROUP_CUSTODY,
            Mix::GET,
            custody,
            64,
            timing,
        ));
        all.push(Scenario::closed(
            GROUP_CUSTODY,
            Mix::PUT,
            custody,
            16,
            timing,
        ));
        all.push(Scenario::closed(
            GROUP_CUSTODY,
            Mix::MIX_90_10,
            custody,
            16,
            timing,
        ));
    }
    // One provider down: compare with `2of3hsm-get-c64` above.
    all.push(
        Scenario::closed(
            GROUP_FAULTS,
            Mix::GET,
            Custody::TwoOfThreeMultiHsm,
            64,
            timing,
        )
        .with_fault(Fault::AwsDown, "aws-down"),
    );
    // Injected latencies: a hedged 2-of-3 read should take the second-fastest provider's
    // time (≈ 40 ms); a client-custody read needs one provider, ideally the fastest (≈ 20 ms).
    for custody in [Custody::TwoOfThreeMultiHsm, Custody::TwoOfThreeClient] {
        all.push(
            Scenario::closed(GROUP_FAULTS, Mix::GET, custody, 16, timing)
                .with_fault(Fault::Latency, "latency"),
        );
    }
    // Open loop below the closed-loop capacity, so that latency reflects a steady arrival rate.
    all.push(
        Scenario::closed(GROUP_OPEN, Mix::GET, Custody::Standard, 64, timing).open_loop(2000.0),
    );
    all.push(
        Scenario::closed(GROUP_OPEN, Mix::PUT, Custody::Standard, 64, timing).open_loop(200.0),
    );
    for mix in [Mix::GET, Mix::PUT, Mix::MIX_90_10] {
        for concurrency in [1, 16, 64] {
            all.push(
                Scenario::closed(GROUP_PG, mix, Custody::Standard, concurrency, timing)
                    .on_store(Store::Postgres),
            );
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suite_names_are_unique_and_cover_the_issue() {
        let suite = suite(SuiteTiming::QUICK);
        let mut names: Vec<_> = suite.iter().map(|s| s.name.as_str()).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "duplicate scenario names");
        for needed in [
            "std-get-c1",
            "std-get-c16",
            "std-get-c64",
            "std-put-c64",
            "std-mix90-c16",
            "2of2cc-get-c64",
            "2of3hsm-get-c64",
            "2of3cc-mix90-c16",
            "2of3hsm-get-c64-aws-down",
            "2of3hsm-get-c16-latency",
            "std-get-c64-open2000",
            "pg-std-get-c1",
            "pg-std-get-c16",
            "pg-std-get-c64",
            "pg-std-put-c1",
            "pg-std-put-c16",
            "pg-std-put-c64",
            "pg-std-mix90-c1",
            "pg-std-mix90-c16",
            "pg-std-mix90-c64",
        ] {
            assert!(names.contains(&needed), "missing {needed}");
        }
        // The name says the store, and only the PostgreSQL sweep runs on PostgreSQL.
        for scenario in &suite {
            assert_eq!(
                scenario.name.starts_with("pg-"),
                scenario.store == Store::Postgres,
                "{}",
                scenario.name
            );
        }
        assert_eq!(
            suite.iter().filter(|s| s.store == Store::Postgres).count(),
            9
        );
    }

    #[test]
    fn parses_modes_mixes_and_faults() {
        for custody in Custody::ALL {
            assert_eq!(custody.to_string().parse::<Custody>(), Ok(custody));
        }
        assert!("3of3".parse::<Custody>().is_err());
        assert_eq!("get".parse::<Mix>(), Ok(Mix::GET));
        assert_eq!("mix90".parse::<Mix>(), Ok(Mix::MIX_90_10));
        assert_eq!("mix:90".parse::<Mix>(), Ok(Mix::MIX_90_10));
        assert!("mix101".parse::<Mix>().is_err());
        assert_eq!(Mix::MIX_90_10.label(), "mix90");
        assert_eq!("aws-down".parse::<Fault>(), Ok(Fault::AwsDown));
        assert!("slow".parse::<Fault>().is_err());
        for store in Store::ALL {
            assert_eq!(store.to_string().parse::<Store>(), Ok(store));
        }
        assert!("mysql".parse::<Store>().is_err());
    }

    #[test]
    fn scenarios_round_trip_through_json() {
        for scenario in suite(SuiteTiming::QUICK) {
            let json = serde_json::to_string(&scenario).unwrap();
            let back: Scenario = serde_json::from_str(&json).unwrap();
            assert_eq!(back, scenario);
        }
    }

    /// A results.json written before stores were selectable has no `store`: it was SQLite.
    #[test]
    fn scenarios_without_a_store_are_sqlite() {
        let mut value = serde_json::to_value(Scenario::closed(
            GROUP_CONCURRENCY,
            Mix::GET,
            Custody::Standard,
            1,
            SuiteTiming::QUICK,
        ))
        .unwrap();
        value.as_object_mut().unwrap().remove("store").unwrap();
        let back: Scenario = serde_json::from_value(value).unwrap();
        assert_eq!(back.store, Store::Sqlite);
        let pg = Scenario::closed(
            GROUP_PG,
            Mix::PUT,
            Custody::Standard,
            64,
            SuiteTiming::QUICK,
        )
        .on_store(Store::Postgres);
        assert_eq!(pg.name, "pg-std-put-c64");
        assert_eq!(serde_json::to_value(&pg).unwrap()["store"], "postgres");
    }
}
