//! VirtualServices applied by a GitOps tool: a self-healing sync reverts tidegate's weights
//! (the fight argoproj/argo-rollouts#2463 describes), so the plan's VirtualService is checked
//! for the marks Argo CD, Flux and Helm leave and the finding carries the configuration that
//! makes the tool leave tidegate's fields alone (`docs/gitops.md` explains each).

use serde_json::Value;

use crate::mesh::Target;
use crate::mesh::istio::routes::{self, ORIGINALS_ANNOTATION};

/// The tool that applies an object, read from its labels and annotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitOpsOwner {
    /// Argo CD; `how` names the mark found (the tracking annotation or the instance label).
    ArgoCd {
        application: String,
        how: &'static str,
    },
    /// Flux kustomize-controller (`kustomize.toolkit.fluxcd.io/name` label).
    FluxKustomization { name: String, namespace: String },
    /// Flux helm-controller (`helm.toolkit.fluxcd.io/name` label).
    FluxHelmRelease { name: String, namespace: String },
    /// Helm itself (`meta.helm.sh/release-name` annotation), without Flux.
    Helm { release: String, namespace: String },
}

impl std::fmt::Display for GitOpsOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GitOpsOwner::ArgoCd { application, how } => {
                write!(f, "Argo CD Application {application} ({how})")
            }
            GitOpsOwner::FluxKustomization { name, namespace } => {
                write!(f, "Flux Kustomization {namespace}/{name}")
            }
            GitOpsOwner::FluxHelmRelease { name, namespace } => {
                write!(f, "Flux HelmRelease {namespace}/{name}")
            }
            GitOpsOwner::Helm { release, namespace } => {
                write!(f, "Helm release {namespace}/{release}")
            }
        }
    }
}

impl GitOpsOwner {
    /// What the tool does to tidegate's writes.
    pub fn effect(&self) -> &'static str {
        match self {
            GitOpsOwner::ArgoCd { .. } => {
                "a sync (automated self-heal, or any sync that applies this VirtualService) puts back the routes from Git"
            }
            GitOpsOwner::FluxKustomization { .. } => {
                "every reconciliation re-applies the manifest from Git and corrects tidegate's changes as drift"
            }
            GitOpsOwner::FluxHelmRelease { .. } => {
                "drift correction (driftDetection.mode: enabled) and every upgrade re-apply the chart's routes"
            }
            GitOpsOwner::Helm { .. } => {
                "a `helm upgrade` that changes the chart's VirtualService re-applies its routes"
            }
        }
    }
}

pub const ARGO_TRACKING_ID: &str = "argocd.argoproj.io/tracking-id";
pub const ARGO_INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
pub const FLUX_KUSTOMIZE_NAME: &str = "kustomize.toolkit.fluxcd.io/name";
pub const FLUX_HELM_NAME: &str = "helm.toolkit.fluxcd.io/name";
pub const HELM_RELEASE_NAME: &str = "meta.helm.sh/release-name";

