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
fn status_commits_go_to_a_branch_of_their_own_with_trailers_and_author() {
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
    assert_eq!(remote.remote_git(&["rev-parse", STATUS_BRANCH]), commit);
    assert_eq!(
        remote.remote_git(&["rev-parse", "main"]),
        update.tip,
        "the watched branch is untouched"
    );
    assert_eq!(
        remote.remote_git(&["rev-list", "--count", "--max-parents=0", STATUS_BRANCH]),
        "1",
        "the status branch is a history of its own"
    );
    assert_eq!(
        remote.remote_git(&["rev-list", "--count", STATUS_BRANCH]),
        "1"
    );
    assert_eq!(
        remote.remote_git(&["log", "-1", "--format=%an <%ae>", STATUS_BRANCH]),
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
        STATUS_BRANCH,
    ]);
    assert_eq!(processed, update.tip);
    let subject = remote.remote_git(&["log", "-1", "--format=%s", STATUS_BRANCH]);
    assert_eq!(subject, "tidegate: 3 transitions in 2 rollouts");
    // The last document of each rollout wins; the status branch holds statuses only.
    let doc = remote.remote_git(&["show", &format!("{STATUS_BRANCH}:status/prod/orders.yaml")]);
    assert!(doc.contains("canaryWeight: 25"), "{doc}");
    assert!(doc.contains("phase: Progressing"), "{doc}");
    assert_eq!(
        remote.remote_git(&["ls-tree", "-r", "--name-only", STATUS_BRANCH]),
        "status/prod/cart.yaml\nstatus/prod/orders.yaml"
    );
    assert!(
        !git_output(&remote.bare, &["cat-file", "-e", "main:status"])
            .status
            .success(),
        "no status file on the watched branch"
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
fn same_branch_mode_flags_own_commits_and_restart_resumes_after_the_marker() {
    let remote = Remote::with_files(&[("rollouts/a.yaml", &plan_yaml("prod", "orders", 5))]);
    let before = remote.commit(
        &[],
        "Pause before tidegate ran\n\nTidegate: pause prod/orders",
    );
    let mut repo = GitRepo::open(remote.same_branch_config()).expect("open");
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
    let mut cfg = remote.same_branch_config();
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
fn the_marker_on_the_status_branch_makes_a_restart_resume_after_it() {
    let remote = Remote::with_files(&[("rollouts/a.yaml", &plan_yaml("prod", "orders", 5))]);
    let before = remote.commit(&[], "Before tidegate ran\n\nTidegate: pause prod/orders");
    let mut repo = GitRepo::open(remote.config()).expect("open");
    let first = repo.poll().expect("poll");
    assert!(first.commits.is_empty());
    repo.write_statuses(
        &[status("prod", "orders", Phase::Pending, 0, "waiting")],
        Some(&first.tip),
    )
    .expect("write");
    // No `git pull` needed: the status commit is not on the branch people push to.
    let control = remote.commit(&[], "Hold it\n\nTidegate: pause prod/orders");
    let next = repo.poll().expect("poll");
    let flags: Vec<(String, bool)> = next
        .commits
        .iter()
        .map(|c| (c.commit.id.clone(), c.is_own))
        .collect();
    assert_eq!(flags, vec![(control.clone(), false)]);

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
    assert_eq!(
        ids,
        [control.as_str()],
        "resumes after the marker, not before"
    );
    assert!(!ids.contains(&before.as_str()));
    let loaded = restarted.load_statuses().expect("load");
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].reason, "waiting");
}

#[test]
fn moving_from_same_branch_mode_keeps_statuses_and_the_marker() {
    let remote = Remote::with_files(&[("rollouts/a.yaml", &plan_yaml("prod", "a", 5))]);
    let mut old = GitRepo::open(remote.same_branch_config()).expect("open");
    let tip = old.poll().expect("poll").tip;
    let own = old
        .write_statuses(&[status("prod", "a", Phase::Paused, 5, "held")], Some(&tip))
        .expect("write")
        .commit
        .expect("commit");
    remote.sync();
    let control = remote.commit(&[], "go\n\nTidegate: resume prod/a");

    // The same daemon, upgraded: status branch by default, a fresh data directory.
    let data = tempfile::tempdir().expect("tempdir");
    let mut cfg = remote.config();
    cfg.data_dir = data.path().to_path_buf();
    let mut repo = GitRepo::open(cfg).expect("open");
    let loaded = repo.load_statuses().expect("load");
    assert_eq!(
        loaded.len(),
        1,
        "read from the watched branch until the status branch exists"
    );
    assert_eq!(loaded[0].reason, "held");
    let update = repo.poll().expect("poll");
    let seen: Vec<(String, bool)> = update
        .commits
        .iter()
        .map(|c| (c.commit.id.clone(), c.is_own))
        .collect();
    assert_eq!(
        seen,
        vec![(own, true), (control, false)],
        "the old marker holds"
    );
    repo.write_statuses(
        &[status("prod", "b", Phase::Pending, 0, "new")],
        Some(&update.tip),
    )
    .expect("write");
    assert_eq!(
        remote.remote_git(&["ls-tree", "-r", "--name-only", STATUS_BRANCH]),
        "status/prod/a.yaml\nstatus/prod/b.yaml",
        "the new branch starts with the statuses of the watched branch"
    );
    let mut reasons: Vec<String> = repo
        .load_statuses()
        .expect("load")
        .into_iter()
        .map(|s| s.reason)
        .collect();
    reasons.sort();
    assert_eq!(reasons, ["held", "new"]);
}

