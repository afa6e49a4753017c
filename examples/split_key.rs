//! cargo run --release -p mpc-vault-examples --example split_key
//!
//! The split core on its own, the way a custody mode uses it: a fresh 256-bit data key is split
//! 2-of-3 with Shamir sharing (one share per provider in `2of3_multi_hsm`) and 2-of-2 with XOR
//! (`2of2_client_custody`), rebuilt from every allowed subset, refused from too few shares, and
//! a lost share is repaired from two others without a new key. Nothing secret is printed: only
//! lengths, share indices and whether rebuilt values match.

// An example talks to the person running it through stdout.
#![allow(clippy::print_stdout)]

use std::error::Error;

use gf256_shamir::{Combiner, Splitter, Threshold};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

fn main() -> Result<(), Box<dyn Error>> {
    let mut key = Zeroizing::new([0u8; 32]);
    getrandom::fill(key.as_mut_slice())?;
    println!("fresh data key: {} bytes", key.len());

    // Shamir 2-of-3 at x = 1, 2, 3: the slots gcp, aws, azure.
    let threshold = Threshold::try_from(2u8)?;
    let splitter = Splitter::new(threshold, 3)?;
    let shares = splitter.split(key.as_slice())?;
    println!(
        "Shamir 2-of-3 ({:?} backend): {} shares of {} bytes each, encoded as x || y in {} bytes",
        splitter.backend(),
        shares.len(),
        key.len(),
        shares.first().map_or(0, |s| s.to_bytes().len()),
    );

    let combiner = Combiner::new(threshold);
    for (a, b) in [(0, 1), (0, 2), (1, 2)] {
        let pair = [&shares[a], &shares[b]];
        let rebuilt = combiner.combine(&pair)?;
        let matches = bool::from(rebuilt.as_slice().ct_eq(key.as_slice()));
        println!(
            "  rebuilt from shares {} and {}: {}",
            shares[a].index().get(),
            shares[b].index().get(),
            if matches { "matches" } else { "DIFFERS" },
        );
        if !matches {
            return Err("a 2-of-3 subset did not rebuild the key".into());
        }
    }

    match combiner.combine(&shares[..1]) {
        Err(refused) => println!("  one share alone is refused: {refused}"),
        Ok(_) => return Err("one share alone must not rebuild the key".into()),
    }

    // The provider holding share 2 lost it: shares 1 and 3 compute it again, same key.
    let lost = shares[1].index();
    let repaired = combiner.recover_share(&[&shares[0], &shares[2]], lost)?;
    let same = bool::from(repaired.ct_eq(&shares[1]));
    println!(
        "  share {} repaired from shares 1 and 3: {}",
        lost.get(),
        if same {
            "identical to the lost one"
        } else {
            "DIFFERENT"
        },
    );
    if !same {
        return Err("the repaired share differs from the lost one".into());
    }

    // XOR 2-of-2: one share for the provider, one returned to the client once.
    let halves = xor_split::split(key.as_slice(), 2)?;
    let rebuilt = xor_split::combine(&halves)?;
    let matches = bool::from(rebuilt.as_slice().ct_eq(key.as_slice()));
    println!(
        "XOR 2-of-2: {} shares of {} bytes; rebuilt from both: {}",
        halves.len(),
        key.len(),
        if matches { "matches" } else { "DIFFERS" },
    );
    if !matches {
        return Err("the XOR shares did not rebuild the key".into());
    }
    Ok(())
}
