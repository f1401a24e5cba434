//! Every manifest under deploy/ parses into its Kubernetes type with no field lost, the pod is
//! locked down, the RBAC grants exactly the API calls in `tidegate::rbac::API_CALLS`, and the
//! alerts and dashboard use only documented metrics in PromQL that promtool accepts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tidegate::rbac::{API_CALLS, Scope};

const NAMESPACE: &str = "tidegate-system";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files_under(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            files_under(&path, ext, out);
        } else if path.extension().is_some_and(|x| x == ext) {
            out.push(path);
        }
    }
    out.sort();
}

/// One YAML document of one file under deploy/.
#[derive(Debug, Clone)]
struct Doc {
    file: PathBuf,
    value: Value,
}

impl Doc {
    fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or("")
    }
    fn name(&self) -> &str {
        self.value["metadata"]["name"].as_str().unwrap_or("")
    }
    fn rel(&self) -> String {
        self.file
            .strip_prefix(root())
            .unwrap_or(&self.file)
            .display()
            .to_string()
    }
}

fn docs() -> Vec<Doc> {
    let mut files = Vec::new();
    files_under(&root().join("deploy"), "yaml", &mut files);
    assert!(!files.is_empty(), "no YAML under deploy/");
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read manifest");
        let values: Vec<Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", file.display()));
        for value in values {
            if !value.is_null() {
                docs.push(Doc {
                    file: file.clone(),
                    value,
                });
            }
        }
    }
    docs
}

/// Paths present in `original` but missing or different in `back`.
fn lost(original: &Value, back: &Value, path: &str, out: &mut Vec<String>) {
    match (original, back) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                match b.get(k) {
                    Some(w) => lost(v, w, &format!("{path}.{k}"), out),
                    None => out.push(format!("{path}.{k}")),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                lost(v, w, &format!("{path}[{i}]"), out);
            }
        }
        (a, b) if a != b => out.push(format!("{path} (written {a}, read back {b})")),
        _ => {}
    }
}

/// Deserialize into the k8s-openapi type and serialize back: anything the type does not know
/// (a misspelt field, a field at the wrong level) disappears and fails the test.
fn typed<T: DeserializeOwned + Serialize>(doc: &Doc) -> T {
    let t: T = serde_json::from_value(doc.value.clone())
        .unwrap_or_else(|e| panic!("{} ({} {}): {e}", doc.rel(), doc.kind(), doc.name()));
    let back = serde_json::to_value(&t).expect("serialize");
    let mut unknown = Vec::new();
    lost(&doc.value, &back, "", &mut unknown);
    assert!(
        unknown.is_empty(),
        "{} ({} {}): fields its Kubernetes type does not know: {unknown:?}",
        doc.rel(),
        doc.kind(),
        doc.name()
    );
    t
}

fn one<'a>(docs: &'a [Doc], kind: &str) -> &'a Doc {
    let found: Vec<&Doc> = docs.iter().filter(|d| d.kind() == kind).collect();
    assert_eq!(
        found.len(),
        1,
        "expected exactly one {kind} under deploy/, found {}",
        found.len()
    );
    found[0]
}

#[test]
fn every_manifest_parses_into_its_type() {
    let mut kinds = BTreeSet::new();
    for doc in docs() {
        let api = doc.value["apiVersion"].as_str().unwrap_or("").to_owned();
        match (api.as_str(), doc.kind()) {
            ("v1", "Namespace") => drop(typed::<Namespace>(&doc)),
            ("v1", "ServiceAccount") => drop(typed::<ServiceAccount>(&doc)),
            ("v1", "Service") => drop(typed::<Service>(&doc)),
            ("v1", "Secret") => drop(typed::<Secret>(&doc)),
            ("apps/v1", "Deployment") => drop(typed::<Deployment>(&doc)),
            ("rbac.authorization.k8s.io/v1", "ClusterRole") => drop(typed::<ClusterRole>(&doc)),
            ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
                drop(typed::<ClusterRoleBinding>(&doc))
            }
            ("rbac.authorization.k8s.io/v1", "Role") => drop(typed::<Role>(&doc)),
            ("rbac.authorization.k8s.io/v1", "RoleBinding") => drop(typed::<RoleBinding>(&doc)),
            ("monitoring.coreos.com/v1", "ServiceMonitor" | "PrometheusRule") => {
                assert!(doc.value["spec"].is_object(), "{}: no spec", doc.rel());
            }
            ("kustomize.config.k8s.io/v1beta1", "Kustomization") => {}
            (api, kind) => panic!(
                "{}: unexpected {api} {kind}; add it to this test",
                doc.rel()
            ),
        }
        if !matches!(
            doc.kind(),
            "Kustomization" | "Namespace" | "ClusterRole" | "ClusterRoleBinding"
        ) {
            assert_eq!(
                doc.value["metadata"]["namespace"],
                NAMESPACE,
                "{} ({} {}) must live in {NAMESPACE}",
                doc.rel(),
                doc.kind(),
                doc.name()
            );
        }
        kinds.insert(doc.kind().to_owned());
    }
    let want = [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Kustomization",
        "Namespace",
        "PrometheusRule",
        "Role",
        "RoleBinding",
        "Secret",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    ];
    assert_eq!(
        kinds,
        want.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>()
    );
}

