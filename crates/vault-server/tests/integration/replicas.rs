//! Two `vault-server` processes on one PostgreSQL database, sharing the data directory (JWT
//! signing seed and local provider keys): they start together on an empty database, take
//! concurrent writes to one secret, and each reads everything the other wrote.

// The figures (and the seed for a replay) are this test's report; `--nocapture` shows them.
#![allow(clippy::print_stderr)]

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::json;

use crate::pg::PgCluster;
use crate::process::{Client, ServerProcess, ServerSpec};

const CLIENTS_PER_REPLICA: usize = 4;
const WRITES_PER_CLIENT: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_database_number_versions_without_gaps() {
    let cluster = PgCluster::start();
    cluster.database("replicas").await;
    let dir = tempfile::tempdir().unwrap();
    let spec = ServerSpec {
        data_dir: dir.path().join("data"),
        database_url: Some(cluster.url("replicas")),
    };

    // Both start at once on an empty database and an empty data directory: one admin key, one
    // signing seed, one set of provider keys, whoever wins each race.
    let (a, b) = tokio::join!(
        ServerProcess::start(&spec, dir.path()),
        ServerProcess::start(&spec, dir.path())
    );
    let keys: Vec<String> = [a.printed_admin_key().await, b.printed_admin_key().await]
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(
        keys.len(),
        1,
        "exactly one replica creates the admin key\nA:\n{}\nB:\n{}",
        a.log_text(),
        b.log_text()
    );
    let key = &keys[0];
    let on_a = Client::new(&a.base, key);
    let on_b = Client::new(&b.base, key);

    // The same signing key: a token from one replica is accepted by the other.
    let jwks_a = reqwest::get(format!("{}/.well-known/jwks.json", a.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let jwks_b = reqwest::get(format!("{}/.well-known/jwks.json", b.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(jwks_a, jwks_b);
    let (status, token) = on_a
        .send(
            Method::POST,
            "/v1/auth/api-key-token",
            Some(json!({ "api_key": key })),
        )
        .await
        .unwrap();
    assert_eq!(status, 200);
    let with_token = Client::new(&b.base, token["access_token"].as_str().unwrap());
    assert_eq!(
        with_token
            .send(Method::GET, "/v1/vaults", None)
            .await
            .unwrap()
            .0,
        200
    );

    let vault = on_a.create_vault("2of3_multi_hsm").await;

    // Concurrent PUTs to one path from both replicas. A 409 means other writers kept taking
    // the next number; the API asks the client to retry, and so do these clients.
    let mut writers = Vec::new();
    for (replica, client) in [("a", &on_a), ("b", &on_b)] {
        for c in 0..CLIENTS_PER_REPLICA {
            let client = client.clone();
            let vault = vault.clone();
            writers.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                let mut retries = 0usize;
                for i in 0..WRITES_PER_CLIENT {
                    let value = format!("{replica}-{c}-{i}");
                    loop {
                        let (status, body) = client
                            .send(
                                Method::PUT,
                                &format!("/v1/vaults/{vault}/secrets/shared/counter"),
                                Some(json!({ "value": value })),
                            )
                            .await
                            .unwrap();
                        match status {
                            201 => {
                                acked.push((body["version"].as_u64().unwrap(), value));
                                break;
                            }
                            409 => retries += 1,
                            other => panic!("PUT answered {other}: {body}"),
                        }
                    }
                }
                (acked, retries)
            }));
        }
    }
    let mut by_version: BTreeMap<u64, String> = BTreeMap::new();
    let mut retries = 0;
    for writer in writers {
        let (acked, r) = writer.await.unwrap();
        retries += r;
        for (version, value) in acked {
            assert!(
                by_version.insert(version, value).is_none(),
                "version {version} was acknowledged twice"
            );
        }
    }
    let total = (2 * CLIENTS_PER_REPLICA * WRITES_PER_CLIENT) as u64;
    let expected: Vec<u64> = (1..=total).collect();
    assert_eq!(by_version.keys().copied().collect::<Vec<_>>(), expected);
    for client in [&on_a, &on_b] {
        assert_eq!(
            client.version_numbers(&vault, "shared/counter").await,
            expected
        );
        for (version, value) in &by_version {
            assert_eq!(
                client
                    .read_version(&vault, "shared/counter", *version)
                    .await,
                Ok(value.clone()),
                "version {version} from {}",
                client.base
            );
        }
    }

    // Both replicas appended to the one audit chain at the same time (every PUT, read and 409
    // is an event). Checkpoints signed on both at once are stored once per head; the chain
    // then verifies from either replica as one gap-free chain, HMACs and signatures included.
    let (signed_a, signed_b) = tokio::join!(
        on_a.send(Method::POST, "/v1/audit/checkpoints", None),
        on_b.send(Method::POST, "/v1/audit/checkpoints", None)
    );
    for (status, body) in [signed_a.unwrap(), signed_b.unwrap()] {
        assert_eq!(status, 201, "{body}");
    }
    let report_a = on_a.audit_report().await;
    let report_b = on_b.audit_report().await;
    for report in [&report_a, &report_b] {
        assert_eq!(report["chain_valid"], true, "{report}");
        assert!(
            report["checkpoints_verified"].as_u64().unwrap() >= 1,
            "{report}"
        );
    }
    let audited = report_a["events_verified"].as_u64().unwrap();
    // At least one event per acknowledged write (each commits with its event).
    assert!(
        audited >= total,
        "{audited} events for {total} writes: {report_a}"
    );
    eprintln!(
        "replicas: {total} concurrent writes from 2 replicas, versions 1..={total} without gap \
         or duplicate, {retries} client retries after 409; audit chain of {audited} events \
         verified valid from both replicas ({} checkpoints verified)",
        report_a["checkpoints_verified"]
    );
}
