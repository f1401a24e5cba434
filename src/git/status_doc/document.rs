//! The status document: how a rollout's status is written to and read from Git.
//!
//! Rendering is deterministic (the same status always gives the same bytes), so an unchanged
//! status never produces a commit.

use crate::rollout::Status;

/// First line of every status file.
pub const HEADER: &str = "# Written by tidegate; edits are overwritten. Steer rollouts with control commits (Tidegate: pause <name>).\n";

/// Errors reading a status document.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("failed to render the status of {rollout}: {message}")]
    Render { rollout: String, message: String },
    #[error("failed to read status document {path}: {message}")]
    Parse { path: String, message: String },
}

/// Render a status as YAML (deterministic).
pub fn render(status: &Status) -> Result<String, DocumentError> {
    let body = serde_saphyr::to_string(status).map_err(|e| DocumentError::Render {
        rollout: status.rollout.to_string(),
        message: e.to_string(),
    })?;
    Ok(format!("{HEADER}{body}"))
}

/// Read a status document back.
pub fn parse(path: &str, text: &str) -> Result<Status, DocumentError> {
    serde_saphyr::from_str(text).map_err(|e| DocumentError::Parse {
        path: path.to_owned(),
        message: e.to_string().lines().next().unwrap_or_default().to_owned(),
    })
}

/// The path of a rollout's status file under `folder` (default `status`).
pub fn path_for(folder: &str, rollout: &crate::plan::RolloutId) -> String {
    let folder = folder.trim_end_matches('/');
    format!("{folder}/{}/{}.yaml", rollout.namespace, rollout.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{Outcome, Verdict};
    use crate::plan::RolloutId;
    use crate::rollout::{
        AnalysisSummary, ControlRecord, Phase, PlanRef, ReadBack, RouteState, Transition,
    };
    use chrono::{DateTime, Utc};

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn sample() -> Status {
        let mut v = Verdict::bare("success-rate", Outcome::Fail);
        v.value = Some(94.25);
        v.query =
            "sum(rate(istio_requests_total{destination_service_name=\"orders-svc\"}[30s]))".into();
        Status {
            rollout: RolloutId {
                namespace: "production".into(),
                name: "orders-svc".into(),
            },
            release: None,
            pending: None,
            plan: PlanRef {
                path: "rollouts/orders.yaml".into(),
                revision: "abc123".into(),
                digest: "d1".into(),
            },
            phase: Phase::RollingBack,
            step: 2,
            step_count: 9,
            step_started_at: at("2026-12-01T10:00:00Z"),
            route: RouteState::all_stable(),
            read_back: ReadBack::Drifted {
                actual: RouteState {
                    canary_weight: 10,
                    ..RouteState::default()
                },
                detail: "weights".into(),
            },
            analysis: AnalysisSummary {
                checks: 3,
                failures: 2,
                inconclusive: 1,
                last_checked_at: Some(at("2026-12-01T10:01:00Z")),
                passed_in_step: false,
                last: vec![v],
                counting_from: None,
            },
            reason: "2 failed checks".into(),
            findings: vec![],
            metrics_unreachable_since: None,
            fault: None,
            rollback_to: Some(Phase::RolledBack),
            controls: vec![ControlRecord {
                commit: "c1".into(),
                author: "Ana <ana@example.com>".into(),
                action: "pause".into(),
                applied: false,
                note: "not allowed".into(),
                at: at("2026-12-01T10:00:30Z"),
            }],
            history: vec![Transition {
                at: at("2026-12-01T10:01:00Z"),
                from: Phase::Progressing,
                to: Phase::RollingBack,
                step: 2,
                canary_weight: 0,
                reason: "2 failed checks".into(),
            }],
            updated_at: at("2026-12-01T10:01:00Z"),
        }
    }

    #[test]
    fn renders_deterministically_and_round_trips() {
        let s = sample();
        let a = render(&s).expect("render");
        let b = render(&s.clone()).expect("render");
        assert_eq!(a, b);
        assert!(a.starts_with(HEADER));
        let back = parse("status/production/orders-svc.yaml", &a).expect("parse");
        assert_eq!(back, s);
        assert_eq!(render(&back).expect("render"), a);
    }

    #[test]
    fn bad_documents_name_the_path() {
        let e = parse("status/x/y.yaml", "phase: [").expect_err("invalid");
        assert!(e.to_string().contains("status/x/y.yaml"));
        assert_eq!(
            path_for(
                "status/",
                &RolloutId {
                    namespace: "n".into(),
                    name: "a".into()
                }
            ),
            "status/n/a.yaml"
        );
    }
}
