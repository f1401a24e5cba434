//! End-to-end: the lab's scenarios through real Git (file:// remote, control commits pushed by
//! the `tidegate` binary), a real Prometheus (Debian package `prometheus`) scraping the traffic
//! simulator, the Kubernetes API emulator, and the daemon as a separate process.
//!
//! Scenarios run one at a time (they share two cores and measure traffic in real time).

use std::sync::Mutex;
use std::time::Duration;

use tidegate::lab::run::{self, LabOptions, LabOutcome, Scenario};
use tidegate::plan::Split;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn require_prometheus() {
    if tidegate::lab::prometheus::binary().is_err() {
        panic!(
            "the `prometheus` binary is missing: install the Debian package `prometheus` (scripts/test does this as root)"
        );
    }
}

fn lab(scenario: Scenario, kill_at_step: Option<usize>) -> LabOutcome {
    lab_split(scenario, kill_at_step, Split::Subset)
}

fn lab_split(scenario: Scenario, kill_at_step: Option<usize>, split: Split) -> LabOutcome {
    require_prometheus();
    let _guard = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = LabOptions {
        dir: Some(dir.path().to_path_buf()),
        scenario: Some(scenario),
        daemon_binary: env!("CARGO_BIN_EXE_tidegate").into(),
        timeout: Duration::from_secs(150),
        verbose: true,
        kill_at_step,
        kill_delay: Duration::from_millis(300),
        split,
        ..LabOptions::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let outcome = runtime.block_on(run::run(opts)).expect("the lab starts");
    if !outcome.ok() {
        let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        eprintln!(
            "daemon log (last lines, newest first):\n{}",
            tail.join("\n")
        );
    }
    outcome
}

#[test]
fn healthy_canary_is_promoted() {
    let o = lab(Scenario::Healthy, None);
    assert!(o.ok(), "{:?}\n{}", o.problems, o.timeline.join("\n"));
    assert_eq!(o.final_phase, "Succeeded");
    assert_eq!(o.final_weight, 100);
    assert_eq!(o.weights_seen.last(), Some(&100));
    assert!(o.status_commits >= 1);
}

/// A faulty canary's outcome: rolled back, the failing check's value named.
fn assert_rolled_back_naming_the_value(o: &LabOutcome) {
    assert!(o.ok(), "{:?}\n{}", o.problems, o.timeline.join("\n"));
    assert_eq!(o.final_phase, "RolledBack");
    assert_eq!(o.weights_seen.last(), Some(&0));
    assert!(
        // Whichever check trips first (success-rate or the success-floor), its value is named.
        o.timeline
            .iter()
            .any(|l| l.contains("RolledBack") && l.contains(" Fail value=")),
        "the failing query and value are reported: {}",
        o.timeline.join("\n")
    );
}

#[test]
fn faulty_canary_is_rolled_back() {
    assert_rolled_back_naming_the_value(&lab(Scenario::Faulty, None));
}

#[test]
fn pause_then_resume_by_pushed_commit_and_webhook() {
    let o = lab(Scenario::PauseResume, None);
    assert!(o.ok(), "{:?}\n{}", o.problems, o.timeline.join("\n"));
    assert!(o.timeline.iter().any(|l| l.contains("Paused")));
    assert_eq!(o.final_phase, "Succeeded");
}

#[test]
fn abort_by_pushed_commit_found_by_polling() {
    let o = lab(Scenario::Abort, None);
    assert!(o.ok(), "{:?}\n{}", o.problems, o.timeline.join("\n"));
    assert_eq!(o.final_phase, "Aborted");
    assert_eq!(o.weights_seen.last(), Some(&0));
}

#[test]
fn kill_9_mid_rollout_and_restart() {
    // Kill at different points: right after the first weight, during an analysis hold, later.
    for step in [1, 2, 4] {
        let o = lab(Scenario::CrashRestart, Some(step));
        assert!(
            o.ok(),
            "kill at step {step}: {:?}\n{}",
            o.problems,
            o.timeline.join("\n")
        );
        assert!(
            o.timeline.iter().any(|l| l.contains("SIGKILL")),
            "the daemon was killed"
        );
        assert_eq!(o.final_phase, "Succeeded");
    }
}

#[test]
fn releases_follow_each_other_through_a_rollback_and_a_retry() {
    let o = lab(Scenario::Releases, None);
    assert!(o.ok(), "{:?}\n{}", o.problems, o.timeline.join("\n"));
    assert_eq!(o.final_phase, "Succeeded");
    assert!(
        o.timeline.iter().any(|l| l.contains("RolledBack")),
        "v3 was rolled back once: {}",
        o.timeline.join("\n")
    );
    assert_eq!(o.weights_seen.last(), Some(&100), "v4 alone at the end");
}

#[test]
fn a_plan_typo_holds_keeps_analysing_and_still_rolls_back() {
    let o = lab(Scenario::PlanTypo, None);
    assert!(o.ok(), "{:?}\n{}", o.problems, o.timeline.join("\n"));
    assert_eq!(o.final_phase, "RolledBack");
    assert!(
        o.timeline
            .iter()
            .any(|l| l.contains("the fix continued to 50 %")),
        "the fix continued: {}",
        o.timeline.join("\n")
    );
    assert_eq!(o.weights_seen.last(), Some(&0));
}

#[test]
fn a_canary_subset_deleted_mid_rollout_is_rolled_back() {
    let o = lab(Scenario::MeshBreak, None);
    assert!(o.ok(), "{:?}\n{}", o.problems, o.timeline.join("\n"));
    assert_eq!(o.final_phase, "RolledBack");
    assert_eq!(o.weights_seen.last(), Some(&0));
}

/// The same loop with a plan that splits between two Services (Flagger's and Argo Rollouts'
/// host-level model): promoted when healthy, rolled back when faulty, the live route read by
/// host (`canary_weight` in the lab follows the canary Service).
#[test]
fn a_host_level_split_is_promoted_and_rolled_back_as_a_subset_split_is() {
    let o = lab_split(Scenario::Healthy, None, Split::Host);
    assert!(o.ok(), "{:?}\n{}", o.problems, o.timeline.join("\n"));
    assert_eq!(o.final_phase, "Succeeded");
    assert_eq!(o.weights_seen.last(), Some(&100));
    assert!(
        o.weights_seen.contains(&10) && o.weights_seen.contains(&50),
        "{:?}",
        o.weights_seen
    );
    assert_rolled_back_naming_the_value(&lab_split(Scenario::Faulty, None, Split::Host));
}
