//! The daemon as a process against the Kubernetes API emulator and a file:// Git remote:
//! control commits pushed by the `tidegate` CLI (and refused ones), and two daemons where only
//! the holder of the Lease ticks and writes, the other taking over after a SIGKILL.

#[path = "support/process.rs"]
mod process;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use process::{Daemon, World, get_json, get_text, wait_for};
use serde_json::Value;

const PLAN: &str = "apiVersion: tidegate.dev/v1alpha1\nkind: Rollout\nmetadata: {name: orders-svc, namespace: production}\nspec:\n  service: orders-svc\n  routes: [primary]\n  stable: v1\n  canary: v2\n  steps:\n    - setWeight: 20\n    - pause: {}\n    - setWeight: 50\n    - pause: {}\n  analysis: {interval: 1s}\n";

const LEASE: &str =
    "leaderElection: {enabled: true, leaseName: tidegate, leaseDuration: 3s, identity: NAME}\n";

fn world() -> World {
    process::world(
        &["default", "production", "tidegate"],
        &[("rollouts/orders-svc.yaml", PLAN.to_owned())],
    )
}

fn start_daemon(dir: &Path, name: &str, git_url: &str, kubeconfig: &Path) -> (Daemon, u16) {
    start_daemon_with(dir, name, git_url, kubeconfig, LEASE)
}

fn start_daemon_with(
    dir: &Path,
    name: &str,
    git_url: &str,
    kubeconfig: &Path,
    extra: &str,
) -> (Daemon, u16) {
    let daemon = process::start_daemon(dir, name, git_url, kubeconfig, extra);
    let port = daemon.port;
    (daemon, port)
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

fn canary_weight(vs: &Value) -> Option<u64> {
    process::weight_of(vs, "primary", "v2")
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
    // One leader, as both daemons report it in a row (a lease of 3 s on a loaded machine can
    // change hands while the two start; what matters is that they settle on one and only the
    // holder writes, checked below).
    wait_for(
        dir.path(),
        "exactly one leader",
        Duration::from_secs(30),
        || {
            let (a_leads, b_leads) = (is_leader(port_a), is_leader(port_b));
            a_leads != b_leads && is_leader(port_a) == a_leads && is_leader(port_b) == b_leads
        },
    );
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
    wait_for(
        dir.path(),
        "the leader to set 20%",
        Duration::from_secs(30),
        || vs().as_ref().and_then(canary_weight) == Some(20),
    );
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
        dir.path(),
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
    wait_for(
        dir.path(),
        "the standby to take over",
        Duration::from_secs(30),
        || is_leader(standby_port),
    );
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
    wait_for(
        dir.path(),
        "the new leader to set 50%",
        Duration::from_secs(30),
        || vs().as_ref().and_then(canary_weight) == Some(50),
    );
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
        dir.path(),
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
    wait_for(
        dir.path(),
        "the plan's pause at 20%",
        Duration::from_secs(30),
        || phase() == "Paused" && weight() == Some(20),
    );

    // Someone outside the policy tries to abort: refused, recorded, nothing changes.
    control(&url, "abort", "Mallory <mallory@evil.test>");
    wait_for(
        dir.path(),
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
        dir.path(),
        "resume: 50% and the next pause",
        Duration::from_secs(30),
        || phase() == "Paused" && weight() == Some(50),
    );
    let mut failed_writes = None;
    wait_for(
        dir.path(),
        "GET /metrics to answer",
        Duration::from_secs(20),
        || {
            failed_writes = get_text(port, "/metrics").map(|m| {
                m.lines()
                    .find(|l| l.starts_with("tidegate_mesh_write_errors_total "))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            });
            failed_writes.is_some()
        },
    );
    let failed_writes = failed_writes.unwrap_or(0);
    assert!(
        failed_writes >= 1,
        "the injected failures reached the VirtualService writes"
    );
    control(&url, "abort", ana);
    wait_for(
        dir.path(),
        "abort: all on stable",
        Duration::from_secs(30),
        || phase() == "Aborted" && weight() == Some(0),
    );
    control(&url, "retry", ana);
    wait_for(
        dir.path(),
        "retry: back at the first pause",
        Duration::from_secs(30),
        || phase() == "Paused" && weight() == Some(20),
    );
    control(&url, "promote", ana);
    wait_for(
        dir.path(),
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
    // `--watch -o json` with the address as `host:port`: one JSON object a line.
    let watch = Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args([
            "status",
            "--watch",
            "-o",
            "json",
            "--refreshes",
            "2",
            "--api",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .output()
        .expect("status --watch -o json");
    let text = String::from_utf8_lossy(&watch.stdout);
    let objects: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
        .collect();
    assert!(!objects.is_empty(), "{text}");
    assert!(objects.iter().all(|o| o["phase"] == "Succeeded"), "{text}");
    runtime.block_on(emulator.shutdown());
}
