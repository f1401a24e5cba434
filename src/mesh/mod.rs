//! The mesh adapter: how tidegate moves traffic. A small [`TrafficRouter`] trait (set the
//! managed routes, read them back, clear tidegate's additions) with the Istio implementation in
//! [`istio`]: pure route/patch/preflight logic over JSON values plus a thin kube client part.

pub mod istio;
pub mod manifests;

/// The preflight checks of the mesh tidegate drives (Istio).
pub use istio::preflight;
pub use istio::routes::stale_destinations;

/// The production mesh: Istio over a kube client, with a watched cache.
pub type DefaultMesh = istio::router::IstioRouter;

/// Connect the production mesh.
pub fn connect(client: kube::Client) -> DefaultMesh {
    istio::router::IstioRouter::new(client, istio::router::RetryPolicy::default())
}

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;

use crate::plan::{Plan, RolloutId, Split};
use crate::rollout::{ReadBack, RouteState};

/// Which routes of which objects a rollout manages: the mesh-relevant part of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub rollout: RolloutId,
    /// Destination host of the service (short name or FQDN).
    pub service: String,
    pub virtual_service: String,
    /// `None` when the plan splits by host.
    pub destination_rule: Option<String>,
    /// Named http routes; empty = the http routes that send to `stable`.
    pub routes: Vec<String>,
    /// Subset names, or Service hosts when `split` is [`Split::Host`].
    pub stable: String,
    pub canary: String,
    pub split: Split,
}

impl Target {
    pub fn from_plan(plan: &Plan) -> Target {
        Target {
            rollout: plan.id.clone(),
            service: plan.service.clone(),
            virtual_service: plan.virtual_service.clone(),
            destination_rule: plan.destination_rule.clone(),
            routes: plan.routes.clone(),
            stable: plan.stable.clone(),
            canary: plan.canary.clone(),
            split: plan.split,
        }
    }

    /// Whether the destination `host`/`subset` (read in `namespace`) is the stable side
    /// (`canary` false) or the canary side (`canary` true).
    pub fn is_side(&self, canary: bool, host: &str, subset: Option<&str>, namespace: &str) -> bool {
        let name = if canary { &self.canary } else { &self.stable };
        match self.split {
            Split::Subset => {
                istio::routes::same_host(&self.service, host, namespace) && subset == Some(name)
            }
            Split::Host => istio::routes::same_host(name, host, namespace) && subset.is_none(),
        }
    }

    /// The host and subset a destination of one side carries when tidegate writes it.
    pub fn destination(&self, canary: bool) -> (&str, Option<&str>) {
        let name = if canary { &self.canary } else { &self.stable };
        match self.split {
            Split::Subset => (&self.service, Some(name)),
            Split::Host => (name, None),
        }
    }

    /// How one side is named in messages: `host orders subset "v1"` or `host orders-canary`.
    pub fn describe(&self, canary: bool) -> String {
        match self.destination(canary) {
            (h, Some(s)) => format!("host {h} subset {s:?}"),
            (h, None) => format!("host {h}"),
        }
    }
}

/// What a write did.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteReport {
    /// False when the routes already were as asked and nothing was sent.
    pub patched: bool,
    /// The JSON Patch operations sent (empty when nothing was sent).
    pub patch: Vec<serde_json::Value>,
    /// What the routes look like after the write, read back from the cluster.
    pub read_back: ReadBack,
}

/// Moves traffic between the stable and canary subsets of a service.
///
/// Implementations touch only the managed routes and report, rather than overwrite, concurrent
/// edits: a write whose guarded values changed in between fails and comes back as
/// `ReadBack::Drifted`.
pub trait TrafficRouter: Send + Sync {
    type Error: std::error::Error + crate::transient::Transient + Send + Sync + 'static;

    /// Make the managed routes look like `state` (weights, header route, mirror).
    fn set_route(
        &self,
        target: &Target,
        state: &RouteState,
    ) -> impl Future<Output = Result<WriteReport, Self::Error>> + Send;

    /// Compare the routes in the cluster with `expected`.
    fn read_back(
        &self,
        target: &Target,
        expected: &RouteState,
    ) -> impl Future<Output = Result<ReadBack, Self::Error>> + Send;

    /// Remove everything tidegate added and leave the managed routes as `state`
    /// (restoring the original routes exactly when `state` is what they said before).
    fn clear(
        &self,
        target: &Target,
        state: &RouteState,
    ) -> impl Future<Output = Result<WriteReport, Self::Error>> + Send;
}

