//! Judging one metric check: values against `min`/`max` and, for `compareTo: stable`, against
//! the stable subset with a tolerance or a statistical test (`test:`). Too few requests, no
//! data or NaN give Inconclusive, never Fail. Pure: no I/O.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::analysis::stats::{self, Counts, Decision};
use crate::analysis::template::Unit;
use crate::analysis::verdict::{Outcome, TestReport, Verdict};
use crate::plan::{MetricSpec, StatTest, TestKind};

/// Relative slack of `min`/`max` comparisons: Prometheus' float arithmetic turns 99 % of 500
/// requests into 98.99999999999999, which must not fail `min: 99`.
pub const THRESHOLD_EPSILON: f64 = 1e-9;

fn below(value: f64, min: f64) -> bool {
    value < min - THRESHOLD_EPSILON * min.abs().max(1.0)
}

fn above(value: f64, max: f64) -> bool {
    value > max + THRESHOLD_EPSILON * max.abs().max(1.0)
}

/// What one query returned for one subset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reading {
    /// One value (possibly NaN).
    Value(f64),
    /// The query returned no series for this subset.
    Empty,
    /// The query returned this many series where one was expected.
    Ambiguous(usize),
}

/// Everything observed for one side of a check.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Side {
    pub reading: Reading,
    /// Requests in the window for the subset (`None`: no request series at all → 0).
    pub requests: Option<f64>,
}

/// The inputs of one check besides the readings.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub spec: &'a MetricSpec,
    pub unit: Unit,
    pub min_requests: u64,
    pub window: Duration,
}

fn fmt_num(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.is_finite() {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v}")
    }
}

fn unit_suffix(unit: Unit) -> &'static str {
    match unit {
        Unit::Percent => "%",
        Unit::Milliseconds => "ms",
        Unit::PerSecond => "/s",
        Unit::Number => "",
    }
}

/// The threshold as a user reads it, e.g. `min 99%, max 500ms, within 1% of stable`.
pub fn describe_threshold(spec: &MetricSpec, unit: Unit) -> String {
    let u = unit_suffix(unit);
    let mut parts = Vec::new();
    if let Some(m) = spec.min {
        parts.push(format!("min {}{u}", fmt_num(m)));
    }
    if let Some(m) = spec.max {
        parts.push(format!("max {}{u}", fmt_num(m)));
    }
    let dir = if unit.lower_is_better() {
        "above"
    } else {
        "below"
    };
    match &spec.test {
        Some(t) if t.kind == TestKind::Counts => parts.push(format!(
            "counts test: at most {} points {dir} stable, confidence {}",
            fmt_num(spec.tolerance),
            fmt_num(t.confidence)
        )),
        Some(t) => parts.push(format!(
            "mann-whitney: at most {}% {dir} stable, confidence {}",
            fmt_num(spec.tolerance * 100.0),
            fmt_num(t.confidence)
        )),
        None if spec.compare_to_stable => parts.push(format!(
            "at most {}{u} {dir} stable",
            fmt_num(spec.tolerance)
        )),
        None => {}
    }
    parts.join(", ")
}

/// Why a side has no usable value, if it has none.
fn unusable(side: &Side, name: &str, ctx: &Context<'_>) -> Option<String> {
    let w = crate::units::duration(ctx.window);
    let requests = side.requests.unwrap_or(0.0);
    // `increase()` extrapolates; round so 99.7 requests read as 100.
    if requests.round() < ctx.min_requests as f64 {
        return Some(format!(
            "{name} had {} requests in the {w} window, fewer than minRequests {}",
            fmt_num(requests.round()),
            ctx.min_requests
        ));
    }
    match side.reading {
        Reading::Empty => Some(format!("no data for {name} in the {w} window")),
        Reading::Ambiguous(n) => Some(format!(
            "query returned {n} series for {name}; a check needs exactly one"
        )),
        Reading::Value(v) if v.is_nan() => Some(format!(
            "{name} value is NaN in the {w} window (no requests to compute it from)"
        )),
        Reading::Value(_) => None,
    }
}

