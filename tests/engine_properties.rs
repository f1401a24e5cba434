//! Property tests of the rollout engine's invariants, over random plans and random sequences of
//! observations (verdicts, controls, drift, unreachable metrics, window, preflight errors).

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use tidegate::analysis::{Outcome, Verdict};
use tidegate::control::ControlAction;
use tidegate::plan::{self, Plan};
use tidegate::rollout::{
    self, ControlRequest, Effect, Observation, Phase, PlanRef, ReadBack, RouteState, Status,
};

fn step_yaml() -> impl Strategy<Value = String> {
    prop_oneof![
        (0u8..=100).prop_map(|w| format!("setWeight: {w}")),
        (1u64..=600).prop_map(|s| format!("analyze: {s}s")),
        Just("pause: {}".to_owned()),
        (1u64..=600).prop_map(|s| format!("pause: {s}s")),
        Just("setHeaderRoute: {headers: {x-canary: {exact: \"true\"}}}".to_owned()),
        (0u8..=100).prop_map(|p| format!("setMirror: {p}")),
    ]
}

/// A valid plan: random steps with setWeight values sorted ascending.
fn plan_strategy() -> impl Strategy<Value = Plan> {
    (prop::collection::vec(step_yaml(), 1..8), any::<bool>(), 1u32..4).prop_map(
        |(steps, keep, limit)| {
            let mut weights: Vec<u8> = steps
                .iter()
                .filter_map(|s| s.strip_prefix("setWeight: ").and_then(|w| w.parse().ok()))
                .collect();
            weights.sort_unstable();
            let mut wi = weights.into_iter();
            let steps: Vec<String> = steps
                .into_iter()
                .map(|s| {
                    if s.starts_with("setWeight") {
                        format!("setWeight: {}", wi.next().unwrap_or(100))
                    } else {
                        s
                    }
                })
                .collect();
            let text = format!(
                "apiVersion: tidegate.dev/v1alpha1\nkind: Rollout\nmetadata: {{name: p}}\nspec:\n  service: s\n  stable: v1\n  canary: v2\n  onSuccess: {}\n  analysis:\n    interval: 30s\n    failureLimit: {limit}\n    unreachableLimit: 90s\n    metrics:\n      - {{name: m, template: istio-success-rate, min: 99}}\n  steps:\n{}",
                if keep { "keep" } else { "promote" },
                steps.iter().map(|s| format!("    - {s}\n")).collect::<String>()
            );
            let parsed = plan::parse_str("prop.yaml", &text);
            assert!(parsed.findings.is_empty(), "{:?}\n{text}", parsed.findings);
            parsed.plans.into_iter().next().expect("one plan")
        },
    )
}

#[derive(Debug, Clone)]
struct Tick {
    after: i64,
    outcome: Option<Outcome>,
    control: Option<ControlAction>,
    drift: bool,
    unreachable: bool,
    outside_window: bool,
    preflight: bool,
    confirm: bool,
}

fn tick_strategy() -> impl Strategy<Value = Tick> {
    (
        0i64..400,
        prop::option::of(prop_oneof![
            Just(Outcome::Pass),
            Just(Outcome::Fail),
            Just(Outcome::Inconclusive)
        ]),
        prop::option::weighted(0.2, prop::sample::select(ControlAction::ALL.to_vec())),
        prop::bool::weighted(0.05),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.05),
        prop::bool::weighted(0.8),
    )
        .prop_map(
            |(after, outcome, control, drift, unreachable, outside_window, preflight, confirm)| {
                Tick {
                    after,
                    outcome,
                    control,
                    drift,
                    unreachable,
                    outside_window,
                    preflight,
                    confirm,
                }
            },
        )
}

