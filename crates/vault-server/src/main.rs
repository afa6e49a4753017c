//! `vault-server`: parse the command line, run it, report a failure on stderr.

use std::process::ExitCode;

use clap::Parser as _;

/// mimalloc for the whole process (feature `mimalloc`, on by default): see Cargo.toml for why.
/// Secrets do not rely on the allocator: they are zeroized before their memory is freed.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    match vault_server::run(vault_server::Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // The binary's one job on failure is to tell the operator why; logs may not be
            // set up yet (a bad configuration is reported before tracing starts).
            #[allow(clippy::print_stderr)]
            {
                eprintln!("vault-server: {err}");
            }
            ExitCode::FAILURE
        }
    }
}
