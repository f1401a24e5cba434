//! `tidegate run --config FILE`: the daemon. `--check` validates the configuration and exits.

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
    let cfg = match config::load_with(&args.config, &env, &flags, environment) {
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
