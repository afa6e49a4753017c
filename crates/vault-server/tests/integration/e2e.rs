//! One end-to-end test: a real socket on 127.0.0.1, a real HTTP client, graceful shutdown.

use crate::support::LiveServer;
use serde_json::{Value, json};
use vault_server::{Config, VaultServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_vault_enable_mpc_put_get_over_a_socket() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::default_config()
        .with_data_dir(dir.path())
        .with_listen(([127, 0, 0, 1], 0).into());
    let server = VaultServer::open(config).await.unwrap();
    let key = server.bootstrap_admin_key().await.unwrap().unwrap();
    let live = LiveServer::serve(server).await;
    let base = live.http_base();

    let http = reqwest::Client::new();
    let auth = format!("Bearer {}", key.expose_secret());
    let token: Value = http
        .post(format!("{base}/v1/auth/api-key-token"))
        .json(&json!({ "api_key": key.expose_secret() }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bearer = format!("Bearer {}", token["access_token"].as_str().unwrap());

    let vault: Value = http
        .post(format!("{base}/v1/vaults"))
        .header("authorization", &auth)
        .json(&json!({ "name": "e2e" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = vault["id"].as_str().unwrap();
    let mpc = http
        .post(format!("{base}/v1/vaults/{id}/mpc"))
        .header("authorization", &bearer)
        .json(&json!({ "custody_mode": "2of3_client_custody" }))
        .send()
        .await
        .unwrap();
    assert_eq!(mpc.status(), 200);
    let put = http
        .put(format!("{base}/v1/vaults/{id}/secrets/db%2Fcredentials"))
        .header("authorization", &bearer)
        .json(&json!({ "value": "s3cr3t" }))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    let put: Value = put.json().await.unwrap();
    assert_eq!(put["path"], "db/credentials");
    let share = put["client_share"].as_str().unwrap();
    let got = http
        .get(format!("{base}/v1/vaults/{id}/secrets/db/credentials"))
        .header("authorization", &bearer)
        .header("x-client-share", share)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert!(got.headers().get("x-request-id").is_some());
    let got: Value = got.json().await.unwrap();
    assert_eq!(got["value"], "s3cr3t");

    let missing = http
        .get(format!("{base}/v1/vaults/{id}/secrets/db/credentials"))
        .header("authorization", &bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 400);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );

    live.shutdown().await;
    // The socket is closed after the graceful shutdown.
    assert!(http.get(format!("{base}/v1/health")).send().await.is_err());
}
