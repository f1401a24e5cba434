//! The routing analyzers that match `istioctl analyze`, one test per analyzer with positive
//! and negative cases (namespaces, `exportTo`, wildcards), on small manifests written here.

use std::path::Path;

use tidegate::mesh::istio::preflight::{self, Finding, Object, Severity, codes};
use tidegate::mesh::manifests;

/// Parse YAML documents (objects without a namespace are in `default`) and run the object
/// checks.
fn objects(yaml: &str) -> Vec<Object> {
    manifests::parse_text(Path::new("test.yaml"), yaml)
        .expect("test YAML parses")
        .into_iter()
        .map(|d| Object::new(d.value, None))
        .collect()
}

fn check(yaml: &str) -> Vec<Finding> {
    preflight::check_objects(&objects(yaml), "default")
}

/// `(code, namespace/name, field)` of every finding, sorted.
fn summary(f: &[Finding]) -> Vec<(String, String, String)> {
    let mut v: Vec<_> = f
        .iter()
        .map(|f| {
            (
                f.code.to_string(),
                format!("{}/{}", f.object.namespace, f.object.name),
                f.field.clone(),
            )
        })
        .collect();
    v.sort();
    v
}

fn row(code: &str, obj: &str, field: &str) -> (String, String, String) {
    (code.into(), obj.into(), field.into())
}

const ORDERS_DR: &str = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: orders, namespace: shop}
spec:
  host: orders
  subsets:
    - {name: v1, labels: {version: v1}}
    - {name: v2, labels: {version: v2}}
"#;

#[test]
fn ist0101_subsets_of_routes_and_mirrors() {
    let f = check(&format!(
        r#"{ORDERS_DR}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: orders, namespace: shop}}
spec:
  hosts: [orders]
  http:
    - name: primary
      route:
        - {{destination: {{host: orders, subset: v1}}, weight: 90}}
        - {{destination: {{host: orders.shop.svc.cluster.local, subset: v3}}, weight: 10}}
      mirror: {{host: orders, subset: v4}}
      mirrors:
        - destination: {{host: orders, subset: v2}}
        - destination: {{host: orders, subset: v5}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: client, namespace: web}}
spec:
  hosts: [client]
  http:
    # The FQDN reaches the DestinationRule in shop; the short name means web/orders, which
    # no DestinationRule covers.
    - route: [{{destination: {{host: orders.shop.svc.cluster.local, subset: v2}}}}]
      match: [{{uri: {{prefix: /a}}}}]
    - route: [{{destination: {{host: orders, subset: v2}}}}]
"#
    ));
    assert_eq!(
        summary(&f),
        vec![
            row("TG101", "shop/orders", "spec.http[0].mirror.subset"),
            row(
                "TG101",
                "shop/orders",
                "spec.http[0].mirrors[1].destination.subset"
            ),
            row(
                "TG101",
                "shop/orders",
                "spec.http[0].route[1].destination.subset"
            ),
            row(
                "TG102",
                "web/client",
                "spec.http[1].route[0].destination.subset"
            ),
        ]
    );
    assert!(f.iter().all(|f| f.istio == Some("IST0101")));
    let mirror = f
        .iter()
        .find(|f| f.field.contains("mirror.subset"))
        .expect("mirror");
    assert!(
        mirror.message.starts_with("mirrors to subset \"v4\""),
        "{mirror}"
    );
}

#[test]
fn ist0101_subsets_through_a_wildcard_destination_rule() {
    let f = check(
        r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: all, namespace: shop}
spec:
  host: "*.shop.svc.cluster.local"
  subsets: [{name: v1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: orders, namespace: shop}
spec:
  hosts: [orders]
  http:
    - route: [{destination: {host: orders, subset: v1}}]
"#,
    );
    assert_eq!(f, vec![]);
}

const REGISTRY: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: orders, namespace: shop}
spec: {ports: [{port: 8080, name: http}]}
---
apiVersion: v1
kind: Service
metadata: {name: multi, namespace: shop}
spec: {ports: [{port: 80, name: http}, {port: 9090, name: grpc}]}
---
apiVersion: v1
kind: Service
metadata:
  name: private
  namespace: shop
  annotations: {networking.istio.io/exportTo: "."}
