//! The built-in metric templates: their names as written in plans and the unit of their value.
//!
//! The PromQL each template renders to lives next to the verdict logic; this file is the
//! catalogue that plan validation checks names and thresholds against.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Unit of a metric's value, which decides how thresholds are written and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Unit {
    /// 0..=100; thresholds are plain numbers.
    Percent,
    /// Thresholds may be durations (`500ms`) or plain numbers of milliseconds.
    Milliseconds,
    /// Requests per second; thresholds are non-negative numbers.
    PerSecond,
    /// Custom PromQL: any number.
    Number,
}

impl Unit {
    /// Whether a lower value is better (latency, error counts) — used by `compareTo: stable`.
    pub fn lower_is_better(self) -> bool {
        matches!(self, Unit::Milliseconds | Unit::Number)
    }
}

/// A built-in template over Istio's standard metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Template {
    #[serde(rename = "istio-success-rate")]
    SuccessRate,
    #[serde(rename = "istio-latency-p50")]
    LatencyP50,
    #[serde(rename = "istio-latency-p90")]
    LatencyP90,
    #[serde(rename = "istio-latency-p99")]
    LatencyP99,
    #[serde(rename = "istio-request-rate")]
    RequestRate,
}

impl Template {
    /// Every built-in template, in documentation order.
    pub const ALL: [Template; 5] = [
        Template::SuccessRate,
        Template::LatencyP50,
        Template::LatencyP90,
        Template::LatencyP99,
        Template::RequestRate,
    ];

    /// The name plans use.
    pub fn name(self) -> &'static str {
        match self {
            Template::SuccessRate => "istio-success-rate",
            Template::LatencyP50 => "istio-latency-p50",
            Template::LatencyP90 => "istio-latency-p90",
            Template::LatencyP99 => "istio-latency-p99",
            Template::RequestRate => "istio-request-rate",
        }
    }

    /// Look a template up by its plan name.
    pub fn from_name(name: &str) -> Option<Template> {
        Template::ALL.into_iter().find(|t| t.name() == name)
    }

    pub fn unit(self) -> Unit {
        match self {
            Template::SuccessRate => Unit::Percent,
            Template::LatencyP50 | Template::LatencyP90 | Template::LatencyP99 => {
                Unit::Milliseconds
            }
            Template::RequestRate => Unit::PerSecond,
        }
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in Template::ALL {
            assert_eq!(Template::from_name(t.name()), Some(t));
        }
        assert_eq!(Template::from_name("istio-latency-p95"), None);
    }
}
