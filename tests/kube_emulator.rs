//! Conformance of the Kubernetes API emulator, driven through kube's real `Client`. Each test
//! names the Kubernetes API convention it follows (sig-architecture/api-conventions.md, "API
//! Concepts" in the Kubernetes reference docs).

mod common;

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery;
use serde_json::{Value, json};
use tidegate::lab::kube_emulator::{self, EmulatorConfig, EmulatorHandle};

async fn emulator() -> EmulatorHandle {
    common::init_tls();
    kube_emulator::start(EmulatorConfig {
        bookmark_interval: Duration::from_millis(100),
        namespaces: vec!["default".into(), "shop".into()],
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator starts")
}

fn vs_resource(version: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("networking.istio.io", version, "VirtualService"),
        "virtualservices",
    )
}

fn vs_api(emu: &EmulatorHandle, version: &str) -> Api<DynamicObject> {
    Api::namespaced_with(emu.client().expect("client"), "shop", &vs_resource(version))
}

fn vs(name: &str, weight: i64) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, "labels": {"app": name, "tier": "web"}},
        "spec": {"hosts": [name], "http": [{"route": [
            {"destination": {"host": name, "subset": "v1"}, "weight": 100 - weight},
            {"destination": {"host": name, "subset": "v2"}, "weight": weight}]}]}
    }))
    .expect("valid object")
}

fn api_status(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API Status error, got {other}"),
    }
}

fn rv(o: &DynamicObject) -> u64 {
    o.metadata
        .resource_version
        .as_deref()
        .and_then(|s| s.parse().ok())
        .expect("numeric resourceVersion")
}

/// API Concepts, "Discovery API": /apis lists groups with versions and a preferred version;
/// /apis/{group}/{version} lists resources with verbs.
#[tokio::test]
async fn discovery_serves_every_istio_version_and_the_core_kinds() {
    let emu = emulator().await;
    let client = emu.client().expect("client");
    let g = discovery::group(&client, "networking.istio.io")
        .await
        .expect("group");
    assert_eq!(
        g.versions().collect::<Vec<_>>(),
        vec!["v1", "v1beta1", "v1alpha3"]
    );
    assert_eq!(g.preferred_version(), Some("v1"));
    for kind in [
        "VirtualService",
        "DestinationRule",
        "Gateway",
        "ServiceEntry",
    ] {
        let (ar, caps) = g.recommended_kind(kind).expect(kind);
        assert_eq!(ar.version, "v1");
        assert!(caps.supports_operation(kube::discovery::verbs::PATCH));
        assert!(caps.supports_operation(kube::discovery::verbs::WATCH));
    }
    for (group, kind) in [
        ("security.istio.io", "PeerAuthentication"),
        ("coordination.k8s.io", "Lease"),
        ("events.k8s.io", "Event"),
    ] {
        let g = discovery::group(&client, group).await.expect(group);
        assert!(g.recommended_kind(kind).is_some(), "{kind}");
    }
    let core = discovery::group(&client, "").await.expect("core");
    assert!(core.recommended_kind("Namespace").is_some());
    let Err(err) = discovery::group(&client, "argoproj.io").await else {
        panic!("argoproj.io is not served");
    };
    assert!(err.to_string().contains("argoproj.io"), "{err}");
    emu.shutdown().await;
}

/// API conventions, "Metadata": the server sets uid, creationTimestamp, resourceVersion and
/// generation (1) on create; a second create of the same name is 409 AlreadyExists.
#[tokio::test]
async fn create_sets_server_metadata_and_refuses_duplicates() {
    let emu = emulator().await;
    let api = vs_api(&emu, "v1");
    let created = api
        .create(&PostParams::default(), &vs("orders", 0))
        .await
        .expect("create");
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(created.metadata.namespace.as_deref(), Some("shop"));
    let got = api.get("orders").await.expect("get");
    assert_eq!(
        got.metadata.resource_version,
        created.metadata.resource_version
    );
    let st = api_status(
        api.create(&PostParams::default(), &vs("orders", 0))
            .await
            .expect_err("dup"),
    );
    assert_eq!((st.code, st.reason.as_str()), (409, "AlreadyExists"));
    emu.shutdown().await;
}

