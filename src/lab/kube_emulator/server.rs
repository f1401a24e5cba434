//! HTTP front of the emulator: URL layout, verbs, content types, watch streams, faults.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};

use super::faults::{Faults, RequestRecord};
use super::resources::{self, ResourceDef};
use super::selector::{Selector, fields_of, labels_of};
use super::store::{ApiError, Store, StoredEvent, parse_rv};

/// Shared server state.
#[derive(Clone)]
pub(crate) struct App {
    pub store: Arc<Mutex<Store>>,
    pub faults: Arc<Faults>,
    pub addr: String,
    pub bookmark_interval: Duration,
    pub shutdown: watch::Receiver<bool>,
}

pub(crate) fn lock(store: &Mutex<Store>) -> MutexGuard<'_, Store> {
    // A panic while holding the lock leaves a consistent store (every write is one insert).
    store.lock().unwrap_or_else(|e| e.into_inner())
}

fn json_response(code: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn error_response(e: &ApiError) -> Response {
    json_response(e.code, &e.status_body())
}

/// Where a request points after `/api/v1` or `/apis/{group}/{version}`.
#[derive(Debug)]
enum Target {
    /// `GET /api/v1`, `/apis/g/v`: the resource list.
    Discovery,
    Collection {
        plural: String,
        namespace: Option<String>,
    },
    Object {
        plural: String,
        namespace: Option<String>,
        name: String,
    },
}

fn parse_target(rest: &[&str]) -> Option<Target> {
    match rest {
        [] => Some(Target::Discovery),
        ["namespaces", ns, plural] => Some(Target::Collection {
            plural: plural.to_string(),
            namespace: Some(ns.to_string()),
        }),
        ["namespaces", ns, plural, name] => Some(Target::Object {
            plural: plural.to_string(),
            namespace: Some(ns.to_string()),
            name: name.to_string(),
        }),
        [plural] => Some(Target::Collection {
            plural: plural.to_string(),
            namespace: None,
        }),
        [plural, name] => Some(Target::Object {
            plural: plural.to_string(),
            namespace: None,
            name: name.to_string(),
        }),
        _ => None,
    }
}

fn query_params(uri: &Uri) -> HashMap<String, String> {
    axum::extract::Query::<HashMap<String, String>>::try_from_uri(uri)
        .map(|q| q.0)
        .unwrap_or_default()
}

fn not_found_path(path: &str) -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        format!("the server could not find the requested resource ({path})"),
    )
}

/// The single entry point: every request lands here.
pub(crate) async fn handle(
    State(app): State<App>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let fault = app.faults.before_request(&method, &path);
    if let Some(delay) = fault.delay {
        tokio::time::sleep(delay).await;
    }
    let resp = if let Some(code) = fault.fail_with {
        let reason = match code {
            403 => "Forbidden",
            404 => "NotFound",
            409 => "Conflict",
            422 => "Invalid",
            429 => "TooManyRequests",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            _ => "InternalError",
        };
        let message = fault
            .message
            .unwrap_or_else(|| format!("injected fault: {code} {reason}"));
        error_response(&ApiError::new(code, reason, message))
    } else {
        route(&app, &method, &uri, &headers, body).await
    };
    app.faults.record(RequestRecord {
        method: method.to_string(),
        path,
        query: uri.query().unwrap_or("").to_string(),
        status: resp.status().as_u16(),
    });
    resp
}

