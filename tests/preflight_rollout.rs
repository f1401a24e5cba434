//! Preflight for one rollout: routing findings that keep traffic from its canary block it,
//! one owner per route, routes outside the plan that reach the canary, and VirtualServices
//! applied by a GitOps tool.

use std::path::Path;

use serde_json::{Value, json};
use tidegate::mesh::Target;
use tidegate::mesh::istio::preflight::{
    self, GitOpsOwner, Object, Severity, UnmanagedRoute, codes,
};
use tidegate::mesh::manifests;
use tidegate::plan::RolloutId;

fn objects(yaml: &str) -> Vec<Object> {
    manifests::parse_text(Path::new("test.yaml"), yaml)
        .expect("test YAML parses")
        .into_iter()
        .map(|d| Object::new(d.value, None))
        .collect()
}

fn target(name: &str, routes: &[&str], stable: &str, canary: &str) -> Target {
    Target {
        rollout: RolloutId {
            namespace: "shop".into(),
            name: name.into(),
        },
        service: "orders".into(),
        virtual_service: "orders".into(),
        destination_rule: Some("orders".into()),
        routes: routes.iter().map(|r| r.to_string()).collect(),
        stable: stable.into(),
        canary: canary.into(),
        split: tidegate::plan::Split::Subset,
    }
}

const DR: &str = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: orders, namespace: shop}
spec:
  host: orders
  subsets:
    - {name: v1, labels: {version: v1}}
    - {name: v2, labels: {version: v2}}
"#;

fn vs(extra: &str, http: &str) -> String {
    format!(
        r#"
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: orders
  namespace: shop
{extra}
spec:
  hosts: [orders.example.com]
  gateways: [istio-system/public]
  http:
{http}
"#
    )
}

const PRIMARY: &str = r#"
    - name: primary
      route:
        - {destination: {host: orders, subset: v1}, weight: 100}
"#;

const GATEWAY: &str = r#"
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: public, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*/HOST"]}]
"#;

#[test]
fn a_host_the_gateway_does_not_admit_blocks_the_rollout() {
    let t = target("orders", &[], "v1", "v2");
    let ok = objects(&format!(
        "{DR}{}{}",
        vs("", PRIMARY),
        GATEWAY.replace("HOST", "orders.example.com")
    ));
    assert_eq!(preflight::check_rollout(&ok, &t), vec![]);
    let off = objects(&format!(
        "{DR}{}{}",
        vs("", PRIMARY),
        GATEWAY.replace("HOST", "shop.example.com")
    ));
    // istioctl only warns (IST0132); for this rollout it means no ingress request reaches the
    // managed route, so preflight holds it.
    assert_eq!(
        preflight::check_objects(&off, "shop")[0].severity,
        Severity::Warning
    );
    let f = preflight::check_rollout(&off, &t);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(
        (f[0].code, f[0].istio, f[0].severity),
        (codes::HOST_NOT_IN_GATEWAY, Some("IST0132"), Severity::Error)
    );
    assert!(
        preflight::blocking(&f)[0].starts_with("error TG122/IST0132 VirtualService shop/orders")
    );
}

#[test]
fn a_missing_mirror_subset_blocks_the_rollout() {
    let http = r#"
    - name: primary
      route:
        - {destination: {host: orders, subset: v1}, weight: 100}
      mirror: {host: orders, subset: v3}
"#;
    let o = objects(&format!(
        "{DR}{}{}",
        vs("", http),
        GATEWAY.replace("HOST", "*")
    ));
    let f = preflight::check_rollout(&o, &target("orders", &[], "v1", "v2"));
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(
        (f[0].code, f[0].severity),
        (codes::UNKNOWN_SUBSET, Severity::Error)
    );
    assert_eq!(f[0].field, "spec.http[0].mirror.subset");
}

const MESH_SPLIT: &str = r#"
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: orders, namespace: shop}
spec:
  hosts: [orders]
  http:
    - name: primary
      route:
        - {destination: {host: orders, subset: v1}, weight: 100}
"#;