/// API conventions, "Concurrency Control and Consistency": an update carrying a stale
/// resourceVersion is 409 Conflict; resourceVersion changes on every write; "generation" grows
/// only when the spec changes.
#[tokio::test]
async fn optimistic_concurrency_and_generation() {
    let emu = emulator().await;
    let api = vs_api(&emu, "v1");
    let v1 = api
        .create(&PostParams::default(), &vs("orders", 0))
        .await
        .expect("create");
    let mut edit = v1.clone();
    edit.data["spec"]["http"][0]["route"][1]["weight"] = json!(10);
    edit.data["spec"]["http"][0]["route"][0]["weight"] = json!(90);
    let v2 = api
        .replace("orders", &PostParams::default(), &edit)
        .await
        .expect("replace");
    assert!(rv(&v2) > rv(&v1));
    assert_eq!(v2.metadata.generation, Some(2));
    // Stale: still carries v1's resourceVersion.
    let st = api_status(
        api.replace("orders", &PostParams::default(), &edit)
            .await
            .expect_err("stale"),
    );
    assert_eq!((st.code, st.reason.as_str()), (409, "Conflict"));
    assert!(
        st.message.contains("the object has been modified"),
        "{}",
        st.message
    );
    // Metadata-only change: new resourceVersion, same generation.
    let mut labels = v2.clone();
    labels
        .metadata
        .labels
        .get_or_insert_default()
        .insert("release".into(), "x".into());
    let v3 = api
        .replace("orders", &PostParams::default(), &labels)
        .await
        .expect("labels");
    assert!(rv(&v3) > rv(&v2));
    assert_eq!(v3.metadata.generation, Some(2));
    // Update without a resourceVersion: 422 Invalid (custom resources need one).
    let mut unconditional = v3.clone();
    unconditional.metadata.resource_version = None;
    let st = api_status(
        api.replace("orders", &PostParams::default(), &unconditional)
            .await
            .expect_err("no rv"),
    );
    assert_eq!(st.code, 422);
    emu.shutdown().await;
}

/// RFC 6902 + API Concepts "Patch": a failed `test` operation rejects the whole patch (422) and
/// the object is unchanged; a patch that changes nothing does not bump resourceVersion.
#[tokio::test]
async fn json_patch_test_failures_are_422_and_no_ops_keep_the_resource_version() {
    let emu = emulator().await;
    let api = vs_api(&emu, "v1");
    let created = api
        .create(&PostParams::default(), &vs("orders", 0))
        .await
        .expect("create");
    let ok: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/spec/http/0/route/1/weight", "value": 0},
        {"op": "replace", "path": "/spec/http/0/route/1/weight", "value": 10},
        {"op": "replace", "path": "/spec/http/0/route/0/weight", "value": 90}
    ]))
    .expect("patch");
    let p1 = api
        .patch(
            "orders",
            &PatchParams::default(),
            &Patch::Json::<()>(ok.clone()),
        )
        .await
        .expect("patch");
    assert!(rv(&p1) > rv(&created));
    let st = api_status(
        api.patch("orders", &PatchParams::default(), &Patch::Json::<()>(ok))
            .await
            .expect_err("test fails"),
    );
    assert_eq!((st.code, st.reason.as_str()), (422, "Invalid"));
    let after = api.get("orders").await.expect("get");
    assert_eq!(
        after.metadata.resource_version,
        p1.metadata.resource_version
    );
    let noop: json_patch::Patch = serde_json::from_value(json!([
        {"op": "replace", "path": "/spec/http/0/route/1/weight", "value": 10}
    ]))
    .expect("patch");
    let same = api
        .patch("orders", &PatchParams::default(), &Patch::Json::<()>(noop))
        .await
        .expect("noop");
    assert_eq!(same.metadata.resource_version, p1.metadata.resource_version);
    emu.shutdown().await;
}

