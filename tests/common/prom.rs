//! Test support: a small exporter serving Istio-standard series for controlled workloads, and
//! a real Prometheus (Debian package `prometheus`) run as a plain process scraping it.

#![allow(dead_code)]

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Istio's default request-duration bucket bounds in milliseconds.
pub const BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// One service subset's traffic as the exporter reports it.
#[derive(Debug, Clone)]
pub struct Workload {
    pub namespace: String,
    pub service: String,
    /// `destination_version` (and `destination_canonical_revision`) value.
    pub version: String,
    pub rps: f64,
    /// Share of requests answered 503.
    pub error_ratio: f64,
    /// Every request takes this long.
    pub latency_ms: f64,
}

pub fn workload(ns: &str, svc: &str, version: &str, rps: f64, err: f64, ms: f64) -> Workload {
    Workload {
        namespace: ns.into(),
        service: svc.into(),
        version: version.into(),
        rps,
        error_ratio: err,
        latency_ms: ms,
    }
}

/// Escape a label value for the Prometheus text format.
pub fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels(w: &Workload, reporter: &str) -> String {
    format!(
        "reporter=\"{reporter}\",destination_service_namespace=\"{ns}\",destination_service_name=\"{svc}\",destination_service=\"{svc}.{ns}.svc.cluster.local\",destination_version=\"{v}\",destination_canonical_revision=\"{v}\",destination_workload=\"{svc}-{v}\",request_protocol=\"http\"",
        ns = escape_label(&w.namespace),
        svc = escape_label(&w.service),
        v = escape_label(&w.version),
    )
}

/// Render every workload's counters after `t` seconds of traffic. With `timestamp`, each sample
/// carries it (OpenMetrics, seconds) for `promtool tsdb create-blocks-from openmetrics`.
pub fn exposition(workloads: &[Workload], t: f64, timestamp: Option<i64>) -> String {
    let ts = timestamp.map(|s| format!(" {s}")).unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(out, "# TYPE istio_requests counter");
    for w in workloads {
        let total = (w.rps * t).floor();
        let errors = (w.rps * w.error_ratio * t).floor();
        for reporter in ["destination", "source"] {
            let l = labels(w, reporter);
            let _ = writeln!(
                out,
                "istio_requests_total{{{l},response_code=\"200\"}} {}{ts}",
                total - errors
            );
            let _ = writeln!(
                out,
                "istio_requests_total{{{l},response_code=\"503\"}} {errors}{ts}"
            );
        }
    }
    let _ = writeln!(out, "# TYPE istio_request_duration_milliseconds histogram");
    for w in workloads {
        let total = (w.rps * t).floor();
        let l = labels(w, "destination");
        for b in BUCKETS {
            let n = if w.latency_ms <= b { total } else { 0.0 };
            let _ = writeln!(
                out,
                "istio_request_duration_milliseconds_bucket{{{l},le=\"{b}\"}} {n}{ts}"
            );
        }
        let _ = writeln!(
            out,
            "istio_request_duration_milliseconds_bucket{{{l},le=\"+Inf\"}} {total}{ts}"
        );
        let _ = writeln!(
            out,
            "istio_request_duration_milliseconds_sum{{{l}}} {}{ts}",
            total * w.latency_ms
        );
        let _ = writeln!(
            out,
            "istio_request_duration_milliseconds_count{{{l}}} {total}{ts}"
        );
    }
    out
}

/// A running exporter: serves `/metrics` on 127.0.0.1 from its own thread and runtime.
pub struct Exporter {
    pub port: u16,
    pub workloads: Arc<Mutex<Vec<Workload>>>,
}

impl Exporter {
    pub fn start(workloads: Vec<Workload>) -> Exporter {
        let workloads = Arc::new(Mutex::new(workloads));
        let shared = workloads.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("exporter runtime");
            rt.block_on(async move {
                let started = Instant::now();
                let app = axum::Router::new().route(
                    "/metrics",
                    axum::routing::get(move || {
                        let w = shared.lock().expect("workloads lock").clone();
                        // Start counters at 1000 s of traffic so they are never tiny.
                        let t = 1000.0 + started.elapsed().as_secs_f64();
                        async move {
                            (
                                [("content-type", "text/plain; version=0.0.4")],
                                exposition(&w, t, None),
                            )
                        }
                    }),
                );
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("exporter bind");
                tx.send(listener.local_addr().expect("addr").port())
                    .expect("send port");
                axum::serve(listener, app).await.expect("exporter serve");
            });
        });
        let port = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("exporter started");
        Exporter { port, workloads }
    }
}

/// Find a binary of a Debian package or fail naming the package.
pub fn require_tool(cmd: &str, package: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/bin"] {
        let p = Path::new(dir).join(cmd);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "`{cmd}` not found: these tests need the Debian package `{package}` (apt-get install --no-install-recommends {package}); scripts/test installs it"
    );
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A real Prometheus process; killed by PID on drop.
pub struct Prometheus {
    pub port: u16,
    pub dir: tempfile::TempDir,
    /// Served over TLS with this web config (`--web.config.file`).
    tls: bool,
    child: Option<Child>,
    watchdog: Option<Child>,
}

