use axum::http::Method;
use serde_json::{Value, json};

use crate::support::TestServer;

const MODES: [&str; 4] = [
    "standard",
    "2of2_client_custody",
    "2of3_multi_hsm",
    "2of3_client_custody",
];

fn has_client_slot(mode: &str) -> bool {
    mode.contains("client")
}

fn share_of(answer: &crate::support::Answer) -> Option<String> {
    answer.body["client_share"].as_str().map(str::to_owned)
}

/// put / get / versions / get version / disable / delete / rotate, in one custody mode.
async fn lifecycle(mode: &str) {
    let t = TestServer::start().await;
    let v = t.vault(Some(mode)).await;

    let put1 = t
        .call(
            Method::PUT,
            &format!("/v1/vaults/{v}/secrets/db/password"),
            Some(json!({ "value": "hunter2", "type": "password", "metadata": { "env": "prod" } })),
        )
        .await;
    assert_eq!(put1.status, 201, "{mode}: {}", put1.body);
    assert_eq!(put1.body["path"], "db/password");
    assert_eq!(put1.body["type"], "password");
    assert_eq!(put1.body["version"], 1);
    assert_eq!(put1.body["metadata"], json!({ "env": "prod" }));
    assert_eq!(put1.body["expires_at"], Value::Null);
    assert_eq!(share_of(&put1).is_some(), has_client_slot(mode), "{mode}");
    let share1 = share_of(&put1);
    // The value never comes back from a PUT.
    assert!(
        !String::from_utf8(put1.raw.clone())
            .unwrap()
            .contains("hunter2")
    );

    let got = t.get(&v, "db/password", share1.as_deref()).await;
    assert_eq!(got.status, 200, "{mode}: {}", got.body);
    assert_eq!(got.body["value"], "hunter2");
    assert_eq!(got.body["version"], 1);
    assert_eq!(got.body["type"], "password");
    assert_eq!(got.body["created_by"], "admin");
    assert_eq!(got.body["id"], put1.body["id"]);
    assert_eq!(got.headers.get("cache-control").unwrap(), "no-store");

    // The percent-encoded path is the same secret.
    let encoded = t.get(&v, "db%2Fpassword", share1.as_deref()).await;
    assert_eq!(encoded.status, 200);
    assert_eq!(encoded.body["value"], "hunter2");

    let put2 = t.put(&v, "db/password", "correct horse").await;
    assert_eq!(put2.status, 201);
    assert_eq!(put2.body["version"], 2);
    assert_eq!(put2.body["id"], put1.body["id"]);
    let share2 = share_of(&put2);
    if has_client_slot(mode) {
        // Each version has its own client share.
        assert_ne!(share1, share2);
    }
    let latest = t.get(&v, "db/password", share2.as_deref()).await;
    assert_eq!(latest.body["value"], "correct horse");
    assert_eq!(latest.body["version"], 2);

    let headers: Vec<(&str, &str)> = share1
        .as_deref()
        .map(|s| ("x-client-share", s))
        .into_iter()
        .collect();
    let old = t
        .call_with(
            Method::GET,
            &format!("/v1/vaults/{v}/secret-version/db/password/1"),
            None,
            &headers,
        )
        .await;
    assert_eq!(old.status, 200, "{}", old.body);
    assert_eq!(old.body["value"], "hunter2");

    let versions = t
        .call(
            Method::GET,
            &format!("/v1/vaults/{v}/secret-versions/db/password"),
            None,
        )
        .await;
    assert_eq!(versions.status, 200);
    let list = versions.body["versions"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["version"], 1);
    assert_eq!(list[1]["version"], 2);
    assert_eq!(list[0]["access_count"], 3);

    let listed = t
        .call(
            Method::GET,
            &format!("/v1/vaults/{v}/secrets?prefix=db/"),
            None,
        )
        .await;
    assert_eq!(listed.status, 200);
    let secrets = listed.body["secrets"].as_array().unwrap();
    assert_eq!(secrets.len(), 1);
    assert_eq!(secrets[0]["path"], "db/password");
    assert_eq!(secrets[0]["version"], 2);
    assert!(secrets[0].get("value").is_none());
    let none = t
        .call(
            Method::GET,
            &format!("/v1/vaults/{v}/secrets?prefix=web/"),
            None,
        )
        .await;
    assert_eq!(none.body, json!({ "secrets": [] }));

    let disabled = t
        .call(
            Method::POST,
            &format!("/v1/vaults/{v}/secret-version-disable/db/password/1"),
            None,
        )
        .await;
    assert_eq!(disabled.status, 204, "{}", disabled.body);
    t.call_with(
        Method::GET,
        &format!("/v1/vaults/{v}/secret-version/db/password/1"),
        None,
        &headers,
    )
    .await
    .assert_problem(410, "gone", "Gone", "this secret version was disabled");

    let rotated = t
        .call(
            Method::POST,
            &format!("/v1/vaults/{v}/secret-rotate/db/password"),
            Some(json!({ "length": 40, "charset": "hex" })),
        )
        .await;
    assert_eq!(rotated.status, 201, "{}", rotated.body);
    assert_eq!(rotated.body["version"], 3);
    // A rotation keeps the latest version's type and metadata (version 2 was a plain PUT).
    assert_eq!(rotated.body["type"], "generic");
    assert_eq!(rotated.body["metadata"], json!({}));
    let share3 = share_of(&rotated);
    let new_value = t.get(&v, "db/password", share3.as_deref()).await;
    let value = new_value.body["value"].as_str().unwrap();
    assert_eq!(value.len(), 40);
    assert!(value.bytes().all(|b| b.is_ascii_hexdigit()));

    let deleted = t
        .call(
            Method::DELETE,
            &format!("/v1/vaults/{v}/secrets/db/password"),
            None,
        )
        .await;
    assert_eq!(deleted.status, 204);
    t.get(&v, "db/password", share3.as_deref())
        .await
        .assert_problem(410, "gone", "Gone", "this secret was deleted");
    t.call_with(
        Method::GET,
        &format!("/v1/vaults/{v}/secret-version/db/password/2"),
        None,
        &[],
    )
    .await
    .assert_problem(410, "gone", "Gone", "this secret was deleted");
    t.call(
        Method::DELETE,
        &format!("/v1/vaults/{v}/secrets/db/password"),
        None,
    )
    .await
    .assert_problem(410, "gone", "Gone", "this secret was already deleted");
    assert_eq!(
        t.call(Method::GET, &format!("/v1/vaults/{v}/secrets"), None)
            .await
            .body,
        json!({ "secrets": [] })
    );
}