/// Who applies `object`, from the marks each tool sets (most specific first). The bare
/// `app.kubernetes.io/instance` label counts as Argo CD's label tracking only when no Helm
/// mark explains it (Helm charts set that label too).
pub fn gitops_owner(object: &Value) -> Option<GitOpsOwner> {
    let meta = |kind: &str, key: &str| {
        object
            .get("metadata")
            .and_then(|m| m.get(kind))
            .and_then(|m| m.get(key))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let label = |k: &str| meta("labels", k);
    let annotation = |k: &str| meta("annotations", k);
    if let Some(id) = annotation(ARGO_TRACKING_ID) {
        let application = id.split(':').next().unwrap_or(&id).to_string();
        return Some(GitOpsOwner::ArgoCd {
            application,
            how: "tracking annotation argocd.argoproj.io/tracking-id",
        });
    }
    let ns_of = |v: Option<String>| v.unwrap_or_else(|| "flux-system".to_string());
    if let Some(name) = label(FLUX_KUSTOMIZE_NAME) {
        return Some(GitOpsOwner::FluxKustomization {
            name,
            namespace: ns_of(label("kustomize.toolkit.fluxcd.io/namespace")),
        });
    }
    if let Some(name) = label(FLUX_HELM_NAME) {
        return Some(GitOpsOwner::FluxHelmRelease {
            name,
            namespace: ns_of(label("helm.toolkit.fluxcd.io/namespace")),
        });
    }
    if let Some(release) = annotation(HELM_RELEASE_NAME) {
        let namespace = annotation("meta.helm.sh/release-namespace").unwrap_or_default();
        return Some(GitOpsOwner::Helm { release, namespace });
    }
    let helm_label = label("app.kubernetes.io/managed-by").is_some_and(|m| m == "Helm");
    match label(ARGO_INSTANCE_LABEL) {
        Some(application) if !helm_label => Some(GitOpsOwner::ArgoCd {
            application,
            how: "instance label app.kubernetes.io/instance",
        }),
        _ => None,
    }
}

/// Quote a string for YAML (single quotes, `'` doubled).
fn quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The jq selections (Argo CD `jqPathExpressions`) of what tidegate writes in `vs` for
/// `target`: its header route, the managed routes' `route`, `mirror` and `mirrorPercentage`,
/// and the originals annotation. Managed routes are selected by name when every one has a
/// name, else by destination host (every http route to the service).
pub fn managed_paths(vs: &Value, target: &Target) -> Vec<String> {
    let names: Vec<String> = if !target.routes.is_empty() {
        target.routes.clone()
    } else {
        let view = routes::view(vs, target).ok();
        let http = vs.pointer("/spec/http").and_then(Value::as_array);
        view.map(|v| {
            v.managed
                .iter()
                .map(|m| {
                    http.and_then(|h| h.get(m.index))
                        .and_then(|r| r.get("name"))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                })
                .collect::<Option<Vec<String>>>()
                .unwrap_or_default()
        })
        .unwrap_or_default()
    };
    let select = if names.is_empty() {
        let mut hosts = vec![target.service.clone()];
        let full = super::hosts::qualify(&target.service, &target.rollout.namespace);
        if full != target.service {
            hosts.push(full);
        }
        let tests: Vec<String> = hosts
            .iter()
            .map(|h| format!(".destination.host == \"{h}\""))
            .collect();
        format!("select(any(.route[]?; {}))", tests.join(" or "))
    } else {
        let tests: Vec<String> = names.iter().map(|n| format!(".name == \"{n}\"")).collect();
        format!("select({})", tests.join(" or "))
    };
    let mut out = vec![format!(
        ".spec.http[] | select(.name == \"{}\")",
        routes::header_route_name(&target.rollout.name)
    )];
    for field in ["route", "mirror", "mirrorPercentage"] {
        out.push(format!(".spec.http[] | {select} | .{field}"));
    }
    out.push(format!(".metadata.annotations[\"{ORIGINALS_ANNOTATION}\"]"));
    out
}

/// Flux's ignore rule for the VirtualService (`paths` plus `target`), indented by `pad`:
/// JSON Pointers cannot select list items by name, so the whole `spec.http` is left to the
/// cluster, with the originals annotation.
fn flux_rule(pad: &str, name: &str, ns: &str, anchored: bool) -> String {
    let annotation = ORIGINALS_ANNOTATION.replace('~', "~0").replace('/', "~1");
    let (n, s) = if anchored {
        (format!("^{name}$"), format!("^{ns}$"))
    } else {
        (name.to_string(), ns.to_string())
    };
    format!(
        "{pad}- paths:\n{pad}    - /spec/http\n{pad}    - /metadata/annotations/{annotation}\n{pad}  target:\n{pad}    group: networking.istio.io\n{pad}    kind: VirtualService\n{pad}    name: {}\n{pad}    namespace: {}\n",
        quoted(&n),
        quoted(&s)
    )
}

/// The configuration that makes `owner` leave tidegate's fields of the VirtualService alone,
/// as a YAML fragment of the tool's own object; `None` for plain Helm, which has no such
/// setting (see `docs/gitops.md`).
pub fn ignore_snippet(owner: &GitOpsOwner, vs: &Value, target: &Target) -> Option<String> {
    let ns = &target.rollout.namespace;
    let name = &target.virtual_service;
    match owner {
        GitOpsOwner::ArgoCd { application, .. } => {
            let jq: String = managed_paths(vs, target)
                .iter()
                .map(|p| format!("        - {}\n", quoted(p)))
                .collect();
            Some(format!(
                "# Argo CD Application {application}: add to its spec\nspec:\n  ignoreDifferences:\n    - group: networking.istio.io\n      kind: VirtualService\n      name: {name}\n      namespace: {ns}\n      jqPathExpressions:\n{jq}  syncPolicy:\n    syncOptions:\n      - ApplyOutOfSyncOnly=true\n"
            ))
        }
        GitOpsOwner::FluxKustomization { name: k, namespace } => Some(format!(
            "# Flux Kustomization {namespace}/{k} (kustomize-controller v1.9.0 or later): add to its spec\nspec:\n  ignore:\n{}",
            flux_rule("    ", name, ns, true)
        )),
        GitOpsOwner::FluxHelmRelease { name: h, namespace } => Some(format!(
            "# Flux HelmRelease {namespace}/{h}: add to its spec (keep your driftDetection.mode)\nspec:\n  driftDetection:\n    ignore:\n{}",
            flux_rule("      ", name, ns, false)
        )),
        GitOpsOwner::Helm { .. } => None,
    }
}
