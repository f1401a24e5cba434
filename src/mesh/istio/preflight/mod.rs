//! Preflight checks: pure analyzers over parsed Istio and Kubernetes objects (and optionally a
//! plan's [`Target`]) that catch the silent Istio failures before traffic moves — the routing
//! analyzers of `istioctl analyze` (same semantics, their `IST0xxx` code on each finding) plus
//! tidegate's own. Each finding has a stable code (documented in `docs/mesh.md`, listed in
//! [`CHECKS`]), a severity, the object and field, and a fix hint. `tidegate lint` runs them on
//! files; the daemon runs [`check_rollout`] before moving traffic and refuses while an
//! error-level finding stands.

mod destinations;
mod gateways;
mod gitops;
pub mod hosts;
mod live;
mod matching;
mod mesh_hosts;
mod mtls;
mod policies;
mod target;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::mesh::Target;

pub use gitops::{GitOpsOwner, gitops_owner, ignore_snippet};
pub use live::{ListedKind, Seen, Unread, UnreadWhy, referenced_namespaces, typed_items};
pub use target::{UnmanagedRoute, route_owners, unmanaged_canary_routes};

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

impl ObjectRef {
    /// Whether this names the object `kind` `namespace/name` (files ignored).
    pub fn is(&self, kind: &str, namespace: &str, name: &str) -> bool {
        self.kind == kind && self.namespace == namespace && self.name == name
    }
}

/// One preflight finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable code, e.g. `TG101`.
    pub code: &'static str,
    /// The `istioctl analyze` message this finding corresponds to, e.g. `IST0131`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub istio: Option<&'static str>,
    pub severity: Severity,
    pub object: ObjectRef,
    /// Field path inside the object, e.g. `spec.http[1].route[0].destination.subset`.
    pub field: String,
    pub message: String,
    pub hint: String,
    /// Other objects involved (the other side of a conflict, the VirtualService bypassed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<ObjectRef>,
    /// Configuration to add, ready to paste (YAML).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snippet: Option<String>,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.severity, self.code)?;
        if let Some(ist) = self.istio {
            write!(f, "/{ist}")?;
        }
        write!(
            f,
            " {}: {}: {} (fix: {})",
            self.object, self.field, self.message, self.hint
        )
    }
}

impl Finding {
    /// A finding with the severity and Istio code [`CHECKS`] gives `code`.
    pub(crate) fn new(
        code: &'static str,
        object: ObjectRef,
        field: impl Into<String>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Finding {
        let check = check(code);
        Finding {
            code,
            istio: check.and_then(|c| c.istio),
            severity: check.map_or(Severity::Error, |c| c.severity),
            object,
            field: field.into(),
            message: message.into(),
            hint: hint.into(),
            related: Vec::new(),
            snippet: None,
        }
    }
    pub(crate) fn istio(mut self, code: Option<&'static str>) -> Finding {
        self.istio = code;
        self
    }
    pub(crate) fn severity(mut self, severity: Severity) -> Finding {
        self.severity = severity;
        self
    }
    pub(crate) fn related(mut self, related: Vec<ObjectRef>) -> Finding {
        self.related = related;
        self
    }
    pub(crate) fn snippet(mut self, snippet: String) -> Finding {
        self.snippet = Some(snippet);
        self
    }
}

/// Finding codes: one constant per check, never renumbered.
pub mod codes {
    pub const UNKNOWN_SUBSET: &str = "TG101";
    pub const SUBSET_WITHOUT_DESTINATION_RULE: &str = "TG102";
    pub const DESTINATION_RULE_HOST_MISMATCH: &str = "TG103";
    pub const PLAN_SUBSET_MISSING: &str = "TG104";
    pub const PLAN_OBJECT_MISSING: &str = "TG105";
    pub const WEIGHTS_INVALID: &str = "TG106";
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
    pub const INEFFECTIVE_MATCH: &str = "TG117";
    pub const UNKNOWN_HOST: &str = "TG118";
    pub const UNKNOWN_PORT: &str = "TG119";
    pub const PORT_SELECTOR_REQUIRED: &str = "TG120";
    pub const GATEWAY_NOT_FOUND: &str = "TG121";
    pub const HOST_NOT_IN_GATEWAY: &str = "TG122";
    pub const INGRESS_BYPASS: &str = "TG123";
    pub const CONFLICTING_GATEWAYS: &str = "TG124";
    pub const DUPLICATE_CERTIFICATE: &str = "TG125";
    pub const NO_CA_CERTIFICATES: &str = "TG126";
    pub const NO_CA_CERTIFICATES_PORT: &str = "TG127";
    pub const SERVICE_ENTRY_ADDRESSES_REQUIRED: &str = "TG128";
    pub const CONFLICTING_SERVICE_ENTRY_PROTOCOL: &str = "TG129";
    pub const UNKNOWN_DESTINATION_RULE_HOST: &str = "TG130";
    pub const ROUTE_OWNER_CONFLICT: &str = "TG131";
    pub const UNMANAGED_ROUTE_TO_CANARY: &str = "TG132";
    pub const GITOPS_OWNED: &str = "TG133";
    pub const MTLS_HALF_PAIR: &str = "TG134";
}

/// One check: its code, the `istioctl analyze` message it matches (if any), its usual
/// severity and what it finds. `docs/mesh.md` lists every one (a test keeps them equal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Check {
    pub code: &'static str,
    pub istio: Option<&'static str>,
    pub severity: Severity,
    pub summary: &'static str,
}