#[tokio::test]
async fn lifecycle_standard() {
    lifecycle("standard").await;
}

#[tokio::test]
async fn lifecycle_2of2_client_custody() {
    lifecycle("2of2_client_custody").await;
}

#[tokio::test]
async fn lifecycle_2of3_multi_hsm() {
    lifecycle("2of3_multi_hsm").await;
}

#[tokio::test]
async fn lifecycle_2of3_client_custody() {
    lifecycle("2of3_client_custody").await;
}

#[tokio::test]
async fn max_access_count_then_410_in_every_mode() {
    for mode in MODES {
        let t = TestServer::start().await;
        let v = t.vault(Some(mode)).await;
        let put = t
            .call(
                Method::PUT,
                &format!("/v1/vaults/{v}/secrets/once"),
                Some(json!({ "value": "v", "max_access_count": 2 })),
            )
            .await;
        assert_eq!(put.status, 201);
        let share = share_of(&put);
        assert_eq!(t.get(&v, "once", share.as_deref()).await.status, 200);
        assert_eq!(t.get(&v, "once", share.as_deref()).await.status, 200);
        t.get(&v, "once", share.as_deref()).await.assert_problem(
            410,
            "gone",
            "Gone",
            "this secret version has been read its maximum number of times",
        );
    }
}

