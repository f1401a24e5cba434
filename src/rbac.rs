//! The Kubernetes API calls tidegate makes, one row per (group, resource, verb), with why.
//!
//! This table is the contract between the code and the RBAC in `deploy/`: the test
//! `tests/deploy_manifests.rs` checks that the ClusterRole and Role grant exactly these verbs
//! and nothing more. Whoever adds a call to the Kubernetes API adds its row here (and the rule
//! in `deploy/kustomize/base/rbac.yaml`); API discovery (`/api`, `/apis`) needs no row, every
//! authenticated client may read it (`system:discovery`).

/// Where the permission is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// In every namespace that has rollouts: granted by the ClusterRole.
    Cluster,
    /// Only in tidegate's own namespace: granted by a Role there.
    OwnNamespace,
}

/// One kind of request tidegate sends to the Kubernetes API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ApiCall {
    /// API group (`""` for the core group).
    pub group: &'static str,
    /// Plural resource name.
    pub resource: &'static str,
    /// RBAC verb.
    pub verb: &'static str,
    pub scope: Scope,
    /// What the call is for.
    pub why: &'static str,
}

const fn call(
    group: &'static str,
    resource: &'static str,
    verb: &'static str,
    scope: Scope,
    why: &'static str,
) -> ApiCall {
    ApiCall {
        group,
        resource,
        verb,
        scope,
        why,
    }
}

/// Every API call tidegate makes. Nothing here touches Secrets, Pods or workloads: tidegate
/// moves traffic only through the VirtualService (it reads Services, never writes them).
pub const API_CALLS: &[ApiCall] = &[
    call(
        "networking.istio.io",
        "virtualservices",
        "get",
        Scope::Cluster,
        "read the managed routes before every write and read them back after it (drift)",
    ),
    call(
        "networking.istio.io",
        "virtualservices",
        "list",
        Scope::Cluster,
        "preflight: find every VirtualService of the rollout's namespace (shadowing, host overlap)",
    ),
    call(
        "networking.istio.io",
        "virtualservices",
        "watch",
        Scope::Cluster,
        "notice edits by others (drift) without polling",
    ),
    call(
        "networking.istio.io",
        "virtualservices",
        "patch",
        Scope::Cluster,
        "set weights, header routes and mirrors with a JSON Patch guarded by `test` operations",
    ),
    call(
        "networking.istio.io",
        "destinationrules",
        "get",
        Scope::Cluster,
        "preflight: the stable and canary subsets exist and the host matches",
    ),
    call(
        "networking.istio.io",
        "destinationrules",
        "list",
        Scope::Cluster,
        "preflight: the DestinationRules of the rollout's namespace",
    ),
    call(
        "networking.istio.io",
        "destinationrules",
        "watch",
        Scope::Cluster,
        "re-run preflight when a DestinationRule changes",
    ),
    call(
        "security.istio.io",
        "peerauthentications",
        "get",
        Scope::Cluster,
        "preflight: mTLS mode against the DestinationRule's TLS mode",
    ),
    call(
        "security.istio.io",
        "peerauthentications",
        "list",
        Scope::Cluster,
        "preflight: PeerAuthentications of the rollout's namespace and istio-system",
    ),
    call(
        "security.istio.io",
        "peerauthentications",
        "watch",
        Scope::Cluster,
        "re-run preflight when the mTLS mode changes",
    ),
    call(
        "networking.istio.io",
        "gateways",
        "get",
        Scope::Cluster,
        "preflight: the Gateway a VirtualService binds exists and admits its hosts",
    ),
    call(
        "networking.istio.io",
        "gateways",
        "list",
        Scope::Cluster,
        "preflight: Gateways of the rollout's namespace and of the namespaces its VirtualService binds (istio-system's ingress)",
    ),
    call(
        "networking.istio.io",
        "serviceentries",
        "get",
        Scope::Cluster,
        "preflight: hosts and ports of routes defined by ServiceEntries",
    ),
    call(
        "networking.istio.io",
        "serviceentries",
        "list",
        Scope::Cluster,
        "preflight: ServiceEntries of the rollout's namespace and of the namespaces its routes name",
    ),
    call(
        "",
        "services",
        "get",
        Scope::Cluster,
        "preflight: every destination host of the VirtualService is a Service, with the port routed to",
    ),
    call(
        "",
        "services",
        "list",
        Scope::Cluster,
        "preflight: Services of the rollout's namespace and of the namespaces its routes name",
    ),
    call(
        "coordination.k8s.io",
        "leases",
        "get",
        Scope::OwnNamespace,
        "leader election: read the lease",
    ),
    call(
        "coordination.k8s.io",
        "leases",
        "create",
        Scope::OwnNamespace,
        "leader election: create the lease on first start",
    ),
    call(
        "coordination.k8s.io",
        "leases",
        "patch",
        Scope::OwnNamespace,
        "leader election: acquire and renew the lease (kube-lease-manager patches it)",
    ),
    call(
        "events.k8s.io",
        "events",
        "create",
        Scope::Cluster,
        "record rollout transitions as Events on the VirtualService (kubectl describe)",
    ),
];

/// The verbs granted on one (group, resource) at one scope, sorted.
pub fn verbs(scope: Scope, group: &str, resource: &str) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = API_CALLS
        .iter()
        .filter(|c| c.scope == scope && c.group == group && c.resource == resource)
        .map(|c| c.verb)
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_unique_and_explained() {
        for (i, a) in API_CALLS.iter().enumerate() {
            assert!(!a.why.is_empty(), "{a:?} has no reason");
            assert!(!a.verb.contains('*') && !a.resource.contains('*') && !a.group.contains('*'));
            assert_ne!(
                a.resource, "secrets",
                "tidegate never reads Secrets through the API"
            );
            for b in &API_CALLS[i + 1..] {
                assert!(
                    (a.group, a.resource, a.verb, a.scope)
                        != (b.group, b.resource, b.verb, b.scope),
                    "duplicate row {a:?}"
                );
            }
        }
        assert_eq!(
            verbs(Scope::Cluster, "networking.istio.io", "virtualservices"),
            vec!["get", "list", "patch", "watch"]
        );
        // Listed when preflight runs, never watched.
        for (group, resource) in [
            ("networking.istio.io", "gateways"),
            ("networking.istio.io", "serviceentries"),
            ("", "services"),
        ] {
            assert_eq!(verbs(Scope::Cluster, group, resource), vec!["get", "list"]);
        }
    }
}
