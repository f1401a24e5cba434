//! Metrics sources: where analysis values come from. A small trait the engine and CLI use, the
//! Prometheus adapter behind it, and `run_tick`, which executes a batch plan's queries
//! (instant queries, and range queries for the statistical tests).

pub mod prometheus;

use std::future::Future;

use chrono::{DateTime, Utc};

use crate::analysis::batch::{
    Answer, BatchPlan, ErrorKind, Query, QueryFailure, RangeSeries, RolloutResult, Series,
};

/// Why a query to a metrics source failed; `kind()` gives the bounded class for metric labels.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricsError {
    #[error("failed to reach the metrics source: {0}")]
    Unreachable(String),
    #[error("metrics query timed out: {0}")]
    Timeout(String),
    #[error("metrics source rejected the query: {0}")]
    BadQuery(String),
    #[error("failed to decode the metrics source's answer: {0}")]
    BadData(String),
    #[error("invalid metrics source configuration: {0}")]
    Config(String),
}

impl MetricsError {
    /// The bounded class of this error (a configuration error means the source cannot be
    /// reached as configured).
    pub fn kind(&self) -> ErrorKind {
        match self {
            MetricsError::Unreachable(_) | MetricsError::Config(_) => ErrorKind::Unreachable,
            MetricsError::Timeout(_) => ErrorKind::Timeout,
            MetricsError::BadQuery(_) => ErrorKind::BadQuery,
            MetricsError::BadData(_) => ErrorKind::BadData,
        }
    }
}

/// Something that answers PromQL instant queries (and, for the statistical tests, range
/// queries).
pub trait MetricsSource {
    /// Evaluate `query` now (`at == None`) or at a past instant.
    fn instant(
        &self,
        query: &str,
        at: Option<DateTime<Utc>>,
    ) -> impl Future<Output = Result<Vec<Series>, MetricsError>> + Send;

    /// Evaluate `query` at `start`, `start + step`, … up to `end`. Sources that cannot answer
    /// range queries keep this default, which fails every `test:` check as a bad query.
    fn range(
        &self,
        query: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        step: std::time::Duration,
    ) -> impl Future<Output = Result<Vec<RangeSeries>, MetricsError>> + Send {
        let _ = (query, start, end, step);
        async {
            Err(MetricsError::BadQuery(
                "this metrics source answers no range queries".into(),
            ))
        }
    }
}

/// Run one query: instant, or range when the query says so (ending at `end`).
async fn run_query<S: MetricsSource + Sync>(
    source: &S,
    q: &Query,
    at: Option<DateTime<Utc>>,
    end: DateTime<Utc>,
) -> Result<Answer, MetricsError> {
    match &q.range {
        None => source.instant(&q.promql, at).await.map(Answer::Vector),
        Some(r) => {
            let (start, end, step) = r.bounds(end);
            source
                .range(&q.promql, start, end, step)
                .await
                .map(Answer::Matrix)
        }
    }
}

/// Statistics of one tick, for logs, the daemon's own metrics and benchmarks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TickStats {
    pub queries: usize,
    pub failed: usize,
    /// The class of every failed query (for `prometheus_query_errors{kind}`).
    pub errors: Vec<ErrorKind>,
    /// How long each query took, in query order.
    pub query_durations: Vec<std::time::Duration>,
    /// Wall time of the whole tick.
    pub elapsed: std::time::Duration,
}

/// Queries of one tick in flight at once (batched ticks have a handful; custom queries one per
/// rollout and side).
pub const MAX_IN_FLIGHT: usize = 16;

