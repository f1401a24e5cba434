//! The emulator's object store: API semantics without HTTP.
//!
//! Every write follows the Kubernetes API conventions the real API server implements: a
//! cluster-wide `resourceVersion` that grows with each write (and not on no-op writes),
//! `metadata.generation` bumped only when the object's non-metadata content changes, optimistic
//! concurrency (`409 Conflict` on a stale `resourceVersion`), and `Status` error bodies. Each
//! object keeps its full history, and a bounded event log serves watches.

use std::collections::{BTreeMap, VecDeque};

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use super::resources::ResourceDef;
use super::schema::Schemas;
use super::selector::{Selector, fields_of, labels_of};

/// A Kubernetes `Status` failure: HTTP code, machine-readable reason, message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: String,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason: reason.to_string(),
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, def: &ResourceDef, name: &str) -> ApiError {
        self.details = Some(json!({"name": name, "group": def.group, "kind": def.plural}));
        self
    }

    pub fn not_found(def: &ResourceDef, name: &str) -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            format!("{} \"{}\" not found", def.qualified(), name),
        )
        .with_details(def, name)
    }

    pub fn conflict(def: &ResourceDef, name: &str) -> ApiError {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                def.qualified(),
                name
            ),
        )
        .with_details(def, name)
    }

    pub fn invalid(def: &ResourceDef, name: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(422, "Invalid", message).with_details(def, name)
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    /// The `Status` object the API server sends as the body of a failed request.
    pub fn status_body(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let (Some(d), Some(m)) = (&self.details, v.as_object_mut()) {
            m.insert("details".into(), d.clone());
        }
        v
    }
}

/// Identity of a stored object (version-independent: all served versions share the object).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub group: String,
    pub plural: String,
    /// `None` for cluster-scoped kinds.
    pub namespace: Option<String>,
    pub name: String,
}

/// `ADDED`, `MODIFIED`, `DELETED` as in watch events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as kept in an object's history and in the watch log.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub resource_version: u64,
    pub kind: EventType,
    pub key: ObjectKey,
    pub object: Value,
}

/// The store. Not thread-safe by itself; the server keeps it behind a mutex.
#[derive(Debug)]
pub struct Store {
    defs: Vec<ResourceDef>,
    rv: u64,
    uid: u64,
    objects: BTreeMap<ObjectKey, Value>,
    history: BTreeMap<ObjectKey, Vec<StoredEvent>>,
    log: VecDeque<StoredEvent>,
    log_capacity: usize,
    /// Highest resourceVersion dropped from the log: watching from at or below it is `410 Gone`.
    compacted: u64,
    tx: broadcast::Sender<StoredEvent>,
    schemas: Schemas,
}

fn now_rfc3339() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Everything but `metadata` and `status`: a change here bumps `generation`.
fn generation_content(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
        m.remove("apiVersion");
        m.remove("kind");
    }
    v
}

