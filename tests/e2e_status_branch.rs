//! The daemon as a process against the Kubernetes API emulator and a `file://` remote, with
//! status commits on the status branch (the default): a person's plain `git push` (no fetch, no
//! pull) to the plans branch is never rejected while the daemon pushes status commits, a bare
//! rollout name in a control resolves across namespaces, a name no plan defines is answered in
//! `status/_refused.yaml`, and `tidegate status --repo` reads all of it back.

#[path = "support/process.rs"]
mod process;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use process::{Daemon, get_json, git, git_ok, wait_for};
use serde_json::Value;

/// Small steps with short pauses: the daemon pushes a status commit every second or so.
const PLAN: &str = "apiVersion: tidegate.dev/v1alpha1\nkind: Rollout\nmetadata: {name: orders-svc, namespace: production}\nspec:\n  service: orders-svc\n  routes: [primary]\n  stable: v1\n  canary: v2\n  steps:\n    - setWeight: 10\n    - pause: 1s\n    - setWeight: 20\n    - pause: 1s\n    - setWeight: 30\n    - pause: 1s\n    - setWeight: 40\n    - pause: 1s\n    - setWeight: 50\n    - pause: 1s\n    - setWeight: 60\n    - pause: {}\n  analysis: {interval: 1s}\n";

fn start_daemon(dir: &Path, git_url: &str, kubeconfig: &Path) -> (Daemon, u16) {
    let daemon = process::start_daemon(dir, "daemon", git_url, kubeconfig, "");
    let port = daemon.port;
    (daemon, port)
}

/// A commit with `message` in the person's clone, pushed with a plain `git push`.
fn push(clone: &Path, message: &str) -> std::process::Output {
    git_ok(clone, &["commit", "-q", "--allow-empty", "-m", message]);
    git(clone, &["push", "-q", "origin", "HEAD:main"])
}

fn phase(port: u16) -> String {
    get_json(port, "/api/v1/rollouts/production/orders-svc")
        .and_then(|s| s["phase"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Whether the rollout waits at its last step (`pause: {}` at 60 %).
fn at_last_pause(port: u16) -> bool {
    get_json(port, "/api/v1/rollouts/production/orders-svc").is_some_and(|s| {
        s["phase"] == "Paused" && s.pointer("/route/canaryWeight") == Some(&Value::from(60))
    })
}

#[test]
fn a_persons_push_is_never_rejected_and_every_control_is_answered() {
    let process::World {
        dir,
        runtime,
        emulator,
        kubeconfig,
        repos,
    } = process::world(
        &["production", "tidegate"],
        &[("rollouts/orders-svc.yaml", PLAN.to_owned())],
    );
    let url = repos.url();
    let clone = repos.clone.clone();
    let (_daemon, port) = start_daemon(dir.path(), &url, &kubeconfig);
    let status_commits = || {
        let out = git(&repos.remote, &["rev-list", "--count", "tidegate-status"]);
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u32>()
            .unwrap_or(0)
    };
    wait_for(
        dir.path(),
        "the first status commit",
        Duration::from_secs(60),
        || status_commits() > 0,
    );

    // While the daemon climbs step by step (a status commit per step), a person commits and
    // pushes without ever fetching: each push must land.
    let mut pushes = 0;
    let started = status_commits();
    while !at_last_pause(port) || pushes < 5 {
        let out = push(&clone, &format!("notes {pushes}"));
        assert!(
            out.status.success(),
            "push {pushes} was rejected: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pushes += 1;
        assert!(
            pushes < 400,
            "the rollout never reached its pause: {}",
            phase(port)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let during = status_commits() - started;
    assert!(
        during >= 3,
        "the daemon pushed {during} status commits meanwhile"
    );
    assert_eq!(
        git_ok(&repos.remote, &["rev-parse", "main"]),
        git_ok(&clone, &["rev-parse", "HEAD"]),
        "main holds only the person's commits"
    );
    let on_main = git_ok(
        &repos.remote,
        &[
            "log",
            "--format=%(trailers:key=Tidegate-Status,valueonly)",
            "main",
        ],
    );
    assert!(
        on_main.trim().is_empty(),
        "no status commit on main: {on_main}"
    );

    // `Tidegate: resume orders-svc` names no namespace: the one plan of that name (in
    // production, not the daemon's namespace). A typo is refused in _refused.yaml.
    let out = push(
        &clone,
        "Go on\n\nTidegate: abort orders canary looks bad\nTidegate: resume orders-svc",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(dir.path(), "the resume", Duration::from_secs(30), || {
        phase(port) == "Succeeded"
    });
    let refused = || {
        git(
            &repos.remote,
            &["show", "tidegate-status:status/_refused.yaml"],
        )
    };
    wait_for(dir.path(), "the refusal", Duration::from_secs(30), || {
        refused().status.success()
    });
    let text = String::from_utf8_lossy(&refused().stdout).into_owned();
    assert!(
        text.contains("trailer: \"Tidegate: abort orders canary looks bad\""),
        "{text}"
    );
    assert!(
        text.contains("no plan in any namespace is named orders"),
        "{text}"
    );
    assert!(text.contains("- production/orders-svc"), "{text}");

    // The CLI reads statuses and refusals from the status branch (the status commit follows
    // the API by up to a batch interval).
    let status = || {
        Command::new(env!("CARGO_BIN_EXE_tidegate"))
            .args(["status", "--repo", &url])
            .output()
            .expect("status")
    };
    wait_for(
        dir.path(),
        "the Succeeded status commit",
        Duration::from_secs(30),
        || String::from_utf8_lossy(&status().stdout).contains("Succeeded"),
    );
    let out = status();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        table.contains("production/orders-svc") && table.contains("Succeeded"),
        "{table}"
    );
    assert!(
        table.contains("`Tidegate: abort orders canary looks bad`"),
        "{table}"
    );
    // And its verbs refuse the typo before pushing anything.
    let out = Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args([
            "abort",
            "orders",
            "--repo",
            &url,
            "--author",
            "Ana <ana@example.com>",
        ])
        .output()
        .expect("abort");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("closest plans: production/orders-svc"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    runtime.block_on(emulator.shutdown());
}
