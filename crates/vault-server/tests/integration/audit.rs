//! The audit trail: every action recorded with its outcome and nothing secret, verification
//! that recomputes every seal and catches every edit, fail-closed writes and reads, one chain
//! under concurrency, and offline verification of an export with the public key only.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use sqlx::sqlite::SqlitePoolOptions;
use sqlx::{Row as _, SqlitePool};
use vault_server::{ApiKeyRecord, AuditExport, NewAuditEvent, verify_export};

use crate::support::TestServer;

/// An event for writes made directly on the store in tests.
pub(crate) fn system_event(action: &str, resource: &str) -> NewAuditEvent {
    NewAuditEvent {
        id: format!("test-{action}-{resource}"),
        occurred_at: 0,
        request_id: "test".into(),
        actor_type: "system".into(),
        actor_id: String::new(),
        action: action.into(),
        resource_type: "api_key".into(),
        resource_id: resource.into(),
        vault_id: None,
        outcome: "success".into(),
        detail: "{}".into(),
    }
}

/// A second connection to the server's database: what an attacker with file access has.
async fn database(t: &TestServer) -> SqlitePool {
    let url = format!("sqlite://{}", t.dir.path().join("vault.db").display());
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap()
}

async fn verify(t: &TestServer) -> Value {
    let answer = t.call(Method::GET, "/v1/audit/verify", None).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body
}

async fn events(t: &TestServer, query: &str) -> Value {
    let answer = t
        .call(Method::GET, &format!("/v1/audit/events?{query}"), None)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body
}

/// A server with a handful of events: a vault, two secrets, reads, a failure.
async fn busy_server() -> (TestServer, String) {
    let t = TestServer::start().await;
    let v = t.vault(None).await;
    assert_eq!(t.put(&v, "db/password", "hunter2").await.status, 201);
    assert_eq!(t.put(&v, "db/user", "alice").await.status, 201);
    assert_eq!(t.get(&v, "db/password", None).await.status, 200);
    assert_eq!(t.get(&v, "nothing/here", None).await.status, 404);
    (t, v)
}

