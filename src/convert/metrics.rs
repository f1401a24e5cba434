//! Metrics: Flagger's built-in checks to tidegate's templates, Prometheus queries of Flagger
//! `MetricTemplate`s and Argo `AnalysisTemplate`s to custom queries with their thresholds.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::{Notes, Templates, at, seconds, str_at};

/// Variables tidegate's custom queries accept (see docs/plan-reference.md).
const ALLOWED: [&str; 3] = ["service", "namespace", "interval"];

/// Values of template variables (`args.service-name`, `variables.reporter`) given by the source.
pub(crate) type Vars = BTreeMap<String, Var>;

/// What the source gives for one template variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Var {
    /// Text to put in place of the variable (a literal, or a tidegate variable such as
    /// `{{ namespace }}`).
    Text(String),
    /// No value tidegate can know, and why (`valueFrom` of a Secret, a pod template hash…).
    Unknown(String),
}

/// The query with the source's variables filled in, or `None` with a finding when it uses a
/// variable tidegate cannot fill.
pub(crate) fn query(text: &str, vars: &Vars, notes: &mut Notes<'_>, field: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = text.trim();
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start..].find("}}") else {
            break;
        };
        let var = rest[start + 2..start + len].trim();
        out.push_str(&rest[..start]);
        rest = &rest[start + len + 2..];
        match vars.get(var) {
            Some(Var::Text(value)) => {
                out.push_str(value);
                continue;
            }
            Some(Var::Unknown(why)) => {
                notes.add(
                    field,
                    format!("the query uses `{{{{ {var} }}}}`, {why}: metric left out"),
                );
                return None;
            }
            None => {}
        }
        if !ALLOWED.contains(&var) {
            notes.add(
                field,
                format!(
                    "the query uses `{{{{ {var} }}}}`, which tidegate cannot fill (only \
                     service, namespace, interval, canary.<label>, stable.<label>): metric left out"
                ),
            );
            return None;
        }
        out.push_str(&format!("{{{{ {var} }}}}"));
    }
    out.push_str(rest);
    Some(out)
}

/// `result[0] >= 0.95` → `("min", 0.95)`, `result[0] < 0.1` → `("max", 0.1)`.
pub(crate) fn condition(text: &str) -> Option<(&'static str, f64)> {
    let text = text.trim();
    let rest = text
        .strip_prefix("result[0]")
        .or_else(|| text.strip_prefix("result"))?
        .trim_start();
    for (op, bound) in [(">=", "min"), ("<=", "max"), (">", "min"), ("<", "max")] {
        if let Some(number) = rest.strip_prefix(op) {
            return number.trim().parse().ok().map(|n| (bound, n));
        }
    }
    None
}

/// One metric of an Argo `AnalysisTemplate`, as a plan metric.
pub(crate) fn argo(
    metric: &Value,
    vars: &Vars,
    notes: &mut Notes<'_>,
    field: &str,
) -> Option<Value> {
    let name = str_at(metric, &["name"]).unwrap_or("metric");
    let Some(text) = str_at(metric, &["provider", "prometheus", "query"]) else {
        notes.add(
            format!("{field}.provider"),
            format!(
                "metric {name}: only Prometheus providers can be carried over: metric left out"
            ),
        );
        return None;
    };
    let query = query(
        text,
        vars,
        notes,
        &format!("{field}.provider.prometheus.query"),
    )?;
    let mut out = Map::new();
    out.insert("name".into(), json!(name));
    out.insert("query".into(), json!(query));
    let cond = str_at(metric, &["successCondition"]).unwrap_or("");
    let Some((bound, value)) = condition(cond) else {
        notes.add(
            format!("{field}.successCondition"),
            format!(
                "metric {name}: successCondition `{cond}` is not `result[0] >= N` or \
                 `result[0] < N`: metric left out"
            ),
        );
        return None;
    };
    out.insert(bound.into(), json!(value));
    for key in [
        "failureCondition",
        "count",
        "consecutiveErrorLimit",
        "inconclusiveLimit",
    ] {
        if metric.get(key).is_some() {
            notes.add(
                format!("{field}.{key}"),
                format!("metric {name}: `{key}` has no equivalent"),
            );
        }
    }
    Some(Value::Object(out))
}