const fn c(
    code: &'static str,
    istio: Option<&'static str>,
    severity: Severity,
    summary: &'static str,
) -> Check {
    Check {
        code,
        istio,
        severity,
        summary,
    }
}

use Severity::{Error as E, Info as I, Warning as W};

/// Every check, in code order.
pub const CHECKS: &[Check] = &[
    c(
        codes::UNKNOWN_SUBSET,
        Some("IST0101"),
        E,
        "route or mirror to a subset its DestinationRule lacks",
    ),
    c(
        codes::SUBSET_WITHOUT_DESTINATION_RULE,
        Some("IST0101"),
        E,
        "route or mirror to a subset of a host no DestinationRule covers",
    ),
    c(
        codes::DESTINATION_RULE_HOST_MISMATCH,
        None,
        E,
        "the plan's DestinationRule is for another host",
    ),
    c(
        codes::PLAN_SUBSET_MISSING,
        None,
        E,
        "the plan's stable or canary subset is not defined",
    ),
    c(
        codes::PLAN_OBJECT_MISSING,
        None,
        E,
        "the plan's VirtualService or DestinationRule does not exist",
    ),
    c(
        codes::WEIGHTS_INVALID,
        Some("IST0106"),
        E,
        "destination weights all 0, or negative",
    ),
    c(
        codes::SHADOWED_ROUTE,
        Some("IST0130"),
        W,
        "a route that can never match",
    ),
    c(
        codes::MANAGED_ROUTE_SHADOWED,
        None,
        E,
        "a route the plan manages can never match",
    ),
    c(
        codes::PLAN_ROUTES_UNMANAGEABLE,
        None,
        E,
        "the plan's routes cannot be managed",
    ),
    c(
        codes::RETRIES_WITHOUT_PER_TRY_TIMEOUT,
        None,
        W,
        "retries without perTryTimeout under a route timeout",
    ),
    c(
        codes::RETRIES_EXCEED_TIMEOUT,
        None,
        W,
        "attempts × perTryTimeout exceed the route timeout",
    ),
    c(
        codes::FAULT_WITHOUT_MATCH,
        None,
        W,
        "fault injection on a route without a match",
    ),
    c(
        codes::MTLS_MISMATCH,
        None,
        E,
        "PeerAuthentication DISABLE against a DestinationRule asking for mTLS",
    ),
    c(
        codes::MTLS_MODE_UNSTATED,
        None,
        W,
        "PeerAuthentication PERMISSIVE/DISABLE, DestinationRule states no TLS mode",
    ),
    c(
        codes::DUPLICATE_HOST,
        Some("IST0109"),
        E,
        "VirtualServices of the mesh gateway claiming the same host",
    ),
    c(
        codes::LEFTOVER_TIDEGATE_ROUTE,
        None,
        W,
        "a tidegate header route no plan owns",
    ),
    c(
        codes::INEFFECTIVE_MATCH,
        Some("IST0131"),
        I,
        "a match clause an earlier clause already covers",
    ),
    c(
        codes::UNKNOWN_HOST,
        Some("IST0101"),
        E,
        "route or mirror to a host no Service or ServiceEntry defines",
    ),
    c(
        codes::UNKNOWN_PORT,
        Some("IST0101"),
        E,
        "route or mirror to a port the host does not expose",
    ),
    c(
        codes::PORT_SELECTOR_REQUIRED,
        Some("IST0112"),
        E,
        "route to a multi-port host without a port",
    ),
    c(
        codes::GATEWAY_NOT_FOUND,
        Some("IST0101"),
        E,
        "a VirtualService names a Gateway that does not exist",
    ),
    c(
        codes::HOST_NOT_IN_GATEWAY,
        Some("IST0132"),
        W,
        "no host of the VirtualService is admitted by its Gateway",
    ),
    c(
        codes::INGRESS_BYPASS,
        Some("IST0140"),
        W,
        "an ingress route sends to a host without a subset while another VirtualService splits it by subset",
    ),
    c(
        codes::CONFLICTING_GATEWAYS,
        Some("IST0145"),
        E,
        "Gateways with the same selector, port and host",
    ),
    c(
        codes::DUPLICATE_CERTIFICATE,
        Some("IST0138"),
        W,
        "the same certificate in several Gateways",
    ),
    c(
        codes::NO_CA_CERTIFICATES,
        Some("IST0128"),
        W,
        "DestinationRule TLS without caCertificates",
    ),
    c(
        codes::NO_CA_CERTIFICATES_PORT,
        Some("IST0129"),
        W,
        "DestinationRule port-level TLS without caCertificates",
    ),
    c(
        codes::SERVICE_ENTRY_ADDRESSES_REQUIRED,
        Some("IST0134"),
        W,
        "ServiceEntry TCP port without addresses",
    ),
    c(
        codes::CONFLICTING_SERVICE_ENTRY_PROTOCOL,
        Some("IST0177"),
        W,
        "ServiceEntries giving one host and port different protocols",
    ),
    c(
        codes::UNKNOWN_DESTINATION_RULE_HOST,
        Some("IST0174"),
        W,
        "a DestinationRule host that matches no Service or ServiceEntry",
    ),
    c(
        codes::ROUTE_OWNER_CONFLICT,
        None,
        E,
        "two plans manage the same route",
    ),
    c(
        codes::UNMANAGED_ROUTE_TO_CANARY,
        None,
        W,
        "a route the plan does not manage sends to its canary",
    ),
    c(
        codes::GITOPS_OWNED,
        None,
        W,
        "the plan's VirtualService is applied by a GitOps tool",
    ),
    c(
        codes::MTLS_HALF_PAIR,
        None,
        E,
        "a PeerAuthentication PERMISSIVE/DISABLE that no DestinationRule pairs",
    ),
];

