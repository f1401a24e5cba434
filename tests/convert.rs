//! `tidegate convert` against the peer fixtures (Flagger and Argo Rollouts files in
//! `../shared/fixtures/peers`) and hand-written sources converted exactly.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use tidegate::convert::{self, Converted, Report};
use tidegate::plan::{self, HeaderRoute, MetricSource, Plan, Split, Step, StringMatch};

fn run(files: &[(&str, &str)]) -> Report {
    let inputs: Vec<(String, String)> = files
        .iter()
        .map(|(f, t)| (f.to_string(), t.to_string()))
        .collect();
    convert::convert(&inputs).expect("the sources are YAML")
}

fn fixture(name: &str) -> (String, String) {
    let path = common::fixture(&format!("peers/{name}"));
    let text = std::fs::read_to_string(&path).expect("read fixture");
    (path.display().to_string(), text)
}

/// The one plan of a converted rollout, through tidegate's own validation.
fn plan_of(r: &Converted) -> Plan {
    let text = r
        .plan
        .as_deref()
        .unwrap_or_else(|| panic!("no plan: {:#?}", r.findings));
    let parsed = plan::parse_str("converted.yaml", text);
    assert!(parsed.findings.is_empty(), "{:#?}", parsed.findings);
    assert_eq!(parsed.plans.len(), 1);
    parsed.plans.into_iter().next().expect("one plan")
}

fn has(r: &Converted, field: &str, message: &str) -> bool {
    r.findings
        .iter()
        .any(|f| f.field.contains(field) && f.message.contains(message))
}

/// Per fixture: whether it converts, and every finding (field, start of the message), in order.
type Expectation = (&'static str, bool, &'static [(&'static str, &'static str)]);

const WORKLOAD: &str = "workload management: tidegate does not deploy pods";
const GENERATED: &str =
    "Flagger generates the VirtualService and the DestinationRules of both hosts";
const ONE_INTERVAL: &str = "a plan has one analysis interval for all metrics";
const PODINFO: &str = "Flagger generates the VirtualService podinfo, the Services podinfo-primary and \
                       podinfo-canary and the workload podinfo-primary; the plan splits between the \
                       hosts podinfo-primary and podinfo-canary in the VirtualService podinfo";

