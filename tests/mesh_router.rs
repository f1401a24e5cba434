//! The Istio router against the Kubernetes API emulator, through kube's real `Client`:
//! version discovery, guarded patches, concurrent edits, retries, clear.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use tidegate::lab::kube_emulator::{self, EmulatorConfig, EmulatorHandle, Store};
use tidegate::mesh::istio::router::{IstioRouter, RetryPolicy, RouterError};
use tidegate::mesh::manifests;
use tidegate::mesh::{Target, TrafficRouter};
use tidegate::plan::{HeaderRoute, RolloutId, StringMatch};
use tidegate::rollout::{ReadBack, RouteState};

fn target() -> Target {
    Target {
        rollout: RolloutId {
            namespace: "shop".into(),
            name: "orders".into(),
        },
        service: "orders".into(),
        virtual_service: "orders".into(),
        destination_rule: Some("orders".into()),
        routes: vec![],
        stable: "v1".into(),
        canary: "v2".into(),
        split: tidegate::plan::Split::Subset,
    }
}

fn orders_vs(version: &str) -> Value {
    json!({
        "apiVersion": format!("networking.istio.io/{version}"),
        "kind": "VirtualService",
        "metadata": {"name": "orders", "namespace": "shop", "labels": {"team": "checkout"}},
        "spec": {
            "hosts": ["orders"],
            "http": [
                {"name": "admin", "match": [{"uri": {"prefix": "/admin"}}],
                 "route": [{"destination": {"host": "admin"}}]},
                {"name": "primary", "timeout": "5s",
                 "route": [{"destination": {"host": "orders", "subset": "v1", "port": {"number": 8080}}}]}
            ],
            "tcp": [{"route": [{"destination": {"host": "orders-db"}}]}]
        }
    })
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
    }
}

async fn emulator(versions: &[&str]) -> EmulatorHandle {
    common::init_tls();
    let cfg = EmulatorConfig {
        istio_versions: versions.iter().map(|v| v.to_string()).collect(),
        ..EmulatorConfig::default()
    };
    kube_emulator::start(cfg).await.expect("emulator starts")
}

fn router(emu: &EmulatorHandle) -> IstioRouter {
    IstioRouter::new(emu.client().expect("client"), fast_retry())
}

fn stored_vs(emu: &EmulatorHandle) -> Value {
    ["v1", "v1alpha3"]
        .iter()
        .find_map(|v| {
            emu.get(
                &format!("networking.istio.io/{v}"),
                "VirtualService",
                Some("shop"),
                "orders",
            )
        })
        .expect("stored VirtualService")
}

