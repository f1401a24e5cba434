//! Preflight checks: pure functions over parsed Istio objects (and optionally a plan's
//! [`Target`]) that catch the classic silent Istio failures before traffic moves. Each finding
//! has a stable code (documented in `docs/mesh.md`), a severity, the object and field, and a
//! fix hint. The daemon refuses to start a rollout while an error-level finding stands.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use super::routes::{self, fqdn, is_tidegate_route_name};
use crate::mesh::Target;

/// How bad a finding is. Errors block a rollout's first step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Info,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        })
    }
}

/// The object a finding is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ObjectRef {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// The file it was read from (lint), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)?;
        if let Some(file) = &self.file {
            write!(f, " ({})", file.display())?;
        }
        Ok(())
    }
}

/// One preflight finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable code, e.g. `TG101`.
    pub code: &'static str,
    pub severity: Severity,
    pub object: ObjectRef,
    /// Field path inside the object, e.g. `spec.http[1].route[0].destination.subset`.
    pub field: String,
    pub message: String,
    pub hint: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {}: {}: {} (fix: {})",
            self.severity, self.code, self.object, self.field, self.message, self.hint
        )
    }
}

/// Finding codes: one constant per check, never renumbered.
pub mod codes {
    pub const UNKNOWN_SUBSET: &str = "TG101";
    pub const SUBSET_WITHOUT_DESTINATION_RULE: &str = "TG102";
    pub const DESTINATION_RULE_HOST_MISMATCH: &str = "TG103";
    pub const PLAN_SUBSET_MISSING: &str = "TG104";
    pub const PLAN_OBJECT_MISSING: &str = "TG105";
    pub const WEIGHTS_NOT_100: &str = "TG106";
    pub const SHADOWED_ROUTE: &str = "TG107";
    pub const MANAGED_ROUTE_SHADOWED: &str = "TG108";
    pub const PLAN_ROUTES_UNMANAGEABLE: &str = "TG109";
    pub const RETRIES_WITHOUT_PER_TRY_TIMEOUT: &str = "TG110";
    pub const RETRIES_EXCEED_TIMEOUT: &str = "TG111";
    pub const FAULT_WITHOUT_MATCH: &str = "TG112";
    pub const MTLS_MISMATCH: &str = "TG113";
    pub const MTLS_MODE_UNSTATED: &str = "TG114";
    pub const DUPLICATE_HOST: &str = "TG115";
    pub const LEFTOVER_TIDEGATE_ROUTE: &str = "TG116";
}

/// An Istio object to check, with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub value: Value,
    pub file: Option<PathBuf>,
}

impl Object {
    pub fn new(value: Value, file: Option<PathBuf>) -> Object {
        Object { value, file }
    }
    fn kind(&self) -> &str {
        self.value.get("kind").and_then(Value::as_str).unwrap_or("")
    }
    fn name(&self) -> &str {
        self.value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
    fn namespace<'a>(&'a self, default_ns: &'a str) -> &'a str {
        self.value
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or(default_ns)
    }
    fn is(&self, kind: &str, group: &str) -> bool {
        self.kind() == kind
            && self
                .value
                .get("apiVersion")
                .and_then(Value::as_str)
                .is_some_and(|a| a.starts_with(&format!("{group}/")))
    }
    fn reference(&self, default_ns: &str) -> ObjectRef {
        ObjectRef {
            kind: self.kind().to_string(),
            namespace: self.namespace(default_ns).to_string(),
            name: self.name().to_string(),
            file: self.file.clone(),
        }
    }
}

const NET: &str = "networking.istio.io";
const SEC: &str = "security.istio.io";
/// Istio's root namespace: PeerAuthentication there applies mesh-wide.
pub const ROOT_NAMESPACE: &str = "istio-system";

struct Ctx<'a> {
    objects: &'a [Object],
    default_ns: &'a str,
    out: Vec<Finding>,
}

