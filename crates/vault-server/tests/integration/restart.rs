use axum::http::Method;
use serde_json::json;
use vault_server::{Config, VaultServer};

use crate::support::TestServer;

#[tokio::test]
async fn data_survives_a_restart_on_the_same_directory() {
    let t = TestServer::start().await;
    let plain = t.vault(Some("2of3_multi_hsm")).await;
    let client = t.vault(Some("2of2_client_custody")).await;
    assert_eq!(t.put(&plain, "db/password", "hunter2").await.status, 201);
    let share = t.put(&client, "k", "mine").await.body["client_share"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = t
        .call(
            Method::POST,
            "/v1/auth/api-key-token",
            Some(json!({ "api_key": t.admin_key })),
        )
        .await
        .body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    t.server.close().await;

    // A second server on the same data directory: same store, same provider keys, same JWT key.
    let server = VaultServer::open(Config::default_config().with_data_dir(t.dir.path()))
        .await
        .unwrap();
    // The admin key is created only once.
    assert!(server.bootstrap_admin_key().await.unwrap().is_none());
    let t2 = TestServer {
        server,
        admin_key: t.admin_key.clone(),
        dir: t.dir,
    };
    assert_eq!(
        t2.get(&plain, "db/password", None).await.body["value"],
        "hunter2"
    );
    assert_eq!(
        t2.get(&client, "k", Some(&share)).await.body["value"],
        "mine"
    );
    // Tokens issued before the restart still verify.
    let mut t3 = t2;
    t3.admin_key = token;
    assert_eq!(
        t3.call(Method::GET, "/v1/vaults", None).await.body["vaults"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}
