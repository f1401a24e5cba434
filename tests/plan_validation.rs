//! Plan validation: every mistake reported at once with file, line, column and a fix; the
//! `validate` command's exit codes and JSON; the examples; real Flagger / Argo Rollouts files
//! from `../shared/fixtures` refused with a clear message (never a panic).

use std::path::PathBuf;
use std::process::Command;

use chrono::{DateTime, Datelike, Duration, Utc, Weekday};
use tidegate::plan::{self, Finding, Step};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tidegate"))
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixtures() -> PathBuf {
    let dir = root().join("../shared/fixtures");
    assert!(
        dir.is_dir(),
        "the shared fixtures are missing: expected {} (CI places shared/ beside the checkout)",
        dir.display()
    );
    dir
}

const FIVE_MISTAKES: &str = r#"apiVersion: tidegate.dev/v1alpha1
kind: Rollout
metadata:
  name: orders-svc
  namespace: production
spec:
  service: orders-svc
  stable: v1
  canary: v2
  steps:
    - setWeight: 120
    - analyze: 2 minutes please
    - setWeight: 50
  analysis:
    metrics:
      - name: success-rate
        template: istio-succes-rate
        min: 99
  window: "0 9-17 * * Mon-Fry"
  onSucces: promote
"#;

fn at(findings: &[Finding], field: &str) -> Finding {
    findings
        .iter()
        .find(|f| f.field == field)
        .cloned()
        .unwrap_or_else(|| panic!("no finding for {field} in {findings:#?}"))
}

#[test]
fn five_mistakes_are_all_reported_with_positions() {
    let parsed = plan::parse_str("bad.yaml", FIVE_MISTAKES);
    assert!(parsed.plans.is_empty());
    assert_eq!(parsed.findings.len(), 5, "{:#?}", parsed.findings);
    let weight = at(&parsed.findings, "spec.steps[0].setWeight");
    assert_eq!((weight.line, weight.column), (11, 18));
    assert!(weight.message.contains("120"));
    let duration = at(&parsed.findings, "spec.steps[1].analyze");
    assert_eq!((duration.line, duration.column), (12, 16));
    let template = at(&parsed.findings, "spec.analysis.metrics[0].template");
    assert_eq!(template.line, 17);
    assert!(
        template.hint.contains("istio-success-rate"),
        "{}",
        template.hint
    );
    let cron = at(&parsed.findings, "spec.window");
    assert_eq!(cron.line, 19);
    let unknown = at(&parsed.findings, "spec.onSucces");
    assert_eq!((unknown.line, unknown.column), (20, 3));
    assert!(unknown.hint.contains("onSuccess"), "{}", unknown.hint);
    for f in &parsed.findings {
        assert_eq!(f.file, "bad.yaml");
        assert!(!f.hint.is_empty(), "every finding has a fix: {f}");
    }
    // The same through the CLI, as JSON, with exit code 1.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, FIVE_MISTAKES).expect("write");
    let out = bin()
        .args(["validate", "-o", "json"])
        .arg(&file)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["valid"], false);
    assert_eq!(report["findings"].as_array().map(Vec::len), Some(5));
}

fn findings_of(spec_tail: &str) -> Vec<Finding> {
    let text = format!(
        "apiVersion: tidegate.dev/v1alpha1\nkind: Rollout\nmetadata: {{name: a}}\nspec:\n  service: a\n{spec_tail}"
    );
    plan::parse_str("t.yaml", &text).findings
}

