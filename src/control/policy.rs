//! Who may steer a rollout: allowed author e-mail patterns and, optionally, a required commit
//! signature from a trusted key. Pure: the Git adapter verifies signatures and says what it found.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

/// What the Git adapter found out about a commit's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "state")]
pub enum SignatureState {
    /// Signed by a key in `allowed_signers`; `signer` is the principal it is listed under.
    Verified { signer: String },
    /// The commit is not signed.
    Missing,
    /// Signed, but the signature does not verify or the key is not trusted.
    Invalid { reason: String },
    /// Signatures were not checked (the policy does not require them).
    NotChecked,
}

/// The facts about one commit that the policy decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    pub id: String,
    pub author_name: String,
    pub author_email: String,
    pub message: String,
    pub signature: SignatureState,
}

/// Errors building a policy.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("invalid allowed-author pattern `{pattern}`: {source}")]
    Pattern {
        pattern: String,
        #[source]
        source: globset::Error,
    },
}

/// The control policy. Build with [`Policy::new`].
#[derive(Debug, Clone)]
pub struct Policy {
    patterns: Vec<String>,
    allowed: GlobSet,
    require_signature: bool,
}

impl Policy {
    /// `allowed_authors`: glob patterns over author e-mails (`*@example.com`), matched
    /// case-insensitively; empty means anyone who can push. `require_signature`: refuse controls
    /// whose commit is not signed by a trusted key.
    pub fn new(allowed_authors: &[String], require_signature: bool) -> Result<Policy, PolicyError> {
        let mut b = GlobSetBuilder::new();
        for p in allowed_authors {
            let glob = GlobBuilder::new(p)
                .case_insensitive(true)
                .literal_separator(false)
                .build()
                .map_err(|source| PolicyError::Pattern {
                    pattern: p.clone(),
                    source,
                })?;
            b.add(glob);
        }
        let allowed = b.build().map_err(|source| PolicyError::Pattern {
            pattern: allowed_authors.join(", "),
            source,
        })?;
        Ok(Policy {
            patterns: allowed_authors.to_vec(),
            allowed,
            require_signature,
        })
    }

    /// Anyone who can push may steer; no signature needed.
    pub fn open() -> Policy {
        Policy {
            patterns: Vec::new(),
            allowed: GlobSet::empty(),
            require_signature: false,
        }
    }

    pub fn requires_signature(&self) -> bool {
        self.require_signature
    }

    /// `Ok(())` when the commit may steer rollouts, otherwise why not (recorded in the status).
    pub fn decide(&self, commit: &CommitInfo) -> Result<(), String> {
        if !self.patterns.is_empty() && !self.allowed.is_match(&commit.author_email) {
            return Err(format!(
                "author <{}> is not allowed to steer rollouts (allowed: {})",
                commit.author_email,
                self.patterns.join(", ")
            ));
        }
        if self.require_signature {
            match &commit.signature {
                SignatureState::Verified { .. } => {}
                SignatureState::Missing => {
                    return Err("the commit is not signed and the policy requires a signature from a trusted key".into());
                }
                SignatureState::Invalid { reason } => {
                    return Err(format!("the commit signature was refused: {reason}"));
                }
                SignatureState::NotChecked => {
                    return Err("the policy requires a signature but it was not checked".into());
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(email: &str, signature: SignatureState) -> CommitInfo {
        CommitInfo {
            id: "abc".into(),
            author_name: "A".into(),
            author_email: email.into(),
            message: "m".into(),
            signature,
        }
    }

    #[test]
    fn author_patterns_are_case_insensitive_globs() {
        let p = Policy::new(
            &["*@Example.com".into(), "ops-bot@ci.internal".into()],
            false,
        )
        .expect("valid patterns");
        assert!(
            p.decide(&commit("ana@example.COM", SignatureState::NotChecked))
                .is_ok()
        );
        assert!(
            p.decide(&commit("ops-bot@ci.internal", SignatureState::NotChecked))
                .is_ok()
        );
        let refused = p
            .decide(&commit("mallory@evil.test", SignatureState::NotChecked))
            .expect_err("must refuse");
        assert!(refused.contains("mallory@evil.test"), "{refused}");
    }

    #[test]
    fn required_signatures_refuse_missing_and_invalid() {
        let p = Policy::new(&[], true).expect("valid");
        assert!(
            p.decide(&commit(
                "a@x",
                SignatureState::Verified {
                    signer: "a@x".into()
                }
            ))
            .is_ok()
        );
        assert!(p.decide(&commit("a@x", SignatureState::Missing)).is_err());
        let e = p
            .decide(&commit(
                "a@x",
                SignatureState::Invalid {
                    reason: "untrusted key".into(),
                },
            ))
            .expect_err("refuse");
        assert!(e.contains("untrusted key"));
        assert!(
            Policy::open()
                .decide(&commit("x@y", SignatureState::Missing))
                .is_ok()
        );
    }

    #[test]
    fn bad_patterns_are_reported() {
        let e = Policy::new(&["[a-".into()], false).expect_err("invalid glob");
        assert!(e.to_string().contains("[a-"));
    }
}
