//! Which Istio metric label tells a DestinationRule subset's traffic apart, and its value.
//!
//! Built from the DestinationRule's subset labels (parsed minimally from a JSON value):
//! a `version` label → `destination_version`; otherwise `service.istio.io/canonical-revision`
//! or `app.kubernetes.io/version` → `destination_canonical_revision`. Without a
//! DestinationRule the subset name is taken as the `version` label. Pure: no I/O.

use std::collections::BTreeMap;

use serde_json::Value;

/// Metric label Istio fills from the pod's `version` label.
pub const DESTINATION_VERSION: &str = "destination_version";
/// Metric label Istio fills from the pod's canonical revision.
pub const DESTINATION_CANONICAL_REVISION: &str = "destination_canonical_revision";

/// Subset label keys, in order of preference, with the metric label each maps to.
const RULES: [(&str, &str); 3] = [
    ("version", DESTINATION_VERSION),
    (
        "service.istio.io/canonical-revision",
        DESTINATION_CANONICAL_REVISION,
    ),
    ("app.kubernetes.io/version", DESTINATION_CANONICAL_REVISION),
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubsetError {
    #[error("DestinationRule is malformed: {0}")]
    Malformed(String),
    #[error("DestinationRule {rule} has no subset {subset:?} (subsets: {known})")]
    UnknownSubset {
        rule: String,
        subset: String,
        known: String,
    },
    #[error(
        "subset {subset:?} of DestinationRule {rule} has no `version`, \
`service.istio.io/canonical-revision` or `app.kubernetes.io/version` label, so its traffic \
cannot be told apart in Istio metrics"
    )]
    Unlabelled { rule: String, subset: String },
    #[error(
        "subsets {canary:?} and {stable:?} are told apart by different metric labels \
({canary_label} vs {stable_label}); label both with `version` or both with a canonical revision"
    )]
    Mismatch {
        canary: String,
        stable: String,
        canary_label: &'static str,
        stable_label: &'static str,
    },
}

/// Subset name → labels, from one DestinationRule; or the "no DestinationRule" fallback.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubsetLabels {
    /// `namespace/name` of the DestinationRule, `None` for the fallback.
    pub rule: Option<String>,
    pub subsets: BTreeMap<String, BTreeMap<String, String>>,
}

/// How one subset is selected in Istio metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubsetSelector {
    pub name: String,
    /// The value of the metric label for this subset.
    pub value: String,
    /// The subset's DestinationRule labels (`version: <subset name>` in the fallback).
    pub labels: BTreeMap<String, String>,
}

/// Canary and stable selectors sharing one metric label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubsetMapping {
    /// `destination_version` or `destination_canonical_revision`.
    pub metric_label: &'static str,
    pub canary: SubsetSelector,
    pub stable: SubsetSelector,
    /// False when no DestinationRule was given and subset names were taken as versions.
    pub from_destination_rule: bool,
}

impl SubsetLabels {
    /// No DestinationRule: every subset name is taken as its `version` label.
    pub fn fallback() -> SubsetLabels {
        SubsetLabels::default()
    }

