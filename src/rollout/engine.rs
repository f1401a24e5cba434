//! The decision function. Given a plan, the last status, what was observed and the time, it
//! returns the next status, the effects that make it true, and when to be called again.
//!
//! Order of evaluation in one call, each a small function:
//! 1. a new plan digest restarts the rollout;
//! 2. the read-back of the routes (drift pauses the rollout);
//! 3. the analysis round: failures up to `failureLimit` roll back, unreachable metrics hold and
//!    roll back past `unreachableLimit`;
//! 4. control commits, oldest first;
//! 5. progress through the steps, unless held (window, metrics, inconclusive checks).

use chrono::{DateTime, Utc};

use super::status::{AnalysisSummary, ControlRecord, Fault, PlanRef, Status, Transition};
use super::types::*;
use crate::analysis::{Outcome, Verdict};
use crate::control::ControlAction;
use std::time::Duration;

use crate::plan::{OnDeadline, OnSuccess, Plan, RolloutId, Split, Step};

/// Transitions kept in a status document (oldest dropped first).
pub const HISTORY_LIMIT: usize = 50;
/// Control records kept in a status document (oldest dropped first).
pub const CONTROLS_LIMIT: usize = 50;

/// Decide what to do next for a valid plan. `prev` is the status read from Git (or `None` the
/// first time the plan is seen). A revision other than `prev`'s continues, restarts or starts a
/// new release as [`super::decide`] explains.
pub fn step(
    plan: &Plan,
    plan_ref: &PlanRef,
    prev: Option<&Status>,
    obs: &Observation,
    now: DateTime<Utc>,
) -> Decision {
    super::revision::decide(
        &super::revision::Revisions::valid(plan, plan_ref),
        prev,
        obs,
        now,
    )
}

/// The decision for a plan revision that failed validation: phase `Invalid` with the findings.
/// Traffic is left exactly as it is (no effect): tidegate never guesses with an invalid plan.
pub fn invalid(
    id: &RolloutId,
    plan_ref: &PlanRef,
    findings: Vec<String>,
    prev: Option<&Status>,
    obs: &Observation,
    now: DateTime<Utc>,
) -> Decision {
    let mut status = match prev {
        Some(p) => p.clone(),
        None => Status::fresh(id, plan_ref, 0, now),
    };
    let from = status.phase;
    status.plan = plan_ref.clone();
    let traffic = if status.route == RouteState::default() {
        String::new()
    } else {
        format!("; traffic left as it was ({})", status.route)
    };
    let reason = format!(
        "plan revision {} is invalid ({} finding{}){traffic}",
        short(&plan_ref.revision),
        findings.len(),
        if findings.len() == 1 { "" } else { "s" }
    );
    let changed = status.phase != Phase::Invalid || status.findings != findings;
    let mut transitions = Vec::new();
    let mut effects = Vec::new();
    if refuse_all(&mut status, obs, &reason, now) && !changed {
        status.updated_at = now;
        effects.push(Effect::RecordStatus);
    }
    if changed {
        status.findings = findings;
        status.phase = Phase::Invalid;
        status.reason = reason.clone();
        let t = Transition {
            at: now,
            from,
            to: Phase::Invalid,
            step: status.step,
            canary_weight: status.route.canary_weight,
            reason: reason.clone(),
        };
        push_bounded(&mut status.history, t.clone(), HISTORY_LIMIT);
        transitions.push(t);
        status.updated_at = now;
        effects.push(Effect::Notify {
            event: Event::Invalid,
            message: format!("{}: {reason}", status.rollout),
        });
        effects.push(Effect::RecordStatus);
    }
    Decision {
        status,
        effects,
        wake_at: None,
        transitions,
    }
}

