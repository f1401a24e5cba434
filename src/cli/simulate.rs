//! `tidegate simulate PLAN --verdicts FILE`: run the engine over a scripted sequence of analysis
//! results and control commits, printing each transition. Nothing touches a cluster: it is how a
//! user checks what a plan will do before committing it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::analysis::{Outcome, Verdict};
use crate::control::ControlAction;
use crate::plan::{self, Plan};
use crate::rollout::{
    self, ControlRequest, Decision, Effect, Observation, Phase, PlanRef, ReadBack, Status,
};

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// The plan file.
    pub plan: PathBuf,
    /// The script of analysis rounds (see docs/simulate.md).
    #[arg(long)]
    pub verdicts: PathBuf,
    /// Which rollout of the file, when it holds several (`name` or `namespace/name`).
    #[arg(long)]
    pub rollout: Option<String>,
    /// Exit 1 unless the rollout ends in this phase (for CI checks of plans).
    #[arg(long)]
    pub expect: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = super::Format::Text)]
    pub output: super::Format,
}

/// The script file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Script {
    /// Time of the first tick (RFC 3339); default 2024-01-01T10:00:00Z (a Monday).
    #[serde(default)]
    pub start: Option<DateTime<Utc>>,
    pub ticks: Vec<Tick>,
}