spec: {ports: [{port: 80, name: http}]}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: payments-api, namespace: shop}
spec:
  hosts: [api.payments.example]
  ports: [{number: 443, name: https, protocol: TLS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: partners, namespace: egress}
spec:
  hosts: ["*.partners.example"]
  ports: [{number: 443, name: https, protocol: TLS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: internal-only, namespace: egress}
spec:
  hosts: [ledger.internal.example]
  exportTo: ["."]
  ports: [{number: 443, name: https, protocol: TLS}]
  resolution: DNS
"#;

#[test]
fn ist0101_ist0112_hosts_and_ports_against_services_and_service_entries() {
    let f = check(&format!(
        r#"{REGISTRY}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: edge, namespace: shop}}
spec:
  hosts: [edge]
  http:
    - match: [{{uri: {{prefix: /1}}}}]
      route: [{{destination: {{host: orders}}}}]
      mirror: {{host: ghost}}
    - match: [{{uri: {{prefix: /2}}}}]
      route: [{{destination: {{host: orders.shop.svc.cluster.local, port: {{number: 8080}}}}}}]
    - match: [{{uri: {{prefix: /3}}}}]
      route: [{{destination: {{host: ghost}}}}]
    - match: [{{uri: {{prefix: /4}}}}]
      route: [{{destination: {{host: multi}}}}]
    - match: [{{uri: {{prefix: /5}}}}]
      route: [{{destination: {{host: multi, port: {{number: 81}}}}}}]
    - match: [{{uri: {{prefix: /6}}}}]
      route: [{{destination: {{host: multi, port: {{number: 9090}}}}}}]
    - match: [{{uri: {{prefix: /7}}}}]
      route: [{{destination: {{host: api.payments.example}}}}]
    - match: [{{uri: {{prefix: /8}}}}]
      route: [{{destination: {{host: eu.partners.example}}}}]
    - match: [{{uri: {{prefix: /9}}}}]
      route: [{{destination: {{host: ledger.internal.example}}}}]
    - match: [{{uri: {{prefix: /z}}}}]
      route: [{{destination: {{host: payments.billing.svc.cluster.local}}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: outside, namespace: web}}
spec:
  hosts: [outside]
  http:
    - route: [{{destination: {{host: private.shop.svc.cluster.local}}}}]
"#
    ));
    assert_eq!(
        summary(&f),
        vec![
            // A host no Service of shop defines.
            row("TG118", "shop/edge", "spec.http[0].mirror.host"),
            row(
                "TG118",
                "shop/edge",
                "spec.http[2].route[0].destination.host"
            ),
            // A ServiceEntry exported only to its own namespace.
            row(
                "TG118",
                "shop/edge",
                "spec.http[8].route[0].destination.host"
            ),
            // A Service exported only to shop, routed to from web.
            row(
                "TG118",
                "web/outside",
                "spec.http[0].route[0].destination.host"
            ),
            row(
                "TG119",
                "shop/edge",
                "spec.http[4].route[0].destination.port.number"
            ),
            row("TG120", "shop/edge", "spec.http[3].route[0].destination"),
        ]
    );
    let codes: Vec<Option<&str>> = f.iter().map(|f| f.istio).collect();
    assert!(
        codes
            .iter()
            .all(|c| matches!(c, Some("IST0101" | "IST0112")))
    );
    // payments.billing: no Service of billing was given, so nothing is said about it.
    assert!(
        !f.iter()
            .any(|f| f.field == "spec.http[9].route[0].destination.host")
    );
}

#[test]
fn host_checks_say_nothing_without_the_kind_that_would_define_the_host() {
    let vs = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: edge, namespace: shop}
spec:
  hosts: [edge]
  http:
    - match: [{uri: {prefix: /a}}]
      route: [{destination: {host: ghost}}]
    - route: [{destination: {host: api.nowhere.example}}]
"#;
    assert_eq!(check(vs), vec![]);
    let missing: Vec<&str> = preflight::missing_kinds(&objects(vs))
        .iter()
        .map(|m| m.kind)
        .collect();
    assert_eq!(
        missing,
        vec!["DestinationRule", "Service", "ServiceEntry", "Gateway"]
    );
    // With a ServiceEntry given, external hosts are judged; cluster hosts still are not.
    let f = check(&format!(
        "{vs}\n---\n{}",
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: other, namespace: shop}
spec: {hosts: [api.elsewhere.example], ports: [{number: 443, name: tls, protocol: TLS}], resolution: DNS}
"#
    ));
    assert_eq!(
        summary(&f),
        vec![row(
            "TG118",
            "shop/edge",
            "spec.http[1].route[0].destination.host"
        )]
    );
}

const GATEWAYS: &str = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: public, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
    - port: {number: 80, name: http, protocol: HTTP}
      hosts: ["shop/orders.example.com", "*/*.example.org"]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: local, namespace: shop}
spec:
  selector: {istio: ingressgateway}
  servers:
    - port: {number: 8080, name: http, protocol: HTTP}
      hosts: ["./local.example.com"]
"#;

fn ingress_vs(name: &str, ns: &str, gateway: &str, host: &str) -> String {
    format!(
        r#"
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: {ns}}}
spec:
  hosts: ["{host}"]
  gateways: ["{gateway}"]
  http: [{{route: [{{destination: {{host: backend}}}}]}}]
"#
    )
}

