//! The rollout engine: a pure state machine `step(plan, status, observation, now) -> Decision`.

mod status;
mod types;

pub use status::{AnalysisSummary, ControlRecord, PlanRef, Status, Transition};
pub use types::{
    ControlRequest, Decision, Effect, Event, Observation, Phase, ReadBack, RouteState,
};
