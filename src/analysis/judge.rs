//! Judging one metric check: values against `min`/`max` and, for `compareTo: stable`, against
//! the stable subset with a tolerance. Too few requests, no data or NaN give Inconclusive,
//! never Fail. Pure: no I/O.

use std::time::Duration;

use crate::analysis::template::Unit;
use crate::analysis::verdict::{Outcome, Verdict};
use crate::plan::MetricSpec;

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
    if spec.compare_to_stable {
        let dir = if unit.lower_is_better() {
            "above"
        } else {
            "below"
        };
        parts.push(format!(
            "at most {}{u} {dir} stable",
            fmt_num(spec.tolerance)
        ));
    }
    parts.join(", ")
}

/// Why a side has no usable value, if it has none.
fn unusable(side: &Side, name: &str, ctx: &Context<'_>) -> Option<String> {
    let w = humantime::format_duration(ctx.window);
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
    let w = humantime::format_duration(ctx.window);
    let mut v = Verdict::bare(spec.name.clone(), Outcome::Inconclusive);
    v.query = query;
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
        && c < min
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
        && c > max
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
