//! cargo run -p mpc-vault-examples --example two_of_three_client_custody
//!
//! The `2of3_client_custody` mode: each data key is split 2-of-3 with Shamir sharing; `gcp`
//! and `aws` (local software KEKs in a temporary directory) wrap one share each and the client
//! keeps the third. A read takes the client's share plus one provider: the one with the best
//! latency estimate, and the next one if that call fails. Nothing secret is printed.

// An example talks to the person running it through stdout.
#![allow(clippy::print_stdout)]

use std::error::Error;
use std::sync::Arc;

use custody_policy::{ClientShare, Custodian, CustodyMode, SecretContext};
use kms_providers::{FaultConfig, FaultInjector, LocalProvider};
use subtle::ConstantTimeEq;

const SECRET: &[u8] = b"AKIA-example-cloud-credential";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let keys = tempfile::tempdir()?;
    // The fault injector only lets the example take a provider down; it injects nothing else.
    let gcp = Arc::new(FaultInjector::new(
        LocalProvider::builder("gcp").key_dir(keys.path()).build()?,
        FaultConfig::new(1),
    )?);
    let aws = Arc::new(FaultInjector::new(
        LocalProvider::builder("aws").key_dir(keys.path()).build()?,
        FaultConfig::new(2),
    )?);
    let custodian = Custodian::builder()
        .shared_provider(gcp.clone())
        .shared_provider(aws.clone())
        .build()?;

    let mode = CustodyMode::two_of_three_client_custody();
    let ctx = SecretContext::new("vault-1", "cloud/credential", 1, "api_key", mode.clone())?;
    let (stored, client_share) = custodian.seal(&ctx, SECRET).await?.into_parts();
    let text = client_share
        .ok_or("2of3_client_custody always hands out a client share")?
        .to_base64();
    println!(
        "mode {mode}: {:?} {}-of-{}",
        mode.scheme(),
        mode.threshold(),
        mode.share_count()
    );
    println!(
        "stored: {} provider rows; client share handed out once ({} base64 characters)",
        stored.slots().len(),
        text.expose_secret().len()
    );

    let client_share = ClientShare::from_base64(text.expose_secret())?;
    for read in 1..=3 {
        let opened = custodian.open(&ctx, &stored, Some(&client_share)).await?;
        println!(
            "read {read}: {} provider call(s), rebuilt from {}: plaintext matches: {}",
            opened.report().provider_calls(),
            opened.report().used(),
            bool::from(opened.plaintext().expose_secret().ct_eq(SECRET))
        );
    }

    // Whichever provider the estimate prefers, take both down in turn: the read falls back.
    for (name, provider) in [("gcp", &gcp), ("aws", &aws)] {
        provider.set_outage(true);
        let opened = custodian.open(&ctx, &stored, Some(&client_share)).await?;
        println!(
            "{name} down: {} provider call(s), rebuilt from {}; failed: {}",
            opened.report().provider_calls(),
            opened.report().used(),
            opened.report().failures().slots()
        );
        provider.set_outage(false);
    }

    // Without the client share the server cannot read, although gcp and aws hold two shares.
    match custodian.open(&ctx, &stored, None).await {
        Ok(_) => println!("unexpected: opened without the client share"),
        Err(err) => println!("no client share: {err}"),
    }
    Ok(())
}
