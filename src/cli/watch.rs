//! `tidegate status --watch`: every rollout live, one progress bar each (indicatif), from the
//! daemon's API (`--api`) or from the status files in Git.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::status::{StatusArgs, render};
use crate::analysis::Outcome;
use crate::plan::RolloutId;
use crate::rollout::Status;

/// One line describing a rollout: phase, step, time in step, latest verdicts, reason.
pub fn line(s: &Status, now: chrono::DateTime<Utc>) -> String {
    let in_step = (now - s.step_started_at).to_std().unwrap_or_default();
    let verdicts: Vec<String> = s
        .analysis
        .last
        .iter()
        .map(|v| {
            let mark = match v.outcome {
                Outcome::Pass => "ok",
                Outcome::Fail => "FAIL",
                Outcome::Inconclusive => "?",
            };
            match v.value {
                Some(x) => format!("{} {mark} {x:.3}", v.metric),
                None => format!("{} {mark}", v.metric),
            }
        })
        .collect();
    format!(
        "{:<12} step {}/{} for {} [{}] {}",
        s.phase.as_str(),
        s.step,
        s.step_count,
        crate::units::duration(Duration::from_secs(in_step.as_secs())),
        verdicts.join(", "),
        s.reason
    )
}

fn fetch(args: &StatusArgs, runtime: &tokio::runtime::Runtime) -> anyhow::Result<Vec<Status>> {
    if let Some(api) = &args.api {
        let url = format!("{}/api/v1/rollouts", api.trim_end_matches('/'));
        return runtime.block_on(async {
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
                .await?;
            let list = body.get("rollouts").cloned().unwrap_or_default();
            Ok(serde_json::from_value(list)?)
        });
    }
    let (mut repo, _tmp) = args.repo.open()?;
    repo.fetch()?;
    Ok(repo
        .status_documents()?
        .into_iter()
        .filter_map(Result::ok)
        .collect())
}

pub fn run(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if !args.watch {
        let mut statuses = fetch(args, &runtime)?;
        statuses.sort_by(|a, b| a.rollout.cmp(&b.rollout));
        print!("{}", render(&statuses, args.output)?);
        return Ok(ExitCode::SUCCESS);
    }
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
        match fetch(args, &runtime) {
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
                        // Without a terminal, print one plain line per rollout and refresh.
                        println!("{} {:>3}% {text}", s.rollout, s.route.canary_weight);
                    }
                    bar.set_message(text);
                }
            }
            Err(e) => eprintln!("tidegate status: {e:#}"),
        }
        n += 1;
        if args.refreshes.is_some_and(|max| n >= max) {
            return Ok(ExitCode::SUCCESS);
        }
        let stop = runtime.block_on(async {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => false,
                _ = tokio::signal::ctrl_c() => true,
            }
        });
        if stop {
            return Ok(ExitCode::SUCCESS);
        }
    }
}
