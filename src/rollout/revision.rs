//! Which plan revision a rollout runs, and from where: the rules of docs/lifecycle.md for a
//! plan that is edited, made invalid, removed, or replaced by a new release.
//!
//! - The same content as the status's revision continues where it was.
//! - Another revision of the same release (service, VirtualService, stable and canary unchanged)
//!   continues from the live route: a running rollout resumes at the first step that would raise
//!   the canary above its weight now ([`resume_at`]); a finished one adopts the revision and moves
//!   no traffic.
//! - A new release starts from the live route once the previous one is finished; a running one
//!   is rolled back first (a promotion in progress is let finish).
//! - While the newest revision is invalid, unreadable or removed, the last valid one (the guard)
//!   keeps the rollout analysed and able to roll back; a removed plan rolls back, clears
//!   tidegate's routes, and is then forgotten.

use chrono::{DateTime, Utc};

use super::engine::{Machine, short};
use super::reconcile::route_at;
use super::status::{PendingRevision, PlanRef, Release, Status};
use super::types::{Decision, Effect, Event, Observation, Phase, ReadBack, RouteState};
use crate::plan::{Plan, RolloutId, Step};

/// The newest revision of a rollout's plan, as Git has it now.
#[derive(Debug, Clone, Copy)]
pub enum Newest<'a> {
    Valid {
        plan: &'a Plan,
        plan_ref: &'a PlanRef,
    },
    /// Invalid YAML, an invalid meaning, or an unreadable file.
    Invalid {
        plan_ref: &'a PlanRef,
        findings: &'a [String],
    },
    /// The plan is gone from the repository.
    Removed,
}

/// The revisions a decision may use.
#[derive(Debug, Clone, Copy)]
pub struct Revisions<'a> {
    pub id: &'a RolloutId,
    pub newest: Newest<'a>,
    /// The last valid revision, the one the status was written for, when the newest is not it.
    pub guard: Option<(&'a Plan, &'a PlanRef)>,
}

impl<'a> Revisions<'a> {
    /// Only a valid newest revision is known.
    pub fn valid(plan: &'a Plan, plan_ref: &'a PlanRef) -> Revisions<'a> {
        Revisions {
            id: &plan.id,
            newest: Newest::Valid { plan, plan_ref },
            guard: None,
        }
    }
}

/// What `plan` releases.
pub fn release_of(plan: &Plan) -> Release {
    Release {
        service: plan.service.clone(),
        virtual_service: plan.virtual_service.clone(),
        stable: plan.stable.clone(),
        canary: plan.canary.clone(),
    }
}

/// Decide for a rollout given every revision it has.
pub fn decide(
    revs: &Revisions,
    prev: Option<&Status>,
    obs: &Observation,
    now: DateTime<Utc>,
) -> Decision {
    match revs.newest {
        Newest::Valid { plan, plan_ref } => valid(plan, plan_ref, revs.guard, prev, obs, now),
        Newest::Invalid { plan_ref, findings } => match (revs.guard, prev) {
            (Some(guard), Some(p)) if is_guarded(p, guard.1) => {
                let why = format!(
                    "the newest plan revision {} is invalid ({} finding{})",
                    short(&plan_ref.revision),
                    findings.len(),
                    if findings.len() == 1 { "" } else { "s" }
                );
                let pending = pending(p, &plan_ref.revision, &why, findings, now);
                held(guard, p, pending, obs, now)
            }
            _ => super::engine::invalid(revs.id, plan_ref, findings.to_vec(), prev, obs, now),
        },
        Newest::Removed => removed(revs, prev, obs, now),
    }
}

/// Whether `p` is a status of `guard_ref`'s revision that may still have traffic to guard.
fn is_guarded(p: &Status, guard_ref: &PlanRef) -> bool {
    p.plan.digest == guard_ref.digest && !matches!(p.phase, Phase::Pending | Phase::Invalid)
}

/// The pending-revision note, keeping its first `since`.
fn pending(
    p: &Status,
    revision: &str,
    why: &str,
    findings: &[String],
    now: DateTime<Utc>,
) -> PendingRevision {
    let since = match &p.pending {
        Some(old) if old.revision == revision && old.why == why => old.since,
        _ => now,
    };
    PendingRevision {
        revision: revision.to_owned(),
        why: why.to_owned(),
        findings: findings.to_vec(),
        since,
    }
}

