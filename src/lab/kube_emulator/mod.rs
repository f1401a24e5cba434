//! An in-process Kubernetes API server for tests and `tidegate lab`.
//!
//! Real HTTP on `127.0.0.1:<port>`; kube's `Client` talks to it through an ordinary
//! `kube::Config` (or kubeconfig) with `http://127.0.0.1:PORT` as the server. It serves
//! discovery, get/list/create/update/delete/patch/watch for the kinds in
//! [`resources::default_resources`], with the API conventions that matter to tidegate:
//! resourceVersion and generation, `409 Conflict` on stale writes, JSON Patch `test` failures
//! as `422`, `415` for strategic-merge patches of custom resources, `Status` error bodies,
//! watches with bookmarks and `410 Gone`. Every stored version of every object is kept so
//! tests can assert what was ever written. See `docs/mesh.md` for what is simplified.

mod faults;
pub mod resources;
pub mod schema;
pub mod selector;
mod server;
pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

pub use faults::{Faults, RequestRecord, Verb};
pub use resources::ResourceDef;
pub use store::{ApiError, EventType, ObjectKey, Store, StoredEvent};

/// What can go wrong starting or seeding the emulator.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("failed to bind the emulator to 127.0.0.1: {0}")]
    Bind(#[source] std::io::Error),
    #[error("failed to load manifests: {0}")]
    Manifests(String),
    #[error("failed to store {what} from {path}: {source}")]
    Store {
        path: PathBuf,
        what: String,
        #[source]
        source: Box<ApiError>,
    },
    #[error("failed to build a kube client for the emulator: {0}")]
    Client(String),
}

/// How to run the emulator.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Served `networking.istio.io` versions, the preferred one first.
    pub istio_versions: Vec<String>,
    /// How often a watch that allows bookmarks gets one.
    pub bookmark_interval: Duration,
    /// Events kept for watches; watching from an older resourceVersion is `410 Gone`.
    pub event_log_capacity: usize,
    /// Namespaces created at start.
    pub namespaces: Vec<String>,
    /// Files or folders with `CustomResourceDefinition`s (e.g. Istio's `crd-all.gen.yaml`):
    /// custom resources are then validated against their schemas. Empty: no validation.
    pub crd_paths: Vec<PathBuf>,
    /// Kinds of the default set not to serve (a cluster without that CRD): discovery leaves
    /// them out and their URLs answer `404`.
    pub without_kinds: Vec<String>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            istio_versions: vec!["v1".into(), "v1beta1".into(), "v1alpha3".into()],
            bookmark_interval: Duration::from_secs(30),
            event_log_capacity: 10_000,
            namespaces: vec!["default".into()],
            crd_paths: Vec::new(),
            without_kinds: Vec::new(),
        }
    }
}

/// What loading manifests did: stored objects, and documents of kinds the emulator does not serve.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// `(kind, namespace, name)` of each stored object.
    pub loaded: Vec<(String, Option<String>, String)>,
    /// `(file, apiVersion, kind)` of each skipped document.
    pub skipped: Vec<(PathBuf, String, String)>,
}

/// A running emulator. Dropping it does not stop the server; call [`EmulatorHandle::shutdown`].
pub struct EmulatorHandle {
    addr: SocketAddr,
    store: Arc<Mutex<Store>>,
    faults: Arc<Faults>,
    shutdown_tx: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// Start an emulator on `127.0.0.1:0` (an ephemeral port).
pub async fn start(config: EmulatorConfig) -> Result<EmulatorHandle, EmulatorError> {
    let versions: Vec<&str> = config.istio_versions.iter().map(String::as_str).collect();
    let mut defs = resources::default_resources(&versions);
    defs.retain(|d| !config.without_kinds.contains(&d.kind));
    let mut store = Store::new(defs, config.event_log_capacity);
    if !config.crd_paths.is_empty() {
        let docs = crate::mesh::manifests::load(&config.crd_paths)
            .map_err(|e| EmulatorError::Manifests(e.to_string()))?;
        let values: Vec<Value> = docs.into_iter().map(|d| d.value).collect();
        store.set_schemas(schema::Schemas::from_documents(&values));
    }
    if let Some(ns_def) = store.def("", "v1", "namespaces").cloned() {
        for ns in &config.namespaces {
            let obj = serde_json::json!({"metadata": {"name": ns}});
            store
                .create(&ns_def, "v1", None, obj)
                .map_err(|source| EmulatorError::Store {
                    path: PathBuf::from("<config>"),
                    what: format!("namespace {ns}"),
                    source: Box::new(source),
                })?;
        }
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(EmulatorError::Bind)?;
    let addr = listener.local_addr().map_err(EmulatorError::Bind)?;
    let store = Arc::new(Mutex::new(store));
    let faults = Arc::new(Faults::default());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let app = server::App {
        store: store.clone(),
        faults: faults.clone(),
        addr: addr.to_string(),
        bookmark_interval: config.bookmark_interval,
        shutdown: shutdown_rx.clone(),
    };
    let router = axum::Router::new().fallback(server::handle).with_state(app);
    let mut stop = shutdown_rx;
    let task = tokio::spawn(async move {
        let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
            let _ = stop.changed().await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "kube emulator stopped with an error");
        }
    });
    tracing::debug!(%addr, "kube emulator listening");
    Ok(EmulatorHandle {
        addr,
        store,
        faults,
        shutdown_tx,
        task,
    })
}

