//! Plans, commits and status write-back against a real bare repository over `file://`.

use tidegate::git::{GitRepo, PlanContent, PlanSource, StateStore};
use tidegate::rollout::Phase;

use crate::common::*;

#[test]
fn first_poll_reads_every_plan_with_its_revision() {
    let remote = Remote::with_files(&[
        ("rollouts/prod/orders.yaml", &plan_yaml("prod", "orders", 5)),
        ("rollouts/prod/cart.yaml", &plan_yaml("prod", "cart", 10)),
        ("README.md", "not a plan"),
        ("rollouts/notes.txt", "not a plan either"),
    ]);
    let first = remote.head();
    let second = remote.commit(
        &[("rollouts/prod/cart.yaml", &plan_yaml("prod", "cart", 20))],
        "cart: 20%",
    );
    remote.commit(&[("README.md", "docs only")], "docs");

    let mut repo = GitRepo::open(remote.config()).expect("open");
    let update = repo.poll().expect("poll");
    assert!(update.plans.full);
    assert_eq!(update.tip, remote.head());
    assert!(update.force_push.is_none());
    let mut plans = update.plans.changed.clone();
    plans.sort_by(|a, b| a.path.cmp(&b.path));
    let paths: Vec<&str> = plans.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        ["rollouts/prod/cart.yaml", "rollouts/prod/orders.yaml"]
    );
    assert_eq!(
        plans[0].revision, second,
        "cart changed in the second commit"
    );
    assert_eq!(plans[1].revision, first, "orders unchanged since the first");
    assert_eq!(
        plans[0].content,
        PlanContent::Text(plan_yaml("prod", "cart", 20))
    );
    assert!(repo.repository().is_bare(), "the mirror has no work tree");
    assert!(repo.mirror_path().starts_with(remote.data_dir()));
}

#[test]
fn later_polls_reread_only_changed_plans() {
    let remote = Remote::with_files(&[
        ("rollouts/a.yaml", &plan_yaml("prod", "a", 5)),
        ("rollouts/b.yaml", &plan_yaml("prod", "b", 5)),
        ("rollouts/c.yaml", &plan_yaml("prod", "c", 5)),
    ]);
    let mut repo = GitRepo::open(remote.config()).expect("open");
    assert_eq!(repo.poll().expect("poll").plans.changed.len(), 3);

    let nothing = repo.poll().expect("poll again");
    assert!(nothing.plans.changed.is_empty() && nothing.plans.removed.is_empty());
    assert!(nothing.commits.is_empty());

    let changed = remote.commit(
        &[("rollouts/b.yaml", &plan_yaml("prod", "b", 50))],
        "b: 50%",
    );
    std::fs::remove_file(remote.work.join("rollouts/c.yaml")).expect("rm");
    let removed = remote.commit(
        &[("rollouts/d/new.yaml", &plan_yaml("prod", "d", 1))],
        "drop c, add d",
    );
    let update = repo.poll().expect("poll");
    assert!(!update.plans.full);
    let mut got: Vec<(String, String)> = update
        .plans
        .changed
        .iter()
        .map(|p| (p.path.clone(), p.revision.clone()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("rollouts/b.yaml".to_string(), changed.clone()),
            ("rollouts/d/new.yaml".to_string(), removed.clone()),
        ]
    );
    assert_eq!(update.plans.removed, vec!["rollouts/c.yaml".to_string()]);
    let ids: Vec<&str> = update
        .commits
        .iter()
        .map(|c| c.commit.id.as_str())
        .collect();
    assert_eq!(
        ids,
        [changed.as_str(), removed.as_str()],
        "new commits, oldest first"
    );
    assert_eq!(update.commits[0].commit.author_email, "alice@example.com");
    assert!(!update.commits[0].is_own);
}

