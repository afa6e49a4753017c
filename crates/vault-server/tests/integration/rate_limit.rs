//! Per-principal rate limits: 429 with Retry-After and a problem body, one bucket per API key
//! (its access tokens included), one per peer address for everything else.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use vault_server::{Config, VaultServer};

use crate::support::{LiveServer, TestServer};

#[tokio::test]
async fn a_key_over_its_burst_gets_429_with_retry_after_and_other_keys_do_not() {
    // 0.2 requests per second: a refused request is told to wait 5 s.
    let t = TestServer::with_config(|c| c.with_rate_limit(Some((0.2, 3))).unwrap()).await;
    let created = t
        .call(
            Method::POST,
            "/v1/auth/api-keys",
            Some(json!({ "name": "other" })),
        )
        .await;
    assert_eq!(created.status, 201);
    let other = created.body["key"].as_str().unwrap().to_owned();
    assert_eq!(t.call(Method::GET, "/v1/vaults", None).await.status, 200);
    assert_eq!(t.call(Method::GET, "/v1/vaults", None).await.status, 200);
    let refused = t.call(Method::GET, "/v1/vaults", None).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers.get("retry-after").unwrap(), "5");
    refused.assert_problem(
        429,
        "rate-limited",
        "Too many requests",
        "too many requests: this server allows 0.2 requests per second with bursts of 3 per \
         API key or agent (per address without credentials); retry after 5 s",
    );
    // Another key has its own bucket.
    let t2 = TestServer {
        server: t.server.clone(),
        admin_key: other,
        dir: tempfile::tempdir().unwrap(),
    };
    assert_eq!(t2.call(Method::GET, "/v1/vaults", None).await.status, 200);
    let metrics = t.server.metrics().render();
    assert!(
        metrics
            .lines()
            .any(|l| l == "mpc_vault_rate_limited_requests_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.lines().any(|l| l
            == r#"mpc_vault_http_requests_total{method="GET",route="/v1/vaults",status="429"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_agent_has_its_own_bucket_shared_by_its_key_and_tokens() {
    let t = TestServer::with_config(|c| c.with_rate_limit(Some((0.2, 3))).unwrap()).await;
    let created = t
        .call(Method::POST, "/v1/agents", Some(json!({ "name": "ci" })))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let agent_id = created.body["agent"]["id"].as_str().unwrap().to_owned();
    let agent_key = created.body["api_key"].as_str().unwrap().to_owned();
    let as_agent = |credential: &str| TestServer {
        server: t.server.clone(),
        admin_key: credential.to_owned(),
        dir: tempfile::tempdir().unwrap(),
    };
    // The token exchange carries no valid credential (the key is in the body): it is charged
    // to the address, not to the agent.
    let token = as_agent("")
        .call(
            Method::POST,
            "/v1/auth/agent-token",
            Some(json!({ "api_key": agent_key, "agent_id": agent_id })),
        )
        .await;
    assert_eq!(token.status, 200, "{}", token.body);
    let token = token.body["access_token"].as_str().unwrap().to_owned();

    // Burst 3: two requests with the agent key and one with its token, then a refusal.
    let by_key = as_agent(&agent_key);
    let by_token = as_agent(&token);
    assert_eq!(
        by_key.call(Method::GET, "/v1/vaults", None).await.status,
        200
    );
    assert_eq!(
        by_key.call(Method::GET, "/v1/vaults", None).await.status,
        200
    );
    assert_eq!(
        by_token.call(Method::GET, "/v1/vaults", None).await.status,
        200
    );
    let refused = by_token.call(Method::GET, "/v1/vaults", None).await;
    refused.assert_problem_type(429, "rate-limited");
    assert_eq!(refused.headers.get("retry-after").unwrap(), "5");
    by_key
        .call(Method::GET, "/v1/vaults", None)
        .await
        .assert_problem_type(429, "rate-limited");
    // The user who created the agent has a bucket of their own, untouched by the agent's.
    assert_eq!(t.call(Method::GET, "/v1/vaults", None).await.status, 200);
    let metrics = t.server.metrics().render();
    assert!(
        metrics
            .lines()
            .any(|l| l == "mpc_vault_rate_limited_requests_total 2"),
        "{metrics}"
    );

    // Deleting the agent stops it at once, even with a bucket already refused: the request
    // is authenticated (and refused with 401) in the rate-limit layer, charged to the address.
    let deleted = t
        .call(Method::DELETE, &format!("/v1/agents/{agent_id}"), None)
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    by_key
        .call(Method::GET, "/v1/vaults", None)
        .await
        .assert_problem_type(401, "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_requests_are_limited_by_address_and_tokens_by_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::default_config()
        .with_data_dir(dir.path())
        .with_rate_limit(Some((0.1, 4)))
        .unwrap();
    let server = VaultServer::open(config).await.unwrap();
    let key = server.bootstrap_admin_key().await.unwrap().unwrap();
    let live = LiveServer::serve(server).await;
    let base = live.http_base();
    let http = reqwest::Client::new();

    // Address bucket (burst 4): one token exchange, one bad credential, two health checks.
    let token: Value = http
        .post(format!("{base}/v1/auth/api-key-token"))
        .json(&json!({ "api_key": key.expose_secret() }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    let bad = http
        .get(format!("{base}/v1/vaults"))
        .bearer_auth("1ck_not-a-real-key")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    for _ in 0..2 {
        let ok = http.get(format!("{base}/v1/health")).send().await.unwrap();
        assert_eq!(ok.status(), 200);
    }
    let refused = http.get(format!("{base}/v1/health")).send().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "10");
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    // A bad credential does not escape the address bucket.
    let bad = http
        .get(format!("{base}/v1/vaults"))
        .bearer_auth("1ck_not-a-real-key")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 429);

    // The key's bucket is separate from the address's, and its access token shares it.
    for _ in 0..2 {
        let ok = http
            .get(format!("{base}/v1/vaults"))
            .bearer_auth(key.expose_secret())
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
    }
    for _ in 0..2 {
        let ok = http
            .get(format!("{base}/v1/vaults"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
    }
    let refused = http
        .get(format!("{base}/v1/vaults"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    live.shutdown().await;
}

#[tokio::test]
async fn rate_limit_configuration_is_validated() {
    let config = Config::from_toml_str("[rate_limit]\nenabled = false").unwrap();
    assert!(config.rate_limit().is_none());
    for bad in [
        "[rate_limit]\nrequests_per_second = 0.0",
        "[rate_limit]\nburst = 0",
        "[rate_limit]\nmax_tracked = 0",
        "[rate_limit]\nper_minute = 3",
    ] {
        let err = Config::from_toml_str(bad).unwrap_err();
        assert!(
            err.to_string().contains("rate_limit") || err.to_string().contains("per_minute"),
            "{err}"
        );
    }
}
