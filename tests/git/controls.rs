//! Control round trips: `tidegate pause|resume|abort|promote|retry` (the real binary) pushes a
//! control commit; the adapter lists it with its signature state; the control policy decides;
//! the decision is recorded in the status file; `tidegate status` prints it back.

use std::process::Command;

use tidegate::control::{ControlAction, Policy, parse_controls};
use tidegate::git::{GitRepo, PlanSource, StateStore};
use tidegate::rollout::{ControlRecord, Phase};

use crate::common::*;

fn tidegate(args: &[&str]) -> std::process::Output {
    tidegate_home(args, None)
}

/// Run the binary; with `home`, git's global configuration is read from there (libgit2 looks at
/// `$HOME/.gitconfig`).
fn tidegate_home(args: &[&str], home: Option<&std::path::Path>) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tidegate"));
    if let Some(h) = home {
        // Outside any repository too: the author comes from the current repository first.
        cmd.env("HOME", h).env("XDG_CONFIG_HOME", h).current_dir(h);
    }
    cmd.args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env_remove("TIDEGATE_REPO")
        .output()
        .expect("run tidegate")
}

fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "tidegate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_action_round_trips_and_the_policy_is_recorded() {
    let remote = Remote::with_files(&[("rollouts/a.yaml", &plan_yaml("prod", "orders", 5))]);
    let keys = remote.dir.path().join("keys");
    std::fs::create_dir_all(&keys).expect("mkdir");
    let (alice_key, alice_pub) = keygen(&keys, "alice");
    let (mallory_key, _) = keygen(&keys, "mallory");
    let signers = keys.join("allowed_signers");
    std::fs::write(&signers, format!("alice@example.com {alice_pub}\n")).expect("write");
    let mut cfg = remote.config();
    cfg.allowed_signers = Some(signers);
    let mut repo = GitRepo::open(cfg).expect("open");
    let baseline = repo.poll().expect("poll").tip;
    repo.write_statuses(
        &[status("prod", "orders", Phase::Progressing, 5, "step 1")],
        Some(&baseline),
    )
    .expect("write");

    let path = remote.bare.to_str().expect("utf8");
    let alice_key = alice_key.to_str().expect("utf8");
    let alice = "Alice <alice@example.com>";
    for action in ControlAction::ALL {
        let out = ok(tidegate(&[
            action.as_str(),
            "prod/orders",
            "-m",
            &format!("{action} for the test"),
            "--repo",
            path,
            "--author",
            alice,
            "--signing-key",
            alice_key,
        ]));
        assert!(
            out.trim().ends_with(&format!("{action} prod/orders")),
            "{out}"
        );
    }
    // Refused: author outside the allowed pattern, no signature, a key not trusted.
    ok(tidegate(&[
        "abort",
        "prod/orders",
        "--repo",
        path,
        "--author",
        "Mallory <mallory@evil.test>",
    ]));
    ok(tidegate(&[
        "abort",
        "prod/orders",
        "--repo",
        path,
        "--author",
        "Bob <bob@example.com>",
    ]));
    ok(tidegate(&[
        "abort",
        "prod/orders",
        "--repo",
        path,
        "--author",
        "Carol <carol@example.com>",
        "--signing-key",
        mallory_key.to_str().expect("utf8"),
    ]));
    // A trailer in a non-final paragraph is not a trailer (git's rules).
    remote.sync();
    let note = remote.commit(
        &[],
        "About the outage\n\nTidegate: abort prod/orders\n\nWe decided against it.",
    );

    let update = repo.poll().expect("poll");
    let policy = Policy::new(&["*@example.com".to_string()], true).expect("policy");
    let mut records = Vec::new();
    let mut actions = Vec::new();
    for c in update.commits.iter().filter(|c| !c.is_own) {
        let controls = parse_controls(&c.commit.message);
        if c.commit.id == note {
            assert!(
                controls.is_empty(),
                "a non-final paragraph holds no trailers"
            );
            continue;
        }
        assert_eq!(controls.len(), 1, "{}", c.commit.message);
        let decision = policy.decide(&c.commit);
        let action = controls[0].action.clone().expect("known action");
        if decision.is_ok() {
            actions.push(action);
        }
        records.push(ControlRecord {
            commit: c.commit.id.clone(),
            author: format!("{} <{}>", c.commit.author_name, c.commit.author_email),
            action: action.to_string(),
            applied: decision.is_ok(),
            note: decision.err().unwrap_or_else(|| controls[0].reason.clone()),
            at: c.time,
        });
    }
    assert_eq!(
        actions,
        ControlAction::ALL.to_vec(),
        "every signed control by alice applies"
    );
    let refused: Vec<&ControlRecord> = records.iter().filter(|r| !r.applied).collect();
    assert_eq!(refused.len(), 3);
    assert!(
        refused[0].note.contains("mallory@evil.test") && refused[0].note.contains("not allowed")
    );
    assert!(
        refused[1].note.contains("not signed"),
        "{}",
        refused[1].note
    );
    assert!(
        refused[2].note.contains("signature was refused"),
        "{}",
        refused[2].note
    );

    let mut s = status(
        "prod",
        "orders",
        Phase::Paused,
        5,
        "paused by alice@example.com",
    );
    s.controls = records.clone();
    repo.write_statuses(&[s], Some(&update.tip)).expect("write");
    let loaded = repo.load_statuses().expect("load");
    assert_eq!(
        loaded[0].controls, records,
        "applied and refused controls are recorded"
    );

    let json = ok(tidegate(&["status", "--repo", path, "-o", "json"]));
    let printed: Vec<tidegate::rollout::Status> = serde_json::from_str(&json).expect("json");
    assert_eq!(printed, loaded);
    let table = ok(tidegate(&["status", "--repo", path]));
    assert!(
        table
            .lines()
            .next()
            .is_some_and(|l| l.starts_with("ROLLOUT")),
        "{table}"
    );
    assert!(
        table.contains("prod/orders") && table.contains("Paused"),
        "{table}"
    );
    let yaml = ok(tidegate(&["status", "--repo", path, "-o", "yaml"]));
    assert!(yaml.contains("phase: Paused"), "{yaml}");
}

