//! The non-blocking hand-off between the daemon and the senders: a bounded queue that drops
//! the oldest message when full, drained by one background task.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};

use super::{Notification, Notifier, NotifyError, event_name};

/// Messages held when no capacity is given.
pub const DEFAULT_CAPACITY: usize = 256;

/// What [`NotifyQueue::enqueue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Queued.
    Accepted,
    /// Queued; the queue was full, so its oldest message was dropped.
    DroppedOldest,
}

/// Counters since the queue started (for the daemon's metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Messages accepted by `enqueue`.
    pub enqueued: u64,
    /// Messages dropped because the queue was full (the oldest go first) or still queued when
    /// shutdown's grace period ran out.
    pub dropped: u64,
    /// Successful deliveries to one channel.
    pub delivered: u64,
    /// Deliveries to one channel that failed after all retries (or were refused).
    pub failed: u64,
}

struct Shared {
    items: Mutex<VecDeque<Arc<Notification>>>,
    capacity: usize,
    wake: Notify,
    closed: AtomicBool,
    enqueued: AtomicU64,
    dropped: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
}

impl Shared {
    fn pop(&self) -> Option<Arc<Notification>> {
        self.items
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
    }
}

/// A bounded, drop-oldest queue in front of the notification channels.
///
/// [`enqueue`](NotifyQueue::enqueue) takes a short lock and returns: it never waits for the
/// network, so a rollback is never held up by a webhook. One background task delivers the
/// messages in order; each message goes to its channels concurrently.
///
/// Dropping the queue without [`shutdown`](NotifyQueue::shutdown) closes it too; the worker
/// then delivers what is queued in the background and ends.
pub struct NotifyQueue {
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
}

impl NotifyQueue {
    /// Start the background task on the current tokio runtime.
    pub fn start(
        channels: Vec<Arc<dyn Notifier>>,
        capacity: usize,
    ) -> Result<NotifyQueue, NotifyError> {
        let handle = tokio::runtime::Handle::try_current().map_err(|e| NotifyError::NoRuntime {
            detail: e.to_string(),
        })?;
        let shared = Arc::new(Shared {
            items: Mutex::new(VecDeque::with_capacity(capacity.max(1))),
            capacity: capacity.max(1),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            enqueued: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        });
        let worker = handle.spawn(run(Arc::clone(&shared), Arc::new(channels)));
        Ok(NotifyQueue {
            shared,
            worker: Some(worker),
        })
    }

    /// Queue a message without waiting; when the queue is full the oldest message is dropped.
    pub fn enqueue(&self, notification: Notification) -> Enqueued {
        let (outcome, dropped) = {
            let mut items = self
                .shared
                .items
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let dropped = if items.len() >= self.shared.capacity {
                items.pop_front()
            } else {
                None
            };
            items.push_back(Arc::new(notification));
            (
                if dropped.is_some() {
                    Enqueued::DroppedOldest
                } else {
                    Enqueued::Accepted
                },
                dropped,
            )
        };
        if let Some(old) = dropped {
            let count = self.shared.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // Log the 1st, 2nd, 4th, 8th, ... drop: a flood must not become a log flood.
            if count.is_power_of_two() {
                tracing::warn!(rollout = %old.rollout, event = event_name(old.event), capacity = self.shared.capacity, dropped = count, "notification queue full; dropped the oldest message");
            }
        }
        self.shared.enqueued.fetch_add(1, Ordering::Relaxed);
        self.shared.wake.notify_one();
        outcome
    }

    /// Messages waiting (not counting the one being delivered).
    pub fn len(&self) -> usize {
        self.shared
            .items
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn stats(&self) -> QueueStats {
        QueueStats {
            enqueued: self.shared.enqueued.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
            delivered: self.shared.delivered.load(Ordering::Relaxed),
            failed: self.shared.failed.load(Ordering::Relaxed),
        }
    }

    /// Stop accepting messages, deliver what is queued for at most `grace`, then stop.
    /// Messages still queued after `grace` are counted as dropped.
    pub async fn shutdown(mut self, grace: Duration) -> QueueStats {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.wake.notify_one();
        let Some(mut worker) = self.worker.take() else {
            return self.stats();
        };
        if tokio::time::timeout(grace, &mut worker).await.is_err() {
            worker.abort();
            let left = {
                let mut items = self
                    .shared
                    .items
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let n = items.len();
                items.clear();
                n
            };
            self.shared
                .dropped
                .fetch_add(left as u64, Ordering::Relaxed);
            tracing::warn!(
                left,
                "notification queue stopped before delivering everything"
            );
        }
        self.stats()
    }
}

impl Drop for NotifyQueue {
    fn drop(&mut self) {
        if self.worker.is_some() {
            self.shared.closed.store(true, Ordering::Release);
            self.shared.wake.notify_one();
        }
    }
}

async fn run(shared: Arc<Shared>, channels: Arc<Vec<Arc<dyn Notifier>>>) {
    loop {
        let Some(n) = shared.pop() else {
            if shared.closed.load(Ordering::Acquire) {
                return;
            }
            // `notify_one` stores a permit when nobody waits, so a message queued between
            // `pop` and here still wakes us.
            shared.wake.notified().await;
            continue;
        };
        for wanted in &n.channels {
            if !channels.iter().any(|c| c.name() == wanted) {
                tracing::warn!(rollout = %n.rollout, channel = %wanted, "the plan names a notification channel that is not configured");
            }
        }
        let mut sends = JoinSet::new();
        for channel in channels.iter() {
            if n.channels.iter().any(|w| w == channel.name()) && channel.wants(n.event) {
                let channel = Arc::clone(channel);
                let n = Arc::clone(&n);
                sends.spawn(async move {
                    let result = channel.send(&n).await;
                    (channel, result)
                });
            }
        }
        while let Some(joined) = sends.join_next().await {
            match joined {
                Ok((_, Ok(()))) => {
                    shared.delivered.fetch_add(1, Ordering::Relaxed);
                }
                Ok((channel, Err(e))) => {
                    shared.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(channel = channel.name(), rollout = %n.rollout, event = event_name(n.event), error = %e, "notification not delivered");
                }
                Err(e) => {
                    shared.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(rollout = %n.rollout, error = %e, "notification task ended abnormally");
                }
            }
        }
    }
}
