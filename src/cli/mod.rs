//! The command line: parses arguments and dispatches to one subcommand module each.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod analyze;
pub mod backtest;
use crate::control::ControlAction;

pub mod control_cmd;
pub mod convert;
mod files;
#[cfg(feature = "lab")]
pub mod lab;
pub mod lint;
pub mod preview;
pub mod run;
pub mod simulate;
pub mod status;
pub mod validate;
pub mod watch;

/// How a command prints its answer: for people (`text`, the default) or for programs (`json`,
/// `yaml`: the same structure in both). One enum for every command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For people (`table` is accepted too).
    #[value(alias = "table")]
    Text,
    Json,
    Yaml,
}

impl Format {
    /// The JSON or YAML form of `value` (newline-terminated), or `None` for `text`, which each
    /// command renders itself.
    pub fn structured<T: serde::Serialize>(self, value: &T) -> anyhow::Result<Option<String>> {
        Ok(match self {
            Format::Text => None,
            Format::Json => Some(serde_json::to_string_pretty(value)? + "\n"),
            Format::Yaml => Some(serde_saphyr::to_string(value)?),
        })
    }
}

/// Exit code for usage errors (bad flags, missing files), as clap uses.
pub const EXIT_USAGE: u8 = 2;

/// tidegate: GitOps progressive delivery for Istio.
#[derive(Debug, Parser)]
#[command(name = "tidegate", version, about, long_about = None)]
pub struct Cli {
    /// Log filter (tracing env-filter syntax), e.g. `info` or `tidegate=debug`.
    #[arg(long, global = true, env = "TIDEGATE_LOG", default_value = "warn")]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check rollout plans (files or folders) and report every mistake with file, line and column.
    Validate(validate::ValidateArgs),
    /// Run the engine on a plan with scripted analysis results and print each transition.
    Simulate(simulate::SimulateArgs),
    /// Run the daemon: watch the plans repository, move traffic, analyse, commit status.
    Run(run::RunArgs),
    /// Check Istio manifests and plans for silent traffic mistakes (exit 1 on errors).
    Lint(lint::LintArgs),
    /// Show the VirtualService patches a plan would make, step by step.
    Preview(preview::PreviewArgs),
    /// Run one analysis round against Prometheus and print every check's query, values and verdict.
    Analyze(analyze::AnalyzeArgs),
    /// Replay a plan's analysis over past Prometheus data through the engine (`--aa`: stable
    /// against itself) and say what the rollout would have done.
    Backtest(backtest::BacktestArgs),
    /// Convert Flagger Canaries and Argo Rollouts (with their templates) to plans, listing what
    /// cannot be carried over.
    Convert(convert::ConvertArgs),
    /// Print every rollout's status from the Git status files.
    Status(status::StatusArgs),
    /// Commit and push `Tidegate: pause NAME`: hold the rollout at its current step.
    Pause(control_cmd::ControlArgs),
    /// Commit and push `Tidegate: resume NAME`: continue a paused rollout.
    Resume(control_cmd::ControlArgs),
    /// Commit and push `Tidegate: abort NAME`: send all traffic back to stable.
    Abort(control_cmd::ControlArgs),
    /// Commit and push `Tidegate: promote NAME`: skip the remaining steps.
    Promote(control_cmd::ControlArgs),
    /// Commit and push `Tidegate: retry NAME`: start again after RolledBack or Aborted.
    Retry(control_cmd::ControlArgs),
    /// Run the whole loop on this machine without a cluster (emulated Kubernetes, simulated
    /// traffic, real Prometheus, local Git remote, the daemon).
    #[cfg(feature = "lab")]
    Lab(lab::LabArgs),
}

/// Run the parsed command line; the exit code is the command's answer.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Validate(args) => validate::run(args),
        Command::Run(args) => run::run(args),
        #[cfg(feature = "lab")]
        Command::Lab(args) => lab::run(args),
        Command::Simulate(args) => simulate::run(args),
        Command::Lint(args) => lint::run(args),
        Command::Preview(args) => preview::run(args),
        Command::Analyze(args) => analyze::run(args),
        Command::Backtest(args) => backtest::run(args),
        Command::Convert(args) => convert::run(args),
        Command::Status(args) => status::run(args),
        Command::Pause(args) => control_cmd::run(ControlAction::Pause, args),
        Command::Resume(args) => control_cmd::run(ControlAction::Resume, args),
        Command::Abort(args) => control_cmd::run(ControlAction::Abort, args),
        Command::Promote(args) => control_cmd::run(ControlAction::Promote, args),
        Command::Retry(args) => control_cmd::run(ControlAction::Retry, args),
    }
}

/// `1 plan`, `2 plans`.
pub(crate) fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
