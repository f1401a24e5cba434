//! The daemon as a child process, for end-to-end tests: the Kubernetes API emulator loaded with
//! the orders-svc example, a `file://` Git remote seeded with plans, a person's clone driven with
//! the git CLI, and small readers of the daemon's HTTP API. A wait that times out prints the
//! newest lines of every daemon log in the test's folder.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tidegate::lab::kube_emulator::{self, EmulatorConfig, EmulatorHandle};
use tidegate::lab::remote::{self, LabRepos};

/// A child process killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// The emulator with the orders-svc manifests in `production`, its kubeconfig, and a Git remote
/// seeded with `files`.
pub struct World {
    pub dir: tempfile::TempDir,
    pub runtime: tokio::runtime::Runtime,
    pub emulator: EmulatorHandle,
    pub kubeconfig: PathBuf,
    pub repos: LabRepos,
}

pub fn world(namespaces: &[&str], files: &[(&str, String)]) -> World {
    tidegate::notify::ensure_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("rt");
    let emulator = runtime
        .block_on(kube_emulator::start(EmulatorConfig {
            namespaces: namespaces.iter().map(|n| (*n).to_owned()).collect(),
            ..EmulatorConfig::default()
        }))
        .expect("emulator");
    let manifests = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/orders-svc/manifests");
    emulator
        .load_paths(&[manifests], "production")
        .expect("load manifests");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, emulator.kubeconfig_yaml()).expect("kubeconfig");
    let repos = remote::seed(dir.path(), files).expect("seed");
    World {
        dir,
        runtime,
        emulator,
        kubeconfig,
        repos,
    }
}

/// A running daemon: its process, the port of its HTTP API and the folder of its log.
pub struct Daemon {
    pub proc: Proc,
    pub port: u16,
    pub dir: PathBuf,
}

impl World {
    /// Start `tidegate run` named `name` against this world (see [`start_daemon`]).
    pub fn start_daemon(&self, name: &str, extra: &str) -> Daemon {
        start_daemon(
            self.dir.path(),
            name,
            &self.repos.url(),
            &self.kubeconfig,
            extra,
        )
    }

    /// The VirtualService `production/orders-svc` as the emulator stores it now.
    pub fn virtual_service(&self) -> Value {
        self.emulator
            .get(
                "networking.istio.io/v1",
                "VirtualService",
                Some("production"),
                "orders-svc",
            )
            .expect("the VirtualService exists")
    }
}

/// Start `tidegate run` named `name` in `dir` (its configuration, data and log are kept there):
/// Git polled every 300 ms, Prometheus on a port nothing listens on, `extra` appended to the
/// configuration (`NAME` replaced by `name`).
pub fn start_daemon(
    dir: &Path,
    name: &str,
    git_url: &str,
    kubeconfig: &Path,
    extra: &str,
) -> Daemon {
    let port = free_port();
    let config = format!(
        "namespace: tidegate\ndataDir: {data}\ngit:\n  url: {url}\n  pollInterval: 300ms\n  coalesceWindow: 100ms\nkubernetes: {{kubeconfig: {kc}}}\nprometheus: {{url: 'http://127.0.0.1:{unused}'}}\nserver: {{listen: '127.0.0.1:{port}'}}\n{extra}shutdownGrace: 2s\n",
        data = dir.join(format!("data-{name}")).display(),
        url = git_url,
        kc = kubeconfig.display(),
        unused = free_port(),
        extra = extra.replace("NAME", name),
    );
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, config).expect("config");
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("log");
    let child = Command::new(daemon_binary())
        .args(["run", "--config"])
        .arg(&path)
        .env(
            "TIDEGATE_LOG",
            "info,tidegate::daemon=debug,tidegate::git=debug",
        )
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("spawn the daemon");
    Daemon {
        proc: Proc(child),
        port,
        dir: dir.to_path_buf(),
    }
}

impl Daemon {
    /// The status of `ns/name` as the daemon serves it, if it answers.
    pub fn status(&self, id: &str) -> Option<Value> {
        get_json(self.port, &format!("/api/v1/rollouts/{id}"))
    }

    /// Wait for `f`, printing the daemon logs of the test's folder when it times out.
    pub fn wait_for(&self, what: &str, timeout: Duration, f: impl FnMut() -> bool) {
        wait_for(&self.dir, what, timeout, f)
    }
}

/// The daemon binary: this crate's, or `TIDEGATE_E2E_BINARY` (to show that a test fails on an
/// older build: `TIDEGATE_E2E_BINARY=/tmp/tidegate-old cargo test --test e2e_change`).
pub fn daemon_binary() -> PathBuf {
    std::env::var_os("TIDEGATE_E2E_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_tidegate")))
}

/// The answer's status code and body of `GET path` on the daemon's port.
pub fn get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_owned()))
}

pub fn get_text(port: u16, path: &str) -> Option<String> {
    get(port, path).map(|(_, body)| body)
}

pub fn get_json(port: u16, path: &str) -> Option<Value> {
    serde_json::from_str(&get_text(port, path)?).ok()
}

/// Poll `f` every 100 ms until it holds; on timeout print the newest lines of every `*.log` in
/// `dir` and fail naming `what`.
pub fn wait_for(dir: &Path, what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "log") {
            let log = std::fs::read_to_string(&path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- {} (newest first)\n{}", path.display(), tail.join("\n"));
        }
    }
    panic!("timed out waiting for {what}");
}

/// `git` in `dir` as Ana, with an isolated configuration.
pub fn git(dir: &Path, args: &[&str]) -> Output {
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

pub fn git_ok(dir: &Path, args: &[&str]) -> String {
    let out = git(dir, args);
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Write (or, with `None`, delete) `path` in the person's clone (brought up to date first, as
/// after control commits made by the CLI), commit it with `message` and push it with a plain
/// `git push`; the new commit's id.
pub fn push_file(clone: &Path, path: &str, content: Option<&str>, message: &str) -> String {
    git_ok(clone, &["pull", "-q", "--rebase", "origin", "main"]);
    let file = clone.join(path);
    match content {
        Some(text) => {
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent).expect("mkdir");
            }
            std::fs::write(&file, text).expect("write the plan");
            git_ok(clone, &["add", path]);
        }
        None => {
            git_ok(clone, &["rm", "-q", path]);
        }
    }
    git_ok(clone, &["commit", "-q", "--allow-empty", "-m", message]);
    git_ok(clone, &["push", "-q", "origin", "HEAD:main"]);
    git_ok(clone, &["rev-parse", "HEAD"])
}

/// The weight of `subset` in the VirtualService's route named `route`.
pub fn weight_of(vs: &Value, route: &str, subset: &str) -> Option<u64> {
    weight_where(vs, route, "/destination/subset", subset)
}

/// The weight of the destination to `host` in route `route` (a host-level split).
pub fn host_weight(vs: &Value, route: &str, host: &str) -> Option<u64> {
    weight_where(vs, route, "/destination/host", host)
}

fn weight_where(vs: &Value, route: &str, pointer: &str, value: &str) -> Option<u64> {
    let routes = vs.pointer("/spec/http")?.as_array()?;
    let found = routes.iter().find(|r| r["name"] == route)?;
    found["route"]
        .as_array()?
        .iter()
        .find(|d| d.pointer(pointer) == Some(&Value::from(value)))
        .map(|d| d["weight"].as_u64().unwrap_or(100))
}

/// The names of the VirtualService's http routes, in order.
pub fn route_names(vs: &Value) -> Vec<String> {
    vs.pointer("/spec/http")
        .and_then(Value::as_array)
        .map(|routes| {
            routes
                .iter()
                .filter_map(|r| r["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}
