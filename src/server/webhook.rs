//! Git push webhooks (GitHub, GitLab, Gitea): who sent it, whether it is authentic, and whether
//! it concerns the watched branch. Pure: headers and body in, a verdict out.

use hmac::{KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = hmac::Hmac<Sha256>;

/// The forge that sent a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    GitHub,
    GitLab,
    Gitea,
}

impl Provider {
    /// Bounded label value for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::GitHub => "github",
            Provider::GitLab => "gitlab",
            Provider::Gitea => "gitea",
        }
    }
}

/// Why a webhook was refused. `Unauthorized` maps to 401, everything else to 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("missing signature: the webhook secret is configured, so {0} must be sent")]
    MissingSignature(&'static str),
    #[error("signature does not match the configured webhook secret")]
    BadSignature,
    #[error(
        "not a recognised push webhook: expected an X-GitHub-Event, X-Gitlab-Event or X-Gitea-Event header"
    )]
    UnknownProvider,
    #[error("malformed signature header {0}: expected hex HMAC-SHA256")]
    MalformedSignature(&'static str),
    #[error("the body is not JSON: {0}")]
    BadBody(String),
}

impl WebhookError {
    pub fn is_unauthorized(&self) -> bool {
        matches!(
            self,
            WebhookError::MissingSignature(_) | WebhookError::BadSignature
        )
    }
}

/// What to do with an authentic webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A push to the watched branch: fetch now.
    Fetch { provider: Provider },
    /// Authentic, but nothing to do (a ping, another branch, another event).
    Ignore { provider: Provider, why: String },
}

/// Headers of interest, lower-cased names.
pub trait Headers {
    fn get(&self, name: &str) -> Option<&str>;
}

impl Headers for axum::http::HeaderMap {
    fn get(&self, name: &str) -> Option<&str> {
        axum::http::HeaderMap::get(self, name).and_then(|v| v.to_str().ok())
    }
}

impl Headers for [(&str, &str)] {
    fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

fn verify_hmac(
    secret: &[u8],
    body: &[u8],
    hex_sig: &str,
    header: &'static str,
) -> Result<(), WebhookError> {
    let sig = hex::decode(hex_sig.trim()).map_err(|_| WebhookError::MalformedSignature(header))?;
    let mut mac = HmacSha256::new_from_slice(secret).map_err(|_| WebhookError::BadSignature)?;
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&sig)
        .map_err(|_| WebhookError::BadSignature)
}

