//! Fakes of every part the daemon talks to, for in-process tests with a paused tokio clock:
//! a mesh that keeps VirtualServices in memory and changes them with tidegate's real route
//! logic (with injectable failures and edits by "someone else"), a metrics source answering the
//! batched queries from per-subset health, a plans repository of files and commits, and
//! recording sinks for statuses, notifications and Events.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::{Future, ready};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use serde_json::{Value, json};
use tidegate::analysis::batch::Series;
use tidegate::control::{CommitInfo, Policy, RefusedRecord, SignatureState};
use tidegate::daemon::{
    App, EventRecorder, Leadership, Notifier, Parts, PlanFeed, Settings, StatusSink, TokioClock,
    schedule,
};
use tidegate::git::{GitError, NewCommit, PlanChanges, PlanContent, PlanFile, SourceUpdate};
use tidegate::mesh::istio::routes;
use tidegate::mesh::{Mesh, MeshKind, MeshObjects, ObjectKey, Target, TrafficRouter, WriteReport};
use tidegate::metrics::{MetricsError, MetricsSource};
use tidegate::notify::Notification;
use tidegate::plan::{Plan, RolloutId};
use tidegate::rollout::{ReadBack, RouteState, Status, Transition};
use tidegate::transient::Transient;
use tokio::sync::{Notify, watch};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------------
// Mesh

/// An error of the fake mesh, transient or not as the test says.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct FakeMeshError {
    pub message: String,
    pub transient: bool,
}

impl Transient for FakeMeshError {
    fn is_transient(&self) -> bool {
        self.transient
    }
}

#[derive(Default)]
struct MeshState {
    objects: BTreeMap<ObjectKey, Value>,
    dirty: BTreeSet<ObjectKey>,
    fail_writes: VecDeque<FakeMeshError>,
    fail_reads: VecDeque<FakeMeshError>,
    /// Every write that changed an object: (namespace/name, canary weight of the route read back).
    writes: Vec<(String, Value)>,
    reads: usize,
    watched: BTreeSet<String>,
    rv: u64,
}

/// The in-memory mesh.
#[derive(Clone, Default)]
pub struct FakeMesh {
    state: Arc<Mutex<MeshState>>,
    changed: Arc<Notify>,
}

pub fn vs_key(ns: &str, name: &str) -> ObjectKey {
    ObjectKey {
        kind: MeshKind::VirtualService,
        namespace: ns.into(),
        name: name.into(),
    }
}

pub fn dr_key(ns: &str, name: &str) -> ObjectKey {
    ObjectKey {
        kind: MeshKind::DestinationRule,
        namespace: ns.into(),
        name: name.into(),
    }
}

impl FakeMesh {
    /// A mesh holding `orders` (route `primary` all to v1) and its DestinationRule with `subsets`.
    pub fn with_orders(ns: &str, subsets: &[&str]) -> FakeMesh {
        let m = FakeMesh::default();
        m.put(vs_key(ns, "orders"), orders_vs(ns));
        m.put(dr_key(ns, "orders"), orders_dr(ns, subsets));
        m.take_dirty();
        m
    }

    /// Create or replace an object (as someone else: the daemon is told).
    pub fn put(&self, key: ObjectKey, mut obj: Value) {
        let mut st = lock(&self.state);
        st.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(st.rv.to_string());
        st.objects.insert(key.clone(), obj);
        st.dirty.insert(key);
        drop(st);
        self.changed.notify_one();
    }

    /// Edit an object as someone else would.
    pub fn edit(&self, key: &ObjectKey, f: impl FnOnce(&mut Value)) {
        let mut obj = self.get(key).expect("object to edit");
        f(&mut obj);
        self.put(key.clone(), obj);
    }

    pub fn get(&self, key: &ObjectKey) -> Option<Value> {
        lock(&self.state).objects.get(key).cloned()
    }