const EXPECTED: &[Expectation] = &[
    (
        "argo-rollouts__istio-host-split-experiment-step.yaml",
        true,
        &[
            ("spec.selector", WORKLOAD),
            ("spec.template", WORKLOAD),
            (
                "spec.strategy.canary.steps[1].experiment",
                "step `experiment` has no equivalent",
            ),
        ],
    ),
    (
        "argo-rollouts__istio-host-split.yaml",
        true,
        &[("spec.selector", WORKLOAD), ("spec.template", WORKLOAD)],
    ),
    (
        "argo-rollouts__istio-hr-host.yaml",
        true,
        &[
            ("spec.replicas", WORKLOAD),
            ("spec.selector", WORKLOAD),
            ("spec.template", WORKLOAD),
            (
                "spec.strategy.canary.steps[6].setHeaderRoute",
                "step `setHeaderRoute` has no equivalent",
            ),
        ],
    ),
    (
        "argo-rollouts__istio-mirror.yaml",
        true,
        &[
            ("spec.replicas", WORKLOAD),
            ("spec.selector", WORKLOAD),
            ("spec.template", WORKLOAD),
            (
                "spec.strategy.canary.steps[0].setCanaryScale",
                "step `setCanaryScale` has no equivalent",
            ),
            (
                "spec.strategy.canary.steps[1].setMirrorRoute.match",
                "a plan mirrors all of the stable traffic's share",
            ),
        ],
    ),
    (
        "argo-rollouts__istio-rollout-abort-delete-all-canary-pods.yaml",
        true,
        &[
            ("spec.replicas", WORKLOAD),
            ("spec.selector", WORKLOAD),
            ("spec.template", WORKLOAD),
            (
                "spec.strategy.canary.steps[0].setCanaryScale",
                "step `setCanaryScale` has no equivalent",
            ),
            (
                "spec.strategy.canary.steps[3].setCanaryScale",
                "step `setCanaryScale` has no equivalent",
            ),
        ],
    ),
    (
        "argo-rollouts__istio-subset-split-single-route.yaml",
        true,
        &[("spec.selector", WORKLOAD), ("spec.template", WORKLOAD)],
    ),
    (
        "argo-rollouts__istio-subset-split.yaml",
        true,
        &[("spec.selector", WORKLOAD), ("spec.template", WORKLOAD)],
    ),
    (
        "argo-rollouts__rollout-analysis-step.yaml",
        true,
        &[
            ("spec.replicas", WORKLOAD),
            ("spec.revisionHistoryLimit", WORKLOAD),
            ("spec.selector", WORKLOAD),
            ("spec.template", WORKLOAD),
            (
                "spec.strategy.canary.trafficRouting",
                "no traffic routing: Argo shifts this Rollout's traffic by replica counts",
            ),
            (
                "spec.strategy.canary.steps[1].analysis.templates[0]",
                "AnalysisTemplate random-fail is not in the given files",
            ),
            (
                "spec.strategy.canary.steps[1].analysis.templates[1]",
                "AnalysisTemplate always-pass is not in the given files",
            ),
        ],
    ),
    (
        "argo-rollouts__rollout.yaml",
        true,
        &[
            ("spec.replicas", WORKLOAD),
            ("spec.revisionHistoryLimit", WORKLOAD),
            ("spec.selector", WORKLOAD),
            ("spec.template", WORKLOAD),
            (
                "spec.strategy.canary.trafficRouting.istio.virtualServices",
                "a plan manages one VirtualService",
            ),
            (
                "spec.strategy.canary.trafficRouting.istio.virtualService.name",
                "VirtualService rollouts-demo-vsvc1 is not in the given files (or has no hosts)",
            ),
        ],
    ),
    (
        "argo-rollouts__valid-istio-v1beta1-mulitiple-virtualsvcs.yml",
        true,
        &[
            ("spec.selector", WORKLOAD),
            ("spec.template", WORKLOAD),
            (
                "spec.strategy.canary.trafficRouting.istio.virtualServices",
                "a plan manages one VirtualService",
            ),
            (
                "spec.strategy.canary.steps[1].experiment",
                "step `experiment` has no equivalent",
            ),
        ],
    ),
    (
        "flagger__istio-abtest.yaml",
        true,
        &[
            ("spec.autoscalerRef", WORKLOAD),
            ("spec.service.gateways", GENERATED),
            ("spec.service.hosts", GENERATED),
            ("spec.service.match", GENERATED),
            ("spec.service.rewrite", GENERATED),
            ("spec.service.timeout", GENERATED),
            ("spec.service.trafficPolicy", GENERATED),
            ("spec.targetRef", WORKLOAD),
            ("spec.service", PODINFO),
            (
                "spec.analysis.match[1].headers",
                "a plan's setHeaderRoute matches the headers of one entry only",
            ),
            ("spec.analysis.metrics[0].interval", ONE_INTERVAL),
            ("spec.analysis.metrics[1].interval", ONE_INTERVAL),
            (
                "spec.analysis.webhooks[0]",
                "webhook conformance-test (pre-rollout) has no equivalent",
            ),
            (
                "spec.analysis.webhooks[1]",
                "webhook load-test (rollout) has no equivalent",
            ),
        ],
    ),
    (
        "flagger__istio-canary.yaml",
        true,
        &[
            ("spec.autoscalerRef", WORKLOAD),
            ("spec.service.gateways", GENERATED),
            ("spec.service.hosts", GENERATED),
            ("spec.service.match", GENERATED),
            ("spec.service.rewrite", GENERATED),
            ("spec.service.timeout", GENERATED),
            ("spec.service.trafficPolicy", GENERATED),
            ("spec.targetRef", WORKLOAD),
            ("spec.service", PODINFO),
            ("spec.analysis.metrics[0].interval", ONE_INTERVAL),
            ("spec.analysis.metrics[1].interval", ONE_INTERVAL),
            (
                "spec.analysis.webhooks[0]",
                "webhook conformance-test (pre-rollout) has no equivalent",
            ),
            (
                "spec.analysis.webhooks[1]",
                "webhook load-test (rollout) has no equivalent",
            ),
        ],
    ),
    (
        "flagger__istio-progressive-delivery.md__canary-mirroring.yaml",
        true,
        &[
            ("spec.service", PODINFO),
            (
                "spec.analysis.webhooks[0]",
                "webhook acceptance-test (pre-rollout) has no equivalent",
            ),
            (
                "spec.analysis.webhooks[1]",
                "webhook load-test (rollout) has no equivalent",
            ),
        ],
    ),
    (
        "flagger__linkerd-canary-steps.yaml",
        true,
        &[
            ("spec.autoscalerRef", WORKLOAD),
            ("spec.targetRef", WORKLOAD),
            ("spec.provider", "provider `linkerd`"),
            ("spec.service", PODINFO),
            ("spec.analysis.metrics[0].interval", ONE_INTERVAL),
            ("spec.analysis.metrics[1].interval", ONE_INTERVAL),
            (
                "spec.analysis.webhooks[0]",
                "webhook conformance-test (pre-rollout) has no equivalent",
            ),
            (
                "spec.analysis.webhooks[1]",
                "webhook load-test (rollout) has no equivalent",
            ),
        ],
    ),
    (
        "flagger__test-canary.sh__canary-ab-testing.yaml",
        true,
        &[
            ("spec.targetRef", WORKLOAD),
            ("spec.service", PODINFO),
            ("spec.analysis.metrics[0].interval", ONE_INTERVAL),
            ("spec.analysis.metrics[1].interval", ONE_INTERVAL),
            (
                "spec.analysis.metrics[1].templateRef",
                "MetricTemplate latency is not in the given files",
            ),
            (
                "spec.analysis.webhooks[0]",
                "webhook pre (pre-rollout) has no equivalent",
            ),
            (
                "spec.analysis.webhooks[1]",
                "webhook promote-gate (confirm-promotion) became a `pause: {}` last step",
            ),
            (
                "spec.analysis.webhooks[2]",
                "webhook post (post-rollout) has no equivalent",
            ),
        ],
    ),
    (
        "flagger__test-canary.sh__canary-progressive.yaml",
        true,
        &[
            ("spec.service.apex", GENERATED),
            ("spec.service.headers", GENERATED),
            ("spec.targetRef", WORKLOAD),
            ("spec.service", PODINFO),
            ("spec.analysis.metrics[0].interval", ONE_INTERVAL),
            ("spec.analysis.metrics[1].interval", ONE_INTERVAL),
            (
                "spec.analysis.metrics[1].templateRef",
                "MetricTemplate latency is not in the given files",
            ),
            (
                "spec.analysis.webhooks[0]",
                "webhook load-test (rollout) has no equivalent",
            ),
        ],
    ),
    (
        "flagger__test-delegation.sh__canary.yaml",
        true,
        &[
            ("spec.service.delegation", GENERATED),
            ("spec.targetRef", WORKLOAD),
            ("spec.service", PODINFO),
            (
                "spec.analysis.webhooks[0]",
                "webhook load-test (rollout) has no equivalent",
            ),
        ],
    ),
];

