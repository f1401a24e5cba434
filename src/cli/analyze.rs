//! `tidegate analyze PLAN --prometheus URL [--manifests DIR] [--at TIME] [--since TIME] [-o json]`:
//! run one analysis round now (or at a past instant) and print every check's rendered query,
//! canary and stable values, threshold, test statistics and verdict. Exit 0 pass, 1 fail,
//! 3 inconclusive, 2 usage.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, TimeZone, Utc};
use serde::Serialize;

use super::EXIT_USAGE;
use super::files::yaml_inputs;
use crate::analysis::Outcome;
use crate::analysis::batch::{self, CheckError, RolloutResult, Target};
use crate::analysis::subset::{SubsetLabels, find_destination_rule};
use crate::analysis::verdict::Verdict;
use crate::metrics::prometheus::{Auth, Prometheus, PrometheusConfig};
use crate::metrics::run_tick;
use crate::plan::Plan;

/// Exit code when every check passed.
pub const EXIT_PASS: u8 = 0;
/// Exit code when a check failed.
pub const EXIT_FAIL: u8 = 1;
/// Exit code when no check failed but some were inconclusive or could not be queried.
pub const EXIT_INCONCLUSIVE: u8 = 3;

#[derive(Debug, clap::Args)]
pub struct AnalyzeArgs {
    /// Plan files or folders; every plan found is analysed in one batched round.
    #[arg(required = true)]
    pub plans: Vec<PathBuf>,
    #[command(flatten)]
    pub source: PromArgs,
    /// Folder (or file) of Istio manifests holding the plans' DestinationRules, whose subset
    /// labels select canary and stable in the metrics. Without it, subset names are taken as
    /// `version` labels.
    #[arg(long)]
    pub manifests: Option<PathBuf>,
    /// Evaluate at this past instant (RFC 3339, e.g. 2026-11-30T08:00:00Z, or Unix seconds).
    #[arg(long, value_parser = parse_time)]
    pub at: Option<DateTime<Utc>>,
    /// The start of the rollout's current step (RFC 3339 or Unix seconds): `test: counts`
    /// pools the rounds since then, as the daemon does. Without it only the latest round.
    #[arg(long, value_parser = parse_time)]
    pub since: Option<DateTime<Utc>>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Text)]
    pub output: Format,
    /// Istio reporter whose metrics are read (`destination`: server-side proxies).
    #[arg(long, default_value = batch::DEFAULT_REPORTER)]
    pub reporter: String,
}

/// How to reach Prometheus (shared by `analyze` and `backtest`).
#[derive(Debug, clap::Args)]
pub struct PromArgs {
    /// Prometheus base URL, e.g. http://prometheus.istio-system:9090.
    #[arg(long, env = "TIDEGATE_PROMETHEUS_URL")]
    pub prometheus: String,
    /// Per-query timeout.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// File holding a bearer token for Prometheus.
    #[arg(long, conflicts_with = "basic_auth_user")]
    pub bearer_token_file: Option<PathBuf>,
    /// Basic-auth user for Prometheus (password from --basic-auth-password-file).
    #[arg(long, requires = "basic_auth_password_file")]
    pub basic_auth_user: Option<String>,
    #[arg(long, requires = "basic_auth_user")]
    pub basic_auth_password_file: Option<PathBuf>,
    /// PEM file of extra CA certificates to trust for Prometheus.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
}

pub use super::Format;

/// Parse `--at`: RFC 3339 or Unix seconds.
pub fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(secs) = s.parse::<i64>() {
        return Utc
            .timestamp_opt(secs, 0)
            .single()
            .ok_or_else(|| format!("{s} is not a valid Unix time"));
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("expected RFC 3339 (2026-11-30T08:00:00Z) or Unix seconds: {e}"))
}

/// One rollout in the report.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutReport {
    pub rollout: String,
    pub outcome: Outcome,
    /// Metric label that tells the subsets apart, and where the mapping came from.
    pub subset_label: String,
    pub canary_value: String,
    pub stable_value: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    pub window: String,
    pub min_requests: u64,
    pub verdicts: Vec<Verdict>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<CheckError>,
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub stable_queries: std::collections::BTreeMap<String, String>,
}

/// The whole round.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub prometheus: String,
    /// Evaluation time, when `--at` was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
    /// Start of the step `test: counts` pooled from, when `--since` was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    pub queries: usize,
    pub outcome: Outcome,
    pub rollouts: Vec<RolloutReport>,
}

impl Report {
    pub fn exit_code(&self) -> u8 {
        match self.outcome {
            Outcome::Pass => EXIT_PASS,
            Outcome::Fail => EXIT_FAIL,
            Outcome::Inconclusive => EXIT_INCONCLUSIVE,
        }
    }
}

