//! The daemon in-process, built from fakes, on a paused tokio clock: no child process, no
//! sleeps in wall time. Each test lives minutes or hours of daemon time in milliseconds.

#[path = "support/daemon.rs"]
mod support;

use support::*;
use tidegate::rollout::Phase;

const NS: &str = "prod";

/// A plan with every step kind; `pause: {}` waits for a `resume` control.
const EVERY_STEP: &str = "apiVersion: tidegate.dev/v1alpha1\nkind: Rollout\nmetadata: {name: orders, namespace: prod}\nspec:\n  service: orders\n  routes: [primary]\n  stable: v1\n  canary: v2\n  steps:\n    - setHeaderRoute: {headers: {x-canary: {exact: \"true\"}}}\n    - setWeight: 10\n    - analyze: 30s\n    - setMirror: 20\n    - pause: 1m\n    - setWeight: 50\n    - pause: {}\n    - setWeight: 80\n  analysis:\n    interval: 10s\n    failureLimit: 1\n    minRequests: 10\n    metrics:\n      - {name: success-rate, template: istio-success-rate, min: 99}\n";

/// Ten percent, then a long analysis.
const LONG: &str = "apiVersion: tidegate.dev/v1alpha1\nkind: Rollout\nmetadata: {name: orders, namespace: prod}\nspec:\n  service: orders\n  routes: [primary]\n  stable: v1\n  canary: v2\n  steps:\n    - setWeight: 10\n    - analyze: 1h\n  analysis:\n    interval: 30s\n    failureLimit: 1\n    minRequests: 10\n    metrics:\n      - {name: success-rate, template: istio-success-rate, min: 99}\n";

fn world(plan: &str) -> World {
    let mesh = FakeMesh::with_orders(NS, &["v1", "v2"]);
    let metrics = FakeMetrics::healthy(NS, "orders", &["v1", "v2"]);
    let repo = FakeRepo::default();
    repo.write_plan("rollouts/orders.yaml", plan);
    World::start(mesh, metrics, repo)
}

async fn phase(w: &World) -> Option<Phase> {
    w.api_status(NS, "orders").await.map(|s| s.phase)
}

