//! The resource kinds the emulator serves and the discovery documents that describe them.

use serde_json::{Value, json};

/// One served resource kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceDef {
    /// API group; empty for the core group.
    pub group: String,
    /// Served versions, the preferred (storage) one first.
    pub versions: Vec<String>,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    /// A custom resource (CRD): strategic-merge patch is refused with 415 like the real server.
    pub custom: bool,
}

impl ResourceDef {
    fn new(
        group: &str,
        versions: &[&str],
        kind: &str,
        plural: &str,
        namespaced: bool,
        short: &[&str],
        custom: bool,
    ) -> ResourceDef {
        ResourceDef {
            group: group.to_string(),
            versions: versions.iter().map(|v| v.to_string()).collect(),
            kind: kind.to_string(),
            plural: plural.to_string(),
            singular: kind.to_lowercase(),
            namespaced,
            short_names: short.iter().map(|s| s.to_string()).collect(),
            custom,
        }
    }

    /// `group/version` (or just `version` for the core group).
    pub fn group_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{}", self.group, version)
        }
    }

    /// `plural.group` as the API server names a resource in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

/// The kinds served by default; `istio_versions` are the `networking.istio.io` versions, the
/// preferred one first (Istio ≥ 1.22 serves `v1`, `v1beta1`, `v1alpha3`; older ones lack `v1`).
pub fn default_resources(istio_versions: &[&str]) -> Vec<ResourceDef> {
    vec![
        ResourceDef::new(
            "",
            &["v1"],
            "Namespace",
            "namespaces",
            false,
            &["ns"],
            false,
        ),
        ResourceDef::new("", &["v1"], "Service", "services", true, &["svc"], false),
        ResourceDef::new("", &["v1"], "ConfigMap", "configmaps", true, &["cm"], false),
        ResourceDef::new(
            "coordination.k8s.io",
            &["v1"],
            "Lease",
            "leases",
            true,
            &[],
            false,
        ),
        ResourceDef::new(
            "events.k8s.io",
            &["v1"],
            "Event",
            "events",
            true,
            &["ev"],
            false,
        ),
        ResourceDef::new(
            "networking.istio.io",
            istio_versions,
            "VirtualService",
            "virtualservices",
            true,
            &["vs"],
            true,
        ),
        ResourceDef::new(
            "networking.istio.io",
            istio_versions,
            "DestinationRule",
            "destinationrules",
            true,
            &["dr"],
            true,
        ),
        ResourceDef::new(
            "networking.istio.io",
            istio_versions,
            "Gateway",
            "gateways",
            true,
            &["gw"],
            true,
        ),
        ResourceDef::new(
            "networking.istio.io",
            istio_versions,
            "ServiceEntry",
            "serviceentries",
            true,
            &["se"],
            true,
        ),
        ResourceDef::new(
            "security.istio.io",
            &["v1", "v1beta1"],
            "PeerAuthentication",
            "peerauthentications",
            true,
            &["pa"],
            true,
        ),
    ]
}

const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// `GET /api`: `APIVersions`.
pub fn core_versions(addr: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr}],
    })
}

/// `GET /apis`: `APIGroupList` of every non-core group.
pub fn group_list(defs: &[ResourceDef]) -> Value {
    let mut groups: Vec<Value> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for d in defs.iter().filter(|d| !d.group.is_empty()) {
        if seen.contains(&d.group.as_str()) {
            continue;
        }
        seen.push(&d.group);
        groups.push(api_group(defs, &d.group));
    }
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /apis/{group}`: `APIGroup` (preferred version = the first served one).
pub fn api_group(defs: &[ResourceDef], group: &str) -> Value {
    let mut versions: Vec<String> = Vec::new();
    for d in defs.iter().filter(|d| d.group == group) {
        for v in &d.versions {
            if !versions.contains(v) {
                versions.push(v.clone());
            }
        }
    }
    let gv = |v: &String| json!({"groupVersion": format!("{group}/{v}"), "version": v});
    json!({
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": versions.iter().map(gv).collect::<Vec<_>>(),
        "preferredVersion": versions.first().map(gv).unwrap_or(Value::Null),
    })
}

/// Whether the group is served at all.
pub fn has_group(defs: &[ResourceDef], group: &str) -> bool {
    defs.iter().any(|d| d.group == group)
}

/// `GET /api/v1` or `/apis/{group}/{version}`: `APIResourceList`, `None` if not served.
pub fn resource_list(defs: &[ResourceDef], group: &str, version: &str) -> Option<Value> {
    let served: Vec<&ResourceDef> = defs
        .iter()
        .filter(|d| d.group == group && d.versions.iter().any(|v| v == version))
        .collect();
    if served.is_empty() {
        return None;
    }
    let resources: Vec<Value> = served
        .iter()
        .map(|d| {
            json!({
                "name": d.plural,
                "singularName": d.singular,
                "namespaced": d.namespaced,
                "kind": d.kind,
                "verbs": VERBS,
                "shortNames": d.short_names,
            })
        })
        .collect();
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": resources,
    }))
}
