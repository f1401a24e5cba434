//! The PromQL a plan may write: escaping of values, the closed set of `{{ variable }}`
//! placeholders of custom queries, their validation (plan checks) and rendering (analysis).
//! Pure: no I/O.
//!
//! Every value that comes from a plan or a manifest (service, namespace, subset labels) enters a
//! query only inside a string literal, escaped for that literal (and regex-escaped when the
//! literal is the right-hand side of `=~`/`!~`), so no plan can change the shape of a query.

use std::collections::BTreeMap;
use std::time::Duration;

/// Why a custom query cannot be rendered (or validated).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("unknown query variable {{{{ {name} }}}}; known: {known}", known = VARIABLES_HELP)]
    UnknownVariable { name: String },
    #[error("unterminated {{{{ at byte {offset}: a variable ends with }}}}")]
    Unterminated { offset: usize },
    #[error(
        "{{{{ {name} }}}} must be written inside a double-quoted string, e.g. \"{{{{ {name} }}}}\""
    )]
    NotQuoted { name: String },
    #[error(
        "{{{{ {name} }}}} cannot be used inside a `backtick` string (it cannot be escaped there)"
    )]
    InRawString { name: String },
    #[error("{{{{ {name} }}}} cannot be used inside a # comment")]
    InComment { name: String },
    #[error("{{{{ {name} }}}} expands to label matchers and must be written outside any string")]
    Quoted { name: String },
    #[error("{{{{ {name} }}}}: subset {subset:?} has no label {label:?}")]
    MissingLabel {
        name: String,
        subset: String,
        label: String,
    },
    #[error("query has no PromQL besides whitespace")]
    Empty,
}

/// The variables a custom query may use, for error messages and docs.
pub const VARIABLES_HELP: &str = "service, namespace, interval, canary.<label>, stable.<label>, \
subset.<label>, subset, version, reporter, version_label, selector";

/// The fix hint for a refused custom query (plan validation prints it).
pub fn query_hint() -> String {
    "variables are {{ service }}, {{ namespace }}, {{ interval }}, {{ canary.<label> }}, \
{{ stable.<label> }} and {{ subset.<label> }} (a DestinationRule subset label such as version, or \
`subset` for the subset name), {{ version }}, {{ reporter }}, {{ version_label }}, {{ selector }}; \
values go inside double quotes (\"{{ service }}\"), {{ interval }}, {{ version_label }} and \
{{ selector }} outside"
        .to_owned()
}

/// A PromQL double-quoted string literal holding exactly `value`.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    escape_into(&mut out, value, '"');
    out.push('"');
    out
}

/// Escape `value` for the inside of a PromQL string delimited by `delim` (`"` or `'`).
fn escape_into(out: &mut String, value: &str, delim: char) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == delim => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
}

/// Escape every RE2 metacharacter (Go's `regexp.QuoteMeta`) so `value` matches only itself.
pub fn escape_regex(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A PromQL duration literal (`90s`, `500ms`); at least `1ms`.
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis().max(1);
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// The Istio metric label naming the destination Service: what a plan that splits by host
/// tells its sides apart by, in place of a subset label.
pub const SERVICE_LABEL: &str = "destination_service_name";

/// ` , <label>=<value>` for a subset label; nothing when the label is the service name itself
/// (a host-level split), which the service matcher already selects.
pub fn subset_matcher(subset_label: &str, op: &str, value: &str) -> String {
    if subset_label == SERVICE_LABEL {
        String::new()
    } else {
        format!(", {subset_label}{op}{value}")
    }
}

/// Matchers for exactly one service subset.
pub fn exact_matchers(
    reporter: &str,
    namespace: &str,
    service: &str,
    subset_label: &str,
    subset_value: &str,
) -> String {
    format!(
        "reporter={}, destination_service_namespace={}, destination_service_name={}{}",
        quote(reporter),
        quote(namespace),
        quote(service),
        subset_matcher(subset_label, "=", &quote(subset_value)),
    )
}

/// One subset as a custom query sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubsetVars<'a> {
    /// DestinationRule subset name.
    pub name: &'a str,
    /// The value of the subset label in Istio metrics (e.g. `destination_version`).
    pub value: &'a str,
    /// The subset's DestinationRule labels (empty without a DestinationRule).
    pub labels: &'a BTreeMap<String, String>,
}

