//! Analysis against a real Prometheus (Debian package `prometheus`) scraping a test exporter
//! that serves Istio-standard series with controlled error rates and latencies.

#[path = "common/prom.rs"]
mod prom;

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use prom::{Exporter, Prometheus, workload};
use tidegate::analysis::batch::{self, ErrorKind, RolloutResult, Target};
use tidegate::analysis::subset::SubsetLabels;
use tidegate::analysis::{Outcome, Template};
use tidegate::metrics::prometheus::{Prometheus as PromSource, PrometheusConfig};
use tidegate::metrics::{MetricsSource, run_tick};
use tidegate::plan::{Analysis, Location, MetricSource, MetricSpec, OnSuccess, Plan, RolloutId};

const WEIRD: &str = "we\"ird}svc\\x";
const WINDOW: Duration = Duration::from_secs(10);

struct Shared {
    _exporter: Exporter,
    prom: Prometheus,
    /// A past instant with deterministic data loaded by promtool.
    history_at: DateTime<Utc>,
}

fn workloads() -> Vec<prom::Workload> {
    vec![
        workload("shop", "healthy", "v1", 20.0, 0.0, 20.0),
        workload("shop", "healthy", "v2", 20.0, 0.0, 20.0),
        // The same service name in another namespace, failing: must not leak into `shop`.
        workload("other", "healthy", "v2", 20.0, 0.5, 20.0),
        workload("shop", "errors", "v1", 20.0, 0.0, 20.0),
        workload("shop", "errors", "v2", 20.0, 0.05, 20.0),
        workload("shop", "idle", "v1", 20.0, 0.0, 20.0),
        workload("shop", "idle", "v2", 0.0, 0.0, 20.0),
        workload("shop", "absent", "v1", 20.0, 0.0, 20.0),
        workload("shop", "slower", "v1", 20.0, 0.0, 20.0),
        workload("shop", "slower", "v2", 100.0, 0.005, 90.0),
        workload("shop", WEIRD, "v1", 20.0, 0.0, 20.0),
        workload("shop", WEIRD, "v2", 20.0, 0.0, 250.0),
        workload("default", "reviews", "v1", 20.0, 0.0, 20.0),
        workload("default", "reviews", "v2", 20.0, 0.0, 20.0),
        workload("default", "reviews", "v3", 20.0, 0.2, 20.0),
    ]
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        prom::install_crypto();
        let exporter = Exporter::start(workloads());
        // Three hours ago, on a whole minute: far enough from the head block.
        let now = Utc::now().timestamp();
        let at = now - 3 * 3600 - now.rem_euclid(60);
        let history = vec![
            workload("shop", "history", "v1", 10.0, 0.0, 20.0),
            workload("shop", "history", "v2", 10.0, 0.1, 20.0),
        ];
        let prom = Prometheus::start(exporter.port, |data| {
            prom::historic_blocks(data, &history, at - 600, at, 5)
        });
        let shared = Shared {
            _exporter: exporter,
            prom,
            history_at: Utc.timestamp_opt(at, 0).single().expect("valid time"),
        };
        wait_for_traffic(&shared.prom.url());
        shared
    })
}

/// Wait until every exported subset with traffic shows enough requests in the window.
/// Runs on its own thread (with its own runtime), so async tests may call it.
fn wait_for_traffic(url: &str) {
    let url = url.to_string();
    std::thread::spawn(move || wait_for_traffic_blocking(&url))
        .join()
        .expect("Prometheus never showed traffic");
}