    /// The canary weight of route `primary` in `ns/orders` for subset `canary`.
    pub fn weight(&self, ns: &str, subset: &str) -> u64 {
        let vs = self.get(&vs_key(ns, "orders")).expect("vs");
        vs["spec"]["http"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["name"] == "primary"))
            .and_then(|r| r["route"].as_array())
            .and_then(|d| d.iter().find(|d| d["destination"]["subset"] == subset))
            .and_then(|d| d["weight"].as_u64())
            .unwrap_or(0)
    }

    /// Names of the http routes of `ns/orders`, in order.
    pub fn route_names(&self, ns: &str) -> Vec<String> {
        let vs = self.get(&vs_key(ns, "orders")).expect("vs");
        vs["spec"]["http"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(|r| r["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn fail_next_writes(&self, n: usize, message: &str, transient: bool) {
        let mut st = lock(&self.state);
        for _ in 0..n {
            st.fail_writes.push_back(FakeMeshError {
                message: message.into(),
                transient,
            });
        }
    }

    pub fn fail_next_reads(&self, n: usize, message: &str) {
        let mut st = lock(&self.state);
        for _ in 0..n {
            st.fail_reads.push_back(FakeMeshError {
                message: message.into(),
                transient: true,
            });
        }
    }

    /// Injected write failures not used yet.
    pub fn pending_write_failures(&self) -> usize {
        lock(&self.state).fail_writes.len()
    }

    /// Writes that changed an object so far.
    pub fn writes(&self) -> usize {
        lock(&self.state).writes.len()
    }

    /// Object reads the daemon made (read-backs and object lists).
    pub fn reads(&self) -> usize {
        lock(&self.state).reads
    }

    pub fn watched(&self) -> BTreeSet<String> {
        lock(&self.state).watched.clone()
    }

    fn take_dirty(&self) -> Vec<ObjectKey> {
        std::mem::take(&mut lock(&self.state).dirty)
            .into_iter()
            .collect()
    }

    fn read_vs(&self, target: &Target) -> Result<Value, FakeMeshError> {
        let mut st = lock(&self.state);
        st.reads += 1;
        if let Some(e) = st.fail_reads.pop_front() {
            return Err(e);
        }
        let key = vs_key(&target.rollout.namespace, &target.virtual_service);
        st.objects.get(&key).cloned().ok_or_else(|| FakeMeshError {
            message: format!("virtualservices {} not found (404)", target.virtual_service),
            transient: false,
        })
    }

    fn write(
        &self,
        target: &Target,
        expected: &RouteState,
        plan: impl FnOnce(&Value) -> Result<routes::PatchPlan, tidegate::mesh::istio::IstioError>,
    ) -> Result<WriteReport, FakeMeshError> {
        let vs = self.read_vs(target)?;
        let permanent = |e: tidegate::mesh::istio::IstioError| FakeMeshError {
            message: e.to_string(),
            transient: false,
        };
        let patch = plan(&vs).map_err(permanent)?;
        if patch.is_empty() {
            return Ok(WriteReport {
                patched: false,
                patch: Vec::new(),
                read_back: routes::verify(&vs, target, expected),
            });
        }
        let mut st = lock(&self.state);
        if let Some(e) = st.fail_writes.pop_front() {
            return Err(e);
        }
        let mut new = routes::apply(&vs, &patch).map_err(permanent)?;
        st.rv += 1;
        new["metadata"]["resourceVersion"] = json!(st.rv.to_string());
        let key = vs_key(&target.rollout.namespace, &target.virtual_service);
        st.objects.insert(key, new.clone());
        st.writes
            .push((target.virtual_service.clone(), new.clone()));
        Ok(WriteReport {
            patched: true,
            patch: patch.ops,
            read_back: routes::verify(&new, target, expected),
        })
    }
}

impl TrafficRouter for FakeMesh {
    type Error = FakeMeshError;

    fn set_route(
        &self,
        target: &Target,
        state: &RouteState,
    ) -> impl Future<Output = Result<WriteReport, FakeMeshError>> + Send {
        ready(self.write(target, state, |vs| routes::plan_set(vs, target, state)))
    }

    fn read_back(
        &self,
        target: &Target,
        expected: &RouteState,
    ) -> impl Future<Output = Result<ReadBack, FakeMeshError>> + Send {
        ready(
            self.read_vs(target)
                .map(|vs| routes::verify(&vs, target, expected)),
        )
    }

    fn clear(
        &self,
        target: &Target,
        state: &RouteState,
    ) -> impl Future<Output = Result<WriteReport, FakeMeshError>> + Send {
        let expected = RouteState {
            canary_weight: state.canary_weight,
            header_route: None,
            mirror_percent: 0,
        };
        ready(self.write(target, &expected, |vs| {
            routes::plan_clear(vs, target, state)
        }))
    }
}

impl Mesh for FakeMesh {
    fn objects(
        &self,
        targets: &[Target],
    ) -> impl Future<Output = Result<MeshObjects, FakeMeshError>> + Send {
        let mut st = lock(&self.state);
        st.reads += 1;
        let ns = targets.first().map(|t| t.rollout.namespace.as_str());
        // Services, ServiceEntries and Gateways are not kept here: none is seen (their checks
        // say nothing), as in a cluster where tidegate may not read them.
        ready(Ok(MeshObjects {
            objects: st
                .objects
                .iter()
                .filter(|(k, _)| Some(k.namespace.as_str()) == ns)
                .map(|(_, v)| v.clone())
                .collect(),
            ..MeshObjects::default()
        }))
    }

    fn watch(&self, namespaces: &BTreeSet<String>) {
        lock(&self.state).watched = namespaces.clone();
    }

    fn changes(&self) -> impl Future<Output = Vec<ObjectKey>> + Send {
        let mesh = self.clone();
        async move {
            loop {
                let keys = mesh.take_dirty();
                if !keys.is_empty() {
                    return keys;
                }
                mesh.changed.notified().await;
            }
        }
    }
}

pub fn orders_vs(ns: &str) -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "orders", "namespace": ns},
        "spec": {
            "hosts": ["orders"],
            "http": [{"name": "primary", "route": [
                {"destination": {"host": "orders", "subset": "v1"}, "weight": 100}
            ]}]
        }
    })
}