#[test]
fn every_peer_fixture_converts_or_names_what_it_cannot_carry_over() {
    let dir = common::fixture("peers");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("read fixtures") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if !name.starts_with("argo-rollouts__") && !name.starts_with("flagger__") {
            continue;
        }
        let (file, text) = fixture(&name);
        let report = run(&[(&file, &text)]);
        if name.contains("analysistemplate") || name.contains("metrictemplate") {
            assert!(report.rollouts.is_empty(), "{name}");
            assert!(
                report.findings[0]
                    .message
                    .contains("no Flagger Canary or Argo Rollouts Rollout"),
                "{name}"
            );
            seen += 1;
            continue;
        }
        let (_, converts, wanted) = EXPECTED
            .iter()
            .find(|(n, _, _)| *n == name)
            .unwrap_or_else(|| panic!("no expectation for the fixture {name}"));
        assert_eq!(report.rollouts.len(), 1, "{name}");
        let r = &report.rollouts[0];
        assert_eq!(r.plan.is_some(), *converts, "{name}: {:#?}", r.findings);
        if *converts {
            plan_of(r);
        }
        assert_eq!(r.findings.len(), wanted.len(), "{name}: {:#?}", r.findings);
        for (f, (field, message)) in r.findings.iter().zip(wanted.iter()) {
            assert_eq!(f.field, *field, "{name}");
            assert!(
                f.message.starts_with(message),
                "{name}: {f}\nwanted: {message}"
            );
        }
        assert!(r.findings.iter().all(|f| f.file == file), "{name}");
        seen += 1;
    }
    assert_eq!(seen, 19, "every peer fixture is checked");
}

#[test]
fn the_subset_fixture_keeps_its_istio_names_and_steps() {
    let (file, text) = fixture("argo-rollouts__istio-subset-split.yaml");
    let report = run(&[(&file, &text)]);
    let r = &report.rollouts[0];
    assert!(r.plan.as_deref().is_some_and(|p| p.starts_with(&format!(
        "# converted by `tidegate convert` from {file} (Rollout"
    ))));
    let plan = plan_of(r);
    assert_eq!(plan.service, "istio-subset-split");
    assert_eq!(plan.virtual_service, "istio-subset-split-vsvc");
    assert_eq!(
        plan.destination_rule.as_deref(),
        Some("istio-subset-split-destrule")
    );
    assert_eq!(plan.routes, vec!["primary".to_string()]);
    assert_eq!(
        (plan.stable.as_str(), plan.canary.as_str()),
        ("stable", "canary")
    );
    assert_eq!(plan.steps, vec![Step::SetWeight(10), Step::Pause(None)]);
    assert!(report.complete());
}

const ARGO: &str = r#"
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: success-rate}
spec:
  metrics:
  - name: success-rate
    interval: 1m
    failureLimit: 2
    successCondition: result[0] >= 0.95
    provider:
      prometheus:
        address: http://prometheus:9090
        query: sum(rate(istio_requests_total{destination_service_name="{{ service }}",response_code!~"5.*"}[5m]))
  - name: errors
    successCondition: result[0] < 0.1
    provider:
      prometheus:
        query: sum(rate(errors_total[5m]))
  - name: datadog
    successCondition: result < 1
    provider:
      datadog: {query: "avg:errors"}
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: shop, namespace: prod}
spec:
  replicas: 3
  strategy:
    canary:
      trafficRouting:
        istio:
          virtualService: {name: shop-vs, routes: [primary]}
          destinationRule: {name: shop-dr, stableSubsetName: v1, canarySubsetName: v2}
      steps:
      - setWeight: 10
      - pause: {duration: 1m}
      - analysis:
          templates: [{templateName: success-rate}]
      - setHeaderRoute:
          name: beta
          match: [{headerName: x-beta, headerValue: {exact: "yes"}}]
      - setMirrorRoute:
          name: mirror
          percentage: 30
          match: [{method: {exact: GET}}]
      - setWeight: 50
      - pause: {}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: shop-dr}
