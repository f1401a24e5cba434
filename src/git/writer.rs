//! Coalescing status writer: a thread that gathers the transitions (and removed statuses and
//! refused controls) submitted within a window (default 1 s) and writes them as one commit, so
//! pushes stay at most one per window however many rollouts change. A failed write keeps its
//! changes for the next round.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{GitError, StateStore, StatusBatch};
use crate::control::RefusedRecord;
use crate::plan::RolloutId;
use crate::rollout::Status;

enum Msg {
    Submit(Box<Status>),
    Remove(RolloutId),
    Refuse(Vec<RefusedRecord>),
    Processed(String),
    Flush(Sender<()>),
}

/// What one write did (sent to the report channel for metrics and logs).
#[derive(Debug)]
pub struct WriterReport {
    /// Changes written (transitions, removed statuses, refused controls).
    pub transitions: usize,
    pub result: Result<super::WriteOutcome, GitError>,
    pub took: Duration,
}

/// Submits transitions to the writer thread. Dropping every handle stops the thread after a last
/// write of anything pending.
#[derive(Clone)]
pub struct WriterHandle {
    tx: Sender<Msg>,
}

impl WriterHandle {
    /// Queue one transition (its status document after the change).
    pub fn submit(&self, status: Status) -> bool {
        self.tx.send(Msg::Submit(Box::new(status))).is_ok()
    }

    /// Queue the deletion of a rollout's status file.
    pub fn remove(&self, id: RolloutId) -> bool {
        self.tx.send(Msg::Remove(id)).is_ok()
    }

    /// Queue controls no rollout could answer, for `_refused.yaml`.
    pub fn refuse(&self, records: Vec<RefusedRecord>) -> bool {
        self.tx.send(Msg::Refuse(records)).is_ok()
    }

    /// Record that the statuses submitted so far reflect every control up to `commit`.
    pub fn processed_through(&self, commit: impl Into<String>) -> bool {
        self.tx.send(Msg::Processed(commit.into())).is_ok()
    }

    /// Write everything pending now and wait until it is done.
    pub fn flush(&self) -> bool {
        let (tx, rx) = mpsc::channel();
        if self.tx.send(Msg::Flush(tx)).is_err() {
            return false;
        }
        rx.recv().is_ok()
    }
}

/// The writer thread.
pub struct StatusWriter {
    handle: JoinHandle<()>,
}

impl StatusWriter {
    /// Start the thread over `store`; reports of every write go to the returned receiver.
    pub fn spawn<S: StateStore + Send + 'static>(
        store: S,
        window: Duration,
    ) -> (StatusWriter, WriterHandle, Receiver<WriterReport>) {
        let (tx, rx) = mpsc::channel();
        let (report_tx, report_rx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("tidegate-git-writer".into())
            .spawn(move || run(store, window, rx, report_tx))
            .unwrap_or_else(|e| panic!("cannot start the git writer thread: {e}"));
        (StatusWriter { handle }, WriterHandle { tx }, report_rx)
    }

    /// Wait for the thread to finish (after every handle is dropped).
    pub fn join(self) {
        if self.handle.join().is_err() {
            tracing::error!("the git writer thread panicked");
        }
    }
}

fn run<S: StateStore>(
    mut store: S,
    window: Duration,
    rx: Receiver<Msg>,
    reports: Sender<WriterReport>,
) {
    let mut pending = StatusBatch::default();
    let mut processed: Option<String> = None;
    let mut last_write: Option<Instant> = None;
    let mut waiters: Vec<Sender<()>> = Vec::new();
    let mut open = true;
    let mut failures_after_close = 0u32;
    while open || !pending.is_empty() {
        // Wait for the first item of a batch (or keep what a failed write left).
        if pending.is_empty() && waiters.is_empty() {
            match rx.recv() {
                Ok(msg) => take(msg, &mut pending, &mut processed, &mut waiters),
                Err(_) => break,
            }
        }
        let mut deadline = Instant::now() + window;
        if let Some(last) = last_write {
            deadline = deadline.max(last + window);
        }
        // Gather until the window closes (a flush closes it at once).
        while open && waiters.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            match rx.recv_timeout(deadline - now) {
                Ok(msg) => take(msg, &mut pending, &mut processed, &mut waiters),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
        }
        // Drain anything already queued without waiting.
        while let Ok(msg) = rx.try_recv() {
            take(msg, &mut pending, &mut processed, &mut waiters);
        }
        if !pending.is_empty() {
            let started = Instant::now();
            last_write = Some(started);
            let result = store.write(&pending, processed.as_deref());
            let transitions = pending.len();
            let ok = result.is_ok();
            if ok {
                pending = StatusBatch::default();
                processed = None;
            } else if let Err(e) = &result {
                tracing::error!(error = %e, transitions, "status write failed; keeping the transitions for the next round");
            }
            let _ = reports.send(WriterReport {
                transitions,
                result,
                took: started.elapsed(),
            });
            if !ok && !open {
                failures_after_close += 1;
                if failures_after_close >= 3 {
                    tracing::error!(
                        transitions,
                        "giving up on pending status transitions at shutdown"
                    );
                    break;
                }
            }
        }
        for w in waiters.drain(..) {
            let _ = w.send(());
        }
    }
}

