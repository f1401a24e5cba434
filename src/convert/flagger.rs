//! Flagger `Canary` to a host-level plan: Flagger's generated VirtualService sends to the
//! `<apex>-primary` and `<apex>-canary` Services, and so does the plan.

use serde_json::{Map, Value, json};

use super::{
    Converted, Doc, Draft, Notes, Templates, at, duration, finish, hooks, metrics, seconds, str_at,
};

/// Analysis fields translated here; the others are findings.
const KNOWN: [&str; 11] = [
    "interval",
    "threshold",
    "maxWeight",
    "stepWeight",
    "stepWeights",
    "iterations",
    "match",
    "mirror",
    "mirrorWeight",
    "metrics",
    "webhooks",
];

pub(crate) fn convert<'a>(doc: &'a Doc<'a>, templates: &Templates<'_>) -> Converted {
    let mut draft = Draft {
        doc,
        kind: "Canary",
        spec: Map::new(),
        blocked: false,
        notes: Notes {
            file: doc.file,
            findings: Vec::new(),
        },
    };
    let v = &doc.value;
    top_level(v, &mut draft.notes);
    let service = routing(v, &mut draft);
    let empty = Value::Null;
    let analysis = at(v, &["spec", "analysis"]).unwrap_or(&empty);
    let interval = analysis.get("interval").and_then(seconds).unwrap_or(60);
    let mut steps = steps(analysis, interval, &mut draft.notes);
    let base = variables(v, &service);
    let checks = checks(analysis, interval, &base, templates, &mut draft.notes);
    let id = format!(
        "{}/{}",
        str_at(v, &["metadata", "namespace"]).unwrap_or(crate::plan::defaults::NAMESPACE),
        str_at(v, &["metadata", "name"]).unwrap_or("unnamed")
    );
    let hooks = hooks::flagger(analysis.get("webhooks"), &id, &mut draft.notes);
    if hooks.pause_first {
        steps.insert(0, json!({"pause": {}}));
    }
    if hooks.pause_last {
        steps.push(json!({"pause": {}}));
    }
    draft.spec.insert("steps".into(), Value::Array(steps));
    draft.spec.insert("analysis".into(), checks);
    if !hooks.notify.is_empty() {
        draft.spec.insert("notify".into(), json!(hooks.notify));
    }
    if let Some(secs) = at(v, &["spec", "progressDeadlineSeconds"]).and_then(seconds) {
        draft
            .spec
            .insert("progressDeadline".into(), json!(duration(secs)));
    }
    finish(draft)
}

/// Flagger's traffic model, kept: its VirtualService (named after the apex Service, as
/// `GetServiceNames` in Flagger's `pkg/apis/flagger/v1beta1/canary.go` names it) splits between
/// the hosts `<apex>-primary` and `<apex>-canary`. Returns the apex name.
fn routing(v: &Value, draft: &mut Draft<'_>) -> String {
    let service = str_at(v, &["spec", "service", "name"])
        .or_else(|| str_at(v, &["spec", "targetRef", "name"]))
        .or_else(|| str_at(v, &["metadata", "name"]))
        .unwrap_or_default()
        .to_owned();
    let provider = str_at(v, &["spec", "provider"]).unwrap_or("istio");
    if provider != "istio" {
        draft.notes.add(
            "spec.provider",
            format!(
                "provider `{provider}`: tidegate routes with Istio only; the plan splits with an \
                 Istio VirtualService {service}"
            ),
        );
    }
    let (primary, canary) = (format!("{service}-primary"), format!("{service}-canary"));
    let target = str_at(v, &["spec", "targetRef", "name"]).unwrap_or(&service);
    draft.notes.add(
        "spec.service",
        format!(
            "Flagger generates the VirtualService {service}, the Services {primary} and \
             {canary} and the workload {target}-primary; the plan splits between the hosts \
             {primary} and {canary} in the VirtualService {service}: keep them (in your \
             manifests) when the Canary goes"
        ),
    );
    let spec = &mut draft.spec;
    spec.insert("service".into(), json!(service));
    spec.insert("virtualService".into(), json!(service));
    spec.insert("stable".into(), json!({"host": primary}));
    spec.insert("canary".into(), json!({"host": canary}));
    service
}

/// `spec` fields other than the analysis: the workload and the generated Istio objects.
fn top_level(v: &Value, notes: &mut Notes<'_>) {
    for (key, value) in v
        .get("spec")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let message = match key.as_str() {
            "analysis" | "provider" | "progressDeadlineSeconds" => continue,
            "skipAnalysis" if value == &json!(false) => continue,
            "service" => {
                service_fields(value, notes);
                continue;
            }
            "targetRef" | "autoscalerRef" | "ingressRef" => {
                "workload management: tidegate does not deploy pods or scale them; deploy the \
                 canary yourself"
            }
            _ => "has no equivalent in a plan",
        };
        notes.add(format!("spec.{key}"), message);
    }
    for (key, _) in at(v, &["spec", "analysis"])
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if !KNOWN.contains(&key.as_str()) {
            notes.add(
                format!("spec.analysis.{key}"),
                "has no equivalent in a plan",
            );
        }
    }
}

