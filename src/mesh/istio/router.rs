//! The kube side of the Istio router: discovery of the served `networking.istio.io` version,
//! watches that keep the [`MeshCache`] current, reads (from the cache when synced), guarded JSON
//! Patch writes with retries, read-back from the object the write returned. All route logic
//! lives in [`super::routes`]; this file only moves JSON between it and the API server.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::ApiResource;
use kube::discovery;
use serde_json::Value;
use tokio::sync::OnceCell;

mod listed;

use super::IstioError;
use super::cache::{CacheEvent, MeshCache};
use super::routes::{self, PatchPlan};
use crate::mesh::{Mesh, MeshKind, MeshObjects, ObjectKey, Target, TrafficRouter, WriteReport};
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
    #[error("failed to {action} after {attempts} attempts: {}", kube_message(.source))]
    Api {
        action: String,
        attempts: u32,
        #[source]
        source: kube::Error,
    },
    #[error("the API server rejected the patch of VirtualService {vs}: {}", kube_message(.source))]
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
/// A kube error for people: an API server's answer as `404 NotFound: <message>`, without the
/// Rust `Debug` dump of the whole `Status` that kube's own text appends.
pub fn kube_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} {}: {}", s.code, s.reason, s.message),
        other => other.to_string(),
    }
}

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
    resource: Arc<OnceCell<ApiResource>>,
    cache: Arc<MeshCache>,
    /// The watch tasks of each watched namespace (aborted when the namespace is dropped).
    watches: std::sync::Mutex<BTreeMap<String, Vec<tokio::task::AbortHandle>>>,
}

impl Drop for IstioRouter {
    fn drop(&mut self) {
        let watches = self.watches.get_mut().unwrap_or_else(|e| e.into_inner());
        for h in watches.values().flatten() {
            h.abort();
        }
    }
}

/// PeerAuthentication, which lives in another API group than the routing objects.
fn peer_authentication() -> ApiResource {
    ApiResource {
        group: "security.istio.io".into(),
        version: "v1".into(),
        api_version: "security.istio.io/v1".into(),
        kind: "PeerAuthentication".into(),
        plural: "peerauthentications".into(),
    }
}

/// The VirtualService resource at the version the cluster prefers.
async fn discover(client: &kube::Client) -> Result<ApiResource, RouterError> {
    let group = discovery::group(client, ISTIO_NETWORKING)
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
}

