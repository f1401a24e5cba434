//! Fault injection for tests: latency, failed requests (5xx, 409, 429), resources the client
//! may not touch (403, as RBAC answers), and a hook that edits the store between a client's
//! read and its write. Also records every request served.

use std::collections::{BTreeMap, VecDeque};
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

/// What a request did, in the API server's own terms (its audit log's `verb`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verb {
    /// `/api`, `/apis`, `/apis/{group}[/{version}]`, `/version`.
    Discovery,
    List,
    Watch,
    Get,
    Create,
    Update,
    Patch,
    Delete,
    Other,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Discovery => "discovery",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Get => "get",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::Other => "other",
        }
    }

    /// Whether the verb reads (discovery, list, watch, get).
    pub fn is_read(self) -> bool {
        matches!(self, Verb::Discovery | Verb::List | Verb::Watch | Verb::Get)
    }
}

impl RequestRecord {
    /// The request's verb: the method, and for a `GET` whether it named one object, a
    /// collection, or a collection with `watch=true`.
    pub fn verb(&self) -> Verb {
        let segs: Vec<&str> = self.path.split('/').filter(|s| !s.is_empty()).collect();
        let rest: &[&str] = match segs.as_slice() {
            ["api", _, rest @ ..] => rest,
            ["apis", _, _, rest @ ..] => rest,
            _ => return Verb::Discovery,
        };
        let object = match rest {
            [] => return Verb::Discovery,
            ["namespaces", _, _] | [_] => false,
            ["namespaces", _, _, _] | [_, _] => true,
            _ => return Verb::Other,
        };
        let watch = self
            .query
            .split('&')
            .any(|kv| kv == "watch=true" || kv == "watch=1");
        match (self.method.as_str(), object) {
            ("GET", false) if watch => Verb::Watch,
            ("GET", false) => Verb::List,
            ("GET", true) => Verb::Get,
            ("POST", false) => Verb::Create,
            ("PUT", true) => Verb::Update,
            ("PATCH", true) => Verb::Patch,
            ("DELETE", true) => Verb::Delete,
            _ => Verb::Other,
        }
    }
}

#[derive(Default)]
struct State {
    latency: Duration,
    delays: VecDeque<Duration>,
    fail_requests: VecDeque<u16>,
    fail_writes: VecDeque<u16>,
    before_write: Option<WriteHook>,
    /// `(group, resource)` answered with `403 Forbidden`.
    forbidden: Vec<(String, String)>,
    /// `(group, resource, code, how many more)`: the next requests on a resource that fail.
    fail_on: Vec<(String, String, u16, usize)>,
    log: Vec<RequestRecord>,
}

/// What to do with one request.
#[derive(Debug, Default)]
pub(crate) struct Decision {
    pub delay: Option<Duration>,
    pub fail_with: Option<u16>,
    /// The message of the failure, when it is not a generic injected one.
    pub message: Option<String>,
}

/// The API group, resource and namespace a request path names (`None`: discovery).
fn resource_of(path: &str) -> Option<(&str, &str, Option<&str>)> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, rest) = match segs.as_slice() {
        ["api", _, rest @ ..] => ("", rest),
        ["apis", g, _, rest @ ..] => (*g, rest),
        _ => return None,
    };
    match rest {
        ["namespaces", ns, plural, ..] => Some((group, plural, Some(ns))),
        [plural, ..] => Some((group, plural, None)),
        [] => None,
    }
}

