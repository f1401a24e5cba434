//! `tidegate lint` and `tidegate preview` through the built binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tidegate"))
}

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/orders-svc")
}

const PLAN: &str = r#"
apiVersion: tidegate.dev/v1alpha1
kind: Rollout
metadata: {name: orders, namespace: shop}
spec:
  service: orders
  stable: v1
  canary: v3
  steps:
    - setWeight: 20
    - setHeaderRoute: {headers: {x-canary: {exact: "yes"}}}
    - setMirror: 50
    - setWeight: 60
  analysis:
    interval: 30s
    metrics:
      - {name: success-rate, template: istio-success-rate, min: 99}
"#;

const MANIFESTS: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: orders, namespace: shop}
spec:
  hosts: [orders]
  http:
    - name: api
      match: [{uri: {prefix: /api}}]
      route: [{destination: {host: orders, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: orders, namespace: shop}
spec:
  host: orders
  subsets:
    - {name: v1, labels: {version: v1}}
    - {name: v2, labels: {version: v2}}
"#;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

#[test]
fn lint_reports_a_missing_canary_subset_and_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "plan.yaml", PLAN);
    write(dir.path(), "istio.yaml", MANIFESTS);
    let out = bin()
        .args(["lint", "-o", "json"])
        .arg(dir.path())
        .output()
        .expect("runs");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["errors"], 1);
    assert_eq!(report["plans"], serde_json::json!(["shop/orders"]));
    let f = &report["findings"][0];
    assert_eq!(f["code"], "TG104");
    assert_eq!(f["severity"], "error");
    assert_eq!(f["object"]["kind"], "DestinationRule");
    assert_eq!(f["field"], "spec.subsets");
    assert!(f["hint"].as_str().is_some_and(|h| h.contains("v3")));

    let text = bin().arg("lint").arg(dir.path()).output().expect("runs");
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.contains("error TG104 DestinationRule shop/orders"),
        "{stdout}"
    );
    assert!(stdout.contains("1 error, 0 warnings"), "{stdout}");
}

#[test]
fn lint_passes_the_example_and_reports_invalid_plans() {
    let out = bin().arg("lint").arg(examples()).output().expect("runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "plan.yaml",
        &PLAN.replace("setWeight: 60", "setWeight: 160"),
    );
    write(dir.path(), "istio.yaml", MANIFESTS);
    let out = bin()
        .args(["lint", "-o", "json"])
        .arg(dir.path())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    let plan_findings = report["planFindings"].as_array().expect("array");
    assert!(!plan_findings.is_empty());
    assert!(
        plan_findings[0]["field"]
            .as_str()
            .is_some_and(|f| f.contains("steps")),
        "{plan_findings:?}"
    );
}

#[test]
fn preview_prints_each_step_patch_and_resulting_routes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = write(
        dir.path(),
        "plan.yaml",
        &PLAN.replace("canary: v3", "canary: v2"),
    );
    let manifests = write(dir.path(), "istio.yaml", MANIFESTS);
    let out = bin()
        .arg("preview")
        .arg(&plan)
        .arg("--manifests")
        .arg(&manifests)
        .args(["-o", "json"])
        .output()
        .expect("runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let previews: Value = serde_json::from_slice(&out.stdout).expect("json");
    let p = &previews[0];
    assert_eq!(p["rollout"], "shop/orders");
    let steps = p["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 5, "4 steps and the promotion");
    for s in &steps[..4] {
        assert_eq!(s["patch"][0]["op"], "test", "every write is guarded: {s}");
    }
    // After setWeight 20: the api route splits 80/20 and keeps its match.
    let r = &steps[0]["routes"][0];
    assert_eq!(r["match"][0]["uri"]["prefix"], "/api");
    assert_eq!(r["route"][0]["weight"], 80);
    assert_eq!(r["route"][1]["weight"], 20);
    assert_eq!(r["route"][1]["destination"]["subset"], "v2");
    // The header route goes first and keeps the managed route's path match.
    let h = &steps[1]["routes"][0];
    assert_eq!(h["name"], "tidegate-orders-header");
    assert_eq!(h["match"][0]["uri"]["prefix"], "/api");
    assert_eq!(h["match"][0]["headers"]["x-canary"]["exact"], "yes");
    assert_eq!(steps[2]["routes"][1]["mirrorPercentage"]["value"], 50.0);
    assert_eq!(
        steps[3]["state"],
        "stable 40% / canary 60%, header route (x-canary == \"yes\"), mirror 50%"
    );
    // Promotion: everything on v2 alone (the stable destination goes, so the next release
    // starts from a plain route), header route and mirror gone.
    let last = steps[4]["routes"].as_array().expect("routes");
    assert_eq!(last.len(), 1);
    assert_eq!(last[0]["route"].as_array().map(Vec::len), Some(1));
    assert_eq!(last[0]["route"][0]["destination"]["subset"], "v2");
    assert_eq!(last[0]["route"][0]["weight"], 100);
    assert!(last[0].get("mirror").is_none());
    // Rollback restores the original single-destination route exactly.
    assert_eq!(
        p["rollback"]["routes"][0]["route"],
        serde_json::json!([{"destination": {"host": "orders", "subset": "v1"}}])
    );

    let yaml = bin()
        .arg("preview")
        .arg(&plan)
        .arg("--manifests")
        .arg(&manifests)
        .output()
        .expect("runs");
    assert_eq!(yaml.status.code(), Some(0));
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&String::from_utf8_lossy(&yaml.stdout)).expect("yaml");
    assert_eq!(docs[0]["steps"].as_array().map(Vec::len), Some(5));
}