/// API Concepts "Patch": JSON merge patch (RFC 7386, null deletes); strategic merge patch is
/// not supported for custom resources (415 Unsupported Media Type) but is for built-in kinds;
/// server-side apply creates then merges; a patch that sets a stale resourceVersion is 409.
#[tokio::test]
async fn merge_strategic_and_apply_patches() {
    let emu = emulator().await;
    let api = vs_api(&emu, "v1");
    api.create(&PostParams::default(), &vs("orders", 0))
        .await
        .expect("create");
    let merged = api
        .patch(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"tier": null, "owner": "me"}}})),
        )
        .await
        .expect("merge");
    let labels = merged.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("owner").map(String::as_str), Some("me"));
    assert!(!labels.contains_key("tier"));
    let st = api_status(
        api.patch(
            "orders",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"hosts": ["x"]}})),
        )
        .await
        .expect_err("415"),
    );
    assert_eq!((st.code, st.reason.as_str()), (415, "UnsupportedMediaType"));
    let ns_api: Api<k8s_openapi::api::core::v1::Namespace> =
        Api::all(emu.client().expect("client"));
    let ns = ns_api
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Strategic(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .expect("strategic on a built-in kind");
    assert_eq!(
        ns.metadata
            .labels
            .unwrap_or_default()
            .get("a")
            .map(String::as_str),
        Some("b")
    );
    let stale = api
        .patch(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"resourceVersion": "1"}, "spec": {"hosts": ["y"]}})),
        )
        .await
        .expect_err("stale precondition");
    assert_eq!(api_status(stale).code, 409);
    let applied = api
        .patch(
            "cart",
            &PatchParams::apply("tidegate-test"),
            &Patch::Apply(
                json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                                 "metadata": {"name": "cart"}, "spec": {"hosts": ["cart"]}}),
            ),
        )
        .await
        .expect("apply creates");
    assert_eq!(applied.metadata.generation, Some(1));
    let applied = api
        .patch(
            "cart",
            &PatchParams::apply("tidegate-test"),
            &Patch::Apply(
                json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                                 "metadata": {"name": "cart"}, "spec": {"gateways": ["mesh"]}}),
            ),
        )
        .await
        .expect("apply merges");
    assert_eq!(applied.data["spec"]["hosts"], json!(["cart"]));
    assert_eq!(applied.data["spec"]["gateways"], json!(["mesh"]));
    emu.shutdown().await;
}

/// API Concepts "List" and label selectors (equality- and set-based); objects are served at
/// every version of their kind ("API versioning": one stored object, many served versions).
#[tokio::test]
async fn list_with_selectors_and_serve_every_version() {
    let emu = emulator().await;
    let api = vs_api(&emu, "v1");
    for n in ["orders", "cart", "search"] {
        api.create(&PostParams::default(), &vs(n, 0))
            .await
            .expect("create");
    }
    let picked = api
        .list(&ListParams::default().labels("app in (orders,cart)"))
        .await
        .expect("list");
    let mut names: Vec<String> = picked
        .items
        .iter()
        .filter_map(|o| o.metadata.name.clone())
        .collect();
    names.sort();
    assert_eq!(names, vec!["cart", "orders"]);
    assert!(picked.metadata.resource_version.is_some());
    let none = api
        .list(&ListParams::default().labels("tier!=web"))
        .await
        .expect("list");
    assert!(none.items.is_empty());
    let old = vs_api(&emu, "v1alpha3")
        .get("orders")
        .await
        .expect("v1alpha3");
    assert_eq!(
        old.types.as_ref().map(|t| t.api_version.as_str()),
        Some("networking.istio.io/v1alpha3")
    );
    let all: Api<DynamicObject> =
        Api::all_with(emu.client().expect("client"), &vs_resource("v1beta1"));
    assert_eq!(
        all.list(&ListParams::default())
            .await
            .expect("all")
            .items
            .len(),
        3
    );
    emu.shutdown().await;
}

/// API conventions "Response Status Kind": failures carry a `Status` body with code, reason
/// and details; missing objects and namespaces are 404 NotFound.
#[tokio::test]
async fn delete_and_not_found_status_bodies() {
    let emu = emulator().await;
    let api = vs_api(&emu, "v1");
    api.create(&PostParams::default(), &vs("orders", 0))
        .await
        .expect("create");
    api.delete("orders", &DeleteParams::default())
        .await
        .expect("delete");
    let st = api_status(api.get("orders").await.expect_err("gone"));
    assert_eq!((st.code, st.reason.as_str()), (404, "NotFound"));
    assert_eq!(st.details.as_ref().map(|d| d.name.as_str()), Some("orders"));
    assert!(
        st.message
            .contains("virtualservices.networking.istio.io \"orders\" not found"),
        "{}",
        st.message
    );
    let missing: Api<DynamicObject> =
        Api::namespaced_with(emu.client().expect("client"), "nowhere", &vs_resource("v1"));
    let st = api_status(
        missing
            .create(&PostParams::default(), &vs("x", 0))
            .await
            .expect_err("no ns"),
    );
    assert_eq!(st.code, 404);
    assert!(st.message.contains("namespaces \"nowhere\" not found"));
    emu.shutdown().await;
}

