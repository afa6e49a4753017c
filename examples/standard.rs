//! cargo run -p mpc-vault-examples --example standard
//!
//! The `standard` custody mode: no split. One key provider (`gcp`, here a local software KEK in
//! a temporary directory) wraps each secret version's whole data key. The example seals a
//! secret, shows what the server stores, opens it, and shows that with the provider down the
//! read fails cleanly: a typed, transient error and no plaintext. Nothing secret is printed.

// An example talks to the person running it through stdout.
#![allow(clippy::print_stdout)]

use std::error::Error;
use std::sync::Arc;

use custody_policy::{Custodian, CustodyMode, SecretContext};
use kms_providers::{FaultConfig, FaultInjector, LocalProvider};
use subtle::ConstantTimeEq;

const SECRET: &[u8] = b"postgres://app:s3cr3t@db.internal/prod";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let keys = tempfile::tempdir()?;
    // The fault injector only lets the example take the provider down; it injects nothing else.
    let gcp = Arc::new(FaultInjector::new(
        LocalProvider::builder("gcp").key_dir(keys.path()).build()?,
        FaultConfig::new(1),
    )?);
    let custodian = Custodian::builder().shared_provider(gcp.clone()).build()?;

    let mode = CustodyMode::standard();
    let ctx = SecretContext::new("vault-1", "db/url", 1, "connection_string", mode.clone())?;
    let (stored, client_share) = custodian.seal(&ctx, SECRET).await?.into_parts();
    println!(
        "mode {mode}: threshold {}, {} slot",
        mode.threshold(),
        mode.share_count()
    );
    println!("stored: envelope of {} bytes", stored.envelope().len());
    for row in stored.slots() {
        println!(
            "  slot {} ({}): wrapped data key, {} bytes",
            row.index(),
            row.provider(),
            row.wrapped().map_or(0, <[u8]>::len)
        );
    }
    println!(
        "client share: {}",
        if client_share.is_some() {
            "yes"
        } else {
            "none (standard mode)"
        }
    );

    let opened = custodian.open(&ctx, &stored, None).await?;
    let matches = bool::from(opened.plaintext().expose_secret().ct_eq(SECRET));
    println!(
        "opened with {}: plaintext matches: {matches}",
        opened.report().used()
    );

    gcp.set_outage(true);
    match custodian.open(&ctx, &stored, None).await {
        Ok(_) => println!("unexpected: opened with the only provider down"),
        Err(err) => println!(
            "provider down: {err} (transient: {}, so retrying later may work)",
            err.is_transient()
        ),
    }
    Ok(())
}
