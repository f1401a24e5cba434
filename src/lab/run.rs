//! `tidegate lab`: the whole loop on one machine. Starts the Kubernetes API emulator with the
//! orders-svc VirtualService and DestinationRule, the traffic simulator, a real Prometheus, a
//! local Git remote seeded with a plan (and a clone for the user), and the daemon itself as a
//! child process. Interactive by default; `--scenario` runs unattended, prints a timeline and
//! says whether the outcome was the expected one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::watch;

use super::kube_emulator::{self, EmulatorConfig, EmulatorHandle};
use super::{prometheus, remote, traffic};
use crate::plan::Split;

/// The unattended runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// A healthy canary is promoted.
    Healthy,
    /// A canary with 5 % errors is rolled back.
    Faulty,
    /// The plan pauses; a pushed `resume` commit (announced by webhook) lets it finish.
    PauseResume,
    /// A pushed `abort` commit (found by polling) sends all traffic back to stable.
    Abort,
    /// The daemon is killed with SIGKILL mid-rollout and restarted; the rollout still succeeds.
    CrashRestart,
    /// v1 → v2 promoted; v2 → v3 with 10 % errors rolled back; v3 fixed and retried → promoted;
    /// v3 → v4 promoted; the route ends sending to v4 alone.
    Releases,
    /// A YAML typo at 10 % holds (still analysed); the fix continues to 50 %; a second typo holds
    /// again and the canary, now failing, is rolled back anyway.
    PlanTypo,
    /// The canary's subset is deleted from the DestinationRule at 10 %: rolled back within two
    /// analysis intervals.
    MeshBreak,
}

impl Scenario {
    fn expected(self) -> &'static str {
        match self {
            Scenario::Healthy
            | Scenario::PauseResume
            | Scenario::CrashRestart
            | Scenario::Releases => "Succeeded",
            Scenario::Faulty | Scenario::PlanTypo | Scenario::MeshBreak => "RolledBack",
            Scenario::Abort => "Aborted",
        }
    }

    /// The canary subset (or host) of the last release.
    fn final_canary(self, split: Split) -> &'static str {
        match (self, split) {
            (_, Split::Host) => HOST_CANARY,
            (Scenario::Releases, _) => "v4",
            _ => "v2",
        }
    }

    /// Whether the scenario runs the short release plan (`release_plan`) and its stages.
    fn staged(self) -> bool {
        matches!(
            self,
            Scenario::Releases | Scenario::PlanTypo | Scenario::MeshBreak
        )
    }
}

/// The file in the lab folder holding the traffic simulator's URL (for `tidegate lab set`).
pub const TRAFFIC_URL_FILE: &str = "traffic.url";

/// Analysis interval of [`release_plan`].
pub const RELEASE_INTERVAL: Duration = Duration::from_secs(3);

/// The short plan of the staged scenarios: `stable` → `canary` at 10 % and 50 %, each analysed
/// for 6 s in 3 s rounds, then promoted; one failed round rolls back.
pub fn release_plan(stable: &str, canary: &str) -> String {
    format!(
        "# The lab's rollout: {stable} → {canary}.\napiVersion: tidegate.dev/v1alpha1\nkind: Rollout\nmetadata:\n  name: orders-svc\n  namespace: production\nspec:\n  service: orders-svc\n  routes: [primary]\n  stable: {stable}\n  canary: {canary}\n  steps:\n    - setWeight: 10\n    - analyze: 6s\n    - setWeight: 50\n    - analyze: 6s\n    - setWeight: 100\n  analysis:\n    interval: 3s\n    failureLimit: 1\n    minRequests: 5\n    metrics:\n      - {{name: success-rate, template: istio-success-rate, compareTo: stable, test: counts, tolerance: 1}}\n      - {{name: success-floor, template: istio-success-rate, min: 95}}\n"
    )
}

/// [`release_plan`] with a YAML indentation error.
pub fn release_plan_typo(stable: &str, canary: &str) -> String {
    release_plan(stable, canary).replace("  stable:", " stable:")
}

/// Lab options.
#[derive(Debug, Clone)]
pub struct LabOptions {
    /// Working folder (kept afterwards); a new temporary one when `None`.
    pub dir: Option<PathBuf>,
    pub scenario: Option<Scenario>,
    /// The `tidegate` binary to run as the daemon.
    pub daemon_binary: PathBuf,
    /// Requests per second of simulated traffic.
    pub rps: f64,
    /// Canary error rate (0..1); the faulty scenario uses at least 0.05.
    pub canary_error_rate: f64,
    /// Give up on a scenario after this long.
    pub timeout: Duration,
    /// Print the timeline as it happens.
    pub verbose: bool,
    /// For crash-restart: kill once the rollout reached this step (default 2)...
    pub kill_at_step: Option<usize>,
    /// ...and this much later (random points inside a step).
    pub kill_delay: Duration,
    /// How the lab's plan splits: subsets v1/v2 of one Service, or the Services
    /// orders-svc-primary/orders-svc-canary (the staged scenarios need subsets).
    pub split: Split,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            dir: None,
            scenario: None,
            daemon_binary: PathBuf::from("tidegate"),
            rps: 40.0,
            canary_error_rate: 0.0,
            timeout: Duration::from_secs(180),
            verbose: true,
            kill_at_step: None,
            kill_delay: Duration::ZERO,
            split: Split::Subset,
        }
    }
}

