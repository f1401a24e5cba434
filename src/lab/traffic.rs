//! The lab's traffic: a backend for every subset of the live DestinationRule, each with an error
//! rate and latency that can be changed while the lab runs (`PUT /subsets/{name}` on the
//! simulator's HTTP port, `tidegate lab set`), and a client that sends requests at a steady rate,
//! routed the way Istio's sidecar would route them by the live VirtualService (first-match header
//! routes, weights, mirroring). A route to a subset the DestinationRule lacks answers 503 (as
//! Envoy does: no healthy upstream), recorded by the `source` reporter only. Every request is
//! recorded as Istio's standard metrics (`istio_requests_total`,
//! `istio_request_duration_milliseconds_bucket`, reporter `destination`) on a `/metrics` page
//! that Prometheus scrapes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;

/// Errors starting the traffic parts.
#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    #[error("failed to listen on a loopback port: {0}")]
    Bind(#[source] std::io::Error),
    #[error("failed to build the HTTP client: {0}")]
    Client(String),
}

/// Istio's default latency buckets (milliseconds).
pub const ISTIO_BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// A backend's behaviour, changeable while it runs (a scenario turns a canary faulty).
#[derive(Debug, Default)]
pub struct Behaviour {
    /// Share of requests answered 503, in millionths.
    error_ppm: AtomicU64,
    latency_ms: AtomicU64,
}

impl Behaviour {
    pub fn set(&self, error_rate: f64, latency_ms: u64) {
        let ppm = (error_rate.clamp(0.0, 1.0) * 1_000_000.0) as u64;
        self.error_ppm.store(ppm, Ordering::Relaxed);
        self.latency_ms.store(latency_ms, Ordering::Relaxed);
    }

    fn error_rate(&self) -> f64 {
        self.error_ppm.load(Ordering::Relaxed) as f64 / 1_000_000.0
    }

    /// The current settings.
    pub fn settings(&self) -> SubsetSettings {
        SubsetSettings {
            errors: Some(self.error_rate()),
            latency_ms: Some(self.latency_ms.load(Ordering::Relaxed)),
        }
    }

    /// Change what is given, keep the rest.
    pub fn update(&self, change: &SubsetSettings) {
        let current = self.settings();
        self.set(
            change.errors.or(current.errors).unwrap_or(0.0),
            change.latency_ms.or(current.latency_ms).unwrap_or(0),
        );
    }
}

/// A subset's error rate (0..1) and latency, as the control endpoint reads and writes them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubsetSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
}

/// Latency of a subset nobody configured.
pub const DEFAULT_LATENCY_MS: u64 = 5;

/// Every subset's behaviour, by subset name; a subset gets one (no errors, 5 ms) when it first
/// appears in the DestinationRule or is first configured.
#[derive(Debug, Clone, Default)]
pub struct Subsets(Arc<RwLock<BTreeMap<String, Arc<Behaviour>>>>);

impl Subsets {
    /// The behaviour of `subset`, created with the defaults when new.
    pub fn behaviour(&self, subset: &str) -> Arc<Behaviour> {
        if let Some(b) = self.0.read().ok().and_then(|m| m.get(subset).cloned()) {
            return b;
        }
        let fresh = Arc::new(Behaviour::default());
        fresh.set(0.0, DEFAULT_LATENCY_MS);
        match self.0.write() {
            Ok(mut m) => m.entry(subset.to_owned()).or_insert(fresh).clone(),
            Err(_) => fresh,
        }
    }

    /// Change a subset's error rate and/or latency; returns the new settings.
    pub fn set(&self, subset: &str, change: &SubsetSettings) -> SubsetSettings {
        let b = self.behaviour(subset);
        b.update(change);
        b.settings()
    }

    /// Every known subset's settings.
    pub fn list(&self) -> BTreeMap<String, SubsetSettings> {
        self.0
            .read()
            .map(|m| m.iter().map(|(k, b)| (k.clone(), b.settings())).collect())
            .unwrap_or_default()
    }
}

/// A running backend.
#[derive(Debug, Clone)]
pub struct Backend {
    pub addr: SocketAddr,
    pub behaviour: Arc<Behaviour>,
}

/// Start a backend on a loopback port with one behaviour (kept for callers that want a single
/// backend; the simulator serves every subset from one server, see [`start_subset_backends`]).
pub async fn start_backend(
    error_rate: f64,
    latency_ms: u64,
    stop: watch::Receiver<bool>,
) -> Result<Backend, TrafficError> {
    let subsets = Subsets::default();
    let behaviour = subsets.behaviour("backend");
    behaviour.set(error_rate, latency_ms);
    let addr = start_subset_backends(subsets, stop).await?;
    Ok(Backend { addr, behaviour })
}

