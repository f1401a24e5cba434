//! Verdicts: the outcome of one metric check, with everything a user needs to see why.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Pass, Fail, or Inconclusive (no data, NaN, too few requests): Inconclusive never counts as a
/// failure; it holds the rollout where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Outcome {
    Pass,
    Fail,
    Inconclusive,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Pass => "Pass",
            Outcome::Fail => "Fail",
            Outcome::Inconclusive => "Inconclusive",
        })
    }
}

/// The result of one metric check in one analysis round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    /// The plan's metric name.
    pub metric: String,
    pub outcome: Outcome,
    /// The rendered PromQL (canary side), empty when not known (e.g. scripted verdicts).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub query: String,
    /// Canary value, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Stable value for `compareTo: stable` checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_value: Option<f64>,
    /// The unit of `value` and `stableValue` (`%`, `ms`, `/s`; empty for plain numbers).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub unit: String,
    /// The threshold as a human reads it ("min 99", "max 500", "within 0.5 of stable").
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub threshold: String,
    /// The window the values were computed over (`analysis.interval`, e.g. "1m").
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub window: String,
    /// Requests seen in the window, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<f64>,
    /// Why the outcome is what it is, in one line.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// For `test:` checks: what the statistical test computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<TestReport>,
}

/// What a statistical comparison with stable computed: enough for a reviewer to redo it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestReport {
    /// `counts` or `mann-whitney`.
    pub test: String,
    pub confidence: f64,
    /// `counts`: posterior probability that the canary's error rate exceeds the stable's by
    /// more than the tolerance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub posterior: Option<f64>,
    /// `mann-whitney`: the U statistic (pairs where the canary, tolerance applied, is worse).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statistic: Option<f64>,
    /// `mann-whitney`: the one-sided p-value of U.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// `counts`: canary minus stable error rate in percentage points; `mann-whitney`: the
    /// Hodges-Lehmann ratio canary / stable (1.5 = 50 % higher).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect_size: Option<f64>,
    /// `counts`: requests; `mann-whitney`: scrapes with a value.
    pub canary_samples: u64,
    pub stable_samples: u64,
    /// `counts`: 5xx responses among the requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_errors: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_errors: Option<u64>,
    /// `counts`: the counts are pooled from here (the start of the step) to the evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
}

impl Verdict {
    /// A verdict with only a metric name and an outcome (scripted simulations, tests).
    pub fn bare(metric: impl Into<String>, outcome: Outcome) -> Verdict {
        Verdict {
            metric: metric.into(),
            outcome,
            query: String::new(),
            value: None,
            stable_value: None,
            unit: String::new(),
            threshold: String::new(),
            window: String::new(),
            samples: None,
            reason: String::new(),
            test: None,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.metric, self.outcome)?;
        if let Some(v) = self.value {
            write!(f, " value={}", crate::units::number(v))?;
        }
        if let Some(v) = self.stable_value {
            write!(f, " stable={}", crate::units::number(v))?;
        }
        if !self.threshold.is_empty() {
            write!(f, " ({})", self.threshold)?;
        }
        if !self.reason.is_empty() {
            write!(f, ": {}", self.reason)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_reports_round_trip_and_stay_out_when_absent() {
        let mut v = Verdict::bare("errors", Outcome::Fail);
        v.test = Some(TestReport {
            test: "counts".into(),
            confidence: 0.95,
            posterior: Some(0.999),
            statistic: None,
            p_value: None,
            effect_size: Some(2.1),
            canary_samples: 1200,
            stable_samples: 10800,
            canary_errors: Some(36),
            stable_errors: Some(108),
            since: DateTime::from_timestamp(1_800_000_000, 0),
        });
        let json = serde_json::to_value(&v).expect("serializes");
        assert_eq!(json["test"]["canaryErrors"], 36);
        assert_eq!(json["test"]["since"], "2027-01-15T08:00:00Z");
        assert!(json["test"].get("pValue").is_none());
        let back: Verdict = serde_json::from_value(json).expect("deserializes");
        assert_eq!(back, v);
        // Status documents written before `test` existed still read.
        let old: Verdict =
            serde_json::from_str(r#"{"metric":"m","outcome":"Pass"}"#).expect("old form");
        assert_eq!(old.test, None);
        assert!(serde_json::to_string(&old).is_ok_and(|s| !s.contains("test")));
    }
}
