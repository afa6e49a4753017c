//! `kill -9` under load, on both stores: writers PUT as fast as they can, the server process is
//! killed at a random moment, restarted on the same data, and every acknowledged write must be
//! readable with its value; every stored version must be whole (readable, with a value its
//! writer sent) and the numbers gap-free. Several rounds; the figures are printed.
//!
//! [`verify`] is the one place that decides what "survived" means, the audit chain included:
//! after every kill the whole chain (links, HMACs, signed checkpoints) must still verify, since
//! each write's event commits in the write's own transaction.

// The figures (and the seed for a replay) are this test's report; `--nocapture` shows them.
#![allow(clippy::print_stderr)]

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::pg::PgCluster;
use crate::process::{Client, ServerProcess, ServerSpec};

const ROUNDS: usize = 5;
const WRITERS: usize = 8;

/// Every write sent, by secret path: (value, acknowledged version if a 201 arrived).
#[derive(Default)]
struct Ledger {
    sent: BTreeMap<String, Vec<(String, Option<u64>)>>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Figures {
    acknowledged: usize,
    verified: usize,
    lost: usize,
    /// Versions stored although their answer never arrived (the kill came between commit and
    /// answer): allowed, and checked to be whole.
    unacknowledged_but_stored: usize,
    /// Events in the audit chain, which verified whole after the restart.
    audit_events: u64,
}

/// A tiny deterministic generator for the kill delays (seeded from the clock, printed).
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

async fn crash_rounds(spec: ServerSpec, dir: &std::path::Path, store: &str) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let mut seed = u64::try_from(nanos % u128::from(u64::MAX)).unwrap() | 1;
    eprintln!("crash test ({store}): delay seed {seed}");
    let first = ServerProcess::start(&spec, dir).await;
    let key = first
        .printed_admin_key()
        .await
        .expect("the first start prints the admin key");
    let vault = Client::new(&first.base, &key)
        .create_vault("2of3_multi_hsm")
        .await;
    drop(first);

    let mut ledger = Ledger::default();
    let mut total = Figures::default();
    for round in 0..ROUNDS {
        let mut server = ServerProcess::start(&spec, dir).await;
        let client = Client::new(&server.base, &key);
        let mut writers = Vec::new();
        for w in 0..WRITERS {
            let client = client.clone();
            let vault = vault.clone();
            writers.push(tokio::spawn(async move {
                let path = format!("crash/w{w}");
                let mut sent = Vec::new();
                for i in 0.. {
                    let value = format!("r{round}-w{w}-i{i}");
                    let answer = client
                        .send(
                            Method::PUT,
                            &format!("/v1/vaults/{vault}/secrets/{path}"),
                            Some(json!({ "value": value })),
                        )
                        .await;
                    match answer {
                        Ok((201, body)) => sent.push((value, body["version"].as_u64())),
                        Ok((status, body)) => panic!("PUT answered {status}: {body}"),
                        // The server is gone: the write may or may not have been stored.
                        Err(_) => {
                            sent.push((value, None));
                            break;
                        }
                    }
                }
                (path, sent)
            }));
        }
        let delay = 100 + next(&mut seed) % 900;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        server.kill();
        for writer in writers {
            let (path, sent) = writer.await.unwrap();
            ledger.sent.entry(path).or_default().extend(sent);
        }

        let restarted = ServerProcess::start(&spec, dir).await;
        assert!(restarted.printed_admin_key().await.is_none());
        let figures = verify(&Client::new(&restarted.base, &key), &vault, &ledger).await;
        eprintln!(
            "crash test ({store}) round {}: killed after {delay} ms; cumulative acknowledged {}, \
             verified {}, lost {}, stored without an answer {}; audit chain valid, {} events",
            round + 1,
            figures.acknowledged,
            figures.verified,
            figures.lost,
            figures.unacknowledged_but_stored,
            figures.audit_events
        );
        total = figures;
    }
    eprintln!(
        "crash test ({store}): {ROUNDS} kill -9 rounds, {} writes acknowledged, {} verified, {} lost; \
         audit chain of {} events verified valid after every round",
        total.acknowledged, total.verified, total.lost, total.audit_events
    );
    assert_eq!(total.lost, 0);
    assert_eq!(total.verified, total.acknowledged);
    assert!(
        total.acknowledged >= ROUNDS,
        "the load was too light to mean anything"
    );
}

/// Checks everything the ledger says against a freshly restarted server.
async fn verify(client: &Client, vault: &str, ledger: &Ledger) -> Figures {
    let mut figures = Figures::default();
    // The audit chain first, before the reads below append to it: every event that committed
    // (each with its write) links, and its HMAC and the signed checkpoints verify.
    let report = client.audit_report().await;
    assert_eq!(
        report["chain_valid"], true,
        "audit chain after kill -9: {report}"
    );
    figures.audit_events = report["events_verified"].as_u64().unwrap();
    for (path, sent) in &ledger.sent {
        let stored = client.version_numbers(vault, path).await;
        // Gap-free: 1..=N.
        let expected: Vec<u64> = (1..=stored.len() as u64).collect();
        assert_eq!(stored, expected, "{path}: version numbers have a gap");
        let mut values_by_version = BTreeMap::new();
        for version in &stored {
            // Whole: every stored version decrypts, and to a value its writer sent.
            let value = client
                .read_version(vault, path, *version)
                .await
                .unwrap_or_else(|status| panic!("{path} v{version} is unreadable ({status})"));
            assert!(
                sent.iter().any(|(v, _)| *v == value),
                "{path} v{version} holds {value:?}, which was never sent"
            );
            values_by_version.insert(*version, value);
        }
        for (value, acked) in sent {
            match acked {
                Some(version) => {
                    figures.acknowledged += 1;
                    if values_by_version.get(version) == Some(value) {
                        figures.verified += 1;
                    } else {
                        figures.lost += 1;
                        eprintln!("LOST: {path} v{version} = {value:?}");
                    }
                }
                None => {
                    if values_by_version.values().any(|v| v == value) {
                        figures.unacknowledged_but_stored += 1;
                    }
                }
            }
        }
    }
    figures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let spec = ServerSpec {
        data_dir: dir.path().join("data"),
        database_url: None,
    };
    crash_rounds(spec, dir.path(), "SQLite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9_on_postgres() {
    let cluster = PgCluster::start();
    cluster.database("crash").await;
    let dir = tempfile::tempdir().unwrap();
    let spec = ServerSpec {
        data_dir: dir.path().join("data"),
        database_url: Some(cluster.url("crash")),
    };
    crash_rounds(spec, dir.path(), "PostgreSQL").await;
}