spec:
  host: shop.prod.svc.cluster.local
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
"#;

#[test]
fn an_argo_subset_rollout_converts_exactly() {
    let report = run(&[("shop.yaml", ARGO)]);
    let r = &report.rollouts[0];
    let plan = plan_of(r);
    let header = HeaderRoute {
        headers: BTreeMap::from([("x-beta".to_string(), StringMatch::Exact("yes".into()))]),
    };
    assert_eq!(
        plan.steps,
        vec![
            Step::SetWeight(10),
            Step::Pause(Some(Duration::from_secs(60))),
            Step::Analyze(Duration::from_secs(60)),
            Step::SetHeaderRoute(header),
            Step::SetMirror(30),
            Step::SetWeight(50),
            Step::Pause(None),
        ]
    );
    assert_eq!(plan.id.namespace, "prod");
    assert_eq!(plan.service, "shop.prod.svc.cluster.local");
    assert_eq!((plan.stable.as_str(), plan.canary.as_str()), ("v1", "v2"));
    assert_eq!(plan.analysis.interval, Duration::from_secs(60));
    assert_eq!(
        plan.analysis.failure_limit, 1,
        "Argo's failureLimit counts the failures allowed (2 + 1), and `errors` allows none (0 + 1)"
    );
    let metrics: Vec<_> = plan
        .analysis
        .metrics
        .iter()
        .map(|m| (m.name.as_str(), m.min, m.max))
        .collect();
    assert_eq!(
        metrics,
        vec![
            ("success-rate", Some(0.95), None),
            ("errors", None, Some(0.1))
        ]
    );
    assert!(
        matches!(&plan.analysis.metrics[0].source, MetricSource::Query(q) if q.contains("{{ service }}"))
    );
    assert!(has(r, "spec.replicas", "workload management"));
    assert!(has(r, "steps[4].setMirrorRoute.match", "mirrors all"));
    assert!(has(r, "spec.metrics[2].provider", "only Prometheus"));
}

#[test]
fn argo_variables_and_conditions_tidegate_cannot_express_are_findings() {
    let text = ARGO
        .replace("result[0] < 0.1", "result[0] < 0.1 && result[0] > 0")
        .replace("{{ service }}", "{{args.service-name}}");
    let report = run(&[("shop.yaml", &text)]);
    let r = &report.rollouts[0];
    assert!(has(
        r,
        "shop.yaml: spec.metrics[0].provider.prometheus.query",
        "{{ args.service-name }}"
    ));
    assert!(has(
        r,
        "spec.metrics[1].successCondition",
        "is not `result[0] >= N`"
    ));
    let plan = plan_of(r);
    assert!(
        plan.analysis.metrics.is_empty(),
        "{:?}",
        plan.analysis.metrics
    );
}

const FLAGGER: &str = r#"
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: podinfo, namespace: test}
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  service: {name: podinfo, port: 80}
  analysis:
    interval: 30s
    threshold: 3
    stepWeights: [5, 20, 50]
    metrics:
    - name: request-success-rate
      thresholdRange: {min: 99}
    - name: request-duration
      thresholdRange: {max: 500}
"#;

#[test]
fn a_flagger_canary_becomes_a_host_level_plan_with_its_steps_and_built_in_metrics() {
    let report = run(&[("podinfo.yaml", FLAGGER)]);
    let r = &report.rollouts[0];
    assert!(report.complete());
    let plan = plan_of(r);
    assert_eq!(plan.split, Split::Host);
    assert_eq!(
        (
            plan.service.as_str(),
            plan.virtual_service.as_str(),
            plan.stable.as_str(),
            plan.canary.as_str()
        ),
        ("podinfo", "podinfo", "podinfo-primary", "podinfo-canary"),
        "Flagger's VirtualService is named after the apex Service and sends to <apex>-primary \
         and <apex>-canary"
    );
    assert_eq!(plan.destination_rule, None);
    assert!(
        plan.routes.is_empty(),
        "the routes that send to the stable host"
    );
    let analyze = Step::Analyze(Duration::from_secs(30));
    assert_eq!(
        plan.steps,
        vec![
            Step::SetWeight(5),
            analyze.clone(),
            Step::SetWeight(20),
            analyze.clone(),
            Step::SetWeight(50),
            analyze,
        ]
    );
    assert_eq!(plan.analysis.failure_limit, 3);
    assert_eq!(
        r.spec["analysis"]["metrics"],
        json!([{"name": "request-success-rate", "template": "istio-success-rate", "min": 99.0},
               {"name": "request-duration", "template": "istio-latency-p99", "max": 500.0}])
    );
    let text = r.plan.as_deref().expect("a plan");
    assert!(!text.contains("destinationRule"), "{text}");
    // The apex falls back to targetRef.name, as in Flagger's GetServiceNames.
    let unnamed = FLAGGER.replace(
        "  service: {name: podinfo, port: 80}\n",
        "  service: {port: 80}\n",
    );
    let unnamed = unnamed.replace("name: podinfo}", "name: backend}");
    let report = run(&[("backend.yaml", &unnamed)]);
    let plan = plan_of(&report.rollouts[0]);
    assert_eq!(
        (
            plan.service.as_str(),
            plan.stable.as_str(),
            plan.canary.as_str()
        ),
        ("backend", "backend-primary", "backend-canary")
    );
}

