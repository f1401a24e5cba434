//! Patch computation over every VirtualService in the shared Istio fixtures: a full round of
//! set/clear leaves non-managed content untouched and restores the original exactly, weights
//! always sum to 100, and unsupported shapes give clear errors.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;
use tidegate::mesh::Target;
use tidegate::mesh::istio::IstioError;
use tidegate::mesh::istio::routes::{self, ORIGINALS_ANNOTATION};
use tidegate::mesh::manifests::{self, Document};
use tidegate::plan::{HeaderRoute, RolloutId, Split, StringMatch};
use tidegate::rollout::{ReadBack, RouteState};

fn fixtures() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/istio/manifests");
    assert!(
        p.is_dir(),
        "the shared fixtures are missing: expected Istio manifests at {}",
        p.display()
    );
    p
}

fn virtual_services() -> Vec<Document> {
    let docs = manifests::load(&[fixtures()]).expect("fixtures parse");
    let vss: Vec<Document> = docs
        .into_iter()
        .filter(|d| d.kind() == "VirtualService")
        .collect();
    assert!(
        vss.len() >= 25,
        "expected the fixture VirtualServices, found {}",
        vss.len()
    );
    vss
}

fn target(service: &str, stable: &str, canary: &str, routes: Vec<String>) -> Target {
    Target {
        rollout: RolloutId {
            namespace: "default".into(),
            name: "demo".into(),
        },
        service: service.into(),
        virtual_service: "vs".into(),
        destination_rule: Some("dr".into()),
        routes,
        stable: stable.into(),
        canary: canary.into(),
        split: Split::Subset,
    }
}

fn header(k: &str, v: &str) -> HeaderRoute {
    HeaderRoute {
        headers: BTreeMap::from([(k.to_string(), StringMatch::Exact(v.to_string()))]),
    }
}

/// Everything of the VirtualService except the managed routes, tidegate's header route and
/// the originals annotation.
fn unmanaged(vs: &Value, managed: &[usize], header_idx: Option<usize>) -> Value {
    let mut v = vs.clone();
    if let Some(http) = v.pointer_mut("/spec/http").and_then(Value::as_array_mut) {
        let kept: Vec<Value> = http
            .iter()
            .enumerate()
            .filter(|(i, _)| !managed.contains(i) && Some(*i) != header_idx)
            .map(|(_, r)| r.clone())
            .collect();
        *http = kept;
    }
    if let Some(a) = v
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        a.remove(ORIGINALS_ANNOTATION);
        if a.is_empty()
            && let Some(m) = v.pointer_mut("/metadata").and_then(Value::as_object_mut)
        {
            m.remove("annotations");
        }
    }
    v
}

/// (host, subset) pairs the http routes send to.
fn split_candidates(vs: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for r in vs
        .pointer("/spec/http")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for d in r
            .get("route")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let h = d.pointer("/destination/host").and_then(Value::as_str);
            let s = d.pointer("/destination/subset").and_then(Value::as_str);
            if let (Some(h), Some(s)) = (h, s) {
                let pair = (h.to_string(), s.to_string());
                if !out.contains(&pair) {
                    out.push(pair);
                }
            }
        }
    }
    out
}