#[test]
fn ist0101_ist0132_gateway_references_and_admitted_hosts() {
    let mut yaml = GATEWAYS.to_string();
    for (name, ns, gw, host) in [
        ("a", "shop", "istio-system/public", "orders.example.com"),
        // `shop/orders.example.com` admits it only from shop.
        ("b", "web", "istio-system/public", "orders.example.com"),
        // `*/*.example.org`: any namespace, wildcard host.
        ("c", "web", "istio-system/public", "a.example.org"),
        // A short name is the VirtualService's namespace; `./host` is the Gateway's.
        ("d", "shop", "local", "local.example.com"),
        ("e", "web", "shop/local", "local.example.com"),
        ("f", "shop", "missing", "x.example.com"),
        // Gateways of other-ns were not given: nothing to judge by.
        ("g", "shop", "other-ns/gw", "x.example.com"),
        ("h", "shop", "mesh", "x.example.com"),
        // The legacy FQDN form istiod still resolves.
        (
            "i",
            "web",
            "public.istio-system.svc.cluster.local",
            "b.example.org",
        ),
        ("j", "web", "istio-system/public", "example.org"),
    ] {
        yaml.push_str(&ingress_vs(name, ns, gw, host));
    }
    let f = check(&yaml);
    assert_eq!(
        summary(&f),
        vec![
            row("TG121", "shop/f", "spec.gateways[0]"),
            row("TG122", "shop/f", "spec.gateways[0]"),
            row("TG122", "web/b", "spec.gateways[0]"),
            row("TG122", "web/e", "spec.gateways[0]"),
            row("TG122", "web/j", "spec.gateways[0]"),
        ]
    );
    let b = f.iter().find(|f| f.object.name == "b").expect("b");
    assert_eq!(b.istio, Some("IST0132"));
    assert_eq!(b.severity, Severity::Warning);
    assert!(b.message.contains("Gateway istio-system/public"), "{b}");
}

#[test]
fn ist0132_kubernetes_gateway_listeners() {
    let f = check(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: shop}
spec:
  gatewayClassName: istio
  listeners: [{name: http, port: 80, protocol: HTTP, hostname: "*.shop.example"}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ok, namespace: shop}
spec: {hosts: [a.shop.example], gateways: [gw], http: [{route: [{destination: {host: a}}]}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: mismatch, namespace: shop}
spec: {hosts: [a.other.example], gateways: [gw], http: [{route: [{destination: {host: a}}]}]}
"#,
    );
    assert_eq!(
        summary(&f),
        vec![row("TG122", "shop/mismatch", "spec.gateways[0]")]
    );
}

fn mesh_vs(name: &str, ns: &str, host: &str, extra: &str) -> String {
    format!(
        r#"
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: {ns}}}
spec:
  hosts: ["{host}"]
  {extra}
  http: [{{route: [{{destination: {{host: backend}}}}]}}]
"#
    )
}

#[test]
fn ist0109_mesh_gateway_host_conflicts() {
    let case = |docs: &[String]| {
        let f = check(&docs.concat());
        assert!(
            f.iter()
                .all(|f| f.code == codes::DUPLICATE_HOST && f.istio == Some("IST0109"))
        );
        let mut names: Vec<String> = f
            .iter()
            .map(|f| format!("{}/{}", f.object.namespace, f.object.name))
            .collect();
        names.sort();
        names
    };
    // Same host, both on the mesh gateway: both sides, once each.
    assert_eq!(
        case(&[
            mesh_vs("a", "shop", "orders", ""),
            mesh_vs("b", "shop", "orders.shop.svc.cluster.local", "")
        ]),
        vec!["shop/a", "shop/b"]
    );
    // One bound to an ingress Gateway: Istio merges those, no conflict.
    assert!(
        case(&[
            mesh_vs("a", "shop", "orders", ""),
            mesh_vs("b", "shop", "orders", "gateways: [istio-system/public]")
        ])
        .is_empty()
    );
    // Bound to both: the mesh part conflicts.
    assert_eq!(
        case(&[
            mesh_vs("a", "shop", "orders", ""),
            mesh_vs(
                "b",
                "shop",
                "orders",
                "gateways: [mesh, istio-system/public]"
            )
        ])
        .len(),
        2
    );
    // Short names in different namespaces are different services; external names are not.
    assert!(
        case(&[
            mesh_vs("a", "shop", "orders", ""),
            mesh_vs("b", "web", "orders", "")
        ])
        .is_empty()
    );
    assert_eq!(
        case(&[
            mesh_vs("a", "shop", "api.example.com", ""),
            mesh_vs("b", "web", "api.example.com", "")
        ])
        .len(),
        2
    );
    // exportTo: each visible only in its own namespace: no conflict.
    assert!(
        case(&[
            mesh_vs("a", "shop", "api.example.com", "exportTo: [\".\"]"),
            mesh_vs("b", "web", "api.example.com", "exportTo: [\".\"]"),
        ])
        .is_empty()
    );
    // One local, one exported to all: they meet in the first one's namespace.
    assert_eq!(
        case(&[
            mesh_vs("a", "shop", "api.example.com", "exportTo: [\".\"]"),
            mesh_vs("b", "web", "api.example.com", ""),
        ]),
        vec!["shop/a", "web/b"]
    );
    // A namespace-scoped wildcard meets the exported-to-all hosts it matches.
    assert_eq!(
        case(&[
            mesh_vs("a", "shop", "*.example.com", "exportTo: [\".\"]"),
            mesh_vs("b", "web", "api.example.com", ""),
        ])
        .len(),
        2
    );
    // Two exported-to-all names are compared as names, as istioctl does.
    assert!(
        case(&[
            mesh_vs("a", "shop", "*.example.com", ""),
            mesh_vs("b", "web", "api.example.com", "")
        ])
        .is_empty()
    );
    // Three on one host: each reported once, naming the two others.
    let docs = [
        mesh_vs("a", "shop", "orders", ""),
        mesh_vs("b", "shop", "orders", ""),
        mesh_vs("c", "shop", "orders", ""),
    ];
    let f = check(&docs.concat());
    assert_eq!(f.len(), 3);
    assert!(f.iter().all(|f| f.related.len() == 2));
}

