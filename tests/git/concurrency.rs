//! Pushes that race. With the status branch (the default) people's plain `git push` to the
//! watched branch is never rejected because of tidegate, and two writers of the status branch
//! rebuild on each other. In same-branch mode another writer pushing between tidegate's fetch
//! and push is survived too: every status push still lands, rebuilt on the new tip, without
//! losing anyone's commit or any transition.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tidegate::git::{GitRepo, PlanSource, StateStore};
use tidegate::rollout::Phase;

use crate::common::*;

#[test]
fn fifty_interleaved_pushes_all_land_without_losing_anything() {
    let remote = Remote::with_files(&[("rollouts/a.yaml", &plan_yaml("prod", "a", 5))]);
    let mut repo = GitRepo::open(remote.same_branch_config()).expect("open");
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
        status_trailers_on(&remote, "main"),
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
    let mut repo = GitRepo::open(remote.same_branch_config()).expect("open");
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
    for t in status_trailers_on(&remote, "main") {
        *expected
            .get_mut(&t)
            .unwrap_or_else(|| panic!("unexpected trailer {t}")) += 1;
    }
    assert!(expected.values().all(|n| *n == 1), "{expected:?}");
}

#[test]
fn people_push_without_pulling_while_statuses_are_pushed() {
    let remote = Remote::with_files(&[("rollouts/a.yaml", &plan_yaml("prod", "a", 5))]);
    let person = remote.dir.path().join("person");
    git(
        remote.dir.path(),
        &["clone", "-q", remote.bare.to_str().expect("utf8"), "person"],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let dir = person.clone();
    // A person commits and runs a plain `git push`, never fetching: any rejection is a failure.
    let thread = std::thread::spawn(move || {
        let mut pushes = Vec::new();
        let mut i = 0;
        while !stop2.load(Ordering::Relaxed) || i < 10 {
            std::fs::write(dir.join("notes.txt"), format!("{i}")).expect("write");
            git(&dir, &["add", "-A"]);
            git(&dir, &["commit", "-q", "-m", &format!("person {i}")]);
            let out = git_output(&dir, &["push", "-q", "origin", "HEAD:main"]);
            pushes.push((
                i,
                out.status.success(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ));
            i += 1;
        }
        pushes
    });
    let mut repo = GitRepo::open(remote.config()).expect("open");
    repo.poll().expect("poll");
    let mut expected = Vec::new();
    for round in 0..20u8 {
        let s = status("prod", "a", Phase::Progressing, round, "racing");
        expected.push(format!("prod/a Progressing {round}%"));
        let out = repo.write_statuses(&[s], None).expect("write lands");
        assert_eq!(out.attempts, 1, "nobody else writes the status branch");
        repo.poll().expect("poll");
    }
    stop.store(true, Ordering::Relaxed);
    let pushes = thread.join().expect("person");
    let rejected: Vec<&(i32, bool, String)> = pushes.iter().filter(|p| !p.1).collect();
    assert!(
        rejected.is_empty(),
        "a person's push was rejected: {rejected:?}"
    );
    assert!(pushes.len() >= 10);
    assert_eq!(
        remote.remote_git(&["rev-parse", "main"]),
        git(&person, &["rev-parse", "HEAD"]),
        "the person's last commit is the tip"
    );
    assert_eq!(status_trailers(&remote), expected);
    assert!(status_trailers_on(&remote, "main").is_empty());
}

#[test]
fn two_writers_of_the_status_branch_rebuild_on_each_other() {
    let remote = Remote::with_files(&[("rollouts/a.yaml", &plan_yaml("prod", "a", 5))]);
    let mut a = GitRepo::open(remote.config()).expect("open");
    let data = tempfile::tempdir().expect("tempdir");
    let mut cfg = remote.config();
    cfg.data_dir = data.path().to_path_buf();
    let mut b = GitRepo::open(cfg).expect("open");
    a.poll().expect("poll");
    b.poll().expect("poll");
    // Both saw no status branch: B's first push (creating it) loses to A's and is rebuilt.
    a.write_statuses(&[status("prod", "a", Phase::Pending, 0, "a")], None)
        .expect("a writes");
    let out = b
        .write_statuses(&[status("prod", "b", Phase::Pending, 0, "b")], None)
        .expect("b writes");
    assert_eq!(out.attempts, 2, "rejected once, rebuilt on A's commit");
    // A's view of the branch is stale now: it rebuilds on B's commit.
    let out = a
        .write_statuses(&[status("prod", "a", Phase::Progressing, 5, "a")], None)
        .expect("a writes again");
    assert_eq!(out.attempts, 2);
    assert_eq!(
        status_trailers(&remote),
        [
            "prod/a Pending 0%",
            "prod/b Pending 0%",
            "prod/a Progressing 5%"
        ]
    );
    assert_eq!(
        remote.remote_git(&["ls-tree", "-r", "--name-only", STATUS_BRANCH]),
        "status/prod/a.yaml\nstatus/prod/b.yaml"
    );
}