#[test]
fn the_pod_is_locked_down() {
    let docs = docs();
    let d: Deployment = typed(one(&docs, "Deployment"));
    let spec = d.spec;
    let pod = spec.template.spec.expect("pod spec");
    assert_eq!(pod.service_account_name.as_deref(), Some("tidegate"));
    let psc = pod.security_context.expect("pod securityContext");
    assert_eq!(psc.run_as_non_root, Some(true));
    assert!(
        psc.run_as_user.is_some_and(|u| u != 0),
        "pod must run as a non-zero uid"
    );
    assert_eq!(
        psc.seccomp_profile.map(|s| s.type_),
        Some("RuntimeDefault".to_string())
    );
    assert!(pod.host_network.is_none() && pod.host_pid.is_none() && pod.host_ipc.is_none());

    assert_eq!(pod.containers.len(), 1);
    let c = &pod.containers[0];
    let image = c.image.as_deref().expect("image");
    assert!(
        !image.ends_with(":latest") && image.contains(':'),
        "pin the image tag: {image}"
    );
    let sc = c
        .security_context
        .as_ref()
        .expect("container securityContext");
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_ne!(sc.privileged, Some(true));
    let caps = sc.capabilities.as_ref().expect("capabilities");
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_string()][..]));
    assert!(
        caps.add.as_ref().is_none_or(Vec::is_empty),
        "no capability may be added"
    );
    assert_eq!(
        sc.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
        Some("RuntimeDefault")
    );

    let port = c
        .ports
        .as_ref()
        .expect("ports")
        .iter()
        .find(|p| p.name.as_deref() == Some("http"))
        .expect("port http");
    assert_eq!(port.container_port, 8080);
    for (probe, path) in [
        (&c.liveness_probe, "/healthz"),
        (&c.readiness_probe, "/readyz"),
    ] {
        let get = probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .expect("http probe");
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(
            serde_json::to_value(&get.port).expect("port"),
            Value::from("http")
        );
    }
    let res = c.resources.as_ref().expect("resources");
    for key in ["cpu", "memory"] {
        assert!(
            res.requests.as_ref().is_some_and(|r| r.contains_key(key)),
            "request {key}"
        );
    }
    assert!(
        res.limits
            .as_ref()
            .is_some_and(|l| l.contains_key("memory")),
        "memory limit"
    );

    // No secret reaches the process through the environment.
    for env in c.env.iter().flatten() {
        assert!(
            env.value_from
                .as_ref()
                .is_none_or(|v| v.secret_key_ref.is_none()),
            "{} comes from a Secret through the environment; mount it as a file",
            env.name
        );
    }
    assert!(
        c.env_from.is_none(),
        "no envFrom: secrets are mounted as files"
    );

    let volumes: BTreeMap<String, _> = pod
        .volumes
        .iter()
        .flatten()
        .map(|v| (v.name.clone(), v.clone()))
        .collect();
    let mounts: BTreeMap<String, _> = c
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.mount_path.clone(), m.clone()))
        .collect();
    let data = &mounts["/var/lib/tidegate"];
    assert!(
        volumes[&data.name].empty_dir.is_some(),
        "the data directory is an emptyDir"
    );
    let config = &mounts["/etc/tidegate/config.yaml"];
    let cm = volumes[&config.name]
        .config_map
        .as_ref()
        .expect("config from a ConfigMap");
    assert_eq!(cm.name, "tidegate-config");
    assert_eq!(config.sub_path.as_deref(), Some("config.yaml"));
    let mut secret_mounts = 0;
    for m in mounts.values() {
        let v = &volumes[&m.name];
        if let Some(s) = &v.secret {
            secret_mounts += 1;
            assert_eq!(
                m.read_only,
                Some(true),
                "secret {} must be mounted read-only",
                m.name
            );
            assert_eq!(
                s.default_mode,
                Some(0o440),
                "secret {} must be mode 0440",
                m.name
            );
        }
    }
    assert_eq!(
        secret_mounts, 3,
        "git credentials, webhook secret, notification URLs"
    );
}

