//! `tidegate lab [--scenario NAME]`: the whole loop on this machine.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::lab::run::{self, LabOptions, Scenario};

#[derive(Debug, clap::Args)]
pub struct LabArgs {
    /// Run unattended and exit 0 when the outcome is the expected one.
    #[arg(long, value_enum)]
    pub scenario: Option<Scenario>,
    /// Working folder (kept afterwards); default: a new temporary folder.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Simulated requests per second.
    #[arg(long, default_value_t = 40.0)]
    pub rps: f64,
    /// Canary error rate, 0..1 (the faulty scenario uses at least 0.05).
    #[arg(long, default_value_t = 0.0)]
    pub canary_error_rate: f64,
    /// Give up on a scenario after this many seconds.
    #[arg(long, default_value_t = 180)]
    pub timeout: u64,
}

pub fn run(args: &LabArgs) -> anyhow::Result<ExitCode> {
    let opts = LabOptions {
        dir: args.dir.clone(),
        scenario: args.scenario,
        daemon_binary: std::env::current_exe()?,
        rps: args.rps,
        canary_error_rate: args.canary_error_rate,
        timeout: Duration::from_secs(args.timeout),
        verbose: true,
        kill_at_step: None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(run::run(opts))?;
    if outcome.scenario.is_none() {
        return Ok(ExitCode::SUCCESS);
    }
    if outcome.ok() {
        println!(
            "lab: the outcome is the expected one ({})",
            outcome.final_phase
        );
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("lab: unexpected outcome: {}", outcome.problems.join("; "));
        Ok(ExitCode::FAILURE)
    }
}