#[test]
fn flagger_ab_testing_routes_by_header_and_metric_templates_become_queries() {
    let text = FLAGGER
        .replace("stepWeights: [5, 20, 50]", "iterations: 10\n    match: [{headers: {x-canary: {exact: insider}}}]")
        .replace(
            "    - name: request-duration\n      thresholdRange: {max: 500}",
            "    - name: not-found\n      templateRef: {name: not-found-percentage}\n      interval: 2m\n      thresholdRange: {max: 5}",
        );
    let template = r#"
apiVersion: flagger.app/v1beta1
kind: MetricTemplate
metadata: {name: not-found-percentage}
spec:
  provider: {type: prometheus, address: http://prometheus:9090}
  query: sum(rate(requests{code="404",app="{{ target }}",ns="{{ namespace }}"}[{{ interval }}]))
"#;
    let report = run(&[("podinfo.yaml", &text), ("templates.yaml", template)]);
    let r = &report.rollouts[0];
    assert_eq!(
        r.spec["steps"],
        json!([{"setHeaderRoute": {"headers": {"x-canary": {"exact": "insider"}}}}, {"analyze": "5m"}])
    );
    assert_eq!(
        r.spec["analysis"]["metrics"][1],
        json!({"name": "not-found", "max": 5.0,
               "query": "sum(rate(requests{code=\"404\",app=\"podinfo\",ns=\"{{ namespace }}\"}[2m]))"}),
        "Flagger renders `{{ target }}` as the canary workload (targetRef.name) and \
         `{{ interval }}` as the metric's interval"
    );
}

#[test]
fn the_command_writes_one_plan_per_rollout_and_exits_1_when_a_source_produced_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (subset, _) = fixture("argo-rollouts__istio-subset-split.yaml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args(["convert", &subset, "--out-dir"])
        .arg(dir.path())
        .output()
        .expect("run tidegate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = std::fs::read_to_string(dir.path().join("default-istio-subset-split.yaml"))
        .expect("plan written");
    assert!(plan::parse_str("p.yaml", &written).findings.is_empty());
    // A Rollout routed by something else than Istio (here NGINX) gets findings and no plan.
    let path = dir.path().join("nginx.yaml");
    std::fs::write(
        &path,
        "apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {name: web}\nspec:\n  strategy:\n    canary:\n      trafficRouting:\n        nginx: {stableIngress: web}\n      steps: [{setWeight: 10}]\n",
    )
    .expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args(["convert", "-o", "json"])
        .arg(&path)
        .output()
        .expect("run tidegate");
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    assert_eq!(report["rollouts"][0]["plan"], serde_json::Value::Null);
}

#[test]
fn literal_argo_args_fill_template_queries() {
    let text = ARGO.replace("{{ service }}", "{{args.service-name}}").replace(
        "templates: [{templateName: success-rate}]",
        "templates: [{templateName: success-rate}]\n          args: [{name: service-name, value: shop}]",
    );
    let report = run(&[("shop.yaml", &text)]);
    let plan = plan_of(&report.rollouts[0]);
    let MetricSource::Query(q) = &plan.analysis.metrics[0].source else {
        panic!("a query: {:?}", plan.analysis.metrics[0]);
    };
    assert!(q.contains("destination_service_name=\"shop\""), "{q}");
}

#[test]
fn a_flagger_canary_given_with_its_metric_template_gets_the_query_with_its_variables() {
    let (canary, canary_text) = fixture("flagger__test-canary.sh__canary-ab-testing.yaml");
    let (template, template_text) = fixture("flagger__test-canary.sh__latency-metrictemplate.yaml");
    let report = run(&[(&canary, &canary_text), (&template, &template_text)]);
    let r = &report.rollouts[0];
    assert!(!has(r, "templateRef", ""), "{:#?}", r.findings);
    let latency = &r.spec["analysis"]["metrics"][1];
    assert_eq!(latency["max"], json!(500.0));
    let query = latency["query"].as_str().expect("a query");
    assert!(query.contains("reporter=\"destination\""), "{query}");
    assert!(!query.contains("variables."), "{query}");
    assert!(
        query.contains("destination_workload=~\"podinfo\""),
        "{{{{ target }}}} is the canary workload, not the canary host: {query}"
    );
    assert!(query.contains("}[30s]"), "the metric's interval: {query}");
    let plan = plan_of(r);
    assert_eq!(plan.analysis.metrics.len(), 2);
    assert_eq!(
        r.spec["steps"][0]["setHeaderRoute"]["headers"]["cookie"],
        json!({"regex": "^(.*?;)?(type=insider)(;.*)?$"})
    );
}

#[test]
fn the_convert_module_is_pure() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/convert");
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).expect("src/convert") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("read source");
        let production = text.split("#[cfg(test)]").next().unwrap_or_default();
        for name in [
            "tokio::",
            "kube::",
            "reqwest::",
            "git2::",
            "std::fs",
            "std::net",
            "anyhow",
        ] {
            assert!(
                !production.contains(name),
                "{} names {name}",
                path.display()
            );
        }
        assert!(
            text.starts_with("//!"),
            "{} starts without a module comment",
            path.display()
        );
        files += 1;
    }
    assert!(files >= 4, "src/convert has its modules");
}