/// (group, resource) → verbs, from RBAC rules; panics on anything broader than a plain grant.
fn granted(rules: &[PolicyRule], what: &str) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut out: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for rule in rules {
        assert!(
            rule.non_resource_urls.as_ref().is_none_or(Vec::is_empty),
            "{what}: no nonResourceURLs"
        );
        let groups = rule.api_groups.clone().unwrap_or_default();
        let resources = rule.resources.clone().unwrap_or_default();
        assert!(
            !groups.is_empty() && !resources.is_empty() && !rule.verbs.is_empty(),
            "{what}: empty rule"
        );
        for g in &groups {
            for r in &resources {
                assert!(
                    !g.contains('*') && !r.contains('*'),
                    "{what}: wildcard in {g}/{r}"
                );
                assert!(
                    !r.contains('/'),
                    "{what}: subresource {r} is not in the API call table"
                );
                assert!(r != "secrets", "{what}: tidegate must not read Secrets");
                for v in &rule.verbs {
                    assert!(v != "*", "{what}: wildcard verb on {g}/{r}");
                    let new = out
                        .entry((g.clone(), r.clone()))
                        .or_default()
                        .insert(v.clone());
                    assert!(new, "{what}: {v} on {g}/{r} is granted twice");
                }
            }
        }
    }
    out
}

fn expected(scope: Scope) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut out: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for call in API_CALLS.iter().filter(|c| c.scope == scope) {
        out.entry((call.group.to_owned(), call.resource.to_owned()))
            .or_default()
            .insert(call.verb.to_owned());
    }
    out
}

#[test]
fn rbac_grants_exactly_the_api_calls_the_code_makes() {
    let docs = docs();
    let cr: ClusterRole = typed(one(&docs, "ClusterRole"));
    assert!(cr.aggregation_rule.is_none());
    assert_eq!(
        granted(cr.rules.as_deref().unwrap_or_default(), "ClusterRole"),
        expected(Scope::Cluster),
        "the ClusterRole must grant exactly the Cluster rows of src/rbac.rs"
    );
    let role: Role = typed(one(&docs, "Role"));
    assert_eq!(role.metadata.namespace.as_deref(), Some(NAMESPACE));
    assert_eq!(
        granted(role.rules.as_deref().unwrap_or_default(), "Role"),
        expected(Scope::OwnNamespace),
        "the Role must grant exactly the OwnNamespace rows of src/rbac.rs"
    );

    let sa: ServiceAccount = typed(one(&docs, "ServiceAccount"));
    let sa_name = sa.metadata.name.clone().expect("sa name");
    let crb: ClusterRoleBinding = typed(one(&docs, "ClusterRoleBinding"));
    assert_eq!(
        (crb.role_ref.kind.as_str(), crb.role_ref.name.as_str()),
        ("ClusterRole", cr.metadata.name.as_deref().unwrap_or(""))
    );
    let rb: RoleBinding = typed(one(&docs, "RoleBinding"));
    assert_eq!(
        (rb.role_ref.kind.as_str(), rb.role_ref.name.as_str()),
        ("Role", role.metadata.name.as_deref().unwrap_or(""))
    );
    assert_eq!(rb.metadata.namespace.as_deref(), Some(NAMESPACE));
    for subjects in [crb.subjects, rb.subjects] {
        let subjects = subjects.expect("subjects");
        assert_eq!(subjects.len(), 1, "bind the ServiceAccount only");
        assert_eq!(subjects[0].kind, "ServiceAccount");
        assert_eq!(subjects[0].name, sa_name);
        assert_eq!(subjects[0].namespace.as_deref(), Some(NAMESPACE));
    }
}

