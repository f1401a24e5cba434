//! The `tidegate` binary: parse the command line, set up logging, dispatch, exit.

use std::process::ExitCode;

use clap::Parser;
use tidegate::cli::{Cli, run};

/// `tidegate status | head` closes the pipe early: print! then panics with "failed printing to
/// stdout: Broken pipe". Exit quietly as a program killed by SIGPIPE would (128 + 13), without
/// the backtrace; every other panic keeps the default report.
fn quiet_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if text.contains("failed printing to stdout") && text.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    quiet_broken_pipe();
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