/// Errors of the lab itself (not of the scenario's outcome).
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("failed to prepare the lab folder {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Emulator(#[from] kube_emulator::EmulatorError),
    #[error(transparent)]
    Prometheus(#[from] prometheus::PrometheusError),
    #[error(transparent)]
    Remote(#[from] remote::RemoteError),
    #[error(transparent)]
    Traffic(#[from] traffic::TrafficError),
    #[error("failed to start the daemon {binary}: {source}")]
    Daemon {
        binary: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to run `tidegate {args}`: {message}")]
    Control { args: String, message: String },
    #[error("{0}")]
    Unsupported(String),
}

/// What a scenario ended with.
#[derive(Debug, Clone)]
pub struct LabOutcome {
    pub scenario: Option<Scenario>,
    pub final_phase: String,
    pub final_weight: u8,
    pub timeline: Vec<String>,
    /// Expectations that did not hold; empty means the expected outcome.
    pub problems: Vec<String>,
    pub dir: PathBuf,
    /// Canary weights of the managed route, in the emulator's object history.
    pub weights_seen: Vec<u8>,
    pub status_commits: usize,
}

impl LabOutcome {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

const NAMESPACE: &str = "production";
const NAME: &str = "orders-svc";
const MANIFESTS: &str = include_str!("../../examples/orders-svc/manifests/orders-svc.yaml");
/// The same service split by host: a VirtualService to orders-svc-primary and two Services.
const HOST_MANIFESTS: &str = include_str!("hosts.yaml");
/// The stable and canary Services of the host-level lab.
const HOST_STABLE: &str = "orders-svc-primary";
const HOST_CANARY: &str = "orders-svc-canary";

/// The lab's plan: the reference rollout with intervals short enough to watch; split by subset
/// or by host.
pub fn lab_plan(with_pause: bool, split: Split) -> String {
    let pause = if with_pause {
        "    - pause: {}              # push `Tidegate: resume production/orders-svc`\n"
    } else {
        ""
    };
    let plan = LAB_PLAN.replace("    # PAUSE\n", pause);
    match split {
        Split::Subset => plan,
        Split::Host => plan.replace(
            "  stable: v1\n  canary: v2\n",
            &format!("  stable: {{host: {HOST_STABLE}}}\n  canary: {{host: {HOST_CANARY}}}\n"),
        ),
    }
}

const LAB_PLAN: &str = r#"# The lab's rollout: edit, commit and push to see tidegate act.
apiVersion: tidegate.dev/v1alpha1
kind: Rollout
metadata:
  name: orders-svc
  namespace: production
spec:
  service: orders-svc
  routes: [primary]
  stable: v1
  canary: v2
  steps:
    - setHeaderRoute: {headers: {x-canary: {exact: "true"}}}
    - setWeight: 10
    # PAUSE
    - analyze: 10s
    - setWeight: 50
    - analyze: 10s
    - setWeight: 100
  analysis:
    interval: 5s
    failureLimit: 2
    minRequests: 10
    metrics:
      # canary vs stable: 5xx counts pooled over the step, per-scrape median latency
      - {name: success-rate, template: istio-success-rate, compareTo: stable, test: counts, tolerance: 1}
      - {name: latency, template: istio-latency-p50, compareTo: stable, test: mann-whitney, tolerance: 10%, scrapeInterval: 1s}
      # absolute guard rails
      - {name: success-floor, template: istio-success-rate, min: 95}
      - {name: latency-ceiling, template: istio-latency-p99, max: 500ms}
"#;

struct Daemon {
    child: Option<Child>,
    binary: PathBuf,
    config: PathBuf,
    log: PathBuf,
}

impl Daemon {
    fn start(&mut self) -> Result<(), LabError> {
        let io = |source| LabError::Io {
            path: self.log.display().to_string(),
            source,
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(io)?;
        let log2 = log.try_clone().map_err(|source| LabError::Io {
            path: self.log.display().to_string(),
            source,
        })?;
        let child = Command::new(&self.binary)
            .args(["run", "--config"])
            .arg(&self.config)
            .env("TIDEGATE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|source| LabError::Daemon {
                binary: self.binary.display().to_string(),
                source,
            })?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL: no chance to flush anything.
    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Say so once when the daemon has exited (killed, crashed, stopped by hand): the lab keeps
    /// running without it, and the user is told how to start it again.
    fn report_exit(&mut self) {
        let Some(status) = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
        else {
            return;
        };
        self.child = None;
        eprintln!(
            "\ntidegate lab: the daemon exited ({status}); nothing moves traffic until it runs \
             again. Its log: {log}\n  start it again: {bin} run --config {config}\n",
            log = self.log.display(),
            bin = self.binary.display(),
            config = self.config.display(),
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            // Ask nicely first (SIGTERM lets it flush), then make sure.
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
        }
        if let Some(mut c) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Canary weight of the managed (`primary`) route in a VirtualService; `canary` is a subset,
/// or a host for a host-level split.
fn canary_weight(vs: &Value, canary: &str) -> Option<u8> {
    let routes = vs.pointer("/spec/http")?.as_array()?;
    let primary = routes
        .iter()
        .find(|r| r.get("name").and_then(Value::as_str) == Some("primary"))?;
    let dests = primary.get("route")?.as_array()?;
    let is_canary =
        |d: &Value| d.get("destination").map(traffic::backend_of).as_deref() == Some(canary);
    if dests.len() == 1 {
        return Some(if is_canary(&dests[0]) { 100 } else { 0 });
    }
    dests
        .iter()
        .find(|d| is_canary(d))
        .and_then(|d| d.get("weight").and_then(Value::as_u64))
        .and_then(|w| u8::try_from(w).ok())
}

fn has_tidegate_route(vs: &Value) -> bool {
    vs.pointer("/spec/http")
        .and_then(Value::as_array)
        .is_some_and(|rs| {
            rs.iter().any(|r| {
                r.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| n.starts_with("tidegate"))
            })
        })
}

struct Lab {
    dir: PathBuf,
    /// The canary subset, or Service for a host-level split.
    canary: &'static str,
    emulator: Arc<EmulatorHandle>,
    repos: remote::LabRepos,
    api: String,
    prometheus: prometheus::PrometheusProcess,
    simulator: traffic::Simulator,
    daemon: Daemon,
    http: reqwest::Client,
    stop: watch::Sender<bool>,
}

/// The lab's stable and canary: subsets v1/v2, or the two Services.
fn lab_sides(split: Split) -> (&'static str, &'static str) {
    match split {
        Split::Subset => ("v1", "v2"),
        Split::Host => (HOST_STABLE, HOST_CANARY),
    }
}

/// The simulated client, routed by the emulator's live VirtualService (and, for subsets, fed
/// the live DestinationRule's subsets).
async fn start_traffic(
    opts: &LabOptions,
    emulator: &Arc<EmulatorHandle>,
    stop_rx: watch::Receiver<bool>,
) -> Result<traffic::Simulator, LabError> {
    let reader_emulator = emulator.clone();
    let read_vs: traffic::VsReader = Arc::new(move || {
        reader_emulator.get(
            "networking.istio.io/v1",
            "VirtualService",
            Some(NAMESPACE),
            NAME,
        )
    });
    let dr_emulator = emulator.clone();
    let read_dr: traffic::DrReader = Arc::new(move || {
        dr_emulator.get(
            "networking.istio.io/v1",
            "DestinationRule",
            Some(NAMESPACE),
            NAME,
        )
    });
    let (stable, canary) = lab_sides(opts.split);
    let versions: BTreeMap<String, String> = [
        (stable.to_owned(), "v1".to_owned()),
        (canary.to_owned(), "v2".to_owned()),
    ]
    .into();
    let simulator = traffic::start_with_mesh(
        traffic::SimConfig {
            namespace: NAMESPACE.into(),
            service: NAME.into(),
            virtual_service: NAME.into(),
            stable_subset: stable.into(),
            canary_subset: canary.into(),
            versions,
            by_host: opts.split == Split::Host,
            rps: opts.rps,
            header_share: 0.05,
        },
        read_vs,
        // A host-level split has no DestinationRule: the two Services are the backends.
        (opts.split == Split::Subset).then_some(read_dr),
        stop_rx,
    )
    .await?;
    Ok(simulator)
}

async fn setup(opts: &LabOptions) -> Result<Lab, LabError> {
    let dir = match &opts.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!(
            "tidegate-lab-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_millis()
        )),
    };
    let io = |source| LabError::Io {
        path: dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(io)?;

    // Kubernetes API emulator with the example VirtualService and DestinationRule.
    let emulator = kube_emulator::start(EmulatorConfig {
        namespaces: vec!["default".into(), NAMESPACE.into(), "tidegate".into()],
        ..EmulatorConfig::default()
    })
    .await?;
    let manifests = dir.join("manifests");
    std::fs::create_dir_all(&manifests).map_err(io)?;
    let text = match opts.split {
        Split::Subset => MANIFESTS,
        Split::Host => HOST_MANIFESTS,
    };
    std::fs::write(manifests.join("orders-svc.yaml"), text).map_err(io)?;
    emulator.load_paths(&[manifests], NAMESPACE)?;
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(&kubeconfig, emulator.kubeconfig_yaml()).map_err(io)?;
    let emulator = Arc::new(emulator);

    // Traffic.
    let (stop, stop_rx) = watch::channel(false);
    let simulator = start_traffic(opts, &emulator, stop_rx).await?;
    let traffic_url = format!("http://{}", simulator.metrics_addr);
    std::fs::write(dir.join(TRAFFIC_URL_FILE), &traffic_url).map_err(io)?;
    let faulty = opts.scenario == Some(Scenario::Faulty);
    let error_rate = if faulty {
        opts.canary_error_rate.max(0.05)
    } else {
        opts.canary_error_rate
    };
    simulator.canary.behaviour.set(error_rate, 5);

    // Prometheus scraping the simulator.
    let prometheus = prometheus::start(
        &dir.join("prometheus"),
        &[simulator.metrics_addr.to_string()],
    )?;

    // Git remote with the plan, and a clone for the user.
    let with_pause = opts.scenario == Some(Scenario::PauseResume);
    let repos = remote::seed(
        &dir,
        &[
            (
                PLAN_PATH,
                match opts.scenario {
                    Some(s) if s.staged() => release_plan("v1", "v2"),
                    _ => lab_plan(with_pause, opts.split),
                },
            ),
            (
                "README.md",
                "Rollout plans for the tidegate lab. Edit rollouts/, commit, push.\n".to_owned(),
            ),
        ],
    )?;

    // The daemon.
    let listen_port = prometheus::free_port().map_err(io)?;
    let config = format!(
        "namespace: tidegate\ndataDir: {data}\ngit:\n  url: {url}\n  branch: main\n  pollInterval: {poll}\n  coalesceWindow: 500ms\n  author: {{name: tidegate, email: tidegate@lab.invalid}}\nkubernetes:\n  kubeconfig: {kc}\nprometheus:\n  url: {prom}\n  timeout: 3s\n  healthInterval: 5s\nserver:\n  listen: 127.0.0.1:{listen_port}\nshutdownGrace: 5s\n",
        data = dir.join("data").display(),
        url = repos.url(),
        // Polling is slow on purpose when a scenario proves the webhook path.
        poll = if with_pause { "30s" } else { "1s" },
        kc = kubeconfig.display(),
        prom = prometheus.url(),
    );
    let config_path = dir.join("tidegate.yaml");
    std::fs::write(&config_path, config).map_err(io)?;
    let mut daemon = Daemon {
        child: None,
        binary: opts.daemon_binary.clone(),
        config: config_path,
        log: dir.join("daemon.log"),
    };
    daemon.start()?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .map_err(|e| LabError::Traffic(traffic::TrafficError::Client(e.to_string())))?;
    Ok(Lab {
        canary: lab_sides(opts.split).1,
        api: format!("http://127.0.0.1:{listen_port}"),
        dir,
        emulator,
        repos,
        prometheus,
        simulator,
        daemon,
        http,
        stop,
    })
}

/// The rollout's status from the daemon's API, when it answers.
async fn status(lab: &Lab) -> Option<Value> {
    let url = format!("{}/api/v1/rollouts/{NAMESPACE}/{NAME}", lab.api);
    let r = lab.http.get(url).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

fn control(lab: &Lab, binary: &Path, action: &str, message: &str) -> Result<(), LabError> {
    let out = Command::new(binary)
        .arg(action)
        .arg(format!("{NAMESPACE}/{NAME}"))
        .args([
            "-m",
            message,
            "--author",
            "Lab User <you@example.com>",
            "--repo",
        ])
        .arg(lab.repos.url())
        .output()
        .map_err(|e| LabError::Control {
            args: action.to_owned(),
            message: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(LabError::Control {
            args: format!("{action} {NAMESPACE}/{NAME}"),
            message: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

/// Run the lab: a scenario to its end, or interactively until Ctrl-C.
pub async fn run(opts: LabOptions) -> Result<LabOutcome, LabError> {
    // The lab's HTTP clients use rustls with the ring provider (one provider per process).
    crate::notify::ensure_crypto_provider();
    if opts.split == Split::Host
        && let Some(s) = opts.scenario.filter(|s| s.staged())
    {
        return Err(LabError::Unsupported(format!(
            "the {s:?} scenario edits DestinationRule subsets, so it runs with `--split subset` only"
        )));
    }
    let mut lab = setup(&opts).await?;
    let Some(scenario) = opts.scenario else {
        interactive(&mut lab).await;
        let _ = lab.stop.send(true);
        return Ok(LabOutcome {
            scenario: None,
            final_phase: String::new(),
            final_weight: 0,
            timeline: Vec::new(),
            problems: Vec::new(),
            dir: lab.dir.clone(),
            weights_seen: Vec::new(),
            status_commits: 0,
        });
    };
    let started = Instant::now();
    let mut timeline = Vec::new();
    let mut problems = Vec::new();
    let mut last_line = String::new();
    let mut acted = false;
    let mut killed = false;
    let mut final_phase = String::new();
    let mut final_weight = 0u8;
    let kill_at = opts.kill_at_step.unwrap_or(2);
    let stages = stages(scenario);
    let mut runner = StageRunner::default();
    let mut ended_at = None;
    let log = |timeline: &mut Vec<String>, line: String| {
        if opts.verbose {
            println!("{line}");
        }
        timeline.push(line);
    };
    log(
        &mut timeline,
        format!(
            "lab in {} (daemon pid {:?}, API {}, Prometheus {})",
            lab.dir.display(),
            lab.daemon.pid(),
            lab.api,
            lab.prometheus.url()
        ),
    );
    loop {
        if started.elapsed() > opts.timeout {
            problems.push(format!(
                "timed out after {}s in phase {final_phase}",
                opts.timeout.as_secs()
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let vs = lab.emulator.get(
            "networking.istio.io/v1",
            "VirtualService",
            Some(NAMESPACE),
            NAME,
        );
        let Some(st) = status(&lab).await else {
            continue;
        };
        let running = st
            .pointer("/release/canary")
            .and_then(Value::as_str)
            .unwrap_or(scenario.final_canary(opts.split));
        let live_weight = vs
            .as_ref()
            .and_then(|v| canary_weight(v, running))
            .unwrap_or(0);
        let phase = st
            .get("phase")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned();
        let step = st.get("step").and_then(Value::as_u64).unwrap_or(0);
        let weight = st
            .pointer("/route/canaryWeight")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let reason = st
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let line = format!("{phase} step {step} canary {weight}% (live {live_weight}%): {reason}");
        if line != last_line {
            log(
                &mut timeline,
                format!("{:>6.1}s  {line}", started.elapsed().as_secs_f64()),
            );
            last_line = line;
        }
        final_phase = phase.clone();
        final_weight = u8::try_from(weight).unwrap_or(0);
        let obs = Obs::of(&st);
        for line in runner
            .step(&stages, &obs, &lab, &opts.daemon_binary)
            .await?
        {
            log(
                &mut timeline,
                format!("{:>6.1}s  {line}", started.elapsed().as_secs_f64()),
            );
        }
        match scenario {
            Scenario::PauseResume if !acted && phase == "Paused" => {
                control(&lab, &opts.daemon_binary, "resume", "lab: looks good")?;
                // Announce the push by webhook (polling is slow in this scenario).
                let _ = lab
                    .http
                    .post(format!("{}/hooks/git", lab.api))
                    .header("X-GitHub-Event", "push")
                    .body(r#"{"ref":"refs/heads/main"}"#)
                    .send()
                    .await;
                log(
                    &mut timeline,
                    format!(
                        "{:>6.1}s  pushed `Tidegate: resume` and sent a webhook",
                        started.elapsed().as_secs_f64()
                    ),
                );
                acted = true;
            }
            Scenario::Abort if !acted && phase == "Progressing" && weight >= 10 => {
                control(&lab, &opts.daemon_binary, "abort", "lab: abort drill")?;
                log(
                    &mut timeline,
                    format!(
                        "{:>6.1}s  pushed `Tidegate: abort` (found by polling)",
                        started.elapsed().as_secs_f64()
                    ),
                );
                acted = true;
            }
            Scenario::CrashRestart
                if !killed && step as usize >= kill_at && phase == "Progressing" =>
            {
                lab.daemon.kill9();
                log(
                    &mut timeline,
                    format!(
                        "{:>6.1}s  killed the daemon with SIGKILL",
                        started.elapsed().as_secs_f64()
                    ),
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
                lab.daemon.start()?;
                log(
                    &mut timeline,
                    format!(
                        "{:>6.1}s  restarted the daemon (pid {:?})",
                        started.elapsed().as_secs_f64(),
                        lab.daemon.pid()
                    ),
                );
                killed = true;
            }
            _ => {}
        }
        if runner.finished(&stages)
            && matches!(
                phase.as_str(),
                "Succeeded" | "RolledBack" | "Aborted" | "Invalid"
            )
        {
            ended_at = Some(Instant::now());
            break;
        }
    }
    // Let the last status commit land.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Expectations.
    if final_phase != scenario.expected() {
        problems.push(format!(
            "expected {}, ended {final_phase}",
            scenario.expected()
        ));
    }
    let vs = lab.emulator.get(
        "networking.istio.io/v1",
        "VirtualService",
        Some(NAMESPACE),
        NAME,
    );
    let live = vs
        .as_ref()
        .and_then(|v| canary_weight(v, scenario.final_canary(opts.split)));
    let want_weight = if scenario.expected() == "Succeeded" {
        100
    } else {
        0
    };
    if live != Some(want_weight) {
        problems.push(format!(
            "the VirtualService sends {live:?}% to the canary, expected {want_weight}%"
        ));
    }
    if vs.as_ref().is_some_and(has_tidegate_route) {
        problems.push("tidegate's header route is still in the VirtualService".into());
    }
    let history = lab.emulator.history(
        "networking.istio.io/v1",
        "VirtualService",
        Some(NAMESPACE),
        NAME,
    );
    // The first version is the manifest as loaded (90/10); the rest are writes.
    let weights_seen: Vec<u8> = history
        .iter()
        .skip(1)
        .filter_map(|e| canary_weight(&e.object, scenario.final_canary(opts.split)))
        .collect();
    let allowed = [0u8, 10, 50, 100];
    for w in &weights_seen {
        if !allowed.contains(w) {
            problems.push(format!(
                "the emulator saw a canary weight of {w}%, which no step of the plan sets"
            ));
        }
    }
    if want_weight == 100 {
        let mut max = 0;
        for w in &weights_seen {
            if *w < max {
                problems.push(format!(
                    "the canary weight went down from {max}% to {w}% in a successful rollout"
                ));
            }
            max = max.max(*w);
        }
    }
    let messages = remote::messages(&lab.repos.remote)?;
    let status_commits = messages
        .iter()
        .filter(|m| m.contains("Tidegate-Status:"))
        .count();
    let final_trailer = format!(
        "Tidegate-Status: {NAMESPACE}/{NAME} {}",
        scenario.expected()
    );
    if !messages.iter().any(|m| m.contains(&final_trailer)) {
        problems.push(format!("no status commit carries `{final_trailer}`"));
    }
    let final_status = status(&lab).await;
    problems.extend(staged_checks(
        scenario,
        vs.as_ref(),
        final_status.as_ref(),
        &messages,
        &weights_seen,
        runner.done_at.first().zip(ended_at.as_ref()),
    ));
    if let Some(st) = final_status
        && let Some(h) = st.get("history").and_then(Value::as_array)
    {
        for pair in h.windows(2) {
            if pair[0] == pair[1] {
                problems.push(format!(
                    "duplicated transition in the status history: {}",
                    pair[0]
                ));
            }
        }
    }
    log(
        &mut timeline,
        format!(
            "{:>6.1}s  {scenario:?}: ended {final_phase} at canary {final_weight}%; {} status commits; weights seen {:?}; {}",
            started.elapsed().as_secs_f64(),
            status_commits,
            weights_seen,
            if problems.is_empty() {
                "as expected".to_owned()
            } else {
                format!("PROBLEMS: {}", problems.join("; "))
            }
        ),
    );
    let _ = lab.stop.send(true);
    Ok(LabOutcome {
        scenario: Some(scenario),
        final_phase,
        final_weight,
        timeline,
        problems,
        dir: lab.dir.clone(),
        weights_seen,
        status_commits,
    })
}

async fn interactive(lab: &mut Lab) {
    println!(
        "\ntidegate lab is running (folder {dir})\n\n\
  Plans clone   {clone}\n\
  Daemon API    {api}/api/v1/rollouts   (metrics: {api}/metrics)\n\
  Prometheus    {prom}\n\
  Kubernetes    emulator at {kube} (kubeconfig: {dir}/kubeconfig)\n\
  Daemon log    {dir}/daemon.log\n\n\
Try:\n  \
cd {clone}\n  \
tidegate status --watch --api {api}     # live progress bars\n  \
$EDITOR rollouts/orders-svc.yaml            # change the steps, or the canary\n  \
git commit -am 'Canary v2 for orders-svc' && git push\n  \
git commit --allow-empty -m 'Hold' -m 'Tidegate: pause production/orders-svc' && git push\n  \
tidegate status --repo {url}\n  \
tidegate lab set {canary} --errors 10% --latency 200ms --dir {dir}   # change the canary's behaviour\n\n\
The rollout in the seed starts right away. Ctrl-C stops everything.\n",
        canary = lab.canary,
        dir = lab.dir.display(),
        clone = lab.repos.clone.display(),
        api = lab.api,
        prom = lab.prometheus.url(),
        kube = lab.emulator.url(),
        url = lab.repos.url(),
    );
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut prometheus_gone = false;
    loop {
        tokio::select! {
            _ = &mut ctrl_c => break,
            _ = tick.tick() => {
                lab.daemon.report_exit();
                report_prometheus_exit(lab, &mut prometheus_gone);
            }
        }
    }
    println!(
        "stopping the lab ({} simulated requests sent)",
        lab.simulator
            .sent
            .load(std::sync::atomic::Ordering::Relaxed)
    );
}

/// Say once that the lab's Prometheus exited (say, killed to try an outage): the daemon's
/// checks are unreachable from now on, and the lab cannot restart it.
fn report_prometheus_exit(lab: &mut Lab, said: &mut bool) {
    if *said {
        return;
    }
    if let Some(status) = lab.prometheus.exited() {
        *said = true;
        eprintln!(
            "\ntidegate lab: Prometheus exited ({status}); the daemon's analysis is unreachable \
             from now on (rollouts hold, then roll back after unreachableLimit). Restart the lab \
             to get it back.\n"
        );
    }
}

/// What the scenario loop saw in one look at the daemon's API.
#[derive(Debug, Clone, Default)]
struct Obs {
    phase: String,
    weight: u8,
    /// The canary of the release being run.
    canary: String,
    /// A newer revision is held back (invalid, unreadable, ...).
    pending: bool,
    /// Analysis rounds evaluated.
    checks: u64,
}

impl Obs {
    fn of(st: &Value) -> Obs {
        let text = |p: &str| {
            st.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        let number = |p: &str| st.pointer(p).and_then(Value::as_u64).unwrap_or(0);
        Obs {
            phase: text("/phase"),
            weight: u8::try_from(number("/route/canaryWeight")).unwrap_or(0),
            canary: text("/release/canary"),
            pending: st.get("pending").is_some_and(|p| !p.is_null()),
            checks: number("/analysis/checks"),
        }
    }

    fn at(&self, phase: &str, canary: &str) -> bool {
        self.phase == phase && self.canary == canary
    }
}

/// Something a staged scenario does.
#[derive(Debug, Clone, Copy)]
enum Act {
    /// Push `release_plan(stable, canary)` (with a YAML typo when `typo`).
    Plan {
        stable: &'static str,
        canary: &'static str,
        typo: bool,
    },
    /// Set a subset's error rate.
    Errors(&'static str, f64),
    /// Replace the DestinationRule's subsets.
    Subsets(&'static [&'static str]),
    /// Push a control commit (`retry`, `abort`, ...).
    Control(&'static str),
    /// Let time pass (e.g. until the metrics' window no longer holds the old errors).
    Wait(Duration),
}

/// One stage: when `until(now, at_stage_start)` holds, log `what` and do `acts`.
struct Stage {
    what: &'static str,
    until: fn(&Obs, &Obs) -> bool,
    acts: Vec<Act>,
}

fn stage(what: &'static str, until: fn(&Obs, &Obs) -> bool, acts: Vec<Act>) -> Stage {
    Stage { what, until, acts }
}

fn stages(scenario: Scenario) -> Vec<Stage> {
    let plan = |stable, canary| Act::Plan {
        stable,
        canary,
        typo: false,
    };
    let typo = Act::Plan {
        stable: "v1",
        canary: "v2",
        typo: true,
    };
    match scenario {
        Scenario::Releases => vec![
            stage(
                "v1 → v2 promoted; next: v2 → v3 with 10 % errors",
                |o, _| o.at("Succeeded", "v2"),
                vec![
                    Act::Errors("v3", 0.10),
                    Act::Subsets(&["v1", "v2", "v3"]),
                    plan("v2", "v3"),
                ],
            ),
            stage(
                "v3 rolled back; fixed (errors 0) and retried",
                |o, _| o.at("RolledBack", "v3"),
                vec![
                    Act::Errors("v3", 0.0),
                    Act::Wait(RELEASE_INTERVAL * 2),
                    Act::Control("retry"),
                ],
            ),
            stage(
                "v2 → v3 promoted; next: v3 → v4",
                |o, _| o.at("Succeeded", "v3"),
                vec![Act::Subsets(&["v1", "v2", "v3", "v4"]), plan("v3", "v4")],
            ),
            stage("v3 → v4 promoted", |o, _| o.at("Succeeded", "v4"), vec![]),
        ],
        Scenario::PlanTypo => vec![
            stage(
                "canary at 10 %: a YAML typo pushed",
                |o, _| o.at("Progressing", "v2") && o.weight == 10,
                vec![typo],
            ),
            stage("the typo is held", |o, _| o.pending, vec![]),
            stage(
                "still analysed while held (2 more rounds, still 10 %); the fix pushed",
                |o, base| o.pending && o.weight == 10 && o.checks >= base.checks + 2,
                vec![plan("v1", "v2")],
            ),
            stage(
                "the fix continued to 50 %; a typo pushed again",
                |o, _| !o.pending && o.weight == 50,
                vec![typo],
            ),
            stage(
                "held again; the canary now fails (10 % errors)",
                |o, _| o.pending && o.weight == 50,
                vec![Act::Errors("v2", 0.10)],
            ),
        ],
        Scenario::MeshBreak => vec![stage(
            "canary at 10 % and analysed: subset v2 deleted from the DestinationRule",
            |o, base| o.at("Progressing", "v2") && o.weight == 10 && o.checks > base.checks,
            vec![Act::Subsets(&["v1"])],
        )],
        _ => Vec::new(),
    }
}

/// Do one act; returns what was done, for the timeline.
async fn perform(lab: &Lab, binary: &Path, act: Act) -> Result<String, LabError> {
    match act {
        Act::Plan {
            stable,
            canary,
            typo,
        } => {
            let (text, message) = if typo {
                (
                    release_plan_typo(stable, canary),
                    "orders-svc: oops, a typo",
                )
            } else {
                (release_plan(stable, canary), "orders-svc: the release plan")
            };
            remote::commit_file(&lab.repos.remote, PLAN_PATH, &text, message)?;
            Ok(format!(
                "pushed the plan {stable} → {canary}{}",
                if typo { " with a YAML typo" } else { "" }
            ))
        }
        Act::Errors(subset, rate) => {
            let change = traffic::SubsetSettings {
                errors: Some(rate),
                latency_ms: None,
            };
            lab.simulator.subsets.set(subset, &change);
            Ok(format!("{subset} now answers {:.0} % errors", rate * 100.0))
        }
        Act::Subsets(names) => {
            set_dr_subsets(lab, names)?;
            Ok(format!("DestinationRule subsets now {names:?}"))
        }
        Act::Wait(d) => {
            tokio::time::sleep(d).await;
            Ok(format!("waited {}s", d.as_secs()))
        }
        Act::Control(verb) => {
            control(lab, binary, verb, "lab: fixed, try again")?;
            Ok(format!("pushed `Tidegate: {verb} {NAMESPACE}/{NAME}`"))
        }
    }
}

const PLAN_PATH: &str = "rollouts/orders-svc.yaml";

fn set_dr_subsets(lab: &Lab, names: &[&str]) -> Result<(), LabError> {
    let mut dr = dr_now(lab).unwrap_or_default();
    let subsets: Vec<Value> = names
        .iter()
        .map(|n| serde_json::json!({"name": n, "labels": {"version": n}}))
        .collect();
    if let Some(spec) = dr.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("subsets".into(), Value::Array(subsets));
    }
    lab.emulator
        .apply_manifest(dr, NAMESPACE)
        .map_err(|e| LabError::Control {
            args: "edit the DestinationRule".into(),
            message: e.to_string(),
        })?;
    Ok(())
}

fn dr_now(lab: &Lab) -> Option<Value> {
    lab.emulator.get(
        "networking.istio.io/v1",
        "DestinationRule",
        Some(NAMESPACE),
        NAME,
    )
}

/// Runs a staged scenario's stages as the observations come.
#[derive(Default)]
struct StageRunner {
    next: usize,
    base: Option<Obs>,
    /// When each stage's acts were done.
    done_at: Vec<Instant>,
}

impl StageRunner {
    /// Do the next stage when it is due; returns the timeline lines.
    async fn step(
        &mut self,
        stages: &[Stage],
        obs: &Obs,
        lab: &Lab,
        binary: &Path,
    ) -> Result<Vec<String>, LabError> {
        let Some(stage) = stages.get(self.next) else {
            return Ok(Vec::new());
        };
        let base = self.base.get_or_insert_with(|| obs.clone());
        if !(stage.until)(obs, base) {
            return Ok(Vec::new());
        }
        let mut lines = vec![format!("stage {}: {}", self.next + 1, stage.what)];
        for act in &stage.acts {
            lines.push(format!("  {}", perform(lab, binary, *act).await?));
        }
        self.next += 1;
        self.base = None;
        self.done_at.push(Instant::now());
        Ok(lines)
    }

    fn finished(&self, stages: &[Stage]) -> bool {
        self.next >= stages.len()
    }
}

/// The staged scenarios' own expectations. `acted_ended`: when the first stage acted and when
/// the terminal phase was seen.
fn staged_checks(
    scenario: Scenario,
    vs: Option<&Value>,
    st: Option<&Value>,
    messages: &[String],
    weights_seen: &[u8],
    acted_ended: Option<(&Instant, &Instant)>,
) -> Vec<String> {
    let mut problems = Vec::new();
    match scenario {
        Scenario::Releases => {
            let dests = primary_subsets(vs);
            if dests != ["v4"] {
                problems.push(format!(
                    "the primary route sends to {dests:?}, expected v4 alone"
                ));
            }
            if !messages.iter().any(|m| m.contains("Tidegate: retry")) {
                problems.push("no `Tidegate: retry` commit".into());
            }
        }
        Scenario::PlanTypo => {
            // An edit never drops the canary to climb again: only the rollback lowers it.
            let climb = &weights_seen[..weights_seen.len().saturating_sub(1)];
            if climb.windows(2).any(|w| w[1] < w[0]) {
                problems.push(format!(
                    "the canary weight went down before the rollback: {weights_seen:?}"
                ));
            }
        }
        Scenario::MeshBreak => problems.extend(mesh_break_checks(st, acted_ended)),
        _ => {}
    }
    problems
}

/// The subsets the `primary` route sends to.
fn primary_subsets(vs: Option<&Value>) -> Vec<&str> {
    vs.and_then(|v| v.pointer("/spec/http"))
        .and_then(Value::as_array)
        .and_then(|rs| {
            rs.iter()
                .find(|r| r.get("name").and_then(Value::as_str) == Some("primary"))
        })
        .and_then(|r| r.get("route"))
        .and_then(Value::as_array)
        .map(|ds| {
            ds.iter()
                .filter_map(|d| d.pointer("/destination/subset").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default()
}

/// Rolled back within two intervals of the deletion, with a transition naming the subset.
fn mesh_break_checks(st: Option<&Value>, acted_ended: Option<(&Instant, &Instant)>) -> Vec<String> {
    let mut problems = Vec::new();
    let limit = RELEASE_INTERVAL * 2;
    match acted_ended {
        Some((acted, ended)) if ended.duration_since(*acted) <= limit => {}
        Some((acted, ended)) => problems.push(format!(
            "rolled back {:.1}s after the subset was deleted, more than two intervals ({}s)",
            ended.duration_since(*acted).as_secs_f64(),
            limit.as_secs()
        )),
        None => problems.push("the subset was never deleted".into()),
    }
    let said = st
        .and_then(|s| s.get("history"))
        .and_then(Value::as_array)
        .is_some_and(|h| {
            h.iter().any(|t| {
                t.get("reason")
                    .and_then(Value::as_str)
                    .is_some_and(|r| r.contains("no longer has subset"))
            })
        });
    if !said {
        problems.push("no transition names the missing subset".into());
    }
    problems
}
