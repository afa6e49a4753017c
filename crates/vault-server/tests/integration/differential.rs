//! The same seeded sequence of API operations against a server on SQLite and one on
//! PostgreSQL, in lockstep: every answer must be the same once ids, timestamps and random
//! output (client shares, generated values) are normalised.
//!
//! Replay a failure with `MPCVAULT_DIFF_SEED=<seed>` (and `MPCVAULT_DIFF_OPS=<n>` for another
//! length); the failure message prints both, and the sequence up to the mismatch.

// The figures (and the seed for a replay) are this test's report; `--nocapture` shows them.
#![allow(clippy::print_stderr)]

use std::collections::HashMap;
use std::fmt;

use axum::http::Method;
use serde_json::{Value, json};
use vault_server::Config;

use crate::pg::PgCluster;
use crate::support::TestServer;

const DEFAULT_OPS: usize = 1000;

const MODES: [&str; 4] = [
    "standard",
    "2of3_multi_hsm",
    "2of2_client_custody",
    "2of3_client_custody",
];

/// Paths include characters that sort differently in a locale than in byte order.
const PATHS: [&str; 6] = ["db/password", "api/Key", "a_b", "x/y/z", "cfg", "Zeta"];

/// One API operation. Vaults are named by their creation index, paths by their index in
/// [`PATHS`]; a new kind of operation is one variant here and one arm in [`Op::request`].
#[derive(Debug, Clone)]
enum Op {
    CreateVault {
        mode: Option<&'static str>,
    },
    EnableMpc {
        vault: usize,
        mode: &'static str,
    },
    Put {
        vault: usize,
        path: usize,
        value: String,
        max_reads: Option<u64>,
    },
    Get {
        vault: usize,
        path: usize,
        version: Option<u64>,
    },
    ListSecrets {
        vault: usize,
    },
    ListVersions {
        vault: usize,
        path: usize,
    },
    Delete {
        vault: usize,
        path: usize,
    },
    Disable {
        vault: usize,
        path: usize,
        version: u64,
    },
    Rotate {
        vault: usize,
        path: usize,
    },
    DeleteVault {
        vault: usize,
    },
    /// A new agent (its key is normalised away).
    CreateAgent,
    /// Reads an agent, by creation index (wrapping; a made-up id while there is none).
    GetAgent {
        agent: usize,
    },
    /// A policy on a vault for an agent (by creation index) or, with no agent yet, a user.
    CreatePolicy {
        vault: usize,
        agent: usize,
        rule: PolicyRule,
    },
    /// Replaces a policy's rule, by creation index through a vault (often not its own: 404).
    UpdatePolicy {
        vault: usize,
        policy: usize,
        rule: PolicyRule,
    },
    DeletePolicy {
        vault: usize,
        policy: usize,
    },
    GetPolicy {
        vault: usize,
        policy: usize,
    },
}

/// The parts of a policy the differential sequence varies.
#[derive(Debug, Clone)]
struct PolicyRule {
    pattern: &'static str,
    permissions: &'static [&'static str],
    effect: &'static str,
    priority: i64,
}

const PATTERNS: [&str; 4] = ["db/*", "**", "api/**/Key", "a_*"];
const PERMISSIONS: [&[&str]; 3] = [&["read"], &["write"], &["read", "write"]];

/// An id that names no agent or policy, for operations on an index that does not exist yet.
const MISSING_ID: &str = "00000000-0000-4000-8000-000000000000";

/// splitmix64: a small, fully specified generator, so a seed replays the same sequence on any
/// machine and any version of this crate's dependencies.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap()
    }

    fn rule(&mut self) -> PolicyRule {
        PolicyRule {
            pattern: PATTERNS[self.below(PATTERNS.len())],
            permissions: PERMISSIONS[self.below(PERMISSIONS.len())],
            effect: if self.below(3) == 0 { "deny" } else { "allow" },
            priority: i64::try_from(self.below(5)).unwrap() - 2,
        }
    }
}

