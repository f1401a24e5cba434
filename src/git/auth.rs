//! Credentials for the plans repository: where they are read from, and URL redaction so they
//! never reach a log line or an error message.

use std::fmt;
use std::path::PathBuf;

use super::GitError;

/// Where a secret (token, password, key passphrase) is read from. Never inline in config.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A file; surrounding whitespace (the trailing newline) is stripped.
    File(PathBuf),
    /// An environment variable.
    Env(String),
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::File(p) => write!(f, "File({})", p.display()),
            SecretSource::Env(v) => write!(f, "Env({v})"),
        }
    }
}

/// A secret value. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl SecretSource {
    pub(crate) fn read(&self, what: &'static str) -> Result<Secret, GitError> {
        let raw = match self {
            SecretSource::File(path) => {
                std::fs::read_to_string(path).map_err(|e| GitError::ReadFile {
                    what,
                    path: path.clone(),
                    reason: e.to_string(),
                })?
            }
            SecretSource::Env(var) => std::env::var(var).map_err(|e| GitError::ReadEnv {
                what,
                var: var.clone(),
                reason: e.to_string(),
            })?,
        };
        let value = raw.trim().to_string();
        if value.is_empty() {
            let where_ = match self {
                SecretSource::File(p) => format!("file {}", p.display()),
                SecretSource::Env(v) => format!("environment variable {v}"),
            };
            return Err(GitError::Config(format!("{what} in {where_} is empty")));
        }
        Ok(Secret(value))
    }
}

/// How tidegate authenticates to the remote.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Auth {
    /// No credentials (local paths, `file://`, public HTTP).
    #[default]
    None,
    /// HTTP(S) token, sent as the password of HTTP basic authentication.
    Token {
        /// User name sent with the token (most hosts ignore it; GitLab wants `oauth2`).
        username: String,
        token: SecretSource,
    },
    /// HTTP(S) user name and password.
    UserPassword {
        username: String,
        password: SecretSource,
    },
    /// SSH private key; the server's host key must be listed in `known_hosts`.
    SshKey {
        /// User name when the URL has none (default `git`).
        username: String,
        private_key: PathBuf,
        passphrase: Option<SecretSource>,
        known_hosts: PathBuf,
    },
}

/// The URL with any `user:password@` part removed, safe for logs and errors.
pub fn redact_url(url: &str) -> String {
    // scheme://userinfo@host/... → scheme://host/...  ; scp-like user@host:path keeps the user
    // (it is a login name, not a secret) but never carries a password.
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let host = match authority.rfind('@') {
            Some(i) => {
                let user = &authority[..i];
                let user = user.split(':').next().unwrap_or("");
                if scheme.starts_with("http") || user.is_empty() {
                    authority[i + 1..].to_string()
                } else {
                    format!("{user}@{}", &authority[i + 1..])
                }
            }
            None => authority.to_string(),
        };
        let path = path.split(['?', '#']).next().unwrap_or("");
        format!("{scheme}://{host}{path}")
    } else {
        url.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_userinfo_of_http_urls() {
        assert_eq!(
            redact_url("https://bob:s3cret@git.example.com/org/repo.git"),
            "https://git.example.com/org/repo.git"
        );
        assert_eq!(
            redact_url("http://tok@127.0.0.1:8080/r.git?x=y"),
            "http://127.0.0.1:8080/r.git"
        );
        assert_eq!(
            redact_url("ssh://git:pw@host:22/r.git"),
            "ssh://git@host:22/r.git"
        );
        assert_eq!(redact_url("/srv/git/plans.git"), "/srv/git/plans.git");
    }

    #[test]
    fn secret_debug_hides_value() {
        let s = Secret("hunter2".into());
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn empty_secret_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("tok");
        std::fs::write(&p, "\n").expect("write");
        let err = SecretSource::File(p).read("token").expect_err("empty");
        assert!(err.to_string().contains("token"), "{err}");
    }
}