/// The check with code `code`.
pub fn check(code: &str) -> Option<&'static Check> {
    CHECKS.iter().find(|c| c.code == code)
}

/// An Istio (or Kubernetes) object to check, with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub value: Value,
    pub file: Option<PathBuf>,
}

impl Object {
    pub fn new(value: Value, file: Option<PathBuf>) -> Object {
        Object { value, file }
    }
    pub(crate) fn kind(&self) -> &str {
        self.str_at("/kind").unwrap_or("")
    }
    pub(crate) fn name(&self) -> &str {
        self.str_at("/metadata/name").unwrap_or("")
    }
    pub(crate) fn namespace<'a>(&'a self, default_ns: &'a str) -> &'a str {
        self.str_at("/metadata/namespace").unwrap_or(default_ns)
    }
    pub(crate) fn str_at(&self, pointer: &str) -> Option<&str> {
        self.value.pointer(pointer).and_then(Value::as_str)
    }
    /// The string entries of the map at `pointer` (a label selector); empty when absent.
    pub(crate) fn labels_at(&self, pointer: &str) -> BTreeMap<String, String> {
        self.value
            .pointer(pointer)
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    }
    pub(crate) fn array_at(&self, pointer: &str) -> &[Value] {
        self.value
            .pointer(pointer)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
    fn group(&self) -> &str {
        self.str_at("/apiVersion")
            .and_then(|a| a.rsplit_once('/'))
            .map_or("", |(g, _)| g)
    }
    pub(crate) fn is(&self, kind: &str, group: &str) -> bool {
        self.kind() == kind && self.group() == group
    }
    pub(crate) fn reference(&self, default_ns: &str) -> ObjectRef {
        ObjectRef {
            kind: self.kind().to_string(),
            namespace: self.namespace(default_ns).to_string(),
            name: self.name().to_string(),
            file: self.file.clone(),
        }
    }
}

pub(crate) const NET: &str = "networking.istio.io";
pub(crate) const SEC: &str = "security.istio.io";
pub(crate) const K8S_GATEWAY: &str = "gateway.networking.k8s.io";
/// Istio's root namespace: PeerAuthentication there applies mesh-wide.
pub const ROOT_NAMESPACE: &str = "istio-system";

/// The objects by kind, built once per check run.
pub(crate) struct Index<'a> {
    pub default_ns: &'a str,
    pub virtual_services: Vec<&'a Object>,
    pub destination_rules: Vec<&'a Object>,
    pub gateways: Vec<&'a Object>,
    pub k8s_gateways: Vec<&'a Object>,
    pub service_entries: Vec<&'a Object>,
    pub services: Vec<&'a Object>,
    pub peer_authentications: Vec<&'a Object>,
    pub pods: Vec<&'a Object>,
    pub config_maps: Vec<&'a Object>,
    pub registry: hosts::Registry<'a>,
    /// Where the objects were read from a cluster (`None`: files, taken as complete).
    pub seen: Option<&'a Seen>,
}

