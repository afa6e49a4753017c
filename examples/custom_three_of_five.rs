//! cargo run -p mpc-vault-examples --example custom_three_of_five
//!
//! A custom layout beyond the named modes, written as a mode string:
//! `3of5:gcp,aws,azure,pkcs11,client`. Any 3 of 5 shares rebuild the key; four providers wrap
//! one share each (here local software KEKs in a temporary directory; in production the
//! `pkcs11` slot would be an HSM through kms-providers' `pkcs11` feature) and the client keeps
//! the fifth. A read takes the client's share and two providers, so it survives two providers
//! down. Nothing secret is printed.

// An example talks to the person running it through stdout.
#![allow(clippy::print_stdout)]

use std::error::Error;
use std::sync::Arc;

use custody_policy::{Custodian, CustodyMode, SecretContext};
use kms_providers::{FaultConfig, FaultInjector, LocalProvider};
use subtle::ConstantTimeEq;

const SECRET: &[u8] = b"root CA private key (example)";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let mode: CustodyMode = "3of5:gcp,aws,azure,pkcs11,client".parse()?;
    println!(
        "mode {mode}: {:?} {}-of-{}, client slot {}",
        mode.scheme(),
        mode.threshold(),
        mode.share_count(),
        mode.client_slot().map_or(0, |s| s.get())
    );

    let keys = tempfile::tempdir()?;
    let mut providers = Vec::new();
    for (seed, (_, name)) in (1u64..).zip(mode.provider_slots()) {
        let local = LocalProvider::builder(name.as_str())
            .key_dir(keys.path())
            .build()?;
        // The fault injector only lets the example take providers down.
        providers.push(Arc::new(FaultInjector::new(local, FaultConfig::new(seed))?));
    }
    let custodian = providers
        .iter()
        .fold(Custodian::builder(), |b, p| b.shared_provider(p.clone()))
        .build()?;
    custodian.check_mode(&mode)?;

    let ctx = SecretContext::new("vault-1", "pki/root-ca", 1, "private_key", mode)?;
    let (stored, client_share) = custodian.seal(&ctx, SECRET).await?.into_parts();
    println!(
        "stored: {} provider rows, envelope {} bytes; client share for slot {}",
        stored.slots().len(),
        stored.envelope().len(),
        client_share.as_ref().map_or(0, |c| c.slot().get())
    );

    // Two providers down: the client share and the other two still rebuild the key.
    for provider in providers.iter().take(2) {
        provider.set_outage(true);
    }
    let opened = custodian.open(&ctx, &stored, client_share.as_ref()).await?;
    println!(
        "two providers down: rebuilt from {} after {} provider calls; failed: {}",
        opened.report().used(),
        opened.report().provider_calls(),
        opened.report().failures().slots()
    );
    println!(
        "plaintext matches: {}",
        bool::from(opened.plaintext().expose_secret().ct_eq(SECRET))
    );
    Ok(())
}
