//! Every control gets exactly one answer: the daemon (in-process, fakes, paused clock) resolves a
//! bare name in any namespace and refuses unknown, ambiguous and malformed names once each,
//! through `StatusSink::refuse_unknown` and a `refused` notification. And the adapter additions
//! behind the daemon's traits: `PlanFeed::plan_at` (fake and real Git) and `StatusSink::remove`
//! and `refuse_unknown` of the writer sink over a real `file://` remote.

#[path = "support/daemon.rs"]
mod support;

#[path = "git/common.rs"]
mod common;

use std::time::Duration;

use support::*;
use tidegate::control::RefusedRecord;
use tidegate::daemon::{BlockingFeed, PlanFeed, StatusSink, WriterSink};
use tidegate::git::{GitRepo, PlanSource, StatusWriter};
use tidegate::plan::RolloutId;
use tidegate::rollout::Phase;

/// Not the daemon's namespace (`prod` in `support::settings`).
const NS: &str = "shop";

fn plan(ns: &str) -> String {
    format!(
        "apiVersion: tidegate.dev/v1alpha1\nkind: Rollout\nmetadata: {{name: orders, namespace: {ns}}}\nspec:\n  service: orders\n  routes: [primary]\n  stable: v1\n  canary: v2\n  steps:\n    - setWeight: 10\n    - analyze: 1h\n  analysis:\n    interval: 30s\n    failureLimit: 1\n    minRequests: 10\n    metrics:\n      - {{name: success-rate, template: istio-success-rate, min: 99}}\n  notify: [ops]\n"
    )
}

fn refused(w: &World) -> Vec<RefusedRecord> {
    w.recorder.refused.lock().expect("lock").clone()
}

async fn control(w: &mut World, trailer: &str) {
    w.repo.control(trailer, "ana@example.com");
    w.state.fetch_now.notify_one();
    w.run_for(3).await;
}

#[tokio::test(start_paused = true)]
async fn every_control_gets_exactly_one_answer() {
    let mesh = FakeMesh::with_orders(NS, &["v1", "v2"]);
    let metrics = FakeMetrics::healthy(NS, "orders", &["v1", "v2"]);
    let repo = FakeRepo::default();
    repo.write_plan("rollouts/orders.yaml", &plan(NS));
    let mut w = World::start(mesh, metrics, repo);
    w.run_for(5).await;
    assert_eq!(w.mesh.weight(NS, "v2"), 10);

    // A bare name resolves to the one plan of that name, whatever the daemon's namespace.
    control(&mut w, "pause orders").await;
    let s = w.api_status(NS, "orders").await.expect("status");
    assert_eq!(s.phase, Phase::Paused, "{}", s.reason);

    // A typo and a malformed trailer: refused once each, with the closest plan and a notice.
    control(&mut w, "abort shop/order now").await;
    control(&mut w, "resume").await;
    let r = refused(&w);
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(r[0].trailer, "Tidegate: abort shop/order now");
    assert_eq!(r[0].why, "no plan defines shop/order");
    assert_eq!(r[0].plans, ["shop/orders"]);
    assert_eq!(r[0].author, "Ana <ana@example.com>");
    assert!(r[1].why.contains("names no rollout"), "{}", r[1].why);
    assert_eq!(w.mesh.weight(NS, "v2"), 10, "nothing moved");
    let notices: Vec<_> = w
        .recorder
        .notifications
        .lock()
        .expect("lock")
        .iter()
        .filter(|n| tidegate::notify::event_name(n.event) == "refused")
        .cloned()
        .collect();
    assert_eq!(notices.len(), 2);
    assert_eq!(notices[0].channels, ["ops"], "the closest plan's channels");
    assert_eq!(notices[0].rollout.to_string(), "shop/order");
    let processed = w.recorder.processed.lock().expect("lock").clone();
    assert!(
        processed.is_some(),
        "the marker moves past refused controls"
    );

    // Time passes, polls repeat: no second answer.
    w.run_for(120).await;
    assert_eq!(refused(&w).len(), 2);
    assert_eq!(w.recorder.events_named("refused"), 2);

    // A second plan of the same name makes the bare name ambiguous.
    w.repo
        .write_plan("rollouts/orders-staging.yaml", &plan("staging"));
    control(&mut w, "resume orders").await;
    let r = refused(&w);
    assert_eq!(r.len(), 3);
    assert!(r[2].why.starts_with("orders is ambiguous"), "{}", r[2].why);
    assert_eq!(r[2].plans, ["shop/orders", "staging/orders"]);
    assert_eq!(phase(&w, NS).await, Some(Phase::Paused));

    control(&mut w, "resume shop/orders").await;
    let s = w.api_status(NS, "orders").await.expect("status");
    assert_eq!(s.phase, Phase::Progressing, "{}", s.reason);
    let answered: Vec<(String, bool)> = s
        .controls
        .iter()
        .map(|c| (c.action.clone(), c.applied))
        .collect();
    assert_eq!(
        answered,
        [("pause".to_string(), true), ("resume".to_string(), true)],
        "the rollout's own status holds only the controls that named it"
    );
    w.stop().await;
}