impl<'a> Index<'a> {
    pub fn new(objects: &'a [Object], default_ns: &'a str) -> Index<'a> {
        Index::with_seen(objects, default_ns, None)
    }
    /// The index of objects read from a cluster where `seen` says (see [`Seen`]).
    pub fn with_seen(
        objects: &'a [Object],
        default_ns: &'a str,
        seen: Option<&'a Seen>,
    ) -> Index<'a> {
        let of = |kind: &str, group: &str| -> Vec<&'a Object> {
            objects.iter().filter(|o| o.is(kind, group)).collect()
        };
        let services = of("Service", "");
        let service_entries = of("ServiceEntry", NET);
        let mut registry = hosts::Registry::new(&services, &service_entries, default_ns);
        if let Some(seen) = seen {
            registry = registry.listed(seen);
        }
        Index {
            default_ns,
            virtual_services: of("VirtualService", NET),
            destination_rules: of("DestinationRule", NET),
            gateways: of("Gateway", NET),
            k8s_gateways: of("Gateway", K8S_GATEWAY),
            service_entries,
            services,
            peer_authentications: of("PeerAuthentication", SEC),
            pods: of("Pod", ""),
            config_maps: of("ConfigMap", ""),
            registry,
            seen,
        }
    }
    pub fn ns(&self, o: &'a Object) -> &'a str {
        o.namespace(self.default_ns)
    }
    pub fn reference(&self, o: &Object) -> ObjectRef {
        o.reference(self.default_ns)
    }
    /// Namespaces of which Gateways (Istio or Kubernetes) were given.
    pub fn gateway_namespaces(&self) -> BTreeSet<&'a str> {
        self.gateways
            .iter()
            .chain(&self.k8s_gateways)
            .map(|g| g.namespace(self.default_ns))
            .collect()
    }
    /// Whether the Gateways of `ns` were given or read, so that a reference to one that is not
    /// among them can be called missing.
    pub fn gateways_seen(&self, ns: &str) -> bool {
        self.seen.is_some_and(|s| s.gateways.contains(ns)) || self.gateway_namespaces().contains(ns)
    }
    /// DestinationRules that apply to `host` read in `ns`: same qualified host, or a wildcard
    /// host covering it.
    pub fn rules_for(&self, host: &str, ns: &str) -> Vec<&'a Object> {
        let want = hosts::qualify(host, ns);
        self.destination_rules
            .iter()
            .copied()
            .filter(|dr| {
                dr.str_at("/spec/host").is_some_and(|h| {
                    let have = hosts::qualify(h, dr.namespace(self.default_ns));
                    have == want || (have.starts_with('*') && hosts::matches(&have, &want))
                })
            })
            .collect()
    }
}

/// A kind some checks need, and which checks say nothing without it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MissingKind {
    pub kind: &'static str,
    pub skipped: &'static str,
}