fn http_vs(http: &str) -> String {
    format!(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: r, namespace: shop}}
spec:
  hosts: [r]
  http:
{http}
"#
    )
}

fn route_findings(yaml: &str) -> Vec<(String, Option<&'static str>, String)> {
    check(yaml)
        .into_iter()
        .map(|f| (f.code.to_string(), f.istio, f.field))
        .collect()
}

#[test]
fn ist0130_ist0131_http_rules() {
    // A repeated clause (names differ): ineffective clause, unreachable route.
    let f = route_findings(&http_vs(
        r#"
    - name: one
      match: [{name: first, uri: {prefix: /api}}]
      route: [{destination: {host: a}}]
    - name: two
      match: [{uri: {prefix: /api}}]
      route: [{destination: {host: b}}]
"#,
    ));
    assert_eq!(
        f,
        vec![
            ("TG107".into(), Some("IST0130"), "spec.http[1]".into()),
            (
                "TG117".into(),
                Some("IST0131"),
                "spec.http[1].match[0]".into()
            ),
        ]
    );
    // A longer prefix with the same method: the clause is covered (istioctl: IST0131), and
    // the whole route can never match (tidegate only).
    let f = route_findings(&http_vs(
        r#"
    - match: [{uri: {prefix: /api}, method: {exact: GET}}]
      route: [{destination: {host: a}}]
    - match: [{uri: {prefix: /api/v2}, method: {exact: GET}}]
      route: [{destination: {host: b}}]
"#,
    ));
    assert_eq!(
        f,
        vec![
            ("TG107".into(), None, "spec.http[1]".into()),
            (
                "TG117".into(),
                Some("IST0131"),
                "spec.http[1].match[0]".into()
            ),
        ]
    );
    // Not covered: a different method, or a later clause without method (it matches POST,
    // which the earlier GET clause does not; istioctl reads a missing method as GET).
    for later in ["method: {exact: POST}", ""] {
        let f = route_findings(&http_vs(&format!(
            r#"
    - match: [{{uri: {{prefix: /api}}, method: {{exact: GET}}}}]
      route: [{{destination: {{host: a}}}}]
    - match: [{{uri: {{prefix: /api/v2}}, {later}}}]
      route: [{{destination: {{host: b}}}}]
"#
        )));
        assert_eq!(f, vec![], "{later}");
    }
    // A route without match before others: every later route is unreachable.
    let f = route_findings(&http_vs(
        r#"
    - route: [{destination: {host: a}}]
    - match: [{uri: {prefix: /x}}]
      route: [{destination: {host: b}}]
    - route: [{destination: {host: c}}]
"#,
    ));
    assert_eq!(
        f,
        vec![
            ("TG107".into(), Some("IST0130"), "spec.http[1]".into()),
            ("TG107".into(), Some("IST0130"), "spec.http[2]".into()),
        ]
    );
    // `prefix: /` then an exact `/` in the same route: istioctl compares prefixes only, and
    // so does tidegate for IST0131; nothing is said.
    let f = route_findings(&http_vs(
        r#"
    - match: [{uri: {prefix: /}}, {uri: {exact: /}, method: {exact: GET}}]
      route: [{destination: {host: a}}]
"#,
    ));
    assert_eq!(f, vec![]);
}

fn l4_vs(kind: &str, routes: &str) -> String {
    format!(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: l4, namespace: shop}}
