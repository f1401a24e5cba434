//! Turning YAML text into validated plans, collecting every finding on the way.
//!
//! The decoder walks the positioned node tree of `yaml.rs` and checks types, unknown fields and
//! the meaning of values in one pass. It never stops at the first mistake: a plan with five
//! errors reports five findings, each with file, line, column, field path and a fix hint.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use croner::parser::{CronParser, Seconds, Year};
use serde::Serialize;
use serde_saphyr::Spanned;

use super::defaults;
use super::model::*;
use super::yaml::{self, Node, SNode};
use crate::plan::template::{Template, Unit};

/// One thing wrong with a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub file: String,
    pub line: u64,
    pub column: u64,
    /// Dotted path of the field (`spec.steps[2].setWeight`); empty for the whole document.
    pub field: String,
    pub message: String,
    /// What to do about it.
    pub hint: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        write!(f, "{}", self.message)?;
        if !self.hint.is_empty() {
            write!(f, " (fix: {})", self.hint)?;
        }
        Ok(())
    }
}

/// The result of reading one file: the plans that are valid, and every finding.
/// A document with findings yields no plan, but never hides the other documents.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    pub plans: Vec<Plan>,
    pub findings: Vec<Finding>,
    /// Names of documents that failed validation (`namespace/name`, when it could be read), so
    /// the daemon can give each an `Invalid` status.
    pub invalid: Vec<(Option<RolloutId>, Vec<Finding>)>,
}

/// Parse and validate every document in `text` as a `Rollout`. `file` names the source in
/// findings. Every document must be a plan (this is how the plans folder is read).
pub fn parse_str(file: &str, text: &str) -> Parsed {
    parse_documents(file, text, false)
}

/// Like [`parse_str`], but skips documents that are not tidegate's (another `apiVersion`, such
/// as the Istio manifests that sit beside plans in `examples/`). For folder walks.
pub fn parse_mixed_str(file: &str, text: &str) -> Parsed {
    parse_documents(file, text, true)
}

fn is_foreign(doc: &SNode) -> bool {
    let Node::Map(top) = &doc.value else {
        return true;
    };
    match top.iter().find(|(k, _)| k.value == "apiVersion") {
        Some((_, v)) => !matches!(&v.value, Node::Str(s) if s.starts_with("tidegate.dev/")),
        None => !top
            .iter()
            .any(|(k, _)| k.value == "kind" || k.value == "spec"),
    }
}

fn parse_documents(file: &str, text: &str, skip_foreign: bool) -> Parsed {
    let mut out = Parsed::default();
    let docs = match yaml::documents(text) {
        Ok(docs) => docs,
        Err(e) => {
            let finding = Finding {
                file: file.to_owned(),
                line: e.line,
                column: e.column,
                field: String::new(),
                message: format!("not valid YAML: {}", e.message),
                hint: "fix the YAML syntax at this position (indentation, quotes, brackets)".into(),
            };
            out.findings.push(finding.clone());
            out.invalid.push((None, vec![finding]));
            return out;
        }
    };
    let docs: Vec<SNode> = if skip_foreign {
        docs.into_iter().filter(|d| !is_foreign(d)).collect()
    } else {
        docs
    };
    if docs.is_empty() && !skip_foreign {
        let finding = Finding {
            file: file.to_owned(),
            line: 1,
            column: 1,
            field: String::new(),
            message: "the file holds no Rollout document".into(),
            hint: format!("start the file with `apiVersion: {API_VERSION}` and `kind: {KIND}`"),
        };
        out.findings.push(finding.clone());
        out.invalid.push((None, vec![finding]));
    }
    for doc in &docs {
        let mut ctx = Ctx {
            file,
            findings: Vec::new(),
        };
        let plan = ctx.rollout(doc);
        if ctx.findings.is_empty() {
            if let Some(plan) = plan {
                out.plans.push(plan);
            }
        } else {
            let id = ctx.id_of(doc);
            out.findings.extend(ctx.findings.iter().cloned());
            out.invalid.push((id, ctx.findings));
        }
    }
    out
}

/// Checks that need every plan at once: duplicate `namespace/name` across documents and files.
/// Returns findings for every duplicate after the first, pointing at both places.
pub fn check_set<'a>(plans: impl IntoIterator<Item = &'a Plan>) -> Vec<Finding> {
    let mut seen: HashMap<&RolloutId, &Location> = HashMap::new();
    let mut out = Vec::new();
    for plan in plans {
        if let Some(first) = seen.get(&plan.id) {
            out.push(Finding {
                file: plan.location.file.clone(),
                line: plan.location.line,
                column: plan.location.column,
                field: "metadata.name".into(),
                message: format!("rollout {} is already defined at {first}", plan.id),
                hint: "give every rollout a unique namespace/name, or delete one of the two".into(),
            });
        } else {
            seen.insert(&plan.id, &plan.location);
        }
    }
    out
}

/// The fields of one metric that shape its comparison with stable.
struct CompareNodes<'a> {
    tolerance: Option<&'a SNode>,
    test: Option<&'a SNode>,
    confidence: Option<&'a SNode>,
    scrape_interval: Option<&'a SNode>,
}

struct Ctx<'f> {
    file: &'f str,
    findings: Vec<Finding>,
}

/// A mapping being read: remembers which keys were asked for, so that every other key can be
/// reported as unknown, with the list of known ones.
struct Fields<'a> {
    entries: &'a [(Spanned<String>, SNode)],
    path: String,
    known: Vec<&'static str>,
}