fn edge(dest: &str) -> String {
    format!(
        r#"
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: edge, namespace: shop}}
spec:
  hosts: [shop.example.com]
  gateways: [istio-system/public]
  http: [{{route: [{{destination: {{host: {dest}}}}}]}}]
"#
    )
}

#[test]
fn an_ingress_route_that_bypasses_the_split_blocks_the_rollout() {
    let t = target("orders", &[], "v1", "v2");
    let o = objects(&format!("{DR}{MESH_SPLIT}{}", edge("orders")));
    let f = preflight::check_rollout(&o, &t);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(
        (f[0].code, f[0].istio, f[0].severity),
        (codes::INGRESS_BYPASS, Some("IST0140"), Severity::Error)
    );
    assert_eq!(f[0].object.name, "edge");
    assert_eq!(f[0].related[0].name, "orders");
    assert!(
        f[0].message.contains("canary split never sees them"),
        "{}",
        f[0]
    );
    // Ingress to another service: not this rollout's business.
    let o = objects(&format!("{DR}{MESH_SPLIT}{}", edge("search")));
    assert_eq!(preflight::check_rollout(&o, &t), vec![]);
}

#[test]
fn the_half_written_mtls_pair_of_the_rollouts_service_is_reported() {
    let o = objects(&format!(
        "{MESH_SPLIT}\n---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: orders, namespace: shop}}\nspec: {{selector: {{matchLabels: {{app: orders}}}}, mtls: {{mode: DISABLE}}}}\n"
    ));
    let f = preflight::check_rollout(&o, &target("orders", &[], "v1", "v2"));
    let codes_found: Vec<&str> = f.iter().map(|f| f.code).collect();
    assert_eq!(
        codes_found,
        vec![codes::PLAN_OBJECT_MISSING, codes::MTLS_HALF_PAIR]
    );
    assert!(
        f[1].snippet
            .as_deref()
            .is_some_and(|s| s.contains("mode: DISABLE"))
    );
    // The rollout's Service selects the workload with other labels than the policy (neither
    // set contains the other): still its workload, still reported; PERMISSIVE asks for
    // ISTIO_MUTUAL.
    let o = objects(&format!(
        "{MESH_SPLIT}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: orders, namespace: shop}}\nspec: {{selector: {{app: orders, tier: api}}, ports: [{{port: 80, name: http}}]}}\n---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: orders-v2, namespace: shop}}\nspec: {{selector: {{matchLabels: {{app: orders, version: v2}}}}, mtls: {{mode: PERMISSIVE}}}}\n"
    ));
    let f = preflight::check_rollout(&o, &target("orders", &[], "v1", "v2"));
    let half = f
        .iter()
        .find(|f| f.code == codes::MTLS_HALF_PAIR)
        .unwrap_or_else(|| panic!("no half pair in {f:#?}"));
    assert_eq!(half.object.name, "orders-v2");
    assert!(
        half.snippet
            .as_deref()
            .is_some_and(|s| s.contains("mode: ISTIO_MUTUAL")),
        "{half}"
    );
}

const TWO_ROUTES: &str = r#"
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: orders, namespace: shop}
spec:
  hosts: [orders]
  http:
    - name: api
      match: [{uri: {prefix: /api}}]
      route: [{destination: {host: orders, subset: v1}}]
    - name: web
      route: [{destination: {host: orders, subset: v1}}]
"#;

