//! The daemon as a process against the Kubernetes API emulator and a `file://` remote, with
//! status commits on the status branch (the default): a person's plain `git push` (no fetch, no
//! pull) to the plans branch is never rejected while the daemon pushes status commits, a bare
//! rollout name in a control resolves across namespaces, a name no plan defines is answered in
//! `status/_refused.yaml`, and `tidegate status --repo` reads all of it back.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tidegate::lab::kube_emulator::{self, EmulatorConfig};
use tidegate::lab::remote;

/// Small steps with short pauses: the daemon pushes a status commit every second or so.
const PLAN: &str = "apiVersion: tidegate.dev/v1alpha1\nkind: Rollout\nmetadata: {name: orders-svc, namespace: production}\nspec:\n  service: orders-svc\n  routes: [primary]\n  stable: v1\n  canary: v2\n  steps:\n    - setWeight: 10\n    - pause: 1s\n    - setWeight: 20\n    - pause: 1s\n    - setWeight: 30\n    - pause: 1s\n    - setWeight: 40\n    - pause: 1s\n    - setWeight: 50\n    - pause: 1s\n    - setWeight: 60\n    - pause: {}\n  analysis: {interval: 1s}\n";

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn start_daemon(dir: &Path, git_url: &str, kubeconfig: &Path) -> (Proc, u16) {
    let port = free_port();
    let config = format!(
        "namespace: tidegate\ndataDir: {data}\ngit:\n  url: {git_url}\n  pollInterval: 300ms\n  coalesceWindow: 100ms\nkubernetes: {{kubeconfig: {kc}}}\nprometheus: {{url: 'http://127.0.0.1:{unused}'}}\nserver: {{listen: '127.0.0.1:{port}'}}\nshutdownGrace: 2s\n",
        data = dir.join("data").display(),
        kc = kubeconfig.display(),
        unused = free_port(),
    );
    let path = dir.join("tidegate.yaml");
    std::fs::write(&path, config).expect("config");
    let log = std::fs::File::create(dir.join("daemon.log")).expect("log");
    let child = Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args(["run", "--config"])
        .arg(&path)
        .env("TIDEGATE_LOG", "info,tidegate::git=debug")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("spawn the daemon");
    (Proc(child), port)
}

fn get_json(port: u16, path: &str) -> Option<Value> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (_, body) = out.split_once("\r\n\r\n")?;
    serde_json::from_str(body).ok()
}

fn wait_for(dir: &Path, what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(60).collect();
    eprintln!("--- daemon.log (newest first)\n{}", tail.join("\n"));
    panic!("timed out waiting for {what}");
}

/// `git` in `dir` with an isolated configuration.
fn git(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new("git")
        .args(["-c", "user.name=Ana", "-c", "user.email=ana@example.com"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .expect("run git")
}

fn git_ok(dir: &Path, args: &[&str]) -> String {
    let out = git(dir, args);
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
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
    tidegate::notify::ensure_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("rt");
    let emulator = runtime
        .block_on(kube_emulator::start(EmulatorConfig {
            namespaces: vec!["production".into(), "tidegate".into()],
            ..EmulatorConfig::default()
        }))
        .expect("emulator");
    let manifests = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/orders-svc/manifests");
    emulator
        .load_paths(&[manifests], "production")
        .expect("load manifests");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, emulator.kubeconfig_yaml()).expect("kubeconfig");
    let repos =
        remote::seed(dir.path(), &[("rollouts/orders-svc.yaml", PLAN.to_owned())]).expect("seed");
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