/// The decision when the daemon could not carry out the last decision for `plan` (a write or a
/// read of the VirtualService failed permanently, or for longer than the retry limit): no traffic
/// effect; the status names the revision being worked on, keeps the live route and says what
/// fails and since when. People are told once, when the fault first appears. The daemon keeps
/// retrying; the next decision that lands clears the fault.
pub fn fault(
    plan: &Plan,
    plan_ref: &PlanRef,
    prev: Option<&Status>,
    fault: Fault,
    now: DateTime<Utc>,
) -> Decision {
    let mut status = match prev {
        Some(p) => p.clone(),
        None => Status::fresh(&plan.id, plan_ref, plan.steps.len(), now),
    };
    let mut transitions = Vec::new();
    let new_revision = status.plan.digest != plan_ref.digest;
    status.plan = plan_ref.clone();
    let what = if fault.permanent {
        "cannot be done until the object or the plan changes"
    } else {
        "keeps failing"
    };
    let reason = format!(
        "{} {what} (since {}): {}; retrying",
        fault.operation,
        fault.since.format("%Y-%m-%dT%H:%M:%SZ"),
        fault.message
    );
    if new_revision && status.phase != Phase::Pending {
        // The new revision has not started; the route is still the previous one's.
        let t = Transition {
            at: now,
            from: status.phase,
            to: Phase::Pending,
            step: 0,
            canary_weight: status.route.canary_weight,
            reason: format!("new plan revision {}: {reason}", short(&plan_ref.revision)),
        };
        status.phase = Phase::Pending;
        status.step = 0;
        status.step_count = plan.steps.len();
        status.step_started_at = now;
        push_bounded(&mut status.history, t.clone(), HISTORY_LIMIT);
        transitions.push(t);
    }
    let first = prev.is_none_or(|p| p.fault.is_none());
    let mut effects = Vec::new();
    if first {
        effects.push(Effect::Notify {
            event: Event::Blocked,
            message: format!("{}: {reason}", status.rollout),
        });
    }
    status.reason = reason;
    status.fault = Some(fault);
    let changed = prev.is_none_or(|p| significant_change(p, &status));
    if changed {
        status.updated_at = now;
        effects.push(Effect::RecordStatus);
    }
    Decision {
        status,
        effects,
        wake_at: None,
        transitions,
    }
}

/// Controls that arrive while tidegate cannot carry out decisions for the rollout (its status
/// shows a fault): each gets its answer now, refused with the fault, rather than waiting
/// unanswered for a write that may never succeed.
pub fn refuse_while_blocked(prev: &Status, obs: &Observation, now: DateTime<Utc>) -> Decision {
    let mut status = prev.clone();
    let why = match &prev.fault {
        Some(f) => format!(
            "tidegate cannot change the routes now ({}: {})",
            f.operation, f.message
        ),
        None => "tidegate cannot change the routes now".to_string(),
    };
    let mut effects = Vec::new();
    if refuse_all(&mut status, obs, &why, now) {
        status.updated_at = now;
        effects.push(Effect::RecordStatus);
    }
    Decision {
        status,
        effects,
        wake_at: None,
        transitions: Vec::new(),
    }
}

/// Record every control of `obs` as refused (the rollout has no valid plan to run it with);
/// whether there was any.
fn refuse_all(status: &mut Status, obs: &Observation, why: &str, now: DateTime<Utc>) -> bool {
    let refused = obs
        .refused
        .iter()
        .map(|r| (&r.commit, &r.author, r.action.clone(), r.why.clone()));
    let controls = obs.controls.iter().map(|c| {
        let note = format!("refused: {why}; fix that first");
        (&c.commit, &c.author, c.action.as_str().to_owned(), note)
    });
    let mut any = false;
    for (commit, author, action, note) in refused.chain(controls) {
        any = true;
        let record = ControlRecord {
            commit: commit.clone(),
            author: author.clone(),
            action,
            applied: false,
            note,
            at: now,
        };
        push_bounded(&mut status.controls, record, CONTROLS_LIMIT);
    }
    any
}

pub(super) fn short(rev: &str) -> &str {
    rev.get(..12).unwrap_or(rev)
}

pub(super) fn push_bounded<T>(v: &mut Vec<T>, item: T, limit: usize) {
    v.push(item);
    if v.len() > limit {
        let excess = v.len() - limit;
        v.drain(..excess);
    }
}

pub(super) struct Machine<'p> {
    plan: &'p Plan,
    now: DateTime<Utc>,
    pub(super) status: Status,
    pub(super) effects: Vec<Effect>,
    transitions: Vec<Transition>,
    /// A traffic change was requested and must be confirmed by the next read-back.
    awaiting_route: bool,
    /// Something this call forbids progress (window, metrics, drift, a fresh control).
    held: Option<String>,
    /// Why progress holds, for the status (the newest revision cannot be run, a subset is
    /// missing); such a hold also refuses controls that would move traffic forward.
    hold_reason: Option<String>,
    /// The passing verdicts that let a hold complete, for the next transition's reason.
    justification: Option<String>,
    /// The DestinationRule lacks the stable subset: a rollback waits instead of sending every
    /// request to a subset that does not exist.
    stable_missing: bool,
}