impl IstioRouter {
    pub fn new(client: kube::Client, retry: RetryPolicy) -> IstioRouter {
        IstioRouter {
            client,
            retry,
            resource: Arc::new(OnceCell::new()),
            cache: Arc::new(MeshCache::new()),
            watches: std::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// The cache the watches keep (for tests and benchmarks).
    pub fn cache(&self) -> &Arc<MeshCache> {
        &self.cache
    }

    /// The VirtualService resource at the version the cluster prefers (discovered once).
    pub async fn virtual_service_resource(&self) -> Result<&ApiResource, RouterError> {
        self.resource
            .get_or_try_init(|| discover(&self.client))
            .await
    }

    /// The resource of `kind` at the discovered version.
    fn resource_of(vs: &ApiResource, kind: MeshKind) -> ApiResource {
        match kind {
            MeshKind::VirtualService => vs.clone(),
            MeshKind::DestinationRule => Self::sibling(vs, "DestinationRule", "destinationrules"),
            MeshKind::PeerAuthentication => peer_authentication(),
        }
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
                    tracing::warn!(action, attempt = n, code = ?status_code(&e), delay = %crate::units::duration(delay), error = %e, "retrying");
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

    /// Read the VirtualService as JSON: from the watched cache when its namespace is synced,
    /// otherwise from the API server.
    pub async fn get_virtual_service(&self, target: &Target) -> Result<Value, RouterError> {
        if let Some(Some(vs)) = self.cache.get(&vs_key(target)) {
            return Ok(vs);
        }
        self.fetch_virtual_service(target).await
    }

    /// Read the VirtualService from the API server (never from the cache).
    async fn fetch_virtual_service(&self, target: &Target) -> Result<Value, RouterError> {
        let api = self.api(target).await?;
        let name = target.virtual_service.clone();
        let action = format!("read VirtualService {}/{}", target.rollout.namespace, name);
        let obj = self.with_retry(&action, || api.get(&name)).await?;
        Ok(serde_json::to_value(obj)?)
    }

    /// `kind` objects of `ns`: from the cache when synced, otherwise listed.
    async fn list_kind(&self, kind: MeshKind, ns: &str) -> Result<Vec<Value>, RouterError> {
        if let Some(objects) = self.cache.list(kind, ns) {
            return Ok(objects);
        }
        let vs = self.virtual_service_resource().await?.clone();
        let ar = Self::resource_of(&vs, kind);
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &ar);
        let lp = ListParams::default();
        let list = if kind == MeshKind::PeerAuthentication {
            // PeerAuthentication is optional: a cluster without it simply has none.
            match api.list(&lp).await {
                Ok(l) => l,
                Err(_) => return Ok(Vec::new()),
            }
        } else {
            let action = format!("list {} in {ns}", ar.plural);
            self.with_retry(&action, || api.list(&lp)).await?
        };
        list.items
            .into_iter()
            .map(|o| serde_json::to_value(o).map_err(RouterError::from))
            .collect()
    }

    /// The watched part of what preflight reads (the rest: [`IstioRouter::preflight_read`]):
    /// the VirtualServices and DestinationRules of the rollout's namespace and the
    /// PeerAuthentications there and in `istio-system`.
    pub async fn preflight_objects(&self, target: &Target) -> Result<Vec<Value>, RouterError> {
        let ns = target.rollout.namespace.as_str();
        let mut out = self.list_kind(MeshKind::VirtualService, ns).await?;
        out.extend(self.list_kind(MeshKind::DestinationRule, ns).await?);
        out.extend(self.list_kind(MeshKind::PeerAuthentication, ns).await?);
        if ns != "istio-system" {
            out.extend(
                self.list_kind(MeshKind::PeerAuthentication, "istio-system")
                    .await?,
            );
        }
        Ok(out)
    }

    /// Start watching `ns` for `kinds` (the watch tasks feed the cache until aborted).
    fn spawn_watches(&self, ns: &str, kinds: &[MeshKind]) -> Vec<tokio::task::AbortHandle> {
        kinds
            .iter()
            .map(|kind| {
                let task = watch_task(
                    self.client.clone(),
                    self.resource.clone(),
                    self.cache.clone(),
                    *kind,
                    ns.to_owned(),
                );
                tokio::spawn(task).abort_handle()
            })
            .collect()
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
        let refused = match result {
            Ok(obj) => {
                // The answer is the object as written: the read-back needs no second request.
                let now = serde_json::to_value(obj)?;
                let ns = &target.rollout.namespace;
                self.cache.record_own(MeshKind::VirtualService, ns, &now);
                return Ok(WriteReport {
                    patched: true,
                    patch: plan.ops,
                    read_back: routes::verify(&now, target, expected),
                });
            }
            Err(RouterError::Api { source, .. }) if status_code(&source) == Some(422) => source,
            Err(e) => return Err(e),
        };
        let now = self.fetch_virtual_service(target).await?;
        // A 422 is either a failed `test` (someone changed what we read: drift, do not fight) or
        // a rejection of what we wrote (schema, admission). If our guards still hold on the
        // object as it is now, it was the latter: report it as an error.
        if routes::apply(&now, &plan).is_ok() {
            return Err(RouterError::Rejected {
                vs: format!("{}/{}", target.rollout.namespace, target.virtual_service),
                source: refused,
            });
        }
        tracing::warn!(rollout = %target.rollout, error = %refused, "guarded patch refused: concurrent edit");
        Ok(WriteReport {
            patched: false,
            patch: Vec::new(),
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
        // Every rollout reads back every round: compare in the cache rather than copy the object.
        let cached = self
            .cache
            .with(&vs_key(target), |vs| routes::verify(vs, target, expected));
        if let Some(Some(read_back)) = cached {
            return Ok(read_back);
        }
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

impl Mesh for IstioRouter {
    async fn objects(&self, targets: &[Target]) -> Result<MeshObjects, RouterError> {
        self.preflight_read(targets).await
    }

    fn watch(&self, namespaces: &BTreeSet<String>) {
        let mut watches = self.watches.lock().unwrap_or_else(|e| e.into_inner());
        // PeerAuthentications of istio-system apply mesh-wide: watched whenever anything is.
        let mut wanted: BTreeMap<String, Vec<MeshKind>> = namespaces
            .iter()
            .map(|ns| (ns.clone(), MeshKind::ALL.to_vec()))
            .collect();
        if !wanted.is_empty() {
            wanted
                .entry("istio-system".into())
                .or_insert_with(|| vec![MeshKind::PeerAuthentication]);
        }
        watches.retain(|ns, handles| {
            let keep = wanted.contains_key(ns);
            if !keep {
                handles.iter().for_each(tokio::task::AbortHandle::abort);
                self.cache.forget(ns);
                tracing::debug!(namespace = %ns, "stopped watching");
            }
            keep
        });
        for (ns, kinds) in wanted {
            if let std::collections::btree_map::Entry::Vacant(slot) = watches.entry(ns) {
                tracing::debug!(namespace = %slot.key(), "watching mesh objects");
                let handles = self.spawn_watches(slot.key(), &kinds);
                slot.insert(handles);
            }
        }
    }

    async fn changes(&self) -> Vec<ObjectKey> {
        self.cache.changes().await
    }
}

/// The cache key of a target's VirtualService.
fn vs_key(target: &Target) -> ObjectKey {
    ObjectKey {
        kind: MeshKind::VirtualService,
        namespace: target.rollout.namespace.clone(),
        name: target.virtual_service.clone(),
    }
}

/// Whether a watcher error says the cluster does not serve the kind at all.
fn not_served(e: &kube::runtime::watcher::Error) -> bool {
    use kube::runtime::watcher::Error as W;
    match e {
        W::InitialListFailed(kube::Error::Api(s)) | W::WatchStartFailed(kube::Error::Api(s)) => {
            s.code == 404
        }
        _ => false,
    }
}

/// Feed the cache from a watch of `kind` in `ns` (kube's watcher: list, watch, relist after
/// `410 Gone`, backoff on errors) until the task is aborted.
async fn watch_task(
    client: kube::Client,
    resource: Arc<OnceCell<ApiResource>>,
    cache: Arc<MeshCache>,
    kind: MeshKind,
    ns: String,
) {
    use futures::StreamExt as _;
    use kube::runtime::{WatchStreamExt as _, watcher};
    let vs = loop {
        match resource.get_or_try_init(|| discover(&client)).await {
            Ok(ar) => break ar.clone(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot discover the Istio API; retrying in 5s");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    };
    let ar = IstioRouter::resource_of(&vs, kind);
    let api: Api<DynamicObject> = Api::namespaced_with(client, &ns, &ar);
    let mut events = std::pin::pin!(watcher(api, watcher::Config::default()).default_backoff());
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) if not_served(&e) => {
                cache.apply(kind, &ns, CacheEvent::NotServed);
                return;
            }
            Err(e) => {
                tracing::warn!(kind = kind.as_str(), namespace = %ns, error = %e, "watch failed; retrying");
                continue;
            }
        };
        let value = |o: DynamicObject| serde_json::to_value(o).unwrap_or(Value::Null);
        let event = match event {
            watcher::Event::Init => CacheEvent::Init,
            watcher::Event::InitApply(o) => CacheEvent::InitApply(value(o)),
            watcher::Event::InitDone => CacheEvent::InitDone,
            watcher::Event::Apply(o) => CacheEvent::Apply(value(o)),
            watcher::Event::Delete(o) => CacheEvent::Delete(value(o)),
        };
        cache.apply(kind, &ns, event);
    }
}
