//! The daemon as a process against the Kubernetes API emulator and a file:// Git remote:
//! control commits pushed by the `tidegate` CLI (and refused ones), and two daemons where only
//! the holder of the Lease ticks and writes, the other taking over after a SIGKILL.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tidegate::lab::kube_emulator::{self, EmulatorConfig};
use tidegate::lab::remote;

const PLAN: &str = "apiVersion: tidegate.dev/v1alpha1\nkind: Rollout\nmetadata: {name: orders-svc, namespace: production}\nspec:\n  service: orders-svc\n  routes: [primary]\n  stable: v1\n  canary: v2\n  steps:\n    - setWeight: 20\n    - pause: {}\n    - setWeight: 50\n    - pause: {}\n  analysis: {interval: 1s}\n";

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

fn start_daemon(dir: &Path, name: &str, git_url: &str, kubeconfig: &Path) -> (Proc, u16) {
    start_daemon_with(
        dir,
        name,
        git_url,
        kubeconfig,
        "leaderElection: {enabled: true, leaseName: tidegate, leaseDuration: 3s, identity: NAME}\n",
    )
}

fn start_daemon_with(
    dir: &Path,
    name: &str,
    git_url: &str,
    kubeconfig: &Path,
    extra: &str,
) -> (Proc, u16) {
    let port = free_port();
    let extra = extra.replace("NAME", name);
    let data = dir.join(format!("data-{name}"));
    let config = format!(
        "namespace: tidegate\ndataDir: {data}\ngit:\n  url: {git_url}\n  pollInterval: 500ms\n  coalesceWindow: 200ms\nkubernetes: {{kubeconfig: {kc}}}\nprometheus: {{url: 'http://127.0.0.1:{unused}'}}\nserver: {{listen: '127.0.0.1:{port}'}}\n{extra}shutdownGrace: 2s\n",
        data = data.display(),
        kc = kubeconfig.display(),
        unused = free_port(),
    );
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, config).expect("config");
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("log");
    let child = Command::new(env!("CARGO_BIN_EXE_tidegate"))
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
    (Proc(child), port)
}

fn get_json(port: u16, path: &str) -> Option<Value> {
    let body = get_text(port, path)?;
    serde_json::from_str(&body).ok()
}

fn get_text(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())
}

fn is_leader(port: u16) -> bool {
    get_json(port, "/readyz").is_some_and(|v| v["leader"] == true)
}

fn ticks(port: u16) -> u64 {
    get_text(port, "/metrics")
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("tidegate_ticks_total "))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Show what the daemons logged: the logs sit next to their configs in the test's folder.
    if let Some(dir) = LOG_DIR.with(|d| d.borrow().clone()) {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "log") {
                let log = std::fs::read_to_string(&path).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(60).collect();
                eprintln!("--- {} (newest first)\n{}", path.display(), tail.join("\n"));
            }
        }
    }
    panic!("timed out waiting for {what}");
}

thread_local! {
    static LOG_DIR: std::cell::RefCell<Option<PathBuf>> = const { std::cell::RefCell::new(None) };
}

fn canary_weight(vs: &Value) -> Option<u64> {
    let routes = vs.pointer("/spec/http")?.as_array()?;
    let primary = routes.iter().find(|r| r["name"] == "primary")?;
    primary["route"]
        .as_array()?
        .iter()
        .find(|d| d.pointer("/destination/subset") == Some(&Value::from("v2")))
        .and_then(|d| d["weight"].as_u64())
}

/// The emulator with the orders-svc manifests, its kubeconfig, and a Git remote with `PLAN`.
struct World {
    dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    emulator: kube_emulator::EmulatorHandle,
    kubeconfig: PathBuf,
    repos: remote::LabRepos,
}