/// Check a webhook and decide. `secret`: when set, a valid signature (GitHub, Gitea) or token
/// (GitLab) is required. `branch`: the watched branch (`main`).
pub fn check(
    headers: &(impl Headers + ?Sized),
    body: &[u8],
    secret: Option<&[u8]>,
    branch: &str,
) -> Result<Action, WebhookError> {
    let (provider, event) = if let Some(e) = headers.get("x-gitea-event") {
        (Provider::Gitea, e)
    } else if let Some(e) = headers.get("x-github-event") {
        (Provider::GitHub, e)
    } else if let Some(e) = headers.get("x-gitlab-event") {
        (Provider::GitLab, e)
    } else {
        return Err(WebhookError::UnknownProvider);
    };
    if let Some(secret) = secret {
        match provider {
            Provider::GitHub => {
                let sig = headers
                    .get("x-hub-signature-256")
                    .ok_or(WebhookError::MissingSignature("X-Hub-Signature-256"))?;
                let hex_sig = sig
                    .strip_prefix("sha256=")
                    .ok_or(WebhookError::MalformedSignature("X-Hub-Signature-256"))?;
                verify_hmac(secret, body, hex_sig, "X-Hub-Signature-256")?;
            }
            Provider::Gitea => {
                let sig = headers
                    .get("x-gitea-signature")
                    .ok_or(WebhookError::MissingSignature("X-Gitea-Signature"))?;
                verify_hmac(secret, body, sig, "X-Gitea-Signature")?;
            }
            Provider::GitLab => {
                let token = headers
                    .get("x-gitlab-token")
                    .ok_or(WebhookError::MissingSignature("X-Gitlab-Token"))?;
                if !bool::from(token.as_bytes().ct_eq(secret)) {
                    return Err(WebhookError::BadSignature);
                }
            }
        }
    }
    let is_push = match provider {
        Provider::GitHub | Provider::Gitea => event.eq_ignore_ascii_case("push"),
        Provider::GitLab => event.eq_ignore_ascii_case("Push Hook"),
    };
    if !is_push {
        return Ok(Action::Ignore {
            provider,
            why: format!("event `{event}` is not a push"),
        });
    }
    let json: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| WebhookError::BadBody(e.to_string()))?;
    let wanted = format!("refs/heads/{branch}");
    match json.get("ref").and_then(|r| r.as_str()) {
        Some(r) if r != wanted => Ok(Action::Ignore {
            provider,
            why: format!("push to {r}, watching {wanted}"),
        }),
        _ => Ok(Action::Fetch { provider }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &[u8], body: &[u8]) -> String {
        let mut mac = HmacSha256::new_from_slice(secret).expect("key");
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    const BODY: &[u8] = br#"{"ref":"refs/heads/main","after":"abc"}"#;

    #[test]
    fn github_signature_is_checked() {
        let good = format!("sha256={}", sign(b"s3cret", BODY));
        let h: &[(&str, &str)] = &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &good)];
        assert_eq!(
            check(h, BODY, Some(b"s3cret"), "main"),
            Ok(Action::Fetch {
                provider: Provider::GitHub
            })
        );
        let bad = format!("sha256={}", sign(b"other", BODY));
        let h: &[(&str, &str)] = &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &bad)];
        let e = check(h, BODY, Some(b"s3cret"), "main").expect_err("bad signature");
        assert!(e.is_unauthorized());
        let h: &[(&str, &str)] = &[("X-GitHub-Event", "push")];
        assert!(
            check(h, BODY, Some(b"s3cret"), "main")
                .expect_err("missing")
                .is_unauthorized()
        );
        // Tampered body.
        let h: &[(&str, &str)] = &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &good)];
        assert_eq!(
            check(h, b"{\"ref\":\"refs/heads/main\"}", Some(b"s3cret"), "main"),
            Err(WebhookError::BadSignature)
        );
    }

    #[test]
    fn gitlab_token_and_gitea_signature() {
        let h: &[(&str, &str)] = &[
            ("X-Gitlab-Event", "Push Hook"),
            ("X-Gitlab-Token", "s3cret"),
        ];
        assert!(matches!(
            check(h, BODY, Some(b"s3cret"), "main"),
            Ok(Action::Fetch { .. })
        ));
        let h: &[(&str, &str)] = &[
            ("X-Gitlab-Event", "Push Hook"),
            ("X-Gitlab-Token", "s3creT"),
        ];
        assert_eq!(
            check(h, BODY, Some(b"s3cret"), "main"),
            Err(WebhookError::BadSignature)
        );
        let sig = sign(b"k", BODY);
        let h: &[(&str, &str)] = &[
            ("X-Gitea-Event", "push"),
            ("X-Gitea-Signature", &sig),
            ("X-GitHub-Event", "push"),
        ];
        assert_eq!(
            check(h, BODY, Some(b"k"), "main"),
            Ok(Action::Fetch {
                provider: Provider::Gitea
            })
        );
    }

    #[test]
    fn other_branches_events_and_garbage() {
        let h: &[(&str, &str)] = &[("X-GitHub-Event", "push")];
        let other = br#"{"ref":"refs/heads/feature"}"#;
        assert!(matches!(
            check(h, other, None, "main"),
            Ok(Action::Ignore { .. })
        ));
        let h: &[(&str, &str)] = &[("X-GitHub-Event", "ping")];
        assert!(matches!(
            check(h, b"{}", None, "main"),
            Ok(Action::Ignore { .. })
        ));
        let h: &[(&str, &str)] = &[("X-GitHub-Event", "push")];
        assert!(matches!(
            check(h, b"not json", None, "main"),
            Err(WebhookError::BadBody(_))
        ));
        let h: &[(&str, &str)] = &[("Content-Type", "application/json")];
        assert_eq!(
            check(h, BODY, None, "main"),
            Err(WebhookError::UnknownProvider)
        );
        let h: &[(&str, &str)] = &[
            ("X-GitHub-Event", "push"),
            ("X-Hub-Signature-256", "sha256=zz"),
        ];
        assert_eq!(
            check(h, BODY, Some(b"k"), "main"),
            Err(WebhookError::MalformedSignature("X-Hub-Signature-256"))
        );
    }
}