#[test]
fn removed_statuses_are_deleted_and_refusals_recorded_once() {
    use tidegate::control::RefusedRecord;
    use tidegate::git::StatusBatch;
    let remote = Remote::with_files(&[("rollouts/a.yaml", &plan_yaml("prod", "a", 5))]);
    let mut repo = GitRepo::open(remote.same_branch_config()).expect("open");
    let tip = repo.poll().expect("poll").tip;
    repo.write_statuses(
        &[
            status("prod", "a", Phase::Progressing, 5, "step 1"),
            status("prod", "gone", Phase::Succeeded, 100, "done"),
        ],
        Some(&tip),
    )
    .expect("write");
    let refused = RefusedRecord {
        commit: "0123456789abcdef0123456789abcdef01234567".into(),
        author: "Ana <ana@example.com>".into(),
        trailer: "Tidegate: pause prod/orders".into(),
        name: "prod/orders".into(),
        why: "no plan defines prod/orders".into(),
        hint: "closest plans: prod/a; name one of them".into(),
        plans: vec!["prod/a".into()],
        at: chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("time"),
    };
    let mut batch = StatusBatch::default();
    batch.push_removed(tidegate::plan::RolloutId {
        namespace: "prod".into(),
        name: "gone".into(),
    });
    batch.refused.push(refused.clone());
    let out = repo.write(&batch, None).expect("write");
    assert_eq!((out.transitions, out.removed, out.refused), (0, 1, 1));
    let commit = out.commit.expect("commit");
    assert_eq!(
        remote.remote_git(&["ls-tree", "-r", "--name-only", "main", "status"]),
        "status/_refused.yaml\nstatus/prod/a.yaml"
    );
    let trailers = remote.remote_git(&["log", "-1", "--format=%(trailers:only,unfold)", "main"]);
    assert!(
        trailers.contains("Tidegate-Removed: prod/gone"),
        "{trailers}"
    );
    assert!(
        trailers.contains("Tidegate-Refused: 0123456789ab prod/orders"),
        "{trailers}"
    );
    assert_eq!(repo.refused_records().expect("read"), vec![refused.clone()]);
    // `_refused.yaml` is not a status document.
    let loaded = repo.load_statuses().expect("load");
    assert_eq!(loaded.len(), 1);
    // The same refusal again (a replay) changes nothing.
    let batch = StatusBatch {
        refused: vec![refused],
        ..StatusBatch::default()
    };
    assert_eq!(repo.write(&batch, None).expect("write").commit, None);
    // A commit with only removals and refusals is still tidegate's own.
    remote.sync();
    let control = remote.commit(&[], "x\n\nTidegate: pause prod/a");
    let seen: Vec<(String, bool)> = repo
        .poll()
        .expect("poll")
        .commits
        .iter()
        .map(|c| (c.commit.id.clone(), c.is_own))
        .collect();
    assert_eq!(seen[seen.len() - 2..], [(commit, true), (control, false)]);
}

#[test]
fn plan_at_reads_a_plan_file_as_it_was_at_a_commit() {
    let remote = Remote::with_files(&[("rollouts/a.yaml", &plan_yaml("prod", "a", 5))]);
    let first = remote.head();
    let second = remote.commit(&[("rollouts/a.yaml", "spec: [broken\n")], "typo");
    std::fs::remove_file(remote.work.join("rollouts/a.yaml")).expect("rm");
    let third = remote.commit(&[], "drop a");
    let shared = std::sync::Arc::new(std::sync::Mutex::new(
        GitRepo::open(remote.config()).expect("open"),
    ));
    let mut repo = shared.clone();
    repo.poll().expect("poll");
    assert_eq!(
        repo.plan_at("rollouts/a.yaml", &first).expect("first"),
        Some(plan_yaml("prod", "a", 5))
    );
    assert_eq!(
        repo.plan_at("rollouts/a.yaml", &second)
            .expect("second")
            .as_deref(),
        Some("spec: [broken\n")
    );
    assert_eq!(
        repo.plan_at("rollouts/a.yaml", &third).expect("third"),
        None
    );
    assert_eq!(
        repo.plan_at("rollouts/other.yaml", &first).expect("none"),
        None
    );
    let err = repo
        .plan_at(
            "rollouts/a.yaml",
            "0123456789abcdef0123456789abcdef01234567",
        )
        .expect_err("unknown commit");
    assert!(err.to_string().contains("is not in the mirror"), "{err}");
    assert!(
        repo.plan_at("rollouts/a.yaml", "HEAD~1").is_err(),
        "ids only"
    );
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
        remote.remote_git(&["rev-parse", STATUS_BRANCH]),
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
        STATUS_BRANCH,
    ]);
    assert_eq!(processed, tip);
    assert_eq!(
        remote.remote_git(&["rev-list", "--count", STATUS_BRANCH]),
        "2"
    );
}