#[tokio::test]
async fn every_action_is_recorded_with_actor_outcome_and_request_id_and_nothing_secret() {
    let (t, v) = busy_server().await;
    // An unauthenticated attempt is recorded as denied, with no actor.
    let anon = TestServer {
        server: t.server.clone(),
        admin_key: "1ck_not-a-real-key".into(),
        dir: tempfile::tempdir().unwrap(),
    };
    let answer = anon
        .call(
            Method::GET,
            &format!("/v1/vaults/{v}/secrets/db/password"),
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    // A token is issued (auth success) and refused for a bad key (auth failure).
    let token = t
        .call(
            Method::POST,
            "/v1/auth/api-key-token",
            Some(json!({ "api_key": t.admin_key })),
        )
        .await;
    assert_eq!(token.status, StatusCode::OK);
    let bad = t
        .call(
            Method::POST,
            "/v1/auth/api-key-token",
            Some(json!({ "api_key": "1ck_wrong" })),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);

    let listed = t
        .call(Method::GET, "/v1/audit/events?limit=1000", None)
        .await;
    assert_eq!(listed.status, StatusCode::OK);
    let raw = String::from_utf8(listed.raw.clone()).unwrap();
    // Never a value, a key or a token.
    for secret in [
        "hunter2",
        "alice",
        t.admin_key.as_str(),
        token.body["access_token"].as_str().unwrap(),
        "1ck_not-a-real-key",
        "1ck_wrong",
    ] {
        assert!(!raw.contains(secret), "the audit trail contains {secret:?}");
    }
    let list = listed.body["events"].as_array().unwrap();
    assert_eq!(listed.body["count"], list.len());
    // Oldest first: the first match is the first time it happened.
    let find = |action: &str, outcome: &str| {
        list.iter()
            .rev()
            .find(|e| e["action"] == action && e["outcome"] == outcome)
            .unwrap_or_else(|| panic!("no {action} {outcome} event in {list:#?}"))
            .clone()
    };
    let key_create = find("key.create", "success");
    assert_eq!(key_create["actor_type"], "system");
    let created = find("vault.create", "success");
    assert_eq!(created["resource_id"], v);
    assert_eq!(created["actor_id"], "admin");
    assert_eq!(created["actor_type"], "user");
    let write = find("secret.write", "success");
    assert_eq!(write["resource_id"], format!("{v}/db/password"));
    assert_eq!(write["vault_id"], v);
    assert!(!write["request_id"].as_str().unwrap().is_empty());
    let detail: Value = serde_json::from_str(write["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["version"], 1);
    assert!(detail["key_id"].is_string());
    find("secret.read", "success");
    let missing = find("secret.read", "not_found");
    assert_eq!(missing["resource_id"], format!("{v}/nothing/here"));
    let denied = find("secret.read", "denied");
    assert_eq!(denied["actor_type"], "anonymous");
    assert_eq!(denied["actor_id"], "");
    find("auth.token", "success");
    find("auth.token", "denied");
    // Newest first, seq strictly decreasing.
    let seqs: Vec<u64> = list.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] > w[1]));

    // Filters.
    let reads = events(&t, "action=secret.read").await;
    assert!(
        reads["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["action"] == "secret.read")
    );
    assert_eq!(reads["count"], 3);
    let of_vault = events(&t, &format!("resource_id={v}")).await;
    assert!(of_vault["count"].as_u64().unwrap() >= 4);
    let page = events(&t, "limit=2&offset=1").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    let future = events(&t, "from=2999-01-01T00:00:00Z").await;
    assert_eq!(future["count"], 0);

    let report = verify(&t).await;
    assert_eq!(report["chain_valid"], true, "{report}");
    assert!(report["events_verified"].as_u64().unwrap() >= 10);
    assert_eq!(report["events_verified"], report["events_checked"]);
    assert_eq!(report["broken_at_event_id"], Value::Null);
    assert!(report["scheme"].as_str().unwrap().contains("hmac-sha256"));
}

/// One column of one row, read so it can be put back after tampering.
#[derive(Debug)]
enum Column {
    Text(Option<String>),
    Int(i64),
    Blob(Vec<u8>),
}

async fn read_column(db: &SqlitePool, column: &str, seq: i64) -> Column {
    let row = sqlx::query(&format!("SELECT {column} FROM audit_events WHERE seq = $1"))
        .bind(seq)
        .fetch_one(db)
        .await
        .unwrap();
    match column {
        "seq" | "occurred_at" => Column::Int(row.get(0)),
        "prev_hash" | "event_hash" | "integrity_hash" => Column::Blob(row.get(0)),
        _ => Column::Text(row.get(0)),
    }
}

#[tokio::test]
async fn verification_catches_a_change_to_any_stored_field() {
    let (t, _) = busy_server().await;
    let db = database(&t).await;
    let seq = 3_i64;
    let id: String = sqlx::query_scalar("SELECT id FROM audit_events WHERE seq = $1")
        .bind(seq)
        .fetch_one(&db)
        .await
        .unwrap();
    for column in [
        "seq",
        "id",
        "occurred_at",
        "request_id",
        "actor_type",
        "actor_id",
        "action",
        "resource_type",
        "resource_id",
        "vault_id",
        "outcome",
        "detail",
        "prev_hash",
        "event_hash",
        "integrity_hash",
    ] {
        let original = read_column(&db, column, seq).await;
        let tamper = match &original {
            Column::Int(_) if column == "seq" => "seq = seq + 1000".to_owned(),
            Column::Int(_) => format!("{column} = {column} + 1"),
            Column::Blob(_) => format!("{column} = X'{}'", "ab".repeat(32)),
            Column::Text(_) => format!("{column} = COALESCE({column}, '') || 'x'"),
        };
        sqlx::query(&format!("UPDATE audit_events SET {tamper} WHERE seq = $1"))
            .bind(seq)
            .execute(&db)
            .await
            .unwrap();
        let report = verify(&t).await;
        assert_eq!(report["chain_valid"], false, "{column}: {report}");
        let broken = report["broken_at_event_id"].as_str().unwrap();
        // A changed id is reported under the changed id; a renumbered event as the gap's
        // successor (event 4).
        match column {
            "seq" => assert_ne!(broken, id, "{column}"),
            "id" => assert_eq!(broken, format!("{id}x"), "{column}"),
            _ => assert_eq!(broken, id, "{column}: {report}"),
        }
        // Put it back: the chain verifies again.
        let where_seq = if column == "seq" { seq + 1000 } else { seq };
        let statement = format!("UPDATE audit_events SET {column} = $1 WHERE seq = $2");
        let restore = sqlx::query(&statement);
        let restore = match original {
            Column::Int(v) => restore.bind(v),
            Column::Blob(v) => restore.bind(v),
            Column::Text(v) => restore.bind(v),
        };
        restore.bind(where_seq).execute(&db).await.unwrap();
        let report = verify(&t).await;
        assert_eq!(report["chain_valid"], true, "{column} restored: {report}");
    }
}

#[tokio::test]
async fn deleting_or_reordering_events_is_detected() {
    let (t, _) = busy_server().await;
    let db = database(&t).await;
    sqlx::query("DELETE FROM audit_events WHERE seq = 4")
        .execute(&db)
        .await
        .unwrap();
    let report = verify(&t).await;
    assert_eq!(report["chain_valid"], false);
    assert!(report["reason"].as_str().unwrap().contains("missing"));

    let (t, _) = busy_server().await;
    let db = database(&t).await;
    // Swap events 3 and 4 (their contents move, the positions stay).
    for statement in [
        "UPDATE audit_events SET seq = -1 WHERE seq = 3",
        "UPDATE audit_events SET seq = 3 WHERE seq = 4",
        "UPDATE audit_events SET seq = 4 WHERE seq = -1",
    ] {
        sqlx::query(statement).execute(&db).await.unwrap();
    }
    let report = verify(&t).await;
    assert_eq!(report["chain_valid"], false, "{report}");
}

#[tokio::test]
async fn truncating_the_tail_is_detected_by_the_signed_checkpoint() {
    let (t, _) = busy_server().await;
    let checkpoint = t.call(Method::POST, "/v1/audit/checkpoints", None).await;
    assert_eq!(
        checkpoint.status,
        StatusCode::CREATED,
        "{}",
        checkpoint.body
    );
    let signed_seq = checkpoint.body["seq"].as_i64().unwrap();
    assert_eq!(verify(&t).await["chain_valid"], true);

    // The attacker removes the last events and rewrites the head to match what is left, so
    // the chain itself is consistent: only the checkpoint shows that events are missing.
    let db = database(&t).await;
    let keep = signed_seq - 2;
    sqlx::query("DELETE FROM audit_events WHERE seq > $1")
        .bind(keep)
        .execute(&db)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE audit_chain_head SET seq = $1, event_hash = \
         (SELECT event_hash FROM audit_events WHERE seq = $1) WHERE id = 1",
    )
    .bind(keep)
    .execute(&db)
    .await
    .unwrap();
    let report = verify(&t).await;
    assert_eq!(report["chain_valid"], false, "{report}");
    assert_eq!(report["broken_at_event_id"], checkpoint.body["event_id"]);
}

