//! The watched cache of the mesh objects rollouts depend on: the VirtualServices,
//! DestinationRules and PeerAuthentications of every namespace that has plans, kept current by
//! kube's watcher (list, then watch; a fresh list after `410 Gone`). Reads of a synced namespace
//! cost no API request; writes put the object the API server returned into the cache at once, so
//! tidegate never reads its own write as stale. Changes made by anyone else are collected as
//! "dirty" keys that wake the rollouts concerned.
//!
//! Objects are kept as compact JSON text, parsed when read: a `serde_json::Value` of even a small
//! VirtualService is about 4 KB of map nodes, its text a tenth of that, and reading one back
//! (every rollout, every round) costs a few microseconds. What no reader needs is dropped on
//! entry: `metadata.managedFields` and the value of kubectl's
//! `last-applied-configuration` annotation (the key stays, so the annotations keep their count),
//! each often larger than the rest of the object in a real cluster.
//!
//! The event handling is plain data ([`CacheEvent`]) so it is tested without a cluster; the
//! watch tasks that feed it live in [`super::router`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::Notify;

use crate::mesh::{MeshKind, ObjectKey};

/// What a watch reports, reduced to what the cache needs.
#[derive(Debug, Clone, PartialEq)]
pub enum CacheEvent {
    /// A (re)list starts: the objects that follow replace the kind's objects in the namespace.
    Init,
    InitApply(Value),
    /// The (re)list is complete: the namespace is synced for the kind.
    InitDone,
    /// An object was added or modified.
    Apply(Value),
    Delete(Value),
    /// The cluster does not serve the kind (e.g. no PeerAuthentication CRD): synced, empty.
    NotServed,
}

/// The annotation `kubectl apply` keeps a whole copy of the object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// One cached object: its resourceVersion and its JSON text (keys sorted, so equal objects have
/// equal text).
#[derive(Debug, Clone, PartialEq)]
struct Stored {
    rv: Option<Box<str>>,
    json: Box<str>,
}

impl Stored {
    /// The object without what no reader needs, as text.
    fn new(mut obj: Value) -> Stored {
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("managedFields");
            if let Some(applied) = meta
                .get_mut("annotations")
                .and_then(|a| a.get_mut(LAST_APPLIED))
            {
                *applied = Value::String(String::new());
            }
        }
        Stored {
            rv: rv_of(&obj).map(Box::from),
            json: obj.to_string().into_boxed_str(),
        }
    }

    /// The object (text written by `Value::to_string` always parses; `None` if it did not).
    fn value(&self) -> Option<Value> {
        serde_json::from_str(&self.json).ok()
    }
}

#[derive(Default)]
struct State {
    objects: BTreeMap<ObjectKey, Stored>,
    synced: BTreeSet<(MeshKind, String)>,
    relisting: BTreeMap<(MeshKind, String), BTreeMap<String, Value>>,
    dirty: BTreeSet<ObjectKey>,
    /// The resourceVersion of tidegate's own latest write of each object.
    own: BTreeMap<ObjectKey, String>,
}

/// The cache (shared by the router, its watch tasks and the daemon).
#[derive(Default)]
pub struct MeshCache {
    state: Mutex<State>,
    changed: Notify,
}

fn name_of(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/name").and_then(Value::as_str)
}

fn rv_of(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
}

/// Whether `new` is at least as recent as `old`. resourceVersions are opaque by contract; the
/// API server (etcd) and the emulator issue increasing integers, so they are compared as such
/// when both parse, and a newer event otherwise always wins.
fn not_older(new: &Stored, old: &Stored) -> bool {
    let number = |s: &Stored| s.rv.as_deref().and_then(|r| r.parse::<u64>().ok());
    match (number(new), number(old)) {
        (Some(n), Some(o)) => n >= o,
        _ => true,
    }
}