#[test]
fn service_and_service_monitor_reach_the_pod() {
    let docs = docs();
    let d: Deployment = typed(one(&docs, "Deployment"));
    let spec = d.spec;
    let pod_labels = spec
        .template
        .metadata
        .and_then(|m| m.labels)
        .expect("pod labels");
    let s: Service = typed(one(&docs, "Service"));
    let sspec = s.spec.expect("service spec");
    for (k, v) in sspec.selector.as_ref().expect("selector") {
        assert_eq!(
            pod_labels.get(k),
            Some(v),
            "service selector {k}={v} must match the pod"
        );
    }
    let port = &sspec.ports.as_ref().expect("ports")[0];
    assert_eq!(port.name.as_deref(), Some("http"));
    assert_eq!(
        serde_json::to_value(&port.target_port).expect("port"),
        Value::from("http")
    );

    let sm = one(&docs, "ServiceMonitor");
    let service_labels = s.metadata.labels.expect("service labels");
    let wanted = sm.value["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels");
    for (k, v) in wanted {
        assert_eq!(
            service_labels.get(k).map(|s| Value::from(s.as_str())),
            Some(v.clone()),
            "ServiceMonitor selects {k}"
        );
    }
    let ep = &sm.value["spec"]["endpoints"][0];
    assert_eq!(ep["port"], "http");
    assert_eq!(ep["path"], "/metrics");
}

#[test]
fn secret_templates_cover_every_mounted_secret() {
    let docs = docs();
    let d: Deployment = typed(one(&docs, "Deployment"));
    let pod = d.spec.template.spec.expect("pod");
    let mounted: BTreeSet<String> = pod
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| v.secret.as_ref().and_then(|s| s.secret_name.clone()))
        .collect();
    let templates: BTreeSet<String> = docs
        .iter()
        .filter(|doc| doc.kind() == "Secret")
        .map(|doc| {
            assert!(
                doc.rel().starts_with("deploy/secrets/"),
                "{}: Secrets belong in deploy/secrets/ (templates, not applied)",
                doc.rel()
            );
            let s: Secret = typed(doc);
            assert!(
                s.data.is_none(),
                "{}: use stringData placeholders in templates",
                doc.rel()
            );
            s.metadata.name.expect("secret name")
        })
        .collect();
    assert_eq!(mounted, templates);
}

/// The `resources:` of a kustomization, resolved against its folder.
fn kustomization(dir: &str) -> (PathBuf, Value) {
    let dir = root().join(dir);
    let text = std::fs::read_to_string(dir.join("kustomization.yaml")).expect("kustomization.yaml");
    (
        dir,
        serde_saphyr::from_str(&text).expect("kustomization parses"),
    )
}