#[test]
fn one_owner_per_route() {
    let o = objects(&format!("{DR}{TWO_ROUTES}"));
    let owners = |ts: &[Target], o: &[Object]| -> Vec<(String, String)> {
        preflight::route_owners(ts, o)
            .into_iter()
            .map(|f| (f.object.name.clone(), f.related[0].name.clone()))
            .collect()
    };
    // Disjoint named routes: fine.
    assert!(
        owners(
            &[
                target("a", &["api"], "v1", "v2"),
                target("b", &["web"], "v1", "v3")
            ],
            &o
        )
        .is_empty()
    );
    // The same named route: the later plan is refused.
    let f = preflight::route_owners(
        &[
            target("a", &["api"], "v1", "v2"),
            target("b", &["api", "web"], "v1", "v3"),
        ],
        &o,
    );
    assert_eq!(f.len(), 1);
    assert_eq!(
        (f[0].code, f[0].severity),
        (codes::ROUTE_OWNER_CONFLICT, Severity::Error)
    );
    assert_eq!(f[0].object.kind, "Rollout");
    assert!(f[0].message.contains("\"api\""), "{}", f[0]);
    // A plan without routes manages the routes to its stable: both of them here.
    assert_eq!(
        owners(
            &[
                target("a", &["web"], "v1", "v2"),
                target("b", &[], "v1", "v3")
            ],
            &o
        ),
        vec![("b".into(), "a".into())]
    );
    // ... unless its stable is another subset.
    assert!(
        owners(
            &[
                target("a", &["web"], "v1", "v2"),
                target("b", &[], "v2", "v3")
            ],
            &o
        )
        .is_empty()
    );
    // Plans alone: the same named route, or both defaults on the same stable.
    assert_eq!(
        owners(
            &[
                target("a", &["api"], "v1", "v2"),
                target("b", &["api"], "v1", "v3")
            ],
            &[]
        )
        .len(),
        1
    );
    assert_eq!(
        owners(
            &[target("a", &[], "v1", "v2"), target("b", &[], "v1", "v3")],
            &[]
        )
        .len(),
        1
    );
    assert!(
        owners(
            &[
                target("a", &[], "v1", "v2"),
                target("b", &["api"], "v1", "v3")
            ],
            &[]
        )
        .is_empty()
    );
    // Another VirtualService: no conflict.
    let mut other = target("b", &["api"], "v1", "v3");
    other.virtual_service = "checkout".into();
    assert!(owners(&[target("a", &["api"], "v1", "v2"), other], &[]).is_empty());
}

#[test]
fn unmanaged_routes_that_reach_the_canary() {
    let vs: Value = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "orders", "namespace": "shop"},
        "spec": {"hosts": ["orders"], "http": [
            {"name": "tidegate-orders-header", "match": [{"headers": {"x": {"exact": "1"}}}],
             "route": [{"destination": {"host": "orders", "subset": "v2"}}]},
            {"name": "qa", "match": [{"headers": {"x-qa": {"exact": "1"}}}],
             "route": [{"destination": {"host": "orders.shop.svc.cluster.local", "subset": "v2"}}]},
            {"match": [{"uri": {"prefix": "/shadow"}}],
             "route": [{"destination": {"host": "orders", "subset": "v1"}}],
             "mirror": {"host": "orders", "subset": "v2"}},
            {"name": "primary", "route": [
                {"destination": {"host": "orders", "subset": "v1"}, "weight": 90},
                {"destination": {"host": "orders", "subset": "v2"}, "weight": 10}]}
        ]}
    });
    // Without routes the plan manages every route to v1 (also the mirroring one).
    let t = target("orders", &[], "v1", "v2");
    assert_eq!(
        preflight::unmanaged_canary_routes(&vs, &t),
        vec![UnmanagedRoute {
            index: 1,
            name: Some("qa".into()),
            mirror: false
        }]
    );
    let t = target("orders", &["primary"], "v1", "v2");
    assert_eq!(
        preflight::unmanaged_canary_routes(&vs, &t),
        vec![
            UnmanagedRoute {
                index: 1,
                name: Some("qa".into()),
                mirror: false
            },
            UnmanagedRoute {
                index: 2,
                name: None,
                mirror: true
            },
        ]
    );
    let o = vec![Object::new(vs, None)];
    let f: Vec<_> = preflight::check_target(&o, &t)
        .into_iter()
        .filter(|f| f.code == codes::UNMANAGED_ROUTE_TO_CANARY)
        .collect();
    assert_eq!(f.len(), 2);
    assert_eq!(f[0].severity, Severity::Warning);
    assert!(f[0].message.contains("after a rollback"), "{}", f[0]);
}