fn canary_weights_ever(emu: &EmulatorHandle) -> Vec<i64> {
    ["v1", "v1alpha3"]
        .iter()
        .map(|v| {
            emu.history(
                &format!("networking.istio.io/{v}"),
                "VirtualService",
                Some("shop"),
                "orders",
            )
        })
        .find(|h| !h.is_empty())
        .unwrap_or_default()
        .iter()
        .flat_map(|ev| {
            ev.object
                .pointer("/spec/http")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .flat_map(|r| {
            r.get("route")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .filter(|d| d.pointer("/destination/subset") == Some(&json!("v2")))
        .filter_map(|d| d.get("weight").and_then(Value::as_i64))
        .collect()
}

#[tokio::test]
async fn discovers_whichever_istio_version_the_cluster_serves() {
    for versions in [
        vec!["v1", "v1beta1", "v1alpha3"],
        vec!["v1beta1", "v1alpha3"],
        vec!["v1alpha3"],
    ] {
        let emu = emulator(&versions).await;
        emu.apply_manifest(orders_vs(versions[versions.len() - 1]), "shop")
            .expect("seed");
        let r = router(&emu);
        let ar = r.virtual_service_resource().await.expect("discovered");
        assert_eq!(ar.version, versions[0], "preferred version of {versions:?}");
        let rep = r
            .set_route(
                &target(),
                &RouteState {
                    canary_weight: 10,
                    ..Default::default()
                },
            )
            .await
            .expect("set");
        assert!(rep.patched);
        assert_eq!(rep.read_back, ReadBack::Verified);
        let patches: Vec<_> = emu
            .faults()
            .requests()
            .into_iter()
            .filter(|r| r.method == "PATCH")
            .collect();
        assert_eq!(patches.len(), 1);
        assert!(
            patches[0]
                .path
                .starts_with(&format!("/apis/networking.istio.io/{}/", versions[0])),
            "{patches:?}"
        );
        emu.shutdown().await;
    }
}

#[tokio::test]
async fn guarded_patch_changes_only_the_managed_route_and_skips_no_op_writes() {
    let emu = emulator(&["v1", "v1beta1", "v1alpha3"]).await;
    emu.apply_manifest(orders_vs("v1"), "shop").expect("seed");
    let r = router(&emu);
    let before = stored_vs(&emu);
    let state = RouteState {
        canary_weight: 20,
        header_route: Some(HeaderRoute {
            headers: BTreeMap::from([("x-canary".into(), StringMatch::Exact("true".into()))]),
        }),
        mirror_percent: 10,
    };
    let rep = r.set_route(&target(), &state).await.expect("set");
    assert!(rep.patched);
    assert_eq!(rep.read_back, ReadBack::Verified);
    assert!(
        rep.patch.iter().any(|op| op["op"] == "test"),
        "guarded: {:?}",
        rep.patch
    );
    let after = stored_vs(&emu);
    assert_eq!(after["spec"]["tcp"], before["spec"]["tcp"]);
    assert_eq!(after["spec"]["hosts"], before["spec"]["hosts"]);
    let http = after["spec"]["http"].as_array().expect("http");
    assert_eq!(http[0]["name"], "tidegate-orders-header");
    assert_eq!(
        http[1], before["spec"]["http"][0],
        "the admin route is untouched"
    );
    assert_eq!(http[2]["timeout"], "5s");
    assert_eq!(http[2]["route"][0]["weight"], 80);
    assert_eq!(http[2]["route"][1]["weight"], 20);
    assert_eq!(http[2]["route"][1]["destination"]["port"]["number"], 8080);
    assert_eq!(http[2]["mirrorPercentage"]["value"], 10.0);
    let rv = after["metadata"]["resourceVersion"].clone();

    let again = r.set_route(&target(), &state).await.expect("set again");
    assert!(!again.patched, "nothing changed, nothing sent");
    assert_eq!(again.read_back, ReadBack::Verified);
    assert_eq!(stored_vs(&emu)["metadata"]["resourceVersion"], rv);
    emu.shutdown().await;
}

#[tokio::test]
async fn a_concurrent_edit_between_read_and_write_is_reported_not_overwritten() {
    let emu = emulator(&["v1", "v1beta1", "v1alpha3"]).await;
    emu.apply_manifest(orders_vs("v1"), "shop").expect("seed");
    let r = router(&emu);
    r.set_route(
        &target(),
        &RouteState {
            canary_weight: 10,
            ..Default::default()
        },
    )
    .await
    .expect("first step");
    // Someone edits the weights by hand right after tidegate has read the VirtualService.
    emu.faults().before_next_write(|store: &mut Store| {
        let def = store
            .def("networking.istio.io", "v1", "virtualservices")
            .cloned()
            .expect("served");
        store
            .patch_with(&def, "v1", Some("shop"), "orders", |doc| {
                doc["spec"]["http"][1]["route"][0]["weight"] = json!(70);
                doc["spec"]["http"][1]["route"][1]["weight"] = json!(30);
                Ok(())
            })
            .expect("manual edit");
    });
    let rep = r
        .set_route(
            &target(),
            &RouteState {
                canary_weight: 50,
                ..Default::default()
            },
        )
        .await
        .expect("no transport error");
    assert!(!rep.patched, "the guarded write must be refused");
    match rep.read_back {
        ReadBack::Drifted { actual, detail } => {
            assert_eq!(actual.canary_weight, 30);
            assert!(detail.contains("expected"), "{detail}");
        }
        other => panic!("expected drift, got {other:?}"),
    }
    let vs = stored_vs(&emu);
    assert_eq!(
        vs["spec"]["http"][1]["route"][1]["weight"], 30,
        "the manual edit stands"
    );
    assert!(
        !canary_weights_ever(&emu).contains(&50),
        "50% was never written"
    );
    let statuses: Vec<u16> = emu
        .faults()
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH")
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![200, 422]);
    emu.shutdown().await;
}

#[tokio::test]
async fn conflicts_and_server_errors_are_retried_then_reported() {
    let emu = emulator(&["v1"]).await;
    emu.apply_manifest(orders_vs("v1"), "shop").expect("seed");
    let r = router(&emu);
    r.virtual_service_resource().await.expect("discovery");

    emu.faults().fail_next_writes(409, 1);
    emu.faults().fail_next_writes(503, 1);
    let rep = r
        .set_route(
            &target(),
            &RouteState {
                canary_weight: 5,
                ..Default::default()
            },
        )
        .await
        .expect("retried to success");
    assert!(rep.patched);
    assert_eq!(rep.read_back, ReadBack::Verified);
    let patch_statuses: Vec<u16> = emu
        .faults()
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH")
        .map(|r| r.status)
        .collect();
    assert_eq!(patch_statuses, vec![409, 503, 200]);

    emu.faults().clear_requests();
    emu.faults().fail_next_writes(500, 10);
    let err = r
        .set_route(
            &target(),
            &RouteState {
                canary_weight: 25,
                ..Default::default()
            },
        )
        .await
        .expect_err("gives up");
    match &err {
        RouterError::Api { attempts, .. } => assert_eq!(*attempts, 3),
        other => panic!("unexpected {other}"),
    }
    assert!(
        err.to_string().contains("patch VirtualService shop/orders"),
        "{err}"
    );
    assert_eq!(stored_vs(&emu)["spec"]["http"][1]["route"][1]["weight"], 5);
    emu.shutdown().await;
}

#[tokio::test]
async fn timeouts_are_retried() {
    let emu = emulator(&["v1"]).await;
    emu.apply_manifest(orders_vs("v1"), "shop").expect("seed");
    let mut cfg = emu.kube_config().expect("config");
    cfg.read_timeout = Some(Duration::from_millis(300));
    let r = IstioRouter::new(kube::Client::try_from(cfg).expect("client"), fast_retry());
    r.virtual_service_resource().await.expect("discovery");
    emu.faults().delay_next_requests(Duration::from_secs(2), 1);
    let rep = r
        .set_route(
            &target(),
            &RouteState {
                canary_weight: 5,
                ..Default::default()
            },
        )
        .await
        .expect("the timed-out read is retried");
    assert_eq!(rep.read_back, ReadBack::Verified);
    // The timed-out read is abandoned by the client (the emulator never logs it); its retry
    // is logged, then the patch. The read-back is the patch's answer: no GET after it.
    let log = emu.faults().requests();
    let on_orders: Vec<&str> = log
        .iter()
        .filter(|r| r.path.ends_with("/orders"))
        .map(|r| r.method.as_str())
        .collect();
    assert_eq!(on_orders, ["GET", "PATCH"], "{log:?}");
    emu.shutdown().await;
}

#[tokio::test]
async fn clear_restores_the_original_routes_of_a_fixture() {
    let emu = emulator(&["v1", "v1beta1", "v1alpha3"]).await;
    let path = common::fixture("istio/manifests/bookinfo__virtual-service-all-v1.yaml");
    let docs = manifests::load(&[path]).expect("fixture parses");
    let reviews = docs
        .iter()
        .find(|d| d.kind() == "VirtualService" && d.name() == "reviews")
        .expect("reviews VirtualService")
        .value
        .clone();
    emu.apply_manifest(reviews, "bookinfo").expect("seed");
    let original = emu
        .get(
            "networking.istio.io/v1",
            "VirtualService",
            Some("bookinfo"),
            "reviews",
        )
        .expect("stored");
    let t = Target {
        rollout: RolloutId {
            namespace: "bookinfo".into(),
            name: "reviews".into(),
        },
        service: "reviews".into(),
        virtual_service: "reviews".into(),
        destination_rule: Some("reviews".into()),
        routes: vec![],
        stable: "v1".into(),
        canary: "v3".into(),
        split: tidegate::plan::Split::Subset,
    };
    let r = router(&emu);
    for w in [10u8, 30, 60] {
        let st = RouteState {
            canary_weight: w,
            header_route: Some(HeaderRoute {
                headers: BTreeMap::from([("end-user".into(), StringMatch::Exact("jason".into()))]),
            }),
            mirror_percent: 5,
        };
        assert_eq!(
            r.set_route(&t, &st).await.expect("set").read_back,
            ReadBack::Verified
        );
    }
    let rep = r.clear(&t, &RouteState::all_stable()).await.expect("clear");
    assert!(rep.patched);
    assert_eq!(rep.read_back, ReadBack::Verified);
    let now = emu
        .get(
            "networking.istio.io/v1",
            "VirtualService",
            Some("bookinfo"),
            "reviews",
        )
        .expect("stored");
    assert_eq!(now["spec"], original["spec"]);
    assert_eq!(
        now["metadata"].get("annotations"),
        original["metadata"].get("annotations")
    );
    assert_eq!(
        now["metadata"]["generation"],
        json!(5),
        "3 sets and 1 clear bumped generation"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn history_shows_no_weight_beyond_the_steps_taken() {
    let emu = emulator(&["v1"]).await;
    emu.apply_manifest(orders_vs("v1"), "shop").expect("seed");
    let r = router(&emu);
    for w in [5u8, 10, 25] {
        r.set_route(
            &target(),
            &RouteState {
                canary_weight: w,
                ..Default::default()
            },
        )
        .await
        .expect("step");
    }
    let ever = canary_weights_ever(&emu);
    assert_eq!(ever.iter().max(), Some(&25));
    assert!(ever.contains(&5) && ever.contains(&10));
    emu.shutdown().await;
}

#[tokio::test]
async fn every_write_is_valid_against_the_istio_crd_schema() {
    common::init_tls();
    let emu = kube_emulator::start(EmulatorConfig {
        crd_paths: vec![common::fixture("istio/crds/crd-all.gen.yaml")],
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator starts");
    emu.apply_manifest(orders_vs("v1"), "shop").expect("seed");
    let r = router(&emu);
    let state = RouteState {
        canary_weight: 35,
        header_route: Some(HeaderRoute {
            headers: BTreeMap::from([
                ("x-canary".into(), StringMatch::Exact("true".into())),
                ("x-user".into(), StringMatch::Regex("qa-.*".into())),
            ]),
        }),
        mirror_percent: 15,
    };
    let rep = r
        .set_route(&target(), &state)
        .await
        .expect("accepted by the schema");
    assert!(rep.patched);
    assert_eq!(rep.read_back, ReadBack::Verified, "nothing was pruned");
    let rep = r
        .clear(&target(), &RouteState::all_canary())
        .await
        .expect("clear accepted");
    assert_eq!(rep.read_back, ReadBack::Verified);
    emu.shutdown().await;
}

#[tokio::test]
async fn a_422_while_the_guards_still_hold_is_a_rejection_not_drift() {
    let emu = emulator(&["v1"]).await;
    emu.apply_manifest(orders_vs("v1"), "shop").expect("seed");
    let r = router(&emu);
    // A 422 that is not a failed `test` (schema or admission refusing the content).
    emu.faults().fail_next_writes(422, 1);
    let err = r
        .set_route(
            &target(),
            &RouteState {
                canary_weight: 10,
                ..Default::default()
            },
        )
        .await
        .expect_err("rejected");
    assert!(matches!(err, RouterError::Rejected { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("rejected the patch of VirtualService shop/orders"),
        "{err}"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn preflight_reads_the_rollout_objects_from_the_cluster() {
    use tidegate::mesh::istio::preflight::{self, Object, codes};
    let emu = emulator(&["v1", "v1beta1", "v1alpha3"]).await;
    emu.apply_manifest(orders_vs("v1"), "shop").expect("seed");
    emu.apply_manifest(
        json!({"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
               "metadata": {"name": "orders", "namespace": "shop"},
               "spec": {"host": "orders", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}},
                        "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}}),
        "shop",
    )
    .expect("seed");
    emu.apply_manifest(
        json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
               "metadata": {"name": "default", "namespace": "shop"},
               "spec": {"mtls": {"mode": "DISABLE"}}}),
        "shop",
    )
    .expect("seed");
    let r = router(&emu);
    let objects: Vec<Object> = r
        .preflight_objects(&target())
        .await
        .expect("read")
        .into_iter()
        .map(|v| Object::new(v, None))
        .collect();
    assert_eq!(objects.len(), 3);
    let f = preflight::check_rollout(&objects, &target());
    let mut got: Vec<&str> = f.iter().map(|f| f.code).collect();
    got.sort();
    assert_eq!(got, vec![codes::PLAN_SUBSET_MISSING, codes::MTLS_MISMATCH]);
    assert_eq!(preflight::blocking(&f).len(), 2);
    emu.shutdown().await;
}

/// Requests the router made for the VirtualService `shop/orders` itself, by method.
fn requests_on_orders(emu: &EmulatorHandle, method: &str) -> usize {
    emu.faults()
        .requests()
        .iter()
        .filter(|r| r.method == method && r.path.ends_with("/virtualservices/orders"))
        .count()
}

async fn wait_synced(r: &IstioRouter) {
    use tidegate::mesh::MeshKind;
    for _ in 0..200 {
        if MeshKind::ALL
            .iter()
            .all(|k| r.cache().is_synced(*k, "shop"))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the watches never synced the cache");
}

#[tokio::test]
async fn a_watched_namespace_is_read_from_the_cache_and_edits_by_others_are_news() {
    use tidegate::mesh::{Mesh, MeshKind};
    let emu = emulator(&["v1"]).await;
    emu.apply_manifest(orders_vs("v1"), "shop").expect("seed");
    let r = router(&emu);
    r.watch(&["shop".to_string()].into_iter().collect());
    wait_synced(&r).await;
    r.cache().take_changes(); // the first list: everything is new
    let route = RouteState {
        canary_weight: 5,
        ..Default::default()
    };
    let rep = r.set_route(&target(), &route).await.expect("write");
    assert_eq!(rep.read_back, ReadBack::Verified);
    for _ in 0..10 {
        assert_eq!(
            r.read_back(&target(), &route).await.expect("read"),
            ReadBack::Verified
        );
    }
    let read = r.objects(&[target()]).await.expect("objects");
    assert!(read.objects.iter().any(|o| o["kind"] == "VirtualService"));
    assert_eq!(
        requests_on_orders(&emu, "GET"),
        0,
        "reads come from the cache"
    );
    assert_eq!(
        requests_on_orders(&emu, "PATCH"),
        1,
        "one write for one change"
    );
    let log = emu.faults().requests();
    let (unwatched, lists): (Vec<&str>, Vec<&str>) = log
        .iter()
        .filter(|q| {
            q.method == "GET" && !q.query.contains("watch=") && q.path.contains("/namespaces/")
        })
        .map(|q| q.path.as_str())
        .partition(|p| {
            p.ends_with("/services") || p.ends_with("/serviceentries") || p.ends_with("/gateways")
        });
    assert_eq!(
        lists.len(),
        4,
        "one list per watched kind and namespace at start (VS, DR, PA, istio-system PA), none per call: {lists:?}"
    );
    assert_eq!(
        unwatched.len(),
        3,
        "preflight lists Services, ServiceEntries and Gateways of the namespace when it runs (never watched): {unwatched:?}"
    );
    // Our own write is not news; an edit by someone else is, within a second.
    let own = tokio::time::timeout(Duration::from_millis(300), r.changes()).await;
    assert!(own.is_err(), "our own write came back as a change: {own:?}");
    emu.apply_manifest(orders_vs("v1"), "shop")
        .expect("someone reverts the routes");
    let news = tokio::time::timeout(Duration::from_secs(1), r.changes())
        .await
        .expect("the edit is news within a second");
    assert!(
        news.iter()
            .any(|k| k.kind == MeshKind::VirtualService && k.name == "orders")
    );
    assert!(matches!(
        r.read_back(&target(), &route).await.expect("read"),
        ReadBack::Drifted { .. }
    ));
    r.watch(&Default::default());
    assert!(
        !r.cache().is_synced(MeshKind::VirtualService, "shop"),
        "unwatched: forgotten"
    );
    emu.shutdown().await;
}

/// A VirtualService of `shop` bound to `istio-system/public` whose routes reach `orders` (in
/// `shop`) and `ledger.billing.svc.cluster.local`.
fn ingress_vs() -> Value {
    json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "orders", "namespace": "shop"},
        "spec": {
            "hosts": ["orders", "orders.example.com"],
            "gateways": ["istio-system/public", "mesh"],
            "http": [
                {"name": "ledger", "match": [{"uri": {"prefix": "/ledger"}}],
                 "route": [{"destination": {"host": "ledger.billing.svc.cluster.local"}}]},
                {"name": "primary",
                 "route": [{"destination": {"host": "orders", "subset": "v1"}}]}
            ]
        }
    })
}

/// `(resource, namespace)` of every list the router sent for Services, ServiceEntries and
/// Gateways, with its answer's status code.
fn preflight_lists(emu: &EmulatorHandle) -> Vec<(String, String, u16)> {
    emu.faults()
        .requests()
        .iter()
        .filter_map(|r| {
            let segs: Vec<&str> = r.path.split('/').collect();
            match segs.as_slice() {
                [
                    ..,
                    "namespaces",
                    ns,
                    res @ ("services" | "serviceentries" | "gateways"),
                ] => Some((res.to_string(), ns.to_string(), r.status)),
                _ => None,
            }
        })
        .collect()
}

#[tokio::test]
async fn preflight_lists_the_unwatched_kinds_where_the_rollout_points() {
    use tidegate::mesh::Mesh;
    use tidegate::mesh::preflight::{ListedKind, Unread, UnreadWhy};
    use tidegate::transient::Transient;
    common::init_tls();
    // A cluster without the ServiceEntry CRD, where tidegate may not read Gateways.
    let emu = kube_emulator::start(EmulatorConfig {
        without_kinds: vec!["ServiceEntry".into()],
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator");
    emu.apply_manifest(ingress_vs(), "shop").expect("seed");
    emu.apply_manifest(
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "orders", "namespace": "shop"},
               "spec": {"ports": [{"name": "http", "port": 8080}]}}),
        "shop",
    )
    .expect("seed");
    emu.faults().forbid("networking.istio.io", "gateways");
    // Two 500s on the first Services list: retried like every read.
    emu.faults().fail_next_on("", "services", 500, 2);
    let r = router(&emu);
    let read = r.objects(&[target()]).await.expect("read");

    let namespaces = ["billing", "istio-system", "shop"];
    let set = |names: &[&str]| names.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        read.seen.services,
        set(&namespaces),
        "Services read where referenced"
    );
    assert!(read.seen.gateways.is_empty() && read.seen.service_entries.is_empty());
    let mut unread = read.unread.clone();
    unread.sort();
    let want: Vec<Unread> = namespaces
        .iter()
        .map(|ns| Unread {
            kind: ListedKind::ServiceEntry,
            namespace: ns.to_string(),
            why: UnreadWhy::NotServed,
        })
        .chain(namespaces.iter().map(|ns| Unread {
            kind: ListedKind::Gateway,
            namespace: ns.to_string(),
            why: UnreadWhy::Forbidden,
        }))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(unread, want);
    let service = read
        .objects
        .iter()
        .find(|o| o.pointer("/metadata/name") == Some(&json!("orders")) && o["kind"] == "Service")
        .expect("the Service, typed (list items of built-in kinds come without kind)");
    assert_eq!(service["apiVersion"], "v1");

    // Three lists per namespace, plus the two retried Services lists.
    let lists = preflight_lists(&emu);
    assert_eq!(lists.len(), 3 * namespaces.len() + 2, "{lists:?}");
    assert_eq!(lists.iter().filter(|l| l.2 == 500).count(), 2);
    assert_eq!(lists.iter().filter(|l| l.2 == 403).count(), 3);
    assert_eq!(lists.iter().filter(|l| l.2 == 404).count(), 3);

    // A lasting server error fails the read, as a transient error.
    emu.faults().fail_next_on("", "services", 500, 9);
    let err = r
        .objects(&[target()])
        .await
        .expect_err("500s beyond the retries");
    assert!(err.is_transient(), "{err}");
    assert!(err.to_string().contains("list services in"), "{err}");
    emu.shutdown().await;
}
