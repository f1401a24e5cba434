//! Host names as Istio reads them: short names qualified with the object's namespace (and
//! nothing else), wildcard matching, `exportTo` scopes, and the service registry the analyzers
//! look destinations up in (Kubernetes Services and ServiceEntries), after
//! `pkg/config/analysis/analyzers/util` in istio/istio.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::Object;

/// The cluster domain suffix Istio qualifies short names with.
pub const CLUSTER_SUFFIX: &str = ".svc.cluster.local";
/// `exportTo` value meaning "every namespace".
pub const EXPORT_ALL: &str = "*";
/// `exportTo` value meaning "the object's own namespace".
pub const EXPORT_LOCAL: &str = ".";

/// A host as Istio qualifies it (`ConvertHostToFQDN`): a name without a dot that is not a
/// wildcard becomes `name.<namespace>.svc.cluster.local`; everything else (`google.com`,
/// `reviews.prod`, `*.example.com`) is left exactly as written.
pub fn qualify(host: &str, namespace: &str) -> String {
    if host.starts_with('*') || host.contains('.') {
        host.to_string()
    } else {
        format!("{host}.{namespace}{CLUSTER_SUFFIX}")
    }
}

/// The namespace and name of a cluster-local FQDN (`name.ns.svc.cluster.local`), as Istio's
/// `GetFullNameFromFQDN` reads it (the namespace is the last label before the suffix).
pub fn cluster_parts(fqdn: &str) -> Option<(&str, &str)> {
    let rest = fqdn.strip_suffix(CLUSTER_SUFFIX)?;
    let (name, ns) = rest.rsplit_once('.')?;
    (!name.is_empty() && !ns.is_empty()).then_some((ns, name))
}

/// Istio's `host.Name.Matches`: equal names, or a wildcard on either side whose suffix the
/// other name ends with (two wildcards match when one's suffix ends with the other's).
pub fn matches(a: &str, b: &str) -> bool {
    match (a.strip_prefix('*'), b.strip_prefix('*')) {
        (Some(sa), Some(sb)) => {
            if a.len() < b.len() {
                sb.ends_with(sa)
            } else {
                sa.ends_with(sb)
            }
        }
        (Some(sa), None) => b.ends_with(sa),
        (None, Some(sb)) => a.ends_with(sb),
        (None, None) => a == b,
    }
}

/// The scopes an `exportTo` list makes an object visible in: `*` when empty or when it lists
/// `*`, else the listed namespaces (`.` read as the object's own).
pub fn export_scopes(export_to: &[String], own_ns: &str) -> BTreeSet<String> {
    if export_to.is_empty() || export_to.iter().any(|e| e == EXPORT_ALL) {
        return BTreeSet::from([EXPORT_ALL.to_string()]);
    }
    export_to
        .iter()
        .map(|e| {
            if e == EXPORT_LOCAL {
                own_ns.to_string()
            } else {
                e.clone()
            }
        })
        .collect()
}

/// A string list at `pointer` (missing or malformed: empty).
pub fn strings_at(value: &Value, pointer: &str) -> Vec<String> {
    value
        .pointer(pointer)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// One port of a registry entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    pub number: u64,
    pub protocol: String,
}

/// A host known to the mesh: a Kubernetes Service or one host of a ServiceEntry.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub ports: Vec<Port>,
    pub object: &'a Object,
}

/// The service registry of the given objects, keyed like Istio's `InitServiceEntryHostMap`:
/// `(scope, fqdn)` where the scope is `*` or the namespace the host is exported to.
#[derive(Debug, Default)]
pub struct Registry<'a> {
    entries: BTreeMap<(String, String), Entry<'a>>,
    /// Namespaces of which Services were given (or read).
    service_namespaces: BTreeSet<String>,
    /// Whether a host outside the cluster domain that no entry defines can be called missing:
    /// ServiceEntries were given and are taken as all there are.
    judge_external: bool,
}

impl<'a> Registry<'a> {
    pub fn new(services: &[&'a Object], entries: &[&'a Object], default_ns: &str) -> Self {
        let mut reg = Registry {
            judge_external: !entries.is_empty(),
            ..Registry::default()
        };
        for se in entries {
            let ns = se.namespace(default_ns);
            let ports = ports_of(&se.value, "/spec/ports", "number");
            let scopes = export_scopes(&strings_at(&se.value, "/spec/exportTo"), ns);
            for h in strings_at(&se.value, "/spec/hosts") {
                for scope in &scopes {
                    reg.entries.insert(
                        (scope.clone(), qualify(&h, ns)),
                        Entry {
                            ports: ports.clone(),
                            object: se,
                        },
                    );
                }
            }
        }
        for svc in services {
            let ns = svc.namespace(default_ns);
            reg.service_namespaces.insert(ns.to_string());
            let annotation = svc
                .value
                .pointer("/metadata/annotations/networking.istio.io~1exportTo")
                .and_then(Value::as_str)
                .unwrap_or("");
            let export: Vec<String> = annotation
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            let entry = Entry {
                ports: ports_of(&svc.value, "/spec/ports", "port"),
                object: svc,
            };
            for scope in export_scopes(&export, ns) {
                reg.entries
                    .insert((scope, qualify(svc.name(), ns)), entry.clone());
            }
        }
        reg
    }