fn generate(seed: u64, count: usize) -> Vec<Op> {
    let mut rng = Rng(seed);
    // Which vault indexes are not deleted: most operations go to a live vault (a few to a
    // deleted one, to compare the 404s), and a new vault is created while there are few.
    let mut alive: Vec<bool> = Vec::new();
    let mut ops = Vec::with_capacity(count);
    for i in 0..count {
        let roll = rng.below(100);
        let live: Vec<usize> = (0..alive.len()).filter(|v| alive[*v]).collect();
        if live.is_empty() || (roll < 3 && live.len() < 4) {
            let mode = match rng.below(MODES.len() + 1) {
                0 => None,
                m => Some(MODES[m - 1]),
            };
            ops.push(Op::CreateVault { mode });
            alive.push(true);
            continue;
        }
        let vault = if rng.below(20) == 0 {
            rng.below(alive.len())
        } else {
            live[rng.below(live.len())]
        };
        let path = rng.below(PATHS.len());
        ops.push(match roll {
            3..=6 => Op::EnableMpc {
                vault,
                mode: MODES[rng.below(MODES.len())],
            },
            0..=2 | 7..=39 => Op::Put {
                vault,
                path,
                value: format!("val-{i}-{}", rng.next() % 1000),
                max_reads: (rng.below(4) == 0).then(|| 1 + rng.below(3) as u64),
            },
            40..=64 => Op::Get {
                vault,
                path,
                version: (rng.below(3) == 0).then(|| 1 + rng.below(4) as u64),
            },
            65..=69 => Op::ListSecrets { vault },
            70..=76 => Op::ListVersions { vault, path },
            77..=82 => Op::Delete { vault, path },
            83..=88 => Op::Disable {
                vault,
                path,
                version: 1 + rng.below(4) as u64,
            },
            // Rare (1 in 400): every later operation on a deleted vault is a 404.
            99 if rng.below(4) == 0 => {
                alive[vault] = false;
                Op::DeleteVault { vault }
            }
            89..=90 => match rng.below(3) {
                0 => Op::CreateAgent,
                _ => Op::GetAgent {
                    agent: rng.below(8),
                },
            },
            91..=92 => Op::CreatePolicy {
                vault,
                agent: rng.below(8),
                rule: rng.rule(),
            },
            93 => Op::UpdatePolicy {
                vault,
                policy: rng.below(8),
                rule: rng.rule(),
            },
            94 => Op::DeletePolicy {
                vault,
                policy: rng.below(8),
            },
            95 => Op::GetPolicy {
                vault,
                policy: rng.below(8),
            },
            _ => Op::Rotate { vault, path },
        });
    }
    ops
}

/// One backend's run: its server, the vault ids in creation order and the client shares it
/// was handed, and the id normalisation table.
struct Run {
    server: TestServer,
    vaults: Vec<String>,
    shares: HashMap<(usize, usize, u64), String>,
    latest: HashMap<(usize, usize), u64>,
    ids: HashMap<String, String>,
    /// Agent and policy ids in creation order.
    agents: Vec<String>,
    policies: Vec<String>,
}

impl Run {
    fn new(server: TestServer) -> Run {
        Run {
            server,
            vaults: Vec::new(),
            shares: HashMap::new(),
            latest: HashMap::new(),
            ids: HashMap::new(),
            agents: Vec::new(),
            policies: Vec::new(),
        }
    }

    /// The id at a creation index, wrapping; [`MISSING_ID`] while there is none.
    fn nth(ids: &[String], index: usize) -> &str {
        if ids.is_empty() {
            MISSING_ID
        } else {
            &ids[index % ids.len()]
        }
    }

    fn policy_body(&self, agent: Option<usize>, rule: &PolicyRule) -> Value {
        let (principal_type, principal_id) = match agent {
            Some(agent) if !self.agents.is_empty() => ("agent", Run::nth(&self.agents, agent)),
            _ => ("user", "bob"),
        };
        json!({
            "secret_path_pattern": rule.pattern,
            "principal_type": principal_type,
            "principal_id": principal_id,
            "permissions": rule.permissions,
            "effect": rule.effect,
            "priority": rule.priority,
        })
    }

    fn vault(&self, index: usize) -> &str {
        &self.vaults[index]
    }

    /// Runs one operation and returns what a client observes, normalised.
    async fn apply(&mut self, op: &Op) -> String {
        let (method, uri, body, share) = self.request(op);
        let headers: Vec<(&str, &str)> = share
            .as_deref()
            .map(|s| ("X-Client-Share", s))
            .into_iter()
            .collect();
        let answer = self.server.call_with(method, &uri, body, &headers).await;
        let status = answer.status.as_u16();
        // Remember what later operations need: vault ids, client shares, version numbers.
        match op {
            Op::CreateVault { .. } => {
                let id = answer.body["id"].as_str().unwrap_or("<none>").to_owned();
                self.vaults.push(id);
            }
            Op::Put { vault, path, .. } | Op::Rotate { vault, path } if status == 201 => {
                if let Some(version) = answer.body["version"].as_u64() {
                    self.latest.insert((*vault, *path), version);
                    if let Some(share) = answer.body["client_share"].as_str() {
                        self.shares
                            .insert((*vault, *path, version), share.to_owned());
                    }
                }
            }
            Op::CreateAgent if status == 201 => {
                if let Some(id) = answer.body["agent"]["id"].as_str() {
                    self.agents.push(id.to_owned());
                }
            }
            Op::CreatePolicy { .. } if status == 201 => {
                if let Some(id) = answer.body["id"].as_str() {
                    self.policies.push(id.to_owned());
                }
            }
            _ => {}
        }
        let body = self.normalise(answer.body);
        format!("{status} {body}")
    }

