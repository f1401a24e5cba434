//! The status of one rollout: what tidegate has done and why. Written to Git after every change.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::types::{Phase, ReadBack, RouteState};
use crate::analysis::Verdict;
use crate::plan::RolloutId;

/// Which plan revision the status belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanRef {
    /// Path of the plan file in the repository.
    pub path: String,
    /// The last commit that changed the plan file.
    pub revision: String,
    /// sha256 of the plan's canonical form: a new digest means a new rollout.
    pub digest: String,
}

/// Running totals of the analysis for the current rollout attempt.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisSummary {
    /// Analysis rounds evaluated.
    pub checks: u32,
    /// Rounds with at least one failed metric.
    pub failures: u32,
    /// Rounds that were inconclusive (no traffic yet, too few requests, no data).
    pub inconclusive: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checked_at: Option<DateTime<Utc>>,
    /// True when the latest round since the current step began passed.
    #[serde(default)]
    pub passed_in_step: bool,
    /// The latest verdict per metric.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub last: Vec<Verdict>,
    /// Rounds count from this time (a `retry`): a round decided within one interval of it
    /// measured the attempt before and is not counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counting_from: Option<DateTime<Utc>>,
}

/// A control commit that was applied or refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ControlRecord {
    pub commit: String,
    pub author: String,
    /// The action word as written (unknown words are recorded too, as refused).
    pub action: String,
    pub applied: bool,
    /// The reason given in the trailer, or why it was refused.
    pub note: String,
    pub at: DateTime<Utc>,
}

/// A failure of the daemon's own work for this rollout (writing or reading the VirtualService)
/// that did not go away by retrying, or that cannot: shown until the work succeeds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    /// What tidegate was doing, e.g. "writing the VirtualService".
    pub operation: String,
    pub message: String,
    /// True when retrying cannot help until someone changes the object or the plan.
    pub permanent: bool,
    pub since: DateTime<Utc>,
}

/// What a rollout releases: the service, its VirtualService, and which subset replaces which.
/// A plan edit that changes any of these is a new release (a new rollout from the live route);
/// any other edit continues the running one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Release {
    pub service: String,
    pub virtual_service: String,
    pub stable: String,
    pub canary: String,
}

impl std::fmt::Display for Release {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} → {}", self.stable, self.canary)
    }
}

/// The newest plan revision when it is not the one being run: invalid, unreadable, removed, or
/// waiting for the running release to be rolled back first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingRevision {
    /// The commit of the newest revision (empty when the plan was removed).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub revision: String,
    /// Why it is not run, in one sentence.
    pub why: String,
    /// Its validation findings (file, line, column, field and fix).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<String>,
    pub since: DateTime<Utc>,
}

/// One phase or step change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transition {
    pub at: DateTime<Utc>,
    pub from: Phase,
    pub to: Phase,
    pub step: usize,
    pub canary_weight: u8,
    pub reason: String,
}

/// The whole status document of one rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub rollout: RolloutId,
    /// The plan revision being run (the newest valid one).
    pub plan: PlanRef,
    /// What is being released; `None` in statuses written before tidegate recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<Release>,
    /// The newest revision, when it differs from `plan` and cannot be run (yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingRevision>,
    pub phase: Phase,
    /// Index of the current step; equal to the number of steps once all have run.
    pub step: usize,
    pub step_count: usize,
    pub step_started_at: DateTime<Utc>,
    /// The routes as tidegate set them.
    pub route: RouteState,
    /// What the last read-back of the VirtualService said.
    #[serde(default)]
    pub read_back: ReadBack,
    #[serde(default)]
    pub analysis: AnalysisSummary,
    /// Why the rollout is in its phase, in one sentence.
    pub reason: String,
    /// Validation findings of an `Invalid` plan or preflight errors holding a `Pending` one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<String>,
    /// Since when the metrics source has been unreachable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_unreachable_since: Option<DateTime<Utc>>,
    /// Work that keeps failing (retried meanwhile); `None` once it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<Fault>,
    /// The phase a `RollingBack` rollout ends in (`RolledBack` or `Aborted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_to: Option<Phase>,
    /// Newest last, bounded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub controls: Vec<ControlRecord>,
    /// Newest last, bounded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Transition>,
    pub updated_at: DateTime<Utc>,
}

impl Status {
    /// The status of a rollout that has not started: Pending at step 0, all traffic on stable.
    pub fn fresh(
        id: &RolloutId,
        plan_ref: &PlanRef,
        step_count: usize,
        now: DateTime<Utc>,
    ) -> Status {
        Status {
            rollout: id.clone(),
            plan: plan_ref.clone(),
            release: None,
            pending: None,
            phase: Phase::Pending,
            step: 0,
            step_count,
            step_started_at: now,
            route: RouteState::all_stable(),
            read_back: ReadBack::Unknown,
            analysis: AnalysisSummary::default(),
            reason: "waiting to start".into(),
            findings: Vec::new(),
            metrics_unreachable_since: None,
            fault: None,
            rollback_to: None,
            controls: Vec::new(),
            history: Vec::new(),
            updated_at: now,
        }
    }
}