fn world() -> World {
    tidegate::notify::ensure_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("rt");
    let emulator = runtime
        .block_on(kube_emulator::start(EmulatorConfig {
            namespaces: vec!["default".into(), "production".into(), "tidegate".into()],
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
    LOG_DIR.with(|d| *d.borrow_mut() = Some(dir.path().to_path_buf()));
    World {
        dir,
        runtime,
        emulator,
        kubeconfig,
        repos,
    }
}

#[test]
fn only_the_lease_holder_writes_and_the_other_takes_over() {
    let World {
        dir,
        runtime,
        emulator,
        kubeconfig,
        repos,
    } = world();
    let url = repos.url();

    let (a, port_a) = start_daemon(dir.path(), "alpha", &url, &kubeconfig);
    let (b, port_b) = start_daemon(dir.path(), "bravo", &url, &kubeconfig);
    wait_for("a leader", Duration::from_secs(30), || {
        is_leader(port_a) || is_leader(port_b)
    });
    let (leader, leader_port, standby_port, standby_name) = if is_leader(port_a) {
        (a, port_a, port_b, "bravo")
    } else {
        (b, port_b, port_a, "alpha")
    };
    assert!(!is_leader(standby_port), "exactly one leader");
    let vs = || {
        emulator.get(
            "networking.istio.io/v1",
            "VirtualService",
            Some("production"),
            "orders-svc",
        )
    };
    wait_for("the leader to set 20%", Duration::from_secs(30), || {
        vs().as_ref().and_then(canary_weight) == Some(20)
    });
    let lease = emulator
        .get(
            "coordination.k8s.io/v1",
            "Lease",
            Some("tidegate"),
            "tidegate",
        )
        .expect("the lease exists");
    let holder = lease
        .pointer("/spec/holderIdentity")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    assert_ne!(holder, standby_name, "the standby does not hold the lease");
    // The counter moves when a tick ends; the patch above may come from a tick still running.
    wait_for(
        "the leader to finish a tick",
        Duration::from_secs(30),
        || ticks(leader_port) > 0,
    );
    assert_eq!(
        ticks(standby_port),
        0,
        "the standby never ticks, so it never writes"
    );

    // Kill the leader; the standby takes over once the lease expires and continues the rollout.
    drop(leader);
    wait_for("the standby to take over", Duration::from_secs(30), || {
        is_leader(standby_port)
    });
    let out = Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args([
            "resume",
            "production/orders-svc",
            "-m",
            "carry on",
            "--repo",
            &url,
        ])
        .output()
        .expect("resume");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("the new leader to set 50%", Duration::from_secs(30), || {
        vs().as_ref().and_then(canary_weight) == Some(50)
    });
    let weights: Vec<u64> = emulator
        .history(
            "networking.istio.io/v1",
            "VirtualService",
            Some("production"),
            "orders-svc",
        )
        .iter()
        .skip(1)
        .filter_map(|e| canary_weight(&e.object))
        .collect();
    assert!(
        weights.iter().all(|w| [0, 20, 50].contains(w)),
        "{weights:?}"
    );
    wait_for(
        "the new leader to finish a tick",
        Duration::from_secs(30),
        || ticks(standby_port) > 0,
    );
    runtime.block_on(emulator.shutdown());
}

fn status_of(port: u16) -> Option<Value> {
    get_json(port, "/api/v1/rollouts/production/orders-svc")
}

/// The status as the daemon serves it now; a request that fails (a busy debug build can miss
/// the 2 s read timeout) is repeated, so a one-off assertion is about the status, not the socket.
fn status_now(port: u16) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(s) = status_of(port) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon on port {port} did not answer GET /api/v1/rollouts/production/orders-svc for 20 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn control(url: &str, action: &str, author: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args([
            action,
            "production/orders-svc",
            "-m",
            &format!("test {action}"),
            "--repo",
            url,
            "--author",
            author,
        ])
        .output()
        .expect("control command");
    assert!(
        out.status.success(),
        "{action}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_control_action_by_pushed_commits_and_refusals_are_recorded() {
    let World {
        dir,
        runtime,
        emulator,
        kubeconfig,
        repos,
    } = world();
    let url = repos.url();
    let (_d, port) = start_daemon_with(
        dir.path(),
        "solo",
        &url,
        &kubeconfig,
        "control: {allowedAuthors: ['*@example.com']}\n",
    );
    let weight = || {
        emulator
            .get(
                "networking.istio.io/v1",
                "VirtualService",
                Some("production"),
                "orders-svc",
            )
            .as_ref()
            .and_then(canary_weight)
    };
    let phase = || {
        status_now(port)["phase"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let ana = "Ana <ana@example.com>";
    wait_for("the plan's pause at 20%", Duration::from_secs(30), || {
        phase() == "Paused" && weight() == Some(20)
    });

    // Someone outside the policy tries to abort: refused, recorded, nothing changes.
    control(&url, "abort", "Mallory <mallory@evil.test>");
    wait_for(
        "the refusal to be recorded",
        Duration::from_secs(30),
        || {
            status_of(port).is_some_and(|s| {
                s["controls"].as_array().is_some_and(|c| {
                    c.iter().any(|r| {
                        r["applied"] == false
                            && r["note"]
                                .as_str()
                                .is_some_and(|n| n.contains("mallory@evil.test"))
                    })
                })
            })
        },
    );
    assert_eq!(phase(), "Paused");
    assert_eq!(weight(), Some(20));

    // The API server fails the next writes: the daemon's own failed write must be retried, not
    // taken for someone else's edit (which would pause the rollout on "drift").
    emulator.faults().fail_next_writes(500, 12);
    control(&url, "resume", ana);
    wait_for(
        "resume: 50% and the next pause",
        Duration::from_secs(30),
        || phase() == "Paused" && weight() == Some(50),
    );
    let mut failed_writes = None;
    wait_for("GET /metrics to answer", Duration::from_secs(20), || {
        failed_writes = get_text(port, "/metrics").map(|m| {
            m.lines()
                .find(|l| l.starts_with("tidegate_mesh_write_errors_total "))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        });
        failed_writes.is_some()
    });
    let failed_writes = failed_writes.unwrap_or(0);
    assert!(
        failed_writes >= 1,
        "the injected failures reached the VirtualService writes"
    );
    control(&url, "abort", ana);
    wait_for("abort: all on stable", Duration::from_secs(30), || {
        phase() == "Aborted" && weight() == Some(0)
    });
    control(&url, "retry", ana);
    wait_for(
        "retry: back at the first pause",
        Duration::from_secs(30),
        || phase() == "Paused" && weight() == Some(20),
    );
    control(&url, "promote", ana);
    wait_for(
        "promote: all on the canary",
        Duration::from_secs(30),
        || phase() == "Succeeded",
    );
    let vs = emulator
        .get(
            "networking.istio.io/v1",
            "VirtualService",
            Some("production"),
            "orders-svc",
        )
        .expect("vs");
    let primary = vs
        .pointer("/spec/http")
        .and_then(Value::as_array)
        .and_then(|r| r.iter().find(|r| r["name"] == "primary").cloned())
        .expect("primary");
    let to_v2: u64 = primary["route"]
        .as_array()
        .expect("routes")
        .iter()
        .filter(|d| d.pointer("/destination/subset") == Some(&Value::from("v2")))
        .map(|d| d["weight"].as_u64().unwrap_or(100))
        .sum();
    assert_eq!(to_v2, 100, "{primary}");
    let st = status_now(port);
    let applied: Vec<String> = st["controls"]
        .as_array()
        .expect("controls")
        .iter()
        .filter(|c| c["applied"] == true)
        .filter_map(|c| c["action"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(applied, ["resume", "abort", "retry", "promote"]);
    // `status --watch` against the daemon's API (one refresh; plain lines without a terminal).
    let watch = Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args([
            "status",
            "--watch",
            "--refreshes",
            "1",
            "--api",
            &format!("http://127.0.0.1:{port}"),
        ])
        .output()
        .expect("status --watch");
    let text = String::from_utf8_lossy(&watch.stdout);
    assert!(
        watch.status.success(),
        "{}",
        String::from_utf8_lossy(&watch.stderr)
    );
    assert!(
        text.contains("production/orders-svc 100%") && text.contains("Succeeded"),
        "{text}"
    );
    runtime.block_on(emulator.shutdown());
}
