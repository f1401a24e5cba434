//! The daemon's targets, measured (`cargo bench --bench daemon`; results go to
//! docs/benchmarks.md by hand):
//!
//! 1. push + webhook → first VirtualService patch latency (p50/p99 over 20 new plans);
//! 2. many simultaneous rollouts (default 1,000, `TIDEGATE_BENCH_ROLLOUTS`) at a 10 s interval:
//!    the daemon's CPU share and RSS, Prometheus queries per analysis round, pushes per second;
//! 3. idle RSS (no plans);
//! 4. metric breach visible in Prometheus → rolled back (lab traffic, failureLimit 1, 5 s
//!    interval).
//!
//! Everything is real: the daemon is the release `tidegate` binary in its own process, Git is a
//! file:// remote, Kubernetes is the emulator, Prometheus is the Debian binary.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use git2::{Repository, Signature};
use serde_json::{Value, json};
use tidegate::lab::kube_emulator::{self, EmulatorConfig, EmulatorHandle};
use tidegate::lab::{prometheus, remote, traffic};

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The daemon under test: the bench profile's build, or `TIDEGATE_BENCH_BINARY` (say, the shipped
/// `scripts/build-release` binary).
fn binary() -> PathBuf {
    std::env::var_os("TIDEGATE_BENCH_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_tidegate")))
}

fn vs(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
      "metadata": {"name": name, "namespace": ns},
      "spec": {"hosts": [name], "http": [{"name": "primary", "route": [
        {"destination": {"host": name, "subset": "v1"}, "weight": 100},
        {"destination": {"host": name, "subset": "v2"}, "weight": 0}]}]}})
}