#[tokio::test(start_paused = true)]
async fn steady_progress_through_every_step_kind() {
    let mut w = world(EVERY_STEP);
    w.run_for(1).await;
    assert_eq!(
        w.mesh.route_names(NS)[0],
        "tidegate-orders-header",
        "header route goes first"
    );
    w.run_for(2).await;
    assert_eq!(w.mesh.weight(NS, "v2"), 10);
    w.run_for(30).await;
    let vs = w.mesh.get(&vs_key(NS, "orders")).expect("vs");
    assert!(
        vs.to_string().contains("mirrorPercentage"),
        "mirror set after the analysis: {vs}"
    );
    w.run_for(62).await;
    assert_eq!(w.mesh.weight(NS, "v2"), 50);
    assert_eq!(
        phase(&w).await,
        Some(Phase::Paused),
        "pause {{}} waits for a resume"
    );
    w.run_for(600).await;
    assert_eq!(w.mesh.weight(NS, "v2"), 50, "nothing moves while paused");
    w.repo.control("resume prod/orders", "ana@example.com");
    w.state.fetch_now.notify_one();
    w.run_for(3).await;
    let s = w.api_status(NS, "orders").await.expect("status");
    assert_eq!(s.phase, Phase::Succeeded, "{}", s.reason);
    assert_eq!(w.mesh.weight(NS, "v2"), 100);
    assert!(
        !w.mesh
            .route_names(NS)
            .iter()
            .any(|n| n.starts_with("tidegate-"))
    );
    let steps: Vec<usize> = s.history.iter().map(|t| t.step).collect();
    for step in 0..=7 {
        assert!(
            steps.contains(&step),
            "step {step} in the history {steps:?}"
        );
    }
    assert!(
        s.analysis.checks >= 3,
        "analysed every interval: {}",
        s.analysis.checks
    );
    assert_eq!(s.controls.len(), 1);
    assert!(s.controls[0].applied);
    let latest = w.recorder.latest("orders").expect("written to Git");
    assert_eq!(latest.phase, Phase::Succeeded);
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_read_back_loses_no_analysis_round() {
    let mut w = world(LONG);
    w.run_for(5).await;
    assert_eq!(w.mesh.weight(NS, "v2"), 10);
    let before = w
        .api_status(NS, "orders")
        .await
        .expect("status")
        .analysis
        .checks;
    let rounds_before = w.metrics.rounds();
    // The read-back of the next turn fails twice: the round's verdicts wait for a decision.
    w.mesh.fail_next_reads(2, "connection reset (fake)");
    w.run_for(120).await;
    let s = w.api_status(NS, "orders").await.expect("status");
    let rounds = w.metrics.rounds() - rounds_before;
    assert_eq!(
        s.analysis.checks - before,
        rounds as u32,
        "every round that ran was counted by a decision ({rounds} rounds)"
    );
    assert!(rounds >= 3, "analysis went on: {rounds}");
    assert!(s.fault.is_none(), "a short transient failure is not shown");
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_transient_write_failure_is_retried_and_then_lands() {
    let mesh = FakeMesh::with_orders(NS, &["v1", "v2"]);
    mesh.fail_next_writes(2, "503 service unavailable (fake)", true);
    let repo = FakeRepo::default();
    repo.write_plan("rollouts/orders.yaml", LONG);
    let mut w = World::start(
        mesh,
        FakeMetrics::healthy(NS, "orders", &["v1", "v2"]),
        repo,
    );
    w.run_for(1).await;
    assert_eq!(w.mesh.weight(NS, "v2"), 0, "the first writes fail");
    let early = w.api_status(NS, "orders").await;
    assert!(
        early.is_none_or(|s| s.route.canary_weight == 0),
        "no status claims a route the mesh lacks"
    );
    w.run_for(15).await;
    assert_eq!(
        w.mesh.weight(NS, "v2"),
        10,
        "retried with backoff until it landed"
    );
    let s = w.api_status(NS, "orders").await.expect("status");
    assert_eq!(s.phase, Phase::Progressing);
    assert_eq!(s.route.canary_weight, 10);
    assert!(s.fault.is_none());
    assert_eq!(w.recorder.events_named("blocked"), 0);
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_permanent_write_failure_becomes_visible_at_once() {
    let mesh = FakeMesh::with_orders(NS, &["v1", "v2"]);
    mesh.fail_next_writes(1000, "admission webhook denied the patch (403)", false);
    let repo = FakeRepo::default();
    repo.write_plan("rollouts/orders.yaml", LONG);
    let mut w = World::start(
        mesh,
        FakeMetrics::healthy(NS, "orders", &["v1", "v2"]),
        repo,
    );
    w.run_for(1).await;
    let s = w.api_status(NS, "orders").await.expect("status in the API");
    let fault = s.fault.clone().expect("the fault is shown");
    assert!(fault.permanent);
    assert!(
        s.reason.contains("admission webhook denied"),
        "{}",
        s.reason
    );
    assert_eq!(
        s.route.canary_weight, 0,
        "the status tells the truth about the route"
    );
    let git = w.recorder.latest("orders").expect("in Git too");
    assert!(git.fault.is_some());
    assert!(
        !git.plan.revision.is_empty(),
        "names the revision being worked on"
    );
    w.run_for(600).await;
    assert_eq!(
        w.recorder.events_named("blocked"),
        1,
        "people are told once"
    );
    let writes_tried = 1000 - w.mesh.pending_write_failures();
    assert!(
        (5..=30).contains(&writes_tried),
        "retried with a capped backoff, not every 2 s: {writes_tried} attempts in 10 min"
    );
    let metrics = w.state.metrics.encode();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("tidegate_rollout_blocked{") && l.ends_with(" 1")),
        "a metric says so:\n{metrics}"
    );
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_lasting_transient_failure_is_shown_after_the_limit() {
    let mesh = FakeMesh::with_orders(NS, &["v1", "v2"]);
    mesh.fail_next_writes(1000, "503 service unavailable (fake)", true);
    let repo = FakeRepo::default();
    repo.write_plan("rollouts/orders.yaml", LONG);
    let mut w = World::start(
        mesh,
        FakeMetrics::healthy(NS, "orders", &["v1", "v2"]),
        repo,
    );
    w.run_for(100).await;
    assert!(
        w.api_status(NS, "orders")
            .await
            .is_none_or(|s| s.fault.is_none()),
        "not yet"
    );
    w.run_for(80).await;
    let s = w.api_status(NS, "orders").await.expect("status");
    let fault = s.fault.expect("shown after retry.reportAfter (2 min)");
    assert!(!fault.permanent);
    assert_eq!(fault.since, start_time(), "since the first failure");
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn controls_arriving_while_a_decision_is_deferred_are_applied_once() {
    let mut w = world(LONG);
    w.run_for(5).await;
    assert_eq!(w.mesh.weight(NS, "v2"), 10);
    // The canary fails: the rollback's write fails for a while; meanwhile someone aborts.
    w.metrics.set(NS, "orders", "v2", Health::Failing);
    w.mesh
        .fail_next_writes(3, "503 service unavailable (fake)", true);
    w.run_for(31).await;
    assert_eq!(
        w.mesh.weight(NS, "v2"),
        10,
        "the rollback write has not landed yet"
    );
    w.repo
        .control("abort prod/orders bad canary", "ana@example.com");
    w.state.fetch_now.notify_one();
    w.run_for(30).await;
    assert_eq!(w.mesh.weight(NS, "v2"), 0);
    let s = w.api_status(NS, "orders").await.expect("status");
    assert!(
        matches!(s.phase, Phase::RolledBack | Phase::Aborted),
        "{:?}",
        s.phase
    );
    assert_eq!(
        s.controls.len(),
        1,
        "one answer for the control: {:?}",
        s.controls
    );
    assert_eq!(s.analysis.failures, 1, "the failed round counted once");
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn verdicts_are_kept_across_a_deferral() {
    let mut w = world(LONG);
    w.run_for(5).await;
    let rounds_before = w.metrics.rounds();
    w.metrics.set(NS, "orders", "v2", Health::Failing);
    w.mesh
        .fail_next_writes(2, "503 service unavailable (fake)", true);
    w.run_for(60).await;
    let s = w.api_status(NS, "orders").await.expect("status");
    assert_eq!(s.phase, Phase::RolledBack, "{}", s.reason);
    assert!(
        s.reason.contains("success-rate"),
        "names the failed check: {}",
        s.reason
    );
    assert_eq!(s.analysis.failures, 1);
    assert_eq!(
        w.metrics.rounds() - rounds_before,
        1,
        "no second round while the first waited"
    );
    assert_eq!(w.mesh.weight(NS, "v2"), 0);
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_watched_edit_wakes_the_rollout_at_once() {
    let mut w = world(LONG);
    w.run_for(5).await;
    assert_eq!(phase(&w).await, Some(Phase::Progressing));
    let started = tokio::time::Instant::now();
    w.mesh.edit(&vs_key(NS, "orders"), |vs| {
        vs["spec"]["http"][0]["route"][0]["weight"] = serde_json::json!(60);
        vs["spec"]["http"][0]["route"][1]["weight"] = serde_json::json!(40);
    });
    loop {
        w.run_for_ms(50).await;
        if phase(&w).await == Some(Phase::Paused) {
            break;
        }
        assert!(started.elapsed().as_secs() < 30, "drift never seen");
    }
    let seen_after = started.elapsed();
    assert!(
        seen_after.as_millis() < 1000,
        "seen in {seen_after:?}, not at the next interval"
    );
    let s = w.api_status(NS, "orders").await.expect("status");
    assert!(s.reason.contains("drift"), "{}", s.reason);
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn losing_the_lease_stops_every_write() {
    let mut w = world(EVERY_STEP);
    w.run_for(3).await;
    assert_eq!(w.mesh.weight(NS, "v2"), 10);
    w.lease.send(false).expect("lease");
    w.run_for(1).await;
    let (writes, submitted, polls) = (w.mesh.writes(), w.recorder.submitted(), w.repo.polls());
    w.repo.control("promote prod/orders", "ana@example.com");
    w.state.fetch_now.notify_one();
    w.run_for(600).await;
    assert_eq!(w.mesh.writes(), writes, "no mesh write without the lease");
    assert_eq!(
        w.recorder.submitted(),
        submitted,
        "no status written without the lease"
    );
    assert_eq!(w.repo.polls(), polls, "no poll either");
    w.lease.send(true).expect("lease");
    w.run_for(10).await;
    assert_eq!(
        w.mesh.weight(NS, "v2"),
        100,
        "the new leader applies the promote"
    );
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_watched_namespaces_follow_the_plans() {
    let mut w = world(LONG);
    w.run_for(1).await;
    assert_eq!(w.mesh.watched(), ["prod".to_string()].into_iter().collect());
    w.repo.remove_plan("rollouts/orders.yaml");
    w.state.fetch_now.notify_one();
    w.run_for(1).await;
    // A removed plan is rolled back and its routes cleared before tidegate lets go.
    assert_eq!(w.mesh.weight(NS, "v1"), 100);
    assert!(w.mesh.watched().is_empty());
    w.stop().await;
}
