//! Where a VirtualService sends traffic, checked against the other objects: subsets against
//! DestinationRules (IST0101, for routes and mirrors), hosts and ports against Services and
//! ServiceEntries (IST0101, IST0112), and ingress routes that reach a host without a subset
//! while another VirtualService splits that host by subset (IST0140), after
//! `virtualservice/destinationrules.go` and `destinationhosts.go` in istio/istio.

use serde_json::Value;

use super::hosts::{self, strings_at};
use super::{Finding, Index, Object, codes};

/// What a route entry without `destination` reads as.
static NO_DESTINATION: Value = Value::Null;

/// One destination of a VirtualService: a route destination or a mirror.
pub struct Dest<'a> {
    /// Path of the destination object, e.g. `spec.http[0].route[1].destination`.
    pub field: String,
    pub value: &'a Value,
    pub mirror: bool,
}

impl Dest<'_> {
    pub fn host(&self) -> &str {
        self.value.get("host").and_then(Value::as_str).unwrap_or("")
    }
    pub fn subset(&self) -> Option<&str> {
        self.value.get("subset").and_then(Value::as_str)
    }
    fn what(&self) -> &'static str {
        if self.mirror { "mirrors" } else { "routes" }
    }
}

/// Every route destination (tcp, tls, http) and http mirror of a VirtualService.
pub fn destinations(vs: &Object) -> Vec<Dest<'_>> {
    let mut out = Vec::new();
    for kind in ["tcp", "tls", "http"] {
        for (i, r) in vs.array_at(&format!("/spec/{kind}")).iter().enumerate() {
            let dests = r
                .get("route")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            for (j, d) in dests.iter().enumerate() {
                let value = d.get("destination").unwrap_or(&NO_DESTINATION);
                out.push(Dest {
                    field: format!("spec.{kind}[{i}].route[{j}].destination"),
                    value,
                    mirror: false,
                });
            }
            if kind != "http" {
                continue;
            }
            if let Some(value) = r.get("mirror") {
                out.push(Dest {
                    field: format!("spec.http[{i}].mirror"),
                    value,
                    mirror: true,
                });
            }
            let mirrors = r
                .get("mirrors")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            for (j, m) in mirrors.iter().enumerate() {
                if let Some(value) = m.get("destination") {
                    out.push(Dest {
                        field: format!("spec.http[{i}].mirrors[{j}].destination"),
                        value,
                        mirror: true,
                    });
                }
            }
        }
    }
    out
}

fn subsets(dr: &Object) -> Vec<&str> {
    dr.array_at("/spec/subsets")
        .iter()
        .filter_map(|s| s.get("name").and_then(Value::as_str))
        .collect()
}

pub fn check_virtual_service(ix: &Index<'_>, vs: &Object, out: &mut Vec<Finding>) {
    for d in destinations(vs) {
        if d.host().is_empty() {
            out.push(Finding::new(
                codes::UNKNOWN_HOST,
                ix.reference(vs),
                format!("{}.host", d.field),
                format!(
                    "{} to a destination without host: Istio rejects the VirtualService",
                    d.what()
                ),
                "give every destination a host",
            ));
            continue;
        }
        // Subsets are looked up only when DestinationRules were given (lint of a lone
        // VirtualService says nothing about them).
        if let Some(subset) = d.subset().filter(|_| !ix.destination_rules.is_empty()) {
            check_subset(ix, vs, &d, subset, out);
        }
        check_host(ix, vs, &d, out);
    }
}

fn check_subset(ix: &Index<'_>, vs: &Object, d: &Dest<'_>, subset: &str, out: &mut Vec<Finding>) {
    let host = d.host();
    let rules = ix.rules_for(host, ix.ns(vs));
    let field = format!("{}.subset", d.field);
    let what = d.what();
    if rules.is_empty() {
        out.push(Finding::new(
            codes::SUBSET_WITHOUT_DESTINATION_RULE,
            ix.reference(vs),
            field,
            format!("{what} to subset {subset:?} of {host}, but no DestinationRule defines subsets for {host}: Envoy has no such cluster and answers 503"),
            format!("add a DestinationRule with host {host} defining subset {subset:?}, or remove the subset"),
        ));
    } else if !rules.iter().any(|dr| subsets(dr).contains(&subset)) {
        let defined: Vec<&str> = rules.iter().flat_map(|dr| subsets(dr)).collect();
        let name = rules[0].name();
        out.push(Finding::new(
            codes::UNKNOWN_SUBSET,
            ix.reference(vs),
            field,
            format!("{what} to subset {subset:?} of {host}, which DestinationRule {name} does not define (it has {defined:?}): requests are blackholed with 503"),
            format!("add subset {subset:?} to DestinationRule {name}, or use one of {defined:?}"),
        ));
    }
}

