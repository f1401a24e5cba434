//! Batching: turn N rollouts' metric checks into few PromQL queries, and split the answers back
//! into per-rollout verdicts. Pure: the metrics adapter only executes the queries.
//!
//! Built-in templates are batched: one query per (template, window, subset label, reporter)
//! covers every rollout using it, grouped by service, namespace and subset label, plus one
//! request-count query per (window, subset label, reporter) for `minRequests`. Statistical
//! tests add range queries, batched the same way: one per (window, subset label, reporter) for
//! the pooled request counts of `test: counts`, and one per (template, scrape interval, window,
//! subset label, reporter) for the per-scrape values of `test: mann-whitney`. Custom queries
//! cannot be merged, so each is run per rollout and side (identical renderings run once).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::analysis::judge::{self, Reading, Side, TestData, TestSide};
use crate::analysis::render::{self, QueryVars, RenderError, SubsetVars};
use crate::analysis::stats::Counts;
use crate::analysis::subset::{SubsetError, SubsetLabels, SubsetMapping};
use crate::analysis::template::{Template, Unit};
use crate::analysis::verdict::{Outcome, Verdict};
use crate::plan::{Analysis, MetricSource, MetricSpec, Plan, RolloutId, Split, TestKind};

/// Istio reporter used when none is configured: the server-side proxy.
pub const DEFAULT_REPORTER: &str = "destination";

/// `test: counts` pools at most this many rounds (the newest), which also bounds the range
/// query of a rollout that sits in one step for hours.
pub const POOL_MAX_ROUNDS: u32 = 120;

/// Why a query could not be answered. A bounded set: usable as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Could not connect, or the server answered with a non-API error (5xx proxy page, …).
    Unreachable,
    /// The request or the query evaluation timed out.
    Timeout,
    /// Prometheus rejected the query (syntax, bad parameter).
    BadQuery,
    /// The answer could not be decoded or had an unexpected shape.
    BadData,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 4] = [
        ErrorKind::Unreachable,
        ErrorKind::Timeout,
        ErrorKind::BadQuery,
        ErrorKind::BadData,
    ];

    /// The metric-label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::BadQuery => "bad_query",
            ErrorKind::BadData => "bad_data",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed query, as the splitter sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueryFailure {
    pub kind: ErrorKind,
    pub message: String,
}

/// One series of an instant-query answer (a scalar answer is one series without labels).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// One series of a range-query answer: values at the evaluation times.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RangeSeries {
    pub labels: BTreeMap<String, String>,
    pub points: Vec<(DateTime<Utc>, f64)>,
}

/// The answer to one query: an instant vector, or a matrix for range queries.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Answer {
    Vector(Vec<Series>),
    Matrix(Vec<RangeSeries>),
}

/// Which evaluation times a range query covers, relative to the evaluation time `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// `points` evaluations `step` apart, the last at `end`.
    Window { step: Duration, points: u32 },
    /// Evaluations `step` apart, the last at `end`, reaching back to `since` (the oldest step
    /// start among the rollouts; at most `POOL_MAX_ROUNDS` evaluations; `None`: only `end`).
    Since {
        step: Duration,
        since: Option<DateTime<Utc>>,
    },
}

impl RangeSpec {
    /// Start, end and step of the range query evaluated at `end`.
    pub fn bounds(&self, end: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>, Duration) {
        let (step, count) = match *self {
            RangeSpec::Window { step, points } => (step, points.max(1) - 1),
            RangeSpec::Since { step, since } => {
                let back = since
                    .and_then(|s| (end - s).to_std().ok())
                    .map(|d| d.as_secs_f64() / step.as_secs_f64().max(1e-3))
                    .unwrap_or(0.0);
                (step, (back.ceil() as u32).min(POOL_MAX_ROUNDS - 1))
            }
        };
        let span = chrono::Duration::from_std(step * count).unwrap_or_default();
        (end - span, end, step)
    }
}

/// One query of a tick: PromQL, and for range queries which times it covers.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub promql: String,
    pub range: Option<RangeSpec>,
}

/// Why a plan cannot be turned into an analysis target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("rollout {id}: {source}")]
    Subset {
        id: RolloutId,
        #[source]
        source: Box<SubsetError>,
    },
}

/// One active rollout, as the analysis sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub id: RolloutId,
    /// `destination_service_name`.
    pub service: String,
    /// `destination_service_namespace`.
    pub namespace: String,
    pub reporter: String,
    pub subsets: SubsetMapping,
    pub analysis: Analysis,
    /// When the current step began: `test: counts` pools the rounds since then. `None` pools
    /// only the latest round.
    pub since: Option<DateTime<Utc>>,
}

/// Split a destination host (`reviews`, `reviews.shop`, `reviews.shop.svc.cluster.local`) into
/// service name and namespace; a short name lives in `default_namespace`.
pub fn split_host(host: &str, default_namespace: &str) -> (String, String) {
    let mut parts = host.split('.');
    let name = parts.next().unwrap_or_default().to_string();
    let ns = parts
        .next()
        .filter(|n| !n.is_empty())
        .unwrap_or(default_namespace)
        .to_string();
    (name, ns)
}

impl Target {
    /// The target of `plan`; `step_started_at` is the start of the rollout's current step
    /// (the status' `stepStartedAt`), from which `test: counts` pools its counts.
    pub fn from_plan(
        plan: &Plan,
        subsets: &SubsetLabels,
        reporter: &str,
        step_started_at: Option<DateTime<Utc>>,
    ) -> Result<Target, TargetError> {
        let (mapping, side_host) = match plan.split {
            Split::Host => (
                SubsetMapping::hosts(&plan.canary, &plan.stable),
                &plan.canary,
            ),
            Split::Subset => (
                subsets
                    .mapping(&plan.canary, &plan.stable)
                    .map_err(|source| TargetError::Subset {
                        id: plan.id.clone(),
                        source: Box::new(source),
                    })?,
                &plan.service,
            ),
        };
        let service = split_host(&plan.service, &plan.id.namespace).0;
        let namespace = split_host(side_host, &plan.id.namespace).1;
        Ok(Target {
            id: plan.id.clone(),
            service,
            namespace,
            reporter: reporter.to_string(),
            subsets: mapping,
            analysis: plan.analysis.clone(),
            since: step_started_at,
        })
    }

