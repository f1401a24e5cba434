//! Preflight checks: one test per finding code on small, explicit objects, plus the shared
//! fixtures (where real upstream mistakes are found).

mod common;

use serde_json::{Value, json};
use tidegate::mesh::Target;
use tidegate::mesh::istio::preflight::{self, Finding, Object, Severity, codes};
use tidegate::mesh::manifests;
use tidegate::plan::RolloutId;

fn objs(values: Vec<Value>) -> Vec<Object> {
    values.into_iter().map(|v| Object::new(v, None)).collect()
}

fn vs(name: &str, http: Value) -> Value {
    json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
           "metadata": {"name": name, "namespace": "shop"},
           "spec": {"hosts": [name], "http": http}})
}

fn dr(name: &str, host: &str, subsets: &[&str], tls: Option<&str>) -> Value {
    let mut v = json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
           "metadata": {"name": name, "namespace": "shop"},
           "spec": {"host": host, "subsets": subsets.iter().map(|s| json!({"name": s, "labels": {"version": s}})).collect::<Vec<_>>()}});
    if let Some(mode) = tls {
        v["spec"]["trafficPolicy"] = json!({"tls": {"mode": mode}});
    }
    v
}

fn split(stable: i64) -> Value {
    json!([{"destination": {"host": "orders", "subset": "v1"}, "weight": stable},
           {"destination": {"host": "orders", "subset": "v2"}, "weight": 100 - stable}])
}

fn codes_of(f: &[Finding]) -> Vec<&'static str> {
    f.iter().map(|f| f.code).collect()
}

fn target() -> Target {
    Target {
        rollout: RolloutId {
            namespace: "shop".into(),
            name: "orders".into(),
        },
        service: "orders".into(),
        virtual_service: "orders".into(),
        destination_rule: Some("orders".into()),
        routes: vec![],
        stable: "v1".into(),
        canary: "v2".into(),
        split: tidegate::plan::Split::Subset,
    }
}

#[test]
fn a_clean_setup_has_no_findings() {
    let o = objs(vec![
        vs("orders", json!([{"name": "primary", "route": split(100)}])),
        dr("orders", "orders", &["v1", "v2"], None),
    ]);
    assert!(preflight::check_objects(&o, "default").is_empty());
    assert!(preflight::check_target(&o, &target()).is_empty());
}

#[test]
fn tg101_route_to_a_subset_the_destination_rule_lacks() {
    let o = objs(vec![
        vs("orders", json!([{"route": split(90)}])),
        dr("orders", "orders.shop.svc.cluster.local", &["v1"], None),
    ]);
    let f = preflight::check_objects(&o, "default");
    assert_eq!(codes_of(&f), vec![codes::UNKNOWN_SUBSET]);
    assert_eq!(f[0].severity, Severity::Error);
    assert_eq!(f[0].field, "spec.http[0].route[1].destination.subset");
    assert_eq!(f[0].object.name, "orders");
    assert!(
        f[0].message.contains("\"v2\"") && f[0].hint.contains("add subset \"v2\""),
        "{}",
        f[0]
    );
}

#[test]
fn tg102_subset_without_any_destination_rule() {
    // A DestinationRule for another host: DestinationRules were given, none is for orders.
    let o = objs(vec![
        vs("orders", json!([{"route": split(100)}])),
        dr("payments", "payments", &["v1"], None),
    ]);
    let f = preflight::check_objects(&o, "default");
    assert_eq!(
        codes_of(&f),
        vec![codes::SUBSET_WITHOUT_DESTINATION_RULE; 2]
    );
    assert!(f.iter().all(|f| f.istio == Some("IST0101")));
    // No DestinationRule at all: the subset check has nothing to judge by and says nothing.
    let o = objs(vec![vs("orders", json!([{"route": split(100)}]))]);
    assert!(preflight::check_objects(&o, "default").is_empty());
    assert!(
        preflight::missing_kinds(&o)
            .iter()
            .any(|m| m.kind == "DestinationRule")
    );
}

#[test]
fn tg103_tg104_tg105_plan_objects() {
    let o = objs(vec![
        vs("orders", json!([{"route": split(100)}])),
        dr("orders", "payments", &["v1"], None),
        dr("payments", "payments", &["v1", "v2"], None),
    ]);
    let f = preflight::check_target(&o, &target());
    assert_eq!(
        codes_of(&f),
        vec![
            codes::DESTINATION_RULE_HOST_MISMATCH,
            codes::PLAN_SUBSET_MISSING
        ]
    );
    assert!(f[1].message.contains("canary subset \"v2\""), "{}", f[1]);
    let f = preflight::check_target(&objs(vec![]), &target());
    assert_eq!(codes_of(&f), vec![codes::PLAN_OBJECT_MISSING; 2]);
    assert_eq!(f[0].field, "spec.destinationRule");
    assert_eq!(f[1].field, "spec.virtualService");
}