#[test]
fn set_and_clear_round_trip_on_every_fixture_virtual_service() {
    let states = [
        RouteState {
            canary_weight: 5,
            header_route: None,
            mirror_percent: 0,
        },
        RouteState {
            canary_weight: 25,
            header_route: Some(header("x-canary", "true")),
            mirror_percent: 0,
        },
        RouteState {
            canary_weight: 25,
            header_route: Some(header("x-canary", "true")),
            mirror_percent: 20,
        },
        RouteState {
            canary_weight: 50,
            header_route: None,
            mirror_percent: 20,
        },
        RouteState {
            canary_weight: 100,
            header_route: None,
            mirror_percent: 0,
        },
    ];
    let mut managed_ok = 0;
    let mut refused = 0;
    for doc in virtual_services() {
        let original = doc.value.clone();
        let original_text = original.to_string();
        for (host, subset) in split_candidates(&original) {
            let t = target(&host, &subset, "tidegate-canary", vec![]);
            let view = match routes::view(&original, &t) {
                Ok(v) => v,
                Err(e) => {
                    // The only refusal for a route that sends to (host, subset): it also sends elsewhere.
                    assert!(
                        matches!(e, IstioError::UnsupportedRoute { .. }),
                        "{}: unexpected error {e}",
                        doc.file.display()
                    );
                    assert!(e.to_string().contains("also sends to"), "{e}");
                    refused += 1;
                    continue;
                }
            };
            let managed: Vec<usize> = view.managed.iter().map(|m| m.index).collect();
            let before_unmanaged = unmanaged(&original, &managed, None);
            let mut vs = original.clone();
            for state in &states {
                let patch = routes::plan_set(&vs, &t, state).expect("set");
                assert!(
                    !patch.is_empty(),
                    "{}: {state} needs a write",
                    doc.file.display()
                );
                // Every change is guarded: test operations come first.
                assert_eq!(patch.ops[0]["op"], "test", "{}", doc.file.display());
                vs = routes::apply(&vs, &patch).expect("patch applies");
                assert_eq!(
                    routes::verify(&vs, &t, state),
                    ReadBack::Verified,
                    "{}: {state}",
                    doc.file.display()
                );
                // Weights of every managed route sum to 100.
                for (label, sum) in routes::managed_weight_sums(&vs, &t).expect("sums") {
                    assert_eq!(sum, 100, "{}: route {label}", doc.file.display());
                }
                // Same state again: nothing to write.
                assert!(routes::plan_set(&vs, &t, state).expect("set").is_empty());
                let v2 = routes::view(&vs, &t).expect("view");
                let m2: Vec<usize> = v2.managed.iter().map(|m| m.index).collect();
                assert_eq!(
                    unmanaged(&vs, &m2, v2.header_route),
                    before_unmanaged,
                    "{}: non-managed content changed at {state}",
                    doc.file.display()
                );
                if state.header_route.is_some() {
                    assert_eq!(v2.header_route, Some(0), "header route goes first");
                }
            }
            let clear = routes::plan_clear(&vs, &t, &RouteState::all_stable()).expect("clear");
            vs = routes::apply(&vs, &clear).expect("clear applies");
            assert_eq!(
                vs,
                original,
                "{}: clear must restore the original",
                doc.file.display()
            );
            assert_eq!(vs.to_string(), original_text, "{}", doc.file.display());
            assert!(
                routes::plan_clear(&vs, &t, &RouteState::all_stable())
                    .expect("clear")
                    .is_empty()
            );
            managed_ok += 1;
        }
    }
    assert!(
        managed_ok >= 20,
        "only {managed_ok} fixture routes could be managed"
    );
    assert!(refused >= 1, "the 3-way split fixtures must be refused");
}

#[test]
fn promote_leaves_everything_on_the_canary_and_removes_tidegate_routes() {
    for doc in virtual_services() {
        let original = doc.value.clone();
        for (host, subset) in split_candidates(&original) {
            let t = target(&host, &subset, "tidegate-canary", vec![]);
            if routes::view(&original, &t).is_err() {
                continue;
            }
            let st = RouteState {
                canary_weight: 40,
                header_route: Some(header("x-user", "qa")),
                mirror_percent: 10,
            };
            let vs = routes::apply(
                &original,
                &routes::plan_set(&original, &t, &st).expect("set"),
            )
            .expect("apply");
            let vs = routes::apply(
                &vs,
                &routes::plan_clear(&vs, &t, &RouteState::all_canary()).expect("clear"),
            )
            .expect("apply");
            assert_eq!(
                routes::verify(&vs, &t, &RouteState::all_canary()),
                ReadBack::Verified,
                "{}",
                doc.file.display()
            );
            let text = vs.to_string();
            assert!(
                !text.contains("tidegate-demo-header"),
                "{}",
                doc.file.display()
            );
            assert!(
                !text.contains(ORIGINALS_ANNOTATION),
                "{}",
                doc.file.display()
            );
        }
    }
}

fn doc_named(file: &str, kind: &str) -> Value {
    let path = fixtures().join(file);
    manifests::load(&[path])
        .expect("parse")
        .into_iter()
        .find(|d| d.kind() == kind)
        .map(|d| d.value)
        .unwrap_or_else(|| panic!("{file} has no {kind}"))
}

#[test]
fn tcp_only_virtual_services_are_refused_with_a_clear_error() {
    let vs = doc_named("istio-samples__tcp-echo-all-v1.yaml", "VirtualService");
    let err = routes::plan_set(
        &vs,
        &target("tcp-echo", "v1", "v2", vec![]),
        &RouteState::all_canary(),
    )
    .expect_err("tcp only");
    assert!(err.to_string().contains("only tcp/tls routes"), "{err}");

    let vs = doc_named(
        "argo-rollouts__istio-host-http-tls-split.yaml",
        "VirtualService",
    );
    let name = vs
        .pointer("/spec/tls/0/name")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(name) = name {
        let err = routes::view(
            &vs,
            &target("istio-host-split-stable", "v1", "v2", vec![name]),
        )
        .expect_err("tls");
        assert!(err.to_string().contains("tls route"), "{err}");
    }
    let err =
        routes::view(&vs, &target("x", "v1", "v2", vec!["nope".into()])).expect_err("missing");
    assert!(matches!(err, IstioError::RouteNotFound { .. }), "{err}");
}