impl EmulatorHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kube `Config` pointing at the emulator (plain HTTP, namespace `default`).
    pub fn kube_config(&self) -> Result<kube::Config, EmulatorError> {
        let uri: http::Uri = self
            .url()
            .parse()
            .map_err(|e: http::uri::InvalidUri| EmulatorError::Client(e.to_string()))?;
        Ok(kube::Config::new(uri))
    }

    /// A kube `Client` for the emulator.
    pub fn client(&self) -> Result<kube::Client, EmulatorError> {
        kube::Client::try_from(self.kube_config()?)
            .map_err(|e| EmulatorError::Client(e.to_string()))
    }

    /// A kubeconfig document naming the emulator (for `tidegate` run as a separate process).
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: tidegate-lab\n  cluster:\n    server: {url}\n\
             contexts:\n- name: tidegate-lab\n  context:\n    cluster: tidegate-lab\n    user: tidegate-lab\n    namespace: default\n\
             current-context: tidegate-lab\nusers:\n- name: tidegate-lab\n  user: {{}}\n",
            url = self.url()
        )
    }

    /// The fault hooks and the request log.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Run `f` with the store locked (direct reads and writes, bypassing HTTP and faults).
    pub fn with_store<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        let mut s = server::lock(&self.store);
        f(&mut s)
    }

    /// Create or replace an object given as a manifest (`apiVersion`, `kind`, `metadata`).
    /// The namespace defaults to `default_ns` and is created when missing.
    pub fn apply_manifest(&self, obj: Value, default_ns: &str) -> Result<ObjectKey, ApiError> {
        self.with_store(|s| apply_manifest(s, obj, default_ns))
    }

    /// The current object (as stored), by `apiVersion`/`kind`.
    pub fn get(
        &self,
        api_version: &str,
        kind: &str,
        ns: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        self.with_store(|s| {
            let def = s.def_for(api_version, kind)?.clone();
            s.get_raw(&Store::key_for(&def, ns, name)).cloned()
        })
    }

    /// Every stored version of an object, oldest first.
    pub fn history(
        &self,
        api_version: &str,
        kind: &str,
        ns: Option<&str>,
        name: &str,
    ) -> Vec<StoredEvent> {
        self.with_store(|s| match s.def_for(api_version, kind).cloned() {
            Some(def) => s.history(&Store::key_for(&def, ns, name)),
            None => Vec::new(),
        })
    }

    /// Load every YAML/JSON document under `paths` (files or folders, multi-document files).
    /// Documents of kinds the emulator does not serve are reported in `skipped`.
    pub fn load_paths(
        &self,
        paths: &[PathBuf],
        default_ns: &str,
    ) -> Result<LoadReport, EmulatorError> {
        let mut report = LoadReport::default();
        let docs = crate::mesh::manifests::load(paths)
            .map_err(|e| EmulatorError::Manifests(e.to_string()))?;
        for doc in docs {
            let api_version = doc.api_version().to_string();
            let kind = doc.kind().to_string();
            let served = self.with_store(|s| s.def_for(&api_version, &kind).is_some());
            if !served {
                report.skipped.push((doc.file, api_version, kind));
                continue;
            }
            let key = self
                .apply_manifest(doc.value, default_ns)
                .map_err(|source| EmulatorError::Store {
                    path: doc.file.clone(),
                    what: kind.clone(),
                    source: Box::new(source),
                })?;
            report.loaded.push((kind, key.namespace, key.name));
        }
        Ok(report)
    }

    /// Stop serving (open watches end) and wait for the server task.
    pub async fn shutdown(self) {
        let _ = self.shutdown_tx.send(true);
        let _ = self.task.await;
    }
}

/// Create or replace a manifest in the store, creating its namespace if needed.
pub fn apply_manifest(
    store: &mut Store,
    obj: Value,
    default_ns: &str,
) -> Result<ObjectKey, ApiError> {
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let kind = obj
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let Some(def) = store.def_for(&api_version, &kind).cloned() else {
        return Err(ApiError::bad_request(format!(
            "no kind {kind:?} is registered for version {api_version:?}"
        )));
    };
    let version = api_version.rsplit('/').next().unwrap_or("v1").to_string();
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let ns = if def.namespaced {
        Some(
            obj.pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or(default_ns)
                .to_string(),
        )
    } else {
        None
    };
    if let (Some(ns), Some(ns_def)) = (&ns, store.def("", "v1", "namespaces").cloned())
        && !store.exists(&ns_def, None, ns)
    {
        store.create(
            &ns_def,
            "v1",
            None,
            serde_json::json!({"metadata": {"name": ns}}),
        )?;
    }
    if store.exists(&def, ns.as_deref(), &name) {
        let mut obj = obj;
        store.patch_with(&def, &version, ns.as_deref(), &name, |doc| {
            if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
            let rv = doc.pointer("/metadata/resourceVersion").cloned();
            *doc = obj;
            if let (Some(rv), Some(m)) =
                (rv, doc.get_mut("metadata").and_then(Value::as_object_mut))
            {
                m.insert("resourceVersion".into(), rv);
            }
            Ok(())
        })?;
    } else {
        let mut obj = obj;
        if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
        }
        store.create(&def, &version, ns.as_deref(), obj)?;
    }
    Ok(Store::key_for(&def, ns.as_deref(), &name))
}