impl<'a> Ctx<'a> {
    fn push(
        &mut self,
        code: &'static str,
        severity: Severity,
        obj: &Object,
        field: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.out.push(Finding {
            code,
            severity,
            object: obj.reference(self.default_ns),
            field: field.into(),
            message: message.into(),
            hint: hint.into(),
        });
    }

    fn of(&self, kind: &str, group: &str) -> Vec<&'a Object> {
        let objects: &'a [Object] = self.objects;
        objects.iter().filter(|o| o.is(kind, group)).collect()
    }

    /// DestinationRules whose host is `host` (both resolved in their namespaces).
    fn rules_for(&self, host: &str, ns: &str) -> Vec<&'a Object> {
        let want = fqdn(host, ns);
        self.of("DestinationRule", NET)
            .into_iter()
            .filter(|dr| {
                dr.value
                    .pointer("/spec/host")
                    .and_then(Value::as_str)
                    .is_some_and(|h| fqdn(h, dr.namespace(self.default_ns)) == want)
            })
            .collect()
    }
}

fn subsets(dr: &Object) -> Vec<&str> {
    dr.value
        .pointer("/spec/subsets")
        .and_then(Value::as_array)
        .map(|ss| {
            ss.iter()
                .filter_map(|s| s.get("name").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default()
}

/// Parse an Istio (protobuf JSON) duration: `1.5s`, `300ms`, `2m`, `1h`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let secs = match unit {
        "h" => n * 3600.0,
        "m" => n * 60.0,
        "s" => n,
        "ms" => n / 1e3,
        "us" | "µs" => n / 1e6,
        "ns" => n / 1e9,
        _ => return None,
    };
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

fn route_list<'a>(vs: &'a Object, kind: &str) -> &'a [Value] {
    vs.value
        .pointer(&format!("/spec/{kind}"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// A match list that matches every request: absent, empty, or containing an empty clause or a
/// clause that only says `uri: {prefix: "/"}`.
fn is_catch_all(route: &Value) -> bool {
    let Some(ms) = route.get("match").and_then(Value::as_array) else {
        return true;
    };
    ms.is_empty()
        || ms.iter().any(|m| {
            let Some(o) = m.as_object() else { return false };
            let keys: Vec<&String> = o.keys().filter(|k| k.as_str() != "name").collect();
            keys.is_empty()
                || (keys.len() == 1
                    && keys[0] == "uri"
                    && m.pointer("/uri/prefix").and_then(Value::as_str) == Some("/"))
        })
}

fn check_virtual_service(cx: &mut Ctx<'_>, vs: &Object) {
    let ns = vs.namespace(cx.default_ns).to_string();
    for kind in ["http", "tcp", "tls"] {
        for (i, r) in route_list(vs, kind).iter().enumerate() {
            let dests = r
                .get("route")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for (j, d) in dests.iter().enumerate() {
                let host = d
                    .pointer("/destination/host")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let Some(subset) = d.pointer("/destination/subset").and_then(Value::as_str) else {
                    continue;
                };
                let field = format!("spec.{kind}[{i}].route[{j}].destination.subset");
                let rules = cx.rules_for(host, &ns);
                if rules.is_empty() {
                    cx.push(
                        codes::SUBSET_WITHOUT_DESTINATION_RULE,
                        Severity::Error,
                        vs,
                        field,
                        format!("routes to subset {subset:?} of {host}, but no DestinationRule defines subsets for {host}: Envoy has no such cluster and answers 503"),
                        format!("add a DestinationRule with host {host} defining subset {subset:?}, or remove the subset"),
                    );
                } else if !rules.iter().any(|dr| subsets(dr).contains(&subset)) {
                    let defined: Vec<&str> = rules.iter().flat_map(|dr| subsets(dr)).collect();
                    cx.push(
                        codes::UNKNOWN_SUBSET,
                        Severity::Error,
                        vs,
                        field,
                        format!("routes to subset {subset:?} of {host}, which DestinationRule {} does not define (it has {defined:?}): requests are blackholed with 503", rules[0].name()),
                        format!("add subset {subset:?} to DestinationRule {}, or route to one of {defined:?}", rules[0].name()),
                    );
                }
            }
            if dests.len() > 1 {
                let weights: Vec<i64> = dests
                    .iter()
                    .map(|d| d.get("weight").and_then(Value::as_i64).unwrap_or(0))
                    .collect();
                let sum: i64 = weights.iter().sum();
                if sum != 100 {
                    cx.push(
                        codes::WEIGHTS_NOT_100,
                        Severity::Error,
                        vs,
                        format!("spec.{kind}[{i}].route"),
                        format!("destination weights {weights:?} sum to {sum}, not 100"),
                        "make the weights of the route's destinations add up to 100",
                    );
                }
            }
        }
    }
    let http = route_list(vs, "http");
    if let Some(first) = http.iter().position(is_catch_all) {
        for (i, r) in http.iter().enumerate().skip(first + 1) {
            cx.push(
                codes::SHADOWED_ROUTE,
                Severity::Warning,
                vs,
                format!("spec.http[{i}]"),
                format!(
                    "route {} can never match: route {} before it matches every request (Istio uses the first match)",
                    routes::route_label(r, i),
                    routes::route_label(&http[first], first)
                ),
                "move the catch-all route to the end of spec.http",
            );
        }
    }
    for (i, r) in http.iter().enumerate() {
        let timeout = r
            .get("timeout")
            .and_then(Value::as_str)
            .and_then(parse_duration);
        if let Some(retries) = r.get("retries") {
            let attempts = retries.get("attempts").and_then(Value::as_u64).unwrap_or(0);
            let per_try = retries
                .get("perTryTimeout")
                .and_then(Value::as_str)
                .and_then(parse_duration);
            if let (Some(timeout), true) = (timeout, attempts > 0) {
                match per_try {
                    None => cx.push(
                        codes::RETRIES_WITHOUT_PER_TRY_TIMEOUT,
                        Severity::Warning,
                        vs,
                        format!("spec.http[{i}].retries"),
                        format!("{attempts} retries without perTryTimeout: the first try may use the whole {} timeout, leaving no time for retries", humantime::format_duration(timeout)),
                        "set retries.perTryTimeout so that attempts × perTryTimeout fits in the route timeout",
                    ),
                    Some(pt) if pt.saturating_mul(u32::try_from(attempts).unwrap_or(u32::MAX)) > timeout => cx.push(
                        codes::RETRIES_EXCEED_TIMEOUT,
                        Severity::Warning,
                        vs,
                        format!("spec.http[{i}].retries.perTryTimeout"),
                        format!(
                            "{attempts} attempts × perTryTimeout {} exceed the route timeout {}: the later retries can never happen",
                            humantime::format_duration(pt),
                            humantime::format_duration(timeout)
                        ),
                        "lower attempts or perTryTimeout, or raise the route timeout",
                    ),
                    Some(_) => {}
                }
            }
        }
        if r.get("fault").is_some() && is_catch_all(r) {
            cx.push(
                codes::FAULT_WITHOUT_MATCH,
                Severity::Warning,
                vs,
                format!("spec.http[{i}].fault"),
                "fault injection on a route without a match hits all of its traffic",
                "add a match (e.g. a test header) to the route that injects faults",
            );
        }
    }
}

fn vs_hosts(vs: &Object, default_ns: &str) -> Vec<String> {
    let ns = vs.namespace(default_ns);
    vs.value
        .pointer("/spec/hosts")
        .and_then(Value::as_array)
        .map(|hs| {
            hs.iter()
                .filter_map(Value::as_str)
                .map(|h| fqdn(h, ns))
                .collect()
        })
        .unwrap_or_default()
}

fn gateways(vs: &Object) -> Vec<String> {
    let mut g: Vec<String> = vs
        .value
        .pointer("/spec/gateways")
        .and_then(Value::as_array)
        .map(|gs| {
            gs.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if g.is_empty() {
        g.push("mesh".into());
    }
    g.sort();
    g
}

fn check_duplicate_hosts(cx: &mut Ctx<'_>) {
    let vss = cx.of("VirtualService", NET);
    let mut claimed: BTreeMap<(String, String), &Object> = BTreeMap::new();
    for vs in vss {
        for host in vs_hosts(vs, cx.default_ns) {
            if host.starts_with('*') {
                continue;
            }
            for gw in gateways(vs) {
                let key = (host.clone(), gw.clone());
                match claimed.get(&key) {
                    Some(first)
                        if first.name() != vs.name()
                            || first.namespace(cx.default_ns) != vs.namespace(cx.default_ns) =>
                    {
                        let first_ref = first.reference(cx.default_ns);
                        cx.push(
                            codes::DUPLICATE_HOST,
                            Severity::Error,
                            vs,
                            "spec.hosts",
                            format!("host {host} (gateway {gw}) is also claimed by {first_ref}: Istio uses only one of them and ignores the other's routes"),
                            "merge the routes into one VirtualService per host, or use delegate VirtualServices",
                        );
                    }
                    Some(_) => {}
                    None => {
                        claimed.insert(key, vs);
                    }
                }
            }
        }
    }
}

/// The TLS mode a DestinationRule sets (top level), `None` when unstated.
fn dr_tls_mode(dr: &Object) -> Option<&str> {
    dr.value
        .pointer("/spec/trafficPolicy/tls/mode")
        .and_then(Value::as_str)
}

fn check_peer_authentication(cx: &mut Ctx<'_>) {
    let pas = cx.of("PeerAuthentication", SEC);
    let drs = cx.of("DestinationRule", NET);
    for pa in pas {
        let Some(mode) = pa.value.pointer("/spec/mtls/mode").and_then(Value::as_str) else {
            continue;
        };
        if mode != "PERMISSIVE" && mode != "DISABLE" {
            continue;
        }
        let pa_ns = pa.namespace(cx.default_ns).to_string();
        let selector: BTreeMap<String, String> = pa
            .value
            .pointer("/spec/selector/matchLabels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        for dr in &drs {
            let host = dr
                .value
                .pointer("/spec/host")
                .and_then(Value::as_str)
                .unwrap_or("");
            let full = fqdn(host, dr.namespace(cx.default_ns));
            let host_ns = full.split('.').nth(1).unwrap_or("");
            if pa_ns != ROOT_NAMESPACE && host_ns != pa_ns {
                continue;
            }
            if !selector.is_empty() {
                let short = full.split('.').next().unwrap_or("");
                let app_matches = selector.get("app").is_some_and(|a| a == short);
                let subset_matches = dr
                    .value
                    .pointer("/spec/subsets")
                    .and_then(Value::as_array)
                    .is_some_and(|ss| {
                        ss.iter().any(|s| {
                            selector.iter().all(|(k, v)| {
                                s.pointer(&format!(
                                    "/labels/{}",
                                    k.replace('~', "~0").replace('/', "~1")
                                ))
                                .and_then(Value::as_str)
                                    == Some(v.as_str())
                            })
                        })
                    });
                if !app_matches && !subset_matches {
                    continue;
                }
            }
            let pa_ref = pa.reference(cx.default_ns);
            match (mode, dr_tls_mode(dr)) {
                ("DISABLE", Some(m @ ("ISTIO_MUTUAL" | "MUTUAL"))) => cx.push(
                    codes::MTLS_MISMATCH,
                    Severity::Error,
                    dr,
                    "spec.trafficPolicy.tls.mode",
                    format!("clients are told to use {m} towards {host}, but {pa_ref} sets mTLS DISABLE for it: the server refuses the handshake and clients get 503"),
                    "set trafficPolicy.tls.mode: DISABLE in the DestinationRule, or enable mTLS on the workload",
                ),
                ("DISABLE", None) => cx.push(
                    codes::MTLS_MODE_UNSTATED,
                    Severity::Warning,
                    dr,
                    "spec.trafficPolicy.tls",
                    format!("{pa_ref} sets mTLS DISABLE for {host}, but this DestinationRule states no TLS mode: sidecars without auto-mTLS still attempt mTLS and get 503"),
                    "set trafficPolicy.tls.mode: DISABLE to match the PeerAuthentication",
                ),
                ("PERMISSIVE", None) => cx.push(
                    codes::MTLS_MODE_UNSTATED,
                    Severity::Warning,
                    dr,
                    "spec.trafficPolicy.tls",
                    format!("{pa_ref} sets mTLS PERMISSIVE for {host}, and this DestinationRule states no TLS mode: whether clients use mTLS depends on auto-mTLS"),
                    "state trafficPolicy.tls.mode (ISTIO_MUTUAL or DISABLE) so clients and server agree",
                ),
                _ => {}
            }
        }
    }
}

/// Check a set of Istio objects against each other. `default_ns` is the namespace of objects
/// that name none.
pub fn check_objects(objects: &[Object], default_ns: &str) -> Vec<Finding> {
    let mut cx = Ctx {
        objects,
        default_ns,
        out: Vec::new(),
    };
    for vs in cx.of("VirtualService", NET) {
        check_virtual_service(&mut cx, vs);
    }
    check_duplicate_hosts(&mut cx);
    check_peer_authentication(&mut cx);
    cx.out
}

/// Checks of one rollout against the objects: its VirtualService and DestinationRule exist,
/// the DestinationRule's host is the service, both subsets exist, its routes can be managed
/// and are not shadowed. `others` are the rollouts known besides this one (for leftover routes).
pub fn check_target(objects: &[Object], target: &Target) -> Vec<Finding> {
    let ns = target.rollout.namespace.as_str();
    let mut cx = Ctx {
        objects,
        default_ns: ns,
        out: Vec::new(),
    };
    let plan_ref = Object::new(
        serde_json::json!({"kind": "Rollout", "metadata": {"name": target.rollout.name, "namespace": ns}}),
        None,
    );
    let find = |kind: &str, name: &str| {
        objects
            .iter()
            .find(|o| o.is(kind, NET) && o.name() == name && o.namespace(ns) == ns)
    };
    match find("DestinationRule", &target.destination_rule) {
        None => cx.push(
            codes::PLAN_OBJECT_MISSING,
            Severity::Error,
            &plan_ref,
            "spec.destinationRule",
            format!(
                "DestinationRule {ns}/{} does not exist",
                target.destination_rule
            ),
            "create the DestinationRule, or name the right one in spec.destinationRule",
        ),
        Some(dr) => {
            let host = dr
                .value
                .pointer("/spec/host")
                .and_then(Value::as_str)
                .unwrap_or("");
            if fqdn(host, ns) != fqdn(&target.service, ns) {
                cx.push(
                    codes::DESTINATION_RULE_HOST_MISMATCH,
                    Severity::Error,
                    dr,
                    "spec.host",
                    format!("host {host:?} is not the rollout's service {:?}: its subsets do not apply to the service's traffic", target.service),
                    format!("set spec.host to {}, or point the plan at the DestinationRule for it", target.service),
                );
            }
            let defined = subsets(dr);
            for (role, subset) in [("stable", &target.stable), ("canary", &target.canary)] {
                if !defined.contains(&subset.as_str()) {
                    cx.push(
                        codes::PLAN_SUBSET_MISSING,
                        Severity::Error,
                        dr,
                        "spec.subsets",
                        format!("the plan's {role} subset {subset:?} is not defined (subsets: {defined:?}): traffic sent there is blackholed"),
                        format!("add subset {subset:?} with the {role} pods' labels, or fix spec.{role} in the plan"),
                    );
                }
            }
        }
    }
    match find("VirtualService", &target.virtual_service) {
        None => cx.push(
            codes::PLAN_OBJECT_MISSING,
            Severity::Error,
            &plan_ref,
            "spec.virtualService",
            format!("VirtualService {ns}/{} does not exist", target.virtual_service),
            "create the VirtualService, or name the right one in spec.virtualService",
        ),
        Some(vs) => match routes::view(&vs.value, target) {
            Err(e) => cx.push(
                codes::PLAN_ROUTES_UNMANAGEABLE,
                Severity::Error,
                vs,
                "spec.http",
                e.to_string(),
                "point spec.routes at http routes that send only to the stable (and canary) subsets",
            ),
            Ok(view) => {
                let http = route_list(vs, "http");
                if let Some(first) = http.iter().position(|r| {
                    is_catch_all(r)
                        && !r.get("name").and_then(Value::as_str).is_some_and(is_tidegate_route_name)
                }) {
                    for m in view.managed.iter().filter(|m| m.index > first) {
                        cx.push(
                            codes::MANAGED_ROUTE_SHADOWED,
                            Severity::Error,
                            vs,
                            format!("spec.http[{}]", m.index),
                            format!(
                                "the rollout manages route {}, but route {} before it matches every request: shifting its weights moves no traffic",
                                routes::route_label(&http[m.index], m.index),
                                routes::route_label(&http[first], first)
                            ),
                            "move the catch-all route to the end of spec.http",
                        );
                    }
                }
            }
        },
    }
    cx.out
}

/// tidegate header routes left behind by rollouts that are not in `known` (rollout names).
pub fn check_leftovers(objects: &[Object], known: &[String], default_ns: &str) -> Vec<Finding> {
    let mut cx = Ctx {
        objects,
        default_ns,
        out: Vec::new(),
    };
    for vs in cx.of("VirtualService", NET) {
        for (i, r) in route_list(vs, "http").iter().enumerate() {
            let Some(name) = r.get("name").and_then(Value::as_str) else {
                continue;
            };
            if !is_tidegate_route_name(name) {
                continue;
            }
            let owner = name
                .trim_start_matches("tidegate-")
                .trim_end_matches("-header");
            if !known.iter().any(|k| k == owner) {
                cx.push(
                    codes::LEFTOVER_TIDEGATE_ROUTE,
                    Severity::Warning,
                    vs,
                    format!("spec.http[{i}]"),
                    format!("header route {name:?} belongs to rollout {owner:?}, which no plan defines: it still sends matching requests to the canary"),
                    "remove the route (or restore the plan so tidegate cleans it up)",
                );
            }
        }
    }
    cx.out
}

/// Whether any finding is an error (the daemon will not move traffic).
pub fn has_errors(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.severity == Severity::Error)
}

/// Everything that stands in the way of one rollout: [`check_target`], plus the findings of
/// [`check_objects`] about the rollout's own VirtualService and DestinationRule (findings about
/// unrelated objects in the namespace do not block it). What the daemon runs before step one.
pub fn check_rollout(objects: &[Object], target: &Target) -> Vec<Finding> {
    let ns = target.rollout.namespace.as_str();
    let own = |f: &Finding| {
        f.object.namespace == ns
            && ((f.object.kind == "VirtualService" && f.object.name == target.virtual_service)
                || (f.object.kind == "DestinationRule" && f.object.name == target.destination_rule))
    };
    let vs_ref = format!("VirtualService {ns}/{}", target.virtual_service);
    let mut out = check_target(objects, target);
    out.extend(
        check_objects(objects, ns)
            .into_iter()
            .filter(|f| own(f) || (f.code == codes::DUPLICATE_HOST && f.message.contains(&vs_ref))),
    );
    out
}

/// The error-level findings as the engine's `Observation::preflight_errors`.
pub fn blocking(findings: &[Finding]) -> Vec<String> {
    findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(ToString::to_string)
        .collect()
}
