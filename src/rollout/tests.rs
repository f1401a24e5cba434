//! Unit tests of the engine: every phase transition and every step kind.

use chrono::{DateTime, Duration, Utc};

use super::*;
use crate::analysis::{Outcome, Verdict};
use crate::control::ControlAction;
use crate::plan::{self, Plan, Step};

const BASE: &str = r#"
apiVersion: tidegate.dev/v1alpha1
kind: Rollout
metadata: {name: orders-svc, namespace: production}
spec:
  service: orders-svc
  stable: v1
  canary: v2
  analysis:
    interval: 30s
    failureLimit: 2
    unreachableLimit: 2m
    metrics:
      - {name: success-rate, template: istio-success-rate, min: 99}
"#;

fn plan_with(steps: &str) -> Plan {
    let text = format!("{BASE}  steps:\n{steps}");
    let parsed = plan::parse_str("test.yaml", &text);
    assert!(parsed.findings.is_empty(), "{:?}", parsed.findings);
    parsed.plans.into_iter().next().expect("one plan")
}

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
        .expect("valid time")
        .with_timezone(&Utc)
}

fn pass() -> Vec<Verdict> {
    vec![Verdict::bare("success-rate", Outcome::Pass)]
}
fn fail() -> Vec<Verdict> {
    vec![Verdict::bare("success-rate", Outcome::Fail)]
}
fn inconclusive() -> Vec<Verdict> {
    vec![Verdict::bare("success-rate", Outcome::Inconclusive)]
}

fn control(action: ControlAction) -> Observation {
    Observation {
        read_back: ReadBack::Verified,
        controls: vec![ControlRequest {
            action,
            commit: "c0ffee".into(),
            author: "Ana <ana@example.com>".into(),
            reason: "because".into(),
        }],
        ..Observation::default()
    }
}

fn verdicts(v: Vec<Verdict>) -> Observation {
    Observation {
        read_back: ReadBack::Verified,
        verdicts: v,
        ..Observation::default()
    }
}

/// Drives the engine like the daemon: confirms route changes immediately.
struct Run {
    plan: Plan,
    plan_ref: PlanRef,
    status: Option<Status>,
    now: DateTime<Utc>,
    effects: Vec<Effect>,
}

impl Run {
    fn new(plan: Plan) -> Run {
        let plan_ref = PlanRef {
            path: "rollouts/orders.yaml".into(),
            revision: "rev1".into(),
            digest: plan.digest(),
        };
        Run {
            plan,
            plan_ref,
            status: None,
            now: t0(),
            effects: Vec::new(),
        }
    }

    fn tick(&mut self, obs: Observation) -> Decision {
        let mut d = step(
            &self.plan,
            &self.plan_ref,
            self.status.as_ref(),
            &obs,
            self.now,
        );
        self.effects.extend(d.effects.clone());
        let mut guard = 0;
        while d.wake_at == Some(self.now) && guard < 10 {
            guard += 1;
            let confirm = Observation {
                read_back: ReadBack::Verified,
                ..Observation::default()
            };
            d = step(
                &self.plan,
                &self.plan_ref,
                Some(&d.status),
                &confirm,
                self.now,
            );
            self.effects.extend(d.effects.clone());
        }
        self.status = Some(d.status.clone());
        d
    }

    fn after(&mut self, secs: i64, obs: Observation) -> Decision {
        self.now += Duration::seconds(secs);
        self.tick(obs)
    }

    fn phase(&self) -> Phase {
        self.status.as_ref().map_or(Phase::Pending, |s| s.phase)
    }

    fn weight(&self) -> u8 {
        self.status.as_ref().map_or(0, |s| s.route.canary_weight)
    }
}

