//! Another writer pushes between tidegate's fetch and push: every status push still lands,
//! rebuilt on the new tip, without losing anyone's commit or any transition.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tidegate::git::{GitRepo, PlanSource, StateStore};
use tidegate::rollout::Phase;

use crate::common::*;

#[test]
fn fifty_interleaved_pushes_all_land_without_losing_anything() {
    let remote = Remote::with_files(&[("rollouts/a.yaml", &plan_yaml("prod", "a", 5))]);
    let mut repo = GitRepo::open(remote.config()).expect("open");
    repo.poll().expect("poll");
    let mut foreign = Vec::new();
    let mut expected = Vec::new();
    for round in 0..50 {
        // The other writer lands a commit after tidegate's last fetch.
        remote.sync();
        foreign.push(remote.commit(
            &[(&format!("notes/{round}.txt"), &format!("round {round}"))],
            &format!("someone else, round {round}"),
        ));
        let s = status(
            "prod",
            "a",
            Phase::Progressing,
            round as u8,
            &format!("round {round}"),
        );
        expected.push(format!("prod/a Progressing {round}%"));
        let out = repo.write_statuses(&[s], None).expect("write lands");
        assert!(
            out.attempts >= 2,
            "round {round}: the first push must have been rejected"
        );
        assert!(out.commit.is_some());
    }
    let history = remote.remote_git(&["rev-list", "main"]);
    for c in &foreign {
        assert!(history.lines().any(|l| l == c), "foreign commit {c} lost");
    }
    assert_eq!(
        status_trailers(&remote),
        expected,
        "every transition once, in order"
    );
    assert_eq!(
        remote.remote_git(&["rev-list", "--count", "--merges", "main"]),
        "0",
        "rebuilt on the tip, never merged"
    );
}

#[test]
fn a_writer_racing_in_a_thread_loses_nothing() {
    let remote = Remote::with_files(&[("rollouts/a.yaml", &plan_yaml("prod", "a", 5))]);
    // The racer pushes from its own clone as fast as it can.
    let racer = remote.dir.path().join("racer");
    git(
        remote.dir.path(),
        &["clone", "-q", remote.bare.to_str().expect("utf8"), "racer"],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let racer_dir = racer.clone();
    let thread = std::thread::spawn(move || {
        let mut landed = Vec::new();
        let mut i = 0;
        while !stop2.load(Ordering::Relaxed) {
            std::fs::write(racer_dir.join("racer.txt"), format!("{i}")).expect("write");
            git(&racer_dir, &["add", "-A"]);
            git(&racer_dir, &["commit", "-q", "-m", &format!("racer {i}")]);
            if git_output(&racer_dir, &["push", "-q", "origin", "HEAD:main"])
                .status
                .success()
            {
                landed.push(git(&racer_dir, &["rev-parse", "HEAD"]));
            } else {
                git(&racer_dir, &["pull", "-q", "--rebase", "origin", "main"]);
            }
            i += 1;
        }
        landed
    });
    let mut repo = GitRepo::open(remote.config()).expect("open");
    repo.poll().expect("poll");
    let mut expected = BTreeMap::new();
    for round in 0..20u8 {
        let name = format!("r{}", round % 4);
        let s = status("prod", &name, Phase::Progressing, round, "racing");
        expected.insert(format!("prod/{name} Progressing {round}%"), 0);
        repo.write_statuses(&[s], None).expect("write lands");
    }
    stop.store(true, Ordering::Relaxed);
    let landed = thread.join().expect("racer");
    let history = remote.remote_git(&["rev-list", "main"]);
    for c in &landed {
        assert!(history.lines().any(|l| l == c), "racer commit {c} lost");
    }
    for t in status_trailers(&remote) {
        *expected
            .get_mut(&t)
            .unwrap_or_else(|| panic!("unexpected trailer {t}")) += 1;
    }
    assert!(expected.values().all(|n| *n == 1), "{expected:?}");
}
