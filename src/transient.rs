//! The one question every adapter error answers: would retrying help?
//!
//! Transient errors (a conflict, throttling, a server error, a timeout, a dropped connection, a
//! Prometheus or Git server that does not answer) are retried with backoff. Permanent ones (a
//! request the server rejects, a missing object, a route that cannot be managed, failed
//! authentication) will not change on their own: the daemon shows them in the rollout's status
//! at once. A transient error that lasts past `retry.reportAfter` is shown the same way.

/// Whether an error may go away by itself.
pub trait Transient {
    /// True when the same call may succeed later without anyone changing anything.
    fn is_transient(&self) -> bool;
}

impl Transient for crate::git::GitError {
    fn is_transient(&self) -> bool {
        use crate::git::GitError as E;
        matches!(
            self,
            E::Fetch { .. } | E::Push { .. } | E::PushRetriesExhausted { .. } | E::Read(_)
        )
    }
}

impl Transient for crate::metrics::MetricsError {
    fn is_transient(&self) -> bool {
        use crate::metrics::MetricsError as E;
        matches!(self, E::Unreachable(_) | E::Timeout(_))
    }
}

impl Transient for crate::mesh::istio::IstioError {
    fn is_transient(&self) -> bool {
        // The shape of an object is what it is until someone edits it.
        false
    }
}

impl Transient for crate::mesh::istio::router::RouterError {
    fn is_transient(&self) -> bool {
        use crate::mesh::istio::router::{RouterError as E, is_retryable};
        match self {
            E::Discovery(_) => true,
            E::Api { source, .. } => is_retryable(source),
            E::NotServed | E::Rejected { .. } | E::Istio(_) | E::Encode(_) => false,
        }
    }
}

impl Transient for crate::notify::NotifyError {
    fn is_transient(&self) -> bool {
        matches!(self, crate::notify::NotifyError::Failed { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::istio::IstioError;
    use crate::mesh::istio::router::RouterError;
    use crate::metrics::MetricsError;

    fn api(code: u16) -> RouterError {
        RouterError::Api {
            action: "patch".into(),
            attempts: 1,
            source: kube::Error::Api(
                kube::core::Status::failure("x", "y")
                    .with_code(code)
                    .boxed(),
            ),
        }
    }

    #[test]
    fn kubernetes_errors_read_without_rust_debug() {
        let text = api(404).to_string();
        assert_eq!(text, "failed to patch after 1 attempts: 404 y: x");
        assert!(!text.contains("Status {"), "{text}");
    }

    #[test]
    fn kubernetes_errors_are_classed_by_status_code() {
        for code in [409, 429, 500, 503, 504] {
            assert!(api(code).is_transient(), "{code} is transient");
        }
        for code in [400, 403, 404, 422] {
            assert!(!api(code).is_transient(), "{code} is permanent");
        }
        let shape = RouterError::Istio(IstioError::UnsupportedRoute {
            vs: "a".into(),
            route: "primary".into(),
            detail: "sends to v1".into(),
        });
        assert!(!shape.is_transient());
    }

    #[test]
    fn metrics_and_git_errors_are_classed() {
        assert!(MetricsError::Unreachable("x".into()).is_transient());
        assert!(!MetricsError::BadQuery("x".into()).is_transient());
        let auth = crate::git::GitError::Auth {
            url: "u".into(),
            reason: "r".into(),
        };
        assert!(!auth.is_transient());
        let fetch = crate::git::GitError::Fetch {
            url: "u".into(),
            reason: "r".into(),
        };
        assert!(fetch.is_transient());
    }
}
