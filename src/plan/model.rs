//! The validated rollout plan: what a team asks tidegate to do, after parsing and checking.
//!
//! Every value here has passed validation (`plan::parse`): weights are in 0..=100 and never go
//! down, durations parsed, the window compiled, thresholds satisfiable. Other modules can rely on
//! that and never re-check.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::plan::template::Template;

/// `apiVersion` every plan document must carry.
pub const API_VERSION: &str = "tidegate.dev/v1alpha1";
/// `kind` every plan document must carry.
pub const KIND: &str = "Rollout";

/// Where something was written: file, 1-based line and column (0 when unknown).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Location {
    pub file: String,
    pub line: u64,
    pub column: u64,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// `namespace/name` of a rollout: the identity used in status paths, trailers and metrics.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RolloutId {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for RolloutId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One validated `Rollout` document.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub id: RolloutId,
    /// Where the document starts (its `apiVersion` line, or the document start).
    #[serde(skip)]
    pub location: Location,
    /// Destination host of the service (short name or FQDN).
    pub service: String,
    pub virtual_service: String,
    /// The DestinationRule holding the subsets; `None` when the plan splits by host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination_rule: Option<String>,
    /// Named http routes to manage; empty means "the http routes that send to `stable`".
    pub routes: Vec<String>,
    /// DestinationRule subset names, or Service hosts when `split` is [`Split::Host`].
    pub stable: String,
    pub canary: String,
    /// What `stable` and `canary` name. Left out of the digest for subsets (the original form).
    #[serde(default, skip_serializing_if = "Split::is_subset")]
    pub split: Split,
    pub steps: Vec<Step>,
    pub analysis: Analysis,
    pub window: Option<Window>,
    pub on_success: OnSuccess,
    pub notify: Vec<String>,
    /// How long a step may wait beyond its own duration (for a passing check, a read-back)
    /// before `on_deadline` applies; `None`: no bound. Left out of the digest when unset.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "humantime_serde_opt::serialize"
    )]
    pub progress_deadline: Option<Duration>,
    #[serde(default, skip_serializing_if = "OnDeadline::is_default")]
    pub on_deadline: OnDeadline,
}

impl Plan {
    /// sha256 of the plan's canonical form. Two revisions with the same digest are the same
    /// rollout (a commit that only reformatted the file does not restart it).
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let canonical = serde_json::to_string(self).unwrap_or_default();
        hex::encode(Sha256::digest(canonical.as_bytes()))
    }

    /// The canary weight the plan has reached after running steps `0..=index` (0 before any
    /// `setWeight`). This is the ceiling no traffic change at that step may exceed.
    pub fn weight_at(&self, index: usize) -> u8 {
        self.steps
            .iter()
            .take(index.saturating_add(1))
            .filter_map(|s| match s {
                Step::SetWeight(w) => Some(*w),
                _ => None,
            })
            .next_back()
            .unwrap_or(0)
    }
}

/// How a plan tells stable from canary traffic in the VirtualService's destinations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Split {
    /// `stable`/`canary` are subsets of the DestinationRule of `service` (`stable: v1`).
    #[default]
    Subset,
    /// `stable`/`canary` are Service hosts of their own (`stable: {host: orders-primary}`), as
    /// Flagger and Argo Rollouts' host-level mode split; no DestinationRule subsets involved.
    Host,
}

impl Split {
    pub fn is_subset(&self) -> bool {
        *self == Split::Subset
    }

    /// What one side is called in messages: `subset` or `host`.
    pub fn noun(self) -> &'static str {
        match self {
            Split::Subset => "subset",
            Split::Host => "host",
        }
    }
}

/// One step of a rollout, in plan order.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Step {
    /// Send this percentage of the managed routes' traffic to the canary subset.
    SetWeight(u8),
    /// Hold for the duration; advance only once it has passed and the latest check passed.
    Analyze(#[serde(with = "humantime_serde_compat")] Duration),
    /// `None`: wait for a `resume` control commit. `Some(d)`: hold like `analyze`.
    Pause(#[serde(with = "humantime_serde_opt")] Option<Duration>),
    /// Route requests matching these headers to the canary, ahead of every other route.
    SetHeaderRoute(HeaderRoute),
    /// Mirror this percentage of stable traffic to the canary.
    SetMirror(u8),
}

impl Step {
    /// The plan keyword of this step, as written by users.
    pub fn keyword(&self) -> &'static str {
        match self {
            Step::SetWeight(_) => "setWeight",
            Step::Analyze(_) => "analyze",
            Step::Pause(_) => "pause",
            Step::SetHeaderRoute(_) => "setHeaderRoute",
            Step::SetMirror(_) => "setMirror",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::SetWeight(w) => write!(f, "setWeight {w}%"),
            Step::Analyze(d) => write!(f, "analyze {}", crate::units::duration(*d)),
            Step::Pause(None) => write!(f, "pause until resumed"),
            Step::Pause(Some(d)) => write!(f, "pause {}", crate::units::duration(*d)),
            Step::SetHeaderRoute(h) => write!(f, "setHeaderRoute {h}"),
            Step::SetMirror(p) => write!(f, "setMirror {p}%"),
        }
    }
}

/// A first-match route to the canary for requests whose headers all match.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HeaderRoute {
    pub headers: BTreeMap<String, StringMatch>,
}

impl fmt::Display for HeaderRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .headers
            .iter()
            .map(|(k, m)| format!("{k} {m}"))
            .collect();
        f.write_str(&parts.join(", "))
    }
}

