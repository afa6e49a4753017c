//! Resilience layers around the providers: a hung provider degrades `/v1/health/hsm` and reads
//! of 2-of-3 secrets go on through the other two; health checks run concurrently.

use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use kms_providers::{FaultConfig, FaultInjector, KeyProvider};
use vault_server::{Config, VaultServer};

use crate::support::TestServer;

/// Three local providers; `gcp` has a short timeout for its calls and health check but retries
/// for far longer than the request timeout, so a read that waited for it would time out.
const CONFIG: &str = r#"
    [providers.gcp]
    backend = "local"
    timeout_ms = 400
    retry_attempts = 20
    retry_base_delay_ms = 200
    retry_max_delay_ms = 2000
    retry_budget_ms = 60000
    [providers.aws]
    backend = "local"
    [providers.azure]
    backend = "local"
"#;

fn config(dir: &std::path::Path) -> Config {
    Config::from_toml_str(CONFIG)
        .unwrap()
        .with_data_dir(dir)
        .with_request_timeout(Duration::from_secs(5))
}

/// Wraps the named providers in a fault injector that leaves every call hanging.
fn hang(
    names: &'static [&'static str],
) -> impl FnMut(&str, Arc<dyn KeyProvider>) -> Arc<dyn KeyProvider> {
    move |name, provider| {
        if names.contains(&name) {
            Arc::new(FaultInjector::new(provider, FaultConfig::new(1).hang_rate(1.0)).unwrap())
        } else {
            provider
        }
    }
}

#[tokio::test]
async fn a_hung_provider_degrades_health_and_reads_go_through_the_others() {
    // Write while every provider answers.
    let t = TestServer::with_config(|c| {
        Config::from_toml_str(CONFIG)
            .unwrap()
            .with_data_dir(c.data_dir())
    })
    .await;
    let vault = t.vault(Some("2of3_multi_hsm")).await;
    assert_eq!(t.put(&vault, "db/password", "hunter2").await.status, 201);
    t.server.close().await;

    // Restart with `gcp` hanging on every call.
    let server = VaultServer::open_instrumented(config(t.dir.path()), hang(&["gcp"]))
        .await
        .unwrap();
    let t = TestServer {
        server,
        admin_key: t.admin_key,
        dir: t.dir,
    };

    // gcp's own retries would outlast the 5 s request timeout: a 200 shows the read did not
    // wait for it.
    let answer = t.get(&vault, "db/password", None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["value"], "hunter2");

    let answer = t.call(Method::GET, "/v1/health/hsm", None).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body["status"], "degraded", "{}", answer.body);
    let providers = answer.body["providers"].as_array().unwrap();
    let gcp = providers.iter().find(|p| p["name"] == "gcp").unwrap();
    assert_eq!(gcp["status"], "unavailable", "{gcp}");
    let detail = gcp["detail"].as_str().unwrap();
    assert!(
        detail.contains("gcp") && detail.contains("timed out"),
        "{detail}"
    );
    for name in ["aws", "azure"] {
        let p = providers.iter().find(|p| p["name"] == name).unwrap();
        assert_eq!(p["status"], "ok", "{p}");
        assert_eq!(p["circuit"], "closed", "{p}");
    }
}

#[tokio::test]
async fn health_checks_run_concurrently_within_the_timeout() {
    // Three hung providers with a 600 ms timeout each: one after another the checks would take
    // at least 1.8 s and the 1.5 s request timeout would answer 408; concurrently they finish
    // in about one timeout.
    let dir = tempfile::tempdir().unwrap();
    let config = Config::from_toml_str("[resilience]\ntimeout_ms = 600\n")
        .unwrap()
        .with_data_dir(dir.path())
        .with_request_timeout(Duration::from_millis(1500));
    let server = VaultServer::open_instrumented(config, hang(&["gcp", "aws", "azure"]))
        .await
        .unwrap();
    let admin_key = server.bootstrap_admin_key().await.unwrap().unwrap();
    let t = TestServer {
        server,
        admin_key: admin_key.expose_secret().to_owned(),
        dir,
    };
    let answer = t.call(Method::GET, "/v1/health/hsm", None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["status"], "unavailable");
    let names: Vec<&str> = answer.body["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(p["status"], "unavailable", "{p}");
            p["name"].as_str().unwrap()
        })
        .collect();
    // The answer keeps the configuration's order whatever order the checks finish in.
    assert_eq!(names, ["aws", "azure", "gcp"]);
}

#[tokio::test]
async fn a_failing_provider_opens_its_circuit() {
    // A provider that fails fast (unavailable) opens its breaker after the threshold; the
    // health endpoint shows the open circuit, and reads still succeed through the other two.
    let t = TestServer::with_config(|c| {
        Config::from_toml_str(CONFIG)
            .unwrap()
            .with_data_dir(c.data_dir())
    })
    .await;
    let vault = t.vault(Some("2of3_multi_hsm")).await;
    assert_eq!(t.put(&vault, "k", "v").await.status, 201);
    t.server.close().await;

    let toml = "[resilience]\nretry_attempts = 1\nbreaker_failure_threshold = 2\n\
                breaker_cool_down_ms = 600000\n\
                [providers.gcp]\nbackend = \"local\"\n[providers.aws]\nbackend = \"local\"\n\
                [providers.azure]\nbackend = \"local\"\n";
    let config = Config::from_toml_str(toml)
        .unwrap()
        .with_data_dir(t.dir.path());
    let server = VaultServer::open_instrumented(config, |name, provider| {
        if name == "azure" {
            let faulty = Arc::new(FaultInjector::new(provider, FaultConfig::new(2)).unwrap());
            faulty.set_outage(true);
            faulty
        } else {
            provider
        }
    })
    .await
    .unwrap();
    let t = TestServer {
        server,
        admin_key: t.admin_key,
        dir: t.dir,
    };
    for _ in 0..2 {
        let answer = t.call(Method::GET, "/v1/health/hsm", None).await;
        assert_eq!(answer.body["status"], "degraded", "{}", answer.body);
    }
    let answer = t.call(Method::GET, "/v1/health/hsm", None).await;
    let azure = answer.body["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "azure")
        .unwrap()
        .clone();
    assert_eq!(azure["status"], "unavailable", "{azure}");
    assert_eq!(azure["circuit"], "open", "{azure}");
    let answer = t.get(&vault, "k", None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["value"], "v");
}