async fn route(
    app: &App,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let defs = lock(&app.store).defs().to_vec();
    let (group, version, rest): (&str, &str, &[&str]) = match segs.as_slice() {
        ["version"] => {
            return json_response(
                200,
                &json!({"major": "1", "minor": "34", "gitVersion": "v1.34.0-tidegate-emulator",
                        "platform": "linux/amd64"}),
            );
        }
        ["api"] => return json_response(200, &resources::core_versions(&app.addr)),
        ["apis"] => return json_response(200, &resources::group_list(&defs)),
        ["apis", g] => {
            if resources::has_group(&defs, g) {
                return json_response(200, &resources::api_group(&defs, g));
            }
            return error_response(&not_found_path(path));
        }
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return error_response(&not_found_path(path)),
    };
    let Some(target) = parse_target(rest) else {
        return error_response(&not_found_path(path));
    };
    let (plural, namespace, name) = match target {
        Target::Discovery => {
            return match resources::resource_list(&defs, group, version) {
                Some(v) if method == Method::GET => json_response(200, &v),
                _ => error_response(&not_found_path(path)),
            };
        }
        Target::Collection { plural, namespace } => (plural, namespace, None),
        Target::Object {
            plural,
            namespace,
            name,
        } => (plural, namespace, Some(name)),
    };
    let Some(def) = defs
        .iter()
        .find(|d| d.group == group && d.plural == plural && d.versions.iter().any(|v| v == version))
        .cloned()
    else {
        return error_response(&not_found_path(path));
    };
    if namespace.is_some() && !def.namespaced {
        return error_response(&not_found_path(path));
    }
    let params = query_params(uri);
    let ns = namespace.as_deref();
    if params.get("dryRun").is_some_and(|d| !d.is_empty()) && method != Method::GET {
        // Refuse rather than silently persist what the client meant as a dry run.
        return error_response(&ApiError::bad_request(
            "dryRun is not supported by the tidegate API emulator",
        ));
    }
    let ok = |v: Value| (200u16, v);
    let result: Result<(u16, Value), ApiError> = match (method.clone(), name) {
        (Method::GET, None) if is_true(params.get("watch")) => {
            return watch_response(app, &def, version, ns, &params);
        }
        (Method::GET, None) => list(app, &def, version, ns, &params).map(ok),
        (Method::GET, Some(name)) => lock(&app.store).get(&def, version, ns, &name).map(ok),
        (Method::POST, None) => parse_json(&body)
            .and_then(|obj| lock(&app.store).create(&def, version, ns, obj))
            .map(|o| (201, o)),
        (Method::PUT, Some(name)) => {
            let obj = parse_json(&body);
            app.faults.run_before_write(&app.store);
            obj.and_then(|obj| lock(&app.store).update(&def, version, ns, &name, obj))
                .map(ok)
        }
        (Method::PATCH, Some(name)) => {
            app.faults.run_before_write(&app.store);
            patch(app, &def, version, ns, &name, headers, &body, &params).map(ok)
        }
        (Method::DELETE, Some(name)) => {
            app.faults.run_before_write(&app.store);
            let pre = parse_json(&body).ok().and_then(|b| {
                b.pointer("/preconditions/resourceVersion")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            });
            lock(&app.store)
                .delete(&def, version, ns, &name, pre.as_deref())
                .map(ok)
        }
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({path})"),
        )),
    };
    match result {
        Ok((code, obj)) => json_response(code, &obj),
        Err(e) => error_response(&e),
    }
}

fn is_true(v: Option<&String>) -> bool {
    matches!(v.map(String::as_str), Some("true" | "1"))
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
}

fn selectors(params: &HashMap<String, String>) -> Result<(Selector, Selector), ApiError> {
    let l = Selector::parse(
        params
            .get("labelSelector")
            .map(String::as_str)
            .unwrap_or(""),
    )
    .map_err(ApiError::bad_request)?;
    let f = Selector::parse(
        params
            .get("fieldSelector")
            .map(String::as_str)
            .unwrap_or(""),
    )
    .map_err(ApiError::bad_request)?;
    Ok((l, f))
}

fn list(
    app: &App,
    def: &ResourceDef,
    version: &str,
    ns: Option<&str>,
    params: &HashMap<String, String>,
) -> Result<Value, ApiError> {
    let (l, f) = selectors(params)?;
    Ok(lock(&app.store).list(def, version, ns, &l, &f))
}