#[test]
fn status_commit_is_built_on_the_tip_with_trailers_and_author() {
    let remote = Remote::with_files(&[("rollouts/a.yaml", &plan_yaml("prod", "orders", 5))]);
    let mut repo = GitRepo::open(remote.config()).expect("open");
    let update = repo.poll().expect("poll");
    let batch = vec![
        status("prod", "orders", Phase::Progressing, 5, "step 1: weight 5%"),
        status(
            "prod",
            "orders",
            Phase::Progressing,
            25,
            "step 2: weight 25%",
        ),
        status(
            "prod",
            "cart",
            Phase::Paused,
            10,
            "paused by alice@example.com",
        ),
    ];
    let out = repo
        .write_statuses(&batch, Some(&update.tip))
        .expect("write");
    assert_eq!(out.transitions, 3);
    assert_eq!(out.attempts, 1);
    let commit = out.commit.expect("a commit");
    assert_eq!(remote.remote_git(&["rev-parse", "main"]), commit);
    assert_eq!(
        remote.remote_git(&["rev-parse", "main^"]),
        update.tip,
        "built on the fetched tip"
    );
    assert_eq!(
        remote.remote_git(&["log", "-1", "--format=%an <%ae>", "main"]),
        "tidegate <tidegate@example.com>"
    );
    assert_eq!(
        status_trailers(&remote),
        vec![
            "prod/orders Progressing 5%",
            "prod/orders Progressing 25%",
            "prod/cart Paused 10%"
        ]
    );
    let processed = remote.remote_git(&[
        "log",
        "-1",
        "--format=%(trailers:key=Tidegate-Processed,valueonly)",
        "main",
    ]);
    assert_eq!(processed, update.tip);
    let subject = remote.remote_git(&["log", "-1", "--format=%s", "main"]);
    assert_eq!(subject, "tidegate: 3 transitions in 2 rollouts");
    // The last document of each rollout wins; the plan file is untouched.
    let doc = remote.remote_git(&["show", "main:status/prod/orders.yaml"]);
    assert!(doc.contains("canaryWeight: 25"), "{doc}");
    assert!(doc.contains("phase: Progressing"), "{doc}");
    assert_eq!(
        remote.remote_git(&["show", "main:rollouts/a.yaml"]),
        plan_yaml("prod", "orders", 5).trim()
    );
    // Reading back gives the same documents.
    let mut loaded = repo.load_statuses().expect("load");
    loaded.sort_by(|a, b| a.rollout.cmp(&b.rollout));
    assert_eq!(loaded, vec![batch[2].clone(), batch[1].clone()]);
    // Writing the same documents again makes no commit (nothing duplicated).
    let again = repo.write_statuses(&batch[1..], None).expect("rewrite");
    assert_eq!(again.commit, None);
    assert_eq!(status_trailers(&remote).len(), 3);
}

#[test]
fn own_commits_are_flagged_and_restart_resumes_after_the_marker() {
    let remote = Remote::with_files(&[("rollouts/a.yaml", &plan_yaml("prod", "orders", 5))]);
    let before = remote.commit(
        &[],
        "Pause before tidegate ran\n\nTidegate: pause prod/orders",
    );
    let mut repo = GitRepo::open(remote.config()).expect("open");
    let first = repo.poll().expect("poll");
    assert!(
        first.commits.is_empty(),
        "without a marker, history before the first start is not replayed"
    );
    let out = repo
        .write_statuses(
            &[status("prod", "orders", Phase::Pending, 0, "waiting")],
            Some(&first.tip),
        )
        .expect("write");
    let own = out.commit.expect("commit");
    remote.sync();
    let control = remote.commit(&[], "Hold it\n\nTidegate: pause prod/orders");

    let next = repo.poll().expect("poll");
    let flags: Vec<(String, bool)> = next
        .commits
        .iter()
        .map(|c| (c.commit.id.clone(), c.is_own))
        .collect();
    assert_eq!(flags, vec![(own.clone(), true), (control.clone(), false)]);

    // A fresh daemon (new data dir) resumes at the marker: it sees its own commit and the control,
    // but nothing older.
    let data = tempfile::tempdir().expect("tempdir");
    let mut cfg = remote.config();
    cfg.data_dir = data.path().to_path_buf();
    let mut restarted = GitRepo::open(cfg).expect("open");
    let resumed = restarted.poll().expect("poll");
    let ids: Vec<&str> = resumed
        .commits
        .iter()
        .map(|c| c.commit.id.as_str())
        .collect();
    assert_eq!(ids, [own.as_str(), control.as_str()]);
    assert!(!ids.contains(&before.as_str()));
}

