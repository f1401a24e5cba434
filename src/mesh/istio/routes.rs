//! The pure heart of the Istio router: find the managed http routes of a VirtualService,
//! read the traffic state they express, and compute the guarded JSON Patch that moves them to
//! a desired [`RouteState`] — touching nothing else. Plain functions over `serde_json::Value`.
//!
//! Patch shape: every operation that changes a route is preceded by a `test` of that route's
//! whole value as read, so a concurrent edit makes the API server refuse the write (`422`)
//! instead of being overwritten. Header routes tidegate adds are named
//! `tidegate-<rollout>-header` and go first (Istio is first-match). The original `route`,
//! `mirror` and `mirrorPercentage` of each managed route are kept in the annotation
//! `tidegate.dev/original-routes` while a rollout runs, so [`clear`] can restore them exactly.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::IstioError;
use crate::mesh::Target;
use crate::plan::{HeaderRoute, Split, StringMatch};
use crate::rollout::{ReadBack, RouteState};

/// Annotation holding the original routes while rollouts run: a JSON object keyed by rollout.
pub const ORIGINALS_ANNOTATION: &str = "tidegate.dev/original-routes";
const ORIGINALS_POINTER: &str = "/metadata/annotations/tidegate.dev~1original-routes";
/// The fields of a managed route tidegate writes.
const MANAGED_FIELDS: [&str; 3] = ["route", "mirror", "mirrorPercentage"];

/// Name of the header route tidegate adds for a rollout.
pub fn header_route_name(rollout: &str) -> String {
    format!("tidegate-{rollout}-header")
}

/// Whether an http route name is one tidegate added (for any rollout).
pub fn is_tidegate_route_name(name: &str) -> bool {
    name.starts_with("tidegate-") && name.ends_with("-header")
}

/// A host as Istio qualifies it: a short name (no dot, not a wildcard) becomes
/// `name.<namespace>.svc.cluster.local`; any other name (`google.com`, `reviews.prod`) is
/// left as written, as istiod leaves it (`ResolveShortnameToFQDN`).
pub fn fqdn(host: &str, namespace: &str) -> String {
    crate::mesh::istio::preflight::hosts::qualify(host, namespace)
}

/// Whether `dest_host` names the same service as `service` (both read in `namespace`).
pub fn same_host(service: &str, dest_host: &str, namespace: &str) -> bool {
    fqdn(service, namespace) == fqdn(dest_host, namespace)
}

/// How to name a route in messages: its name, or `http[i]`.
pub fn route_label(route: &Value, index: usize) -> String {
    route
        .get("name")
        .and_then(Value::as_str)
        .map(|n| format!("{n:?}"))
        .unwrap_or_else(|| format!("http[{index}]"))
}

/// The namespace a VirtualService lives in (its metadata, else the rollout's).
pub fn vs_namespace<'a>(vs: &'a Value, target: &'a Target) -> &'a str {
    vs.pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or(&target.rollout.namespace)
}

/// A managed http route: its index in `spec.http` and where stable/canary sit in its `route`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Managed {
    pub index: usize,
    /// The key the original is saved under: the route's name, or `#<n>` (n = position among the
    /// routes tidegate did not add).
    pub key: String,
    pub stable: Option<usize>,
    pub canary: Option<usize>,
    /// Destinations of the service at weight 0 that are neither stable nor canary (a previous
    /// release's subset): dropped by the first write.
    pub stale: Vec<usize>,
}

/// What tidegate sees of a VirtualService for one rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub namespace: String,
    pub managed: Vec<Managed>,
    /// Index of this rollout's header route in `spec.http`, if present.
    pub header_route: Option<usize>,
}

