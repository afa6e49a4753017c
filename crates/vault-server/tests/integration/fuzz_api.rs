//! API fuzzing: schemathesis runs against the committed OpenAPI document and a live server on
//! 127.0.0.1 with a valid token. It must find no 5xx, no answer that violates the document, and
//! the server must not crash. schemathesis is installed into the project's virtualenv by
//! `scripts/setup/40-schemathesis.sh`; without it this test fails and says so (never skips).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::support::LiveServer;
use serde_json::json;
use vault_server::{Config, VaultServer};

/// The fuzzing budget: bounded so the suite stays a few minutes long.
const MAX_TIME_SECS: &str = "90";

fn schemathesis() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let bin = root.join(".tools/venv/bin/schemathesis");
    assert!(
        bin.exists(),
        "schemathesis is not installed at {}: run scripts/setup/40-schemathesis.sh",
        bin.display()
    );
    bin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    let bin = schemathesis();
    let dir = tempfile::tempdir().unwrap();
    let server = VaultServer::open(Config::default_config().with_data_dir(dir.path()))
        .await
        .unwrap();
    let key = server.bootstrap_admin_key().await.unwrap().unwrap();
    let live = LiveServer::serve(server).await;
    let base = live.http_base();

    // A valid access token (so the fuzzer exercises the JWT path too) and some data for the
    // stateful phase to find: vaults in each custody mode with a secret.
    let http = reqwest::Client::new();
    let token: serde_json::Value = http
        .post(format!("{base}/v1/auth/api-key-token"))
        .json(&json!({ "api_key": key.expose_secret() }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    for mode in ["standard", "2of3_multi_hsm", "2of2_client_custody"] {
        let vault: serde_json::Value = http
            .post(format!("{base}/v1/vaults"))
            .bearer_auth(&token)
            .json(&json!({ "name": mode, "mpc_custody": mode }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = vault["id"].as_str().unwrap();
        let put = http
            .put(format!("{base}/v1/vaults/{id}/secrets/db/password"))
            .bearer_auth(&token)
            .json(&json!({ "value": "fuzz" }))
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 201);
    }

    let document = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    let reports = dir.path().join("schemathesis-report");
    let run = {
        let base = base.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(bin)
                .arg("run")
                .arg(document)
                .args(["--url", &base])
                .args(["--header", &format!("Authorization: Bearer {token}")])
                .args([
                    "--checks",
                    "not_a_server_error,status_code_conformance,content_type_conformance,\
                     response_headers_conformance,response_schema_conformance",
                ])
                // Revoking keys is tested in process; here it would revoke the fuzzer's own
                // key and leave every later request unauthenticated.
                .args(["--exclude-operation-id", "revoke_key"])
                .args(["--max-time", MAX_TIME_SECS])
                .args(["--max-examples", "50"])
                .args(["--seed", "6"])
                .args(["--request-timeout", "10"])
                .arg("--report-dir")
                .arg(&reports)
                .env("NO_COLOR", "1")
                .output()
                .unwrap()
        })
    };
    let output = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("schemathesis ran over 5 minutes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The server is still up and answers after the run.
    let health = http.get(format!("{base}/v1/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    live.shutdown().await;
}
