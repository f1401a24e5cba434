//! When each rollout is handled next, as plain data and pure functions: which rollouts are due
//! ([`due`]), what a handled rollout's timers become after the outcome of its turn ([`after`]):
//! the engine's wake-up, the next analysis round, retries with capped exponential backoff and
//! jitter, and when a failure must be shown in the status. No clock, no I/O: `now` is an
//! argument, so every rule is unit-tested without tokio.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::plan::RolloutId;

/// Work for a rollout that keeps failing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    /// Failed attempts in a row.
    pub attempts: u32,
    /// When the first of them failed.
    pub since: DateTime<Utc>,
    /// What was being done, e.g. "writing the VirtualService".
    pub operation: String,
    /// The latest error.
    pub message: String,
    /// Whether retrying may help.
    pub transient: bool,
    /// Whether the failure is shown in the status (the engine has been told).
    pub reported: bool,
}

/// A rollout's timers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Timers {
    /// When to handle the rollout next; `None`: only when something happens (a commit, a
    /// change of a watched object).
    pub wake_at: Option<DateTime<Utc>>,
    /// When the next analysis round is due; `None`: at the next turn.
    pub next_analysis: Option<DateTime<Utc>>,
    pub retry: Option<Retry>,
}

impl Timers {
    /// Timers of a rollout that must be handled at `now`.
    pub fn due_at(now: DateTime<Utc>) -> Timers {
        Timers {
            wake_at: Some(now),
            ..Timers::default()
        }
    }
}

/// The scheduling knobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// First retry delay; doubles with each failed attempt...
    pub initial_delay: Duration,
    /// ...up to this cap.
    pub max_delay: Duration,
    /// A transient failure that lasts this long is shown in the status.
    pub report_after: Duration,
    /// How soon to come back after a decision that asked for an immediate call (a route write
    /// to confirm by read-back).
    pub confirm_delay: Duration,
}

/// How a rollout's turn ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The engine decided and the decision was carried out.
    Decided {
        /// The engine's next call at the latest.
        wake_at: Option<DateTime<Utc>>,
        /// The plan's analysis interval when the rollout is in a phase that is analysed.
        analysis_interval: Option<Duration>,
        /// Whether the decision consumed an analysis round.
        consumed_round: bool,
    },
    /// Reading or writing the mesh failed; nothing was decided.
    Failed {
        operation: String,
        message: String,
        transient: bool,
    },
    /// A failure was shown in the status (the fault decision was carried out).
    Reported,
}

/// What the daemon must do after [`after`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Next {
    pub timers: Timers,
    /// Show the failure in the status now (permanent, or transient for too long).
    pub report: bool,
}

/// One rollout that is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: RolloutId,
    /// Run an analysis round for it first.
    pub analyse: bool,
}

/// What [`due`] needs to know of a rollout.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub id: &'a RolloutId,
    pub timers: &'a Timers,
    /// Rolling back: handled before every other rollout of the turn.
    pub rolling_back: bool,
    /// In a phase whose canary is analysed, with metrics to check.
    pub analysed: bool,
    /// An analysis round is waiting for a decision to consume it.
    pub round_pending: bool,
}

/// The rollouts due at `now`, rolling-back ones first, then by id.
pub fn due<'a>(candidates: impl Iterator<Item = Candidate<'a>>, now: DateTime<Utc>) -> Vec<Job> {
    let mut due: Vec<(bool, &RolloutId, bool)> = candidates
        .filter(|c| c.timers.wake_at.is_some_and(|w| w <= now))
        .map(|c| {
            let analysis_due = c.timers.next_analysis.is_none_or(|t| t <= now);
            let analyse = c.analysed && analysis_due && !c.round_pending;
            (!c.rolling_back, c.id, analyse)
        })
        .collect();
    due.sort_unstable();
    due.into_iter()
        .map(|(_, id, analyse)| Job {
            id: id.clone(),
            analyse,
        })
        .collect()
}

/// The earliest wake-up among `timers`.
pub fn next_wake<'a>(timers: impl Iterator<Item = &'a Timers>) -> Option<DateTime<Utc>> {
    timers.filter_map(|t| t.wake_at).min()
}

/// The timers after a turn of `id` that ended with `outcome`.
pub fn after(
    id: &RolloutId,
    timers: &Timers,
    outcome: Outcome,
    now: DateTime<Utc>,
    policy: &Policy,
) -> Next {
    match outcome {
        Outcome::Decided {
            wake_at,
            analysis_interval,
            consumed_round,
        } => Next {
            timers: decided(
                timers,
                wake_at,
                analysis_interval,
                consumed_round,
                now,
                policy,
            ),
            report: false,
        },
        Outcome::Failed {
            operation,
            message,
            transient,
        } => failed(id, timers, operation, message, transient, now, policy),
        Outcome::Reported => {
            let mut t = timers.clone();
            if let Some(r) = &mut t.retry {
                r.reported = true;
            }
            Next {
                timers: t,
                report: false,
            }
        }
    }
}

