//! Declares and checks the `gf256_backend` cfg.
//!
//! `RUSTFLAGS='--cfg gf256_backend="soft"'` compiles the SIMD backends out, so the portable
//! reference runs everywhere (the second pass of `scripts/test`). Any other value is a typo that
//! would otherwise silently keep run-time detection, so it fails the build.

// Build scripts talk to Cargo through stdout; printing is their whole interface.
#![allow(clippy::print_stdout)]

fn main() {
    println!("cargo::rustc-check-cfg=cfg(gf256_backend, values(\"soft\"))");
    println!("cargo::rerun-if-changed=build.rs");
    // Cargo passes every `--cfg` of RUSTFLAGS to build scripts as `CARGO_CFG_*`, comma-separated
    // when a key is given several values.
    if let Ok(values) = std::env::var("CARGO_CFG_GF256_BACKEND") {
        for value in values.split(',') {
            if value != "soft" {
                println!(
                    "cargo::error=unknown gf256_backend value {value:?}: the only supported \
                     value is \"soft\" (RUSTFLAGS='--cfg gf256_backend=\"soft\"'); remove the \
                     cfg to detect the best backend at run time"
                );
            }
        }
    }
}