#[test]
fn each_rule_has_its_own_finding() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "  stable: v1\n  canary: v1\n  steps: [{setWeight: 5}]\n",
            "spec.canary",
            "same subset",
        ),
        (
            "  stable: v1\n  canary: v2\n  steps: []\n",
            "spec.steps",
            "no steps",
        ),
        (
            "  stable: v1\n  canary: v2\n  steps: [{setWeight: 50}, {setWeight: 20}]\n",
            "spec.steps[1].setWeight",
            "goes down",
        ),
        (
            "  stable: v1\n  canary: v2\n  steps: [{setWeight: -1}]\n",
            "spec.steps[0].setWeight",
            "outside",
        ),
        (
            "  stable: v1\n  canary: v2\n  steps: [{setWieght: 5}]\n",
            "spec.steps[0].setWieght",
            "unknown step",
        ),
        (
            "  stable: v1\n  canary: v2\n  steps: [{pause: 10 parsecs}]\n",
            "spec.steps[0].pause",
            "not a duration",
        ),
        (
            "  stable: v1\n  canary: v2\n  steps: [{setWeight: 5}]\n  window: \"0 0 9 * * 1-5\"\n",
            "spec.window",
            "6 fields",
        ),
        (
            "  stable: v1\n  canary: v2\n  steps: [{setWeight: 5}]\n  window: {cron: \"* 9-17 * * 1-5\", timeZone: Mars/Olympus}\n",
            "spec.window.timeZone",
            "unknown time zone",
        ),
        (
            "  stable: v1\n  canary: v2\n  steps: [{setWeight: 5}]\n  analysis: {metrics: [{name: s, template: istio-success-rate, min: 101}]}\n",
            "spec.analysis.metrics[0].min",
            "above 100",
        ),
        (
            "  stable: v1\n  canary: v2\n  steps: [{setWeight: 5}]\n  analysis: {metrics: [{name: s, template: istio-latency-p99, min: 600ms, max: 500ms}]}\n",
            "spec.analysis.metrics[0].max",
            "below min",
        ),
        (
            "  stable: v1\n  canary: v2\n  steps: [{setWeight: 5}]\n  analysis: {metrics: [{name: s, template: istio-success-rate}]}\n",
            "spec.analysis.metrics[0]",
            "no threshold",
        ),
        (
            "  stable: v1\n  canary: v2\n  steps: [{setWeight: 5}]\n  analysis: {metrics: [{name: s, query: 'x{a=\"{{ password }}\"}', max: 1}]}\n",
            "spec.analysis.metrics[0].query",
            "unknown query variable {{ password }}",
        ),
        (
            "  stable: v1\n  canary: v2\n  steps: [{setWeight: 5}]\n  analysis: {metrics: [{name: s, template: istio-success-rate, min: 1}, {name: s, template: istio-request-rate, min: 1}]}\n",
            "spec.analysis.metrics[1].name",
            "already defined",
        ),
        (
            "  stable: v1\n  canary: v2\n  steps: [{setWeight: 5}]\n  analysis: {interval: 0s}\n",
            "spec.analysis.interval",
            "zero",
        ),
        (
            "  stable: v1\n  canary: v2\n  steps: [{setWeight: 5}]\n  analysis: {failureLimit: 0}\n",
            "spec.analysis.failureLimit",
            "outside",
        ),
        (
            "  stable: v1\n  canary: v2\n  steps: [{setWeight: 5}]\n  onSuccess: celebrate\n",
            "spec.onSuccess",
            "unknown onSuccess",
        ),
        (
            "  canary: v2\n  steps: [{setWeight: 5}]\n",
            "spec.stable",
            "missing required",
        ),
    ];
    for (tail, field, words) in cases {
        let findings = findings_of(tail);
        let f = findings
            .iter()
            .find(|f| f.field == *field)
            .unwrap_or_else(|| panic!("no finding at {field} for:\n{tail}\n{findings:#?}"));
        assert!(
            f.message.contains(words),
            "{field}: `{}` lacks `{words}`",
            f.message
        );
        assert!(f.line > 0, "{f}");
    }
}

#[test]
fn duplicates_across_files_point_at_both() {
    let doc = "apiVersion: tidegate.dev/v1alpha1\nkind: Rollout\nmetadata: {name: a, namespace: n}\nspec: {service: a, stable: v1, canary: v2, steps: [{setWeight: 5}]}\n";
    let a = plan::parse_str("a.yaml", doc);
    let b = plan::parse_str("b.yaml", &format!("---\n{doc}"));
    let all: Vec<_> = a.plans.iter().chain(b.plans.iter()).collect();
    let dups = plan::check_set(all);
    assert_eq!(dups.len(), 1);
    assert_eq!(dups[0].file, "b.yaml");
    assert!(
        dups[0].message.contains("a.yaml:1:1"),
        "{}",
        dups[0].message
    );
}