fn check_host(ix: &Index<'_>, vs: &Object, d: &Dest<'_>, out: &mut Vec<Finding>) {
    let ns = ix.ns(vs);
    let host = d.host();
    let export = strings_at(&vs.value, "/spec/exportTo");
    let Some(entry) = ix.registry.lookup(ns, &export, host) else {
        if ix.registry.can_judge(host, ns) {
            out.push(Finding::new(
                codes::UNKNOWN_HOST,
                ix.reference(vs),
                format!("{}.host", d.field),
                format!("{} to host {host}, which no Service or ServiceEntry visible from namespace {ns} defines: Envoy has no cluster for it", d.what()),
                "fix the host (a short name means a Service in the VirtualService's namespace), add a ServiceEntry, or export the Service to this namespace",
            ));
        }
        return;
    };
    let ports: Vec<u64> = entry.ports.iter().map(|p| p.number).collect();
    match d.value.pointer("/port/number").and_then(Value::as_u64) {
        None if ports.len() > 1 => out.push(Finding::new(
            codes::PORT_SELECTOR_REQUIRED,
            ix.reference(vs),
            d.field.clone(),
            format!("{} to {host}, which exposes ports {ports:?}, without saying which: Istio cannot pick one", d.what()),
            format!("add port: {{number: N}} to the destination, N one of {ports:?}"),
        )),
        Some(p) if !ports.contains(&p) => out.push(Finding::new(
            codes::UNKNOWN_PORT,
            ix.reference(vs),
            format!("{}.port.number", d.field),
            format!("{} to port {p} of {host}, which exposes {ports:?}", d.what()),
            format!("use one of {ports:?}, or add the port to the Service or ServiceEntry"),
        )),
        _ => {}
    }
}

/// An ingress route that reaches a host without a subset while VirtualServices split that
/// host by subset: ingress requests never see the split.
pub struct Bypass<'a> {
    pub ingress: &'a Object,
    pub field: String,
    /// The host as written, and qualified in the ingress VirtualService's namespace.
    pub host: String,
    pub fqdn: String,
    pub splitters: Vec<&'a Object>,
}

/// Whether `vs` names a gateway other than `mesh`.
pub fn is_ingress(vs: &Object) -> bool {
    strings_at(&vs.value, "/spec/gateways")
        .iter()
        .any(|g| g != "mesh")
}

/// The qualified hosts a VirtualService splits by subset: hosts of its own whose http
/// destinations carry a subset.
fn split_hosts(ix: &Index<'_>, vs: &Object) -> Vec<String> {
    let ns = ix.ns(vs);
    let own: Vec<String> = strings_at(&vs.value, "/spec/hosts")
        .iter()
        .map(|h| hosts::qualify(h, ns))
        .collect();
    let mut out: Vec<String> = destinations(vs)
        .into_iter()
        .filter(|d| !d.mirror && d.field.starts_with("spec.http") && d.subset().is_some())
        .map(|d| hosts::qualify(d.host(), ns))
        .filter(|h| own.contains(h))
        .collect();
    out.sort();
    out.dedup();
    out
}

pub fn ingress_bypasses<'a>(ix: &Index<'a>) -> Vec<Bypass<'a>> {
    let splits: Vec<(&'a Object, Vec<String>)> = ix
        .virtual_services
        .iter()
        .map(|v| (*v, split_hosts(ix, v)))
        .filter(|(_, h)| !h.is_empty())
        .collect();
    let mut out = Vec::new();
    for r in ix
        .virtual_services
        .iter()
        .copied()
        .filter(|v| is_ingress(v))
    {
        let ns = ix.ns(r);
        for d in destinations(r) {
            if d.mirror || !d.field.starts_with("spec.http") || d.subset().is_some() {
                continue;
            }
            let fqdn = hosts::qualify(d.host(), ns);
            let splitters: Vec<&'a Object> = splits
                .iter()
                .filter(|(_, hs)| hs.contains(&fqdn))
                .map(|(v, _)| *v)
                .collect();
            if !splitters.is_empty() {
                out.push(Bypass {
                    ingress: r,
                    field: d.field.clone(),
                    host: d.host().to_string(),
                    fqdn,
                    splitters,
                });
            }
        }
    }
    out
}

/// The [`Bypass`] as a finding.
pub fn bypass_finding(ix: &Index<'_>, b: &Bypass<'_>) -> Finding {
    let names: Vec<String> = b
        .splitters
        .iter()
        .map(|v| format!("{}/{}", ix.ns(v), v.name()))
        .collect();
    Finding::new(
        codes::INGRESS_BYPASS,
        ix.reference(b.ingress),
        b.field.clone(),
        format!(
            "this ingress route sends to {} without a subset, so the subsets VirtualService {} sets for that host have no effect on ingress gateway requests: they reach every version, and a canary split moves none of them",
            b.host,
            names.join(", ")
        ),
        "route ingress traffic through the same subsets (copy the split into this route, or let tidegate manage this route), or bind the splitting VirtualService to the gateway too",
    )
    .related(b.splitters.iter().map(|v| ix.reference(v)).collect())
}

pub fn check_ingress_bypass(ix: &Index<'_>, out: &mut Vec<Finding>) {
    for b in ingress_bypasses(ix) {
        out.push(bypass_finding(ix, &b));
    }
}
