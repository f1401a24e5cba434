//! Talking to the remote: credentials callbacks (token, user/password, SSH key), SSH host keys
//! checked against a `known_hosts` file, HTTPS certificates checked against an extra CA bundle,
//! and classification of libgit2's errors into messages that never carry a credential.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use git2::{CertificateCheckStatus, Cred, CredentialType, RemoteCallbacks};
use hmac::{KeyInit, Mac};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use ssh_key::known_hosts::{HostPatterns, KnownHosts, Marker};

use super::auth::Secret;
use super::{Auth, GitConfig, GitError, redact_url};

/// Per-operation record of what the callbacks saw, read after libgit2 returns.
#[derive(Debug, Default)]
pub(crate) struct CallState {
    credential_calls: u32,
    /// Set when the server refused the credentials we offered.
    pub auth_refused: Option<String>,
    pub host_key_refused: Option<(String, String)>,
    pub tls_refused: Option<(String, String)>,
    /// `(ref, message)` for every ref the server refused to update.
    pub push_rejections: Vec<(String, String)>,
}

/// Resolved connection settings of one remote (secrets read once at start).
pub(crate) struct Transport {
    pub url: String,
    pub redacted: String,
    auth: ResolvedAuth,
    ca_certs: Vec<CertificateDer<'static>>,
    ssh_target: Option<SshTarget>,
}

enum ResolvedAuth {
    None,
    UserPass {
        username: String,
        password: Secret,
    },
    SshKey {
        username: String,
        private_key: PathBuf,
        passphrase: Option<Secret>,
        known_hosts: PathBuf,
    },
}

/// Host and port of an SSH URL, for the `known_hosts` lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SshTarget {
    pub host: String,
    pub port: u16,
}

impl SshTarget {
    /// `ssh://[user@]host[:port]/path` or scp-like `[user@]host:path`.
    pub(crate) fn parse(url: &str) -> Option<SshTarget> {
        if let Some(rest) = url
            .strip_prefix("ssh://")
            .or_else(|| url.strip_prefix("git+ssh://"))
        {
            let authority = rest.split('/').next().unwrap_or("");
            let hostport = authority.rsplit('@').next().unwrap_or("");
            let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
                let (h, after) = inner.split_once(']')?;
                let port = after
                    .strip_prefix(':')
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(22);
                (h.to_string(), port)
            } else {
                match hostport.rsplit_once(':') {
                    Some((h, p)) => (h.to_string(), p.parse().ok()?),
                    None => (hostport.to_string(), 22),
                }
            };
            return (!host.is_empty()).then_some(SshTarget { host, port });
        }
        if url.contains("://") || url.starts_with('/') || url.starts_with('.') {
            return None;
        }
        // scp-like: a colon before the first slash.
        let (before, _) = url.split_once(':')?;
        if before.contains('/') {
            return None;
        }
        let host = before.rsplit('@').next().unwrap_or("").to_string();
        (!host.is_empty()).then_some(SshTarget { host, port: 22 })
    }

    /// The names `known_hosts` lists this target under.
    fn lookup_name(&self) -> String {
        if self.port == 22 {
            self.host.clone()
        } else {
            format!("[{}]:{}", self.host, self.port)
        }
    }
}

/// Whether `url` names a remote (as opposed to a local path).
fn is_url(url: &str) -> bool {
    url.contains("://") || SshTarget::parse(url).is_some()
}

/// A local path is handed to libgit2 as an absolute path.
pub(crate) fn normalise_url(url: &str) -> Result<String, GitError> {
    if is_url(url) {
        return Ok(url.to_string());
    }
    let p = Path::new(url);
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| GitError::Config(format!("cannot resolve {url}: {e}")))?
            .join(p)
    };
    Ok(abs.to_string_lossy().into_owned())
}