#[test]
fn gitops_owners_are_recognised() {
    let meta = |labels: Value, annotations: Value| json!({"metadata": {"labels": labels, "annotations": annotations}});
    let owner = |v: Value| preflight::gitops_owner(&v);
    assert_eq!(
        owner(meta(
            json!({}),
            json!({"argocd.argoproj.io/tracking-id": "shop-app:networking.istio.io/VirtualService:shop/orders"})
        )),
        Some(GitOpsOwner::ArgoCd {
            application: "shop-app".into(),
            how: "tracking annotation argocd.argoproj.io/tracking-id"
        })
    );
    assert!(matches!(
        owner(meta(
            json!({"app.kubernetes.io/instance": "shop-app"}),
            json!({})
        )),
        Some(GitOpsOwner::ArgoCd { .. })
    ));
    // The same label set by a Helm chart is Helm's, not Argo CD's.
    assert_eq!(
        owner(meta(
            json!({"app.kubernetes.io/instance": "shop", "app.kubernetes.io/managed-by": "Helm"}),
            json!({})
        )),
        None
    );
    assert_eq!(
        owner(meta(
            json!({"kustomize.toolkit.fluxcd.io/name": "apps", "kustomize.toolkit.fluxcd.io/namespace": "flux-system"}),
            json!({})
        )),
        Some(GitOpsOwner::FluxKustomization {
            name: "apps".into(),
            namespace: "flux-system".into()
        })
    );
    assert!(matches!(
        owner(meta(
            json!({"helm.toolkit.fluxcd.io/name": "shop", "helm.toolkit.fluxcd.io/namespace": "apps"}),
            json!({"meta.helm.sh/release-name": "shop"})
        )),
        Some(GitOpsOwner::FluxHelmRelease { .. })
    ));
    assert!(matches!(
        owner(meta(
            json!({}),
            json!({"meta.helm.sh/release-name": "shop"})
        )),
        Some(GitOpsOwner::Helm { .. })
    ));
    assert_eq!(owner(meta(json!({"app": "orders"}), json!({}))), None);
}