fn dr(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
      "metadata": {"name": name, "namespace": ns},
      "spec": {"host": name, "subsets": [{"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}]}})
}

fn plan(ns: &str, name: &str, interval: &str, metrics: bool) -> String {
    let metrics = if metrics {
        "    metrics:\n      - {name: success-rate, template: istio-success-rate, min: 99}\n      - {name: latency-p99, template: istio-latency-p99, max: 500ms}\n"
    } else {
        ""
    };
    format!(
        "apiVersion: tidegate.dev/v1alpha1\nkind: Rollout\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  service: {name}\n  routes: [primary]\n  stable: v1\n  canary: v2\n  steps:\n    - setWeight: 10\n    - analyze: 1h\n  analysis:\n    interval: {interval}\n    failureLimit: 1\n    minRequests: 10\n{metrics}"
    )
}

fn free_port() -> u16 {
    prometheus::free_port().expect("a free port")
}

fn start_daemon(
    dir: &Path,
    git_url: &str,
    kubeconfig: &Path,
    prom: &str,
    poll: &str,
) -> (Proc, u16) {
    let port = free_port();
    let config = format!(
        "namespace: tidegate\ndataDir: {data}\ngit:\n  url: {git_url}\n  pollInterval: {poll}\n  coalesceWindow: 1s\nkubernetes: {{kubeconfig: {kc}}}\nprometheus: {{url: '{prom}', timeout: 5s}}\nserver: {{listen: '127.0.0.1:{port}'}}\n",
        data = dir.join("data").display(),
        kc = kubeconfig.display(),
    );
    let path = dir.join("tidegate.yaml");
    std::fs::write(&path, config).expect("config");
    let log = std::fs::File::create(dir.join("daemon.log")).expect("log");
    let child = Command::new(binary())
        .args(["run", "--config"])
        .arg(&path)
        .env("TIDEGATE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("daemon");
    (Proc(child), port)
}

/// (utime + stime in seconds, RSS in MiB) of a process.
fn usage(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kb = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    (ticks / 100.0, rss_kb / 1024.0)
}

fn metric(port: u16, name: &str) -> f64 {
    let text = http_get(port, "/metrics");
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes());
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default()
}

fn http_post_webhook(port: u16) {
    use std::io::{Read, Write};
    let body = r#"{"ref":"refs/heads/main"}"#;
    if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
        let _ = s.write_all(
            format!("POST /hooks/git HTTP/1.0\r\nHost: x\r\nX-GitHub-Event: push\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes(),
        );
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
    }
}

/// Commit `files` on main of the bare remote (what a push does).
fn push(remote: &Path, files: &[(String, String)], message: &str) {
    let repo = Repository::open_bare(remote).expect("remote");
    let parent = repo
        .find_reference("refs/heads/main")
        .and_then(|r| r.peel_to_commit())
        .expect("main");
    let base = parent.tree().expect("tree");
    let rollouts = base
        .get_path(Path::new("rollouts"))
        .ok()
        .and_then(|e| repo.find_tree(e.id()).ok());
    let mut sub = repo.treebuilder(rollouts.as_ref()).expect("tb");
    for (name, content) in files {
        let blob = repo.blob(content.as_bytes()).expect("blob");
        sub.insert(name, blob, 0o100644).expect("insert");
    }
    let sub_id = sub.write().expect("write");
    let mut top = repo.treebuilder(Some(&base)).expect("tb");
    top.insert("rollouts", sub_id, 0o040000).expect("insert");
    let tree = repo.find_tree(top.write().expect("write")).expect("tree");
    let sig = Signature::now("Bench", "bench@example.com").expect("sig");
    repo.commit(
        Some("refs/heads/main"),
        &sig,
        &sig,
        message,
        &tree,
        &[&parent],
    )
    .expect("commit");
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn emulator(dir: &Path) -> (Arc<EmulatorHandle>, PathBuf) {
    let e = kube_emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator");
    let kc = dir.join("kubeconfig");
    std::fs::write(&kc, e.kubeconfig_yaml()).expect("kubeconfig");
    (Arc::new(e), kc)
}

fn history_len(e: &EmulatorHandle, ns: &str, name: &str) -> usize {
    e.history("networking.istio.io/v1", "VirtualService", Some(ns), name)
        .len()
}

async fn webhook_latency() {
    let dir = tempfile::tempdir().expect("tmp");
    let (e, kc) = emulator(dir.path()).await;
    let repos = remote::seed(dir.path(), &[("README.md", "bench\n".to_owned())]).expect("seed");
    let (_d, port) = start_daemon(
        dir.path(),
        &repos.url(),
        &kc,
        &format!("http://127.0.0.1:{}", free_port()),
        "1h",
    );
    while http_get(port, "/healthz").is_empty() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut samples = Vec::new();
    for i in 0..20 {
        let (ns, name) = ("bench".to_owned(), format!("svc-{i}"));
        e.apply_manifest(vs(&ns, &name), &ns).expect("vs");
        e.apply_manifest(dr(&ns, &name), &ns).expect("dr");
        let before = history_len(&e, &ns, &name);
        push(
            &repos.remote,
            &[(format!("{name}.yaml"), plan(&ns, &name, "10s", false))],
            "add plan",
        );
        let t0 = Instant::now();
        http_post_webhook(port);
        while history_len(&e, &ns, &name) == before && t0.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        samples.push(t0.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    samples.sort_by(f64::total_cmp);
    println!(
        "webhook -> first VirtualService patch: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (n={})",
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        samples.last().copied().unwrap_or(f64::NAN),
        samples.len()
    );
}

async fn many_rollouts(n: usize) {
    let dir = tempfile::tempdir().expect("tmp");
    let (e, kc) = emulator(dir.path()).await;
    let prom = prometheus::start(&dir.path().join("prometheus"), &[]).expect("prometheus");
    let mut files = Vec::new();
    for i in 0..n {
        let ns = format!("team-{}", i % 50);
        let name = format!("svc-{i}");
        e.apply_manifest(vs(&ns, &name), &ns).expect("vs");
        e.apply_manifest(dr(&ns, &name), &ns).expect("dr");
        files.push((
            format!("rollouts/{name}.yaml"),
            plan(&ns, &name, "10s", true),
        ));
    }
    let refs: Vec<(&str, String)> = files.iter().map(|(p, c)| (p.as_str(), c.clone())).collect();
    let repos = remote::seed(dir.path(), &refs).expect("seed");
    let started = Instant::now();
    let (d, port) = start_daemon(dir.path(), &repos.url(), &kc, &prom.url(), "30s");
    let pid = d.0.id();
    // Wait until every rollout has moved its first weight.
    loop {
        let weights = metric(port, "tidegate_rollout_canary_weight");
        if weights >= (n * 10) as f64 || started.elapsed() > Duration::from_secs(600) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "{n} rollouts: all at their first weight after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Steady state: past the first Git poll (30 s) after the start, which fetches the status
    // commits of the 1,000 first transitions once (over file:// libgit2 packs them in-process).
    tokio::time::sleep(Duration::from_secs(45)).await;
    let (cpu0, _) = usage(pid);
    let q0 = metric(port, "tidegate_prometheus_query_duration_seconds_count");
    let p0 = metric(port, "tidegate_git_pushes_total");
    let t0 = Instant::now();
    let mut rss_max = 0.0f64;
    while t0.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss_max = rss_max.max(usage(pid).1);
    }
    let secs = t0.elapsed().as_secs_f64();
    let (cpu1, rss) = usage(pid);
    let q1 = metric(port, "tidegate_prometheus_query_duration_seconds_count");
    let p1 = metric(port, "tidegate_git_pushes_total");
    println!(
        "{n} rollouts at a 10 s interval: CPU {:.1} % of one core, RSS {:.1} MiB (max {:.1}), {:.1} Prometheus queries per 10 s round, {:.2} pushes/s",
        (cpu1 - cpu0) / secs * 100.0,
        rss,
        rss_max,
        (q1 - q0) / (secs / 10.0),
        (p1 - p0) / secs
    );
}

async fn idle_rss() {
    let dir = tempfile::tempdir().expect("tmp");
    let (_e, kc) = emulator(dir.path()).await;
    let repos = remote::seed(dir.path(), &[("README.md", "idle\n".to_owned())]).expect("seed");
    let (d, port) = start_daemon(
        dir.path(),
        &repos.url(),
        &kc,
        &format!("http://127.0.0.1:{}", free_port()),
        "5s",
    );
    while http_get(port, "/healthz").is_empty() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(15)).await;
    let pid = d.0.id();
    // Where the resident pages are: the heap and stacks (anonymous) or the executable's own
    // mapped pages (file).
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| {
        rollup
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    println!(
        "idle daemon (no plans): RSS {:.1} MiB (anonymous {:.1} MiB, file-backed {:.1} MiB), {} threads",
        usage(pid).1,
        field("Anonymous:"),
        field("Rss:") - field("Anonymous:"),
        std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count())
    );
}

async fn breach_to_rollback() {
    let dir = tempfile::tempdir().expect("tmp");
    let (e, kc) = emulator(dir.path()).await;
    let (ns, name) = ("shop", "cart");
    e.apply_manifest(vs(ns, name), ns).expect("vs");
    e.apply_manifest(dr(ns, name), ns).expect("dr");
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let reader = e.clone();
    let sim = traffic::start(
        traffic::SimConfig {
            namespace: ns.into(),
            service: name.into(),
            virtual_service: name.into(),
            stable_subset: "v1".into(),
            canary_subset: "v2".into(),
            versions: [
                ("v1".to_owned(), "v1".to_owned()),
                ("v2".to_owned(), "v2".to_owned()),
            ]
            .into(),
            rps: 100.0,
            header_share: 0.0,
        },
        Arc::new(move || reader.get("networking.istio.io/v1", "VirtualService", Some(ns), name)),
        stop_rx,
    )
    .await
    .expect("traffic");
    let prom = prometheus::start(
        &dir.path().join("prometheus"),
        &[sim.metrics_addr.to_string()],
    )
    .expect("prometheus");
    let text = plan(ns, name, "5s", true).replace("setWeight: 10", "setWeight: 30");
    let repos = remote::seed(dir.path(), &[("rollouts/cart.yaml", text)]).expect("seed");
    let (_d, _port) = start_daemon(dir.path(), &repos.url(), &kc, &prom.url(), "2s");
    let weight = |e: &EmulatorHandle| {
        e.get("networking.istio.io/v1", "VirtualService", Some(ns), name)
            .and_then(|v| {
                v.pointer("/spec/http/0/route/1/weight")
                    .and_then(Value::as_u64)
            })
    };
    while weight(&e) != Some(30) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(12)).await;
    sim.canary.behaviour.set(0.5, 5);
    let broke = Instant::now();
    let client = reqwest::Client::new();
    let q = "sum(rate(istio_requests_total{destination_version=\"v2\",response_code=~\"5..\"}[5s])) / sum(rate(istio_requests_total{destination_version=\"v2\"}[5s]))".to_string();
    let mut visible: Option<Instant> = None;
    let mut rolled: Option<Instant> = None;
    while broke.elapsed() < Duration::from_secs(60) && rolled.is_none() {
        if visible.is_none() {
            let r: Value = client
                .get(format!("{}/api/v1/query", prom.url()))
                .query(&[("query", q.as_str())])
                .send()
                .await
                .expect("query")
                .json()
                .await
                .expect("json");
            let v = r
                .pointer("/data/result/0/value/1")
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<f64>().ok());
            if v.is_some_and(|v| v > 0.01) {
                visible = Some(Instant::now());
            }
        }
        if weight(&e) == Some(0) {
            rolled = Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    match (visible, rolled) {
        (Some(v), Some(r)) => println!(
            "breach visible in Prometheus -> rolled back: {:.2} s (interval 5 s, failureLimit 1); errors injected -> visible {:.2} s",
            r.saturating_duration_since(v).as_secs_f64(),
            v.duration_since(broke).as_secs_f64()
        ),
        other => println!("breach -> rollback: not observed within 60 s ({other:?})"),
    }
    let _ = stop.send(true);
}

fn main() {
    tidegate::notify::ensure_crypto_provider();
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test --all-targets` runs benches without `--bench`: the measurement takes minutes
        // and loads the machine, so it only runs under `cargo bench --bench daemon`.
        println!("daemon benchmark: run it with `cargo bench --bench daemon`");
        return;
    }
    let n: usize = std::env::var("TIDEGATE_BENCH_ROLLOUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("rt");
    // TIDEGATE_BENCH_ONLY=idle,webhook,breach,many picks scenarios (default: all).
    let only = std::env::var("TIDEGATE_BENCH_ONLY").unwrap_or_default();
    let run = |name: &str| only.is_empty() || only.split(',').any(|s| s.trim() == name);
    rt.block_on(async {
        if run("idle") {
            idle_rss().await;
        }
        if run("webhook") {
            webhook_latency().await;
        }
        if run("breach") {
            breach_to_rollback().await;
        }
        if run("many") {
            many_rollouts(n).await;
        }
    });
}