#[allow(clippy::too_many_arguments)]
fn patch(
    app: &App,
    def: &ResourceDef,
    version: &str,
    ns: Option<&str>,
    name: &str,
    headers: &HeaderMap,
    body: &[u8],
    params: &HashMap<String, String>,
) -> Result<Value, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let mut store = lock(&app.store);
    match ct.as_str() {
        "application/json-patch+json" => {
            let ops: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON Patch: {e}")))?;
            let def2 = def.clone();
            let name2 = name.to_string();
            store.patch_with(def, version, ns, name, move |doc| {
                json_patch::patch(doc, &ops.0).map_err(|e| {
                    ApiError::invalid(
                        &def2,
                        &name2,
                        format!(
                            "the server rejected our request due to an error in our request: {e}"
                        ),
                    )
                })
            })
        }
        "application/merge-patch+json" => {
            let p = parse_json(body)?;
            store.patch_with(def, version, ns, name, |doc| {
                json_patch::merge(doc, &p);
                Ok(())
            })
        }
        "application/strategic-merge-patch+json" => {
            if def.custom {
                return Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    format!(
                        "the body of the request was in an unknown format - accepted media types include: \
                         application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml \
                         (strategic merge patch is not supported for custom resources like {})",
                        def.qualified()
                    ),
                ));
            }
            // Built-in kinds: approximated by a JSON merge patch (lists replaced, not merged by key).
            let p = parse_json(body)?;
            store.patch_with(def, version, ns, name, |doc| {
                json_patch::merge(doc, &p);
                Ok(())
            })
        }
        "application/apply-patch+yaml" | "application/apply-patch+cbor" => {
            if params.get("fieldManager").is_none_or(|m| m.is_empty()) {
                return Err(ApiError::bad_request(
                    "PATCH, application/apply-patch+yaml requires fieldManager to be set",
                ));
            }
            let text = std::str::from_utf8(body)
                .map_err(|_| ApiError::bad_request("the apply body is not UTF-8"))?;
            let applied: Value = serde_saphyr::from_str(text).map_err(|e| {
                ApiError::bad_request(format!("the apply body is not valid YAML: {e}"))
            })?;
            if store.exists(def, ns, name) {
                store.patch_with(def, version, ns, name, |doc| {
                    json_patch::merge(doc, &applied);
                    Ok(())
                })
            } else {
                store.create(def, version, ns, applied)
            }
        }
        other => Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - {other:?}"),
        )),
    }
}

struct WatchState {
    pending: std::collections::VecDeque<Value>,
    rx: Option<broadcast::Receiver<StoredEvent>>,
    def: ResourceDef,
    version: String,
    ns: Option<String>,
    labels: Selector,
    fields: Selector,
    bookmarks: bool,
    bookmark_every: Duration,
    deadline: Option<tokio::time::Instant>,
    last_rv: u64,
    shutdown: watch::Receiver<bool>,
    done: bool,
}

fn event_json(kind: &str, obj: Value) -> Value {
    json!({"type": kind, "object": obj})
}

impl WatchState {
    fn wants(&self, ev: &StoredEvent) -> bool {
        ev.key.group == self.def.group
            && ev.key.plural == self.def.plural
            && (self.ns.is_none() || ev.key.namespace == self.ns)
            && self.labels.matches(&labels_of(&ev.object))
            && self.fields.matches(&fields_of(&ev.object))
    }

    fn bookmark(&self, annotations: Option<Value>) -> Value {
        let mut meta = json!({"resourceVersion": self.last_rv.to_string()});
        if let (Some(a), Some(m)) = (annotations, meta.as_object_mut()) {
            m.insert("annotations".into(), a);
        }
        event_json(
            "BOOKMARK",
            json!({"kind": self.def.kind, "apiVersion": self.def.group_version(&self.version),
                   "metadata": meta}),
        )
    }
}

fn gone_event(e: &ApiError) -> Value {
    event_json("ERROR", e.status_body())
}