impl MeshCache {
    pub fn new() -> MeshCache {
        MeshCache::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `kind` objects of `namespace` are synced (reads need no API request).
    pub fn is_synced(&self, kind: MeshKind, namespace: &str) -> bool {
        self.lock().synced.contains(&(kind, namespace.to_owned()))
    }

    /// One object, when its namespace is synced for its kind: `Some(None)` means "known not to
    /// exist"; `None` means the cache cannot tell (ask the API server).
    pub fn get(&self, key: &ObjectKey) -> Option<Option<Value>> {
        let stored = {
            let st = self.lock();
            if !st.synced.contains(&(key.kind, key.namespace.clone())) {
                return None;
            }
            match st.objects.get(key) {
                Some(s) => s.json.clone(),
                None => return Some(None),
            }
        };
        // Parsed outside the lock; text the cache wrote always parses.
        serde_json::from_str(&stored).ok().map(Some)
    }

    /// `f` of one object, when its namespace is synced for its kind: `Some(None)` means "known
    /// not to exist"; `None` means the cache cannot tell.
    pub fn with<R>(&self, key: &ObjectKey, f: impl FnOnce(&Value) -> R) -> Option<Option<R>> {
        match self.get(key)? {
            Some(obj) => Some(Some(f(&obj))),
            None => Some(None),
        }
    }

    /// Every `kind` object of `namespace`, when synced.
    pub fn list(&self, kind: MeshKind, namespace: &str) -> Option<Vec<Value>> {
        let st = self.lock();
        if !st.synced.contains(&(kind, namespace.to_owned())) {
            return None;
        }
        let from = ObjectKey {
            kind,
            namespace: namespace.to_owned(),
            name: String::new(),
        };
        st.objects
            .range(from..)
            .take_while(|(k, _)| k.kind == kind && k.namespace == namespace)
            .map(|(_, v)| v.value())
            .collect()
    }

    /// Put the object a write of tidegate's returned into the cache; its own watch event will
    /// not count as a change.
    pub fn record_own(&self, kind: MeshKind, namespace: &str, obj: &Value) {
        let Some(name) = name_of(obj) else { return };
        let key = ObjectKey {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        let stored = Stored::new(obj.clone());
        let mut st = self.lock();
        if let Some(rv) = rv_of(obj) {
            // The watch may have delivered this very write first and called it news: it is not
            // (the rollout that wrote it reads it back right away).
            if st.objects.get(&key).and_then(|s| s.rv.as_deref()) == Some(rv) {
                st.dirty.remove(&key);
            }
            st.own.insert(key.clone(), rv.to_owned());
        }
        let keep_old = st
            .objects
            .get(&key)
            .is_some_and(|old| !not_older(&stored, old));
        if !keep_old {
            st.objects.insert(key, stored);
        }
    }

    /// Fold one watch event of `kind` in `namespace` into the cache.
    pub fn apply(&self, kind: MeshKind, namespace: &str, event: CacheEvent) {
        let mut st = self.lock();
        let slot = (kind, namespace.to_owned());
        let key = |obj: &Value| {
            name_of(obj).map(|n| ObjectKey {
                kind,
                namespace: namespace.to_owned(),
                name: n.to_owned(),
            })
        };
        let mut changed = false;
        match event {
            CacheEvent::Init => {
                st.relisting.insert(slot, BTreeMap::new());
            }
            CacheEvent::InitApply(obj) => {
                if let Some(name) = name_of(&obj).map(str::to_owned) {
                    st.relisting.entry(slot).or_default().insert(name, obj);
                }
            }
            CacheEvent::InitDone => {
                let fresh = st.relisting.remove(&slot).unwrap_or_default();
                changed = replace_all(&mut st, kind, namespace, fresh);
                st.synced.insert(slot);
            }
            CacheEvent::NotServed => {
                changed = replace_all(&mut st, kind, namespace, BTreeMap::new());
                st.synced.insert(slot);
            }
            CacheEvent::Apply(obj) => {
                if let Some(k) = key(&obj) {
                    changed = upsert(&mut st, k, obj);
                }
            }
            CacheEvent::Delete(obj) => {
                if let Some(k) = key(&obj) {
                    st.own.remove(&k);
                    changed = st.objects.remove(&k).is_some();
                    if changed {
                        st.dirty.insert(k);
                    }
                }
            }
        }
        drop(st);
        if changed {
            self.changed.notify_one();
        }
    }

    /// Stop caching `namespace` (its plans are gone).
    pub fn forget(&self, namespace: &str) {
        let mut st = self.lock();
        st.objects.retain(|k, _| k.namespace != namespace);
        st.own.retain(|k, _| k.namespace != namespace);
        st.synced.retain(|(_, ns)| ns != namespace);
        st.relisting.retain(|(_, ns), _| ns != namespace);
        st.dirty.retain(|k| k.namespace != namespace);
    }

    /// The keys changed by others since the last call (empty when none).
    pub fn take_changes(&self) -> Vec<ObjectKey> {
        std::mem::take(&mut self.lock().dirty).into_iter().collect()
    }

    /// Wait for changes by others, then take them.
    pub async fn changes(&self) -> Vec<ObjectKey> {
        loop {
            let keys = self.take_changes();
            if !keys.is_empty() {
                return keys;
            }
            self.changed.notified().await;
        }
    }
}

/// Insert or update one object; true when it is a change by someone else.
fn upsert(st: &mut State, key: ObjectKey, obj: Value) -> bool {
    let obj = Stored::new(obj);
    if let Some(old) = st.objects.get(&key)
        && !not_older(&obj, old)
    {
        return false;
    }
    let own = st
        .own
        .get(&key)
        .is_some_and(|rv| obj.rv.as_deref() == Some(rv.as_str()));
    let same = st.objects.get(&key) == Some(&obj);
    st.objects.insert(key.clone(), obj);
    let changed = !own && !same;
    if changed {
        st.dirty.insert(key);
    }
    changed
}

/// Replace every `kind` object of `namespace` with `fresh`; true when anything differed.
fn replace_all(
    st: &mut State,
    kind: MeshKind,
    namespace: &str,
    fresh: BTreeMap<String, Value>,
) -> bool {
    let old: Vec<ObjectKey> = st
        .objects
        .keys()
        .filter(|k| k.kind == kind && k.namespace == namespace)
        .cloned()
        .collect();
    let mut changed = false;
    for k in old {
        if !fresh.contains_key(&k.name) {
            st.objects.remove(&k);
            st.dirty.insert(k);
            changed = true;
        }
    }
    for (name, obj) in fresh {
        let k = ObjectKey {
            kind,
            namespace: namespace.to_owned(),
            name,
        };
        changed |= upsert(st, k, obj);
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vs(name: &str, rv: u64, weight: u64) -> Value {
        json!({"metadata": {"name": name, "namespace": "shop", "resourceVersion": rv.to_string()},
               "spec": {"http": [{"route": [{"weight": weight}]}]}})
    }

    fn key(name: &str) -> ObjectKey {
        ObjectKey {
            kind: MeshKind::VirtualService,
            namespace: "shop".into(),
            name: name.into(),
        }
    }

    fn synced(c: &MeshCache, objs: Vec<Value>) {
        c.apply(MeshKind::VirtualService, "shop", CacheEvent::Init);
        for o in objs {
            c.apply(MeshKind::VirtualService, "shop", CacheEvent::InitApply(o));
        }
        c.apply(MeshKind::VirtualService, "shop", CacheEvent::InitDone);
    }

    #[test]
    fn nothing_is_known_before_the_list_completes() {
        let c = MeshCache::new();
        assert_eq!(c.get(&key("a")), None);
        assert_eq!(c.with(&key("a"), |_| ()), None);
        c.apply(MeshKind::VirtualService, "shop", CacheEvent::Init);
        c.apply(
            MeshKind::VirtualService,
            "shop",
            CacheEvent::InitApply(vs("a", 1, 90)),
        );
        assert_eq!(c.get(&key("a")), None, "a list in progress is not served");
        c.apply(MeshKind::VirtualService, "shop", CacheEvent::InitDone);
        assert_eq!(c.get(&key("a")), Some(Some(vs("a", 1, 90))));
        assert_eq!(
            c.get(&key("b")),
            Some(None),
            "synced: b is known not to exist"
        );
        let weight = |v: &Value| v.pointer("/spec/http/0/route/0/weight").cloned();
        assert_eq!(c.with(&key("a"), weight), Some(Some(Some(json!(90)))));
        assert_eq!(c.with(&key("b"), weight), Some(None));
        assert_eq!(
            c.list(MeshKind::VirtualService, "shop").map(|l| l.len()),
            Some(1)
        );
        assert_eq!(c.list(MeshKind::DestinationRule, "shop"), None);
    }

    #[test]
    fn edits_by_others_are_changes_and_own_writes_are_not() {
        let c = MeshCache::new();
        synced(&c, vec![vs("a", 1, 90)]);
        c.take_changes();
        c.record_own(MeshKind::VirtualService, "shop", &vs("a", 2, 80));
        assert_eq!(
            c.get(&key("a")),
            Some(Some(vs("a", 2, 80))),
            "own write visible at once"
        );
        c.apply(
            MeshKind::VirtualService,
            "shop",
            CacheEvent::Apply(vs("a", 2, 80)),
        );
        assert!(c.take_changes().is_empty(), "the echo of our own write");
        c.apply(
            MeshKind::VirtualService,
            "shop",
            CacheEvent::Apply(vs("a", 3, 50)),
        );
        assert_eq!(c.take_changes(), vec![key("a")]);
        assert!(c.take_changes().is_empty());
        // The watch may deliver our write before the write's answer is recorded.
        c.apply(
            MeshKind::VirtualService,
            "shop",
            CacheEvent::Apply(vs("a", 4, 40)),
        );
        c.record_own(MeshKind::VirtualService, "shop", &vs("a", 4, 40));
        assert!(
            c.take_changes().is_empty(),
            "our write, seen first by the watch"
        );
    }

    #[test]
    fn an_older_event_never_replaces_a_newer_object() {
        let c = MeshCache::new();
        synced(&c, vec![vs("a", 5, 90)]);
        c.take_changes();
        c.apply(
            MeshKind::VirtualService,
            "shop",
            CacheEvent::Apply(vs("a", 4, 10)),
        );
        assert_eq!(c.get(&key("a")), Some(Some(vs("a", 5, 90))));
        assert!(c.take_changes().is_empty());
    }

    #[test]
    fn a_relist_after_gone_replaces_and_reports_what_differs() {
        let c = MeshCache::new();
        synced(&c, vec![vs("a", 1, 90), vs("b", 1, 90)]);
        c.take_changes();
        // After 410 Gone the watcher lists again: b was deleted meanwhile, a unchanged, c new.
        synced(&c, vec![vs("a", 1, 90), vs("c", 7, 100)]);
        let mut changes = c.take_changes();
        changes.sort();
        assert_eq!(changes, vec![key("b"), key("c")]);
        assert_eq!(c.get(&key("b")), Some(None));
    }

    #[test]
    fn a_kind_the_cluster_does_not_serve_is_synced_and_empty() {
        let c = MeshCache::new();
        c.apply(MeshKind::PeerAuthentication, "shop", CacheEvent::NotServed);
        assert_eq!(c.list(MeshKind::PeerAuthentication, "shop"), Some(vec![]));
        c.forget("shop");
        assert_eq!(c.list(MeshKind::PeerAuthentication, "shop"), None);
    }

    #[test]
    fn what_no_reader_needs_is_not_kept() {
        let c = MeshCache::new();
        let mut big = vs("a", 1, 90);
        big["metadata"]["managedFields"] =
            json!([{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]);
        big["metadata"]["annotations"] = json!({
            LAST_APPLIED: "{\"apiVersion\":\"networking.istio.io/v1\"}",
            "argocd.argoproj.io/tracking-id": "shop:networking.istio.io/VirtualService:shop/a",
        });
        synced(&c, vec![big]);
        let mut expected = vs("a", 1, 90);
        expected["metadata"]["annotations"] = json!({
            LAST_APPLIED: "",
            "argocd.argoproj.io/tracking-id": "shop:networking.istio.io/VirtualService:shop/a",
        });
        assert_eq!(c.get(&key("a")), Some(Some(expected.clone())));
        assert_eq!(
            c.list(MeshKind::VirtualService, "shop"),
            Some(vec![expected])
        );
        // The same object with other managedFields is no change.
        c.take_changes();
        let mut again = vs("a", 1, 90);
        again["metadata"]["managedFields"] = json!([{"manager": "istioctl"}]);
        again["metadata"]["annotations"] = json!({
            LAST_APPLIED: "{}",
            "argocd.argoproj.io/tracking-id": "shop:networking.istio.io/VirtualService:shop/a",
        });
        c.apply(MeshKind::VirtualService, "shop", CacheEvent::Apply(again));
        assert!(c.take_changes().is_empty());
    }

    #[tokio::test]
    async fn changes_wait_for_an_edit() {
        let c = std::sync::Arc::new(MeshCache::new());
        synced(&c, vec![vs("a", 1, 90)]);
        c.take_changes();
        let waiter = tokio::spawn({
            let c = c.clone();
            async move { c.changes().await }
        });
        tokio::task::yield_now().await;
        c.apply(
            MeshKind::VirtualService,
            "shop",
            CacheEvent::Delete(vs("a", 2, 90)),
        );
        assert_eq!(waiter.await.expect("join"), vec![key("a")]);
    }
}