impl Transport {
    pub(crate) fn new(config: &GitConfig) -> Result<Transport, GitError> {
        let url = normalise_url(&config.url)?;
        let redacted = redact_url(&url);
        if url.contains("://") && url.starts_with("http") && redacted != url {
            return Err(GitError::Config(format!(
                "credentials in the repository URL are not allowed ({redacted}); use a token or password file or environment variable"
            )));
        }
        let ssh_target = SshTarget::parse(&url);
        let auth = match &config.auth {
            Auth::None => ResolvedAuth::None,
            Auth::Token { username, token } => ResolvedAuth::UserPass {
                username: username.clone(),
                password: token.read("git token")?,
            },
            Auth::UserPassword { username, password } => ResolvedAuth::UserPass {
                username: username.clone(),
                password: password.read("git password")?,
            },
            Auth::SshKey {
                username,
                private_key,
                passphrase,
                known_hosts,
            } => {
                if ssh_target.is_none() {
                    return Err(GitError::Config(format!(
                        "SSH key authentication needs an ssh:// or user@host:path URL, not {redacted}"
                    )));
                }
                for (what, p) in [
                    ("SSH private key", private_key),
                    ("known_hosts", known_hosts),
                ] {
                    std::fs::metadata(p).map_err(|e| GitError::ReadFile {
                        what,
                        path: p.clone(),
                        reason: e.to_string(),
                    })?;
                }
                ResolvedAuth::SshKey {
                    username: username.clone(),
                    private_key: private_key.clone(),
                    passphrase: passphrase
                        .as_ref()
                        .map(|p| p.read("SSH key passphrase"))
                        .transpose()?,
                    known_hosts: known_hosts.clone(),
                }
            }
        };
        if ssh_target.is_some() && !matches!(auth, ResolvedAuth::SshKey { .. }) {
            return Err(GitError::Config(format!(
                "{redacted} is an SSH URL: configure an SSH key and a known_hosts file"
            )));
        }
        let ca_certs = match &config.ca_bundle {
            None => Vec::new(),
            Some(path) => load_ca_bundle(path)?,
        };
        Ok(Transport {
            url,
            redacted,
            auth,
            ca_certs,
            ssh_target,
        })
    }

