//! The lifecycle rules of docs/lifecycle.md, one test per cell: releases, edits, invalid and
//! removed revisions, subsets that disappear, deadlines, controls while held.

use chrono::{DateTime, Duration, Utc};

use super::*;
use crate::analysis::{Outcome, Verdict};
use crate::control::ControlAction;
use crate::plan::{self, Plan};

fn plan(stable: &str, canary: &str, extra: &str, steps: &str) -> Plan {
    let text = format!(
        "apiVersion: tidegate.dev/v1alpha1\nkind: Rollout\nmetadata: {{name: orders-svc, namespace: production}}\nspec:\n  service: orders-svc\n  stable: {stable}\n  canary: {canary}\n{extra}  analysis:\n    interval: 30s\n    failureLimit: 1\n    unreachableLimit: 2m\n    metrics:\n      - {{name: success-rate, template: istio-success-rate, min: 99}}\n  steps:\n{steps}"
    );
    let parsed = plan::parse_str("rollouts/orders.yaml", &text);
    assert!(parsed.findings.is_empty(), "{:?}", parsed.findings);
    parsed.plans.into_iter().next().expect("one plan")
}

const STEPS: &str =
    "    - setWeight: 10\n    - analyze: 1m\n    - setWeight: 50\n    - analyze: 1m\n";

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
        .expect("valid time")
        .with_timezone(&Utc)
}

fn round(outcome: Outcome) -> Observation {
    Observation {
        read_back: ReadBack::Verified,
        verdicts: vec![Verdict::bare("success-rate", outcome)],
        ..Observation::default()
    }
}

/// The DestinationRule's subsets (v1 to v3) without `missing`.
fn present_without(missing: &str) -> Option<std::collections::BTreeSet<String>> {
    Some(
        ["v1", "v2", "v3"]
            .into_iter()
            .filter(|s| *s != missing)
            .map(str::to_owned)
            .collect(),
    )
}

fn control(action: ControlAction) -> Observation {
    Observation {
        read_back: ReadBack::Verified,
        controls: vec![ControlRequest {
            action,
            commit: "c0ffee".into(),
            author: "Ana <ana@example.com>".into(),
            reason: String::new(),
        }],
        ..Observation::default()
    }
}

enum Head {
    Valid(Box<Plan>, PlanRef),
    Invalid(PlanRef, Vec<String>),
    Removed,
}

/// A rollout's life as the daemon drives it: the newest revision, the last valid one, and the
/// route changes confirmed at once.
struct Life {
    head: Head,
    guard: Option<(Plan, PlanRef)>,
    status: Option<Status>,
    now: DateTime<Utc>,
    effects: Vec<Effect>,
    commits: usize,
}

impl Life {
    fn new(p: Plan) -> Life {
        let mut life = Life {
            head: Head::Removed,
            guard: None,
            status: None,
            now: t0(),
            effects: Vec::new(),
            commits: 0,
        };
        life.push(p);
        life
    }

    fn next_ref(&mut self, digest: String) -> PlanRef {
        self.commits += 1;
        PlanRef {
            path: "rollouts/orders.yaml".into(),
            revision: format!("rev{}", self.commits),
            digest,
        }
    }

    /// The newest revision becomes the guard when it was valid.
    fn retire_head(&mut self) {
        if let Head::Valid(p, r) = std::mem::replace(&mut self.head, Head::Removed) {
            self.guard = Some((*p, r));
        }
    }

    fn push(&mut self, p: Plan) {
        self.retire_head();
        let r = self.next_ref(p.digest());
        self.head = Head::Valid(Box::new(p), r);
    }

    fn push_invalid(&mut self) {
        self.retire_head();
        let r = self.next_ref(String::new());
        self.head = Head::Invalid(
            r,
            vec!["rollouts/orders.yaml:9:3: spec.steps: bad indent".into()],
        );
    }

    fn remove(&mut self) {
        self.retire_head();
    }