/// The API server's message for a request RBAC does not allow.
fn forbidden_message(
    method: &Method,
    path: &str,
    group: &str,
    plural: &str,
    ns: Option<&str>,
) -> String {
    let record = RequestRecord {
        method: method.to_string(),
        path: path.to_string(),
        query: String::new(),
        status: 403,
    };
    let qualified = if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    };
    let scope = match ns {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_string(),
    };
    format!(
        "{qualified} is forbidden: User \"system:serviceaccount:tidegate-system:tidegate\" cannot {} resource \"{plural}\" in API group \"{group}\" {scope}",
        record.verb().as_str()
    )
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

    /// Answer every request on `resource` (plural) of `group` (`""`: core) with `403 Forbidden`
    /// from now on, as the API server does when RBAC grants the client nothing on it.
    pub fn forbid(&self, group: &str, resource: &str) {
        self.lock()
            .forbidden
            .push((group.to_string(), resource.to_string()));
    }

    /// Answer the next `n` requests on `resource` of `group` with `code` (other resources are
    /// served as usual).
    pub fn fail_next_on(&self, group: &str, resource: &str, code: u16, n: usize) {
        self.lock()
            .fail_on
            .push((group.to_string(), resource.to_string(), code, n));
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

    /// How many requests of each verb were served so far (a benchmark's request budget).
    pub fn request_counts(&self) -> BTreeMap<Verb, usize> {
        let mut out = BTreeMap::new();
        for r in &self.lock().log {
            *out.entry(r.verb()).or_insert(0) += 1;
        }
        out
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
        let mut message = None;
        if let Some((group, plural, ns)) = resource_of(path).filter(|_| !discovery)
            && s.forbidden.iter().any(|(g, r)| g == group && r == plural)
        {
            fail_with = Some(403);
            message = Some(forbidden_message(method, path, group, plural, ns));
        } else if let Some((group, plural, _)) = resource_of(path).filter(|_| !discovery)
            && let Some(slot) = s
                .fail_on
                .iter_mut()
                .find(|(g, r, _, left)| g == group && r == plural && *left > 0)
        {
            slot.3 -= 1;
            fail_with = Some(slot.2);
        } else if !discovery {
            fail_with = s.fail_requests.pop_front();
            if fail_with.is_none() && is_write(method) {
                fail_with = s.fail_writes.pop_front();
            }
        }
        Decision {
            delay: (!delay.is_zero()).then_some(delay),
            fail_with,
            message,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(method: &str, path: &str, query: &str) -> RequestRecord {
        RequestRecord {
            method: method.into(),
            path: path.into(),
            query: query.into(),
            status: 200,
        }
    }

    #[test]
    fn verbs_follow_the_api_servers_audit_terms() {
        let vs = "/apis/networking.istio.io/v1/namespaces/shop/virtualservices";
        let cases = [
            (rec("GET", "/apis", ""), Verb::Discovery),
            (
                rec("GET", "/apis/networking.istio.io/v1", ""),
                Verb::Discovery,
            ),
            (rec("GET", "/version", ""), Verb::Discovery),
            (rec("GET", vs, ""), Verb::List),
            (rec("GET", vs, "resourceVersion=7&watch=true"), Verb::Watch),
            (rec("GET", &format!("{vs}/cart"), ""), Verb::Get),
            (rec("PATCH", &format!("{vs}/cart"), ""), Verb::Patch),
            (rec("PUT", &format!("{vs}/cart"), ""), Verb::Update),
            (rec("POST", vs, ""), Verb::Create),
            (rec("DELETE", &format!("{vs}/cart"), ""), Verb::Delete),
            (rec("GET", "/api/v1/namespaces", ""), Verb::List),
            (rec("GET", "/api/v1/namespaces/shop", ""), Verb::Get),
        ];
        for (r, want) in cases {
            assert_eq!(r.verb(), want, "{} {}?{}", r.method, r.path, r.query);
        }
    }

    #[test]
    fn forbidden_resources_get_403_with_the_api_servers_message() {
        let f = Faults::default();
        f.forbid("", "services");
        let d = f.before_request(&Method::GET, "/api/v1/namespaces/istio-system/services");
        assert_eq!(d.fail_with, Some(403));
        assert_eq!(
            d.message.as_deref(),
            Some(
                "services is forbidden: User \"system:serviceaccount:tidegate-system:tidegate\" cannot list resource \"services\" in API group \"\" in the namespace \"istio-system\""
            )
        );
        let other = f.before_request(&Method::GET, "/api/v1/namespaces/shop/configmaps");
        assert_eq!(other.fail_with, None, "other resources are served");
        f.fail_next_on("networking.istio.io", "gateways", 503, 1);
        let gw = "/apis/networking.istio.io/v1/namespaces/shop/gateways";
        assert_eq!(f.before_request(&Method::GET, gw).fail_with, Some(503));
        assert_eq!(
            f.before_request(&Method::GET, gw).fail_with,
            None,
            "only the next one"
        );
        let discovery = f.before_request(&Method::GET, "/api/v1");
        assert_eq!(discovery.fail_with, None, "discovery is open to everyone");
    }

    #[test]
    fn counts_are_by_verb() {
        let f = Faults::default();
        let vs = "/apis/networking.istio.io/v1/namespaces/shop/virtualservices";
        f.record(rec("GET", vs, "watch=true"));
        f.record(rec("PATCH", &format!("{vs}/a"), ""));
        f.record(rec("PATCH", &format!("{vs}/b"), ""));
        let counts = f.request_counts();
        assert_eq!(counts.get(&Verb::Patch), Some(&2));
        assert_eq!(counts.get(&Verb::Watch), Some(&1));
        assert_eq!(counts.get(&Verb::Get), None);
    }
}
