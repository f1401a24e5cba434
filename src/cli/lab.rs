//! `tidegate lab [--scenario NAME]`: the whole loop on this machine; `tidegate lab set SUBSET
//! --errors 10% --latency 200ms` changes a subset's behaviour in a running lab.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::lab::run::{self, LabOptions, Scenario};

#[derive(Debug, clap::Args)]
pub struct LabArgs {
    #[command(subcommand)]
    pub action: Option<LabAction>,
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
    /// How the lab's plan splits traffic: `subset` (v1/v2 of orders-svc, a DestinationRule) or
    /// `host` (the Services orders-svc-primary and orders-svc-canary, as Flagger and Argo
    /// Rollouts' host-level mode do). The releases, plan-typo and mesh-break scenarios edit
    /// subsets and need `subset`.
    #[arg(long, value_enum, default_value_t = SplitArg::Subset)]
    pub split: SplitArg,
    /// Give up on a scenario after this many seconds.
    #[arg(long, default_value_t = 180)]
    pub timeout: u64,
    /// crash-restart: kill the daemon once the rollout reached this step...
    #[arg(long)]
    pub kill_at_step: Option<usize>,
    /// ...and this many milliseconds later.
    #[arg(long, default_value_t = 0)]
    pub kill_delay_ms: u64,
    /// With --scenario: `json`/`yaml` prints the outcome as one document at the end (scenario,
    /// ok, finalPhase, finalWeight, problems, weightsSeen, statusCommits, timeline, dir) instead
    /// of the timeline as it happens.
    #[arg(short, long, value_enum, default_value_t = super::Format::Text, requires = "scenario")]
    pub output: super::Format,
}

/// `--split`: the plan's traffic model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SplitArg {
    Subset,
    Host,
}

impl From<SplitArg> for crate::plan::Split {
    fn from(s: SplitArg) -> Self {
        match s {
            SplitArg::Subset => crate::plan::Split::Subset,
            SplitArg::Host => crate::plan::Split::Host,
        }
    }
}

/// A scenario's outcome, for `-o json|yaml`.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct OutcomeReport<'a> {
    scenario: String,
    ok: bool,
    final_phase: &'a str,
    final_weight: u8,
    problems: &'a [String],
    weights_seen: &'a [u8],
    status_commits: usize,
    timeline: &'a [String],
    dir: String,
}

