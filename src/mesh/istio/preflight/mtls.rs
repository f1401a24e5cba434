//! The two halves of mTLS: a PeerAuthentication says what a workload accepts, a
//! DestinationRule what its clients send. Mismatched halves (TG113, TG114), and a
//! PERMISSIVE or DISABLE PeerAuthentication with no DestinationRule at all for its workload
//! (TG134), reported with the DestinationRule to add.
//!
//! Why the missing half matters: with auto mTLS, istiod infers what clients send only from
//! namespace- and mesh-wide PeerAuthentications (`BestEffortInferServiceMTLSMode` in
//! `pilot/pkg/model/push_context.go`), so a workload-selector `DISABLE` leaves clients sending
//! mTLS to a server that refuses it (503), and a workload-selector `PERMISSIVE` leaves what
//! clients send unstated.

use std::collections::BTreeMap;

use serde_json::Value;

use super::hosts::{self, cluster_parts};
use super::{Finding, Index, Object, ROOT_NAMESPACE, Severity, codes};

/// The TLS mode a DestinationRule sets (top level), `None` when unstated.
fn dr_tls_mode(dr: &Object) -> Option<&str> {
    dr.str_at("/spec/trafficPolicy/tls/mode")
}

fn selector(pa: &Object) -> BTreeMap<String, String> {
    pa.labels_at("/spec/selector/matchLabels")
}

/// The mode a PeerAuthentication sets: its `mtls.mode`, or `DISABLE` when only a port is
/// disabled; `None` for STRICT, UNSET and absent.
fn pa_mode(pa: &Object) -> Option<&'static str> {
    match pa.str_at("/spec/mtls/mode") {
        Some("PERMISSIVE") => Some("PERMISSIVE"),
        Some("DISABLE") => Some("DISABLE"),
        Some("STRICT") => None,
        _ => pa
            .value
            .pointer("/spec/portLevelMtls")
            .and_then(Value::as_object)
            .is_some_and(|ports| {
                ports
                    .values()
                    .any(|p| p.get("mode").and_then(Value::as_str) == Some("DISABLE"))
            })
            .then_some("DISABLE"),
    }
}

pub fn check(ix: &Index<'_>, out: &mut Vec<Finding>) {
    for pa in &ix.peer_authentications {
        check_pair(ix, pa, out);
    }
    out.extend(half_pairs(ix).into_iter().map(|(f, _)| f));
}

/// Whether a DestinationRule is for a workload of the PeerAuthentication (namespace `pa_ns`,
/// selector `sel`): mesh-wide, or a host of its namespace; with a selector, the host whose
/// short name is the `app` label, or a subset carrying every selected label.
fn applies(ix: &Index<'_>, pa_ns: &str, sel: &BTreeMap<String, String>, dr: &Object) -> bool {
    let full = hosts::qualify(dr.str_at("/spec/host").unwrap_or(""), ix.ns(dr));
    let parts = cluster_parts(&full);
    if pa_ns != ROOT_NAMESPACE && parts.map(|(ns, _)| ns) != Some(pa_ns) {
        return false;
    }
    if sel.is_empty() {
        return true;
    }
    let app_matches = sel
        .get("app")
        .is_some_and(|a| Some(a.as_str()) == parts.map(|(_, n)| n));
    app_matches
        || dr.array_at("/spec/subsets").iter().any(|s| {
            sel.iter().all(|(k, v)| {
                s.get("labels")
                    .and_then(|l| l.get(k))
                    .and_then(Value::as_str)
                    == Some(v.as_str())
            })
        })
}

/// TG113/TG114: the DestinationRules of the PeerAuthentication's workloads against its mode.
fn check_pair(ix: &Index<'_>, pa: &Object, out: &mut Vec<Finding>) {
    let Some(mode) = pa
        .str_at("/spec/mtls/mode")
        .filter(|m| *m == "PERMISSIVE" || *m == "DISABLE")
    else {
        return;
    };
    let pa_ns = ix.ns(pa);
    let sel = selector(pa);
    for dr in ix
        .destination_rules
        .iter()
        .filter(|dr| applies(ix, pa_ns, &sel, dr))
    {
        let host = dr.str_at("/spec/host").unwrap_or("");
        let pa_ref = ix.reference(pa);
        let finding = match (mode, dr_tls_mode(dr)) {
            ("DISABLE", Some(m @ ("ISTIO_MUTUAL" | "MUTUAL"))) => Finding::new(
                codes::MTLS_MISMATCH,
                ix.reference(dr),
                "spec.trafficPolicy.tls.mode",
                format!(
                    "clients are told to use {m} towards {host}, but {pa_ref} sets mTLS DISABLE for it: the server refuses the handshake and clients get 503"
                ),
                "set trafficPolicy.tls.mode: DISABLE in the DestinationRule, or enable mTLS on the workload",
            ),
            ("DISABLE", None) => Finding::new(
                codes::MTLS_MODE_UNSTATED,
                ix.reference(dr),
                "spec.trafficPolicy.tls",
                format!(
                    "{pa_ref} sets mTLS DISABLE for {host}, but this DestinationRule states no TLS mode: sidecars without auto-mTLS still attempt mTLS and get 503"
                ),
                "set trafficPolicy.tls.mode: DISABLE to match the PeerAuthentication",
            ),
            ("PERMISSIVE", None) => Finding::new(
                codes::MTLS_MODE_UNSTATED,
                ix.reference(dr),
                "spec.trafficPolicy.tls",
                format!(
                    "{pa_ref} sets mTLS PERMISSIVE for {host}, and this DestinationRule states no TLS mode: whether clients use mTLS depends on auto-mTLS"
                ),
                "state trafficPolicy.tls.mode (ISTIO_MUTUAL or DISABLE) so clients and server agree",
            ),
            _ => continue,
        };
        out.push(finding);
    }
}

