//! `tidegate status --watch`: every rollout live, one progress bar each (indicatif), from the
//! daemon's API (`--api`) or from the status files in Git; `-o json` streams one JSON object
//! per change instead (one line each), `-o yaml` one document per change.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::Format;
use super::status::{NO_ROLLOUTS, StatusArgs, render};
use crate::analysis::{Outcome, Verdict};
use crate::plan::RolloutId;
use crate::rollout::Status;

/// A verdict for the watch line: metric, mark, and the value with its unit (`99.5%`, `212ms`).
fn verdict_cell(v: &Verdict) -> String {
    let mark = match v.outcome {
        Outcome::Pass => "ok",
        Outcome::Fail => "FAIL",
        Outcome::Inconclusive => "?",
    };
    match v.value {
        Some(x) => format!("{} {mark} {}{}", v.metric, crate::units::number(x), v.unit),
        None => format!("{} {mark}", v.metric),
    }
}

/// One line describing a rollout: phase, step, time in step, latest verdicts, reason.
pub fn line(s: &Status, now: chrono::DateTime<Utc>) -> String {
    let in_step = (now - s.step_started_at).to_std().unwrap_or_default();
    let mut verdicts = s
        .analysis
        .last
        .iter()
        .map(verdict_cell)
        .collect::<Vec<_>>()
        .join(", ");
    // During a metrics outage the verdicts are those of the last round that answered.
    if let (Some(at), Some(_), false) = (
        s.analysis.last_checked_at,
        s.metrics_unreachable_since,
        verdicts.is_empty(),
    ) {
        verdicts = format!("{verdicts} as of {}", at.format("%H:%M:%S"));
    }
    format!(
        "{:<12} step {}/{} for {} [{verdicts}] {}",
        s.phase.as_str(),
        s.step,
        s.step_count,
        crate::units::duration(Duration::from_secs(in_step.as_secs())),
        s.reason
    )
}

/// The rollouts URL of a daemon's API from what people type: what the lab prints
/// (`http://host:port/api/v1/rollouts`), `http://host:port` or `host:port` (http assumed).
pub fn api_url(api: &str) -> String {
    let trimmed = api.trim().trim_end_matches('/');
    let with_scheme = if trimmed.contains("://") {
        trimmed.to_owned()
    } else {
        format!("http://{trimmed}")
    };
    let base = with_scheme
        .find("/api/v1")
        .map_or(with_scheme.as_str(), |i| &with_scheme[..i]);
    format!("{base}/api/v1/rollouts")
}

fn fetch_api(api: &str, runtime: &tokio::runtime::Runtime) -> anyhow::Result<Vec<Status>> {
    let url = api_url(api);
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        let body: serde_json::Value = client
            .get(&url)
            .send()
            .await
            .with_context(|| format!("cannot reach the daemon at {url}"))?
            .error_for_status()?
            .json()
            .await
            .with_context(|| format!("{url} did not answer a tidegate rollout list"))?;
        let list = body.get("rollouts").cloned().unwrap_or_default();
        Ok(serde_json::from_value::<Option<Vec<Status>>>(list)?.unwrap_or_default())
    })
}

fn fetch(args: &StatusArgs, runtime: &tokio::runtime::Runtime) -> anyhow::Result<Vec<Status>> {
    let mut statuses = match &args.api {
        Some(api) => fetch_api(api, runtime)?,
        None => {
            let (mut repo, _tmp) = args.repo.open()?;
            repo.fetch()?;
            repo.status_documents()?
                .into_iter()
                .filter_map(Result::ok)
                .collect()
        }
    };
    statuses.sort_by(|a, b| a.rollout.cmp(&b.rollout));
    Ok(statuses)
}

pub fn run(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if !args.watch {
        let statuses = fetch(args, &runtime)?;
        print!("{}", render(&statuses, args.output)?);
        return Ok(ExitCode::SUCCESS);
    }
    match args.output {
        Format::Text => watch_text(args, &runtime),
        format => watch_structured(args, &runtime, format),
    }
}

/// Wait a second; true when Ctrl-C came first or the refreshes asked for are done.
fn next_refresh(args: &StatusArgs, runtime: &tokio::runtime::Runtime, n: u64) -> bool {
    if args.refreshes.is_some_and(|max| n >= max) {
        return true;
    }
    runtime.block_on(async {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => false,
            _ = tokio::signal::ctrl_c() => true,
        }
    })
}

/// One rollout's status as one item of the stream: a JSON line, or a YAML document.
pub fn stream_item(s: &Status, format: Format) -> anyhow::Result<String> {
    Ok(match format {
        Format::Yaml => format!("---\n{}", serde_saphyr::to_string(s)?),
        _ => serde_json::to_string(s)? + "\n",
    })
}

