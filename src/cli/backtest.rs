//! `tidegate backtest PLAN --prometheus URL --from T --to T [--aa [--offset 1d]]`: replay a
//! plan's analysis rounds over past Prometheus data through the real engine (steps, durations,
//! failureLimit, window) and print each round's verdicts, what the rollout would have done and a
//! one-line summary fit for a pull-request comment. `--aa` judges the stable subset against
//! itself `--offset` earlier, back to back over the range: how often the plan would roll back a
//! healthy canary on this service's own traffic.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::EXIT_USAGE;
use super::analyze::{PromArgs, describe_test, load_plans, parse_time, read_manifests, targets};
use crate::analysis::batch::{self, RangeSeries, Series, Target};
use crate::analysis::{Outcome, Verdict};
use crate::metrics::{MetricsError, MetricsSource, run_tick};
use crate::plan::Plan;
use crate::rollout::{self, Observation, Phase, PlanRef, ReadBack, Status};

/// The canary subset value an A/A replay uses: no real series carries it.
const AA_CANARY: &str = "tidegate-aa-canary";

#[derive(Debug, clap::Args)]
pub struct BacktestArgs {
    /// Plan file or folder; every plan found is replayed on its own.
    pub plan: PathBuf,
    #[command(flatten)]
    pub source: PromArgs,
    /// Start of the replay (RFC 3339 or Unix seconds): the rollout starts here.
    #[arg(long, value_parser = parse_time)]
    pub from: DateTime<Utc>,
    /// End of the replay.
    #[arg(long, value_parser = parse_time)]
    pub to: DateTime<Utc>,
    /// Folder (or file) of Istio manifests with the plans' DestinationRules.
    #[arg(long)]
    pub manifests: Option<PathBuf>,
    /// A/A test: the "canary" is the stable subset now, compared with the stable subset
    /// `--offset` earlier; rollouts are replayed back to back over the range.
    #[arg(long)]
    pub aa: bool,
    /// How far back the A/A baseline lies.
    #[arg(long, default_value = "1d", value_parser = humantime::parse_duration, requires = "aa")]
    pub offset: Duration,
    /// Istio reporter whose metrics are read.
    #[arg(long, default_value = batch::DEFAULT_REPORTER)]
    pub reporter: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = super::Format::Text)]
    pub output: super::Format,
}

/// One analysis round of the replay.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Round {
    pub at: DateTime<Utc>,
    /// Which replayed rollout (A/A replays several back to back; 0 otherwise).
    pub attempt: usize,
    pub step: usize,
    pub phase: Phase,
    pub outcome: Outcome,
    pub verdicts: Vec<Verdict>,
    /// Checks whose queries failed, as `metric: message`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// A phase or step change of the replayed rollout.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub at: DateTime<Utc>,
    pub attempt: usize,
    pub from: Phase,
    pub to: Phase,
    pub step: usize,
    pub reason: String,
}

/// How one replayed rollout ended.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    pub started: DateTime<Utc>,
    /// The phase at the end of the replay (or of the attempt).
    pub phase: Phase,
    pub at: DateTime<Utc>,
    pub reason: String,
}

/// The replay of one plan.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Backtest {
    pub rollout: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// A/A: the baseline offset, humanized.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aa_offset: Option<String>,
    pub rounds: Vec<Round>,
    pub changes: Vec<Change>,
    pub attempts: Vec<Attempt>,
    pub summary: String,
}

impl Backtest {
    fn empty(plan: &Plan, from: DateTime<Utc>, to: DateTime<Utc>) -> Backtest {
        Backtest {
            rollout: plan.id.to_string(),
            from,
            to,
            aa_offset: None,
            rounds: Vec::new(),
            changes: Vec::new(),
            attempts: Vec::new(),
            summary: String::new(),
        }
    }

    /// Replayed rollouts that ended rolled back.
    pub fn rolled_back(&self) -> usize {
        self.attempts
            .iter()
            .filter(|a| matches!(a.phase, Phase::RolledBack | Phase::RollingBack))
            .count()
    }
}

/// Reads the stable subset at `t` as if it were the canary (relabelled `AA_CANARY`) and the
/// stable subset `offset` earlier as the stable, so the real batching, judge and engine run
/// an A/A comparison.
pub struct AaSource<'s, S> {
    pub inner: &'s S,
    pub offset: Duration,
    /// The metric label and the stable subset's value in it.
    pub label: String,
    pub stable: String,
}

