//! DestinationRules and ServiceEntries on their own: TLS origination without a CA to verify
//! the server (IST0128, IST0129), DestinationRule hosts that match no Service or ServiceEntry
//! (IST0174), TCP ServiceEntries without addresses (IST0134) and ServiceEntries giving one
//! host and port different protocols (IST0177), after `destinationrule/ca-certificates.go`,
//! `destinationrule/subset.go` and `serviceentry/*.go` in istio/istio.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::hosts::{self, EXPORT_ALL, strings_at};
use super::{Finding, Index, Object, ROOT_NAMESPACE, codes};

pub fn check(ix: &Index<'_>, out: &mut Vec<Finding>) {
    for dr in &ix.destination_rules {
        check_ca_certificates(ix, dr, out);
        check_rule_host(ix, dr, out);
    }
    let auto_allocated = dns_auto_allocation(ix);
    for se in &ix.service_entries {
        if !auto_allocated {
            check_addresses(ix, se, out);
        }
    }
    check_protocols(ix, out);
}

/// A TLS block that originates TLS (SIMPLE or MUTUAL) without `caCertificates`, unless a
/// `credentialName` is used by a DestinationRule with a workload selector.
fn unverified(tls: Option<&Value>, has_selector: bool) -> Option<String> {
    let tls = tls?;
    let mode = tls.get("mode").and_then(Value::as_str)?;
    if mode != "SIMPLE" && mode != "MUTUAL" {
        return None;
    }
    let set = |k: &str| {
        tls.get(k)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    };
    let verified = set("caCertificates") || (set("credentialName") && has_selector);
    (!verified).then(|| mode.to_string())
}

fn check_ca_certificates(ix: &Index<'_>, dr: &Object, out: &mut Vec<Finding>) {
    let host = dr.str_at("/spec/host").unwrap_or("");
    let selector = dr.value.pointer("/spec/workloadSelector").is_some();
    if let Some(mode) = unverified(dr.value.pointer("/spec/trafficPolicy/tls"), selector) {
        out.push(Finding::new(
            codes::NO_CA_CERTIFICATES,
            ix.reference(dr),
            "spec.trafficPolicy.tls",
            format!("TLS mode {mode} towards {host} without caCertificates: the server's certificate is not verified"),
            "set trafficPolicy.tls.caCertificates (or a credentialName with a workloadSelector)",
        ));
    }
    for (i, p) in dr
        .array_at("/spec/trafficPolicy/portLevelSettings")
        .iter()
        .enumerate()
    {
        if let Some(mode) = unverified(p.get("tls"), selector) {
            let port = p
                .pointer("/port/number")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            out.push(Finding::new(
                codes::NO_CA_CERTIFICATES_PORT,
                ix.reference(dr),
                format!("spec.trafficPolicy.portLevelSettings[{i}].tls"),
                format!("TLS mode {mode} towards {host} port {port} without caCertificates: the server's certificate is not verified"),
                "set caCertificates in this port's tls block",
            ));
        }
    }
}

fn check_rule_host(ix: &Index<'_>, dr: &Object, out: &mut Vec<Finding>) {
    let ns = ix.ns(dr);
    let Some(host) = dr.str_at("/spec/host") else {
        return;
    };
    // A wildcard host is a policy for many hosts, not a name to look up.
    if host.starts_with('*') || !ix.registry.can_judge(host, ns) {
        return;
    }
    let export = strings_at(&dr.value, "/spec/exportTo");
    if ix.registry.lookup(ns, &export, host).is_none() {
        out.push(Finding::new(
            codes::UNKNOWN_DESTINATION_RULE_HOST,
            ix.reference(dr),
            "spec.host",
            format!("host {host} matches no Service or ServiceEntry visible from namespace {ns}: this DestinationRule (and its subsets) applies to nothing"),
            "fix the host (a short name means a Service in the DestinationRule's namespace), or add the ServiceEntry",
        ));
    }
}

