//! Live preflight: the daemon as a process against the Kubernetes API emulator reads the
//! Gateways, Services and ServiceEntries a rollout depends on (its namespace and the namespaces
//! its VirtualService refers to) when preflight runs. A VirtualService whose host its Gateway
//! in `istio-system` does not admit (IST0132), or that routes to a host no Service defines
//! (IST0101), holds the rollout with the finding in its status and no traffic moved; a daemon
//! that may not read Services rolls out anyway and warns once, naming the RBAC rule to add.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tidegate::lab::kube_emulator::{self, EmulatorConfig, EmulatorHandle};
use tidegate::lab::remote;

const PLAN: &str = "apiVersion: tidegate.dev/v1alpha1\nkind: Rollout\nmetadata: {name: orders-svc, namespace: production}\nspec:\n  service: orders-svc\n  routes: [primary]\n  stable: v1\n  canary: v2\n  steps:\n    - setWeight: 20\n    - pause: {}\n  analysis: {interval: 1s}\n";

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

/// The emulator loaded with `objects`, a Git remote with `PLAN`, and the daemon started.
struct World {
    dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    emulator: EmulatorHandle,
    repos: remote::LabRepos,
    port: u16,
    _daemon: Proc,
}

impl World {
    fn start(objects: Vec<Value>, before_start: impl FnOnce(&EmulatorHandle)) -> World {
        common::init_tls();
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("rt");
        let emulator = runtime
            .block_on(kube_emulator::start(EmulatorConfig {
                namespaces: vec!["production".into(), "istio-system".into()],
                ..EmulatorConfig::default()
            }))
            .expect("emulator");
        for o in objects {
            emulator.apply_manifest(o, "production").expect("seed");
        }
        before_start(&emulator);
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, emulator.kubeconfig_yaml()).expect("kubeconfig");
        let repos = remote::seed(dir.path(), &[("rollouts/orders-svc.yaml", PLAN.to_owned())])
            .expect("seed");
        let (daemon, port) = start_daemon(dir.path(), &repos.url(), &kubeconfig);
        World {
            dir,
            runtime,
            emulator,
            repos,
            port,
            _daemon: daemon,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    fn wait_for(&self, what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let log = self.log();
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        eprintln!("--- daemon.log (newest first)\n{}", tail.join("\n"));
        panic!("timed out waiting for {what}");
    }

    fn status(&self) -> Option<Value> {
        get_json(self.port, "/api/v1/rollouts/production/orders-svc")
    }

    /// The status once preflight holds the rollout with a finding containing `needle`.
    fn held_with(&self, needle: &str) -> Value {
        let mut last = None;
        self.wait_for(&format!("the rollout held with {needle}"), || {
            last = self.status();
            last.as_ref().is_some_and(|s| {
                s["phase"] == "Pending"
                    && s["findings"].as_array().is_some_and(|f| {
                        f.iter().any(|f| f.as_str().unwrap_or("").contains(needle))
                    })
            })
        });
        last.expect("a status")
    }

    fn vs(&self) -> Option<Value> {
        self.emulator.get(
            "networking.istio.io/v1",
            "VirtualService",
            Some("production"),
            "orders-svc",
        )
    }

    /// How many versions of the VirtualService were ever stored (1: never written).
    fn vs_versions(&self) -> usize {
        self.emulator
            .history(
                "networking.istio.io/v1",
                "VirtualService",
                Some("production"),
                "orders-svc",
            )
            .len()
    }

    /// `(resource, namespace, status)` of every list of Services, ServiceEntries, Gateways.
    fn preflight_lists(&self) -> Vec<(String, String, u16)> {
        self.emulator
            .faults()
            .requests()
            .iter()
            .filter(|r| r.method == "GET" && !r.query.contains("watch="))
            .filter_map(|r| {
                let segs: Vec<&str> = r.path.split('/').collect();
                match segs.as_slice() {
                    [
                        ..,
                        "namespaces",
                        ns,
                        res @ ("services" | "serviceentries" | "gateways"),
                    ] => Some((res.to_string(), ns.to_string(), r.status)),
                    _ => None,
                }
            })
            .collect()
    }

    fn stop(self) {
        drop(self._daemon);
        self.runtime.block_on(self.emulator.shutdown());
    }
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
        .env("TIDEGATE_LOG", "info")
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

fn canary_weight(vs: &Value) -> Option<u64> {
    let routes = vs.pointer("/spec/http")?.as_array()?;
    let primary = routes.iter().find(|r| r["name"] == "primary")?;
    primary["route"]
        .as_array()?
        .iter()
        .find(|d| d.pointer("/destination/subset") == Some(&Value::from("v2")))
        .and_then(|d| d["weight"].as_u64())
}

/// The rollout's VirtualService: `extra_routes` first, then `primary` (v1 100 %, v2 0 %).
fn virtual_service(hosts: &[&str], gateways: &[&str], extra_routes: &[Value]) -> Value {
    let primary = json!({"name": "primary", "route": [
        {"destination": {"host": "orders-svc", "subset": "v1"}, "weight": 100},
        {"destination": {"host": "orders-svc", "subset": "v2"}, "weight": 0}]});
    let mut http: Vec<Value> = extra_routes.to_vec();
    http.push(primary);
    let mut spec = json!({"hosts": hosts, "http": http});
    if !gateways.is_empty() {
        spec["gateways"] = json!(gateways);
    }
    json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
           "metadata": {"name": "orders-svc", "namespace": "production"}, "spec": spec})
}

fn destination_rule() -> Value {
    json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
           "metadata": {"name": "orders-svc", "namespace": "production"},
           "spec": {"host": "orders-svc", "subsets": [
               {"name": "v1", "labels": {"version": "v1"}},
               {"name": "v2", "labels": {"version": "v2"}}]}})
}

