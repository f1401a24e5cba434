//! `tidegate lint` and `tidegate validate` through the built binary: istioctl codes beside
//! tidegate's, the kinds lint did not see, snippets, and one owner per route.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tidegate"))
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write");
}

const MANIFESTS: &str = r#"
apiVersion: v1
kind: List
items:
  - apiVersion: networking.istio.io/v1
    kind: VirtualService
    metadata: {name: orders, namespace: shop}
    spec:
      hosts: [orders]
      http:
        - name: api
          match: [{uri: {prefix: /api}}]
          route: [{destination: {host: orders, subset: v1}}]
        - name: api-v2
          match: [{uri: {prefix: /api/v2}}]
          route: [{destination: {host: orders, subset: v1}}]
        - name: rest
          route: [{destination: {host: orders, subset: v1}}]
  - apiVersion: networking.istio.io/v1
    kind: DestinationRule
    metadata: {name: orders, namespace: shop}
    spec:
      host: orders
      subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
"#;

fn plan(name: &str, routes: &str) -> String {
    format!(
        r#"
apiVersion: tidegate.dev/v1alpha1
kind: Rollout
metadata: {{name: {name}, namespace: shop}}
spec:
  service: orders
  virtualService: orders
  destinationRule: orders
  {routes}
  stable: v1
  canary: v2
  steps: [{{setWeight: 50}}]
  analysis:
    interval: 30s
    metrics: [{{name: success-rate, template: istio-success-rate, min: 99}}]
"#
    )
}

#[test]
fn lint_shows_istioctl_codes_and_the_kinds_it_did_not_see() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "istio.yaml", MANIFESTS);
    let out = bin()
        .args(["lint", "-o", "json"])
        .arg(dir.path())
        .output()
        .expect("runs");
    // Warnings and infos only: exit 0.
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["objects"], 2, "the List was expanded");
    let f: Vec<&Value> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .collect();
    let ineffective = f.iter().find(|f| f["code"] == "TG117").expect("TG117");
    assert_eq!(ineffective["istio"], "IST0131");
    assert_eq!(ineffective["severity"], "info");
    assert_eq!(ineffective["field"], "spec.http[1].match[0]");
    let own = f.iter().find(|f| f["code"] == "TG107").expect("TG107");
    assert!(
        own.get("istio").is_none(),
        "tidegate's own finding carries no IST code: {own}"
    );
    let not_seen: Vec<&str> = report["notSeen"]
        .as_array()
        .expect("notSeen")
        .iter()
        .filter_map(|m| m["kind"].as_str())
        .collect();
    assert_eq!(not_seen, vec!["Service", "ServiceEntry", "Gateway"]);

    let out = bin().arg("lint").arg(dir.path()).output().expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("info TG117/IST0131 VirtualService shop/orders"),
        "{text}"
    );
    assert!(text.contains("note: no Service given"), "{text}");
}

#[test]
fn two_plans_on_one_route_are_refused_by_lint_and_validate() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "istio.yaml", MANIFESTS);
    write(dir.path(), "a.yaml", &plan("orders-api", "routes: [api]"));
    write(
        dir.path(),
        "b.yaml",
        &plan("orders-all", "routes: [api, rest]"),
    );
    let out = bin()
        .args(["lint", "-o", "json"])
        .arg(dir.path())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    let owner = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["code"] == "TG131")
        .expect("TG131");
    assert_eq!(owner["object"]["kind"], "Rollout");
    // The later plan (b.yaml, read after a.yaml) is the one refused.
    assert_eq!(owner["object"]["name"], "orders-all");
    assert!(
        owner["object"]["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("b.yaml")),
        "{owner}"
    );
    assert_eq!(owner["related"][0]["name"], "orders-api");

    // validate, plans only: the same named route.
    let plans = tempfile::tempdir().expect("tempdir");
    write(plans.path(), "a.yaml", &plan("orders-api", "routes: [api]"));
    write(
        plans.path(),
        "b.yaml",
        &plan("orders-all", "routes: [api, rest]"),
    );
    let out = bin()
        .arg("validate")
        .arg(plans.path())
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("TG131: rollout shop/orders-all would manage \"api\""),
        "{text}"
    );
    // Disjoint routes: valid.
    write(
        plans.path(),
        "a.yaml",
        &plan("orders-api", "routes: [api-v2]"),
    );
    let out = bin()
        .arg("validate")
        .arg(plans.path())
        .output()
        .expect("runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_snippet_is_printed_under_its_finding() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "istio.yaml",
        &MANIFESTS.replace(
            "metadata: {name: orders, namespace: shop}\n    spec:\n      hosts",
            "metadata:\n      name: orders\n      namespace: shop\n      labels: {kustomize.toolkit.fluxcd.io/name: apps}\n    spec:\n      hosts",
        ),
    );
    write(dir.path(), "a.yaml", &plan("orders", "routes: [rest]"));
    let out = bin().arg("lint").arg(dir.path()).output().expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let at = text
        .find("warning TG133")
        .unwrap_or_else(|| panic!("no TG133 in {text}"));
    let below = &text[at..];
    assert!(below.contains("\n    spec:\n      ignore:\n"), "{below}");
}

#[test]
fn lint_spells_out_the_missing_half_of_an_mtls_pair() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A workload PeerAuthentication in DISABLE for payments, whose Service selects it with
    // other labels, and no DestinationRule for payments at all.
    write(
        dir.path(),
        "mtls.yaml",
        r#"
apiVersion: v1
kind: Service
metadata: {name: payments, namespace: shop}
spec: {selector: {app: payments, tier: api}, ports: [{port: 80, name: http}]}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: payments-plaintext, namespace: shop}
spec:
  selector: {matchLabels: {app: payments, version: v2}}
  mtls: {mode: DISABLE}
"#,
    );
    let out = bin()
        .args(["lint", "-o", "json"])
        .arg(dir.path())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1), "an error finding exits 1");
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    let half = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["code"] == "TG134")
        .unwrap_or_else(|| panic!("no TG134 in {report}"));
    assert_eq!(half["severity"], "error");
    let snippet = half["snippet"].as_str().expect("snippet");
    let rule: Value = serde_saphyr::from_str(snippet).expect("the snippet is YAML");
    assert_eq!(rule["kind"], "DestinationRule");
    assert_eq!(rule["spec"]["host"], "payments.shop.svc.cluster.local");
    assert_eq!(rule["spec"]["trafficPolicy"]["tls"]["mode"], "DISABLE");
}