/// The values behind a custom query's variables, for one side (canary or stable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryVars<'a> {
    pub service: &'a str,
    pub namespace: &'a str,
    pub reporter: &'a str,
    pub window: Duration,
    /// Metric label the subset is selected by (`destination_version`, …).
    pub subset_label: &'a str,
    pub canary: SubsetVars<'a>,
    pub stable: SubsetVars<'a>,
    /// Whether `{{ subset }}`/`{{ version }}` mean the stable subset (a `compareTo` evaluation).
    pub evaluate_stable: bool,
}

/// Where in the query text a placeholder sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    Bare,
    /// Inside a string delimited by the char; `true` when the string is a regex operand.
    Quoted(char, bool),
    Raw,
    /// After `#` up to the end of the line.
    Comment,
}

/// What a variable expands to, before escaping for its context.
enum Expansion {
    /// A value from a plan or manifest: must sit inside a quoted string.
    Value(String),
    /// Safe PromQL produced by tidegate itself (durations, label names): anywhere.
    Token(String),
    /// Label matchers: only outside strings.
    Matchers(String),
}

fn lookup(name: &str, vars: Option<&QueryVars<'_>>) -> Result<Option<Expansion>, RenderError> {
    let Some(v) = vars else {
        // Validation only: say whether the name exists and what kind it is.
        let known = matches!(
            name,
            "service"
                | "namespace"
                | "reporter"
                | "subset"
                | "version"
                | "interval"
                | "version_label"
                | "selector"
        ) || ["canary.", "stable.", "subset."]
            .iter()
            .any(|p| name.strip_prefix(p).is_some_and(|l| !l.is_empty()));
        if !known {
            return Err(RenderError::UnknownVariable { name: name.into() });
        }
        return Ok(None);
    };
    let side = if v.evaluate_stable {
        &v.stable
    } else {
        &v.canary
    };
    let label = |s: &SubsetVars<'_>, l: &str| {
        if l == "subset" {
            return Ok(Expansion::Value(s.name.into()));
        }
        s.labels
            .get(l)
            .cloned()
            .map(Expansion::Value)
            .ok_or_else(|| RenderError::MissingLabel {
                name: name.into(),
                subset: s.name.into(),
                label: l.into(),
            })
    };
    let e = match name {
        "service" => Expansion::Value(v.service.into()),
        "namespace" => Expansion::Value(v.namespace.into()),
        "reporter" => Expansion::Value(v.reporter.into()),
        "subset" => Expansion::Value(side.name.into()),
        "version" => Expansion::Value(side.value.into()),
        "interval" => Expansion::Token(duration(v.window)),
        "version_label" => Expansion::Token(v.subset_label.into()),
        "selector" => Expansion::Matchers(exact_matchers(
            v.reporter,
            v.namespace,
            v.service,
            v.subset_label,
            side.value,
        )),
        other => {
            if let Some(l) = other.strip_prefix("canary.").filter(|l| !l.is_empty()) {
                label(&v.canary, l)?
            } else if let Some(l) = other.strip_prefix("stable.").filter(|l| !l.is_empty()) {
                label(&v.stable, l)?
            } else if let Some(l) = other.strip_prefix("subset.").filter(|l| !l.is_empty()) {
                label(side, l)?
            } else {
                return Err(RenderError::UnknownVariable { name: name.into() });
            }
        }
    };
    Ok(Some(e))
}

/// Whether the text before an opening quote ends with a regex match operator.
fn ends_with_regex_op(before: &str) -> bool {
    let t = before.trim_end();
    t.ends_with("=~") || t.ends_with("!~")
}