#[test]
fn several_plans_per_file_and_one_bad_does_not_hide_the_other() {
    let good = "apiVersion: tidegate.dev/v1alpha1\nkind: Rollout\nmetadata: {name: good}\nspec: {service: a, stable: v1, canary: v2, steps: [{setWeight: 5}]}\n";
    let bad = "apiVersion: tidegate.dev/v1alpha1\nkind: Rollout\nmetadata: {name: bad}\nspec: {service: a, stable: v1, canary: v2, steps: [{setWeight: 500}]}\n";
    let parsed = plan::parse_str("two.yaml", &format!("{good}---\n{bad}"));
    assert_eq!(parsed.plans.len(), 1);
    assert_eq!(parsed.plans[0].id.name, "good");
    assert_eq!(parsed.invalid.len(), 1);
    assert_eq!(
        parsed.invalid[0].0.as_ref().map(|id| id.name.as_str()),
        Some("bad")
    );
    assert_eq!(parsed.findings[0].line, 9);
}

#[test]
fn defaults_are_applied() {
    let parsed = plan::parse_str(
        "d.yaml",
        "apiVersion: tidegate.dev/v1alpha1\nkind: Rollout\nmetadata: {name: a}\nspec: {service: orders.shop.svc.cluster.local, stable: v1, canary: v2, steps: [{pause: {}}, {pause: {duration: 1m}}]}\n",
    );
    let p = &parsed.plans[0];
    assert_eq!(p.id.namespace, plan::defaults::NAMESPACE);
    assert_eq!(p.virtual_service, "orders");
    assert_eq!(p.destination_rule.as_deref(), Some("orders"));
    assert_eq!(p.analysis.interval, plan::defaults::INTERVAL);
    assert_eq!(p.analysis.failure_limit, plan::defaults::FAILURE_LIMIT);
    assert_eq!(p.on_success, plan::defaults::ON_SUCCESS);
    assert_eq!(p.steps[0], Step::Pause(None));
    assert_eq!(
        p.steps[1],
        Step::Pause(Some(std::time::Duration::from_secs(60)))
    );
}

#[test]
fn latency_thresholds_are_durations_in_milliseconds() {
    let parsed = plan::parse_str(
        "l.yaml",
        "apiVersion: tidegate.dev/v1alpha1\nkind: Rollout\nmetadata: {name: a}\nspec:\n  service: a\n  stable: v1\n  canary: v2\n  steps: [{setWeight: 5}]\n  analysis:\n    metrics: [{name: p99, template: istio-latency-p99, max: 1s}, {name: p50, template: istio-latency-p50, max: 250}]\n",
    );
    assert!(parsed.findings.is_empty(), "{:?}", parsed.findings);
    assert_eq!(parsed.plans[0].analysis.metrics[0].max, Some(1000.0));
    assert_eq!(parsed.plans[0].analysis.metrics[1].max, Some(250.0));
}

#[test]
fn window_mon_fri_means_monday_to_friday() {
    let parsed = plan::parse_str(
        "w.yaml",
        "apiVersion: tidegate.dev/v1alpha1\nkind: Rollout\nmetadata: {name: a}\nspec: {service: a, stable: v1, canary: v2, steps: [{setWeight: 5}], window: '* 9-17 * * 1-5'}\n",
    );
    let window = parsed.plans[0].window.clone().expect("window");
    // 2026-11-30 is a Monday. Walk a whole week at 10:30 UTC.
    let monday = DateTime::parse_from_rfc3339("2026-11-30T10:30:00Z")
        .expect("t")
        .with_timezone(&Utc);
    for day in 0..7 {
        let t = monday + Duration::days(day);
        let weekday = t.weekday();
        let expected = !matches!(weekday, Weekday::Sat | Weekday::Sun);
        assert_eq!(window.contains(t), expected, "{weekday} {t}");
    }
    assert!(
        !window.contains(monday + Duration::hours(8)),
        "18:30 is outside 9-17"
    );
    // The same window read in a time zone: 10:30 UTC is 05:30 in New York.
    let tz = plan::parse_str(
        "w.yaml",
        "apiVersion: tidegate.dev/v1alpha1\nkind: Rollout\nmetadata: {name: a}\nspec: {service: a, stable: v1, canary: v2, steps: [{setWeight: 5}], window: {cron: '* 9-17 * * Mon-Fri', timeZone: America/New_York}}\n",
    );
    let w = tz.plans[0].window.clone().expect("window");
    assert!(!w.contains(monday));
    assert!(w.contains(monday + Duration::hours(5)));
}

