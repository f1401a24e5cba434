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
        destination_rule: "orders".into(),
        routes: vec![],
        stable: "v1".into(),
        canary: "v2".into(),
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
    let o = objs(vec![vs("orders", json!([{"route": split(100)}]))]);
    let f = preflight::check_objects(&o, "default");
    assert_eq!(
        codes_of(&f),
        vec![codes::SUBSET_WITHOUT_DESTINATION_RULE; 2]
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
fn tg106_weights_must_sum_to_100() {
    let o = objs(vec![
        vs(
            "orders",
            json!([{"route": [{"destination": {"host": "orders", "subset": "v1"}, "weight": 80},
                                         {"destination": {"host": "orders", "subset": "v2"}, "weight": 10}]}]),
        ),
        dr("orders", "orders", &["v1", "v2"], None),
    ]);
    let f = preflight::check_objects(&o, "default");
    assert_eq!(codes_of(&f), vec![codes::WEIGHTS_NOT_100]);
    assert!(f[0].message.contains("sum to 90"));
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
    // A workload selector that picks another workload: not this DestinationRule's business.
    let o = objs(vec![
        base.clone(),
        dr("orders", "orders", &["v1", "v2"], Some("ISTIO_MUTUAL")),
        pa("shop", "DISABLE", Some(json!({"app": "payments"}))),
    ]);
    assert!(preflight::check_objects(&o, "default").is_empty());
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
    assert_eq!(codes_of(&f), vec![codes::DUPLICATE_HOST]);
    assert_eq!(f[0].object.name, "orders-copy");
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
    let check = |file: &str| {
        let docs =
            manifests::load(&[common::fixture(&format!("istio/manifests/{file}"))]).expect("parse");
        let o: Vec<Object> = docs
            .into_iter()
            .map(|d| Object::new(d.value, Some(d.file)))
            .collect();
        preflight::check_objects(&o, "default")
    };
    // Istio's own analyzer test data: a VirtualService routing to a subset of an unknown host.
    let f = check("istio-analyzers__virtualservice_destinationhosts.yaml");
    assert!(
        f.iter()
            .any(|f| f.code == codes::SUBSET_WITHOUT_DESTINATION_RULE),
        "{f:#?}"
    );
    // Bookinfo's fault-injection sample injects into every request of its first route, which
    // also matches everything and shadows the second.
    let f = check("bookinfo__fault-injection-details-v1.yaml");
    assert_eq!(
        codes_of(&f),
        vec![codes::SHADOWED_ROUTE, codes::FAULT_WITHOUT_MATCH]
    );
    // The bookinfo destination rules and the matching all-v1 routes are consistent.
    let docs = manifests::load(&[
        common::fixture("istio/manifests/bookinfo__destination-rule-all.yaml"),
        common::fixture("istio/manifests/bookinfo__virtual-service-all-v1.yaml"),
    ])
    .expect("parse");
    let o: Vec<Object> = docs
        .into_iter()
        .map(|d| Object::new(d.value, Some(d.file)))
        .collect();
    assert_eq!(preflight::check_objects(&o, "default"), vec![]);
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