    /// The `destination_service_name` of one side: the service for subsets, the side's own
    /// Service for a host-level split.
    pub fn service_of(&self, stable: bool) -> &str {
        match (self.subsets.by_host(), stable) {
            (false, _) => &self.service,
            (true, true) => &self.subsets.stable.value,
            (true, false) => &self.subsets.canary.value,
        }
    }

    fn vars(&self, evaluate_stable: bool) -> QueryVars<'_> {
        QueryVars {
            service: self.service_of(evaluate_stable),
            namespace: &self.namespace,
            reporter: &self.reporter,
            window: self.analysis.interval,
            subset_label: self.subsets.metric_label,
            canary: SubsetVars {
                name: &self.subsets.canary.name,
                value: &self.subsets.canary.value,
                labels: &self.subsets.canary.labels,
            },
            stable: SubsetVars {
                name: &self.subsets.stable.name,
                value: &self.subsets.stable.value,
                labels: &self.subsets.stable.labels,
            },
            evaluate_stable,
        }
    }

    /// The query for one check and side that a user can paste into Prometheus: the same
    /// template as the batched query, with exact matchers for this rollout only. For `test:`
    /// checks it is the range query's expression (pooled counts, or per-scrape values).
    pub fn display_query(&self, spec: &MetricSpec, stable: bool) -> Result<String, RenderError> {
        let side = if stable {
            &self.subsets.stable
        } else {
            &self.subsets.canary
        };
        let label = self.subsets.metric_label;
        match &spec.source {
            MetricSource::Template(t) => {
                let m = render::exact_matchers(
                    &self.reporter,
                    &self.namespace,
                    self.service_of(stable),
                    label,
                    &side.value,
                );
                let w = self.analysis.interval;
                Ok(match &spec.test {
                    Some(s) if s.kind == TestKind::Counts => render::counts_by_code(&m, label, w),
                    Some(s) => render::per_scrape(*t, &m, label, s.scrape_interval),
                    None => render::template(*t, &m, label, w),
                })
            }
            MetricSource::Query(q) => render::render_query(q, &self.vars(stable)),
        }
    }
}

/// What a batched query computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Kind {
    Template(Template),
    RequestCount,
    /// Range query: requests per response code per round (`test: counts`).
    Pooled,
    /// Range query: a template's value per scrape (`test: mann-whitney`).
    PerScrape(Template, Duration),
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct BatchKey {
    kind: Kind,
    window: Duration,
    label: &'static str,
    reporter: String,
}

impl BatchKey {
    fn of(t: &Target, kind: Kind) -> BatchKey {
        BatchKey {
            kind,
            window: t.analysis.interval,
            label: t.subsets.metric_label,
            reporter: t.reporter.clone(),
        }
    }

    fn render(&self, g: &BatchGroup) -> Query {
        let m = render::batch_matchers(
            &self.reporter,
            g.namespaces.iter().map(String::as_str),
            g.services.iter().map(String::as_str),
            self.label,
            g.values.iter().map(String::as_str),
        );
        let (promql, range) = match self.kind {
            Kind::Template(t) => (render::template(t, &m, self.label, self.window), None),
            Kind::RequestCount => (render::request_count(&m, self.label, self.window), None),
            Kind::Pooled => (
                render::counts_by_code(&m, self.label, self.window),
                Some(RangeSpec::Since {
                    step: self.window,
                    since: g.since,
                }),
            ),
            Kind::PerScrape(t, scrape) => {
                let points = (self.window.as_secs_f64() / scrape.as_secs_f64()).floor();
                (
                    render::per_scrape(t, &m, self.label, scrape),
                    Some(RangeSpec::Window {
                        step: scrape,
                        points: (points as u32).max(1),
                    }),
                )
            }
        };
        Query { promql, range }
    }
}

#[derive(Debug, Default)]
struct BatchGroup {
    namespaces: BTreeSet<String>,
    services: BTreeSet<String>,
    values: BTreeSet<String>,
    /// The oldest step start of the rollouts in the group (pooled counts only).
    since: Option<DateTime<Utc>>,
}

impl BatchGroup {
    fn add(&mut self, t: &Target, both: bool) {
        self.namespaces.insert(t.namespace.clone());
        self.services.insert(t.service_of(false).to_string());
        self.values.insert(t.subsets.canary.value.clone());
        if both {
            self.services.insert(t.service_of(true).to_string());
            self.values.insert(t.subsets.stable.value.clone());
        }
        if let Some(s) = t.since {
            self.since = Some(self.since.map_or(s, |old| old.min(s)));
        }
    }
}

/// Where one side of a check gets its value.
#[derive(Debug, Clone, PartialEq)]
enum Source {
    /// A batched query: pick the series of (namespace, service, subset value).
    Batch(usize),
    /// A custom query's own answer (one series expected).
    Custom(usize),
    /// The custom query could not be rendered.
    Unrenderable(String),
}

#[derive(Debug, Clone, PartialEq)]
struct Slot {
    spec: MetricSpec,
    unit: Unit,
    canary: Source,
    stable: Option<Source>,
    /// The request-count query for this target's (window, label, reporter).
    count: usize,
    display: String,
    display_stable: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
struct TargetSlots {
    target: Target,
    slots: Vec<Slot>,
}

/// The queries of one tick and how to split their answers per rollout.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchPlan {
    /// Queries to run, each once, in this order.
    pub queries: Vec<Query>,
    targets: Vec<TargetSlots>,
}

