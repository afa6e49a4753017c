//! A server whose `gcp` slot is a PKCS#11 token (SoftHSM2), configured with `backend = "pkcs11"`.

use axum::http::Method;
use vault_server::Config;

use crate::support::{PKCS11_PIN_ENV, TestServer, softhsm};

fn pkcs11_config(data_dir: &std::path::Path, key_label: &str) -> Config {
    let token = softhsm();
    let toml = format!(
        r#"
        [providers.gcp]
        backend = "pkcs11"
        module = "{module}"
        token_label = "{label}"
        pin_env = "{PKCS11_PIN_ENV}"
        key_label = "{key_label}"
        create_key_if_missing = true
        max_sessions = 4
        timeout_ms = 10000
        [providers.aws]
        backend = "local"
        [providers.azure]
        backend = "local"
        "#,
        module = token.module_path().display(),
        label = token.label(),
    );
    Config::from_toml_str(&toml)
        .unwrap()
        .with_data_dir(data_dir)
}

#[tokio::test]
async fn a_pkcs11_slot_seals_and_opens_a_2of3_secret() {
    let t = TestServer::with_config(|c| pkcs11_config(c.data_dir(), "kek-gcp-roundtrip")).await;

    let answer = t.call(Method::GET, "/v1/health/hsm", None).await;
    assert_eq!(answer.body["status"], "ok", "{}", answer.body);
    let gcp = answer.body["providers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "gcp")
        .unwrap()
        .clone();
    assert_eq!(gcp["kind"], "pkcs11", "{gcp}");

    let vault = t.vault(Some("2of3_multi_hsm")).await;
    let put = t.put(&vault, "db/password", "hunter2").await;
    assert_eq!(put.status, 201, "{}", put.body);
    let got = t.get(&vault, "db/password", None).await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.body["value"], "hunter2");
}

#[tokio::test]
async fn a_missing_key_is_refused_at_startup_when_creation_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let token = softhsm();
    let toml = format!(
        "[providers.gcp]\nbackend = \"pkcs11\"\nmodule = \"{}\"\ntoken_label = \"{}\"\n\
         pin_env = \"{PKCS11_PIN_ENV}\"\nkey_label = \"no-such-key\"\n",
        token.module_path().display(),
        token.label(),
    );
    let config = Config::from_toml_str(&toml)
        .unwrap()
        .with_data_dir(dir.path());
    let err = vault_server::VaultServer::open(config).await.unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with("key providers: provider `gcp`"),
        "{message}"
    );
    assert!(message.contains("no-such-key"), "{message}");
    // The PIN never appears in an error.
    assert!(
        !message.contains(softhsm().user_pin().expose_secret()),
        "{message}"
    );
}
