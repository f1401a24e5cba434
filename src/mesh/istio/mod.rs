//! Istio: VirtualService route management ([`routes`], pure), preflight checks
//! ([`preflight`], pure), and the kube-backed [`router::IstioRouter`].

pub mod cache;
pub mod preflight;
pub mod router;
pub mod routes;

/// What went wrong managing Istio routes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IstioError {
    #[error("VirtualService {vs} cannot be managed: {detail}")]
    Shape { vs: String, detail: String },
    #[error(
        "VirtualService {vs} has no route named {route:?} (the plan's `routes` must name http routes)"
    )]
    RouteNotFound { vs: String, route: String },
    #[error("VirtualService {vs}: route {route} cannot be managed: {detail}")]
    UnsupportedRoute {
        vs: String,
        route: String,
        detail: String,
    },
    #[error("VirtualService {vs} has no route tidegate can manage: {detail}")]
    NoManagedRoutes { vs: String, detail: String },
    #[error("invalid route state {0}: weights must be within 0..=100")]
    InvalidState(String),
    #[error("failed to apply the JSON Patch: {0}")]
    Patch(String),
}