impl<S: MetricsSource + Sync> AaSource<'_, S> {
    fn offset(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.offset).unwrap_or_default()
    }

    /// Split a query into (the "now" query reading stable as canary, whether the stable
    /// side `offset` earlier is needed).
    fn parts(&self, query: &str) -> (Option<String>, bool) {
        let has_canary = query.contains(AA_CANARY);
        let now = has_canary.then(|| query.replace(AA_CANARY, &self.stable));
        let stable = query.contains(&self.stable) || !has_canary;
        (now, stable)
    }

    fn relabel(&self, labels: &mut std::collections::BTreeMap<String, String>) {
        if let Some(v) = labels.get_mut(&self.label)
            && *v == self.stable
        {
            *v = AA_CANARY.to_string();
        }
    }

    fn is_stable(&self, labels: &std::collections::BTreeMap<String, String>) -> bool {
        labels.get(&self.label).is_none_or(|v| *v == self.stable)
    }
}

impl<S: MetricsSource + Sync> MetricsSource for AaSource<'_, S> {
    async fn instant(
        &self,
        query: &str,
        at: Option<DateTime<Utc>>,
    ) -> Result<Vec<Series>, MetricsError> {
        let at = at.unwrap_or_else(Utc::now);
        let (now, stable) = self.parts(query);
        let mut out = Vec::new();
        if let Some(q) = now {
            for mut s in self.inner.instant(&q, Some(at)).await? {
                self.relabel(&mut s.labels);
                out.push(s);
            }
        }
        if stable {
            let past = self.inner.instant(query, Some(at - self.offset())).await?;
            out.extend(past.into_iter().filter(|s| self.is_stable(&s.labels)));
        }
        Ok(out)
    }

    async fn range(
        &self,
        query: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: Duration,
    ) -> Result<Vec<RangeSeries>, MetricsError> {
        let (now, stable) = self.parts(query);
        let mut out = Vec::new();
        if let Some(q) = now {
            for mut s in self.inner.range(&q, start, end, step).await? {
                self.relabel(&mut s.labels);
                out.push(s);
            }
        }
        if stable {
            let off = self.offset();
            let past = self
                .inner
                .range(query, start - off, end - off, step)
                .await?;
            for mut s in past.into_iter().filter(|s| self.is_stable(&s.labels)) {
                // On the replay's clock, so pooling since the step start works.
                s.points.iter_mut().for_each(|(t, _)| *t += off);
                out.push(s);
            }
        }
        Ok(out)
    }
}

/// Everything one replay needs besides the metrics source.
pub struct Replay<'p> {
    pub plan: &'p Plan,
    pub target: Target,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Start a new rollout after each one ends (A/A).
    pub repeat: bool,
}

struct State {
    status: Option<Status>,
    attempt: usize,
    started: DateTime<Utc>,
    next_round: DateTime<Utc>,
}

/// Replay `r` against `source`: the engine decides at every wake-up, and an analysis round
/// runs every interval while the rollout is Progressing or Paused, as in the daemon.
pub async fn replay<S: MetricsSource + Sync>(source: &S, r: Replay<'_>) -> Backtest {
    let plan_ref = PlanRef {
        path: r.plan.location.file.clone(),
        revision: "backtest".into(),
        digest: r.plan.digest(),
    };
    let interval = chrono::Duration::from_std(r.plan.analysis.interval)
        .unwrap_or_else(|_| chrono::Duration::seconds(30));
    let mut out = Backtest::empty(r.plan, r.from, r.to);
    let mut st = State {
        status: None,
        attempt: 0,
        started: r.from,
        next_round: r.from,
    };
    let mut now = r.from;
    // Every wake-up advances time or completes a route step; the bound only guards bugs.
    for _ in 0..1_000_000 {
        if now > r.to {
            break;
        }
        let obs = observe(source, &r, &mut st, &mut out, now, interval).await;
        let d = rollout::step(r.plan, &plan_ref, st.status.as_ref(), &obs, now);
        record_changes(&mut out, st.attempt, &d);
        let (phase, reason) = (d.status.phase, d.status.reason.clone());
        st.status = Some(d.status);
        if phase.is_terminal() || phase == Phase::RollingBack && !r.repeat {
            out.attempts.push(Attempt {
                started: st.started,
                phase,
                at: now,
                reason,
            });
            if !r.repeat {
                return out;
            }
            st = State {
                status: None,
                attempt: st.attempt + 1,
                started: now,
                next_round: now,
            };
            continue;
        }
        // `observe` keeps the next round after `now`; a wake-up at `now` (a route step to
        // confirm) is handled at the same instant.
        let next = d.wake_at.map_or(st.next_round, |w| w.min(st.next_round));
        now = next.max(now);
    }
    if let Some(s) = &st.status {
        out.attempts.push(Attempt {
            started: st.started,
            phase: s.phase,
            at: r.to,
            reason: s.reason.clone(),
        });
    }
    out
}