fn http_routes(vs: &Value) -> &[Value] {
    vs.pointer("/spec/http")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn dest_of(d: &Value) -> (&str, Option<&str>) {
    (
        d.pointer("/destination/host")
            .and_then(Value::as_str)
            .unwrap_or(""),
        d.pointer("/destination/subset").and_then(Value::as_str),
    )
}

/// Find the managed routes (see the module docs for the rules).
pub fn view(vs: &Value, target: &Target) -> Result<View, IstioError> {
    let vs_name = vs
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or(&target.virtual_service)
        .to_string();
    if vs.get("spec").and_then(Value::as_object).is_none() {
        return Err(IstioError::Shape {
            vs: vs_name,
            detail: "it has no spec object".into(),
        });
    }
    let namespace = vs_namespace(vs, target).to_string();
    let http = http_routes(vs);
    let own = header_route_name(&target.rollout.name);
    let header_route = http
        .iter()
        .position(|r| r.get("name").and_then(Value::as_str) == Some(own.as_str()));

    let mut user_pos = 0usize;
    let mut candidates: Vec<(usize, String)> = Vec::new();
    for (i, r) in http.iter().enumerate() {
        let name = r.get("name").and_then(Value::as_str);
        if name.is_some_and(is_tidegate_route_name) {
            continue;
        }
        let key = match name {
            Some(n) => n.to_string(),
            None => format!("#{user_pos}"),
        };
        user_pos += 1;
        candidates.push((i, key));
    }

    let mut selected: Vec<(usize, String)> = Vec::new();
    if target.routes.is_empty() {
        for (i, key) in &candidates {
            let r = &http[*i];
            let sends = r.get("route").and_then(Value::as_array).is_some_and(|ds| {
                ds.iter().any(|d| {
                    let (h, s) = dest_of(d);
                    // tidegate keeps the stable destination (at weight 0 if need be), so
                    // routes it split still qualify.
                    target.is_side(false, h, s, &namespace)
                })
            });
            if sends {
                selected.push((*i, key.clone()));
            }
        }
        if selected.is_empty() {
            // After a promotion the routes send to the canary alone.
            selected = promoted_routes(http, &candidates, target, &namespace);
        }
        if selected.is_empty() {
            let l4 = ["tcp", "tls"].iter().any(|k| {
                vs.pointer(&format!("/spec/{k}"))
                    .and_then(Value::as_array)
                    .is_some_and(|rs| !rs.is_empty())
            });
            let detail = if http.is_empty() && l4 {
                "it has only tcp/tls routes; tidegate shifts http routes only".to_string()
            } else if http.iter().any(|r| r.get("delegate").is_some()) {
                "its http routes delegate to other VirtualServices; name the delegate VirtualService in the plan".to_string()
            } else {
                format!("no http route sends to {}", target.describe(false))
            };
            return Err(IstioError::NoManagedRoutes {
                vs: vs_name,
                detail,
            });
        }
    } else {
        for wanted in &target.routes {
            match candidates.iter().find(|(i, _)| {
                http[*i].get("name").and_then(Value::as_str) == Some(wanted.as_str())
            }) {
                Some(c) => selected.push(c.clone()),
                None => {
                    for kind in ["tcp", "tls"] {
                        let found = vs
                            .pointer(&format!("/spec/{kind}"))
                            .and_then(Value::as_array)
                            .is_some_and(|rs| {
                                rs.iter().any(|r| {
                                    r.get("name").and_then(Value::as_str) == Some(wanted.as_str())
                                })
                            });
                        if found {
                            return Err(IstioError::UnsupportedRoute {
                                vs: vs_name,
                                route: wanted.clone(),
                                detail: format!(
                                    "it is a {kind} route; tidegate shifts http routes only"
                                ),
                            });
                        }
                    }
                    return Err(IstioError::RouteNotFound {
                        vs: vs_name,
                        route: wanted.clone(),
                    });
                }
            }
        }
    }

    let mut managed = Vec::new();
    for (i, key) in selected {
        let r = &http[i];
        let label = route_label(r, i);
        if let Some(d) = r.get("delegate") {
            return Err(IstioError::UnsupportedRoute {
                vs: vs_name,
                route: label,
                detail: format!(
                    "it delegates to VirtualService {}; point the plan at the delegate",
                    d.get("name").and_then(Value::as_str).unwrap_or("?")
                ),
            });
        }
        let Some(dests) = r.get("route").and_then(Value::as_array) else {
            return Err(IstioError::UnsupportedRoute {
                vs: vs_name,
                route: label,
                detail: "it has no destinations (redirect or direct response)".into(),
            });
        };
        let mut stable = None;
        let mut canary = None;
        let mut stale = Vec::new();
        for (j, d) in dests.iter().enumerate() {
            let (h, s) = dest_of(d);
            // Another subset of the service at weight 0: a previous release's, dropped.
            let old_subset = target.split == Split::Subset
                && same_host(&target.service, h, &namespace)
                && s.is_some()
                && weight(d) == Some(0);
            if target.is_side(false, h, s, &namespace) && stable.is_none() {
                stable = Some(j);
            } else if target.is_side(true, h, s, &namespace) && canary.is_none() {
                canary = Some(j);
            } else if old_subset {
                stale.push(j);
            } else {
                return Err(IstioError::UnsupportedRoute {
                    vs: vs_name,
                    route: label,
                    detail: format!(
                        "it also sends to host {h}{}; tidegate splits routes whose \
                         destinations are only the stable and canary {}s",
                        s.map(|s| format!(" subset {s}")).unwrap_or_default(),
                        target.split.noun()
                    ),
                });
            }
        }
        if stable.is_none() && canary.is_none() {
            return Err(IstioError::UnsupportedRoute {
                vs: vs_name,
                route: label,
                detail: format!(
                    "it sends neither to {} nor {}",
                    target.describe(false),
                    target.describe(true)
                ),
            });
        }
        managed.push(Managed {
            index: i,
            key,
            stable,
            canary,
            stale,
        });
    }
    Ok(View {
        namespace,
        managed,
        header_route,
    })
}

/// The routes that send only to the canary of the service (the state a promotion leaves).
fn promoted_routes(
    http: &[Value],
    candidates: &[(usize, String)],
    target: &Target,
    namespace: &str,
) -> Vec<(usize, String)> {
    candidates
        .iter()
        .filter(|(i, _)| {
            let dests = http[*i].get("route").and_then(Value::as_array);
            dests.is_some_and(|ds| {
                !ds.is_empty()
                    && ds.iter().all(|d| {
                        let (h, s) = dest_of(d);
                        target.is_side(true, h, s, namespace)
                    })
            })
        })
        .cloned()
        .collect()
}

/// The weight-0 destinations of other subsets the first write drops, as `route → subset`.
pub fn stale_destinations(vs: &Value, target: &Target) -> Vec<String> {
    let Ok(v) = view(vs, target) else {
        return Vec::new();
    };
    let http = http_routes(vs);
    let mut out = Vec::new();
    for m in &v.managed {
        let r = &http[m.index];
        for &j in &m.stale {
            let subset = r
                .pointer(&format!("/route/{j}/destination/subset"))
                .and_then(Value::as_str)
                .unwrap_or("?");
            out.push(format!("{} → {subset}", route_label(r, m.index)));
        }
    }
    out
}

fn weight(d: &Value) -> Option<i64> {
    d.get("weight").and_then(Value::as_i64)
}

/// The canary weight a managed route expresses (Istio: a lone destination takes 100).
fn canary_weight_of(route: &Value, m: &Managed) -> u8 {
    let dests = route.get("route").and_then(Value::as_array);
    let n = dests.map(Vec::len).unwrap_or(0);
    let w = match (m.stable, m.canary) {
        (_, None) => 0,
        (None, Some(_)) => 100,
        (Some(_), Some(c)) => {
            let cw = dests.and_then(|d| d.get(c)).and_then(weight);
            match cw {
                Some(w) => w,
                None if n == 1 => 100,
                None => 0,
            }
        }
    };
    u8::try_from(w.clamp(0, 100)).unwrap_or(0)
}

fn mirror_percent_of(route: &Value, target: &Target, ns: &str) -> u8 {
    let Some(m) = route.get("mirror") else {
        return 0;
    };
    let host = m.get("host").and_then(Value::as_str).unwrap_or("");
    let subset = m.get("subset").and_then(Value::as_str);
    if !target.is_side(true, host, subset, ns) {
        return 0;
    }
    let pct = route
        .pointer("/mirrorPercentage/value")
        .and_then(Value::as_f64)
        .unwrap_or(100.0);
    // Clamped to 0..=100 first, so the cast cannot truncate.
    pct.clamp(0.0, 100.0).round() as u8
}

fn string_match_json(m: &StringMatch) -> Value {
    match m {
        StringMatch::Exact(v) => json!({"exact": v}),
        StringMatch::Prefix(v) => json!({"prefix": v}),
        StringMatch::Regex(v) => json!({"regex": v}),
    }
}

fn string_match_from(v: &Value) -> Option<StringMatch> {
    let o = v.as_object()?;
    if let Some(s) = o.get("exact").and_then(Value::as_str) {
        return Some(StringMatch::Exact(s.into()));
    }
    if let Some(s) = o.get("prefix").and_then(Value::as_str) {
        return Some(StringMatch::Prefix(s.into()));
    }
    o.get("regex")
        .and_then(Value::as_str)
        .map(|s| StringMatch::Regex(s.into()))
}

/// The traffic state the managed routes express now.
pub fn observe(vs: &Value, target: &Target) -> Result<(RouteState, Vec<String>), IstioError> {
    let v = view(vs, target)?;
    let http = http_routes(vs);
    let mut disagreements = Vec::new();
    let mut state = RouteState::default();
    for (n, m) in v.managed.iter().enumerate() {
        let r = &http[m.index];
        let w = canary_weight_of(r, m);
        let mp = mirror_percent_of(r, target, &v.namespace);
        if n == 0 {
            state.canary_weight = w;
            state.mirror_percent = mp;
        } else if w != state.canary_weight || mp != state.mirror_percent {
            disagreements.push(format!(
                "route {} sends {w}% to the canary (mirror {mp}%) while {} sends {}% (mirror {}%)",
                route_label(r, m.index),
                route_label(&http[v.managed[0].index], v.managed[0].index),
                state.canary_weight,
                state.mirror_percent
            ));
        }
    }
    if let Some(h) = v.header_route {
        let first_clause_headers = http[h]
            .pointer("/match/0/headers")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        // Header keys the managed route already matched on are the route's, not tidegate's.
        let route_headers = v
            .managed
            .first()
            .and_then(|m| http[m.index].pointer("/match/0/headers"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let headers: BTreeMap<String, StringMatch> = first_clause_headers
            .iter()
            .filter(|(k, val)| route_headers.get(*k) != Some(*val))
            .filter_map(|(k, val)| string_match_from(val).map(|m| (k.clone(), m)))
            .collect();
        state.header_route = Some(HeaderRoute { headers });
    }
    Ok((state, disagreements))
}

/// Compare the routes with what tidegate last set: the tri-state read-back.
pub fn verify(vs: &Value, target: &Target, expected: &RouteState) -> ReadBack {
    match observe(vs, target) {
        Err(_) => ReadBack::Unknown,
        Ok((actual, disagreements)) => {
            if actual == *expected && disagreements.is_empty() {
                ReadBack::Verified
            } else {
                let mut detail = format!("expected {expected}, found {actual}");
                for d in disagreements {
                    detail.push_str("; ");
                    detail.push_str(&d);
                }
                ReadBack::Drifted { actual, detail }
            }
        }
    }
}

/// The original managed fields saved for one rollout, keyed by route key.
type Originals = Map<String, Value>;

fn all_originals(vs: &Value) -> Map<String, Value> {
    vs.pointer(ORIGINALS_POINTER)
        .and_then(Value::as_str)
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default()
}

fn saved_for(vs: &Value, rollout: &str) -> Option<Originals> {
    all_originals(vs)
        .get(rollout)
        .and_then(|v| v.get("routes"))
        .and_then(Value::as_object)
        .cloned()
}

fn managed_fields(route: &Value) -> Value {
    let mut m = Map::new();
    for f in MANAGED_FIELDS {
        if let Some(v) = route.get(f) {
            m.insert(f.to_string(), v.clone());
        }
    }
    Value::Object(m)
}

/// The route with its managed fields replaced by `fields` (absent there = absent here).
fn with_fields(route: &Value, fields: &Value) -> Value {
    let mut r = route.clone();
    if let Some(o) = r.as_object_mut() {
        for f in MANAGED_FIELDS {
            match fields.get(f) {
                Some(v) => {
                    o.insert(f.to_string(), v.clone());
                }
                None => {
                    o.remove(f);
                }
            }
        }
    }
    r
}

/// The route rewritten to send `state`'s weights and mirror; `original` supplies the mirror to
/// restore when `state` has none.
fn rewrite_route(
    route: &Value,
    m: &Managed,
    state: &RouteState,
    original: &Value,
    target: &Target,
) -> Value {
    let (mut r, m) = without_stale(route, m);
    let route = &r.clone();
    let mut dests: Vec<Value> = route
        .get("route")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let w = i64::from(state.canary_weight);
    let lone_stable_at_zero = state.canary_weight == 0 && m.canary.is_none() && dests.len() == 1;
    let lone_canary_at_full =
        state.canary_weight == 100 && m.stable.is_none() && m.canary.is_some();
    if !lone_stable_at_zero && !lone_canary_at_full {
        // The template for a missing destination is the other one, with the subset changed.
        let template = m
            .stable
            .or(m.canary)
            .and_then(|i| dests.get(i))
            .cloned()
            .unwrap_or_else(|| json!({"destination": {"host": target.service}}));
        let make = |canary: bool| {
            let mut d = template.clone();
            if let Some(dd) = d.get_mut("destination") {
                point_at(dd, target, canary);
            }
            d
        };
        let (mut si, mut ci) = (m.stable, m.canary);
        if si.is_none() {
            dests.insert(0, make(false));
            si = Some(0);
            ci = ci.map(|c| c + 1);
        }
        if ci.is_none() {
            let at = si.map(|s| s + 1).unwrap_or(dests.len());
            dests.insert(at, make(true));
            ci = Some(at);
        }
        for (idx, weight) in [(si, 100 - w), (ci, w)] {
            if let Some(o) = idx
                .and_then(|i| dests.get_mut(i))
                .and_then(Value::as_object_mut)
            {
                o.insert("weight".into(), json!(weight));
            }
        }
    }
    if let Some(o) = r.as_object_mut() {
        o.insert("route".into(), Value::Array(dests.clone()));
        if state.mirror_percent > 0 {
            let base = m
                .stable
                .and_then(|i| route.pointer(&format!("/route/{i}/destination")))
                .cloned()
                .unwrap_or_else(|| json!({"host": target.service}));
            let mut mirror = Map::new();
            for f in ["host", "port"] {
                if let Some(v) = base.get(f) {
                    mirror.insert(f.into(), v.clone());
                }
            }
            let mut mirror = Value::Object(mirror);
            point_at(&mut mirror, target, true);
            o.insert("mirror".into(), mirror);
            o.insert(
                "mirrorPercentage".into(),
                json!({"value": f64::from(state.mirror_percent)}),
            );
        } else {
            for f in ["mirror", "mirrorPercentage"] {
                match original.get(f) {
                    Some(v) => {
                        o.insert(f.to_string(), v.clone());
                    }
                    None => {
                        o.remove(f);
                    }
                }
            }
        }
    }
    r
}

/// Make a destination object (`{host, subset?, port?}`) name one side: the subset for a
/// subset split (the host stays), the side's host and no subset for a host-level split.
fn point_at(dest: &mut Value, target: &Target, canary: bool) {
    let Some(o) = dest.as_object_mut() else {
        return;
    };
    match target.destination(canary) {
        (_, Some(subset)) => {
            o.insert("subset".into(), Value::String(subset.to_string()));
        }
        (host, None) => {
            o.insert("host".into(), Value::String(host.to_string()));
            o.remove("subset");
        }
    }
}

/// `route` without its stale destinations, and the indices of `m` adjusted to match.
fn without_stale(route: &Value, m: &Managed) -> (Value, Managed) {
    let mut r = route.clone();
    let mut m = m.clone();
    if m.stale.is_empty() {
        return (r, m);
    }
    if let Some(ds) = r.get_mut("route").and_then(Value::as_array_mut) {
        for &j in m.stale.iter().rev() {
            if j < ds.len() {
                ds.remove(j);
            }
        }
    }
    let shift = |i: usize| i - m.stale.iter().filter(|&&j| j < i).count();
    m.stable = m.stable.map(shift);
    m.canary = m.canary.map(shift);
    m.stale.clear();
    (r, m)
}

/// At the end of a promotion the stable destination goes: the route sends to the canary alone,
/// so the next release (whose stable is this canary) starts from a plain route.
fn promoted(route: Value, m: &Managed) -> Value {
    let mut r = route;
    let (Some(si), Some(_)) = (m.stable, m.canary) else {
        return r;
    };
    if let Some(ds) = r.get_mut("route").and_then(Value::as_array_mut)
        && si < ds.len()
    {
        ds.remove(si);
    }
    r
}

/// The header route for `state`, built from the managed routes' match clauses (so a route that
/// matched `/api` only still does), each with the plan's headers added.
fn header_route(vs: &Value, view: &View, h: &HeaderRoute, target: &Target) -> Value {
    let http = http_routes(vs);
    let mut clauses: Vec<Value> = Vec::new();
    let headers: Map<String, Value> = h
        .headers
        .iter()
        .map(|(k, m)| (k.clone(), string_match_json(m)))
        .collect();
    for m in &view.managed {
        let existing = http[m.index].get("match").and_then(Value::as_array);
        match existing {
            Some(ms) if !ms.is_empty() => {
                for c in ms {
                    let mut c = c.clone();
                    if let Some(o) = c.as_object_mut() {
                        o.remove("name");
                        let hm = o
                            .entry("headers")
                            .or_insert_with(|| Value::Object(Map::new()));
                        if let Some(hm) = hm.as_object_mut() {
                            for (k, v) in &headers {
                                hm.insert(k.clone(), v.clone());
                            }
                        }
                    }
                    if !clauses.contains(&c) {
                        clauses.push(c);
                    }
                }
            }
            _ => {
                clauses = vec![json!({"headers": headers})];
                break;
            }
        }
    }
    let dest = view
        .managed
        .first()
        .and_then(|m| m.stable.or(m.canary).map(|i| (m.index, i)))
        .and_then(|(ri, di)| http[ri].pointer(&format!("/route/{di}/destination")))
        .cloned()
        .unwrap_or_else(|| json!({"host": target.service}));
    let mut dest = dest;
    point_at(&mut dest, target, true);
    json!({
        "name": header_route_name(&target.rollout.name),
        "match": clauses,
        "route": [{"destination": dest, "weight": 100}],
    })
}

/// A computed write: the JSON Patch operations (empty = nothing to do).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PatchPlan {
    pub ops: Vec<Value>,
}

impl PatchPlan {
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The operations as a `json_patch::Patch` (what kube's `Patch::Json` takes).
    pub fn to_json_patch(&self) -> Result<json_patch::Patch, serde_json::Error> {
        serde_json::from_value(Value::Array(self.ops.clone()))
    }
}

fn field_ops(route_ptr: &str, old: &Value, new: &Value, ops: &mut Vec<Value>) {
    for f in MANAGED_FIELDS {
        let p = format!("{route_ptr}/{f}");
        match (old.get(f), new.get(f)) {
            (Some(a), Some(b)) if a == b => {}
            (Some(_), Some(b)) => ops.push(json!({"op": "replace", "path": p, "value": b})),
            (None, Some(b)) => ops.push(json!({"op": "add", "path": p, "value": b})),
            (Some(_), None) => ops.push(json!({"op": "remove", "path": p})),
            (None, None) => {}
        }
    }
}

/// Operations keeping the originals annotation in step: `entry` = this rollout's entry
/// (`None` = remove it).
fn annotation_ops(
    vs: &Value,
    rollout: &str,
    entry: Option<Value>,
    tests: &mut Vec<Value>,
    ops: &mut Vec<Value>,
) {
    let mut all = all_originals(vs);
    let before = all.clone();
    match entry {
        Some(e) => {
            all.insert(rollout.to_string(), e);
        }
        None => {
            all.remove(rollout);
        }
    }
    if all == before {
        return;
    }
    let annotations = vs
        .pointer("/metadata/annotations")
        .and_then(Value::as_object);
    let current = vs.pointer(ORIGINALS_POINTER);
    if let Some(c) = current {
        tests.push(json!({"op": "test", "path": ORIGINALS_POINTER, "value": c}));
    }
    if all.is_empty() {
        let created_map = before
            .get(rollout)
            .and_then(|e| e.get("createdAnnotations"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let only_ours = annotations.is_some_and(|a| a.len() == 1);
        if created_map && only_ours {
            ops.push(json!({"op": "remove", "path": "/metadata/annotations"}));
        } else if current.is_some() {
            ops.push(json!({"op": "remove", "path": ORIGINALS_POINTER}));
        }
        return;
    }
    let text = Value::Object(all).to_string();
    match (annotations, current) {
        (None, _) => {
            // Absence cannot be tested; the resourceVersion guards against an annotations map
            // someone else adds meanwhile (which this `add` would replace).
            if let Some(rv) = vs.pointer("/metadata/resourceVersion") {
                tests.push(json!({"op": "test", "path": "/metadata/resourceVersion", "value": rv}));
            }
            ops.push(json!({"op": "add", "path": "/metadata/annotations",
                            "value": {ORIGINALS_ANNOTATION: text}}))
        }
        (Some(_), Some(_)) => {
            ops.push(json!({"op": "replace", "path": ORIGINALS_POINTER, "value": text}))
        }
        (Some(_), None) => ops.push(json!({"op": "add", "path": ORIGINALS_POINTER, "value": text})),
    }
}

/// The guarded patch that makes the managed routes express `desired`.
pub fn plan_set(
    vs: &Value,
    target: &Target,
    desired: &RouteState,
) -> Result<PatchPlan, IstioError> {
    build(vs, target, desired, false)
}

/// The guarded patch that removes tidegate's header route and mirror, leaves the managed routes
/// at `state`, and drops the saved originals. When the originals expressed `state` (typically
/// all on stable), they are restored exactly.
pub fn plan_clear(
    vs: &Value,
    target: &Target,
    state: &RouteState,
) -> Result<PatchPlan, IstioError> {
    let state = RouteState {
        canary_weight: state.canary_weight,
        header_route: None,
        mirror_percent: 0,
    };
    build(vs, target, &state, true)
}

fn build(
    vs: &Value,
    target: &Target,
    desired: &RouteState,
    clear: bool,
) -> Result<PatchPlan, IstioError> {
    if desired.canary_weight > 100 || desired.mirror_percent > 100 {
        return Err(IstioError::InvalidState(desired.to_string()));
    }
    let v = view(vs, target)?;
    let http = http_routes(vs);
    let saved = saved_for(vs, &target.rollout.name).unwrap_or_default();
    let mut tests = Vec::new();
    let mut ops = Vec::new();
    let mut new_saved = saved.clone();
    for m in &v.managed {
        let route = &http[m.index];
        if desired.mirror_percent > 0 && route.get("mirrors").is_some() {
            return Err(IstioError::UnsupportedRoute {
                vs: vs
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or(&target.virtual_service)
                    .to_string(),
                route: route_label(route, m.index),
                detail: "it already uses `mirrors`; Istio allows `mirror` or `mirrors`, not both,                          so tidegate cannot add its mirror"
                    .into(),
            });
        }
        let original = saved
            .get(&m.key)
            .cloned()
            .unwrap_or_else(|| managed_fields(route));
        let new_route = if clear && restores(&original, route, m, target, &v.namespace, desired) {
            with_fields(route, &original)
        } else if clear && desired.canary_weight == 100 {
            let (trimmed, tm) = without_stale(route, m);
            promoted(
                rewrite_route(&trimmed, &tm, desired, &original, target),
                &tm,
            )
        } else {
            rewrite_route(route, m, desired, &original, target)
        };
        if new_route == *route {
            continue;
        }
        let ptr = format!("/spec/http/{}", m.index);
        tests.push(json!({"op": "test", "path": ptr, "value": route}));
        field_ops(&ptr, route, &new_route, &mut ops);
        new_saved.entry(m.key.clone()).or_insert(original);
    }
    // The header route goes first; its operations come after the in-place route edits so
    // their indices still refer to the routes as read.
    let wanted_header = desired
        .header_route
        .as_ref()
        .filter(|h| !h.headers.is_empty())
        .map(|h| header_route(vs, &v, h, target));
    // The header route is built from the managed routes' matches: guard those too.
    let guard_managed = |tests: &mut Vec<Value>| {
        for m in &v.managed {
            let t = json!({"op": "test", "path": format!("/spec/http/{}", m.index), "value": http[m.index]});
            if !tests.contains(&t) {
                tests.push(t);
            }
        }
    };
    match (v.header_route, wanted_header) {
        (Some(i), Some(w)) if http[i] == w => {}
        (Some(i), Some(w)) => {
            let p = format!("/spec/http/{i}");
            tests.push(json!({"op": "test", "path": p, "value": http[i]}));
            guard_managed(&mut tests);
            ops.push(json!({"op": "replace", "path": p, "value": w}));
        }
        (Some(i), None) => {
            let p = format!("/spec/http/{i}");
            tests.push(json!({"op": "test", "path": p, "value": http[i]}));
            ops.push(json!({"op": "remove", "path": p}));
        }
        (None, Some(w)) => {
            guard_managed(&mut tests);
            if http.is_empty() {
                ops.push(json!({"op": "add", "path": "/spec/http", "value": [w]}));
            } else {
                ops.push(json!({"op": "add", "path": "/spec/http/0", "value": w}));
            }
        }
        (None, None) => {}
    }
    let entry = if clear || new_saved.is_empty() {
        None
    } else {
        let created = vs.pointer("/metadata/annotations").is_none()
            || all_originals(vs)
                .get(&target.rollout.name)
                .and_then(|e| e.get("createdAnnotations"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
        Some(json!({"routes": new_saved, "createdAnnotations": created}))
    };
    annotation_ops(vs, &target.rollout.name, entry, &mut tests, &mut ops);
    if ops.is_empty() {
        return Ok(PatchPlan::default());
    }
    tests.extend(ops);
    Ok(PatchPlan { ops: tests })
}

/// Whether restoring `original` would express `state` (then `clear` restores it verbatim).
fn restores(
    original: &Value,
    route: &Value,
    m: &Managed,
    target: &Target,
    ns: &str,
    state: &RouteState,
) -> bool {
    let restored = with_fields(route, original);
    let dests = restored.get("route").and_then(Value::as_array);
    let find = |canary: bool| {
        dests.and_then(|ds| {
            ds.iter().position(|d| {
                let (h, s) = dest_of(d);
                target.is_side(canary, h, s, ns)
            })
        })
    };
    let om = Managed {
        index: m.index,
        key: m.key.clone(),
        stable: find(false),
        canary: find(true),
        stale: Vec::new(),
    };
    if om.stable.is_none() && om.canary.is_none() {
        return false;
    }
    canary_weight_of(&restored, &om) == state.canary_weight
        && mirror_percent_of(&restored, target, ns) == state.mirror_percent
}

/// Apply a patch locally (what the API server will do), for previews and tests.
pub fn apply(vs: &Value, plan: &PatchPlan) -> Result<Value, IstioError> {
    let mut doc = vs.clone();
    let patch = plan
        .to_json_patch()
        .map_err(|e| IstioError::Patch(e.to_string()))?;
    json_patch::patch(&mut doc, &patch.0).map_err(|e| IstioError::Patch(e.to_string()))?;
    Ok(doc)
}

/// Sum of the weights of each managed route's destinations (for checks: must be 100).
pub fn managed_weight_sums(vs: &Value, target: &Target) -> Result<Vec<(String, i64)>, IstioError> {
    let v = view(vs, target)?;
    let http = http_routes(vs);
    Ok(v.managed
        .iter()
        .map(|m| {
            let r = &http[m.index];
            let ds = r.get("route").and_then(Value::as_array);
            let sum = match ds {
                Some(ds) if ds.len() == 1 && weight(&ds[0]).is_none() => 100,
                Some(ds) => ds.iter().filter_map(weight).sum(),
                None => 0,
            };
            (route_label(r, m.index), sum)
        })
        .collect())
}
