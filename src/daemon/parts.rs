//! The parts the daemon talks to, each a small trait, and the production implementations that
//! are not adapters of their own: the clock, the Git feed run on the blocking pool, the status
//! writer, Kubernetes Events, the notification queue and leadership. Fakes of each live beside
//! the tests (`tests/support/daemon.rs`).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use tokio::sync::watch;

use crate::control::RefusedRecord;
use crate::git::{GitError, PlanSource, SourceUpdate, StateStore, StatusWriter, WriterHandle};
use crate::notify::{Notification, NotifyQueue};
use crate::plan::{Plan, RolloutId};
use crate::rollout::{Status, Transition};

/// Where the daemon reads the time. Nothing in `daemon` reads a clock any other way.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that follows tokio's (pausable) time from a fixed start: with
/// `#[tokio::test(start_paused = true)]` the daemon's days pass in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    start_at: DateTime<Utc>,
    start: tokio::time::Instant,
}

impl TokioClock {
    pub fn starting_at(start_at: DateTime<Utc>) -> TokioClock {
        TokioClock {
            start_at,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = tokio::time::Instant::now() - self.start;
        self.start_at + chrono::Duration::from_std(elapsed).unwrap_or_default()
    }
}

/// Plans, control commits and the statuses last written: the plans repository as the daemon
/// reads it.
pub trait PlanFeed: Send {
    /// Fetch and report what changed since the previous call (everything the first time).
    fn poll(&mut self) -> impl Future<Output = Result<SourceUpdate, GitError>> + Send;
    /// The status documents at the status branch's tip (read when leadership starts).
    fn load_statuses(&mut self) -> impl Future<Output = Result<Vec<Status>, GitError>> + Send;
    /// The text of plan file `path` at commit `revision` (`None`: the commit has no such file),
    /// e.g. the last valid revision after a restart whose newest revision is invalid.
    fn plan_at(
        &mut self,
        path: &str,
        revision: &str,
    ) -> impl Future<Output = Result<Option<String>, GitError>> + Send;
}

/// A blocking [`PlanSource`] + [`StateStore`] (the git2 mirror) run on tokio's blocking pool,
/// one call at a time.
pub struct BlockingFeed<G> {
    repo: Arc<Mutex<G>>,
}

impl<G> BlockingFeed<G> {
    pub fn new(repo: G) -> BlockingFeed<G> {
        BlockingFeed {
            repo: Arc::new(Mutex::new(repo)),
        }
    }
}

impl<G: PlanSource + StateStore + Send + 'static> BlockingFeed<G> {
    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut G) -> Result<T, GitError> + Send + 'static,
    ) -> Result<T, GitError> {
        let repo = self.repo.clone();
        tokio::task::spawn_blocking(move || {
            let mut repo = repo
                .lock()
                .map_err(|_| GitError::Read("the plans repository lock is poisoned".into()))?;
            job(&mut repo)
        })
        .await
        .map_err(|e| GitError::Read(format!("the Git worker stopped: {e}")))?
    }
}

impl<G: PlanSource + StateStore + Send + 'static> PlanFeed for BlockingFeed<G> {
    async fn poll(&mut self) -> Result<SourceUpdate, GitError> {
        self.run(|repo| repo.poll()).await
    }

    async fn load_statuses(&mut self) -> Result<Vec<Status>, GitError> {
        self.run(|repo| repo.load_statuses()).await
    }

    async fn plan_at(&mut self, path: &str, revision: &str) -> Result<Option<String>, GitError> {
        let (path, revision) = (path.to_owned(), revision.to_owned());
        self.run(move |repo| repo.plan_at(&path, &revision)).await
    }
}

/// Where statuses are written (a commit per batch, pushed, by the coalescing writer).
pub trait StatusSink: Send + Sync {
    /// Queue the status after a change.
    fn submit(&self, status: Status);
    /// Delete the status file of a rollout whose plan is gone and whose routes are clean.
    fn remove(&self, id: &RolloutId);
    /// Record controls that named no rollout (unknown, ambiguous, malformed) in the
    /// repository-level `status/_refused.yaml`, in the same commit as what is pending.
    fn refuse_unknown(&self, records: Vec<RefusedRecord>);
    /// Every control up to `commit` is reflected in the statuses submitted so far.
    fn processed_through(&self, commit: &str);
    /// Write what is pending and stop (on shutdown).
    fn close(&self) -> BoxFuture<'static, ()>;
}

/// The production sink: the [`StatusWriter`] thread.
pub struct WriterSink {
    handle: Mutex<Option<WriterHandle>>,
    thread: Mutex<Option<StatusWriter>>,
}

impl WriterSink {
    pub fn new(handle: WriterHandle, thread: StatusWriter) -> WriterSink {
        WriterSink {
            handle: Mutex::new(Some(handle)),
            thread: Mutex::new(Some(thread)),
        }
    }

    fn with_handle(&self, f: impl FnOnce(&WriterHandle) -> bool) {
        let sent = self
            .handle
            .lock()
            .ok()
            .and_then(|h| h.as_ref().map(f))
            .unwrap_or(false);
        if !sent {
            tracing::error!("the status writer stopped; a status was not written");
        }
    }
}

