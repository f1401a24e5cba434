//! The daemon's configuration: a YAML file, then environment variables, then flags, validated
//! in one pass that reports every problem (field, what is wrong, how to fix it).
//!
//! The file is read into a raw, stringly form (`Raw*`) so that values such as durations are
//! checked by the validator, which collects every error instead of stopping at the first.
//! Reference: `config/tidegate.yaml` (every option, annotated).

mod raw;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::control::Policy;
use crate::git::GitConfig;
use crate::metrics::prometheus::PrometheusConfig;
use crate::notify::Channel;
use raw::RawConfig;

/// A configuration problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub field: String,
    pub message: String,
    pub fix: String,
}

impl std::fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} (fix: {})", self.field, self.message, self.fix)
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("failed to read config file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Syntax { path: String, message: String },
    #[error("config {source_name} has {} problem(s):\n  {}", issues.len(), issues.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Invalid {
        source_name: String,
        issues: Vec<ConfigIssue>,
    },
}

/// Overrides from flags (highest precedence).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub git_url: Option<String>,
    pub prometheus_url: Option<String>,
    pub kubeconfig: Option<PathBuf>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The daemon's namespace: default namespace of control trailers, namespace of the lease.
    pub namespace: String,
    pub data_dir: PathBuf,
    pub git: GitConfig,
    pub poll_interval: Duration,
    pub coalesce_window: Duration,
    pub allowed_authors: Vec<String>,
    pub require_signature: bool,
    pub kubeconfig: Option<PathBuf>,
    pub kube_context: Option<String>,
    pub prometheus: PrometheusConfig,
    pub reporter: String,
    pub health_interval: Duration,
    pub listen: String,
    pub webhook_secret: Option<Vec<u8>>,
    pub max_body_bytes: usize,
    pub leader_election: Option<LeaseConfig>,
    pub shutdown_grace: Duration,
    /// How failed Kubernetes writes and reads are retried, and when they become visible.
    pub retry: RetryConfig,
    /// Notification channels (validated; URLs resolved when the daemon starts).
    pub notifications: Vec<Channel>,
}

/// Retries of failed mesh reads and writes: exponential backoff with jitter from
/// `initial_delay` up to `max_delay`. A transient error that lasts longer than `report_after`
/// (and every permanent one at once) is shown in the rollout's status; retrying goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryConfig {
    pub initial_delay: Duration,
    pub max_delay: Duration,
    pub report_after: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(60),
            report_after: Duration::from_secs(120),
        }
    }
}

/// Leader election settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseConfig {
    pub name: String,
    pub duration: Duration,
    pub identity: String,
}

impl Config {
    /// The control policy described by this configuration.
    pub fn policy(&self) -> Result<Policy, crate::control::PolicyError> {
        Policy::new(&self.allowed_authors, self.require_signature)
    }
}

/// Environment variables read, in the form (variable, field it sets).
pub const ENV_VARS: [(&str, &str); 7] = [
    ("TIDEGATE_NAMESPACE", "namespace"),
    ("TIDEGATE_DATA_DIR", "dataDir"),
    ("TIDEGATE_GIT_URL", "git.url"),
    ("TIDEGATE_GIT_BRANCH", "git.branch"),
    ("TIDEGATE_PROMETHEUS_URL", "prometheus.url"),
    ("TIDEGATE_LISTEN", "server.listen"),
    ("TIDEGATE_KUBECONFIG", "kubernetes.kubeconfig"),
];

/// Load `path` (YAML), apply `env` and `flags`, validate. `env` is passed in (not read here)
/// so that tests and `run --check` see the same behaviour.
pub fn load(
    path: &Path,
    env: &BTreeMap<String, String>,
    flags: &Overrides,
) -> Result<Config, ConfigError> {
    load_with(path, env, flags, Environment::Check)
}

/// Whether validation looks at the files, secrets and environment variables a configuration
/// names, or only at the configuration itself (`run --check --no-environment`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Check,
    Skip,
}

/// [`load`] choosing whether the environment is checked.
pub fn load_with(
    path: &Path,
    env: &BTreeMap<String, String>,
    flags: &Overrides,
    environment: Environment,
) -> Result<Config, ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: name.clone(),
        source,
    })?;
    from_str_with(&name, &text, env, flags, environment)
}

/// Like [`load`] with the text given.
pub fn from_str(
    name: &str,
    text: &str,
    env: &BTreeMap<String, String>,
    flags: &Overrides,
) -> Result<Config, ConfigError> {
    from_str_with(name, text, env, flags, Environment::Check)
}

/// [`from_str`] choosing whether the environment is checked.
pub fn from_str_with(
    name: &str,
    text: &str,
    env: &BTreeMap<String, String>,
    flags: &Overrides,
    environment: Environment,
) -> Result<Config, ConfigError> {
    let mut raw: RawConfig = if text.trim().is_empty() {
        RawConfig::default()
    } else {
        serde_saphyr::from_str(text).map_err(|e| ConfigError::Syntax {
            path: name.to_owned(),
            message: e
                .to_string()
                .lines()
                .next()
                .unwrap_or("invalid YAML")
                .to_owned(),
        })?
    };
    apply_overrides(&mut raw, env, flags);
    validate::validate(name, raw, env, environment == Environment::Check)
}

