//! The daemon's own metrics (prometheus-client), served on `/metrics`.
//!
//! Labels come from bounded sets only: rollout namespace/name (bounded by the plans in Git),
//! phase, metric name (bounded by the plans), outcome, error kind, webhook provider and result.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::analysis::Outcome;
use crate::rollout::{Phase, Status};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RolloutLabels {
    pub namespace: String,
    pub rollout: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    pub namespace: String,
    pub rollout: String,
    pub phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    pub namespace: String,
    pub rollout: String,
    pub metric: String,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    pub provider: &'static str,
    pub result: &'static str,
}

/// Every metric the daemon exports (names documented in docs/metrics.md).
#[derive(Debug)]
pub struct Metrics {
    pub registry: Registry,
    pub canary_weight: Family<RolloutLabels, Gauge>,
    pub phase: Family<PhaseLabels, Gauge>,
    pub blocked: Family<RolloutLabels, Gauge>,
    pub step: Family<RolloutLabels, Gauge>,
    pub step_started: Family<RolloutLabels, Gauge<f64, AtomicU64>>,
    pub verdict: Family<VerdictLabels, Gauge>,
    pub checks: Family<RolloutLabels, Counter>,
    pub failures: Family<RolloutLabels, Counter>,
    pub git_fetch_duration: Histogram,
    pub git_fetch_errors: Counter,
    pub git_pushes: Counter,
    pub git_push_errors: Counter,
    pub prometheus_query_duration: Histogram,
    pub prometheus_query_errors: Family<KindLabels, Counter>,
    pub mesh_write_errors: Counter,
    pub metrics_source_up: Gauge,
    pub webhooks: Family<WebhookLabels, Counter>,
    pub ticks: Counter,
    pub tick_duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("tidegate");
        let m = Metrics {
            canary_weight: Family::default(),
            phase: Family::default(),
            blocked: Family::default(),
            step: Family::default(),
            step_started: Family::default(),
            verdict: Family::default(),
            checks: Family::default(),
            failures: Family::default(),
            git_fetch_duration: Histogram::new(exponential_buckets(0.005, 2.0, 12)),
            git_fetch_errors: Counter::default(),
            git_pushes: Counter::default(),
            git_push_errors: Counter::default(),
            prometheus_query_duration: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            prometheus_query_errors: Family::default(),
            mesh_write_errors: Counter::default(),
            metrics_source_up: Gauge::default(),
            webhooks: Family::default(),
            ticks: Counter::default(),
            tick_duration: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            registry: Registry::default(),
        };
        registry.register(
            "rollout_canary_weight",
            "Percent of the managed routes' traffic on the canary, as set",
            m.canary_weight.clone(),
        );
        registry.register(
            "rollout_phase",
            "1 for the rollout's current phase",
            m.phase.clone(),
        );
        registry.register(
            "metrics_source_up",
            "1 while the metrics source (Prometheus) answers; readiness does not depend on it",
            m.metrics_source_up.clone(),
        );
        registry.register(
            "rollout_blocked",
            "1 while tidegate cannot carry out the rollout's decisions (see its status `fault`)",
            m.blocked.clone(),
        );
        registry.register(
            "rollout_step",
            "Index of the rollout's current step",
            m.step.clone(),
        );
        registry.register(
            "rollout_step_started_timestamp_seconds",
            "When the current step began (Unix seconds)",
            m.step_started.clone(),
        );
        registry.register(
            "analysis_verdict",
            "1 for the latest outcome of each metric check",
            m.verdict.clone(),
        );
        registry.register(
            "analysis_checks",
            "Analysis rounds evaluated",
            m.checks.clone(),
        );
        registry.register(
            "analysis_failures",
            "Analysis rounds that failed",
            m.failures.clone(),
        );
        registry.register(
            "git_fetch_duration_seconds",
            "Duration of fetches of the plans repository",
            m.git_fetch_duration.clone(),
        );
        registry.register(
            "git_fetch_errors",
            "Failed fetches of the plans repository",
            m.git_fetch_errors.clone(),
        );
        registry.register("git_pushes", "Status commits pushed", m.git_pushes.clone());
        registry.register(
            "git_push_errors",
            "Status pushes that failed after every retry",
            m.git_push_errors.clone(),
        );
        registry.register(
            "prometheus_query_duration_seconds",
            "Duration of Prometheus queries",
            m.prometheus_query_duration.clone(),
        );
        registry.register(
            "prometheus_query_errors",
            "Failed Prometheus queries by kind",
            m.prometheus_query_errors.clone(),
        );
        registry.register(
            "mesh_write_errors",
            "Failed VirtualService writes",
            m.mesh_write_errors.clone(),
        );
        registry.register(
            "webhooks",
            "Git webhooks received, by provider and result",
            m.webhooks.clone(),
        );
        registry.register("ticks", "Scheduler ticks", m.ticks.clone());
        registry.register(
            "tick_duration_seconds",
            "Duration of one scheduler tick",
            m.tick_duration.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Reflect a rollout's status in the gauges. `previous` is the status before this change
    /// (to count new checks and failures).
    pub fn observe(&self, status: &Status, previous: Option<&Status>) {
        let l = RolloutLabels {
            namespace: status.rollout.namespace.clone(),
            rollout: status.rollout.name.clone(),
        };
        self.canary_weight
            .get_or_create(&l)
            .set(i64::from(status.route.canary_weight));
        for p in Phase::ALL {
            let pl = PhaseLabels {
                namespace: l.namespace.clone(),
                rollout: l.rollout.clone(),
                phase: p.as_str(),
            };
            self.phase
                .get_or_create(&pl)
                .set(i64::from(p == status.phase));
        }
        self.blocked
            .get_or_create(&l)
            .set(i64::from(status.fault.is_some()));
        self.step
            .get_or_create(&l)
            .set(i64::try_from(status.step).unwrap_or(i64::MAX));
        self.step_started
            .get_or_create(&l)
            .set(status.step_started_at.timestamp_millis() as f64 / 1000.0);
        let (prev_checks, prev_failures) =
            previous.map_or((0, 0), |p| (p.analysis.checks, p.analysis.failures));
        let new_checks = status.analysis.checks.saturating_sub(prev_checks);
        let new_failures = status.analysis.failures.saturating_sub(prev_failures);
        if new_checks > 0 {
            self.checks.get_or_create(&l).inc_by(u64::from(new_checks));
        }
        if new_failures > 0 {
            self.failures
                .get_or_create(&l)
                .inc_by(u64::from(new_failures));
        }
        for v in &status.analysis.last {
            for o in [Outcome::Pass, Outcome::Fail, Outcome::Inconclusive] {
                let vl = VerdictLabels {
                    namespace: l.namespace.clone(),
                    rollout: l.rollout.clone(),
                    metric: v.metric.clone(),
                    outcome: match o {
                        Outcome::Pass => "pass",
                        Outcome::Fail => "fail",
                        Outcome::Inconclusive => "inconclusive",
                    },
                };
                self.verdict
                    .get_or_create(&vl)
                    .set(i64::from(o == v.outcome));
            }
        }
    }

    /// Drop every series of a rollout tidegate no longer manages (`status`: its last status,
    /// for the verdict series of its metrics).
    pub fn forget(&self, id: &crate::plan::RolloutId, status: Option<&Status>) {
        let l = RolloutLabels {
            namespace: id.namespace.clone(),
            rollout: id.name.clone(),
        };
        self.canary_weight.remove(&l);
        self.blocked.remove(&l);
        self.step.remove(&l);
        self.step_started.remove(&l);
        self.checks.remove(&l);
        self.failures.remove(&l);
        for p in Phase::ALL {
            self.phase.remove(&PhaseLabels {
                namespace: l.namespace.clone(),
                rollout: l.rollout.clone(),
                phase: p.as_str(),
            });
        }
        for v in status
            .map(|s| s.analysis.last.as_slice())
            .unwrap_or_default()
        {
            for outcome in ["pass", "fail", "inconclusive"] {
                self.verdict.remove(&VerdictLabels {
                    namespace: l.namespace.clone(),
                    rollout: l.rollout.clone(),
                    metric: v.metric.clone(),
                    outcome,
                });
            }
        }
    }

    /// Text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