/// `--watch -o json|yaml`: a rollout's status each time it differs from the one printed last.
fn watch_structured(
    args: &StatusArgs,
    runtime: &tokio::runtime::Runtime,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let mut printed: BTreeMap<RolloutId, serde_json::Value> = BTreeMap::new();
    let mut n = 0u64;
    loop {
        match fetch(args, runtime) {
            Ok(statuses) => {
                for s in statuses {
                    let value = serde_json::to_value(&s)?;
                    if printed.get(&s.rollout) != Some(&value) {
                        print!("{}", stream_item(&s, format)?);
                        printed.insert(s.rollout, value);
                    }
                }
            }
            Err(e) => eprintln!("tidegate status: {e:#}"),
        }
        n += 1;
        if next_refresh(args, runtime, n) {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

/// `--watch`: a progress bar per rollout on a terminal, else one plain line per rollout and
/// refresh.
fn watch_text(args: &StatusArgs, runtime: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    let tty = std::io::stderr().is_terminal();
    let multi = MultiProgress::with_draw_target(if tty {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let style = ProgressStyle::with_template("{prefix:<28} {bar:30.cyan/blue} {pos:>3}% {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    let mut bars: BTreeMap<RolloutId, ProgressBar> = BTreeMap::new();
    let mut n = 0u64;
    loop {
        match fetch(args, runtime) {
            Ok(statuses) if statuses.is_empty() && (n == 0 || !tty) => println!("{NO_ROLLOUTS}"),
            Ok(statuses) => {
                let now = Utc::now();
                for s in &statuses {
                    let bar = bars.entry(s.rollout.clone()).or_insert_with(|| {
                        let b = multi.add(ProgressBar::new(100));
                        b.set_style(style.clone());
                        b.set_prefix(s.rollout.to_string());
                        b
                    });
                    bar.set_position(u64::from(s.route.canary_weight));
                    let text = line(s, now);
                    if !tty {
                        println!("{} {:>3}% {text}", s.rollout, s.route.canary_weight);
                    }
                    bar.set_message(text);
                }
            }
            Err(e) => eprintln!("tidegate status: {e:#}"),
        }
        n += 1;
        if next_refresh(args, runtime, n) {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_accepts_what_the_lab_prints_a_base_url_and_host_port() {
        let want = "http://127.0.0.1:8080/api/v1/rollouts";
        for typed in [
            "http://127.0.0.1:8080/api/v1/rollouts",
            "http://127.0.0.1:8080/api/v1/rollouts/",
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8080/",
            "127.0.0.1:8080",
            " 127.0.0.1:8080/api/v1 ",
            "http://127.0.0.1:8080/api/v1/rollouts/production/orders-svc",
        ] {
            assert_eq!(api_url(typed), want, "{typed}");
        }
        assert_eq!(
            api_url("https://tidegate.example/"),
            "https://tidegate.example/api/v1/rollouts"
        );
    }

    #[test]
    fn verdicts_during_a_metrics_outage_say_when_they_were_taken() {
        let id = RolloutId {
            namespace: "production".into(),
            name: "orders-svc".into(),
        };
        let plan_ref = crate::rollout::PlanRef {
            path: "rollouts/orders.yaml".into(),
            revision: "a".repeat(40),
            digest: "d".into(),
        };
        let t = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .expect("time")
                .with_timezone(&Utc)
        };
        let mut s = Status::fresh(&id, &plan_ref, 4, t("2026-12-01T10:00:00Z"));
        s.analysis.last = vec![Verdict::bare("success-rate", Outcome::Pass)];
        s.analysis.last_checked_at = Some(t("2026-12-01T10:00:30Z"));
        let now = t("2026-12-01T10:01:00Z");
        assert!(
            line(&s, now).contains("[success-rate ok]"),
            "{}",
            line(&s, now)
        );
        s.metrics_unreachable_since = Some(t("2026-12-01T10:00:45Z"));
        assert!(
            line(&s, now).contains("[success-rate ok as of 10:00:30]"),
            "{}",
            line(&s, now)
        );
    }

    #[test]
    fn verdict_values_carry_their_unit() {
        let mut v = Verdict::bare("success-rate", Outcome::Pass);
        v.value = Some(99.51234);
        v.unit = "%".into();
        assert_eq!(verdict_cell(&v), "success-rate ok 99.51%");
        v.value = Some(212.0);
        v.unit = "ms".into();
        v.outcome = Outcome::Fail;
        assert_eq!(verdict_cell(&v), "success-rate FAIL 212ms");
        v.value = None;
        assert_eq!(verdict_cell(&v), "success-rate FAIL");
    }
}