#[test]
fn examples_validate() {
    let out = bin()
        .arg("validate")
        .arg(root().join("examples"))
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("plans valid"), "{stdout}");
    // The reference example is the orders-svc canary in production.
    let text = std::fs::read_to_string(root().join("examples/orders-svc/rollouts/orders-svc.yaml"))
        .expect("read");
    let p = &plan::parse_str("orders-svc.yaml", &text).plans[0];
    assert_eq!(p.id.to_string(), "production/orders-svc");
    assert!(matches!(p.steps[0], Step::SetHeaderRoute(_)));
}

#[test]
fn usage_errors_exit_2() {
    let out = bin()
        .args(["validate", "/nonexistent/plans"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/plans"));
    let out = bin().args(["validate"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn not_yaml_and_binary_files_are_findings_not_crashes() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("a.yaml"), "key: [unclosed\n").expect("write");
    std::fs::write(dir.path().join("b.yaml"), [0xff, 0xfe, 0x00, 0x12]).expect("write");
    let out = bin().arg("validate").arg(dir.path()).output().expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("a.yaml:"), "{stdout}");
    assert!(stdout.contains("not valid YAML"), "{stdout}");
    assert!(stdout.contains("not UTF-8"), "{stdout}");
}

/// Real plans of other tools are not tidegate plans: each is refused with a message naming the
/// apiVersion, kind and what to write instead; none panics.
#[test]
fn flagger_and_argo_definitions_are_refused_clearly() {
    let dir = fixtures().join("peers");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("read fixtures") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if !(name.starts_with("flagger__") || name.starts_with("argo-rollouts__")) {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let parsed = plan::parse_str(&name, &text);
        assert!(parsed.plans.is_empty(), "{name}");
        assert!(
            parsed
                .findings
                .iter()
                .any(|f| f.field == "apiVersion" && f.hint.contains("tidegate.dev/v1alpha1")),
            "{name}: {:#?}",
            parsed.findings
        );
        // Mixed-folder reading skips them instead.
        assert!(
            plan::parse_mixed_str(&name, &text).findings.is_empty(),
            "{name}"
        );
        checked += 1;
    }
    assert!(
        checked >= 10,
        "expected the Flagger and Argo Rollouts fixtures in {}",
        dir.display()
    );
}

#[test]
fn simulate_prints_transitions_and_checks_the_outcome() {
    let ex = root().join("examples/orders-svc");
    let run = |script: &str, expect: &str| {
        bin()
            .arg("simulate")
            .arg(ex.join("rollouts/orders-svc.yaml"))
            .arg("--verdicts")
            .arg(ex.join(script))
            .args(["--expect", expect])
            .output()
            .expect("run")
    };
    let healthy = run("verdicts-healthy.yaml", "Succeeded");
    let text = String::from_utf8_lossy(&healthy.stdout);
    assert_eq!(healthy.status.code(), Some(0), "{text}");
    assert!(text.contains("Paused"), "{text}");
    assert!(text.contains("canary 100%"), "{text}");
    let faulty = run("verdicts-faulty.yaml", "RolledBack");
    let text = String::from_utf8_lossy(&faulty.stdout);
    assert_eq!(faulty.status.code(), Some(0), "{text}");
    assert!(
        text.contains("1 failed checks (limit 1): errors Fail value=94.2"),
        "{text}"
    );
    let wrong = run("verdicts-faulty.yaml", "Succeeded");
    assert_eq!(wrong.status.code(), Some(1));
}

#[test]
fn simulate_refuses_scripts_naming_unknown_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("s.yaml");
    std::fs::write(&script, "ticks:\n  - verdicts: {succes-rate: pass}\n").expect("write");
    let out = bin()
        .arg("simulate")
        .arg(root().join("examples/orders-svc/rollouts/orders-svc.yaml"))
        .arg("--verdicts")
        .arg(&script)
        .output()
        .expect("run");
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("succes-rate") && err.contains("s.yaml"),
        "{err}"
    );
}

fn metrics_plan(interval: &str, metrics: &str) -> String {
    format!(
        "apiVersion: tidegate.dev/v1alpha1\nkind: Rollout\nmetadata: {{name: a}}\nspec:\n  service: a\n  stable: v1\n  canary: v2\n  steps: [{{setWeight: 5}}]\n  analysis:\n    interval: {interval}\n    failureLimit: 1\n    metrics:\n{metrics}"
    )
}