    fn decide(&self, obs: &Observation) -> Decision {
        let newest = match &self.head {
            Head::Valid(plan, plan_ref) => Newest::Valid { plan, plan_ref },
            Head::Invalid(plan_ref, findings) => Newest::Invalid { plan_ref, findings },
            Head::Removed => Newest::Removed,
        };
        let id = crate::plan::RolloutId {
            namespace: "production".into(),
            name: "orders-svc".into(),
        };
        let revs = Revisions {
            id: &id,
            newest,
            guard: self.guard.as_ref().map(|(p, r)| (p, r)),
        };
        decide(&revs, self.status.as_ref(), obs, self.now)
    }

    fn tick(&mut self, obs: Observation) -> Decision {
        let mut d = self.decide(&obs);
        let first = d.clone();
        self.effects.extend(d.effects.clone());
        let mut n = 0;
        while d.wake_at == Some(self.now) && n < 10 && !d.effects.contains(&Effect::Forget) {
            n += 1;
            self.status = Some(d.status.clone());
            // The mesh is as it was: only the read-back confirms the change.
            d = self.decide(&Observation {
                read_back: ReadBack::Verified,
                present_subsets: obs.present_subsets.clone(),
                canary_elsewhere: obs.canary_elsewhere.clone(),
                ..Observation::default()
            });
            self.effects.extend(d.effects.clone());
        }
        self.status = Some(d.status);
        first
    }

    fn after(&mut self, secs: i64, obs: Observation) -> Decision {
        self.now += Duration::seconds(secs);
        self.tick(obs)
    }

    fn status(&self) -> &Status {
        self.status.as_ref().expect("a status")
    }

    fn weight(&self) -> u8 {
        self.status().route.canary_weight
    }

    fn moved_traffic(&self) -> bool {
        self.effects.iter().any(Effect::is_traffic)
    }

    fn notified(&self, event: Event) -> usize {
        self.effects
            .iter()
            .filter(|e| matches!(e, Effect::Notify { event: e, .. } if *e == event))
            .count()
    }

    /// Run the default plan to the given weight: 10 % after the first tick, 50 % after 1m.
    fn at_ten_percent() -> Life {
        let mut life = Life::new(plan("v1", "v2", "", STEPS));
        life.tick(round(Outcome::Pass));
        assert_eq!(life.weight(), 10);
        life
    }

    fn promoted() -> Life {
        let mut life = Life::at_ten_percent();
        life.after(60, round(Outcome::Pass));
        life.after(60, round(Outcome::Pass));
        assert_eq!(life.status().phase, Phase::Succeeded);
        life.effects.clear();
        life
    }
}

#[test]
fn an_edit_of_a_finished_plan_moves_no_traffic() {
    let mut life = Life::promoted();
    life.push(plan(
        "v1",
        "v2",
        "",
        &STEPS.replace("analyze: 1m", "analyze: 70s"),
    ));
    life.after(10, round(Outcome::Pass));
    let s = life.status();
    assert_eq!(s.phase, Phase::Succeeded);
    assert_eq!(s.plan.revision, "rev2");
    assert_eq!(s.route, RouteState::all_canary());
    assert!(!life.moved_traffic(), "{:?}", life.effects);
    assert!(s.reason.contains("no traffic moved"), "{}", s.reason);
}

#[test]
fn an_edit_of_a_running_plan_continues_at_the_live_weight() {
    let mut life = Life::at_ten_percent();
    life.effects.clear();
    life.push(plan(
        "v1",
        "v2",
        "",
        &STEPS.replace("analyze: 1m", "analyze: 2m"),
    ));
    life.after(10, round(Outcome::Pass));
    let s = life.status();
    assert_eq!(s.phase, Phase::Progressing);
    assert_eq!(s.step, 1, "still analysing 10 %");
    assert_eq!(s.route.canary_weight, 10);
    assert!(!life.moved_traffic(), "{:?}", life.effects);
    // The analysis clock of the step it stayed on keeps running.
    life.after(110, round(Outcome::Pass));
    assert_eq!(life.weight(), 50);
}