#[test]
fn tg106_weights_follow_istio_validation() {
    let with = |weights: [i64; 2]| {
        objs(vec![
            vs(
                "orders",
                json!([{"route": [{"destination": {"host": "orders", "subset": "v1"}, "weight": weights[0]},
                                   {"destination": {"host": "orders", "subset": "v2"}, "weight": weights[1]}]}]),
            ),
            dr("orders", "orders", &["v1", "v2"], None),
        ])
    };
    // Istio accepts any other sum and splits in proportion (80/10 is 89 %/11 %).
    assert!(preflight::check_objects(&with([80, 10]), "default").is_empty());
    let f = preflight::check_objects(&with([0, 0]), "default");
    assert_eq!(codes_of(&f), vec![codes::WEIGHTS_INVALID]);
    assert_eq!(f[0].istio, Some("IST0106"));
    assert!(f[0].message.contains("all weigh 0"), "{}", f[0]);
    let f = preflight::check_objects(&with([110, -10]), "default");
    assert_eq!(codes_of(&f), vec![codes::WEIGHTS_INVALID]);
    assert!(f[0].message.contains("negative"), "{}", f[0]);
}

#[test]
fn tg107_tg108_catch_all_before_match_routes() {
    let o = objs(vec![
        vs(
            "orders",
            json!([
                {"name": "everything", "match": [{"uri": {"prefix": "/"}}], "route": [{"destination": {"host": "legacy"}}]},
                {"name": "primary", "route": split(100)}
            ]),
        ),
        dr("orders", "orders", &["v1", "v2"], None),
    ]);
    let f = preflight::check_objects(&o, "default");
    assert_eq!(codes_of(&f), vec![codes::SHADOWED_ROUTE]);
    assert_eq!(f[0].severity, Severity::Warning);
    // istioctl does not see this one (the first route has a match clause): no IST code.
    assert_eq!(f[0].istio, None);
    assert!(
        f[0].message.contains("\"primary\" can never match"),
        "{}",
        f[0]
    );
    let f = preflight::check_target(&o, &target());
    assert_eq!(codes_of(&f), vec![codes::MANAGED_ROUTE_SHADOWED]);
    assert_eq!(f[0].severity, Severity::Error);
}

#[test]
fn tg109_plan_routes_that_cannot_be_managed() {
    let o = objs(vec![
        json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
               "metadata": {"name": "orders", "namespace": "shop"},
               "spec": {"hosts": ["orders"], "tcp": [{"route": [{"destination": {"host": "orders", "subset": "v1"}}]}]}}),
        dr("orders", "orders", &["v1", "v2"], None),
    ]);
    let f = preflight::check_target(&o, &target());
    assert_eq!(codes_of(&f), vec![codes::PLAN_ROUTES_UNMANAGEABLE]);
    assert!(f[0].message.contains("tcp"), "{}", f[0]);
}

#[test]
fn tg110_tg111_retries_and_timeouts() {
    let o = objs(vec![
        vs(
            "orders",
            json!([
                {"name": "a", "match": [{"uri": {"prefix": "/a"}}], "timeout": "1s", "retries": {"attempts": 3}, "route": split(100)},
                {"name": "b", "match": [{"uri": {"prefix": "/b"}}], "timeout": "1s", "retries": {"attempts": 3, "perTryTimeout": "500ms"}, "route": split(100)},
                {"name": "c", "timeout": "2s", "retries": {"attempts": 3, "perTryTimeout": "0.5s"}, "route": split(100)}
            ]),
        ),
        dr("orders", "orders", &["v1", "v2"], None),
    ]);
    let f = preflight::check_objects(&o, "default");
    assert_eq!(
        codes_of(&f),
        vec![
            codes::RETRIES_WITHOUT_PER_TRY_TIMEOUT,
            codes::RETRIES_EXCEED_TIMEOUT
        ]
    );
    assert_eq!(f[1].field, "spec.http[1].retries.perTryTimeout");
    assert!(
        f[1].message
            .contains("3 attempts × perTryTimeout 500ms exceed the route timeout 1s"),
        "{}",
        f[1]
    );
}

#[test]
fn tg112_fault_injection_without_match() {
    let fault = json!({"abort": {"httpStatus": 500, "percentage": {"value": 10}}});
    let o = objs(vec![
        vs(
            "orders",
            json!([
                {"match": [{"headers": {"x-test": {"exact": "1"}}}], "fault": fault, "route": split(100)},
                {"fault": fault, "route": split(100)}
            ]),
        ),
        dr("orders", "orders", &["v1", "v2"], None),
    ]);
    let f = preflight::check_objects(&o, "default");
    assert_eq!(codes_of(&f), vec![codes::FAULT_WITHOUT_MATCH]);
    assert_eq!(f[0].field, "spec.http[1].fault");
}

