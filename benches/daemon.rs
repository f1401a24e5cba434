//! The daemon's targets, measured (`cargo bench --bench daemon`; results go to
//! docs/benchmarks.md by hand):
//!
//! 1. push + webhook → first VirtualService patch latency (p50/p99 over 20 new plans);
//! 2. many simultaneous rollouts (`TIDEGATE_BENCH_ROLLOUTS`, a comma-separated list, default
//!    1,000) at a 10 s interval, for this build and, when `TIDEGATE_BENCH_BASELINE` names
//!    another `tidegate` binary (say, one built from an older commit), for that one in the same
//!    run: the start-up (time until every rollout holds its first weight, the daemon's CPU and
//!    RSS, the emulator's CPU, Kubernetes API requests by verb), then the steady state
//!    (`TIDEGATE_BENCH_STEADY_SECS`, default 120; 0 skips it): the daemon's CPU-seconds per 100
//!    analysis rounds, RSS, API requests per round by verb from the emulator's request log,
//!    Prometheus queries per round; then 20 edits of managed VirtualServices by someone else →
//!    the rollout shown `Paused` (p50/p99);
//! 3. idle RSS (no plans);
//! 4. metric breach visible in Prometheus → rolled back (lab traffic, failureLimit 1, 5 s
//!    interval).
//!
//! Everything is real: the daemon is the release `tidegate` binary in its own process, Git is a
//! file:// remote, Kubernetes is the emulator (in this process), Prometheus is the Debian binary.
//! `TIDEGATE_BENCH_ONLY=idle,webhook,breach,many` picks scenarios.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use git2::{Repository, Signature};
use serde_json::{Value, json};
use tidegate::lab::kube_emulator::{self, EmulatorConfig, EmulatorHandle, Verb};
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