impl PromArgs {
    /// The Prometheus source these flags describe.
    pub fn source(&self) -> anyhow::Result<Prometheus> {
        let auth = match (&self.bearer_token_file, &self.basic_auth_user) {
            (Some(f), _) => Auth::BearerTokenFile(f.clone()),
            (None, Some(u)) => Auth::Basic {
                username: u.clone(),
                password_file: self.basic_auth_password_file.clone().unwrap_or_default(),
            },
            (None, None) => Auth::None,
        };
        Ok(Prometheus::new(&PrometheusConfig {
            url: self.prometheus.clone(),
            timeout: self.timeout,
            auth,
            ca_file: self.ca_file.clone(),
        })?)
    }
}

/// DestinationRule documents from every YAML file under `path`.
pub(crate) fn read_manifests(path: &Path) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut docs = Vec::new();
    for input in yaml_inputs(&[path.to_path_buf()])? {
        let text = std::fs::read_to_string(&input.path)
            .with_context(|| format!("failed to read manifest {}", input.path.display()))?;
        let parsed: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text)
            .with_context(|| format!("failed to parse manifest {}", input.path.display()))?;
        docs.extend(
            parsed
                .into_iter()
                .filter(|d| d.get("kind").and_then(|k| k.as_str()) == Some("DestinationRule")),
        );
    }
    Ok(docs)
}

fn outcome_of(results: &[RolloutResult]) -> Outcome {
    if results.iter().any(|r| r.outcome() == Outcome::Fail) {
        Outcome::Fail
    } else if results.iter().any(|r| r.outcome() == Outcome::Inconclusive) {
        Outcome::Inconclusive
    } else {
        Outcome::Pass
    }
}

/// Build the targets for `plans` (pooling `test: counts` from `since`), with the notes users
/// should read. Pure.
pub fn targets(
    plans: &[Plan],
    destination_rules: Option<&[serde_json::Value]>,
    reporter: &str,
    since: Option<DateTime<Utc>>,
) -> anyhow::Result<Vec<(Target, Vec<String>)>> {
    let mut out = Vec::new();
    for p in plans {
        let mut notes = Vec::new();
        let subsets = match (destination_rules, &p.destination_rule) {
            // A host-level plan: the sides are told apart by service name.
            (_, None) => SubsetLabels::fallback(),
            (Some(docs), Some(name)) => match find_destination_rule(docs, name, &p.id.namespace) {
                Some(dr) => SubsetLabels::from_destination_rule(dr)
                    .with_context(|| format!("rollout {}", p.id))?,
                None => {
                    notes.push(format!("DestinationRule {name} not found in --manifests; subset names are taken as `version` labels"));
                    SubsetLabels::fallback()
                }
            },
            (None, Some(_)) => {
                notes.push("no --manifests given; subset names are taken as `version` labels (destination_version)".to_string());
                SubsetLabels::fallback()
            }
        };
        let t = Target::from_plan(p, &subsets, reporter, since)?;
        out.push((t, notes));
    }
    Ok(out)
}

/// When and from when one round is judged: `at` (now without it) and the step start `since`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timing {
    pub at: Option<DateTime<Utc>>,
    pub since: Option<DateTime<Utc>>,
}

/// Run one round for `plans` against `source`. Async; the CLI wraps it in a runtime.
pub async fn analyze(
    plans: &[Plan],
    destination_rules: Option<&[serde_json::Value]>,
    source: &Prometheus,
    reporter: &str,
    timing: Timing,
) -> anyhow::Result<Report> {
    let Timing { at, since } = timing;
    let targets = targets(plans, destination_rules, reporter, since)?;
    let plan = batch::plan(&targets.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>());
    let (results, stats) = run_tick(source, &plan, at).await;
    let outcome = outcome_of(&results);
    let rollouts = results
        .into_iter()
        .zip(targets)
        .map(|(r, (t, notes))| RolloutReport {
            rollout: r.id.to_string(),
            outcome: r.outcome(),
            subset_label: t.subsets.metric_label.to_string(),
            canary_value: t.subsets.canary.value.clone(),
            stable_value: t.subsets.stable.value.clone(),
            notes,
            window: crate::units::duration(t.analysis.interval).to_string(),
            min_requests: t.analysis.min_requests,
            verdicts: r.verdicts,
            errors: r.errors,
            stable_queries: r.stable_queries,
        })
        .collect();
    Ok(Report {
        prometheus: source.url().to_string(),
        at,
        since,
        queries: stats.queries,
        outcome,
        rollouts,
    })
}

fn num(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => {
            let s = format!("{v:.3}");
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        }
        Some(v) => v.to_string(),
        None => "-".into(),
    }
}

