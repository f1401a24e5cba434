//! `tidegate backtest` (and `--aa`) and `tidegate analyze --since` against a real Prometheus
//! (Debian package `prometheus`) holding history backfilled with promtool.

#[path = "common/prom.rs"]
mod prom;

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use prom::workload;

struct History {
    prom: prom::Prometheus,
    /// The end of the backfilled history (Unix seconds, a whole minute).
    end: i64,
    dir: tempfile::TempDir,
}

const SPAN: i64 = 40 * 60;

fn history() -> &'static History {
    static H: OnceLock<History> = OnceLock::new();
    H.get_or_init(|| {
        let now = chrono::Utc::now().timestamp();
        let end = now - 3 * 3600 - now.rem_euclid(60);
        let workloads = vec![
            workload("shop", "good", "v1", 20.0, 0.005, 20.0),
            workload("shop", "good", "v2", 20.0, 0.005, 20.0),
            workload("shop", "bad", "v1", 20.0, 0.0, 20.0),
            workload("shop", "bad", "v2", 20.0, 0.05, 20.0),
        ];
        let prom = prom::Prometheus::start(prom::free_port(), |data| {
            prom::historic_blocks(data, &workloads, end - SPAN, end, 5)
        });
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["good", "bad"] {
            std::fs::write(dir.path().join(format!("{name}.yaml")), plan(name)).expect("plan");
        }
        History { prom, end, dir }
    })
}

fn plan(name: &str) -> String {
    format!(
        "apiVersion: tidegate.dev/v1alpha1\nkind: Rollout\nmetadata: {{name: {name}, namespace: shop}}\nspec:\n  service: {name}\n  stable: v1\n  canary: v2\n  steps: [{{setWeight: 10}}, {{analyze: 2m}}, {{setWeight: 100}}]\n  analysis:\n    interval: 30s\n    failureLimit: 1\n    minRequests: 50\n    metrics:\n      - {{name: errors, template: istio-success-rate, compareTo: stable, test: counts, tolerance: 0.5}}\n      - {{name: latency, template: istio-latency-p50, compareTo: stable, test: mann-whitney, tolerance: 10%, scrapeInterval: 5s}}\n"
    )
}

