//! Starts a real Prometheus (the `prometheus` binary from PATH, Debian package `prometheus`) as
//! a plain child process on a loopback port, scraping the lab's exporter every second.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Errors starting Prometheus.
#[derive(Debug, thiserror::Error)]
pub enum PrometheusError {
    #[error(
        "the `prometheus` binary is not on PATH: install the Debian package `prometheus` (apt-get install -y --no-install-recommends prometheus)"
    )]
    Missing,
    #[error("failed to prepare Prometheus in {path}: {source}")]
    Prepare {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to start Prometheus: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("Prometheus did not become ready on {url} within {secs}s (log: {log})")]
    NotReady { url: String, secs: u64, log: String },
}

/// A running Prometheus; killed when dropped.
#[derive(Debug)]
pub struct PrometheusProcess {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl PrometheusProcess {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited (reaped, so no zombie is left), with its status.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for PrometheusProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Find `prometheus` on PATH (`tidegate lab` installs it first when it can: [`super::setup`]).
pub fn binary() -> Result<PathBuf, PrometheusError> {
    super::setup::on_path(super::setup::PACKAGE).ok_or(PrometheusError::Missing)
}

/// A free loopback port (the OS picks one; there is a small window before Prometheus binds it).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Start Prometheus in `dir` scraping `targets` (host:port) every second.
pub fn start(dir: &Path, targets: &[String]) -> Result<PrometheusProcess, PrometheusError> {
    let bin = binary()?;
    let prep = |source| PrometheusError::Prepare {
        path: dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir.join("data")).map_err(prep)?;
    let targets_yaml: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: lab\n    scrape_interval: 1s\n    static_configs:\n      - targets: [{}]\n",
        targets_yaml.join(", ")
    );
    let config_path = dir.join("prometheus.yml");
    std::fs::write(&config_path, config).map_err(prep)?;
    let port = free_port().map_err(prep)?;
    let log_path = dir.join("prometheus.log");
    let log = std::fs::File::create(&log_path).map_err(prep)?;
    let log2 = log.try_clone().map_err(prep)?;
    let child = Command::new(bin)
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--storage.tsdb.retention.time=1d")
        .arg("--log.level=warn")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(PrometheusError::Spawn)?;
    let mut p = PrometheusProcess {
        child,
        port,
        dir: dir.to_path_buf(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if ready(port) {
            return Ok(p);
        }
        if Instant::now() > deadline || matches!(p.child.try_wait(), Ok(Some(_))) {
            return Err(PrometheusError::NotReady {
                url: p.url(),
                secs: 30,
                log: log_path.display().to_string(),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn ready(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"GET /-/ready HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if n >= 12 && &buf[9..12] == b"200")
}
