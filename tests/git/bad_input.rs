//! Bad input gives a clear error for that input only; everything else keeps working.

use tidegate::git::{GitError, GitRepo, PlanContent, PlanSource};

use crate::common::*;

fn content_of<'a>(update: &'a tidegate::git::SourceUpdate, path: &str) -> &'a PlanContent {
    &update
        .plans
        .changed
        .iter()
        .find(|p| p.path == path)
        .unwrap_or_else(|| panic!("{path} not reported"))
        .content
}

fn unreadable(c: &PlanContent) -> &str {
    match c {
        PlanContent::Unreadable(why) => why,
        PlanContent::Text(_) => panic!("expected an unreadable plan, got text"),
    }
}

#[test]
fn bad_plan_files_are_reported_one_by_one() {
    let remote = Remote::with_files(&[
        ("rollouts/good.yaml", &plan_yaml("prod", "good", 5)),
        ("rollouts/notyaml.yaml", "this: is: not: [valid yaml\n\t- x"),
    ]);
    // 10 MB file, binary file, symlink, submodule (one matching the glob, one beside it).
    let big = "a: b\n".repeat(2 * 1024 * 1024);
    std::fs::write(remote.work.join("rollouts/big.yaml"), &big).expect("write");
    std::fs::write(
        remote.work.join("rollouts/binary.yaml"),
        b"\x00\x01\x02PNG\xff\xfe",
    )
    .expect("write");
    std::os::unix::fs::symlink("good.yaml", remote.work.join("rollouts/link.yaml"))
        .expect("symlink");
    let sub = remote.head();
    git(&remote.work, &["add", "-A"]);
    git(
        &remote.work,
        &[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("160000,{sub},rollouts/sub.yaml"),
        ],
    );
    git(
        &remote.work,
        &[
            "update-index",
            "--add",
            "--cacheinfo",
            &format!("160000,{sub},rollouts/vendor"),
        ],
    );
    // Committed without `add -A`, which would drop the gitlinks (no checkout behind them).
    git(&remote.work, &["commit", "-q", "-m", "bad things"]);
    remote.push();

    let mut repo = GitRepo::open(remote.config()).expect("open");
    let update = repo.poll().expect("poll succeeds despite bad files");
    assert_eq!(
        content_of(&update, "rollouts/good.yaml"),
        &PlanContent::Text(plan_yaml("prod", "good", 5))
    );
    // Not YAML: handed over as text; the plan parser reports it as an Invalid plan.
    assert!(matches!(
        content_of(&update, "rollouts/notyaml.yaml"),
        PlanContent::Text(_)
    ));
    let why = unreadable(content_of(&update, "rollouts/big.yaml"));
    assert!(
        why.contains("10485760 bytes") && why.contains("limit"),
        "{why}"
    );
    let why = unreadable(content_of(&update, "rollouts/binary.yaml"));
    assert!(why.contains("binary"), "{why}");
    let why = unreadable(content_of(&update, "rollouts/link.yaml"));
    assert!(why.contains("symbolic link"), "{why}");
    let why = unreadable(content_of(&update, "rollouts/sub.yaml"));
    assert!(why.contains("submodule"), "{why}");
    assert!(
        !update
            .plans
            .changed
            .iter()
            .any(|p| p.path == "rollouts/vendor"),
        "a submodule outside the glob is not a plan"
    );
    assert_eq!(update.plans.changed.len(), 6);
}

#[test]
fn empty_repository_is_a_clear_error_and_recovers() {
    let remote = Remote::empty();
    let mut repo = GitRepo::open(remote.config()).expect("open");
    let err = repo.poll().expect_err("empty");
    assert!(matches!(err, GitError::EmptyRepository { .. }), "{err}");
    assert!(err.to_string().contains("is empty"), "{err}");
    // Once someone pushes, the same adapter works.
    remote.commit(&[("rollouts/a.yaml", &plan_yaml("prod", "a", 5))], "first");
    let update = repo.poll().expect("poll after the first push");
    assert_eq!(update.plans.changed.len(), 1);
}

#[test]
fn missing_branch_names_the_branches_that_exist() {
    let remote = Remote::with_files(&[("rollouts/a.yaml", &plan_yaml("prod", "a", 5))]);
    let mut cfg = remote.config();
    cfg.branch = "release".into();
    let mut repo = GitRepo::open(cfg).expect("open");
    let err = repo.poll().expect_err("no such branch");
    match &err {
        GitError::BranchNotFound {
            branch, available, ..
        } => {
            assert_eq!(branch, "release");
            assert_eq!(available, "main");
        }
        other => panic!("unexpected error: {other}"),
    }
    assert!(
        err.to_string().contains("\"release\" does not exist"),
        "{err}"
    );
}

#[test]
fn unreachable_remote_and_bad_config_are_clear() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.git");
    let mut repo = GitRepo::open(tidegate::git::GitConfig::new(
        missing.display().to_string(),
        dir.path().join("data"),
    ))
    .expect("open");
    let err = repo.poll().expect_err("missing remote");
    assert!(err.to_string().starts_with("failed to fetch"), "{err}");

    let mut cfg = tidegate::git::GitConfig::new("file:///x", dir.path());
    cfg.status_dir = "../escape".into();
    let err = GitRepo::open(cfg).expect_err("bad status dir");
    assert!(err.to_string().contains("status folder"), "{err}");
    let mut cfg = tidegate::git::GitConfig::new("file:///x", dir.path());
    cfg.plan_glob = "rollouts/[".into();
    assert!(GitRepo::open(cfg).is_err());
    let cfg = tidegate::git::GitConfig::new("https://bob:hunter2@example.com/r.git", dir.path());
    let err = GitRepo::open(cfg).expect_err("credentials in URL");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}
