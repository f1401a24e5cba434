//! Judgment benchmark: how often each way of judging a canary rolls back a healthy one, how
//! fast it catches real regressions, what it does during an incident shared by both subsets
//! and without traffic. Synthesizes Istio-standard series with known truth, backfills them
//! into a real Prometheus with `promtool tsdb create-blocks-from openmetrics`, and replays the
//! rollouts through the real batching, judge and engine (`rollout::step`), all trials of a
//! judge batched into one set of queries per round as the daemon does.
//! Run with `cargo bench --bench judgment` (or `--profile dev`); writes docs/judgment.md.

#[path = "../tests/common/prom.rs"]
mod prom;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use statrs::distribution::{ContinuousCDF, Normal};
use tidegate::analysis::batch::{self, Target};
use tidegate::analysis::subset::SubsetLabels;
use tidegate::analysis::{Outcome, Verdict};
use tidegate::metrics::prometheus::{Prometheus as Source, PrometheusConfig};
use tidegate::metrics::run_tick;
use tidegate::plan::{self, Plan, RolloutId};
use tidegate::rollout::{self, Observation, Phase, PlanRef, ReadBack, Status};

const SCRAPE: i64 = 5;
const ROUND: i64 = 30;
/// Rounds judged per trial (the plan's `analyze: 3m` step is six; the rest shows holding).
const ROUNDS: i64 = 10;
const WARMUP: i64 = 30;
const STABLE_RPS: f64 = 180.0;
const CANARY_RPS: f64 = 20.0;
const LE: [f64; 9] = [5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Scenario {
    Healthy,
    Errors,
    Latency,
    Incident,
    LowTraffic,
    NoTraffic,
}

impl Scenario {
    const ALL: [(Scenario, usize, &'static str); 6] = [
        (Scenario::Healthy, 500, "healthy canary"),
        (Scenario::Errors, 200, "canary +2 points of 5xx"),
        (Scenario::Latency, 200, "canary latency x1.5"),
        (Scenario::Incident, 200, "incident on both subsets"),
        (Scenario::LowTraffic, 100, "healthy canary at 1 req/s"),
        (Scenario::NoTraffic, 100, "canary without traffic"),
    ];
}

/// The truth of one trial.
#[derive(Debug, Clone)]
struct Trial {
    scenario: Scenario,
    service: String,
    /// Baseline error rate of both subsets.
    p0: f64,
    median_ms: f64,
    sigma: f64,
}

/// What one subset did in each scrape interval.
#[derive(Debug, Clone, Default)]
struct Traffic {
    ok: Vec<u64>,
    err: Vec<u64>,
    /// Per interval, cumulative count per `LE` bound (the last is +Inf).
    buckets: Vec<[u64; 10]>,
    sum_ms: Vec<f64>,
}

fn poisson(rng: &mut fastrand::Rng, lambda: f64) -> u64 {
    // Inversion in chunks of at most 50 keeps exp(-λ) representable.
    let mut left = lambda;
    let mut n = 0;
    while left > 0.0 {
        let l = left.min(50.0);
        left -= l;
        let (mut k, mut p, mut cdf, u) = (0u64, (-l).exp(), (-l).exp(), rng.f64());
        while u > cdf && k < 10_000 {
            k += 1;
            p *= l / k as f64;
            cdf += p;
        }
        n += k;
    }
    n
}

fn binomial(rng: &mut fastrand::Rng, n: u64, p: f64) -> u64 {
    if p <= 0.0 {
        return 0;
    }
    if p >= 1.0 {
        return n;
    }
    (0..n).filter(|_| rng.f64() < p).count() as u64
}

/// Latency CDF at `le` for a lognormal with `median` and `sigma`, times `scale`.
fn cdf(le: f64, median: f64, sigma: f64, scale: f64) -> f64 {
    Normal::standard().cdf(((le / (median * scale)).ln()) / sigma)
}

impl Trial {
    /// (error rate, latency scale, requests per second) of a subset at time offset `t`
    /// (seconds from the start of the analysis step).
    fn behaviour(&self, canary: bool, t: i64) -> (f64, f64, f64) {
        let rps = if canary { CANARY_RPS } else { STABLE_RPS };
        match self.scenario {
            Scenario::Healthy => (self.p0, 1.0, rps),
            Scenario::Errors if canary => (self.p0 + 0.02, 1.0, rps),
            Scenario::Latency if canary => (self.p0, 1.5, rps),
            Scenario::Incident if (60..180).contains(&t) => (0.02, 2.0, rps),
            Scenario::LowTraffic if canary => (self.p0, 1.0, 1.0),
            Scenario::NoTraffic if canary => (self.p0, 1.0, 0.0),
            _ => (self.p0, 1.0, rps),
        }
    }

    fn traffic(&self, canary: bool, intervals: i64, rng: &mut fastrand::Rng) -> Traffic {
        let mut tr = Traffic::default();
        for j in 0..intervals {
            let t = j * SCRAPE - WARMUP;
            let (p, scale, rps) = self.behaviour(canary, t);
            let lambda = rps * SCRAPE as f64;
            let err = poisson(rng, lambda * p);
            let ok = poisson(rng, lambda * (1.0 - p));
            let n = ok + err;
            // Multinomial over the buckets by conditional binomials.
            let mut cum = [0u64; 10];
            let (mut placed, mut below) = (0u64, 0.0);
            for (b, le) in LE.iter().enumerate() {
                let here = cdf(*le, self.median_ms, self.sigma, scale);
                let cond = if below < 1.0 {
                    ((here - below) / (1.0 - below)).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                placed += binomial(rng, n - placed, cond);
                cum[b] = placed;
                below = here;
            }
            cum[9] = n;
            let mean = self.median_ms * scale * (self.sigma * self.sigma / 2.0).exp();
            tr.ok.push(ok);
            tr.err.push(err);
            tr.buckets.push(cum);
            tr.sum_ms.push(n as f64 * mean);
        }
        tr
    }
}

fn trials() -> Vec<Trial> {
    let mut rng = fastrand::Rng::with_seed(12);
    let mut out = Vec::new();
    for (scenario, n, _) in Scenario::ALL {
        for i in 0..n {
            out.push(Trial {
                scenario,
                service: format!("{scenario:?}-{i:03}").to_lowercase(),
                p0: 0.001 + 0.009 * rng.f64(),
                median_ms: 20.0 + 60.0 * rng.f64(),
                sigma: 0.4 + 0.2 * rng.f64(),
            });
        }
    }
    out
}

/// Sample timestamps sit half a scrape off the 5 s grid, so window edges never fall on one.
fn sample_ts(t0: i64, j: i64) -> String {
    format!("{}.5", t0 - WARMUP - SCRAPE + j * SCRAPE + 2)
}

/// Write every trial's series as OpenMetrics and turn them into blocks in `data`.
fn backfill(data: &std::path::Path, trials: &[Trial], traffic: &[[Traffic; 2]], t0: i64) {
    let path = data.join("judgment.om");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
    use std::io::Write as _;
    let intervals = traffic[0][0].ok.len();
    let labels = |tr: &Trial, v: &str| {
        format!(
            "reporter=\"destination\",destination_service_namespace=\"bench\",destination_service_name=\"{}\",destination_version=\"{v}\"",
            tr.service
        )
    };
    let base = 100_000u64;
    writeln!(file, "# TYPE istio_requests counter").expect("write");
    for (tr, pair) in trials.iter().zip(traffic) {
        for (side, v) in pair.iter().zip(["v2", "v1"]) {
            let l = labels(tr, v);
            for (code, counts) in [("200", &side.ok), ("503", &side.err)] {
                let mut c = base;
                writeln!(
                    file,
                    "istio_requests_total{{{l},response_code=\"{code}\"}} {c} {}",
                    sample_ts(t0, 0)
                )
                .expect("write");
                for (j, n) in counts.iter().enumerate() {
                    c += n;
                    writeln!(
                        file,
                        "istio_requests_total{{{l},response_code=\"{code}\"}} {c} {}",
                        sample_ts(t0, j as i64 + 1)
                    )
                    .expect("write");
                }
            }
        }
    }
    writeln!(file, "# TYPE istio_request_duration_milliseconds histogram").expect("write");
    for (tr, pair) in trials.iter().zip(traffic) {
        for (side, v) in pair.iter().zip(["v2", "v1"]) {
            let l = labels(tr, v);
            let mut cum = [base; 10];
            let mut sum = base as f64;
            let mut lines: Vec<String> = vec![String::new(); 12];
            for j in 0..=intervals {
                if j > 0 {
                    for (b, c) in cum.iter_mut().enumerate() {
                        *c += side.buckets[j - 1][b];
                    }
                    sum += side.sum_ms[j - 1];
                }
                let ts = sample_ts(t0, j as i64);
                for (b, le) in LE
                    .iter()
                    .map(|x| format!("{x:.1}"))
                    .chain(["+Inf".to_string()])
                    .enumerate()
                {
                    let _ = writeln!(
                        lines[b],
                        "istio_request_duration_milliseconds_bucket{{{l},le=\"{le}\"}} {} {ts}",
                        cum[b]
                    );
                }
                let _ = writeln!(
                    lines[10],
                    "istio_request_duration_milliseconds_sum{{{l}}} {sum} {ts}"
                );
                let _ = writeln!(
                    lines[11],
                    "istio_request_duration_milliseconds_count{{{l}}} {} {ts}",
                    cum[9]
                );
            }
            for block in lines {
                file.write_all(block.as_bytes()).expect("write");
            }
        }
    }
    writeln!(file, "# EOF").expect("write");
    drop(file);
    let out = std::process::Command::new(prom::require_tool("promtool", "prometheus"))
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&path)
        .arg(data)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(&path).expect("remove input");
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Judge {
    Plain,
    Flagger,
    Statistical,
    StatisticalP99,
}

impl Judge {
    const ALL: [Judge; 4] = [
        Judge::Plain,
        Judge::Flagger,
        Judge::Statistical,
        Judge::StatisticalP99,
    ];

    fn name(self) -> &'static str {
        match self {
            Judge::Plain => "plain thresholds (old reference plan)",
            Judge::Flagger => "Flagger-style (canary-only, no data fails)",
            Judge::Statistical => "statistical judge (new default: latency on p50)",
            Judge::StatisticalP99 => "statistical judge, latency on p99",
        }
    }

    fn analysis(self) -> &'static str {
        match self {
            Judge::Plain => {
                "    failureLimit: 2\n    minRequests: 50\n    metrics:\n      - {name: success-rate, template: istio-success-rate, min: 99}\n      - {name: latency-p99, template: istio-latency-p99, max: 500ms}\n      - {name: vs-stable, template: istio-success-rate, compareTo: stable, tolerance: 0.5}\n"
            }
            Judge::Flagger => {
                "    failureLimit: 2\n    minRequests: 0\n    metrics:\n      - {name: success-rate, template: istio-success-rate, min: 99}\n      - {name: latency-p99, template: istio-latency-p99, max: 500ms}\n"
            }
            Judge::Statistical => {
                "    failureLimit: 1\n    minRequests: 50\n    metrics:\n      - {name: success-floor, template: istio-success-rate, min: 95}\n      - {name: errors, template: istio-success-rate, compareTo: stable, test: counts, tolerance: 0.5}\n      - {name: latency, template: istio-latency-p50, compareTo: stable, test: mann-whitney, tolerance: 10%, scrapeInterval: 5s}\n      - {name: latency-ceiling, template: istio-latency-p99, max: 1s}\n"
            }
            Judge::StatisticalP99 => {
                "    failureLimit: 1\n    minRequests: 50\n    metrics:\n      - {name: success-floor, template: istio-success-rate, min: 95}\n      - {name: errors, template: istio-success-rate, compareTo: stable, test: counts, tolerance: 0.5}\n      - {name: latency, template: istio-latency-p99, compareTo: stable, test: mann-whitney, tolerance: 10%, scrapeInterval: 5s}\n"
            }
        }
    }

    fn plan_text(self) -> String {
        format!(
            "apiVersion: tidegate.dev/v1alpha1\nkind: Rollout\nmetadata: {{name: x, namespace: bench}}\nspec:\n  service: x\n  stable: v1\n  canary: v2\n  steps: [{{setWeight: 10}}, {{analyze: 3m}}, {{setWeight: 100}}]\n  analysis:\n    interval: 30s\n{}",
            self.analysis()
        )
    }
}

/// One rollout being replayed.
struct Run {
    plan: Plan,
    status: Option<Status>,
    /// Analysis round (1-based) at which it rolled back.
    rolled_back_at: Option<i64>,
    /// The statistical judge's reported success rates with their synthetic truth.
    checks: Vec<(f64, f64)>,
}

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).expect("valid time")
}

