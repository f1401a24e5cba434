//! Checks of a plan's [`Target`] against the objects: its objects and subsets exist, its
//! routes can be managed and can match, nothing outside its routes sends to its canary, no
//! ingress route bypasses its split, no other plan manages the same routes, and whether a
//! GitOps tool applies its VirtualService.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::Value;

use super::destinations::{Bypass, bypass_finding, destinations, ingress_bypasses, is_ingress};
use super::gitops::{gitops_owner, ignore_snippet};
use super::matching::analyze_http;
use super::{Finding, Index, Object, ObjectRef, Severity, codes, hosts, mtls};
use crate::mesh::Target;
use crate::mesh::istio::routes::{self, is_tidegate_route_name, route_label};
use crate::plan::Split;

fn plan_ref(target: &Target) -> ObjectRef {
    ObjectRef {
        kind: "Rollout".into(),
        namespace: target.rollout.namespace.clone(),
        name: target.rollout.name.clone(),
        file: None,
    }
}

fn find<'a>(ix: &Index<'a>, list: &[&'a Object], name: &str, ns: &str) -> Option<&'a Object> {
    list.iter()
        .copied()
        .find(|o| o.name() == name && ix.ns(o) == ns)
}

/// The analyses of [`check`] that look at every object rather than the target's own: run once
/// per set of objects, filtered for each target.
pub struct Shared<'a> {
    bypasses: Vec<Bypass<'a>>,
    half_pairs: Vec<(Finding, Vec<String>)>,
}