impl StatusSink for WriterSink {
    fn submit(&self, status: Status) {
        self.with_handle(|h| h.submit(status));
    }

    fn remove(&self, id: &RolloutId) {
        self.with_handle(|h| h.remove(id.clone()));
    }

    fn refuse_unknown(&self, records: Vec<RefusedRecord>) {
        if !records.is_empty() {
            self.with_handle(|h| h.refuse(records));
        }
    }

    fn processed_through(&self, commit: &str) {
        self.with_handle(|h| h.processed_through(commit));
    }

    fn close(&self) -> BoxFuture<'static, ()> {
        let handle = self.handle.lock().ok().and_then(|mut h| h.take());
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        Box::pin(async move {
            // Flush, then drop the last handle: the thread ends after its last write.
            let _ = tokio::task::spawn_blocking(move || {
                if let Some(h) = handle {
                    h.flush();
                }
                if let Some(t) = thread {
                    t.join();
                }
            })
            .await;
        })
    }
}

/// Rollout transitions as Kubernetes Events (best effort).
pub trait EventRecorder: Send + Sync {
    fn record(&self, plan: &Plan, transitions: &[Transition]);
}

/// No Events (a daemon without a cluster identity, tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEvents;

impl EventRecorder for NoEvents {
    fn record(&self, _plan: &Plan, _transitions: &[Transition]) {}
}

/// Events written with a kube client, in the background, a few at a time.
pub struct KubeEvents {
    pub client: kube::Client,
    /// `reportingInstance` of the Events.
    pub instance: String,
    /// Writes in flight at once: a turn that moves 1,000 rollouts records 2,000 Events, and
    /// each concurrent write would open (and keep, pooled) a connection of its own.
    in_flight: Arc<tokio::sync::Semaphore>,
}

impl KubeEvents {
    /// At most this many Event writes at once.
    pub const IN_FLIGHT: usize = 4;

    pub fn new(client: kube::Client, instance: String) -> KubeEvents {
        KubeEvents {
            client,
            instance,
            in_flight: Arc::new(tokio::sync::Semaphore::new(Self::IN_FLIGHT)),
        }
    }
}

impl EventRecorder for KubeEvents {
    fn record(&self, plan: &Plan, transitions: &[Transition]) {
        let (client, instance) = (&self.client, &self.instance);
        super::events::record(client, &self.in_flight, plan, transitions, instance);
    }
}

/// People's notifications (chat, webhooks): handed over without waiting.
pub trait Notifier: Send + Sync {
    fn send(&self, notification: Notification);
    /// Deliver what is queued within `grace`, then stop.
    fn close(&self, grace: Duration) -> BoxFuture<'static, ()>;
}

/// The production notifier: the drop-oldest [`NotifyQueue`] (none when no channel is set).
pub struct QueueNotifier {
    queue: Mutex<Option<NotifyQueue>>,
}

impl QueueNotifier {
    pub fn new(queue: Option<NotifyQueue>) -> QueueNotifier {
        QueueNotifier {
            queue: Mutex::new(queue),
        }
    }
}

impl Notifier for QueueNotifier {
    fn send(&self, notification: Notification) {
        if let Ok(q) = self.queue.lock()
            && let Some(q) = q.as_ref()
        {
            q.enqueue(notification);
        }
    }

    fn close(&self, grace: Duration) -> BoxFuture<'static, ()> {
        let queue = self.queue.lock().ok().and_then(|mut q| q.take());
        Box::pin(async move {
            if let Some(q) = queue {
                let stats = q.shutdown(grace).await;
                tracing::info!(
                    delivered = stats.delivered,
                    dropped = stats.dropped,
                    failed = stats.failed,
                    "notifications drained"
                );
            }
        })
    }
}

/// Whether this replica leads (holds the Lease). Only the leader polls, decides and writes.
pub struct Leadership {
    pub leading: watch::Receiver<bool>,
    /// Keeps whatever feeds `leading` alive (the lease task, or the sender of a solo daemon).
    _keep: Box<dyn Send + Sync>,
}

impl Leadership {
    /// Leadership driven by `leading`; `keep` is held as long as the daemon runs.
    pub fn new(leading: watch::Receiver<bool>, keep: impl Send + Sync + 'static) -> Leadership {
        Leadership {
            leading,
            _keep: Box::new(keep),
        }
    }

    /// A replica without leader election: it always leads.
    pub fn solo() -> Leadership {
        let (tx, rx) = watch::channel(true);
        Leadership::new(rx, tx)
    }
}

/// Every part the daemon talks to.
pub struct Parts<M, S, G> {
    pub mesh: M,
    pub metrics: S,
    pub plans: G,
    pub statuses: Box<dyn StatusSink>,
    pub leadership: Leadership,
    pub events: Box<dyn EventRecorder>,
    pub notifier: Box<dyn Notifier>,
    pub clock: Arc<dyn Clock>,
}
