//! Every default a plan gets when a field is left out, in one place (documented in
//! `docs/plan-reference.md`; keep the two in step).

use std::time::Duration;

use super::OnSuccess;

/// `metadata.namespace`.
pub const NAMESPACE: &str = "default";
/// `spec.analysis.interval`: how often the checks run.
pub const INTERVAL: Duration = Duration::from_secs(30);
/// `spec.analysis.failureLimit`: failed check rounds that trigger a rollback.
pub const FAILURE_LIMIT: u32 = 2;
/// `spec.analysis.minRequests`: below this, a check is inconclusive.
pub const MIN_REQUESTS: u64 = 50;
/// `spec.analysis.unreachableLimit`: how long Prometheus may be down before rolling back.
pub const UNREACHABLE_LIMIT: Duration = Duration::from_secs(300);
/// `metrics[].tolerance` with `compareTo: stable`: the canary may not be worse than stable.
pub const TOLERANCE: f64 = 0.0;
/// `metrics[].confidence` with `test: counts`.
pub const COUNTS_CONFIDENCE: f64 = 0.95;
/// `metrics[].confidence` with `test: mann-whitney` (Kayenta's judge uses 0.98 too).
pub const MANN_WHITNEY_CONFIDENCE: f64 = 0.98;
/// `metrics[].scrapeInterval` with `test: mann-whitney`: how often Prometheus scrapes the
/// Istio metrics (the step of the per-scrape range query).
pub const SCRAPE_INTERVAL: Duration = Duration::from_secs(15);
/// `spec.onSuccess`.
pub const ON_SUCCESS: OnSuccess = OnSuccess::Promote;
/// `spec.virtualService` and `spec.destinationRule` default to `spec.service`'s short name.
pub fn object_name_for_service(service: &str) -> String {
    service.split('.').next().unwrap_or(service).to_owned()
}