fn pa(ns: &str, mode: &str, selector: Option<Value>) -> Value {
    let mut v = json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
                       "metadata": {"name": "pa", "namespace": ns}, "spec": {"mtls": {"mode": mode}}});
    if let Some(s) = selector {
        v["spec"]["selector"] = json!({"matchLabels": s});
    }
    v
}

#[test]
fn tg113_tg114_peer_authentication_without_a_matching_tls_mode() {
    let base = vs("orders", json!([{"route": split(100)}]));
    // DISABLE on the server, clients told ISTIO_MUTUAL: the classic 503.
    let o = objs(vec![
        base.clone(),
        dr("orders", "orders", &["v1", "v2"], Some("ISTIO_MUTUAL")),
        pa("shop", "DISABLE", None),
    ]);
    let f = preflight::check_objects(&o, "default");
    assert_eq!(codes_of(&f), vec![codes::MTLS_MISMATCH]);
    assert_eq!(f[0].object.kind, "DestinationRule");
    assert_eq!(f[0].field, "spec.trafficPolicy.tls.mode");
    // Matching mode: fine.
    let o = objs(vec![
        base.clone(),
        dr("orders", "orders", &["v1", "v2"], Some("DISABLE")),
        pa("shop", "DISABLE", None),
    ]);
    assert!(preflight::check_objects(&o, "default").is_empty());
    // Mesh-wide PERMISSIVE with no stated mode: a warning.
    let o = objs(vec![
        base.clone(),
        dr("orders", "orders", &["v1", "v2"], None),
        pa("istio-system", "PERMISSIVE", None),
    ]);
    let f = preflight::check_objects(&o, "default");
    assert_eq!(codes_of(&f), vec![codes::MTLS_MODE_UNSTATED]);
    assert_eq!(f[0].severity, Severity::Warning);
    // A workload selector that picks another workload: not this DestinationRule's business
    // (but payments has no DestinationRule at all: the half-written pair, TG134).
    let o = objs(vec![
        base.clone(),
        dr("orders", "orders", &["v1", "v2"], Some("ISTIO_MUTUAL")),
        pa("shop", "DISABLE", Some(json!({"app": "payments"}))),
    ]);
    let f = preflight::check_objects(&o, "default");
    assert_eq!(codes_of(&f), vec![codes::MTLS_HALF_PAIR]);
    assert!(
        f[0].message.contains("payments.shop.svc.cluster.local"),
        "{}",
        f[0]
    );
    let o = objs(vec![
        base,
        dr("orders", "orders", &["v1", "v2"], Some("ISTIO_MUTUAL")),
        pa("shop", "DISABLE", Some(json!({"version": "v2"}))),
    ]);
    assert_eq!(
        codes_of(&preflight::check_objects(&o, "default")),
        vec![codes::MTLS_MISMATCH]
    );
}

#[test]
fn tg115_two_virtual_services_claiming_one_host() {
    let a = vs("orders", json!([{"route": split(100)}]));
    let mut b = vs(
        "orders-copy",
        json!([{"route": [{"destination": {"host": "orders"}}]}]),
    );
    b["spec"]["hosts"] = json!(["orders.shop.svc.cluster.local"]);
    let o = objs(vec![a, b, dr("orders", "orders", &["v1", "v2"], None)]);
    let f = preflight::check_objects(&o, "default");
    // Both sides, once each, each naming the other (istioctl's IST0109).
    assert_eq!(codes_of(&f), vec![codes::DUPLICATE_HOST; 2]);
    let names: Vec<&str> = f.iter().map(|f| f.object.name.as_str()).collect();
    assert_eq!(names, vec!["orders", "orders-copy"]);
    assert_eq!(f[0].related[0].name, "orders-copy");
    assert_eq!(f[1].related[0].name, "orders");
    assert!(f.iter().all(|f| f.istio == Some("IST0109")));
}

#[test]
fn tg116_leftover_header_routes() {
    let o = objs(vec![vs(
        "orders",
        json!([
            {"name": "tidegate-gone-header", "match": [{"headers": {"x": {"exact": "1"}}}], "route": [{"destination": {"host": "orders", "subset": "v2"}}]},
            {"name": "primary", "route": split(100)}
        ]),
    )]);
    let f = preflight::check_leftovers(&o, &["orders".to_string()], "default");
    assert_eq!(codes_of(&f), vec![codes::LEFTOVER_TIDEGATE_ROUTE]);
    assert!(preflight::check_leftovers(&o, &["gone".to_string()], "default").is_empty());
}

