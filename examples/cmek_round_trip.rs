//! cargo run -p mpc-vault-examples --example cmek_round_trip
//!
//! Client-managed keys (CMEK): the client encrypts a value with its own AES-256 key in the
//! format `0x01 ‖ 12-byte IV ‖ AES-256-GCM ciphertext and tag` (base64) before sending it, so
//! the server stores only ciphertext (inside its own envelope) and only the key's SHA-256
//! fingerprint. The example starts a real server on 127.0.0.1, turns CMEK on, writes and reads
//! a value, then hands the server both keys once to rotate every stored value to a new key,
//! and reads again. Nothing secret is printed.

// An example talks to the person running it through stdout.
#![allow(clippy::print_stdout)]

use std::error::Error;
use std::time::Duration;

use serde_json::{Value, json};
use vault_server::{CmekKey, Config, VaultServer, cmek_decrypt, cmek_encrypt};

const SECRET: &str = "postgres://app:s3cr3t@db.internal/prod";

// `tests/cmek_round_trip.rs` includes this file to call `run`; `main` is unused there.
#[allow(dead_code)]
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    run().await
}

/// The whole round trip.
///
/// # Errors
///
/// Any failure to start the server or talk to it, and any mismatch between what was written
/// and what was read back (so the example and its test fail loudly).
pub(crate) async fn run() -> Result<(), Box<dyn Error>> {
    let data = tempfile::tempdir()?;
    let config = Config::default_config().with_data_dir(data.path());
    let server = VaultServer::open(config).await?;
    let admin = server
        .bootstrap_admin_key()
        .await?
        .ok_or("a fresh server has no admin key yet")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));

    let http = reqwest::Client::new();
    let auth = format!("Bearer {}", admin.expose_secret());
    let call = |request: reqwest::RequestBuilder| {
        let auth = auth.clone();
        async move {
            let response = request.header("authorization", auth).send().await?;
            let status = response.status();
            let body: Value = response.json().await?;
            if !status.is_success() {
                return Err(format!("{status}: {body}").into());
            }
            Ok::<Value, Box<dyn Error>>(body)
        }
    };

    // 1. A vault with CMEK on: the server stores the fingerprint, never the key.
    let vault = call(
        http.post(format!("{base}/v1/vaults"))
            .json(&json!({ "name": "payments" })),
    )
    .await?;
    let vault = vault["id"].as_str().ok_or("no vault id")?.to_owned();
    let key = CmekKey::generate()?;
    let on = call(
        http.post(format!("{base}/v1/vaults/{vault}/cmek"))
            .json(&json!({ "fingerprint": key.fingerprint() })),
    )
    .await?;
    println!(
        "CMEK on: cmek_enabled = {}, fingerprint {}…",
        on["cmek_enabled"],
        &key.fingerprint()[..16]
    );

    // 2. Encrypt on the client, store, read back, decrypt on the client.
    let ciphertext = cmek_encrypt(&key, SECRET.as_bytes())?;
    let written = call(
        http.put(format!("{base}/v1/vaults/{vault}/secrets/db/url"))
            .json(&json!({ "value": ciphertext })),
    )
    .await?;
    println!(
        "stored version {} (cmek_encrypted = {})",
        written["version"], written["cmek_encrypted"]
    );
    let read = call(http.get(format!("{base}/v1/vaults/{vault}/secrets/db/url"))).await?;
    if read["cmek_encrypted"] != true {
        return Err("the read is not flagged cmek_encrypted".into());
    }
    let stored = read["value"].as_str().ok_or("no value")?;
    let plain = cmek_decrypt(&key, stored)?;
    if plain.as_slice() != SECRET.as_bytes() {
        return Err("the value did not survive the round trip".into());
    }
    println!(
        "read back and decrypted on the client: {} bytes, equal",
        plain.len()
    );

    // 3. Rotate to a new key: the server holds both keys only while the job runs.
    let new_key = CmekKey::generate()?;
    let job = call(
        http.post(format!("{base}/v1/vaults/{vault}/cmek-rotate"))
            .header("x-cmek-old-key", key.to_base64().as_str())
            .header("x-cmek-new-key", new_key.to_base64().as_str())
            .json(&json!({ "new_fingerprint": new_key.fingerprint() })),
    )
    .await?;
    let job_id = job["job_id"].as_str().ok_or("no job id")?.to_owned();
    let mut status = job;
    for _ in 0..400 {
        if status["status"] != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        status = call(http.get(format!("{base}/v1/vaults/{vault}/cmek-rotate/{job_id}"))).await?;
    }
    if status["status"] != "completed" {
        return Err(format!("rotation did not complete: {status}").into());
    }
    println!(
        "rotation {}: {}/{} versions",
        status["status"], status["processed"], status["total"]
    );
    let read = call(http.get(format!("{base}/v1/vaults/{vault}/secrets/db/url"))).await?;
    let stored = read["value"].as_str().ok_or("no value")?;
    if cmek_decrypt(&key, stored).is_ok() {
        return Err("the old key still opens the rotated value".into());
    }
    let plain = cmek_decrypt(&new_key, stored)?;
    if plain.as_slice() != SECRET.as_bytes() {
        return Err("the value did not survive the rotation".into());
    }
    println!(
        "after rotation: the new key opens version {}, the old key does not",
        read["version"]
    );

    let _ = stop.send(());
    serving.await??;
    Ok(())
}
