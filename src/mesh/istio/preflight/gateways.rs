//! Gateways: a VirtualService's gateway references exist (IST0101) and admit at least one of
//! its hosts (IST0132, with `ns/host`, `./host` and `*/host` server hosts), Gateways that bind
//! the same selector, port and host (IST0145), and certificates shared by Gateways (IST0138),
//! after `virtualservice/gateways.go`, `gateway/conflictinggateway.go` and
//! `gateway/certificate.go` in istio/istio.

use std::collections::BTreeMap;

use serde_json::Value;

use super::hosts::{self, gateway_ref, strings_at};
use super::{Finding, Index, Object, ObjectRef, codes};

/// The server hosts of an Istio Gateway that a VirtualService in `vs_ns` may bind, with the
/// namespace part removed (`./h` is the Gateway's namespace; `*/*` admits everything).
fn admitted_hosts(gw: &Object, gw_ns: &str, vs_ns: &str) -> Vec<String> {
    let mut out = Vec::new();
    for server in gw.array_at("/spec/servers") {
        for h in strings_at(server, "/hosts") {
            let (ns, host) = match h.split_once('/') {
                Some((".", host)) => (Some(gw_ns), host),
                Some(("*", host)) => (None, host),
                Some((ns, host)) => (Some(ns), host),
                None => (None, h.as_str()),
            };
            if ns.is_none_or(|ns| ns == vs_ns) {
                out.push(host.to_string());
            }
        }
    }
    out
}

/// Whether any VirtualService host is admitted by one of `admitted` (as written, or
/// qualified in each object's namespace).
fn any_admitted(vs_hosts: &[String], vs_ns: &str, admitted: &[String], gw_ns: &str) -> bool {
    admitted.iter().any(|g| {
        vs_hosts.iter().any(|h| {
            hosts::matches(g, h)
                || hosts::matches(&hosts::qualify(g, gw_ns), &hosts::qualify(h, vs_ns))
        })
    })
}