async fn phase(w: &World, ns: &str) -> Option<Phase> {
    w.api_status(ns, "orders").await.map(|s| s.phase)
}

#[tokio::test]
async fn the_fake_plan_feed_answers_plan_at_like_git() {
    let mut repo = FakeRepo::default();
    repo.write_plan("rollouts/a.yaml", "first");
    let first = repo.poll().await.expect("poll").plans.changed[0]
        .revision
        .clone();
    repo.write_plan("rollouts/a.yaml", "second");
    let second = repo.poll().await.expect("poll").plans.changed[0]
        .revision
        .clone();
    repo.remove_plan("rollouts/a.yaml");
    let gone = repo.poll().await.expect("poll").tip;
    assert_eq!(
        repo.plan_at("rollouts/a.yaml", &first)
            .await
            .expect("first"),
        Some("first".into())
    );
    assert_eq!(
        repo.plan_at("rollouts/a.yaml", &second)
            .await
            .expect("second"),
        Some("second".into())
    );
    assert_eq!(
        repo.plan_at("rollouts/a.yaml", &gone).await.expect("gone"),
        None
    );
    assert_eq!(
        repo.plan_at("rollouts/b.yaml", &second).await.expect("b"),
        None
    );
    assert!(
        repo.plan_at("rollouts/a.yaml", &"f".repeat(40))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn the_git_plan_feed_answers_plan_at() {
    let remote = common::Remote::with_files(&[("rollouts/a.yaml", &plan(NS))]);
    let first = remote.head();
    let second = remote.commit(&[("rollouts/a.yaml", "spec: [typo\n")], "typo");
    let mut feed = BlockingFeed::new(GitRepo::open(remote.config()).expect("open"));
    let update = feed.poll().await.expect("poll");
    assert_eq!(update.plans.changed[0].revision, second);
    assert_eq!(
        feed.plan_at("rollouts/a.yaml", &first)
            .await
            .expect("first"),
        Some(plan(NS))
    );
    assert_eq!(
        feed.plan_at("rollouts/a.yaml", &second)
            .await
            .expect("second")
            .as_deref(),
        Some("spec: [typo\n")
    );
    assert_eq!(
        feed.plan_at("rollouts/z.yaml", &first).await.expect("z"),
        None
    );
}

#[tokio::test]
async fn the_writer_sink_removes_statuses_and_records_refusals() {
    let remote = common::Remote::with_files(&[("rollouts/a.yaml", &plan(NS))]);
    let mut repo = GitRepo::open(remote.config()).expect("open");
    let tip = repo.poll().expect("poll").tip;
    let (thread, handle, reports) = StatusWriter::spawn(repo, Duration::from_millis(20));
    let sink = WriterSink::new(handle, thread);
    sink.submit(common::status(
        NS,
        "orders",
        Phase::Progressing,
        10,
        "step 1",
    ));
    sink.submit(common::status(NS, "gone", Phase::Succeeded, 100, "done"));
    sink.processed_through(&tip);
    let first = tokio::task::spawn_blocking(move || {
        let r = reports
            .recv_timeout(Duration::from_secs(30))
            .expect("report");
        (r, reports)
    });
    let (report, reports) = first.await.expect("join");
    assert_eq!(report.result.expect("write").transitions, 2);
    let record = RefusedRecord {
        commit: tip.clone(),
        author: "Ana <ana@example.com>".into(),
        trailer: "Tidegate: pause order".into(),
        name: "order".into(),
        why: "no plan in any namespace is named order".into(),
        hint: "closest plans: shop/orders; name one of them".into(),
        plans: vec!["shop/orders".into()],
        at: chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("time"),
    };
    sink.remove(&RolloutId {
        namespace: NS.into(),
        name: "gone".into(),
    });
    sink.refuse_unknown(vec![record.clone()]);
    sink.close().await;
    let report = reports
        .recv_timeout(Duration::from_secs(30))
        .expect("second report");
    let out = report.result.expect("write");
    assert_eq!((out.removed, out.refused), (1, 1));
    assert_eq!(
        remote.remote_git(&["ls-tree", "-r", "--name-only", common::STATUS_BRANCH]),
        "status/_refused.yaml\nstatus/shop/orders.yaml"
    );
    let last = remote.remote_git(&[
        "log",
        "-1",
        "--format=%(trailers:only,unfold)",
        common::STATUS_BRANCH,
    ]);
    assert!(last.contains("Tidegate-Removed: shop/gone"), "{last}");
    assert!(
        last.contains(&format!("Tidegate-Processed: {tip}")),
        "{last}"
    );
    let mut reader = GitRepo::open({
        let mut c = remote.config();
        c.data_dir = remote.dir.path().join("reader");
        c
    })
    .expect("open");
    assert_eq!(reader.refused_records().expect("read"), vec![record]);
}