impl Prometheus {
    /// Start Prometheus scraping `127.0.0.1:exporter_port` every second. `prepare` may fill
    /// the storage directory (e.g. with promtool blocks) before the server starts.
    pub fn start(exporter_port: u16, prepare: impl FnOnce(&Path)) -> Prometheus {
        let dir = tempfile::tempdir().expect("prometheus tempdir");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: istio\n    static_configs:\n      - targets: ['127.0.0.1:{exporter_port}']\n"
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).expect("write config");
        std::fs::create_dir_all(dir.path().join("data")).expect("data dir");
        prepare(&dir.path().join("data"));
        let mut p = Prometheus {
            port: free_port(),
            dir,
            tls: false,
            child: None,
            watchdog: None,
        };
        p.restart();
        p
    }

    /// Like `start`, but serving HTTPS with the given PEM certificate and key.
    pub fn start_tls(exporter_port: u16, cert: &Path, key: &Path) -> Prometheus {
        let mut p = Prometheus::start(exporter_port, |_| {});
        p.stop();
        std::fs::write(
            p.dir.path().join("web.yml"),
            format!(
                "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
                cert.display(),
                key.display()
            ),
        )
        .expect("write web config");
        p.tls = true;
        p.restart();
        p
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// (Re)start the process on the same port and storage, and wait until it is ready.
    pub fn restart(&mut self) {
        let bin = require_tool("prometheus", "prometheus");
        let log = std::fs::File::create(self.dir.path().join("prometheus.log")).expect("log");
        let child = Command::new(bin)
            .arg(format!(
                "--config.file={}",
                self.dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .args(self.tls.then(|| {
                format!(
                    "--web.config.file={}",
                    self.dir.path().join("web.yml").display()
                )
            }))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn prometheus");
        // If the test process dies without dropping us (shared instances live in statics),
        // this watchdog stops Prometheus by its PID.
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while kill -0 {me} 2>/dev/null && kill -0 {pid} 2>/dev/null; do sleep 1; done; \
                 if kill -0 {pid} 2>/dev/null; then kill {pid}; sleep 2; rm -rf '{dir}'; fi",
                me = std::process::id(),
                pid = child.id(),
                dir = self.dir.path().display(),
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        self.child = Some(child);
        self.watchdog = watchdog;
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                let log = std::fs::read_to_string(self.dir.path().join("prometheus.log"))
                    .unwrap_or_default();
                panic!("prometheus exited with {status} before becoming ready:\n{log}");
            }
            // Over TLS, a listening socket is all this can see; callers poll with a client.
            if self.tls && TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if http_status(self.port, "/-/ready") == Some(200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus on port {} not ready after 60 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stop the process by its PID and wait for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Status code of a plain HTTP GET on loopback, `None` when nothing answers.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split_whitespace().nth(1)?.parse().ok()
}

/// Write `workloads` as OpenMetrics samples every `step` seconds over `[from, to]` (Unix
/// seconds), with counters starting at 1000 s of traffic at `from`, and turn them into TSDB
/// blocks in `data` with promtool.
pub fn historic_blocks(data: &Path, workloads: &[Workload], from: i64, to: i64, step: i64) {
    let promtool = require_tool("promtool", "prometheus");
    // OpenMetrics wants each family's samples together, each series in time order.
    let mut requests = String::from("# TYPE istio_requests counter\n");
    let mut durations = String::from("# TYPE istio_request_duration_milliseconds histogram\n");
    let mut ts = from;
    while ts <= to {
        let t = 1000.0 + (ts - from) as f64;
        for line in exposition(workloads, t, Some(ts)).lines() {
            if line.starts_with("istio_requests_total") {
                requests.push_str(line);
                requests.push('\n');
            } else if line.starts_with("istio_request_duration") {
                durations.push_str(line);
                durations.push('\n');
            }
        }
        ts += step;
    }
    let file = data.join("history.om");
    std::fs::write(&file, format!("{requests}{durations}# EOF\n")).expect("write openmetrics");
    let out = Command::new(promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&file)
        .arg(data)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool create-blocks-from openmetrics failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(&file).expect("remove openmetrics input");
}

/// The fixtures directory shared by all sessions; fails loudly when absent.
pub fn fixtures_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures");
    assert!(
        dir.is_dir(),
        "fixtures directory {} is missing: these tests read the shared real-world fixtures from there",
        dir.display()
    );
    dir
}

/// Install the ring crypto provider once per test process.
pub fn install_crypto() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

#[path = "../support/tls.rs"]
mod tls;
#[allow(unused_imports)] // not every test crate that includes this file makes a CA
pub use tls::make_ca;