#[test]
fn pending_starts_and_set_weight_moves_traffic() {
    let mut r = Run::new(plan_with("    - setWeight: 20\n    - analyze: 1m\n"));
    let d = r.tick(verdicts(vec![]));
    assert_eq!(r.phase(), Phase::Progressing);
    assert_eq!(r.weight(), 20);
    assert!(
        r.effects
            .iter()
            .any(|e| matches!(e, Effect::SetRoute { route } if route.canary_weight == 20)),
        "{:?}",
        r.effects
    );
    assert_eq!(d.status.step, 1, "setWeight completes once confirmed");
    assert!(d.effects.contains(&Effect::RecordStatus) || r.effects.contains(&Effect::RecordStatus));
}

#[test]
fn analyze_needs_duration_and_a_pass() {
    let mut r = Run::new(plan_with(
        "    - setWeight: 10\n    - analyze: 1m\n    - setWeight: 50\n",
    ));
    r.tick(verdicts(vec![]));
    assert_eq!(r.status.as_ref().map(|s| s.step), Some(1));
    r.after(30, verdicts(pass()));
    assert_eq!(r.weight(), 10, "1m has not passed");
    r.after(30, verdicts(inconclusive()));
    assert_eq!(r.weight(), 10, "inconclusive holds");
    r.after(30, verdicts(pass()));
    assert!(
        r.status
            .as_ref()
            .is_some_and(|s| s.history.iter().any(|t| t.canary_weight == 50)),
        "setWeight 50 was reached"
    );
    // The last step done, the default `onSuccess: promote` sends everything to the canary.
    assert_eq!(r.phase(), Phase::Succeeded);
    assert_eq!(
        r.status.as_ref().map(|s| s.route.clone()),
        Some(RouteState::all_canary())
    );
}

#[test]
fn analyze_holds_then_moves_to_next_weight() {
    let mut r = Run::new(plan_with(
        "    - setWeight: 10\n    - analyze: 1m\n    - setWeight: 50\n    - pause: {}\n",
    ));
    r.tick(verdicts(vec![]));
    r.after(30, verdicts(pass()));
    assert_eq!(r.weight(), 10, "1m has not passed");
    // Duration passed, but the latest round was inconclusive: hold.
    r.after(30, verdicts(inconclusive()));
    assert_eq!(r.weight(), 10, "inconclusive holds");
    assert_eq!(r.phase(), Phase::Progressing);
    r.after(30, verdicts(pass()));
    assert_eq!(r.weight(), 50);
    assert_eq!(r.phase(), Phase::Paused);
}

#[test]
fn inconclusive_never_counts_as_failure() {
    let mut r = Run::new(plan_with("    - setWeight: 10\n    - pause: {}\n"));
    r.tick(verdicts(vec![]));
    for _ in 0..10 {
        r.after(30, verdicts(inconclusive()));
    }
    let s = r.status.clone().expect("status");
    assert_eq!(s.phase, Phase::Paused);
    assert_eq!(s.analysis.failures, 0);
    assert_eq!(s.analysis.inconclusive, 10);
}

#[test]
fn failures_reach_the_limit_and_roll_back() {
    let mut r = Run::new(plan_with("    - setWeight: 30\n    - analyze: 10m\n"));
    r.tick(verdicts(vec![]));
    r.after(30, verdicts(fail()));
    assert_eq!(
        r.phase(),
        Phase::Progressing,
        "one failure is below the limit of 2"
    );
    r.after(30, verdicts(fail()));
    assert_eq!(r.phase(), Phase::RolledBack);
    assert_eq!(r.weight(), 0);
    let s = r.status.clone().expect("status");
    let phases: Vec<Phase> = s.history.iter().map(|t| t.to).collect();
    assert!(
        phases.ends_with(&[Phase::RollingBack, Phase::RolledBack]),
        "{phases:?}"
    );
    assert!(r.effects.iter().any(
        |e| matches!(e, Effect::ClearManagedRoutes { route } if *route == RouteState::all_stable())
    ));
    assert!(
        r.status
            .as_ref()
            .is_some_and(|s| s.reason.contains("failed checks"))
    );
}