/// Whether the mesh configuration (ConfigMap `istio*` in the root namespace, key `mesh`)
/// turns on DNS capture with address auto-allocation, which makes addresses optional.
fn dns_auto_allocation(ix: &Index<'_>) -> bool {
    ix.config_maps
        .iter()
        .filter(|c| ix.ns(c) == ROOT_NAMESPACE && c.name().starts_with("istio"))
        .filter_map(|c| c.str_at("/data/mesh"))
        .filter_map(|text| serde_saphyr::from_str::<Value>(text).ok())
        .any(|mesh| {
            let meta = |k: &str| {
                mesh.pointer(&format!("/defaultConfig/proxyMetadata/{k}"))
                    .and_then(Value::as_str)
                    == Some("true")
            };
            meta("ISTIO_META_DNS_CAPTURE")
                && (meta("ISTIO_META_DNS_AUTO_ALLOCATE") || meta("PILOT_ENABLE_IP_AUTOALLOCATE"))
        })
}

fn check_addresses(ix: &Index<'_>, se: &Object, out: &mut Vec<Finding>) {
    if !se.array_at("/spec/addresses").is_empty() || !se.array_at("/status/addresses").is_empty() {
        return;
    }
    for (i, p) in se.array_at("/spec/ports").iter().enumerate() {
        let protocol = p.get("protocol").and_then(Value::as_str).unwrap_or("");
        if protocol.is_empty() || protocol.eq_ignore_ascii_case("TCP") {
            let number = p.get("number").and_then(Value::as_u64).unwrap_or(0);
            out.push(Finding::new(
                codes::SERVICE_ENTRY_ADDRESSES_REQUIRED,
                ix.reference(se),
                format!("spec.ports[{i}]"),
                format!("port {number} is TCP (or has no protocol) and the ServiceEntry has no addresses: sidecars cannot tell its traffic apart from other TCP traffic on that port"),
                "add spec.addresses (a virtual IP or CIDR), name the protocol (HTTP, TLS, …), or enable DNS capture with address auto-allocation",
            ));
        }
    }
}

/// (scope, host as written, port number)
type HostPort = (String, String, u64);

/// Every `(scope, host, port)` of the ServiceEntries, with the protocol each gives it.
fn protocol_index<'a>(ix: &Index<'a>) -> BTreeMap<HostPort, Vec<(String, &'a Object)>> {
    let mut index: BTreeMap<HostPort, Vec<(String, &'a Object)>> = BTreeMap::new();
    for se in &ix.service_entries {
        let scopes = hosts::export_scopes(&strings_at(&se.value, "/spec/exportTo"), ix.ns(se));
        for scope in scopes {
            for h in strings_at(&se.value, "/spec/hosts") {
                for p in se.array_at("/spec/ports") {
                    let number = p.get("number").and_then(Value::as_u64).unwrap_or(0);
                    let protocol = p
                        .get("protocol")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_uppercase();
                    index
                        .entry((scope.clone(), h.clone(), number))
                        .or_default()
                        .push((protocol, se));
                }
            }
        }
    }
    index
}

fn check_protocols(ix: &Index<'_>, out: &mut Vec<Finding>) {
    let index = protocol_index(ix);
    let mut reported: Vec<&Object> = Vec::new();
    for ((scope, host, port), entries) in &index {
        let mut all = entries.clone();
        if scope != EXPORT_ALL {
            all.extend(
                index
                    .get(&(EXPORT_ALL.to_string(), host.clone(), *port))
                    .cloned()
                    .unwrap_or_default(),
            );
        }
        let protocols: BTreeSet<&str> = all.iter().map(|(p, _)| p.as_str()).collect();
        if protocols.len() < 2 {
            continue;
        }
        let mut names: Vec<String> = all
            .iter()
            .map(|(_, o)| format!("{}/{}", ix.ns(o), o.name()))
            .collect();
        names.sort();
        names.dedup();
        for (_, se) in &all {
            if reported.iter().any(|r| std::ptr::eq(*r, *se)) {
                continue;
            }
            reported.push(se);
            let related: BTreeSet<_> = all
                .iter()
                .filter(|(_, o)| !std::ptr::eq(*o, *se))
                .map(|(_, o)| ix.reference(o))
                .collect();
            let related = related.into_iter().collect();
            out.push(
                Finding::new(
                    codes::CONFLICTING_SERVICE_ENTRY_PROTOCOL,
                    ix.reference(se),
                    "spec.ports",
                    format!("ServiceEntries {} define host {host} port {port} with different protocols {protocols:?}: which one a proxy uses is undefined", names.join(", ")),
                    "give the host and port one protocol in every ServiceEntry, or merge them",
                )
                .related(related),
            );
        }
    }
}