fn decide(run: &mut Run, obs: &Observation, now: DateTime<Utc>) {
    let plan_ref = PlanRef {
        path: "bench".into(),
        revision: "r".into(),
        digest: run.plan.digest(),
    };
    for _ in 0..4 {
        let d = rollout::step(&run.plan, &plan_ref, run.status.as_ref(), obs, now);
        let again = d.wake_at == Some(now);
        run.status = Some(d.status);
        if !again {
            break;
        }
    }
}

/// The synthetic success rate of `side` over the samples one window of `round` reads.
fn truth(tr: &Traffic, rounds: &[i64]) -> f64 {
    let (mut ok, mut err) = (0u64, 0u64);
    for r in rounds {
        // Window (t-30, t] holds samples j with ts in it: the increments of intervals
        // whose end sample follows the window's first sample.
        let end = (WARMUP + r * ROUND) / SCRAPE; // sample index just before t
        for j in (end - ROUND / SCRAPE + 2)..=end {
            ok += tr.ok[(j - 1) as usize];
            err += tr.err[(j - 1) as usize];
        }
    }
    100.0 * ok as f64 / (ok + err) as f64
}

fn judge_all(
    rt: &tokio::runtime::Runtime,
    source: &Source,
    judge: Judge,
    trials: &[Trial],
    traffic: &[[Traffic; 2]],
    t0: i64,
) -> (Vec<Run>, usize) {
    let parsed = plan::parse_str("bench.yaml", &judge.plan_text());
    assert!(parsed.findings.is_empty(), "{:?}", parsed.findings);
    let base = parsed.plans[0].clone();
    let mut runs: Vec<Run> = trials
        .iter()
        .map(|t| {
            let mut p = base.clone();
            p.id = RolloutId {
                namespace: "bench".into(),
                name: t.service.clone(),
            };
            p.service = t.service.clone();
            Run {
                plan: p,
                status: None,
                rolled_back_at: None,
                checks: Vec::new(),
            }
        })
        .collect();
    let start = Observation {
        read_back: ReadBack::Verified,
        ..Observation::default()
    };
    runs.iter_mut().for_each(|r| decide(r, &start, at(t0)));
    let mut queries = 0;
    for round in 1..=ROUNDS {
        let now = at(t0 + round * ROUND);
        let active: Vec<usize> = (0..runs.len())
            .filter(|i| {
                runs[*i]
                    .status
                    .as_ref()
                    .is_some_and(|s| matches!(s.phase, Phase::Progressing | Phase::Paused))
            })
            .collect();
        let targets: Vec<Target> = active
            .iter()
            .map(|i| {
                let r = &runs[*i];
                let since = r.status.as_ref().map(|s| s.step_started_at);
                Target::from_plan(
                    &r.plan,
                    &SubsetLabels::fallback(),
                    batch::DEFAULT_REPORTER,
                    since,
                )
                .expect("target")
            })
            .collect();
        let bp = batch::plan(&targets);
        let (results, stats) = rt.block_on(run_tick(source, &bp, Some(now)));
        assert_eq!(stats.failed, 0, "queries failed at round {round}");
        queries = queries.max(stats.queries);
        for (i, result) in active.into_iter().zip(results) {
            let mut verdicts: Vec<Verdict> = result.verdicts;
            if judge == Judge::Flagger {
                for v in &mut verdicts {
                    if v.outcome == Outcome::Inconclusive {
                        v.outcome = Outcome::Fail;
                    }
                }
            }
            let run = &mut runs[i];
            if judge == Judge::Statistical && trials[i].scenario == Scenario::Healthy {
                record_truth(run, &verdicts, &traffic[i][0], round);
            }
            let obs = Observation {
                read_back: ReadBack::Verified,
                verdicts,
                ..Observation::default()
            };
            decide(run, &obs, now);
            let phase = run.status.as_ref().map(|s| s.phase);
            if run.rolled_back_at.is_none()
                && matches!(phase, Some(Phase::RollingBack | Phase::RolledBack))
            {
                run.rolled_back_at = Some(round);
            }
        }
    }
    (runs, queries)
}