fn record_changes(out: &mut Backtest, attempt: usize, d: &rollout::Decision) {
    out.changes.extend(d.transitions.iter().map(|t| Change {
        at: t.at,
        attempt,
        from: t.from,
        to: t.to,
        step: t.step,
        reason: t.reason.clone(),
    }));
}

/// The observation at `now`: the routes read back as written, and a round when one is due.
async fn observe<S: MetricsSource + Sync>(
    source: &S,
    r: &Replay<'_>,
    st: &mut State,
    out: &mut Backtest,
    now: DateTime<Utc>,
    interval: chrono::Duration,
) -> Observation {
    let mut obs = Observation {
        read_back: ReadBack::Verified,
        outside_window: r.plan.window.as_ref().is_some_and(|w| !w.contains(now)),
        ..Observation::default()
    };
    let Some(status) = &st.status else {
        st.next_round = now + interval;
        return obs;
    };
    let analysing = matches!(status.phase, Phase::Progressing | Phase::Paused)
        && !r.plan.analysis.metrics.is_empty();
    if !analysing {
        st.next_round = now + interval;
        return obs;
    }
    if now < st.next_round {
        return obs;
    }
    let mut target = r.target.clone();
    target.since = Some(status.step_started_at);
    let plan = batch::plan(std::slice::from_ref(&target));
    let (results, _) = run_tick(source, &plan, Some(now)).await;
    st.next_round = now + interval;
    let Some(result) = results.into_iter().next() else {
        return obs;
    };
    obs.metrics_unreachable = result.unreachable();
    out.rounds.push(Round {
        at: now,
        attempt: st.attempt,
        step: status.step,
        phase: status.phase,
        outcome: result.outcome(),
        verdicts: result.verdicts.clone(),
        errors: result
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.metric, e.message))
            .collect(),
    });
    obs.verdicts = result.verdicts;
    obs
}

fn hhmm(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The one-line summary for a pull-request comment.
pub fn summarize(b: &Backtest) -> String {
    let count = |o: Outcome| b.rounds.iter().filter(|r| r.outcome == o).count();
    let rounds = format!(
        "{} rounds: {} pass, {} inconclusive, {} fail",
        b.rounds.len(),
        count(Outcome::Pass),
        count(Outcome::Inconclusive),
        count(Outcome::Fail)
    );
    let span = format!("{} .. {}", hhmm(b.from), hhmm(b.to));
    if let Some(offset) = &b.aa_offset {
        let n = b.attempts.len();
        let rb = b.rolled_back();
        let pct = if n > 0 {
            100.0 * rb as f64 / n as f64
        } else {
            0.0
        };
        return format!(
            "tidegate backtest --aa {} ({span}, stable vs itself {offset} earlier): {rb} of {n} replayed rollouts would have rolled back a healthy canary ({pct:.1} %); {rounds}",
            b.rollout
        );
    }
    let outcome = match b.attempts.last() {
        Some(a) if matches!(a.phase, Phase::RolledBack | Phase::RollingBack) => {
            format!("would have ROLLED BACK at {}: {}", hhmm(a.at), a.reason)
        }
        Some(a) if a.phase == Phase::Succeeded => {
            format!("would have promoted at {}", hhmm(a.at))
        }
        Some(a) => format!("still {} at the end: {}", a.phase, a.reason),
        None => "never started".into(),
    };
    format!(
        "tidegate backtest {} ({span}): {outcome}; {rounds}",
        b.rollout
    )
}

/// The human-readable replay.
pub fn render_text(b: &Backtest) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let mut changes = b.changes.iter().peekable();
    for r in &b.rounds {
        while let Some(c) = changes.next_if(|c| c.at <= r.at) {
            let _ = writeln!(
                s,
                "{}  -> {} step {}: {}",
                hhmm(c.at),
                c.to,
                c.step,
                c.reason
            );
        }
        let _ = writeln!(
            s,
            "{}  round (step {}, {}): {}",
            hhmm(r.at),
            r.step,
            r.phase,
            r.outcome
        );
        for v in &r.verdicts {
            let _ = writeln!(
                s,
                "    {:<13} {}: {}",
                v.outcome.to_string(),
                v.metric,
                v.reason
            );
            if let Some(t) = &v.test {
                let _ = writeln!(s, "                  test: {}", describe_test(t));
            }
        }
        for e in &r.errors {
            let _ = writeln!(s, "    {:<13} {e}", "Error");
        }
    }
    for c in changes {
        let _ = writeln!(
            s,
            "{}  -> {} step {}: {}",
            hhmm(c.at),
            c.to,
            c.step,
            c.reason
        );
    }
    let _ = writeln!(s, "\n{}", b.summary);
    s
}