#[test]
fn unreachable_metrics_hold_then_roll_back_past_the_limit() {
    let mut r = Run::new(plan_with(
        "    - setWeight: 10\n    - analyze: 30s\n    - setWeight: 40\n",
    ));
    r.tick(verdicts(vec![]));
    let down = Observation {
        read_back: ReadBack::Verified,
        metrics_unreachable: true,
        ..Observation::default()
    };
    r.after(60, down.clone());
    assert_eq!(r.weight(), 10, "held while unreachable");
    assert_eq!(r.phase(), Phase::Progressing);
    r.after(60, down.clone());
    r.after(61, down);
    assert_eq!(r.phase(), Phase::RolledBack);
    assert!(
        r.status
            .as_ref()
            .is_some_and(|s| s.reason.contains("unreachable"))
    );
}

#[test]
fn a_step_that_ends_during_an_outage_does_not_advance_on_an_older_pass() {
    let mut r = Run::new(plan_with(
        "    - setWeight: 10\n    - analyze: 60s\n    - setWeight: 40\n    - analyze: 60s\n",
    ));
    r.tick(verdicts(vec![]));
    r.after(20, verdicts(pass()));
    let down = Observation {
        read_back: ReadBack::Verified,
        metrics_unreachable: true,
        ..Observation::default()
    };
    r.after(20, down.clone());
    // The step's timer fires with no round in the call: the outage still holds the step.
    r.after(25, verdicts(vec![]));
    assert_eq!(
        r.weight(),
        10,
        "no advance on the pass from before the outage"
    );
    r.after(5, down);
    r.after(5, verdicts(vec![]));
    assert_eq!(r.weight(), 10);
    assert_eq!(r.phase(), Phase::Progressing);
    // Prometheus answers again with a pass: the step, long over, completes.
    r.after(5, verdicts(pass()));
    assert_eq!(r.weight(), 40);
}

#[test]
fn a_host_level_plan_is_never_judged_on_destination_rule_subsets() {
    let text = format!("{BASE}  steps:\n    - setWeight: 10\n    - analyze: 5m\n").replace(
        "  stable: v1\n  canary: v2\n",
        "  stable: {host: orders-primary}\n  canary: {host: orders-canary}\n",
    );
    let parsed = plan::parse_str("test.yaml", &text);
    assert!(parsed.findings.is_empty(), "{:?}", parsed.findings);
    let mut r = Run::new(parsed.plans.into_iter().next().expect("one plan"));
    r.tick(verdicts(vec![]));
    assert_eq!(r.weight(), 10);
    // Whatever subsets an observation lists (say, of a DestinationRule of another plan), the
    // two Services are not subsets that went missing.
    let obs = Observation {
        present_subsets: Some(["v1".to_string()].into()),
        ..verdicts(pass())
    };
    r.after(30, obs);
    assert_eq!(r.phase(), Phase::Progressing);
    assert_eq!(r.weight(), 10);
    // Its own Services are what it is judged on: the stable gone holds, the canary gone rolls
    // back, each said with the Service's name.
    let gone = |host: &str| Observation {
        absent_hosts: [host.to_string()].into(),
        ..verdicts(vec![])
    };
    r.after(1, gone("orders-primary"));
    assert_eq!(r.weight(), 10);
    let reason = r
        .status
        .as_ref()
        .map(|s| s.reason.clone())
        .unwrap_or_default();
    assert!(
        reason.contains("Service `orders-primary` (the stable) does not exist"),
        "{reason}"
    );
    r.after(1, gone("orders-canary"));
    assert_eq!(r.phase(), Phase::RolledBack);
    assert_eq!(r.weight(), 0);
}

#[test]
fn unreachable_then_back_resets_the_clock() {
    let mut r = Run::new(plan_with("    - setWeight: 10\n    - analyze: 5m\n"));
    r.tick(verdicts(vec![]));
    let down = Observation {
        read_back: ReadBack::Verified,
        metrics_unreachable: true,
        ..Observation::default()
    };
    r.after(100, down.clone());
    r.after(10, verdicts(pass()));
    assert!(
        r.status
            .as_ref()
            .is_some_and(|s| s.metrics_unreachable_since.is_none())
    );
    r.after(100, down);
    assert_eq!(r.phase(), Phase::Progressing);
}