pub fn orders_dr(ns: &str, subsets: &[&str]) -> Value {
    let subsets: Vec<Value> = subsets
        .iter()
        .map(|s| json!({"name": s, "labels": {"version": s}}))
        .collect();
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "orders", "namespace": ns},
        "spec": {"host": "orders", "subsets": subsets}
    })
}

// ---------------------------------------------------------------------------------------------
// Metrics

/// How a subset behaves in the fake's answers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Health {
    /// Success rate 100 %, p99 50 ms, plenty of requests.
    Healthy,
    /// Success rate 90 %.
    Failing,
    /// No requests at all (no series).
    NoTraffic,
}

#[derive(Default)]
struct MetricsState {
    subsets: BTreeMap<(String, String, String), Health>,
    unreachable: bool,
    queries: usize,
    rounds: usize,
}

/// A metrics source answering the daemon's batched Istio queries.
#[derive(Clone, Default)]
pub struct FakeMetrics {
    state: Arc<Mutex<MetricsState>>,
}

impl FakeMetrics {
    /// `service` in `ns` with its subsets, all healthy.
    pub fn healthy(ns: &str, service: &str, subsets: &[&str]) -> FakeMetrics {
        let m = FakeMetrics::default();
        for s in subsets {
            m.set(ns, service, s, Health::Healthy);
        }
        m
    }

    pub fn set(&self, ns: &str, service: &str, subset: &str, health: Health) {
        lock(&self.state)
            .subsets
            .insert((ns.into(), service.into(), subset.into()), health);
    }

    pub fn set_unreachable(&self, down: bool) {
        lock(&self.state).unreachable = down;
    }

    /// Analysis rounds asked for so far (one request-count query each).
    pub fn rounds(&self) -> usize {
        lock(&self.state).rounds
    }

    /// Queries answered or refused so far.
    pub fn queries(&self) -> usize {
        lock(&self.state).queries
    }

    fn value(query: &str, health: Health) -> Option<f64> {
        if health == Health::NoTraffic {
            return None;
        }
        Some(if query.contains("increase(") {
            10_000.0
        } else if query.contains("response_code!~") {
            if health == Health::Failing {
                90.0
            } else {
                100.0
            }
        } else if query.contains("histogram_quantile") {
            50.0
        } else {
            100.0
        })
    }
}

impl MetricsSource for FakeMetrics {
    fn instant(
        &self,
        query: &str,
        _at: Option<DateTime<Utc>>,
    ) -> impl Future<Output = Result<Vec<Series>, MetricsError>> + Send {
        ready(self.answer(query))
    }
}