#[test]
fn fields_without_a_place_in_a_plan_are_named() {
    let text = ARGO
        .replace(
            "          destinationRule:",
            "          mirrorRoutes: [x]\n          destinationRule:",
        )
        .replace(
            "          templates: [{templateName: success-rate}]",
            "          templates: [{templateName: success-rate}]\n          dryRun: [{metricName: errors}]",
        )
        .replace("      steps:", "      maxSurge: 1\n      steps:");
    let report = run(&[("shop.yaml", &text)]);
    let r = &report.rollouts[0];
    plan_of(r);
    assert!(has(r, "trafficRouting.istio.mirrorRoutes", "no equivalent"));
    assert!(has(r, "steps[2].analysis.dryRun", "no equivalent"));
    assert!(has(r, "spec.strategy.canary.maxSurge", "no equivalent"));
    let blue_green = FLAGGER.replace("stepWeights: [5, 20, 50]", "iterations: 4");
    let report = run(&[("podinfo.yaml", &blue_green)]);
    let r = &report.rollouts[0];
    assert_eq!(r.spec["steps"], json!([{"analyze": "2m"}]));
    assert!(has(r, "spec.analysis.iterations", "blue/green"));
}

#[test]
fn converted_fixture_plans_lint_clean_against_the_fixtures_manifests() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in [
        "argo-rollouts__istio-subset-split.yaml",
        "argo-rollouts__istio-subset-split-single-route.yaml",
        "argo-rollouts__istio-host-split.yaml",
        "argo-rollouts__istio-host-split-experiment-step.yaml",
        "argo-rollouts__istio-hr-host.yaml",
        "argo-rollouts__istio-mirror.yaml",
        "argo-rollouts__istio-rollout-abort-delete-all-canary-pods.yaml",
        "argo-rollouts__valid-istio-v1beta1-mulitiple-virtualsvcs.yml",
    ] {
        let (file, text) = fixture(name);
        let report = run(&[(&file, &text)]);
        let plan = report.rollouts[0].plan.as_deref().expect("a plan");
        let plan_path = dir.path().join(format!("{name}.plan.yaml"));
        std::fs::write(&plan_path, plan).expect("write plan");
        let lint =
            tidegate::cli::lint::lint(&[file.clone().into(), plan_path], "default").expect("lint");
        assert_eq!(lint.plans.len(), 1, "{name}");
        if name.contains("mulitiple-virtualsvcs") {
            // The Rollout splits two VirtualServices bound to one gateway; a plan manages the
            // first (a convert finding says so), and lint names the second, which still sends
            // every gateway request to the stable Service.
            let codes: Vec<(&str, &str)> = lint
                .findings
                .iter()
                .filter(|f| f.severity == tidegate::mesh::istio::preflight::Severity::Error)
                .map(|f| (f.code, f.object.name.as_str()))
                .collect();
            assert_eq!(codes, [("TG123", "istio-host-split-vsvc-1")], "{name}");
            assert_eq!(lint.errors, 1, "{name}: {:#?}", lint.plan_findings);
            continue;
        }
        assert_eq!(
            lint.errors, 0,
            "{name}: {:#?} {:#?}",
            lint.findings, lint.plan_findings
        );
    }
}