#[test]
fn indefinite_pause_waits_for_resume() {
    let mut r = Run::new(plan_with(
        "    - setWeight: 10\n    - pause: {}\n    - setWeight: 60\n    - pause: {}\n",
    ));
    r.tick(verdicts(vec![]));
    assert_eq!(r.phase(), Phase::Paused);
    for _ in 0..5 {
        r.after(3600, verdicts(pass()));
    }
    assert_eq!(r.weight(), 10);
    assert_eq!(r.phase(), Phase::Paused);
    r.after(5, control(ControlAction::Resume));
    assert_eq!(r.weight(), 60);
    let s = r.status.clone().expect("status");
    assert!(s.controls.iter().any(|c| c.action == "resume" && c.applied));
}

#[test]
fn timed_pause_advances_after_duration_and_a_pass() {
    let mut r = Run::new(plan_with(
        "    - setWeight: 10\n    - pause: 2m\n    - setWeight: 60\n    - pause: {}\n",
    ));
    let d = r.tick(verdicts(vec![]));
    assert_eq!(r.phase(), Phase::Progressing);
    assert_eq!(d.wake_at, Some(r.now + Duration::seconds(30)));
    r.after(150, verdicts(inconclusive()));
    assert_eq!(r.weight(), 10);
    r.after(30, verdicts(pass()));
    assert_eq!(r.weight(), 60);
}

#[test]
fn header_route_and_mirror_steps_set_the_route() {
    let mut r = Run::new(plan_with(
        "    - setHeaderRoute: {headers: {x-canary: {exact: \"true\"}}}\n    - setMirror: 20\n    - pause: {}\n",
    ));
    r.tick(verdicts(vec![]));
    let s = r.status.clone().expect("status");
    assert!(s.route.header_route.is_some());
    assert_eq!(s.route.mirror_percent, 20);
    assert_eq!(s.route.canary_weight, 0);
    // Promotion clears tidegate's routes.
    r.after(10, control(ControlAction::Promote));
    let s = r.status.clone().expect("status");
    assert_eq!(s.phase, Phase::Succeeded);
    assert_eq!(s.route, RouteState::all_canary());
}

#[test]
fn pause_and_resume_by_control() {
    let mut r = Run::new(plan_with(
        "    - setWeight: 10\n    - analyze: 1m\n    - setWeight: 50\n    - pause: {}\n",
    ));
    r.tick(verdicts(vec![]));
    r.after(10, control(ControlAction::Pause));
    assert_eq!(r.phase(), Phase::Paused);
    r.after(120, verdicts(pass()));
    assert_eq!(r.weight(), 10, "paused: no progress");
    r.after(10, control(ControlAction::Resume));
    // The hold is over and a check passed while paused: the next weight follows at once.
    assert_eq!(r.weight(), 50);
    let s = r.status.clone().expect("status");
    assert!(
        s.history
            .iter()
            .any(|t| t.from == Phase::Paused && t.to == Phase::Progressing)
    );
}

#[test]
fn abort_rolls_back_to_aborted_and_retry_restarts() {
    let mut r = Run::new(plan_with("    - setWeight: 10\n    - pause: {}\n"));
    r.tick(verdicts(vec![]));
    r.after(10, control(ControlAction::Abort));
    assert_eq!(r.phase(), Phase::Aborted);
    assert_eq!(r.weight(), 0);
    r.after(10, control(ControlAction::Retry));
    assert_eq!(
        r.phase(),
        Phase::Paused,
        "restarted from step 0 and reached the pause"
    );
    assert_eq!(r.weight(), 10);
}

#[test]
fn retry_after_rollback_resets_counters() {
    let mut r = Run::new(plan_with("    - setWeight: 10\n    - analyze: 5m\n"));
    r.tick(verdicts(vec![]));
    r.after(30, verdicts(fail()));
    r.after(30, verdicts(fail()));
    assert_eq!(r.phase(), Phase::RolledBack);
    r.after(30, control(ControlAction::Retry));
    let s = r.status.clone().expect("status");
    assert_eq!(s.phase, Phase::Progressing);
    assert_eq!(s.analysis.failures, 0);
    assert_eq!(s.route.canary_weight, 10);
}