fn service() -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "orders-svc", "namespace": "production"},
           "spec": {"selector": {"app": "orders-svc"}, "ports": [{"name": "http", "port": 8080}]}})
}

/// The ingress Gateway `istio-system/public` with one HTTP server for `hosts`.
fn gateway(hosts: &[&str]) -> Value {
    json!({"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
           "metadata": {"name": "public", "namespace": "istio-system"},
           "spec": {"selector": {"istio": "ingressgateway"}, "servers": [
               {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": hosts}]}})
}

#[test]
fn a_host_its_gateway_in_istio_system_does_not_admit_holds_the_rollout() {
    // `./orders.example.com` admits the host only for VirtualServices of istio-system.
    let w = World::start(
        vec![
            virtual_service(&["orders.example.com"], &["istio-system/public"], &[]),
            destination_rule(),
            service(),
            gateway(&["./orders.example.com"]),
        ],
        |_| {},
    );
    let status = w.held_with("IST0132");
    let findings = status["findings"].to_string();
    assert!(
        findings.contains("Gateway istio-system/public"),
        "{findings}"
    );
    assert_eq!(w.vs_versions(), 1, "no traffic moved while held");

    // Preflight listed the three kinds in the rollout's namespace and in istio-system, the
    // Gateway's namespace, and nowhere else: six lists each time it ran.
    let lists = w.preflight_lists();
    let mut pairs: Vec<(String, String)> = lists
        .iter()
        .map(|(r, n, _)| (r.clone(), n.clone()))
        .collect();
    pairs.sort();
    pairs.dedup();
    let want: Vec<(String, String)> = ["istio-system", "production"]
        .iter()
        .flat_map(|ns| {
            ["gateways", "serviceentries", "services"].map(|r| (r.to_string(), ns.to_string()))
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(pairs, want, "{lists:?}");
    // Each preflight run lists each pair once (a run may be under way as the log is read).
    let counts: Vec<usize> = want
        .iter()
        .map(|p| {
            lists
                .iter()
                .filter(|(r, n, _)| (r, n) == (&p.0, &p.1))
                .count()
        })
        .collect();
    let (min, max) = (counts.iter().min(), counts.iter().max());
    assert!(
        min >= Some(&1) && max.zip(min).is_some_and(|(a, b)| a - b <= 1),
        "{counts:?}: {lists:?}"
    );
    assert!(lists.iter().all(|(_, _, code)| *code == 200), "{lists:?}");

    // Admitting the host from the rollout's namespace lets the rollout start: the Gateway is
    // read again when preflight runs again (it is not watched).
    w.emulator
        .apply_manifest(gateway(&["production/orders.example.com"]), "istio-system")
        .expect("fix the Gateway");
    w.wait_for("the first step after the fix", || {
        w.vs().as_ref().and_then(canary_weight) == Some(20)
    });
    w.stop();
}

#[test]
fn a_destination_host_without_a_service_holds_the_rollout() {
    // The rollout's own host has its Service; the ledger route's host in `billing` has none.
    let ledger = json!({"name": "ledger", "match": [{"uri": {"prefix": "/ledger"}}],
                        "route": [{"destination": {"host": "ledger.billing.svc.cluster.local"}}]});
    let w = World::start(
        vec![
            virtual_service(&["orders-svc"], &[], &[ledger]),
            destination_rule(),
            service(),
        ],
        |_| {},
    );
    let status = w.held_with("IST0101");
    let findings = status["findings"].to_string();
    assert!(
        findings.contains("ledger.billing.svc.cluster.local"),
        "{findings}"
    );
    assert!(
        !findings.contains("host orders-svc,"),
        "the rollout's own host has a Service: {findings}"
    );
    assert_eq!(w.vs_versions(), 1, "no traffic moved while held");
    assert!(
        w.preflight_lists()
            .iter()
            .any(|(r, ns, _)| r == "services" && ns == "billing"),
        "the Services of the namespace the route names are read"
    );
    w.stop();
}

#[test]
fn services_the_daemon_may_not_read_leave_the_rollout_running_with_one_warning() {
    // No Service at all: were Services read, the host would be unknown and the rollout held.
    let w = World::start(
        vec![
            virtual_service(&["orders-svc"], &[], &[]),
            destination_rule(),
        ],
        |e| e.faults().forbid("", "services"),
    );
    w.wait_for("the first step", || {
        w.vs().as_ref().and_then(canary_weight) == Some(20)
    });
    // A new revision runs preflight again: the Services are still forbidden, and the warning
    // is not repeated.
    let edited = PLAN.replace("interval: 1s", "interval: 2s");
    remote::commit_file(
        &w.repos.remote,
        "rollouts/orders-svc.yaml",
        &edited,
        "slower analysis",
    )
    .expect("push an edit");
    let forbidden = || {
        w.preflight_lists()
            .iter()
            .filter(|(r, _, code)| r == "services" && *code == 403)
            .count()
    };
    w.wait_for("preflight to run for the new revision", || forbidden() >= 2);
    let status = w.status().expect("status");
    assert!(
        status["findings"].as_array().is_none_or(Vec::is_empty),
        "nothing holds the rollout: {status}"
    );
    let log = w.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("may not list services in namespace production"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning: {warnings:#?}");
    assert!(
        warnings[0]
            .contains(r#"{apiGroups: [""], resources: ["services"], verbs: ["get", "list"]}"#),
        "the warning names the rule to add: {}",
        warnings[0]
    );
    assert!(warnings[0].contains("WARN"), "{}", warnings[0]);
    w.stop();
}