fn record_truth(run: &mut Run, verdicts: &[Verdict], canary: &Traffic, round: i64) {
    if let Some(v) = verdicts.iter().find(|v| v.metric == "success-floor")
        && let Some(value) = v.value
    {
        run.checks.push((value, truth(canary, &[round])));
    }
    if let Some(v) = verdicts.iter().find(|v| v.metric == "errors")
        && let Some(value) = v.value
    {
        // The analysis step began at t0: every round so far is pooled.
        let rounds: Vec<i64> = (1..=round).collect();
        run.checks.push((value, truth(canary, &rounds)));
    }
}

struct Row {
    scenario: Scenario,
    trials: usize,
    rolled_back: usize,
    within_two: usize,
    promoted: usize,
}

fn rows(trials: &[Trial], runs: &[Run]) -> Vec<Row> {
    let mut by: BTreeMap<Scenario, Row> = BTreeMap::new();
    for (t, r) in trials.iter().zip(runs) {
        let row = by.entry(t.scenario).or_insert(Row {
            scenario: t.scenario,
            trials: 0,
            rolled_back: 0,
            within_two: 0,
            promoted: 0,
        });
        row.trials += 1;
        row.rolled_back += usize::from(r.rolled_back_at.is_some());
        row.within_two += usize::from(r.rolled_back_at.is_some_and(|k| k <= 2));
        row.promoted += usize::from(
            r.status
                .as_ref()
                .is_some_and(|s| matches!(s.phase, Phase::Promoting | Phase::Succeeded)),
        );
    }
    by.into_values().collect()
}