impl FakeMetrics {
    fn answer(&self, query: &str) -> Result<Vec<Series>, MetricsError> {
        let mut st = lock(&self.state);
        st.queries += 1;
        if query.contains("increase(") {
            st.rounds += 1;
        }
        if st.unreachable {
            return Err(MetricsError::Unreachable(
                "connection refused (fake)".into(),
            ));
        }
        if query == "vector(1)" {
            return Ok(vec![Series {
                labels: BTreeMap::new(),
                value: 1.0,
            }]);
        }
        Ok(st
            .subsets
            .iter()
            .filter_map(|((ns, svc, subset), health)| {
                let value = Self::value(query, *health)?;
                let labels = [
                    ("destination_service_namespace", ns.as_str()),
                    ("destination_service_name", svc.as_str()),
                    ("destination_version", subset.as_str()),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
                Some(Series { labels, value })
            })
            .collect())
    }
}

// ---------------------------------------------------------------------------------------------
// Plans repository

#[derive(Default)]
struct RepoState {
    files: BTreeMap<String, (String, String)>,
    /// Every revision of every path: (path, commit) → text (`None`: removed by that commit).
    history: BTreeMap<(String, String), Option<String>>,
    commits: Vec<NewCommit>,
    seen_files: Option<BTreeMap<String, String>>,
    seen_commits: usize,
    statuses: Vec<Status>,
    next_id: u64,
    fail_polls: usize,
    polls: usize,
}

/// A plans repository: files at the tip, control commits, the statuses last written.
#[derive(Clone, Default)]
pub struct FakeRepo {
    state: Arc<Mutex<RepoState>>,
}

impl FakeRepo {
    fn commit_id(st: &mut RepoState) -> String {
        st.next_id += 1;
        format!("{:040x}", st.next_id)
    }

    /// Commit `text` as `path`.
    pub fn write_plan(&self, path: &str, text: &str) {
        let mut st = lock(&self.state);
        let id = Self::commit_id(&mut st);
        st.history
            .insert((path.into(), id.clone()), Some(text.into()));
        st.files.insert(path.into(), (text.into(), id));
    }

    pub fn remove_plan(&self, path: &str) {
        let mut st = lock(&self.state);
        let id = Self::commit_id(&mut st);
        st.history.insert((path.into(), id), None);
        st.files.remove(path);
    }

    /// The text of `path` at commit `revision` (the newest change of `path` at or before it).
    fn text_at(&self, path: &str, revision: &str) -> Result<Option<String>, GitError> {
        let st = lock(&self.state);
        let known = u64::from_str_radix(revision, 16)
            .ok()
            .filter(|n| *n >= 1 && *n <= st.next_id);
        if known.is_none() {
            return Err(GitError::Read(format!(
                "commit {revision} (a revision of {path}) is not in the mirror"
            )));
        }
        Ok(st
            .history
            .range((path.to_owned(), String::new())..=(path.to_owned(), revision.to_owned()))
            .next_back()
            .and_then(|(_, text)| text.clone()))
    }

    /// Push a commit carrying `Tidegate: <control>` by `email`.
    pub fn control(&self, control: &str, email: &str) {
        let mut st = lock(&self.state);
        let id = Self::commit_id(&mut st);
        st.commits.push(NewCommit {
            commit: CommitInfo {
                id,
                author_name: "Ana".into(),
                author_email: email.into(),
                message: format!("steer\n\nTidegate: {control}\n"),
                signature: SignatureState::NotChecked,
            },
            committer_email: email.into(),
            time: DateTime::from_timestamp(1_800_000_000, 0).expect("time"),
            is_own: false,
        });
    }

    pub fn fail_next_polls(&self, n: usize) {
        lock(&self.state).fail_polls = n;
    }

    /// The statuses written so far (what a restarted daemon reads back).
    pub fn store_statuses(&self, statuses: Vec<Status>) {
        lock(&self.state).statuses = statuses;
    }

    /// What a daemon's status writer leaves on the status branch: the statuses already there,
    /// updated by what `recorder` saw submitted and removed (a daemon that changed nothing
    /// leaves the branch as it was).
    pub fn keep_statuses(&self, recorder: &Recorder) {
        let mut st = lock(&self.state);
        let mut by: BTreeMap<String, Status> = st
            .statuses
            .drain(..)
            .map(|s| (s.rollout.to_string(), s))
            .collect();
        for s in recorder.latest_all() {
            by.insert(s.rollout.to_string(), s);
        }
        for id in lock(&recorder.removed).iter() {
            by.remove(&id.to_string());
        }
        st.statuses = by.into_values().collect();
    }

    pub fn polls(&self) -> usize {
        lock(&self.state).polls
    }