    /// The HTTP request for an operation, with the client share it needs if any.
    fn request(&self, op: &Op) -> (Method, String, Option<Value>, Option<String>) {
        let secret = |vault: usize, path: usize| {
            format!("/v1/vaults/{}/secrets/{}", self.vault(vault), PATHS[path])
        };
        match op {
            Op::CreateVault { mode } => {
                let mut body = json!({ "name": "diff", "description": "differential" });
                if let Some(mode) = mode {
                    body["mpc_custody"] = json!(mode);
                }
                (Method::POST, "/v1/vaults".into(), Some(body), None)
            }
            Op::EnableMpc { vault, mode } => (
                Method::POST,
                format!("/v1/vaults/{}/mpc", self.vault(*vault)),
                Some(json!({ "custody_mode": mode })),
                None,
            ),
            Op::Put {
                vault,
                path,
                value,
                max_reads,
            } => {
                let mut body = json!({ "value": value, "metadata": { "op": "put" } });
                if let Some(max) = max_reads {
                    body["max_access_count"] = json!(max);
                }
                (Method::PUT, secret(*vault, *path), Some(body), None)
            }
            Op::Get {
                vault,
                path,
                version,
            } => {
                let number = version.or_else(|| self.latest.get(&(*vault, *path)).copied());
                let share = number.and_then(|n| self.shares.get(&(*vault, *path, n)).cloned());
                let uri = match version {
                    Some(n) => format!(
                        "/v1/vaults/{}/secret-version/{}/{n}",
                        self.vault(*vault),
                        PATHS[*path]
                    ),
                    None => secret(*vault, *path),
                };
                (Method::GET, uri, None, share)
            }
            Op::ListSecrets { vault } => (
                Method::GET,
                format!("/v1/vaults/{}/secrets", self.vault(*vault)),
                None,
                None,
            ),
            Op::ListVersions { vault, path } => (
                Method::GET,
                format!(
                    "/v1/vaults/{}/secret-versions/{}",
                    self.vault(*vault),
                    PATHS[*path]
                ),
                None,
                None,
            ),
            Op::Delete { vault, path } => (Method::DELETE, secret(*vault, *path), None, None),
            Op::Disable {
                vault,
                path,
                version,
            } => (
                Method::POST,
                format!(
                    "/v1/vaults/{}/secret-version-disable/{}/{version}",
                    self.vault(*vault),
                    PATHS[*path]
                ),
                None,
                None,
            ),
            Op::Rotate { vault, path } => (
                Method::POST,
                format!(
                    "/v1/vaults/{}/secret-rotate/{}",
                    self.vault(*vault),
                    PATHS[*path]
                ),
                Some(json!({ "length": 16 })),
                None,
            ),
            Op::DeleteVault { vault } => (
                Method::DELETE,
                format!("/v1/vaults/{}", self.vault(*vault)),
                None,
                None,
            ),
            Op::CreateAgent => (
                Method::POST,
                "/v1/agents".into(),
                Some(json!({ "name": "diff-agent", "token_ttl_seconds": 600 })),
                None,
            ),
            Op::GetAgent { agent } => (
                Method::GET,
                format!("/v1/agents/{}", Run::nth(&self.agents, *agent)),
                None,
                None,
            ),
            Op::CreatePolicy { vault, agent, rule } => (
                Method::POST,
                format!("/v1/vaults/{}/policies", self.vault(*vault)),
                Some(self.policy_body(Some(*agent), rule)),
                None,
            ),
            Op::UpdatePolicy {
                vault,
                policy,
                rule,
            } => (
                Method::PUT,
                format!(
                    "/v1/vaults/{}/policies/{}",
                    self.vault(*vault),
                    Run::nth(&self.policies, *policy)
                ),
                Some(self.policy_body(None, rule)),
                None,
            ),
            Op::DeletePolicy { vault, policy } => (
                Method::DELETE,
                format!(
                    "/v1/vaults/{}/policies/{}",
                    self.vault(*vault),
                    Run::nth(&self.policies, *policy)
                ),
                None,
                None,
            ),
            Op::GetPolicy { vault, policy } => (
                Method::GET,
                format!(
                    "/v1/vaults/{}/policies/{}",
                    self.vault(*vault),
                    Run::nth(&self.policies, *policy)
                ),
                None,
                None,
            ),
        }
    }

