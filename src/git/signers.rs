//! SSH commit signatures checked in Rust against an OpenSSH `allowed_signers` file (the format
//! of `ssh-keygen -Y verify` and git's `gpg.ssh.allowedSignersFile`).

use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use ssh_key::{HashAlg, PublicKey, SshSig};

use super::GitError;
use super::transport::wildcard_match;
use crate::control::SignatureState;

/// Namespace git uses for commit and tag signatures.
pub(crate) const GIT_NAMESPACE: &str = "git";

/// One line of `allowed_signers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignerEntry {
    /// E-mail patterns (`*`, `?`, `!negation`) of the people allowed to use the key.
    pub principals: Vec<String>,
    /// `namespaces="..."`: when present, must include `git`.
    pub namespaces: Option<Vec<String>>,
    pub valid_after: Option<DateTime<Utc>>,
    pub valid_before: Option<DateTime<Utc>>,
    pub key: PublicKey,
}

/// The parsed `allowed_signers` file.
#[derive(Debug, Clone)]
pub struct AllowedSigners {
    pub path: PathBuf,
    pub entries: Vec<SignerEntry>,
}

impl AllowedSigners {
    pub fn load(path: &Path) -> Result<AllowedSigners, GitError> {
        let text = std::fs::read_to_string(path).map_err(|e| GitError::ReadFile {
            what: "allowed_signers",
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        AllowedSigners::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<AllowedSigners, GitError> {
        let mut entries = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |reason: String| GitError::AllowedSigners {
                path: path.to_path_buf(),
                line: i + 1,
                reason,
            };
            let mut fields = tokens(line);
            let principals = fields
                .next()
                .ok_or_else(|| err("missing principals".into()))?;
            let mut next = fields.next().ok_or_else(|| err("missing key".into()))?;
            let mut options = None;
            if !looks_like_key_type(&next) {
                options = Some(next);
                next = fields
                    .next()
                    .ok_or_else(|| err("missing key type".into()))?;
            }
            let blob = fields
                .next()
                .ok_or_else(|| err("missing key data".into()))?;
            let key = PublicKey::from_openssh(&format!("{next} {blob}"))
                .map_err(|e| err(format!("invalid public key: {e}")))?;
            let mut entry = SignerEntry {
                principals: unquote(&principals)
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect(),
                namespaces: None,
                valid_after: None,
                valid_before: None,
                key,
            };
            if let Some(opts) = options {
                for opt in split_options(&opts) {
                    let (name, value) = match opt.split_once('=') {
                        Some((n, v)) => (n.trim().to_ascii_lowercase(), Some(unquote(v.trim()))),
                        None => (opt.trim().to_ascii_lowercase(), None),
                    };
                    match (name.as_str(), value) {
                        ("namespaces", Some(v)) => {
                            entry.namespaces =
                                Some(v.split(',').map(|s| s.trim().to_string()).collect())
                        }
                        ("valid-after", Some(v)) => {
                            entry.valid_after = Some(parse_time(&v).map_err(err)?)
                        }
                        ("valid-before", Some(v)) => {
                            entry.valid_before = Some(parse_time(&v).map_err(err)?)
                        }
                        ("cert-authority", _) => {
                            return Err(err(
                                "cert-authority entries are not supported; list the signing keys"
                                    .into(),
                            ));
                        }
                        (other, _) => return Err(err(format!("unknown option {other:?}"))),
                    }
                }
            }
            if entry.principals.is_empty() {
                return Err(err("no principals".into()));
            }
            entries.push(entry);
        }
        Ok(AllowedSigners {
            path: path.to_path_buf(),
            entries,
        })
    }

    /// Check `commit`'s signature: an SSH signature in namespace `git`, made by a key listed for
    /// `author_email`, valid at the commit time, over the commit's signed content.
    pub(crate) fn verify_commit(
        &self,
        repo: &git2::Repository,
        commit: &git2::Commit<'_>,
        author_email: &str,
    ) -> SignatureState {
        let (sig, data) = match repo.extract_signature(&commit.id(), None) {
            Ok(x) => x,
            Err(e) if e.code() == git2::ErrorCode::NotFound => return SignatureState::Missing,
            Err(e) => {
                return SignatureState::Invalid {
                    reason: format!("cannot read the signature: {}", e.message()),
                };
            }
        };
        let when =
            DateTime::from_timestamp(commit.committer().when().seconds(), 0).unwrap_or_default();
        self.verify(&sig, &data, author_email, when)
    }

    /// Verify an armored SSH signature over `data` for `email` at time `when`.
    pub fn verify(
        &self,
        armored: &[u8],
        data: &[u8],
        email: &str,
        when: DateTime<Utc>,
    ) -> SignatureState {
        let text = String::from_utf8_lossy(armored);
        if !text
            .trim_start()
            .starts_with("-----BEGIN SSH SIGNATURE-----")
        {
            return SignatureState::Invalid {
                reason: "the commit is signed with GPG or X.509; only SSH signatures are accepted"
                    .into(),
            };
        }
        let sig = match SshSig::from_pem(text.trim()) {
            Ok(s) => s,
            Err(e) => {
                return SignatureState::Invalid {
                    reason: format!("malformed SSH signature: {e}"),
                };
            }
        };
        let key = PublicKey::from(sig.public_key().clone());
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        if sig.namespace() != GIT_NAMESPACE {
            return SignatureState::Invalid {
                reason: format!("signature namespace is {:?}, not \"git\"", sig.namespace()),
            };
        }
        let with_key: Vec<&SignerEntry> = self
            .entries
            .iter()
            .filter(|e| e.key.key_data() == key.key_data())
            .collect();
        if with_key.is_empty() {
            return SignatureState::Invalid {
                reason: format!(
                    "signing key {fingerprint} is not in {}",
                    self.path.display()
                ),
            };
        }
        let allowed = with_key.iter().any(|e| {
            principal_matches(&e.principals, email)
                && e.namespaces
                    .as_ref()
                    .is_none_or(|ns| ns.iter().any(|n| wildcard_match(n, GIT_NAMESPACE)))
                && e.valid_after.is_none_or(|t| when >= t)
                && e.valid_before.is_none_or(|t| when < t)
        });
        if !allowed {
            return SignatureState::Invalid {
                reason: format!(
                    "signing key {fingerprint} is not allowed for {email} (principal, namespace or validity period)"
                ),
            };
        }
        match key.verify(GIT_NAMESPACE, data, &sig) {
            Ok(()) => SignatureState::Verified {
                signer: format!("{email} ({fingerprint})"),
            },
            Err(_) => SignatureState::Invalid {
                reason: format!("the signature by {fingerprint} does not match the commit content"),
            },
        }
    }
}

fn principal_matches(patterns: &[String], email: &str) -> bool {
    let mut matched = false;
    for p in patterns {
        if let Some(neg) = p.strip_prefix('!') {
            if wildcard_match(&neg.to_lowercase(), &email.to_lowercase()) {
                return false;
            }
        } else if wildcard_match(&p.to_lowercase(), &email.to_lowercase()) {
            matched = true;
        }
    }
    matched
}

fn looks_like_key_type(s: &str) -> bool {
    s.starts_with("ssh-") || s.starts_with("ecdsa-") || s.starts_with("sk-")
}

/// Whitespace-separated fields, where double quotes protect spaces.
fn tokens(line: &str) -> impl Iterator<Item = String> + '_ {
    let mut chars = line.chars().peekable();
    std::iter::from_fn(move || {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        chars.peek()?;
        let mut out = String::new();
        let mut quoted = false;
        while let Some(&c) = chars.peek() {
            if c == '"' {
                quoted = !quoted;
            } else if c.is_whitespace() && !quoted {
                break;
            }
            out.push(c);
            chars.next();
        }
        Some(out)
    })
}

/// Comma-separated options, where double quotes protect commas.
fn split_options(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn unquote(s: &str) -> String {
    s.trim_matches('"').to_string()
}

/// `YYYYMMDD[HHMM[SS]][Z]` (OpenSSH); without `Z` it is taken as UTC too.
fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    let digits = s.trim_end_matches(['Z', 'z']);
    let bad = || format!("invalid time {s:?} (expected YYYYMMDD[HHMM[SS]])");
    let date =
        NaiveDate::parse_from_str(digits.get(..8).ok_or_else(bad)?, "%Y%m%d").map_err(|_| bad())?;
    let rest = &digits[8..];
    let (h, m, sec) = match rest.len() {
        0 => (0, 0, 0),
        4 | 6 => {
            let n = |r: std::ops::Range<usize>| {
                rest.get(r)
                    .and_then(|x| x.parse::<u32>().ok())
                    .ok_or_else(bad)
            };
            (
                n(0..2)?,
                n(2..4)?,
                if rest.len() == 6 { n(4..6)? } else { 0 },
            )
        }
        _ => return Err(bad()),
    };
    let dt: NaiveDateTime = date.and_hms_opt(h, m, sec).ok_or_else(bad)?;
    Ok(dt.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILGxSDbCbyIsz1gvcIp8K1ecYNZ8JYzGeWSmdFyMF82D";

    #[test]
    fn parses_principals_options_and_comments() {
        let text = format!(
            "# people\nalice@example.com,*@ops.example.com namespaces=\"git,file\",valid-after=\"20250101\" {KEY} alice\n\"bob@example.com\" {KEY}\n"
        );
        let s = AllowedSigners::parse(Path::new("allowed_signers"), &text).expect("parse");
        assert_eq!(s.entries.len(), 2);
        assert_eq!(
            s.entries[0].principals,
            vec!["alice@example.com", "*@ops.example.com"]
        );
        assert_eq!(
            s.entries[0].namespaces,
            Some(vec!["git".to_string(), "file".to_string()])
        );
        assert!(s.entries[0].valid_after.is_some());
        assert_eq!(s.entries[1].principals, vec!["bob@example.com"]);
        assert!(principal_matches(
            &s.entries[0].principals,
            "Carol@ops.example.com"
        ));
    }

    #[test]
    fn rejects_bad_lines_with_line_numbers() {
        let err = AllowedSigners::parse(Path::new("as"), "\nalice@x ssh-ed25519 notbase64\n")
            .expect_err("bad key");
        assert!(err.to_string().contains("line 2"), "{err}");
        let err = AllowedSigners::parse(Path::new("as"), &format!("a@x cert-authority {KEY}"))
            .expect_err("ca");
        assert!(err.to_string().contains("cert-authority"), "{err}");
    }

    #[test]
    fn unsigned_and_gpg_signatures_are_reported() {
        let s = AllowedSigners::parse(Path::new("as"), &format!("a@x {KEY}")).expect("parse");
        let st = s.verify(
            b"-----BEGIN PGP SIGNATURE-----\n",
            b"data",
            "a@x",
            Utc::now(),
        );
        assert!(matches!(st, SignatureState::Invalid { reason } if reason.contains("GPG")));
    }

    #[test]
    fn parses_openssh_times() {
        assert_eq!(
            parse_time("20250102").expect("t").to_rfc3339(),
            "2025-01-02T00:00:00+00:00"
        );
        assert_eq!(
            parse_time("202501021304Z").expect("t").to_rfc3339(),
            "2025-01-02T13:04:00+00:00"
        );
        assert!(parse_time("2025").is_err());
    }
}