    /// Callbacks for one fetch or push; `state` records what happened for error reporting.
    pub(crate) fn callbacks<'a>(&'a self, state: Rc<RefCell<CallState>>) -> RemoteCallbacks<'a> {
        let mut cb = RemoteCallbacks::new();
        let cred_state = state.clone();
        cb.credentials(move |_url, username_from_url, allowed| {
            let mut st = cred_state.borrow_mut();
            if allowed == CredentialType::USERNAME {
                // Only the user name is asked for (SSH, before the key): not an attempt.
                if let ResolvedAuth::SshKey { username, .. } = &self.auth {
                    return Cred::username(username_from_url.unwrap_or(username));
                }
            }
            st.credential_calls += 1;
            if st.credential_calls > 1 {
                // libgit2 asks again only when the server refused what we gave.
                let reason = match &self.auth {
                    ResolvedAuth::None => "the server requires credentials and none are configured",
                    ResolvedAuth::UserPass { .. } => {
                        "the server refused the configured credentials"
                    }
                    ResolvedAuth::SshKey { .. } => "the server refused the configured SSH key",
                };
                st.auth_refused = Some(reason.to_string());
                return Err(git2::Error::from_str(reason));
            }
            match &self.auth {
                ResolvedAuth::None => {
                    let reason = "the server requires credentials and none are configured";
                    st.auth_refused = Some(reason.to_string());
                    Err(git2::Error::from_str(reason))
                }
                ResolvedAuth::UserPass { username, password } => {
                    if !allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
                        let reason = "the server does not accept a user name and password";
                        st.auth_refused = Some(reason.to_string());
                        return Err(git2::Error::from_str(reason));
                    }
                    Cred::userpass_plaintext(username, password.expose())
                }
                ResolvedAuth::SshKey {
                    username,
                    private_key,
                    passphrase,
                    ..
                } => Cred::ssh_key(
                    username_from_url.unwrap_or(username),
                    None,
                    private_key,
                    passphrase.as_ref().map(|p| p.expose()),
                ),
            }
        });
        let cert_state = state.clone();
        cb.certificate_check(move |cert, host| {
            if let Some(hostkey) = cert.as_hostkey() {
                return self.check_host_key(hostkey, host).map_err(|reason| {
                    let shown = self
                        .ssh_target
                        .as_ref()
                        .map(|t| t.lookup_name())
                        .unwrap_or_else(|| host.to_string());
                    cert_state.borrow_mut().host_key_refused = Some((shown, reason.clone()));
                    git2::Error::from_str(&reason)
                });
            }
            if let Some(x509) = cert.as_x509() {
                if self.ca_certs.is_empty() {
                    return Ok(CertificateCheckStatus::CertificatePassthrough);
                }
                return match verify_with_bundle(&self.ca_certs, x509.data(), host) {
                    Ok(()) => Ok(CertificateCheckStatus::CertificateOk),
                    Err(reason) => {
                        // Not trusted through the bundle: the system trust store decides.
                        cert_state.borrow_mut().tls_refused = Some((host.to_string(), reason));
                        Ok(CertificateCheckStatus::CertificatePassthrough)
                    }
                };
            }
            Ok(CertificateCheckStatus::CertificatePassthrough)
        });
        let push_state = state;
        cb.push_update_reference(move |refname, status| {
            if let Some(msg) = status {
                push_state
                    .borrow_mut()
                    .push_rejections
                    .push((refname.to_string(), msg.to_string()));
            }
            Ok(())
        });
        cb
    }

    fn check_host_key(
        &self,
        hostkey: &git2::cert::CertHostkey<'_>,
        host: &str,
    ) -> Result<CertificateCheckStatus, String> {
        let ResolvedAuth::SshKey { known_hosts, .. } = &self.auth else {
            return Err("no known_hosts file is configured".into());
        };
        let target = self.ssh_target.clone().unwrap_or(SshTarget {
            host: host.to_string(),
            port: 22,
        });
        let raw = hostkey
            .hostkey()
            .ok_or_else(|| "the SSH library gave no raw host key to check".to_string())?;
        let offered = ssh_key::PublicKey::from_bytes(raw)
            .map_err(|e| format!("cannot decode the server's host key: {e}"))?;
        let text = std::fs::read_to_string(known_hosts)
            .map_err(|e| format!("cannot read known_hosts {}: {e}", known_hosts.display()))?;
        let name = target.lookup_name();
        let mut listed = false;
        for entry in KnownHosts::new(&text) {
            let Ok(entry) = entry else { continue };
            if !host_matches(entry.host_patterns(), &name) {
                continue;
            }
            let same = entry.public_key().key_data() == offered.key_data();
            match entry.marker() {
                Some(Marker::Revoked) if same => {
                    return Err(format!(
                        "the host key of {name} is marked @revoked in known_hosts"
                    ));
                }
                Some(_) => continue,
                None => {}
            }
            listed = true;
            if same {
                return Ok(CertificateCheckStatus::CertificateOk);
            }
        }
        let fp = offered.fingerprint(ssh_key::HashAlg::Sha256);
        if listed {
            Err(format!(
                "the host key of {name} ({fp}) does not match known_hosts {}: possible man-in-the-middle",
                known_hosts.display()
            ))
        } else {
            Err(format!(
                "{name} is not in known_hosts {} (offered {} key {fp})",
                known_hosts.display(),
                offered.algorithm().as_str()
            ))
        }
    }

    /// Turn a failed libgit2 network operation into a clear, credential-free error.
    pub(crate) fn classify(
        &self,
        e: &git2::Error,
        state: &CallState,
        generic: impl FnOnce(String, String) -> GitError,
    ) -> GitError {
        if let Some((host, reason)) = &state.host_key_refused {
            return GitError::HostKey {
                host: host.clone(),
                reason: reason.clone(),
            };
        }
        if let Some(reason) = &state.auth_refused {
            return GitError::Auth {
                url: self.redacted.clone(),
                reason: reason.clone(),
            };
        }
        if e.class() == git2::ErrorClass::Http && e.message().contains("401") {
            return GitError::Auth {
                url: self.redacted.clone(),
                reason: "the server refused the credentials (HTTP 401)".into(),
            };
        }
        if e.class() == git2::ErrorClass::Ssh && e.message().to_lowercase().contains("auth") {
            return GitError::Auth {
                url: self.redacted.clone(),
                reason: "the server refused the configured SSH key".into(),
            };
        }
        if e.code() == git2::ErrorCode::Certificate || e.class() == git2::ErrorClass::Ssl {
            let host = state
                .tls_refused
                .as_ref()
                .map(|(h, _)| h.clone())
                .unwrap_or_else(|| self.redacted.clone());
            let mut reason = self.scrub(e.message());
            if let Some((_, r)) = &state.tls_refused {
                reason = format!("{reason}; not trusted through the CA bundle either: {r}");
            }
            return GitError::Tls { host, reason };
        }
        generic(self.redacted.clone(), self.scrub(e.message()))
    }
}

impl Transport {
    /// Remove the raw URL and any configured secret from a library message.
    fn scrub(&self, message: &str) -> String {
        let mut out = message.replace(&self.url, &self.redacted);
        if let ResolvedAuth::UserPass { password, .. } = &self.auth {
            out = out.replace(password.expose(), "<redacted>");
        }
        out
    }
}

