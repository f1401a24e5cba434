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
/// found (`actual`) are exactly what the next decision would have written (a step up to the
/// next analysis or pause, the promotion, or a rollback in progress), adopt them: return the
/// status the lost decision would have written. Anything else — a later step's route included —
/// is left to the engine, which reports it as drift.
///
/// `status` is `None` when Git has no status yet (the crash came before the first status
/// commit, or the plan is new): the rollout is then treated as `Pending` at step 0, and a route
/// already all on the canary (a plan added again after its promotion and removal) is adopted as
/// done rather than sent back to the stable.
pub fn reconcile(
    plan: &Plan,
    plan_ref: &PlanRef,
    status: Option<&Status>,
    actual: &RouteState,
    now: DateTime<Utc>,
) -> Option<Status> {
    let (mut s, new) = match status {
        Some(s) => (s.clone(), false),
        None => (
            Status::fresh(&plan.id, plan_ref, plan.steps.len(), now),
            true,
        ),
    };
    if s.phase.is_terminal() || *actual == s.route {
        return None;
    }
    let when = if new {
        "when the plan was read"
    } else {
        "after restart"
    };
    let (to, step, reason) = if s.phase == Phase::RollingBack {
        rolled_back(&s, actual)?
    } else {
        let ready = could_have_written(plan, &s, now);
        ready
            .then(|| next_write(plan, &s, actual, when))
            .flatten()
            .or_else(|| promoted(plan, &s, actual, when, new, ready))?
    };
    adopt(&mut s, actual, now, to, step, reason);
    Some(s)
}

/// A rollback whose traffic change landed.
fn rolled_back(s: &Status, actual: &RouteState) -> Option<(Phase, usize, String)> {
    (*actual == RouteState::all_stable()).then(|| {
        (
            s.rollback_to.unwrap_or(Phase::RolledBack),
            s.step,
            "after restart: all traffic was already back on stable".into(),
        )
    })
}

/// Whether the next decision could have written at all by `now`: a pending rollout inside its
/// window, or a running one whose current step could be done (an analysis or timed pause whose
/// time is up; never a `pause: {}`). Otherwise the route is someone else's. (Whether the step's
/// check passed is not asked: the round that passed may be the one whose status was lost.)
fn could_have_written(plan: &Plan, s: &Status, now: DateTime<Utc>) -> bool {
    match s.phase {
        Phase::Pending => plan.window.as_ref().is_none_or(|w| w.contains(now)),
        Phase::Progressing => match plan.steps.get(s.step) {
            Some(Step::Analyze(d) | Step::Pause(Some(d))) => {
                (now - s.step_started_at).to_std().unwrap_or_default() >= *d
            }
            Some(Step::Pause(None)) => false,
            _ => true,
        },
        _ => true,
    }
}

/// The first step at or after `first` that waits (an analysis or a pause), or the step count.
fn next_wait(plan: &Plan, first: usize) -> usize {
    (first..plan.steps.len())
        .find(|&j| matches!(plan.steps[j], Step::Analyze(_) | Step::Pause(_)))
        .unwrap_or(plan.steps.len())
}

/// The step whose routes `actual` are, among those the next decision runs (up to the next step
/// that waits). Paused waits for a control, which is delivered again after a restart.
fn next_write(
    plan: &Plan,
    s: &Status,
    actual: &RouteState,
    when: &str,
) -> Option<(Phase, usize, String)> {
    let first = match s.phase {
        Phase::Pending => 0,
        Phase::Progressing => s.step + 1,
        _ => return None,
    };
    let last = next_wait(plan, first).min(plan.steps.len().saturating_sub(1));
    let j = (first..=last).find(|&j| route_at(plan, j) == *actual)?;
    let phase = match plan.steps.get(j) {
        Some(Step::Pause(None)) => Phase::Paused,
        _ => Phase::Progressing,
    };
    Some((
        phase,
        j,
        format!("{when}: the VirtualService already had step {j}'s routes"),
    ))
}

/// All on the canary: the promotion's write (when it comes next), or — for a rollout without a
/// status — a release someone already promoted.
fn promoted(
    plan: &Plan,
    s: &Status,
    actual: &RouteState,
    when: &str,
    new: bool,
    ready: bool,
) -> Option<(Phase, usize, String)> {
    if *actual != RouteState::all_canary() || plan.on_success != OnSuccess::Promote {
        return None;
    }
    let next = match s.phase {
        Phase::Promoting => true,
        Phase::Pending => ready && next_wait(plan, 0) == plan.steps.len(),
        Phase::Progressing => ready && next_wait(plan, s.step + 1) == plan.steps.len(),
        _ => return None,
    };
    let reason = if next {
        format!("{when}: all traffic was already on the canary")
    } else if new {
        format!(
            "{when}: all traffic was already on the canary, so nothing is rolled out \
             (tidegate did not analyse this release)"
        )
    } else {
        return None;
    };
    Some((Phase::Succeeded, plan.steps.len(), reason))
}

fn adopt(
    s: &mut Status,
    actual: &RouteState,
    now: DateTime<Utc>,
    to: Phase,
    step: usize,
    reason: String,
) {
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
}
