//! The `tidegate` binary: parse the command line, set up logging, dispatch, exit.

use std::process::ExitCode;

use clap::Parser;
use tidegate::cli::{Cli, run};

fn main() -> ExitCode {
    // One rustls crypto provider for the whole process (kube, reqwest and git2's HTTPS checks
    // all use rustls; two providers would make kube panic at start-up).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tidegate: {e:#}");
            ExitCode::FAILURE
        }
    }
}