fn service_fields(service: &Value, notes: &mut Notes<'_>) {
    for (key, _) in service.as_object().into_iter().flatten() {
        if !["name", "port", "targetPort", "portName", "portDiscovery"].contains(&key.as_str()) {
            notes.add(
                format!("spec.service.{key}"),
                "Flagger generates the VirtualService and the DestinationRules of both hosts; \
                 with tidegate they are yours: write this into them",
            );
        }
    }
}

/// Weight steps (each followed by an analysis interval), A/B header routing or mirroring.
fn steps(analysis: &Value, interval: u64, notes: &mut Notes<'_>) -> Vec<Value> {
    let analyze = json!({"analyze": duration(interval)});
    let mut out = Vec::new();
    if let Some(iterations) = analysis.get("iterations").and_then(Value::as_u64) {
        if analysis.get("mirror") == Some(&json!(true)) {
            let weight = analysis
                .get("mirrorWeight")
                .and_then(Value::as_u64)
                .unwrap_or(100);
            out.push(json!({"setMirror": weight}));
        }
        if let Some(route) = analysis.get("match").and_then(|m| header_route(m, notes)) {
            out.push(route);
        }
        if analysis.get("match").is_none() && analysis.get("mirror") != Some(&json!(true)) {
            notes.add(
                "spec.analysis.iterations",
                "blue/green: during the analysis the canary gets only the traffic your load \
                 tests send it; a plan analyses it at weight 0, so give it traffic (a header \
                 route or a weight step)",
            );
        }
        out.push(json!({"analyze": duration(interval * iterations)}));
        return out;
    }
    let weights: Vec<u64> = match analysis.get("stepWeights").and_then(Value::as_array) {
        Some(list) => list.iter().filter_map(Value::as_u64).collect(),
        None => {
            let step = analysis
                .get("stepWeight")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let max = analysis
                .get("maxWeight")
                .and_then(Value::as_u64)
                .unwrap_or(100);
            (1..)
                .map(|i| i * step)
                .take_while(|w| step > 0 && *w <= max)
                .collect()
        }
    };
    if weights.is_empty() {
        notes.add(
            "spec.analysis",
            "neither stepWeight(s) nor iterations: no steps",
        );
    }
    for w in weights {
        out.push(json!({"setWeight": w}));
        out.push(analyze.clone());
    }
    out
}

/// Flagger's A/B `match` (Istio HTTPMatchRequests) to a `setHeaderRoute` step.
fn header_route(list: &Value, notes: &mut Notes<'_>) -> Option<Value> {
    let list = list.as_array()?;
    for (i, m) in list.iter().enumerate() {
        for (key, _) in m.as_object().into_iter().flatten() {
            if key != "headers" || i > 0 {
                notes.add(
                    format!("spec.analysis.match[{i}].{key}"),
                    "a plan's setHeaderRoute matches the headers of one entry only: left out",
                );
            }
        }
    }
    let headers = list.first().and_then(|m| m.get("headers"))?.clone();
    Some(json!({"setHeaderRoute": {"headers": headers}}))
}

/// Interval, failure limit and metrics.
fn checks(
    analysis: &Value,
    interval: u64,
    base: &metrics::Vars,
    templates: &Templates<'_>,
    notes: &mut Notes<'_>,
) -> Value {
    let mut out = Map::new();
    out.insert("interval".into(), json!(duration(interval)));
    if let Some(threshold) = analysis.get("threshold").and_then(Value::as_u64) {
        out.insert("failureLimit".into(), json!(threshold.max(1)));
    }
    let mut list = Vec::new();
    let metrics = analysis.get("metrics").and_then(Value::as_array);
    for (i, metric) in metrics.into_iter().flatten().enumerate() {
        let field = format!("spec.analysis.metrics[{i}]");
        if metrics::interval(metric).is_some_and(|s| s != interval) {
            notes.add(
                format!("{field}.interval"),
                "a plan has one analysis interval for all metrics: the metric's own interval is not carried over",
            );
        }
        if let Some(m) = metrics::flagger(metric, base, templates, notes, &field) {
            list.push(m);
        }
    }
    out.insert("metrics".into(), Value::Array(list));
    Value::Object(out)
}

/// Flagger's template variables other than `namespace` (the plan's own) and `interval` (per
/// metric), filled in literally as Flagger renders them: `target` is the canary workload
/// (`targetRef.name`), `service` the apex Service, `name` the Canary, `ingress` the
/// `ingressRef` (else the target).
fn variables(v: &Value, service: &str) -> metrics::Vars {
    let text = |s: &str| metrics::Var::Text(s.to_owned());
    let target = str_at(v, &["spec", "targetRef", "name"]);
    let mut vars = metrics::Vars::new();
    vars.insert(
        "target".into(),
        target.map(text).unwrap_or_else(|| {
            metrics::Var::Unknown(
                "Flagger's canary workload, but the Canary has no targetRef".into(),
            )
        }),
    );
    vars.insert("service".into(), text(service));
    let name = str_at(v, &["metadata", "name"]).unwrap_or(service);
    vars.insert("name".into(), text(name));
    let ingress = str_at(v, &["spec", "ingressRef", "name"]).or(target);
    if let Some(ingress) = ingress {
        vars.insert("ingress".into(), text(ingress));
    }
    vars
}