impl<'a> OutcomeReport<'a> {
    fn new(o: &'a run::LabOutcome) -> OutcomeReport<'a> {
        use clap::ValueEnum;
        OutcomeReport {
            scenario: o
                .scenario
                .and_then(|s| s.to_possible_value())
                .map(|v| v.get_name().to_owned())
                .unwrap_or_default(),
            ok: o.ok(),
            final_phase: &o.final_phase,
            final_weight: o.final_weight,
            problems: &o.problems,
            weights_seen: &o.weights_seen,
            status_commits: o.status_commits,
            timeline: &o.timeline,
            dir: o.dir.display().to_string(),
        }
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum LabAction {
    /// Change a subset's error rate and/or latency in a running lab.
    Set(SetArgs),
}

#[derive(Debug, clap::Args)]
pub struct SetArgs {
    /// The DestinationRule subset (e.g. v3); it need not exist yet.
    pub subset: String,
    /// Share of requests answered 503: `10%` or `0.1`.
    #[arg(long, value_parser = parse_error_rate)]
    pub errors: Option<f64>,
    /// Added latency per request, e.g. `200ms`.
    #[arg(long, value_parser = parse_latency)]
    pub latency: Option<Duration>,
    /// The running lab's folder (it holds `traffic.url`).
    #[arg(long, env = "TIDEGATE_LAB_DIR")]
    pub dir: Option<PathBuf>,
    /// The lab's traffic simulator URL (printed when the lab starts), instead of `--dir`.
    #[arg(long, env = "TIDEGATE_LAB_URL")]
    pub url: Option<String>,
    /// Output format: `json`/`yaml` prints the subset's settings now (`errors` as a share,
    /// `latencyMs`).
    #[arg(short, long, value_enum, default_value_t = super::Format::Text)]
    pub output: super::Format,
}

/// `10%` → 0.1, `0.1` → 0.1.
fn parse_error_rate(s: &str) -> Result<f64, String> {
    let (number, scale) = match s.trim().strip_suffix('%') {
        Some(p) => (p, 100.0),
        None => (s.trim(), 1.0),
    };
    let v: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a rate: write `10%` or `0.1`"))?;
    let rate = v / scale;
    if !(0.0..=1.0).contains(&rate) {
        return Err(format!("`{s}` is outside 0%..100%"));
    }
    Ok(rate)
}

fn parse_latency(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("`{s}`: {e} (write e.g. `200ms`)"))
}

fn set(args: &SetArgs) -> anyhow::Result<ExitCode> {
    if args.errors.is_none() && args.latency.is_none() {
        anyhow::bail!("nothing to change: give --errors and/or --latency");
    }
    let base = match (&args.url, &args.dir) {
        (Some(url), _) => url.trim_end_matches('/').to_owned(),
        (None, Some(dir)) => std::fs::read_to_string(dir.join(run::TRAFFIC_URL_FILE))
            .map_err(|e| anyhow::anyhow!("no running lab in {}: {e}", dir.display()))?
            .trim()
            .to_owned(),
        (None, None) => anyhow::bail!("which lab? give --dir (the lab folder) or --url"),
    };
    let change = crate::lab::traffic::SubsetSettings {
        errors: args.errors,
        latency_ms: args
            .latency
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    };
    let url = format!("{base}/subsets/{}", args.subset);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let now: crate::lab::traffic::SubsetSettings = runtime.block_on(async {
        crate::notify::ensure_crypto_provider();
        let r = reqwest::Client::new()
            .put(&url)
            .json(&change)
            .send()
            .await?;
        r.error_for_status()?.json().await
    })?;
    match args.output.structured(&now)? {
        Some(text) => print!("{text}"),
        None => println!(
            "{}: errors {:.1}%, latency {}ms",
            args.subset,
            now.errors.unwrap_or_default() * 100.0,
            now.latency_ms.unwrap_or_default()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// Prometheus on PATH before anything starts: installed with apt-get when root, else `Some`
/// exit code after saying the command to run.
fn ensure_prometheus() -> anyhow::Result<Option<ExitCode>> {
    use crate::lab::setup::{self, Action};
    match setup::decide(setup::survey()) {
        Action::Ready => Ok(None),
        Action::Install { update_first } => {
            eprintln!("{}", setup::install_notice(update_first));
            setup::install(update_first)?;
            let bin = crate::lab::prometheus::binary()?;
            eprintln!("tidegate lab: installed {}", bin.display());
            Ok(None)
        }
        Action::Stop {
            blocker,
            update_first,
        } => {
            eprintln!("{}", setup::stop_message(blocker, update_first));
            Ok(Some(ExitCode::FAILURE))
        }
    }
}

pub fn run(args: &LabArgs) -> anyhow::Result<ExitCode> {
    if let Some(LabAction::Set(set_args)) = &args.action {
        return set(set_args);
    }
    if let Some(code) = ensure_prometheus()? {
        return Ok(code);
    }
    let opts = LabOptions {
        dir: args.dir.clone(),
        scenario: args.scenario,
        daemon_binary: std::env::current_exe()?,
        rps: args.rps,
        canary_error_rate: args.canary_error_rate,
        timeout: Duration::from_secs(args.timeout),
        verbose: args.output == super::Format::Text,
        kill_at_step: args.kill_at_step,
        kill_delay: Duration::from_millis(args.kill_delay_ms),
        split: args.split.into(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(run::run(opts))?;
    if outcome.scenario.is_none() {
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(text) = args.output.structured(&OutcomeReport::new(&outcome))? {
        print!("{text}");
        return Ok(if outcome.ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scenario_outcome_in_json() {
        let outcome = run::LabOutcome {
            scenario: Some(Scenario::Healthy),
            final_phase: "Succeeded".into(),
            final_weight: 100,
            timeline: vec!["promoted".into()],
            problems: Vec::new(),
            dir: PathBuf::from("/tmp/lab"),
            weights_seen: vec![10, 50, 100],
            status_commits: 7,
        };
        let text = crate::cli::Format::Json
            .structured(&OutcomeReport::new(&outcome))
            .expect("json")
            .expect("structured");
        let v: serde_json::Value = serde_json::from_str(&text).expect("parses");
        assert_eq!(v["scenario"], "healthy");
        assert_eq!(v["ok"], true);
        assert_eq!(v["finalPhase"], "Succeeded");
        assert_eq!(v["weightsSeen"], serde_json::json!([10, 50, 100]));
        assert_eq!(v["statusCommits"], 7);
    }

    #[test]
    fn rates_and_latencies() {
        assert_eq!(parse_error_rate("10%"), Ok(0.1));
        assert_eq!(parse_error_rate("0.25"), Ok(0.25));
        assert!(parse_error_rate("150%").is_err());
        assert!(parse_error_rate("ten").is_err());
        assert_eq!(parse_latency("200ms"), Ok(Duration::from_millis(200)));
        assert!(parse_latency("fast").is_err());
    }
}