#[test]
fn the_next_release_starts_from_the_live_route() {
    let mut life = Life::promoted();
    life.push(plan("v2", "v3", "", STEPS));
    life.after(10, round(Outcome::Pass));
    let s = life.status();
    assert_eq!(s.phase, Phase::Progressing);
    assert_eq!(s.route.canary_weight, 10);
    assert_eq!(s.release.as_ref().map(|r| r.canary.as_str()), Some("v3"));
    assert!(
        s.history
            .iter()
            .any(|t| t.reason.contains("new release v2 → v3")),
        "{:?}",
        s.history
    );
    assert!(
        !life
            .effects
            .iter()
            .any(|e| matches!(e, Effect::ClearManagedRoutes { .. })),
        "nothing to roll back: {:?}",
        life.effects
    );
}

#[test]
fn a_new_release_during_a_rollout_rolls_the_running_one_back_first() {
    let mut life = Life::at_ten_percent();
    life.push(plan("v1", "v3", "", STEPS));
    life.after(10, round(Outcome::Pass));
    // Rolled back under the old plan, then the new release starts at once.
    let s = life.status();
    assert_eq!(s.release.as_ref().map(|r| r.canary.as_str()), Some("v3"));
    assert_eq!(s.phase, Phase::Progressing);
    assert!(
        s.history
            .iter()
            .any(|t| t.to == Phase::RolledBack && t.reason.contains("replaces the running one"))
    );
    assert!(life.effects.iter().any(
        |e| matches!(e, Effect::ClearManagedRoutes { route } if *route == RouteState::all_stable())
    ));
}

#[test]
fn a_typo_holds_the_rollout_and_keeps_analysing_it() {
    let mut life = Life::at_ten_percent();
    life.push_invalid();
    life.after(60, round(Outcome::Pass));
    let s = life.status().clone();
    assert_eq!(s.phase, Phase::Progressing);
    assert_eq!(s.route.canary_weight, 10, "held: no progress to 50 %");
    assert_eq!(s.plan.revision, "rev1", "the last valid revision runs");
    let pending = s.pending.as_ref().expect("pending note");
    assert_eq!(pending.revision, "rev2");
    assert!(pending.findings[0].contains("bad indent"));
    assert!(s.reason.contains("is invalid"), "{}", s.reason);
    life.after(30, round(Outcome::Pass));
    assert_eq!(life.notified(Event::Invalid), 1, "told once");
    // A failing canary is still rolled back.
    life.after(30, round(Outcome::Fail));
    assert_eq!(life.status().phase, Phase::RolledBack);
    assert_eq!(life.weight(), 0);
}

#[test]
fn controls_while_held_pause_and_abort_work_promote_is_refused() {
    let mut life = Life::at_ten_percent();
    life.push_invalid();
    life.after(10, control(ControlAction::Promote));
    let last = life.status().controls.last().expect("recorded").clone();
    assert!(!last.applied);
    assert!(last.note.contains("refused while"), "{}", last.note);
    assert_eq!(life.weight(), 10);
    life.after(10, control(ControlAction::Abort));
    assert_eq!(life.status().phase, Phase::Aborted);
    assert_eq!(life.weight(), 0);
}

#[test]
fn the_fix_of_a_typo_continues_without_restarting() {
    let mut life = Life::at_ten_percent();
    life.push_invalid();
    life.after(30, round(Outcome::Pass));
    life.effects.clear();
    life.push(plan("v1", "v2", "", STEPS));
    life.after(10, round(Outcome::Pass));
    let s = life.status();
    assert!(s.pending.is_none());
    assert_eq!(s.route.canary_weight, 10);
    assert!(!life.moved_traffic(), "{:?}", life.effects);
    life.after(30, round(Outcome::Pass));
    assert_eq!(
        life.weight(),
        50,
        "the step's clock kept running through the typo"
    );
}

#[test]
fn an_invalid_first_revision_refuses_controls_visibly() {
    let mut life = Life::new(plan("v1", "v2", "", STEPS));
    life.push_invalid();
    life.guard = None;
    life.tick(control(ControlAction::Abort));
    let s = life.status();
    assert_eq!(s.phase, Phase::Invalid);
    let last = s.controls.last().expect("the abort is answered");
    assert!(
        !last.applied && last.note.contains("invalid"),
        "{}",
        last.note
    );
}

