//! The composition root: the only place that wires the pure engine to the adapters.
//!
//! Lifecycle (linkerd2-proxy style): `Config` → [`build`] (connect, open the Git mirror, first
//! fetch) → [`App::run`] (serve, elect, tick) → drain on shutdown (stop ticking, flush the status
//! writer, stop serving) within the grace period.
//!
//! One task drives every rollout with timers: each rollout has a `wake_at`; a tick handles the
//! rollouts that are due, with one batched analysis round for all of them, then sleeps until the
//! next wake-up, the next Git poll, or a webhook. Per rollout a tick gathers the observation
//! (controls, read-back, verdicts), calls `rollout::step`, and executes the effects in a safe
//! order: traffic first (rollbacks before anything else), then notifications, then the status
//! commit that reports it.

mod events;
pub mod registry;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::analysis::batch::{self, Target as AnalysisTarget};
use crate::analysis::subset::{SubsetLabels, find_destination_rule};
use crate::config::Config;
use crate::control::Policy;
use crate::git::{
    GitConfig, GitError, GitRepo, PlanSource, StateStore, StatusWriter, WriterHandle,
};
use crate::mesh::istio::preflight::{self, Object};
use crate::mesh::istio::router::{IstioRouter, RetryPolicy};
use crate::mesh::{Target, TrafficRouter};
use crate::metrics::prometheus::Prometheus;
use crate::metrics::{MetricsSource, run_tick};
use crate::plan::RolloutId;
use crate::rollout::{self, Decision, Effect, Observation, Phase, ReadBack, Status};
use crate::server::{self, AppState};
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
    #[error("the Git worker stopped unexpectedly")]
    GitWorker,
}

/// What the mesh must offer the daemon beyond moving traffic: the objects preflight checks.
pub trait Mesh: TrafficRouter {
    fn preflight_objects(
        &self,
        target: &Target,
    ) -> impl Future<Output = Result<Vec<serde_json::Value>, Self::Error>> + Send;
}

impl Mesh for IstioRouter {
    async fn preflight_objects(
        &self,
        target: &Target,
    ) -> Result<Vec<serde_json::Value>, Self::Error> {
        IstioRouter::preflight_objects(self, target).await
    }
}

/// Runs blocking Git work (fetch, plan reads) on a dedicated thread, one job at a time.
struct GitWorker {
    repo: Option<GitRepo>,
}

impl GitWorker {
    async fn run<T: Send + 'static>(
        &mut self,
        job: impl FnOnce(&mut GitRepo) -> T + Send + 'static,
    ) -> Result<T, DaemonError> {
        let mut repo = self.repo.take().ok_or(DaemonError::GitWorker)?;
        let (repo, out) = tokio::task::spawn_blocking(move || {
            let out = job(&mut repo);
            (repo, out)
        })
        .await
        .map_err(|_| DaemonError::GitWorker)?;
        self.repo = Some(repo);
        Ok(out)
    }
}

/// Timing knobs of the loop.
#[derive(Debug, Clone)]
pub struct Timing {
    pub poll_interval: Duration,
    pub health_interval: Duration,
    /// Delay before re-reading routes after a write (the mesh's read-your-write latency).
    pub confirm_delay: Duration,
    /// Retry delay after a failed read of the routes.
    pub retry_delay: Duration,
}

/// The running daemon's parts (built, not yet running).
pub struct App<R: Mesh, M: MetricsSource> {
    pub state: Arc<AppState>,
    router: R,
    metrics: M,
    git: GitWorker,
    writer: WriterHandle,
    writer_thread: StatusWriter,
    registry: Registry,
    policy: Policy,
    namespace: String,
    reporter: String,
    timing: Timing,
    listen: String,
    grace: Duration,
    lease: Option<(kube::Client, crate::config::LeaseConfig)>,
    channels: Vec<crate::notify::Channel>,
    notify: Option<crate::notify::NotifyQueue>,
    /// Keeps the "always leader" channel open when leader election is off.
    solo_leader: Option<watch::Sender<bool>>,
    /// Writes transitions as Kubernetes Events (None in tests without a cluster).
    events: Option<(kube::Client, String)>,
}