/// Walk `query`, replacing every `{{ name }}`; with `vars == None` only validate.
fn walk(query: &str, vars: Option<&QueryVars<'_>>) -> Result<String, RenderError> {
    if query.trim().is_empty() {
        return Err(RenderError::Empty);
    }
    let mut out = String::with_capacity(query.len() + 64);
    let mut ctx = Context::Bare;
    let mut rest = query;
    let mut offset = 0usize;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("{{") {
            let Some(end) = rest[2..].find("}}") else {
                return Err(RenderError::Unterminated { offset });
            };
            let name = rest[2..2 + end].trim();
            let expansion = lookup(name, vars)?;
            let check = |e: Option<&Expansion>| -> Result<(), RenderError> {
                let is_value = match e {
                    Some(Expansion::Value(_)) => true,
                    Some(_) => false,
                    None => !matches!(name, "interval" | "version_label" | "selector"),
                };
                let is_matchers = match e {
                    Some(Expansion::Matchers(_)) => true,
                    Some(_) => false,
                    None => name == "selector",
                };
                match ctx {
                    Context::Raw => Err(RenderError::InRawString { name: name.into() }),
                    Context::Comment => Err(RenderError::InComment { name: name.into() }),
                    Context::Bare if is_value => Err(RenderError::NotQuoted { name: name.into() }),
                    Context::Quoted(..) if is_matchers => {
                        Err(RenderError::Quoted { name: name.into() })
                    }
                    _ => Ok(()),
                }
            };
            check(expansion.as_ref())?;
            if let Some(e) = expansion {
                match (e, ctx) {
                    (Expansion::Value(s), Context::Quoted(d, regex)) => {
                        let s = if regex { escape_regex(&s) } else { s };
                        escape_into(&mut out, &s, d);
                    }
                    (Expansion::Token(s), _) | (Expansion::Matchers(s), _) => out.push_str(&s),
                    // Rejected by `check` above.
                    (Expansion::Value(_), _) => {
                        return Err(RenderError::NotQuoted { name: name.into() });
                    }
                }
            }
            let used = 2 + end + 2;
            offset += used;
            rest = &rest[used..];
            continue;
        }
        let len = c.len_utf8();
        match ctx {
            Context::Bare => match c {
                '"' | '\'' => {
                    let regex = ends_with_regex_op(if vars.is_some() {
                        &out
                    } else {
                        &query[..offset]
                    });
                    ctx = Context::Quoted(c, regex);
                }
                '`' => ctx = Context::Raw,
                '#' => ctx = Context::Comment,
                _ => {}
            },
            Context::Quoted(d, _) => {
                if c == '\\' {
                    // Copy the escape and the escaped char verbatim.
                    let mut it = rest.chars();
                    it.next();
                    if let Some(n) = it.next() {
                        out.push(c);
                        out.push(n);
                        let l = len + n.len_utf8();
                        offset += l;
                        rest = &rest[l..];
                        continue;
                    }
                } else if c == d {
                    ctx = Context::Bare;
                }
            }
            Context::Raw => {
                if c == '`' {
                    ctx = Context::Bare;
                }
            }
            Context::Comment => {
                if c == '\n' {
                    ctx = Context::Bare;
                }
            }
        }
        out.push(c);
        offset += len;
        rest = &rest[len..];
    }
    Ok(out)
}

/// Validate a custom query: every `{{ variable }}` is known and sits where it can be escaped.
/// Plan validation calls this; rendering can still fail later only for `canary.<label>`-style
/// variables naming a label the DestinationRule subset does not have.
pub fn check_query(query: &str) -> Result<(), RenderError> {
    walk(query, None).map(|_| ())
}

/// Render a custom query for one side with every value escaped for where it is inserted.
pub fn render_query(query: &str, vars: &QueryVars<'_>) -> Result<String, RenderError> {
    walk(query, Some(vars))
}