/// Judge one check. `stable` is `Some` exactly when the spec compares to stable.
pub fn judge(ctx: &Context<'_>, query: String, canary: Side, stable: Option<Side>) -> Verdict {
    let spec = ctx.spec;
    let u = unit_suffix(ctx.unit);
    let w = crate::units::duration(ctx.window);
    let mut v = Verdict::bare(spec.name.clone(), Outcome::Inconclusive);
    v.query = query;
    v.unit = u.to_owned();
    v.threshold = describe_threshold(spec, ctx.unit);
    v.window = w.to_string();
    v.samples = canary.requests.map(f64::round).or(Some(0.0));
    if let Reading::Value(x) = canary.reading {
        v.value = Some(x);
    }
    if let Some(Side {
        reading: Reading::Value(x),
        ..
    }) = stable
    {
        v.stable_value = Some(x);
    }
    if let Some(why) = unusable(&canary, "canary", ctx) {
        v.reason = why;
        return v;
    }
    let Reading::Value(c) = canary.reading else {
        return v;
    };
    if let Some(min) = spec.min
        && below(c, min)
    {
        v.outcome = Outcome::Fail;
        v.reason = format!(
            "canary {}{u} is below min {}{u} over {w}",
            fmt_num(c),
            fmt_num(min)
        );
        return v;
    }
    if let Some(max) = spec.max
        && above(c, max)
    {
        v.outcome = Outcome::Fail;
        v.reason = format!(
            "canary {}{u} is above max {}{u} over {w}",
            fmt_num(c),
            fmt_num(max)
        );
        return v;
    }
    if spec.compare_to_stable {
        let Some(stable) = stable else {
            v.reason = "no stable reading for compareTo: stable".into();
            return v;
        };
        if let Some(why) = unusable(&stable, "stable", ctx) {
            v.reason = why;
            return v;
        }
        let Reading::Value(s) = stable.reading else {
            return v;
        };
        let worse_by = if ctx.unit.lower_is_better() {
            c - s
        } else {
            s - c
        };
        if worse_by > spec.tolerance {
            v.outcome = Outcome::Fail;
            v.reason = format!(
                "canary {}{u} is worse than stable {}{u} by {}{u}, more than the tolerance {}{u}, over {w}",
                fmt_num(c),
                fmt_num(s),
                fmt_num(worse_by),
                fmt_num(spec.tolerance)
            );
            return v;
        }
        v.outcome = Outcome::Pass;
        v.reason = format!(
            "canary {}{u} vs stable {}{u} within {}{u}, over {w}",
            fmt_num(c),
            fmt_num(s),
            fmt_num(spec.tolerance)
        );
        return v;
    }
    v.outcome = Outcome::Pass;
    v.reason = format!("canary {}{u} over {w}", fmt_num(c));
    v
}

/// What one side of a `test:` check observed.
#[derive(Debug, Clone, PartialEq)]
pub enum TestData {
    /// `counts`: requests and 5xx errors pooled since the step began.
    Counts(Counts),
    /// `mann-whitney`: the per-scrape values of the round's window (NaN already dropped).
    Points(Vec<f64>),
}

/// One side of a `test:` check.
#[derive(Debug, Clone, PartialEq)]
pub struct TestSide {
    pub data: TestData,
    /// Requests the `minRequests` gate counts: the pooled requests (`counts`) or the
    /// round's requests (`mann-whitney`).
    pub requests: f64,
}