spec:
  hosts: [l4.example.com]
  {kind}:
{routes}
"#
    )
}

#[test]
fn ist0130_ist0131_tcp_and_tls_rules() {
    let f = route_findings(&l4_vs(
        "tcp",
        r#"
    - match: [{port: 5000}]
      route: [{destination: {host: a}}]
    - match: [{port: 5000}]
      route: [{destination: {host: b}}]
    - match: [{port: 5000}, {port: 5001}]
      route: [{destination: {host: c}}]
"#,
    ));
    assert_eq!(
        f,
        vec![
            ("TG107".into(), Some("IST0130"), "spec.tcp[1]".into()),
            (
                "TG117".into(),
                Some("IST0131"),
                "spec.tcp[1].match[0]".into()
            ),
            (
                "TG117".into(),
                Some("IST0131"),
                "spec.tcp[2].match[0]".into()
            ),
        ]
    );
    let f = route_findings(&l4_vs(
        "tcp",
        r#"
    - route: [{destination: {host: a}}]
    - route: [{destination: {host: b}}]
"#,
    ));
    assert_eq!(
        f,
        vec![("TG107".into(), Some("IST0130"), "spec.tcp[1]".into())]
    );
    let f = route_findings(&l4_vs(
        "tls",
        r#"
    - match: [{port: 443, sniHosts: [l4.example.com]}]
      route: [{destination: {host: a}}]
    - match: [{port: 443, sniHosts: [l4.example.com]}]
      route: [{destination: {host: b}}]
    - match: [{port: 8443, sniHosts: [l4.example.com]}]
      route: [{destination: {host: c}}]
"#,
    ));
    assert_eq!(
        f,
        vec![
            ("TG107".into(), Some("IST0130"), "spec.tls[1]".into()),
            (
                "TG117".into(),
                Some("IST0131"),
                "spec.tls[1].match[0]".into()
            ),
        ]
    );
    assert!(
        check(&l4_vs(
            "tcp",
            "    - match: [{port: 1}]\n      route: [{destination: {host: a}}]\n"
        ))
        .is_empty()
    );
}

#[test]
fn ist0131_is_info_and_ist0130_a_warning() {
    let f = check(&http_vs(
        r#"
    - match: [{uri: {exact: /a}}]
      route: [{destination: {host: a}}]
    - match: [{uri: {exact: /a}}, {uri: {exact: /b}}]
      route: [{destination: {host: b}}]
"#,
    ));
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].severity, Severity::Info);
    assert!(f[0].message.contains("repeats"), "{}", f[0]);
}

#[test]
fn ist0140_ingress_routes_that_bypass_a_subset_split() {
    let mesh = format!(
        r#"{ORDERS_DR}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: orders, namespace: shop}}
spec:
  hosts: [orders]
  http:
    - route:
        - {{destination: {{host: orders, subset: v1}}, weight: 90}}
        - {{destination: {{host: orders, subset: v2}}, weight: 10}}
"#
    );
    let ingress = |dest: &str| {
        format!(
            r#"
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: edge, namespace: shop}}
spec:
  hosts: [shop.example.com]
  gateways: [istio-system/public]
  http: [{{route: [{{destination: {dest}}}]}}]
"#
        )
    };
    let f = check(&format!(
        "{mesh}{}",
        ingress("{host: orders.shop.svc.cluster.local}")
    ));
    assert_eq!(
        summary(&f),
        vec![row(
            "TG123",
            "shop/edge",
            "spec.http[0].route[0].destination"
        )]
    );
    assert_eq!(f[0].istio, Some("IST0140"));
    assert_eq!(f[0].related[0].name, "orders");
    // Through the subsets, or to another host: fine.
    assert!(check(&format!("{mesh}{}", ingress("{host: orders, subset: v1}"))).is_empty());
    assert!(check(&format!("{mesh}{}", ingress("{host: search}"))).is_empty());
    // The same short name in another namespace is another service.
    let other = format!(
        "{mesh}{}",
        ingress("{host: orders}").replace("namespace: shop}", "namespace: web}")
    );
    assert!(check(&other).is_empty());
}

const TWO_GATEWAYS: &str = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: alpha, namespace: edge}
spec:
  selector: {istio: ingressgateway}
  servers:
    - port: {number: 443, name: https, protocol: HTTPS}
      hosts: [shop.example.com]
      tls: {mode: SIMPLE, credentialName: shop-cert}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: beta, namespace: edge}
spec:
  selector: {SELECTOR}
  servers:
    - port: {number: PORT, name: https, protocol: HTTPS}
      hosts: [HOST]
      tls: {mode: SIMPLE, credentialName: CERT}
"#;

fn gateways(selector: &str, port: &str, host: &str, cert: &str) -> String {
    TWO_GATEWAYS
        .replace("SELECTOR", selector)
        .replace("PORT", port)
        .replace("HOST", host)
        .replace("CERT", cert)
}