    /// The registry of objects read from a cluster where `seen` says: the Services of every
    /// namespace read count (even when none came back), and no external host is judged
    /// missing (ServiceEntries of namespaces not read may define it).
    pub fn listed(mut self, seen: &super::Seen) -> Self {
        self.service_namespaces
            .extend(seen.services.iter().cloned());
        self.judge_external = false;
        self
    }

    /// Whether the objects given can tell that `host` (read in `source_ns`) does not exist:
    /// a cluster-local host needs the Services of its namespace, any other host needs
    /// ServiceEntries. Without them a lookup that fails says nothing.
    pub fn can_judge(&self, host: &str, source_ns: &str) -> bool {
        let fqdn = qualify(host, source_ns);
        match cluster_parts(&fqdn) {
            Some((ns, _)) => self.service_namespaces.contains(ns),
            None => self.judge_external,
        }
    }

    /// Istio's `GetDestinationHost`: the entry `host` resolves to for an object in `source_ns`
    /// exported to `export_to`, trying the exported-to-all entries, then the namespace-scoped
    /// ones, then wildcard ServiceEntry hosts visible there.
    pub fn lookup(&self, source_ns: &str, export_to: &[String], host: &str) -> Option<&Entry<'a>> {
        let fqdn = qualify(host, source_ns);
        let get = |scope: &str| self.entries.get(&(scope.to_string(), fqdn.clone()));
        if let Some(e) = get(EXPORT_ALL) {
            return Some(e);
        }
        let scopes: Vec<&str> = if export_to.is_empty() {
            vec![source_ns]
        } else {
            export_to
                .iter()
                .map(|e| if e == EXPORT_LOCAL { source_ns } else { e })
                .collect()
        };
        if let Some(e) = scopes.into_iter().find_map(get) {
            return Some(e);
        }
        let bare = fqdn.strip_prefix('*').unwrap_or(&fqdn);
        self.entries.iter().find_map(|((scope, h), e)| {
            let suffix = h.strip_prefix('*')?;
            ((scope == EXPORT_ALL || scope == source_ns) && bare.ends_with(suffix)).then_some(e)
        })
    }
}

fn ports_of(value: &Value, pointer: &str, number_key: &str) -> Vec<Port> {
    value
        .pointer(pointer)
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .filter_map(|p| {
                    Some(Port {
                        number: p.get(number_key).and_then(Value::as_u64)?,
                        protocol: p
                            .get("protocol")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Resolve a VirtualService's gateway reference as istiod does (`resolveGatewayName`):
/// `ns/name`, `./name` (the VirtualService's namespace), a short name (same), or the legacy
/// `name.ns[.svc.cluster.local]` form. Returns `(namespace, name)`.
pub fn gateway_ref(reference: &str, vs_ns: &str) -> (String, String) {
    if let Some((ns, name)) = reference.split_once('/') {
        let ns = if ns == EXPORT_LOCAL { vs_ns } else { ns };
        return (ns.to_string(), name.to_string());
    }
    match reference.split_once('.') {
        None => (vs_ns.to_string(), reference.to_string()),
        Some((name, rest)) => {
            let ns = rest.split('.').next().unwrap_or(rest);
            (ns.to_string(), name.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_names_are_qualified() {
        assert_eq!(qualify("orders", "shop"), "orders.shop.svc.cluster.local");
        assert_eq!(qualify("google.com", "shop"), "google.com");
        assert_eq!(qualify("orders.shop", "x"), "orders.shop");
        assert_eq!(qualify("*.example.com", "x"), "*.example.com");
        assert_eq!(qualify("*", "x"), "*");
    }

    #[test]
    fn wildcards_match_like_istio() {
        assert!(matches("*.example.com", "a.example.com"));
        assert!(matches("a.example.com", "*.example.com"));
        assert!(matches("*.example.com", "*.b.example.com"));
        assert!(matches("*", "anything.at.all"));
        assert!(!matches("*.example.com", "example.com"));
        assert!(!matches("a.example.com", "b.example.com"));
    }

    #[test]
    fn cluster_names_split_at_the_last_label() {
        assert_eq!(
            cluster_parts("reviews.bookinfo.svc.cluster.local"),
            Some(("bookinfo", "reviews"))
        );
        assert_eq!(cluster_parts("google.com"), None);
    }

    #[test]
    fn gateway_references() {
        let r = |s| gateway_ref(s, "shop");
        assert_eq!(r("ingress"), ("shop".into(), "ingress".into()));
        assert_eq!(r("./ingress"), ("shop".into(), "ingress".into()));
        assert_eq!(
            r("istio-system/ingress"),
            ("istio-system".into(), "ingress".into())
        );
        assert_eq!(
            r("ingress.istio-system.svc.cluster.local"),
            ("istio-system".into(), "ingress".into())
        );
    }
}