const HOOKS: &str = r#"
    webhooks:
    - {name: gate, type: confirm-rollout, url: http://gate/approve}
    - {name: smoke, type: pre-rollout, url: http://loadtester/, metadata: {cmd: "curl -s http://podinfo-canary/"}}
    - {name: load, url: http://loadtester/, metadata: {cmd: "hey -z 1m http://podinfo-canary/"}}
    - {name: step-gate, type: confirm-traffic-increase, url: http://gate/step}
    - {name: promote-gate, type: confirm-promotion, url: http://gate/promote}
    - {name: post, type: post-rollout, url: http://loadtester/post}
    - {name: stop, type: rollback, url: http://gate/rollback}
    - {name: Slack_Events, type: event, url: http://events/hook}
"#;

#[test]
fn flagger_webhooks_map_to_pauses_and_a_channel_or_are_named_at_their_position() {
    let text = format!("{FLAGGER}{HOOKS}");
    let report = run(&[("podinfo.yaml", &text)]);
    let r = &report.rollouts[0];
    let steps = r.spec["steps"].as_array().expect("steps");
    assert_eq!(
        steps.first(),
        Some(&json!({"pause": {}})),
        "confirm-rollout"
    );
    assert_eq!(
        steps.last(),
        Some(&json!({"pause": {}})),
        "confirm-promotion"
    );
    assert_eq!(steps.len(), 8);
    assert_eq!(r.spec["notify"], json!(["slack-events"]));
    assert_eq!(
        plan_of(r).notify,
        vec!["slack-events".to_string()],
        "validation does not check channel names"
    );
    let hooks: Vec<(&str, &str)> = r
        .findings
        .iter()
        .filter(|f| f.field.starts_with("spec.analysis.webhooks"))
        .map(|f| (f.field.as_str(), f.message.as_str()))
        .collect();
    let wanted = [
        (
            "[0]",
            "webhook gate (confirm-rollout) became a `pause: {}` first step: the rollout waits at 0 % for a `Tidegate: resume test/podinfo` commit (tidegate calls no approval URL; http://gate/approve is not consulted)",
        ),
        (
            "[1]",
            "webhook smoke (pre-rollout) has no equivalent: tidegate runs no tests before shifting traffic; run `curl -s http://podinfo-canary/` yourself",
        ),
        (
            "[2]",
            "webhook load (rollout) has no equivalent: load test: tidegate generates no traffic; run `hey -z 1m http://podinfo-canary/` yourself",
        ),
        (
            "[3]",
            "webhook step-gate (confirm-traffic-increase) has no equivalent: tidegate calls no approval URL before each weight increase; the closest is a `pause: {}` step before each `setWeight`",
        ),
        (
            "[4]",
            "webhook promote-gate (confirm-promotion) became a `pause: {}` last step",
        ),
        (
            "[5]",
            "webhook post (post-rollout) has no equivalent: tidegate runs nothing after a rollout",
        ),
        (
            "[6]",
            "webhook stop (rollback) has no equivalent: tidegate polls no URL for a rollback; the equivalent is an `abort` control commit (`tidegate abort test/podinfo -m WHY`)",
        ),
        (
            "[7]",
            "webhook Slack_Events (event): the plan notifies the channel `slack-events` (`notify: [slack-events]`); add it to the daemon configuration, with http://events/hook in the file: notifications: [{name: slack-events, kind: webhook, urlFile: /etc/tidegate/notify/slack-events-url}]",
        ),
    ];
    assert_eq!(hooks.len(), wanted.len(), "{hooks:#?}");
    for ((field, message), (index, start)) in hooks.iter().zip(wanted) {
        assert_eq!(*field, format!("spec.analysis.webhooks{index}"));
        assert!(
            message.starts_with(start),
            "{field}: {message}\nwanted: {start}"
        );
    }
}

#[test]
fn argo_args_from_the_rollout_are_filled_and_run_time_values_are_named() {
    let template = |arg: &str| {
        ARGO.replace("{{ service }}", &format!("{{{{args.{arg}}}}}"))
            .replace(
                "spec:\n  metrics:",
                "spec:\n  args: [{name: ns}, {name: app}, {name: hash}, {name: token, valueFrom: {secretKeyRef: {name: prom, key: token}}}, {name: image}, {name: bare}]\n  metrics:",
            )
            .replace(
                "metadata: {name: shop, namespace: prod}",
                "metadata: {name: shop, namespace: prod, labels: {app: shop-app}}",
            )
            .replace(
                "templates: [{templateName: success-rate}]",
                "templates: [{templateName: success-rate}]\n          args:\n          - {name: ns, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}\n          - {name: app, valueFrom: {fieldRef: {fieldPath: \"metadata.labels['app']\"}}}\n          - {name: hash, valueFrom: {podTemplateHashValue: Latest}}\n          - {name: image, valueFrom: {fieldRef: {fieldPath: \"spec.template.spec.containers[0].image\"}}}",
            )
    };
    let query_of = |arg: &str| {
        let report = run(&[("shop.yaml", &template(arg))]);
        let r = report.rollouts[0].clone();
        let plan = plan_of(&r);
        let query = plan
            .analysis
            .metrics
            .iter()
            .find(|m| m.name == "success-rate")
            .map(|m| match &m.source {
                MetricSource::Query(q) => q.clone(),
                other => panic!("a query: {other:?}"),
            });
        (query, r)
    };
    let (q, _) = query_of("ns");
    assert!(
        q.expect("kept")
            .contains("destination_service_name=\"{{ namespace }}\"")
    );
    let (q, _) = query_of("app");
    assert!(
        q.expect("kept")
            .contains("destination_service_name=\"shop-app\"")
    );
    let field = "shop.yaml: spec.metrics[0].provider.prometheus.query";
    for (arg, why) in [
        (
            "hash",
            "the query uses `{{ args.hash }}`, and arg hash is `valueFrom.podTemplateHashValue: Latest`, the pod template hash Argo reads from the canary ReplicaSet at run time; tidegate fills in no values known only at run time and deploys no pods",
        ),
        (
            "token",
            "the query uses `{{ args.token }}`, and arg token is `valueFrom.secretKeyRef` (Secret prom, key token), read at run time",
        ),
        (
            "image",
            "the query uses `{{ args.image }}`, and arg image is `valueFrom.fieldRef: spec.template.spec.containers[0].image`, read from the live Rollout and not in the given files",
        ),
        (
            "bare",
            "the query uses `{{ args.bare }}`, and arg bare is declared without a value and given none by the Rollout: metric left out",
        ),
    ] {
        let (q, r) = query_of(arg);
        assert_eq!(q, None, "{arg}: the metric is left out");
        let found: Vec<_> = r
            .findings
            .iter()
            .filter(|f| f.field.ends_with(field))
            .collect();
        assert_eq!(found.len(), 1, "{arg}: {:#?}", r.findings);
        assert!(
            found[0].message.starts_with(why),
            "{arg}: {}",
            found[0].message
        );
        assert!(
            found[0].message.ends_with(": metric left out"),
            "{}",
            found[0].message
        );
    }
}

/// Host-level Argo fixtures: (fixture, service, virtualService, stable host, canary host).
const ARGO_HOSTS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "argo-rollouts__istio-host-split.yaml",
        "istio-host-split",
        "istio-host-split-vsvc",
        "istio-host-split-stable",
        "istio-host-split-canary",
    ),
    (
        "argo-rollouts__istio-hr-host.yaml",
        "rollouts-demo.com",
        "rollouts-demo-vsvc",
        "stable-service",
        "canary-service",
    ),
    (
        "argo-rollouts__istio-mirror.yaml",
        "istio-host-split.com",
        "istio-host-split-vsvc",
        "istio-host-split-stable",
        "istio-host-split-canary",
    ),
    (
        "argo-rollouts__rollout.yaml",
        "rollouts-demo-vsvc1",
        "rollouts-demo-vsvc1",
        "rollouts-demo-stable",
        "rollouts-demo-canary",
    ),
];

#[test]
fn argo_host_level_rollouts_keep_their_services_and_the_virtual_service_host() {
    for (name, service, vs, stable, canary) in ARGO_HOSTS {
        let (file, text) = fixture(name);
        let report = run(&[(&file, &text)]);
        let plan = plan_of(&report.rollouts[0]);
        assert_eq!(plan.split, Split::Host, "{name}");
        assert_eq!(plan.destination_rule, None, "{name}");
        assert_eq!(
            (
                plan.service.as_str(),
                plan.virtual_service.as_str(),
                plan.stable.as_str(),
                plan.canary.as_str()
            ),
            (*service, *vs, *stable, *canary),
            "{name}"
        );
        assert_eq!(plan.routes, vec!["primary".to_string()], "{name}");
    }
    // Both Services are needed; one alone is nothing to split between.
    let (file, text) = fixture("argo-rollouts__istio-host-split.yaml");
    let text = text.replace("      canaryService: istio-host-split-canary\n", "");
    let report = run(&[(&file, &text)]);
    let r = &report.rollouts[0];
    assert!(r.plan.is_none());
    assert!(has(
        r,
        "spec.strategy.canary.trafficRouting.istio",
        "neither a destinationRule (subset-level) nor both stableService and canaryService"
    ));
}

#[test]
fn a_subset_level_rollout_with_services_too_splits_by_subset_and_says_so() {
    let text = ARGO.replace(
        "      trafficRouting:",
        "      canaryService: shop-canary\n      stableService: shop-stable\n      trafficRouting:",
    );
    let report = run(&[("shop.yaml", &text)]);
    let r = &report.rollouts[0];
    let plan = plan_of(r);
    assert_eq!(plan.split, Split::Subset);
    assert_eq!((plan.stable.as_str(), plan.canary.as_str()), ("v1", "v2"));
    for key in ["stableService", "canaryService"] {
        assert!(has(
            r,
            &format!("spec.strategy.canary.{key}"),
            "the plan splits by the DestinationRule's subsets, as the Rollout does"
        ));
    }
}