    /// A repository that reads everything afresh (a new daemon process).
    pub fn reopen(&self) -> FakeRepo {
        let st = lock(&self.state);
        FakeRepo {
            state: Arc::new(Mutex::new(RepoState {
                files: st.files.clone(),
                history: st.history.clone(),
                commits: st.commits.clone(),
                seen_files: None,
                seen_commits: st.seen_commits,
                statuses: st.statuses.clone(),
                next_id: st.next_id,
                fail_polls: 0,
                polls: 0,
            })),
        }
    }

    fn changes(st: &mut RepoState) -> PlanChanges {
        let now: BTreeMap<String, String> = st
            .files
            .iter()
            .map(|(p, (_, rev))| (p.clone(), rev.clone()))
            .collect();
        let file = |p: &String| {
            let (text, rev) = st.files[p].clone();
            PlanFile {
                path: p.clone(),
                revision: rev.clone(),
                blob: rev,
                content: PlanContent::Text(text),
            }
        };
        let changes = match &st.seen_files {
            None => PlanChanges {
                full: true,
                changed: now.keys().map(file).collect(),
                removed: Vec::new(),
            },
            Some(seen) => PlanChanges {
                full: false,
                changed: now
                    .iter()
                    .filter(|(p, rev)| seen.get(*p) != Some(rev))
                    .map(|(p, _)| file(p))
                    .collect(),
                removed: seen
                    .keys()
                    .filter(|p| !now.contains_key(*p))
                    .cloned()
                    .collect(),
            },
        };
        st.seen_files = Some(now);
        changes
    }
}

impl PlanFeed for FakeRepo {
    fn poll(&mut self) -> impl Future<Output = Result<SourceUpdate, GitError>> + Send {
        ready(self.next_update())
    }

    fn load_statuses(&mut self) -> impl Future<Output = Result<Vec<Status>, GitError>> + Send {
        ready(Ok(lock(&self.state).statuses.clone()))
    }