impl<'a> Shared<'a> {
    pub fn new(ix: &Index<'a>) -> Shared<'a> {
        Shared {
            bypasses: ingress_bypasses(ix),
            half_pairs: mtls::half_pairs(ix),
        }
    }
}

pub fn check(ix: &Index<'_>, target: &Target) -> Vec<Finding> {
    check_with(ix, &Shared::new(ix), target)
}

/// [`check`] with the object-wide analyses already done.
pub fn check_with(ix: &Index<'_>, shared: &Shared<'_>, target: &Target) -> Vec<Finding> {
    let ns = target.rollout.namespace.as_str();
    let mut out = Vec::new();
    match &target.destination_rule {
        None => check_hosts(ix, target, &mut out),
        Some(name) => match find(ix, &ix.destination_rules, name, ns) {
            None => out.push(Finding::new(
                codes::PLAN_OBJECT_MISSING,
                plan_ref(target),
                "spec.destinationRule",
                format!("DestinationRule {ns}/{name} does not exist"),
                "create the DestinationRule, or name the right one in spec.destinationRule",
            )),
            Some(dr) => check_destination_rule(ix, dr, target, &mut out),
        },
    }
    match find(ix, &ix.virtual_services, &target.virtual_service, ns) {
        None => out.push(Finding::new(
            codes::PLAN_OBJECT_MISSING,
            plan_ref(target),
            "spec.virtualService",
            format!(
                "VirtualService {ns}/{} does not exist",
                target.virtual_service
            ),
            "create the VirtualService, or name the right one in spec.virtualService",
        )),
        Some(vs) => check_virtual_service(ix, vs, target, &mut out),
    }
    check_bypass_and_mtls(ix, shared, target, &mut out);
    out
}

/// A plan that splits by host: both hosts must be Services (or ServiceEntries) the
/// rollout's namespace sees, when the objects say so (lint of lone files cannot judge).
fn check_hosts(ix: &Index<'_>, target: &Target, out: &mut Vec<Finding>) {
    let ns = target.rollout.namespace.as_str();
    for (role, host) in [("stable", &target.stable), ("canary", &target.canary)] {
        if ix.registry.lookup(ns, &[], host).is_none() && ix.registry.can_judge(host, ns) {
            out.push(Finding::new(
                codes::PLAN_OBJECT_MISSING,
                plan_ref(target),
                format!("spec.{role}.host"),
                format!("the plan's {role} host {host} is no Service or ServiceEntry visible from namespace {ns}: traffic sent there gets 503"),
                format!("create Service {host} selecting the {role} pods, or fix spec.{role}.host in the plan"),
            ));
        }
    }
}

fn check_destination_rule(ix: &Index<'_>, dr: &Object, target: &Target, out: &mut Vec<Finding>) {
    let ns = target.rollout.namespace.as_str();
    let host = dr.str_at("/spec/host").unwrap_or("");
    if hosts::qualify(host, ns) != hosts::qualify(&target.service, ns) {
        out.push(Finding::new(
            codes::DESTINATION_RULE_HOST_MISMATCH,
            ix.reference(dr),
            "spec.host",
            format!("host {host:?} is not the rollout's service {:?}: its subsets do not apply to the service's traffic", target.service),
            format!("set spec.host to {}, or point the plan at the DestinationRule for it", target.service),
        ));
    }
    let defined: Vec<&str> = dr
        .array_at("/spec/subsets")
        .iter()
        .filter_map(|s| s.get("name").and_then(Value::as_str))
        .collect();
    for (role, subset) in [("stable", &target.stable), ("canary", &target.canary)] {
        if !defined.contains(&subset.as_str()) {
            out.push(Finding::new(
                codes::PLAN_SUBSET_MISSING,
                ix.reference(dr),
                "spec.subsets",
                format!("the plan's {role} subset {subset:?} is not defined (subsets: {defined:?}): traffic sent there is blackholed"),
                format!("add subset {subset:?} with the {role} pods' labels, or fix spec.{role} in the plan"),
            ));
        }
    }
}

fn check_virtual_service(ix: &Index<'_>, vs: &Object, target: &Target, out: &mut Vec<Finding>) {
    match routes::view(&vs.value, target) {
        Err(e) => out.push(Finding::new(
            codes::PLAN_ROUTES_UNMANAGEABLE,
            ix.reference(vs),
            "spec.http",
            e.to_string(),
            "point spec.routes at http routes that send only to the stable (and canary) subsets or hosts",
        )),
        Ok(view) => {
            let http = vs.array_at("/spec/http");
            let (unreachable, _) = analyze_http(http);
            for m in &view.managed {
                let Some(u) = unreachable.iter().find(|u| u.index == m.index) else {
                    continue;
                };
                if http[u.by]
                    .get("name")
                    .and_then(Value::as_str)
                    .is_some_and(is_tidegate_route_name)
                {
                    continue;
                }
                out.push(Finding::new(
                    codes::MANAGED_ROUTE_SHADOWED,
                    ix.reference(vs),
                    format!("spec.http[{}]", m.index),
                    format!("the rollout manages route {}, which can never match ({}; {} comes first): shifting its weights moves no traffic", route_label(&http[m.index], m.index), u.reason, route_label(&http[u.by], u.by)),
                    "move the broader route after the managed one, or manage the route that takes the traffic",
                ));
            }
        }
    }
    for u in unmanaged_canary_routes(&vs.value, target) {
        out.push(unmanaged_finding(ix, vs, target, &u));
    }
    if let Some(owner) = gitops_owner(&vs.value) {
        let mut f = Finding::new(
            codes::GITOPS_OWNED,
            ix.reference(vs),
            "metadata",
            format!(
                "this VirtualService is applied by {owner}: {}, undoing the weights, header route and mirror tidegate writes (tidegate then pauses the rollout as drift)",
                owner.effect()
            ),
            match owner {
                super::GitOpsOwner::Helm { .. } => "Helm has no setting to ignore fields: keep `helm upgrade` from changing this VirtualService's routes while a rollout runs, or apply the VirtualService outside the chart (docs/gitops.md)".to_string(),
                _ => "make the tool ignore the fields tidegate manages with the configuration below (docs/gitops.md)".to_string(),
            },
        );
        if let Some(s) = ignore_snippet(&owner, &vs.value, target) {
            f = f.snippet(s);
        }
        out.push(f);
    }
}

fn check_bypass_and_mtls(
    ix: &Index<'_>,
    shared: &Shared<'_>,
    target: &Target,
    out: &mut Vec<Finding>,
) {
    let ns = target.rollout.namespace.as_str();
    let service = hosts::qualify(&target.service, ns);
    for b in &shared.bypasses {
        let ours = b
            .splitters
            .iter()
            .any(|v| v.name() == target.virtual_service && ix.ns(v) == ns);
        if ours && b.fqdn == service {
            let f = bypass_finding(ix, b).severity(Severity::Error);
            let message = format!("{} — the rollout's canary split never sees them", f.message);
            out.push(Finding { message, ..f });
        }
    }
    for (f, hosts) in &shared.half_pairs {
        if hosts.contains(&service) {
            out.push(f.clone());
        }
    }
    if target.split == Split::Host {
        check_host_split_bypass(ix, target, out);
    }
}

/// A host-level split happens in the sidecars that apply the plan's VirtualService; an ingress
/// gateway route straight to the service or to the stable Service skips it, so gateway requests
/// never reach the canary and its analysis sees none of them.
fn check_host_split_bypass(ix: &Index<'_>, target: &Target, out: &mut Vec<Finding>) {
    let ns = target.rollout.namespace.as_str();
    let split = [&target.service, &target.stable].map(|h| hosts::qualify(h, ns));
    for vs in ix
        .virtual_services
        .iter()
        .copied()
        .filter(|v| is_ingress(v))
    {
        if vs.name() == target.virtual_service && ix.ns(vs) == ns {
            continue;
        }
        for d in destinations(vs) {
            let fqdn = hosts::qualify(d.host(), ix.ns(vs));
            if d.mirror || !d.field.starts_with("spec.http") || !split.contains(&fqdn) {
                continue;
            }
            out.push(Finding::new(
                codes::INGRESS_BYPASS,
                ix.reference(vs),
                d.field.clone(),
                format!("this ingress route sends to {} directly, so the host-level split of VirtualService {ns}/{} (rollout {}) does not apply to gateway requests: none reach the canary {} through it", d.host(), target.virtual_service, target.rollout, target.canary),
                format!("bind VirtualService {} to the gateway too (add it to spec.gateways), or let tidegate manage this route (name it in the plan's spec.routes)", target.virtual_service),
            ).severity(Severity::Error));
        }
    }
}

/// An http route the plan does not manage that still sends to its canary subset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnmanagedRoute {
    /// Index in `spec.http`.
    pub index: usize,
    pub name: Option<String>,
    /// True when the route only mirrors to the canary.
    pub mirror: bool,
}