fn wait_for_traffic_blocking(url: &str) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let source = PromSource::new(&PrometheusConfig::new(url)).expect("source");
    let query = format!(
        "min(sum by (destination_service_namespace, destination_service_name, destination_version) (increase(istio_requests_total{{reporter=\"destination\"}}[{}s])) > 0)",
        WINDOW.as_secs()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = rt.block_on(source.instant(&query, None));
        if let Ok(series) = &v
            && series.first().is_some_and(|s| s.value >= 185.0)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus at {url} has no usable traffic after 60 s: {v:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Start (once) the shared Prometheus without blocking the test's runtime.
async fn shared_ready() {
    tokio::task::spawn_blocking(shared)
        .await
        .expect("shared Prometheus");
}

fn spec(name: &str, t: Template, min: Option<f64>, max: Option<f64>) -> MetricSpec {
    MetricSpec {
        name: name.into(),
        source: MetricSource::Template(t),
        min,
        max,
        compare_to_stable: false,
        tolerance: 0.0,
        test: None,
    }
}

fn compare(mut s: MetricSpec, tolerance: f64) -> MetricSpec {
    s.compare_to_stable = true;
    s.tolerance = tolerance;
    s
}

fn plan(ns: &str, service: &str, canary: &str, stable: &str, metrics: Vec<MetricSpec>) -> Plan {
    Plan {
        id: RolloutId {
            namespace: ns.into(),
            name: format!("{service}-rollout"),
        },
        location: Location {
            file: "test".into(),
            line: 0,
            column: 0,
        },
        service: service.into(),
        virtual_service: service.into(),
        destination_rule: Some(service.into()),
        routes: vec![],
        stable: stable.into(),
        canary: canary.into(),
        split: tidegate::plan::Split::Subset,
        steps: vec![],
        analysis: Analysis {
            interval: WINDOW,
            failure_limit: 1,
            min_requests: 50,
            unreachable_limit: Duration::from_secs(60),
            metrics,
        },
        window: None,
        on_success: OnSuccess::Promote,
        notify: vec![],
        progress_deadline: None,
        on_deadline: Default::default(),
    }
}

fn standard() -> Vec<MetricSpec> {
    vec![
        spec("success", Template::SuccessRate, Some(99.0), None),
        spec("p99", Template::LatencyP99, None, Some(500.0)),
    ]
}

fn targets(plans: &[Plan]) -> Vec<Target> {
    plans
        .iter()
        .map(|p| {
            Target::from_plan(p, &SubsetLabels::fallback(), batch::DEFAULT_REPORTER, None)
                .expect("target")
        })
        .collect()
}

async fn tick(plans: &[Plan], at: Option<DateTime<Utc>>) -> Vec<RolloutResult> {
    shared_ready().await;
    let source = PromSource::new(&PrometheusConfig::new(shared().prom.url())).expect("source");
    let plan = batch::plan(&targets(plans));
    let (results, stats) = run_tick(&source, &plan, at).await;
    assert_eq!(stats.failed, 0, "queries failed: {results:#?}");
    results
}

fn outcomes(r: &RolloutResult) -> Vec<(String, Outcome)> {
    r.verdicts
        .iter()
        .map(|v| (v.metric.clone(), v.outcome))
        .collect()
}

fn value(r: &RolloutResult, metric: &str) -> f64 {
    r.verdicts
        .iter()
        .find(|v| v.metric == metric)
        .and_then(|v| v.value)
        .unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "multi_thread")]
async fn healthy_canary_passes() {
    let mut metrics = standard();
    metrics.push(spec("rate", Template::RequestRate, Some(5.0), None));
    metrics.push(spec("p50", Template::LatencyP50, None, Some(100.0)));
    let r = tick(&[plan("shop", "healthy", "v2", "v1", metrics)], None).await;
    assert_eq!(r[0].outcome(), Outcome::Pass, "{:#?}", r[0]);
    assert_eq!(value(&r[0], "success"), 100.0);
    // All requests take 20 ms: the (10, 25] bucket, interpolated.
    assert!((value(&r[0], "p99") - 24.85).abs() < 1e-6, "{:#?}", r[0]);
    assert!((value(&r[0], "rate") - 20.0).abs() < 2.0, "{:#?}", r[0]);
    let v = &r[0].verdicts[0];
    assert!(v.samples.is_some_and(|n| n >= 50.0), "{v:?}");
    assert!(
        v.query.contains("destination_service_name=\"healthy\""),
        "{}",
        v.query
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn five_percent_errors_fail() {
    let r = tick(&[plan("shop", "errors", "v2", "v1", standard())], None).await;
    assert_eq!(
        outcomes(&r[0]),
        vec![
            ("success".into(), Outcome::Fail),
            ("p99".into(), Outcome::Pass)
        ]
    );
    let sr = value(&r[0], "success");
    assert!((94.0..=96.0).contains(&sr), "success rate {sr}");
    assert!(
        r[0].verdicts[0].reason.contains("below min 99%"),
        "{}",
        r[0].verdicts[0].reason
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_traffic_is_inconclusive() {
    let plans = [
        plan("shop", "idle", "v2", "v1", standard()),
        plan("shop", "absent", "v2", "v1", standard()),
    ];
    let r = tick(&plans, None).await;
    for rollout in &r {
        assert!(rollout.errors.is_empty());
        for v in &rollout.verdicts {
            assert_eq!(v.outcome, Outcome::Inconclusive, "{v:?}");
            assert!(
                v.reason.contains("fewer than minRequests 50"),
                "{}",
                v.reason
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn canary_worse_than_stable_fails_while_thresholds_pass() {
    let absolute = plan("shop", "slower", "v2", "v1", standard());
    let relative = plan(
        "shop",
        "slower",
        "v2",
        "v1",
        vec![
            compare(
                spec("success", Template::SuccessRate, Some(99.0), None),
                0.2,
            ),
            compare(spec("p99", Template::LatencyP99, None, Some(500.0)), 10.0),
        ],
    );
    let r = tick(&[absolute, relative], None).await;
    assert_eq!(r[0].outcome(), Outcome::Pass, "{:#?}", r[0]);
    assert_eq!(
        outcomes(&r[1]),
        vec![
            ("success".into(), Outcome::Fail),
            ("p99".into(), Outcome::Fail)
        ],
        "{:#?}",
        r[1]
    );
    let p99 = &r[1].verdicts[1];
    assert!((p99.value.unwrap_or(0.0) - 99.5).abs() < 1e-6, "{p99:?}");
    assert!(
        (p99.stable_value.unwrap_or(0.0) - 24.85).abs() < 1e-6,
        "{p99:?}"
    );
    assert!(p99.reason.contains("worse than stable"), "{}", p99.reason);
    assert!(r[1].stable_queries["p99"].contains("destination_version=\"v1\""));
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_service_names_cannot_break_or_widen_queries() {
    let hostile = [
        "healthy\"} or vector(1) or x{a=\"",
        "healthy\\",
        ".*",
        "heal.*",
        "healthy|errors",
        "healthy\"}[1m])) or on() vector(100) #",
    ];
    let mut plans: Vec<Plan> = hostile
        .iter()
        .map(|s| plan("shop", s, "v2", "v1", standard()))
        .collect();
    plans.push(plan("shop", "healthy", "v2", "v1", standard()));
    plans.push(plan("shop", WEIRD, "v2", "v1", standard()));
    // Namespace names go through the same escaping.
    plans.push(plan("shop|other", "healthy", "v2", "v1", standard()));
    let r = tick(&plans, None).await;
    for rollout in &r[..hostile.len()] {
        for v in &rollout.verdicts {
            assert_eq!(v.outcome, Outcome::Inconclusive, "{}: {v:?}", rollout.id);
            assert_eq!(v.value, None, "{}: {v:?}", rollout.id);
        }
    }
    assert_eq!(
        r[hostile.len()].outcome(),
        Outcome::Pass,
        "{:#?}",
        r[hostile.len()]
    );
    // The service whose name holds `"`, `}` and `\` gets exactly its own series.
    let weird = &r[hostile.len() + 1];
    assert_eq!(weird.outcome(), Outcome::Pass, "{weird:#?}");
    assert!((value(weird, "p99") - 248.5).abs() < 1e-6, "{weird:#?}");
    assert_eq!(r[hostile.len() + 2].outcome(), Outcome::Inconclusive);
    // The same queries, one rollout at a time, are valid PromQL with the same answers.
    let source = PromSource::new(&PrometheusConfig::new(shared().prom.url())).expect("source");
    for rollout in &r {
        for v in &rollout.verdicts {
            let series = source
                .instant(&v.query, None)
                .await
                .expect("query is valid");
            assert!(series.len() <= 1, "{} widened: {series:?}", v.query);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn batched_answers_equal_single_rollout_queries() {
    let plans = [
        plan("shop", "healthy", "v2", "v1", standard()),
        plan("shop", "errors", "v2", "v1", standard()),
        plan("shop", "slower", "v2", "v1", standard()),
        plan("other", "healthy", "v2", "v1", standard()),
    ];
    shared_ready().await;
    // A fixed evaluation time so both ways read the same samples.
    let at = Utc
        .timestamp_opt(Utc::now().timestamp() - 1, 0)
        .single()
        .expect("time");
    let r = tick(&plans, Some(at)).await;
    let source = PromSource::new(&PrometheusConfig::new(shared().prom.url())).expect("source");
    for rollout in &r {
        for v in &rollout.verdicts {
            let single = source.instant(&v.query, Some(at)).await.expect("query");
            assert_eq!(single.len(), 1, "{}", v.query);
            assert_eq!(
                Some(single[0].value),
                v.value,
                "{}: {}",
                rollout.id,
                v.query
            );
        }
    }
    // other/healthy has 50 % errors: the namespaces did not mix.
    assert_eq!(r[3].verdicts[0].outcome, Outcome::Fail);
    assert_eq!(r[0].verdicts[0].outcome, Outcome::Pass);
}

#[tokio::test(flavor = "multi_thread")]
async fn destination_rule_subsets_from_the_bookinfo_fixture() {
    let path = prom::fixtures_dir().join("istio/manifests/bookinfo__destination-rule-reviews.yaml");
    let text = std::fs::read_to_string(&path).expect("read fixture");
    let dr: serde_json::Value = serde_saphyr::from_str(&text).expect("fixture parses");
    let subsets = SubsetLabels::from_destination_rule(&dr).expect("subsets");
    let mut metrics = standard();
    metrics[0] = compare(metrics[0].clone(), 1.0);
    let plans = [
        plan("default", "reviews", "v2", "v1", metrics.clone()),
        plan("default", "reviews", "v3", "v1", metrics),
    ];
    let targets: Vec<Target> = plans
        .iter()
        .map(|p| Target::from_plan(p, &subsets, "destination", None).expect("target"))
        .collect();
    let source = PromSource::new(&PrometheusConfig::new(shared().prom.url())).expect("source");
    let (r, _) = run_tick(&source, &batch::plan(&targets), None).await;
    assert_eq!(r[0].outcome(), Outcome::Pass, "{:#?}", r[0]);
    assert_eq!(r[1].verdicts[0].outcome, Outcome::Fail, "{:#?}", r[1]);
}

#[tokio::test(flavor = "multi_thread")]
async fn historic_data_is_judged_at_a_past_time() {
    shared_ready().await;
    let at = shared().history_at;
    let plans = [plan(
        "shop",
        "history",
        "v2",
        "v1",
        vec![
            compare(
                spec("success", Template::SuccessRate, Some(80.0), None),
                1.0,
            ),
            spec("rate", Template::RequestRate, Some(5.0), None),
        ],
    )];
    let r = tick(&plans, Some(at)).await;
    let sr = &r[0].verdicts[0];
    assert_eq!(sr.outcome, Outcome::Fail, "{sr:?}");
    assert!((sr.value.unwrap_or(0.0) - 90.0).abs() < 1e-6, "{sr:?}");
    assert!(
        (sr.stable_value.unwrap_or(0.0) - 100.0).abs() < 1e-6,
        "{sr:?}"
    );
    assert!((value(&r[0], "rate") - 10.0).abs() < 1e-6, "{:#?}", r[0]);
    assert_eq!(sr.samples, Some(100.0));
    // Now there is no traffic for this service at all.
    let now = tick(&plans, None).await;
    assert_eq!(now[0].outcome(), Outcome::Inconclusive);
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_stopped_mid_test_is_unreachable_then_back() {
    prom::install_crypto();
    // Its own Prometheus, since this test stops it.
    let exporter = Exporter::start(vec![
        workload("shop", "healthy", "v1", 20.0, 0.0, 20.0),
        workload("shop", "healthy", "v2", 20.0, 0.0, 20.0),
    ]);
    let mut p = Prometheus::start(exporter.port, |_| {});
    let url = p.url();
    let plans = [plan("shop", "healthy", "v2", "v1", standard())];
    let plan = batch::plan(&targets(&plans));
    let source = PromSource::new(&PrometheusConfig {
        timeout: Duration::from_secs(2),
        ..PrometheusConfig::new(&url)
    })
    .expect("source");
    let (r, stats) = run_tick(&source, &plan, None).await;
    assert_eq!(stats.failed, 0, "{r:#?}");
    assert!(!r[0].unreachable());

    p.stop();
    let (r, stats) = run_tick(&source, &plan, None).await;
    assert_eq!(stats.failed, stats.queries);
    assert!(r[0].unreachable());
    assert!(r[0].verdicts.is_empty());
    let kinds: BTreeMap<String, ErrorKind> = r[0]
        .errors
        .iter()
        .map(|e| (e.metric.clone(), e.kind))
        .collect();
    assert_eq!(
        kinds,
        BTreeMap::from([
            ("p99".to_string(), ErrorKind::Unreachable),
            ("success".to_string(), ErrorKind::Unreachable)
        ])
    );

    p.restart();
    wait_for_traffic(&url);
    let (r, stats) = run_tick(&source, &plan, None).await;
    assert_eq!(stats.failed, 0);
    assert_eq!(r[0].outcome(), Outcome::Pass, "{:#?}", r[0]);
}

#[tokio::test(flavor = "multi_thread")]
async fn real_prometheus_errors_are_classified() {
    shared_ready().await;
    let source = PromSource::new(&PrometheusConfig::new(shared().prom.url())).expect("source");
    let err = source
        .instant("sum(rate(x[1m])", None)
        .await
        .expect_err("syntax");
    assert_eq!(err.kind(), ErrorKind::BadQuery, "{err}");
    let err = source
        .instant("istio_requests_total[1m]", None)
        .await
        .expect_err("range vector");
    assert_eq!(err.kind(), ErrorKind::BadData, "{err}");
    // A scalar answer is one unlabelled series.
    let s = source
        .instant("scalar(vector(42))", None)
        .await
        .expect("scalar");
    assert_eq!((s.len(), s[0].value, s[0].labels.len()), (1, 42.0, 0));
}

/// Run the built binary; (exit code, stdout).
fn tidegate(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args(args)
        .output()
        .expect("run tidegate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn write_plan(dir: &std::path::Path, name: &str, service: &str, metrics: &str) -> String {
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: tidegate.dev/v1alpha1\nkind: Rollout\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  service: {service}\n  stable: stable\n  canary: canary\n  steps: [{{setWeight: 10}}]\n  analysis:\n    interval: 10s\n    minRequests: 50\n    metrics:\n{metrics}"
        ),
    )
    .expect("write plan");
    path.display().to_string()
}

#[test]
fn analyze_command_judges_historic_data_with_subsets_from_manifests() {
    let s = shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).expect("mkdir");
    std::fs::write(
        manifests.join("dr.yaml"),
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: history, namespace: shop}\nspec:\n  host: history\n  subsets:\n  - {name: stable, labels: {version: v1}}\n  - {name: canary, labels: {version: v2, team: \"pay\\\"ments\"}}\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: history}\nspec: {hosts: [history]}\n",
    )
    .expect("write manifests");
    let plans = dir.path().join("plans");
    std::fs::create_dir(&plans).expect("mkdir");
    let passing = write_plan(
        &plans,
        "history",
        "history",
        "      - {name: success, template: istio-success-rate, min: 80}\n      - name: requests\n        query: 'sum(rate(istio_requests_total{destination_service_name=\"{{ service }}\", destination_version=\"{{ canary.version }}\", reporter=\"{{ reporter }}\"}[{{ interval }}]))'\n        min: 5\n",
    );
    let at = s.history_at.timestamp().to_string();
    let url = s.prom.url();
    let m = manifests.display().to_string();

    let (code, out) = tidegate(&[
        "analyze",
        &passing,
        "--prometheus",
        &url,
        "--manifests",
        &m,
        "--at",
        &at,
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("destination_version=\"v2\""), "{out}");
    assert!(out.contains("canary=90 "), "{out}");
    assert!(!out.contains("note:"), "{out}");

    let failing = write_plan(
        &plans,
        "history-vs-stable",
        "history",
        "      - {name: vs-stable, template: istio-success-rate, compareTo: stable, tolerance: 1}\n",
    );
    let (code, out) = tidegate(&[
        "analyze",
        &failing,
        "--prometheus",
        &url,
        "--manifests",
        &m,
        "--at",
        &at,
        "-o",
        "json",
    ]);
    assert_eq!(code, 1, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).expect("json report");
    let v = &report["rollouts"][0]["verdicts"][0];
    assert_eq!(v["outcome"], "Fail", "{out}");
    assert_eq!(
        v["value"].as_f64().map(|x| (x * 1e6).round() / 1e6),
        Some(90.0)
    );
    assert_eq!(
        v["stableValue"].as_f64().map(|x| (x * 1e6).round() / 1e6),
        Some(100.0)
    );
    assert_eq!(v["samples"], 100.0);
    assert!(
        report["rollouts"][0]["stableQueries"]["vs-stable"]
            .as_str()
            .is_some_and(|q| q.contains("destination_version=\"v1\""))
    );

    // Now (not at the historic instant) the service has no traffic: inconclusive, exit 3.
    let (code, out) = tidegate(&["analyze", &passing, "--prometheus", &url, "--manifests", &m]);
    assert_eq!(code, 3, "{out}");

    // Without manifests the subset names are taken as versions, and the output says so.
    let (code, out) = tidegate(&["analyze", &passing, "--prometheus", &url, "--at", &at]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("note: no --manifests given"), "{out}");
    assert!(out.contains("destination_version=\"canary\""), "{out}");

    // A canary label with a quote is escaped, not injected.
    let labelled = write_plan(
        &plans,
        "team",
        "history",
        "      - name: team\n        query: 'count(up{job=\"{{ canary.team }}\"}) or vector(0)'\n        max: 0\n",
    );
    let (code, out) = tidegate(&[
        "analyze",
        &labelled,
        "--prometheus",
        &url,
        "--manifests",
        &m,
        "--at",
        &at,
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(r#"job="pay\"ments""#), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_with_a_custom_ca() {
    prom::install_crypto();
    let tls = tempfile::tempdir().expect("tempdir");
    prom::make_ca(tls.path());
    let exporter = Exporter::start(vec![workload("shop", "tls", "v1", 1.0, 0.0, 1.0)]);
    let p = Prometheus::start_tls(
        exporter.port,
        &tls.path().join("leaf.pem"),
        &tls.path().join("leaf.key"),
    );
    let url = format!("https://127.0.0.1:{}", p.port);
    let trusted = PromSource::new(&PrometheusConfig {
        ca_file: Some(tls.path().join("ca.pem")),
        timeout: Duration::from_secs(5),
        ..PrometheusConfig::new(&url)
    })
    .expect("source");
    let deadline = Instant::now() + Duration::from_secs(60);
    let answer = loop {
        match trusted.instant("vector(7)", None).await {
            Ok(s) => break s,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "TLS Prometheus never answered: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_eq!(answer[0].value, 7.0);
    // Without the CA the server's certificate is refused.
    let untrusted = PromSource::new(&PrometheusConfig::new(&url)).expect("source");
    let err = untrusted
        .instant("vector(7)", None)
        .await
        .expect_err("unknown CA");
    assert_eq!(err.kind(), ErrorKind::Unreachable, "{err}");
}

fn stat_spec(
    name: &str,
    t: Template,
    kind: tidegate::plan::TestKind,
    tolerance: f64,
) -> MetricSpec {
    MetricSpec {
        name: name.into(),
        source: MetricSource::Template(t),
        min: None,
        max: None,
        compare_to_stable: true,
        tolerance,
        test: Some(tidegate::plan::StatTest {
            kind,
            confidence: kind.default_confidence(),
            scrape_interval: Duration::from_secs(1),
        }),
    }
}

/// `test: counts` and `test: mann-whitney` read range queries (pooled counts, per-scrape
/// values) from the real server, batched for every rollout.
#[tokio::test(flavor = "multi_thread")]
async fn statistical_tests_read_range_queries() {
    use tidegate::plan::TestKind;
    shared_ready().await;
    let metrics = || {
        vec![
            stat_spec("errors", Template::SuccessRate, TestKind::Counts, 0.5),
            stat_spec("latency", Template::LatencyP50, TestKind::MannWhitney, 0.1),
        ]
    };
    let plans = [
        plan("shop", "errors", "v2", "v1", metrics()),
        plan("shop", "slower", "v2", "v1", metrics()),
        plan("shop", "healthy", "v2", "v1", metrics()),
    ];
    let since = Utc::now() - chrono::Duration::seconds(30);
    let targets: Vec<Target> = plans
        .iter()
        .map(|p| {
            Target::from_plan(
                p,
                &SubsetLabels::fallback(),
                batch::DEFAULT_REPORTER,
                Some(since),
            )
            .expect("target")
        })
        .collect();
    let source = PromSource::new(&PrometheusConfig::new(shared().prom.url())).expect("source");
    let bp = batch::plan(&targets);
    // Request counts, pooled counts, per-scrape p50: three queries for all three rollouts.
    assert_eq!(bp.queries.len(), 3);
    let (r, stats) = run_tick(&source, &bp, None).await;
    assert_eq!(stats.failed, 0, "{r:#?}");
    let verdict = |i: usize, m: &str| {
        r[i].verdicts
            .iter()
            .find(|v| v.metric == m)
            .cloned()
            .unwrap_or_else(|| panic!("no {m} verdict: {:#?}", r[i]))
    };
    // 5 % errors on the canary, none on stable.
    let e = verdict(0, "errors");
    assert_eq!(e.outcome, Outcome::Fail, "{}", e.reason);
    let t = e.test.expect("test report");
    assert!(
        t.canary_errors.is_some_and(|n| n > 0) && t.stable_errors == Some(0),
        "{t:?}"
    );
    assert_eq!(t.since, Some(since));
    // 90 ms against 20 ms: every per-scrape median of the canary is higher.
    let l = verdict(1, "latency");
    assert_eq!(l.outcome, Outcome::Fail, "{}", l.reason);
    let t = l.test.expect("test report");
    assert!(t.canary_samples >= 4 && t.stable_samples >= 4, "{t:?}");
    assert!(t.effect_size.is_some_and(|x| x > 2.0), "{t:?}");
    // Identical subsets: the latencies tie, and no errors on either side is no evidence of
    // a worse canary.
    assert_eq!(verdict(2, "latency").outcome, Outcome::Pass);
    assert_ne!(verdict(2, "errors").outcome, Outcome::Fail);
}
