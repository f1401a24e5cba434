//! Argo Rollouts `Rollout` (canary strategy with Istio traffic routing) to a plan.

use serde_json::{Map, Value, json};

use super::{
    Converted, Doc, Draft, Notes, Templates, at, duration, finish, metrics, seconds, str_at,
    unknown_keys,
};

const CANARY: &str = "spec.strategy.canary";

/// Metrics, interval and failure limit gathered from the analysis templates a Rollout names.
#[derive(Default)]
struct Analysis {
    metrics: Vec<Value>,
    interval: Option<u64>,
    failure_limit: Option<u64>,
}

impl Analysis {
    /// The plan's `analysis`, when any metric was carried over.
    fn into_spec(self) -> Option<Value> {
        if self.metrics.is_empty() {
            return None;
        }
        let mut a = Map::new();
        a.insert(
            "interval".into(),
            json!(duration(self.interval.unwrap_or(30))),
        );
        if let Some(limit) = self.failure_limit {
            a.insert("failureLimit".into(), json!(limit));
        }
        a.insert("metrics".into(), Value::Array(self.metrics));
        Some(Value::Object(a))
    }
}

pub(crate) fn convert<'a>(
    doc: &'a Doc<'a>,
    docs: &[Doc<'_>],
    templates: &Templates<'_>,
) -> Converted {
    let mut draft = Draft {
        doc,
        kind: "Rollout",
        spec: Map::new(),
        blocked: false,
        notes: Notes {
            file: doc.file,
            findings: Vec::new(),
        },
    };
    workload(&doc.value, &mut draft.notes);
    let Some(canary) = at(&doc.value, &["spec", "strategy", "canary"]) else {
        draft.notes.add(
            "spec.strategy",
            "only the canary strategy can be carried over",
        );
        draft.blocked = true;
        return finish(draft);
    };
    routing(canary, docs, &mut draft);
    let mut analysis = Analysis::default();
    if let Some(background) = canary.get("analysis") {
        let field = format!("{CANARY}.analysis");
        gather(
            background,
            &doc.value,
            &field,
            templates,
            &mut analysis,
            &mut draft.notes,
        );
    }
    let steps = steps(
        canary,
        &doc.value,
        templates,
        &mut analysis,
        &mut draft.notes,
    );
    draft.spec.insert("steps".into(), Value::Array(steps));
    if let Some(analysis) = analysis.into_spec() {
        draft.spec.insert("analysis".into(), analysis);
    }
    if let Some(secs) = at(&doc.value, &["spec", "progressDeadlineSeconds"]).and_then(seconds) {
        draft
            .spec
            .insert("progressDeadline".into(), json!(duration(secs)));
    }
    unsupported(canary, &mut draft.notes);
    finish(draft)
}

/// Fields of the canary strategy and its Istio routing that a plan has no place for.
fn unsupported(canary: &Value, notes: &mut Notes<'_>) {
    let known = [
        "steps",
        "trafficRouting",
        "analysis",
        "stableService",
        "canaryService",
    ];
    unknown_keys(Some(canary), &known, CANARY, notes);
    let field = format!("{CANARY}.trafficRouting");
    let routing = canary.get("trafficRouting");
    unknown_keys(routing, &["istio", "managedRoutes"], &field, notes);
    let istio = routing.and_then(|r| r.get("istio"));
    let known = ["virtualService", "virtualServices", "destinationRule"];
    unknown_keys(istio, &known, &format!("{field}.istio"), notes);
}

/// Everything under `spec` but the strategy: the workload, which tidegate does not manage.
fn workload(rollout: &Value, notes: &mut Notes<'_>) {
    for (key, _) in rollout
        .get("spec")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if key != "strategy" && key != "progressDeadlineSeconds" {
            notes.add(
                format!("spec.{key}"),
                "workload management: tidegate does not deploy pods; deploy the canary's \
                 pods (behind its subset or Service) yourself",
            );
        }
    }
}