#[test]
fn ist0145_conflicting_gateways() {
    let only = |yaml: &str, code: &str| -> Vec<String> {
        check(yaml)
            .into_iter()
            .filter(|f| f.code == code)
            .map(|f| f.object.name)
            .collect()
    };
    let c = codes::CONFLICTING_GATEWAYS;
    assert_eq!(
        only(
            &gateways("istio: ingressgateway", "443", "shop.example.com", "other"),
            c
        ),
        vec!["alpha", "beta"]
    );
    assert!(
        only(
            &gateways("istio: ingressgateway", "8443", "shop.example.com", "other"),
            c
        )
        .is_empty()
    );
    assert!(
        only(
            &gateways("istio: ingressgateway", "443", "blog.example.com", "other"),
            c
        )
        .is_empty()
    );
    assert!(
        only(
            &gateways("istio: internal", "443", "shop.example.com", "other"),
            c
        )
        .is_empty()
    );
    // A narrower selector conflicts only when a given Pod runs both.
    let narrower = gateways(
        "istio: ingressgateway, zone: a",
        "443",
        "shop.example.com",
        "other",
    );
    assert!(only(&narrower, c).is_empty());
    let pod = "\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: gw-1, namespace: edge, labels: {istio: ingressgateway, zone: a}}\nspec: {containers: [{name: proxy, image: proxy}]}\n";
    assert_eq!(only(&format!("{narrower}{pod}"), c), vec!["alpha", "beta"]);
}

#[test]
fn ist0138_gateways_sharing_a_certificate() {
    let f: Vec<Finding> = check(&gateways(
        "istio: ingressgateway",
        "8443",
        "blog.example.com",
        "shop-cert",
    ))
    .into_iter()
    .filter(|f| f.code == codes::DUPLICATE_CERTIFICATE)
    .collect();
    assert_eq!(
        summary(&f),
        vec![
            row("TG125", "edge/alpha", "spec.servers"),
            row("TG125", "edge/beta", "spec.servers")
        ]
    );
    assert_eq!(f[0].istio, Some("IST0138"));
    assert!(
        check(&gateways(
            "istio: ingressgateway",
            "8443",
            "blog.example.com",
            "blog-cert"
        ))
        .is_empty()
    );
}

#[test]
fn ist0128_ist0129_tls_origination_without_a_ca() {
    let dr = |tls: &str, extra: &str| {
        format!(
            r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: bank, namespace: shop}}
spec:
  host: api.bank.example
  {extra}
  trafficPolicy:
    tls: {tls}
    portLevelSettings:
      - port: {{number: 8443}}
        tls: {{mode: MUTUAL, clientCertificate: /c.pem, privateKey: /k.pem}}
      - port: {{number: 9443}}
        tls: {{mode: MUTUAL, caCertificates: /ca.pem, clientCertificate: /c.pem, privateKey: /k.pem}}
"#
        )
    };
    let f = check(&dr("{mode: SIMPLE}", ""));
    assert_eq!(
        summary(&f),
        vec![
            row("TG126", "shop/bank", "spec.trafficPolicy.tls"),
            row(
                "TG127",
                "shop/bank",
                "spec.trafficPolicy.portLevelSettings[0].tls"
            ),
        ]
    );
    assert_eq!(f[0].istio, Some("IST0128"));
    assert_eq!(f[1].istio, Some("IST0129"));
    assert_eq!(
        summary(&check(&dr("{mode: SIMPLE, caCertificates: /ca.pem}", ""))).len(),
        1
    );
    assert_eq!(summary(&check(&dr("{mode: ISTIO_MUTUAL}", ""))).len(), 1);
    // credentialName with a workload selector: the CA comes with the credential.
    let f = check(&dr(
        "{mode: SIMPLE, credentialName: bank-ca}",
        "workloadSelector: {matchLabels: {app: egress}}",
    ));
    assert_eq!(
        summary(&f),
        vec![row(
            "TG127",
            "shop/bank",
            "spec.trafficPolicy.portLevelSettings[0].tls"
        )]
    );
}

fn service_entry(name: &str, ns: &str, extra: &str, protocol: &str) -> String {
    format!(
        r#"
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: {ns}}}
spec:
  hosts: [db.example.net]
  {extra}
  ports: [{{number: 5432, name: pg, protocol: {protocol}}}]
  resolution: DNS
"#
    )
}