/// The kinds the given objects lack that would make more checks speak: `lint` lists them so
/// that silence is not read as a clean bill.
pub fn missing_kinds(objects: &[Object]) -> Vec<MissingKind> {
    let has =
        |kind: &str, groups: &[&str]| objects.iter().any(|o| groups.iter().any(|g| o.is(kind, g)));
    let absent = [
        ("DestinationRule", !has("DestinationRule", &[NET])),
        ("Service", !has("Service", &[""])),
        ("ServiceEntry", !has("ServiceEntry", &[NET])),
        ("Gateway", !has("Gateway", &[NET, K8S_GATEWAY])),
    ];
    absent
        .into_iter()
        .filter(|(_, missing)| *missing)
        .map(|(kind, _)| MissingKind {
            kind,
            skipped: skipped_without(kind),
        })
        .collect()
}

/// What the checks leave out when objects of `kind` were not seen (`lint`'s "not seen" list and
/// the daemon's warning about a kind it cannot read say the same).
pub fn skipped_without(kind: &str) -> &'static str {
    match kind {
        "DestinationRule" => "subsets of routes and mirrors are not looked up (TG101, TG102)",
        "Service" => {
            "cluster hosts of routes and DestinationRules are not looked up (TG118-TG120, TG130)"
        }
        "ServiceEntry" => {
            "external hosts of routes and DestinationRules are not looked up (TG118-TG120, TG130)"
        }
        "Gateway" => "gateway references and ingress hosts are not checked (TG121, TG122)",
        _ => "",
    }
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

/// Check a set of objects against each other: every analyzer that needs no plan. A check
/// whose input kind is absent says nothing (see [`missing_kinds`]). `default_ns` is the
/// namespace of objects that name none.
pub fn check_objects(objects: &[Object], default_ns: &str) -> Vec<Finding> {
    object_findings(&Index::new(objects, default_ns))
}

fn object_findings(ix: &Index<'_>) -> Vec<Finding> {
    let mut out = Vec::new();
    for vs in &ix.virtual_services {
        matching::check_virtual_service(ix, vs, &mut out);
        destinations::check_virtual_service(ix, vs, &mut out);
        gateways::check_virtual_service(ix, vs, &mut out);
    }
    destinations::check_ingress_bypass(ix, &mut out);
    mesh_hosts::check(ix, &mut out);
    gateways::check_gateways(ix, &mut out);
    policies::check(ix, &mut out);
    mtls::check(ix, &mut out);
    out
}

/// Checks of one rollout against the objects: its VirtualService and DestinationRule exist,
/// the DestinationRule's host is the service, both subsets exist, its routes can be managed
/// and are not shadowed, no ingress route bypasses its split, no route it does not manage
/// sends to its canary, and whether a GitOps tool applies its VirtualService.
pub fn check_target(objects: &[Object], target: &Target) -> Vec<Finding> {
    let ix = Index::new(objects, &target.rollout.namespace);
    target::check(&ix, target)
}

/// tidegate header routes left behind by rollouts that are not in `known` (rollout names).
pub fn check_leftovers(objects: &[Object], known: &[String], default_ns: &str) -> Vec<Finding> {
    let ix = Index::new(objects, default_ns);
    target::leftovers(&ix, known)
}

/// Whether any finding is an error (the daemon will not move traffic).
pub fn has_errors(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.severity == Severity::Error)
}

/// Everything that stands in the way of one rollout: [`check_target`], plus the findings of
/// [`check_objects`] about the rollout's own VirtualService and DestinationRule (findings about
/// unrelated objects do not block it; a host conflict is reported on both VirtualServices, so
/// the rollout's own side is among them). Routing findings that keep traffic from its canary
/// are errors here even where istioctl only warns: the VirtualService's hosts not admitted by
/// its Gateway (IST0132) and ingress routes bypassing its split (IST0140, from
/// [`check_target`]). What the daemon runs before step one.
pub fn check_rollout(objects: &[Object], target: &Target) -> Vec<Finding> {
    check_rollouts(objects, std::slice::from_ref(target))
        .pop()
        .unwrap_or_default()
}

/// [`check_rollout`] of each of `targets` against the same objects (the daemon passes the
/// rollouts of one namespace and that namespace's objects): the analyses that look at every
/// object run once per namespace instead of once per rollout, so n rollouts in a namespace of
/// k objects cost about n + k rather than n × k. Same findings, same order as
/// [`check_rollout`] of each target.
pub fn check_rollouts(objects: &[Object], targets: &[Target]) -> Vec<Vec<Finding>> {
    check_rollouts_in(objects, None, targets)
}