/// One server answering `GET /{subset}` with that subset's behaviour.
pub async fn start_subset_backends(
    subsets: Subsets,
    mut stop: watch::Receiver<bool>,
) -> Result<SocketAddr, TrafficError> {
    let app = Router::new().route(
        "/{subset}",
        get(move |Path(subset): Path<String>| {
            let b = subsets.behaviour(&subset);
            async move {
                let latency = b.latency_ms.load(Ordering::Relaxed);
                if latency > 0 {
                    tokio::time::sleep(Duration::from_millis(latency)).await;
                }
                if fastrand::f64() < b.error_rate() {
                    (StatusCode::SERVICE_UNAVAILABLE, "injected failure")
                } else {
                    (StatusCode::OK, "ok")
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(TrafficError::Bind)?;
    let addr = listener.local_addr().map_err(TrafficError::Bind)?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
    });
    Ok(addr)
}

/// Subset name → `version` label of every subset in a DestinationRule.
pub fn subsets_of(dr: &Value) -> BTreeMap<String, String> {
    dr.pointer("/spec/subsets")
        .and_then(Value::as_array)
        .map(|subsets| {
            subsets
                .iter()
                .filter_map(|s| {
                    let name = s.get("name").and_then(Value::as_str)?;
                    let version = s
                        .pointer("/labels/version")
                        .and_then(Value::as_str)
                        .unwrap_or(name);
                    Some((name.to_owned(), version.to_owned()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One http route of a VirtualService, as the simulated sidecar sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct SimRoute {
    /// Alternatives; each a set of header conditions that must all hold. Empty: matches all.
    pub matches: Vec<Vec<(String, HeaderCondition)>>,
    /// `(backend, weight)`: a backend is the destination's subset, or its host's short name
    /// when it has no subset (a host-level split).
    pub destinations: Vec<(String, u32)>,
    /// `(backend, percent)`.
    pub mirror: Option<(String, f64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum HeaderCondition {
    Exact(String),
    Prefix(String),
    /// Regexes are not evaluated by the simulator: treated as not matching.
    Unsupported,
}

/// The http routes of a VirtualService, in order.
pub fn routes_of(vs: &Value) -> Vec<SimRoute> {
    let empty = Vec::new();
    let http = vs
        .pointer("/spec/http")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    http.iter()
        .map(|r| {
            let matches = r
                .get("match")
                .and_then(Value::as_array)
                .map(|ms| {
                    ms.iter()
                        .map(|m| {
                            m.get("headers")
                                .and_then(Value::as_object)
                                .map(|h| {
                                    h.iter()
                                        .map(|(k, v)| {
                                            let cond = if let Some(s) =
                                                v.get("exact").and_then(Value::as_str)
                                            {
                                                HeaderCondition::Exact(s.to_owned())
                                            } else if let Some(s) =
                                                v.get("prefix").and_then(Value::as_str)
                                            {
                                                HeaderCondition::Prefix(s.to_owned())
                                            } else {
                                                HeaderCondition::Unsupported
                                            };
                                            (k.to_ascii_lowercase(), cond)
                                        })
                                        .collect()
                                })
                                .unwrap_or_default()
                        })
                        .collect()
                })
                .unwrap_or_default();
            let destinations = r
                .get("route")
                .and_then(Value::as_array)
                .map(|ds| {
                    let n = ds.len();
                    ds.iter()
                        .map(|d| {
                            let subset = d.get("destination").map(backend_of).unwrap_or_default();
                            let default = if n == 1 { 100 } else { 0 };
                            let w = d
                                .get("weight")
                                .and_then(Value::as_u64)
                                .map_or(default, |w| w as u32);
                            (subset, w)
                        })
                        .collect()
                })
                .unwrap_or_default();
            let mirror = r.get("mirror").map(|m| {
                let pct = r
                    .pointer("/mirrorPercentage/value")
                    .and_then(Value::as_f64)
                    .unwrap_or(100.0);
                (backend_of(m), pct)
            });
            SimRoute {
                matches,
                destinations,
                mirror,
            }
        })
        .collect()
}

/// The backend a destination object (`{host, subset?}`) names: its subset, else the short
/// name of its host.
pub fn backend_of(destination: &Value) -> String {
    match destination.get("subset").and_then(Value::as_str) {
        Some(subset) => subset.to_owned(),
        None => {
            let host = destination.get("host").and_then(Value::as_str);
            host.and_then(|h| h.split('.').next())
                .unwrap_or_default()
                .to_owned()
        }
    }
}

/// The route a request with `headers` takes (Istio: the first route whose match holds).
pub fn pick_route<'r>(
    routes: &'r [SimRoute],
    headers: &BTreeMap<String, String>,
) -> Option<&'r SimRoute> {
    routes.iter().find(|r| {
        r.matches.is_empty()
            || r.matches.iter().any(|conds| {
                conds
                    .iter()
                    .all(|(name, cond)| match (headers.get(name), cond) {
                        (Some(v), HeaderCondition::Exact(want)) => v == want,
                        (Some(v), HeaderCondition::Prefix(p)) => v.starts_with(p.as_str()),
                        _ => false,
                    })
            })
    })
}

/// Pick a destination by weight with `roll` in `0.0..1.0`.
pub fn pick_destination(route: &SimRoute, roll: f64) -> Option<&str> {
    let total: u32 = route.destinations.iter().map(|(_, w)| *w).sum();
    if total == 0 {
        return None;
    }
    let mut at = roll * f64::from(total);
    for (subset, w) in &route.destinations {
        if at < f64::from(*w) {
            return Some(subset);
        }
        at -= f64::from(*w);
    }
    route.destinations.last().map(|(s, _)| s.as_str())
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IstioLabels {
    reporter: &'static str,
    destination_service_name: String,
    destination_service_namespace: String,
    destination_version: String,
    destination_canonical_revision: String,
    response_code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurationLabels {
    reporter: &'static str,
    destination_service_name: String,
    destination_service_namespace: String,
    destination_version: String,
    destination_canonical_revision: String,
}

/// What the client simulates.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub namespace: String,
    pub service: String,
    pub virtual_service: String,
    pub stable_subset: String,
    pub canary_subset: String,
    /// Subset name → `version` label (from the DestinationRule); with `by_host`, Service →
    /// the version its pods run.
    pub versions: BTreeMap<String, String>,
    /// The backends are Services of their own (a host-level split): each one's requests carry
    /// its name as `destination_service_name`.
    pub by_host: bool,
    /// Requests per second.
    pub rps: f64,
    /// Share of requests carrying `x-canary: true`.
    pub header_share: f64,
}

/// A running simulator.
#[derive(Debug)]
pub struct Simulator {
    /// `/metrics` for Prometheus, and the subset controls (`GET /subsets`, `PUT /subsets/{name}`).
    pub metrics_addr: SocketAddr,
    /// The configured stable subset's backend.
    pub stable: Backend,
    /// The configured canary subset's backend.
    pub canary: Backend,
    /// Every subset's behaviour.
    pub subsets: Subsets,
    pub sent: Arc<AtomicU64>,
}

/// Reads the live VirtualService (e.g. from the emulator).
pub type VsReader = Arc<dyn Fn() -> Option<Value> + Send + Sync>;
/// Reads the live DestinationRule (e.g. from the emulator).
pub type DrReader = Arc<dyn Fn() -> Option<Value> + Send + Sync>;

/// What the simulated sidecar knows of the mesh: the routes and the subsets that exist.
#[derive(Debug, Clone, Default)]
struct MeshView {
    routes: Vec<SimRoute>,
    /// Subset → `version` label.
    subsets: BTreeMap<String, String>,
}

#[derive(Clone)]
struct Recorder {
    requests: Family<IstioLabels, Counter>,
    durations: Family<DurationLabels, Histogram>,
    cfg: Arc<SimConfig>,
}

impl Recorder {
    fn record(&self, reporter: &'static str, backend: &str, version: &str, code: String, ms: f64) {
        let cfg = &self.cfg;
        let service = if cfg.by_host { backend } else { &cfg.service };
        self.requests
            .get_or_create(&IstioLabels {
                reporter,
                destination_service_name: service.to_owned(),
                destination_service_namespace: cfg.namespace.clone(),
                destination_version: version.to_owned(),
                destination_canonical_revision: version.to_owned(),
                response_code: code,
            })
            .inc();
        self.durations
            .get_or_create(&DurationLabels {
                reporter,
                destination_service_name: service.to_owned(),
                destination_service_namespace: cfg.namespace.clone(),
                destination_version: version.to_owned(),
                destination_canonical_revision: version.to_owned(),
            })
            .observe(ms);
    }
}

/// Start the backends, the metrics page and the request loop; the subsets are the configured
/// `versions` (use [`start_with_mesh`] to follow a live DestinationRule).
pub async fn start(
    config: SimConfig,
    read_vs: VsReader,
    stop: watch::Receiver<bool>,
) -> Result<Simulator, TrafficError> {
    start_with_mesh(config, read_vs, None, stop).await
}

/// Start the simulator; with `read_dr`, every subset of the live DestinationRule gets a backend
/// and routes to subsets it lacks answer 503.
pub async fn start_with_mesh(
    config: SimConfig,
    read_vs: VsReader,
    read_dr: Option<DrReader>,
    stop: watch::Receiver<bool>,
) -> Result<Simulator, TrafficError> {
    let subsets = Subsets::default();
    let backend_addr = start_subset_backends(subsets.clone(), stop.clone()).await?;
    let backend = |name: &str| Backend {
        addr: backend_addr,
        behaviour: subsets.behaviour(name),
    };
    let (stable, canary) = (
        backend(&config.stable_subset),
        backend(&config.canary_subset),
    );
    let recorder = Recorder {
        requests: Family::default(),
        durations: Family::new_with_constructor(|| Histogram::new(ISTIO_BUCKETS)),
        cfg: Arc::new(config),
    };
    let metrics_addr = serve_metrics(&recorder, subsets.clone(), stop.clone()).await?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| TrafficError::Client(e.to_string()))?;
    let view: Arc<RwLock<MeshView>> = Arc::new(RwLock::new(MeshView::default()));
    let fixed = recorder.cfg.versions.clone();
    spawn_mesh_refresh(
        view.clone(),
        read_vs,
        read_dr,
        fixed,
        subsets.clone(),
        stop.clone(),
    );
    let sent = Arc::new(AtomicU64::new(0));
    let sim = Simulator {
        metrics_addr,
        stable,
        canary,
        subsets,
        sent: sent.clone(),
    };
    let sender = Sender {
        client,
        backend_addr,
        recorder,
        sent,
    };
    tokio::spawn(request_loop(sender, view, stop));
    Ok(sim)
}

/// The metrics page and the subset controls.
async fn serve_metrics(
    recorder: &Recorder,
    subsets: Subsets,
    mut stop: watch::Receiver<bool>,
) -> Result<SocketAddr, TrafficError> {
    let mut registry = Registry::default();
    registry.register(
        "istio_requests",
        "Requests (simulated sidecar)",
        recorder.requests.clone(),
    );
    registry.register(
        "istio_request_duration_milliseconds",
        "Request duration (simulated sidecar)",
        recorder.durations.clone(),
    );
    let registry = Arc::new(registry);
    let listed = subsets.clone();
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let r = registry.clone();
                async move {
                    let mut out = String::new();
                    let _ = prometheus_client::encoding::text::encode(&mut out, &r);
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        out,
                    )
                }
            }),
        )
        .route(
            "/subsets",
            get(move || {
                let listed = listed.clone();
                async move { Json(listed.list()) }
            }),
        )
        .route(
            "/subsets/{subset}",
            axum::routing::put(
                move |Path(subset): Path<String>, Json(change): Json<SubsetSettings>| {
                    let now = subsets.set(&subset, &change);
                    tracing::info!(
                        subset = %subset,
                        errors = now.errors.unwrap_or_default(),
                        latency_ms = now.latency_ms.unwrap_or_default(),
                        "lab subset changed"
                    );
                    async move { Json(now) }
                },
            ),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(TrafficError::Bind)?;
    let addr = listener.local_addr().map_err(TrafficError::Bind)?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await;
    });
    Ok(addr)
}

/// Refresh the routes and subsets from the live objects every 100 ms.
fn spawn_mesh_refresh(
    view: Arc<RwLock<MeshView>>,
    read_vs: VsReader,
    read_dr: Option<DrReader>,
    fixed: BTreeMap<String, String>,
    subsets: Subsets,
    mut stop: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        loop {
            let routes = read_vs().map(|vs| routes_of(&vs));
            let known = match &read_dr {
                Some(read) => read().map(|dr| subsets_of(&dr)).unwrap_or_default(),
                None => fixed.clone(),
            };
            for name in known.keys() {
                subsets.behaviour(name);
            }
            if let Ok(mut v) = view.write() {
                if let Some(routes) = routes {
                    v.routes = routes;
                }
                v.subsets = known;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
    });
}

struct Sender {
    client: reqwest::Client,
    backend_addr: SocketAddr,
    recorder: Recorder,
    sent: Arc<AtomicU64>,
}

impl Sender {
    /// One request to `subset` (the sidecar's view in `view`), recorded as Istio would.
    fn send(&self, subset: &str, view: &MeshView) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        let Some(version) = view.subsets.get(subset).cloned() else {
            // No such subset in the DestinationRule: Envoy answers 503 (NR) itself; only the
            // client's proxy reports it.
            self.recorder
                .record("source", subset, subset, "503".to_owned(), 0.0);
            return;
        };
        let url = format!("http://{}/{subset}", self.backend_addr);
        let client = self.client.clone();
        let recorder = self.recorder.clone();
        let backend = subset.to_owned();
        tokio::spawn(async move {
            let started = Instant::now();
            let code = match client.get(&url).send().await {
                Ok(r) => r.status().as_u16().to_string(),
                Err(_) => "503".to_owned(),
            };
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            recorder.record("destination", &backend, &version, code, ms);
        });
    }
}

async fn request_loop(
    sender: Sender,
    view: Arc<RwLock<MeshView>>,
    mut stop: watch::Receiver<bool>,
) {
    let tick = Duration::from_millis(20);
    let mut owed = 0.0f64;
    let mut ticker = tokio::time::interval(tick);
    let (rps, header_share) = (sender.recorder.cfg.rps, sender.recorder.cfg.header_share);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        owed += rps * tick.as_secs_f64();
        let snapshot = view.read().map(|v| v.clone()).unwrap_or_default();
        while owed >= 1.0 {
            owed -= 1.0;
            let mut headers = BTreeMap::new();
            if fastrand::f64() < header_share {
                headers.insert("x-canary".to_owned(), "true".to_owned());
            }
            let Some(route) = pick_route(&snapshot.routes, &headers) else {
                continue;
            };
            let Some(subset) = pick_destination(route, fastrand::f64()) else {
                continue;
            };
            sender.send(subset, &snapshot);
            if let Some((m, pct)) = &route.mirror
                && fastrand::f64() * 100.0 < *pct
            {
                sender.send(m, &snapshot);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn first_match_weights_and_mirror() {
        let vs = json!({"spec": {"http": [
            {"name": "h", "match": [{"headers": {"x-canary": {"exact": "true"}}}], "route": [{"destination": {"host": "s", "subset": "v2"}}]},
            {"name": "primary", "route": [
                {"destination": {"host": "s", "subset": "v1"}, "weight": 75},
                {"destination": {"host": "s", "subset": "v2"}, "weight": 25}],
             "mirror": {"host": "s", "subset": "v2"}, "mirrorPercentage": {"value": 20.0}}
        ]}});
        let routes = routes_of(&vs);
        assert_eq!(routes.len(), 2);
        let mut h = BTreeMap::new();
        h.insert("x-canary".to_owned(), "true".to_owned());
        let r = pick_route(&routes, &h).expect("route");
        assert_eq!(pick_destination(r, 0.99), Some("v2"));
        let plain = pick_route(&routes, &BTreeMap::new()).expect("route");
        assert_eq!(pick_destination(plain, 0.74), Some("v1"));
        assert_eq!(pick_destination(plain, 0.76), Some("v2"));
        assert_eq!(plain.mirror, Some(("v2".to_owned(), 20.0)));
    }

    #[test]
    fn subsets_and_their_settings() {
        let dr = json!({"spec": {"subsets": [
            {"name": "v1", "labels": {"version": "v1"}},
            {"name": "v3", "labels": {"version": "3.0"}},
            {"name": "bare"}]}});
        let found = subsets_of(&dr);
        assert_eq!(found.get("v3").map(String::as_str), Some("3.0"));
        assert_eq!(found.get("bare").map(String::as_str), Some("bare"));
        assert_eq!(found.len(), 3);
        let subsets = Subsets::default();
        let now = subsets.set(
            "v3",
            &SubsetSettings {
                errors: Some(0.1),
                latency_ms: None,
            },
        );
        assert_eq!(now.latency_ms, Some(DEFAULT_LATENCY_MS), "latency kept");
        assert!((now.errors.unwrap_or_default() - 0.1).abs() < 1e-9);
        assert_eq!(subsets.list().len(), 1);
    }
}