/// The http routes of `vs` that `target` does not manage (its own header route and every
/// `tidegate-*-header` route excluded) and that send to — or mirror to — the canary subset of
/// its service: after a rollback their requests still reach the canary. Pure; the daemon can
/// call it with the live VirtualService.
pub fn unmanaged_canary_routes(vs: &Value, target: &Target) -> Vec<UnmanagedRoute> {
    let ns = routes::vs_namespace(vs, target);
    let managed: BTreeSet<usize> = routes::view(vs, target)
        .map(|v| v.managed.iter().map(|m| m.index).collect())
        .unwrap_or_default();
    let to_canary = |d: &Value| {
        target.is_side(
            true,
            d.get("host").and_then(Value::as_str).unwrap_or(""),
            d.get("subset").and_then(Value::as_str),
            ns,
        )
    };
    let http = vs
        .pointer("/spec/http")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let mut out = Vec::new();
    for (i, r) in http.iter().enumerate() {
        let name = r.get("name").and_then(Value::as_str);
        if managed.contains(&i) || name.is_some_and(is_tidegate_route_name) {
            continue;
        }
        let dests = r
            .get("route")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let routes_to = dests
            .iter()
            .filter_map(|d| d.get("destination"))
            .any(to_canary);
        let mirrors = r.get("mirror").is_some_and(to_canary)
            || r.get("mirrors")
                .and_then(Value::as_array)
                .is_some_and(|ms| {
                    ms.iter()
                        .filter_map(|m| m.get("destination"))
                        .any(to_canary)
                });
        if routes_to || mirrors {
            out.push(UnmanagedRoute {
                index: i,
                name: name.map(str::to_string),
                mirror: !routes_to,
            });
        }
    }
    out
}

fn unmanaged_finding(ix: &Index<'_>, vs: &Object, target: &Target, u: &UnmanagedRoute) -> Finding {
    let label = u
        .name
        .as_ref()
        .map_or_else(|| format!("http[{}]", u.index), |n| format!("{n:?}"));
    let verb = if u.mirror { "mirrors" } else { "sends" };
    Finding::new(
        codes::UNMANAGED_ROUTE_TO_CANARY,
        ix.reference(vs),
        format!("spec.http[{}]", u.index),
        format!(
            "route {label} {verb} to the canary ({}), but rollout {} does not manage it: after a rollback its requests still reach the canary, and the canary's metrics include them",
            target.describe(true),
            target.rollout
        ),
        "add the route to the plan's spec.routes, drop its canary destination, or use a setHeaderRoute step instead of a hand-written canary route",
    )
}