#[test]
fn a_gitops_owned_virtual_service_gets_the_ignore_configuration() {
    let tracked = "  annotations: {argocd.argoproj.io/tracking-id: \"shop:networking.istio.io/VirtualService:shop/orders\"}";
    let o = objects(&format!("{DR}{}", vs(tracked, PRIMARY)));
    let f: Vec<_> = preflight::check_target(&o, &target("orders", &[], "v1", "v2"))
        .into_iter()
        .filter(|f| f.code == codes::GITOPS_OWNED)
        .collect();
    assert_eq!(f.len(), 1);
    let snippet = f[0].snippet.as_deref().expect("snippet");
    let parsed: Value = serde_saphyr::from_str(snippet).expect("the snippet is YAML");
    let rule = &parsed["spec"]["ignoreDifferences"][0];
    assert_eq!(rule["kind"], "VirtualService");
    let jq: Vec<&str> = rule["jqPathExpressions"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    // The managed route is named: selected by name.
    assert!(
        jq.contains(&".spec.http[] | select(.name == \"primary\") | .route"),
        "{jq:?}"
    );
    assert!(
        jq.contains(&".spec.http[] | select(.name == \"tidegate-orders-header\")"),
        "{jq:?}"
    );
    assert!(
        jq.contains(&".metadata.annotations[\"tidegate.dev/original-routes\"]"),
        "{jq:?}"
    );
    assert_eq!(
        parsed["spec"]["syncPolicy"]["syncOptions"][0],
        "ApplyOutOfSyncOnly=true"
    );
    // Plain Helm: the warning, and no configuration to paste.
    let helm = "  annotations: {meta.helm.sh/release-name: shop}";
    let o = objects(&format!("{DR}{}", vs(helm, PRIMARY)));
    let f: Vec<_> = preflight::check_target(&o, &target("orders", &[], "v1", "v2"))
        .into_iter()
        .filter(|f| f.code == codes::GITOPS_OWNED)
        .collect();
    assert!(
        f[0].snippet.is_none() && f[0].hint.contains("Helm has no setting"),
        "{}",
        f[0]
    );
}

#[test]
fn a_host_conflict_is_reported_once_for_the_rollout() {
    let copy = MESH_SPLIT.replace(
        "name: orders, namespace: shop",
        "name: orders-copy, namespace: shop",
    );
    let o = objects(&format!("{DR}{MESH_SPLIT}{copy}"));
    let f = preflight::check_rollout(&o, &target("orders", &[], "v1", "v2"));
    let conflicts: Vec<_> = f
        .iter()
        .filter(|f| f.code == codes::DUPLICATE_HOST)
        .collect();
    assert_eq!(conflicts.len(), 1, "{f:#?}");
    assert_eq!(conflicts[0].object.name, "orders");
    assert_eq!(conflicts[0].related[0].name, "orders-copy");
    assert_eq!(conflicts[0].severity, Severity::Error);
}

/// What `check_rollout` was before it ran on a namespace at a time: the target's own checks,
/// then the object-wide findings about its own VirtualService and DestinationRule.
fn one_at_a_time(objects: &[Object], t: &Target) -> Vec<preflight::Finding> {
    let ns = t.rollout.namespace.as_str();
    let mut out = preflight::check_target(objects, t);
    for f in preflight::check_objects(objects, ns) {
        let own = f.object.is("VirtualService", ns, &t.virtual_service)
            || f.object.is(
                "DestinationRule",
                ns,
                t.destination_rule.as_deref().unwrap_or_default(),
            );
        if !own || f.code == codes::INGRESS_BYPASS {
            continue;
        }
        let severity = if f.code == codes::HOST_NOT_IN_GATEWAY {
            Severity::Error
        } else {
            f.severity
        };
        out.push(preflight::Finding { severity, ..f });
    }
    out
}

#[test]
fn a_namespace_at_a_time_finds_what_one_rollout_at_a_time_finds() {
    // orders: host not admitted by the Gateway; cart and carts claim the same mesh host, and
    // cart's workload turns mTLS off with no DestinationRule saying so; payments lacks its
    // canary subset and the edge route bypasses its split; search has no objects at all.
    let cart = |name: &str| {
        format!(
            "\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  hosts: [cart]\n  http: [{{name: primary, route: [{{destination: {{host: cart, subset: v1}}}}]}}]\n"
        )
    };
    let payments = format!(
        "\n---{}",
        DR.replace("orders", "payments")
            .replace("name: v2", "name: v3")
    );
    let o = objects(&format!(
        "{DR}{}{}{}{}{payments}{}\n---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: cart, namespace: shop}}\nspec: {{selector: {{matchLabels: {{app: cart}}}}, mtls: {{mode: DISABLE}}}}\n{}",
        vs("", PRIMARY),
        edge("payments"),
        cart("cart"),
        cart("carts"),
        MESH_SPLIT.replace("orders", "payments"),
        GATEWAY.replace("HOST", "shop.example.com"),
    ));
    let mut targets = Vec::new();
    for name in ["orders", "cart", "carts", "payments", "search"] {
        let mut t = target(name, &[], "v1", "v2");
        t.service = name.into();
        t.virtual_service = name.into();
        t.destination_rule = Some(if name == "carts" { "cart" } else { name }.into());
        targets.push(t);
    }
    // A rollout of another namespace checked against the same objects.
    let mut elsewhere = target("orders", &[], "v1", "v2");
    elsewhere.rollout.namespace = "other".into();
    targets.push(elsewhere);
    let together = preflight::check_rollouts(&o, &targets);
    assert_eq!(together.len(), targets.len());
    let mut seen = std::collections::BTreeSet::new();
    for (t, found) in targets.iter().zip(&together) {
        assert_eq!(found, &one_at_a_time(&o, t), "{}", t.rollout);
        assert_eq!(found, &preflight::check_rollout(&o, t), "{}", t.rollout);
        seen.extend(found.iter().map(|f| f.code));
    }
    // The fixture exercises the object-wide findings the batch computes once.
    for code in [
        codes::INGRESS_BYPASS,
        codes::MTLS_HALF_PAIR,
        codes::HOST_NOT_IN_GATEWAY,
        codes::DUPLICATE_HOST,
        codes::PLAN_SUBSET_MISSING,
        codes::PLAN_OBJECT_MISSING,
    ] {
        assert!(seen.contains(code), "no {code} in {seen:?}");
    }
}
