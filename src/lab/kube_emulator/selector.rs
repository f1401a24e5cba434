//! Label and field selectors as the API server reads them from `?labelSelector=` and
//! `?fieldSelector=` (equality, set-based `in`/`notin`, existence `key` / `!key`).

use std::collections::BTreeMap;

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Req {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed selector: every requirement must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector(Vec<Req>);

/// Split on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => {
                depth += 1;
                cur.push(c);
            }
            ')' => {
                depth -= 1;
                cur.push(c);
            }
            ',' if depth == 0 => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

fn set_values(s: &str) -> Option<Vec<String>> {
    let inner = s.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some(
        inner
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect(),
    )
}

impl Selector {
    /// Parse a selector; `Err` carries the API server's style of message.
    pub fn parse(text: &str) -> Result<Selector, String> {
        let mut reqs = Vec::new();
        for part in split_top(text) {
            let req = if let Some((k, v)) = part.split_once("!=") {
                Req::NotEq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once("==") {
                Req::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once('=') {
                Req::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once(" notin ") {
                let vals =
                    set_values(v).ok_or_else(|| format!("unable to parse requirement: {part}"))?;
                Req::NotIn(k.trim().into(), vals)
            } else if let Some((k, v)) = part.split_once(" in ") {
                let vals =
                    set_values(v).ok_or_else(|| format!("unable to parse requirement: {part}"))?;
                Req::In(k.trim().into(), vals)
            } else if let Some(k) = part.strip_prefix('!') {
                Req::NotExists(k.trim().into())
            } else if part
                .chars()
                .all(|c| c.is_alphanumeric() || "-_./".contains(c))
            {
                Req::Exists(part.clone())
            } else {
                return Err(format!("unable to parse requirement: {part}"));
            };
            reqs.push(req);
        }
        Ok(Selector(reqs))
    }

    /// Whether a set of labels (or field values) satisfies every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Req::Eq(k, v) => labels.get(k) == Some(v),
            Req::NotEq(k, v) => labels.get(k) != Some(v),
            Req::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            Req::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            Req::Exists(k) => labels.contains_key(k),
            Req::NotExists(k) => !labels.contains_key(k),
        })
    }
}

/// The labels of an object as a map (non-string values ignored).
pub fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// The fields a field selector may use: `metadata.name` and `metadata.namespace`.
pub fn fields_of(obj: &Value) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for (field, ptr) in [
        ("metadata.name", "/metadata/name"),
        ("metadata.namespace", "/metadata/namespace"),
    ] {
        if let Some(v) = obj.pointer(ptr).and_then(Value::as_str) {
            m.insert(field.to_string(), v.to_string());
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn equality_set_and_existence() {
        let l = labels(&[("app", "orders"), ("tier", "web")]);
        assert!(Selector::parse("app=orders").expect("parses").matches(&l));
        assert!(
            Selector::parse("app==orders,tier!=db")
                .expect("parses")
                .matches(&l)
        );
        assert!(
            Selector::parse("app in (orders, cart)")
                .expect("parses")
                .matches(&l)
        );
        assert!(
            !Selector::parse("app notin (orders)")
                .expect("parses")
                .matches(&l)
        );
        assert!(
            Selector::parse("tier,!missing")
                .expect("parses")
                .matches(&l)
        );
        assert!(!Selector::parse("missing").expect("parses").matches(&l));
        assert!(Selector::parse("").expect("parses").matches(&l));
        assert!(Selector::parse("app in orders").is_err());
    }
}
