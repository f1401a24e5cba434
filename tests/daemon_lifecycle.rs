//! The lifecycle rules end to end in the daemon (fakes, paused clock): a typo, a removed plan,
//! a subset deleted mid-rollout, the next release, a restart while the newest revision is
//! invalid. The engine's own tests cover every cell; these show the daemon wires them.

#[path = "support/daemon.rs"]
mod support;

use support::*;
use tidegate::rollout::Phase;

const NS: &str = "prod";

fn plan(stable: &str, canary: &str, analyze: &str) -> String {
    format!(
        "apiVersion: tidegate.dev/v1alpha1\nkind: Rollout\nmetadata: {{name: orders, namespace: prod}}\nspec:\n  service: orders\n  routes: [primary]\n  stable: {stable}\n  canary: {canary}\n  steps:\n    - setWeight: 10\n    - analyze: {analyze}\n  analysis:\n    interval: 30s\n    failureLimit: 1\n    minRequests: 10\n    metrics:\n      - {{name: success-rate, template: istio-success-rate, min: 99}}\n"
    )
}

/// The same plan with a YAML indentation error.
fn typo(stable: &str, canary: &str) -> String {
    plan(stable, canary, "1h").replace("  stable:", " stable:")
}

fn world(text: &str) -> World {
    let mesh = FakeMesh::with_orders(NS, &["v1", "v2"]);
    let metrics = FakeMetrics::healthy(NS, "orders", &["v1", "v2"]);
    let repo = FakeRepo::default();
    repo.write_plan("rollouts/orders.yaml", text);
    World::start(mesh, metrics, repo)
}

async fn status(w: &World) -> tidegate::rollout::Status {
    w.api_status(NS, "orders")
        .await
        .expect("a status in the API")
}

async fn push(w: &mut World, text: &str) {
    w.repo.write_plan("rollouts/orders.yaml", text);
    w.state.fetch_now.notify_one();
    w.run_for(1).await;
}

