//! Safe under change, end to end: the daemon as a process against the Kubernetes API emulator
//! and a `file://` remote, driven by a person's pushes. Each test is one of the failures issue 11
//! starts from: editing a finished plan, a YAML typo and an abort while the newest revision is
//! invalid, a new release whose subset the DestinationRule lacks, a second plan on a route, an
//! unreachable Prometheus, and a plan removed mid-rollout.

#[path = "support/process.rs"]
mod process;

use std::time::{Duration, Instant};

use process::{Daemon, World, git, host_weight, push_file, route_names, weight_of, world};
use serde_json::{Value, json};

const FILE: &str = "rollouts/orders-svc.yaml";
const ID: &str = "production/orders-svc";

/// A plan for orders-svc: `stable` → `canary` on the `primary` route with `steps` (YAML lines,
/// indented by four) and `analysis` (the mapping's body).
fn plan(name: &str, stable: &str, canary: &str, steps: &str, analysis: &str) -> String {
    format!(
        "apiVersion: tidegate.dev/v1alpha1\nkind: Rollout\nmetadata: {{name: {name}, namespace: production}}\nspec:\n  service: orders-svc\n  routes: [primary]\n  stable: {stable}\n  canary: {canary}\n  steps:\n{steps}  analysis: {{{analysis}}}\n"
    )
}

const SHORT: &str = "    - setWeight: 50\n    - pause: 1s\n";
const PAUSED: &str = "    - setWeight: 20\n    - pause: {}\n    - setWeight: 50\n    - pause: {}\n";