/// A Service's pod selector.
fn service_selector(svc: &Object) -> BTreeMap<String, String> {
    svc.labels_at("/spec/selector")
}

/// Whether pods can carry both label sets: they share a key, and no shared key asks for two
/// values (`{app: orders, tier: web}` and `{app: orders, version: v2}` both select a pod labelled
/// `app=orders, tier=web, version=v2`).
fn compatible(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> bool {
    let mut shared = a
        .iter()
        .filter_map(|(k, v)| Some((v, b.get(k)?)))
        .peekable();
    shared.peek().is_some() && shared.all(|(x, y)| x == y)
}

/// The hosts of the workloads a selector picks: the Services of `ns` whose selector is
/// compatible with the PeerAuthentication's; when none is, the Service named by the `app` (or
/// `app.kubernetes.io/name`) label, unless a Service of that name selects other pods (manifests
/// given to `lint` need not hold every Service).
fn workload_hosts(ix: &Index<'_>, ns: &str, sel: &BTreeMap<String, String>) -> Vec<String> {
    let services: Vec<&Object> = ix
        .services
        .iter()
        .copied()
        .filter(|s| ix.ns(s) == ns)
        .collect();
    let selected: Vec<String> = services
        .iter()
        .filter(|s| compatible(&service_selector(s), sel))
        .map(|s| hosts::qualify(s.name(), ns))
        .collect();
    if !selected.is_empty() {
        return selected;
    }
    ["app", "app.kubernetes.io/name"]
        .iter()
        .find_map(|k| sel.get(*k))
        .filter(|app| !services.iter().any(|s| s.name() == app.as_str()))
        .map(|app| vec![hosts::qualify(app, ns)])
        .unwrap_or_default()
}

/// The DestinationRule that would state the clients' half, as YAML.
pub fn rule_snippet(name: &str, namespace: &str, host: &str, mode: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n  host: \"{host}\"\n  trafficPolicy:\n    tls:\n      mode: {mode}\n"
    )
}

/// TG134 findings with the qualified hosts each is about (the daemon keeps the ones about its
/// rollout's service).
pub fn half_pairs(ix: &Index<'_>) -> Vec<(Finding, Vec<String>)> {
    let mut out = Vec::new();
    for pa in &ix.peer_authentications {
        let Some(mode) = pa_mode(pa) else { continue };
        let ns = ix.ns(pa);
        let sel = selector(pa);
        let (hosts, scope) = if !sel.is_empty() {
            (workload_hosts(ix, ns, &sel), "its workload")
        } else if mode == "PERMISSIVE" {
            // Namespace and mesh-wide PERMISSIVE is Istio's default; auto mTLS follows it.
            continue;
        } else if ns == ROOT_NAMESPACE {
            (vec!["*.local".to_string()], "the whole mesh")
        } else {
            (
                vec![format!("*.{ns}{}", hosts::CLUSTER_SUFFIX)],
                "the namespace",
            )
        };
        let uncovered: Vec<String> = hosts.into_iter().filter(|h| !covered(ix, h, ns)).collect();
        if uncovered.is_empty() {
            continue;
        }
        out.push((
            half_pair_finding(ix, pa, mode, scope, &uncovered, !sel.is_empty()),
            uncovered,
        ));
    }
    out
}

/// Whether a DestinationRule applies to `host` (a name or, for namespace- and mesh-wide
/// policies, a wildcard).
fn covered(ix: &Index<'_>, host: &str, ns: &str) -> bool {
    if host.starts_with('*') {
        return ix.destination_rules.iter().any(|dr| {
            dr.str_at("/spec/host")
                .is_some_and(|h| hosts::matches(&hosts::qualify(h, ix.ns(dr)), host))
        });
    }
    !ix.rules_for(host, ns).is_empty()
}

fn half_pair_finding(
    ix: &Index<'_>,
    pa: &Object,
    mode: &str,
    scope: &str,
    hosts: &[String],
    workload: bool,
) -> Finding {
    let ns = ix.ns(pa);
    let client_mode = if mode == "DISABLE" {
        "DISABLE"
    } else {
        "ISTIO_MUTUAL"
    };
    let snippet: Vec<String> = hosts
        .iter()
        .map(|h| {
            let name = match cluster_parts(h) {
                Some((_, n)) if !h.starts_with('*') => n.to_string(),
                _ => format!("{}-clients", pa.name()),
            };
            let rule_ns = if h == "*.local" { ROOT_NAMESPACE } else { ns };
            rule_snippet(&name, rule_ns, h, client_mode)
        })
        .collect();
    let (severity, consequence) = match (mode, workload) {
        ("DISABLE", true) => (
            Severity::Error,
            "auto mTLS infers client modes only from namespace- and mesh-wide policies, so clients keep sending mTLS and get 503",
        ),
        ("DISABLE", false) => (
            Severity::Warning,
            "only clients with auto mTLS follow it; any other client still sends mTLS and gets 503",
        ),
        _ => (
            Severity::Warning,
            "the server takes plaintext and mTLS, and what clients send is left to auto mTLS",
        ),
    };
    Finding::new(
        codes::MTLS_HALF_PAIR,
        ix.reference(pa),
        "spec.mtls.mode",
        format!("mTLS {mode} for {scope} ({}) but no DestinationRule states what clients send: {consequence}", hosts.join(", ")),
        format!("add the DestinationRule with trafficPolicy.tls.mode {client_mode} shown below (the client half of the pair)"),
    )
    .severity(severity)
    .snippet(snippet.join("---\n"))
}