#[test]
fn force_push_is_detected_and_everything_reread() {
    let remote = Remote::with_files(&[("rollouts/a.yaml", &plan_yaml("prod", "a", 5))]);
    remote.commit(&[("rollouts/b.yaml", &plan_yaml("prod", "b", 5))], "add b");
    let mut repo = GitRepo::open(remote.config()).expect("open");
    let old = repo.poll().expect("poll").tip;
    git(&remote.work, &["reset", "-q", "--hard", "HEAD~1"]);
    std::fs::write(
        remote.work.join("rollouts/c.yaml"),
        plan_yaml("prod", "c", 5),
    )
    .expect("write");
    git(&remote.work, &["add", "-A"]);
    git(&remote.work, &["commit", "-q", "-m", "add c instead"]);
    git(&remote.work, &["push", "-q", "-f", "origin", "HEAD:main"]);
    let update = repo.poll().expect("poll");
    let fp = update.force_push.expect("force push reported");
    assert_eq!(fp.previous, old);
    assert_eq!(fp.current, remote.head());
    assert!(update.plans.full);
    let mut paths: Vec<&str> = update
        .plans
        .changed
        .iter()
        .map(|p| p.path.as_str())
        .collect();
    paths.sort();
    assert_eq!(paths, ["rollouts/a.yaml", "rollouts/c.yaml"]);
    assert_eq!(update.plans.removed, vec!["rollouts/b.yaml".to_string()]);
}

#[test]
fn local_path_remote_works_like_file_url() {
    let remote = Remote::with_files(&[("rollouts/a.yaml", &plan_yaml("prod", "a", 5))]);
    let mut cfg = remote.config();
    cfg.url = remote.bare.display().to_string();
    let mut repo = GitRepo::open(cfg).expect("open");
    let update = repo.poll().expect("poll");
    assert_eq!(update.plans.changed.len(), 1);
    let out = repo
        .write_statuses(&[status("prod", "a", Phase::Pending, 0, "new")], None)
        .expect("write");
    assert_eq!(
        remote.remote_git(&["rev-parse", "main"]),
        out.commit.expect("commit")
    );
}

#[test]
fn a_separate_writer_mirror_carries_the_marker_forward() {
    let remote = Remote::with_files(&[("rollouts/a.yaml", &plan_yaml("prod", "orders", 5))]);
    let mut poller = GitRepo::open(remote.config()).expect("open");
    let tip = poller.poll().expect("poll").tip;
    poller
        .write_statuses(
            &[status("prod", "orders", Phase::Pending, 0, "new")],
            Some(&tip),
        )
        .expect("write");
    // Another adapter (its own data dir) writes without being told the processed position.
    let data = tempfile::tempdir().expect("tempdir");
    let mut cfg = remote.config();
    cfg.data_dir = data.path().to_path_buf();
    let mut writer = GitRepo::open(cfg).expect("open");
    writer
        .write_statuses(
            &[status("prod", "orders", Phase::Progressing, 5, "go")],
            None,
        )
        .expect("write");
    let processed = remote.remote_git(&[
        "log",
        "-1",
        "--format=%(trailers:key=Tidegate-Processed,valueonly)",
        "main",
    ]);
    assert_eq!(processed, tip);
}