/// Connect everything described by `config`: kube client, router, Prometheus, Git mirror (first
/// fetch), status writer.
pub async fn build(config: &Config) -> Result<App<IstioRouter, Prometheus>, DaemonError> {
    let kube_config = match &config.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| {
                DaemonError::Kube(format!("cannot read kubeconfig {}: {e}", path.display()))
            })?;
            let opts = kube::config::KubeConfigOptions {
                context: config.kube_context.clone(),
                ..Default::default()
            };
            kube::Config::from_custom_kubeconfig(kc, &opts)
                .await
                .map_err(|e| DaemonError::Kube(e.to_string()))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| DaemonError::Kube(e.to_string()))?,
    };
    let client =
        kube::Client::try_from(kube_config).map_err(|e| DaemonError::Kube(e.to_string()))?;
    let router = IstioRouter::new(client.clone(), RetryPolicy::default());
    let metrics =
        Prometheus::new(&config.prometheus).map_err(|e| DaemonError::Metrics(e.to_string()))?;
    let policy = config
        .policy()
        .map_err(|e| DaemonError::Policy(e.to_string()))?;
    let mut git_config = config.git.clone();
    git_config.data_dir = config.data_dir.join("poll");
    let repo = tokio::task::spawn_blocking(move || GitRepo::open(git_config))
        .await
        .map_err(|_| DaemonError::GitWorker)??;
    let writer_config: GitConfig = GitConfig {
        data_dir: config.data_dir.join("write"),
        ..config.git.clone()
    };
    let writer_repo = tokio::task::spawn_blocking(move || GitRepo::open(writer_config))
        .await
        .map_err(|_| DaemonError::GitWorker)??;
    let (writer_thread, writer, reports) = StatusWriter::spawn(writer_repo, config.coalesce_window);
    let state = Arc::new(AppState::new(
        &config.git.branch,
        config.webhook_secret.clone(),
        config.max_body_bytes,
    ));
    spawn_report_reader(reports, state.clone());
    Ok(App {
        state,
        router,
        metrics,
        git: GitWorker { repo: Some(repo) },
        writer,
        writer_thread,
        registry: Registry::default(),
        policy,
        namespace: config.namespace.clone(),
        reporter: config.reporter.clone(),
        timing: Timing {
            poll_interval: config.poll_interval,
            health_interval: config.health_interval,
            confirm_delay: Duration::from_millis(100),
            retry_delay: Duration::from_secs(2),
        },
        listen: config.listen.clone(),
        grace: config.shutdown_grace,
        lease: config.leader_election.clone().map(|l| (client.clone(), l)),
        channels: config.notifications.clone(),
        notify: None,
        solo_leader: None,
        events: Some((
            client.clone(),
            config.leader_election.as_ref().map_or_else(
                || format!("tidegate-{}", std::process::id()),
                |l| l.identity.clone(),
            ),
        )),
    })
}

