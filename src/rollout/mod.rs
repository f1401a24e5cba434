//! The rollout engine: a pure state machine `step(plan, status, observation, now) -> Decision`.
//!
//! No I/O and no clock: the daemon gathers the observation, calls [`step`], executes the
//! effects in order (traffic first, then notifications, then the status commit) and calls again
//! at `wake_at` or when something happens (a push, a webhook).

mod engine;
mod reconcile;
mod revision;
mod status;
mod types;

#[cfg(test)]
mod revision_tests;
#[cfg(test)]
mod tests;

pub use engine::{
    CONTROLS_LIMIT, HISTORY_LIMIT, fault, invalid, refuse_while_blocked, round_outcome, step,
};
pub use reconcile::{reconcile, route_at};
pub use revision::{Newest, Revisions, decide, release_of, resume_at};
pub use status::{
    AnalysisSummary, ControlRecord, Fault, PendingRevision, PlanRef, Release, Status, Transition,
};
pub use types::{
    ControlRequest, Decision, Effect, Event, MissingSubsets, Observation, Phase, ReadBack,
    RefusedControl, RouteState,
};