impl<'a> Fields<'a> {
    fn get(&mut self, key: &'static str) -> Option<&'a SNode> {
        if !self.known.contains(&key) {
            self.known.push(key);
        }
        self.entries
            .iter()
            .find(|(k, _)| k.value == key)
            .map(|(_, v)| v)
    }
}

/// A Service host in its shortest form for a plan in `namespace`: the fully qualified name of
/// a Service of that namespace becomes its short name; any other host stays as written (so
/// writing `orders-canary.<namespace>.svc.cluster.local` for `orders-canary` is no new release).
fn short_host(host: &str, namespace: &str) -> String {
    host.strip_suffix(&format!(".{namespace}.svc.cluster.local"))
        .filter(|name| !name.contains('.'))
        .unwrap_or(host)
        .to_string()
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

impl Ctx<'_> {
    fn report(&mut self, node_line: u64, node_col: u64, field: &str, message: String, hint: &str) {
        self.findings.push(Finding {
            file: self.file.to_owned(),
            line: node_line,
            column: node_col,
            field: field.to_owned(),
            message,
            hint: hint.to_owned(),
        });
    }

    fn at<T>(&mut self, node: &Spanned<T>, field: &str, message: String, hint: &str) {
        self.report(
            node.referenced.line(),
            node.referenced.column(),
            field,
            message,
            hint,
        );
    }

    fn location(&self, node: &SNode) -> Location {
        Location {
            file: self.file.to_owned(),
            line: node.referenced.line(),
            column: node.referenced.column(),
        }
    }

    fn fields<'a>(&mut self, node: &'a SNode, path: &str) -> Option<Fields<'a>> {
        match &node.value {
            Node::Map(entries) => Some(Fields {
                entries,
                path: path.to_owned(),
                known: Vec::new(),
            }),
            other => {
                let kind = other.kind();
                self.at(
                    node,
                    path,
                    format!("expected a mapping, found {kind}"),
                    "write `key: value` pairs here",
                );
                None
            }
        }
    }

    /// Report every key of `fields` that was not asked for.
    fn finish(&mut self, fields: Fields<'_>) {
        for (key, _) in fields.entries {
            if !fields.known.contains(&key.value.as_str()) {
                let suggestion = closest(&key.value, &fields.known)
                    .map(|k| format!("did you mean `{k}`? "))
                    .unwrap_or_default();
                let hint = format!("{suggestion}known fields here: {}", fields.known.join(", "));
                self.at(
                    key,
                    &join(&fields.path, &key.value),
                    format!("unknown field `{}`", key.value),
                    &hint,
                );
            }
        }
    }

    fn string(&mut self, node: &SNode, path: &str) -> Option<String> {
        match &node.value {
            Node::Str(s) => Some(s.clone()),
            other => {
                let kind = other.kind();
                self.at(
                    node,
                    path,
                    format!("expected a string, found {kind}"),
                    "quote the value",
                );
                None
            }
        }
    }

    fn required_string(
        &mut self,
        f: &mut Fields<'_>,
        key: &'static str,
        parent: &SNode,
    ) -> Option<String> {
        let path = join(&f.path, key);
        match f.get(key) {
            Some(node) => {
                let s = self.string(node, &path)?;
                if s.trim().is_empty() {
                    self.at(node, &path, format!("`{key}` is empty"), "give it a value");
                    return None;
                }
                Some(s)
            }
            None => {
                self.at(
                    parent,
                    &path,
                    format!("missing required field `{key}`"),
                    &format!("add `{key}:` to `{}`", f.path),
                );
                None
            }
        }
    }

    fn optional_string(&mut self, f: &mut Fields<'_>, key: &'static str) -> Option<String> {
        let path = join(&f.path, key);
        f.get(key).and_then(|n| self.string(n, &path))
    }

    fn integer(
        &mut self,
        node: &SNode,
        path: &str,
        lo: i128,
        hi: i128,
        hint: &str,
    ) -> Option<i128> {
        match &node.value {
            Node::Int(i) if (lo..=hi).contains(i) => Some(*i),
            Node::Int(i) => {
                self.at(node, path, format!("{i} is outside {lo}..={hi}"), hint);
                None
            }
            other => {
                let kind = other.kind();
                self.at(
                    node,
                    path,
                    format!("expected an integer, found {kind}"),
                    hint,
                );
                None
            }
        }
    }

    fn number(&mut self, node: &SNode, path: &str) -> Option<f64> {
        match &node.value {
            Node::Int(i) => Some(*i as f64),
            Node::Float(x) if x.is_finite() => Some(*x),
            other => {
                let kind = other.kind();
                self.at(
                    node,
                    path,
                    format!("expected a number, found {kind}"),
                    "write a plain number such as 99 or 0.5",
                );
                None
            }
        }
    }

    fn duration(&mut self, node: &SNode, path: &str) -> Option<Duration> {
        const HINT: &str = "write a duration with a unit, such as 30s, 2m, 1h30m or 500ms";
        match &node.value {
            Node::Str(s) => match humantime::parse_duration(s.trim()) {
                Ok(d) if !d.is_zero() => Some(d),
                Ok(_) => {
                    self.at(node, path, "the duration is zero".into(), HINT);
                    None
                }
                Err(e) => {
                    self.at(node, path, format!("`{s}` is not a duration: {e}"), HINT);
                    None
                }
            },
            other => {
                let kind = other.kind();
                self.at(
                    node,
                    path,
                    format!("expected a duration, found {kind}"),
                    HINT,
                );
                None
            }
        }
    }

    fn dns_label(&mut self, node: &SNode, path: &str, value: &str) -> bool {
        let ok = !value.is_empty()
            && value.len() <= 63
            && value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !value.starts_with('-')
            && !value.ends_with('-');
        if !ok {
            self.at(
                node,
                path,
                format!("`{value}` is not a valid Kubernetes name"),
                "use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit",
            );
        }
        ok
    }

    /// The `namespace/name` of a document, when it can be read, for `Invalid` statuses.
    fn id_of(&self, doc: &SNode) -> Option<RolloutId> {
        let Node::Map(top) = &doc.value else {
            return None;
        };
        let (_, meta) = top.iter().find(|(k, _)| k.value == "metadata")?;
        let Node::Map(meta) = &meta.value else {
            return None;
        };
        let get = |key: &str| {
            meta.iter()
                .find(|(k, _)| k.value == key)
                .and_then(|(_, v)| match &v.value {
                    Node::Str(s) => Some(s.clone()),
                    _ => None,
                })
        };
        Some(RolloutId {
            name: get("name")?,
            namespace: get("namespace").unwrap_or_else(|| defaults::NAMESPACE.to_owned()),
        })
    }

    fn rollout(&mut self, doc: &SNode) -> Option<Plan> {
        let mut top = self.fields(doc, "")?;
        let api = self.required_string(&mut top, "apiVersion", doc);
        if let (Some(api), Some(node)) = (&api, top.get("apiVersion"))
            && api != API_VERSION
        {
            self.at(
                node,
                "apiVersion",
                format!("unsupported apiVersion `{api}`"),
                &format!("use `apiVersion: {API_VERSION}`"),
            );
        }
        let kind = self.required_string(&mut top, "kind", doc);
        if let (Some(kind), Some(node)) = (&kind, top.get("kind"))
            && kind != KIND
        {
            self.at(
                node,
                "kind",
                format!("unsupported kind `{kind}`"),
                &format!("use `kind: {KIND}`; other kinds do not belong in the plans folder"),
            );
        }
        let id = match top.get("metadata") {
            Some(meta) => self.metadata(meta),
            None => {
                self.at(
                    doc,
                    "metadata",
                    "missing required field `metadata`".into(),
                    "add `metadata:` with `name:` (and `namespace:`)",
                );
                None
            }
        };
        let spec = match top.get("spec") {
            Some(spec) => self.spec(spec),
            None => {
                self.at(
                    doc,
                    "spec",
                    "missing required field `spec`".into(),
                    "add `spec:` with service, stable, canary and steps",
                );
                None
            }
        };
        self.finish(top);
        let (id, mut spec) = (id?, spec?);
        if spec.split == Split::Host {
            spec.stable = short_host(&spec.stable, &id.namespace);
            spec.canary = short_host(&spec.canary, &id.namespace);
        }
        Some(Plan {
            id,
            location: self.location(doc),
            ..spec
        })
    }

    fn metadata(&mut self, node: &SNode) -> Option<RolloutId> {
        let mut f = self.fields(node, "metadata")?;
        let name = self.required_string(&mut f, "name", node);
        if let (Some(n), Some(nn)) = (&name, f.get("name")) {
            self.dns_label(nn, "metadata.name", n);
        }
        let namespace = self.optional_string(&mut f, "namespace");
        if let (Some(n), Some(nn)) = (&namespace, f.get("namespace")) {
            self.dns_label(nn, "metadata.namespace", n);
        }
        // Kubernetes-style metadata that tidegate keeps no use for but accepts.
        f.get("labels");
        f.get("annotations");
        self.finish(f);
        Some(RolloutId {
            name: name?,
            namespace: namespace.unwrap_or_else(|| defaults::NAMESPACE.to_owned()),
        })
    }

    fn spec(&mut self, node: &SNode) -> Option<Plan> {
        let mut f = self.fields(node, "spec")?;
        let service = self.required_string(&mut f, "service", node);
        let virtual_service = self.optional_string(&mut f, "virtualService");
        let destination_rule = self.optional_string(&mut f, "destinationRule");
        let routes = match f.get("routes") {
            Some(n) => self.string_list(n, "spec.routes"),
            None => Some(Vec::new()),
        };
        let sides = self.sides(&mut f, node);
        let destination_rule = match (&sides, destination_rule) {
            (Some((_, _, Split::Host)), Some(_)) => {
                if let Some(n) = f.get("destinationRule") {
                    self.at(
                        n,
                        "spec.destinationRule",
                        "a plan that splits by host uses no DestinationRule subsets".into(),
                        "remove `destinationRule`, or name subsets: `stable: v1`, `canary: v2`",
                    );
                }
                None
            }
            (_, dr) => dr,
        };
        let steps = match f.get("steps") {
            Some(n) => self.steps(n),
            None => {
                self.at(
                    node,
                    "spec.steps",
                    "missing required field `steps`".into(),
                    "add `steps:` with at least one step, e.g. `- setWeight: 10`",
                );
                None
            }
        };
        let analysis = match f.get("analysis") {
            Some(n) => self.analysis(n),
            None => Some(Analysis {
                interval: defaults::INTERVAL,
                failure_limit: defaults::FAILURE_LIMIT,
                min_requests: defaults::MIN_REQUESTS,
                unreachable_limit: defaults::UNREACHABLE_LIMIT,
                metrics: Vec::new(),
            }),
        };
        let window = match f.get("window") {
            Some(n) => self.window(n).map(Some),
            None => Some(None),
        };
        let on_success = match f.get("onSuccess") {
            Some(n) => match self.string(n, "spec.onSuccess").as_deref() {
                Some("promote") => Some(OnSuccess::Promote),
                Some("keep") => Some(OnSuccess::Keep),
                Some(other) => {
                    self.at(
                        n,
                        "spec.onSuccess",
                        format!("unknown onSuccess `{other}`"),
                        "use `promote` (100% to canary, tidegate's routes removed) or `keep`",
                    );
                    None
                }
                None => None,
            },
            None => Some(defaults::ON_SUCCESS),
        };
        let notify = match f.get("notify") {
            Some(n) => self.string_list(n, "spec.notify"),
            None => Some(Vec::new()),
        };
        let progress_deadline = match f.get("progressDeadline") {
            Some(n) => self.duration(n, "spec.progressDeadline").map(Some),
            None => Some(None),
        };
        let on_deadline = match f.get("onDeadline") {
            Some(n) => self.on_deadline(n),
            None => Some(OnDeadline::default()),
        };
        self.finish(f);
        let service = service?;
        let (stable, canary, split) = sides?;
        let short = defaults::object_name_for_service(&service);
        Some(Plan {
            id: RolloutId {
                namespace: String::new(),
                name: String::new(),
            },
            location: self.location(node),
            virtual_service: virtual_service.unwrap_or_else(|| short.clone()),
            destination_rule: match split {
                Split::Subset => Some(destination_rule.unwrap_or(short)),
                Split::Host => None,
            },
            service,
            routes: routes?,
            stable,
            canary,
            split,
            steps: steps?,
            analysis: analysis?,
            window: window?,
            on_success: on_success?,
            notify: notify?,
            progress_deadline: progress_deadline?,
            on_deadline: on_deadline?,
        })
    }

    /// `stable` and `canary`: two subsets (bare names or `{subset: v1}`) or two hosts
    /// (`{host: orders-primary}`), never one of each, never the same.
    fn sides(&mut self, f: &mut Fields<'_>, node: &SNode) -> Option<(String, String, Split)> {
        let stable = self.side(f, "stable", node);
        let canary = self.side(f, "canary", node);
        let ((s, ss), (c, cs)) = (stable?, canary?);
        let cn = f.get("canary")?;
        if ss != cs {
            self.at(
                cn,
                "spec.canary",
                format!(
                    "stable is a {} but canary is a {}: a plan splits by subset or by host",
                    ss.noun(),
                    cs.noun()
                ),
                "write both as subsets (`stable: v1`, `canary: v2`) or both as hosts \
                 (`stable: {host: orders-primary}`, `canary: {host: orders-canary}`)",
            );
            return None;
        }
        if s == c {
            let hint = match ss {
                Split::Subset => {
                    "name two different DestinationRule subsets, e.g. stable: v1, canary: v2"
                }
                Split::Host => {
                    "name two different Services, e.g. stable: {host: orders-primary}, canary: {host: orders-canary}"
                }
            };
            self.at(
                cn,
                "spec.canary",
                format!("stable and canary are the same {} `{s}`", ss.noun()),
                hint,
            );
            return None;
        }
        Some((s, c, ss))
    }

    /// One side: a bare subset name, or a mapping with exactly one of `subset` and `host`.
    fn side(
        &mut self,
        f: &mut Fields<'_>,
        key: &'static str,
        node: &SNode,
    ) -> Option<(String, Split)> {
        let path = join(&f.path, key);
        let Some(n) = f.get(key).filter(|n| matches!(n.value, Node::Map(_))) else {
            return self
                .required_string(f, key, node)
                .map(|s| (s, Split::Subset));
        };
        let mut g = self.fields(n, &path)?;
        let subset = self.optional_string(&mut g, "subset");
        let host = self.optional_string(&mut g, "host");
        // Unknown keys (`hots:`) get their own finding from `finish`.
        let empty = g.entries.is_empty();
        self.finish(g);
        let example = format!("write `{key}: {{host: orders-{key}}}` or `{key}: {{subset: v1}}`");
        match (subset, host) {
            (Some(s), None) if !s.trim().is_empty() => Some((s, Split::Subset)),
            (Some(_), None) => {
                let field = format!("{path}.subset");
                self.at(n, &field, "`subset` is empty".into(), &example);
                None
            }
            (None, Some(h)) if self.service_host(n, &format!("{path}.host"), &h) => {
                Some((h, Split::Host))
            }
            (None, None) => {
                if empty {
                    self.at(
                        n,
                        &path,
                        format!("`{key}` names neither a host nor a subset"),
                        &example,
                    );
                }
                None
            }
            (Some(_), Some(_)) => {
                self.at(
                    n,
                    &path,
                    format!("`{key}` names both a host and a subset"),
                    &example,
                );
                None
            }
            _ => None,
        }
    }

    /// A Service host: `name`, `name.namespace` or `name.namespace.svc.cluster.local`.
    fn service_host(&mut self, node: &SNode, path: &str, host: &str) -> bool {
        let ok = !host.is_empty()
            && host.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            });
        if !ok {
            self.at(
                node,
                path,
                format!("`{host}` is not a Service host"),
                "name a Kubernetes Service: `orders-canary` or `orders-canary.shop.svc.cluster.local` (no wildcards)",
            );
        }
        ok
    }

    fn on_deadline(&mut self, n: &SNode) -> Option<OnDeadline> {
        match self.string(n, "spec.onDeadline").as_deref() {
            Some("rollback") => Some(OnDeadline::Rollback),
            Some("pause") => Some(OnDeadline::Pause),
            Some(other) => {
                self.at(
                    n,
                    "spec.onDeadline",
                    format!("unknown onDeadline `{other}`"),
                    "use `rollback` (all traffic back to stable) or `pause` (hold for a person)",
                );
                None
            }
            None => None,
        }
    }

    fn string_list(&mut self, node: &SNode, path: &str) -> Option<Vec<String>> {
        let Node::Seq(items) = &node.value else {
            let kind = node.value.kind();
            self.at(
                node,
                path,
                format!("expected a list, found {kind}"),
                "write a list such as [a, b]",
            );
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match self.string(item, &format!("{path}[{i}]")) {
                Some(s) => out.push(s),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn steps(&mut self, node: &SNode) -> Option<Vec<Step>> {
        let Node::Seq(items) = &node.value else {
            let kind = node.value.kind();
            self.at(
                node,
                "spec.steps",
                format!("expected a list of steps, found {kind}"),
                "write each step as a list item, e.g. `- setWeight: 10`",
            );
            return None;
        };
        if items.is_empty() {
            self.at(
                node,
                "spec.steps",
                "the plan has no steps".into(),
                "add at least one step, e.g. `- setWeight: 10`",
            );
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        let mut last_weight: Option<(u8, usize)> = None;
        for (i, item) in items.iter().enumerate() {
            let path = format!("spec.steps[{i}]");
            match self.step(item, &path) {
                Some(step) => {
                    if let Step::SetWeight(w) = step {
                        if let Some((prev, at)) = last_weight
                            && w < prev
                        {
                            self.at(
                                    item,
                                    &format!("{path}.setWeight"),
                                    format!("weight goes down from {prev}% (step {at}) to {w}%"),
                                    "weights must never decrease; to send traffic back to stable, let tidegate roll back or abort",
                                );
                            ok = false;
                        }
                        last_weight = Some((w, i));
                    }
                    out.push(step);
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn step(&mut self, node: &SNode, path: &str) -> Option<Step> {
        const KINDS: &str = "setWeight, analyze, pause, setHeaderRoute, setMirror";
        let Node::Map(entries) = &node.value else {
            let kind = node.value.kind();
            self.at(
                node,
                path,
                format!("expected a step, found {kind}"),
                &format!("write one of: {KINDS}, e.g. `- setWeight: 10`"),
            );
            return None;
        };
        if entries.len() != 1 {
            self.at(
                node,
                path,
                format!("a step has exactly one kind, found {}", entries.len()),
                &format!("split it into separate list items, one of: {KINDS}"),
            );
            return None;
        }
        let (key, value) = &entries[0];
        let kpath = format!("{path}.{}", key.value);
        match key.value.as_str() {
            "setWeight" => self
                .integer(value, &kpath, 0, 100, "use a percentage between 0 and 100")
                .and_then(|w| u8::try_from(w).ok())
                .map(Step::SetWeight),
            "setMirror" => self
                .integer(value, &kpath, 0, 100, "use a percentage between 0 and 100")
                .and_then(|w| u8::try_from(w).ok())
                .map(Step::SetMirror),
            "analyze" => self.duration(value, &kpath).map(Step::Analyze),
            "pause" => match &value.value {
                Node::Null => Some(Step::Pause(None)),
                Node::Map(m) if m.is_empty() => Some(Step::Pause(None)),
                Node::Map(_) => {
                    let mut f = self.fields(value, &kpath)?;
                    let d = f
                        .get("duration")
                        .map(|n| self.duration(n, &format!("{kpath}.duration")));
                    self.finish(f);
                    match d {
                        Some(Some(d)) => Some(Step::Pause(Some(d))),
                        Some(None) => None,
                        None => Some(Step::Pause(None)),
                    }
                }
                _ => self.duration(value, &kpath).map(|d| Step::Pause(Some(d))),
            },
            "setHeaderRoute" => self.header_route(value, &kpath).map(Step::SetHeaderRoute),
            other => {
                let hint = match closest(other, &KINDS.split(", ").collect::<Vec<_>>()) {
                    Some(k) => format!("did you mean `{k}`? step kinds: {KINDS}"),
                    None => format!("step kinds: {KINDS}"),
                };
                self.at(key, &kpath, format!("unknown step kind `{other}`"), &hint);
                None
            }
        }
    }

    fn header_route(&mut self, node: &SNode, path: &str) -> Option<HeaderRoute> {
        let mut f = self.fields(node, path)?;
        let headers_path = format!("{path}.headers");
        let headers = match f.get("headers") {
            Some(h) => match &h.value {
                Node::Map(entries) if !entries.is_empty() => {
                    let mut out = BTreeMap::new();
                    let mut ok = true;
                    for (name, m) in entries {
                        let hp = format!("{headers_path}.{}", name.value);
                        let valid_name = !name.value.is_empty()
                            && name
                                .value
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                        if !valid_name {
                            self.at(
                                name,
                                &hp,
                                format!("`{}` is not a valid header name", name.value),
                                "use letters, digits, '-' and '_'",
                            );
                            ok = false;
                        }
                        match self.string_match(m, &hp) {
                            Some(sm) => {
                                out.insert(name.value.to_ascii_lowercase(), sm);
                            }
                            None => ok = false,
                        }
                    }
                    ok.then_some(out)
                }
                _ => {
                    self.at(
                        h,
                        &headers_path,
                        "expected a non-empty mapping of header names to matches".into(),
                        "write e.g. `headers: {x-canary: {exact: \"true\"}}`",
                    );
                    None
                }
            },
            None => {
                self.at(
                    node,
                    &headers_path,
                    "missing required field `headers`".into(),
                    "write e.g. `setHeaderRoute: {headers: {x-canary: {exact: \"true\"}}}`",
                );
                None
            }
        };
        self.finish(f);
        headers.map(|headers| HeaderRoute { headers })
    }

    fn string_match(&mut self, node: &SNode, path: &str) -> Option<StringMatch> {
        const HINT: &str = "write exactly one of `exact: v`, `prefix: v` or `regex: v`";
        let Node::Map(entries) = &node.value else {
            let kind = node.value.kind();
            self.at(
                node,
                path,
                format!("expected a match such as {{exact: \"true\"}}, found {kind}"),
                HINT,
            );
            return None;
        };
        if entries.len() != 1 {
            self.at(
                node,
                path,
                format!("expected exactly one match kind, found {}", entries.len()),
                HINT,
            );
            return None;
        }
        let (k, v) = &entries[0];
        let kp = format!("{path}.{}", k.value);
        let value = match &v.value {
            Node::Str(s) => s.clone(),
            Node::Int(i) => i.to_string(),
            Node::Bool(b) => b.to_string(),
            other => {
                let kind = other.kind();
                self.at(
                    v,
                    &kp,
                    format!("expected a string, found {kind}"),
                    "quote the value",
                );
                return None;
            }
        };
        match k.value.as_str() {
            "exact" => Some(StringMatch::Exact(value)),
            "prefix" => Some(StringMatch::Prefix(value)),
            "regex" => Some(StringMatch::Regex(value)),
            other => {
                self.at(k, &kp, format!("unknown match kind `{other}`"), HINT);
                None
            }
        }
    }

    fn analysis(&mut self, node: &SNode) -> Option<Analysis> {
        let mut f = self.fields(node, "spec.analysis")?;
        let interval = match f.get("interval") {
            Some(n) => {
                let d = self.duration(n, "spec.analysis.interval");
                if let Some(d) = d
                    && d < Duration::from_secs(1)
                {
                    self.at(
                        n,
                        "spec.analysis.interval",
                        "the interval is shorter than 1s".into(),
                        "use at least 1s; Prometheus scrapes rarely faster than every few seconds",
                    );
                    return None;
                }
                d
            }
            None => Some(defaults::INTERVAL),
        };
        let failure_limit = match f.get("failureLimit") {
            Some(n) => self
                .integer(
                    n,
                    "spec.analysis.failureLimit",
                    1,
                    i128::from(u32::MAX),
                    "use a count of 1 or more",
                )
                .and_then(|v| u32::try_from(v).ok()),
            None => Some(defaults::FAILURE_LIMIT),
        };
        let min_requests = match f.get("minRequests") {
            Some(n) => self
                .integer(
                    n,
                    "spec.analysis.minRequests",
                    0,
                    i128::from(u64::MAX),
                    "use a count of 0 or more",
                )
                .and_then(|v| u64::try_from(v).ok()),
            None => Some(defaults::MIN_REQUESTS),
        };
        let unreachable_limit = match f.get("unreachableLimit") {
            Some(n) => self.duration(n, "spec.analysis.unreachableLimit"),
            None => Some(defaults::UNREACHABLE_LIMIT),
        };
        let metrics = match f.get("metrics") {
            Some(n) => self.metrics(n, interval),
            None => Some(Vec::new()),
        };
        self.finish(f);
        Some(Analysis {
            interval: interval?,
            failure_limit: failure_limit?,
            min_requests: min_requests?,
            unreachable_limit: unreachable_limit?,
            metrics: metrics?,
        })
    }

    fn metrics(&mut self, node: &SNode, interval: Option<Duration>) -> Option<Vec<MetricSpec>> {
        let Node::Seq(items) = &node.value else {
            let kind = node.value.kind();
            self.at(
                node,
                "spec.analysis.metrics",
                format!("expected a list of metrics, found {kind}"),
                "write each metric as a list item with `name:`",
            );
            return None;
        };
        let mut out: Vec<MetricSpec> = Vec::new();
        let mut ok = true;
        let mut names: HashMap<String, u64> = HashMap::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("spec.analysis.metrics[{i}]");
            match self.metric(item, &path, interval) {
                Some(m) => {
                    if let Some(line) = names.get(&m.name) {
                        self.at(
                            item,
                            &format!("{path}.name"),
                            format!("metric `{}` is already defined on line {line}", m.name),
                            "give every metric a unique name",
                        );
                        ok = false;
                    } else {
                        names.insert(m.name.clone(), item.referenced.line());
                    }
                    out.push(m);
                }
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn metric(
        &mut self,
        node: &SNode,
        path: &str,
        interval: Option<Duration>,
    ) -> Option<MetricSpec> {
        let mut f = self.fields(node, path)?;
        let name = self.required_string(&mut f, "name", node);
        let template = f.get("template");
        let query = f.get("query");
        let source = match (template, query) {
            (Some(t), None) => {
                let tp = format!("{path}.template");
                match self.string(t, &tp) {
                    Some(s) => match Template::from_name(&s) {
                        Some(t) => Some(MetricSource::Template(t)),
                        None => {
                            let names: Vec<&str> = Template::ALL.iter().map(|t| t.name()).collect();
                            let hint = match closest(&s, &names) {
                                Some(k) => format!(
                                    "did you mean `{k}`? templates: {}; or write your own `query:`",
                                    names.join(", ")
                                ),
                                None => format!(
                                    "templates: {}; or write your own `query:`",
                                    names.join(", ")
                                ),
                            };
                            self.at(t, &tp, format!("unknown template `{s}`"), &hint);
                            None
                        }
                    },
                    None => None,
                }
            }
            (None, Some(q)) => {
                let qp = format!("{path}.query");
                match self.string(q, &qp) {
                    Some(s) if s.trim().is_empty() => {
                        self.at(
                            q,
                            &qp,
                            "the query is empty".into(),
                            "write a PromQL expression",
                        );
                        None
                    }
                    Some(s) => match crate::plan::query::check_query(&s) {
                        Ok(()) => Some(MetricSource::Query(s)),
                        Err(e) => {
                            self.at(
                                q,
                                &qp,
                                format!("invalid query: {e}"),
                                &crate::plan::query::query_hint(),
                            );
                            None
                        }
                    },
                    None => None,
                }
            }
            (Some(_), Some(q)) => {
                self.at(
                    q,
                    path,
                    "a metric has either `template` or `query`, not both".into(),
                    "remove one of the two",
                );
                None
            }
            (None, None) => {
                self.at(
                    node,
                    path,
                    "a metric needs `template` or `query`".into(),
                    "add `template: istio-success-rate` (or another template) or a PromQL `query:`",
                );
                None
            }
        };
        let unit = match &source {
            Some(MetricSource::Template(t)) => t.unit(),
            _ => Unit::Number,
        };
        let min = f
            .get("min")
            .map(|n| (n, self.threshold(n, &format!("{path}.min"), unit)));
        let max = f
            .get("max")
            .map(|n| (n, self.threshold(n, &format!("{path}.max"), unit)));
        let compare = match f.get("compareTo") {
            Some(n) => match self.string(n, &format!("{path}.compareTo")).as_deref() {
                Some("stable") => Some(true),
                Some(other) => {
                    self.at(
                        n,
                        &format!("{path}.compareTo"),
                        format!("cannot compare to `{other}`"),
                        "the only comparison is `compareTo: stable`",
                    );
                    None
                }
                None => None,
            },
            None => Some(false),
        };
        let cmp = CompareNodes {
            tolerance: f.get("tolerance"),
            test: f.get("test"),
            confidence: f.get("confidence"),
            scrape_interval: f.get("scrapeInterval"),
        };
        self.finish(f);
        let (tolerance, test) = self.comparison(&cmp, path, compare, source.as_ref(), interval)?;

        let min_v = match min {
            Some((_, None)) => return None,
            Some((n, Some(v))) => Some((n, v)),
            None => None,
        };
        let max_v = match max {
            Some((_, None)) => return None,
            Some((n, Some(v))) => Some((n, v)),
            None => None,
        };
        let compare = compare?;
        if test.is_some() && (min_v.is_some() || max_v.is_some()) {
            let n = min_v.or(max_v).map(|(n, _)| n).unwrap_or(node);
            self.at(
                n,
                path,
                "a metric with `test:` cannot also have `min` or `max`".into(),
                "put the absolute guard rail in a metric of its own, e.g. `{name: success-floor, template: istio-success-rate, min: 95}`",
            );
            return None;
        }
        if min_v.is_none() && max_v.is_none() && !compare {
            self.at(
                node,
                path,
                "the metric has no threshold, so it can never fail".into(),
                "add `min:`, `max:` or `compareTo: stable`",
            );
            return None;
        }
        // Thresholds that cannot be met.
        let mut meetable = true;
        if let (Some((_, lo)), Some((n, hi))) = (min_v, max_v)
            && lo > hi
        {
            self.at(
                n,
                &format!("{path}.max"),
                format!("max {hi} is below min {lo}: no value can pass"),
                "make max at least min",
            );
            meetable = false;
        }
        if unit == Unit::Percent
            && let Some((n, lo)) = min_v
            && lo > 100.0
        {
            self.at(
                n,
                &format!("{path}.min"),
                format!("min {lo} is above 100%: no value can pass"),
                "a percentage is at most 100; e.g. `min: 99`",
            );
            meetable = false;
        }
        if unit != Unit::Number
            && let Some((n, hi)) = max_v
            && hi < 0.0
        {
            self.at(
                n,
                &format!("{path}.max"),
                format!("max {hi} is below 0: no value can pass"),
                "use a non-negative maximum",
            );
            meetable = false;
        }
        if !meetable {
            return None;
        }
        Some(MetricSpec {
            name: name?,
            source: source?,
            min: min_v.map(|(_, v)| v),
            max: max_v.map(|(_, v)| v),
            compare_to_stable: compare,
            tolerance,
            test,
        })
    }

    /// `tolerance`, `test`, `confidence` and `scrapeInterval` of one metric: the tolerance in
    /// the unit the test reads (see `MetricSpec::tolerance`) and the validated test.
    fn comparison(
        &mut self,
        cmp: &CompareNodes<'_>,
        path: &str,
        compare: Option<bool>,
        source: Option<&MetricSource>,
        interval: Option<Duration>,
    ) -> Option<(f64, Option<StatTest>)> {
        let kind = match cmp.test {
            Some(n) => Some(self.test_kind(n, path, compare, source)?),
            None => None,
        };
        let tolerance = match cmp.tolerance {
            Some(n) => self.tolerance(n, &format!("{path}.tolerance"), compare, kind, source)?,
            None => defaults::TOLERANCE,
        };
        let Some(kind) = kind else {
            for (node, field) in [
                (cmp.confidence, "confidence"),
                (cmp.scrape_interval, "scrapeInterval"),
            ] {
                if let Some(n) = node {
                    self.at(
                        n,
                        &format!("{path}.{field}"),
                        format!("`{field}` has no effect without `test:`"),
                        "add `test: counts` or `test: mann-whitney`, or remove it",
                    );
                    return None;
                }
            }
            return Some((tolerance, None));
        };
        let confidence = match cmp.confidence {
            Some(n) => self.confidence(n, &format!("{path}.confidence"))?,
            None => kind.default_confidence(),
        };
        let scrape_interval = self.scrape_interval(cmp, path, kind, confidence, interval)?;
        Some((
            tolerance,
            Some(StatTest {
                kind,
                confidence,
                scrape_interval,
            }),
        ))
    }

    fn test_kind(
        &mut self,
        n: &SNode,
        path: &str,
        compare: Option<bool>,
        source: Option<&MetricSource>,
    ) -> Option<TestKind> {
        let tp = format!("{path}.test");
        let s = self.string(n, &tp)?;
        let kind = match s.as_str() {
            "counts" => TestKind::Counts,
            "mann-whitney" => TestKind::MannWhitney,
            other => {
                let hint = match closest(other, &["counts", "mann-whitney"]) {
                    Some(k) => format!("did you mean `{k}`? tests: counts, mann-whitney"),
                    None => "tests: counts (error counts), mann-whitney (per-scrape values)".into(),
                };
                self.at(n, &tp, format!("unknown test `{other}`"), &hint);
                return None;
            }
        };
        if compare == Some(false) {
            self.at(
                n,
                &tp,
                "`test` compares the canary with stable, but the metric has no `compareTo: stable`"
                    .into(),
                "add `compareTo: stable`",
            );
            return None;
        }
        let template = match source {
            Some(MetricSource::Template(t)) => Some(*t),
            _ => None,
        };
        let fits = match kind {
            TestKind::Counts => template == Some(Template::SuccessRate),
            TestKind::MannWhitney => template.is_some_and(|t| t != Template::RequestRate),
        };
        if !fits && source.is_some() {
            let (msg, hint) = match kind {
                TestKind::Counts => (
                    "`test: counts` reads the request and 5xx counts behind `istio-success-rate`",
                    "use `template: istio-success-rate`, or `test: mann-whitney` for a latency template",
                ),
                TestKind::MannWhitney => (
                    "`test: mann-whitney` needs a built-in template other than `istio-request-rate` (custom queries and request rates cannot be compared per scrape)",
                    "use a latency template such as `istio-latency-p99`, or drop `test:` for a plain comparison",
                ),
            };
            self.at(n, &tp, msg.into(), hint);
            return None;
        }
        Some(kind)
    }

    /// A tolerance as written: a number, or a relative `N%` (mann-whitney only).
    fn tolerance(
        &mut self,
        n: &SNode,
        tp: &str,
        compare: Option<bool>,
        kind: Option<TestKind>,
        source: Option<&MetricSource>,
    ) -> Option<f64> {
        let (value, relative) = match &n.value {
            Node::Str(s) if s.trim().ends_with('%') => {
                let v = s
                    .trim()
                    .trim_end_matches('%')
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite());
                let Some(v) = v else {
                    self.at(
                        n,
                        tp,
                        format!("`{s}` is not a percentage"),
                        "write e.g. `10%`",
                    );
                    return None;
                };
                (v, true)
            }
            _ => (self.number(n, tp)?, false),
        };
        if value < 0.0 {
            self.at(
                n,
                tp,
                format!("tolerance {value} is negative"),
                "use 0 or more: how much worse than stable the canary may be",
            );
            return None;
        }
        if compare == Some(false) {
            self.at(
                n,
                tp,
                "`tolerance` has no effect without `compareTo: stable`".into(),
                "add `compareTo: stable` or remove `tolerance`",
            );
            return None;
        }
        let higher_is_better =
            matches!(source, Some(MetricSource::Template(t)) if !t.unit().lower_is_better());
        match (kind, relative) {
            (Some(TestKind::MannWhitney), true) if higher_is_better && value >= 100.0 => {
                self.at(
                    n,
                    tp,
                    format!("a tolerance of {value}% lets the canary fall to 0"),
                    "use a relative tolerance below 100%, e.g. `5%`",
                );
                None
            }
            (Some(TestKind::MannWhitney), true) => Some(value / 100.0),
            (Some(TestKind::MannWhitney), false) => {
                self.at(n, tp, format!("with `test: mann-whitney` the tolerance is relative to stable, but `{value}` has no `%`"), &format!("write it as a percentage of stable, e.g. `tolerance: {value}%`"));
                None
            }
            (Some(TestKind::Counts), false) if value >= 100.0 => {
                self.at(
                    n,
                    tp,
                    format!("a tolerance of {value} percentage points can never be exceeded"),
                    "use the success-rate points the canary may lose, e.g. `0.5`",
                );
                None
            }
            (Some(TestKind::Counts), true) => {
                self.at(n, tp, "with `test: counts` the tolerance is in percentage points of success rate, not a relative `%`".into(), "write a number of points, e.g. `tolerance: 0.5`");
                None
            }
            (None, true) => {
                self.at(n, tp, "a relative tolerance (`%`) needs `test: mann-whitney`".into(), "add `test: mann-whitney`, or write the tolerance as a number in the metric's unit");
                None
            }
            (_, false) => Some(value),
        }
    }

    fn confidence(&mut self, n: &SNode, cp: &str) -> Option<f64> {
        let c = self.number(n, cp)?;
        if c <= 0.5 || c >= 1.0 {
            self.at(
                n,
                cp,
                format!("confidence {c} is not between 0.5 and 1"),
                "use a probability such as 0.95 (counts) or 0.98 (mann-whitney)",
            );
            return None;
        }
        Some(c)
    }

    /// `scrapeInterval` (mann-whitney only), checked against the analysis interval: a round
    /// must hold enough scrapes for the test to reach its confidence.
    fn scrape_interval(
        &mut self,
        cmp: &CompareNodes<'_>,
        path: &str,
        kind: TestKind,
        confidence: f64,
        interval: Option<Duration>,
    ) -> Option<Duration> {
        let sp = format!("{path}.scrapeInterval");
        let scrape = match cmp.scrape_interval {
            Some(n) if kind == TestKind::Counts => {
                self.at(
                    n,
                    &sp,
                    "`scrapeInterval` only applies to `test: mann-whitney`".into(),
                    "remove it: `test: counts` pools whole rounds",
                );
                return None;
            }
            Some(n) => self.duration(n, &sp)?,
            None => defaults::SCRAPE_INTERVAL,
        };
        let need = min_points(confidence);
        if kind == TestKind::MannWhitney
            && let Some(w) = interval
            && let Some(node) = cmp.scrape_interval.or(cmp.test)
        {
            let have = (w.as_secs_f64() / scrape.as_secs_f64()).floor() as usize;
            if have < need {
                let field = if cmp.scrape_interval.is_some() {
                    sp.clone()
                } else {
                    format!("{path}.test")
                };
                let enough = crate::units::duration(scrape * need as u32);
                self.at(node, &field, format!("`test: mann-whitney` needs at least {need} scrapes of each subset per round at confidence {confidence}, but interval {} / scrapeInterval {} gives {have}", crate::units::duration(w), crate::units::duration(scrape)), &format!("set `scrapeInterval:` to your Prometheus scrape interval if it is shorter, or make `spec.analysis.interval` at least {enough}"));
                return None;
            }
        }
        Some(scrape)
    }

    /// A threshold in the metric's unit: durations are accepted (and converted to milliseconds)
    /// for latency templates only.
    fn threshold(&mut self, node: &SNode, path: &str, unit: Unit) -> Option<f64> {
        match (&node.value, unit) {
            (Node::Str(s), Unit::Milliseconds) => match humantime::parse_duration(s.trim()) {
                Ok(d) => Some(d.as_secs_f64() * 1000.0),
                Err(e) => {
                    self.at(node, path, format!("`{s}` is not a duration: {e}"), "write a latency such as 500ms or 1.5s... as 1500ms, or a number of milliseconds");
                    None
                }
            },
            (Node::Str(s), _) => {
                self.at(
                    node,
                    path,
                    format!("expected a number, found the string `{s}`"),
                    "durations are only for latency templates; write a plain number",
                );
                None
            }
            _ => self.number(node, path),
        }
    }

    fn window(&mut self, node: &SNode) -> Option<Window> {
        let (cron_node, tz_node) = match &node.value {
            Node::Str(_) => (node, None),
            Node::Map(_) => {
                let mut f = self.fields(node, "spec.window")?;
                let cron = f.get("cron");
                let tz = f.get("timeZone");
                self.finish(f);
                match cron {
                    Some(c) => (c, tz),
                    None => {
                        self.at(
                            node,
                            "spec.window.cron",
                            "missing required field `cron`".into(),
                            "add e.g. `cron: \"0 9-17 * * Mon-Fri\"`",
                        );
                        return None;
                    }
                }
            }
            other => {
                let kind = other.kind();
                self.at(
                    node,
                    "spec.window",
                    format!("expected a cron expression, found {kind}"),
                    "write e.g. `window: \"0 9-17 * * Mon-Fri\"`",
                );
                return None;
            }
        };
        let path = if tz_node.is_some() || matches!(node.value, Node::Map(_)) {
            "spec.window.cron"
        } else {
            "spec.window"
        };
        let cron = self.string(cron_node, path)?;
        let fields = cron.split_whitespace().count();
        let compiled = if fields != 5 && !cron.trim_start().starts_with('@') {
            self.at(cron_node, path, format!("`{cron}` has {fields} fields; a window has 5 (minute hour day-of-month month day-of-week)"), "write e.g. \"* 9-17 * * Mon-Fri\" (no seconds field)");
            None
        } else {
            let parser = CronParser::builder()
                .seconds(Seconds::Disallowed)
                .year(Year::Disallowed)
                .build();
            match parser.parse(&cron) {
                Ok(c) => Some(c),
                Err(e) => {
                    self.at(cron_node, path, format!("`{cron}` is not a valid cron expression: {e}"), "write 5 POSIX fields, e.g. \"* 9-17 * * Mon-Fri\" (1-5 = Monday to Friday)");
                    None
                }
            }
        };
        let time_zone = match tz_node {
            Some(n) => match self.string(n, "spec.window.timeZone") {
                Some(s) => match s.parse::<chrono_tz::Tz>() {
                    Ok(tz) => Some(Some(tz)),
                    Err(_) => {
                        self.at(
                            n,
                            "spec.window.timeZone",
                            format!("unknown time zone `{s}`"),
                            "use an IANA name such as Europe/Berlin or America/New_York",
                        );
                        None
                    }
                },
                None => None,
            },
            None => Some(None),
        };
        Some(Window {
            cron,
            time_zone: time_zone?,
            compiled: compiled?,
        })
    }
}

/// The known word closest to `word`, when it is close enough to be a likely typo.
fn closest<'k>(word: &str, known: &[&'k str]) -> Option<&'k str> {
    known
        .iter()
        .map(|k| {
            (
                strsim::levenshtein(&word.to_ascii_lowercase(), &k.to_ascii_lowercase()),
                *k,
            )
        })
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}