/// tidegate header routes left behind by rollouts that are not in `known` (rollout names).
pub fn leftovers(ix: &Index<'_>, known: &[String]) -> Vec<Finding> {
    let mut out = Vec::new();
    for vs in &ix.virtual_services {
        for (i, r) in vs.array_at("/spec/http").iter().enumerate() {
            let Some(name) = r
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| is_tidegate_route_name(n))
            else {
                continue;
            };
            let owner = name
                .trim_start_matches("tidegate-")
                .trim_end_matches("-header");
            if !known.iter().any(|k| k == owner) {
                out.push(Finding::new(
                    codes::LEFTOVER_TIDEGATE_ROUTE,
                    ix.reference(vs),
                    format!("spec.http[{i}]"),
                    format!("header route {name:?} belongs to rollout {owner:?}, which no plan defines: it still sends matching requests to the canary"),
                    "remove the route (or restore the plan so tidegate cleans it up)",
                ));
            }
        }
    }
    out
}

/// The routes two targets would both manage, as labels; `None` when it cannot be told.
fn shared_routes(a: &Target, b: &Target, vs: Option<&Value>) -> Option<Vec<String>> {
    if let Some(vs) = vs
        && let (Ok(va), Ok(vb)) = (routes::view(vs, a), routes::view(vs, b))
    {
        let http = vs.pointer("/spec/http").and_then(Value::as_array)?;
        let theirs: BTreeSet<usize> = va.managed.iter().map(|m| m.index).collect();
        return Some(
            vb.managed
                .iter()
                .filter(|m| theirs.contains(&m.index))
                .map(|m| route_label(&http[m.index], m.index))
                .collect(),
        );
    }
    // Plans alone: the same named routes, or both managing the routes to the same stable.
    if !a.routes.is_empty() && !b.routes.is_empty() {
        return Some(
            b.routes
                .iter()
                .filter(|r| a.routes.contains(r))
                .map(|r| format!("{r:?}"))
                .collect(),
        );
    }
    let ns = &a.rollout.namespace;
    let same_default = a.routes.is_empty()
        && b.routes.is_empty()
        && a.split == b.split
        && a.destination(false).1 == b.destination(false).1
        && hosts::qualify(a.destination(false).0, ns)
            == hosts::qualify(b.destination(false).0, &b.rollout.namespace);
    same_default.then(|| vec![format!("the routes that send to {}", b.describe(false))])
}

/// One owner per route: for every pair of targets on the same VirtualService (same namespace
/// and name) that would manage a common route, an error on the later target naming the
/// earlier one. With the VirtualService among `objects` the managed routes are computed as
/// the router computes them; without it (plans alone) two plans conflict when they name a
/// common route, or when both manage the default routes of the same service and stable.
/// Pure; the daemon can call it with its known targets in precedence order.
pub fn route_owners(targets: &[Target], objects: &[Object]) -> Vec<Finding> {
    let mut out = Vec::new();
    for (j, b) in targets.iter().enumerate() {
        let ns = &b.rollout.namespace;
        let vs = objects
            .iter()
            .find(|o| {
                o.is("VirtualService", super::NET)
                    && o.name() == b.virtual_service
                    && o.namespace(ns) == ns
            })
            .map(|o| &o.value);
        for a in targets[..j].iter().filter(|a| {
            a.rollout.namespace == *ns
                && a.virtual_service == b.virtual_service
                && a.rollout != b.rollout
        }) {
            let Some(shared) = shared_routes(a, b, vs).filter(|s| !s.is_empty()) else {
                continue;
            };
            let field = if b.routes.is_empty() {
                "spec.stable"
            } else {
                "spec.routes"
            };
            out.push(
                Finding::new(
                    codes::ROUTE_OWNER_CONFLICT,
                    plan_ref(b),
                    field,
                    format!(
                        "rollout {} would manage {} of VirtualService {ns}/{}, which rollout {} manages too: each would see the other's writes as changes outside tidegate",
                        b.rollout, shared.join(", "), b.virtual_service, a.rollout
                    ),
                    "give every route one plan: name disjoint spec.routes in the two plans, or merge them",
                )
                .related(vec![plan_ref(a)]),
            );
        }
    }
    out
}