#[tokio::test]
async fn a_failing_audit_write_fails_the_action() {
    let (t, v) = busy_server().await;
    let db = database(&t).await;
    let before = verify(&t).await["events_verified"].as_u64().unwrap();
    let failures = |t: &TestServer| {
        let text = t.server.metrics().render();
        text.lines()
            .find_map(|l| l.strip_prefix("mpc_vault_audit_write_failures_total "))
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    assert_eq!(failures(&t), 0);
    sqlx::query(
        "CREATE TRIGGER audit_down BEFORE INSERT ON audit_events \
         BEGIN SELECT RAISE(ABORT, 'audit store unavailable'); END",
    )
    .execute(&db)
    .await
    .unwrap();
    // A write: refused, and nothing is stored.
    let put = t.put(&v, "db/new", "fresh").await;
    put.assert_problem_type(500, "internal");
    // A read of a secret limited to one read: refused, and the read is not counted.
    let limited = t
        .call(
            Method::PUT,
            &format!("/v1/vaults/{v}/secrets/once"),
            Some(json!({ "value": "x", "max_access_count": 1 })),
        )
        .await;
    assert_eq!(limited.status, 500);
    // A plain read (audited in its own transaction): refused too.
    let read = t.get(&v, "db/password", None).await;
    read.assert_problem_type(500, "internal");
    assert!(!String::from_utf8(read.raw).unwrap().contains("hunter2"));
    // Vault creation and key creation: refused.
    let vault = t
        .call(Method::POST, "/v1/vaults", Some(json!({ "name": "x" })))
        .await;
    assert_eq!(vault.status, 500);
    // Every refused request above had at least one append fail (its write's, then the
    // middleware's own), and each failure is counted.
    assert!(failures(&t) >= 4, "{}", t.server.metrics().render());

    sqlx::query("DROP TRIGGER audit_down")
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(t.get(&v, "db/new", None).await.status, 404);
    let vaults = t.call(Method::GET, "/v1/vaults", None).await;
    assert_eq!(vaults.body["vaults"].as_array().unwrap().len(), 1);
    let report = verify(&t).await;
    assert_eq!(report["chain_valid"], true, "{report}");
    // Only the two calls above since the trigger went away were added (404, list) besides
    // the earlier verify.
    assert_eq!(report["events_verified"].as_u64().unwrap(), before + 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_produce_one_valid_chain() {
    let t = TestServer::start().await;
    let v = t.vault(None).await;
    let t = std::sync::Arc::new(t);
    let mut tasks = Vec::new();
    for n in 0..48 {
        let t = std::sync::Arc::clone(&t);
        let v = v.clone();
        tasks.push(tokio::spawn(async move {
            let path = format!("app/{n}");
            let answer = t.put(&v, &path, "value").await;
            assert_eq!(answer.status, 201, "{}", answer.body);
            let answer = t.get(&v, &path, None).await;
            assert_eq!(answer.status, 200, "{}", answer.body);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let report = verify(&t).await;
    assert_eq!(report["chain_valid"], true, "{report}");
    // bootstrap key, vault, 48 writes, 48 reads.
    assert_eq!(report["events_verified"], 2 + 48 * 2);
}

async fn public_key(t: &TestServer) -> [u8; 32] {
    let answer = t.call(Method::GET, "/v1/audit/public-key", None).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["algorithm"], "Ed25519");
    let hex = answer.body["public_key"].as_str().unwrap();
    let bytes: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    bytes.try_into().unwrap()
}

#[tokio::test]
async fn an_export_verifies_offline_with_the_public_key_and_edits_are_caught() {
    let (t, _) = busy_server().await;
    let key = public_key(&t).await;
    let answer = t.call(Method::GET, "/v1/audit/export", None).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let export: AuditExport = serde_json::from_slice(&answer.raw).unwrap();
    assert!(export.to_head);
    assert!(export.events.len() >= 6);
    assert_eq!(
        export.checkpoints.last().unwrap().seq,
        export.events.last().unwrap().seq
    );
    let report = verify_export(&export, &key);
    assert!(report.chain_valid, "{report:?}");
    assert_eq!(report.events_verified, export.events.len() as u64);

    // An edited field.
    let mut edited = export.clone();
    edited.events[2].event.outcome = "success-ish".into();
    let report = verify_export(&edited, &key);
    assert_eq!(
        report.broken_at_event_id.as_deref(),
        Some(edited.events[2].event.id.as_str())
    );
    // A removed event.
    let mut removed = export.clone();
    removed.events.remove(3);
    assert!(!verify_export(&removed, &key).chain_valid);
    // A truncated tail.
    let mut truncated = export.clone();
    truncated.events.pop();
    assert!(!verify_export(&truncated, &key).chain_valid);
    // A forged checkpoint (its hash changed) or another key.
    let mut forged = export.clone();
    forged.checkpoints.last_mut().unwrap().event_hash[0] ^= 1;
    assert!(!verify_export(&forged, &key).chain_valid);
    let mut other = key;
    other[0] ^= 1;
    assert!(!verify_export(&export, &other).chain_valid);
    // The whole chain rewritten consistently (SHA-256 recomputed): the signature catches it.
    let mut rewritten = export.clone();
    let mut prev = vault_server::GENESIS_HASH;
    for event in &mut rewritten.events {
        event.event.actor_id = "mallory".into();
        event.prev_hash = prev;
        let encoding = vault_server::canonical_encoding(event.seq, &prev, &event.event).unwrap();
        event.event_hash = Sha256::digest(&encoding).into();
        prev = event.event_hash;
    }
    assert!(!verify_export(&rewritten, &key).chain_valid);
}

#[tokio::test]
async fn checkpoints_are_signed_periodically() {
    let t =
        TestServer::with_config(|c| c.with_audit_checkpoints(3, Duration::from_secs(3600))).await;
    let v = t.vault(None).await;
    for n in 0..3 {
        assert_eq!(t.put(&v, &format!("p{n}"), "x").await.status, 201);
    }
    // The task looks every second.
    let storage = t.server.storage();
    let mut signed = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        signed = storage.latest_checkpoint().await.unwrap();
        if signed.is_some() {
            break;
        }
    }
    let signed = signed.expect("no checkpoint was signed within 5 s");
    assert!(signed.seq >= 3);
}

#[tokio::test]
async fn only_the_audit_administrator_verifies_and_exports_others_see_their_own() {
    let (t, v) = busy_server().await;
    let bob_key = "1ck_bobbobbobbobbobbobbobbobbobbobbobbobbobbobbo";
    let storage = t.server.storage();
    storage
        .insert_api_key(
            &ApiKeyRecord {
                id: "bob-key".into(),
                user_id: "bob".into(),
                name: "bob".into(),
                key_hash: Sha256::digest(bob_key.as_bytes()).to_vec(),
                key_prefix: bob_key[..12].into(),
                vault_scope: None,
                created_at: 0,
                revoked_at: None,
            },
            &system_event("key.create", "bob-key"),
        )
        .await
        .unwrap();
    let bob = TestServer {
        server: t.server.clone(),
        admin_key: bob_key.into(),
        dir: tempfile::tempdir().unwrap(),
    };
    for (method, uri) in [
        (Method::GET, "/v1/audit/verify"),
        (Method::GET, "/v1/audit/export"),
        (Method::POST, "/v1/audit/checkpoints"),
    ] {
        bob.call(method, uri, None)
            .await
            .assert_problem_type(403, "forbidden");
    }
    let bobs_vault = bob.vault(None).await;
    let seen = bob.call(Method::GET, "/v1/audit/events", None).await;
    assert_eq!(seen.status, StatusCode::OK);
    for event in seen.body["events"].as_array().unwrap() {
        assert!(
            event["actor_id"] == "bob" || event["vault_id"] == bobs_vault,
            "bob sees {event}"
        );
        assert_ne!(event["vault_id"], v);
    }
    assert!(seen.body["count"].as_u64().unwrap() >= 1);

    // A scoped key of the administrator is refused too.
    let scoped = t
        .call(
            Method::POST,
            "/v1/auth/api-keys",
            Some(json!({ "name": "ci", "vault_ids": [v] })),
        )
        .await;
    assert_eq!(scoped.status, 201);
    let scoped = TestServer {
        server: t.server.clone(),
        admin_key: scoped.body["key"].as_str().unwrap().into(),
        dir: tempfile::tempdir().unwrap(),
    };
    scoped
        .call(Method::GET, "/v1/audit/events", None)
        .await
        .assert_problem_type(403, "forbidden");
}