/// API Concepts "Efficient detection of changes" and "Watch bookmarks": a watch from a
/// resourceVersion streams later changes in order, sends BOOKMARKs when asked, and answers
/// 410 Gone (an ERROR event) when that version has been compacted away.
#[tokio::test]
async fn watch_from_a_resource_version_with_bookmarks_and_410() {
    let emu = emulator().await;
    let api = vs_api(&emu, "v1");
    let created = api
        .create(&PostParams::default(), &vs("orders", 0))
        .await
        .expect("create");
    let start = created.metadata.resource_version.clone().expect("rv");
    let wp = WatchParams::default().timeout(5);
    let mut stream = api.watch(&wp, &start).await.expect("watch").boxed();
    let writer = vs_api(&emu, "v1");
    writer
        .patch(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"hosts": ["a"]}})),
        )
        .await
        .expect("patch");
    writer
        .delete("orders", &DeleteParams::default())
        .await
        .expect("delete");
    let mut seen = Vec::new();
    let mut bookmark = false;
    while let Some(ev) = stream.try_next().await.expect("event") {
        match ev {
            WatchEvent::Modified(o) => seen.push(("MODIFIED", o.data["spec"]["hosts"][0].clone())),
            WatchEvent::Deleted(_) => seen.push(("DELETED", Value::Null)),
            WatchEvent::Bookmark(_) => {
                bookmark = true;
                if seen.len() == 2 {
                    break;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        seen,
        vec![("MODIFIED", json!("a")), ("DELETED", Value::Null)]
    );
    assert!(bookmark, "bookmarks were allowed");

    emu.with_store(|s| s.compact());
    let mut stream = api.watch(&wp, &start).await.expect("watch").boxed();
    match stream.try_next().await.expect("event") {
        Some(WatchEvent::Error(st)) => assert_eq!(st.code, 410),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
    emu.shutdown().await;
}

/// Watch without a resourceVersion: the current objects first, as ADDED events.
#[tokio::test]
async fn watch_from_now_starts_with_the_current_state() {
    let emu = emulator().await;
    let api = vs_api(&emu, "v1");
    api.create(&PostParams::default(), &vs("orders", 0))
        .await
        .expect("create");
    let mut stream = api
        .watch(&WatchParams::default().timeout(2), "0")
        .await
        .expect("watch")
        .boxed();
    match stream.try_next().await.expect("event") {
        Some(WatchEvent::Added(o)) => assert_eq!(o.metadata.name.as_deref(), Some("orders")),
        other => panic!("expected ADDED, got {other:?}"),
    }
    emu.shutdown().await;
}

/// Fault hooks: injected 5xx/409 answers carry Status bodies; latency delays answers.
#[tokio::test]
async fn fault_hooks_answer_with_status_bodies() {
    let emu = emulator().await;
    let api = vs_api(&emu, "v1");
    api.create(&PostParams::default(), &vs("orders", 0))
        .await
        .expect("create");
    // kube's own retry layer retries 503s by default; switch it off to see the raw answer.
    let mut cfg = emu.kube_config().expect("config");
    cfg.default_retry = false;
    let raw: Api<DynamicObject> = Api::namespaced_with(
        kube::Client::try_from(cfg).expect("client"),
        "shop",
        &vs_resource("v1"),
    );
    emu.faults().fail_next_requests(503, 1);
    let st = api_status(raw.get("orders").await.expect_err("503"));
    assert_eq!((st.code, st.reason.as_str()), (503, "ServiceUnavailable"));
    api.get("orders").await.expect("recovered");
    emu.faults().fail_next_writes(409, 1);
    let st = api_status(
        api.patch(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"hosts": ["b"]}})),
        )
        .await
        .expect_err("409"),
    );
    assert_eq!(st.code, 409);
    let log = emu.faults().requests();
    assert!(log.iter().any(|r| r.method == "PATCH" && r.status == 409));
    emu.shutdown().await;
}