/// Parse a `resourceVersion` string.
pub fn parse_rv(s: &str) -> Result<u64, ApiError> {
    s.parse::<u64>()
        .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {s:?}")))
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

impl Store {
    pub fn new(defs: Vec<ResourceDef>, log_capacity: usize) -> Store {
        let (tx, _) = broadcast::channel(1024);
        Store {
            defs,
            rv: 1,
            uid: 0,
            objects: BTreeMap::new(),
            history: BTreeMap::new(),
            log: VecDeque::new(),
            log_capacity: log_capacity.max(1),
            compacted: 0,
            tx,
            schemas: Schemas::default(),
        }
    }

    /// Validate custom resources against these CRD schemas from now on.
    pub fn set_schemas(&mut self, schemas: Schemas) {
        self.schemas = schemas;
    }

    /// `422 Invalid` when the object breaks its CRD schema; prunes unknown fields otherwise.
    fn validate(
        &self,
        def: &ResourceDef,
        version: &str,
        name: &str,
        obj: &mut Value,
    ) -> Result<(), ApiError> {
        match self.schemas.validate(&def.group, &def.kind, version, obj) {
            Ok(pruned) => {
                if !pruned.is_empty() {
                    tracing::debug!(kind = %def.kind, name, ?pruned, "unknown fields pruned");
                }
                Ok(())
            }
            Err(errors) => Err(ApiError::invalid(
                def,
                name,
                format!(
                    "{}.{} \"{}\" is invalid: [{}]",
                    def.kind,
                    def.group,
                    name,
                    errors.join(", ")
                ),
            )),
        }
    }

    pub fn defs(&self) -> &[ResourceDef] {
        &self.defs
    }

    /// The current (latest) resourceVersion of the store.
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    /// Find a kind by group and plural, checking that `version` is served.
    pub fn def(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceDef> {
        self.defs.iter().find(|d| {
            d.group == group && d.plural == plural && d.versions.iter().any(|v| v == version)
        })
    }

    /// Find a kind by `apiVersion` and `kind` (as written in a manifest).
    pub fn def_for(&self, api_version: &str, kind: &str) -> Option<&ResourceDef> {
        let (group, version) = match api_version.rsplit_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        self.defs
            .iter()
            .find(|d| d.group == group && d.kind == kind && d.versions.iter().any(|v| v == version))
    }

    /// Subscribe to changes; used by watches (take the lock, read the log, then subscribe).
    pub fn subscribe(&self) -> broadcast::Receiver<StoredEvent> {
        self.tx.subscribe()
    }

    /// Events after `since` for a kind, or `Err(410 Gone)` if the log no longer reaches back.
    pub fn events_since(
        &self,
        group: &str,
        plural: &str,
        since: u64,
    ) -> Result<Vec<StoredEvent>, ApiError> {
        if since < self.compacted {
            return Err(ApiError::new(
                410,
                "Expired",
                format!(
                    "too old resource version: {since} ({})",
                    self.compacted.saturating_add(1)
                ),
            ));
        }
        Ok(self
            .log
            .iter()
            .filter(|e| {
                e.resource_version > since && e.key.group == group && e.key.plural == plural
            })
            .cloned()
            .collect())
    }

    /// Every stored version of one object, oldest first (including the deletion).
    pub fn history(&self, key: &ObjectKey) -> Vec<StoredEvent> {
        self.history.get(key).cloned().unwrap_or_default()
    }

    /// The object as stored (with the apiVersion it was last written with).
    pub fn get_raw(&self, key: &ObjectKey) -> Option<&Value> {
        self.objects.get(key)
    }

    fn record(&mut self, kind: EventType, key: &ObjectKey, object: Value) {
        let ev = StoredEvent {
            resource_version: self.rv,
            kind,
            key: key.clone(),
            object,
        };
        self.history
            .entry(key.clone())
            .or_default()
            .push(ev.clone());
        self.log.push_back(ev.clone());
        while self.log.len() > self.log_capacity {
            if let Some(old) = self.log.pop_front() {
                self.compacted = old.resource_version;
            }
        }
        // Nobody listening is fine.
        let _ = self.tx.send(ev);
    }

    /// Drop the watch log up to now, as etcd compaction does (tests of `410 Gone`).
    pub fn compact(&mut self) {
        self.log.clear();
        self.compacted = self.rv;
    }

    fn check_namespace(&self, def: &ResourceDef, ns: Option<&str>) -> Result<(), ApiError> {
        match (def.namespaced, ns) {
            (true, Some(ns)) => {
                let key = ObjectKey {
                    group: String::new(),
                    plural: "namespaces".into(),
                    namespace: None,
                    name: ns.to_string(),
                };
                if self.objects.contains_key(&key) {
                    Ok(())
                } else {
                    Err(ApiError::new(
                        404,
                        "NotFound",
                        format!("namespaces \"{ns}\" not found"),
                    ))
                }
            }
            (true, None) => Err(ApiError::bad_request(format!(
                "{} is namespaced: a namespace is required",
                def.qualified()
            ))),
            (false, _) => Ok(()),
        }
    }

    fn key(def: &ResourceDef, ns: Option<&str>, name: &str) -> ObjectKey {
        ObjectKey {
            group: def.group.clone(),
            plural: def.plural.clone(),
            namespace: if def.namespaced {
                ns.map(str::to_string)
            } else {
                None
            },
            name: name.to_string(),
        }
    }

    /// The object as served at `version`.
    fn served(def: &ResourceDef, version: &str, obj: &Value) -> Value {
        let mut v = obj.clone();
        if let Some(m) = v.as_object_mut() {
            m.insert(
                "apiVersion".into(),
                Value::String(def.group_version(version)),
            );
            m.insert("kind".into(), Value::String(def.kind.clone()));
        }
        v
    }

    pub fn get(
        &self,
        def: &ResourceDef,
        version: &str,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        self.objects
            .get(&Self::key(def, ns, name))
            .map(|o| Self::served(def, version, o))
            .ok_or_else(|| ApiError::not_found(def, name))
    }

    /// List, optionally across namespaces (`ns == None` for a namespaced kind).
    pub fn list(
        &self,
        def: &ResourceDef,
        version: &str,
        ns: Option<&str>,
        labels: &Selector,
        fields: &Selector,
    ) -> Value {
        // Keys sort by group, plural, namespace, name: the kind (in a namespace) is one range,
        // so a list costs what it returns, not the size of the whole store.
        let from = ObjectKey {
            group: def.group.clone(),
            plural: def.plural.clone(),
            namespace: ns.map(str::to_string),
            name: String::new(),
        };
        let items: Vec<Value> = self
            .objects
            .range(&from..)
            .take_while(|(k, _)| k.group == def.group && k.plural == def.plural)
            .take_while(|(k, _)| from.namespace.is_none() || k.namespace == from.namespace)
            .filter(|(_, o)| labels.matches(&labels_of(o)) && fields.matches(&fields_of(o)))
            .map(|(_, o)| Self::served(def, version, o))
            .collect();
        json!({
            "kind": format!("{}List", def.kind),
            "apiVersion": def.group_version(version),
            "metadata": {"resourceVersion": self.rv.to_string()},
            "items": items,
        })
    }

    /// Create (`POST`). `409 AlreadyExists` if the name is taken.
    pub fn create(
        &mut self,
        def: &ResourceDef,
        version: &str,
        ns: Option<&str>,
        mut obj: Value,
    ) -> Result<Value, ApiError> {
        let Some(map) = obj.as_object_mut() else {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        };
        let meta = map
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        let Some(meta) = meta.as_object_mut() else {
            return Err(ApiError::bad_request("metadata must be an object"));
        };
        let body_ns = meta
            .get("namespace")
            .and_then(Value::as_str)
            .map(str::to_string);
        let ns = match (ns, body_ns.as_deref()) {
            (Some(p), Some(b)) if p != b => {
                return Err(ApiError::bad_request(format!(
                    "the namespace of the provided object ({b}) does not match the namespace sent on the request ({p})"
                )));
            }
            (Some(p), _) => Some(p.to_string()),
            (None, b) => b.map(str::to_string),
        };
        let name = match meta.get("name").and_then(Value::as_str) {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => match meta.get("generateName").and_then(Value::as_str) {
                Some(prefix) => format!("{prefix}{:05x}", self.uid.wrapping_add(1)),
                None => {
                    return Err(ApiError::invalid(
                        def,
                        "",
                        "metadata.name: Required value: name or generateName is required",
                    ));
                }
            },
        };
        self.check_namespace(def, ns.as_deref())?;
        let key = Self::key(def, ns.as_deref(), &name);
        if self.objects.contains_key(&key) {
            return Err(ApiError::new(
                409,
                "AlreadyExists",
                format!("{} \"{}\" already exists", def.qualified(), name),
            )
            .with_details(def, &name));
        }
        self.rv += 1;
        self.uid += 1;
        meta.insert("name".into(), Value::String(name.clone()));
        if let Some(ns) = &ns
            && def.namespaced
        {
            meta.insert("namespace".into(), Value::String(ns.clone()));
        }
        meta.insert(
            "uid".into(),
            Value::String(format!("00000000-0000-4000-8000-{:012x}", self.uid)),
        );
        meta.insert("resourceVersion".into(), Value::String(self.rv.to_string()));
        meta.insert("generation".into(), json!(1));
        meta.insert("creationTimestamp".into(), Value::String(now_rfc3339()));
        meta.remove("deletionTimestamp");
        map.insert(
            "apiVersion".into(),
            Value::String(def.group_version(version)),
        );
        map.insert("kind".into(), Value::String(def.kind.clone()));
        if let Err(e) = self.validate(def, version, &name, &mut obj) {
            self.rv -= 1;
            self.uid -= 1;
            return Err(e);
        }
        self.objects.insert(key.clone(), obj.clone());
        self.record(EventType::Added, &key, obj.clone());
        Ok(obj)
    }

    /// Store a new version of an existing object, keeping the server-owned metadata and
    /// bumping resourceVersion (and generation when the content changed). No-op writes return
    /// the current object unchanged, without a new resourceVersion, as the API server does.
    fn replace(
        &mut self,
        def: &ResourceDef,
        version: &str,
        key: &ObjectKey,
        mut new: Value,
    ) -> Result<Value, ApiError> {
        let Some(old) = self.objects.get(key).cloned() else {
            return Err(ApiError::not_found(def, &key.name));
        };
        if !new.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        if let Some(n) = meta_str(&new, "name")
            && n != key.name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({})",
                key.name
            )));
        }
        self.validate(def, version, &key.name, &mut new)?;
        let old_gen = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let changed_content = generation_content(&old) != generation_content(&new);
        // Server-owned fields come from the stored object.
        {
            let new_map = new
                .as_object_mut()
                .ok_or_else(|| ApiError::bad_request("the body must be a JSON object"))?;
            let meta = new_map
                .entry("metadata")
                .or_insert_with(|| Value::Object(Map::new()));
            let meta = meta
                .as_object_mut()
                .ok_or_else(|| ApiError::bad_request("metadata must be an object"))?;
            for f in ["uid", "creationTimestamp", "name", "namespace"] {
                match old.pointer(&format!("/metadata/{f}")) {
                    Some(v) => {
                        meta.insert(f.into(), v.clone());
                    }
                    None => {
                        meta.remove(f);
                    }
                }
            }
            meta.insert("generation".into(), json!(old_gen));
            meta.insert(
                "resourceVersion".into(),
                old.pointer("/metadata/resourceVersion")
                    .cloned()
                    .unwrap_or(Value::Null),
            );
            new_map.insert(
                "apiVersion".into(),
                Value::String(def.group_version(version)),
            );
            new_map.insert("kind".into(), Value::String(def.kind.clone()));
        }
        // A no-op write: compare everything but apiVersion.
        let strip = |v: &Value| {
            let mut v = v.clone();
            if let Some(m) = v.as_object_mut() {
                m.remove("apiVersion");
            }
            v
        };
        if strip(&old) == strip(&new) {
            return Ok(Self::served(def, version, &old));
        }
        self.rv += 1;
        if let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(self.rv.to_string()));
            if changed_content {
                meta.insert("generation".into(), json!(old_gen + 1));
            }
        }
        self.objects.insert(key.clone(), new.clone());
        self.record(EventType::Modified, key, new.clone());
        Ok(new)
    }

    /// Update (`PUT`): the body must carry the resourceVersion it was read at.
    pub fn update(
        &mut self,
        def: &ResourceDef,
        version: &str,
        ns: Option<&str>,
        name: &str,
        obj: Value,
    ) -> Result<Value, ApiError> {
        let key = Self::key(def, ns, name);
        let Some(current) = self.objects.get(&key) else {
            return Err(ApiError::not_found(def, name));
        };
        let current_rv = meta_str(current, "resourceVersion")
            .unwrap_or("")
            .to_string();
        match meta_str(&obj, "resourceVersion") {
            None | Some("") => {
                return Err(ApiError::invalid(
                    def,
                    name,
                    format!(
                        "{} \"{}\" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
                        def.kind, name
                    ),
                ));
            }
            Some(rv) if rv != current_rv => return Err(ApiError::conflict(def, name)),
            Some(_) => {}
        }
        self.replace(def, version, &key, obj)
    }

    /// Apply a patch computed by `f` from the current object. A `resourceVersion` the patch
    /// sets must still be current (`409` otherwise), like the API server's precondition check.
    pub fn patch_with(
        &mut self,
        def: &ResourceDef,
        version: &str,
        ns: Option<&str>,
        name: &str,
        f: impl FnOnce(&mut Value) -> Result<(), ApiError>,
    ) -> Result<Value, ApiError> {
        let key = Self::key(def, ns, name);
        let Some(current) = self.objects.get(&key) else {
            return Err(ApiError::not_found(def, name));
        };
        let current_rv = meta_str(current, "resourceVersion")
            .unwrap_or("")
            .to_string();
        let mut doc = Self::served(def, version, current);
        f(&mut doc)?;
        if let Some(rv) = meta_str(&doc, "resourceVersion")
            && rv != current_rv
        {
            return Err(ApiError::conflict(def, name));
        }
        self.replace(def, version, &key, doc)
    }

    /// Whether an object exists.
    pub fn exists(&self, def: &ResourceDef, ns: Option<&str>, name: &str) -> bool {
        self.objects.contains_key(&Self::key(def, ns, name))
    }

    /// Delete; returns the deleted object (what the API server returns without finalizers).
    /// `preconditions.resourceVersion` in the delete options must match when given.
    pub fn delete(
        &mut self,
        def: &ResourceDef,
        version: &str,
        ns: Option<&str>,
        name: &str,
        precondition_rv: Option<&str>,
    ) -> Result<Value, ApiError> {
        let key = Self::key(def, ns, name);
        let Some(current) = self.objects.get(&key) else {
            return Err(ApiError::not_found(def, name));
        };
        if let Some(rv) = precondition_rv
            && meta_str(current, "resourceVersion") != Some(rv)
        {
            return Err(ApiError::conflict(def, name));
        }
        let Some(mut obj) = self.objects.remove(&key) else {
            return Err(ApiError::not_found(def, name));
        };
        self.rv += 1;
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(self.rv.to_string()));
        }
        self.record(EventType::Deleted, &key, obj.clone());
        Ok(Self::served(def, version, &obj))
    }

    /// The key an object of this kind would have.
    pub fn key_for(def: &ResourceDef, ns: Option<&str>, name: &str) -> ObjectKey {
        Self::key(def, ns, name)
    }

    /// Served form of a stored object.
    pub fn serve(def: &ResourceDef, version: &str, obj: &Value) -> Value {
        Self::served(def, version, obj)
    }
}