fn decided(
    timers: &Timers,
    wake_at: Option<DateTime<Utc>>,
    analysis_interval: Option<Duration>,
    consumed_round: bool,
    now: DateTime<Utc>,
    policy: &Policy,
) -> Timers {
    let confirm = now + chrono_duration(policy.confirm_delay);
    let mut wake = wake_at.map(|w| if w <= now { confirm } else { w });
    let next_analysis = match analysis_interval {
        None => None,
        Some(interval) if consumed_round => Some(now + chrono_duration(interval)),
        Some(_) => timers.next_analysis,
    };
    // A rollout under analysis wakes for its next round whatever else the engine said, so an
    // early wake-up (a control, an edit of the mesh) never postpones a round.
    if analysis_interval.is_some() {
        let round = next_analysis.unwrap_or(now).max(now);
        wake = Some(wake.map_or(round, |w| w.min(round)));
    }
    Timers {
        wake_at: wake,
        next_analysis,
        retry: None,
    }
}

fn failed(
    id: &RolloutId,
    timers: &Timers,
    operation: String,
    message: String,
    transient: bool,
    now: DateTime<Utc>,
    policy: &Policy,
) -> Next {
    let previous = timers.retry.as_ref();
    let attempts = previous.map_or(1, |r| r.attempts.saturating_add(1));
    let since = previous.map_or(now, |r| r.since);
    // A transient error already shown stays shown whatever its text; a permanent one is shown
    // again when it says something else (someone changed the object, differently wrong).
    let reported = previous.is_some_and(|r| {
        r.reported && r.operation == operation && (transient || r.message == message)
    });
    let lasting = (now - since).to_std().unwrap_or_default() >= policy.report_after;
    let report = !reported && (!transient || lasting);
    let delay = backoff(id, attempts, policy);
    Next {
        timers: Timers {
            wake_at: Some(now + chrono_duration(delay)),
            next_analysis: timers.next_analysis,
            retry: Some(Retry {
                attempts,
                since,
                operation,
                message,
                transient,
                reported,
            }),
        },
        report,
    }
}

