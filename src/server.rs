//! The daemon's HTTP server (axum, one port): health, readiness, metrics, the rollout API and
//! the Git webhook that triggers an immediate fetch.

pub mod webhook;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::sync::{Notify, RwLock};

use crate::plan::RolloutId;
use crate::rollout::Status;
use crate::telemetry::Metrics;

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("failed to listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// What the server shares with the daemon.
#[derive(Debug)]
pub struct AppState {
    pub statuses: RwLock<BTreeMap<RolloutId, Status>>,
    pub metrics: Metrics,
    /// Set after the first successful Git sync.
    pub git_synced: AtomicBool,
    /// Set while the metrics source answered its last health check.
    pub metrics_ok: AtomicBool,
    /// Set while this replica holds the leader lease (or leader election is off).
    pub leader: AtomicBool,
    /// Woken by a webhook: fetch now.
    pub fetch_now: Notify,
    pub webhook_secret: Option<Vec<u8>>,
    pub branch: String,
    pub max_body_bytes: usize,
}

impl AppState {
    pub fn new(branch: &str, webhook_secret: Option<Vec<u8>>, max_body_bytes: usize) -> AppState {
        AppState {
            statuses: RwLock::new(BTreeMap::new()),
            metrics: Metrics::new(),
            git_synced: AtomicBool::new(false),
            metrics_ok: AtomicBool::new(false),
            leader: AtomicBool::new(false),
            fetch_now: Notify::new(),
            webhook_secret,
            branch: branch.to_owned(),
            max_body_bytes,
        }
    }
}

/// The router, for serving and for tests.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.max_body_bytes;
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/rollouts", get(list))
        .route("/api/v1/rollouts/{namespace}/{name}", get(one))
        .route("/hooks/git", post(hook))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Bind `addr` (port 0 picks a free one) and return the bound address and the serving future.
pub async fn bind<F>(
    addr: String,
    state: Arc<AppState>,
    shutdown: F,
) -> Result<
    (
        SocketAddr,
        impl std::future::Future<Output = Result<(), ServerError>> + Send + use<F>,
    ),
    ServerError,
>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = match tokio::net::TcpListener::bind(&*addr).await {
        Ok(l) => l,
        Err(source) => return Err(ServerError::Bind { addr, source }),
    };
    let local = match listener.local_addr() {
        Ok(a) => a,
        Err(source) => return Err(ServerError::Bind { addr, source }),
    };
    let app = router(state);
    let fut = async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(ServerError::Serve)
    };
    Ok((local, fut))
}

async fn readyz(State(s): State<Arc<AppState>>) -> Response {
    let git = s.git_synced.load(Ordering::Relaxed);
    let metrics = s.metrics_ok.load(Ordering::Relaxed);
    let body = json!({
        "gitSynced": git,
        "metricsSourceHealthy": metrics,
        "leader": s.leader.load(Ordering::Relaxed),
    });
    // Readiness is about taking webhooks and serving the API: a Prometheus outage is shown
    // in the statuses and `tidegate_metrics_source_up`, and must not take the pod out of its
    // Service (the forge's webhooks would fail too).
    let code = if git {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
}

async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}

async fn list(State(s): State<Arc<AppState>>) -> Response {
    let statuses = s.statuses.read().await;
    let all: Vec<&Status> = statuses.values().collect();
    axum::Json(json!({ "rollouts": all })).into_response()
}

async fn one(
    State(s): State<Arc<AppState>>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    let statuses = s.statuses.read().await;
    match statuses.get(&RolloutId { namespace, name }) {
        Some(st) => axum::Json(st).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": "no such rollout"})),
        )
            .into_response(),
    }
}

async fn hook(State(s): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let verdict = webhook::check(&headers, &body, s.webhook_secret.as_deref(), &s.branch);
    match verdict {
        Ok(webhook::Action::Fetch { provider }) => {
            s.metrics
                .webhooks
                .get_or_create(&crate::telemetry::WebhookLabels {
                    provider: provider.as_str(),
                    result: "fetch",
                })
                .inc();
            s.fetch_now.notify_one();
            tracing::info!(provider = provider.as_str(), "webhook: fetching now");
            (StatusCode::ACCEPTED, axum::Json(json!({"fetch": true}))).into_response()
        }
        Ok(webhook::Action::Ignore { provider, why }) => {
            s.metrics
                .webhooks
                .get_or_create(&crate::telemetry::WebhookLabels {
                    provider: provider.as_str(),
                    result: "ignored",
                })
                .inc();
            (
                StatusCode::OK,
                axum::Json(json!({"fetch": false, "why": why})),
            )
                .into_response()
        }
        Err(e) => {
            let (code, result) = if e.is_unauthorized() {
                (StatusCode::UNAUTHORIZED, "unauthorized")
            } else {
                (StatusCode::BAD_REQUEST, "bad_request")
            };
            s.metrics
                .webhooks
                .get_or_create(&crate::telemetry::WebhookLabels {
                    provider: "unknown",
                    result,
                })
                .inc();
            tracing::warn!(error = %e, "webhook refused");
            (code, axum::Json(json!({"error": e.to_string()}))).into_response()
        }
    }
}