/// One check's outcome for a rollout, or why it has none this tick.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckError {
    pub metric: String,
    pub kind: ErrorKind,
    pub message: String,
    /// The rendered query that failed (canary side).
    pub query: String,
}

/// A rollout's results for one tick.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutResult {
    pub id: RolloutId,
    pub verdicts: Vec<Verdict>,
    /// Checks that could not be evaluated because a query failed.
    pub errors: Vec<CheckError>,
    /// Rendered stable-side queries of `compareTo: stable` checks, by metric name.
    pub stable_queries: BTreeMap<String, String>,
}

impl RolloutResult {
    /// Whether the metrics source failed for any check (the engine holds, then rolls back
    /// past `unreachableLimit`).
    pub fn unreachable(&self) -> bool {
        !self.errors.is_empty()
    }

    /// Fail if any check failed, else Inconclusive if any was inconclusive or errored, else Pass.
    pub fn outcome(&self) -> Outcome {
        if self.verdicts.iter().any(|v| v.outcome == Outcome::Fail) {
            Outcome::Fail
        } else if !self.errors.is_empty()
            || self
                .verdicts
                .iter()
                .any(|v| v.outcome == Outcome::Inconclusive)
        {
            Outcome::Inconclusive
        } else {
            Outcome::Pass
        }
    }
}

/// A check before query indexes are known: spec, unit, canary and stable sources.
type PendingCheck = (MetricSpec, Unit, PendingSource, Option<PendingSource>);

#[derive(Debug, Clone)]
enum PendingSource {
    Batch(BatchKey),
    Custom(usize),
    Unrenderable(String),
}

/// The first pass of planning: batch groups, custom queries and each target's checks.
#[derive(Default)]
struct Collector {
    groups: BTreeMap<BatchKey, BatchGroup>,
    custom: BTreeMap<String, usize>,
    custom_order: Vec<String>,
}

impl Collector {
    fn batched(&mut self, t: &Target, kind: Kind, both: bool) -> PendingSource {
        let k = BatchKey::of(t, kind);
        self.groups.entry(k.clone()).or_default().add(t, both);
        PendingSource::Batch(k)
    }

    fn custom(&mut self, t: &Target, spec: &MetricSpec, stable: bool) -> PendingSource {
        match t.display_query(spec, stable) {
            Ok(q) => {
                let next = self.custom_order.len();
                let i = *self.custom.entry(q.clone()).or_insert(next);
                if i == next {
                    self.custom_order.push(q);
                }
                PendingSource::Custom(i)
            }
            Err(e) => PendingSource::Unrenderable(e.to_string()),
        }
    }

    fn check(&mut self, t: &Target, spec: &MetricSpec) -> PendingCheck {
        let both = spec.compare_to_stable;
        match (&spec.source, &spec.test) {
            (MetricSource::Template(tpl), test) => {
                let kind = match test {
                    Some(s) if s.kind == TestKind::Counts => Kind::Pooled,
                    Some(s) => Kind::PerScrape(*tpl, s.scrape_interval),
                    None => Kind::Template(*tpl),
                };
                let src = self.batched(t, kind, both);
                (spec.clone(), tpl.unit(), src.clone(), both.then_some(src))
            }
            (MetricSource::Query(_), _) => {
                let c = self.custom(t, spec, false);
                let s = both.then(|| self.custom(t, spec, true));
                (spec.clone(), Unit::Number, c, s)
            }
        }
    }
}

/// Plan the queries of one tick for `targets`.
pub fn plan(targets: &[Target]) -> BatchPlan {
    let mut c = Collector::default();
    let mut pending: Vec<(&Target, Vec<PendingCheck>)> = Vec::new();
    for t in targets {
        // Request counts are needed for both sides whenever any check compares to stable.
        let any_compare = t.analysis.metrics.iter().any(|m| m.compare_to_stable);
        c.batched(t, Kind::RequestCount, any_compare);
        let checks = t.analysis.metrics.iter().map(|s| c.check(t, s)).collect();
        pending.push((t, checks));
    }
    let mut queries = Vec::new();
    let mut batch_index: HashMap<BatchKey, usize> = HashMap::new();
    for (k, g) in &c.groups {
        batch_index.insert(k.clone(), queries.len());
        queries.push(k.render(g));
    }
    let custom_base = queries.len();
    queries.extend(c.custom_order.into_iter().map(|promql| Query {
        promql,
        range: None,
    }));
    let resolve = |p: PendingSource| match p {
        PendingSource::Batch(k) => Source::Batch(batch_index.get(&k).copied().unwrap_or(0)),
        PendingSource::Custom(i) => Source::Custom(custom_base + i),
        PendingSource::Unrenderable(e) => Source::Unrenderable(e),
    };
    let targets = pending
        .into_iter()
        .map(|(t, checks)| {
            let key = BatchKey::of(t, Kind::RequestCount);
            let count = batch_index.get(&key).copied().unwrap_or(0);
            let slots = checks
                .into_iter()
                .map(|(spec, unit, c, s)| Slot {
                    unit,
                    canary: resolve(c),
                    display: t.display_query(&spec, false).unwrap_or_default(),
                    display_stable: s
                        .is_some()
                        .then(|| t.display_query(&spec, true).unwrap_or_default()),
                    stable: s.map(resolve),
                    count,
                    spec,
                })
                .collect();
            TargetSlots {
                target: t.clone(),
                slots,
            }
        })
        .collect();
    BatchPlan { queries, targets }
}

/// (namespace, service, subset value): how every batched answer is split per rollout.
type Key<'a> = (&'a str, &'a str, &'a str);