fn host_matches(patterns: &HostPatterns, name: &str) -> bool {
    match patterns {
        HostPatterns::HashedName { salt, hash } => {
            let Ok(mut mac) = hmac::Hmac::<sha1::Sha1>::new_from_slice(salt) else {
                return false;
            };
            mac.update(name.as_bytes());
            mac.verify_slice(hash).is_ok()
        }
        HostPatterns::Patterns(list) => {
            let mut matched = false;
            for p in list {
                if let Some(neg) = p.strip_prefix('!') {
                    if wildcard_match(neg, name) {
                        return false;
                    }
                } else if wildcard_match(p, name) {
                    matched = true;
                }
            }
            matched
        }
    }
}

/// OpenSSH pattern matching: `*` any run, `?` one character.
pub(crate) fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

fn load_ca_bundle(path: &Path) -> Result<Vec<CertificateDer<'static>>, GitError> {
    let bytes = std::fs::read(path).map_err(|e| GitError::ReadFile {
        what: "CA bundle",
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&bytes).collect();
    let certs = certs.map_err(|e| GitError::ReadFile {
        what: "CA bundle",
        path: path.to_path_buf(),
        reason: format!("not a PEM certificate bundle: {e}"),
    })?;
    if certs.is_empty() {
        return Err(GitError::ReadFile {
            what: "CA bundle",
            path: path.to_path_buf(),
            reason: "no certificates in the file".into(),
        });
    }
    Ok(certs)
}

/// Check a server's leaf certificate against the extra CA bundle and the host name.
fn verify_with_bundle(
    bundle: &[CertificateDer<'static>],
    leaf: &[u8],
    host: &str,
) -> Result<(), String> {
    let anchors: Vec<_> = bundle
        .iter()
        .filter_map(|c| webpki::anchor_from_trusted_cert(c).ok())
        .collect();
    let leaf = CertificateDer::from(leaf);
    let ee = webpki::EndEntityCert::try_from(&leaf).map_err(|e| format!("bad certificate: {e}"))?;
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        bundle,
        UnixTime::now(),
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .map_err(|e| format!("certificate chain: {e}"))?;
    let name = ServerName::try_from(host).map_err(|e| format!("host name {host}: {e}"))?;
    ee.verify_is_valid_for_subject_name(&name)
        .map_err(|e| format!("certificate is not valid for {host}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ssh_targets() {
        assert_eq!(
            SshTarget::parse("ssh://git@127.0.0.1:2222/srv/r.git"),
            Some(SshTarget {
                host: "127.0.0.1".into(),
                port: 2222
            })
        );
        assert_eq!(
            SshTarget::parse("git@github.com:org/repo.git"),
            Some(SshTarget {
                host: "github.com".into(),
                port: 22
            })
        );
        assert_eq!(SshTarget::parse("/srv/git/r.git"), None);
        assert_eq!(SshTarget::parse("https://h/r.git"), None);
        assert_eq!(SshTarget::parse("file:///srv/r.git"), None);
    }

    #[test]
    fn wildcards_match_like_openssh() {
        assert!(wildcard_match("*.example.com", "git.example.com"));
        assert!(wildcard_match("[127.0.0.1]:22?2", "[127.0.0.1]:2202"));
        assert!(!wildcard_match("*.example.com", "example.org"));
        assert!(host_matches(
            &HostPatterns::Patterns(vec!["*.corp".into(), "!bad.corp".into()]),
            "good.corp"
        ));
        assert!(!host_matches(
            &HostPatterns::Patterns(vec!["*.corp".into(), "!bad.corp".into()]),
            "bad.corp"
        ));
    }

    #[test]
    fn hashed_known_hosts_names_match() {
        // `ssh-keygen -H` of "[127.0.0.1]:2222" with this salt.
        let salt = b"0123456789abcdefghij".to_vec();
        let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(&salt).expect("hmac");
        mac.update(b"[127.0.0.1]:2222");
        let out = mac.finalize().into_bytes();
        let mut hash = [0u8; 20];
        hash.copy_from_slice(&out);
        let pats = HostPatterns::HashedName { salt, hash };
        assert!(host_matches(&pats, "[127.0.0.1]:2222"));
        assert!(!host_matches(&pats, "[127.0.0.1]:2223"));
    }
}
