//! What the daemon's preflight reads from a cluster besides the watched objects: the
//! namespaces whose Services, ServiceEntries and Gateways it lists for a namespace's rollouts
//! ([`referenced_namespaces`]), where each kind was read ([`Seen`]: an empty list still says
//! "none there"), and the kinds it could not read ([`Unread`]: not served, or forbidden), whose
//! checks then say nothing — the live form of `lint`'s "kinds not seen".

use std::collections::BTreeSet;
use std::fmt;

use serde_json::Value;

use super::destinations::destinations;
use super::hosts::{self, cluster_parts, gateway_ref, strings_at};
use super::{NET, Object};
use crate::mesh::Target;
use crate::rbac::{self, Scope};

/// Where preflight read Services, ServiceEntries and Istio Gateways from the cluster. A
/// namespace listed here was read, even when nothing came back: a cluster host
/// `x.ns.svc.cluster.local` is judged missing only when the Services of `ns` were read, a
/// gateway reference `ns/name` only when the Gateways of `ns` were. Hosts outside the cluster
/// domain are never judged missing from a live read: ServiceEntries of namespaces that were not
/// read (exported to every namespace) may define them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    pub services: BTreeSet<String>,
    pub service_entries: BTreeSet<String>,
    pub gateways: BTreeSet<String>,
}

/// A kind preflight lists on demand (never watched).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ListedKind {
    Service,
    ServiceEntry,
    Gateway,
}

impl ListedKind {
    pub const ALL: [ListedKind; 3] = [
        ListedKind::Service,
        ListedKind::ServiceEntry,
        ListedKind::Gateway,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ListedKind::Service => "Service",
            ListedKind::ServiceEntry => "ServiceEntry",
            ListedKind::Gateway => "Gateway",
        }
    }

    /// API group (`""`: core).
    pub fn group(self) -> &'static str {
        match self {
            ListedKind::Service => "",
            ListedKind::ServiceEntry | ListedKind::Gateway => NET,
        }
    }

    /// Plural resource name, as RBAC names it.
    pub fn resource(self) -> &'static str {
        match self {
            ListedKind::Service => "services",
            ListedKind::ServiceEntry => "serviceentries",
            ListedKind::Gateway => "gateways",
        }
    }
}

impl Seen {
    /// Record that `kind` was read in `ns`.
    pub fn insert(&mut self, kind: ListedKind, ns: &str) {
        self.set_mut(kind).insert(ns.to_string());
    }

    /// Whether `kind` was read in `ns`.
    pub fn has(&self, kind: ListedKind, ns: &str) -> bool {
        self.set(kind).contains(ns)
    }

    fn set(&self, kind: ListedKind) -> &BTreeSet<String> {
        match kind {
            ListedKind::Service => &self.services,
            ListedKind::ServiceEntry => &self.service_entries,
            ListedKind::Gateway => &self.gateways,
        }
    }

    fn set_mut(&mut self, kind: ListedKind) -> &mut BTreeSet<String> {
        match kind {
            ListedKind::Service => &mut self.services,
            ListedKind::ServiceEntry => &mut self.service_entries,
            ListedKind::Gateway => &mut self.gateways,
        }
    }
}

/// Why a kind could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum UnreadWhy {
    /// The cluster does not serve the kind (`404`: its CRD is not installed).
    NotServed,
    /// tidegate may not list it there (`403`: RBAC).
    Forbidden,
}

impl UnreadWhy {
    pub fn as_str(self) -> &'static str {
        match self {
            UnreadWhy::NotServed => "not served",
            UnreadWhy::Forbidden => "forbidden",
        }
    }
}

/// A kind preflight could not read in a namespace: the checks that need it say nothing there,
/// and the daemon warns once (it never holds a rollout for this alone).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Unread {
    pub kind: ListedKind,
    pub namespace: String,
    pub why: UnreadWhy,
}

impl Unread {
    /// The RBAC rule that lets tidegate read the kind (the verbs of `src/rbac.rs`), as a
    /// ClusterRole rule in flow style.
    pub fn rbac_rule(&self) -> String {
        let verbs: Vec<String> =
            rbac::verbs(Scope::Cluster, self.kind.group(), self.kind.resource())
                .iter()
                .map(|v| format!("\"{v}\""))
                .collect();
        format!(
            "{{apiGroups: [\"{}\"], resources: [\"{}\"], verbs: [{}]}}",
            self.kind.group(),
            self.kind.resource(),
            verbs.join(", ")
        )
    }

    fn qualified(&self) -> String {
        match self.kind.group() {
            "" => self.kind.resource().to_string(),
            g => format!("{}.{g}", self.kind.resource()),
        }
    }
}

impl fmt::Display for Unread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.kind.as_str();
        let skipped = super::skipped_without(kind);
        match self.why {
            UnreadWhy::Forbidden => write!(
                f,
                "preflight may not list {} in namespace {} (403 Forbidden), so the checks that need {kind}s say nothing there: {skipped}; add this rule to tidegate's ClusterRole: {}",
                self.qualified(),
                self.namespace,
                self.rbac_rule()
            ),
            UnreadWhy::NotServed => write!(
                f,
                "the cluster does not serve {} (404 Not Found; listing it in namespace {}), so the checks that need {kind}s say nothing: {skipped}; once the kind is served, tidegate needs this rule in its ClusterRole: {}",
                self.qualified(),
                self.namespace,
                self.rbac_rule()
            ),
        }
    }
}

/// The namespace of a host Istio reads as a cluster service (`name` in `ns`, or
/// `name.x.svc.cluster.local`); `None` for anything else (`name.x` and `google.com` are not
/// cluster services to istiod).
fn host_namespace(host: &str, ns: &str) -> Option<String> {
    if host.is_empty() {
        return None;
    }
    let fqdn = hosts::qualify(host, ns);
    cluster_parts(&fqdn).map(|(ns, _)| ns.to_string())
}