/// One analysis round (or several, with `repeat`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Tick {
    /// Time since the previous tick; default: the plan's analysis interval.
    #[serde(default)]
    pub after: Option<String>,
    /// Outcome per metric name: `pass`, `fail`, `inconclusive`, or `{fail: 94.2}` with a value.
    #[serde(default)]
    pub verdicts: BTreeMap<String, ScriptedVerdict>,
    /// A control commit arriving before this round: `pause` or `{action: abort, reason: …}`.
    #[serde(default)]
    pub control: Option<ScriptedControl>,
    #[serde(default)]
    pub metrics_unreachable: bool,
    /// `drifted`: the VirtualService was edited by someone else before this round.
    #[serde(default)]
    pub read_back: Option<String>,
    /// Error-level preflight findings standing at this round.
    #[serde(default)]
    pub preflight_errors: Vec<String>,
    /// Run this tick this many times.
    #[serde(default)]
    pub repeat: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ScriptedVerdict {
    Word(String),
    Valued(BTreeMap<String, f64>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ScriptedControl {
    Word(String),
    Full {
        action: String,
        #[serde(default)]
        reason: String,
        #[serde(default)]
        author: Option<String>,
    },
}

/// One printed line of the simulation.
#[derive(Debug, Serialize)]
pub struct Line {
    pub at: DateTime<Utc>,
    pub elapsed: String,
    pub phase: Phase,
    pub step: usize,
    pub canary_weight: u8,
    pub what: String,
}

fn outcome_word(word: &str) -> anyhow::Result<Outcome> {
    match word.to_ascii_lowercase().as_str() {
        "pass" => Ok(Outcome::Pass),
        "fail" => Ok(Outcome::Fail),
        "inconclusive" => Ok(Outcome::Inconclusive),
        other => bail!("unknown outcome `{other}`: use pass, fail or inconclusive"),
    }
}

fn verdict(plan: &Plan, metric: &str, v: &ScriptedVerdict) -> anyhow::Result<Verdict> {
    if !plan.analysis.metrics.iter().any(|m| m.name == metric) {
        let known: Vec<&str> = plan
            .analysis
            .metrics
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        bail!(
            "metric `{metric}` is not in the plan's analysis.metrics (known: {})",
            known.join(", ")
        );
    }
    Ok(match v {
        ScriptedVerdict::Word(w) => Verdict::bare(metric, outcome_word(w)?),
        ScriptedVerdict::Valued(map) => {
            let (word, value) = map
                .iter()
                .next()
                .ok_or_else(|| anyhow!("empty verdict for `{metric}`"))?;
            let mut v = Verdict::bare(metric, outcome_word(word)?);
            v.value = Some(*value);
            v
        }
    })
}

fn control(c: &ScriptedControl, tick: usize) -> anyhow::Result<ControlRequest> {
    let (action, reason, author) = match c {
        ScriptedControl::Word(w) => (w.as_str(), String::new(), None),
        ScriptedControl::Full {
            action,
            reason,
            author,
        } => (action.as_str(), reason.clone(), author.clone()),
    };
    let action = ControlAction::parse(action).ok_or_else(|| {
        anyhow!("unknown control action `{action}`: use pause, resume, abort, promote or retry")
    })?;
    Ok(ControlRequest {
        action,
        commit: format!("simulated-{tick}"),
        author: author.unwrap_or_else(|| "simulation <sim@tidegate.invalid>".into()),
        reason,
    })
}

/// Run the script against the plan; every transition and traffic change, in order.
pub fn simulate(plan: &Plan, script: &Script) -> anyhow::Result<(Vec<Line>, Status)> {
    let start = script.start.unwrap_or_else(|| {
        DateTime::parse_from_rfc3339("2024-01-01T10:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    });
    let plan_ref = PlanRef {
        path: String::new(),
        revision: "simulated".into(),
        digest: plan.digest(),
    };
    let interval = plan.analysis.interval;
    let mut now = start;
    let mut status: Option<Status> = None;
    let mut lines = Vec::new();
    let mut first = true;
    let mut n = 0usize;
    for tick in &script.ticks {
        let after = match &tick.after {
            Some(s) => humantime::parse_duration(s)
                .with_context(|| format!("tick {n}: `after: {s}` is not a duration"))?,
            None => interval,
        };
        for _ in 0..tick.repeat.unwrap_or(1).max(1) {
            if !first {
                now += chrono::Duration::from_std(after).unwrap_or_default();
            }
            first = false;
            let mut obs = Observation {
                metrics_unreachable: tick.metrics_unreachable,
                outside_window: plan.window.as_ref().is_some_and(|w| !w.contains(now)),
                preflight_errors: tick.preflight_errors.clone(),
                ..Observation::default()
            };
            for (metric, v) in &tick.verdicts {
                obs.verdicts
                    .push(verdict(plan, metric, v).with_context(|| format!("tick {n}"))?);
            }
            if let Some(c) = &tick.control {
                obs.controls
                    .push(control(c, n).with_context(|| format!("tick {n}"))?);
            }
            obs.read_back = match tick.read_back.as_deref() {
                None | Some("verified") => ReadBack::Verified,
                Some("drifted") => ReadBack::Drifted {
                    actual: rollout::RouteState::all_stable(),
                    detail: "edited by hand (simulated)".into(),
                },
                Some(other) => {
                    bail!("tick {n}: unknown readBack `{other}`: use verified or drifted")
                }
            };
            let mut decision = rollout::step(plan, &plan_ref, status.as_ref(), &obs, now);
            print_decision(&decision, start, now, &mut lines);
            // Route changes are confirmed by an immediate re-read, as the daemon does.
            let mut guard = 0;
            while decision.wake_at == Some(now) && guard < 16 {
                guard += 1;
                let confirm = Observation {
                    read_back: ReadBack::Verified,
                    outside_window: obs.outside_window,
                    metrics_unreachable: obs.metrics_unreachable,
                    ..Observation::default()
                };
                decision = rollout::step(plan, &plan_ref, Some(&decision.status), &confirm, now);
                print_decision(&decision, start, now, &mut lines);
            }
            status = Some(decision.status);
            n += 1;
        }
    }
    let status = status.ok_or_else(|| anyhow!("the script has no ticks"))?;
    Ok((lines, status))
}

fn print_decision(d: &Decision, start: DateTime<Utc>, now: DateTime<Utc>, lines: &mut Vec<Line>) {
    let elapsed = crate::units::duration(Duration::from_secs(
        u64::try_from((now - start).num_seconds()).unwrap_or(0),
    ))
    .to_string();
    for t in &d.transitions {
        let what = if t.from == t.to {
            t.reason.clone()
        } else {
            format!("{} -> {}: {}", t.from, t.to, t.reason)
        };
        lines.push(Line {
            at: now,
            elapsed: elapsed.clone(),
            phase: t.to,
            step: t.step,
            canary_weight: t.canary_weight,
            what,
        });
    }
    for e in &d.effects {
        if let Effect::SetRoute { route } | Effect::ClearManagedRoutes { route } = e {
            lines.push(Line {
                at: now,
                elapsed: elapsed.clone(),
                phase: d.status.phase,
                step: d.status.step,
                canary_weight: route.canary_weight,
                what: format!("route: {route}"),
            });
        }
    }
}

fn pick<'p>(plans: &'p [Plan], wanted: Option<&str>, file: &str) -> anyhow::Result<&'p Plan> {
    match wanted {
        None if plans.len() == 1 => Ok(&plans[0]),
        None => bail!(
            "{file} holds {} rollouts; choose one with --rollout ({})",
            plans.len(),
            plans
                .iter()
                .map(|p| p.id.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Some(w) => plans
            .iter()
            .find(|p| p.id.to_string() == w || p.id.name == w)
            .ok_or_else(|| anyhow!("{file} has no rollout `{w}`")),
    }
}

pub fn run(args: &SimulateArgs) -> anyhow::Result<ExitCode> {
    let plan_name = args.plan.display().to_string();
    let text = match std::fs::read_to_string(&args.plan) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("tidegate simulate: cannot read {plan_name}: {e}");
            return Ok(ExitCode::from(super::EXIT_USAGE));
        }
    };
    let parsed = plan::parse_str(&plan_name, &text);
    if !parsed.findings.is_empty() {
        for f in &parsed.findings {
            eprintln!("{f}");
        }
        eprintln!("tidegate simulate: the plan is invalid; fix the findings above");
        return Ok(ExitCode::FAILURE);
    }
    let plan = pick(&parsed.plans, args.rollout.as_deref(), &plan_name)?;
    let script_name = args.verdicts.display().to_string();
    let script_text = std::fs::read_to_string(&args.verdicts)
        .with_context(|| format!("cannot read {script_name}"))?;
    let script: Script = serde_saphyr::from_str(&script_text).map_err(|e| {
        anyhow!(
            "{script_name}: {}",
            e.to_string().lines().next().unwrap_or("invalid script")
        )
    })?;
    let (lines, status) = simulate(plan, &script).with_context(|| script_name.to_string())?;
    let mut text = String::new();
    match args.output {
        super::Format::Json | super::Format::Yaml => {
            text = args.output.structured(&lines)?.unwrap_or_default()
        }
        super::Format::Text => {
            for l in &lines {
                text.push_str(&format!(
                    "{:>10}  {:<12} step {:<2} canary {:>3}%  {}\n",
                    l.elapsed, l.phase, l.step, l.canary_weight, l.what
                ));
            }
            text.push_str(&format!(
                "final: {} at step {} ({})\n",
                status.phase, status.step, status.reason
            ));
        }
    }
    // A closed pipe (`| head`) is not an error worth a panic.
    {
        use std::io::Write;
        let _ = std::io::stdout().lock().write_all(text.as_bytes());
    }
    if let Some(expect) = &args.expect
        && !status.phase.as_str().eq_ignore_ascii_case(expect)
    {
        eprintln!(
            "tidegate simulate: expected the rollout to end {expect}, it ended {}",
            status.phase
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