/// The target of `plan` for the replay; A/A swaps the canary for `AA_CANARY`.
fn replay_target(mut t: Target, aa: bool) -> anyhow::Result<Target> {
    if aa {
        let v = &t.subsets.stable.value;
        if !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            bail!(
                "--aa needs a stable subset label value of letters, digits, '-' and '_' (found {v:?})"
            );
        }
        t.subsets.canary.value = AA_CANARY.into();
        t.subsets.canary.name = AA_CANARY.into();
    }
    Ok(t)
}

/// `tidegate backtest`.
pub fn run(args: &BacktestArgs) -> anyhow::Result<ExitCode> {
    let prepared = (|| -> anyhow::Result<_> {
        if args.to <= args.from {
            bail!("--to must lie after --from");
        }
        let plans = load_plans(std::slice::from_ref(&args.plan))?;
        let docs = args.manifests.as_deref().map(read_manifests).transpose()?;
        let targets = targets(&plans, docs.as_deref(), &args.reporter, None)?;
        let source = args.source.source()?;
        Ok((plans, targets, source))
    })();
    let (plans, targets, source) = match prepared {
        Ok(p) => p,
        Err(e) => {
            eprintln!("tidegate backtest: {e:#}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("failed to start the async runtime")?;
    let mut all = Vec::new();
    for (plan, (target, notes)) in plans.iter().zip(targets) {
        for n in &notes {
            eprintln!("note: {}: {n}", plan.id);
        }
        let target = match replay_target(target, args.aa) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("tidegate backtest: {}: {e:#}", plan.id);
                return Ok(ExitCode::from(EXIT_USAGE));
            }
        };
        all.push(rt.block_on(run_one(&source, plan, target, args)));
    }
    match args.output {
        super::Format::Text => all.iter().for_each(|b| print!("{}", render_text(b))),
        super::Format::Json | super::Format::Yaml => print!(
            "{}",
            args.output
                .structured(&all)
                .context("failed to encode the backtest")?
                .unwrap_or_default()
        ),
    }
    let rolled_back = all.iter().any(|b| b.rolled_back() > 0);
    Ok(ExitCode::from(u8::from(rolled_back)))
}

async fn run_one<S: MetricsSource + Sync>(
    source: &S,
    plan: &Plan,
    target: Target,
    args: &BacktestArgs,
) -> Backtest {
    let replay_args = Replay {
        plan,
        from: args.from,
        to: args.to,
        repeat: args.aa,
        target: target.clone(),
    };
    let mut b = if args.aa {
        let aa = AaSource {
            inner: source,
            offset: args.offset,
            label: target.subsets.metric_label.to_string(),
            stable: target.subsets.stable.value.clone(),
        };
        let mut b = replay(&aa, replay_args).await;
        b.aa_offset = Some(crate::units::duration(args.offset).to_string());
        b
    } else {
        replay(source, replay_args).await
    };
    b.summary = summarize(&b);
    b
}
