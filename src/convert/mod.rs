//! `tidegate convert`: Flagger `Canary` and Argo Rollouts `Rollout` objects (with their metric
//! and analysis templates) to tidegate plans. Pure: YAML text in, plan text and findings out.
//!
//! Only what tidegate can carry over is translated; everything else is a [`Finding`] naming the
//! source file and the field path, never dropped silently. Each source keeps its traffic model:
//! Flagger canaries and Argo Rollouts with `canaryService`/`stableService` and no
//! `destinationRule` become host-level plans, Argo Rollouts with a `destinationRule`
//! subset-level plans.

mod argo;
mod flagger;
mod hooks;
mod metrics;

use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value, json};

/// Something in a source that could not be carried over (or was carried over with a caveat).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub file: String,
    /// YAML path in the source document (`spec.strategy.canary.steps[2].experiment`).
    pub field: String,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.field, self.message)
        }
    }
}

/// One source rollout and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct Converted {
    pub file: String,
    /// `Canary` (Flagger) or `Rollout` (Argo Rollouts).
    pub kind: String,
    pub name: String,
    pub namespace: String,
    /// The plan text (with its source comment), when the source could be converted and the plan
    /// passed tidegate's validation.
    pub plan: Option<String>,
    /// The plan's `spec` as translated, also when no plan was emitted (in the `-o json` report).
    pub spec: Value,
    pub findings: Vec<Finding>,
}

/// Everything `convert` found in a set of files.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub rollouts: Vec<Converted>,
    /// Findings not tied to one rollout (a file with no rollout, an unknown kind).
    pub findings: Vec<Finding>,
}

impl Report {
    /// Whether every source rollout produced a plan and at least one did.
    pub fn complete(&self) -> bool {
        !self.rollouts.is_empty() && self.rollouts.iter().all(|r| r.plan.is_some())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("{file}: not valid YAML: {message}")]
    Yaml { file: String, message: String },
}

/// A document of a source file.
pub(crate) struct Doc<'a> {
    pub file: &'a str,
    pub value: Value,
}

/// Templates given beside the rollouts, by name.
#[derive(Default)]
pub(crate) struct Templates<'a> {
    pub flagger: Vec<&'a Doc<'a>>,
    pub argo: Vec<&'a Doc<'a>>,
}

impl Templates<'_> {
    pub fn find<'s>(list: &'s [&'s Doc<'s>], name: &str) -> Option<&'s Doc<'s>> {
        list.iter()
            .copied()
            .find(|d| str_at(&d.value, &["metadata", "name"]) == Some(name))
    }
}

/// Convert every Flagger and Argo rollout in `inputs` (`(file name, text)`), with the templates
/// of all the files.
pub fn convert(inputs: &[(String, String)]) -> Result<Report, ConvertError> {
    let mut docs = Vec::new();
    for (file, text) in inputs {
        let values: Vec<Value> =
            serde_saphyr::from_multiple(text).map_err(|e| ConvertError::Yaml {
                file: file.clone(),
                message: e.to_string(),
            })?;
        docs.extend(
            values
                .into_iter()
                .filter(|v| !v.is_null())
                .map(|value| Doc {
                    file: file.as_str(),
                    value,
                }),
        );
    }
    let mut templates = Templates::default();
    for doc in &docs {
        match kind_of(&doc.value) {
            ("flagger.app", "MetricTemplate") => templates.flagger.push(doc),
            ("argoproj.io", "AnalysisTemplate" | "ClusterAnalysisTemplate") => {
                templates.argo.push(doc)
            }
            _ => {}
        }
    }
    let mut report = Report::default();
    for doc in &docs {
        match kind_of(&doc.value) {
            ("flagger.app", "Canary") => report.rollouts.push(flagger::convert(doc, &templates)),
            ("argoproj.io", "Rollout") => {
                report.rollouts.push(argo::convert(doc, &docs, &templates))
            }
            _ => {}
        }
    }
    if report.rollouts.is_empty() {
        for (file, _) in inputs {
            report.findings.push(Finding {
                file: file.clone(),
                field: String::new(),
                message: "no Flagger Canary or Argo Rollouts Rollout in the given files: \
                          templates are converted with the rollout that uses them"
                    .into(),
            });
        }
    }
    Ok(report)
}