#[test]
fn removing_a_running_plan_rolls_back_then_lets_go() {
    let mut life = Life::at_ten_percent();
    life.remove();
    life.after(10, round(Outcome::Pass));
    assert!(life.effects.iter().any(
        |e| matches!(e, Effect::ClearManagedRoutes { route } if *route == RouteState::all_stable())
    ));
    assert_eq!(
        life.notified(Event::Invalid),
        0,
        "a removal is no invalid revision"
    );
    assert_eq!(life.notified(Event::RollingBack), 1);
    let mut last = life.decide(&Observation {
        read_back: ReadBack::Verified,
        ..Observation::default()
    });
    if !last.effects.contains(&Effect::Forget) {
        life.status = Some(last.status.clone());
        last = life.decide(&round(Outcome::Pass));
    }
    assert!(last.effects.contains(&Effect::Forget), "{:?}", last.effects);
    assert_eq!(last.status.phase, Phase::RolledBack);
    assert!(
        last.status
            .history
            .iter()
            .any(|t| t.reason.contains("removed"))
    );
}

#[test]
fn removing_a_finished_plan_clears_leftover_routes() {
    let mut life = Life::promoted();
    life.remove();
    let d = life.after(10, Observation::default());
    assert!(d.effects.contains(&Effect::Forget));
    assert!(d.effects.iter().any(
        |e| matches!(e, Effect::ClearManagedRoutes { route } if *route == RouteState::all_canary())
    ));
}

#[test]
fn a_canary_subset_that_disappears_is_rolled_back() {
    let mut life = Life::at_ten_percent();
    let mut obs = round(Outcome::Pass);
    obs.present_subsets = present_without("v2");
    life.after(10, obs);
    let s = life.status();
    assert_eq!(s.phase, Phase::RolledBack);
    assert!(
        s.history
            .iter()
            .any(|t| t.reason.contains("no longer has subset `v2`"))
    );
}

#[test]
fn a_stable_subset_that_disappears_holds_and_refuses_promote() {
    let mut life = Life::at_ten_percent();
    let mut obs = control(ControlAction::Promote);
    obs.present_subsets = present_without("v1");
    life.after(90, obs);
    let s = life.status();
    assert_eq!(s.phase, Phase::Progressing);
    assert_eq!(s.route.canary_weight, 10);
    assert!(s.reason.contains("no subset `v1`"), "{}", s.reason);
    assert!(!s.controls.last().expect("answered").applied);
}

#[test]
fn an_abort_while_the_stable_subset_is_missing_waits_for_it() {
    let mut life = Life::at_ten_percent();
    life.effects.clear();
    let mut obs = control(ControlAction::Abort);
    obs.present_subsets = present_without("v1");
    life.after(10, obs);
    let s = life.status();
    assert_eq!(s.phase, Phase::RollingBack, "{}", s.reason);
    assert_eq!(
        s.route.canary_weight, 10,
        "no traffic to a subset that does not exist"
    );
    assert!(s.reason.contains("no subset `v1`"), "{}", s.reason);
    assert!(!life.moved_traffic(), "{:?}", life.effects);
    // Still missing a round later: still waiting, still not claiming stable.
    let mut still = round(Outcome::Pass);
    still.present_subsets = present_without("v1");
    life.after(30, still);
    assert_eq!(life.status().phase, Phase::RollingBack);
    assert_eq!(life.weight(), 10);
    // An operator sends everything to the canary meanwhile: tidegate does not undo it.
    life.effects.clear();
    let mut fixed = round(Outcome::Pass);
    fixed.present_subsets = present_without("v1");
    fixed.read_back = ReadBack::Drifted {
        actual: RouteState::all_canary(),
        detail: "edited by hand".into(),
    };
    life.after(30, fixed);
    assert_eq!(life.status().phase, Phase::RollingBack);
    assert_eq!(life.weight(), 100);
    assert!(!life.moved_traffic(), "{:?}", life.effects);
    // The subset is back: the rollback writes and ends.
    life.after(30, round(Outcome::Pass));
    let s = life.status();
    assert_eq!(s.phase, Phase::Aborted, "{}", s.reason);
    assert!(!s.reason.contains("keeps its traffic"), "{}", s.reason);
    assert_eq!(s.route, RouteState::all_stable());
    assert!(life.moved_traffic());
}

