//! cargo run -p mpc-vault-examples --example audit_verify
//!
//! Offline verification of a vault-server audit trail. A server runs in process on a temporary
//! data directory; an administrator writes and reads a secret, pins the audit checkpoint key
//! (`GET /v1/audit/public-key`) and exports the trail (`GET /v1/audit/export`) to a file. The
//! "customer" side then checks the file with the public key alone (no audit HMAC key, no
//! database): every SHA-256 link and every Ed25519-signed checkpoint. Finally it shows that
//! rewriting the history, even with every hash recomputed, or cutting off its tail is caught.
//! Nothing secret is printed. `cargo test` runs this example too (see the test at the end).

// An example talks to the person running it through stdout.
#![allow(clippy::print_stdout)]

use std::error::Error;

use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt as _;
use sha2::{Digest as _, Sha256};
use tower::ServiceExt as _;
use vault_server::{
    AuditExport, Config, GENESIS_HASH, VaultServer, canonical_encoding, verify_export,
};

/// One request through the server's router; answers the status and the JSON body.
async fn call(
    server: &VaultServer,
    token: &str,
    method: &str,
    uri: &str,
    body: Option<&str>,
) -> Result<(u16, serde_json::Value), Box<dyn Error>> {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {token}"));
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let request = request.body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))?;
    let response = server.app().oneshot(request).await?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes();
    let json = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes)?
    };
    Ok((status, json))
}

fn hex32(text: &str) -> Result<[u8; 32], Box<dyn Error>> {
    let mut out = [0u8; 32];
    if text.len() != 64 {
        return Err("the public key is not 64 hex digits".into());
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2).ok_or("short key")?, 16)?;
    }
    Ok(out)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    // --- The server side -------------------------------------------------------------------
    let data = tempfile::tempdir()?;
    let server = VaultServer::open(Config::default_config().with_data_dir(data.path())).await?;
    let admin = server
        .bootstrap_admin_key()
        .await?
        .ok_or("a fresh store has no key yet")?;
    let token = admin.expose_secret();
    let (status, vault) = call(
        &server,
        token,
        "POST",
        "/v1/vaults",
        Some(r#"{"name":"payments"}"#),
    )
    .await?;
    assert_eq!(status, 201);
    let vault = vault["id"].as_str().ok_or("vault id")?.to_owned();
    let secret_uri = format!("/v1/vaults/{vault}/secrets/db/password");
    let (status, _) = call(
        &server,
        token,
        "PUT",
        &secret_uri,
        Some(r#"{"value":"s3cr3t"}"#),
    )
    .await?;
    assert_eq!(status, 201);
    let (status, _) = call(&server, token, "GET", &secret_uri, None).await?;
    assert_eq!(status, 200);

    // The customer pins the checkpoint key once, out of band.
    let (_, key) = call(&server, token, "GET", "/v1/audit/public-key", None).await?;
    let pinned = hex32(key["public_key"].as_str().ok_or("public_key")?)?;
    println!("pinned audit key {} ({})", key["key_id"], key["algorithm"]);

    // The export goes to a file, as it would to a customer.
    let (status, export) = call(&server, token, "GET", "/v1/audit/export", None).await?;
    assert_eq!(status, 200);
    let file = data.path().join("audit-export.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&export)?)?;
    server.close().await;

    // --- The customer side: the file and the pinned key, nothing else ----------------------
    let export: AuditExport = serde_json::from_slice(&std::fs::read(&file)?)?;
    let report = verify_export(&export, &pinned);
    println!(
        "export: {} events, {} checkpoints -> chain_valid = {}, events verified = {}, checkpoints verified = {}",
        export.events.len(),
        export.checkpoints.len(),
        report.chain_valid,
        report.events_verified,
        report.checkpoints_verified,
    );
    for event in &export.events {
        println!(
            "  #{:<2} {:<16} {:<10} {:<9} {}",
            event.seq,
            event.event.action,
            event.event.outcome,
            event.event.actor_id,
            event.event.resource_id
        );
    }
    assert!(report.chain_valid);

    // Rewrite history: blame someone else for the read, recomputing every SHA-256 link. The
    // chain is self-consistent again, but the signed checkpoint no longer matches.
    let mut rewritten = export.clone();
    let mut prev = GENESIS_HASH;
    for event in &mut rewritten.events {
        if event.event.action == "secret.read" {
            event.event.actor_id = "someone-else".into();
        }
        event.prev_hash = prev;
        event.event_hash =
            Sha256::digest(canonical_encoding(event.seq, &prev, &event.event)?).into();
        prev = event.event_hash;
    }
    let report = verify_export(&rewritten, &pinned);
    println!(
        "rewritten history -> chain_valid = {}: {}",
        report.chain_valid,
        report.reason.as_deref().unwrap_or("")
    );
    assert!(!report.chain_valid);

    // Cut off the tail (the read): the last signed checkpoint names an event that is missing.
    let mut truncated = export.clone();
    truncated
        .events
        .truncate(truncated.events.len().saturating_sub(2));
    let report = verify_export(&truncated, &pinned);
    println!(
        "truncated tail -> chain_valid = {}: {}",
        report.chain_valid,
        report.reason.as_deref().unwrap_or("")
    );
    assert!(!report.chain_valid);
    Ok(())
}

#[cfg(test)]
mod tests {
    /// `cargo test` runs the example end to end, so it cannot rot.
    #[test]
    fn the_example_runs() {
        super::main().unwrap();
    }
}
