//! Tiers and quotas: vault and secret limits (also under concurrency) and custody modes.

use axum::body::Body;
use axum::http::{Method, Request};
use serde_json::json;
use tower::ServiceExt as _;

use crate::support::TestServer;

async fn server_with_tier(tier: &str, tiers: &str) -> TestServer {
    let tiers = tiers.to_owned();
    let tier = tier.to_owned();
    TestServer::with_config(move |c| c.with_tier(&tier, &tiers).unwrap()).await
}

#[tokio::test]
async fn the_vault_limit_refuses_the_next_vault_until_one_is_deleted() {
    let t = server_with_tier("free", "[free]\nmax_vaults = 2").await;
    let a = t.vault(None).await;
    t.vault(None).await;
    let refused = t
        .call(Method::POST, "/v1/vaults", Some(json!({ "name": "third" })))
        .await;
    refused.assert_problem(
        403,
        "resource-limit-exceeded",
        "Resource limit exceeded",
        "this organisation's `free` tier allows at most 2 vaults, and that many exist; delete \
         some vaults or move to a larger tier (configuration `tiers.free.max_vaults`)",
    );
    assert_eq!(
        t.call(Method::GET, "/v1/vaults", None).await.body["vaults"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "nothing was written"
    );
    let deleted = t
        .call(Method::DELETE, &format!("/v1/vaults/{a}"), None)
        .await;
    assert_eq!(deleted.status, 204);
    t.vault(None).await;
}

#[tokio::test]
async fn the_agent_limit_refuses_the_next_agent_until_one_is_deleted() {
    let t = server_with_tier("free", "[free]\nmax_agents = 2").await;
    let create = |name: &str| t.call(Method::POST, "/v1/agents", Some(json!({ "name": name })));
    let first = create("one").await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(create("two").await.status, 201);
    let refused = create("three").await;
    refused.assert_problem(
        403,
        "resource-limit-exceeded",
        "Resource limit exceeded",
        "this organisation's `free` tier allows at most 2 agents, and that many exist; delete \
         some agents or move to a larger tier (configuration `tiers.free.max_agents`)",
    );
    // Nothing was written, and the refusal is in the trail with the quota it hit.
    let listed = t.call(Method::GET, "/v1/agents", None).await;
    assert_eq!(listed.body["agents"].as_array().unwrap().len(), 2);
    let events = t
        .call(
            Method::GET,
            "/v1/audit/events?action=agent.create&limit=10",
            None,
        )
        .await;
    let events = events.body["events"].as_array().unwrap().clone();
    assert_eq!(events.len(), 3, "{events:?}");
    let denied: Vec<_> = events.iter().filter(|e| e["outcome"] == "denied").collect();
    assert_eq!(denied.len(), 1, "{events:?}");
    let detail: serde_json::Value =
        serde_json::from_str(denied[0]["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["quota"], json!({ "resource": "agents", "limit": 2 }));
    assert_eq!(detail["status"], 403);
    let metrics = t.server.metrics().render();
    assert!(
        metrics
            .lines()
            .any(|l| l == r#"mpc_vault_quota_refusals_total{resource="agents"} 1"#),
        "{metrics}"
    );
    // Deleting an agent frees its place.
    let id = first.body["agent"]["id"].as_str().unwrap();
    let deleted = t
        .call(Method::DELETE, &format!("/v1/agents/{id}"), None)
        .await;
    assert_eq!(deleted.status, 204);
    assert_eq!(create("three").await.status, 201);
    create("four")
        .await
        .assert_problem_type(403, "resource-limit-exceeded");
}

#[tokio::test]
async fn the_secret_limit_counts_live_secrets_not_versions() {
    let t = server_with_tier("pro", "[pro]\nmax_secrets = 2").await;
    let v = t.vault(None).await;
    assert_eq!(t.put(&v, "a", "1").await.status, 201);
    assert_eq!(t.put(&v, "b", "1").await.status, 201);
    t.put(&v, "c", "1").await.assert_problem(
        403,
        "resource-limit-exceeded",
        "Resource limit exceeded",
        "this organisation's `pro` tier allows at most 2 secrets, and that many exist; delete \
         some secrets or move to a larger tier (configuration `tiers.pro.max_secrets`)",
    );
    // A new version of an existing secret is not a new secret.
    assert_eq!(t.put(&v, "a", "2").await.status, 201);
    // Deleting frees a place; writing the deleted path again would take one.
    let deleted = t
        .call(Method::DELETE, &format!("/v1/vaults/{v}/secrets/a"), None)
        .await;
    assert_eq!(deleted.status, 204);
    assert_eq!(t.put(&v, "c", "1").await.status, 201);
    t.put(&v, "a", "3")
        .await
        .assert_problem_type(403, "resource-limit-exceeded");
    // The refused write left nothing behind: `c` has one version, `a` stays deleted.
    let versions = t
        .call(
            Method::GET,
            &format!("/v1/vaults/{v}/secret-versions/c"),
            None,
        )
        .await;
    assert_eq!(versions.body["versions"].as_array().unwrap().len(), 1);
    assert_eq!(t.get(&v, "a", None).await.status, 410);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_at_the_limit_let_exactly_one_through() {
    let t = server_with_tier("free", "[free]\nmax_vaults = 1\nmax_secrets = 1").await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let app = t.server.app();
        let key = t.admin_key.clone();
        tasks.push(tokio::spawn(async move {
            let request = Request::post("/v1/vaults")
                .header("authorization", format!("Bearer {key}"))
                .header("content-type", "application/json")
                .body(Body::from(json!({ "name": format!("v{i}") }).to_string()))
                .unwrap();
            app.oneshot(request).await.unwrap().status().as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 403, 403, 403, 403, 403, 403, 403]);

    let vault = t.call(Method::GET, "/v1/vaults", None).await.body["vaults"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let app = t.server.app();
        let key = t.admin_key.clone();
        let vault = vault.clone();
        tasks.push(tokio::spawn(async move {
            let request = Request::put(format!("/v1/vaults/{vault}/secrets/s{i}"))
                .header("authorization", format!("Bearer {key}"))
                .header("content-type", "application/json")
                .body(Body::from(json!({ "value": "x" }).to_string()))
                .unwrap();
            app.oneshot(request).await.unwrap().status().as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 403, 403, 403, 403, 403, 403, 403]);
}

#[tokio::test]
async fn a_tier_refuses_custody_modes_it_does_not_include() {
    let t = server_with_tier("free", "").await;
    let detail = "custody mode `2of3_multi_hsm` is not available on this organisation's `free` \
                  tier; allowed: standard";
    t.call(
        Method::POST,
        "/v1/vaults",
        Some(json!({ "name": "x", "mpc_custody": "2of3_multi_hsm" })),
    )
    .await
    .assert_problem(
        403,
        "custody-mode-not-allowed",
        "Custody mode not allowed",
        detail,
    );
    let v = t.vault(None).await;
    t.call(
        Method::POST,
        &format!("/v1/vaults/{v}/mpc"),
        Some(json!({ "custody_mode": "2of3_multi_hsm" })),
    )
    .await
    .assert_problem(
        403,
        "custody-mode-not-allowed",
        "Custody mode not allowed",
        detail,
    );
    // A custom layout is `custom` for the tier list.
    t.call(
        Method::POST,
        &format!("/v1/vaults/{v}/mpc"),
        Some(json!({ "custody_mode": "2of2:gcp,aws" })),
    )
    .await
    .assert_problem_type(403, "custody-mode-not-allowed");
    let ok = t
        .call(
            Method::POST,
            &format!("/v1/vaults/{v}/mpc"),
            Some(json!({ "custody_mode": "standard" })),
        )
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
}

#[tokio::test]
async fn a_configured_mode_list_replaces_the_default() {
    let t = server_with_tier("free", "[free]\ncustody_modes = [\"2of3_multi_hsm\"]").await;
    t.vault(Some("2of3_multi_hsm")).await;
    t.call(
        Method::POST,
        "/v1/vaults",
        Some(json!({ "name": "x", "mpc_custody": "standard" })),
    )
    .await
    .assert_problem_type(403, "custody-mode-not-allowed");
}

#[tokio::test]
async fn tier_configuration_is_validated_with_the_field_named() {
    let err = vault_server::Config::from_toml_str("tier = \"gold\"").unwrap_err();
    assert!(err.to_string().contains("`tier`"), "{err}");
    let err = vault_server::Config::from_toml_str("[tiers.free]\nmax_vaults = -1").unwrap_err();
    assert!(err.to_string().contains("max_vaults"), "{err}");
    let err = vault_server::Config::from_toml_str("[tiers.free]\nmax_planets = 1").unwrap_err();
    assert!(err.to_string().contains("max_planets"), "{err}");
    let env = std::collections::BTreeMap::from([("MPCVAULT_TIER".to_owned(), "team".to_owned())]);
    let config = vault_server::Config::load(None, &env).unwrap();
    assert_eq!(config.limits().tier().as_str(), "team");
    assert_eq!(config.limits().limits().max_vaults(), Some(50));
}

#[tokio::test]
async fn treasury_keys_and_their_system_vault_take_no_place_under_the_limits() {
    let t = server_with_tier("free", "[free]\nmax_vaults = 1\nmax_secrets = 1").await;
    // Every chain's key goes into the `__treasury-keys` system vault, past both limits.
    let generated = t
        .call(
            Method::POST,
            "/v1/treasury/wallets/generate",
            Some(json!({})),
        )
        .await;
    assert_eq!(generated.status, 201, "{}", generated.body);
    // The organisation's own place under each limit is still free.
    let v = t.vault(None).await;
    assert_eq!(t.put(&v, "a", "1").await.status, 201);
    t.put(&v, "b", "1")
        .await
        .assert_problem_type(403, "resource-limit-exceeded");
    t.call(
        Method::POST,
        "/v1/vaults",
        Some(json!({ "name": "second" })),
    )
    .await
    .assert_problem_type(403, "resource-limit-exceeded");
}
