//! The daemon's configuration: a YAML file, then environment variables, then flags, validated
//! in one pass that reports every problem (field, what is wrong, how to fix it).
//!
//! The file is read into a raw, stringly form (`Raw*`) so that values such as durations are
//! checked by the validator, which collects every error instead of stopping at the first.
//! Reference: `config/tidegate.yaml` (every option, annotated).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::control::Policy;
use crate::git::{Auth as GitAuth, GitConfig, Identity, SecretSource};
use crate::metrics::prometheus::{Auth as PromAuth, PrometheusConfig};
use crate::notify::{Channel, ChannelConfig};

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

/// A section written with nothing under it (`kubernetes:` and only comments) is its default.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConfig {
    namespace: Option<String>,
    data_dir: Option<PathBuf>,
    #[serde(default, deserialize_with = "nullable")]
    git: RawGit,
    #[serde(default, deserialize_with = "nullable")]
    control: RawControl,
    #[serde(default, deserialize_with = "nullable")]
    kubernetes: RawKube,
    #[serde(default, deserialize_with = "nullable")]
    prometheus: RawPrometheus,
    #[serde(default, deserialize_with = "nullable")]
    server: RawServer,
    #[serde(default, deserialize_with = "nullable")]
    leader_election: RawLease,
    shutdown_grace: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    notifications: Vec<ChannelConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawGit {
    url: Option<String>,
    branch: Option<String>,
    plans: Option<String>,
    status_folder: Option<String>,
    poll_interval: Option<String>,
    coalesce_window: Option<String>,
    max_plan_bytes: Option<usize>,
    auth: Option<RawGitAuth>,
    ca_bundle: Option<PathBuf>,
    author: Option<RawIdentity>,
    committer: Option<RawIdentity>,
    signing_key: Option<PathBuf>,
    allowed_signers: Option<PathBuf>,
    push_attempts: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawIdentity {
    name: String,
    email: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSecret {
    file: Option<PathBuf>,
    env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawGitAuth {
    token: Option<RawUserSecret>,
    password: Option<RawUserSecret>,
    ssh: Option<RawSsh>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawUserSecret {
    username: Option<String>,
    #[serde(flatten)]
    secret: RawSecretFlat,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSecretFlat {
    file: Option<PathBuf>,
    env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSsh {
    username: Option<String>,
    private_key: Option<PathBuf>,
    passphrase: Option<RawSecret>,
    known_hosts: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawControl {
    #[serde(default)]
    allowed_authors: Vec<String>,
    #[serde(default)]
    require_signature: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawKube {
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPrometheus {
    url: Option<String>,
    timeout: Option<String>,
    bearer_token_file: Option<PathBuf>,
    basic_auth: Option<RawBasic>,
    ca_file: Option<PathBuf>,
    reporter: Option<String>,
    health_interval: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawBasic {
    username: String,
    password_file: PathBuf,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawServer {
    listen: Option<String>,
    webhook_secret_file: Option<PathBuf>,
    max_body_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawLease {
    #[serde(default)]
    enabled: bool,
    lease_name: Option<String>,
    lease_duration: Option<String>,
    identity: Option<String>,
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
    /// Notification channels (validated; URLs resolved when the daemon starts).
    pub notifications: Vec<Channel>,
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
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: name.clone(),
        source,
    })?;
    from_str(&name, &text, env, flags)
}

/// Like [`load`] with the text given.
pub fn from_str(
    name: &str,
    text: &str,
    env: &BTreeMap<String, String>,
    flags: &Overrides,
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
    validate(name, raw, env)
}

struct Issues(Vec<ConfigIssue>);

impl Issues {
    fn push(&mut self, field: &str, message: impl Into<String>, fix: impl Into<String>) {
        self.0.push(ConfigIssue {
            field: field.to_owned(),
            message: message.into(),
            fix: fix.into(),
        });
    }

    fn duration(&mut self, field: &str, value: Option<&str>, default: Duration) -> Duration {
        match value {
            None => default,
            Some(s) => match humantime::parse_duration(s.trim()) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) => {
                    self.push(
                        field,
                        "the duration is zero",
                        "use a positive duration such as 30s",
                    );
                    default
                }
                Err(e) => {
                    self.push(
                        field,
                        format!("`{s}` is not a duration: {e}"),
                        "write e.g. 30s, 2m or 500ms",
                    );
                    default
                }
            },
        }
    }

    fn file(&mut self, field: &str, path: &Path) {
        if !path.is_file() {
            self.push(
                field,
                format!("{} does not exist or is not a file", path.display()),
                "mount the file or fix the path",
            );
        }
    }

    fn secret(
        &mut self,
        field: &str,
        raw: &RawSecretFlat,
        env: &BTreeMap<String, String>,
    ) -> Option<SecretSource> {
        match (&raw.file, &raw.env) {
            (Some(f), None) => {
                self.file(&format!("{field}.file"), f);
                Some(SecretSource::File(f.clone()))
            }
            (None, Some(v)) => {
                if env.get(v).is_none_or(|s| s.is_empty()) {
                    self.push(
                        &format!("{field}.env"),
                        format!("environment variable {v} is not set"),
                        "set it, or use `file:`",
                    );
                }
                Some(SecretSource::Env(v.clone()))
            }
            _ => {
                self.push(
                    field,
                    "needs exactly one of `file` or `env`",
                    "name the file holding the secret, or the environment variable",
                );
                None
            }
        }
    }
}

fn validate(
    name: &str,
    raw: RawConfig,
    env: &BTreeMap<String, String>,
) -> Result<Config, ConfigError> {
    let mut is = Issues(Vec::new());
    let namespace = raw.namespace.unwrap_or_else(|| "tidegate".into());
    if namespace.is_empty()
        || !namespace
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        is.push(
            "namespace",
            format!("`{namespace}` is not a Kubernetes namespace name"),
            "use lowercase letters, digits and '-'",
        );
    }
    let data_dir = raw
        .data_dir
        .unwrap_or_else(|| PathBuf::from("/var/lib/tidegate"));

    // Git.
    let g = raw.git;
    let url = g.url.unwrap_or_default();
    if url.trim().is_empty() {
        is.push(
            "git.url",
            "the plans repository is not set",
            "set git.url (or TIDEGATE_GIT_URL / --git-url)",
        );
    } else if let Some(rest) = url.split_once("://").map(|(_, r)| r)
        && rest
            .split('/')
            .next()
            .is_some_and(|host| host.contains('@') && host.contains(':') && url.starts_with("http"))
    {
        is.push(
            "git.url",
            "the URL carries a password",
            "remove it from the URL and use git.auth.token or git.auth.password",
        );
    }
    let mut git = GitConfig::new(url, data_dir.clone());
    if let Some(b) = g.branch {
        if b.trim().is_empty() {
            is.push(
                "git.branch",
                "the branch is empty",
                "name a branch, e.g. main",
            );
        }
        git.branch = b;
    }
    if let Some(p) = g.plans {
        if let Err(e) = globset::Glob::new(&p) {
            is.push(
                "git.plans",
                format!("`{p}` is not a valid glob: {e}"),
                "write e.g. rollouts/**/*.yaml",
            );
        }
        git.plan_glob = p;
    }
    if let Some(s) = g.status_folder {
        if s.trim_matches('/').is_empty() || s.contains("..") {
            is.push(
                "git.statusFolder",
                format!("`{s}` is not a usable folder"),
                "use a relative folder such as status",
            );
        }
        git.status_dir = s.trim_matches('/').to_owned();
    }
    let poll_interval = is.duration(
        "git.pollInterval",
        g.poll_interval.as_deref(),
        Duration::from_secs(30),
    );
    let coalesce_window = is.duration(
        "git.coalesceWindow",
        g.coalesce_window.as_deref(),
        Duration::from_secs(1),
    );
    if let Some(m) = g.max_plan_bytes {
        git.max_plan_bytes = m;
    }
    if let Some(a) = g.push_attempts {
        if a == 0 {
            is.push(
                "git.pushAttempts",
                "0 attempts would never push",
                "use 1 or more (default 12)",
            );
        }
        git.push_attempts = a.max(1);
    }
    if let Some(ca) = g.ca_bundle {
        is.file("git.caBundle", &ca);
        git.ca_bundle = Some(ca);
    }
    if let Some(a) = g.author {
        if !a.email.contains('@') {
            is.push(
                "git.author.email",
                format!("`{}` is not an e-mail address", a.email),
                "write e.g. tidegate@example.com",
            );
        }
        git.author = Identity {
            name: a.name,
            email: a.email,
        };
    }
    if let Some(c) = g.committer {
        git.committer = Some(Identity {
            name: c.name,
            email: c.email,
        });
    }
    if let Some(k) = g.signing_key {
        is.file("git.signingKey", &k);
        git.signing_key = Some(k);
    }
    if let Some(s) = g.allowed_signers {
        is.file("git.allowedSigners", &s);
        git.allowed_signers = Some(s);
    }
    if let Some(auth) = g.auth {
        let kinds = [
            auth.token.is_some(),
            auth.password.is_some(),
            auth.ssh.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() > 1 {
            is.push(
                "git.auth",
                "more than one authentication kind",
                "keep one of token, password, ssh",
            );
        }
        if let Some(t) = auth.token {
            if let Some(token) = is.secret("git.auth.token", &t.secret, env) {
                git.auth = GitAuth::Token {
                    username: t.username.unwrap_or_else(|| "tidegate".into()),
                    token,
                };
            }
        } else if let Some(p) = auth.password {
            match (p.username, is.secret("git.auth.password", &p.secret, env)) {
                (Some(username), Some(password)) => {
                    git.auth = GitAuth::UserPassword { username, password }
                }
                (None, _) => is.push("git.auth.password.username", "missing", "add the user name"),
                _ => {}
            }
        } else if let Some(s) = auth.ssh {
            let passphrase = s.passphrase.and_then(|p| {
                is.secret(
                    "git.auth.ssh.passphrase",
                    &RawSecretFlat {
                        file: p.file,
                        env: p.env,
                    },
                    env,
                )
            });
            match (s.private_key, s.known_hosts) {
                (Some(key), Some(kh)) => {
                    is.file("git.auth.ssh.privateKey", &key);
                    is.file("git.auth.ssh.knownHosts", &kh);
                    git.auth = GitAuth::SshKey {
                        username: s.username.unwrap_or_else(|| "git".into()),
                        private_key: key,
                        passphrase,
                        known_hosts: kh,
                    };
                }
                (None, _) => is.push(
                    "git.auth.ssh.privateKey",
                    "missing",
                    "name the private key file",
                ),
                (_, None) => is.push(
                    "git.auth.ssh.knownHosts",
                    "missing: unknown host keys are never accepted",
                    "name a known_hosts file listing the server's key",
                ),
            }
        }
    }

    // Control policy.
    let c = raw.control;
    if let Err(e) = Policy::new(&c.allowed_authors, c.require_signature) {
        is.push(
            "control.allowedAuthors",
            e.to_string(),
            "use glob patterns such as *@example.com",
        );
    }
    if c.require_signature && git.allowed_signers.is_none() {
        is.push(
            "control.requireSignature",
            "signatures are required but no git.allowedSigners file is set",
            "set git.allowedSigners to an allowed_signers file",
        );
    }

    // Kubernetes.
    if let Some(k) = &raw.kubernetes.kubeconfig {
        is.file("kubernetes.kubeconfig", k);
    }

    // Prometheus.
    let p = raw.prometheus;
    let purl = p.url.unwrap_or_default();
    if purl.trim().is_empty() {
        is.push(
            "prometheus.url",
            "Prometheus is not set",
            "set prometheus.url (or TIDEGATE_PROMETHEUS_URL)",
        );
    } else if !(purl.starts_with("http://") || purl.starts_with("https://")) {
        is.push(
            "prometheus.url",
            format!("`{purl}` is not an http(s) URL"),
            "write e.g. http://prometheus.monitoring:9090",
        );
    }
    let mut prometheus = PrometheusConfig::new(purl);
    prometheus.timeout = is.duration(
        "prometheus.timeout",
        p.timeout.as_deref(),
        prometheus.timeout,
    );
    match (p.bearer_token_file, p.basic_auth) {
        (Some(_), Some(_)) => is.push(
            "prometheus",
            "both bearerTokenFile and basicAuth are set",
            "keep one",
        ),
        (Some(f), None) => {
            is.file("prometheus.bearerTokenFile", &f);
            prometheus.auth = PromAuth::BearerTokenFile(f);
        }
        (None, Some(b)) => {
            is.file("prometheus.basicAuth.passwordFile", &b.password_file);
            prometheus.auth = PromAuth::Basic {
                username: b.username,
                password_file: b.password_file,
            };
        }
        (None, None) => {}
    }
    if let Some(ca) = p.ca_file {
        is.file("prometheus.caFile", &ca);
        prometheus.ca_file = Some(ca);
    }
    let reporter = p.reporter.unwrap_or_else(|| "destination".into());
    if !matches!(reporter.as_str(), "destination" | "source") {
        is.push(
            "prometheus.reporter",
            format!("`{reporter}` is not an Istio reporter"),
            "use destination (default) or source",
        );
    }
    let health_interval = is.duration(
        "prometheus.healthInterval",
        p.health_interval.as_deref(),
        Duration::from_secs(15),
    );

    // Server.
    let listen = raw.server.listen.unwrap_or_else(|| "0.0.0.0:8080".into());
    if listen.parse::<std::net::SocketAddr>().is_err() {
        is.push(
            "server.listen",
            format!("`{listen}` is not an address:port"),
            "write e.g. 0.0.0.0:8080 or 127.0.0.1:0",
        );
    }
    let webhook_secret = match raw.server.webhook_secret_file {
        Some(f) => match std::fs::read_to_string(&f) {
            Ok(s) if !s.trim().is_empty() => Some(s.trim().as_bytes().to_vec()),
            Ok(_) => {
                is.push(
                    "server.webhookSecretFile",
                    format!("{} is empty", f.display()),
                    "put the shared secret in the file",
                );
                None
            }
            Err(e) => {
                is.push(
                    "server.webhookSecretFile",
                    format!("cannot read {}: {e}", f.display()),
                    "mount the secret file or fix the path",
                );
                None
            }
        },
        None => None,
    };
    let max_body_bytes = raw.server.max_body_bytes.unwrap_or(1024 * 1024);

    // Leader election.
    let l = raw.leader_election;
    let lease_duration = is.duration(
        "leaderElection.leaseDuration",
        l.lease_duration.as_deref(),
        Duration::from_secs(15),
    );
    let leader_election = l.enabled.then(|| LeaseConfig {
        name: l.lease_name.unwrap_or_else(|| "tidegate".into()),
        duration: lease_duration,
        identity: l
            .identity
            .or_else(|| env.get("HOSTNAME").cloned())
            .unwrap_or_else(|| format!("tidegate-{}", std::process::id())),
    });
    let shutdown_grace = is.duration(
        "shutdownGrace",
        raw.shutdown_grace.as_deref(),
        Duration::from_secs(20),
    );

    let notifications = match crate::notify::validate_channels(&raw.notifications) {
        Ok(c) => c,
        Err(crate::notify::NotifyError::InvalidChannels { errors }) => {
            for e in errors {
                is.push("notifications", e, "see docs/notifications.md");
            }
            Vec::new()
        }
        Err(e) => {
            is.push("notifications", e.to_string(), "see docs/notifications.md");
            Vec::new()
        }
    };

    if !is.0.is_empty() {
        return Err(ConfigError::Invalid {
            source_name: name.to_owned(),
            issues: is.0,
        });
    }
    Ok(Config {
        namespace,
        data_dir,
        git,
        poll_interval,
        coalesce_window,
        allowed_authors: c.allowed_authors,
        require_signature: c.require_signature,
        kubeconfig: raw.kubernetes.kubeconfig,
        kube_context: raw.kubernetes.context,
        prometheus,
        reporter,
        health_interval,
        listen,
        webhook_secret,
        max_body_bytes,
        leader_election,
        shutdown_grace,
        notifications,
    })
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