fn tidegate(args: &[&str], plan: &Path) -> (i32, String, String) {
    let h = history();
    let out = Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args(args)
        .arg(plan)
        .args(["--prometheus", &h.prom.url()])
        .output()
        .expect("run tidegate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

#[test]
fn a_faulty_canary_would_have_rolled_back_at_the_first_round() {
    let h = history();
    let from = (h.end - 20 * 60).to_string();
    let to = h.end.to_string();
    let plan = h.dir.path().join("bad.yaml");
    let (code, out, err) = tidegate(
        &["backtest", "--from", &from, "--to", &to, "-o", "json"],
        &plan,
    );
    assert_eq!(code, 1, "{out}{err}");
    let b = &json(&out)[0];
    let rounds = b["rounds"].as_array().expect("rounds");
    assert_eq!(rounds.len(), 1, "{out}");
    let errors = &rounds[0]["verdicts"][0];
    assert_eq!(errors["outcome"], "Fail");
    assert_eq!(errors["test"]["test"], "counts");
    // 5 % of 600 canary requests in the first 30 s round, none on stable.
    assert_eq!(errors["test"]["canaryErrors"], 30);
    assert_eq!(errors["test"]["stableErrors"], 0);
    assert_eq!(errors["test"]["canarySamples"], 600);
    assert_eq!(b["attempts"][0]["phase"], "RollingBack");
    let summary = b["summary"].as_str().expect("summary");
    assert!(summary.contains("would have ROLLED BACK"), "{summary}");
    assert!(!summary.contains('\n'), "{summary}");
    // The text form ends with the same one-line summary.
    let (code, text, _) = tidegate(&["backtest", "--from", &from, "--to", &to], &plan);
    assert_eq!(code, 1);
    assert_eq!(text.trim_end().lines().last(), Some(summary));
}

#[test]
fn a_healthy_canary_would_have_been_promoted_after_the_analysis_step() {
    let h = history();
    let from = h.end - 20 * 60;
    let (code, out, err) = tidegate(
        &[
            "backtest",
            "--from",
            &from.to_string(),
            "--to",
            &h.end.to_string(),
            "-o",
            "json",
        ],
        &h.dir.path().join("good.yaml"),
    );
    assert_eq!(code, 0, "{out}{err}");
    let b = &json(&out)[0];
    let last = b["attempts"]
        .as_array()
        .and_then(|a| a.last())
        .expect("attempt");
    assert_eq!(last["phase"], "Succeeded", "{out}");
    let rounds = b["rounds"].as_array().expect("rounds");
    // `analyze: 2m` at 30 s rounds: at least four rounds, none failed.
    assert!(rounds.len() >= 4, "{out}");
    assert!(rounds.iter().all(|r| r["outcome"] != "Fail"), "{out}");
    // The counts pool every round of the step: the last round saw all of them.
    let last_round = rounds.last().expect("round");
    let pooled = last_round["verdicts"][0]["test"]["canarySamples"]
        .as_u64()
        .expect("samples");
    assert_eq!(pooled, 600 * rounds.len() as u64, "{out}");
    assert!(
        b["summary"]
            .as_str()
            .is_some_and(|s| s.contains("would have promoted"))
    );
}

#[test]
fn aa_replays_healthy_stable_traffic_without_rollbacks() {
    let h = history();
    let from = (h.end - 15 * 60).to_string();
    let (code, out, err) = tidegate(
        &[
            "backtest",
            "--aa",
            "--offset",
            "15m",
            "--from",
            &from,
            "--to",
            &h.end.to_string(),
            "-o",
            "json",
        ],
        &h.dir.path().join("good.yaml"),
    );
    assert_eq!(code, 0, "{out}{err}");
    let b = &json(&out)[0];
    let attempts = b["attempts"].as_array().expect("attempts");
    // 15 minutes of back-to-back replays of a plan that needs about 2.5 minutes.
    assert!(attempts.len() >= 3, "{out}");
    let rounds = b["rounds"].as_array().expect("rounds");
    let errors = &rounds[0]["verdicts"][0]["test"];
    // Stable now against stable 15 minutes earlier: both sides read v1's 600 requests.
    assert_eq!(errors["canarySamples"], 600, "{out}");
    assert_eq!(errors["stableSamples"], 600, "{out}");
    let summary = b["summary"].as_str().expect("summary");
    assert!(
        summary.contains(&format!("0 of {} replayed rollouts", attempts.len())),
        "{summary}"
    );
}

#[test]
fn analyze_since_pools_like_the_daemon() {
    let h = history();
    let at = h.end - 60;
    let (code, out, err) = tidegate(
        &[
            "analyze",
            "--at",
            &at.to_string(),
            "--since",
            &(at - 90).to_string(),
            "-o",
            "json",
        ],
        &h.dir.path().join("bad.yaml"),
    );
    assert_eq!(code, 1, "{out}{err}");
    let v = &json(&out)["rollouts"][0]["verdicts"][0];
    // Three rounds (90 s) pooled: 1,800 canary requests, 90 of them errors.
    assert_eq!(v["test"]["canarySamples"], 1800, "{out}");
    assert_eq!(v["test"]["canaryErrors"], 90, "{out}");
    assert!(
        v["test"]["posterior"].as_f64().is_some_and(|p| p > 0.95),
        "{out}"
    );
    assert!(
        v["reason"].as_str().is_some_and(|r| r.contains("since")),
        "{out}"
    );
    // Without --since only the latest round counts.
    let (_, out, _) = tidegate(
        &["analyze", "--at", &at.to_string(), "-o", "json"],
        &h.dir.path().join("bad.yaml"),
    );
    assert_eq!(
        json(&out)["rollouts"][0]["verdicts"][0]["test"]["canarySamples"],
        600,
        "{out}"
    );
}
