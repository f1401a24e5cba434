//! The mesh adapter: how tidegate moves traffic. A small [`TrafficRouter`] trait (set the
//! managed routes, read them back, clear tidegate's additions) with the Istio implementation in
//! [`istio`]: pure route/patch/preflight logic over JSON values plus a thin kube client part.

pub mod istio;
pub mod manifests;

use std::future::Future;

use crate::plan::{Plan, RolloutId};
use crate::rollout::{ReadBack, RouteState};

/// Which routes of which objects a rollout manages: the mesh-relevant part of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub rollout: RolloutId,
    /// Destination host of the service (short name or FQDN).
    pub service: String,
    pub virtual_service: String,
    pub destination_rule: String,
    /// Named http routes; empty = the http routes that send to `stable`.
    pub routes: Vec<String>,
    pub stable: String,
    pub canary: String,
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
    type Error: std::error::Error + Send + Sync + 'static;

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