fn watch_response(
    app: &App,
    def: &ResourceDef,
    version: &str,
    ns: Option<&str>,
    params: &HashMap<String, String>,
) -> Response {
    let (labels, fields) = match selectors(params) {
        Ok(s) => s,
        Err(e) => return error_response(&e),
    };
    let rv_param = params
        .get("resourceVersion")
        .map(String::as_str)
        .unwrap_or("");
    let send_initial = is_true(params.get("sendInitialEvents"));
    let bookmarks = is_true(params.get("allowWatchBookmarks"));
    let mut state = WatchState {
        pending: Default::default(),
        rx: None,
        def: def.clone(),
        version: version.to_string(),
        ns: ns.map(str::to_string),
        labels,
        fields,
        bookmarks,
        bookmark_every: app.bookmark_interval,
        deadline: params
            .get("timeoutSeconds")
            .and_then(|s| s.parse::<u64>().ok())
            .map(|s| tokio::time::Instant::now() + Duration::from_secs(s)),
        last_rv: 0,
        shutdown: app.shutdown.clone(),
        done: false,
    };
    {
        let store = lock(&app.store);
        state.last_rv = store.resource_version();
        // No resourceVersion, "0" or sendInitialEvents: start with the current state as ADDED
        // events (API conventions, "Efficient detection of changes": "0" = any, start at most recent).
        if rv_param.is_empty() || rv_param == "0" || send_initial {
            let list = store.list(def, version, ns, &state.labels, &state.fields);
            if let Some(items) = list.get("items").and_then(Value::as_array) {
                for item in items {
                    state.pending.push_back(event_json("ADDED", item.clone()));
                }
            }
            if send_initial {
                state
                    .pending
                    .push_back(state.bookmark(Some(json!({"k8s.io/initial-events-end": "true"}))));
            }
        } else {
            let since = match parse_rv(rv_param) {
                Ok(v) => v,
                Err(e) => return error_response(&e),
            };
            match store.events_since(&def.group, &def.plural, since) {
                Ok(evs) => {
                    let wanted: Vec<Value> = evs
                        .iter()
                        .filter(|e| state.wants(e))
                        .map(|ev| {
                            event_json(ev.kind.as_str(), Store::serve(def, version, &ev.object))
                        })
                        .collect();
                    state.pending.extend(wanted);
                }
                Err(e) => {
                    // The API server answers 200 and sends one ERROR event carrying 410 Gone.
                    state.pending.push_back(gone_event(&e));
                    state.done = true;
                }
            }
        }
        if !state.done {
            state.rx = Some(store.subscribe());
        }
    }
    let stream = futures::stream::unfold(state, next_watch_item);
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| error_response(&ApiError::new(500, "InternalError", "watch")))
}

async fn next_watch_item(mut st: WatchState) -> Option<(Result<Bytes, Infallible>, WatchState)> {
    loop {
        if let Some(v) = st.pending.pop_front() {
            let mut line = v.to_string();
            line.push('\n');
            return Some((Ok(Bytes::from(line)), st));
        }
        if st.done {
            return None;
        }
        let rx = st.rx.as_mut()?;
        let bookmark_sleep = tokio::time::sleep(st.bookmark_every);
        let deadline = st.deadline;
        let deadline_sleep = async move {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending::<()>().await,
            }
        };
        let mut shutdown = st.shutdown.clone();
        tokio::select! {
            ev = rx.recv() => match ev {
                Ok(ev) => {
                    st.last_rv = ev.resource_version;
                    if st.wants(&ev) {
                        let obj = Store::serve(&st.def, &st.version, &ev.object);
                        st.pending.push_back(event_json(ev.kind.as_str(), obj));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let e = ApiError::new(410, "Expired", "the watcher fell behind; too old resource version");
                    st.pending.push_back(gone_event(&e));
                    st.done = true;
                }
                Err(broadcast::error::RecvError::Closed) => st.done = true,
            },
            _ = bookmark_sleep, if st.bookmarks => {
                let b = st.bookmark(None);
                st.pending.push_back(b);
            }
            _ = deadline_sleep => st.done = true,
            _ = shutdown.changed() => st.done = true,
        }
    }
}
