//! `tidegate run --config FILE`: the daemon. `--check` validates the configuration and exits
//! (`--no-environment`: without the files, secrets and environment it names; `-o json`: the
//! answer as `{"config", "valid", "environment", "problems"}`).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{self, Overrides};

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Daemon configuration (YAML); see config/tidegate.yaml.
    #[arg(long, short, env = "TIDEGATE_CONFIG")]
    pub config: PathBuf,
    /// Validate the configuration (every problem at once) and exit: 0 valid, 1 invalid.
    #[arg(long)]
    pub check: bool,
    /// With --check: validate the configuration alone, without the files, secrets and
    /// environment variables it names (as on a laptop or in CI, away from the cluster).
    #[arg(long, requires = "check")]
    pub no_environment: bool,
    /// With --check: output format (`json`/`yaml`: `config`, `valid`, `environment` checked or
    /// skipped, and `problems` with `field`, `message`, `fix`).
    #[arg(short, long, value_enum, default_value_t = super::Format::Text, requires = "check")]
    pub output: super::Format,
    /// Listen address of the HTTP server (overrides server.listen).
    #[arg(long)]
    pub listen: Option<String>,
    /// Data directory (overrides dataDir).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Plans repository (overrides git.url).
    #[arg(long)]
    pub git_url: Option<String>,
    /// Prometheus URL (overrides prometheus.url).
    #[arg(long)]
    pub prometheus_url: Option<String>,
    /// kubeconfig file (overrides kubernetes.kubeconfig).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
}

pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
    let flags = Overrides {
        listen: args.listen.clone(),
        data_dir: args.data_dir.clone(),
        git_url: args.git_url.clone(),
        prometheus_url: args.prometheus_url.clone(),
        kubeconfig: args.kubeconfig.clone(),
    };
    let environment = if args.no_environment {
        config::Environment::Skip
    } else {
        config::Environment::Check
    };
    let loaded = config::load_with(&args.config, &env, &flags, environment);
    if args.check && args.output != super::Format::Text {
        let report = CheckReport::new(args, loaded.as_ref().err());
        print!("{}", args.output.structured(&report)?.unwrap_or_default());
        return Ok(exit_code(report.valid));
    }
    let cfg = match loaded {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tidegate run: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if args.check {
        let scope = if args.no_environment {
            " (files, secrets and environment not checked)"
        } else {
            ""
        };
        println!("{}: configuration valid{scope}", args.config.display());
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .build()?;
    runtime.block_on(async move {
        let app = crate::daemon::build(&cfg).await?;
        app.run(crate::daemon::shutdown_signal()).await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn exit_code(valid: bool) -> ExitCode {
    if valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `run --check -o json|yaml`.
#[derive(Debug, serde::Serialize)]
pub struct CheckReport {
    pub config: String,
    pub valid: bool,
    /// `checked`, or `skipped` with `--no-environment`.
    pub environment: &'static str,
    pub problems: Vec<Problem>,
}

/// One configuration problem; a file that cannot be read or parsed has no field.
#[derive(Debug, serde::Serialize)]
pub struct Problem {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub field: String,
    pub message: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub fix: String,
}

impl CheckReport {
    fn new(args: &RunArgs, error: Option<&config::ConfigError>) -> CheckReport {
        let problems = match error {
            None => Vec::new(),
            Some(config::ConfigError::Invalid { issues, .. }) => issues
                .iter()
                .map(|i| Problem {
                    field: i.field.clone(),
                    message: i.message.clone(),
                    fix: i.fix.clone(),
                })
                .collect(),
            Some(other) => vec![Problem {
                field: String::new(),
                message: other.to_string(),
                fix: String::new(),
            }],
        };
        CheckReport {
            config: args.config.display().to_string(),
            valid: error.is_none(),
            environment: if args.no_environment {
                "skipped"
            } else {
                "checked"
            },
            problems,
        }
    }
}