/// The human-readable report.
pub fn render_text(report: &Report) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let mut when = report
        .at
        .map(|t| format!(" at {}", t.to_rfc3339()))
        .unwrap_or_default();
    if let Some(since) = report.since {
        when.push_str(&format!(" (step since {})", since.to_rfc3339()));
    }
    let _ = writeln!(
        s,
        "analysis against {}{when}: {} ({} queries)",
        report.prometheus, report.outcome, report.queries
    );
    for r in &report.rollouts {
        let _ = writeln!(
            s,
            "\n{}: {}  (canary {}=\"{}\", stable {}=\"{}\", window {}, minRequests {})",
            r.rollout,
            r.outcome,
            r.subset_label,
            r.canary_value,
            r.subset_label,
            r.stable_value,
            r.window,
            r.min_requests
        );
        for n in &r.notes {
            let _ = writeln!(s, "  note: {n}");
        }
        for v in &r.verdicts {
            let _ = writeln!(
                s,
                "  {:<13} {}  canary={} stable={} requests={}  [{}]",
                v.outcome.to_string(),
                v.metric,
                num(v.value),
                num(v.stable_value),
                num(v.samples),
                v.threshold
            );
            let _ = writeln!(s, "    why: {}", v.reason);
            if let Some(t) = &v.test {
                let _ = writeln!(s, "    test: {}", describe_test(t));
            }
            let _ = writeln!(s, "    query: {}", v.query);
            if let Some(q) = r.stable_queries.get(&v.metric) {
                let _ = writeln!(s, "    stable query: {q}");
            }
        }
        for e in &r.errors {
            let _ = writeln!(
                s,
                "  {:<13} {}  {}",
                format!("Error({})", e.kind),
                e.metric,
                e.message
            );
            let _ = writeln!(s, "    query: {}", e.query);
        }
    }
    s
}

/// A test's numbers on one line: statistic, p-value or posterior, effect size, samples.
pub fn describe_test(t: &crate::analysis::TestReport) -> String {
    let mut parts = vec![format!(
        "{} (confidence {})",
        t.test,
        num(Some(t.confidence))
    )];
    if let Some(p) = t.posterior {
        parts.push(format!("posterior {}", num(Some(p))));
    }
    if let Some(u) = t.statistic {
        parts.push(format!("U {}", num(Some(u))));
    }
    if let Some(p) = t.p_value {
        parts.push(format!("p {p:.3e}"));
    }
    if let Some(e) = t.effect_size {
        let unit = if t.test == "counts" { " points" } else { "x" };
        parts.push(format!("effect {}{unit}", num(Some(e))));
    }
    let errors = match (t.canary_errors, t.stable_errors) {
        (Some(c), Some(s)) => format!(" (errors {c} / {s})"),
        _ => String::new(),
    };
    parts.push(format!(
        "samples canary {} / stable {}{errors}",
        t.canary_samples, t.stable_samples
    ));
    if let Some(since) = t.since {
        parts.push(format!("pooled since {}", since.to_rfc3339()));
    }
    parts.join(", ")
}

pub(crate) fn load_plans(paths: &[PathBuf]) -> anyhow::Result<Vec<Plan>> {
    let (plans, findings) = super::validate::collect(paths)?;
    if !findings.is_empty() {
        let list: Vec<String> = findings
            .iter()
            .map(|f| format!("{}:{}:{}: {}", f.file, f.line, f.column, f.message))
            .collect();
        bail!(
            "the plans have mistakes (run `tidegate validate`):\n{}",
            list.join("\n")
        );
    }
    if plans.is_empty() {
        bail!("no rollout plans found");
    }
    Ok(plans)
}

/// `tidegate analyze`.
pub fn run(args: &AnalyzeArgs) -> anyhow::Result<ExitCode> {
    let prepared = (|| -> anyhow::Result<_> {
        let plans = load_plans(&args.plans)?;
        let docs = args.manifests.as_deref().map(read_manifests).transpose()?;
        let source = args.source.source()?;
        Ok((plans, docs, source))
    })();
    let (plans, docs, source) = match prepared {
        Ok(p) => p,
        Err(e) => {
            eprintln!("tidegate analyze: {e:#}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    let report = match rt.block_on(analyze(
        &plans,
        docs.as_deref(),
        &source,
        &args.reporter,
        Timing {
            at: args.at,
            since: args.since,
        },
    )) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tidegate analyze: {e:#}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    match args.output {
        Format::Text => print!("{}", render_text(&report)),
        Format::Json | Format::Yaml => print!(
            "{}",
            args.output
                .structured(&report)
                .context("failed to encode the report")?
                .unwrap_or_default()
        ),
    }
    Ok(ExitCode::from(report.exit_code()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_both_forms() {
        assert_eq!(
            parse_time("1700000000").map(|t| t.timestamp()),
            Ok(1_700_000_000)
        );
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z").map(|t| t.timestamp()),
            Ok(1_700_000_000)
        );
        assert!(parse_time("yesterday").is_err());
    }
}