fn pct(n: usize, d: usize) -> String {
    format!("{:.1} % ({n}/{d})", 100.0 * n as f64 / d.max(1) as f64)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("judgment benchmark: run it with `cargo bench --bench judgment`");
        return;
    }
    prom::install_crypto();
    let started = Instant::now();
    let trials = trials();
    let intervals = (WARMUP + ROUNDS * ROUND) / SCRAPE + 1;
    let mut rng = fastrand::Rng::with_seed(34);
    let traffic: Vec<[Traffic; 2]> = trials
        .iter()
        .map(|t| {
            [
                t.traffic(true, intervals, &mut rng),
                t.traffic(false, intervals, &mut rng),
            ]
        })
        .collect();
    let now = Utc::now().timestamp();
    let t0 = now - 3 * 3600 - now.rem_euclid(60);
    let server = prom::Prometheus::start(prom::free_port(), |data| {
        backfill(data, &trials, &traffic, t0)
    });
    let backfilled = started.elapsed();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let source = Source::new(&PrometheusConfig {
        timeout: Duration::from_secs(120),
        ..PrometheusConfig::new(server.url())
    })
    .expect("source");
    let mut results = Vec::new();
    for judge in Judge::ALL {
        let t = Instant::now();
        let (runs, queries) = judge_all(&rt, &source, judge, &trials, &traffic, t0);
        println!(
            "{}: judged {} rollouts in {:.1}s ({queries} queries per round)",
            judge.name(),
            runs.len(),
            t.elapsed().as_secs_f64()
        );
        results.push((judge, runs, queries, t.elapsed()));
    }
    let report = report(&trials, &results, backfilled, intervals);
    print!("{report}");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/judgment.md");
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let head = old
        .split("<!-- measured -->")
        .next()
        .unwrap_or_default()
        .to_string();
    std::fs::write(&path, format!("{head}<!-- measured -->\n{report}"))
        .expect("write docs/judgment.md");
    println!("wrote {}", path.display());
}

