//! The composition root: wires the pure engine to the parts and does nothing else.
//!
//! Lifecycle (linkerd2-proxy style): `Config` → [`build`] (connect the real parts: kube, the
//! mesh cache, Prometheus, the Git mirror, the status writer, the lease) → [`App::new`] with any
//! [`Parts`] (tests pass fakes and a paused clock) → [`App::run`] (serve, then loop) → drain on
//! shutdown (stop deciding, flush the status writer and notifications, stop serving).
//!
//! The loop sleeps until the earliest of: a rollout's wake-up ([`schedule`]), the next Git poll,
//! a webhook, a change of a watched mesh object, a change of leadership. Each turn gathers the
//! observation of the due rollouts, calls `rollout::step`, carries out the effects (traffic
//! first, rollbacks before anything else) and hands the outcome to the scheduler ([`turn`]).

mod build;
mod events;
pub mod parts;
mod refusals;
pub mod registry;
pub mod schedule;
mod turn;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::control::Policy;
use crate::git::GitError;
use crate::mesh::{Mesh, ObjectKey, Target};
use crate::metrics::MetricsSource;
use crate::server::{self, AppState};
pub use build::build;
pub use parts::{
    BlockingFeed, Clock, EventRecorder, KubeEvents, Leadership, NoEvents, Notifier, Parts,
    PlanFeed, QueueNotifier, StatusSink, SystemClock, TokioClock, WriterSink,
};
use registry::Registry;

/// Errors that stop the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("failed to open the plans repository: {0}")]
    Git(#[from] GitError),
    #[error("failed to connect to Kubernetes: {0}")]
    Kube(String),
    #[error("failed to set up Prometheus: {0}")]
    Metrics(String),
    #[error("invalid control policy: {0}")]
    Policy(String),
    #[error(transparent)]
    Server(#[from] server::ServerError),
    #[error("leader election failed: {0}")]
    Lease(String),
}

/// What the loop needs besides its parts.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The daemon's namespace (of its Lease). Control trailers without a namespace resolve to
    /// the one plan of that name in any namespace.
    pub namespace: String,
    /// Istio metrics reporter (`destination` or `source`).
    pub reporter: String,
    pub policy: Policy,
    pub poll_interval: Duration,
    pub health_interval: Duration,
    pub schedule: schedule::Policy,
    /// How long draining may take on shutdown.
    pub grace: Duration,
    /// The branch webhooks must name.
    pub branch: String,
    pub webhook_secret: Option<Vec<u8>>,
    pub max_body_bytes: usize,
    /// Where to serve health, metrics, the API and webhooks; `None`: not at all (tests).
    pub listen: Option<String>,
}

/// Why the loop woke up.
enum Wake {
    Timer,
    Stop,
    FetchNow,
    Mesh(Vec<ObjectKey>),
    Leadership,
    LeaseLost,
}

/// The daemon, built from its parts.
pub struct App<M, S, G> {
    state: Arc<AppState>,
    parts: Parts<M, S, G>,
    settings: Settings,
    registry: Registry,
    /// The kinds preflight could not read (not served, forbidden), each warned about once
    /// until it can be read again.
    unread: std::collections::BTreeSet<crate::mesh::preflight::Unread>,
}