/// `(group, kind)` of a Kubernetes object.
fn kind_of(v: &Value) -> (&str, &str) {
    let api = str_at(v, &["apiVersion"]).unwrap_or("");
    let group = api.split('/').next().unwrap_or("");
    (group, str_at(v, &["kind"]).unwrap_or(""))
}

/// The value at `path` (object keys).
pub(crate) fn at<'v>(v: &'v Value, path: &[&str]) -> Option<&'v Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

pub(crate) fn str_at<'v>(v: &'v Value, path: &[&str]) -> Option<&'v str> {
    at(v, path).and_then(Value::as_str)
}

/// A Kubernetes duration field (`30s`, `1m`, or a number of seconds) in seconds.
pub(crate) fn seconds(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => humantime::parse_duration(s.trim())
            .ok()
            .map(|d| d.as_secs())
            .or_else(|| s.trim().parse().ok()),
        _ => None,
    }
}

/// A duration in plan syntax.
pub(crate) fn duration(secs: u64) -> String {
    if secs > 0 && secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs > 0 && secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

/// A finding for every key of the object `v` (at `field`) not in `known`.
pub(crate) fn unknown_keys(v: Option<&Value>, known: &[&str], field: &str, notes: &mut Notes<'_>) {
    let keys = v.and_then(Value::as_object).into_iter().flatten();
    for (key, _) in keys.filter(|(k, _)| !known.contains(&k.as_str())) {
        notes.add(
            format!("{field}.{key}"),
            format!("`{key}` has no equivalent in a plan"),
        );
    }
}

/// Collects findings for one source rollout.
pub(crate) struct Notes<'a> {
    pub file: &'a str,
    pub findings: Vec<Finding>,
}

impl Notes<'_> {
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.findings.push(Finding {
            file: self.file.to_owned(),
            field: field.into(),
            message: message.into(),
        });
    }
}

/// The translated parts of one source, before the plan is written.
pub(crate) struct Draft<'a> {
    pub doc: &'a Doc<'a>,
    pub kind: &'static str,
    pub spec: Map<String, Value>,
    /// Whether no plan can be written (no Istio traffic routing, nothing to split between).
    pub blocked: bool,
    pub notes: Notes<'a>,
}

/// Write the plan of `draft` (when nothing blocks it) and check it with tidegate's validation.
pub(crate) fn finish(draft: Draft<'_>) -> Converted {
    let Draft {
        doc,
        kind,
        spec,
        blocked,
        mut notes,
    } = draft;
    let name = str_at(&doc.value, &["metadata", "name"])
        .unwrap_or("unnamed")
        .to_owned();
    let namespace = str_at(&doc.value, &["metadata", "namespace"])
        .unwrap_or(crate::plan::defaults::NAMESPACE)
        .to_owned();
    let spec = Value::Object(spec);
    let plan = if blocked {
        None
    } else {
        write_plan(doc.file, kind, &name, &namespace, &spec, &mut notes)
    };
    Converted {
        file: doc.file.to_owned(),
        kind: kind.to_owned(),
        name,
        namespace,
        plan,
        spec,
        findings: notes.findings,
    }
}

fn write_plan(
    file: &str,
    kind: &str,
    name: &str,
    namespace: &str,
    spec: &Value,
    notes: &mut Notes<'_>,
) -> Option<String> {
    let plan = json!({
        "apiVersion": "tidegate.dev/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    });
    let body = match serde_saphyr::to_string(&plan) {
        Ok(body) => body,
        Err(e) => {
            notes.add("", format!("the plan could not be written: {e}"));
            return None;
        }
    };
    let text = format!(
        "# converted by `tidegate convert` from {file} ({kind} {namespace}/{name})\n{body}"
    );
    let parsed = crate::plan::parse_str(&format!("{name}.yaml"), &text);
    if parsed.findings.is_empty() {
        return Some(text);
    }
    for f in parsed.findings {
        notes.add(
            f.field,
            format!("the converted plan does not validate: {}", f.message),
        );
    }
    None
}