    /// Read `metadata` and `spec.subsets[].{name,labels}` of a DestinationRule object.
    pub fn from_destination_rule(rule: &Value) -> Result<SubsetLabels, SubsetError> {
        let kind = rule.get("kind").and_then(Value::as_str).unwrap_or_default();
        if kind != "DestinationRule" {
            return Err(SubsetError::Malformed(format!(
                "expected kind DestinationRule, found {kind:?}"
            )));
        }
        let meta = rule.get("metadata");
        let name = meta
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("<unnamed>");
        let ns = meta
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .unwrap_or("default");
        let mut subsets = BTreeMap::new();
        let list = match rule.get("spec").and_then(|s| s.get("subsets")) {
            None | Some(Value::Null) => &Vec::new(),
            Some(Value::Array(a)) => a,
            Some(_) => return Err(SubsetError::Malformed("spec.subsets is not a list".into())),
        };
        for (i, s) in list.iter().enumerate() {
            let sname = s.get("name").and_then(Value::as_str).ok_or_else(|| {
                SubsetError::Malformed(format!("spec.subsets[{i}] has no string name"))
            })?;
            let mut labels = BTreeMap::new();
            match s.get("labels") {
                None | Some(Value::Null) => {}
                Some(Value::Object(m)) => {
                    for (k, v) in m {
                        let v = match v {
                            Value::String(s) => s.clone(),
                            Value::Number(n) => n.to_string(),
                            Value::Bool(b) => b.to_string(),
                            _ => {
                                return Err(SubsetError::Malformed(format!(
                                    "spec.subsets[{i}].labels.{k} is not a scalar"
                                )));
                            }
                        };
                        labels.insert(k.clone(), v);
                    }
                }
                Some(_) => {
                    return Err(SubsetError::Malformed(format!(
                        "spec.subsets[{i}].labels is not a map"
                    )));
                }
            }
            subsets.insert(sname.to_string(), labels);
        }
        Ok(SubsetLabels {
            rule: Some(format!("{ns}/{name}")),
            subsets,
        })
    }

    fn select(&self, subset: &str) -> Result<(&'static str, SubsetSelector), SubsetError> {
        let Some(rule) = &self.rule else {
            return Ok((
                DESTINATION_VERSION,
                SubsetSelector {
                    name: subset.into(),
                    value: subset.into(),
                    labels: BTreeMap::from([("version".to_string(), subset.to_string())]),
                },
            ));
        };
        let labels = self
            .subsets
            .get(subset)
            .ok_or_else(|| SubsetError::UnknownSubset {
                rule: rule.clone(),
                subset: subset.into(),
                known: self.subsets.keys().cloned().collect::<Vec<_>>().join(", "),
            })?;
        for (key, metric_label) in RULES {
            if let Some(v) = labels.get(key) {
                return Ok((
                    metric_label,
                    SubsetSelector {
                        name: subset.into(),
                        value: v.clone(),
                        labels: labels.clone(),
                    },
                ));
            }
        }
        Err(SubsetError::Unlabelled {
            rule: rule.clone(),
            subset: subset.into(),
        })
    }

    /// The metric label and values that select the canary and stable subsets.
    pub fn mapping(&self, canary: &str, stable: &str) -> Result<SubsetMapping, SubsetError> {
        let (cl, c) = self.select(canary)?;
        let (sl, s) = self.select(stable)?;
        if cl != sl {
            return Err(SubsetError::Mismatch {
                canary: canary.into(),
                stable: stable.into(),
                canary_label: cl,
                stable_label: sl,
            });
        }
        Ok(SubsetMapping {
            metric_label: cl,
            canary: c,
            stable: s,
            from_destination_rule: self.rule.is_some(),
        })
    }
}

impl SubsetMapping {
    /// A plan that splits by host: each side is selected by its Service's name
    /// (`destination_service_name`), with no DestinationRule labels.
    pub fn hosts(canary: &str, stable: &str) -> SubsetMapping {
        let side = |host: &str| SubsetSelector {
            name: host.to_string(),
            value: host.split('.').next().unwrap_or(host).to_string(),
            labels: BTreeMap::new(),
        };
        SubsetMapping {
            metric_label: crate::plan::query::SERVICE_LABEL,
            canary: side(canary),
            stable: side(stable),
            from_destination_rule: false,
        }
    }

    /// Whether the sides are Services of their own rather than subsets of one.
    pub fn by_host(&self) -> bool {
        self.metric_label == crate::plan::query::SERVICE_LABEL
    }
}