impl<M, S, G> App<M, S, G>
where
    M: Mesh + 'static,
    S: MetricsSource + Send + Sync + 'static,
    G: PlanFeed + 'static,
{
    pub fn new(parts: Parts<M, S, G>, settings: Settings) -> App<M, S, G> {
        let state = Arc::new(AppState::new(
            &settings.branch,
            settings.webhook_secret.clone(),
            settings.max_body_bytes,
        ));
        App {
            state,
            parts,
            settings,
            registry: Registry::default(),
            unread: Default::default(),
        }
    }

    /// What the server shares: statuses, the daemon's own metrics, readiness.
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    fn now(&self) -> DateTime<Utc> {
        self.parts.clock.now()
    }

    /// Serve (when `settings.listen` is set) and run the loop until `shutdown` resolves or the
    /// lease watcher stops; then drain.
    pub async fn run(
        mut self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), DaemonError> {
        let (server_stop, server_task) = self.serve().await?;
        let result = self.main_loop(shutdown).await;
        tracing::info!("draining: flushing status commits and notifications");
        let grace = self.settings.grace;
        let statuses = self.parts.statuses.close();
        let notifications = self.parts.notifier.close(Duration::from_secs(2));
        let drained = tokio::time::timeout(grace, async move {
            statuses.await;
            notifications.await;
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                grace_s = grace.as_secs(),
                "draining did not finish within the grace period"
            );
        }
        let _ = server_stop.send(true);
        if let Some(task) = server_task
            && let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(5), task).await
        {
            tracing::warn!(error = %e, "server stopped with an error");
        }
        result
    }

    async fn serve(
        &self,
    ) -> Result<
        (
            watch::Sender<bool>,
            Option<tokio::task::JoinHandle<Result<(), server::ServerError>>>,
        ),
        DaemonError,
    > {
        let (stop_tx, stop_rx) = watch::channel(false);
        let Some(listen) = self.settings.listen.clone() else {
            return Ok((stop_tx, None));
        };
        let mut stop = stop_rx;
        let (addr, serve) = server::bind(listen, self.state.clone(), async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await?;
        tracing::info!(%addr, "serving health, metrics, API and webhooks");
        Ok((stop_tx, Some(tokio::spawn(serve))))
    }

    async fn main_loop(
        &mut self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), DaemonError> {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut next_poll = self.now();
        let mut next_health = self.now();
        let mut was_leader = false;
        loop {
            let leading = *self.parts.leadership.leading.borrow();
            self.state.leader.store(leading, Ordering::Relaxed);
            if leading && !was_leader {
                tracing::info!("leading: reading statuses from Git and reconciling with the mesh");
                self.take_over().await;
                next_poll = self.now() + chrono_duration(self.settings.poll_interval);
            } else if !leading && was_leader {
                tracing::warn!("lost the lease: standing by");
            }
            was_leader = leading;
            if self.now() >= next_health {
                self.check_metrics_source().await;
                next_health = self.now() + chrono_duration(self.settings.health_interval);
            }
            if leading {
                if self.now() >= next_poll {
                    self.poll(false).await;
                    next_poll = self.now() + chrono_duration(self.settings.poll_interval);
                }
                self.turn().await;
            }
            // A replica that does not lead only checks its health; a change of leadership
            // wakes it.
            let mut wake = next_health;
            if leading {
                wake = wake.min(next_poll);
                if let Some(w) = self.registry.next_wake() {
                    wake = wake.min(w);
                }
            }
            let sleep = (wake - self.now()).to_std().unwrap_or(Duration::ZERO);
            tracing::trace!(
                leader = leading,
                sleep_ms = sleep.as_millis() as u64,
                "loop: sleeping"
            );
            let woke = tokio::select! {
                _ = &mut shutdown => Wake::Stop,
                _ = tokio::time::sleep(sleep) => Wake::Timer,
                _ = self.state.fetch_now.notified() => Wake::FetchNow,
                keys = self.parts.mesh.changes() => Wake::Mesh(keys),
                changed = self.parts.leadership.leading.changed() => match changed {
                    Ok(()) => Wake::Leadership,
                    Err(_) => Wake::LeaseLost,
                },
            };
            match woke {
                Wake::Stop => return Ok(()),
                Wake::FetchNow => next_poll = self.now(),
                Wake::Mesh(keys) => self.on_mesh_changes(&keys),
                Wake::LeaseLost => {
                    // The lease watcher ended: never act without knowing who leads.
                    self.state.leader.store(false, Ordering::Relaxed);
                    return Err(DaemonError::Lease("the lease watcher stopped".into()));
                }
                Wake::Timer | Wake::Leadership => {}
            }
        }
    }

    /// Whether the metrics source answers (for the daemon's own metrics and logs).
    async fn check_metrics_source(&mut self) {
        let ok = self.parts.metrics.instant("vector(1)", None).await.is_ok();
        self.state.metrics_ok.store(ok, Ordering::Relaxed);
        self.state.metrics.metrics_source_up.set(i64::from(ok));
    }

    /// Someone changed watched mesh objects: the rollouts they concern are handled now, and
    /// their preflight checks run again.
    fn on_mesh_changes(&mut self, keys: &[ObjectKey]) {
        let now = self.now();
        for entry in self.registry.entries_mut() {
            let Some(plan) = entry.current_plan() else {
                continue;
            };
            let target = Target::from_plan(&plan);
            if keys.iter().any(|k| crate::mesh::concerns(k, &target)) {
                tracing::debug!(rollout = %entry.id, "a watched mesh object changed");
                entry.timers.wake_at = Some(now);
                entry.preflight_digest = None;
            }
        }
    }
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or_else(|_| chrono::Duration::seconds(1))
}

/// Wait for SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutdown requested");
}