#[test]
fn a_progress_deadline_rolls_back_a_step_that_never_passes() {
    let extra = "  progressDeadline: 2m\n";
    let mut life = Life::new(plan("v1", "v2", extra, STEPS));
    life.tick(round(Outcome::Inconclusive));
    life.after(90, round(Outcome::Inconclusive));
    assert!(
        life.status()
            .reason
            .contains("waiting for a passing check since 2026-12-01T10:01:00Z"),
        "{}",
        life.status().reason
    );
    life.after(60, round(Outcome::Inconclusive));
    assert_eq!(life.status().phase, Phase::Progressing);
    life.after(60, round(Outcome::Inconclusive));
    assert_eq!(life.status().phase, Phase::RolledBack);
    assert_eq!(life.notified(Event::Deadline), 1);
}

#[test]
fn a_progress_deadline_can_pause_instead() {
    let extra = "  progressDeadline: 1m\n  onDeadline: pause\n";
    let mut life = Life::new(plan("v1", "v2", extra, STEPS));
    life.tick(round(Outcome::Inconclusive));
    life.after(150, round(Outcome::Inconclusive));
    assert_eq!(life.status().phase, Phase::Paused);
    assert_eq!(life.weight(), 10);
    // Resumed, the step gets a whole deadline again.
    life.after(10, control(ControlAction::Resume));
    assert_eq!(life.status().phase, Phase::Progressing);
    life.after(30, round(Outcome::Inconclusive));
    assert_eq!(life.status().phase, Phase::Progressing);
}

#[test]
fn unreachable_metrics_say_since_when_and_when_the_rollback_comes() {
    let mut life = Life::at_ten_percent();
    let down = Observation {
        read_back: ReadBack::Verified,
        metrics_unreachable: true,
        ..Observation::default()
    };
    life.after(30, down.clone());
    let reason = &life.status().reason;
    assert!(
        reason.contains("unreachable since 2026-12-01T10:00:30Z; rollback at 2026-12-01T10:02:30Z"),
        "{reason}"
    );
    // A control in between (no analysis round in that call) does not restart the clock.
    life.after(10, control(ControlAction::Pause));
    life.after(10, down);
    let reason = &life.status().reason;
    assert!(
        reason.contains("since 2026-12-01T10:00:30Z"),
        "the outage's start stays: {reason}"
    );
}

#[test]
fn a_rollback_says_which_unmanaged_routes_still_reach_the_canary() {
    let mut life = Life::at_ten_percent();
    let mut obs = round(Outcome::Fail);
    obs.canary_elsewhere = vec!["beta".into()];
    life.after(30, obs.clone());
    let mut confirm = Observation {
        read_back: ReadBack::Verified,
        ..Observation::default()
    };
    confirm.canary_elsewhere = obs.canary_elsewhere.clone();
    if life.status().phase == Phase::RollingBack {
        life.after(1, confirm);
    }
    let s = life.status();
    assert_eq!(s.phase, Phase::RolledBack);
    assert!(s.reason.contains("route `beta`"), "{}", s.reason);
    assert!(!s.reason.starts_with("all traffic back on stable"));
}

#[test]
fn an_edit_that_continues_at_a_weight_step_runs_it() {
    let mut life = Life::at_ten_percent();
    // The new plan goes 5 % → 20 % without a check between: the edit continues at the 20 %
    // step, and that step is carried out, not skipped (the lab found the status at the next
    // analysis with the route still at the step before).
    life.push(plan(
        "v1",
        "v2",
        "",
        "    - setWeight: 5\n    - setWeight: 20\n    - analyze: 1m\n    - setWeight: 50\n    - analyze: 1m\n",
    ));
    life.after(10, round(Outcome::Pass));
    let s = life.status();
    assert_eq!(s.phase, Phase::Progressing, "{}", s.reason);
    assert_eq!((s.step, s.route.canary_weight), (2, 20), "{}", s.reason);
}