#[test]
fn controls_that_do_not_apply_are_recorded_as_refused() {
    let mut r = Run::new(plan_with("    - setWeight: 10\n    - analyze: 5m\n"));
    r.tick(verdicts(vec![]));
    r.after(10, control(ControlAction::Resume));
    r.after(10, control(ControlAction::Retry));
    let s = r.status.clone().expect("status");
    assert_eq!(s.phase, Phase::Progressing);
    let refused: Vec<_> = s.controls.iter().filter(|c| !c.applied).collect();
    assert_eq!(refused.len(), 2);
    assert!(
        refused[0].note.contains("not Paused"),
        "{}",
        refused[0].note
    );
}

#[test]
fn policy_refusals_are_recorded() {
    let mut r = Run::new(plan_with("    - setWeight: 10\n    - pause: {}\n"));
    r.tick(verdicts(vec![]));
    let obs = Observation {
        read_back: ReadBack::Verified,
        refused: vec![RefusedControl {
            action: "abort".into(),
            commit: "bad1".into(),
            author: "Mallory <m@evil.test>".into(),
            why: "author <m@evil.test> is not allowed".into(),
        }],
        ..Observation::default()
    };
    let d = r.after(10, obs);
    assert_eq!(r.phase(), Phase::Paused, "refused abort changes nothing");
    assert!(d.effects.contains(&Effect::RecordStatus));
    assert!(
        d.status
            .controls
            .iter()
            .any(|c| c.commit == "bad1" && !c.applied)
    );
}

#[test]
fn promote_control_skips_remaining_steps() {
    let mut r = Run::new(plan_with(
        "    - setWeight: 10\n    - analyze: 1h\n    - setWeight: 50\n",
    ));
    r.tick(verdicts(vec![]));
    r.after(10, control(ControlAction::Promote));
    assert_eq!(r.phase(), Phase::Succeeded);
    assert_eq!(r.weight(), 100);
}

#[test]
fn keep_on_success_leaves_the_routes() {
    let text =
        format!("{BASE}  onSuccess: keep\n  steps:\n    - setWeight: 30\n    - setMirror: 10\n");
    let parsed = plan::parse_str("k.yaml", &text);
    assert!(parsed.findings.is_empty(), "{:?}", parsed.findings);
    let mut r = Run::new(parsed.plans[0].clone());
    r.tick(verdicts(vec![]));
    let s = r.status.clone().expect("status");
    assert_eq!(s.phase, Phase::Succeeded);
    assert_eq!(s.route.canary_weight, 30);
    assert_eq!(s.route.mirror_percent, 10);
}

#[test]
fn outside_the_window_nothing_advances_but_rollback_happens() {
    let mut r = Run::new(plan_with(
        "    - setWeight: 10\n    - analyze: 30s\n    - setWeight: 50\n",
    ));
    let closed = |v: Vec<Verdict>| Observation {
        read_back: ReadBack::Verified,
        outside_window: true,
        verdicts: v,
        ..Observation::default()
    };
    r.tick(closed(vec![]));
    assert_eq!(
        r.phase(),
        Phase::Pending,
        "does not start outside the window"
    );
    r.after(30, verdicts(vec![]));
    assert_eq!(r.weight(), 10);
    r.after(60, closed(pass()));
    assert_eq!(r.weight(), 10, "no step advances outside the window");
    r.after(30, closed(fail()));
    r.after(30, closed(fail()));
    assert_eq!(r.phase(), Phase::RolledBack, "rollback still happens");
}

#[test]
fn preflight_errors_keep_it_pending() {
    let mut r = Run::new(plan_with("    - setWeight: 10\n"));
    let obs = Observation {
        preflight_errors: vec!["IST001 route to undefined subset v3".into()],
        ..Observation::default()
    };
    let d = r.tick(obs);
    assert_eq!(d.status.phase, Phase::Pending);
    assert_eq!(d.status.findings.len(), 1);
    assert!(!d.effects.iter().any(Effect::is_traffic));
    r.after(30, verdicts(vec![]));
    assert_eq!(r.phase(), Phase::Succeeded);
}