#[test]
fn istio_durations() {
    use std::time::Duration;
    assert_eq!(
        preflight::parse_duration("1.5s"),
        Some(Duration::from_millis(1500))
    );
    assert_eq!(
        preflight::parse_duration("300ms"),
        Some(Duration::from_millis(300))
    );
    assert_eq!(
        preflight::parse_duration("2m"),
        Some(Duration::from_secs(120))
    );
    assert_eq!(preflight::parse_duration("soon"), None);
}

#[test]
fn real_mistakes_in_the_shared_fixtures_are_found() {
    let check = |files: &[&str]| {
        let paths: Vec<_> = files
            .iter()
            .map(|f| common::fixture(&format!("istio/manifests/{f}")))
            .collect();
        let o: Vec<Object> = manifests::load(&paths)
            .expect("parse")
            .into_iter()
            .map(|d| Object::new(d.value, Some(d.file)))
            .collect();
        preflight::check_objects(&o, "default")
    };
    // Istio's own analyzer test data: unknown hosts and ports, found as istioctl finds them.
    let f = check(&["istio-analyzers__virtualservice_destinationhosts.yaml"]);
    assert!(f.iter().any(|f| f.code == codes::UNKNOWN_HOST), "{f:#?}");
    assert!(
        f.iter().any(|f| f.code == codes::PORT_SELECTOR_REQUIRED),
        "{f:#?}"
    );
    // Bookinfo's fault-injection sample injects into every request of its first route, which
    // has no match and so leaves the second route unreachable (istioctl: IST0130).
    let f = check(&["bookinfo__fault-injection-details-v1.yaml"]);
    assert_eq!(
        codes_of(&f),
        vec![codes::SHADOWED_ROUTE, codes::FAULT_WITHOUT_MATCH]
    );
    assert_eq!(f[0].istio, Some("IST0130"));
    // The bookinfo destination rules and the matching all-v1 routes are consistent.
    let f = check(&[
        "bookinfo__destination-rule-all.yaml",
        "bookinfo__virtual-service-all-v1.yaml",
    ]);
    assert_eq!(f, vec![]);
}

#[test]
fn check_rollout_keeps_only_what_concerns_the_rollout() {
    let o = objs(vec![
        vs("orders", json!([{"route": split(100)}])),
        dr("orders", "orders", &["v1"], None),
        // An unrelated broken VirtualService in the same namespace.
        vs(
            "search",
            json!([{"route": [{"destination": {"host": "search", "subset": "nope"}}]}]),
        ),
    ]);
    let f = preflight::check_rollout(&o, &target());
    assert_eq!(
        codes_of(&f),
        vec![codes::PLAN_SUBSET_MISSING, codes::UNKNOWN_SUBSET]
    );
    let blocking = preflight::blocking(&f);
    assert_eq!(blocking.len(), 2);
    assert!(
        blocking[0].starts_with("error TG104 DestinationRule shop/orders"),
        "{}",
        blocking[0]
    );
    assert!(preflight::has_errors(&f));
}

#[test]
fn a_host_level_plan_needs_its_two_services_and_no_destination_rule() {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/peers/argo-rollouts__istio-host-split.yaml");
    assert!(
        path.is_file(),
        "the shared fixtures are missing: {}",
        path.display()
    );
    let docs: Vec<Value> = manifests::load(&[path])
        .expect("parses")
        .into_iter()
        .filter(|d| d.kind() != "Rollout")
        .map(|mut d| {
            d.value["metadata"]["namespace"] = json!("shop");
            d.value
        })
        .collect();
    let t = Target {
        service: "istio-host-split".into(),
        virtual_service: "istio-host-split-vsvc".into(),
        destination_rule: None,
        routes: vec!["primary".into()],
        stable: "istio-host-split-stable".into(),
        canary: "istio-host-split-canary".into(),
        split: tidegate::plan::Split::Host,
        ..target()
    };
    let o = objs(docs.clone());
    assert!(
        preflight::check_target(&o, &t).is_empty(),
        "{:#?}",
        preflight::check_target(&o, &t)
    );
    // Without the canary's Service the split would send its share into a 503.
    let without: Vec<Value> = docs
        .into_iter()
        .filter(|d| d["metadata"]["name"] != "istio-host-split-canary")
        .collect();
    let f = preflight::check_target(&objs(without), &t);
    assert_eq!(codes_of(&f), vec![codes::PLAN_OBJECT_MISSING], "{f:#?}");
    assert_eq!(f[0].field, "spec.canary.host");
    assert!(
        f[0].message.contains("istio-host-split-canary")
            && f[0].hint.contains("create Service istio-host-split-canary"),
        "{}",
        f[0]
    );
}