#[test]
fn delegating_root_virtual_services_point_at_the_delegate() {
    let vs = doc_named(
        "flagger__test-delegation.sh__root-vs.yaml",
        "VirtualService",
    );
    let err =
        routes::view(&vs, &target("podinfo", "primary", "canary", vec![])).expect_err("delegate");
    assert!(err.to_string().contains("delegate"), "{err}");
}

#[test]
fn three_way_splits_are_refused_naming_the_other_destination() {
    let vs = doc_named("kiali__reviews-virtualservice.json", "VirtualService");
    let t = target("reviews.bookinfo.svc.cluster.local", "v1", "v2", vec![]);
    let err = routes::plan_set(&vs, &t, &RouteState::all_canary()).expect_err("3-way");
    assert!(err.to_string().contains("subset v3"), "{err}");
}

#[test]
fn a_concurrent_edit_makes_the_computed_patch_fail() {
    let vs = doc_named(
        "bookinfo__virtual-service-reviews-80-20.yaml",
        "VirtualService",
    );
    let t = target("reviews", "v1", "v2", vec![]);
    let patch = routes::plan_set(
        &vs,
        &t,
        &RouteState {
            canary_weight: 50,
            ..Default::default()
        },
    )
    .expect("set");
    let mut edited = vs.clone();
    edited["spec"]["http"][0]["route"][0]["weight"] = serde_json::json!(70);
    edited["spec"]["http"][0]["route"][1]["weight"] = serde_json::json!(30);
    let err = routes::apply(&edited, &patch).expect_err("guarded");
    assert!(err.to_string().contains("did not match"), "{err}");
    // Unrelated edits elsewhere do not conflict.
    let mut unrelated = vs.clone();
    unrelated["spec"]["hosts"] = serde_json::json!(["reviews", "reviews.example.com"]);
    let applied = routes::apply(&unrelated, &patch).expect("applies");
    assert_eq!(applied["spec"]["hosts"][1], "reviews.example.com");
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    fn state() -> impl Strategy<Value = RouteState> {
        (0u8..=100, proptest::option::of("[a-z]{1,8}"), 0u8..=100).prop_map(|(w, h, m)| {
            RouteState {
                canary_weight: w,
                header_route: h.map(|v| header("x-canary", &v)),
                mirror_percent: m,
            }
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_sequence_of_states_keeps_weights_at_100_and_clear_restores(states in proptest::collection::vec(state(), 1..8)) {
            let original = doc_named("bookinfo__virtual-service-reviews-jason-v2-v3.yaml", "VirtualService");
            let t = target("reviews", "v2", "v3", vec![]);
            let mut vs = original.clone();
            for st in &states {
                vs = routes::apply(&vs, &routes::plan_set(&vs, &t, st).expect("set")).expect("apply");
                prop_assert_eq!(routes::verify(&vs, &t, st), ReadBack::Verified);
                for (_, sum) in routes::managed_weight_sums(&vs, &t).expect("sums") {
                    prop_assert_eq!(sum, 100);
                }
            }
            vs = routes::apply(&vs, &routes::plan_clear(&vs, &t, &RouteState::all_stable()).expect("clear")).expect("apply");
            prop_assert_eq!(vs, original);
        }
    }
}

#[test]
fn mirroring_a_route_that_uses_mirrors_is_refused() {
    let vs = serde_json::json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "orders", "namespace": "shop"},
        "spec": {"hosts": ["orders"], "http": [{"name": "primary",
            "mirrors": [{"destination": {"host": "audit"}, "percentage": {"value": 5.0}}],
            "route": [{"destination": {"host": "orders", "subset": "v1"}}]}]}
    });
    let t = target("orders", "v1", "v2", vec![]);
    let st = RouteState {
        canary_weight: 10,
        header_route: None,
        mirror_percent: 20,
    };
    let err = routes::plan_set(&vs, &t, &st).expect_err("mirror and mirrors");
    assert!(err.to_string().contains("`mirrors`"), "{err}");
    // Weights alone are fine, and the existing `mirrors` is kept.
    let st = RouteState {
        mirror_percent: 0,
        ..st
    };
    let after = routes::apply(&vs, &routes::plan_set(&vs, &t, &st).expect("set")).expect("apply");
    assert_eq!(
        after["spec"]["http"][0]["mirrors"],
        vs["spec"]["http"][0]["mirrors"]
    );
}