/// The DestinationRule named `name` among `docs`, in `namespace` (a document without a
/// namespace matches any).
pub fn find_destination_rule<'a>(
    docs: &'a [Value],
    name: &str,
    namespace: &str,
) -> Option<&'a Value> {
    docs.iter().find(|d| {
        let meta = d.get("metadata");
        d.get("kind").and_then(Value::as_str) == Some("DestinationRule")
            && meta.and_then(|m| m.get("name")).and_then(Value::as_str) == Some(name)
            && meta
                .and_then(|m| m.get("namespace"))
                .and_then(Value::as_str)
                .is_none_or(|ns| ns == namespace)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn version_label_maps_to_destination_version() {
        let dr = json!({"kind": "DestinationRule", "metadata": {"name": "reviews", "namespace": "shop"},
            "spec": {"host": "reviews", "subsets": [
                {"name": "stable", "labels": {"version": "v1", "app": "reviews"}},
                {"name": "canary", "labels": {"version": "v2"}}]}});
        let m = SubsetLabels::from_destination_rule(&dr)
            .expect("parses")
            .mapping("canary", "stable")
            .expect("maps");
        assert_eq!(m.metric_label, DESTINATION_VERSION);
        assert_eq!(m.canary.value, "v2");
        assert_eq!(m.stable.value, "v1");
        assert_eq!(
            m.stable.labels.get("app").map(String::as_str),
            Some("reviews")
        );
        assert!(m.from_destination_rule);
    }

    #[test]
    fn canonical_revision_labels_map_to_canonical_revision() {
        let dr = json!({"kind": "DestinationRule", "metadata": {"name": "r"}, "spec": {"subsets": [
            {"name": "a", "labels": {"service.istio.io/canonical-revision": "1.2"}},
            {"name": "b", "labels": {"app.kubernetes.io/version": "1.3"}}]}});
        let m = SubsetLabels::from_destination_rule(&dr)
            .expect("parses")
            .mapping("b", "a")
            .expect("maps");
        assert_eq!(m.metric_label, DESTINATION_CANONICAL_REVISION);
        assert_eq!(
            (m.canary.value.as_str(), m.stable.value.as_str()),
            ("1.3", "1.2")
        );
    }

    #[test]
    fn errors_name_the_problem() {
        let dr = json!({"kind": "DestinationRule", "metadata": {"name": "r", "namespace": "n"}, "spec": {"subsets": [
            {"name": "a", "labels": {"version": "v1"}},
            {"name": "b", "labels": {"service.istio.io/canonical-revision": "x"}},
            {"name": "c", "labels": {"app": "x"}}]}});
        let s = SubsetLabels::from_destination_rule(&dr).expect("parses");
        assert!(matches!(
            s.mapping("a", "b"),
            Err(SubsetError::Mismatch { .. })
        ));
        assert!(matches!(
            s.mapping("c", "a"),
            Err(SubsetError::Unlabelled { .. })
        ));
        let e = s.mapping("z", "a").expect_err("unknown");
        assert_eq!(
            e.to_string(),
            "DestinationRule n/r has no subset \"z\" (subsets: a, b, c)"
        );
        assert!(SubsetLabels::from_destination_rule(&json!({"kind": "VirtualService"})).is_err());
    }

    #[test]
    fn finds_rules_by_name_and_namespace() {
        let docs = vec![
            json!({"kind": "DestinationRule", "metadata": {"name": "r", "namespace": "a"}, "spec": {}}),
            json!({"kind": "VirtualService", "metadata": {"name": "r"}}),
            json!({"kind": "DestinationRule", "metadata": {"name": "r"}, "spec": {"host": "any"}}),
        ];
        assert_eq!(find_destination_rule(&docs, "r", "a"), Some(&docs[0]));
        assert_eq!(find_destination_rule(&docs, "r", "b"), Some(&docs[2]));
        assert_eq!(find_destination_rule(&docs, "x", "a"), None);
    }

    #[test]
    fn fallback_takes_subset_names_as_versions() {
        let m = SubsetLabels::fallback().mapping("v2", "v1").expect("maps");
        assert_eq!(m.metric_label, DESTINATION_VERSION);
        assert_eq!(
            (m.canary.value.as_str(), m.stable.value.as_str()),
            ("v2", "v1")
        );
        assert!(!m.from_destination_rule);
    }
}
