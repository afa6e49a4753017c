//! `GET /metrics`: content after traffic, labels that never carry request data, provider and
//! liar series, and the bearer-token mode.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request};
use kms_providers::{FaultConfig, FaultInjector, KeyProvider, Latency};
use vault_server::{Config, VaultServer};

use crate::support::TestServer;

async fn scrape(t: &TestServer, auth: Option<&str>) -> crate::support::Answer {
    let mut request = Request::get("/metrics");
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    t.raw(request.body(Body::empty()).unwrap()).await
}

fn text(answer: &crate::support::Answer) -> String {
    String::from_utf8(answer.raw.clone()).unwrap()
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_and_never_by_raw_path() {
    let t = TestServer::start().await;
    let v = t.vault(Some("2of3_multi_hsm")).await;
    assert_eq!(
        t.put(&v, "db/very-secret-path", "hunter2").await.status,
        201
    );
    assert_eq!(t.get(&v, "db/very-secret-path", None).await.status, 200);
    assert_eq!(t.get(&v, "db/missing", None).await.status, 404);
    assert_eq!(
        t.call(Method::GET, "/no/such/route", None).await.status,
        404
    );
    t.server.metrics().audit_write_failed();

    let answer = scrape(&t, None).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.headers.get("content-type").unwrap(),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let body = text(&answer);
    // The SQLite store's group commit: the vault, the write and the read (its access and
    // audit event) were committed, each request alone here, so at least three commits, each
    // of at least one write.
    let value = |name: &str| -> u64 {
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from:\n{body}"))
    };
    let commits = value("mpc_vault_storage_commits_total");
    let writes = value("mpc_vault_storage_committed_writes_total");
    assert!(
        commits >= 3 && writes >= commits,
        "{commits} commits, {writes} writes"
    );
    for line in [
        r#"mpc_vault_http_requests_total{method="PUT",route="/v1/vaults/{id}/secrets/{*path}",status="201"} 1"#,
        r#"mpc_vault_http_requests_total{method="GET",route="/v1/vaults/{id}/secrets/{*path}",status="200"} 1"#,
        r#"mpc_vault_http_requests_total{method="GET",route="/v1/vaults/{id}/secrets/{*path}",status="404"} 1"#,
        r#"mpc_vault_http_requests_total{method="POST",route="/v1/vaults",status="201"} 1"#,
        r#"mpc_vault_http_requests_total{method="GET",route="unmatched",status="404"} 1"#,
        r#"mpc_vault_http_request_duration_seconds_count{method="PUT",route="/v1/vaults/{id}/secrets/{*path}"} 1"#,
        r#"mpc_vault_http_request_duration_seconds_bucket{le="+Inf",method="PUT",route="/v1/vaults/{id}/secrets/{*path}"} 1"#,
        // One write wraps one share per provider.
        r#"mpc_vault_provider_calls_total{provider="gcp",operation="wrap",outcome="ok"} 1"#,
        r#"mpc_vault_provider_calls_total{provider="aws",operation="wrap",outcome="ok"} 1"#,
        r#"mpc_vault_provider_calls_total{provider="azure",operation="wrap",outcome="ok"} 1"#,
        r#"mpc_vault_provider_call_duration_seconds_count{provider="gcp",operation="wrap"} 1"#,
        "mpc_vault_audit_write_failures_total 1",
        "mpc_vault_rate_limited_requests_total 0",
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "missing {line:?} in\n{body}"
        );
    }
    assert!(body.ends_with("# EOF\n"));
    // No request data in any label: not the secret path, not the vault id, not the value.
    for leak in [
        "very-secret-path",
        "db/missing",
        "hunter2",
        v.as_str(),
        "no/such",
    ] {
        assert!(!body.contains(leak), "{leak:?} leaked into\n{body}");
    }
}

#[tokio::test]
async fn a_metrics_token_guards_the_endpoint() {
    let t = TestServer::with_config(|c| c.with_metrics_token("scrape-token-0123456789")).await;
    scrape(&t, None)
        .await
        .assert_problem_type(401, "unauthorized");
    scrape(&t, Some("Bearer wrong-token-0123456789"))
        .await
        .assert_problem_type(401, "unauthorized");
    // An API key is not the metrics token.
    let admin = format!("Bearer {}", t.admin_key);
    scrape(&t, Some(&admin))
        .await
        .assert_problem_type(401, "unauthorized");
    let ok = scrape(&t, Some("Bearer scrape-token-0123456789")).await;
    assert_eq!(ok.status, 200);
    assert!(text(&ok).contains("mpc_vault_http_requests_total"));
}

#[tokio::test]
async fn metrics_can_be_turned_off_and_tokens_come_from_the_environment() {
    let config = Config::from_toml_str("[metrics]\nenabled = false").unwrap();
    assert!(!config.metrics_enabled());
    let t = TestServer::with_config(|c| {
        Config::from_toml_str("[metrics]\nenabled = false")
            .unwrap()
            .with_data_dir(c.data_dir())
    })
    .await;
    scrape(&t, None).await.assert_problem_type(404, "not-found");

    let missing = Config::from_toml_str("[metrics]\ntoken_env = \"NO_SUCH_VAR_FOR_TEST\"");
    assert!(
        missing
            .unwrap_err()
            .to_string()
            .contains("metrics.token_env")
    );
    let env = std::collections::BTreeMap::from([("SCRAPE_TOKEN".to_owned(), "short".to_owned())]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "[metrics]\ntoken_env = \"SCRAPE_TOKEN\"").unwrap();
    let short = Config::load(Some(&file), &env).unwrap_err();
    assert!(short.to_string().contains("at least 16"), "{short}");
}

#[tokio::test]
async fn a_lying_provider_is_counted_per_slot() {
    // Written while every provider is honest.
    let t = TestServer::start().await;
    let v = t.vault(Some("2of3_multi_hsm")).await;
    assert_eq!(t.put(&v, "k", "value").await.status, 201);
    t.server.close().await;

    // Restarted with azure flipping a bit of every share it unwraps and aws slow, so that the
    // first two shares to arrive are gcp's and azure's and the read must find the liar.
    let config = Config::default_config().with_data_dir(t.dir.path());
    let server =
        VaultServer::open_instrumented(config, |name, provider: Arc<dyn KeyProvider>| match name {
            "azure" => Arc::new(
                FaultInjector::new(provider, FaultConfig::new(3).corrupt_rate(1.0)).unwrap(),
            ) as Arc<dyn KeyProvider>,
            "aws" => Arc::new(
                FaultInjector::new(
                    provider,
                    FaultConfig::new(4).latency(Latency::Fixed(Duration::from_millis(300))),
                )
                .unwrap(),
            ),
            _ => provider,
        })
        .await
        .unwrap();
    let t = TestServer {
        server,
        admin_key: t.admin_key,
        dir: t.dir,
    };
    let read = t.get(&v, "k", None).await;
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.body["value"], "value");
    let body = text(&scrape(&t, None).await);
    assert!(
        body.lines()
            .any(|l| l == r#"mpc_vault_reconstruct_liars_total{slot="3",holder="azure"} 1"#),
        "{body}"
    );
    assert!(
        !body.contains(r#"reconstruct_liars_total{slot="1""#)
            && !body.contains(r#"reconstruct_liars_total{slot="2""#),
        "{body}"
    );
}