#[test]
fn statistical_tests_parse_with_their_defaults() {
    let text = metrics_plan(
        "30s",
        "      - {name: errors, template: istio-success-rate, compareTo: stable, test: counts, tolerance: 0.5}\n      - {name: latency, template: istio-latency-p99, compareTo: stable, test: mann-whitney, tolerance: 10%, scrapeInterval: 5s}\n      - {name: p90, template: istio-latency-p90, compareTo: stable, test: mann-whitney, confidence: 0.99, scrapeInterval: 5s}\n",
    );
    let parsed = plan::parse_str("s.yaml", &text);
    assert!(parsed.findings.is_empty(), "{:#?}", parsed.findings);
    let m = &parsed.plans[0].analysis.metrics;
    let counts = m[0].test.as_ref().expect("counts test");
    assert_eq!(counts.kind, plan::TestKind::Counts);
    assert_eq!(counts.confidence, plan::defaults::COUNTS_CONFIDENCE);
    assert_eq!(m[0].tolerance, 0.5);
    let mw = m[1].test.as_ref().expect("mann-whitney test");
    assert_eq!(mw.kind, plan::TestKind::MannWhitney);
    assert_eq!(mw.confidence, plan::defaults::MANN_WHITNEY_CONFIDENCE);
    assert_eq!(mw.scrape_interval, std::time::Duration::from_secs(5));
    assert!((m[1].tolerance - 0.1).abs() < 1e-12);
    assert_eq!(m[2].test.as_ref().map(|t| t.confidence), Some(0.99));
    assert_eq!(m[2].tolerance, plan::defaults::TOLERANCE);
}

#[test]
fn a_plan_without_tests_keeps_its_digest() {
    // Plans written before `test:` existed must not restart on upgrade: the new fields stay
    // out of the canonical form when absent.
    let text = metrics_plan(
        "30s",
        "      - {name: sr, template: istio-success-rate, compareTo: stable, tolerance: 0.5}\n",
    );
    let parsed = plan::parse_str("d.yaml", &text);
    let canonical = serde_json::to_string(&parsed.plans[0]).expect("serializes");
    assert!(!canonical.contains("\"test\""), "{canonical}");
}

#[test]
fn statistical_test_mistakes_are_findings_with_fixes() {
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "30s",
            "{name: m, template: istio-success-rate, compareTo: stable, test: count}",
            "spec.analysis.metrics[0].test",
            "did you mean `counts`",
        ),
        (
            "30s",
            "{name: m, template: istio-success-rate, test: counts}",
            "spec.analysis.metrics[0].test",
            "compareTo: stable",
        ),
        (
            "30s",
            "{name: m, template: istio-latency-p99, compareTo: stable, test: counts}",
            "spec.analysis.metrics[0].test",
            "istio-success-rate",
        ),
        (
            "30s",
            "{name: m, template: istio-request-rate, compareTo: stable, test: mann-whitney, scrapeInterval: 5s}",
            "spec.analysis.metrics[0].test",
            "istio-latency-p99",
        ),
        (
            "30s",
            "{name: m, query: 'x{a=\"{{ version }}\"}', compareTo: stable, test: mann-whitney, scrapeInterval: 5s}",
            "spec.analysis.metrics[0].test",
            "latency template",
        ),
        (
            "30s",
            "{name: m, template: istio-success-rate, compareTo: stable, test: counts, tolerance: 1%}",
            "spec.analysis.metrics[0].tolerance",
            "tolerance: 0.5",
        ),
        (
            "30s",
            "{name: m, template: istio-latency-p99, compareTo: stable, test: mann-whitney, tolerance: 10, scrapeInterval: 5s}",
            "spec.analysis.metrics[0].tolerance",
            "tolerance: 10%",
        ),
        (
            "30s",
            "{name: m, template: istio-latency-p99, compareTo: stable, tolerance: 10%}",
            "spec.analysis.metrics[0].tolerance",
            "test: mann-whitney",
        ),
        (
            "30s",
            "{name: m, template: istio-success-rate, compareTo: stable, test: counts, confidence: 95}",
            "spec.analysis.metrics[0].confidence",
            "0.95",
        ),
        (
            "30s",
            "{name: m, template: istio-success-rate, compareTo: stable, confidence: 0.9}",
            "spec.analysis.metrics[0].confidence",
            "add `test: counts`",
        ),
        (
            "30s",
            "{name: m, template: istio-success-rate, compareTo: stable, test: counts, scrapeInterval: 5s}",
            "spec.analysis.metrics[0].scrapeInterval",
            "pools whole rounds",
        ),
        (
            "30s",
            "{name: m, template: istio-latency-p99, compareTo: stable, test: mann-whitney}",
            "spec.analysis.metrics[0].test",
            "at least 1m",
        ),
        (
            "30s",
            "{name: m, template: istio-latency-p99, compareTo: stable, test: mann-whitney, scrapeInterval: 10s}",
            "spec.analysis.metrics[0].scrapeInterval",
            "at least 40s",
        ),
        (
            "30s",
            "{name: m, template: istio-success-rate, compareTo: stable, test: counts, min: 95}",
            "spec.analysis.metrics[0]",
            "metric of its own",
        ),
    ];
    for (interval, metric, field, hint) in cases {
        let text = metrics_plan(interval, &format!("      - {metric}\n"));
        let findings = plan::parse_str("t.yaml", &text).findings;
        let f = at(&findings, field);
        assert!(
            f.hint.contains(hint) || f.message.contains(hint),
            "{metric}: expected {hint:?} in {f}"
        );
        assert!(f.line > 0 && f.column > 0, "{f}");
    }
}

