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
/// `spec.onSuccess`.
pub const ON_SUCCESS: OnSuccess = OnSuccess::Promote;
/// `spec.virtualService` and `spec.destinationRule` default to `spec.service`'s short name.
pub fn object_name_for_service(service: &str) -> String {
    service.split('.').next().unwrap_or(service).to_owned()
}