#[test]
fn drift_pauses_and_resume_reasserts() {
    let mut r = Run::new(plan_with("    - setWeight: 10\n    - analyze: 10m\n"));
    r.tick(verdicts(vec![]));
    let drift = Observation {
        read_back: ReadBack::Drifted {
            actual: RouteState {
                canary_weight: 70,
                ..RouteState::default()
            },
            detail: "weights edited".into(),
        },
        ..Observation::default()
    };
    let d = r.after(30, drift);
    assert_eq!(d.status.phase, Phase::Paused);
    assert!(d.effects.iter().any(|e| matches!(
        e,
        Effect::Notify {
            event: Event::Drift,
            ..
        }
    )));
    assert!(
        !d.effects.iter().any(Effect::is_traffic),
        "drift is not fought"
    );
    r.effects.clear();
    r.after(30, control(ControlAction::Resume));
    assert!(
        r.effects
            .iter()
            .any(|e| matches!(e, Effect::SetRoute { route } if route.canary_weight == 10))
    );
}

#[test]
fn an_edit_continues_from_the_live_route() {
    let mut r = Run::new(plan_with("    - setWeight: 40\n    - pause: {}\n"));
    r.tick(verdicts(vec![]));
    assert_eq!(r.weight(), 40);
    r.plan = plan_with("    - setWeight: 5\n    - pause: {}\n");
    r.plan_ref = PlanRef {
        path: "rollouts/orders.yaml".into(),
        revision: "rev2".into(),
        digest: r.plan.digest(),
    };
    r.effects.clear();
    r.after(10, verdicts(vec![]));
    let s = r.status.clone().expect("status");
    assert_eq!(s.plan.revision, "rev2");
    // The new plan allows 5 % before its pause: lowered there, never to 0 and up again.
    assert_eq!(s.route.canary_weight, 5);
    assert_eq!(s.phase, Phase::Paused);
    assert_eq!(s.step, 1);
    assert!(
        s.history
            .iter()
            .any(|t| t.reason.contains("continuing at step 1"))
    );
    assert!(
        !r.effects
            .iter()
            .any(|e| matches!(e, Effect::SetRoute { route } | Effect::ClearManagedRoutes { route } if route.canary_weight == 0))
    );
}

#[test]
fn same_digest_new_revision_does_not_restart() {
    let mut r = Run::new(plan_with("    - setWeight: 40\n    - pause: {}\n"));
    r.tick(verdicts(vec![]));
    r.plan_ref.revision = "rev-format-only".into();
    r.after(10, verdicts(vec![]));
    let s = r.status.clone().expect("status");
    assert_eq!(s.phase, Phase::Paused);
    assert_eq!(s.plan.revision, "rev-format-only");
}

#[test]
fn invalid_plan_freezes_traffic_and_a_valid_revision_restarts() {
    let mut r = Run::new(plan_with("    - setWeight: 40\n    - pause: {}\n"));
    r.tick(verdicts(vec![]));
    let bad_ref = PlanRef {
        path: "rollouts/orders.yaml".into(),
        revision: "bad".into(),
        digest: String::new(),
    };
    let d = invalid(
        &r.plan.id,
        &bad_ref,
        vec!["x.yaml:3:1: bad".into()],
        r.status.as_ref(),
        &Observation::default(),
        r.now,
    );
    assert_eq!(d.status.phase, Phase::Invalid);
    assert!(!d.effects.iter().any(Effect::is_traffic));
    assert!(d.status.reason.contains("traffic left as it was"));
    r.status = Some(d.status);
    r.after(10, verdicts(vec![]));
    assert_eq!(r.phase(), Phase::Paused, "valid plan again: restarted");
}