/// Environment variables override the file; flags override both.
fn apply_overrides(raw: &mut RawConfig, env: &BTreeMap<String, String>, flags: &Overrides) {
    let get = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
    if let Some(v) = get("TIDEGATE_NAMESPACE") {
        raw.namespace = Some(v);
    }
    if let Some(v) = get("TIDEGATE_DATA_DIR") {
        raw.data_dir = Some(v.into());
    }
    if let Some(v) = get("TIDEGATE_GIT_URL") {
        raw.git.url = Some(v);
    }
    if let Some(v) = get("TIDEGATE_GIT_BRANCH") {
        raw.git.branch = Some(v);
    }
    if let Some(v) = get("TIDEGATE_PROMETHEUS_URL") {
        raw.prometheus.url = Some(v);
    }
    if let Some(v) = get("TIDEGATE_LISTEN") {
        raw.server.listen = Some(v);
    }
    if let Some(v) = get("TIDEGATE_KUBECONFIG") {
        raw.kubernetes.kubeconfig = Some(v.into());
    }
    if let Some(v) = &flags.listen {
        raw.server.listen = Some(v.clone());
    }
    if let Some(v) = &flags.data_dir {
        raw.data_dir = Some(v.clone());
    }
    if let Some(v) = &flags.git_url {
        raw.git.url = Some(v.clone());
    }
    if let Some(v) = &flags.prometheus_url {
        raw.prometheus.url = Some(v.clone());
    }
    if let Some(v) = &flags.kubeconfig {
        raw.kubernetes.kubeconfig = Some(v.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = "git:\n  pollInterval: soon\n  pushAttempts: 0\nprometheus:\n  url: prometheus:9090\n  reporter: sidecar\nserver:\n  listen: everywhere\n";
        let e = from_str("c.yaml", text, &env(&[]), &Overrides::default()).expect_err("invalid");
        let ConfigError::Invalid { issues, .. } = e else {
            panic!("expected issues")
        };
        let fields: Vec<&str> = issues.iter().map(|i| i.field.as_str()).collect();
        for f in [
            "git.url",
            "git.pollInterval",
            "git.pushAttempts",
            "prometheus.url",
            "prometheus.reporter",
            "server.listen",
        ] {
            assert!(fields.contains(&f), "{f} missing from {fields:?}");
        }
    }

    #[test]
    fn env_and_flags_override_the_file() {
        let text = "git: {url: file:///from/file}\nprometheus: {url: 'http://file:9090'}\nserver: {listen: '127.0.0.1:1'}\n";
        let flags = Overrides {
            listen: Some("127.0.0.1:0".into()),
            ..Overrides::default()
        };
        let c = from_str(
            "c.yaml",
            text,
            &env(&[
                ("TIDEGATE_GIT_URL", "file:///from/env"),
                ("TIDEGATE_LISTEN", "127.0.0.1:2"),
            ]),
            &flags,
        )
        .expect("valid");
        assert_eq!(c.git.url, "file:///from/env");
        assert_eq!(c.listen, "127.0.0.1:0");
        assert_eq!(c.prometheus.url, "http://file:9090");
        assert_eq!(c.poll_interval, Duration::from_secs(30));
    }

    #[test]
    fn status_commits_go_to_a_branch_of_their_own_unless_configured() {
        let base = "prometheus: {url: 'http://p:9090'}\ngit: {url: file:///r";
        let load = |git: &str| {
            from_str(
                "c.yaml",
                &format!("{base}{git}}}\n"),
                &env(&[]),
                &Overrides::default(),
            )
        };
        let c = load("").expect("valid");
        assert_eq!(c.git.status_branch, "tidegate-status");
        assert!(!c.git.same_branch());
        let c = load(", statusBranch: main").expect("valid");
        assert!(
            c.git.same_branch(),
            "naming the plans branch: same-branch mode"
        );
        let e = load(", statusBranch: 'bad..name'").expect_err("invalid");
        assert!(e.to_string().contains("git.statusBranch"), "{e}");
    }

    #[test]
    fn unknown_fields_are_syntax_errors_naming_the_file() {
        let e =
            from_str("c.yaml", "gti: {}\n", &env(&[]), &Overrides::default()).expect_err("unknown");
        let s = e.to_string();
        assert!(s.contains("c.yaml") && s.contains("gti"), "{s}");
    }

    #[test]
    fn secrets_need_a_source_and_signatures_need_signers() {
        let text = "git:\n  url: https://git.example.com/r.git\n  auth:\n    token: {env: TIDEGATE_TEST_UNSET_TOKEN}\ncontrol:\n  requireSignature: true\nprometheus: {url: 'http://p:9090'}\n";
        let e = from_str("c.yaml", text, &env(&[]), &Overrides::default()).expect_err("invalid");
        let s = e.to_string();
        assert!(s.contains("TIDEGATE_TEST_UNSET_TOKEN"), "{s}");
        assert!(s.contains("control.requireSignature"), "{s}");
    }
}