/// Judge a `test:` check: first `minRequests` on both sides, then the test's decision.
pub fn judge_test(
    ctx: &Context<'_>,
    test: &StatTest,
    query: String,
    canary: TestSide,
    stable: TestSide,
    since: Option<DateTime<Utc>>,
) -> Verdict {
    let mut v = Verdict::bare(ctx.spec.name.clone(), Outcome::Inconclusive);
    v.query = query;
    v.unit = unit_suffix(ctx.unit).to_owned();
    v.threshold = describe_threshold(ctx.spec, ctx.unit);
    v.window = crate::units::duration(ctx.window).to_string();
    v.samples = Some(canary.requests.round());
    let scope = match (test.kind, since) {
        (TestKind::Counts, Some(t)) => format!("since {}", t.format("%Y-%m-%dT%H:%M:%SZ")),
        _ => format!("in the {} window", v.window),
    };
    for (side, name) in [(&canary, "canary"), (&stable, "stable")] {
        if side.requests.round() < ctx.min_requests as f64 {
            v.reason = format!(
                "{name} had {} requests {scope}, fewer than minRequests {}",
                fmt_num(side.requests.round()),
                ctx.min_requests
            );
            return v;
        }
    }
    match (&canary.data, &stable.data) {
        (TestData::Counts(c), TestData::Counts(s)) => {
            counts_verdict(v, ctx, test, *c, *s, since, &scope)
        }
        (TestData::Points(c), TestData::Points(s)) => points_verdict(v, ctx, test, c, s, &scope),
        _ => {
            v.reason = "canary and stable were read differently; this is a bug".into();
            v
        }
    }
}

fn outcome_of(d: Decision) -> Outcome {
    match d {
        Decision::Worse => Outcome::Fail,
        Decision::NotWorse => Outcome::Pass,
        Decision::Undecided => Outcome::Inconclusive,
    }
}

fn counts_verdict(
    mut v: Verdict,
    ctx: &Context<'_>,
    test: &StatTest,
    c: Counts,
    s: Counts,
    since: Option<DateTime<Utc>>,
    scope: &str,
) -> Verdict {
    let tol = ctx.spec.tolerance;
    v.value = Some(100.0 * (1.0 - c.rate()));
    v.stable_value = Some(100.0 * (1.0 - s.rate()));
    let r = match stats::counts_test(c, s, tol / 100.0, test.confidence) {
        Ok(r) => r,
        Err(e) => {
            v.reason = format!("cannot run the counts test: {e}");
            return v;
        }
    };
    v.outcome = outcome_of(r.decision);
    let rule = match r.decision {
        Decision::Worse => format!(">= {}: the canary is worse", fmt_num(test.confidence)),
        Decision::NotWorse => format!(
            "<= {}: the canary is not worse",
            fmt_num(1.0 - test.confidence)
        ),
        Decision::Undecided => format!(
            "between {} and {}: too few requests yet to tell",
            fmt_num(1.0 - test.confidence),
            fmt_num(test.confidence)
        ),
    };
    v.reason = format!(
        "canary errors {}/{} ({}%) vs stable {}/{} ({}%) {scope}: P(canary error rate > stable + {} points) = {} {rule}",
        fmt_num(c.errors.round()),
        fmt_num(c.requests.round()),
        fmt_num(100.0 * c.rate()),
        fmt_num(s.errors.round()),
        fmt_num(s.requests.round()),
        fmt_num(100.0 * s.rate()),
        fmt_num(tol),
        fmt_p(r.posterior),
    );
    v.test = Some(TestReport {
        test: TestKind::Counts.name().into(),
        confidence: test.confidence,
        posterior: Some(r.posterior),
        statistic: None,
        p_value: None,
        effect_size: Some(100.0 * r.difference),
        canary_samples: c.requests.round() as u64,
        stable_samples: s.requests.round() as u64,
        canary_errors: Some(c.errors.round() as u64),
        stable_errors: Some(s.errors.round() as u64),
        since,
    });
    v
}

fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let k = v.len();
    Some(if k % 2 == 1 {
        v[k / 2]
    } else {
        (v[k / 2 - 1] + v[k / 2]) / 2.0
    })
}

