//! The kube side of the Istio router: discovery of the served `networking.istio.io` version,
//! reads, guarded JSON Patch writes with retries, read-back. All route logic lives in
//! [`super::routes`]; this file only moves JSON between it and the API server.

use std::time::Duration;

use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::ApiResource;
use kube::discovery;
use serde_json::Value;
use tokio::sync::OnceCell;

use super::IstioError;
use super::routes::{self, PatchPlan};
use crate::mesh::{Target, TrafficRouter, WriteReport};
use crate::rollout::{ReadBack, RouteState};

/// The Istio API group tidegate reads and writes.
pub const ISTIO_NETWORKING: &str = "networking.istio.io";
/// Versions tidegate understands, newest first.
pub const SUPPORTED_VERSIONS: [&str; 3] = ["v1", "v1beta1", "v1alpha3"];

/// What went wrong talking to the cluster.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("failed to discover the Istio networking API: {0}")]
    Discovery(String),
    #[error(
        "the cluster serves no VirtualService in {ISTIO_NETWORKING} versions {SUPPORTED_VERSIONS:?}"
    )]
    NotServed,
    #[error("failed to {action} after {attempts} attempts: {source}")]
    Api {
        action: String,
        attempts: u32,
        #[source]
        source: kube::Error,
    },
    #[error("the API server rejected the patch of VirtualService {vs}: {source}")]
    Rejected {
        vs: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Istio(#[from] IstioError),
    #[error("failed to encode the JSON Patch: {0}")]
    Encode(#[from] serde_json::Error),
}

/// How often and how patiently to retry conflicts, server errors and timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, at least 1.
    pub attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// Delay before retry number `n` (1-based): exponential, capped.
    pub fn delay(&self, n: u32) -> Duration {
        let factor = 2u32.saturating_pow(n.saturating_sub(1));
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// Whether an error is worth another attempt: conflicts, throttling, server errors, transport.
pub fn is_retryable(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code == 409 || s.code == 429 || s.code >= 500,
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// The Istio router over a kube `Client`.
pub struct IstioRouter {
    client: kube::Client,
    retry: RetryPolicy,
    resource: OnceCell<ApiResource>,
}

impl IstioRouter {
    pub fn new(client: kube::Client, retry: RetryPolicy) -> IstioRouter {
        IstioRouter {
            client,
            retry,
            resource: OnceCell::new(),
        }
    }

    /// The VirtualService resource at the version the cluster prefers (discovered once).
    pub async fn virtual_service_resource(&self) -> Result<&ApiResource, RouterError> {
        self.resource
            .get_or_try_init(|| async {
                let group = discovery::group(&self.client, ISTIO_NETWORKING)
                    .await
                    .map_err(|e| RouterError::Discovery(e.to_string()))?;
                if let Some((ar, _)) = group.recommended_kind("VirtualService")
                    && SUPPORTED_VERSIONS.contains(&ar.version.as_str())
                {
                    return Ok(ar);
                }
                for v in SUPPORTED_VERSIONS {
                    if let Some((ar, _)) = group
                        .versioned_resources(v)
                        .into_iter()
                        .find(|(ar, _)| ar.kind == "VirtualService")
                    {
                        return Ok(ar);
                    }
                }
                Err(RouterError::NotServed)
            })
            .await
    }

    /// A resource of the Istio networking group at the discovered version (e.g. `DestinationRule`).
    fn sibling(vs: &ApiResource, kind: &str, plural: &str) -> ApiResource {
        ApiResource {
            group: vs.group.clone(),
            version: vs.version.clone(),
            api_version: vs.api_version.clone(),
            kind: kind.to_string(),
            plural: plural.to_string(),
        }
    }

    async fn api(&self, target: &Target) -> Result<Api<DynamicObject>, RouterError> {
        let ar = self.virtual_service_resource().await?;
        Ok(Api::namespaced_with(
            self.client.clone(),
            &target.rollout.namespace,
            ar,
        ))
    }

    async fn with_retry<T, F, Fut>(&self, action: &str, mut f: F) -> Result<T, RouterError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, kube::Error>>,
    {
        let attempts = self.retry.attempts.max(1);
        let mut n = 1;
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) if n < attempts && is_retryable(&e) => {
                    let delay = self.retry.delay(n);
                    tracing::warn!(action, attempt = n, code = ?status_code(&e), ?delay, error = %e, "retrying");
                    tokio::time::sleep(delay).await;
                    n += 1;
                }
                Err(source) => {
                    return Err(RouterError::Api {
                        action: action.to_string(),
                        attempts: n,
                        source,
                    });
                }
            }
        }
    }

    /// Read the VirtualService as JSON.
    pub async fn get_virtual_service(&self, target: &Target) -> Result<Value, RouterError> {
        let api = self.api(target).await?;
        let name = target.virtual_service.clone();
        let action = format!("read VirtualService {}/{}", target.rollout.namespace, name);
        let obj = self.with_retry(&action, || api.get(&name)).await?;
        Ok(serde_json::to_value(obj)?)
    }

    /// Everything preflight needs from the cluster: the VirtualServices and DestinationRules of
    /// the rollout's namespace and the PeerAuthentications there and in `istio-system`.
    pub async fn preflight_objects(&self, target: &Target) -> Result<Vec<Value>, RouterError> {
        let vs = self.virtual_service_resource().await?.clone();
        let ns = target.rollout.namespace.clone();
        let mut out = Vec::new();
        let sources = [
            (
                Self::sibling(&vs, "VirtualService", "virtualservices"),
                ns.clone(),
            ),
            (
                Self::sibling(&vs, "DestinationRule", "destinationrules"),
                ns.clone(),
            ),
        ];
        for (ar, ns) in sources {
            let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &ns, &ar);
            let action = format!("list {} in {ns}", ar.plural);
            let lp = ListParams::default();
            let list = self.with_retry(&action, || api.list(&lp)).await?;
            for o in list.items {
                out.push(serde_json::to_value(o)?);
            }
        }
        let pa = ApiResource {
            group: "security.istio.io".into(),
            version: "v1".into(),
            api_version: "security.istio.io/v1".into(),
            kind: "PeerAuthentication".into(),
            plural: "peerauthentications".into(),
        };
        for ns in [ns.as_str(), "istio-system"] {
            let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &pa);
            // PeerAuthentication is optional: a cluster without it simply has none.
            if let Ok(list) = api.list(&ListParams::default()).await {
                for o in list.items {
                    out.push(serde_json::to_value(o)?);
                }
            }
        }
        Ok(out)
    }

    async fn write(
        &self,
        target: &Target,
        expected: &RouteState,
        compute: impl Fn(&Value) -> Result<PatchPlan, IstioError>,
    ) -> Result<WriteReport, RouterError> {
        let vs = self.get_virtual_service(target).await?;
        let plan = compute(&vs)?;
        if plan.is_empty() {
            tracing::debug!(rollout = %target.rollout, "routes already as wanted; no write");
            return Ok(WriteReport {
                patched: false,
                patch: Vec::new(),
                read_back: routes::verify(&vs, target, expected),
            });
        }
        let api = self.api(target).await?;
        let patch = Patch::Json::<()>(plan.to_json_patch()?);
        let params = PatchParams::default();
        let name = target.virtual_service.clone();
        let action = format!("patch VirtualService {}/{}", target.rollout.namespace, name);
        let result = self
            .with_retry(&action, || api.patch(&name, &params, &patch))
            .await;
        let (patched, refused) = match result {
            Ok(_) => (true, None),
            Err(RouterError::Api { source, .. }) if status_code(&source) == Some(422) => {
                (false, Some(source))
            }
            Err(e) => return Err(e),
        };
        let now = self.get_virtual_service(target).await?;
        if let Some(source) = refused {
            // A 422 is either a failed `test` (someone changed what we read: drift, do not
            // fight) or a rejection of what we wrote (schema, admission). If our guards still
            // hold on the object as it is now, it was the latter: report it as an error.
            if routes::apply(&now, &plan).is_ok() {
                return Err(RouterError::Rejected {
                    vs: format!("{}/{}", target.rollout.namespace, target.virtual_service),
                    source,
                });
            }
            tracing::warn!(rollout = %target.rollout, error = %source, "guarded patch refused: concurrent edit");
        }
        Ok(WriteReport {
            patched,
            patch: if patched { plan.ops } else { Vec::new() },
            read_back: routes::verify(&now, target, expected),
        })
    }
}

impl TrafficRouter for IstioRouter {
    type Error = RouterError;

    async fn set_route(
        &self,
        target: &Target,
        state: &RouteState,
    ) -> Result<WriteReport, RouterError> {
        self.write(target, state, |vs| routes::plan_set(vs, target, state))
            .await
    }

    async fn read_back(
        &self,
        target: &Target,
        expected: &RouteState,
    ) -> Result<ReadBack, RouterError> {
        let vs = self.get_virtual_service(target).await?;
        Ok(routes::verify(&vs, target, expected))
    }

    async fn clear(&self, target: &Target, state: &RouteState) -> Result<WriteReport, RouterError> {
        let expected = RouteState {
            canary_weight: state.canary_weight,
            header_route: None,
            mirror_percent: 0,
        };
        self.write(target, &expected, |vs| {
            routes::plan_clear(vs, target, state)
        })
        .await
    }
}