fn phase(d: &Daemon, id: &str) -> String {
    d.status(id)
        .and_then(|s| s["phase"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// How many versions of the VirtualService the emulator has stored.
fn vs_versions(w: &World) -> usize {
    w.emulator
        .history(
            "networking.istio.io/v1",
            "VirtualService",
            Some("production"),
            "orders-svc",
        )
        .len()
}

/// A daemon that has promoted v1 → v2 (SHORT steps), and the VirtualService's version count.
fn promoted() -> (World, Daemon, usize) {
    let w = world(
        &["production", "tidegate"],
        &[(FILE, plan("orders-svc", "v1", "v2", SHORT, "interval: 1s"))],
    );
    let d = w.start_daemon("solo", "");
    wait_promoted(&w, &d);
    let versions = vs_versions(&w);
    (w, d, versions)
}

/// A daemon whose rollout of `text` waits at its `pause: {}` at 20 %.
fn paused_at_twenty(text: String) -> (World, Daemon) {
    let w = world(&["production", "tidegate"], &[(FILE, text)]);
    let d = w.start_daemon("solo", "");
    d.wait_for("the pause at 20 %", Duration::from_secs(60), || {
        phase(&d, ID) == "Paused" && weight_of(&w.virtual_service(), "primary", "v2") == Some(20)
    });
    (w, d)
}

/// Wait until v1 → v2 is promoted: the primary route sends to v2 alone.
fn wait_promoted(w: &World, d: &Daemon) {
    d.wait_for("v2 promoted", Duration::from_secs(60), || {
        let vs = w.virtual_service();
        phase(d, ID) == "Succeeded"
            && weight_of(&vs, "primary", "v2") == Some(100)
            && weight_of(&vs, "primary", "v1").is_none()
    });
}

/// For `secs`, the VirtualService keeps `versions` stored versions (no write by anyone).
fn assert_no_write_for(w: &World, versions: usize, secs: u64, what: &str) {
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        assert_eq!(
            vs_versions(w),
            versions,
            "{what}: the VirtualService was written: {}",
            w.virtual_service()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn editing_a_finished_plan_moves_no_traffic() {
    let (w, d, versions) = promoted();

    let edit = plan("orders-svc", "v1", "v2", SHORT, "interval: 2s");
    let commit = push_file(&w.repos.clone, FILE, Some(&edit), "slower analysis");
    d.wait_for(
        "the status to name the edited revision",
        Duration::from_secs(30),
        || {
            d.status(ID)
                .is_some_and(|s| s.pointer("/plan/revision") == Some(&json!(commit)))
        },
    );
    assert_eq!(phase(&d, ID), "Succeeded");
    assert_no_write_for(&w, versions, 3, "after editing a finished plan");
    let vs = w.virtual_service();
    assert_eq!(weight_of(&vs, "primary", "v2"), Some(100), "{vs}");
}

#[test]
fn a_typo_mid_rollout_holds_the_rollout_and_abort_still_works() {
    let good = plan("orders-svc", "v1", "v2", PAUSED, "interval: 1s");
    let (w, d) = paused_at_twenty(good.clone());

    // A bad indent: the file no longer parses. The rollout stays, held, at 20 %.
    let typo = good.replace("  stable: v1", " stable: v1");
    push_file(&w.repos.clone, FILE, Some(&typo), "typo");
    d.wait_for("the pending revision", Duration::from_secs(30), || {
        d.status(ID).is_some_and(|s| s.get("pending").is_some())
    });
    let status = d.status(ID).expect("status");
    let findings = status["pending"]["findings"].to_string();
    assert!(findings.contains(FILE), "{status}");
    assert_eq!(status["phase"], "Paused", "{status}");
    assert_eq!(
        weight_of(&w.virtual_service(), "primary", "v2"),
        Some(20),
        "the canary keeps its traffic while held"
    );

    // Abort works while the newest revision is invalid, and the rollback message says that the
    // example's own header route (not managed by the plan) still sends to the canary.
    // The CLI finds the rollout by its status although its plan no longer parses.
    d.wait_for("the status file", Duration::from_secs(30), || {
        let f = "tidegate-status:status/production/orders-svc.yaml";
        git(&w.repos.remote, &["show", f]).status.success()
    });
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args([
            "abort",
            ID,
            "-m",
            "stop it",
            "--author",
            "Ana <ana@example.com>",
        ])
        .arg("--repo")
        .arg(w.repos.url())
        .output()
        .expect("abort");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    d.wait_for("the abort", Duration::from_secs(30), || {
        phase(&d, ID) == "Aborted"
    });
    let vs = w.virtual_service();
    assert_eq!(weight_of(&vs, "primary", "v2").unwrap_or(0), 0, "{vs}");
    let status = d.status(ID).expect("status");
    let reason = status["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("canary-header") && reason.contains("still send"),
        "the rollback names the unmanaged route to the canary: {reason}"
    );
    let controls = status["controls"].to_string();
    assert!(controls.contains("abort"), "{controls}");

    // The fix is adopted: nothing pending any more, and the aborted rollout stays aborted.
    push_file(&w.repos.clone, FILE, Some(&good), "fix the indent");
    d.wait_for("the fix to be read", Duration::from_secs(30), || {
        d.status(ID).is_some_and(|s| s.get("pending").is_none())
    });
    assert_eq!(phase(&d, ID), "Aborted");
}

/// `subsets` of the orders-svc DestinationRule, as a manifest.
fn destination_rule(subsets: &[&str]) -> Value {
    let subsets: Vec<Value> = subsets
        .iter()
        .map(|s| json!({"name": s, "labels": {"version": s}}))
        .collect();
    json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "orders-svc", "namespace": "production"},
        "spec": {"host": "orders-svc", "subsets": subsets},
    })
}

#[test]
fn a_new_release_waits_for_its_subset_and_then_starts_from_the_live_route() {
    let (w, d, versions) = promoted();

    // v2 → v3, but the DestinationRule has no subset v3 yet: preflight holds the new release.
    let next = plan("orders-svc", "v2", "v3", SHORT, "interval: 1s");
    push_file(&w.repos.clone, FILE, Some(&next), "release v3");
    d.wait_for(
        "preflight to name the missing subset",
        Duration::from_secs(30),
        || {
            d.status(ID).is_some_and(|s| {
                let findings = s["findings"].to_string();
                findings.contains("TG104") && findings.contains("\\\"v3\\\"")
            })
        },
    );
    assert_no_write_for(&w, versions, 3, "while subset v3 is missing");
    let status = d.status(ID).expect("status");
    assert_eq!(status["phase"], "Pending", "{status}");

    // The subset appears: the watch wakes the rollout and v3 gets its traffic from v2.
    w.emulator
        .apply_manifest(destination_rule(&["v1", "v2", "v3"]), "production")
        .expect("update the DestinationRule");
    d.wait_for("v3 promoted", Duration::from_secs(60), || {
        let vs = w.virtual_service();
        phase(&d, ID) == "Succeeded" && weight_of(&vs, "primary", "v3") == Some(100)
    });
    let history = w.emulator.history(
        "networking.istio.io/v1",
        "VirtualService",
        Some("production"),
        "orders-svc",
    );
    let v3_weights: Vec<u64> = history
        .iter()
        .filter_map(|e| weight_of(&e.object, "primary", "v3"))
        .collect();
    assert_eq!(
        v3_weights.first(),
        Some(&50),
        "the release starts at its first step"
    );
    assert!(
        history
            .iter()
            .all(|e| weight_of(&e.object, "primary", "v2").is_some()
                || weight_of(&e.object, "primary", "v3").is_some()),
        "the primary route never loses both v2 and v3"
    );
}

#[test]
fn a_second_plan_on_the_same_route_is_refused_visibly() {
    let (w, d) = paused_at_twenty(plan("orders-svc", "v1", "v2", PAUSED, "interval: 1s"));
    let versions = vs_versions(&w);

    let copy = plan("orders-svc-copy", "v1", "v2", PAUSED, "interval: 1s");
    push_file(&w.repos.clone, "rollouts/copy.yaml", Some(&copy), "a copy");
    let copy_id = "production/orders-svc-copy";
    d.wait_for("the copy to be refused", Duration::from_secs(30), || {
        phase(&d, copy_id) == "Invalid"
    });
    let status = d.status(copy_id).expect("status");
    assert!(
        status["findings"].to_string().contains("orders-svc"),
        "the refusal names the first owner: {status}"
    );
    assert_no_write_for(&w, versions, 3, "with a refused second owner");
    assert_eq!(phase(&d, ID), "Paused", "the first owner is undisturbed");

    // Offline, `validate` refuses the pair too.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .arg("validate")
        .arg(w.repos.clone.join("rollouts"))
        .output()
        .expect("validate");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("orders-svc-copy"), "{text}");
}

#[test]
fn unreachable_metrics_are_in_the_status_and_readiness_does_not_depend_on_them() {
    let analysis = "interval: 1s, failureLimit: 3, metrics: [{name: errors, template: istio-success-rate, min: 95}]";
    let w = world(
        &["production", "tidegate"],
        &[(FILE, plan("orders-svc", "v1", "v2", PAUSED, analysis))],
    );
    let d = w.start_daemon("solo", "");
    d.wait_for(
        "the status to say the metrics are unreachable",
        Duration::from_secs(60),
        || {
            d.status(ID).is_some_and(|s| {
                s.get("metricsUnreachableSince").is_some()
                    && s["reason"]
                        .as_str()
                        .is_some_and(|r| r.contains("unreachable since"))
            })
        },
    );
    let (code, body) = process::get(d.port, "/readyz").expect("readyz answers");
    assert_eq!(code, 200, "/readyz: {body}");
    let metrics = process::get_text(d.port, "/metrics").expect("metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("tidegate_metrics_source_up") && l.ends_with(" 0")),
        "{metrics}"
    );
}

#[test]
fn removing_a_running_plan_rolls_back_and_clears_tidegates_routes() {
    let steps =
        format!("    - setHeaderRoute: {{headers: {{x-beta: {{exact: 'yes'}}}}}}\n{PAUSED}");
    let w = world(
        &["production", "tidegate"],
        &[(FILE, plan("orders-svc", "v1", "v2", &steps, "interval: 1s"))],
    );
    let d = w.start_daemon("solo", "");
    let header = "tidegate-orders-svc-header".to_owned();
    d.wait_for(
        "the pause with the header route",
        Duration::from_secs(60),
        || {
            let vs = w.virtual_service();
            phase(&d, ID) == "Paused" && route_names(&vs).contains(&header)
        },
    );
    let status_file = "tidegate-status:status/production/orders-svc.yaml";
    d.wait_for("the status file", Duration::from_secs(30), || {
        git(&w.repos.remote, &["show", status_file])
            .status
            .success()
    });

    push_file(&w.repos.clone, FILE, None, "retire orders-svc");
    d.wait_for(
        "the route back on stable without tidegate's route",
        Duration::from_secs(30),
        || {
            let vs = w.virtual_service();
            !route_names(&vs).contains(&header) && weight_of(&vs, "primary", "v2").unwrap_or(0) == 0
        },
    );
    d.wait_for(
        "the rollout to be forgotten",
        Duration::from_secs(30),
        || {
            d.status(ID).is_none_or(|s| s.get("phase").is_none())
                && !git(&w.repos.remote, &["show", status_file])
                    .status
                    .success()
        },
    );
    let vs = w.virtual_service();
    assert_eq!(weight_of(&vs, "primary", "v1"), Some(100), "{vs}");
}

/// Host-level: the canary's Service deleted in the middle of a rollout is noticed at the next
/// handling (a Service is read again while a host-level split has traffic on it) and rolls the
/// rollout back, as a deleted canary subset does; the reason names the Service.
#[test]
fn a_canary_service_deleted_mid_rollout_is_rolled_back() {
    let text = plan(
        "orders-svc",
        "{host: orders-svc-primary}",
        "{host: orders-svc-canary}",
        "    - setWeight: 20\n    - analyze: 10m\n",
        "interval: 1s, metrics: [{name: sr, template: istio-success-rate, min: 90}]",
    );
    let w = world(&["production", "tidegate"], &[(FILE, text)]);
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(include_str!("../src/lab/hosts.yaml")).expect("hosts.yaml");
    for doc in docs {
        w.emulator.apply_manifest(doc, "production").expect("apply");
    }
    let d = w.start_daemon("solo", "");
    d.wait_for(
        "the canary Service at 20 %",
        Duration::from_secs(60),
        || {
            phase(&d, ID) == "Progressing"
                && host_weight(&w.virtual_service(), "primary", "orders-svc-canary") == Some(20)
        },
    );
    w.runtime.block_on(async {
        let client = w.emulator.client().expect("client");
        let api: kube::Api<k8s_openapi::api::core::v1::Service> =
            kube::Api::namespaced(client, "production");
        api.delete("orders-svc-canary", &Default::default())
            .await
            .expect("delete the canary Service");
    });
    d.wait_for("rolled back", Duration::from_secs(30), || {
        phase(&d, ID) == "RolledBack"
    });
    let vs = w.virtual_service();
    assert_eq!(
        host_weight(&vs, "primary", "orders-svc-primary"),
        Some(100),
        "{vs}"
    );
    let status = d.status(ID).expect("status");
    let said = status["history"].as_array().is_some_and(|h| {
        h.iter().any(|t| {
            t["reason"].as_str().is_some_and(|r| {
                r.contains("Service `orders-svc-canary` no longer exists (the canary)")
            })
        })
    });
    assert!(said, "{status:#}");
}