    /// Ids become `id#n` in order of first appearance, timestamps `<time>`, client shares
    /// `<share>`, generated (rotated) values `<generated:len>`.
    fn normalise(&mut self, value: Value) -> Value {
        match value {
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| {
                        let v = match (k.as_str(), v) {
                            (_, Value::Null) => Value::Null,
                            (k, _) if k.ends_with("_at") => json!("<time>"),
                            ("client_share", _) => json!("<share>"),
                            // An agent's key and its prefix are random.
                            ("api_key", _) => json!("<key>"),
                            ("key_prefix", _) => json!("<prefix>"),
                            ("value", Value::String(s)) if !s.starts_with("val-") => {
                                json!(format!("<generated:{}>", s.len()))
                            }
                            (_, v) => self.normalise(v),
                        };
                        (k, v)
                    })
                    .collect(),
            ),
            Value::Array(items) => {
                Value::Array(items.into_iter().map(|v| self.normalise(v)).collect())
            }
            Value::String(s) => Value::String(self.normalise_ids(&s)),
            other => other,
        }
    }

    fn normalise_ids(&mut self, text: &str) -> String {
        let bytes = text.as_bytes();
        let mut out = String::with_capacity(text.len());
        let mut i = 0;
        while i < bytes.len() {
            if i + 36 <= bytes.len() && is_uuid(&bytes[i..i + 36]) {
                let id = &text[i..i + 36];
                let next = self.ids.len();
                let label = self
                    .ids
                    .entry(id.to_owned())
                    .or_insert_with(|| format!("id#{next}"));
                out.push_str(label);
                i += 36;
            } else {
                let c = text[i..].chars().next().unwrap();
                out.push(c);
                i += c.len_utf8();
            }
        }
        out
    }
}

fn is_uuid(b: &[u8]) -> bool {
    b.iter().enumerate().all(|(i, c)| match i {
        8 | 13 | 18 | 23 => *c == b'-',
        _ => c.is_ascii_hexdigit(),
    })
}

/// The sequence up to and including `last`, one operation a line, for the failure message.
struct Sequence<'a>(&'a [Op]);

impl fmt::Display for Sequence<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, op) in self.0.iter().enumerate() {
            writeln!(f, "  {i:4}: {op:?}")?;
        }
        Ok(())
    }
}

fn env_number(name: &str) -> Option<u64> {
    let text = std::env::var(name).ok()?;
    Some(
        text.parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_and_postgres_answer_the_same_sequence_the_same_way() {
    let seed = env_number("MPCVAULT_DIFF_SEED").unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        u64::try_from(nanos % u128::from(u64::MAX)).unwrap()
    });
    let count =
        env_number("MPCVAULT_DIFF_OPS").map_or(DEFAULT_OPS, |n| usize::try_from(n).unwrap());
    let ops = generate(seed, count);

    let cluster = PgCluster::start();
    let database = cluster.database("differential").await;
    // The rate limit is per process and time-dependent: the two servers would throttle at
    // different operations, so it is off here (it has its own tests) and the stores decide.
    let unthrottled = |c: Config| c.with_rate_limit(None).unwrap();
    let mut sqlite = Run::new(TestServer::with_config(unthrottled).await);
    let mut postgres =
        Run::new(TestServer::with_config(|c| unthrottled(c).with_database(database)).await);

    let mut statuses: HashMap<String, usize> = HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        let a = sqlite.apply(op).await;
        let b = postgres.apply(op).await;
        if a != b {
            panic!(
                "SQLite and PostgreSQL disagree at operation {i} of seed {seed} \
                 (replay: MPCVAULT_DIFF_SEED={seed} MPCVAULT_DIFF_OPS={count})\n\
                 operation: {op:?}\n  sqlite:   {a}\n  postgres: {b}\nsequence:\n{}",
                Sequence(&ops[..=i])
            );
        }
        *statuses.entry(a[..3].to_owned()).or_default() += 1;
    }
    // A sequence that only ever failed would compare nothing useful.
    assert!(
        statuses.get("201").copied().unwrap_or(0) > count / 10,
        "seed {seed}: too few successful writes: {statuses:?}"
    );
    assert!(
        statuses.get("200").copied().unwrap_or(0) > count / 10,
        "seed {seed}: too few successful reads: {statuses:?}"
    );
    eprintln!("differential: seed {seed}, {count} operations, statuses {statuses:?}");
    sqlite.server.server.close().await;
    postgres.server.server.close().await;
}
