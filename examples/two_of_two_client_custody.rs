//! cargo run -p mpc-vault-examples --example two_of_two_client_custody
//!
//! The `2of2_client_custody` mode: each data key is split with XOR into two shares. `gcp` (a
//! local software KEK in a temporary directory) wraps one; the other is handed to the client
//! once, as base64, and never stored. A read needs both: the client sends its share back. The
//! example also shows the four client-share errors. Nothing secret is printed: the client
//! share's text is shown by length only.

// An example talks to the person running it through stdout.
#![allow(clippy::print_stdout)]

use std::error::Error;

use custody_policy::{ClientShare, Custodian, CustodyMode, SecretContext};
use kms_providers::LocalProvider;
use subtle::ConstantTimeEq;

const SECRET: &[u8] = b"sk_live_treasury_signing_key";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let keys = tempfile::tempdir()?;
    let custodian = Custodian::builder()
        .provider(LocalProvider::builder("gcp").key_dir(keys.path()).build()?)
        .build()?;

    let mode = CustodyMode::two_of_two_client_custody();
    let ctx = SecretContext::new(
        "vault-1",
        "treasury/signing-key",
        1,
        "api_key",
        mode.clone(),
    )?;
    let (stored, client_share) = custodian.seal(&ctx, SECRET).await?.into_parts();
    let client_share = client_share.ok_or("2of2_client_custody always hands out a client share")?;
    println!(
        "mode {mode}: {:?} split, slots {}",
        mode.scheme(),
        slots(&mode)
    );
    println!(
        "stored: envelope of {} bytes, {} provider row(s); the client's share is not stored",
        stored.envelope().len(),
        stored.slots().len()
    );

    // Handed to the client once (in an HTTP response, say), as text that is wiped when dropped.
    let text = client_share.to_base64();
    println!(
        "client share for slot {}: {} base64 characters, context tag {}",
        client_share.slot(),
        text.expose_secret().len(),
        client_share.context_tag()
    );

    // The client sends it back (as an `X-Client-Share` header, say) to read.
    let returned = ClientShare::from_base64(text.expose_secret())?;
    let opened = custodian.open(&ctx, &stored, Some(&returned)).await?;
    let matches = bool::from(opened.plaintext().expose_secret().ct_eq(SECRET));
    println!(
        "opened with {} ({} provider call): plaintext matches: {matches}",
        opened.report().used(),
        opened.report().provider_calls()
    );

    // The four ways a client share can be wrong, each its own error.
    let missing = custodian.open(&ctx, &stored, None).await;
    println!("no client share:        {}", error_text(missing.err()));
    let malformed = ClientShare::from_base64("this is not a client share");
    println!("malformed client share: {}", error_text(malformed.err()));
    let next_version = SecretContext::new("vault-1", "treasury/signing-key", 2, "api_key", mode)?;
    let (_, other) = custodian
        .seal(&next_version, b"rotated")
        .await?
        .into_parts();
    let foreign = custodian.open(&ctx, &stored, other.as_ref()).await;
    println!("another version's:      {}", error_text(foreign.err()));
    let (_, abandoned) = custodian
        .seal(&ctx, b"an abandoned write")
        .await?
        .into_parts();
    let wrong = custodian.open(&ctx, &stored, abandoned.as_ref()).await;
    println!("wrong (same version):   {}", error_text(wrong.err()));
    Ok(())
}

fn slots(mode: &CustodyMode) -> String {
    mode.slots()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn error_text(err: Option<custody_policy::Error>) -> String {
    err.map_or_else(|| "unexpectedly accepted".to_owned(), |e| e.to_string())
}