    fn plan_at(
        &mut self,
        path: &str,
        revision: &str,
    ) -> impl Future<Output = Result<Option<String>, GitError>> + Send {
        ready(self.text_at(path, revision))
    }
}

impl FakeRepo {
    fn next_update(&self) -> Result<SourceUpdate, GitError> {
        let mut st = lock(&self.state);
        st.polls += 1;
        if st.fail_polls > 0 {
            st.fail_polls -= 1;
            return Err(GitError::Fetch {
                url: "file:///fake".into(),
                reason: "connection reset (fake)".into(),
            });
        }
        let plans = Self::changes(&mut st);
        let commits = st.commits[st.seen_commits..].to_vec();
        st.seen_commits = st.commits.len();
        Ok(SourceUpdate {
            tip: format!("{:040x}", st.next_id),
            plans,
            commits,
            force_push: None,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Sinks

/// Records every status submitted, removed statuses, refused controls, the processed marker,
/// notifications and Events.
#[derive(Clone, Default)]
pub struct Recorder {
    pub statuses: Arc<Mutex<Vec<Status>>>,
    /// Status files deleted, in order.
    pub removed: Arc<Mutex<Vec<RolloutId>>>,
    /// Controls that named no rollout (`status/_refused.yaml`), in order.
    pub refused: Arc<Mutex<Vec<RefusedRecord>>>,
    pub processed: Arc<Mutex<Option<String>>>,
    pub notifications: Arc<Mutex<Vec<Notification>>>,
    pub events: Arc<Mutex<Vec<Transition>>>,
}

impl Recorder {
    /// The latest status submitted for `name`.
    pub fn latest(&self, name: &str) -> Option<Status> {
        lock(&self.statuses)
            .iter()
            .rev()
            .find(|s| s.rollout.name == name)
            .cloned()
    }

    pub fn submitted(&self) -> usize {
        lock(&self.statuses).len()
    }

    /// The latest status of every rollout (what Git holds).
    pub fn latest_all(&self) -> Vec<Status> {
        let mut by: BTreeMap<String, Status> = BTreeMap::new();
        for s in lock(&self.statuses).iter() {
            by.insert(s.rollout.to_string(), s.clone());
        }
        by.into_values().collect()
    }

    pub fn events_named(&self, event: &str) -> usize {
        lock(&self.notifications)
            .iter()
            .filter(|n| tidegate::notify::event_name(n.event) == event)
            .count()
    }
}

impl StatusSink for Recorder {
    fn submit(&self, status: Status) {
        lock(&self.statuses).push(status);
    }

    fn remove(&self, id: &RolloutId) {
        lock(&self.removed).push(id.clone());
    }

    fn refuse_unknown(&self, records: Vec<RefusedRecord>) {
        lock(&self.refused).extend(records);
    }

    fn processed_through(&self, commit: &str) {
        *lock(&self.processed) = Some(commit.to_owned());
    }

    fn close(&self) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

impl Notifier for Recorder {
    fn send(&self, notification: Notification) {
        lock(&self.notifications).push(notification);
    }

    fn close(&self, _grace: Duration) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

impl EventRecorder for Recorder {
    fn record(&self, _plan: &Plan, transitions: &[Transition]) {
        lock(&self.events).extend_from_slice(transitions);
    }
}

// ---------------------------------------------------------------------------------------------
// A daemon made of fakes

/// The daemon's run future (driven by the test's own task: see [`World::run_for`]).
type DaemonFuture = Pin<Box<dyn Future<Output = Result<(), tidegate::daemon::DaemonError>>>>;

/// A daemon built from fakes, with handles to steer and inspect them. The daemon runs inside
/// the test's task: it advances while the test waits in [`World::run_for`], so the test's
/// checks in between see a daemon at rest.
pub struct World {
    pub mesh: FakeMesh,
    pub metrics: FakeMetrics,
    pub repo: FakeRepo,
    pub recorder: Recorder,
    pub lease: watch::Sender<bool>,
    pub state: Arc<tidegate::server::AppState>,
    stop_tx: Option<tokio::sync::oneshot::Sender<()>>,
    daemon: Option<DaemonFuture>,
}

pub fn start_time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
        .expect("time")
        .with_timezone(&Utc)
}

pub fn settings() -> Settings {
    Settings {
        namespace: "prod".into(),
        reporter: "destination".into(),
        policy: Policy::new(&[], false).expect("policy"),
        poll_interval: Duration::from_secs(5),
        health_interval: Duration::from_secs(15),
        schedule: schedule::Policy {
            initial_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(60),
            report_after: Duration::from_secs(120),
            confirm_delay: Duration::from_millis(100),
        },
        grace: Duration::from_secs(5),
        branch: "main".into(),
        webhook_secret: None,
        max_body_bytes: 1 << 20,
        listen: None,
    }
}

impl World {
    /// Start a daemon over these fakes (must run on a paused tokio runtime).
    pub fn start(mesh: FakeMesh, metrics: FakeMetrics, repo: FakeRepo) -> World {
        let recorder = Recorder::default();
        let (lease, leading) = watch::channel(true);
        let parts = Parts {
            mesh: mesh.clone(),
            metrics: metrics.clone(),
            plans: repo.clone(),
            statuses: Box::new(recorder.clone()),
            leadership: Leadership::new(leading, ()),
            events: Box::new(recorder.clone()),
            notifier: Box::new(recorder.clone()),
            clock: Arc::new(TokioClock::starting_at(start_time())),
        };
        let app = App::new(parts, settings());
        let state = app.state().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shutdown = async move {
            let _ = stopped.await;
        };
        let daemon: DaemonFuture = Box::pin(app.run(shutdown));
        World {
            mesh,
            metrics,
            repo,
            recorder,
            lease,
            state,
            stop_tx: Some(stop),
            daemon: Some(daemon),
        }
    }

    /// Let `secs` seconds of daemon time pass.
    pub async fn run_for(&mut self, secs: u64) {
        self.run_for_ms(secs * 1000).await;
    }

    /// Let `ms` milliseconds of daemon time pass, the daemon running meanwhile.
    pub async fn run_for_ms(&mut self, ms: u64) {
        let daemon = self.daemon.as_mut().expect("the daemon is running");
        tokio::select! {
            end = daemon => panic!("the daemon stopped by itself: {end:?}"),
            _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
        }
    }

    /// The status the API serves for `ns/name`.
    pub async fn api_status(&self, ns: &str, name: &str) -> Option<Status> {
        let id = tidegate::plan::RolloutId {
            namespace: ns.into(),
            name: name.into(),
        };
        self.state.statuses.read().await.get(&id).cloned()
    }

    /// Stop the daemon and wait for it to drain.
    pub async fn stop(mut self) -> (FakeMesh, FakeMetrics, FakeRepo, Recorder) {
        if let Some(s) = self.stop_tx.take() {
            let _ = s.send(());
        }
        if let Some(d) = self.daemon.take() {
            d.await.expect("the daemon drains without error");
        }
        (self.mesh, self.metrics, self.repo, self.recorder)
    }
}