fn observation(t: &Tick) -> Observation {
    Observation {
        read_back: if t.drift {
            ReadBack::Drifted {
                actual: RouteState {
                    canary_weight: 77,
                    ..RouteState::default()
                },
                detail: "edited".into(),
            }
        } else if t.confirm {
            ReadBack::Verified
        } else {
            ReadBack::Unknown
        },
        verdicts: t
            .outcome
            .map(|o| vec![Verdict::bare("m", o)])
            .unwrap_or_default(),
        controls: t
            .control
            .map(|action| ControlRequest {
                action,
                commit: "c".into(),
                author: "a".into(),
                reason: String::new(),
            })
            .into_iter()
            .collect(),
        metrics_unreachable: t.unreachable,
        outside_window: t.outside_window,
        preflight_errors: if t.preflight {
            vec!["error".into()]
        } else {
            Vec::new()
        },
        refused: Vec::new(),
        ..Observation::default()
    }
}

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
        .expect("valid")
        .with_timezone(&Utc)
}

/// The highest canary weight the plan allows at `status`: the weight of the current step, or
/// 100 once every step has run (promotion, also when a promotion is paused or drifted).
fn ceiling(plan: &Plan, status: &Status) -> u8 {
    if status.step >= plan.steps.len()
        || matches!(status.phase, Phase::Promoting | Phase::Succeeded)
    {
        100
    } else {
        plan.weight_at(status.step)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn invariants_hold(plan in plan_strategy(), ticks in prop::collection::vec(tick_strategy(), 1..60)) {
        let plan_ref = PlanRef { path: "p.yaml".into(), revision: "r".into(), digest: plan.digest() };
        let mut now = t0();
        let mut status: Option<Status> = None;
        for t in &ticks {
            now += Duration::seconds(t.after);
            let obs = observation(t);
            let d = rollout::step(&plan, &plan_ref, status.as_ref(), &obs, now);

            // Same input twice, same decision.
            let again = rollout::step(&plan, &plan_ref, status.as_ref(), &obs, now);
            prop_assert_eq!(&d, &again);

            // The canary weight never exceeds the current step's weight.
            for e in &d.effects {
                if let Effect::SetRoute { route } | Effect::ClearManagedRoutes { route } = e {
                    prop_assert!(route.canary_weight <= ceiling(&plan, &d.status),
                        "weight {} beyond step {} ({:?}) in {:?}", route.canary_weight, d.status.step, plan.steps.get(d.status.step), d.status.phase);
                    prop_assert_eq!(route.canary_weight + route.stable_weight(), 100);
                }
            }
            prop_assert!(d.status.route.canary_weight <= ceiling(&plan, &d.status));

            // Rolling back means canary weight 0, and it stays 0.
            if matches!(d.status.phase, Phase::RollingBack | Phase::RolledBack | Phase::Aborted) {
                prop_assert_eq!(d.status.route.canary_weight, 0);
                prop_assert!(d.status.route.header_route.is_none());
                prop_assert_eq!(d.status.route.mirror_percent, 0);
            }

            // Terminal phases emit no traffic effect (unless a retry restarts them).
            if let Some(prev) = &status {
                let retried = t.control == Some(ControlAction::Retry);
                if prev.phase.is_terminal() && !retried {
                    prop_assert!(!d.effects.iter().any(Effect::is_traffic), "{:?} -> {:?}", prev.phase, d.effects);
                }
            }

            // History stays bounded.
            prop_assert!(d.status.history.len() <= rollout::HISTORY_LIMIT);
            prop_assert!(d.status.controls.len() <= rollout::CONTROLS_LIMIT);

            // Steps index stays within the plan.
            prop_assert!(d.status.step <= plan.steps.len());
            status = Some(d.status);
        }
    }

    #[test]
    fn failures_never_exceed_the_limit_without_rollback(plan in plan_strategy(), n in 1usize..10) {
        let plan_ref = PlanRef { path: "p.yaml".into(), revision: "r".into(), digest: plan.digest() };
        let mut now = t0();
        let mut status: Option<Status> = None;
        for _ in 0..n {
            now += Duration::seconds(30);
            let obs = Observation {
                read_back: ReadBack::Verified,
                verdicts: vec![Verdict::bare("m", Outcome::Fail)],
                ..Observation::default()
            };
            let d = rollout::step(&plan, &plan_ref, status.as_ref(), &obs, now);
            if d.status.analysis.failures >= plan.analysis.failure_limit {
                prop_assert!(matches!(d.status.phase, Phase::RollingBack | Phase::RolledBack), "{:?}", d.status.phase);
            }
            status = Some(d.status);
        }
    }
}