fn points_verdict(
    mut v: Verdict,
    ctx: &Context<'_>,
    test: &StatTest,
    c: &[f64],
    s: &[f64],
    scope: &str,
) -> Verdict {
    let u = unit_suffix(ctx.unit);
    v.value = median(c);
    v.stable_value = median(s);
    let lower = ctx.unit.lower_is_better();
    let r = match stats::mann_whitney(c, s, ctx.spec.tolerance, lower, test.confidence) {
        Ok(r) => r,
        Err(e) => {
            v.reason = format!("cannot run the Mann-Whitney test: {e}");
            return v;
        }
    };
    v.outcome = outcome_of(r.decision);
    let tol = fmt_num(ctx.spec.tolerance * 100.0);
    let dir = if lower { "higher" } else { "lower" };
    let medians = format!(
        "canary median {}{u} vs stable {}{u} over {} vs {} scrapes {scope}",
        v.value.map(fmt_num).unwrap_or_else(|| "-".into()),
        v.stable_value.map(fmt_num).unwrap_or_else(|| "-".into()),
        r.canary_points,
        r.stable_points
    );
    let alpha = fmt_num(1.0 - test.confidence);
    v.reason = match r.decision {
        Decision::Undecided => format!(
            "{medians}: the test needs at least {} scrapes with data per side at confidence {}",
            stats::min_points(test.confidence),
            fmt_num(test.confidence)
        ),
        Decision::Worse => format!(
            "{medians}: canary/stable = {} (Hodges-Lehmann), one-sided Mann-Whitney U = {}, p = {} < {alpha}: more than {tol}% {dir}",
            fmt_num(r.effect),
            fmt_num(r.u),
            fmt_p(r.p_value)
        ),
        Decision::NotWorse => format!(
            "{medians}: canary/stable = {} (Hodges-Lehmann), one-sided Mann-Whitney U = {}, p = {}: no evidence of more than {tol}% {dir}",
            fmt_num(r.effect),
            fmt_num(r.u),
            fmt_p(r.p_value)
        ),
    };
    v.test = Some(TestReport {
        test: TestKind::MannWhitney.name().into(),
        confidence: test.confidence,
        posterior: None,
        statistic: r.u.is_finite().then_some(r.u),
        p_value: r.p_value.is_finite().then_some(r.p_value),
        effect_size: r.effect.is_finite().then_some(r.effect),
        canary_samples: r.canary_points as u64,
        stable_samples: r.stable_points as u64,
        canary_errors: None,
        stable_errors: None,
        since: None,
    });
    v
}