fn key_of<'a>(labels: &'a BTreeMap<String, String>, label: &str) -> Key<'a> {
    let get = |k: &str| labels.get(k).map(String::as_str).unwrap_or_default();
    (
        get("destination_service_namespace"),
        get("destination_service_name"),
        get(label),
    )
}

/// One batched answer indexed by subset: an instant value (and how many series had that
/// key), or the range series of that key.
enum Indexed<'a> {
    Vector(HashMap<Key<'a>, (f64, usize)>),
    Matrix(HashMap<Key<'a>, Vec<&'a RangeSeries>>),
}

fn index<'a>(answer: &'a Answer, label: &str) -> Indexed<'a> {
    match answer {
        Answer::Vector(series) => {
            let mut out: HashMap<Key<'a>, (f64, usize)> = HashMap::new();
            for s in series {
                let e = out.entry(key_of(&s.labels, label)).or_insert((s.value, 0));
                e.0 = s.value;
                e.1 += 1;
            }
            Indexed::Vector(out)
        }
        Answer::Matrix(series) => {
            let mut out: HashMap<Key<'a>, Vec<&'a RangeSeries>> = HashMap::new();
            for s in series {
                out.entry(key_of(&s.labels, label)).or_default().push(s);
            }
            Indexed::Matrix(out)
        }
    }
}

/// The pooled counts of one subset: the rounds whose window lies at least half after `since`,
/// and always the newest round.
fn pooled(series: &[&RangeSeries], since: Option<DateTime<Utc>>, step: Duration) -> Counts {
    let newest = series
        .iter()
        .flat_map(|s| s.points.iter().map(|(t, _)| *t))
        .max();
    let half = chrono::Duration::from_std(step / 2).unwrap_or_default();
    let keep = |t: DateTime<Utc>| Some(t) == newest || since.is_some_and(|s| t - half >= s);
    let mut c = Counts {
        requests: 0.0,
        errors: 0.0,
    };
    for s in series {
        let is_error = s
            .labels
            .get("response_code")
            .is_some_and(|code| code.starts_with('5'));
        for (t, v) in &s.points {
            if keep(*t) && v.is_finite() {
                c.requests += v;
                if is_error {
                    c.errors += v;
                }
            }
        }
    }
    c
}

/// Reads one rollout's values out of the tick's answers.
struct Reader<'a> {
    answers: &'a [Result<Answer, QueryFailure>],
    indexes: &'a HashMap<(usize, &'static str), Indexed<'a>>,
    target: &'a Target,
}

const MISSING: &str = "no answer for query";

impl<'a> Reader<'a> {
    fn key(&self, stable: bool) -> Key<'a> {
        let t = self.target;
        let v = if stable {
            &t.subsets.stable.value
        } else {
            &t.subsets.canary.value
        };
        (t.namespace.as_str(), t.service_of(stable), v.as_str())
    }

    fn answer(&self, i: usize) -> Result<&'a Answer, QueryFailure> {
        match self.answers.get(i) {
            Some(Ok(a)) => Ok(a),
            Some(Err(e)) => Err(e.clone()),
            None => Err(QueryFailure {
                kind: ErrorKind::BadData,
                message: MISSING.into(),
            }),
        }
    }

    fn shape_error(&self) -> QueryFailure {
        QueryFailure {
            kind: ErrorKind::BadData,
            message: "the answer has the wrong shape (instant vector and range matrix mixed up)"
                .into(),
        }
    }

    fn indexed(&self, i: usize) -> Result<&'a Indexed<'a>, QueryFailure> {
        self.answer(i)?;
        let label = self.target.subsets.metric_label;
        self.indexes
            .get(&(i, label))
            .ok_or_else(|| self.shape_error())
    }

    fn reading(&self, src: &Source, stable: bool) -> Result<Reading, QueryFailure> {
        match src {
            Source::Unrenderable(e) => Err(QueryFailure {
                kind: ErrorKind::BadQuery,
                message: e.clone(),
            }),
            Source::Batch(i) => match self.indexed(*i)? {
                Indexed::Vector(ix) => Ok(match ix.get(&self.key(stable)) {
                    None => Reading::Empty,
                    Some((_, n)) if *n > 1 => Reading::Ambiguous(*n),
                    Some((v, _)) => Reading::Value(*v),
                }),
                Indexed::Matrix(_) => Err(self.shape_error()),
            },
            Source::Custom(i) => match self.answer(*i)? {
                Answer::Vector(series) => Ok(match series.as_slice() {
                    [] => Reading::Empty,
                    [one] => Reading::Value(one.value),
                    many => Reading::Ambiguous(many.len()),
                }),
                Answer::Matrix(_) => Err(self.shape_error()),
            },
        }
    }

    fn requests(&self, count: usize, stable: bool) -> Result<Option<f64>, QueryFailure> {
        Ok(match self.reading(&Source::Batch(count), stable)? {
            Reading::Value(v) => Some(v),
            _ => None,
        })
    }

    fn series(&self, src: &Source, stable: bool) -> Result<Vec<&'a RangeSeries>, QueryFailure> {
        let Source::Batch(i) = src else {
            return Err(self.shape_error());
        };
        match self.indexed(*i)? {
            Indexed::Matrix(ix) => Ok(ix.get(&self.key(stable)).cloned().unwrap_or_default()),
            Indexed::Vector(_) => Err(self.shape_error()),
        }
    }

    /// One side of a `test:` check.
    fn test_side(&self, slot: &Slot, src: &Source, stable: bool) -> Result<TestSide, QueryFailure> {
        let series = self.series(src, stable)?;
        let kind = slot.spec.test.as_ref().map(|t| t.kind);
        Ok(if kind == Some(TestKind::Counts) {
            let c = pooled(&series, self.target.since, self.target.analysis.interval);
            TestSide {
                requests: c.requests,
                data: TestData::Counts(c),
            }
        } else {
            let mut points: Vec<(DateTime<Utc>, f64)> = series
                .iter()
                .flat_map(|s| s.points.iter().copied())
                .filter(|(_, v)| !v.is_nan())
                .collect();
            points.sort_by_key(|(t, _)| *t);
            TestSide {
                requests: self.requests(slot.count, stable)?.unwrap_or(0.0),
                data: TestData::Points(points.into_iter().map(|(_, v)| v).collect()),
            }
        })
    }

    fn verdict(&self, slot: &Slot) -> Result<Verdict, QueryFailure> {
        let t = self.target;
        let ctx = judge::Context {
            spec: &slot.spec,
            unit: slot.unit,
            min_requests: t.analysis.min_requests,
            window: t.analysis.interval,
        };
        if let (Some(test), Some(stable_src)) = (&slot.spec.test, &slot.stable) {
            let canary = self.test_side(slot, &slot.canary, false)?;
            let stable = self.test_side(slot, stable_src, true)?;
            return Ok(judge::judge_test(
                &ctx,
                test,
                slot.display.clone(),
                canary,
                stable,
                t.since,
            ));
        }
        let canary = Side {
            reading: self.reading(&slot.canary, false)?,
            requests: self.requests(slot.count, false)?,
        };
        let stable = match &slot.stable {
            Some(src) => Some(Side {
                reading: self.reading(src, true)?,
                requests: self.requests(slot.count, true)?,
            }),
            None => None,
        };
        Ok(judge::judge(&ctx, slot.display.clone(), canary, stable))
    }
}

