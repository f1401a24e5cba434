//! The engine's vocabulary: phases, route state, observations in, effects and decisions out.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::analysis::Verdict;
use crate::control::ControlAction;
use crate::plan::HeaderRoute;

/// Where a rollout is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Phase {
    /// Known but not started: waiting for the window or for preflight findings to clear.
    Pending,
    /// Running the steps.
    Progressing,
    /// Holding at the current step until a `resume` control commit.
    Paused,
    /// Sending all traffic to the canary after the last step (or a `promote` control).
    Promoting,
    /// Done; the canary took over (or the plan said `onSuccess: keep`).
    Succeeded,
    /// Sending all traffic back to stable.
    RollingBack,
    /// Done; the canary failed its checks and all traffic is on stable.
    RolledBack,
    /// Done; a person aborted the rollout and all traffic is on stable.
    Aborted,
    /// The plan failed validation; no traffic moves until a valid revision is committed.
    Invalid,
}

impl Phase {
    /// Terminal phases emit no traffic effect and wait for a new plan revision (or `retry`).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Phase::Succeeded | Phase::RolledBack | Phase::Aborted | Phase::Invalid
        )
    }

    /// Under way: the canary may have traffic and the mesh objects it depends on matter (a
    /// step, a pause, a promotion or a rollback in progress).
    pub fn is_under_way(self) -> bool {
        matches!(
            self,
            Phase::Progressing | Phase::Paused | Phase::Promoting | Phase::RollingBack
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Progressing => "Progressing",
            Phase::Paused => "Paused",
            Phase::Promoting => "Promoting",
            Phase::Succeeded => "Succeeded",
            Phase::RollingBack => "RollingBack",
            Phase::RolledBack => "RolledBack",
            Phase::Aborted => "Aborted",
            Phase::Invalid => "Invalid",
        }
    }

    /// Every phase (bounded metric label set).
    pub const ALL: [Phase; 9] = [
        Phase::Pending,
        Phase::Progressing,
        Phase::Paused,
        Phase::Promoting,
        Phase::Succeeded,
        Phase::RollingBack,
        Phase::RolledBack,
        Phase::Aborted,
        Phase::Invalid,
    ];
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// What tidegate wants the managed routes to look like. Stable gets `100 - canary_weight`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteState {
    /// Percent of the managed routes' traffic sent to the canary subset (0..=100).
    pub canary_weight: u8,
    /// A first-match route sending matching requests to the canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_route: Option<HeaderRoute>,
    /// Percent of stable traffic mirrored to the canary (0 = no mirror).
    #[serde(default)]
    pub mirror_percent: u8,
}

impl RouteState {
    pub fn stable_weight(&self) -> u8 {
        100u8.saturating_sub(self.canary_weight)
    }

    /// All traffic on stable, nothing of tidegate's left in the routes.
    pub fn all_stable() -> RouteState {
        RouteState::default()
    }

    /// All traffic on the canary, nothing of tidegate's left in the routes.
    pub fn all_canary() -> RouteState {
        RouteState {
            canary_weight: 100,
            header_route: None,
            mirror_percent: 0,
        }
    }
}

impl fmt::Display for RouteState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "stable {}% / canary {}%",
            self.stable_weight(),
            self.canary_weight
        )?;
        if let Some(h) = &self.header_route {
            write!(f, ", header route ({h})")?;
        }
        if self.mirror_percent > 0 {
            write!(f, ", mirror {}%", self.mirror_percent)?;
        }
        Ok(())
    }
}

/// What the mesh adapter read back from the VirtualService after the last write.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum ReadBack {
    /// The managed routes are exactly as tidegate last set them.
    Verified,
    /// Someone else changed the managed routes; this is what is there now.
    Drifted { actual: RouteState, detail: String },
    /// Not observed (no router, or it cannot verify this shape): trust the write.
    #[default]
    Unknown,
}

/// A control commit's request, already accepted by the control policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ControlRequest {
    pub action: ControlAction,
    pub commit: String,
    pub author: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// A control commit that was refused before reaching the engine; it is recorded, never dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RefusedControl {
    pub action: String,
    pub commit: String,
    pub author: String,
    pub why: String,
}

/// Everything the engine is told about the world at `now`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observation {
    pub read_back: ReadBack,
    /// Verdicts of the analysis round that ran since the last call; empty when none ran.
    pub verdicts: Vec<Verdict>,
    /// Accepted control requests, oldest first.
    pub controls: Vec<ControlRequest>,
    /// Control commits the policy refused (or that named an unknown action), to record.
    pub refused: Vec<RefusedControl>,
    /// False when the metrics source could not be queried this round.
    pub metrics_unreachable: bool,
    /// False when `now` lies outside the plan's window (always true without a window).
    pub outside_window: bool,
    /// Error-level preflight findings that forbid moving traffic (checked before the first step
    /// of every revision, and again whenever an object the rollout depends on changes).
    pub preflight_errors: Vec<String>,
    /// Why progress holds whatever else allows it (the newest revision cannot be run).
    pub held_by: Option<String>,
    /// Roll back now, for this reason (the plan was removed).
    pub roll_back: Option<String>,
    /// The subsets the DestinationRule defines, as last checked (`None`: not known yet). The
    /// engine judges the plan it runs against them itself: the observation may have been made
    /// for another revision.
    pub present_subsets: Option<std::collections::BTreeSet<String>>,
    /// Service hosts of the rollout's plans (as written) that the objects, as last read, show
    /// do not exist: the sides of a host-level split that went missing.
    pub absent_hosts: std::collections::BTreeSet<String>,
    /// Routes the plan does not manage that still send to the canary (labels, e.g. `"beta"`).
    pub canary_elsewhere: Vec<String>,
    /// Destinations of other subsets at weight 0 that the first write drops (`route → subset`).
    pub dropping: Vec<String>,
}

/// Which of a plan's subsets the DestinationRule does not define (as last watched).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MissingSubsets {
    pub stable: bool,
    pub canary: bool,
}

/// A notification event (users choose which they want).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Event {
    Started,
    StepAdvanced,
    Paused,
    Resumed,
    Promoting,
    Succeeded,
    RollingBack,
    RolledBack,
    Aborted,
    Invalid,
    Drift,
    /// A step waited longer than the plan's `progressDeadline`.
    Deadline,
    /// The daemon cannot carry out a decision (the VirtualService cannot be written or read).
    Blocked,
    /// A control named no rollout tidegate knows (unknown, ambiguous or malformed name).
    Refused,
}

/// Something the daemon must do for a decision to take effect, in this order.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase", tag = "effect")]
pub enum Effect {
    /// Patch the managed routes to this state (weights, header route, mirror).
    SetRoute { route: RouteState },
    /// Remove every route tidegate added and leave the managed routes as `route`.
    ClearManagedRoutes { route: RouteState },
    /// Tell people.
    Notify { event: Event, message: String },
    /// The status changed: write it to Git.
    RecordStatus,
    /// The plan is gone and its routes are clean: stop managing the rollout, remove its status.
    Forget,
}

impl Effect {
    pub fn is_traffic(&self) -> bool {
        matches!(
            self,
            Effect::SetRoute { .. } | Effect::ClearManagedRoutes { .. }
        )
    }
}

/// The engine's answer: the new status, what to do, and when to call again.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub status: super::Status,
    pub effects: Vec<Effect>,
    /// When to call `step` again at the latest; `None` waits for an outside event (a commit).
    pub wake_at: Option<DateTime<Utc>>,
    /// The transitions this decision made (for commit messages and notifications).
    pub transitions: Vec<super::Transition>,
}