#[test]
fn a_new_release_whose_canary_already_has_all_traffic_moves_nothing() {
    let mut life = Life::promoted();
    // v2 has everything; a plan that names v2 as the canary of another stable (a revert to an
    // older plan file, say) must not send 90 % to v3.
    life.push(plan("v3", "v2", "", STEPS));
    life.after(10, round(Outcome::Pass));
    let s = life.status();
    assert_eq!(s.phase, Phase::Succeeded, "{}", s.reason);
    assert!(s.reason.contains("already on `v2`"), "{}", s.reason);
    assert!(!life.moved_traffic(), "{:?}", life.effects);
    // A release to another canary starts as usual.
    life.push(plan("v2", "v3", "", STEPS));
    life.after(10, round(Outcome::Pass));
    assert_eq!(life.weight(), 10);
}

#[test]
fn dropping_a_managed_route_rolls_the_running_release_back_first() {
    let mut life = Life::new(plan("v1", "v2", "  routes: [primary, beta]\n", STEPS));
    life.tick(round(Outcome::Pass));
    assert_eq!(life.weight(), 10);
    life.effects.clear();
    life.push(plan("v1", "v2", "  routes: [primary]\n", STEPS));
    life.after(10, round(Outcome::Pass));
    let s = life.status();
    assert!(
        s.history
            .iter()
            .any(|t| t.to == Phase::RollingBack && t.reason.contains("rolling it back first")),
        "{:?}",
        s.history
    );
    assert!(
        life.effects
            .iter()
            .any(|e| matches!(e, Effect::ClearManagedRoutes { route } if route.canary_weight == 0)),
        "the old routes (beta included) go back to stable: {:?}",
        life.effects
    );
}

#[test]
fn a_new_release_outside_its_window_moves_no_traffic() {
    let mut life = Life::promoted();
    // 10:00 UTC is outside 03:00–04:59. The daemon observed for the finished release (no
    // window), so the flag in the observation is false: the engine checks the new plan's own.
    life.push(plan("v2", "v3", "  window: \"* 3-4 * * *\"\n", STEPS));
    life.after(10, round(Outcome::Pass));
    let s = life.status();
    assert_eq!(s.phase, Phase::Pending, "{}", s.reason);
    assert!(s.reason.contains("window"), "{}", s.reason);
    assert!(!life.moved_traffic(), "{:?}", life.effects);
}

#[test]
fn resume_at_never_raises_and_checks_before_raising() {
    let p = plan("v1", "v2", "", STEPS);
    let at = |w: u8| {
        let live = RouteState {
            canary_weight: w,
            ..RouteState::all_stable()
        };
        let (i, r) = resume_at(&p, &live);
        (i, r.canary_weight)
    };
    assert_eq!(at(10), (1, 10), "analyse 10 % before 50 %");
    assert_eq!(
        at(30),
        (1, 10),
        "the plan allows 10 % until its check passes"
    );
    assert_eq!(at(50), (3, 50));
    assert_eq!(at(0), (0, 0));
}

#[test]
fn the_first_round_after_a_retry_does_not_judge_the_failed_attempt() {
    let mut life = Life::at_ten_percent();
    life.after(30, round(Outcome::Fail));
    assert_eq!(life.status().phase, Phase::RolledBack);
    life.after(60, control(ControlAction::Retry));
    assert_eq!(life.weight(), 10);
    // Decided a moment after the retry, this round measured the failed canary's last window.
    life.after(1, round(Outcome::Fail));
    assert_eq!(
        life.status().phase,
        Phase::Progressing,
        "{}",
        life.status().reason
    );
    // A whole interval later the retried canary is judged.
    life.after(30, round(Outcome::Fail));
    assert_eq!(life.status().phase, Phase::RolledBack);
}
