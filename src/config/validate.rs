//! Validation of the raw configuration, one validator per section (vector's config checks are
//! the model): each adds what is wrong to one shared list of issues and returns its part of the
//! [`Config`], so every problem in every section is reported at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::*;
use super::{Config, ConfigError, ConfigIssue, LeaseConfig, RetryConfig};
use crate::control::Policy;
use crate::git::{Auth as GitAuth, GitConfig, Identity, SecretSource};
use crate::metrics::prometheus::{Auth as PromAuth, PrometheusConfig};
use crate::notify::{Channel, ChannelConfig};

/// The issues found so far, and what the validators may look at besides the text.
pub(super) struct Issues<'e> {
    found: Vec<ConfigIssue>,
    env: &'e BTreeMap<String, String>,
    /// Check that files exist, secrets are set and read them (false: `--no-environment`).
    environment: bool,
}

impl<'e> Issues<'e> {
    pub(super) fn new(env: &'e BTreeMap<String, String>, environment: bool) -> Issues<'e> {
        Issues {
            found: Vec::new(),
            env,
            environment,
        }
    }

    fn push(&mut self, field: &str, message: impl Into<String>, fix: impl Into<String>) {
        self.found.push(ConfigIssue {
            field: field.to_owned(),
            message: message.into(),
            fix: fix.into(),
        });
    }

    fn duration(&mut self, field: &str, value: Option<&str>, default: Duration) -> Duration {
        let Some(s) = value else { return default };
        match humantime::parse_duration(s.trim()) {
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
        }
    }

    fn file(&mut self, field: &str, path: &Path) {
        if self.environment && !path.is_file() {
            self.push(
                field,
                format!("{} does not exist or is not a file", path.display()),
                "mount the file or fix the path",
            );
        }
    }

    fn secret(&mut self, field: &str, raw: &RawSecretFlat) -> Option<SecretSource> {
        match (&raw.file, &raw.env) {
            (Some(f), None) => {
                self.file(&format!("{field}.file"), f);
                Some(SecretSource::File(f.clone()))
            }
            (None, Some(v)) => {
                if self.environment && self.env.get(v).is_none_or(|s| s.is_empty()) {
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

    fn finish(self, name: &str) -> Result<(), ConfigError> {
        if self.found.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid {
                source_name: name.to_owned(),
                issues: self.found,
            })
        }
    }
}

/// Validate every section of `raw`; all problems are reported together.
pub(super) fn validate(
    name: &str,
    raw: RawConfig,
    env: &BTreeMap<String, String>,
    environment: bool,
) -> Result<Config, ConfigError> {
    let mut is = Issues::new(env, environment);
    let namespace = namespace(&mut is, raw.namespace);
    let data_dir = raw
        .data_dir
        .unwrap_or_else(|| PathBuf::from("/var/lib/tidegate"));
    let git = git(&mut is, raw.git, &data_dir);
    control(&mut is, &raw.control, &git.config);
    if let Some(k) = &raw.kubernetes.kubeconfig {
        is.file("kubernetes.kubeconfig", k);
    }
    let prom = prometheus(&mut is, raw.prometheus);
    let server = server(&mut is, raw.server);
    let leader_election = leader_election(&mut is, raw.leader_election);
    let shutdown_grace = is.duration(
        "shutdownGrace",
        raw.shutdown_grace.as_deref(),
        Duration::from_secs(20),
    );
    let retry = retry(&mut is, &raw.retry);
    let notifications = notifications(&mut is, &raw.notifications);
    is.finish(name)?;
    Ok(Config {
        namespace,
        data_dir,
        git: git.config,
        poll_interval: git.poll_interval,
        coalesce_window: git.coalesce_window,
        allowed_authors: raw.control.allowed_authors,
        require_signature: raw.control.require_signature,
        kubeconfig: raw.kubernetes.kubeconfig,
        kube_context: raw.kubernetes.context,
        prometheus: prom.config,
        reporter: prom.reporter,
        health_interval: prom.health_interval,
        listen: server.listen,
        webhook_secret: server.webhook_secret,
        max_body_bytes: server.max_body_bytes,
        leader_election,
        shutdown_grace,
        retry,
        notifications,
    })
}

fn namespace(is: &mut Issues<'_>, raw: Option<String>) -> String {
    let namespace = raw.unwrap_or_else(|| "tidegate".into());
    let valid = !namespace.is_empty()
        && namespace
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        is.push(
            "namespace",
            format!("`{namespace}` is not a Kubernetes namespace name"),
            "use lowercase letters, digits and '-'",
        );
    }
    namespace
}

/// The `git` section's part of the configuration.
struct GitSection {
    config: GitConfig,
    poll_interval: Duration,
    coalesce_window: Duration,
}

fn git(is: &mut Issues<'_>, g: RawGit, data_dir: &Path) -> GitSection {
    let url = git_url(is, g.url.clone().unwrap_or_default());
    let mut git = GitConfig::new(url, data_dir.to_path_buf());
    git_repository_fields(is, &g, &mut git);
    git_identity_fields(is, &g, &mut git);
    if let Some(auth) = g.auth
        && let Some(a) = git_auth(is, auth)
    {
        git.auth = a;
    }
    GitSection {
        config: git,
        poll_interval: is.duration(
            "git.pollInterval",
            g.poll_interval.as_deref(),
            Duration::from_secs(30),
        ),
        coalesce_window: is.duration(
            "git.coalesceWindow",
            g.coalesce_window.as_deref(),
            Duration::from_secs(1),
        ),
    }
}

fn git_url(is: &mut Issues<'_>, url: String) -> String {
    let carries_password = url.split_once("://").is_some_and(|(_, rest)| {
        rest.split('/')
            .next()
            .is_some_and(|host| host.contains('@') && host.contains(':') && url.starts_with("http"))
    });
    if url.trim().is_empty() {
        is.push(
            "git.url",
            "the plans repository is not set",
            "set git.url (or TIDEGATE_GIT_URL / --git-url)",
        );
    } else if carries_password {
        is.push(
            "git.url",
            "the URL carries a password",
            "remove it from the URL and use git.auth.token or git.auth.password",
        );
    }
    url
}

/// The plans branch and the status branch.
fn git_branch_fields(is: &mut Issues<'_>, g: &RawGit, git: &mut GitConfig) {
    if let Some(b) = &g.branch {
        if b.trim().is_empty() {
            is.push(
                "git.branch",
                "the branch is empty",
                "name a branch, e.g. main",
            );
        }
        git.branch = b.clone();
    }
    if let Some(b) = &g.status_branch {
        if b.trim().is_empty() || !git2::Reference::is_valid_name(&format!("refs/heads/{b}")) {
            is.push(
                "git.statusBranch",
                format!("`{b}` is not a valid branch name"),
                "use e.g. tidegate-status, or the value of git.branch for same-branch mode",
            );
        }
        git.status_branch = b.clone();
    }
}

/// Branches, plan glob, status folder, limits and the CA bundle.
fn git_repository_fields(is: &mut Issues<'_>, g: &RawGit, git: &mut GitConfig) {
    git_branch_fields(is, g, git);
    if let Some(p) = &g.plans {
        if let Err(e) = globset::Glob::new(p) {
            is.push(
                "git.plans",
                format!("`{p}` is not a valid glob: {e}"),
                "write e.g. rollouts/**/*.yaml",
            );
        }
        git.plan_glob = p.clone();
    }
    if let Some(s) = &g.status_folder {
        if s.trim_matches('/').is_empty() || s.contains("..") {
            is.push(
                "git.statusFolder",
                format!("`{s}` is not a usable folder"),
                "use a relative folder such as status",
            );
        }
        git.status_dir = s.trim_matches('/').to_owned();
    }
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
    if let Some(ca) = &g.ca_bundle {
        is.file("git.caBundle", ca);
        git.ca_bundle = Some(ca.clone());
    }
}

/// Author, committer, signing key and allowed signers.
fn git_identity_fields(is: &mut Issues<'_>, g: &RawGit, git: &mut GitConfig) {
    if let Some(a) = &g.author {
        if !a.email.contains('@') {
            is.push(
                "git.author.email",
                format!("`{}` is not an e-mail address", a.email),
                "write e.g. tidegate@example.com",
            );
        }
        git.author = Identity {
            name: a.name.clone(),
            email: a.email.clone(),
        };
    }
    if let Some(c) = &g.committer {
        git.committer = Some(Identity {
            name: c.name.clone(),
            email: c.email.clone(),
        });
    }
    if let Some(k) = &g.signing_key {
        is.file("git.signingKey", k);
        git.signing_key = Some(k.clone());
    }
    if let Some(s) = &g.allowed_signers {
        is.file("git.allowedSigners", s);
        git.allowed_signers = Some(s.clone());
    }
}

fn git_auth(is: &mut Issues<'_>, auth: RawGitAuth) -> Option<GitAuth> {
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
        let token = is.secret("git.auth.token", &t.secret)?;
        return Some(GitAuth::Token {
            username: t.username.unwrap_or_else(|| "tidegate".into()),
            token,
        });
    }
    if let Some(p) = auth.password {
        return match (p.username, is.secret("git.auth.password", &p.secret)) {
            (Some(username), Some(password)) => Some(GitAuth::UserPassword { username, password }),
            (None, _) => {
                is.push("git.auth.password.username", "missing", "add the user name");
                None
            }
            _ => None,
        };
    }
    auth.ssh.and_then(|s| ssh_auth(is, s))
}

fn ssh_auth(is: &mut Issues<'_>, s: RawSsh) -> Option<GitAuth> {
    let passphrase = s.passphrase.and_then(|p| {
        let flat = RawSecretFlat {
            file: p.file,
            env: p.env,
        };
        is.secret("git.auth.ssh.passphrase", &flat)
    });
    match (s.private_key, s.known_hosts) {
        (Some(key), Some(kh)) => {
            is.file("git.auth.ssh.privateKey", &key);
            is.file("git.auth.ssh.knownHosts", &kh);
            Some(GitAuth::SshKey {
                username: s.username.unwrap_or_else(|| "git".into()),
                private_key: key,
                passphrase,
                known_hosts: kh,
            })
        }
        (None, _) => {
            is.push(
                "git.auth.ssh.privateKey",
                "missing",
                "name the private key file",
            );
            None
        }
        (_, None) => {
            is.push(
                "git.auth.ssh.knownHosts",
                "missing: unknown host keys are never accepted",
                "name a known_hosts file listing the server's key",
            );
            None
        }
    }
}

fn control(is: &mut Issues<'_>, c: &RawControl, git: &GitConfig) {
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
}

/// The `prometheus` section's part of the configuration.
struct PrometheusSection {
    config: PrometheusConfig,
    reporter: String,
    health_interval: Duration,
}

fn prometheus(is: &mut Issues<'_>, p: RawPrometheus) -> PrometheusSection {
    let url = p.url.unwrap_or_default();
    if url.trim().is_empty() {
        is.push(
            "prometheus.url",
            "Prometheus is not set",
            "set prometheus.url (or TIDEGATE_PROMETHEUS_URL)",
        );
    } else if !(url.starts_with("http://") || url.starts_with("https://")) {
        is.push(
            "prometheus.url",
            format!("`{url}` is not an http(s) URL"),
            "write e.g. http://prometheus.monitoring:9090",
        );
    }
    let mut config = PrometheusConfig::new(url);
    config.timeout = is.duration("prometheus.timeout", p.timeout.as_deref(), config.timeout);
    prometheus_auth(is, p.bearer_token_file, p.basic_auth, &mut config);
    if let Some(ca) = p.ca_file {
        is.file("prometheus.caFile", &ca);
        config.ca_file = Some(ca);
    }
    let reporter = p.reporter.unwrap_or_else(|| "destination".into());
    if !matches!(reporter.as_str(), "destination" | "source") {
        is.push(
            "prometheus.reporter",
            format!("`{reporter}` is not an Istio reporter"),
            "use destination (default) or source",
        );
    }
    PrometheusSection {
        config,
        reporter,
        health_interval: is.duration(
            "prometheus.healthInterval",
            p.health_interval.as_deref(),
            Duration::from_secs(15),
        ),
    }
}

fn prometheus_auth(
    is: &mut Issues<'_>,
    bearer: Option<PathBuf>,
    basic: Option<RawBasic>,
    config: &mut PrometheusConfig,
) {
    match (bearer, basic) {
        (Some(_), Some(_)) => is.push(
            "prometheus",
            "both bearerTokenFile and basicAuth are set",
            "keep one",
        ),
        (Some(f), None) => {
            is.file("prometheus.bearerTokenFile", &f);
            config.auth = PromAuth::BearerTokenFile(f);
        }
        (None, Some(b)) => {
            is.file("prometheus.basicAuth.passwordFile", &b.password_file);
            config.auth = PromAuth::Basic {
                username: b.username,
                password_file: b.password_file,
            };
        }
        (None, None) => {}
    }
}

/// The `server` section's part of the configuration.
struct ServerSection {
    listen: String,
    webhook_secret: Option<Vec<u8>>,
    max_body_bytes: usize,
}

fn server(is: &mut Issues<'_>, s: RawServer) -> ServerSection {
    let listen = s.listen.unwrap_or_else(|| "0.0.0.0:8080".into());
    if listen.parse::<std::net::SocketAddr>().is_err() {
        is.push(
            "server.listen",
            format!("`{listen}` is not an address:port"),
            "write e.g. 0.0.0.0:8080 or 127.0.0.1:0",
        );
    }
    ServerSection {
        listen,
        webhook_secret: s.webhook_secret_file.and_then(|f| webhook_secret(is, &f)),
        max_body_bytes: s.max_body_bytes.unwrap_or(1024 * 1024),
    }
}

fn webhook_secret(is: &mut Issues<'_>, f: &Path) -> Option<Vec<u8>> {
    if !is.environment {
        return None;
    }
    match std::fs::read_to_string(f) {
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
    }
}

fn leader_election(is: &mut Issues<'_>, l: RawLease) -> Option<LeaseConfig> {
    let duration = is.duration(
        "leaderElection.leaseDuration",
        l.lease_duration.as_deref(),
        Duration::from_secs(15),
    );
    let hostname = is.env.get("HOSTNAME").cloned();
    l.enabled.then(|| LeaseConfig {
        name: l.lease_name.unwrap_or_else(|| "tidegate".into()),
        duration,
        identity: l
            .identity
            .or(hostname)
            .unwrap_or_else(|| format!("tidegate-{}", std::process::id())),
    })
}

fn retry(is: &mut Issues<'_>, r: &RawRetry) -> RetryConfig {
    let d = RetryConfig::default();
    let initial = is.duration(
        "retry.initialDelay",
        r.initial_delay.as_deref(),
        d.initial_delay,
    );
    let max = is.duration("retry.maxDelay", r.max_delay.as_deref(), d.max_delay);
    let report_after = is.duration(
        "retry.reportAfter",
        r.report_after.as_deref(),
        d.report_after,
    );
    if max < initial {
        is.push(
            "retry.maxDelay",
            format!(
                "{} is shorter than retry.initialDelay {}",
                crate::units::duration(max),
                crate::units::duration(initial)
            ),
            "make maxDelay at least initialDelay",
        );
    }
    RetryConfig {
        initial_delay: initial,
        max_delay: max,
        report_after,
    }
}

fn notifications(is: &mut Issues<'_>, raw: &[ChannelConfig]) -> Vec<Channel> {
    match crate::notify::validate_channels(raw) {
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
    }
}