/// Istio `StringMatch`: exactly one of exact, prefix, regex.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    Regex(String),
}

impl fmt::Display for StringMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StringMatch::Exact(v) => write!(f, "== {v:?}"),
            StringMatch::Prefix(v) => write!(f, "starts with {v:?}"),
            StringMatch::Regex(v) => write!(f, "=~ {v:?}"),
        }
    }
}

/// `spec.analysis`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Analysis {
    #[serde(with = "humantime_serde_compat")]
    pub interval: Duration,
    /// Failed checks (over the whole rollout) that trigger a rollback.
    pub failure_limit: u32,
    /// Below this many requests in the window a check is inconclusive, not failed.
    pub min_requests: u64,
    /// How long Prometheus may be unreachable before the rollout rolls back.
    #[serde(with = "humantime_serde_compat")]
    pub unreachable_limit: Duration,
    pub metrics: Vec<MetricSpec>,
}

/// Where a metric's value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum MetricSource {
    Template(Template),
    /// Custom PromQL with `{{ variable }}` placeholders from a closed set.
    Query(String),
}

/// One metric check of `spec.analysis.metrics`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricSpec {
    pub name: String,
    pub source: MetricSource,
    /// Lowest acceptable value, in the metric's unit (percent, milliseconds, per second).
    pub min: Option<f64>,
    /// Highest acceptable value, in the metric's unit.
    pub max: Option<f64>,
    /// `compareTo: stable`: the canary may be at most `tolerance` worse than stable.
    pub compare_to_stable: bool,
    /// How much worse than stable the canary may be: in the metric's unit without `test`, in
    /// percentage points with `test: counts`, and as a fraction of stable (0.1 for `10%`) with
    /// `test: mann-whitney`.
    pub tolerance: f64,
    /// `test:`: a statistical comparison with stable instead of a plain difference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<StatTest>,
}

/// Which statistical test compares canary with stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TestKind {
    /// Error counts of both subsets pooled over the rounds of the current step.
    Counts,
    /// Per-scrape values of both subsets in the round's window.
    MannWhitney,
}

impl TestKind {
    /// The name plans use.
    pub fn name(self) -> &'static str {
        match self {
            TestKind::Counts => "counts",
            TestKind::MannWhitney => "mann-whitney",
        }
    }

    /// `confidence` when the plan gives none.
    pub fn default_confidence(self) -> f64 {
        match self {
            TestKind::Counts => super::defaults::COUNTS_CONFIDENCE,
            TestKind::MannWhitney => super::defaults::MANN_WHITNEY_CONFIDENCE,
        }
    }
}

impl fmt::Display for TestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The fewest values per side for which a one-sided rank test can reach `confidence` at all:
/// with `k` values on each side the smallest p-value is `1 / C(2k, k)`.
pub fn min_points(confidence: f64) -> usize {
    let alpha = 1.0 - confidence;
    let central = |k: usize| (0..k).fold(1.0, |acc, i| acc * (2 * k - i) as f64 / (i + 1) as f64);
    (1..=64).find(|&k| 1.0 / central(k) < alpha).unwrap_or(64)
}

/// `test:` with its settings, validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatTest {
    pub kind: TestKind,
    /// Strictly between 0.5 and 1.
    pub confidence: f64,
    /// `mann-whitney`: the scrape interval of the metrics, the step of the range query.
    #[serde(with = "humantime_serde_compat")]
    pub scrape_interval: Duration,
}

/// `spec.window`: steps advance only while `now` falls on a minute the cron pattern matches.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Window {
    /// The expression as written (5 POSIX fields).
    pub cron: String,
    /// IANA time zone the pattern is read in; UTC when absent.
    pub time_zone: Option<chrono_tz::Tz>,
    #[serde(skip)]
    pub compiled: croner::Cron,
}

impl PartialEq for Window {
    fn eq(&self, other: &Self) -> bool {
        self.cron == other.cron && self.time_zone == other.time_zone
    }
}

impl Window {
    /// Whether `now` falls inside the window (the minute containing `now` matches the pattern).
    pub fn contains(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        use chrono::Timelike;
        let minute = now
            .with_second(0)
            .and_then(|t| t.with_nanosecond(0))
            .unwrap_or(now);
        match self.time_zone {
            Some(tz) => self
                .compiled
                .is_time_matching(&minute.with_timezone(&tz))
                .unwrap_or(false),
            None => self.compiled.is_time_matching(&minute).unwrap_or(false),
        }
    }
}

/// What to do once every step has passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OnSuccess {
    /// Send 100 % to the canary and remove tidegate's header and mirror routes.
    Promote,
    /// Leave the VirtualService as the last step set it (another tool promotes).
    Keep,
}

/// What to do when a step exceeds `progressDeadline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OnDeadline {
    /// Send all traffic back to stable (Flagger's behaviour).
    #[default]
    Rollback,
    /// Hold the rollout until a person resumes, promotes or aborts it.
    Pause,
}

impl OnDeadline {
    fn is_default(&self) -> bool {
        *self == OnDeadline::Rollback
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OnDeadline::Rollback => "rollback",
            OnDeadline::Pause => "pause",
        }
    }
}

/// Serialize a `Duration` as a humantime string ("2m", "500ms").
mod humantime_serde_compat {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }
}

mod humantime_serde_opt {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.collect_str(&humantime::format_duration(*d)),
            None => s.serialize_none(),
        }
    }
}