#[test]
fn kustomizations_list_every_manifest() {
    let (dir, k) = kustomization("deploy/kustomize/base");
    assert_eq!(k["namespace"], NAMESPACE);
    let listed: BTreeSet<String> = k["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().expect("resource path").to_owned())
        .collect();
    let mut present = Vec::new();
    files_under(&dir, "yaml", &mut present);
    let present: BTreeSet<String> = present
        .iter()
        .filter_map(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
        .filter(|f| f != "kustomization.yaml")
        .collect();
    assert_eq!(
        listed, present,
        "every manifest in the base is listed, and only those"
    );

    let (dir, k) = kustomization("deploy/kustomize/without-prometheus-operator");
    for r in k["resources"].as_array().expect("resources") {
        let path = dir
            .join(r.as_str().expect("path"))
            .join("kustomization.yaml");
        assert!(path.is_file(), "{} does not exist", path.display());
    }
    let deleted: BTreeSet<&str> = k["patches"]
        .as_array()
        .expect("patches")
        .iter()
        .map(|p| {
            let patch: Value = serde_saphyr::from_str(p["patch"].as_str().expect("inline patch"))
                .expect("patch parses");
            assert_eq!(patch["$patch"], "delete");
            match patch["kind"].as_str() {
                Some("ServiceMonitor") => "ServiceMonitor",
                Some("PrometheusRule") => "PrometheusRule",
                other => panic!("unexpected patch of {other:?}"),
            }
        })
        .collect();
    assert_eq!(
        deleted,
        BTreeSet::from(["PrometheusRule", "ServiceMonitor"])
    );
}

/// `tidegate_*` names in a PromQL expression, histogram suffixes folded into the base name.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = expr;
    while let Some(i) = rest.find("tidegate_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|b| b.ends_with("_seconds")))
            .unwrap_or(name);
        out.insert(base.to_owned());
        rest = &tail[end..];
    }
    out
}

/// The metric names of the table in docs/deploy.md.
fn documented_metrics() -> BTreeSet<String> {
    let path = root().join("docs/deploy.md");
    let text = std::fs::read_to_string(&path).expect("docs/deploy.md");
    text.lines()
        .filter_map(|l| l.strip_prefix("| `tidegate_"))
        .filter_map(|l| l.split('`').next())
        .map(|n| format!("tidegate_{n}"))
        .collect()
}

fn alert_rules(docs: &[Doc]) -> Vec<Value> {
    one(docs, "PrometheusRule").value["spec"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn dashboard() -> Value {
    let path = root().join("deploy/grafana/tidegate.json");
    let text = std::fs::read_to_string(&path).expect("dashboard");
    serde_json::from_str(&text).expect("dashboard is JSON")
}

fn dashboard_exprs(d: &Value) -> Vec<String> {
    d["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| t["expr"].as_str().expect("expr").to_owned())
        .collect()
}

#[test]
fn alerts_and_dashboard_use_documented_metrics() {
    let documented = documented_metrics();
    assert_eq!(
        documented.len(),
        12,
        "docs/deploy.md metrics table: {documented:?}"
    );
    let docs = docs();
    let rules = alert_rules(&docs);
    let alerts: BTreeMap<&str, &str> = rules
        .iter()
        .map(|r| {
            (
                r["alert"].as_str().expect("alert name"),
                r["expr"].as_str().expect("expr"),
            )
        })
        .collect();
    assert!(
        alerts["TidegateRolloutFailed"]
            .contains(r#"tidegate_rollout_phase{phase="RolledBack"} == 1"#)
    );
    assert!(
        alerts["TidegateRolloutStuck"]
            .contains("time() - tidegate_rollout_step_started_timestamp_seconds > 3600")
    );
    assert!(alerts["TidegateRolloutStuck"].contains(r#"phase="Progressing""#));
    assert!(
        alerts["TidegateGitPushFailing"]
            .contains("increase(tidegate_git_push_errors_total[10m]) > 0")
    );
    let d = dashboard();
    let exprs = dashboard_exprs(&d);
    let mut used = BTreeSet::new();
    for expr in alerts
        .values()
        .copied()
        .chain(exprs.iter().map(String::as_str))
    {
        for name in metric_names(expr) {
            assert!(
                documented.contains(&name),
                "{name} (in {expr:?}) is not in docs/deploy.md's metrics table"
            );
            used.insert(name);
        }
    }
    for must in [
        "tidegate_rollout_canary_weight",
        "tidegate_analysis_verdict",
        "tidegate_rollout_phase",
    ] {
        assert!(
            exprs.iter().any(|e| e.contains(must)),
            "the dashboard shows {must}"
        );
    }
    assert_eq!(
        used, documented,
        "every documented metric is used by an alert or the dashboard"
    );
}

fn promtool() -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin"] {
        let p = Path::new(dir).join("promtool");
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "promtool not found in /usr/bin: install the Debian package `prometheus` (scripts/test does)"
    );
}

fn promtool_check(rules: &Value) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("rules.yaml");
    // JSON is YAML: promtool reads it as a rules file.
    std::fs::write(&path, serde_json::to_vec_pretty(rules).expect("json")).expect("write rules");
    let out = Command::new(promtool())
        .arg("check")
        .arg("rules")
        .arg(&path)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool rejected the rules:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_accepts_the_alerts() {
    let docs = docs();
    let spec = &one(&docs, "PrometheusRule").value["spec"];
    promtool_check(spec);
}

#[test]
fn promtool_accepts_every_dashboard_query() {
    let d = dashboard();
    let rules: Vec<Value> = dashboard_exprs(&d)
        .iter()
        .enumerate()
        .map(|(i, e)| {
            // Grafana's variables, as Grafana would substitute them.
            let expr = e
                .replace("$__rate_interval", "5m")
                .replace("$namespace", ".*")
                .replace("$rollout", ".*");
            serde_json::json!({"record": format!("tidegate:dashboard_query_{i}"), "expr": expr})
        })
        .collect();
    assert!(rules.len() >= 8, "dashboard queries: {}", rules.len());
    promtool_check(&serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]}));
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .expect("templating")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(vars, ["datasource", "namespace", "rollout"]);
}
