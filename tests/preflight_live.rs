//! Preflight of objects read from a cluster (`check_rollouts_live`): where Services and Gateways
//! were read, an empty list says "none there" (a missing host or Gateway holds the rollout);
//! where they were not read (not served, forbidden) the checks that need them say nothing; and
//! an external host is never called missing, since ServiceEntries of namespaces that were not
//! read may define it.

use std::path::Path;

use tidegate::mesh::Target;
use tidegate::mesh::istio::preflight::{self, ListedKind, Object, Seen, codes};
use tidegate::mesh::manifests;
use tidegate::plan::RolloutId;

fn objects(yaml: &str) -> Vec<Object> {
    manifests::parse_text(Path::new("test.yaml"), yaml)
        .expect("test YAML parses")
        .into_iter()
        .map(|d| Object::new(d.value, None))
        .collect()
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
        routes: vec!["primary".into()],
        stable: "v1".into(),
        canary: "v2".into(),
        split: tidegate::plan::Split::Subset,
    }
}

/// The rollout's VirtualService (bound to `istio-system/public`), routing `/pay` to an external
/// host and `/ledger` to a Service of `billing`, and its DestinationRule.
const OBJECTS: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: orders, namespace: shop}
spec:
  hosts: [orders.example.com]
  gateways: [istio-system/public]
  http:
    - name: pay
      match: [{uri: {prefix: /pay}}]
      route: [{destination: {host: api.payments.example}}]
    - name: ledger
      match: [{uri: {prefix: /ledger}}]
      route: [{destination: {host: ledger.billing.svc.cluster.local}}]
    - name: primary
      route:
        - {destination: {host: orders, subset: v1}, weight: 100}
        - {destination: {host: orders, subset: v2}, weight: 0}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: orders, namespace: shop}
spec:
  host: orders
  subsets:
    - {name: v1, labels: {version: v1}}
    - {name: v2, labels: {version: v2}}
---
apiVersion: v1
kind: Service
metadata: {name: orders, namespace: shop}
spec:
  ports: [{name: http, port: 8080}]
"#;

fn seen(kinds: &[(ListedKind, &str)]) -> Seen {
    let mut s = Seen::default();
    for (k, ns) in kinds {
        s.insert(*k, ns);
    }
    s
}

fn codes_of(objects: &[Object], seen: &Seen) -> Vec<(&'static str, bool)> {
    let mut found: Vec<(&'static str, bool)> =
        preflight::check_rollouts_live(objects, seen, &[target()])
            .pop()
            .unwrap_or_default()
            .iter()
            .map(|f| (f.code, f.severity == preflight::Severity::Error))
            .collect();
    found.sort();
    found
}

#[test]
fn kinds_read_and_found_empty_say_none_there() {
    let objs = objects(OBJECTS);
    let everywhere = seen(&[
        (ListedKind::Service, "shop"),
        (ListedKind::Service, "billing"),
        (ListedKind::Service, "istio-system"),
        (ListedKind::Gateway, "istio-system"),
        (ListedKind::ServiceEntry, "shop"),
    ]);
    let found = codes_of(&objs, &everywhere);
    // billing was read and has no Service: the ledger host is unknown; istio-system was read
    // and has no Gateway: the gateway is missing and admits nothing. Each holds the rollout.
    assert_eq!(
        found,
        vec![
            (codes::UNKNOWN_HOST, true),
            (codes::GATEWAY_NOT_FOUND, true),
            (codes::HOST_NOT_IN_GATEWAY, true),
        ],
        "{found:?}"
    );
    let f = preflight::check_rollouts_live(&objs, &everywhere, &[target()]).remove(0);
    let unknown = f
        .iter()
        .find(|f| f.code == codes::UNKNOWN_HOST)
        .expect("TG118");
    assert_eq!(unknown.istio, Some("IST0101"));
    assert!(
        unknown.field.starts_with("spec.http[1]"),
        "the ledger route, not the external host of /pay: {unknown}"
    );
}

#[test]
fn kinds_not_read_say_nothing() {
    let objs = objects(OBJECTS);
    // Only the rollout's own namespace was read (Services forbidden elsewhere, Gateways not
    // served): nothing is said about billing's host or istio-system's Gateway.
    let found = codes_of(&objs, &seen(&[(ListedKind::Service, "shop")]));
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn the_same_objects_from_files_follow_lints_rule() {
    // lint takes the kinds present as complete: with Services given only for `shop`, billing's
    // host is not judged; with no Gateway given, no gateway check speaks.
    let objs = objects(OBJECTS);
    let found: Vec<&str> = preflight::check_rollout(&objs, &target())
        .iter()
        .map(|f| f.code)
        .collect();
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn a_gateway_read_that_admits_the_host_clears_the_ingress_checks() {
    let mut objs = objects(OBJECTS);
    objs.extend(objects(
        r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: public, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
    - port: {number: 80, name: http, protocol: HTTP}
      hosts: ["shop/orders.example.com"]
---
apiVersion: v1
kind: Service
metadata: {name: ledger, namespace: billing}
spec:
  ports: [{name: http, port: 9000}]
"#,
    ));
    let read = seen(&[
        (ListedKind::Service, "shop"),
        (ListedKind::Service, "billing"),
        (ListedKind::Gateway, "istio-system"),
    ]);
    assert!(codes_of(&objs, &read).is_empty());
    // `./orders.example.com` admits the host only for VirtualServices of istio-system.
    let text = serde_json::to_string(&objs[3].value).expect("json");
    objs[3].value = serde_json::from_str(&text.replace("shop/orders", "./orders")).expect("json");
    assert_eq!(
        codes_of(&objs, &read),
        vec![(codes::HOST_NOT_IN_GATEWAY, true)]
    );
}