#[test]
fn control_command_errors_are_clear() {
    let remote = Remote::with_files(&[("rollouts/a.yaml", &plan_yaml("prod", "orders", 5))]);
    let path = remote.bare.to_str().expect("utf8");
    let out = tidegate(&["pause", "../etc", "--repo", path, "--author", "A <a@x.y>"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a rollout name"));
    let home = remote.dir.path().join("home");
    std::fs::create_dir_all(&home).expect("mkdir");
    let out = tidegate_home(&["pause", "orders", "--repo", path], Some(&home));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("user.email"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = tidegate(&[
        "pause",
        "orders",
        "--repo",
        path,
        "--branch",
        "nope",
        "--author",
        "A <a@x.y>",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"nope\" does not exist"));
}

#[test]
fn control_commands_check_the_name_against_the_plans() {
    let invalid = plan_yaml("prod", "broken", 5).replace("canary: v2", "canary: v1");
    let remote = Remote::with_files(&[
        ("rollouts/orders.yaml", &plan_yaml("prod", "orders", 5)),
        (
            "rollouts/orders-staging.yaml",
            &plan_yaml("staging", "orders", 5),
        ),
        ("rollouts/cart.yaml", &plan_yaml("prod", "cart", 5)),
        ("rollouts/broken.yaml", &invalid),
    ]);
    let path = remote.bare.to_str().expect("utf8");
    let run = |name: &str| {
        tidegate(&[
            "pause",
            name,
            "-m",
            "hold",
            "--repo",
            path,
            "--author",
            "Ana <ana@example.com>",
        ])
    };
    let tip = remote.remote_git(&["rev-parse", "main"]);
    let refused = |name: &str, expected: &[&str]| {
        let out = run(name);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        for e in expected {
            assert!(err.contains(e), "{name}: {err}");
        }
        assert_eq!(
            remote.remote_git(&["rev-parse", "main"]),
            tip,
            "{name}: nothing pushed"
        );
    };
    refused(
        "orders",
        &[
            "orders is ambiguous",
            "prod/orders, staging/orders",
            "e.g. prod/orders",
        ],
    );
    refused(
        "prod/order",
        &["no plan defines prod/order", "closest plans: prod/orders"],
    );
    refused(
        "carts",
        &["no plan in any namespace is named carts", "prod/cart"],
    );
    refused("a/b/c", &["has more than one `/`"]);

    // A bare name that one plan has resolves, and the trailer names it in full.
    let out = ok(run("cart"));
    assert!(out.trim().ends_with("pause prod/cart"), "{out}");
    assert_eq!(
        remote.remote_git(&[
            "log",
            "-1",
            "--format=%(trailers:key=Tidegate,valueonly)",
            "main"
        ]),
        "pause prod/cart hold"
    );
    // An invalid plan is still a rollout the daemon answers for.
    let out = ok(run("broken"));
    assert!(out.trim().ends_with("pause prod/broken"), "{out}");
}

#[test]
fn status_reads_the_status_branch_and_shows_refused_controls() {
    use tidegate::control::RefusedRecord;
    use tidegate::git::StatusBatch;
    let remote = Remote::with_files(&[("rollouts/a.yaml", &plan_yaml("prod", "orders", 5))]);
    let path = remote.bare.to_str().expect("utf8");
    let mut repo = GitRepo::open(remote.config()).expect("open");
    let tip = repo.poll().expect("poll").tip;
    let batch = StatusBatch {
        statuses: vec![status("prod", "orders", Phase::Paused, 5, "held")],
        refused: vec![RefusedRecord {
            commit: tip.clone(),
            author: "Ana <ana@example.com>".into(),
            trailer: "Tidegate: pause prod/order".into(),
            name: "prod/order".into(),
            why: "no plan defines prod/order".into(),
            hint: "closest plans: prod/orders; name one of them".into(),
            plans: vec!["prod/orders".into()],
            at: chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("time"),
        }],
        ..StatusBatch::default()
    };
    repo.write(&batch, Some(&tip)).expect("write");
    let table = ok(tidegate(&["status", "--repo", path]));
    assert!(
        table.contains("prod/orders") && table.contains("Paused"),
        "{table}"
    );
    assert!(
        table.contains("Controls that named no rollout (1 recorded in status/_refused.yaml"),
        "{table}"
    );
    assert!(
        table.contains(
            "`Tidegate: pause prod/order`: no plan defines prod/order; closest plans: prod/orders"
        ),
        "{table}"
    );
    // Another status branch (none there: the statuses of the plans branch, none yet).
    let other = ok(tidegate(&[
        "status",
        "--repo",
        path,
        "--status-branch",
        "elsewhere",
    ]));
    assert!(other.contains("no rollouts"), "{other}");
    let json = ok(tidegate(&["status", "--repo", path, "-o", "json"]));
    let printed: Vec<tidegate::rollout::Status> = serde_json::from_str(&json).expect("json");
    assert_eq!(printed.len(), 1, "json stays a list of statuses");
}

#[test]
fn control_commands_answer_in_json() {
    let remote = Remote::with_files(&[
        ("rollouts/orders.yaml", &plan_yaml("prod", "orders", 5)),
        ("rollouts/cart.yaml", &plan_yaml("prod", "cart", 5)),
    ]);
    let path = remote.bare.to_str().expect("utf8");
    let run = |verb: &str, name: &str| {
        tidegate(&[
            verb,
            name,
            "-o",
            "json",
            "--repo",
            path,
            "--author",
            "Ana <ana@example.com>",
        ])
    };
    let made: serde_json::Value = serde_json::from_str(&ok(run("pause", "orders"))).expect("json");
    assert_eq!(made["action"], "pause");
    assert_eq!(made["rollout"], "prod/orders");
    assert_eq!(
        made["commit"].as_str(),
        Some(remote.remote_git(&["rev-parse", "main"]).as_str())
    );
    // A refusal: JSON on stdout, exit 2, nothing pushed.
    let tip = remote.remote_git(&["rev-parse", "main"]);
    let out = run("abort", "prod/order");
    assert_eq!(out.status.code(), Some(2));
    let refused: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json refusal");
    assert_eq!(refused["refused"], true);
    assert_eq!(refused["action"], "abort");
    assert_eq!(refused["rollout"], "prod/order");
    assert_eq!(refused["candidates"][0], "prod/orders", "closest first");
    assert!(
        refused["why"]
            .as_str()
            .is_some_and(|w| w.contains("no plan defines prod/order")),
        "{refused}"
    );
    assert_eq!(remote.remote_git(&["rev-parse", "main"]), tip);
    let malformed: serde_json::Value =
        serde_json::from_slice(&run("resume", "a/b/c").stdout).expect("json");
    assert_eq!(malformed["candidates"], serde_json::json!([]));
}
