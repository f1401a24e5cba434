//! Batching: turn N rollouts' metric checks into few PromQL queries, and split the answers back
//! into per-rollout verdicts. Pure: the metrics adapter only executes the queries.
//!
//! Built-in templates are batched: one query per (template, window, subset label, reporter)
//! covers every rollout using it, grouped by service, namespace and subset label, plus one
//! request-count query per (window, subset label, reporter) for `minRequests`. Custom queries
//! cannot be merged, so each is run per rollout and side (identical renderings run once).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::analysis::judge::{self, Reading, Side};
use crate::analysis::render::{self, QueryVars, RenderError, SubsetVars};
use crate::analysis::subset::{SubsetError, SubsetLabels, SubsetMapping};
use crate::analysis::template::{Template, Unit};
use crate::analysis::verdict::{Outcome, Verdict};
use crate::plan::{Analysis, MetricSource, MetricSpec, Plan, RolloutId};

/// Istio reporter used when none is configured: the server-side proxy.
pub const DEFAULT_REPORTER: &str = "destination";

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
    pub fn from_plan(
        plan: &Plan,
        subsets: &SubsetLabels,
        reporter: &str,
    ) -> Result<Target, TargetError> {
        let mapping = subsets
            .mapping(&plan.canary, &plan.stable)
            .map_err(|source| TargetError::Subset {
                id: plan.id.clone(),
                source: Box::new(source),
            })?;
        let (service, namespace) = split_host(&plan.service, &plan.id.namespace);
        Ok(Target {
            id: plan.id.clone(),
            service,
            namespace,
            reporter: reporter.to_string(),
            subsets: mapping,
            analysis: plan.analysis.clone(),
        })
    }

    fn vars(&self, evaluate_stable: bool) -> QueryVars<'_> {
        QueryVars {
            service: &self.service,
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
    /// template as the batched query, with exact matchers for this rollout only.
    pub fn display_query(&self, spec: &MetricSpec, stable: bool) -> Result<String, RenderError> {
        let side = if stable {
            &self.subsets.stable
        } else {
            &self.subsets.canary
        };
        match &spec.source {
            MetricSource::Template(t) => {
                let m = render::exact_matchers(
                    &self.reporter,
                    &self.namespace,
                    &self.service,
                    self.subsets.metric_label,
                    &side.value,
                );
                Ok(render::template(
                    *t,
                    &m,
                    self.subsets.metric_label,
                    self.analysis.interval,
                ))
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
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct BatchKey {
    kind: Kind,
    window: Duration,
    label: &'static str,
    reporter: String,
}

#[derive(Debug, Default)]
struct BatchGroup {
    namespaces: BTreeSet<String>,
    services: BTreeSet<String>,
    values: BTreeSet<String>,
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
    /// PromQL to run, each once, in this order.
    pub queries: Vec<String>,
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

/// Plan the queries of one tick for `targets`.
pub fn plan(targets: &[Target]) -> BatchPlan {
    let mut groups: BTreeMap<BatchKey, BatchGroup> = BTreeMap::new();
    let mut custom: BTreeMap<String, usize> = BTreeMap::new();
    let mut custom_order: Vec<String> = Vec::new();
    let key = |t: &Target, kind: Kind| BatchKey {
        kind,
        window: t.analysis.interval,
        label: t.subsets.metric_label,
        reporter: t.reporter.clone(),
    };
    // First pass: collect batch groups and custom queries.
    let mut pending: Vec<(Target, Vec<PendingCheck>)> = Vec::new();
    for t in targets {
        let add = |groups: &mut BTreeMap<BatchKey, BatchGroup>, kind: Kind, both: bool| {
            let g = groups.entry(key(t, kind)).or_default();
            g.namespaces.insert(t.namespace.clone());
            g.services.insert(t.service.clone());
            g.values.insert(t.subsets.canary.value.clone());
            if both {
                g.values.insert(t.subsets.stable.value.clone());
            }
        };
        // Request counts are needed for both sides whenever any check compares to stable.
        let any_compare = t.analysis.metrics.iter().any(|m| m.compare_to_stable);
        add(&mut groups, Kind::RequestCount, any_compare);
        let mut checks = Vec::new();
        for spec in &t.analysis.metrics {
            let (unit, canary, stable) = match &spec.source {
                MetricSource::Template(tpl) => {
                    add(&mut groups, Kind::Template(*tpl), spec.compare_to_stable);
                    let k = key(t, Kind::Template(*tpl));
                    (
                        tpl.unit(),
                        PendingSource::Batch(k.clone()),
                        spec.compare_to_stable.then_some(PendingSource::Batch(k)),
                    )
                }
                MetricSource::Query(_) => {
                    let mut side = |stable: bool| match t.display_query(spec, stable) {
                        Ok(q) => {
                            let i = *custom.entry(q.clone()).or_insert_with(|| {
                                custom_order.push(q);
                                custom_order.len() - 1
                            });
                            PendingSource::Custom(i)
                        }
                        Err(e) => PendingSource::Unrenderable(e.to_string()),
                    };
                    let c = side(false);
                    let s = spec.compare_to_stable.then(|| side(true));
                    (Unit::Number, c, s)
                }
            };
            checks.push((spec.clone(), unit, canary, stable));
        }
        pending.push((t.clone(), checks));
    }
    // Render the batched queries, then the custom ones.
    let mut queries = Vec::new();
    let mut batch_index: HashMap<BatchKey, usize> = HashMap::new();
    for (k, g) in &groups {
        let m = render::batch_matchers(
            &k.reporter,
            g.namespaces.iter().map(String::as_str),
            g.services.iter().map(String::as_str),
            k.label,
            g.values.iter().map(String::as_str),
        );
        let q = match k.kind {
            Kind::Template(t) => render::template(t, &m, k.label, k.window),
            Kind::RequestCount => render::request_count(&m, k.label, k.window),
        };
        batch_index.insert(k.clone(), queries.len());
        queries.push(q);
    }
    let custom_base = queries.len();
    queries.extend(custom_order);
    let resolve = |p: PendingSource| match p {
        PendingSource::Batch(k) => Source::Batch(batch_index.get(&k).copied().unwrap_or(0)),
        PendingSource::Custom(i) => Source::Custom(custom_base + i),
        PendingSource::Unrenderable(e) => Source::Unrenderable(e),
    };
    let targets = pending
        .into_iter()
        .map(|(t, checks)| {
            let count = batch_index
                .get(&key(&t, Kind::RequestCount))
                .copied()
                .unwrap_or(0);
            let slots = checks
                .into_iter()
                .map(|(spec, unit, c, s)| {
                    let display = t.display_query(&spec, false).unwrap_or_default();
                    let display_stable = s
                        .is_some()
                        .then(|| t.display_query(&spec, true).unwrap_or_default());
                    Slot {
                        unit,
                        canary: resolve(c),
                        stable: s.map(resolve),
                        count,
                        display,
                        display_stable,
                        spec,
                    }
                })
                .collect();
            TargetSlots { target: t, slots }
        })
        .collect();
    BatchPlan { queries, targets }
}

/// A check before query indexes are known: spec, unit, canary and stable sources.
type PendingCheck = (MetricSpec, Unit, PendingSource, Option<PendingSource>);

#[derive(Debug, Clone)]
enum PendingSource {
    Batch(BatchKey),
    Custom(usize),
    Unrenderable(String),
}

/// Answers of a batched query, indexed by (namespace, service, subset value).
type Index<'a> = HashMap<(&'a str, &'a str, &'a str), (f64, usize)>;

fn index<'a>(series: &'a [Series], label: &str) -> Index<'a> {
    let mut out: Index<'a> = HashMap::new();
    for s in series {
        let get = |k: &str| s.labels.get(k).map(String::as_str).unwrap_or_default();
        let e = out
            .entry((
                get("destination_service_namespace"),
                get("destination_service_name"),
                get(label),
            ))
            .or_insert((s.value, 0));
        e.0 = s.value;
        e.1 += 1;
    }
    out
}

impl BatchPlan {
    /// Number of rollouts planned.
    pub fn rollouts(&self) -> usize {
        self.targets.len()
    }

    /// Split the answers (one per query, in `queries` order) into per-rollout results.
    pub fn split(&self, answers: &[Result<Vec<Series>, QueryFailure>]) -> Vec<RolloutResult> {
        // Index each batched answer once per subset label it is read with.
        let mut indexes: HashMap<(usize, &'static str), Index<'_>> = HashMap::new();
        for ts in &self.targets {
            let label = ts.target.subsets.metric_label;
            for slot in &ts.slots {
                for src in std::iter::once(&slot.canary)
                    .chain(slot.stable.as_ref())
                    .chain(std::iter::once(&Source::Batch(slot.count)))
                {
                    if let Source::Batch(i) = src
                        && let Some(Ok(series)) = answers.get(*i)
                    {
                        indexes
                            .entry((*i, label))
                            .or_insert_with(|| index(series, label));
                    }
                }
            }
        }
        let missing = QueryFailure {
            kind: ErrorKind::BadData,
            message: "no answer for query".into(),
        };
        self.targets
            .iter()
            .map(|ts| {
                let t = &ts.target;
                let label = t.subsets.metric_label;
                let key = |stable: bool| {
                    let v = if stable {
                        &t.subsets.stable.value
                    } else {
                        &t.subsets.canary.value
                    };
                    (t.namespace.as_str(), t.service.as_str(), v.as_str())
                };
                let read = |src: &Source, stable: bool| -> Result<Reading, QueryFailure> {
                    match src {
                        Source::Unrenderable(e) => Err(QueryFailure {
                            kind: ErrorKind::BadQuery,
                            message: e.clone(),
                        }),
                        Source::Batch(i) => match answers.get(*i) {
                            Some(Ok(_)) => Ok(
                                match indexes
                                    .get(&(*i, label))
                                    .and_then(|ix| ix.get(&key(stable)))
                                {
                                    None => Reading::Empty,
                                    Some((_, n)) if *n > 1 => Reading::Ambiguous(*n),
                                    Some((v, _)) => Reading::Value(*v),
                                },
                            ),
                            Some(Err(e)) => Err(e.clone()),
                            None => Err(missing.clone()),
                        },
                        Source::Custom(i) => match answers.get(*i) {
                            Some(Ok(series)) => Ok(match series.as_slice() {
                                [] => Reading::Empty,
                                [one] => Reading::Value(one.value),
                                many => Reading::Ambiguous(many.len()),
                            }),
                            Some(Err(e)) => Err(e.clone()),
                            None => Err(missing.clone()),
                        },
                    }
                };
                let mut result = RolloutResult {
                    id: t.id.clone(),
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
                    let requests = |stable: bool| -> Result<Option<f64>, QueryFailure> {
                        match read(&Source::Batch(slot.count), stable)? {
                            Reading::Value(v) => Ok(Some(v)),
                            _ => Ok(None),
                        }
                    };
                    let sides = (|| {
                        let canary = Side {
                            reading: read(&slot.canary, false)?,
                            requests: requests(false)?,
                        };
                        let stable = match &slot.stable {
                            Some(src) => Some(Side {
                                reading: read(src, true)?,
                                requests: requests(true)?,
                            }),
                            None => None,
                        };
                        Ok::<_, QueryFailure>((canary, stable))
                    })();
                    match sides {
                        Ok((canary, stable)) => {
                            let ctx = judge::Context {
                                spec: &slot.spec,
                                unit: slot.unit,
                                min_requests: t.analysis.min_requests,
                                window: t.analysis.interval,
                            };
                            result.verdicts.push(judge::judge(
                                &ctx,
                                slot.display.clone(),
                                canary,
                                stable,
                            ));
                        }
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
                .position(|q| q.contains(needle))
                .expect("query present")
        };
        let sr = idx("response_code");
        let p99 = idx("histogram_quantile");
        let count = idx("increase(");
        let mut answers: Vec<Result<Vec<Series>, QueryFailure>> = vec![Ok(vec![]); 3];
        answers[sr] = Ok(vec![
            series("shop", "a", "v2", 99.5),
            series("shop", "a", "v1", 100.0),
            series("shop", "b", "v3", 95.0),
            series("shop", "b", "v1", 100.0),
        ]);
        answers[p99] = Ok(vec![series("shop", "a", "v2", 20.0)]);
        answers[count] = Ok(vec![
            series("shop", "a", "v2", 100.0),
            series("shop", "a", "v1", 100.0),
            series("shop", "b", "v3", 100.0),
            series("shop", "b", "v1", 100.0),
        ]);
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
    fn failures_become_classified_check_errors() {
        let targets = vec![target("a", "shop", "v2", standard())];
        let p = plan(&targets);
        let answers: Vec<Result<Vec<Series>, QueryFailure>> = p
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
        assert!(p.queries.iter().any(|q| q.contains("v=\"v1\"")));
        let count = p
            .queries
            .iter()
            .position(|q| q.contains("increase("))
            .expect("count");
        let answers: Vec<Result<Vec<Series>, QueryFailure>> = p
            .queries
            .iter()
            .enumerate()
            .map(|(i, q)| {
                Ok(if i == count {
                    vec![
                        series("shop", "a", "v2", 50.0),
                        series("shop", "a", "v1", 50.0),
                    ]
                } else if q.contains("v=\"v2\"") {
                    vec![Series {
                        labels: BTreeMap::new(),
                        value: 9.0,
                    }]
                } else {
                    vec![Series {
                        labels: BTreeMap::new(),
                        value: 1.0,
                    }]
                })
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
            let answers: Vec<Result<Vec<Series>, QueryFailure>> = p.queries.iter().map(|_| Ok(all.clone())).collect();
            let results = p.split(&answers);
            for (t, r) in targets.iter().zip(&results) {
                let sr = &r.verdicts[0];
                proptest::prop_assert_eq!(sr.value, Some(truth(&t.namespace, &t.service, &t.subsets.canary.value)));
                proptest::prop_assert_eq!(sr.stable_value, Some(truth(&t.namespace, &t.service, &t.subsets.stable.value)));
            }
        }
    }
}