/// Run every query of `plan` (at most `MAX_IN_FLIGHT` at once) and split the answers per
/// rollout. Range queries end at `at`, or now (whole seconds) without it.
pub async fn run_tick<S: MetricsSource + Sync>(
    source: &S,
    plan: &BatchPlan,
    at: Option<DateTime<Utc>>,
) -> (Vec<RolloutResult>, TickStats) {
    use futures_util::StreamExt as _;
    let started = std::time::Instant::now();
    let end = at.unwrap_or_else(|| {
        let now = Utc::now();
        DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now)
    });
    let timed: Vec<(Result<Answer, QueryFailure>, std::time::Duration)> =
        futures_util::stream::iter(plan.queries.iter().map(|q| async move {
            let t = std::time::Instant::now();
            let answer = run_query(source, q, at, end).await.map_err(|e| {
                tracing::warn!(kind = %e.kind(), error = %e, "metrics query failed");
                QueryFailure {
                    kind: e.kind(),
                    message: e.to_string(),
                }
            });
            (answer, t.elapsed())
        }))
        .buffered(MAX_IN_FLIGHT)
        .collect()
        .await;
    let (answers, query_durations): (Vec<_>, Vec<_>) = timed.into_iter().unzip();
    let errors: Vec<ErrorKind> = answers
        .iter()
        .filter_map(|a| a.as_ref().err().map(|e| e.kind))
        .collect();
    let stats = TickStats {
        queries: answers.len(),
        failed: errors.len(),
        errors,
        query_durations,
        elapsed: started.elapsed(),
    };
    tracing::debug!(
        rollouts = plan.rollouts(),
        queries = stats.queries,
        failed = stats.failed,
        elapsed_ms = stats.elapsed.as_millis() as u64,
        "analysis tick"
    );
    (plan.split(&answers), stats)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::analysis::Outcome;
    use crate::analysis::batch::{self, Target};
    use crate::analysis::subset::SubsetLabels;
    use crate::plan::{Analysis, MetricSource, MetricSpec, RolloutId};

    /// Answers custom query `n` with the value `n`; fails queries containing "down".
    struct Fake {
        in_flight: AtomicUsize,
        peak: AtomicUsize,
    }

    impl MetricsSource for Fake {
        async fn instant(
            &self,
            query: &str,
            _at: Option<DateTime<Utc>>,
        ) -> Result<Vec<Series>, MetricsError> {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            if query.contains("down") {
                return Err(MetricsError::Timeout("slow".into()));
            }
            if query.starts_with("sum by") {
                // The request-count query: plenty of requests for everyone.
                return Ok(Vec::new());
            }
            let n: f64 = query
                .trim_start_matches("vector(")
                .trim_end_matches(')')
                .parse()
                .unwrap_or(f64::NAN);
            Ok(vec![Series {
                labels: Default::default(),
                value: n,
            }])
        }
    }

    fn target(i: usize, query: String) -> Target {
        Target {
            id: RolloutId {
                namespace: "ns".into(),
                name: format!("r{i}"),
            },
            service: format!("s{i}"),
            namespace: "ns".into(),
            reporter: "destination".into(),
            subsets: SubsetLabels::fallback().mapping("v2", "v1").expect("maps"),
            analysis: Analysis {
                interval: Duration::from_secs(60),
                failure_limit: 1,
                min_requests: 0,
                unreachable_limit: Duration::from_secs(60),
                metrics: vec![MetricSpec {
                    name: "m".into(),
                    source: MetricSource::Query(query),
                    min: None,
                    max: Some(50.0),
                    compare_to_stable: false,
                    tolerance: 0.0,
                    test: None,
                }],
            },
            since: None,
        }
    }

    #[tokio::test]
    async fn answers_keep_their_order_and_concurrency_is_bounded() {
        let mut targets: Vec<Target> = (0..100)
            .map(|i| target(i, format!("vector({i})")))
            .collect();
        targets.push(target(100, "vector(down)".into()));
        let plan = batch::plan(&targets);
        let fake = Fake {
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        };
        let (results, stats) = run_tick(&fake, &plan, None).await;
        assert_eq!(stats.queries, 102);
        assert_eq!(stats.failed, 1);
        assert_eq!(stats.errors, vec![ErrorKind::Timeout]);
        assert_eq!(stats.query_durations.len(), 102);
        for (i, r) in results.iter().take(100).enumerate() {
            assert_eq!(r.verdicts[0].value, Some(i as f64));
            let expected = if i <= 50 {
                Outcome::Pass
            } else {
                Outcome::Fail
            };
            assert_eq!(r.verdicts[0].outcome, expected, "rollout {i}");
        }
        assert_eq!(results[100].errors[0].kind, ErrorKind::Timeout);
        assert!(fake.peak.load(Ordering::SeqCst) <= MAX_IN_FLIGHT);
    }
}