/// The Service behind the host (preflight checks that every destination host exists).
fn svc(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
      "metadata": {"name": name, "namespace": ns},
      "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 8080}]}})
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
    bin: &Path,
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
    let child = Command::new(bin)
        .args(["run", "--config"])
        .arg(&path)
        .env("TIDEGATE_LOG", "warn")
        // As the Dockerfile and the Deployment run it.
        .env("MALLOC_ARENA_MAX", "2")
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

/// Where a process's resident pages are, in MiB: the heap and stacks (anonymous), the
/// executable's own mapped pages (file-backed).
fn resident(pid: u32) -> (f64, f64) {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| {
        rollup
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("Anonymous:"), field("Rss:") - field("Anonymous:"))
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
        &binary(),
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
        e.apply_manifest(svc(&ns, &name), &ns).expect("svc");
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

/// A daemon binary to measure: this build, or the baseline (`TIDEGATE_BENCH_BASELINE`).
struct Daemon {
    name: String,
    path: PathBuf,
}

fn daemons() -> Vec<Daemon> {
    let path = binary();
    let name = match std::env::var_os("TIDEGATE_BENCH_BINARY") {
        Some(_) => path.file_name().map_or_else(
            || "TIDEGATE_BENCH_BINARY".into(),
            |f| f.to_string_lossy().into_owned(),
        ),
        None => "this build".into(),
    };
    let mut out = vec![Daemon { name, path }];
    if let Some(path) = std::env::var_os("TIDEGATE_BENCH_BASELINE") {
        out.push(Daemon {
            name: "baseline".into(),
            path: PathBuf::from(path),
        });
    }
    out
}

/// The lab of the many-rollouts scenario: `n` rollouts in 50 namespaces, each with its
/// VirtualService and DestinationRule, plans in Git, Prometheus without targets (every check
/// inconclusive, so no weight changes after the first).
struct Lab {
    // Dropped in this order: Prometheus stops before its folder goes.
    prometheus: prometheus::PrometheusProcess,
    emulator: EmulatorHandle,
    kubeconfig: PathBuf,
    git_url: String,
    dir: tempfile::TempDir,
}

async fn lab(n: usize) -> Lab {
    let dir = tempfile::tempdir().expect("tmp");
    let config = EmulatorConfig {
        // 1,000s of objects and first writes: keep watches from falling off the event log.
        event_log_capacity: 100_000,
        ..EmulatorConfig::default()
    };
    let e = kube_emulator::start(config).await.expect("emulator");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, e.kubeconfig_yaml()).expect("kubeconfig");
    let prom = prometheus::start(&dir.path().join("prometheus"), &[]).expect("prometheus");
    let mut files = Vec::new();
    for i in 0..n {
        let (ns, name) = rollout(i);
        e.apply_manifest(vs(&ns, &name), &ns).expect("vs");
        e.apply_manifest(dr(&ns, &name), &ns).expect("dr");
        e.apply_manifest(svc(&ns, &name), &ns).expect("svc");
        files.push((
            format!("rollouts/{name}.yaml"),
            plan(&ns, &name, "10s", true),
        ));
    }
    let refs: Vec<(&str, String)> = files.iter().map(|(p, c)| (p.as_str(), c.clone())).collect();
    let repos = remote::seed(dir.path(), &refs).expect("seed");
    Lab {
        git_url: repos.url(),
        dir,
        emulator: e,
        kubeconfig,
        prometheus: prom,
    }
}

fn rollout(i: usize) -> (String, String) {
    (format!("team-{}", i % 50), format!("svc-{i}"))
}

fn vs_def(s: &kube_emulator::Store) -> kube_emulator::ResourceDef {
    s.def_for("networking.istio.io/v1", "VirtualService")
        .cloned()
        .expect("the emulator serves VirtualServices")
}

/// How many of the `n` rollouts' VirtualServices hold the plans' first weight (10 % to the
/// canary). Looked up in place: polling must not cost the emulator a copy of every object.
fn at_first_weight(e: &EmulatorHandle, n: usize) -> usize {
    e.with_store(|s| {
        let def = vs_def(s);
        (0..n)
            .filter(|i| {
                let (ns, name) = rollout(*i);
                let key = kube_emulator::Store::key_for(&def, Some(&ns), &name);
                s.get_raw(&key)
                    .and_then(|v| v.pointer("/spec/http/0/route/1/weight"))
                    .and_then(Value::as_u64)
                    == Some(10)
            })
            .count()
    })
}

/// Someone else moves the weights of a managed VirtualService (what a `kubectl edit` does).
fn edit_by_someone_else(e: &EmulatorHandle, ns: &str, name: &str) {
    e.with_store(|s| {
        let def = vs_def(s);
        s.patch_with(&def, "v1", Some(ns), name, |doc| {
            doc["spec"]["http"][0]["route"][0]["weight"] = json!(70);
            doc["spec"]["http"][0]["route"][1]["weight"] = json!(30);
            Ok(())
        })
    })
    .expect("edit");
}

/// CPU seconds (utime + stime) of this process: the emulator, which runs in it.
fn own_cpu() -> f64 {
    usage(std::process::id()).0
}

/// Requests served so far by verb and resource (`create events`, `patch virtualservices`).
type Counts = BTreeMap<(Verb, String), usize>;

fn counts(e: &EmulatorHandle) -> Counts {
    let mut out = Counts::new();
    for r in e.faults().requests() {
        let segs: Vec<&str> = r.path.split('/').filter(|s| !s.is_empty()).collect();
        let rest = match segs.as_slice() {
            ["api", _, rest @ ..] | ["apis", _, _, rest @ ..] => rest,
            _ => &[][..],
        };
        let resource = match rest {
            ["namespaces", _, plural, ..] => plural,
            [plural, ..] => plural,
            [] => "",
        };
        *out.entry((r.verb(), resource.to_owned())).or_insert(0) += 1;
    }
    out
}

fn diff(a: &Counts, b: &Counts) -> Counts {
    b.iter()
        .map(|(k, n)| (k.clone(), n - a.get(k).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// `list 151, watch 151, patch 1000` (by verb) or, `detailed`, by verb and resource.
fn verbs(counts: &Counts, per: f64, detailed: bool) -> String {
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    for ((verb, resource), n) in counts {
        let key = if detailed && !resource.is_empty() {
            format!("{} {resource}", verb.as_str())
        } else {
            verb.as_str().to_owned()
        };
        if !by.contains_key(&key) {
            order.push(key.clone());
        }
        *by.entry(key).or_insert(0) += n;
    }
    if order.is_empty() {
        return "none".into();
    }
    order
        .iter()
        .map(|k| format!("{k} {}", fmt_num(by[k] as f64 / per)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

/// From the daemon's start until every rollout holds its first weight.
struct Startup {
    secs: f64,
    cpu_s: f64,
    rss_mib: f64,
    emulator_cpu_s: f64,
    requests: Counts,
}

async fn startup(lab: &Lab, n: usize, pid: u32, started: Instant, cpu0: f64) -> Startup {
    let e = &lab.emulator;
    loop {
        let done = at_first_weight(e, n);
        if done == n {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "only {done} of {n} rollouts reached their first weight in 15 min (see {})",
            lab.dir.path().join("daemon.log").display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let (cpu, rss_mib) = usage(pid);
    Startup {
        secs,
        cpu_s: cpu,
        rss_mib,
        emulator_cpu_s: own_cpu() - cpu0,
        requests: counts(e),
    }
}

/// The steady state: analysis rounds with no weight change.
struct Steady {
    rounds: f64,
    cpu_s: f64,
    rss_max: f64,
    /// Anonymous and file-backed MiB at the end.
    resident: (f64, f64),
    requests: Counts,
    queries: f64,
}

async fn steady(lab: &Lab, pid: u32, port: u16, secs: u64) -> Steady {
    let e = &lab.emulator;
    let (cpu0, _) = usage(pid);
    let r0 = counts(e);
    let q0 = metric(port, "tidegate_prometheus_query_duration_seconds_count");
    let t0 = Instant::now();
    let mut rss_max = 0.0f64;
    while t0.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss_max = rss_max.max(usage(pid).1);
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let (cpu1, _) = usage(pid);
    let q1 = metric(port, "tidegate_prometheus_query_duration_seconds_count");
    Steady {
        rounds: elapsed / 10.0,
        cpu_s: cpu1 - cpu0,
        rss_max,
        resident: resident(pid),
        requests: diff(&r0, &counts(e)),
        queries: q1 - q0,
    }
}

async fn phase(client: &reqwest::Client, port: u16, ns: &str, name: &str) -> String {
    let url = format!("http://127.0.0.1:{port}/api/v1/rollouts/{ns}/{name}");
    let Ok(resp) = client.get(url).send().await else {
        return String::new();
    };
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    body["phase"].as_str().unwrap_or("").to_owned()
}

/// 20 edits by someone else, each of another rollout: seconds from the edit until the
/// daemon's API shows the rollout `Paused`.
async fn drift(lab: &Lab, port: u16, n: usize) -> Vec<f64> {
    let client = reqwest::Client::new();
    let mut samples = Vec::new();
    for i in 0..20.min(n) {
        let (ns, name) = rollout(i);
        assert_eq!(phase(&client, port, &ns, &name).await, "Progressing");
        // Edits land at random moments relative to the daemon's timers.
        tokio::time::sleep(Duration::from_millis(fastrand::u64(200..1200))).await;
        edit_by_someone_else(&lab.emulator, &ns, &name);
        let t0 = Instant::now();
        while phase(&client, port, &ns, &name).await != "Paused" {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "{ns}/{name}: drift not reported within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        samples.push(t0.elapsed().as_secs_f64());
    }
    samples.sort_by(f64::total_cmp);
    samples
}

/// One daemon against `n` rollouts.
struct Run {
    daemon: String,
    n: usize,
    startup: Startup,
    steady: Option<Steady>,
    drift: Vec<f64>,
}

async fn many_rollouts(n: usize, daemon: &Daemon, steady_secs: u64) -> Run {
    let lab = lab(n).await;
    let cpu0 = own_cpu();
    let started = Instant::now();
    let (d, port) = start_daemon(
        &daemon.path,
        lab.dir.path(),
        &lab.git_url,
        &lab.kubeconfig,
        &lab.prometheus.url(),
        "30s",
    );
    let pid = d.0.id();
    let startup = startup(&lab, n, pid, started, cpu0).await;
    println!(
        "{} at {n} rollouts: all at their first weight after {:.1} s; daemon {:.1} CPU-s ({:.0} % of one core), RSS {:.1} MiB; emulator {:.1} CPU-s; API requests: {}",
        daemon.name,
        startup.secs,
        startup.cpu_s,
        startup.cpu_s / startup.secs * 100.0,
        startup.rss_mib,
        startup.emulator_cpu_s,
        verbs(&startup.requests, 1.0, true)
    );
    let mut run = Run {
        daemon: daemon.name.clone(),
        n,
        startup,
        steady: None,
        drift: Vec::new(),
    };
    if steady_secs == 0 {
        drop(d);
        lab.emulator.shutdown().await;
        return run;
    }
    // Steady state: past the first Git poll (30 s) after the start, which fetches the status
    // commits of the first transitions once (over file:// libgit2 packs them in-process).
    tokio::time::sleep(Duration::from_secs(45)).await;
    let st = steady(&lab, pid, port, steady_secs).await;
    println!(
        "{} at {n} rollouts, 10 s interval, {:.0} rounds: {:.2} CPU-s per 100 rounds ({:.2} % of one core), RSS max {:.1} MiB (at the end anonymous {:.1}, file-backed {:.1}), API requests per round: {}, {:.1} Prometheus queries per round",
        daemon.name,
        st.rounds,
        st.cpu_s / st.rounds * 100.0,
        st.cpu_s / (st.rounds * 10.0) * 100.0,
        st.rss_max,
        st.resident.0,
        st.resident.1,
        verbs(&st.requests, st.rounds, true),
        st.queries / st.rounds
    );
    run.steady = Some(st);
    run.drift = drift(&lab, port, n).await;
    drop(d);
    lab.emulator.shutdown().await;
    println!(
        "{} at {n} rollouts: edit by someone else -> Paused: p50 {:.2} s, p99 {:.2} s, max {:.2} s (n={})",
        daemon.name,
        percentile(&run.drift, 0.5),
        percentile(&run.drift, 0.99),
        run.drift.last().copied().unwrap_or(f64::NAN),
        run.drift.len()
    );
    run
}

/// The runs as the tables of docs/benchmarks.md.
fn tables(runs: &[Run]) {
    println!(
        "\n| daemon | rollouts | all at first weight | daemon CPU (start-up) | RSS | emulator CPU | API requests (start-up) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for r in runs {
        let s = &r.startup;
        println!(
            "| {} | {} | {:.1} s | {:.1} s ({:.0} %) | {:.1} MiB | {:.1} s | {} |",
            r.daemon,
            r.n,
            s.secs,
            s.cpu_s,
            s.cpu_s / s.secs * 100.0,
            s.rss_mib,
            s.emulator_cpu_s,
            verbs(&s.requests, 1.0, false)
        );
    }
    let with_steady: Vec<(&Run, &Steady)> = runs
        .iter()
        .filter_map(|r| Some((r, r.steady.as_ref()?)))
        .collect();
    if with_steady.is_empty() {
        return;
    }
    println!(
        "\n| daemon | rollouts | rounds | CPU-s per 100 rounds | % of one core | RSS max | API requests per round | drift → Paused p50 / p99 / max |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (r, st) in &with_steady {
        println!(
            "| {} | {} | {:.0} | {:.2} | {:.2} % | {:.1} MiB | {} | {:.2} / {:.2} / {:.2} s |",
            r.daemon,
            r.n,
            st.rounds,
            st.cpu_s / st.rounds * 100.0,
            st.cpu_s / (st.rounds * 10.0) * 100.0,
            st.rss_max,
            verbs(&st.requests, st.rounds, false),
            percentile(&r.drift, 0.5),
            percentile(&r.drift, 0.99),
            r.drift.last().copied().unwrap_or(f64::NAN)
        );
    }
    ratios(&with_steady);
}

/// CPU per round of this build against the baseline, measured in the same run.
fn ratios(runs: &[(&Run, &Steady)]) {
    let per_round = |st: &Steady| st.cpu_s / st.rounds;
    for (r, st) in runs.iter().filter(|(r, _)| r.daemon != "baseline") {
        if let Some((_, base)) = runs
            .iter()
            .find(|(b, _)| b.daemon == "baseline" && b.n == r.n)
        {
            println!(
                "\nat {} rollouts {} uses {:.2}x the baseline's CPU per round",
                r.n,
                r.daemon,
                per_round(st) / per_round(base)
            );
        }
    }
}

async fn idle_rss() {
    let dir = tempfile::tempdir().expect("tmp");
    let (_e, kc) = emulator(dir.path()).await;
    let repos = remote::seed(dir.path(), &[("README.md", "idle\n".to_owned())]).expect("seed");
    let (d, port) = start_daemon(
        &binary(),
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
    let (anon, file) = resident(pid);
    println!(
        "idle daemon (no plans): RSS {:.1} MiB (anonymous {anon:.1} MiB, file-backed {file:.1} MiB), {} threads",
        usage(pid).1,
        std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count())
    );
}

async fn breach_to_rollback() {
    let dir = tempfile::tempdir().expect("tmp");
    let (e, kc) = emulator(dir.path()).await;
    let (ns, name) = ("shop", "cart");
    e.apply_manifest(vs(ns, name), ns).expect("vs");
    e.apply_manifest(dr(ns, name), ns).expect("dr");
    e.apply_manifest(svc(ns, name), ns).expect("svc");
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
            by_host: false,
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
    let (_d, _port) = start_daemon(&binary(), dir.path(), &repos.url(), &kc, &prom.url(), "2s");
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
    let sizes: Vec<usize> = std::env::var("TIDEGATE_BENCH_ROLLOUTS")
        .unwrap_or_else(|_| "1000".into())
        .split(',')
        .map(|v| v.trim().parse().expect("TIDEGATE_BENCH_ROLLOUTS: numbers"))
        .collect();
    // Seconds of steady state measured after start-up; 0 measures start-up only.
    let steady_secs: u64 = std::env::var("TIDEGATE_BENCH_STEADY_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
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
            let mut runs = Vec::new();
            for &n in &sizes {
                for daemon in &daemons() {
                    runs.push(many_rollouts(n, daemon, steady_secs).await);
                }
            }
            tables(&runs);
        }
    });
}
