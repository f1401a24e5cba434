//! VirtualServices bound to the `mesh` gateway that claim the same host where both are
//! visible (IST0109), after `virtualservice/conflictingmeshgatewayhosts.go` in istio/istio:
//! only the mesh gateway conflicts (ingress Gateways merge VirtualServices), hosts are
//! qualified as Istio qualifies them, `exportTo` scopes them (a namespace-scoped host also
//! meets the exported-to-all hosts it matches, wildcards included), and every VirtualService
//! of a conflict is reported once.

use std::collections::BTreeMap;

use super::hosts::{self, EXPORT_ALL, strings_at};
use super::{Finding, Index, Object, codes};

fn on_mesh(vs: &Object) -> bool {
    let gws = strings_at(&vs.value, "/spec/gateways");
    gws.is_empty() || gws.iter().any(|g| g == "mesh")
}

fn push_unique<'a>(list: &mut Vec<&'a Object>, vs: &'a Object) {
    if !list.iter().any(|o| std::ptr::eq(*o, vs)) {
        list.push(vs);
    }
}

/// `(scope, qualified host)` → the mesh VirtualServices claiming it there.
type Claims<'a> = BTreeMap<(String, String), Vec<&'a Object>>;

fn claims<'a>(ix: &Index<'a>) -> Claims<'a> {
    let mut claims: Claims<'a> = BTreeMap::new();
    for vs in ix.virtual_services.iter().copied().filter(|v| on_mesh(v)) {
        let ns = ix.ns(vs);
        for scope in hosts::export_scopes(&strings_at(&vs.value, "/spec/exportTo"), ns) {
            for h in strings_at(&vs.value, "/spec/hosts") {
                push_unique(
                    claims
                        .entry((scope.clone(), hosts::qualify(&h, ns)))
                        .or_default(),
                    vs,
                );
            }
        }
    }
    claims
}

pub fn check(ix: &Index<'_>, out: &mut Vec<Finding>) {
    let claims = claims(ix);
    let mut reported: Vec<&Object> = Vec::new();
    for ((scope, host), list) in &claims {
        let mut all = list.clone();
        if scope != EXPORT_ALL {
            for ((s, h), others) in &claims {
                if s == EXPORT_ALL && hosts::matches(host, h) {
                    for o in others {
                        push_unique(&mut all, o);
                    }
                }
            }
        }
        if all.len() < 2 {
            continue;
        }
        for vs in &all {
            if reported.iter().any(|r| std::ptr::eq(*r, *vs)) {
                continue;
            }
            reported.push(vs);
            let others: Vec<&Object> = all
                .iter()
                .copied()
                .filter(|o| !std::ptr::eq(*o, *vs))
                .collect();
            let names: Vec<String> = others
                .iter()
                .map(|o| format!("{}/{}", ix.ns(o), o.name()))
                .collect();
            let seen_in = if scope == EXPORT_ALL {
                "every namespace".to_string()
            } else {
                format!("namespace {scope}")
            };
            out.push(
                Finding::new(
                    codes::DUPLICATE_HOST,
                    ix.reference(vs),
                    "spec.hosts",
                    format!("host {host} is also claimed for the mesh gateway by VirtualService {} (both visible in {seen_in}): sidecars use one of them and silently ignore the other's routes", names.join(", ")),
                    "merge the routes into one VirtualService per host, use delegate VirtualServices, or narrow exportTo so they are not visible together",
                )
                .related(others.iter().map(|o| ix.reference(o)).collect()),
            );
        }
    }
}
