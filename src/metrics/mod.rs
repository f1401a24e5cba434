//! Metrics sources: where analysis values come from. A small trait the engine and CLI use, the
//! Prometheus adapter behind it, and `run_tick`, which executes a batch plan's queries.

pub mod prometheus;

use std::future::Future;

use chrono::{DateTime, Utc};

use crate::analysis::batch::{BatchPlan, ErrorKind, QueryFailure, RolloutResult, Series};

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

/// Something that answers PromQL instant queries.
pub trait MetricsSource {
    /// Evaluate `query` now (`at == None`) or at a past instant.
    fn instant(
        &self,
        query: &str,
        at: Option<DateTime<Utc>>,
    ) -> impl Future<Output = Result<Vec<Series>, MetricsError>> + Send;
}

/// Statistics of one tick, for logs and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TickStats {
    pub queries: usize,
    pub failed: usize,
}

/// Run every query of `plan` (concurrently) and split the answers per rollout.
pub async fn run_tick<S: MetricsSource + Sync>(
    source: &S,
    plan: &BatchPlan,
    at: Option<DateTime<Utc>>,
) -> (Vec<RolloutResult>, TickStats) {
    let answers: Vec<Result<Vec<Series>, QueryFailure>> =
        futures_util::future::join_all(plan.queries.iter().map(|q| async move {
            source.instant(q, at).await.map_err(|e| {
                tracing::warn!(kind = %e.kind(), error = %e, "metrics query failed");
                QueryFailure {
                    kind: e.kind(),
                    message: e.to_string(),
                }
            })
        }))
        .await;
    let stats = TickStats {
        queries: answers.len(),
        failed: answers.iter().filter(|a| a.is_err()).count(),
    };
    (plan.split(&answers), stats)
}