#[test]
fn validate_warns_about_noisy_canary_only_thresholds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let noisy = dir.path().join("noisy.yaml");
    std::fs::write(
        &noisy,
        metrics_plan(
            "30s",
            "      - {name: sr, template: istio-success-rate, min: 99}\n      - {name: p99, template: istio-latency-p99, max: 500ms}\n",
        ),
    )
    .expect("write");
    let out = bin().arg("validate").arg(&noisy).output().expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "a warning is not a finding: {text}");
    let warning = text
        .lines()
        .find(|l| l.starts_with("warning: "))
        .unwrap_or_else(|| panic!("no warning in {text}"));
    assert!(
        warning.contains("spec.analysis.metrics[0].min"),
        "{warning}"
    );
    assert!(warning.contains("test: counts"), "{warning}");
    let out = bin()
        .args(["validate", "-o", "json"])
        .arg(&noisy)
        .output()
        .expect("run");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["warnings"].as_array().map(Vec::len), Some(1));
    // A plan that compares with stable, or whose floor is a guard rail, gets no warning.
    for metrics in [
        "      - {name: sr, template: istio-success-rate, min: 99}\n      - {name: e, template: istio-success-rate, compareTo: stable, test: counts}\n",
        "      - {name: sr, template: istio-success-rate, min: 95}\n",
    ] {
        let parsed = plan::parse_str("ok.yaml", &metrics_plan("30s", metrics));
        assert!(parsed.findings.is_empty(), "{:?}", parsed.findings);
        assert!(
            plan::advice::warnings(&parsed.plans[0]).is_empty(),
            "{metrics}"
        );
    }
}

#[test]
fn readme_and_lab_plans_use_the_statistical_judge() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README");
    let start = readme
        .find("```yaml\napiVersion: tidegate.dev")
        .expect("README plan")
        + 8;
    let end = start + readme[start..].find("```").expect("end of block");
    for (name, text) in [
        ("README.md", readme[start..end].to_string()),
        (
            "lab",
            tidegate::lab::run::lab_plan(false, plan::Split::Subset),
        ),
        (
            "lab (hosts)",
            tidegate::lab::run::lab_plan(false, plan::Split::Host),
        ),
    ] {
        let parsed = plan::parse_str(name, &text);
        assert!(parsed.findings.is_empty(), "{name}: {:?}", parsed.findings);
        let metrics = &parsed.plans[0].analysis.metrics;
        let kinds: Vec<_> = metrics
            .iter()
            .filter_map(|m| m.test.as_ref().map(|t| t.kind))
            .collect();
        assert!(kinds.contains(&plan::TestKind::Counts), "{name}");
        assert!(kinds.contains(&plan::TestKind::MannWhitney), "{name}");
        assert!(
            plan::advice::warnings(&parsed.plans[0]).is_empty(),
            "{name}"
        );
    }
}