#[test]
fn ist0134_tcp_service_entries_need_addresses() {
    let only134 = |yaml: String| -> usize {
        check(&yaml)
            .iter()
            .filter(|f| f.code == codes::SERVICE_ENTRY_ADDRESSES_REQUIRED)
            .count()
    };
    assert_eq!(only134(service_entry("db", "shop", "", "TCP")), 1);
    assert_eq!(only134(service_entry("db", "shop", "", "\"\"")), 1);
    assert_eq!(
        only134(service_entry("db", "shop", "addresses: [10.9.0.1]", "TCP")),
        0
    );
    assert_eq!(only134(service_entry("db", "shop", "", "TLS")), 0);
    let mesh = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    defaultConfig:
      proxyMetadata:
        ISTIO_META_DNS_CAPTURE: "true"
        ISTIO_META_DNS_AUTO_ALLOCATE: "true"
"#;
    assert_eq!(
        only134(format!("{mesh}{}", service_entry("db", "shop", "", "TCP"))),
        0
    );
    let f = check(&service_entry("db", "shop", "", "TCP"));
    assert_eq!(f[0].istio, Some("IST0134"));
    assert_eq!(f[0].field, "spec.ports[0]");
}

#[test]
fn ist0177_service_entries_with_conflicting_protocols() {
    let names = |yaml: String| -> Vec<String> {
        check(&yaml)
            .into_iter()
            .filter(|f| f.code == codes::CONFLICTING_SERVICE_ENTRY_PROTOCOL)
            .map(|f| format!("{}/{}", f.object.namespace, f.object.name))
            .collect()
    };
    let addr = "addresses: [10.9.0.1]";
    assert_eq!(
        names(service_entry("a", "shop", addr, "TCP") + &service_entry("b", "web", addr, "HTTP")),
        vec!["shop/a", "web/b"]
    );
    assert!(
        names(service_entry("a", "shop", addr, "TCP") + &service_entry("b", "web", addr, "tcp"))
            .is_empty()
    );
    // Scoped to their own namespaces they never meet; scoped and exported-to-all do.
    let local = "addresses: [10.9.0.1]\n  exportTo: [\".\"]";
    assert!(
        names(service_entry("a", "shop", local, "TCP") + &service_entry("b", "web", local, "HTTP"))
            .is_empty()
    );
    assert_eq!(
        names(service_entry("a", "shop", local, "TCP") + &service_entry("b", "web", addr, "HTTP"))
            .len(),
        2
    );
}

#[test]
fn ist0174_destination_rule_hosts_that_match_nothing() {
    let dr = |host: &str| {
        format!(
            "\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: d, namespace: shop}}\nspec: {{host: \"{host}\"}}\n"
        )
    };
    let unknown = |yaml: String| {
        check(&yaml)
            .iter()
            .filter(|f| f.code == codes::UNKNOWN_DESTINATION_RULE_HOST)
            .count()
    };
    assert_eq!(unknown(format!("{REGISTRY}{}", dr("ghost"))), 1);
    assert_eq!(unknown(format!("{REGISTRY}{}", dr("orders"))), 0);
    assert_eq!(
        unknown(format!("{REGISTRY}{}", dr("eu.partners.example"))),
        0
    );
    assert_eq!(
        unknown(format!("{REGISTRY}{}", dr("*.shop.svc.cluster.local"))),
        0
    );
    // No Service of billing given: nothing to judge by.
    assert_eq!(
        unknown(format!("{REGISTRY}{}", dr("pay.billing.svc.cluster.local"))),
        0
    );
    // Visible from shop only through exportTo: a ServiceEntry local to egress is not.
    assert_eq!(
        unknown(format!("{REGISTRY}{}", dr("ledger.internal.example"))),
        1
    );
}