fn plain_vs(dests: Value) -> Value {
    serde_json::json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "vs", "namespace": "default"},
        "spec": {"hosts": ["orders"], "http": [{"name": "primary", "route": dests}]}
    })
}

fn subsets_of(vs: &Value) -> Vec<(String, i64)> {
    vs.pointer("/spec/http/0/route")
        .and_then(Value::as_array)
        .expect("route")
        .iter()
        .map(|d| {
            (
                d.pointer("/destination/subset")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                d.get("weight").and_then(Value::as_i64).unwrap_or(-1),
            )
        })
        .collect()
}

#[test]
fn releases_follow_each_other_on_one_route() {
    let v1v2 = target("orders", "v1", "v2", vec![]);
    let start = plain_vs(serde_json::json!([{"destination": {"host": "orders", "subset": "v1"}}]));
    let at10 = routes::apply(
        &start,
        &routes::plan_set(
            &start,
            &v1v2,
            &RouteState {
                canary_weight: 10,
                ..RouteState::all_stable()
            },
        )
        .expect("set"),
    )
    .expect("apply");
    assert_eq!(subsets_of(&at10), [("v1".into(), 90), ("v2".into(), 10)]);
    // The end of a promotion sends to the canary alone: the stable destination goes.
    let promoted = routes::apply(
        &at10,
        &routes::plan_clear(&at10, &v1v2, &RouteState::all_canary()).expect("clear"),
    )
    .expect("apply");
    assert_eq!(subsets_of(&promoted), [("v2".into(), 100)]);
    assert_eq!(
        routes::verify(&promoted, &v1v2, &RouteState::all_canary()),
        ReadBack::Verified,
        "the finished release still reads as all on its canary"
    );
    // The next release (stable v2, canary v3) starts from that route.
    let v2v3 = target("orders", "v2", "v3", vec![]);
    let next = routes::apply(
        &promoted,
        &routes::plan_set(
            &promoted,
            &v2v3,
            &RouteState {
                canary_weight: 10,
                ..RouteState::all_stable()
            },
        )
        .expect("the next release can manage the promoted route"),
    )
    .expect("apply");
    assert_eq!(subsets_of(&next), [("v2".into(), 90), ("v3".into(), 10)]);
}

#[test]
fn a_previous_release_left_at_weight_zero_is_dropped_and_reported() {
    // What promotions left before tidegate removed the stable destination.
    let old = plain_vs(serde_json::json!([
        {"destination": {"host": "orders", "subset": "v1"}, "weight": 0},
        {"destination": {"host": "orders", "subset": "v2"}, "weight": 100}
    ]));
    let v2v3 = target("orders", "v2", "v3", vec![]);
    assert_eq!(
        routes::stale_destinations(&old, &v2v3),
        ["\"primary\" → v1".to_string()]
    );
    let next = routes::apply(
        &old,
        &routes::plan_set(
            &old,
            &v2v3,
            &RouteState {
                canary_weight: 10,
                ..RouteState::all_stable()
            },
        )
        .expect("a weight-0 destination of another subset does not block the next release"),
    )
    .expect("apply");
    assert_eq!(subsets_of(&next), [("v2".into(), 90), ("v3".into(), 10)]);
    // Another subset that still takes traffic is not ours to drop.
    let live = plain_vs(serde_json::json!([
        {"destination": {"host": "orders", "subset": "v1"}, "weight": 5},
        {"destination": {"host": "orders", "subset": "v2"}, "weight": 95}
    ]));
    assert!(routes::plan_set(&live, &v2v3, &RouteState::all_stable()).is_err());
}

fn host_target(service: &str, stable: &str, canary: &str, routes: Vec<String>) -> Target {
    Target {
        destination_rule: None,
        split: Split::Host,
        ..target(service, stable, canary, routes)
    }
}

/// Argo Rollouts' own host-level example (../shared/fixtures/peers): a route to the stable
/// and canary Services, the canary at weight 0.
fn argo_host_split() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/peers/argo-rollouts__istio-host-split.yaml");
    assert!(
        path.is_file(),
        "the shared fixtures are missing: expected {}",
        path.display()
    );
    manifests::load(&[path])
        .expect("parse")
        .into_iter()
        .find(|d| d.kind() == "VirtualService")
        .map(|d| d.value)
        .expect("the fixture has a VirtualService")
}

