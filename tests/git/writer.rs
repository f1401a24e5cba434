//! The coalescing writer turns a burst of transitions into one commit.

use std::time::Duration;

use tidegate::git::{GitRepo, PlanSource, StatusWriter};
use tidegate::rollout::Phase;

use crate::common::*;

#[test]
fn a_burst_of_transitions_becomes_one_commit() {
    let remote = Remote::with_files(&[("rollouts/a.yaml", &plan_yaml("prod", "a", 5))]);
    let mut repo = GitRepo::open(remote.config()).expect("open");
    let tip = repo.poll().expect("poll").tip;
    let (writer, handle, reports) = StatusWriter::spawn(repo, Duration::from_millis(300));
    let mut expected = Vec::new();
    for i in 0..100u8 {
        let name = format!("svc-{}", i % 25);
        assert!(handle.submit(status("prod", &name, Phase::Progressing, i, "burst")));
        expected.push(format!("prod/{name} Progressing {i}%"));
    }
    assert!(handle.processed_through(tip.clone()));
    assert!(handle.flush());
    let report = reports
        .recv_timeout(Duration::from_secs(30))
        .expect("report");
    let outcome = report.result.expect("write ok");
    assert_eq!(outcome.transitions, 100);
    assert_eq!(report.transitions, 100);
    assert_eq!(
        status_trailers(&remote),
        expected,
        "one trailer per transition, in order"
    );
    assert_eq!(
        remote.remote_git(&["rev-list", "--count", STATUS_BRANCH]),
        "1",
        "one status commit"
    );
    assert_eq!(remote.remote_git(&["rev-list", "--count", "main"]), "1");
    assert_eq!(
        remote
            .remote_git(&["ls-tree", "-r", "--name-only", STATUS_BRANCH, "status/prod"])
            .lines()
            .count(),
        25
    );
    drop(handle);
    writer.join();
}

#[test]
fn poller_and_writer_share_one_mirror() {
    use std::sync::{Arc, Mutex};
    let remote = Remote::with_files(&[("rollouts/a.yaml", &plan_yaml("prod", "a", 5))]);
    let shared = Arc::new(Mutex::new(GitRepo::open(remote.config()).expect("open")));
    let mut poller = shared.clone();
    let first = poller.poll().expect("poll");
    let (writer, handle, reports) = StatusWriter::spawn(shared, Duration::from_millis(50));
    handle.submit(status("prod", "a", Phase::Progressing, 5, "step 1"));
    handle.processed_through(first.tip.clone());
    assert!(handle.flush());
    let report = reports
        .recv_timeout(Duration::from_secs(30))
        .expect("report");
    let pushed = report.result.expect("write").commit.expect("commit");
    let control = remote.commit(&[], "hold\n\nTidegate: pause prod/a");
    let next = poller.poll().expect("poll");
    let seen: Vec<(String, bool)> = next
        .commits
        .iter()
        .map(|c| (c.commit.id.clone(), c.is_own))
        .collect();
    assert_eq!(
        seen,
        vec![(control, false)],
        "status commits are not on main"
    );
    let mut shared_repo = poller.lock().expect("lock");
    let loaded = tidegate::git::StateStore::load_statuses(&mut *shared_repo).expect("load");
    assert_eq!(loaded.len(), 1);
    assert_eq!(
        remote.remote_git(&["rev-parse", STATUS_BRANCH]),
        pushed,
        "the shared mirror tracks the status branch"
    );
    drop(shared_repo);
    drop(handle);
    writer.join();
}