#[test]
fn terminal_phases_stay_put_without_controls() {
    let mut r = Run::new(plan_with("    - setWeight: 10\n"));
    r.tick(verdicts(vec![]));
    assert_eq!(r.phase(), Phase::Succeeded);
    let d = r.after(30, verdicts(fail()));
    assert!(d.effects.is_empty(), "{:?}", d.effects);
    assert_eq!(d.wake_at, None);
}

#[test]
fn rollback_keeps_pushing_to_stable_on_drift() {
    let plan = plan_with("    - setWeight: 10\n    - analyze: 5m\n");
    let mut r = Run::new(plan);
    r.tick(verdicts(vec![]));
    r.after(30, verdicts(fail()));
    // The second failure: rollback starts; do not confirm it.
    r.now += Duration::seconds(30);
    let d = step(
        &r.plan,
        &r.plan_ref,
        r.status.as_ref(),
        &verdicts(fail()),
        r.now,
    );
    assert_eq!(d.status.phase, Phase::RollingBack);
    let drift = Observation {
        read_back: ReadBack::Drifted {
            actual: RouteState {
                canary_weight: 10,
                ..RouteState::default()
            },
            detail: "write failed".into(),
        },
        ..Observation::default()
    };
    let d2 = step(&r.plan, &r.plan_ref, Some(&d.status), &drift, r.now);
    assert_eq!(d2.status.phase, Phase::RollingBack);
    assert!(
        d2.effects
            .iter()
            .any(|e| matches!(e, Effect::ClearManagedRoutes { route } if route.canary_weight == 0))
    );
}

#[test]
fn unchanged_status_is_not_recorded_again() {
    let mut r = Run::new(plan_with("    - setWeight: 10\n    - pause: {}\n"));
    r.tick(verdicts(vec![]));
    let d = r.after(30, verdicts(pass()));
    assert!(
        !d.effects.contains(&Effect::RecordStatus),
        "{:?}",
        d.effects
    );
    assert_eq!(d.status.analysis.checks, 1);
}

#[test]
fn every_step_kind_is_covered_by_weight_at() {
    let p = plan_with(
        "    - setHeaderRoute: {headers: {x-a: {prefix: b}}}\n    - setWeight: 5\n    - analyze: 1m\n    - setMirror: 5\n    - pause: 1m\n    - setWeight: 50\n    - pause: {}\n",
    );
    let kinds: Vec<&str> = p.steps.iter().map(Step::keyword).collect();
    assert_eq!(
        kinds,
        [
            "setHeaderRoute",
            "setWeight",
            "analyze",
            "setMirror",
            "pause",
            "setWeight",
            "pause"
        ]
    );
    assert_eq!(p.weight_at(0), 0);
    assert_eq!(p.weight_at(4), 5);
    assert_eq!(p.weight_at(6), 50);
}

#[test]
fn reconcile_adopts_routes_one_write_ahead() {
    let plan = plan_with(
        "    - setHeaderRoute: {headers: {x-canary: {exact: \"true\"}}}\n    - setWeight: 10\n    - analyze: 1m\n    - setWeight: 50\n    - pause: {}\n",
    );
    let plan_ref = PlanRef {
        path: "p".into(),
        revision: "r".into(),
        digest: plan.digest(),
    };
    // No status in Git yet, but the routes are already at step 1.
    let adopted = reconcile(&plan, &plan_ref, None, &route_at(&plan, 1), t0()).expect("adopted");
    assert_eq!(
        (adopted.phase, adopted.step, adopted.route.canary_weight),
        (Phase::Progressing, 1, 10)
    );
    // Status at step 2 (10 %), routes already at step 3 (50 %).
    let mut r = Run::new(plan.clone());
    r.tick(verdicts(vec![]));
    let s = r.status.clone().expect("status");
    assert_eq!(s.step, 2);
    // Not before step 2's analysis could have passed: the route is then someone else's.
    assert_eq!(
        reconcile(&plan, &plan_ref, Some(&s), &route_at(&plan, 3), t0()),
        None
    );
    let done = s.clone();
    let after = t0() + chrono::Duration::seconds(61);
    let later =
        reconcile(&plan, &plan_ref, Some(&done), &route_at(&plan, 3), after).expect("adopted");
    assert_eq!((later.step, later.route.canary_weight), (3, 50));
    // Routes the plan never sets are left to the engine (drift).
    let odd = RouteState {
        canary_weight: 70,
        ..RouteState::default()
    };
    assert_eq!(reconcile(&plan, &plan_ref, Some(&s), &odd, t0()), None);
    // The same routes: nothing to adopt.
    assert_eq!(reconcile(&plan, &plan_ref, Some(&s), &s.route, t0()), None);
    // A rollback whose traffic change landed before the crash.
    let mut rolling = s.clone();
    rolling.phase = Phase::RollingBack;
    rolling.rollback_to = Some(Phase::Aborted);
    let done = reconcile(
        &plan,
        &plan_ref,
        Some(&rolling),
        &RouteState::all_stable(),
        t0(),
    )
    .expect("adopted");
    assert_eq!(done.phase, Phase::Aborted);
}

