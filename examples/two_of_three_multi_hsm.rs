//! cargo run -p mpc-vault-examples --example two_of_three_multi_hsm
//!
//! The `2of3_multi_hsm` mode: each data key is split 2-of-3 with Shamir sharing over GF(2^8),
//! one share per provider (`gcp`, `aws`, `azure`, here three local software KEKs in one
//! temporary directory, which is for demonstration only). A read asks all three at once and
//! rebuilds the key from the first two answers (a hedged read), so one provider down costs
//! nothing. With a threshold write quorum, a write succeeds with one provider down, leaving its
//! slot pending until a repair recomputes that share from the other two. Nothing secret is
//! printed.

// An example talks to the person running it through stdout (and stderr for the warning).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::error::Error;
use std::sync::Arc;

use custody_policy::{Custodian, CustodyMode, SecretContext, WriteQuorum};
use kms_providers::{FaultConfig, FaultInjector, LocalProvider};
use subtle::ConstantTimeEq;

const SECRET: &[u8] = b"-----BEGIN PRIVATE KEY----- (a signing key) -----END PRIVATE KEY-----";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let keys = tempfile::tempdir()?;
    eprintln!("{}\n", kms_providers::single_machine_warning(keys.path()));
    // The fault injector only lets the example take providers down; it injects nothing else.
    let providers = LocalProvider::embedded_defaults(keys.path())?
        .into_iter()
        .map(|local| FaultInjector::new(local, FaultConfig::new(1)).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()?;
    let [gcp, _aws, azure] = providers.as_slice() else {
        return Err("three embedded providers expected".into());
    };
    let custodian = providers
        .iter()
        .fold(Custodian::builder(), |b, p| b.shared_provider(p.clone()))
        .write_quorum(WriteQuorum::Threshold)
        .build()?;

    let mode = CustodyMode::two_of_three_multi_hsm();
    let ctx = SecretContext::new("vault-1", "pki/signing-key", 1, "private_key", mode.clone())?;
    let sealed = custodian.seal(&ctx, SECRET).await?;
    println!(
        "mode {mode}: {:?} {}-of-{}",
        mode.scheme(),
        mode.threshold(),
        mode.share_count()
    );
    for row in sealed.stored().slots() {
        println!(
            "  slot {} ({}): wrapped share, {} bytes",
            row.index(),
            row.provider(),
            row.wrapped().map_or(0, <[u8]>::len)
        );
    }
    let (stored, _) = sealed.into_parts();

    let opened = custodian.open(&ctx, &stored, None).await?;
    println!(
        "hedged read: asked {} providers, rebuilt from {}: plaintext matches: {}",
        opened.report().provider_calls(),
        opened.report().used(),
        bool::from(opened.plaintext().expose_secret().ct_eq(SECRET))
    );

    gcp.set_outage(true);
    let opened = custodian.open(&ctx, &stored, None).await?;
    println!(
        "gcp down: rebuilt from {}; failed: {}; plaintext matches: {}",
        opened.report().used(),
        opened.report().failures().slots(),
        bool::from(opened.plaintext().expose_secret().ct_eq(SECRET))
    );
    gcp.set_outage(false);

    // A write with azure down: the threshold quorum lets it through, azure's slot pending.
    azure.set_outage(true);
    let version2 = SecretContext::new("vault-1", "pki/signing-key", 2, "private_key", mode)?;
    let sealed = custodian.seal(&version2, SECRET).await?;
    println!(
        "write with azure down: pending {}",
        sealed.pending().slots()
    );
    azure.set_outage(false);
    let repaired = custodian.repair(&version2, sealed.stored(), None).await?;
    println!(
        "repair: recomputed {} from {}, no re-encryption (envelope unchanged: {})",
        repaired.repaired(),
        repaired.read().used(),
        repaired.stored().envelope() == sealed.stored().envelope()
    );
    // Read with the repaired share carrying it: gcp down again.
    gcp.set_outage(true);
    let opened = custodian.open(&version2, repaired.stored(), None).await?;
    println!(
        "gcp down after repair: rebuilt from {}: plaintext matches: {}",
        opened.report().used(),
        bool::from(opened.plaintext().expose_secret().ct_eq(SECRET))
    );
    Ok(())
}