/// One metric of a Flagger `Canary`'s analysis, as a plan metric.
///
/// `base` holds the Canary's own template variables (`target`, `service`, `name`, `ingress`);
/// `{{ interval }}` is the metric's interval, as in Flagger.
pub(crate) fn flagger(
    metric: &Value,
    base: &Vars,
    templates: &Templates<'_>,
    notes: &mut Notes<'_>,
    field: &str,
) -> Option<Value> {
    let name = str_at(metric, &["name"]).unwrap_or("metric");
    let min = at(metric, &["thresholdRange", "min"]).and_then(Value::as_f64);
    let max = at(metric, &["thresholdRange", "max"]).and_then(Value::as_f64);
    let mut out = Map::new();
    out.insert("name".into(), json!(name));
    if let Some(tref) = str_at(metric, &["templateRef", "name"]) {
        let mut vars = base.clone();
        let interval = metric.get("interval").and_then(Value::as_str);
        // Flagger's default metric interval.
        let interval = interval.unwrap_or("1m").to_owned();
        vars.insert("interval".into(), Var::Text(interval));
        vars.extend(
            metric
                .get("templateVariables")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| {
                    Some((format!("variables.{k}"), Var::Text(v.as_str()?.to_owned())))
                }),
        );
        let q = template_query(tref, &vars, templates, notes, field)?;
        out.insert("query".into(), json!(q));
    } else {
        match name {
            "request-success-rate" => out.insert("template".into(), json!("istio-success-rate")),
            "request-duration" => out.insert("template".into(), json!("istio-latency-p99")),
            _ => {
                notes.add(
                    field,
                    format!("metric {name}: neither a built-in metric nor a templateRef"),
                );
                return None;
            }
        };
    }
    for (key, bound) in [("min", min), ("max", max)] {
        if let Some(v) = bound {
            out.insert(key.into(), json!(v));
        }
    }
    if min.is_none() && max.is_none() {
        notes.add(
            field,
            format!("metric {name}: no thresholdRange: metric left out"),
        );
        return None;
    }
    Some(Value::Object(out))
}

fn template_query(
    name: &str,
    vars: &Vars,
    templates: &Templates<'_>,
    notes: &mut Notes<'_>,
    field: &str,
) -> Option<String> {
    let Some(doc) = Templates::find(&templates.flagger, name) else {
        notes.add(
            format!("{field}.templateRef"),
            format!("MetricTemplate {name} is not in the given files: give it too"),
        );
        return None;
    };
    let provider = str_at(&doc.value, &["spec", "provider", "type"]).unwrap_or("");
    if provider != "prometheus" {
        notes.add(
            format!("{field}.templateRef"),
            format!("MetricTemplate {name} uses provider `{provider}`: only Prometheus"),
        );
        return None;
    }
    let text = str_at(&doc.value, &["spec", "query"]).unwrap_or("");
    query(
        text,
        vars,
        notes,
        &format!("{field}.templateRef → {}: spec.query", doc.file),
    )
}

/// The analysis interval of a metric, in seconds.
pub(crate) fn interval(metric: &Value) -> Option<u64> {
    metric.get("interval").and_then(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_conditions_become_bounds() {
        assert_eq!(condition("result[0] >= 0.95"), Some(("min", 0.95)));
        assert_eq!(condition(" result[0] < 0.1 "), Some(("max", 0.1)));
        assert_eq!(condition("result <= 3"), Some(("max", 3.0)));
        assert_eq!(condition("result[0] >= 0.9 && result[0] < 1"), None);
        assert_eq!(condition("len(result) == 0"), None);
    }

    #[test]
    fn queries_keep_tidegate_variables_and_refuse_others() {
        let mut notes = Notes {
            file: "f.yaml",
            findings: Vec::new(),
        };
        let vars = Vars::from([
            ("args.ns".to_string(), Var::Text("prod".into())),
            ("target".to_string(), Var::Text("podinfo".into())),
            (
                "args.hash".to_string(),
                Var::Unknown("known at run time".into()),
            ),
        ]);
        let text = "rate(x{app=\"{{target}}\",ns=\"{{args.ns}}\"}[{{ interval }}])";
        let q = query(text, &vars, &mut notes, "q");
        let want = "rate(x{app=\"podinfo\",ns=\"prod\"}[{{ interval }}])";
        assert_eq!(q.as_deref(), Some(want));
        assert_eq!(
            query("x{a=\"{{ args.svc }}\"}", &vars, &mut notes, "q"),
            None
        );
        assert_eq!(
            query("x{h=\"{{args.hash}}\"}", &vars, &mut notes, "q"),
            None
        );
        assert_eq!(notes.findings.len(), 2);
        assert!(notes.findings[0].message.contains("{{ args.svc }}"));
        assert_eq!(
            notes.findings[1].message,
            "the query uses `{{ args.hash }}`, known at run time: metric left out"
        );
    }
}