#[test]
fn tg134_the_half_written_mtls_pair() {
    let service = "apiVersion: v1\nkind: Service\nmetadata: {name: orders, namespace: shop}\nspec: {selector: {app: orders}, ports: [{port: 80, name: http}]}\n";
    let pa = |ns: &str, mode: &str, selector: &str| {
        format!(
            "\n---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: pa, namespace: {ns}}}\nspec: {{{selector} mtls: {{mode: {mode}}}}}\n"
        )
    };
    let half = |yaml: String| -> Vec<Finding> {
        check(&yaml)
            .into_iter()
            .filter(|f| f.code == codes::MTLS_HALF_PAIR)
            .collect()
    };
    let f = half(format!(
        "{service}{}",
        pa(
            "shop",
            "DISABLE",
            "selector: {matchLabels: {app: orders, version: v2}},"
        )
    ));
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].severity, Severity::Error);
    let snippet = f[0].snippet.as_deref().expect("snippet");
    assert_eq!(
        snippet,
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: orders\n  namespace: shop\nspec:\n  host: \"orders.shop.svc.cluster.local\"\n  trafficPolicy:\n    tls:\n      mode: DISABLE\n"
    );
    let parsed: serde_json::Value = serde_saphyr::from_str(snippet).expect("the snippet is YAML");
    assert_eq!(parsed["kind"], "DestinationRule");
    // PERMISSIVE for a workload: a warning, and the client half states ISTIO_MUTUAL.
    let f = half(format!(
        "{service}{}",
        pa(
            "shop",
            "PERMISSIVE",
            "selector: {matchLabels: {app: orders}},"
        )
    ));
    assert_eq!(f[0].severity, Severity::Warning);
    assert!(
        f[0].snippet
            .as_deref()
            .is_some_and(|s| s.contains("ISTIO_MUTUAL"))
    );
    // With the DestinationRule written: no half pair (TG114 then speaks about the mode).
    assert!(
        half(format!(
            "{service}---{ORDERS_DR}{}",
            pa("shop", "DISABLE", "selector: {matchLabels: {app: orders}},")
        ))
        .is_empty()
    );
    // Namespace-wide: PERMISSIVE is Istio's default (nothing); DISABLE without a
    // namespace-wide DestinationRule is a warning; with one, nothing.
    assert!(half(format!("{service}{}", pa("shop", "PERMISSIVE", ""))).is_empty());
    let f = half(format!("{service}{}", pa("shop", "DISABLE", "")));
    assert_eq!(f[0].severity, Severity::Warning);
    assert!(
        f[0].snippet
            .as_deref()
            .is_some_and(|s| s.contains("\"*.shop.svc.cluster.local\""))
    );
    let wide = "\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: plain, namespace: shop}\nspec: {host: \"*.shop.svc.cluster.local\", trafficPolicy: {tls: {mode: DISABLE}}}\n";
    assert!(half(format!("{service}{wide}{}", pa("shop", "DISABLE", ""))).is_empty());
    // STRICT is no half pair.
    assert!(
        half(format!(
            "{service}{}",
            pa("shop", "STRICT", "selector: {matchLabels: {app: orders}},")
        ))
        .is_empty()
    );
}

#[test]
fn tg134_finds_the_workload_behind_services_with_other_labels() {
    let pa = |selector: &str| {
        format!(
            "\n---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: pa, namespace: shop}}\nspec: {{selector: {{matchLabels: {selector}}}, mtls: {{mode: DISABLE}}}}\n"
        )
    };
    let service = |name: &str, selector: &str| {
        format!(
            "\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\nspec: {{selector: {selector}, ports: [{{port: 80, name: http}}]}}\n"
        )
    };
    let hosts = |yaml: String| -> Vec<String> {
        check(&yaml)
            .into_iter()
            .filter(|f| f.code == codes::MTLS_HALF_PAIR)
            .filter_map(|f| f.snippet)
            .collect()
    };
    // Neither selector contains the other, yet pods `app=orders, tier=web, version=v2` are
    // behind the Service and under the policy: the half pair is reported for orders.
    let found = hosts(format!(
        "{}{}",
        service("orders", "{app: orders, tier: web}"),
        pa("{app: orders, version: v2}")
    ));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("host: \"orders.shop.svc.cluster.local\""),
        "{found:?}"
    );
    assert!(found[0].contains("mode: DISABLE"), "{found:?}");
    // Conflicting values select no common pod: nothing about that Service.
    assert!(
        hosts(format!(
            "{}{}",
            service("orders", "{app: orders, tier: web}"),
            pa("{app: orders, tier: db}")
        ))
        .is_empty()
    );
    // The workload's Service is not among the manifests (only another one is): the Service
    // named by the app label is the host.
    let found = hosts(format!(
        "{}{}",
        service("cart", "{app: cart}"),
        pa("{app: payments}")
    ));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("host: \"payments.shop.svc.cluster.local\""),
        "{found:?}"
    );
}

#[test]
fn kind_list_documents_are_expanded() {
    let docs = manifests::parse_text(
        Path::new("list.yaml"),
        r#"
apiVersion: v1
kind: List
items:
  - apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: a, namespace: shop}
    spec: {hosts: [orders]}
  - apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: b, namespace: shop}
    spec: {hosts: [orders]}
---
apiVersion: networking.istio.io/v1
kind: VirtualServiceList
items: []
"#,
    )
    .expect("parses");
    let names: Vec<&str> = docs.iter().map(|d| d.name()).collect();
    assert_eq!(names, vec!["a", "b"]);
    assert!(docs.iter().all(|d| d.index == 0));
    let objs: Vec<Object> = docs
        .into_iter()
        .map(|d| Object::new(d.value, None))
        .collect();
    assert_eq!(preflight::check_objects(&objs, "default").len(), 2);
}

#[test]
fn every_check_has_a_summary_and_a_unique_code() {
    let mut seen = std::collections::BTreeSet::new();
    for c in preflight::CHECKS {
        assert!(seen.insert(c.code), "duplicate {}", c.code);
        assert!(!c.summary.is_empty());
        assert_eq!(preflight::check(c.code), Some(c));
    }
}