#[tokio::test]
async fn expiry_then_410_in_every_mode() {
    let t = TestServer::start().await;
    let mut written = Vec::new();
    let expires = time::OffsetDateTime::now_utc() + time::Duration::milliseconds(1500);
    let expires = expires
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    for mode in MODES {
        let v = t.vault(Some(mode)).await;
        let put = t
            .call(
                Method::PUT,
                &format!("/v1/vaults/{v}/secrets/short-lived"),
                Some(json!({ "value": "v", "expires_at": expires })),
            )
            .await;
        assert_eq!(put.status, 201, "{}", put.body);
        assert!(put.body["expires_at"].is_string());
        let share = share_of(&put);
        assert_eq!(t.get(&v, "short-lived", share.as_deref()).await.status, 200);
        written.push((v, share));
    }
    tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
    for (v, share) in written {
        t.get(&v, "short-lived", share.as_deref())
            .await
            .assert_problem(410, "gone", "Gone", "this secret version has expired");
    }
}

#[tokio::test]
async fn secrets_written_before_mpc_keep_standard_custody() {
    let t = TestServer::start().await;
    let v = t.vault(None).await;
    let before = t.put(&v, "legacy", "old").await;
    assert_eq!(before.status, 201);
    assert!(before.body.get("client_share").is_none());
    let enabled = t
        .call(
            Method::POST,
            &format!("/v1/vaults/{v}/mpc"),
            Some(json!({ "mpc_custody": "2of2_client_custody" })),
        )
        .await;
    assert_eq!(enabled.status, 200);
    // The old version still opens without a client share.
    assert_eq!(t.get(&v, "legacy", None).await.body["value"], "old");
    // A new version uses the mode.
    let after = t.put(&v, "legacy", "new").await;
    let share = share_of(&after).expect("client share");
    t.get(&v, "legacy", None)
        .await
        .assert_problem_type(400, "client-share-missing");
    assert_eq!(t.get(&v, "legacy", Some(&share)).await.body["value"], "new");
    let headers = [];
    let old = t
        .call_with(
            Method::GET,
            &format!("/v1/vaults/{v}/secret-version/legacy/1"),
            None,
            &headers,
        )
        .await;
    assert_eq!(old.body["value"], "old");
}

#[tokio::test]
async fn the_client_share_header_name_is_case_insensitive() {
    let t = TestServer::start().await;
    let v = t.vault(Some("2of2_client_custody")).await;
    let share = share_of(&t.put(&v, "k", "value").await).unwrap();
    for name in ["X-Client-Share", "x-client-share", "X-CLIENT-SHARE"] {
        let answer = t
            .call_with(
                Method::GET,
                &format!("/v1/vaults/{v}/secrets/k"),
                None,
                &[(name, &share)],
            )
            .await;
        assert_eq!(answer.body["value"], "value");
    }
}

#[tokio::test]
async fn a_put_stores_the_version_and_all_its_shares() {
    // The shares are in `secret_dek_shares`, one row per provider slot, in the same store.
    let t = TestServer::start().await;
    let v = t.vault(Some("2of3_multi_hsm")).await;
    let marker = "plaintext-marker-5f3c9a";
    assert_eq!(t.put(&v, "a", marker).await.status, 201);
    let db = t.dir.path().join("vault.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let rows: Vec<(i64, String, String)> =
        sqlx::query_as("SELECT slot, provider, state FROM secret_dek_shares ORDER BY slot")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        rows,
        vec![
            (1, "gcp".to_owned(), "stored".to_owned()),
            (2, "aws".to_owned(), "stored".to_owned()),
            (3, "azure".to_owned(), "stored".to_owned()),
        ]
    );
    let envelopes: Vec<Vec<u8>> = sqlx::query_scalar("SELECT envelope FROM secret_versions")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(envelopes.len(), 1);
    pool.close().await;
    // The plaintext is nowhere in the database files (main file and WAL).
    for name in ["vault.db", "vault.db-wal"] {
        if let Ok(bytes) = std::fs::read(t.dir.path().join(name)) {
            assert!(
                !bytes.windows(marker.len()).any(|w| w == marker.as_bytes()),
                "plaintext found in {name}"
            );
        }
    }
}