/// The delay before retry `attempts` of `id`: `initial × 2^(attempts-1)` capped at `max`, then
/// scaled by a jitter between 0.5 and 1.0 that is a fixed function of the rollout and the attempt
/// (rollouts failing together spread out; the same inputs always give the same delay).
pub fn backoff(id: &RolloutId, attempts: u32, policy: &Policy) -> Duration {
    let exp = attempts.saturating_sub(1).min(20);
    let raw = policy
        .initial_delay
        .saturating_mul(1u32 << exp)
        .min(policy.max_delay);
    let mut h = DefaultHasher::new();
    (id, attempts).hash(&mut h);
    let fraction = (h.finish() % 1000) as f64 / 1000.0;
    raw.mul_f64(0.5 + 0.5 * fraction)
        .max(Duration::from_millis(1))
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or_else(|_| chrono::Duration::seconds(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).expect("time")
    }

    fn id(name: &str) -> RolloutId {
        RolloutId {
            namespace: "prod".into(),
            name: name.into(),
        }
    }

    fn policy() -> Policy {
        Policy {
            initial_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(60),
            report_after: Duration::from_secs(120),
            confirm_delay: Duration::from_millis(100),
        }
    }

    fn fail(transient: bool) -> Outcome {
        Outcome::Failed {
            operation: "writing the VirtualService".into(),
            message: "503".into(),
            transient,
        }
    }

    #[test]
    fn due_orders_rollbacks_first_and_says_which_need_a_round() {
        let (a, b, c) = (id("a"), id("b"), id("c"));
        let now_due = Timers::due_at(t(0));
        let later = Timers::due_at(t(10));
        let waiting_round = Timers {
            next_analysis: Some(t(5)),
            ..Timers::due_at(t(0))
        };
        let cands = [
            Candidate {
                id: &a,
                timers: &waiting_round,
                rolling_back: false,
                analysed: true,
                round_pending: false,
            },
            Candidate {
                id: &b,
                timers: &now_due,
                rolling_back: true,
                analysed: true,
                round_pending: true,
            },
            Candidate {
                id: &c,
                timers: &later,
                rolling_back: false,
                analysed: true,
                round_pending: false,
            },
        ];
        let jobs = due(cands.into_iter(), t(0));
        assert_eq!(
            jobs,
            vec![
                Job {
                    id: b.clone(),
                    analyse: false
                },
                Job {
                    id: a.clone(),
                    analyse: false
                }
            ],
            "b rolls back (first; its pending round blocks a new one); a's round is not due; c sleeps"
        );
        let jobs = due(cands.into_iter(), t(10));
        assert!(jobs.iter().any(|j| j.id == c && j.analyse));
    }

    #[test]
    fn an_immediate_wake_becomes_the_confirm_delay() {
        let next = after(
            &id("a"),
            &Timers::default(),
            Outcome::Decided {
                wake_at: Some(t(0)),
                analysis_interval: None,
                consumed_round: false,
            },
            t(0),
            &policy(),
        );
        assert_eq!(
            next.timers.wake_at,
            Some(t(0) + chrono::Duration::milliseconds(100))
        );
        assert!(!next.report);
    }

    #[test]
    fn an_early_wake_never_postpones_the_next_round() {
        let p = policy();
        let after_round = after(
            &id("a"),
            &Timers::default(),
            Outcome::Decided {
                wake_at: Some(t(30)),
                analysis_interval: Some(Duration::from_secs(30)),
                consumed_round: true,
            },
            t(0),
            &p,
        );
        assert_eq!(after_round.timers.next_analysis, Some(t(30)));
        // A control wakes the rollout at 20 s; the engine then asks for 50 s: the round stays at 30.
        let early = after(
            &id("a"),
            &after_round.timers,
            Outcome::Decided {
                wake_at: Some(t(50)),
                analysis_interval: Some(Duration::from_secs(30)),
                consumed_round: false,
            },
            t(20),
            &p,
        );
        assert_eq!(early.timers.wake_at, Some(t(30)));
        assert_eq!(early.timers.next_analysis, Some(t(30)));
    }

    #[test]
    fn transient_failures_back_off_with_a_cap_and_are_reported_after_the_limit() {
        let p = policy();
        let mut timers = Timers::default();
        let mut delays = Vec::new();
        let mut reported_at = None;
        for s in (0..400).step_by(10) {
            let next = after(&id("a"), &timers, fail(true), t(s), &p);
            delays.push((next.timers.wake_at.expect("wake") - t(s)).num_milliseconds());
            if next.report && reported_at.is_none() {
                reported_at = Some(s);
                timers = after(&id("a"), &next.timers, Outcome::Reported, t(s), &p).timers;
            } else {
                timers = next.timers;
            }
        }
        assert_eq!(
            reported_at,
            Some(120),
            "reported once the failure lasted report_after"
        );
        assert!(
            delays[0] >= 1000 && delays[0] <= 2000,
            "first delay {} ms",
            delays[0]
        );
        assert!(delays.iter().all(|d| *d <= 60_000), "capped: {delays:?}");
        assert!(
            delays.iter().rev().take(5).all(|d| *d >= 30_000),
            "grown to the cap: {delays:?}"
        );
        let retry = timers.retry.expect("retry");
        assert_eq!(retry.since, t(0));
        assert_eq!(retry.attempts, 40);
    }

    #[test]
    fn a_permanent_failure_is_reported_at_once_and_once() {
        let p = policy();
        let first = after(&id("a"), &Timers::default(), fail(false), t(0), &p);
        assert!(first.report);
        let shown = after(&id("a"), &first.timers, Outcome::Reported, t(0), &p);
        let again = after(&id("a"), &shown.timers, fail(false), t(5), &p);
        assert!(!again.report, "already shown");
        let other = after(
            &id("a"),
            &again.timers,
            Outcome::Failed {
                operation: "writing the VirtualService".into(),
                message: "404".into(),
                transient: false,
            },
            t(9),
            &p,
        );
        assert!(other.report, "a different error is shown again");
        let ok = after(
            &id("a"),
            &other.timers,
            Outcome::Decided {
                wake_at: None,
                analysis_interval: None,
                consumed_round: false,
            },
            t(10),
            &p,
        );
        assert_eq!(ok.timers.retry, None, "success clears the retry state");
        assert_eq!(ok.timers.wake_at, None);
    }

    #[test]
    fn jitter_is_fixed_per_rollout_and_attempt_and_spreads_rollouts() {
        let p = policy();
        assert_eq!(backoff(&id("a"), 3, &p), backoff(&id("a"), 3, &p));
        let delays: std::collections::BTreeSet<Duration> = (0..50)
            .map(|i| backoff(&id(&format!("r{i}")), 1, &p))
            .collect();
        assert!(
            delays.len() > 25,
            "50 rollouts failing together spread out: {}",
            delays.len()
        );
        assert!(
            delays
                .iter()
                .all(|d| *d >= Duration::from_secs(1) && *d <= Duration::from_secs(2))
        );
    }
}