/// The `resume` entry of `preview` for PLAN (canary v2) with `args`.
fn preview_resume(args: &[&str]) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = write(
        dir.path(),
        "plan.yaml",
        &PLAN.replace("canary: v3", "canary: v2"),
    );
    let manifests = write(dir.path(), "istio.yaml", MANIFESTS);
    let previews = preview_json(&plan, &manifests, args);
    previews[0]["resume"].clone()
}

#[test]
fn preview_shows_where_an_edit_resumes_a_running_rollout() {
    // The manifests' route sends nothing to the canary: an edit starts at the first step.
    let r = preview_resume(&[]);
    assert_eq!(r["fromCanaryWeight"], 0, "{r}");
    assert_eq!(r["step"], 1, "{r}");
    assert_eq!(r["action"], "setWeight 20%", "{r}");
    // At 20 % the next raise is step 4 (60 %): the route holds what the plan sets before it
    // (20 %, the header route and the mirror), and the weight is not raised before step 4.
    let r = preview_resume(&["--canary-weight", "20"]);
    assert_eq!(r["step"], 4, "{r}");
    assert_eq!(r["action"], "setWeight 60%", "{r}");
    assert_eq!(
        r["state"], "stable 80% / canary 20%, header route (x-canary == \"yes\"), mirror 50%",
        "{r}"
    );
    // Above every step: nothing is raised, the route is the plan's last one, and it finishes.
    let r = preview_resume(&["--canary-weight", "70"]);
    assert_eq!(r["step"], 5, "{r}");
    assert_eq!(r["action"], "no step left: promote", "{r}");
    assert!(r["note"].as_str().is_some_and(|n| n.contains("70%")), "{r}");
}

#[test]
fn preview_refuses_a_missing_virtual_service_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = write(dir.path(), "plan.yaml", PLAN);
    let manifests = write(
        dir.path(),
        "istio.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
    );
    let out = bin()
        .arg("preview")
        .arg(&plan)
        .arg("--manifests")
        .arg(&manifests)
        .output()
        .expect("runs");
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("VirtualService shop/orders not found"),
        "{err}"
    );
}

/// `tidegate preview PLAN --manifests MANIFESTS -o json ARGS`, which must succeed.
fn preview_json(plan: &Path, manifests: &Path, args: &[&str]) -> Value {
    let out = bin()
        .arg("preview")
        .arg(plan)
        .arg("--manifests")
        .arg(manifests)
        .args(["-o", "json"])
        .args(args)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

/// Host-level: the lab's manifests (a route to orders-svc-primary alone) with a plan whose
/// canary is orders-svc-primary (the second release of the swap) — the daemon takes it as
/// released, and preview says so above the steps.
#[test]
fn preview_says_when_the_canary_already_has_every_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifests = write(
        dir.path(),
        "hosts.yaml",
        include_str!("../src/lab/hosts.yaml"),
    );
    let first_text = tidegate::lab::run::lab_plan(false, tidegate::plan::Split::Host);
    let swapped = first_text
        .replace(
            "stable: {host: orders-svc-primary}",
            "stable: {host: orders-svc-X}",
        )
        .replace(
            "canary: {host: orders-svc-canary}",
            "canary: {host: orders-svc-primary}",
        )
        .replace("orders-svc-X", "orders-svc-canary");
    let previews = preview_json(&write(dir.path(), "plan.yaml", &swapped), &manifests, &[]);
    let note = previews[0]["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("already sends every request") && note.contains("host `orders-svc-primary`"),
        "{}",
        previews[0]
    );
    // The original plan (canary without traffic) has no such note.
    let previews = preview_json(
        &write(dir.path(), "first.yaml", &first_text),
        &manifests,
        &[],
    );
    assert_eq!(previews[0].get("note"), None, "{}", previews[0]);
    assert_eq!(
        previews[0]["findings"],
        serde_json::json!([]),
        "{}",
        previews[0]
    );
}
