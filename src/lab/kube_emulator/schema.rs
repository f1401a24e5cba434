//! Optional validation of custom resources against their CRD's `openAPIV3Schema`, as the API
//! server does for structural schemas: wrong types, enum values, bounds and missing required
//! fields are `422 Invalid`; unknown fields are pruned (the server's default `Warn`/`Ignore`
//! field validation); `null` in a non-nullable field is dropped. `x-kubernetes-validations`
//! (CEL rules) are not evaluated.

use std::collections::HashMap;

use serde_json::{Map, Value};

/// Schemas by (group, kind, version).
#[derive(Debug, Clone, Default)]
pub struct Schemas {
    map: HashMap<(String, String, String), Value>,
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Object(_) => "\"object\"".into(),
        Value::Array(_) => "\"array\"".into(),
        other => other.to_string(),
    }
}

impl Schemas {
    /// Collect the schemas of every `CustomResourceDefinition` among `docs`.
    pub fn from_documents(docs: &[Value]) -> Schemas {
        let mut s = Schemas::default();
        for d in docs {
            if d.get("kind").and_then(Value::as_str) != Some("CustomResourceDefinition") {
                continue;
            }
            let group = d
                .pointer("/spec/group")
                .and_then(Value::as_str)
                .unwrap_or("");
            let kind = d
                .pointer("/spec/names/kind")
                .and_then(Value::as_str)
                .unwrap_or("");
            for v in d
                .pointer("/spec/versions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let (Some(name), Some(schema)) = (
                    v.get("name").and_then(Value::as_str),
                    v.pointer("/schema/openAPIV3Schema"),
                ) else {
                    continue;
                };
                s.map.insert(
                    (group.to_string(), kind.to_string(), name.to_string()),
                    schema.clone(),
                );
            }
        }
        s
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Validate (and prune) `obj`. `Ok(pruned field paths)` or `Err(messages)`.
    pub fn validate(
        &self,
        group: &str,
        kind: &str,
        version: &str,
        obj: &mut Value,
    ) -> Result<Vec<String>, Vec<String>> {
        let Some(schema) =
            self.map
                .get(&(group.to_string(), kind.to_string(), version.to_string()))
        else {
            return Ok(Vec::new());
        };
        let mut errors = Vec::new();
        let mut pruned = Vec::new();
        let props = schema.get("properties").and_then(Value::as_object);
        if let Some(top) = obj.as_object_mut() {
            let keys: Vec<String> = top.keys().cloned().collect();
            for k in keys {
                if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                match props.and_then(|p| p.get(&k)) {
                    Some(sub) => {
                        let drop_it = match top.get_mut(&k) {
                            Some(v) => check(v, sub, &k, &mut errors, &mut pruned),
                            None => false,
                        };
                        if drop_it {
                            top.remove(&k);
                        }
                    }
                    None => {
                        top.remove(&k);
                        pruned.push(k);
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(pruned)
        } else {
            Err(errors)
        }
    }
}

/// Whether `v` satisfies `schema` (no pruning, no messages): for oneOf/anyOf/not.
fn satisfies(v: &Value, schema: &Value) -> bool {
    let mut copy = v.clone();
    let mut errors = Vec::new();
    let mut pruned = Vec::new();
    check(&mut copy, schema, "", &mut errors, &mut pruned);
    errors.is_empty()
}

/// Check `v` against `schema` at `path`; returns true when `v` should be dropped (a null in a
/// non-nullable field).
fn check(
    v: &mut Value,
    schema: &Value,
    path: &str,
    errors: &mut Vec<String>,
    pruned: &mut Vec<String>,
) -> bool {
    if v.is_null() {
        return !schema
            .get("nullable")
            .and_then(Value::as_bool)
            .unwrap_or(false);
    }
    let int_or_string = schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if int_or_string {
        if !(v.is_string() || v.is_i64() || v.is_u64()) {
            errors.push(format!(
                "{path}: Invalid value: {}: {path} in body must be of type integer or string",
                shown(v)
            ));
        }
        return false;
    }
    if let Some(t) = schema.get("type").and_then(Value::as_str) {
        let actual = type_name(v);
        let ok = actual == t || (t == "number" && actual == "integer");
        if !ok {
            errors.push(format!(
                "{path}: Invalid value: {}: {path} in body must be of type {t}: {}",
                shown(v),
                shown(v)
            ));
            return false;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(v)
    {
        let list: Vec<String> = allowed.iter().map(shown).collect();
        errors.push(format!(
            "{path}: Unsupported value: {}: supported values: {}",
            shown(v),
            list.join(", ")
        ));
    }
    if let Some(n) = v.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
            && n < min
        {
            errors.push(format!("{path}: Invalid value: {n}: {path} in body should be greater than or equal to {min}"));
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
            && n > max
        {
            errors.push(format!(
                "{path}: Invalid value: {n}: {path} in body should be less than or equal to {max}"
            ));
        }
    }
    if let Some(subs) = schema.get("oneOf").and_then(Value::as_array) {
        let n = subs.iter().filter(|s| satisfies(v, s)).count();
        if n != 1 {
            errors.push(format!("{path}: Invalid value: {}: {path} in body must match exactly one schema in oneOf (matched {n})", shown(v)));
        }
    }
    if let Some(subs) = schema.get("anyOf").and_then(Value::as_array)
        && !subs.iter().any(|s| satisfies(v, s))
    {
        errors.push(format!(
            "{path}: Invalid value: {}: {path} in body must match at least one schema in anyOf",
            shown(v)
        ));
    }
    if let Some(not) = schema.get("not")
        && satisfies(v, not)
    {
        errors.push(format!(
            "{path}: Invalid value: {}: {path} in body must not validate the schema (not)",
            shown(v)
        ));
    }
    match v {
        Value::Object(map) => check_object(map, schema, path, errors, pruned),
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                let mut drop = Vec::new();
                for (i, item) in items.iter_mut().enumerate() {
                    if check(item, item_schema, &format!("{path}[{i}]"), errors, pruned) {
                        drop.push(i);
                    }
                }
                for i in drop.into_iter().rev() {
                    items.remove(i);
                }
            }
        }
        _ => {}
    }
    false
}

fn check_object(
    map: &mut Map<String, Value>,
    schema: &Value,
    path: &str,
    errors: &mut Vec<String>,
    pruned: &mut Vec<String>,
) {
    for r in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(r) = r.as_str()
            && !map.contains_key(r)
        {
            errors.push(format!("{path}.{r}: Required value"));
        }
    }
    let props = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    let preserve = schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if props.is_none() && additional.is_none() {
        // A structural object with no declared fields keeps nothing unless it preserves them.
        if !preserve {
            for k in map.keys() {
                pruned.push(format!("{path}.{k}"));
            }
            map.clear();
        }
        return;
    }
    let keys: Vec<String> = map.keys().cloned().collect();
    for k in keys {
        let child = format!("{path}.{k}");
        let sub = props.and_then(|p| p.get(&k)).or(additional);
        match sub {
            Some(sub) => {
                let drop = match map.get_mut(&k) {
                    Some(val) => check(val, sub, &child, errors, pruned),
                    None => false,
                };
                if drop {
                    map.remove(&k);
                }
            }
            None if preserve => {}
            None => {
                map.remove(&k);
                pruned.push(child);
            }
        }
    }
}