#[test]
fn a_plan_splits_by_host_when_both_sides_name_hosts() {
    let parsed = plan::parse_str(
        "h.yaml",
        "apiVersion: tidegate.dev/v1alpha1\nkind: Rollout\nmetadata: {name: podinfo, namespace: test}\nspec:\n  service: podinfo\n  stable: {host: podinfo-primary}\n  canary: {host: podinfo-canary.test.svc.cluster.local}\n  steps: [{setWeight: 10}]\n",
    );
    assert!(parsed.findings.is_empty(), "{:?}", parsed.findings);
    let p = &parsed.plans[0];
    assert_eq!(p.split, plan::Split::Host);
    // The fully qualified name of a Service of the plan's namespace is its short name (the
    // same release either way); another namespace's stays as written.
    assert_eq!(
        (p.stable.as_str(), p.canary.as_str()),
        ("podinfo-primary", "podinfo-canary")
    );
    let other = plan::parse_str(
        "o.yaml",
        "apiVersion: tidegate.dev/v1alpha1\nkind: Rollout\nmetadata: {name: podinfo, namespace: test}\nspec: {service: podinfo, stable: {host: podinfo-primary}, canary: {host: podinfo-canary.qa.svc.cluster.local}, steps: [{setWeight: 10}]}\n",
    );
    assert_eq!(other.plans[0].canary, "podinfo-canary.qa.svc.cluster.local");
    assert_eq!(p.destination_rule, None);
    assert_eq!(p.virtual_service, "podinfo");
    // `{subset: v1}` is the long form of a bare name, and the digest of a subset plan does not
    // change with the new field (running rollouts are not restarted by an upgrade).
    let long = plan::parse_str(
        "s.yaml",
        "apiVersion: tidegate.dev/v1alpha1\nkind: Rollout\nmetadata: {name: a}\nspec: {service: a, stable: {subset: v1}, canary: v2, steps: [{setWeight: 10}]}\n",
    );
    let short = plan::parse_str(
        "s.yaml",
        "apiVersion: tidegate.dev/v1alpha1\nkind: Rollout\nmetadata: {name: a}\nspec: {service: a, stable: v1, canary: v2, steps: [{setWeight: 10}]}\n",
    );
    assert_eq!(long.plans[0].digest(), short.plans[0].digest());
    assert!(
        !serde_json::to_string(&short.plans[0])
            .expect("json")
            .contains("split")
    );
}

#[test]
fn host_level_mistakes_name_the_field_and_the_fix() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "  stable: v1\n  canary: {host: a-canary}\n  steps: [{setWeight: 10}]\n",
            "spec.canary",
            "stable is a subset but canary is a host",
        ),
        (
            "  stable: {host: a-x}\n  canary: {host: a-x}\n  steps: [{setWeight: 10}]\n",
            "spec.canary",
            "the same host `a-x`",
        ),
        (
            "  destinationRule: a\n  stable: {host: a-primary}\n  canary: {host: a-canary}\n  steps: [{setWeight: 10}]\n",
            "spec.destinationRule",
            "uses no DestinationRule subsets",
        ),
        (
            "  stable: {host: \"*.a\"}\n  canary: {host: a-canary}\n  steps: [{setWeight: 10}]\n",
            "spec.stable.host",
            "is not a Service host",
        ),
        (
            "  stable: {host: a-primary, subset: v1}\n  canary: {host: a-canary}\n  steps: [{setWeight: 10}]\n",
            "spec.stable",
            "both a host and a subset",
        ),
        (
            "  stable: {hots: a-primary}\n  canary: {host: a-canary}\n  steps: [{setWeight: 10}]\n",
            "spec.stable.hots",
            "unknown field `hots`",
        ),
        (
            "  stable: {subset: \"\"}\n  canary: v2\n  steps: [{setWeight: 10}]\n",
            "spec.stable.subset",
            "`subset` is empty",
        ),
        (
            "  stable: {host: \"\"}\n  canary: {host: a-canary}\n  steps: [{setWeight: 10}]\n",
            "spec.stable.host",
            "is not a Service host",
        ),
    ];
    for (tail, field, message) in cases {
        let findings = findings_of(tail);
        let f = at(&findings, field);
        assert!(f.message.contains(message), "{field}: {}", f.message);
        assert!(!f.hint.is_empty(), "{field}: no fix given");
    }
}

#[test]
fn a_misspelt_host_key_gets_one_finding() {
    let findings = findings_of(
        "  stable: {hots: a-primary}\n  canary: {host: a-canary}\n  steps: [{setWeight: 10}]\n",
    );
    let on_stable: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.field.starts_with("spec.stable"))
        .collect();
    assert_eq!(on_stable.len(), 1, "{on_stable:#?}");
    assert!(
        on_stable[0].hint.contains("did you mean `host`"),
        "{}",
        on_stable[0].hint
    );
}