/// A probability for a reason line: four significant digits near 0 and 1.
fn fmt_p(p: f64) -> String {
    if !p.is_finite() {
        return format!("{p}");
    }
    if p != 0.0 && p < 0.001 {
        format!("{p:.2e}")
    } else if p < 1.0 && p > 0.9999 {
        format!("1 - {:.2e}", 1.0 - p)
    } else {
        let s = format!("{p:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::Template;
    use crate::plan::MetricSource;

    fn spec(min: Option<f64>, max: Option<f64>, compare: bool, tolerance: f64) -> MetricSpec {
        MetricSpec {
            name: "m".into(),
            source: MetricSource::Template(Template::SuccessRate),
            min,
            max,
            compare_to_stable: compare,
            tolerance,
            test: None,
        }
    }

    fn side(v: f64, n: f64) -> Side {
        Side {
            reading: Reading::Value(v),
            requests: Some(n),
        }
    }

    fn run(s: &MetricSpec, unit: Unit, c: Side, st: Option<Side>) -> Verdict {
        let ctx = Context {
            spec: s,
            unit,
            min_requests: 50,
            window: Duration::from_secs(60),
        };
        judge(&ctx, "q".into(), c, st)
    }

    #[test]
    fn thresholds() {
        let s = spec(Some(99.0), None, false, 0.0);
        let v = run(&s, Unit::Percent, side(99.5, 100.0), None);
        assert_eq!(v.outcome, Outcome::Pass);
        assert_eq!(v.threshold, "min 99%");
        let v = run(&s, Unit::Percent, side(95.0, 100.0), None);
        assert_eq!(v.outcome, Outcome::Fail);
        assert_eq!(v.reason, "canary 95% is below min 99% over 1m");
        assert_eq!(v.window, "1m");
        let s = spec(None, Some(500.0), false, 0.0);
        assert_eq!(
            run(&s, Unit::Milliseconds, side(f64::INFINITY, 100.0), None).outcome,
            Outcome::Fail
        );
    }

    #[test]
    fn float_noise_does_not_flip_thresholds() {
        // 495 of 500 requests succeed: Prometheus computes 98.99999999999999 %.
        let read = 495.0 / 500.0 * 100.0 - 1e-14;
        assert!(read < 99.0);
        let s = spec(Some(99.0), None, false, 0.0);
        assert_eq!(
            run(&s, Unit::Percent, side(read, 500.0), None).outcome,
            Outcome::Pass
        );
        assert_eq!(
            run(&s, Unit::Percent, side(98.8, 500.0), None).outcome,
            Outcome::Fail
        );
        let s = spec(None, Some(500.0), false, 0.0);
        assert_eq!(
            run(&s, Unit::Milliseconds, side(500.00000000001, 500.0), None).outcome,
            Outcome::Pass
        );
        assert_eq!(
            run(&s, Unit::Milliseconds, side(500.1, 500.0), None).outcome,
            Outcome::Fail
        );
    }

    #[test]
    fn too_little_data_is_inconclusive_never_fail() {
        let s = spec(Some(99.0), None, false, 0.0);
        let v = run(&s, Unit::Percent, side(0.0, 10.0), None);
        assert_eq!(v.outcome, Outcome::Inconclusive);
        assert!(
            v.reason.contains("fewer than minRequests 50"),
            "{}",
            v.reason
        );
        let v = run(&s, Unit::Percent, side(f64::NAN, 100.0), None);
        assert_eq!(v.outcome, Outcome::Inconclusive);
        let empty = Side {
            reading: Reading::Empty,
            requests: Some(100.0),
        };
        assert_eq!(
            run(&s, Unit::Percent, empty, None).outcome,
            Outcome::Inconclusive
        );
        let none = Side {
            reading: Reading::Value(0.0),
            requests: None,
        };
        assert_eq!(
            run(&s, Unit::Percent, none, None).outcome,
            Outcome::Inconclusive
        );
        let amb = Side {
            reading: Reading::Ambiguous(2),
            requests: Some(100.0),
        };
        assert_eq!(
            run(&s, Unit::Percent, amb, None).outcome,
            Outcome::Inconclusive
        );
    }

    #[test]
    fn compare_to_stable_direction_follows_unit() {
        let s = spec(Some(90.0), None, true, 1.0);
        // Percent: higher is better.
        let v = run(
            &s,
            Unit::Percent,
            side(97.0, 100.0),
            Some(side(99.0, 100.0)),
        );
        assert_eq!(v.outcome, Outcome::Fail, "{}", v.reason);
        assert_eq!(v.stable_value, Some(99.0));
        let v = run(
            &s,
            Unit::Percent,
            side(98.5, 100.0),
            Some(side(99.0, 100.0)),
        );
        assert_eq!(v.outcome, Outcome::Pass);
        let v = run(
            &s,
            Unit::Percent,
            side(99.9, 100.0),
            Some(side(95.0, 100.0)),
        );
        assert_eq!(v.outcome, Outcome::Pass);
        // Latency: lower is better.
        let s = spec(None, Some(500.0), true, 10.0);
        let v = run(
            &s,
            Unit::Milliseconds,
            side(100.0, 100.0),
            Some(side(20.0, 100.0)),
        );
        assert_eq!(v.outcome, Outcome::Fail);
        let v = run(
            &s,
            Unit::Milliseconds,
            side(20.0, 100.0),
            Some(side(100.0, 100.0)),
        );
        assert_eq!(v.outcome, Outcome::Pass);
        // Stable without traffic: inconclusive, unless the absolute threshold already fails.
        let v = run(
            &s,
            Unit::Milliseconds,
            side(20.0, 100.0),
            Some(side(f64::NAN, 0.0)),
        );
        assert_eq!(v.outcome, Outcome::Inconclusive);
        let v = run(
            &s,
            Unit::Milliseconds,
            side(900.0, 100.0),
            Some(side(f64::NAN, 0.0)),
        );
        assert_eq!(v.outcome, Outcome::Fail);
    }
}