pub fn check_virtual_service<'a>(ix: &Index<'a>, vs: &Object, out: &mut Vec<Finding>) {
    let vs_ns = ix.ns(vs);
    let vs_hosts = strings_at(&vs.value, "/spec/hosts");
    for (i, reference) in strings_at(&vs.value, "/spec/gateways").iter().enumerate() {
        if reference == "mesh" {
            continue;
        }
        let (ns, name) = gateway_ref(reference, vs_ns);
        if !ix.gateways_seen(&ns) {
            continue;
        }
        let field = format!("spec.gateways[{i}]");
        let find = |list: &[&'a Object]| -> Option<&'a Object> {
            list.iter()
                .copied()
                .find(|g| ix.ns(g) == ns && g.name() == name)
        };
        let admitted = if let Some(gw) = find(&ix.gateways) {
            Some(admitted_hosts(gw, &ns, vs_ns))
        } else if let Some(gw) = find(&ix.k8s_gateways) {
            let names: Vec<Option<&str>> = gw
                .array_at("/spec/listeners")
                .iter()
                .map(|l| l.get("hostname").and_then(Value::as_str))
                .collect();
            if names.iter().any(|n| n.is_none_or(str::is_empty)) {
                continue;
            }
            Some(names.into_iter().flatten().map(str::to_string).collect())
        } else {
            None
        };
        let Some(admitted) = admitted else {
            out.push(Finding::new(
                codes::GATEWAY_NOT_FOUND,
                ix.reference(vs),
                field.clone(),
                format!("Gateway {ns}/{name} does not exist: the routes bound to it receive no ingress traffic"),
                format!("create Gateway {ns}/{name}, or name an existing one (`<namespace>/<name>`; a short name means the VirtualService's namespace)"),
            ));
            out.push(not_admitted(ix, vs, field, &vs_hosts, &ns, &name, &[]));
            continue;
        };
        if !any_admitted(&vs_hosts, vs_ns, &admitted, &ns) {
            out.push(not_admitted(
                ix, vs, field, &vs_hosts, &ns, &name, &admitted,
            ));
        }
    }
}

fn not_admitted(
    ix: &Index<'_>,
    vs: &Object,
    field: String,
    vs_hosts: &[String],
    ns: &str,
    name: &str,
    admitted: &[String],
) -> Finding {
    let why = if admitted.is_empty() {
        "admits no host for this namespace".to_string()
    } else {
        format!("admits {admitted:?} for namespace {}", ix.ns(vs))
    };
    Finding::new(
        codes::HOST_NOT_IN_GATEWAY,
        ix.reference(vs),
        field,
        format!(
            "none of the hosts {vs_hosts:?} is admitted by Gateway {ns}/{name}, which {why}: ingress requests for them never reach these routes"
        ),
        format!(
            "add the host to a server of Gateway {ns}/{name} (`{}/<host>` or `*/<host>` to admit it from this namespace), or fix spec.hosts",
            ix.ns(vs)
        ),
    )
}

/// A Kubernetes label selector as a sorted `k=v,k2=v2` string (the form Istio compares).
fn selector_string(gw: &Object) -> String {
    selector(gw)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn selector(gw: &Object) -> BTreeMap<String, String> {
    gw.labels_at("/spec/selector")
}

fn labels_match(
    selector: &BTreeMap<String, String>,
    labels: &serde_json::Map<String, Value>,
) -> bool {
    selector
        .iter()
        .all(|(k, v)| labels.get(k).and_then(Value::as_str) == Some(v.as_str()))
}

/// Whether two Gateways select the same proxies: equal selectors, or (as istioctl does) one
/// selector string inside the other and a given Pod matching both.
fn same_workloads(ix: &Index<'_>, a: &Object, b: &Object) -> bool {
    let (sa, sb) = (selector_string(a), selector_string(b));
    if sa == sb {
        return true;
    }
    if !(sa.contains(&sb) || sb.contains(&sa)) {
        return false;
    }
    let (la, lb) = (selector(a), selector(b));
    ix.pods.iter().any(|p| {
        p.value
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .is_some_and(|l| labels_match(&la, l) && labels_match(&lb, l))
    })
}

fn server_port(server: &Value) -> u64 {
    server
        .pointer("/port/number")
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

fn server_bind(server: &Value) -> &str {
    server.get("bind").and_then(Value::as_str).unwrap_or("")
}

pub fn check_gateways(ix: &Index<'_>, out: &mut Vec<Finding>) {
    for g in &ix.gateways {
        check_conflicts(ix, g, out);
        check_certificates(ix, g, out);
    }
}

/// IST0145: another Gateway on the same workloads with a server on the same port binding one
/// of the same hosts (compared as written) on the same `bind` address.
fn check_conflicts(ix: &Index<'_>, g: &Object, out: &mut Vec<Finding>) {
    for (k, server) in g.array_at("/spec/servers").iter().enumerate() {
        let port = server_port(server);
        let hs = strings_at(server, "/hosts");
        let mut others: Vec<ObjectRef> = Vec::new();
        for x in ix
            .gateways
            .iter()
            .filter(|x| !std::ptr::eq(**x, g) && same_workloads(ix, g, x))
        {
            let clash = x.array_at("/spec/servers").iter().any(|s| {
                server_port(s) == port
                    && server_bind(s) == server_bind(server)
                    && strings_at(s, "/hosts").iter().any(|h| hs.contains(h))
            });
            if clash {
                others.push(ix.reference(x));
            }
        }
        if others.is_empty() {
            continue;
        }
        let names: Vec<String> = others
            .iter()
            .map(|o| format!("{}/{}", o.namespace, o.name))
            .collect();
        out.push(
            Finding::new(
                codes::CONFLICTING_GATEWAYS,
                ix.reference(g),
                format!("spec.servers[{k}]"),
                format!(
                    "Gateway {} also binds port {port} for hosts {hs:?} on the same workloads (selector {:?}): the proxy keeps one of them and the other's routes are dropped",
                    names.join(", "),
                    selector_string(g)
                ),
                "merge the servers into one Gateway, or give them different hosts, ports or selectors",
            )
            .related(others),
        );
    }
}

/// Whether two server TLS blocks use the same certificate (istioctl's `haveSameCertificate`).
fn same_certificate(a: &Value, b: &Value) -> bool {
    fn s<'v>(v: &'v Value, k: &str) -> Option<&'v str> {
        v.get(k).and_then(Value::as_str).filter(|s| !s.is_empty())
    }
    match (s(a, "credentialName"), s(b, "credentialName")) {
        (Some(x), Some(y)) => x == y,
        (None, None) => match (
            s(a, "serverCertificate"),
            s(b, "serverCertificate"),
            s(a, "privateKey"),
            s(b, "privateKey"),
        ) {
            (Some(c1), Some(c2), Some(k1), Some(k2)) => c1 == c2 && k1 == k2,
            _ => false,
        },
        _ => false,
    }
}

/// IST0138: Gateways on (a superset of) this one's selector serving the same certificate.
fn check_certificates(ix: &Index<'_>, g: &Object, out: &mut Vec<Finding>) {
    let sel = selector(g);
    let tls: Vec<&Value> = g
        .array_at("/spec/servers")
        .iter()
        .filter_map(|s| s.get("tls"))
        .collect();
    if tls.is_empty() {
        return;
    }
    for x in ix.gateways.iter().filter(|x| !std::ptr::eq(**x, g)) {
        let xs = selector(x);
        if !sel.iter().all(|(k, v)| xs.get(k) == Some(v)) {
            continue;
        }
        let shared = x
            .array_at("/spec/servers")
            .iter()
            .filter_map(|s| s.get("tls"))
            .any(|t| tls.iter().any(|mine| same_certificate(mine, t)));
        if shared {
            let other = ix.reference(x);
            out.push(
                Finding::new(
                    codes::DUPLICATE_CERTIFICATE,
                    ix.reference(g),
                    "spec.servers",
                    format!("Gateway {}/{} serves the same certificate: clients that reuse an HTTP/2 connection for the other host get 404", other.namespace, other.name),
                    "serve each certificate from one Gateway (one server listing all its hosts)",
                )
                .related(vec![other]),
            );
        }
    }
}