/// [`check_rollouts`] of objects read from a cluster (the daemon): `seen` says where Services,
/// ServiceEntries and Gateways were read, so a kind read and found empty counts as "none
/// there" and a kind not read says nothing (see [`Seen`]).
/// Which of `hosts` (Service hosts written in plans of namespace `ns`) the live objects show do
/// not exist: only hosts whose namespace's Services (or, for others, the ServiceEntries) were
/// read, so that what cannot be judged is never called missing.
pub fn absent_hosts<'h>(
    objects: &[Object],
    seen: &Seen,
    ns: &str,
    hosts: impl IntoIterator<Item = &'h str>,
) -> BTreeSet<String> {
    let ix = Index::with_seen(objects, ns, Some(seen));
    hosts
        .into_iter()
        .filter(|h| ix.registry.can_judge(h, ns) && ix.registry.lookup(ns, &[], h).is_none())
        .map(str::to_string)
        .collect()
}

pub fn check_rollouts_live(
    objects: &[Object],
    seen: &Seen,
    targets: &[Target],
) -> Vec<Vec<Finding>> {
    check_rollouts_in(objects, Some(seen), targets)
}

fn check_rollouts_in(
    objects: &[Object],
    seen: Option<&Seen>,
    targets: &[Target],
) -> Vec<Vec<Finding>> {
    let mut out: Vec<Vec<Finding>> = vec![Vec::new(); targets.len()];
    let mut by_ns: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, t) in targets.iter().enumerate() {
        by_ns
            .entry(t.rollout.namespace.as_str())
            .or_default()
            .push(i);
    }
    for (ns, members) in by_ns {
        let ix = Index::with_seen(objects, ns, seen);
        let shared = target::Shared::new(&ix);
        let owned = OwnFindings::new(object_findings(&ix), ns);
        for i in members {
            let t = &targets[i];
            let mut findings = target::check_with(&ix, &shared, t);
            findings.extend(owned.of(t));
            out[i] = findings;
        }
    }
    out
}

/// The findings of [`check_objects`] by the VirtualService or DestinationRule of `ns` they are
/// about, in their original order, as [`check_rollout`] adds them to a rollout's own checks.
struct OwnFindings {
    /// `(kind, name)` → `(position in check_objects' order, finding)`.
    by_object: BTreeMap<(String, String), Vec<(usize, Finding)>>,
}

impl OwnFindings {
    fn new(findings: Vec<Finding>, ns: &str) -> OwnFindings {
        let mut by_object: BTreeMap<_, Vec<_>> = BTreeMap::new();
        for (i, f) in findings.into_iter().enumerate() {
            let kind = f.object.kind.as_str();
            let relevant = (kind == "VirtualService" || kind == "DestinationRule")
                && f.object.namespace == ns
                && f.code != codes::INGRESS_BYPASS;
            if !relevant {
                continue;
            }
            let f = if f.code == codes::HOST_NOT_IN_GATEWAY {
                f.severity(Severity::Error)
            } else {
                f
            };
            let key = (f.object.kind.clone(), f.object.name.clone());
            by_object.entry(key).or_default().push((i, f));
        }
        OwnFindings { by_object }
    }

    /// The findings about `target`'s VirtualService and DestinationRule.
    fn of(&self, target: &Target) -> Vec<Finding> {
        let get = |kind: &str, name: &str| {
            self.by_object
                .get(&(kind.to_owned(), name.to_owned()))
                .map(Vec::as_slice)
                .unwrap_or_default()
        };
        let mut found: Vec<&(usize, Finding)> = get("VirtualService", &target.virtual_service)
            .iter()
            .chain(get(
                "DestinationRule",
                target.destination_rule.as_deref().unwrap_or_default(),
            ))
            .collect();
        found.sort_by_key(|(i, _)| *i);
        found.into_iter().map(|(_, f)| f.clone()).collect()
    }
}

/// The error-level findings as the engine's `Observation::preflight_errors`.
pub fn blocking(findings: &[Finding]) -> Vec<String> {
    findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(ToString::to_string)
        .collect()
}