impl<'p> Machine<'p> {
    /// A machine that continues from `status` (already adapted to `plan`'s revision).
    pub(super) fn new(plan: &'p Plan, mut status: Status, now: DateTime<Utc>) -> Machine<'p> {
        // This decision is being carried out: any earlier fault is over.
        status.fault = None;
        status.step_count = plan.steps.len();
        status.release = Some(super::revision::release_of(plan));
        Machine {
            plan,
            now,
            status,
            effects: Vec::new(),
            transitions: Vec::new(),
            awaiting_route: false,
            held: None,
            hold_reason: None,
            justification: None,
            stable_missing: false,
        }
    }

    /// Decide: the observation in the engine's order of evaluation.
    pub(super) fn run(mut self, obs: &Observation, prev: Option<&Status>) -> Decision {
        self.stable_missing = self.missing(obs).stable;
        if let Some(why) = &obs.held_by {
            self.hold(why.clone());
        }
        self.record_refused(obs);
        self.read_back(obs);
        // The round's verdicts count before any control of the same call: a control never
        // hides a failed check (a failing canary rolls back; a pause or promote that arrives
        // with it is then refused, an abort only changes the final phase).
        self.analysis(obs);
        self.mesh_checks(obs);
        self.controls(obs);
        self.progress(obs);
        self.finish(prev)
    }

    pub(super) fn hold(&mut self, why: String) {
        self.held = Some(why.clone());
        self.hold_reason = Some(why);
    }

    pub(super) fn transition(&mut self, to: Phase, reason: String, event: Option<Event>) {
        let from = self.status.phase;
        self.status.phase = to;
        self.status.reason = reason.clone();
        let t = Transition {
            at: self.now,
            from,
            to,
            step: self.status.step,
            canary_weight: self.status.route.canary_weight,
            reason: reason.clone(),
        };
        push_bounded(&mut self.status.history, t.clone(), HISTORY_LIMIT);
        self.transitions.push(t);
        if let Some(event) = event {
            self.effects.push(Effect::Notify {
                event,
                message: format!("{} {to}: {reason}", self.status.rollout),
            });
        }
    }

    pub(super) fn set_route(&mut self, route: RouteState, clear: bool) {
        self.status.route = route.clone();
        self.effects.retain(|e| !e.is_traffic());
        self.effects.push(if clear {
            Effect::ClearManagedRoutes { route }
        } else {
            Effect::SetRoute { route }
        });
        self.status.read_back = ReadBack::Unknown;
        self.awaiting_route = true;
    }

    fn record_control(
        &mut self,
        commit: &str,
        author: &str,
        action: &str,
        applied: bool,
        note: String,
    ) {
        push_bounded(
            &mut self.status.controls,
            ControlRecord {
                commit: commit.to_owned(),
                author: author.to_owned(),
                action: action.to_owned(),
                applied,
                note,
                at: self.now,
            },
            CONTROLS_LIMIT,
        );
    }

    fn record_refused(&mut self, obs: &Observation) {
        for r in &obs.refused {
            self.record_control(&r.commit, &r.author, &r.action, false, r.why.clone());
        }
    }

    fn read_back(&mut self, obs: &Observation) {
        if self.awaiting_route {
            // A restart just asked for a new route; the observation predates it.
            return;
        }
        self.status.read_back = obs.read_back.clone();
        let ReadBack::Drifted { actual, detail } = &obs.read_back else {
            return;
        };
        match self.status.phase {
            Phase::Progressing | Phase::Promoting => {
                // `detail` says expected and found, and which managed routes disagree.
                let reason = format!(
                    "drift: the VirtualService was changed outside tidegate ({detail}); resume to re-apply"
                );
                self.transition(Phase::Paused, reason, Some(Event::Drift));
                self.held = Some("drift".into());
            }
            // While the stable subset is missing the rollback writes nothing: someone else's
            // route (an operator's fix) is left alone and becomes the one to hold.
            Phase::RollingBack if self.stable_missing => {
                self.status.route = actual.clone();
            }
            Phase::RollingBack => {
                // Keep pushing traffic to stable: a rollback is never given up.
                let route = self.status.route.clone();
                self.set_route(route, true);
            }
            _ => {}
        }
    }

    fn controls(&mut self, obs: &Observation) {
        for c in &obs.controls {
            let note = if c.reason.is_empty() {
                String::new()
            } else {
                c.reason.clone()
            };
            let result = self.apply_control(c.action, &note);
            let (applied, note) = match result {
                Ok(()) => (true, note),
                Err(why) => (false, why),
            };
            self.record_control(&c.commit, &c.author, c.action.as_str(), applied, note);
            if applied {
                self.held = Some(format!("{} control", c.action));
            }
        }
    }

    fn apply_control(&mut self, action: ControlAction, note: &str) -> Result<(), String> {
        let phase = self.status.phase;
        let by = |what: &str| {
            if note.is_empty() {
                what.to_owned()
            } else {
                format!("{what}: {note}")
            }
        };
        if let Some(hold) = &self.hold_reason
            && matches!(
                action,
                ControlAction::Promote | ControlAction::Retry | ControlAction::Resume
            )
        {
            return Err(if phase.is_terminal() {
                format!("refused while {hold}")
            } else {
                format!("refused while {hold}; pause and abort still work")
            });
        }
        match action {
            ControlAction::Pause => match phase {
                Phase::Pending | Phase::Progressing | Phase::Promoting => {
                    self.transition(
                        Phase::Paused,
                        by("paused by control commit"),
                        Some(Event::Paused),
                    );
                    Ok(())
                }
                _ => Err(format!("cannot pause a rollout that is {phase}")),
            },
            ControlAction::Resume => match phase {
                Phase::Paused => {
                    self.transition(
                        Phase::Progressing,
                        by("resumed by control commit"),
                        Some(Event::Resumed),
                    );
                    if matches!(
                        self.plan.steps.get(self.status.step),
                        Some(Step::Pause(None))
                    ) {
                        let next = self.status.step + 1;
                        self.enter_step(next);
                    } else {
                        // Re-assert tidegate's routes (they may have drifted while paused).
                        let route = self.status.route.clone();
                        self.set_route(route, false);
                        self.restart_overdue_step();
                    }
                    Ok(())
                }
                _ => Err(format!(
                    "cannot resume a rollout that is {phase}, not Paused"
                )),
            },
            ControlAction::Abort => match phase {
                Phase::Pending | Phase::Progressing | Phase::Paused | Phase::Promoting => {
                    self.rollback(Phase::Aborted, by("aborted by control commit"));
                    Ok(())
                }
                Phase::RollingBack => {
                    self.status.rollback_to = Some(Phase::Aborted);
                    Ok(())
                }
                _ => Err(format!("cannot abort a rollout that is {phase}")),
            },
            ControlAction::Promote => match phase {
                Phase::Pending | Phase::Progressing | Phase::Paused => {
                    self.status.step = self.plan.steps.len();
                    self.status.step_started_at = self.now;
                    self.promote(by(
                        "promoted by control commit, skipping the remaining steps",
                    ));
                    Ok(())
                }
                _ => Err(format!("cannot promote a rollout that is {phase}")),
            },
            ControlAction::Retry => match phase {
                Phase::RolledBack | Phase::Aborted => {
                    self.status.analysis = AnalysisSummary {
                        counting_from: Some(self.now),
                        ..AnalysisSummary::default()
                    };
                    self.status.metrics_unreachable_since = None;
                    self.status.rollback_to = None;
                    self.status.findings.clear();
                    self.transition(
                        Phase::Progressing,
                        by("retried by control commit"),
                        Some(Event::Started),
                    );
                    self.enter_step(0);
                    Ok(())
                }
                _ => Err(format!(
                    "cannot retry a rollout that is {phase}; retry applies after RolledBack or Aborted"
                )),
            },
        }
    }

    pub(super) fn rollback(&mut self, to: Phase, reason: String) {
        self.status.rollback_to = Some(to);
        if self.stable_missing {
            let reason = format!("{reason}; {}", self.waiting_for_stable());
            self.transition(Phase::RollingBack, reason, Some(Event::RollingBack));
            return;
        }
        self.set_route(RouteState::all_stable(), true);
        self.transition(Phase::RollingBack, reason, Some(Event::RollingBack));
    }

    /// Which of this plan's subsets the DestinationRule lacks, or which of its Services are
    /// gone when it splits by host.
    fn missing(&self, obs: &Observation) -> MissingSubsets {
        match &obs.present_subsets {
            _ if self.plan.split == Split::Host => MissingSubsets {
                stable: obs.absent_hosts.contains(&self.plan.stable),
                canary: obs.absent_hosts.contains(&self.plan.canary),
            },
            Some(present) => MissingSubsets {
                stable: !present.contains(&self.plan.stable),
                canary: !present.contains(&self.plan.canary),
            },
            None => MissingSubsets::default(),
        }
    }

    fn waiting_for_stable(&self) -> String {
        format!(
            "{}: the canary keeps its traffic until it is restored, then all traffic goes back \
             to it",
            self.lacks("stable")
        )
    }

    /// "the DestinationRule has no subset `v1` (the stable)", or "Service `orders-primary`
    /// (the stable) does not exist" for a plan that splits by host.
    fn lacks(&self, role: &str) -> String {
        let name = if role == "stable" {
            &self.plan.stable
        } else {
            &self.plan.canary
        };
        match self.plan.split {
            Split::Subset => format!("the DestinationRule has no subset `{name}` (the {role})"),
            Split::Host => format!("Service `{name}` (the {role}) does not exist"),
        }
    }

    fn promote(&mut self, reason: String) {
        self.set_route(RouteState::all_canary(), true);
        self.transition(Phase::Promoting, reason, Some(Event::Promoting));
    }

    fn analysis(&mut self, obs: &Observation) {
        if !matches!(self.status.phase, Phase::Progressing | Phase::Paused) {
            return;
        }
        if self.plan.analysis.metrics.is_empty() {
            return;
        }
        if obs.metrics_unreachable {
            self.metrics_unreachable();
            return;
        }
        // No round in this call (a control, an edit, a restart, a step's timer): an outage goes
        // on being one, and holds the rollout until a round answers.
        if obs.verdicts.is_empty() {
            if self.status.metrics_unreachable_since.is_some() {
                self.held = Some("metrics source unreachable".into());
            }
            return;
        }
        self.status.metrics_unreachable_since = None;
        if self.measured_before_retry() {
            return;
        }
        let outcome = round_outcome(&obs.verdicts);
        let a = &mut self.status.analysis;
        a.checks += 1;
        a.last_checked_at = Some(self.now);
        a.last = obs.verdicts.clone();
        a.passed_in_step = outcome == Outcome::Pass;
        match outcome {
            Outcome::Fail => a.failures += 1,
            Outcome::Inconclusive => a.inconclusive += 1,
            Outcome::Pass => {}
        }
        if outcome == Outcome::Fail && a.failures >= self.plan.analysis.failure_limit {
            let failing: Vec<String> = obs
                .verdicts
                .iter()
                .filter(|v| v.outcome == Outcome::Fail)
                .map(Verdict::to_string)
                .collect();
            let reason = format!(
                "{} failed checks (limit {}): {}",
                a.failures,
                self.plan.analysis.failure_limit,
                failing.join("; ")
            );
            self.rollback(Phase::RolledBack, reason);
        }
    }

    /// A round that could not reach the metrics source: hold, and roll back once the outage
    /// lasts `unreachableLimit`.
    fn metrics_unreachable(&mut self) {
        // The latest round is this one, and it did not pass: a step that ends during the
        // outage must not advance on a pass from before it.
        self.status.analysis.passed_in_step = false;
        let since = *self
            .status
            .metrics_unreachable_since
            .get_or_insert(self.now);
        let down = (self.now - since).to_std().unwrap_or_default();
        if down >= self.plan.analysis.unreachable_limit {
            self.rollback(
                Phase::RolledBack,
                format!(
                    "metrics source unreachable for {} (limit {})",
                    crate::units::duration(down),
                    crate::units::duration(self.plan.analysis.unreachable_limit)
                ),
            );
        } else {
            let limit = chrono::Duration::from_std(self.plan.analysis.unreachable_limit)
                .unwrap_or_else(|_| chrono::Duration::zero());
            self.status.reason = format!(
                "metrics source unreachable since {}; rollback at {} unless it answers",
                stamp(since),
                stamp(since + limit)
            );
            self.held = Some("metrics source unreachable".into());
        }
    }

    /// Whether `now` lies outside the window of the plan this decision runs (the observation's
    /// flag may describe the revision the daemon observed for, which a new release replaces).
    fn outside_window(&self, obs: &Observation) -> bool {
        obs.outside_window
            || self
                .plan
                .window
                .as_ref()
                .is_some_and(|w| !w.contains(self.now))
    }

    fn progress(&mut self, obs: &Observation) {
        match self.status.phase {
            Phase::Pending => {
                if !obs.preflight_errors.is_empty() {
                    self.status.findings = obs.preflight_errors.clone();
                    self.status.reason = format!(
                        "preflight found {} error(s); no traffic moves until they are fixed",
                        obs.preflight_errors.len()
                    );
                    return;
                }
                self.status.findings.clear();
                if self.outside_window(obs) {
                    self.status.reason = "waiting for the rollout window".into();
                    return;
                }
                if let Some(why) = &self.hold_reason {
                    self.status.reason = format!("not started: {why}");
                }
                if self.held.is_some() || self.awaiting_route {
                    return;
                }
                self.status.analysis = AnalysisSummary::default();
                let started = if obs.dropping.is_empty() {
                    "rollout started".to_string()
                } else {
                    format!(
                        "rollout started; the first write drops the weight-0 destination(s) {} \
                         of a previous release",
                        obs.dropping.join(", ")
                    )
                };
                self.transition(Phase::Progressing, started, Some(Event::Started));
                self.enter_step(0);
            }
            Phase::Progressing => {
                if let Some(why) = &self.hold_reason
                    && self.transitions.is_empty()
                {
                    self.status.reason = format!("holding at step {}: {why}", self.status.step);
                }
                if self.awaiting_route || self.held.is_some() {
                    return;
                }
                if self.outside_window(obs) {
                    self.status.reason = "holding: outside the rollout window".into();
                    return;
                }
                self.advance();
            }
            // The rollback's write waits for the stable subset, then goes out.
            Phase::RollingBack if self.status.route != RouteState::all_stable() => {
                if self.stable_missing {
                    return;
                }
                self.set_route(RouteState::all_stable(), true);
            }
            Phase::RollingBack if !self.awaiting_route => {
                let to = self.status.rollback_to.unwrap_or(Phase::RolledBack);
                // The wait for the stable subset is over.
                let waited = format!("; {}", self.waiting_for_stable());
                self.status.reason = self.status.reason.replace(&waited, "");
                let reason = if obs.canary_elsewhere.is_empty() {
                    format!("all traffic back on stable; {}", self.status.reason)
                } else {
                    format!(
                        "tidegate's routes are back on stable, but {} that tidegate does not \
                         manage still send{} to the canary; {}",
                        plural_routes(&obs.canary_elsewhere),
                        if obs.canary_elsewhere.len() == 1 {
                            "s"
                        } else {
                            ""
                        },
                        self.status.reason
                    )
                };
                let event = if to == Phase::Aborted {
                    Event::Aborted
                } else {
                    Event::RolledBack
                };
                self.transition(to, reason, Some(event));
            }
            Phase::Promoting if !self.awaiting_route => {
                let on = format!(
                    "all traffic on the canary ({} `{}`)",
                    self.plan.split.noun(),
                    self.plan.canary
                );
                self.transition(Phase::Succeeded, on, Some(Event::Succeeded));
            }
            _ => {}
        }
    }

    /// Complete the current step if its condition holds, and enter the next.
    fn advance(&mut self) {
        let Some(current) = self.plan.steps.get(self.status.step) else {
            self.complete();
            return;
        };
        let done = match current {
            Step::SetWeight(_) | Step::SetHeaderRoute(_) | Step::SetMirror(_) => true,
            Step::Analyze(d) | Step::Pause(Some(d)) => {
                let elapsed = (self.now - self.status.step_started_at)
                    .to_std()
                    .unwrap_or_default();
                let checks_ok =
                    self.plan.analysis.metrics.is_empty() || self.status.analysis.passed_in_step;
                if elapsed < *d {
                    false
                } else if !checks_ok {
                    self.waiting_for_check(current, *d, elapsed);
                    false
                } else {
                    true
                }
            }
            Step::Pause(None) => false,
        };
        if done {
            let held_step = matches!(current, Step::Analyze(_) | Step::Pause(Some(_)));
            if held_step && !self.status.analysis.last.is_empty() {
                let verdicts: Vec<String> = self
                    .status
                    .analysis
                    .last
                    .iter()
                    .map(Verdict::to_string)
                    .collect();
                self.justification = Some(format!(
                    "step {} passed: {}",
                    self.status.step,
                    verdicts.join("; ")
                ));
            }
            let next = self.status.step + 1;
            self.enter_step(next);
        }
    }

    /// Whether this round's window (one interval) reaches back before a `retry`: it measured
    /// the failed attempt's traffic, so it is not counted.
    fn measured_before_retry(&self) -> bool {
        let Some(from) = self.status.analysis.counting_from else {
            return false;
        };
        let window = chrono::Duration::from_std(self.plan.analysis.interval)
            .unwrap_or_else(|_| chrono::Duration::zero());
        self.now < from + window
    }

    /// A timed step is over but no check has passed in it yet: say so and since when, and apply
    /// the plan's `progressDeadline` once it is exceeded.
    fn waiting_for_check(&mut self, current: &Step, duration: Duration, elapsed: Duration) {
        let over =
            chrono::Duration::from_std(duration).unwrap_or_else(|_| chrono::Duration::zero());
        let since = self.status.step_started_at + over;
        let last = match self.status.analysis.last.first() {
            Some(v) => format!("; last round: {v}"),
            None => "; no round has produced a verdict yet".into(),
        };
        self.status.reason = format!(
            "step {} ({current}): waiting for a passing check since {}{last}",
            self.status.step,
            stamp(since)
        );
        let Some(deadline) = self.plan.progress_deadline else {
            return;
        };
        if elapsed < duration + deadline {
            return;
        }
        let why = format!(
            "step {} ({current}) passed no check within {} after its {} (progressDeadline){last}",
            self.status.step,
            crate::units::duration(deadline),
            crate::units::duration(duration)
        );
        match self.plan.on_deadline {
            OnDeadline::Rollback => {
                self.effects.push(Effect::Notify {
                    event: Event::Deadline,
                    message: format!("{}: {why}", self.status.rollout),
                });
                self.rollback(Phase::RolledBack, why);
            }
            OnDeadline::Pause => self.transition(
                Phase::Paused,
                format!("{why}; paused (onDeadline: pause): resume, promote or abort"),
                Some(Event::Deadline),
            ),
        }
    }

    /// A step paused for its progress deadline gets a whole deadline again on `resume`.
    fn restart_overdue_step(&mut self) {
        let (Some(deadline), Some(Step::Analyze(d) | Step::Pause(Some(d)))) = (
            self.plan.progress_deadline,
            self.plan.steps.get(self.status.step),
        ) else {
            return;
        };
        let elapsed = (self.now - self.status.step_started_at)
            .to_std()
            .unwrap_or_default();
        if elapsed >= *d + deadline {
            let d = chrono::Duration::from_std(*d).unwrap_or_else(|_| chrono::Duration::zero());
            self.status.step_started_at = self.now - d;
        }
    }

    /// The mesh as last watched: a forced rollback (the plan was removed, a new release
    /// replaces this one), a canary subset that disappeared (roll back) or a stable one (hold).
    fn mesh_checks(&mut self, obs: &Observation) {
        let phase = self.status.phase;
        let moving = matches!(phase, Phase::Progressing | Phase::Paused | Phase::Promoting);
        if let Some(why) = &obs.roll_back
            && (moving || phase == Phase::Pending)
        {
            self.rollback(Phase::RolledBack, why.clone());
            return;
        }
        let missing = self.missing(obs);
        let (stable, canary) = (&self.plan.stable, &self.plan.canary);
        if missing.stable && missing.canary {
            self.hold(match self.plan.split {
                Split::Subset => format!(
                    "the DestinationRule has neither subset `{stable}` (the stable) nor \
                     `{canary}` (the canary), or is gone; traffic stays where it is until they \
                     are restored"
                ),
                Split::Host => format!(
                    "neither Service `{stable}` (the stable) nor `{canary}` (the canary) \
                     exists; traffic stays where it is until they are restored"
                ),
            });
        } else if missing.stable {
            let why = self.lacks("stable");
            self.hold(format!(
                "{why}; traffic stays where it is until it is restored"
            ));
        } else if missing.canary && moving {
            let why = match self.plan.split {
                Split::Subset => format!("the DestinationRule no longer has subset `{canary}`"),
                Split::Host => format!("Service `{canary}` no longer exists"),
            };
            let reason = format!("{why} (the canary): requests routed to it fail");
            self.rollback(Phase::RolledBack, reason);
        } else if missing.canary {
            let why = self.lacks("canary");
            self.hold(why);
        }
    }

    pub(super) fn enter_step(&mut self, index: usize) {
        self.status.step = index;
        self.status.step_started_at = self.now;
        self.status.analysis.passed_in_step = false;
        let Some(step) = self.plan.steps.get(index).cloned() else {
            self.complete();
            return;
        };
        let mut route = self.status.route.clone();
        match &step {
            Step::SetWeight(w) => route.canary_weight = *w,
            Step::SetHeaderRoute(h) => route.header_route = Some(h.clone()),
            Step::SetMirror(p) => route.mirror_percent = *p,
            Step::Analyze(_) | Step::Pause(Some(_)) => {}
            Step::Pause(None) => {
                self.transition(
                    Phase::Paused,
                    format!("step {index}: waiting for a `resume` control commit"),
                    Some(Event::Paused),
                );
                return;
            }
        }
        self.status.reason = match self.justification.take() {
            Some(why) => format!("step {index}: {step} (after {why})"),
            None => format!("step {index}: {step}"),
        };
        if index > 0 {
            self.effects.push(Effect::Notify {
                event: Event::StepAdvanced,
                message: format!("{} step {index}: {step}", self.status.rollout),
            });
        }
        if route != self.status.route {
            self.set_route(route, false);
        }
        let t = Transition {
            at: self.now,
            from: self.status.phase,
            to: self.status.phase,
            step: index,
            canary_weight: self.status.route.canary_weight,
            reason: self.status.reason.clone(),
        };
        push_bounded(&mut self.status.history, t.clone(), HISTORY_LIMIT);
        self.transitions.push(t);
    }

    fn complete(&mut self) {
        match self.plan.on_success {
            OnSuccess::Promote => {
                let reason = match self.justification.take() {
                    Some(why) => format!("every step passed (last: {why})"),
                    None => "every step passed".into(),
                };
                self.promote(reason);
            }
            OnSuccess::Keep => self.transition(
                Phase::Succeeded,
                "every step passed; routes kept as the last step set them (onSuccess: keep)".into(),
                Some(Event::Succeeded),
            ),
        }
    }

    fn wake_at(&self) -> Option<DateTime<Utc>> {
        let interval = chrono::Duration::from_std(self.plan.analysis.interval)
            .unwrap_or_else(|_| chrono::Duration::seconds(30));
        if self.status.phase.is_terminal() {
            return None;
        }
        if self.awaiting_route {
            return Some(self.now);
        }
        let mut wake = self.now + interval;
        if self.status.phase == Phase::Progressing
            && let Some(Step::Analyze(d) | Step::Pause(Some(d))) =
                self.plan.steps.get(self.status.step)
            && let Ok(d) = chrono::Duration::from_std(*d)
        {
            let end = self.status.step_started_at + d;
            if end > self.now && end < wake {
                wake = end;
            }
        }
        Some(wake)
    }

    pub(super) fn finish(mut self, prev: Option<&Status>) -> Decision {
        let wake_at = self.wake_at();
        let significant = match prev {
            None => true,
            Some(p) => significant_change(p, &self.status),
        };
        if significant {
            self.status.updated_at = self.now;
            self.effects.push(Effect::RecordStatus);
        } else if let Some(p) = prev {
            self.status.updated_at = p.updated_at;
        }
        Decision {
            status: self.status,
            effects: self.effects,
            wake_at,
            transitions: self.transitions,
        }
    }
}

/// A time as the status writes it.
pub(super) fn stamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// "route `beta`" or "routes `beta`, `canary-users`".
fn plural_routes(labels: &[String]) -> String {
    let quoted: Vec<String> = labels.iter().map(|l| format!("`{l}`")).collect();
    if quoted.len() == 1 {
        format!("route {}", quoted.join(""))
    } else {
        format!("routes {}", quoted.join(", "))
    }
}

/// The outcome of one round: any Fail fails it; otherwise any Inconclusive makes it
/// inconclusive; otherwise it passes.
pub fn round_outcome(verdicts: &[Verdict]) -> Outcome {
    if verdicts.iter().any(|v| v.outcome == Outcome::Fail) {
        Outcome::Fail
    } else if verdicts.iter().any(|v| v.outcome == Outcome::Inconclusive) {
        Outcome::Inconclusive
    } else {
        Outcome::Pass
    }
}

/// Whether the status changed enough to be written to Git: anything but the running analysis
/// totals of passing and inconclusive rounds (failures are always recorded).
pub(super) fn significant_change(prev: &Status, next: &Status) -> bool {
    prev.phase != next.phase
        || prev.pending != next.pending
        || prev.release != next.release
        || prev.step != next.step
        || prev.route != next.route
        || prev.plan != next.plan
        || prev.controls != next.controls
        || prev.findings != next.findings
        || prev.rollback_to != next.rollback_to
        || prev.history.len() != next.history.len()
        || prev.history.last() != next.history.last()
        || prev.analysis.failures != next.analysis.failures
        || prev.reason != next.reason
        || std::mem::discriminant(&prev.read_back) != std::mem::discriminant(&next.read_back)
        || prev.metrics_unreachable_since.is_some() != next.metrics_unreachable_since.is_some()
        || prev.fault.as_ref().map(|f| (&f.message, f.permanent))
            != next.fault.as_ref().map(|f| (&f.message, f.permanent))
}