/// (host, weight) of each destination of the route named `primary`.
fn host_weights(vs: &Value) -> Vec<(String, i64)> {
    vs.pointer("/spec/http")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|r| r["name"] == "primary")
        .flat_map(|r| r["route"].as_array().cloned().unwrap_or_default())
        .map(|d| {
            assert!(d.pointer("/destination/subset").is_none(), "{d}");
            (
                d["destination"]["host"].as_str().unwrap_or("").to_string(),
                d["weight"].as_i64().unwrap_or(-1),
            )
        })
        .collect()
}

#[test]
fn a_host_level_split_moves_weight_between_the_two_services() {
    let original = argo_host_split();
    let t = host_target(
        "istio-host-split",
        "istio-host-split-stable",
        "istio-host-split-canary",
        vec!["primary".into()],
    );
    let (state, _) = routes::observe(&original, &t).expect("observes");
    assert_eq!(state.canary_weight, 0);
    let st = RouteState {
        canary_weight: 30,
        header_route: Some(header("x-canary", "yes")),
        mirror_percent: 5,
    };
    let vs = routes::apply(
        &original,
        &routes::plan_set(&original, &t, &st).expect("set"),
    )
    .expect("apply");
    assert_eq!(routes::verify(&vs, &t, &st), ReadBack::Verified);
    assert_eq!(
        host_weights(&vs),
        [
            ("istio-host-split-stable".to_string(), 70),
            ("istio-host-split-canary".to_string(), 30)
        ]
    );
    let http = vs["spec"]["http"].as_array().expect("http");
    let header_route = &http[0];
    assert_eq!(header_route["name"], "tidegate-demo-header");
    assert_eq!(
        header_route["route"][0]["destination"],
        serde_json::json!({"host": "istio-host-split-canary"})
    );
    let primary = &http[1];
    assert_eq!(
        primary["mirror"],
        serde_json::json!({"host": "istio-host-split-canary"})
    );
    // A rollback restores the original exactly; a promotion leaves the canary Service alone.
    let back = routes::apply(
        &vs,
        &routes::plan_clear(&vs, &t, &RouteState::default()).expect("clear"),
    )
    .expect("apply");
    assert_eq!(back, original);
    let promoted = routes::apply(
        &vs,
        &routes::plan_clear(&vs, &t, &RouteState::all_canary()).expect("clear"),
    )
    .expect("apply");
    assert_eq!(
        routes::verify(&promoted, &t, &RouteState::all_canary()),
        ReadBack::Verified
    );
    assert_eq!(
        host_weights(&promoted),
        [("istio-host-split-canary".to_string(), 100)]
    );
}

#[test]
fn a_host_level_split_adds_the_canary_service_to_a_plain_route() {
    // Flagger's shape before it writes weights: the VirtualService host is the apex Service,
    // the route sends to `<name>-primary` alone.
    let original = serde_json::json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {"hosts": ["podinfo"], "http": [{"name": "primary", "route": [
            {"destination": {"host": "podinfo-primary", "port": {"number": 9898}}}
        ]}]}
    });
    let t = Target {
        rollout: RolloutId {
            namespace: "test".into(),
            name: "podinfo".into(),
        },
        ..host_target("podinfo", "podinfo-primary", "podinfo-canary", vec![])
    };
    let st = RouteState {
        canary_weight: 10,
        ..RouteState::default()
    };
    let vs = routes::apply(
        &original,
        &routes::plan_set(&original, &t, &st).expect("set"),
    )
    .expect("apply");
    assert_eq!(
        vs["spec"]["http"][0]["route"],
        serde_json::json!([
            {"destination": {"host": "podinfo-primary", "port": {"number": 9898}}, "weight": 90},
            {"destination": {"host": "podinfo-canary", "port": {"number": 9898}}, "weight": 10}
        ])
    );
    // A subset of the stable host is not the host-level stable side: nothing is managed.
    let subset_vs = serde_json::json!({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {"hosts": ["podinfo"], "http": [{"route": [
            {"destination": {"host": "podinfo-primary", "subset": "v1"}}
        ]}]}
    });
    let err = routes::view(&subset_vs, &t).expect_err("no host-level route");
    assert!(
        err.to_string()
            .contains("no http route sends to host podinfo-primary"),
        "{err}"
    );
}