/// The namespaces whose Services, ServiceEntries and Gateways preflight lists for `targets`
/// (the rollouts of one namespace): that namespace; the namespaces of the Gateways their
/// VirtualServices bind (`ns/name`, `./name`, `name.ns.svc.cluster.local`; `mesh` is none);
/// and of the cluster hosts their routes, mirrors and DestinationRules name
/// (`name.ns.svc.cluster.local`; a short name is the object's own namespace).
pub fn referenced_namespaces(objects: &[Value], targets: &[Target]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for t in targets {
        let ns = t.rollout.namespace.as_str();
        out.insert(ns.to_string());
        out.extend(host_namespace(&t.service, ns));
        let find = |kind: &str, name: &str| {
            // Only the objects of that name are copied (into the `Object` the helpers read).
            objects
                .iter()
                .filter(|v| v.pointer("/metadata/name").and_then(Value::as_str) == Some(name))
                .map(|v| Object::new(v.clone(), None))
                .find(|o| o.is(kind, NET) && o.namespace(ns) == ns)
        };
        if let Some(vs) = find("VirtualService", &t.virtual_service) {
            for g in strings_at(&vs.value, "/spec/gateways") {
                if g != "mesh" {
                    out.insert(gateway_ref(&g, ns).0);
                }
            }
            for d in destinations(&vs) {
                out.extend(host_namespace(d.host(), ns));
            }
        }
        if let Some(dr) = t
            .destination_rule
            .as_ref()
            .and_then(|n| find("DestinationRule", n))
        {
            let host = dr.str_at("/spec/host").unwrap_or("");
            out.extend(host_namespace(host, ns));
        }
    }
    out.retain(|n| !n.is_empty() && !n.contains(['*', '/']));
    out
}

/// The items of a list answer as objects with `apiVersion` and `kind` (the API server leaves
/// them out of the items of built-in kinds' lists).
pub fn typed_items(items: Vec<Value>, api_version: &str, kind: &str) -> Vec<Value> {
    items
        .into_iter()
        .map(|mut item| {
            if let Some(map) = item.as_object_mut() {
                map.entry("apiVersion")
                    .or_insert_with(|| api_version.into());
                map.entry("kind").or_insert_with(|| kind.into());
            }
            item
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::RolloutId;
    use serde_json::json;

    fn target(ns: &str, service: &str) -> Target {
        Target {
            rollout: RolloutId {
                namespace: ns.into(),
                name: "orders".into(),
            },
            service: service.into(),
            virtual_service: "orders".into(),
            destination_rule: Some("orders".into()),
            routes: Vec::new(),
            stable: "v1".into(),
            canary: "v2".into(),
            split: crate::plan::Split::Subset,
        }
    }

    #[test]
    fn namespaces_come_from_gateways_and_cluster_hosts() {
        let vs = json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "orders", "namespace": "shop"},
            "spec": {
                "hosts": ["orders.example.com"],
                "gateways": ["istio-system/public", "./internal", "mesh", "edge.gw-ns.svc.cluster.local"],
                "http": [{
                    "route": [
                        {"destination": {"host": "orders", "subset": "v1"}},
                        {"destination": {"host": "ledger.billing.svc.cluster.local"}},
                        {"destination": {"host": "reviews.prod"}},
                        {"destination": {"host": "api.stripe.com"}}
                    ],
                    "mirror": {"host": "shadow.mirror-ns.svc.cluster.local"}
                }]
            }
        });
        let dr = json!({
            "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": "orders", "namespace": "shop"},
            "spec": {"host": "orders.dr-ns.svc.cluster.local"}
        });
        // Another VirtualService of the namespace that no rollout names adds nothing.
        let other = json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "other", "namespace": "shop"},
            "spec": {"gateways": ["elsewhere/gw"], "http": []}
        });
        let got = referenced_namespaces(&[vs, dr, other], &[target("shop", "orders")]);
        let want: BTreeSet<String> = [
            "billing",
            "dr-ns",
            "gw-ns",
            "istio-system",
            "mirror-ns",
            "shop",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn without_objects_only_the_namespace_and_the_service_host_count() {
        let got = referenced_namespaces(&[], &[target("shop", "orders.store.svc.cluster.local")]);
        assert_eq!(
            got.into_iter().collect::<Vec<_>>(),
            vec!["shop".to_string(), "store".to_string()]
        );
        assert!(referenced_namespaces(&[], &[]).is_empty());
    }

    #[test]
    fn unread_kinds_name_the_rule_to_add() {
        let u = Unread {
            kind: ListedKind::Service,
            namespace: "istio-system".into(),
            why: UnreadWhy::Forbidden,
        };
        let text = u.to_string();
        assert!(
            text.contains("services in namespace istio-system"),
            "{text}"
        );
        assert!(
            text.contains(r#"{apiGroups: [""], resources: ["services"], verbs: ["get", "list"]}"#),
            "{text}"
        );
        let g = Unread {
            kind: ListedKind::Gateway,
            namespace: "shop".into(),
            why: UnreadWhy::NotServed,
        };
        assert!(
            g.to_string()
                .contains("does not serve gateways.networking.istio.io"),
            "{g}"
        );
    }

    #[test]
    fn list_items_get_their_type() {
        let items = typed_items(
            vec![
                json!({"metadata": {"name": "a"}}),
                json!({"kind": "X", "metadata": {}}),
            ],
            "v1",
            "Service",
        );
        assert_eq!(items[0]["kind"], "Service");
        assert_eq!(items[0]["apiVersion"], "v1");
        assert_eq!(items[1]["kind"], "X", "a given kind is kept");
    }
}
