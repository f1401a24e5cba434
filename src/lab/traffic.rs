//! The lab's traffic: two backends (stable and canary) with a configurable error rate and
//! latency, and a client that sends requests at a steady rate, routed the way Istio's sidecar
//! would route them by the live VirtualService (first-match header routes, weights, mirroring).
//! Every request is recorded as Istio's standard metrics (`istio_requests_total`,
//! `istio_request_duration_milliseconds_bucket`, reporter `destination`) on a `/metrics` page
//! that Prometheus scrapes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
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
}

/// A running backend.
#[derive(Debug, Clone)]
pub struct Backend {
    pub addr: SocketAddr,
    pub behaviour: Arc<Behaviour>,
}

/// Start a backend on a loopback port.
pub async fn start_backend(
    error_rate: f64,
    latency_ms: u64,
    mut stop: watch::Receiver<bool>,
) -> Result<Backend, TrafficError> {
    let behaviour = Arc::new(Behaviour::default());
    behaviour.set(error_rate, latency_ms);
    let b = behaviour.clone();
    let app = Router::new().route(
        "/",
        get(move || {
            let b = b.clone();
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
    Ok(Backend { addr, behaviour })
}

/// One http route of a VirtualService, as the simulated sidecar sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct SimRoute {
    /// Alternatives; each a set of header conditions that must all hold. Empty: matches all.
    pub matches: Vec<Vec<(String, HeaderCondition)>>,
    /// `(subset, weight)`.
    pub destinations: Vec<(String, u32)>,
    /// `(subset, percent)`.
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
                            let subset = d
                                .pointer("/destination/subset")
                                .and_then(Value::as_str)
                                .unwrap_or_default()
                                .to_owned();
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
            let mirror = r
                .pointer("/mirror/subset")
                .and_then(Value::as_str)
                .map(|s| {
                    let pct = r
                        .pointer("/mirrorPercentage/value")
                        .and_then(Value::as_f64)
                        .unwrap_or(100.0);
                    (s.to_owned(), pct)
                });
            SimRoute {
                matches,
                destinations,
                mirror,
            }
        })
        .collect()
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
    /// Subset name → `version` label (from the DestinationRule).
    pub versions: BTreeMap<String, String>,
    /// Requests per second.
    pub rps: f64,
    /// Share of requests carrying `x-canary: true`.
    pub header_share: f64,
}

/// A running simulator.
#[derive(Debug)]
pub struct Simulator {
    pub metrics_addr: SocketAddr,
    pub stable: Backend,
    pub canary: Backend,
    pub sent: Arc<AtomicU64>,
}

/// Reads the live VirtualService (e.g. from the emulator).
pub type VsReader = Arc<dyn Fn() -> Option<Value> + Send + Sync>;

/// Start the backends, the metrics page and the request loop.
pub async fn start(
    config: SimConfig,
    read_vs: VsReader,
    stop: watch::Receiver<bool>,
) -> Result<Simulator, TrafficError> {
    let stable = start_backend(0.0, 5, stop.clone()).await?;
    let canary = start_backend(0.0, 5, stop.clone()).await?;
    let requests: Family<IstioLabels, Counter> = Family::default();
    let durations: Family<DurationLabels, Histogram> =
        Family::new_with_constructor(|| Histogram::new(ISTIO_BUCKETS));
    let mut registry = Registry::default();
    registry.register(
        "istio_requests",
        "Requests (simulated sidecar)",
        requests.clone(),
    );
    registry.register(
        "istio_request_duration_milliseconds",
        "Request duration (simulated sidecar)",
        durations.clone(),
    );
    let registry = Arc::new(registry);
    let r = registry.clone();
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let r = r.clone();
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
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(TrafficError::Bind)?;
    let metrics_addr = listener.local_addr().map_err(TrafficError::Bind)?;
    let mut stop_srv = stop.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop_srv.wait_for(|s| *s).await;
            })
            .await;
    });

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| TrafficError::Client(e.to_string()))?;
    let table: Arc<RwLock<Vec<SimRoute>>> = Arc::new(RwLock::new(Vec::new()));
    // Refresh the routing table from the live VirtualService every 100 ms.
    {
        let table = table.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            loop {
                if let Some(vs) = read_vs()
                    && let Ok(mut t) = table.write()
                {
                    *t = routes_of(&vs);
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
        });
    }
    let sent = Arc::new(AtomicU64::new(0));
    let sim = Simulator {
        metrics_addr,
        stable: stable.clone(),
        canary: canary.clone(),
        sent: sent.clone(),
    };
    let cfg = Arc::new(config);
    let mut stop_loop = stop;
    tokio::spawn(async move {
        let tick = Duration::from_millis(20);
        let mut owed = 0.0f64;
        let mut ticker = tokio::time::interval(tick);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop_loop.wait_for(|s| *s) => break,
            }
            owed += cfg.rps * tick.as_secs_f64();
            while owed >= 1.0 {
                owed -= 1.0;
                let routes = table.read().map(|t| t.clone()).unwrap_or_default();
                let mut headers = BTreeMap::new();
                if fastrand::f64() < cfg.header_share {
                    headers.insert("x-canary".to_owned(), "true".to_owned());
                }
                let Some(route) = pick_route(&routes, &headers) else {
                    continue;
                };
                let Some(subset) = pick_destination(route, fastrand::f64()).map(str::to_owned)
                else {
                    continue;
                };
                let mut targets = vec![subset];
                if let Some((m, pct)) = &route.mirror
                    && fastrand::f64() * 100.0 < *pct
                {
                    targets.push(m.clone());
                }
                for subset in targets {
                    let backend = if subset == cfg.canary_subset {
                        &canary
                    } else if subset == cfg.stable_subset {
                        &stable
                    } else {
                        // A route to a subset nobody serves: Istio answers 503 (no healthy upstream).
                        continue;
                    };
                    let url = format!("http://{}/", backend.addr);
                    let client = client.clone();
                    let requests = requests.clone();
                    let durations = durations.clone();
                    let version = cfg
                        .versions
                        .get(&subset)
                        .cloned()
                        .unwrap_or_else(|| subset.clone());
                    let cfg = cfg.clone();
                    sent.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(async move {
                        let started = Instant::now();
                        let code = match client.get(&url).send().await {
                            Ok(r) => r.status().as_u16().to_string(),
                            Err(_) => "503".to_owned(),
                        };
                        let ms = started.elapsed().as_secs_f64() * 1000.0;
                        requests
                            .get_or_create(&IstioLabels {
                                reporter: "destination",
                                destination_service_name: cfg.service.clone(),
                                destination_service_namespace: cfg.namespace.clone(),
                                destination_version: version.clone(),
                                destination_canonical_revision: version.clone(),
                                response_code: code,
                            })
                            .inc();
                        durations
                            .get_or_create(&DurationLabels {
                                reporter: "destination",
                                destination_service_name: cfg.service.clone(),
                                destination_service_namespace: cfg.namespace.clone(),
                                destination_version: version.clone(),
                                destination_canonical_revision: version,
                            })
                            .observe(ms);
                    });
                }
            }
        }
    });
    Ok(sim)
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
}