/// Run the guard revision, holding progress, with `pending` recorded (people told once).
fn held(
    guard: (&Plan, &PlanRef),
    p: &Status,
    pending: PendingRevision,
    obs: &Observation,
    now: DateTime<Utc>,
) -> Decision {
    let (plan, plan_ref) = guard;
    let mut status = p.clone();
    status.plan = plan_ref.clone();
    let first = p
        .pending
        .as_ref()
        .is_none_or(|o| o.revision != pending.revision);
    let hold = if p.phase.is_terminal() {
        format!(
            "{}; revision {} stays in force",
            pending.why,
            short(&plan_ref.revision)
        )
    } else {
        format!(
            "{}; revision {} keeps being analysed and can roll back",
            pending.why,
            short(&plan_ref.revision)
        )
    };
    status.pending = Some(pending);
    let mut m = Machine::new(plan, status, now);
    if first {
        m.effects.push(Effect::Notify {
            event: Event::Invalid,
            message: format!("{}: {hold}", p.rollout),
        });
    }
    m.hold(hold);
    m.run(obs, Some(p))
}

/// A valid newest revision.
fn valid(
    plan: &Plan,
    plan_ref: &PlanRef,
    guard: Option<(&Plan, &PlanRef)>,
    prev: Option<&Status>,
    obs: &Observation,
    now: DateTime<Utc>,
) -> Decision {
    let Some(p) = prev else {
        let fresh = Status::fresh(&plan.id, plan_ref, plan.steps.len(), now);
        return Machine::new(plan, fresh, now).run(obs, None);
    };
    if p.plan.digest == plan_ref.digest && p.phase != Phase::Invalid {
        let mut status = p.clone();
        // Same content; a commit that did not change the plan only moves the revision.
        status.plan = plan_ref.clone();
        status.pending = None;
        return Machine::new(plan, status, now).run(obs, prev);
    }
    if matches!(p.phase, Phase::Pending | Phase::Invalid) {
        return start_over(plan, plan_ref, p, obs, now);
    }
    let old = p
        .release
        .clone()
        .or_else(|| guard.map(|(g, _)| release_of(g)));
    // Managing other routes is a new release too: the running one is rolled back on the routes
    // it manages (a dropped route would otherwise keep its canary share, unmanaged).
    let routes_changed =
        guard.is_some_and(|(g, r)| r.digest == p.plan.digest && g.routes != plan.routes);
    if old.is_some_and(|o| o != release_of(plan)) || routes_changed {
        new_release(plan, plan_ref, guard, p, obs, now)
    } else {
        same_release(plan, plan_ref, p, obs, now)
    }
}

/// A rollout that never moved traffic starts again with the new revision.
fn start_over(
    plan: &Plan,
    plan_ref: &PlanRef,
    p: &Status,
    obs: &Observation,
    now: DateTime<Utc>,
) -> Decision {
    let mut status = Status::fresh(&plan.id, plan_ref, plan.steps.len(), now);
    status.controls = p.controls.clone();
    status.history = p.history.clone();
    status.phase = p.phase;
    let mut m = Machine::new(plan, status, now);
    m.transition(
        Phase::Pending,
        format!("new plan revision {}", short(&plan_ref.revision)),
        None,
    );
    if p.route != RouteState::all_stable() {
        // A status from before tidegate kept invalid revisions guarded: make sure.
        m.set_route(RouteState::all_stable(), true);
    }
    m.run(obs, Some(p))
}