#[test]
fn reconcile_never_adopts_a_hand_edit_beyond_the_next_write() {
    let plan = plan_with(
        "    - setWeight: 10\n    - analyze: 1m\n    - setWeight: 20\n    - analyze: 1m\n    - setWeight: 50\n    - pause: {}\n",
    );
    let plan_ref = PlanRef {
        path: "p".into(),
        revision: "r".into(),
        digest: plan.digest(),
    };
    let mut r = Run::new(plan.clone());
    r.tick(verdicts(vec![]));
    let s = r.status.clone().expect("status");
    assert_eq!((s.phase, s.step), (Phase::Progressing, 1));
    // Step 2 (20 %) is the next write once step 1's analysis passed; step 4 (50 %) lies behind
    // another analysis.
    assert_eq!(
        reconcile(&plan, &plan_ref, Some(&s), &route_at(&plan, 2), t0()),
        None,
        "step 1's analysis cannot have passed yet"
    );
    let t1 = t0() + chrono::Duration::seconds(61);
    let next = reconcile(&plan, &plan_ref, Some(&s), &route_at(&plan, 2), t1).expect("adopted");
    assert_eq!(next.step, 2);
    assert_eq!(
        reconcile(&plan, &plan_ref, Some(&s), &route_at(&plan, 4), t1),
        None,
        "a later step's route is drift, not a lost write"
    );
    // All on the canary mid-rollout is someone else's promotion, not tidegate's.
    assert_eq!(
        reconcile(&plan, &plan_ref, Some(&s), &RouteState::all_canary(), t1),
        None
    );
    // A paused rollout adopts nothing: its resume is delivered again.
    let mut paused = s.clone();
    paused.phase = Phase::Paused;
    assert_eq!(
        reconcile(&plan, &plan_ref, Some(&paused), &route_at(&plan, 2), t1),
        None
    );
    // A plan without a status whose route is all on its canary (added again after its
    // promotion and removal) is done, saying that nothing was analysed.
    let done = reconcile(&plan, &plan_ref, None, &RouteState::all_canary(), t0()).expect("adopted");
    assert_eq!(done.phase, Phase::Succeeded);
    assert!(done.reason.contains("did not analyse"), "{}", done.reason);
}

#[test]
fn transitions_after_a_hold_name_the_verdicts_that_passed() {
    let mut r = Run::new(plan_with(
        "    - setWeight: 10\n    - analyze: 30s\n    - setWeight: 50\n    - pause: {}\n",
    ));
    r.tick(verdicts(vec![]));
    let mut v = Verdict::bare("success-rate", Outcome::Pass);
    v.value = Some(99.7);
    r.after(30, verdicts(vec![v]));
    let s = r.status.clone().expect("status");
    let entered = s
        .history
        .iter()
        .find(|t| t.step == 2)
        .expect("step 2 entered");
    assert!(
        entered.reason.contains("success-rate Pass value=99.7"),
        "{}",
        entered.reason
    );
}