#[tokio::test(start_paused = true)]
async fn a_typo_at_ten_percent_holds_and_a_failing_canary_still_rolls_back() {
    let mut w = world(&plan("v1", "v2", "1h"));
    w.run_for(2).await;
    assert_eq!(w.mesh.weight(NS, "v2"), 10);
    push(&mut w, &typo("v1", "v2")).await;
    w.run_for(60).await;
    let s = status(&w).await;
    assert_eq!(s.phase, Phase::Progressing, "{}", s.reason);
    assert!(s.pending.is_some(), "the invalid revision is named");
    assert_eq!(
        w.mesh.weight(NS, "v2"),
        10,
        "the canary keeps its traffic, guarded"
    );
    let rounds = w.metrics.rounds();
    w.metrics.set(NS, "orders", "v2", Health::Failing);
    w.run_for(60).await;
    assert!(w.metrics.rounds() > rounds, "still analysed");
    let s = status(&w).await;
    assert_eq!(s.phase, Phase::RolledBack, "{}", s.reason);
    assert_eq!(w.mesh.weight(NS, "v2"), 0);
    assert_eq!(w.recorder.events_named("invalid"), 1);
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn removing_a_running_plan_rolls_back_clears_and_forgets() {
    let mut w = world(&plan("v1", "v2", "1h"));
    w.run_for(2).await;
    assert_eq!(w.mesh.weight(NS, "v2"), 10);
    w.repo.remove_plan("rollouts/orders.yaml");
    w.state.fetch_now.notify_one();
    w.run_for(3).await;
    assert_eq!(w.mesh.weight(NS, "v1"), 100);
    assert!(
        w.api_status(NS, "orders").await.is_none(),
        "no longer listed"
    );
    let (_, _, _, recorder) = w.stop().await;
    assert_eq!(
        recorder.removed.lock().expect("lock").len(),
        1,
        "status file removed"
    );
    let last = recorder.latest("orders").expect("final status");
    assert_eq!(last.phase, Phase::RolledBack);
}

#[tokio::test(start_paused = true)]
async fn a_canary_subset_deleted_mid_rollout_is_rolled_back_at_once() {
    let mut w = world(&plan("v1", "v2", "1h"));
    w.run_for(2).await;
    assert_eq!(w.mesh.weight(NS, "v2"), 10);
    w.mesh.put(dr_key(NS, "orders"), orders_dr(NS, &["v1"]));
    w.run_for(2).await;
    let s = status(&w).await;
    assert_eq!(s.phase, Phase::RolledBack, "{}", s.reason);
    assert!(
        s.history
            .iter()
            .any(|t| t.reason.contains("no longer has subset `v2`"))
    );
    assert_eq!(w.mesh.weight(NS, "v2"), 0);
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn releases_follow_each_other() {
    let mut w = world(&plan("v1", "v2", "1m"));
    w.run_for(100).await;
    assert_eq!(status(&w).await.phase, Phase::Succeeded);
    assert_eq!(w.mesh.weight(NS, "v2"), 100);
    // An edit of the finished plan moves nothing.
    let writes = w.mesh.writes();
    push(&mut w, &plan("v1", "v2", "2m")).await;
    w.run_for(5).await;
    assert_eq!(w.mesh.writes(), writes, "no traffic moved");
    assert_eq!(status(&w).await.phase, Phase::Succeeded);
    // The next release: v2 → v3.
    w.mesh
        .put(dr_key(NS, "orders"), orders_dr(NS, &["v2", "v3"]));
    w.metrics.set(NS, "orders", "v3", Health::Healthy);
    push(&mut w, &plan("v2", "v3", "1m")).await;
    w.run_for(2).await;
    let s = status(&w).await;
    assert_eq!(w.mesh.weight(NS, "v3"), 10, "{} {:?}", s.reason, s.findings);
    assert_eq!(w.mesh.weight(NS, "v2"), 90);
    w.run_for(100).await;
    let s = status(&w).await;
    assert_eq!(s.phase, Phase::Succeeded, "{}", s.reason);
    assert_eq!(w.mesh.weight(NS, "v3"), 100);
    let vs = w.mesh.get(&vs_key(NS, "orders")).expect("vs");
    let dests = vs
        .pointer("/spec/http/0/route")
        .and_then(|r| r.as_array())
        .map(Vec::len);
    assert_eq!(dests, Some(1), "the route sends to v3 alone: {vs}");
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_new_release_preflight_refuses_keeps_the_running_one() {
    let mut w = world(&plan("v1", "v2", "1h"));
    w.run_for(2).await;
    assert_eq!(w.mesh.weight(NS, "v2"), 10);
    // A typo in the canary's name: v33 is no subset. The healthy v2 canary is not rolled back
    // for a release that cannot start.
    push(&mut w, &plan("v1", "v33", "1h")).await;
    w.run_for(60).await;
    let s = status(&w).await;
    assert_eq!(s.phase, Phase::Progressing, "{}", s.reason);
    let pending = s.pending.as_ref().expect("the new release is named");
    assert!(pending.why.contains("cannot start"), "{}", pending.why);
    assert!(
        pending.findings.iter().any(|f| f.contains("v33")),
        "{:?}",
        pending.findings
    );
    assert_eq!(w.mesh.weight(NS, "v2"), 10);
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_plan_moved_to_another_file_in_two_commits_keeps_running() {
    let mut w = world(&plan("v1", "v2", "1h"));
    w.run_for(2).await;
    assert_eq!(w.mesh.weight(NS, "v2"), 10);
    // First the copy (ignored: the rollout is defined already), then the old file goes.
    w.repo
        .write_plan("rollouts/all.yaml", &plan("v1", "v2", "1h"));
    w.state.fetch_now.notify_one();
    w.run_for(2).await;
    w.repo.remove_plan("rollouts/orders.yaml");
    w.state.fetch_now.notify_one();
    w.run_for(30).await;
    let s = status(&w).await;
    assert_eq!(s.phase, Phase::Progressing, "{}", s.reason);
    assert_eq!(s.plan.path, "rollouts/all.yaml");
    assert_eq!(w.mesh.weight(NS, "v2"), 10, "never rolled back");
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn renaming_a_running_plan_hands_the_route_over_after_the_rollback() {
    let mut w = world(&plan("v1", "v2", "1h"));
    w.run_for(2).await;
    assert_eq!(w.mesh.weight(NS, "v2"), 10);
    // The same file, a new name: the old rollout retires (rolls back) while the new one waits
    // for the route, then starts; neither takes the other's writes for drift.
    let renamed = plan("v1", "v2", "1h").replace("name: orders,", "name: orders-v2,");
    push(&mut w, &renamed).await;
    w.run_for(60).await;
    assert!(
        w.api_status(NS, "orders").await.is_none(),
        "the old name is forgotten"
    );
    let s = w.api_status(NS, "orders-v2").await.expect("listed");
    assert_eq!(s.phase, Phase::Progressing, "{}", s.reason);
    assert_eq!(w.mesh.weight(NS, "v2"), 10);
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_plan_added_again_after_its_promotion_moves_no_traffic() {
    let mut w = world(&plan("v1", "v2", "1m"));
    w.run_for(100).await;
    assert_eq!(status(&w).await.phase, Phase::Succeeded);
    w.repo.remove_plan("rollouts/orders.yaml");
    w.state.fetch_now.notify_one();
    w.run_for(3).await;
    assert!(w.api_status(NS, "orders").await.is_none(), "forgotten");
    assert_eq!(w.mesh.weight(NS, "v2"), 100);

    // The same plan comes back (a revert): the route already sends everything to v2, so the
    // rollout is adopted as done instead of sending 90 % back to v1.
    let writes = w.mesh.writes();
    push(&mut w, &plan("v1", "v2", "1m")).await;
    w.run_for(5).await;
    let s = status(&w).await;
    assert_eq!(s.phase, Phase::Succeeded, "{}", s.reason);
    assert!(s.reason.contains("already on the canary"), "{}", s.reason);
    assert_eq!(w.mesh.writes(), writes, "no traffic moved");
    assert_eq!(w.mesh.weight(NS, "v2"), 100);
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_restart_while_the_newest_revision_is_invalid_keeps_the_rollout_guarded() {
    let mut w = world(&plan("v1", "v2", "1h"));
    w.run_for(2).await;
    push(&mut w, &typo("v1", "v2")).await;
    w.run_for(2).await;
    let (mesh, metrics, repo, recorder) = w.stop().await;
    repo.store_statuses(recorder.latest_all());
    let mut w = World::start(mesh, metrics, repo.reopen());
    w.run_for(2).await;
    let s = status(&w).await;
    assert_eq!(s.phase, Phase::Progressing, "{}", s.reason);
    assert!(s.pending.is_some());
    w.metrics.set(NS, "orders", "v2", Health::Failing);
    w.run_for(60).await;
    assert_eq!(status(&w).await.phase, Phase::RolledBack);
    assert_eq!(w.mesh.weight(NS, "v2"), 0);
    w.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_second_plan_on_the_same_route_is_refused_visibly() {
    let mut w = world(&plan("v1", "v2", "1h"));
    w.run_for(2).await;
    assert_eq!(w.mesh.weight(NS, "v2"), 10);
    let second = plan("v1", "v2", "1h").replace("name: orders,", "name: orders-again,");
    w.repo.write_plan("rollouts/orders-again.yaml", &second);
    w.state.fetch_now.notify_one();
    w.run_for(60).await;
    let refused = w.api_status(NS, "orders-again").await.expect("listed");
    assert_eq!(refused.phase, Phase::Invalid);
    assert!(
        refused
            .findings
            .iter()
            .any(|f| f.starts_with("rollouts/orders-again.yaml: ") && f.contains("prod/orders")),
        "{:?}",
        refused.findings
    );
    let first = status(&w).await;
    assert_eq!(first.phase, Phase::Progressing, "{}", first.reason);
    assert_eq!(w.mesh.weight(NS, "v2"), 10);

    // The first owner's plan is removed: it rolls back and lets go, then the refused plan is
    // reconsidered without an edit and starts from the route on stable.
    w.repo.remove_plan("rollouts/orders.yaml");
    w.state.fetch_now.notify_one();
    w.run_for(60).await;
    assert!(w.api_status(NS, "orders").await.is_none(), "forgotten");
    let second = w.api_status(NS, "orders-again").await.expect("listed");
    assert_eq!(second.phase, Phase::Progressing, "{}", second.reason);
    assert!(second.findings.is_empty(), "{:?}", second.findings);
    assert_eq!(w.mesh.weight(NS, "v2"), 10);
    w.stop().await;
}
