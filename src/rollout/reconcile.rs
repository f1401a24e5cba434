//! Start-up reconciliation: the VirtualService may be one write ahead of the status in Git.

use chrono::{DateTime, Utc};

use super::engine::{HISTORY_LIMIT, push_bounded};
use super::status::{PlanRef, Status, Transition};
use super::types::{Phase, ReadBack, RouteState};
use crate::plan::{OnSuccess, Plan, Step};

/// The routes the plan has set once steps `0..=index` have run (index past the end: all of them).
pub fn route_at(plan: &Plan, index: usize) -> RouteState {
    let mut route = RouteState::all_stable();
    for step in plan.steps.iter().take(index.saturating_add(1)) {
        match step {
            Step::SetWeight(w) => route.canary_weight = *w,
            Step::SetHeaderRoute(h) => route.header_route = Some(h.clone()),
            Step::SetMirror(p) => route.mirror_percent = *p,
            Step::Analyze(_) | Step::Pause(_) => {}
        }
    }
    route
}

/// Start-up reconciliation: the VirtualService may be one write ahead of the status in Git (a
/// crash between the traffic change and the status commit that reports it). When the routes
/// found (`actual`) are exactly what the plan sets at a later step, or what a rollback or
/// promotion in progress sets, adopt them: return the status the lost decision would have
/// written. Anything else is left to the engine, which reports it as drift.
///
/// `status` is `None` when Git has no status yet (the crash came before the first status
/// commit): the rollout is then treated as `Pending` at step 0.
pub fn reconcile(
    plan: &Plan,
    plan_ref: &PlanRef,
    status: Option<&Status>,
    actual: &RouteState,
    now: DateTime<Utc>,
) -> Option<Status> {
    let fresh;
    let status = match status {
        Some(s) => s,
        None => {
            fresh = Status::fresh(&plan.id, plan_ref, plan.steps.len(), now);
            &fresh
        }
    };
    if status.phase.is_terminal() || *actual == status.route {
        return None;
    }
    let mut s = status.clone();
    let adopt = |s: &mut Status, to: Phase, step: usize, reason: String| {
        let from = s.phase;
        s.phase = to;
        s.step = step;
        s.step_started_at = now;
        s.route = actual.clone();
        s.read_back = ReadBack::Verified;
        s.reason = reason.clone();
        s.updated_at = now;
        push_bounded(
            &mut s.history,
            Transition {
                at: now,
                from,
                to,
                step,
                canary_weight: actual.canary_weight,
                reason,
            },
            HISTORY_LIMIT,
        );
    };
    if *actual == RouteState::all_stable() && s.phase == Phase::RollingBack {
        let to = s.rollback_to.unwrap_or(Phase::RolledBack);
        adopt(
            &mut s,
            to,
            status.step,
            "after restart: all traffic was already back on stable".into(),
        );
        return Some(s);
    }
    if !matches!(
        s.phase,
        Phase::Progressing | Phase::Paused | Phase::Pending | Phase::Promoting
    ) {
        return None;
    }
    // A pending rollout has not run step 0 yet; an active one has run its current step.
    let first = if status.phase == Phase::Pending {
        0
    } else {
        status.step + 1
    };
    for j in first..plan.steps.len() {
        if route_at(plan, j) == *actual {
            let phase = match plan.steps.get(j) {
                Some(Step::Pause(None)) => Phase::Paused,
                _ => Phase::Progressing,
            };
            adopt(
                &mut s,
                phase,
                j,
                format!("after restart: the VirtualService already had step {j}'s routes"),
            );
            return Some(s);
        }
    }
    if *actual == RouteState::all_canary() && plan.on_success == OnSuccess::Promote {
        s.step = plan.steps.len();
        adopt(
            &mut s,
            Phase::Succeeded,
            plan.steps.len(),
            "after restart: all traffic was already on the canary".into(),
        );
        return Some(s);
    }
    None
}