type Result3 = (Judge, Vec<Run>, usize, Duration);

fn report(trials: &[Trial], results: &[Result3], backfilled: Duration, intervals: i64) -> String {
    let mut s = String::new();
    let series = trials.len() * 2 * 14;
    let profile = if cfg!(debug_assertions) {
        "dev"
    } else {
        "release"
    };
    let _ = writeln!(
        s,
        "Measured by `cargo bench --bench judgment` ({profile} profile) against {}: {} trials, {} series of {} samples each ({}s scrapes), synthesized, backfilled and loaded in {:.0} s.\n",
        prometheus_version(),
        trials.len(),
        series,
        intervals + 1,
        SCRAPE,
        backfilled.as_secs_f64()
    );
    let _ = writeln!(
        s,
        "| scenario | trials | {} |",
        results
            .iter()
            .map(|(j, ..)| j.name())
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let _ = writeln!(s, "|---|---:|{}", "---|".repeat(results.len()));
    let tables: Vec<Vec<Row>> = results
        .iter()
        .map(|(_, runs, ..)| rows(trials, runs))
        .collect();
    for (k, (scenario, n, label)) in Scenario::ALL.iter().enumerate() {
        let cells: Vec<String> = tables
            .iter()
            .map(|t| {
                let r = &t[k];
                debug_assert_eq!(r.scenario, *scenario);
                match scenario {
                    Scenario::Errors | Scenario::Latency => format!(
                        "{} rolled back within 2 rounds",
                        pct(r.within_two, r.trials)
                    ),
                    _ => format!(
                        "{} rolled back, {} promoted",
                        pct(r.rolled_back, r.trials),
                        pct(r.promoted, r.trials)
                    ),
                }
            })
            .collect();
        let _ = writeln!(s, "| {label} | {n} | {} |", cells.join(" | "));
    }
    let _ = writeln!(s);
    for (judge, runs, queries, took) in results {
        let _ = writeln!(
            s,
            "- {}: {} queries per round for all {} rollouts at once, {:.1} s for {} rounds.",
            judge.name(),
            queries,
            runs.len(),
            took.as_secs_f64(),
            ROUNDS
        );
    }
    if let Some((_, runs, ..)) = results.iter().find(|(j, ..)| *j == Judge::Statistical) {
        let checks: Vec<(f64, f64)> = runs.iter().flat_map(|r| r.checks.iter().copied()).collect();
        let worst = checks
            .iter()
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        let exact = checks.iter().filter(|(a, b)| (a - b).abs() < 1e-6).count();
        let _ = writeln!(
            s,
            "- Harness check: of {} success rates the statistical judge reported for healthy canaries (per round and pooled), {exact} equal the synthetic truth to within 1e-6 points (largest difference {worst:.2e} points).",
            checks.len()
        );
    }
    s
}

fn prometheus_version() -> String {
    std::process::Command::new(prom::require_tool("prometheus", "prometheus"))
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim().to_string())
        })
        .unwrap_or_else(|| "prometheus".into())
}
