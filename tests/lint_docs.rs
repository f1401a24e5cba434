//! The docs say what the code does: `docs/mesh.md` lists every preflight check with its code,
//! istioctl code and severity; every YAML block of `docs/gitops.md` parses, and the blocks
//! marked as `tidegate lint` output equal the snippet lint gives for the reference example.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tidegate::mesh::Target;
use tidegate::mesh::istio::preflight::{self, Object, Severity, codes};
use tidegate::mesh::manifests;
use tidegate::plan;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn mesh_md_lists_every_check() {
    let doc = read("docs/mesh.md");
    for c in preflight::CHECKS {
        let istio = c.istio.unwrap_or("—");
        let severity = match c.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        };
        let prefix = format!("| {} | {istio} | {severity}", c.code);
        assert!(
            doc.lines().any(|l| l.starts_with(&prefix)),
            "docs/mesh.md has no table row starting with {prefix:?}"
        );
    }
    let rows = doc.lines().filter(|l| l.starts_with("| TG1")).count();
    assert_eq!(
        rows,
        preflight::CHECKS.len(),
        "one row per check, no stale rows"
    );
}

/// The YAML blocks of a Markdown text, each with the `<!-- snippet: NAME -->` marker that
/// precedes it, if any.
fn yaml_blocks(doc: &str) -> Vec<(Option<String>, String)> {
    let mut out = Vec::new();
    let mut marker = None;
    let mut block: Option<String> = None;
    for line in doc.lines() {
        if let Some(b) = block.as_mut() {
            if line.trim_start() == "```" {
                out.push((marker.take(), std::mem::take(b)));
                block = None;
            } else {
                b.push_str(line);
                b.push('\n');
            }
        } else if let Some(name) = line
            .strip_prefix("<!-- snippet: ")
            .and_then(|r| r.strip_suffix(" -->"))
        {
            marker = Some(name.to_string());
        } else if line.trim_start() == "```yaml" {
            block = Some(String::new());
        }
    }
    out
}

/// The reference example with `metadata` marks added to its VirtualService, linted: the
/// TG133 snippet.
fn snippet_for(marks: Value) -> String {
    let example = root().join("examples/orders-svc");
    let mut objects: Vec<Object> = manifests::load(&[example.join("manifests")])
        .expect("example manifests")
        .into_iter()
        .map(|d| Object::new(d.value, None))
        .collect();
    for o in &mut objects {
        if o.value["kind"] == "VirtualService" {
            for (k, v) in marks.as_object().expect("marks") {
                o.value["metadata"][k] = v.clone();
            }
        }
    }
    let plan_file = example.join("rollouts/orders-svc.yaml");
    let text = std::fs::read_to_string(&plan_file).expect("example plan");
    let parsed = plan::parse_str("orders-svc.yaml", &text);
    let target = Target::from_plan(parsed.plans.first().expect("a valid plan"));
    let f = preflight::check_target(&objects, &target)
        .into_iter()
        .find(|f| f.code == codes::GITOPS_OWNED)
        .expect("TG133 for the marked VirtualService");
    f.snippet.expect("a snippet")
}

#[test]
fn gitops_md_blocks_parse_and_match_what_lint_prints() {
    let doc = read("docs/gitops.md");
    let blocks = yaml_blocks(&doc);
    assert!(
        blocks.len() >= 6,
        "expected the YAML examples, found {}",
        blocks.len()
    );
    for (marker, text) in &blocks {
        manifests::parse_text(Path::new("docs/gitops.md"), text).unwrap_or_else(|e| {
            panic!("a YAML block of docs/gitops.md ({marker:?}) does not parse: {e}\n{text}")
        });
    }
    let expected = [
        (
            "argocd",
            json!({"annotations": {"argocd.argoproj.io/tracking-id": "shop:networking.istio.io/VirtualService:production/orders-svc"}}),
        ),
        (
            "flux-kustomization",
            json!({"labels": {"kustomize.toolkit.fluxcd.io/name": "apps", "kustomize.toolkit.fluxcd.io/namespace": "flux-system"}}),
        ),
        (
            "flux-helmrelease",
            json!({"labels": {"helm.toolkit.fluxcd.io/name": "orders", "helm.toolkit.fluxcd.io/namespace": "production"}}),
        ),
    ];
    for (name, marks) in expected {
        let shown = blocks
            .iter()
            .find(|(m, _)| m.as_deref() == Some(name))
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| panic!("docs/gitops.md has no block marked {name}"));
        assert_eq!(
            shown,
            snippet_for(marks),
            "docs/gitops.md block {name} differs from lint's snippet"
        );
    }
}

#[test]
fn the_full_argo_cd_application_carries_the_snippet() {
    let doc = read("docs/gitops.md");
    let blocks = yaml_blocks(&doc);
    let app = blocks
        .iter()
        .find(|(_, t)| t.contains("kind: Application"))
        .expect("the Application example");
    let app: Value = serde_saphyr::from_str(&app.1).expect("parses");
    let snippet = blocks
        .iter()
        .find(|(m, _)| m.as_deref() == Some("argocd"))
        .expect("the argocd snippet");
    let snippet: Value = serde_saphyr::from_str(&snippet.1).expect("parses");
    assert_eq!(
        app["spec"]["ignoreDifferences"],
        snippet["spec"]["ignoreDifferences"]
    );
    assert_eq!(
        app["spec"]["syncPolicy"]["syncOptions"],
        snippet["spec"]["syncPolicy"]["syncOptions"]
    );
}