fn take(
    msg: Msg,
    pending: &mut StatusBatch,
    processed: &mut Option<String>,
    waiters: &mut Vec<Sender<()>>,
) {
    match msg {
        Msg::Submit(s) => pending.push_status(*s),
        Msg::Remove(id) => pending.push_removed(id),
        Msg::Refuse(r) => pending.refused.extend(r),
        Msg::Processed(c) => *processed = Some(c),
        Msg::Flush(w) => waiters.push(w),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::git::WriteOutcome;
    use crate::plan::RolloutId;
    use crate::rollout::{Phase, RouteState};

    /// Canary weights of one accepted batch, and its processed marker.
    type Batch = (Vec<u8>, Option<String>);

    /// A store that fails its first `fail` writes and records every batch it accepts.
    struct Flaky {
        fail: usize,
        batches: Arc<Mutex<Vec<Batch>>>,
    }

    impl StateStore for Flaky {
        fn load_statuses(&mut self) -> Result<Vec<Status>, GitError> {
            Ok(Vec::new())
        }
        fn write(
            &mut self,
            batch: &StatusBatch,
            processed_through: Option<&str>,
        ) -> Result<super::super::WriteOutcome, GitError> {
            if self.fail > 0 {
                self.fail -= 1;
                return Err(GitError::Push {
                    url: "fake".into(),
                    reason: "down".into(),
                });
            }
            let weights = batch
                .statuses
                .iter()
                .map(|s| s.route.canary_weight)
                .collect();
            self.batches
                .lock()
                .expect("lock")
                .push((weights, processed_through.map(str::to_string)));
            Ok(WriteOutcome {
                commit: Some("c".into()),
                attempts: 1,
                transitions: batch.statuses.len(),
                removed: batch.removed.len(),
                refused: batch.refused.len(),
                skipped: Vec::new(),
            })
        }
    }

    fn status(weight: u8) -> Status {
        let at = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("time");
        let id = RolloutId {
            namespace: "n".into(),
            name: "a".into(),
        };
        Status {
            phase: Phase::Progressing,
            route: RouteState {
                canary_weight: weight,
                ..RouteState::default()
            },
            read_back: Default::default(),
            reason: String::new(),
            ..Status::fresh(&id, &Default::default(), 1, at)
        }
    }

    #[test]
    fn failed_writes_keep_their_transitions_for_the_next_round() {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let store = Flaky {
            fail: 2,
            batches: batches.clone(),
        };
        let (writer, handle, reports) = StatusWriter::spawn(store, Duration::from_millis(10));
        for w in 0..5 {
            assert!(handle.submit(status(w)));
        }
        assert!(handle.processed_through("abc"));
        assert!(handle.flush());
        let mut delivered = 0;
        let mut failures = 0;
        while delivered < 5 {
            let r = reports
                .recv_timeout(Duration::from_secs(10))
                .expect("report");
            match r.result {
                Ok(o) => delivered += o.transitions,
                Err(_) => failures += 1,
            }
        }
        assert_eq!(failures, 2);
        drop(handle);
        writer.join();
        let got = batches.lock().expect("lock").clone();
        assert_eq!(got, vec![(vec![0, 1, 2, 3, 4], Some("abc".to_string()))]);
    }
}