/// VirtualService, routes and the two sides: DestinationRule subsets (subset-level) or the
/// `stableService`/`canaryService` hosts (host-level), as the Rollout splits.
fn routing(canary: &Value, docs: &[Doc<'_>], draft: &mut Draft<'_>) {
    if canary.get("trafficRouting").is_none() {
        return unrouted(canary, draft);
    }
    let Some(istio) = at(canary, &["trafficRouting", "istio"]) else {
        draft.notes.add(
            format!("{CANARY}.trafficRouting"),
            "only Istio traffic routing can be carried over",
        );
        draft.blocked = true;
        return;
    };
    let field = format!("{CANARY}.trafficRouting.istio");
    let vs = virtual_service(istio, &field, draft);
    match istio.get("destinationRule") {
        Some(dr) => subsets(dr, canary, docs, &field, draft),
        None => hosts(canary, vs, docs, &field, draft),
    }
}

/// No traffic routing: Argo approximates the weights by replica counts behind one Service.
/// tidegate moves requests in a VirtualService, so the plan splits by host between the
/// Rollout's `stableService`/`canaryService` (else `<name>-stable`/`<name>-canary`) in a
/// VirtualService `<name>`: objects to create, which the finding names.
fn unrouted(canary: &Value, draft: &mut Draft<'_>) {
    let name = str_at(&draft.doc.value, &["metadata", "name"]).unwrap_or("unnamed");
    let stable =
        str_at(canary, &["stableService"]).map_or_else(|| format!("{name}-stable"), str::to_owned);
    let canary_svc =
        str_at(canary, &["canaryService"]).map_or_else(|| format!("{name}-canary"), str::to_owned);
    draft.notes.add(
        format!("{CANARY}.trafficRouting"),
        format!(
            "no traffic routing: Argo shifts this Rollout's traffic by replica counts, tidegate \
             in an Istio VirtualService; the plan splits by host in a VirtualService {name} \
             (host {name}) between the Services {stable} and {canary_svc}: create them, or \
             edit the plan to name yours"
        ),
    );
    let spec = &mut draft.spec;
    spec.insert("service".into(), json!(name));
    spec.insert("virtualService".into(), json!(name));
    spec.insert("stable".into(), json!({"host": stable}));
    spec.insert("canary".into(), json!({"host": canary_svc}));
}

/// Subset-level: the DestinationRule's host is the service, its subsets the two sides.
fn subsets(dr: &Value, canary: &Value, docs: &[Doc<'_>], field: &str, draft: &mut Draft<'_>) {
    let dr_name = str_at(dr, &["name"]).unwrap_or_default();
    let host = find(docs, "DestinationRule", dr_name).and_then(|d| str_at(d, &["spec", "host"]));
    let service = host.unwrap_or_else(|| {
        draft.notes.add(
            format!("{field}.destinationRule.name"),
            format!("DestinationRule {dr_name} is not in the given files: `service` set to its name; check it"),
        );
        dr_name
    });
    for key in ["stableService", "canaryService"] {
        if canary.get(key).is_some() {
            draft.notes.add(
                format!("{CANARY}.{key}"),
                "the plan splits by the DestinationRule's subsets, as the Rollout does: the \
                 Service is not used",
            );
        }
    }
    let spec = &mut draft.spec;
    spec.insert("service".into(), json!(service));
    spec.insert("destinationRule".into(), json!(dr_name));
    spec.insert(
        "stable".into(),
        json!(str_at(dr, &["stableSubsetName"]).unwrap_or("stable")),
    );
    spec.insert(
        "canary".into(),
        json!(str_at(dr, &["canarySubsetName"]).unwrap_or("canary")),
    );
}

/// Host-level: the VirtualService sends to the `stableService` and `canaryService` hosts; the
/// service is the host clients address (the VirtualService's, when it is in the files).
fn hosts(canary: &Value, vs: Option<&str>, docs: &[Doc<'_>], field: &str, draft: &mut Draft<'_>) {
    let stable = str_at(canary, &["stableService"]);
    let canary_svc = str_at(canary, &["canaryService"]);
    let (Some(stable), Some(canary_svc)) = (stable, canary_svc) else {
        draft.notes.add(
            field,
            "neither a destinationRule (subset-level) nor both stableService and canaryService \
             (host-level): nothing to split between",
        );
        draft.blocked = true;
        return;
    };
    let vs_name = vs.unwrap_or_default();
    let vs_hosts = find(docs, "VirtualService", vs_name)
        .and_then(|d| at(d, &["spec", "hosts"]))
        .and_then(Value::as_array);
    let vs_hosts: Vec<&str> = vs_hosts
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let service = match vs_hosts.as_slice() {
        [] => {
            draft.notes.add(
                format!("{field}.virtualService.name"),
                format!(
                    "VirtualService {vs_name} is not in the given files (or has no hosts): \
                     `service` set to its name; write the host clients address"
                ),
            );
            vs_name
        }
        [host] => host,
        [host, ..] => {
            draft.notes.add(
                format!("{field}.virtualService.name"),
                format!(
                    "VirtualService {vs_name} has several hosts: `service` set to the first, \
                     {host}"
                ),
            );
            host
        }
    };
    let spec = &mut draft.spec;
    spec.insert("service".into(), json!(service));
    spec.insert("stable".into(), json!({"host": stable}));
    spec.insert("canary".into(), json!({"host": canary_svc}));
}

/// The `metadata.name`d object of `kind` in the files.
fn find<'d>(docs: &'d [Doc<'_>], kind: &str, name: &str) -> Option<&'d Value> {
    docs.iter()
        .map(|d| &d.value)
        .filter(|v| str_at(v, &["kind"]) == Some(kind))
        .find(|v| str_at(v, &["metadata", "name"]) == Some(name))
}

/// The plan's VirtualService and routes; returns the VirtualService's name.
fn virtual_service<'v>(istio: &'v Value, field: &str, draft: &mut Draft<'_>) -> Option<&'v str> {
    let vs = match (istio.get("virtualService"), istio.get("virtualServices")) {
        (Some(vs), _) => Some(vs),
        (None, Some(Value::Array(list))) => {
            if list.len() > 1 {
                draft.notes.add(
                    format!("{field}.virtualServices"),
                    "a plan manages one VirtualService: only the first is carried over",
                );
            }
            list.first()
        }
        _ => None,
    };
    let vs = vs?;
    let name = str_at(vs, &["name"]).map(|n| n.split('.').next().unwrap_or(n));
    if let Some(name) = name {
        draft.spec.insert("virtualService".into(), json!(name));
    }
    if let Some(routes) = vs.get("routes").filter(|r| r.is_array()) {
        draft.spec.insert("routes".into(), routes.clone());
    }
    if vs.get("tlsRoutes").is_some() || vs.get("tcpRoutes").is_some() {
        draft.notes.add(
            format!("{field}.virtualService"),
            "only http routes can be carried over",
        );
    }
    name
}

fn steps(
    canary: &Value,
    rollout: &Value,
    templates: &Templates<'_>,
    analysis: &mut Analysis,
    notes: &mut Notes<'_>,
) -> Vec<Value> {
    let mut out = Vec::new();
    let list = canary.get("steps").and_then(Value::as_array);
    for (i, step) in list.into_iter().flatten().enumerate() {
        let field = format!("{CANARY}.steps[{i}]");
        let Some((key, body)) = step.as_object().and_then(|m| m.iter().next()) else {
            notes.add(field, "not a step");
            continue;
        };
        let converted = match key.as_str() {
            "setWeight" => body.as_u64().map(|w| json!({"setWeight": w})),
            "pause" => Some(pause(body)),
            "analysis" => {
                gather(
                    body,
                    rollout,
                    &format!("{field}.analysis"),
                    templates,
                    analysis,
                    notes,
                );
                Some(json!({"analyze": "ANALYZE"}))
            }
            "setHeaderRoute" => header_route(body, &field, notes),
            "setMirrorRoute" => mirror_route(body, &field, notes),
            _ => None,
        };
        match converted {
            Some(step) => out.push(step),
            None => notes.add(
                format!("{field}.{key}"),
                format!("step `{key}` has no equivalent: left out"),
            ),
        }
    }
    let interval = json!(duration(analysis.interval.unwrap_or(30)));
    for step in &mut out {
        if let Some(a) = step.get_mut("analyze") {
            *a = interval.clone();
        }
    }
    out
}

fn pause(body: &Value) -> Value {
    match body.get("duration").and_then(seconds) {
        Some(secs) => json!({"pause": duration(secs)}),
        None => json!({"pause": {}}),
    }
}

fn header_route(body: &Value, field: &str, notes: &mut Notes<'_>) -> Option<Value> {
    let matches = body.get("match").and_then(Value::as_array)?;
    let mut headers = Map::new();
    for (i, m) in matches.iter().enumerate() {
        let name = str_at(m, &["headerName"]);
        let value = m.get("headerValue").and_then(Value::as_object);
        match (name, value) {
            (Some(name), Some(value)) => {
                headers.insert(name.to_owned(), Value::Object(value.clone()));
            }
            _ => notes.add(
                format!("{field}.setHeaderRoute.match[{i}]"),
                "not a header match: left out",
            ),
        }
    }
    if matches.len() > 1 {
        notes.add(
            format!("{field}.setHeaderRoute.match"),
            "Argo sends requests matching any entry; a plan's setHeaderRoute needs all headers to match",
        );
    }
    (!headers.is_empty()).then(|| json!({"setHeaderRoute": {"headers": headers}}))
}

fn mirror_route(body: &Value, field: &str, notes: &mut Notes<'_>) -> Option<Value> {
    if body.get("match").is_some() {
        notes.add(
            format!("{field}.setMirrorRoute.match"),
            "a plan mirrors all of the stable traffic's share: the match is not carried over",
        );
    }
    let percentage = body
        .get("percentage")
        .and_then(Value::as_u64)
        .unwrap_or(100);
    body.get("match").map(|_| json!({"setMirror": percentage}))
}

/// `args` (`{name, value}` or `{name, valueFrom}`) as query variables `args.<name>`. A
/// `valueFrom` that the files answer (the Rollout's namespace, name, labels, annotations) is
/// filled in; any other is a value Argo reads at run time, which tidegate cannot know.
fn args(list: Option<&Value>, rollout: &Value) -> metrics::Vars {
    let list = list.and_then(Value::as_array).into_iter().flatten();
    list.filter_map(|a| {
        let name = str_at(a, &["name"])?;
        let var = match (str_at(a, &["value"]), a.get("valueFrom")) {
            (Some(value), _) => metrics::Var::Text(value.to_owned()),
            (None, Some(from)) => value_from(name, from, rollout),
            (None, None) => metrics::Var::Unknown(format!(
                "and arg {name} is declared without a value and given none by the Rollout"
            )),
        };
        Some((format!("args.{name}"), var))
    })
    .collect()
}

/// An arg's `valueFrom`, when the files answer it.
fn value_from(name: &str, from: &Value, rollout: &Value) -> metrics::Var {
    use metrics::Var::{Text, Unknown};
    let runtime = "tidegate fills in no values known only at run time";
    if let Some(hash) = str_at(from, &["podTemplateHashValue"]) {
        let side = if hash == "Stable" { "stable" } else { "canary" };
        return Unknown(format!(
            "and arg {name} is `valueFrom.podTemplateHashValue: {hash}`, the pod template hash \
             Argo reads from the {side} ReplicaSet at run time; {runtime} and deploys no pods \
             (select the {side} by its Service with `{{{{ service }}}}` or by a subset label \
             with `{{{{ {side}.<label> }}}}` instead)"
        ));
    }
    if let Some(path) = str_at(from, &["fieldRef", "fieldPath"]) {
        let meta = |key: &str| {
            let (kind, rest) = path.split_once('[')?;
            let key_name = rest.strip_suffix(']')?.trim_matches(['\'', '"']);
            (kind == key).then_some(key_name)
        };
        let known = match path {
            // The plan's namespace is the Rollout's.
            "metadata.namespace" => Some("{{ namespace }}"),
            "metadata.name" => str_at(rollout, &["metadata", "name"]),
            _ => [
                ("metadata.labels", "labels"),
                ("metadata.annotations", "annotations"),
            ]
            .into_iter()
            .find_map(|(k, field)| {
                let key = meta(k)?;
                str_at(rollout, &["metadata", field, key])
            }),
        };
        return match known {
            Some(value) => Text(value.to_owned()),
            None => Unknown(format!(
                "and arg {name} is `valueFrom.fieldRef: {path}`, read from the live Rollout and \
                 not in the given files; {runtime}"
            )),
        };
    }
    if let Some(secret) = from.get("secretKeyRef") {
        let secret_name = str_at(secret, &["name"]).unwrap_or("?");
        let key = str_at(secret, &["key"]).unwrap_or("?");
        return Unknown(format!(
            "and arg {name} is `valueFrom.secretKeyRef` (Secret {secret_name}, key {key}), read \
             at run time; {runtime} and reads no Secrets into queries (a plan is committed text)"
        ));
    }
    Unknown(format!(
        "and arg {name} has a `valueFrom` tidegate cannot resolve; {runtime}"
    ))
}

/// Metrics of the templates named in `step.templates` (an analysis step or the background
/// analysis), with its `args` filled in, added to `analysis` once each.
fn gather(
    step: &Value,
    rollout: &Value,
    field: &str,
    templates: &Templates<'_>,
    analysis: &mut Analysis,
    notes: &mut Notes<'_>,
) {
    unknown_keys(Some(step), &["templates", "args"], field, notes);
    let list = step.get("templates").and_then(Value::as_array);
    for (i, entry) in list.into_iter().flatten().enumerate() {
        let name = str_at(entry, &["templateName"]).unwrap_or_default();
        let Some(doc) = Templates::find(&templates.argo, name) else {
            notes.add(
                format!("{field}.templates[{i}]"),
                format!("AnalysisTemplate {name} is not in the given files: give it too"),
            );
            continue;
        };
        let mut vars = args(at(&doc.value, &["spec", "args"]), rollout);
        vars.extend(args(step.get("args"), rollout));
        let list = at(&doc.value, &["spec", "metrics"]).and_then(Value::as_array);
        for (j, metric) in list.into_iter().flatten().enumerate() {
            let mfield = format!("{field}.templates[{i}] → {}: spec.metrics[{j}]", doc.file);
            let name = str_at(metric, &["name"]);
            if analysis
                .metrics
                .iter()
                .any(|m| str_at(m, &["name"]) == name)
            {
                continue;
            }
            let Some(converted) = metrics::argo(metric, &vars, notes, &mfield) else {
                continue;
            };
            analysis.interval = analysis.interval.or_else(|| metrics::interval(metric));
            // Argo fails a metric once it failed more than `failureLimit` times (default 0).
            let limit = metric
                .get("failureLimit")
                .and_then(Value::as_u64)
                .unwrap_or(0)
                + 1;
            analysis.failure_limit = Some(analysis.failure_limit.map_or(limit, |l| l.min(limit)));
            analysis.metrics.push(converted);
        }
    }
}
