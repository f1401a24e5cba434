//! Fault injection for tests: latency, failed requests (5xx, 409, 429), and a hook that edits
//! the store between a client's read and its write. Also records every request served.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use axum::http::Method;

use super::store::Store;

/// A hook run against the store right before the next write is applied.
pub type WriteHook = Box<dyn FnOnce(&mut Store) + Send>;

/// One served request (for assertions such as "the client retried three times").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub query: String,
    pub status: u16,
}

#[derive(Default)]
struct State {
    latency: Duration,
    delays: VecDeque<Duration>,
    fail_requests: VecDeque<u16>,
    fail_writes: VecDeque<u16>,
    before_write: Option<WriteHook>,
    log: Vec<RequestRecord>,
}

/// What to do with one request.
#[derive(Debug, Default)]
pub(crate) struct Decision {
    pub delay: Option<Duration>,
    pub fail_with: Option<u16>,
}

/// The fault hooks of a running emulator (shared with the server).
#[derive(Default)]
pub struct Faults {
    state: Mutex<State>,
}

fn is_write(m: &Method) -> bool {
    matches!(
        *m,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

impl Faults {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Delay every request by `d` (zero to stop).
    pub fn set_latency(&self, d: Duration) {
        self.lock().latency = d;
    }

    /// Delay each of the next `n` requests by `d` (on top of the standing latency).
    pub fn delay_next_requests(&self, d: Duration, n: usize) {
        let mut s = self.lock();
        s.delays.extend(std::iter::repeat_n(d, n));
    }

    /// Answer the next `n` requests (any verb, discovery excluded) with `code` and a `Status` body.
    pub fn fail_next_requests(&self, code: u16, n: usize) {
        self.lock()
            .fail_requests
            .extend(std::iter::repeat_n(code, n));
    }

    /// Answer the next `n` writes (POST/PUT/PATCH/DELETE) with `code` (e.g. 409, 500, 503).
    pub fn fail_next_writes(&self, code: u16, n: usize) {
        self.lock().fail_writes.extend(std::iter::repeat_n(code, n));
    }

    /// Run `hook` on the store just before the next write is applied: a concurrent edit
    /// landing between a client's read and its write.
    pub fn before_next_write(&self, hook: impl FnOnce(&mut Store) + Send + 'static) {
        self.lock().before_write = Some(Box::new(hook));
    }

    /// Every request served so far.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.lock().log.clone()
    }

    /// Forget the request log.
    pub fn clear_requests(&self) {
        self.lock().log.clear();
    }

    pub(crate) fn before_request(&self, method: &Method, path: &str) -> Decision {
        let mut s = self.lock();
        let mut delay = s.latency;
        if let Some(d) = s.delays.pop_front() {
            delay += d;
        }
        let discovery = path == "/api" || path == "/apis" || path.split('/').count() <= 4;
        let mut fail_with = None;
        if !discovery {
            fail_with = s.fail_requests.pop_front();
            if fail_with.is_none() && is_write(method) {
                fail_with = s.fail_writes.pop_front();
            }
        }
        Decision {
            delay: (!delay.is_zero()).then_some(delay),
            fail_with,
        }
    }

    pub(crate) fn run_before_write(&self, store: &Mutex<Store>) {
        let hook = self.lock().before_write.take();
        if let Some(hook) = hook {
            let mut st = store.lock().unwrap_or_else(|e| e.into_inner());
            hook(&mut st);
        }
    }

    pub(crate) fn record(&self, r: RequestRecord) {
        self.lock().log.push(r);
    }
}
