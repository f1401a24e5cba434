//! Advice on valid plans: warnings that do not make a plan invalid but point at checks that
//! measurably misjudge canaries (docs/judgment.md).

use super::model::{MetricSource, Plan};
use super::parse::Finding;
use super::template::Template;

/// A canary-only success-rate minimum at or above this lies within two points of the error
/// rates (0.1–1 %) many services have normally.
pub const NOISY_SUCCESS_MIN: f64 = 98.0;

/// Warnings for `plan`: today one, for a plan whose only checks are canary-only thresholds
/// with a success-rate minimum close to a typical error rate.
pub fn warnings(plan: &Plan) -> Vec<Finding> {
    let metrics = &plan.analysis.metrics;
    if metrics.is_empty() || metrics.iter().any(|m| m.compare_to_stable) {
        return Vec::new();
    }
    metrics
        .iter()
        .enumerate()
        .filter(|(_, m)| m.source == MetricSource::Template(Template::SuccessRate))
        .filter_map(|(i, m)| m.min.filter(|min| *min >= NOISY_SUCCESS_MIN).map(|min| (i, min)))
        .map(|(i, min)| Finding {
            file: plan.location.file.clone(),
            line: plan.location.line,
            column: plan.location.column,
            field: format!("spec.analysis.metrics[{i}].min"),
            message: format!(
                "rollout {}: every check is a canary-only threshold, and `min: {min}` on the success rate allows only {} points of errors, close to the 0.1-1 % many services have normally: healthy canaries get rolled back by chance, and every canary during an incident that hits stable too (docs/judgment.md)",
                plan.id,
                100.0 - min
            ),
            hint: "compare with stable instead: add `{name: errors, template: istio-success-rate, compareTo: stable, test: counts, tolerance: 0.5}`, keep an absolute guard rail such as `min: 95`, and set `failureLimit: 1`".into(),
        })
        .collect()
}