/// Loading manifests: every Istio object of the shared fixtures loads (multi-document YAML and
/// JSON); documents of kinds the emulator does not serve are reported, not dropped silently.
#[tokio::test]
async fn loads_the_shared_istio_fixtures() {
    let emu = emulator().await;
    let dir = common::fixture("istio/manifests");
    let report = emu.load_paths(&[dir], "default").expect("fixtures load");
    let vss = report
        .loaded
        .iter()
        .filter(|(k, _, _)| k == "VirtualService")
        .count();
    let drs = report
        .loaded
        .iter()
        .filter(|(k, _, _)| k == "DestinationRule")
        .count();
    assert!(vss >= 25, "{vss} VirtualServices");
    assert!(drs >= 3, "{drs} DestinationRules");
    assert!(
        report.skipped.iter().any(|(_, _, k)| k == "Rollout"),
        "{:?}",
        report.skipped
    );
    let api: Api<DynamicObject> = Api::all_with(emu.client().expect("client"), &vs_resource("v1"));
    let listed = api.list(&ListParams::default()).await.expect("list");
    assert!(listed.items.len() <= vss && !listed.items.is_empty());
    emu.shutdown().await;
}

/// "Validation" and "Pruning versus preserving unknown fields" (CustomResourceDefinition docs):
/// with Istio's CRDs loaded, a wrongly typed field is 422 Invalid; unknown fields are pruned;
/// every VirtualService and DestinationRule of the shared fixtures is accepted.
#[tokio::test]
async fn validates_custom_resources_against_the_istio_crd_schemas() {
    common::init_tls();
    let emu = kube_emulator::start(EmulatorConfig {
        crd_paths: vec![common::fixture("istio/crds/crd-all.gen.yaml")],
        namespaces: vec!["default".into(), "shop".into()],
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator starts");
    let docs =
        tidegate::mesh::manifests::load(&[common::fixture("istio/manifests")]).expect("parse");
    let mut accepted = 0;
    let mut rejected = Vec::new();
    for d in docs {
        let served = emu.with_store(|s| s.def_for(d.api_version(), d.kind()).is_some());
        if !served {
            continue;
        }
        let name = d.name().to_string();
        match emu.apply_manifest(d.value, "default") {
            Ok(_) => accepted += 1,
            Err(e) => rejected.push((name, e.message)),
        }
    }
    assert!(accepted >= 40, "{accepted}");
    // Istio's analyzer test data has a route destination `{}` on purpose ("test destination null").
    assert_eq!(rejected.len(), 1, "{rejected:#?}");
    assert_eq!(rejected[0].0, "reviews-bogushost");
    assert!(
        rejected[0]
            .1
            .contains("spec.http[0].route[0].destination: Required value"),
        "{rejected:?}"
    );

    let api = vs_api(&emu, "v1");
    let mut bad = vs("orders", 0);
    bad.data["spec"]["http"][0]["route"][0]["weight"] = json!("ninety");
    let st = api_status(
        api.create(&PostParams::default(), &bad)
            .await
            .expect_err("invalid"),
    );
    assert_eq!((st.code, st.reason.as_str()), (422, "Invalid"));
    assert!(
        st.message.contains("spec.http[0].route[0].weight"),
        "{}",
        st.message
    );
    assert!(
        st.message.contains("must be of type integer"),
        "{}",
        st.message
    );

    let mut extra = vs("orders", 0);
    extra.data["spec"]["http"][0]["bogusField"] = json!(true);
    let created = api
        .create(&PostParams::default(), &extra)
        .await
        .expect("pruned, accepted");
    assert!(created.data["spec"]["http"][0].get("bogusField").is_none());
    assert_eq!(created.data["spec"]["http"][0]["route"][0]["weight"], 100);

    let patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "replace", "path": "/spec/http/0/route/0/destination", "value": {"subset": "v1"}}
    ]))
    .expect("patch");
    let st = api_status(
        api.patch("orders", &PatchParams::default(), &Patch::Json::<()>(patch))
            .await
            .expect_err("host required"),
    );
    assert!(
        st.message
            .contains("spec.http[0].route[0].destination.host: Required value"),
        "{}",
        st.message
    );
    emu.shutdown().await;
}