/// Another revision of the running release.
fn same_release(
    plan: &Plan,
    plan_ref: &PlanRef,
    p: &Status,
    obs: &Observation,
    now: DateTime<Utc>,
) -> Decision {
    let mut status = p.clone();
    status.plan = plan_ref.clone();
    status.pending = None;
    let rev = short(&plan_ref.revision).to_owned();
    match p.phase {
        Phase::Progressing | Phase::Paused => {
            let (index, before) = resume_at(plan, &p.route);
            // A step that writes runs now (the step a status is at has been carried out); the
            // plan puts no analysis or pause between it and the route before it.
            let route = match plan.steps.get(index) {
                Some(Step::Analyze(_) | Step::Pause(_)) | None => before,
                Some(_) => route_at(plan, index),
            };
            if index != p.step {
                status.step = index;
                status.step_started_at = now;
                status.analysis.passed_in_step = false;
            }
            let mut m = Machine::new(plan, status, now);
            let to = match plan.steps.get(index) {
                Some(Step::Pause(None)) => Phase::Paused,
                _ => p.phase,
            };
            let mut reason = match plan.steps.get(index) {
                Some(step) => format!(
                    "plan revision {rev}: continuing at step {index} ({step}) from the live \
                     route; now {route}"
                ),
                None => {
                    format!("plan revision {rev}: every step is behind the live route ({route})")
                }
            };
            if let ReadBack::Drifted { actual, .. } = &p.read_back {
                reason.push_str(&format!(
                    " as tidegate set it; the VirtualService says {actual} (changed outside \
                     tidegate): `resume` re-applies tidegate's route"
                ));
            }
            // The route first, so the transition records the weight it leaves in place.
            if route != p.route {
                let clear = route.header_route.is_none() && p.route.header_route.is_some()
                    || route.mirror_percent == 0 && p.route.mirror_percent > 0;
                m.set_route(route, clear);
            }
            m.transition(to, reason, None);
            m.run(obs, Some(p))
        }
        phase if phase.is_terminal() => {
            let mut m = Machine::new(plan, status, now);
            let reason = if phase == Phase::Succeeded {
                format!("plan revision {rev} adopted; no traffic moved (the rollout had finished)")
            } else {
                format!(
                    "plan revision {rev} adopted; no traffic moved (the rollout had finished: \
                     `Tidegate: retry` runs it with this revision)"
                )
            };
            m.transition(phase, reason, None);
            m.run(obs, Some(p))
        }
        // Promoting and RollingBack finish under the new revision (same routes).
        _ => Machine::new(plan, status, now).run(obs, Some(p)),
    }
}

/// Where a running rollout continues with `plan` when traffic is at `live`: at the first step
/// that would raise the canary weight above the live one, moved back over the analysis and
/// pause steps just before it (so the weight is checked before it is raised). The route is what
/// the plan sets before that step; it never raises the canary, and lowers it only where the new
/// plan allows less.
pub fn resume_at(plan: &Plan, live: &RouteState) -> (usize, RouteState) {
    let raise = plan
        .steps
        .iter()
        .position(|s| matches!(s, Step::SetWeight(w) if *w > live.canary_weight))
        .unwrap_or(plan.steps.len());
    let mut index = raise;
    while index > 0
        && matches!(
            plan.steps.get(index - 1),
            Some(Step::Analyze(_) | Step::Pause(_))
        )
    {
        index -= 1;
    }
    let route = match index.checked_sub(1) {
        Some(before) => route_at(plan, before),
        None => RouteState::all_stable(),
    };
    (index, route)
}

/// The stable or canary (or service, or VirtualService) changed.
fn new_release(
    plan: &Plan,
    plan_ref: &PlanRef,
    guard: Option<(&Plan, &PlanRef)>,
    p: &Status,
    obs: &Observation,
    now: DateTime<Utc>,
) -> Decision {
    let release = release_of(plan);
    if p.phase.is_terminal() {
        let mut status = Status::fresh(&plan.id, plan_ref, plan.steps.len(), now);
        status.controls = p.controls.clone();
        status.history = p.history.clone();
        status.phase = p.phase;
        if all_on(p) == Some(plan.canary.as_str()) {
            return already_released(plan, status, p, obs, now);
        }
        let mut m = Machine::new(plan, status, now);
        let reason = format!(
            "new release {release} (revision {}): starting from the live route",
            short(&plan_ref.revision)
        );
        m.transition(Phase::Pending, reason, None);
        return m.run(obs, Some(p));
    }
    let why = match p.phase {
        Phase::Promoting | Phase::RollingBack => format!(
            "new release {release} waits until the running one has finished {}",
            if p.phase == Phase::Promoting {
                "promoting"
            } else {
                "rolling back"
            }
        ),
        _ => format!("new release {release} replaces the running one: rolling it back first"),
    };
    let Some((old_plan, old_ref)) = guard else {
        return stuck(p, plan_ref, &why, now);
    };
    // A new release that preflight refuses (say a typo in the canary's name) cannot start:
    // the running one is kept and guarded, not rolled back for it.
    if !obs.preflight_errors.is_empty() && matches!(p.phase, Phase::Progressing | Phase::Paused) {
        let why = format!(
            "new release {release} cannot start: preflight found {} error(s) in it",
            obs.preflight_errors.len()
        );
        let pending = pending(p, &plan_ref.revision, &why, &obs.preflight_errors, now);
        return held((old_plan, old_ref), p, pending, obs, now);
    }
    let pending = pending(p, &plan_ref.revision, &why, &[], now);
    let mut obs = obs.clone();
    if matches!(p.phase, Phase::Progressing | Phase::Paused) {
        obs.roll_back = Some(why);
    }
    let mut d = held((old_plan, old_ref), p, pending, &obs, now);
    if d.status.phase.is_terminal() {
        // The new release starts at once.
        d.wake_at = Some(now);
    }
    d
}