/// The kinds of mesh objects a rollout depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MeshKind {
    VirtualService,
    DestinationRule,
    PeerAuthentication,
}

impl MeshKind {
    pub const ALL: [MeshKind; 3] = [
        MeshKind::VirtualService,
        MeshKind::DestinationRule,
        MeshKind::PeerAuthentication,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MeshKind::VirtualService => "VirtualService",
            MeshKind::DestinationRule => "DestinationRule",
            MeshKind::PeerAuthentication => "PeerAuthentication",
        }
    }

    /// The kind named by an object's `kind` field.
    pub fn from_kind(kind: &str) -> Option<MeshKind> {
        MeshKind::ALL.into_iter().find(|k| k.as_str() == kind)
    }
}

/// One mesh object, by kind, namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub kind: MeshKind,
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind.as_str(), self.namespace, self.name)
    }
}

/// Whether a change of `key` concerns the rollout of `target`: its VirtualService or
/// DestinationRule, or a PeerAuthentication of its namespace (or the mesh-wide one).
pub fn concerns(key: &ObjectKey, target: &Target) -> bool {
    match key.kind {
        MeshKind::VirtualService => {
            key.namespace == target.rollout.namespace && key.name == target.virtual_service
        }
        MeshKind::DestinationRule => {
            key.namespace == target.rollout.namespace
                && target.destination_rule.as_ref() == Some(&key.name)
        }
        MeshKind::PeerAuthentication => {
            key.namespace == target.rollout.namespace || key.namespace == "istio-system"
        }
    }
}

/// What preflight read of the mesh for the rollouts of one namespace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MeshObjects {
    pub objects: Vec<serde_json::Value>,
    /// Where Services, ServiceEntries and Gateways were read (what lets a check call a host or
    /// a Gateway missing).
    pub seen: preflight::Seen,
    /// The kinds that could not be read (not served, forbidden): their checks say nothing.
    pub unread: Vec<preflight::Unread>,
}

/// Everything the daemon needs from the mesh: moving traffic ([`TrafficRouter`]), the objects
/// preflight checks, and news of changes made by others (a watch), so that drift or a broken
/// DestinationRule is seen at once rather than at the next interval.
pub trait Mesh: TrafficRouter {
    /// The objects preflight needs for `targets` (the rollouts of one namespace: the daemon asks
    /// once per namespace and turn): the VirtualServices and DestinationRules of the namespace,
    /// the PeerAuthentications there and in `istio-system`, and the Services, ServiceEntries
    /// and Gateways of the namespace and of the namespaces the rollouts' VirtualServices and
    /// DestinationRules refer to ([`preflight::referenced_namespaces`]).
    fn objects(
        &self,
        targets: &[Target],
    ) -> impl Future<Output = Result<MeshObjects, Self::Error>> + Send;

    /// Keep the objects of these namespaces watched (watches start and stop as plans come and go).
    fn watch(&self, namespaces: &BTreeSet<String>);

    /// Wait for changes of watched objects made by someone else; the keys changed since the
    /// previous call. Never resolves when nothing is watched.
    fn changes(&self) -> impl Future<Output = Vec<ObjectKey>> + Send;
}

impl<M: TrafficRouter> TrafficRouter for Arc<M> {
    type Error = M::Error;

    fn set_route(
        &self,
        target: &Target,
        state: &RouteState,
    ) -> impl Future<Output = Result<WriteReport, Self::Error>> + Send {
        M::set_route(self, target, state)
    }

    fn read_back(
        &self,
        target: &Target,
        expected: &RouteState,
    ) -> impl Future<Output = Result<ReadBack, Self::Error>> + Send {
        M::read_back(self, target, expected)
    }

    fn clear(
        &self,
        target: &Target,
        state: &RouteState,
    ) -> impl Future<Output = Result<WriteReport, Self::Error>> + Send {
        M::clear(self, target, state)
    }
}

impl<M: Mesh> Mesh for Arc<M> {
    fn objects(
        &self,
        targets: &[Target],
    ) -> impl Future<Output = Result<MeshObjects, Self::Error>> + Send {
        M::objects(self, targets)
    }

    fn watch(&self, namespaces: &BTreeSet<String>) {
        M::watch(self, namespaces)
    }

    fn changes(&self) -> impl Future<Output = Vec<ObjectKey>> + Send {
        M::changes(self)
    }
}
