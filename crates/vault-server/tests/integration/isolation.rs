//! Another user's key sees none of a user's vaults or secrets, and can write nothing there.

use axum::http::Method;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use vault_server::ApiKeyRecord;

use crate::support::TestServer;

#[tokio::test]
async fn another_users_key_gets_404_and_writes_nothing() {
    let t = TestServer::start().await;
    let v = t.vault(Some("2of3_multi_hsm")).await;
    assert_eq!(t.put(&v, "db/password", "hunter2").await.status, 201);

    // Users are not managed over the API yet, so bob's key is stored directly.
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
            &crate::audit::system_event("key.create", "bob-key"),
        )
        .await
        .unwrap();
    let mut bob = TestServer {
        server: t.server.clone(),
        admin_key: bob_key.into(),
        dir: tempfile::tempdir().unwrap(),
    };

    assert_eq!(
        bob.call(Method::GET, "/v1/vaults", None).await.body,
        json!({ "vaults": [] })
    );
    let not_found = format!("there is no vault with id {v:?}");
    for (method, uri, body) in [
        (Method::GET, format!("/v1/vaults/{v}"), None),
        (
            Method::GET,
            format!("/v1/vaults/{v}/secrets/db/password"),
            None,
        ),
        (Method::GET, format!("/v1/vaults/{v}/secrets"), None),
        (
            Method::PUT,
            format!("/v1/vaults/{v}/secrets/db/password"),
            Some(json!({ "value": "evil" })),
        ),
        (
            Method::DELETE,
            format!("/v1/vaults/{v}/secrets/db/password"),
            None,
        ),
        (
            Method::POST,
            format!("/v1/vaults/{v}/mpc"),
            Some(json!({ "mpc_custody": "standard" })),
        ),
        (
            Method::POST,
            format!("/v1/vaults/{v}/secret-rotate/db/password"),
            None,
        ),
        (Method::DELETE, format!("/v1/vaults/{v}"), None),
    ] {
        bob.call(method.clone(), &uri, body).await.assert_problem(
            404,
            "not-found",
            "Not found",
            &not_found,
        );
    }
    // Nothing changed for the owner.
    bob.admin_key = t.admin_key.clone();
    let got = bob.get(&v, "db/password", None).await;
    assert_eq!(got.body["value"], "hunter2");
    assert_eq!(got.body["version"], 1);
}

#[tokio::test]
async fn a_vault_scoped_key_and_its_tokens_reach_only_their_vaults() {
    let t = TestServer::start().await;
    let mine = t.vault(Some("2of3_multi_hsm")).await;
    let other = t.vault(None).await;
    assert_eq!(t.put(&mine, "a", "in scope").await.status, 201);
    assert_eq!(t.put(&other, "b", "out of scope").await.status, 201);
    let created = t
        .call(
            Method::POST,
            "/v1/auth/api-keys",
            Some(json!({ "name": "agent", "vault_ids": [mine] })),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["vault_ids"], json!([mine]));
    let key = created.body["key"].as_str().unwrap().to_owned();
    let token = t
        .call(
            Method::POST,
            "/v1/auth/api-key-token",
            Some(json!({ "api_key": key })),
        )
        .await
        .body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    for credential in [key, token] {
        let scoped = TestServer {
            server: t.server.clone(),
            admin_key: credential,
            dir: tempfile::tempdir().unwrap(),
        };
        // Its vault works, reads and writes.
        let first = scoped
            .call(
                Method::GET,
                &format!("/v1/vaults/{mine}/secret-version/a/1"),
                None,
            )
            .await;
        assert_eq!(first.body["value"], "in scope");
        assert_eq!(scoped.put(&mine, "a", "v2").await.status, 201);
        let listed = scoped.call(Method::GET, "/v1/vaults", None).await;
        assert_eq!(listed.body["vaults"].as_array().unwrap().len(), 1);
        assert_eq!(listed.body["vaults"][0]["id"], json!(mine));
        // Another vault of the same user is invisible, and nothing is written there.
        scoped.get(&other, "b", None).await.assert_problem(
            404,
            "not-found",
            "Not found",
            &format!("there is no vault with id {other:?}"),
        );
        scoped
            .put(&other, "b", "evil")
            .await
            .assert_problem_type(404, "not-found");
        // Administrative actions are refused.
        scoped
            .call(Method::POST, "/v1/vaults", Some(json!({ "name": "x" })))
            .await
            .assert_problem(
                403,
                "forbidden",
                "Forbidden",
                "this API key is scoped to specific vaults and cannot create vaults; use an unscoped key",
            );
        scoped
            .call(Method::POST, "/v1/auth/api-keys", Some(json!({})))
            .await
            .assert_problem_type(403, "forbidden");
        scoped
            .call(Method::DELETE, &format!("/v1/vaults/{mine}"), None)
            .await
            .assert_problem_type(403, "forbidden");
    }
    assert_eq!(t.get(&other, "b", None).await.body["value"], "out of scope");
    assert_eq!(t.get(&other, "b", None).await.body["version"], 1);
    // A scope naming a vault the caller does not have is refused.
    t.call(
        Method::POST,
        "/v1/auth/api-keys",
        Some(json!({ "vault_ids": ["00000000-0000-4000-8000-000000000000"] })),
    )
    .await
    .assert_problem_type(404, "not-found");
}