impl BatchPlan {
    /// Number of rollouts planned.
    pub fn rollouts(&self) -> usize {
        self.targets.len()
    }

    /// Index each batched answer once per subset label it is read with.
    fn indexes<'a>(
        &self,
        answers: &'a [Result<Answer, QueryFailure>],
    ) -> HashMap<(usize, &'static str), Indexed<'a>> {
        let mut indexes = HashMap::new();
        for ts in &self.targets {
            let label = ts.target.subsets.metric_label;
            for slot in &ts.slots {
                let count = Source::Batch(slot.count);
                for src in [Some(&slot.canary), slot.stable.as_ref(), Some(&count)]
                    .into_iter()
                    .flatten()
                {
                    if let Source::Batch(i) = src
                        && let Some(Ok(answer)) = answers.get(*i)
                    {
                        indexes
                            .entry((*i, label))
                            .or_insert_with(|| index(answer, label));
                    }
                }
            }
        }
        indexes
    }

    /// Split the answers (one per query, in `queries` order) into per-rollout results.
    pub fn split(&self, answers: &[Result<Answer, QueryFailure>]) -> Vec<RolloutResult> {
        let indexes = self.indexes(answers);
        self.targets
            .iter()
            .map(|ts| {
                let reader = Reader {
                    answers,
                    indexes: &indexes,
                    target: &ts.target,
                };
                let mut result = RolloutResult {
                    id: ts.target.id.clone(),
                    verdicts: Vec::new(),
                    errors: Vec::new(),
                    stable_queries: BTreeMap::new(),
                };
                for slot in &ts.slots {
                    if let Some(q) = &slot.display_stable {
                        result
                            .stable_queries
                            .insert(slot.spec.name.clone(), q.clone());
                    }
                    match reader.verdict(slot) {
                        Ok(v) => result.verdicts.push(v),
                        Err(e) => result.errors.push(CheckError {
                            metric: slot.spec.name.clone(),
                            kind: e.kind,
                            message: e.message,
                            query: slot.display.clone(),
                        }),
                    }
                }
                result
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::subset::SubsetLabels;

    fn target(name: &str, ns: &str, canary: &str, metrics: Vec<MetricSpec>) -> Target {
        Target {
            id: RolloutId {
                namespace: ns.into(),
                name: name.into(),
            },
            service: name.into(),
            namespace: ns.into(),
            reporter: DEFAULT_REPORTER.into(),
            subsets: SubsetLabels::fallback()
                .mapping(canary, "v1")
                .expect("fallback maps"),
            analysis: Analysis {
                interval: Duration::from_secs(60),
                failure_limit: 1,
                min_requests: 10,
                unreachable_limit: Duration::from_secs(300),
                metrics,
            },
            since: None,
        }
    }

    fn m(
        name: &str,
        source: MetricSource,
        min: Option<f64>,
        max: Option<f64>,
        cmp: bool,
    ) -> MetricSpec {
        MetricSpec {
            name: name.into(),
            source,
            min,
            max,
            compare_to_stable: cmp,
            tolerance: 1.0,
            test: None,
        }
    }

    fn standard() -> Vec<MetricSpec> {
        vec![
            m(
                "sr",
                MetricSource::Template(Template::SuccessRate),
                Some(99.0),
                None,
                true,
            ),
            m(
                "p99",
                MetricSource::Template(Template::LatencyP99),
                None,
                Some(500.0),
                false,
            ),
        ]
    }

    fn series(ns: &str, svc: &str, v: &str, value: f64) -> Series {
        Series {
            labels: BTreeMap::from([
                ("destination_service_namespace".into(), ns.into()),
                ("destination_service_name".into(), svc.into()),
                ("destination_version".into(), v.into()),
            ]),
            value,
        }
    }

    #[test]
    fn query_count_is_flat_in_the_number_of_rollouts() {
        for n in [1, 10, 1000] {
            let targets: Vec<Target> = (0..n)
                .map(|i| target(&format!("svc{i}"), "shop", "v2", standard()))
                .collect();
            let p = plan(&targets);
            // success rate + p99 + request count.
            assert_eq!(p.queries.len(), 3, "n={n}");
            assert_eq!(p.rollouts(), n);
        }
    }

    #[test]
    fn splits_answers_per_rollout() {
        let targets = vec![
            target("a", "shop", "v2", standard()),
            target("b", "shop", "v3", standard()),
        ];
        let p = plan(&targets);
        let idx = |needle: &str| {
            p.queries
                .iter()
                .position(|q| q.promql.contains(needle))
                .expect("query present")
        };
        let sr = idx("response_code");
        let p99 = idx("histogram_quantile");
        let count = idx("increase(");
        let mut answers: Vec<Result<Answer, QueryFailure>> = vec![Ok(Answer::Vector(vec![])); 3];
        answers[sr] = Ok(Answer::Vector(vec![
            series("shop", "a", "v2", 99.5),
            series("shop", "a", "v1", 100.0),
            series("shop", "b", "v3", 95.0),
            series("shop", "b", "v1", 100.0),
        ]));
        answers[p99] = Ok(Answer::Vector(vec![series("shop", "a", "v2", 20.0)]));
        answers[count] = Ok(Answer::Vector(vec![
            series("shop", "a", "v2", 100.0),
            series("shop", "a", "v1", 100.0),
            series("shop", "b", "v3", 100.0),
            series("shop", "b", "v1", 100.0),
        ]));
        let r = p.split(&answers);
        assert_eq!(r.len(), 2);
        let outcomes = |r: &RolloutResult| r.verdicts.iter().map(|v| v.outcome).collect::<Vec<_>>();
        assert_eq!(outcomes(&r[0]), vec![Outcome::Pass, Outcome::Pass]);
        assert_eq!(r[0].outcome(), Outcome::Pass);
        // b: success rate fails; p99 has no data → inconclusive.
        assert_eq!(outcomes(&r[1]), vec![Outcome::Fail, Outcome::Inconclusive]);
        assert_eq!(r[1].verdicts[0].stable_value, Some(100.0));
        assert!(
            r[1].verdicts[0]
                .query
                .contains("destination_version=\"v3\"")
        );
        assert!(r[1].stable_queries["sr"].contains("destination_version=\"v1\""));
        assert_eq!(r[1].outcome(), Outcome::Fail);
    }

    #[test]
    fn a_host_level_split_is_judged_by_service_name() {
        let mut t = target("podinfo", "test", "v2", standard());
        t.subsets =
            SubsetMapping::hosts("podinfo-canary.test.svc.cluster.local", "podinfo-primary");
        let custom = MetricSource::Query(
            "sum(rate(errors_total{service=\"{{ service }}\"}[{{ interval }}]))".into(),
        );
        t.analysis
            .metrics
            .push(m("e", custom, None, Some(5.0), true));
        let p = plan(&[t]);
        for q in &p.queries {
            assert!(!q.promql.contains("destination_version"), "{}", q.promql);
        }
        let sr = p
            .queries
            .iter()
            .position(|q| q.promql.contains("response_code"))
            .expect("success rate");
        assert!(
            p.queries[sr]
                .promql
                .contains("destination_service_name=~\"podinfo-canary|podinfo-primary\"}")
                && p.queries[sr]
                    .promql
                    .contains("sum by (destination_service_namespace, destination_service_name)"),
            "{}",
            p.queries[sr].promql
        );
        let host = |svc: &str, value: f64| Series {
            labels: BTreeMap::from([
                ("destination_service_namespace".into(), "test".into()),
                ("destination_service_name".into(), svc.into()),
            ]),
            value,
        };
        let answers: Vec<Result<Answer, QueryFailure>> = p
            .queries
            .iter()
            .map(|q| {
                Ok(Answer::Vector(if q.promql.contains("errors_total") {
                    let v = if q.promql.contains("podinfo-canary") {
                        9.0
                    } else {
                        1.0
                    };
                    vec![Series {
                        labels: BTreeMap::new(),
                        value: v,
                    }]
                } else if q.promql.contains("response_code") {
                    vec![host("podinfo-canary", 90.0), host("podinfo-primary", 100.0)]
                } else {
                    vec![
                        host("podinfo-canary", 200.0),
                        host("podinfo-primary", 200.0),
                    ]
                }))
            })
            .collect();
        let r = &p.split(&answers)[0];
        let by_name = |n: &str| r.verdicts.iter().find(|v| v.metric == n).expect("verdict");
        assert_eq!(by_name("sr").outcome, Outcome::Fail);
        assert_eq!(by_name("sr").value, Some(90.0));
        assert_eq!(by_name("sr").stable_value, Some(100.0));
        assert_eq!(by_name("e").value, Some(9.0));
        assert_eq!(by_name("e").stable_value, Some(1.0));
        assert!(
            by_name("sr")
                .query
                .contains("destination_service_name=\"podinfo-canary\"}"),
            "{}",
            by_name("sr").query
        );
        assert!(r.stable_queries["e"].contains("service=\"podinfo-primary\""));
    }

    #[test]
    fn failures_become_classified_check_errors() {
        let targets = vec![target("a", "shop", "v2", standard())];
        let p = plan(&targets);
        let answers: Vec<Result<Answer, QueryFailure>> = p
            .queries
            .iter()
            .map(|_| {
                Err(QueryFailure {
                    kind: ErrorKind::Unreachable,
                    message: "connection refused".into(),
                })
            })
            .collect();
        let r = p.split(&answers);
        assert!(r[0].unreachable());
        assert_eq!(r[0].errors.len(), 2);
        assert!(r[0].errors.iter().all(|e| e.kind == ErrorKind::Unreachable));
        assert_eq!(r[0].outcome(), Outcome::Inconclusive);
    }

    #[test]
    fn custom_queries_run_per_rollout_and_dedupe() {
        let q = MetricSource::Query(
            "sum(rate(errors_total{svc=\"{{ service }}\", v=\"{{ version }}\"}[{{ interval }}]))"
                .into(),
        );
        let bad = MetricSource::Query("x{a=\"{{ canary.team }}\"}".into());
        let targets = vec![
            target(
                "a",
                "shop",
                "v2",
                vec![m("e", q.clone(), None, Some(5.0), true)],
            ),
            target(
                "a",
                "shop",
                "v2",
                vec![
                    m("e", q, None, Some(5.0), false),
                    m("bad", bad, None, None, false),
                ],
            ),
        ];
        let p = plan(&targets);
        // count + canary + stable rendering (the second rollout's canary is the same string).
        assert_eq!(p.queries.len(), 3, "{:#?}", p.queries);
        assert!(p.queries.iter().any(|q| q.promql.contains("v=\"v1\"")));
        let count = p
            .queries
            .iter()
            .position(|q| q.promql.contains("increase("))
            .expect("count");
        let answers: Vec<Result<Answer, QueryFailure>> = p
            .queries
            .iter()
            .enumerate()
            .map(|(i, q)| {
                Ok(Answer::Vector(if i == count {
                    vec![
                        series("shop", "a", "v2", 50.0),
                        series("shop", "a", "v1", 50.0),
                    ]
                } else if q.promql.contains("v=\"v2\"") {
                    vec![Series {
                        labels: BTreeMap::new(),
                        value: 9.0,
                    }]
                } else {
                    vec![Series {
                        labels: BTreeMap::new(),
                        value: 1.0,
                    }]
                }))
            })
            .collect();
        let r = p.split(&answers);
        assert_eq!(r[0].verdicts[0].outcome, Outcome::Fail);
        assert_eq!(r[1].verdicts[0].outcome, Outcome::Fail);
        assert_eq!(r[1].errors.len(), 1);
        assert_eq!(r[1].errors[0].kind, ErrorKind::BadQuery);
        assert!(
            r[1].errors[0].message.contains("no label \"team\""),
            "{}",
            r[1].errors[0].message
        );
    }

    #[test]
    fn plan_reference_example_renders_without_a_destination_rule() {
        let q = "sum(rate(checkout_errors_total{version=\"{{ canary.version }}\", s=\"{{ stable.subset }}\"}[{{ interval }}]))";
        let spec = m("e", MetricSource::Query(q.into()), None, Some(1.0), false);
        let t = target("a", "shop", "v2", vec![spec.clone()]);
        assert_eq!(
            t.display_query(&spec, false).expect("renders"),
            "sum(rate(checkout_errors_total{version=\"v2\", s=\"v1\"}[60s]))"
        );
    }

    fn stat(kind: TestKind, tolerance: f64) -> MetricSpec {
        let tpl = if kind == TestKind::Counts {
            Template::SuccessRate
        } else {
            Template::LatencyP99
        };
        MetricSpec {
            name: kind.name().into(),
            source: MetricSource::Template(tpl),
            min: None,
            max: None,
            compare_to_stable: true,
            tolerance,
            test: Some(crate::plan::StatTest {
                kind,
                confidence: kind.default_confidence(),
                scrape_interval: Duration::from_secs(10),
            }),
        }
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).expect("valid time")
    }

    fn range(
        ns: &str,
        svc: &str,
        v: &str,
        extra: &[(&str, &str)],
        points: &[(i64, f64)],
    ) -> RangeSeries {
        let mut labels = series(ns, svc, v, 0.0).labels;
        for (k, val) in extra {
            labels.insert((*k).into(), (*val).into());
        }
        RangeSeries {
            labels,
            points: points.iter().map(|(t, x)| (at(*t), *x)).collect(),
        }
    }

    #[test]
    fn statistical_tests_are_batched_too() {
        for n in [1, 10, 1000] {
            let targets: Vec<Target> = (0..n)
                .map(|i| {
                    let mut t = target(
                        &format!("svc{i}"),
                        "shop",
                        "v2",
                        vec![
                            stat(TestKind::Counts, 0.5),
                            stat(TestKind::MannWhitney, 0.1),
                        ],
                    );
                    t.since = Some(at(1_000_000 - 60 * i as i64));
                    t
                })
                .collect();
            let p = plan(&targets);
            // request count + pooled counts + per-scrape p99.
            assert_eq!(p.queries.len(), 3, "n={n}");
            let pooled = p
                .queries
                .iter()
                .find(|q| q.promql.contains("response_code)"))
                .expect("pooled query");
            // The pooled range reaches back to the oldest step start, capped.
            let (start, end, step) = pooled.range.expect("range").bounds(at(1_000_000));
            assert_eq!(step, Duration::from_secs(60));
            let rounds = ((end - start).num_seconds() / 60) as u32;
            assert_eq!(rounds, (n as u32 - 1).min(POOL_MAX_ROUNDS - 1));
            let scrape = p
                .queries
                .iter()
                .find(|q| q.promql.contains("irate("))
                .expect("per-scrape query");
            assert_eq!(
                scrape.range,
                Some(RangeSpec::Window {
                    step: Duration::from_secs(10),
                    points: 6
                })
            );
        }
    }

    #[test]
    fn pooled_counts_start_at_the_step() {
        let mut t = target("a", "shop", "v2", vec![stat(TestKind::Counts, 0.5)]);
        // The step began at 1000: rounds ending at 1060 and later count, 1000 does not.
        t.since = Some(at(1000));
        let p = plan(&[t]);
        let pooled = p
            .queries
            .iter()
            .position(|q| q.range.is_some())
            .expect("pooled query");
        let rounds = [(1000, 100.0), (1060, 600.0), (1120, 600.0)];
        let canary_err = [(1000, 100.0), (1060, 12.0), (1120, 24.0)];
        let stable = [(1000, 900.0), (1060, 5400.0), (1120, 5400.0)];
        let stable_err = [(1000, 9.0), (1060, 54.0), (1120, 54.0)];
        let mut answers: Vec<Result<Answer, QueryFailure>> =
            vec![Ok(Answer::Vector(vec![])); p.queries.len()];
        answers[pooled] = Ok(Answer::Matrix(vec![
            range("shop", "a", "v2", &[("response_code", "200")], &rounds),
            range("shop", "a", "v2", &[("response_code", "503")], &canary_err),
            range("shop", "a", "v1", &[("response_code", "200")], &stable),
            range("shop", "a", "v1", &[("response_code", "500")], &stable_err),
        ]));
        let r = p.split(&answers);
        let v = &r[0].verdicts[0];
        let report = v.test.as_ref().expect("test report");
        assert_eq!(report.canary_samples, 1236);
        assert_eq!(report.canary_errors, Some(36));
        assert_eq!(report.stable_samples, 10908);
        assert_eq!(report.stable_errors, Some(108));
        assert_eq!(report.since, Some(at(1000)));
        assert_eq!(v.outcome, Outcome::Fail, "{}", v.reason);
        assert!(
            v.reason.contains("since 1970-01-01T00:16:40Z"),
            "{}",
            v.reason
        );
        // Without a step start only the newest round counts: 24 errors in 624 requests.
        let mut t = target("a", "shop", "v2", vec![stat(TestKind::Counts, 0.5)]);
        t.since = None;
        let r = plan(&[t]).split(&answers);
        let report = r[0].verdicts[0].test.clone().expect("test report");
        assert_eq!(
            (report.canary_samples, report.canary_errors),
            (624, Some(24))
        );
    }

    #[test]
    fn per_scrape_values_feed_mann_whitney() {
        let t = target("a", "shop", "v2", vec![stat(TestKind::MannWhitney, 0.1)]);
        let p = plan(&[t]);
        let i = p
            .queries
            .iter()
            .position(|q| q.range.is_some())
            .expect("range");
        let count = p
            .queries
            .iter()
            .position(|q| q.promql.contains("increase("))
            .expect("count");
        let slow: Vec<(i64, f64)> = (0..6).map(|k| (k * 10, 300.0 + k as f64)).collect();
        let fast: Vec<(i64, f64)> = (0..6).map(|k| (k * 10, 200.0 + k as f64)).collect();
        let mut answers: Vec<Result<Answer, QueryFailure>> =
            vec![Ok(Answer::Vector(vec![])); p.queries.len()];
        answers[count] = Ok(Answer::Vector(vec![
            series("shop", "a", "v2", 600.0),
            series("shop", "a", "v1", 5400.0),
        ]));
        answers[i] = Ok(Answer::Matrix(vec![
            range("shop", "a", "v2", &[], &slow),
            range("shop", "a", "v1", &[], &fast),
        ]));
        let r = p.split(&answers);
        let v = &r[0].verdicts[0];
        assert_eq!(v.outcome, Outcome::Fail, "{}", v.reason);
        let report = v.test.as_ref().expect("report");
        assert_eq!((report.canary_samples, report.stable_samples), (6, 6));
        assert_eq!(report.statistic, Some(36.0));
        assert!(r[0].stable_queries["mann-whitney"].contains("destination_version=\"v1\""));
        // A vector where a matrix belongs is a shape error, not a verdict.
        answers[i] = Ok(Answer::Vector(vec![]));
        let r = p.split(&answers);
        assert_eq!(r[0].errors[0].kind, ErrorKind::BadData);
    }

    #[test]
    fn hosts_split_into_name_and_namespace() {
        assert_eq!(
            split_host("reviews", "shop"),
            ("reviews".into(), "shop".into())
        );
        assert_eq!(
            split_host("reviews.prod", "shop"),
            ("reviews".into(), "prod".into())
        );
        assert_eq!(
            split_host("reviews.prod.svc.cluster.local", "shop"),
            ("reviews".into(), "prod".into())
        );
    }

    proptest::proptest! {
        /// Whatever the names (collisions, regex and quote characters), every rollout reads
        /// exactly the series of its own (namespace, service, subset).
        #[test]
        fn every_rollout_reads_its_own_series(
            rollouts in proptest::collection::vec(
                ("[a.|*\"]{1,3}", "[ns|]{1,2}", "v[12.*]"),
                1..12,
            )
        ) {
            let targets: Vec<Target> = rollouts
                .iter()
                .map(|(svc, ns, v)| {
                    let mut t = target(svc, ns, v, standard());
                    t.analysis.min_requests = 0;
                    t
                })
                .collect();
            let p = plan(&targets);
            proptest::prop_assert_eq!(p.queries.len(), 3);
            // One series per distinct (ns, svc, version), value derived from the key.
            let truth = |ns: &str, svc: &str, v: &str| {
                let key = format!("{ns}\u{0}{svc}\u{0}{v}");
                let h = key.bytes().fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
                (h % 1_000_003) as f64
            };
            let mut all = Vec::new();
            for t in &targets {
                for v in [&t.subsets.canary.value, &t.subsets.stable.value] {
                    let s = series(&t.namespace, &t.service, v, truth(&t.namespace, &t.service, v));
                    if !all.contains(&s) {
                        all.push(s);
                    }
                }
            }
            let answers: Vec<Result<Answer, QueryFailure>> = p.queries.iter().map(|_| Ok(Answer::Vector(all.clone()))).collect();
            let results = p.split(&answers);
            for (t, r) in targets.iter().zip(&results) {
                let sr = &r.verdicts[0];
                proptest::prop_assert_eq!(sr.value, Some(truth(&t.namespace, &t.service, &t.subsets.canary.value)));
                proptest::prop_assert_eq!(sr.stable_value, Some(truth(&t.namespace, &t.service, &t.subsets.stable.value)));
            }
        }
    }
}
