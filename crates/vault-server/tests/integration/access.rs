//! Agents and policies: a matrix of principals × patterns × operations, cross-vault attempts,
//! expired policies, expired and deleted agents (keys and tokens), and changes that apply to
//! the next request.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use vault_server::ApiKeyRecord;

use crate::support::TestServer;

/// The same server, called with another credential.
fn as_caller(t: &TestServer, credential: &str) -> TestServer {
    TestServer {
        server: t.server.clone(),
        admin_key: credential.to_owned(),
        dir: tempfile::tempdir().unwrap(),
    }
}

fn rfc3339_in(seconds: i64) -> String {
    (time::OffsetDateTime::now_utc() + time::Duration::seconds(seconds))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

async fn agent(t: &TestServer, body: Value) -> (String, String) {
    let answer = t.call(Method::POST, "/v1/agents", Some(body)).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    let key = answer.body["api_key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("ocv_"));
    assert!(
        answer.body["agent"]["key_prefix"]
            .as_str()
            .unwrap()
            .starts_with("ocv_")
    );
    (answer.body["agent"]["id"].as_str().unwrap().to_owned(), key)
}

async fn policy(t: &TestServer, vault: &str, body: Value) -> String {
    let answer = t
        .call(
            Method::POST,
            &format!("/v1/vaults/{vault}/policies"),
            Some(body),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    answer.body["id"].as_str().unwrap().to_owned()
}

fn rule(kind: &str, id: &str, pattern: &str, perms: &[&str], effect: &str, priority: i64) -> Value {
    json!({
        "secret_path_pattern": pattern, "principal_type": kind, "principal_id": id,
        "permissions": perms, "effect": effect, "priority": priority,
    })
}

async fn read(t: &TestServer, vault: &str, path: &str) -> u16 {
    t.get(vault, path, None).await.status.as_u16()
}

async fn write(t: &TestServer, vault: &str, path: &str) -> u16 {
    t.put(vault, path, "from-agent").await.status.as_u16()
}

async fn listed(t: &TestServer, vault: &str) -> Vec<String> {
    let answer = t
        .call(Method::GET, &format!("/v1/vaults/{vault}/secrets"), None)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["path"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_policy_matrix_for_agents() {
    let t = TestServer::start().await;
    let v1 = t.vault(None).await;
    let v2 = t.vault(None).await;
    for path in [
        "db/password",
        "db/prod/password",
        "db/prod/other",
        "app/key",
        "other/x",
    ] {
        assert_eq!(t.put(&v1, path, "v").await.status, 201);
    }
    assert_eq!(t.put(&v2, "db/password", "v").await.status, 201);

    let (a, a_key) = agent(&t, json!({ "name": "deployer" })).await;
    let (b, b_key) = agent(&t, json!({ "name": "scoped", "vault_ids": [v1] })).await;
    let agent_a = as_caller(&t, &a_key);
    let agent_b = as_caller(&t, &b_key);

    // Deny by default: no policy, the vault does not exist for the agent.
    assert_eq!(read(&agent_a, &v1, "db/password").await, 404);

    policy(&t, &v1, rule("agent", &a, "db/**", &["read"], "allow", 0)).await;
    policy(
        &t,
        &v1,
        rule("agent", &a, "db/prod/*", &["read"], "deny", 0),
    )
    .await;
    let app = policy(
        &t,
        &v1,
        rule("agent", &a, "app/*", &["read", "write"], "allow", 0),
    )
    .await;
    policy(
        &t,
        &v1,
        rule("agent", &a, "db/prod/password", &["read"], "allow", 10),
    )
    .await;

    for (path, read_status, write_status) in [
        ("db/password", 200, 403),      // `db/**` allows read only
        ("db/prod/password", 200, 403), // priority 10 beats the deny
        ("db/prod/other", 403, 403),    // deny beats allow at equal priority
        ("app/key", 200, 201),          // read and write
        ("other/x", 403, 403),          // nothing matches: denied
    ] {
        assert_eq!(read(&agent_a, &v1, path).await, read_status, "read {path}");
        assert_eq!(
            write(&agent_a, &v1, path).await,
            write_status,
            "write {path}"
        );
    }
    // Other secret operations follow the same permissions.
    let versions = agent_a
        .call(
            Method::GET,
            &format!("/v1/vaults/{v1}/secret-versions/app/key"),
            None,
        )
        .await;
    assert_eq!(versions.status, 200);
    let delete = agent_a
        .call(
            Method::DELETE,
            &format!("/v1/vaults/{v1}/secrets/db/password"),
            None,
        )
        .await;
    assert_eq!(delete.status, 403);
    // Listing shows only what the agent may read.
    let mut seen = listed(&agent_a, &v1).await;
    seen.sort();
    assert_eq!(seen, ["app/key", "db/password", "db/prod/password"]);

    // Cross-vault: no policy in v2, and a vault-restricted agent stays restricted even with one.
    assert_eq!(read(&agent_a, &v2, "db/password").await, 404);
    policy(&t, &v2, rule("agent", &b, "**", &["read"], "allow", 0)).await;
    assert_eq!(read(&agent_b, &v2, "db/password").await, 404);
    policy(&t, &v1, rule("agent", &b, "**", &["read"], "allow", 0)).await;
    assert_eq!(read(&agent_b, &v1, "db/password").await, 200);
    // An agent's policy never applies to another agent.
    assert_eq!(read(&agent_b, &v1, "app/key").await, 200);
    assert_eq!(write(&agent_b, &v1, "app/key").await, 403);

    // Agents manage nothing, and see no vault metadata.
    for (method, uri, body) in [
        (
            Method::POST,
            "/v1/vaults".to_owned(),
            Some(json!({ "name": "x" })),
        ),
        (
            Method::POST,
            "/v1/agents".to_owned(),
            Some(json!({ "name": "x" })),
        ),
        (Method::GET, "/v1/agents".to_owned(), None),
        (
            Method::POST,
            "/v1/auth/api-keys".to_owned(),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("/v1/vaults/{v1}/policies"),
            Some(rule("agent", &a, "**", &["read", "write"], "allow", 99)),
        ),
        (Method::GET, "/v1/audit/events".to_owned(), None),
    ] {
        agent_a
            .call(method, &uri, body)
            .await
            .assert_problem_type(403, "forbidden");
    }
    assert_eq!(
        agent_a
            .call(Method::GET, &format!("/v1/vaults/{v1}"), None)
            .await
            .status,
        404
    );

    // Changes apply to the next request: the app policy turned into a deny, then deleted.
    let updated = t
        .call(
            Method::PUT,
            &format!("/v1/vaults/{v1}/policies/{app}"),
            Some(rule("agent", &a, "app/*", &["read", "write"], "deny", 0)),
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(updated.body["effect"], "deny");
    assert_eq!(read(&agent_a, &v1, "app/key").await, 403);
    let deleted = t
        .call(
            Method::DELETE,
            &format!("/v1/vaults/{v1}/policies/{app}"),
            None,
        )
        .await;
    assert_eq!(deleted.status, 204);
    assert_eq!(read(&agent_a, &v1, "app/key").await, 403);
    let gone = t
        .call(
            Method::GET,
            &format!("/v1/vaults/{v1}/policies/{app}"),
            None,
        )
        .await;
    assert_eq!(gone.status, 404);
    let all = t
        .call(Method::GET, &format!("/v1/vaults/{v1}/policies"), None)
        .await;
    assert_eq!(all.body["policies"].as_array().unwrap().len(), 4);

    // The creator is not subject to policies, even one denying them.
    policy(
        &t,
        &v1,
        rule("user", "admin", "**", &["read", "write"], "deny", 100),
    )
    .await;
    assert_eq!(read(&t, &v1, "db/prod/other").await, 200);

    // Every decision is in the audit trail with the agent as actor.
    let events = t
        .call(
            Method::GET,
            &format!("/v1/audit/events?actor_id={a}&limit=1000"),
            None,
        )
        .await;
    let events = events.body["events"].as_array().unwrap();
    assert!(events.iter().all(|e| e["actor_type"] == "agent"));
    assert!(
        events
            .iter()
            .any(|e| e["action"] == "secret.read" && e["outcome"] == "denied")
    );
    assert!(
        events
            .iter()
            .any(|e| e["action"] == "secret.write" && e["outcome"] == "success")
    );
}

#[tokio::test]
async fn users_other_than_the_creator_need_a_policy() {
    let t = TestServer::start().await;
    let v = t.vault(None).await;
    assert_eq!(t.put(&v, "shared/config", "v").await.status, 201);
    assert_eq!(t.put(&v, "private/key", "v").await.status, 201);
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
    let bob = as_caller(&t, bob_key);
    assert_eq!(read(&bob, &v, "shared/config").await, 404);
    policy(
        &t,
        &v,
        rule("user", "bob", "shared/*", &["read"], "allow", 0),
    )
    .await;
    assert_eq!(read(&bob, &v, "shared/config").await, 200);
    assert_eq!(read(&bob, &v, "private/key").await, 403);
    assert_eq!(write(&bob, &v, "shared/config").await, 403);
    assert_eq!(listed(&bob, &v).await, ["shared/config"]);
    // A policy for an agent with bob's id does not apply to the user bob.
    policy(
        &t,
        &v,
        rule("agent", "bob", "private/*", &["read"], "allow", 0),
    )
    .await;
    assert_eq!(read(&bob, &v, "private/key").await, 403);
    // Bob cannot manage the policies of a vault he did not create.
    assert_eq!(
        bob.call(Method::GET, &format!("/v1/vaults/{v}/policies"), None)
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn expired_policies_and_expired_or_deleted_agents_stop_working() {
    let t = TestServer::start().await;
    let v = t.vault(None).await;
    assert_eq!(t.put(&v, "db/password", "v").await.status, 201);

    // An agent whose key and tokens expire in 2 s, with a token, and a policy expiring in 1 s
    // beside a lasting one.
    let (short, short_key) = agent(
        &t,
        json!({ "name": "short", "expires_at": rfc3339_in(2), "token_ttl_seconds": 600 }),
    )
    .await;
    let mut temporary = rule("agent", &short, "db/*", &["read"], "allow", 5);
    temporary["expires_at"] = json!(rfc3339_in(1));
    policy(&t, &v, temporary).await;
    policy(&t, &v, rule("agent", &short, "db/*", &["read"], "deny", 0)).await;
    let token = t
        .call(
            Method::POST,
            "/v1/auth/agent-token",
            Some(json!({ "api_key": short_key, "agent_id": short })),
        )
        .await;
    assert_eq!(token.status, 200, "{}", token.body);
    assert_eq!(token.body["agent_id"], short);
    assert_eq!(token.body["token_type"], "Bearer");
    // The token does not outlive the agent.
    assert!(token.body["expires_in"].as_u64().unwrap() <= 2);
    let by_token = as_caller(&t, token.body["access_token"].as_str().unwrap());
    let by_key = as_caller(&t, &short_key);
    assert_eq!(read(&by_token, &v, "db/password").await, 200);
    assert_eq!(read(&by_key, &v, "db/password").await, 200);

    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The allowing policy expired: only the deny is left, and the vault is hidden again.
    assert_eq!(read(&by_key, &v, "db/password").await, 404);

    tokio::time::sleep(Duration::from_millis(1100)).await;
    // The agent expired: its key and its token are refused.
    by_key
        .call(Method::GET, &format!("/v1/vaults/{v}/secrets"), None)
        .await
        .assert_problem_type(401, "unauthorized");
    by_token
        .call(Method::GET, &format!("/v1/vaults/{v}/secrets"), None)
        .await
        .assert_problem_type(401, "unauthorized");
    let again = t
        .call(
            Method::POST,
            "/v1/auth/agent-token",
            Some(json!({ "api_key": short_key })),
        )
        .await;
    again.assert_problem_type(401, "unauthorized");

    // A deleted agent: its key and tokens stop at once.
    let (gone, gone_key) = agent(&t, json!({ "name": "to-delete" })).await;
    policy(&t, &v, rule("agent", &gone, "**", &["read"], "allow", 0)).await;
    let token = t
        .call(
            Method::POST,
            "/v1/auth/agent-token",
            Some(json!({ "api_key": gone_key })),
        )
        .await;
    let by_token = as_caller(&t, token.body["access_token"].as_str().unwrap());
    assert_eq!(read(&by_token, &v, "db/password").await, 200);
    let listed = t.call(Method::GET, "/v1/agents", None).await;
    assert!(
        listed.body["agents"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == gone)
    );
    // Listings never show a key.
    assert!(
        !String::from_utf8(listed.raw.clone())
            .unwrap()
            .contains(&gone_key)
    );
    assert_eq!(
        t.call(Method::GET, &format!("/v1/agents/{gone}"), None)
            .await
            .status,
        200
    );
    assert_eq!(
        t.call(Method::DELETE, &format!("/v1/agents/{gone}"), None)
            .await
            .status,
        204
    );
    assert_eq!(read(&by_token, &v, "db/password").await, 401);
    assert_eq!(
        read(&as_caller(&t, &gone_key), &v, "db/password").await,
        401
    );
    assert_eq!(
        t.call(Method::GET, &format!("/v1/agents/{gone}"), None)
            .await
            .status,
        404
    );

    // A wrong agent id or a user key is refused at the token endpoint.
    let (_, other_key) = agent(&t, json!({ "name": "other" })).await;
    let mismatched = t
        .call(
            Method::POST,
            "/v1/auth/agent-token",
            Some(json!({ "api_key": other_key, "agent_id": short })),
        )
        .await;
    mismatched.assert_problem_type(401, "unauthorized");
    let user_key = t
        .call(
            Method::POST,
            "/v1/auth/agent-token",
            Some(json!({ "api_key": t.admin_key })),
        )
        .await;
    user_key.assert_problem_type(401, "unauthorized");
}