/// Count pushes and push failures as the writer thread reports them.
fn spawn_report_reader(
    reports: std::sync::mpsc::Receiver<crate::git::WriterReport>,
    state: Arc<AppState>,
) {
    let spawned = std::thread::Builder::new()
        .name("tidegate-git-reports".into())
        .spawn(move || {
            for r in reports {
                match &r.result {
                    Ok(out) => {
                        if out.commit.is_some() {
                            state.metrics.git_pushes.inc();
                        }
                        tracing::info!(transitions = r.transitions, attempts = out.attempts, commit = ?out.commit, took_ms = r.took.as_millis() as u64, "status commit written");
                    }
                    Err(e) => {
                        state.metrics.git_push_errors.inc();
                        tracing::error!(error = %e, transitions = r.transitions, "status commit failed; will retry");
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the git report reader");
    }
}

impl<R: Mesh + 'static, M: MetricsSource + Sync + 'static> App<R, M> {
    /// Serve, elect, and run the loop until `shutdown` resolves; then drain.
    pub async fn run(
        mut self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), DaemonError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let (server_stop_tx, server_stop_rx) = watch::channel(false);
        let mut server_stop = server_stop_rx.clone();
        let (addr, serve) = server::bind(self.listen.clone(), self.state.clone(), async move {
            let _ = server_stop.wait_for(|s| *s).await;
        })
        .await?;
        tracing::info!(%addr, "serving health, metrics, API and webhooks");
        let server_task = tokio::spawn(serve);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        self.start_notifications();
        let leader = self.elect(stop_rx.clone()).await?;
        let result = self.main_loop(stop_rx, leader).await;
        // Drain: the status writer writes what is pending, then the server stops.
        tracing::info!("draining: flushing status commits");
        let writer = self.writer.clone();
        let grace = self.grace;
        let flushed =
            tokio::time::timeout(grace, tokio::task::spawn_blocking(move || writer.flush())).await;
        if flushed.is_err() {
            tracing::warn!(
                grace_s = grace.as_secs(),
                "status writer did not finish within the grace period"
            );
        }
        if let Some(q) = self.notify.take() {
            let stats = q.shutdown(Duration::from_secs(2)).await;
            tracing::info!(
                delivered = stats.delivered,
                dropped = stats.dropped,
                failed = stats.failed,
                "notifications drained"
            );
        }
        drop(self.writer);
        let _ = tokio::task::spawn_blocking(move || self.writer_thread.join()).await;
        let _ = server_stop_tx.send(true);
        if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(5), server_task).await {
            tracing::warn!(error = %e, "server stopped with an error")
        }
        result
    }

    /// Start the notification queue (channels whose URL cannot be read are reported and skipped).
    fn start_notifications(&mut self) {
        if self.channels.is_empty() {
            return;
        }
        let mut notifiers: Vec<Arc<dyn crate::notify::Notifier>> = Vec::new();
        for c in self.channels.drain(..) {
            let name = c.name.clone();
            match crate::notify::WebhookNotifier::from_channel(c) {
                Ok(n) => notifiers.push(Arc::new(n)),
                Err(e) => {
                    tracing::error!(channel = %name, error = %e, "notification channel disabled")
                }
            }
        }
        match crate::notify::NotifyQueue::start(notifiers, crate::notify::DEFAULT_CAPACITY) {
            Ok(q) => self.notify = Some(q),
            Err(e) => tracing::error!(error = %e, "notifications disabled"),
        }
    }

    /// Leader election with a Lease; without it this replica leads.
    async fn elect(
        &mut self,
        _stop: watch::Receiver<bool>,
    ) -> Result<watch::Receiver<bool>, DaemonError> {
        let Some((client, lease)) = self.lease.take() else {
            self.state.leader.store(true, Ordering::Relaxed);
            let (tx, rx) = watch::channel(true);
            // Held for the whole run: this replica leads until it stops.
            self.solo_leader = Some(tx);
            return Ok(rx);
        };
        let secs = lease.duration.as_secs().max(2);
        let manager = kube_lease_manager::LeaseManagerBuilder::new(client, &lease.name)
            .with_namespace(&self.namespace)
            .with_identity(&lease.identity)
            .with_duration(secs)
            .with_grace((secs / 3).max(1))
            .build()
            .await
            .map_err(|e| DaemonError::Lease(e.to_string()))?;
        let (rx, _task) = manager.watch().await;
        tracing::info!(lease = %lease.name, identity = %lease.identity, "leader election started");
        Ok(rx)
    }

    async fn main_loop(
        &mut self,
        mut stop: watch::Receiver<bool>,
        mut leader: watch::Receiver<bool>,
    ) -> Result<(), DaemonError> {
        let mut next_poll = Utc::now();
        let mut next_health = Utc::now();
        let mut was_leader = false;
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            let is_leader = *leader.borrow();
            self.state.leader.store(is_leader, Ordering::Relaxed);
            let now = Utc::now();
            if is_leader && !was_leader {
                tracing::info!("leading: reading statuses from Git and reconciling with the mesh");
                self.take_over(now).await?;
                next_poll = now;
            }
            if !is_leader && was_leader {
                tracing::warn!("lost the lease: standing by");
            }
            was_leader = is_leader;
            if now >= next_health {
                let ok = self.metrics.instant("vector(1)", None).await.is_ok();
                self.state.metrics_ok.store(ok, Ordering::Relaxed);
                next_health = now + chrono_duration(self.timing.health_interval);
            }
            if is_leader {
                if now >= next_poll {
                    self.poll(now, false).await?;
                    next_poll = Utc::now() + chrono_duration(self.timing.poll_interval);
                }
                let started = std::time::Instant::now();
                self.tick(Utc::now()).await;
                self.state.metrics.ticks.inc();
                self.state
                    .metrics
                    .tick_duration
                    .observe(started.elapsed().as_secs_f64());
            }
            let mut wake = next_poll.min(next_health);
            if is_leader && let Some(w) = self.registry.next_wake() {
                wake = wake.min(w);
            }
            let sleep = (wake - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            tracing::debug!(
                leader = is_leader,
                sleep_ms = sleep.as_millis() as u64,
                "loop: sleeping"
            );
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = self.state.fetch_now.notified() => { next_poll = Utc::now(); }
                _ = stop.changed() => {}
                changed = leader.changed() => {
                    if changed.is_err() {
                        // The lease watcher ended: never act without knowing who leads.
                        self.state.leader.store(false, Ordering::Relaxed);
                        return Err(DaemonError::Lease("the lease watcher stopped".into()));
                    }
                }
            }
        }
    }

    /// Become the writer: read every status from Git, poll, and adopt routes one write ahead.
    async fn take_over(&mut self, now: DateTime<Utc>) -> Result<(), DaemonError> {
        let statuses = self
            .git
            .run(|repo| {
                repo.fetch()?;
                repo.load_statuses()
            })
            .await?;
        match statuses {
            Ok(s) => self.registry.load_statuses(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot read statuses from Git; starting without them")
            }
        }
        self.poll(now, true).await?;
        self.publish_all().await;
        Ok(())
    }

    /// Adopt routes that are one write ahead of Git (see `rollout::reconcile`).
    async fn reconcile_routes(&mut self, now: DateTime<Utc>) {
        // Every rollout that may have moved traffic: active ones, and ones without any status in
        // Git (a crash before the first status commit).
        let ids: Vec<RolloutId> = self
            .registry
            .entries()
            .filter(|e| {
                e.plan.is_ok()
                    && (e.is_active()
                        || e.status.is_none()
                        || e.status.as_ref().is_some_and(|s| s.phase == Phase::Pending))
            })
            .map(|e| e.id.clone())
            .collect();
        for id in ids {
            let Some(entry) = self.registry.get(&id) else {
                continue;
            };
            let Ok(plan) = &entry.plan else { continue };
            let expected = entry
                .status
                .as_ref()
                .map_or_else(crate::rollout::RouteState::all_stable, |s| s.route.clone());
            let target = Target::from_plan(plan);
            match self.router.read_back(&target, &expected).await {
                Ok(ReadBack::Drifted { actual, .. }) => {
                    if let Some(adopted) = rollout::reconcile(
                        plan,
                        &entry.plan_ref,
                        entry.status.as_ref(),
                        &actual,
                        now,
                    ) {
                        tracing::warn!(rollout = %id, step = adopted.step, "adopting routes found after restart");
                        self.writer.submit(adopted.clone());
                        if let Some(e) = self.registry.get_mut(&id) {
                            e.status = Some(adopted);
                            e.wake_at = Some(now);
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(rollout = %id, error = %e, "cannot read routes at start-up")
                }
            }
        }
    }

    /// Fetch the plans repository and fold the news into the registry. `taking_over`: reconcile
    /// the live routes before the first decision.
    async fn poll(&mut self, now: DateTime<Utc>, taking_over: bool) -> Result<(), DaemonError> {
        let started = std::time::Instant::now();
        tracing::debug!("polling the plans repository");
        let update = self.git.run(|repo| repo.poll()).await?;
        self.state
            .metrics
            .git_fetch_duration
            .observe(started.elapsed().as_secs_f64());
        let update = match update {
            Ok(u) => u,
            Err(e) => {
                self.state.metrics.git_fetch_errors.inc();
                tracing::error!(error = %e, "failed to fetch plans repo");
                return Ok(());
            }
        };
        self.state.git_synced.store(true, Ordering::Relaxed);
        if let Some(fp) = &update.force_push {
            tracing::warn!(previous = %fp.previous, current = %fp.current, "the plans branch was force-pushed; re-reading every plan");
        }
        let plans = self.registry.apply_plans(&update.plans, now);
        let controls =
            self.registry
                .apply_commits(&update.commits, &self.policy, &self.namespace, now);
        for msg in plans.unattached.iter().chain(controls.unattached.iter()) {
            tracing::warn!(problem = %msg, "plans repository");
        }
        for id in &plans.removed {
            tracing::info!(rollout = %id, "plan removed; tidegate no longer manages this rollout (traffic left as it is)");
            self.state.statuses.write().await.remove(id);
        }
        if !plans.added_or_changed.is_empty() || controls.controls > 0 {
            tracing::info!(changed = plans.added_or_changed.len(), controls = controls.controls, tip = %update.tip, "plans repository updated");
        }
        if taking_over {
            self.reconcile_routes(now).await;
        }
        // Controls are handed to the engine in the tick that follows; the marker moves once they
        // are in statuses the writer holds.
        self.tick(now).await;
        if !self.registry.has_pending_controls() {
            self.writer.processed_through(update.tip);
        }
        Ok(())
    }

    /// Run preflight for a rollout that is about to start (once per plan digest).
    async fn preflight(&mut self, id: &RolloutId) {
        let Some(entry) = self.registry.get(id) else {
            return;
        };
        let Ok(plan) = &entry.plan else { return };
        if entry.preflight_digest.as_deref() == Some(entry.plan_ref.digest.as_str())
            && entry.preflight_errors.is_empty()
        {
            return;
        }
        let target = Target::from_plan(plan);
        let (errors, subsets) = match self.router.preflight_objects(&target).await {
            Ok(values) => {
                let subsets =
                    find_destination_rule(&values, &plan.destination_rule, &plan.id.namespace)
                        .and_then(|dr| SubsetLabels::from_destination_rule(dr).ok());
                let objects: Vec<Object> =
                    values.into_iter().map(|v| Object::new(v, None)).collect();
                let findings = preflight::check_rollout(&objects, &target);
                let errors: Vec<String> = findings
                    .iter()
                    .filter(|f| f.severity == preflight::Severity::Error)
                    .map(ToString::to_string)
                    .collect();
                for f in findings
                    .iter()
                    .filter(|f| f.severity != preflight::Severity::Error)
                {
                    tracing::warn!(rollout = %id, finding = %f, "preflight");
                }
                (errors, subsets)
            }
            Err(e) => (
                vec![format!("preflight could not read the mesh objects: {e}")],
                None,
            ),
        };
        if let Some(entry) = self.registry.get_mut(id) {
            entry.preflight_digest = Some(entry.plan_ref.digest.clone());
            entry.preflight_errors = errors;
            entry.subsets = subsets;
        }
    }

    /// Handle every rollout that is due.
    async fn tick(&mut self, now: DateTime<Utc>) {
        let due = self.registry.due(now);
        if due.is_empty() {
            return;
        }
        for id in &due {
            let pending = self.registry.get(id).is_some_and(|e| {
                e.plan.is_ok() && e.status.as_ref().is_none_or(|s| s.phase == Phase::Pending)
            });
            if pending {
                self.preflight(id).await;
            }
        }
        let verdicts = self.analyse(&due, now).await;
        for id in &due {
            let results = verdicts.get(id);
            self.step_one(id, results, now).await;
        }
        self.publish(&due).await;
    }

    /// One batched analysis round for the due rollouts that need one.
    async fn analyse(
        &mut self,
        due: &[RolloutId],
        now: DateTime<Utc>,
    ) -> BTreeMap<RolloutId, batch::RolloutResult> {
        let mut targets = Vec::new();
        for id in due {
            let Some(e) = self.registry.get(id) else {
                continue;
            };
            let Ok(plan) = &e.plan else { continue };
            let analysing = e
                .status
                .as_ref()
                .is_some_and(|s| matches!(s.phase, Phase::Progressing | Phase::Paused));
            let is_due = e.next_analysis.is_none_or(|t| t <= now);
            if !analysing || !is_due || plan.analysis.metrics.is_empty() {
                continue;
            }
            let subsets = e.subsets.clone().unwrap_or_else(SubsetLabels::fallback);
            let step_start = e.status.as_ref().map(|s| s.step_started_at);
            match AnalysisTarget::from_plan(plan, &subsets, &self.reporter, step_start) {
                Ok(t) => targets.push(t),
                Err(err) => tracing::error!(rollout = %id, error = %err, "cannot analyse"),
            }
        }
        if targets.is_empty() {
            return BTreeMap::new();
        }
        let plan = batch::plan(&targets);
        let (results, stats) = run_tick(&self.metrics, &plan, None).await;
        for d in &stats.query_durations {
            self.state
                .metrics
                .prometheus_query_duration
                .observe(d.as_secs_f64());
        }
        for kind in &stats.errors {
            self.state
                .metrics
                .prometheus_query_errors
                .get_or_create(&crate::telemetry::KindLabels {
                    kind: kind.as_str(),
                })
                .inc();
        }
        tracing::debug!(
            rollouts = targets.len(),
            queries = stats.queries,
            failed = stats.failed,
            "analysis round"
        );
        for t in &targets {
            if let Some(e) = self.registry.get_mut(&t.id) {
                e.next_analysis = Some(now + chrono_duration(t.analysis.interval));
            }
        }
        results.into_iter().map(|r| (r.id.clone(), r)).collect()
    }

    /// Observe, decide and act for one rollout.
    async fn step_one(
        &mut self,
        id: &RolloutId,
        analysis: Option<&batch::RolloutResult>,
        now: DateTime<Utc>,
    ) {
        let Some(entry) = self.registry.get_mut(id) else {
            return;
        };
        entry.wake_at = None;
        // A decision whose traffic change did not land yet is finished before anything new is
        // decided (controls stay queued meanwhile).
        if let Some((decision, previous)) = entry.deferred.take() {
            let plan = entry.plan.clone();
            self.execute(id, &plan, *decision, previous, now).await;
            return;
        }
        let controls = std::mem::take(&mut entry.controls);
        let refused = std::mem::take(&mut entry.refused);
        let previous = entry.status.clone();
        let plan = entry.plan.clone();
        let plan_ref = entry.plan_ref.clone();
        let preflight_errors = entry.preflight_errors.clone();
        let decision: Decision = match &plan {
            Err(findings) => {
                rollout::invalid(id, &plan_ref, findings.clone(), previous.as_ref(), now)
            }
            Ok(plan) => {
                let target = Target::from_plan(plan);
                let read_back = match &previous {
                    Some(s) if !s.phase.is_terminal() && s.phase != Phase::Pending => {
                        match self.router.read_back(&target, &s.route).await {
                            Ok(rb) => rb,
                            Err(e) => {
                                tracing::warn!(rollout = %id, error = %e, "cannot read the routes back; retrying");
                                if let Some(entry) = self.registry.get_mut(id) {
                                    entry.controls = controls;
                                    entry.refused = refused;
                                    entry.wake_at =
                                        Some(now + chrono_duration(self.timing.retry_delay));
                                }
                                return;
                            }
                        }
                    }
                    _ => ReadBack::Unknown,
                };
                let obs = Observation {
                    read_back,
                    verdicts: analysis.map(|r| r.verdicts.clone()).unwrap_or_default(),
                    controls,
                    refused,
                    metrics_unreachable: analysis.is_some_and(|r| r.unreachable()),
                    outside_window: plan.window.as_ref().is_some_and(|w| !w.contains(now)),
                    preflight_errors,
                };
                rollout::step(plan, &plan_ref, previous.as_ref(), &obs, now)
            }
        };
        self.execute(id, &plan, decision, previous, now).await;
    }

    /// Carry out a decision: traffic first; only once it landed the notifications, Events and
    /// the status commit. A failed write defers the whole decision (retried after
    /// `retry_delay`), so Git never claims routes the mesh lacks and our own failed write is
    /// never mistaken for someone else's edit.
    async fn execute(
        &mut self,
        id: &RolloutId,
        plan: &Result<std::sync::Arc<crate::plan::Plan>, Vec<String>>,
        decision: Decision,
        previous: Option<Status>,
        now: DateTime<Utc>,
    ) {
        if let Ok(p) = plan {
            let target = Target::from_plan(p);
            for effect in decision.effects.iter().filter(|e| e.is_traffic()) {
                let result = match effect {
                    Effect::SetRoute { route } => self.router.set_route(&target, route).await,
                    Effect::ClearManagedRoutes { route } => self.router.clear(&target, route).await,
                    _ => continue,
                };
                match result {
                    Ok(report) if report.patched => {
                        tracing::info!(rollout = %id, route = ?effect, "routes written");
                    }
                    Ok(_) => {}
                    Err(e) => {
                        self.state.metrics.mesh_write_errors.inc();
                        tracing::error!(rollout = %id, error = %e, "failed to write the VirtualService; retrying the decision");
                        if let Some(entry) = self.registry.get_mut(id) {
                            entry.deferred = Some((Box::new(decision), previous));
                            entry.wake_at = Some(now + chrono_duration(self.timing.retry_delay));
                        }
                        return;
                    }
                }
            }
        }
        let channels: &[String] = plan.as_ref().map(|p| p.notify.as_slice()).unwrap_or(&[]);
        for effect in &decision.effects {
            if let Effect::Notify { event, message } = effect {
                tracing::info!(rollout = %id, event = ?event, "{message}");
                if let Some(q) = &self.notify {
                    q.enqueue(crate::notify::Notification::from_status(
                        &decision.status,
                        *event,
                        message.clone(),
                        channels,
                    ));
                }
            }
        }
        if let (Some((client, instance)), Ok(plan)) = (&self.events, plan) {
            events::record(client, plan, &decision.transitions, instance);
        }
        if decision.effects.contains(&Effect::RecordStatus) {
            self.writer.submit(decision.status.clone());
        }
        self.state
            .metrics
            .observe(&decision.status, previous.as_ref());
        let confirm = chrono_duration(self.timing.confirm_delay);
        if let Some(entry) = self.registry.get_mut(id) {
            entry.wake_at = decision
                .wake_at
                .map(|w| if w <= now { now + confirm } else { w });
            entry.status = Some(decision.status);
        }
    }

    /// Copy the statuses of `ids` to the API (a tick touches only the rollouts it decided for;
    /// copying all of them every tick cost more than the decisions at 1,000 rollouts).
    async fn publish(&self, ids: &[RolloutId]) {
        let fresh: Vec<(RolloutId, Status)> = ids
            .iter()
            .filter_map(|id| {
                let status = self.registry.get(id)?.status.clone()?;
                Some((id.clone(), status))
            })
            .collect();
        let mut statuses = self.state.statuses.write().await;
        for (id, status) in fresh {
            statuses.insert(id, status);
        }
    }

    /// Copy every status to the API.
    async fn publish_all(&self) {
        let all: BTreeMap<RolloutId, Status> = self
            .registry
            .entries()
            .filter_map(|e| e.status.clone().map(|s| (e.id.clone(), s)))
            .collect();
        *self.state.statuses.write().await = all;
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