/// An ordinary kubeconfig file naming the emulator works with kube's config loading.
#[tokio::test]
async fn a_kubeconfig_file_reaches_the_emulator() {
    let emu = emulator().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kubeconfig");
    std::fs::write(&path, emu.kubeconfig_yaml()).expect("write");
    let kc = kube::config::Kubeconfig::read_from(&path).expect("kubeconfig parses");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .expect("config");
    let client = kube::Client::try_from(cfg).expect("client");
    let ns: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client);
    let names: Vec<String> = ns
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert_eq!(names, vec!["default", "shop"]);
    emu.shutdown().await;
}

/// Leases (coordination.k8s.io/v1) behave like any object under optimistic concurrency: the
/// basis of leader election ("Concurrency Control and Consistency").
#[tokio::test]
async fn leases_support_compare_and_swap() {
    use k8s_openapi::api::coordination::v1::Lease;
    let emu = emulator().await;
    let leases: Api<Lease> = Api::namespaced(emu.client().expect("client"), "default");
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "tidegate"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}
    }))
    .expect("lease");
    let first = leases
        .create(&PostParams::default(), &lease)
        .await
        .expect("create");
    let mut take = first.clone();
    take.spec.get_or_insert_default().holder_identity = Some("b".into());
    leases
        .replace("tidegate", &PostParams::default(), &take)
        .await
        .expect("b takes it");
    let mut late = first.clone();
    late.spec.get_or_insert_default().holder_identity = Some("c".into());
    let st = api_status(
        leases
            .replace("tidegate", &PostParams::default(), &late)
            .await
            .expect_err("stale"),
    );
    assert_eq!(st.code, 409);
    let now = leases.get("tidegate").await.expect("get");
    assert_eq!(
        now.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("b")
    );
    emu.shutdown().await;
}

/// API Concepts "Streaming lists" (sendInitialEvents) and label-selected watches: the current
/// objects, then a bookmark annotated `k8s.io/initial-events-end`, then only matching changes.
#[tokio::test]
async fn watch_with_initial_events_and_a_label_selector() {
    let emu = emulator().await;
    let api = vs_api(&emu, "v1");
    api.create(&PostParams::default(), &vs("orders", 0))
        .await
        .expect("create");
    api.create(&PostParams::default(), &vs("cart", 0))
        .await
        .expect("create");
    let wp = WatchParams::default()
        .labels("app=orders")
        .initial_events()
        .timeout(5);
    let mut stream = api.watch(&wp, "").await.expect("watch").boxed();
    match stream.try_next().await.expect("event") {
        Some(WatchEvent::Added(o)) => assert_eq!(o.metadata.name.as_deref(), Some("orders")),
        other => panic!("expected ADDED orders, got {other:?}"),
    }
    match stream.try_next().await.expect("event") {
        Some(WatchEvent::Bookmark(b)) => {
            assert_eq!(
                b.metadata
                    .annotations
                    .get("k8s.io/initial-events-end")
                    .map(String::as_str),
                Some("true")
            );
        }
        other => panic!("expected the initial-events-end bookmark, got {other:?}"),
    }
    let writer = vs_api(&emu, "v1");
    writer
        .patch(
            "cart",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"hosts": ["c"]}})),
        )
        .await
        .expect("cart");
    writer
        .patch(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"hosts": ["o"]}})),
        )
        .await
        .expect("orders");
    loop {
        match stream.try_next().await.expect("event") {
            Some(WatchEvent::Modified(o)) => {
                assert_eq!(
                    o.metadata.name.as_deref(),
                    Some("orders"),
                    "cart is filtered out"
                );
                break;
            }
            Some(WatchEvent::Bookmark(_)) => continue,
            other => panic!("expected MODIFIED orders, got {other:?}"),
        }
    }
    let dry = api
        .patch(
            "orders",
            &PatchParams::default().dry_run(),
            &Patch::Merge(json!({"spec": {"hosts": ["x"]}})),
        )
        .await
        .expect_err("dry run refused");
    assert_eq!(api_status(dry).code, 400);
    emu.shutdown().await;
}
