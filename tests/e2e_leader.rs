//! Two daemons against one Kubernetes API emulator and one Git remote: only the holder of the
//! Lease ticks and writes; when it is killed (SIGKILL) the other takes over and carries on.

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
    let port = free_port();
    let data = dir.join(format!("data-{name}"));
    let config = format!(
        "namespace: tidegate\ndataDir: {data}\ngit:\n  url: {git_url}\n  pollInterval: 500ms\n  coalesceWindow: 200ms\nkubernetes: {{kubeconfig: {kc}}}\nprometheus: {{url: 'http://127.0.0.1:{unused}'}}\nserver: {{listen: '127.0.0.1:{port}'}}\nleaderElection: {{enabled: true, leaseName: tidegate, leaseDuration: 3s, identity: {name}}}\nshutdownGrace: 2s\n",
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
        .env("TIDEGATE_LOG", "info")
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
    panic!("timed out waiting for {what}");
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

#[test]
fn only_the_lease_holder_writes_and_the_other_takes_over() {
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
    assert!(ticks(leader_port) > 0, "the leader ticks");
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
    assert!(ticks(standby_port) > 0);
    runtime.block_on(emulator.shutdown());
}