/// The subset a finished rollout's route sends every managed request to, if one does.
fn all_on(p: &Status) -> Option<&str> {
    let r = p.release.as_ref()?;
    if p.route == RouteState::all_canary() {
        Some(&r.canary)
    } else if p.route == RouteState::all_stable() {
        Some(&r.stable)
    } else {
        None
    }
}

/// A new release whose canary already has all the traffic (say a plan reverted to one that was
/// promoted): done, with no write — starting at step 0 would send most requests back to an
/// older subset.
fn already_released(
    plan: &Plan,
    mut status: Status,
    p: &Status,
    obs: &Observation,
    now: DateTime<Utc>,
) -> Decision {
    status.route = RouteState::all_canary();
    status.step = plan.steps.len();
    let mut m = Machine::new(plan, status, now);
    let reason = format!(
        "new release {}: all traffic is already on `{}`, so nothing is rolled out and no \
         traffic moves (tidegate did not analyse this release)",
        release_of(plan),
        plan.canary
    );
    m.transition(Phase::Succeeded, reason, None);
    m.run(obs, Some(p))
}

/// The previous revision is needed but unknown (a restart could not read it): keep the status,
/// say why, move nothing.
fn stuck(p: &Status, newest: &PlanRef, why: &str, now: DateTime<Utc>) -> Decision {
    let mut status = p.clone();
    status.pending = Some(pending(
        p,
        &newest.revision,
        &format!(
            "{why}, but revision {} cannot be read; traffic is left as it is",
            short(&p.plan.revision)
        ),
        &[],
        now,
    ));
    let changed = p.pending != status.pending;
    Decision {
        status,
        effects: if changed {
            vec![Effect::RecordStatus]
        } else {
            Vec::new()
        },
        wake_at: Some(now + chrono::Duration::seconds(30)),
        transitions: Vec::new(),
    }
}

/// The plan is gone from Git.
fn removed(
    revs: &Revisions,
    prev: Option<&Status>,
    obs: &Observation,
    now: DateTime<Utc>,
) -> Decision {
    let Some(p) = prev else {
        return forget(Status::fresh(revs.id, &PlanRef::default(), 0, now));
    };
    let untouched =
        matches!(p.phase, Phase::Pending | Phase::Invalid) && p.route == RouteState::all_stable();
    if untouched {
        return forget(p.clone());
    }
    let Some(guard) = revs.guard.filter(|(_, r)| r.digest == p.plan.digest) else {
        return stuck(p, &PlanRef::default(), "the plan was removed", now);
    };
    let why = "the plan was removed from Git".to_string();
    let pending = pending(p, "", &why, &[], now);
    if p.phase.is_terminal() {
        let mut d = Machine::new(guard.0, p.clone(), now).run(obs, Some(p));
        d.effects.push(Effect::ClearManagedRoutes {
            route: p.route.clone(),
        });
        d.effects.push(Effect::Forget);
        return d;
    }
    let mut obs = obs.clone();
    obs.roll_back = Some(format!("{why}; rolling back before tidegate lets go of it"));
    let mut d = held(guard, p, pending, &obs, now);
    // The rollback's own notification says it; "keeps being analysed" would not be true.
    d.effects.retain(|e| {
        !matches!(
            e,
            Effect::Notify {
                event: Event::Invalid,
                ..
            }
        )
    });
    if d.status.phase.is_terminal() {
        d.effects.push(Effect::Forget);
    }
    d
}

/// Stop managing the rollout (its routes are tidegate-free).
fn forget(status: Status) -> Decision {
    Decision {
        status,
        effects: vec![Effect::Forget],
        wake_at: None,
        transitions: Vec::new(),
    }
}
